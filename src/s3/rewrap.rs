//! Rotation without moving the data: a new header replaces the old one in the metadata
//! (or companion object) through a server-side copy of the object onto itself. The body is
//! never downloaded or re-encrypted, and every other attribute is carried over.

use std::collections::HashMap;

use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, MetadataDirective};

use super::{HeaderLocation, ObjectInfo, S3, encode_key, object, sdk_error};
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
}

impl S3 {
    /// Replaces the header of `obj` by `new` (same body, same commitment), preserving the
    /// object's other user metadata, content type and other attributes. The copy is
    /// conditional on the ETag read earlier, so a concurrent overwrite is not clobbered.
    pub fn replace_header(&self, obj: &ObjectInfo, new: &Header) -> Result<RewrapReport> {
        let url = &obj.url;
        if new.commitment != obj.header.commitment || new.digest() != obj.header.digest() {
            return Err(Error::Usage(
                "rewrap may only change the wrapped keys of an object".into(),
            ));
        }
        let bytes = new
            .to_bytes()
            .map_err(|e| Error::Usage(format!("cannot write this header: {e}")))?;
        let other: Vec<(&str, &str)> = obj.head.other_metadata().collect();
        let other_size = object::metadata_size(other.iter().copied());
        let placement = object::place(
            &bytes,
            &new.commitment,
            &url.key,
            other_size,
            super::upload::unique_suffix_pub()?,
        )
        .map_err(Error::Usage)?;
        let mut metadata: HashMap<String, String> = other
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        metadata.extend(placement.metadata.iter().cloned());

        let new_companion = placement.companion.as_ref().map(|(k, _)| k.clone());
        if let Some((ck, b)) = &placement.companion {
            self.put_companion(&url.with_key(ck.clone()), b.clone())?;
        }
        let multipart = obj.head.content_length > self.settings.copy_threshold;
        let copied = if multipart {
            self.copy_multipart(obj, metadata)
        } else {
            self.copy_single(obj, metadata)
        };
        if let Err(e) = copied {
            if let Some(ck) = &new_companion {
                let _ = self.delete(&url.with_key(ck.clone()));
            }
            return Err(e);
        }
        if let HeaderLocation::Companion { key, .. } = &obj.location
            && new_companion.as_deref() != Some(key.as_str())
        {
            self.delete(&url.with_key(key.clone())).map_err(|e| {
                Error::Storage(format!(
                    "the object was rewrapped, but its old header object s3://{}/{key} \
                         could not be deleted and still holds the removed keys; delete it: {e}",
                    url.bucket
                ))
            })?;
        }
        Ok(RewrapReport {
            companion: new_companion,
            multipart_copy: multipart,
        })
    }

    fn put_companion(&self, url: &super::S3Url, bytes: Vec<u8>) -> Result<()> {
        self.rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .content_type("application/octet-stream")
                    .if_none_match("*")
                    .body(bytes.into())
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| sdk_error(url, "PutObject", e))
    }

    fn copy_source(obj: &ObjectInfo) -> String {
        let mut s = format!("{}/{}", obj.url.bucket, encode_key(&obj.url.key));
        if let Some(v) = &obj.head.version_id {
            s.push_str("?versionId=");
            s.push_str(&encode_key(v));
        }
        s
    }

    fn copy_single(&self, obj: &ObjectInfo, metadata: HashMap<String, String>) -> Result<()> {
        let h = &obj.head;
        let url = &obj.url;
        let req = self
            .client
            .copy_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .copy_source(Self::copy_source(obj))
            .set_copy_source_if_match(h.etag.clone())
            .metadata_directive(MetadataDirective::Replace)
            .set_metadata(Some(metadata));
        let req = carry_attributes!(req, h);
        self.rt
            .block_on(req.send())
            .map(|_| ())
            .map_err(|e| sdk_error(url, "CopyObject", e))
    }

    /// The object's tags as a `Tagging` header value (a multipart copy does not carry them
    /// over by itself, unlike `CopyObject`).
    fn tagging(&self, obj: &ObjectInfo) -> Result<Option<String>> {
        let url = &obj.url;
        let out = self
            .rt
            .block_on(
                self.client
                    .get_object_tagging()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .set_version_id(obj.head.version_id.clone())
                    .send(),
            )
            .map_err(|e| sdk_error(url, "GetObjectTagging", e))?;
        let pairs: Vec<String> = out
            .tag_set()
            .iter()
            .map(|t| {
                format!(
                    "{}={}",
                    encode_key(t.key()).replace('/', "%2F"),
                    encode_key(t.value()).replace('/', "%2F")
                )
            })
            .collect();
        Ok((!pairs.is_empty()).then(|| pairs.join("&")))
    }

    fn copy_multipart(&self, obj: &ObjectInfo, metadata: HashMap<String, String>) -> Result<()> {
        let h = &obj.head;
        let url = &obj.url;
        let tagging = self.tagging(obj)?;
        let create = self
            .client
            .create_multipart_upload()
            .bucket(&url.bucket)
            .key(&url.key)
            .set_metadata(Some(metadata))
            .set_tagging(tagging);
        let created = self
            .rt
            .block_on(carry_attributes!(create, h).send())
            .map_err(|e| sdk_error(url, "CreateMultipartUpload", e))?;
        let id = created
            .upload_id()
            .map(str::to_string)
            .ok_or_else(|| Error::Storage(format!("{url}: no upload id")))?;
        let live = super::live_register(self, url);
        super::live_update(live, |u| u.upload_id = Some(id.clone()));
        let total = h.content_length;
        let part = self
            .settings
            .copy_part_size
            .clamp(super::MIN_PART_SIZE, super::MAX_PART_SIZE)
            .max(total.div_ceil(super::MAX_PARTS));
        let source = Self::copy_source(obj);
        let result = self.rt.block_on(async {
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
                    .set_copy_source_if_match(h.etag.clone());
                async move {
                    let out = req
                        .send()
                        .await
                        .map_err(|e| sdk_error(url, &format!("UploadPartCopy {n} of"), e))?;
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
            self.client
                .complete_multipart_upload()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| sdk_error(url, "CompleteMultipartUpload", e))?;
            Ok::<_, Error>(())
        });
        if result.is_err() {
            let _ = self.rt.block_on(
                self.client
                    .abort_multipart_upload()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .upload_id(&id)
                    .send(),
            );
        }
        super::live_unregister(live);
        result
    }
}
