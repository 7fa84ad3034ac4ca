//! No secret in `Debug` output: every secret-bearing public type is formatted with `{:?}`
//! and `{:#?}` (errors also with `{}`) and the text is searched for its key bytes in every
//! common rendering: lowercase and uppercase hex, decimal and `0x` byte lists (as `{:?}` and
//! `{:#?}` print arrays and slices, also in hex), standard and URL-safe base64, and the raw
//! bytes as text.
//! Any 8-byte window of a secret counts as a leak, not only the whole key.
//!
//! Types covered, found by grepping src/ for `Zeroizing`, `DataKey` and `[u8; 32]`:
//! `DataKey`, `LocalKey` (built, parsed, loaded from a file), `kdf::Derived` (payload key),
//! `PayloadCipher` (both backends, both suites), `Stanza` and `Header`, `DataKeyCache` with
//! live entries, the errors of failed unwraps and of bad key files, and, against the
//! emulator, `Kms` with a populated unwrap cache, `KmsKey` (wrapping and trusted) and
//! `KmsDiscovery`. The S3 types (`S3`, `PutOptions`, `GetOptions`, `Head`, `ObjectInfo`) hold
//! no key bytes: the data key and payload cipher are passed to each call, not stored.
//!
//! Not a type but worth knowing: `LocalKey::to_text()` returns the key file's text, which
//! *is* the secret, in a `Zeroizing<String>` whose `Debug` prints it; never log it.

use crate::common;

use base64::Engine as _;
use sealstream::Backend;
use sealstream::PayloadCipher;
use sealstream::envelope;
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::cache::{CacheLimits, DataKeyCache};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::testkit::ChunkCipher as _;
use sealstream::testkit::kdf;

/// Two test secrets: bytes that are mostly non-printable, and printable ASCII (so a raw
/// leak, e.g. through a lossy string conversion, would show as text). Neither shares an
/// 8-byte window with any fixed text the crate prints.
fn secrets() -> [[u8; 32]; 2] {
    let binary: [u8; 32] = core::array::from_fn(|i| 0xa0 ^ (i as u8).wrapping_mul(7));
    let ascii = *b"Zq7#Kp2!Wm9$Rt4&Yx6*Vb3^Nc8@Hd5%";
    [binary, ascii]
}

/// Width of the windows searched for: a leak of 8 key bytes is already a leak.
const WINDOW: usize = 8;

/// Every rendering of every `WINDOW`-byte window of `secret`, as it would appear in the text
/// with all whitespace removed (so `{:#?}`'s one-element-per-line lists match too).
fn renderings(secret: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for w in secret.windows(WINDOW) {
        let hex: String = w.iter().map(|b| format!("{b:02x}")).collect();
        out.push(hex.to_uppercase());
        out.push(hex);
        let dec: Vec<String> = w.iter().map(|b| b.to_string()).collect();
        out.push(dec.join(","));
        // `{:#x?}` and `{:x?}` print bytes unpadded (0x1, 1); `{:#04x}` padded (0x01).
        for f in [
            |b: &u8| format!("{b:#04x}"),
            |b: &u8| format!("{b:#x}"),
            |b: &u8| format!("{b:x}"),
        ] {
            out.push(w.iter().map(f).collect::<Vec<_>>().join(","));
        }
        if let Ok(raw) = std::str::from_utf8(w) {
            out.push(raw.to_string());
        }
    }
    // base64 of the whole key, cut into 12-character pieces at 4-character boundaries
    // (each one encodes 9 aligned key bytes), for both alphabets.
    for b64 in [
        base64::engine::general_purpose::STANDARD.encode(secret),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    ] {
        let chars: Vec<char> = b64.chars().collect();
        for start in (0..chars.len().saturating_sub(11)).step_by(4) {
            out.push(chars[start..start + 12].iter().collect());
        }
    }
    out
}

/// The first rendering of any of `secrets` found in `text`, if any.
fn find_leak(text: &str, secrets: &[&[u8]]) -> Option<String> {
    let squeezed: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    secrets
        .iter()
        .flat_map(|s| renderings(s))
        .find(|r| squeezed.contains(r.as_str()))
}

/// Panics if `text` contains any rendering of any of `secrets`.
fn assert_clean(what: &str, text: &str, secrets: &[&[u8]]) {
    if let Some(r) = find_leak(text, secrets) {
        panic!("{what} leaks key material as {r:?}:\n{text}");
    }
}

/// Formats `value` with `{:?}` and `{:#?}` and checks both.
fn assert_debug_clean<T: std::fmt::Debug>(what: &str, value: &T, secrets: &[&[u8]]) {
    assert_clean(&format!("{what} ({{:?}})"), &format!("{value:?}"), secrets);
    assert_clean(
        &format!("{what} ({{:#?}})"),
        &format!("{value:#?}"),
        secrets,
    );
}

/// The checker itself must catch each rendering, or a passing test proves nothing.
#[test]
fn the_checker_catches_every_rendering() {
    let [binary, ascii] = secrets();
    let (k, a): (&[u8], &[u8]) = (&binary, &ascii);
    for text in [
        format!("{binary:?}"),
        format!("{binary:#?}"),
        format!("{:?}", &binary[9..17]),
        format!("{:#x?}", &binary[20..28]),
        format!("{:x?}", &binary[20..28]),
        format!("Key({})", hex(&binary)),
        hex(&binary[3..11]).to_uppercase(),
        base64::engine::general_purpose::STANDARD.encode(binary),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(binary),
    ] {
        assert!(find_leak(&text, &[k]).is_some(), "not caught: {text}");
    }
    let lossy = format!("{:?}", String::from_utf8_lossy(&ascii));
    assert!(
        find_leak(&lossy, &[a]).is_some(),
        "raw text not caught: {lossy}"
    );
    // ...and must not fire on unrelated text.
    let id = "LocalKey { id: \"lk1-79f15197f5155b144556538c1b5df0b1\", .. }";
    assert_eq!(find_leak(id, &[k, a]), None);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn data_keys_and_local_keys() {
    for s in secrets() {
        let dek = DataKey::from_bytes(s);
        assert_debug_clean("DataKey", &dek, &[&s]);
        assert_debug_clean("DataKey clone", &dek.clone(), &[&s]);

        let kek = LocalKey::from_bytes(s);
        assert_debug_clean("LocalKey", &kek, &[&s]);
        assert!(format!("{kek:?}").contains(kek.id()), "the id is shown");

        // Parsed from its text form and loaded from a key file: the same type, but built
        // on paths that handle the base64 text.
        let parsed = LocalKey::parse(&kek.to_text(), "test").expect("parse");
        assert_debug_clean("LocalKey (parsed)", &parsed, &[&s]);
        let scratch = common::Scratch::new();
        let path = scratch.keyfile("k.key", &kek);
        let loaded = LocalKey::load(&path).expect("load");
        assert_debug_clean("LocalKey (loaded)", &loaded, &[&s]);
    }
    let generated = LocalKey::generate().expect("generate");
    let text = generated.to_text();
    let b64 = text
        .lines()
        .find(|l| l.starts_with("sealstream-local-key-v1"))
        .and_then(|l| l.split_whitespace().nth(2))
        .expect("key line");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .expect("base64");
    assert_debug_clean("LocalKey (generated)", &generated, &[&raw]);
}

#[test]
fn derived_keys_and_payload_ciphers() {
    for s in secrets() {
        let derived = kdf::derive(&s, &[1; 32], &[2; 32]);
        let payload_key = *sealstream::testkit::payload_key(&derived);
        assert_debug_clean("kdf::Derived", &derived, &[&payload_key, &s]);

        for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            for backend in [Backend::Ring, Backend::RustCrypto] {
                let c = PayloadCipher::new(suite, backend, &payload_key);
                assert_debug_clean(
                    &format!("PayloadCipher {suite:?} {backend:?}"),
                    &c,
                    &[&payload_key, &s],
                );
            }
        }
    }
}

#[test]
fn stanzas_and_headers() {
    let [kek_bytes, dek_bytes] = secrets();
    let kek = LocalKey::from_bytes(kek_bytes);
    let dek = DataKey::from_bytes(dek_bytes);
    let ctx = Context::from_pairs([("project", "atlas")]).unwrap();
    let stanza = kek.wrap(&dek, &ctx).unwrap();
    // The wrapped bytes are not secret, but they are shown as a length only.
    assert_debug_clean(
        "Stanza",
        &stanza,
        &[&stanza.wrapped, &kek_bytes, &dek_bytes],
    );

    let params = sealstream::EncryptParams {
        context: ctx,
        ..Default::default()
    };
    let (header, cipher) =
        envelope::seal_header(&dek, [3; 32], vec![stanza.clone()], &params).unwrap();
    let payload_key =
        *sealstream::testkit::payload_key(&kdf::derive(&dek_bytes, &[3; 32], &header.digest()));
    let all: [&[u8]; 4] = [&kek_bytes, &dek_bytes, &payload_key, &stanza.wrapped];
    assert_debug_clean("Header", &header, &all);
    assert_debug_clean("PayloadCipher (seal_header)", &cipher, &all);
    let bytes = header.to_bytes().unwrap();
    let (parsed, len) = Header::parse(&bytes).unwrap();
    assert_debug_clean("Header (parsed)", &parsed, &all);
    let inspection = envelope::inspect(parsed, len as u64, Some(len as u64 + 16));
    assert_debug_clean("Inspection", &inspection, &all);
}

#[test]
fn data_key_cache_with_live_entries() {
    let [kek_bytes, _] = secrets();
    let kek = LocalKey::from_bytes(kek_bytes);
    let providers: [&dyn KeyProvider; 1] = [&kek];
    let cache = DataKeyCache::new(CacheLimits {
        max_age: std::time::Duration::from_secs(600),
        max_objects: 10,
        max_bytes: u64::MAX,
    });
    let mut deks = Vec::new();
    for ctx in [
        Context::new(),
        Context::from_pairs([("project", "atlas")]).unwrap(),
    ] {
        let (dek, _) = cache.data_key(&providers, &ctx, 100).unwrap();
        let (again, _) = cache.data_key(&providers, &ctx, 100).unwrap();
        assert_eq!(dek.expose(), again.expose(), "served from the cache");
        deks.push(*dek.expose());
    }
    let mut all: Vec<&[u8]> = deks.iter().map(|d| &d[..]).collect();
    all.push(&kek_bytes);
    assert_debug_clean("DataKeyCache (2 entries)", &cache, &all);
}

#[test]
fn errors_carry_no_key_material() {
    let [kek_bytes, dek_bytes] = secrets();
    let kek = LocalKey::from_bytes(kek_bytes);
    let dek = DataKey::from_bytes(dek_bytes);
    let ctx = Context::from_pairs([("project", "atlas")]).unwrap();
    let secrets: [&[u8]; 2] = [&kek_bytes, &dek_bytes];
    let check = |what: &str, e: &sealstream::Error| {
        assert_debug_clean(what, e, &secrets);
        assert_clean(&format!("{what} (Display)"), &e.to_string(), &secrets);
    };

    // A tampered stanza (unwrap fails), a stanza of another object (commitment fails), and
    // a wrong context on unwrap.
    let params = sealstream::EncryptParams {
        context: ctx.clone(),
        ..Default::default()
    };
    let mut bad = kek.wrap(&dek, &ctx).unwrap();
    bad.wrapped[30] ^= 1;
    let (header, _) = envelope::seal_header(&dek, [5; 32], vec![bad], &params).unwrap();
    let providers: [&dyn KeyProvider; 1] = [&kek];
    let e = envelope::unwrap_data_key(&header, &providers, &Context::new()).unwrap_err();
    assert!(matches!(e, sealstream::Error::UnwrapFailed(_)), "{e:?}");
    check("UnwrapFailed", &e);

    let other = kek.wrap(&DataKey::from_bytes([9; 32]), &ctx).unwrap();
    let (header, _) = envelope::seal_header(&dek, [5; 32], vec![other], &params).unwrap();
    let e = envelope::unwrap_data_key(&header, &providers, &Context::new()).unwrap_err();
    assert!(matches!(e, sealstream::Error::CommitmentMismatch), "{e:?}");
    check("CommitmentMismatch", &e);

    let good = kek.wrap(&dek, &ctx).unwrap();
    let e = kek.unwrap(&good, &Context::new()).unwrap_err();
    check("unwrap with the wrong context", &e);

    // Key files that hold the key but fail to parse: the error must not echo it.
    let b64 = base64::engine::general_purpose::STANDARD.encode(kek_bytes);
    let id = kek.id();
    for (name, text) in [
        (
            "id mismatch",
            format!("sealstream-local-key-v1 lk1-{} {b64}\n", "0".repeat(32)),
        ),
        (
            "extra field",
            format!("sealstream-local-key-v1 {id} {b64} extra\n"),
        ),
        (
            "future version",
            format!("sealstream-local-key-v2 {id} {b64}\n"),
        ),
        ("key alone", format!("{b64}\n")),
        ("key first", format!("{b64} sealstream-local-key-v1 {id}\n")),
        (
            "two lines",
            format!("sealstream-local-key-v1 {id} {b64}\n").repeat(2),
        ),
        (
            "short key",
            format!("sealstream-local-key-v1 {id} {}\n", &b64[..40]),
        ),
    ] {
        let e = LocalKey::parse(&text, "test.key").unwrap_err();
        check(&format!("key file error ({name})"), &e);
    }
}

/// `Kms` holds the unwrap cache (data keys by stanza and context); `KmsKey` and
/// `KmsDiscovery` hold an `Arc<Kms>`. Needs the emulator (ignored under plain `cargo test`;
/// scripts/test.sh runs it).
#[cfg(feature = "kms")]
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_unwrap_cache_and_keys() {
    use sealstream::kms::KmsSettings;
    use sealstream::kms::blocking::{Kms, KmsDiscovery, KmsKey};

    let Some(ep) = common::moto::endpoint("kms_unwrap_cache_and_keys") else {
        return;
    };
    let arn = common::moto::create_key(&ep, "us-east-1");
    let kms = Kms::connect(KmsSettings {
        region: Some("us-east-1".into()),
        ..KmsSettings::default()
    })
    .expect("connect");
    let ctx = Context::from_pairs([("project", "atlas")]).unwrap();

    // One data key from GenerateDataKey (random), one known key wrapped with Encrypt.
    let wrapping = KmsKey::for_wrapping(&kms, &arn);
    let (generated, s1) = wrapping.generate(&ctx).expect("generate").expect("a key");
    let [_, ascii] = secrets();
    let known = DataKey::from_bytes(ascii);
    let s2 = wrapping.wrap(&known, &ctx).expect("encrypt");

    // Unwrapping fills the cache; the second round is served from it.
    let trusted = KmsKey::trusted(&kms, &arn).expect("trusted");
    let discovery = KmsDiscovery::new(&kms, vec!["123456789012".into()]).expect("discovery");
    for p in [&trusted as &dyn KeyProvider, &discovery] {
        assert_eq!(p.unwrap(&s1, &ctx).unwrap().expose(), generated.expose());
        assert_eq!(p.unwrap(&s2, &ctx).unwrap().expose(), known.expose());
    }
    let secrets: [&[u8]; 2] = [generated.expose(), known.expose()];
    assert_debug_clean("Kms (unwrap cache populated)", &kms, &secrets);
    assert_debug_clean("KmsKey (wrapping)", &wrapping, &secrets);
    assert_debug_clean("KmsKey (trusted)", &trusted, &secrets);
    assert_debug_clean("KmsDiscovery", &discovery, &secrets);
    assert_debug_clean("Stanza (aws-kms)", &s1, &secrets);
}
