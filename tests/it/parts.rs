//! The part-wise body (FORMAT.md §17): round trips, ranged reads, and every whole-part
//! tamper (drop, reorder, duplicate, truncate, append, re-upload, swap between objects,
//! foreign manifest) refused with an authentication error.

use crate::common;

use std::io::Cursor;

use sealstream::engine::EngineOptions;
use sealstream::envelope::{self, Opening, PartSealing, Sealing};
use sealstream::format::{Context, Suite};
use sealstream::keys::KeyProvider;
use sealstream::keys::local::LocalKey;
use sealstream::parts::{ManifestError, PartEntry, part_ciphertext_len};
use sealstream::range::ByteRange;
use sealstream::{Backend, Error};

const CS: u32 = 4096;

struct Object {
    sealing: Sealing,
    parts: Vec<(PartEntry, Vec<u8>)>,
    plaintext: Vec<u8>,
}

fn sealing(k: &LocalKey, suite: Suite) -> Sealing {
    Sealing::for_providers(&[k as &dyn KeyProvider], &common::params(suite, CS)).unwrap()
}

fn seal_part(s: &Sealing, number: u32, pt: &[u8]) -> (PartEntry, Vec<u8>) {
    let part: PartSealing = s.seal_part(number).unwrap();
    let mut ct = Vec::new();
    envelope::seal_part_body(&part, CS, pt, &mut ct, &EngineOptions::default()).unwrap();
    assert_eq!(ct.len() as u64, part_ciphertext_len(pt.len() as u64, CS));
    let entry = PartEntry {
        number,
        salt: *part.salt(),
        plaintext_len: pt.len() as u64,
    };
    (entry, ct)
}

/// Parts numbered 1, 2, 5, 6 with sizes that exercise full chunks, a short last chunk, an
/// empty part and a single byte.
fn object(k: &LocalKey, suite: Suite) -> Object {
    let plaintext = common::data(3 * CS as usize + 4 * CS as usize + 1000 + 1);
    let sizes = [
        (1u32, 3 * CS as usize),
        (2, 4 * CS as usize + 1000),
        (5, 0),
        (6, 1),
    ];
    let s = sealing(k, suite);
    let mut parts = Vec::new();
    let mut at = 0;
    for (n, len) in sizes {
        parts.push(seal_part(&s, n, &plaintext[at..at + len]));
        at += len;
    }
    Object {
        sealing: s,
        parts,
        plaintext,
    }
}

impl Object {
    fn manifest(&self) -> Vec<u8> {
        self.sealing
            .part_manifest(self.parts.iter().map(|(e, _)| *e).collect())
            .unwrap()
    }
    fn body(&self) -> Vec<u8> {
        self.parts.iter().flat_map(|(_, c)| c.clone()).collect()
    }
}

fn opening(o: &Object, k: &LocalKey) -> Opening {
    Opening::unlock(
        o.sealing.header().clone(),
        &[k as &dyn KeyProvider],
        &Context::new(),
        Backend::default(),
    )
    .unwrap()
}

fn read(
    opening: &Opening,
    manifest: &[u8],
    body: &[u8],
    range: Option<ByteRange>,
) -> sealstream::Result<Vec<u8>> {
    let layout = opening.part_layout(manifest, body.len() as u64)?;
    let mut out = Vec::new();
    envelope::open_part_wise(
        opening,
        &layout,
        Cursor::new(body),
        range,
        &mut out,
        &EngineOptions::default(),
    )?;
    Ok(out)
}

#[test]
fn round_trip_whole_and_ranges_both_suites() {
    for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
        let k = common::key(1);
        let o = object(&k, suite);
        let op = opening(&o, &k);
        let (m, b) = (o.manifest(), o.body());
        assert_eq!(read(&op, &m, &b, None).unwrap(), o.plaintext);
        let len = o.plaintext.len() as u64;
        let boundaries = [
            0,
            1,
            CS as u64 - 1,
            CS as u64,
            3 * CS as u64 - 1,
            3 * CS as u64,
            len - 2,
            len - 1,
        ];
        for &a in &boundaries {
            for &z in &boundaries {
                if a > z {
                    continue;
                }
                let got = read(&op, &m, &b, Some(ByteRange::Inclusive(a, z))).unwrap();
                assert_eq!(got, o.plaintext[a as usize..=z as usize], "{a}-{z}");
            }
            let got = read(&op, &m, &b, Some(ByteRange::From(a))).unwrap();
            assert_eq!(got, o.plaintext[a as usize..], "{a}-");
        }
        let got = read(&op, &m, &b, Some(ByteRange::Suffix(5000))).unwrap();
        assert_eq!(got, o.plaintext[o.plaintext.len() - 5000..]);
        let err = read(&op, &m, &b, Some(ByteRange::From(len))).unwrap_err();
        assert!(
            matches!(err, Error::RangeNotSatisfiable { start, plaintext_len } if start == len && plaintext_len == len),
            "{err}"
        );
        // The layout's plaintext length is the authenticated one.
        assert_eq!(
            op.part_layout(&m, b.len() as u64).unwrap().plaintext_len(),
            len
        );
    }
}

#[test]
fn salts_are_fresh_for_every_upload_of_a_part() {
    let k = common::key(1);
    let s = sealing(&k, Suite::Aes256Gcm);
    let a = s.seal_part(3).unwrap();
    let b = s.seal_part(3).unwrap();
    assert_ne!(a.salt(), b.salt());
    assert!(matches!(s.seal_part(0), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        s.seal_part(10_001),
        Err(Error::InvalidArgument(_))
    ));
}

fn assert_auth(r: sealstream::Result<Vec<u8>>, what: &str) -> Error {
    let e = r.expect_err(what);
    assert!(
        e.is_authentication(),
        "{what}: not an authentication error: {e}"
    );
    e
}

#[test]
fn flipped_byte_in_any_part_fails() {
    let k = common::key(1);
    let o = object(&k, Suite::Aes256Gcm);
    let op = opening(&o, &k);
    let m = o.manifest();
    let mut offset = 0;
    for (_, ct) in &o.parts {
        for at in [offset, offset + ct.len() - 1] {
            let mut b = o.body();
            b[at] ^= 1;
            let e = assert_auth(read(&op, &m, &b, None), "flip");
            assert!(matches!(e, Error::ChunkAuth { .. }), "{e}");
        }
        offset += ct.len();
    }
}

#[test]
fn whole_parts_dropped_added_or_truncated_fail() {
    let k = common::key(1);
    let o = object(&k, Suite::Aes256Gcm);
    let op = opening(&o, &k);
    let m = o.manifest();
    let mismatch = |e: Error| {
        assert!(
            matches!(
                e,
                Error::PartManifest(ManifestError::BodyLengthMismatch { .. })
            ),
            "{e}"
        )
    };
    // Drop part 2 (the manifest still lists it).
    let dropped: Vec<u8> = o
        .parts
        .iter()
        .filter(|(e, _)| e.number != 2)
        .flat_map(|(_, c)| c.clone())
        .collect();
    mismatch(assert_auth(read(&op, &m, &dropped, None), "drop"));
    // Truncate by one byte, or by the last (1-byte) part.
    let b = o.body();
    mismatch(assert_auth(
        read(&op, &m, &b[..b.len() - 1], None),
        "truncate",
    ));
    mismatch(assert_auth(
        read(&op, &m, &b[..b.len() - 17], None),
        "truncate part",
    ));
    // Append a copy of the last part.
    let mut appended = b.clone();
    appended.extend_from_slice(&o.parts[3].1);
    mismatch(assert_auth(read(&op, &m, &appended, None), "append"));
    // Ranged reads check the length too, before fetching anything.
    mismatch(assert_auth(
        read(&op, &m, &b[..b.len() - 1], Some(ByteRange::Inclusive(0, 0))),
        "ranged truncate",
    ));
}

#[test]
fn reordered_duplicated_reuploaded_or_swapped_parts_fail() {
    let k = common::key(1);
    let s = sealing(&k, Suite::Aes256Gcm);
    let pt = common::data(4 * CS as usize);
    let (half1, half2) = pt.split_at(2 * CS as usize);
    let p1 = seal_part(&s, 1, half1);
    let p2 = seal_part(&s, 2, half2);
    let m = s.part_manifest(vec![p1.0, p2.0]).unwrap();
    let o = Object {
        sealing: s,
        parts: vec![p1.clone(), p2.clone()],
        plaintext: pt.clone(),
    };
    let op = opening(&o, &k);
    assert_eq!(read(&op, &m, &o.body(), None).unwrap(), pt);

    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    // Reordered (same lengths), duplicated.
    assert_auth(read(&op, &m, &cat(&p2.1, &p1.1), None), "reorder");
    assert_auth(read(&op, &m, &cat(&p1.1, &p1.1), None), "duplicate");
    // Ranged reads into the reordered second half fail too.
    assert_auth(
        read(
            &op,
            &m,
            &cat(&p2.1, &p1.1),
            Some(ByteRange::Inclusive(2 * CS as u64, 2 * CS as u64)),
        ),
        "ranged reorder",
    );
    // An earlier upload of part 2 (other salt) in place of the one completed.
    let old2 = seal_part(&o.sealing, 2, half2);
    assert_auth(read(&op, &m, &cat(&p1.1, &old2.1), None), "re-upload");
    // Part 2 of another object under the same data key cannot be told apart by length: the
    // salt and header digest differ, so it fails.
    let other = object(&k, Suite::Aes256Gcm);
    let foreign = seal_part(&other.sealing, 2, half2);
    assert_auth(
        read(&op, &m, &cat(&p1.1, &foreign.1), None),
        "swap between objects",
    );
    // Another object's manifest (valid for that object) does not authenticate here.
    let e = assert_auth(
        read(&op, &other.manifest(), &o.body(), None),
        "foreign manifest",
    );
    assert!(
        matches!(e, Error::PartManifest(ManifestError::MacMismatch)),
        "{e}"
    );
    // A manifest claiming the parts in another order does not exist: numbers must increase.
    let e = o.sealing.part_manifest(vec![p2.0, p1.0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::PartManifest(ManifestError::PartsNotIncreasing { .. })
        ),
        "{e}"
    );
}

#[test]
fn wrong_key_and_resume() {
    let k = common::key(1);
    let o = object(&k, Suite::Aes256Gcm);
    // Another key cannot open it.
    let other = common::key(2);
    assert!(
        Opening::unlock(
            o.sealing.header().clone(),
            &[&other as &dyn KeyProvider],
            &Context::new(),
            Backend::default()
        )
        .is_err()
    );
    // A second process resuming the upload from the header and the unwrapped data key seals
    // parts that the first process's manifest and readers accept.
    let dek = envelope::unwrap_data_key(
        o.sealing.header(),
        &[&k as &dyn KeyProvider],
        &Context::new(),
    )
    .unwrap();
    let resumed = Sealing::resume(o.sealing.header().clone(), &dek, Backend::default()).unwrap();
    let pt = common::data(5000);
    let p = seal_part(&resumed, 9, &pt);
    let mut parts = o.parts.clone();
    parts.push(p);
    let manifest = o
        .sealing
        .part_manifest(parts.iter().map(|(e, _)| *e).collect())
        .unwrap();
    let body: Vec<u8> = parts.iter().flat_map(|(_, c)| c.clone()).collect();
    let got = read(&opening(&o, &k), &manifest, &body, None).unwrap();
    assert_eq!(got, [o.plaintext.clone(), pt].concat());
    // Resuming with another data key is refused by the key commitment.
    let wrong = sealstream::keys::DataKey::generate().unwrap();
    assert!(matches!(
        Sealing::resume(o.sealing.header().clone(), &wrong, Backend::default()),
        Err(Error::CommitmentMismatch)
    ));
}

/// The FORMAT.md §17.6 worked example: the §14 AES-256-GCM header, part 2 of 5000 bytes
/// under part salt `0x80..0x8f`, part 3 empty under `0x90..0x9f`, and their manifest. The
/// expected values were computed by an independent Python implementation of §17 (HMAC-SHA-256
/// HKDF and AES-GCM from the `cryptography` package), not by this crate.
#[test]
fn part_wise_worked_example() {
    use sha2::{Digest, Sha256};
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let seq = |from: u8, n: usize| -> Vec<u8> { (0..n).map(|i| from + i as u8).collect() };
    let kek = LocalKey::from_bytes(seq(0x00, 32).try_into().unwrap());
    let dek = sealstream::keys::DataKey::from_bytes(seq(0x20, 32).try_into().unwrap());
    let ctx = Context::from_pairs([("project", "atlas")]).unwrap();
    let stanza = kek.wrap_with_nonce(&dek, &ctx, seq(0x60, 24).try_into().unwrap());
    let params = sealstream::EncryptParams {
        suite: Suite::Aes256Gcm,
        chunk_size: CS,
        context: ctx,
        ..Default::default()
    };
    let (header, _) = envelope::seal_header(
        &dek,
        seq(0x40, 32).try_into().unwrap(),
        vec![stanza],
        &params,
    )
    .unwrap();
    assert_eq!(
        hex(&header.digest()),
        "43ea0e50407278c49d478981e8520a9a9fc76f7ada2fe1aeebde6f55024ff785"
    );
    let s = Sealing::resume(header.clone(), &dek, Backend::default()).unwrap();
    let pt: Vec<u8> = (0..5000).map(|i| (i % 251) as u8).collect();
    let mut parts = Vec::new();
    for (number, salt, pt) in [(2u32, seq(0x80, 16), &pt[..]), (3, seq(0x90, 16), &[][..])] {
        let p = s.seal_part_with_salt(number, salt.clone().try_into().unwrap());
        let mut ct = Vec::new();
        envelope::seal_part_body(&p, CS, pt, &mut ct, &EngineOptions::default()).unwrap();
        parts.push((
            PartEntry {
                number,
                salt: salt.try_into().unwrap(),
                plaintext_len: pt.len() as u64,
            },
            ct,
        ));
    }
    let manifest = s
        .part_manifest(parts.iter().map(|(e, _)| *e).collect())
        .unwrap();
    let p2 = &parts[0].1;
    let got = [
        hex(&p2[..32]),
        hex(&p2[4096..4112]),
        hex(&p2[p2.len() - 16..]),
        hex(&Sha256::digest(p2)),
        hex(&parts[1].1),
        hex(&manifest),
    ];
    let want = [
        "32809de243c62071da0d53b0d405635bbc800e27539a42367d111bc2973d16a6",
        "954ddf021b69cd024065bdea5c03278c",
        "8a6bd3a1e2cc0f1c32b5e4c1300430a7",
        "6c1b23f9c176b664731a1a49fa43ed6e3826fbcfd5a9e346ab57ba8aa5728f36",
        "85fdc7b44f7508573026f3e39df68276",
        "5345414c50525453010000000000000200000002808182838485868788898a8b8c8d8e8f000000000000138800000003909192939495969798999a9b9c9d9e9f0000000000000000f8b2eab65d56ca3e1aa45805f730df485ffa11d7b07b629e3a72f9c6459cbff6",
    ];
    assert_eq!(got, want);
    // And it decrypts.
    let o = Opening::unlock(
        header,
        &[&kek as &dyn KeyProvider],
        &Context::new(),
        Backend::default(),
    )
    .unwrap();
    let body: Vec<u8> = parts.iter().flat_map(|(_, c)| c.clone()).collect();
    assert_eq!(read(&o, &manifest, &body, None).unwrap(), pt);
}
