#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "async")]
pub mod aio;
pub mod aws;
pub mod cli;
pub mod envelope;
pub mod error;
pub mod format;
pub mod keys;
pub mod kms;
pub mod primitives;
pub mod range;
pub mod s3;
pub mod size;
pub mod stream;
pub mod text;

/// The STREAM engine under its former name; new code uses [`stream`].
pub use stream as engine;

pub use envelope::{DecryptParams, EncryptParams, decrypt, encrypt};
pub use error::{Error, HeaderError, Result};
pub use format::{Context, Header, Suite};
pub use keys::local::LocalKey;
pub use keys::{DataKey, KeyProvider};
