//! The S3 attributes an upload sets on the object it stores, named as `aws s3 cp` and the
//! `PutObject` API name them: Content-Type, user metadata, tags, storage class, server-side
//! encryption, checksum algorithm and canned ACL. Encryption by sealstream does not replace
//! any of them: a backup still goes straight to cold storage, a bucket whose policy demands
//! an SSE header still accepts the upload, and the plaintext's Content-Type still travels
//! with the object (as the gateway keeps a client's).

use std::collections::HashMap;

use aws_sdk_s3::types::{ChecksumAlgorithm, ObjectCannedAcl, ServerSideEncryption, StorageClass};

use super::object;
use crate::error::{Error, Result};

/// The most tags S3 allows on one object.
pub const MAX_TAGS: usize = 10;

/// Attributes of an object an upload creates. All optional: the default is what S3 does
/// without them (Content-Type `application/octet-stream`, the bucket's default encryption,
/// STANDARD storage, no tags, CRC32 checksums).
///
/// `#[non_exhaustive]`: build it with `ObjectAttributes::default()` and set fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ObjectAttributes {
    /// Content-Type of the plaintext (the object's `Content-Type`).
    pub content_type: Option<String>,
    /// User metadata (names without `x-amz-meta-`, stored lowercase by S3). Counted with
    /// sealstream's own entries in S3's 2 KB limit; names starting with `sealstream` are
    /// reserved.
    pub metadata: HashMap<String, String>,
    /// Tags in S3's query form, `key1=value1&key2=value2` (URL-encoded).
    pub tagging: Option<String>,
    /// Storage class (STANDARD_IA, GLACIER_IR, DEEP_ARCHIVE…).
    pub storage_class: Option<StorageClass>,
    /// Server-side encryption on top of ours (`aws:kms`, `AES256`…), for buckets whose
    /// policy requires the header.
    pub sse: Option<ServerSideEncryption>,
    /// The KMS key for `sse = aws:kms` (else the account's `aws/s3` key).
    pub sse_kms_key_id: Option<String>,
    /// S3 Bucket Key for SSE-KMS (fewer KMS calls by S3).
    pub bucket_key_enabled: Option<bool>,
    /// The checksum S3 verifies and stores for every part and the object (default CRC32).
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// Canned ACL, where the bucket allows ACLs.
    pub acl: Option<ObjectCannedAcl>,
}

impl ObjectAttributes {
    /// Checks what S3 would refuse late (or what would clash with sealstream's own
    /// metadata) before anything is uploaded.
    pub fn check(&self) -> Result<()> {
        for name in self.metadata.keys() {
            check_metadata_name(name)?;
        }
        if let Some(t) = &self.tagging {
            parse_tagging(t)?;
        }
        let kms = matches!(
            self.sse,
            Some(ServerSideEncryption::AwsKms | ServerSideEncryption::AwsKmsDsse)
        );
        if self.sse_kms_key_id.is_some() && !kms {
            return Err(Error::InvalidArgument(
                "an SSE-KMS key id needs server-side encryption 'aws:kms' (or 'aws:kms:dsse')"
                    .into(),
            ));
        }
        if self.bucket_key_enabled.is_some() && !kms {
            return Err(Error::InvalidArgument(
                "an S3 Bucket Key applies only to server-side encryption 'aws:kms'".into(),
            ));
        }
        let known = |v: Option<&str>, values: &[&str]| v.is_none_or(|v| values.contains(&v));
        for (what, ok) in [
            (
                "storage class",
                known(
                    self.storage_class.as_ref().map(StorageClass::as_str),
                    StorageClass::values(),
                ),
            ),
            (
                "server-side encryption",
                known(
                    self.sse.as_ref().map(ServerSideEncryption::as_str),
                    ServerSideEncryption::values(),
                ),
            ),
            (
                "checksum algorithm",
                known(
                    self.checksum_algorithm
                        .as_ref()
                        .map(ChecksumAlgorithm::as_str),
                    ChecksumAlgorithm::values(),
                ),
            ),
            (
                "ACL",
                known(
                    self.acl.as_ref().map(ObjectCannedAcl::as_str),
                    ObjectCannedAcl::values(),
                ),
            ),
        ] {
            if !ok {
                return Err(Error::InvalidArgument(format!(
                    "unknown {what}: use one of the values S3 documents"
                )));
            }
        }
        Ok(())
    }

    /// Bytes of user metadata as S3 counts them (names with their `x-amz-meta-` prefix):
    /// what is left of the 2 KB limit decides whether the header fits beside it.
    pub fn metadata_size(&self) -> usize {
        object::metadata_size(self.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }

    /// The checksum algorithm in effect (S3's default, CRC32, when none is asked for).
    pub fn checksum(&self) -> ChecksumAlgorithm {
        self.checksum_algorithm
            .clone()
            .unwrap_or(ChecksumAlgorithm::Crc32)
    }
}

/// A user-metadata name: an HTTP header token once prefixed, and not one of ours.
fn check_metadata_name(name: &str) -> Result<()> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(Error::InvalidArgument(format!(
            "the metadata name {name:?} is not valid in an HTTP header: use letters, digits \
             and '-'"
        )));
    }
    if name.to_ascii_lowercase().starts_with("sealstream") {
        return Err(Error::InvalidArgument(format!(
            "the metadata name {name:?} is reserved: names starting with 'sealstream' hold \
             the object's header; choose another name"
        )));
    }
    Ok(())
}

/// Parses S3's tag set query form (`k=v&k2=v2`, URL-encoded) into pairs, checking S3's
/// limits (10 tags, keys of 1-128 and values of 0-256 characters, no key twice).
pub fn parse_tagging(s: &str) -> Result<Vec<(String, String)>> {
    let bad = |why: &str| {
        Error::InvalidArgument(format!(
            "the tag set {s:?} {why}: write it as key1=value1&key2=value2 (URL-encoded)"
        ))
    };
    let mut tags: Vec<(String, String)> = Vec::new();
    if s.is_empty() {
        return Ok(tags);
    }
    for pair in s.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).ok_or_else(|| bad("has a bad %-escape"))?;
        let v = percent_decode(v).ok_or_else(|| bad("has a bad %-escape"))?;
        if k.is_empty() || k.chars().count() > 128 {
            return Err(bad("has a key that is empty or over 128 characters"));
        }
        if v.chars().count() > 256 {
            return Err(bad("has a value over 256 characters"));
        }
        if tags.iter().any(|(t, _)| *t == k) {
            return Err(bad(&format!("names the key {k:?} twice")));
        }
        tags.push((k, v));
    }
    if tags.len() > MAX_TAGS {
        return Err(bad(&format!("has more than S3's {MAX_TAGS} tags")));
    }
    Ok(tags)
}

/// `application/x-www-form-urlencoded` decoding ('+' is a space); `None` on a bad escape
/// or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reading an object's tags for a copy or migration that must carry them over.
impl super::S3 {
    /// The tags of `url` (at `version_id`) as a write re-sends them: the tag set in the
    /// `x-amz-tagging` form (keys and values percent-encoded), `None` without tags or on a
    /// store without tagging ([`tagging_unsupported`]). One helper for rewrap's multipart
    /// copy (which, unlike `CopyObject`, does not carry tags by itself) and S3EC migration,
    /// so both read tags the same way.
    pub(super) async fn object_tagging(
        &self,
        url: &super::S3Url,
        version_id: Option<String>,
    ) -> Result<Option<String>> {
        let r = self
            .client
            .get_object_tagging()
            .bucket(&url.bucket)
            .key(&url.key)
            .set_version_id(version_id)
            .send()
            .await
            .map_err(|e| super::sdk_error(&self.endpoint, url, "GetObjectTagging", e));
        let out = match r {
            Ok(out) => out,
            Err(e) if tagging_unsupported(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let pairs: Vec<String> = out
            .tag_set()
            .iter()
            .map(|t| format!("{}={}", encode_tag(t.key()), encode_tag(t.value())))
            .collect();
        Ok((!pairs.is_empty()).then(|| pairs.join("&")))
    }
}

/// Whether a `GetObjectTagging` failure means the store keeps no tags at all: S3-compatible
/// stores without object tagging (s3s-fs, some appliances) answer `NotImplemented` (HTTP
/// 501). Such an object has no tags to lose, so a copy or migration goes on without; any
/// other failure (access denied, the object gone) still stops it.
fn tagging_unsupported(e: &Error) -> bool {
    matches!(e, Error::Storage(se) if se.code() == Some("NotImplemented"))
}

/// Percent-encodes a tag key or value for `x-amz-tagging`: everything but RFC 3986's
/// unreserved characters (so '/', '&', '=' and '+' survive the trip).
fn encode_tag(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sets the object attributes on a `PutObject` or `CreateMultipartUpload` builder (both
/// have the same setters); `$meta` is the whole user metadata (the caller's and ours).
macro_rules! set_object_attributes {
    ($b:expr, $a:expr, $meta:expr) => {
        $b.content_type(
            $a.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )
        .set_metadata(Some($meta))
        .set_tagging($a.tagging.clone())
        .set_storage_class($a.storage_class.clone())
        .set_acl($a.acl.clone())
        .checksum_algorithm($a.checksum())
        .set_server_side_encryption($a.sse.clone())
        .set_ssekms_key_id($a.sse_kms_key_id.clone())
        .set_bucket_key_enabled($a.bucket_key_enabled)
    };
}
pub(crate) use set_object_attributes;

/// Sets what a companion header object shares with its object: the server-side
/// encryption a bucket policy may demand, the ACL and the checksum; not the storage class
/// (the header stays readable without a restore), tags, metadata or Content-Type.
macro_rules! set_companion_attributes {
    ($b:expr, $a:expr) => {
        $b.set_acl($a.acl.clone())
            .checksum_algorithm($a.checksum())
            .set_server_side_encryption($a.sse.clone())
            .set_ssekms_key_id($a.sse_kms_key_id.clone())
            .set_bucket_key_enabled($a.bucket_key_enabled)
    };
}
pub(crate) use set_companion_attributes;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagging_not_implemented_means_no_tags() {
        use crate::error::{Service, ServiceError, ServiceErrorKind};
        let err = |code: Option<&str>, kind| {
            Error::Storage(
                ServiceError::new(Service::S3, kind, "GetObjectTagging s3://b/k: x")
                    .with_code(code.map(str::to_string)),
            )
        };
        assert!(tagging_unsupported(&err(
            Some("NotImplemented"),
            ServiceErrorKind::Other
        )));
        assert!(!tagging_unsupported(&err(
            Some("AccessDenied"),
            ServiceErrorKind::AccessDenied
        )));
        assert!(!tagging_unsupported(&err(
            Some("NoSuchKey"),
            ServiceErrorKind::NotFound
        )));
        assert!(!tagging_unsupported(&err(None, ServiceErrorKind::Other)));
        assert!(!tagging_unsupported(&Error::storage("NotImplemented")));
    }

    #[test]
    fn tags_are_encoded_for_the_tagging_header() {
        assert_eq!(encode_tag("a/b c&d=e+f~"), "a%2Fb%20c%26d%3De%2Bf~");
        let round = format!("{}={}", encode_tag("k/1"), encode_tag("v é"));
        assert_eq!(
            parse_tagging(&round).unwrap(),
            vec![("k/1".to_string(), "v é".to_string())]
        );
    }

    #[test]
    fn tagging_is_parsed_and_limited() {
        assert_eq!(
            parse_tagging("a=1&b%20c=x+y&empty=").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b c".into(), "x y".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(parse_tagging("a=1&a=2").is_err());
        assert!(parse_tagging("=1").is_err());
        assert!(parse_tagging("a=%zz").is_err());
        assert!(parse_tagging("a=%e2%82").is_err());
        let eleven: Vec<String> = (0..11).map(|i| format!("k{i}=v")).collect();
        assert!(parse_tagging(&eleven.join("&")).is_err());
        let ten: Vec<String> = (0..10).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse_tagging(&ten.join("&")).unwrap().len(), 10);
    }

    #[test]
    fn check_refuses_reserved_names_and_inconsistent_sse() {
        let mut a = ObjectAttributes::default();
        a.check().unwrap();
        a.metadata.insert("Sealstream-Header".into(), "x".into());
        assert!(a.check().is_err());
        a.metadata.clear();
        a.metadata.insert("bad name".into(), "x".into());
        assert!(a.check().is_err());
        a.metadata.clear();
        a.metadata.insert("owner".into(), "x".into());
        a.check().unwrap();
        a.sse_kms_key_id = Some("alias/x".into());
        assert!(a.check().is_err());
        a.sse = Some(ServerSideEncryption::Aes256);
        assert!(a.check().is_err());
        a.sse = Some(ServerSideEncryption::AwsKms);
        a.check().unwrap();
        a.storage_class = Some(StorageClass::from("COLDEST"));
        assert!(a.check().is_err());
    }
}
