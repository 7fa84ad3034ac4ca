//! UploadPartCopy: a part of an upload copied from an object the gateway can read
//! (docs/GATEWAY.md, "Operations"). The source's stored bytes cannot become the part: they
//! are sealed under the source's data key (and part keys), the part must be sealed under
//! the upload's. So the source range is read as authenticated plaintext through GetObject's
//! own path ([`Service::read_object`]: every object form, version ids, conditions, the
//! plaintext objects `--serve-plaintext-objects` allows) and streamed as the body of an
//! ordinary UploadPart ([`Service::upload_part_sealed`]). The data crosses the gateway
//! twice (read, then write); memory stays bounded by the two streams' buffers.

use std::error::Error as StdError;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::Bytes;
use http::StatusCode;
use s3s::dto::*;
use s3s::{S3Error, S3Result};

use super::multipart::{check_part_number, parse_upload_id, require_header};
use super::{Aborted, Service, error, from_error, invalid_argument, not_implemented};

impl Service {
    /// UploadPartCopy: the source range (or the whole source) read as GetObject reads it,
    /// the copy-source conditions judged as GetObject judges its own (on the ETag and
    /// Last-Modified clients see), then sealed and stored as UploadPart stores a part. A
    /// source that fails while it streams (authentication, upstream) fails the upstream
    /// UploadPart before it completes, so no part, and no truncated one, is stored; a part
    /// stored before under the same number stays.
    pub(super) async fn copy_part(
        &self,
        input: UploadPartCopyInput,
    ) -> S3Result<UploadPartCopyOutput> {
        super::refuse_reserved(&input.key)?;
        if input.sse_customer_key.is_some() || input.copy_source_sse_customer_key.is_some() {
            return Err(not_implemented(
                "SSE-C is not offered by the sealstream gateway (objects are already encrypted client-side)",
            ));
        }
        // The destination first: a bad upload id or part number costs no read of the source.
        check_part_number(input.part_number)?;
        require_header(parse_upload_id(&input.upload_id)?)?;
        let (bucket, key, version) = copy_source(&input.copy_source, "UploadPartCopy")?;
        let range = input
            .copy_source_range
            .as_deref()
            .map(parse_copy_range)
            .transpose()?;
        let read = GetObjectInput {
            bucket: bucket.clone(),
            key: key.clone(),
            version_id: version,
            range: range.map(|(first, last)| Range::Int {
                first,
                last: Some(last),
            }),
            if_match: input.copy_source_if_match.clone(),
            if_none_match: input.copy_source_if_none_match.clone(),
            if_modified_since: input.copy_source_if_modified_since.clone(),
            if_unmodified_since: input.copy_source_if_unmodified_since.clone(),
            ..GetObjectInput::default()
        };
        let mut source = self.read_object(read).await.map_err(copy_condition)?;
        let len = source
            .content_length
            .and_then(|n| u64::try_from(n).ok())
            .ok_or_else(|| {
                error(
                    "InternalError",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the copy source's read has no length",
                )
            })?;
        // A GET serves what a range covers of the object; a copy range must lie within it.
        if let Some((first, last)) = range
            && last.checked_sub(first).and_then(|n| n.checked_add(1)) != Some(len)
        {
            let total = source
                .content_range
                .as_deref()
                .and_then(|c| c.rsplit_once('/'))
                .map(|(_, t)| t.to_string())
                .unwrap_or_else(|| "unknown".into());
            return Err(error(
                "InvalidRange",
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("Range specified is not valid for source object of size: {total}"),
            ));
        }
        let failure: Arc<Mutex<Option<S3Error>>> = Arc::default();
        let body = source.body.take().map(|b| {
            StreamingBlob::wrap(SourceBody {
                inner: b,
                failure: failure.clone(),
            })
        });
        let part = UploadPartInput {
            bucket: input.bucket.clone(),
            key: input.key.clone(),
            upload_id: input.upload_id.clone(),
            part_number: input.part_number,
            content_length: Some(len as i64),
            body,
            ..UploadPartInput::default()
        };
        let out = match self
            .upload_part_sealed(&http::HeaderMap::new(), None, part)
            .await
        {
            Ok(o) => o,
            Err(e) => {
                let source_failed = failure.lock().ok().and_then(|mut f| f.take());
                return Err(source_failed.unwrap_or(e));
            }
        };
        tracing::info!(bucket = %input.bucket, key = %input.key, part = input.part_number,
            source = %format!("{bucket}/{key}"), range = ?range, plaintext = len, "part copied");
        Ok(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: out.e_tag,
                // The part was stored just now (S3's LastModified of a part is its upload).
                last_modified: Some(Timestamp::from(SystemTime::now())),
                ..CopyPartResult::default()
            }),
            copy_source_version_id: source.version_id,
            ..UploadPartCopyOutput::default()
        })
    }
}

/// `x-amz-copy-source-range`: `bytes=FIRST-LAST` only (S3 accepts no other form); whether
/// it lies within the source is judged once the source's length is known.
/// The bucket, key and version id an `x-amz-copy-source` names (CopyObject and
/// UploadPartCopy); an access-point source is refused (`op` names the operation).
pub(super) fn copy_source(
    source: &CopySource,
    op: &str,
) -> S3Result<(String, String, Option<String>)> {
    match source {
        CopySource::Bucket {
            bucket,
            key,
            version_id,
        } => Ok((
            bucket.to_string(),
            key.to_string(),
            version_id.as_deref().map(str::to_string),
        )),
        _ => Err(not_implemented(format!(
            "{op} from an access point is not offered by the sealstream gateway"
        ))),
    }
}

fn parse_copy_range(v: &str) -> S3Result<(u64, u64)> {
    let bad = || {
        invalid_argument(format!(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first \
             and last are the zero-based offsets of the first and last bytes to copy (got {:?})",
            v.chars().take(100).collect::<String>()
        ))
    };
    let (first, last) = v
        .trim()
        .strip_prefix("bytes=")
        .and_then(|r| r.split_once('-'))
        .ok_or_else(bad)?;
    let num = |s: &str| {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u64>().ok()
    };
    match (num(first), num(last)) {
        (Some(f), Some(l)) if f <= l => Ok((f, l)),
        (Some(_), Some(_)) => Err(error(
            "InvalidRange",
            StatusCode::RANGE_NOT_SATISFIABLE,
            "The requested range is not satisfiable (first byte after the last)",
        )),
        _ => Err(bad()),
    }
}

/// A copy-source condition that did not hold is 412 whichever it was (S3 answers no 304 to
/// a copy); GetObject's check answers 304 for If-None-Match and If-Modified-Since. Used by
/// CopyObject too.
pub(super) fn copy_condition(e: S3Error) -> S3Error {
    if e.code().as_str() == "NotModified" {
        error(
            "PreconditionFailed",
            StatusCode::PRECONDITION_FAILED,
            "At least one of the pre-conditions you specified did not hold",
        )
    } else {
        e
    }
}

/// The source's plaintext on its way into the part, remembering why it failed if it does:
/// the upstream UploadPart then fails too, and the client is answered with the source's
/// error (an authentication failure is `SealstreamAuthenticationFailed`, as a GET's),
/// not with the aborted upload's.
struct SourceBody {
    inner: StreamingBlob,
    failure: Arc<Mutex<Option<S3Error>>>,
}

impl futures_util::Stream for SourceBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match ready!(Pin::new(&mut self.inner).poll_next(cx)) {
            Some(Ok(b)) => Poll::Ready(Some(Ok(b))),
            Some(Err(e)) => {
                let answer = source_failure(e.as_ref());
                tracing::warn!(error = %e, "UploadPartCopy: the copy source failed; the part is not stored");
                if let Ok(mut f) = self.failure.lock() {
                    f.get_or_insert(answer);
                }
                Poll::Ready(Some(Err(io::Error::other(e))))
            }
            None => Poll::Ready(None),
        }
    }
}

/// The S3 error for a source body that failed while it streamed: the library's error's
/// own mapping when GetObject's reader stopped on one ([`Aborted`]), else a 502 (reading
/// upstream failed).
fn source_failure(e: &(dyn StdError + Send + Sync + 'static)) -> S3Error {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(a) = c.downcast_ref::<Aborted>() {
            return from_error(&a.0, false);
        }
        if let Some(a) = c
            .downcast_ref::<io::Error>()
            .and_then(|i| i.get_ref())
            .and_then(|i| i.downcast_ref::<Aborted>())
        {
            return from_error(&a.0, false);
        }
        cur = c.source();
    }
    error(
        "InternalError",
        StatusCode::BAD_GATEWAY,
        format!("reading the copy source failed: {e}; the part was not stored"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range("bytes=0-9").unwrap(), (0, 9));
        assert_eq!(parse_copy_range("bytes=5-5").unwrap(), (5, 5));
        for bad in [
            "0-9",
            "bytes=0-",
            "bytes=-9",
            "bytes=a-9",
            "bytes=0-9,20-29",
            "bytes=+1-9",
            "",
        ] {
            let e = parse_copy_range(bad).unwrap_err();
            assert_eq!(e.code().as_str(), "InvalidArgument", "{bad}");
        }
        let e = parse_copy_range("bytes=9-0").unwrap_err();
        assert_eq!(e.code().as_str(), "InvalidRange");
    }

    #[test]
    fn source_failures_keep_the_library_error() {
        let auth = io::Error::other(Aborted(crate::Error::ChunkAuth { index: 3 }));
        let boxed: Box<dyn StdError + Send + Sync> = Box::new(auth);
        assert_eq!(
            source_failure(boxed.as_ref()).code().as_str(),
            "SealstreamAuthenticationFailed"
        );
        let other: Box<dyn StdError + Send + Sync> = Box::new(io::Error::other("reset"));
        let e = source_failure(other.as_ref());
        assert_eq!(e.code().as_str(), "InternalError");
        assert_eq!(e.status_code(), Some(StatusCode::BAD_GATEWAY));
    }

    #[test]
    fn copy_conditions_are_412() {
        let nm = error("NotModified", StatusCode::NOT_MODIFIED, "Not Modified");
        assert_eq!(copy_condition(nm).code().as_str(), "PreconditionFailed");
        let nf = error("NoSuchKey", StatusCode::NOT_FOUND, "x");
        assert_eq!(copy_condition(nf).code().as_str(), "NoSuchKey");
    }
}
