//! Download + decrypt: ranged GETs of whole chunks, several in flight, delivered in order
//! to the engine's reader, which authenticates every chunk before it is written. A ranged
//! read fetches only the chunks covering the range.

use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
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

    /// Decrypts `range` of the plaintext with one ranged GET of the covering chunks (a
    /// second, one-chunk GET only when the range is unsatisfiable for the claimed length,
    /// to tell truncation from a bad range).
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
        let last = layout.chunk_count - 1;
        let claimed = layout.plaintext_len;
        let unsatisfiable = match range {
            ByteRange::Inclusive(s, _) | ByteRange::From(s) => s >= claimed,
            ByteRange::Suffix(_) => claimed == 0,
        };
        if unsatisfiable {
            // Only an authentic final chunk makes "the plaintext is N bytes" true.
            let off = layout.chunk_offset(last) - hl;
            let len = layout.chunk_ciphertext_len(last);
            let mut buf = self.fetch_blocking(obj, off, len)?.to_vec();
            let mut scratch = Vec::new();
            cipher.open_final_chunk(last, &mut buf, &mut scratch)?;
        }
        let plan = range::plan(range, &layout)?;
        let start = layout.chunk_offset(plan.first_chunk) - hl;
        let end = layout.chunk_offset(plan.last_chunk)
            + layout.chunk_ciphertext_len(plan.last_chunk)
            - hl;
        let reader = self.segments(obj, start, end);
        let err = Arc::clone(&reader.error);
        let params = OpenParams {
            first_index: plan.first_chunk,
            final_at_eof: plan.last_chunk == last,
            skip: plan.start - plan.first_chunk * layout.chunk_size,
            limit: Some(plan.end - plan.start + 1),
        };
        let r = engine::open(
            cipher,
            obj.header.chunk_size,
            reader,
            output,
            params,
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
        let (tx, rx) = mpsc::channel::<Result<Bytes>>(1);
        let error = Arc::new(Mutex::new(None));
        let fetcher = Fetcher::new(self, obj);
        let n = self.settings.concurrency;
        self.rt.spawn(async move {
            let mut s = futures_util::stream::iter(ranges)
                .map(|(off, len)| {
                    let f = fetcher.clone();
                    async move { f.fetch(off, len).await }
                })
                .buffered(n);
            while let Some(r) = s.next().await {
                let stop = r.is_err();
                if tx.send(r).await.is_err() || stop {
                    break;
                }
            }
        });
        SegmentReader {
            rx,
            cur: Bytes::new(),
            error,
        }
    }

    fn fetch_blocking(&self, obj: &ObjectInfo, off: u64, len: u64) -> Result<Bytes> {
        let f = Fetcher::new(self, obj);
        self.rt.block_on(f.fetch(off, len))
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

    /// GETs `len` bytes at `off`; a body cut off mid-transfer is retried (the SDK retries
    /// failed requests, not failed body reads).
    async fn fetch(&self, off: u64, len: u64) -> Result<Bytes> {
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
            match read_exactly(r.body, len).await {
                Ok(b) => {
                    if b.len() as u64 != len {
                        return Err(storage(
                            url,
                            "GetObject",
                            &format!(
                                "asked for {len} bytes at offset {off}, got {} (the object changed?)",
                                b.len()
                            ),
                        ));
                    }
                    return Ok(b);
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

/// Reads a response body into one buffer of the expected size (one copy, no second
/// contiguous buffer as `collect().into_bytes()` would make); stops at `len` bytes.
async fn read_exactly(
    mut body: aws_sdk_s3::primitives::ByteStream,
    len: u64,
) -> std::result::Result<Bytes, aws_sdk_s3::primitives::ByteStreamError> {
    let mut buf = bytes::BytesMut::with_capacity(len as usize);
    while let Some(chunk) = body.try_next().await? {
        let room = (len as usize).saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room + 1)]);
        if buf.len() > len as usize {
            break; // more than asked for: reported by the caller as a length mismatch
        }
    }
    Ok(buf.freeze())
}

/// The engine's input: segments in order, from the download tasks.
struct SegmentReader {
    rx: mpsc::Receiver<Result<Bytes>>,
    cur: Bytes,
    error: Arc<Mutex<Option<Error>>>,
}

impl Read for SegmentReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
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
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
