//! The async-first KMS API against the local emulator: `Kms` built from the caller's
//! `SdkConfig` (or client) inside a tokio runtime — multi-thread and current-thread — with
//! no private runtime, so no nested-runtime panic. Ignored under plain `cargo test`; run by
//! `scripts/test.sh` (`--include-ignored`).

use crate::common;

use std::sync::Arc;

use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use common::moto::{create_alias, create_key, endpoint, unique};
use sealstream::Backend;
use sealstream::envelope::{self, Opening, Sealing};
use sealstream::error::ServiceErrorKind;
use sealstream::format::{Context, Header, Stanza};
use sealstream::keys::{self, AsyncKeyProvider, DataKey, KeyProvider};
use sealstream::kms::{Kms, KmsDiscovery, KmsKey, KmsSettings};
use sealstream::{EncryptParams, Error};

const ACCOUNT: &str = "123456789012"; // moto's default account

/// The caller's own configuration, as a service would load it (endpoint, credentials and
/// region from the environment the emulator set up).
async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_at(None).await
}

/// The same with another endpoint (the fault proxy).
async fn sdk_config_at(endpoint: Option<&str>) -> aws_config::SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest()).http_client(http);
    if let Some(e) = endpoint {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}

fn ctx() -> Context {
    Context::from_pairs([("tenant", "t1")]).unwrap()
}

/// A synchronous provider that answers one stanza with a data key already recovered: lets
/// the sync engine decrypt the body once the async path has unwrapped the key.
struct Known(Stanza, DataKey);

impl KeyProvider for Known {
    fn provider_id(&self) -> &str {
        &self.0.provider
    }
    fn key_id(&self) -> &str {
        &self.0.key_id
    }
    fn wrap(&self, _: &DataKey, _: &Context) -> sealstream::Result<Stanza> {
        Err(Error::InvalidArgument("decrypt only".into()))
    }
    fn unwrap(&self, _: &Stanza, _: &Context) -> sealstream::Result<DataKey> {
        Ok(self.1.clone())
    }
}

/// Encrypts with a KMS key through the async path, unlocks it asynchronously, decrypts
/// the body with the sync engine, and checks a wrong context and a disabled key.
async fn round_trip(kms: Arc<Kms>, ep: &str) {
    let arn = create_key(ep, "us-east-1");
    let key = KmsKey::for_wrapping(&kms, &arn);
    let params = EncryptParams {
        context: ctx(),
        ..EncryptParams::default()
    };
    // Sealing: header prepared with GenerateDataKey awaited on this runtime.
    let sealing = Sealing::for_providers_async(&[&key], &params)
        .await
        .expect("seal");
    assert_eq!(sealing.header().stanzas.len(), 1);
    assert_eq!(sealing.header().stanzas[0].key_id, arn);

    // The same through the envelope helpers, so the body can be checked end to end.
    let (dek, stanzas) = keys::wrap_for_all_async(&[&key], &params.context)
        .await
        .expect("wrap");
    let pt = common::data(200_003);
    let mut ct = Vec::new();
    envelope::encrypt_with_data_key(&pt[..], &mut ct, &dek, stanzas, &params).expect("encrypt");
    let (header, _) = Header::read_from(&mut &ct[..]).expect("header");

    // Unlock asynchronously with the key trusted (by ARN, and by alias: lazy DescribeKey).
    let trusted = KmsKey::trusted(&kms, &arn).unwrap();
    let alias = format!("alias/{}", unique("async"));
    create_alias(ep, "us-east-1", &alias, &arn);
    let by_alias = KmsKey::trusted(&kms, &alias).unwrap();
    for p in [&trusted as &dyn AsyncKeyProvider, &by_alias] {
        let opening = Opening::unlock_async(header.clone(), &[p], &ctx(), Backend::Ring)
            .await
            .expect("unlock");
        assert_eq!(opening.header().stanzas, header.stanzas);
        let got = envelope::unwrap_data_key_async(&header, &[p], &ctx())
            .await
            .expect("unwrap");
        assert_eq!(got.expose(), dek.expose());
    }
    // The body, decrypted by the sync engine with the key the async path recovered.
    let known = Known(header.stanzas[0].clone(), dek.clone());
    let mut out = Vec::new();
    envelope::decrypt(
        &ct[..],
        &mut out,
        &[&known],
        &sealstream::DecryptParams::default(),
    )
    .expect("decrypt");
    assert!(out == pt);

    // Wrong context: KMS refuses the unwrap (InvalidCiphertextException) → authentication.
    let mut forged = header.clone();
    forged.context = Context::from_pairs([("tenant", "t2")]).unwrap();
    let fresh = KmsKey::trusted(&kms, &arn).unwrap();
    let e = AsyncKeyProvider::unwrap(&fresh, &forged.stanzas[0], &forged.context)
        .await
        .unwrap_err();
    assert!(matches!(e, Error::UnwrapFailed(_)), "{e:?}");
    assert!(e.is_authentication(), "{e}");

    // Disabled key (moto does not enforce the state: the fault proxy answers for it): a
    // typed key-service error with kind, code and operation.
    let disabled = create_key(ep, "us-east-1");
    let proxy = common::proxy::Proxy::start(ep);
    proxy.fail_key(
        "GenerateDataKey",
        &disabled,
        common::proxy::Fault::aws(400, "DisabledException"),
    );
    let through_proxy = Kms::from_conf(
        &sdk_config_at(Some(&proxy.url)).await,
        KmsSettings::default(),
    );
    let k = KmsKey::for_wrapping(&through_proxy, &disabled);
    let e = Sealing::for_providers_async(&[&k], &params)
        .await
        .unwrap_err();
    let Error::KeyService(se) = &e else {
        panic!("expected a KeyService error, got {e:?}");
    };
    assert_eq!(se.kind(), ServiceErrorKind::InvalidRequest, "{se}");
    assert_eq!(se.code(), Some("DisabledException"), "{se}");
    assert_eq!(se.operation(), Some("GenerateDataKey"), "{se}");
    assert!(se.request_id().is_some(), "{se}");
    assert!(
        std::error::Error::source(se).is_some(),
        "the SDK error is kept as the source"
    );
    assert!(e.is_key_service(), "{e}");

    // Discovery restricted to moto's account opens it; another account is not tried.
    let d = KmsDiscovery::new(&kms, vec![ACCOUNT.into()]).unwrap();
    let got = envelope::unwrap_data_key_async(&header, &[&d], &ctx())
        .await
        .expect("discovery");
    assert_eq!(got.expose(), dek.expose());
    let other = KmsDiscovery::new(&kms, vec!["999999999999".into()]).unwrap();
    let e = envelope::unwrap_data_key_async(&header, &[&other], &ctx())
        .await
        .unwrap_err();
    assert!(matches!(e, Error::NoMatchingKey { .. }), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn kms_from_sdk_config_in_a_multi_thread_runtime() {
    let Some(ep) = endpoint("kms_from_sdk_config_in_a_multi_thread_runtime") else {
        return;
    };
    let kms = Kms::from_conf(&sdk_config().await, KmsSettings::default());
    // Also from a spawned task: the futures are Send.
    let ep2 = ep.clone();
    tokio::spawn(async move { round_trip(kms, &ep2).await })
        .await
        .expect("task");
}

#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn kms_from_client_in_a_current_thread_runtime() {
    let Some(ep) = endpoint("kms_from_client_in_a_current_thread_runtime") else {
        return;
    };
    let client = aws_sdk_kms::Client::new(&sdk_config().await);
    let kms = Kms::from_client(client, KmsSettings::default());
    round_trip(kms, &ep).await;
}

/// The failure issue 15 reported: a KMS key used from inside a runtime panicked
/// ("Cannot start a runtime from within a runtime") because `Kms` drove a private runtime.
/// Here every provider call, on a current-thread runtime, completes without a panic, and a
/// data key cache and key rotation work from async code too.
#[tokio::test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn kms_providers_inside_a_current_thread_runtime_do_not_panic() {
    let Some(ep) = endpoint("kms_providers_inside_a_current_thread_runtime_do_not_panic") else {
        return;
    };
    let kms = Kms::from_conf(&sdk_config().await, KmsSettings::default());
    let a = create_key(&ep, "us-east-1");
    let b = create_key(&ep, "eu-west-1");
    let ka = KmsKey::for_wrapping(&kms, &a);
    let kb = KmsKey::for_wrapping(&kms, &b);
    let (dek, stanzas) = ka.generate(&ctx()).await.unwrap().unwrap();
    let s2 = kb.wrap(&dek, &ctx()).await.unwrap();
    assert_eq!(kb.unwrap(&s2, &ctx()).await.unwrap().expose(), dek.expose());
    assert_eq!(
        ka.unwrap(&stanzas, &ctx()).await.unwrap().expose(),
        dek.expose()
    );
    assert_eq!(kms.resolve_arn(&a).await.unwrap(), a);

    // The data key cache from async code: one GenerateDataKey for two objects.
    let cache = keys::cache::DataKeyCache::new(keys::cache::CacheLimits {
        max_age: std::time::Duration::from_secs(60),
        max_objects: 2,
        max_bytes: u64::MAX,
    });
    let (k1, st1) = cache.data_key_async(&[&ka], &ctx(), 1).await.unwrap();
    let (k2, st2) = cache.data_key_async(&[&ka], &ctx(), 1).await.unwrap();
    assert_eq!(k1.expose(), k2.expose());
    assert!(st1 == st2);

    // Rewrap from async code: add the eu key to a header wrapped for the us key.
    let params = EncryptParams {
        context: ctx(),
        ..EncryptParams::default()
    };
    let mut ct = Vec::new();
    envelope::encrypt_with_data_key(&b"x"[..], &mut ct, &k1, st1, &params).unwrap();
    let (header, _) = Header::read_from(&mut &ct[..]).unwrap();
    let trusted = KmsKey::trusted(&kms, &a).unwrap();
    let new = envelope::rewrap_async(&header, &[&trusted], &[&kb], std::slice::from_ref(&a))
        .await
        .expect("rewrap");
    assert_eq!(new.stanzas.len(), 1);
    assert_eq!(new.stanzas[0].key_id, b);
    let trusted_b = KmsKey::trusted(&kms, &b).unwrap();
    let checks = envelope::verify_stanzas_async(&new, &[&trusted_b]).await;
    assert!(
        matches!(checks[..], [envelope::StanzaCheck::Verified]),
        "{checks:?}"
    );
    // ReEncrypt, also awaited (within the stanza key's region: moto does not cross).
    let c = create_key(&ep, "eu-west-1");
    let rotated = kms.re_encrypt(&new.stanzas[0], &c, &ctx()).await.unwrap();
    assert_eq!(rotated.key_id, c);
}

/// The lazy alias lookup and the decrypt cache are single flight across tasks running in
/// parallel: two tasks opening the same object through an alias cost one `DescribeKey` and
/// one `Decrypt` (counted by the fault proxy, which forwards everything here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn parallel_tasks_share_one_lookup_and_one_decrypt() {
    let Some(ep) = endpoint("parallel_tasks_share_one_lookup_and_one_decrypt") else {
        return;
    };
    let arn = create_key(&ep, "us-east-1");
    let alias = format!("alias/{}", unique("shared"));
    create_alias(&ep, "us-east-1", &alias, &arn);
    let proxy = common::proxy::Proxy::start(&ep);
    let kms = Kms::from_conf(
        &sdk_config_at(Some(&proxy.url)).await,
        KmsSettings::default(),
    );
    let (dek, stanza) = KmsKey::for_wrapping(&kms, &arn)
        .generate(&ctx())
        .await
        .unwrap()
        .unwrap();
    let key = Arc::new(KmsKey::trusted(&kms, &alias).unwrap());
    let stanzas = Arc::new(vec![stanza]);
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (key, stanzas) = (Arc::clone(&key), Arc::clone(&stanzas));
            tokio::spawn(async move {
                keys::unwrap_any_async(&stanzas, &[&*key], &ctx(), &|_| true).await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().expose(), dek.expose());
    }
    assert_eq!(proxy.calls("DescribeKey"), 1, "one alias lookup");
    assert_eq!(
        proxy.calls("Decrypt"),
        1,
        "one Decrypt, the rest from the cache"
    );
    // The counters a service reports (the gateway's /metrics) agree with the wire.
    let s = kms.stats();
    assert_eq!(
        (s.generate_data_key, s.describe_key, s.decrypt),
        (
            proxy.calls("GenerateDataKey") as u64,
            proxy.calls("DescribeKey") as u64,
            proxy.calls("Decrypt") as u64
        )
    );
    assert_eq!(s.generate_data_key, 1);
    assert_eq!((s.decrypt_cache_hits, s.decrypt_cache_misses), (3, 1));
    assert_eq!((s.encrypt, s.re_encrypt), (0, 0));
}
