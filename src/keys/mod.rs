//! Data keys and the key-provider seam.
//!
//! A [`KeyProvider`] wraps and unwraps 256-bit data keys synchronously; an
//! [`AsyncKeyProvider`] does the same with futures, for services. The local key-encryption
//! key ([`local::LocalKey`]) is both (it never blocks: [`NonBlocking`]); AWS KMS is async
//! (`kms::KmsKey`, feature `kms`) with a blocking layer for the CLI
//! (`kms::blocking::KmsKey`). The rules of wrapping and unwrapping
//! ([`wrap_for_all`], [`unwrap_any`]) are written once, as async code that the synchronous
//! entry points drive on the calling thread.

pub mod cache;
pub mod local;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result, StanzaFailure};
use crate::format::{Context, Stanza};

/// Fills `buf` from the operating system's CSPRNG (keys, salts, wrap nonces).
pub fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|e| {
        Error::io(
            "reading the operating system's random number generator",
            std::io::Error::other(e.to_string()),
        )
    })
}

/// A 256-bit data-encryption key. Zeroized on drop; never printed.
///
/// Each clone is its own zeroizing copy. Moves of the struct itself are not wiped by
/// anyone: keep keys behind references where it matters.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

// The storage itself must wipe on drop; `DataKey`'s `ZeroizeOnDrop` marker below relies
// on it. Fails to compile if the field ever becomes a plain array.
const fn storage_wipes_on_drop<T: ZeroizeOnDrop>(_: fn(&DataKey) -> &T) {}
const _: () = storage_wipes_on_drop(|k: &DataKey| &k.0);

/// Wipes the key bytes now (they are wiped on drop anyway).
impl Zeroize for DataKey {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// Marker: dropping a `DataKey` wipes its bytes (its storage is `Zeroizing`).
impl ZeroizeOnDrop for DataKey {}

impl DataKey {
    /// A fresh random data key from the operating system's CSPRNG.
    pub fn generate() -> Result<DataKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        fill_random(&mut k[..])?;
        Ok(DataKey(k))
    }

    /// Wraps existing key bytes (e.g. returned by KMS `GenerateDataKey`).
    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    /// The key bytes; keep the borrow short.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// Something that can wrap a data key into a stanza and unwrap it again, synchronously.
///
/// For the CLI and synchronous callers. A network-backed implementation (the blocking KMS
/// layer, `kms::blocking`) drives its own runtime inside these calls, so it must
/// not be called from inside an async runtime; async code uses [`AsyncKeyProvider`].
pub trait KeyProvider: Send + Sync {
    /// The provider id stored in stanzas (`local`, `aws-kms`, …).
    fn provider_id(&self) -> &str;
    /// This key's id as stored in stanzas.
    fn key_id(&self) -> &str;
    /// Generates a data key and its stanza in one step, for providers that can
    /// (KMS `GenerateDataKey`). `None` means "generate locally, then call `wrap`".
    fn generate(&self, _context: &Context) -> Result<Option<(DataKey, Stanza)>> {
        Ok(None)
    }
    /// Wraps `dek` for this key, binding `context`.
    fn wrap(&self, dek: &DataKey, context: &Context) -> Result<Stanza>;
    /// Unwraps a stanza addressed to this key.
    fn unwrap(&self, stanza: &Stanza, context: &Context) -> Result<DataKey>;
    /// Whether this provider should try `stanza` (or could: see [`KeyProvider::confirm`]).
    /// Cheap and offline.
    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == self.provider_id() && stanza.key_id == self.key_id()
    }
    /// Confirms a stanza that [`KeyProvider::matches`] let through when matching needs a
    /// lookup (a KMS alias or key id resolved to its ARN only once a stanza could be its):
    /// `Ok(false)` means not this key after all, and an error is this stanza's failure
    /// (the next stanza is still tried), so an unreachable lookup is never fatal up front.
    fn confirm(&self, _stanza: &Stanza) -> Result<bool> {
        Ok(true)
    }
    /// Most stanzas this provider's service may be asked to unwrap for one object, shared
    /// by every provider with the same [`KeyProvider::provider_id`] (the smallest wins);
    /// `None` when an attempt costs nothing worth bounding (a local key). Bounds what one
    /// hostile file with many stanzas can cost (KMS: `--kms-max-decrypts`).
    fn unwrap_budget(&self) -> Option<usize> {
        None
    }
}

/// The future an [`AsyncKeyProvider`] returns: boxed so that the trait stays object safe
/// (`&dyn AsyncKeyProvider` in a keyring) and `Send` so that it can run on any tokio
/// worker (`tokio::spawn`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The async twin of [`KeyProvider`], for services: the network calls (KMS) are awaited
/// on the caller's runtime instead of being driven by a private one, so a provider can be
/// used inside a tokio service (multi-thread or current-thread) without blocking a worker
/// or panicking on a nested runtime.
///
/// Identification ([`AsyncKeyProvider::provider_id`], [`AsyncKeyProvider::key_id`],
/// [`AsyncKeyProvider::matches`], [`AsyncKeyProvider::unwrap_budget`]) stays synchronous:
/// it is offline and cheap. Every method has the same contract as its [`KeyProvider`]
/// namesake.
///
/// A synchronous provider that never blocks (a local key) becomes one by implementing the
/// marker [`NonBlocking`]; one that blocks (the blocking KMS layer) deliberately does not,
/// so it is never driven inside a runtime by accident.
pub trait AsyncKeyProvider: Send + Sync {
    /// The provider id stored in stanzas.
    fn provider_id(&self) -> &str;
    /// This key's id as stored in stanzas.
    fn key_id(&self) -> &str;
    /// See [`KeyProvider::generate`].
    fn generate<'a>(
        &'a self,
        _context: &'a Context,
    ) -> BoxFuture<'a, Result<Option<(DataKey, Stanza)>>> {
        ready(Ok(None))
    }
    /// See [`KeyProvider::wrap`].
    fn wrap<'a>(&'a self, dek: &'a DataKey, context: &'a Context) -> BoxFuture<'a, Result<Stanza>>;
    /// See [`KeyProvider::unwrap`].
    fn unwrap<'a>(
        &'a self,
        stanza: &'a Stanza,
        context: &'a Context,
    ) -> BoxFuture<'a, Result<DataKey>>;
    /// See [`KeyProvider::matches`].
    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == self.provider_id() && stanza.key_id == self.key_id()
    }
    /// See [`KeyProvider::confirm`].
    fn confirm<'a>(&'a self, _stanza: &'a Stanza) -> BoxFuture<'a, Result<bool>> {
        ready(Ok(true))
    }
    /// See [`KeyProvider::unwrap_budget`].
    fn unwrap_budget(&self) -> Option<usize> {
        None
    }
}

/// A future that is already complete: how a non-blocking provider answers.
fn ready<'a, T: Send + 'a>(v: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(v))
}

/// Marker: this synchronous provider never blocks (no network, no disk after loading),
/// so its calls may run inline on an async task; it then is an [`AsyncKeyProvider`] too.
///
/// Implemented by [`local::LocalKey`]. Do not implement it for a provider that performs
/// I/O or drives a runtime: wrap such a provider in `tokio::task::spawn_blocking` or
/// give it an async implementation instead.
pub trait NonBlocking: KeyProvider {}

impl<T: NonBlocking> AsyncKeyProvider for T {
    fn provider_id(&self) -> &str {
        KeyProvider::provider_id(self)
    }
    fn key_id(&self) -> &str {
        KeyProvider::key_id(self)
    }
    fn generate<'a>(&'a self, c: &'a Context) -> BoxFuture<'a, Result<Option<(DataKey, Stanza)>>> {
        ready(KeyProvider::generate(self, c))
    }
    fn wrap<'a>(&'a self, dek: &'a DataKey, c: &'a Context) -> BoxFuture<'a, Result<Stanza>> {
        ready(KeyProvider::wrap(self, dek, c))
    }
    fn unwrap<'a>(&'a self, s: &'a Stanza, c: &'a Context) -> BoxFuture<'a, Result<DataKey>> {
        ready(KeyProvider::unwrap(self, s, c))
    }
    fn matches(&self, s: &Stanza) -> bool {
        KeyProvider::matches(self, s)
    }
    fn confirm<'a>(&'a self, s: &'a Stanza) -> BoxFuture<'a, Result<bool>> {
        ready(KeyProvider::confirm(self, s))
    }
    fn unwrap_budget(&self) -> Option<usize> {
        KeyProvider::unwrap_budget(self)
    }
}

/// A synchronous provider seen through the async trait, for this crate's synchronous
/// entry points only: they drive the one async core with [`block_on`] on the calling
/// thread, so a provider that blocks (or runs its own runtime) behaves exactly as a
/// direct call would. Never handed to a runtime.
pub(crate) struct Inline<'p>(pub(crate) &'p dyn KeyProvider);

impl KeyProvider for Inline<'_> {
    fn provider_id(&self) -> &str {
        self.0.provider_id()
    }
    fn key_id(&self) -> &str {
        self.0.key_id()
    }
    fn generate(&self, c: &Context) -> Result<Option<(DataKey, Stanza)>> {
        self.0.generate(c)
    }
    fn wrap(&self, dek: &DataKey, c: &Context) -> Result<Stanza> {
        self.0.wrap(dek, c)
    }
    fn unwrap(&self, s: &Stanza, c: &Context) -> Result<DataKey> {
        self.0.unwrap(s, c)
    }
    fn matches(&self, s: &Stanza) -> bool {
        self.0.matches(s)
    }
    fn confirm(&self, s: &Stanza) -> Result<bool> {
        self.0.confirm(s)
    }
    fn unwrap_budget(&self) -> Option<usize> {
        self.0.unwrap_budget()
    }
}

/// Sound: only ever polled by [`block_on`] from synchronous code (see [`Inline`]).
impl NonBlocking for Inline<'_> {}

/// Wraps synchronous providers for the async core.
pub(crate) fn inline<'p>(providers: &[&'p dyn KeyProvider]) -> Vec<Inline<'p>> {
    providers.iter().map(|p| Inline(*p)).collect()
}

/// Runs a future to completion on the calling thread (parking it while the future waits),
/// without any runtime: how the synchronous API drives the async core. With [`Inline`]
/// providers the only thing that can wait is a cache slot another thread holds.
pub(crate) fn block_on<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => return v,
            std::task::Poll::Pending => std::thread::park(),
        }
    }
}

/// Creates a fresh data key and wraps it for every provider, in order.
///
/// The first provider may generate the key itself (KMS); the rest wrap the same key.
pub fn wrap_for_all(
    providers: &[&dyn KeyProvider],
    context: &Context,
) -> Result<(DataKey, Vec<Stanza>)> {
    let inline = inline(providers);
    let refs: Vec<&Inline<'_>> = inline.iter().collect();
    block_on(wrap_for_all_core(&refs, context))
}

/// [`wrap_for_all`] for async providers, awaited on the caller's runtime.
pub async fn wrap_for_all_async(
    providers: &[&dyn AsyncKeyProvider],
    context: &Context,
) -> Result<(DataKey, Vec<Stanza>)> {
    wrap_for_all_core(providers, context).await
}

/// The one implementation of [`wrap_for_all`] (sync and async).
pub(crate) async fn wrap_for_all_core<P: AsyncKeyProvider + ?Sized>(
    providers: &[&P],
    context: &Context,
) -> Result<(DataKey, Vec<Stanza>)> {
    if providers.len() > crate::format::limits::MAX_STANZAS {
        // Refuse before any key service is called.
        return Err(Error::InvalidArgument(format!(
            "{} wrapping keys given; an object holds at most {}",
            providers.len(),
            crate::format::limits::MAX_STANZAS
        )));
    }
    let (first, rest) = providers
        .split_first()
        .ok_or_else(|| Error::InvalidArgument("no wrapping key given".into()))?;
    let (dek, first_stanza) = match first.generate(context).await? {
        Some(pair) => pair,
        None => {
            let dek = DataKey::generate()?;
            let s = first.wrap(&dek, context).await?;
            (dek, s)
        }
    };
    let mut stanzas = vec![first_stanza];
    for p in rest {
        stanzas.push(p.wrap(&dek, context).await?);
    }
    Ok((dek, stanzas))
}

/// Unwraps the data key from the first stanza that one of `providers` can open and whose
/// key `accept` approves (the caller checks the header's key commitment there).
///
/// Stanzas are tried in file order; for each, the matching providers in the order given.
/// One rule for every failure: a key that unwraps but is not accepted, an authentication
/// failure, or a key-service failure (a region down, a disabled key, a lookup that failed)
/// is recorded for that stanza and the search goes on, so one bad or planted stanza cannot
/// hide a good one and one key service failing does not stop another stanza (another
/// region, a local key) from opening the object.
///
/// Work is bounded for hostile files: a stanza identical to an earlier one (same provider,
/// key id and wrapped bytes) is tried once, and a provider with an
/// [`KeyProvider::unwrap_budget`] is asked at most that many times for this object; the
/// stanzas left over are reported as not tried.
///
/// Reports every attempt's reason if none succeeds: exit 5 ([`Error::KeyServiceStanzas`])
/// if any failure was the key service's, else [`Error::CommitmentMismatch`] if every
/// candidate unwrapped but failed `accept`, else [`Error::UnwrapFailed`] (exit 4).
pub fn unwrap_any(
    stanzas: &[Stanza],
    providers: &[&dyn KeyProvider],
    context: &Context,
    accept: &dyn Fn(&DataKey) -> bool,
) -> Result<DataKey> {
    let inline = inline(providers);
    let refs: Vec<&Inline<'_>> = inline.iter().collect();
    block_on(unwrap_any_core(stanzas, &refs, context, accept))
}

/// [`unwrap_any`] for async providers, awaited on the caller's runtime (same rules).
pub async fn unwrap_any_async(
    stanzas: &[Stanza],
    providers: &[&dyn AsyncKeyProvider],
    context: &Context,
    accept: &(dyn Fn(&DataKey) -> bool + Sync),
) -> Result<DataKey> {
    unwrap_any_core(stanzas, providers, context, accept).await
}

/// The one implementation of [`unwrap_any`]'s rules (sync and async).
pub(crate) async fn unwrap_any_core<P, A>(
    stanzas: &[Stanza],
    providers: &[&P],
    context: &Context,
    accept: &A,
) -> Result<DataKey>
where
    P: AsyncKeyProvider + ?Sized,
    A: Fn(&DataKey) -> bool + ?Sized,
{
    let mut failures = Vec::new();
    let mut rejected = 0usize;
    let mut service = false;
    // Unwrap calls so far per provider id, and stanzas skipped because the budget ran out.
    let mut spent: BTreeMap<&str, usize> = BTreeMap::new();
    let mut skipped: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let budget_of = |id: &str| {
        providers
            .iter()
            .filter(|p| p.provider_id() == id)
            .filter_map(|p| p.unwrap_budget())
            .min()
    };
    for (i, s) in stanzas.iter().enumerate() {
        if stanzas[..i].contains(s) {
            continue; // the same stanza again: its outcome cannot differ
        }
        let fail = |reason: String| StanzaFailure {
            provider: s.provider.clone(),
            key_id: s.key_id.clone(),
            reason,
        };
        for p in providers.iter().filter(|p| p.matches(s)) {
            match p.confirm(s).await {
                Ok(true) => {}
                Ok(false) => continue,
                Err(e) => {
                    service |= e.is_key_service();
                    failures.push(fail(e.to_string()));
                    continue;
                }
            }
            let id = p.provider_id();
            if let Some(max) = budget_of(id) {
                let n = spent.entry(id).or_insert(0);
                if *n >= max {
                    skipped.entry(id).or_insert((0, max)).0 += 1;
                    break;
                }
                *n += 1;
            }
            let reason = match p.unwrap(s, context).await {
                Ok(dek) if accept(&dek) => return Ok(dek),
                Ok(_) => {
                    rejected += 1;
                    "the unwrapped data key does not match the header's key commitment".into()
                }
                Err(e) => {
                    // Authentication failures (exit 4) and key-service failures (exit 5)
                    // alike: record and go on with the next candidate.
                    service |= e.is_key_service();
                    e.to_string()
                }
            };
            failures.push(fail(reason));
        }
    }
    if failures.is_empty() && skipped.is_empty() {
        return Err(Error::NoMatchingKey {
            stanzas: stanzas
                .iter()
                .map(|s| format!("{}:{}", s.provider, s.key_id))
                .collect(),
            offered: providers
                .iter()
                .map(|p| format!("{}:{}", p.provider_id(), p.key_id()))
                .collect(),
        });
    }
    if rejected == failures.len() && skipped.is_empty() {
        return Err(Error::CommitmentMismatch);
    }
    for (id, (count, max)) in skipped {
        failures.push(StanzaFailure {
            provider: id.to_string(),
            key_id: format!("({count} more stanza{})", if count == 1 { "" } else { "s" }),
            reason: format!(
                "not tried: at most {max} {id} unwraps per object; if you trust this file, raise the per-object unwrap budget (with_max_decrypts)"
            ),
        });
    }
    if service {
        return Err(Error::KeyServiceStanzas(failures));
    }
    Err(Error::UnwrapFailed(failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A stub "remote" provider: answers every stanza of its provider id with `answer`,
    /// counting calls; `budget` as given.
    struct Stub {
        id: &'static str,
        calls: AtomicUsize,
        answer: fn(&Stanza) -> Result<DataKey>,
        budget: Option<usize>,
    }

    impl KeyProvider for Stub {
        fn provider_id(&self) -> &str {
            self.id
        }
        fn key_id(&self) -> &str {
            "any"
        }
        fn wrap(&self, _: &DataKey, _: &Context) -> Result<Stanza> {
            unreachable!()
        }
        fn unwrap(&self, s: &Stanza, _: &Context) -> Result<DataKey> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            (self.answer)(s)
        }
        fn matches(&self, s: &Stanza) -> bool {
            s.provider == self.id
        }
        fn unwrap_budget(&self) -> Option<usize> {
            self.budget
        }
    }

    fn stanza(provider: &str, key: &str, wrapped: &[u8]) -> Stanza {
        Stanza {
            provider: provider.into(),
            key_id: key.into(),
            wrapped: wrapped.to_vec(),
        }
    }

    fn down(_: &Stanza) -> Result<DataKey> {
        Err(Error::key_service("KMS unreachable"))
    }
    fn invalid(_: &Stanza) -> Result<DataKey> {
        Err(Error::UnwrapFailed(vec![]))
    }
    fn good(_: &Stanza) -> Result<DataKey> {
        Ok(DataKey::from_bytes([7; 32]))
    }
    fn stub(
        id: &'static str,
        answer: fn(&Stanza) -> Result<DataKey>,
        budget: Option<usize>,
    ) -> Stub {
        Stub {
            id,
            calls: AtomicUsize::new(0),
            answer,
            budget,
        }
    }
    fn accept_7(k: &DataKey) -> bool {
        k.expose() == &[7; 32]
    }

    #[test]
    fn a_key_service_failure_falls_through_to_the_next_stanza() {
        let kms = stub("aws-kms", down, Some(8));
        let local = stub("local", good, None);
        let stanzas = [stanza("aws-kms", "A", b"x"), stanza("local", "L", b"y")];
        let dek = unwrap_any(&stanzas, &[&local, &kms], &Context::new(), &accept_7).unwrap();
        assert_eq!(dek.expose(), &[7; 32]);
        assert_eq!(kms.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn exit_5_if_any_failure_was_the_key_service_else_4() {
        let kms = stub("aws-kms", down, Some(8));
        let local = stub("local", invalid, None);
        let stanzas = [stanza("local", "L", b"y"), stanza("aws-kms", "A", b"x")];
        let e = unwrap_any(&stanzas, &[&local, &kms], &Context::new(), &accept_7).unwrap_err();
        assert!(e.is_key_service(), "{e}");
        let kms = stub("aws-kms", invalid, Some(8));
        let e = unwrap_any(&stanzas, &[&local, &kms], &Context::new(), &accept_7).unwrap_err();
        assert!(e.is_authentication(), "{e}");
    }

    #[test]
    fn identical_stanzas_are_tried_once_and_the_budget_bounds_the_rest() {
        let kms = stub("aws-kms", invalid, Some(3));
        let mut stanzas = vec![stanza("aws-kms", "A", b"same"); 10];
        for i in 0..20u8 {
            stanzas.push(stanza("aws-kms", "A", &[i]));
        }
        let e = unwrap_any(&stanzas, &[&kms], &Context::new(), &accept_7).unwrap_err();
        assert_eq!(kms.calls.load(Ordering::SeqCst), 3, "budget of 3");
        assert!(e.is_authentication());
        let msg = e.to_string();
        assert!(msg.contains("(18 more stanzas)"), "{msg}");
        assert!(msg.contains("unwrap budget"), "{msg}");

        let kms = stub("aws-kms", invalid, Some(100));
        let _ = unwrap_any(&stanzas, &[&kms], &Context::new(), &accept_7).unwrap_err();
        assert_eq!(
            kms.calls.load(Ordering::SeqCst),
            21,
            "10 identical count once"
        );
    }

    #[test]
    fn the_budget_does_not_apply_to_local_keys() {
        let local = stub("local", invalid, None);
        let stanzas: Vec<Stanza> = (0..30u8).map(|i| stanza("local", "L", &[i])).collect();
        let _ = unwrap_any(&stanzas, &[&local], &Context::new(), &accept_7).unwrap_err();
        assert_eq!(local.calls.load(Ordering::SeqCst), 30);
    }

    /// A fake async provider: yields once (a real await point) before answering, so the
    /// core's awaits are exercised, not just ready futures.
    struct AsyncStub(Stub);

    struct YieldOnce(bool);
    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
            if self.0 {
                std::task::Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        }
    }

    impl AsyncKeyProvider for AsyncStub {
        fn provider_id(&self) -> &str {
            self.0.id
        }
        fn key_id(&self) -> &str {
            "any"
        }
        fn wrap<'a>(&'a self, _: &'a DataKey, _: &'a Context) -> BoxFuture<'a, Result<Stanza>> {
            unreachable!()
        }
        fn unwrap<'a>(&'a self, s: &'a Stanza, c: &'a Context) -> BoxFuture<'a, Result<DataKey>> {
            Box::pin(async move {
                YieldOnce(false).await;
                KeyProvider::unwrap(&self.0, s, c)
            })
        }
        fn matches(&self, s: &Stanza) -> bool {
            s.provider == self.0.id
        }
        fn confirm<'a>(&'a self, _: &'a Stanza) -> BoxFuture<'a, Result<bool>> {
            Box::pin(async {
                YieldOnce(false).await;
                Ok(true)
            })
        }
        fn unwrap_budget(&self) -> Option<usize> {
            self.0.budget
        }
    }

    fn unwrap_async(stanzas: &[Stanza], providers: &[&dyn AsyncKeyProvider]) -> Result<DataKey> {
        block_on(unwrap_any_async(
            stanzas,
            providers,
            &Context::new(),
            &accept_7,
        ))
    }

    #[test]
    fn async_core_falls_through_a_key_service_failure() {
        let kms = AsyncStub(stub("aws-kms", down, Some(8)));
        let local = AsyncStub(stub("local", good, None));
        let stanzas = [stanza("aws-kms", "A", b"x"), stanza("local", "L", b"y")];
        let dek = unwrap_async(&stanzas, &[&kms, &local]).unwrap();
        assert_eq!(dek.expose(), &[7; 32]);
        assert_eq!(kms.0.calls.load(Ordering::SeqCst), 1);
        // Exit 5 when a failure was the service's, 4 when all were authentication.
        let bad = AsyncStub(stub("local", invalid, None));
        let e = unwrap_async(&stanzas, &[&kms, &bad]).unwrap_err();
        assert!(e.is_key_service(), "{e}");
        let kms4 = AsyncStub(stub("aws-kms", invalid, Some(8)));
        let e = unwrap_async(&stanzas, &[&kms4, &bad]).unwrap_err();
        assert!(e.is_authentication(), "{e}");
    }

    #[test]
    fn async_core_dedupes_and_keeps_the_budget() {
        let kms = AsyncStub(stub("aws-kms", invalid, Some(3)));
        let mut stanzas = vec![stanza("aws-kms", "A", b"same"); 10];
        for i in 0..20u8 {
            stanzas.push(stanza("aws-kms", "A", &[i]));
        }
        let e = unwrap_async(&stanzas, &[&kms]).unwrap_err();
        assert_eq!(kms.0.calls.load(Ordering::SeqCst), 3, "budget of 3");
        assert!(e.to_string().contains("(18 more stanzas)"), "{e}");
        let kms = AsyncStub(stub("aws-kms", invalid, Some(100)));
        let _ = unwrap_async(&stanzas, &[&kms]).unwrap_err();
        assert_eq!(
            kms.0.calls.load(Ordering::SeqCst),
            21,
            "10 identical count once"
        );
    }

    #[test]
    fn async_core_rejects_a_key_that_fails_the_commitment_and_goes_on() {
        fn other(_: &Stanza) -> Result<DataKey> {
            Ok(DataKey::from_bytes([1; 32]))
        }
        let planted = AsyncStub(stub("planted", other, None));
        let real = AsyncStub(stub("local", good, None));
        let stanzas = [stanza("planted", "P", b"p"), stanza("local", "L", b"y")];
        let dek = unwrap_async(&stanzas, &[&planted, &real]).unwrap();
        assert_eq!(dek.expose(), &[7; 32]);
        let e = unwrap_async(&stanzas[..1], &[&planted]).unwrap_err();
        assert!(matches!(e, Error::CommitmentMismatch), "{e:?}");
    }

    #[test]
    fn local_keys_are_async_providers_and_wrap_for_all_async_round_trips() {
        let k = crate::keys::local::LocalKey::from_bytes([3; 32]);
        let ctx = Context::new();
        let (dek, stanzas) = block_on(wrap_for_all_async(&[&k], &ctx)).unwrap();
        let back = block_on(AsyncKeyProvider::unwrap(&k, &stanzas[0], &ctx)).unwrap();
        assert_eq!(back.expose(), dek.expose());
    }

    // What is honestly testable without `unsafe` (memory cannot be read after a drop):
    // that the storage type wipes on drop (compile-time check next to the struct), that
    // the wipe reaches the very bytes the key exposes (below), and that the wrapper type
    // DataKey stores its bytes in runs the wipe when dropped (below, with a probe).

    fn wipes_on_drop<T: ZeroizeOnDrop + Zeroize>(_: &T) {}

    #[test]
    fn data_key_is_zeroize_on_drop_and_zeroize_wipes_its_bytes() {
        let mut k = DataKey::from_bytes([0x5a; 32]);
        wipes_on_drop(&k);
        k.zeroize();
        assert_eq!(k.expose(), &[0u8; 32]);
    }

    #[test]
    fn the_storage_wrapper_wipes_when_dropped() {
        use std::cell::Cell;
        use std::rc::Rc;
        struct Probe(Rc<Cell<bool>>);
        impl Zeroize for Probe {
            fn zeroize(&mut self) {
                self.0.set(true);
            }
        }
        let wiped = Rc::new(Cell::new(false));
        drop(Zeroizing::new(Probe(wiped.clone())));
        assert!(wiped.get());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8 + 0xa0;
        }
        let shown = format!(
            "{:?} {:#?}",
            DataKey::from_bytes(bytes),
            DataKey::from_bytes(bytes)
        );
        // The forms a leak would take: the array's Debug, hex, decimal.
        assert!(!shown.contains("160, 161"), "{shown}");
        assert!(
            !shown.contains("a0a1a2") && !shown.contains("A0A1A2"),
            "{shown}"
        );
        assert!(!shown.contains("0xa0"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
