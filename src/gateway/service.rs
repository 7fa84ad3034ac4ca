//! The S3 operations: what each one does to stay encrypted end to end (docs/GATEWAY.md,
//! "Operations"). s3s has parsed, routed and authenticated the request before any of this
//! runs; everything here talks to upstream through the library's [`S3`] handle or, for
//! what that handle does not offer, the same aws-sdk-s3 client.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll, ready};
use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_types::body::SdkBody;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::StatusCode;
use s3s::dto::*;
use s3s::stream::ByteStream as _;
use s3s::{S3Error, S3Request, S3Response, S3Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;
use tracing::Instrument as _;

mod compat;
mod deletes;
mod multipart;
mod part_copy;
mod tagging;
mod versions;

use deletes::Deleted;
use versions::Restored;

use super::errors::{self, error, from_error, from_sdk, invalid_argument, not_implemented};
use super::metrics::Metrics;
use super::{GatewayConfig, GatewayKeys, PlaintextObjects};
use crate::envelope::{EncryptParams, Opening, Sealing};
use crate::format::{COMMITMENT_LEN, body_len_for, limits};
use crate::keys::AsyncKeyProvider;
use crate::range::ByteRange;
use crate::s3::object::{self, HeaderLocation};
use crate::s3::{GetOptions, Head, ObjectInfo, S3, S3Url};
use crate::stream::{BatchBuffers, EngineOptions};
use crate::{Backend, Error};

/// Objects whose header is kept at most (a few KiB each, except a rare companion header).
const HEADER_CACHE_MAX: usize = 4096;

/// Whether a body GET pinned to a cached header's ETag failed because the object is no
/// longer that one: replaced (412) or deleted (404).
fn changed_upstream(e: &Error) -> bool {
    use crate::error::ServiceErrorKind as K;
    matches!(e, Error::Storage(s) if matches!(s.kind(), K::PreconditionFailed | K::NotFound))
}

/// S3's largest single PutObject body.
const MAX_PUT_BODY: u64 = 5 * 1024 * 1024 * 1024;
/// Bytes per message between the sealing task and the upstream request body.
const PUT_BUF: usize = 256 * 1024;

/// The gateway's S3 implementation (shared state behind an `Arc`).
#[derive(Clone)]
pub(crate) struct Service {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    s3: S3,
    keys: GatewayKeys,
    config: Arc<GatewayConfig>,
    metrics: Arc<Metrics>,
    /// (bucket, key, ETag) → plaintext size, or `None` for a plaintext object: what a
    /// listing would otherwise HEAD again every time.
    sizes: Mutex<HashMap<(String, String, String), Option<u64>>>,
    /// (bucket, key, version id asked for) → an object's loaded header and when
    /// (a version's header is as safe to keep as the current one's: its body GETs are
    /// pinned to the version and its ETag, and a version never changes): unconditional GETs
    /// reuse it for [`GatewayConfig::header_cache_ttl`] instead of a HEAD upstream (and a
    /// companion GET), since clients download with many concurrent ranged GETs of one
    /// object. Safe because every body GET is pinned to the header's ETag (If-Match): an
    /// object replaced or deleted meanwhile fails that GET, and the header is loaded again.
    /// A part-wise object's entry also keeps its part manifest (authenticated again by
    /// every GET that uses it), so that its ranged GETs cost one upstream request each
    /// instead of three (HEAD, manifest, body); manifests count against
    /// [`MANIFEST_CACHE_BYTES`].
    headers: Mutex<HashMap<HeaderCacheKey, CachedHeader>>,
    /// The engine's batch buffers of PutObject, UploadPart and GetObject, recycled between
    /// requests.
    buffers: BatchBuffers,
}

/// What the header cache is keyed by: bucket, key and the version id a GET asked for
/// (`None`: the current object).
type HeaderCacheKey = (String, String, Option<String>);

/// Manifest bytes the header cache keeps at most (a manifest is 29 bytes per part plus
/// 68: a 10,000-part object's is ~290 KiB).
const MANIFEST_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// One header cache entry: when it was loaded, the object's header and, for a part-wise
/// object, its part manifest as read upstream.
#[derive(Clone)]
struct CachedHeader {
    at: Instant,
    info: ObjectInfo,
    manifest: Option<Arc<[u8]>>,
}

/// Why a GET of a version-1 object did not answer.
enum GetFail {
    /// The S3 error to answer with.
    S3(S3Error),
    /// The header came from the cache and the object changed upstream since: load it
    /// again and retry.
    Stale,
}

impl From<S3Error> for GetFail {
    fn from(e: S3Error) -> Self {
        GetFail::S3(e)
    }
}

/// What is stored under a key.
enum Stored {
    /// A sealstream object with its parsed header.
    Sealed(Box<ObjectInfo>),
    /// An object without sealstream metadata.
    Plain(Box<Head>),
}

impl Stored {
    fn head(&self) -> &Head {
        match self {
            Stored::Sealed(i) => &i.head,
            Stored::Plain(h) => h,
        }
    }
}

impl Service {
    pub(crate) fn new(
        client: Client,
        s3: S3,
        keys: GatewayKeys,
        config: Arc<GatewayConfig>,
        metrics: Arc<Metrics>,
    ) -> Service {
        Service {
            inner: Arc::new(Inner {
                client,
                s3,
                keys,
                config,
                metrics,
                sizes: Mutex::default(),
                headers: Mutex::default(),
                buffers: BatchBuffers::new(GATEWAY_IDLE_BUFFER_BYTES),
            }),
        }
    }

    /// A new object's sealing: a fresh data key from the wrapping keys (one KMS
    /// GenerateDataKey with a KMS key first) under the gateway's context.
    async fn new_sealing(&self) -> S3Result<Sealing> {
        let params = EncryptParams {
            context: self.inner.config.context.clone(),
            ..EncryptParams::default()
        };
        Sealing::for_providers_async(&self.wrap_keys(), &params)
            .await
            .map_err(|e| from_error(&e, false))
    }

    fn wrap_keys(&self) -> Vec<&dyn AsyncKeyProvider> {
        self.inner.keys.wrap.iter().map(|k| k.as_ref()).collect()
    }

    fn unwrap_keys(&self) -> Vec<&dyn AsyncKeyProvider> {
        self.inner.keys.unwrap.iter().map(|k| k.as_ref()).collect()
    }

    /// Writes a new object's companion header object (create-only, FORMAT.md §15.1) when
    /// its placement has one; returns its key.
    async fn put_companion(
        &self,
        bucket: &str,
        companion: Option<(String, Vec<u8>)>,
    ) -> S3Result<Option<String>> {
        let Some((key, bytes)) = companion else {
            return Ok(None);
        };
        self.inner
            .client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .if_none_match("*")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| from_sdk("PutObject", &e))?;
        Ok(Some(key))
    }

    /// Deletes the companion [`Service::put_companion`] wrote when the object it belongs
    /// to could not be written (best effort: an orphan companion is harmless).
    async fn drop_companion(&self, bucket: &str, companion: Option<&str>) {
        if let Some(key) = companion {
            let _ = self
                .inner
                .client
                .delete_object()
                .bucket(bucket)
                .key(key)
                .send()
                .await;
        }
    }

    fn serve_plain(&self) -> bool {
        self.inner.config.plaintext_objects == PlaintextObjects::Serve
    }

    /// HEADs `bucket/key` and, for a sealstream object, loads its header (from the
    /// metadata, or the companion object): no KMS call.
    async fn stat(&self, bucket: &str, key: &str) -> S3Result<Stored> {
        let url = url(bucket, key);
        let head = self
            .inner
            .s3
            .head(&url)
            .await
            .map_err(|e| from_error(&e, false))?;
        let Some(head) = head else {
            return Err(self.missing(bucket, key).await);
        };
        if !head.metadata.contains_key(object::META_FORMAT) {
            return Ok(Stored::Plain(Box::new(head)));
        }
        let info = self.load_header(url, head).await?;
        Ok(Stored::Sealed(Box::new(info)))
    }

    /// An object's header (and a part-wise object's manifest) loaded within the
    /// configured time, if any.
    fn cached_header(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Option<(ObjectInfo, Option<Arc<[u8]>>)> {
        let ttl = self.inner.config.header_cache_ttl;
        let mut m = self.inner.headers.lock().ok()?;
        let k = (
            bucket.to_string(),
            key.to_string(),
            version.map(str::to_string),
        );
        match m.get(&k) {
            Some(c) if c.at.elapsed() < ttl => Some((c.info.clone(), c.manifest.clone())),
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Keeps `info` (and a part-wise object's authenticated `manifest`) for the next
    /// unconditional GETs (bounded: expired entries go first, then everything when still
    /// full). Only an object with an ETag: the body GETs of a cached header are pinned
    /// to it.
    fn remember_header(
        &self,
        info: &ObjectInfo,
        version: Option<&str>,
        manifest: Option<Arc<[u8]>>,
    ) {
        let ttl = self.inner.config.header_cache_ttl;
        if ttl.is_zero() || info.head.etag.is_none() {
            return;
        }
        if let Ok(mut m) = self.inner.headers.lock() {
            let manifest_bytes = |m: &HashMap<HeaderCacheKey, CachedHeader>| -> usize {
                m.values()
                    .map(|c| c.manifest.as_ref().map_or(0, |b| b.len()))
                    .sum()
            };
            let adding = manifest.as_ref().map_or(0, |b| b.len());
            if m.len() >= HEADER_CACHE_MAX
                || (adding > 0 && manifest_bytes(&m) + adding > MANIFEST_CACHE_BYTES)
            {
                m.retain(|_, c| c.at.elapsed() < ttl);
                if m.len() >= HEADER_CACHE_MAX
                    || (adding > 0 && manifest_bytes(&m) + adding > MANIFEST_CACHE_BYTES)
                {
                    m.clear();
                }
            }
            let k = (
                info.url.bucket.clone(),
                info.url.key.clone(),
                version.map(str::to_string),
            );
            m.insert(
                k,
                CachedHeader {
                    at: Instant::now(),
                    info: info.clone(),
                    manifest,
                },
            );
        }
    }

    /// Drops the cached headers of a key (the current object's and its versions'): the
    /// object was written, copied onto or deleted through this process, or found changed
    /// upstream.
    fn forget_header(&self, bucket: &str, key: &str) {
        if let Ok(mut m) = self.inner.headers.lock() {
            m.retain(|(b, k, _), _| (b.as_str(), k.as_str()) != (bucket, key));
        }
    }

    /// The data key of a stored object: unwrapped with the gateway's keys (one KMS call
    /// for a KMS stanza, unless cached) under its context, and checked against the header's
    /// key commitment before any body byte is read. One place for GETs of both forms.
    async fn unlock(&self, info: &ObjectInfo) -> S3Result<Opening> {
        Opening::unlock_async(
            info.header.clone(),
            &self.unwrap_keys(),
            &self.inner.config.context,
            Backend::default(),
        )
        .await
        .map_err(|e| from_error(&e, false))
    }

    /// GetObject of a version-1 object whose header is loaded: unlock the data key, then
    /// stream the (ranged) plaintext, headers sent once the first bytes are authenticated.
    /// With `cached`, a pinned GET refused because the object changed (or went) upstream
    /// is [`GetFail::Stale`], before anything is answered.
    async fn get_v1(
        &self,
        info: Box<ObjectInfo>,
        range: Option<ByteRange>,
        cached: bool,
    ) -> Result<GetObjectOutput, GetFail> {
        let claimed = info
            .layout()
            .map_err(|e| from_error(&e, false))?
            .plaintext_len;
        // The data key: unwrapped (one KMS call for a KMS stanza) and checked against the
        // header's key commitment before any body byte is read.
        let opening = self.unlock(&info).await?;

        // The plaintext bytes this GET serves at most: the engine's buffers are sized to it.
        let want = match range.map(|r| resolve(r, claimed)) {
            Some(Some((s, e))) => e - s + 1,
            _ => claimed,
        };
        let (tx, mut rx) = mpsc::channel::<Msg>(4);
        let s3 = self.inner.s3.clone();
        let metrics = self.inner.metrics.clone();
        let task_info = info.clone();
        let buffers = self.inner.buffers.clone();
        tokio::spawn(
            async move {
                let opts = GetOptions {
                    batch_bytes: engine_for(want, task_info.header.chunk_size).batch_bytes,
                    buffers: Some(buffers),
                    ..GetOptions::default()
                };
                let r = if task_info.parts.is_some() {
                    // A part-wise object (several keys): through the writer, one copy.
                    let mut out = ChannelWriter {
                        tx: PollSender::new(tx.clone()),
                    };
                    match range {
                        Some(r) => {
                            s3.get_range_decrypted(&task_info, &opening, r, &mut out, &opts)
                                .await
                        }
                        None => {
                            s3.get_decrypted(&task_info, &opening, &mut out, &opts)
                                .await
                        }
                    }
                    .map(|_| ())
                } else {
                    send_decrypted(&s3, &task_info, &opening, range, &opts, &tx).await
                };
                if let Err(e) = r {
                    if e.is_authentication() {
                        Metrics::add(&metrics.auth_failures, 1);
                    }
                    if !e.is_broken_pipe() {
                        tracing::warn!(object = %task_info.url, error = %e, "GET failed");
                    }
                    let _ = tx.send(Msg::Error(e)).await;
                }
            }
            .instrument(tracing::Span::current()),
        );
        // Headers wait for the first authenticated bytes (or the end): a failure before
        // them is an ordinary error answer; for a range that depends on where the object
        // ends, the final chunk (hence the length) is authenticated by then.
        let first = match rx.recv().await {
            Some(Msg::Error(e)) if cached && changed_upstream(&e) => return Err(GetFail::Stale),
            Some(Msg::Error(e)) => return Err(from_error(&e, range.is_some()).into()),
            Some(Msg::Failed(e) | Msg::Gone(e)) => {
                return Err(error(
                    "InternalError",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    e.to_string(),
                )
                .into());
            }
            Some(Msg::Data(b)) => Some(b),
            None => None,
        };
        let (length, content_range) = match range {
            None => (claimed, None),
            Some(r) => {
                let (s, e) = resolve(r, claimed).ok_or_else(|| {
                    error(
                        "InvalidRange",
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        "The requested range is not satisfiable",
                    )
                })?;
                (e - s + 1, Some(format!("bytes {s}-{e}/{claimed}")))
            }
        };
        let mut o = output_from_head(&info.head, length as i64);
        o.content_range = content_range;
        o.body = Some(StreamingBlob::wrap(BodyStream {
            first,
            rx,
            metrics: self.inner.metrics.clone(),
        }));
        Ok(o)
    }

    /// The header of a sealstream object, checked as `S3::open_object` checks it.
    async fn load_header(&self, url: S3Url, head: Head) -> S3Result<ObjectInfo> {
        self.load_header_at(url, head, false).await
    }

    /// [`Service::load_header`] for the object's current state or, `of_version`, for the
    /// version `head` was read at (a deleted companion is then looked for among its
    /// versions: versions.rs).
    async fn load_header_at(
        &self,
        url: S3Url,
        head: Head,
        of_version: bool,
    ) -> S3Result<ObjectInfo> {
        let bad = |reason: String| {
            Metrics::add(&self.inner.metrics.auth_failures, 1);
            from_error(
                &Error::ObjectMetadata {
                    object: url.to_string(),
                    reason,
                },
                false,
            )
        };
        // A bucket with versioning (the HEAD named a version): the companion may be behind
        // a delete marker although the object is current (a delete undone, a newer version
        // deleted by id), so it is looked for as a read of the version looks for it.
        let of_version = of_version || head.version_id.is_some();
        let location = object::locate(&multipart::v1_view(&head.metadata)).map_err(bad)?;
        let header = match &location {
            // `locate` reads metadata only; a header in the body is the library's finding.
            HeaderLocation::Body => {
                return Err(from_error(
                    &crate::stream::internal("a body header located from metadata"),
                    false,
                ));
            }
            HeaderLocation::Inline(bytes) => object::parse_header(bytes, None).map_err(bad)?,
            HeaderLocation::Companion { key, commitment } => {
                let bytes = self
                    .get_sidecar(
                        &url.bucket,
                        key,
                        of_version,
                        limits::MAX_HEADER_LEN as usize,
                        "companion header",
                    )
                    .await?
                    .map(|s| s.bytes)
                    .ok_or_else(|| {
                        bad(format!(
                            "the header's companion object s3://{}/{key} is missing",
                            url.bucket
                        ))
                    })?;
                object::parse_header(&bytes, Some(commitment)).map_err(bad)?
            }
        };
        let header_len = header.serialized_len() as u64;
        let parts = object::part_wise(&head.metadata)
            .ok()
            .flatten()
            .map(|(name, _)| name);
        Ok(ObjectInfo {
            url,
            header,
            header_len,
            location,
            head,
            parts,
        })
    }

    async fn get_companion_tagged(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<Option<(Vec<u8>, Option<String>)>> {
        self.get_capped(
            bucket,
            key,
            limits::MAX_HEADER_LEN as usize,
            "companion header",
        )
        .await
    }

    /// GETs a small object we wrote beside another (a companion header, a part manifest),
    /// refusing, also while reading, more than `max` bytes; `None` if it is missing. `what`
    /// names it in errors.
    pub(super) async fn get_capped(
        &self,
        bucket: &str,
        key: &str,
        max: usize,
        what: &str,
    ) -> S3Result<Option<(Vec<u8>, Option<String>)>> {
        self.get_capped_at(bucket, key, None, max, what).await
    }

    /// [`Service::get_capped`] of one version (`None`: the current object).
    pub(super) async fn get_capped_at(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        max: usize,
        what: &str,
    ) -> S3Result<Option<(Vec<u8>, Option<String>)>> {
        let r = self
            .inner
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_string))
            .send()
            .await;
        let out = match r {
            Ok(o) => o,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) => return Err(from_sdk("GetObject", &e)),
        };
        let too_large = || {
            self.bad_object(
                bucket,
                key,
                format!("the {what} object is larger than {max} bytes, more than it can be"),
            )
        };
        if out.content_length().unwrap_or(0) > max as i64 {
            return Err(too_large());
        }
        let etag = out.e_tag().map(str::to_string);
        let mut body = out.body;
        let mut buf = Vec::new();
        while let Some(b) = body.next().await {
            let b = b.map_err(|e| {
                error(
                    "InternalError",
                    StatusCode::BAD_GATEWAY,
                    format!("reading the {what} object s3://{bucket}/{key}: {e}"),
                )
            })?;
            if buf.len() + b.len() > max {
                return Err(too_large());
            }
            buf.extend_from_slice(&b);
        }
        Ok(Some((buf, etag)))
    }

    /// NoSuchBucket or NoSuchKey for a HEAD that found nothing (a HEAD answer has no body
    /// to tell them apart, so the bucket is checked on this path only).
    async fn missing(&self, bucket: &str, key: &str) -> S3Error {
        let r = self.inner.client.head_bucket().bucket(bucket).send().await;
        match r {
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => error(
                "NoSuchBucket",
                StatusCode::NOT_FOUND,
                "The specified bucket does not exist",
            ),
            _ => error(
                "NoSuchKey",
                StatusCode::NOT_FOUND,
                format!("The specified key does not exist: {key}"),
            ),
        }
    }

    /// Plaintext size of a listed object, from the cache or a HEAD (no KMS call).
    async fn listed_size(&self, bucket: &str, key: &str, etag: &str, raw: i64) -> i64 {
        self.listed_size_at(bucket, key, None, etag, raw).await
    }

    /// [`Service::listed_size`] of one version (`None`: the current object), for
    /// ListObjectVersions. The cache's key has no version: one key's versions of one ETag
    /// hold the same body, hence the same size.
    async fn listed_size_at(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        etag: &str,
        raw: i64,
    ) -> i64 {
        if let Some(v) = self.cached_size(bucket, key, etag) {
            return v.map_or(raw, |n| n as i64);
        }
        let size = match self.stat_at(bucket, key, version).await {
            Ok(Stored::Sealed(info)) if multipart::is_v2(&info.head.metadata) => {
                match self.v2_claimed_size(&info, version.is_some()).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(bucket, key, error = %e, "listing: part-wise object without a readable manifest; its stored size is listed");
                        return raw;
                    }
                }
            }
            Ok(Stored::Sealed(info)) => match info.layout() {
                Ok(l) => Some(l.plaintext_len),
                Err(e) => {
                    tracing::warn!(bucket, key, error = %e, "listing: object has no valid layout; its stored size is listed");
                    return raw;
                }
            },
            Ok(Stored::Plain(_)) => None,
            Err(e) => {
                tracing::warn!(bucket, key, error = %e, "listing: HEAD failed; the stored size is listed");
                return raw;
            }
        };
        self.remember_size(bucket, key, etag, size);
        size.map_or(raw, |n| n as i64)
    }

    /// The plaintext size a listing or HEAD found for (bucket, key, ETag), if kept.
    fn cached_size(&self, bucket: &str, key: &str, etag: &str) -> Option<Option<u64>> {
        let ck = (bucket.to_string(), key.to_string(), etag.to_string());
        self.inner.sizes.lock().ok()?.get(&ck).copied()
    }

    /// Keeps a plaintext size for (bucket, key, ETag) (bounded: cleared when full).
    fn remember_size(&self, bucket: &str, key: &str, etag: &str, size: Option<u64>) {
        if let Ok(mut cache) = self.inner.sizes.lock() {
            if cache.len() >= self.inner.config.size_cache_entries {
                cache.clear();
            }
            cache.insert(
                (bucket.to_string(), key.to_string(), etag.to_string()),
                size,
            );
        }
    }

    /// The plaintext size a part-wise object's manifest claims (HEAD), kept per
    /// (bucket, key, ETag) like listed sizes: a HEAD of an object seen before costs one
    /// upstream request instead of two (HEAD and manifest GET).
    async fn v2_head_size(&self, info: &ObjectInfo, of_version: bool) -> S3Result<u64> {
        let (bucket, key) = (&info.url.bucket, &info.url.key);
        let etag = info.head.etag.as_deref();
        if let Some(Some(n)) = etag.and_then(|e| self.cached_size(bucket, key, e)) {
            return Ok(n);
        }
        let n = self.v2_claimed_size(info, of_version).await?;
        if let Some(e) = etag {
            self.remember_size(bucket, key, e, Some(n));
        }
        Ok(n)
    }

    /// Upstream listing entries → client entries: companions hidden, sizes in plaintext.
    async fn map_listing(
        &self,
        bucket: &str,
        objects: &[aws_sdk_s3::types::Object],
    ) -> Vec<Object> {
        // Owned entries first: the futures below must not borrow the SDK's output (the
        // trait's futures are `Send` for every lifetime).
        let entries: Vec<(String, String, Object)> = objects
            .iter()
            .filter_map(|o| {
                let key = o.key()?;
                if is_side_object(key) {
                    return None;
                }
                let entry = Object {
                    key: Some(key.to_string()),
                    size: Some(o.size().unwrap_or(0)),
                    e_tag: o.e_tag().and_then(parse_etag),
                    last_modified: o.last_modified().and_then(timestamp),
                    storage_class: o
                        .storage_class()
                        .map(|c| ObjectStorageClass::from(c.as_str().to_string())),
                    owner: o.owner().map(owner),
                    ..Object::default()
                };
                Some((
                    key.to_string(),
                    o.e_tag().unwrap_or_default().to_string(),
                    entry,
                ))
            })
            .collect();
        let this = self.clone();
        let bucket = bucket.to_string();
        futures_util::stream::iter(entries.into_iter().map(move |(key, etag, mut entry)| {
            let this = this.clone();
            let bucket = bucket.clone();
            async move {
                let raw = entry.size.unwrap_or(0);
                entry.size = Some(this.listed_size(&bucket, &key, &etag, raw).await);
                entry
            }
        }))
        .buffered(self.inner.config.list_head_concurrency)
        .collect()
        .await
    }

    /// One upstream ListObjectsV2 page as clients see it: companions and manifests
    /// hidden, sizes in plaintext (both listing versions answer from it).
    async fn list_page(&self, r: ListRequest<'_>) -> S3Result<ListPage> {
        let out = self
            .inner
            .client
            .list_objects_v2()
            .bucket(r.bucket)
            .set_prefix(r.prefix)
            .set_delimiter(r.delimiter)
            .set_continuation_token(r.continuation_token)
            .set_start_after(r.start_after)
            .set_max_keys(r.max_keys)
            .set_fetch_owner(r.fetch_owner)
            .send()
            .await
            .map_err(|e| from_sdk("ListObjectsV2", &e))?;
        // Keys and prefixes come back in UTF-8 binary order, so the greater of the last
        // of each is where the page ends.
        let last_key = out.contents().last().and_then(|o| o.key());
        let last_prefix = out.common_prefixes().last().and_then(|p| p.prefix());
        let last = last_key.max(last_prefix).map(str::to_string);
        Ok(ListPage {
            contents: self.map_listing(r.bucket, out.contents()).await,
            prefixes: common_prefixes(out.common_prefixes()),
            max_keys: out.max_keys(),
            is_truncated: out.is_truncated(),
            next_continuation_token: out.next_continuation_token().map(str::to_string),
            last,
        })
    }

    /// Deletes a companion named in `old` (the metadata `url` had before it was replaced)
    /// under the rules of FORMAT.md §15.1: only if named after `url`'s key, holding a
    /// header with the pinned commitment, and conditional on the ETag of what was checked.
    ///
    /// SHIM: the same rules as the library's private `S3::clean_companion`, which the
    /// gateway cannot call (src/s3 is not to be changed on this branch); fold into the
    /// library when its API offers it.
    async fn clean_companion(
        &self,
        url: &S3Url,
        old: &BTreeMap<String, String>,
        keep: Option<&str>,
    ) {
        let (key, pinned): (String, [u8; COMMITMENT_LEN]) =
            match object::companion_to_clean(&url.key, &multipart::v1_view(old)) {
                Ok(Some(c)) => c,
                Ok(None) => return,
                Err(reason) => {
                    tracing::warn!(object = %url, %reason, "old header object left alone");
                    return;
                }
            };
        if keep == Some(key.as_str()) {
            return;
        }
        let Ok(Some((bytes, etag))) = self.get_companion_tagged(&url.bucket, &key).await else {
            return;
        };
        if let Err(reason) = object::parse_header(&bytes, Some(&pinned)) {
            tracing::warn!(object = %url, companion = %key, %reason, "old header object does not hold this object's header; left alone");
            return;
        }
        let r = self
            .inner
            .client
            .delete_object()
            .bucket(&url.bucket)
            .key(&key)
            .set_if_match(etag)
            .send()
            .await;
        if let Err(e) = r {
            tracing::warn!(object = %url, companion = %key, error = %from_sdk("DeleteObject", &e), "could not delete the replaced object's header object");
        }
    }

    /// One key of DeleteObject(s), answered as upstream answered it: the current object
    /// (a delete marker in a versioned bucket) and then its companion and manifest objects
    /// if provably its own; or one version by id (deletes.rs).
    ///
    /// `if_match` (a conditional delete: `If-Match: ETAG` or `*`, or an entry's `ETag` in
    /// DeleteObjects) is judged on the HEAD read here, as S3 judges it (404 `NoSuchKey`
    /// when nothing is current, 412 `PreconditionFailed` when the ETag differs), and the
    /// delete then goes upstream with `If-Match` of that object's ETag, so that it deletes
    /// exactly the object whose side objects are cleaned after it: one replaced in between
    /// makes upstream answer 412 and nothing is deleted. The precondition is never dropped.
    async fn delete_one(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        if_match: Option<&ETagCondition>,
    ) -> S3Result<Deleted> {
        refuse_reserved(key)?;
        self.forget_header(bucket, key);
        if let Some(v) = version {
            if if_match.is_some() {
                // S3 judges conditional deletes on the current version only.
                return Err(not_implemented(
                    "a conditional delete (If-Match) of a version by id is not offered by the sealstream gateway",
                ));
            }
            return self.delete_version(bucket, key, v).await;
        }
        let u = url(bucket, key);
        // What the object names, read before it goes. Nothing there (or a delete marker):
        // the delete is still sent, so the client gets upstream's own answer (204, a new
        // delete marker in a versioned bucket, NoSuchBucket).
        let head = self
            .inner
            .s3
            .head(&u)
            .await
            .map_err(|e| from_error(&e, false))?;
        let upstream_if_match = match (if_match, &head) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(error(
                    "NoSuchKey",
                    StatusCode::NOT_FOUND,
                    "The specified key does not exist.",
                ));
            }
            (Some(c), Some(h)) => {
                check_conditions(h, Some(c), None, None, None)?;
                // (No ETag to pin the delete to, from a store that sends none, passes only
                // `*`, and the delete goes unpinned.)
                h.etag
                    .as_deref()
                    .and_then(parse_etag)
                    .map(|e| etag_header(&e))
            }
        };
        let out = self
            .inner
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .set_if_match(upstream_if_match)
            .send()
            .await
            .map_err(|e| from_sdk("DeleteObject", &e))?;
        if let Some(head) = head {
            self.clean_companion(&u, &head.metadata, None).await;
            self.clean_manifest(&u, &head.metadata, None).await;
        }
        Ok(Deleted::from_upstream(&out))
    }

    /// Streams an upstream object's body unchanged (plaintext objects, when allowed).
    async fn get_plain(&self, input: &GetObjectInput, head: &Head) -> S3Result<GetObjectOutput> {
        let mut req = self
            .inner
            .client
            .get_object()
            .bucket(&input.bucket)
            .key(&input.key)
            .set_if_match(head.etag.clone())
            .set_version_id(head.version_id.clone());
        if let Some(r) = &input.range {
            req = req.range(range_header(r));
        }
        let out = req.send().await.map_err(|e| from_sdk("GetObject", &e))?;
        let (tx, rx) = mpsc::channel::<Msg>(4);
        let mut body = out.body;
        tokio::spawn(async move {
            while let Some(b) = body.next().await {
                let msg = match b {
                    Ok(b) => Msg::Data(b),
                    Err(e) => Msg::Failed(io::Error::other(e)),
                };
                let failed = matches!(msg, Msg::Failed(_));
                if tx.send(msg).await.is_err() || failed {
                    return;
                }
            }
        });
        let mut o = output_from_head(head, out.content_length.unwrap_or(0));
        o.content_range = out.content_range;
        o.body = Some(StreamingBlob::wrap(BodyStream {
            first: None,
            rx,
            metrics: self.inner.metrics.clone(),
        }));
        Ok(o)
    }

    /// GetObject's whole read (conditions, range, every object form), answered as the
    /// output whose body streams authenticated plaintext. The one read path of GetObject
    /// and of UploadPartCopy's source (part_copy.rs), so that a copy releases nothing a
    /// GET would not.
    pub(super) async fn read_object(&self, input: GetObjectInput) -> S3Result<GetObjectOutput> {
        refuse_reserved(&input.key)?;
        // A version id pins every upstream read of this request to that version.
        let version = input.version_id.clone();
        let version = version.as_deref();
        // A bad Range is answered after the HEAD (a missing object is NoSuchKey first).
        let range = input.range.as_ref().map(to_byte_range).transpose();
        // Only a GET without conditions may use a recently loaded header: conditions are
        // answered from a fresh HEAD.
        let unconditional = input.if_match.is_none()
            && input.if_none_match.is_none()
            && input.if_modified_since.is_none()
            && input.if_unmodified_since.is_none()
            && input.part_number.is_none();
        if unconditional
            && let Ok(range) = range
            && let Some((mut info, manifest)) =
                self.cached_header(&input.bucket, &input.key, version)
        {
            Metrics::add(&self.inner.metrics.header_cache_hits, 1);
            // A read of the current object pins its body GETs to the cached ETag only: in
            // a versioned bucket an overwrite leaves the cached version in place, and a
            // pin to its version id would serve it; the ETag pin fails (412) instead.
            let current = match version {
                None => info.head.version_id.take(),
                Some(_) => None,
            };
            let got = match manifest {
                Some(m) => {
                    self.get_v2(
                        Box::new(info),
                        range,
                        None,
                        version.is_some(),
                        ManifestFrom::Cache(m),
                    )
                    .await
                }
                None => self.get_v1(Box::new(info), range, true).await,
            };
            match got {
                Ok(mut o) => {
                    if current.is_some() {
                        o.version_id = current;
                    }
                    return Ok(o);
                }
                Err(GetFail::S3(e)) => return Err(e),
                Err(GetFail::Stale) => {
                    Metrics::add(&self.inner.metrics.header_cache_stale, 1);
                    self.forget_header(&input.bucket, &input.key);
                }
            }
        }
        let stored = self.stat_at(&input.bucket, &input.key, version).await?;
        let part = part_request(&stored, input.part_number, input.range.is_some())?;
        check_conditions(
            stored.head(),
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let info = match stored {
            Stored::Plain(head) if self.serve_plain() => {
                return self.get_plain(&input, &head).await;
            }
            Stored::Plain(_) => return Err(errors::not_sealstream(&input.bucket, &input.key)),
            Stored::Sealed(info) => info,
        };
        let range = range?;
        if multipart::is_v2(&info.head.metadata) {
            let from = ManifestFrom::Upstream {
                remember: unconditional.then_some(version),
            };
            return self
                .get_v2(info, range, part, version.is_some(), from)
                .await
                .map_err(fresh_only);
        }
        if unconditional {
            self.remember_header(&info, version, None);
        }
        self.get_v1(info, range, false).await.map_err(fresh_only)
    }
}

/// The error of a GET from a freshly loaded header (only a cached one can be stale).
fn fresh_only(f: GetFail) -> S3Error {
    match f {
        GetFail::S3(e) => e,
        GetFail::Stale => from_error(
            &crate::stream::internal("a fresh header reported stale"),
            false,
        ),
    }
}

/// Where a part-wise GET's manifest comes from.
pub(super) enum ManifestFrom<'a> {
    /// The header cache, with the header: the GET is pinned to the cached ETag and a
    /// refusal because the object changed is [`GetFail::Stale`].
    Cache(Arc<[u8]>),
    /// Read upstream; `remember: Some(version asked for)` keeps header and manifest in
    /// the header cache once the manifest is authenticated.
    Upstream { remember: Option<Option<&'a str>> },
}

#[async_trait::async_trait]
impl s3s::S3 for Service {
    // ---- objects --------------------------------------------------------------------

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let trailer_names = trailer_checksums(&req.headers)?;
        tracing::debug!(
            payload = ?req.headers.get("x-amz-content-sha256"),
            trailer = ?req.headers.get("x-amz-trailer"),
            encoding = ?req.headers.get("content-encoding"),
            "PutObject body"
        );
        let trailers = req.trailing_headers.clone();
        let mut input = req.input;
        refuse_reserved(&input.key)?;
        self.forget_header(&input.bucket, &input.key);
        if input.sse_customer_key.is_some() || input.write_offset_bytes.is_some() {
            return Err(not_implemented(
                "SSE-C and append writes are not offered by the sealstream gateway (objects are already encrypted client-side)",
            ));
        }
        let if_none_match = create_only(&input.if_none_match, "PutObject")?;
        let body = input.body.take();
        let len = plaintext_len(input.content_length, body.as_ref())?;
        let user_meta: BTreeMap<String, String> = input
            .metadata
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if let Some(k) = user_meta.keys().find(|k| object::is_sealstream_key(k)) {
            return Err(invalid_argument(format!(
                "user metadata x-amz-meta-{k} is reserved for sealstream's own entries"
            )));
        }
        let expected = header_checksums(&input)?;
        let url = url(&input.bucket, &input.key);

        // A fresh data key for this object (one KMS call with a KMS key), the header placed
        // in the metadata or, when all of it would exceed S3's 2 KB, a companion object.
        let sealing = self.new_sealing().await?;
        let header = sealing.header().clone();
        let body_len = body_len_for(len, header.chunk_size);
        if body_len > MAX_PUT_BODY {
            return Err(error(
                "EntityTooLarge",
                StatusCode::BAD_REQUEST,
                format!(
                    "the encrypted body would be {body_len} bytes, over S3's 5 GiB PutObject limit; \
                     use a multipart upload"
                ),
            ));
        }
        let header_bytes = header
            .to_bytes()
            .map_err(|e| from_error(&Error::InvalidArgument(e.to_string()), false))?;
        let mut unique = [0u8; 8];
        crate::keys::fill_random(&mut unique).map_err(|e| from_error(&e, false))?;
        let unique = u64::from_be_bytes(unique);
        let placement = place_header(&header_bytes, &header, &url.key, &user_meta, None, unique)?;
        let old = self
            .inner
            .s3
            .head(&url)
            .await
            .map_err(|e| from_error(&e, false))?;
        if old.is_some() && if_none_match.is_some() {
            return Err(error(
                "PreconditionFailed",
                StatusCode::PRECONDITION_FAILED,
                "At least one of the pre-conditions you specified did not hold",
            ));
        }
        let companion = self.put_companion(&url.bucket, placement.companion).await?;

        // The client's body, verified (length, checksums) while it streams, sealed on the
        // engine's threads, and sent upstream as one PutObject of known length.
        let signed = self.inner.config.upstream_signed_payload;
        let sealed = SealedBody::new(
            body,
            (len, expected, trailer_names, trailers),
            sealing.cipher(),
            header.chunk_size,
            body_len,
            signed,
            &self.inner.buffers,
        )?;
        let mut metadata: HashMap<String, String> = user_meta.into_iter().collect();
        metadata.extend(placement.metadata);
        let content_encoding = input.content_encoding.as_deref().and_then(|v| {
            let kept: Vec<&str> = v
                .split(',')
                .map(str::trim)
                .filter(|e| !e.eq_ignore_ascii_case("aws-chunked") && !e.is_empty())
                .collect();
            (!kept.is_empty()).then(|| kept.join(","))
        });
        let put = self
            .inner
            .client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_length(sealed.content_length as i64)
            .body(sealed.body)
            .set_metadata(Some(metadata))
            .set_content_type(input.content_type.clone())
            .set_cache_control(input.cache_control.clone())
            .set_content_disposition(input.content_disposition.clone())
            .set_content_encoding(content_encoding)
            .set_content_language(input.content_language.clone())
            .set_storage_class(input.storage_class.as_ref().map(|c| c.as_str().into()))
            .set_server_side_encryption(
                input
                    .server_side_encryption
                    .as_ref()
                    .map(|c| c.as_str().into()),
            )
            .set_ssekms_key_id(input.ssekms_key_id.clone())
            .set_tagging(input.tagging.clone())
            .set_if_none_match(if_none_match)
            .set_if_match(
                input
                    .if_match
                    .as_ref()
                    .and_then(|c| c.as_etag())
                    .map(etag_header),
            );
        let r = if signed {
            put.send().await
        } else {
            put.customize()
                .config_override(unsigned_upload_config())
                .interceptor(UnsignedChunked {
                    decoded_len: body_len,
                })
                .send()
                .await
        };
        sealed.pump.abort();
        let out = match r {
            Ok(o) => o,
            Err(e) => {
                self.drop_companion(&url.bucket, companion.as_deref()).await;
                return Err(sealed.failure.or(from_sdk("PutObject", &e)));
            }
        };
        if let Some(old) = &old {
            self.clean_companion(&url, &old.metadata, companion.as_deref())
                .await;
            self.clean_manifest(&url, &old.metadata, None).await;
        }
        let output = PutObjectOutput {
            e_tag: out.e_tag().and_then(parse_etag),
            version_id: out.version_id().map(str::to_string),
            // The checksums the client sent, all verified on the plaintext by now.
            checksum_crc32: input.checksum_crc32,
            checksum_crc32c: input.checksum_crc32c,
            checksum_crc64nvme: input.checksum_crc64nvme,
            checksum_sha1: input.checksum_sha1,
            checksum_sha256: input.checksum_sha256,
            ..PutObjectOutput::default()
        };
        Metrics::add(&self.inner.metrics.bytes_in, len);
        tracing::info!(object = %url, plaintext = len, body = body_len, "stored");
        Ok(S3Response::new(output))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        Ok(S3Response::new(self.read_object(req.input).await?))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let input = req.input;
        refuse_reserved(&input.key)?;
        let version = input.version_id.as_deref();
        let stored = self.stat_at(&input.bucket, &input.key, version).await?;
        let part = part_request(&stored, input.part_number, false)?;
        check_conditions(
            stored.head(),
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            input.if_modified_since.as_ref(),
            input.if_unmodified_since.as_ref(),
        )?;
        let mut part_headers = None;
        let size = match &stored {
            Stored::Sealed(info) if multipart::is_v2(&info.head.metadata) => match part {
                Some(n) => {
                    let p = self.v2_claimed_part(info, n, version.is_some()).await?;
                    part_headers = Some(p);
                    p.len
                }
                None => self.v2_head_size(info, version.is_some()).await?,
            },
            Stored::Sealed(info) => {
                info.layout()
                    .map_err(|e| from_error(&e, false))?
                    .plaintext_len
            }
            Stored::Plain(h) if self.serve_plain() => h.content_length,
            Stored::Plain(_) => return Err(errors::not_sealstream(&input.bucket, &input.key)),
        };
        let o = output_from_head(stored.head(), size as i64);
        let (content_range, parts_count) = match part_headers {
            Some(p) => (p.content_range(), Some(p.count)),
            None => (None, None),
        };
        Ok(S3Response::new(HeadObjectOutput {
            content_range,
            parts_count,
            accept_ranges: o.accept_ranges,
            content_length: o.content_length,
            content_type: o.content_type,
            cache_control: o.cache_control,
            content_disposition: o.content_disposition,
            content_encoding: o.content_encoding,
            content_language: o.content_language,
            e_tag: o.e_tag,
            last_modified: o.last_modified,
            metadata: o.metadata,
            storage_class: o.storage_class,
            version_id: o.version_id,
            ..HeadObjectOutput::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let page = self
            .list_page(ListRequest {
                bucket: &i.bucket,
                prefix: i.prefix.clone(),
                delimiter: i.delimiter.clone(),
                start_after: i.start_after.clone(),
                continuation_token: i.continuation_token.clone(),
                max_keys: i.max_keys,
                fetch_owner: i.fetch_owner,
            })
            .await?;
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            max_keys: page.max_keys,
            key_count: Some((page.contents.len() + page.prefixes.len()) as i32),
            continuation_token: i.continuation_token,
            next_continuation_token: page.next_continuation_token,
            is_truncated: page.is_truncated,
            start_after: i.start_after,
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..ListObjectsV2Output::default()
        }))
    }

    /// ListObjects (v1), served from an upstream ListObjectsV2 page: v1's marker is
    /// v2's start-after (both "list the keys after this one"), and v1's NextMarker is,
    /// as S3 defines it, given only with a delimiter: the last key or prefix of the page.
    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let page = self
            .list_page(ListRequest {
                bucket: &i.bucket,
                prefix: i.prefix.clone(),
                delimiter: i.delimiter.clone(),
                start_after: i.marker.clone(),
                continuation_token: None,
                max_keys: i.max_keys,
                // v1 entries always carry their owner.
                fetch_owner: Some(true),
            })
            .await?;
        let next_marker = if page.is_truncated == Some(true) && i.delimiter.is_some() {
            page.last
        } else {
            None
        };
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            marker: i.marker,
            max_keys: page.max_keys,
            is_truncated: page.is_truncated,
            next_marker,
            contents: Some(page.contents),
            common_prefixes: Some(page.prefixes),
            ..ListObjectsOutput::default()
        }))
    }

    async fn list_object_versions(
        &self,
        req: S3Request<ListObjectVersionsInput>,
    ) -> S3Result<S3Response<ListObjectVersionsOutput>> {
        Ok(S3Response::new(self.list_versions(req.input).await?))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        if i.if_match_size.is_some() || i.if_match_last_modified_time.is_some() {
            return Err(not_implemented(
                "DeleteObject conditions on size or last-modified time (directory buckets) are not offered by the sealstream gateway; If-Match is",
            ));
        }
        let d = self
            .delete_one(
                &i.bucket,
                &i.key,
                i.version_id.as_deref(),
                i.if_match.as_ref(),
            )
            .await?;
        Ok(S3Response::new(DeleteObjectOutput {
            delete_marker: d.delete_marker,
            version_id: d.version_id,
            ..DeleteObjectOutput::default()
        }))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        let quiet = i.delete.quiet == Some(true);
        let bucket = i.bucket.as_str();
        let results: Vec<(ObjectIdentifier, S3Result<Deleted>)> =
            futures_util::stream::iter(i.delete.objects.into_iter().map(|o| async move {
                // An entry's ETag is its If-Match (conditional deletes); its size and
                // time conditions are for directory buckets.
                let r = if o.size.is_some() || o.last_modified_time.is_some() {
                    Err(not_implemented(
                        "DeleteObjects conditions on size or last-modified time (directory buckets) are not offered by the sealstream gateway; ETag is",
                    ))
                } else {
                    let cond = o.e_tag.clone().map(ETagCondition::ETag);
                    self.delete_one(bucket, &o.key, o.version_id.as_deref(), cond.as_ref())
                        .await
                };
                (o, r)
            }))
            .buffered(self.inner.config.list_head_concurrency)
            .collect()
            .await;
        let mut deleted = Vec::new();
        let mut errs = Vec::new();
        for (o, r) in results {
            match r {
                Ok(d) if !quiet => deleted.push(d.entry(o.key, o.version_id)),
                Ok(_) => {}
                Err(e) => errs.push(s3s::dto::Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(o.key),
                    message: e.message().map(str::to_string),
                    version_id: o.version_id,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errs),
            ..DeleteObjectsOutput::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        refuse_reserved(&i.key)?;
        self.forget_header(&i.bucket, &i.key);
        let (sb, sk, sv) = part_copy::copy_source(&i.copy_source, "CopyObject")?;
        refuse_reserved(&sk)?;
        let sv = sv.as_deref();
        let stored = self.stat_at(&sb, &sk, sv).await?;
        // The copy-source conditions, judged here as for UploadPartCopy (the dates are not
        // passed on: not every store honours them on a copy); the ETag ones also go
        // upstream below, against a source replaced since this HEAD.
        check_conditions(
            stored.head(),
            i.copy_source_if_match.as_ref(),
            i.copy_source_if_none_match.as_ref(),
            i.copy_source_if_modified_since.as_ref(),
            i.copy_source_if_unmodified_since.as_ref(),
        )
        .map_err(part_copy::copy_condition)?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str().eq_ignore_ascii_case("REPLACE"));
        let mut metadata = None;
        // A part-wise source: its manifest object, and the one the copy will name.
        let mut manifests: Option<(String, String)> = None;
        // A source version's companion or manifest read from a noncurrent version
        // (versions.rs): (key, version) of each.
        let mut restored = Restored::default();
        match &stored {
            Stored::Plain(_) if !self.serve_plain() => {
                return Err(errors::not_sealstream(&sb, &sk));
            }
            Stored::Plain(_) => {}
            Stored::Sealed(info) => {
                if matches!(info.location, HeaderLocation::Companion { .. }) && sb != i.bucket {
                    return Err(not_implemented(
                        "this object's header is in a companion object, which cannot follow a copy to another bucket; copy within the bucket, or download and upload",
                    ));
                }
                if multipart::is_v2(&info.head.metadata) {
                    manifests = Some(self.copy_manifest_names(info, &i.key)?);
                }
                if sv.is_some() {
                    self.restore_sidecars(info, &mut restored).await?;
                }
                // A part-wise copy names its own manifest: its metadata is always rewritten.
                let renamed = manifests.as_ref().filter(|(s, d)| s != d);
                if replace || renamed.is_some() {
                    // The client's new metadata plus our entries, copied as they are.
                    let user: BTreeMap<String, String> = if replace {
                        i.metadata
                            .clone()
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k.to_ascii_lowercase(), v))
                            .collect()
                    } else {
                        info.head
                            .other_metadata()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect()
                    };
                    if let Some(k) = user.keys().find(|k| object::is_sealstream_key(k)) {
                        return Err(invalid_argument(format!(
                            "user metadata x-amz-meta-{k} is reserved for sealstream's own entries"
                        )));
                    }
                    let mut all: HashMap<String, String> = user.into_iter().collect();
                    all.extend(
                        info.head
                            .metadata
                            .iter()
                            .filter(|(k, _)| object::is_sealstream_key(k))
                            .map(|(k, v)| (k.clone(), v.clone())),
                    );
                    if let Some((_, dest)) = renamed {
                        all.insert(multipart::META_PARTS.to_string(), dest.clone());
                    }
                    let size =
                        object::metadata_size(all.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    if size > object::MAX_USER_METADATA {
                        return Err(error(
                            "MetadataTooLarge",
                            StatusCode::BAD_REQUEST,
                            "the new metadata plus the object's sealstream header exceed S3's 2 KB",
                        ));
                    }
                    metadata = Some(all);
                }
            }
        }
        let old = self
            .inner
            .s3
            .head(&url(&i.bucket, &i.key))
            .await
            .ok()
            .flatten();
        // The copy's manifest first (a server-side copy of the source's, under the name the
        // copy's metadata gives), removed again if the object copy fails.
        // A source version's manifest that is deleted is copied from its version, also onto
        // its own name (which restores it for the copy).
        let new_manifest = match &manifests {
            Some((src, dst))
                if (sb.as_str(), src.as_str()) != (i.bucket.as_str(), dst.as_str())
                    || restored.manifest.is_some() =>
            {
                self.inner
                    .client
                    .copy_object()
                    .bucket(&i.bucket)
                    .key(dst)
                    .copy_source(versions::copy_source(
                        &sb,
                        src,
                        restored.manifest.as_deref(),
                    ))
                    .send()
                    .await
                    .map_err(|e| from_sdk("CopyObject", &e))?;
                Some(dst.clone())
            }
            _ => None,
        };
        let mut r = self
            .inner
            .client
            .copy_object()
            .bucket(&i.bucket)
            .key(&i.key)
            .copy_source(versions::copy_source(&sb, &sk, sv))
            .set_copy_source_if_match(stored.head().etag.clone())
            .set_copy_source_if_none_match(
                i.copy_source_if_none_match
                    .as_ref()
                    .and_then(|c| c.as_etag())
                    .map(etag_header),
            )
            .set_storage_class(i.storage_class.as_ref().map(|c| c.as_str().into()))
            .set_tagging_directive(i.tagging_directive.as_ref().map(|c| c.as_str().into()))
            .set_tagging(i.tagging.clone());
        if let Some(c) = i.copy_source_if_match.as_ref().and_then(|c| c.as_etag()) {
            r = r.copy_source_if_match(etag_header(c));
        }
        if replace {
            r = r
                .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                .set_metadata(metadata)
                .set_content_type(i.content_type.clone())
                .set_cache_control(i.cache_control.clone())
                .set_content_disposition(i.content_disposition.clone())
                .set_content_encoding(i.content_encoding.clone())
                .set_content_language(i.content_language.clone());
        } else if metadata.is_some() {
            // A part-wise copy keeping the source's metadata, with its own manifest named.
            let h = stored.head();
            r = r
                .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace)
                .set_metadata(metadata)
                .set_content_type(h.content_type.clone())
                .set_cache_control(h.cache_control.clone())
                .set_content_disposition(h.content_disposition.clone())
                .set_content_encoding(h.content_encoding.clone())
                .set_content_language(h.content_language.clone());
        }
        let out = match r.send().await {
            Ok(o) => o,
            Err(e) => {
                if let Some(m) = &new_manifest {
                    let _ = self
                        .inner
                        .client
                        .delete_object()
                        .bucket(&i.bucket)
                        .key(m)
                        .send()
                        .await;
                }
                return Err(from_sdk("CopyObject", &e));
            }
        };
        if let Some(old) = old {
            let dest = url(&i.bucket, &i.key);
            let keep = match &stored {
                Stored::Sealed(info) => match &info.location {
                    HeaderLocation::Companion { key, .. } => Some(key.clone()),
                    HeaderLocation::Inline(_) | HeaderLocation::Body => None,
                },
                Stored::Plain(_) => None,
            };
            self.clean_companion(&dest, &old.metadata, keep.as_deref())
                .await;
            let keep = manifests.as_ref().map(|(_, d)| d.as_str());
            self.clean_manifest(&dest, &old.metadata, keep).await;
        }
        let res = out.copy_object_result();
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: res.and_then(|r| r.e_tag()).and_then(parse_etag),
                last_modified: res.and_then(|r| r.last_modified()).and_then(timestamp),
                ..CopyObjectResult::default()
            }),
            version_id: out.version_id().map(str::to_string),
            copy_source_version_id: out.copy_source_version_id().map(str::to_string),
            ..CopyObjectOutput::default()
        }))
    }

    // ---- refused: they would need plaintext the gateway does not have, or write it ---

    // ---- multipart uploads: part-wise objects (multipart.rs) ---------------------------

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        Ok(S3Response::new(self.create_upload(req.input).await?))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let trailers = req.trailing_headers.clone();
        Ok(S3Response::new(
            self.upload_part_sealed(&req.headers, trailers, req.input)
                .await?,
        ))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        Ok(S3Response::new(self.copy_part(req.input).await?))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.forget_header(&req.input.bucket, &req.input.key);
        Ok(S3Response::new(self.complete_upload(req.input).await?))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.abort_upload(req.input).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        Ok(S3Response::new(self.list_upload_parts(req.input).await?))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        Ok(S3Response::new(self.list_uploads(req.input).await?))
    }

    async fn get_object_tagging(
        &self,
        req: S3Request<GetObjectTaggingInput>,
    ) -> S3Result<S3Response<GetObjectTaggingOutput>> {
        Ok(S3Response::new(self.get_tags(req.input).await?))
    }

    async fn put_object_tagging(
        &self,
        req: S3Request<PutObjectTaggingInput>,
    ) -> S3Result<S3Response<PutObjectTaggingOutput>> {
        Ok(S3Response::new(self.put_tags(req.input).await?))
    }

    async fn delete_object_tagging(
        &self,
        req: S3Request<DeleteObjectTaggingInput>,
    ) -> S3Result<S3Response<DeleteObjectTaggingOutput>> {
        Ok(S3Response::new(self.delete_tags(req.input).await?))
    }

    async fn select_object_content(
        &self,
        _req: S3Request<SelectObjectContentInput>,
    ) -> S3Result<S3Response<SelectObjectContentOutput>> {
        Err(not_implemented(
            "SelectObjectContent runs a query on the stored bytes, which are encrypted: download the object instead",
        ))
    }

    async fn get_object_attributes(
        &self,
        _req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        Err(not_implemented(
            "GetObjectAttributes would report the encrypted object's sizes and checksums: use HeadObject",
        ))
    }

    // ---- buckets: passed through ----------------------------------------------------

    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let out = self
            .inner
            .client
            .list_buckets()
            .send()
            .await
            .map_err(|e| from_sdk("ListBuckets", &e))?;
        let buckets = out
            .buckets()
            .iter()
            .map(|b| Bucket {
                name: b.name().map(str::to_string),
                creation_date: b.creation_date().and_then(timestamp),
                ..Bucket::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: out.owner().map(owner),
            ..ListBucketsOutput::default()
        }))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let out = self
            .inner
            .client
            .head_bucket()
            .bucket(&req.input.bucket)
            .send()
            .await
            .map_err(|e| from_sdk("HeadBucket", &e))?;
        Ok(S3Response::new(HeadBucketOutput {
            bucket_region: out.bucket_region().map(str::to_string),
            ..HeadBucketOutput::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let i = req.input;
        let mut r = self.inner.client.create_bucket().bucket(&i.bucket);
        if let Some(c) = i
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
        {
            r = r.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(c.as_str().into())
                    .build(),
            );
        }
        let out = r.send().await.map_err(|e| from_sdk("CreateBucket", &e))?;
        Ok(S3Response::new(CreateBucketOutput {
            location: out.location().map(str::to_string),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.inner
            .client
            .delete_bucket()
            .bucket(&req.input.bucket)
            .send()
            .await
            .map_err(|e| from_sdk("DeleteBucket", &e))?;
        Ok(S3Response::new(DeleteBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let out = self
            .inner
            .client
            .get_bucket_location()
            .bucket(&req.input.bucket)
            .send()
            .await
            .map_err(|e| from_sdk("GetBucketLocation", &e))?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: out
                .location_constraint()
                .map(|c| BucketLocationConstraint::from(c.as_str().to_string())),
        }))
    }
}

// ---- helpers ---------------------------------------------------------------------------

/// What a listing asks upstream for (the fields both listing versions share).
struct ListRequest<'a> {
    bucket: &'a str,
    prefix: Option<String>,
    delimiter: Option<String>,
    start_after: Option<String>,
    continuation_token: Option<String>,
    max_keys: Option<i32>,
    fetch_owner: Option<bool>,
}

/// One listing page as clients see it, with what the answer of either version needs.
struct ListPage {
    contents: Vec<Object>,
    prefixes: Vec<CommonPrefix>,
    max_keys: Option<i32>,
    is_truncated: Option<bool>,
    next_continuation_token: Option<String>,
    /// The last key or prefix upstream listed (hidden ones included): v1's NextMarker.
    last: Option<String>,
}

/// An `If-None-Match` on a write: only `*` (create only) is offered, passed on as `*`.
fn create_only(c: &Option<IfNoneMatch>, op: &str) -> S3Result<Option<String>> {
    match c {
        None => Ok(None),
        Some(c) if c.is_any() => Ok(Some("*".to_string())),
        Some(_) => Err(not_implemented(format!(
            "If-None-Match on {op} supports only '*' (create only)"
        ))),
    }
}

/// Where a new object's header goes (FORMAT.md §15.1): inline in its metadata, or in a
/// companion object named with `unique`, judged with the user metadata and `extra` (an
/// entry of ours besides the header's) counted in S3's 2 KB.
fn place_header(
    header_bytes: &[u8],
    header: &crate::format::Header,
    key: &str,
    user_meta: &BTreeMap<String, String>,
    extra: Option<(&str, &str)>,
    unique: u64,
) -> S3Result<object::Placement> {
    let other = object::metadata_size(
        user_meta
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra),
    );
    object::place(header_bytes, &header.commitment, key, other, unique).map_err(invalid_argument)
}

/// The part a GET or HEAD asks for with `partNumber`, for a part-wise object (`None`: the
/// whole object). An object written in one piece has only part 1, the whole object; any
/// other number is `416 InvalidPartNumber`, as S3 answers. A range together with a part
/// number is refused as S3 refuses it.
fn part_request(stored: &Stored, n: Option<i32>, ranged: bool) -> S3Result<Option<u32>> {
    let Some(n) = n else { return Ok(None) };
    let v2 = matches!(stored, Stored::Sealed(i) if multipart::is_v2(&i.head.metadata));
    if !v2 {
        return if n == 1 {
            Ok(None)
        } else {
            Err(multipart::invalid_part_number())
        };
    }
    if ranged {
        return Err(error(
            "InvalidRequest",
            StatusCode::BAD_REQUEST,
            "Cannot specify both Range header and partNumber query parameter",
        ));
    }
    match u32::try_from(n) {
        Ok(n) if (1..=10_000).contains(&n) => Ok(Some(n)),
        _ => Err(invalid_argument(
            "Part number must be an integer between 1 and 10000, inclusive",
        )),
    }
}

fn url(bucket: &str, key: &str) -> S3Url {
    S3Url {
        bucket: bucket.to_string(),
        key: key.to_string(),
    }
}

/// Keys of our companion objects are not client objects: never read, written or deleted
/// through the gateway (a client could otherwise replace an object's header).
fn refuse_reserved(key: &str) -> S3Result<()> {
    if multipart::is_manifest_key(key) {
        return Err(invalid_argument(format!(
            "the key {key} has the form of a sealstream part manifest object (*{}<16 hex>), which the gateway reserves",
            multipart::PARTS_INFIX
        )));
    }
    if object::is_companion_key(key) {
        return Err(invalid_argument(format!(
            "the key {key} has the form of a sealstream header object (*{}<16 hex>), which the gateway reserves",
            object::COMPANION_INFIX
        )));
    }
    Ok(())
}

/// Percent-encodes a key for `x-amz-copy-source` (everything but unreserved and '/').
fn encode_key(key: &str) -> String {
    let mut s = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s
}

/// A companion header or part manifest: an object we write beside the ones clients see,
/// hidden from every listing.
pub(super) fn is_side_object(key: &str) -> bool {
    object::is_companion_key(key) || multipart::is_manifest_key(key)
}

/// An upstream owner as s3s answers it (listings of buckets, objects and versions).
pub(super) fn owner(w: &aws_sdk_s3::types::Owner) -> Owner {
    Owner {
        display_name: w.display_name().map(str::to_string),
        id: w.id().map(str::to_string),
    }
}

fn parse_etag(s: &str) -> Option<ETag> {
    ETag::parse_http_header(s.as_bytes()).ok()
}

fn etag_header(e: &ETag) -> String {
    match e {
        ETag::Strong(v) => format!("\"{v}\""),
        ETag::Weak(v) => format!("W/\"{v}\""),
    }
}

fn timestamp(dt: &aws_sdk_s3::primitives::DateTime) -> Option<Timestamp> {
    std::time::SystemTime::try_from(*dt)
        .ok()
        .map(Timestamp::from)
}

fn secs_of(ts: &Timestamp) -> i64 {
    time::OffsetDateTime::from(ts.clone()).unix_timestamp()
}

fn common_prefixes(p: &[aws_sdk_s3::types::CommonPrefix]) -> Vec<CommonPrefix> {
    p.iter()
        .map(|c| CommonPrefix {
            prefix: c.prefix().map(str::to_string),
        })
        .collect()
}

/// The answer's object headers, from what HEAD said: our metadata entries left out.
fn output_from_head(head: &Head, content_length: i64) -> GetObjectOutput {
    let metadata: HashMap<String, String> = head
        .other_metadata()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    GetObjectOutput {
        accept_ranges: Some("bytes".into()),
        content_length: Some(content_length),
        content_type: head.content_type.clone(),
        cache_control: head.cache_control.clone(),
        content_disposition: head.content_disposition.clone(),
        content_encoding: head.content_encoding.clone(),
        content_language: head.content_language.clone(),
        e_tag: head.etag.as_deref().and_then(parse_etag),
        last_modified: head.last_modified.as_ref().and_then(timestamp),
        metadata: Some(metadata),
        storage_class: head
            .storage_class
            .as_ref()
            .map(|c| StorageClass::from(c.as_str().to_string())),
        version_id: head.version_id.clone(),
        ..GetObjectOutput::default()
    }
}

/// RFC 9110 §13.2.2 order: If-Match, else If-Unmodified-Since (412); If-None-Match, else
/// If-Modified-Since (304), judged on the stored object's ETag and Last-Modified.
fn check_conditions(
    head: &Head,
    if_match: Option<&ETagCondition>,
    if_none_match: Option<&ETagCondition>,
    if_modified_since: Option<&Timestamp>,
    if_unmodified_since: Option<&Timestamp>,
) -> S3Result<()> {
    let etag = head.etag.as_deref().and_then(parse_etag);
    let matches = |c: &ETagCondition| match (c.as_etag(), &etag) {
        (None, _) => true, // '*': the object exists
        (Some(want), Some(have)) => want.value() == have.value(),
        (Some(_), None) => false,
    };
    let modified = head
        .last_modified
        .as_ref()
        .map(aws_sdk_s3::primitives::DateTime::secs);
    let failed = || {
        error(
            "PreconditionFailed",
            StatusCode::PRECONDITION_FAILED,
            "At least one of the pre-conditions you specified did not hold",
        )
    };
    let not_modified = || error("NotModified", StatusCode::NOT_MODIFIED, "Not Modified");
    if let Some(c) = if_match {
        if !matches(c) {
            return Err(failed());
        }
    } else if let (Some(t), Some(m)) = (if_unmodified_since, modified)
        && m > secs_of(t)
    {
        return Err(failed());
    }
    if let Some(c) = if_none_match {
        if matches(c) {
            return Err(not_modified());
        }
    } else if let (Some(t), Some(m)) = (if_modified_since, modified)
        && m <= secs_of(t)
    {
        return Err(not_modified());
    }
    Ok(())
}

fn to_byte_range(r: &Range) -> S3Result<ByteRange> {
    let br = match *r {
        Range::Int {
            first,
            last: Some(last),
        } => ByteRange::Inclusive(first, last),
        Range::Int { first, last: None } => ByteRange::From(first),
        Range::Suffix { length } => ByteRange::Suffix(length),
    };
    br.validate().map_err(|e| {
        error(
            "InvalidRange",
            StatusCode::RANGE_NOT_SATISFIABLE,
            e.to_string(),
        )
    })
}

fn range_header(r: &Range) -> String {
    match *r {
        Range::Int {
            first,
            last: Some(last),
        } => format!("bytes={first}-{last}"),
        Range::Int { first, last: None } => format!("bytes={first}-"),
        Range::Suffix { length } => format!("bytes=-{length}"),
    }
}

/// First and last byte of `r` in an object of `len` bytes, `None` if unsatisfiable.
fn resolve(r: ByteRange, len: u64) -> Option<(u64, u64)> {
    if len == 0 {
        return None;
    }
    match r {
        ByteRange::Inclusive(s, e) if s < len => Some((s, e.min(len - 1))),
        ByteRange::From(s) if s < len => Some((s, len - 1)),
        ByteRange::Suffix(n) if n > 0 => Some((len.saturating_sub(n), len - 1)),
        _ => None,
    }
}

// ---- PUT: checksums --------------------------------------------------------------------

/// The checksum algorithms S3 clients send, by header name.
const CHECKSUMS: [&str; 5] = [
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
];

/// Checksums given as headers (and Content-MD5): name → expected base64 value.
fn header_checksums(i: &PutObjectInput) -> S3Result<Vec<(&'static str, String)>> {
    Ok(given_checksums(
        [
            &i.checksum_crc32,
            &i.checksum_crc32c,
            &i.checksum_crc64nvme,
            &i.checksum_sha1,
            &i.checksum_sha256,
        ],
        &i.content_md5,
    ))
}

/// The checksum headers in `CHECKSUMS` order, and Content-MD5: name → expected base64 value.
fn given_checksums(
    given: [&Option<String>; 5],
    md5: &Option<String>,
) -> Vec<(&'static str, String)> {
    let mut v = Vec::new();
    for (name, val) in CHECKSUMS.iter().zip(given) {
        if let Some(val) = val {
            v.push((*name, val.clone()));
        }
    }
    if let Some(md5) = md5 {
        v.push(("content-md5", md5.clone()));
    }
    v
}

/// Checksums announced as trailers (`x-amz-trailer`) of an aws-chunked body.
fn trailer_checksums(h: &http::HeaderMap) -> S3Result<Vec<&'static str>> {
    let mut v = Vec::new();
    for t in h.get_all("x-amz-trailer") {
        let t = t
            .to_str()
            .map_err(|_| invalid_argument("x-amz-trailer is not text"))?;
        for name in t.split(',').map(|s| s.trim().to_ascii_lowercase()) {
            match CHECKSUMS.iter().find(|c| **c == name) {
                Some(c) => v.push(*c),
                None if name.is_empty() => {}
                None => {
                    return Err(not_implemented(format!(
                        "the trailer {name} is not supported by the sealstream gateway"
                    )));
                }
            }
        }
    }
    Ok(v)
}

#[derive(Default)]
struct Sums {
    crc32: Option<s3s::crypto::Crc32>,
    crc32c: Option<s3s::crypto::Crc32c>,
    crc64: Option<s3s::crypto::Crc64Nvme>,
    sha1: Option<s3s::crypto::Sha1>,
    sha256: Option<s3s::crypto::Sha256>,
    md5: Option<s3s::crypto::Md5>,
}

impl Sums {
    fn enable(&mut self, name: &str) {
        use s3s::crypto::Checksum as _;
        match name {
            "x-amz-checksum-crc32" => self.crc32 = Some(s3s::crypto::Crc32::new()),
            "x-amz-checksum-crc32c" => self.crc32c = Some(s3s::crypto::Crc32c::new()),
            "x-amz-checksum-crc64nvme" => self.crc64 = Some(s3s::crypto::Crc64Nvme::new()),
            "x-amz-checksum-sha1" => self.sha1 = Some(s3s::crypto::Sha1::new()),
            "x-amz-checksum-sha256" => self.sha256 = Some(s3s::crypto::Sha256::new()),
            "content-md5" => self.md5 = Some(s3s::crypto::Md5::new()),
            _ => {}
        }
    }

    fn update(&mut self, b: &[u8]) {
        use s3s::crypto::Checksum as _;
        if let Some(h) = &mut self.crc32 {
            h.update(b);
        }
        if let Some(h) = &mut self.crc32c {
            h.update(b);
        }
        if let Some(h) = &mut self.crc64 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha1 {
            h.update(b);
        }
        if let Some(h) = &mut self.sha256 {
            h.update(b);
        }
        if let Some(h) = &mut self.md5 {
            h.update(b);
        }
    }

    /// name → base64 of each enabled digest.
    fn finish(self) -> HashMap<&'static str, String> {
        use s3s::crypto::Checksum as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let mut m = HashMap::new();
        if let Some(h) = self.crc32 {
            m.insert(CHECKSUMS[0], b64(h.finalize().as_ref()));
        }
        if let Some(h) = self.crc32c {
            m.insert(CHECKSUMS[1], b64(h.finalize().as_ref()));
        }
        if let Some(h) = self.crc64 {
            m.insert(CHECKSUMS[2], b64(h.finalize().as_ref()));
        }
        if let Some(h) = self.sha1 {
            m.insert(CHECKSUMS[3], b64(h.finalize().as_ref()));
        }
        if let Some(h) = self.sha256 {
            m.insert(CHECKSUMS[4], b64(h.finalize().as_ref()));
        }
        if let Some(h) = self.md5 {
            m.insert("content-md5", b64(h.finalize().as_ref()));
        }
        m
    }
}

/// The client's plaintext as it streams in: counts it against Content-Length and, at its
/// end, checks every checksum the client sent (headers, or trailers of an aws-chunked
/// body). A mismatch fails the read *instead of* reporting the end, so the sealing engine
/// never writes the final chunk and the upstream PutObject never completes.
/// The plaintext length of a request body: `Content-Length` (the decoded length for
/// aws-chunked bodies), as S3 requires one for PutObject and UploadPart.
pub(super) fn plaintext_len(
    content_length: Option<i64>,
    body: Option<&StreamingBlob>,
) -> S3Result<u64> {
    match (
        content_length,
        body.and_then(|b| b.remaining_length().exact()),
    ) {
        (Some(n), _) if n >= 0 => Ok(n as u64),
        (_, Some(n)) => Ok(n as u64),
        _ => Err(error(
            "MissingContentLength",
            StatusCode::LENGTH_REQUIRED,
            "You must provide the Content-Length HTTP header.",
        )),
    }
}

/// What a client's body is checked against while it streams: its plaintext length, the
/// checksums given in headers, the checksum trailers announced, and the trailers.
pub(super) type BodyChecks = (
    u64,
    Vec<(&'static str, String)>,
    Vec<&'static str>,
    Option<s3s::TrailingHeaders>,
);

/// A client's plaintext body, verified (length, checksums) while it streams and sealed on
/// the worker pool, as an upstream request body of `sealed_len` bytes of ciphertext: the
/// one path of PutObject and UploadPart. Unless `signed_upstream`, the body is already
/// framed as unsigned aws-chunked with a CRC32 trailer (send it with [`UnsignedChunked`]);
/// else it is the bare ciphertext, which the SDK signs and frames itself.
pub(super) struct SealedBody {
    /// The upstream request's body.
    pub(super) body: ByteStream,
    /// The upstream request's Content-Length (the framed length when framed).
    pub(super) content_length: u64,
    /// The task moving sealed bytes into `body`; abort it once the request is answered.
    pub(super) pump: tokio::task::JoinHandle<()>,
    /// The client body's own fault, if verification failed while it streamed.
    pub(super) failure: BodyFailure,
}

/// Where [`Verify`] leaves the client body's fault (bad checksum, wrong length).
pub(super) struct BodyFailure(Arc<Mutex<Option<S3Error>>>);

impl BodyFailure {
    /// The error to answer with when the upstream request failed: the client body's own
    /// fault when there was one, else `upstream`.
    pub(super) fn or(&self, upstream: S3Error) -> S3Error {
        self.0
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or(upstream)
    }
}

impl SealedBody {
    pub(super) fn new(
        body: Option<StreamingBlob>,
        (len, expected, trailer_names, trailers): BodyChecks,
        cipher: &crate::PayloadCipher,
        chunk_size: u32,
        sealed_len: u64,
        signed_upstream: bool,
        buffers: &BatchBuffers,
    ) -> S3Result<Self> {
        let failure: Arc<Mutex<Option<S3Error>>> = Arc::default();
        let reader = StreamReader::new(
            body.map(|b| b.map_err(io::Error::other).boxed())
                .unwrap_or_else(|| futures_util::stream::empty().boxed()),
        );
        let verify = Verify::new(
            reader,
            len,
            expected,
            trailer_names,
            trailers,
            failure.clone(),
        );
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(2);
        let opts = EngineOptions {
            buffers: Some(buffers),
            ..engine_for(len, chunk_size)
        };
        let enc = crate::aio::EncryptReader::new(cipher, chunk_size, verify, &opts)
            .map_err(|e| from_error(&e, false))?;
        let pump = tokio::spawn(pump(enc.into_sealed_stream(), tx));
        let framing = (!signed_upstream).then(|| Framing {
            crc: s3s::crypto::Crc32::default(),
            unframed: sealed_len,
            chunk_left: 0,
            started: false,
            ended: false,
        });
        let content_length = if signed_upstream {
            sealed_len
        } else {
            chunked_len(sealed_len)
        };
        let body = ByteStream::new(SdkBody::from_body_1_x(ChanBody {
            rx,
            piece: Bytes::new(),
            left: sealed_len,
            framing,
            encoded_left: content_length,
        }));
        Ok(SealedBody {
            body,
            content_length,
            pump,
            failure: BodyFailure(failure),
        })
    }
}

struct Verify<R> {
    inner: R,
    expected_len: u64,
    seen: u64,
    sums: Option<Sums>,
    expected: Vec<(&'static str, String)>,
    trailer_names: Vec<&'static str>,
    trailers: Option<s3s::TrailingHeaders>,
    failure: Arc<Mutex<Option<S3Error>>>,
}

impl<R> Verify<R> {
    fn new(
        inner: R,
        expected_len: u64,
        expected: Vec<(&'static str, String)>,
        trailer_names: Vec<&'static str>,
        trailers: Option<s3s::TrailingHeaders>,
        failure: Arc<Mutex<Option<S3Error>>>,
    ) -> Self {
        let mut sums = Sums::default();
        for (n, _) in &expected {
            sums.enable(n);
        }
        for n in &trailer_names {
            sums.enable(n);
        }
        Verify {
            inner,
            expected_len,
            seen: 0,
            sums: Some(sums),
            expected,
            trailer_names,
            trailers,
            failure,
        }
    }

    fn fail(&self, e: S3Error) -> io::Error {
        let msg = e.message().unwrap_or("request body rejected").to_string();
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(e);
        }
        io::Error::new(io::ErrorKind::InvalidData, msg)
    }

    /// The end of the body: length and checksums.
    fn check_end(&mut self) -> Result<(), S3Error> {
        if self.seen != self.expected_len {
            return Err(error(
                "IncompleteBody",
                StatusCode::BAD_REQUEST,
                format!(
                    "You did not provide the number of bytes specified by the Content-Length HTTP header ({} of {})",
                    self.seen, self.expected_len
                ),
            ));
        }
        let got = self.sums.take().map(Sums::finish).unwrap_or_default();
        let bad = |name: &str| {
            error(
                "BadDigest",
                StatusCode::BAD_REQUEST,
                format!("The {name} you specified did not match the calculated checksum."),
            )
        };
        for (name, want) in &self.expected {
            if got.get(name) != Some(want) {
                return Err(bad(name));
            }
        }
        if !self.trailer_names.is_empty() {
            let trailers = self
                .trailers
                .as_ref()
                .and_then(|t| t.take())
                .ok_or_else(|| {
                    invalid_argument("the checksum trailer announced in x-amz-trailer is missing")
                })?;
            for name in &self.trailer_names {
                let want = trailers.get(*name).and_then(|v| v.to_str().ok());
                if want.is_none() || got.get(name).map(String::as_str) != want {
                    return Err(bad(name));
                }
            }
        }
        Ok(())
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Verify<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let new = &buf.filled()[before..];
        if new.is_empty() {
            if buf.remaining() > 0 {
                // End of the body.
                if let Err(e) = self.check_end() {
                    return Poll::Ready(Err(self.fail(e)));
                }
            }
            return Poll::Ready(Ok(()));
        }
        let n = new.len() as u64;
        if let Some(s) = &mut self.sums {
            s.update(new);
        }
        self.seen += n;
        if self.seen > self.expected_len {
            let e = error(
                "IncompleteBody",
                StatusCode::BAD_REQUEST,
                "the request body is longer than its Content-Length",
            );
            return Poll::Ready(Err(self.fail(e)));
        }
        Poll::Ready(Ok(()))
    }
}

/// The largest engine batch of a gateway request (the library's default is 1 MiB). Each
/// request is its own stream, and every stream allocates and zeroes its `2T + 2` batches:
/// with 1 MiB batches every 8 MiB part of a multipart upload (boto3 and the AWS CLI send
/// 10 at once) held 6 MiB of fresh memory. 256 KiB batches took the gateway's peak RSS over
/// boto3 uploads from 117 to 50 MiB (docs/BENCHMARKS.md run D; its CPU did not measurably
/// change); the concurrent requests keep the worker pool busy without large batches.
const GATEWAY_BATCH_BYTES: usize = 256 * 1024;

/// Idle batch buffers the gateway keeps for the next requests ([`BatchBuffers`]): every
/// PutObject and UploadPart takes its `2T + 2` batches (and one more per sealed batch
/// handed to the upstream request without a copy) from there instead of fresh memory, and
/// so does every GetObject (one more per opened batch handed to the response body).
/// 16 MiB is about what 6 concurrent 8 MiB parts hold at once with 256 KiB batches on 2
/// cores; the buffers in use are bounded by the requests in flight, as before.
const GATEWAY_IDLE_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// Engine options for one request of `len` bytes: batches of at most `len` rounded up to
/// whole chunks, and never more than [`GATEWAY_BATCH_BYTES`]. Every stream allocates (and
/// zeroes) `2T + 2` batches up front, so with the default 1 MiB batches a 64 KiB ranged GET
/// or a small PUT cost 6 MiB of memset and page faults on 2 cores, and a burst of them set
/// the gateway's RSS; sized to the request they cost `2T + 2` chunks.
pub(super) fn engine_for(len: u64, chunk_size: u32) -> EngineOptions<'static> {
    let chunk = u64::from(chunk_size.max(1));
    let whole = len.div_ceil(chunk).max(1).saturating_mul(chunk);
    let max = GATEWAY_BATCH_BYTES as u64;
    EngineOptions {
        batch_bytes: usize::try_from(whole.min(max)).unwrap_or(GATEWAY_BATCH_BYTES),
        ..EngineOptions::default()
    }
}

/// Moves the sealed batches (the engine's own buffers, no copy) to the upstream request.
async fn pump<S>(mut sealed: S, tx: mpsc::Sender<io::Result<Bytes>>)
where
    S: futures_util::Stream<Item = io::Result<Bytes>> + Unpin,
{
    while let Some(item) = sealed.next().await {
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            return;
        }
    }
}

/// The upstream PutObject's body: what the sealing task sends, of a known length, bare or
/// framed as unsigned aws-chunked.
struct ChanBody {
    rx: mpsc::Receiver<io::Result<Bytes>>,
    /// What is left of the last piece received (framed: not yet sent).
    piece: Bytes,
    /// Ciphertext bytes still to come from the channel.
    left: u64,
    /// The aws-chunked framing, unless the SDK signs and frames the body itself.
    framing: Option<Framing>,
    /// Bytes of the request body still to come (framing included).
    encoded_left: u64,
}

/// Unsigned aws-chunked framing (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`, what the SDK sends
/// over HTTPS) built around the sealed pieces without copying them: chunks of [`PUT_BUF`]
/// bytes (the last one shorter) whatever the size of the pieces, each chunk header a small
/// frame of its own and the data frames slices of the pieces, and the CRC32 of the
/// ciphertext in the trailer, so that the upstream still rejects a body damaged on the way.
struct Framing {
    crc: s3s::crypto::Crc32,
    /// Ciphertext bytes not yet in a chunk whose header was sent.
    unframed: u64,
    /// Data bytes still due in the current chunk.
    chunk_left: u64,
    /// Whether a chunk was started (its closing CRLF is due before the next header).
    started: bool,
    ended: bool,
}

/// The trailer that carries the ciphertext's CRC32.
const CRC32_TRAILER: &str = "x-amz-checksum-crc32";

/// The length of `sealed_len` bytes framed by [`Framing`]: chunks of [`PUT_BUF`] (the last
/// one shorter), each `HEX\r\n DATA \r\n`, then `0\r\n`, the trailer line and `\r\n`.
fn chunked_len(sealed_len: u64) -> u64 {
    let chunk = |n: u64| format!("{n:X}").len() as u64 + 2 + n + 2;
    let full = sealed_len / PUT_BUF as u64;
    let rest = sealed_len % PUT_BUF as u64;
    let mut len = full * chunk(PUT_BUF as u64);
    if rest > 0 {
        len += chunk(rest);
    }
    // "0\r\n", "x-amz-checksum-crc32:" + 8 base64 characters + "\r\n", "\r\n".
    len + 3 + (CRC32_TRAILER.len() as u64 + 1 + 8 + 2) + 2
}

impl ChanBody {
    fn frame(&mut self, b: Bytes) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        self.encoded_left = self.encoded_left.saturating_sub(b.len() as u64);
        Poll::Ready(Some(Ok(http_body::Frame::data(b))))
    }

    /// Framed: the next frame cut from `piece` (a chunk header, or data of the current
    /// chunk), if it holds any bytes.
    fn framed_next(&mut self) -> Option<Bytes> {
        let f = self.framing.as_mut()?;
        if self.piece.is_empty() {
            return None;
        }
        if f.chunk_left == 0 {
            let n = f.unframed.min(PUT_BUF as u64);
            f.unframed -= n;
            f.chunk_left = n;
            let sep = if f.started { "\r\n" } else { "" };
            f.started = true;
            return Some(Bytes::from(format!("{sep}{n:X}\r\n")));
        }
        let n = usize::try_from(f.chunk_left).map_or(self.piece.len(), |c| c.min(self.piece.len()));
        let data = self.piece.split_to(n);
        f.chunk_left -= n as u64;
        use s3s::crypto::Checksum as _;
        f.crc.update(&data);
        Some(data)
    }
}

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, io::Error>>> {
        if let Some(b) = self.framed_next() {
            return self.frame(b);
        }
        if self.framing.as_ref().is_some_and(|f| f.ended) {
            return Poll::Ready(None);
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Ok(b)) => {
                if b.len() as u64 > self.left {
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "the sealed body is longer than announced",
                    ))));
                }
                self.left -= b.len() as u64;
                if self.framing.is_none() {
                    return self.frame(b);
                }
                self.piece = b;
                match self.framed_next() {
                    Some(f) => self.frame(f),
                    // An empty piece: nothing to send yet.
                    None => {
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                }
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None if self.left > 0 => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the sealed body ended early",
            )))),
            None => {
                let Some(f) = self.framing.as_mut() else {
                    return Poll::Ready(None);
                };
                use s3s::crypto::Checksum as _;
                f.ended = true;
                let crc = std::mem::take(&mut f.crc).finalize();
                let sep = if f.started { "\r\n" } else { "" };
                let tail = format!(
                    "{sep}0\r\n{CRC32_TRAILER}:{}\r\n\r\n",
                    base64::engine::general_purpose::STANDARD.encode(crc)
                );
                self.frame(Bytes::from(tail))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // Only once the trailer is out: a bare body may still end in an error after its
        // last byte was counted (hyper must not finish the request first).
        self.framing.as_ref().is_some_and(|f| f.ended)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.encoded_left)
    }
}

/// Sends a body framed by [`Framing`] as what it is: `x-amz-content-sha256:
/// STREAMING-UNSIGNED-PAYLOAD-TRAILER`, `Content-Encoding: aws-chunked`, the decoded length
/// and the announced trailer, all signed with the request's headers. Used with the SDK's
/// own checksum disabled for the request (`RequestChecksumCalculation::WhenRequired`:
/// PutObject and UploadPart require none), so that the SDK neither frames the body again nor
/// signs its payload: no SHA-256 of the ciphertext here and none upstream.
#[derive(Debug)]
pub(super) struct UnsignedChunked {
    /// The ciphertext's length (`x-amz-decoded-content-length`).
    pub(super) decoded_len: u64,
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for UnsignedChunked {
    fn name(&self) -> &'static str {
        "sealstream::UnsignedChunked"
    }

    fn modify_before_signing(
        &self,
        ctx: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let h = ctx.request_mut().headers_mut();
        h.insert("x-amz-decoded-content-length", self.decoded_len.to_string());
        h.insert("x-amz-trailer", CRC32_TRAILER);
        h.append("content-encoding", "aws-chunked");
        cfg.interceptor_state()
            .store_put(aws_runtime::auth::PayloadSigningOverride::StreamingUnsignedPayloadTrailer);
        Ok(())
    }
}

/// Per-request configuration for an upstream PutObject or UploadPart of a framed
/// [`SealedBody`]: none of the SDK's own checksum, and so no aws-chunked framing of its own
/// (PutObject and UploadPart require no checksum; the framing carries the CRC32).
pub(super) fn unsigned_upload_config() -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::default()
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
}

// ---- GET: the response body ------------------------------------------------------------

/// What the decrypting task sends the response body.
enum Msg {
    /// Authenticated plaintext.
    Data(Bytes),
    /// The library stopped with this error: the body is aborted.
    Error(Error),
    /// Reading upstream failed (plaintext pass-through): the body is aborted.
    Failed(io::Error),
    /// A body GET pinned to a cached header's ETag was refused before anything was sent:
    /// the object was replaced or deleted upstream (412, 404).
    Gone(io::Error),
}

/// Streams a version-1 object's (ranged) plaintext into the response channel as the
/// engine's own buffers (no copy: each message is one chunk's authenticated plaintext, and
/// its batch buffer goes back to the gateway's [`BatchBuffers`] once hyper has written it).
/// A client that went away ends it with `BrokenPipe`, as the writer path does.
async fn send_decrypted(
    s3: &crate::s3::S3,
    info: &ObjectInfo,
    opening: &Opening,
    range: Option<ByteRange>,
    opts: &GetOptions,
    tx: &mpsc::Sender<Msg>,
) -> Result<(), Error> {
    let planned = match range {
        Some(r) => Some(s3.plan_range(info, opening, r).await?),
        None => None,
    };
    send_opened(
        s3.decrypted_stream(info, opening, planned.as_ref(), opts)?,
        tx,
    )
    .await
}

/// Sends every piece of authenticated plaintext of `plain` into the response channel (no
/// copy); `BrokenPipe` once the client went away.
async fn send_opened<S>(mut plain: S, tx: &mpsc::Sender<Msg>) -> Result<(), Error>
where
    S: futures_util::Stream<Item = io::Result<Bytes>> + Unpin,
{
    while let Some(piece) = plain.next().await {
        let piece = piece.map_err(|e| crate::stream::io_error("reading the object", e))?;
        if tx.send(Msg::Data(piece)).await.is_err() {
            return Err(Error::io(
                "writing output",
                io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"),
            ));
        }
    }
    Ok(())
}

/// An `AsyncWrite` into the response channel: waits for room (the download goes no faster
/// than the client reads) and fails with `BrokenPipe` once the client is gone.
struct ChannelWriter {
    tx: PollSender<Msg>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the client went away");
        ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
        self.tx
            .send_item(Msg::Data(Bytes::copy_from_slice(buf)))
            .map_err(|_| gone())?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The response body: the first piece (already received), then the channel. An error
/// message ends the body with an error, which makes hyper abort the connection: the
/// client sees a broken transfer, never a clean end of a shorter object.
struct BodyStream {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Msg>,
    metrics: Arc<Metrics>,
}

/// Why a GET body ended in an error after its answer began: the library's error, kept
/// whole (not only its text) so that a reader inside the gateway, UploadPartCopy's, can
/// answer with the S3 error it maps to (part_copy.rs).
#[derive(Debug)]
pub(super) struct Aborted(pub(super) Error);

impl std::fmt::Display for Aborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the object failed while streaming; the response is aborted: {}",
            self.0
        )
    }
}

impl std::error::Error for Aborted {}

impl futures_util::Stream for BodyStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        if let Some(b) = self.first.take() {
            Metrics::add(&self.metrics.bytes_out, b.len() as u64);
            return Poll::Ready(Some(Ok(b)));
        }
        match ready!(self.rx.poll_recv(cx)) {
            Some(Msg::Data(b)) => {
                Metrics::add(&self.metrics.bytes_out, b.len() as u64);
                Poll::Ready(Some(Ok(b)))
            }
            Some(Msg::Error(e)) => Poll::Ready(Some(Err(io::Error::other(Aborted(e))))),
            Some(Msg::Failed(e) | Msg::Gone(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_sized_to_the_request() {
        let c = 64 * 1024;
        let max = GATEWAY_BATCH_BYTES;
        // A 64 KiB ranged GET or PUT: one chunk per batch, not the default 1 MiB.
        assert_eq!(engine_for(65_536, c).batch_bytes, 65_536);
        // Partial chunks round up; an empty body still gets one chunk.
        assert_eq!(engine_for(65_537, c).batch_bytes, 2 * 65_536);
        assert_eq!(engine_for(0, c).batch_bytes, 65_536);
        assert_eq!(engine_for(1, 4096).batch_bytes, 4096);
        // Large requests get the gateway's cap, whatever their size.
        assert_eq!(engine_for(8 << 20, c).batch_bytes, max);
        // An 8 MiB part gets 256 KiB batches, not the library's 1 MiB.
        assert_eq!(engine_for(8 << 20, c).batch_bytes, 256 * 1024);
        assert_eq!(engine_for(3 * 65_536, c).batch_bytes, 3 * 65_536);
        assert_eq!(engine_for(u64::MAX, c).batch_bytes, max);
        assert_eq!(engine_for(u64::MAX, u32::MAX).batch_bytes, max);
    }

    #[test]
    fn ranges_resolve() {
        assert_eq!(resolve(ByteRange::Inclusive(0, 9), 100), Some((0, 9)));
        assert_eq!(resolve(ByteRange::Inclusive(90, 200), 100), Some((90, 99)));
        assert_eq!(resolve(ByteRange::From(99), 100), Some((99, 99)));
        assert_eq!(resolve(ByteRange::Suffix(10), 100), Some((90, 99)));
        assert_eq!(resolve(ByteRange::Suffix(1000), 100), Some((0, 99)));
        assert_eq!(resolve(ByteRange::From(100), 100), None);
        assert_eq!(resolve(ByteRange::Inclusive(0, 0), 0), None);
    }

    /// Everything `ChanBody` yields for `pieces` (sent as the pump sends them), framed.
    fn framed(pieces: &[&[u8]]) -> (Vec<u8>, u64) {
        let (tx, rx) = mpsc::channel(pieces.len() + 1);
        let len: u64 = pieces.iter().map(|p| p.len() as u64).sum();
        for p in pieces {
            tx.try_send(Ok(Bytes::copy_from_slice(p))).unwrap();
        }
        drop(tx);
        let mut body = ChanBody {
            rx,
            piece: Bytes::new(),
            left: len,
            framing: Some(Framing {
                crc: s3s::crypto::Crc32::default(),
                unframed: len,
                chunk_left: 0,
                started: false,
                ended: false,
            }),
            encoded_left: chunked_len(len),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut out = Vec::new();
        rt.block_on(std::future::poll_fn(|cx| {
            use http_body::Body as _;
            loop {
                match ready!(Pin::new(&mut body).poll_frame(cx)) {
                    Some(f) => out.extend_from_slice(&f.unwrap().into_data().unwrap()),
                    None => return Poll::Ready(()),
                }
            }
        }));
        assert!(http_body::Body::is_end_stream(&body));
        (out, len)
    }

    #[test]
    fn upstream_body_is_unsigned_aws_chunked_with_a_crc32_trailer() {
        // CRC-32 of "123456789" is 0xCBF43926 (the standard check value).
        let (out, len) = framed(&[b"123456789"]);
        assert_eq!(
            out,
            b"9\r\n123456789\r\n0\r\nx-amz-checksum-crc32:y/Q5Jg==\r\n\r\n"
        );
        assert_eq!(out.len() as u64, chunked_len(len));
        // An empty body: the terminating chunk and the trailer only.
        let (out, _) = framed(&[]);
        assert_eq!(out, b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        assert_eq!(out.len() as u64, chunked_len(0));
        // Full pieces then a short one, and pieces of any size (the engine's batches are
        // not PUT_BUF long, and an empty one may come): the announced length is exact, the
        // chunks are PUT_BUF long but the last, and decoding gives the pieces back.
        let a = vec![1u8; PUT_BUF];
        let b = vec![2u8; PUT_BUF];
        let c = vec![3u8; 1000];
        let d = vec![4u8; 4 * (65_536 + 16)];
        let e = vec![5u8; 3 * PUT_BUF + 7];
        let cases: [&[&[u8]]; 3] = [&[&a, &b, &c], &[&d, &d, &c, &d], &[&c, &[], &e, &a]];
        for pieces in cases {
            let (out, len) = framed(pieces);
            assert_eq!(out.len() as u64, chunked_len(len));
            let mut rest = &out[..];
            let mut data = Vec::new();
            let mut sizes = Vec::new();
            loop {
                let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
                let n =
                    usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap(), 16).unwrap();
                rest = &rest[eol + 2..];
                if n == 0 {
                    break;
                }
                sizes.push(n);
                data.extend_from_slice(&rest[..n]);
                assert_eq!(&rest[n..n + 2], b"\r\n");
                rest = &rest[n + 2..];
            }
            assert_eq!(data, pieces.concat());
            let (last, full) = sizes.split_last().unwrap();
            assert!(
                full.iter().all(|&n| n == PUT_BUF) && *last <= PUT_BUF,
                "{sizes:?}"
            );
            assert!(rest.starts_with(b"x-amz-checksum-crc32:") && rest.ends_with(b"==\r\n\r\n"));
        }
    }

    #[test]
    fn reserved_keys() {
        assert!(refuse_reserved("a/b.sealstream-header-0123456789abcdef").is_err());
        assert!(refuse_reserved("a/b").is_ok());
    }
}
