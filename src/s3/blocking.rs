//! The blocking layer: [`S3`] with synchronous calls, for the CLI and for programs without
//! an async runtime. It owns a small tokio runtime for the S3 requests; the chunk crypto
//! runs on the caller's thread and the engine's workers, exactly as for local files.
//!
//! Call it from ordinary threads, not from inside an async runtime (use
//! [`super::S3`] there).

use std::io::{Read, Write};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::transfer::MultipartWriter;
use super::upload::{PartSink, resolve, seal_to_parts, upload_parts};
use super::{Head, ObjectInfo, PutReport, RewrapReport, RewrapStage, S3Settings, S3Url, download};
use crate::engine::{EngineOptions, StreamStats};
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
    /// Engine tuning (threads).
    pub engine: EngineOptions<'a>,
    /// Called with the number of body bytes each time a part (or the object) is handed
    /// to the uploader.
    pub progress: Option<&'a (dyn Fn(u64) + Sync)>,
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
    /// Engine tuning (threads, progress in plaintext bytes).
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

    /// Encrypts `input` into the object at `url` as `sealing` prepares it: the engine seals
    /// on this thread (and its workers) while the runtime uploads the parts. On failure
    /// the multipart upload is aborted and the companion deleted before this returns.
    pub fn put_encrypted<R: Read + Send>(
        &self,
        url: &S3Url,
        input: R,
        sealing: Sealing,
        opts: &PutOptions<'_>,
    ) -> Result<PutReport> {
        let s3 = &self.inner;
        let mut prepared = self.rt.block_on(s3.prepare_put(
            url,
            sealing.header(),
            opts.force,
            opts.plaintext_len,
        ))?;
        let mut writer = MultipartWriter::new(s3, url, prepared.writer_options());
        let (tx, rx) = mpsc::channel(1);
        let uploader = self.rt.spawn(async move {
            let r = upload_parts(&mut writer, rx).await;
            (writer, r)
        });
        let mut sink = PartSink::new(tx, prepared.plan, opts.progress);
        let sealed = seal_to_parts(
            sealing.cipher(),
            sealing.header().chunk_size,
            input,
            &mut sink,
            &opts.engine,
        );
        drop(sink);
        let (mut writer, uploaded) = match self.rt.block_on(uploader) {
            Ok(done) => done,
            Err(e) => {
                self.rt.block_on(prepared.cleanup());
                return Err(Error::storage(format!(
                    "{url}: the upload task failed: {e}"
                )));
            }
        };
        match resolve(url, !opts.force, sealed, uploaded) {
            Ok((stats, written)) => self
                .rt
                .block_on(s3.finish_put(url, prepared, stats, written)),
            Err(e) => {
                self.rt.block_on(async {
                    writer.abort().await;
                    prepared.cleanup().await;
                });
                Err(e)
            }
        }
    }

    /// Decrypts the whole object to `output` (on this thread); only authenticated
    /// plaintext is written. `opening` must come from `obj.header`.
    pub fn get_decrypted<W: Write>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        output: W,
        opts: &GetOptions<'_>,
    ) -> Result<StreamStats> {
        download::check_opening(obj, opening)?;
        download::open_whole(
            &self.inner,
            self.rt.handle(),
            obj,
            opening.cipher(),
            output,
            &opts.engine,
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
    ) -> Result<StreamStats> {
        download::check_opening(obj, opening)?;
        download::open_range(
            &self.inner,
            self.rt.handle(),
            obj,
            opening.cipher(),
            range,
            output,
            &opts.engine,
        )
    }
}
