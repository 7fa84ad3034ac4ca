//! Self-tests of the S3 test harness: the moto S3 helpers (tests/it/common/moto.rs) and the
//! fault-injecting proxy's S3 support (tests/it/common/proxy.rs) — operation naming, faults
//! with S3's XML error shape, per-part failures, delays, byte and range accounting, and
//! streaming of large, chunked and SDK-encoded bodies.
//!
//! The tests that need the emulator are `#[ignore = "needs the emulator ..."]` and fail
//! without `AWS_ENDPOINT_URL`, like the other emulator tests (docs/TESTING.md).
// Compiled only with the `s3` feature: this file drives the S3 SDK directly.

use crate::common;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::moto::*;
use common::proxy::{Fault, Proxy, operation_name};
use common::{data, http1};

const MIB: usize = 1 << 20;

fn bucket() -> String {
    unique("harness")
}

/// (upstream authority, proxy, bucket created directly on the emulator)
fn setup(test: &str) -> Option<(String, Proxy, String)> {
    let up = endpoint(test)?;
    let b = bucket();
    create_bucket(&up, &b);
    let p = Proxy::start(&up);
    Some((up, p, b))
}

// ---- no emulator needed ----

/// (method, target, headers, expected operation)
type NameCase<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn operation_names_follow_the_s3_rest_api() {
    let copy = [("x-amz-copy-source", "/b/src")];
    let cases: &[NameCase] = &[
        ("GET", "/", &[], "ListBuckets"),
        ("PUT", "/b", &[], "CreateBucket"),
        ("PUT", "/b/", &[], "CreateBucket"),
        ("HEAD", "/b", &[], "HeadBucket"),
        ("DELETE", "/b", &[], "DeleteBucket"),
        ("GET", "/b?list-type=2&prefix=a%2F", &[], "ListObjectsV2"),
        ("GET", "/b?prefix=a&max-keys=5", &[], "ListObjects"),
        ("GET", "/b", &[], "ListObjects"),
        ("GET", "/b?uploads", &[], "ListMultipartUploads"),
        ("GET", "/b?uploads=&prefix=x", &[], "ListMultipartUploads"),
        ("GET", "/b?location", &[], "GetBucketLocation"),
        ("GET", "/b?versioning", &[], "GetBucketVersioning"),
        ("PUT", "/b?object-lock", &[], "PutBucketObjectLock"),
        ("POST", "/b?delete", &[], "DeleteObjects"),
        ("HEAD", "/b/k", &[], "HeadObject"),
        ("GET", "/b/dir/k.seal", &[], "GetObject"),
        ("GET", "/b/k?versionId=3", &[], "GetObject"),
        ("PUT", "/b/dir/k", &[], "PutObject"),
        ("PUT", "/b/k", &copy, "CopyObject"),
        ("POST", "/b/k?uploads", &[], "CreateMultipartUpload"),
        ("POST", "/b/k?uploads=", &[], "CreateMultipartUpload"),
        ("PUT", "/b/k?partNumber=2&uploadId=u", &[], "UploadPart"),
        ("PUT", "/b/k?uploadId=u&partNumber=2", &[], "UploadPart"),
        (
            "PUT",
            "/b/k?partNumber=2&uploadId=u",
            &copy,
            "UploadPartCopy",
        ),
        ("POST", "/b/k?uploadId=u", &[], "CompleteMultipartUpload"),
        ("DELETE", "/b/k?uploadId=u", &[], "AbortMultipartUpload"),
        ("GET", "/b/k?uploadId=u", &[], "ListParts"),
        ("DELETE", "/b/k", &[], "DeleteObject"),
        ("PUT", "/b/k?tagging", &[], "PutObjectTagging"),
        // The SDK names its operation itself (`?x-id=`), which wins.
        ("GET", "/b/k?x-id=GetObject", &[], "GetObject"),
        ("PUT", "/b/k?x-id=PutObject", &copy, "PutObject"),
        (
            "PUT",
            "/b/k?partNumber=1&uploadId=u&x-id=UploadPart",
            &[],
            "UploadPart",
        ),
        // KMS: the target header.
        (
            "POST",
            "/",
            &[("X-Amz-Target", "TrentService.GenerateDataKey")],
            "GenerateDataKey",
        ),
        (
            "post",
            "/",
            &[("x-amz-target", "TrentService.Decrypt")],
            "Decrypt",
        ),
    ];
    for (method, target, headers, want) in cases {
        assert_eq!(
            operation_name(method, target, headers),
            *want,
            "{method} {target} {headers:?}"
        );
    }
}

/// A one-shot upstream that captures the raw request (head and framed body) and answers
/// `response` verbatim.
fn fake_upstream(response: Vec<u8>) -> (String, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let authority = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut r = BufReader::new(conn.try_clone().unwrap());
        let req = http1::read_request_head(&mut r)
            .unwrap()
            .expect("a request");
        // The body as framed on the wire (chunk sizes, extensions and trailers included).
        let mut body = Vec::new();
        http1::copy_body(&mut r, &mut body, req.request_framing().unwrap()).unwrap();
        let head = String::from_utf8_lossy(&req.raw).into_owned();
        let mut w = conn;
        w.write_all(&response).unwrap();
        tx.send((head, body)).unwrap();
    });
    (authority, rx)
}

fn raw_exchange(authority: &str, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(authority).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    out
}

#[test]
fn chunked_bodies_pass_through_with_their_framing_both_ways() {
    // Upstream answers a chunked body with an extension and a trailer.
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
                 5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n"
        .to_vec();
    let (up, rx) = fake_upstream(resp);
    let p = Proxy::start(&up);
    let body =
        "4\r\nabcd\r\n3;chunk-signature=00\r\nefg\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\n";
    let request = format!(
        "PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 999\r\n\
         Connection: keep-alive\r\n\r\n{body}"
    );
    let raw = raw_exchange(&p.authority(), request.as_bytes());
    let (head, seen_body) = rx.recv_timeout(Duration::from_secs(30)).unwrap();

    assert_eq!(
        String::from_utf8_lossy(&seen_body),
        body,
        "chunked body verbatim"
    );
    let lower = head.to_ascii_lowercase();
    assert!(
        !lower.contains("content-length"),
        "Content-Length dropped with chunked framing: {head}"
    );
    assert!(lower.contains("connection: close\r\n"), "{head}");
    assert!(!lower.contains("keep-alive"), "{head}");

    let text = String::from_utf8_lossy(&raw).into_owned();
    assert!(text.contains("Transfer-Encoding: chunked"), "{text}");
    assert!(text.contains("Connection: close"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
    assert!(text.ends_with("0\r\nx-trailer: t\r\n\r\n"), "{text}");
    let r = parse_response(&raw, false);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"hello, world");

    assert_eq!(p.calls("PutObject"), 1);
    assert_eq!(p.response_bytes("PutObject"), 12, "payload, not framing");
    let seen = p.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].status, seen[0].request_bytes), (200, 7));
}

#[test]
fn expect_continue_is_answered_by_the_proxy() {
    let (up, rx) =
        fake_upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nETag: \"e\"\r\n\r\nok".to_vec());
    let p = Proxy::start(&up);
    let mut s = TcpStream::connect(p.authority()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"PUT /b/k?partNumber=1&uploadId=u HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\
          Expect: 100-continue\r\n\r\n",
    )
    .unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"abc").unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    let r = parse_response(&rest, false);
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok"[..]));
    let (head, body) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
    assert_eq!(body, b"abc");
    assert!(!head.to_ascii_lowercase().contains("expect"), "{head}");
    assert_eq!(p.calls("UploadPart"), 1);
}

// ---- against the emulator ----

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn object_helpers_put_head_get_list_copy_delete() {
    let Some((_up, p, b)) = setup("object_helpers_put_head_get_list_copy_delete") else {
        return;
    };
    // Everything through the proxy, so the operation names are checked on real traffic too.
    let a = p.authority();
    create_bucket(&a, &b); // already ours: fine
    assert_eq!(p.calls("CreateBucket"), 1);
    assert_eq!(s3(&a, "HEAD", &format!("/{b}"), &[], b"").status, 200);
    assert_eq!(p.calls("HeadBucket"), 1);

    let odd = "docs/sub/b c+d&e=f ü%.bin";
    let keys = ["docs/a.txt", odd, "docs/z", "other/x"];
    for (i, k) in keys.iter().enumerate() {
        let etag = put_object(
            &a,
            &b,
            k,
            &data(1000 + i),
            &[("Sealstream-Header", "abc"), ("mode", "v1")],
        );
        assert!(etag.starts_with('"') && etag.len() > 2, "{etag}");
    }
    assert_eq!(p.calls("PutObject"), 4);

    let (len, meta, ct) = head_object(&a, &b, odd).expect("exists");
    assert_eq!(len, 1001);
    assert_eq!(
        meta,
        [
            ("mode".to_string(), "v1".to_string()),
            ("sealstream-header".to_string(), "abc".to_string())
        ]
    );
    assert!(ct.is_some(), "moto names a content type");
    assert_eq!(get_object(&a, &b, odd).as_deref(), Some(&data(1001)[..]));
    assert_eq!(get_object(&a, &b, "docs/missing"), None);
    assert_eq!(head_object(&a, &b, "docs/missing"), None);
    assert_eq!(p.calls("HeadObject"), 2);
    assert_eq!(p.calls("GetObject"), 2);

    let want = vec!["docs/a.txt".to_string(), odd.into(), "docs/z".into()];
    assert_eq!(list_keys(&a, &b, "docs/"), want);
    assert_eq!(p.calls("ListObjectsV2"), 1);
    assert_eq!(list_keys_paged(&a, &b, "docs/", 1), want);
    assert!(p.calls("ListObjectsV2") >= 4, "one key per page");
    assert_eq!(
        list_keys(&a, &b, ""),
        [&want[..], &["other/x".into()]].concat()
    );
    assert!(list_keys(&a, &b, "nope/").is_empty());

    // Copy with new metadata and content type, to another key and onto itself.
    copy_object_replace_metadata(
        &a,
        &b,
        "docs/a.txt",
        "docs/a copy.txt",
        &[("k", "v")],
        Some("application/x-sealstream"),
    );
    copy_object_replace_metadata(&a, &b, "docs/z", "docs/z", &[("rewrapped", "1")], None);
    assert_eq!(p.calls("CopyObject"), 2);
    let (len, meta, ct) = head_object(&a, &b, "docs/a copy.txt").unwrap();
    assert_eq!(len, 1000);
    assert_eq!(meta, [("k".to_string(), "v".to_string())]);
    assert_eq!(ct.as_deref(), Some("application/x-sealstream"));
    assert_eq!(get_object(&a, &b, "docs/a copy.txt").unwrap(), data(1000));
    let (_, meta, _) = head_object(&a, &b, "docs/z").unwrap();
    assert_eq!(meta, [("rewrapped".to_string(), "1".to_string())]);
    assert_eq!(get_object(&a, &b, "docs/z").unwrap(), data(1002));

    delete_object(&a, &b, "docs/a.txt");
    assert_eq!(p.calls("DeleteObject"), 1);
    assert_eq!(get_object(&a, &b, "docs/a.txt"), None);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn multipart_through_the_proxy_retries_an_injected_part_failure() {
    let Some((up, p, b)) = setup("multipart_through_the_proxy_retries_an_injected_part_failure")
    else {
        return;
    };
    let a = p.authority();
    let key = "dir/multi part+1.seal";
    let whole = data(2 * 5 * MIB + MIB + 7);
    let chunks: Vec<&[u8]> = whole.chunks(5 * MIB).collect();
    assert_eq!(chunks.len(), 3);

    let id = create_multipart_upload(&a, &b, key);
    assert!(list_multipart_uploads(&up, &b).contains(&(key.to_string(), id.clone())));
    p.fail_part(2, Some(1), Fault::slow_down());

    let mut parts = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let n = i as u32 + 1;
        let mut r = upload_part(&a, &b, key, &id, n, chunk);
        if n == 2 {
            // The SDK parses the proxy's fault as S3's own: status, code, message, id.
            let e = r.expect_err("injected");
            assert_eq!(e.status, 503, "{e:?}");
            assert_eq!(e.code.as_deref(), Some("SlowDown"), "{e:?}");
            assert!(e.message.is_some(), "{e:?}");
            let rid = e.request_id.as_deref().expect("request id");
            assert!(rid.starts_with("PROXY"), "{e:?}");
            r = upload_part(&a, &b, key, &id, n, chunk); // the retry
        }
        let etag = r.unwrap_or_else(|e| panic!("part {n}: {e:?}"));
        parts.push((n, etag));
    }
    assert_eq!(p.calls("UploadPart"), 4, "3 parts + 1 retry");
    let statuses: Vec<(u16, bool, u64)> = p
        .requests()
        .iter()
        .filter(|s| s.op == "UploadPart")
        .map(|s| (s.status, s.faulted, s.request_bytes))
        .collect();
    let five = 5 * MIB as u64;
    assert_eq!(
        statuses,
        [
            (200, false, five),
            (503, true, five),
            (200, false, five),
            (200, false, MIB as u64 + 7)
        ],
        "the faulted part's body was read in full before the answer"
    );

    let etag = complete_multipart_upload(&a, &b, key, &id, &parts).expect("complete");
    assert!(etag.ends_with("-3\""), "multipart ETag {etag}");
    assert_eq!(p.calls("CreateMultipartUpload"), 1);
    assert_eq!(p.calls("CompleteMultipartUpload"), 1);
    assert!(
        !list_multipart_uploads(&up, &b)
            .iter()
            .any(|(_, u)| *u == id)
    );
    assert_eq!(head_object(&up, &b, key).unwrap().0, whole.len() as u64);
    assert!(get_object(&up, &b, key).unwrap() == whole, "content");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn small_parts_fail_at_complete_and_abort_clears_the_upload() {
    let Some((up, p, b)) = setup("small_parts_fail_at_complete_and_abort_clears_the_upload") else {
        return;
    };
    let a = p.authority();
    let key = "small/parts";
    let id = create_multipart_upload(&a, &b, key);
    let other = create_multipart_upload(&up, &b, "small/other");
    let mut parts = Vec::new();
    for n in 1..=2 {
        let etag = upload_part(&a, &b, key, &id, n, &data(1024)).expect("part");
        parts.push((n, etag));
    }
    // moto enforces S3's 5 MiB minimum for every part but the last.
    let e = complete_multipart_upload(&a, &b, key, &id, &parts).expect_err("too small");
    assert_eq!(e.status, 400, "{e:?}");
    assert_eq!(e.code.as_deref(), Some("EntityTooSmall"), "{e:?}");

    let mut listed = list_multipart_uploads(&a, &b);
    listed.sort();
    let mut want = vec![
        ("small/other".to_string(), other.clone()),
        (key.to_string(), id.clone()),
    ];
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(p.calls("ListMultipartUploads"), 1);

    abort_multipart_upload(&a, &b, key, &id);
    abort_multipart_upload(&up, &b, "small/other", &other);
    assert_eq!(p.calls("AbortMultipartUpload"), 1);
    assert!(list_multipart_uploads(&up, &b).is_empty());
    assert_eq!(get_object(&up, &b, key), None);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn ranged_gets_are_recorded_and_their_bytes_counted() {
    let Some((up, p, b)) = setup("ranged_gets_are_recorded_and_their_bytes_counted") else {
        return;
    };
    let a = p.authority();
    let obj = data(MIB);
    put_object(&up, &b, "r.seal", &obj, &[]);

    let (body, content_range) = get_object_range(&a, &b, "r.seal", "bytes=100-199");
    assert_eq!(body, &obj[100..200]);
    assert_eq!(content_range, Some(format!("bytes 100-199/{MIB}")));
    assert_eq!(p.response_bytes("GetObject"), 100);
    let (body, _) = get_object_range(&a, &b, "r.seal", "bytes=-10");
    assert_eq!(body, &obj[MIB - 10..]);
    assert_eq!(p.response_bytes("GetObject"), 110);
    assert_eq!(p.ranges(), ["bytes=100-199", "bytes=-10"]);

    // An unranged GET is counted but not listed; a HEAD returns no body bytes.
    assert_eq!(get_object(&a, &b, "r.seal").unwrap(), obj);
    assert_eq!(p.response_bytes("GetObject"), 110 + MIB as u64);
    assert_eq!(p.calls("GetObject"), 3);
    assert_eq!(p.ranges().len(), 2);
    assert_eq!(head_object(&a, &b, "r.seal").unwrap().0, MIB as u64);
    assert_eq!(p.response_bytes("HeadObject"), 0);

    p.reset_counters();
    assert_eq!(p.calls("GetObject"), 0);
    assert_eq!(p.response_bytes("GetObject"), 0);
    assert!(p.ranges().is_empty());
    assert!(p.requests().is_empty());
    let (body, _) = get_object_range(&a, &b, "r.seal", "bytes=0-0");
    assert_eq!(body, &obj[..1]);
    assert_eq!(
        (p.calls("GetObject"), p.response_bytes("GetObject")),
        (1, 1)
    );
    assert_eq!(p.ranges(), ["bytes=0-0"]);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn faults_have_the_shape_of_each_service() {
    let Some((up, p, b)) = setup("faults_have_the_shape_of_each_service") else {
        return;
    };
    let a = p.authority();

    // S3: XML body, and the faulted request never reaches moto.
    p.fail_first("PutObject", 1, Fault::slow_down());
    let r = s3(&a, "PUT", &object_path(&b, "f/one"), &[], b"body");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("content-type"), Some("application/xml"));
    assert!(r.text().contains("<Code>SlowDown</Code>"), "{}", r.text());
    assert_eq!(get_object(&up, &b, "f/one"), None);
    put_object(&a, &b, "f/one", b"body", &[]);
    assert_eq!(get_object(&up, &b, "f/one").unwrap(), b"body");
    assert_eq!(p.calls("PutObject"), 2);

    // A HEAD fault has only its status.
    p.fail_first("HeadObject", 1, Fault::aws(500, "InternalError"));
    let r = s3(&a, "HEAD", &object_path(&b, "f/one"), &[], b"");
    assert_eq!((r.status, r.body.len()), (500, 0));
    assert_eq!(head_object(&a, &b, "f/one").unwrap().0, 4);

    // Per key: the decoded bucket/key path.
    put_object(&up, &b, "secret/x y", b"s", &[]);
    put_object(&up, &b, "public/x", b"p", &[]);
    p.fail_key("GetObject", "secret/x y", Fault::aws(403, "AccessDenied"));
    for _ in 0..2 {
        let r = s3(&a, "GET", &object_path(&b, "secret/x y"), &[], b"");
        assert_eq!(r.status, 403);
        assert!(
            r.text().contains("<Code>AccessDenied</Code>"),
            "{}",
            r.text()
        );
    }
    assert_eq!(get_object(&a, &b, "public/x").unwrap(), b"p");

    // Per part, always: part 1 keeps failing, part 2 is untouched.
    let id = create_multipart_upload(&a, &b, "f/mp");
    p.fail_part(1, None, Fault::aws(500, "InternalError"));
    for _ in 0..3 {
        let e = upload_part(&a, &b, "f/mp", &id, 1, b"x").expect_err("part 1 faulted");
        assert_eq!(e.status, 500);
        assert_eq!(e.code.as_deref(), Some("InternalError"));
    }
    assert!(upload_part(&a, &b, "f/mp", &id, 2, b"x").is_ok());
    assert_eq!(p.calls("UploadPart"), 4);
    p.clear_rules();
    assert!(upload_part(&a, &b, "f/mp", &id, 1, b"x").is_ok());
    abort_multipart_upload(&a, &b, "f/mp", &id);

    // A bare status: no body at all.
    p.fail_first("DeleteObject", 1, Fault::aws(502, ""));
    let r = s3(&a, "DELETE", &object_path(&b, "f/one"), &[], b"");
    assert_eq!((r.status, r.body.len()), (502, 0));

    // KMS through the same proxy keeps its JSON shape.
    p.fail_first("ListKeys", 1, Fault::aws(400, "ThrottlingException"));
    let head = format!(
        "POST / HTTP/1.1\r\nX-Amz-Target: TrentService.ListKeys\r\n\
         Content-Type: application/x-amz-json-1.1\r\n{}",
        dummy_auth("kms")
    );
    let r = send_bytes(&a, &head, b"{}");
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-type"), Some("application/x-amz-json-1.1"));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["__type"], "ThrottlingException");
    let (status, text) = send(&a, &head, "{}");
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("\"Keys\""), "{text}");
    assert_eq!(p.calls("ListKeys"), 2);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn delay_holds_requests_concurrently_and_counts_them_first() {
    let Some((up, p, b)) = setup("delay_holds_requests_concurrently_and_counts_them_first") else {
        return;
    };
    let a = p.authority();
    put_object(&up, &b, "d", b"delayed", &[]);
    let d = Duration::from_millis(800);
    p.delay("HeadObject", d);

    let t = Instant::now();
    assert_eq!(head_object(&a, &b, "d").unwrap().0, 7);
    assert!(t.elapsed() >= d, "held {:?}", t.elapsed());

    // Held requests are already counted (a test can wait for them, then interrupt).
    p.reset_counters();
    let t = Instant::now();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || head_object(&a, &b, "d").unwrap().0)
        })
        .collect();
    while p.calls("HeadObject") < 4 {
        assert!(t.elapsed() < d, "all four counted while held");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        p.requests().iter().all(|s| s.status == 0),
        "none answered yet"
    );
    for h in handles {
        assert_eq!(h.join().unwrap(), 7);
    }
    let total = t.elapsed();
    assert!(total >= d, "{total:?}");
    assert!(
        total < d * 3,
        "held in parallel, not one after another: {total:?}"
    );
    assert!(p.requests().iter().all(|s| s.status == 200));

    // Other operations are not held; ZERO removes the delay.
    let t = Instant::now();
    assert_eq!(get_object(&a, &b, "d").unwrap(), b"delayed");
    p.delay("HeadObject", Duration::ZERO);
    assert!(head_object(&a, &b, "d").is_some());
    assert!(t.elapsed() < d, "{:?}", t.elapsed());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn large_bodies_stream_through_the_proxy() {
    let Some((up, p, b)) = setup("large_bodies_stream_through_the_proxy") else {
        return;
    };
    let a = p.authority();
    let big = data(20 * MIB + 3);
    put_object(&a, &b, "big/len", &big, &[]);
    assert_eq!(head_object(&up, &b, "big/len").unwrap().0, big.len() as u64);
    assert!(get_object(&a, &b, "big/len").unwrap() == big);
    assert_eq!(p.response_bytes("GetObject"), big.len() as u64);
    let put = p
        .requests()
        .into_iter()
        .find(|s| s.op == "PutObject")
        .unwrap();
    assert_eq!(put.request_bytes, big.len() as u64);

    // The same body with Transfer-Encoding: chunked (uneven chunks) reaches moto intact.
    let mut req = format!(
        "PUT {} HTTP/1.1\r\nHost: {a}\r\n{}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n",
        object_path(&b, "big/chunked"),
        dummy_auth("s3")
    )
    .into_bytes();
    for c in big.chunks(MIB + 12_345) {
        req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        req.extend_from_slice(c);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = parse_response(&raw_exchange(&a, &req), false);
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = p.requests();
    let last = seen.last().unwrap();
    assert_eq!(
        (last.op.as_str(), last.request_bytes),
        ("PutObject", big.len() as u64)
    );
    assert!(
        get_object(&up, &b, "big/chunked").unwrap() == big,
        "content"
    );
}

// ---- the real SDK through the proxy ----

fn sdk_client(endpoint: &str) -> aws_sdk_s3::Client {
    use aws_sdk_s3::config::retry::RetryConfig;
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "harness"))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// What the SDK put on the wire, one line per request (printed for `--nocapture`).
fn wire_summary(p: &Proxy) -> String {
    const SHOWN: &[&str] = &[
        "content-length",
        "transfer-encoding",
        "content-encoding",
        "expect",
        "x-amz-content-sha256",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "x-amz-sdk-checksum-algorithm",
        "x-amz-checksum-crc32",
        "x-amz-checksum-mode",
        "range",
        "connection",
    ];
    p.requests()
        .iter()
        .map(|s| {
            let hs: Vec<String> = SHOWN
                .iter()
                .filter_map(|h| s.header(h).map(|v| format!("{h}={v}")))
                .collect();
            format!(
                "{} {} {} -> {} ({} B in, {} B out) {}",
                s.op,
                s.method,
                s.target,
                s.status,
                s.request_bytes,
                s.response_bytes,
                hs.join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn the_sdk_works_through_the_proxy() {
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};

    let Some((up, p, b)) = setup("the_sdk_works_through_the_proxy") else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = sdk_client(&p.url);
    let small = data(3 * MIB + 1);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &small).unwrap();
    let whole = data(5 * MIB + MIB / 2);
    let (first, last) = whole.split_at(5 * MIB);

    rt.block_on(async {
        // PutObject from memory and from a file (a streaming body).
        client
            .put_object()
            .bucket(&b)
            .key("sdk/mem")
            .body(ByteStream::from(small.clone()))
            .send()
            .await
            .unwrap();
        client
            .put_object()
            .bucket(&b)
            .key("sdk/file")
            .body(ByteStream::from_path(file.path()).await.unwrap())
            .send()
            .await
            .unwrap();

        // Multipart the way src/s3 does it (CRC32), with part 2 throttled once.
        p.fail_part(2, Some(1), Fault::slow_down());
        let id = client
            .create_multipart_upload()
            .bucket(&b)
            .key("sdk/mp")
            .checksum_algorithm(ChecksumAlgorithm::Crc32)
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        let mut parts = Vec::new();
        for (n, body) in [(1, first), (2, last)] {
            let out = client
                .upload_part()
                .bucket(&b)
                .key("sdk/mp")
                .upload_id(&id)
                .part_number(n)
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .body(ByteStream::from(bytes::Bytes::copy_from_slice(body)))
                .send()
                .await
                .unwrap();
            parts.push(
                CompletedPart::builder()
                    .part_number(n)
                    .e_tag(out.e_tag.unwrap())
                    .set_checksum_crc32(out.checksum_crc32)
                    .build(),
            );
        }
        client
            .complete_multipart_upload()
            .bucket(&b)
            .key("sdk/mp")
            .upload_id(&id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .unwrap();

        // A ranged read.
        let out = client
            .get_object()
            .bucket(&b)
            .key("sdk/mp")
            .range("bytes=1000-1999")
            .send()
            .await
            .unwrap();
        let got = out.body.collect().await.unwrap().into_bytes();
        assert_eq!(&got[..], &whole[1000..2000]);

        // An abandoned upload, aborted.
        let id = client
            .create_multipart_upload()
            .bucket(&b)
            .key("sdk/abandoned")
            .send()
            .await
            .unwrap()
            .upload_id
            .unwrap();
        client
            .abort_multipart_upload()
            .bucket(&b)
            .key("sdk/abandoned")
            .upload_id(&id)
            .send()
            .await
            .unwrap();
    });
    eprintln!("SDK wire traffic:\n{}", wire_summary(&p));

    assert!(get_object(&up, &b, "sdk/mem").unwrap() == small);
    assert!(get_object(&up, &b, "sdk/file").unwrap() == small);
    assert!(get_object(&up, &b, "sdk/mp").unwrap() == whole);
    assert!(list_multipart_uploads(&up, &b).is_empty());
    assert_eq!(p.calls("PutObject"), 2);
    assert_eq!(p.calls("UploadPart"), 3, "2 parts + 1 SDK retry");
    assert_eq!(p.calls("CreateMultipartUpload"), 2);
    assert_eq!(p.calls("CompleteMultipartUpload"), 1);
    assert_eq!(p.calls("AbortMultipartUpload"), 1);
    assert_eq!(p.calls("GetObject"), 1);
    assert_eq!(p.ranges(), ["bytes=1000-1999"]);
    assert_eq!(p.response_bytes("GetObject"), 1000);
    let faulted: Vec<_> = p.requests().into_iter().filter(|s| s.faulted).collect();
    assert_eq!(faulted.len(), 1);
    assert_eq!(
        (faulted[0].op.as_str(), faulted[0].status),
        ("UploadPart", 503)
    );
}
