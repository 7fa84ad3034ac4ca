//! The CLI's JSON output, from derived types so the schema is the type: `--json` on
//! encrypt, decrypt and rewrap ([`Report`]: one object per result on stdout, JSON Lines for
//! a batch, failures included; README, "JSON results"), `inspect --json` ([`Inspection`],
//! [`S3ecInspection`]; README, "inspect --json") and the `migrate` report ([`MigrateLine`];
//! docs/MIGRATION.md).
//!
//! The `inspect` and `migrate` types declare their fields in alphabetical order: that is
//! the order of their keys since these outputs were first written (from `serde_json::Value`
//! objects, whose keys are sorted), and a derived type writes its fields in declaration
//! order. Tests in tests/it pin the exact text.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Instant;

use sealstream::error::{Error, Result};
use sealstream::format::Stanza;
use serde::Serialize;

/// One key a result is wrapped for (or was opened with).
#[derive(Debug, Clone, Serialize)]
pub struct KeyRef {
    /// `local` or `aws-kms`.
    pub provider: String,
    /// The key id as `inspect` shows it (a KMS key's ARN).
    pub key_id: String,
}

/// One command result. Absent fields do not apply to it.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// `encrypt`, `decrypt` or `rewrap`.
    pub command: &'static str,
    /// The input: a path, `-` for stdin, or an s3:// URL.
    pub input: String,
    /// Where the result went: a path or an s3:// URL (rewrap: the input itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// Plaintext bytes read (encrypt) or written (decrypt).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_bytes: Option<u64>,
    /// Bytes of the encrypted file, or of the object's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encrypted_bytes: Option<u64>,
    /// The plaintext range served (`[first, last]`, inclusive) for `--range`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// The keys the data key is wrapped for (after a rewrap: the new set).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyRef>,
    /// Body cipher suite and chunk size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<&'static str>,
    /// Plaintext bytes per chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<u32>,
    /// `file` (the header leads the file), `metadata`, or the companion object's URL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_location: Option<String>,
    /// S3: the object's ETag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// S3: the object's version id (versioned buckets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// S3 upload: parts (0 for a single PUT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u64>,
    /// S3: the object's Content-Type (decrypt: to restore it where the plaintext goes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// S3 decrypt: the object's user metadata other than sealstream's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Milliseconds this result took.
    pub duration_ms: u64,
    /// A failed result of a batch: the error, and the exit code it alone would give.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// See `error`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

impl Report {
    /// A result of `command` on `input`, timed from `started`.
    pub fn new(command: &'static str, input: impl Into<String>, started: Instant) -> Report {
        Report {
            command,
            input: input.into(),
            duration_ms: started.elapsed().as_millis() as u64,
            ..Report::default()
        }
    }

    /// Records the keys of `stanzas`.
    pub fn with_keys(mut self, stanzas: &[Stanza]) -> Report {
        self.keys = key_refs(stanzas);
        self
    }

    /// Records where the result went (`None`: stdout, which `--json` refuses).
    pub fn output(mut self, p: Option<&std::path::Path>) -> Report {
        self.output = p.map(|p| p.display().to_string());
        self
    }

    /// Records what a download served.
    #[cfg(feature = "s3")]
    pub fn served(mut self, s: &sealstream::s3::Served, ranged: bool) -> Report {
        self.plaintext_bytes = Some(s.len);
        if ranged && s.len > 0 {
            self.range = Some([s.start, s.start + s.len - 1]);
        }
        self
    }

    /// Records a failure (a batch reports every file).
    pub fn failed(mut self, e: &Error) -> Report {
        self.error = Some(super::exit::message(e));
        self.exit_code = Some(super::exit::code(e));
        self
    }

    /// Writes the result as one line on stdout.
    pub fn emit(&self) -> Result<()> {
        emit_line(self)
    }
}

/// Writes `value` as one line of JSON on stdout (and flushes, so that a batch's lines
/// appear as its results do).
pub fn emit_line<T: Serialize>(value: &T) -> Result<()> {
    let mut line =
        serde_json::to_vec(value).map_err(|e| Error::InvalidArgument(format!("--json: {e}")))?;
    line.push(b'\n');
    let out = std::io::stdout();
    let mut out = out.lock();
    out.write_all(&line)
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("writing the JSON result to stdout", e))
}

/// `inspect --json` of a sealstream file or object (README, "inspect --json"). No key is
/// used: the lengths follow from the file size and are not authenticated. Fields in
/// alphabetical order (module doc).
#[derive(Debug, Serialize)]
pub struct Inspection {
    /// Why the length is inconsistent with the header (e.g. truncated); null if it is not.
    pub body_error: Option<String>,
    /// Chunks in the body; null if the length is inconsistent.
    pub chunk_count: Option<u64>,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Total length of the file form (header + body); null if unknown.
    pub ciphertext_len: Option<u64>,
    /// The encryption context, string to string.
    pub context: BTreeMap<String, String>,
    /// Byte offset of the first chunk.
    pub header_len: u64,
    /// Only for `s3://` inputs: where the object and its header are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<InspectedObject>,
    /// Plaintext length implied by the length; null if the length is inconsistent.
    pub plaintext_len: Option<u64>,
    /// Always `false`: `inspect` authenticates no length (decrypt does).
    pub plaintext_len_authenticated: bool,
    /// One per wrapped key, in header order.
    pub stanzas: Vec<InspectedStanza>,
    /// Body cipher suite.
    pub suite: &'static str,
    /// Format version.
    pub version: u8,
}

/// One stanza of [`Inspection::stanzas`].
#[derive(Debug, Serialize)]
pub struct InspectedStanza {
    /// The key id (a KMS key's ARN, a local key's `lk1-…`).
    pub key_id: String,
    /// `local` or `aws-kms`.
    pub provider: String,
    /// Only with `--verify`: the outcome of this stanza's check (both of its fields are
    /// then present, possibly null).
    #[serde(flatten)]
    pub check: Option<StanzaCheck>,
}

/// What `inspect --verify` found for one stanza.
#[derive(Debug, Serialize)]
pub struct StanzaCheck {
    /// Why it failed or was not checked; null if it verified.
    pub reason: Option<String>,
    /// `true`: an offered key unwrapped it and it matches the key commitment; `false`: a
    /// matching key failed; null: no offered key matches.
    pub verified: Option<bool>,
}

/// [`Inspection::object`]: the S3 side of an inspected sealstream object.
#[derive(Debug, Serialize)]
pub struct InspectedObject {
    /// The object's size (its body: the file form is the header followed by it).
    pub body_len: u64,
    /// The object's ETag.
    pub etag: Option<String>,
    /// `metadata`, `body`, or the companion object's `s3://` URL.
    pub header_location: String,
    /// The object's `s3://` URL.
    pub url: String,
}

/// `inspect --json` of an object the Amazon S3 Encryption Client wrote (docs/MIGRATION.md):
/// its metadata, and with `--verify` whether the data key unwrapped. Fields in alphabetical
/// order (module doc).
#[derive(Debug, Serialize)]
pub struct S3ecInspection {
    /// The object's size.
    pub ciphertext_len: u64,
    /// The client's metadata format: `V2` or `V3`.
    pub client_format_version: &'static str,
    /// The content cipher as the metadata names it.
    pub content_cipher: &'static str,
    /// The encryption context the client's user gave, string to string.
    pub context: BTreeMap<String, String>,
    /// Always `amazon-s3-encryption-client`.
    pub format: &'static str,
    /// The instruction file's `s3://` URL, if the metadata is there; else null.
    pub instruction_file: Option<String>,
    /// Whether the object carries a key commitment.
    pub key_commitment: bool,
    /// How the data key is wrapped (`kms+context`, `kms`).
    pub key_wrapping: &'static str,
    /// The KMS key: the one that unwrapped the data key (`--verify`), else the one the
    /// metadata records, else null.
    pub kms_key: Option<String>,
    /// The object's URL and ETag.
    pub object: S3ecObjectRef,
    /// Plaintext length implied by the size.
    pub plaintext_len: u64,
    /// Always `false`: `inspect` authenticates no length.
    pub plaintext_len_authenticated: bool,
    /// The KMS context entries the client reserves for itself.
    pub reserved_context: BTreeMap<String, String>,
    /// With `--verify`: whether the data key unwrapped (and matched the commitment); null
    /// without `--verify`.
    pub verified: Option<bool>,
}

/// [`S3ecInspection::object`].
#[derive(Debug, Serialize)]
pub struct S3ecObjectRef {
    /// The object's ETag.
    pub etag: Option<String>,
    /// The object's `s3://` URL.
    pub url: String,
}

/// One line of the `migrate` report (docs/MIGRATION.md): one per object, its `status`
/// saying which fields are present. Fields in alphabetical order (module doc); build it
/// with the constructors, which set the fields of each status.
#[derive(Debug, Default, Serialize)]
pub struct MigrateLine {
    /// `migrated`: bytes of the new object's body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_bytes: Option<u64>,
    /// `failed`: the error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `failed`: the exit code this error alone would give.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// `migrated`, `would-migrate`: the client's metadata format (`V2`, `V3`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<&'static str>,
    /// `migrated`, `would-migrate`: the instruction file's key, or null (present then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instruction_file: Option<Option<String>>,
    /// `migrated`: the keys the new data key is wrapped for, `provider:key_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// `migrated`, `would-migrate`: the KMS key that unwrapped the client's data key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
    /// The object's `s3://` URL.
    pub object: String,
    /// `migrated`: parts uploaded (0 for a single PutObject).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<u64>,
    /// `migrated`, `would-migrate`: plaintext bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext_bytes: Option<u64>,
    /// `skipped`: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// `migrated`, `would-migrate`: the ETag of the object read, or null (present then).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_etag: Option<Option<String>>,
    /// `migrated`, `would-migrate` (`--dryrun`), `skipped` or `failed`.
    pub status: &'static str,
}

impl MigrateLine {
    /// `failed`: `object` could not be migrated.
    pub fn failed(object: String, e: &Error) -> MigrateLine {
        MigrateLine {
            object,
            status: "failed",
            error: Some(super::exit::message(e)),
            exit_code: Some(super::exit::code(e)),
            ..MigrateLine::default()
        }
    }

    /// `skipped`: `object` is not one to migrate.
    pub fn skipped(object: String, reason: &'static str) -> MigrateLine {
        MigrateLine {
            object,
            status: "skipped",
            reason: Some(reason),
            ..MigrateLine::default()
        }
    }

    /// `would-migrate`: what `--dryrun` found (metadata read, data key unwrapped).
    pub fn would_migrate(
        object: String,
        format: &'static str,
        plaintext_bytes: u64,
        kms_key: String,
        instruction_file: Option<String>,
        source_etag: Option<String>,
    ) -> MigrateLine {
        MigrateLine {
            object,
            status: "would-migrate",
            format: Some(format),
            plaintext_bytes: Some(plaintext_bytes),
            kms_key: Some(kms_key),
            instruction_file: Some(instruction_file),
            source_etag: Some(source_etag),
            ..MigrateLine::default()
        }
    }

    /// `migrated`: this `would-migrate` line once the new object is stored.
    pub fn migrated(self, keys: Vec<String>, body_bytes: u64, parts: u64) -> MigrateLine {
        MigrateLine {
            status: "migrated",
            keys: Some(keys),
            body_bytes: Some(body_bytes),
            parts: Some(parts),
            ..self
        }
    }
}

/// The results of a batch, gathered from its workers and written at the end (so that a
/// line is written only for what was really stored).
#[derive(Debug)]
pub struct Batch {
    command: &'static str,
    done: std::sync::Mutex<Vec<Report>>,
}

impl Batch {
    /// An empty batch of `command` results.
    pub fn new(command: &'static str) -> Batch {
        Batch {
            command,
            done: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Records one stored result.
    pub fn push(&self, r: Report) {
        if let Ok(mut d) = self.done.lock() {
            d.push(r);
        }
    }

    /// Writes the stored results, then one line per failure (input, error, exit code).
    pub fn emit(self, jobs: &[super::batch::Job], failures: &[(usize, Error)]) -> Result<()> {
        let now = Instant::now();
        let done = self.done.into_inner().unwrap_or_default();
        for r in &done {
            r.emit()?;
        }
        for (i, e) in failures {
            let Some(job) = jobs.get(*i) else { continue };
            Report::new(self.command, job.input.display().to_string(), now)
                .output(Some(&job.output))
                .failed(e)
                .emit()?;
        }
        Ok(())
    }
}

/// The keys of `stanzas`, for [`Report::keys`].
pub fn key_refs(stanzas: &[Stanza]) -> Vec<KeyRef> {
    stanzas
        .iter()
        .map(|s| KeyRef {
            provider: s.provider.clone(),
            key_id: s.key_id.clone(),
        })
        .collect()
}

/// `--json` needs stdout for itself: refused when the data goes there.
pub fn check_stdout_free(json: bool, data_to_stdout: bool) -> Result<()> {
    if json && data_to_stdout {
        return Err(Error::InvalidArgument(
            "--json writes its result to stdout, where the data would go: give -o FILE (or an \
             s3:// output)"
                .into(),
        ));
    }
    Ok(())
}

/// User metadata without sealstream's own entries.
pub fn user_metadata(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .filter(|(k, _)| !k.starts_with("sealstream"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_are_left_out() {
        let r = Report {
            command: "encrypt",
            input: "a".into(),
            ..Report::default()
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["command", "duration_ms", "input"]);
        assert!(check_stdout_free(true, true).is_err());
        assert!(check_stdout_free(true, false).is_ok());
        assert!(check_stdout_free(false, true).is_ok());
    }

    /// The exact text of each `migrate` line kind and of the S3-only parts of `inspect`
    /// (tests/it pins them through the binary too, but those runs need the emulator).
    #[test]
    fn migrate_and_inspect_lines_keep_their_text() {
        fn text<T: Serialize>(v: &T) -> String {
            serde_json::to_string(v).unwrap()
        }
        let would = MigrateLine::would_migrate(
            "s3://b/k".into(),
            "V3",
            5,
            "arn:k".into(),
            None,
            Some("\"e\"".into()),
        );
        assert_eq!(
            text(&would),
            r#"{"format":"V3","instruction_file":null,"kms_key":"arn:k","object":"s3://b/k","plaintext_bytes":5,"source_etag":"\"e\"","status":"would-migrate"}"#
        );
        assert_eq!(
            text(&would.migrated(vec!["aws-kms:arn:k".into()], 21, 0)),
            r#"{"body_bytes":21,"format":"V3","instruction_file":null,"keys":["aws-kms:arn:k"],"kms_key":"arn:k","object":"s3://b/k","parts":0,"plaintext_bytes":5,"source_etag":"\"e\"","status":"migrated"}"#
        );
        assert_eq!(
            text(&MigrateLine::skipped("s3://b/k".into(), "why")),
            r#"{"object":"s3://b/k","reason":"why","status":"skipped"}"#
        );
        let e = Error::InvalidArgument("bad".into());
        assert_eq!(
            text(&MigrateLine::failed("s3://b/k".into(), &e)),
            format!(
                r#"{{"error":{},"exit_code":{},"object":"s3://b/k","status":"failed"}}"#,
                serde_json::to_string(&super::super::exit::message(&e)).unwrap(),
                super::super::exit::code(&e)
            )
        );
        let s3ec = S3ecInspection {
            ciphertext_len: 21,
            client_format_version: "V2",
            content_cipher: "AES/GCM/NoPadding",
            context: BTreeMap::from([("t".into(), "a".into())]),
            format: "amazon-s3-encryption-client",
            instruction_file: None,
            key_commitment: false,
            key_wrapping: "kms+context",
            kms_key: None,
            object: S3ecObjectRef {
                etag: None,
                url: "s3://b/k".into(),
            },
            plaintext_len: 5,
            plaintext_len_authenticated: false,
            reserved_context: BTreeMap::new(),
            verified: None,
        };
        assert_eq!(
            text(&s3ec),
            r#"{"ciphertext_len":21,"client_format_version":"V2","content_cipher":"AES/GCM/NoPadding","context":{"t":"a"},"format":"amazon-s3-encryption-client","instruction_file":null,"key_commitment":false,"key_wrapping":"kms+context","kms_key":null,"object":{"etag":null,"url":"s3://b/k"},"plaintext_len":5,"plaintext_len_authenticated":false,"reserved_context":{},"verified":null}"#
        );
        let inspection = Inspection {
            body_error: None,
            chunk_count: Some(1),
            chunk_size: 65536,
            ciphertext_len: Some(221),
            context: BTreeMap::new(),
            header_len: 200,
            object: Some(InspectedObject {
                body_len: 21,
                etag: None,
                header_location: "metadata".into(),
                url: "s3://b/k".into(),
            }),
            plaintext_len: Some(5),
            plaintext_len_authenticated: false,
            stanzas: vec![InspectedStanza {
                key_id: "lk1-x".into(),
                provider: "local".into(),
                check: Some(StanzaCheck {
                    reason: None,
                    verified: Some(true),
                }),
            }],
            suite: "aes-256-gcm",
            version: 1,
        };
        assert_eq!(
            text(&inspection),
            r#"{"body_error":null,"chunk_count":1,"chunk_size":65536,"ciphertext_len":221,"context":{},"header_len":200,"object":{"body_len":21,"etag":null,"header_location":"metadata","url":"s3://b/k"},"plaintext_len":5,"plaintext_len_authenticated":false,"stanzas":[{"key_id":"lk1-x","provider":"local","reason":null,"verified":true}],"suite":"aes-256-gcm","version":1}"#
        );
    }
}
