//! Rotation without moving the data: a new header replaces the old one in the metadata
//! (or companion object) through a server-side copy of the object onto itself. The body is
//! never downloaded or re-encrypted, and every other attribute is carried over.
//!
//! A rewrap must not lose a concurrent update (a key removed by another rewrap coming back,
//! or a new version rolled back), yet a metadata-only copy keeps the ETag, and not every
//! service enforces every copy condition (moto enforces none). So the write is bracketed:
//! before it, a second HEAD must show exactly the state that was read (ETag, version,
//! length, Last-Modified and every metadata entry); the copy itself carries every condition
//! S3 has (`x-amz-copy-source-if-match`, `-if-unmodified-since` for an unversioned source,
//! and `If-Match` on the destination); after it, a third HEAD must show exactly what was
//! written, and in a versioned bucket the version just before ours must be the one that was
//! read. Otherwise the rewrap fails (exit 6) and says what happened.

use std::collections::HashMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};

use super::{
    CompanionCleanup, Head, HeaderLocation, ObjectInfo, S3, S3Url, conflict, encode_key, object,
    sdk_error, with_context,
};
use crate::error::{Error, Result};
use crate::format::Header;

/// Sets every attribute a server-side copy with `MetadataDirective: REPLACE` (or a new
/// multipart upload) would otherwise drop, from the HEAD response `$h`.
macro_rules! carry_attributes {
    ($b:expr, $h:expr) => {
        $b.set_content_type($h.content_type.clone())
            .set_cache_control($h.cache_control.clone())
            .set_content_disposition($h.content_disposition.clone())
            .set_content_encoding($h.content_encoding.clone())
            .set_content_language($h.content_language.clone())
            .set_storage_class($h.storage_class.clone())
            .set_server_side_encryption($h.server_side_encryption.clone())
            .set_ssekms_key_id($h.sse_kms_key_id.clone())
            .set_bucket_key_enabled($h.bucket_key_enabled)
            .set_website_redirect_location($h.website_redirect_location.clone())
    };
}

/// What a rewrap changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewrapReport {
    /// The companion object now holding the header, if any.
    pub companion: Option<String>,
    /// Whether a multipart copy (objects over the copy threshold) was used.
    pub multipart_copy: bool,
    /// What happened to the old companion: deleted only when it was named after this
    /// object and held its header, else left alone and said so.
    pub old_companion: CompanionCleanup,
}

/// Where [`S3::replace_header_with`] calls its hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewrapStage {
    /// After the last check of the object read, just before the copy.
    BeforeCopy,
    /// Just after the copy, before it is verified.
    AfterCopy,
}

/// What ListObjectVersions says happened around the version a rewrap wrote.
struct History {
    /// The version just before it.
    previous: Option<String>,
    /// Whether the object was deleted after the version read (a delete marker).
    deleted: bool,
}

/// What the copy reported about the object it wrote.
struct Written {
    etag: Option<String>,
    version_id: Option<String>,
}

/// A version id that names a real version (not absent, not the `null` of an unversioned or
/// suspended bucket).
fn real_version(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|v| !v.is_empty() && *v != "null")
}

/// A failed copy condition (412, or S3's 409 for a conditional write racing another) means
/// the object changed after it was read: nothing was written. Judged by the service's error
/// code, not by the text of [`sdk_error`].
fn copy_error<E>(
    endpoint: &str,
    url: &S3Url,
    op: &str,
    e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    use aws_sdk_s3::error::ProvideErrorMetadata as _;
    match e.code() {
        Some("PreconditionFailed" | "ConditionalRequestConflict") => changed_before_write(url),
        _ => sdk_error(endpoint, url, op, e),
    }
}

/// The error for a rewrap that found the object changed before it wrote anything.
fn changed_before_write(url: &S3Url) -> Error {
    conflict(
        "CopyObject",
        format!(
            "{url}: the object changed after sealstream read it (another rewrap or writer got \
         there first), so nothing was written; run rewrap again on the current object"
        ),
    )
}

impl S3 {
    /// Replaces the header of `obj` by `new` (same body, same commitment), preserving the
    /// object's other user metadata, content type and other attributes. The write happens
    /// only if the object is still exactly what was read, and is verified afterwards, so a
    /// concurrent rewrap or a new version is never silently lost (module docs).
    pub async fn replace_header(&self, obj: &ObjectInfo, new: &Header) -> Result<RewrapReport> {
        self.replace_header_with(obj, new, &mut |_| {}).await
    }

    /// [`S3::replace_header`], calling `hook` at each [`RewrapStage`]: tests use it to
    /// interleave a concurrent writer deterministically.
    pub async fn replace_header_with(
        &self,
        obj: &ObjectInfo,
        new: &Header,
        hook: &mut (dyn FnMut(RewrapStage) + Send),
    ) -> Result<RewrapReport> {
        if matches!(obj.location, HeaderLocation::Body) {
            return Err(Error::InvalidArgument(format!(
                "{} is a whole sealstream file stored as the object (its header is in the body, \
                 not in the metadata): a metadata-only rewrap cannot change it; download it, \
                 rewrap the file and upload it again, or re-encrypt it into the object form \
                 with an s3:// output; nothing was changed",
                obj.url
            )));
        }
        let url = &obj.url;
        if new.commitment != obj.header.commitment || new.digest() != obj.header.digest() {
            return Err(Error::InvalidArgument(
                "rewrap may only change the wrapped keys of an object".into(),
            ));
        }
        let bytes = new
            .to_bytes()
            .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
        let other: Vec<(&str, &str)> = obj.head.other_metadata().collect();
        // A part-wise object (FORMAT.md §17) keeps its form and its manifest: the part keys
        // and the manifest key come from the salt, the data key and H, which exclude the
        // stanzas, so the manifest object stays valid as it is.
        let parts: Vec<(&str, &str)> = obj
            .parts
            .as_deref()
            .map(|m| (object::META_PARTS, m))
            .into_iter()
            .collect();
        let other_size = object::metadata_size(other.iter().chain(&parts).copied());
        let placement = object::place(
            &bytes,
            &new.commitment,
            &url.key,
            other_size,
            super::upload::unique_suffix()?,
        )
        .map_err(Error::InvalidArgument)?;
        let mut metadata: HashMap<String, String> = other
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        metadata.extend(placement.metadata.iter().cloned());
        if let Some(m) = &obj.parts {
            metadata.insert(
                object::META_FORMAT.to_string(),
                object::OBJECT_FORM_PART_WISE.to_string(),
            );
            metadata.insert(object::META_PARTS.to_string(), m.clone());
        }

        let new_companion = placement.companion.as_ref().map(|(k, _)| k.clone());
        if let Some((ck, b)) = &placement.companion {
            self.put_companion(&url.with_key(ck.clone()), b.clone())
                .await?;
        }
        // Deletes the companion this rewrap wrote, unless the current object names it.
        let drop_new_companion = async |current: Option<&Head>| {
            if let Some(ck) = &new_companion
                && current.is_none_or(|h| !object::names_companion(&h.metadata, ck))
            {
                let _ = self.delete(&url.with_key(ck.clone())).await;
            }
        };

        // 1. Write only over exactly the state that was read.
        match self.head(url).await {
            Ok(Some(now)) if now.same_state(&obj.head) => {}
            Ok(_) => {
                drop_new_companion(None).await;
                return Err(changed_before_write(url));
            }
            Err(e) => {
                drop_new_companion(None).await;
                return Err(e);
            }
        }
        hook(RewrapStage::BeforeCopy);
        let multipart = obj.head.content_length > self.settings.copy_threshold;
        let copied = if multipart {
            self.copy_multipart(obj, metadata.clone()).await
        } else {
            self.copy_single(obj, metadata.clone()).await
        };
        let written = match copied {
            Ok(w) => w,
            Err(e) => {
                // A copy reported as failed may still have landed (a lost response): keep
                // the new companion if the object names it, or if that cannot be told.
                if let Ok(current) = self.head(url).await {
                    drop_new_companion(current.as_ref()).await;
                }
                return Err(e);
            }
        };

        hook(RewrapStage::AfterCopy);

        // 2. Verify that what is there now is what was written, over what was read.
        let now = self.head(url).await.map_err(|e| {
            with_context(e, |e| {
                format!(
                    "{url}: the copy succeeded but sealstream could not read the object back to \
                 check it, so the old header object (if any) was kept; read the object's header \
                 to check it: {e}"
                )
            })
        })?;
        let ours = now.as_ref().is_some_and(|h| {
            h.metadata.len() == metadata.len()
                && metadata
                    .iter()
                    .all(|(k, v)| h.metadata.get(&k.to_ascii_lowercase()) == Some(v))
                && h.content_length == obj.head.content_length
                && (written.etag.is_none() || h.etag == written.etag)
                && real_version(&written.version_id)
                    .is_none_or(|v| h.version_id.as_deref() == Some(v))
        });
        if !ours {
            drop_new_companion(now.as_ref()).await;
            let kept = match &obj.location {
                HeaderLocation::Companion { key, .. } => {
                    format!(
                        " (the old header object s3://{}/{key} was kept)",
                        url.bucket
                    )
                }
                HeaderLocation::Inline(_) | HeaderLocation::Body => String::new(),
            };
            return Err(conflict(
                "HeadObject",
                format!(
                    "{url}: another writer replaced the object right after this rewrap wrote it, \
                 so the new header is not the current one{kept}; inspect the object and run \
                 rewrap again"
                ),
            ));
        }
        if let (Some(read), Some(mine)) = (
            real_version(&obj.head.version_id),
            real_version(&written.version_id),
        ) {
            let history = self
                .previous_version(url, mine, &obj.head)
                .await
                .map_err(|e| {
                    with_context(e, |e| {
                        format!(
                            "{url}: the new header was written (version {mine}), but \
                             sealstream could not check that no other version was stored \
                             while it ran, so the old header object (if any) was kept; grant \
                             s3:ListBucketVersions or check the object's versions yourself: {e}"
                        )
                    })
                })?;
            if history.deleted {
                return Err(self.undo_resurrection(url, mine, &new_companion).await);
            }
            if history.previous.as_deref() != Some(read) {
                return Err(self
                    .undo_lost_race(obj, mine, history.previous, &new_companion)
                    .await);
            }
        }

        // 3. Only now remove the old companion, if it is provably this object's.
        let old_companion = self
            .clean_companion(
                url,
                &obj.head.metadata,
                Some(&obj.header.commitment),
                new_companion.as_deref(),
            )
            .await
            .map_err(|e| {
                with_context(e, |e| {
                    format!(
                        "the object was rewrapped, but its old header object could not be deleted \
                     and still holds the removed keys; delete it: {e}"
                    )
                })
            })?;
        Ok(RewrapReport {
            companion: new_companion,
            multipart_copy: multipart,
            old_companion,
        })
    }

    /// The version of `url` written just before `mine` (versions newest first, as S3
    /// lists them; `None` if `mine` is the oldest or is not listed), and whether a delete
    /// marker was placed after the version `read`.
    async fn previous_version(&self, url: &S3Url, mine: &str, read: &Head) -> Result<History> {
        async {
            let mut key_marker: Option<String> = None;
            let mut version_marker: Option<String> = None;
            let mut seen_mine = false;
            let mut deleted = false;
            loop {
                let out = self
                    .client
                    .list_object_versions()
                    .bucket(&url.bucket)
                    .prefix(&url.key)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send()
                    .await
                    .map_err(|e| sdk_error(&self.endpoint, url, "ListObjectVersions", e))?;
                // A delete marker no older than the version read: the object was deleted
                // meanwhile (S3 lists markers apart from versions; Last-Modified has
                // one-second resolution, so a marker in the same second counts: safe side).
                deleted |= out.delete_markers().iter().any(|m| {
                    m.key() == Some(url.key.as_str())
                        && match (m.last_modified(), read.last_modified.as_ref()) {
                            (Some(at), Some(read_at)) => at.secs() >= read_at.secs(),
                            _ => true,
                        }
                });
                for v in out.versions() {
                    if v.key() != Some(url.key.as_str()) {
                        continue;
                    }
                    if seen_mine {
                        return Ok(History {
                            previous: v.version_id().map(str::to_string),
                            deleted,
                        });
                    }
                    seen_mine = v.version_id() == Some(mine);
                }
                let done = out.is_truncated() != Some(true);
                key_marker = out.next_key_marker().map(str::to_string);
                version_marker = out.next_version_id_marker().map(str::to_string);
                if done || (key_marker.is_none() && version_marker.is_none()) {
                    return Ok(History {
                        previous: None,
                        deleted,
                    });
                }
            }
        }
        .await
    }

    /// The object was deleted between the read and the copy, and the copy (pinned to the
    /// version read) brought it back: delete the version this rewrap wrote, so the delete
    /// marker is current again, and explain.
    async fn undo_resurrection(
        &self,
        url: &S3Url,
        mine: &str,
        new_companion: &Option<String>,
    ) -> Error {
        let removed = self
            .client
            .delete_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .version_id(mine)
            .send()
            .await;
        match removed {
            Ok(_) => {
                if let Some(ck) = new_companion {
                    let _ = self.delete(&url.with_key(ck.clone())).await;
                }
                conflict(
                    "ListObjectVersions",
                    format!(
                        "{url}: the object was deleted while this rewrap ran; the version this \
                     rewrap wrote was removed again, so the object stays deleted"
                    ),
                )
            }
            Err(e) => with_context(sdk_error(&self.endpoint, url, "DeleteObject", e), |m| {
                format!(
                    "{url}: the object was deleted while this rewrap ran, and this rewrap's \
                 version {mine} brought it back; removing that version failed ({m}). Delete \
                 version {mine} if the object should stay deleted"
                )
            }),
        }
    }

    /// A version (`previous`) was written between the read and the copy, and the copy put
    /// the old body and a header derived from the old one on top of it. Make that version
    /// current again (a server-side copy of it, metadata and all) and explain.
    async fn undo_lost_race(
        &self,
        obj: &ObjectInfo,
        mine: &str,
        previous: Option<String>,
        new_companion: &Option<String>,
    ) -> Error {
        let url = &obj.url;
        let Some(theirs) = previous else {
            return conflict(
                "ListObjectVersions",
                format!(
                    "{url}: the version sealstream read ({}) is no longer the one before this \
                 rewrap's version {mine}; another writer changed the object meanwhile. Check \
                 the object's versions and run rewrap again",
                    obj.head.version_id.as_deref().unwrap_or("?")
                ),
            );
        };
        let source = format!(
            "{}/{}?versionId={}",
            url.bucket,
            encode_key(&url.key),
            encode_key(&theirs)
        );
        let restored = self
            .client
            .copy_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .copy_source(source)
            .send()
            .await;
        match restored {
            Ok(_) => {
                if let Some(ck) = new_companion {
                    let _ = self.delete(&url.with_key(ck.clone())).await;
                }
                conflict(
                    "ListObjectVersions",
                    format!(
                        "{url}: another writer stored version {theirs} while this rewrap ran; the \
                     rewrap was undone by making that version current again, so nothing was \
                     lost but the keys were not changed: run rewrap again on the current object"
                    ),
                )
            }
            Err(e) => with_context(sdk_error(&self.endpoint, url, "CopyObject", e), |m| {
                format!(
                    "{url}: another writer stored version {theirs} while this rewrap ran, and this \
                 rewrap's version {mine} (the old body) replaced it; restoring it failed ({m}). \
                 Make version {theirs} current again (copy it onto the key), then rewrap again"
                )
            }),
        }
    }

    async fn put_companion(&self, url: &super::S3Url, bytes: Vec<u8>) -> Result<()> {
        self.client
            .put_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .content_type("application/octet-stream")
            .if_none_match("*")
            .body(bytes.into())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk_error(&self.endpoint, url, "PutObject", e))
    }

    fn copy_source(obj: &ObjectInfo) -> String {
        let mut s = format!("{}/{}", obj.url.bucket, encode_key(&obj.url.key));
        if let Some(v) = &obj.head.version_id {
            s.push_str("?versionId=");
            s.push_str(&encode_key(v));
        }
        s
    }

    /// `Last-Modified` as a copy-source condition, for an unversioned source only (a
    /// pinned version never changes, so the condition would say nothing).
    fn unmodified_since(h: &Head) -> Option<aws_sdk_s3::primitives::DateTime> {
        if real_version(&h.version_id).is_some() {
            None
        } else {
            h.last_modified
        }
    }

    async fn copy_single(
        &self,
        obj: &ObjectInfo,
        metadata: HashMap<String, String>,
    ) -> Result<Written> {
        let h = &obj.head;
        let url = &obj.url;
        let req = self
            .client
            .copy_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .copy_source(Self::copy_source(obj))
            .set_copy_source_if_match(h.etag.clone())
            .set_copy_source_if_unmodified_since(Self::unmodified_since(h))
            .set_if_match(h.etag.clone())
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata));
        let req = carry_attributes!(req, h);
        req.send()
            .await
            .map(|out| Written {
                etag: out
                    .copy_object_result()
                    .and_then(|r| r.e_tag().map(str::to_string)),
                version_id: out.version_id().map(str::to_string),
            })
            .map_err(|e| copy_error(&self.endpoint, url, "CopyObject", e))
    }

    async fn copy_multipart(
        &self,
        obj: &ObjectInfo,
        metadata: HashMap<String, String>,
    ) -> Result<Written> {
        let h = &obj.head;
        let url = &obj.url;
        let tagging = self
            .object_tagging(&obj.url, obj.head.version_id.clone())
            .await?;
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key)
            .set_metadata(Some(metadata))
            .set_tagging(tagging);
        let created = carry_attributes!(create, h)
            .send()
            .await
            .map_err(|e| sdk_error(&self.endpoint, url, "CreateMultipartUpload", e))?;
        let id = created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| Error::storage(format!("{url}: no upload id")))?;
        let mut live = super::live::Guard::new(
            &self.client,
            &self.live,
            super::live::Leftover::Upload {
                bucket: url.bucket.clone(),
                key: url.key.clone(),
                upload_id: id.clone(),
            },
        );
        let total = h.content_length;
        let part = self
            .settings
            .copy_part_size
            .clamp(super::MIN_PART_SIZE, super::MAX_PART_SIZE)
            .max(total.div_ceil(super::MAX_PARTS));
        let source = Self::copy_source(obj);
        let result = async {
            let mut ranges = Vec::new();
            let mut a = 0;
            while a < total {
                let b = (a + part).min(total);
                ranges.push((ranges.len() as i32 + 1, a, b - 1));
                a = b;
            }
            let futs = ranges.into_iter().map(|(n, a, b)| {
                let req = self
                    .client
                    .upload_part_copy()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .upload_id(&id)
                    .part_number(n)
                    .copy_source(&source)
                    .copy_source_range(format!("bytes={a}-{b}"))
                    .set_copy_source_if_match(h.etag.clone())
                    .set_copy_source_if_unmodified_since(Self::unmodified_since(h));
                async move {
                    let out = req.send().await.map_err(|e| {
                        copy_error(&self.endpoint, url, &format!("UploadPartCopy {n} of"), e)
                    })?;
                    Ok::<_, Error>(
                        CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(
                                out.copy_part_result()
                                    .and_then(|r| r.e_tag().map(str::to_string)),
                            )
                            .build(),
                    )
                }
            });
            use futures_util::StreamExt;
            let parts: Vec<Result<CompletedPart>> = futures_util::stream::iter(futs)
                .buffered(self.settings.concurrency)
                .collect()
                .await;
            let parts: Vec<CompletedPart> = parts.into_iter().collect::<Result<_>>()?;
            let out = self
                .client
                .complete_multipart_upload()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .set_if_match(h.etag.clone())
                .send()
                .await
                .map_err(|e| copy_error(&self.endpoint, url, "CompleteMultipartUpload", e))?;
            Ok::<_, Error>(Written {
                etag: out.e_tag().map(str::to_string),
                version_id: out.version_id().map(str::to_string),
            })
        }
        .await;
        if result.is_err() {
            live.clean().await;
        } else {
            live.disarm();
        }
        result
    }
}
