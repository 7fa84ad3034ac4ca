//! The STREAM construction: chunk `i` is sealed under nonce `0^56 || BE32(i) || flag`,
//! with flag `0x01` on the final chunk and `0x00` otherwise (as in age/rage).
//!
//! Binding the index prevents reordering, dropping and duplicating chunks; binding the final
//! flag prevents truncation at a chunk boundary and appending chunks.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format::{Suite, TAG_LEN, limits};
use crate::primitives::aead::{Backend, ChunkAead, TagBytes, new_chunk_aead};

/// Builds the 12-byte nonce for chunk `index`.
pub fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

/// The body cipher of one sealed object: the payload key (derived from the data key and
/// the header) in an AEAD backend, plus the STREAM nonce schedule.
///
/// Why it is public: it is what [`envelope::unlock`](crate::envelope::unlock) returns once
/// a key has opened a header, so a caller can authenticate the header once and then
/// decrypt the body, or any byte range of it ([`range::decrypt_range`](crate::range::decrypt_range)),
/// without unwrapping the data key again. Its chunk operations are internal. `Debug` shows
/// no key material.
///
/// Cloning shares the same key schedule (a reference count), so the worker pool can hold
/// the cipher of every stream it serves; the key is wiped when the last clone is dropped
/// (for the backends that wipe, see `aead`).
#[derive(Clone)]
pub struct PayloadCipher {
    aead: Arc<dyn ChunkAead>,
}

impl std::fmt::Debug for PayloadCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PayloadCipher { .. }")
    }
}

impl PayloadCipher {
    /// Keys a payload cipher; the key bytes are copied into the backend's key schedule.
    pub(crate) fn new(suite: Suite, backend: Backend, payload_key: &[u8; 32]) -> Self {
        PayloadCipher {
            aead: new_chunk_aead(suite, backend, payload_key),
        }
    }

    /// Seals `chunk[..len]` in place and writes the tag to `chunk[len..len + 16]`.
    ///
    /// `chunk` must be at least `len + 16` bytes.
    pub(crate) fn seal_chunk(
        &self,
        index: u64,
        last: bool,
        chunk: &mut [u8],
        len: usize,
    ) -> Result<()> {
        if index >= limits::MAX_CHUNKS {
            return Err(Error::TooManyChunks);
        }
        let (data, rest) = chunk.split_at_mut(len);
        let tag = self.aead.seal(&nonce(index, last), data);
        rest[..TAG_LEN].copy_from_slice(&tag);
        Ok(())
    }

    /// Opens one sealed chunk (`data || tag`) in place; on success `chunk[..len-16]` is
    /// plaintext. On failure no plaintext is left in `chunk`.
    pub(crate) fn open_chunk(&self, index: u64, last: bool, chunk: &mut [u8]) -> Result<usize> {
        let body = chunk
            .len()
            .checked_sub(TAG_LEN)
            .ok_or_else(|| Error::Truncated {
                detail: format!("chunk {index} is shorter than its tag"),
            })?;
        if index >= limits::MAX_CHUNKS {
            return Err(Error::TooManyChunks);
        }
        let (data, tag) = chunk.split_at_mut(body);
        let mut t: TagBytes = [0; TAG_LEN];
        t.copy_from_slice(tag);
        self.aead
            .open(&nonce(index, last), data, &t)
            .map_err(|_| Error::ChunkAuth { index })?;
        Ok(body)
    }

    /// Opens a chunk expected to be final; if that fails, tells truncation from tampering.
    ///
    /// A chunk that authenticates as *non-final* where the stream ends means the stream was
    /// cut at a chunk boundary. `scratch` keeps a copy of the ciphertext for the second try
    /// (some backends wipe the buffer on failure); it is only used on the error path.
    pub(crate) fn open_final_chunk(
        &self,
        index: u64,
        chunk: &mut [u8],
        scratch: &mut Vec<u8>,
    ) -> Result<usize> {
        scratch.clear();
        scratch.extend_from_slice(chunk);
        match self.open_chunk(index, true, chunk) {
            Ok(n) => {
                if n == 0 && index > 0 {
                    return Err(Error::LastChunkEmpty { index });
                }
                Ok(n)
            }
            Err(Error::ChunkAuth { .. }) if scratch.len() > TAG_LEN => {
                if self.open_chunk(index, false, scratch).is_ok() {
                    scratch.iter_mut().for_each(|b| *b = 0);
                    Err(Error::Truncated {
                        detail: format!(
                            "the stream ends after chunk {index}, which is not a final chunk"
                        ),
                    })
                } else {
                    Err(Error::ChunkAuth { index })
                }
            }
            Err(e) => Err(e),
        }
    }
}
