//! The blocking layer: [`S3`] with synchronous calls, for the CLI and for programs without
//! an async runtime. It owns a small tokio runtime (2 workers) and every call is a
//! `block_on` of the async [`super::S3`] method: the same data path, the same checks and
//! the same cleanup. The caller's `Read` / `Write` are driven from the calling thread (a
//! synchronous shim, `SyncIo`, inside the `block_on`), the S3 requests run on the
//! runtime's workers, the chunk crypto on the worker pool of the engine options.
//!
//! Call it from ordinary threads, not from inside an async runtime (use
//! [`super::S3`] there).

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::download::Served;
use super::upload::PutJob;
use super::{
    Head, ObjectAttributes, ObjectInfo, PutReport, RewrapReport, RewrapStage, S3Settings, S3Url,
};
use crate::engine::EngineOptions;
use crate::envelope::{Opening, Sealing};
use crate::error::{Error, Result};
use crate::format::Header;
use crate::range::ByteRange;

/// How to upload one object (blocking layer).
#[derive(Clone, Copy, Default)]
pub struct PutOptions<'a> {
    /// Replace an existing object (else the upload is refused up front and made
    /// conditional with `If-None-Match: *`).
    pub force: bool,
    /// Plaintext length if known (a file); `None` for a stream such as stdin.
    pub plaintext_len: Option<u64>,
    /// Crypto tuning: `threads` / `pool` choose the worker pool (0 and none = the global
    /// one); a cancelled `cancel` token stops the upload with [`Error::Cancelled`] after
    /// cleanup. Its `progress` is not used (see `progress` below).
    pub engine: EngineOptions<'a>,
    /// Called with the number of body bytes each time a part (or the object) is handed
    /// to the uploader.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
    /// Attributes of the stored object (none: S3's defaults).
    pub attributes: Option<&'a ObjectAttributes>,
}

impl std::fmt::Debug for PutOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutOptions")
            .field("force", &self.force)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

/// How to download one object (blocking layer).
#[derive(Clone, Copy, Default)]
pub struct GetOptions<'a> {
    /// Crypto tuning (`threads` / `pool`, a `cancel` token) and `progress` in plaintext
    /// bytes.
    pub engine: EngineOptions<'a>,
}

impl std::fmt::Debug for GetOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOptions").finish_non_exhaustive()
    }
}

/// [`super::S3`] with blocking calls; cheap to clone (clones share the runtime, the client
/// and the live uploads, so a signal handler holding a clone can [`S3::abort_all`]).
#[derive(Clone)]
pub struct S3 {
    inner: super::S3,
    rt: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::S3")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sealstream-s3")
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the S3 client runtime", e))
}

impl S3 {
    /// Loads the AWS configuration chain and builds the handle ([`super::S3::connect`]).
    pub fn connect(settings: S3Settings) -> Result<S3> {
        let rt = runtime()?;
        let inner = rt.block_on(super::S3::connect(settings))?;
        Ok(S3 {
            inner,
            rt: Arc::new(rt),
        })
    }

    /// Wraps an async handle built from the caller's configuration or client.
    pub fn from_async(inner: super::S3) -> Result<S3> {
        Ok(S3 {
            inner,
            rt: Arc::new(runtime()?),
        })
    }

    /// The async handle underneath (same client, same live uploads).
    pub fn as_async(&self) -> &super::S3 {
        &self.inner
    }

    /// Runs a future of the async handle on this handle's runtime (crate layers built on
    /// [`super::S3`], such as the S3 Encryption Client reader).
    #[cfg(feature = "s3ec")]
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The settings in use.
    pub fn settings(&self) -> &S3Settings {
        self.inner.settings()
    }

    /// [`super::S3::head`].
    pub fn head(&self, url: &S3Url) -> Result<Option<Head>> {
        self.rt.block_on(self.inner.head(url))
    }

    /// [`super::S3::open_object`].
    pub fn open_object(&self, url: &S3Url) -> Result<ObjectInfo> {
        self.rt.block_on(self.inner.open_object(url))
    }

    /// [`super::S3::list`].
    pub fn list(&self, url: &S3Url) -> Result<Vec<(String, u64)>> {
        self.rt.block_on(self.inner.list(url))
    }

    /// [`super::S3::delete_object`].
    pub fn delete_object(&self, url: &S3Url) -> Result<super::CompanionCleanup> {
        self.rt.block_on(self.inner.delete_object(url))
    }

    /// [`super::S3::abort_all`]: safe to call from a signal handler's thread.
    pub fn abort_all(&self) {
        self.rt.block_on(self.inner.abort_all())
    }

    /// [`super::S3::replace_header`].
    pub fn replace_header(&self, obj: &ObjectInfo, new: &Header) -> Result<RewrapReport> {
        self.rt.block_on(self.inner.replace_header(obj, new))
    }

    /// [`super::S3::replace_header_with`].
    pub fn replace_header_with(
        &self,
        obj: &ObjectInfo,
        new: &Header,
        hook: &mut (dyn FnMut(RewrapStage) + Send),
    ) -> Result<RewrapReport> {
        self.rt
            .block_on(self.inner.replace_header_with(obj, new, hook))
    }

    /// Encrypts `input` into the object at `url` ([`super::S3::put_encrypted`], same
    /// errors and bounds): `input` is read on this thread, the crypto runs on the pool of
    /// `opts.engine`, the parts go up from the runtime. A cancelled `opts.engine.cancel`
    /// token stops it with [`Error::Cancelled`]. On failure the multipart upload is
    /// aborted and the companion deleted before this returns.
    pub fn put_encrypted<R: Read + Send>(
        &self,
        url: &S3Url,
        input: R,
        sealing: Sealing,
        opts: &PutOptions<'_>,
    ) -> Result<PutReport> {
        let none = ObjectAttributes::default();
        let job = PutJob {
            force: opts.force,
            replace: None,
            plaintext_len: opts.plaintext_len,
            engine: &opts.engine,
            progress: opts.progress,
            attributes: opts.attributes.unwrap_or(&none),
        };
        self.rt
            .block_on(self.inner.put_with(url, SyncIo(input), sealing, &job, None))
    }

    /// Decrypts the whole object to `output` ([`super::S3::get_decrypted`]); only
    /// authenticated plaintext is written, from this thread. `opening` must come from
    /// `obj.header`.
    pub fn get_decrypted<W: Write>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        output: W,
        opts: &GetOptions<'_>,
    ) -> Result<Served> {
        let mut out = SyncIo(output);
        self.rt.block_on(
            self.inner
                .get_whole_with(obj, opening, &mut out, &opts.engine),
        )
    }

    /// Decrypts `range` of the plaintext ([`super::S3::get_range_decrypted`]) to `output`.
    pub fn get_range_decrypted<W: Write>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        range: ByteRange,
        output: W,
        opts: &GetOptions<'_>,
    ) -> Result<Served> {
        let mut out = SyncIo(output);
        self.rt.block_on(
            self.inner
                .get_range_with(obj, opening, range, &mut out, &opts.engine),
        )
    }
}

/// A synchronous `Read` / `Write` as an `AsyncRead` / `AsyncWrite` whose polls do the I/O
/// right away (never `Pending`): only for the blocking layer, whose futures run under
/// `block_on` on the caller's own thread, where blocking is what the caller asked for.
/// The requests the future starts run on the runtime's workers meanwhile.
pub(crate) struct SyncIo<T>(pub(crate) T);

// Never pinned structurally: the inner value is only used through `&mut`.
impl<T> Unpin for SyncIo<T> {}

impl<T: Read> AsyncRead for SyncIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.0.read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl<T: Write> AsyncWrite for SyncIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match this.0.write(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return Poll::Ready(r),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.get_mut().0.flush())
    }
}
