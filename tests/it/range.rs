//! Authenticated ranged decryption: correct bytes, only the covering chunks read, and the
//! end of the plaintext authenticated before anything depends on it.

use crate::common;

use std::io::Cursor;

use common::*;
use sealstream::engine::EngineOptions;
use sealstream::envelope;
use sealstream::error::Error;
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::KeyProvider;
use sealstream::range::{ByteRange, decrypt_range};

const CS: u64 = 4096;
const STRIDE: u64 = CS + 16;

struct Fixture {
    ct: Vec<u8>,
    pt: Vec<u8>,
    hl: u64,
}

fn fixture(len: usize) -> Fixture {
    let k = key(1);
    let pt = data(len);
    let ct = seal(&pt, &k, Suite::ChaCha20Poly1305, CS as u32);
    let hl = header_len(&ct) as u64;
    Fixture { ct, pt, hl }
}

/// Decrypts a range; returns the bytes and how many input bytes were read after the header.
fn ranged(ct: &[u8], range: ByteRange) -> Result<(Vec<u8>, u64), Error> {
    let k = key(1);
    let mut r = CountingReader {
        inner: Cursor::new(ct),
        read: 0,
    };
    let (h, hl) = Header::read_from(&mut r)?;
    let header_read = r.read;
    let providers: [&dyn KeyProvider; 1] = [&k];
    let cipher = envelope::unlock(&h, &providers, &Context::new(), Default::default())?;
    let mut out = Vec::new();
    decrypt_range(
        &mut r,
        hl as u64,
        h.chunk_size,
        &cipher,
        range,
        &mut out,
        &EngineOptions::default(),
    )?;
    Ok((out, r.read - header_read))
}

fn chunks_spanned(start: u64, end: u64) -> u64 {
    end / CS - start / CS + 1
}

#[test]
fn ranges_match_plaintext_slices_and_read_only_covering_chunks() {
    let f = fixture(10 * CS as usize + 123); // 11 chunks
    let len = f.pt.len() as u64;
    let cases: Vec<(u64, u64)> = vec![
        (0, 0),                     // 1 byte at the start
        (0, CS - 1),                // exactly chunk 0
        (5, 100),                   // inside chunk 0
        (CS - 1, CS),               // across a chunk boundary
        (3 * CS + 7, 3 * CS + 7),   // 1 byte in the middle
        (2 * CS + 100, 6 * CS + 5), // several chunks
        (4 * CS, 5 * CS - 1),       // one whole middle chunk
        (len - 1, len - 1),         // last byte (reaches the end)
        (len - 200, len + 5000),    // END past the end is clamped
    ];
    for (s, e) in cases {
        let (got, read) = ranged(&f.ct, ByteRange::Inclusive(s, e)).unwrap();
        let e2 = e.min(len - 1);
        assert!(got == f.pt[s as usize..=e2 as usize], "range {s}-{e}");
        let mut allowed = chunks_spanned(s, e2) * STRIDE;
        if e2 == len - 1 {
            allowed += STRIDE; // the final chunk is authenticated first, then read again
        }
        assert!(read <= allowed, "range {s}-{e}: read {read} > {allowed}");
        assert!(
            read >= (e2 - s + 1),
            "range {s}-{e}: read {read} too little"
        );
    }
}

#[test]
fn open_ended_and_suffix_ranges() {
    let f = fixture(5 * CS as usize + 10);
    let len = f.pt.len();
    let (got, _) = ranged(&f.ct, ByteRange::From(3 * CS + 1)).unwrap();
    assert!(got == f.pt[(3 * CS + 1) as usize..]);
    let (got, read) = ranged(&f.ct, ByteRange::Suffix(20)).unwrap();
    assert!(got == f.pt[len - 20..]);
    assert!(read <= 3 * STRIDE);
    let (got, _) = ranged(&f.ct, ByteRange::Suffix(10 * CS)).unwrap();
    assert!(
        got == f.pt,
        "suffix longer than the file returns everything"
    );
    let (got, _) = ranged(&f.ct, ByteRange::From(0)).unwrap();
    assert!(got == f.pt);
}

#[test]
fn unsatisfiable_ranges_are_usage_errors() {
    let f = fixture(1000);
    // Typed apart from other invalid arguments (a server answers 416), with the start and
    // the authenticated length.
    for (r, start) in [
        (ByteRange::From(1000), 1000),
        (ByteRange::Inclusive(5000, 6000), 5000),
    ] {
        let e = ranged(&f.ct, r).unwrap_err();
        assert!(
            matches!(
                e,
                Error::RangeNotSatisfiable {
                    start: s,
                    plaintext_len: 1000
                } if s == start
            ),
            "{e:?}"
        );
        assert!(!e.is_authentication());
    }
    let empty = fixture(0);
    assert!(matches!(
        ranged(&empty.ct, ByteRange::Suffix(1)),
        Err(Error::RangeNotSatisfiable {
            start: 0,
            plaintext_len: 0
        })
    ));
    // Malformed ranges stay InvalidArgument.
    assert!(matches!(
        ranged(&f.ct, ByteRange::Inclusive(5, 3)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn truncation_cannot_shift_an_end_relative_range() {
    // Drop the final chunk at a chunk boundary: the file now "ends" one chunk earlier.
    // A suffix or open-ended range must fail, not return bytes from the wrong place.
    let f = fixture(6 * CS as usize); // 6 full chunks, last one final
    let cut = &f.ct[..(f.hl + 5 * STRIDE) as usize];
    for r in [
        ByteRange::Suffix(10),
        ByteRange::From(2 * CS),
        ByteRange::Inclusive(5 * CS - 10, 5 * CS - 1),
    ] {
        let e = ranged(cut, r).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "{r:?}: {e:?}");
    }
    // A range that stays clear of the (missing) end still reads authentic bytes.
    let (got, _) = ranged(cut, ByteRange::Inclusive(0, 99)).unwrap();
    assert!(got == f.pt[..100]);
}

#[test]
fn extension_cannot_shift_an_end_relative_range() {
    // Append a copy of chunk 0 after the final chunk.
    let f = fixture(6 * CS as usize);
    let c0 = f.ct[f.hl as usize..(f.hl + STRIDE) as usize].to_vec();
    let ext = [f.ct.clone(), c0].concat();
    for r in [ByteRange::Suffix(10), ByteRange::From(CS)] {
        let e = ranged(&ext, r).unwrap_err();
        assert!(e.is_authentication(), "{r:?}: {e:?}");
    }
    // The real last chunk, now in a non-final position, no longer authenticates.
    let e = ranged(&ext, ByteRange::Inclusive(5 * CS, 5 * CS + 10)).unwrap_err();
    assert!(matches!(e, Error::ChunkAuth { index: 5 }), "{e:?}");
}

#[test]
fn tampered_chunk_inside_range_fails_outside_range_is_not_read() {
    let f = fixture(8 * CS as usize);
    let mut bad = f.ct.clone();
    bad[(f.hl + 6 * STRIDE + 3) as usize] ^= 1; // chunk 6
    assert!(matches!(
        ranged(&bad, ByteRange::Inclusive(6 * CS, 6 * CS)),
        Err(Error::ChunkAuth { index: 6 })
    ));
    let (got, _) = ranged(&bad, ByteRange::Inclusive(CS, 2 * CS)).unwrap();
    assert!(got == f.pt[CS as usize..=(2 * CS) as usize]);
}

#[test]
fn range_parser() {
    assert_eq!(
        ByteRange::parse("0-1023").unwrap(),
        ByteRange::Inclusive(0, 1023)
    );
    assert_eq!(ByteRange::parse("1MiB-").unwrap(), ByteRange::From(1 << 20));
    assert_eq!(ByteRange::parse("-4KiB").unwrap(), ByteRange::Suffix(4096));
    assert_eq!(
        ByteRange::parse("3GiB-3GiB+1MiB").unwrap(),
        ByteRange::Inclusive(3 << 30, (3 << 30) + (1 << 20))
    );
    for bad in ["", "-", "5", "10-5", "a-b", "-0", "1MB-2MB"] {
        let e = ByteRange::parse(bad).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{bad}: {e:?}");
    }
}

#[cfg(feature = "cli")]
#[test]
fn cli_range_matches_slice() {
    let s = Scratch::new();
    let k = key(1);
    let kf = s.keyfile("k.key", &k);
    let f = fixture(3 * CS as usize + 50);
    write(&s.path("f.seal"), &f.ct);
    let kp = kf.to_str().unwrap();
    let o = s.run(&["decrypt", "-k", kp, "--range", "4090-4200", "f.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout == f.pt[4090..=4200]);
    let o = s.run(&[
        "decrypt", "-k", kp, "--range", "-7", "f.seal", "-o", "tail.bin",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        std::fs::read(s.path("tail.bin")).unwrap(),
        &f.pt[f.pt.len() - 7..]
    );
    let o = s.run(&["decrypt", "-k", kp, "--range", "99999-", "f.seal"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = s
        .cmd()
        .args(["decrypt", "-k", kp, "--range", "0-5"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "range from stdin is a usage error");
}
