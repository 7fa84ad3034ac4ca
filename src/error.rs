//! Error types: one enum, [`Error`], with precise variants a caller can match, and
//! [`ServiceError`] for S3 and KMS failures, classified by [`ServiceErrorKind`].
//!
//! Every variant's `Display` names the problem *and* what the caller can do about it, in
//! terms of this library (no command-line flags): the `sealstream` binary maps errors to
//! its exit codes and adds its own flag hints when it prints them.

use std::fmt;
use std::io;

/// What went wrong in a header that failed to parse ([`crate::format`]'s error, also
/// reachable as `sealstream::format::HeaderError`).
///
/// Kept separate from [`Error`] (which wraps it as [`Error::Header`]) so that callers
/// (tests, fuzzers, other tools) can match the exact structural fault without string
/// comparisons. It is declared here so that `error` imports no other module; its messages,
/// which quote the format's limits, are written in `format`.
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

impl std::error::Error for HeaderError {}

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

/// Why a rewrap ([`crate::envelope::rewrap`]) refused to build a new header.
///
/// Each case is a request that would remove access to the data or cannot be carried out;
/// nothing was changed, and the remedy is to ask differently.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewrapRefusal {
    /// A key named for removal (as `key_id` or `provider:key_id`) has no stanza in the
    /// header.
    NoSuchStanza(String),
    /// The new header would have no stanza at all: nothing could ever decrypt it.
    NoStanzaLeft,
    /// Stanzas were to be removed, but none of those that would remain verifies against
    /// the key commitment with the keys given, so the data could be locked out.
    WouldLockOut {
        /// An added key that could not open the stanza it had just written, and why
        /// (`None` when no added key was tried).
        added: Option<StanzaFailure>,
    },
    /// A KMS rotation found no stanza of the keys to rotate from: nothing was moved.
    NothingToRotate {
        /// The source keys, as the caller named them.
        from: Vec<String>,
    },
}

impl fmt::Display for RewrapRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewrapRefusal::NoSuchStanza(name) => write!(
                f,
                "cannot remove key '{}': the header has no stanza with that key id (its stanzas list them)",
                crate::text::escape(name)
            ),
            RewrapRefusal::NoStanzaLeft => f.write_str(
                "rewrap would remove every wrapped key and make the file undecryptable; add a key",
            ),
            RewrapRefusal::WouldLockOut { added } => write!(
                f,
                "removing those keys was refused: none of the stanzas that would remain verifies \
                 with the keys given, so the file could become undecryptable{}; keep a stanza \
                 whose key is among the unlocking keys, or add a key",
                RewrapRefusal::why(added)
            ),
            RewrapRefusal::NothingToRotate { from } => write!(
                f,
                "nothing to rotate: the header has no stanza of {}",
                crate::text::escape(&from.join(", "))
            ),
        }
    }
}

impl RewrapRefusal {
    /// The parenthesis naming the added key that failed, or nothing: shared with the CLI's
    /// wording of [`RewrapRefusal::WouldLockOut`].
    pub fn why(added: &Option<StanzaFailure>) -> String {
        match added {
            Some(s) => format!(
                " (the added key {} could not open its own stanza: {})",
                crate::text::escape(&s.key_id),
                crate::text::escape(&s.reason)
            ),
            None => String::new(),
        }
    }
}

/// Every failure sealstream reports.
///
/// Variants are grouped by what the caller can do: fix the request
/// ([`Error::InvalidArgument`]), fix the environment (I/O, key files), distrust the data
/// ([`Error::is_authentication`]), or retry / fix access to a service
/// ([`Error::service_error`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    // ---- the request ----
    /// The caller asked for something invalid: a parameter out of range, a malformed byte
    /// range, a context that breaks the format's limits. The message says which value and
    /// what is allowed.
    InvalidArgument(String),
    /// A rewrap was refused because of what it was asked to do (remove a key the header
    /// does not have, or leave no stanza that the keys at hand can verify); the header was
    /// not changed. Typed, so that a caller (the CLI) can word the remedy in its own terms.
    RewrapRefused(RewrapRefusal),
    /// A well-formed byte range that selects nothing of this plaintext: it starts at or
    /// past the end (or the plaintext is empty). Reported only once the length is
    /// authenticated (the final chunk opened as final), so a server can answer HTTP 416
    /// with `Content-Range: bytes */{plaintext_len}` without trusting a claimed length.
    RangeNotSatisfiable {
        /// First byte asked for (0 for a suffix range of an empty plaintext).
        start: u64,
        /// The authenticated plaintext length.
        plaintext_len: u64,
    },

    // ---- the environment: files and streams ----
    /// An I/O operation failed; the string says which file or stream.
    Io {
        /// What was being done ("reading input 'x'").
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The output exists and replacing it was not asked for (nothing was written).
    OutputExists(String),
    /// A local key file is malformed.
    KeyFile {
        /// The key file path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    // ---- authentication: the data or the key is not what it claims ----
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
    /// refused, was unreachable or kept throttling), with each stanza's reason: retrying
    /// later may succeed, unlike [`Error::UnwrapFailed`].
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

    /// An object written by another encryption client (the Amazon S3 Encryption Client) is
    /// malformed or failed authentication: its metadata, its key commitment or the GCM tag
    /// over its body. Nothing of its plaintext was released.
    ForeignObject {
        /// `s3://bucket/key`.
        object: String,
        /// What is wrong.
        reason: String,
    },
    /// An object written by another encryption client uses a mode sealstream refuses to
    /// read: an unauthenticated one (AES/CBC, S3EC V1 metadata) or a key wrapping it has no
    /// keys for. Nothing was read; no option changes this.
    Unsupported {
        /// `s3://bucket/key`.
        object: String,
        /// Which mode and why.
        reason: String,
    },

    /// A part-wise body's manifest (FORMAT.md §17) is malformed, does not authenticate, or
    /// does not describe the stored body: whole parts were dropped, reordered, added or
    /// truncated, or the manifest is another object's.
    PartManifest(ManifestError),

    // ---- services ----
    /// A key service (KMS) failed; [`ServiceError::kind`] tells throttling from access
    /// denied from a missing key, and the service's code and request id are kept.
    KeyService(ServiceError),

    /// The caller cancelled the operation (a `CancelToken` or a cancellation token) before
    /// it finished. The sentence says what was cancelled and what is left: a stream's
    /// output is incomplete (an encrypted output has no final chunk, so it never decrypts
    /// as whole); an S3 upload's parts and companion were removed, so nothing was stored.
    Cancelled(String),

    /// A storage service (S3) failed; [`ServiceError::kind`] tells throttling from access
    /// denied from a missing object or a failed precondition.
    Storage(ServiceError),
}

impl Error {
    /// A stream stopped by its `CancelToken`: the output written so far is incomplete.
    pub fn stream_cancelled() -> Self {
        Error::Cancelled(
            "the stream was stopped before the end; the output is incomplete: discard it and run again"
                .into(),
        )
    }

    /// Wraps an `io::Error` with a description of what was being done.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// True when writing failed because the reader closed the pipe (a consumer such as
    /// `| head` or a client that hung up): often not a failure worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }

    /// A storage failure without a service answer to classify (a local invariant broke).
    pub fn storage(message: impl Into<String>) -> Self {
        Error::Storage(ServiceError::new(
            Service::S3,
            ServiceErrorKind::Other,
            message,
        ))
    }

    /// A key-service failure without a service answer to classify.
    pub fn key_service(message: impl Into<String>) -> Self {
        Error::KeyService(ServiceError::new(
            Service::Kms,
            ServiceErrorKind::Other,
            message,
        ))
    }

    /// True when a key service (not the data or the key) made this fail: an unwrap that
    /// failed this way may succeed later, so it is reported apart from authentication.
    pub fn is_key_service(&self) -> bool {
        matches!(self, Error::KeyService(_) | Error::KeyServiceStanzas(_))
    }

    /// The service failure behind this error, if a storage or key service caused it, so a
    /// caller can retry throttling or report access denied without parsing messages.
    pub fn service_error(&self) -> Option<&ServiceError> {
        match self {
            Error::Storage(e) | Error::KeyService(e) => Some(e),
            _ => None,
        }
    }

    /// True for errors that mean "the data or the key failed authentication": the input is
    /// malformed, truncated or tampered with, or it was not sealed for the keys and context
    /// given. Retrying does not help; distrust the input (nothing unauthenticated was
    /// released).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            Error::Header(_)
                | Error::ContextMismatch { .. }
                | Error::NoMatchingKey { .. }
                | Error::UnwrapFailed(_)
                | Error::CommitmentMismatch
                | Error::ChunkAuth { .. }
                | Error::Truncated { .. }
                | Error::LastChunkEmpty { .. }
                | Error::TooManyChunks
                | Error::ObjectMetadata { .. }
                | Error::ForeignObject { .. }
                | Error::PartManifest(_)
        )
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
            Error::InvalidArgument(m) => write!(f, "{m}"),
            Error::RewrapRefused(r) => write!(f, "{r}"),
            Error::RangeNotSatisfiable {
                start,
                plaintext_len,
            } => write!(
                f,
                "range starts at byte {start} but the plaintext is only {plaintext_len} bytes long; ask for a range that starts before the end"
            ),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::OutputExists(p) => write!(
                f,
                "output '{p}' already exists and was left untouched; choose another path or allow replacing it"
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
                    "encryption context mismatch: the file has no '{}' pair you required; check the expected context",
                    crate::text::escape(key)
                ),
                Some(v) => write!(
                    f,
                    "encryption context mismatch: the file has {}=\"{}\", not the value you required; check the expected context",
                    crate::text::escape(key),
                    crate::text::escape(v)
                ),
            },
            Error::NoMatchingKey { stanzas, offered } => {
                write!(
                    f,
                    "no key to decrypt: the file is wrapped for [{}] but the keys offered are [{}]; offer a key it is wrapped for",
                    crate::text::escape(&stanzas.join(", ")),
                    crate::text::escape(&offered.join(", "))
                )?;
                if stanzas.iter().any(|s| s.starts_with("aws-kms:")) {
                    write!(f, ", or trust the KMS key it names")?;
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
                "more than 2^32 chunks, the format's limit per payload key: the input is corrupt or was not sealed with this chunk size"
            ),
            Error::PartManifest(e) => write!(
                f,
                "part-wise object: {e}; the stored object is not what its writer completed"
            ),
            Error::ObjectMetadata { object, reason } => {
                write!(f, "{object}: sealstream object metadata: {reason}")
            }
            Error::ForeignObject { object, reason } => write!(
                f,
                "{object}: Amazon S3 Encryption Client object: {reason}; nothing was released"
            ),
            Error::Unsupported { object, reason } => write!(f, "{object}: refused: {reason}"),
            Error::KeyService(m) => write!(f, "key service error: {m}"),
            Error::Cancelled(what) => write!(f, "cancelled: {what}"),
            Error::Storage(m) => write!(f, "storage error: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Storage(e) | Error::KeyService(e) => e.source(),
            _ => None,
        }
    }
}

/// Which remote service failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Service {
    /// Amazon S3 (or an S3-compatible store).
    S3,
    /// AWS Key Management Service.
    Kms,
}

impl Service {
    /// The service's usual short name ("S3", "KMS").
    pub fn name(self) -> &'static str {
        match self {
            Service::S3 => "S3",
            Service::Kms => "KMS",
        }
    }
}

/// What kind of failure a service reported, so callers can act on it (retry throttling,
/// report access denied, create what is missing) without matching message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceErrorKind {
    /// The service asked us to slow down (S3 `SlowDown`, KMS `ThrottlingException`…) and
    /// kept doing so after the retries: retrying later may succeed.
    Throttled,
    /// The credentials were refused or lack permission (`AccessDenied`,
    /// `InvalidAccessKeyId`, `SignatureDoesNotMatch`…).
    AccessDenied,
    /// No usable credentials were found or loaded.
    Credentials,
    /// The bucket, object, upload, version or key does not exist.
    NotFound,
    /// A condition (`If-Match`, `If-None-Match`, `If-Unmodified-Since`) did not hold: the
    /// object exists or changed concurrently.
    PreconditionFailed,
    /// No answer in time (connect, read or operation timeout, or a stalled transfer).
    Timeout,
    /// The service could not be reached (connection refused, DNS, TLS, closed early).
    Unreachable,
    /// The service failed on its side (HTTP 5xx, `InternalError`, `KMSInternalException`).
    ServiceInternal,
    /// The service rejected the request as invalid (wrong region, bad argument, a key in
    /// the wrong state).
    InvalidRequest,
    /// Anything else, including answers that could not be read.
    Other,
}

impl ServiceErrorKind {
    /// Classifies an AWS error code (and the HTTP status when there is no code, as for
    /// HEAD answers) into a kind.
    pub fn from_code(code: Option<&str>, status: Option<u16>) -> ServiceErrorKind {
        use ServiceErrorKind as K;
        match code {
            Some(
                "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "ThrottledException"
                | "RequestLimitExceeded"
                | "TooManyRequestsException"
                | "LimitExceededException"
                | "RequestThrottled"
                | "RequestThrottledException"
                | "ProvisionedThroughputExceededException",
            ) => K::Throttled,
            Some(
                "AccessDenied"
                | "AccessDeniedException"
                | "AllAccessDisabled"
                | "InvalidAccessKeyId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "InvalidToken"
                | "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "AccountProblem",
            ) => K::AccessDenied,
            Some(
                "NoSuchKey" | "NotFound" | "NoSuchBucket" | "NoSuchUpload" | "NoSuchVersion"
                | "NotFoundException",
            ) => K::NotFound,
            Some("PreconditionFailed" | "ConditionalRequestConflict") => K::PreconditionFailed,
            Some("RequestTimeout" | "RequestTimeoutException" | "DependencyTimeoutException") => {
                K::Timeout
            }
            Some(
                "InternalError"
                | "InternalFailure"
                | "ServiceUnavailable"
                | "ServiceUnavailableException"
                | "KMSInternalException"
                | "KMSInternalError",
            ) => K::ServiceInternal,
            Some(
                "InvalidRequest"
                | "InvalidArgument"
                | "ValidationException"
                | "PermanentRedirect"
                | "AuthorizationHeaderMalformed"
                | "InvalidBucketName"
                | "KeyTooLongError"
                | "EntityTooLarge"
                | "EntityTooSmall"
                | "InvalidPart"
                | "InvalidPartOrder"
                | "DisabledException"
                | "KMSInvalidStateException"
                | "InvalidKeyUsageException"
                | "KeyUnavailableException"
                | "InvalidArnException",
            ) => K::InvalidRequest,
            _ => match status {
                Some(403) => K::AccessDenied,
                Some(404) => K::NotFound,
                Some(412) => K::PreconditionFailed,
                Some(429) | Some(503) => K::Throttled,
                Some(408) => K::Timeout,
                Some(s) if s >= 500 => K::ServiceInternal,
                Some(400) => K::InvalidRequest,
                _ => K::Other,
            },
        }
    }
}

/// A failure of S3 or KMS, classified and with what the service said: its error code,
/// request id (for support cases) and the operation, plus a one-line message for people.
///
/// Boxed inside, so that [`Error`] stays small on every `Result` path.
#[derive(Debug)]
pub struct ServiceError(Box<ServiceErrorInner>);

#[derive(Debug)]
struct ServiceErrorInner {
    service: Service,
    kind: ServiceErrorKind,
    operation: Option<String>,
    code: Option<String>,
    request_id: Option<String>,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ServiceError {
    /// A failure of `service` of `kind`, described by `message` (one sentence: what
    /// happened and what to do).
    pub fn new(service: Service, kind: ServiceErrorKind, message: impl Into<String>) -> Self {
        ServiceError(Box::new(ServiceErrorInner {
            service,
            kind,
            operation: None,
            code: None,
            request_id: None,
            message: message.into(),
            source: None,
        }))
    }

    /// Names the operation that failed (`GetObject`, `Decrypt`…).
    pub fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.0.operation = Some(operation.into());
        self
    }

    /// Keeps the service's error code.
    pub fn with_code(mut self, code: Option<String>) -> Self {
        self.0.code = code;
        self
    }

    /// Keeps the service's request id.
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.0.request_id = request_id;
        self
    }

    /// Keeps the underlying error (an SDK error) for `source()` chains.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.0.source = Some(Box::new(source));
        self
    }

    /// Replaces the message (to add context such as the object's URL).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.0.message = message.into();
        self
    }

    /// Which service failed.
    pub fn service(&self) -> Service {
        self.0.service
    }

    /// What kind of failure it was.
    pub fn kind(&self) -> ServiceErrorKind {
        self.0.kind
    }

    /// The operation that failed, if known.
    pub fn operation(&self) -> Option<&str> {
        self.0.operation.as_deref()
    }

    /// The service's error code (`NoSuchKey`, `ThrottlingException`…), if it sent one.
    pub fn code(&self) -> Option<&str> {
        self.0.code.as_deref()
    }

    /// The service's request id, if it sent one.
    pub fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The one-line message for people.
    pub fn message(&self) -> &str {
        &self.0.message
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for ServiceError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What is wrong with a part-wise body's manifest or with the object it describes
/// (FORMAT.md §17). All are authentication failures: the stored object is not what its
/// writer completed. Declared here so that `error` needs no other module; its `Display`
/// lives in `parts`, beside the limits it quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ManifestError {
    /// Shorter than an empty manifest, longer than 10,000 entries, or not a whole number
    /// of entries.
    BadLength(usize),
    /// The MAC does not verify: the manifest was modified, or belongs to another object
    /// (another data key or header).
    MacMismatch,
    /// The magic bytes are not `SEALPRTS`.
    BadMagic,
    /// A manifest version this build does not read.
    UnsupportedVersion(u8),
    /// Reserved bytes are not zero.
    ReservedNonZero,
    /// The count field disagrees with the number of entries present.
    CountMismatch {
        /// The count field.
        declared: u32,
        /// Entries present.
        present: usize,
    },
    /// No parts at all.
    NoParts,
    /// A part number outside `1..=10000`.
    PartNumberOutOfRange(u32),
    /// Part numbers are not strictly increasing (a duplicate or out-of-order entry).
    PartsNotIncreasing {
        /// The offending number.
        number: u32,
        /// The number before it.
        previous: u32,
    },
    /// A part whose ciphertext would exceed S3's 5 GiB part limit, or the format's chunk limit.
    PartTooLarge {
        /// The part's number.
        number: u32,
        /// Its plaintext length.
        plaintext_len: u64,
    },
    /// The object's body length is not the sum of its parts' ciphertext lengths: whole
    /// parts or bytes were removed, added or truncated.
    BodyLengthMismatch {
        /// What the manifest's parts add up to.
        expected: u64,
        /// What the object holds.
        actual: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_codes_are_classified() {
        use ServiceErrorKind as K;
        let cases = [
            (Some("SlowDown"), None, K::Throttled),
            (Some("ThrottlingException"), Some(400), K::Throttled),
            (Some("AccessDenied"), Some(403), K::AccessDenied),
            (Some("NoSuchKey"), Some(404), K::NotFound),
            (Some("NotFoundException"), Some(400), K::NotFound),
            (Some("PreconditionFailed"), Some(412), K::PreconditionFailed),
            (Some("RequestTimeout"), Some(400), K::Timeout),
            (Some("InternalError"), Some(500), K::ServiceInternal),
            (
                Some("KMSInvalidStateException"),
                Some(400),
                K::InvalidRequest,
            ),
            (None, Some(404), K::NotFound),
            (None, Some(412), K::PreconditionFailed),
            (None, Some(503), K::Throttled),
            (None, Some(502), K::ServiceInternal),
            (Some("SomethingNew"), Some(418), K::Other),
            (None, None, K::Other),
        ];
        for (code, status, kind) in cases {
            assert_eq!(
                ServiceErrorKind::from_code(code, status),
                kind,
                "{code:?} {status:?}"
            );
        }
    }

    #[test]
    fn service_errors_keep_code_request_id_and_source() {
        let e = Error::Storage(
            ServiceError::new(
                Service::S3,
                ServiceErrorKind::NotFound,
                "GetObject s3://b/k: NoSuchKey",
            )
            .with_operation("GetObject")
            .with_code(Some("NoSuchKey".into()))
            .with_request_id(Some("REQ1".into()))
            .with_source(io::Error::other("inner")),
        );
        let s = e.service_error().expect("a service error");
        assert_eq!(
            (
                s.kind(),
                s.code(),
                s.request_id(),
                s.operation(),
                s.service()
            ),
            (
                ServiceErrorKind::NotFound,
                Some("NoSuchKey"),
                Some("REQ1"),
                Some("GetObject"),
                Service::S3
            )
        );
        assert_eq!(
            e.to_string(),
            "storage error: GetObject s3://b/k: NoSuchKey"
        );
        let inner = std::error::Error::source(&e).expect("source kept");
        assert_eq!(inner.to_string(), "inner");
        assert!(!e.is_key_service());
        assert!(Error::key_service("x").is_key_service());
    }
}
