//! Download + decrypt: ranged GETs of whole chunks, several in flight, delivered in order
//! to the engine's reader, which authenticates every chunk before it is written. A ranged
//! read fetches only the chunks covering the range.
//!
//! Segment buffers are recycled through a small free list instead of being allocated per
//! GET: with glibc, freeing one part-sized buffer raises the dynamic mmap threshold above
//! the part size, later buffers then come from per-thread heaps, and fragmentation pushed
//! a 2 GiB download's peak RSS ~50 % above the `(concurrency + 2) × part size` bound.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::{ObjectInfo, S3, S3Url, sdk_error, storage};
use crate::engine::{self, EngineOptions, OpenParams, StreamStats};
use crate::error::{Error, Result};
use crate::primitives::stream::PayloadCipher;
use crate::range::{self, ByteRange};

/// How to download one object.
#[derive(Clone, Copy, Default)]
pub struct GetOptions<'a> {
    /// Engine tuning (threads, progress in plaintext bytes).
    pub engine: EngineOptions<'a>,
}

impl std::fmt::Debug for GetOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOptions").finish_non_exhaustive()
    }
}

impl S3 {
    /// Decrypts the whole object to `output`; only authenticated plaintext is written.
    pub fn get_decrypted<W: Write>(
        &self,
        obj: &ObjectInfo,
        cipher: &PayloadCipher,
        output: W,
        opts: &GetOptions<'_>,
    ) -> Result<StreamStats> {
        obj.layout()?;
        let reader = self.segments(obj, 0, obj.head.content_length);
        let err = Arc::clone(&reader.error);
        let r = engine::open(
            cipher,
            obj.header.chunk_size,
            reader,
            output,
            OpenParams::default(),
            &opts.engine,
        );
        take_download_error(r, &err)
    }

    /// Decrypts `range` of the plaintext with one ranged GET of the covering chunks, planned
    /// by [`range::plan_authenticated`]: when the range depends on where the plaintext ends
    /// (`START-`, `-N`, a range reaching or past the end, an unsatisfiable one), a small
    /// GET of the final chunk authenticates the length first, so nothing is written, and no
    /// "bad range" is reported, on the strength of an unauthenticated Content-Length.
    /// Every GET is pinned to the ETag (and version id) of the HEAD.
    pub fn get_range_decrypted<W: Write>(
        &self,
        obj: &ObjectInfo,
        cipher: &PayloadCipher,
        range: ByteRange,
        output: W,
        opts: &GetOptions<'_>,
    ) -> Result<StreamStats> {
        let range = range.validate()?;
        let layout = obj.layout()?;
        let hl = obj.header_len;
        let plan = range::plan_authenticated(range, &layout, cipher, |offset, len| {
            self.fetch_blocking(obj, offset - hl, len)
        })?;
        let (start, end) = plan.ciphertext_span(&layout);
        let reader = self.segments(obj, start - hl, end - hl);
        let err = Arc::clone(&reader.error);
        let r = engine::open(
            cipher,
            obj.header.chunk_size,
            reader,
            output,
            plan.open_params(&layout),
            &opts.engine,
        );
        take_download_error(r, &err)
    }

    /// A reader over body bytes `[start, end)`, fetched as chunk-aligned ranged GETs with
    /// up to `concurrency` in flight.
    fn segments(&self, obj: &ObjectInfo, start: u64, end: u64) -> SegmentReader {
        let stride = u64::from(obj.header.chunk_size) + crate::format::TAG_LEN as u64;
        let seg = (self.settings.part_size.div_ceil(stride).max(1)) * stride;
        let mut ranges = Vec::new();
        let mut a = start;
        while a < end {
            let b = (a + seg).min(end);
            ranges.push((a, b - a));
            a = b;
        }
        let fetcher = Fetcher::new(self, obj);
        pipeline(
            &self.rt,
            ranges,
            self.settings.concurrency,
            move |buf, off, len| {
                let f = fetcher.clone();
                async move { f.fetch_into(buf, off, len).await }
            },
        )
    }

    fn fetch_blocking(&self, obj: &ObjectInfo, off: u64, len: u64) -> Result<Vec<u8>> {
        let f = Fetcher::new(self, obj);
        self.rt.block_on(f.fetch_into(Vec::new(), off, len))
    }
}

/// Runs `fetch(buffer, offset, length)` for every range on `rt`, up to `concurrency` at a
/// time, and returns a reader of their bytes in order. Buffers come from a [`Pool`] fed
/// by the reader, so a download of any size allocates at most `concurrency + 1` of them.
fn pipeline<F, Fut>(
    rt: &tokio::runtime::Runtime,
    ranges: Vec<(u64, u64)>,
    concurrency: usize,
    fetch: F,
) -> SegmentReader
where
    F: Fn(Vec<u8>, u64, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<u8>>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>>>(1);
    let pool = Pool::default();
    let fetch_pool = pool.clone();
    rt.spawn(async move {
        let mut s = futures_util::stream::iter(ranges)
            .map(|(off, len)| fetch(fetch_pool.take(), off, len))
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
    SegmentReader {
        rx,
        cur: Vec::new(),
        pos: 0,
        pool,
        error: Arc::new(Mutex::new(None)),
    }
}

/// The engine reports a failed read as an I/O error; the real cause is the download's.
fn take_download_error(
    r: Result<StreamStats>,
    slot: &Arc<Mutex<Option<Error>>>,
) -> Result<StreamStats> {
    match r {
        Err(e) => Err(slot.lock().ok().and_then(|mut s| s.take()).unwrap_or(e)),
        ok => ok,
    }
}

/// One object version, pinned by ETag (and version id), fetched by byte range.
#[derive(Clone)]
struct Fetcher {
    client: aws_sdk_s3::Client,
    url: S3Url,
    etag: Option<String>,
    version_id: Option<String>,
    attempts: u32,
}

impl Fetcher {
    fn new(s3: &S3, obj: &ObjectInfo) -> Fetcher {
        Fetcher {
            client: s3.client.clone(),
            url: obj.url.clone(),
            etag: obj.head.etag.clone(),
            version_id: obj.head.version_id.clone(),
            attempts: s3.settings.max_attempts.max(1),
        }
    }

    /// GETs `len` bytes at `off` into `buf` (cleared first; its allocation is reused); a
    /// body cut off mid-transfer is retried (the SDK retries failed requests, not failed
    /// body reads).
    async fn fetch_into(&self, mut buf: Vec<u8>, off: u64, len: u64) -> Result<Vec<u8>> {
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
                .set_if_match(self.etag.clone())
                .set_version_id(self.version_id.clone())
                .send()
                .await
                .map_err(|e| sdk_error(url, "GetObject", e))?;
            match read_exactly(r.body, &mut buf, len).await {
                Ok(()) => {
                    if buf.len() as u64 != len {
                        return Err(storage(
                            url,
                            "GetObject",
                            &format!(
                                "asked for {len} bytes at offset {off}, got {} (the object changed?)",
                                buf.len()
                            ),
                        ));
                    }
                    return Ok(buf);
                }
                Err(e) if attempt < self.attempts => {
                    let _ = e;
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

/// Reads a response body into `buf` (cleared, then grown to `len` if needed: one copy, no
/// second contiguous buffer as `collect().into_bytes()` would make); stops past `len`
/// bytes.
async fn read_exactly(
    mut body: aws_sdk_s3::primitives::ByteStream,
    buf: &mut Vec<u8>,
    len: u64,
) -> std::result::Result<(), aws_sdk_s3::primitives::ByteStreamError> {
    buf.clear();
    buf.reserve_exact(len as usize);
    while let Some(chunk) = body.try_next().await? {
        let room = (len as usize).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room + 1)]);
        if buf.len() > len as usize {
            break; // more than asked for: reported by the caller as a length mismatch
        }
    }
    Ok(())
}

/// Segment buffers the reader has drained (it returns each before it waits for the next),
/// for the next GETs: each buffer is allocated once, and at most `concurrency + 1` exist
/// (see [`pipeline`]).
#[derive(Clone, Default)]
struct Pool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
    /// How many times `take` found the list empty (a new buffer gets allocated then).
    fresh: Arc<std::sync::atomic::AtomicUsize>,
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

/// The engine's input: segments in order, from the download tasks.
struct SegmentReader {
    rx: mpsc::Receiver<Result<Vec<u8>>>,
    cur: Vec<u8>,
    pos: usize,
    pool: Pool,
    error: Arc<Mutex<Option<Error>>>,
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            self.pool.give(std::mem::take(&mut self.cur));
            self.pos = 0;
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => {
                    let msg = e.to_string();
                    if let Ok(mut s) = self.error.lock() {
                        *s = Some(e);
                    }
                    return Err(io::Error::other(msg));
                }
                None => return Ok(0),
            }
        }
        let rest = &self.cur[self.pos..];
        let n = buf.len().min(rest.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake fetch that fills `len` bytes with a pattern of the offset, after a delay
    /// that varies per segment, so segments finish out of order.
    async fn fake(mut buf: Vec<u8>, off: u64, len: u64) -> Result<Vec<u8>> {
        tokio::time::sleep(Duration::from_micros((off * 7919) % 3000)).await;
        buf.clear();
        buf.extend((off..off + len).map(|i| (i % 251) as u8));
        Ok(buf)
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("runtime")
    }

    #[test]
    fn segments_arrive_in_order_with_at_most_concurrency_plus_one_buffers() {
        let rt = runtime();
        for concurrency in [1usize, 4] {
            let seg = 2048u64;
            let total = 200 * seg + 123;
            let ranges: Vec<(u64, u64)> = (0..total)
                .step_by(seg as usize)
                .map(|a| (a, seg.min(total - a)))
                .collect();
            let mut r = pipeline(&rt, ranges, concurrency, fake);
            let pool = r.pool.clone();
            let mut out = Vec::new();
            let mut piece = [0u8; 1000];
            loop {
                // A slow reader (≥ 2 ms per segment, fetches take < 3 ms and overlap), so
                // the fetches run ahead and fill every slot.
                std::thread::sleep(Duration::from_micros(1000));
                let n = r.read(&mut piece).expect("read");
                if n == 0 {
                    break;
                }
                out.extend_from_slice(&piece[..n]);
            }
            let want: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
            assert!(out == want, "bytes out of order or missing");
            let fresh = pool.fresh.load(std::sync::atomic::Ordering::Relaxed);
            assert!(
                fresh <= concurrency + 1,
                "{fresh} buffers allocated for concurrency {concurrency}"
            );
        }
    }

    #[test]
    fn a_failed_segment_ends_the_stream_with_its_error() {
        let rt = runtime();
        let ranges: Vec<(u64, u64)> = (0..10).map(|i| (i * 100, 100)).collect();
        let mut r = pipeline(&rt, ranges, 3, |buf, off, len| async move {
            if off == 500 {
                Err(Error::InvalidArgument("segment 5 failed".into()))
            } else {
                fake(buf, off, len).await
            }
        });
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).expect_err("must fail");
        assert!(e.to_string().contains("segment 5 failed"), "{e}");
        assert_eq!(out.len(), 500, "the five segments before the failure");
        let slot = r.error.lock().expect("lock").take();
        assert!(matches!(slot, Some(Error::InvalidArgument(_))), "{slot:?}");
    }
}
