//! `-v`/`-vv`/`-vvv` and `RUST_LOG`: the library's `tracing` events (every AWS call with its
//! operation, target, range, status, request id and duration; retries and why) and, from
//! `-vv` on, the AWS SDK's own (retry classification, credentials chain, endpoints), on
//! stderr. `--quiet` stays quiet. The gateway (`serve`) configures its own logging.

use sealstream::error::{Error, Result};

/// The filter for `verbose` (the count of `-v`), unless `RUST_LOG` is set.
fn default_filter(verbose: u8) -> Option<&'static str> {
    match verbose {
        0 => None,
        1 => Some("sealstream=info"),
        2 => Some("sealstream=debug,aws_smithy_runtime=debug,aws_config=info"),
        _ => Some(
            "sealstream=trace,aws_smithy_runtime=trace,aws_config=debug,aws_sdk_s3=debug,aws_sdk_kms=debug",
        ),
    }
}

/// Installs the stderr subscriber; returns whether logging is on (the progress bar then
/// stays off, so log lines and the bar never share a line).
pub fn init(verbose: u8, quiet: bool) -> Result<bool> {
    if quiet {
        return Ok(false);
    }
    let from_env = std::env::var("RUST_LOG").ok().filter(|s| !s.is_empty());
    let spec = match (&from_env, default_filter(verbose)) {
        (Some(s), _) => s.clone(),
        (None, Some(s)) => s.to_string(),
        (None, None) => return Ok(false),
    };
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .map_err(|e| Error::InvalidArgument(format!("RUST_LOG '{spec}': {e}")))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_filter_parses() {
        for v in 0..5 {
            if let Some(f) = default_filter(v) {
                tracing_subscriber::EnvFilter::try_new(f).unwrap();
            }
        }
        assert_eq!(default_filter(0), None);
    }
}
