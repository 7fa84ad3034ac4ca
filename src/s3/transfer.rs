//! Plain S3 transfers, knowing nothing of sealstream's format: a multipart writer and a
//! ranged reader. The object form ([`super::S3::put_encrypted`],
//! [`super::S3::get_decrypted`]) is built on them, and so is `examples/s3_plain.rs`
//! (a plain upload and download at the same concurrency, to measure what encryption costs).
//!
//! Both bound their memory: the writer holds at most `concurrency` parts in flight (its
//! caller holds the one being filled), the reader at most `concurrency + 1` segments.
//! Both run on the caller's tokio runtime (parts and GETs are tasks on it); neither starts
//! a thread of its own.

use std::io;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::attributes::{ObjectAttributes, set_object_attributes};
use super::live::{Guard, Leftover};
use super::{S3, S3Url, sdk_error, storage};
use crate::error::{Error, Result};

/// How a [`MultipartWriter`] creates its object.
#[derive(Debug, Clone, Default)]
pub struct WriterOptions {
    /// Parts uploaded at once (at least 1); `0` takes the handle's setting.
    pub concurrency: usize,
    /// Content-Type, user metadata, tags, storage class, server-side encryption, checksum
    /// algorithm and ACL of the object.
    pub attributes: ObjectAttributes,
    /// Create only: never replace an existing object (`If-None-Match: *` on the
    /// `PutObject` or `CompleteMultipartUpload`), so a racing writer is never overwritten.
    pub create_only: bool,
    /// Replace only the version read: `If-Match: <ETag>` on the `PutObject` or
    /// `CompleteMultipartUpload` (S3 answers 412 if the object changed meanwhile).
    pub if_match: Option<String>,
}

/// What a finished [`MultipartWriter`] stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Body bytes.
    pub bytes: u64,
    /// Parts (0 when everything fitted in one `PutObject`).
    pub parts: u64,
    /// The new object's ETag.
    pub etag: Option<String>,
    /// The new object's version id (versioned buckets).
    pub version_id: Option<String>,
}

/// Writes one object as parts of the caller's choosing: every part but the last goes
/// through [`MultipartWriter::write_part`] (S3 wants them ≥ 5 MiB), the last through
/// [`MultipartWriter::finish`]. An object that is only a last part is one `PutObject`.
///
/// Parts are uploaded by tasks on the current runtime, at most `concurrency` at once;
/// `write_part` waits for a free slot, so memory stays bounded whatever the object size.
/// On failure call [`MultipartWriter::abort`]; a writer dropped before it finished (its
/// future was dropped) aborts the multipart upload in the background, and the handle's
/// [`S3::abort_all`] reaches it too.
pub struct MultipartWriter {
    s3: S3,
    url: S3Url,
    opts: WriterOptions,
    upload_id: Option<String>,
    guard: Option<Guard>,
    next: i32,
    inflight: JoinSet<Result<CompletedPart>>,
    parts: Vec<CompletedPart>,
    bytes: u64,
}

impl std::fmt::Debug for MultipartWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartWriter")
            .field("url", &self.url)
            .field("upload_id", &self.upload_id)
            .field("parts", &(self.next - 1))
            .finish_non_exhaustive()
    }
}

impl MultipartWriter {
    /// A writer for `url` (nothing is sent before the first part).
    pub fn new(s3: &S3, url: &S3Url, mut opts: WriterOptions) -> MultipartWriter {
        if opts.concurrency == 0 {
            opts.concurrency = s3.settings.concurrency.max(1);
        }
        MultipartWriter {
            s3: s3.clone(),
            url: url.clone(),
            opts,
            upload_id: None,
            guard: None,
            next: 1,
            inflight: JoinSet::new(),
            parts: Vec::new(),
            bytes: 0,
        }
    }

    /// Body bytes handed over so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Starts the multipart upload, once.
    async fn ensure_upload(&mut self) -> Result<String> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let url = &self.url;
        let a = &self.opts.attributes;
        let req = self
            .s3
            .client
            .create_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key);
        let out = set_object_attributes!(req, a, a.metadata.clone())
            .send()
            .await
            .map_err(|e| sdk_error(&self.s3.endpoint, url, "CreateMultipartUpload", e))?;
        let id = out.upload_id().map(str::to_string).ok_or_else(|| {
            Error::storage(format!(
                "CreateMultipartUpload {url}: the service returned no upload id"
            ))
        })?;
        self.guard = Some(Guard::new(
            &self.s3.client,
            &self.s3.live,
            Leftover::Upload {
                bucket: url.bucket.clone(),
                key: url.key.clone(),
                upload_id: id.clone(),
            },
        ));
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Waits for one part in flight; its failure is the writer's.
    async fn reap_one(&mut self) -> Result<()> {
        match self.inflight.join_next().await {
            Some(Ok(Ok(part))) => {
                self.parts.push(part);
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(Error::storage(format!(
                "UploadPart {}: the upload task failed: {e}",
                self.url
            ))),
            None => Ok(()),
        }
    }

    /// Resolves only once a part in flight has failed, with that part's error (parts that
    /// succeed meanwhile are recorded); pending while none has, and forever when nothing
    /// is in flight. Cancel-safe: a caller races it against reading the next part's input,
    /// so that a failed upload returns even while its input stays silent (a quiet socket).
    pub async fn failed(&mut self) -> Error {
        loop {
            if self.inflight.is_empty() {
                std::future::pending::<()>().await;
            }
            if let Err(e) = self.reap_one().await {
                return e;
            }
        }
    }

    /// Uploads a part that is not the last (≥ 5 MiB on S3), waiting while `concurrency`
    /// parts are in flight. The first failure of any part is returned here or by
    /// [`MultipartWriter::finish`].
    pub async fn write_part(&mut self, body: Bytes) -> Result<()> {
        let upload_id = self.ensure_upload().await?;
        while self.inflight.len() >= self.opts.concurrency {
            self.reap_one().await?;
        }
        let n = self.next;
        self.next += 1;
        self.bytes += body.len() as u64;
        let url = self.url.clone();
        let endpoint = Arc::clone(&self.s3.endpoint);
        let req = self
            .s3
            .client
            .upload_part()
            .bucket(&url.bucket)
            .key(&url.key)
            .upload_id(upload_id)
            .part_number(n)
            .checksum_algorithm(self.opts.attributes.checksum())
            .body(ByteStream::from(body));
        self.inflight.spawn(async move {
            let out = req
                .send()
                .await
                .map_err(|e| sdk_error(&endpoint, &url, &format!("UploadPart {n} of"), e))?;
            // Whichever checksum the part was sent with (the others are absent).
            Ok(CompletedPart::builder()
                .part_number(n)
                .set_e_tag(out.e_tag)
                .set_checksum_crc32(out.checksum_crc32)
                .set_checksum_crc32_c(out.checksum_crc32_c)
                .set_checksum_crc64_nvme(out.checksum_crc64_nvme)
                .set_checksum_sha1(out.checksum_sha1)
                .set_checksum_sha256(out.checksum_sha256)
                .build())
        });
        Ok(())
    }

    /// Stores `last` as the last part and completes the object (a single `PutObject` when
    /// no part was written before). With [`WriterOptions::create_only`], an object created
    /// meanwhile fails it with [`crate::error::ServiceErrorKind::PreconditionFailed`].
    pub async fn finish(&mut self, last: Bytes) -> Result<Written> {
        let url = self.url.clone();
        if self.upload_id.is_none() {
            let len = last.len() as u64;
            let a = &self.opts.attributes;
            let req = self
                .s3
                .client
                .put_object()
                .bucket(&url.bucket)
                .key(&url.key)
                .set_if_match(self.opts.if_match.clone())
                .body(ByteStream::from(last));
            let mut req = set_object_attributes!(req, a, a.metadata.clone());
            if self.opts.create_only {
                req = req.if_none_match("*");
            }
            let out = req
                .send()
                .await
                .map_err(|e| sdk_error(&self.s3.endpoint, &url, "PutObject", e))?;
            self.bytes = len;
            return Ok(Written {
                bytes: len,
                parts: 0,
                etag: out.e_tag().map(str::to_string),
                version_id: out.version_id().map(str::to_string),
            });
        }
        if !last.is_empty() {
            self.write_part(last).await?;
        }
        while !self.inflight.is_empty() {
            self.reap_one().await?;
        }
        let mut parts = std::mem::take(&mut self.parts);
        parts.sort_by_key(|p| p.part_number());
        let count = parts.len() as u64;
        if count != (self.next - 1) as u64 {
            return Err(Error::storage(format!(
                "{url}: {count} of {} parts were stored",
                self.next - 1
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
            )
            .set_if_match(self.opts.if_match.clone());
        if self.opts.create_only {
            req = req.if_none_match("*");
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_error(&self.s3.endpoint, &url, "CompleteMultipartUpload", e))?;
        // Completed: nothing to abort any more.
        self.upload_id = None;
        if let Some(mut g) = self.guard.take() {
            g.disarm();
        }
        Ok(Written {
            bytes: self.bytes,
            parts: count,
            etag: out.e_tag().map(str::to_string),
            version_id: out.version_id().map(str::to_string),
        })
    }

    /// Cancels the parts in flight and aborts the multipart upload (retried by the SDK);
    /// nothing of this object is left.
    pub async fn abort(&mut self) {
        self.inflight.abort_all();
        while self.inflight.join_next().await.is_some() {}
        self.upload_id = None;
        if let Some(mut g) = self.guard.take() {
            g.clean().await;
        }
    }
}

// ---- ranged reads ---------------------------------------------------------------------

/// One stored version of an object, pinned by ETag (and version id): every ranged GET
/// carries `If-Match`, so a read never mixes bytes of two versions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    /// The ETag the reads must match.
    pub etag: Option<String>,
    /// The version to read (versioned buckets).
    pub version_id: Option<String>,
}

/// Reads bytes `[start, end)` of one object version as ranged GETs of `segment` bytes,
/// up to `concurrency` in flight ahead of the reader, delivered in order. A body cut off
/// mid-transfer is retried (the SDK retries failed requests, not failed body reads).
///
/// A segment is kept as the pieces the HTTP client received (`Bytes`, no copy into one
/// contiguous buffer): no part-sized buffer is allocated per GET, and the bytes are copied
/// once, by the consumer, where they are needed. Memory stays bounded by what is in
/// flight: at most `concurrency + 1` segments exist at once.
///
/// Two ways to consume it: segment by segment ([`RangedReader::next_segment`] +
/// [`RangedReader::recycle`], contiguous buffers recycled through a small free list), or as
/// an [`AsyncRead`] of the bytes in order (what the decrypting download feeds to
/// `aio::open`; the pieces are copied straight into the caller's buffer); do not mix
/// them. As an `AsyncRead`, a failed GET is an `io::Error` carrying the typed [`Error`]
/// (`Error::Storage` with its kind), which the async drivers hand back as is, and every
/// later read fails too.
pub struct RangedReader {
    rx: mpsc::Receiver<Result<Segment>>,
    pool: Pool,
    task: tokio::task::JoinHandle<()>,
    /// What is left of the segment being read by the `AsyncRead` side.
    cur: Segment,
    failed: bool,
}

/// One ranged GET's bytes, in order, as the HTTP client handed them over.
pub(crate) type Segment = std::collections::VecDeque<Bytes>;

impl std::fmt::Debug for RangedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangedReader").finish_non_exhaustive()
    }
}

impl RangedReader {
    /// Starts the GETs (on the current runtime: call inside one). `concurrency` 0 takes
    /// the handle's setting.
    pub fn new(
        s3: &S3,
        url: &S3Url,
        pin: Pin,
        start: u64,
        end: u64,
        segment: u64,
        concurrency: usize,
    ) -> RangedReader {
        Self::spawn_on(
            &tokio::runtime::Handle::current(),
            s3,
            url,
            pin,
            start,
            end,
            segment,
            concurrency,
        )
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn_on(
        rt: &tokio::runtime::Handle,
        s3: &S3,
        url: &S3Url,
        pin: Pin,
        start: u64,
        end: u64,
        segment: u64,
        concurrency: usize,
    ) -> RangedReader {
        let concurrency = if concurrency == 0 {
            s3.settings.concurrency
        } else {
            concurrency
        };
        let segment = segment.max(1);
        let mut ranges = Vec::new();
        let mut a = start;
        while a < end {
            let b = (a + segment).min(end);
            ranges.push((a, b - a));
            a = b;
        }
        let fetcher = Fetcher::new(s3, url, pin);
        pipeline(rt, ranges, concurrency, move |off, len| {
            let f = fetcher.clone();
            async move { f.fetch_pieces(off, len).await }
        })
    }

    /// The next segment as one contiguous buffer, in order; `None` at the end. A failed
    /// GET ends the stream with its error. Give the buffer back with
    /// [`RangedReader::recycle`] to bound memory.
    pub async fn next_segment(&mut self) -> Option<Result<Vec<u8>>> {
        let seg = match self.rx.recv().await? {
            Ok(seg) => seg,
            Err(e) => return Some(Err(e)),
        };
        let mut buf = self.pool.take();
        buf.clear();
        buf.reserve_exact(seg.iter().map(Bytes::len).sum());
        for piece in &seg {
            buf.extend_from_slice(piece);
        }
        Some(Ok(buf))
    }

    /// Returns a drained segment buffer for the next [`RangedReader::next_segment`].
    pub fn recycle(&self, buf: Vec<u8>) {
        self.pool.give(buf);
    }
}

impl Drop for RangedReader {
    fn drop(&mut self) {
        // Nobody reads any more: stop the GETs.
        self.task.abort();
    }
}

/// GETs `len` bytes at `off` of one object version, retrying a body cut off mid-way.
pub async fn fetch(s3: &S3, url: &S3Url, pin: &Pin, off: u64, len: u64) -> Result<Vec<u8>> {
    let pieces = Fetcher::new(s3, url, pin.clone())
        .fetch_pieces(off, len)
        .await?;
    let mut buf = Vec::with_capacity(len as usize);
    for piece in &pieces {
        buf.extend_from_slice(piece);
    }
    Ok(buf)
}

/// Runs `fetch(offset, length)` for every range on `rt`, up to `concurrency` at a time, and
/// returns a reader of their bytes in order. At most `concurrency + 1` segments exist at
/// once: the GETs in flight, the one waiting in the channel and the one being read.
pub(crate) fn pipeline<F, Fut>(
    rt: &tokio::runtime::Handle,
    ranges: Vec<(u64, u64)>,
    concurrency: usize,
    fetch: F,
) -> RangedReader
where
    F: Fn(u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Segment>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Segment>>(1);
    let task = rt.spawn(async move {
        let mut s = futures_util::stream::iter(ranges)
            .map(|(off, len)| fetch(off, len))
            .buffered(concurrency.max(1));
        // Room in the channel first, then the next segment: no finished segment waits
        // outside the channel. A segment taken out of `s` leaves `concurrency - 1` GETs
        // in flight until the next poll, so GETs + channel + reader ≤ `concurrency + 1`.
        while let Ok(permit) = tx.reserve().await {
            let Some(r) = s.next().await else { break };
            let stop = r.is_err();
            permit.send(r);
            if stop {
                break;
            }
        }
    });
    RangedReader {
        rx,
        pool: Pool::default(),
        task,
        cur: Segment::new(),
        failed: false,
    }
}

/// One object version, fetched by byte range.
#[derive(Clone)]
struct Fetcher {
    client: aws_sdk_s3::Client,
    endpoint: Arc<str>,
    url: S3Url,
    pin: Pin,
    attempts: u32,
}

impl Fetcher {
    fn new(s3: &S3, url: &S3Url, pin: Pin) -> Fetcher {
        Fetcher {
            client: s3.client.clone(),
            endpoint: Arc::clone(&s3.endpoint),
            url: url.clone(),
            pin,
            attempts: s3.settings.max_attempts.max(1),
        }
    }

    /// GETs `len` bytes at `off` as the pieces the HTTP client received; a body cut off
    /// mid-transfer is retried (the SDK retries failed requests, not failed body reads).
    async fn fetch_pieces(&self, off: u64, len: u64) -> Result<Segment> {
        let url = &self.url;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = self
                .client
                .get_object()
                .bucket(&url.bucket)
                .key(&url.key)
                .range(format!("bytes={}-{}", off, off + len - 1))
                .set_if_match(self.pin.etag.clone())
                .set_version_id(self.pin.version_id.clone())
                .send()
                .await
                .map_err(|e| sdk_error(&self.endpoint, url, "GetObject", e))?;
            match read_pieces(r.body, len).await {
                Ok((pieces, got)) => {
                    if got != len {
                        return Err(storage(
                            url,
                            "GetObject",
                            &format!(
                                "asked for {len} bytes at offset {off}, got {got} (the object changed?)"
                            ),
                        ));
                    }
                    return Ok(pieces);
                }
                Err(_) if attempt < self.attempts => {
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                }
                Err(e) => {
                    return Err(storage(
                        url,
                        "GetObject",
                        &format!("reading the body failed after {attempt} attempts: {e}"),
                    ));
                }
            }
        }
    }
}

/// Reads a response body as its pieces (no copy) and their total length; stops past `len`
/// bytes (one byte more is kept, so that the caller reports the length mismatch).
async fn read_pieces(
    mut body: ByteStream,
    len: u64,
) -> std::result::Result<(Segment, u64), aws_sdk_s3::primitives::ByteStreamError> {
    let mut pieces = Segment::new();
    let mut got = 0u64;
    while let Some(mut chunk) = body.try_next().await? {
        let room = len.saturating_sub(got);
        chunk.truncate(
            chunk
                .len()
                .min(usize::try_from(room + 1).unwrap_or(usize::MAX)),
        );
        got += chunk.len() as u64;
        if !chunk.is_empty() {
            pieces.push_back(chunk);
        }
        if got > len {
            break; // more than asked for: reported by the caller as a length mismatch
        }
    }
    Ok((pieces, got))
}

/// Contiguous segment buffers the caller of [`RangedReader::next_segment`] gave back, for
/// the next segments: each buffer is allocated once, and no more exist than segments the
/// caller holds at once plus one.
#[derive(Clone, Default)]
pub(crate) struct Pool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    /// How many times `take` found the list empty (a new buffer gets allocated then).
    pub(crate) fresh: Arc<std::sync::atomic::AtomicUsize>,
}

impl Pool {
    fn take(&self) -> Vec<u8> {
        match self.free.lock().ok().and_then(|mut free| free.pop()) {
            Some(buf) => buf,
            None => {
                self.fresh
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Vec::new()
            }
        }
    }

    fn give(&self, buf: Vec<u8>) {
        if buf.capacity() > 0
            && let Ok(mut free) = self.free.lock()
        {
            free.push(buf);
        }
    }
}

impl AsyncRead for RangedReader {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.failed {
            return Poll::Ready(Err(io::Error::other(
                "a ranged GET failed earlier (see the first error); nothing more is read",
            )));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        // Copies as many pieces of the current segment as fit (a batch takes many); the
        // next segment is received only by a read that copied nothing yet, so an error
        // never arrives after bytes of the same read.
        let mut copied = false;
        loop {
            let Some(piece) = this.cur.front_mut() else {
                if copied {
                    return Poll::Ready(Ok(()));
                }
                match this.rx.poll_recv(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(seg))) => {
                        this.cur = seg;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        this.failed = true;
                        return Poll::Ready(Err(io::Error::other(e)));
                    }
                    Poll::Ready(None) => return Poll::Ready(Ok(())),
                }
            };
            let n = buf.remaining().min(piece.len());
            buf.put_slice(&piece[..n]);
            copied = true;
            if n == piece.len() {
                this.cur.pop_front();
            } else {
                bytes::Buf::advance(piece, n);
            }
            if buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Segments alive (fetching, queued or being read) now and at most.
    #[derive(Default)]
    struct Live {
        now: AtomicUsize,
        max: AtomicUsize,
    }

    /// Owns a segment's last piece: the segment counts as alive until it is dropped.
    struct Counted(Vec<u8>, Arc<Live>);

    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.now.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// A fake fetch that yields `len` bytes of a pattern of the offset, in pieces of 300
    /// bytes, after a delay that varies per segment, so segments finish out of order.
    async fn fake(live: Arc<Live>, off: u64, len: u64) -> Result<Segment> {
        let n = live.now.fetch_add(1, Ordering::SeqCst) + 1;
        live.max.fetch_max(n, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_micros((off * 7919) % 3000)).await;
        let all: Vec<u8> = (off..off + len).map(|i| (i % 251) as u8).collect();
        let mut seg = Segment::new();
        let mut pieces = all.chunks(300).peekable();
        while let Some(p) = pieces.next() {
            seg.push_back(if pieces.peek().is_none() {
                Bytes::from_owner(Counted(p.to_vec(), Arc::clone(&live)))
            } else {
                Bytes::copy_from_slice(p)
            });
        }
        Ok(seg)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn segments_arrive_in_order_with_at_most_concurrency_plus_one_alive() {
        use tokio::io::AsyncReadExt;
        let rt = runtime();
        for concurrency in [1usize, 4] {
            let seg = 2048u64;
            let total = 200 * seg + 123;
            let ranges: Vec<(u64, u64)> = (0..total)
                .step_by(seg as usize)
                .map(|a| (a, seg.min(total - a)))
                .collect();
            let live = Arc::new(Live::default());
            let l = Arc::clone(&live);
            let mut r = pipeline(rt.handle(), ranges, concurrency, move |off, len| {
                fake(Arc::clone(&l), off, len)
            });
            let out = rt.block_on(async {
                let mut out = Vec::new();
                let mut piece = [0u8; 1000];
                loop {
                    // A slow reader (≥ 2 ms per segment, fetches take < 3 ms and overlap),
                    // so the fetches run ahead and fill every slot.
                    tokio::time::sleep(Duration::from_micros(1000)).await;
                    let n = r.read(&mut piece).await.expect("read");
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&piece[..n]);
                }
                out
            });
            let want: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            assert!(out == want, "bytes out of order or missing");
            let max = live.max.load(Ordering::SeqCst);
            assert!(
                max <= concurrency + 1,
                "{max} segments alive at once for concurrency {concurrency}"
            );
            assert!(max >= concurrency, "the GETs ran ahead ({max} at once)");
            drop(r);
            assert_eq!(
                live.now.load(Ordering::SeqCst),
                0,
                "every segment was freed"
            );
        }
    }

    #[test]
    fn a_failed_segment_ends_the_stream_with_its_typed_error() {
        use tokio::io::AsyncReadExt;
        let rt = runtime();
        let ranges: Vec<(u64, u64)> = (0..10).map(|i| (i * 100, 100)).collect();
        let live = Arc::new(Live::default());
        let mut r = pipeline(rt.handle(), ranges, 3, move |off, len| {
            let live = Arc::clone(&live);
            async move {
                if off == 500 {
                    Err(Error::InvalidArgument("segment 5 failed".into()))
                } else {
                    fake(live, off, len).await
                }
            }
        });
        let mut out = Vec::new();
        let e = rt.block_on(r.read_to_end(&mut out)).expect_err("must fail");
        assert_eq!(out.len(), 500, "the five segments before the failure");
        // The typed error travels inside the io::Error; the drivers take it out.
        let typed = crate::stream::io_error("reading input", e);
        assert!(matches!(typed, Error::InvalidArgument(_)), "{typed:?}");
        assert!(typed.to_string().contains("segment 5 failed"), "{typed}");
        // Nothing after a failure reads as an end of stream.
        let mut more = [0u8; 10];
        assert!(rt.block_on(r.read(&mut more)).is_err());
    }
}
