//! `--json` on encrypt, decrypt and rewrap: one JSON object per result on stdout (JSON
//! Lines for a batch, failures included), from derived types so the schema is the type
//! (README, "JSON results"). `inspect --json` keeps its own schema.

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
        let mut line =
            serde_json::to_vec(self).map_err(|e| Error::InvalidArgument(format!("--json: {e}")))?;
        line.push(b'\n');
        let out = std::io::stdout();
        let mut out = out.lock();
        out.write_all(&line)
            .and_then(|_| out.flush())
            .map_err(|e| Error::io("writing the JSON result to stdout", e))
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
}
