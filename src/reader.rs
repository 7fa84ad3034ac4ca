//! A decrypting [`std::io::Read`] + [`std::io::Seek`] over a sealstream object.
//!
//! [`crate::envelope::decrypt`] copies a whole object to a `Write`. Programs that parse
//! what they read (an archive index at the end of a file, a media container, a database
//! page) need random access instead: [`Decryptor`] parses the header so the caller can see
//! the context and stanzas, [`Decryptor::unlock`] recovers the key, and the
//! [`StreamReader`] it returns reads and authenticates only the chunk covering the current
//! position, holding one chunk in memory.
//!
//! The plaintext length comes from the ciphertext length ([`Layout::from_lengths`]), which
//! an attacker controls by cutting or extending the file. So, as in
//! [`crate::range::plan_authenticated`], anything that depends on where the plaintext ends
//! — [`SeekFrom::End`], [`StreamReader::plaintext_len`], and reporting end of file — first
//! opens the last chunk as the final chunk: a cut or extended object fails there instead of
//! yielding bytes from the wrong place or a short "end of file". Every chunk is opened
//! under its index and the final flag the layout gives it, so a plain read of a damaged
//! chunk fails too, and nothing from an unauthenticated chunk is ever returned.
//!
//! A header stored apart from its body (S3 metadata, a companion object, a file written
//! by `sealstream inspect --export-header`) goes to [`Decryptor::with_detached_header`]
//! with the body alone; the reader is the same.
//!
//! For inputs that cannot seek (pipes, sockets, request bodies),
//! [`Decryptor::unlock_sequential`] gives a [`SequentialReader`], a plain `Read` that
//! decrypts front to back with the same guarantees.
//!
//! Errors cross `std::io` as `io::Error`s carrying the sealstream [`Error`]
//! (authentication failures have kind `InvalidData`); get it back with
//! [`crate::writer::into_error`] or [`crate::writer::error_ref`].
//!
//! ```
//! use std::io::{Cursor, Read, Seek, SeekFrom};
//! use sealstream::{Context, Decryptor, KeyProvider, LocalKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = LocalKey::from_bytes([7; 32]);
//! let providers: [&dyn KeyProvider; 1] = [&key];
//! let mut sealed = Vec::new();
//! let plaintext = b"header bytes ... the last ten".to_vec();
//! sealstream::encrypt(&plaintext[..], &mut sealed, &providers, &Default::default())?;
//!
//! let decryptor = Decryptor::new(Cursor::new(sealed))?;
//! assert!(decryptor.context().is_empty()); // inspect before using a key
//! let mut reader = decryptor.unlock(&providers, &Context::new())?;
//! reader.seek(SeekFrom::End(-8))?; // authenticates the final chunk first
//! let mut tail = String::new();
//! reader.read_to_string(&mut tail)?;
//! assert_eq!(tail, "last ten");
//! # Ok(())
//! # }
//! ```

use std::io::{self, BufRead, Read, Seek, SeekFrom};

use zeroize::Zeroizing;

use crate::envelope;
use crate::error::{Error, Result};
use crate::format::{Context, Header, Layout, Stanza, TAG_LEN};
use crate::keys::KeyProvider;
use crate::primitives::aead::Backend;
use crate::primitives::stream::PayloadCipher;
use crate::writer::to_io;

/// An object whose header has been read but whose key has not been recovered yet.
///
/// The split lets a service look at the context and the stanzas (which key ids, which
/// tenant) before deciding which keys to offer, or whether to call a key service at all.
#[derive(Debug)]
pub struct Decryptor<R> {
    input: R,
    header: Header,
    header_len: u64,
    /// Bytes of the object in front of chunk 0, from where the object starts in `input`:
    /// `header_len` when the header leads the body, 0 when it was detached.
    body_offset: u64,
    backend: Backend,
}

impl<R: Read> Decryptor<R> {
    /// Reads and parses the header at the input's current position (which need not be
    /// the start of the input: an object embedded at an offset works).
    pub fn new(mut input: R) -> Result<Decryptor<R>> {
        let (header, header_len) = Header::read_from(&mut input)?;
        Ok(Decryptor {
            input,
            header,
            header_len: header_len as u64,
            body_offset: header_len as u64,
            backend: Backend::default(),
        })
    }

    /// A body whose header is stored apart from it: `header` is exactly one header (no
    /// byte after it, [`Header::parse_exact`]) and `body` starts at chunk 0 at its current
    /// position.
    ///
    /// Why: an S3 object keeps its header in metadata or a companion object, and a body
    /// fetched by another tool comes with the header saved apart (`sealstream inspect
    /// --export-header`, the CLI's `decrypt --header-from`). Splicing `header ‖ body` into
    /// one input would cost a copy or a chain adapter and offsets shifted by hand; here the
    /// rest is as for [`Decryptor::new`]: the same unlock checks ([`envelope::unlock`]: the
    /// context, the stanzas, the key commitment, which authenticates the detached header),
    /// the same layout counted from the body's first byte, as [`envelope::Unlocked`] does
    /// for whole and ranged decryption. A header from another object fails on the first
    /// chunk read (its payload key does not open this body); nothing is released.
    pub fn with_detached_header(header: &[u8], body: R) -> Result<Decryptor<R>> {
        let parsed = Header::parse_exact(header)?;
        Ok(Decryptor {
            input: body,
            header: parsed,
            header_len: header.len() as u64,
            body_offset: 0,
            backend: Backend::default(),
        })
    }

    /// The parsed header. Its context is authenticated only once a key unlocks it; its
    /// stanzas are never authenticated (rewrap replaces them).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The encryption context the object claims (checked against the key on unlock).
    pub fn context(&self) -> &Context {
        &self.header.context
    }

    /// The wrapped-key stanzas: which providers and key ids can open the object.
    pub fn stanzas(&self) -> &[Stanza] {
        &self.header.stanzas
    }

    /// Length of the header in bytes: where chunk 0 starts in the file form (with a
    /// detached header the body starts at its input's position instead).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Chooses the AEAD implementation for the body (default: `ring`).
    pub fn with_backend(mut self, backend: Backend) -> Decryptor<R> {
        self.backend = backend;
        self
    }

    /// Like [`Decryptor::unlock`] for an input that cannot seek (a pipe, a socket, an HTTP
    /// body): returns a [`SequentialReader`] that decrypts front to back. Fails here on a
    /// wrong key or context.
    pub fn unlock_sequential(
        self,
        providers: &[&dyn KeyProvider],
        expected_context: &Context,
    ) -> Result<SequentialReader<R>> {
        let cipher = envelope::unlock(&self.header, providers, expected_context, self.backend)?;
        let stride = self.header.chunk_size as usize + TAG_LEN;
        Ok(SequentialReader {
            input: self.input,
            cipher,
            chunk_size: self.header.chunk_size as usize,
            buf: Zeroizing::new(vec![0u8; stride]),
            scratch: Zeroizing::new(Vec::with_capacity(stride)),
            next_index: 0,
            carry: None,
            start: 0,
            end: 0,
            done: false,
            failed: None,
        })
    }
}

impl<R: Read + Seek> Decryptor<R> {
    /// Checks `expected_context`, recovers and verifies the data key (key commitment) from
    /// a stanza one of `providers` opens, and returns the reader positioned at plaintext
    /// byte 0. Fails here, before any plaintext, on a wrong key or context.
    ///
    /// Pass every key you might use at once: the stanzas are tried against all of them.
    /// The object must run to the end of the input (its length is where the input ends).
    /// Also fails if that length is impossible for the chunk size (a body cut inside a
    /// tag, or no body at all).
    pub fn unlock(
        mut self,
        providers: &[&dyn KeyProvider],
        expected_context: &Context,
    ) -> Result<StreamReader<R>> {
        let cipher = envelope::unlock(&self.header, providers, expected_context, self.backend)?;
        let seek_err = |e| Error::io("seeking input", e);
        let here = self.input.stream_position().map_err(seek_err)?;
        let base = here.checked_sub(self.body_offset).ok_or_else(|| {
            Error::io(
                "seeking input",
                io::Error::other("the input reports a position before the header it just read"),
            )
        })?;
        let end = self.input.seek(SeekFrom::End(0)).map_err(seek_err)?;
        let layout = Layout::from_lengths(
            self.body_offset,
            self.header.chunk_size,
            end.saturating_sub(base),
        )?;
        let stride = self.header.chunk_size as usize + TAG_LEN;
        Ok(StreamReader {
            input: self.input,
            cipher,
            base,
            layout,
            pos: 0,
            buf: Zeroizing::new(vec![0u8; stride]),
            scratch: Zeroizing::new(Vec::with_capacity(stride)),
            loaded: None,
            input_at: Some(end),
            end_verified: false,
        })
    }
}

/// The decrypting `Read + Seek` returned by [`Decryptor::unlock`].
///
/// Seeking is free (it only moves the plaintext position); reading loads and
/// authenticates the chunk under the position, reusing one buffer, so sequential reads
/// read each chunk once and random reads cost one chunk each. Seeking past the end is
/// allowed and reads there return 0, as with a file, once the end is authenticated.
pub struct StreamReader<R> {
    input: R,
    cipher: PayloadCipher,
    /// Input offset where the object starts: its header's first byte, or its body's when
    /// the header was detached (then the layout's `header_len` is 0).
    base: u64,
    /// Claimed by the ciphertext length; trusted for the end only once `end_verified`.
    layout: Layout,
    /// Plaintext position.
    pos: u64,
    /// One chunk; `buf[..n]` is authenticated plaintext of chunk `loaded = (index, n)`.
    buf: Zeroizing<Vec<u8>>,
    /// Ciphertext copy [`PayloadCipher::open_final_chunk`] needs to name a truncation.
    scratch: Zeroizing<Vec<u8>>,
    loaded: Option<(u64, usize)>,
    /// Where the input is, when known, to skip seeks on sequential reads.
    input_at: Option<u64>,
    /// The last chunk opened as final: the claimed plaintext length is authentic.
    end_verified: bool,
}

impl<R> std::fmt::Debug for StreamReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("layout", &self.layout)
            .field("pos", &self.pos)
            .field("end_verified", &self.end_verified)
            .finish_non_exhaustive()
    }
}

impl<R: Read + Seek> StreamReader<R> {
    /// The plaintext length, after authenticating the final chunk (so a cut or extended
    /// object fails here rather than report a wrong length).
    pub fn plaintext_len(&mut self) -> Result<u64> {
        self.verify_end()?;
        Ok(self.layout.plaintext_len)
    }

    /// The chunk size of the object (a read never costs more than one chunk).
    pub fn chunk_size(&self) -> u32 {
        // `Layout` was built from the header's u32 chunk size.
        u32::try_from(self.layout.chunk_size).unwrap_or(u32::MAX)
    }

    /// The underlying reader (its position is the reader's business).
    pub fn get_ref(&self) -> &R {
        &self.input
    }

    /// Gives the underlying reader back.
    pub fn into_inner(self) -> R {
        self.input
    }

    fn verify_end(&mut self) -> Result<()> {
        if !self.end_verified {
            self.load(self.layout.chunk_count - 1)?;
        }
        Ok(())
    }

    /// Reads chunk `index` into `buf` and opens it under its index and final flag.
    fn load(&mut self, index: u64) -> Result<()> {
        self.loaded = None;
        let offset = self.base + self.layout.chunk_offset(index);
        let len = self.layout.chunk_ciphertext_len(index) as usize;
        if self.input_at != Some(offset) {
            self.input_at = None;
            self.input
                .seek(SeekFrom::Start(offset))
                .map_err(|e| Error::io("seeking input", e))?;
        }
        let chunk = &mut self.buf[..len];
        if let Err(e) = self.input.read_exact(chunk) {
            self.input_at = None;
            return Err(if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::Truncated {
                    detail: format!("the input ended inside chunk {index} (did it shrink?)"),
                }
            } else {
                Error::io("reading input", e)
            });
        }
        self.input_at = Some(offset + len as u64);
        let n = if index + 1 == self.layout.chunk_count {
            let n = self
                .cipher
                .open_final_chunk(index, chunk, &mut self.scratch)?;
            self.end_verified = true;
            n
        } else {
            self.cipher.open_chunk(index, false, chunk)?
        };
        self.loaded = Some((index, n));
        Ok(())
    }

    /// The authenticated plaintext from the position to the end of its chunk (empty at
    /// the authenticated end), loading the chunk if needed.
    fn fill(&mut self) -> Result<&[u8]> {
        if self.pos >= self.layout.plaintext_len {
            // "End of file" is a claim about the length: make sure it is the real end.
            self.verify_end()?;
            return Ok(&[]);
        }
        let index = self.pos / self.layout.chunk_size;
        if self.loaded.map(|(i, _)| i) != Some(index) {
            self.load(index)?;
        }
        let n = self.loaded.map_or(0, |(_, n)| n);
        let off = (self.pos - index * self.layout.chunk_size) as usize;
        if off >= n {
            // Unreachable: an authenticated chunk below the length covers the position.
            // Never report it as end of file.
            return Err(Error::io(
                "reading input",
                io::Error::other("internal error: chunk does not cover the read position"),
            ));
        }
        Ok(&self.buf[off..n])
    }

    fn read_some(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail = self.fill()?;
        let take = out.len().min(avail.len());
        out[..take].copy_from_slice(&avail[..take]);
        self.pos += take as u64;
        Ok(take)
    }
}

impl<R: Read + Seek> Read for StreamReader<R> {
    /// Reads from the chunk under the position (at most to its end), loading and
    /// authenticating it first if needed.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.read_some(out).map_err(to_io)
    }
}

impl<R: Read + Seek> BufRead for StreamReader<R> {
    /// The rest of the current chunk, without a copy (so wrapping the reader in a
    /// `BufReader` is unnecessary).
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.fill().map_err(to_io)
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt as u64;
    }
}

impl<R: Read + Seek> Seek for StreamReader<R> {
    /// Moves the plaintext position; [`SeekFrom::End`] authenticates the final chunk first.
    /// Positions past the end are allowed; negative ones are `InvalidInput`.
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => {
                self.verify_end().map_err(to_io)?;
                self.layout.plaintext_len.checked_add_signed(d)
            }
        };
        let new = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek to a negative or overflowing plaintext position",
            )
        })?;
        self.pos = new;
        Ok(new)
    }
}

/// The decrypting `Read` for non-seekable inputs, returned by
/// [`Decryptor::unlock_sequential`].
///
/// Reads one chunk ahead by a single byte to tell the final chunk from the others (the
/// final chunk is the one the input ends after), opens each chunk under its index and
/// final flag, and returns its plaintext only after that. End of file is reported only
/// after the final chunk authenticated, so a cut stream fails instead of ending early.
/// The first error is final: every later read reports it. For a `Read` → `Write` copy on
/// all cores, [`crate::envelope::decrypt`] is faster.
pub struct SequentialReader<R> {
    input: R,
    cipher: PayloadCipher,
    chunk_size: usize,
    /// One chunk; `buf[start..end]` is authenticated plaintext not yet returned.
    buf: Zeroizing<Vec<u8>>,
    scratch: Zeroizing<Vec<u8>>,
    next_index: u64,
    /// The look-ahead byte: the first byte of the next chunk.
    carry: Option<u8>,
    start: usize,
    end: usize,
    /// The final chunk has been opened.
    done: bool,
    failed: Option<(io::ErrorKind, String)>,
}

impl<R> std::fmt::Debug for SequentialReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SequentialReader")
            .field("next_index", &self.next_index)
            .field("done", &self.done)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<R: Read> SequentialReader<R> {
    /// Gives the underlying reader back.
    pub fn into_inner(self) -> R {
        self.input
    }

    /// Reads and opens the next chunk into `buf`.
    fn next_chunk(&mut self) -> Result<()> {
        let stride = self.chunk_size + TAG_LEN;
        let index = self.next_index;
        let read_err = |e| Error::io("reading input", e);
        let mut got = 0;
        if let Some(c) = self.carry.take() {
            self.buf[0] = c;
            got = 1;
        }
        got += read_full(&mut self.input, &mut self.buf[got..stride]).map_err(read_err)?;
        let mut eof = got < stride;
        if !eof {
            let mut one = [0u8; 1];
            if read_full(&mut self.input, &mut one).map_err(read_err)? == 0 {
                eof = true;
            } else {
                self.carry = Some(one[0]);
            }
        }
        let chunk = &mut self.buf[..got];
        let n = if eof {
            if got == 0 && index == 0 {
                return Err(Error::Truncated {
                    detail: "the body has no chunks at all".into(),
                });
            }
            if got < TAG_LEN {
                return Err(Error::Truncated {
                    detail: format!(
                        "the last chunk ({index}) has {got} bytes, fewer than its {TAG_LEN}-byte tag"
                    ),
                });
            }
            let n = self
                .cipher
                .open_final_chunk(index, chunk, &mut self.scratch)?;
            self.done = true;
            n
        } else {
            self.cipher.open_chunk(index, false, chunk)?
        };
        self.next_index += 1;
        self.start = 0;
        self.end = n;
        Ok(())
    }

    /// Unreturned plaintext, reading the next chunk if none is left (empty at the end).
    fn fill(&mut self) -> Result<&[u8]> {
        while self.start == self.end && !self.done {
            self.next_chunk()?;
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn read_some(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        let avail = self.fill()?;
        let take = out.len().min(avail.len());
        out[..take].copy_from_slice(&avail[..take]);
        self.start += take;
        Ok(take)
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!(
                    "an earlier read failed ({msg}); the rest of this stream cannot be trusted"
                ),
            )),
        }
    }

    fn poison(&mut self, e: Error) -> io::Error {
        let e = to_io(e);
        self.failed = Some((e.kind(), e.to_string()));
        e
    }
}

impl<R: Read> Read for SequentialReader<R> {
    /// Returns buffered plaintext, or reads and authenticates the next chunk first.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.check_failed()?;
        match self.read_some(out) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.poison(e)),
        }
    }
}

impl<R: Read> BufRead for SequentialReader<R> {
    /// The rest of the current chunk, without a copy.
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.check_failed()?;
        if let Err(e) = self.fill() {
            return Err(self.poison(e));
        }
        Ok(&self.buf[self.start..self.end])
    }

    fn consume(&mut self, amt: usize) {
        self.start = (self.start + amt).min(self.end);
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
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
