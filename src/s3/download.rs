//! Download + decrypt, on the async layer: ranged GETs of whole chunks
//! ([`RangedReader`], several in flight, delivered in order as an `AsyncRead`) feed
//! [`aio::open`], which authenticates every chunk on the worker pool before a byte of it
//! is written to the caller's `AsyncWrite`. A ranged read fetches only the chunks covering
//! the range, after authenticating the final chunk when the answer depends on where the
//! plaintext ends. No thread is started per download and nothing blocks the executor.
//!
//! Failures of a GET travel through the reader as `io::Error`s carrying the typed
//! [`Error::Storage`]; the driver hands that error back as is (no side slot).
//!
//! The blocking layer runs the same futures with `block_on`, its `Write` output behind a
//! synchronous `AsyncWrite` shim.

use std::sync::Arc;

use tokio::io::AsyncWrite;

use super::transfer::{self, Pin, RangedReader};
use super::{ObjectInfo, S3};
use crate::aio;
use crate::envelope::Opening;
use crate::error::{Error, Result};
use crate::format::Layout;
use crate::range::{self, ByteRange, RangePlan};
use crate::stream::{BatchBuffers, EngineOptions, OpenParams, Pool, StreamStats};

/// How to download one object (async layer).
#[derive(Clone, Default)]
pub struct GetOptions {
    /// Worker threads for the chunk crypto: 0 (the default) runs it on the shared
    /// [`Pool::global`]; N > 0 starts a private pool of N workers for this download.
    /// Ignored when `pool` is set.
    pub threads: usize,
    /// Run the chunk crypto on this pool (a service sharing one pool between its streams).
    pub pool: Option<Pool>,
    /// Called with the number of plaintext bytes each time authenticated bytes are written.
    pub progress: Option<Arc<dyn Fn(u64) + Send + Sync>>,
    /// Target plaintext bytes per engine batch; 0 (the default) means
    /// [`crate::stream::DEFAULT_BATCH_BYTES`]. A server answering many small ranged reads
    /// sizes it to the range, since every read allocates `2T + 2` batches up front.
    pub batch_bytes: usize,
    /// Take the engine's batch buffers from here and give them back at the end (a server
    /// answering many GETs recycles them instead of zeroing fresh memory per request).
    pub buffers: Option<BatchBuffers>,
}

impl std::fmt::Debug for GetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOptions")
            .field("threads", &self.threads)
            .field("pool", &self.pool)
            .field("batch_bytes", &self.batch_bytes)
            .field("buffers", &self.buffers)
            .finish_non_exhaustive()
    }
}

impl GetOptions {
    /// The engine options these download options stand for (borrowing the pool and the
    /// progress callback).
    fn engine(&self) -> EngineOptions<'_> {
        EngineOptions {
            threads: self.threads,
            pool: self.pool.as_ref(),
            progress: self.progress.as_deref().map(|f| f as &(dyn Fn(u64) + Sync)),
            batch_bytes: match self.batch_bytes {
                0 => crate::stream::DEFAULT_BATCH_BYTES,
                n => n,
            },
            buffers: self.buffers.as_ref(),
            ..EngineOptions::default()
        }
    }
}

/// What a decrypting read serves (from [`S3::plan_range`], before any byte is written) or
/// served (from the `get_*` calls), for an HTTP handler's `Content-Length` and
/// `Content-Range` headers: nothing in it rests on an unauthenticated length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    /// First plaintext byte served (0 for a whole object).
    pub start: u64,
    /// Plaintext bytes served (`Content-Length`).
    pub len: u64,
    /// The object's total plaintext length, when it is authenticated: always after a whole
    /// download; for a range that depends on the end (`START-`, `-N`, reaching or passing
    /// the end) as soon as it is planned, since the final chunk was opened as final first.
    /// `None` for a range inside the object, whose final chunk is never read: answer
    /// `Content-Range: bytes a-b/*` or read [`ObjectInfo::layout`] knowing that it is the
    /// claimed, not authenticated, length.
    pub total: Option<u64>,
    /// Chunks authenticated (0 in a plan: nothing was streamed yet).
    pub chunks: u64,
}

impl Served {
    /// The `Content-Range` value of a ranged answer (`bytes START-END/TOTAL`, `*` for an
    /// unauthenticated total); `None` when nothing is served (an empty object).
    pub fn content_range(&self) -> Option<String> {
        let last = (self.start + self.len)
            .checked_sub(1)
            .filter(|_| self.len > 0)?;
        let total = self
            .total
            .map_or_else(|| "*".to_string(), |t| t.to_string());
        Some(format!("bytes {}-{last}/{total}", self.start))
    }
}

/// A byte range resolved against an object, its final chunk authenticated first when the
/// answer depends on where the plaintext ends ([`S3::plan_range`]); stream it with
/// [`S3::get_planned_range`]. The split lets an HTTP handler set its headers, or answer
/// 416 on [`Error::RangeNotSatisfiable`], before the body starts.
#[derive(Debug, Clone)]
pub struct PlannedRange {
    served: Served,
    plan: RangePlan,
    layout: Layout,
    /// The object version planned against (checked when streaming).
    etag: Option<String>,
}

impl PlannedRange {
    /// What will be served (with `chunks` 0).
    pub fn served(&self) -> Served {
        self.served
    }
}

/// Fails unless `opening` was unlocked from this object's header: a key for another object
/// would fail every chunk, and the caller would read it as tampering.
pub(super) fn check_opening(obj: &ObjectInfo, opening: &Opening) -> Result<()> {
    let h = opening.header();
    if h.commitment != obj.header.commitment
        || h.salt != obj.header.salt
        || h.chunk_size != obj.header.chunk_size
        || h.suite != obj.header.suite
    {
        return Err(Error::InvalidArgument(format!(
            "the Opening given for {} was unlocked from another object's header (its key \
             commitment differs); unlock this object's header (ObjectInfo::header)",
            obj.url
        )));
    }
    Ok(())
}

impl S3 {
    /// Decrypts the whole object to `output`; only authenticated plaintext is written, and
    /// `output` is flushed (not shut down) at the end. `opening` must come from
    /// `obj.header` (checked by key commitment). Every GET is pinned to the ETag (and
    /// version id) of the HEAD in `obj`; S3 failures are [`Error::Storage`] by kind.
    ///
    /// Memory: at most `concurrency + 1` segments of about a part each, plus the
    /// decryptor's batches ([`crate::stream::buffer_memory`]).
    pub async fn get_decrypted<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        output: &mut W,
        opts: &GetOptions,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        let eo = opts.engine();
        self.get_whole_with(obj, opening, output, &eo).await
    }

    /// Decrypts `range` of the plaintext to `output` with one ranged GET of the covering
    /// chunks: [`S3::plan_range`] then [`S3::get_planned_range`]. When the range depends on
    /// where the plaintext ends (`START-`, `-N`, a range reaching or past the end, an
    /// unsatisfiable one), a small GET of the final chunk authenticates the length first,
    /// so nothing is written, and no [`Error::RangeNotSatisfiable`] is reported, on the
    /// strength of an unauthenticated Content-Length.
    pub async fn get_range_decrypted<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        range: ByteRange,
        output: &mut W,
        opts: &GetOptions,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        if obj.parts.is_some() {
            let eo = opts.engine();
            return self.get_range_with(obj, opening, range, output, &eo).await;
        }
        let planned = self.plan_range(obj, opening, range).await?;
        self.get_planned_range(obj, opening, &planned, output, opts)
            .await
    }

    /// Resolves `range` against `obj` without writing anything: checks `opening`, and when
    /// the answer depends on where the plaintext ends, GETs the final chunk and opens it as
    /// final (FORMAT.md §9). A range that starts at or past the authenticated end is
    /// [`Error::RangeNotSatisfiable`] (HTTP 416); a malformed one (`-0`, END before START)
    /// is [`Error::InvalidArgument`].
    pub async fn plan_range(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        range: ByteRange,
    ) -> Result<PlannedRange> {
        check_opening(obj, opening)?;
        if obj.parts.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{} is a part-wise object (FORMAT.md §17): plan_range plans version-1 objects \
                 only; get_range_decrypted reads both",
                obj.url
            )));
        }
        let range = range.validate()?;
        let layout = obj.layout()?;
        let ends = range::depends_on_end(range, &layout);
        let mut final_chunk = None;
        if ends {
            let last = layout.chunk_count - 1;
            let (off, len) = (layout.chunk_offset(last), layout.chunk_ciphertext_len(last));
            let bytes =
                transfer::fetch(self, &obj.url, &pin_of(obj), obj.body_offset(off), len).await?;
            final_chunk = Some((off, len, bytes));
        }
        // The one planner: it opens the final chunk fetched above (at the offset it asks
        // for) before it trusts the length.
        let plan =
            range::plan_authenticated(
                range,
                &layout,
                opening.cipher(),
                |off, len| match final_chunk.take() {
                    Some((o, l, bytes)) if (o, l) == (off, len) => Ok(bytes),
                    _ => Err(Error::storage(format!(
                        "{}: the range planner asked for another chunk than the final one",
                        obj.url
                    ))),
                },
            )?;
        Ok(PlannedRange {
            served: Served {
                start: plan.start,
                len: plan.end - plan.start + 1,
                total: ends.then_some(layout.plaintext_len),
                chunks: 0,
            },
            plan,
            layout,
            etag: obj.head.etag.clone(),
        })
    }

    /// Streams a range planned by [`S3::plan_range`] for the same `obj` to `output` (only
    /// authenticated plaintext; flushed, not shut down, at the end).
    pub async fn get_planned_range<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        planned: &PlannedRange,
        output: &mut W,
        opts: &GetOptions,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        let eo = opts.engine();
        self.get_planned_with(obj, opening, planned, output, &eo)
            .await
    }

    /// [`S3::get_decrypted`] (`planned` `None`) or [`S3::get_planned_range`] as a stream
    /// of authenticated plaintext in the engine's own buffers, without the copy into an
    /// `AsyncWrite` ([`aio::DecryptReader::into_opened_stream`]): for a server handing the
    /// bytes to an HTTP response body. The GETs start at once (call inside a runtime);
    /// nothing of a chunk is released before its tag verified, and an error ends the
    /// stream; `opts.progress` is not called (count the items). Version-1 objects only: a
    /// part-wise object (FORMAT.md §17) is
    /// [`Error::InvalidArgument`] (read it with [`S3::get_decrypted`] or
    /// [`S3::get_range_decrypted`]).
    pub fn decrypted_stream(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        planned: Option<&PlannedRange>,
        opts: &GetOptions,
    ) -> Result<aio::OpenedStream<RangedReader>> {
        check_opening(obj, opening)?;
        if obj.parts.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{} is a part-wise object (FORMAT.md §17): decrypted_stream reads version-1 \
                 objects only; get_decrypted reads both",
                obj.url
            )));
        }
        let layout = obj.layout()?;
        let (start, end, params) = match planned {
            None => (
                obj.chunks_start(),
                obj.head.content_length,
                OpenParams::default(),
            ),
            Some(p) => {
                if p.etag != obj.head.etag || layout != p.layout {
                    return Err(Error::InvalidArgument(format!(
                        "the range was planned for another version of {} (plan and stream the same ObjectInfo)",
                        obj.url
                    )));
                }
                let (s, e) = p.plan.ciphertext_span(&p.layout);
                (
                    obj.body_offset(s),
                    obj.body_offset(e),
                    p.plan.open_params(&p.layout),
                )
            }
        };
        let input = segments(self, obj, start, end);
        let reader = aio::DecryptReader::new(
            opening.cipher(),
            obj.header.chunk_size,
            input,
            params,
            &opts.engine(),
        )?;
        Ok(reader.into_opened_stream())
    }

    /// [`S3::get_decrypted`] with borrowed engine options (the blocking layer's form).
    pub(super) async fn get_whole_with<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        output: &mut W,
        eo: &EngineOptions<'_>,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        check_opening(obj, opening)?;
        if obj.parts.is_some() {
            return self.get_part_wise(obj, opening, None, output, eo).await;
        }
        obj.layout()?;
        let stats = self
            .open_span(
                obj,
                opening,
                obj.chunks_start(),
                obj.head.content_length,
                OpenParams::default(),
                output,
                eo,
            )
            .await?;
        // The final chunk opened as final: the length is authentic.
        Ok(Served {
            start: 0,
            len: stats.plaintext_bytes,
            total: Some(stats.plaintext_bytes),
            chunks: stats.chunks,
        })
    }

    /// [`S3::get_range_decrypted`] with borrowed engine options (the blocking layer's form).
    pub(super) async fn get_range_with<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        range: ByteRange,
        output: &mut W,
        eo: &EngineOptions<'_>,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        if obj.parts.is_some() {
            check_opening(obj, opening)?;
            return self
                .get_part_wise(obj, opening, Some(range), output, eo)
                .await;
        }
        let planned = self.plan_range(obj, opening, range).await?;
        self.get_planned_with(obj, opening, &planned, output, eo)
            .await
    }

    /// A part-wise object (FORMAT.md §17.4): the manifest object is fetched (at most
    /// 280,048 bytes) and verified against this object's key and stored length before any
    /// body byte is read; then each covering part's covering chunks are read with GETs
    /// pinned to the object's ETag and opened with that part's key. The plaintext length
    /// comes from the verified manifest, so it is authentic without a final-chunk fetch.
    async fn get_part_wise<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        range: Option<ByteRange>,
        output: &mut W,
        eo: &EngineOptions<'_>,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        let name = obj.parts.clone().unwrap_or_default();
        let murl = obj.url.with_key(name);
        let manifest = self
            .get_small(&murl, crate::parts::MAX_MANIFEST_LEN as u64)
            .await?
            .ok_or_else(|| Error::ObjectMetadata {
                object: obj.url.to_string(),
                reason: format!(
                    "its part manifest {murl} is missing: the upload was never completed by a \
                     conforming writer, or the manifest was deleted"
                ),
            })?;
        let layout = opening.part_layout(&manifest, obj.head.content_length)?;
        let (start, reads) = match range {
            None => (0, layout.whole()),
            Some(r) => {
                let (s, _, reads) = layout.plan(r)?;
                (s, reads)
            }
        };
        let stride = u64::from(obj.header.chunk_size) + crate::format::TAG_LEN as u64;
        let seg = (self.settings.part_size.div_ceil(stride).max(1)) * stride;
        let (mut len, mut chunks) = (0, 0);
        for read in reads {
            let part = &layout.parts()[read.index];
            let input = RangedReader::new(
                self,
                &obj.url,
                pin_of(obj),
                read.body_range.start,
                read.body_range.end,
                seg,
                0,
            );
            let stats = aio::open(
                &opening.part_cipher(&part.entry),
                obj.header.chunk_size,
                input,
                &mut *output,
                read.params,
                eo,
            )
            .await?;
            len += stats.plaintext_bytes;
            chunks += stats.chunks;
        }
        Ok(Served {
            start,
            len,
            total: Some(layout.plaintext_len()),
            chunks,
        })
    }

    async fn get_planned_with<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        planned: &PlannedRange,
        output: &mut W,
        eo: &EngineOptions<'_>,
    ) -> Result<Served>
    where
        W: AsyncWrite + Unpin,
    {
        check_opening(obj, opening)?;
        if planned.etag != obj.head.etag || obj.layout()? != planned.layout {
            return Err(Error::InvalidArgument(format!(
                "the range was planned for another version of {} (plan and stream the same ObjectInfo)",
                obj.url
            )));
        }
        let layout = &planned.layout;
        let (start, end) = planned.plan.ciphertext_span(layout);
        let params = planned.plan.open_params(layout);
        let stats = self
            .open_span(
                obj,
                opening,
                obj.body_offset(start),
                obj.body_offset(end),
                params,
                output,
                eo,
            )
            .await?;
        // A range through the final chunk opened it as final: the length is authentic.
        let total = planned
            .served
            .total
            .or(params.final_at_eof.then_some(layout.plaintext_len));
        Ok(Served {
            total,
            chunks: stats.chunks,
            ..planned.served
        })
    }

    /// Body bytes `[start, end)` through the decryptor to `output`.
    #[allow(clippy::too_many_arguments)]
    async fn open_span<W>(
        &self,
        obj: &ObjectInfo,
        opening: &Opening,
        start: u64,
        end: u64,
        params: OpenParams,
        output: &mut W,
        eo: &EngineOptions<'_>,
    ) -> Result<StreamStats>
    where
        W: AsyncWrite + Unpin,
    {
        let input = segments(self, obj, start, end);
        aio::open(
            opening.cipher(),
            obj.header.chunk_size,
            input,
            output,
            params,
            eo,
        )
        .await
    }
}

fn pin_of(obj: &ObjectInfo) -> Pin {
    Pin {
        etag: obj.head.etag.clone(),
        version_id: obj.head.version_id.clone(),
    }
}

/// Body bytes `[start, end)` as whole-chunk segments of about a part each, GETs running on
/// the current runtime.
fn segments(s3: &S3, obj: &ObjectInfo, start: u64, end: u64) -> RangedReader {
    let stride = u64::from(obj.header.chunk_size) + crate::format::TAG_LEN as u64;
    let seg = (s3.settings.part_size.div_ceil(stride).max(1)) * stride;
    RangedReader::new(s3, &obj.url, pin_of(obj), start, end, seg, 0)
}
