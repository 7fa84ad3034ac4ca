//! From sealstream's errors to the S3 error code and HTTP status a client expects.
//!
//! S3 clients decide what to do from the status (retry 5xx and 503, not 4xx) and print the
//! code: so service failures keep the upstream's code, and failures of our own get either
//! the S3 code that means the same thing or one of the documented `Sealstream…` codes
//! (docs/GATEWAY.md, "Errors").

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use http::StatusCode;
use s3s::{S3Error, S3ErrorCode};

use crate::Error;
use crate::error::ServiceErrorKind;

/// Stored data failed authentication (tampered, truncated, metadata broken): retrying
/// cannot help, so it is a 4xx (SDKs do not retry 409) with its own code.
pub const CODE_AUTHENTICATION_FAILED: &str = "SealstreamAuthenticationFailed";
/// The object exists upstream but is not a sealstream object, and the gateway is not
/// configured to serve such objects unchanged.
pub const CODE_NOT_SEALSTREAM: &str = "SealstreamNotEncrypted";
/// The gateway holds no key that opens this object (or the encryption context differs).
pub const CODE_NO_KEY: &str = "SealstreamNoKey";
/// A read of a version id whose companion header or part manifest was deleted, and whose
/// versions hold more than one content: which one belongs to the version is not knowable
/// (src/gateway/service/versions.rs), so nothing is guessed.
pub const CODE_AMBIGUOUS_VERSION: &str = "SealstreamAmbiguousVersion";

/// An error with any code (standard or ours) and an explicit status.
pub(crate) fn error(code: &str, status: StatusCode, message: impl Into<String>) -> S3Error {
    let code = S3ErrorCode::from_bytes(code.as_bytes())
        .unwrap_or_else(|| S3ErrorCode::Custom("InternalError".into()));
    let mut e = S3Error::with_message(code, message.into());
    e.set_status_code(status);
    e
}

/// An operation this gateway does not offer, with why and what to do instead.
pub(crate) fn not_implemented(message: impl Into<String>) -> S3Error {
    error("NotImplemented", StatusCode::NOT_IMPLEMENTED, message)
}

/// A request the gateway refuses as invalid.
pub(crate) fn invalid_argument(message: impl Into<String>) -> S3Error {
    error("InvalidArgument", StatusCode::BAD_REQUEST, message)
}

/// The refusal of a plaintext (non-sealstream) object.
pub(crate) fn not_sealstream(bucket: &str, key: &str) -> S3Error {
    error(
        CODE_NOT_SEALSTREAM,
        StatusCode::CONFLICT,
        format!(
            "s3://{bucket}/{key} is not a sealstream object (no sealstream metadata); this gateway \
             serves only encrypted objects. To serve such objects unchanged during a migration, \
             start it with --serve-plaintext-objects"
        ),
    )
}

/// Maps a library error. `range` is true when the request had a Range header, so that an
/// unsatisfiable range (a usage error judged on the authenticated length) becomes 416.
pub(crate) fn from_error(e: &Error, range: bool) -> S3Error {
    let text = e.to_string();
    match e {
        Error::Storage(se) => {
            let status = status_of_kind(se.kind());
            match se.code() {
                Some(code) => error(code, status, text),
                None => error(default_code(se.kind()), status, text),
            }
        }
        Error::KeyService(se) => match se.kind() {
            ServiceErrorKind::Throttled => error("SlowDown", StatusCode::SERVICE_UNAVAILABLE, text),
            ServiceErrorKind::Timeout | ServiceErrorKind::Unreachable => {
                error("ServiceUnavailable", StatusCode::SERVICE_UNAVAILABLE, text)
            }
            _ => error(
                "InternalError",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the gateway's key service failed: {text}"),
            ),
        },
        Error::KeyServiceStanzas(_) => {
            error("ServiceUnavailable", StatusCode::SERVICE_UNAVAILABLE, text)
        }
        Error::NoMatchingKey { .. } | Error::ContextMismatch { .. } => {
            error(CODE_NO_KEY, StatusCode::FORBIDDEN, text)
        }
        Error::OutputExists(_) => error(
            "PreconditionFailed",
            StatusCode::PRECONDITION_FAILED,
            "At least one of the pre-conditions you specified did not hold (the object exists)",
        ),
        Error::RangeNotSatisfiable { .. } => {
            error("InvalidRange", StatusCode::RANGE_NOT_SATISFIABLE, text)
        }
        Error::InvalidArgument(_) if range => {
            error("InvalidRange", StatusCode::RANGE_NOT_SATISFIABLE, text)
        }
        Error::InvalidArgument(_) => invalid_argument(text),
        e if e.is_authentication() => error(CODE_AUTHENTICATION_FAILED, StatusCode::CONFLICT, text),
        _ => error("InternalError", StatusCode::INTERNAL_SERVER_ERROR, text),
    }
}

fn status_of_kind(kind: ServiceErrorKind) -> StatusCode {
    use ServiceErrorKind as K;
    match kind {
        K::NotFound => StatusCode::NOT_FOUND,
        K::AccessDenied | K::Credentials => StatusCode::FORBIDDEN,
        K::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        K::Throttled | K::Timeout | K::Unreachable => StatusCode::SERVICE_UNAVAILABLE,
        K::InvalidRequest => StatusCode::BAD_REQUEST,
        K::ServiceInternal | K::Other => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn default_code(kind: ServiceErrorKind) -> &'static str {
    use ServiceErrorKind as K;
    match kind {
        K::NotFound => "NoSuchKey",
        K::AccessDenied | K::Credentials => "AccessDenied",
        K::PreconditionFailed => "PreconditionFailed",
        K::Throttled => "SlowDown",
        K::Timeout | K::Unreachable => "ServiceUnavailable",
        K::InvalidRequest => "InvalidRequest",
        _ => "InternalError",
    }
}

/// Maps an upstream SDK error of a call the gateway passes through: the upstream's own
/// code and status when it answered, 503 when it could not be reached.
pub(crate) fn from_sdk<E>(
    op: &str,
    e: &SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> S3Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e
        .raw_response()
        .map(|r| r.status().as_u16())
        .and_then(|s| StatusCode::from_u16(s).ok());
    let message = e.message().map(str::to_string).unwrap_or_else(|| {
        format!(
            "upstream {op} failed: {}",
            crate::aws::one_line(&e.to_string())
        )
    });
    match (e.code(), status) {
        (Some(code), Some(status)) => error(code, status, message),
        (None, Some(status)) => {
            let code = match status.as_u16() {
                404 => "NotFound",
                403 => "AccessDenied",
                412 => "PreconditionFailed",
                304 => "NotModified",
                503 => "SlowDown",
                400 => "InvalidRequest",
                _ => "InternalError",
            };
            error(code, status, message)
        }
        (_, None) => error(
            "ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the gateway could not reach its upstream S3 for {op}: {message}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Service, ServiceError};

    #[test]
    fn kinds_and_codes() {
        let se = |kind, code: Option<&str>| {
            Error::Storage(
                ServiceError::new(Service::S3, kind, "x").with_code(code.map(str::to_string)),
            )
        };
        let cases = [
            (
                se(ServiceErrorKind::NotFound, Some("NoSuchKey")),
                "NoSuchKey",
                404,
            ),
            (
                se(ServiceErrorKind::NotFound, Some("NoSuchBucket")),
                "NoSuchBucket",
                404,
            ),
            (se(ServiceErrorKind::NotFound, None), "NoSuchKey", 404),
            (
                se(ServiceErrorKind::AccessDenied, Some("AccessDenied")),
                "AccessDenied",
                403,
            ),
            (
                se(ServiceErrorKind::PreconditionFailed, None),
                "PreconditionFailed",
                412,
            ),
            (
                se(ServiceErrorKind::Throttled, Some("SlowDown")),
                "SlowDown",
                503,
            ),
            (se(ServiceErrorKind::Other, None), "InternalError", 500),
            (
                Error::ChunkAuth { index: 3 },
                CODE_AUTHENTICATION_FAILED,
                409,
            ),
            (Error::CommitmentMismatch, CODE_AUTHENTICATION_FAILED, 409),
            (
                Error::OutputExists("s3://b/k".into()),
                "PreconditionFailed",
                412,
            ),
            (Error::InvalidArgument("x".into()), "InvalidArgument", 400),
        ];
        for (e, code, status) in cases {
            let s = from_error(&e, false);
            assert_eq!(s.code().as_str(), code, "{e}");
            assert_eq!(s.status_code().map(|s| s.as_u16()), Some(status), "{e}");
        }
        let unsatisfiable = Error::RangeNotSatisfiable {
            start: 9,
            plaintext_len: 9,
        };
        let r = from_error(&unsatisfiable, false);
        assert_eq!(
            (r.code().as_str(), r.status_code().map(|s| s.as_u16())),
            ("InvalidRange", Some(416))
        );
    }
}
