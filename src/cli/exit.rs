//! Exit codes and the command line's wording of errors: the one place that turns a library
//! [`Error`] into what the user sees and the status the shell gets.
//!
//! The codes are a documented contract (README, `--help`): 0 success, 2 usage, 3 I/O,
//! 4 authentication, 5 key service, 6 storage, 141 broken pipe. The library knows none of
//! them; it classifies errors by variant, and this module maps variants to codes and adds
//! the flag that fixes the problem (`--force`, `-k`, `-c`, `--kms-key`) to the library's
//! flag-free message.

use std::fmt;

use sealstream::error::{Error, HeaderError, RewrapRefusal};
use sealstream::text::escape;

/// Success.
pub const OK: i32 = 0;
/// Bad arguments or an impossible request (clap uses 2 as well).
pub const USAGE: i32 = 2;
/// A file or stream could not be read or written, or an output exists.
pub const IO: i32 = 3;
/// The data or the key failed authentication.
pub const AUTHENTICATION: i32 = 4;
/// A key service (KMS) failed.
pub const KEY_SERVICE: i32 = 5;
/// A storage service (S3) failed.
pub const STORAGE: i32 = 6;
/// The reader of our output went away (`| head`): 128 + SIGPIPE, as a shell shows for a
/// process killed by it. Not 0: the rest of the input was neither read nor authenticated.
pub const BROKEN_PIPE: i32 = 141;
/// The operation was cancelled (a signal or a cancellation token) and what it had
/// written was removed: 128 + SIGINT, as a shell shows for an interrupted process.
pub const CANCELLED: i32 = 130;
/// An error variant newer than this mapping (the library's `Error` is `#[non_exhaustive]`).
/// Unreachable while the binary and the library are built together.
const UNKNOWN: i32 = 1;

/// The exit code of a library error.
pub fn code(e: &Error) -> i32 {
    match e {
        Error::InvalidArgument(_)
        | Error::RewrapRefused(_)
        | Error::RangeNotSatisfiable { .. }
        | Error::Unsupported { .. } => USAGE,
        Error::Io { .. } | Error::OutputExists(_) | Error::KeyFile { .. } => IO,
        Error::KeyService(_) | Error::KeyServiceStanzas(_) => KEY_SERVICE,
        Error::Storage(_) => STORAGE,
        Error::Cancelled(..) => CANCELLED,
        e if e.is_authentication() => AUTHENTICATION,
        _ => UNKNOWN,
    }
}

/// The CLI's message for a library error: the library's text, with the flag that fixes
/// the problem where the library can only name the remedy in general terms.
pub fn message(e: &Error) -> String {
    match e {
        Error::OutputExists(p) => format!(
            "output '{p}' already exists; choose another path or pass --force to replace it"
        ),
        Error::ContextMismatch { key, found } => match found {
            None => format!(
                "encryption context mismatch: the file has no '{}' pair you required; check -c values",
                escape(key)
            ),
            Some(v) => format!(
                "encryption context mismatch: the file has {}=\"{}\", not the value you required; check -c values",
                escape(key),
                escape(v)
            ),
        },
        Error::NoMatchingKey { stanzas, offered } => {
            let mut m = format!(
                "no key to decrypt: the file is wrapped for [{}] but the keys offered are [{}]; pass the right key with -k",
                escape(&stanzas.join(", ")),
                escape(&offered.join(", "))
            );
            if stanzas.iter().any(|s| s.starts_with("aws-kms:")) {
                m.push_str(
                    ", or trust its KMS key with --kms-key KEY (or --kms-discovery --kms-allow-account ACCOUNT)",
                );
            }
            m
        }
        Error::RewrapRefused(r) => match r {
            RewrapRefusal::NoSuchStanza(name) => format!(
                "--remove-key {}: the file has no stanza with that key id (see `sealstream inspect`)",
                escape(name)
            ),
            RewrapRefusal::NoStanzaLeft => "rewrap would remove every wrapped key and make the \
                 file undecryptable; add a key with --add-key"
                .into(),
            RewrapRefusal::WouldLockOut { added } => format!(
                "--remove-key refused: none of the stanzas that would remain verifies with the \
                 keys you gave, so the file could become undecryptable{}; keep a stanza whose \
                 key you pass with -k/--kms-key, or add one with --add-key",
                RewrapRefusal::why(added)
            ),
            RewrapRefusal::NothingToRotate { from } => format!(
                "--rotate-to-kms-key: the file has no stanza of {}",
                from.join(", ")
            ),
            // A refusal newer than this wording: the library's own sentence.
            r => r.to_string(),
        },
        // The usual way to get a file without a header: the body of an S3 object (the
        // header is in its metadata) downloaded with another tool.
        Error::Header(HeaderError::BadMagic) => format!(
            "{e}. If it is the body of an S3 object that sealstream wrote, downloaded with \
             another tool, its header is in the object's metadata: decrypt s3://BUCKET/KEY \
             directly, or save the header with `sealstream inspect s3://BUCKET/KEY \
             --export-header HEADER` and run `sealstream decrypt BODY --header-from HEADER`"
        ),
        Error::Header(HeaderError::TrailingBytes { .. }) => {
            format!("{e}; `inspect --export-header` writes a header file")
        }
        // Library advice in general terms ("raise the KMS attempt limit") gets the flag.
        e => super::hints::render(e),
    }
}

/// Why a command failed: a library error, or one of the two outcomes only the CLI has
/// (a batch where some files failed, `inspect --verify` with failing stanzas).
#[derive(Debug)]
pub enum Failure {
    /// A library error.
    Error(Error),
    /// Some files of a batch failed (each was reported as it failed).
    BatchFailed {
        /// Files that failed.
        failed: usize,
        /// Files in the batch.
        total: usize,
        /// Exit code of the first failure (in input order).
        code: i32,
    },
    /// `inspect --verify`: some stanzas with a matching key failed to verify.
    StanzasFailedVerification {
        /// Stanzas that failed.
        failed: usize,
        /// Stanzas in the file.
        total: usize,
        /// Exit code of the first failure (4 authentication, 5 key service).
        code: i32,
    },
}

impl Failure {
    /// The process exit code.
    pub fn code(&self) -> i32 {
        match self {
            Failure::Error(e) => code(e),
            Failure::BatchFailed { code, .. } | Failure::StanzasFailedVerification { code, .. } => {
                *code
            }
        }
    }

    /// True when the reader of our output went away: stop quietly, as `cat` does.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Failure::Error(e) if e.is_broken_pipe())
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Error(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Error(e) => f.write_str(&message(e)),
            Failure::BatchFailed { failed, total, .. } => write!(
                f,
                "{failed} of {total} files failed (reasons above); the others were written"
            ),
            Failure::StanzasFailedVerification { failed, total, .. } => write!(
                f,
                "{failed} of {total} stanzas failed verification (see the listing); those keys cannot open this file"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealstream::error::{ServiceError, ServiceErrorKind};
    use std::io;

    /// Every documented code, from a representative of each class.
    #[test]
    fn codes_match_the_documented_contract() {
        let svc = |k| ServiceError::new(sealstream::error::Service::S3, k, "x");
        let cases: Vec<(Error, i32)> = vec![
            (Error::InvalidArgument("x".into()), 2),
            (Error::RewrapRefused(RewrapRefusal::NoStanzaLeft), 2),
            (
                Error::RangeNotSatisfiable {
                    start: 5,
                    plaintext_len: 5,
                },
                2,
            ),
            (Error::io("reading", io::Error::other("x")), 3),
            (Error::OutputExists("o".into()), 3),
            (
                Error::KeyFile {
                    path: "p".into(),
                    reason: "r".into(),
                },
                3,
            ),
            (
                Error::Unsupported {
                    object: "s3://b/k".into(),
                    reason: "CBC".into(),
                },
                2,
            ),
            (Error::Header(HeaderError::BadMagic), 4),
            (
                Error::ForeignObject {
                    object: "s3://b/k".into(),
                    reason: "tag".into(),
                },
                4,
            ),
            (Error::ChunkAuth { index: 0 }, 4),
            (Error::CommitmentMismatch, 4),
            (Error::TooManyChunks, 4),
            (Error::Truncated { detail: "d".into() }, 4),
            (
                Error::NoMatchingKey {
                    stanzas: vec![],
                    offered: vec![],
                },
                4,
            ),
            (Error::key_service("x"), 5),
            (Error::KeyServiceStanzas(vec![]), 5),
            (Error::Storage(svc(ServiceErrorKind::NotFound)), 6),
            (Error::storage("x"), 6),
        ];
        for (e, want) in cases {
            assert_eq!(code(&e), want, "{e:?}");
        }
        let pipe = Failure::from(Error::io("w", io::Error::from(io::ErrorKind::BrokenPipe)));
        assert!(pipe.is_broken_pipe());
        let batch = Failure::BatchFailed {
            failed: 1,
            total: 2,
            code: 6,
        };
        assert_eq!(batch.code(), 6);
    }

    /// The flag hints are the CLI's; the library's own text names no flag.
    #[test]
    fn flag_hints_are_added_by_the_cli_only() {
        let cases = [
            (Error::OutputExists("o".into()), "--force"),
            (
                Error::ContextMismatch {
                    key: "k".into(),
                    found: None,
                },
                "-c values",
            ),
            (
                Error::NoMatchingKey {
                    stanzas: vec!["aws-kms:arn".into()],
                    offered: vec![],
                },
                "--kms-key",
            ),
            (
                Error::Header(HeaderError::TrailingBytes {
                    header_len: 1,
                    given: 2,
                }),
                "--export-header",
            ),
            (
                Error::RewrapRefused(RewrapRefusal::NoSuchStanza("lk1-x".into())),
                "--remove-key lk1-x",
            ),
            (
                Error::RewrapRefused(RewrapRefusal::NoStanzaLeft),
                "--add-key",
            ),
            (
                Error::RewrapRefused(RewrapRefusal::WouldLockOut { added: None }),
                "--remove-key refused",
            ),
            (
                Error::RewrapRefused(RewrapRefusal::NothingToRotate {
                    from: vec!["alias/old".into()],
                }),
                "--rotate-to-kms-key: the file has no stanza of alias/old",
            ),
        ];
        for (e, flag) in cases {
            assert!(message(&e).contains(flag), "{}", message(&e));
            assert!(!e.to_string().contains("--"), "{e}");
            assert!(!e.to_string().contains(" -"), "{e}");
        }
    }
}
