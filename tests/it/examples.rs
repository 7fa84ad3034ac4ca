//! The embedding examples, built and run for real against the emulator:
//! `examples/axum_upload.rs` (an HTTP service streaming uploads into encrypted S3 objects)
//! is started as a process and driven over HTTP/1.1 by a small raw client in this file
//! (responses read by tests/it/common/http1.rs, on httparse), with the stored objects inspected and tampered with through
//! the S3 helpers of tests/it/common/moto.rs (the AWS SDK); `examples/s3_seekable.rs` is run and must exit 0.
//!
//! The example binaries are found next to this test binary (target/<profile>/examples/),
//! after a `cargo build --example` with the same target directory and profile, so a stale
//! binary is never tested.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{http1, moto};
use sealstream::LocalKey;

const MIB: usize = 1024 * 1024;
/// Bytes of one sealed chunk in the body with the default 64 KiB chunks (+16-byte tag).
const SEALED_CHUNK: usize = 64 * 1024 + 16;

/// Builds (if needed) and locates `target/<profile>/examples/<name>`.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/it-HASH → target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("test binary in target/<profile>/deps")
        .to_path_buf();
    let target_dir = profile_dir.parent().expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--example",
        name,
        "--features",
        "s3,kms",
    ])
    .arg("--target-dir")
    .arg(&target_dir)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build --example");
    assert!(status.success(), "cargo build --example {name} failed");
    let path = profile_dir.join("examples").join(name);
    assert!(path.exists(), "{} missing after the build", path.display());
    path
}

/// The environment every example needs to reach the emulator.
fn aws_env(cmd: &mut Command, authority: &str) {
    cmd.env("AWS_ENDPOINT_URL", format!("http://{authority}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
}

/// A running axum_upload process, killed on drop.
struct Server {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts axum_upload for `bucket`, with a fresh local key file or the KMS key `kms`.
fn start_server(authority: &str, bucket: &str, kms: Option<&str>) -> Server {
    let bin = example("axum_upload");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(bin);
    aws_env(&mut cmd, authority);
    cmd.env("SEALSTREAM_BUCKET", bucket)
        .env("SEALSTREAM_BIND", "127.0.0.1:0")
        .env_remove("SEALSTREAM_KMS_KEY")
        .env_remove("SEALSTREAM_KEY_FILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match kms {
        Some(arn) => {
            cmd.env("SEALSTREAM_KMS_KEY", arn);
        }
        None => {
            let key_path = dir.path().join("key");
            LocalKey::generate()
                .expect("key")
                .save_new(&key_path)
                .expect("save key");
            cmd.env("SEALSTREAM_KEY_FILE", &key_path);
        }
    }
    let mut child = cmd.spawn().expect("start axum_upload");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    Server {
        child,
        addr,
        _dir: dir,
    }
}

/// An HTTP/1.1 response as this client saw it (`complete`: the body ended as its framing
/// says, false for an aborted transfer).
type Resp = http1::Response;

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect to the example");
    s.set_read_timeout(Some(Duration::from_secs(120))).ok();
    s
}

fn write_head(s: &mut TcpStream, method: &str, path: &str, headers: &[(&str, &str)], len: usize) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: example\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    s.write_all(head.as_bytes()).expect("send head");
}

/// One request; the response is read to its end or to the connection's end.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = connect(addr);
    write_head(&mut s, method, path, headers, body.len());
    s.write_all(body).expect("send body");
    read_response(BufReader::new(s), method)
}

fn read_response(mut r: BufReader<TcpStream>, method: &str) -> Resp {
    // `None`: the server closed the connection before its status line (its body failed
    // before the head was flushed): an aborted response, status 0.
    http1::read_response(&mut r, method)
        .expect("response head")
        .unwrap_or(Resp {
            status: 0,
            headers: Vec::new(),
            body: Vec::new(),
            complete: false,
        })
}

/// Deterministic, incompressible-looking plaintext.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8)
        .collect()
}

fn bucket() -> String {
    moto::unique_bucket("ex")
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn axum_upload_round_trip_ranges_context_and_errors() {
    let Some(ep) = moto::endpoint("axum_upload_round_trip") else {
        return;
    };
    let bucket = bucket();
    moto::create_bucket(&ep, &bucket);
    let server = start_server(&ep, &bucket, None);
    let pt = plaintext(20 * MIB + 123);

    // Upload 20 MiB with a context header.
    let r = request(
        &server.addr,
        "PUT",
        "/objects/dir/big.bin",
        &[("x-context-tenant", "acme")],
        &pt,
    );
    assert_eq!(r.status, 201, "PUT: {}", r.text());

    // What S3 holds is sealstream's object form: the header in the metadata, the body the
    // sealed chunks (each 16 bytes longer than its plaintext), nothing readable.
    let (len, meta, _) = moto::head_object(&ep, &bucket, "dir/big.bin").expect("stored");
    let chunks = pt.len().div_ceil(64 * 1024);
    assert_eq!(len as usize, pt.len() + 16 * chunks, "body length");
    assert!(
        meta.iter().any(|(n, _)| n.starts_with("sealstream")),
        "no sealstream metadata: {meta:?}"
    );
    let stored = moto::get_object(&ep, &bucket, "dir/big.bin").expect("body");
    assert_ne!(&stored[..4096], &pt[..4096], "the body is not encrypted");
    assert!(
        !stored.windows(32).any(|w| w == &pt[MIB..MIB + 32]),
        "plaintext visible in the stored body"
    );

    // Whole GET.
    let r = request(&server.addr, "GET", "/objects/dir/big.bin", &[], b"");
    assert_eq!(r.status, 200);
    assert!(r.complete, "GET did not end cleanly");
    assert!(
        r.body == pt,
        "GET returned other bytes ({} bytes)",
        r.body.len()
    );

    // The right context on a GET is accepted; a wrong one is refused before any byte.
    let r = request(
        &server.addr,
        "GET",
        "/objects/dir/big.bin",
        &[("x-context-tenant", "acme"), ("Range", "bytes=0-99")],
        b"",
    );
    assert_eq!(r.status, 206, "{}", r.text());
    assert_eq!(r.body, &pt[..100]);
    let r = request(
        &server.addr,
        "GET",
        "/objects/dir/big.bin",
        &[("x-context-tenant", "other")],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("context"), "{}", r.text());

    // Ranges: inside (length not claimed), end-relative (length authenticated), past the end.
    let r = request(
        &server.addr,
        "GET",
        "/objects/dir/big.bin",
        &[("Range", "bytes=1000000-2999999")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert!(r.complete);
    assert_eq!(r.header("content-range"), Some("bytes 1000000-2999999/*"));
    assert!(r.body == pt[1_000_000..3_000_000], "inner range differs");
    let r = request(
        &server.addr,
        "GET",
        "/objects/dir/big.bin",
        &[("Range", "bytes=-5000")],
        b"",
    );
    assert_eq!(r.status, 206);
    let total = pt.len();
    assert_eq!(
        r.header("content-range"),
        Some(format!("bytes {}-{}/{total}", total - 5000, total - 1).as_str())
    );
    assert!(r.body == pt[total - 5000..], "suffix range differs");
    let r = request(
        &server.addr,
        "GET",
        "/objects/dir/big.bin",
        &[("Range", &format!("bytes={}-", total + 10))],
        b"",
    );
    assert_eq!(r.status, 416, "{}", r.text());

    // Errors by kind: a missing object, create-only on an existing one.
    let r = request(&server.addr, "GET", "/objects/nothing-here", &[], b"");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = request(
        &server.addr,
        "PUT",
        "/objects/dir/big.bin",
        &[("If-None-Match", "*")],
        b"replacement",
    );
    assert_eq!(r.status, 412, "{}", r.text());
    // ...and nothing was replaced.
    let r = request(&server.addr, "GET", "/objects/dir/big.bin", &[], b"");
    assert!(
        r.complete && r.body == pt,
        "object changed by a refused PUT"
    );

    // Tamper with one body byte in the middle (plain S3, metadata kept): the response
    // starts (earlier chunks are authentic) but ends broken, and nothing from the tampered
    // chunk or after it is delivered.
    let meta_ref: Vec<(&str, &str)> = meta.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    let flip = 10 * MIB + 5;
    let mut bad = stored.clone();
    bad[flip] ^= 1;
    moto::put_object(&ep, &bucket, "dir/big.bin", &bad, &meta_ref);
    let r = request(&server.addr, "GET", "/objects/dir/big.bin", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        !r.complete,
        "a tampered object was served as a complete response ({} bytes)",
        r.body.len()
    );
    // The authentic chunks before it did stream (the body is not buffered whole).
    assert!(r.body.len() >= MIB, "only {} bytes streamed", r.body.len());
    let tampered_chunk_start = flip / SEALED_CHUNK * 64 * 1024;
    assert!(
        r.body.len() <= tampered_chunk_start,
        "{} bytes delivered, past the tampered chunk at {tampered_chunk_start}",
        r.body.len()
    );
    assert!(
        r.body == pt[..r.body.len()],
        "delivered bytes are not the plaintext"
    );
    // A range starting just before the tampered chunk fails too: either before any byte
    // (502, or the connection closed before the status line when the failure follows the
    // first bytes before hyper flushed the head) or as a broken 206, and only authentic
    // bytes before the tampered chunk.
    let (a, b) = (tampered_chunk_start - 100, tampered_chunk_start + 100);
    let r = request(
        &server.addr,
        "GET",
        "/objects/dir/big.bin",
        &[("Range", &format!("bytes={a}-{b}"))],
        b"",
    );
    match r.status {
        206 => {
            assert!(!r.complete, "a tampered range was served as complete");
            assert!(r.body.len() <= 100 && r.body == pt[a..a + r.body.len()]);
        }
        502 => assert!(r.text().contains("chunk"), "{}", r.text()),
        0 => assert!(r.body.is_empty() && !r.complete),
        s => panic!("tampered range: status {s}: {}", r.text()),
    }

    // Tamper with the first chunk: the failure comes before any byte, so it is a status.
    let mut bad = stored.clone();
    bad[100] ^= 1;
    moto::put_object(&ep, &bucket, "dir/big.bin", &bad, &meta_ref);
    let r = request(&server.addr, "GET", "/objects/dir/big.bin", &[], b"");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("chunk 0"), "{}", r.text());
    assert!(!r.body.windows(32).any(|w| w == &pt[..32]));

    // Not sealstream's at all: an object without the metadata is refused, not served.
    moto::put_object(&ep, &bucket, "plain.bin", b"just bytes", &[]);
    let r = request(&server.addr, "GET", "/objects/plain.bin", &[], b"");
    assert_eq!(r.status, 502, "{}", r.text());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn axum_upload_client_disconnect_leaves_no_upload() {
    let Some(ep) = moto::endpoint("axum_upload_disconnect") else {
        return;
    };
    let bucket = bucket();
    moto::create_bucket(&ep, &bucket);
    let server = start_server(&ep, &bucket, None);
    let pt = plaintext(12 * MIB);

    // Announce 30 MiB, send 12 MiB (more than one 8 MiB part), then hang up.
    let mut s = connect(&server.addr);
    write_head(&mut s, "PUT", "/objects/cut.bin", &[], 30 * MIB);
    s.write_all(&pt).expect("send part of the body");
    let t = Instant::now();
    while moto::list_multipart_uploads(&ep, &bucket).is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no multipart upload started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.shutdown(Shutdown::Both).ok();
    drop(s);

    let t = Instant::now();
    loop {
        let left = moto::list_multipart_uploads(&ep, &bucket);
        if left.is_empty() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "multipart upload left after the client hung up: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a wrongly completed upload time to show up, then check there is no object.
    std::thread::sleep(Duration::from_secs(1));
    let keys = moto::list_keys(&ep, &bucket, "");
    assert!(keys.is_empty(), "objects after a cut upload: {keys:?}");

    // The service is still fine.
    let r = request(&server.addr, "PUT", "/objects/ok.bin", &[], &pt[..1000]);
    assert_eq!(r.status, 201, "{}", r.text());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn axum_upload_with_kms() {
    let Some(ep) = moto::endpoint("axum_upload_with_kms") else {
        return;
    };
    let bucket = bucket();
    moto::create_bucket(&ep, &bucket);
    let arn = moto::create_key(&ep, "us-east-1");
    let server = start_server(&ep, &bucket, Some(&arn));
    let pt = plaintext(MIB + 7);
    let r = request(
        &server.addr,
        "PUT",
        "/objects/k.bin",
        &[("x-context-tenant", "acme")],
        &pt,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let (_, meta, _) = moto::head_object(&ep, &bucket, "k.bin").expect("stored");
    // The header in the metadata (base64) carries a KMS stanza, not a local one.
    use base64::Engine as _;
    let header_has = |what: &[u8]| {
        meta.iter().any(|(_, v)| {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .is_ok_and(|h| h.windows(what.len()).any(|w| w == what))
        })
    };
    assert!(header_has(b"aws-kms"), "no KMS stanza in {meta:?}");
    assert!(!header_has(b"local"), "a local stanza in {meta:?}");
    let r = request(
        &server.addr,
        "GET",
        "/objects/k.bin",
        &[("x-context-tenant", "acme")],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.complete && r.body == pt, "KMS round trip differs");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn s3_seekable_example_runs() {
    let Some(ep) = moto::endpoint("s3_seekable_example_runs") else {
        return;
    };
    let bucket = bucket();
    let bin = example("s3_seekable");
    let mut cmd = Command::new(bin);
    aws_env(&mut cmd, &ep);
    let out = cmd
        .arg(format!("s3://{bucket}/seek/me.bin"))
        .output()
        .expect("run s3_seekable");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "s3_seekable failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("200 random reads: ok"), "{stdout}");
    assert!(
        stdout.contains("all reads matched the plaintext"),
        "{stdout}"
    );
    // It cleans up after itself.
    assert!(moto::list_keys(&ep, &bucket, "").is_empty());
}
