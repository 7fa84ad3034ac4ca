//! Multipart uploads through the gateway, and reading what they make: part-wise objects
//! (FORMAT.md §17, object-form version 2). docs/GATEWAY.md "Multipart uploads" says why it
//! works this way; in short, nothing is kept between requests by a gateway process:
//!
//! * the upload id given to the client is `<upstream upload id>~<base64url(header)>`, so
//!   whichever process gets an UploadPart can unwrap the data key (the header is public:
//!   its stanzas are wrapped keys) and seal the part;
//! * the ETag given for a part is `"<upstream ETag>-<part salt hex>"`, so the client carries
//!   each part's salt to CompleteMultipartUpload, where the manifest is written;
//! * the names of the manifest object (and of a companion header object) are derived from
//!   the header digest, so every process computes the same names without being told.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::Arc;

use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use http::StatusCode;
use s3s::dto::*;
use s3s::{S3Error, S3Result};
use tokio::sync::mpsc;
use tracing::Instrument as _;

use super::{
    BodyStream, GetFail, ManifestFrom, Msg, Service, error, etag_header, from_error, from_sdk,
    invalid_argument, not_implemented, parse_etag, refuse_reserved, trailer_checksums, url,
};
use crate::envelope::{self, EncryptParams, Opening, Sealing};
use crate::format::Header;
use crate::gateway::metrics::Metrics;
use crate::parts::{self, PART_SALT_LEN, PartEntry, PartLayout, PartRead};
use crate::range::ByteRange;
use crate::s3::ObjectInfo;
use crate::s3::object;
use crate::stream::{EngineOptions, OpenParams};
use crate::{Backend, Error};

/// The object-form version of a part-wise object (FORMAT.md §17.4).
pub(super) const FORM_V2: &str = "2";
/// Metadata entry naming the manifest object.
pub(super) const META_PARTS: &str = "sealstream-parts";
/// What sits between an object's key and the 16 hex digits of its manifest object's key.
pub(super) const PARTS_INFIX: &str = ".sealstream-parts-";
/// Separates the upstream upload id from the header in the client's upload id (not a
/// base64url character, and not one S3 puts in upload ids).
const ID_SEP: char = '~';
/// Longest upload id accepted from a client (or made for one): the upstream id plus a
/// header of a few stanzas fits many times over; anything longer is refused before it is
/// decoded.
pub(super) const MAX_UPLOAD_ID_LEN: usize = 8 * 1024;
/// Upstream upload ids are far shorter; this bounds the header's share of the id.
const MAX_UPSTREAM_ID_LEN: usize = 1024;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

// ---- names -----------------------------------------------------------------------------

/// True for a part-wise object's metadata (`sealstream` = `2`).
pub(super) fn is_v2(meta: &BTreeMap<String, String>) -> bool {
    meta.get(object::META_FORMAT).map(String::as_str) == Some(FORM_V2)
}

/// The metadata as the object-form parser of version 1 reads it: version 2 places the
/// header exactly as version 1 does (§17.4), so only the version entry differs.
///
/// SHIM: src/s3/object.rs reads version 1 only and is not to be changed on this branch;
/// fold into `object::locate` when the library reads version 2.
pub(super) fn v1_view(meta: &BTreeMap<String, String>) -> Cow<'_, BTreeMap<String, String>> {
    if is_v2(meta) {
        let mut m = meta.clone();
        m.insert(
            object::META_FORMAT.to_string(),
            object::OBJECT_FORM_VERSION.to_string(),
        );
        Cow::Owned(m)
    } else {
        Cow::Borrowed(meta)
    }
}

/// The 64 bits that name an upload's manifest object (and companion header object): the
/// first 8 bytes of the header digest, unique per upload since the header's salt is fresh,
/// and recomputable by any gateway process from the header in the upload id.
fn name_bits(header: &Header) -> u64 {
    let d = header.digest();
    u64::from_be_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
}

/// `<object key>.sealstream-parts-<16 lowercase hex>`, at most 1024 bytes.
pub(super) fn manifest_key(object_key: &str, bits: u64) -> Result<String, String> {
    let k = format!("{object_key}{PARTS_INFIX}{bits:016x}");
    if k.len() > object::MAX_KEY_LEN {
        return Err(format!(
            "the object key is too long for its part manifest object ({} bytes > {}); use a \
             shorter key for multipart uploads",
            k.len(),
            object::MAX_KEY_LEN
        ));
    }
    Ok(k)
}

/// True if `name` is exactly how a writer names a manifest object of `object_key`: only such
/// an object is ever deleted along with the object (metadata naming anything else, planted or
/// kept by a copy, can never make the gateway delete another object).
pub(super) fn manifest_belongs_to(object_key: &str, name: &str) -> bool {
    name.strip_prefix(object_key)
        .and_then(|rest| rest.strip_prefix(PARTS_INFIX))
        .is_some_and(is_lower_hex16)
}

/// True for keys of the manifest-object shape (listings hide them, the gateway reserves them).
pub(super) fn is_manifest_key(key: &str) -> bool {
    key.rfind(PARTS_INFIX)
        .is_some_and(|i| is_lower_hex16(&key[i + PARTS_INFIX.len()..]))
}

fn is_lower_hex16(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---- upload ids and part ETags ---------------------------------------------------------

/// A client's upload id: the upstream one, and the header if the id is one this gateway
/// made (a bare upstream id comes from ListMultipartUploads).
pub(super) struct UploadId<'a> {
    upstream: &'a str,
    header: Option<Header>,
}

fn no_such_upload(msg: impl Into<String>) -> S3Error {
    error("NoSuchUpload", StatusCode::NOT_FOUND, msg)
}

pub(super) fn parse_upload_id(id: &str) -> S3Result<UploadId<'_>> {
    if id.len() > MAX_UPLOAD_ID_LEN {
        return Err(no_such_upload(format!(
            "the upload id is {} bytes, longer than any this gateway makes ({MAX_UPLOAD_ID_LEN})",
            id.len()
        )));
    }
    let Some((upstream, b64)) = id.rsplit_once(ID_SEP) else {
        return Ok(UploadId {
            upstream: id,
            header: None,
        });
    };
    let bad = |why: String| {
        no_such_upload(format!(
            "the upload id was not made by a sealstream gateway or was altered ({why})"
        ))
    };
    if upstream.is_empty() || upstream.len() > MAX_UPSTREAM_ID_LEN {
        return Err(bad("bad upstream part".into()));
    }
    let bytes = B64URL
        .decode(b64)
        .map_err(|_| bad("the header is not base64url".into()))?;
    let header = Header::parse_exact(&bytes).map_err(|e| bad(e.to_string()))?;
    Ok(UploadId {
        upstream,
        header: Some(header),
    })
}

/// The header of an upload id, which UploadPart and Complete need.
pub(super) fn require_header(id: UploadId<'_>) -> S3Result<(&str, Header)> {
    match id.header {
        Some(h) => Ok((id.upstream, h)),
        None => Err(invalid_argument(
            "this upload id carries no sealstream header: it is the bare upstream id that \
             ListMultipartUploads shows, which is good for ListParts and AbortMultipartUpload \
             only. Use the id CreateMultipartUpload returned, or abort this upload and start \
             a new one through the gateway",
        )),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex_salt(s: &str) -> Option<[u8; PART_SALT_LEN]> {
    if s.len() != 2 * PART_SALT_LEN || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; PART_SALT_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// The ETag a client gets for a part: the upstream part's ETag (unquoted) and the salt.
fn part_etag(upstream: &str, salt: &[u8; PART_SALT_LEN]) -> String {
    format!("{}-{}", upstream.trim_matches('"'), hex(salt))
}

/// Splits a client's part ETag into the upstream ETag (unquoted) and the part salt.
fn split_part_etag(etag: &str) -> Option<(&str, [u8; PART_SALT_LEN])> {
    let (up, salt) = etag.trim_matches('"').rsplit_once('-')?;
    if up.is_empty() {
        return None;
    }
    Some((up, unhex_salt(salt)?))
}

fn invalid_part(msg: impl Into<String>) -> S3Error {
    error("InvalidPart", StatusCode::BAD_REQUEST, msg)
}

fn malformed(msg: impl Into<String>) -> S3Error {
    error("MalformedXML", StatusCode::BAD_REQUEST, msg)
}

fn lower_meta(m: Option<Metadata>) -> S3Result<BTreeMap<String, String>> {
    let meta: BTreeMap<String, String> = m
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect();
    if let Some(k) = meta.keys().find(|k| object::is_sealstream_key(k)) {
        return Err(invalid_argument(format!(
            "user metadata x-amz-meta-{k} is reserved for sealstream's own entries"
        )));
    }
    Ok(meta)
}

/// S3 part numbers.
pub(super) fn check_part_number(n: i32) -> S3Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=parts::MAX_PARTS).contains(n))
        .ok_or_else(|| {
            invalid_argument(format!(
                "Part number must be an integer between 1 and {}, inclusive",
                parts::MAX_PARTS
            ))
        })
}

// ---- the operations --------------------------------------------------------------------

impl Service {
    /// CreateMultipartUpload: a fresh data key and header, the version-2 metadata, then the
    /// upstream upload; the header travels in the upload id.
    pub(super) async fn create_upload(
        &self,
        input: CreateMultipartUploadInput,
    ) -> S3Result<CreateMultipartUploadOutput> {
        refuse_reserved(&input.key)?;
        if input.sse_customer_key.is_some() {
            return Err(not_implemented(
                "SSE-C is not offered by the sealstream gateway (objects are already encrypted client-side)",
            ));
        }
        let user_meta = lower_meta(input.metadata.clone())?;
        let u = url(&input.bucket, &input.key);
        let sealing = self.new_sealing().await?;
        let header = sealing.header().clone();
        let header_bytes = header
            .to_bytes()
            .map_err(|e| from_error(&Error::InvalidArgument(e.to_string()), false))?;
        let b64 = B64URL.encode(&header_bytes);
        if b64.len() + 1 + MAX_UPSTREAM_ID_LEN > MAX_UPLOAD_ID_LEN {
            return Err(invalid_argument(format!(
                "the object header ({} bytes) is too large to travel in a multipart upload id; \
                 use fewer wrapping keys or a smaller encryption context",
                header_bytes.len()
            )));
        }
        let bits = name_bits(&header);
        let parts_key = manifest_key(&u.key, bits).map_err(invalid_argument)?;
        let placement = super::place_header(
            &header_bytes,
            &header,
            &u.key,
            &user_meta,
            Some((META_PARTS, parts_key.as_str())),
            bits,
        )?;
        let mut metadata: HashMap<String, String> = user_meta.into_iter().collect();
        metadata.extend(placement.metadata);
        metadata.insert(object::META_FORMAT.to_string(), FORM_V2.to_string());
        metadata.insert(META_PARTS.to_string(), parts_key);
        let companion = self.put_companion(&u.bucket, placement.companion).await?;
        let r = self
            .inner
            .client
            .create_multipart_upload()
            .bucket(&u.bucket)
            .key(&u.key)
            .set_metadata(Some(metadata))
            .set_content_type(input.content_type.clone())
            .set_cache_control(input.cache_control.clone())
            .set_content_disposition(input.content_disposition.clone())
            .set_content_encoding(input.content_encoding.clone())
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
            .send()
            .await;
        let out = match r {
            Ok(o) => o,
            Err(e) => {
                self.drop_companion(&u.bucket, companion.as_deref()).await;
                return Err(from_sdk("CreateMultipartUpload", &e));
            }
        };
        let upstream = out.upload_id().unwrap_or_default();
        if upstream.is_empty() || upstream.len() > MAX_UPSTREAM_ID_LEN || upstream.contains(ID_SEP)
        {
            return Err(error(
                "InternalError",
                StatusCode::BAD_GATEWAY,
                "the upstream store returned an upload id this gateway cannot carry",
            ));
        }
        tracing::info!(object = %u, "multipart upload started");
        Ok(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(format!("{upstream}{ID_SEP}{b64}")),
            ..CreateMultipartUploadOutput::default()
        })
    }

    /// UploadPart: the data key from the header in the upload id (one KMS call per data key
    /// per process, cached), a fresh part salt, the plaintext sealed as it streams into the
    /// upstream UploadPart.
    pub(super) async fn upload_part_sealed(
        &self,
        headers: &http::HeaderMap,
        trailers: Option<s3s::TrailingHeaders>,
        mut input: UploadPartInput,
    ) -> S3Result<UploadPartOutput> {
        let trailer_names = trailer_checksums(headers)?;
        refuse_reserved(&input.key)?;
        if input.sse_customer_key.is_some() {
            return Err(not_implemented(
                "SSE-C is not offered by the sealstream gateway (objects are already encrypted client-side)",
            ));
        }
        let number = check_part_number(input.part_number)?;
        let (upstream, header) = require_header(parse_upload_id(&input.upload_id)?)?;
        let upstream = upstream.to_string();
        let body = input.body.take();
        let len = super::plaintext_len(input.content_length, body.as_ref())?;
        let chunk_size = header.chunk_size;
        let part_len = parts::part_ciphertext_len(len, chunk_size);
        if part_len > parts::MAX_PART_LEN {
            return Err(error(
                "EntityTooLarge",
                StatusCode::BAD_REQUEST,
                format!(
                    "the encrypted part would be {part_len} bytes, over S3's 5 GiB part limit; \
                     use smaller parts"
                ),
            ));
        }
        let sealing = self.resume(header).await?;
        let part = sealing
            .seal_part(number)
            .map_err(|e| from_error(&e, false))?;
        let expected = super::given_checksums(
            [
                &input.checksum_crc32,
                &input.checksum_crc32c,
                &input.checksum_crc64nvme,
                &input.checksum_sha1,
                &input.checksum_sha256,
            ],
            &input.content_md5,
        );
        let signed = self.inner.config.upstream_signed_payload;
        let sealed = super::SealedBody::new(
            body,
            (len, expected, trailer_names, trailers),
            part.cipher(),
            chunk_size,
            part_len,
            signed,
            &self.inner.buffers,
        )?;
        let up = self
            .inner
            .client
            .upload_part()
            .bucket(&input.bucket)
            .key(&input.key)
            .upload_id(&upstream)
            .part_number(input.part_number)
            .content_length(sealed.content_length as i64)
            .body(sealed.body);
        let r = if signed {
            up.send().await
        } else {
            up.customize()
                .config_override(super::unsigned_upload_config())
                .interceptor(super::UnsignedChunked {
                    decoded_len: part_len,
                })
                .send()
                .await
        };
        sealed.pump.abort();
        let out = match r {
            Ok(o) => o,
            Err(e) => return Err(sealed.failure.or(from_sdk("UploadPart", &e))),
        };
        let up_etag = out.e_tag().unwrap_or_default().trim_matches('"');
        if up_etag.is_empty() || up_etag.contains('"') {
            return Err(error(
                "InternalError",
                StatusCode::BAD_GATEWAY,
                "the upstream store returned no usable ETag for the part",
            ));
        }
        Metrics::add(&self.inner.metrics.bytes_in, len);
        tracing::info!(bucket = %input.bucket, key = %input.key, part = number, plaintext = len, body = part_len, "part stored");
        Ok(UploadPartOutput {
            e_tag: Some(ETag::Strong(part_etag(up_etag, part.salt()))),
            checksum_crc32: input.checksum_crc32,
            checksum_crc32c: input.checksum_crc32c,
            checksum_crc64nvme: input.checksum_crc64nvme,
            checksum_sha1: input.checksum_sha1,
            checksum_sha256: input.checksum_sha256,
            ..UploadPartOutput::default()
        })
    }

    /// Every part of an upstream upload: number → (stored size, upstream ETag unquoted).
    async fn upstream_parts(
        &self,
        bucket: &str,
        key: &str,
        upload: &str,
    ) -> S3Result<BTreeMap<i32, (u64, String)>> {
        let mut all = BTreeMap::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .inner
                .client
                .list_parts()
                .bucket(bucket)
                .key(key)
                .upload_id(upload)
                .set_part_number_marker(marker.take())
                .customize()
                .interceptor(super::compat::ListPartsRoot)
                .send()
                .await
                .map_err(|e| from_sdk("ListParts", &e))?;
            for p in out.parts() {
                if let (Some(n), Some(size), Some(etag)) = (p.part_number(), p.size(), p.e_tag()) {
                    all.insert(n, (size.max(0) as u64, etag.trim_matches('"').to_string()));
                }
            }
            match out.next_part_number_marker() {
                Some(m) if out.is_truncated() == Some(true) && !m.is_empty() => {
                    marker = Some(m.to_string());
                }
                _ => break,
            }
        }
        Ok(all)
    }

    /// CompleteMultipartUpload: the manifest of the named parts (salts from the client's
    /// ETags, lengths from the stored parts), written create-only, then the upstream
    /// completion; the manifest is removed again if that fails.
    pub(super) async fn complete_upload(
        &self,
        input: CompleteMultipartUploadInput,
    ) -> S3Result<CompleteMultipartUploadOutput> {
        refuse_reserved(&input.key)?;
        let (upstream, header) = require_header(parse_upload_id(&input.upload_id)?)?;
        let upstream = upstream.to_string();
        let given = input
            .multipart_upload
            .as_ref()
            .and_then(|m| m.parts.as_ref())
            .cloned()
            .unwrap_or_default();
        if given.is_empty() {
            return Err(malformed(
                "The XML you provided was not well-formed or did not validate against our published schema (no parts)",
            ));
        }
        if given.len() > parts::MAX_PARTS as usize {
            return Err(malformed(format!(
                "a multipart upload has at most {} parts",
                parts::MAX_PARTS
            )));
        }
        // Numbers ascending (S3's rule), each ETag split into upstream ETag and salt.
        let mut named: Vec<(i32, String, [u8; PART_SALT_LEN])> = Vec::with_capacity(given.len());
        for p in &given {
            let n = p.part_number.ok_or_else(|| {
                malformed("The XML you provided was not well-formed: a Part has no PartNumber")
            })?;
            check_part_number(n)?;
            if named.last().is_some_and(|(prev, _, _)| *prev >= n) {
                return Err(error(
                    "InvalidPartOrder",
                    StatusCode::BAD_REQUEST,
                    "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
                ));
            }
            let etag = p
                .e_tag
                .as_ref()
                .ok_or_else(|| invalid_part(format!("part {n} is listed without its ETag")))?;
            let (up, salt) = split_part_etag(etag.value()).ok_or_else(|| {
                invalid_part(format!(
                    "part {n}'s ETag carries no sealstream part salt: the part was not uploaded \
                     through this gateway, or its ETag was changed. Upload part {n} again \
                     through the gateway and complete with the ETag it returns"
                ))
            })?;
            named.push((n, up.to_string(), salt));
        }
        let stored = match self
            .upstream_parts(&input.bucket, &input.key, &upstream)
            .await
        {
            Ok(s) => s,
            Err(e) if e.code().as_str() == "NoSuchUpload" => {
                // S3 forgets an upload's parts once it is completed: a Complete retried
                // after a lost answer succeeds if the object is this very completion.
                return self.already_completed(input, header, &named, e).await;
            }
            Err(e) => return Err(e),
        };
        let chunk_size = header.chunk_size;
        let mut entries = Vec::with_capacity(named.len());
        let mut completed = Vec::with_capacity(named.len());
        for (n, up, salt) in &named {
            let (size, etag) = stored.get(n).ok_or_else(|| {
                invalid_part(format!(
                    "One or more of the specified parts could not be found: part {n} was not uploaded"
                ))
            })?;
            if !etag.eq_ignore_ascii_case(up) {
                return Err(invalid_part(format!(
                    "One or more of the specified parts could not be found: part {n}'s ETag does \
                     not match the stored part (it was uploaded again since); complete with the \
                     ETag of its last upload"
                )));
            }
            let plaintext_len = parts::part_plaintext_len(*size, chunk_size).map_err(|_| {
                invalid_part(format!(
                    "part {n} as stored ({size} bytes) is not a sealed part; upload it again"
                ))
            })?;
            entries.push(PartEntry {
                number: *n as u32,
                salt: *salt,
                plaintext_len,
            });
            completed.push(
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(*n)
                    .e_tag(format!("\"{etag}\""))
                    .build(),
            );
        }
        let u = url(&input.bucket, &input.key);
        let parts_key = manifest_key(&u.key, name_bits(&header)).map_err(invalid_argument)?;
        let sealing = self.resume(header).await?;
        let manifest = sealing
            .part_manifest(entries)
            .map_err(|e| invalid_part(e.to_string()))?;
        let if_none_match = super::create_only(&input.if_none_match, "CompleteMultipartUpload")?;
        let old = self
            .inner
            .s3
            .head(&u)
            .await
            .map_err(|e| from_error(&e, false))?;
        if old.is_some() && if_none_match.is_some() {
            return Err(precondition_failed());
        }

        // The manifest, create-only: an identical one is a retried completion.
        let written = match self
            .inner
            .client
            .put_object()
            .bucket(&u.bucket)
            .key(&parts_key)
            .content_type("application/octet-stream")
            .if_none_match("*")
            .body(ByteStream::from(manifest.clone()))
            .send()
            .await
        {
            Ok(o) => Some(o.e_tag().map(str::to_string)),
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                match self.get_manifest(&u.bucket, &parts_key).await? {
                    Some(existing) if existing == manifest => None,
                    _ => {
                        return Err(error(
                            "OperationAborted",
                            StatusCode::CONFLICT,
                            "another completion of this upload with a different part list \
                             wrote its manifest first; list the object or start a new upload",
                        ));
                    }
                }
            }
            Err(e) => return Err(from_sdk("PutObject", &e)),
        };
        let r = self
            .inner
            .client
            .complete_multipart_upload()
            .bucket(&u.bucket)
            .key(&u.key)
            .upload_id(&upstream)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .set_if_none_match(if_none_match)
            .set_if_match(
                input
                    .if_match
                    .as_ref()
                    .and_then(|c| c.as_etag())
                    .map(etag_header),
            )
            .send()
            .await;
        let out = match r {
            Ok(o) => o,
            Err(e) => {
                if let Some(etag) = written {
                    let d = self
                        .inner
                        .client
                        .delete_object()
                        .bucket(&u.bucket)
                        .key(&parts_key)
                        .set_if_match(etag)
                        .send()
                        .await;
                    if let Err(de) = d {
                        tracing::warn!(object = %u, manifest = %parts_key, error = %from_sdk("DeleteObject", &de), "could not delete the manifest of a failed completion");
                    }
                }
                return Err(from_sdk("CompleteMultipartUpload", &e));
            }
        };
        if let Some(old) = &old {
            let keep_companion = match object::locate(&v1_view(&old.metadata)) {
                // The companion of this very upload (a retried completion) stays.
                Ok(object::HeaderLocation::Companion { key, .. })
                    if is_v2(&old.metadata) && old.metadata.get(META_PARTS) == Some(&parts_key) =>
                {
                    Some(key)
                }
                _ => None,
            };
            self.clean_companion(&u, &v1_view(&old.metadata), keep_companion.as_deref())
                .await;
            self.clean_manifest(&u, &old.metadata, Some(&parts_key))
                .await;
        }
        tracing::info!(object = %u, parts = named.len(), "multipart upload completed");
        Ok(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: out.e_tag().and_then(parse_etag),
            location: out.location().map(str::to_string),
            version_id: out.version_id().map(str::to_string),
            ..CompleteMultipartUploadOutput::default()
        })
    }

    /// A retried CompleteMultipartUpload whose upload is gone upstream: success if the
    /// object at the key is the completion of this upload with exactly these parts (its
    /// manifest, verified with the key, lists the same part numbers and salts), else the
    /// upstream's `NoSuchUpload`.
    async fn already_completed(
        &self,
        input: CompleteMultipartUploadInput,
        header: Header,
        named: &[(i32, String, [u8; PART_SALT_LEN])],
        no_such_upload: S3Error,
    ) -> S3Result<CompleteMultipartUploadOutput> {
        let u = url(&input.bucket, &input.key);
        let parts_key = manifest_key(&u.key, name_bits(&header)).map_err(invalid_argument)?;
        let Ok(Some(head)) = self.inner.s3.head(&u).await else {
            return Err(no_such_upload);
        };
        if !is_v2(&head.metadata) || head.metadata.get(META_PARTS) != Some(&parts_key) {
            return Err(no_such_upload);
        }
        let Some(bytes) = self.get_manifest(&u.bucket, &parts_key).await? else {
            return Err(no_such_upload);
        };
        let dek = self.unwrap_dek(&header).await?;
        let opening = Opening::with_verified_key(header, &dek, Backend::default());
        let Ok(layout) = opening.part_layout(&bytes, head.content_length) else {
            return Err(no_such_upload);
        };
        let stored = layout
            .parts()
            .iter()
            .map(|p| (p.entry.number, p.entry.salt));
        let asked = named.iter().map(|(n, _, salt)| (*n as u32, *salt));
        if !stored.eq(asked) {
            return Err(no_such_upload);
        }
        Ok(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: head.etag.as_deref().and_then(parse_etag),
            version_id: head.version_id,
            ..CompleteMultipartUploadOutput::default()
        })
    }

    /// AbortMultipartUpload (a bare upstream id works too); the upload's companion header
    /// object, if it had one, goes with it.
    pub(super) async fn abort_upload(&self, input: AbortMultipartUploadInput) -> S3Result<()> {
        refuse_reserved(&input.key)?;
        let id = parse_upload_id(&input.upload_id)?;
        self.inner
            .client
            .abort_multipart_upload()
            .bucket(&input.bucket)
            .key(&input.key)
            .upload_id(id.upstream)
            .send()
            .await
            .map_err(|e| from_sdk("AbortMultipartUpload", &e))?;
        if let Some(header) = &id.header
            && let Ok(ck) = object::companion_key(&input.key, name_bits(header))
            && let Ok(Some((bytes, etag))) = self.get_companion_tagged(&input.bucket, &ck).await
            && object::parse_header(&bytes, Some(&header.commitment)).is_ok()
        {
            let _ = self
                .inner
                .client
                .delete_object()
                .bucket(&input.bucket)
                .key(&ck)
                .set_if_match(etag)
                .send()
                .await;
        }
        Ok(())
    }

    /// ListParts: sizes in plaintext; the ETags are the upstream ones (without salts), so a
    /// client resuming from this list must upload those parts again (docs/GATEWAY.md).
    pub(super) async fn list_upload_parts(
        &self,
        input: ListPartsInput,
    ) -> S3Result<ListPartsOutput> {
        refuse_reserved(&input.key)?;
        let id = parse_upload_id(&input.upload_id)?;
        let chunk_size = id
            .header
            .as_ref()
            .map_or(EncryptParams::default().chunk_size, |h| h.chunk_size);
        let out = self
            .inner
            .client
            .list_parts()
            .bucket(&input.bucket)
            .key(&input.key)
            .upload_id(id.upstream)
            .set_max_parts(input.max_parts)
            .set_part_number_marker(input.part_number_marker.map(|m| m.to_string()))
            .customize()
            .interceptor(super::compat::ListPartsRoot)
            .send()
            .await
            .map_err(|e| from_sdk("ListParts", &e))?;
        let list = out
            .parts()
            .iter()
            .map(|p| {
                let raw = p.size().unwrap_or(0).max(0) as u64;
                let size = parts::part_plaintext_len(raw, chunk_size).unwrap_or(raw);
                Part {
                    part_number: p.part_number(),
                    size: Some(size as i64),
                    e_tag: p.e_tag().and_then(parse_etag),
                    last_modified: p.last_modified().and_then(super::timestamp),
                    ..Part::default()
                }
            })
            .collect();
        Ok(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            max_parts: out.max_parts(),
            is_truncated: out.is_truncated(),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: out.next_part_number_marker().and_then(|m| m.parse().ok()),
            parts: Some(list),
            ..ListPartsOutput::default()
        })
    }

    /// ListMultipartUploads: passed through; the ids are the bare upstream ones.
    pub(super) async fn list_uploads(
        &self,
        i: ListMultipartUploadsInput,
    ) -> S3Result<ListMultipartUploadsOutput> {
        let out = self
            .inner
            .client
            .list_multipart_uploads()
            .bucket(&i.bucket)
            .set_prefix(i.prefix.clone())
            .set_delimiter(i.delimiter.clone())
            .set_key_marker(i.key_marker.clone())
            .set_upload_id_marker(i.upload_id_marker.clone())
            .set_max_uploads(i.max_uploads)
            .send()
            .await
            .map_err(|e| from_sdk("ListMultipartUploads", &e))?;
        let uploads = out
            .uploads()
            .iter()
            .map(|u| MultipartUpload {
                key: u.key().map(str::to_string),
                upload_id: u.upload_id().map(str::to_string),
                initiated: u.initiated().and_then(super::timestamp),
                storage_class: u
                    .storage_class()
                    .map(|c| StorageClass::from(c.as_str().to_string())),
                ..MultipartUpload::default()
            })
            .collect();
        Ok(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: i.prefix,
            delimiter: i.delimiter,
            key_marker: i.key_marker,
            upload_id_marker: i.upload_id_marker,
            max_uploads: out.max_uploads(),
            is_truncated: out.is_truncated(),
            next_key_marker: out.next_key_marker().map(str::to_string),
            next_upload_id_marker: out.next_upload_id_marker().map(str::to_string),
            uploads: Some(uploads),
            common_prefixes: Some(super::common_prefixes(out.common_prefixes())),
            ..ListMultipartUploadsOutput::default()
        })
    }

    /// CopyObject of a part-wise object: the source's manifest object and the one the copy
    /// names (`<destination key>.sealstream-parts-<16 hex of H>`, the same for every copy of
    /// this object to that key, so copying onto the source itself keeps its manifest). The
    /// manifest's MAC binds the data key and header, not its name, so a byte copy verifies.
    pub(super) fn copy_manifest_names(
        &self,
        info: &ObjectInfo,
        dest_key: &str,
    ) -> S3Result<(String, String)> {
        let src = info.head.metadata.get(META_PARTS).ok_or_else(|| {
            self.bad_object(
                &info.url.bucket,
                &info.url.key,
                format!("object-form version 2 without '{META_PARTS}' (tampered with)"),
            )
        })?;
        if src.len() > object::MAX_KEY_LEN {
            return Err(self.bad_object(
                &info.url.bucket,
                &info.url.key,
                format!("'{META_PARTS}' is not a key"),
            ));
        }
        let dst = manifest_key(dest_key, name_bits(&info.header)).map_err(invalid_argument)?;
        Ok((src.clone(), dst))
    }

    /// The data key of an upload's header, unwrapped with the gateway's keys under its
    /// context (one KMS Decrypt per data key and process with a KMS key: the cache serves
    /// the rest).
    async fn unwrap_dek(&self, header: &Header) -> S3Result<crate::DataKey> {
        envelope::unwrap_data_key_async(header, &self.unwrap_keys(), &self.inner.config.context)
            .await
            .map_err(|e| from_error(&e, false))
    }

    /// Resumes sealing an upload from the header in its id: the data key unwrapped and
    /// checked against the header's key commitment.
    async fn resume(&self, header: Header) -> S3Result<Sealing> {
        let dek = self.unwrap_dek(&header).await?;
        Sealing::resume(header, &dek, Backend::default()).map_err(|e| from_error(&e, false))
    }

    // ---- reading part-wise objects ---------------------------------------------------

    /// GETs a manifest object, refusing more than the longest manifest; `None` if missing.
    async fn get_manifest(&self, bucket: &str, key: &str) -> S3Result<Option<Vec<u8>>> {
        Ok(self
            .get_capped(bucket, key, parts::MAX_MANIFEST_LEN, "part manifest")
            .await?
            .map(|(b, _)| b))
    }

    pub(super) fn bad_object(&self, bucket: &str, key: &str, reason: String) -> S3Error {
        Metrics::add(&self.inner.metrics.auth_failures, 1);
        from_error(
            &Error::ObjectMetadata {
                object: format!("s3://{bucket}/{key}"),
                reason,
            },
            false,
        )
    }

    /// The manifest of a part-wise object, as stored (not yet verified); `of_version`: for
    /// a read of the version `info` was loaded at (a deleted manifest is then looked for
    /// among its versions: versions.rs).
    async fn manifest_of(&self, info: &ObjectInfo, of_version: bool) -> S3Result<Vec<u8>> {
        let (bucket, key) = (&info.url.bucket, &info.url.key);
        // As for a companion header (`Service::load_header_at`): in a bucket with versioning
        // a current object's manifest may be behind a delete marker.
        let of_version = of_version || info.head.version_id.is_some();
        let name = info.head.metadata.get(META_PARTS).ok_or_else(|| {
            self.bad_object(
                bucket,
                key,
                format!("object-form version 2 without '{META_PARTS}' (tampered with)"),
            )
        })?;
        if name.len() > object::MAX_KEY_LEN {
            return Err(self.bad_object(bucket, key, format!("'{META_PARTS}' is not a key")));
        }
        let found = self
            .get_sidecar(
                bucket,
                name,
                of_version,
                parts::MAX_MANIFEST_LEN,
                "part manifest",
            )
            .await?;
        found.map(|s| s.bytes).ok_or_else(|| {
            self.bad_object(
                bucket,
                key,
                format!(
                    "its part manifest s3://{bucket}/{name} is missing: the upload was never \
                     completed by a conforming writer, or the manifest was deleted"
                ),
            )
        })
    }

    /// The plaintext size a part-wise object's manifest claims, without its key (HEAD and
    /// listings; no KMS call). A GET verifies the manifest before serving anything.
    pub(super) async fn v2_claimed_size(
        &self,
        info: &ObjectInfo,
        of_version: bool,
    ) -> S3Result<u64> {
        let bytes = self.manifest_of(info, of_version).await?;
        parts::unauthenticated_plaintext_len(&bytes).ok_or_else(|| {
            self.bad_object(
                &info.url.bucket,
                &info.url.key,
                "its part manifest is not a manifest".into(),
            )
        })
    }

    /// Where part `n` of a part-wise object lies, as its manifest **claims** (HEAD with
    /// `partNumber`: no key, no KMS call; a GET of the part verifies the manifest).
    pub(super) async fn v2_claimed_part(
        &self,
        info: &ObjectInfo,
        n: u32,
        of_version: bool,
    ) -> S3Result<PartSlice> {
        let bytes = self.manifest_of(info, of_version).await?;
        let parts = parts::unauthenticated_parts(&bytes).ok_or_else(|| {
            self.bad_object(
                &info.url.bucket,
                &info.url.key,
                "its part manifest is not a manifest".into(),
            )
        })?;
        let overflow = || {
            self.bad_object(
                &info.url.bucket,
                &info.url.key,
                "its part manifest's lengths overflow".into(),
            )
        };
        let total = parts
            .iter()
            .try_fold(0u64, |t, (_, len)| t.checked_add(*len))
            .ok_or_else(overflow)?;
        PartSlice::find(parts.iter().copied(), n, total)
    }

    /// GetObject of a part-wise object (whole, ranged, or one part by `partNumber`): verify
    /// the manifest against the key and the stored length, then stream each covering
    /// part's covering chunks with a ranged GET pinned to the object's ETag, releasing only
    /// authenticated plaintext.
    pub(super) async fn get_v2(
        &self,
        info: Box<ObjectInfo>,
        range: Option<ByteRange>,
        part: Option<u32>,
        of_version: bool,
        from: ManifestFrom<'_>,
    ) -> Result<GetObjectOutput, GetFail> {
        let opening = self.unlock(&info).await?;
        let (manifest, cached, remember) = match from {
            ManifestFrom::Cache(m) => (m, true, None),
            ManifestFrom::Upstream { remember } => (
                Arc::from(self.manifest_of(&info, of_version).await?),
                false,
                remember,
            ),
        };
        let layout = opening
            .part_layout(&manifest, info.head.content_length)
            .map_err(|e| {
                Metrics::add(&self.inner.metrics.auth_failures, 1);
                tracing::warn!(object = %info.url, error = %e, "part manifest rejected");
                from_error(&e, false)
            })?;
        if let Some(version) = remember {
            self.remember_header(&info, version, Some(manifest));
        }
        let total = layout.plaintext_len();
        let mut parts_count = None;
        let (reads, length, content_range) = match (part, range) {
            (Some(n), _) => {
                let entries = layout
                    .parts()
                    .iter()
                    .map(|p| (p.entry.number, p.entry.plaintext_len));
                let slice = PartSlice::find(entries, n, total)?;
                parts_count = Some(slice.count);
                // The whole part, every chunk: its final tag is authenticated too.
                let read = whole_reads(&layout).swap_remove(slice.index);
                (vec![read], slice.len, slice.content_range())
            }
            (None, None) => (whole_reads(&layout), total, None),
            (None, Some(r)) => {
                let (s, e, reads) = layout.plan(r).map_err(|e| from_error(&e, true))?;
                (reads, e - s + 1, Some(format!("bytes {s}-{e}/{total}")))
            }
        };

        let (tx, mut rx) = mpsc::channel::<Msg>(4);
        let client = self.inner.client.clone();
        let metrics = self.inner.metrics.clone();
        let task_info = info.clone();
        let buffers = self.inner.buffers.clone();
        tokio::spawn(
            async move {
                let chunk_size = layout.chunk_size();
                for (n, read) in reads.into_iter().enumerate() {
                    let part = &layout.parts()[read.index];
                    let cipher = opening.part_cipher(&part.entry);
                    let r = client
                        .get_object()
                        .bucket(&task_info.url.bucket)
                        .key(&task_info.url.key)
                        .set_if_match(task_info.head.etag.clone())
                        .set_version_id(task_info.head.version_id.clone())
                        .range(format!(
                            "bytes={}-{}",
                            read.body_range.start,
                            read.body_range.end - 1
                        ))
                        .send()
                        .await;
                    let body = match r {
                        Ok(o) => o.body.into_async_read(),
                        Err(e) => {
                            let se = from_sdk("GetObject", &e);
                            // A cached header's object replaced or deleted upstream: the
                            // GET loads it again (nothing was sent yet).
                            let gone = cached
                                && n == 0
                                && matches!(
                                    se.status_code().map(|s| s.as_u16()),
                                    Some(412 | 404)
                                );
                            if !gone {
                                tracing::warn!(object = %task_info.url, error = %se, "part GET failed");
                            }
                            let msg = io::Error::other(format!(
                                "reading the stored object failed: {se}"
                            ));
                            let _ = tx
                                .send(if gone { Msg::Gone(msg) } else { Msg::Failed(msg) })
                                .await;
                            return;
                        }
                    };
                    let opts = EngineOptions {
                        buffers: Some(&buffers),
                        ..super::engine_for(
                            read.body_range.end - read.body_range.start,
                            chunk_size,
                        )
                    };
                    let r = match crate::aio::DecryptReader::new(
                        &cipher,
                        chunk_size,
                        body,
                        read.params,
                        &opts,
                    ) {
                        Ok(plain) => super::send_opened(plain.into_opened_stream(), &tx).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = r {
                        if e.is_authentication() {
                            Metrics::add(&metrics.auth_failures, 1);
                        }
                        if !e.is_broken_pipe() {
                            tracing::warn!(object = %task_info.url, part = part.entry.number, error = %e, "GET failed");
                        }
                        let _ = tx.send(Msg::Error(e)).await;
                        return;
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        let first = match rx.recv().await {
            Some(Msg::Gone(_)) if cached => return Err(GetFail::Stale),
            Some(Msg::Error(e)) => return Err(from_error(&e, false).into()),
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
        let mut o = super::output_from_head(&info.head, length as i64);
        o.content_range = content_range;
        o.parts_count = parts_count;
        o.body = Some(StreamingBlob::wrap(BodyStream {
            first,
            rx,
            metrics: self.inner.metrics.clone(),
        }));
        Ok(o)
    }

    /// Deletes the manifest object named in `old` (metadata of an object being deleted or
    /// replaced), only if it is named exactly as this object's manifest (`keep` excepted).
    pub(super) async fn clean_manifest(
        &self,
        u: &crate::s3::S3Url,
        old: &BTreeMap<String, String>,
        keep: Option<&str>,
    ) {
        if !is_v2(old) {
            return;
        }
        let Some(name) = old.get(META_PARTS) else {
            return;
        };
        if keep == Some(name.as_str()) {
            return;
        }
        if !manifest_belongs_to(&u.key, name) {
            tracing::warn!(object = %u, manifest = %name.chars().take(200).collect::<String>(), "the old metadata names a manifest object not named after this object; left alone");
            return;
        }
        if let Err(e) = self
            .inner
            .client
            .delete_object()
            .bucket(&u.bucket)
            .key(name)
            .send()
            .await
        {
            tracing::warn!(object = %u, manifest = %name, error = %from_sdk("DeleteObject", &e), "could not delete the part manifest");
        }
    }
}

/// One part of a part-wise object by its part number: what a GET or HEAD with
/// `partNumber` answers (S3's `Content-Range` and `x-amz-mp-parts-count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PartSlice {
    /// Position in the manifest (0-based).
    pub(super) index: usize,
    /// Plaintext offset of the part's first byte.
    pub(super) offset: u64,
    /// Plaintext length of the part.
    pub(super) len: u64,
    /// Parts in the object.
    pub(super) count: i32,
    /// Plaintext length of the object.
    pub(super) total: u64,
}

impl PartSlice {
    /// Part number `n` among `parts` ((number, plaintext length), in order); a number the
    /// object does not have is S3's `416 InvalidPartNumber`. Part numbers are the ones the
    /// upload used (a Complete naming parts 1, 3 and 5 has no part 2).
    fn find(parts: impl Iterator<Item = (u32, u64)>, n: u32, total: u64) -> S3Result<PartSlice> {
        let mut offset = 0u64;
        let mut found = None;
        let mut count = 0i32;
        for (index, (number, len)) in parts.enumerate() {
            if number == n {
                found = Some((index, offset, len));
            }
            offset = offset.saturating_add(len);
            count = count.saturating_add(1);
        }
        let (index, offset, len) = found.ok_or_else(invalid_part_number)?;
        Ok(PartSlice {
            index,
            offset,
            len,
            count,
            total,
        })
    }

    /// `bytes FIRST-LAST/TOTAL`; none for an empty part (no byte to name).
    pub(super) fn content_range(&self) -> Option<String> {
        (self.len > 0).then(|| {
            format!(
                "bytes {}-{}/{}",
                self.offset,
                self.offset + self.len - 1,
                self.total
            )
        })
    }
}

/// S3's answer to a `partNumber` the object does not have.
pub(super) fn invalid_part_number() -> S3Error {
    error(
        "InvalidPartNumber",
        StatusCode::RANGE_NOT_SATISFIABLE,
        "The requested partnumber is not satisfiable",
    )
}

fn precondition_failed() -> S3Error {
    error(
        "PreconditionFailed",
        StatusCode::PRECONDITION_FAILED,
        "At least one of the pre-conditions you specified did not hold",
    )
}

/// Every part, whole: the reads of a GET without a range.
fn whole_reads(layout: &PartLayout) -> Vec<PartRead> {
    layout
        .parts()
        .iter()
        .enumerate()
        .map(|(index, p)| PartRead {
            index,
            body_range: p.body_offset
                ..p.body_offset
                    + parts::part_ciphertext_len(p.entry.plaintext_len, layout.chunk_size()),
            params: OpenParams::default(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_slices_by_upload_part_number() {
        let parts = [(1u32, 10u64), (3, 5), (7, 0)];
        let p = PartSlice::find(parts.iter().copied(), 3, 15).unwrap();
        assert_eq!((p.index, p.offset, p.len, p.count), (1, 10, 5, 3));
        assert_eq!(p.content_range().as_deref(), Some("bytes 10-14/15"));
        let empty = PartSlice::find(parts.iter().copied(), 7, 15).unwrap();
        assert_eq!(empty.content_range(), None);
        let missing = PartSlice::find(parts.iter().copied(), 2, 15).unwrap_err();
        assert_eq!(missing.code().as_str(), "InvalidPartNumber");
    }

    #[test]
    fn names() {
        let k = manifest_key("a/b", 0x0123_4567_89ab_cdef).unwrap();
        assert_eq!(k, "a/b.sealstream-parts-0123456789abcdef");
        assert!(manifest_belongs_to("a/b", &k));
        assert!(!manifest_belongs_to("a/c", &k));
        assert!(!manifest_belongs_to(
            "a/b",
            "a/b.sealstream-parts-0123456789ABCDEF"
        ));
        assert!(is_manifest_key(&k));
        assert!(!is_manifest_key("a/b.sealstream-parts-012"));
        assert!(manifest_key(&"k".repeat(1000), 1).is_err());
    }

    #[test]
    fn part_etags_round_trip() {
        let salt = [0xab; PART_SALT_LEN];
        let e = part_etag("\"d41d8cd98f00b204e9800998ecf8427e\"", &salt);
        assert_eq!(
            e,
            "d41d8cd98f00b204e9800998ecf8427e-abababababababababababababababab"
        );
        assert_eq!(
            split_part_etag(&format!("\"{e}\"")),
            Some(("d41d8cd98f00b204e9800998ecf8427e", salt))
        );
        assert_eq!(split_part_etag("d41d8cd98f00b204e9800998ecf8427e"), None);
        assert_eq!(split_part_etag("abc-12"), None);
        assert_eq!(split_part_etag("-abababababababababababababababab"), None);
    }

    #[test]
    fn upload_ids() {
        let bare = parse_upload_id("abc.def_GHI").unwrap();
        assert_eq!(bare.upstream, "abc.def_GHI");
        assert!(bare.header.is_none());
        assert!(parse_upload_id("abc~!!!").is_err());
        assert!(parse_upload_id("abc~AAAA").is_err());
        assert!(parse_upload_id(&"a".repeat(MAX_UPLOAD_ID_LEN + 1)).is_err());
        assert!(require_header(parse_upload_id("abc").unwrap()).is_err());
    }
}
