//! Part-wise bodies (FORMAT.md §17): a manifest and body built from the input, then edited.
//!
//! Raw input (first byte even): the rest is taken as manifest bytes for a fixed object;
//! verifying them must fail (they are not MACed under the object's key) without panicking.
//! Structured input (first byte odd): parts of fuzzer-chosen sizes sealed under fixed salts,
//! an edit of the body or the manifest (flip, cut, append, swap two parts, drop a part,
//! replace a part with an earlier upload of it), and a range. Checks:
//!
//! * an unedited object decrypts whole and by the range to exactly the original plaintext;
//! * an edited one either fails with an authentication-class error (or `RangeNotSatisfiable`
//!   for an unsatisfiable range), or returns exactly what the unedited one returns; a
//!   failed read released only a prefix of it.
#![no_main]

use std::io::Cursor;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sealstream::engine::EngineOptions;
use sealstream::envelope::{self, EncryptParams, Opening};
use sealstream::format::{Context, Suite};
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::parts::PartEntry;
use sealstream::range::ByteRange;
use sealstream::{Backend, Error};
use sealstream_fuzz::fuzz_key;

const CS: u32 = 4096;

#[derive(Debug, Arbitrary)]
enum Edit {
    None,
    FlipBody(u16, u8),
    FlipManifest(u16, u8),
    CutBody(u16),
    Append(u8),
    SwapParts(u8, u8),
    DropPart(u8),
    OldUpload(u8),
}

#[derive(Debug, Arbitrary)]
struct Case {
    sizes: Vec<u16>,
    edit: Edit,
    range: (u8, u16, u16),
}

fn opening(header: sealstream::Header) -> Opening {
    Opening::unlock(header, &[fuzz_key() as &dyn KeyProvider], &Context::new(), Backend::default())
        .expect("fixed key opens")
}

fn read(o: &Opening, manifest: &[u8], body: &[u8], range: Option<ByteRange>) -> (Vec<u8>, Result<u64, Error>) {
    let mut out = Vec::new();
    let r = o.part_layout(manifest, body.len() as u64).and_then(|layout| {
        envelope::open_part_wise(o, &layout, Cursor::new(body), range, &mut out, &EngineOptions::default())
    });
    (out, r)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let dek = DataKey::from_bytes([9; 32]);
    let stanza = fuzz_key().wrap_with_nonce(&dek, &Context::new(), [1; 24]);
    let params = EncryptParams { suite: Suite::Aes256Gcm, chunk_size: CS, ..EncryptParams::default() };
    let (header, _) = envelope::seal_header(&dek, [2; 32], vec![stanza], &params).expect("header");
    let sealing = envelope::Sealing::resume(header.clone(), &dek, Backend::default()).expect("resume");
    let o = opening(header);
    if mode % 2 == 0 {
        let (_, r) = read(&o, rest, &[0; 64], None);
        let e = r.expect_err("unMACed manifest accepted");
        assert!(e.is_authentication(), "{e}");
        return;
    }
    let Ok(case) = Case::arbitrary(&mut Unstructured::new(rest)) else { return };
    let sizes: Vec<usize> = case.sizes.iter().take(12).map(|&s| usize::from(s) % (3 * CS as usize)).collect();
    if sizes.is_empty() {
        return;
    }
    let total: usize = sizes.iter().sum();
    let plaintext: Vec<u8> = (0..total).map(|i| (i % 253) as u8).collect();
    let (mut entries, mut parts, mut old) = (Vec::new(), Vec::new(), Vec::new());
    let mut at = 0;
    for (i, &len) in sizes.iter().enumerate() {
        let number = 2 * i as u32 + 1;
        let pt = &plaintext[at..at + len];
        at += len;
        let seal = |salt: u8| {
            let p = sealing.seal_part_with_salt(number, [salt; 16]);
            let mut ct = Vec::new();
            envelope::seal_part_body(&p, CS, pt, &mut ct, &EngineOptions::default()).expect("seal");
            ct
        };
        old.push(seal(200 + i as u8));
        parts.push(seal(i as u8));
        entries.push(PartEntry { number, salt: [i as u8; 16], plaintext_len: len as u64 });
    }
    let mut manifest = sealing.part_manifest(entries).expect("manifest");
    let n = parts.len();
    match case.edit {
        Edit::None => {}
        Edit::SwapParts(a, b) => parts.swap(usize::from(a) % n, usize::from(b) % n),
        Edit::DropPart(a) => {
            parts.remove(usize::from(a) % n);
        }
        Edit::OldUpload(a) => {
            let i = usize::from(a) % n;
            parts[i] = old[i].clone();
        }
        Edit::FlipManifest(at, bit) => {
            let i = usize::from(at) % manifest.len();
            manifest[i] ^= 1 << (bit % 8);
        }
        _ => {}
    }
    let mut body: Vec<u8> = parts.concat();
    match case.edit {
        Edit::FlipBody(at, bit) => {
            let i = usize::from(at) % body.len();
            body[i] ^= 1 << (bit % 8);
        }
        Edit::CutBody(k) => body.truncate(body.len().saturating_sub(usize::from(k) % 64 + 1)),
        Edit::Append(b) => body.push(b),
        _ => {}
    }
    let (kind, a, b) = case.range;
    let range = match kind % 4 {
        0 => None,
        1 => Some(ByteRange::From(u64::from(a))),
        2 => Some(ByteRange::Suffix(u64::from(a) + 1)),
        _ => Some(ByteRange::Inclusive(u64::from(a.min(b)), u64::from(a.max(b)))),
    };
    let expected: Option<Vec<u8>> = match range {
        None => Some(plaintext.clone()),
        Some(r) => {
            let len = plaintext.len() as u64;
            let (s, e) = match r {
                ByteRange::From(s) => (s, len.saturating_sub(1)),
                ByteRange::Suffix(k) => (len.saturating_sub(k), len.saturating_sub(1)),
                ByteRange::Inclusive(s, e) => (s, e.min(len.saturating_sub(1))),
            };
            (s < len).then(|| plaintext[s as usize..=e as usize].to_vec())
        }
    };
    let (out, r) = read(&o, &manifest, &body, range);
    match (r, &expected) {
        (Ok(_), Some(want)) => assert_eq!(&out, want, "wrong plaintext for {:?}", case.edit),
        (Ok(_), None) => panic!("unsatisfiable range served"),
        (Err(Error::RangeNotSatisfiable { .. }), None) => {}
        (Err(e), want) => {
            assert!(e.is_authentication(), "unexpected error class: {e}");
            assert!(!matches!(case.edit, Edit::None), "unedited object failed: {e}");
            if let Some(want) = want {
                assert!(want.starts_with(&out), "released bytes that are not a prefix");
            }
        }
    }
});
