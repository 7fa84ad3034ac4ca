//! I/O-free framers: where chunk boundaries fall, which index and final flag each chunk
//! gets, when a batch may be handed to the workers, and which plaintext bytes of an opened
//! batch may be released (skip / limit). No reads, no writes, no threads: the sync and async
//! drivers call them, so both apply exactly the same rules.
//!
//! A batch buffer holds `cpb` chunk slots of `chunk_size + 16` bytes. Two ways to fill it:
//! pull (the driver reads straight into [`Framer::spare`] and calls [`Framer::advance`]) or
//! push ([`Framer::fill`] copies from a caller's slice). Either way a *full* batch is only
//! completed as non-final once a further input byte is known to exist (the pull drivers read
//! one look-ahead byte, [`Framer::set_lookahead`]; the push adapters hold the full batch
//! until more data or the explicit finish arrives), so the final chunk is always in the last
//! batch and sealing ends with an explicit finish, as in rage's `StreamWriter`.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::format::{TAG_LEN, limits};

/// One batch of chunks travelling reader → worker → writer. Its buffer is allocated once at
/// stream start-up and recycled; nothing here allocates per batch.
pub(crate) struct Batch {
    pub(crate) buf: Vec<u8>,
    pub(crate) first_index: u64,
    pub(crate) n_chunks: usize,
    /// Length of the last chunk: plaintext length (seal) or ciphertext length (open).
    pub(crate) last_len: usize,
    /// Ciphertext bytes in `buf` (open only).
    pub(crate) filled: usize,
    pub(crate) is_final: bool,
    /// First failing chunk (position within the batch) and its error, set by the worker.
    pub(crate) error: Option<(usize, Error)>,
    /// What may be written out after the crypto: bytes of `buf` (seal) or plaintext offsets
    /// within the batch (open). Set by [`Framer::release`].
    pub(crate) out: Range<usize>,
}

impl Batch {
    pub(crate) fn new(len: usize) -> Batch {
        Batch::from_buf(vec![0u8; len])
    }

    /// A batch around a buffer of the right length (from [`super::BatchBuffers`]).
    pub(crate) fn from_buf(buf: Vec<u8>) -> Batch {
        Batch {
            buf,
            first_index: 0,
            n_chunks: 0,
            last_len: 0,
            filled: 0,
            is_final: false,
            error: None,
            out: 0..0,
        }
    }

    fn reset(&mut self, first_index: u64) {
        self.first_index = first_index;
        self.n_chunks = 0;
        self.last_len = 0;
        self.filled = 0;
        self.is_final = false;
        self.error = None;
        self.out = 0..0;
    }
}

/// What a released batch contributes: `progress` plaintext bytes processed (for progress
/// reports), `output` plaintext bytes to be written (after skip / limit).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Released {
    pub(crate) progress: u64,
    pub(crate) output: u64,
    pub(crate) chunks: u64,
}

/// The chunking rules of one direction. Implemented by [`SealFramer`] and [`OpenFramer`].
pub(crate) trait Framer: Send {
    /// Which crypto the workers run on this framer's batches.
    const OP: super::pool::Op;
    /// Starts filling a (recycled) batch at the next chunk index.
    fn begin(&mut self, b: &mut Batch);
    /// Where the next input bytes go (empty when the batch is full).
    fn spare<'b>(&self, b: &'b mut Batch) -> &'b mut [u8];
    /// Records `n` bytes written into [`Framer::spare`].
    fn advance(&self, b: &mut Batch, n: usize);
    /// True when no input byte fits any more: the batch waits for look-ahead or finish.
    #[cfg_attr(not(feature = "async"), allow(dead_code))] // push mode: the async drivers
    fn is_full(&self, b: &Batch) -> bool;
    /// Remembers the look-ahead byte read past a full batch; it starts the next batch.
    fn set_lookahead(&mut self, byte: u8);
    /// Closes a batch for the workers; `eof` says no input follows it. Applies the
    /// end-of-stream rules (truncation, empty final chunk, chunk-count limit).
    fn finish_batch(&mut self, b: &mut Batch, eof: bool) -> Result<()>;
    /// After the crypto: decides which bytes go out (only chunks that authenticated, and
    /// for open only the skip / limit window) and records it in `b.out`.
    fn release(&mut self, b: &mut Batch) -> Released;
    /// The contiguous output bytes starting at output position `pos` (in `b.out`).
    fn piece<'b>(&self, b: &'b Batch, pos: usize) -> &'b [u8];

    /// Push mode: copies as much of `src` as fits; returns the bytes taken.
    #[cfg_attr(not(feature = "async"), allow(dead_code))] // push mode: the async drivers
    fn fill(&self, b: &mut Batch, src: &[u8]) -> usize {
        let mut took = 0;
        while took < src.len() {
            let spare = self.spare(b);
            if spare.is_empty() {
                break;
            }
            let n = spare.len().min(src.len() - took);
            spare[..n].copy_from_slice(&src[took..took + n]);
            self.advance(b, n);
            took += n;
        }
        took
    }
}

/// Sealing: chunk `i` of the plaintext becomes chunk `i` of the body; the last chunk (the
/// only one that may be short, or empty for an empty input) carries the final flag.
#[derive(Clone)]
pub(crate) struct SealFramer {
    cs: usize,
    cpb: usize,
    next_index: u64,
    lookahead: Option<u8>,
}

impl SealFramer {
    pub(crate) fn new(chunk_size: u32, chunks_per_batch: usize) -> SealFramer {
        SealFramer {
            cs: chunk_size as usize,
            cpb: chunks_per_batch.max(1),
            next_index: 0,
            lookahead: None,
        }
    }
}

impl Framer for SealFramer {
    const OP: super::pool::Op = super::pool::Op::Seal;

    fn begin(&mut self, b: &mut Batch) {
        b.reset(self.next_index);
        if let Some(c) = self.lookahead.take() {
            b.buf[0] = c;
            b.n_chunks = 1;
            b.last_len = 1;
        }
    }

    fn spare<'b>(&self, b: &'b mut Batch) -> &'b mut [u8] {
        let stride = self.cs + TAG_LEN;
        // A new slot is opened only when a byte arrives for it (advance), so a batch never
        // ends with an empty non-first chunk.
        let (slot, from) = if b.n_chunks == 0 {
            (0, 0)
        } else if b.last_len < self.cs {
            (b.n_chunks - 1, b.last_len)
        } else if b.n_chunks < self.cpb {
            (b.n_chunks, 0)
        } else {
            return &mut [];
        };
        let base = slot * stride;
        &mut b.buf[base + from..base + self.cs]
    }

    fn advance(&self, b: &mut Batch, n: usize) {
        if n == 0 {
            return;
        }
        if b.n_chunks == 0 || b.last_len == self.cs {
            b.n_chunks += 1;
            b.last_len = n;
        } else {
            b.last_len += n;
        }
    }

    fn is_full(&self, b: &Batch) -> bool {
        b.n_chunks == self.cpb && b.last_len == self.cs
    }

    fn set_lookahead(&mut self, byte: u8) {
        self.lookahead = Some(byte);
    }

    fn finish_batch(&mut self, b: &mut Batch, eof: bool) -> Result<()> {
        if b.n_chunks == 0 {
            if !(eof && self.next_index == 0) {
                // Drivers complete a batch without data only for an empty stream.
                return Err(super::internal("empty batch"));
            }
            // The empty input: one empty final chunk.
            b.n_chunks = 1;
            b.last_len = 0;
        }
        let n = b.n_chunks as u64;
        if self.next_index + n > limits::MAX_CHUNKS {
            // Encrypting: the input is too large for the chunk size (a usage error).
            return Err(crate::format::too_many_chunks(self.cs as u32));
        }
        b.is_final = eof;
        self.next_index += n;
        Ok(())
    }

    fn release(&mut self, b: &mut Batch) -> Released {
        let n = b.n_chunks;
        let stride = self.cs + TAG_LEN;
        if b.error.is_some() || n == 0 {
            // Sealing fails only as a whole batch (chunk-count limit): nothing goes out.
            b.out = 0..0;
            return Released::default();
        }
        b.out = 0..(n - 1) * stride + b.last_len + TAG_LEN;
        let pt = ((n - 1) * self.cs + b.last_len) as u64;
        Released {
            progress: pt,
            output: pt,
            chunks: n as u64,
        }
    }

    fn piece<'b>(&self, b: &'b Batch, pos: usize) -> &'b [u8] {
        &b.buf[pos.min(b.out.end)..b.out.end]
    }
}

/// Opening: ciphertext from chunk `first_index` on; `final_at_eof` says whether the input's
/// last chunk is the object's final chunk (false for a sub-range that stops before the end);
/// `skip` / `limit` trim the released plaintext (ranged reads).
#[derive(Clone)]
pub(crate) struct OpenFramer {
    cs: usize,
    cpb: usize,
    first_index: u64,
    next_index: u64,
    final_at_eof: bool,
    skip: u64,
    limit: Option<u64>,
    lookahead: Option<u8>,
}

impl OpenFramer {
    pub(crate) fn new(
        chunk_size: u32,
        chunks_per_batch: usize,
        params: super::OpenParams,
    ) -> OpenFramer {
        OpenFramer {
            cs: chunk_size as usize,
            cpb: chunks_per_batch.max(1),
            first_index: params.first_index,
            next_index: params.first_index,
            final_at_eof: params.final_at_eof,
            skip: params.skip,
            limit: params.limit,
            lookahead: None,
        }
    }

    fn stride(&self) -> usize {
        self.cs + TAG_LEN
    }

    /// Plaintext length of chunk `j` of an opened batch.
    fn pt_len(&self, b: &Batch, j: usize) -> usize {
        if j + 1 == b.n_chunks {
            b.last_len - TAG_LEN
        } else {
            self.cs
        }
    }
}

impl Framer for OpenFramer {
    const OP: super::pool::Op = super::pool::Op::Open;

    fn begin(&mut self, b: &mut Batch) {
        b.reset(self.next_index);
        if let Some(c) = self.lookahead.take() {
            b.buf[0] = c;
            b.filled = 1;
        }
    }

    fn spare<'b>(&self, b: &'b mut Batch) -> &'b mut [u8] {
        let cap = self.cpb * self.stride();
        &mut b.buf[b.filled..cap]
    }

    fn advance(&self, b: &mut Batch, n: usize) {
        b.filled += n;
    }

    fn is_full(&self, b: &Batch) -> bool {
        b.filled == self.cpb * self.stride()
    }

    fn set_lookahead(&mut self, byte: u8) {
        self.lookahead = Some(byte);
    }

    fn finish_batch(&mut self, b: &mut Batch, eof: bool) -> Result<()> {
        let stride = self.stride();
        let got = b.filled;
        if got == 0 {
            if self.next_index == self.first_index {
                return Err(Error::Truncated {
                    detail: "the body has no chunks at all".into(),
                });
            }
            // Drivers only close a full batch after the look-ahead proved more input.
            return Err(super::internal("empty batch after look-ahead"));
        }
        let n = got.div_ceil(stride);
        let last_len = got - (n - 1) * stride;
        let last_index = self.next_index + n as u64 - 1;
        if eof {
            if !self.final_at_eof && last_len != stride {
                return Err(Error::Truncated {
                    detail: format!("chunk {last_index} is cut short"),
                });
            }
            // 1–15 stray bytes after a full final chunk land here as a "chunk" shorter
            // than a tag: rejected, never dropped (tests/it/hardening_tests.rs).
            if self.final_at_eof && last_len < TAG_LEN {
                return Err(Error::Truncated {
                    detail: format!(
                        "the last chunk ({last_index}) has {last_len} bytes, fewer than its {TAG_LEN}-byte tag"
                    ),
                });
            }
            if self.final_at_eof && last_len == TAG_LEN && last_index > 0 {
                return Err(Error::LastChunkEmpty { index: last_index });
            }
        }
        if self.next_index + n as u64 > limits::MAX_CHUNKS {
            return Err(Error::TooManyChunks);
        }
        b.n_chunks = n;
        b.last_len = last_len;
        b.is_final = eof && self.final_at_eof;
        self.next_index += n as u64;
        Ok(())
    }

    fn release(&mut self, b: &mut Batch) -> Released {
        let n = b.n_chunks;
        let ok = b.error.as_ref().map_or(n, |(j, _)| *j);
        // Chunks before the failing one are full chunks, so the authenticated plaintext is
        // one contiguous run of plaintext offsets.
        let len = if ok == 0 {
            0
        } else {
            (ok - 1) * self.cs + self.pt_len(b, ok - 1)
        };
        let lo = self.skip.min(len as u64) as usize;
        self.skip -= lo as u64;
        let mut hi = len;
        if let Some(l) = self.limit.as_mut() {
            let take = (*l).min((len - lo) as u64);
            *l -= take;
            hi = lo + take as usize;
        }
        b.out = lo..hi;
        Released {
            progress: len as u64,
            output: (hi - lo) as u64,
            chunks: ok as u64,
        }
    }

    fn piece<'b>(&self, b: &'b Batch, pos: usize) -> &'b [u8] {
        if pos >= b.out.end {
            return &[];
        }
        &b.buf[self.piece_range(b, pos)]
    }
}

impl OpenFramer {
    /// Where in `b.buf` the contiguous released plaintext from output position `pos` lies
    /// (the rest of its chunk, up to `b.out.end`; `pos` inside `b.out`).
    fn piece_range(&self, b: &Batch, pos: usize) -> Range<usize> {
        let j = pos / self.cs;
        let within = pos % self.cs;
        let end = (b.out.end - j * self.cs).min(self.pt_len(b, j));
        let base = j * self.stride();
        base + within..base + end
    }

    /// Every released piece of an opened batch, in order, as ranges of `b.buf` (one per
    /// chunk, the tags between them left out): what a consumer taking the batch's buffer
    /// whole may hand out.
    #[cfg_attr(not(feature = "async"), allow(dead_code))] // the async pipelines
    pub(crate) fn piece_ranges(&self, b: &Batch) -> Vec<Range<usize>> {
        let mut out = Vec::with_capacity(self.cpb);
        let mut pos = b.out.start;
        while pos < b.out.end {
            let r = self.piece_range(b, pos);
            pos += r.len();
            out.push(r);
        }
        out
    }
}

/// Seals a closed batch in place (a worker's job).
pub(crate) fn seal_batch(
    cipher: &crate::primitives::stream::PayloadCipher,
    cs: usize,
    b: &mut Batch,
) {
    let stride = cs + TAG_LEN;
    let n = b.n_chunks;
    for j in 0..n {
        let is_last = j + 1 == n;
        let len = if is_last { b.last_len } else { cs };
        let index = b.first_index + j as u64;
        if let Err(e) =
            cipher.seal_chunk(index, b.is_final && is_last, &mut b.buf[j * stride..], len)
        {
            b.error = Some((j, e));
            return;
        }
    }
}

/// Opens a closed batch in place, stopping at the first chunk that fails (a worker's job).
/// `scratch` is the worker's own buffer for telling truncation from tampering.
pub(crate) fn open_batch(
    cipher: &crate::primitives::stream::PayloadCipher,
    cs: usize,
    b: &mut Batch,
    scratch: &mut Vec<u8>,
) {
    let stride = cs + TAG_LEN;
    let n = b.n_chunks;
    for j in 0..n {
        let is_last = j + 1 == n;
        let len = if is_last { b.last_len } else { stride };
        let index = b.first_index + j as u64;
        let chunk = &mut b.buf[j * stride..j * stride + len];
        let r = if b.is_final && is_last {
            cipher.open_final_chunk(index, chunk, scratch).map(|_| ())
        } else {
            cipher.open_chunk(index, false, chunk).map(|_| ())
        };
        if let Err(e) = r {
            b.error = Some((j, e));
            return;
        }
    }
}
