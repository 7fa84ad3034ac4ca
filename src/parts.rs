//! The part-wise body (FORMAT.md §17): a body made of independently sealed parts, as an S3
//! multipart upload produces when its parts are encrypted one by one, in any order and on
//! different machines, plus the authenticated **manifest** that says which parts make the
//! object, in which order, under which salts and with how many plaintext bytes each.
//!
//! Each part is an ordinary v1 body (§6) under its own key, derived from the object's data
//! key, header digest, part number and a random per-part salt; the manifest is MACed with a
//! key derived from the same data key and header digest. So a part dropped, reordered,
//! duplicated, truncated, taken from another object or from an earlier upload of the same
//! part number fails either the manifest check or a chunk's authentication.
//!
//! This module is I/O-free and holds no keys: it encodes, parses and verifies manifests and
//! maps plaintext ranges onto parts. The keys come from `envelope::Sealing` / `Opening`.

use std::fmt;
use std::ops::Range;

use ring::hmac;

pub use crate::error::ManifestError;
use crate::format::{Layout, TAG_LEN, limits};
use crate::range::{self, ByteRange};
use crate::stream::OpenParams;

pub use crate::primitives::kdf::PART_SALT_LEN;

/// The manifest's first 8 bytes.
pub const MANIFEST_MAGIC: [u8; 8] = *b"SEALPRTS";
/// The manifest encoding this build writes and reads.
pub const MANIFEST_VERSION: u8 = 1;
/// Bytes before the first entry: magic, version, 3 reserved bytes, the u32 part count.
pub const MANIFEST_PREFIX_LEN: usize = 16;
/// Bytes per part entry: u32 part number, the part salt, u64 plaintext length.
pub const MANIFEST_ENTRY_LEN: usize = 4 + PART_SALT_LEN + 8;
/// Bytes of the HMAC-SHA-256 tag that ends the manifest.
pub const MANIFEST_MAC_LEN: usize = 32;
/// S3's limits on a multipart upload, which the manifest adopts: part numbers `1..=10000`.
pub const MAX_PARTS: u32 = 10_000;
/// S3's largest part (5 GiB); a part's *ciphertext* must fit in it.
pub const MAX_PART_LEN: u64 = 5 * 1024 * 1024 * 1024;
/// The longest valid manifest (10,000 entries), checked before anything is parsed.
pub const MAX_MANIFEST_LEN: usize =
    MANIFEST_PREFIX_LEN + MAX_PARTS as usize * MANIFEST_ENTRY_LEN + MANIFEST_MAC_LEN;

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ManifestError::BadLength(n) => {
                write!(f, "the part manifest has an impossible length ({n} bytes)")
            }
            ManifestError::MacMismatch => write!(
                f,
                "the part manifest does not authenticate: it was modified or belongs to another object"
            ),
            ManifestError::BadMagic => write!(f, "not a sealstream part manifest (bad magic)"),
            ManifestError::UnsupportedVersion(v) => write!(
                f,
                "unsupported part-manifest version {v} (this build reads {MANIFEST_VERSION}); upgrade sealstream"
            ),
            ManifestError::ReservedNonZero => {
                write!(f, "the part manifest's reserved bytes are not zero")
            }
            ManifestError::CountMismatch { declared, present } => write!(
                f,
                "the part manifest declares {declared} parts but holds {present}"
            ),
            ManifestError::NoParts => write!(f, "the part manifest lists no parts"),
            ManifestError::PartNumberOutOfRange(n) => {
                write!(f, "part number {n} is outside 1..={MAX_PARTS}")
            }
            ManifestError::PartsNotIncreasing { number, previous } => write!(
                f,
                "part {number} follows part {previous}: part numbers must be strictly increasing"
            ),
            ManifestError::PartTooLarge {
                number,
                plaintext_len,
            } => write!(
                f,
                "part {number} claims {plaintext_len} plaintext bytes, more than one part can hold"
            ),
            ManifestError::BodyLengthMismatch { expected, actual } => write!(
                f,
                "the object's body is {actual} bytes but its parts add up to {expected}: \
                 parts were removed, added or truncated"
            ),
        }
    }
}

impl std::error::Error for ManifestError {}

/// One part of a part-wise body, as the manifest records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartEntry {
    /// The S3 part number (`1..=10000`), also bound into the part's key.
    pub number: u32,
    /// The random salt the part was sealed under (fresh for every upload of the part).
    pub salt: [u8; PART_SALT_LEN],
    /// The part's plaintext length.
    pub plaintext_len: u64,
}

/// The checked list of parts of a part-wise body, in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<PartEntry>,
}

/// Ciphertext length of one part (a v1 body of `plaintext_len` bytes, §6.3).
pub fn part_ciphertext_len(plaintext_len: u64, chunk_size: u32) -> u64 {
    let chunks = plaintext_len.div_ceil(u64::from(chunk_size)).max(1);
    plaintext_len + chunks * TAG_LEN as u64
}

/// Plaintext length of a part from its ciphertext length (§6.4 with no header): what a
/// writer completing an upload learns from the storage's part list.
pub fn part_plaintext_len(ciphertext_len: u64, chunk_size: u32) -> crate::Result<u64> {
    Ok(Layout::from_lengths(0, chunk_size, ciphertext_len)?.plaintext_len)
}

fn check_entries(entries: &[PartEntry], chunk_size: u32) -> Result<(), ManifestError> {
    if entries.is_empty() {
        return Err(ManifestError::NoParts);
    }
    if entries.len() > MAX_PARTS as usize {
        return Err(ManifestError::BadLength(entries.len()));
    }
    let mut previous = 0u32;
    for e in entries {
        if e.number == 0 || e.number > MAX_PARTS {
            return Err(ManifestError::PartNumberOutOfRange(e.number));
        }
        if e.number <= previous {
            return Err(ManifestError::PartsNotIncreasing {
                number: e.number,
                previous,
            });
        }
        previous = e.number;
        let too_large = ManifestError::PartTooLarge {
            number: e.number,
            plaintext_len: e.plaintext_len,
        };
        if e.plaintext_len > MAX_PART_LEN
            || e.plaintext_len.div_ceil(u64::from(chunk_size)) > limits::MAX_CHUNKS
            || part_ciphertext_len(e.plaintext_len, chunk_size) > MAX_PART_LEN
        {
            return Err(too_large);
        }
    }
    Ok(())
}

impl Manifest {
    /// Checks a writer's part list (1 to 10,000 parts, strictly increasing numbers, each
    /// part's ciphertext within 5 GiB for this chunk size).
    pub fn new(entries: Vec<PartEntry>, chunk_size: u32) -> Result<Self, ManifestError> {
        check_entries(&entries, chunk_size)?;
        Ok(Manifest { entries })
    }

    /// The parts, in body order.
    pub fn entries(&self) -> &[PartEntry] {
        &self.entries
    }

    /// The object's plaintext length (the sum of the parts').
    pub fn plaintext_len(&self) -> u64 {
        self.entries.iter().map(|e| e.plaintext_len).sum()
    }

    /// The object's body length (the sum of the parts' ciphertext lengths).
    pub fn body_len(&self, chunk_size: u32) -> u64 {
        self.entries
            .iter()
            .map(|e| part_ciphertext_len(e.plaintext_len, chunk_size))
            .sum()
    }

    /// The manifest bytes with their MAC under `mac_key` (from `PartKeys::manifest_key`).
    pub(crate) fn encode(&self, mac_key: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            MANIFEST_PREFIX_LEN + self.entries.len() * MANIFEST_ENTRY_LEN + MANIFEST_MAC_LEN,
        );
        out.extend_from_slice(&MANIFEST_MAGIC);
        out.push(MANIFEST_VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        // At most MAX_PARTS entries (checked by `new`).
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.number.to_be_bytes());
            out.extend_from_slice(&e.salt);
            out.extend_from_slice(&e.plaintext_len.to_be_bytes());
        }
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, mac_key), &out);
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Verifies and parses manifest bytes. Order: the length is bounded, then the MAC is
    /// checked (constant time) over everything before it, and only then is any field read,
    /// so nothing unauthenticated is ever interpreted.
    pub(crate) fn decode(
        bytes: &[u8],
        mac_key: &[u8; 32],
        chunk_size: u32,
    ) -> Result<Self, ManifestError> {
        let n = bytes.len();
        if !(MANIFEST_PREFIX_LEN + MANIFEST_MAC_LEN..=MAX_MANIFEST_LEN).contains(&n)
            || !(n - MANIFEST_PREFIX_LEN - MANIFEST_MAC_LEN).is_multiple_of(MANIFEST_ENTRY_LEN)
        {
            return Err(ManifestError::BadLength(n));
        }
        let (signed, tag) = bytes.split_at(n - MANIFEST_MAC_LEN);
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, mac_key), signed, tag)
            .map_err(|_| ManifestError::MacMismatch)?;
        let (prefix, body) = signed.split_at(MANIFEST_PREFIX_LEN);
        if prefix[..8] != MANIFEST_MAGIC {
            return Err(ManifestError::BadMagic);
        }
        if prefix[8] != MANIFEST_VERSION {
            return Err(ManifestError::UnsupportedVersion(prefix[8]));
        }
        if prefix[9..12] != [0, 0, 0] {
            return Err(ManifestError::ReservedNonZero);
        }
        let declared = u32::from_be_bytes([prefix[12], prefix[13], prefix[14], prefix[15]]);
        let present = body.len() / MANIFEST_ENTRY_LEN;
        if declared as usize != present {
            return Err(ManifestError::CountMismatch { declared, present });
        }
        let entries = body
            .chunks_exact(MANIFEST_ENTRY_LEN)
            .map(|c| {
                let mut number = [0u8; 4];
                let mut salt = [0u8; PART_SALT_LEN];
                let mut len = [0u8; 8];
                number.copy_from_slice(&c[..4]);
                salt.copy_from_slice(&c[4..4 + PART_SALT_LEN]);
                len.copy_from_slice(&c[4 + PART_SALT_LEN..]);
                PartEntry {
                    number: u32::from_be_bytes(number),
                    salt,
                    plaintext_len: u64::from_be_bytes(len),
                }
            })
            .collect::<Vec<_>>();
        Manifest::new(entries, chunk_size)
    }
}

/// The plaintext length a manifest *claims*, read WITHOUT its key: for listings and HEAD
/// answers only, which must not cost a key-service call per object. Nothing here is
/// authenticated (the MAC is not checked); a reader must use `Opening::part_layout`. Checks
/// only that the length is `48 + 28·k` with `count = k`; `None` if not, or on overflow.
pub fn unauthenticated_plaintext_len(bytes: &[u8]) -> Option<u64> {
    unauthenticated_entries(bytes)?.try_fold(0u64, |sum, (_, len)| sum.checked_add(len))
}

/// The (part number, plaintext length) list a manifest *claims*, in order, read WITHOUT
/// its key under the checks of [`unauthenticated_plaintext_len`]: what a HEAD of one part
/// (`partNumber`) answers without a key-service call. Nothing here is authenticated.
pub fn unauthenticated_parts(bytes: &[u8]) -> Option<Vec<(u32, u64)>> {
    Some(unauthenticated_entries(bytes)?.collect())
}

/// The entries of a manifest whose framing (length, magic, count) is consistent, unverified.
fn unauthenticated_entries(bytes: &[u8]) -> Option<impl Iterator<Item = (u32, u64)> + '_> {
    let n = bytes.len();
    if !(MANIFEST_PREFIX_LEN + MANIFEST_MAC_LEN..=MAX_MANIFEST_LEN).contains(&n) {
        return None;
    }
    let entries = n - MANIFEST_PREFIX_LEN - MANIFEST_MAC_LEN;
    if !entries.is_multiple_of(MANIFEST_ENTRY_LEN) || bytes[..8] != MANIFEST_MAGIC {
        return None;
    }
    let count = u32::from_be_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    if count != entries / MANIFEST_ENTRY_LEN || count == 0 {
        return None;
    }
    Some(
        bytes[MANIFEST_PREFIX_LEN..n - MANIFEST_MAC_LEN]
            .chunks_exact(MANIFEST_ENTRY_LEN)
            .map(|c| {
                let mut number = [0u8; 4];
                number.copy_from_slice(&c[..4]);
                let mut len = [0u8; 8];
                len.copy_from_slice(&c[4 + PART_SALT_LEN..]);
                (u32::from_be_bytes(number), u64::from_be_bytes(len))
            }),
    )
}

/// Where each part of a verified manifest sits in the body and in the plaintext: the map a
/// reader uses to fetch only the chunks covering a range.
#[derive(Debug, Clone)]
pub struct PartLayout {
    chunk_size: u32,
    parts: Vec<PlacedPart>,
    plaintext_len: u64,
}

/// One part placed in the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedPart {
    /// The manifest entry.
    pub entry: PartEntry,
    /// Offset of the part's first byte in the body.
    pub body_offset: u64,
    /// Offset of the part's first plaintext byte in the object's plaintext.
    pub plaintext_offset: u64,
}

impl PlacedPart {
    /// The part's own layout (a v1 body with no header), as its ranged opener needs it.
    pub fn layout(&self, chunk_size: u32) -> Layout {
        // `Manifest::new` bounded the part, so this layout always exists.
        let plaintext_len = self.entry.plaintext_len;
        let chunk_count = plaintext_len.div_ceil(u64::from(chunk_size)).max(1);
        Layout {
            chunk_size: u64::from(chunk_size),
            header_len: 0,
            chunk_count,
            plaintext_len,
        }
    }
}

/// The share of one part in a plaintext range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartSpan {
    /// Index of the part in the layout (body order, not the part number).
    pub index: usize,
    /// The plaintext bytes wanted, relative to the part's start.
    pub range: Range<u64>,
}

impl PartLayout {
    /// Places the parts and checks them against the stored body length: a body that is not
    /// exactly the parts' ciphertexts back to back is rejected before any part is read.
    pub fn new(manifest: &Manifest, chunk_size: u32, body_len: u64) -> Result<Self, ManifestError> {
        let expected = manifest.body_len(chunk_size);
        if expected != body_len {
            return Err(ManifestError::BodyLengthMismatch {
                expected,
                actual: body_len,
            });
        }
        let mut parts = Vec::with_capacity(manifest.entries.len());
        let (mut body_offset, mut plaintext_offset) = (0u64, 0u64);
        for e in &manifest.entries {
            parts.push(PlacedPart {
                entry: *e,
                body_offset,
                plaintext_offset,
            });
            body_offset += part_ciphertext_len(e.plaintext_len, chunk_size);
            plaintext_offset += e.plaintext_len;
        }
        Ok(PartLayout {
            chunk_size,
            parts,
            plaintext_len: plaintext_offset,
        })
    }

    /// The parts in body order.
    pub fn parts(&self) -> &[PlacedPart] {
        &self.parts
    }

    /// The object's authenticated plaintext length (from the verified manifest).
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// The chunk size every part uses (the header's).
    pub fn chunk_size(&self) -> u32 {
        self.chunk_size
    }

    /// The parts covering `range` (already clamped to the plaintext length), each with the
    /// part-relative plaintext it contributes, in order. Empty parts never contribute.
    pub fn locate(&self, range: Range<u64>) -> Vec<PartSpan> {
        let mut out = Vec::new();
        if range.start >= range.end {
            return out;
        }
        // First part whose plaintext ends after range.start.
        let first = self
            .parts
            .partition_point(|p| p.plaintext_offset + p.entry.plaintext_len <= range.start);
        for (index, p) in self.parts.iter().enumerate().skip(first) {
            if p.plaintext_offset >= range.end {
                break;
            }
            let start = range.start.max(p.plaintext_offset) - p.plaintext_offset;
            let end =
                range.end.min(p.plaintext_offset + p.entry.plaintext_len) - p.plaintext_offset;
            if start < end {
                out.push(PartSpan {
                    index,
                    range: start..end,
                });
            }
        }
        out
    }
}

/// One contiguous read of a part-wise ranged decryption: which part, which body bytes
/// (the covering chunks of that part, tags included) and how the opener treats them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRead {
    /// Index of the part in the layout.
    pub index: usize,
    /// Body bytes `[start, end)` to fetch.
    pub body_range: Range<u64>,
    /// Chunk indexes (within the part), final flag, bytes to skip and keep.
    pub params: OpenParams,
}

impl PartLayout {
    /// The reads of a whole-object decryption: every part, every chunk (empty parts too:
    /// their one tag is authenticated like any chunk).
    pub fn whole(&self) -> Vec<PartRead> {
        self.parts
            .iter()
            .enumerate()
            .map(|(index, p)| PartRead {
                index,
                body_range: p.body_offset
                    ..p.body_offset + part_ciphertext_len(p.entry.plaintext_len, self.chunk_size),
                params: OpenParams::default(),
            })
            .collect()
    }

    /// Resolves `range` against the authenticated plaintext length and lists the reads that
    /// cover it, one per part touched, each limited to that part's covering chunks. Returns
    /// the first and last plaintext byte served (inclusive) with the reads. An unsatisfiable
    /// range is refused as `range::plan` refuses it.
    pub fn plan(&self, range: ByteRange) -> crate::Result<(u64, u64, Vec<PartRead>)> {
        let whole = Layout {
            chunk_size: u64::from(self.chunk_size),
            header_len: 0,
            chunk_count: 1,
            plaintext_len: self.plaintext_len,
        };
        let p = range::plan(range, &whole)?;
        let mut reads = Vec::new();
        for span in self.locate(p.start..p.end + 1) {
            let part = &self.parts[span.index];
            let layout = part.layout(self.chunk_size);
            let sub = range::plan(
                ByteRange::Inclusive(span.range.start, span.range.end - 1),
                &layout,
            )?;
            let (a, b) = sub.ciphertext_span(&layout);
            reads.push(PartRead {
                index: span.index,
                body_range: part.body_offset + a..part.body_offset + b,
                params: sub.open_params(&layout),
            });
        }
        Ok((p.start, p.end, reads))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CS: u32 = 4096;

    fn entry(number: u32, plaintext_len: u64) -> PartEntry {
        PartEntry {
            number,
            salt: [number as u8; PART_SALT_LEN],
            plaintext_len,
        }
    }

    #[test]
    fn manifest_round_trips_and_binds_its_key() {
        let m = Manifest::new(vec![entry(1, 8192), entry(3, 5), entry(9, 0)], CS).unwrap();
        let key = [7u8; 32];
        let bytes = m.encode(&key);
        assert_eq!(
            bytes.len(),
            MANIFEST_PREFIX_LEN + 3 * MANIFEST_ENTRY_LEN + 32
        );
        assert_eq!(Manifest::decode(&bytes, &key, CS).unwrap(), m);
        assert_eq!(
            Manifest::decode(&bytes, &[8u8; 32], CS),
            Err(ManifestError::MacMismatch)
        );
        // Every single-bit flip anywhere is caught by the MAC.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert_eq!(
                Manifest::decode(&b, &key, CS),
                Err(ManifestError::MacMismatch),
                "byte {i}"
            );
        }
        // Dropping or duplicating an entry changes the length or the MAC.
        let mut short = bytes.clone();
        short.drain(MANIFEST_PREFIX_LEN..MANIFEST_PREFIX_LEN + MANIFEST_ENTRY_LEN);
        assert_eq!(
            Manifest::decode(&short, &key, CS),
            Err(ManifestError::MacMismatch)
        );
        assert!(matches!(
            Manifest::decode(&bytes[..bytes.len() - 1], &key, CS),
            Err(ManifestError::BadLength(_))
        ));
    }

    #[test]
    fn structure_is_checked_after_the_mac() {
        let key = [1u8; 32];
        let sign = |mut body: Vec<u8>| {
            let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &key), &body);
            body.extend_from_slice(tag.as_ref());
            body
        };
        let prefix = |count: u32, version: u8| {
            let mut v = MANIFEST_MAGIC.to_vec();
            v.push(version);
            v.extend_from_slice(&[0, 0, 0]);
            v.extend_from_slice(&count.to_be_bytes());
            v
        };
        let ent = |n: u32, len: u64| {
            let mut v = n.to_be_bytes().to_vec();
            v.extend_from_slice(&[0; PART_SALT_LEN]);
            v.extend_from_slice(&len.to_be_bytes());
            v
        };
        assert_eq!(
            Manifest::decode(&sign(prefix(0, 1)), &key, CS),
            Err(ManifestError::NoParts)
        );
        assert_eq!(
            Manifest::decode(
                &sign(prefix(1, 2).into_iter().chain(ent(1, 1)).collect()),
                &key,
                CS
            ),
            Err(ManifestError::UnsupportedVersion(2))
        );
        assert_eq!(
            Manifest::decode(
                &sign(prefix(2, 1).into_iter().chain(ent(1, 1)).collect()),
                &key,
                CS
            ),
            Err(ManifestError::CountMismatch {
                declared: 2,
                present: 1
            })
        );
        let dup: Vec<u8> = prefix(2, 1)
            .into_iter()
            .chain(ent(2, 1))
            .chain(ent(2, 1))
            .collect();
        assert_eq!(
            Manifest::decode(&sign(dup), &key, CS),
            Err(ManifestError::PartsNotIncreasing {
                number: 2,
                previous: 2
            })
        );
        let zero: Vec<u8> = prefix(1, 1).into_iter().chain(ent(0, 1)).collect();
        assert_eq!(
            Manifest::decode(&sign(zero), &key, CS),
            Err(ManifestError::PartNumberOutOfRange(0))
        );
        let big: Vec<u8> = prefix(1, 1)
            .into_iter()
            .chain(ent(1, MAX_PART_LEN))
            .collect();
        assert!(matches!(
            Manifest::decode(&sign(big), &key, CS),
            Err(ManifestError::PartTooLarge { number: 1, .. })
        ));
        let mut bad_magic = prefix(1, 1);
        bad_magic[0] = b'X';
        bad_magic.extend(ent(1, 1));
        assert_eq!(
            Manifest::decode(&sign(bad_magic), &key, CS),
            Err(ManifestError::BadMagic)
        );
    }

    #[test]
    fn unauthenticated_length_is_the_sum_of_entries() {
        let m = Manifest::new(vec![entry(1, 8192), entry(3, 5), entry(9, 0)], CS).unwrap();
        let bytes = m.encode(&[7u8; 32]);
        assert_eq!(unauthenticated_plaintext_len(&bytes), Some(8197));
        assert_eq!(
            unauthenticated_parts(&bytes),
            Some(vec![(1, 8192), (3, 5), (9, 0)])
        );
        assert_eq!(
            unauthenticated_plaintext_len(&bytes[..bytes.len() - 1]),
            None
        );
        assert_eq!(unauthenticated_parts(&bytes[..bytes.len() - 1]), None);
        let mut bad_count = bytes.clone();
        bad_count[15] = 2;
        assert_eq!(unauthenticated_plaintext_len(&bad_count), None);
        let mut bad_magic = bytes.clone();
        bad_magic[0] = b'X';
        assert_eq!(unauthenticated_plaintext_len(&bad_magic), None);
    }

    #[test]
    fn lengths_invert() {
        for len in [0u64, 1, 4095, 4096, 4097, 8192, 5 * 4096 + 3] {
            let c = part_ciphertext_len(len, CS);
            assert_eq!(part_plaintext_len(c, CS).unwrap(), len);
        }
        assert!(part_plaintext_len(4096 + 16 + 16, CS).is_err()); // empty final after full
        assert!(part_plaintext_len(0, CS).is_err());
    }

    #[test]
    fn layout_places_parts_and_locates_ranges() {
        let m = Manifest::new(vec![entry(1, 8192), entry(2, 0), entry(4, 100)], CS).unwrap();
        let body = m.body_len(CS);
        assert_eq!(body, 8192 + 32 + 16 + 100 + 16);
        assert!(matches!(
            PartLayout::new(&m, CS, body - 1),
            Err(ManifestError::BodyLengthMismatch { .. })
        ));
        let l = PartLayout::new(&m, CS, body).unwrap();
        assert_eq!(l.plaintext_len(), 8292);
        assert_eq!(l.parts()[2].body_offset, 8192 + 32 + 16);
        assert_eq!(l.parts()[2].plaintext_offset, 8192);
        assert_eq!(
            l.locate(8000..8200),
            vec![
                PartSpan {
                    index: 0,
                    range: 8000..8192
                },
                PartSpan {
                    index: 2,
                    range: 0..8
                }
            ]
        );
        assert_eq!(
            l.locate(8192..8292),
            vec![PartSpan {
                index: 2,
                range: 0..100
            }]
        );
        assert_eq!(
            l.locate(0..1),
            vec![PartSpan {
                index: 0,
                range: 0..1
            }]
        );
        assert!(l.locate(5..5).is_empty());
        assert_eq!(l.parts()[2].layout(CS).total_len(), 116);
    }
}
