//! Which keys a command holds: the keyring built from -k, --kms-key, --kms-discovery and
//! the embedded default key, in the order the library uses them.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{Cli, help, note};
use sealstream::error::{Error, Result};
use sealstream::keys::KeyProvider;
use sealstream::keys::local::{self, LocalKey};
use sealstream::kms::KmsSettings;
use sealstream::kms::blocking::{Kms, KmsDiscovery, KmsKey};

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

/// The keys one command holds, in the order they are used: for encryption the first one
/// generates the data key; for decryption they are tried in order.
#[derive(Default)]
pub(super) struct Keyring {
    pub(super) providers: Vec<Box<dyn KeyProvider>>,
}

impl Keyring {
    pub(super) fn as_refs(&self) -> Vec<&dyn KeyProvider> {
        self.providers.iter().map(|p| p.as_ref()).collect()
    }

    pub(super) fn push_local(&mut self, k: LocalKey) {
        self.providers.push(Box::new(k));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// A KMS client with the global KMS flags (region, profile, retries, timeout, endpoint).
pub(super) fn kms_connect(cli: &Cli) -> Result<Arc<Kms>> {
    Kms::connect(KmsSettings {
        region: cli.region.clone(),
        profile: cli.profile.clone(),
        max_attempts: cli.kms_max_attempts,
        operation_timeout: cli.kms_timeout.max(Duration::from_secs(1)),
        retry_notes: !cli.quiet,
        endpoint_url: cli.endpoint_url.clone(),
        ca_bundle: cli.ca_bundle.clone(),
        ..KmsSettings::default()
    })
}

/// Adds the key files `paths` to `ring`, in order.
pub(super) fn load_local(paths: &[PathBuf], ring: &mut Keyring) -> Result<()> {
    for p in paths {
        ring.push_local(load_key_file(p)?);
    }
    Ok(())
}

/// Loads one key file, printing its permission warnings (even with --quiet, like ssh).
pub(super) fn load_key_file(p: &Path) -> Result<LocalKey> {
    let (key, warnings) = LocalKey::load_with_warnings(p)?;
    for w in warnings {
        eprintln!("sealstream: warning: {w}");
    }
    Ok(key)
}

/// Keys for encryption: KMS keys first (the first generates the data key), then local keys;
/// with neither, the embedded default key (created on first use).
pub(super) fn encryption_keys(
    cli: &Cli,
    local_paths: &[PathBuf],
    kms_keys: &[String],
) -> Result<Keyring> {
    let mut ring = Keyring::default();
    if !kms_keys.is_empty() {
        let kms = kms_connect(cli)?;
        for k in kms_keys {
            ring.providers.push(Box::new(KmsKey::for_wrapping(&kms, k)));
        }
    }
    load_local(local_paths, &mut ring)?;
    if ring.is_empty() {
        let default = local::default_key_path()?;
        let (key, created) = if default.exists() {
            (load_key_file(&default)?, None)
        } else {
            local::load_or_create_default()?
        };
        if let Some(p) = created {
            note(
                cli.quiet,
                &format!(
                    "created the default local key {} at '{}'. Back it up: without it your files cannot be decrypted.",
                    key.id(),
                    p.display()
                ),
            );
        }
        ring.push_local(key);
    }
    Ok(ring)
}

/// Keys for decryption: local keys (-k, else the default key if it exists), then the KMS
/// keys the caller trusts.
pub(super) fn decryption_keys(
    cli: &Cli,
    local_paths: &[PathBuf],
    trust: &KmsTrustArgs,
) -> Result<Keyring> {
    let mut ring = Keyring::default();
    load_local(local_paths, &mut ring)?;
    let default_path = local::default_key_path().ok();
    if local_paths.is_empty()
        && let Some(p) = default_path.as_ref().filter(|p| p.exists())
    {
        ring.push_local(load_key_file(p)?);
    }
    if trust.any() {
        let kms = kms_connect(cli)?;
        // No KMS call here: an alias or key id is resolved only when a stanza could be
        // its key, so one unreachable region fails that stanza, not the whole command.
        for k in &trust.kms_keys {
            let key = KmsKey::trusted(&kms, k)?.with_max_decrypts(cli.kms_max_decrypts);
            ring.providers.push(Box::new(key));
        }
        if trust.kms_discovery {
            let d = KmsDiscovery::new(&kms, trust.kms_allow_accounts.clone())?;
            ring.providers
                .push(Box::new(d.with_max_decrypts(cli.kms_max_decrypts)));
        }
    }
    if ring.is_empty() {
        let shown = default_path.map_or_else(|| "(unknown)".into(), |p| p.display().to_string());
        return Err(Error::io(
            format!("loading the default key '{shown}'"),
            io::Error::new(
                io::ErrorKind::NotFound,
                "it does not exist; pass a key with -k KEYFILE or --kms-key KEY",
            ),
        ));
    }
    Ok(ring)
}
