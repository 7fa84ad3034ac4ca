#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod aws;
pub mod cli;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod format;
pub mod keys;
pub mod kms;
pub mod primitives;
pub mod range;
pub mod reader;
pub mod s3;
pub mod size;
pub mod text;
pub mod writer;

pub use envelope::{DecryptParams, EncryptParams, decrypt, encrypt};
pub use error::{Error, HeaderError, Result};
pub use format::{Context, Header, Suite};
pub use keys::local::LocalKey;
pub use keys::{DataKey, KeyProvider};
pub use reader::{Decryptor, SequentialReader, StreamReader};
pub use writer::{Encryptor, StreamWriter};
