//! Regression tests for what the fuzz targets (fuzz/, docs/FUZZING.md) found, plus a cheap
//! replay of the checked-in seed corpora through the same properties, so the normal test
//! run covers them without cargo-fuzz.
//!
//! Both findings so far were fixed in 9b59796. The raw (minimised) fuzzer inputs are in
//! fuzz/regressions/<target>/, which every `scripts/fuzz.sh` run replays as seeds; reproduce
//! one with `cargo fuzz run -s none <target> fuzz/regressions/<target>/<file>`. A test for a
//! bug that is reported but not fixed yet would be `#[ignore = "bug: ..."]` until the fix.

use crate::common;

use std::io::Cursor;
use std::path::{Path, PathBuf};

use common::*;
use sealstream::Backend;
use sealstream::engine::EngineOptions;
use sealstream::envelope;
use sealstream::error::{Error, HeaderError};
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::KeyProvider;
use sealstream::keys::local::LocalKey;
use sealstream::range::{self, ByteRange};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(d: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap_or_else(|e| panic!("read {}: {e}", d.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Finding 1 (header target, fixed in 9b59796): read_from and parse disagreed on short input.
// ---------------------------------------------------------------------------------------

/// fuzz/regressions/header/read-from-short-bad-magic is `SESEAL` (6 bytes). `parse` checks
/// the magic on whatever bytes exist and reports `BadMagic`; `read_from` used to read the
/// whole 84-byte fixed part first and report `Truncated`, so `sealstream decrypt` and
/// `inspect` (which use `read_from`) called a short non-sealstream file "input ends inside
/// the header" instead of "not a sealstream file", against the intent of `parse_fixed`.
#[test]
fn read_from_agrees_with_parse_on_short_non_sealstream_input() {
    let input = std::fs::read(fuzz_dir().join("regressions/header/read-from-short-bad-magic"))
        .expect("regression input");
    for data in [&input[..], b"hello", b"SEALSTRX", b"PK\x03\x04"] {
        let parsed = Header::parse(data).map(|(_, n)| n);
        let streamed = Header::read_from(&mut &data[..])
            .map(|(_, n)| n)
            .map_err(|e| match e {
                Error::Header(h) => h,
                other => panic!("read_from: non-header error {other:?}"),
            });
        assert_eq!(parsed, Err(HeaderError::BadMagic), "{data:?}");
        assert_eq!(streamed, parsed, "{data:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Finding 2 (range target, fixed in 9b59796): degenerate ranges underflowed in decrypt_range.
// ---------------------------------------------------------------------------------------

/// `ByteRange::Suffix(0)` and `ByteRange::Inclusive(s, e)` with `e < s` are representable
/// (public enum) although `ByteRange::parse` never returns them. `range::plan` used to yield
/// a plan with `start > end`, and `decrypt_range` computed `plan.end - plan.start + 1`
/// (src/range.rs, `limit:`), which panicked with "attempt to subtract with overflow" in
/// builds with overflow checks (debug, tests, fuzzing). Without overflow checks (release)
/// the limit wrapped (by inspection): `Suffix(0)` returned an empty Ok, or a misleading
/// `Truncated` when the plaintext length is a multiple of the chunk size; `Inclusive(s, e)`
/// with `s - e >= 2` got an unbounded limit and returned the plaintext from `s` to the end
/// of chunk `e / chunk_size` (bytes that were not asked for).
/// Expected now: `Error::InvalidArgument`, nothing written, never a panic.
#[test]
fn degenerate_ranges_are_rejected_without_panic() {
    let k = key(7);
    for (len, r) in [
        (100usize, ByteRange::Suffix(0)),
        (4096, ByteRange::Suffix(0)),
        (100, ByteRange::Inclusive(5, 3)),
        (100, ByteRange::Inclusive(99, 0)),
    ] {
        let ct = seal(&data(len), &k, Suite::Aes256Gcm, 4096);
        let (header, hl) = Header::parse(&ct).expect("header");
        let providers: [&dyn KeyProvider; 1] = [&k];
        let cipher =
            envelope::unlock(&header, &providers, &Context::new(), Backend::Ring).expect("unlock");
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut out = Vec::new();
            let r = range::decrypt_range(
                Cursor::new(&ct[..]),
                hl as u64,
                header.chunk_size,
                &cipher,
                r,
                &mut out,
                &EngineOptions::default(),
            );
            (r.map(|s| s.plaintext_bytes), out)
        }));
        let (r, out) = result.unwrap_or_else(|_| panic!("decrypt_range panicked for {r:?}"));
        assert!(out.is_empty(), "{r:?}");
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "len {len}, {r:?}"
        );
    }
}

/// The CLI is not affected: its parser never produces degenerate ranges.
#[test]
fn range_parser_never_returns_degenerate_ranges() {
    assert!(ByteRange::parse("-0").is_err());
    assert!(ByteRange::parse("5-3").is_err());
    assert!(ByteRange::parse("-0KiB").is_err());
    assert_eq!(ByteRange::parse("3-3").unwrap(), ByteRange::Inclusive(3, 3));
    assert_eq!(ByteRange::parse("-1").unwrap(), ByteRange::Suffix(1));
}

// ---------------------------------------------------------------------------------------
// Seed-corpus replay (the fuzz targets' properties on the checked-in inputs).
// ---------------------------------------------------------------------------------------

#[test]
fn header_corpus_round_trips() {
    let mut parsed = 0;
    for p in files_in(&fuzz_dir().join("corpus/header")) {
        let data = std::fs::read(&p).expect("seed");
        let (h, len) = Header::parse(&data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let (h2, len2) = Header::read_from(&mut &data[..]).expect("read_from");
        assert_eq!((&h, len), (&h2, len2));
        assert_eq!(h.to_bytes().expect("to_bytes"), data[..len]);
        parsed += 1;
    }
    assert!(parsed >= 5, "header seed corpus is missing");
}

/// Raw-mode decrypt seeds (`[mode byte] file`) are valid files for the fuzz key `[7; 32]`.
#[test]
fn decrypt_corpus_raw_seeds_decrypt() {
    let k = key(7);
    let mut n = 0;
    for p in files_in(&fuzz_dir().join("corpus/decrypt")) {
        let data = std::fs::read(&p).expect("seed");
        if data.first().is_none_or(|b| b & 1 == 1) {
            continue; // structured-mode seed
        }
        open(&data[1..], &k).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        n += 1;
    }
    assert!(n >= 5, "decrypt seed corpus is missing");
}

/// Every keyfile seed parses (and re-parses to the same key) or fails with a key-file error.
/// The corpus must be there and cover both outcomes: an empty or all-failing corpus would
/// make this check vacuous (issue 14, item 25).
#[test]
fn keyfile_corpus_parses_or_fails_cleanly() {
    let fuzz_key_id = LocalKey::from_bytes([7; 32]).id().to_string();
    let (mut ok, mut failed) = (Vec::new(), Vec::new());
    for p in files_in(&fuzz_dir().join("corpus/keyfile")) {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&p).expect("seed");
        match LocalKey::parse(&text, "seed") {
            Ok(k) => {
                let again = LocalKey::parse(&k.to_text(), "seed").expect("re-parse");
                assert_eq!(again.id(), k.id());
                assert_eq!(k.id(), fuzz_key_id, "{name}: not the fuzz key [7; 32]");
                ok.push(name);
            }
            Err(e) => {
                assert!(matches!(e, Error::KeyFile { .. }), "{name}: {e:?}");
                failed.push(name);
            }
        }
    }
    // The named seeds mean what their names say.
    for must_parse in ["valid", "valid-crlf"] {
        assert!(
            ok.iter().any(|n| n == must_parse),
            "seed {must_parse} missing or rejected (ok: {ok:?}, failed: {failed:?})"
        );
    }
    for must_fail in ["bad-id", "future-version"] {
        assert!(
            failed.iter().any(|n| n == must_fail),
            "seed {must_fail} missing or accepted (ok: {ok:?}, failed: {failed:?})"
        );
    }
    assert!(
        ok.len() + failed.len() >= 5,
        "keyfile seed corpus is missing or nearly empty: {ok:?} {failed:?}"
    );
}

/// The s3_metadata seeds are meaningful: the `inline-*` and `companion-*` seeds hold valid
/// headers in both placements, the `part-wise-*` ones the same as object-form version 2,
/// and `lost` is a metadata set without sealstream's entries.
#[cfg(feature = "s3")]
#[test]
fn s3_metadata_seeds_are_valid_object_metadata() {
    use sealstream::s3::object::{self, HeaderLocation};
    let dir = fuzz_dir().join("corpus/s3_metadata");
    let mut seen = 0;
    for f in files_in(&dir) {
        let raw = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let (meta, companion) = match raw.iter().position(|&b| b == 0) {
            Some(i) => (&raw[..i], &raw[i + 1..]),
            None => (&raw[..], &[][..]),
        };
        let meta: std::collections::BTreeMap<String, String> = std::str::from_utf8(meta)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let loc = object::locate(&meta);
        if name.starts_with("inline-") {
            let Ok(HeaderLocation::Inline(b)) = loc else {
                panic!("{name}: {loc:?}")
            };
            object::parse_header(&b, None).unwrap_or_else(|e| panic!("{name}: {e}"));
            seen += 1;
        } else if name.starts_with("companion-") {
            let Ok(HeaderLocation::Companion { commitment, .. }) = loc else {
                panic!("{name}: {loc:?}")
            };
            object::parse_header(companion, Some(&commitment))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            seen += 1;
        } else if name == "lost" {
            assert!(loc.unwrap_err().contains("metadata was lost"));
        } else if name.starts_with("part-wise-") {
            // Object-form version 2: the manifest pointer, and the header placed as in v1.
            let (parts, v1) = object::part_wise(&meta)
                .unwrap_or_else(|e| panic!("{name}: {e}"))
                .unwrap_or_else(|| panic!("{name}: not part-wise"));
            assert!(parts.contains(".sealstream-parts-"), "{name}");
            match object::locate(&v1) {
                Ok(HeaderLocation::Inline(b)) => {
                    object::parse_header(&b, None).unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                Ok(HeaderLocation::Companion { commitment, .. }) => {
                    object::parse_header(companion, Some(&commitment))
                        .unwrap_or_else(|e| panic!("{name}: {e}"));
                }
                other => panic!("{name}: {other:?}"),
            }
            seen += 1;
        }
    }
    assert!(seen >= 8, "seeds missing in {}", dir.display());
}

/// The s3ec_metadata seeds are meaningful: each is an Amazon S3 Encryption Client envelope
/// the parser accepts (V2 and V3, in the object's metadata and in an instruction file).
#[cfg(feature = "s3ec")]
#[test]
fn s3ec_metadata_seeds_are_valid_envelopes() {
    use sealstream::s3::s3ec::metadata;
    let dir = fuzz_dir().join("corpus/s3ec_metadata");
    let mut seen = 0;
    for f in files_in(&dir) {
        let raw = std::fs::read(&f).unwrap();
        let (meta, instruction) = match raw.iter().position(|&b| b == 0) {
            Some(i) => (&raw[..i], Some(&raw[i + 1..])),
            None => (&raw[..], None),
        };
        let meta: std::collections::BTreeMap<String, String> = std::str::from_utf8(meta)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let env =
            metadata::parse(&meta, instruction).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(env.instruction_file, instruction.is_some());
        seen += 1;
    }
    assert!(seen >= 4, "seeds missing in {}", dir.display());
}
