//! An encrypting [`std::io::Write`]: hand it plaintext, it writes a sealstream object.
//!
//! [`crate::envelope::encrypt`] pulls from a `Read`; many programs instead *produce* data
//! (a serializer, a compressor, an HTTP body handler) and want something to write into.
//! [`Encryptor::wrap_output`] gives that: a [`StreamWriter`] that writes the header at once,
//! buffers one chunk, seals each chunk as soon as the next byte proves it is not the last,
//! and seals the final chunk in [`StreamWriter::finish`]. The output is byte for byte what
//! [`crate::envelope::encrypt`] writes for the same key, salt and stanzas.
//!
//! Finishing is explicit, as in age's `StreamWriter`: a writer dropped without `finish`
//! (an error, a panic, a cancelled request) leaves an object whose last chunk is not marked
//! final, which every decryptor rejects as truncated. A writer whose output failed once
//! refuses every later write and its `finish`, so a lost chunk can never be papered over.
//!
//! It seals on the calling thread with one chunk buffer; for bulk encryption of a `Read`
//! on all cores use [`crate::envelope::encrypt`].
//!
//! ```
//! use std::io::Write;
//! use sealstream::{EncryptParams, Encryptor, KeyProvider, LocalKey};
//!
//! # fn main() -> sealstream::Result<()> {
//! let key = LocalKey::from_bytes([7; 32]);
//! let providers: [&dyn KeyProvider; 1] = [&key];
//! let encryptor = Encryptor::new(&providers, &EncryptParams::default())?;
//! let mut writer = encryptor.wrap_output(Vec::new())?;
//! writer.write_all(b"hello, ").map_err(sealstream::writer::into_error)?;
//! writer.write_all(b"world").map_err(sealstream::writer::into_error)?;
//! let sealed: Vec<u8> = writer.finish()?;
//!
//! let mut plain = Vec::new();
//! sealstream::decrypt(&sealed[..], &mut plain, &providers, &Default::default())?;
//! assert_eq!(plain, b"hello, world");
//! # Ok(())
//! # }
//! ```

use std::io::{self, Write};

use zeroize::Zeroizing;

use crate::envelope::{EncryptParams, seal_header};
use crate::error::{Error, Result};
use crate::format::{Header, SALT_LEN, Stanza, TAG_LEN, limits};
use crate::keys::{self, DataKey, KeyProvider};
use crate::primitives::stream::PayloadCipher;

/// A new object's header and payload cipher, ready to encrypt exactly one stream.
///
/// Separate from [`StreamWriter`] so a caller can create the data key (which may call a key
/// service) and inspect the header before opening the output. [`Encryptor::wrap_output`]
/// consumes it: a second stream under the same salt and data key would reuse nonces.
#[derive(Debug)]
pub struct Encryptor {
    header: Header,
    cipher: PayloadCipher,
}

impl Encryptor {
    /// Encrypts under a fresh data key wrapped for every provider (the first may generate
    /// it, as KMS does), like [`crate::envelope::encrypt`].
    ///
    /// `params.engine` is not used: the writer seals on the calling thread.
    pub fn new(providers: &[&dyn KeyProvider], params: &EncryptParams<'_>) -> Result<Encryptor> {
        let (dek, stanzas) = keys::wrap_for_all(providers, &params.context)?;
        Encryptor::with_data_key(&dek, stanzas, params)
    }

    /// Encrypts under a data key the caller already holds with its stanzas (e.g. from a
    /// [`crate::keys::cache::DataKeyCache`]); a fresh random salt still gives this object
    /// its own payload key, as [`crate::envelope::encrypt_with_data_key`] does.
    pub fn with_data_key(
        dek: &DataKey,
        stanzas: Vec<Stanza>,
        params: &EncryptParams<'_>,
    ) -> Result<Encryptor> {
        let mut salt = [0u8; SALT_LEN];
        keys::fill_random(&mut salt)?;
        Encryptor::with_data_key_and_salt(dek, salt, stanzas, params)
    }

    /// Like [`Encryptor::with_data_key`] with a caller-chosen salt, for reproducible output
    /// (test vectors, comparisons with [`crate::envelope::seal_header`]).
    ///
    /// Never reuse a salt with the same data key for two different plaintexts: the payload
    /// key and nonces would repeat. Hidden from the docs for that reason.
    #[doc(hidden)]
    pub fn with_data_key_and_salt(
        dek: &DataKey,
        salt: [u8; SALT_LEN],
        stanzas: Vec<Stanza>,
        params: &EncryptParams<'_>,
    ) -> Result<Encryptor> {
        let (header, cipher) = seal_header(dek, salt, stanzas, params)?;
        Ok(Encryptor { header, cipher })
    }

    /// The header that will be written (context, stanzas, chunk size), e.g. to log or
    /// store the key ids next to the object.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Writes the header to `output` and returns the writer for the plaintext.
    ///
    /// Call [`StreamWriter::finish`] after the last byte; the result is not a valid object
    /// until then. `output` should be blocking (a `WouldBlock` is treated as a failure).
    pub fn wrap_output<W: Write>(self, mut output: W) -> Result<StreamWriter<W>> {
        let bytes = self
            .header
            .to_bytes()
            .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
        output
            .write_all(&bytes)
            .map_err(|e| Error::io("writing output", e))?;
        let cs = self.header.chunk_size as usize;
        Ok(StreamWriter {
            output,
            cipher: self.cipher,
            buf: Zeroizing::new(vec![0u8; cs + TAG_LEN]),
            chunk_size: cs,
            filled: 0,
            index: 0,
            failed: None,
        })
    }
}

/// The encrypting writer returned by [`Encryptor::wrap_output`].
///
/// Holds at most one chunk of plaintext (wiped on drop). [`Write::flush`] flushes the
/// inner writer but cannot push out the partial chunk: sealing it early would fix a chunk
/// boundary the format does not allow mid-stream.
pub struct StreamWriter<W: Write> {
    output: W,
    cipher: PayloadCipher,
    /// One chunk: plaintext in `[..filled]`, room for the tag after `chunk_size`.
    buf: Zeroizing<Vec<u8>>,
    chunk_size: usize,
    filled: usize,
    /// Index of the chunk being filled.
    index: u64,
    /// Set by the first failure; every later call reports it.
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write> std::fmt::Debug for StreamWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("chunk_size", &self.chunk_size)
            .field("index", &self.index)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<W: Write> StreamWriter<W> {
    /// Seals the buffered (possibly empty) chunk as the final one, writes and flushes it,
    /// and returns the inner writer: only now is the output a complete object.
    ///
    /// Fails, writing nothing, if an earlier write failed.
    pub fn finish(mut self) -> Result<W> {
        self.check_failed()
            .map_err(|e| Error::io("writing output", e))?;
        self.seal_and_write(true)
            .map_err(|e| Error::io("writing output", e))?;
        self.output
            .flush()
            .map_err(|e| Error::io("writing output", e))?;
        Ok(self.output)
    }

    /// The inner writer, e.g. to see how much has been written so far.
    pub fn get_ref(&self) -> &W {
        &self.output
    }

    fn check_failed(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some((kind, msg)) => Err(io::Error::new(
                *kind,
                format!(
                    "an earlier write failed ({msg}); this encrypted output is incomplete: discard it and encrypt again"
                ),
            )),
        }
    }

    /// Seals `buf[..filled]` as chunk `index` and writes it; poisons the writer on failure.
    fn seal_and_write(&mut self, last: bool) -> io::Result<()> {
        let r = self.try_seal_and_write(last);
        if let Err(e) = &r {
            self.failed = Some((e.kind(), e.to_string()));
        }
        r
    }

    fn try_seal_and_write(&mut self, last: bool) -> io::Result<()> {
        if self.index >= limits::MAX_CHUNKS {
            return Err(to_io(crate::format::too_many_chunks(
                self.chunk_size as u32,
            )));
        }
        let len = self.filled;
        self.cipher
            .seal_chunk(self.index, last, &mut self.buf, len)
            .map_err(to_io)?;
        // Whatever happens next, the buffer now holds ciphertext, not plaintext to resend.
        self.filled = 0;
        self.output.write_all(&self.buf[..len + TAG_LEN])?;
        self.index += 1;
        Ok(())
    }
}

impl<W: Write> Write for StreamWriter<W> {
    /// Buffers `data`, sealing and writing each full chunk once more data follows it.
    /// Accepts all of `data` or fails (and then fails forever).
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check_failed()?;
        let mut rest = data;
        while !rest.is_empty() {
            if self.filled == self.chunk_size {
                // More data follows a full chunk: it is not the last one.
                self.seal_and_write(false)?;
            }
            let n = rest.len().min(self.chunk_size - self.filled);
            self.buf[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
            self.filled += n;
            rest = &rest[n..];
        }
        Ok(data.len())
    }

    /// Flushes the inner writer (the partial chunk stays buffered until more data or
    /// [`StreamWriter::finish`]).
    fn flush(&mut self) -> io::Result<()> {
        self.check_failed()?;
        self.output.flush()
    }
}

/// Turns an `io::Error` from a [`StreamWriter`] or [`crate::reader::StreamReader`] back into
/// the sealstream [`Error`] it carries (authentication, truncation…), or wraps a plain I/O
/// error; for callers that use `?` with [`crate::Result`] around `Read`/`Write` calls.
pub fn into_error(e: io::Error) -> Error {
    if !e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        return Error::io("I/O", e);
    }
    let kind = e.kind();
    match e.into_inner().map(|inner| inner.downcast::<Error>()) {
        Some(Ok(err)) => *err,
        // Unreachable: checked just above.
        Some(Err(other)) => Error::io("I/O", io::Error::new(kind, other)),
        None => Error::io("I/O", io::Error::from(kind)),
    }
}

/// The sealstream [`Error`] inside an `io::Error` from the adapters, if there is one
/// (e.g. to tell [`Error::ChunkAuth`] from a disk error without consuming the error).
pub fn error_ref(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<Error>())
}

/// Carries a sealstream [`Error`] through `std::io` signatures: I/O errors keep their kind,
/// authentication failures are `InvalidData`, the rest `Other`.
pub(crate) fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::Io { source, .. } => source.kind(),
        e if e.is_authentication() => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}
