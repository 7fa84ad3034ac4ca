//! Download + decrypt: ranged GETs of whole chunks ([`super::transfer::RangedReader`]),
//! several in flight, delivered in order to the engine's reader, which authenticates every
//! chunk before it is written. A ranged read fetches only the chunks covering the range.
//!
//! The engine runs on its own threads: under `spawn_blocking` for [`S3::get_decrypted`]
//! (its authenticated output crosses to the async writer through a bounded channel of
//! recycled buffers), or on the caller's thread in the blocking layer.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::transfer::{self, Pin, RangedReader};
use super::{ObjectInfo, S3};
use crate::engine::{self, EngineOptions, StreamStats};
use crate::envelope::Opening;
use crate::error::{Error, Result};
use crate::primitives::stream::PayloadCipher;
use crate::range::{self, ByteRange};

/// Bytes per buffer between the opening engine and an `AsyncWrite` output.
const OUT_BUF: usize = 256 * 1024;
/// Buffers between the opening engine and an `AsyncWrite` output (recycled).
const OUT_BUFS: usize = 4;

/// How to download one object (async layer).
#[derive(Clone, Default)]
pub struct GetOptions {
    /// Engine worker threads for the chunk crypto (0 = one per core).
    pub threads: usize,
    /// Called with the number of plaintext bytes each time authenticated bytes are written.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
}

impl std::fmt::Debug for GetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOptions")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

/// Fails unless `opening` was unlocked from this object's header: a key for another object
/// would fail every chunk, and the caller would read it as tampering.
pub(super) fn check_opening(obj: &ObjectInfo, opening: &Opening) -> Result<()> {
    let h = opening.header();
    if h.commitment != obj.header.commitment
        || h.salt != obj.header.salt
        || h.chunk_size != obj.header.chunk_size
        || h.suite != obj.header.suite
    {
        return Err(Error::InvalidArgument(format!(
            "the Opening given for {} was unlocked from another object's header (its key \
             commitment differs); unlock this object's header (ObjectInfo::header)",
            obj.url
        )));
    }
    Ok(())
}

impl S3 {
    /// Decrypts the whole object to `output`; only authenticated plaintext is written.
    /// `opening` must come from `obj.header` (checked by key commitment).
    pub async fn get_decrypted<W>(
        &self,
        obj: &ObjectInfo,
        opening: Arc<Opening>,
        output: &mut W,
        opts: &GetOptions,
    ) -> Result<StreamStats>
    where
        W: AsyncWrite + Unpin,
    {
        self.open_async(obj, opening, None, output, opts).await
    }

    /// Decrypts `range` of the plaintext with one ranged GET of the covering chunks, planned
    /// by [`range::plan_authenticated`]: when the range depends on where the plaintext ends
    /// (`START-`, `-N`, a range reaching or past the end, an unsatisfiable one), a small
    /// GET of the final chunk authenticates the length first, so nothing is written, and no
    /// "bad range" is reported, on the strength of an unauthenticated Content-Length.
    /// Every GET is pinned to the ETag (and version id) of the HEAD.
    pub async fn get_range_decrypted<W>(
        &self,
        obj: &ObjectInfo,
        opening: Arc<Opening>,
        range: ByteRange,
        output: &mut W,
        opts: &GetOptions,
    ) -> Result<StreamStats>
    where
        W: AsyncWrite + Unpin,
    {
        self.open_async(obj, opening, Some(range), output, opts)
            .await
    }

    async fn open_async<W>(
        &self,
        obj: &ObjectInfo,
        opening: Arc<Opening>,
        range: Option<ByteRange>,
        output: &mut W,
        opts: &GetOptions,
    ) -> Result<StreamStats>
    where
        W: AsyncWrite + Unpin,
    {
        check_opening(obj, &opening)?;
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(2);
        let (ret_tx, ret_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let s3 = self.clone();
        let obj = obj.clone();
        let rt = Handle::current();
        let progress = opts.progress.clone();
        let threads = opts.threads;
        let engine = tokio::task::spawn_blocking(move || {
            let eo = EngineOptions {
                threads,
                progress: progress.as_deref().map(|f| f as &(dyn Fn(u64) + Sync)),
                ..EngineOptions::default()
            };
            let mut w = ChannelWriter {
                tx,
                ret: ret_rx,
                cur: Vec::new(),
                allocated: 0,
            };
            let r = match range {
                Some(rg) => open_range(&s3, &rt, &obj, opening.cipher(), rg, &mut w, &eo),
                None => open_whole(&s3, &rt, &obj, opening.cipher(), &mut w, &eo),
            };
            r.and_then(|stats| {
                w.send_current()
                    .map_err(|e| Error::io("writing output", e))?;
                Ok(stats)
            })
        });
        let mut write_error = None;
        while let Some(buf) = rx.recv().await {
            if let Err(e) = output.write_all(&buf).await {
                write_error = Some(e);
                break;
            }
            let _ = ret_tx.send(buf);
        }
        // Both ends the engine may be blocked on: the full channel and the buffer returns.
        drop(rx);
        drop(ret_tx);
        let opened = engine
            .await
            .map_err(|e| Error::storage(format!("the opening engine stopped: {e}")))?;
        if let Some(e) = write_error {
            return Err(Error::io("writing output", e));
        }
        let stats = opened?;
        output
            .flush()
            .await
            .map_err(|e| Error::io("writing output", e))?;
        Ok(stats)
    }
}

/// Decrypts the whole object to `output` on this (non-runtime) thread; the GETs run on `rt`.
pub(super) fn open_whole<W: Write>(
    s3: &S3,
    rt: &Handle,
    obj: &ObjectInfo,
    cipher: &PayloadCipher,
    output: W,
    eo: &EngineOptions<'_>,
) -> Result<StreamStats> {
    obj.layout()?;
    let reader = segments(s3, rt, obj, 0, obj.head.content_length).into_blocking_read();
    let err = reader.error_slot();
    let r = engine::open(
        cipher,
        obj.header.chunk_size,
        reader,
        output,
        engine::OpenParams::default(),
        eo,
    );
    take_download_error(r, &err)
}

/// Decrypts `range` to `output` on this (non-runtime) thread; the GETs run on `rt`.
pub(super) fn open_range<W: Write>(
    s3: &S3,
    rt: &Handle,
    obj: &ObjectInfo,
    cipher: &PayloadCipher,
    range: ByteRange,
    output: W,
    eo: &EngineOptions<'_>,
) -> Result<StreamStats> {
    let range = range.validate()?;
    let layout = obj.layout()?;
    let hl = obj.header_len;
    let pin = pin_of(obj);
    let plan = range::plan_authenticated(range, &layout, cipher, |offset, len| {
        rt.block_on(transfer::fetch(s3, &obj.url, &pin, offset - hl, len))
    })?;
    let (start, end) = plan.ciphertext_span(&layout);
    let reader = segments(s3, rt, obj, start - hl, end - hl).into_blocking_read();
    let err = reader.error_slot();
    let r = engine::open(
        cipher,
        obj.header.chunk_size,
        reader,
        output,
        plan.open_params(&layout),
        eo,
    );
    take_download_error(r, &err)
}

fn pin_of(obj: &ObjectInfo) -> Pin {
    Pin {
        etag: obj.head.etag.clone(),
        version_id: obj.head.version_id.clone(),
    }
}

/// Body bytes `[start, end)` as whole-chunk segments of about a part each.
fn segments(s3: &S3, rt: &Handle, obj: &ObjectInfo, start: u64, end: u64) -> RangedReader {
    let stride = u64::from(obj.header.chunk_size) + crate::format::TAG_LEN as u64;
    let seg = (s3.settings.part_size.div_ceil(stride).max(1)) * stride;
    RangedReader::spawn_on(rt, s3, &obj.url, pin_of(obj), start, end, seg, 0)
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

/// The engine's output when the caller's output is async: authenticated plaintext in
/// recycled buffers, sent to the async side (blocking while the channel is full).
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    ret: std::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    allocated: usize,
}

impl ChannelWriter {
    fn send_current(&mut self) -> io::Result<()> {
        if self.cur.is_empty() {
            return Ok(());
        }
        let buf = std::mem::take(&mut self.cur);
        self.tx
            .blocking_send(buf)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output was dropped"))
    }

    fn fresh(&mut self) -> io::Result<Vec<u8>> {
        let mut b = match self.ret.try_recv() {
            Ok(b) => b,
            Err(_) if self.allocated < OUT_BUFS => {
                self.allocated += 1;
                Vec::with_capacity(OUT_BUF)
            }
            Err(_) => self
                .ret
                .recv()
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the output was dropped"))?,
        };
        b.clear();
        Ok(b)
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.cur.capacity() == 0 {
            self.cur = self.fresh()?;
        }
        let take = (OUT_BUF - self.cur.len()).min(data.len());
        self.cur.extend_from_slice(&data[..take]);
        if self.cur.len() == OUT_BUF {
            self.send_current()?;
        }
        Ok(take)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
