//! Counters for `GET /metrics` (Prometheus text format 0.0.4), kept with atomics and one
//! small map: no metrics crate needed for a handful of series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the gateway counts. Shared by the server (requests) and the S3 operations
/// (bytes, authentication failures).
#[derive(Default)]
pub(crate) struct Metrics {
    /// (method, status) → answers.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// Requests refused with 503 because `max_requests` were in flight.
    pub(crate) rejected: AtomicU64,
    /// Stored objects that failed authentication (body, metadata, companion).
    pub(crate) auth_failures: AtomicU64,
    /// Plaintext bytes accepted by PutObject (stored).
    pub(crate) bytes_in: AtomicU64,
    /// Plaintext bytes sent in GetObject answers.
    pub(crate) bytes_out: AtomicU64,
}

impl Metrics {
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
        s
    }
}
