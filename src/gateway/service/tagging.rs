//! Object tagging (Get/Put/DeleteObjectTagging), passed through: tags are metadata that S3
//! keeps beside the object, never part of its body, and PutObject and
//! CreateMultipartUpload already pass a client's `x-amz-tagging` upstream as it is. The AWS
//! CLI needs GetObjectTagging for every copy over its multipart threshold (it carries the
//! source's tags to the new upload), so `aws s3 cp`/`mv` between S3 keys fail without it.
//! Our companion and manifest keys stay reserved.

use aws_sdk_s3::types::{Tag as SdkTag, Tagging as SdkTagging};
use s3s::S3Result;
use s3s::dto::*;

use super::{Service, from_sdk, invalid_argument, refuse_reserved};

impl Service {
    /// GetObjectTagging of the object (or of a version), as upstream answers it.
    pub(super) async fn get_tags(
        &self,
        i: GetObjectTaggingInput,
    ) -> S3Result<GetObjectTaggingOutput> {
        refuse_reserved(&i.key)?;
        let out = self
            .inner
            .client
            .get_object_tagging()
            .bucket(&i.bucket)
            .key(&i.key)
            .set_version_id(i.version_id)
            .send()
            .await
            .map_err(|e| from_sdk("GetObjectTagging", &e))?;
        Ok(GetObjectTaggingOutput {
            tag_set: out
                .tag_set()
                .iter()
                .map(|t| Tag {
                    key: Some(t.key().to_string()),
                    value: Some(t.value().to_string()),
                })
                .collect(),
            version_id: out.version_id().map(str::to_string),
        })
    }

    /// PutObjectTagging: the client's tag set replaces the object's (or a version's).
    pub(super) async fn put_tags(
        &self,
        i: PutObjectTaggingInput,
    ) -> S3Result<PutObjectTaggingOutput> {
        refuse_reserved(&i.key)?;
        let mut tags = Vec::with_capacity(i.tagging.tag_set.len());
        for t in &i.tagging.tag_set {
            let (Some(k), Some(v)) = (&t.key, &t.value) else {
                return Err(invalid_argument("a Tag needs a Key and a Value"));
            };
            tags.push(
                SdkTag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| invalid_argument(e.to_string()))?,
            );
        }
        let tagging = SdkTagging::builder()
            .set_tag_set(Some(tags))
            .build()
            .map_err(|e| invalid_argument(e.to_string()))?;
        let out = self
            .inner
            .client
            .put_object_tagging()
            .bucket(&i.bucket)
            .key(&i.key)
            .set_version_id(i.version_id)
            .tagging(tagging)
            .send()
            .await
            .map_err(|e| from_sdk("PutObjectTagging", &e))?;
        Ok(PutObjectTaggingOutput {
            version_id: out.version_id().map(str::to_string),
        })
    }

    /// DeleteObjectTagging of the object (or of a version).
    pub(super) async fn delete_tags(
        &self,
        i: DeleteObjectTaggingInput,
    ) -> S3Result<DeleteObjectTaggingOutput> {
        refuse_reserved(&i.key)?;
        let out = self
            .inner
            .client
            .delete_object_tagging()
            .bucket(&i.bucket)
            .key(&i.key)
            .set_version_id(i.version_id)
            .send()
            .await
            .map_err(|e| from_sdk("DeleteObjectTagging", &e))?;
        Ok(DeleteObjectTaggingOutput {
            version_id: out.version_id().map(str::to_string),
        })
    }
}
