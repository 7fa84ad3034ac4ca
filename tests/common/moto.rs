//! Raw HTTP to the local AWS emulator (moto), independent of the code under test: used to
//! prove the wiring, to create KMS keys for the KMS tests, and to create, inspect and
//! prepare S3 buckets and objects for the S3 tests (path-style, `/bucket/key`). moto does
//! not verify SigV4, so a dummy `Authorization` header only names the region and service.
//!
//! Every helper takes an `authority` (`host:port`): the emulator's ([`endpoint`]) or a
//! proxy's (`Proxy::authority()`), so the same calls can also go through fault injection.

use std::io::{Read, Write};
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

/// Sends one raw HTTP/1.1 request and returns (status code, body).
pub fn send(authority: &str, head: &str, body: &str) -> (u16, String) {
    let r = send_bytes(authority, head, body.as_bytes());
    (r.status, r.text())
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Headers in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked if it came chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as (lossy) UTF-8.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

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
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the emulator's response failed: {e}"));
    let is_head = head.starts_with("HEAD ");
    parse_response(&raw, is_head)
}

/// Parses a complete HTTP/1.1 response read until the connection closed.
pub fn parse_response(raw: &[u8], is_head: bool) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| {
            panic!(
                "malformed HTTP response: {:?}",
                String::from_utf8_lossy(raw)
            )
        });
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status code in response: {head:?}"));
    if (100..200).contains(&status) {
        return parse_response(rest, is_head); // an interim answer, e.g. 100 Continue
    }
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    let body = if is_head || status == 204 || status == 304 {
        Vec::new()
    } else if get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked")) {
        dechunk(rest)
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        assert!(
            rest.len() >= n,
            "response body truncated: {} of {n} bytes",
            rest.len()
        );
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    Response {
        status,
        headers,
        body,
    }
}

/// Decodes a complete `Transfer-Encoding: chunked` body.
pub fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let eol = raw
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let line = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        raw = &raw[eol + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[..size]);
        assert_eq!(&raw[size..size + 2], b"\r\n", "chunk not followed by CRLF");
        raw = &raw[size + 2..];
    }
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

/// One KMS JSON call in `region`; panics unless it answers 200.
pub fn kms(authority: &str, region: &str, op: &str, body: &serde_json::Value) -> serde_json::Value {
    let head = format!(
        "POST / HTTP/1.1\r\nX-Amz-Target: TrentService.{op}\r\n\
         Content-Type: application/x-amz-json-1.1\r\n{}",
        auth_in(region, "kms")
    );
    let (status, text) = send(authority, &head, &body.to_string());
    assert_eq!(status, 200, "KMS {op} in {region} failed: {text}");
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

/// Creates a KMS key in `region`; returns its ARN.
pub fn create_key(authority: &str, region: &str) -> String {
    let v = kms(authority, region, "CreateKey", &serde_json::json!({}));
    v["KeyMetadata"]["Arn"]
        .as_str()
        .expect("CreateKey ARN")
        .to_string()
}

/// Creates `alias/NAME` for `key` in `region`.
pub fn create_alias(authority: &str, region: &str, alias: &str, key: &str) {
    kms(
        authority,
        region,
        "CreateAlias",
        &serde_json::json!({"AliasName": alias, "TargetKeyId": key}),
    );
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

// ---- S3 (path-style) ----

/// Percent-encodes an object key for a path: everything but unreserved characters and `/`.
pub fn encode_key(key: &str) -> String {
    encode(key, b"-._~/")
}

/// Percent-encodes a query-string value (`/` included).
pub fn encode_query(value: &str) -> String {
    encode(value, b"-._~")
}

fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/bucket/key`, percent-encoded.
pub fn object_path(bucket: &str, key: &str) -> String {
    format!("/{bucket}/{}", encode_key(key))
}

/// One raw S3 request in us-east-1: `target` is the already-encoded path and query,
/// `headers` extra header lines. Returns whatever the server answered.
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

fn expect_status(r: &Response, want: u16, what: &str) {
    assert_eq!(
        r.status,
        want,
        "S3 {what} answered {}: {}",
        r.status,
        r.text()
    );
}

/// A bucket name no other test in this run uses (S3 names: lower case, no `_`).
pub fn unique_bucket(prefix: &str) -> String {
    unique(prefix).to_ascii_lowercase().replace('_', "-")
}

/// Creates `bucket` (an existing bucket of ours is fine).
pub fn create_bucket(authority: &str, bucket: &str) {
    let r = s3(authority, "PUT", &format!("/{bucket}"), &[], b"");
    if r.status == 409 && r.text().contains("BucketAlreadyOwnedByYou") {
        return;
    }
    expect_status(&r, 200, &format!("CreateBucket {bucket}"));
}

/// Stores `body` at `key` with `x-amz-meta-NAME: VALUE` for each metadata pair; returns
/// the ETag (quotes included, as S3 sends it).
pub fn put_object(
    authority: &str,
    bucket: &str,
    key: &str,
    body: &[u8],
    metadata: &[(&str, &str)],
) -> String {
    let names: Vec<String> = metadata
        .iter()
        .map(|(n, _)| format!("x-amz-meta-{n}"))
        .collect();
    let headers: Vec<(&str, &str)> = names
        .iter()
        .zip(metadata)
        .map(|(n, (_, v))| (n.as_str(), *v))
        .collect();
    let r = s3(authority, "PUT", &object_path(bucket, key), &headers, body);
    expect_status(&r, 200, &format!("PutObject {bucket}/{key}"));
    r.header("etag").unwrap_or_default().to_string()
}

/// The object's bytes, or `None` if it does not exist (404).
pub fn get_object(authority: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let r = s3(authority, "GET", &object_path(bucket, key), &[], b"");
    if r.status == 404 {
        return None;
    }
    expect_status(&r, 200, &format!("GetObject {bucket}/{key}"));
    Some(r.body)
}

/// A GetObject with `Range: RANGE` (e.g. `bytes=0-99`); returns the raw response (206 for a
/// satisfiable range).
pub fn get_object_range(authority: &str, bucket: &str, key: &str, range: &str) -> Response {
    s3(
        authority,
        "GET",
        &object_path(bucket, key),
        &[("Range", range)],
        b"",
    )
}

/// Object metadata as described by a HEAD whose answer was 200.
pub type HeadInfo = (u64, Vec<(String, String)>, Option<String>);

/// `(content-length, user metadata, content-type)` of the object, or `None` if it does not
/// exist. User metadata: the `x-amz-meta-*` headers, names lowercased without the prefix,
/// sorted by name.
pub fn head_object(authority: &str, bucket: &str, key: &str) -> Option<HeadInfo> {
    let r = s3(authority, "HEAD", &object_path(bucket, key), &[], b"");
    if r.status == 404 {
        return None;
    }
    expect_status(&r, 200, &format!("HeadObject {bucket}/{key}"));
    let len = r
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .expect("HeadObject content-length");
    let mut meta: Vec<(String, String)> = r
        .headers
        .iter()
        .filter_map(|(n, v)| Some((n.strip_prefix("x-amz-meta-")?.to_string(), v.clone())))
        .collect();
    meta.sort();
    Some((len, meta, r.header("content-type").map(str::to_string)))
}

/// Copies `src_key` onto `dst_key` in the same bucket, replacing the user metadata (and the
/// content type when given) — how metadata is changed on S3 without re-uploading.
pub fn copy_object_replace_metadata(
    authority: &str,
    bucket: &str,
    src_key: &str,
    dst_key: &str,
    metadata: &[(&str, &str)],
    content_type: Option<&str>,
) {
    let source = object_path(bucket, src_key);
    let names: Vec<String> = metadata
        .iter()
        .map(|(n, _)| format!("x-amz-meta-{n}"))
        .collect();
    let mut headers: Vec<(&str, &str)> = vec![
        ("x-amz-copy-source", &source),
        ("x-amz-metadata-directive", "REPLACE"),
    ];
    headers.extend(
        names
            .iter()
            .zip(metadata)
            .map(|(n, (_, v))| (n.as_str(), *v)),
    );
    if let Some(ct) = content_type {
        headers.push(("Content-Type", ct));
    }
    let r = s3(
        authority,
        "PUT",
        &object_path(bucket, dst_key),
        &headers,
        b"",
    );
    expect_status(
        &r,
        200,
        &format!("CopyObject {bucket}/{src_key} → {dst_key}"),
    );
    assert!(
        !r.text().contains("<Error>"),
        "CopyObject failed inside a 200: {}",
        r.text()
    );
}

/// Deletes `key` (absent keys are fine, as on S3).
pub fn delete_object(authority: &str, bucket: &str, key: &str) {
    let r = s3(authority, "DELETE", &object_path(bucket, key), &[], b"");
    expect_status(&r, 204, &format!("DeleteObject {bucket}/{key}"));
}

/// Keys under `prefix`, in S3's (byte) order, following continuation tokens.
pub fn list_keys(authority: &str, bucket: &str, prefix: &str) -> Vec<String> {
    list_keys_paged(authority, bucket, prefix, 1000)
}

/// `list_keys` with `page` keys per ListObjectsV2 request (to exercise continuation).
pub fn list_keys_paged(authority: &str, bucket: &str, prefix: &str, page: u32) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut target = format!(
            "/{bucket}?list-type=2&max-keys={page}&prefix={}",
            encode_query(prefix)
        );
        if let Some(t) = &token {
            target.push_str(&format!("&continuation-token={}", encode_query(t)));
        }
        let r = s3(authority, "GET", &target, &[], b"");
        expect_status(&r, 200, &format!("ListObjectsV2 {bucket}"));
        let text = r.text();
        keys.extend(
            xml_elements(&text, "Contents")
                .iter()
                .filter_map(|c| xml_value(c, "Key")),
        );
        if xml_value(&text, "IsTruncated").as_deref() != Some("true") {
            return keys;
        }
        token = Some(xml_value(&text, "NextContinuationToken").expect("NextContinuationToken"));
    }
}

/// In-progress multipart uploads in `bucket`: (key, upload id).
pub fn list_multipart_uploads(authority: &str, bucket: &str) -> Vec<(String, String)> {
    let mut uploads = Vec::new();
    let mut markers: Option<(String, String)> = None;
    loop {
        let mut target = format!("/{bucket}?uploads");
        if let Some((k, u)) = &markers {
            target.push_str(&format!(
                "&key-marker={}&upload-id-marker={}",
                encode_query(k),
                encode_query(u)
            ));
        }
        let r = s3(authority, "GET", &target, &[], b"");
        expect_status(&r, 200, &format!("ListMultipartUploads {bucket}"));
        let text = r.text();
        for u in xml_elements(&text, "Upload") {
            uploads.push((
                xml_value(u, "Key").expect("Upload Key"),
                xml_value(u, "UploadId").expect("Upload UploadId"),
            ));
        }
        if xml_value(&text, "IsTruncated").as_deref() != Some("true") {
            return uploads;
        }
        markers = Some((
            xml_value(&text, "NextKeyMarker").expect("NextKeyMarker"),
            xml_value(&text, "NextUploadIdMarker").expect("NextUploadIdMarker"),
        ));
    }
}

/// Starts a multipart upload of `key`; returns its upload id.
pub fn create_multipart_upload(authority: &str, bucket: &str, key: &str) -> String {
    let target = format!("{}?uploads", object_path(bucket, key));
    let r = s3(authority, "POST", &target, &[], b"");
    expect_status(&r, 200, &format!("CreateMultipartUpload {bucket}/{key}"));
    xml_value(&r.text(), "UploadId").expect("UploadId")
}

/// Uploads part `part_number`; returns the raw response (200 with an `etag` header on
/// success) so fault tests can look at failures.
pub fn upload_part(
    authority: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    part_number: u32,
    body: &[u8],
) -> Response {
    let target = format!(
        "{}?partNumber={part_number}&uploadId={}",
        object_path(bucket, key),
        encode_query(upload_id)
    );
    s3(authority, "PUT", &target, &[], body)
}

/// Completes an upload from (part number, ETag) pairs; returns the raw response (S3 can
/// answer an error inside a 200, so check the body too, e.g. with [`xml_value`]).
pub fn complete_multipart_upload(
    authority: &str,
    bucket: &str,
    key: &str,
    upload_id: &str,
    parts: &[(u32, String)],
) -> Response {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            xml_escape(etag)
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    let target = format!(
        "{}?uploadId={}",
        object_path(bucket, key),
        encode_query(upload_id)
    );
    s3(
        authority,
        "POST",
        &target,
        &[("Content-Type", "application/xml")],
        xml.as_bytes(),
    )
}

/// Aborts an upload; panics unless S3 answers 204.
pub fn abort_multipart_upload(authority: &str, bucket: &str, key: &str, upload_id: &str) {
    let target = format!(
        "{}?uploadId={}",
        object_path(bucket, key),
        encode_query(upload_id)
    );
    let r = s3(authority, "DELETE", &target, &[], b"");
    expect_status(&r, 204, &format!("AbortMultipartUpload {bucket}/{key}"));
}

// ---- minimal XML for S3 answers (flat, attribute-free elements) ----

/// The inner text of every `<tag>…</tag>` in `xml` (not nested in one another).
pub fn xml_elements<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(&after[..j]);
        rest = &after[j + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>…</tag>` in `xml` (`<tag/>` is `""`).
pub fn xml_value(xml: &str, tag: &str) -> Option<String> {
    if let Some(v) = xml_elements(xml, tag).first() {
        return Some(xml_unescape(v));
    }
    xml.contains(&format!("<{tag}/>")).then(String::new)
}

pub fn xml_unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';') else { break };
        let entity = &rest[1..end];
        let ch = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .and_then(|h| u32::from_str_radix(h, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                .and_then(char::from_u32),
        };
        match ch {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
