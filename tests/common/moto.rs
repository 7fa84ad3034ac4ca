//! Raw HTTP to the local AWS emulator (moto), independent of the code under test: used to
//! prove the wiring and to create KMS keys for the KMS tests. moto does not verify SigV4,
//! so a dummy `Authorization` header only names the region and service.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `host:port` of the emulator, or `None` if the test should be skipped.
pub fn endpoint(test: &str) -> Option<String> {
    let url = std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let Some(url) = url else {
        if std::env::var("SEALSTREAM_REQUIRE_EMULATOR").as_deref() == Ok("1") {
            panic!(
                "{test}: AWS_ENDPOINT_URL is not set but SEALSTREAM_REQUIRE_EMULATOR=1; \
                 start the emulator (scripts/emulator.sh start) or run scripts/test.sh"
            );
        }
        eprintln!("{test}: skipped: the emulator is not running (AWS_ENDPOINT_URL is not set)");
        return None;
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
    let addr = authority
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {authority}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{authority} resolved to no address"));
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot connect to the emulator at {authority}: {e}"));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    let request = format!(
        "{head}\r\nHost: {authority}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("reading the emulator's response failed: {e}"));
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("malformed HTTP response: {text:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status code in response: {head:?}"));
    (status, body.to_string())
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
