//! Data keys and the key-provider seam.
//!
//! A [`KeyProvider`] wraps and unwraps 256-bit data keys. The local key-encryption key
//! ([`local::LocalKey`]) is one provider; AWS KMS plugs in through the same trait.

pub mod cache;
pub mod local;

use std::collections::BTreeMap;

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

/// Something that can wrap a data key into a stanza and unwrap it again.
///
/// Synchronous on purpose: the crypto core is synchronous, and a network-backed provider
/// (KMS) drives its own runtime inside these calls.
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

/// Creates a fresh data key and wraps it for every provider, in order.
///
/// The first provider may generate the key itself (KMS); the rest wrap the same key.
pub fn wrap_for_all(
    providers: &[&dyn KeyProvider],
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
    let (dek, first_stanza) = match first.generate(context)? {
        Some(pair) => pair,
        None => {
            let dek = DataKey::generate()?;
            let s = first.wrap(&dek, context)?;
            (dek, s)
        }
    };
    let mut stanzas = vec![first_stanza];
    for p in rest {
        stanzas.push(p.wrap(&dek, context)?);
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
            match p.confirm(s) {
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
            let reason = match p.unwrap(s, context) {
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
                "not tried: at most {max} {id} unwraps per object; if you trust this file, raise --kms-max-decrypts"
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
        assert!(msg.contains("--kms-max-decrypts"), "{msg}");

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
