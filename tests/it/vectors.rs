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
//! * `part_wise_vectors_match`: the part-wise objects (FORMAT.md §17) under parts/.
//!
//! Regenerate (only when the format or the vector set changes on purpose):
//! `SEALSTREAM_REGENERATE_VECTORS=1 cargo test --test it -- --ignored vectors::regenerate_vectors`

// Only the CLI tests below use the shared fixtures.
#[cfg(feature = "cli")]
use crate::common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use sealstream::Backend;
use sealstream::engine::{self, EngineOptions};
use sealstream::envelope::{self, DecryptParams, EncryptParams};
use sealstream::error::{Error, HeaderError};
use sealstream::format::{Context, FIXED_LEN, Header, Layout, Stanza, Suite, TAG_LEN};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::range::{self, ByteRange};
#[cfg(feature = "s3")]
use sealstream::s3::object::{self, HeaderLocation};
use sealstream::testkit::ChunkCipher as _;

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

/// A vector key file (`keys/x.key`, relative to [`dir`]) as a private 0600 copy: sealstream
/// refuses key files its group can write, and a checkout under umask 002 makes the
/// checked-in ones 0664. The copies live for the whole test process.
fn private_key_copy(rel: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    static KEYS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let tmp = KEYS.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("temp dir for key copies");
        for e in std::fs::read_dir(dir().join("keys")).expect("keys dir") {
            let e = e.expect("keys dir entry");
            let to = tmp.path().join(e.file_name());
            std::fs::copy(e.path(), &to).expect("copy vector key");
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        tmp
    });
    let name = Path::new(rel).file_name().expect("key file name");
    tmp.path().join(name)
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
    /// Body layouts (FORMAT.md §6.4) too large for a file: checked with `Layout::from_lengths`.
    #[serde(default)]
    layouts: Vec<LayoutCase>,
    /// Object-form metadata maps (FORMAT.md §15.1–15.2) and where they put the header.
    #[serde(default)]
    object_metadata: Vec<ObjectCase>,
    /// Part-wise objects (FORMAT.md §17): header, manifest and body files.
    #[serde(default)]
    part_wise: Vec<PartWiseCase>,
}

/// One ranged read of a vector's file (FORMAT.md §9): the expected plaintext bytes
/// (`offset`, `len` into the vector's plaintext, and their SHA-256) or the error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeCase {
    /// HTTP-style range as given to `--range`: `START-END`, `START-` or `-N`.
    range: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    /// An error class of the README, or `unsatisfiable` (a usage error, exit 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_index: Option<u64>,
}

/// The body layout of §6.4 for a body length: chunk count and plaintext length, or the error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayoutCase {
    name: String,
    description: String,
    chunk_size: u32,
    /// Body bytes (file length − header_len).
    body_len: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_index: Option<u64>,
}

/// S3 user metadata (names lowercase, without `x-amz-meta-`) and what a reader makes of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectCase {
    name: String,
    description: String,
    metadata: BTreeMap<String, String>,
    /// Inline form: the header is byte for byte the header of this vector's file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header_of: Option<String>,
    /// Companion form: the companion object's key …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    companion_key: Option<String>,
    /// … and the commitment (hex) its header must carry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    companion_commitment: Option<String>,
    /// `object_not_sealstream`, `object_unsupported_version`, `object_metadata` or `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    header_error: Option<String>,
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
    /// Ranged reads of this file and their expected result.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ranges: Vec<RangeCase>,
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
    /// Provider id of a `foreign` stanza when not `aws-kms` (e.g. a broken `local` stanza).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreign_provider: Option<String>,
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
    stanzas: Vec<StanzaSpec>,
}

/// One stanza of a generated object.
#[derive(Clone)]
enum StanzaSpec {
    /// Wrapped for the named local key with its fixed nonce.
    Local(&'static str),
    /// Stored byte for byte (`None` provider = `aws-kms`).
    Foreign {
        provider: Option<String>,
        key_id: String,
        wrapped: Vec<u8>,
    },
}

fn foreign_stanza() -> StanzaSpec {
    StanzaSpec::Foreign {
        provider: None,
        key_id: FOREIGN_KEY_ID.into(),
        wrapped: foreign_wrapped(),
    }
}

impl Spec {
    fn new(suite: Suite, chunk_size: u32, len: usize) -> Spec {
        Spec {
            suite,
            chunk_size,
            len,
            context: BTreeMap::new(),
            stanzas: vec![StanzaSpec::Local("a")],
        }
    }
    fn ctx(mut self, pairs: &[(&str, &str)]) -> Spec {
        self.context = map(pairs);
        self
    }
    fn stanzas(mut self, s: &[&'static str]) -> Spec {
        self.stanzas = s
            .iter()
            .map(|k| match *k {
                "foreign" => foreign_stanza(),
                k => StanzaSpec::Local(k),
            })
            .collect();
        self
    }
    fn raw_stanzas(mut self, s: Vec<StanzaSpec>) -> Spec {
        self.stanzas = s;
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
                .map(|s| match s {
                    StanzaSpec::Foreign {
                        provider,
                        key_id,
                        wrapped,
                    } => StanzaBuild {
                        key: "foreign".into(),
                        wrap_nonce: None,
                        foreign_key_id: Some(key_id.clone()),
                        foreign_wrapped: Some(hex(wrapped)),
                        foreign_provider: provider.clone(),
                    },
                    StanzaSpec::Local(k) => StanzaBuild {
                        key: (*k).into(),
                        wrap_nonce: Some(hex(&wrap_nonce(k))),
                        foreign_key_id: None,
                        foreign_wrapped: None,
                        foreign_provider: None,
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
fn sealed_header(b: &Build) -> (Header, sealstream::PayloadCipher) {
    let dek = DataKey::from_bytes(unhex(&b.dek));
    let ctx = context_of(&b.context);
    let stanzas: Vec<Stanza> = b
        .stanzas
        .iter()
        .map(|s| match s.key.as_str() {
            "foreign" => Stanza {
                provider: s.foreign_provider.as_deref().unwrap_or("aws-kms").into(),
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
            ranges: Vec::new(),
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
            ranges: Vec::new(),
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

    // ---- limits, charsets and bounds of the header (FORMAT.md §3.2–§3.4, §8.1 steps 1–11) ----
    header_limit_vectors(&mut g, &base_spec, &base);
    // ---- the try-the-next-stanza rule (§8.1 step 13) ----
    next_stanza_vectors(&mut g);
    // ---- ranged reads (§9): expected bytes, or the error, for given ranges ----
    attach_ranges(&mut g);
    // ---- part-wise objects (§17) ----
    let (part_wise, part_files) = part_wise_cases();
    for (path, bytes) in part_files {
        g.put_file(&path, bytes);
    }

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
            layouts: layout_cases(),
            object_metadata: object_cases(&g),
            part_wise,
            vectors: g.vectors,
        },
        files: g.files,
    }
}

// ---------------------------------------------------------------------------------------
// Generator: header limits, next-stanza rule, ranges, layouts, object metadata
// ---------------------------------------------------------------------------------------

/// A context block from raw pairs, without any validation (FORMAT.md §3.2).
fn raw_context(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (pairs.len() as u16).to_be_bytes().to_vec();
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

/// A stanza block from raw `(provider, key id, wrapped)` triples, without validation (§3.3).
fn raw_stanza_block(stanzas: &[(&[u8], &[u8], &[u8])]) -> Vec<u8> {
    let mut out = (stanzas.len() as u16).to_be_bytes().to_vec();
    for (p, k, w) in stanzas {
        out.push(p.len() as u8);
        out.extend_from_slice(p);
        out.extend_from_slice(&(k.len() as u16).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(w.len() as u16).to_be_bytes());
        out.extend_from_slice(w);
    }
    out
}

/// `base` with its context and stanza blocks replaced (fixed part and body kept,
/// `header_len` set to the new length).
fn reheader(base: &[u8], ctx: &[u8], stanzas: &[u8]) -> Vec<u8> {
    let hl = header_len_of(base);
    let mut v = base[..FIXED_LEN].to_vec();
    v.extend_from_slice(ctx);
    v.extend_from_slice(stanzas);
    let n = v.len() as u32;
    v[48..52].copy_from_slice(&n.to_be_bytes());
    v.extend_from_slice(&base[hl..]);
    v
}

/// A header vector: `bytes` must fail with `header` (and the given `HeaderError` variant),
/// or with another class when `class` says so.
fn header_case(
    g: &mut Gen,
    name: &str,
    description: &str,
    spec: &Spec,
    modification: &str,
    bytes: Vec<u8>,
    expect: (&str, Option<&str>),
) {
    g.invalid(
        name,
        description,
        spec,
        modification,
        bytes,
        (expect.0, None, expect.1),
        "a",
        &[],
    );
}

fn header_limit_vectors(g: &mut Gen, base_spec: &Spec, base: &[u8]) {
    let (h, _) = Header::parse(base).expect("base parses");
    let a = &h.stanzas[0];
    let a_stanza: (&[u8], &[u8], &[u8]) = (b"local", a.key_id.as_bytes(), &a.wrapped);
    let no_ctx = raw_context(&[]);
    let only_a = raw_stanza_block(&[a_stanza]);
    let hdr = |ctx: &[u8], st: &[u8]| reheader(base, ctx, st);
    let bad = |v: &'static str| ("header", Some(v));

    // Empty and short inputs (§8.1 steps 1–2).
    header_case(
        g,
        "header_empty_input",
        "an empty input: every byte present (none) matches the magic, so it is a truncated header",
        base_spec,
        "truncated to 0 bytes",
        Vec::new(),
        bad("Truncated"),
    );
    header_case(
        g,
        "header_magic_prefix_only",
        "the first 6 bytes of the magic only: truncated, not 'not sealstream'",
        base_spec,
        "truncated to 6 bytes (\"SEALST\")",
        base[..6].to_vec(),
        bad("Truncated"),
    );
    header_case(
        g,
        "header_short_not_magic",
        "5 bytes that differ from the magic: not sealstream (bad magic), not truncated",
        base_spec,
        "the 5 bytes \"SEALX\"",
        b"SEALX".to_vec(),
        bad("BadMagic"),
    );

    // Chunk size and header_len bounds (§3.1, §8.1 steps 6–7).
    for (name, cs, what) in [
        (
            "header_chunk_size_below_min",
            4095u32,
            "4095 (minimum 4096)",
        ),
        (
            "header_chunk_size_above_max",
            16_777_217,
            "16777217 (maximum 16777216)",
        ),
    ] {
        let mut v = base.to_vec();
        v[12..16].copy_from_slice(&cs.to_be_bytes());
        header_case(
            g,
            name,
            &format!("chunk_size {what}"),
            base_spec,
            &format!("bytes 12..16 (chunk_size) = {cs}"),
            v,
            bad("ChunkSizeOutOfRange"),
        );
    }
    for (name, len, what) in [
        ("header_len_below_min", 95u32, "95 (minimum 96)"),
        ("header_len_above_max", 65_537, "65537 (maximum 65536)"),
    ] {
        let mut v = base.to_vec();
        v[48..52].copy_from_slice(&len.to_be_bytes());
        header_case(
            g,
            name,
            &format!("header_len {what}: rejected before the rest is read"),
            base_spec,
            &format!("bytes 48..52 (header_len) = {len}"),
            v,
            bad("HeaderLenOutOfRange"),
        );
    }
    // header_len = 65536 is within bounds: the decoder reads 65536 bytes and then finds the
    // fields take fewer (the file is padded with zeros so that it has them).
    let mut v = base.to_vec();
    v[48..52].copy_from_slice(&65_536u32.to_be_bytes());
    v.resize(65_536 + 4096, 0);
    header_case(
        g,
        "header_len_max_mismatch",
        "header_len 65536 (the maximum, accepted) but the fields take fewer bytes",
        base_spec,
        "bytes 48..52 (header_len) = 65536; zeros appended up to 69632 bytes",
        v,
        bad("HeaderLenMismatch"),
    );
    // The smallest possible header: empty context, one stanza of 1-byte fields.
    let min = hdr(&no_ctx, &raw_stanza_block(&[(b"x", b"k", b"w")]));
    assert_eq!(header_len_of(&min), 96);
    header_case(
        g,
        "header_len_min",
        "a 96-byte header (the minimum): empty context and one stanza with a 1-byte provider \
         id, key id and wrapped key; it parses, and no offered key matches",
        base_spec,
        "stanza block replaced by one stanza (provider \"x\", key id \"k\", wrapped \"w\"); \
         header_len = 96",
        min,
        ("no_matching_key", None),
    );

    // Context limits and charsets (§3.2).
    let k129 = vec![b'k'; 129];
    let v1025 = vec![b'v'; 1025];
    let pairs33: Vec<(Vec<u8>, Vec<u8>)> = (0..33)
        .map(|i| (format!("k{i:02}").into_bytes(), b"v".to_vec()))
        .collect();
    let p33: Vec<(&[u8], &[u8])> = pairs33
        .iter()
        .map(|(k, v)| (k.as_slice(), v.as_slice()))
        .collect();
    // Eight pairs whose block is 8193 bytes: 2 + 8 × (4 + 1) + 7 × 1024 + 983.
    let big: Vec<(Vec<u8>, Vec<u8>)> = (0..8u8)
        .map(|i| (vec![b'a' + i], vec![b'v'; if i < 7 { 1024 } else { 983 }]))
        .collect();
    let pbig: Vec<(&[u8], &[u8])> = big.iter().map(|(k, v)| (&k[..], &v[..])).collect();
    assert_eq!(raw_context(&pbig).len(), 8193);
    let ctx_cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "context_count_over_limit",
            "33 context pairs (limit 32)",
            raw_context(&p33),
            "TooManyContextPairs",
        ),
        (
            "context_key_empty",
            "a context key of 0 bytes (keys are 1..=128 bytes)",
            raw_context(&[(b"", b"v")]),
            "ContextFieldLength",
        ),
        (
            "context_key_too_long",
            "a context key of 129 bytes (limit 128)",
            raw_context(&[(&k129, b"v")]),
            "ContextFieldLength",
        ),
        (
            "context_value_too_long",
            "a context value of 1025 bytes (limit 1024)",
            raw_context(&[(b"k", &v1025)]),
            "ContextFieldLength",
        ),
        (
            "context_block_too_long",
            "a context block of 8193 bytes (limit 8192), every pair within its own limits",
            raw_context(&pbig),
            "ContextFieldLength",
        ),
        (
            "context_key_not_utf8",
            "a context key with the byte 0xff (not UTF-8)",
            raw_context(&[(b"k\xff", b"v")]),
            "ContextNotUtf8",
        ),
        (
            "context_value_not_utf8",
            "a context value with an overlong encoding 0xc0 0x80 (not UTF-8)",
            raw_context(&[(b"k", b"\xc0\x80")]),
            "ContextNotUtf8",
        ),
        (
            "context_duplicate_key",
            "the same context key twice (keys must be strictly increasing)",
            raw_context(&[(b"k", b"1"), (b"k", b"2")]),
            "ContextNotCanonical",
        ),
    ];
    for (name, description, ctx, variant) in ctx_cases {
        header_case(
            g,
            name,
            description,
            base_spec,
            "context block replaced (see description), header_len adjusted",
            hdr(&ctx, &only_a),
            bad(variant),
        );
    }

    // Stanza limits and charsets (§3.3).
    let long_provider = vec![b'p'; 33];
    let long_wrapped = vec![0x77u8; 1025];
    let stanza_cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "stanza_count_zero",
            "a stanza block with count 0",
            raw_stanza_block(&[]),
            "NoStanzas",
        ),
        (
            "provider_id_empty",
            "a stanza provider id of 0 bytes",
            raw_stanza_block(&[(b"", a_stanza.1, a_stanza.2)]),
            "BadProviderId",
        ),
        (
            "provider_id_too_long",
            "a stanza provider id of 33 bytes (limit 32)",
            raw_stanza_block(&[(&long_provider, b"k", b"w"), a_stanza]),
            "BadProviderId",
        ),
        (
            "provider_id_uppercase",
            "provider id \"Local\" (only [a-z0-9-] is allowed)",
            raw_stanza_block(&[(b"Local", a_stanza.1, a_stanza.2)]),
            "BadProviderId",
        ),
        (
            "provider_id_underscore",
            "provider id \"aws_kms\" (only [a-z0-9-] is allowed)",
            raw_stanza_block(&[(b"aws_kms", b"k", b"w"), a_stanza]),
            "BadProviderId",
        ),
        (
            "key_id_empty",
            "a stanza key id of 0 bytes",
            raw_stanza_block(&[(b"local", b"", a_stanza.2)]),
            "BadKeyId",
        ),
        (
            "key_id_space",
            "a key id containing a space (0x20)",
            raw_stanza_block(&[(b"aws-kms", b"alias/my key", b"w"), a_stanza]),
            "BadKeyId",
        ),
        (
            "key_id_del",
            "a key id containing DEL (0x7f)",
            raw_stanza_block(&[(b"aws-kms", b"key\x7f", b"w"), a_stanza]),
            "BadKeyId",
        ),
        (
            "key_id_control",
            "a key id containing ESC (0x1b)",
            raw_stanza_block(&[(b"aws-kms", b"key\x1b[0m", b"w"), a_stanza]),
            "BadKeyId",
        ),
        (
            "key_id_non_ascii",
            "a key id containing U+00E9 (UTF-8 c3 a9): only printable ASCII is allowed",
            raw_stanza_block(&[(b"aws-kms", "cl\u{e9}".as_bytes(), b"w"), a_stanza]),
            "BadKeyId",
        ),
        (
            "wrapped_key_empty",
            "a stanza wrapped key of 0 bytes",
            raw_stanza_block(&[(b"aws-kms", b"k", b""), a_stanza]),
            "BadWrappedKeyLength",
        ),
        (
            "wrapped_key_too_long",
            "a stanza wrapped key of 1025 bytes (limit 1024)",
            raw_stanza_block(&[(b"aws-kms", b"k", &long_wrapped), a_stanza]),
            "BadWrappedKeyLength",
        ),
    ];
    for (name, description, st, variant) in stanza_cases {
        // With no stanza and no context the header would be 88 bytes, below MIN_HEADER_LEN
        // (rejected at step 7 before the stanza count is seen): a context pads it to 97.
        let (ctx, note) = if st.len() == 2 {
            (
                raw_context(&[(b"k", b"vvvv")]),
                "; context {k: vvvv} so header_len = 97",
            )
        } else {
            (no_ctx.clone(), "")
        };
        header_case(
            g,
            name,
            description,
            base_spec,
            &format!("stanza block replaced (see description), header_len adjusted{note}"),
            hdr(&ctx, &st),
            bad(variant),
        );
    }
    // A local stanza whose wrapped key is not 72 bytes: an unwrap failure (§10.3), not a
    // header error.
    for (name, len) in [
        ("local_wrapped_71_bytes", 71usize),
        ("local_wrapped_73_bytes", 73),
    ] {
        let mut w = a.wrapped.clone();
        w.resize(len, 0);
        header_case(
            g,
            name,
            &format!("key a's stanza with a {len}-byte wrapped key (local stanzas are 72 bytes)"),
            base_spec,
            &format!("key a's wrapped key cut or zero-padded to {len} bytes"),
            hdr(&no_ctx, &raw_stanza_block(&[(b"local", a_stanza.1, &w)])),
            ("unwrap_failed", None),
        );
    }

    // Two defects: the step order of §8.1 decides which is reported.
    let mut v = base.to_vec();
    v[9] = 0x03;
    v[11] = 0x01;
    header_case(
        g,
        "two_defects_suite_and_reserved",
        "unknown suite and reserved != 0: the suite (§8.1 step 4) is checked before reserved (step 5)",
        base_spec,
        "byte 9 (suite) = 0x03, byte 11 (reserved) = 0x01",
        v,
        bad("UnknownSuite"),
    );
    let mut v = base.to_vec();
    v[7] = b'N';
    v[8] = 0x02;
    header_case(
        g,
        "two_defects_magic_and_version",
        "bad magic and version 0x02: the magic (step 1) is checked first",
        base_spec,
        "byte 7 = 'N', byte 8 (version) = 0x02",
        v,
        bad("BadMagic"),
    );
    let mut v = base.to_vec();
    v[8] = 0x02;
    v[9] = 0x03;
    header_case(
        g,
        "two_defects_version_and_suite",
        "version 0x02 and suite 0x03: the version (step 3) is checked before the suite; \
         nothing after the version byte is interpreted",
        base_spec,
        "byte 8 (version) = 0x02, byte 9 (suite) = 0x03",
        v,
        ("unsupported_version", None),
    );
    let mut v = base.to_vec();
    v[16] ^= 0x01;
    *v.last_mut().expect("non-empty") ^= 0x01;
    header_case(
        g,
        "two_defects_commitment_and_tag",
        "salt byte flipped and final tag flipped: the commitment (step 13) fails before any \
         chunk is opened",
        base_spec,
        "byte 16 (salt[0]) XOR 0x01, last byte XOR 0x01",
        v,
        ("commitment_mismatch", None),
    );
}

/// Valid vectors for the try-the-next-stanza rule: the first stanza for key a fails, a later
/// one opens the object.
fn next_stanza_vectors(g: &mut Gen) {
    let aes = Suite::Aes256Gcm;
    let a_id = kek("a").id().to_string();
    let dek = DataKey::from_bytes(seq(DEK_START));
    let good = kek("a").wrap_with_nonce(&dek, &Context::new(), wrap_nonce("a"));
    let mut broken = good.wrapped.clone();
    broken[30] ^= 0x01;
    let spec = Spec::new(aes, 4096, 5000).raw_stanzas(vec![
        StanzaSpec::Foreign {
            provider: Some("local".into()),
            key_id: a_id.clone(),
            wrapped: broken,
        },
        StanzaSpec::Local("a"),
    ]);
    g.valid(
        "next_stanza_after_unwrap_failure",
        "two stanzas for key a: the first does not unwrap (a wrapped byte flipped), the \
         second opens the object; the decoder must go on to the next stanza",
        &spec,
        "valid/next_stanza_after_unwrap_failure.sealed",
        "a",
    );
    // A stanza for key a that unwraps to another data key (e0..ff): fails the commitment.
    let other =
        kek("a").wrap_with_nonce(&DataKey::from_bytes(seq(0xe0)), &Context::new(), seq(0x10));
    let spec = Spec::new(aes, 4096, 5000).raw_stanzas(vec![
        StanzaSpec::Foreign {
            provider: Some("local".into()),
            key_id: a_id,
            wrapped: other.wrapped,
        },
        StanzaSpec::Local("a"),
    ]);
    g.valid(
        "next_stanza_after_commitment_mismatch",
        "two stanzas for key a: the first unwraps to another data key (e0..ff) and fails the \
         key commitment, the second opens the object",
        &spec,
        "valid/next_stanza_after_commitment_mismatch.sealed",
        "a",
    );

    // Limits reached exactly: must be accepted.
    let mut ctx = BTreeMap::new();
    ctx.insert("k".repeat(128), "v".repeat(1024));
    for i in 0..31 {
        ctx.insert(format!("p{i:02}"), "x".into());
    }
    ctx.insert(
        "ctl".into(),
        "line\n[verified]\u{1b}[0m\t\u{e9}\u{202e}".into(),
    );
    ctx.remove("p30");
    ctx.insert("p00".into(), String::new()); // an empty value is allowed (0..=1024 bytes)
    let mut spec = Spec::new(Suite::ChaCha20Poly1305, 4096, 100);
    spec.context = ctx;
    assert_eq!(spec.context.len(), 32);
    g.valid(
        "context_at_limits",
        "32 context pairs (the maximum), one with a 128-byte key and a 1024-byte value, one \
         with an empty value, one whose value holds LF, ESC, TAB and non-ASCII characters \
         (any UTF-8 is allowed)",
        &spec,
        "valid/context_at_limits.sealed",
        "a",
    );
    // A context block of exactly 8192 bytes: 2 + 8 × (4 + 1) + 7 × 1024 + 982.
    let mut spec = Spec::new(aes, 4096, 100);
    spec.context = (0..8u8)
        .map(|i| {
            (
                ((b'a' + i) as char).to_string(),
                "v".repeat(if i < 7 { 1024 } else { 982 }),
            )
        })
        .collect();
    assert_eq!(context_of(&spec.context).to_bytes().len(), 8192);
    g.valid(
        "context_block_at_limit",
        "a context block of exactly 8192 bytes (the maximum)",
        &spec,
        "valid/context_block_at_limit.sealed",
        "a",
    );
    // 32 stanzas: 31 foreign ones at the field limits and with every allowed key-id
    // character, then key a's.
    let all_printable: String = (0x21u8..=0x7e).map(char::from).collect();
    let mut stanzas = vec![
        StanzaSpec::Foreign {
            provider: Some("abcdefghijklmnopqrstuvwxyz-01234".into()),
            key_id: "k".repeat(512),
            wrapped: vec![0x5a; 1024],
        },
        StanzaSpec::Foreign {
            provider: Some("x".into()),
            key_id: all_printable,
            wrapped: vec![0x01],
        },
    ];
    for i in 0..29 {
        stanzas.push(StanzaSpec::Foreign {
            provider: Some("aws-kms".into()),
            key_id: format!("arn:aws:kms:us-east-1:111122223333:key/limit-{i:02}"),
            wrapped: vec![i as u8; 1 + i],
        });
    }
    stanzas.push(StanzaSpec::Local("a"));
    assert_eq!(stanzas.len(), 32);
    g.valid(
        "stanzas_at_limits",
        "32 stanzas (the maximum): a 32-byte provider id with a 512-byte key id and a \
         1024-byte wrapped key, a key id of every printable ASCII character 0x21..0x7e, \
         unknown providers, and key a's stanza last",
        &Spec::new(aes, 4096, 100).raw_stanzas(stanzas),
        "valid/stanzas_at_limits.sealed",
        "a",
    );
}

/// `START-END`, `START-` or `-N` resolved against plaintext length `p` (FORMAT.md §9 step 4):
/// the inclusive byte span, or `None` when unsatisfiable. Written from the spec, not the code.
fn resolve_range(r: &str, p: u64) -> Option<(u64, u64)> {
    let (a, b) = r.split_once('-').expect("range has '-'");
    if a.is_empty() {
        let n: u64 = b.parse().expect("N");
        if p == 0 {
            return None;
        }
        return Some((p - n.min(p), p - 1));
    }
    let s: u64 = a.parse().expect("START");
    if s >= p {
        return None;
    }
    let e = if b.is_empty() {
        p - 1
    } else {
        b.parse::<u64>().expect("END").min(p - 1)
    };
    Some((s, e))
}

fn attach_ranges(g: &mut Gen) {
    // Valid vectors: the answer follows from the plaintext length.
    let valid: [(&str, &[&str]); 5] = [
        (
            "aes_4096_5000_context",
            &[
                "0-0",
                "0-4095",
                "4095-4096",
                "4096-4999",
                "100-",
                "-1",
                "-5000",
                "-6000",
                "4990-9999",
                "4999-",
                "5000-",
                "5000-5000",
            ],
        ),
        ("aes_4096_empty", &["0-0", "0-", "-1"]),
        (
            "aes_4096_exact_two_chunks",
            &["8191-", "4096-8191", "-4096", "0-8191", "8192-"],
        ),
        (
            "aes_4096_multi_short_final",
            &["5000-9000", "12288-", "-100", "-101"],
        ),
        ("chacha_65536_short", &["10-20", "-1000"]),
    ];
    for (name, ranges) in valid {
        let v = g
            .vectors
            .iter_mut()
            .find(|v| v.name == name)
            .expect("vector");
        let pt = plaintext(v.build.plaintext_len as usize);
        for r in ranges {
            v.ranges.push(match resolve_range(r, pt.len() as u64) {
                Some((s, e)) => RangeCase {
                    range: (*r).into(),
                    offset: Some(s),
                    len: Some(e - s + 1),
                    sha256: Some(sha256_hex(&pt[s as usize..=e as usize])),
                    error: None,
                    chunk_index: None,
                },
                None => RangeCase {
                    range: (*r).into(),
                    offset: None,
                    len: None,
                    sha256: None,
                    error: Some("unsatisfiable".into()),
                    chunk_index: None,
                },
            });
        }
    }
    // Invalid vectors: a range inside non-final chunks needs no length authentication and
    // succeeds; one that touches (or depends on) the end fails like the whole file.
    let ok = |r: &str, s: u64, e: u64| RangeCase {
        range: r.into(),
        offset: Some(s),
        len: Some(e - s + 1),
        sha256: Some(sha256_hex(&plaintext(5000)[s as usize..=e as usize])),
        error: None,
        chunk_index: None,
    };
    let err = |r: &str, class: &str, index: Option<u64>| RangeCase {
        range: r.into(),
        offset: None,
        len: None,
        sha256: None,
        error: Some(class.into()),
        chunk_index: index,
    };
    let invalid: Vec<(&str, Vec<RangeCase>)> = vec![
        (
            "stream_bad_tag",
            vec![
                ok("0-99", 0, 99),
                ok("4000-4095", 4000, 4095),
                err("4000-4200", "chunk_auth", Some(1)),
                err("-10", "chunk_auth", Some(1)),
                err("100-", "chunk_auth", Some(1)),
                // Past the claimed end: the final chunk is opened before "unsatisfiable".
                err("6000-6001", "chunk_auth", Some(1)),
            ],
        ),
        (
            "stream_trailing_garbage",
            vec![
                ok("0-99", 0, 99),
                err("4096-4100", "chunk_auth", Some(1)),
                err("-1", "chunk_auth", Some(1)),
            ],
        ),
        (
            "stream_no_final",
            vec![
                ok("0-99", 0, 99),
                err("-1", "truncated", None),
                err("9000-", "truncated", None),
            ],
        ),
        (
            "stream_truncated_at_boundary",
            vec![
                err("0-99", "truncated", None),
                err("-10", "truncated", None),
                err("5000-5100", "truncated", None),
            ],
        ),
        (
            "stream_truncated_in_tag",
            vec![err("0-99", "truncated", None)],
        ),
        (
            "stream_last_chunk_empty",
            vec![err("0-99", "last_chunk_empty", Some(1))],
        ),
    ];
    for (name, cases) in invalid {
        let v = g
            .vectors
            .iter_mut()
            .find(|v| v.name == name)
            .expect("vector");
        v.ranges = cases;
    }
}

/// Body layouts of §6.4, up to and beyond 2^32 chunks (no file could hold them).
fn layout_cases() -> Vec<LayoutCase> {
    let max = 1u64 << 32;
    let case = |name: &str,
                description: &str,
                cs: u32,
                body: u64,
                r: Result<(u64, u64), (&str, Option<u64>)>| {
        let (chunk_count, plaintext_len, error, chunk_index) = match r {
            Ok((n, p)) => (Some(n), Some(p), None, None),
            Err((e, i)) => (None, None, Some(e.to_string()), i),
        };
        LayoutCase {
            name: name.into(),
            description: description.into(),
            chunk_size: cs,
            body_len: body,
            chunk_count,
            plaintext_len,
            error,
            chunk_index,
        }
    };
    let s4 = 4096u64 + 16;
    let s16 = (1u64 << 24) + 16;
    vec![
        case(
            "layout_empty_body",
            "no chunk at all",
            4096,
            0,
            Err(("truncated", None)),
        ),
        case(
            "layout_tag_only",
            "one 16-byte chunk: the empty object",
            4096,
            16,
            Ok((1, 0)),
        ),
        case(
            "layout_short_tag",
            "15 bytes: shorter than a tag",
            4096,
            15,
            Err(("truncated", None)),
        ),
        case("layout_one_full", "one full chunk", 4096, s4, Ok((1, 4096))),
        case(
            "layout_full_then_tag",
            "a full chunk, then 16 bytes: an empty final chunk",
            4096,
            s4 + 16,
            Err(("last_chunk_empty", Some(1))),
        ),
        case(
            "layout_full_then_short_tag",
            "a full chunk, then 15 bytes",
            4096,
            s4 + 15,
            Err(("truncated", None)),
        ),
        case(
            "layout_full_then_one_byte",
            "a full chunk, then a 1-byte chunk",
            4096,
            s4 + 17,
            Ok((2, 4097)),
        ),
        case(
            "layout_max_chunks",
            "exactly 2^32 full chunks of 4 KiB (the maximum)",
            4096,
            max * s4,
            Ok((max, max * 4096)),
        ),
        case(
            "layout_max_chunks_short_final",
            "2^32 − 1 full chunks and a 1-byte final chunk",
            4096,
            (max - 1) * s4 + 17,
            Ok((max, (max - 1) * 4096 + 1)),
        ),
        case(
            "layout_too_many_chunks",
            "2^32 full chunks and one more byte-sized chunk: 2^32 + 1 chunks",
            4096,
            max * s4 + 17,
            Err(("too_many_chunks", None)),
        ),
        case(
            "layout_too_many_chunks_full",
            "2^32 + 1 full chunks",
            4096,
            (max + 1) * s4,
            Err(("too_many_chunks", None)),
        ),
        case(
            "layout_max_chunks_16mib",
            "2^32 full chunks of 16 MiB (64 PiB)",
            1 << 24,
            max * s16,
            Ok((max, max << 24)),
        ),
        case(
            "layout_too_many_chunks_16mib",
            "2^32 full chunks of 16 MiB and a 1-byte chunk",
            1 << 24,
            max * s16 + 17,
            Err(("too_many_chunks", None)),
        ),
    ]
}

/// Object-form metadata maps (§15.1–15.2): where they put the header, or the error.
fn object_cases(g: &Gen) -> Vec<ObjectCase> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let file = |name: &str| {
        let v = g.vectors.iter().find(|v| v.name == name).expect("vector");
        let f = &g.files.iter().find(|(p, _)| *p == v.file).expect("file").1;
        f.clone()
    };
    // aes_4096_empty's header is 206 bytes: its base64 ends in one '='.
    let h = {
        let f = file("aes_4096_empty");
        f[..header_len_of(&f)].to_vec()
    };
    let (hdr, _) = Header::parse(&h).expect("header");
    let b64 = STANDARD.encode(&h);
    assert!(b64.ends_with('=') && !b64.ends_with("=="));
    assert!(
        b64.contains('+') || b64.contains('/'),
        "needs a +/ character"
    );
    let c64 = STANDARD.encode(hdr.commitment);
    let companion = "data/file.bin.sealstream-header-0123456789abcdef";
    let m = |pairs: &[(&str, &str)]| map(pairs);
    // Set the lowest bit of the last data character: with one '=' its 2 low bits are unused
    // and must be zero in the canonical encoding.
    let trailing_bits = |s: &str| {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let i = s.trim_end_matches('=').len() - 1;
        let mut b = s.as_bytes().to_vec();
        let v = ALPHABET
            .iter()
            .position(|c| *c == b[i])
            .expect("base64 char");
        b[i] = ALPHABET[v | 1];
        let out = String::from_utf8(b).expect("ascii");
        assert!(
            STANDARD.decode(&out).is_err(),
            "trailing bits case decodes: {out}"
        );
        out
    };
    let mut wrapped76 = String::new();
    for (i, c) in b64.chars().enumerate() {
        if i > 0 && i % 76 == 0 {
            wrapped76.push_str("\r\n");
        }
        wrapped76.push(c);
    }
    let mut bad_magic = h.clone();
    bad_magic[7] = b'N';
    let mut trailing = h.clone();
    trailing.push(0);
    let short_c = STANDARD.encode(&hdr.commitment[..31]);
    let long_c = STANDARD.encode([&hdr.commitment[..], &[0]].concat());
    let c_unpadded = c64.trim_end_matches('=').to_string();
    let h_unpadded = b64.trim_end_matches('=').to_string();
    let too_long = "A".repeat(87_384 + 4);
    let long_key = "k".repeat(1025);
    let c_hex = hex(&hdr.commitment);
    let header_ok =
        |name: &str, description: &str, metadata: BTreeMap<String, String>| ObjectCase {
            name: name.into(),
            description: description.into(),
            metadata,
            header_of: Some("aes_4096_empty".into()),
            companion_key: None,
            companion_commitment: None,
            error: None,
            header_error: None,
        };
    let companion_ok = |name: &str, description: &str, key: &str| ObjectCase {
        name: name.into(),
        description: description.into(),
        metadata: m(&[
            ("sealstream", "1"),
            ("sealstream-companion", key),
            ("sealstream-commitment", &c64),
        ]),
        header_of: None,
        companion_key: Some(key.into()),
        companion_commitment: Some(c_hex.clone()),
        error: None,
        header_error: None,
    };
    let fail = |name: &str,
                description: &str,
                metadata: BTreeMap<String, String>,
                class: &str,
                detail: Option<&str>| ObjectCase {
        name: name.into(),
        description: description.into(),
        metadata,
        header_of: None,
        companion_key: None,
        companion_commitment: None,
        error: Some(class.into()),
        header_error: detail.map(str::to_string),
    };
    vec![
        header_ok(
            "object_inline",
            "inline form: the header in sealstream-header (base64, padded)",
            m(&[("sealstream", "1"), ("sealstream-header", &b64)]),
        ),
        header_ok(
            "object_inline_other_metadata",
            "other user metadata, and an unknown sealstream- name, are ignored by a reader",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &b64),
                ("owner", "ops"),
                ("sealstream-future", "x"),
            ]),
        ),
        companion_ok(
            "object_companion",
            "companion form: the companion's key and the commitment its header must carry",
            companion,
        ),
        companion_ok(
            "object_companion_name_not_checked",
            "a reader does not check the companion's name (the pinned commitment binds the header); only deletion requires the documented name",
            "elsewhere/unrelated-object",
        ),
        fail(
            "object_no_marker",
            "no sealstream entry: not a sealstream object, or its metadata was lost",
            m(&[("sealstream-header", &b64)]),
            "object_not_sealstream",
            None,
        ),
        fail(
            "object_no_metadata",
            "no user metadata at all",
            BTreeMap::new(),
            "object_not_sealstream",
            None,
        ),
        fail(
            "object_version_2",
            "sealstream = 2: an object-form version this reader does not know",
            m(&[("sealstream", "2"), ("sealstream-header", &b64)]),
            "object_unsupported_version",
            None,
        ),
        fail(
            "object_version_not_exact",
            "sealstream = \"1.0\": the version must be exactly \"1\"",
            m(&[("sealstream", "1.0"), ("sealstream-header", &b64)]),
            "object_unsupported_version",
            None,
        ),
        fail(
            "object_both_locations",
            "both sealstream-header and sealstream-companion",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &b64),
                ("sealstream-companion", companion),
                ("sealstream-commitment", &c64),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_no_location",
            "neither sealstream-header nor sealstream-companion",
            m(&[("sealstream", "1")]),
            "object_metadata",
            None,
        ),
        fail(
            "object_companion_no_commitment",
            "sealstream-companion without sealstream-commitment",
            m(&[("sealstream", "1"), ("sealstream-companion", companion)]),
            "object_metadata",
            None,
        ),
        fail(
            "object_companion_key_empty",
            "an empty companion key",
            m(&[
                ("sealstream", "1"),
                ("sealstream-companion", ""),
                ("sealstream-commitment", &c64),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_companion_key_too_long",
            "a companion key of 1025 bytes (S3 allows 1024)",
            m(&[
                ("sealstream", "1"),
                ("sealstream-companion", &long_key),
                ("sealstream-commitment", &c64),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_commitment_31_bytes",
            "a commitment that decodes to 31 bytes",
            m(&[
                ("sealstream", "1"),
                ("sealstream-companion", companion),
                ("sealstream-commitment", &short_c),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_commitment_33_bytes",
            "a commitment that decodes to 33 bytes",
            m(&[
                ("sealstream", "1"),
                ("sealstream-companion", companion),
                ("sealstream-commitment", &long_c),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_commitment_unpadded",
            "the commitment without its '=' padding",
            m(&[
                ("sealstream", "1"),
                ("sealstream-companion", companion),
                ("sealstream-commitment", &c_unpadded),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_commitment_trailing_bits",
            "the commitment with non-zero unused trailing bits (non-canonical)",
            m(&[
                ("sealstream", "1"),
                ("sealstream-companion", companion),
                ("sealstream-commitment", &trailing_bits(&c64)),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_unpadded",
            "the header's base64 without its '=' padding",
            m(&[("sealstream", "1"), ("sealstream-header", &h_unpadded)]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_trailing_bits",
            "the header's base64 with non-zero unused trailing bits (non-canonical)",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &trailing_bits(&b64)),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_url_safe_alphabet",
            "the header in the URL-safe alphabet (-_ instead of +/)",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &URL_SAFE.encode(&h)),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_line_breaks",
            "the header's base64 broken into 76-character lines (CRLF)",
            m(&[("sealstream", "1"), ("sealstream-header", &wrapped76)]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_leading_space",
            "a space before the header's base64",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &format!(" {b64}")),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_trailing_newline",
            "a line feed after the header's base64",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &format!("{b64}\n")),
            ]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_too_long",
            "87,388 base64 characters: more than any header (87,384), refused before decoding",
            m(&[("sealstream", "1"), ("sealstream-header", &too_long)]),
            "object_metadata",
            None,
        ),
        fail(
            "object_header_empty",
            "an empty sealstream-header: decodes to zero bytes, a truncated header",
            m(&[("sealstream", "1"), ("sealstream-header", "")]),
            "header",
            Some("Truncated"),
        ),
        fail(
            "object_header_bad_magic",
            "a header with magic SEALSTRN",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &STANDARD.encode(&bad_magic)),
            ]),
            "header",
            Some("BadMagic"),
        ),
        fail(
            "object_header_trailing_byte",
            "the header followed by one zero byte (no trailing bytes allowed)",
            m(&[
                ("sealstream", "1"),
                ("sealstream-header", &STANDARD.encode(&trailing)),
            ]),
            "header",
            None,
        ),
    ]
}

fn manifest_text(m: &Manifest) -> String {
    serde_json::to_string_pretty(m).expect("serialize manifest") + "\n"
}

/// Rewrites tests/vectors/ from the generator. Run on purpose only:
/// `SEALSTREAM_REGENERATE_VECTORS=1 cargo test --test it -- --ignored vectors::regenerate_vectors`
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
    for sub in ["valid", "invalid", "keys", "parts"] {
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
    let key = LocalKey::load(&private_key_copy(&v.key)).expect("load vector key");
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
        let key = LocalKey::load(&private_key_copy(&k.file)).expect("key file loads");
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
    // Ranges: exactly one of (offset, len, sha256) and error.
    for v in &m.vectors {
        for r in &v.ranges {
            let ok = r.offset.is_some() && r.len.is_some() && r.sha256.is_some();
            assert!(
                ok != r.error.is_some(),
                "{} {}: bytes xor error",
                v.name,
                r.range
            );
            if let Some(e) = &r.error {
                assert!(
                    e == "unsatisfiable" || ERROR_CLASSES.contains(&e.as_str()),
                    "{} {}: unknown class {e}",
                    v.name,
                    r.range
                );
            }
        }
    }
    for l in &m.layouts {
        assert!(names.insert(l.name.clone()), "duplicate name {}", l.name);
        let ok = l.chunk_count.is_some() && l.plaintext_len.is_some();
        assert!(ok != l.error.is_some(), "{}: counts xor error", l.name);
    }
    for c in &m.object_metadata {
        assert!(names.insert(c.name.clone()), "duplicate name {}", c.name);
        let results = [
            c.header_of.is_some(),
            c.companion_key.is_some() && c.companion_commitment.is_some(),
            c.error.is_some(),
        ];
        assert_eq!(
            results.iter().filter(|r| **r).count(),
            1,
            "{}: one result",
            c.name
        );
        if let Some(of) = &c.header_of {
            assert!(
                m.vectors.iter().any(|v| &v.name == of),
                "{}: unknown {of}",
                c.name
            );
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
        ..EngineOptions::default()
    };
    for v in &m.vectors {
        check_library(v, Backend::Ring, EngineOptions::default());
        check_library(v, Backend::RustCrypto, small);
    }
}

#[cfg(feature = "cli")]
#[test]
fn cli_decrypts_every_vector() {
    let m = load_manifest();
    for v in &m.vectors {
        let s = common::Scratch::new();
        let out = s.path("out.bin");
        let key = private_key_copy(&v.key);
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

/// Error class of a ranged read: the vector classes, or `unsatisfiable` for the usage error.
fn range_class(e: &Error) -> (&'static str, Option<u64>) {
    match e {
        Error::RangeNotSatisfiable { .. } => ("unsatisfiable", None),
        e => {
            let (c, i, _) = classify(e);
            (c, i)
        }
    }
}

/// Every range case of `v` through the library's range API (`range::decrypt_range`).
fn check_ranges_library(v: &Vector, backend: Backend, engine: EngineOptions<'_>) {
    if v.ranges.is_empty() {
        return;
    }
    let bytes = read(&v.file);
    let key = LocalKey::load(&private_key_copy(&v.key)).expect("load vector key");
    let providers: [&dyn KeyProvider; 1] = [&key];
    let (header, hl) = Header::parse(&bytes).expect("range vectors have a valid header");
    let cipher = envelope::unlock(&header, &providers, &context_of(&v.context), backend)
        .unwrap_or_else(|e| panic!("{}: unlock: {e}", v.name));
    let pt = plaintext(v.build.plaintext_len as usize);
    for rc in &v.ranges {
        let what = format!("{} --range {}", v.name, rc.range);
        let range = ByteRange::parse(&rc.range).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut out = Vec::new();
        let r = range::decrypt_range(
            std::io::Cursor::new(&bytes[..]),
            hl as u64,
            header.chunk_size,
            &cipher,
            range,
            &mut out,
            &engine,
        );
        match (&rc.error, r) {
            (None, Ok(_)) => {
                let (o, l) = (rc.offset.expect("offset"), rc.len.expect("len"));
                assert_eq!(out.len() as u64, l, "{what}: length");
                assert_eq!(Some(sha256_hex(&out)), rc.sha256, "{what}: sha256");
                assert!(out[..] == pt[o as usize..(o + l) as usize], "{what}: bytes");
            }
            (None, Err(e)) => panic!("{what}: {e}"),
            (Some(_), Ok(_)) => panic!("{what}: succeeded although an error is expected"),
            (Some(class), Err(e)) => {
                assert_eq!(
                    range_class(&e),
                    (class.as_str(), rc.chunk_index),
                    "{what}: {e}"
                );
                // Only authenticated plaintext, at its right place, may have been released.
                assert!(
                    out.is_empty() || pt.windows(out.len()).any(|w| w == &out[..]),
                    "{what}: released bytes are not plaintext"
                );
            }
        }
    }
}

#[test]
fn library_ranged_reads_match_vectors() {
    let m = load_manifest();
    let small = EngineOptions {
        threads: 2,
        batch_bytes: 1,
        progress: None,
        ..EngineOptions::default()
    };
    let mut n = 0;
    for v in &m.vectors {
        check_ranges_library(v, Backend::Ring, EngineOptions::default());
        check_ranges_library(v, Backend::RustCrypto, small);
        n += v.ranges.len();
    }
    assert!(n >= 40, "only {n} range cases");
}

#[cfg(feature = "cli")]
#[test]
fn cli_ranged_reads_match_vectors() {
    let m = load_manifest();
    for v in m.vectors.iter().filter(|v| !v.ranges.is_empty()) {
        let pt = plaintext(v.build.plaintext_len as usize);
        for rc in &v.ranges {
            let what = format!("{} --range {}", v.name, rc.range);
            let s = common::Scratch::new();
            let out = s.path("out.bin");
            let mut args: Vec<String> = vec![
                "decrypt".into(),
                "-k".into(),
                private_key_copy(&v.key).display().to_string(),
                "--range".into(),
                rc.range.clone(),
                "-o".into(),
                out.display().to_string(),
            ];
            for (k, val) in &v.context {
                args.push("-c".into());
                args.push(format!("{k}={val}"));
            }
            args.push(dir().join(&v.file).display().to_string());
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let o = s.run(&argv);
            let code = common::code(&o);
            match rc.error.as_deref() {
                None => {
                    assert_eq!(code, 0, "{what}: {}", common::stderr(&o));
                    let got = std::fs::read(&out).expect("output written");
                    let (off, len) = (rc.offset.expect("offset"), rc.len.expect("len"));
                    assert!(got[..] == pt[off as usize..(off + len) as usize], "{what}");
                }
                Some(class) => {
                    let want = if class == "unsatisfiable" { 2 } else { 4 };
                    assert_eq!(code, want, "{what}: {}", common::stderr(&o));
                    assert!(!out.exists(), "{what}: output file left behind");
                    assert!(s.files().is_empty(), "{what}: left {:?}", s.files());
                }
            }
        }
    }
}

#[test]
fn layouts_match_vectors() {
    let m = load_manifest();
    assert!(
        m.layouts
            .iter()
            .any(|l| l.error.as_deref() == Some("too_many_chunks"))
    );
    for l in &m.layouts {
        // header_len does not enter the layout; any value in bounds will do.
        let hl = 222u64;
        match (
            Layout::from_lengths(hl, l.chunk_size, hl + l.body_len),
            &l.error,
        ) {
            (Ok(got), None) => {
                assert_eq!(Some(got.chunk_count), l.chunk_count, "{}", l.name);
                assert_eq!(Some(got.plaintext_len), l.plaintext_len, "{}", l.name);
                assert_eq!(got.total_len(), hl + l.body_len, "{}", l.name);
            }
            (Ok(got), Some(e)) => panic!("{}: {got:?}, expected {e}", l.name),
            (Err(e), None) => panic!("{}: {e}", l.name),
            (Err(e), Some(class)) => {
                let got = match &e {
                    Error::TooManyChunks => ("too_many_chunks", None),
                    e => {
                        let (c, i, _) = classify(e);
                        (c, i)
                    }
                };
                assert_eq!(got, (class.as_str(), l.chunk_index), "{}: {e}", l.name);
            }
        }
    }
}

/// A seekable input of `len` bytes whose first bytes are `head` and the rest zeros, read
/// lazily; counts the bytes read past `head` (the body).
struct Virtual<'a> {
    head: &'a [u8],
    len: u64,
    pos: u64,
    body_read: u64,
}

impl std::io::Read for Virtual<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.len.saturating_sub(self.pos)) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            let at = self.pos + i as u64;
            *b = self.head.get(at as usize).copied().unwrap_or(0);
            if at >= self.head.len() as u64 {
                self.body_read += 1;
            }
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl std::io::Seek for Virtual<'_> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        self.pos = match to {
            std::io::SeekFrom::Start(p) => p,
            std::io::SeekFrom::End(d) => self.len.saturating_add_signed(d),
            std::io::SeekFrom::Current(d) => self.pos.saturating_add_signed(d),
        };
        Ok(self.pos)
    }
}

/// Too many chunks (FORMAT.md §6.4, §12.2) cannot be a file (2^32 chunks are 16 TiB or
/// more), so the limit check is tested precisely instead: the ranged reader rejects a body
/// of 2^32 + 1 chunks from its length alone, before reading any chunk, and accepts 2^32.
#[test]
fn too_many_chunks_ranged_reader_rejects_from_the_length() {
    let m = load_manifest();
    let v = m
        .vectors
        .iter()
        .find(|v| v.name == "aes_4096_5000_context")
        .expect("vector");
    let bytes = read(&v.file);
    let (header, hl) = Header::parse(&bytes).expect("header");
    let key = LocalKey::load(&private_key_copy(&v.key)).expect("key");
    let providers: [&dyn KeyProvider; 1] = [&key];
    let cipher = envelope::unlock(&header, &providers, &context_of(&v.context), Backend::Ring)
        .expect("unlock");
    let stride = 4096u64 + TAG_LEN as u64;
    let max = 1u64 << 32;
    for (body, too_many) in [
        (max * stride + 17, true),
        ((max + 1) * stride, true),
        (max * stride, false),
    ] {
        let mut input = Virtual {
            head: &bytes[..hl],
            len: hl as u64 + body,
            pos: 0,
            body_read: 0,
        };
        let mut out = Vec::new();
        let r = range::decrypt_range(
            &mut input,
            hl as u64,
            header.chunk_size,
            &cipher,
            ByteRange::parse("0-99").expect("range"),
            &mut out,
            &EngineOptions::default(),
        );
        if too_many {
            assert!(matches!(r, Err(Error::TooManyChunks)), "{body}: {r:?}");
            assert!(
                Error::TooManyChunks.is_authentication(),
                "an authentication-class error"
            );
            assert_eq!(
                input.body_read, 0,
                "a chunk was read before the limit check"
            );
        } else {
            // 2^32 chunks are allowed: the reader gets as far as opening chunk 0 (zeros).
            assert!(
                matches!(r, Err(Error::ChunkAuth { index: 0 })),
                "{body}: {r:?}"
            );
        }
        assert!(out.is_empty());
    }
}

/// The streaming decoder at the chunk-counter limit: chunk 2^32 − 1 is the last index a
/// decoder may open; a stream that goes on past it is `TooManyChunks`, after releasing the
/// authenticated chunks before it (FORMAT.md §12.2), and a sealer refuses index 2^32.
#[test]
fn too_many_chunks_streaming_decoder_stops_at_the_counter_limit() {
    let m = load_manifest();
    let v = m
        .vectors
        .iter()
        .find(|v| v.name == "aes_4096_5000_context")
        .expect("vector");
    let (header, cipher) = sealed_header(&v.build);
    let _ = header;
    let last = (1u64 << 32) - 1;
    let chunk = |index: u64, fin: bool, fill: u8| {
        let mut buf = vec![fill; 4096 + TAG_LEN];
        cipher.seal_chunk(index, fin, &mut buf, 4096).expect("seal");
        buf
    };
    let one_chunk_batches = EngineOptions {
        threads: 1,
        batch_bytes: 1,
        progress: None,
        ..EngineOptions::default()
    };
    let from = |first_index| engine::OpenParams {
        first_index,
        ..engine::OpenParams::default()
    };
    // The final chunk at index 2^32 − 1 opens.
    let mut out = Vec::new();
    let body = [chunk(last - 1, false, 1), chunk(last, true, 2)].concat();
    engine::open(
        &cipher,
        4096,
        &body[..],
        &mut out,
        from(last - 1),
        &one_chunk_batches,
    )
    .expect("chunks 2^32 - 2 and 2^32 - 1 open");
    assert_eq!(out.len(), 8192);
    // One more chunk after a non-final 2^32 − 1: refused, chunk 2^32 − 1 released before.
    let mut out = Vec::new();
    let body = [chunk(last, false, 3), vec![0u8; 100]].concat();
    let r = engine::open(
        &cipher,
        4096,
        &body[..],
        &mut out,
        from(last),
        &one_chunk_batches,
    );
    assert!(matches!(r, Err(Error::TooManyChunks)), "{r:?}");
    assert!(out.iter().all(|b| *b == 3) && out.len() <= 4096);
    let mut buf = vec![0u8; 16 + TAG_LEN];
    assert!(matches!(
        cipher.seal_chunk(last + 1, true, &mut buf, 16),
        Err(Error::TooManyChunks)
    ));
    assert!(matches!(
        cipher.open_chunk(last + 1, true, &mut buf),
        Err(Error::TooManyChunks)
    ));
}

/// The object form's metadata maps through `s3::object::locate` and `parse_header`.
#[cfg(feature = "s3")]
#[test]
fn object_metadata_cases_match_vectors() {
    let m = load_manifest();
    assert!(m.object_metadata.len() >= 20);
    for c in &m.object_metadata {
        let got: Result<HeaderLocation, (String, Option<String>)> =
            match object::locate(&c.metadata) {
                Err(msg) => {
                    let class = if msg.contains("metadata was lost") {
                        "object_not_sealstream"
                    } else if msg.contains("object-form version") {
                        "object_unsupported_version"
                    } else {
                        "object_metadata"
                    };
                    Err((class.into(), None))
                }
                Ok(HeaderLocation::Inline(bytes)) => match object::parse_header(&bytes, None) {
                    Ok(_) => Ok(HeaderLocation::Inline(bytes)),
                    Err(_) => {
                        let detail = Header::parse(&bytes).err().map(|e| {
                            let d = format!("{e:?}");
                            d.split(|c: char| !c.is_ascii_alphanumeric())
                                .next()
                                .unwrap_or_default()
                                .to_string()
                        });
                        Err(("header".into(), detail))
                    }
                },
                Ok(loc) => Ok(loc),
            };
        match (got, &c.error) {
            (Ok(HeaderLocation::Inline(bytes)), None) => {
                let of = c.header_of.as_deref().expect("header_of");
                let v = m.vectors.iter().find(|v| v.name == of).expect("vector");
                let f = read(&v.file);
                assert!(
                    bytes[..] == f[..header_len_of(&f)],
                    "{}: header bytes",
                    c.name
                );
            }
            (Ok(HeaderLocation::Companion { key, commitment }), None) => {
                assert_eq!(Some(key), c.companion_key, "{}", c.name);
                assert_eq!(Some(hex(&commitment)), c.companion_commitment, "{}", c.name);
            }
            (Ok(loc), Some(e)) => panic!("{}: {loc:?}, expected {e}", c.name),
            (Ok(other), None) => panic!("{}: locate found {other:?} in metadata", c.name),
            (Err(e), None) => panic!("{}: {e:?}", c.name),
            (Err((class, detail)), Some(want)) => {
                assert_eq!(&class, want, "{}", c.name);
                assert_eq!(detail, c.header_error, "{}", c.name);
            }
        }
    }
}

/// tests/vectors/README.md names every vector, layout and metadata case (so its tables
/// cannot silently fall behind the manifest).
#[test]
fn readme_names_every_vector() {
    let readme = std::fs::read_to_string(dir().join("README.md")).expect("README");
    let m = load_manifest();
    let names = m
        .vectors
        .iter()
        .map(|v| &v.name)
        .chain(m.layouts.iter().map(|l| &l.name))
        .chain(m.object_metadata.iter().map(|c| &c.name))
        .chain(m.part_wise.iter().map(|c| &c.name));
    for n in names {
        assert!(
            readme.contains(&format!("`{n}`")),
            "README.md does not name `{n}`"
        );
    }
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
    // No stray files: everything under valid/, invalid/, keys/, parts/ comes from the
    // generator.
    let expected: std::collections::BTreeSet<PathBuf> =
        g.files.iter().map(|(p, _)| dir().join(p)).collect();
    for sub in ["valid", "invalid", "keys", "parts"] {
        for p in walk(&dir().join(sub)) {
            assert!(expected.contains(&p), "stray file {}", p.display());
        }
    }
}

/// FORMAT.md §8.1 "Two defects": with a bad chunk 0 *and* a truncated end, which class is
/// reported is not fixed by the format; this pins down what the reference does, so the
/// spec's description stays true (change both together).
#[test]
fn two_body_defects_depend_on_read_ahead() {
    let m = load_manifest();
    let v = m
        .vectors
        .iter()
        .find(|v| v.name == "stream_truncated_in_tag")
        .expect("vector");
    let mut bytes = read(&v.file);
    let hl = header_len_of(&bytes);
    bytes[hl + 5] ^= 0x01; // chunk 0 no longer authenticates
    let key = LocalKey::load(&private_key_copy(&v.key)).expect("key");
    let providers: [&dyn KeyProvider; 1] = [&key];
    let run = |engine: EngineOptions<'static>| {
        let params = DecryptParams {
            expected_context: Context::new(),
            backend: Backend::Ring,
            engine,
        };
        let mut out = Vec::new();
        let r = envelope::decrypt(&bytes[..], &mut out, &providers, &params);
        assert!(out.is_empty(), "plaintext of a bad chunk released");
        r.expect_err("two defects")
    };
    // One batch holds both chunks: the end is checked before chunk 0 is opened.
    let e = run(EngineOptions::default());
    assert!(matches!(e, Error::Truncated { .. }), "{e:?}");
    // One chunk per batch: chunk 0 is opened (and fails) before the end is reached.
    let e = run(EngineOptions {
        threads: 1,
        batch_bytes: 1,
        progress: None,
        ..EngineOptions::default()
    });
    assert!(matches!(e, Error::ChunkAuth { index: 0 }), "{e:?}");
    // The ranged reader knows the length and checks the layout first.
    let (header, _) = Header::parse(&bytes).expect("header");
    let cipher =
        envelope::unlock(&header, &providers, &Context::new(), Backend::Ring).expect("unlock");
    let mut out = Vec::new();
    let r = range::decrypt_range(
        std::io::Cursor::new(&bytes[..]),
        hl as u64,
        header.chunk_size,
        &cipher,
        ByteRange::parse("0-99").expect("range"),
        &mut out,
        &EngineOptions::default(),
    );
    assert!(matches!(r, Err(Error::Truncated { .. })), "{r:?}");
    assert!(out.is_empty());
}

// ---------------------------------------------------------------------------------------
// Part-wise objects (FORMAT.md §17, object-form version 2)
// ---------------------------------------------------------------------------------------

/// A part-wise object as a reader meets it: its header (the bytes `sealstream-header`
/// carries), the manifest object and the object's body, with what reading it must give.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartWiseCase {
    name: String,
    kind: String,
    description: String,
    /// The header, relative to tests/vectors/.
    header: String,
    /// The manifest object's content (§17.3).
    manifest: String,
    /// The object's body (§17.2): the parts' ciphertexts back to back.
    body: String,
    key: String,
    /// Context the decryptor requires.
    context: BTreeMap<String, String>,
    /// Inputs of the header (as for file vectors) and the parts as written: for invalid
    /// cases `build.modification` says what was changed afterwards.
    build: Build,
    parts: Vec<PartRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext_len: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    plaintext_sha256: Option<String>,
    /// `part_manifest`, or a class of the file vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// For `part_manifest`: the reference decoder's `ManifestError` variant (informative).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    manifest_error: Option<String>,
    /// For `chunk_auth`: the part number whose chunk failed, and the chunk index in that part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    part_number: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunk_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ranges: Vec<RangeCase>,
}

/// One part of a part-wise object as its writer sealed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartRecord {
    number: u32,
    /// The part salt `s` of §17.1 (hex).
    salt: String,
    plaintext_len: u64,
}

/// The error classes a part-wise case may name.
const PART_ERROR_CLASSES: [&str; 4] = [
    "part_manifest",
    "chunk_auth",
    "no_matching_key",
    "context_mismatch",
];

/// A part-wise object built from fixed inputs: the header of `spec`, and parts sealed with
/// the given salts over consecutive pieces of the vector plaintext.
struct PartObject {
    build: Build,
    header: Vec<u8>,
    records: Vec<PartRecord>,
    /// Each part's ciphertext, in `records` order.
    parts: Vec<Vec<u8>>,
    plaintext: Vec<u8>,
    manifest_key: [u8; 32],
}

fn part_object(spec: &Spec, sizes: &[(u32, usize, u8)]) -> PartObject {
    use sealstream::envelope::Sealing;
    use sealstream::parts::PartEntry;
    let build = spec.build_record(None);
    let (header, _) = sealed_header(&build);
    let dek = DataKey::from_bytes(unhex(&build.dek));
    let sealing = Sealing::resume(header.clone(), &dek, Backend::Ring).expect("resume");
    let total: usize = sizes.iter().map(|s| s.1).sum();
    let plaintext = plaintext(total);
    let (mut records, mut parts, mut at) = (Vec::new(), Vec::new(), 0);
    for &(number, len, salt_start) in sizes {
        let salt = seq::<16>(salt_start);
        let p = sealing.seal_part_with_salt(number, salt);
        let mut ct = Vec::new();
        envelope::seal_part_body(
            &p,
            spec.chunk_size,
            &plaintext[at..at + len],
            &mut ct,
            &EngineOptions::default(),
        )
        .expect("seal part");
        at += len;
        records.push(PartRecord {
            number,
            salt: hex(&salt),
            plaintext_len: len as u64,
        });
        parts.push(ct);
    }
    // manifest_key = HKDF-Expand(HKDF-Extract(salt, DEK), MANIFEST_LABEL || H), from §17.1
    // directly (not through the library), so that the generator can also MAC malformed
    // manifests.
    let mut manifest_key = [0u8; 32];
    let info = [&b"sealstream v1 part manifest key"[..], &header.digest()].concat();
    hkdf::Hkdf::<Sha256>::new(Some(&unhex::<32>(&build.salt)), dek.expose())
        .expand(&info, &mut manifest_key)
        .expect("32-byte expand");
    let o = PartObject {
        header: header.to_bytes().expect("header"),
        build,
        records,
        parts,
        plaintext,
        manifest_key,
    };
    // The manifest written from the recipe below must be the library's, byte for byte.
    let entries = o
        .records
        .iter()
        .map(|r| PartEntry {
            number: r.number,
            salt: unhex(&r.salt),
            plaintext_len: r.plaintext_len,
        })
        .collect();
    assert_eq!(
        sealing.part_manifest(entries).expect("manifest"),
        o.manifest(&o.records)
    );
    o
}

impl PartObject {
    /// §17.3 from its table: magic, version 1, reserved, count, entries, MAC.
    fn manifest(&self, records: &[PartRecord]) -> Vec<u8> {
        let mut m = b"SEALPRTS".to_vec();
        m.extend_from_slice(&[1, 0, 0, 0]);
        m.extend_from_slice(&(records.len() as u32).to_be_bytes());
        for r in records {
            m.extend_from_slice(&r.number.to_be_bytes());
            m.extend_from_slice(&unhex::<16>(&r.salt));
            m.extend_from_slice(&r.plaintext_len.to_be_bytes());
        }
        self.mac(m)
    }

    /// Appends HMAC-SHA-256(manifest_key, bytes).
    fn mac(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        use hkdf::hmac::{Hmac, KeyInit, Mac};
        let mut h = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.manifest_key).expect("key");
        h.update(&bytes);
        bytes.extend_from_slice(&h.finalize().into_bytes());
        bytes
    }

    fn body(&self) -> Vec<u8> {
        self.parts.concat()
    }
}

/// What a part-wise case expects: valid, or (class, manifest error, part number, chunk).
enum PartExpect<'a> {
    Valid,
    Invalid(&'a str, Option<&'a str>, Option<(u32, u64)>),
}

struct PartGen {
    cases: Vec<PartWiseCase>,
    files: Vec<(String, Vec<u8>)>,
}

impl PartGen {
    fn put(&mut self, path: String, bytes: Vec<u8>) -> String {
        match self.files.iter().find(|(p, _)| *p == path) {
            Some((_, existing)) => assert_eq!(existing, &bytes, "{path} written twice"),
            None => self.files.push((path.clone(), bytes)),
        }
        path
    }

    /// Records a case; `object` names the files of an unmodified object (shared by the
    /// cases that do not change them), `manifest`/`body` replace them when given.
    #[allow(clippy::too_many_arguments)]
    fn case(
        &mut self,
        name: &str,
        description: &str,
        (object, o): (&str, &PartObject),
        manifest: Option<Vec<u8>>,
        body: Option<Vec<u8>>,
        key: &str,
        require: &[(&str, &str)],
        modification: Option<&str>,
        expect: PartExpect<'_>,
    ) {
        let header = self.put(format!("parts/{object}.header"), o.header.clone());
        let manifest = match manifest {
            Some(m) => self.put(format!("parts/{name}.manifest"), m),
            None => self.put(format!("parts/{object}.manifest"), o.manifest(&o.records)),
        };
        let body = match body {
            Some(b) => self.put(format!("parts/{name}.body"), b),
            None => self.put(format!("parts/{object}.body"), o.body()),
        };
        let mut build = o.build.clone();
        build.modification = modification.map(str::to_string);
        let (mut case, pt) = (
            PartWiseCase {
                name: name.into(),
                kind: "valid".into(),
                description: description.into(),
                header,
                manifest,
                body,
                key: key_file(key),
                context: map(require),
                build,
                parts: o.records.clone(),
                plaintext_len: None,
                plaintext_sha256: None,
                error: None,
                manifest_error: None,
                part_number: None,
                chunk_index: None,
                ranges: Vec::new(),
            },
            &o.plaintext,
        );
        match expect {
            PartExpect::Valid => {
                case.plaintext_len = Some(pt.len() as u64);
                case.plaintext_sha256 = Some(sha256_hex(pt));
                // Ranges inside a part, across parts, over the empty part, and the ends.
                let p = pt.len() as u64;
                for r in [
                    "0-0",
                    "0-",
                    "-1",
                    "4000-4200",
                    "4100-8300",
                    "-5000",
                    "8204-8204",
                ] {
                    let rc = match resolve_range(r, p) {
                        Some((s, e)) => RangeCase {
                            range: r.into(),
                            offset: Some(s),
                            len: Some(e - s + 1),
                            sha256: Some(sha256_hex(&pt[s as usize..=e as usize])),
                            error: None,
                            chunk_index: None,
                        },
                        None => RangeCase {
                            range: r.into(),
                            offset: None,
                            len: None,
                            sha256: None,
                            error: Some("unsatisfiable".into()),
                            chunk_index: None,
                        },
                    };
                    case.ranges.push(rc);
                }
            }
            PartExpect::Invalid(class, detail, chunk) => {
                case.kind = "invalid".into();
                case.error = Some(class.into());
                case.manifest_error = detail.map(str::to_string);
                case.part_number = chunk.map(|c| c.0);
                case.chunk_index = chunk.map(|c| c.1);
            }
        }
        self.cases.push(case);
    }
}

/// Part-wise cases: three valid objects (§17.6's worked example among them) and every
/// whole-part and manifest tamper of §17.5, each on a small object.
fn part_wise_cases() -> (Vec<PartWiseCase>, Vec<(String, Vec<u8>)>) {
    use PartExpect::{Invalid, Valid};
    const CS: u32 = 4096;
    let cs = CS as usize;
    let atlas = [("project", "atlas")];
    // Parts 1 and 2 have the same length (two chunks, the second short), part 5 is empty
    // (one tag), part 6 holds one byte.
    let sizes = [
        (1u32, cs + 10, 0x80u8),
        (2, cs + 10, 0x90),
        (5, 0, 0xa0),
        (6, 1, 0xb0),
    ];
    let aes = part_object(&Spec::new(Suite::Aes256Gcm, CS, 0).ctx(&atlas), &sizes);
    let chacha = part_object(&Spec::new(Suite::ChaCha20Poly1305, CS, 0), &sizes);
    // The same parts under another header (another context, so another H).
    let other = part_object(
        &Spec::new(Suite::Aes256Gcm, CS, 0).ctx(&[("project", "other")]),
        &sizes,
    );
    // §17.6: the §14 AES-256-GCM header; part 2 = 5000 bytes, part 3 empty.
    let worked = part_object(
        &Spec::new(Suite::Aes256Gcm, CS, 0).ctx(&atlas),
        &[(2, 5000, 0x80), (3, 0, 0x90)],
    );
    // Part 2 uploaded earlier under another salt (same plaintext).
    let earlier = part_object(
        &Spec::new(Suite::Aes256Gcm, CS, 0).ctx(&atlas),
        &[
            (1, cs + 10, 0x80),
            (2, cs + 10, 0xf0),
            (5, 0, 0xa0),
            (6, 1, 0xb0),
        ],
    );
    let mut g = PartGen {
        cases: Vec::new(),
        files: Vec::new(),
    };
    let a = ("aes", &aes);
    g.case(
        "parts_worked_example",
        "docs/FORMAT.md §17.6: parts 2 (5000 bytes) and 3 (empty) under the §14 header",
        ("worked_example", &worked),
        None,
        None,
        "a",
        &atlas,
        None,
        Valid,
    );
    g.case(
        "parts_aes_four",
        "AES-256-GCM, parts 1, 2 (two chunks each), 5 (empty) and 6 (one byte)",
        a,
        None,
        None,
        "a",
        &atlas,
        None,
        Valid,
    );
    g.case(
        "parts_chacha_four",
        "the same parts under ChaCha20-Poly1305, no context",
        ("chacha", &chacha),
        None,
        None,
        "a",
        &[],
        None,
        Valid,
    );

    // ---- whole-part tampers: the body changes, the manifest is the object's ----
    let at = |i: usize| -> usize { aes.parts[..i].iter().map(Vec::len).sum() };
    let mut flipped = aes.body();
    flipped[at(1) + cs + 16 + 3] ^= 0x01; // part 2, chunk 1
    let drop = |i: usize| -> Vec<u8> {
        let mut p = aes.parts.clone();
        p.remove(i);
        p.concat()
    };
    let mut truncated = aes.body();
    truncated.pop();
    let mut appended = aes.body();
    appended.push(0);
    let swapped = [&aes.parts[1], &aes.parts[0], &aes.parts[2], &aes.parts[3]].map(|p| p.clone());
    let duplicated =
        [&aes.parts[0], &aes.parts[0], &aes.parts[2], &aes.parts[3]].map(|p| p.clone());
    let reuploaded = [
        &aes.parts[0],
        &earlier.parts[1],
        &aes.parts[2],
        &aes.parts[3],
    ]
    .map(|p| p.clone());
    let foreign = [&aes.parts[0], &other.parts[1], &aes.parts[2], &aes.parts[3]].map(|p| p.clone());
    let body_len = Invalid("part_manifest", Some("BodyLengthMismatch"), None);
    let body_cases: Vec<(&str, &str, Vec<u8>, PartExpect<'_>)> = vec![
        (
            "parts_byte_flipped",
            "one byte of part 2's second chunk flipped",
            flipped,
            Invalid("chunk_auth", None, Some((2, 1))),
        ),
        (
            "parts_part_dropped",
            "part 2 removed from the body",
            drop(1),
            Invalid("part_manifest", Some("BodyLengthMismatch"), None),
        ),
        (
            "parts_empty_part_dropped",
            "the empty part 5 (its one tag) removed from the body",
            drop(2),
            Invalid("part_manifest", Some("BodyLengthMismatch"), None),
        ),
        (
            "parts_body_truncated",
            "the body's last byte removed",
            truncated,
            Invalid("part_manifest", Some("BodyLengthMismatch"), None),
        ),
        (
            "parts_body_appended",
            "one zero byte appended to the body",
            appended,
            body_len,
        ),
        (
            "parts_reordered",
            "parts 1 and 2 (same length) swapped in the body",
            swapped.concat(),
            Invalid("chunk_auth", None, Some((1, 0))),
        ),
        (
            "parts_duplicated",
            "part 1's ciphertext in place of part 2 (same length)",
            duplicated.concat(),
            Invalid("chunk_auth", None, Some((2, 0))),
        ),
        (
            "parts_earlier_upload",
            "an earlier upload of part 2 (another part salt, same plaintext) in place of the completed one",
            reuploaded.concat(),
            Invalid("chunk_auth", None, Some((2, 0))),
        ),
        (
            "parts_foreign_part",
            "part 2 of another object (same data key and parts, another header) in its place",
            foreign.concat(),
            Invalid("chunk_auth", None, Some((2, 0))),
        ),
    ];
    for (name, description, body, expect) in body_cases {
        g.case(
            name,
            description,
            a,
            None,
            Some(body),
            "a",
            &atlas,
            Some(description),
            expect,
        );
    }

    // ---- manifest tampers: the body is the object's ----
    let good = aes.manifest(&aes.records);
    let unmac = |m: &[u8]| m[..m.len() - 32].to_vec();
    let remac = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut m = unmac(&good);
        edit(&mut m);
        aes.mac(m)
    };
    let mut flipped = good.clone();
    flipped[16 + 4] ^= 0x01; // part 1's salt
    let mut truncated = good.clone();
    truncated.pop();
    let mut recs = aes.records.clone();
    recs.swap(0, 1);
    let not_increasing = aes.manifest(&recs);
    let mut recs = aes.records.clone();
    recs[0].number = 0;
    let number_zero = aes.manifest(&recs);
    let mut recs = aes.records.clone();
    recs[3].number = 10_001;
    let number_high = aes.manifest(&recs);
    let mut recs = aes.records.clone();
    recs[3].plaintext_len = 5 << 30;
    let too_large = aes.manifest(&recs);
    let manifest_cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
        (
            "parts_manifest_flipped",
            "one bit of part 1's salt in the manifest flipped (MAC kept)",
            flipped,
            "MacMismatch",
        ),
        (
            "parts_manifest_foreign",
            "the manifest of another object with the same parts (another header)",
            other.manifest(&other.records),
            "MacMismatch",
        ),
        (
            "parts_manifest_truncated",
            "the manifest's last byte removed",
            truncated,
            "BadLength",
        ),
        (
            "parts_manifest_bad_magic",
            "magic SEALPRTX, MAC recomputed with the object's manifest key",
            remac(&|m| m[7] = b'X'),
            "BadMagic",
        ),
        (
            "parts_manifest_version_2",
            "version 2, MAC recomputed",
            remac(&|m| m[8] = 2),
            "UnsupportedVersion",
        ),
        (
            "parts_manifest_reserved",
            "a reserved byte set, MAC recomputed",
            remac(&|m| m[10] = 1),
            "ReservedNonZero",
        ),
        (
            "parts_manifest_count",
            "count 5 with four entries, MAC recomputed",
            remac(&|m| m[15] = 5),
            "CountMismatch",
        ),
        (
            "parts_manifest_no_parts",
            "count 0 and no entries (48 bytes), MAC recomputed",
            remac(&|m| {
                m.truncate(16);
                m[15] = 0;
            }),
            "NoParts",
        ),
        (
            "parts_manifest_not_increasing",
            "entries of parts 2 and 1 in that order, MAC recomputed",
            not_increasing,
            "PartsNotIncreasing",
        ),
        (
            "parts_manifest_number_zero",
            "part number 0, MAC recomputed",
            number_zero,
            "PartNumberOutOfRange",
        ),
        (
            "parts_manifest_number_10001",
            "part number 10001, MAC recomputed",
            number_high,
            "PartNumberOutOfRange",
        ),
        (
            "parts_manifest_part_too_large",
            "part 6 recorded as 5 GiB of plaintext (its ciphertext would pass S3's part limit), MAC recomputed",
            too_large,
            "PartTooLarge",
        ),
    ];
    for (name, description, manifest, variant) in manifest_cases {
        g.case(
            name,
            description,
            a,
            Some(manifest),
            None,
            "a",
            &atlas,
            Some(description),
            Invalid("part_manifest", Some(variant), None),
        );
    }

    // ---- keys and context: nothing of the manifest or body is read ----
    g.case(
        "parts_wrong_key",
        "offered key b, the object is wrapped for key a only",
        a,
        None,
        None,
        "b",
        &atlas,
        None,
        Invalid("no_matching_key", None, None),
    );
    g.case(
        "parts_wrong_context",
        "required context project=apollo, the object has project=atlas",
        a,
        None,
        None,
        "a",
        &[("project", "apollo")],
        None,
        Invalid("context_mismatch", None, None),
    );
    (g.cases, g.files)
}

/// Reads a part-wise case through the library: unlock the header, verify the manifest
/// against the body length, open the parts (all, or the covering chunks of `range`).
fn read_part_wise(
    c: &PartWiseCase,
    range: Option<ByteRange>,
    out: &mut Vec<u8>,
) -> sealstream::Result<()> {
    use sealstream::envelope::Opening;
    let key = LocalKey::load(&private_key_copy(&c.key)).expect("load vector key");
    let (header, _) = Header::parse(&read(&c.header))?;
    let opening = Opening::unlock(
        header,
        &[&key as &dyn KeyProvider],
        &context_of(&c.context),
        Backend::Ring,
    )?;
    let body = read(&c.body);
    let layout = opening.part_layout(&read(&c.manifest), body.len() as u64)?;
    envelope::open_part_wise(
        &opening,
        &layout,
        std::io::Cursor::new(body),
        range,
        out,
        &EngineOptions::default(),
    )?;
    Ok(())
}

/// The class of a part-wise read's error and, for `part_manifest`, the `ManifestError`
/// variant.
fn classify_part_wise(e: &Error) -> (String, Option<String>) {
    match e {
        Error::PartManifest(m) => (
            "part_manifest".into(),
            Some(
                format!("{m:?}")
                    .split(|ch: char| !ch.is_ascii_alphanumeric())
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            ),
        ),
        other => (classify(other).0.into(), None),
    }
}

#[test]
fn part_wise_vectors_match() {
    let m = load_manifest();
    assert!(m.part_wise.len() >= 20, "part-wise cases missing");
    // §17.6's worked example: the §14 header and the manifest printed there.
    let w = m
        .part_wise
        .iter()
        .find(|c| c.name == "parts_worked_example")
        .expect("worked example");
    let (h, _) = Header::parse(&read(&w.header)).expect("header");
    assert_eq!(
        hex(&h.digest()),
        "43ea0e50407278c49d478981e8520a9a9fc76f7ada2fe1aeebde6f55024ff785"
    );
    assert_eq!(
        hex(&read(&w.manifest)),
        "5345414c50525453010000000000000200000002808182838485868788898a8b8c8d8e8f0000000000001388\
         00000003909192939495969798999a9b9c9d9e9f0000000000000000\
         f8b2eab65d56ca3e1aa45805f730df485ffa11d7b07b629e3a72f9c6459cbff6"
    );
    for c in &m.part_wise {
        let mut out = Vec::new();
        let r = read_part_wise(c, None, &mut out);
        match c.kind.as_str() {
            "valid" => {
                r.unwrap_or_else(|e| panic!("{}: {e}", c.name));
                assert_eq!(Some(out.len() as u64), c.plaintext_len, "{}", c.name);
                assert_eq!(Some(sha256_hex(&out)), c.plaintext_sha256, "{}", c.name);
                for rc in &c.ranges {
                    let br = ByteRange::parse(&rc.range).expect("range");
                    let mut got = Vec::new();
                    match read_part_wise(c, Some(br), &mut got) {
                        Ok(()) => {
                            assert_eq!(Some(got.len() as u64), rc.len, "{} {}", c.name, rc.range);
                            assert_eq!(
                                Some(sha256_hex(&got)),
                                rc.sha256,
                                "{} {}",
                                c.name,
                                rc.range
                            );
                            let off = rc.offset.expect("offset") as usize;
                            assert_eq!(
                                got[..],
                                out[off..off + got.len()],
                                "{} {}",
                                c.name,
                                rc.range
                            );
                        }
                        Err(e) => {
                            assert_eq!(
                                Some(range_class(&e).0),
                                rc.error.as_deref(),
                                "{} {}: {e}",
                                c.name,
                                rc.range
                            );
                            assert!(got.is_empty(), "{} {}: released bytes", c.name, rc.range);
                        }
                    }
                }
            }
            "invalid" => {
                let e = match r {
                    Ok(()) => panic!("{}: decrypted although invalid", c.name),
                    Err(e) => e,
                };
                let (class, detail) = classify_part_wise(&e);
                assert_eq!(Some(class.as_str()), c.error.as_deref(), "{}: {e}", c.name);
                assert!(PART_ERROR_CLASSES.contains(&class.as_str()), "{}", c.name);
                assert_eq!(detail, c.manifest_error, "{}: {e}", c.name);
                if let (Error::ChunkAuth { index }, Some(want)) = (&e, c.chunk_index) {
                    assert_eq!(*index, want, "{}: chunk index ({e})", c.name);
                }
                // Released bytes, if any, are plaintext of the parts before the failing
                // one (whole, authenticated chunks), never of the failing chunk.
                let pt = plaintext(c.parts.iter().map(|p| p.plaintext_len).sum::<u64>() as usize);
                assert!(
                    pt.starts_with(&out),
                    "{}: released bytes are not plaintext",
                    c.name
                );
                if let Some(n) = c.part_number {
                    let before: u64 = c
                        .parts
                        .iter()
                        .take_while(|p| p.number != n)
                        .map(|p| p.plaintext_len)
                        .sum();
                    let chunk = c.build.chunk_size as u64;
                    let limit = before + c.chunk_index.unwrap_or(0) * chunk;
                    assert!(
                        out.len() as u64 <= limit,
                        "{}: {} bytes released, the failing chunk starts at {limit}",
                        c.name,
                        out.len()
                    );
                }
            }
            k => panic!("{}: unknown kind {k}", c.name),
        }
    }
}
