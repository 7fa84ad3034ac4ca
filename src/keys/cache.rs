//! Data-key caching for work that encrypts many objects in one process.
//!
//! One data key (and its stanzas) may serve several objects within limits on age, object
//! count and plaintext bytes, saving a `GenerateDataKey` per object. Every object still gets
//! its own salt, so its own payload key and commitment; what objects sharing a data key
//! also share is its exposure: whoever obtains that one data key can read all of them, and
//! an observer can see which objects share identical stanzas. Entries are per encryption
//! context; cached keys are zeroized when they are evicted or the cache is dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::{Context, Stanza};
use crate::keys::{
    AsyncKeyProvider, DataKey, Inline, KeyProvider, block_on, inline, wrap_for_all_core,
};

/// How long and how much one cached data key may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Maximum age of a cached data key.
    pub max_age: Duration,
    /// Maximum objects encrypted under one data key.
    pub max_objects: u64,
    /// Maximum plaintext bytes encrypted under one data key.
    pub max_bytes: u64,
}

/// Most distinct encryption contexts held at once (oldest evicted first).
const MAX_ENTRIES: usize = 64;

struct Entry {
    dek: DataKey,
    stanzas: Vec<Stanza>,
    created: Instant,
    objects: u64,
    bytes: u64,
}

/// Per-key single flight: one slot per cache key, each behind its own async lock.
///
/// The map lock (a std mutex) is held only to find or create a slot, never across the
/// work done in it (a KMS call), so callers for the same key run one at a time (the
/// second reuses what the first stored) while callers for different keys run
/// concurrently: one slow or hostile key cannot stall the others. The slot lock is a
/// `tokio::sync::Mutex`, so it may be held across an `.await` (async callers) and is
/// runtime-agnostic (the synchronous callers park their thread on it).
pub struct SingleFlight<V> {
    slots: std::sync::Mutex<HashMap<Vec<u8>, SharedSlot<V>>>,
}

/// One slot of a [`SingleFlight`], shared by the map and the caller holding it.
type SharedSlot<V> = Arc<Mutex<Option<V>>>;

/// A locked slot of a [`SingleFlight`]: the cached value (if any), for the holder alone
/// until dropped.
pub type Slot<V> = tokio::sync::OwnedMutexGuard<Option<V>>;

impl<V> std::fmt::Debug for SingleFlight<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

impl<V> Default for SingleFlight<V> {
    fn default() -> Self {
        SingleFlight {
            slots: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl<V> SingleFlight<V> {
    /// Locks the slot of `key` (waiting while another caller holds it) and returns it.
    ///
    /// Idle slots whose value `keep` rejects (too old) or that hold nothing are dropped
    /// first; when `max_entries` would be exceeded, the idle slot with the oldest `created`
    /// time is evicted. Slots in use by another caller are never evicted, so the map can
    /// briefly exceed `max_entries` by the number of calls in flight.
    pub async fn slot(
        &self,
        key: Vec<u8>,
        max_entries: usize,
        keep: impl Fn(&V) -> bool,
        created: impl Fn(&V) -> Instant,
    ) -> Result<Slot<V>> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| Error::key_service("data-key cache poisoned"))?;
            // A slot only the map holds is idle: nobody can clone it while we hold the map
            // lock, so `try_lock` on it always succeeds. Dropped values zeroize themselves.
            slots.retain(|k, s| {
                k == &key
                    || Arc::strong_count(s) > 1
                    || s.try_lock().map_or(true, |v| v.as_ref().is_some_and(&keep))
            });
            if !slots.contains_key(&key) && slots.len() >= max_entries.max(1) {
                let oldest = slots
                    .iter()
                    .filter(|(_, s)| Arc::strong_count(s) == 1)
                    .filter_map(|(k, s)| {
                        let v = s.try_lock().ok()?;
                        v.as_ref().map(|v| (created(v), k.clone()))
                    })
                    .min_by_key(|(at, _)| *at)
                    .map(|(_, k)| k);
                if let Some(k) = oldest {
                    slots.remove(&k);
                }
            }
            Arc::clone(slots.entry(key).or_default())
        };
        Ok(slot.lock_owned().await)
    }
}

/// A cache of data keys for one set of wrapping keys.
pub struct DataKeyCache {
    limits: CacheLimits,
    entries: SingleFlight<Entry>,
}

impl std::fmt::Debug for DataKeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyCache")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl DataKeyCache {
    /// An empty cache with these limits.
    pub fn new(limits: CacheLimits) -> Self {
        DataKeyCache {
            limits,
            entries: SingleFlight::default(),
        }
    }

    /// A data key and its stanzas for one object of `len` plaintext bytes (0 if unknown):
    /// the cached one while it is within every limit, else a fresh one from `providers`.
    /// Single flight per encryption context: objects with other contexts do not wait.
    ///
    /// `providers` must be the same set on every call (a cache serves one key set).
    pub fn data_key(
        &self,
        providers: &[&dyn KeyProvider],
        context: &Context,
        len: u64,
    ) -> Result<(DataKey, Vec<Stanza>)> {
        let inline = inline(providers);
        let refs: Vec<&Inline<'_>> = inline.iter().collect();
        block_on(self.data_key_core(&refs, context, len))
    }

    /// [`DataKeyCache::data_key`] for async providers (same limits, same single flight).
    pub async fn data_key_async(
        &self,
        providers: &[&dyn AsyncKeyProvider],
        context: &Context,
        len: u64,
    ) -> Result<(DataKey, Vec<Stanza>)> {
        self.data_key_core(providers, context, len).await
    }

    async fn data_key_core<P: AsyncKeyProvider + ?Sized>(
        &self,
        providers: &[&P],
        context: &Context,
        len: u64,
    ) -> Result<(DataKey, Vec<Stanza>)> {
        let l = self.limits;
        let mut slot = self
            .entries
            .slot(
                context.to_bytes(),
                MAX_ENTRIES,
                |e| e.created.elapsed() < l.max_age,
                |e| e.created,
            )
            .await?;
        if let Some(e) = slot.as_mut() {
            let fits = e.created.elapsed() < l.max_age
                && e.objects < l.max_objects
                && e.bytes.saturating_add(len) <= l.max_bytes;
            if fits {
                e.objects += 1;
                e.bytes += len;
                return Ok((e.dek.clone(), e.stanzas.clone()));
            }
        }
        // An evicted entry is dropped here; DataKey zeroizes itself.
        *slot = None;
        let (dek, stanzas) = wrap_for_all_core(providers, context).await?;
        *slot = Some(Entry {
            dek: dek.clone(),
            stanzas: stanzas.clone(),
            created: Instant::now(),
            objects: 1,
            bytes: len,
        });
        Ok((dek, stanzas))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A provider that counts how often it generates.
    struct Counting(AtomicU32);

    impl KeyProvider for Counting {
        fn provider_id(&self) -> &str {
            "test"
        }
        fn key_id(&self) -> &str {
            "k"
        }
        fn generate(&self, _: &Context) -> Result<Option<(DataKey, Stanza)>> {
            let n = self.0.fetch_add(1, Ordering::Relaxed);
            let dek = DataKey::from_bytes([n as u8; 32]);
            let s = Stanza {
                provider: "test".into(),
                key_id: "k".into(),
                wrapped: vec![n as u8],
            };
            Ok(Some((dek, s)))
        }
        fn wrap(&self, _: &DataKey, _: &Context) -> Result<Stanza> {
            unreachable!()
        }
        fn unwrap(&self, _: &Stanza, _: &Context) -> Result<DataKey> {
            unreachable!()
        }
    }

    /// A provider whose `generate` for a context holding `slow=1` reports that it started
    /// and then blocks until released (or gives up after a deadlock guard, with an error).
    struct Blocking {
        calls: AtomicU32,
        entered: std::sync::mpsc::SyncSender<()>,
        release: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    }

    impl KeyProvider for Blocking {
        fn provider_id(&self) -> &str {
            "test"
        }
        fn key_id(&self) -> &str {
            "k"
        }
        fn generate(&self, ctx: &Context) -> Result<Option<(DataKey, Stanza)>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            if ctx.iter().any(|(k, _)| k == "slow") {
                self.entered.send(()).unwrap();
                // Deadlock guard only: the test never relies on this duration passing.
                let released = self
                    .release
                    .lock()
                    .unwrap()
                    .recv_timeout(Duration::from_secs(30));
                if released.is_err() {
                    return Err(Error::key_service("never released"));
                }
            }
            let s = Stanza {
                provider: "test".into(),
                key_id: "k".into(),
                wrapped: vec![n as u8],
            };
            Ok(Some((DataKey::from_bytes([n as u8; 32]), s)))
        }
        fn wrap(&self, _: &DataKey, _: &Context) -> Result<Stanza> {
            unreachable!()
        }
        fn unwrap(&self, _: &Stanza, _: &Context) -> Result<DataKey> {
            unreachable!()
        }
    }

    fn blocking() -> (
        Blocking,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (entered_tx, entered_rx) = std::sync::mpsc::sync_channel(8);
        let (release_tx, release_rx) = std::sync::mpsc::channel();
        let p = Blocking {
            calls: AtomicU32::new(0),
            entered: entered_tx,
            release: std::sync::Mutex::new(release_rx),
        };
        (p, entered_rx, release_tx)
    }

    #[test]
    fn a_slow_key_does_not_block_another_key() {
        let (p, entered, release) = blocking();
        let c = DataKeyCache::new(limits(u64::MAX, u64::MAX, Duration::from_secs(60)));
        let slow = Context::from_pairs([("slow", "1")]).unwrap();
        let fast = Context::from_pairs([("fast", "1")]).unwrap();
        std::thread::scope(|s| {
            let t = s.spawn(|| c.data_key(&[&p], &slow, 1));
            entered.recv().unwrap(); // the slow fetch is now inside the provider
            // With one lock held across the provider call, this would wait for the slow
            // fetch, which waits for the release below: the guard then fails the slow one.
            let (_, st) = c.data_key(&[&p], &fast, 1).unwrap();
            assert_eq!(st.len(), 1);
            release.send(()).unwrap();
            let slow_result = t.join().unwrap();
            assert!(
                slow_result.is_ok(),
                "the slow fetch was held up: {slow_result:?}"
            );
        });
        assert_eq!(p.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn the_same_key_is_fetched_once_by_concurrent_callers() {
        let (p, entered, release) = blocking();
        let c = DataKeyCache::new(limits(u64::MAX, u64::MAX, Duration::from_secs(60)));
        let slow = Context::from_pairs([("slow", "1")]).unwrap();
        std::thread::scope(|s| {
            let a = s.spawn(|| c.data_key(&[&p], &slow, 1));
            entered.recv().unwrap();
            let b = s.spawn(|| c.data_key(&[&p], &slow, 1));
            release.send(()).unwrap();
            let (ka, sa) = a.join().unwrap().unwrap();
            let (kb, sb) = b.join().unwrap().unwrap();
            assert_eq!(ka.expose(), kb.expose());
            assert!(sa == sb);
        });
        assert_eq!(p.calls.load(Ordering::SeqCst), 1, "one fetch, one waiter");
    }

    #[test]
    fn single_flight_evicts_the_oldest_idle_entry_at_the_limit() {
        let sf: SingleFlight<Instant> = SingleFlight::default();
        for i in 0..5u8 {
            let mut slot = block_on(sf.slot(vec![i], 3, |_| true, |at| *at)).unwrap();
            *slot = Some(Instant::now());
        }
        let held = sf.slots.lock().unwrap();
        assert_eq!(held.len(), 3);
        assert!(held.contains_key(&vec![4u8]) && !held.contains_key(&vec![0u8]));
    }

    /// An async provider whose `generate` sleeps (a slow KMS), counting calls.
    #[cfg(feature = "async")]
    struct Slow(AtomicU32);

    #[cfg(feature = "async")]
    impl AsyncKeyProvider for Slow {
        fn provider_id(&self) -> &str {
            "test"
        }
        fn key_id(&self) -> &str {
            "k"
        }
        fn generate<'a>(
            &'a self,
            _: &'a Context,
        ) -> crate::keys::BoxFuture<'a, Result<Option<(DataKey, Stanza)>>> {
            Box::pin(async move {
                let n = self.0.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                let s = Stanza {
                    provider: "test".into(),
                    key_id: "k".into(),
                    wrapped: vec![n as u8],
                };
                Ok(Some((DataKey::from_bytes([n as u8; 32]), s)))
            })
        }
        fn wrap<'a>(
            &'a self,
            _: &'a DataKey,
            _: &'a Context,
        ) -> crate::keys::BoxFuture<'a, Result<Stanza>> {
            unreachable!()
        }
        fn unwrap<'a>(
            &'a self,
            _: &'a Stanza,
            _: &'a Context,
        ) -> crate::keys::BoxFuture<'a, Result<DataKey>> {
            unreachable!()
        }
    }

    /// Concurrent tasks on one current-thread runtime: the slot lock is held across the
    /// provider's await without blocking the thread, and the second task reuses the key.
    #[cfg(feature = "async")]
    #[test]
    fn async_callers_share_one_fetch_on_a_current_thread_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let p = Slow(AtomicU32::new(0));
        let c = DataKeyCache::new(limits(u64::MAX, u64::MAX, Duration::from_secs(60)));
        let ctx = Context::new();
        let providers: [&dyn AsyncKeyProvider; 1] = [&p];
        let (a, b) = rt.block_on(async {
            tokio::join!(
                c.data_key_async(&providers, &ctx, 1),
                c.data_key_async(&providers, &ctx, 1)
            )
        });
        assert_eq!(a.unwrap().0.expose(), b.unwrap().0.expose());
        assert_eq!(p.0.load(Ordering::SeqCst), 1, "one fetch, one waiter");
    }

    fn limits(objects: u64, bytes: u64, age: Duration) -> CacheLimits {
        CacheLimits {
            max_age: age,
            max_objects: objects,
            max_bytes: bytes,
        }
    }

    #[test]
    fn object_limit_is_exact() {
        let p = Counting(AtomicU32::new(0));
        let c = DataKeyCache::new(limits(3, u64::MAX, Duration::from_secs(60)));
        let ctx = Context::new();
        for _ in 0..10 {
            c.data_key(&[&p], &ctx, 10).unwrap();
        }
        assert_eq!(p.0.load(Ordering::Relaxed), 4, "10 objects, 3 per key");
    }

    #[test]
    fn byte_limit_and_context_separation() {
        let p = Counting(AtomicU32::new(0));
        let c = DataKeyCache::new(limits(u64::MAX, 100, Duration::from_secs(60)));
        let a = Context::new();
        let b = Context::from_pairs([("x", "y")]).unwrap();
        c.data_key(&[&p], &a, 60).unwrap();
        c.data_key(&[&p], &a, 40).unwrap(); // exactly 100: still fits
        c.data_key(&[&p], &a, 1).unwrap(); // over: new key
        c.data_key(&[&p], &b, 1).unwrap(); // other context: its own key
        assert_eq!(p.0.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn age_limit() {
        let p = Counting(AtomicU32::new(0));
        let c = DataKeyCache::new(limits(u64::MAX, u64::MAX, Duration::from_millis(30)));
        let ctx = Context::new();
        c.data_key(&[&p], &ctx, 1).unwrap();
        c.data_key(&[&p], &ctx, 1).unwrap();
        std::thread::sleep(Duration::from_millis(40));
        c.data_key(&[&p], &ctx, 1).unwrap();
        assert_eq!(p.0.load(Ordering::Relaxed), 2);
    }
}
