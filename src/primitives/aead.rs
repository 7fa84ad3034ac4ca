//! A minimal per-chunk AEAD interface with two interchangeable backends.
//!
//! `ring` is the production backend (measured fastest here, docs/BENCHMARKS.md); RustCrypto's
//! `aes-gcm`/`chacha20poly1305` is a second, independent implementation used by tests to
//! cross-check every chunk and available to users who prefer a pure-Rust stack.

use aes_gcm::aead::{AeadInOut, KeyInit};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::format::{Suite, TAG_LEN};

/// A 96-bit AEAD nonce.
pub type NonceBytes = [u8; 12];
/// A 128-bit AEAD tag.
pub type TagBytes = [u8; TAG_LEN];

/// Tag verification failed. Carries no detail on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

/// Seal/open one chunk in place with a detached tag.
///
/// Implementations must not allocate: this is called once per chunk on the hot path.
pub trait ChunkAead: Send + Sync {
    /// Encrypts `buf` in place and returns the tag.
    fn seal(&self, nonce: &NonceBytes, buf: &mut [u8]) -> TagBytes;
    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds no plaintext.
    fn open(&self, nonce: &NonceBytes, buf: &mut [u8], tag: &TagBytes) -> Result<(), OpenError>;
}

/// Which implementation to use for the body cipher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Backend {
    /// `ring` (BoringSSL-derived assembly, runtime CPU detection). The default.
    #[default]
    Ring,
    /// RustCrypto `aes-gcm` / `chacha20poly1305` (pure Rust, runtime AES-NI detection).
    RustCrypto,
}

/// Builds a chunk AEAD for `suite` keyed with `key` using `backend`.
///
/// Shared (`Arc`) so that a payload cipher can be handed to pool workers without copying
/// its key schedule: built in place, so no moved-from copy of it is left behind.
pub fn new_chunk_aead(suite: Suite, backend: Backend, key: &[u8; 32]) -> Arc<dyn ChunkAead> {
    match backend {
        Backend::Ring => Arc::new(RingAead::new(suite, key)),
        Backend::RustCrypto => match suite {
            Suite::ChaCha20Poly1305 => Arc::new(RcAead(chacha20poly1305::ChaCha20Poly1305::new(
                &chacha20poly1305::Key::from(*Zeroizing::new(*key)),
            ))),
            Suite::Aes256Gcm => Arc::new(RcAead(aes_gcm::Aes256Gcm::new(&aes_gcm::Key::<
                aes_gcm::Aes256Gcm,
            >::from(
                *Zeroizing::new(*key)
            )))),
        },
    }
}

struct RingAead(ring::aead::LessSafeKey);

impl RingAead {
    fn new(suite: Suite, key: &[u8; 32]) -> Self {
        let alg = match suite {
            Suite::Aes256Gcm => &ring::aead::AES_256_GCM,
            Suite::ChaCha20Poly1305 => &ring::aead::CHACHA20_POLY1305,
        };
        // Both algorithms take exactly 32-byte keys, so this cannot fail.
        #[allow(clippy::expect_used)]
        let unbound =
            ring::aead::UnboundKey::new(alg, key).expect("32-byte key for a 256-bit AEAD");
        RingAead(ring::aead::LessSafeKey::new(unbound))
    }
}

impl ChunkAead for RingAead {
    fn seal(&self, nonce: &NonceBytes, buf: &mut [u8]) -> TagBytes {
        let n = ring::aead::Nonce::assume_unique_for_key(*nonce);
        // ring only fails for inputs over the algorithm's maximum (~64 GiB); chunks are
        // at most 16 MiB, enforced by the format limits.
        #[allow(clippy::expect_used)]
        let tag = self
            .0
            .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), buf)
            .expect("chunk within AEAD input limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open(&self, nonce: &NonceBytes, buf: &mut [u8], tag: &TagBytes) -> Result<(), OpenError> {
        let n = ring::aead::Nonce::assume_unique_for_key(*nonce);
        let t = ring::aead::Tag::from(*tag);
        self.0
            .open_in_place_separate_tag(n, ring::aead::Aad::empty(), t, buf, 0..)
            .map(|_| ())
            .map_err(|_| OpenError)
    }
}

struct RcAead<A>(A);

impl<A> ChunkAead for RcAead<A>
where
    A: AeadInOut<NonceSize = aes_gcm::aead::consts::U12, TagSize = aes_gcm::aead::consts::U16>
        + Send
        + Sync,
{
    fn seal(&self, nonce: &NonceBytes, buf: &mut [u8]) -> TagBytes {
        // Only fails for inputs beyond the cipher's limit; chunks are at most 16 MiB.
        #[allow(clippy::expect_used)]
        let tag = self
            .0
            .encrypt_inout_detached(&(*nonce).into(), b"", buf.into())
            .expect("chunk within AEAD input limit");
        tag.into()
    }

    fn open(&self, nonce: &NonceBytes, buf: &mut [u8], tag: &TagBytes) -> Result<(), OpenError> {
        self.0
            .decrypt_inout_detached(&(*nonce).into(), b"", buf.into(), &(*tag).into())
            .map_err(|_| OpenError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_agree() {
        for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
            let key = [42u8; 32];
            let a = new_chunk_aead(suite, Backend::Ring, &key);
            let b = new_chunk_aead(suite, Backend::RustCrypto, &key);
            let nonce = [3u8; 12];
            for len in [0usize, 1, 15, 16, 17, 4096, 70000] {
                let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
                let mut x = pt.clone();
                let mut y = pt.clone();
                let tx = a.seal(&nonce, &mut x);
                let ty = b.seal(&nonce, &mut y);
                assert_eq!(x, y);
                assert_eq!(tx, ty);
                b.open(&nonce, &mut x, &tx).unwrap();
                assert_eq!(x, pt);
                let mut bad = tx;
                bad[0] ^= 1;
                assert!(a.open(&nonce, &mut y, &bad).is_err());
            }
        }
    }
}
