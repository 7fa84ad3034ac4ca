//! The content of an S3EC object: the key schedule (V3: HKDF-SHA512 with the key
//! commitment checked) and one AES-256-GCM over the whole body, decrypted in bounded memory
//! with `aes-gcm-stream`. Plain and synchronous; the S3 side feeds it.
//!
//! **Nothing [`BodyDecryptor::update`] returns is authenticated** until
//! [`BodyDecryptor::finish`] succeeds: callers write it only where it cannot be seen before
//! then (a temporary file renamed afterwards, or nowhere in a verifying pass). That is why
//! this type is crate-private.

use aes_gcm_stream::Aes256GcmStreamDecryptor;
use hkdf::Hkdf;
use sha2::Sha512;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::metadata::{COMMIT_LEN, Envelope, MAX_GCM_CIPHERTEXT, TAG_LEN, Version};
use crate::error::{Error, Result};
use crate::keys::DataKey;

/// The suite id of ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY as bytes (HKDF info prefix, AAD).
const SUITE_ID: [u8; 2] = [0x00, 0x73];

/// The AES-GCM key of the body: the data key itself (V2), or (V3) the key derived with
/// HKDF-SHA512 (salt = message id, info = suite id ‖ "DERIVEKEY") after the commitment
/// (info = suite id ‖ "COMMITKEY", 28 bytes) was checked in constant time against
/// `x-amz-d`. A wrong commitment is [`Error::CommitmentMismatch`].
pub(crate) fn content_key(env: &Envelope, dek: &DataKey) -> Result<Zeroizing<[u8; 32]>> {
    let Some((stored, message_id)) = &env.commitment else {
        return Ok(Zeroizing::new(*dek.expose()));
    };
    let hk = Hkdf::<Sha512>::new(Some(message_id), dek.expose());
    let mut info = [0u8; 11];
    info[..2].copy_from_slice(&SUITE_ID);
    let mut commit = Zeroizing::new([0u8; COMMIT_LEN]);
    info[2..].copy_from_slice(b"COMMITKEY");
    // Output lengths far below HKDF-SHA512's maximum: expand cannot fail.
    hk.expand(&info, &mut commit[..])
        .map_err(|_| Error::InvalidArgument("HKDF output length".into()))?;
    if !bool::from(commit.ct_eq(stored)) {
        return Err(Error::CommitmentMismatch);
    }
    let mut key = Zeroizing::new([0u8; 32]);
    info[2..].copy_from_slice(b"DERIVEKEY");
    hk.expand(&info, &mut key[..])
        .map_err(|_| Error::InvalidArgument("HKDF output length".into()))?;
    Ok(key)
}

/// Why a body did not authenticate (the S3 layer adds the object's name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BodyError {
    /// Fewer or more bytes than the object's length said.
    Length {
        /// Bytes the object's Content-Length announced.
        expected: u64,
        /// Bytes fed.
        found: u64,
    },
    /// Shorter than a GCM tag: no S3EC body is.
    TooShort(u64),
    /// Longer than one AES-GCM may encrypt.
    TooLong(u64),
    /// The tag does not verify.
    Tag,
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Length { expected, found } => write!(
                f,
                "the body ended after {found} of {expected} bytes (truncated)"
            ),
            BodyError::TooShort(n) => write!(
                f,
                "the body is {n} bytes, shorter than its {TAG_LEN}-byte GCM tag (truncated)"
            ),
            BodyError::TooLong(n) => write!(
                f,
                "the body is {n} bytes, more than one AES-GCM can encrypt (not an S3 Encryption Client object)"
            ),
            BodyError::Tag => write!(
                f,
                "the GCM tag over the whole body does not verify: the body or its metadata was modified, or they belong to different objects"
            ),
        }
    }
}

/// Checks an S3EC body length before anything is read.
pub(crate) fn check_body_len(len: u64) -> std::result::Result<(), BodyError> {
    if len < TAG_LEN as u64 {
        Err(BodyError::TooShort(len))
    } else if len > MAX_GCM_CIPHERTEXT {
        Err(BodyError::TooLong(len))
    } else {
        Ok(())
    }
}

/// One AES-256-GCM over the whole body. Feed it the body in order; the plaintext it returns
/// is NOT authenticated until [`BodyDecryptor::finish`] returns `Ok`.
pub(crate) struct BodyDecryptor {
    gcm: Aes256GcmStreamDecryptor,
    fed: u64,
    expected: u64,
}

impl BodyDecryptor {
    /// A decryptor for a body of `len` bytes (tag included), checked with
    /// [`check_body_len`].
    pub(crate) fn new(
        env: &Envelope,
        key: &Zeroizing<[u8; 32]>,
        len: u64,
    ) -> std::result::Result<BodyDecryptor, BodyError> {
        check_body_len(len)?;
        let mut gcm = Aes256GcmStreamDecryptor::new(**key, &env.iv);
        if env.version == Version::V3 {
            gcm.init_adata(&SUITE_ID);
        }
        Ok(BodyDecryptor {
            gcm,
            fed: 0,
            expected: len,
        })
    }

    /// Decrypts the next body bytes; returns plaintext that is not yet authenticated (the
    /// last 16 bytes fed are held back as the candidate tag). More bytes than announced
    /// fail.
    pub(crate) fn update(&mut self, ciphertext: &[u8]) -> std::result::Result<Vec<u8>, BodyError> {
        self.fed += ciphertext.len() as u64;
        if self.fed > self.expected {
            return Err(BodyError::Length {
                expected: self.expected,
                found: self.fed,
            });
        }
        Ok(self.gcm.update(ciphertext))
    }

    /// Checks the length and the tag; returns the last plaintext bytes. Only after `Ok`
    /// is everything returned by `update` authentic. The library's own error text (which
    /// contains the expected tag) is dropped.
    pub(crate) fn finish(mut self) -> std::result::Result<Vec<u8>, BodyError> {
        if self.fed != self.expected {
            return Err(BodyError::Length {
                expected: self.expected,
                found: self.fed,
            });
        }
        // `finalize` indexes the last 16 bytes: never call it with fewer (checked in `new`,
        // and `fed == expected` here).
        if self.fed < TAG_LEN as u64 {
            return Err(BodyError::TooShort(self.fed));
        }
        self.gcm.finalize().map_err(|_| BodyError::Tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::s3ec::metadata::{IV_LEN, Wrapping};
    use aes_gcm::aead::{Aead, KeyInit, Payload};

    fn env(version: Version, commitment: Option<([u8; 28], [u8; 28])>) -> Envelope {
        Envelope {
            version,
            wrapping: Wrapping::KmsContext,
            encrypted_data_key: vec![1],
            kms_context: Default::default(),
            iv: if version == Version::V3 {
                [1; IV_LEN]
            } else {
                [7; IV_LEN]
            },
            commitment,
            instruction_file: false,
        }
    }

    /// The reference: aes-gcm (RustCrypto) over the whole message.
    fn seal(key: &[u8; 32], iv: &[u8; 12], aad: &[u8], pt: &[u8]) -> Vec<u8> {
        let c = aes_gcm::Aes256Gcm::new_from_slice(key).unwrap();
        c.encrypt(iv.into(), Payload { msg: pt, aad }).unwrap()
    }

    fn open_all(d: &mut BodyDecryptor, ct: &[u8], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in ct.chunks(step.max(1)) {
            out.extend(d.update(piece).unwrap());
        }
        out
    }

    #[test]
    fn v2_body_round_trips_in_any_piece_size_and_rejects_every_flip() {
        let key = Zeroizing::new([9u8; 32]);
        let e = env(Version::V2, None);
        for len in [0usize, 1, 15, 16, 17, 31, 32, 33, 1000] {
            let pt: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let ct = seal(&key, &e.iv, &[], &pt);
            for step in [1, 7, 16, 4096] {
                let mut d = BodyDecryptor::new(&e, &key, ct.len() as u64).unwrap();
                let mut got = open_all(&mut d, &ct, step);
                got.extend(d.finish().unwrap());
                assert_eq!(got, pt, "len {len} step {step}");
            }
            for i in [0, ct.len() / 2, ct.len() - 1] {
                let mut bad = ct.clone();
                bad[i] ^= 1;
                let mut d = BodyDecryptor::new(&e, &key, bad.len() as u64).unwrap();
                open_all(&mut d, &bad, 5);
                assert_eq!(d.finish().unwrap_err(), BodyError::Tag, "flip at {i}");
            }
        }
    }

    #[test]
    fn lengths_are_checked_before_the_tag() {
        let key = Zeroizing::new([9u8; 32]);
        let e = env(Version::V2, None);
        let ct = seal(&key, &e.iv, &[], b"hello world, hello world");
        // Announced longer than delivered: truncated.
        let mut d = BodyDecryptor::new(&e, &key, ct.len() as u64 + 1).unwrap();
        open_all(&mut d, &ct, 3);
        assert!(matches!(d.finish(), Err(BodyError::Length { .. })));
        // Delivered more than announced.
        let mut d = BodyDecryptor::new(&e, &key, ct.len() as u64 - 1).unwrap();
        assert!(matches!(d.update(&ct), Err(BodyError::Length { .. })));
        // Under a tag: refused up front (aes-gcm-stream would panic).
        assert_eq!(
            BodyDecryptor::new(&e, &key, 15).err(),
            Some(BodyError::TooShort(15))
        );
        assert!(BodyDecryptor::new(&e, &key, MAX_GCM_CIPHERTEXT + 1).is_err());
    }

    #[test]
    fn v3_key_schedule_checks_the_commitment_and_binds_the_aad() {
        let dek = DataKey::from_bytes([3u8; 32]);
        let message_id = [5u8; 28];
        // The reference derivation, spelled out (HKDF-SHA512 extract with the message id).
        let hk = Hkdf::<Sha512>::new(Some(&message_id), dek.expose());
        let mut commit = [0u8; 28];
        hk.expand(b"\x00\x73COMMITKEY", &mut commit).unwrap();
        let mut derived = [0u8; 32];
        hk.expand(b"\x00\x73DERIVEKEY", &mut derived).unwrap();
        let e = env(Version::V3, Some((commit, message_id)));
        let key = content_key(&e, &dek).unwrap();
        assert_eq!(*key, derived);
        let ct = seal(&derived, &[1; 12], &SUITE_ID, b"committed content");
        let mut d = BodyDecryptor::new(&e, &key, ct.len() as u64).unwrap();
        let mut got = open_all(&mut d, &ct, 4);
        got.extend(d.finish().unwrap());
        assert_eq!(got, b"committed content");
        // Without the AAD (a V2 reading of a V3 body) the tag fails.
        let as_v2 = Envelope {
            version: Version::V2,
            ..e.clone()
        };
        let mut d = BodyDecryptor::new(&as_v2, &key, ct.len() as u64).unwrap();
        open_all(&mut d, &ct, 4);
        assert_eq!(d.finish().unwrap_err(), BodyError::Tag);
        // A changed commitment or message id: CommitmentMismatch before any decryption.
        let mut c2 = commit;
        c2[27] ^= 1;
        let bad = env(Version::V3, Some((c2, message_id)));
        assert!(matches!(
            content_key(&bad, &dek),
            Err(Error::CommitmentMismatch)
        ));
        let mut m2 = message_id;
        m2[0] ^= 1;
        let bad = env(Version::V3, Some((commit, m2)));
        assert!(matches!(
            content_key(&bad, &dek),
            Err(Error::CommitmentMismatch)
        ));
    }
}
