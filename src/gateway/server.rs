//! Serving: hyper connections, the s3s service with its authentication and host
//! configuration, `/healthz`, a request limit, request ids in logs and responses, and a
//! graceful shutdown.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::service::{S3Service, S3ServiceBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Gateway, linger};
use crate::{Error, Result};

/// The request path answered without authentication (only when the request carries no
/// signature, so a bucket called `healthz` stays reachable for signed clients).
const HEALTH_PATH: &str = "/healthz";
/// Prometheus metrics, under the same rule as [`HEALTH_PATH`].
const METRICS_PATH: &str = "/metrics";

struct Shared {
    s3s: S3Service,
    permits: Arc<Semaphore>,
    max_requests: usize,
    metrics: Arc<super::metrics::Metrics>,
    next_id: AtomicU64,
    /// Distinguishes request ids of gateway processes started in the same second.
    instance: u32,
}

pub(super) async fn serve(
    gw: Gateway,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let mut builder = S3ServiceBuilder::new(gw.svc.clone());
    builder.set_auth(super::creds::Auth {
        store: gw.creds.clone(),
    });
    if !gw.config.virtual_host_domains.is_empty() {
        builder.set_host(Domains::new(&gw.config.virtual_host_domains)?);
    }
    let mut instance = [0u8; 4];
    crate::keys::fill_random(&mut instance)?;
    let shared = Arc::new(Shared {
        s3s: builder.build(),
        permits: Arc::new(Semaphore::new(gw.config.max_requests)),
        max_requests: gw.config.max_requests,
        metrics: gw.metrics.clone(),
        next_id: AtomicU64::new(0),
        instance: u32::from_be_bytes(instance),
    });

    let mut conn = ConnBuilder::new(TokioExecutor::new());
    conn.http1()
        .max_buf_size(gw.config.max_header_bytes.max(8192))
        .header_read_timeout(std::time::Duration::from_secs(30))
        .timer(hyper_util::rt::TokioTimer::new());
    conn.http2()
        .max_header_list_size(u32::try_from(gw.config.max_header_bytes).unwrap_or(u32::MAX));
    let tls = match &gw.tls {
        Some(store) => Some(store.acceptor()?),
        None => None,
    };
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    // Every connection's task, through its lingering close (linger.rs): the shutdown
    // waits for them, not only for the requests, so that no response is cut off in the
    // kernel's send queue when the process exits.
    let tasks = tokio_util::task::TaskTracker::new();
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let grace = gw.config.shutdown_grace;
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::info!(
        listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        "sealstream gateway serving"
    );
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.as_mut() => break,
        };
        let shared = shared.clone();
        let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
        let stopping = stopping.clone();
        match &tls {
            None => {
                let (io, back) = linger::GiveBack::new(stream);
                let c = conn.serve_connection(TokioIo::new(io), svc).into_owned();
                let c = graceful.watch(c);
                tasks.spawn(async move {
                    if let Err(e) = c.await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                    linger::close(back, || stopping.load(Ordering::Relaxed), grace).await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let conn = conn.clone();
                let watcher = graceful.watcher();
                tasks.spawn(async move {
                    let handshake = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        acceptor.accept(stream),
                    );
                    let stream = match handshake.await {
                        Ok(Ok(s)) => s,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let (io, back) = linger::GiveBack::new(stream);
                    let c = conn.serve_connection(TokioIo::new(io), svc).into_owned();
                    if let Err(e) = watcher.watch(c).await {
                        tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                    }
                    linger::close(back, || stopping.load(Ordering::Relaxed), grace).await;
                });
            }
        }
    }
    tracing::info!("shutting down: no new connections; waiting for requests in flight");
    drop(listener);
    stopping.store(true, Ordering::Relaxed);
    tasks.close();
    let drained = async {
        graceful.shutdown().await;
        tasks.wait().await;
    };
    match tokio::time::timeout(gw.config.shutdown_grace, drained).await {
        Ok(()) => tracing::info!("all requests finished and their responses delivered"),
        Err(_) => tracing::warn!(
            grace = ?gw.config.shutdown_grace,
            "requests still running after the shutdown grace period were cut off"
        ),
    }
    Ok(())
}

/// One request: health check, request limit, request id, then s3s.
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> std::result::Result<Response<s3s::Body>, Infallible> {
    let n = shared.next_id.fetch_add(1, Ordering::Relaxed);
    let id = format!("{:08X}{n:08X}", shared.instance);
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let signed = req.headers().contains_key(http::header::AUTHORIZATION)
        || req
            .uri()
            .query()
            .is_some_and(|q| q.contains("X-Amz-Signature=") || q.contains("Signature="));
    if path == HEALTH_PATH && !signed && method == http::Method::GET {
        return Ok(plain(StatusCode::OK, "ok\n".into(), &id));
    }
    if path == METRICS_PATH && !signed && method == http::Method::GET {
        let in_flight = shared.max_requests - shared.permits.available_permits();
        let text = shared.metrics.render(in_flight, shared.max_requests);
        let mut r = plain(StatusCode::OK, text, &id);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        );
        return Ok(r);
    }
    let Ok(permit) = shared.permits.clone().try_acquire_owned() else {
        tracing::warn!(request_id = %id, %method, %path, "too many requests in flight: 503");
        super::metrics::Metrics::add(&shared.metrics.rejected, 1);
        shared.metrics.record(&method, 503);
        return Ok(slow_down(&id));
    };
    let span = tracing::info_span!("request", request_id = %id);
    let _enter = span.enter();
    drop(_enter);
    let resp = {
        use tracing::Instrument;
        shared
            .s3s
            .call(req.map(s3s::Body::from))
            .instrument(span.clone())
            .await
    };
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(request_id = %id, error = ?e, "internal error");
            plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error\n".into(),
                &id,
            )
        }
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-amz-request-id", v);
    }
    if resp.status() == StatusCode::FORBIDDEN
        && let Some(code) = client_auth_failure(resp.body(), signed)
    {
        shared.metrics.client_auth_failure(code);
    }
    shared.metrics.record(&method, resp.status().as_u16());
    tracing::info!(
        request_id = %id,
        %method,
        %path,
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    // The permit lives as long as the response body: a streaming GET counts until its
    // last byte is sent (or the client goes away).
    let resp = resp.map(|body| {
        s3s::Body::http_body(PermitBody {
            inner: body,
            _permit: permit,
        })
    });
    Ok(resp)
}

/// The S3 error code of a 403 that refused the client itself (its signature, key or
/// clock; or no signature at all), read from s3s's error document; `None` for a 403 about
/// something else (upstream's AccessDenied, SealstreamNoKey).
fn client_auth_failure(body: &s3s::Body, signed: bool) -> Option<&'static str> {
    let xml = body.bytes()?;
    let xml = std::str::from_utf8(&xml).ok()?;
    let code = xml.split("<Code>").nth(1)?.split("</Code>").next()?;
    let code = super::metrics::CLIENT_AUTH_CODES
        .into_iter()
        .find(|c| *c == code)?;
    // s3s answers AccessDenied to an unsigned request and to an expired presigned URL;
    // for a signed request it may also be upstream's, which is not the client's failure.
    (code != "AccessDenied" || !signed || xml.contains("Request has expired")).then_some(code)
}

fn plain(status: StatusCode, text: String, id: &str) -> Response<s3s::Body> {
    let mut r = Response::new(s3s::Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain"),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-amz-request-id", v);
    }
    r
}

fn slow_down(id: &str) -> Response<s3s::Body> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>The \
         gateway is handling its maximum number of requests; retry with backoff.</Message>\
         <RequestId>{id}</RequestId></Error>"
    );
    let mut r = Response::new(s3s::Body::from(xml));
    *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-amz-request-id", v);
    }
    r
}

/// Virtual-hosted-style addressing: `BUCKET.DOMAIN[:PORT]` names a bucket; the domain
/// itself, an IP address or any other host is path-style. (s3s's own `SingleDomain`
/// compares the port too and takes an unknown host for a bucket name, which breaks
/// path-style requests through another name of the gateway.)
struct Domains(Vec<String>);

impl Domains {
    fn new(domains: &[String]) -> Result<Domains> {
        let mut v = Vec::new();
        for d in domains {
            let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
            if d.is_empty()
                || d.contains(':')
                || !d.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                })
            {
                return Err(Error::InvalidArgument(format!(
                    "virtual host domain '{d}' is not a domain name (no port, no scheme)"
                )));
            }
            v.push(d);
        }
        Ok(Domains(v))
    }
}

impl s3s::host::S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        let name = match host.rsplit_once(':') {
            Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        for d in &self.0 {
            if name.eq_ignore_ascii_case(d) {
                return Ok(s3s::host::VirtualHost::new(d.as_str()));
            }
            if name.len() > d.len() + 1
                && name.is_char_boundary(name.len() - d.len() - 1)
                && name[name.len() - d.len()..].eq_ignore_ascii_case(d)
                && name.as_bytes()[name.len() - d.len() - 1] == b'.'
            {
                let bucket = &name[..name.len() - d.len() - 1];
                return Ok(s3s::host::VirtualHost::new(d.as_str()).with_bucket(bucket));
            }
        }
        Ok(s3s::host::VirtualHost::new(name))
    }
}

/// A response body that holds a request permit until it is dropped.
struct PermitBody {
    inner: s3s::Body,
    _permit: OwnedSemaphorePermit,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = <s3s::Body as http_body::Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<std::result::Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3s::host::S3Host as _;

    #[test]
    fn virtual_hosts() {
        let d = Domains::new(&["s3.example.com".into()]).unwrap();
        let b = |h: &str| d.parse_host_header(h).unwrap().bucket().map(str::to_string);
        assert_eq!(b("my-bucket.s3.example.com").as_deref(), Some("my-bucket"));
        assert_eq!(
            b("my.bucket.s3.example.com:9000").as_deref(),
            Some("my.bucket")
        );
        assert_eq!(b("s3.example.com:9000"), None);
        assert_eq!(b("gateway.internal:9000"), None);
        assert_eq!(b("xs3.example.com"), None);
        assert!(Domains::new(&["s3.example.com:9000".into()]).is_err());
    }
}
