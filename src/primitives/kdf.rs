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

/// HKDF info label for the key of one part of a part-wise body (FORMAT.md §17).
pub const PART_KEY_LABEL: &[u8] = b"sealstream v1 part key";
/// HKDF info label for the MAC key of a part-wise body's manifest (FORMAT.md §17).
pub const MANIFEST_KEY_LABEL: &[u8] = b"sealstream v1 part manifest key";
/// Bytes of the random salt each part of a part-wise body is sealed under.
pub const PART_SALT_LEN: usize = 16;

/// The keys of a part-wise body (FORMAT.md §17): one per uploaded part, plus the manifest's
/// MAC key, all expanded from the object's PRK and header digest. Held by `Sealing` and
/// `Opening` so that parts can be keyed on demand without keeping the data key itself.
///
/// Zeroization: the PRK lives only inside the self-wiping HMAC states of `Hkdf` (checked at
/// compile time above); derived keys are returned in `Zeroizing` buffers.
#[derive(Clone)]
pub struct PartKeys {
    hk: Hkdf<Sha256>,
    header_digest: [u8; 32],
}

impl std::fmt::Debug for PartKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartKeys { .. }")
    }
}

impl PartKeys {
    /// Extracts the object's PRK from the data key and salt (the same PRK as [`derive`]).
    pub fn new(dek: &[u8; 32], salt: &[u8; 32], header_digest: &[u8; 32]) -> Self {
        let (mut prk, hk) = Hkdf::<Sha256>::extract(Some(salt), dek);
        prk.as_mut_slice().zeroize();
        PartKeys {
            hk,
            header_digest: *header_digest,
        }
    }

    /// `HKDF-Expand(PRK, PART_KEY_LABEL || H || BE32(number) || part_salt, 32)`.
    pub fn part_key(&self, number: u32, part_salt: &[u8; PART_SALT_LEN]) -> Zeroizing<[u8; 32]> {
        let mut info = [0u8; 22 + 32 + 4 + PART_SALT_LEN];
        let n = PART_KEY_LABEL.len();
        info[..n].copy_from_slice(PART_KEY_LABEL);
        info[n..n + 32].copy_from_slice(&self.header_digest);
        info[n + 32..n + 36].copy_from_slice(&number.to_be_bytes());
        info[n + 36..].copy_from_slice(part_salt);
        self.expand(&info)
    }

    /// `HKDF-Expand(PRK, MANIFEST_KEY_LABEL || H, 32)`: the manifest's HMAC-SHA-256 key.
    pub fn manifest_key(&self) -> Zeroizing<[u8; 32]> {
        let mut info = [0u8; 31 + 32];
        let n = MANIFEST_KEY_LABEL.len();
        info[..n].copy_from_slice(MANIFEST_KEY_LABEL);
        info[n..].copy_from_slice(&self.header_digest);
        self.expand(&info)
    }

    fn expand(&self, info: &[u8]) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        // 32-byte outputs are far below HKDF-SHA-256's 8160-byte maximum: expand cannot fail.
        #[allow(clippy::expect_used)]
        self.hk
            .expand(info, &mut out[..])
            .expect("32-byte HKDF output is within limits");
        out
    }
}

// The label lengths the fixed-size info buffers above are laid out for.
const _: () = assert!(PART_KEY_LABEL.len() == 22 && MANIFEST_KEY_LABEL.len() == 31);
