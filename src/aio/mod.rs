//! Async streaming (feature `async`): encrypt and decrypt between any tokio
//! [`AsyncRead`] and [`AsyncWrite`], with the chunk crypto on the same worker
//! [`Pool`](crate::stream::Pool) as the blocking engine (spread over the cores, off the
//! runtime's threads), in the same bounded memory ([`crate::stream::buffer_memory`]) and
//! without allocating per chunk.
//!
//! Three shapes:
//! - drivers: [`seal`] / [`open`] (payload level, as `stream::seal` / `stream::open`), and the
//!   envelope-level [`encrypt_with_header`], [`read_header`], [`decrypt_body`];
//! - adapters: [`EncryptWriter`] (an `AsyncWrite` that encrypts; `shutdown` writes the final
//!   chunk), [`DecryptReader`] (an `AsyncRead` that releases only authenticated plaintext)
//!   and [`EncryptReader`] (an `AsyncRead` of ciphertext, for request bodies);
//! - `Stream` / `Sink` forms through tokio-util: [`DecryptReader::into_stream`] and
//!   [`EncryptReader::into_stream`] give `Stream<Item = io::Result<Bytes>>`
//!   ([`ReaderStream`]); [`EncryptWriter::into_sink`] gives a `Sink<Bytes>`
//!   ([`FramedWrite`]); a plaintext `Stream` of `Bytes` becomes an input with
//!   [`tokio_util::io::StreamReader`]. [`EncryptReader::into_sealed_stream`] gives the
//!   sealed batches themselves as `Bytes` (no copy; with
//!   [`BatchBuffers`](crate::stream::BatchBuffers) their buffers are recycled, else each
//!   handed-out batch is replaced by a new allocation), and
//!   [`DecryptReader::into_opened_stream`] the authenticated plaintext of each chunk the
//!   same way.
//!
//! Cancellation: dropping a driver's future (or an adapter) stops the stream: nothing more
//! is written, queued pool work is skipped, the buffers are freed, and an encrypted output
//! has no final chunk, so it is never a valid sealstream stream. A
//! [`CancelToken`](crate::stream::CancelToken) in the options does the same from elsewhere,
//! with [`Error::Cancelled`].
//!
//! Errors: the drivers return [`crate::Error`]; the adapters, being `AsyncRead` /
//! `AsyncWrite`, return `io::Error`s that carry it ([`error_of`] gets it back).

mod adapters;
mod pipe;

use std::future::poll_fn;
use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub use adapters::{DecryptReader, EncryptReader, EncryptWriter, OpenedStream, SealedStream};
#[doc(no_inline)]
pub use tokio_util::codec::FramedWrite;
#[doc(no_inline)]
pub use tokio_util::io::ReaderStream;

use crate::error::{Error, HeaderError, Result};
use crate::format::{FIXED_LEN, Header};
use crate::primitives::stream::PayloadCipher;
use crate::stream::framer::{OpenFramer, SealFramer};
use crate::stream::{EngineOptions, OpenParams, StreamStats, check_chunk_size, geometry};
use pipe::Pipe;

/// Encrypts everything from `input` into STREAM chunks written to `output` (the async
/// `stream::seal`): the header must already be written. Flushes `output` at the end but
/// does not shut it down (the caller owns it).
pub async fn seal<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    mut input: R,
    mut output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    check_chunk_size(chunk_size)?;
    let (_, cpb) = geometry(chunk_size, opts);
    let framer = SealFramer::new(chunk_size, cpb);
    let mut pipe = Pipe::new(cipher, chunk_size, framer, opts, opts.progress)?;
    poll_fn(|cx| pipe.poll_run(cx, &mut input, &mut output)).await
}

/// Decrypts STREAM chunks from `input` (at chunk `params.first_index`) and writes only
/// authenticated plaintext to `output` (the async `stream::open`).
pub async fn open<R, W>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    mut input: R,
    mut output: W,
    params: OpenParams,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    check_chunk_size(chunk_size)?;
    let (_, cpb) = geometry(chunk_size, opts);
    let framer = OpenFramer::new(chunk_size, cpb, params);
    let mut pipe = Pipe::new(cipher, chunk_size, framer, opts, opts.progress)?;
    poll_fn(|cx| pipe.poll_run(cx, &mut input, &mut output)).await
}

/// Writes `header` then the encrypted body of `input`: a whole sealstream object, for a
/// caller that built the header and cipher itself (`envelope::seal_header` with a data key
/// from an async key provider).
pub async fn encrypt_with_header<R, W>(
    header: &Header,
    cipher: &PayloadCipher,
    input: R,
    mut output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let bytes = header
        .to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    output
        .write_all(&bytes)
        .await
        .map_err(|e| crate::stream::io_error("writing output", e))?;
    seal(cipher, header.chunk_size, input, output, opts).await
}

/// Reads exactly one header from `input`, leaving it at chunk 0; returns the header and its
/// length. Bounded as `Header::read_from`: the fixed part is read and checked (magic,
/// version, `header_len` limit) before the rest is allocated. The caller then unwraps the
/// data key (possibly with an async key service) and calls [`decrypt_body`].
pub async fn read_header<R>(input: &mut R) -> Result<(Header, usize)>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut fixed = [0u8; FIXED_LEN];
    let mut got = 0;
    while got < FIXED_LEN {
        match input.read(&mut fixed[got..]).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading header", e)),
        }
    }
    // The fixed part alone: its checks (magic first, then version, suite, chunk size,
    // header_len limits) run before `parse` reports the rest as missing.
    match Header::parse(&fixed[..got]) {
        Err(HeaderError::Truncated) if got == FIXED_LEN => {}
        Err(e) => return Err(e.into()),
        Ok(_) => {
            return Err(crate::stream::internal(
                "a header shorter than its fixed part",
            ));
        }
    }
    // header_len: u32 at offset 48 (FORMAT.md §3), already range-checked by `parse`.
    let header_len = u32::from_be_bytes([fixed[48], fixed[49], fixed[50], fixed[51]]) as usize;
    let mut all = vec![0u8; header_len];
    all[..FIXED_LEN].copy_from_slice(&fixed);
    input.read_exact(&mut all[FIXED_LEN..]).await.map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Error::Header(HeaderError::Truncated)
        } else {
            Error::io("reading header", e)
        }
    })?;
    Ok(Header::parse(&all)?)
}

/// Decrypts the body that follows a header read by [`read_header`], with the cipher the
/// caller unlocked for it; only authenticated plaintext reaches `output`.
///
/// `input` is the body alone, so a header stored apart from it (S3 metadata, a companion
/// object, `sealstream inspect --export-header`) needs nothing more: parse it with
/// [`Header::parse_exact`], unlock it as any header, and pass the body here (the async
/// counterpart of the blocking `Decryptor::with_detached_header`). A header from another
/// object fails on the first chunk.
pub async fn decrypt_body<R, W>(
    header: &Header,
    cipher: &PayloadCipher,
    input: R,
    output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    open(
        cipher,
        header.chunk_size,
        input,
        output,
        OpenParams::default(),
        opts,
    )
    .await
}

/// The sealstream error inside an adapter's `io::Error`, if it carries one (an
/// authentication failure, a truncation, a cancellation…).
pub fn error_of(e: &io::Error) -> Option<&Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<Error>())
}

/// An adapter's error as an `io::Error` that still carries the typed error:
/// `InvalidData` for data that failed authentication or is malformed.
pub(crate) fn to_io(e: Error) -> io::Error {
    let kind = match &e {
        Error::Io { source, .. } => source.kind(),
        Error::ChunkAuth { .. }
        | Error::Truncated { .. }
        | Error::LastChunkEmpty { .. }
        | Error::TooManyChunks
        | Error::Header(_) => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e)
}
