//! The sealstream v1 binary header and body layout (normative text: `docs/FORMAT.md`).
//!
//! This module only parses and serializes; it holds no keys and performs no cryptography
//! beyond hashing the authenticated header fields. Every length is checked against
//! [`limits`] before anything is allocated.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

// `HeaderError` is declared in `error` (the crate's error vocabulary, which imports no
// other module but `text`) and re-exported here; its messages quote this module's limits, so its
// `Display` is written here. Keeping both directions out of one module is what keeps
// `error` and `format` from importing each other.
pub use crate::error::HeaderError;

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::BadMagic => write!(f, "not a sealstream file (bad magic bytes)"),
            HeaderError::UnsupportedVersion(v) => write!(
                f,
                "unsupported format version {v} (this build reads version {}); upgrade sealstream",
                VERSION
            ),
            HeaderError::UnknownSuite(s) => write!(f, "unknown cipher suite id {s:#04x}"),
            HeaderError::ReservedNonZero => write!(f, "reserved header field is not zero"),
            HeaderError::ChunkSizeOutOfRange(c) => write!(
                f,
                "chunk size {c} outside {}..={}",
                limits::MIN_CHUNK_SIZE,
                limits::MAX_CHUNK_SIZE
            ),
            HeaderError::HeaderLenOutOfRange(l) => write!(
                f,
                "header length {l} outside {}..={}",
                limits::MIN_HEADER_LEN,
                limits::MAX_HEADER_LEN
            ),
            HeaderError::HeaderLenMismatch { declared, actual } => write!(
                f,
                "header length field says {declared} bytes but its fields take {actual}"
            ),
            HeaderError::Truncated => write!(f, "input ends inside the header"),
            HeaderError::TooManyContextPairs(n) => write!(
                f,
                "{n} encryption-context pairs (limit {})",
                limits::MAX_CONTEXT_PAIRS
            ),
            HeaderError::ContextFieldLength => write!(
                f,
                "encryption-context field length out of bounds (key 1..={} bytes, value ..={} bytes, block ..={} bytes)",
                limits::MAX_CONTEXT_KEY_LEN,
                limits::MAX_CONTEXT_VALUE_LEN,
                limits::MAX_CONTEXT_BLOCK_LEN
            ),
            HeaderError::ContextNotUtf8 => write!(f, "encryption-context field is not UTF-8"),
            HeaderError::ContextNotCanonical => write!(
                f,
                "encryption-context keys are not in strictly increasing byte order"
            ),
            HeaderError::NoStanzas => write!(f, "no wrapped-key stanza"),
            HeaderError::TooManyStanzas(n) => {
                write!(f, "{n} wrapped-key stanzas (limit {})", limits::MAX_STANZAS)
            }
            HeaderError::BadProviderId => write!(
                f,
                "stanza provider id must be 1..={} bytes of [a-z0-9-]",
                limits::MAX_PROVIDER_ID_LEN
            ),
            HeaderError::BadKeyId => write!(
                f,
                "stanza key id must be 1..={} bytes of printable ASCII (no spaces)",
                limits::MAX_KEY_ID_LEN
            ),
            HeaderError::BadWrappedKeyLength(n) => write!(
                f,
                "stanza wrapped key is {n} bytes (allowed 1..={})",
                limits::MAX_WRAPPED_KEY_LEN
            ),
            HeaderError::TrailingBytes { header_len, given } => write!(
                f,
                "{given} bytes were given for a {header_len}-byte header (trailing bytes: a \
                 stored or saved header is exactly the header's bytes, and a whole \
                 sealstream file is not a header)"
            ),
        }
    }
}

/// Magic bytes that open every sealstream file.
pub const MAGIC: [u8; 8] = *b"SEALSTRM";
/// The format version this module reads and writes.
pub const VERSION: u8 = 1;
/// Length of the AEAD tag that follows every chunk.
pub const TAG_LEN: usize = 16;
/// Length of the per-object random salt.
pub const SALT_LEN: usize = 32;
/// Length of the key-commitment value.
pub const COMMITMENT_LEN: usize = 32;
/// Length of the fixed prefix: magic through commitment.
pub const FIXED_LEN: usize = 84;
/// Offset where the unauthenticated `header_len` field starts.
const HEADER_LEN_OFFSET: usize = 48;

/// Hard limits enforced on parse (and on write, so we never emit what we would reject).
pub mod limits {
    /// Smallest chunk size (plaintext bytes per chunk).
    pub const MIN_CHUNK_SIZE: u32 = 4 * 1024;
    /// Largest chunk size.
    pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
    /// Default chunk size (see docs/BENCHMARKS.md for why).
    pub const DEFAULT_CHUNK_SIZE: u32 = 64 * 1024;
    /// Smallest possible header: fixed part, empty context, one minimal stanza.
    pub const MIN_HEADER_LEN: u32 = (super::FIXED_LEN + 2 + 2 + 8) as u32;
    /// Largest header accepted.
    pub const MAX_HEADER_LEN: u32 = 64 * 1024;
    /// Most encryption-context pairs.
    pub const MAX_CONTEXT_PAIRS: usize = 32;
    /// Longest context key in bytes (keys are at least 1 byte).
    pub const MAX_CONTEXT_KEY_LEN: usize = 128;
    /// Longest context value in bytes (values may be empty).
    pub const MAX_CONTEXT_VALUE_LEN: usize = 1024;
    /// Largest serialized context block (count + pairs).
    pub const MAX_CONTEXT_BLOCK_LEN: usize = 8 * 1024;
    /// Most wrapped-key stanzas.
    pub const MAX_STANZAS: usize = 32;
    /// Longest provider id.
    pub const MAX_PROVIDER_ID_LEN: usize = 32;
    /// Longest key id.
    pub const MAX_KEY_ID_LEN: usize = 512;
    /// Longest wrapped key.
    pub const MAX_WRAPPED_KEY_LEN: usize = 1024;
    /// Most chunks in one object (chunk indices are < 2^32).
    pub const MAX_CHUNKS: u64 = 1 << 32;
}

/// The AEAD used for body chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Suite {
    /// AES-256-GCM (id 0x01), the default: fastest here with AES-NI (docs/BENCHMARKS.md).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (id 0x02): constant-time everywhere, fast without AES hardware.
    ChaCha20Poly1305,
}

impl Suite {
    /// The suite's id byte in the header.
    pub fn id(self) -> u8 {
        match self {
            Suite::Aes256Gcm => 0x01,
            Suite::ChaCha20Poly1305 => 0x02,
        }
    }

    /// Looks up a suite by id byte.
    pub fn from_id(id: u8) -> Option<Suite> {
        match id {
            0x01 => Some(Suite::Aes256Gcm),
            0x02 => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The name used on the command line and in `inspect` output.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Aes256Gcm => "aes-256-gcm",
            Suite::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    /// Parses a command-line suite name.
    pub fn from_name(name: &str) -> Option<Suite> {
        match name {
            "aes-256-gcm" => Some(Suite::Aes256Gcm),
            "chacha20-poly1305" => Some(Suite::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// Encryption context: UTF-8 key/value pairs, canonical (sorted by key bytes, unique keys).
///
/// A `BTreeMap<String, String>` iterates in byte order of the keys, which is exactly the
/// canonical order, so serialization is deterministic by construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context(BTreeMap<String, String>);

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a context from pairs, rejecting duplicates and out-of-limit fields.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut map = BTreeMap::new();
        for (k, v) in pairs {
            let k = k.into();
            if map.insert(k.clone(), v.into()).is_some() {
                return Err(Error::InvalidArgument(format!(
                    "encryption-context key '{k}' given twice; give each key once"
                )));
            }
        }
        let ctx = Context(map);
        ctx.validate()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        Ok(ctx)
    }

    /// Iterates pairs in canonical order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Value for a key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Checks that every pair of `expected` is present with the same value here.
    ///
    /// Used by decrypt: a missing or different pair is an authentication failure.
    pub fn require(&self, expected: &Context) -> Result<()> {
        for (k, v) in expected.iter() {
            match self.get(k) {
                Some(found) if found == v => {}
                found => {
                    return Err(Error::ContextMismatch {
                        key: k.to_string(),
                        found: found.map(str::to_string),
                    });
                }
            }
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), HeaderError> {
        if self.0.len() > limits::MAX_CONTEXT_PAIRS {
            return Err(HeaderError::TooManyContextPairs(self.0.len()));
        }
        for (k, v) in &self.0 {
            if k.is_empty()
                || k.len() > limits::MAX_CONTEXT_KEY_LEN
                || v.len() > limits::MAX_CONTEXT_VALUE_LEN
            {
                return Err(HeaderError::ContextFieldLength);
            }
        }
        if self.serialized_len() > limits::MAX_CONTEXT_BLOCK_LEN {
            return Err(HeaderError::ContextFieldLength);
        }
        Ok(())
    }

    fn serialized_len(&self) -> usize {
        2 + self
            .0
            .iter()
            .map(|(k, v)| 4 + k.len() + v.len())
            .sum::<usize>()
    }

    /// Canonical serialization: u16 count, then (u16 len, key, u16 len, value) per pair.
    ///
    /// This is the byte string bound into the header digest and into local key wrapping.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.serialized_len());
        self.write_to(&mut out);
        out
    }

    fn write_to(&self, out: &mut Vec<u8>) {
        // Lengths were validated at construction, so the casts cannot truncate.
        out.extend_from_slice(&(self.0.len() as u16).to_be_bytes());
        for (k, v) in &self.0 {
            out.extend_from_slice(&(k.len() as u16).to_be_bytes());
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(&(v.len() as u16).to_be_bytes());
            out.extend_from_slice(v.as_bytes());
        }
    }
}

/// One wrapped copy of the data key: which provider and key wrapped it, and the wrapped bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Stanza {
    /// Provider id, e.g. `local` (later `aws-kms`).
    pub provider: String,
    /// Key id within the provider (local key fingerprint, KMS key ARN…).
    pub key_id: String,
    /// Provider-specific wrapped data key.
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for Stanza {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stanza")
            .field("provider", &self.provider)
            .field("key_id", &self.key_id)
            .field("wrapped_len", &self.wrapped.len())
            .finish()
    }
}

impl Stanza {
    fn validate(&self) -> Result<(), HeaderError> {
        let p = self.provider.as_bytes();
        if p.is_empty()
            || p.len() > limits::MAX_PROVIDER_ID_LEN
            || !p
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        {
            return Err(HeaderError::BadProviderId);
        }
        // Printable ASCII without spaces: KMS ARNs, aliases and local fingerprints all fit,
        // and nothing invisible (bidi overrides, zero-width characters) can spoof a key id
        // in `inspect` output or a terminal.
        if self.key_id.is_empty()
            || self.key_id.len() > limits::MAX_KEY_ID_LEN
            || !self.key_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(HeaderError::BadKeyId);
        }
        if self.wrapped.is_empty() || self.wrapped.len() > limits::MAX_WRAPPED_KEY_LEN {
            return Err(HeaderError::BadWrappedKeyLength(self.wrapped.len()));
        }
        Ok(())
    }

    fn serialized_len(&self) -> usize {
        1 + self.provider.len() + 2 + self.key_id.len() + 2 + self.wrapped.len()
    }
}

/// A parsed (or to-be-written) v1 header.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    /// Body cipher suite.
    pub suite: Suite,
    /// Plaintext bytes per chunk (the final chunk may be shorter).
    pub chunk_size: u32,
    /// Per-object random salt for key derivation.
    pub salt: [u8; SALT_LEN],
    /// Key-commitment value derived from the data key.
    pub commitment: [u8; COMMITMENT_LEN],
    /// Encryption context (authenticated).
    pub context: Context,
    /// Wrapped data keys (not authenticated; replaced by rewrap).
    pub stanzas: Vec<Stanza>,
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Header")
            .field("suite", &self.suite)
            .field("chunk_size", &self.chunk_size)
            .field("context", &self.context)
            .field("stanzas", &self.stanzas)
            .finish_non_exhaustive()
    }
}

impl Header {
    /// Validates every field against the limits (used before writing).
    pub fn validate(&self) -> Result<(), HeaderError> {
        if !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return Err(HeaderError::ChunkSizeOutOfRange(self.chunk_size));
        }
        self.context.validate()?;
        if self.stanzas.is_empty() {
            return Err(HeaderError::NoStanzas);
        }
        if self.stanzas.len() > limits::MAX_STANZAS {
            return Err(HeaderError::TooManyStanzas(self.stanzas.len()));
        }
        for s in &self.stanzas {
            s.validate()?;
        }
        let len = self.serialized_len();
        if len > limits::MAX_HEADER_LEN as usize {
            return Err(HeaderError::HeaderLenOutOfRange(
                u32::try_from(len).unwrap_or(u32::MAX),
            ));
        }
        Ok(())
    }

    /// Total serialized length = byte offset of chunk 0.
    pub fn serialized_len(&self) -> usize {
        FIXED_LEN
            + self.context.serialized_len()
            + 2
            + self
                .stanzas
                .iter()
                .map(Stanza::serialized_len)
                .sum::<usize>()
    }

    /// The authenticated header bytes: the first 48 bytes, then the context block.
    ///
    /// `header_len`, the commitment and the stanza list are excluded so rewrap can change
    /// them; see docs/FORMAT.md, "Header digest".
    fn authenticated_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN_OFFSET + self.context.serialized_len());
        self.write_prefix(&mut out);
        self.context.write_to(&mut out);
        out
    }

    /// SHA-256 of the authenticated header bytes; input to both key derivations.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.authenticated_bytes()).into()
    }

    fn write_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.suite.id());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.chunk_size.to_be_bytes());
        out.extend_from_slice(&self.salt);
    }

    /// Serializes the header; fails if a field is out of limits.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HeaderError> {
        self.validate()?;
        let len = self.serialized_len();
        let mut out = Vec::with_capacity(len);
        self.write_prefix(&mut out);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&self.commitment);
        self.context.write_to(&mut out);
        out.extend_from_slice(&(self.stanzas.len() as u16).to_be_bytes());
        for s in &self.stanzas {
            out.push(s.provider.len() as u8);
            out.extend_from_slice(s.provider.as_bytes());
            out.extend_from_slice(&(s.key_id.len() as u16).to_be_bytes());
            out.extend_from_slice(s.key_id.as_bytes());
            out.extend_from_slice(&(s.wrapped.len() as u16).to_be_bytes());
            out.extend_from_slice(&s.wrapped);
        }
        debug_assert_eq!(out.len(), len);
        Ok(out)
    }

    /// Parses bytes that must be exactly one header with nothing after it (FORMAT.md
    /// §15.2): the rule for a header stored apart from its body (a detached header file,
    /// object metadata, a companion object), so that no stored header carries bytes a
    /// reader would silently ignore.
    pub fn parse_exact(bytes: &[u8]) -> Result<Header, HeaderError> {
        let (header, len) = Header::parse(bytes)?;
        if len != bytes.len() {
            return Err(HeaderError::TrailingBytes {
                header_len: len as u64,
                given: bytes.len() as u64,
            });
        }
        Ok(header)
    }

    /// Parses a complete header from the start of `bytes`; returns it and its length.
    ///
    /// Bytes after the header (the body) are ignored.
    pub fn parse(bytes: &[u8]) -> Result<(Header, usize), HeaderError> {
        let (header_len, fixed) = parse_fixed(bytes)?;
        let rest = bytes
            .get(FIXED_LEN..header_len)
            .ok_or(HeaderError::Truncated)?;
        let h = parse_rest(&fixed, header_len, rest)?;
        Ok((h, header_len))
    }

    /// Reads exactly one header from a stream, leaving the reader at chunk 0.
    ///
    /// Reads the fixed prefix first, checks `header_len` against the limit, and only then
    /// allocates and reads the remainder.
    pub fn read_from<R: Read>(reader: &mut R) -> Result<(Header, usize)> {
        let mut fixed = [0u8; FIXED_LEN];
        // Read what there is (up to the fixed part) so a short input gets the same verdict
        // as `parse`: "not sealstream" if the magic differs, else "truncated".
        let mut got = 0;
        while got < FIXED_LEN {
            match reader.read(&mut fixed[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading header", e)),
            }
        }
        let (header_len, fixed_fields) = parse_fixed(&fixed[..got])?;
        let mut rest = vec![0u8; header_len - FIXED_LEN];
        read_exact_or(reader, &mut rest)?;
        let h = parse_rest(&fixed_fields, header_len, &rest)?;
        Ok((h, header_len))
    }
}

fn read_exact_or<R: Read>(reader: &mut R, buf: &mut [u8]) -> Result<()> {
    reader.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Error::Header(HeaderError::Truncated)
        } else {
            Error::io("reading header", e)
        }
    })
}

struct Fixed {
    suite: Suite,
    chunk_size: u32,
    salt: [u8; SALT_LEN],
    commitment: [u8; COMMITMENT_LEN],
}

/// A bounds-checked big-endian cursor; every read reports truncation instead of panicking.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HeaderError> {
        let end = self.pos.checked_add(n).ok_or(HeaderError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(HeaderError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, HeaderError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, HeaderError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }
}

fn parse_fixed(bytes: &[u8]) -> Result<(usize, Fixed), HeaderError> {
    // Check the magic on whatever is there, so a short non-sealstream input is reported
    // as "not sealstream" rather than "truncated".
    let magic_avail = bytes.len().min(MAGIC.len());
    if bytes[..magic_avail] != MAGIC[..magic_avail] {
        return Err(HeaderError::BadMagic);
    }
    let fixed = bytes.get(..FIXED_LEN).ok_or(HeaderError::Truncated)?;
    let mut c = Cursor { buf: fixed, pos: 8 };
    let version = c.u8()?;
    if version != VERSION {
        return Err(HeaderError::UnsupportedVersion(version));
    }
    let suite_id = c.u8()?;
    let suite = Suite::from_id(suite_id).ok_or(HeaderError::UnknownSuite(suite_id))?;
    if c.u16()? != 0 {
        return Err(HeaderError::ReservedNonZero);
    }
    let cs = c.take(4)?;
    let chunk_size = u32::from_be_bytes([cs[0], cs[1], cs[2], cs[3]]);
    if !(limits::MIN_CHUNK_SIZE..=limits::MAX_CHUNK_SIZE).contains(&chunk_size) {
        return Err(HeaderError::ChunkSizeOutOfRange(chunk_size));
    }
    let mut salt = [0u8; SALT_LEN];
    salt.copy_from_slice(c.take(SALT_LEN)?);
    let hl = c.take(4)?;
    let header_len = u32::from_be_bytes([hl[0], hl[1], hl[2], hl[3]]);
    if !(limits::MIN_HEADER_LEN..=limits::MAX_HEADER_LEN).contains(&header_len) {
        return Err(HeaderError::HeaderLenOutOfRange(header_len));
    }
    let mut commitment = [0u8; COMMITMENT_LEN];
    commitment.copy_from_slice(c.take(COMMITMENT_LEN)?);
    Ok((
        header_len as usize,
        Fixed {
            suite,
            chunk_size,
            salt,
            commitment,
        },
    ))
}

fn parse_rest(fixed: &Fixed, header_len: usize, rest: &[u8]) -> Result<Header, HeaderError> {
    let mut c = Cursor { buf: rest, pos: 0 };

    let pairs = c.u16()? as usize;
    if pairs > limits::MAX_CONTEXT_PAIRS {
        return Err(HeaderError::TooManyContextPairs(pairs));
    }
    let mut map = BTreeMap::new();
    let mut prev: Option<&[u8]> = None;
    for _ in 0..pairs {
        let klen = c.u16()? as usize;
        if klen == 0 || klen > limits::MAX_CONTEXT_KEY_LEN {
            return Err(HeaderError::ContextFieldLength);
        }
        let k = c.take(klen)?;
        let vlen = c.u16()? as usize;
        if vlen > limits::MAX_CONTEXT_VALUE_LEN {
            return Err(HeaderError::ContextFieldLength);
        }
        let v = c.take(vlen)?;
        if prev.is_some_and(|p| p >= k) {
            return Err(HeaderError::ContextNotCanonical);
        }
        prev = Some(k);
        let ks = std::str::from_utf8(k).map_err(|_| HeaderError::ContextNotUtf8)?;
        let vs = std::str::from_utf8(v).map_err(|_| HeaderError::ContextNotUtf8)?;
        map.insert(ks.to_string(), vs.to_string());
    }
    if c.pos > limits::MAX_CONTEXT_BLOCK_LEN {
        return Err(HeaderError::ContextFieldLength);
    }

    let count = c.u16()? as usize;
    if count == 0 {
        return Err(HeaderError::NoStanzas);
    }
    if count > limits::MAX_STANZAS {
        return Err(HeaderError::TooManyStanzas(count));
    }
    let mut stanzas = Vec::with_capacity(count);
    for _ in 0..count {
        let plen = c.u8()? as usize;
        let p = c.take(plen)?;
        let provider = std::str::from_utf8(p)
            .map_err(|_| HeaderError::BadProviderId)?
            .to_string();
        let klen = c.u16()? as usize;
        if klen > limits::MAX_KEY_ID_LEN {
            return Err(HeaderError::BadKeyId);
        }
        let key_id = std::str::from_utf8(c.take(klen)?)
            .map_err(|_| HeaderError::BadKeyId)?
            .to_string();
        let wlen = c.u16()? as usize;
        if wlen > limits::MAX_WRAPPED_KEY_LEN {
            return Err(HeaderError::BadWrappedKeyLength(wlen));
        }
        let wrapped = c.take(wlen)?.to_vec();
        let s = Stanza {
            provider,
            key_id,
            wrapped,
        };
        s.validate()?;
        stanzas.push(s);
    }
    let actual = (FIXED_LEN + c.pos) as u64;
    if actual != header_len as u64 {
        return Err(HeaderError::HeaderLenMismatch {
            declared: header_len as u32,
            actual,
        });
    }
    Ok(Header {
        suite: fixed.suite,
        chunk_size: fixed.chunk_size,
        salt: fixed.salt,
        commitment: fixed.commitment,
        context: Context(map),
        stanzas,
    })
}

/// Where chunks sit in a body of known length; pure arithmetic, no I/O.
///
/// Derived from the ciphertext length, so it is *unauthenticated* until the final chunk has
/// been opened with the final flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Plaintext bytes per full chunk.
    pub chunk_size: u64,
    /// Byte offset of chunk 0 in the file (= header length).
    pub header_len: u64,
    /// Number of chunks (at least 1).
    pub chunk_count: u64,
    /// Plaintext length implied by the ciphertext length.
    pub plaintext_len: u64,
}

impl Layout {
    /// Computes the layout from the total ciphertext length, or explains why it is impossible.
    pub fn from_lengths(header_len: u64, chunk_size: u32, total_len: u64) -> Result<Layout> {
        let cs = u64::from(chunk_size);
        let full = cs + TAG_LEN as u64;
        let body = total_len
            .checked_sub(header_len)
            .ok_or(Error::Header(HeaderError::Truncated))?;
        if body == 0 {
            return Err(Error::Truncated {
                detail: "the body has no chunks at all".into(),
            });
        }
        let (n_full, rem) = (body / full, body % full);
        let chunk_count = if rem == 0 { n_full } else { n_full + 1 };
        if rem != 0 && rem < TAG_LEN as u64 {
            return Err(Error::Truncated {
                detail: format!(
                    "the last chunk has {rem} bytes, fewer than its {TAG_LEN}-byte tag"
                ),
            });
        }
        if rem == TAG_LEN as u64 && n_full > 0 {
            return Err(Error::LastChunkEmpty { index: n_full });
        }
        if chunk_count > limits::MAX_CHUNKS {
            return Err(Error::TooManyChunks);
        }
        Ok(Layout {
            chunk_size: cs,
            header_len,
            chunk_count,
            plaintext_len: body - chunk_count * TAG_LEN as u64,
        })
    }

    /// File offset of chunk `index`: computable from the index alone.
    pub fn chunk_offset(&self, index: u64) -> u64 {
        self.header_len + index * (self.chunk_size + TAG_LEN as u64)
    }

    /// Ciphertext length of chunk `index` (tag included).
    pub fn chunk_ciphertext_len(&self, index: u64) -> u64 {
        if index + 1 == self.chunk_count {
            self.plaintext_len - index * self.chunk_size + TAG_LEN as u64
        } else {
            self.chunk_size + TAG_LEN as u64
        }
    }

    /// Total ciphertext length (header + body).
    pub fn total_len(&self) -> u64 {
        self.header_len + self.plaintext_len + self.chunk_count * TAG_LEN as u64
    }
}

/// Refuses, before anything is written, a plaintext that needs more than 2^32 chunks of
/// `chunk_size` bytes (the format's limit per payload key).
pub fn check_plaintext_len(plaintext_len: u64, chunk_size: u32) -> Result<()> {
    if plaintext_len.div_ceil(u64::from(chunk_size)) > limits::MAX_CHUNKS {
        return Err(too_many_chunks(chunk_size));
    }
    Ok(())
}

/// The encrypt-side error for an input above 2^32 chunks: an invalid argument, since a
/// larger chunk size makes the same input fit.
pub(crate) fn too_many_chunks(chunk_size: u32) -> Error {
    Error::InvalidArgument(format!(
        "the input is larger than 2^32 chunks of {chunk_size} bytes ({} bytes), the format's \
         limit per object; use a larger chunk size",
        u64::from(chunk_size) << 32
    ))
}

/// Ciphertext body length for a plaintext of `plaintext_len` bytes (for progress and tests).
pub fn body_len_for(plaintext_len: u64, chunk_size: u32) -> u64 {
    let cs = u64::from(chunk_size);
    let chunks = if plaintext_len == 0 {
        1
    } else {
        plaintext_len.div_ceil(cs)
    };
    plaintext_len + chunks * TAG_LEN as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            suite: Suite::ChaCha20Poly1305,
            chunk_size: 65536,
            salt: [7; 32],
            commitment: [9; 32],
            context: Context::from_pairs([("b", "2"), ("a", "1")]).unwrap(),
            stanzas: vec![Stanza {
                provider: "local".into(),
                key_id: "lk1-00".into(),
                wrapped: vec![1, 2, 3],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let bytes = h.to_bytes().unwrap();
        let (p, len) = Header::parse(&bytes).unwrap();
        assert_eq!(p, h);
        assert_eq!(len, bytes.len());
        assert_eq!(p.to_bytes().unwrap(), bytes);
    }

    #[test]
    fn parse_exact_refuses_trailing_bytes() {
        let h = sample();
        let mut bytes = h.to_bytes().unwrap();
        assert_eq!(Header::parse_exact(&bytes).unwrap(), h);
        let len = bytes.len() as u64;
        bytes.push(0);
        assert_eq!(
            Header::parse_exact(&bytes),
            Err(HeaderError::TrailingBytes {
                header_len: len,
                given: len + 1
            })
        );
        assert_eq!(
            Header::parse_exact(&bytes[..10]),
            Err(HeaderError::Truncated)
        );
    }

    #[test]
    fn layout_math() {
        let l = Layout::from_lengths(100, 4096, 100 + 4096 + 16 + 5 + 16).unwrap();
        assert_eq!(l.chunk_count, 2);
        assert_eq!(l.plaintext_len, 4101);
        assert_eq!(l.chunk_offset(1), 100 + 4112);
        assert_eq!(l.total_len(), 100 + 4096 + 16 + 5 + 16);
        assert!(matches!(
            Layout::from_lengths(100, 4096, 100 + 4112 + 16),
            Err(Error::LastChunkEmpty { index: 1 })
        ));
        assert_eq!(
            Layout::from_lengths(100, 4096, 116).unwrap().plaintext_len,
            0
        );
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn plaintext_len_limit_is_checked_up_front() {
        let cs = limits::MIN_CHUNK_SIZE;
        let max = u64::from(cs) << 32;
        assert!(check_plaintext_len(max, cs).is_ok());
        let e = check_plaintext_len(max + 1, cs).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
        assert!(e.to_string().contains("use a larger chunk size"), "{e}");
        assert!(check_plaintext_len(u64::MAX, limits::MAX_CHUNK_SIZE).is_err());
    }
}
