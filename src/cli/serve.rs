//! `sealstream serve`: flags, their environment variables (for containers) and a config
//! file (src/cli/serve_config.rs) into a `sealstream::gateway::Gateway`; the gateway
//! itself is library code.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use sealstream::error::{Error, Result};
use sealstream::gateway::{
    ClientCredentials, Gateway, GatewayConfig, GatewayKeys, PlaintextObjects, Reload, TlsFiles,
};
use sealstream::keyring;
use sealstream::keys::AsyncKeyProvider;
use sealstream::kms::{Kms, KmsKey, KmsSettings};
use sealstream::s3::S3Settings;

use super::Cli;
use super::parse::parse_context;

/// `serve` options. Every flag can also come from the environment variable named in its
/// help (lists separated by commas there), and from the `--config` file.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (HOST:PORT; port 0 picks a free one, printed on stdout).
    #[arg(
        long,
        value_name = "ADDR",
        env = "SEALSTREAM_LISTEN",
        default_value = "127.0.0.1:9000"
    )]
    pub listen: String,
    /// AWS KMS key (id, alias or ARN) new objects' data keys are wrapped for, and trusted
    /// to unwrap them (repeatable; the first generates each data key).
    #[arg(
        long = "kms-key",
        value_name = "KEY",
        env = "SEALSTREAM_KMS_KEY",
        value_delimiter = ','
    )]
    pub kms_keys: Vec<String>,
    /// Local key file new objects' data keys are wrapped for, and used to unwrap them
    /// (repeatable).
    #[arg(
        short = 'k',
        long = "key",
        value_name = "KEYFILE",
        env = "SEALSTREAM_KEY",
        value_delimiter = ','
    )]
    pub keys: Vec<PathBuf>,
    /// Encryption context pair stamped on every object written and required of every
    /// object read (repeatable).
    #[arg(
        short = 'c',
        long = "context",
        value_name = "KEY=VALUE",
        env = "SEALSTREAM_CONTEXT",
        value_delimiter = ','
    )]
    pub context: Vec<String>,
    /// The access keys clients sign with: an AWS shared-credentials file (one [section]
    /// per client with aws_access_key_id and aws_secret_access_key). Not the gateway's own
    /// upstream credentials, which come from the AWS chain. Read again on SIGHUP and when
    /// it changes (--reload-interval); a bad new file is logged and the keys in force kept.
    /// Required (here, in the environment or in the config file).
    #[arg(long, value_name = "FILE", env = "SEALSTREAM_CLIENT_CREDENTIALS")]
    pub client_credentials: Option<PathBuf>,
    /// Serve upstream objects that are not sealstream objects unchanged (for migrating a
    /// bucket); by default they are refused with SealstreamNotEncrypted.
    #[arg(long, env = "SEALSTREAM_SERVE_PLAINTEXT_OBJECTS")]
    pub serve_plaintext_objects: bool,
    /// Domain for virtual-hosted-style requests (BUCKET.DOMAIN), repeatable; without it
    /// only path-style requests are understood.
    #[arg(
        long = "virtual-host-domain",
        value_name = "DOMAIN",
        env = "SEALSTREAM_VIRTUAL_HOST_DOMAIN",
        value_delimiter = ','
    )]
    pub virtual_host_domains: Vec<String>,
    /// Requests handled at once; more get 503 SlowDown (clients retry).
    #[arg(
        long,
        value_name = "N",
        env = "SEALSTREAM_MAX_REQUESTS",
        default_value_t = 256
    )]
    pub max_requests: usize,
    /// Largest request head (request line plus headers) in bytes; larger ones get 431.
    #[arg(long, value_name = "BYTES", env = "SEALSTREAM_MAX_HEADER_BYTES", default_value_t = 64 * 1024)]
    pub max_header_bytes: usize,
    /// HEAD requests in flight per listing (listings report plaintext sizes).
    #[arg(
        long,
        value_name = "N",
        env = "SEALSTREAM_LIST_CONCURRENCY",
        default_value_t = 16
    )]
    pub list_concurrency: usize,
    /// Seconds an unconditional GET may reuse an object's header (and part manifest) loaded
    /// by an earlier GET instead of a HEAD upstream (0: never). GETs stay pinned to the object's ETag, so a
    /// replaced or deleted object is always seen; only metadata changed without a body
    /// change (a rewrap, a metadata-only copy) may be served this late.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "SEALSTREAM_HEADER_CACHE_SECONDS",
        default_value_t = 5
    )]
    pub header_cache_seconds: u64,
    /// Seconds requests in flight may take to finish after SIGTERM or Ctrl-C.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "SEALSTREAM_SHUTDOWN_GRACE",
        default_value_t = 30
    )]
    pub shutdown_grace: u64,
    /// Sign the sealed bodies sent upstream (the SDK's default: over plain HTTP a SHA-256
    /// of every 64 KiB, here and again upstream). By default they go unsigned with a CRC32
    /// trailer, as over HTTPS: the format authenticates the ciphertext end to end. For a
    /// store that refuses unsigned payloads over HTTP.
    #[arg(long, env = "SEALSTREAM_UPSTREAM_SIGNED_PAYLOAD")]
    pub upstream_signed_payload: bool,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key). It and the key are
    /// read again on SIGHUP and when they change (--reload-interval); a bad new file is
    /// logged and the working certificate kept.
    #[arg(long, value_name = "FILE", env = "SEALSTREAM_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "SEALSTREAM_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Seconds between checks of --client-credentials, --tls-cert and --tls-key for a new
    /// version (modification time, length, inode), loaded as on SIGHUP; 0: only on SIGHUP.
    /// For changes that send no signal (a Kubernetes secret volume, an ACME client without
    /// a hook). Formerly --tls-reload-interval (SEALSTREAM_TLS_RELOAD_INTERVAL), still
    /// accepted.
    #[arg(
        long,
        alias = "tls-reload-interval",
        value_name = "SECONDS",
        env = "SEALSTREAM_RELOAD_INTERVAL",
        default_value_t = 60
    )]
    pub reload_interval: u64,
    /// Log filter (tracing syntax, e.g. info, debug, sealstream=debug,s3s=info); logs go
    /// to stderr.
    #[arg(
        long,
        value_name = "FILTER",
        env = "SEALSTREAM_LOG",
        default_value = "info"
    )]
    pub log: String,
    /// Log line format: text (human-readable) or json (one object per line, for log
    /// shippers).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "SEALSTREAM_LOG_FORMAT",
        default_value = "text",
        value_parser = ["text", "json"]
    )]
    pub log_format: String,
    /// TOML file with any of these options and the global upstream ones (region,
    /// endpoint-url, profile, s3-*, kms-*, concurrency, part-size); keys are the long flag
    /// names, e.g. max-requests = 64. A flag or environment variable wins over the file.
    #[arg(long, value_name = "FILE", env = "SEALSTREAM_CONFIG")]
    pub config: Option<PathBuf>,
    /// The ids of the options set by a flag or an environment variable, which the config
    /// file does not override (filled in by [`note_sources`]).
    #[arg(skip)]
    pub given: std::collections::BTreeSet<String>,
}

/// Records which `serve` options came from flags or the environment (clap's matches know,
/// the parsed struct does not), so that the config file fills in only the others.
pub fn note_sources(cli: &mut Cli, m: &clap::ArgMatches) {
    if let (super::Command::Serve(a), Some(("serve", sub))) = (&mut cli.command, m.subcommand()) {
        a.given = super::serve_config::given_ids(sub);
    }
}

/// Sets up the log: `filter` in tracing's syntax, `format` text or json, to stderr.
fn init_logs(filter: &str, format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| Error::InvalidArgument(format!("--log '{filter}': {e}")))?;
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let _ = match format {
        "text" => b.try_init(),
        "json" => b.json().flatten_event(true).try_init(),
        other => {
            return Err(Error::InvalidArgument(format!(
                "--log-format '{other}': use text or json"
            )));
        }
    };
    Ok(())
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub fn serve(cli: &Cli, a: &ServeArgs) -> Result<()> {
    let (a, up) = super::serve_config::apply(cli, a)?;
    let a = &a;
    init_logs(&a.log, &a.log_format)?;
    // What the upstream clients are built with, whichever source gave it (no secrets here).
    let chain = "(AWS chain)";
    tracing::info!(
        region = %up.region.as_deref().unwrap_or(chain),
        profile = %up.profile.as_deref().unwrap_or(chain),
        endpoint_url = %up.endpoint_url.as_deref().unwrap_or(chain),
        ca_bundle = %up.ca_bundle.as_deref().map_or("(system roots)".into(), |p| p.display().to_string()),
        s3_max_attempts = up.s3_max_attempts,
        s3_timeout = ?up.s3_timeout,
        s3_connect_timeout = ?up.s3_connect_timeout,
        s3_read_timeout = ?up.s3_read_timeout,
        concurrency = up.concurrency,
        part_size = up.part_size,
        kms_max_attempts = up.kms_max_attempts,
        kms_timeout = ?up.kms_timeout,
        kms_max_decrypts = up.kms_max_decrypts,
        "upstream settings"
    );
    if a.kms_keys.is_empty() && a.keys.is_empty() {
        return Err(Error::InvalidArgument(
            "serve needs a key to encrypt with: --kms-key KEY or -k KEYFILE (or kms-key / key in the config file)".into(),
        ));
    }
    let Some(creds_file) = &a.client_credentials else {
        return Err(Error::InvalidArgument(
            "serve needs --client-credentials FILE (or SEALSTREAM_CLIENT_CREDENTIALS, or client-credentials in the config file)".into(),
        ));
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Some(TlsFiles {
            cert_chain: c.clone(),
            key: k.clone(),
        }),
        (None, None) => None,
        _ => {
            return Err(Error::InvalidArgument(
                "--tls-cert and --tls-key go together (flags, environment or config file)".into(),
            ));
        }
    };
    let creds = ClientCredentials::load(creds_file)?;
    let config = GatewayConfig {
        context: parse_context(&a.context)?,
        plaintext_objects: if a.serve_plaintext_objects {
            PlaintextObjects::Serve
        } else {
            PlaintextObjects::Refuse
        },
        max_requests: a.max_requests,
        max_header_bytes: a.max_header_bytes,
        virtual_host_domains: a.virtual_host_domains.clone(),
        list_head_concurrency: a.list_concurrency,
        shutdown_grace: Duration::from_secs(a.shutdown_grace),
        header_cache_ttl: Duration::from_secs(a.header_cache_seconds),
        tls,
        upstream_signed_payload: a.upstream_signed_payload,
        ..GatewayConfig::default()
    };
    // Each GET holds about (concurrency + 2) ranged-GET segments of --part-size: with
    // the CLI's defaults (4 × 8 MiB) that is ~48 MiB per request in flight.
    let settings = S3Settings {
        retry_notes: false,
        ..super::s3::settings_for(&up, cli.quiet)?
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("starting the async runtime", e))?;
    rt.block_on(async {
        let (client, conf) = Gateway::upstream_client(&settings).await?;
        // Not a `keyring::Keyring`: the gateway holds the same keys both ways (KMS keys
        // first in both lists, no default key) on an async KMS built from the upstream's
        // configuration; only the key files are read the keyring's way.
        let mut keys = GatewayKeys::default();
        if !a.kms_keys.is_empty() {
            // The loaded configuration carries the S3 retry settings; KMS gets its own.
            let kms_conf = conf
                .to_builder()
                .retry_config(
                    aws_smithy_types::retry::RetryConfig::standard()
                        .with_max_attempts(up.kms_max_attempts.max(1))
                        .with_initial_backoff(Duration::from_millis(100))
                        .with_max_backoff(Duration::from_secs(10)),
                )
                .build();
            let kms = Kms::from_conf(
                &kms_conf,
                KmsSettings {
                    max_attempts: up.kms_max_attempts,
                    operation_timeout: up.kms_operation_timeout(),
                    endpoint_url: up.endpoint_url.clone(),
                    retry_notes: false,
                    ..KmsSettings::default()
                },
            );
            keys.kms = Some(kms.clone());
            for k in &a.kms_keys {
                keys.wrap.push(Arc::new(KmsKey::for_wrapping(&kms, k)));
                let trusted = KmsKey::trusted(&kms, k)?.with_max_decrypts(up.kms_max_decrypts);
                keys.unwrap.push(Arc::new(trusted));
            }
        }
        for p in &a.keys {
            let key = keyring::load_key_file(p, &mut |e| tracing::warn!("{e}"))?;
            let key: Arc<dyn AsyncKeyProvider> = Arc::new(key);
            keys.wrap.push(key.clone());
            keys.unwrap.push(key);
        }
        let gw = Gateway::new(config, client, settings.clone(), keys, creds)?;
        // Before the first line on stdout: from then on a SIGHUP reloads, never kills.
        reload_on_hangup(&gw, a.tls_cert.is_some())?;
        if a.reload_interval > 0 {
            tracing::info!(
                reload_interval = a.reload_interval,
                "checking the client credentials and TLS files for changes every {}s",
                a.reload_interval
            );
            reload_when_changed(&gw, Duration::from_secs(a.reload_interval));
        } else {
            tracing::info!("files are reloaded on SIGHUP only (reload interval 0)");
        }
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .map_err(|e| Error::io(format!("listening on {}", a.listen), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listening address", e))?;
        // First line on stdout: how a supervisor (or a test) finds a port chosen with :0.
        let scheme = if a.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        println!("listening on {scheme}://{addr}");
        gw.serve(listener, shutdown_signal()).await
    })
}

/// On every SIGHUP (the Unix convention for "read your files again", as nginx does),
/// reloads the TLS certificate and key and the client credentials in the background:
/// renewed certificates (ACME, cert-manager) are served to new connections and a new or
/// revoked client key takes effect for new requests, without a restart. A bad new file is
/// logged and leaves what was served in place; each file on its own. The config file and
/// every other setting are not reloaded.
#[cfg(unix)]
fn reload_on_hangup(gw: &Gateway, tls: bool) -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup =
        signal(SignalKind::hangup()).map_err(|e| Error::io("installing the SIGHUP handler", e))?;
    let gw = gw.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if tls {
                tracing::info!("SIGHUP: reloading the TLS certificate and the client credentials");
            } else {
                tracing::info!("SIGHUP: reloading the client credentials");
            }
            let g = gw.clone();
            match tokio::task::spawn_blocking(move || g.reload()).await {
                Ok(r) => {
                    if let Ok(false) = r.tls {
                        tracing::debug!("no TLS certificate to reload (plain HTTP)");
                    }
                    log_reload_errors(r, false);
                }
                Err(e) => tracing::error!(error = %e, "reload failed"),
            }
        }
    });
    Ok(())
}

/// Logs each failure of a reload on its own line, saying what stays in force; `periodic`:
/// found by the periodic check (else asked for by SIGHUP).
fn log_reload_errors(r: Reload, periodic: bool) {
    let (tls, creds) = if periodic {
        (
            "TLS certificate files changed but could not be loaded",
            "client credentials file changed but could not be loaded",
        )
    } else {
        (
            "TLS certificate reload failed",
            "client credentials reload failed",
        )
    };
    if let Err(e) = r.tls {
        tracing::error!(error = %e, "{tls}; still serving the previous certificate");
    }
    if let Err(e) = r.client_credentials {
        tracing::error!(error = %e, "{creds}; the previous client keys stay in force");
    }
}

/// Every `every`, reloads the TLS certificate and key and the client credentials if their
/// files changed (see [`Gateway::reload_if_changed`]): changes that send no signal are
/// picked up within `every`. A bad new version is logged once, and what was served stays.
fn reload_when_changed(gw: &Gateway, every: Duration) {
    let gw = gw.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is now: the files were just loaded
        loop {
            tick.tick().await;
            let g = gw.clone();
            match tokio::task::spawn_blocking(move || g.reload_if_changed()).await {
                Ok(r) => log_reload_errors(r, true),
                Err(e) => tracing::error!(error = %e, "reload check failed"),
            }
        }
    });
}

/// SIGHUP exists only on Unix.
#[cfg(not(unix))]
fn reload_on_hangup(_gw: &Gateway, _tls: bool) -> Result<()> {
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown requested");
}
