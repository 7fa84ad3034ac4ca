//! Error types: one enum with precise variants, each mapped to a documented exit code.
//!
//! Every variant's `Display` names the problem *and* what the user can do about it,
//! because these messages are what the CLI prints.

use std::fmt;
use std::io;

/// What went wrong in a header that failed to parse.
///
/// Kept separate from [`Error`] so that callers (tests, fuzzers, other tools) can match the
/// exact structural fault without string comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// The input does not start with the sealstream magic bytes.
    BadMagic,
    /// The format version byte is not one this build understands.
    UnsupportedVersion(u8),
    /// The suite id is not assigned.
    UnknownSuite(u8),
    /// A reserved field is not zero.
    ReservedNonZero,
    /// The chunk size is outside the allowed range.
    ChunkSizeOutOfRange(u32),
    /// The declared header length is outside the allowed range.
    HeaderLenOutOfRange(u32),
    /// The declared header length disagrees with the fields it contains.
    HeaderLenMismatch {
        /// Length stored in the header.
        declared: u32,
        /// Length the fields actually occupy.
        actual: u64,
    },
    /// The input ended inside the header.
    Truncated,
    /// Too many encryption-context pairs.
    TooManyContextPairs(usize),
    /// A context key or value is too long, empty where it must not be, or the block too large.
    ContextFieldLength,
    /// A context key or value is not valid UTF-8.
    ContextNotUtf8,
    /// Context keys are not strictly increasing (non-canonical or duplicate).
    ContextNotCanonical,
    /// No wrapped-key stanza at all.
    NoStanzas,
    /// More stanzas than allowed.
    TooManyStanzas(usize),
    /// A stanza's provider id is empty, too long or has a forbidden character.
    BadProviderId,
    /// A stanza's key id is empty, too long or not printable ASCII.
    BadKeyId,
    /// A stanza's wrapped key is empty or too long.
    BadWrappedKeyLength(usize),
    /// Bytes follow a header that must stand alone (object-form metadata, a companion
    /// object, `--header-from`): FORMAT.md §15.2 forbids them, so nothing is ignored.
    TrailingBytes {
        /// The header's length.
        header_len: u64,
        /// Bytes given in all (at least this many).
        given: u64,
    },
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::format::limits;
        match self {
            HeaderError::BadMagic => write!(f, "not a sealstream file (bad magic bytes)"),
            HeaderError::UnsupportedVersion(v) => write!(
                f,
                "unsupported format version {v} (this build reads version {}); upgrade sealstream",
                crate::format::VERSION
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
                 stored or saved header is exactly the header, as `inspect --export-header` \
                 writes it, and a whole sealstream file is not a header)"
            ),
        }
    }
}

/// Why a stanza could not be unwrapped, reported per stanza so users can see each reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaFailure {
    /// Provider id of the stanza.
    pub provider: String,
    /// Key id of the stanza.
    pub key_id: String,
    /// Human-readable reason.
    pub reason: String,
}

/// Every failure sealstream reports.
///
/// Variants are grouped by exit code (see [`Error::exit_code`]); the grouping is part of the
/// CLI contract documented in the README.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    // ---- exit 2: usage ----
    /// The caller asked for something invalid (bad option value, unsatisfiable range…).
    Usage(String),

    // ---- exit 3: I/O ----
    /// An I/O operation failed; the string says which file or stream.
    Io {
        /// What was being done ("reading input 'x'").
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The output exists and `--force` was not given.
    OutputExists(String),
    /// The operation was cancelled (its `CancelToken` was set) before it finished; what
    /// was written so far is incomplete (an encrypted output has no final chunk).
    Cancelled,
    /// A local key file is malformed.
    KeyFile {
        /// The key file path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    // ---- exit 4: authentication ----
    /// The header is malformed (bad magic, version, limits…).
    Header(HeaderError),
    /// The caller's expected context disagrees with the file's.
    ContextMismatch {
        /// The key whose value is missing or different.
        key: String,
        /// What the file says (None if missing).
        found: Option<String>,
    },
    /// None of the available keys matches any stanza.
    NoMatchingKey {
        /// Stanzas in the file, as `provider:key_id`.
        stanzas: Vec<String>,
        /// Key ids the caller offered.
        offered: Vec<String>,
    },
    /// Keys matched stanzas by id but every unwrap failed authentication.
    UnwrapFailed(Vec<StanzaFailure>),
    /// Every matching stanza failed and at least one failure was the key service's (KMS
    /// refused, was unreachable or kept throttling): exit 5, with each stanza's reason.
    KeyServiceStanzas(Vec<StanzaFailure>),
    /// The data key does not match the header's key-commitment value.
    CommitmentMismatch,
    /// A chunk failed authentication.
    ChunkAuth {
        /// Index of the chunk (0-based).
        index: u64,
    },
    /// The body ends before its final chunk (truncated at or off a chunk boundary).
    Truncated {
        /// Details: where it ended.
        detail: String,
    },
    /// The final chunk is empty although earlier chunks exist (non-canonical encoding).
    LastChunkEmpty {
        /// Index of the empty chunk.
        index: u64,
    },
    /// More chunks than the format allows (2^32).
    TooManyChunks,
    /// An S3 object's sealstream metadata (the object form's header) is missing, malformed
    /// or does not belong to the object's body.
    ObjectMetadata {
        /// `s3://bucket/key`.
        object: String,
        /// What is wrong and what to do.
        reason: String,
    },

    // ---- batch: the first failure's code ----
    /// Some files of a batch failed (each was reported as it failed).
    BatchFailed {
        /// Files that failed.
        failed: usize,
        /// Files in the batch.
        total: usize,
        /// Exit code of the first failure (in input order).
        exit_code: i32,
    },

    /// `inspect --verify`: some stanzas with a matching key failed to verify.
    StanzasFailedVerification {
        /// Stanzas that failed.
        failed: usize,
        /// Stanzas in the file.
        total: usize,
        /// Exit code of the first failure (4 authentication, 5 key service).
        exit_code: i32,
    },

    // ---- exit 5: key service ----
    /// A key service (KMS) failed.
    KeyService(String),

    // ---- exit 6: storage ----
    /// A storage service (S3) failed.
    Storage(String),
}

impl Error {
    /// Exit code for this error, as documented in the README and `--help`.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Io { .. }
            | Error::Cancelled
            | Error::OutputExists(_)
            | Error::KeyFile { .. } => 3,
            Error::Header(_)
            | Error::ContextMismatch { .. }
            | Error::NoMatchingKey { .. }
            | Error::UnwrapFailed(_)
            | Error::CommitmentMismatch
            | Error::ChunkAuth { .. }
            | Error::Truncated { .. }
            | Error::LastChunkEmpty { .. }
            | Error::TooManyChunks
            | Error::ObjectMetadata { .. } => 4,
            Error::KeyService(_) | Error::KeyServiceStanzas(_) => 5,
            Error::BatchFailed { exit_code, .. }
            | Error::StanzasFailedVerification { exit_code, .. } => *exit_code,
            Error::Storage(_) => 6,
        }
    }

    /// Wraps an `io::Error` with a description of what was being done.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// True when writing failed because the reader closed the pipe (`| head`): the CLI
    /// then stops quietly, as `cat` does, instead of reporting an error.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// True for errors that mean "the data or key failed authentication" (exit 4).
    pub fn is_authentication(&self) -> bool {
        self.exit_code() == 4
    }
}

impl From<HeaderError> for Error {
    fn from(e: HeaderError) -> Self {
        Error::Header(e)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Cancelled => write!(
                f,
                "cancelled before the end: the output is incomplete; discard it and run again"
            ),
            Error::OutputExists(p) => write!(
                f,
                "output '{p}' already exists; choose another path or pass --force to replace it"
            ),
            Error::KeyFile { path, reason } => write!(
                f,
                "key file '{path}' is not a valid sealstream local key: {reason}"
            ),
            Error::Header(h) => write!(
                f,
                "malformed header: {h}; the input is not an intact sealstream file"
            ),
            Error::ContextMismatch { key, found } => match found {
                None => write!(
                    f,
                    "encryption context mismatch: the file has no '{}' pair you required; check -c values",
                    crate::text::escape(key)
                ),
                Some(v) => write!(
                    f,
                    "encryption context mismatch: the file has {}=\"{}\", not the value you required; check -c values",
                    crate::text::escape(key),
                    crate::text::escape(v)
                ),
            },
            Error::NoMatchingKey { stanzas, offered } => {
                write!(
                    f,
                    "no key to decrypt: the file is wrapped for [{}] but the keys offered are [{}]; pass the right key with -k",
                    crate::text::escape(&stanzas.join(", ")),
                    crate::text::escape(&offered.join(", "))
                )?;
                if stanzas.iter().any(|s| s.starts_with("aws-kms:")) {
                    write!(
                        f,
                        ", or trust its KMS key with --kms-key KEY (or --kms-discovery --kms-allow-account ACCOUNT)"
                    )?;
                }
                Ok(())
            }
            Error::UnwrapFailed(fails) => {
                write!(
                    f,
                    "could not unwrap the data key with any offered key (wrong key, wrong context or tampered stanza):"
                )?;
                for s in fails {
                    write!(
                        f,
                        "\n  {}:{}: {}",
                        crate::text::escape(&s.provider),
                        crate::text::escape(&s.key_id),
                        crate::text::escape(&s.reason)
                    )?;
                }
                Ok(())
            }
            Error::KeyServiceStanzas(fails) => {
                write!(
                    f,
                    "could not unwrap the data key: the key service failed for at least one stanza (retry later, or fix access):"
                )?;
                for s in fails {
                    write!(
                        f,
                        "\n  {}:{}: {}",
                        crate::text::escape(&s.provider),
                        crate::text::escape(&s.key_id),
                        crate::text::escape(&s.reason)
                    )?;
                }
                Ok(())
            }
            Error::CommitmentMismatch => write!(
                f,
                "key commitment check failed: the header was modified or does not belong to this data key"
            ),
            Error::ChunkAuth { index } => write!(
                f,
                "authentication failed for chunk {index}: the data was modified, reordered or truncated"
            ),
            Error::Truncated { detail } => write!(f, "truncated input: {detail}"),
            Error::LastChunkEmpty { index } => write!(
                f,
                "invalid encoding: final chunk {index} is empty after full chunks (data was tampered with)"
            ),
            Error::TooManyChunks => write!(
                f,
                "input too large for this chunk size (more than 2^32 chunks); use a larger --chunk-size"
            ),
            Error::ObjectMetadata { object, reason } => {
                write!(f, "{object}: sealstream object metadata: {reason}")
            }
            Error::KeyService(m) => write!(f, "key service error: {m}"),
            Error::StanzasFailedVerification { failed, total, .. } => write!(
                f,
                "{failed} of {total} stanzas failed verification (see the listing); those keys cannot open this file"
            ),
            Error::BatchFailed { failed, total, .. } => write!(
                f,
                "{failed} of {total} files failed (reasons above); the others were written"
            ),
            Error::Storage(m) => write!(f, "storage error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
