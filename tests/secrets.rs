//! No secret in `Debug` output: every secret-bearing type is formatted and searched for
//! its key bytes in every common rendering.

use sealstream::format::{Context, Suite};
use sealstream::keys::DataKey;
use sealstream::keys::local::LocalKey;
use sealstream::primitives::aead::Backend;
use sealstream::primitives::kdf;
use sealstream::primitives::stream::PayloadCipher;

fn renderings(bytes: &[u8]) -> Vec<String> {
    use base64::Engine as _;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        hex.clone(),
        hex.to_uppercase(),
        format!("{:?}", &bytes[..4]), // [171, 205, ...]
        format!("{}, {}, {}", bytes[0], bytes[1], bytes[2]),
        base64::engine::general_purpose::STANDARD.encode(bytes)[..12].to_string(),
    ]
}

fn assert_clean(what: &str, text: &str, secret: &[u8]) {
    for r in renderings(secret) {
        assert!(
            !text.contains(&r),
            "{what} leaks its secret as {r:?}: {text}"
        );
    }
}

#[test]
fn debug_output_never_contains_key_material() {
    let secret: [u8; 32] = core::array::from_fn(|i| 0xa0 ^ (i as u8 * 7));
    let dek = DataKey::from_bytes(secret);
    assert_clean("DataKey", &format!("{dek:?}"), &secret);

    let kek = LocalKey::from_bytes(secret);
    assert_clean("LocalKey", &format!("{kek:?}"), &secret);
    assert!(format!("{kek:?}").contains(kek.id()), "the id is shown");

    let derived = kdf::derive(&secret, &[1; 32], &[2; 32]);
    let dbg = format!("{derived:?}");
    assert_clean("Derived", &dbg, &derived.payload_key[..]);
    assert_clean("Derived", &dbg, &secret);

    for backend in [Backend::Ring, Backend::RustCrypto] {
        let c = PayloadCipher::new(Suite::Aes256Gcm, backend, &secret);
        assert_clean("PayloadCipher", &format!("{c:?}"), &secret);
    }

    // A stanza shows the wrapped length, not the wrapped bytes.
    let st = sealstream::KeyProvider::wrap(&kek, &dek, &Context::new()).unwrap();
    let dbg = format!("{st:?}");
    assert_clean("Stanza", &dbg, &st.wrapped);
}
