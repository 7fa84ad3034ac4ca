//! AWS plumbing shared by `kms` and `s3` (features of the same names): one way to load the standard
//! configuration chain (credentials, region, profile, `AWS_ENDPOINT_URL…`), with the HTTPS
//! client on rustls + ring (no second crypto library, no C build) and the SDK's standard
//! retry mode (exponential backoff with jitter for throttling and transient faults).
//!
//! It also holds what both services need so that a failure is bounded and explained:
//! - an explicitly named profile wins over credentials in the environment, and an unknown
//!   profile is a usage error ([`load_config`]);
//! - [`RetryNotes`] says on stderr, one line per retry, what is retried and why, and logs
//!   every attempt of every call as a `tracing` event (target `sealstream::aws`: service,
//!   operation, request target and range, status, request id, duration), which the CLI
//!   shows with `-v` and a service routes wherever its logs go;
//! - `S3Timeouts` (feature `s3`) gives every S3 operation a bound that fits it, and the first-byte
//!   timeout starts when the request body has been sent (see docs/S3.md);
//! - [`transport_failure`] turns an SDK error that is not the service's own answer (no
//!   credentials, refused, DNS, timeout…) into one sentence, never a `Debug` dump.

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
#[cfg(feature = "s3")]
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};

use crate::error::{Error, Result};

/// How to load the configuration and how hard each call may try.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Region override (else the chain's region).
    pub region: Option<String>,
    /// Named profile override: its credentials win over the environment's.
    pub profile: Option<String>,
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    /// First retry delay (doubled per attempt, with jitter).
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Timeouts (connect, read, whole operation).
    pub timeouts: TimeoutConfig,
    /// How long a request or response body may stay below 1 byte/s before the attempt
    /// fails (the SDK's stalled-stream protection); `None` keeps the SDK's default.
    pub stall_grace: Option<Duration>,
    /// PEM file of CA certificates trusted for HTTPS besides the system's roots (an S3
    /// store or KMS endpoint behind a private CA; the AWS CLI's `--ca-bundle`).
    pub ca_bundle: Option<std::path::PathBuf>,
}

/// Loads the AWS configuration chain on `rt` (no network call unless the chain needs one,
/// e.g. for instance credentials).
///
/// With an explicit profile, that profile's credentials are used even when
/// `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` are set (the SDK's default chain would
/// prefer the environment and silently ignore `--profile`), and a profile that is defined
/// in neither the config nor the credentials file is a usage error (exit 2).
pub fn load_config(rt: &tokio::runtime::Runtime, o: &AwsOptions) -> Result<aws_config::SdkConfig> {
    rt.block_on(load_sdk_config(o))
}

/// [`load_config`] as a future, for callers inside a runtime (any flavor): the async-first
/// `s3::S3::connect` uses it, so no private runtime and no `block_on` is needed.
pub async fn load_sdk_config(o: &AwsOptions) -> Result<aws_config::SdkConfig> {
    let mut http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring));
    if let Some(path) = &o.ca_bundle {
        let context = tls::TlsContext::builder()
            .with_trust_store(trust_store(path)?)
            .build()
            .map_err(|e| {
                Error::InvalidArgument(format!(
                    "CA bundle '{}': {}",
                    path.display(),
                    one_line(&e.to_string())
                ))
            })?;
        http = http.tls_context(context);
    }
    let http = http.build_https();
    let retry = RetryConfig::standard()
        .with_max_attempts(o.max_attempts.max(1))
        .with_initial_backoff(o.initial_backoff)
        .with_max_backoff(o.max_backoff);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(FirstByteClient {
            inner: http.clone(),
        })
        .retry_config(retry)
        .timeout_config(o.timeouts.clone());
    if let Some(g) = o.stall_grace {
        loader = loader.stalled_stream_protection(
            StalledStreamProtectionConfig::enabled()
                .grace_period(g)
                .build(),
        );
    }
    if let Some(r) = &o.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &o.profile {
        check_profile(p).await?;
        // The same HTTPS client as the services (a profile may assume a role via STS).
        let provider_config = aws_config::provider_config::ProviderConfig::without_region()
            .with_http_client(http)
            .with_region(o.region.clone().map(Region::new));
        loader = loader.profile_name(p).credentials_provider(
            ProfileFileCredentialsProvider::builder()
                .configure(&provider_config)
                .profile_name(p)
                .build(),
        );
    }
    Ok(loader.load().await)
}

/// The system's roots plus the CA certificates of the PEM file `path`, each checked the way
/// the SDK's rustls client will add it (which panics on one it cannot parse): a missing
/// file, a file without certificates or an unusable certificate is a usage error (exit 2).
fn trust_store(path: &std::path::Path) -> Result<tls::TrustStore> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let bad =
        |what: String| Error::InvalidArgument(format!("CA bundle '{}': {what}", path.display()));
    let pem = std::fs::read(path)
        .map_err(|e| Error::io(format!("reading the CA bundle '{}'", path.display()), e))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM file of certificates ({e})")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in certs {
        roots
            .add(c)
            .map_err(|e| bad(format!("a certificate is not usable as a CA ({e})")))?;
    }
    Ok(tls::TrustStore::default().with_pem_certificate(pem))
}

/// Fails (exit 2) unless `name` is a profile of the shared config or credentials file.
async fn check_profile(name: &str) -> Result<()> {
    let files = format!(
        "{} and {}",
        std::env::var("AWS_CONFIG_FILE").unwrap_or_else(|_| "~/.aws/config".into()),
        std::env::var("AWS_SHARED_CREDENTIALS_FILE")
            .unwrap_or_else(|_| "~/.aws/credentials".into())
    );
    let set = aws_config::profile::load(
        &aws_types::os_shim_internal::Fs::real(),
        &aws_types::os_shim_internal::Env::real(),
        &Default::default(),
        None,
    )
    .await;
    match set {
        Ok(set) if set.get_profile(name).is_some() => Ok(()),
        Ok(_) => Err(Error::InvalidArgument(format!(
            "AWS profile '{name}' is not defined in {files}; check the AWS profile name"
        ))),
        Err(e) => Err(Error::InvalidArgument(format!(
            "cannot read the AWS profile files ({files}) for the AWS profile '{name}': {}",
            one_line(&e.to_string())
        ))),
    }
}

// ---- first-byte timeout counted from the end of the request body ---------------------

/// Wraps the HTTPS client so that the read ("first byte") timeout starts when the request
/// body has been sent, not when the request starts.
///
/// The SDK's own read timeout covers sending the body too, so any value short enough to
/// notice a silent server would kill a large part upload on a slow link. Here the body's
/// progress is bounded by stalled-stream protection instead, and the read timeout only by
/// the server's silence after the whole request is out.
#[derive(Debug)]
struct FirstByteClient {
    inner: aws_smithy_runtime_api::client::http::SharedHttpClient,
}

impl aws_smithy_runtime_api::client::http::HttpClient for FirstByteClient {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        let mut inner_settings =
            aws_smithy_runtime_api::client::http::HttpConnectorSettings::builder();
        inner_settings.set_connect_timeout(settings.connect_timeout());
        let inner = self
            .inner
            .http_connector(&inner_settings.build(), components);
        match settings.read_timeout() {
            None => inner,
            Some(read_timeout) => {
                aws_smithy_runtime_api::client::http::SharedHttpConnector::new(FirstByteConnector {
                    inner,
                    read_timeout,
                })
            }
        }
    }
}

#[derive(Debug)]
struct FirstByteConnector {
    inner: aws_smithy_runtime_api::client::http::SharedHttpConnector,
    read_timeout: Duration,
}

/// The first-byte timeout's error ("… timeout occurred after …" like the SDK's own).
#[derive(Debug)]
struct FirstByteTimeout(Duration);

impl std::fmt::Display for FirstByteTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HTTP read timeout occurred after {:?} without an answer to the sent request",
            self.0
        )
    }
}

impl StdError for FirstByteTimeout {}

impl aws_smithy_runtime_api::client::http::HttpConnector for FirstByteConnector {
    fn call(
        &self,
        mut request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        use aws_smithy_types::body::SdkBody;
        let sent = std::sync::Arc::new(tokio::sync::Notify::new());
        let body = std::mem::replace(request.body_mut(), SdkBody::taken());
        if http_body::Body::is_end_stream(&body) {
            sent.notify_one();
            *request.body_mut() = body;
        } else {
            *request.body_mut() = SdkBody::from_body_1_x(SignalEnd {
                inner: body,
                sent: Some(std::sync::Arc::clone(&sent)),
            });
        }
        let response = self.inner.call(request);
        let limit = self.read_timeout;
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            tokio::select! {
                r = response => r,
                _ = async {
                    sent.notified().await;
                    tokio::time::sleep(limit).await;
                } => Err(ConnectorError::timeout(Box::new(FirstByteTimeout(limit)))),
            }
        })
    }
}

/// A request body that says when it has been read to the end.
struct SignalEnd {
    inner: aws_smithy_types::body::SdkBody,
    sent: Option<std::sync::Arc<tokio::sync::Notify>>,
}

impl http_body::Body for SignalEnd {
    type Data = bytes::Bytes;
    type Error = aws_smithy_types::body::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let r = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        // hyper stops polling once `is_end_stream` is true, so check both.
        if (matches!(r, std::task::Poll::Ready(None))
            || http_body::Body::is_end_stream(&self.inner))
            && let Some(s) = self.sent.take()
        {
            s.notify_one();
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

// ---- retry notes ---------------------------------------------------------------------

/// Says on stderr, once per retry, which request is retried, which attempt this is and
/// why the previous one failed, so a slow or failing endpoint is never silent.
#[derive(Debug)]
pub struct RetryNotes {
    /// "S3" or "KMS".
    pub service: &'static str,
    /// Attempts per call (for "attempt 2 of 8").
    pub max_attempts: u32,
    /// False with `--quiet`: count attempts but print nothing.
    pub enabled: bool,
}

/// Per-execution state of [`RetryNotes`] (lives in the request's config bag).
#[derive(Debug, Clone, Default)]
struct AttemptState {
    attempt: u32,
    last_failure: Option<String>,
    /// When the current attempt started (for its logged duration).
    started: Option<std::time::Instant>,
}

impl Storable for AttemptState {
    type Storer = StoreReplace<Self>;
}

impl Intercept for RetryNotes {
    fn name(&self) -> &'static str {
        "sealstream-retry-notes"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let mut st = cfg.load::<AttemptState>().cloned().unwrap_or_default();
        st.attempt += 1;
        st.started = Some(std::time::Instant::now());
        cfg.interceptor_state().store_put(st);
        Ok(())
    }

    // Printed here rather than before the attempt: only now is the endpoint resolved, so
    // the line names the URL that is retried.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let st = cfg.load::<AttemptState>().cloned().unwrap_or_default();
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "request".into());
        let req = context.request();
        let target = req.uri().split('?').next().unwrap_or_default();
        tracing::debug!(
            target: "sealstream::aws",
            service = %self.service,
            operation = %op,
            attempt = st.attempt,
            uri = %req.uri(),
            range = %req.headers().get("range").unwrap_or("-"),
            "sending"
        );
        if st.attempt > 1 {
            tracing::info!(
                target: "sealstream::aws",
                service = %self.service,
                operation = %op,
                attempt = st.attempt,
                max_attempts = self.max_attempts,
                after = st.last_failure.as_deref().unwrap_or("the previous attempt failed"),
                "retrying"
            );
        }
        if st.attempt > 1 && self.enabled {
            eprintln!(
                "sealstream: retrying {} {op} {target} (attempt {} of {}) after: {}",
                self.service,
                st.attempt,
                self.max_attempts,
                st.last_failure
                    .as_deref()
                    .unwrap_or("the previous attempt failed")
            );
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let st = cfg.load::<AttemptState>().cloned().unwrap_or_default();
        let op = cfg
            .load::<Metadata>()
            .map(|m| m.name().to_string())
            .unwrap_or_else(|| "request".into());
        let status = context.response().map(|r| r.status().as_u16());
        let request_id = context.response().and_then(|r| {
            r.headers()
                .get("x-amz-request-id")
                .or_else(|| r.headers().get("x-amzn-requestid"))
                .map(str::to_string)
        });
        let elapsed_ms = st.started.map_or(0, |t| t.elapsed().as_millis() as u64);
        let failed = matches!(context.output_or_error(), Some(Err(_)));
        tracing::info!(
            target: "sealstream::aws",
            service = %self.service,
            operation = %op,
            attempt = st.attempt,
            status = %status.map_or_else(|| "-".to_string(), |s| s.to_string()),
            request_id = %request_id.as_deref().unwrap_or("-"),
            elapsed_ms,
            failed,
            "call"
        );
        if let Some(Err(e)) = context.output_or_error() {
            let why = match context.response() {
                Some(r) => http_status_reason(r.status().as_u16()),
                None => match classify(e) {
                    Some(t) => t.short(),
                    None => one_line(&e.to_string()),
                },
            };
            let mut st = cfg.load::<AttemptState>().cloned().unwrap_or_default();
            st.last_failure = Some(why);
            cfg.interceptor_state().store_put(st);
        }
        Ok(())
    }
}

fn http_status_reason(status: u16) -> String {
    let what = match status {
        429 => "too many requests (throttled)",
        500 => "internal error",
        502 => "bad gateway",
        503 => "slow down or service unavailable",
        504 => "gateway timeout",
        _ => "error",
    };
    format!("the service answered HTTP {status}: {what}")
}

// ---- S3 timeouts per operation -------------------------------------------------------

/// Gives every S3 operation a bound that fits it.
///
/// - Requests whose time does not grow with the data (HEAD, List, Create/Abort multipart,
///   Delete, tagging) are bounded as a whole, retries included, by `operation_timeout`.
/// - Requests that move data (GetObject, PutObject, UploadPart, CopyObject,
///   UploadPartCopy, CompleteMultipartUpload, which S3 may answer slowly for big objects)
///   get no wall-clock bound, so a multi-GiB part on a slow link is not killed; each
///   attempt is bounded instead by the connect timeout, by stalled-stream protection
///   (a body below 1 byte/s for the grace period fails), and by the first-byte timeout,
///   which the first-byte client (`FirstByteClient`) starts once the request body has been sent.
#[cfg(feature = "s3")]
#[derive(Debug)]
pub struct S3Timeouts {
    /// Whole-operation bound for the operations that do not move data.
    pub operation_timeout: Duration,
}

#[cfg(feature = "s3")]
fn moves_data(input: &aws_smithy_runtime_api::client::interceptors::context::Input) -> bool {
    use aws_sdk_s3::operation as op;
    input
        .downcast_ref::<op::get_object::GetObjectInput>()
        .is_some()
        || input
            .downcast_ref::<op::put_object::PutObjectInput>()
            .is_some()
        || input
            .downcast_ref::<op::upload_part::UploadPartInput>()
            .is_some()
        || input
            .downcast_ref::<op::copy_object::CopyObjectInput>()
            .is_some()
        || input
            .downcast_ref::<op::upload_part_copy::UploadPartCopyInput>()
            .is_some()
        || input
            .downcast_ref::<op::complete_multipart_upload::CompleteMultipartUploadInput>()
            .is_some()
}

#[cfg(feature = "s3")]
impl Intercept for S3Timeouts {
    fn name(&self) -> &'static str {
        "sealstream-s3-timeouts"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // Runs before the operation's timeouts are resolved: what is stored here is merged
        // over the client's (connect, read) settings.
        if !moves_data(context.input()) {
            cfg.interceptor_state().store_put(
                TimeoutConfig::builder()
                    .operation_timeout(self.operation_timeout)
                    .build(),
            );
        }
        Ok(())
    }
}

// ---- errors that are not the service's answer ----------------------------------------

/// What a missing credential chain is reported as. Names the library-level remedies only;
/// the CLI adds its `--profile` flag (by error kind).
const NO_CREDENTIALS: &str = "no AWS credentials found (environment, shared config and credentials files, web identity, container and instance metadata were tried); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY";

/// Why a call got no usable answer from the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// No credentials anywhere in the chain.
    NoCredentials,
    /// A credential provider failed (bad profile, expired SSO…): its first line.
    Credentials(String),
    /// The endpoint refused the connection.
    Refused,
    /// The endpoint's host name does not resolve.
    Dns,
    /// A timeout fired (which one and after how long).
    Timeout(String),
    /// A body stayed below the minimum throughput.
    Stalled,
    /// The connection was closed before the answer was complete.
    Closed,
    /// The TLS handshake failed.
    Tls(String),
    /// Anything else below HTTP: its innermost message.
    Other(String),
}

impl Transport {
    /// The kind of service failure this is, for [`crate::error::ServiceError`].
    pub fn kind(&self) -> crate::error::ServiceErrorKind {
        use crate::error::ServiceErrorKind as K;
        match self {
            Transport::NoCredentials | Transport::Credentials(_) => K::Credentials,
            Transport::Timeout(_) | Transport::Stalled => K::Timeout,
            Transport::Refused | Transport::Dns | Transport::Closed | Transport::Tls(_) => {
                K::Unreachable
            }
            Transport::Other(_) => K::Other,
        }
    }

    /// A few words for a retry note.
    fn short(&self) -> String {
        match self {
            Transport::NoCredentials => "no credentials".into(),
            Transport::Credentials(m) => format!("credentials: {m}"),
            Transport::Refused => "connection refused".into(),
            Transport::Dns => "the host name does not resolve".into(),
            Transport::Timeout(m) => m.clone(),
            Transport::Stalled => "the transfer stalled (below 1 byte/s)".into(),
            Transport::Closed => "the connection was closed before the answer was complete".into(),
            Transport::Tls(m) => format!("TLS: {m}"),
            Transport::Other(m) => m.clone(),
        }
    }

    /// [`Transport::sentence`] without the advice to raise a bound: for callers whose bounds
    /// are not the user's to raise through this library (S3's), where the CLI appends the
    /// flags that raise a bound or pick a profile, by error kind.
    pub fn plain_sentence(&self, service: &str, endpoint: &str) -> String {
        match self {
            Transport::Timeout(m) => format!(
                "no answer from {service} at {endpoint} in time ({m}); check the endpoint and the network"
            ),
            Transport::Stalled => format!(
                "the transfer with {service} at {endpoint} stalled (no progress for the grace period); check the network"
            ),
            other => other.sentence(service, endpoint, ""),
        }
    }

    /// One sentence: what happened, and what to do.
    /// `service` is "S3"/"KMS", `endpoint` what was called, `timeout_advice` the setting
    /// that raises the bounds, in the caller's terms (KMS names its client configuration).
    pub fn sentence(&self, service: &str, endpoint: &str, timeout_advice: &str) -> String {
        match self {
            Transport::NoCredentials => NO_CREDENTIALS.into(),
            Transport::Credentials(m) => format!(
                "could not load AWS credentials: {m}; check the profile or the environment's AWS_* variables"
            ),
            Transport::Refused => format!(
                "connection refused by {service} at {endpoint}; check the endpoint (AWS_ENDPOINT_URL) and that the service is running"
            ),
            Transport::Dns => format!(
                "cannot resolve the host of {service} at {endpoint}; check the endpoint (AWS_ENDPOINT_URL), the region and the network"
            ),
            Transport::Timeout(m) => format!(
                "no answer from {service} at {endpoint} in time ({m}); check the endpoint and the network, or raise {timeout_advice}"
            ),
            Transport::Stalled => format!(
                "the transfer with {service} at {endpoint} stalled (no progress for the grace period); check the network, or raise {timeout_advice}"
            ),
            Transport::Closed => format!(
                "{service} at {endpoint} closed the connection before answering; check the endpoint and any proxy in between, then retry"
            ),
            Transport::Tls(m) => format!(
                "TLS with {service} at {endpoint} failed ({m}); check the endpoint's certificate and URL scheme"
            ),
            Transport::Other(m) => format!(
                "could not talk to {service} at {endpoint}: {m}; check the endpoint and the network, then retry"
            ),
        }
    }
}

/// Classifies an SDK error that is not a service answer; `None` for a service error or a
/// response (whose code the caller reports).
pub fn transport_failure<E>(e: &SdkError<E, HttpResponse>) -> Option<Transport>
where
    E: StdError + 'static,
{
    match e {
        SdkError::ServiceError(_) | SdkError::ResponseError(_) => None,
        SdkError::TimeoutError(_) => Some(Transport::Timeout(
            timeout_text(e).unwrap_or_else(|| "the operation timed out".into()),
        )),
        _ => Some(classify(e).unwrap_or_else(|| {
            Transport::Other(innermost(e).unwrap_or_else(|| "unknown failure".into()))
        })),
    }
}

/// Walks the source chain of `e` for a known cause.
fn classify(e: &(dyn StdError + 'static)) -> Option<Transport> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    let mut timeout = false;
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<CredentialsError>() {
            return Some(match c {
                CredentialsError::CredentialsNotLoaded(_) => Transport::NoCredentials,
                _ => {
                    Transport::Credentials(innermost(c).unwrap_or_else(|| one_line(&c.to_string())))
                }
            });
        }
        if let Some(c) = err.downcast_ref::<ConnectorError>()
            && c.is_timeout()
        {
            timeout = true;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            match io.kind() {
                K::ConnectionRefused => return Some(Transport::Refused),
                K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                    return Some(Transport::Closed);
                }
                K::TimedOut => timeout = true,
                _ => {}
            }
        }
        let text = err.to_string();
        if text.contains("dns error") || text.contains("failed to lookup address") {
            return Some(Transport::Dns);
        }
        if text.contains("minimum throughput") {
            return Some(Transport::Stalled);
        }
        if text.contains("connection closed before message completed") {
            return Some(Transport::Closed);
        }
        if text.contains("certificate") || text.contains("InvalidContentType") {
            return Some(Transport::Tls(one_line(&text)));
        }
        cur = err.source();
    }
    if timeout || timeout_text(e).is_some() {
        return Some(Transport::Timeout(
            timeout_text(e).unwrap_or_else(|| "timed out".into()),
        ));
    }
    None
}

/// The chain's "… timeout occurred after N s" message, which names the timeout that fired.
fn timeout_text(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if text.contains("occurred after") {
            return Some(one_line(&text));
        }
        cur = err.source();
    }
    None
}

/// The innermost error message of the chain, on one line and capped (never `Debug`).
fn innermost(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut last = None;
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !text.is_empty() {
            last = Some(text);
        }
        cur = err.source();
    }
    last.map(|t| one_line(&t))
}

/// First line of `s`, at most 200 characters.
pub fn one_line(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default().trim();
    let mut out: String = first.chars().take(200).collect();
    if first.chars().count() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::Transport;

    /// A CA certificate (public part only; its key was thrown away).
    const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBkjCCATegAwIBAgIUf9WenZaHECVlHps7+qnEmM9VZeswCgYIKoZIzj0EAwIw\nHTEbMBkGA1UEAwwSc2VhbHN0cmVhbS10ZXN0LWNhMCAXDTI2MTIwMTEzMTMwMloY\nDzIxMjYxMTA3MTMxMzAyWjAdMRswGQYDVQQDDBJzZWFsc3RyZWFtLXRlc3QtY2Ew\nWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATsB+adKxI+Ex3C6OVCsqVs+/rrwpWu\nGlq5Q0yeRbsL0ljsgSC29OenLFZ5u5Skb3gr5Wta0di7IxpV/ep0WR+Uo1MwUTAd\nBgNVHQ4EFgQUgq1DejHiNMzru9Mzdwu0xAHqlGswHwYDVR0jBBgwFoAUgq1DejHi\nNMzru9Mzdwu0xAHqlGswDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNJADBG\nAiEAvOwZe30a2AbYxB0fz3lMcw/H4jLfTOj7zGIgE+ivzC4CIQDNB9Jjh1CbKvOk\nU1XnKqjR+cVWggK7eXpLWQNFhLe1mw==\n-----END CERTIFICATE-----\n";

    /// A CA bundle must hold certificates the SDK's client can use, else it is refused
    /// at start (the SDK would panic on it at the first connection).
    #[test]
    fn ca_bundles_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, format!("# a comment\n{TEST_CA}")).unwrap();
        assert!(super::trust_store(&good).is_ok());
        let missing = dir.path().join("missing.pem");
        assert!(super::trust_store(&missing).is_err());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificate here\n").unwrap();
        let e = super::trust_store(&empty).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nMIIBkjCCATegAwIBAgIU\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(super::trust_store(&broken).is_err());
    }

    /// What the library reports names no command-line flag (the CLI adds them).
    #[test]
    fn plain_sentences_name_no_flag() {
        for t in [
            Transport::NoCredentials,
            Transport::Credentials("expired".into()),
            Transport::Refused,
            Transport::Dns,
            Transport::Timeout("read timeout".into()),
            Transport::Stalled,
            Transport::Closed,
            Transport::Tls("bad cert".into()),
            Transport::Other("x".into()),
        ] {
            let s = t.plain_sentence("S3", "http://ep");
            assert!(!s.contains("--"), "{s}");
            let k = t.sentence("KMS", "http://ep", "the KMS timeout");
            assert!(!k.contains("--"), "{k}");
            assert!(s.contains("S3") || s.contains("credentials"), "{s}");
        }
    }

    use super::*;
    #[cfg(feature = "s3")]
    use aws_sdk_s3::operation as op;
    #[cfg(feature = "s3")]
    use aws_smithy_runtime_api::client::interceptors::context::Input;

    #[cfg(feature = "s3")]
    #[test]
    fn only_operations_that_do_not_move_data_get_a_wall_clock_bound() {
        let data_ops = [
            Input::erase(op::get_object::GetObjectInput::builder().build().unwrap()),
            Input::erase(op::put_object::PutObjectInput::builder().build().unwrap()),
            Input::erase(op::upload_part::UploadPartInput::builder().build().unwrap()),
            Input::erase(op::copy_object::CopyObjectInput::builder().build().unwrap()),
            Input::erase(
                op::upload_part_copy::UploadPartCopyInput::builder()
                    .build()
                    .unwrap(),
            ),
            Input::erase(
                op::complete_multipart_upload::CompleteMultipartUploadInput::builder()
                    .build()
                    .unwrap(),
            ),
        ];
        for i in &data_ops {
            assert!(moves_data(i), "{i:?}");
        }
        let small_ops = [
            Input::erase(op::head_object::HeadObjectInput::builder().build().unwrap()),
            Input::erase(
                op::list_objects_v2::ListObjectsV2Input::builder()
                    .build()
                    .unwrap(),
            ),
            Input::erase(
                op::create_multipart_upload::CreateMultipartUploadInput::builder()
                    .build()
                    .unwrap(),
            ),
            Input::erase(
                op::abort_multipart_upload::AbortMultipartUploadInput::builder()
                    .build()
                    .unwrap(),
            ),
            Input::erase(
                op::delete_object::DeleteObjectInput::builder()
                    .build()
                    .unwrap(),
            ),
        ];
        for i in &small_ops {
            assert!(!moves_data(i), "{i:?}");
        }
    }

    #[test]
    fn transport_causes_are_found_in_the_chain_and_never_debug_printed() {
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl StdError for Wrap {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Wrap(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(classify(&refused), Some(Transport::Refused));
        let dns = Wrap(std::io::Error::other("dns error: failed to lookup address"));
        assert_eq!(classify(&dns), Some(Transport::Dns));
        let s = Transport::Refused.sentence("S3", "http://127.0.0.1:9", "the timeout");
        assert!(s.contains("http://127.0.0.1:9") && !s.contains('\n'), "{s}");
        let long = "x".repeat(1000) + "\nsecond line";
        assert!(one_line(&long).chars().count() <= 201);
    }
}
