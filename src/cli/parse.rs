//! Parsers for command-line values that are not plain library types (`-c KEY=VALUE`,
//! durations such as `1h30m`, endpoint URLs).
//!
//! Self-contained on purpose: this file uses only the `sealstream` library, `std` and
//! `humantime` (a dependency of the fuzz crate too), so the `cli_parsers` fuzz target
//! includes it with `#[path]` and fuzzes exactly the code the binary runs, without these
//! parsers becoming library API.

use std::time::Duration;

use sealstream::error::{Error, Result};
use sealstream::format::Context;

/// Parses `-c KEY=VALUE` flags into a context.
pub fn parse_context(pairs: &[String]) -> Result<Context> {
    let mut kv = Vec::with_capacity(pairs.len());
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("context '{p}' is not KEY=VALUE")))?;
        kv.push((k.to_string(), v.to_string()));
    }
    Context::from_pairs(kv)
}

/// Parses a duration flag: a plain number is seconds (what the timeouts took before, and
/// what their environment variables may still hold), anything else goes to `humantime`:
/// `90s`, `5m`, `1h30m`, `2days`, `1h 30m`. clap reports an error as a usage error (exit 2)
/// naming the flag.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("'{s}' is too many seconds; write e.g. 90, 30s, 5m or 1h30m"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("'{s}' is not a duration ({e}); write e.g. 90, 30s, 5m or 1h30m"))
}

/// Checks `--endpoint-url`: an absolute `http://` or `https://` URL with a host, so a typo
/// is a usage error here rather than a connection failure after the keys were loaded.
pub fn parse_endpoint_url(s: &str) -> std::result::Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| {
            format!("'{s}' is not an http:// or https:// URL (e.g. http://localhost:9000)")
        })?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return Err(format!("'{s}' has no host (e.g. http://localhost:9000)"));
    }
    Ok(s.to_string())
}
