//! Checked-in test vectors (format: tests/vectors/README.md).
//!
//! * `library_decrypts_every_vector`: every vector through `envelope::decrypt` (both
//!   backends, several engine geometries): valid ones give the recorded plaintext hash and
//!   length, invalid ones the recorded error class (and chunk index).
//! * `cli_decrypts_every_vector`: the same through the `sealstream` binary: exit 0 and the
//!   exact plaintext for valid vectors; exit 4 and no output file (nor temporary) for
//!   invalid ones.
//! * `valid_vectors_known_answer`: re-encrypting each valid vector from the inputs recorded
//!   in the manifest (KEKs, DEK, salt, wrap nonces) with the production engine reproduces the
//!   file byte for byte.
//! * `generator_reproduces_checked_in_vectors`: the generator below, run in memory, yields
//!   exactly the checked-in files and manifest.
//!
//! Regenerate (only when the format or the vector set changes on purpose):
//! `cargo test --test vectors -- --ignored regenerate_vectors`

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sealstream::engine::{self, EngineOptions};
use sealstream::envelope::{self, DecryptParams, EncryptParams};
use sealstream::error::{Error, HeaderError};
use sealstream::format::{Context, FIXED_LEN, Header, Stanza, Suite, TAG_LEN};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::primitives::aead::Backend;

const FORMAT_TAG: &str = "sealstream-test-vectors-v1";
/// Every error class a vector may name (tests/vectors/README.md).
const ERROR_CLASSES: [&str; 9] = [
    "header",
    "unsupported_version",
    "context_mismatch",
    "no_matching_key",
    "unwrap_failed",
    "commitment_mismatch",
    "chunk_auth",
    "truncated",
    "last_chunk_empty",
];
/// The whole directory must stay small.
const MAX_DIR_BYTES: u64 = 1024 * 1024;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors")
}

// ---------------------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    format: String,
    description: String,
    /// How every plaintext is generated from its length.
    plaintext: String,
    keys: Vec<KeyEntry>,
    vectors: Vec<Vector>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    name: String,
    /// Key file (LocalKey text form), relative to tests/vectors/.
    file: String,
    id: String,
    /// The 32 KEK bytes, hex (public test value).
    bytes: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    name: String,
    kind: String,
    description: String,
    /// The object, relative to tests/vectors/.
    file: String,
    /// Key file the decryptor offers, relative to tests/vectors/.
    key: String,
    /// Context the decryptor requires (`-c KEY=VALUE` each).
    context: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_index: Option<u64>,
    /// For `header` errors: the reference decoder's `HeaderError` variant (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header_error: Option<String>,
    /// Inputs of the (base) object; for invalid vectors `modification` says what changed.
    build: Build,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Build {
    suite: String,
    chunk_size: u32,
    plaintext_len: u64,
    context: BTreeMap<String, String>,
    dek: String,
    salt: String,
    stanzas: Vec<StanzaBuild>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modification: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StanzaBuild {
    /// A key name from `keys`, or `foreign` (an opaque `aws-kms` stanza, bytes below).
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    wrap_nonce: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreign_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreign_wrapped: Option<String>,
}

fn load_manifest() -> Manifest {
    let text = std::fs::read_to_string(dir().join("manifest.json")).expect("read manifest.json");
    serde_json::from_str(&text).expect("parse manifest.json")
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex<const N: usize>(s: &str) -> [u8; N] {
    let v = unhex_vec(s);
    v.try_into().expect("hex of the right length")
}

fn unhex_vec(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// Byte `i` of every plaintext is `i mod 251` (as in docs/FORMAT.md §14).
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start.wrapping_add(i as u8))
}

fn suite_by_name(n: &str) -> Suite {
    Suite::from_name(n).expect("known suite name")
}

fn context_of(m: &BTreeMap<String, String>) -> Context {
    Context::from_pairs(m.clone()).expect("valid context")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The error class of tests/vectors/README.md, the chunk index, and the header detail.
fn classify(e: &Error) -> (&'static str, Option<u64>, Option<String>) {
    match e {
        Error::Header(HeaderError::UnsupportedVersion(_)) => ("unsupported_version", None, None),
        Error::Header(h) => {
            let name = format!("{h:?}");
            let variant = name
                .split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_string();
            ("header", None, Some(variant))
        }
        Error::ContextMismatch { .. } => ("context_mismatch", None, None),
        Error::NoMatchingKey { .. } => ("no_matching_key", None, None),
        Error::UnwrapFailed(_) => ("unwrap_failed", None, None),
        Error::CommitmentMismatch => ("commitment_mismatch", None, None),
        Error::ChunkAuth { index } => ("chunk_auth", Some(*index), None),
        Error::Truncated { .. } => ("truncated", None, None),
        Error::LastChunkEmpty { index } => ("last_chunk_empty", Some(*index), None),
        other => panic!("error outside the vector classes: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// Generator (deterministic; used by `regenerate_vectors` and compared with the files)
// ---------------------------------------------------------------------------------------

/// The fixed keys: A is the worked example's KEK (docs/FORMAT.md §14).
const KEYS: [(&str, u8); 3] = [("a", 0x00), ("b", 0x80), ("c", 0xc0)];
const DEK_START: u8 = 0x20;
const SALT_START: u8 = 0x40;
const NONCE_A: u8 = 0x60;
const NONCE_B: u8 = 0xa0;
const FOREIGN_KEY_ID: &str = "arn:aws:kms:us-east-1:111122223333:key/vector";

fn kek(name: &str) -> LocalKey {
    let start = KEYS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .expect("known key name");
    LocalKey::from_bytes(seq(start))
}

fn key_file(name: &str) -> String {
    format!("keys/{name}.key")
}

/// One object's inputs.
#[derive(Clone)]
struct Spec {
    suite: Suite,
    chunk_size: u32,
    len: usize,
    context: BTreeMap<String, String>,
    /// Stanzas: local key names, or "foreign".
    stanzas: Vec<&'static str>,
}

impl Spec {
    fn new(suite: Suite, chunk_size: u32, len: usize) -> Spec {
        Spec {
            suite,
            chunk_size,
            len,
            context: BTreeMap::new(),
            stanzas: vec!["a"],
        }
    }
    fn ctx(mut self, pairs: &[(&str, &str)]) -> Spec {
        self.context = map(pairs);
        self
    }
    fn stanzas(mut self, s: &[&'static str]) -> Spec {
        self.stanzas = s.to_vec();
        self
    }

    fn build_record(&self, modification: Option<&str>) -> Build {
        Build {
            suite: self.suite.name().into(),
            chunk_size: self.chunk_size,
            plaintext_len: self.len as u64,
            context: self.context.clone(),
            dek: hex(&seq::<32>(DEK_START)),
            salt: hex(&seq::<32>(SALT_START)),
            stanzas: self
                .stanzas
                .iter()
                .map(|s| match *s {
                    "foreign" => StanzaBuild {
                        key: "foreign".into(),
                        wrap_nonce: None,
                        foreign_key_id: Some(FOREIGN_KEY_ID.into()),
                        foreign_wrapped: Some(hex(&foreign_wrapped())),
                    },
                    k => StanzaBuild {
                        key: k.into(),
                        wrap_nonce: Some(hex(&wrap_nonce(k))),
                        foreign_key_id: None,
                        foreign_wrapped: None,
                    },
                })
                .collect(),
            modification: modification.map(str::to_string),
        }
    }
}

fn wrap_nonce(key: &str) -> [u8; 24] {
    if key == "a" {
        seq(NONCE_A)
    } else {
        seq(NONCE_B)
    }
}

fn foreign_wrapped() -> Vec<u8> {
    (0..48u8).map(|i| i.wrapping_mul(37) ^ 0x5c).collect()
}

/// Header and payload cipher from recorded inputs (`seal_header` + `wrap_with_nonce`).
fn sealed_header(b: &Build) -> (Header, sealstream::primitives::stream::PayloadCipher) {
    let dek = DataKey::from_bytes(unhex(&b.dek));
    let ctx = context_of(&b.context);
    let stanzas: Vec<Stanza> = b
        .stanzas
        .iter()
        .map(|s| match s.key.as_str() {
            "foreign" => Stanza {
                provider: "aws-kms".into(),
                key_id: s.foreign_key_id.clone().expect("foreign key id"),
                wrapped: unhex_vec(s.foreign_wrapped.as_deref().expect("foreign bytes")),
            },
            k => kek(k).wrap_with_nonce(
                &dek,
                &ctx,
                unhex(s.wrap_nonce.as_deref().expect("wrap nonce")),
            ),
        })
        .collect();
    let params = EncryptParams {
        suite: suite_by_name(&b.suite),
        chunk_size: b.chunk_size,
        context: ctx,
        ..EncryptParams::default()
    };
    envelope::seal_header(&dek, unhex(&b.salt), stanzas, &params).expect("valid header")
}

/// Builds an object chunk by chunk: `(plaintext, final flag)` per chunk (`seal_chunk`).
fn assemble(b: &Build, chunks: &[(&[u8], bool)]) -> Vec<u8> {
    let (header, cipher) = sealed_header(b);
    let mut out = header.to_bytes().expect("header within limits");
    for (i, (pt, last)) in chunks.iter().enumerate() {
        let mut buf = pt.to_vec();
        buf.resize(pt.len() + TAG_LEN, 0);
        cipher
            .seal_chunk(i as u64, *last, &mut buf, pt.len())
            .expect("seal chunk");
        out.extend_from_slice(&buf);
    }
    out
}

/// The canonical chunking of a plaintext (FORMAT.md §6.1).
fn canonical_chunks(pt: &[u8], cs: usize) -> Vec<(&[u8], bool)> {
    if pt.is_empty() {
        return vec![(pt, true)];
    }
    let n = pt.len().div_ceil(cs);
    pt.chunks(cs)
        .enumerate()
        .map(|(i, c)| (c, i + 1 == n))
        .collect()
}

fn encode(spec: &Spec) -> Vec<u8> {
    let b = spec.build_record(None);
    let pt = plaintext(spec.len);
    assemble(&b, &canonical_chunks(&pt, spec.chunk_size as usize))
}

fn header_len_of(file: &[u8]) -> usize {
    Header::parse(file).expect("base header parses").1
}

struct Generated {
    manifest: Manifest,
    files: Vec<(String, Vec<u8>)>,
}

struct Gen {
    vectors: Vec<Vector>,
    files: Vec<(String, Vec<u8>)>,
}

impl Gen {
    fn put_file(&mut self, path: &str, bytes: Vec<u8>) {
        match self.files.iter().find(|(p, _)| p == path) {
            Some((_, existing)) => assert_eq!(existing, &bytes, "{path} written twice"),
            None => self.files.push((path.to_string(), bytes)),
        }
    }

    fn valid(&mut self, name: &str, description: &str, spec: &Spec, file: &str, key: &str) {
        let bytes = encode(spec);
        let pt = plaintext(spec.len);
        self.put_file(file, bytes);
        self.vectors.push(Vector {
            name: name.into(),
            kind: "valid".into(),
            description: description.into(),
            file: file.into(),
            key: key_file(key),
            context: spec.context.clone(),
            plaintext_len: Some(pt.len() as u64),
            plaintext_sha256: Some(sha256_hex(&pt)),
            error: None,
            chunk_index: None,
            header_error: None,
            build: spec.build_record(None),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn invalid(
        &mut self,
        name: &str,
        description: &str,
        spec: &Spec,
        modification: &str,
        bytes: Vec<u8>,
        expect: (&str, Option<u64>, Option<&str>),
        key: &str,
        require: &[(&str, &str)],
    ) {
        let file = format!("invalid/{name}.sealed");
        self.put_file(&file, bytes);
        self.vectors.push(Vector {
            name: name.into(),
            kind: "invalid".into(),
            description: description.into(),
            file,
            key: key_file(key),
            context: map(require),
            plaintext_len: None,
            plaintext_sha256: None,
            error: Some(expect.0.into()),
            chunk_index: expect.1,
            header_error: expect.2.map(str::to_string),
            build: spec.build_record(Some(modification)),
        });
    }
}

fn generate() -> Generated {
    let aes = Suite::Aes256Gcm;
    let chacha = Suite::ChaCha20Poly1305;
    let atlas = [("project", "atlas")];
    let mut g = Gen {
        vectors: Vec::new(),
        files: Vec::new(),
    };

    // ---- valid ----
    let valid: Vec<(&str, &str, Spec)> = vec![
        (
            "aes_4096_empty",
            "empty plaintext: one empty final chunk (tag only)",
            Spec::new(aes, 4096, 0),
        ),
        (
            "chacha_4096_empty_context",
            "empty plaintext with a context; = docs/FORMAT.md §14 empty object",
            Spec::new(chacha, 4096, 0).ctx(&atlas),
        ),
        (
            "aes_4096_one_byte",
            "1-byte plaintext",
            Spec::new(aes, 4096, 1),
        ),
        (
            "chacha_4096_one_byte",
            "1-byte plaintext",
            Spec::new(chacha, 4096, 1),
        ),
        (
            "aes_4096_exact_two_chunks",
            "8192 bytes = exactly 2 chunks: the final chunk is full",
            Spec::new(aes, 4096, 8192),
        ),
        (
            "aes_4096_5000_context",
            "2 chunks (4096 + 904) with a context; = docs/FORMAT.md §14 AES-256-GCM object",
            Spec::new(aes, 4096, 5000).ctx(&atlas),
        ),
        (
            "chacha_4096_5000_context",
            "2 chunks (4096 + 904) with a context; = docs/FORMAT.md §14 ChaCha20-Poly1305 object",
            Spec::new(chacha, 4096, 5000).ctx(&atlas),
        ),
        (
            "aes_4096_multi_short_final",
            "4 chunks: 3 full and a 100-byte final chunk",
            Spec::new(aes, 4096, 3 * 4096 + 100),
        ),
        (
            "chacha_65536_exact",
            "64 KiB chunks, 65536 bytes = exactly one full final chunk",
            Spec::new(chacha, 65536, 65536),
        ),
        (
            "aes_65536_multi_short_final",
            "64 KiB chunks, 2 chunks (65536 + 1000), two context pairs",
            Spec::new(aes, 65536, 65536 + 1000).ctx(&[("tier", "gold"), ("project", "atlas")]),
        ),
        (
            "chacha_65536_short",
            "64 KiB chunks, one short final chunk (1000 bytes)",
            Spec::new(chacha, 65536, 1000),
        ),
    ];
    for (name, description, spec) in &valid {
        g.valid(
            name,
            description,
            spec,
            &format!("valid/{name}.sealed"),
            "a",
        );
    }
    let two = Spec::new(aes, 4096, 5000).stanzas(&["a", "b"]);
    g.valid(
        "two_stanzas_key_a",
        "stanzas for keys a and b; opened with a (first stanza)",
        &two,
        "valid/two_stanzas.sealed",
        "a",
    );
    g.valid(
        "two_stanzas_key_b",
        "same file; opened with b (second stanza)",
        &two,
        "valid/two_stanzas.sealed",
        "b",
    );
    g.valid(
        "foreign_stanza_first",
        "an aws-kms stanza (never matches a local key) before key a's: skipped",
        &Spec::new(chacha, 4096, 100).stanzas(&["foreign", "a"]),
        "valid/foreign_stanza_first.sealed",
        "a",
    );

    // ---- invalid ----
    // Base: AES-256-GCM, 4096-byte chunks, 5000 bytes (chunk 0 full, chunk 1 of 904), key a.
    let base_spec = Spec::new(aes, 4096, 5000);
    let base = encode(&base_spec);
    let hl = header_len_of(&base);
    let stride = 4096 + TAG_LEN;
    let pt = plaintext(5000);
    let b = base_spec.build_record(None);
    let (c0, c1) = (&pt[..4096], &pt[4096..]);

    g.invalid(
        "stream_last_chunk_empty",
        "a full chunk, then an empty chunk sealed as final (only an empty plaintext may end so)",
        &base_spec,
        "chunks: 4096 bytes (not final), 0 bytes (final)",
        assemble(&b, &[(c0, false), (&[], true)]),
        ("last_chunk_empty", Some(1), None),
        "a",
        &[],
    );
    g.invalid(
        "stream_no_final",
        "no chunk carries the final flag: the stream ends without its final chunk",
        &base_spec,
        "chunks: 4096 bytes (not final), 904 bytes (not final)",
        assemble(&b, &[(c0, false), (c1, false)]),
        ("truncated", None, None),
        "a",
        &[],
    );
    g.invalid(
        "stream_two_final_chunks",
        "chunk 0 is sealed as final although a chunk follows",
        &base_spec,
        "chunks: 4096 bytes (final), 904 bytes (final)",
        assemble(&b, &[(c0, true), (c1, true)]),
        ("chunk_auth", Some(0), None),
        "a",
        &[],
    );
    let mut v = base.clone();
    *v.last_mut().expect("non-empty") ^= 0x01;
    g.invalid(
        "stream_bad_tag",
        "the last byte of the final chunk's tag flipped",
        &base_spec,
        "last byte XOR 0x01",
        v,
        ("chunk_auth", Some(1), None),
        "a",
        &[],
    );
    let mut v = base.clone();
    v.extend_from_slice(b"trailing garbage\n");
    g.invalid(
        "stream_trailing_garbage",
        "17 bytes appended after the final chunk",
        &base_spec,
        "appended \"trailing garbage\\n\"",
        v,
        ("chunk_auth", Some(1), None),
        "a",
        &[],
    );
    g.invalid(
        "stream_truncated_at_boundary",
        "the file cut right after chunk 0 (a valid non-final chunk)",
        &base_spec,
        "truncated to header_len + 4112 bytes",
        base[..hl + stride].to_vec(),
        ("truncated", None, None),
        "a",
        &[],
    );
    g.invalid(
        "stream_truncated_in_tag",
        "the file cut 10 bytes into chunk 1: the last piece is shorter than a tag",
        &base_spec,
        "truncated to header_len + 4112 + 10 bytes",
        base[..hl + stride + 10].to_vec(),
        ("truncated", None, None),
        "a",
        &[],
    );
    g.invalid(
        "stream_no_body",
        "the header alone: no chunk at all",
        &base_spec,
        "truncated to header_len bytes",
        base[..hl].to_vec(),
        ("truncated", None, None),
        "a",
        &[],
    );
    let four_spec = Spec::new(aes, 4096, 3 * 4096 + 100);
    let four = encode(&four_spec);
    let mut v = four[..hl].to_vec();
    v.extend_from_slice(&four[hl + stride..hl + 2 * stride]);
    v.extend_from_slice(&four[hl..hl + stride]);
    v.extend_from_slice(&four[hl + 2 * stride..]);
    g.invalid(
        "stream_chunks_swapped",
        "chunks 0 and 1 exchanged",
        &four_spec,
        "chunk order 1, 0, 2, 3",
        v,
        ("chunk_auth", Some(0), None),
        "a",
        &[],
    );

    let mut v = base.clone();
    v[8] = 0x02;
    g.invalid(
        "header_unknown_version",
        "version byte 0x02",
        &base_spec,
        "byte 8 (version) = 0x02",
        v,
        ("unsupported_version", None, None),
        "a",
        &[],
    );
    let mut v = base.clone();
    v[7] = b'N';
    g.invalid(
        "header_bad_magic",
        "magic \"SEALSTRN\"",
        &base_spec,
        "byte 7 = 'N'",
        v,
        ("header", None, Some("BadMagic")),
        "a",
        &[],
    );
    let mut v = base.clone();
    v[9] = 0x03;
    g.invalid(
        "header_unknown_suite",
        "suite id 0x03 (unassigned)",
        &base_spec,
        "byte 9 (suite) = 0x03",
        v,
        ("header", None, Some("UnknownSuite")),
        "a",
        &[],
    );
    let mut v = base.clone();
    v[11] = 0x01;
    g.invalid(
        "header_reserved_nonzero",
        "reserved field 0x0001",
        &base_spec,
        "byte 11 (reserved, low byte) = 0x01",
        v,
        ("header", None, Some("ReservedNonZero")),
        "a",
        &[],
    );
    let mut v = base.clone();
    v[48..52].copy_from_slice(&(hl as u32 + 1).to_be_bytes());
    g.invalid(
        "header_len_mismatch",
        "header_len one more than the fields take",
        &base_spec,
        "bytes 48..52 (header_len) = header_len + 1",
        v,
        ("header", None, Some("HeaderLenMismatch")),
        "a",
        &[],
    );
    g.invalid(
        "header_truncated",
        "the file ends inside the fixed header part",
        &base_spec,
        "truncated to 50 bytes",
        base[..50].to_vec(),
        ("header", None, Some("Truncated")),
        "a",
        &[],
    );

    // Context pairs in the wrong order: take a file with context {a: 1, b: 2} and exchange
    // the two (equal-length) pair encodings.
    let ab_spec = Spec::new(aes, 4096, 5000).ctx(&[("a", "1"), ("b", "2")]);
    let mut v = encode(&ab_spec);
    let pair = 2 + 1 + 2 + 1;
    let (p0, p1) = (FIXED_LEN + 2, FIXED_LEN + 2 + pair);
    let first = v[p0..p1].to_vec();
    v.copy_within(p1..p1 + pair, p0);
    v[p1..p1 + pair].copy_from_slice(&first);
    g.invalid(
        "context_not_canonical",
        "context pairs stored as b, a (keys must be strictly increasing)",
        &ab_spec,
        "the two 6-byte context pair encodings exchanged",
        v,
        ("header", None, Some("ContextNotCanonical")),
        "a",
        &[],
    );

    // Stanza block offsets in the base header: count at `sb`, then the one stanza.
    let (h, _) = Header::parse(&base).expect("base parses");
    let ctx_len = h.context.to_bytes().len();
    let sb = FIXED_LEN + ctx_len;
    let mut v = base.clone();
    v[sb..sb + 2].copy_from_slice(&33u16.to_be_bytes());
    g.invalid(
        "stanza_count_over_limit",
        "stanza count 33 (limit 32)",
        &base_spec,
        "stanza count = 33",
        v,
        ("header", None, Some("TooManyStanzas")),
        "a",
        &[],
    );

    // A 513-byte key id (limit 512), with header_len adjusted so only the key id is wrong.
    let long_id = "k".repeat(513);
    let mut stanza_block = Vec::new();
    stanza_block.extend_from_slice(&1u16.to_be_bytes());
    stanza_block.push(5);
    stanza_block.extend_from_slice(b"local");
    stanza_block.extend_from_slice(&(long_id.len() as u16).to_be_bytes());
    stanza_block.extend_from_slice(long_id.as_bytes());
    let wrapped = &h.stanzas[0].wrapped;
    stanza_block.extend_from_slice(&(wrapped.len() as u16).to_be_bytes());
    stanza_block.extend_from_slice(wrapped);
    let mut v = base[..sb].to_vec();
    v.extend_from_slice(&stanza_block);
    let new_hl = v.len() as u32;
    v[48..52].copy_from_slice(&new_hl.to_be_bytes());
    v.extend_from_slice(&base[hl..]);
    g.invalid(
        "key_id_too_long",
        "a stanza key id of 513 bytes (limit 512)",
        &base_spec,
        "stanza key id replaced by 513 x 'k', header_len adjusted",
        v,
        ("header", None, Some("BadKeyId")),
        "a",
        &[],
    );

    let mut v = base.clone();
    v[16] ^= 0x01;
    g.invalid(
        "commitment_mismatch",
        "first salt byte flipped: the DEK unwraps but fails the key commitment",
        &base_spec,
        "byte 16 (salt[0]) XOR 0x01",
        v,
        ("commitment_mismatch", None, None),
        "a",
        &[],
    );
    let mut v = base.clone();
    let wrapped_at = hl - wrapped.len();
    v[wrapped_at + 30] ^= 0x01;
    g.invalid(
        "stanza_tampered",
        "a byte of the wrapped data key flipped: the stanza no longer unwraps",
        &base_spec,
        "wrapped key byte 30 XOR 0x01",
        v,
        ("unwrap_failed", None, None),
        "a",
        &[],
    );
    let ctx_spec = Spec::new(aes, 4096, 5000).ctx(&atlas);
    g.invalid(
        "wrong_context",
        "the file has project=atlas; the decryptor requires project=zeus",
        &ctx_spec,
        "none (decrypt with -c project=zeus)",
        encode(&ctx_spec),
        ("context_mismatch", None, None),
        "a",
        &[("project", "zeus")],
    );
    g.invalid(
        "no_matching_key",
        "the file is wrapped for key a only; the decryptor offers key c",
        &base_spec,
        "none (decrypt with key c)",
        base.clone(),
        ("no_matching_key", None, None),
        "c",
        &[],
    );

    let keys = KEYS
        .iter()
        .map(|(name, start)| {
            let k = LocalKey::from_bytes(seq(*start));
            g.put_file(&key_file(name), k.to_text().as_bytes().to_vec());
            KeyEntry {
                name: (*name).into(),
                file: key_file(name),
                id: k.id().into(),
                bytes: hex(&seq::<32>(*start)),
            }
        })
        .collect();
    Generated {
        manifest: Manifest {
            format: FORMAT_TAG.into(),
            description: "sealstream v1 test vectors; see README.md in this directory".into(),
            plaintext: "byte i of a plaintext of length plaintext_len is (i mod 251)".into(),
            keys,
            vectors: g.vectors,
        },
        files: g.files,
    }
}

fn manifest_text(m: &Manifest) -> String {
    serde_json::to_string_pretty(m).expect("serialize manifest") + "\n"
}

/// Rewrites tests/vectors/ from the generator. Run on purpose only:
/// `SEALSTREAM_REGENERATE_VECTORS=1 cargo test --test vectors -- --ignored regenerate_vectors`
/// (the env var keeps `scripts/test.sh`'s `--include-ignored` from rewriting the vectors).
#[test]
#[ignore = "rewrites tests/vectors/; run explicitly when the vector set changes"]
fn regenerate_vectors() {
    if std::env::var_os("SEALSTREAM_REGENERATE_VECTORS").is_none_or(|v| v != "1") {
        eprintln!(
            "regenerate_vectors: not rewriting tests/vectors/ (set SEALSTREAM_REGENERATE_VECTORS=1)"
        );
        return;
    }
    let g = generate();
    let root = dir();
    for sub in ["valid", "invalid", "keys"] {
        let d = root.join(sub);
        if d.exists() {
            std::fs::remove_dir_all(&d).expect("clear old vectors");
        }
        std::fs::create_dir_all(&d).expect("create vector dir");
    }
    for (path, bytes) in &g.files {
        std::fs::write(root.join(path), bytes).expect("write vector");
    }
    std::fs::write(root.join("manifest.json"), manifest_text(&g.manifest)).expect("write manifest");
    // Every expectation written must hold right now.
    for v in &g.manifest.vectors {
        check_library(v, Backend::Ring, EngineOptions::default());
    }
}

// ---------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(dir().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn check_library(v: &Vector, backend: Backend, engine: EngineOptions<'_>) {
    let bytes = read(&v.file);
    let key = LocalKey::load(&dir().join(&v.key)).expect("load vector key");
    let providers: [&dyn KeyProvider; 1] = [&key];
    let params = DecryptParams {
        expected_context: context_of(&v.context),
        backend,
        engine,
    };
    let mut out = Vec::new();
    let r = envelope::decrypt(&bytes[..], &mut out, &providers, &params);
    match v.kind.as_str() {
        "valid" => {
            r.unwrap_or_else(|e| panic!("{}: {e}", v.name));
            assert_eq!(Some(out.len() as u64), v.plaintext_len, "{}", v.name);
            assert_eq!(
                Some(sha256_hex(&out)),
                v.plaintext_sha256,
                "{}: plaintext hash",
                v.name
            );
        }
        "invalid" => {
            let e = match r {
                Ok(_) => panic!("{}: decrypted although invalid", v.name),
                Err(e) => e,
            };
            let (class, index, detail) = classify(&e);
            assert_eq!(Some(class), v.error.as_deref(), "{}: {e}", v.name);
            assert_eq!(index, v.chunk_index, "{}: chunk index ({e})", v.name);
            if v.header_error.is_some() {
                assert_eq!(detail, v.header_error, "{}: header error", v.name);
            }
            // Only whole, authenticated chunks may have been released.
            assert_eq!(
                out.len() % v.build.chunk_size as usize,
                0,
                "{}: partial chunk released",
                v.name
            );
            assert!(
                plaintext(v.build.plaintext_len as usize).starts_with(&out),
                "{}: released bytes are not plaintext",
                v.name
            );
        }
        k => panic!("{}: unknown kind {k}", v.name),
    }
}

#[test]
fn manifest_is_well_formed() {
    let m = load_manifest();
    assert_eq!(m.format, FORMAT_TAG);
    let mut names = std::collections::BTreeSet::new();
    for k in &m.keys {
        let key = LocalKey::load(&dir().join(&k.file)).expect("key file loads");
        assert_eq!(key.id(), k.id);
        assert_eq!(key.id(), LocalKey::from_bytes(unhex(&k.bytes)).id());
    }
    let key_files: Vec<&str> = m.keys.iter().map(|k| k.file.as_str()).collect();
    for v in &m.vectors {
        assert!(names.insert(v.name.clone()), "duplicate vector {}", v.name);
        assert!(dir().join(&v.file).is_file(), "{}: missing file", v.name);
        assert!(
            key_files.contains(&v.key.as_str()),
            "{}: unknown key",
            v.name
        );
        match v.kind.as_str() {
            "valid" => {
                assert!(v.plaintext_len.is_some() && v.plaintext_sha256.is_some());
                assert!(v.error.is_none() && v.chunk_index.is_none());
                assert_eq!(v.plaintext_len, Some(v.build.plaintext_len));
                assert!(v.build.modification.is_none());
            }
            "invalid" => {
                let e = v.error.as_deref().expect("invalid vectors name an error");
                assert!(ERROR_CLASSES.contains(&e), "{}: unknown class {e}", v.name);
                assert_eq!(
                    v.chunk_index.is_some(),
                    matches!(e, "chunk_auth" | "last_chunk_empty"),
                    "{}: chunk_index goes with chunk_auth/last_chunk_empty",
                    v.name
                );
                assert!(v.plaintext_sha256.is_none());
                assert!(v.build.modification.is_some());
            }
            k => panic!("{}: unknown kind {k}", v.name),
        }
    }
    // Every class the format defines is covered by at least one vector.
    for c in ERROR_CLASSES {
        assert!(
            m.vectors.iter().any(|v| v.error.as_deref() == Some(c)),
            "no vector for error class {c}"
        );
    }
    let total: u64 = walk(&dir())
        .iter()
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert!(total < MAX_DIR_BYTES, "tests/vectors is {total} bytes");
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).expect("read_dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn library_decrypts_every_vector() {
    let m = load_manifest();
    let small = EngineOptions {
        threads: 2,
        batch_bytes: 1,
        progress: None,
    };
    for v in &m.vectors {
        check_library(v, Backend::Ring, EngineOptions::default());
        check_library(v, Backend::RustCrypto, small);
    }
}

#[test]
fn cli_decrypts_every_vector() {
    let m = load_manifest();
    for v in &m.vectors {
        let s = common::Scratch::new();
        let out = s.path("out.bin");
        let key = dir().join(&v.key);
        let input = dir().join(&v.file);
        let mut args: Vec<String> = vec![
            "decrypt".into(),
            "-k".into(),
            key.display().to_string(),
            "-o".into(),
            out.display().to_string(),
        ];
        for (k, val) in &v.context {
            args.push("-c".into());
            args.push(format!("{k}={val}"));
        }
        args.push(input.display().to_string());
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = s.run(&argv);
        let code = common::code(&o);
        if v.kind == "valid" {
            assert_eq!(code, 0, "{}: {}", v.name, common::stderr(&o));
            let got = std::fs::read(&out).expect("output written");
            assert_eq!(Some(got.len() as u64), v.plaintext_len, "{}", v.name);
            assert_eq!(Some(sha256_hex(&got)), v.plaintext_sha256, "{}", v.name);
        } else {
            assert_eq!(code, 4, "{}: {}", v.name, common::stderr(&o));
            assert!(!out.exists(), "{}: output file left behind", v.name);
            assert!(s.files().is_empty(), "{}: left {:?}", v.name, s.files());
        }
    }
}

#[test]
fn valid_vectors_known_answer() {
    let m = load_manifest();
    let opts = EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    };
    for v in m.vectors.iter().filter(|v| v.kind == "valid") {
        // Rebuild from the manifest's recorded inputs with the production engine.
        let (header, cipher) = sealed_header(&v.build);
        let mut out = header.to_bytes().expect("header");
        let pt = plaintext(v.build.plaintext_len as usize);
        engine::seal(&cipher, v.build.chunk_size, &pt[..], &mut out, &opts).expect("seal");
        assert!(out == read(&v.file), "{}: re-encryption differs", v.name);
        assert_eq!(
            Some(sha256_hex(&pt)),
            v.plaintext_sha256,
            "{}: plaintext rule",
            v.name
        );
    }
}

#[test]
fn worked_example_objects_match_format_md() {
    // docs/FORMAT.md §14 lists SHA-256(file) of the objects these vectors reproduce.
    let m = load_manifest();
    let sha = |name: &str| {
        let v = m.vectors.iter().find(|v| v.name == name).expect("vector");
        sha256_hex(&read(&v.file))
    };
    assert_eq!(
        sha("aes_4096_5000_context"),
        "fdac7d0422a4e81f2dd425efdd562c0a1aa0ebba8869f625602d5244a093b7a4"
    );
    assert_eq!(
        sha("chacha_4096_5000_context"),
        "77586404f96e183990693453fd0ab9ba7b8002147b8ce253ca933cd371af6276"
    );
    assert_eq!(
        sha("chacha_4096_empty_context"),
        "23734cf7ef1925044d859e96658e962d342b0c426653194be20eb4a5efbce71d"
    );
}

#[test]
fn generator_reproduces_checked_in_vectors() {
    let g = generate();
    let on_disk = std::fs::read_to_string(dir().join("manifest.json")).expect("manifest");
    assert!(
        on_disk == manifest_text(&g.manifest),
        "manifest.json differs from the generator; run the ignored regenerate_vectors test"
    );
    for (path, bytes) in &g.files {
        assert!(read(path) == *bytes, "{path} differs from the generator");
    }
    // No stray files: everything under valid/, invalid/, keys/ comes from the generator.
    let expected: std::collections::BTreeSet<PathBuf> =
        g.files.iter().map(|(p, _)| dir().join(p)).collect();
    for sub in ["valid", "invalid", "keys"] {
        for p in walk(&dir().join(sub)) {
            assert!(expected.contains(&p), "stray file {}", p.display());
        }
    }
}
