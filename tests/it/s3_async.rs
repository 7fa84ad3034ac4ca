//! The async-first S3 API inside the caller's runtime: a handle built from the caller's
//! `SdkConfig`, used from a multi-thread and a current-thread tokio runtime, with no
//! private runtime and no `block_on` (a nested `block_on` would panic here). Round trips
//! (whole and ranged), tamper (a body byte flipped with the plain client), a mismatched
//! `Opening`, and cancellation: by token (a distinct error, after cleanup) and by
//! dropping the upload's future (background cleanup), each leaving no multipart upload,
//! no companion and no object.

use crate::common;

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_s3::config::{Credentials, Region};
use common::*;
use sealstream::envelope::{EncryptParams, Opening, Sealing};
use sealstream::keys::KeyProvider;
use sealstream::keys::local::LocalKey;
use sealstream::range::ByteRange;
use sealstream::s3::{GetOptions, PutOptions, S3, S3Settings, S3Url};
use sealstream::{Context, Error};
use tokio_util::sync::CancellationToken;

const MIB: usize = 1024 * 1024;

/// The caller's own configuration, as a service would build it (not sealstream's loader).
async fn caller_config(endpoint: &str) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "s3_async"))
        .load()
        .await
}

struct Env {
    s3: S3,
    /// The plain SDK client on the same configuration (checks and tampering).
    plain: aws_sdk_s3::Client,
    bucket: String,
}

async fn setup(test: &str) -> Env {
    let up = moto::endpoint(test).expect("emulator");
    let endpoint = format!("http://{up}");
    let bucket = moto::unique_bucket("sa");
    let conf = caller_config(&endpoint).await;
    let plain = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(true)
            .build(),
    );
    plain
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    let s3 = S3::from_conf(
        &conf,
        S3Settings {
            part_size: 5 * MIB as u64,
            concurrency: 3,
            ..S3Settings::default()
        },
    )
    .expect("from_conf");
    Env { s3, plain, bucket }
}

impl Env {
    fn url(&self, key: &str) -> S3Url {
        S3Url::parse(&format!("s3://{}/{key}", self.bucket)).expect("url")
    }

    async fn keys(&self) -> Vec<String> {
        let out = self
            .plain
            .list_objects_v2()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    async fn uploads(&self) -> usize {
        let out = self
            .plain
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
            .expect("list uploads");
        out.uploads().len()
    }

    async fn assert_nothing_left(&self, what: &str) {
        assert_eq!(self.uploads().await, 0, "{what}: multipart upload left");
        let keys = self.keys().await;
        assert!(keys.is_empty(), "{what}: objects left: {keys:?}");
    }

    /// Waits until a multipart upload is in progress (the upload is mid-way).
    async fn wait_for_upload(&self) {
        let t = Instant::now();
        while self.uploads().await == 0 {
            assert!(t.elapsed() < Duration::from_secs(30), "no upload started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn providers(keys: &[LocalKey]) -> Vec<&dyn KeyProvider> {
    keys.iter().map(|k| k as &dyn KeyProvider).collect()
}

/// Twelve wrapping keys: the header no longer fits in the metadata, so a companion object
/// is written first (and must be removed by every cleanup).
fn twelve() -> Vec<LocalKey> {
    (1..=12).map(key).collect()
}

fn sealing(keys: &[LocalKey]) -> Sealing {
    Sealing::for_providers(&providers(keys), &EncryptParams::default()).expect("sealing")
}

async fn opening(
    env: &Env,
    url: &S3Url,
    keys: &[LocalKey],
) -> (sealstream::s3::ObjectInfo, Opening) {
    let obj = env.s3.open_object(url).await.expect("open_object");
    let o = Opening::unlock(
        obj.header.clone(),
        &providers(keys),
        &Context::new(),
        Default::default(),
    )
    .expect("unlock");
    (obj, o)
}

/// An output that accepts `self.0` bytes, then fails.
struct FailingWriter(usize);

impl tokio::io::AsyncWrite for FailingWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.0 == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("disk full")));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        std::task::Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

async fn round_trips(test: &str) {
    let env = setup(test).await;
    let keys = twelve();
    for (name, len) in [("small", 70_000usize), ("multipart", 11 * MIB + 5)] {
        let pt = data(len);
        let url = env.url(name);
        let rep = env
            .s3
            .put_encrypted(
                &url,
                &pt[..],
                sealing(&keys),
                &PutOptions {
                    plaintext_len: Some(len as u64),
                    ..PutOptions::default()
                },
            )
            .await
            .expect("put_encrypted");
        assert_eq!(rep.plaintext_bytes, len as u64);
        assert!(rep.companion.is_some(), "twelve keys: companion header");
        assert_eq!(rep.parts > 0, len > 5 * MIB, "{name}: {rep:?}");

        let (obj, open) = opening(&env, &url, &keys).await;
        let mut out = Vec::new();
        env.s3
            .get_decrypted(&obj, &open, &mut out, &GetOptions::default())
            .await
            .expect("get_decrypted");
        assert!(out == pt, "{name}: whole object differs");

        for r in ["1000-70999", "-5", "65530-65545", "0-"] {
            let range = ByteRange::parse(r).expect("range");
            let mut got = Vec::new();
            env.s3
                .get_range_decrypted(&obj, &open, range, &mut got, &GetOptions::default())
                .await
                .expect("ranged get");
            let (a, b) = match r {
                "1000-70999" => (1000, 71_000.min(len)),
                "-5" => (len - 5, len),
                "65530-65545" => (65_530, 65_546),
                _ => (0, len),
            };
            assert!(got == pt[a..b], "{name} {r}: range differs");
        }
    }

    // An output that fails mid-way ends the download with its error (the engine is not
    // left blocked on a full channel or on a buffer that never comes back).
    let (obj, open) = opening(&env, &env.url("multipart"), &keys).await;
    let mut failing = FailingWriter(600_000);
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        env.s3
            .get_decrypted(&obj, &open, &mut failing, &GetOptions::default()),
    )
    .await
    .expect("a failed output must end the download")
    .expect_err("the output failed");
    assert!(err.to_string().contains("disk full"), "{err}");

    // Deleting an object removes its companion too.
    let cleanup = env
        .s3
        .delete_object(&env.url("multipart"))
        .await
        .expect("delete_object");
    assert!(
        matches!(cleanup, sealstream::s3::CompanionCleanup::Deleted(_)),
        "{cleanup:?}"
    );
    let left: Vec<String> = env
        .keys()
        .await
        .into_iter()
        .filter(|k| k.starts_with("multipart"))
        .collect();
    assert!(left.is_empty(), "left after delete_object: {left:?}");

    // An Opening of another object is refused before any GET.
    let other = env.url("other");
    let k1 = [key(1)];
    env.s3
        .put_encrypted(&other, &b"other"[..], sealing(&k1), &PutOptions::default())
        .await
        .expect("put other");
    let (obj, _) = opening(&env, &env.url("small"), &keys).await;
    let (_, wrong) = opening(&env, &other, &k1).await;
    let mut out = Vec::new();
    let err = env
        .s3
        .get_decrypted(&obj, &wrong, &mut out, &GetOptions::default())
        .await
        .expect_err("another object's Opening");
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    assert!(err.to_string().contains("another object"), "{err}");
    assert!(out.is_empty());
}

async fn tamper(test: &str) {
    let env = setup(test).await;
    let keys = [key(1)];
    let pt = data(3 * 65536 + 10);
    let url = env.url("t");
    env.s3
        .put_encrypted(&url, &pt[..], sealing(&keys), &PutOptions::default())
        .await
        .expect("put");
    // Flip one byte of chunk 1 with the plain client, keeping the metadata.
    let got = env
        .plain
        .get_object()
        .bucket(&env.bucket)
        .key("t")
        .send()
        .await
        .expect("get");
    let meta = got.metadata().cloned();
    let mut body = got
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes()
        .to_vec();
    body[65536 + 16 + 100] ^= 1;
    env.plain
        .put_object()
        .bucket(&env.bucket)
        .key("t")
        .set_metadata(meta)
        .body(body.into())
        .send()
        .await
        .expect("put tampered");
    let (obj, open) = opening(&env, &url, &keys).await;
    let mut out = Vec::new();
    let err = env
        .s3
        .get_decrypted(&obj, &open, &mut out, &GetOptions::default())
        .await
        .expect_err("tampered");
    assert!(matches!(err, Error::ChunkAuth { index: 1 }), "{err}");
    // Chunk 0 is authentic and may have been released; nothing of chunk 1 or later.
    assert!(
        out.len() <= 65536 && out == pt[..out.len()],
        "{} bytes",
        out.len()
    );
    // A range inside the tampered chunk releases nothing.
    let mut out = Vec::new();
    let err = env
        .s3
        .get_range_decrypted(
            &obj,
            &open,
            ByteRange::parse("70000-70010").unwrap(),
            &mut out,
            &GetOptions::default(),
        )
        .await
        .expect_err("tampered range");
    assert!(matches!(err, Error::ChunkAuth { index: 1 }), "{err}");
    assert!(out.is_empty(), "{} bytes released", out.len());
}

async fn cancel_by_token(test: &str) {
    let env = setup(test).await;
    let url = env.url("c/obj");
    let token = CancellationToken::new();
    let s3 = env.s3.clone();
    let opts = PutOptions {
        cancel: Some(token.clone()),
        ..PutOptions::default()
    };
    let u = url.clone();
    // An endless input: only the token can end this upload.
    let task = tokio::spawn(async move {
        s3.put_encrypted(&u, tokio::io::repeat(7), sealing(&twelve()), &opts)
            .await
    });
    env.wait_for_upload().await;
    assert_eq!(env.keys().await.len(), 1, "the companion is written first");
    token.cancel();
    let err = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the cancelled upload must stop (its input never ends)")
        .expect("join")
        .expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled(_)), "{err}");
    // Cleaned up before the error was returned: no waiting here.
    env.assert_nothing_left("cancelled by token").await;
}

async fn cancel_by_drop(test: &str) {
    let env = setup(test).await;
    let url = env.url("d/obj");
    let s3 = env.s3.clone();
    let u = url.clone();
    let task = tokio::spawn(async move {
        s3.put_encrypted(
            &u,
            tokio::io::repeat(7),
            sealing(&twelve()),
            &PutOptions::default(),
        )
        .await
    });
    env.wait_for_upload().await;
    task.abort(); // drops the upload's future mid-way
    assert!(task.await.expect_err("aborted").is_cancelled());
    // The drop guards clean up in the background on this runtime.
    let t = Instant::now();
    while env.uploads().await > 0 || !env.keys().await.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "left behind after the future was dropped: {} uploads, objects {:?}",
            env.uploads().await,
            env.keys().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn abort_all(test: &str) {
    let env = setup(test).await;
    let url = env.url("a/obj");
    let s3 = env.s3.clone();
    let u = url.clone();
    let task = tokio::spawn(async move {
        s3.put_encrypted(
            &u,
            tokio::io::repeat(7),
            sealing(&twelve()),
            &PutOptions::default(),
        )
        .await
    });
    env.wait_for_upload().await;
    // The handle (here a clone) reaches the upload: what the CLI's signal handler does.
    env.s3.abort_all().await;
    let err = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the aborted upload must stop (its input never ends)")
        .expect("join")
        .expect_err("aborted upload fails");
    assert!(matches!(err, Error::Storage(_)), "{err}");
    env.assert_nothing_left("abort_all").await;
}

/// An upload that fails (no such bucket) returns its error even though its input never
/// ends nor yields again: the input is not awaited once the uploader has stopped.
async fn failure_with_a_stalled_input(test: &str) {
    let env = setup(test).await;
    let url = S3Url::parse(&format!("s3://{}-missing/x", env.bucket)).expect("url");
    let (mut w, r) = tokio::io::duplex(1 << 20);
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        w.write_all(&vec![7u8; 8 * MIB]).await.expect("write");
        // Keep the stream open, silent, for longer than the test may take.
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(w);
    });
    let err = tokio::time::timeout(
        Duration::from_secs(60),
        env.s3
            .put_encrypted(&url, r, sealing(&[key(1)]), &PutOptions::default()),
    )
    .await
    .expect("a failed upload must return while its input is silent")
    .expect_err("no such bucket");
    let kind = err.service_error().map(|s| s.kind());
    assert_eq!(
        kind,
        Some(sealstream::error::ServiceErrorKind::NotFound),
        "{err}"
    );
    writer.abort();
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn a_failed_upload_returns_while_its_input_is_silent_multi_thread() {
    failure_with_a_stalled_input("failed_upload_silent_input_mt").await;
}

#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn a_failed_upload_returns_while_its_input_is_silent_current_thread() {
    failure_with_a_stalled_input("failed_upload_silent_input_ct").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn round_trips_multi_thread() {
    round_trips("round_trips_multi_thread").await;
}

#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn round_trips_current_thread() {
    round_trips("round_trips_current_thread").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn tamper_multi_thread() {
    tamper("tamper_multi_thread").await;
}

#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn tamper_current_thread() {
    tamper("tamper_current_thread").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn cancel_by_token_multi_thread() {
    cancel_by_token("cancel_by_token_multi_thread").await;
}

#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn cancel_by_token_current_thread() {
    cancel_by_token("cancel_by_token_current_thread").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn dropping_the_upload_future_cleans_up_multi_thread() {
    cancel_by_drop("dropping_the_upload_future_cleans_up_multi_thread").await;
}

#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn dropping_the_upload_future_cleans_up_current_thread() {
    cancel_by_drop("dropping_the_upload_future_cleans_up_current_thread").await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn abort_all_reaches_the_uploads_of_the_handle() {
    abort_all("abort_all_reaches_the_uploads_of_the_handle").await;
}

// ---- what a service needs: served ranges, create-only conflicts, 416, no thread per call ----

/// `get_decrypted` / `get_range_decrypted` / `plan_range` report what they serve: the
/// start, the length and the total plaintext length only when it is authenticated (the
/// final chunk opened as final), so an HTTP handler sets Content-Length / Content-Range
/// from it. An unsatisfiable range is its own variant (HTTP 416), found after the final
/// chunk authenticated the length, with nothing written.
async fn served_ranges(test: &str) {
    use sealstream::s3::Served;
    let env = setup(test).await;
    let keys = [key(1)];
    let len = 3 * 65536 + 100; // four chunks, the last one 100 bytes
    let pt = data(len);
    let url = env.url("served");
    env.s3
        .put_encrypted(&url, &pt[..], sealing(&keys), &PutOptions::default())
        .await
        .expect("put");
    let (obj, open) = opening(&env, &url, &keys).await;
    let len = len as u64;

    let mut out = Vec::new();
    let whole = env
        .s3
        .get_decrypted(&obj, &open, &mut out, &GetOptions::default())
        .await
        .expect("whole");
    assert_eq!(
        whole,
        Served {
            start: 0,
            len,
            total: Some(len),
            chunks: 4
        }
    );

    // (range, planned total, served total, start, len)
    let cases = [
        // Depends on the end: the final chunk is authenticated while planning.
        ("-5", Some(len), Some(len), len - 5, 5),
        ("196600-", Some(len), Some(len), 196_600, len - 196_600),
        ("100-999999", Some(len), Some(len), 100, len - 100),
        // Inside the object: the final chunk is never read, the total is not claimed.
        ("1000-1999", None, None, 1000, 1000),
        // Inside the final chunk without its last byte: authenticated only by streaming it.
        ("196610-196620", None, Some(len), 196_610, 11),
    ];
    for (r, planned_total, total, start, n) in cases {
        let range = ByteRange::parse(r).expect("range");
        let planned = env.s3.plan_range(&obj, &open, range).await.expect("plan");
        let want = Served {
            start,
            len: n,
            total: planned_total,
            chunks: 0,
        };
        assert_eq!(planned.served(), want, "{r}: planned");
        let mut got = Vec::new();
        let served = env
            .s3
            .get_planned_range(&obj, &open, &planned, &mut got, &GetOptions::default())
            .await
            .expect("planned range");
        assert_eq!(
            (served.start, served.len, served.total),
            (start, n, total),
            "{r}"
        );
        assert!(served.chunks >= 1, "{r}: {served:?}");
        assert_eq!(got.len() as u64, n, "{r}");
        assert!(
            got == pt[start as usize..(start + n) as usize],
            "{r}: bytes"
        );
        // The one-call form serves the same.
        let mut again = Vec::new();
        let one = env
            .s3
            .get_range_decrypted(&obj, &open, range, &mut again, &GetOptions::default())
            .await
            .expect("range");
        assert_eq!(one, served, "{r}");
        assert!(again == got, "{r}");
    }
    let served = |start, n, total| Served {
        start,
        len: n,
        total,
        chunks: 1,
    };
    assert_eq!(
        served(len - 5, 5, Some(len)).content_range().as_deref(),
        Some(format!("bytes {}-{}/{len}", len - 5, len - 1).as_str())
    );
    assert_eq!(
        served(1000, 1000, None).content_range().as_deref(),
        Some("bytes 1000-1999/*")
    );
    assert_eq!(served(0, 0, Some(0)).content_range(), None);

    // Unsatisfiable: typed, with the authenticated length, nothing written.
    for (r, start) in [
        ("196708-", len),
        ("999999-", 999_999),
        ("196708-196800", len),
    ] {
        let range = ByteRange::parse(r).expect("range");
        let mut got = Vec::new();
        let e = env
            .s3
            .get_range_decrypted(&obj, &open, range, &mut got, &GetOptions::default())
            .await
            .expect_err("unsatisfiable");
        assert!(
            matches!(e, Error::RangeNotSatisfiable { start: s, plaintext_len } if s == start && plaintext_len == len),
            "{r}: {e:?}"
        );
        assert!(got.is_empty());
        let e = env.s3.plan_range(&obj, &open, range).await.expect_err(r);
        assert!(matches!(e, Error::RangeNotSatisfiable { .. }), "{r}: {e:?}");
    }
    // A malformed range stays a plain invalid argument (HTTP 400, not 416).
    let e = env
        .s3
        .plan_range(&obj, &open, ByteRange::Inclusive(9, 3))
        .await
        .expect_err("9-3");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");

    // A plan is for the object version it was made against.
    let planned = env
        .s3
        .plan_range(&obj, &open, ByteRange::Suffix(5))
        .await
        .expect("plan");
    env.s3
        .put_encrypted(
            &url,
            &pt[..1000],
            sealing(&keys),
            &PutOptions {
                force: true,
                ..PutOptions::default()
            },
        )
        .await
        .expect("replace");
    let (newer, open2) = opening(&env, &url, &keys).await;
    let e = env
        .s3
        .get_planned_range(
            &newer,
            &open2,
            &planned,
            &mut Vec::new(),
            &GetOptions::default(),
        )
        .await
        .expect_err("plan of another version");
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn downloads_report_what_they_served_and_416_is_typed() {
    served_ranges("served_ranges").await;
}

/// Create-only (no `force`): an object that exists before is `OutputExists` up front; one
/// that another writer creates while the upload runs makes S3's `If-None-Match: *` fail at
/// completion, reported as `OutputExists` too (never as a message to parse), the other
/// writer's object kept and no multipart upload left. With `force` the upload replaces.
async fn create_only_conflicts(test: &str) {
    let env = setup(test).await;
    let keys = [key(1)];
    let url = env.url("race");
    let put_plain = |body: &'static [u8]| {
        env.plain
            .put_object()
            .bucket(&env.bucket)
            .key("race")
            .body(body.to_vec().into())
            .send()
    };

    // Created while the upload is mid-way (its multipart upload exists).
    let (mut w, r) = tokio::io::duplex(1 << 20);
    let s3 = env.s3.clone();
    let u = url.clone();
    let task = tokio::spawn(async move {
        s3.put_encrypted(&u, r, sealing(&[key(1)]), &PutOptions::default())
            .await
    });
    use tokio::io::AsyncWriteExt;
    w.write_all(&data(7 * MIB)).await.expect("write");
    env.wait_for_upload().await;
    put_plain(b"someone else's").await.expect("racing put");
    w.write_all(&data(1000)).await.expect("write");
    drop(w); // end of input: the upload completes, conditionally
    let err = tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("upload ends")
        .expect("join")
        .expect_err("created meanwhile");
    assert!(matches!(err, Error::OutputExists(_)), "{err:?}");
    let body = env
        .plain
        .get_object()
        .bucket(&env.bucket)
        .key("race")
        .send()
        .await
        .expect("get")
        .body
        .collect()
        .await
        .expect("body")
        .into_bytes();
    assert_eq!(
        &body[..],
        b"someone else's",
        "the racing object was overwritten"
    );
    assert_eq!(env.uploads().await, 0, "multipart upload left");

    // Existing before: refused up front, nothing written.
    let err = env
        .s3
        .put_encrypted(&url, &b"x"[..], sealing(&keys), &PutOptions::default())
        .await
        .expect_err("exists");
    assert!(matches!(err, Error::OutputExists(_)), "{err:?}");

    // force: replaces.
    env.s3
        .put_encrypted(
            &url,
            &b"mine"[..],
            sealing(&keys),
            &PutOptions {
                force: true,
                ..PutOptions::default()
            },
        )
        .await
        .expect("force");
    let (obj, open) = opening(&env, &url, &keys).await;
    let mut out = Vec::new();
    env.s3
        .get_decrypted(&obj, &open, &mut out, &GetOptions::default())
        .await
        .expect("get");
    assert_eq!(out, b"mine");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn create_only_conflicts_are_output_exists() {
    create_only_conflicts("create_only_conflicts").await;
}

/// This process's thread count.
#[cfg(target_os = "linux")]
fn threads() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .expect("Threads: in /proc/self/status")
}

/// The most threads this process had while `f` ran (sampled every millisecond, not
/// counting the sampler itself).
#[cfg(target_os = "linux")]
async fn peak_threads<F: std::future::Future>(f: F) -> (F::Output, usize) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let peak = std::sync::Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(threads(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let out = f.await;
    stop.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    (out, peak.load(Ordering::Relaxed).saturating_sub(1))
}

/// Eight uploads and eight downloads at once start no thread per call: the crypto runs on
/// the shared pool (already started by a first round trip), the I/O in this runtime's task.
/// (Through `spawn_blocking` around the blocking engine, each call held a blocking thread
/// plus the engine's reader thread: 16 or more extra.)
#[cfg(target_os = "linux")]
#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn concurrent_transfers_start_no_thread_per_call() {
    // Counts the threads of the whole process: alone in a process of its own.
    if !common::in_own_process("s3_async::concurrent_transfers_start_no_thread_per_call") {
        return;
    }
    let env = setup("no_thread_per_call").await;
    let keys = [key(1)];
    let pt = data(3 * MIB);
    let url = |i: usize| env.url(&format!("t{i}"));
    // Warm-up: the global pool and the HTTP connection pool exist before measuring.
    env.s3
        .put_encrypted(&url(99), &pt[..], sealing(&keys), &PutOptions::default())
        .await
        .expect("warm-up put");
    let (obj, open) = opening(&env, &url(99), &keys).await;
    env.s3
        .get_decrypted(&obj, &open, &mut Vec::new(), &GetOptions::default())
        .await
        .expect("warm-up get");
    let base = threads();

    let (_, peak_up) = peak_threads(futures_util::future::join_all((0..8).map(|i| {
        let (s3, u, pt) = (env.s3.clone(), url(i), &pt);
        async move {
            s3.put_encrypted(&u, &pt[..], sealing(&[key(1)]), &PutOptions::default())
                .await
                .expect("put")
        }
    })))
    .await;
    let mut objects = Vec::new();
    for i in 0..8 {
        objects.push(opening(&env, &url(i), &keys).await);
    }
    let (outs, peak_down) = peak_threads(futures_util::future::join_all(objects.iter().map(
        |(obj, open)| {
            let s3 = env.s3.clone();
            async move {
                let mut out = Vec::new();
                s3.get_decrypted(obj, open, &mut out, &GetOptions::default())
                    .await
                    .expect("get");
                out
            }
        },
    )))
    .await;
    assert!(outs.iter().all(|o| *o == pt), "round trips differ");
    // A little slack for the runtime's own blocking pool (e.g. a file or DNS helper).
    assert!(
        peak_up <= base + 3 && peak_down <= base + 3,
        "threads: {base} before, {peak_up} during 8 uploads, {peak_down} during 8 downloads"
    );
    eprintln!("threads: {base} before, {peak_up} during 8 uploads, {peak_down} during 8 downloads");
}

/// A part that fails while the input is silent (a quiet socket between two writes of a
/// client) ends the upload at once with that part's error and aborts the multipart
/// upload: the parts in flight are watched while the next part fills, not only when it is
/// handed over (which, with a silent input, would be never).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn a_part_failing_while_the_input_is_silent_ends_the_upload() {
    use common::proxy::{Fault, Proxy};
    use tokio::io::AsyncWriteExt;
    let env = setup("part_fails_input_silent").await;
    let up = moto::endpoint("part_fails_input_silent").expect("emulator");
    let proxy = Proxy::start(&up);
    // Part 2 is refused every time (403 is not retried).
    proxy.fail_part(2, None, Fault::aws(403, "AccessDenied"));
    let s3 = S3::from_conf(
        &caller_config(&proxy.url).await,
        S3Settings {
            part_size: 5 * MIB as u64,
            concurrency: 3,
            ..S3Settings::default()
        },
    )
    .expect("from_conf");
    let url = env.url("quiet/obj");
    let (mut w, r) = tokio::io::duplex(1 << 20);
    let writer = tokio::spawn(async move {
        // Parts 1 and 2 (part 2 goes out once the encryptor knows more follows: its
        // 1 MiB batches close on a byte past them) and a bit of part 3, then silence.
        w.write_all(&data(13 * MIB)).await.expect("write");
        tokio::time::sleep(Duration::from_secs(600)).await;
        drop(w);
    });
    let err = tokio::time::timeout(
        Duration::from_secs(30),
        s3.put_encrypted(&url, r, sealing(&[key(1)]), &PutOptions::default()),
    )
    .await
    .expect("a failed part must end the upload while its input is silent")
    .expect_err("part 2 refused");
    assert_eq!(
        err.service_error().map(|s| s.kind()),
        Some(sealstream::error::ServiceErrorKind::AccessDenied),
        "{err}"
    );
    assert!(err.to_string().contains("UploadPart 2"), "{err}");
    writer.abort();
    env.assert_nothing_left("part failed, input silent").await;
}

/// The blocking layer is the async one under `block_on`: its engine options' `CancelToken`
/// stops an upload whose input never ends, with `Error::Cancelled` after the multipart
/// upload and the companion were removed.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn the_blocking_layer_cancels_by_its_engine_token() {
    let env = setup("blocking_cancel_token").await;
    let url = env.url("bc/obj");
    let token = sealstream::stream::CancelToken::new();
    let (s3, t) = (env.s3.clone(), token.clone());
    let task = tokio::task::spawn_blocking(move || {
        let s3 = sealstream::s3::blocking::S3::from_async(s3).expect("blocking handle");
        let opts = sealstream::s3::blocking::PutOptions {
            engine: sealstream::stream::EngineOptions {
                cancel: Some(&t),
                ..Default::default()
            },
            ..Default::default()
        };
        s3.put_encrypted(&url, std::io::repeat(7), sealing(&twelve()), &opts)
    });
    env.wait_for_upload().await;
    token.cancel();
    let Ok(joined) = tokio::time::timeout(Duration::from_secs(30), task).await else {
        // Stop the endless upload (the handles share their live uploads) before failing,
        // or the blocking thread would keep the runtime, and the emulator, busy.
        env.s3.abort_all().await;
        panic!("the cancelled upload must stop (its input never ends)");
    };
    let err = joined.expect("join").expect_err("cancelled");
    assert!(matches!(err, Error::Cancelled(_)), "{err}");
    env.assert_nothing_left("blocking layer, cancelled by token")
        .await;
}
