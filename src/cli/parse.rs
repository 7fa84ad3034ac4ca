//! Parsers for command-line values that are not plain library types (`-c KEY=VALUE`,
//! durations such as `30m`).
//!
//! Self-contained on purpose: this file uses only the `sealstream` library and `std`, so
//! the `cli_parsers` fuzz target includes it with `#[path]` and fuzzes exactly the code the
//! binary runs, without these parsers becoming library API.

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

/// Parses a duration: seconds, or a number with `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().map_err(|_| {
        Error::InvalidArgument(format!("'{s}' is not a duration (e.g. 30s, 5m, 1h)"))
    })?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "'{s}': unknown duration unit '{unit}' (use s, m, h or d)"
            )));
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| Error::InvalidArgument(format!("'{s}' is too long")))
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
