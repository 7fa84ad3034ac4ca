//! Key derivation: payload key and key-commitment value from the data key.
//!
//! `PRK = HKDF-Extract(salt, DEK)`; the payload key and the commitment are two
//! HKDF-Expand outputs with distinct labels, each followed by the 32-byte header digest.
//!
//! Zeroization: the PRK returned by HKDF-Extract is wiped here; the HMAC states that hold
//! it inside `Hkdf` are SHA-256 cores, which wipe themselves on drop because `sha2` is
//! built with its `zeroize` feature (checked at compile time below), and so are the
//! HMAC outputs HKDF-Expand produces. What stays out of reach: stack temporaries inside
//! the `hmac` crate (the padded key block while keying, the inner hash while finalising),
//! which it does not wipe. Closing those would mean writing HMAC ourselves.

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::format::COMMITMENT_LEN;

/// HKDF info label for the payload (body) key.
pub const PAYLOAD_KEY_LABEL: &[u8] = b"sealstream v1 payload key";
/// HKDF info label for the key-commitment value.
pub const COMMITMENT_LABEL: &[u8] = b"sealstream v1 key commitment";

/// The two values derived from a data key for one object.
pub struct Derived {
    /// Key for the body chunks.
    pub(crate) payload_key: Zeroizing<[u8; 32]>,
    /// Commitment stored in (or checked against) the header.
    pub commitment: [u8; COMMITMENT_LEN],
}

impl std::fmt::Debug for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Derived { .. }")
    }
}

// The hash cores that carry the PRK inside `Hkdf` (HMAC's inner and outer states) and the
// HKDF-Expand blocks must wipe themselves on drop: this fails to compile if `sha2`'s
// `zeroize` feature is ever dropped.
const fn wipes_on_drop<T: ZeroizeOnDrop>() {}
const _: () = wipes_on_drop::<<Sha256 as hkdf::hmac::digest::block_api::CoreProxy>::Core>();
const _: () = wipes_on_drop::<hkdf::hmac::digest::CtOutput<hkdf::hmac::Hmac<Sha256>>>();

/// Derives the payload key and commitment from the DEK, salt and header digest.
pub fn derive(dek: &[u8; 32], salt: &[u8; 32], header_digest: &[u8; 32]) -> Derived {
    let (mut prk, hk) = Hkdf::<Sha256>::extract(Some(salt), dek);
    // `hk` keeps its own (self-wiping) HMAC state; this copy of the PRK is not needed.
    prk.as_mut_slice().zeroize();
    let mut payload_key = Zeroizing::new([0u8; 32]);
    let mut commitment = [0u8; COMMITMENT_LEN];
    let mut info = [0u8; 64];
    // 32-byte outputs are far below HKDF-SHA-256's 8160-byte maximum: expand cannot fail.
    let expand = |label: &[u8], out: &mut [u8], info: &mut [u8; 64]| {
        let n = label.len();
        info[..n].copy_from_slice(label);
        info[n..n + 32].copy_from_slice(header_digest);
        #[allow(clippy::expect_used)]
        hk.expand(&info[..n + 32], out)
            .expect("32-byte HKDF output is within limits");
    };
    expand(PAYLOAD_KEY_LABEL, &mut payload_key[..], &mut info);
    expand(COMMITMENT_LABEL, &mut commitment, &mut info);
    Derived {
        payload_key,
        commitment,
    }
}

/// Compares a stored commitment with a derived one in constant time.
pub fn commitment_matches(stored: &[u8; COMMITMENT_LEN], derived: &[u8; COMMITMENT_LEN]) -> bool {
    stored.ct_eq(derived).into()
}
