//! Issue 14 hardening of ranged reads and saved headers (items 3, 21, and the range parts of
//! 22 and 25):
//!
//! * one planner (`range::plan_authenticated`) for files and S3: an end-relative range
//!   (`-N`, `START-`), a range reaching or passing the end and an unsatisfiable range first
//!   authenticate the final chunk, so a truncated or extended object fails with exit 4 and
//!   writes nothing — on S3 with one small extra ranged GET;
//! * every ranged GET is pinned to the ETag seen by HEAD: an object replaced between the
//!   GETs of one download fails with a storage error and writes nothing;
//! * `START > END` is a usage error before anything is read (FORMAT.md §9);
//! * `decrypt BODY --header-from H` refuses an H with bytes after its header (§15.2).
//!
//! S3 tests run against the emulator through the fault proxy (`tests/it/common/proxy.rs`).
// Most of this file drives the binary; its helpers are unused without the `cli` feature.
#![cfg_attr(not(feature = "cli"), allow(dead_code, unused_imports))]

use crate::common;

use std::io::{Read, Seek, SeekFrom};
use std::process::{Command, Output, Stdio};

use common::moto::{self, endpoint};
use common::proxy::Proxy;
use common::*;
use sealstream::engine::EngineOptions;
use sealstream::format::Layout;
use sealstream::keys::KeyProvider;
use sealstream::range::{self, ByteRange};
use sealstream::{Context, Error, Header, Suite, envelope};

const CS: usize = 4096;
/// Body bytes of one full 4 KiB chunk.
const STRIDE: usize = CS + 16;
/// Plaintext of the test objects: 10 full chunks and a 100-byte final chunk (11 chunks).
const LEN: usize = 10 * CS + 100;

/// Ranges whose answer depends on where the plaintext ends, each spanning several chunks
/// of an object cut to 8 chunks, so a planner that trusted the claimed length would write
/// authentic but misplaced chunks before failing on the (non-final) claimed last chunk.
const END_DEPENDENT: &[&str] = &["-10000", "4096-", "0-999999", "20000-32767"];
/// The ones of [`END_DEPENDENT`] that do not end exactly at the cut object's claimed end.
const OPEN_OR_PAST: &[&str] = &["-10000", "4096-", "0-999999"];
/// Unsatisfiable for the claimed length of the cut object (32768 bytes), not for the real
/// one: only an authenticated final chunk may turn these into "bad range" (exit 2).
const PAST_CLAIMED_END: &[&str] = &["35000-", "35000-35010"];

fn encrypt_file(s: &Scratch, pt: &[u8]) -> (std::path::PathBuf, Vec<u8>) {
    let k = s.keyfile("k.key", &key(1));
    let input = s.path("in.bin");
    write(&input, pt);
    let out = s.path("in.seal");
    let o = s.run(&[
        "encrypt",
        input.to_str().unwrap(),
        "-k",
        k.to_str().unwrap(),
        "--chunk-size",
        "4KiB",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let ct = std::fs::read(&out).unwrap();
    (k, ct)
}

// ---- the planner, as a library ----

fn cipher_for(ct: &[u8]) -> (sealstream::PayloadCipher, Layout) {
    let k = key(1);
    let (h, hl) = Header::parse(ct).unwrap();
    let providers: [&dyn KeyProvider; 1] = [&k];
    let cipher = envelope::unlock(&h, &providers, &Context::new(), Default::default()).unwrap();
    let layout = Layout::from_lengths(hl as u64, h.chunk_size, ct.len() as u64).unwrap();
    (cipher, layout)
}

/// The planner reads the final chunk exactly when the range depends on the end, before
/// resolving it; a range inside non-final chunks needs no read; `START > END` and `-0` are
/// refused before any read.
#[test]
fn the_planner_authenticates_the_end_before_using_it() {
    let ct = seal(&data(LEN), &key(1), Suite::ChaCha20Poly1305, CS as u32);
    let (cipher, layout) = cipher_for(&ct);
    let last = layout.chunk_count - 1;
    let final_span = (layout.chunk_offset(last), layout.chunk_ciphertext_len(last));
    for (r, reads_end) in [
        (ByteRange::Suffix(1), true),
        (ByteRange::From(0), true),
        (ByteRange::Inclusive(0, LEN as u64 - 1), true),
        (ByteRange::Inclusive(5, 1 << 40), true),
        (ByteRange::Inclusive(0, 9), false),
        (ByteRange::Inclusive(CS as u64, 3 * CS as u64), false),
    ] {
        let mut asked = None;
        let plan = range::plan_authenticated(r, &layout, &cipher, |off, len| {
            asked = Some((off, len));
            let (off, len) = (off as usize, len as usize);
            Ok(ct[off..off + len].to_vec())
        })
        .unwrap();
        assert_eq!(asked.is_some(), reads_end, "{r:?}");
        if reads_end {
            assert_eq!(asked, Some(final_span), "{r:?}");
        }
        assert_eq!(plan, range::plan(r, &layout).unwrap(), "{r:?}");
    }
    // Unsatisfiable: a usage error, but only after the final chunk was read and opened.
    let mut read = false;
    let e = range::plan_authenticated(ByteRange::From(LEN as u64), &layout, &cipher, |o, l| {
        read = true;
        Ok(ct[o as usize..(o + l) as usize].to_vec())
    })
    .unwrap_err();
    assert!(matches!(e, Error::RangeNotSatisfiable { .. }), "{e}");
    assert!(
        read,
        "unsatisfiable reported without authenticating the final chunk"
    );
    // A forged final chunk: authentication failure, not a bad range.
    let e = range::plan_authenticated(ByteRange::From(LEN as u64), &layout, &cipher, |o, l| {
        let mut c = ct[o as usize..(o + l) as usize].to_vec();
        c[0] ^= 1;
        Ok(c)
    })
    .unwrap_err();
    assert!(e.is_authentication(), "{e}");
    // START > END and -0 are not ranges: refused before anything is read.
    for r in [ByteRange::Inclusive(5, 3), ByteRange::Suffix(0)] {
        let e = range::plan_authenticated(r, &layout, &cipher, |_, _| {
            panic!("{r:?}: read before the range was validated")
        })
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{r:?}: {e}");
    }
}

/// A source that must not be touched.
struct Untouchable;

impl Read for Untouchable {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        panic!("read before the range was validated")
    }
}

impl Seek for Untouchable {
    fn seek(&mut self, _: SeekFrom) -> std::io::Result<u64> {
        panic!("seek before the range was validated")
    }
}

#[cfg(feature = "cli")]
#[test]
fn start_after_end_is_a_usage_error_before_any_read() {
    // Library: decrypt_range refuses it without touching the input.
    let ct = seal(&data(100), &key(1), Suite::ChaCha20Poly1305, CS as u32);
    let (cipher, layout) = cipher_for(&ct);
    let e = range::decrypt_range(
        Untouchable,
        layout.header_len,
        CS as u32,
        &cipher,
        ByteRange::Inclusive(5, 3),
        Vec::new(),
        &EngineOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
    // CLI: exit 2 with the reason, even for an input that does not exist (nothing is opened).
    let s = Scratch::new();
    let (k, _) = encrypt_file(&s, &data(LEN));
    for input in ["in.seal", "missing.seal"] {
        let out = s.path("out.bin");
        let o = s.run(&[
            "decrypt",
            input,
            "-k",
            k.to_str().unwrap(),
            "--range",
            "5-3",
            "-o",
            out.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 2, "{input}: {}", stderr(&o));
        assert!(stderr(&o).contains("END is before START"), "{}", stderr(&o));
        assert!(!out.exists(), "{input}: output created");
    }
}

// ---- the file path ----

#[cfg(feature = "cli")]
#[test]
fn file_ranges_on_a_truncated_file_fail_before_writing() {
    let s = Scratch::new();
    let (k, ct) = encrypt_file(&s, &data(LEN));
    let hl = header_len(&ct);
    let cut = s.path("cut.seal");
    write(&cut, &ct[..hl + 8 * STRIDE]);
    for spec in END_DEPENDENT.iter().chain(PAST_CLAIMED_END) {
        let o = s.run(&[
            "decrypt",
            cut.to_str().unwrap(),
            "-k",
            k.to_str().unwrap(),
            "--range",
            spec,
        ]);
        assert_eq!(code(&o), 4, "{spec}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{spec}: {} bytes written",
            o.stdout.len()
        );
    }
    // The same through --header-from (a body downloaded by another tool, then cut).
    let (header, body) = (s.path("cut.header"), s.path("cut.body"));
    write(&header, &ct[..hl]);
    write(&body, &ct[hl..hl + 8 * STRIDE]);
    for spec in END_DEPENDENT.iter().chain(PAST_CLAIMED_END) {
        let o = s.run(&[
            "decrypt",
            body.to_str().unwrap(),
            "--header-from",
            header.to_str().unwrap(),
            "-k",
            k.to_str().unwrap(),
            "--range",
            spec,
        ]);
        assert_eq!(code(&o), 4, "--header-from, {spec}: {}", stderr(&o));
        assert!(o.stdout.is_empty(), "--header-from, {spec}: bytes written");
    }
}

#[cfg(feature = "cli")]
#[test]
fn header_from_refuses_trailing_bytes() {
    let s = Scratch::new();
    let pt = data(LEN);
    let (k, ct) = encrypt_file(&s, &pt);
    let hl = header_len(&ct);
    let body = s.path("body");
    write(&body, &ct[hl..]);
    let header = s.path("header");
    write(&header, &ct[..hl]);
    let decrypt = |h: &std::path::Path, out: &std::path::Path, extra: &[&str]| -> Output {
        let mut args = vec![
            "decrypt",
            body.to_str().unwrap(),
            "--header-from",
            h.to_str().unwrap(),
            "-k",
            k.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        s.run(&args)
    };
    // Exactly the header: fine, whole and ranged.
    let out = s.path("ok.out");
    let o = decrypt(&header, &out, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(&out).unwrap() == pt);

    let with = |extra: &[u8]| [&ct[..hl], extra].concat();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("the whole sealstream file", ct.clone()),
        ("one stray byte", with(b"\n")),
        ("the header twice", with(&ct[..hl])),
    ];
    for (name, bytes) in cases {
        let h = s.path("bad.header");
        write(&h, &bytes);
        for extra in [&[][..], &["--range", "0-9"][..], &["--range", "-10"][..]] {
            let out = s.path("bad.out");
            let o = decrypt(&h, &out, extra);
            let err = stderr(&o);
            assert_eq!(code(&o), 4, "{name} {extra:?}: {err}");
            assert!(err.contains("trailing bytes"), "{name}: {err}");
            assert!(
                err.contains(&format!("{}-byte header", hl)),
                "{name}: the message names the header length: {err}"
            );
            assert!(!out.exists(), "{name} {extra:?}: output created");
        }
    }
}

// ---- the S3 path (emulator) ----

#[cfg(feature = "cli")]
struct Env {
    s: Scratch,
    proxy: Proxy,
    up: String,
    bucket: String,
    key: std::path::PathBuf,
}

#[cfg(feature = "cli")]
fn setup(test: &str) -> Env {
    let up = endpoint(test).unwrap_or_else(|| {
        panic!("{test} needs the emulator: run scripts/test.sh (AWS_ENDPOINT_URL is not set)")
    });
    let bucket = moto::unique_bucket("srng");
    moto::create_bucket(&up, &bucket);
    let s = Scratch::new();
    let key = s.keyfile("k.key", &key(1));
    Env {
        s,
        proxy: Proxy::start(&up),
        up,
        bucket,
        key,
    }
}

#[cfg(feature = "cli")]
impl Env {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.s.s3_cmd(&self.proxy.url);
        c.args(["--part-size", "5MiB", "--s3-max-attempts", "2"])
            .args(args)
            .args(["-k", self.key.to_str().unwrap()]);
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run sealstream")
    }

    /// Encrypts `pt` with 4 KiB chunks to `key`.
    fn put(&self, key: &str, pt: &[u8]) {
        let p = self.s.path("put.in");
        write(&p, pt);
        let o = self.run(&[
            "encrypt",
            p.to_str().unwrap(),
            "--chunk-size",
            "4KiB",
            "-o",
            &self.url(key),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }

    fn body(&self, key: &str) -> Vec<u8> {
        moto::get_object(&self.up, &self.bucket, key).expect("object exists")
    }

    /// The object's user metadata.
    fn meta(&self, key: &str) -> Vec<(String, String)> {
        moto::head_object(&self.up, &self.bucket, key)
            .expect("object exists")
            .1
    }

    /// Stores `body` with `meta` at `key`, directly at the emulator (another writer).
    fn replace(&self, key: &str, body: &[u8], meta: &[(String, String)]) {
        let m: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        moto::put_object(&self.up, &self.bucket, key, body, &m);
    }

    fn etag(&self, key: &str) -> String {
        moto::head_etag(&self.up, &self.bucket, key).expect("ETag")
    }
}

#[cfg(feature = "cli")]
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn s3_end_relative_ranges_on_a_cut_or_extended_object_write_nothing() {
    let e = setup("s3_end_relative_ranges_on_a_cut_or_extended_object_write_nothing");
    let pt = data(LEN);
    e.put("r", &pt);
    let body = e.body("r");
    let meta = e.meta("r");
    assert_eq!(body.len(), 10 * STRIDE + 116);
    // Intact: right bytes.
    for (spec, a, b) in [
        ("-10000", LEN - 10000, LEN - 1),
        ("4096-", 4096, LEN - 1),
        ("0-999999", 0, LEN - 1),
    ] {
        let o = e.run(&["decrypt", &e.url("r"), "--range", spec]);
        assert_eq!(code(&o), 0, "{spec}: {}", stderr(&o));
        assert!(o.stdout == pt[a..=b], "{spec}: wrong bytes");
    }
    // Cut to 8 chunks: every range of both lists depends on the (claimed) end. Cut inside
    // chunk 8 (claimed end 32851) and extended by a chunk (claimed end 45155): the ranges
    // that still reach or pass the claimed end.
    let all: Vec<&str> = END_DEPENDENT
        .iter()
        .chain(PAST_CLAIMED_END)
        .copied()
        .collect();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "cut at a chunk boundary",
            body[..8 * STRIDE].to_vec(),
            all.clone(),
        ),
        (
            "cut inside a chunk",
            body[..8 * STRIDE + 100].to_vec(),
            [OPEN_OR_PAST, PAST_CLAIMED_END, &["20000-32851", "32852-"]].concat(),
        ),
        (
            "a chunk appended",
            [&body[..], &body[..STRIDE]].concat(),
            [OPEN_OR_PAST, &["40000-45155", "50000-"]].concat(),
        ),
    ];
    for (name, bad, specs) in cases {
        e.replace("r", &bad, &meta);
        for spec in specs {
            // To stdout: nothing may reach it.
            let o = e.run(&["decrypt", &e.url("r"), "--range", spec]);
            assert_eq!(code(&o), 4, "{name}, {spec}: {}", stderr(&o));
            assert!(
                o.stdout.is_empty(),
                "{name}, {spec}: {} bytes written before the end was authenticated",
                o.stdout.len()
            );
            // To a file: nothing at the final path.
            let out = e.s.path("r.out");
            let o = e.run(&[
                "decrypt",
                &e.url("r"),
                "--range",
                spec,
                "-o",
                out.to_str().unwrap(),
            ]);
            assert_eq!(code(&o), 4, "{name}, {spec}: {}", stderr(&o));
            assert!(!out.exists(), "{name}, {spec}: output left behind");
        }
        e.replace("r", &body, &meta);
    }
}

#[cfg(feature = "cli")]
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn s3_unsatisfiable_range_is_reported_after_authenticating_the_final_chunk() {
    let e = setup("s3_unsatisfiable_range_is_reported_after_authenticating_the_final_chunk");
    e.put("u", &data(LEN));
    let body_len = 10 * STRIDE + 116;
    let final_chunk = format!("bytes={}-{}", 10 * STRIDE, body_len - 1);
    for spec in [format!("{LEN}-"), format!("{}-{}", LEN + 5, LEN + 10)] {
        e.proxy.reset_counters();
        let o = e.run(&["decrypt", &e.url("u"), "--range", &spec]);
        assert_eq!(code(&o), 2, "{spec}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("only {LEN} bytes long")),
            "{}",
            stderr(&o)
        );
        assert_eq!(
            e.proxy.ranges(),
            std::slice::from_ref(&final_chunk),
            "{spec}: the final chunk is fetched (and opened) before the range is judged"
        );
    }
    // START > END: refused before any request.
    e.proxy.reset_counters();
    let o = e.run(&["decrypt", &e.url("u"), "--range", "5-3"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(e.proxy.requests().is_empty(), "{:?}", e.proxy.requests());
}

#[cfg(feature = "cli")]
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn s3_ranged_gets_are_pinned_to_the_etag_and_a_replaced_object_fails() {
    let e = setup("s3_ranged_gets_are_pinned_to_the_etag_and_a_replaced_object_fails");
    let pt = data(LEN);
    e.put("p", &pt);
    e.put("other", &data(LEN + 7));
    let etag = e.etag("p");

    // Every GET of a download carries If-Match: <the ETag HEAD returned>.
    e.proxy.reset_counters();
    let o = e.run(&["decrypt", &e.url("p"), "--range", "-10000"]);
    let gets: Vec<_> = e
        .proxy
        .requests()
        .into_iter()
        .filter(|r| r.op == "GetObject")
        .collect();
    for g in &gets {
        assert_eq!(g.header("if-match"), Some(etag.as_str()), "{g:?}");
    }
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout == pt[LEN - 10000..]);
    assert_eq!(gets.len(), 2, "final chunk, then the covering chunks");

    // The object is replaced between the final-chunk GET and the covering GET.
    let (original, meta) = (e.body("p"), e.meta("p"));
    let (other, other_meta) = (e.body("other"), e.meta("other"));
    for (name, replacement, replacement_meta) in [
        ("another object", other.clone(), &other_meta),
        // Same data key and header: the old chunks would still authenticate.
        (
            "the same object, extended",
            [&original[..], b"x"].concat(),
            &meta,
        ),
    ] {
        let paused = e.proxy.pause("GetObject", 1);
        let child = e
            .cmd(&["decrypt", &e.url("p"), "--range", "-10000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sealstream");
        paused.wait();
        e.replace("p", &replacement, replacement_meta);
        paused.release();
        let o = child.wait_with_output().expect("wait");
        let err = stderr(&o);
        assert_eq!(code(&o), 6, "{name}: {err}");
        assert!(err.contains("changed"), "{name}: {err}");
        assert!(
            o.stdout.is_empty(),
            "{name}: {} bytes written",
            o.stdout.len()
        );
        e.replace("p", &original, &meta);
    }

    // To a file: nothing at the final path.
    let out = e.s.path("p.out");
    let paused = e.proxy.pause("GetObject", 1);
    let child = e
        .cmd(&[
            "decrypt",
            &e.url("p"),
            "--range",
            "0-",
            "-o",
            out.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sealstream");
    paused.wait();
    e.replace("p", &other, &other_meta);
    paused.release();
    let o = child.wait_with_output().expect("wait");
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(!out.exists(), "output left behind");
}
