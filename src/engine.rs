//! The parallel STREAM engine: any `Read` to any `Write`, in constant memory, on all cores.
//!
//! Pipeline: a reader thread fills batch buffers (several chunks each) from a fixed pool;
//! batch `k` goes to worker `k mod T`, which seals or opens its chunks in place; the writer
//! (the calling thread) takes batch `k` back from worker `k mod T`, so output order needs no
//! reordering, and returns the buffer to the pool. Memory is `pool × batch` bytes whatever
//! the input size, and nothing is allocated per chunk or per batch after start-up.
//!
//! Decryption releases a chunk's plaintext only after that chunk's tag verified; the final
//! chunk is recognised by end of input and must verify with the final flag.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use crate::error::{Error, Result};
use crate::format::{TAG_LEN, limits};
use crate::primitives::stream::PayloadCipher;

/// Plaintext bytes a batch aims to hold (rounded to whole chunks, at least one chunk).
pub const DEFAULT_BATCH_BYTES: usize = 1024 * 1024;

/// Tuning and reporting knobs shared by encrypt and decrypt.
#[derive(Clone, Copy)]
pub struct EngineOptions<'a> {
    /// Worker threads for chunk crypto; 0 means one per available core.
    pub threads: usize,
    /// Target plaintext bytes per batch.
    pub batch_bytes: usize,
    /// Called from the writer with the number of plaintext bytes just completed.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
}

impl Default for EngineOptions<'_> {
    fn default() -> Self {
        EngineOptions {
            threads: 0,
            batch_bytes: DEFAULT_BATCH_BYTES,
            progress: None,
        }
    }
}

impl std::fmt::Debug for EngineOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("threads", &self.threads)
            .field("batch_bytes", &self.batch_bytes)
            .finish_non_exhaustive()
    }
}

impl EngineOptions<'_> {
    /// The worker count actually used.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// Bytes of buffer memory the engine holds for a chunk size and thread count.
///
/// The documented memory bound: `(2T + 2) × chunks_per_batch × (chunk_size + 16)`.
pub fn buffer_memory(chunk_size: u32, opts: &EngineOptions<'_>) -> usize {
    let (pool, cpb) = geometry(chunk_size, opts);
    pool * cpb * (chunk_size as usize + TAG_LEN)
}

fn geometry(chunk_size: u32, opts: &EngineOptions<'_>) -> (usize, usize) {
    let t = opts.effective_threads();
    let cpb = (opts.batch_bytes / chunk_size as usize).max(1);
    (2 * t + 2, cpb)
}

/// What a finished stream did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Plaintext bytes sealed, or plaintext bytes written after opening.
    pub plaintext_bytes: u64,
    /// Chunks processed.
    pub chunks: u64,
}

/// Where an opened stream starts and ends, for whole-file and ranged decryption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenParams {
    /// Index of the first chunk the input starts at.
    pub first_index: u64,
    /// Whether the input's last chunk is the object's final chunk (false for a sub-range
    /// that stops before the end: then every chunk must be full and non-final).
    pub final_at_eof: bool,
    /// Plaintext bytes to drop from the start of the output.
    pub skip: u64,
    /// Most plaintext bytes to write (after `skip`).
    pub limit: Option<u64>,
}

impl Default for OpenParams {
    fn default() -> Self {
        OpenParams {
            first_index: 0,
            final_at_eof: true,
            skip: 0,
            limit: None,
        }
    }
}

struct Batch {
    buf: Vec<u8>,
    first_index: u64,
    n_chunks: usize,
    /// Length of the last chunk: plaintext length (seal) or ciphertext length (open).
    last_len: usize,
    is_final: bool,
    /// First failing chunk (position within the batch) and its error.
    error: Option<(usize, Error)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Seal,
    Open { final_at_eof: bool },
}

/// Encrypts everything from `input` into STREAM chunks written to `output`.
///
/// The header must already have been written; chunk 0 starts at the writer's position.
pub fn seal<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    input: R,
    output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    run(
        cipher,
        chunk_size,
        input,
        output,
        opts,
        Mode::Seal,
        OpenParams::default(),
    )
}

/// Decrypts STREAM chunks from `input` (positioned at chunk `params.first_index`) and writes
/// authenticated plaintext to `output`.
pub fn open<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    input: R,
    output: W,
    params: OpenParams,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    let mode = Mode::Open {
        final_at_eof: params.final_at_eof,
    };
    run(cipher, chunk_size, input, output, opts, mode, params)
}

/// Runs the pipeline; `params` is only read in `Mode::Open` (sealing starts at chunk 0).
fn run<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    input: R,
    mut output: W,
    opts: &EngineOptions<'_>,
    mode: Mode,
    params: OpenParams,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    if !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(Error::InvalidArgument(format!(
            "chunk size {chunk_size} outside {}..={}",
            limits::MIN_CHUNK_SIZE,
            limits::MAX_CHUNK_SIZE
        )));
    }
    let threads = opts.effective_threads();
    let (pool, cpb) = geometry(chunk_size, opts);
    let cs = chunk_size as usize;
    let stride = cs + TAG_LEN;
    let stop = AtomicBool::new(false);

    std::thread::scope(|s| {
        let (free_tx, free_rx) = sync_channel::<Batch>(pool);
        for _ in 0..pool {
            let b = Batch {
                buf: vec![0u8; cpb * stride],
                first_index: 0,
                n_chunks: 0,
                last_len: 0,
                is_final: false,
                error: None,
            };
            // The channel has room for exactly `pool` batches.
            if free_tx.send(b).is_err() {
                return Err(internal("buffer pool closed during start-up"));
            }
        }
        let mut work_txs = Vec::with_capacity(threads);
        let mut done_rxs = Vec::with_capacity(threads);
        for _ in 0..threads {
            let (wtx, wrx) = sync_channel::<Batch>(pool);
            let (dtx, drx) = sync_channel::<Batch>(pool);
            work_txs.push(wtx);
            done_rxs.push(drx);
            s.spawn(move || worker(cipher, mode, cs, wrx, dtx));
        }
        let stop_ref = &stop;
        let reader = s.spawn(move || {
            let r = read_loop(
                input,
                mode,
                cs,
                cpb,
                params.first_index,
                free_rx,
                work_txs,
                stop_ref,
            );
            if r.is_err() {
                stop_ref.store(true, Ordering::Relaxed);
            }
            r
        });

        let written = write_loop(&mut output, mode, cs, done_rxs, free_tx, opts, params);
        if written.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        let read = reader
            .join()
            .unwrap_or_else(|_| Err(internal("reader thread panicked")));
        let stats = written?;
        let sent = read?;
        // Defence in depth: every chunk the reader sent must have been written, or the
        // output would silently be short.
        if stats.chunks != sent {
            return Err(internal("writer finished before all chunks were written"));
        }
        output.flush().map_err(|e| Error::io("writing output", e))?;
        Ok(stats)
    })
}

/// Most plaintext pieces handed to one vectored write (well under Linux's IOV_MAX of 1024).
const IOV_BATCH: usize = 64;

/// `Write::write_all` for several buffers (std's `write_all_vectored` is not stable yet).
///
/// Writers without a real vectored write take one buffer per call, as `write_all` would.
fn write_all_vectored<W: Write>(w: &mut W, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn internal(msg: &str) -> Error {
    Error::io("internal error", io::Error::other(msg.to_string()))
}

/// Reads until `buf` is full or EOF; returns bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[allow(clippy::too_many_arguments)]
fn read_loop<R: Read>(
    mut input: R,
    mode: Mode,
    cs: usize,
    cpb: usize,
    first_index: u64,
    free_rx: Receiver<Batch>,
    work_txs: Vec<SyncSender<Batch>>,
    stop: &AtomicBool,
) -> Result<u64> {
    let stride = cs + TAG_LEN;
    let read_err = |e| Error::io("reading input", e);
    // One byte read past each full batch tells whether more input follows; it becomes the
    // first byte of the next batch.
    let mut carry: Option<u8> = None;
    let mut next_index = first_index;
    let mut seq = 0usize;
    loop {
        let sent = next_index - first_index;
        if stop.load(Ordering::Relaxed) {
            return Ok(sent);
        }
        let Ok(mut b) = free_rx.recv() else {
            return Ok(sent); // writer stopped; its error is reported
        };
        b.first_index = next_index;
        b.error = None;
        let mut eof = false;
        match mode {
            Mode::Seal => {
                let mut n = 0;
                let mut last_len = 0;
                for slot in 0..cpb {
                    let base = slot * stride;
                    let mut got = 0;
                    if slot == 0
                        && let Some(c) = carry.take()
                    {
                        b.buf[base] = c;
                        got = 1;
                    }
                    got += read_full(&mut input, &mut b.buf[base + got..base + cs])
                        .map_err(read_err)?;
                    if got == 0 && (slot > 0 || next_index > first_index) {
                        // Nothing more: the previous chunk was the last one.
                        eof = true;
                        break;
                    }
                    n += 1;
                    last_len = got;
                    if got < cs {
                        eof = true;
                        break;
                    }
                }
                if !eof {
                    let mut one = [0u8; 1];
                    if read_full(&mut input, &mut one).map_err(read_err)? == 0 {
                        eof = true;
                    } else {
                        carry = Some(one[0]);
                    }
                }
                b.n_chunks = n;
                b.last_len = last_len;
            }
            Mode::Open { final_at_eof } => {
                let cap = cpb * stride;
                let mut got = 0;
                if let Some(c) = carry.take() {
                    b.buf[0] = c;
                    got = 1;
                }
                got += read_full(&mut input, &mut b.buf[got..cap]).map_err(read_err)?;
                if got < cap {
                    eof = true;
                } else {
                    let mut one = [0u8; 1];
                    if read_full(&mut input, &mut one).map_err(read_err)? == 0 {
                        eof = true;
                    } else {
                        carry = Some(one[0]);
                    }
                }
                if got == 0 {
                    if next_index == first_index {
                        return Err(Error::Truncated {
                            detail: "the body has no chunks at all".into(),
                        });
                    }
                    // Unreachable in practice: a full batch is only sent after the
                    // look-ahead byte proved more input follows.
                    return Err(internal("empty batch after look-ahead"));
                }
                let n = got.div_ceil(stride);
                let last_len = got - (n - 1) * stride;
                let last_index = next_index + n as u64 - 1;
                if eof {
                    if !final_at_eof && last_len != stride {
                        return Err(Error::Truncated {
                            detail: format!("chunk {last_index} is cut short"),
                        });
                    }
                    // 1–15 stray bytes after a full final chunk land here as a "chunk"
                    // shorter than a tag: rejected, never dropped (tests/hardening_tests.rs).
                    if final_at_eof && last_len < TAG_LEN {
                        return Err(Error::Truncated {
                            detail: format!(
                                "the last chunk ({last_index}) has {last_len} bytes, fewer than its {TAG_LEN}-byte tag"
                            ),
                        });
                    }
                    if final_at_eof && last_len == TAG_LEN && last_index > 0 {
                        return Err(Error::LastChunkEmpty { index: last_index });
                    }
                }
                b.n_chunks = n;
                b.last_len = last_len;
            }
        }
        b.is_final = eof
            && mode
                != (Mode::Open {
                    final_at_eof: false,
                });
        let n = b.n_chunks as u64;
        if next_index + n > limits::MAX_CHUNKS {
            return Err(match mode {
                // Encrypting: the input is too large for the chunk size (a usage error).
                Mode::Seal => crate::format::too_many_chunks(cs as u32),
                Mode::Open { .. } => Error::TooManyChunks,
            });
        }
        next_index += n;
        let w = seq % work_txs.len();
        seq += 1;
        if work_txs[w].send(b).is_err() {
            return Ok(next_index - first_index - n); // the writer stopped; it reports why
        }
        if eof {
            return Ok(next_index - first_index);
        }
    }
}

fn worker(
    cipher: &PayloadCipher,
    mode: Mode,
    cs: usize,
    work_rx: Receiver<Batch>,
    done_tx: SyncSender<Batch>,
) {
    let stride = cs + TAG_LEN;
    let mut scratch = Vec::new();
    while let Ok(mut b) = work_rx.recv() {
        let n = b.n_chunks;
        for j in 0..n {
            let index = b.first_index + j as u64;
            let is_last = j + 1 == n;
            let base = j * stride;
            let r = match mode {
                Mode::Seal => {
                    let len = if is_last { b.last_len } else { cs };
                    cipher
                        .seal_chunk(index, b.is_final && is_last, &mut b.buf[base..], len)
                        .map(|_| ())
                }
                Mode::Open { .. } => {
                    let len = if is_last { b.last_len } else { stride };
                    let chunk = &mut b.buf[base..base + len];
                    if b.is_final && is_last {
                        cipher
                            .open_final_chunk(index, chunk, &mut scratch)
                            .map(|_| ())
                    } else {
                        cipher.open_chunk(index, false, chunk).map(|_| ())
                    }
                }
            };
            if let Err(e) = r {
                b.error = Some((j, e));
                break;
            }
        }
        if done_tx.send(b).is_err() {
            return;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn write_loop<W: Write>(
    output: &mut W,
    mode: Mode,
    cs: usize,
    done_rxs: Vec<Receiver<Batch>>,
    free_tx: SyncSender<Batch>,
    opts: &EngineOptions<'_>,
    params: OpenParams,
) -> Result<StreamStats> {
    let (mut skip, mut limit) = (params.skip, params.limit);
    let stride = cs + TAG_LEN;
    let write_err = |e| Error::io("writing output", e);
    let mut stats = StreamStats::default();
    let mut seq = 0usize;
    loop {
        let Ok(mut b) = done_rxs[seq % done_rxs.len()].recv() else {
            return Ok(stats); // reader finished (or failed: the caller checks)
        };
        seq += 1;
        let n = b.n_chunks;
        let ok_chunks = b.error.as_ref().map_or(n, |(j, _)| *j);
        let mut done_bytes = 0u64;
        match mode {
            Mode::Seal => {
                if ok_chunks == n && n > 0 {
                    let len = (n - 1) * stride + b.last_len + TAG_LEN;
                    output.write_all(&b.buf[..len]).map_err(write_err)?;
                    done_bytes = ((n - 1) * cs + b.last_len) as u64;
                }
            }
            Mode::Open { .. } => {
                // The authenticated plaintext pieces (tags between them skipped) go out in
                // vectored writes of up to IOV_BATCH pieces: one system call per batch for
                // the usual geometry, and no copy into a buffered writer's buffer, which
                // would cost the writer thread a memcpy of every plaintext byte.
                let mut iov = [io::IoSlice::new(&[]); IOV_BATCH];
                let mut k = 0;
                for j in 0..ok_chunks {
                    let pt_len = if j + 1 == n { b.last_len - TAG_LEN } else { cs };
                    let mut piece = &b.buf[j * stride..j * stride + pt_len];
                    done_bytes += pt_len as u64;
                    if skip > 0 {
                        let d = skip.min(piece.len() as u64);
                        piece = &piece[d as usize..];
                        skip -= d;
                    }
                    if let Some(l) = limit.as_mut() {
                        let take = (*l).min(piece.len() as u64);
                        piece = &piece[..take as usize];
                        *l -= take;
                    }
                    if !piece.is_empty() {
                        stats.plaintext_bytes += piece.len() as u64;
                        iov[k] = io::IoSlice::new(piece);
                        k += 1;
                        if k == IOV_BATCH {
                            write_all_vectored(output, &mut iov[..k]).map_err(write_err)?;
                            k = 0;
                        }
                    }
                }
                if k > 0 {
                    write_all_vectored(output, &mut iov[..k]).map_err(write_err)?;
                }
            }
        }
        if mode == Mode::Seal {
            stats.plaintext_bytes += done_bytes;
        }
        stats.chunks += ok_chunks as u64;
        if let Some(p) = opts.progress {
            p(done_bytes);
        }
        if let Some((_, e)) = b.error.take() {
            return Err(e);
        }
        // The reader may already have finished and dropped the pool; keep draining.
        let _ = free_tx.send(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Suite;
    use crate::primitives::aead::Backend;

    /// Accepts at most `max` bytes per call, spread over the buffers it is given, so every
    /// partial-write path of `write_all_vectored` runs.
    struct Dribble {
        out: Vec<u8>,
        max: usize,
    }
    impl Write for Dribble {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let n = buf.len().min(self.max);
            self.out.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(self.max - n);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.max {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn open_output_is_exact_through_partial_vectored_writes() {
        let cs = 4096u32;
        let cipher = PayloadCipher::new(Suite::Aes256Gcm, Backend::Ring, &[3; 32]);
        let pt: Vec<u8> = (0..200 * 4096 + 123).map(|i| (i * 7 % 251) as u8).collect();
        for threads in [1, 2] {
            // Batches of 1 chunk, and of 100 chunks (more than IOV_BATCH pieces).
            for batch_bytes in [4096, 100 * 4096] {
                let opts = EngineOptions {
                    threads,
                    batch_bytes,
                    ..EngineOptions::default()
                };
                let mut ct = Vec::new();
                seal(&cipher, cs, &pt[..], &mut ct, &opts).unwrap();
                for (skip, limit) in [(0, None), (5000, Some(300_000)), (4096, Some(1))] {
                    let mut w = Dribble {
                        out: Vec::new(),
                        max: 7,
                    };
                    let params = OpenParams {
                        skip,
                        limit,
                        ..OpenParams::default()
                    };
                    let stats = open(&cipher, cs, &ct[..], &mut w, params, &opts).unwrap();
                    let start = skip as usize;
                    let end = limit.map_or(pt.len(), |l| start + l as usize);
                    assert_eq!(
                        w.out,
                        &pt[start..end],
                        "threads {threads}, batch {batch_bytes}"
                    );
                    assert_eq!(stats.plaintext_bytes, (end - start) as u64);
                }
            }
        }
    }
}
