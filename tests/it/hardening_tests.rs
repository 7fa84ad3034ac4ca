//! Issue 14 item 25: checks that used to pass without checking.
//!
//! Stray bytes after a full final chunk: a body whose last chunk is full and is followed by
//! 1–15 more bytes (fewer than a tag) must be rejected as truncated (exit 4), through the
//! library (whole-stream and ranged, every batch geometry) and through the CLI, with no
//! output left behind. Without the engine's check the stray bytes would be silently dropped
//! and the file would decrypt with exit 0.

use crate::common;

use std::io::Cursor;

use common::*;
use sealstream::Backend;
use sealstream::engine::EngineOptions;
use sealstream::error::Error;
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::KeyProvider;
use sealstream::range::{ByteRange, decrypt_range};
use sealstream::testkit::ChunkCipher as _;

/// Plaintext sizes that end on a chunk boundary for the chunk sizes used below.
const CASES: &[(u32, usize)] = &[(4096, 8192), (8192, 8192), (4096, 4096)];

fn is_stray_rejection(e: &Error) -> bool {
    e.is_authentication() && matches!(e, Error::Truncated { .. } | Error::ChunkAuth { .. })
}

#[test]
fn stray_bytes_after_full_final_chunk_are_rejected_by_the_library() {
    let k = key(7);
    for &(cs, len) in CASES {
        let pt = data(len);
        let ct = seal(&pt, &k, Suite::Aes256Gcm, cs);
        // The intact file opens (the fixture is right).
        assert_eq!(open(&ct, &k).expect("intact"), pt);
        for stray in 1..=15usize {
            let mut bad = ct.clone();
            bad.extend(std::iter::repeat_n(0xA5u8, stray));
            // Every batch geometry: the stray bytes in the same batch as the final chunk,
            // or alone in a batch after it (carried by the look-ahead byte).
            for batch_bytes in [cs as usize, 2 * cs as usize, 1 << 20] {
                for threads in [1, 3] {
                    let engine = EngineOptions {
                        threads,
                        batch_bytes,
                        progress: None,
                        ..EngineOptions::default()
                    };
                    let r = open_with(&bad, &[&k], &Context::new(), Backend::Ring, engine);
                    match r {
                        Ok(out) => panic!(
                            "cs={cs} len={len} stray={stray} batch={batch_bytes} threads={threads}: \
                             decrypted {} bytes despite stray trailing bytes",
                            out.len()
                        ),
                        Err(e) => assert!(
                            is_stray_rejection(&e),
                            "cs={cs} stray={stray}: wrong error {e:?}"
                        ),
                    }
                }
            }
        }
    }
}

#[test]
fn stray_bytes_after_full_final_chunk_are_rejected_by_ranged_reads() {
    let k = key(7);
    for &(cs, len) in CASES {
        let pt = data(len);
        let ct = seal(&pt, &k, Suite::Aes256Gcm, cs);
        for stray in [1usize, 5, 15] {
            let mut bad = ct.clone();
            bad.extend(std::iter::repeat_n(0x5Au8, stray));
            for range in [
                ByteRange::Inclusive(0, 9),
                ByteRange::Inclusive(len as u64 - 10, len as u64 - 1),
                ByteRange::Suffix(10),
                ByteRange::From(1),
            ] {
                let mut r = Cursor::new(&bad[..]);
                let (h, hl) = Header::read_from(&mut r).expect("header");
                let providers: Vec<&dyn KeyProvider> = vec![&k];
                let cipher = sealstream::envelope::unlock(
                    &h,
                    &providers,
                    &Context::new(),
                    Default::default(),
                )
                .expect("unwrap");
                let mut out = Vec::new();
                let res = decrypt_range(
                    Cursor::new(&bad[..]),
                    hl as u64,
                    h.chunk_size,
                    &cipher,
                    range,
                    &mut out,
                    &EngineOptions::default(),
                );
                match res {
                    Ok(_) => panic!(
                        "cs={cs} stray={stray} range={range:?}: ranged read succeeded ({} bytes)",
                        out.len()
                    ),
                    Err(e) => {
                        assert!(is_stray_rejection(&e), "range={range:?}: wrong error {e:?}");
                        assert!(
                            out.is_empty(),
                            "range={range:?}: released {} bytes",
                            out.len()
                        );
                    }
                }
            }
        }
    }
}

/// The issue's exact case: an 8192-byte file plus 5 bytes must be exit 4 with no output.
#[cfg(feature = "cli")]
#[test]
fn cli_rejects_8192_byte_file_plus_5_stray_bytes() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(9));
    let kf = kf.to_str().expect("utf-8 path");
    let pt = data(8192);
    write(&s.path("p"), &pt);
    for cs in ["4KiB", "8KiB"] {
        let o = s.run(&["encrypt", "-k", kf, "--chunk-size", cs, "p", "-o", "p.seal"]);
        assert_eq!(code(&o), 0, "encrypt: {}", stderr(&o));
        let mut ct = std::fs::read(s.path("p.seal")).expect("read sealed");
        // Sanity: the intact file decrypts.
        let o = s.run(&["decrypt", "-k", kf, "p.seal", "-o", "ok.out"]);
        assert_eq!(code(&o), 0, "intact decrypt: {}", stderr(&o));
        assert_eq!(std::fs::read(s.path("ok.out")).expect("read"), pt);
        std::fs::remove_file(s.path("ok.out")).expect("rm");

        ct.extend_from_slice(&[1, 2, 3, 4, 5]);
        write(&s.path("bad.seal"), &ct);
        let o = s.run(&["decrypt", "-k", kf, "bad.seal", "-o", "bad.out"]);
        assert_eq!(code(&o), 4, "cs={cs}: stderr: {}", stderr(&o));
        assert!(
            !s.path("bad.out").exists(),
            "cs={cs}: output file left behind"
        );
        assert!(
            stderr(&o).contains("truncated"),
            "cs={cs}: message should say truncated: {}",
            stderr(&o)
        );
        // Through stdin/stdout too: nothing on stdout.
        let o = s
            .cmd()
            .args(["decrypt", "-k", kf, "-"])
            .stdin(std::fs::File::open(s.path("bad.seal")).expect("open"))
            .output()
            .expect("run");
        assert_eq!(code(&o), 4, "stdin cs={cs}: {}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "stdin cs={cs}: {} bytes on stdout",
            o.stdout.len()
        );
        for f in ["p.seal", "bad.seal"] {
            std::fs::remove_file(s.path(f)).expect("rm");
        }
    }
    assert_eq!(s.files(), vec!["k.key".to_string(), "p".to_string()]);
}

// ---- scripts/fuzz.sh counts a target as ok only with libFuzzer's final line ----

/// Runs scripts/fuzz.sh for one target with a fake `cargo` first in PATH (and a private
/// HOME, so the script's `~/.cargo/bin` is not found) whose `cargo fuzz run` behaves as
/// `mode` says. Nothing is built or fuzzed.
fn fuzz_sh_with_fake_cargo(mode: &str) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).expect("mkdir");
    let fake = bin.join("cargo");
    std::fs::write(
        &fake,
        r##"#!/usr/bin/env bash
case "$1 $2" in
    "fuzz --version") echo "cargo-fuzz 0.13.2" ;;
    "fuzz list") echo header ;;
    "fuzz build") exit 0 ;;
    "fuzz run")
        case "$FAKE_FUZZ_MODE" in
            done) echo "#42	DONE   cov: 1 ft: 1 corp: 1/1b exec/s: 42 rss: 30Mb"
                  echo "Done 42 runs in 1 second(s)" ;;
            silent) echo "some output, but libFuzzer never finished" ;;
            zero) echo "Done 0 runs in 1 second(s)" ;;
            crash) echo "==1== ERROR: libFuzzer: deadly signal"; exit 77 ;;
        esac ;;
    *) echo "fake cargo: unexpected $*" >&2; exit 99 ;;
esac
"##,
    )
    .expect("write fake cargo");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let home = tmp.path().join("home");
    std::fs::create_dir(&home).expect("mkdir home");
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fuzz.sh");
    std::process::Command::new("bash")
        .arg(script)
        .args(["1", "header"])
        .env("PATH", path)
        .env("HOME", &home)
        .env("TMPDIR", tmp.path())
        .env("FAKE_FUZZ_MODE", mode)
        .output()
        .expect("run fuzz.sh")
}

#[test]
fn fuzz_sh_requires_libfuzzers_final_line() {
    let o = fuzz_sh_with_fake_cargo("done");
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(code(&o), 0, "done: {out}{}", stderr(&o));
    assert!(out.contains("ok   header"), "{out}");

    for mode in ["silent", "zero", "crash"] {
        let o = fuzz_sh_with_fake_cargo(mode);
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(code(&o), 1, "{mode}: {out}{}", stderr(&o));
        assert!(!out.contains("ok   header"), "{mode}: counted as ok: {out}");
        assert!(stderr(&o).contains("FAIL header"), "{mode}: {}", stderr(&o));
    }
}

// ---- the chunk-count limit on open (issue 14, item 25 audit) ----

/// Chunk indices stop at `MAX_CHUNKS` (2^32): a body that would reach past it is rejected
/// as too many chunks before any chunk there is opened, even though the 64-bit nonce would
/// not wrap. Both the engine's batch check and `open_chunk`'s own check guard this; the test
/// fails only when both are gone (docs/TESTING.md, redundant guards).
#[test]
fn chunk_indices_past_the_limit_are_rejected_on_open() {
    use sealstream::PayloadCipher;
    use sealstream::engine::{self, OpenParams};
    use sealstream::format::limits::MAX_CHUNKS;
    let cipher = PayloadCipher::new(Suite::Aes256Gcm, Backend::Ring, &[0x42; 32]);
    let cs = 4096u32;
    // Two chunks sealed at the last legal index and one past it (the seal side refuses the
    // second, so it is sealed as index 0 and carries a valid-looking tag, which must not
    // matter: the index check comes first).
    let mut body = Vec::new();
    let mut c0 = vec![0u8; cs as usize + 16];
    cipher
        .seal_chunk(MAX_CHUNKS - 1, false, &mut c0, cs as usize)
        .expect("seal last legal index");
    body.extend_from_slice(&c0);
    let mut c1 = vec![0u8; 100 + 16];
    cipher.seal_chunk(0, true, &mut c1, 100).expect("seal");
    body.extend_from_slice(&c1);
    assert!(matches!(
        cipher.seal_chunk(MAX_CHUNKS, true, &mut c1.clone(), 100),
        Err(Error::TooManyChunks)
    ));
    for batch_bytes in [cs as usize, 1 << 20] {
        let opts = EngineOptions {
            threads: 1,
            batch_bytes,
            progress: None,
            ..EngineOptions::default()
        };
        let mut out = Vec::new();
        let r = engine::open(
            &cipher,
            cs,
            &body[..],
            &mut out,
            OpenParams {
                first_index: MAX_CHUNKS - 1,
                ..OpenParams::default()
            },
            &opts,
        );
        assert!(
            matches!(r, Err(Error::TooManyChunks)),
            "batch {batch_bytes}: {r:?}"
        );
        // One chunk starting exactly at the limit.
        let r = engine::open(
            &cipher,
            cs,
            &c1[..],
            &mut Vec::new(),
            OpenParams {
                first_index: MAX_CHUNKS,
                ..OpenParams::default()
            },
            &opts,
        );
        assert!(
            matches!(r, Err(Error::TooManyChunks)),
            "at the limit, batch {batch_bytes}: {r:?}"
        );
    }
}

// ---- batch inputs: symlinks inside a walked directory are skipped ----

/// `encrypt DIR --output-dir OUT` walks DIR without following symlinks (src/cli/batch.rs:
/// following them could loop or leave the tree): a symlink to a file outside the tree and a
/// symlink loop produce no output, and the regular file next to them is encrypted.
#[cfg(feature = "cli")]
#[test]
fn batch_walk_skips_symlinks() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(31));
    let kp = kf.to_str().expect("utf-8 path");
    std::fs::create_dir_all(s.path("src/sub")).expect("mkdir");
    write(&s.path("src/a.bin"), &data(1000));
    write(&s.path("outside.bin"), &data(77));
    std::os::unix::fs::symlink(s.path("outside.bin"), s.path("src/link.bin")).expect("symlink");
    std::os::unix::fs::symlink(s.path("src"), s.path("src/sub/loop")).expect("symlink");
    let o = s.run(&["encrypt", "-k", kp, "src", "--output-dir", "enc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(s.path("enc/src/a.bin.seal").exists());
    assert!(
        !s.path("enc/src/link.bin.seal").exists(),
        "a symlink inside the walked tree was followed"
    );
    assert!(
        !s.path("enc/src/sub/loop").exists(),
        "a symlinked directory was walked"
    );
}

// ---- file ranges: "unsatisfiable" only after the end was authenticated ----

/// A file truncated at a chunk boundary claims a shorter plaintext. A range past that claimed
/// end (but inside the real one) must be reported as truncation (exit 4, the final chunk does
/// not authenticate as final), not as an unsatisfiable range (exit 2): FORMAT.md §9 requires
/// the final chunk to be authenticated before the plaintext length is used.
#[test]
fn range_past_a_truncated_end_is_truncation_not_unsatisfiable() {
    let k = key(7);
    let cs = 4096u32;
    let pt = data(3 * cs as usize + 100);
    let ct = seal(&pt, &k, Suite::Aes256Gcm, cs);
    let cut = &ct[..ct.len() - (100 + 16)]; // the final chunk dropped
    let claimed = 3 * cs as u64;
    for range in [
        ByteRange::Inclusive(claimed + 10, claimed + 50),
        ByteRange::From(claimed + 10),
    ] {
        let (h, hl) = Header::read_from(&mut &cut[..]).expect("header");
        let providers: Vec<&dyn KeyProvider> = vec![&k];
        let cipher =
            sealstream::envelope::unlock(&h, &providers, &Context::new(), Default::default())
                .expect("unwrap");
        let mut out = Vec::new();
        let r = decrypt_range(
            Cursor::new(cut),
            hl as u64,
            h.chunk_size,
            &cipher,
            range,
            &mut out,
            &EngineOptions::default(),
        );
        match r {
            Ok(_) => panic!("{range:?}: succeeded on a truncated file"),
            Err(e) => {
                assert!(e.is_authentication(), "{range:?}: {e}");
                assert!(out.is_empty(), "{range:?}: released {} bytes", out.len());
            }
        }
    }
}

// ---- S3 object metadata: both header placements at once is tampering ----

/// An object's metadata names its header either inline (`sealstream-header`) or in a
/// companion (`sealstream-companion` + `sealstream-commitment`), never both: both at once is
/// rejected (the header would otherwise be taken from whichever the reader prefers). Built
/// from the checked-in fuzz seeds, so no emulator is needed.
#[cfg(feature = "s3")]
#[test]
fn s3_metadata_with_both_header_and_companion_is_rejected() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/s3_metadata");
    let read_meta = |name: &str| -> std::collections::BTreeMap<String, String> {
        let raw = std::fs::read(dir.join(name)).expect("seed");
        let meta = raw.split(|&b| b == 0).next().unwrap_or(&[]);
        std::str::from_utf8(meta)
            .expect("utf-8 seed")
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let inline = read_meta("inline-0");
    let companion = read_meta("companion-0");
    assert!(sealstream::s3::object::locate(&inline).is_ok());
    assert!(sealstream::s3::object::locate(&companion).is_ok());
    let mut both = companion.clone();
    both.extend(inline);
    assert!(both.contains_key("sealstream-header") && both.contains_key("sealstream-companion"));
    let r = sealstream::s3::object::locate(&both);
    assert!(r.is_err(), "both placements accepted: {r:?}");
}
