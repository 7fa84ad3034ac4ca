//! Proves the local AWS emulator wiring used by `scripts/test.sh`: when
//! `AWS_ENDPOINT_URL` is set, raw KMS and S3 requests to it must succeed.
//!
//! Like every emulator test they are `#[ignore = "needs the emulator ..."]` (plain
//! `cargo test` reports them as ignored); `scripts/test.sh` runs them with
//! `--include-ignored`, and without `AWS_ENDPOINT_URL` they fail. moto does not verify SigV4 signatures, so a
//! dummy `Authorization` header is enough (it only names the region and service).

use crate::common;

use common::moto::{dummy_auth, endpoint, send};

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
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
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
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
