//! Reads of one version id in a versioned bucket (GetObject, HeadObject and CopyObject
//! with `versionId`, ListObjectVersions): docs/GATEWAY.md "Versioned buckets" says what
//! each object form needs and why.
//!
//! The object's own version pins its metadata (hence an inline header) and its body: the
//! HEAD and every body GET carry the same `versionId` (and ETag). A companion header or a
//! part manifest is another object, with versions of its own, and nothing in the object's
//! metadata names one of them: only its key (FORMAT.md §15.1, §17.4). That key is unique
//! to one write (64 random bits for a companion, 64 bits of the header digest H for a
//! manifest) and written create-only, so a conforming writer stores one content under it;
//! replacing or deleting the object deletes it, which in a versioned bucket leaves that
//! content as a noncurrent version behind a delete marker. [`Service::get_sidecar`] reads
//! the current one if there is one, else the only content the key's versions hold, and
//! refuses a key whose versions hold several contents: which one the object version was
//! written with is then not knowable, and the reader would only learn it from an
//! authentication failure (the commitment binds the companion's header, the MAC the
//! manifest).

use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::operation::head_object::HeadObjectError;
use http::StatusCode;
use s3s::dto::*;
use s3s::{S3Error, S3Result};

use super::{
    Service, Stored, common_prefixes, encode_key, is_side_object, owner, parse_etag, timestamp, url,
};
use crate::gateway::errors::{self, error, from_sdk};
use crate::s3::object::{self, HeaderLocation};
use crate::s3::{Head, ObjectInfo};

/// Versions of one companion or manifest key read at most to resolve it: a conforming
/// writer leaves one content; a server-side copy repeated onto one destination, a few
/// identical ones.
const MAX_SIDECAR_VERSIONS: usize = 8;

/// A small object we wrote beside another (a companion header, a part manifest), as read.
pub(super) struct Sidecar {
    /// Its content.
    pub(super) bytes: Vec<u8>,
    /// The noncurrent version it was read from; `None` when it was the current object. A
    /// copy of the object version restores it under its key (docs/GATEWAY.md).
    pub(super) version: Option<String>,
}

/// What a copy of an object version found of its companion and manifest objects: the
/// noncurrent version each was read from (`None`: current, or none).
#[derive(Default)]
pub(super) struct Restored {
    /// The companion header's version, copied back onto its key before the object copy.
    pub(super) companion: Option<String>,
    /// The manifest's version, the source of the copy's manifest.
    pub(super) manifest: Option<String>,
}

/// The S3 error a client expects for a version id that names nothing.
fn no_such_version(key: &str, version: &str) -> S3Error {
    error(
        "NoSuchVersion",
        StatusCode::NOT_FOUND,
        format!("The specified version does not exist: {key} version {version}"),
    )
}

/// `bucket/key?versionId=v` for `x-amz-copy-source`.
pub(super) fn copy_source(bucket: &str, key: &str, version: Option<&str>) -> String {
    match version {
        Some(v) => format!("{bucket}/{}?versionId={}", encode_key(key), encode_key(v)),
        None => format!("{bucket}/{}", encode_key(key)),
    }
}

impl Service {
    /// HEADs `bucket/key` at `version` (the current object for `None`) and, for a
    /// sealstream object, loads its header with every read pinned to that version: no KMS
    /// call. The one entry point of GET, HEAD and CopyObject (and versioned listings).
    pub(super) async fn stat_at(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> S3Result<Stored> {
        let Some(v) = version else {
            return self.stat(bucket, key).await;
        };
        let mut head = self.head_version(bucket, key, v).await?;
        // Every later read is pinned to the version asked for, whether or not upstream
        // echoed it (moto does not for a `null` version).
        head.version_id.get_or_insert_with(|| v.to_string());
        if !head.metadata.contains_key(object::META_FORMAT) {
            return Ok(Stored::Plain(Box::new(head)));
        }
        let info = self.load_header_at(url(bucket, key), head, true).await?;
        Ok(Stored::Sealed(Box::new(info)))
    }

    /// HEAD of one version id, with the errors S3 gives for that version. A HEAD that
    /// upstream answers `400` is asked again as a one-byte GET, which answers the same
    /// headers, or carries the error code a HEAD answer cannot: S3 says 400 to a malformed
    /// id, and moto to every version id (`null` included) in a bucket whose versioning is
    /// not enabled, where its GET and S3's HEAD read the version.
    pub(super) async fn head_version(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
    ) -> S3Result<Head> {
        let r = self
            .inner
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .version_id(version)
            .send()
            .await;
        match r {
            Ok(out) => Ok(Head::from_output(&out)),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 400) => {
                self.head_by_get(bucket, key, version).await
            }
            Err(e) => Err(self.version_head_error(bucket, key, version, &e).await),
        }
    }

    /// [`Service::head_version`] by a GET of the first byte (of nothing, for an empty
    /// object): the headers are a HEAD's, the length the Content-Range total.
    async fn head_by_get(&self, bucket: &str, key: &str, version: &str) -> S3Result<Head> {
        let get = |range: Option<&str>| {
            self.inner
                .client
                .get_object()
                .bucket(bucket)
                .key(key)
                .version_id(version)
                .set_range(range.map(str::to_string))
                .send()
        };
        let out = match get(Some("bytes=0-0")).await {
            Ok(o) => o,
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                get(None).await.map_err(|e| from_sdk("GetObject", &e))?
            }
            Err(e) => return Err(from_sdk("GetObject", &e)),
        };
        Ok(Head::from_get_output(&out))
    }

    /// What a HEAD of a version id that failed means for the client: a HEAD answer has
    /// no body, so the status decides (404: no such version, or no such bucket; 405: the
    /// version is a delete marker).
    async fn version_head_error(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
        e: &SdkError<HeadObjectError, aws_smithy_runtime_api::http::Response>,
    ) -> S3Error {
        match e.raw_response().map(|r| r.status().as_u16()) {
            Some(404) => match self.missing(bucket, key).await {
                b if b.code().as_str() == "NoSuchBucket" => b,
                _ => no_such_version(key, version),
            },
            Some(405) => error(
                "MethodNotAllowed",
                StatusCode::METHOD_NOT_ALLOWED,
                format!(
                    "The specified method is not allowed against this resource: version \
                     {version} of {key} is a delete marker"
                ),
            ),
            _ => from_sdk("HeadObject", e),
        }
    }

    /// A companion header or manifest object for a read of the object's current state
    /// (`of_version` false: the current object only, as always) or of one of its versions
    /// (`of_version`: the current object, else the one content its noncurrent versions
    /// hold; module docs). `None` when there is none; refusing more than `max` bytes.
    pub(super) async fn get_sidecar(
        &self,
        bucket: &str,
        key: &str,
        of_version: bool,
        max: usize,
        what: &str,
    ) -> S3Result<Option<Sidecar>> {
        if let Some((bytes, _)) = self.get_capped_at(bucket, key, None, max, what).await? {
            return Ok(Some(Sidecar {
                bytes,
                version: None,
            }));
        }
        if !of_version {
            return Ok(None);
        }
        let out = self
            .inner
            .client
            .list_object_versions()
            .bucket(bucket)
            .prefix(key)
            .max_keys(MAX_SIDECAR_VERSIONS as i32 + 1)
            .send()
            .await
            .map_err(|e| from_sdk("ListObjectVersions", &e))?;
        let ids: Vec<String> = out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(key))
            .filter_map(|v| v.version_id().map(str::to_string))
            .collect();
        let ambiguous = |why: String| {
            error(
                errors::CODE_AMBIGUOUS_VERSION,
                StatusCode::CONFLICT,
                format!(
                    "the {what} object s3://{bucket}/{key} this version needs is deleted and \
                     its versions {why}, so the one written with this version is not known; \
                     restore the right one (copy it onto its key) or read a current object"
                ),
            )
        };
        if ids.len() > MAX_SIDECAR_VERSIONS || out.is_truncated() == Some(true) {
            return Err(ambiguous(format!("are more than {MAX_SIDECAR_VERSIONS}")));
        }
        let mut found: Option<Sidecar> = None;
        for id in ids {
            let Some((bytes, _)) = self
                .get_capped_at(bucket, key, Some(&id), max, what)
                .await?
            else {
                continue;
            };
            match &found {
                Some(f) if f.bytes != bytes => {
                    return Err(ambiguous("hold different contents".into()));
                }
                Some(_) => {}
                None => {
                    found = Some(Sidecar {
                        bytes,
                        version: Some(id),
                    })
                }
            }
        }
        Ok(found)
    }

    /// CopyObject of an object version: its companion header and manifest objects, found
    /// as a read of the version finds them. A deleted companion is copied from its version
    /// back onto its key, since the copy's metadata names it (a copy within the bucket:
    /// the only one a companion-form object allows); a deleted manifest's version is
    /// recorded for the manifest copy. Either way the copy reads as its source version.
    pub(super) async fn restore_sidecars(
        &self,
        info: &ObjectInfo,
        restored: &mut Restored,
    ) -> S3Result<()> {
        let bucket = &info.url.bucket;
        if let HeaderLocation::Companion { key, .. } = &info.location {
            let max = crate::format::limits::MAX_HEADER_LEN as usize;
            let found = self
                .get_sidecar(bucket, key, true, max, "companion header")
                .await?;
            if let Some(v) = found.and_then(|s| s.version) {
                self.inner
                    .client
                    .copy_object()
                    .bucket(bucket)
                    .key(key)
                    .copy_source(copy_source(bucket, key, Some(&v)))
                    .send()
                    .await
                    .map_err(|e| from_sdk("CopyObject", &e))?;
                tracing::info!(bucket, companion = %key, version = %v, "companion header restored from its version for a copy");
                restored.companion = Some(v);
            }
        }
        if super::multipart::is_v2(&info.head.metadata)
            && let Some(name) = info.head.metadata.get(super::multipart::META_PARTS)
        {
            let found = self
                .get_sidecar(
                    bucket,
                    name,
                    true,
                    crate::parts::MAX_MANIFEST_LEN,
                    "part manifest",
                )
                .await?;
            restored.manifest = found.and_then(|s| s.version);
        }
        Ok(())
    }

    /// ListObjectVersions, passed through as one upstream page: companion and manifest
    /// objects (and their delete markers) hidden, sizes in plaintext as ListObjects gives
    /// them (one HEAD of the version per object version not seen before, no KMS call).
    pub(super) async fn list_versions(
        &self,
        i: ListObjectVersionsInput,
    ) -> S3Result<ListObjectVersionsOutput> {
        let out = self
            .inner
            .client
            .list_object_versions()
            .bucket(&i.bucket)
            .set_prefix(i.prefix.clone())
            .set_delimiter(i.delimiter.clone())
            .set_key_marker(i.key_marker.clone())
            .set_version_id_marker(i.version_id_marker.clone())
            .set_max_keys(i.max_keys)
            .send()
            .await
            .map_err(|e| from_sdk("ListObjectVersions", &e))?;
        let entries: Vec<(String, String, String, ObjectVersion)> = out
            .versions()
            .iter()
            .filter_map(|v| {
                let key = v.key().filter(|k| !is_side_object(k))?;
                let entry = ObjectVersion {
                    key: Some(key.to_string()),
                    version_id: v.version_id().map(str::to_string),
                    is_latest: v.is_latest(),
                    size: Some(v.size().unwrap_or(0)),
                    e_tag: v.e_tag().and_then(parse_etag),
                    last_modified: v.last_modified().and_then(timestamp),
                    storage_class: v
                        .storage_class()
                        .map(|c| ObjectVersionStorageClass::from(c.as_str().to_string())),
                    owner: v.owner().map(owner),
                    ..ObjectVersion::default()
                };
                Some((
                    key.to_string(),
                    v.version_id().unwrap_or_default().to_string(),
                    v.e_tag().unwrap_or_default().to_string(),
                    entry,
                ))
            })
            .collect();
        let this = self.clone();
        let bucket = i.bucket.clone();
        let versions: Vec<ObjectVersion> =
            futures_util::StreamExt::collect(futures_util::StreamExt::buffered(
                futures_util::stream::iter(entries.into_iter().map(
                    move |(key, version, etag, mut entry)| {
                        let this = this.clone();
                        let bucket = bucket.clone();
                        async move {
                            let raw = entry.size.unwrap_or(0);
                            let v = (!version.is_empty()).then_some(version.as_str());
                            entry.size =
                                Some(this.listed_size_at(&bucket, &key, v, &etag, raw).await);
                            entry
                        }
                    },
                )),
                self.inner.config.list_head_concurrency,
            ))
            .await;
        let delete_markers: Vec<DeleteMarkerEntry> = out
            .delete_markers()
            .iter()
            .filter(|m| m.key().is_some_and(|k| !is_side_object(k)))
            .map(|m| DeleteMarkerEntry {
                key: m.key().map(str::to_string),
                version_id: m.version_id().map(str::to_string),
                is_latest: m.is_latest(),
                last_modified: m.last_modified().and_then(timestamp),
                owner: m.owner().map(owner),
            })
            .collect();
        Ok(ListObjectVersionsOutput {
            name: Some(i.bucket),
            // Echoed as upstream echoes them (S3 and moto send empty elements for
            // parameters not given).
            prefix: out.prefix().map(str::to_string),
            delimiter: out.delimiter().map(str::to_string),
            key_marker: out.key_marker().map(str::to_string),
            version_id_marker: out.version_id_marker().map(str::to_string),
            max_keys: out.max_keys(),
            is_truncated: out.is_truncated(),
            next_key_marker: out.next_key_marker().map(str::to_string),
            next_version_id_marker: out.next_version_id_marker().map(str::to_string),
            versions: Some(versions),
            delete_markers: Some(delete_markers),
            common_prefixes: Some(common_prefixes(out.common_prefixes())),
            ..ListObjectVersionsOutput::default()
        })
    }
}
