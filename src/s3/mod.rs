//! Amazon S3: encrypt while uploading (multipart, parallel parts, bounded memory), stream
//! and decrypt while downloading (parallel ranged GETs), authenticated ranged reads that
//! fetch only the covering chunks, and key rotation by rewriting only the metadata.
//!
//! Layers, bottom up (docs/S3.md, "API"):
//! - [`transfer`]: plain S3 transfers that know nothing of sealstream's format, a
//!   [`transfer::MultipartWriter`] (fixed-size parts, bounded concurrency, complete or
//!   abort, create-only with `If-None-Match`) and a [`transfer::RangedReader`]
//!   (ETag-pinned ranged GETs, bounded prefetch);
//! - [`object`]: the object form (what is in the body, what is in the metadata), pure;
//! - [`S3`]: the async-first handle that seals into and opens from objects, built from the
//!   caller's `SdkConfig` or client and usable in any tokio runtime;
//! - [`blocking::S3`]: the same with synchronous calls, owning a runtime, for the CLI and
//!   synchronous programs.
//!
//! The crypto core stays synchronous and runs on the worker [`Pool`](crate::stream::Pool)
//! (by default the process-wide one); the async layer's adapters ([`crate::aio`]) connect
//! it to the transfers in the caller's task: no thread per call, no channel hops, and
//! dropping a future stops its stream (docs/ARCHITECTURE.md, "S3 layer").
//!
//! Nothing is left behind on failure: an upload that fails for any reason (a part, the
//! input, a key service), is cancelled through its token, or whose future is dropped,
//! aborts its multipart upload and deletes the companion object it wrote; and
//! [`S3::abort_all`] does the same for every upload of a handle (the CLI's Ctrl-C).

mod attributes;
pub mod blocking;
mod download;
mod live;
pub mod object;
mod rewrap;
#[cfg(feature = "s3ec")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3ec")))]
pub mod s3ec;
pub mod transfer;
mod upload;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::Region;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::RequestId;

use crate::error::{Error, Result};
use crate::format::{Header, Layout};

pub use attributes::{MAX_TAGS, ObjectAttributes, parse_tagging};
pub use download::{GetOptions, PlannedRange, Served};
pub use object::HeaderLocation;
pub use rewrap::{RewrapReport, RewrapStage};
pub use transfer::{MultipartWriter, RangedReader};
pub use upload::{PartPlan, PutOptions, PutReport, part_plan_for};

/// S3's smallest part (all but the last part of a multipart upload).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's most parts per upload.
pub const MAX_PARTS: u64 = 10_000;
/// S3's largest object.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;
/// Default plaintext bytes per part (rounded to whole chunks).
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Default number of parts (or ranged GETs) in flight.
pub const DEFAULT_CONCURRENCY: usize = 4;
/// Most parts (or ranged GETs) in flight that [`S3Settings::concurrency`] accepts. Each one
/// holds a part-sized buffer (up to [`MAX_PART_SIZE`]) and a connection, so the bound keeps
/// a typo from becoming an out-of-memory kill or a connection storm; the CLI's
/// `--concurrency` takes its range from here.
pub const MAX_CONCURRENCY: usize = 256;

/// Default `--s3-connect-timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--s3-read-timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--s3-timeout`.
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(120);

/// `s3://bucket/key`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// Bucket name.
    pub bucket: String,
    /// Object key (may be empty or end with '/' for a prefix).
    pub key: String,
}

impl S3Url {
    /// True if `s` looks like an S3 URL (so the CLI routes it here rather than to a file).
    pub fn is_s3(s: &str) -> bool {
        s.starts_with("s3://")
    }

    /// Parses `s3://bucket/key` (or `s3://bucket/prefix/`, `s3://bucket`).
    pub fn parse(s: &str) -> Result<S3Url> {
        let rest = s.strip_prefix("s3://").ok_or_else(|| {
            Error::InvalidArgument(format!("'{s}' is not an s3://bucket/key URL"))
        })?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !bucket.starts_with(['.', '-'])
            && !bucket.ends_with(['.', '-']);
        if !valid_bucket {
            return Err(Error::InvalidArgument(format!(
                "'{s}': '{bucket}' is not a valid S3 bucket name (3-63 of a-z 0-9 . -)"
            )));
        }
        if key.len() > object::MAX_KEY_LEN {
            return Err(Error::InvalidArgument(format!(
                "'{s}': the object key is longer than S3's {} bytes",
                object::MAX_KEY_LEN
            )));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }

    /// The same bucket with another key.
    pub fn with_key(&self, key: impl Into<String>) -> S3Url {
        S3Url {
            bucket: self.bucket.clone(),
            key: key.into(),
        }
    }

    /// Requires a non-empty object key that is not a prefix.
    pub fn require_object(&self) -> Result<()> {
        if self.key.is_empty() || self.key.ends_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{self} names a prefix, not an object; give the full key (s3://bucket/path/name)"
            )));
        }
        Ok(())
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// How to reach S3 and how hard to push.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// Region override (else the configuration chain's region).
    pub region: Option<String>,
    /// Named profile override.
    pub profile: Option<String>,
    /// Attempts per request including the first (throttling such as `SlowDown`/503 and
    /// transient network errors are retried with exponential backoff and jitter).
    pub max_attempts: u32,
    /// Parts uploaded, or ranged GETs downloaded, at once: 1..=[`MAX_CONCURRENCY`].
    pub concurrency: usize,
    /// Plaintext bytes per part / per ranged GET (rounded to whole chunks; parts are grown
    /// for large inputs so that no upload needs more than 10,000 parts).
    pub part_size: u64,
    /// Objects larger than this are rewrapped with a multipart copy (`UploadPartCopy`)
    /// instead of `CopyObject`; S3 allows `CopyObject` up to 5 GiB.
    pub copy_threshold: u64,
    /// Bytes per `UploadPartCopy` part of a multipart copy.
    pub copy_part_size: u64,
    /// Longest wait for a TCP (and TLS) connection to the endpoint.
    pub connect_timeout: Duration,
    /// Longest wait for the first byte of an answer once the request (body included) has
    /// been sent, and the grace period a transfer may stay below 1 byte/s (see docs/S3.md).
    pub read_timeout: Duration,
    /// Bound on a whole operation, retries included, for the operations that do not move
    /// data (HEAD, List, Create/Abort multipart, Delete, tagging).
    pub operation_timeout: Duration,
    /// Print one line on stderr per retry (what is retried and why).
    pub retry_notes: bool,
    /// An S3 endpoint that wins over `AWS_ENDPOINT_URL_S3` and `AWS_ENDPOINT_URL` (the
    /// CLI's `--endpoint-url`), for [`S3::connect`]; addressing is then path-style.
    pub endpoint_url: Option<String>,
    /// PEM file of CA certificates trusted for HTTPS besides the system's roots (the CLI's
    /// `--ca-bundle` / `AWS_CA_BUNDLE`), for a store or endpoint behind a private CA.
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl Default for S3Settings {
    fn default() -> Self {
        S3Settings {
            region: None,
            profile: None,
            max_attempts: 8,
            concurrency: DEFAULT_CONCURRENCY,
            part_size: DEFAULT_PART_SIZE,
            copy_threshold: MAX_PART_SIZE,
            copy_part_size: 1024 * 1024 * 1024,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            operation_timeout: DEFAULT_OPERATION_TIMEOUT,
            retry_notes: false,
            endpoint_url: None,
            ca_bundle: None,
        }
    }
}

/// A handle on S3 for sealstream's object form: the SDK client, the transfer settings, and
/// the uploads in progress (so that [`S3::abort_all`] can clean them up). Cheap to clone;
/// clones share the client and the live-upload registry.
///
/// Every method is async and runs in whatever tokio runtime polls it (multi-thread or
/// current-thread): the handle owns no runtime and never blocks on one. The chunk crypto
/// runs on the worker pool (the process-wide [`Pool::global`](crate::stream::Pool::global)
/// unless the options name another), never on the executor's threads, and no call starts
/// a thread. [`blocking::S3`] wraps this for synchronous callers.
#[derive(Clone)]
pub struct S3 {
    client: Client,
    settings: Arc<S3Settings>,
    /// What error messages call the endpoint (the override, or the region's).
    endpoint: Arc<str>,
    live: Arc<live::Registry>,
}

impl fmt::Debug for S3 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3")
            .field("endpoint", &self.endpoint)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl S3 {
    /// Loads the AWS configuration chain with the timeouts, retries and first-byte bound
    /// of `settings` (the CLI's `--s3-*` flags) and builds the handle; no S3 call yet.
    /// With an endpoint override (`AWS_ENDPOINT_URL[_S3]`), path-style addressing is used.
    pub async fn connect(settings: S3Settings) -> Result<S3> {
        check_settings(&settings)?;
        let (config, endpoint) = load_config(&settings).await?;
        S3::build(&config, endpoint, settings)
    }

    /// Builds the handle from the caller's own AWS configuration (credentials, region,
    /// retries, timeouts, HTTP client: whatever the service already uses). sealstream adds
    /// its per-operation timeout and, with an endpoint override, path-style addressing;
    /// `settings` supplies the transfer tuning (parts, concurrency, copy threshold).
    pub fn from_conf(config: &aws_config::SdkConfig, settings: S3Settings) -> Result<S3> {
        check_settings(&settings)?;
        S3::build(config, config.endpoint_url().map(str::to_string), settings)
    }

    /// Wraps a client the caller configured completely (sealstream adds nothing to it);
    /// `settings` supplies the transfer tuning only.
    pub fn from_client(client: Client, settings: S3Settings) -> Result<S3> {
        check_settings(&settings)?;
        let endpoint = format!(
            "the S3 endpoint of the given client (region {})",
            client
                .config()
                .region()
                .map_or_else(|| "unset".to_string(), |r| r.to_string())
        );
        Ok(S3 {
            client,
            settings: Arc::new(settings),
            endpoint: endpoint.into(),
            live: Arc::default(),
        })
    }

    fn build(
        config: &aws_config::SdkConfig,
        endpoint: Option<String>,
        settings: S3Settings,
    ) -> Result<S3> {
        let mut b = aws_sdk_s3::config::Builder::from(config)
            .interceptor(crate::aws::S3Timeouts {
                operation_timeout: settings.operation_timeout,
            })
            .interceptor(crate::aws::RetryNotes {
                service: "S3",
                max_attempts: settings.max_attempts,
                enabled: settings.retry_notes,
            });
        if let Some(ep) = &endpoint {
            b = b.endpoint_url(ep).force_path_style(true);
        }
        if config.region().is_none() {
            b = b.region(Region::new("us-east-1"));
        }
        let label = match &endpoint {
            Some(ep) => ep.clone(),
            None => format!(
                "the AWS endpoint of region {}",
                config
                    .region()
                    .map_or_else(|| "us-east-1".to_string(), |r| r.to_string())
            ),
        };
        Ok(S3 {
            client: Client::from_conf(b.build()),
            settings: Arc::new(settings),
            endpoint: label.into(),
            live: Arc::default(),
        })
    }

    /// The settings in use.
    pub fn settings(&self) -> &S3Settings {
        &self.settings
    }

    /// Aborts every multipart upload this handle (or a clone) has in progress and deletes
    /// the companion objects they wrote, waiting up to 20 s. For a service shutting down or
    /// a CLI's signal handler: the uploads themselves then fail.
    pub async fn abort_all(&self) {
        let left = self.live.take_all();
        let client = &self.client;
        let all = left.into_iter().map(|l| async move {
            let _ = tokio::time::timeout(Duration::from_secs(20), l.clean(client)).await;
        });
        futures_util::future::join_all(all).await;
    }

    /// HEADs an object and loads its header (from the metadata or the companion object).
    pub async fn open_object(&self, url: &S3Url) -> Result<ObjectInfo> {
        url.require_object()?;
        let head = self.head(url).await?.ok_or_else(|| not_found(url))?;
        let meta = &head.metadata;
        let bad = |reason: String| Error::ObjectMetadata {
            object: url.to_string(),
            reason,
        };
        // A part-wise object (FORMAT.md §17) places its header as version 1 does.
        let part_wise = object::part_wise(meta).map_err(bad)?;
        let (parts, location) = match &part_wise {
            Some((name, v1)) => (Some(name.clone()), object::locate(v1).map_err(bad)?),
            // No metadata of ours: a whole sealstream file uploaded by another tool starts
            // with a header; anything else gets `locate`'s explanation.
            None if !meta.contains_key(object::META_FORMAT) => {
                if let Some(header) = self.header_in_body(url, &head).await? {
                    return Ok(ObjectInfo {
                        url: url.clone(),
                        header_len: header.serialized_len() as u64,
                        header,
                        location: HeaderLocation::Body,
                        head,
                        parts: None,
                    });
                }
                (None, object::locate(meta).map_err(bad)?)
            }
            None => (None, object::locate(meta).map_err(bad)?),
        };
        let header = match &location {
            HeaderLocation::Body => {
                return Err(crate::stream::internal(
                    "a body header located from metadata",
                ));
            }
            HeaderLocation::Inline(bytes) => object::parse_header(bytes, None).map_err(bad)?,
            HeaderLocation::Companion { key, commitment } => {
                let curl = url.with_key(key.clone());
                let bytes = self.get_small(&curl, crate::format::limits::MAX_HEADER_LEN as u64).await?
                    .ok_or_else(|| {
                        bad(format!(
                            "the header's companion object {curl} is missing (deleted, or the object was copied without it)"
                        ))
                    })?;
                object::parse_header(&bytes, Some(commitment)).map_err(bad)?
            }
        };
        let header_len = header.serialized_len() as u64;
        Ok(ObjectInfo {
            url: url.clone(),
            header,
            header_len,
            location,
            head,
            parts,
        })
    }

    /// The header at the start of the body, if the body starts with sealstream's magic (a
    /// whole file stored as the object); `None` otherwise. Two small GETs pinned to the
    /// ETag read by HEAD: the fixed part, then the rest of the header (bounded by
    /// `MAX_HEADER_LEN`).
    async fn header_in_body(&self, url: &S3Url, head: &Head) -> Result<Option<Header>> {
        use crate::format::{FIXED_LEN, MAGIC, limits::MAX_HEADER_LEN};
        if head.content_length < FIXED_LEN as u64 {
            return Ok(None);
        }
        let pin = transfer::Pin {
            etag: head.etag.clone(),
            version_id: head.version_id.clone(),
        };
        let fixed = transfer::fetch(self, url, &pin, 0, FIXED_LEN as u64).await?;
        if fixed[..MAGIC.len()] != MAGIC {
            return Ok(None);
        }
        // The fixed part's own checks first (version, suite, header_len bounds).
        match Header::parse(&fixed) {
            Err(crate::error::HeaderError::Truncated) => {}
            Err(e) => return Err(e.into()),
            Ok((h, _)) => return Ok(Some(h)),
        }
        let header_len = u64::from(u32::from_be_bytes([
            fixed[48], fixed[49], fixed[50], fixed[51],
        ]))
        .min(u64::from(MAX_HEADER_LEN))
        .min(head.content_length);
        let bytes = transfer::fetch(self, url, &pin, 0, header_len).await?;
        Ok(Some(Header::parse(&bytes)?.0))
    }

    /// HEAD: `None` if the object does not exist.
    pub async fn head(&self, url: &S3Url) -> Result<Option<Head>> {
        let r = self
            .client
            .head_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await;
        let out = match r {
            Ok(o) => o,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                return Ok(None);
            }
            Err(e) => return Err(sdk_error(&self.endpoint, url, "HeadObject", e)),
        };
        Ok(Some(Head::from_output(&out)))
    }

    /// GETs a whole small object, refusing anything larger than `max` bytes; `None` on 404.
    async fn get_small(&self, url: &S3Url, max: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.get_small_tagged(url, max).await?.map(|(b, _)| b))
    }

    /// [`S3::get_small`], with the ETag of what was read.
    async fn get_small_tagged(
        &self,
        url: &S3Url,
        max: u64,
    ) -> Result<Option<(Vec<u8>, Option<String>)>> {
        async {
            let r = self
                .client
                .get_object()
                .bucket(&url.bucket)
                .key(&url.key)
                .send()
                .await;
            let out = match r {
                Ok(o) => o,
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                    return Ok(None);
                }
                Err(e) => return Err(sdk_error(&self.endpoint, url, "GetObject", e)),
            };
            if out.content_length().unwrap_or(0).max(0) as u64 > max {
                return Err(Error::ObjectMetadata {
                    object: url.to_string(),
                    reason: format!(
                        "the companion (header or part manifest) object is larger than \
                         {max} bytes, more than it can be"
                    ),
                });
            }
            let etag = out.e_tag().map(str::to_string);
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| storage(url, "GetObject", &format!("reading the body: {e}")))?;
            Ok(Some((body.into_bytes().to_vec(), etag)))
        }
        .await
    }

    /// Deletes an object (used for companions); a missing object is not an error.
    async fn delete(&self, url: &S3Url) -> Result<()> {
        self.client
            .delete_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(&self.endpoint, url, "DeleteObject", e))
    }

    /// Deletes the companion named in `old_meta` (the metadata `url` had before this write)
    /// only if it is named after `url`'s key, is not `keep`, and holds exactly one header
    /// carrying the commitment pinned in that metadata (and `expected`, if given); the
    /// delete is conditional on the ETag of the content checked. Anything else is left
    /// alone and reported as [`CompanionCleanup::Kept`]. `Err` only when a companion that
    /// passed every check could not be deleted.
    async fn clean_companion(
        &self,
        url: &S3Url,
        old_meta: &BTreeMap<String, String>,
        expected: Option<&[u8; crate::format::COMMITMENT_LEN]>,
        keep: Option<&str>,
    ) -> Result<CompanionCleanup> {
        let (key, pinned) = match object::companion_to_clean(&url.key, old_meta) {
            Ok(Some(c)) => c,
            Ok(None) => return Ok(CompanionCleanup::Nothing),
            Err(reason) => return Ok(CompanionCleanup::Kept(format!("{url}: {reason}"))),
        };
        if keep == Some(key.as_str()) {
            return Ok(CompanionCleanup::Nothing);
        }
        let curl = url.with_key(key.clone());
        let left = |why: &str| {
            Ok(CompanionCleanup::Kept(format!(
                "{url}: the old header object {curl} {why}, so it was left alone"
            )))
        };
        if expected.is_some_and(|e| e != &pinned) {
            return left("is pinned to another key commitment than the header sealstream read");
        }
        let max = crate::format::limits::MAX_HEADER_LEN as u64;
        let (bytes, etag) = match self.get_small_tagged(&curl, max).await {
            Ok(Some(got)) => got,
            Ok(None) => return Ok(CompanionCleanup::Nothing),
            Err(e) => return left(&format!("could not be read ({e})")),
        };
        if let Err(e) = object::parse_header(&bytes, Some(&pinned)) {
            return left(&format!("does not hold this object's header ({e})"));
        }
        let r = self
            .client
            .delete_object()
            .bucket(&curl.bucket)
            .key(&curl.key)
            .set_if_match(etag)
            .send()
            .await;
        match r {
            Ok(_) => Ok(CompanionCleanup::Deleted(key)),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                Ok(CompanionCleanup::Nothing)
            }
            Err(e) => Err(sdk_error(&self.endpoint, &curl, "DeleteObject", e)),
        }
    }

    /// Deletes an encrypted object and then its companion header object, the latter only if
    /// it provably is this object's (named after it and holding its header; else it is
    /// left alone and the report says why). A missing object is [`Error::Storage`] of kind
    /// `NotFound`.
    pub async fn delete_object(&self, url: &S3Url) -> Result<CompanionCleanup> {
        url.require_object()?;
        let head = self.head(url).await?.ok_or_else(|| not_found(url))?;
        self.delete(url).await?;
        self.clean_companion(url, &head.metadata, None, None).await
    }

    /// Lists object keys under `prefix` (companion objects excluded), with their sizes.
    pub async fn list(&self, url: &S3Url) -> Result<Vec<(String, u64)>> {
        async {
            let mut out = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let r = self
                    .client
                    .list_objects_v2()
                    .bucket(&url.bucket)
                    .prefix(&url.key)
                    .set_continuation_token(token.take())
                    .send()
                    .await
                    .map_err(|e| sdk_error(&self.endpoint, url, "ListObjectsV2", e))?;
                for o in r.contents() {
                    if let Some(k) = o.key()
                        && !object::is_companion_key(k)
                        && !k.ends_with('/')
                    {
                        out.push((k.to_string(), o.size().unwrap_or(0).max(0) as u64));
                    }
                }
                match r.next_continuation_token() {
                    Some(t) if r.is_truncated() == Some(true) => token = Some(t.to_string()),
                    _ => break,
                }
            }
            Ok(out)
        }
        .await
    }
}

/// What HEAD said about an object: everything a rewrap must preserve.
#[derive(Debug, Clone)]
pub struct Head {
    /// Body length in bytes.
    pub content_length: u64,
    /// ETag, used to pin every later read and the rewrap copy to this exact object.
    pub etag: Option<String>,
    /// Version id in a versioned bucket.
    pub version_id: Option<String>,
    /// Content-Type.
    pub content_type: Option<String>,
    /// Cache-Control.
    pub cache_control: Option<String>,
    /// Content-Disposition.
    pub content_disposition: Option<String>,
    /// Content-Encoding.
    pub content_encoding: Option<String>,
    /// Content-Language.
    pub content_language: Option<String>,
    /// Storage class (absent = STANDARD).
    pub storage_class: Option<aws_sdk_s3::types::StorageClass>,
    /// Server-side encryption mode.
    pub server_side_encryption: Option<aws_sdk_s3::types::ServerSideEncryption>,
    /// SSE-KMS key.
    pub sse_kms_key_id: Option<String>,
    /// S3 Bucket Key for SSE-KMS.
    pub bucket_key_enabled: Option<bool>,
    /// Website redirect.
    pub website_redirect_location: Option<String>,
    /// User metadata (names lowercase, without `x-amz-meta-`).
    pub metadata: BTreeMap<String, String>,
    /// Last-Modified, so a rewrap's copy can be made conditional on it (a metadata-only
    /// copy keeps the ETag but not the modification time).
    pub last_modified: Option<aws_sdk_s3::primitives::DateTime>,
}

impl Head {
    /// True if `other` describes the same stored state: same ETag, version, length,
    /// modification time and every user-metadata entry (the header or its companion and
    /// commitment included). A rewrap writes only if the object still is what it read.
    pub fn same_state(&self, other: &Head) -> bool {
        self.etag == other.etag
            && self.version_id == other.version_id
            && self.content_length == other.content_length
            && self.last_modified == other.last_modified
            && self.metadata == other.metadata
    }
}

/// What happened to the old companion object when an object was replaced or rewrapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanionCleanup {
    /// The old metadata named no companion (or the new one, which is kept).
    Nothing,
    /// The old companion was deleted (it was named after the object and held its header).
    Deleted(String),
    /// A companion was named but left alone; the text says which and why (the CLI prints
    /// it on stderr), so an attacker-planted name can never make sealstream delete it.
    Kept(String),
}

/// A [`Head`] from an SDK output that carries an object's headers (HeadObject's or
/// GetObject's: same accessors, different types), the length given apart: written once
/// for both.
macro_rules! head_from_output {
    ($out:expr, $content_length:expr) => {{
        let out = $out;
        let metadata: BTreeMap<String, String> = out
            .metadata()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Head {
            content_length: $content_length,
            etag: out.e_tag().map(str::to_string),
            version_id: out.version_id().map(str::to_string),
            content_type: out.content_type().map(str::to_string),
            cache_control: out.cache_control().map(str::to_string),
            content_disposition: out.content_disposition().map(str::to_string),
            content_encoding: out.content_encoding().map(str::to_string),
            content_language: out.content_language().map(str::to_string),
            storage_class: out.storage_class().cloned(),
            server_side_encryption: out.server_side_encryption().cloned(),
            sse_kms_key_id: out.ssekms_key_id().map(str::to_string),
            bucket_key_enabled: out.bucket_key_enabled(),
            website_redirect_location: out.website_redirect_location().map(str::to_string),
            metadata,
            last_modified: out.last_modified().copied(),
        }
    }};
}

impl Head {
    /// What a HEAD answered, in our terms: one place for [`S3::head`] and the gateway's
    /// HEAD of a version id (which needs the upstream status itself to answer
    /// `NoSuchVersion` or `MethodNotAllowed` for a delete marker).
    pub(crate) fn from_output(out: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Head {
        head_from_output!(out, out.content_length().unwrap_or(0).max(0) as u64)
    }

    /// A GET's answer as a HEAD's (the gateway asks a one-byte GET where a HEAD cannot carry
    /// the error code): the same fields, the length from the Content-Range total when the
    /// GET was ranged.
    #[cfg(feature = "gateway")]
    pub(crate) fn from_get_output(
        out: &aws_sdk_s3::operation::get_object::GetObjectOutput,
    ) -> Head {
        let total = out
            .content_range()
            .and_then(|r| r.rsplit_once('/'))
            .and_then(|(_, t)| t.parse::<u64>().ok());
        head_from_output!(
            out,
            total.unwrap_or(out.content_length().unwrap_or(0).max(0) as u64)
        )
    }

    /// User metadata that is not sealstream's (preserved by rewrap).
    pub fn other_metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata
            .iter()
            .filter(|(k, _)| !object::is_sealstream_key(k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// An encrypted object: its header (not yet unlocked) and what HEAD said.
#[derive(Debug, Clone)]
pub struct ObjectInfo {
    /// Where it is.
    pub url: S3Url,
    /// The parsed header (from metadata or companion).
    pub header: Header,
    /// The header's length in the file form (offset of chunk 0 there).
    pub header_len: u64,
    /// Where the header came from.
    pub location: HeaderLocation,
    /// HEAD response.
    pub head: Head,
    /// For a part-wise object (object-form version 2, FORMAT.md §17: uploaded in parts
    /// through the gateway), the key of its manifest object; `None` for version 1.
    pub parts: Option<String>,
}

impl ObjectInfo {
    /// Where chunk 0 starts in the body: 0, or the header's length when the header leads
    /// the body ([`HeaderLocation::Body`]).
    pub fn chunks_start(&self) -> u64 {
        match self.location {
            HeaderLocation::Body => self.header_len,
            _ => 0,
        }
    }

    /// The body offset of a file-form offset (`header ‖ chunks`).
    pub(crate) fn body_offset(&self, file_offset: u64) -> u64 {
        file_offset - self.header_len + self.chunks_start()
    }

    /// The chunk layout of the equivalent file (`header ‖ body`); fails, with an
    /// authentication error, if the body length cannot be a sealstream body.
    pub fn layout(&self) -> Result<Layout> {
        if self.parts.is_some() {
            return Err(Error::InvalidArgument(format!(
                "{} is a part-wise object (FORMAT.md §17): its layout comes from its manifest, \
                 which the get_* calls read and verify",
                self.url
            )));
        }
        Layout::from_lengths(
            self.header_len,
            self.header.chunk_size,
            self.header_len + self.head.content_length - self.chunks_start(),
        )
    }
}

// ---- errors --------------------------------------------------------------------------

/// HEAD found no object where one must be.
fn not_found(url: &S3Url) -> Error {
    use crate::error::{Service, ServiceError, ServiceErrorKind};
    Error::Storage(
        ServiceError::new(
            Service::S3,
            ServiceErrorKind::NotFound,
            format!("HeadObject {url}: NoSuchKey: the object does not exist"),
        )
        .with_operation("HeadObject")
        .with_code(Some("NoSuchKey".into())),
    )
}

/// A storage error naming the object, the operation and the reason.
fn storage(url: &S3Url, op: &str, msg: &str) -> Error {
    use crate::error::{Service, ServiceError, ServiceErrorKind};
    Error::Storage(
        ServiceError::new(
            Service::S3,
            ServiceErrorKind::Other,
            format!("{op} {url}: {msg}"),
        )
        .with_operation(op),
    )
}

/// Another writer changed the object while sealstream worked on it (found by sealstream's
/// own checks, so there is no service code): a [`ServiceErrorKind::PreconditionFailed`]
/// a caller can retry on.
///
/// [`ServiceErrorKind::PreconditionFailed`]: crate::error::ServiceErrorKind::PreconditionFailed
fn conflict(op: &str, message: String) -> Error {
    use crate::error::{Service, ServiceError, ServiceErrorKind};
    Error::Storage(
        ServiceError::new(Service::S3, ServiceErrorKind::PreconditionFailed, message)
            .with_operation(op),
    )
}

/// Puts `e` in context (`f` gets its text and writes the new message), keeping the kind,
/// code, request id and operation of a storage error; anything else becomes one of kind
/// `Other`.
fn with_context(e: Error, f: impl FnOnce(&str) -> String) -> Error {
    let text = f(&e.to_string());
    match e {
        Error::Storage(se) => Error::Storage(se.with_message(text)),
        _ => Error::storage(text),
    }
}

/// Maps an SDK error to [`Error::Storage`]: its kind, the service's error code, message
/// and request id, or what kept the request from getting an answer (credentials, refused,
/// DNS, timeout) naming `endpoint`; a failed `If-None-Match` precondition keeps its kind
/// so callers can turn it into [`Error::OutputExists`]. Never a `Debug` dump, and no
/// command-line flag: the CLI adds those.
fn sdk_error<E>(endpoint: &str, url: &S3Url, op: &str, e: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use crate::error::{Service, ServiceError, ServiceErrorKind};
    let typed =
        |kind: ServiceErrorKind, code: Option<String>, request_id: Option<String>, msg: &str| {
            Error::Storage(
                ServiceError::new(Service::S3, kind, format!("{op} {url}: {msg}"))
                    .with_operation(op)
                    .with_code(code)
                    .with_request_id(request_id),
            )
        };
    if let Some(t) = crate::aws::transport_failure(&e) {
        return typed(t.kind(), None, None, &t.plain_sentence("S3", endpoint));
    }
    let status = e.raw_response().map(|r| r.status().as_u16());
    let request_id = e.request_id().map(str::to_string);
    let request_id_text = request_id
        .as_ref()
        .map(|id| format!(" (request id {id})"))
        .unwrap_or_default();
    let code = e.code().map(str::to_string).or_else(|| {
        // HEAD answers have no body, so no code: name the status instead.
        match status {
            Some(301) => Some("PermanentRedirect".into()),
            Some(403) => Some("AccessDenied".into()),
            Some(404) => Some("NotFound".into()),
            Some(412) => Some("PreconditionFailed".into()),
            Some(503) => Some("SlowDown".into()),
            _ => None,
        }
    });
    let kind = ServiceErrorKind::from_code(code.as_deref(), status);
    let msg = e
        .message()
        .map(|m| format!(": {}", crate::aws::one_line(m)))
        .unwrap_or_default();
    let Some(code) = code else {
        let what = match (&e, status) {
            (SdkError::ResponseError(_), Some(s)) => {
                format!("an answer sealstream could not read (HTTP {s})")
            }
            (_, Some(s)) => format!("HTTP {s} without an error code"),
            _ => "an answer sealstream could not read".into(),
        };
        return typed(
            kind,
            None,
            request_id,
            &format!(
                "{} at {} sent {what}{request_id_text}; check that the endpoint is S3 and retry",
                "S3", endpoint
            ),
        );
    };
    // What to do about a code (a flag, a permission) is the caller's to say: the CLI
    // appends it by code (src/cli/s3.rs), a service maps the kind.
    let text = format!("{code}{msg}{request_id_text}");
    typed(kind, Some(code), request_id, &text)
}

/// Fails early on settings no transfer can run with.
fn check_settings(settings: &S3Settings) -> Result<()> {
    if !(1..=MAX_CONCURRENCY).contains(&settings.concurrency) {
        return Err(Error::InvalidArgument(format!(
            "the S3 concurrency {} is outside 1..={MAX_CONCURRENCY}",
            settings.concurrency
        )));
    }
    Ok(())
}

/// How [`S3::connect`] loads the configuration chain for `settings`.
/// The AWS configuration [`S3::connect`] loads for `settings` (region, profile, retries,
/// timeouts) and the S3 endpoint override it applies: `settings.endpoint_url`, else
/// `AWS_ENDPOINT_URL_S3`, else the configuration's (`AWS_ENDPOINT_URL`). Shared with the
/// gateway, whose upstream client must be configured exactly as the CLI's.
pub(crate) async fn load_config(
    settings: &S3Settings,
) -> Result<(aws_config::SdkConfig, Option<String>)> {
    let config = crate::aws::load_sdk_config(&aws_options(settings)).await?;
    let endpoint = settings
        .endpoint_url
        .clone()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::env::var("AWS_ENDPOINT_URL_S3")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| config.endpoint_url().map(str::to_string));
    Ok((config, endpoint))
}

fn aws_options(settings: &S3Settings) -> crate::aws::AwsOptions {
    crate::aws::AwsOptions {
        region: settings.region.clone(),
        profile: settings.profile.clone(),
        max_attempts: settings.max_attempts,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(10),
        timeouts: TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.read_timeout)
            .build(),
        stall_grace: Some(settings.read_timeout),
        ca_bundle: settings.ca_bundle.clone(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_checked_against_max_concurrency() {
        let with = |concurrency| S3Settings {
            concurrency,
            ..S3Settings::default()
        };
        assert!(check_settings(&with(1)).is_ok());
        assert!(check_settings(&with(MAX_CONCURRENCY)).is_ok());
        for bad in [0, MAX_CONCURRENCY + 1] {
            let e = check_settings(&with(bad)).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e}");
        }
    }

    #[test]
    fn urls() {
        let u = S3Url::parse("s3://my-bucket/a/b c").unwrap();
        assert_eq!((u.bucket.as_str(), u.key.as_str()), ("my-bucket", "a/b c"));
        assert!(
            S3Url::parse("s3://my-bucket")
                .unwrap()
                .require_object()
                .is_err()
        );
        assert!(
            S3Url::parse("s3://my-bucket/dir/")
                .unwrap()
                .require_object()
                .is_err()
        );
        for bad in ["s3://", "s3://A/x", "s3://ab/x", "file:///x", "s3://-ab/x"] {
            assert!(S3Url::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(encode_key("a b/ü+"), "a%20b/%C3%BC%2B");
    }
}
