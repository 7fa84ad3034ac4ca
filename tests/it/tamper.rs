//! The named tamper suite: every case must fail with the exact error kind through the
//! library, and through the CLI with exit code 4 and no output file (nor temporary) left.

use crate::common;

use common::*;
use sealstream::PayloadCipher;
use sealstream::envelope::{self, EncryptParams};
use sealstream::error::{Error, HeaderError};
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::testkit::ChunkCipher as _;

const CS: usize = 4096;
const STRIDE: usize = CS + 16;

/// A file with 4 chunks: 3 full and a 100-byte final chunk.
fn sample(k: &sealstream::LocalKey) -> (Vec<u8>, Vec<u8>) {
    let pt = data(3 * CS + 100);
    (seal(&pt, k, Suite::Aes256Gcm, CS as u32), pt)
}

fn chunk_range(ct: &[u8], i: usize) -> std::ops::Range<usize> {
    let hl = header_len(ct);
    let start = hl + i * STRIDE;
    start..(start + STRIDE).min(ct.len())
}

/// Builds a file chunk by chunk with a fixed data key, to express encodings the encoder
/// never produces: `(plaintext, final flag)` per chunk.
fn handmade(k: &sealstream::LocalKey, chunks: &[(&[u8], bool)]) -> Vec<u8> {
    let dek = DataKey::from_bytes([0x5a; 32]);
    let ctx = Context::new();
    let stanza = k.wrap(&dek, &ctx).unwrap();
    let p = EncryptParams {
        chunk_size: CS as u32,
        ..EncryptParams::default()
    };
    let (header, cipher): (Header, PayloadCipher) =
        envelope::seal_header(&dek, [0x11; 32], vec![stanza], &p).unwrap();
    let mut out = header.to_bytes().unwrap();
    for (i, (pt, last)) in chunks.iter().enumerate() {
        let mut buf = pt.to_vec();
        buf.resize(pt.len() + 16, 0);
        cipher
            .seal_chunk(i as u64, *last, &mut buf, pt.len())
            .unwrap();
        out.extend_from_slice(&buf);
    }
    out
}

struct Case {
    name: &'static str,
    bytes: Vec<u8>,
    expect: fn(&Error) -> bool,
    /// Context the decryptor requires (`-c`).
    require: Vec<(&'static str, &'static str)>,
    /// Decrypt with this key instead of the encrypting one.
    other_key: bool,
}

fn case(name: &'static str, bytes: Vec<u8>, expect: fn(&Error) -> bool) -> Case {
    Case {
        name,
        bytes,
        expect,
        require: vec![],
        other_key: false,
    }
}

fn flip(mut v: Vec<u8>, at: usize) -> Vec<u8> {
    v[at] ^= 0x01;
    v
}

fn cases() -> Vec<Case> {
    let k = key(1);
    let (ct, _) = sample(&k);
    let hl = header_len(&ct);
    let (h, _) = Header::parse(&ct).unwrap();
    let ctx_ct = {
        let p = EncryptParams {
            context: Context::from_pairs([("project", "atlas"), ("tier", "gold")]).unwrap(),
            chunk_size: CS as u32,
            ..EncryptParams::default()
        };
        seal_with(&data(5000), &[&k], &p)
    };
    // Offsets inside the header.
    let ctx_start = 84;
    let stanza_block = hl - (2 + 1 + 5 + 2 + h.stanzas[0].key_id.len() + 2 + 72);
    let key_id_at = stanza_block + 2 + 1 + 5 + 2;
    let wrapped_at = key_id_at + h.stanzas[0].key_id.len() + 2;
    let full = seal(&data(4 * CS), &k, Suite::Aes256Gcm, CS as u32);
    let other = seal(&data(3 * CS + 100), &k, Suite::Aes256Gcm, CS as u32);

    let mut v = vec![
        // ---- header fields ----
        case("header_magic_flip", flip(ct.clone(), 0), |e| {
            matches!(e, Error::Header(HeaderError::BadMagic))
        }),
        case("header_version_flip", flip(ct.clone(), 8), |e| {
            matches!(e, Error::Header(HeaderError::UnsupportedVersion(0)))
        }),
        case(
            "header_unknown_version",
            {
                let mut v = ct.clone();
                v[8] = 2;
                v
            },
            |e| matches!(e, Error::Header(HeaderError::UnsupportedVersion(2))),
        ),
        case(
            "header_unknown_suite",
            {
                let mut v = ct.clone();
                v[9] = 0x7f;
                v
            },
            |e| matches!(e, Error::Header(HeaderError::UnknownSuite(0x7f))),
        ),
        case(
            "header_suite_swapped",
            {
                let mut v = ct.clone();
                v[9] = Suite::ChaCha20Poly1305.id();
                v
            },
            |e| matches!(e, Error::CommitmentMismatch),
        ),
        case("header_reserved_flip", flip(ct.clone(), 11), |e| {
            matches!(e, Error::Header(HeaderError::ReservedNonZero))
        }),
        case(
            "header_chunk_size_changed",
            {
                let mut v = ct.clone();
                v[12..16].copy_from_slice(&8192u32.to_be_bytes());
                v
            },
            |e| matches!(e, Error::CommitmentMismatch),
        ),
        case(
            "header_chunk_size_out_of_range",
            {
                let mut v = ct.clone();
                v[12..16].copy_from_slice(&(16 * 1024 * 1024 + 1u32).to_be_bytes());
                v
            },
            |e| matches!(e, Error::Header(HeaderError::ChunkSizeOutOfRange(_))),
        ),
        case("header_salt_flip", flip(ct.clone(), 16 + 7), |e| {
            matches!(e, Error::CommitmentMismatch)
        }),
        case("header_len_flip", flip(ct.clone(), 51), |e| {
            matches!(
                e,
                Error::Header(HeaderError::HeaderLenMismatch { .. } | HeaderError::Truncated)
            )
        }),
        case(
            "header_len_over_limit",
            {
                let mut v = ct.clone();
                v[48..52].copy_from_slice(&(64 * 1024 + 1u32).to_be_bytes());
                v
            },
            |e| matches!(e, Error::Header(HeaderError::HeaderLenOutOfRange(_))),
        ),
        case("header_commitment_flip", flip(ct.clone(), 52 + 31), |e| {
            matches!(e, Error::CommitmentMismatch)
        }),
        case(
            "header_context_value_flip",
            // Last byte of the last context value ("gold" → "golf"): still canonical UTF-8,
            // but the stanza was wrapped under the original context.
            {
                let hl2 = header_len(&ctx_ct);
                let (h2, _) = Header::parse(&ctx_ct).unwrap();
                let sb = hl2 - (2 + 1 + 5 + 2 + h2.stanzas[0].key_id.len() + 2 + 72);
                flip(ctx_ct.clone(), sb - 1)
            },
            |e| matches!(e, Error::UnwrapFailed(_)),
        ),
        case(
            "header_context_not_canonical",
            {
                // Swap the two pairs' order: "tier" before "project".
                let mut v = ctx_ct.clone();
                let a = [&[0, 7][..], b"project", &[0, 5], b"atlas"].concat();
                let b = [&[0, 4][..], b"tier", &[0, 4], b"gold"].concat();
                let start = ctx_start + 2;
                let swapped = [b.clone(), a.clone()].concat();
                v[start..start + swapped.len()].copy_from_slice(&swapped);
                v
            },
            |e| matches!(e, Error::Header(HeaderError::ContextNotCanonical)),
        ),
        case(
            "stanza_provider_flip",
            flip(ct.clone(), stanza_block + 3),
            |e| matches!(e, Error::NoMatchingKey { .. }),
        ),
        case(
            "stanza_key_id_flip",
            flip(ct.clone(), key_id_at + 10),
            |e| matches!(e, Error::NoMatchingKey { .. }),
        ),
        case(
            "stanza_wrapped_key_flip",
            flip(ct.clone(), wrapped_at + 30),
            |e| matches!(e, Error::UnwrapFailed(_)),
        ),
        case(
            "stanza_count_zero",
            {
                let mut v = ct.clone();
                v[stanza_block..stanza_block + 2].copy_from_slice(&[0, 0]);
                v
            },
            |e| matches!(e, Error::Header(HeaderError::NoStanzas)),
        ),
        // ---- body ----
        case(
            "stream_bad_tag",
            flip(ct.clone(), chunk_range(&ct, 0).end - 1),
            |e| matches!(e, Error::ChunkAuth { index: 0 }),
        ),
        case(
            "stream_bad_body_second_chunk",
            flip(ct.clone(), chunk_range(&ct, 1).start + 5),
            |e| matches!(e, Error::ChunkAuth { index: 1 }),
        ),
        case(
            "stream_bad_final_chunk",
            flip(ct.clone(), ct.len() - 20),
            |e| matches!(e, Error::ChunkAuth { index: 3 }),
        ),
        case(
            "stream_truncated_at_boundary",
            ct[..hl + 3 * STRIDE].to_vec(),
            |e| matches!(e, Error::Truncated { .. }),
        ),
        case(
            "stream_truncated_at_first_boundary",
            ct[..hl + STRIDE].to_vec(),
            |e| matches!(e, Error::Truncated { .. }),
        ),
        case(
            "stream_truncated_off_boundary",
            ct[..hl + 2 * STRIDE + 1000].to_vec(),
            |e| matches!(e, Error::ChunkAuth { index: 2 }),
        ),
        case(
            "stream_truncated_inside_tag",
            ct[..hl + 3 * STRIDE + 10].to_vec(),
            |e| matches!(e, Error::Truncated { .. }),
        ),
        case("stream_no_chunks", ct[..hl].to_vec(), |e| {
            matches!(e, Error::Truncated { .. })
        }),
        case("header_truncated", ct[..hl - 3].to_vec(), |e| {
            matches!(e, Error::Header(HeaderError::Truncated))
        }),
        case(
            "stream_chunk_dropped",
            [&ct[..hl + STRIDE], &ct[hl + 2 * STRIDE..]].concat(),
            |e| matches!(e, Error::ChunkAuth { index: 1 }),
        ),
        case(
            "stream_chunks_swapped",
            [
                &ct[..hl],
                &ct[chunk_range(&ct, 1)],
                &ct[chunk_range(&ct, 0)],
                &ct[hl + 2 * STRIDE..],
            ]
            .concat(),
            |e| matches!(e, Error::ChunkAuth { index: 0 }),
        ),
        case(
            "stream_chunk_duplicated",
            [
                &ct[..hl + STRIDE],
                &ct[chunk_range(&ct, 0)],
                &ct[hl + STRIDE..],
            ]
            .concat(),
            |e| matches!(e, Error::ChunkAuth { index: 1 }),
        ),
        case(
            "stream_chunk_appended",
            [&full[..], &full[chunk_range(&full, 0)]].concat(),
            |e| matches!(e, Error::ChunkAuth { index: 3 }),
        ),
        case("stream_trailing_garbage", [&ct[..], b"x"].concat(), |e| {
            matches!(e, Error::ChunkAuth { index: 3 })
        }),
        case(
            "stream_trailing_garbage_after_full_final",
            [&full[..], &[0u8; 40][..]].concat(),
            |e| matches!(e, Error::ChunkAuth { index: 3 }),
        ),
        case(
            "stream_last_chunk_empty",
            {
                let c = data(CS);
                handmade(&k, &[(&c, false), (&c, false), (&c, false), (&[], true)])
            },
            |e| matches!(e, Error::LastChunkEmpty { index: 3 }),
        ),
        case(
            "stream_no_final",
            {
                let c = data(CS);
                handmade(&k, &[(&c, false), (&c, false)])
            },
            |e| matches!(e, Error::Truncated { .. }),
        ),
        case(
            "stream_two_final_chunks",
            {
                let c = data(CS);
                handmade(&k, &[(&c, true), (&c, true)])
            },
            |e| matches!(e, Error::ChunkAuth { index: 0 }),
        ),
        case(
            "stream_final_then_more",
            {
                let c = data(CS);
                handmade(&k, &[(&c, false), (&c, true), (&c[..10], true)])
            },
            |e| matches!(e, Error::ChunkAuth { index: 1 }),
        ),
        case(
            "header_swapped_same_key",
            // Header of one file on the body of another, both under the same key.
            [&other[..header_len(&other)], &ct[hl..]].concat(),
            |e| matches!(e, Error::ChunkAuth { index: 0 }),
        ),
    ];
    v.push(Case {
        name: "wrong_context_value",
        bytes: ctx_ct.clone(),
        expect: |e| matches!(e, Error::ContextMismatch { found: Some(_), .. }),
        require: vec![("project", "zeus")],
        other_key: false,
    });
    v.push(Case {
        name: "wrong_context_missing_pair",
        bytes: ctx_ct.clone(),
        expect: |e| matches!(e, Error::ContextMismatch { found: None, .. }),
        require: vec![("owner", "ops")],
        other_key: false,
    });
    v.push(Case {
        name: "wrong_key",
        bytes: ct.clone(),
        expect: |e| matches!(e, Error::NoMatchingKey { .. }),
        require: vec![],
        other_key: true,
    });
    v
}

#[test]
fn every_tamper_case_fails_with_the_right_error_in_the_library() {
    let k = key(1);
    let wrong = key(2);
    for c in cases() {
        let require = Context::from_pairs(c.require.iter().map(|(a, b)| (*a, *b))).unwrap();
        let used = if c.other_key { &wrong } else { &k };
        let r = open_with(
            &c.bytes,
            &[used],
            &require,
            sealstream::Backend::Ring,
            Default::default(),
        );
        match r {
            Ok(_) => panic!("{}: decrypted successfully", c.name),
            Err(e) => {
                assert!((c.expect)(&e), "{}: unexpected error {e:?}", c.name);
                assert!(e.is_authentication(), "{}: {e}", c.name);
            }
        }
    }
}

#[cfg(feature = "cli")]
#[test]
fn every_tamper_case_exits_4_and_leaves_no_output() {
    let s = Scratch::new();
    let k = key(1);
    let good = s.keyfile("good.key", &k);
    let bad = s.keyfile("bad.key", &key(2));
    for c in cases() {
        let input = s.path("in.seal");
        write(&input, &c.bytes);
        let mut args: Vec<String> = vec![
            "decrypt".into(),
            "-k".into(),
            (if c.other_key { &bad } else { &good })
                .display()
                .to_string(),
            "-o".into(),
            "out.bin".into(),
            input.display().to_string(),
        ];
        for (a, b) in &c.require {
            args.push("-c".into());
            args.push(format!("{a}={b}"));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = s.run(&argv);
        assert_eq!(code(&o), 4, "{}: {}", c.name, stderr(&o));
        assert!(!stderr(&o).is_empty(), "{}: no message", c.name);
        assert_eq!(
            s.files(),
            vec!["bad.key", "good.key", "in.seal"],
            "{}: output or temporary left behind",
            c.name
        );
    }
}

#[cfg(feature = "cli")]
#[test]
fn tampered_stdout_stream_warns_output_incomplete() {
    let s = Scratch::new();
    let k = key(1);
    let kf = s.keyfile("k.key", &k);
    let (ct, _) = sample(&k);
    let at = chunk_range(&ct, 3).start; // inside the final chunk
    let bad = flip(ct, at);
    write(&s.path("in.seal"), &bad);
    let o = s.run(&["decrypt", "-k", kf.to_str().unwrap(), "in.seal"]);
    assert_eq!(code(&o), 4);
    // Only whole authenticated chunks reached stdout, and the user is told it is incomplete.
    assert_eq!(o.stdout.len() % CS, 0);
    assert!(o.stdout.len() <= 3 * CS);
    assert!(stderr(&o).contains("incomplete"), "{}", stderr(&o));
}

// ---- limits on oversized header fields, built byte by byte ----

/// Serializes a header independently of the library (a second reading of docs/FORMAT.md).
fn raw_header(pairs: &[(Vec<u8>, Vec<u8>)], stanzas: &[(Vec<u8>, Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut rest = Vec::new();
    rest.extend_from_slice(&(pairs.len() as u16).to_be_bytes());
    for (k, v) in pairs {
        rest.extend_from_slice(&(k.len() as u16).to_be_bytes());
        rest.extend_from_slice(k);
        rest.extend_from_slice(&(v.len() as u16).to_be_bytes());
        rest.extend_from_slice(v);
    }
    rest.extend_from_slice(&(stanzas.len() as u16).to_be_bytes());
    for (p, id, w) in stanzas {
        rest.push(p.len() as u8);
        rest.extend_from_slice(p);
        rest.extend_from_slice(&(id.len() as u16).to_be_bytes());
        rest.extend_from_slice(id);
        rest.extend_from_slice(&(w.len() as u16).to_be_bytes());
        rest.extend_from_slice(w);
    }
    let mut h = Vec::new();
    h.extend_from_slice(b"SEALSTRM");
    h.extend_from_slice(&[1, 1, 0, 0]);
    h.extend_from_slice(&4096u32.to_be_bytes());
    h.extend_from_slice(&[0x22; 32]);
    h.extend_from_slice(&((84 + rest.len()) as u32).to_be_bytes());
    h.extend_from_slice(&[0x33; 32]);
    h.extend_from_slice(&rest);
    h
}

fn st(id: &str, wrapped_len: usize) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    (
        b"local".to_vec(),
        id.as_bytes().to_vec(),
        vec![7; wrapped_len],
    )
}

#[test]
fn raw_header_matches_library_serialization() {
    let raw = raw_header(&[(b"a".to_vec(), b"b".to_vec())], &[st("lk1-x", 72)]);
    let (h, len) = Header::parse(&raw).unwrap();
    assert_eq!(len, raw.len());
    assert_eq!(h.to_bytes().unwrap(), raw);
}

#[test]
fn oversized_and_invalid_header_fields_are_rejected_precisely() {
    let p = |k: &str, v: &str| (k.as_bytes().to_vec(), v.as_bytes().to_vec());
    let many_pairs: Vec<_> = (0..33).map(|i| p(&format!("k{i:02}"), "v")).collect();
    let many_stanzas: Vec<_> = (0..33).map(|i| st(&format!("id{i}"), 72)).collect();
    let cases: Vec<(&str, Vec<u8>, HeaderError)> = vec![
        (
            "context_pairs_over_limit",
            raw_header(&many_pairs, &[st("x", 72)]),
            HeaderError::TooManyContextPairs(33),
        ),
        (
            "context_key_too_long",
            raw_header(&[p(&"k".repeat(129), "v")], &[st("x", 72)]),
            HeaderError::ContextFieldLength,
        ),
        (
            "context_key_empty",
            raw_header(&[p("", "v")], &[st("x", 72)]),
            HeaderError::ContextFieldLength,
        ),
        (
            "context_value_too_long",
            raw_header(&[p("k", &"v".repeat(1025))], &[st("x", 72)]),
            HeaderError::ContextFieldLength,
        ),
        (
            "context_not_utf8",
            raw_header(&[(b"k".to_vec(), vec![0xff, 0xfe])], &[st("x", 72)]),
            HeaderError::ContextNotUtf8,
        ),
        (
            "context_duplicate_key",
            raw_header(&[p("k", "1"), p("k", "2")], &[st("x", 72)]),
            HeaderError::ContextNotCanonical,
        ),
        (
            "stanza_count_over_limit",
            raw_header(&[], &many_stanzas),
            HeaderError::TooManyStanzas(33),
        ),
        (
            "stanza_key_id_too_long",
            raw_header(&[], &[st(&"i".repeat(513), 72)]),
            HeaderError::BadKeyId,
        ),
        (
            "stanza_key_id_control_char",
            raw_header(&[], &[st("a\nb", 72)]),
            HeaderError::BadKeyId,
        ),
        (
            "stanza_wrapped_key_too_long",
            raw_header(&[], &[st("x", 1025)]),
            HeaderError::BadWrappedKeyLength(1025),
        ),
        (
            "stanza_wrapped_key_empty",
            raw_header(&[], &[st("x", 0)]),
            HeaderError::BadWrappedKeyLength(0),
        ),
        (
            "stanza_provider_bad_chars",
            raw_header(&[], &[(b"Local!".to_vec(), b"x".to_vec(), vec![1; 72])]),
            HeaderError::BadProviderId,
        ),
        (
            "stanza_no_stanzas",
            // Padded with a context pair: a bare 88-byte header is already below the
            // minimum header length, which is checked first.
            raw_header(&[p("kk", "vvvvvv")], &[]),
            HeaderError::NoStanzas,
        ),
    ];
    for (name, bytes, want) in cases {
        // Through the slice parser and the streaming reader alike.
        assert_eq!(Header::parse(&bytes).err(), Some(want.clone()), "{name}");
        let mut r = &bytes[..];
        match Header::read_from(&mut r) {
            Err(Error::Header(e)) => assert_eq!(e, want, "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn header_len_is_checked_before_allocating() {
    // A header claiming 4 GiB must be rejected from the 84-byte prefix alone.
    let mut raw = raw_header(&[], &[st("x", 72)]);
    raw[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut r = &raw[..84];
    assert!(matches!(
        Header::read_from(&mut r),
        Err(Error::Header(HeaderError::HeaderLenOutOfRange(u32::MAX)))
    ));
}

/// Rewrap (through the CLI, which rewrites only the header) really rotates the keys, and
/// keeps every piece of tamper evidence: the commitment still rejects a stanza for a foreign
/// data key, and every tamper case either makes rewrap refuse (file untouched) or still
/// fails to decrypt, with the same error, after rewrap.
#[cfg(feature = "cli")]
#[test]
fn rewrap_keeps_tamper_evidence() {
    let s = Scratch::new();
    let k1 = key(1);
    let k3 = key(3);
    let k1f = s.keyfile("k1.key", &k1).display().to_string();
    let k3f = s.keyfile("k3.key", &k3).display().to_string();
    let f = s.path("f.seal");
    let rewrap = || {
        s.run(&[
            "rewrap",
            "-k",
            &k1f,
            "--add-key",
            &k3f,
            "--remove-key",
            k1.id(),
            "f.seal",
        ])
    };

    // The intact file: rewrap happens, the body is untouched, only k3 opens it now.
    let (ct, pt) = sample(&k1);
    write(&f, &ct);
    let o = rewrap();
    assert_eq!(code(&o), 0, "rewrap: {}", stderr(&o));
    let new = std::fs::read(&f).unwrap();
    let (h0, hl0) = Header::parse(&ct).unwrap();
    let (h1, hl1) = Header::parse(&new).unwrap();
    assert!(new[hl1..] == ct[hl0..], "rewrap changed the body");
    let ids: Vec<&str> = h1.stanzas.iter().map(|st| st.key_id.as_str()).collect();
    assert_eq!(ids, vec![k3.id()], "stanzas after rewrap");
    assert_eq!(h1.context, h0.context);
    assert!(open(&new, &k3).unwrap() == pt);
    assert!(
        open(&new, &k1).is_err(),
        "the removed key still opens the file"
    );

    // A stanza for a *different* data key cannot be slipped into the rewrapped header.
    let mut h = h1.clone();
    let foreign = DataKey::from_bytes([9; 32]);
    h.stanzas = vec![k3.wrap(&foreign, &h.context).unwrap()];
    let forged = [h.to_bytes().unwrap(), new[hl1..].to_vec()].concat();
    assert!(matches!(open(&forged, &k3), Err(Error::CommitmentMismatch)));
    let _: &sealstream::format::Stanza = &h.stanzas[0];

    // Every tamper case keeps its evidence through rewrap.
    let mut rewrapped = 0;
    for c in cases() {
        if c.other_key {
            continue;
        }
        write(&f, &c.bytes);
        let o = rewrap();
        let after = std::fs::read(&f).unwrap();
        if code(&o) != 0 {
            assert_eq!(
                code(&o),
                4,
                "{}: rewrap refused with {}",
                c.name,
                stderr(&o)
            );
            assert!(
                after == c.bytes,
                "{}: a refused rewrap changed the file",
                c.name
            );
            continue;
        }
        rewrapped += 1;
        assert!(
            after != c.bytes,
            "{}: rewrap exit 0 but the file is unchanged",
            c.name
        );
        let require = Context::from_pairs(c.require.iter().map(|(a, b)| (*a, *b))).unwrap();
        let r = open_with(
            &after,
            &[&k3],
            &require,
            sealstream::Backend::Ring,
            Default::default(),
        );
        match r {
            Ok(_) => panic!("{}: decrypts after rewrap", c.name),
            Err(e) => assert!((c.expect)(&e), "{}: after rewrap: {e:?}", c.name),
        }
    }
    // Body tampering is invisible to rewrap (it never reads the body), so most cases must
    // have gone through it: a rewrap that refused everything would prove nothing.
    assert!(
        rewrapped >= 10,
        "only {rewrapped} tamper cases were rewrapped"
    );
}

#[test]
fn a_planted_stanza_cannot_hide_a_good_one() {
    // An attacker with wrap access puts a stanza for a foreign key first: decryption still
    // finds the genuine stanza behind it.
    let k = key(1);
    let (ct, pt) = sample(&k);
    let (mut h, hl) = Header::parse(&ct).unwrap();
    let foreign = DataKey::from_bytes([9; 32]);
    h.stanzas.insert(0, k.wrap(&foreign, &h.context).unwrap());
    let planted = [h.to_bytes().unwrap(), ct[hl..].to_vec()].concat();
    assert!(open(&planted, &k).unwrap() == pt);
}

#[test]
fn key_ids_must_be_printable_ascii() {
    for bad in ["a b", "a\u{202e}b", "zero\u{200b}width", "é"] {
        let raw = raw_header(&[], &[st(bad, 72)]);
        assert_eq!(
            Header::parse(&raw).err(),
            Some(HeaderError::BadKeyId),
            "{bad:?}"
        );
    }
}

#[test]
fn zero_stanzas_are_rejected() {
    // A header with no stanza can never be opened: the parser says so precisely (a context
    // pair keeps header_len above its minimum, so the stanza count is what fails) ...
    let raw = raw_header(&[(b"k".to_vec(), b"vvvv".to_vec())], &[]);
    assert_eq!(Header::parse(&raw).err(), Some(HeaderError::NoStanzas));
    assert!(matches!(
        Header::read_from(&mut &raw[..]),
        Err(Error::Header(HeaderError::NoStanzas))
    ));
    // ... and the writer refuses to produce one.
    let k = key(1);
    let (ct, _) = sample(&k);
    let (mut h, _) = Header::parse(&ct).unwrap();
    h.stanzas.clear();
    assert_eq!(h.to_bytes().err(), Some(HeaderError::NoStanzas));
}
