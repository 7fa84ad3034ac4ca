//! Encrypt while uploading, on the async layer: the caller's `AsyncRead` goes through an
//! [`EncryptReader`] (the chunk crypto runs on the shared worker
//! [`Pool`](crate::stream::Pool), never on the executor's threads, and no thread is started
//! per upload), whose ciphertext is cut into parts of whole chunks (FORMAT.md §15.3) and
//! handed to a [`MultipartWriter`], which uploads at most `concurrency` of them at a time.
//! Reading the input waits while every slot is busy, so memory stays bounded whatever the
//! input size (see [`S3::put_encrypted`]).
//!
//! The blocking layer runs the same future with `block_on`, its `Read` input behind a
//! synchronous `AsyncRead` shim.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use bytes::{BufMut, Bytes};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::sync::CancellationToken;

use super::attributes::{ObjectAttributes, set_companion_attributes};
use super::live::{Guard, Leftover};
use super::transfer::{MultipartWriter, WriterOptions, Written};
use super::{
    CompanionCleanup, Head, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3, S3Url,
    object, sdk_error,
};
use crate::aio::EncryptReader;
use crate::envelope::Sealing;
use crate::error::{Error, Result};
use crate::format::{Header, TAG_LEN, body_len_for};
use crate::keys;
use crate::stream::{EngineOptions, Pool, StreamStats, io_error};

/// Parts doubled in size after every this many parts when the input length is unknown.
const GROWTH_EVERY: u64 = 1000;

/// How to upload one object (async layer).
#[derive(Clone, Default)]
pub struct PutOptions {
    /// Replace an existing object (else the upload is refused up front and made
    /// conditional with `If-None-Match: *`).
    pub force: bool,
    /// Plaintext length if known (a file); `None` for a stream.
    pub plaintext_len: Option<u64>,
    /// Worker threads for the chunk crypto: 0 (the default) runs it on the shared
    /// [`Pool::global`] (one worker per core, shared by every stream of the process); N > 0
    /// starts a private pool of N workers for this upload. Ignored when `pool` is set.
    pub threads: usize,
    /// Run the chunk crypto on this pool (a service sharing one pool between its streams).
    pub pool: Option<Pool>,
    /// Called with the number of body bytes each time a part is handed to the uploader.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Cancels the upload: it aborts its multipart upload, deletes the companion it wrote
    /// and returns [`Error::Cancelled`].
    pub cancel: Option<CancellationToken>,
    /// Content-Type, user metadata, tags, storage class, server-side encryption, checksum
    /// and ACL of the stored object (checked before anything is sent).
    pub attributes: ObjectAttributes,
}

impl std::fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutOptions")
            .field("force", &self.force)
            .field("plaintext_len", &self.plaintext_len)
            .field("threads", &self.threads)
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

/// What an upload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReport {
    /// Plaintext bytes encrypted.
    pub plaintext_bytes: u64,
    /// Bytes of the object's body.
    pub body_bytes: u64,
    /// Parts uploaded (0 for a single PutObject).
    pub parts: u64,
    /// The companion object holding the header, if it did not fit in the metadata.
    pub companion: Option<String>,
    /// What happened to the replaced object's companion (`force`): deleted only when it
    /// provably belonged to the replaced object, else left alone and said so.
    pub old_companion: CompanionCleanup,
    /// The stored object's ETag.
    pub etag: Option<String>,
    /// The stored object's version id (versioned buckets).
    pub version_id: Option<String>,
}

/// Part sizes for one upload: whole chunks per part, grown so that no upload needs more
/// than 10,000 parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartPlan {
    /// Chunks in each part (before growth).
    pub chunks_per_part: u64,
    /// Bytes of one chunk in the body (chunk size + tag).
    pub stride: u64,
    /// Whether parts grow (unknown input length).
    pub grows: bool,
}

impl PartPlan {
    /// Body bytes of part `n` (1-based) if it is full.
    pub fn part_len(&self, n: u64) -> u64 {
        let mut chunks = self.chunks_per_part;
        if self.grows {
            let doublings = ((n - 1) / GROWTH_EVERY).min(20);
            chunks = chunks.saturating_mul(1 << doublings);
        }
        (chunks * self.stride).min(MAX_PART_SIZE / self.stride * self.stride)
    }
}

/// Chooses the part plan for a chunk size, a requested part size (plaintext bytes) and the
/// input length if known. Fails with a usage error on parts below S3's 5 MiB minimum or
/// objects above its 5 TiB maximum.
pub fn part_plan_for(
    chunk_size: u32,
    part_size: u64,
    plaintext_len: Option<u64>,
) -> Result<PartPlan> {
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
        return Err(Error::InvalidArgument(format!(
            "the part size {part_size} is outside S3's limits 5MiB..5GiB (S3Settings::part_size)"
        )));
    }
    let cs = u64::from(chunk_size);
    let stride = cs + TAG_LEN as u64;
    let mut chunks_per_part = part_size.div_ceil(cs).max(1);
    let mut grows = true;
    if let Some(len) = plaintext_len {
        grows = false;
        crate::format::check_plaintext_len(len, chunk_size)?;
        let body = body_len_for(len, chunk_size);
        if body > MAX_OBJECT_SIZE {
            return Err(Error::InvalidArgument(format!(
                "the encrypted object would be {body} bytes, more than S3's 5 TiB limit"
            )));
        }
        let chunks = len.div_ceil(cs).max(1);
        chunks_per_part = chunks_per_part.max(chunks.div_ceil(MAX_PARTS));
    }
    Ok(PartPlan {
        chunks_per_part,
        stride,
        grows,
    })
}

/// An upload that passed its checks: the part plan, the object's metadata, and the
/// companion object written (guarded until the object is complete).
pub(super) struct Prepared {
    pub(super) plan: PartPlan,
    existing: Option<Head>,
    /// The caller's attributes with sealstream's metadata added.
    attributes: ObjectAttributes,
    companion: Option<(String, Guard)>,
    force: bool,
}

impl Prepared {
    /// How the body's writer creates the object.
    pub(super) fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            concurrency: 0,
            attributes: self.attributes.clone(),
            create_only: !self.force,
            if_match: None,
        }
    }

    /// Deletes the companion this upload wrote (the object was not stored).
    pub(super) async fn cleanup(&mut self) {
        if let Some((_, g)) = &mut self.companion {
            g.clean().await;
        }
    }
}

impl S3 {
    /// Encrypts `input` into the object at `url` as `sealing` prepares it (its header goes
    /// to the metadata or a companion object, the chunks to the body).
    ///
    /// **Where the work runs.** This future reads `input`, cuts the ciphertext into parts
    /// and uploads them (as tasks on the current runtime); the chunk crypto runs on the
    /// worker pool of [`PutOptions::threads`] / [`PutOptions::pool`] (by default the
    /// process-wide [`Pool::global`]). No thread is started per upload and nothing blocks
    /// the executor; any runtime flavor can poll it.
    ///
    /// **Memory per upload** is bounded whatever the input size: the encryptor's batches
    /// ([`crate::stream::buffer_memory`] for the header's chunk size, 1.1 MiB with the
    /// defaults and 2 workers), plus at most `concurrency` parts in flight in the
    /// [`MultipartWriter`] and the one part being filled, each [`PartPlan::part_len`] bytes
    /// (whole chunks; 8 MiB by default): `(concurrency + 1) × part` + batches. The input is
    /// not read while every upload slot is busy.
    ///
    /// **Errors.**
    /// - The object exists and `force` is not set: [`Error::OutputExists`]. That is also the
    ///   answer when another writer creates it while this upload runs: the final request
    ///   carries `If-None-Match: *`, and the `Error::Storage` of kind
    ///   [`PreconditionFailed`](crate::error::ServiceErrorKind::PreconditionFailed) it
    ///   fails with is reported as `OutputExists`, so a create-only conflict is told apart
    ///   without reading messages (a gateway answers 412). With `force`, nothing is
    ///   conditional and no such conflict exists.
    /// - S3 failures: [`Error::Storage`] classified by kind; the input's own failure: the
    ///   error it carries ([`Error::Io`] for a plain `io::Error`).
    ///
    /// **Cleanup.** If it fails, is cancelled through [`PutOptions::cancel`]
    /// (→ [`Error::Cancelled`]) or the future is dropped, the multipart upload is aborted
    /// and the companion deleted (before returning; in the background on this runtime when
    /// dropped).
    pub async fn put_encrypted<R>(
        &self,
        url: &S3Url,
        input: R,
        sealing: Sealing,
        opts: &PutOptions,
    ) -> Result<PutReport>
    where
        R: AsyncRead + Unpin,
    {
        let eo = EngineOptions {
            threads: opts.threads,
            pool: opts.pool.as_ref(),
            ..EngineOptions::default()
        };
        let progress = opts.progress.as_deref().map(|f| f as &(dyn Fn(u64) + Sync));
        let job = PutJob {
            force: opts.force,
            replace: None,
            plaintext_len: opts.plaintext_len,
            engine: &eo,
            progress,
            attributes: &opts.attributes,
        };
        self.put_with(url, input, sealing, &job, opts.cancel.clone())
            .await
    }

    /// [`S3::put_encrypted`] with borrowed engine options (the blocking layer's form).
    pub(super) async fn put_with<R>(
        &self,
        url: &S3Url,
        input: R,
        sealing: Sealing,
        job: &PutJob<'_>,
        cancel: Option<CancellationToken>,
    ) -> Result<PutReport>
    where
        R: AsyncRead + Unpin,
    {
        let cancel = cancel.unwrap_or_default();
        let mut st = PutState::default();
        let outcome = {
            let work = self.put_work(&mut st, url, input, sealing, job);
            tokio::pin!(work);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => None,
                r = &mut work => Some(r),
            }
        };
        match outcome {
            Some(Ok(report)) => Ok(report),
            Some(Err(e)) => {
                st.cleanup().await;
                Err(e)
            }
            None => {
                st.cleanup().await;
                Err(Error::Cancelled(format!(
                    "the upload to {url} was stopped and its parts and companion removed; nothing was stored"
                )))
            }
        }
    }

    async fn put_work<R>(
        &self,
        st: &mut PutState,
        url: &S3Url,
        input: R,
        sealing: Sealing,
        job: &PutJob<'_>,
    ) -> Result<PutReport>
    where
        R: AsyncRead + Unpin,
    {
        // A migration keeps what the old object carried beside its body.
        let kept;
        let attributes = match job.replace {
            Some(r) => {
                let mut a = job.attributes.clone();
                a.content_type = r.content_type.clone();
                a.tagging = r.tagging.clone();
                for (k, v) in &r.metadata {
                    if !object::is_sealstream_key(k) {
                        a.metadata.entry(k.clone()).or_insert(v.clone());
                    }
                }
                kept = a;
                &kept
            }
            None => job.attributes,
        };
        let prepared = self
            .prepare_put(
                url,
                sealing.header(),
                job.force || job.replace.is_some(),
                job.plaintext_len,
                attributes,
            )
            .await?;
        let plan = prepared.plan;
        let create_only = !prepared.force;
        let mut writer_opts = prepared.writer_options();
        writer_opts.if_match = job.replace.map(|r| r.if_match.clone());
        st.prepared = Some(prepared);
        let writer = st
            .writer
            .insert(MultipartWriter::new(self, url, writer_opts));
        let mut body = EncryptReader::new(
            sealing.cipher(),
            sealing.header().chunk_size,
            input,
            job.engine,
        )?;
        let written = match upload_body(writer, &mut body, plan, job.progress).await {
            Ok(w) => w,
            Err(e) if create_only => return Err(precondition_as_exists(url, e)),
            Err(e) => return Err(e),
        };
        let stats = body.stats();
        st.writer = None;
        let prepared = st
            .prepared
            .take()
            .ok_or_else(|| Error::storage("upload state lost"))?;
        self.finish_put(url, prepared, stats, written).await
    }

    /// Checks the target and the part plan, places the header and writes the companion
    /// object if the header goes there.
    pub(super) async fn prepare_put(
        &self,
        url: &S3Url,
        header: &Header,
        force: bool,
        plaintext_len: Option<u64>,
        attributes: &ObjectAttributes,
    ) -> Result<Prepared> {
        url.require_object()?;
        attributes.check()?;
        let plan = part_plan_for(header.chunk_size, self.settings.part_size, plaintext_len)?;
        let existing = self.head(url).await?;
        if existing.is_some() && !force {
            return Err(Error::OutputExists(url.to_string()));
        }
        let header_bytes = header
            .to_bytes()
            .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
        let placement = object::place(
            &header_bytes,
            &header.commitment,
            &url.key,
            attributes.metadata_size(),
            unique_suffix()?,
        )
        .map_err(Error::InvalidArgument)?;
        let mut attributes = attributes.clone();
        attributes
            .metadata
            .extend(placement.metadata.iter().cloned());
        let mut prepared = Prepared {
            plan,
            existing,
            attributes,
            companion: None,
            force,
        };
        if let Some((ck, bytes)) = &placement.companion {
            let curl = url.with_key(ck.clone());
            let guard = Guard::new(
                &self.client,
                &self.live,
                Leftover::Object {
                    bucket: curl.bucket.clone(),
                    key: curl.key.clone(),
                },
            );
            prepared.companion = Some((ck.clone(), guard));
            let put = self.put_small(&curl, bytes.clone(), true, &prepared.attributes);
            if let Err(e) = put.await {
                prepared.cleanup().await;
                return Err(e);
            }
        }
        Ok(prepared)
    }

    /// The object is stored: keep the companion, and delete the replaced object's old one
    /// if it provably was its own.
    pub(super) async fn finish_put(
        &self,
        url: &S3Url,
        mut prepared: Prepared,
        stats: StreamStats,
        written: Written,
    ) -> Result<PutReport> {
        let companion = match &mut prepared.companion {
            Some((ck, g)) => {
                g.disarm();
                Some(ck.clone())
            }
            None => None,
        };
        let mut report = PutReport {
            plaintext_bytes: stats.plaintext_bytes,
            body_bytes: written.bytes,
            parts: written.parts,
            companion,
            old_companion: CompanionCleanup::Nothing,
            etag: written.etag,
            version_id: written.version_id,
        };
        // A replaced object's old companion would otherwise linger with its keys; but only
        // one named after this key and holding the old header is ours to delete.
        if let Some(old) = &prepared.existing {
            report.old_companion = self
                .clean_companion(url, &old.metadata, None, report.companion.as_deref())
                .await
                .unwrap_or_else(|e| {
                    CompanionCleanup::Kept(format!(
                        "{url}: the replaced object's header object could not be deleted and \
                         still holds its keys; delete it: {e}"
                    ))
                });
        }
        Ok(report)
    }

    /// PUTs a small object (a companion header), never over an existing one unless `force`.
    pub(super) async fn put_small(
        &self,
        url: &S3Url,
        bytes: Vec<u8>,
        exclusive: bool,
        attributes: &ObjectAttributes,
    ) -> Result<()> {
        let req = self
            .client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes));
        let mut req = set_companion_attributes!(req, attributes);
        if exclusive {
            req = req.if_none_match("*");
        }
        req.send().await.map(|_| ()).map_err(|e| {
            precondition_as_exists(url, sdk_error(&self.endpoint, url, "PutObject", e))
        })
    }
}

/// What an async upload holds that must be cleaned up if it does not complete.
#[derive(Default)]
struct PutState {
    prepared: Option<Prepared>,
    writer: Option<MultipartWriter>,
}

impl PutState {
    async fn cleanup(&mut self) {
        if let Some(w) = &mut self.writer {
            w.abort().await;
        }
        if let Some(p) = &mut self.prepared {
            p.cleanup().await;
        }
    }
}

/// How a migration replaces an object in place: only the version it read (`If-Match`),
/// keeping what the old object carried beside its body.
#[derive(Debug, Clone, Default)]
pub(super) struct Replacing {
    /// The ETag of the version read.
    pub(super) if_match: String,
    /// Content-Type to keep.
    pub(super) content_type: Option<String>,
    /// User metadata to keep (sealstream's own names are never taken from here).
    pub(super) metadata: BTreeMap<String, String>,
    /// Tags to keep (URL-encoded).
    pub(super) tagging: Option<String>,
}

/// What one upload is asked to do, with the engine options borrowed from the caller (so
/// the blocking layer can pass its `EngineOptions` as they are).
pub(super) struct PutJob<'a> {
    pub(super) force: bool,
    /// Replace the object in place, conditionally (a migration); implies `force`.
    pub(super) replace: Option<&'a Replacing>,
    pub(super) plaintext_len: Option<u64>,
    pub(super) engine: &'a EngineOptions<'a>,
    pub(super) progress: Option<&'a (dyn Fn(u64) + Sync)>,
    pub(super) attributes: &'a ObjectAttributes,
}

/// Cuts the ciphertext read from `body` into the plan's parts (whole chunks: every part
/// length is a multiple of the chunk stride) and uploads them through `writer`; the last
/// part completes the object. A full part is known to be the last only when a read past it
/// finds the end, so one byte is read ahead and starts the next part.
///
/// While a part is being filled, the parts in flight are watched: the first that fails
/// ends the upload at once, even if `body` never yields again.
async fn upload_body<R: AsyncRead + Unpin>(
    writer: &mut MultipartWriter,
    body: &mut R,
    plan: PartPlan,
    progress: Option<&(dyn Fn(u64) + Sync)>,
) -> Result<Written> {
    let mut n = 1;
    let mut carry = None;
    loop {
        let target = usize::try_from(plan.part_len(n)).map_err(|_| {
            Error::InvalidArgument("a part larger than this machine's memory".into())
        })?;
        // One allocation per part (the SDK owns the bytes until the part is sent).
        let mut part = Vec::with_capacity(target);
        part.extend(carry.take());
        let more = tokio::select! {
            r = fill_part(body, &mut part, target) => r?,
            e = writer.failed() => return Err(e),
        };
        let len = part.len() as u64;
        match more {
            Some(next) => {
                carry = Some(next);
                writer.write_part(Bytes::from(part)).await?;
            }
            None => {
                let written = writer.finish(Bytes::from(part)).await?;
                if let Some(p) = progress {
                    p(len);
                }
                return Ok(written);
            }
        }
        if let Some(p) = progress {
            // Reported when handed to the uploader; bounded lead of `concurrency` parts.
            p(len);
        }
        n += 1;
    }
}

/// Fills `part` up to `target` bytes from `body`; then reads one byte more, which is
/// `Some` when the body goes on (the part is not the last).
async fn fill_part<R: AsyncRead + Unpin>(
    body: &mut R,
    part: &mut Vec<u8>,
    target: usize,
) -> Result<Option<u8>> {
    let read_err = |e| io_error("reading input", e);
    while part.len() < target {
        let room = target - part.len();
        // Reads into the spare capacity (no zeroing), never past `target`.
        let n = body
            .read_buf(&mut (&mut *part).limit(room))
            .await
            .map_err(read_err)?;
        if n == 0 {
            return Ok(None);
        }
    }
    let mut one = [0u8; 1];
    loop {
        match body.read(&mut one).await {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(one[0])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_err(e)),
        }
    }
}

/// 64 random bits for a companion object's name.
pub(super) fn unique_suffix() -> Result<u64> {
    let mut b = [0u8; 8];
    keys::fill_random(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// A failed `If-None-Match: *` means someone else created the object meanwhile.
fn precondition_as_exists(url: &S3Url, e: Error) -> Error {
    match &e {
        Error::Storage(s) if s.kind() == crate::error::ServiceErrorKind::PreconditionFailed => {
            Error::OutputExists(url.to_string())
        }
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_plans() {
        let cs = 64 * 1024;
        let p = part_plan_for(cs, 8 << 20, Some(100 << 20)).unwrap();
        assert_eq!(p.chunks_per_part, 128);
        assert_eq!(p.part_len(1), 128 * (65536 + 16));
        // 1 TiB in 64 KiB chunks: 16 Mi chunks / 10,000 parts → 1678 chunks per part.
        let p = part_plan_for(cs, 8 << 20, Some(1 << 40)).unwrap();
        assert!((1u64 << 24).div_ceil(p.chunks_per_part) <= MAX_PARTS);
        // Unknown length: doubles every 1000 parts, enough for 5 TiB in 10,000 parts.
        let p = part_plan_for(cs, 8 << 20, None).unwrap();
        assert_eq!(p.part_len(1000), p.part_len(1));
        assert_eq!(p.part_len(1001), 2 * p.part_len(1));
        let total: u64 = (1..=MAX_PARTS).map(|n| p.part_len(n)).sum();
        assert!(total >= MAX_OBJECT_SIZE);
        assert!(part_plan_for(cs, 1 << 20, None).is_err());
        assert!(part_plan_for(cs, 8 << 20, Some(6 << 40)).is_err());
    }
}
