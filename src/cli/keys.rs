//! Which keys a command holds: -k, --kms-key, --kms-discovery and the embedded default key
//! as a `sealstream::keyring::KeyringSpec`. The library orders the keys and applies the
//! default-key policy; this module only turns the flags into the spec and shows what the
//! library reports (key file warnings, a default key just created).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{Cli, help, note};
use sealstream::error::Result;
use sealstream::keyring::{self, DefaultKey, Keyring, KeyringEvent, KeyringSpec};
use sealstream::keys::local::LocalKey;
use sealstream::kms::KmsSettings;
use sealstream::kms::blocking::Kms;

/// Which KMS keys a decrypting command may call.
#[derive(Debug, Args)]
pub struct KmsTrustArgs {
    /// AWS KMS key (id, alias, or ARN) trusted to unwrap the data key (repeatable). Only
    /// stanzas of exactly these keys are sent to KMS.
    #[arg(long = "kms-key", value_name = "KEY", help_heading = help::KEYS)]
    pub kms_keys: Vec<String>,
    /// Try any KMS stanza whose key is in an allowed account (needs --kms-allow-account).
    #[arg(long, help_heading = help::KEYS)]
    pub kms_discovery: bool,
    /// Account id allowed in --kms-discovery (repeatable).
    #[arg(
        long = "kms-allow-account",
        value_name = "ACCOUNT",
        requires = "kms_discovery",
        help_heading = help::KEYS
    )]
    pub kms_allow_accounts: Vec<String>,
}

impl KmsTrustArgs {
    pub(super) fn any(&self) -> bool {
        !self.kms_keys.is_empty() || self.kms_discovery
    }
}

/// The global KMS flags (region, profile, retries, timeout, endpoint) as client settings.
fn kms_settings(cli: &Cli) -> KmsSettings {
    KmsSettings {
        region: cli.region.clone(),
        profile: cli.profile.clone(),
        max_attempts: cli.kms_max_attempts,
        operation_timeout: cli.kms_timeout.max(Duration::from_secs(1)),
        retry_notes: !cli.quiet,
        endpoint_url: cli.endpoint_url.clone(),
        ca_bundle: cli.ca_bundle.clone(),
        ..KmsSettings::default()
    }
}

/// A KMS client with the global KMS flags (region, profile, retries, timeout, endpoint).
pub(super) fn kms_connect(cli: &Cli) -> Result<Arc<Kms>> {
    Kms::connect(kms_settings(cli))
}

/// Shows what the library reports while loading keys: a key file warning always (even
/// with --quiet, like ssh), anything else as a note.
fn show(quiet: bool, event: KeyringEvent) {
    match &event {
        KeyringEvent::KeyFileWarning { .. } => eprintln!("sealstream: warning: {event}"),
        _ => note(quiet, &event.to_string()),
    }
}

/// Loads one key file, printing its permission warnings.
pub(super) fn load_key_file(cli: &Cli, p: &Path) -> Result<LocalKey> {
    keyring::load_key_file(p, &mut |e| show(cli.quiet, e))
}

/// Keys for encryption (the library's order: KMS keys, then key files, else the default
/// key, created on first use).
pub(super) fn encryption_keys(
    cli: &Cli,
    local_paths: &[PathBuf],
    kms_keys: &[String],
) -> Result<Keyring> {
    let spec = KeyringSpec::new()
        .local_keys(local_paths)
        .kms_keys(kms_keys)
        .default_key(DefaultKey::CreateIfMissing)
        .kms_settings(kms_settings(cli));
    Keyring::for_encryption(&spec, &mut |e| show(cli.quiet, e))
}

/// Keys for decryption (the library's order: key files, else the default key if it
/// exists, then the trusted KMS keys, then discovery).
pub(super) fn decryption_keys(
    cli: &Cli,
    local_paths: &[PathBuf],
    trust: &KmsTrustArgs,
) -> Result<Keyring> {
    let mut spec = KeyringSpec::new()
        .local_keys(local_paths)
        .kms_keys(&trust.kms_keys)
        .kms_max_decrypts(cli.kms_max_decrypts)
        .default_key(DefaultKey::IfPresent)
        .kms_settings(kms_settings(cli));
    if trust.kms_discovery {
        spec = spec.kms_discovery(trust.kms_allow_accounts.clone());
    }
    Keyring::for_decryption(&spec, &mut |e| show(cli.quiet, e))
}
