//! Proves the local AWS emulator wiring used by `scripts/test.sh`: when
//! `AWS_ENDPOINT_URL` is set, raw KMS and S3 requests to it must succeed.
//!
//! Without `AWS_ENDPOINT_URL` these tests are skipped, unless
//! `SEALSTREAM_REQUIRE_EMULATOR=1` (set by `scripts/test.sh`), which turns a
//! missing endpoint into a failure. moto does not verify SigV4 signatures, so a
//! dummy `Authorization` header is enough (it only names the region and service).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// `host:port` of the emulator, or `None` if the test should be skipped.
fn endpoint(test: &str) -> Option<String> {
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
fn send(authority: &str, head: &str, body: &str) -> (u16, String) {
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

fn dummy_auth(service: &str) -> String {
    format!(
        "Authorization: AWS4-HMAC-SHA256 \
         Credential=testing/20260101/us-east-1/{service}/aws4_request, \
         SignedHeaders=host, Signature=00"
    )
}

#[test]
fn emulator_kms_list_keys() {
    let Some(authority) = endpoint("emulator_kms_list_keys") else {
        return;
    };
    let head = format!(
        "POST / HTTP/1.1\r\nX-Amz-Target: TrentService.ListKeys\r\n\
         Content-Type: application/x-amz-json-1.1\r\n{}",
        dummy_auth("kms")
    );
    let (status, body) = send(&authority, &head, "{}");
    assert_eq!(status, 200, "KMS ListKeys failed: {body}");
    assert!(
        body.contains("\"Keys\""),
        "unexpected ListKeys body: {body}"
    );
}

#[test]
fn emulator_s3_list_buckets() {
    let Some(authority) = endpoint("emulator_s3_list_buckets") else {
        return;
    };
    let head = format!("GET / HTTP/1.1\r\n{}", dummy_auth("s3"));
    let (status, body) = send(&authority, &head, "");
    assert_eq!(status, 200, "S3 ListBuckets failed: {body}");
    assert!(
        body.contains("ListAllMyBucketsResult"),
        "unexpected ListBuckets body: {body}"
    );
}
