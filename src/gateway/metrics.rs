//! Counters for `GET /metrics` (Prometheus text format 0.0.4), kept with atomics and one
//! small map: no metrics crate needed for a handful of series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::kms::{Kms, KmsStats};

/// What the gateway counts. Shared by the server (requests) and the S3 operations
/// (bytes, authentication failures); KMS calls and cache outcomes are read from the KMS
/// connection itself when rendering.
#[derive(Default)]
pub(crate) struct Metrics {
    /// The KMS connection whose [`crate::kms::Kms::stats`] are reported, if any.
    kms: Option<Arc<Kms>>,
    /// (method, status) → answers.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests refused with 503 because `max_requests` were in flight.
    pub(crate) rejected: AtomicU64,
    /// Stored objects that failed authentication (body, metadata, companion).
    pub(crate) auth_failures: AtomicU64,
    /// Client requests refused by request authentication, by S3 error code (a fixed set:
    /// [`CLIENT_AUTH_CODES`]): failed signatures, unknown keys, unsigned requests.
    client_auth_failures: [AtomicU64; CLIENT_AUTH_CODES.len()],
    /// Plaintext bytes accepted by PutObject (stored).
    pub(crate) bytes_in: AtomicU64,
    /// Plaintext bytes sent in GetObject answers.
    pub(crate) bytes_out: AtomicU64,
    /// GETs served with a recently loaded header instead of a HEAD upstream.
    pub(crate) header_cache_hits: AtomicU64,
    /// Of those, the ones whose object had changed upstream (the pinned GET failed), so
    /// the header was loaded again.
    pub(crate) header_cache_stale: AtomicU64,
    /// Reloads without a restart (SIGHUP, the periodic check), by [`Reloaded`] and outcome
    /// (ok, error).
    reloads: [[AtomicU64; 2]; Reloaded::ALL.len()],
}

/// What a reload reloaded: the `what` label of `sealstream_gateway_reloads_total`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reloaded {
    /// The TLS certificate and key.
    Tls,
    /// The client credentials file.
    ClientCredentials,
}

impl Reloaded {
    const ALL: [Reloaded; 2] = [Reloaded::Tls, Reloaded::ClientCredentials];

    fn label(self) -> &'static str {
        match self {
            Reloaded::Tls => "tls",
            Reloaded::ClientCredentials => "client_credentials",
        }
    }
}

/// The S3 error codes of a client request that failed authentication at the gateway.
pub(crate) const CLIENT_AUTH_CODES: [&str; 4] = [
    "AccessDenied",
    "InvalidAccessKeyId",
    "RequestTimeTooSkewed",
    "SignatureDoesNotMatch",
];

impl Metrics {
    /// Counts a client request refused by authentication with S3 error `code` (ignored if
    /// not one of [`CLIENT_AUTH_CODES`]).
    pub(crate) fn client_auth_failure(&self, code: &str) {
        if let Some(i) = CLIENT_AUTH_CODES.iter().position(|c| *c == code) {
            self.client_auth_failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one reload attempt of `what` (one that read files), `ok` or not.
    pub(crate) fn reloaded(&self, what: Reloaded, ok: bool) {
        self.reloads[what as usize][usize::from(!ok)].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn new(kms: Option<Arc<Kms>>) -> Metrics {
        Metrics {
            kms,
            ..Metrics::default()
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts one answer. Methods outside HTTP's usual set count as `OTHER` (bounded labels).
    pub(crate) fn record(&self, method: &http::Method, status: u16) {
        let m = match method.as_str() {
            "GET" => "GET",
            "PUT" => "PUT",
            "HEAD" => "HEAD",
            "POST" => "POST",
            "DELETE" => "DELETE",
            "OPTIONS" => "OPTIONS",
            _ => "OTHER",
        };
        if let Ok(mut r) = self.requests.lock() {
            *r.entry((m, status)).or_insert(0) += 1;
        }
    }

    /// The exposition text.
    pub(crate) fn render(&self, in_flight: usize, max: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP sealstream_gateway_requests_total Answers by method and status."
        );
        let _ = writeln!(s, "# TYPE sealstream_gateway_requests_total counter");
        if let Ok(r) = self.requests.lock() {
            for ((m, st), n) in r.iter() {
                let _ = writeln!(
                    s,
                    "sealstream_gateway_requests_total{{method=\"{m}\",status=\"{st}\"}} {n}"
                );
            }
        }
        let gauge = |s: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} gauge");
            let _ = writeln!(s, "{name} {v}");
        };
        let counter = |s: &mut String, name: &str, help: &str, c: &AtomicU64| {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} counter");
            let _ = writeln!(s, "{name} {}", c.load(Ordering::Relaxed));
        };
        gauge(
            &mut s,
            "sealstream_gateway_requests_in_flight",
            "Requests being handled.",
            in_flight as u64,
        );
        gauge(
            &mut s,
            "sealstream_gateway_requests_max",
            "The request limit (--max-requests).",
            max as u64,
        );
        counter(
            &mut s,
            "sealstream_gateway_requests_rejected_total",
            "Requests answered 503 SlowDown at the request limit.",
            &self.rejected,
        );
        counter(
            &mut s,
            "sealstream_gateway_authentication_failures_total",
            "Stored objects that failed authentication (tampered body, broken metadata or companion).",
            &self.auth_failures,
        );
        let name = "sealstream_gateway_client_authentication_failures_total";
        let _ = writeln!(
            s,
            "# HELP {name} Client requests refused by SigV4/SigV2 authentication, by S3 error code."
        );
        let _ = writeln!(s, "# TYPE {name} counter");
        for (code, n) in CLIENT_AUTH_CODES.iter().zip(&self.client_auth_failures) {
            let _ = writeln!(s, "{name}{{code=\"{code}\"}} {}", n.load(Ordering::Relaxed));
        }
        counter(
            &mut s,
            "sealstream_gateway_plaintext_bytes_received_total",
            "Plaintext bytes stored by PutObject.",
            &self.bytes_in,
        );
        counter(
            &mut s,
            "sealstream_gateway_plaintext_bytes_sent_total",
            "Plaintext bytes sent by GetObject.",
            &self.bytes_out,
        );
        counter(
            &mut s,
            "sealstream_gateway_header_cache_hits_total",
            "Unconditional GETs served with a header loaded in the last seconds (no HEAD upstream).",
            &self.header_cache_hits,
        );
        counter(
            &mut s,
            "sealstream_gateway_header_cache_stale_total",
            "Header-cache hits whose object had changed upstream (pinned GET refused): loaded again.",
            &self.header_cache_stale,
        );
        let name = "sealstream_gateway_reloads_total";
        let _ = writeln!(
            s,
            "# HELP {name} Reloads without a restart (SIGHUP, the periodic check) by what and result (an error keeps the previous version)."
        );
        let _ = writeln!(s, "# TYPE {name} counter");
        for what in Reloaded::ALL {
            for (result, n) in ["ok", "error"].iter().zip(&self.reloads[what as usize]) {
                let _ = writeln!(
                    s,
                    "{name}{{what=\"{}\",result=\"{result}\"}} {}",
                    what.label(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
        // Always rendered (zeros without KMS), so dashboards and alerts need no special case.
        let k = self.kms.as_ref().map(|k| k.stats()).unwrap_or_default();
        render_kms(&mut s, &k);
        s
    }
}

/// The KMS series: calls by operation, and the unwrapped-data-key cache's hits and misses.
fn render_kms(s: &mut String, k: &KmsStats) {
    let name = "sealstream_gateway_kms_calls_total";
    let _ = writeln!(
        s,
        "# HELP {name} KMS calls by operation (a GET costs a Decrypt only on a cache miss)."
    );
    let _ = writeln!(s, "# TYPE {name} counter");
    for (op, n) in [
        ("Decrypt", k.decrypt),
        ("DescribeKey", k.describe_key),
        ("Encrypt", k.encrypt),
        ("GenerateDataKey", k.generate_data_key),
        ("ReEncrypt", k.re_encrypt),
    ] {
        let _ = writeln!(s, "{name}{{operation=\"{op}\"}} {n}");
    }
    for (name, help, n) in [
        (
            "sealstream_gateway_data_key_cache_hits_total",
            "Data-key unwraps answered from the cache of unwrapped data keys (no KMS call).",
            k.decrypt_cache_hits,
        ),
        (
            "sealstream_gateway_data_key_cache_misses_total",
            "Data-key unwraps the cache could not answer (each a KMS Decrypt).",
            k.decrypt_cache_misses,
        ),
    ] {
        let _ = writeln!(s, "# HELP {name} {help}");
        let _ = writeln!(s, "# TYPE {name} counter");
        let _ = writeln!(s, "{name} {n}");
    }
}
