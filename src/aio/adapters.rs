//! `AsyncRead` / `AsyncWrite` adapters over the async pipeline.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{BytesCodec, FramedWrite};
use tokio_util::io::ReaderStream;

use super::pipe::{Pipe, Step};
use super::to_io;
use crate::error::{Error, Result};
use crate::primitives::stream::PayloadCipher;
use crate::stream::framer::{Framer, OpenFramer, SealFramer};
use crate::stream::{EngineOptions, OpenParams, StreamStats, check_chunk_size, geometry};

fn pipe<F: Framer>(
    cipher: &PayloadCipher,
    chunk_size: u32,
    framer: F,
    opts: &EngineOptions<'_>,
) -> Result<Pipe<'static, F>> {
    check_chunk_size(chunk_size)?;
    // The pool and the cancel token are cloned into the pipe (owned handles); the
    // borrowed progress callback is not kept.
    Pipe::new(cipher, chunk_size, framer, opts, None)
}

/// An `AsyncWrite` that encrypts what is written into it: the shape a service needs to
/// stream a request body (or any producer) into encrypted storage.
///
/// The header, if any, must already be in the inner writer. [`AsyncWrite::poll_shutdown`]
/// (`shutdown().await`) seals the final chunk, writes everything out and shuts the inner
/// writer down; **dropping the writer without shutting it down leaves no final chunk**, so
/// the output can never pass for a complete stream. `flush` writes out the batches sealed so
/// far; up to one batch of plaintext stays buffered until more data or shutdown, because a
/// chunk can only be sealed once it is known whether it is the last.
pub struct EncryptWriter<W> {
    pipe: Pipe<'static, SealFramer>,
    inner: W,
    state: WriterState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriterState {
    Open,
    Finishing,
    Closed,
    Failed,
}

impl<W> std::fmt::Debug for EncryptWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptWriter")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl<W: AsyncWrite + Unpin> EncryptWriter<W> {
    /// Encrypts into `inner` with chunks of `chunk_size`, on the pool of `opts`.
    pub fn new(
        cipher: &PayloadCipher,
        chunk_size: u32,
        inner: W,
        opts: &EngineOptions<'_>,
    ) -> Result<Self> {
        let (_, cpb) = geometry(chunk_size, opts);
        Ok(EncryptWriter {
            pipe: pipe(cipher, chunk_size, SealFramer::new(chunk_size, cpb), opts)?,
            inner,
            state: WriterState::Open,
        })
    }

    /// Plaintext bytes sealed and chunks written so far (complete after shutdown).
    pub fn stats(&self) -> StreamStats {
        self.pipe.stats
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer. Unless [`Self::is_finished`], what it holds is cut short (no
    /// final chunk), exactly as if the writer had been dropped.
    pub fn into_inner(self) -> W {
        self.inner
    }

    /// Whether shutdown completed: the inner writer holds a whole stream.
    pub fn is_finished(&self) -> bool {
        self.state == WriterState::Closed
    }

    /// This writer as a `Sink<Bytes>`; closing the sink shuts the writer down (final chunk).
    /// `FramedWrite` is a sink for several item types, so name it when closing:
    /// `SinkExt::<Bytes>::close(&mut sink).await`.
    pub fn into_sink(self) -> FramedWrite<Self, BytesCodec> {
        FramedWrite::new(self, BytesCodec::new())
    }

    fn fail(&mut self, e: Error) -> io::Error {
        self.state = WriterState::Failed;
        to_io(e)
    }

    fn check_open(&self) -> io::Result<()> {
        match self.state {
            WriterState::Open => Ok(()),
            WriterState::Failed => Err(io::Error::other(
                "the encrypting writer failed earlier; its output is incomplete",
            )),
            _ => Err(io::Error::other(
                "write after shutdown: the encrypted stream is already finished",
            )),
        }
    }

    /// Writes out at most one finished batch (so that input and output alternate and the
    /// workers stay fed); `Done` is never returned before the final chunk.
    fn drive(&mut self, cx: &mut Context<'_>) -> io::Result<Step> {
        match self.pipe.push_output(cx, &mut self.inner, 1) {
            Ok(s) => Ok(s),
            Err(e) => Err(self.fail(e)),
        }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for EncryptWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check_open()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let out = this.drive(cx)?;
            match this.pipe.push_input(buf) {
                Ok(0) => {}
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) => return Poll::Ready(Err(this.fail(e))),
            }
            // No buffer free: all are with the workers or being written out.
            if out != Step::Progress {
                return Poll::Pending;
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.state == WriterState::Failed {
            this.check_open()?;
        }
        loop {
            let out = this.drive(cx)?;
            if this.pipe.drained() || out == Step::Done {
                break;
            }
            if out != Step::Progress {
                return Poll::Pending;
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.state {
                WriterState::Failed => this.check_open()?,
                WriterState::Closed => return Poll::Ready(Ok(())),
                WriterState::Open => {
                    let out = this.drive(cx)?;
                    match this.pipe.finish_input() {
                        Ok(true) => this.state = WriterState::Finishing,
                        Ok(false) if out != Step::Progress => return Poll::Pending,
                        Ok(false) => {}
                        Err(e) => return Poll::Ready(Err(this.fail(e))),
                    }
                }
                WriterState::Finishing => {
                    match this.drive(cx)? {
                        Step::Done => {}
                        Step::Progress => continue,
                        Step::Blocked => return Poll::Pending,
                    }
                    match Pin::new(&mut this.inner).poll_shutdown(cx) {
                        Poll::Ready(Ok(())) => this.state = WriterState::Closed,
                        Poll::Ready(Err(e)) => {
                            this.state = WriterState::Failed;
                            return Poll::Ready(Err(e));
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
            }
        }
    }
}

/// An `AsyncRead` over a pipeline whose input is another `AsyncRead`: the decrypting
/// reader (ciphertext in, plaintext out) and the encrypting reader (plaintext in,
/// ciphertext out) share it.
struct PipeReader<F, R> {
    pipe: Pipe<'static, F>,
    inner: R,
    failed: bool,
}

impl<F: Framer, R: AsyncRead + Unpin> PipeReader<F, R> {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.failed {
            return Poll::Ready(Err(io::Error::other(
                "the stream failed earlier (see the first error); nothing more is released",
            )));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let r = (|| loop {
            // Reading ahead keeps the workers busy while the caller consumes.
            let input = self.pipe.pull_input(cx, &mut self.inner, usize::MAX)?;
            let free = self.pipe.free_buffers();
            match self.pipe.pull_output(cx, buf)? {
                Step::Progress => return Ok(Poll::Ready(())),
                Step::Done => return Ok(Poll::Ready(())), // end of stream
                Step::Blocked if input == Step::Progress => {}
                // Batches that released nothing (skip / limit) freed their buffers: the
                // input side can go on; without this, nothing in flight would wake us.
                Step::Blocked if self.pipe.free_buffers() > free => {}
                Step::Blocked => return Ok(Poll::Pending),
            }
        })();
        match r {
            Ok(Poll::Ready(())) => Poll::Ready(Ok(())),
            Ok(Poll::Pending) => Poll::Pending,
            Err(e) => {
                self.failed = true;
                Poll::Ready(Err(to_io(e)))
            }
        }
    }
}

/// A pipeline's zero-copy output pull ([`Pipe::pull_sealed`], [`Pipe::pull_opened`]).
type PullBytes<F> =
    fn(&mut Pipe<'static, F>, &mut Context<'_>) -> crate::Result<Poll<Option<Bytes>>>;

impl<F: Framer, R: AsyncRead + Unpin> PipeReader<F, R> {
    /// As `poll_read`, but the output comes out as `Bytes` that `pull` takes from the
    /// pipeline without a copy (sealed batches, opened pieces).
    fn poll_bytes(
        &mut self,
        cx: &mut Context<'_>,
        pull: PullBytes<F>,
    ) -> Poll<Option<io::Result<Bytes>>> {
        if self.failed {
            return Poll::Ready(None);
        }
        let r = (|| loop {
            let input = self.pipe.pull_input(cx, &mut self.inner, usize::MAX)?;
            let free = self.pipe.free_buffers();
            match pull(&mut self.pipe, cx)? {
                Poll::Ready(b) => return Ok(Poll::Ready(b)),
                Poll::Pending if input == Step::Progress => {}
                // Batches that released nothing (skip / limit) freed their buffers: the
                // input side can go on; without this, nothing in flight would wake us.
                Poll::Pending if self.pipe.free_buffers() > free => {}
                Poll::Pending => return Ok(Poll::Pending),
            }
        })();
        match r {
            Ok(Poll::Ready(b)) => Poll::Ready(b.map(Ok)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(e) => {
                self.failed = true;
                Poll::Ready(Some(Err(to_io(e))))
            }
        }
    }
}

impl<R: AsyncRead + Unpin> PipeReader<SealFramer, R> {
    /// As `poll_read`, but each sealed batch comes out whole as `Bytes` (no copy).
    fn poll_sealed(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        self.poll_bytes(cx, Pipe::pull_sealed)
    }
}

impl<R: AsyncRead + Unpin> PipeReader<OpenFramer, R> {
    /// As `poll_read`, but each piece of authenticated plaintext comes out as `Bytes` in
    /// the engine's own buffer (no copy).
    fn poll_opened(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        self.poll_bytes(cx, Pipe::pull_opened)
    }
}

impl<F: Framer, R> PipeReader<F, R> {
    fn new(
        cipher: &PayloadCipher,
        chunk_size: u32,
        framer: F,
        inner: R,
        opts: &EngineOptions<'_>,
    ) -> Result<Self> {
        Ok(PipeReader {
            pipe: pipe(cipher, chunk_size, framer, opts)?,
            inner,
            failed: false,
        })
    }
}

/// What the two pipe readers share besides [`PipeReader`]: `Debug`, `stats`,
/// `into_stream` and the `AsyncRead` impl (`$stats` and `$stream` are their docs).
macro_rules! pipe_reader {
    ($name:ident, stats: $stats:literal, stream: $stream:literal) => {
        impl<R> std::fmt::Debug for $name<R> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<R: AsyncRead + Unpin> $name<R> {
            #[doc = $stats]
            pub fn stats(&self) -> StreamStats {
                self.r.pipe.stats
            }

            #[doc = $stream]
            pub fn into_stream(self) -> ReaderStream<Self> {
                ReaderStream::with_capacity(self, 64 * 1024)
            }
        }

        impl<R: AsyncRead + Unpin> AsyncRead for $name<R> {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.get_mut().r.poll_read(cx, buf)
            }
        }
    };
}

/// An `AsyncRead` that decrypts a STREAM body read from `inner` and yields only plaintext
/// of chunks that authenticated: the shape a service needs to serve decrypted content (as
/// a response body via [`Self::into_stream`]). A failed chunk, a truncation or trailing
/// bytes end the reading with an error (its [`super::error_of`] is the typed error), and
/// the plaintext of the failing chunk is never returned.
pub struct DecryptReader<R> {
    r: PipeReader<OpenFramer, R>,
}

impl<R: AsyncRead + Unpin> DecryptReader<R> {
    /// Decrypts the body in `inner` (positioned at chunk `params.first_index`, usually the
    /// end of the header) with chunks of `chunk_size`.
    pub fn new(
        cipher: &PayloadCipher,
        chunk_size: u32,
        inner: R,
        params: OpenParams,
        opts: &EngineOptions<'_>,
    ) -> Result<Self> {
        let (_, cpb) = geometry(chunk_size, opts);
        let framer = OpenFramer::new(chunk_size, cpb, params);
        let r = PipeReader::new(cipher, chunk_size, framer, inner, opts)?;
        Ok(DecryptReader { r })
    }
}

/// A zero-copy `Stream` of `Bytes` over a [`PipeReader`] (the `into_*_stream` adapters):
/// the same struct, stats and `poll_next` for sealing and opening, only the pull differs.
macro_rules! batch_stream {
    ($name:ident, $framer:ty, $poll:ident, $doc:literal, $stats:literal) => {
        #[doc = $doc]
        pub struct $name<R> {
            r: PipeReader<$framer, R>,
        }

        impl<R> std::fmt::Debug for $name<R> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }

        impl<R> $name<R> {
            #[doc = $stats]
            pub fn stats(&self) -> StreamStats {
                self.r.pipe.stats
            }
        }

        impl<R: AsyncRead + Unpin> futures_util::Stream for $name<R> {
            type Item = io::Result<Bytes>;

            fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
                self.get_mut().r.$poll(cx)
            }
        }
    };
}

impl<R: AsyncRead + Unpin> DecryptReader<R> {
    /// This reader as a `Stream` of authenticated plaintext without a copy: each item is
    /// the released plaintext of one chunk (or what the range keeps of it) in the engine's
    /// own batch buffer, which goes back to [`EngineOptions::buffers`] (if set) once the
    /// last piece of it is dropped. For a consumer that takes `Bytes` (an HTTP response
    /// body), where [`Self::into_stream`] would copy every byte once more. Nothing of a
    /// chunk that failed is ever in an item; the stream ends after an error.
    pub fn into_opened_stream(self) -> OpenedStream<R> {
        OpenedStream { r: self.r }
    }
}

batch_stream!(
    OpenedStream,
    OpenFramer,
    poll_opened,
    "[`DecryptReader::into_opened_stream`]: authenticated plaintext as `Bytes`, without a copy.",
    "Plaintext bytes released and chunks authenticated so far."
);

pipe_reader!(
    DecryptReader,
    stats: "Plaintext bytes released and chunks authenticated so far.",
    stream: "This reader as a `Stream<Item = io::Result<Bytes>>` of plaintext."
);

/// An `AsyncRead` of ciphertext: encrypts the plaintext read from `inner` into a STREAM
/// body (no header; prepend it). The shape for handing an encrypted body to something that
/// pulls (an HTTP client, an upload API taking a reader or a `Stream`). The final chunk is
/// produced only when `inner` reaches its end.
pub struct EncryptReader<R> {
    r: PipeReader<SealFramer, R>,
}

impl<R: AsyncRead + Unpin> EncryptReader<R> {
    /// Encrypts `inner` with chunks of `chunk_size`.
    pub fn new(
        cipher: &PayloadCipher,
        chunk_size: u32,
        inner: R,
        opts: &EngineOptions<'_>,
    ) -> Result<Self> {
        let (_, cpb) = geometry(chunk_size, opts);
        let framer = SealFramer::new(chunk_size, cpb);
        let r = PipeReader::new(cipher, chunk_size, framer, inner, opts)?;
        Ok(EncryptReader { r })
    }
}

impl<R: AsyncRead + Unpin> EncryptReader<R> {
    /// This reader as a `Stream` of sealed batches without a copy: each item is one batch
    /// of ciphertext (many chunks) in the engine's own buffer, which goes back to
    /// [`EngineOptions::buffers`] (if set) once the last reference to it is dropped. For
    /// a consumer that takes `Bytes` (an HTTP request body), where [`Self::into_stream`]
    /// would copy every byte once more. The stream ends after an error.
    pub fn into_sealed_stream(self) -> SealedStream<R> {
        SealedStream { r: self.r }
    }
}

batch_stream!(
    SealedStream,
    SealFramer,
    poll_sealed,
    "[`EncryptReader::into_sealed_stream`]: sealed batches as `Bytes`, without a copy.",
    "Plaintext bytes sealed and chunks produced so far."
);

pipe_reader!(
    EncryptReader,
    stats: "Plaintext bytes sealed and chunks produced so far.",
    stream: "This reader as a `Stream<Item = io::Result<Bytes>>` of ciphertext."
);
