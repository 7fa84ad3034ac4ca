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
pub mod primitives;
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
