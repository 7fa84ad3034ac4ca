//! Header properties shared by the `header` and `header_struct` targets, and the
//! structure-aware header input of `header_struct`.
//!
//! `header` feeds raw bytes to the parser, which reaches the parser's checks but only ever
//! serializes headers the parser accepted. `header_struct` starts from the other side: an
//! arbitrary [`Header`] value (any suite, chunk size, context, stanza list, including values
//! outside every limit) that is serialized with `to_bytes`, checked against an independent
//! statement of the limits in docs/FORMAT.md ([`violations`]), re-parsed, then mutated with
//! [`Edit`]s and fed to the same byte-level checks as `header` ([`check_header_bytes`]).

use std::mem::discriminant;

use arbitrary::Arbitrary;
use sealstream::error::{Error, HeaderError};
use sealstream::format::{Context, Header, Layout, Stanza, Suite};

use crate::{Edit, MAX_EDITS};

/// The byte-level header properties (the whole `header` target): `parse` never panics;
/// `read_from` agrees with it (same header and length, or the same error); whatever parses
/// re-serializes to exactly the bytes consumed and re-parses equal; the layout arithmetic on
/// the claimed lengths does not panic.
pub fn check_header_bytes(data: &[u8]) {
    let parsed = Header::parse(data);
    let streamed = Header::read_from(&mut &data[..]);
    match (&parsed, &streamed) {
        (Ok((h, len)), Ok((h2, len2))) => {
            assert_eq!(h, h2, "read_from and parse disagree");
            assert_eq!(len, len2);
        }
        // Including short inputs: the `header` target found read_from calling a short
        // non-sealstream input Truncated where parse says BadMagic (fixed in 9b59796;
        // fuzz/regressions/header, tests/it/fuzz_regressions.rs).
        (Err(e), Err(Error::Header(e2))) if e == e2 => {}
        _ => panic!("parse = {parsed:?}, read_from = {streamed:?}"),
    }
    let Ok((h, len)) = parsed else { return };
    assert!(len <= data.len());
    assert_eq!(len, h.serialized_len());
    let bytes = h.to_bytes().expect("a parsed header re-serializes");
    assert!(
        bytes == data[..len],
        "re-serialization differs from the input"
    );
    let (again, len2) = Header::parse(&bytes).expect("re-serialized header parses");
    assert_eq!(again, h);
    assert_eq!(len2, len);
    assert_eq!(again.digest(), h.digest());
    if let Ok(l) = Layout::from_lengths(len as u64, h.chunk_size, data.len() as u64) {
        assert_eq!(l.total_len(), data.len() as u64);
        let last = l.chunk_count - 1;
        assert_eq!(
            l.chunk_offset(last) + l.chunk_ciphertext_len(last),
            data.len() as u64
        );
    }
}

/// A chunk size: anywhere in the valid range, any `u32`, or one of the edge values.
#[derive(Arbitrary, Debug, Clone)]
pub enum ChunkSizeSpec {
    /// `4096 + v % (16 MiB - 4096 + 1)`.
    InRange(u32),
    /// Exactly `v`.
    Raw(u32),
    /// One of 0, 4095, 4096, 16 MiB, 16 MiB + 1, `u32::MAX`.
    Edge(u8),
}

impl ChunkSizeSpec {
    fn value(&self) -> u32 {
        const MIN: u32 = 4096;
        const MAX: u32 = 16 * 1024 * 1024;
        match self {
            ChunkSizeSpec::InRange(v) => MIN + v % (MAX - MIN + 1),
            ChunkSizeSpec::Raw(v) => *v,
            ChunkSizeSpec::Edge(e) => {
                [0, MIN - 1, MIN, MAX, MAX + 1, u32::MAX][usize::from(*e) % 6]
            }
        }
    }
}

/// A field length: any length below 2048, or one at or next to a limit of docs/FORMAT.md
/// (a uniform length would hit "exactly 512" once in 2048 tries).
#[derive(Arbitrary, Debug, Clone)]
pub enum LenSpec {
    /// `v % 2048`.
    Any(u16),
    /// One of [`EDGE_LENS`].
    Edge(u8),
}

/// Every per-field limit (32, 128, 512, 1024) and 0, with its neighbours.
pub const EDGE_LENS: [usize; 14] = [
    0, 1, 2, 31, 32, 33, 127, 128, 129, 511, 512, 513, 1024, 1025,
];

impl LenSpec {
    fn value(&self) -> usize {
        match self {
            LenSpec::Any(v) => usize::from(*v) % 2048,
            LenSpec::Edge(e) => EDGE_LENS[usize::from(*e) % EDGE_LENS.len()],
        }
    }
}

/// A string: given, or copies of one character (so long fields cost few input bytes; a
/// byte ≥ 0x80 becomes a two-byte UTF-8 character).
#[derive(Arbitrary, Debug, Clone)]
pub enum TextSpec {
    /// This string.
    Given(String),
    /// `len` copies of `char::from(byte)`.
    Fill {
        /// Copies.
        len: LenSpec,
        /// The character (Latin-1).
        byte: u8,
    },
}

impl TextSpec {
    fn value(&self) -> String {
        match self {
            TextSpec::Given(s) => s.clone(),
            TextSpec::Fill { len, byte } => {
                std::iter::repeat_n(char::from(*byte), len.value()).collect()
            }
        }
    }
}

/// Bytes: given, or copies of one byte.
#[derive(Arbitrary, Debug, Clone)]
pub enum BytesSpec {
    /// These bytes.
    Given(Vec<u8>),
    /// `len` copies of `byte`.
    Fill {
        /// Copies.
        len: LenSpec,
        /// The byte.
        byte: u8,
    },
}

impl BytesSpec {
    fn value(&self) -> Vec<u8> {
        match self {
            BytesSpec::Given(b) => b.clone(),
            BytesSpec::Fill { len, byte } => vec![*byte; len.value()],
        }
    }
}

/// A provider id: one of the two real ones, or any string.
#[derive(Arbitrary, Debug, Clone)]
pub enum ProviderSpec {
    /// `local`.
    Local,
    /// `aws-kms`.
    AwsKms,
    /// Anything.
    Other(TextSpec),
}

/// `1 + repeat % 40` copies of one stanza (so 0, 1, 32 and 33 stanzas are all cheap to reach,
/// with the empty stanza list).
#[derive(Arbitrary, Debug, Clone)]
pub struct StanzaSpec {
    /// Provider id.
    pub provider: ProviderSpec,
    /// Key id.
    pub key_id: TextSpec,
    /// Wrapped key.
    pub wrapped: BytesSpec,
    /// Extra copies.
    pub repeat: u8,
}

/// The encryption context: given pairs, or `pairs % 40` generated pairs with keys padded to
/// `key_len` bytes and values of `value_len` bytes (so every context limit is reachable
/// from a short input).
#[derive(Arbitrary, Debug, Clone)]
pub enum ContextSpec {
    /// These pairs, in this order (duplicates allowed: the constructor must refuse them).
    Pairs(Vec<(TextSpec, TextSpec)>),
    /// Generated pairs `k000xxx…` → `vvv…`.
    Fill {
        /// Pairs.
        pairs: u8,
        /// Key length (keys shorter than their 4-byte prefix are cut, so they repeat).
        key_len: LenSpec,
        /// Value length.
        value_len: LenSpec,
    },
}

impl ContextSpec {
    fn pairs(&self) -> Vec<(String, String)> {
        match self {
            ContextSpec::Pairs(p) => p.iter().map(|(k, v)| (k.value(), v.value())).collect(),
            ContextSpec::Fill {
                pairs,
                key_len,
                value_len,
            } => {
                let klen = key_len.value();
                let v = "v".repeat(value_len.value());
                (0..usize::from(*pairs) % 40)
                    .map(|i| {
                        let mut k = format!("k{i:03}");
                        k.truncate(klen);
                        while k.len() < klen {
                            k.push('x');
                        }
                        (k, v.clone())
                    })
                    .collect()
            }
        }
    }
}

/// A structure-aware `header_struct` input: a header value, then edits to its bytes.
#[derive(Arbitrary, Debug, Clone)]
pub struct HeaderSpec {
    /// ChaCha20-Poly1305 instead of AES-256-GCM.
    pub chacha: bool,
    /// Chunk size.
    pub chunk_size: ChunkSizeSpec,
    /// Salt.
    pub salt: [u8; 32],
    /// Commitment.
    pub commitment: [u8; 32],
    /// Context.
    pub context: ContextSpec,
    /// Stanzas (each repeated).
    pub stanzas: Vec<StanzaSpec>,
    /// Body bytes after the header (at most 64), so `Layout` sees a body.
    pub body: Vec<u8>,
    /// Edits to the serialized bytes (at most [`MAX_EDITS`]).
    pub edits: Vec<Edit>,
}

/// Limits as docs/FORMAT.md states them, written out again here rather than taken from the
/// library, so the fuzzer checks the library against the specification.
mod spec_limits {
    pub const MIN_CHUNK: u32 = 4096;
    pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;
    pub const MAX_HEADER: usize = 65536;
    pub const MAX_PAIRS: usize = 32;
    pub const MAX_KEY: usize = 128;
    pub const MAX_VALUE: usize = 1024;
    pub const MAX_BLOCK: usize = 8192;
    pub const MAX_STANZAS: usize = 32;
    pub const MAX_PROVIDER: usize = 32;
    pub const MAX_KEY_ID: usize = 512;
    pub const MAX_WRAPPED: usize = 1024;
    pub const FIXED: usize = 84;
}

/// Whether FORMAT.md allows these context pairs (in the given order, duplicates counted).
pub fn context_allowed(pairs: &[(String, String)]) -> bool {
    use spec_limits::*;
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let unique = keys.windows(2).all(|w| w[0] != w[1]);
    let block = 2 + pairs
        .iter()
        .map(|(k, v)| 4 + k.len() + v.len())
        .sum::<usize>();
    unique
        && pairs.len() <= MAX_PAIRS
        && pairs
            .iter()
            .all(|(k, v)| !k.is_empty() && k.len() <= MAX_KEY && v.len() <= MAX_VALUE)
        && block <= MAX_BLOCK
}

/// Every rule of FORMAT.md the header breaks, as `HeaderError` values (only the variant
/// counts: payloads are placeholders).
/// The context is not checked here: a `Context` value is valid by construction.
pub fn violations(h: &Header) -> Vec<HeaderError> {
    use spec_limits::*;
    let mut v = Vec::new();
    if !(MIN_CHUNK..=MAX_CHUNK).contains(&h.chunk_size) {
        v.push(HeaderError::ChunkSizeOutOfRange(0));
    }
    if h.stanzas.is_empty() {
        v.push(HeaderError::NoStanzas);
    }
    if h.stanzas.len() > MAX_STANZAS {
        v.push(HeaderError::TooManyStanzas(0));
    }
    for s in &h.stanzas {
        let p = s.provider.as_bytes();
        if p.is_empty()
            || p.len() > MAX_PROVIDER
            || !p
                .iter()
                .all(|&b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
        {
            v.push(HeaderError::BadProviderId);
        }
        let k = s.key_id.as_bytes();
        if k.is_empty() || k.len() > MAX_KEY_ID || !k.iter().all(|&b| (0x21..=0x7e).contains(&b)) {
            v.push(HeaderError::BadKeyId);
        }
        if s.wrapped.is_empty() || s.wrapped.len() > MAX_WRAPPED {
            v.push(HeaderError::BadWrappedKeyLength(0));
        }
    }
    let context_len = 2 + h
        .context
        .iter()
        .map(|(k, v)| 4 + k.len() + v.len())
        .sum::<usize>();
    let len = FIXED
        + context_len
        + 2
        + h.stanzas
            .iter()
            .map(|s| 1 + s.provider.len() + 2 + s.key_id.len() + 2 + s.wrapped.len())
            .sum::<usize>();
    if len > MAX_HEADER {
        v.push(HeaderError::HeaderLenOutOfRange(0));
    }
    v.dedup_by(|a, b| discriminant(a) == discriminant(b));
    v
}

impl HeaderSpec {
    /// Runs every `header_struct` property on this input.
    pub fn check(&self) {
        let pairs = self.context.pairs();
        // (key, value) lengths, for readable failure messages.
        let lens: Vec<(usize, usize)> = pairs.iter().map(|(k, v)| (k.len(), v.len())).collect();
        let context = match Context::from_pairs(pairs.clone()) {
            Ok(c) => {
                assert!(
                    context_allowed(&pairs),
                    "Context accepted pairs with lengths {lens:?}"
                );
                c
            }
            Err(e) => {
                assert!(matches!(e, Error::InvalidArgument(_)), "context error class: {e:?}");
                assert!(
                    !context_allowed(&pairs),
                    "Context refused pairs with lengths {lens:?}: {e}"
                );
                Context::new()
            }
        };
        let mut stanzas = Vec::new();
        for s in &self.stanzas {
            let stanza = Stanza {
                provider: match &s.provider {
                    ProviderSpec::Local => "local".into(),
                    ProviderSpec::AwsKms => "aws-kms".into(),
                    ProviderSpec::Other(t) => t.value(),
                },
                key_id: s.key_id.value(),
                wrapped: s.wrapped.value(),
            };
            for _ in 0..1 + usize::from(s.repeat) % 40 {
                stanzas.push(stanza.clone());
            }
            if stanzas.len() > 64 {
                break;
            }
        }
        let header = Header {
            suite: if self.chacha {
                Suite::ChaCha20Poly1305
            } else {
                Suite::Aes256Gcm
            },
            chunk_size: self.chunk_size.value(),
            salt: self.salt,
            commitment: self.commitment,
            context,
            stanzas,
        };
        let broken = violations(&header);
        let bytes = match header.to_bytes() {
            Err(e) => {
                assert_eq!(
                    header.validate(),
                    Err(e.clone()),
                    "validate and to_bytes disagree"
                );
                assert!(
                    broken.iter().any(|b| discriminant(b) == discriminant(&e)),
                    "to_bytes refused with {e:?}, but the header breaks only {broken:?}"
                );
                return;
            }
            Ok(b) => b,
        };
        assert!(
            broken.is_empty(),
            "to_bytes accepted a header that breaks {broken:?}"
        );
        assert_eq!(header.validate(), Ok(()));
        assert_eq!(bytes.len(), header.serialized_len());
        // What the writer accepts, the reader must accept unchanged: a file the library can
        // write but not read would be data loss.
        let (back, len) = Header::parse(&bytes).expect("a serialized header parses");
        assert_eq!(back, header, "serialize → parse changed the header");
        assert_eq!(len, bytes.len());
        assert_eq!(back.digest(), header.digest());

        let mut file = bytes;
        file.extend_from_slice(&self.body[..self.body.len().min(64)]);
        check_header_bytes(&file);
        let header_len = len;
        for e in self.edits.iter().take(MAX_EDITS) {
            e.apply(&mut file, header_len, header.chunk_size);
            check_header_bytes(&file);
        }
    }
}
