//! The content metadata of the Amazon S3 Encryption Client (S3EC), parsed without I/O.
//!
//! Plain and synchronous on purpose: everything an attacker controls (object metadata, the
//! instruction file) goes through [`parse`], which returns a typed [`FormatError`] for
//! anything it does not accept, so it can be unit tested and fuzzed on its own. The format
//! facts (names, lengths, values) and where they come from are in docs/MIGRATION.md.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Suffix of the instruction file next to an object (`KEY.instruction`), the S3EC default.
pub const INSTRUCTION_SUFFIX: &str = ".instruction";

/// Largest instruction file read (the S3EC's are a few hundred bytes; a KMS ciphertext is
/// at most 6144 bytes).
pub const MAX_INSTRUCTION_FILE: u64 = 64 * 1024;

/// Largest KMS ciphertext blob (KMS's own limit on `CiphertextBlob`).
pub const MAX_ENCRYPTED_DATA_KEY: usize = 6144;

/// Largest ciphertext (body plus tag) one AES-GCM may cover: 2^32 - 2 blocks of plaintext.
pub const MAX_GCM_CIPHERTEXT: u64 = ((1u64 << 32) - 2) * 16 + TAG_LEN as u64;

/// Length of the GCM tag at the end of the body.
pub const TAG_LEN: usize = 16;
/// Length of the V2 IV (`x-amz-iv`).
pub const IV_LEN: usize = 12;
/// Length of the V3 key commitment (`x-amz-d`) and message id (`x-amz-i`).
pub const COMMIT_LEN: usize = 28;

/// The reserved KMS encryption-context key that binds the content cipher to the data key.
pub const CONTEXT_CEK_ALG: &str = "aws:x-amz-cek-alg";
/// The reserved key of the legacy `kms` wrapping (the KMS key id).
pub const CONTEXT_KMS_CMK_ID: &str = "kms_cmk_id";

// V1/V2 names.
const KEY_V1: &str = "x-amz-key";
const KEY_V2: &str = "x-amz-key-v2";
const WRAP_ALG: &str = "x-amz-wrap-alg";
const MATDESC: &str = "x-amz-matdesc";
const IV: &str = "x-amz-iv";
const CEK_ALG: &str = "x-amz-cek-alg";
const TAG_LEN_NAME: &str = "x-amz-tag-len";
const INSTR_MARKER: &str = "x-amz-crypto-instr-file";
// V3 names (compressed).
const V3_CIPHER: &str = "x-amz-c";
const V3_KEY: &str = "x-amz-3";
const V3_MATDESC: &str = "x-amz-m";
const V3_CONTEXT: &str = "x-amz-t";
const V3_WRAP: &str = "x-amz-w";
const V3_COMMITMENT: &str = "x-amz-d";
const V3_MESSAGE_ID: &str = "x-amz-i";

/// Every metadata name the S3EC reads or writes (a migrated object drops these).
pub const S3EC_KEYS: [&str; 15] = [
    KEY_V1,
    KEY_V2,
    WRAP_ALG,
    MATDESC,
    IV,
    CEK_ALG,
    TAG_LEN_NAME,
    INSTR_MARKER,
    V3_CIPHER,
    V3_KEY,
    V3_MATDESC,
    V3_CONTEXT,
    V3_WRAP,
    V3_COMMITMENT,
    V3_MESSAGE_ID,
];

/// The V3 names that only the object's own metadata may carry, never the instruction file.
const V3_OBJECT_ONLY: [&str; 3] = [V3_CIPHER, V3_COMMITMENT, V3_MESSAGE_ID];

/// Is `name` (user metadata, lowercase, without `x-amz-meta-`) one of the S3EC's?
pub fn is_s3ec_key(name: &str) -> bool {
    S3EC_KEYS.contains(&name)
}

/// Which content-metadata format the object uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// V2: `x-amz-key-v2`, `x-amz-cek-alg` `AES/GCM/NoPadding`, random 12-byte IV.
    V2,
    /// V3: compressed names, the key-committing suite (`x-amz-c` = `115`).
    V3,
}

impl Version {
    /// "V2" or "V3".
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "V2",
            Version::V3 => "V3",
        }
    }
}

/// How the data key is wrapped: the KMS modes sealstream can unwrap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wrapping {
    /// `kms+context` (V3: `12`): KMS with the stored encryption context, which carries
    /// `aws:x-amz-cek-alg` (the content cipher) and the caller's pairs.
    KmsContext,
    /// `kms` (legacy KmsV1): KMS with the material description (`{"kms_cmk_id": …}`) as
    /// context; the content cipher is not bound to the data key.
    Kms,
}

impl Wrapping {
    /// The metadata value (`kms+context` or `kms`).
    pub fn name(self) -> &'static str {
        match self {
            Wrapping::KmsContext => "kms+context",
            Wrapping::Kms => "kms",
        }
    }
}

/// What sealstream refuses to read, and why (none of it is authenticated as a whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// V1 metadata (`x-amz-key`): AES/CBC, or GCM whose parameters no key authenticates.
    V1,
    /// `x-amz-cek-alg` `AES/CBC/PKCS5Padding`: no authentication at all.
    Cbc,
}

/// Why metadata is not an S3EC envelope sealstream reads. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormatError {
    /// No S3EC metadata at all (and no instruction file was given).
    NotS3ec,
    /// The content metadata is in an instruction file, which was not given.
    NeedsInstructionFile,
    /// A required field is absent.
    Missing(&'static str),
    /// A field is not valid base64.
    BadBase64(&'static str),
    /// A decoded field has the wrong length.
    BadLength {
        /// The field.
        field: &'static str,
        /// The length the format requires (a maximum for the data key).
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// A JSON field (material description, context, instruction file) is malformed or not a
    /// map of strings.
    BadJson {
        /// The field (or `instruction file`).
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A field has a value this format does not define (an unknown algorithm).
    Unknown {
        /// The field.
        field: &'static str,
        /// The value (escaped for display).
        value: String,
    },
    /// A wrapping algorithm sealstream has no keys for (`AES/GCM`, `RSA-OAEP-SHA1`, …: raw
    /// AES or RSA keyrings).
    UnsupportedWrapping(String),
    /// An unauthenticated legacy mode.
    Refused(Refused),
    /// Keys of several format versions at once (or V2 keys next to V3 content keys): never
    /// written by a client, a sign of a format-confusion attack.
    MixedVersions,
    /// The instruction file carries keys only the object may carry, or the object carries
    /// content metadata that a V2 instruction file also carries.
    InstructionFile(String),
    /// The stored encryption context's `aws:x-amz-cek-alg` is missing or names another
    /// content cipher than the metadata: the cipher is not bound to the data key.
    CipherNotBound {
        /// The value the content cipher requires.
        expected: &'static str,
        /// What the context has.
        found: Option<String>,
    },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::text::escape;
        match self {
            FormatError::NotS3ec => write!(f, "no Amazon S3 Encryption Client metadata"),
            FormatError::NeedsInstructionFile => write!(
                f,
                "the content metadata is in an instruction file (KEY{INSTRUCTION_SUFFIX}), which is missing"
            ),
            FormatError::Missing(n) => write!(f, "'{n}' is missing"),
            FormatError::BadBase64(n) => write!(f, "'{n}' is not valid base64"),
            FormatError::BadLength {
                field,
                expected,
                found,
            } => write!(
                f,
                "'{field}' is {found} bytes, the format requires {expected}"
            ),
            FormatError::BadJson { field, reason } => {
                write!(
                    f,
                    "'{field}' is not a JSON map of strings: {}",
                    escape(reason)
                )
            }
            FormatError::Unknown { field, value } => {
                write!(f, "'{field}' has the unknown value \"{}\"", escape(value))
            }
            FormatError::UnsupportedWrapping(w) => write!(
                f,
                "the data key is wrapped with \"{}\", not with KMS; sealstream unwraps only KMS-wrapped (kms+context, kms) data keys",
                escape(w)
            ),
            FormatError::Refused(Refused::V1) => write!(
                f,
                "V1 metadata ('x-amz-key'): its content parameters are not authenticated (AES/CBC, or GCM whose cipher is not bound to the data key); sealstream refuses unauthenticated modes"
            ),
            FormatError::Refused(Refused::Cbc) => write!(
                f,
                "the content is AES/CBC/PKCS5Padding, which is unauthenticated: tampering would go unnoticed, so sealstream refuses to decrypt it"
            ),
            FormatError::MixedVersions => write!(
                f,
                "the metadata mixes keys of several format versions, which no client writes (tampered with)"
            ),
            FormatError::InstructionFile(r) => write!(f, "instruction file: {}", escape(r)),
            FormatError::CipherNotBound { expected, found } => match found {
                Some(v) => write!(
                    f,
                    "the stored encryption context has {CONTEXT_CEK_ALG}=\"{}\", not \"{expected}\" (tampered with)",
                    escape(v)
                ),
                None => write!(
                    f,
                    "the stored encryption context has no {CONTEXT_CEK_ALG} pair binding the content cipher \"{expected}\" to the data key (tampered with)"
                ),
            },
        }
    }
}

impl std::error::Error for FormatError {}

impl FormatError {
    /// True for a mode sealstream reads nothing of by design (unauthenticated, or wrapped
    /// for keys it does not have), as opposed to metadata that is malformed or tampered.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            FormatError::Refused(_) | FormatError::UnsupportedWrapping(_)
        )
    }
}

/// An S3EC object's envelope: everything needed to unwrap its data key and decrypt its body.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Content-metadata format.
    pub version: Version,
    /// How the data key is wrapped.
    pub wrapping: Wrapping,
    /// The KMS ciphertext of the data key.
    pub encrypted_data_key: Vec<u8>,
    /// The encryption context exactly as stored (KMS `Decrypt` gets it verbatim).
    pub kms_context: BTreeMap<String, String>,
    /// The GCM nonce: V2 `x-amz-iv`; V3 twelve 0x01 bytes.
    pub iv: [u8; IV_LEN],
    /// V3: the key commitment (`x-amz-d`) and message id (`x-amz-i`).
    pub commitment: Option<([u8; COMMIT_LEN], [u8; COMMIT_LEN])>,
    /// True when the data key (V3) or all content metadata (V2) came from the instruction
    /// file.
    pub instruction_file: bool,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("version", &self.version)
            .field("wrapping", &self.wrapping)
            .field("kms_context", &self.kms_context)
            .field("instruction_file", &self.instruction_file)
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// The content cipher's name as the metadata states it.
    pub fn content_cipher(&self) -> &'static str {
        match self.version {
            Version::V2 => "AES/GCM/NoPadding",
            Version::V3 => "115 (ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY)",
        }
    }

    /// The additional authenticated data of the body: none for V2, the suite id (0x0073)
    /// for V3.
    pub fn aad(&self) -> &'static [u8] {
        match self.version {
            Version::V2 => &[],
            Version::V3 => &[0x00, 0x73],
        }
    }

    /// The caller's pairs: the stored context without the two reserved keys.
    pub fn user_context(&self) -> impl Iterator<Item = (&str, &str)> {
        self.kms_context
            .iter()
            .filter(|(k, _)| k.as_str() != CONTEXT_CEK_ALG && k.as_str() != CONTEXT_KMS_CMK_ID)
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Where an object's S3EC content metadata is, judged from its own metadata alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// None of the S3EC's names: not an S3EC object, unless an instruction file exists
    /// (V1/V2 objects whose metadata is all in the instruction file look like this).
    Absent,
    /// In the object's metadata.
    Object,
    /// V3 content keys without the data key: the rest is in the instruction file.
    InstructionFile,
}

/// Where the content metadata is (see [`Placement`]).
pub fn placement(meta: &BTreeMap<String, String>) -> Placement {
    let has = |k: &str| meta.contains_key(k);
    if has(KEY_V1) || has(KEY_V2) || has(V3_KEY) {
        Placement::Object
    } else if V3_OBJECT_ONLY.iter().any(|k| has(k)) {
        Placement::InstructionFile
    } else if S3EC_KEYS.iter().any(|k| has(k)) {
        // Some S3EC names, none of the data-key ones: V2 content metadata without its key.
        Placement::InstructionFile
    } else {
        Placement::Absent
    }
}

/// Parses an object's S3EC envelope from its metadata (names lowercase, without
/// `x-amz-meta-`) and, when [`placement`] says so, its instruction file's bytes.
pub fn parse(
    object_meta: &BTreeMap<String, String>,
    instruction: Option<&[u8]>,
) -> Result<Envelope, FormatError> {
    let own: BTreeMap<String, String> = object_meta
        .iter()
        .filter(|(k, _)| is_s3ec_key(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let (merged, from_file) = match (placement(object_meta), instruction) {
        (Placement::Object, _) => (own, false),
        (Placement::Absent, None) => return Err(FormatError::NotS3ec),
        (Placement::InstructionFile, None) => return Err(FormatError::NeedsInstructionFile),
        (_, Some(bytes)) => (merge_instruction(own, bytes)?, true),
    };
    let get = |k: &'static str| merged.get(k).map(String::as_str);
    let count = [KEY_V1, KEY_V2, V3_KEY]
        .iter()
        .filter(|k| merged.contains_key(**k))
        .count();
    if count > 1 {
        return Err(FormatError::MixedVersions);
    }
    if get(KEY_V1).is_some() {
        return Err(FormatError::Refused(Refused::V1));
    }
    let mut env = if get(KEY_V2).is_some() {
        if V3_OBJECT_ONLY.iter().any(|k| merged.contains_key(*k)) {
            return Err(FormatError::MixedVersions);
        }
        parse_v2(&|k| get(k))?
    } else if get(V3_KEY).is_some() {
        parse_v3(&|k| get(k))?
    } else {
        return Err(FormatError::Missing(KEY_V2));
    };
    env.instruction_file = from_file;
    Ok(env)
}

/// The instruction file's pairs merged under the object's own S3EC pairs (the object's win,
/// as in the S3EC), after the checks the S3EC specification requires of the file.
fn merge_instruction(
    own: BTreeMap<String, String>,
    bytes: &[u8],
) -> Result<BTreeMap<String, String>, FormatError> {
    let bad = |reason: String| FormatError::BadJson {
        field: "instruction file",
        reason,
    };
    if bytes.len() as u64 > MAX_INSTRUCTION_FILE {
        return Err(bad(format!("{} bytes, more than any", bytes.len())));
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(map) = v else {
        return Err(bad("not a JSON object".into()));
    };
    let mut file: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in map {
        if !is_s3ec_key(&k) {
            return Err(FormatError::InstructionFile(format!(
                "it has the key \"{k}\", which is not the S3 Encryption Client's"
            )));
        }
        if V3_OBJECT_ONLY.contains(&k.as_str()) {
            return Err(FormatError::InstructionFile(format!(
                "it has \"{k}\", which only the object's own metadata may carry (tampered with)"
            )));
        }
        let serde_json::Value::String(s) = v else {
            return Err(bad(format!("the value of \"{k}\" is not a string")));
        };
        file.insert(k, s);
    }
    // V1/V2: all content metadata is in the file; the object must not carry any of it.
    let v2_in_file = file.contains_key(KEY_V2) || file.contains_key(KEY_V1);
    if v2_in_file && [CEK_ALG, IV, WRAP_ALG].iter().any(|k| own.contains_key(*k)) {
        return Err(FormatError::InstructionFile(
            "content metadata is both in the object and in its V1/V2 instruction file (tampered with)"
                .into(),
        ));
    }
    file.extend(own);
    Ok(file)
}

type Getter<'a> = dyn Fn(&'static str) -> Option<&'a str> + 'a;

fn required<'a>(get: &Getter<'a>, k: &'static str) -> Result<&'a str, FormatError> {
    get(k).ok_or(FormatError::Missing(k))
}

fn b64(field: &'static str, v: &str, max: usize) -> Result<Vec<u8>, FormatError> {
    // Bound the work before decoding: 4 characters per 3 bytes.
    if v.len() > max.div_ceil(3) * 4 + 4 {
        return Err(FormatError::BadLength {
            field,
            expected: max,
            found: v.len() / 4 * 3,
        });
    }
    B64.decode(v.trim())
        .map_err(|_| FormatError::BadBase64(field))
}

fn fixed<const N: usize>(field: &'static str, v: &str) -> Result<[u8; N], FormatError> {
    let bytes = b64(field, v, N)?;
    let found = bytes.len();
    bytes.try_into().map_err(|_| FormatError::BadLength {
        field,
        expected: N,
        found,
    })
}

fn data_key(field: &'static str, v: &str) -> Result<Vec<u8>, FormatError> {
    let k = b64(field, v, MAX_ENCRYPTED_DATA_KEY)?;
    if k.is_empty() || k.len() > MAX_ENCRYPTED_DATA_KEY {
        return Err(FormatError::BadLength {
            field,
            expected: MAX_ENCRYPTED_DATA_KEY,
            found: k.len(),
        });
    }
    Ok(k)
}

/// A JSON map of strings (absent = empty).
fn json_map(field: &'static str, v: Option<&str>) -> Result<BTreeMap<String, String>, FormatError> {
    let Some(v) = v else {
        return Ok(BTreeMap::new());
    };
    let bad = |reason: String| FormatError::BadJson { field, reason };
    let parsed: serde_json::Value = serde_json::from_str(v).map_err(|e| bad(e.to_string()))?;
    let serde_json::Value::Object(map) = parsed else {
        return Err(bad("not a JSON object".into()));
    };
    map.into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => Ok((k, s)),
            _ => Err(bad(format!("the value of \"{k}\" is not a string"))),
        })
        .collect()
}

fn wrapping(field: &'static str, v: &str) -> Result<Wrapping, FormatError> {
    match v {
        "kms+context" | "12" => Ok(Wrapping::KmsContext),
        "kms" => Ok(Wrapping::Kms),
        "AES/GCM"
        | "02"
        | "RSA-OAEP-SHA1"
        | "22"
        | "AESWrap"
        | "RSA/ECB/OAEPWithSHA-256AndMGF1Padding" => {
            Err(FormatError::UnsupportedWrapping(v.to_string()))
        }
        other => Err(FormatError::Unknown {
            field,
            value: other.to_string(),
        }),
    }
}

/// `kms+context` binds the content cipher through the stored context: check it names ours.
fn check_binding(
    wrapping: Wrapping,
    context: &BTreeMap<String, String>,
    expected: &'static str,
) -> Result<(), FormatError> {
    if wrapping != Wrapping::KmsContext {
        return Ok(());
    }
    match context.get(CONTEXT_CEK_ALG) {
        Some(v) if v == expected => Ok(()),
        found => Err(FormatError::CipherNotBound {
            expected,
            found: found.cloned(),
        }),
    }
}

fn parse_v2(get: &Getter<'_>) -> Result<Envelope, FormatError> {
    match required(get, CEK_ALG)? {
        "AES/GCM/NoPadding" => {}
        "AES/CBC/PKCS5Padding" => return Err(FormatError::Refused(Refused::Cbc)),
        other => {
            return Err(FormatError::Unknown {
                field: CEK_ALG,
                value: other.to_string(),
            });
        }
    }
    if let Some(t) = get(TAG_LEN_NAME)
        && t != "128"
    {
        return Err(FormatError::Unknown {
            field: TAG_LEN_NAME,
            value: t.to_string(),
        });
    }
    let wrapping = wrapping(WRAP_ALG, required(get, WRAP_ALG)?)?;
    let encrypted_data_key = data_key(KEY_V2, required(get, KEY_V2)?)?;
    let iv = fixed::<IV_LEN>(IV, required(get, IV)?)?;
    let kms_context = json_map(MATDESC, get(MATDESC))?;
    check_binding(wrapping, &kms_context, "AES/GCM/NoPadding")?;
    Ok(Envelope {
        version: Version::V2,
        wrapping,
        encrypted_data_key,
        kms_context,
        iv,
        commitment: None,
        instruction_file: false,
    })
}

fn parse_v3(get: &Getter<'_>) -> Result<Envelope, FormatError> {
    match required(get, V3_CIPHER)? {
        "115" => {}
        other => {
            return Err(FormatError::Unknown {
                field: V3_CIPHER,
                value: other.to_string(),
            });
        }
    }
    let wrapping = wrapping(V3_WRAP, required(get, V3_WRAP)?)?;
    if wrapping == Wrapping::Kms {
        // V3 defines only the two-digit codes.
        return Err(FormatError::Unknown {
            field: V3_WRAP,
            value: "kms".into(),
        });
    }
    let encrypted_data_key = data_key(V3_KEY, required(get, V3_KEY)?)?;
    let commitment = fixed::<COMMIT_LEN>(V3_COMMITMENT, required(get, V3_COMMITMENT)?)?;
    let message_id = fixed::<COMMIT_LEN>(V3_MESSAGE_ID, required(get, V3_MESSAGE_ID)?)?;
    let kms_context = json_map(V3_CONTEXT, get(V3_CONTEXT))?;
    check_binding(wrapping, &kms_context, "115")?;
    Ok(Envelope {
        version: Version::V3,
        wrapping,
        encrypted_data_key,
        kms_context,
        iv: [0x01; IV_LEN],
        commitment: Some((commitment, message_id)),
        instruction_file: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// V2 as the Python client writes it (values from a fixture object).
    fn v2() -> BTreeMap<String, String> {
        m(&[
            ("x-amz-key-v2", "AQIDBAUGBwgJCgsMDQ4PEA=="),
            ("x-amz-wrap-alg", "kms+context"),
            (
                "x-amz-matdesc",
                r#"{"tenant": "acme", "aws:x-amz-cek-alg": "AES/GCM/NoPadding"}"#,
            ),
            ("x-amz-iv", "3AaPXttJY3+/egaJ"),
            ("x-amz-cek-alg", "AES/GCM/NoPadding"),
            ("x-amz-tag-len", "128"),
            ("owner", "alice"),
        ])
    }

    /// V3 as the Python client writes it.
    fn v3() -> BTreeMap<String, String> {
        m(&[
            ("x-amz-c", "115"),
            ("x-amz-3", "AQIDBAUGBwgJCgsMDQ4PEA=="),
            ("x-amz-t", r#"{"aws:x-amz-cek-alg": "115"}"#),
            ("x-amz-w", "12"),
            ("x-amz-d", "7Zy2DFHTyefEMAxS5DqfOUAdLLX5ueMj3sQgig=="),
            ("x-amz-i", "yUy0Pd0zEIGOi5ceJGOjsi8UDUJ7nFJsyBAw/A=="),
        ])
    }

    fn with(mut base: BTreeMap<String, String>, k: &str, v: &str) -> BTreeMap<String, String> {
        base.insert(k.into(), v.into());
        base
    }

    fn without(mut base: BTreeMap<String, String>, k: &str) -> BTreeMap<String, String> {
        base.remove(k);
        base
    }

    #[test]
    fn the_clients_v2_and_v3_metadata_parse() {
        let e = parse(&v2(), None).unwrap();
        assert_eq!(e.version, Version::V2);
        assert_eq!(e.wrapping, Wrapping::KmsContext);
        assert_eq!(e.encrypted_data_key, (1..=16).collect::<Vec<u8>>());
        assert_eq!(e.user_context().collect::<Vec<_>>(), [("tenant", "acme")]);
        assert!(e.commitment.is_none() && !e.instruction_file);
        let e = parse(&v3(), None).unwrap();
        assert_eq!(e.version, Version::V3);
        assert_eq!(e.iv, [1; IV_LEN]);
        assert_eq!(e.aad(), [0, 0x73]);
        assert!(e.commitment.is_some());
        assert_eq!(e.user_context().count(), 0);
    }

    #[test]
    fn hostile_values_are_typed_errors() {
        let cases: Vec<(BTreeMap<String, String>, FormatError)> = vec![
            (
                with(v2(), "x-amz-key-v2", "not base64!"),
                FormatError::BadBase64("x-amz-key-v2"),
            ),
            (
                with(v2(), "x-amz-iv", "AAAA"),
                FormatError::BadLength {
                    field: "x-amz-iv",
                    expected: 12,
                    found: 3,
                },
            ),
            (
                with(v2(), "x-amz-key-v2", ""),
                FormatError::BadLength {
                    field: "x-amz-key-v2",
                    expected: MAX_ENCRYPTED_DATA_KEY,
                    found: 0,
                },
            ),
            (
                with(v2(), "x-amz-key-v2", &"A".repeat(20_000)),
                FormatError::BadLength {
                    field: "x-amz-key-v2",
                    expected: MAX_ENCRYPTED_DATA_KEY,
                    found: 15_000,
                },
            ),
            (
                with(v2(), "x-amz-cek-alg", "AES/CTR/NoPadding"),
                FormatError::Unknown {
                    field: "x-amz-cek-alg",
                    value: "AES/CTR/NoPadding".into(),
                },
            ),
            (
                with(v2(), "x-amz-tag-len", "96"),
                FormatError::Unknown {
                    field: "x-amz-tag-len",
                    value: "96".into(),
                },
            ),
            (
                with(v2(), "x-amz-wrap-alg", "rot13"),
                FormatError::Unknown {
                    field: "x-amz-wrap-alg",
                    value: "rot13".into(),
                },
            ),
            (
                with(v2(), "x-amz-wrap-alg", "RSA-OAEP-SHA1"),
                FormatError::UnsupportedWrapping("RSA-OAEP-SHA1".into()),
            ),
            (
                with(v2(), "x-amz-cek-alg", "AES/CBC/PKCS5Padding"),
                FormatError::Refused(Refused::Cbc),
            ),
            (with(v2(), "x-amz-key", "AAAA"), FormatError::MixedVersions),
            (with(v2(), "x-amz-d", "AAAA"), FormatError::MixedVersions),
            (
                with(v3(), "x-amz-key-v2", "AAAA"),
                FormatError::MixedVersions,
            ),
            (
                without(with(v2(), "x-amz-key", "AAAA"), "x-amz-key-v2"),
                FormatError::Refused(Refused::V1),
            ),
            (without(v2(), "x-amz-iv"), FormatError::Missing("x-amz-iv")),
            (
                with(v2(), "x-amz-matdesc", "[1,2]"),
                FormatError::BadJson {
                    field: "x-amz-matdesc",
                    reason: "not a JSON object".into(),
                },
            ),
            (
                with(v2(), "x-amz-matdesc", r#"{"a": 1}"#),
                FormatError::BadJson {
                    field: "x-amz-matdesc",
                    reason: "the value of \"a\" is not a string".into(),
                },
            ),
            (
                // The content cipher must be bound through the stored context.
                with(v2(), "x-amz-matdesc", r#"{"tenant": "acme"}"#),
                FormatError::CipherNotBound {
                    expected: "AES/GCM/NoPadding",
                    found: None,
                },
            ),
            (
                with(
                    v3(),
                    "x-amz-t",
                    r#"{"aws:x-amz-cek-alg": "AES/GCM/NoPadding"}"#,
                ),
                FormatError::CipherNotBound {
                    expected: "115",
                    found: Some("AES/GCM/NoPadding".into()),
                },
            ),
            (
                with(v3(), "x-amz-c", "114"),
                FormatError::Unknown {
                    field: "x-amz-c",
                    value: "114".into(),
                },
            ),
            (
                with(v3(), "x-amz-w", "kms"),
                FormatError::Unknown {
                    field: "x-amz-w",
                    value: "kms".into(),
                },
            ),
            (
                with(v3(), "x-amz-w", "02"),
                FormatError::UnsupportedWrapping("02".into()),
            ),
            (
                with(v3(), "x-amz-d", "AAAA"),
                FormatError::BadLength {
                    field: "x-amz-d",
                    expected: COMMIT_LEN,
                    found: 3,
                },
            ),
            (
                with(v3(), "x-amz-i", "%%%%"),
                FormatError::BadBase64("x-amz-i"),
            ),
            (m(&[("owner", "alice")]), FormatError::NotS3ec),
            (without(v3(), "x-amz-3"), FormatError::NeedsInstructionFile),
        ];
        for (meta, want) in cases {
            let got = parse(&meta, None);
            assert_eq!(got.as_ref().err(), Some(&want), "{meta:?}");
            // Every error has a sentence.
            assert!(!want.to_string().is_empty());
        }
        assert!(FormatError::Refused(Refused::Cbc).is_refusal());
        assert!(!FormatError::MixedVersions.is_refusal());
    }

    #[test]
    fn instruction_files_are_checked_as_the_specification_requires() {
        // V2: all of it in the file.
        let file = serde_json::to_vec(&without(v2(), "owner")).unwrap();
        let e = parse(&m(&[("owner", "alice")]), Some(&file)).unwrap();
        assert!(e.instruction_file && e.version == Version::V2);
        // V3: the data key in the file, the content keys on the object.
        let obj = m(&[
            ("x-amz-c", "115"),
            ("x-amz-d", "7Zy2DFHTyefEMAxS5DqfOUAdLLX5ueMj3sQgig=="),
            ("x-amz-i", "yUy0Pd0zEIGOi5ceJGOjsi8UDUJ7nFJsyBAw/A=="),
        ]);
        assert_eq!(placement(&obj), Placement::InstructionFile);
        let file = br#"{"x-amz-3": "AQIDBAUGBwgJCgsMDQ4PEA==", "x-amz-w": "12", "x-amz-t": "{\"aws:x-amz-cek-alg\": \"115\"}"}"#;
        assert_eq!(parse(&obj, Some(file)).unwrap().version, Version::V3);
        // The file may not carry the object-only keys (a changed commitment smuggled in).
        let bad = br#"{"x-amz-3": "AQIDBAUGBwgJCgsMDQ4PEA==", "x-amz-w": "12", "x-amz-d": "AAAA"}"#;
        assert!(matches!(
            parse(&obj, Some(bad)),
            Err(FormatError::InstructionFile(_))
        ));
        // Nor keys that are not the S3EC's, nor non-string values, nor non-JSON.
        for bad in [
            &br#"{"x-amz-3": "AQID", "evil": "1"}"#[..],
            br#"{"x-amz-3": 5}"#,
            b"not json",
            b"[]",
        ] {
            let e = parse(&obj, Some(bad)).unwrap_err();
            assert!(
                matches!(
                    e,
                    FormatError::InstructionFile(_) | FormatError::BadJson { .. }
                ),
                "{e:?}"
            );
        }
        // V2 in the file while the object carries content metadata: refused.
        let file = serde_json::to_vec(&without(v2(), "owner")).unwrap();
        let obj = m(&[("x-amz-cek-alg", "AES/GCM/NoPadding")]);
        assert!(matches!(
            parse(&obj, Some(&file)),
            Err(FormatError::InstructionFile(_))
        ));
        // V2 keys injected through the file next to V3 content keys: format confusion.
        let obj = m(&[
            ("x-amz-c", "115"),
            ("x-amz-d", "7Zy2DFHTyefEMAxS5DqfOUAdLLX5ueMj3sQgig=="),
            ("x-amz-i", "yUy0Pd0zEIGOi5ceJGOjsi8UDUJ7nFJsyBAw/A=="),
        ]);
        let file = serde_json::to_vec(&without(v2(), "owner")).unwrap();
        assert_eq!(parse(&obj, Some(&file)), Err(FormatError::MixedVersions));
        // Too large.
        let big = vec![b' '; MAX_INSTRUCTION_FILE as usize + 1];
        assert!(matches!(
            parse(&obj, Some(&big)),
            Err(FormatError::BadJson { .. })
        ));
    }
}
