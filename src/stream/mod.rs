//! The parallel STREAM engine: any input to any output, in constant memory, on all cores.
//!
//! Three parts (docs/ARCHITECTURE.md has the picture):
//! - framers (`framer`, crate-private): I/O-free rules — chunk indices, batch geometry,
//!   final-chunk and truncation rules, skip / limit of a ranged open;
//! - the worker [`Pool`]: threads that seal or open whole batches for any number of streams,
//!   fed by blocking and async drivers alike;
//! - drivers: [`seal`] and [`open`] here (blocking: a reader thread fills batches, the
//!   calling thread writes them in order), and the async ones in `crate::aio`.
//!
//! Memory is `(2T + 2)` batches per stream whatever the input size ([`buffer_memory`]), and
//! nothing is allocated per chunk or per batch after start-up (tests/alloc.rs).
//!
//! Decryption releases a chunk's plaintext only after that chunk's tag verified; the final
//! chunk is recognised by end of input and must verify with the final flag.

mod blocking;
mod buffers;
pub(crate) mod framer;
mod pool;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use buffers::BatchBuffers;
pub use pool::Pool;
pub(crate) use pool::{Completions, Submitter};

use crate::error::{Error, Result};
use crate::format::{TAG_LEN, limits};
use crate::primitives::stream::PayloadCipher;

/// Plaintext bytes a batch aims to hold (rounded to whole chunks, at least one chunk).
pub const DEFAULT_BATCH_BYTES: usize = 1024 * 1024;

/// Tuning, reporting and cancellation knobs shared by encrypt and decrypt, sync and async.
#[derive(Clone, Copy)]
pub struct EngineOptions<'a> {
    /// Worker threads for chunk crypto; 0 means the shared [`Pool::global`] (one worker per
    /// core). A non-zero count starts a private pool of that size for this stream (as the
    /// CLI's batch mode does to share the cores between files). Ignored when `pool` is set.
    pub threads: usize,
    /// Target plaintext bytes per batch.
    pub batch_bytes: usize,
    /// Called from the writing side with the number of plaintext bytes just completed.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Stops the stream at the next batch boundary with [`Error::Cancelled`] once cancelled.
    pub cancel: Option<&'a CancelToken>,
    /// Run the crypto on this pool (a service shares one between its streams).
    pub pool: Option<&'a Pool>,
    /// Take the batch buffers from here and give them back at the end (a service running
    /// many short streams; async pipelines only, the blocking driver allocates its own).
    pub buffers: Option<&'a BatchBuffers>,
}

impl Default for EngineOptions<'_> {
    fn default() -> Self {
        EngineOptions {
            threads: 0,
            batch_bytes: DEFAULT_BATCH_BYTES,
            progress: None,
            cancel: None,
            pool: None,
            buffers: None,
        }
    }
}

impl std::fmt::Debug for EngineOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("threads", &self.threads)
            .field("batch_bytes", &self.batch_bytes)
            .field("cancel", &self.cancel)
            .field("pool", &self.pool)
            .field("buffers", &self.buffers)
            .finish_non_exhaustive()
    }
}

impl EngineOptions<'_> {
    /// The worker count of the pool this stream runs on.
    pub fn effective_threads(&self) -> usize {
        if let Some(p) = self.pool {
            p.threads()
        } else if self.threads > 0 {
            self.threads
        } else {
            cores()
        }
    }

    /// The pool to run on: the given one, a private one of `threads`, or the global one.
    pub(crate) fn resolve_pool(&self) -> Result<Pool> {
        match self.pool {
            Some(p) => Ok(p.clone()),
            None if self.threads > 0 => Pool::new(self.threads),
            None => Pool::global(),
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.is_some_and(CancelToken::is_cancelled)
    }
}

/// Asks running streams to stop: a cloneable flag that a signal handler, another thread or
/// a request's deadline can set. Streams look at it at every batch boundary (and while
/// waiting for the workers) and then fail with [`Error::Cancelled`], writing nothing more;
/// a read or write already blocked in the caller's reader or writer is not interrupted.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every stream that holds this token (or a clone of it).
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// Whether [`Self::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// Bytes of buffer memory the engine holds for a chunk size and thread count.
///
/// The documented memory bound: `(2T + 2) × chunks_per_batch × (chunk_size + 16)`, per
/// stream, for the blocking and the async drivers alike (`T` from
/// [`EngineOptions::effective_threads`]).
pub fn buffer_memory(chunk_size: u32, opts: &EngineOptions<'_>) -> usize {
    let (window, cpb) = geometry(chunk_size, opts);
    window * cpb * (chunk_size as usize + TAG_LEN)
}

/// (batches per stream, chunks per batch).
/// The cores this process may use, asked once: `available_parallelism` reads the cgroup
/// files under /proc and /sys on every call (syscalls, path parsing), and a server sizes a
/// stream per request from it (the S3 gateway's ranged GETs). The global pool, started
/// once, is sized from it too.
pub(crate) fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

pub(crate) fn geometry(chunk_size: u32, opts: &EngineOptions<'_>) -> (usize, usize) {
    let t = opts.effective_threads();
    let cpb = (opts.batch_bytes / chunk_size as usize).max(1);
    (2 * t + 2, cpb)
}

pub(crate) fn check_chunk_size(chunk_size: u32) -> Result<()> {
    if !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(Error::InvalidArgument(format!(
            "chunk size {chunk_size} outside {}..={}",
            limits::MIN_CHUNK_SIZE,
            limits::MAX_CHUNK_SIZE
        )));
    }
    Ok(())
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

/// Encrypts everything from `input` into STREAM chunks written to `output`.
///
/// The header must already have been written; chunk 0 starts at the writer's position.
/// An I/O error whose inner error is a [`crate::Error`] (`io::Error::other(e)`) is returned
/// as that error, so a reader or writer with typed failures (a download, an upload) keeps
/// them without a side channel.
pub fn seal<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    input: R,
    output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: io::Read + Send,
    W: io::Write,
{
    check_chunk_size(chunk_size)?;
    let (_, cpb) = geometry(chunk_size, opts);
    let framer = framer::SealFramer::new(chunk_size, cpb);
    blocking::run(cipher, chunk_size, framer, input, output, opts)
}

/// Decrypts STREAM chunks from `input` (positioned at chunk `params.first_index`) and writes
/// authenticated plaintext to `output`. Typed errors inside I/O errors: as for [`seal`].
pub fn open<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    input: R,
    output: W,
    params: OpenParams,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: io::Read + Send,
    W: io::Write,
{
    check_chunk_size(chunk_size)?;
    let (_, cpb) = geometry(chunk_size, opts);
    let framer = framer::OpenFramer::new(chunk_size, cpb, params);
    blocking::run(cipher, chunk_size, framer, input, output, opts)
}

pub(crate) fn internal(msg: &str) -> Error {
    Error::io("internal error", io::Error::other(msg.to_string()))
}

/// An I/O failure of the caller's reader or writer: the typed error it carries, if any
/// (`io::Error::other(sealstream::Error)`), else an [`Error::Io`] saying `what` failed.
pub(crate) fn io_error(what: &str, e: io::Error) -> Error {
    if e.get_ref().is_some_and(|i| i.is::<Error>()) {
        match e.into_inner().map(|i| i.downcast::<Error>()) {
            Some(Ok(inner)) => return *inner,
            Some(Err(other)) => return Error::io(what, io::Error::other(other)),
            None => return internal("an I/O error lost its inner error"),
        }
    }
    Error::io(what, e)
}

#[cfg(test)]
mod tests {
    use std::io::{self, Write};

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

    /// A typed error carried inside an `io::Error` by the caller's reader comes back as
    /// itself, not as "reading input: …" (what the S3 download used a side slot for).
    #[test]
    fn typed_errors_pass_through_io_errors() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other(Error::ChunkAuth { index: 77 }))
            }
        }
        let cipher = PayloadCipher::new(Suite::Aes256Gcm, Backend::Ring, &[3; 32]);
        let e = seal(
            &cipher,
            4096,
            Failing,
            Vec::new(),
            &EngineOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::ChunkAuth { index: 77 }), "{e:?}");
        let e = open(
            &cipher,
            4096,
            Failing,
            Vec::new(),
            OpenParams::default(),
            &EngineOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, Error::ChunkAuth { index: 77 }), "{e:?}");
    }
}
