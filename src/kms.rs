//! AWS KMS as a key provider: `GenerateDataKey` for the first KMS key, `Encrypt` to wrap the
//! same data key for every further key (each in its own region), and `Decrypt` with the
//! stanza's key pinned.
//!
//! The crypto core is synchronous, so this module owns a small tokio runtime and blocks on
//! each call. Credentials, region, profile and endpoint come from the standard AWS
//! configuration chain (`aws-config`), so the same code talks to real AWS and to the local
//! emulator (`AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_KMS`).
//!
//! Decryption never calls KMS for a key the caller did not choose: either the caller names
//! the keys it trusts ([`KmsKey::trusted`], resolved to ARNs with `DescribeKey`), or it opts
//! into discovery restricted to an account allow-list ([`KmsDiscovery`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::config::Region;
use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::error::{Error, Result, StanzaFailure};
use crate::format::{Context, Stanza};
use crate::keys::{DataKey, KeyProvider};

/// Provider id of KMS stanzas.
pub const PROVIDER_ID: &str = "aws-kms";

/// How to reach KMS and how hard to try.
#[derive(Debug, Clone)]
pub struct KmsSettings {
    /// Region override (else the configuration chain's region).
    pub region: Option<String>,
    /// Named profile override.
    pub profile: Option<String>,
    /// Attempts per call, including the first (throttling and transient errors are retried
    /// with exponential backoff and jitter).
    pub max_attempts: u32,
    /// Upper bound on one call including all retries.
    pub operation_timeout: Duration,
    /// How long an unwrapped data key is reused for the same stanza and context within
    /// this process (ranged reads, batches); zero disables the cache.
    pub decrypt_cache_max_age: Duration,
    /// Most unwrapped data keys held at once.
    pub decrypt_cache_entries: usize,
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
        }
    }
}

/// A connection to KMS: the loaded AWS configuration, one client per region, and the
/// runtime that drives them.
pub struct Kms {
    rt: tokio::runtime::Runtime,
    config: aws_config::SdkConfig,
    clients: Mutex<HashMap<String, Client>>,
    /// Unwrapped data keys by (key ARN, wrapped blob, context); zeroized on eviction/drop.
    unwrapped: Mutex<HashMap<Vec<u8>, (DataKey, std::time::Instant)>>,
    settings: KmsSettings,
}

impl std::fmt::Debug for Kms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kms")
            .field("region", &self.config.region())
            .field("endpoint", &self.config.endpoint_url())
            .finish_non_exhaustive()
    }
}

impl Kms {
    /// Loads the AWS configuration chain (no network call yet).
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
            },
        );
        Ok(Arc::new(Kms {
            rt,
            config,
            clients: Mutex::new(HashMap::new()),
            unwrapped: Mutex::new(HashMap::new()),
            settings,
        }))
    }

    /// The endpoint override in use, if any (named in connection errors).
    pub fn endpoint(&self) -> Option<&str> {
        self.config.endpoint_url()
    }

    fn default_region(&self) -> Option<String> {
        self.config.region().map(|r| r.to_string())
    }

    /// A client for `region` (the key's own region for ARNs, else the default).
    fn client(&self, region: Option<&str>) -> Result<Client> {
        let region = region
            .map(str::to_string)
            .or_else(|| self.default_region())
            .ok_or_else(|| {
                Error::KeyService(
                    "no AWS region configured: pass --region, set AWS_REGION, or use a key ARN"
                        .into(),
                )
            })?;
        let mut clients = self
            .clients
            .lock()
            .map_err(|_| Error::KeyService("KMS client cache poisoned".into()))?;
        let client = clients.entry(region.clone()).or_insert_with(|| {
            let conf = aws_sdk_kms::config::Builder::from(&self.config)
                .region(Region::new(region))
                .build();
            Client::from_conf(conf)
        });
        Ok(client.clone())
    }

    /// Resolves a key id, alias or ARN to the key's ARN with `DescribeKey`.
    pub fn resolve_arn(&self, key: &str) -> Result<String> {
        let client = self.client(region_of(key).as_deref())?;
        let out = self
            .rt
            .block_on(client.describe_key().key_id(key).send())
            .map_err(|e| self.service_error("DescribeKey", key, e))?;
        out.key_metadata()
            .map(|m| m.arn().unwrap_or(m.key_id()).to_string())
            .ok_or_else(|| {
                Error::KeyService(format!("DescribeKey for {key} returned no key metadata"))
            })
    }

    fn generate(&self, key: &str, context: &Context) -> Result<(DataKey, Stanza)> {
        let client = self.client(region_of(key).as_deref())?;
        let out = self
            .rt
            .block_on(
                client
                    .generate_data_key()
                    .key_id(key)
                    .key_spec(DataKeySpec::Aes256)
                    .set_encryption_context(kms_context(context))
                    .send(),
            )
            .map_err(|e| self.service_error("GenerateDataKey", key, e))?;
        let dek = data_key_from(out.plaintext(), "GenerateDataKey", key)?;
        let stanza = stanza_from(out.key_id(), out.ciphertext_blob(), "GenerateDataKey", key)?;
        Ok((dek, stanza))
    }

    fn encrypt(&self, key: &str, dek: &DataKey, context: &Context) -> Result<Stanza> {
        let client = self.client(region_of(key).as_deref())?;
        let out = self
            .rt
            .block_on(
                client
                    .encrypt()
                    .key_id(key)
                    .plaintext(zeroizing_blob(*dek.expose()))
                    .set_encryption_context(kms_context(context))
                    .send(),
            )
            .map_err(|e| self.service_error("Encrypt", key, e))?;
        stanza_from(out.key_id(), out.ciphertext_blob(), "Encrypt", key)
    }

    fn decrypt(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        let max_age = self.settings.decrypt_cache_max_age;
        if max_age.is_zero() || self.settings.decrypt_cache_entries == 0 {
            return self.decrypt_uncached(stanza, context);
        }
        let cache_key = unwrap_cache_key(stanza, context);
        // Single flight: the lock is held across the KMS call, so files sharing a data key
        // never call KMS twice for it, even when decrypted concurrently. The price is that
        // one process's KMS Decrypt calls run one at a time.
        let mut cache = self
            .unwrapped
            .lock()
            .map_err(|_| Error::KeyService("KMS unwrap cache poisoned".into()))?;
        cache.retain(|_, (_, at)| at.elapsed() < max_age);
        if let Some((dek, _)) = cache.get(&cache_key) {
            return Ok(dek.clone());
        }
        let dek = self.decrypt_uncached(stanza, context)?;
        if cache.len() >= self.settings.decrypt_cache_entries
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(cache_key, (dek.clone(), std::time::Instant::now()));
        Ok(dek)
    }

    fn decrypt_uncached(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        let arn = &stanza.key_id;
        let client = self.client(region_of(arn).as_deref())?;
        let out = self
            .rt
            .block_on(
                client
                    .decrypt()
                    .key_id(arn)
                    .ciphertext_blob(Blob::new(stanza.wrapped.clone()))
                    .set_encryption_context(kms_context(context))
                    .send(),
            )
            .map_err(|e| self.service_error("Decrypt", arn, e))?;
        data_key_from(out.plaintext(), "Decrypt", arn)
    }

    /// Re-wraps a KMS stanza for `destination` with `ReEncrypt`: the plaintext data key
    /// never leaves KMS. The call goes to the stanza key's region.
    pub fn re_encrypt(
        &self,
        stanza: &Stanza,
        destination: &str,
        context: &Context,
    ) -> Result<Stanza> {
        let source = &stanza.key_id;
        let client = self.client(region_of(source).as_deref())?;
        let ctx = kms_context(context);
        let out = self
            .rt
            .block_on(
                client
                    .re_encrypt()
                    .ciphertext_blob(Blob::new(stanza.wrapped.clone()))
                    .source_key_id(source)
                    .destination_key_id(destination)
                    .set_source_encryption_context(ctx.clone())
                    .set_destination_encryption_context(ctx)
                    .send(),
            )
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
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let code = e.code().unwrap_or("").to_string();
        let msg = e.message().unwrap_or("").to_string();
        let hint = match code.as_str() {
            "InvalidCiphertextException" | "IncorrectKeyException" => {
                return Error::UnwrapFailed(vec![StanzaFailure {
                    provider: PROVIDER_ID.into(),
                    key_id: key.into(),
                    reason: format!(
                        "KMS {op}: {code}: the wrapped key or the encryption context does not match ({msg})"
                    ),
                }]);
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
                "still throttled after {} attempts; retry later or raise --kms-max-attempts",
                self.settings.max_attempts
            ),
            "" => {
                let endpoint = self.endpoint().unwrap_or("the regional AWS endpoint");
                return Error::KeyService(format!(
                    "KMS {op} for {key}: could not reach KMS at {endpoint}: {}",
                    DisplayErrorContext(&e)
                ));
            }
            _ => "see the AWS KMS documentation for this error code".into(),
        };
        Error::KeyService(format!("KMS {op} for {key}: {code}: {msg}; {hint}"))
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
        Error::KeyService(format!(
            "KMS {op} for {key} returned a {}-byte data key, expected 32",
            bytes.len()
        ))
    })?);
    Ok(DataKey::from_bytes(*arr))
}

fn stanza_from(key_id: Option<&str>, blob: Option<&Blob>, op: &str, key: &str) -> Result<Stanza> {
    let arn = key_id
        .ok_or_else(|| Error::KeyService(format!("KMS {op} for {key} returned no key id")))?;
    let wrapped = blob.map(|b| b.as_ref().to_vec()).unwrap_or_default();
    if wrapped.is_empty() {
        return Err(Error::KeyService(format!(
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

/// One KMS key named by the user (key id, alias or ARN), for wrapping and for decrypting
/// stanzas of that key.
pub struct KmsKey {
    kms: Arc<Kms>,
    /// What the user gave.
    name: String,
    /// The key's ARN, once resolved (decrypt side) — stanzas must match it exactly.
    arn: Option<String>,
}

impl std::fmt::Debug for KmsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsKey")
            .field("name", &self.name)
            .field("arn", &self.arn)
            .finish()
    }
}

impl KmsKey {
    /// A key to wrap data keys for (encrypt, rewrap `--add-kms-key`).
    pub fn for_wrapping(kms: &Arc<Kms>, name: &str) -> KmsKey {
        KmsKey {
            kms: Arc::clone(kms),
            name: name.to_string(),
            arn: None,
        }
    }

    /// The key's ARN if it was resolved ([`KmsKey::trusted`]).
    pub fn arn(&self) -> Option<&str> {
        self.arn.as_deref()
    }

    /// A key the caller trusts for decryption: resolved to its ARN now, so only stanzas
    /// of exactly this key are sent to KMS.
    pub fn trusted(kms: &Arc<Kms>, name: &str) -> Result<KmsKey> {
        let arn = kms.resolve_arn(name)?;
        Ok(KmsKey {
            kms: Arc::clone(kms),
            name: name.to_string(),
            arn: Some(arn),
        })
    }
}

impl KeyProvider for KmsKey {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        self.arn.as_deref().unwrap_or(&self.name)
    }

    fn generate(&self, context: &Context) -> Result<Option<(DataKey, Stanza)>> {
        self.kms.generate(&self.name, context).map(Some)
    }

    fn wrap(&self, dek: &DataKey, context: &Context) -> Result<Stanza> {
        self.kms.encrypt(&self.name, dek, context)
    }

    fn unwrap(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        self.kms.decrypt(stanza, context)
    }

    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == PROVIDER_ID && self.arn.as_deref() == Some(stanza.key_id.as_str())
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
            return Err(Error::Usage(
                "--kms-discovery needs at least one --kms-allow-account ACCOUNT".into(),
            ));
        }
        let label = format!("discovery(accounts {})", accounts.join(","));
        Ok(KmsDiscovery {
            kms: Arc::clone(kms),
            accounts,
            label,
        })
    }
}

impl KeyProvider for KmsDiscovery {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.label
    }

    fn wrap(&self, _dek: &DataKey, _context: &Context) -> Result<Stanza> {
        Err(Error::Usage(
            "KMS discovery can only decrypt; name a key with --kms-key to encrypt".into(),
        ))
    }

    fn unwrap(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        self.kms.decrypt(stanza, context)
    }

    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == PROVIDER_ID
            && account_of(&stanza.key_id).is_some_and(|a| self.accounts.contains(&a))
            && region_of(&stanza.key_id).is_some()
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
