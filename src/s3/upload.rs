//! Encrypt while uploading: the engine seals chunks on all cores (its own threads, never
//! the async executor's) and writes them, in order, into part buffers; each full part goes
//! through a bounded channel to a [`MultipartWriter`], which uploads at most `concurrency`
//! at a time. The engine blocks when every slot is busy, so memory stays bounded by
//! `(concurrency + 2) × part size` plus the engine's own buffers, whatever the input size.
//!
//! The same pieces serve both layers: [`S3::put_encrypted`] runs the engine under
//! `spawn_blocking` and feeds it from an `AsyncRead`; the blocking layer runs it on the
//! caller's thread with the caller's `Read`.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::live::{Guard, Leftover};
use super::transfer::{MultipartWriter, WriterOptions, Written};
use super::{
    CompanionCleanup, Head, MAX_OBJECT_SIZE, MAX_PART_SIZE, MAX_PARTS, MIN_PART_SIZE, S3, S3Url,
    object, sdk_error,
};
use crate::engine::{self, EngineOptions, StreamStats};
use crate::envelope::Sealing;
use crate::error::{Error, Result};
use crate::format::{Header, TAG_LEN, body_len_for};
use crate::keys;
use crate::primitives::stream::PayloadCipher;

/// Parts doubled in size after every this many parts when the input length is unknown.
const GROWTH_EVERY: u64 = 1000;

/// Bytes per buffer between an `AsyncRead` input and the sealing engine.
const FEED_BUF: usize = 256 * 1024;
/// Buffers between an `AsyncRead` input and the sealing engine (recycled).
const FEED_BUFS: usize = 4;

/// How to upload one object (async layer).
#[derive(Clone, Default)]
pub struct PutOptions {
    /// Replace an existing object (else the upload is refused up front and made
    /// conditional with `If-None-Match: *`).
    pub force: bool,
    /// Plaintext length if known (a file); `None` for a stream.
    pub plaintext_len: Option<u64>,
    /// Engine worker threads for the chunk crypto (0 = one per core).
    pub threads: usize,
    /// Called with the number of body bytes each time a part is handed to the uploader.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Cancels the upload: it aborts its multipart upload, deletes the companion it wrote
    /// and returns [`Error::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

impl std::fmt::Debug for PutOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutOptions")
            .field("force", &self.force)
            .field("plaintext_len", &self.plaintext_len)
            .field("threads", &self.threads)
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
    metadata: HashMap<String, String>,
    companion: Option<(String, Guard)>,
    force: bool,
}

impl Prepared {
    /// How the body's writer creates the object.
    pub(super) fn writer_options(&self) -> WriterOptions {
        WriterOptions {
            concurrency: 0,
            metadata: self.metadata.clone(),
            content_type: None,
            create_only: !self.force,
        }
    }

    /// Deletes the companion this upload wrote (the object was not stored).
    pub(super) async fn cleanup(&mut self) {
        if let Some((_, g)) = &mut self.companion {
            g.clean().await;
        }
    }
}

/// What the sealing engine hands the uploader.
pub(super) enum PartMsg {
    /// A full part that is not the last.
    Part(Bytes),
    /// The last part (possibly the whole object).
    Last(Bytes),
}

/// What the async input side hands the sealing engine.
pub(super) enum InMsg {
    Data(Vec<u8>),
    End,
    Failed(io::Error),
}

impl S3 {
    /// Encrypts `input` into the object at `url` as `sealing` prepares it (its header goes
    /// to the metadata or a companion object, the chunks to the body).
    ///
    /// The chunk crypto runs on the engine's threads (started with `spawn_blocking`); this
    /// future reads `input`, uploads parts and can be polled by any runtime flavor. If it
    /// fails, is cancelled through [`PutOptions::cancel`] (→ [`Error::Cancelled`]) or is
    /// dropped, the multipart upload is aborted and the companion deleted (in the
    /// background when dropped).
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
        let cancel = opts.cancel.clone().unwrap_or_default();
        let mut st = PutState::default();
        let outcome = {
            let work = self.put_work(&mut st, url, input, sealing, opts);
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
        opts: &PutOptions,
    ) -> Result<PutReport>
    where
        R: AsyncRead + Unpin,
    {
        let prepared = self
            .prepare_put(url, sealing.header(), opts.force, opts.plaintext_len)
            .await?;
        let plan = prepared.plan;
        let writer_opts = prepared.writer_options();
        let prepared = st.prepared.insert(prepared);
        let writer = st
            .writer
            .insert(MultipartWriter::new(self, url, writer_opts));
        let (part_tx, part_rx) = mpsc::channel(1);
        let (in_tx, in_rx) = mpsc::channel(2);
        let (ret_tx, ret_rx) = mpsc::unbounded_channel();
        let progress = opts.progress.clone();
        let threads = opts.threads;
        let engine = tokio::task::spawn_blocking(move || {
            let eo = EngineOptions {
                threads,
                ..EngineOptions::default()
            };
            let p = progress.as_deref().map(|f| f as &(dyn Fn(u64) + Sync));
            let mut sink = PartSink::new(part_tx, plan, p);
            let reader = ChannelReader {
                rx: in_rx,
                ret: ret_tx,
                cur: Vec::new(),
                pos: 0,
                done: false,
            };
            let chunk_size = sealing.header().chunk_size;
            seal_to_parts(sealing.cipher(), chunk_size, reader, &mut sink, &eo)
        });
        // Feed the engine while the parts go up; once the uploader is done (complete, or
        // failed), stop reading the input: an input that never yields again (a quiet
        // socket) must not keep a failed upload from returning.
        let uploaded = {
            let feeding = feed(input, in_tx, ret_rx);
            let uploading = upload_parts(writer, part_rx);
            tokio::pin!(feeding, uploading);
            let mut fed = false;
            loop {
                tokio::select! {
                    () = &mut feeding, if !fed => fed = true,
                    r = &mut uploading => break r,
                }
            }
        };
        let sealed = engine
            .await
            .map_err(|e| Error::storage(format!("the sealing engine stopped: {e}")))?;
        let (stats, written) = resolve(url, !prepared.force, sealed, uploaded)?;
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
    ) -> Result<Prepared> {
        url.require_object()?;
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
            0,
            unique_suffix()?,
        )
        .map_err(Error::InvalidArgument)?;
        let metadata: HashMap<String, String> = placement.metadata.iter().cloned().collect();
        let mut prepared = Prepared {
            plan,
            existing,
            metadata,
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
            if let Err(e) = self.put_small(&curl, bytes.clone(), true).await {
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
    ) -> Result<()> {
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

/// Uploads what the sealing engine sends until its last part, then completes; `None`
/// when the engine stopped before its last part (its own error says why).
pub(super) async fn upload_parts(
    writer: &mut MultipartWriter,
    mut rx: mpsc::Receiver<PartMsg>,
) -> Result<Option<Written>> {
    while let Some(m) = rx.recv().await {
        match m {
            PartMsg::Part(b) => writer.write_part(b).await?,
            PartMsg::Last(b) => return writer.finish(b).await.map(Some),
        }
    }
    Ok(None)
}

/// Seals `input` into parts for the uploader (on the engine's threads).
pub(super) fn seal_to_parts<R: Read + Send>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    input: R,
    sink: &mut PartSink<'_>,
    eo: &EngineOptions<'_>,
) -> Result<StreamStats> {
    let stats = engine::seal(cipher, chunk_size, input, &mut *sink, eo)?;
    sink.finish()
        .map_err(|e| Error::io("handing the last part to the uploader", e))?;
    Ok(stats)
}

/// Which failure to report when an upload stopped: the uploader's if it failed (the
/// engine then stopped because its parts or its input were cut off), else the engine's
/// (the input's, say).
pub(super) fn resolve(
    url: &S3Url,
    create_only: bool,
    sealed: Result<StreamStats>,
    uploaded: Result<Option<Written>>,
) -> Result<(StreamStats, Written)> {
    match (sealed, uploaded) {
        (Ok(s), Ok(Some(w))) => Ok((s, w)),
        (_, Err(u)) if create_only => Err(precondition_as_exists(url, u)),
        (_, Err(u)) => Err(u),
        (Err(e), Ok(_)) => Err(e),
        (Ok(_), Ok(None)) => Err(Error::storage(format!(
            "{url}: the encrypted body ended before its last part"
        ))),
    }
}

/// Reads an `AsyncRead` into recycled buffers for the engine's [`ChannelReader`].
async fn feed<R: AsyncRead + Unpin>(
    mut input: R,
    tx: mpsc::Sender<InMsg>,
    mut ret: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let mut allocated = 0;
    loop {
        let mut buf = match ret.try_recv() {
            Ok(b) => b,
            Err(_) if allocated < FEED_BUFS => {
                allocated += 1;
                Vec::with_capacity(FEED_BUF)
            }
            Err(_) => match ret.recv().await {
                Some(b) => b,
                None => return, // the engine stopped
            },
        };
        buf.resize(FEED_BUF, 0);
        match input.read(&mut buf).await {
            Ok(0) => {
                let _ = tx.send(InMsg::End).await;
                return;
            }
            Ok(n) => {
                buf.truncate(n);
                if tx.send(InMsg::Data(buf)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(InMsg::Failed(e)).await;
                return;
            }
        }
    }
}

/// The engine's input when the caller's input is async: buffers from [`feed`], returned
/// for reuse once read. A channel closed without an end marker is an error (the upload's
/// future was dropped or cancelled), never a short object.
struct ChannelReader {
    rx: mpsc::Receiver<InMsg>,
    ret: mpsc::UnboundedSender<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
    done: bool,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            let spent = std::mem::take(&mut self.cur);
            if spent.capacity() > 0 {
                let _ = self.ret.send(spent);
            }
            self.pos = 0;
            match self.rx.blocking_recv() {
                Some(InMsg::Data(b)) => self.cur = b,
                Some(InMsg::End) => {
                    self.done = true;
                    return Ok(0);
                }
                Some(InMsg::Failed(e)) => return Err(e),
                None => {
                    return Err(io::Error::other(
                        "the input stopped before its end (the upload was cancelled)",
                    ));
                }
            }
        }
        let rest = &self.cur[self.pos..];
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
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

/// The engine's output: cuts the body into parts of the plan and hands them to the
/// uploader through a bounded channel (blocking while it is full).
pub(super) struct PartSink<'a> {
    tx: mpsc::Sender<PartMsg>,
    plan: PartPlan,
    progress: Option<&'a (dyn Fn(u64) + Sync)>,
    buf: Vec<u8>,
    /// Number of the part being filled (1-based).
    part: u64,
}

impl<'a> PartSink<'a> {
    pub(super) fn new(
        tx: mpsc::Sender<PartMsg>,
        plan: PartPlan,
        progress: Option<&'a (dyn Fn(u64) + Sync)>,
    ) -> PartSink<'a> {
        PartSink {
            tx,
            plan,
            progress,
            buf: Vec::new(),
            part: 1,
        }
    }

    fn target(&self) -> usize {
        self.plan.part_len(self.part) as usize
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        let body = Bytes::from(std::mem::take(&mut self.buf));
        let len = body.len() as u64;
        let msg = if last {
            PartMsg::Last(body)
        } else {
            PartMsg::Part(body)
        };
        if self.tx.blocking_send(msg).is_err() {
            return Err(io::Error::other("the upload stopped"));
        }
        if let Some(p) = self.progress {
            // Reported when handed to the uploader; bounded lead of `concurrency` parts.
            p(len);
        }
        self.part += 1;
        Ok(())
    }

    /// Hands over the last part.
    pub(super) fn finish(&mut self) -> io::Result<()> {
        self.send(true)
    }
}

impl Write for PartSink<'_> {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let target = self.target();
            if self.buf.len() == target {
                // Full, and more data follows: this part is not the last.
                self.send(false)?;
            }
            let target = self.target();
            if self.buf.capacity() == 0 {
                // Allocated (exactly one part) when the first byte of a part arrives.
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
