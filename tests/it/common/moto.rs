//! Test-side access to the local AWS emulator (moto): creating KMS keys for the KMS tests,
//! and creating, inspecting and preparing S3 buckets and objects for the S3 tests.
//!
//! The typed helpers ([`create_bucket`], [`put_object`], [`create_key`], ...) go through
//! the AWS SDK (`aws-sdk-s3`, `aws-sdk-kms`: already dependencies of the `s3`/`kms`
//! features), driven by a small blocking wrapper ([`block_on`]) over one shared tokio
//! runtime. They used to be a hand-written HTTP/XML client (request building, percent
//! encoding, XML scraping); the SDK is the well-kept implementation of the same protocol.
//! Each helper client has retries off and checksums only where S3 requires them, so what
//! a test's proxy sees is exactly one plain request per helper call.
//!
//! The raw section ([`send`], [`send_bytes`], [`s3`]) stays for the requests that must be
//! raw on purpose: the emulator wiring check (tests/it/emulator.rs, which proves the endpoint
//! answers without any client in between), and the proxy's own self-tests
//! (tests/it/s3_harness.rs), which look at wire details an SDK hides or refuses to send:
//! fault bodies as bytes, chunked framing, status-only answers. moto does not verify
//! SigV4, so a dummy `Authorization` header only names the region and service.
//!
//! Every helper takes an `authority` (`host:port`): the emulator's ([`endpoint`]) or a
//! proxy's (`Proxy::authority()`), so the same calls can also go through fault injection.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);
/// Read/write timeout once connected: multi-MiB S3 bodies and CompleteMultipartUpload take
/// longer than KMS calls on a busy machine.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// `host:port` of the emulator.
///
/// Every test that calls this is `#[ignore = "needs the emulator (scripts/test.sh runs it)"]`,
/// so plain `cargo test` reports it as ignored, never as passed; `scripts/test.sh` starts the
/// emulator and runs them with `-- --include-ignored`. Run by hand without the emulator
/// (`--ignored`/`--include-ignored`), this panics with what to do instead of skipping: a test
/// that did not check anything must never print "ok". Always `Some`; the `Option` keeps the
/// callers' `let Some(ep) = endpoint(..) else { return };` shape compiling.
pub fn endpoint(test: &str) -> Option<String> {
    let url = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let Some(url) = url else {
        panic!(
            "{test} needs the AWS emulator but AWS_ENDPOINT_URL is not set: run scripts/test.sh, \
             or start it with scripts/emulator.sh start and export \
             AWS_ENDPOINT_URL=$(scripts/emulator.sh endpoint) (see docs/TESTING.md)"
        );
    };
    let rest = url.trim().strip_prefix("http://").unwrap_or_else(|| {
        panic!("AWS_ENDPOINT_URL must be a plain http:// URL for the emulator, got {url:?}")
    });
    let authority = rest.split('/').next().unwrap_or(rest);
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
    Some(if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    })
}

// ---- raw HTTP (see the module docs for who needs it) ----

/// Sends one raw HTTP/1.1 request and returns (status code, body).
pub fn send(authority: &str, head: &str, body: &str) -> (u16, String) {
    let r = send_bytes(authority, head, body.as_bytes());
    (r.status, r.text())
}

/// A raw HTTP response (see `http1.rs`).
pub use super::http1::Response;

/// Sends one raw HTTP/1.1 request (`head` is the request line and headers, without `Host`,
/// `Content-Length` and the blank line) with a byte body, and reads the whole response.
pub fn send_bytes(authority: &str, head: &str, body: &[u8]) -> Response {
    let addr = authority
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {authority}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{authority} resolved to no address"));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to the emulator at {authority}: {e}"));
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let request = format!(
        "{head}\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    stream
        .write_all(body)
        .unwrap_or_else(|e| panic!("sending the request body to {authority} failed: {e}"));
    let method = head.split(' ').next().unwrap_or("");
    read_whole_response(&mut BufReader::new(stream), method)
}

/// Parses a complete HTTP/1.1 response (interim answers skipped), e.g. one read until the
/// connection closed.
pub fn parse_response(mut raw: &[u8], is_head: bool) -> Response {
    read_whole_response(&mut raw, if is_head { "HEAD" } else { "GET" })
}

fn read_whole_response(r: &mut impl BufRead, method: &str) -> Response {
    let resp = super::http1::read_response(r, method)
        .unwrap_or_else(|e| panic!("malformed HTTP response: {e}"))
        .unwrap_or_else(|| panic!("the connection closed before any response"));
    assert!(
        resp.complete,
        "response body cut short ({} bytes read)",
        resp.body.len()
    );
    resp
}

pub fn dummy_auth(service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 \
         Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=00"
    )
}

/// `Authorization` header naming `region` and `service`.
pub fn auth_in(region: &str, service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 \
         Credential=testing/20260101/{region}/{service}/aws4_request, \
         SignedHeaders=host, Signature=00"
    )
}

/// A name no other test in this run uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `/bucket/key`, percent-encoded (for raw requests and `x-amz-copy-source`).
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", encode_key(key))
}

/// Percent-encodes an object key for a path: everything but unreserved characters and `/`.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One raw S3 request in us-east-1: `target` is the already-encoded path and query,
/// `headers` extra header lines. Returns whatever the server answered. Only for requests
/// that must be raw (module docs); everything else uses the typed helpers below.
pub fn s3(
    authority: &str,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {target} HTTP/1.1\r\n{}", dummy_auth("s3"));
    for (n, v) in headers {
        head.push_str(&format!("\r\n{n}: {v}"));
    }
    send_bytes(authority, &head, body)
}

/// A bucket name no other test in this run uses (S3 names: lower case, no `_`).
pub fn unique_bucket(prefix: &str) -> String {
    unique(prefix).to_ascii_lowercase().replace('_', "-")
}

// ---- the SDK, blocking ----

/// Runs `fut` to completion on the helpers' shared runtime. The helpers are called from
/// plain `#[test]`s and from inside `#[tokio::test]`s alike; inside a runtime a nested
/// `block_on` would panic, so there the future is driven from a scoped helper thread.
#[cfg(feature = "async")]
pub fn block_on<F>(fut: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use std::sync::OnceLock;
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("moto-helpers")
            .build()
            .expect("the test helpers' tokio runtime")
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| {
            s.spawn(|| rt.block_on(fut))
                .join()
                .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    } else {
        rt.block_on(fut)
    }
}

/// The SDK's HTTP client on rustls/ring (the crate's own choice; no aws-lc).
#[cfg(feature = "aws")]
fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// An S3 error answer as the SDK parsed it (a fault from the proxy, or moto's own).
#[cfg(feature = "s3")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Error {
    /// HTTP status (0 if no response arrived).
    pub status: u16,
    /// The AWS error code, e.g. `SlowDown`.
    pub code: Option<String>,
    /// The error message, if the body had one.
    pub message: Option<String>,
    /// The request id S3 (or the proxy) answered with.
    pub request_id: Option<String>,
}

#[cfg(feature = "s3")]
type SdkError<E> = aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>;

#[cfg(feature = "s3")]
impl<E: aws_sdk_s3::error::ProvideErrorMetadata> From<SdkError<E>> for S3Error {
    fn from(e: SdkError<E>) -> Self {
        use aws_sdk_s3::error::ProvideErrorMetadata;
        use aws_sdk_s3::operation::RequestId;
        S3Error {
            status: e.raw_response().map_or(0, |r| r.status().as_u16()),
            code: e.code().map(str::to_string),
            message: e.message().map(str::to_string),
            request_id: e.request_id().map(str::to_string),
        }
    }
}

/// The S3 client for `authority` (path-style, static test credentials, us-east-1), cached
/// per authority. Retries are off (a fault a test injects must reach the test, not be
/// retried away), and checksums are computed only where S3 requires them, so request
/// bodies are sent as they are (no `aws-chunked` framing for the proxy to count).
#[cfg(feature = "s3")]
pub fn s3_client(authority: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::{
        BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
        ResponseChecksumValidation,
    };
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CLIENTS: OnceLock<Mutex<HashMap<String, aws_sdk_s3::Client>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    clients
        .entry(authority.to_string())
        .or_insert_with(|| {
            let conf = aws_sdk_s3::Config::builder()
                .behavior_version(BehaviorVersion::latest())
                .http_client(http_client())
                .endpoint_url(format!("http://{authority}"))
                .force_path_style(true)
                .region(Region::new("us-east-1"))
                .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
                .retry_config(RetryConfig::disabled())
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
                .build();
            aws_sdk_s3::Client::from_conf(conf)
        })
        .clone()
}

/// The KMS client for `authority` in `region` (static test credentials, retries off).
#[cfg(feature = "kms")]
pub fn kms_client(authority: &str, region: &str) -> aws_sdk_kms::Client {
    use aws_sdk_kms::config::retry::RetryConfig;
    use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
    let conf = aws_sdk_kms::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client())
        .endpoint_url(format!("http://{authority}"))
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "moto"))
        .retry_config(RetryConfig::disabled())
        .build();
    aws_sdk_kms::Client::from_conf(conf)
}

/// Creates a KMS key in `region`; returns its ARN.
#[cfg(feature = "kms")]
pub fn create_key(authority: &str, region: &str) -> String {
    let c = kms_client(authority, region);
    let out = block_on(c.create_key().send())
        .unwrap_or_else(|e| panic!("KMS CreateKey in {region} failed: {e:?}"));
    out.key_metadata()
        .and_then(|m| m.arn())
        .expect("CreateKey ARN")
        .to_string()
}

/// Creates `alias/NAME` for `key` in `region`.
#[cfg(feature = "kms")]
pub fn create_alias(authority: &str, region: &str, alias: &str, key: &str) {
    let c = kms_client(authority, region);
    block_on(c.create_alias().alias_name(alias).target_key_id(key).send())
        .unwrap_or_else(|e| panic!("KMS CreateAlias {alias} in {region} failed: {e:?}"));
}

/// KMS Encrypt of `plaintext` under `key` in `region`; returns the ciphertext blob.
#[cfg(feature = "kms")]
pub fn kms_encrypt(authority: &str, region: &str, key: &str, plaintext: &[u8]) -> Vec<u8> {
    let c = kms_client(authority, region);
    let out = block_on(
        c.encrypt()
            .key_id(key)
            .plaintext(aws_sdk_kms::primitives::Blob::new(plaintext))
            .send(),
    )
    .unwrap_or_else(|e| panic!("KMS Encrypt under {key} in {region} failed: {e:?}"));
    out.ciphertext_blob()
        .expect("CiphertextBlob")
        .as_ref()
        .to_vec()
}

#[cfg(feature = "s3")]
fn is_404<E>(e: &SdkError<E>) -> bool {
    e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

/// Creates `bucket` (an existing bucket of ours is fine).
#[cfg(feature = "s3")]
pub fn create_bucket(authority: &str, bucket: &str) {
    let r = block_on(s3_client(authority).create_bucket().bucket(bucket).send());
    if let Err(e) = r {
        let e = S3Error::from(e);
        assert!(
            e.code.as_deref() == Some("BucketAlreadyOwnedByYou"),
            "S3 CreateBucket {bucket} failed: {e:?}"
        );
    }
}

/// Stores `body` at `key` with `x-amz-meta-NAME: VALUE` for each metadata pair; returns
/// the ETag (quotes included, as S3 sends it).
#[cfg(feature = "s3")]
pub fn put_object(
    authority: &str,
    bucket: &str,
    key: &str,
    body: &[u8],
    metadata: &[(&str, &str)],
) -> String {
    let mut req = s3_client(authority)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(body.to_vec().into());
    for (n, v) in metadata {
        req = req.metadata(*n, *v);
    }
    let out = block_on(req.send())
        .unwrap_or_else(|e| panic!("S3 PutObject {bucket}/{key} failed: {:?}", S3Error::from(e)));
    out.e_tag().unwrap_or_default().to_string()
}

/// The object's bytes, or `None` if it does not exist (404).
#[cfg(feature = "s3")]
pub fn get_object(authority: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let c = s3_client(authority);
    block_on(async {
        match c.get_object().bucket(bucket).key(key).send().await {
            Ok(out) => Some(
                out.body
                    .collect()
                    .await
                    .unwrap_or_else(|e| panic!("S3 GetObject {bucket}/{key} body: {e}"))
                    .to_vec(),
            ),
            Err(e) if is_404(&e) => None,
            Err(e) => panic!("S3 GetObject {bucket}/{key} failed: {:?}", S3Error::from(e)),
        }
    })
}

/// A GetObject with `Range: RANGE` (e.g. `bytes=0-99`): the body and the `Content-Range`
/// answered.
#[cfg(feature = "s3")]
pub fn get_object_range(
    authority: &str,
    bucket: &str,
    key: &str,
    range: &str,
) -> (Vec<u8>, Option<String>) {
    let c = s3_client(authority);
    block_on(async {
        let out = c
            .get_object()
            .bucket(bucket)
            .key(key)
            .range(range)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "S3 GetObject {bucket}/{key} {range} failed: {:?}",
                    S3Error::from(e)
                )
            });
        let content_range = out.content_range().map(str::to_string);
        let body = out
            .body
            .collect()
            .await
            .unwrap_or_else(|e| panic!("S3 GetObject {bucket}/{key} body: {e}"))
            .to_vec();
        (body, content_range)
    })
}

/// Object metadata as described by a HEAD whose answer was 200.
pub type HeadInfo = (u64, Vec<(String, String)>, Option<String>);

/// `(content-length, user metadata, content-type)` of the object, or `None` if it does not
/// exist. User metadata: the `x-amz-meta-*` headers, names lowercased without the prefix,
/// sorted by name.
#[cfg(feature = "s3")]
pub fn head_object(authority: &str, bucket: &str, key: &str) -> Option<HeadInfo> {
    let out = head(authority, bucket, key)?;
    let mut meta: Vec<(String, String)> = out
        .metadata()
        .map(|m| {
            m.iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    meta.sort();
    let len = out.content_length().expect("HeadObject content-length");
    Some((
        u64::try_from(len).expect("content-length"),
        meta,
        out.content_type().map(str::to_string),
    ))
}

/// The object's ETag (quotes included), or `None` if it does not exist.
#[cfg(feature = "s3")]
pub fn head_etag(authority: &str, bucket: &str, key: &str) -> Option<String> {
    head(authority, bucket, key).and_then(|o| o.e_tag().map(str::to_string))
}

/// The whole HeadObject answer (with `x-amz-checksum-mode: ENABLED`, so stored checksums
/// are included), or `None` if the object does not exist.
#[cfg(feature = "s3")]
pub fn head(
    authority: &str,
    bucket: &str,
    key: &str,
) -> Option<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
    let req = s3_client(authority)
        .head_object()
        .bucket(bucket)
        .key(key)
        .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled);
    match block_on(req.send()) {
        Ok(out) => Some(out),
        Err(e) if is_404(&e) => None,
        Err(e) => panic!(
            "S3 HeadObject {bucket}/{key} failed: {:?}",
            S3Error::from(e)
        ),
    }
}

/// Copies `src_key` onto `dst_key` in the same bucket, replacing the user metadata (and the
/// content type when given) — how metadata is changed on S3 without re-uploading.
#[cfg(feature = "s3")]
pub fn copy_object_replace_metadata(
    authority: &str,
    bucket: &str,
    src_key: &str,
    dst_key: &str,
    metadata: &[(&str, &str)],
    content_type: Option<&str>,
) {
    let mut req = s3_client(authority)
        .copy_object()
        .bucket(bucket)
        .key(dst_key)
        .copy_source(format!("{bucket}/{}", encode_key(src_key)))
        .metadata_directive(aws_sdk_s3::types::MetadataDirective::Replace);
    for (n, v) in metadata {
        req = req.metadata(*n, *v);
    }
    if let Some(ct) = content_type {
        req = req.content_type(ct);
    }
    block_on(req.send()).unwrap_or_else(|e| {
        panic!(
            "S3 CopyObject {bucket}/{src_key} → {dst_key} failed: {:?}",
            S3Error::from(e)
        )
    });
}

/// Deletes `key` (absent keys are fine, as on S3).
#[cfg(feature = "s3")]
pub fn delete_object(authority: &str, bucket: &str, key: &str) {
    block_on(
        s3_client(authority)
            .delete_object()
            .bucket(bucket)
            .key(key)
            .send(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "S3 DeleteObject {bucket}/{key} failed: {:?}",
            S3Error::from(e)
        )
    });
}

/// Turns versioning on for `bucket`.
#[cfg(feature = "s3")]
pub fn enable_versioning(authority: &str, bucket: &str) {
    use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
    let conf = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Enabled)
        .build();
    block_on(
        s3_client(authority)
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(conf)
            .send(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "S3 PutBucketVersioning {bucket} failed: {:?}",
            S3Error::from(e)
        )
    });
}

/// Replaces the object's tags with `tags`.
#[cfg(feature = "s3")]
pub fn put_object_tagging(authority: &str, bucket: &str, key: &str, tags: &[(&str, &str)]) {
    use aws_sdk_s3::types::{Tag, Tagging};
    let set: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build().expect("tag"))
        .collect();
    let tagging = Tagging::builder()
        .set_tag_set(Some(set))
        .build()
        .expect("tagging");
    block_on(
        s3_client(authority)
            .put_object_tagging()
            .bucket(bucket)
            .key(key)
            .tagging(tagging)
            .send(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "S3 PutObjectTagging {bucket}/{key} failed: {:?}",
            S3Error::from(e)
        )
    });
}

/// The object's tags, sorted by key.
#[cfg(feature = "s3")]
pub fn get_object_tagging(authority: &str, bucket: &str, key: &str) -> Vec<(String, String)> {
    let out = block_on(
        s3_client(authority)
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "S3 GetObjectTagging {bucket}/{key} failed: {:?}",
            S3Error::from(e)
        )
    });
    let mut tags: Vec<(String, String)> = out
        .tag_set()
        .iter()
        .map(|t| (t.key().to_string(), t.value().to_string()))
        .collect();
    tags.sort();
    tags
}

/// Keys under `prefix`, in S3's (byte) order, following continuation tokens.
#[cfg(feature = "s3")]
pub fn list_keys(authority: &str, bucket: &str, prefix: &str) -> Vec<String> {
    list_keys_paged(authority, bucket, prefix, 1000)
}

/// `list_keys` with `page` keys per ListObjectsV2 request (to exercise continuation).
#[cfg(feature = "s3")]
pub fn list_keys_paged(authority: &str, bucket: &str, prefix: &str, page: u32) -> Vec<String> {
    let c = s3_client(authority);
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = block_on(
            c.list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .max_keys(i32::try_from(page).expect("page size"))
                .set_continuation_token(token.take())
                .send(),
        )
        .unwrap_or_else(|e| panic!("S3 ListObjectsV2 {bucket} failed: {:?}", S3Error::from(e)));
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        if out.is_truncated() != Some(true) {
            return keys;
        }
        token = Some(
            out.next_continuation_token()
                .expect("NextContinuationToken")
                .to_string(),
        );
    }
}

/// In-progress multipart uploads in `bucket`: (key, upload id).
#[cfg(feature = "s3")]
pub fn list_multipart_uploads(authority: &str, bucket: &str) -> Vec<(String, String)> {
    let c = s3_client(authority);
    let mut uploads = Vec::new();
    let mut markers: (Option<String>, Option<String>) = (None, None);
    loop {
        let out = block_on(
            c.list_multipart_uploads()
                .bucket(bucket)
                .set_key_marker(markers.0.take())
                .set_upload_id_marker(markers.1.take())
                .send(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "S3 ListMultipartUploads {bucket} failed: {:?}",
                S3Error::from(e)
            )
        });
        for u in out.uploads() {
            uploads.push((
                u.key().expect("Upload Key").to_string(),
                u.upload_id().expect("Upload UploadId").to_string(),
            ));
        }
        if out.is_truncated() != Some(true) {
            return uploads;
        }
        markers = (
            out.next_key_marker().map(str::to_string),
            out.next_upload_id_marker().map(str::to_string),
        );
    }
}

/// Starts a multipart upload of `key`; returns its upload id.
#[cfg(feature = "s3")]
pub fn create_multipart_upload(authority: &str, bucket: &str, key: &str) -> String {
    let out = block_on(
        s3_client(authority)
            .create_multipart_upload()
            .bucket(bucket)
            .key(key)
            .send(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "S3 CreateMultipartUpload {bucket}/{key} failed: {:?}",
            S3Error::from(e)
        )
    });
    out.upload_id().expect("UploadId").to_string()
}

/// Uploads part `part_number`; its ETag, or the error answered (so fault tests can look at
/// failures).
#[cfg(feature = "s3")]
pub fn upload_part(
    authority: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
    body: &[u8],
) -> Result<String, S3Error> {
    let out = block_on(
        s3_client(authority)
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(i32::try_from(part_number).expect("part number"))
            .body(body.to_vec().into())
            .send(),
    )?;
    Ok(out.e_tag().expect("UploadPart ETag").to_string())
}

/// Completes an upload from (part number, ETag) pairs; the object's ETag, or the error
/// answered (the SDK also turns S3's error-inside-a-200 into an error).
#[cfg(feature = "s3")]
pub fn complete_multipart_upload(
    authority: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[(u32, String)],
) -> Result<String, S3Error> {
    use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
    let parts: Vec<CompletedPart> = parts
        .iter()
        .map(|(n, etag)| {
            CompletedPart::builder()
                .part_number(i32::try_from(*n).expect("part number"))
                .e_tag(etag)
                .build()
        })
        .collect();
    let out = block_on(
        s3_client(authority)
            .complete_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send(),
    )?;
    Ok(out
        .e_tag()
        .expect("CompleteMultipartUpload ETag")
        .to_string())
}

/// Aborts an upload; panics unless S3 accepts.
#[cfg(feature = "s3")]
pub fn abort_multipart_upload(authority: &str, bucket: &str, key: &str, upload_id: &str) {
    block_on(
        s3_client(authority)
            .abort_multipart_upload()
            .bucket(bucket)
            .key(key)
            .upload_id(upload_id)
            .send(),
    )
    .unwrap_or_else(|e| {
        panic!(
            "S3 AbortMultipartUpload {bucket}/{key} failed: {:?}",
            S3Error::from(e)
        )
    });
}
