//! AWS plumbing shared by [`crate::kms`] and [`crate::s3`]: one way to load the standard
//! configuration chain (credentials, region, profile, `AWS_ENDPOINT_URL…`), with the HTTPS
//! client on rustls + ring (no second crypto library, no C build) and the SDK's standard
//! retry mode (exponential backoff with jitter for throttling and transient faults).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::Region;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// How to load the configuration and how hard each call may try.
#[derive(Debug, Clone)]
pub struct AwsOptions {
    /// Region override (else the chain's region).
    pub region: Option<String>,
    /// Named profile override.
    pub profile: Option<String>,
    /// Attempts per call, including the first.
    pub max_attempts: u32,
    /// First retry delay (doubled per attempt, with jitter).
    pub initial_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
    /// Timeouts (connect, read, whole operation).
    pub timeouts: TimeoutConfig,
}

/// Loads the AWS configuration chain on `rt` (no network call unless the chain needs one,
/// e.g. for instance credentials).
pub fn load_config(rt: &tokio::runtime::Runtime, o: &AwsOptions) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let retry = RetryConfig::standard()
        .with_max_attempts(o.max_attempts.max(1))
        .with_initial_backoff(o.initial_backoff)
        .with_max_backoff(o.max_backoff);
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry)
        .timeout_config(o.timeouts.clone());
    if let Some(r) = &o.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &o.profile {
        loader = loader.profile_name(p);
    }
    rt.block_on(loader.load())
}
