//! Envelope encryption of large files and objects, in constant memory, on all cores.
//!
//! Each object gets a fresh 256-bit data key. The data key is wrapped by one or more
//! key-encryption keys (a local key file, AWS KMS, or your own [`KeyProvider`]) and the
//! wrapped copies ("stanzas") are stored in the object's header, together with an
//! authenticated encryption context. The body is a STREAM-style chunked AEAD (AES-256-GCM
//! or ChaCha20-Poly1305): every chunk is authenticated under its index and a final-chunk
//! flag, so reordering, truncation and extension are detected, and no plaintext of an
//! unauthenticated chunk is ever released. Any byte range can be decrypted by reading only
//! the chunks that cover it ([`range`]).
//!
//! # Quick start
//!
//! Encrypt and decrypt in memory with a local key (any `Read` and `Write` work the same
//! way, a file or a socket of any size):
//!
//! ```
//! use sealstream::{Context, DecryptParams, EncryptParams, KeyProvider, LocalKey};
//!
//! let key = LocalKey::generate()?;
//! let keys: [&dyn KeyProvider; 1] = [&key];
//!
//! // The context is authenticated (not secret); decryption can require it.
//! let context = Context::from_pairs([("tenant", "acme")])?;
//! let params = EncryptParams { context: context.clone(), ..EncryptParams::default() };
//!
//! let plaintext = b"attack at dawn".repeat(1000);
//! let mut sealed = Vec::new();
//! sealstream::encrypt(&plaintext[..], &mut sealed, &keys, &params)?;
//!
//! let mut opened = Vec::new();
//! let expect = DecryptParams { expected_context: context, ..DecryptParams::default() };
//! sealstream::decrypt(&sealed[..], &mut opened, &keys, &expect)?;
//! assert_eq!(opened, plaintext);
//!
//! // A wrong expectation fails before any plaintext is written.
//! let wrong = DecryptParams {
//!     expected_context: Context::from_pairs([("tenant", "other")])?,
//!     ..DecryptParams::default()
//! };
//! let mut out = Vec::new();
//! let err = sealstream::decrypt(&sealed[..], &mut out, &keys, &wrong).unwrap_err();
//! assert!(err.is_authentication() && out.is_empty());
//! # Ok::<(), sealstream::Error>(())
//! ```
//!
//! # Cargo features
//!
//! | feature | default | what it adds | pulls in |
//! |---------|---------|--------------|----------|
//! | *(none)* | — | the core: [`format`](mod@format), [`keys`] (local keys, data-key cache), [`keyring`] (which keys, in which order), [`envelope`], [`engine`], [`range`], [`error`], [`text`], [`size`] | RustCrypto, `ring` |
//! | `async` | via `s3`/`kms` | the async layer over tokio | `tokio`, `futures-util`, `bytes` |
//! | `kms` | via `cli` | `kms`: AWS KMS as a [`KeyProvider`] | `async`, the AWS SDK for KMS |
//! | `s3` | via `cli` | `s3`: sealed S3 objects, ranged reads, rewrap in place | `async`, the AWS SDK for S3 |
//! | `cli` | yes | the `sealstream` binary only; nothing in the library | `s3`, `kms`, `clap`, `indicatif`, `ctrlc` |
//!
//! A service that needs only the format and local keys depends on
//! `sealstream = { version = "…", default-features = false }` and compiles no AWS SDK,
//! tokio, clap or indicatif. (`aws` is an internal feature that `s3` and `kms` enable;
//! `testing` exposes internals to this crate's own tests and is not API.)
//!
//! # Errors
//!
//! Every fallible call returns [`Result`] with one [`Error`] type. Its variants are
//! `#[non_exhaustive]` and grouped by what the caller can do:
//!
//! - [`Error::InvalidArgument`]: the request itself is wrong (a parameter, an unsatisfiable
//!   range); fix the call.
//! - [`Error::is_authentication`]: the input is malformed, truncated or tampered with, or
//!   not sealed for the keys and context given. Retrying will not help.
//! - [`Error::Io`], [`Error::OutputExists`], [`Error::KeyFile`]: the environment.
//! - [`Error::service_error`]: S3 or KMS failed. The [`error::ServiceError`] keeps the
//!   service's code and request id, and its [`kind`](error::ServiceError::kind)
//!   ([`error::ServiceErrorKind`]: `Throttled`, `AccessDenied`, `NotFound`,
//!   `PreconditionFailed`, `Timeout`, `Unreachable`, `ServiceInternal`, …) tells a retry
//!   from a permission problem without parsing messages:
//!
//! ```
//! use sealstream::error::ServiceErrorKind;
//!
//! fn worth_retrying(e: &sealstream::Error) -> bool {
//!     matches!(
//!         e.service_error().map(|s| s.kind()),
//!         Some(ServiceErrorKind::Throttled | ServiceErrorKind::Timeout | ServiceErrorKind::Unreachable)
//!     )
//! }
//! # assert!(!worth_retrying(&sealstream::Error::CommitmentMismatch));
//! ```
//!
//! Messages say what went wrong and what to do, in library terms; the command-line tool
//! maps errors to its exit codes and flag hints itself.
//!
//! # The format
//!
//! The byte format (header, stanzas, key schedule, chunking, the object form on S3) is
//! specified in `docs/FORMAT.md` in the repository, with test vectors in `tests/vectors/`.
//! [`format`](mod@format) parses and writes the header; [`Header`] and [`HeaderError`] are its types.
//!
//! # Toolchain
//!
//! Edition 2024. Built and tested with Rust 1.95; no older minimum is promised yet (no
//! `rust-version` is declared). `#![forbid(unsafe_code)]`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "async")]
#[cfg_attr(docsrs, doc(cfg(feature = "async")))]
pub mod aio;
#[cfg(feature = "aws")]
#[cfg_attr(docsrs, doc(cfg(any(feature = "s3", feature = "kms"))))]
pub mod aws;
pub mod envelope;
pub mod error;
pub mod format;
#[cfg(feature = "gateway")]
#[cfg_attr(docsrs, doc(cfg(feature = "gateway")))]
pub mod gateway;
pub mod jobs;
pub mod keyring;
pub mod keys;
#[cfg(feature = "kms")]
#[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
pub mod kms;
pub mod parts;
mod primitives;
pub mod range;
pub mod reader;
pub mod rewrap;
#[cfg(feature = "s3")]
#[cfg_attr(docsrs, doc(cfg(feature = "s3")))]
pub mod s3;
pub mod size;
pub mod stream;
pub mod text;
pub mod writer;

/// The STREAM engine under its former name; new code uses [`stream`].
pub use stream as engine;

pub use envelope::{DecryptParams, EncryptParams, decrypt, encrypt};
pub use error::{Error, HeaderError, Result};
pub use format::{Context, Header, Suite};
pub use keys::local::LocalKey;
pub use keys::{DataKey, KeyProvider};
pub use primitives::aead::Backend;
pub use primitives::stream::PayloadCipher;
pub use reader::{Decryptor, SequentialReader, StreamReader};
pub use writer::{Encryptor, StreamWriter};

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
