//! Composition of vetted primitives: per-chunk AEAD backends, HKDF derivations, and the
//! STREAM nonce schedule. Nothing here implements a cipher; it only calls `ring` and the
//! RustCrypto crates.

pub mod aead;
pub mod kdf;
pub mod stream;
