//! An S3-compatible gateway that encrypts on the way in and decrypts on the way out, so
//! that every S3 client (the AWS CLI, the SDKs, backup tools) gets sealstream's envelope
//! encryption without knowing about it. docs/GATEWAY.md describes operations, errors and
//! limits; this module is the library form (the `sealstream serve` command only parses
//! flags and calls it).
//!
//! ```text
//!  S3 client ──SigV4 (client credentials)──► Gateway (s3s: routing, XML, SigV4, aws-chunked)
//!                                              │  PutObject: body → EncryptReader → PutObject
//!                                              │  GetObject: S3::get_(range_)decrypted → body
//!                                              ▼
//!                              upstream S3 (the gateway's own AWS credentials)
//! ```
//!
//! The gateway keeps no state of its own: every object carries its header (metadata or
//! companion object, FORMAT.md §15), so any number of gateways can serve one bucket.

mod creds;
mod errors;
mod linger;
mod metrics;
mod server;
mod service;
mod tls;
mod watch;

use std::sync::Arc;

use crate::keys::AsyncKeyProvider;
use crate::s3::{S3, S3Settings};
use crate::{Context, Result};

pub use creds::{ClientCredentials, CredentialsChange};
pub use errors::{CODE_AUTHENTICATION_FAILED, CODE_NO_KEY, CODE_NOT_SEALSTREAM};

/// What the gateway does with an upstream object that is not a sealstream object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaintextObjects {
    /// Refuse it with [`CODE_NOT_SEALSTREAM`]: a client must never mistake an unencrypted
    /// object for one the gateway protects.
    #[default]
    Refuse,
    /// Serve it unchanged (GET, HEAD, copy), for migrating a bucket to encryption. New
    /// objects are still always written encrypted.
    Serve,
}

/// How the gateway behaves; everything but the keys and the upstream.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Encryption context stamped on every object written and required of every object
    /// read (authenticated, not secret).
    pub context: Context,
    /// Upstream objects without sealstream metadata.
    pub plaintext_objects: PlaintextObjects,
    /// Requests handled at once; more are answered `503 SlowDown` at once, which SDKs
    /// retry with backoff. Each GET or PUT in flight holds the engine's buffers (a few MiB).
    pub max_requests: usize,
    /// Largest request head (request line and headers) accepted; larger ones get 431.
    pub max_header_bytes: usize,
    /// Domains for virtual-hosted-style requests (`bucket.DOMAIN`); empty = path-style only.
    pub virtual_host_domains: Vec<String>,
    /// HEAD requests in flight at once per listing (plaintext sizes, docs/GATEWAY.md).
    pub list_head_concurrency: usize,
    /// Entries kept by the listing's size cache (key + ETag → plaintext size).
    pub size_cache_entries: usize,
    /// How long an unconditional GET may reuse an object's header (and a part-wise
    /// object's manifest) loaded by an earlier GET instead of a HEAD upstream (and a
    /// manifest GET) (zero: never). Every body GET stays pinned to the
    /// header's ETag, so a replaced or deleted object is always seen; only the metadata of
    /// an object whose body did not change (a metadata-only copy, a rewrap) may be this
    /// old. docs/GATEWAY.md "Costs".
    pub header_cache_ttl: std::time::Duration,
    /// How long in-flight requests may take to finish after shutdown is asked for.
    pub shutdown_grace: std::time::Duration,
    /// Serve HTTPS with this certificate and key (else plain HTTP, for a TLS-terminating
    /// proxy in front or a loopback-only deployment): read by [`Gateway::new`] and again
    /// by [`Gateway::reload_tls`], so renewed files are picked up without a restart.
    pub tls: Option<TlsFiles>,
    /// Send the sealed bodies upstream the SDK's default way: over plain HTTP that signs
    /// every 64 KiB of ciphertext (SHA-256 here and again upstream). Off by default: the
    /// gateway sends them unsigned with a CRC32 trailer over HTTP and HTTPS alike, since the
    /// ciphertext is authenticated end to end by the format (docs/GATEWAY.md, "Upstream
    /// requests"); on for a store that refuses unsigned payloads.
    pub upstream_signed_payload: bool,
}

/// A certificate chain and its private key, both PEM files, for HTTPS on the listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_chain: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            context: Context::default(),
            plaintext_objects: PlaintextObjects::Refuse,
            max_requests: 256,
            max_header_bytes: 64 * 1024,
            virtual_host_domains: Vec::new(),
            list_head_concurrency: 16,
            size_cache_entries: 100_000,
            header_cache_ttl: std::time::Duration::from_secs(5),
            shutdown_grace: std::time::Duration::from_secs(30),
            tls: None,
            upstream_signed_payload: false,
        }
    }
}

/// The keys of a gateway: which wrap new data keys, which are trusted to unwrap.
#[derive(Clone, Default)]
pub struct GatewayKeys {
    /// Providers every new object's data key is wrapped for (the first one generates it;
    /// a KMS key makes one GenerateDataKey call per upload).
    pub wrap: Vec<Arc<dyn AsyncKeyProvider>>,
    /// Providers tried, in order, to unwrap an object's data key on GET.
    pub unwrap: Vec<Arc<dyn AsyncKeyProvider>>,
    /// The KMS connection behind the KMS providers above, if any: `/metrics` reports its
    /// calls and its cache of unwrapped data keys ([`crate::kms::Kms::stats`]), the
    /// gateway's main running cost.
    pub kms: Option<Arc<crate::kms::Kms>>,
}

impl std::fmt::Debug for GatewayKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |v: &[Arc<dyn AsyncKeyProvider>]| {
            v.iter()
                .map(|p| format!("{}:{}", p.provider_id(), p.key_id()))
                .collect::<Vec<_>>()
        };
        f.debug_struct("GatewayKeys")
            .field("wrap", &ids(&self.wrap))
            .field("unwrap", &ids(&self.unwrap))
            .field("kms", &self.kms)
            .finish()
    }
}

/// The outcome of [`Gateway::reload`] or [`Gateway::reload_if_changed`], one result per
/// thing reloaded: one failing leaves the other's result standing, and each keeps what it
/// served before on an error.
#[derive(Debug)]
#[must_use = "a reload's errors should be reported"]
pub struct Reload {
    /// The TLS certificate: `Ok(true)` reloaded, `Ok(false)` nothing to do (plain HTTP,
    /// or files unchanged for the `_if_changed` form).
    pub tls: Result<bool>,
    /// The client credentials: the change, or `Ok(None)` when nothing was read (no file,
    /// or unchanged for the `_if_changed` form).
    pub client_credentials: Result<Option<CredentialsChange>>,
}

/// A configured gateway, ready to serve on a listener. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Gateway {
    svc: service::Service,
    metrics: Arc<metrics::Metrics>,
    /// The client credentials new requests are checked against (replaced by a reload).
    creds: Arc<creds::CredStore>,
    config: Arc<GatewayConfig>,
    /// The certificate new HTTPS handshakes use (with [`GatewayConfig::tls`]).
    tls: Option<Arc<tls::CertStore>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("config", &self.config)
            .field("clients", &self.creds)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// Builds a gateway forwarding through `client` (the gateway's own upstream
    /// credentials and endpoint; use path-style addressing with an endpoint override).
    /// The library's [`S3`] handle is built over the same client: the gateway also needs
    /// the raw client for calls it passes through (bucket calls, listings, copies).
    pub fn new(
        config: GatewayConfig,
        client: aws_sdk_s3::Client,
        settings: S3Settings,
        keys: GatewayKeys,
        creds: ClientCredentials,
    ) -> Result<Gateway> {
        if keys.wrap.is_empty() {
            return Err(crate::Error::InvalidArgument(
                "the gateway needs at least one key to encrypt new objects for (a KMS key or a local key file)".into(),
            ));
        }
        if creds.is_empty() {
            return Err(crate::Error::InvalidArgument(
                "the gateway needs at least one client credential (access key id and secret)"
                    .into(),
            ));
        }
        if config.max_requests == 0 || config.list_head_concurrency == 0 {
            return Err(crate::Error::InvalidArgument(
                "max_requests and list_head_concurrency must be at least 1".into(),
            ));
        }
        // Read here, so that a bad certificate stops the gateway before it listens.
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(tls::CertStore::load(files)?)),
            None => None,
        };
        let s3 = S3::from_client(client.clone(), settings)?;
        let config = Arc::new(config);
        let metrics = Arc::new(metrics::Metrics::new(keys.kms.clone()));
        Ok(Gateway {
            svc: service::Service::new(client, s3, keys, config.clone(), metrics.clone()),
            metrics,
            creds: Arc::new(creds::CredStore::new(creds)),
            config,
            tls,
        })
    }

    /// Reads [`GatewayConfig::tls`]'s certificate chain and key again and, if both are
    /// good, serves new TLS handshakes with them (renewed certificates without a restart:
    /// `sealstream serve` calls this on SIGHUP). Connections already open keep their
    /// session. On an error (a file missing, empty or unparseable, a key that does not
    /// match the certificate) the certificate served so far stays in use and the error
    /// names the file. Returns `Ok(false)` when the gateway serves plain HTTP.
    pub fn reload_tls(&self) -> Result<bool> {
        match &self.tls {
            Some(store) => self.count(metrics::Reloaded::Tls, store.reload().map(|_| true)),
            None => Ok(false),
        }
    }

    /// [`Gateway::reload_tls`] only if the certificate or key file changed (modification
    /// time, length or inode) since the last load or attempt, for a periodic check where
    /// nobody sends a signal (a Kubernetes secret volume, an ACME client without a hook).
    /// A bad new version is reported once, then waited on until the files change again.
    /// Returns whether it reloaded.
    pub fn reload_tls_if_changed(&self) -> Result<bool> {
        match &self.tls {
            Some(store) => match store.reload_if_changed() {
                Ok(None) => Ok(false),
                r => self.count(metrics::Reloaded::Tls, r.map(|_| true)),
            },
            None => Ok(false),
        }
    }

    /// Reads the client credentials file again (the one [`ClientCredentials::load`] read
    /// for [`Gateway::new`]) and, if it parses, checks new requests against its keys: a
    /// new client's key works and a revoked one is refused (403 InvalidAccessKeyId)
    /// without a restart (`sealstream serve` calls this on SIGHUP). A request whose
    /// signature was already checked finishes. On an error (the file missing, empty or
    /// unparseable, an access key id twice) the keys accepted so far stay in force and
    /// the error names the file and line, never a secret. Logs what changed, by label.
    /// Returns `Ok(None)` when the credentials did not come from a file.
    pub fn reload_client_credentials(&self) -> Result<Option<CredentialsChange>> {
        match self.creds.reload() {
            Ok(None) => Ok(None),
            r => self.count(metrics::Reloaded::ClientCredentials, r),
        }
    }

    /// [`Gateway::reload_client_credentials`] only if the file changed (modification time,
    /// length or inode) since the last load or attempt, for a periodic check (a
    /// Kubernetes secret volume replaced, nobody sending a signal). A bad new version is
    /// reported once, then waited on until the file changes again. `Ok(None)`: nothing
    /// to reload.
    pub fn reload_client_credentials_if_changed(&self) -> Result<Option<CredentialsChange>> {
        match self.creds.reload_if_changed() {
            Ok(None) => Ok(None),
            r => self.count(metrics::Reloaded::ClientCredentials, r),
        }
    }

    /// Checks new requests against `creds` from now on (for programs that build the set
    /// themselves; refused if empty). A later [`Gateway::reload_client_credentials`]
    /// still reads the file the gateway was built with, if any.
    pub fn set_client_credentials(&self, creds: ClientCredentials) -> Result<CredentialsChange> {
        self.count(metrics::Reloaded::ClientCredentials, self.creds.set(creds))
    }

    /// Everything that can be reloaded without a restart, each on its own: the TLS
    /// certificate ([`Gateway::reload_tls`]) and the client credentials
    /// ([`Gateway::reload_client_credentials`]). A failure of one does not keep the other
    /// from loading. What `sealstream serve` does on SIGHUP.
    pub fn reload(&self) -> Reload {
        Reload {
            tls: self.reload_tls(),
            client_credentials: self.reload_client_credentials(),
        }
    }

    /// [`Gateway::reload`] of the files that changed since their last load or attempt
    /// (the `_if_changed` forms): the periodic check of `sealstream serve
    /// --reload-interval`.
    pub fn reload_if_changed(&self) -> Reload {
        Reload {
            tls: self.reload_tls_if_changed(),
            client_credentials: self.reload_client_credentials_if_changed(),
        }
    }

    /// The client credentials new requests are checked against now.
    pub fn client_credentials(&self) -> Arc<ClientCredentials> {
        self.creds.current()
    }

    /// Counts a reload attempt's outcome for `/metrics`.
    fn count<T>(&self, what: metrics::Reloaded, r: Result<T>) -> Result<T> {
        self.metrics.reloaded(what, r.is_ok());
        r
    }

    /// Builds the upstream client from the standard AWS chain with `settings`' timeouts
    /// and retries: the endpoint override (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) is
    /// honoured and then addressed path-style. Returns the loaded configuration too, so a
    /// KMS client can share it.
    pub async fn upstream_client(
        settings: &S3Settings,
    ) -> Result<(aws_sdk_s3::Client, aws_config::SdkConfig)> {
        let (conf, endpoint) = crate::s3::load_config(settings).await?;
        let mut b = aws_sdk_s3::config::Builder::from(&conf).interceptor(crate::aws::S3Timeouts {
            operation_timeout: settings.operation_timeout,
        });
        if let Some(ep) = endpoint {
            b = b.endpoint_url(ep).force_path_style(true);
        }
        if conf.region().is_none() {
            b = b.region(aws_types::region::Region::new("us-east-1"));
        }
        Ok((aws_sdk_s3::Client::from_conf(b.build()), conf))
    }

    /// Serves on `listener` until `shutdown` completes; then stops accepting, lets the
    /// requests in flight finish (up to [`GatewayConfig::shutdown_grace`]) and returns.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) -> Result<()> {
        server::serve(self, listener, shutdown).await
    }
}
