//! Authenticated ranged decryption over a seekable source.
//!
//! Only the chunks covering the range are read, and each is authenticated under its index
//! and final flag. Whenever the answer depends on where the plaintext ends (open-ended or
//! suffix ranges, a range reaching the end), the last chunk is first opened as a final chunk,
//! so an attacker who truncates or extends the file cannot shift what a range returns.
//! [`plan_authenticated`] is the one planner: the file path ([`decrypt_range`]) and the S3
//! path (`S3::get_range_decrypted`) differ only in how they read bytes.

use std::io::{Read, Seek, SeekFrom, Write};

use crate::engine::{self, EngineOptions, OpenParams, StreamStats};
use crate::error::{Error, Result};
use crate::format::Layout;
use crate::primitives::stream::PayloadCipher;
use zeroize::Zeroizing;

/// A byte range of the plaintext, with HTTP `bytes=` semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `START-END`, both inclusive; END past the end is clamped to the end.
    Inclusive(u64, u64),
    /// `START-`: from START to the end.
    From(u64),
    /// `-N`: the last N bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Rejects ranges that select nothing (`-0`, `END < START`): the parser never produces
    /// them, but library callers can construct them.
    pub fn validate(self) -> Result<ByteRange> {
        match self {
            ByteRange::Suffix(0) => Err(Error::InvalidArgument(
                "a suffix range needs at least one byte".into(),
            )),
            ByteRange::Inclusive(s, e) if e < s => Err(Error::InvalidArgument(format!(
                "invalid range {s}-{e}: END is before START"
            ))),
            r => Ok(r),
        }
    }

    /// Parses `START-END`, `START-` or `-N`; bounds accept sizes (`64KiB`) and sums (`1GiB+5`).
    pub fn parse(s: &str) -> Result<ByteRange> {
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "invalid range '{s}': {why}; use START-END (inclusive), START- or -N, e.g. 0-1023, 1MiB-, -4KiB"
            ))
        };
        let (a, b) = s.split_once('-').ok_or_else(|| bad("no '-'"))?;
        let (a, b) = (a.trim(), b.trim());
        match (a.is_empty(), b.is_empty()) {
            (true, true) => Err(bad("no bounds")),
            (true, false) => {
                let n = crate::size::parse_size(b).map_err(|e| bad(&e))?;
                if n == 0 {
                    return Err(bad("a suffix range needs at least one byte"));
                }
                Ok(ByteRange::Suffix(n))
            }
            (false, true) => Ok(ByteRange::From(
                crate::size::parse_size(a).map_err(|e| bad(&e))?,
            )),
            (false, false) => {
                let start = crate::size::parse_size(a).map_err(|e| bad(&e))?;
                let end = crate::size::parse_size(b).map_err(|e| bad(&e))?;
                if end < start {
                    return Err(bad("END is before START"));
                }
                Ok(ByteRange::Inclusive(start, end))
            }
        }
    }
}

/// The chunks and byte counts a ranged read will touch (for callers that fetch remotely).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangePlan {
    /// First plaintext byte (inclusive).
    pub start: u64,
    /// Last plaintext byte (inclusive).
    pub end: u64,
    /// First chunk index read.
    pub first_chunk: u64,
    /// Last chunk index read.
    pub last_chunk: u64,
}

/// Decrypts `range` of the object in `input` (whose header is `header_len` bytes long).
///
/// Returns the number of plaintext bytes written.
pub fn decrypt_range<R, W>(
    mut input: R,
    header_len: u64,
    chunk_size: u32,
    cipher: &PayloadCipher,
    range: ByteRange,
    output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: Read + Seek + Send,
    W: Write,
{
    let range = range.validate()?;
    let seek_err = |e| Error::io("seeking input", e);
    let total = input.seek(SeekFrom::End(0)).map_err(seek_err)?;
    let layout = Layout::from_lengths(header_len, chunk_size, total)?;
    let plan = plan_authenticated(range, &layout, cipher, |offset, len| {
        input.seek(SeekFrom::Start(offset)).map_err(seek_err)?;
        // At most one chunk (≤ 16 MiB + tag, FORMAT.md §3.4).
        let mut buf = vec![0u8; len as usize];
        input
            .read_exact(&mut buf)
            .map_err(|e| Error::io("reading input", e))?;
        Ok(buf)
    })?;
    let (start, end) = plan.ciphertext_span(&layout);
    input.seek(SeekFrom::Start(start)).map_err(seek_err)?;
    engine::open(
        cipher,
        chunk_size,
        (&mut input).take(end - start),
        output,
        plan.open_params(&layout),
        opts,
    )
}

/// Whether the answer for `range` depends on where the plaintext ends (FORMAT.md §9 step
/// 3): open-ended and suffix ranges, and inclusive ranges reaching or passing the claimed
/// end. Those need the final chunk authenticated before the claimed length is used.
pub fn depends_on_end(range: ByteRange, layout: &Layout) -> bool {
    let len = layout.plaintext_len;
    match range {
        ByteRange::From(_) | ByteRange::Suffix(_) => true,
        ByteRange::Inclusive(s, e) => len == 0 || e >= len - 1 || s >= len,
    }
}

/// The one range planner, for files and S3 alike (FORMAT.md §9): validates `range`, and
/// when the answer depends on where the plaintext ends, reads the final chunk with
/// `read_chunk(file_offset, length)` and opens it as final *before* the claimed length is
/// used, so a truncated or extended object fails authentication before any byte is
/// written. Only then is the range resolved (an unsatisfiable range is
/// [`Error::RangeNotSatisfiable`] about an authentic length).
///
/// `read_chunk` is called at most once; a remote caller turns it into one small ranged GET
/// (offsets are of the file form: subtract `header_len` for an S3 body).
pub fn plan_authenticated<F>(
    range: ByteRange,
    layout: &Layout,
    cipher: &PayloadCipher,
    read_chunk: F,
) -> Result<RangePlan>
where
    F: FnOnce(u64, u64) -> Result<Vec<u8>>,
{
    let range = range.validate()?;
    if depends_on_end(range, layout) {
        let last = layout.chunk_count - 1;
        let mut buf = Zeroizing::new(read_chunk(
            layout.chunk_offset(last),
            layout.chunk_ciphertext_len(last),
        )?);
        if buf.len() as u64 != layout.chunk_ciphertext_len(last) {
            return Err(Error::Truncated {
                detail: format!(
                    "chunk {last} should be {} bytes but {} were read",
                    layout.chunk_ciphertext_len(last),
                    buf.len()
                ),
            });
        }
        let mut scratch = Zeroizing::new(Vec::new());
        cipher.open_final_chunk(last, &mut buf, &mut scratch)?;
    }
    plan(range, layout)
}

impl RangePlan {
    /// Ciphertext bytes `[start, end)` of the file form that cover the plan (chunk
    /// `first_chunk` through `last_chunk`, tags included); subtract `header_len` for an S3
    /// body.
    pub fn ciphertext_span(&self, layout: &Layout) -> (u64, u64) {
        (
            layout.chunk_offset(self.first_chunk),
            layout.chunk_offset(self.last_chunk) + layout.chunk_ciphertext_len(self.last_chunk),
        )
    }

    /// How the engine opens [`Self::ciphertext_span`]: chunk indexes from `first_chunk`,
    /// the final flag only on the object's real last chunk, and the bytes to skip and keep.
    pub fn open_params(&self, layout: &Layout) -> OpenParams {
        OpenParams {
            first_index: self.first_chunk,
            final_at_eof: self.last_chunk + 1 == layout.chunk_count,
            skip: self.start - self.first_chunk * layout.chunk_size,
            limit: Some(self.end - self.start + 1),
        }
    }
}

/// Resolves a range against a layout (whose length must already be trusted if the range
/// depends on it). A range starting at or past the end is [`Error::RangeNotSatisfiable`].
pub fn plan(range: ByteRange, layout: &Layout) -> Result<RangePlan> {
    let range = range.validate()?;
    let len = layout.plaintext_len;
    let unsatisfiable = |start: u64| Error::RangeNotSatisfiable {
        start,
        plaintext_len: len,
    };
    let (start, end) = match range {
        ByteRange::Inclusive(s, e) => {
            if s >= len {
                return Err(unsatisfiable(s));
            }
            (s, e.min(len - 1))
        }
        ByteRange::From(s) => {
            if s >= len {
                return Err(unsatisfiable(s));
            }
            (s, len - 1)
        }
        ByteRange::Suffix(n) => {
            if len == 0 {
                return Err(unsatisfiable(0));
            }
            (len - n.min(len), len - 1)
        }
    };
    Ok(RangePlan {
        start,
        end,
        first_chunk: start / layout.chunk_size,
        last_chunk: end / layout.chunk_size,
    })
}
