//! Data-key caching for work that encrypts many objects in one process.
//!
//! One data key (and its stanzas) may serve several objects within limits on age, object
//! count and plaintext bytes, saving a `GenerateDataKey` per object. Every object still gets
//! its own salt, so its own payload key and commitment; what objects sharing a data key
//! also share is its exposure: whoever obtains that one data key can read all of them, and
//! an observer can see which objects share identical stanzas. Entries are per encryption
//! context; cached keys are zeroized when they are evicted or the cache is dropped.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{Context, Stanza};
use crate::keys::{DataKey, KeyProvider, wrap_for_all};

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

/// A cache of data keys for one set of wrapping keys.
pub struct DataKeyCache {
    limits: CacheLimits,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
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
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A data key and its stanzas for one object of `len` plaintext bytes (0 if unknown):
    /// the cached one while it is within every limit, else a fresh one from `providers`.
    ///
    /// `providers` must be the same set on every call (a cache serves one key set).
    pub fn data_key(
        &self,
        providers: &[&dyn KeyProvider],
        context: &Context,
        len: u64,
    ) -> Result<(DataKey, Vec<Stanza>)> {
        let l = self.limits;
        let key = context.to_bytes();
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| Error::KeyService("data-key cache poisoned".into()))?;
        if let Some(e) = entries.get_mut(&key) {
            let fits = e.created.elapsed() < l.max_age
                && e.objects < l.max_objects
                && e.bytes.saturating_add(len) <= l.max_bytes;
            if fits {
                e.objects += 1;
                e.bytes += len;
                return Ok((e.dek.clone(), e.stanzas.clone()));
            }
        }
        // Evicted entries are dropped here; DataKey zeroizes itself.
        entries.remove(&key);
        let (dek, stanzas) = wrap_for_all(providers, context)?;
        if entries.len() >= MAX_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.created)
                .map(|(k, _)| k.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(
            key,
            Entry {
                dek: dek.clone(),
                stanzas: stanzas.clone(),
                created: Instant::now(),
                objects: 1,
                bytes: len,
            },
        );
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
