#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "aws")]
pub mod aws;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod format;
pub mod keys;
#[cfg(feature = "kms")]
pub mod kms;
mod primitives;
pub mod range;
#[cfg(feature = "s3")]
pub mod s3;
pub mod size;
pub mod text;

pub use envelope::{DecryptParams, EncryptParams, decrypt, encrypt};
pub use error::{Error, HeaderError, Result};
pub use format::{Context, Header, Suite};
pub use keys::local::LocalKey;
pub use keys::{DataKey, KeyProvider};
pub use primitives::aead::Backend;
pub use primitives::stream::PayloadCipher;

/// Crate internals for this crate's own tests, benches, test vectors and fuzz targets.
///
/// **Not API, unstable**: compiled only with the `testing` feature, hidden from the docs,
/// and changed without notice. A dependent crate must not enable `testing`.
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testkit {
    pub use crate::primitives::{aead, kdf, stream};

    use crate::format::Suite;
    use crate::{Backend, PayloadCipher, Result};

    /// The payload key of a derivation (secret; for known-answer tests only).
    pub fn payload_key(d: &kdf::Derived) -> &[u8; 32] {
        &d.payload_key
    }

    /// Chunk-level access to a [`PayloadCipher`], whose chunk operations are otherwise
    /// internal: tamper cases, vectors and benches build and break single chunks.
    pub trait ChunkCipher: Sized {
        /// Keys a payload cipher directly (bypassing the header and the data key).
        fn new(suite: Suite, backend: Backend, payload_key: &[u8; 32]) -> Self;
        /// Seals `chunk[..len]` in place and appends the tag.
        fn seal_chunk(&self, index: u64, last: bool, chunk: &mut [u8], len: usize) -> Result<()>;
        /// Opens one sealed chunk in place; returns the plaintext length.
        fn open_chunk(&self, index: u64, last: bool, chunk: &mut [u8]) -> Result<usize>;
    }

    impl ChunkCipher for PayloadCipher {
        fn new(suite: Suite, backend: Backend, payload_key: &[u8; 32]) -> Self {
            PayloadCipher::new(suite, backend, payload_key)
        }
        fn seal_chunk(&self, index: u64, last: bool, chunk: &mut [u8], len: usize) -> Result<()> {
            PayloadCipher::seal_chunk(self, index, last, chunk, len)
        }
        fn open_chunk(&self, index: u64, last: bool, chunk: &mut [u8]) -> Result<usize> {
            PayloadCipher::open_chunk(self, index, last, chunk)
        }
    }
}
