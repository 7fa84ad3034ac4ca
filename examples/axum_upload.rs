//! An HTTP service that stores uploads as encrypted S3 objects and serves them back
//! decrypted, streaming both ways in constant memory: what embedding sealstream in a tokio
//! service looks like.
//!
//! - `PUT /objects/{key}` streams the request body (never buffered whole) into
//!   `s3://$SEALSTREAM_BUCKET/{key}` with [`S3::put_encrypted`], under a fresh data key
//!   wrapped for the service's key. Request headers `x-context-NAME: VALUE` become the
//!   object's encryption context (authenticated, not secret). `If-None-Match: *` refuses to
//!   replace an existing object (412). Answers `201` with the sizes.
//! - `GET /objects/{key}` streams the authenticated plaintext back. `x-context-NAME: VALUE`
//!   headers on a GET are *required* to match the object's context (else 403, before any
//!   key is used). `Range: bytes=A-B`, `bytes=A-` and `bytes=-N` are served with
//!   [`S3::get_range_decrypted`], which fetches only the covering chunks.
//!
//! **Tampering never looks like a clean end of file.** The response headers are sent only
//! once the first authenticated bytes exist, so a failure before that (a tampered first
//! chunk, a wrong key, a truncated object on an end-relative range) is an ordinary error
//! status with no body. A failure after that (a chunk further in fails authentication)
//! aborts the body stream with an error: hyper then closes the connection without the
//! final empty chunk of the chunked encoding, so every HTTP client reports an incomplete
//! transfer instead of a short file. Nothing from the failed chunk is ever sent.
//!
//! **Status codes** come from the error's kind, not its message
//! ([`sealstream::error::ServiceErrorKind`]): S3 `NotFound` → 404, `AccessDenied` → 403,
//! `PreconditionFailed` (and an existing object under `If-None-Match: *`) → 412, `Throttled` → 503, `Timeout` → 504, unreachable → 502; a
//! context that does not match → 403; stored data that fails authentication (tampered,
//! truncated, not sealed for our key) → 502 with no plaintext; a bad request → 400; a range
//! that is not satisfiable (judged on the authenticated length) → 416.
//!
//! **A client that hangs up mid-upload** makes the body stream fail, so `put_encrypted`
//! fails and aborts its multipart upload (and were the handler's future dropped instead,
//! the S3 layer's drop guard would abort it in the background): no partial object and no
//! orphaned multipart upload remain.
//!
//! Configuration (environment):
//! - `SEALSTREAM_BUCKET` (required): where objects go;
//! - `SEALSTREAM_KMS_KEY`: a KMS key id, alias or ARN to wrap data keys for; else
//!   `SEALSTREAM_KEY_FILE`: a local key file (`sealstream keygen` writes one);
//! - `SEALSTREAM_BIND`: listen address, default `127.0.0.1:0`; the bound address is the
//!   first line on stdout (`listening on http://127.0.0.1:PORT`);
//! - AWS: the standard chain (`AWS_REGION`, credentials, `AWS_ENDPOINT_URL` for an
//!   emulator), loaded once into one `SdkConfig` shared by the S3 and KMS clients.
//!
//! Run: `SEALSTREAM_BUCKET=my-bucket SEALSTREAM_KEY_FILE=key.txt cargo run --example
//! axum_upload --features s3,kms`, then
//! `curl -T big.bin -H 'x-context-tenant: acme' http://127.0.0.1:PORT/objects/big.bin` and
//! `curl -H 'Range: bytes=-100' http://127.0.0.1:PORT/objects/big.bin`.
//!
//! Dependencies: `axum` (0.8, `http1` + `tokio` only; on hyper 1 and tokio 1, already in
//! the tree through the AWS SDK, so it adds axum, axum-core, matchit and a few small
//! crates) and `tokio-util` with `io` (for `StreamReader`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, ready};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use futures_util::{StreamExt, TryStreamExt};
use sealstream::envelope::{EncryptParams, Opening, Sealing};
use sealstream::error::ServiceErrorKind;
use sealstream::keys::AsyncKeyProvider;
use sealstream::kms::{Kms, KmsKey, KmsSettings};
use sealstream::range::ByteRange;
use sealstream::s3::{GetOptions, ObjectInfo, PutOptions, S3, S3Settings, S3Url};
use sealstream::{Backend, Context, Error, LocalKey};
use tokio::io::AsyncWrite;
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;
use tokio_util::sync::PollSender;

/// The service's key: one to wrap new data keys for, and the same key trusted to unwrap
/// (for KMS these are two values: `for_wrapping` and `trusted`).
struct Keys {
    wrap: Arc<dyn AsyncKeyProvider>,
    unwrap: Arc<dyn AsyncKeyProvider>,
}

impl Keys {
    fn for_wrapping(&self) -> [&dyn AsyncKeyProvider; 1] {
        [self.wrap.as_ref()]
    }

    fn for_unwrapping(&self) -> [&dyn AsyncKeyProvider; 1] {
        [self.unwrap.as_ref()]
    }
}

struct App {
    s3: S3,
    keys: Keys,
    bucket: String,
}

type Shared = Arc<App>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bucket = std::env::var("SEALSTREAM_BUCKET")
        .map_err(|_| "set SEALSTREAM_BUCKET to the bucket the objects go to")?;
    let bind = std::env::var("SEALSTREAM_BIND").unwrap_or_else(|_| "127.0.0.1:0".into());

    // The service's one AWS configuration, as it would load it for any other client. The
    // HTTPS client is named explicitly because sealstream builds aws-config without its
    // default TLS stack (rustls + ring here, the same as sealstream's own loader).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;

    let keys = match std::env::var("SEALSTREAM_KMS_KEY") {
        Ok(name) => {
            let kms = Kms::from_conf(&conf, KmsSettings::default());
            Keys {
                wrap: Arc::new(KmsKey::for_wrapping(&kms, &name)),
                unwrap: Arc::new(KmsKey::trusted(&kms, &name)?),
            }
        }
        Err(_) => {
            let path = std::env::var("SEALSTREAM_KEY_FILE")
                .map_err(|_| "set SEALSTREAM_KMS_KEY (a KMS key) or SEALSTREAM_KEY_FILE")?;
            let key: Arc<dyn AsyncKeyProvider> =
                Arc::new(LocalKey::load(std::path::Path::new(&path))?);
            Keys {
                wrap: key.clone(),
                unwrap: key,
            }
        }
    };
    let s3 = S3::from_conf(&conf, S3Settings::default())?;
    let app: Shared = Arc::new(App { s3, keys, bucket });

    let router = Router::new()
        .route("/objects/{*key}", put(put_object).get(get_object))
        .with_state(app);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    // First line on stdout: how a supervisor (or the test) finds the port.
    println!("listening on http://{}", listener.local_addr()?);
    // A service with a graceful shutdown would call `app.s3.abort_all().await` after it,
    // so uploads still running are aborted rather than left for a lifecycle rule.
    axum::serve(listener, router).await?;
    Ok(())
}

impl App {
    fn url(&self, key: &str) -> Result<S3Url, ApiError> {
        let url = S3Url::parse(&format!("s3://{}/{key}", self.bucket))?;
        url.require_object()?;
        Ok(url)
    }
}

/// `x-context-NAME: VALUE` headers as an encryption context (names are lowercase in HTTP).
fn context_from(headers: &HeaderMap) -> Result<Context, ApiError> {
    let mut pairs = Vec::new();
    for (name, value) in headers {
        if let Some(k) = name.as_str().strip_prefix("x-context-") {
            let v = value
                .to_str()
                .map_err(|_| ApiError::bad_request(format!("header {name} is not text")))?;
            pairs.push((k.to_string(), v.to_string()));
        }
    }
    Ok(Context::from_pairs(pairs)?)
}

async fn put_object(
    State(app): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let url = app.url(&key)?;
    let params = EncryptParams {
        context: context_from(&headers)?,
        ..EncryptParams::default()
    };
    // A fresh data key wrapped for the service's key (KMS is awaited on this runtime).
    let sealing = Sealing::for_providers_async(&app.keys.for_wrapping(), &params).await?;
    // The body as an AsyncRead, chunk by chunk as hyper receives it: never buffered whole.
    let input = StreamReader::new(body.into_data_stream().map_err(io::Error::other));
    let opts = PutOptions {
        // HTTP PUT replaces, unless the client asked for create-only.
        force: headers
            .get(header::IF_NONE_MATCH)
            .map(HeaderValue::as_bytes)
            != Some(b"*"),
        ..PutOptions::default()
    };
    // If the client hangs up, the body stream fails, so does this upload, and its multipart
    // upload is aborted before the error comes back (dropping this future does the same).
    let report = app.s3.put_encrypted(&url, input, sealing, &opts).await?;
    let text = format!(
        "stored {url}: {} plaintext bytes, {} body bytes, {} parts\n",
        report.plaintext_bytes, report.body_bytes, report.parts
    );
    Ok((StatusCode::CREATED, text).into_response())
}

/// What the decrypting task sends the response body: authenticated plaintext, then either
/// a clean end (the channel closes) or the error that stopped it.
enum Msg {
    Data(Bytes),
    Failed(Error),
}

async fn get_object(
    State(app): State<Shared>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let url = app.url(&key)?;
    let expected = context_from(&headers)?;
    let range = match headers.get(header::RANGE) {
        Some(v) => parse_range(v)?,
        None => None,
    };
    // HEAD + header; then the expected context is checked and the data key unwrapped and
    // verified against the header's key commitment, all before any body byte is read.
    let obj = app.s3.open_object(&url).await?;
    let opening = Opening::unlock_async(
        obj.header.clone(),
        &app.keys.for_unwrapping(),
        &expected,
        Backend::default(),
    )
    .await?;
    // A range is planned first: when it depends on where the plaintext ends, the final
    // chunk is authenticated now, so the headers below rest on an authentic length and an
    // unsatisfiable range is a typed error (416) before any body byte.
    let planned = match range {
        Some(r) => Some(app.s3.plan_range(&obj, &opening, r).await?),
        None => None,
    };
    let served = planned.as_ref().map(|p| p.served());

    // Decrypt in a task that writes into a bounded channel; the response body reads it.
    let (tx, mut rx) = mpsc::channel::<Msg>(4);
    let task_app = app.clone();
    let task_obj: ObjectInfo = obj.clone();
    tokio::spawn(async move {
        let mut out = ChannelWriter {
            tx: PollSender::new(tx.clone()),
        };
        let opts = GetOptions::default();
        let r = match &planned {
            Some(p) => {
                task_app
                    .s3
                    .get_planned_range(&task_obj, &opening, p, &mut out, &opts)
                    .await
            }
            None => {
                task_app
                    .s3
                    .get_decrypted(&task_obj, &opening, &mut out, &opts)
                    .await
            }
        };
        if let Err(e) = r {
            // A client that went away is not worth reporting; anything else is.
            if !e.is_broken_pipe() {
                eprintln!("GET {}: {e}", task_obj.url);
            }
            let _ = tx.send(Msg::Failed(e)).await;
        }
    });

    // Headers wait for the first authenticated bytes (or the end): an early failure is a
    // plain error status.
    let first = match rx.recv().await {
        Some(Msg::Failed(e)) => return Err(e.into()),
        Some(Msg::Data(b)) => Some(b),
        None => None,
    };
    let rest = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await? {
            Msg::Data(b) => Some((Ok(b), rx)),
            // Ends the body with an error: hyper aborts the connection, the client sees a
            // broken transfer, never a clean end of a shorter file.
            Msg::Failed(e) => Some((Err(io::Error::other(e.to_string())), rx)),
        }
    });
    let body =
        Body::from_stream(futures_util::stream::iter(first.map(Ok::<_, io::Error>)).chain(rest));

    let mut resp = Response::new(body);
    if let Some(served) = served {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        // `bytes A-B/TOTAL`, or `/*` when the range never reached the final chunk (the
        // total is then only S3's claim; the bytes themselves are authenticated either way).
        if let Some(v) = served
            .content_range()
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// One `bytes=` range (HTTP syntax, decimal only). Several ranges are not supported and are
/// ignored, as RFC 9110 allows: the whole object is served.
fn parse_range(v: &HeaderValue) -> Result<Option<ByteRange>, ApiError> {
    let bad = || ApiError::bad_request("Range must be bytes=A-B, bytes=A- or bytes=-N".into());
    let s = v.to_str().map_err(|_| bad())?;
    let spec = s.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let num = |t: &str| t.trim().parse::<u64>().map_err(|_| bad());
    let r = match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, false) => ByteRange::Suffix(num(b)?),
        (false, true) => ByteRange::From(num(a)?),
        (false, false) => ByteRange::Inclusive(num(a)?, num(b)?),
        (true, true) => return Err(bad()),
    };
    Ok(Some(r.validate().map_err(|e| ApiError {
        status: StatusCode::RANGE_NOT_SATISFIABLE,
        message: e.to_string(),
    })?))
}

/// An `AsyncWrite` into the response channel. A write waits for room (so the download goes
/// no faster than the client reads) and fails with `BrokenPipe` once the client is gone,
/// which stops the download.
struct ChannelWriter {
    tx: PollSender<Msg>,
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let gone = || io::Error::new(io::ErrorKind::BrokenPipe, "the client went away");
        ready!(self.tx.poll_reserve(cx)).map_err(|_| gone())?;
        self.tx
            .send_item(Msg::Data(Bytes::copy_from_slice(buf)))
            .map_err(|_| gone())?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// An HTTP error answer: a status chosen from the error's kind and a one-line message.
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad_request(message: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message,
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError {
            status: status_for(&e),
            message: e.to_string(),
        }
    }
}

/// The HTTP status for a library error, from its variant and service kind only.
fn status_for(e: &Error) -> StatusCode {
    match e {
        Error::Storage(s) => match s.kind() {
            ServiceErrorKind::NotFound => StatusCode::NOT_FOUND,
            ServiceErrorKind::AccessDenied => StatusCode::FORBIDDEN,
            ServiceErrorKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ServiceErrorKind::Throttled => StatusCode::SERVICE_UNAVAILABLE,
            ServiceErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ServiceErrorKind::Unreachable | ServiceErrorKind::ServiceInternal => {
                StatusCode::BAD_GATEWAY
            }
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        },
        // The key service failing is this service's problem, not the client's.
        Error::KeyService(s) if s.kind() == ServiceErrorKind::Throttled => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Error::KeyService(_) | Error::KeyServiceStanzas(_) => StatusCode::BAD_GATEWAY,
        // Create-only (`If-None-Match: *`) and the object exists. Found by sealstream's HEAD
        // before any upload; a writer racing in after it loses at S3's own
        // `If-None-Match` and arrives above as `PreconditionFailed`.
        Error::OutputExists(_) => StatusCode::PRECONDITION_FAILED,
        // The client's context expectation does not hold for this object.
        Error::ContextMismatch { .. } => StatusCode::FORBIDDEN,
        // Stored data that fails authentication: tampered, truncated, not ours.
        e if e.is_authentication() => StatusCode::BAD_GATEWAY,
        Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        Error::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
        // Reading the request body failed (the client's stream broke).
        Error::Io { .. } => StatusCode::BAD_REQUEST,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, format!("{}\n", self.message)).into_response()
    }
}
