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

use std::io::{self, Read, Seek, SeekFrom};

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

    /// Length of the header in bytes (where chunk 0 starts).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Chooses the AEAD implementation for the body (default: `ring`).
    pub fn with_backend(mut self, backend: Backend) -> Decryptor<R> {
        self.backend = backend;
        self
    }
}

impl<R: Read + Seek> Decryptor<R> {
    /// Checks `expected_context`, recovers and verifies the data key (key commitment) from
    /// a stanza one of `providers` opens, and returns the reader positioned at plaintext
    /// byte 0. Fails here, before any plaintext, on a wrong key or context.
    ///
    /// Pass every key you might use at once: the stanzas are tried against all of them.
    /// Also fails if the ciphertext length is impossible for the chunk size (a body cut
    /// inside a tag, or no body at all).
    pub fn unlock(
        mut self,
        providers: &[&dyn KeyProvider],
        expected_context: &Context,
    ) -> Result<StreamReader<R>> {
        let cipher = envelope::unlock(&self.header, providers, expected_context, self.backend)?;
        let seek_err = |e| Error::io("seeking input", e);
        let here = self.input.stream_position().map_err(seek_err)?;
        let base = here.checked_sub(self.header_len).ok_or_else(|| {
            Error::io(
                "seeking input",
                io::Error::other("the input reports a position before the header it just read"),
            )
        })?;
        let end = self.input.seek(SeekFrom::End(0)).map_err(seek_err)?;
        let layout = Layout::from_lengths(
            self.header_len,
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
    /// Input offset of the header's first byte.
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

    fn read_some(&mut self, out: &mut [u8]) -> Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos >= self.layout.plaintext_len {
            // "End of file" is a claim about the length: make sure it is the real end.
            self.verify_end()?;
            return Ok(0);
        }
        let index = self.pos / self.layout.chunk_size;
        if self.loaded.map(|(i, _)| i) != Some(index) {
            self.load(index)?;
        }
        let n = self.loaded.map_or(0, |(_, n)| n);
        let off = (self.pos - index * self.layout.chunk_size) as usize;
        let take = out.len().min(n.saturating_sub(off));
        if take == 0 {
            // Unreachable: an authenticated chunk below the length covers the position.
            // Never report it as end of file.
            return Err(Error::io(
                "reading input",
                io::Error::other("internal error: chunk does not cover the read position"),
            ));
        }
        out[..take].copy_from_slice(&self.buf[off..off + take]);
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
