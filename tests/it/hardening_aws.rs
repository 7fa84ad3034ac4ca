//! Issue 14, items 4–6: the edges where S3 and KMS meet the network and the credentials.
//!
//! - (4) an endpoint that accepts connections and never answers makes `encrypt -o s3://…`
//!   and `decrypt s3://…` fail with exit 6 and a message naming the endpoint and the
//!   timeout, bounded by `SEALSTREAM_S3_*` settings; each retry is announced on stderr
//!   unless `--quiet`;
//! - (5) SDK failures (no credentials, refused connection) are one short sentence with the
//!   right exit code, never a `Debug` dump (`DispatchFailure(…)`);
//! - (6) an explicit `--profile` wins over credentials in the environment, and an unknown
//!   profile is a usage error (exit 2).
//!
//! None of these needs the emulator: a local TCP listener plays the stalled endpoint, a
//! port that was bound and closed plays the refused one, and a listener that records each
//! request's `Authorization` header shows which access key id signed it. The emulator
//! tests at the end (retry notes through the fault proxy) are `#[ignore]`d and run by
//! `scripts/test.sh`.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Wall limit per command: far above the bounds the tests configure (a few seconds), far
/// below "hangs silently for 15 minutes". Only a safety net so CI cannot hang.
const WALL_LIMIT: Duration = Duration::from_secs(100);

/// A KMS key no test creates: every call naming it fails (or never leaves) before its
/// existence matters.
const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
/// Encrypts p.bin for [`ARN`]: the KMS command of these tests.
const KMS_ENCRYPT: [&str; 6] = ["encrypt", "p.bin", "-o", "p.seal", "--kms-key", ARN];
/// Decrypts an S3 object with the local key into out.bin: the S3 command of these tests.
const S3_DECRYPT: [&str; 6] = ["decrypt", "-k", "k.key", "s3://bucket/obj", "-o", "out.bin"];

/// A scratch dir with a local key, a small plaintext and an AWS environment that points
/// at `endpoint` with private (empty) AWS config files and no instance metadata.
struct Env {
    s: Scratch,
}

impl Env {
    fn new() -> Env {
        let s = Scratch::new();
        s.keyfile("k.key", &key(7));
        write(&s.path("p.bin"), &data(10_000));
        std::fs::create_dir_all(s.path("awshome")).unwrap();
        Env { s }
    }

    /// The binary with a cleared environment: only what is set here reaches it.
    fn cmd(&self, endpoint: &str, quiet: bool) -> Command {
        let mut c = Command::new(bin());
        c.env_clear()
            .env("HOME", self.s.path("awshome"))
            .env("SEALSTREAM_HOME", self.s.path("home"))
            .env("AWS_CONFIG_FILE", self.s.path("awshome/config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.s.path("awshome/credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .current_dir(self.s.dir.path());
        if quiet {
            c.arg("--quiet");
        }
        c
    }

    fn env_credentials(c: &mut Command) -> &mut Command {
        c.env("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00001")
            .env("AWS_SECRET_ACCESS_KEY", "environment-secret")
    }
}

/// Runs `c` to completion, killing it (and failing the test) past [`WALL_LIMIT`].
fn run_bounded(c: &mut Command) -> Output {
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealstream");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > WALL_LIMIT {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!(
                "sealstream still running after {WALL_LIMIT:?} (a silent hang); stderr so far:\n{}",
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was bound and then closed: connecting to it is refused.
fn refused_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

/// Accepts connections and never answers (holds them open until dropped).
struct Stalled {
    url: String,
    stop: Arc<AtomicBool>,
}

impl Stalled {
    fn start() -> Stalled {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => held.push(c),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Stalled { url, stop }
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Answers every request with `status` and an empty body, recording each request's
/// `Authorization` header.
struct Recorder {
    url: String,
    auth: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(status: &'static str) -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        let auth = Arc::new(Mutex::new(Vec::new()));
        let a = Arc::clone(&auth);
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let a = Arc::clone(&a);
                std::thread::spawn(move || serve_one(c, status, &a));
            }
        });
        Recorder { url, auth }
    }

    /// The access key ids that signed the requests seen so far.
    fn key_ids(&self) -> Vec<String> {
        self.auth
            .lock()
            .unwrap()
            .iter()
            .filter_map(|h| {
                let rest = h.split("Credential=").nth(1)?;
                Some(rest.split('/').next()?.to_string())
            })
            .collect()
    }
}

/// Answers HEAD with 404 (no such object yet) and reads every other request to the end of
/// its body without ever answering: a server that swallows uploads.
struct Swallow {
    url: String,
    bodies: Arc<Mutex<Vec<usize>>>,
}

impl Swallow {
    fn start() -> Swallow {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = Arc::clone(&bodies);
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(c) = c else { continue };
                let b = Arc::clone(&b);
                std::thread::spawn(move || swallow_one(c, &b));
            }
        });
        Swallow { url, bodies }
    }
}

fn swallow_one(c: TcpStream, bodies: &Mutex<Vec<usize>>) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(100)));
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    loop {
        let Ok(Some(req)) = http1::read_request_head(&mut r) else {
            return;
        };
        let mut body = Vec::new();
        let Ok(framing) = req.request_framing() else {
            return;
        };
        if !http1::read_body(&mut r, framing, &mut body) {
            return;
        }
        if req.method.as_deref() == Some("HEAD") {
            let _ = w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            continue;
        }
        bodies.lock().unwrap().push(body.len());
        // Never answer; hold the connection until the client gives up.
        let mut rest = Vec::new();
        let _ = std::io::Read::read_to_end(&mut r, &mut rest);
        return;
    }
}

fn serve_one(c: TcpStream, status: &str, auth: &Mutex<Vec<String>>) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(20)));
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut w = c;
    loop {
        let Ok(Some(req)) = http1::read_request_head(&mut r) else {
            return;
        };
        if let Some(v) = req.get("authorization") {
            auth.lock().unwrap().push(format!("Authorization: {v}"));
        }
        let mut body = Vec::new();
        let Ok(framing) = req.request_framing() else {
            return;
        };
        if !http1::read_body(&mut r, framing, &mut body) {
            return;
        }
        if w.write_all(
            format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nx-amz-request-id: REQ123\r\n\r\n")
                .as_bytes(),
        )
        .is_err()
        {
            return;
        }
    }
}

/// The error line(s) on stderr (with `--quiet` that is all there is).
fn assert_one_short_line(o: &Output, what: &str) -> String {
    let err = stderr(o);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{what}: expected one line, got:\n{err}");
    assert!(
        err.len() < 500,
        "{what}: message too long ({} bytes):\n{err}",
        err.len()
    );
    for leak in [
        "DispatchFailure",
        "ConnectorError",
        "Some(",
        "{ ",
        "source:",
    ] {
        assert!(
            !err.contains(leak),
            "{what}: Debug dump ({leak}) in:\n{err}"
        );
    }
    err
}

// ---- (4) a stalled endpoint ----------------------------------------------------------

fn stalled_settings(c: &mut Command) -> &mut Command {
    c.env("SEALSTREAM_S3_CONNECT_TIMEOUT", "2")
        .env("SEALSTREAM_S3_READ_TIMEOUT", "1")
        .env("SEALSTREAM_S3_TIMEOUT", "3")
}

#[test]
fn stalled_endpoint_encrypt_and_decrypt_fail_with_exit_6_naming_endpoint_and_timeout() {
    let e = Env::new();
    let stalled = Stalled::start();
    for args in [
        &["encrypt", "-k", "k.key", "p.bin", "-o", "s3://bucket/obj"][..],
        &S3_DECRYPT[..],
    ] {
        let mut c = e.cmd(&stalled.url, true);
        Env::env_credentials(&mut c);
        stalled_settings(&mut c).args(args);
        let o = run_bounded(&mut c);
        let err = assert_one_short_line(&o, args[0]);
        assert_eq!(code(&o), 6, "{}: {err}", args[0]);
        assert!(
            err.contains(&stalled.url),
            "{}: endpoint not named: {err}",
            args[0]
        );
        assert!(
            err.contains("timeout"),
            "{}: timeout not named: {err}",
            args[0]
        );
        assert!(!e.s.path("out.bin").exists(), "no output on failure");
    }
}

#[test]
fn retries_against_a_stalled_endpoint_are_announced_unless_quiet() {
    let e = Env::new();
    let stalled = Stalled::start();
    let args = S3_DECRYPT;

    let mut c = e.cmd(&stalled.url, false);
    Env::env_credentials(&mut c);
    stalled_settings(&mut c).args(args);
    let o = run_bounded(&mut c);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let err = stderr(&o);
    let notes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("retrying S3 HeadObject"))
        .collect();
    assert!(!notes.is_empty(), "no retry note:\n{err}");
    for n in &notes {
        assert!(n.contains("/bucket/obj"), "the note names the request: {n}");
        assert!(n.contains("attempt "), "the note counts attempts: {n}");
        assert!(n.contains("timeout"), "the note says why: {n}");
    }

    let mut c = e.cmd(&stalled.url, true);
    Env::env_credentials(&mut c);
    stalled_settings(&mut c).args(args);
    let o = run_bounded(&mut c);
    assert_eq!(code(&o), 6);
    assert!(!stderr(&o).contains("retrying"), "--quiet: {}", stderr(&o));
}

#[test]
fn a_server_that_swallows_an_upload_fails_within_the_first_byte_timeout() {
    // The first-byte clock must start when the body has been sent: counted from the start
    // of the request (the SDK's own read timeout) it would either kill slow large uploads
    // or, stretched to allow them, wait minutes for a server that took the body and went
    // silent.
    let e = Env::new();
    write(&e.s.path("mid.bin"), &data(4 << 20));
    let server = Swallow::start();
    let mut c = e.cmd(&server.url, true);
    Env::env_credentials(&mut c);
    stalled_settings(&mut c)
        .env("SEALSTREAM_S3_MAX_ATTEMPTS", "2")
        .args([
            "encrypt",
            "-k",
            "k.key",
            "mid.bin",
            "-o",
            "s3://bucket/mid.seal",
        ]);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "swallowed upload");
    assert_eq!(code(&o), 6, "{err}");
    assert!(
        err.contains(&server.url) && err.contains("timeout"),
        "{err}"
    );
    let bodies = server.bodies.lock().unwrap().clone();
    assert!(
        !bodies.is_empty() && bodies.iter().all(|&n| n >= 4 << 20),
        "the whole body was sent before the timeout: {bodies:?}"
    );
}

// ---- (5) SDK errors as one sentence --------------------------------------------------

#[test]
fn no_credentials_is_one_sentence_with_the_right_exit_code() {
    let e = Env::new();
    // Nothing would answer anyway: the failure must be found before any connection.
    let ep = refused_endpoint();
    let mut c = e.cmd(&ep, true);
    c.args(S3_DECRYPT);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "S3 without credentials");
    assert_eq!(code(&o), 6, "{err}");
    assert!(err.contains("no AWS credentials"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "says what to do: {err}");

    let mut c = e.cmd(&ep, true);
    c.args(KMS_ENCRYPT);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "KMS without credentials");
    assert_eq!(code(&o), 5, "{err}");
    assert!(err.contains("no AWS credentials"), "{err}");
    assert!(!e.s.path("p.seal").exists());
}

#[test]
fn refused_connection_is_one_sentence_naming_the_endpoint() {
    let e = Env::new();
    let ep = refused_endpoint();
    let mut c = e.cmd(&ep, true);
    Env::env_credentials(&mut c)
        .env("SEALSTREAM_S3_MAX_ATTEMPTS", "2")
        .args(S3_DECRYPT);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "S3 refused");
    assert_eq!(code(&o), 6, "{err}");
    assert!(
        err.contains("connection refused") && err.contains(&ep),
        "{err}"
    );

    let mut c = e.cmd(&ep, true);
    Env::env_credentials(&mut c)
        .env("SEALSTREAM_KMS_MAX_ATTEMPTS", "2")
        .args(KMS_ENCRYPT);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "KMS refused");
    assert_eq!(code(&o), 5, "{err}");
    assert!(
        err.contains("connection refused") && err.contains(&ep),
        "{err}"
    );
}

// ---- (6) --profile -------------------------------------------------------------------

fn write_profile(e: &Env) {
    write(
        &e.s.path("awshome/credentials"),
        b"[other]\naws_access_key_id = AKIAPROFILEOTHER0001\naws_secret_access_key = profile-secret\n",
    );
    write(
        &e.s.path("awshome/config"),
        b"[profile other]\nregion = us-east-1\n",
    );
}

#[test]
fn an_explicit_profile_wins_over_environment_credentials() {
    let e = Env::new();
    write_profile(&e);
    let rec = Recorder::start("404 Not Found");

    // Without --profile the environment's key signs (the recorder sees the requests).
    let mut c = e.cmd(&rec.url, true);
    Env::env_credentials(&mut c).args(["decrypt", "-k", "k.key", "s3://bucket/obj", "-o", "o1"]);
    let o = run_bounded(&mut c);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let ids = rec.key_ids();
    assert!(
        !ids.is_empty() && ids.iter().all(|k| k == "AKIAENVIRONMENT00001"),
        "{ids:?}"
    );

    // With --profile, S3 and KMS requests are signed with the profile's key.
    rec.auth.lock().unwrap().clear();
    let mut c = e.cmd(&rec.url, true);
    Env::env_credentials(&mut c).args([
        "--profile",
        "other",
        "decrypt",
        "-k",
        "k.key",
        "s3://bucket/obj",
        "-o",
        "o2",
    ]);
    let o = run_bounded(&mut c);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    let mut c = e.cmd(&rec.url, true);
    Env::env_credentials(&mut c)
        .env("SEALSTREAM_KMS_MAX_ATTEMPTS", "1")
        .args(["--profile", "other"])
        .args(KMS_ENCRYPT);
    let o = run_bounded(&mut c);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    let ids = rec.key_ids();
    assert!(ids.len() >= 2, "both S3 and KMS were called: {ids:?}");
    assert!(ids.iter().all(|k| k == "AKIAPROFILEOTHER0001"), "{ids:?}");
}

#[test]
fn an_unknown_profile_is_a_usage_error_before_any_request() {
    let e = Env::new();
    write_profile(&e);
    let rec = Recorder::start("404 Not Found");
    for args in [
        &[
            "--profile",
            "nosuch",
            "decrypt",
            "-k",
            "k.key",
            "s3://bucket/obj",
            "-o",
            "o",
        ][..],
        &[
            "--profile",
            "nosuch",
            "encrypt",
            "p.bin",
            "-o",
            "p.seal",
            "--kms-key",
            ARN,
        ][..],
    ] {
        let mut c = e.cmd(&rec.url, true);
        Env::env_credentials(&mut c).args(args);
        let o = run_bounded(&mut c);
        let err = assert_one_short_line(&o, "unknown profile");
        assert_eq!(code(&o), 2, "{err}");
        assert!(
            err.contains("'nosuch'") && err.contains("--profile"),
            "{err}"
        );
    }
    assert!(
        rec.key_ids().is_empty(),
        "nothing was sent: {:?}",
        rec.key_ids()
    );
    assert!(!e.s.path("p.seal").exists() && !e.s.path("o").exists());
}

// ---- against the emulator, through the fault proxy -----------------------------------

/// The emulator behind the fault proxy, and a fresh bucket.
fn emulator(test: &str) -> Option<(Env, common::proxy::Proxy, String)> {
    let up = common::moto::endpoint(test)?;
    let bucket = common::moto::unique("hardening-aws");
    common::moto::create_bucket(&up, &bucket);
    Some((Env::new(), common::proxy::Proxy::start(&up), bucket))
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn throttling_is_retried_with_one_note_per_retry_and_the_transfer_succeeds() {
    let Some((e, proxy, bucket)) =
        emulator("throttling_is_retried_with_one_note_per_retry_and_the_transfer_succeeds")
    else {
        return;
    };
    // A multipart upload (parts of 5 MiB, 12 MiB of data) whose second part and first
    // HEAD are throttled twice: every S3 operation goes through the per-operation
    // timeouts, and each retry is announced once.
    write(&e.s.path("big.bin"), &data(12 << 20));
    proxy.fail_first("HeadObject", 2, common::proxy::Fault::slow_down());
    proxy.fail_part(2, Some(2), common::proxy::Fault::slow_down());
    let url = format!("s3://{bucket}/big.seal");
    let mut c = e.cmd(&proxy.url, false);
    Env::env_credentials(&mut c).args([
        "--part-size",
        "5MiB",
        "encrypt",
        "-k",
        "k.key",
        "big.bin",
        "-o",
        &url,
    ]);
    let o = run_bounded(&mut c);
    let err = stderr(&o);
    assert_eq!(code(&o), 0, "{err}");
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("retrying S3")).collect();
    let head: Vec<&&str> = notes.iter().filter(|l| l.contains("HeadObject")).collect();
    let part: Vec<&&str> = notes.iter().filter(|l| l.contains("UploadPart")).collect();
    assert_eq!(head.len(), 2, "one note per HEAD retry:\n{err}");
    assert_eq!(part.len(), 2, "one note per part retry:\n{err}");
    for n in head.iter().chain(part.iter()) {
        assert!(n.contains("HTTP 503"), "the note says why: {n}");
        assert!(
            n.contains(&format!("/{bucket}/big.seal")),
            "the note names the object: {n}"
        );
    }

    let mut c = e.cmd(&proxy.url, true);
    Env::env_credentials(&mut c).args(["decrypt", "-k", "k.key", &url, "-o", "back.bin"]);
    let o = run_bounded(&mut c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(e.s.path("back.bin")).unwrap() == data(12 << 20));
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn service_errors_are_one_sentence_with_code_and_request_id() {
    let Some((e, proxy, bucket)) =
        emulator("service_errors_are_one_sentence_with_code_and_request_id")
    else {
        return;
    };
    // No such bucket: the service's code, what to do, and S3's request id.
    let mut c = e.cmd(&proxy.url, true);
    Env::env_credentials(&mut c).args([
        "encrypt",
        "-k",
        "k.key",
        "p.bin",
        "-o",
        &format!("s3://{bucket}-missing/x"),
    ]);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "no such bucket");
    assert_eq!(code(&o), 6, "{err}");
    assert!(
        err.contains("NoSuchBucket") && err.contains("create the bucket"),
        "{err}"
    );
    assert!(err.contains("request id "), "{err}");

    // Access denied on a HEAD (no body, so no code): named from the status.
    proxy.fail_first("HeadObject", 100, common::proxy::Fault::aws(403, ""));
    let mut c = e.cmd(&proxy.url, true);
    Env::env_credentials(&mut c).args([
        "decrypt",
        "-k",
        "k.key",
        &format!("s3://{bucket}/x"),
        "-o",
        "o.bin",
    ]);
    let o = run_bounded(&mut c);
    let err = assert_one_short_line(&o, "access denied");
    assert_eq!(code(&o), 6, "{err}");
    assert!(
        err.contains("AccessDenied") && err.contains("permissions"),
        "{err}"
    );
}
