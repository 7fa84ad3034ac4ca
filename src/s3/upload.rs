//! Encrypt while uploading: the engine seals chunks on all cores and writes them, in
//! order, into part buffers; each full part goes to an upload task, at most `concurrency`
//! at a time. The writer blocks when every slot is busy, so memory stays bounded by
//! `(concurrency + 2) × part size` plus the engine's own buffers, whatever the input size.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{
    CompanionCleanup, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3, S3Url,
    live_register, live_unregister, live_update, object, sdk_error,
};
use crate::engine::{self, EngineOptions};
use crate::envelope::{self, EncryptParams};
use crate::error::{Error, Result};
use crate::format::{SALT_LEN, Stanza, TAG_LEN, body_len_for};
use crate::keys::{self, DataKey};

/// Parts doubled in size after every this many parts when the input length is unknown.
const GROWTH_EVERY: u64 = 1000;

/// How to upload one object.
#[derive(Clone, Copy, Default)]
pub struct PutOptions<'a> {
    /// Replace an existing object (else the upload is refused up front and made
    /// conditional with `If-None-Match: *`).
    pub force: bool,
    /// Plaintext length if known (a file); `None` for a stream such as stdin.
    pub plaintext_len: Option<u64>,
    /// Engine tuning (threads).
    pub engine: EngineOptions<'a>,
    /// Called with the number of body bytes each time a part (or the object) is stored.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl std::fmt::Debug for PutOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutOptions")
            .field("force", &self.force)
            .field("plaintext_len", &self.plaintext_len)
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
    /// What happened to the replaced object's companion (`--force`): deleted only when it
    /// provably belonged to the replaced object, else left alone and said so.
    pub old_companion: CompanionCleanup,
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
            "--part-size {part_size} is outside S3's limits 5MiB..5GiB"
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

impl S3 {
    /// Encrypts `input` into the object at `url` under `dek` (wrapped as `stanzas`): the
    /// header goes to the metadata (or a companion object), the chunks to the body.
    pub fn put_encrypted<R: Read + Send>(
        &self,
        url: &S3Url,
        input: R,
        dek: &DataKey,
        stanzas: Vec<Stanza>,
        params: &EncryptParams<'_>,
        opts: &PutOptions<'_>,
    ) -> Result<PutReport> {
        url.require_object()?;
        let plan = part_plan_for(
            params.chunk_size,
            self.settings.part_size,
            opts.plaintext_len,
        )?;
        let existing = self.head(url)?;
        if existing.is_some() && !opts.force {
            return Err(Error::OutputExists(url.to_string()));
        }
        let mut salt = [0u8; SALT_LEN];
        keys::fill_random(&mut salt)?;
        let (header, cipher) = envelope::seal_header(dek, salt, stanzas, params)?;
        let header_bytes = header
            .to_bytes()
            .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
        let placement = object::place(
            &header_bytes,
            &header.commitment,
            &url.key,
            0,
            unique_suffix()?,
        )
        .map_err(Error::InvalidArgument)?;
        let metadata: BTreeMap<String, String> = placement.metadata.iter().cloned().collect();

        let live = live_register(self, url);
        let result = (|| {
            let companion = match &placement.companion {
                Some((ck, bytes)) => {
                    let curl = url.with_key(ck.clone());
                    live_update(live, |u| u.companion = Some(ck.clone()));
                    self.put_small(&curl, bytes.clone(), true)?;
                    Some(ck.clone())
                }
                None => None,
            };
            let mut sink = PartSink::new(self, url, metadata, plan, opts, live);
            let sealed = engine::seal(&cipher, params.chunk_size, input, &mut sink, &opts.engine);
            let r = match sealed {
                Ok(stats) => sink.finish().map(|(body_bytes, parts)| PutReport {
                    plaintext_bytes: stats.plaintext_bytes,
                    body_bytes,
                    parts,
                    companion,
                    old_companion: CompanionCleanup::Nothing,
                }),
                Err(e) => Err(sink.take_error().unwrap_or(e)),
            };
            if r.is_err() {
                sink.abort();
            }
            r
        })();
        if result.is_err()
            && let Some((ck, _)) = &placement.companion
        {
            let _ = self.delete(&url.with_key(ck.clone()));
        }
        live_unregister(live);
        let mut report = result?;
        // A replaced object's old companion would otherwise linger with its keys; but only
        // one named after this key and holding the old header is ours to delete.
        if let Some(old) = &existing {
            report.old_companion = self
                .clean_companion(url, &old.metadata, None, report.companion.as_deref())
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
    fn put_small(&self, url: &S3Url, bytes: Vec<u8>, exclusive: bool) -> Result<()> {
        let mut req = self
            .client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(bytes));
        if exclusive {
            req = req.if_none_match("*");
        }
        self.rt
            .block_on(req.send())
            .map(|_| ())
            .map_err(|e| precondition_as_exists(url, sdk_error(url, "PutObject", e)))
    }
}

/// 64 random bits for a companion object's name.
pub(super) fn unique_suffix_pub() -> Result<u64> {
    unique_suffix()
}

fn unique_suffix() -> Result<u64> {
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

/// Shared between the writer and the upload tasks.
#[derive(Default)]
struct Shared {
    parts: Vec<CompletedPart>,
    error: Option<Error>,
}

/// The engine's output: cuts the body into parts and hands them to upload tasks.
struct PartSink<'a> {
    s3: &'a S3,
    url: S3Url,
    metadata: BTreeMap<String, String>,
    plan: PartPlan,
    force: bool,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    live: u64,
    buf: Vec<u8>,
    /// Number of the part being filled (1-based).
    part: u64,
    upload_id: Option<String>,
    sem: Arc<Semaphore>,
    tasks: Vec<JoinHandle<()>>,
    shared: Arc<Mutex<Shared>>,
    body_bytes: u64,
}

impl<'a> PartSink<'a> {
    fn new(
        s3: &'a S3,
        url: &S3Url,
        metadata: BTreeMap<String, String>,
        plan: PartPlan,
        opts: &PutOptions<'a>,
        live: u64,
    ) -> PartSink<'a> {
        PartSink {
            s3,
            url: url.clone(),
            metadata,
            plan,
            force: opts.force,
            progress: opts.progress,
            live,
            buf: Vec::new(),
            part: 1,
            upload_id: None,
            sem: Arc::new(Semaphore::new(s3.settings.concurrency)),
            tasks: Vec::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
            body_bytes: 0,
        }
    }

    fn take_error(&mut self) -> Option<Error> {
        self.shared.lock().ok().and_then(|mut s| s.error.take())
    }

    fn failed(&self) -> bool {
        self.shared.lock().map_or(true, |s| s.error.is_some())
    }

    fn target(&self) -> usize {
        self.plan.part_len(self.part) as usize
    }

    /// Starts the multipart upload (on the first part that is known not to be the last).
    fn ensure_upload(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let url = &self.url;
        let out = self
            .s3
            .rt
            .block_on(
                self.s3
                    .client
                    .create_multipart_upload()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .content_type("application/octet-stream")
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .set_metadata(Some(self.metadata.clone().into_iter().collect()))
                    .send(),
            )
            .map_err(|e| sdk_error(url, "CreateMultipartUpload", e))?;
        let id = out.upload_id().map(str::to_string).ok_or_else(|| {
            Error::storage(format!(
                "CreateMultipartUpload {url}: the service returned no upload id"
            ))
        })?;
        live_update(self.live, |u| u.upload_id = Some(id.clone()));
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Sends the filled buffer as part `self.part` (waiting for a free slot).
    fn send_part(&mut self) -> Result<()> {
        let upload_id = self.ensure_upload()?;
        let body = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(0)));
        let len = body.len() as u64;
        let permit = self
            .s3
            .rt
            .block_on(Arc::clone(&self.sem).acquire_owned())
            .map_err(|_| Error::storage("upload slots closed"))?;
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let client = self.s3.client.clone();
        let url = self.url.clone();
        let shared = Arc::clone(&self.shared);
        let n = self.part as i32;
        let task = self.s3.rt.spawn(async move {
            let r = client
                .upload_part()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(upload_id)
                .part_number(n)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(body))
                .send()
                .await;
            let mut s = match shared.lock() {
                Ok(s) => s,
                Err(_) => return,
            };
            match r {
                Ok(out) => s.parts.push(
                    CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(out.e_tag)
                        .set_checksum_crc32(out.checksum_crc32)
                        .build(),
                ),
                Err(e) => {
                    if s.error.is_none() {
                        s.error = Some(sdk_error(&url, &format!("UploadPart {n} of"), e));
                    }
                }
            }
            drop(permit);
        });
        self.tasks.push(task);
        self.body_bytes += len;
        if let Some(p) = self.progress {
            // Reported when handed to the uploader; bounded lead of `concurrency` parts.
            p(len);
        }
        self.part += 1;
        // Allocated (exactly one part) when the next byte arrives.
        self.buf = Vec::new();
        Ok(())
    }

    /// Waits for every upload task.
    fn join_all(&mut self) {
        let tasks = std::mem::take(&mut self.tasks);
        self.s3.rt.block_on(async {
            for t in tasks {
                let _ = t.await;
            }
        });
    }

    /// Uploads what is left and completes the object; returns (body bytes, parts).
    fn finish(&mut self) -> Result<(u64, u64)> {
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let url = self.url.clone();
        if self.upload_id.is_none() {
            // Everything fit in one part: a single PutObject.
            let len = self.buf.len() as u64;
            let mut req = self
                .s3
                .client
                .put_object()
                .bucket(&url.bucket)
                .key(&url.key)
                .content_type("application/octet-stream")
                .set_metadata(Some(self.metadata.clone().into_iter().collect()))
                .body(ByteStream::from(std::mem::take(&mut self.buf)));
            if !self.force {
                req = req.if_none_match("*");
            }
            self.s3
                .rt
                .block_on(req.send())
                .map_err(|e| precondition_as_exists(&url, sdk_error(&url, "PutObject", e)))?;
            if let Some(p) = self.progress {
                p(len);
            }
            return Ok((len, 0));
        }
        if !self.buf.is_empty() {
            self.send_part()?;
        }
        self.join_all();
        if let Some(e) = self.take_error() {
            return Err(e);
        }
        let mut parts = self
            .shared
            .lock()
            .map(|mut s| std::mem::take(&mut s.parts))
            .map_err(|_| Error::storage("upload state poisoned"))?;
        parts.sort_by_key(|p| p.part_number());
        let count = parts.len() as u64;
        if count != self.part - 1 {
            return Err(Error::storage(format!(
                "{url}: {count} of {} parts were stored",
                self.part - 1
            )));
        }
        let Some(id) = self.upload_id.clone() else {
            return Err(Error::storage("no upload id"));
        };
        let mut req = self
            .s3
            .client
            .complete_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key)
            .upload_id(id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            );
        if !self.force {
            req = req.if_none_match("*");
        }
        self.s3.rt.block_on(req.send()).map_err(|e| {
            precondition_as_exists(&url, sdk_error(&url, "CompleteMultipartUpload", e))
        })?;
        self.upload_id = None; // completed: nothing to abort any more
        live_update(self.live, |u| u.upload_id = None);
        Ok((self.body_bytes, count))
    }

    /// Cancels in-flight parts and aborts the multipart upload (retried by the SDK).
    fn abort(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.join_all();
        if let Some(id) = self.upload_id.take() {
            let url = &self.url;
            let _ = self.s3.rt.block_on(
                self.s3
                    .client
                    .abort_multipart_upload()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .upload_id(id)
                    .send(),
            );
            live_update(self.live, |u| u.upload_id = None);
        }
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        if self.failed() {
            return Err(io::Error::other("an upload part failed"));
        }
        while !data.is_empty() {
            let target = self.target();
            if self.buf.len() == target {
                // Full, and more data follows: this part is not the last.
                if let Err(e) = self.send_part() {
                    // Keep the typed error (exit 6, with the service's code) for the caller.
                    let msg = e.to_string();
                    if let Ok(mut s) = self.shared.lock() {
                        s.error.get_or_insert(e);
                    }
                    return Err(io::Error::other(msg));
                }
            }
            let target = self.target();
            if self.buf.capacity() == 0 {
                self.buf.reserve_exact(target);
            }
            let take = (target - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
