//! AWS KMS as a key provider: `GenerateDataKey` for the first KMS key, `Encrypt` to wrap the
//! same data key for every further key (each in its own region), and `Decrypt` with the
//! stanza's key pinned.
//!
//! Async first: [`Kms`] is built from the caller's `aws_config::SdkConfig`
//! ([`Kms::from_conf`]) or KMS client ([`Kms::from_client`]) and its calls are awaited on
//! the caller's runtime (multi-thread or current-thread); [`KmsKey`] and [`KmsDiscovery`]
//! are [`AsyncKeyProvider`]s. The CLI and synchronous callers use [`blocking`], which owns
//! a small runtime, loads the standard AWS configuration chain (`aws-config`: credentials,
//! region, profile, endpoint, so the same code talks to real AWS and to the local emulator
//! via `AWS_ENDPOINT_URL`/`AWS_ENDPOINT_URL_KMS`) and implements the synchronous
//! [`crate::keys::KeyProvider`].
//!
//! Decryption never calls KMS for a key the caller did not choose: either the caller names
//! the keys it trusts ([`KmsKey::trusted`]: a key ARN is used as given, an alias or key id
//! is resolved with `DescribeKey` only once a stanza could be its key), or it opts into
//! discovery restricted to an account allow-list ([`KmsDiscovery`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::operation::RequestId;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::error::{Error, Result, StanzaFailure};
use crate::format::{Context, Stanza};
use crate::keys::cache::SingleFlight;
use crate::keys::{AsyncKeyProvider, BoxFuture, DataKey};

/// Provider id of KMS stanzas.
pub const PROVIDER_ID: &str = "aws-kms";

/// How to reach KMS and how hard to try.
///
/// [`Kms::from_conf`] and [`Kms::from_client`] honour `region` (an override of the
/// configuration's region), the decrypt cache and `retry_notes`; retries and timeouts are
/// the caller's configuration's. `profile`, `max_attempts` and `operation_timeout` are
/// used when [`blocking::Kms::connect`] loads the configuration itself.
#[derive(Debug, Clone)]
pub struct KmsSettings {
    /// Region override (else the configuration's region).
    pub region: Option<String>,
    /// Named profile override ([`blocking::Kms::connect`] only).
    pub profile: Option<String>,
    /// Attempts per call, including the first (throttling and transient errors are retried
    /// with exponential backoff and jitter) ([`blocking::Kms::connect`] only).
    pub max_attempts: u32,
    /// Upper bound on one call including all retries ([`blocking::Kms::connect`] only).
    pub operation_timeout: Duration,
    /// How long an unwrapped data key is reused for the same stanza and context within
    /// this process (ranged reads, batches); zero disables the cache.
    pub decrypt_cache_max_age: Duration,
    /// Most unwrapped data keys held at once.
    pub decrypt_cache_entries: usize,
    /// Print one line on stderr per retry (what is retried and why).
    pub retry_notes: bool,
    /// Endpoint URL override (a local emulator, a VPC endpoint): wins over
    /// `AWS_ENDPOINT_URL_KMS` and `AWS_ENDPOINT_URL`, as the AWS CLI's `--endpoint-url` does,
    /// so a command line can name the endpoint without touching the environment.
    pub endpoint_url: Option<String>,
    /// PEM file of CA certificates trusted for HTTPS besides the system's roots (the CLI's
    /// `--ca-bundle` / `AWS_CA_BUNDLE`), for a store or endpoint behind a private CA.
    pub ca_bundle: Option<std::path::PathBuf>,
}

impl Default for KmsSettings {
    fn default() -> Self {
        KmsSettings {
            region: None,
            profile: None,
            max_attempts: 8,
            operation_timeout: Duration::from_secs(60),
            decrypt_cache_max_age: Duration::from_secs(300),
            decrypt_cache_entries: 1000,
            retry_notes: false,
            endpoint_url: None,
            ca_bundle: None,
        }
    }
}

/// A connection to KMS: the caller's configuration, one client per region (built from
/// that configuration), and the cache of unwrapped data keys. No runtime of its own: every
/// call is an `async fn` awaited by the caller.
pub struct Kms {
    /// The KMS configuration every regional client is derived from.
    base: aws_sdk_kms::Config,
    /// The endpoint override, if known (named in connection errors).
    endpoint: Option<String>,
    /// Regional clients; the lock is never held across an await.
    clients: Mutex<HashMap<String, Client>>,
    /// Unwrapped data keys by (key ARN, wrapped blob, context); zeroized on eviction/drop.
    /// Single flight per entry: one slow or hostile stanza does not hold up the others.
    unwrapped: SingleFlight<(DataKey, Instant)>,
    settings: KmsSettings,
    /// Calls and cache outcomes, for a service's metrics ([`Kms::stats`]).
    counters: Counters,
}

/// Running totals of one [`Kms`]: what a long-running service (the gateway's `/metrics`)
/// reports so that its KMS cost can be watched and its cache checked. Calls are counted
/// when they are sent (one per operation, retries included in the one), failed or not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KmsStats {
    /// `GenerateDataKey` calls (one per object written with a KMS key first).
    pub generate_data_key: u64,
    /// `Encrypt` calls (wrapping a data key for a further KMS key).
    pub encrypt: u64,
    /// `Decrypt` calls (unwrapping a data key the cache did not hold).
    pub decrypt: u64,
    /// `ReEncrypt` calls (rewrap).
    pub re_encrypt: u64,
    /// `DescribeKey` calls (resolving an alias or key id to its ARN).
    pub describe_key: u64,
    /// Unwraps answered from the cache of unwrapped data keys (no KMS call).
    pub decrypt_cache_hits: u64,
    /// Unwraps the cache could not answer (each made a `Decrypt` call, or tried to).
    /// Unwraps with the cache disabled count here too.
    pub decrypt_cache_misses: u64,
}

/// The atomics behind [`KmsStats`].
#[derive(Default)]
struct Counters {
    generate_data_key: AtomicU64,
    encrypt: AtomicU64,
    decrypt: AtomicU64,
    re_encrypt: AtomicU64,
    describe_key: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("region", &self.base.region())
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// KMS from the caller's AWS configuration (credentials, region, endpoint, retries,
    /// timeouts, HTTP client): a service keeps one `SdkConfig` for all its clients. Makes
    /// no network call.
    pub fn from_conf(conf: &aws_config::SdkConfig, settings: KmsSettings) -> Arc<Kms> {
        let mut builder = aws_sdk_kms::config::Builder::from(conf);
        // The SDK applies AWS_ENDPOINT_URL_KMS over the shared configuration's endpoint;
        // an explicit override wins over both. The label follows the same order.
        let endpoint = match &settings.endpoint_url {
            Some(ep) => {
                builder = builder.endpoint_url(ep);
                Some(ep.clone())
            }
            None => std::env::var("AWS_ENDPOINT_URL_KMS")
                .ok()
                .filter(|s| !s.is_empty())
                .or_else(|| conf.endpoint_url().map(str::to_string)),
        };
        Kms::build(builder, endpoint, settings)
    }

    /// KMS from the caller's client (its configuration is reused for the clients of other
    /// regions a key ARN names). Makes no network call.
    pub fn from_client(client: Client, settings: KmsSettings) -> Arc<Kms> {
        Kms::build(client.config().to_builder(), None, settings)
    }

    fn build(
        mut builder: aws_sdk_kms::config::Builder,
        endpoint: Option<String>,
        settings: KmsSettings,
    ) -> Arc<Kms> {
        if let Some(r) = &settings.region {
            builder = builder.region(Region::new(r.clone()));
        }
        let plain = builder.build();
        let attempts = plain
            .retry_config()
            .map_or(settings.max_attempts, |r| r.max_attempts());
        let base = plain
            .to_builder()
            .interceptor(crate::aws::RetryNotes {
                service: "KMS",
                max_attempts: attempts,
                enabled: settings.retry_notes,
            })
            .build();
        Arc::new(Kms {
            base,
            endpoint,
            clients: Mutex::new(HashMap::new()),
            unwrapped: SingleFlight::default(),
            settings,
            counters: Counters::default(),
        })
    }

    /// The calls made and the cache outcomes so far (a snapshot; counters only grow).
    pub fn stats(&self) -> KmsStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KmsStats {
            generate_data_key: get(&c.generate_data_key),
            encrypt: get(&c.encrypt),
            decrypt: get(&c.decrypt),
            re_encrypt: get(&c.re_encrypt),
            describe_key: get(&c.describe_key),
            decrypt_cache_hits: get(&c.cache_hits),
            decrypt_cache_misses: get(&c.cache_misses),
        }
    }

    /// The endpoint override in use, if any (named in connection errors).
    pub fn endpoint(&self) -> Option<&str> {
        self.endpoint.as_deref()
    }

    fn default_region(&self) -> Option<String> {
        self.base.region().map(|r| r.to_string())
    }

    /// Attempts per call, as configured (for "still throttled after N attempts").
    fn max_attempts(&self) -> u32 {
        self.base
            .retry_config()
            .map_or(self.settings.max_attempts, |r| r.max_attempts())
    }

    /// A client for `region` (the key's own region for ARNs, else the default).
    fn client(&self, region: Option<&str>) -> Result<Client> {
        let region = region
            .map(str::to_string)
            .or_else(|| self.default_region())
            .ok_or_else(|| {
                Error::key_service(
                    "no AWS region configured: set one in the configuration (AWS_REGION) or use a key ARN",
                )
            })?;
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| Error::key_service("KMS client cache poisoned"))?;
        let client = clients.entry(region.clone()).or_insert_with(|| {
            Client::from_conf(self.base.to_builder().region(Region::new(region)).build())
        });
        Ok(client.clone())
    }

    /// Resolves a key id, alias or ARN to the key's ARN with `DescribeKey`.
    pub async fn resolve_arn(&self, key: &str) -> Result<String> {
        let client = self.client(region_of(key).as_deref())?;
        bump(&self.counters.describe_key);
        let out = client
            .describe_key()
            .key_id(key)
            .send()
            .await
            .map_err(|e| self.service_error("DescribeKey", key, e))?;
        out.key_metadata()
            .map(|m| m.arn().unwrap_or(m.key_id()).to_string())
            .ok_or_else(|| {
                Error::key_service(format!("DescribeKey for {key} returned no key metadata"))
            })
    }

    async fn generate(&self, key: &str, context: &Context) -> Result<(DataKey, Stanza)> {
        let client = self.client(region_of(key).as_deref())?;
        bump(&self.counters.generate_data_key);
        let out = client
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| self.service_error("GenerateDataKey", key, e))?;
        let dek = data_key_from(out.plaintext(), "GenerateDataKey", key)?;
        let stanza = stanza_from(out.key_id(), out.ciphertext_blob(), "GenerateDataKey", key)?;
        Ok((dek, stanza))
    }

    async fn encrypt(&self, key: &str, dek: &DataKey, context: &Context) -> Result<Stanza> {
        let client = self.client(region_of(key).as_deref())?;
        bump(&self.counters.encrypt);
        let out = client
            .encrypt()
            .key_id(key)
            .plaintext(zeroizing_blob(*dek.expose()))
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| self.service_error("Encrypt", key, e))?;
        stanza_from(out.key_id(), out.ciphertext_blob(), "Encrypt", key)
    }

    async fn decrypt(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        let max_age = self.settings.decrypt_cache_max_age;
        if max_age.is_zero() || self.settings.decrypt_cache_entries == 0 {
            bump(&self.counters.cache_misses);
            return self.decrypt_uncached(stanza, context).await;
        }
        // Single flight per stanza and context: files sharing a data key never call KMS
        // twice for it, even when decrypted concurrently, while calls for other stanzas
        // (another file, another region) go ahead at the same time.
        let mut slot = self
            .unwrapped
            .slot(
                unwrap_cache_key(stanza, context),
                self.settings.decrypt_cache_entries,
                |(_, at)| at.elapsed() < max_age,
                |(_, at)| *at,
            )
            .await?;
        if let Some((dek, at)) = slot.as_ref()
            && at.elapsed() < max_age
        {
            bump(&self.counters.cache_hits);
            return Ok(dek.clone());
        }
        bump(&self.counters.cache_misses);
        *slot = None;
        let dek = self.decrypt_uncached(stanza, context).await?;
        *slot = Some((dek.clone(), Instant::now()));
        Ok(dek)
    }

    async fn decrypt_uncached(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        let arn = &stanza.key_id;
        let client = self.client(region_of(arn).as_deref())?;
        bump(&self.counters.decrypt);
        let out = client
            .decrypt()
            .key_id(arn)
            .ciphertext_blob(Blob::new(stanza.wrapped.clone()))
            .set_encryption_context(kms_context(context))
            .send()
            .await
            .map_err(|e| self.service_error("Decrypt", arn, e))?;
        data_key_from(out.plaintext(), "Decrypt", arn)
    }

    /// Decrypts a data key another client wrapped with KMS (the Amazon S3 Encryption
    /// Client's `x-amz-key-v2` / `x-amz-3`), whose metadata does not say which key wrapped
    /// it. With `key_id`, the call is pinned to that key (KMS refuses a ciphertext of
    /// another key); without, KMS picks the key the ciphertext names, and the caller must
    /// check the returned key ARN before using the data key (discovery). `context` is
    /// sent verbatim. Not cached: such a key serves one object.
    pub async fn decrypt_foreign(
        &self,
        ciphertext: &[u8],
        context: &std::collections::BTreeMap<String, String>,
        key_id: Option<&str>,
    ) -> Result<(DataKey, String)> {
        let label = key_id.unwrap_or("(the key the ciphertext names)");
        let client = self.client(key_id.and_then(region_of).as_deref())?;
        let ctx: HashMap<String, String> = context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let out = client
            .decrypt()
            .set_key_id(key_id.map(str::to_string))
            .ciphertext_blob(Blob::new(ciphertext.to_vec()))
            .set_encryption_context((!ctx.is_empty()).then_some(ctx))
            .send()
            .await
            .map_err(|e| self.service_error("Decrypt", label, e))?;
        let arn = out
            .key_id()
            .ok_or_else(|| {
                Error::key_service(format!("KMS Decrypt for {label} returned no key id"))
            })?
            .to_string();
        Ok((data_key_from(out.plaintext(), "Decrypt", label)?, arn))
    }

    /// Re-wraps a KMS stanza for `destination` with `ReEncrypt`: the plaintext data key
    /// never leaves KMS. The call goes to the stanza key's region.
    pub async fn re_encrypt(
        &self,
        stanza: &Stanza,
        destination: &str,
        context: &Context,
    ) -> Result<Stanza> {
        let source = &stanza.key_id;
        let client = self.client(region_of(source).as_deref())?;
        bump(&self.counters.re_encrypt);
        let ctx = kms_context(context);
        let out = client
            .re_encrypt()
            .ciphertext_blob(Blob::new(stanza.wrapped.clone()))
            .source_key_id(source)
            .destination_key_id(destination)
            .set_source_encryption_context(ctx.clone())
            .set_destination_encryption_context(ctx)
            .send()
            .await
            .map_err(|e| self.service_error("ReEncrypt", source, e))?;
        stanza_from(
            out.key_id(),
            out.ciphertext_blob(),
            "ReEncrypt",
            destination,
        )
    }

    /// Maps an SDK error to exit 4 (the data or context failed authentication) or exit 5
    /// (the key service refused or failed), with the code and a hint.
    fn service_error<E>(
        &self,
        op: &str,
        key: &str,
        e: SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    ) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        use crate::error::{Service, ServiceError};
        let request_id = e.request_id().map(str::to_string);
        match self.describe_error(op, key, &e) {
            Ok((kind, code, message)) => Error::KeyService(
                ServiceError::new(Service::Kms, kind, message)
                    .with_operation(op)
                    .with_code(code)
                    .with_request_id(request_id)
                    .with_source(e),
            ),
            Err(authentication) => authentication,
        }
    }

    /// The kind, code and message of a KMS failure, or the authentication failure it is.
    fn describe_error<E>(
        &self,
        op: &str,
        key: &str,
        e: &SdkError<E, aws_sdk_kms::config::http::HttpResponse>,
    ) -> std::result::Result<(crate::error::ServiceErrorKind, Option<String>, String), Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        use crate::error::ServiceErrorKind;
        let typed = |kind: ServiceErrorKind, code: Option<&str>, message: String| {
            Ok((kind, code.map(str::to_string), message))
        };
        if let Some(t) = crate::aws::transport_failure(e) {
            let endpoint = self.endpoint().unwrap_or("the regional AWS KMS endpoint");
            return typed(
                t.kind(),
                None,
                format!(
                    "KMS {op} for {key}: {}",
                    t.sentence(
                        "KMS",
                        endpoint,
                        "the operation timeout of the KMS client's configuration",
                    )
                ),
            );
        }
        let request_id = e
            .request_id()
            .map(|id| format!(" (request id {id})"))
            .unwrap_or_default();
        let status = e.raw_response().map(|r| r.status().as_u16());
        let kind = ServiceErrorKind::from_code(e.code(), status);
        let code = e.code().unwrap_or("").to_string();
        let msg = crate::aws::one_line(e.message().unwrap_or(""));
        let hint = match code.as_str() {
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                return Err(Error::UnwrapFailed(vec![StanzaFailure {
                    provider: PROVIDER_ID.into(),
                    key_id: key.into(),
                    reason: format!(
                        "KMS {op}: {code}: the wrapped key or the encryption context does not match ({msg})"
                    ),
                }]));
            }
            "AccessDeniedException" => {
                format!("check that your identity may call kms:{op} on this key")
            }
            "NotFoundException" => "check the key id or alias and the region".into(),
            "DisabledException" => {
                "the key is disabled; enable it or use another stanza's key".into()
            }
            "KMSInvalidStateException" => "the key is pending deletion or unavailable".into(),
            "ThrottlingException" | "LimitExceededException" => format!(
                "still throttled after {} attempts; retry later or raise the retry attempts of the KMS client's configuration",
                self.max_attempts()
            ),
            "UnrecognizedClientException" | "InvalidSignatureException" => {
                "check the credentials (profile, AWS_* environment)".into()
            }
            "" => {
                let endpoint = self.endpoint().unwrap_or("the regional AWS KMS endpoint");
                let status = e
                    .raw_response()
                    .map(|r| format!(" (HTTP {})", r.status().as_u16()))
                    .unwrap_or_default();
                return typed(
                    kind,
                    None,
                    format!(
                        "KMS {op} for {key}: KMS at {endpoint} sent an answer sealstream could not read{status}{request_id}; check that the endpoint is KMS and retry"
                    ),
                );
            }
            _ => "see the AWS KMS documentation for this error code".into(),
        };
        typed(
            kind,
            Some(&code),
            format!("KMS {op} for {key}: {code}: {msg}{request_id}; {hint}"),
        )
    }
}

/// Unambiguous cache key: each field length-prefixed.
fn unwrap_cache_key(stanza: &Stanza, context: &Context) -> Vec<u8> {
    let ctx = context.to_bytes();
    let mut k = Vec::with_capacity(12 + stanza.key_id.len() + stanza.wrapped.len() + ctx.len());
    for part in [stanza.key_id.as_bytes(), &stanza.wrapped, &ctx] {
        k.extend_from_slice(&(part.len() as u32).to_be_bytes());
        k.extend_from_slice(part);
    }
    k
}

fn kms_context(context: &Context) -> Option<HashMap<String, String>> {
    if context.is_empty() {
        None
    } else {
        Some(
            context
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

/// A `Blob` whose bytes live in zeroizing memory, wiped when the SDK drops its last
/// reference (for the data key sent to KMS `Encrypt`).
///
/// The SDK still copies the bytes when it serialises the request (base64 in the JSON body,
/// then TLS buffers) and does not wipe those copies: that part cannot be closed from here.
fn zeroizing_blob<T>(secret: T) -> Blob
where
    T: AsRef<[u8]> + zeroize::Zeroize + Send + 'static,
{
    Blob::from_maybe_shared(bytes::Bytes::from_owner(Zeroizing::new(secret)))
}

#[cfg(test)]
mod zeroizing_blob_tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Secret bytes that record being wiped.
    struct Probe([u8; 4], Arc<AtomicBool>);
    impl AsRef<[u8]> for Probe {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl zeroize::Zeroize for Probe {
        fn zeroize(&mut self) {
            self.0.zeroize();
            self.1.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_encrypt_plaintext_is_wiped_when_the_sdk_drops_its_last_copy() {
        let wiped = Arc::new(AtomicBool::new(false));
        let blob = super::zeroizing_blob(Probe([1, 2, 3, 4], wiped.clone()));
        assert_eq!(blob.as_ref(), &[1, 2, 3, 4]);
        let shared = blob.clone();
        drop(blob);
        assert!(!wiped.load(Ordering::SeqCst), "still referenced");
        drop(shared);
        assert!(wiped.load(Ordering::SeqCst), "not wiped on the last drop");
    }
}

fn data_key_from(blob: Option<&Blob>, op: &str, key: &str) -> Result<DataKey> {
    let bytes = blob.map(Blob::as_ref).unwrap_or_default();
    let arr: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.try_into().map_err(|_| {
        Error::key_service(format!(
            "KMS {op} for {key} returned a {}-byte data key, expected 32",
            bytes.len()
        ))
    })?);
    Ok(DataKey::from_bytes(*arr))
}

fn stanza_from(key_id: Option<&str>, blob: Option<&Blob>, op: &str, key: &str) -> Result<Stanza> {
    let arn = key_id
        .ok_or_else(|| Error::key_service(format!("KMS {op} for {key} returned no key id")))?;
    let wrapped = blob.map(|b| b.as_ref().to_vec()).unwrap_or_default();
    if wrapped.is_empty() {
        return Err(Error::key_service(format!(
            "KMS {op} for {key} returned no ciphertext"
        )));
    }
    Ok(Stanza {
        provider: PROVIDER_ID.into(),
        key_id: arn.to_string(),
        wrapped,
    })
}

/// The region in a KMS ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID` or `…:alias/NAME`).
pub fn region_of(key: &str) -> Option<String> {
    arn_parts(key).map(|(region, _)| region.to_string())
}

/// The account in a KMS ARN.
pub fn account_of(key: &str) -> Option<String> {
    arn_parts(key).map(|(_, account)| account.to_string())
}

fn arn_parts(key: &str) -> Option<(&str, &str)> {
    let mut p = key.splitn(6, ':');
    match (p.next(), p.next(), p.next(), p.next(), p.next(), p.next()) {
        (Some("arn"), Some(_), Some("kms"), Some(region), Some(account), Some(_))
            if !region.is_empty() && !account.is_empty() =>
        {
            Some((region, account))
        }
        _ => None,
    }
}

/// Default for `--kms-max-decrypts`: the most KMS stanzas sent to KMS for one object.
///
/// A legitimate object has one KMS stanza per region or key it was wrapped for; a hostile
/// one can carry 32 (the format's limit), each costing up to `--kms-timeout`.
pub const DEFAULT_MAX_DECRYPTS_PER_OBJECT: usize = 8;

/// One KMS key named by the user (key id, alias or ARN), for wrapping and for decrypting
/// stanzas of that key.
pub struct KmsKey {
    kms: Arc<Kms>,
    /// What the user gave.
    name: String,
    /// The key's ARN when known without a lookup (a key ARN was given) — stanzas must match
    /// it exactly.
    arn: Option<String>,
    /// Trusted for decryption but not an ARN: resolved with `DescribeKey` the first time a
    /// stanza could be this key; the outcome (ARN, or the failure's message) is kept. An
    /// async once-cell: concurrent callers wait for the one lookup without holding a lock
    /// across the call.
    lazy: Option<tokio::sync::OnceCell<std::result::Result<String, String>>>,
    /// Most stanzas sent to KMS per object (see [`DEFAULT_MAX_DECRYPTS_PER_OBJECT`]).
    max_decrypts: usize,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKey")
            .field("name", &self.name)
            .field("arn", &self.arn)
            .finish_non_exhaustive()
    }
}

impl KmsKey {
    /// A key to wrap data keys for (encrypt, rewrap `--add-kms-key`).
    pub fn for_wrapping(kms: &Arc<Kms>, name: &str) -> KmsKey {
        KmsKey {
            kms: Arc::clone(kms),
            name: name.to_string(),
            arn: None,
            lazy: None,
            max_decrypts: DEFAULT_MAX_DECRYPTS_PER_OBJECT,
        }
    }

    /// The key's ARN if it was given as a key ARN (an alias or key id is resolved only
    /// when a stanza needs it).
    pub fn arn(&self) -> Option<&str> {
        self.arn.as_deref()
    }

    /// A key the caller trusts for decryption; only stanzas of exactly this key are sent to
    /// KMS. Makes no network call: a key ARN is used as given, and an alias or key id is
    /// resolved to its ARN with `DescribeKey` only when a stanza could be this key, so an
    /// unreachable region fails that stanza only (the next stanza is still tried).
    ///
    /// Never fails today; the `Result` is kept so callers need not change.
    pub fn trusted(kms: &Arc<Kms>, name: &str) -> Result<KmsKey> {
        let is_key_arn = arn_parts(name).is_some()
            && name
                .rsplit(':')
                .next()
                .is_some_and(|r| r.starts_with("key/"));
        Ok(KmsKey {
            kms: Arc::clone(kms),
            name: name.to_string(),
            arn: is_key_arn.then(|| name.to_string()),
            lazy: (!is_key_arn).then(tokio::sync::OnceCell::new),
            max_decrypts: DEFAULT_MAX_DECRYPTS_PER_OBJECT,
        })
    }

    /// Caps the stanzas sent to KMS per object (`--kms-max-decrypts`; at least 1).
    pub fn with_max_decrypts(mut self, n: usize) -> KmsKey {
        self.max_decrypts = n.max(1);
        self
    }

    /// Whether a stanza's key ARN could be the key this lazy name resolves to, judged
    /// offline: a key id must be the ARN's `key/ID`; an alias ARN fixes region and account;
    /// a bare alias or key id is looked up in the configured region (with none configured,
    /// the lookup itself fails with a message saying to pass --region).
    fn could_be(&self, stanza_arn: &str) -> bool {
        let Some((region, account)) = arn_parts(stanza_arn) else {
            return false;
        };
        let name = self.name.as_str();
        if let Some((r, a)) = arn_parts(name) {
            return r == region && a == account;
        }
        if name.starts_with("alias/") {
            // No region configured: let the lookup run and say so.
            return self.kms.default_region().is_none_or(|r| r == region);
        }
        stanza_arn.ends_with(&format!(":key/{name}"))
            && self.kms.default_region().is_none_or(|r| r == region)
    }

    /// The ARN of a lazily resolved key: looked up once, success or failure kept for the
    /// life of this key (a batch does not pay an unreachable region's timeout per object).
    async fn resolved(
        &self,
        lazy: &tokio::sync::OnceCell<std::result::Result<String, String>>,
    ) -> Result<String> {
        let outcome = lazy
            .get_or_init(|| async {
                self.kms.resolve_arn(&self.name).await.map_err(|e| match e {
                    Error::KeyService(m) => m.message().to_string(),
                    other => other.to_string(),
                })
            })
            .await;
        match outcome {
            Ok(arn) => Ok(arn.clone()),
            Err(m) => Err(Error::key_service(format!(
                "resolving the KMS key {} to its ARN: {m}",
                self.name
            ))),
        }
    }

    /// See [`AsyncKeyProvider::confirm`]: an alias or key id is resolved here, once.
    async fn confirm_async(&self, stanza: &Stanza) -> Result<bool> {
        match &self.lazy {
            Some(lazy) => Ok(self.resolved(lazy).await? == stanza.key_id),
            None => Ok(AsyncKeyProvider::matches(self, stanza)),
        }
    }
}

impl AsyncKeyProvider for KmsKey {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.name)
    }

    fn generate<'a>(
        &'a self,
        context: &'a Context,
    ) -> BoxFuture<'a, Result<Option<(DataKey, Stanza)>>> {
        Box::pin(async move { self.kms.generate(&self.name, context).await.map(Some) })
    }

    fn wrap<'a>(&'a self, dek: &'a DataKey, context: &'a Context) -> BoxFuture<'a, Result<Stanza>> {
        Box::pin(self.kms.encrypt(&self.name, dek, context))
    }

    fn unwrap<'a>(
        &'a self,
        stanza: &'a Stanza,
        context: &'a Context,
    ) -> BoxFuture<'a, Result<DataKey>> {
        Box::pin(self.kms.decrypt(stanza, context))
    }

    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == PROVIDER_ID
            && match (&self.arn, &self.lazy) {
                (Some(arn), _) => *arn == stanza.key_id,
                (None, Some(_)) => self.could_be(&stanza.key_id),
                (None, None) => false,
            }
    }

    fn confirm<'a>(&'a self, stanza: &'a Stanza) -> BoxFuture<'a, Result<bool>> {
        Box::pin(self.confirm_async(stanza))
    }

    fn unwrap_budget(&self) -> Option<usize> {
        Some(self.max_decrypts)
    }
}

/// Discovery decryption: any KMS stanza whose key ARN is in one of the allowed accounts.
///
/// Opt-in only (`--kms-discovery --kms-allow-account ACCOUNT`): the `KeyId` is still pinned
/// to the stanza's ARN on every call.
pub struct KmsDiscovery {
    kms: Arc<Kms>,
    accounts: Vec<String>,
    label: String,
    max_decrypts: usize,
}

impl std::fmt::Debug for KmsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsDiscovery")
            .field("accounts", &self.accounts)
            .finish()
    }
}

impl KmsDiscovery {
    /// Discovery restricted to `accounts` (must not be empty).
    pub fn new(kms: &Arc<Kms>, accounts: Vec<String>) -> Result<KmsDiscovery> {
        if accounts.is_empty() {
            return Err(Error::InvalidArgument(
                "KMS discovery needs at least one allowed account".into(),
            ));
        }
        let label = format!("discovery(accounts {})", accounts.join(","));
        Ok(KmsDiscovery {
            kms: Arc::clone(kms),
            accounts,
            label,
            max_decrypts: DEFAULT_MAX_DECRYPTS_PER_OBJECT,
        })
    }

    /// Caps the stanzas sent to KMS per object (`--kms-max-decrypts`; at least 1): in
    /// discovery the file chooses which keys are called, so this bounds its cost.
    pub fn with_max_decrypts(mut self, n: usize) -> KmsDiscovery {
        self.max_decrypts = n.max(1);
        self
    }
}

impl AsyncKeyProvider for KmsDiscovery {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.label
    }

    fn wrap<'a>(&'a self, _dek: &'a DataKey, _c: &'a Context) -> BoxFuture<'a, Result<Stanza>> {
        Box::pin(std::future::ready(Err(Error::InvalidArgument(
            "KMS discovery can only decrypt; name a key (KmsKey) to encrypt".into(),
        ))))
    }

    fn unwrap<'a>(
        &'a self,
        stanza: &'a Stanza,
        context: &'a Context,
    ) -> BoxFuture<'a, Result<DataKey>> {
        Box::pin(self.kms.decrypt(stanza, context))
    }

    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == PROVIDER_ID
            && account_of(&stanza.key_id).is_some_and(|a| self.accounts.contains(&a))
            && region_of(&stanza.key_id).is_some()
    }

    fn unwrap_budget(&self) -> Option<usize> {
        Some(self.max_decrypts)
    }
}

/// The blocking layer over the async KMS types, for the CLI and synchronous callers.
///
/// [`blocking::Kms`] owns a small current-thread runtime, loads the AWS configuration the
/// way the CLI wants it (profile, region, retries, timeouts, retry notes) and drives the
/// async [`Kms`] on it; [`blocking::KmsKey`] and [`blocking::KmsDiscovery`] are
/// synchronous [`crate::keys::KeyProvider`]s. Like any blocking call, these must not be
/// used from inside an async runtime (tokio panics on the nested `block_on`): async code
/// uses [`Kms`] directly.
pub mod blocking {
    use std::sync::Arc;
    use std::time::Duration;

    use aws_config::timeout::TimeoutConfig;

    use crate::error::{Error, Result};
    use crate::format::{Context, Stanza};
    use crate::keys::{AsyncKeyProvider, DataKey, KeyProvider};

    pub use super::KmsSettings;

    /// A KMS connection with the runtime that drives it.
    pub struct Kms {
        rt: tokio::runtime::Runtime,
        config: aws_config::SdkConfig,
        inner: Arc<super::Kms>,
    }

    impl std::fmt::Debug for Kms {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Kms")
                .field("inner", &self.inner)
                .finish_non_exhaustive()
        }
    }

    impl Kms {
        /// Loads the AWS configuration chain with `settings` (profile, region, attempts,
        /// operation timeout; no network call yet) and starts the runtime.
        pub fn connect(settings: KmsSettings) -> Result<Arc<Kms>> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| Error::io("starting the KMS client runtime", e))?;
            let config = crate::aws::load_config(
                &rt,
                &crate::aws::AwsOptions {
                    region: settings.region.clone(),
                    profile: settings.profile.clone(),
                    max_attempts: settings.max_attempts,
                    initial_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(5),
                    timeouts: TimeoutConfig::builder()
                        .operation_timeout(settings.operation_timeout)
                        .build(),
                    stall_grace: None,
                    ca_bundle: settings.ca_bundle.clone(),
                },
            )?;
            let inner = super::Kms::from_conf(&config, settings);
            Ok(Arc::new(Kms { rt, config, inner }))
        }

        /// The loaded AWS configuration (to build other clients the same way).
        pub fn sdk_config(&self) -> &aws_config::SdkConfig {
            &self.config
        }

        /// The async KMS this drives.
        pub fn as_async(&self) -> &Arc<super::Kms> {
            &self.inner
        }

        /// The endpoint override in use, if any.
        pub fn endpoint(&self) -> Option<&str> {
            self.inner.endpoint()
        }

        /// See [`super::Kms::resolve_arn`].
        pub fn resolve_arn(&self, key: &str) -> Result<String> {
            self.rt.block_on(self.inner.resolve_arn(key))
        }

        /// Runs a future of the async [`super::Kms`] on this handle's runtime, for crate
        /// layers built on it (the S3 Encryption Client reader unwraps its data keys so).
        #[cfg(feature = "s3ec")]
        pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
            self.rt.block_on(f)
        }

        /// See [`super::Kms::re_encrypt`].
        pub fn re_encrypt(
            &self,
            stanza: &Stanza,
            destination: &str,
            context: &Context,
        ) -> Result<Stanza> {
            self.rt
                .block_on(self.inner.re_encrypt(stanza, destination, context))
        }
    }

    /// Drives an async provider on a blocking [`Kms`]'s runtime: the one bridge from the
    /// async providers to [`KeyProvider`].
    #[derive(Debug)]
    pub struct Blocking<P> {
        kms: Arc<Kms>,
        inner: P,
    }

    /// A synchronous [`super::KmsKey`].
    pub type KmsKey = Blocking<super::KmsKey>;
    /// A synchronous [`super::KmsDiscovery`].
    pub type KmsDiscovery = Blocking<super::KmsDiscovery>;

    impl<P> Blocking<P> {
        /// The async provider inside.
        pub fn as_async(&self) -> &P {
            &self.inner
        }
    }

    impl Blocking<super::KmsKey> {
        /// See [`super::KmsKey::for_wrapping`].
        pub fn for_wrapping(kms: &Arc<Kms>, name: &str) -> KmsKey {
            Blocking {
                kms: Arc::clone(kms),
                inner: super::KmsKey::for_wrapping(&kms.inner, name),
            }
        }

        /// See [`super::KmsKey::trusted`].
        pub fn trusted(kms: &Arc<Kms>, name: &str) -> Result<KmsKey> {
            Ok(Blocking {
                kms: Arc::clone(kms),
                inner: super::KmsKey::trusted(&kms.inner, name)?,
            })
        }

        /// See [`super::KmsKey::with_max_decrypts`].
        pub fn with_max_decrypts(self, n: usize) -> KmsKey {
            Blocking {
                kms: self.kms,
                inner: self.inner.with_max_decrypts(n),
            }
        }

        /// See [`super::KmsKey::arn`].
        pub fn arn(&self) -> Option<&str> {
            self.inner.arn()
        }
    }

    impl Blocking<super::KmsDiscovery> {
        /// See [`super::KmsDiscovery::new`].
        pub fn new(kms: &Arc<Kms>, accounts: Vec<String>) -> Result<KmsDiscovery> {
            Ok(Blocking {
                kms: Arc::clone(kms),
                inner: super::KmsDiscovery::new(&kms.inner, accounts)?,
            })
        }

        /// See [`super::KmsDiscovery::with_max_decrypts`].
        pub fn with_max_decrypts(self, n: usize) -> KmsDiscovery {
            Blocking {
                kms: self.kms,
                inner: self.inner.with_max_decrypts(n),
            }
        }
    }

    impl<P: AsyncKeyProvider> KeyProvider for Blocking<P> {
        fn provider_id(&self) -> &str {
            self.inner.provider_id()
        }
        fn key_id(&self) -> &str {
            self.inner.key_id()
        }
        fn generate(&self, context: &Context) -> Result<Option<(DataKey, Stanza)>> {
            self.kms.rt.block_on(self.inner.generate(context))
        }
        fn wrap(&self, dek: &DataKey, context: &Context) -> Result<Stanza> {
            self.kms.rt.block_on(self.inner.wrap(dek, context))
        }
        fn unwrap(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
            self.kms.rt.block_on(self.inner.unwrap(stanza, context))
        }
        fn matches(&self, stanza: &Stanza) -> bool {
            self.inner.matches(stanza)
        }
        fn confirm(&self, stanza: &Stanza) -> Result<bool> {
            self.kms.rt.block_on(self.inner.confirm(stanza))
        }
        fn unwrap_budget(&self) -> Option<usize> {
            self.inner.unwrap_budget()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arn_parsing() {
        let arn = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        assert_eq!(region_of(arn).as_deref(), Some("eu-west-1"));
        assert_eq!(account_of(arn).as_deref(), Some("111122223333"));
        assert_eq!(
            region_of("arn:aws:kms:us-east-1:111122223333:alias/backup").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(region_of("alias/backup"), None);
        assert_eq!(region_of("1234abcd-12ab-34cd-56ef-1234567890ab"), None);
        assert_eq!(region_of("arn:aws:s3:::bucket"), None);
    }
}
