//! DeleteObject and DeleteObjects: what upstream answered goes back to the client (S3's
//! delete-marker headers and per-key fields), and which companion header and manifest
//! objects go with a deleted version (docs/GATEWAY.md "Deleting a version").
//!
//! A delete of the current object (no version id) deletes its companion and manifest as
//! always: in a versioned bucket that leaves their content as a noncurrent version behind a
//! delete marker, where a read of the object's older version finds it. A delete of one
//! version id removes that version for good, so its side objects' content is garbage once
//! no other version of the key needs it. Other versions of the same key can name the very
//! same companion or manifest key: a copy of the version onto its key (a restore) keeps
//! the name, as does a metadata-only copy in place or a rewrap. So the side objects go
//! only when no remaining version of the key names them, and of them only the versions
//! that provably hold this version's content (a companion header with the version's pinned
//! key commitment; a manifest whose part lengths add up to the version's body): anything
//! else found under those keys was not written for this version and is left alone.

use std::collections::HashSet;

use aws_sdk_s3::operation::delete_object::DeleteObjectOutput as UpDeleted;
use futures_util::StreamExt;
use s3s::S3Result;
use s3s::dto::DeletedObject;

use super::{Service, multipart};
use crate::gateway::errors::from_sdk;
use crate::s3::Head;
use crate::s3::object::{self, HeaderLocation};

/// Pages of ListObjectVersions read to find the other versions of a key (1,000 entries
/// each): past that, a deleted version's side objects are left alone (logged).
const MAX_VERSION_PAGES: usize = 10;

/// Versions of one companion or manifest key handled at most: a conforming writer leaves
/// one content and a few delete markers (one per replace or delete of the object).
const MAX_SIDECAR_ENTRIES: i32 = 100;

/// What upstream answered one DeleteObject, passed on to the client: S3 says whether a
/// delete marker was made (or deleted) and its version id, and clients rely on both (to
/// undo a delete, to audit), so the gateway answers exactly what upstream did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Deleted {
    /// `x-amz-delete-marker`: a simple delete in a versioned bucket made a delete marker,
    /// or the version deleted by id was one.
    pub(super) delete_marker: Option<bool>,
    /// `x-amz-version-id`: the delete marker made, or the version deleted by id.
    pub(super) version_id: Option<String>,
}

impl Deleted {
    /// Upstream's DeleteObject answer.
    pub(super) fn from_upstream(out: &UpDeleted) -> Deleted {
        Deleted {
            delete_marker: out.delete_marker(),
            version_id: out.version_id().map(str::to_string),
        }
    }

    /// One `<Deleted>` entry of DeleteObjects as S3 writes it: `VersionId` echoes the
    /// version asked for; `DeleteMarker` and `DeleteMarkerVersionId` say which delete
    /// marker was made (a simple delete) or deleted (a version delete of a marker).
    pub(super) fn entry(self, key: String, asked: Option<String>) -> DeletedObject {
        let marker = self.delete_marker == Some(true);
        DeletedObject {
            key: Some(key),
            version_id: asked,
            delete_marker: marker.then_some(true),
            delete_marker_version_id: if marker { self.version_id } else { None },
        }
    }
}

impl Service {
    /// DeleteObject of one version id: the version is deleted upstream (its answer passed
    /// on), then its companion header and manifest objects if no other version needs them
    /// (module docs). An id upstream does not know or refuses is sent all the same: the
    /// client gets upstream's answer, as without the gateway.
    pub(super) async fn delete_version(
        &self,
        bucket: &str,
        key: &str,
        version: &str,
    ) -> S3Result<Deleted> {
        // The version's metadata names its side objects: read it before the version goes.
        // A version that is not there (404), a delete marker (405) or an id upstream
        // refuses (400) names none.
        let old = match self.head_version(bucket, key, version).await {
            Ok(h) => Some(h),
            Err(e)
                if e.status_code()
                    .is_some_and(|s| matches!(s.as_u16(), 400 | 404 | 405)) =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        let out = self
            .inner
            .client
            .delete_object()
            .bucket(bucket)
            .key(key)
            .version_id(version)
            .send()
            .await
            .map_err(|e| from_sdk("DeleteObject", &e))?;
        if let Some(old) = old {
            self.clean_version_sidecars(bucket, key, version, &old)
                .await;
        }
        Ok(Deleted::from_upstream(&out))
    }

    /// After `version` of `key` was deleted: deletes the companion header and manifest
    /// objects its metadata (`old`) names, if named after the key, not named by another
    /// version of the key, and holding this version's content. Never fails the delete:
    /// what cannot be cleaned is logged and left (it holds no plaintext).
    async fn clean_version_sidecars(&self, bucket: &str, key: &str, version: &str, old: &Head) {
        let meta = &old.metadata;
        if !meta.contains_key(object::META_FORMAT) {
            return;
        }
        let view = multipart::v1_view(meta);
        let companion = match object::companion_to_clean(key, &view) {
            Ok(c) => c,
            Err(reason) => {
                tracing::warn!(bucket, key, version, %reason, "deleted version's header object left alone");
                None
            }
        };
        let manifest = match meta.get(multipart::META_PARTS) {
            Some(name) if multipart::is_v2(meta) => {
                if multipart::manifest_belongs_to(key, name) {
                    Some(name.clone())
                } else {
                    tracing::warn!(bucket, key, version, manifest = %name.chars().take(200).collect::<String>(), "the deleted version names a manifest object not named after it; left alone");
                    None
                }
            }
            _ => None,
        };
        if companion.is_none() && manifest.is_none() {
            return;
        }
        let named = match self
            .named_by_other_versions(bucket, key, version, old.content_length)
            .await
        {
            Ok(n) => n,
            Err(reason) => {
                tracing::warn!(bucket, key, version, %reason, "deleted version's companion and manifest objects left alone");
                return;
            }
        };
        // The header: inline, or the companion content that proves to be this version's.
        let mut header = match object::locate(&view) {
            Ok(HeaderLocation::Inline(bytes)) => object::parse_header(&bytes, None).ok(),
            _ => None,
        };
        if let Some((name, pinned)) = companion {
            if named.contains(&name) {
                tracing::info!(bucket, key, version, companion = %name, "header object kept: another version of the key names it");
            } else {
                let max = crate::format::limits::MAX_HEADER_LEN as usize;
                let mine = |b: &[u8]| object::parse_header(b, Some(&pinned)).is_ok();
                let found = self
                    .purge_sidecar(bucket, &name, max, "companion header", mine)
                    .await;
                if let Some(bytes) = found {
                    header = object::parse_header(&bytes, Some(&pinned)).ok();
                }
            }
        }
        if let Some(name) = manifest {
            if named.contains(&name) {
                tracing::info!(bucket, key, version, manifest = %name, "manifest kept: another version of the key names it");
                return;
            }
            let Some(chunk_size) = header.map(|h| h.chunk_size) else {
                tracing::warn!(bucket, key, version, manifest = %name, "the deleted version's header was not found, so its manifest cannot be matched to it; left alone");
                return;
            };
            let body_len = old.content_length;
            let mine = |b: &[u8]| {
                crate::parts::unauthenticated_parts(b).is_some_and(|parts| {
                    parts
                        .iter()
                        .map(|(_, len)| crate::parts::part_ciphertext_len(*len, chunk_size))
                        .try_fold(0u64, u64::checked_add)
                        == Some(body_len)
                })
            };
            let max = crate::parts::MAX_MANIFEST_LEN;
            self.purge_sidecar(bucket, &name, max, "part manifest", mine)
                .await;
        }
    }

    /// The companion and manifest keys that versions of `key` other than `deleted` name.
    /// Only versions whose stored size is `stored_len` are read (a HEAD each): a version
    /// can share side objects only with a copy of its own write (a restore, a metadata copy
    /// in place, a rewrap), and those store the same body; a version of another write
    /// naming them could not be read anyway (its key commitment or manifest MAC would not
    /// match). Errs, and nothing is deleted, when the versions cannot all be seen.
    async fn named_by_other_versions(
        &self,
        bucket: &str,
        key: &str,
        deleted: &str,
        stored_len: u64,
    ) -> Result<HashSet<String>, String> {
        let mut same_size = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        let mut complete = false;
        for _ in 0..MAX_VERSION_PAGES {
            let out = self
                .inner
                .client
                .list_object_versions()
                .bucket(bucket)
                .prefix(key)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| from_sdk("ListObjectVersions", &e).to_string())?;
            // The key sorts first among the keys it prefixes: once another key shows up,
            // every version of this one has been seen.
            let mut past = out.delete_markers().iter().any(|m| m.key() != Some(key));
            for v in out.versions() {
                if v.key() != Some(key) {
                    past = true;
                    continue;
                }
                let Some(id) = v.version_id().filter(|id| *id != deleted) else {
                    continue;
                };
                if v.size().and_then(|s| u64::try_from(s).ok()) == Some(stored_len) {
                    same_size.push(id.to_string());
                }
            }
            if past || out.is_truncated() != Some(true) {
                complete = true;
                break;
            }
            key_marker = out.next_key_marker().map(str::to_string);
            id_marker = out.next_version_id_marker().map(str::to_string);
        }
        if !complete {
            return Err(format!(
                "the key has more than {} versions",
                MAX_VERSION_PAGES * 1000
            ));
        }
        let heads = futures_util::stream::iter(
            same_size
                .into_iter()
                .map(|id| async move { self.head_version(bucket, key, &id).await }),
        )
        .buffer_unordered(self.inner.config.list_head_concurrency)
        .collect::<Vec<_>>()
        .await;
        let mut named = HashSet::new();
        for r in heads {
            match r {
                Ok(h) => {
                    for m in [object::META_COMPANION, multipart::META_PARTS] {
                        if let Some(n) = h.metadata.get(m) {
                            named.insert(n.clone());
                        }
                    }
                }
                // Deleted meanwhile: it names nothing any more.
                Err(e) if e.status_code().is_some_and(|s| s.as_u16() == 404) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(named)
    }

    /// Deletes the versions of the side object `name` whose content `mine` accepts (read
    /// one by one, each at most `max` bytes), then, if no other content is left under the
    /// key, its delete markers: the gateway made them when it replaced or deleted the
    /// object, and they hide nothing any more. Returns one accepted content. Anything not
    /// accepted is left alone and logged.
    async fn purge_sidecar(
        &self,
        bucket: &str,
        name: &str,
        max: usize,
        what: &str,
        mine: impl Fn(&[u8]) -> bool,
    ) -> Option<Vec<u8>> {
        let out = match self
            .inner
            .client
            .list_object_versions()
            .bucket(bucket)
            .prefix(name)
            .max_keys(MAX_SIDECAR_ENTRIES)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(bucket, object = %name, error = %from_sdk("ListObjectVersions", &e), "side object of a deleted version left alone");
                return None;
            }
        };
        let data: Vec<String> = out
            .versions()
            .iter()
            .filter(|v| v.key() == Some(name))
            .filter_map(|v| v.version_id().map(str::to_string))
            .collect();
        let markers: Vec<String> = out
            .delete_markers()
            .iter()
            .filter(|m| m.key() == Some(name))
            .filter_map(|m| m.version_id().map(str::to_string))
            .collect();
        let mut left = out.is_truncated() == Some(true);
        let mut found = None;
        for id in data {
            let content = match self.get_capped_at(bucket, name, Some(&id), max, what).await {
                Ok(Some((bytes, _))) => bytes,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(bucket, object = %name, version = %id, error = %e, "side object version not read; left alone");
                    left = true;
                    continue;
                }
            };
            if !mine(&content) {
                tracing::warn!(bucket, object = %name, version = %id, "side object version does not hold the deleted version's content; left alone");
                left = true;
                continue;
            }
            if self.delete_side_version(bucket, name, &id).await {
                found.get_or_insert(content);
            } else {
                left = true;
            }
        }
        if !left {
            for id in markers {
                self.delete_side_version(bucket, name, &id).await;
            }
        }
        found
    }

    /// Deletes one version of a side object; false (logged) if upstream refused.
    async fn delete_side_version(&self, bucket: &str, name: &str, id: &str) -> bool {
        let r = self
            .inner
            .client
            .delete_object()
            .bucket(bucket)
            .key(name)
            .version_id(id)
            .send()
            .await;
        match r {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(bucket, object = %name, version = %id, error = %from_sdk("DeleteObject", &e), "could not delete a side object's version");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(e: DeletedObject) -> (Option<String>, Option<bool>, Option<String>) {
        (e.version_id, e.delete_marker, e.delete_marker_version_id)
    }

    #[test]
    fn deleted_entries_as_s3_writes_them() {
        let s = |v: &str| Some(v.to_string());
        // A simple delete in a versioned bucket: the marker made and its id.
        let made = Deleted {
            delete_marker: Some(true),
            version_id: s("m1"),
        };
        assert_eq!(
            fields(made.clone().entry("k".into(), None)),
            (None, Some(true), s("m1"))
        );
        // The same marker deleted by id: the id asked for, and the marker's.
        assert_eq!(
            fields(made.entry("k".into(), s("m1"))),
            (s("m1"), Some(true), s("m1"))
        );
        // A version deleted by id; an unversioned bucket.
        let version = Deleted {
            delete_marker: None,
            version_id: s("v1"),
        };
        assert_eq!(
            fields(version.entry("k".into(), s("v1"))),
            (s("v1"), None, None)
        );
        assert_eq!(
            fields(Deleted::default().entry("k".into(), None)),
            (None, None, None)
        );
    }
}
