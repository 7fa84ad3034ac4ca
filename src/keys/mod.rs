//! Data keys and the key-provider seam.
//!
//! A [`KeyProvider`] wraps and unwraps 256-bit data keys. The local key-encryption key
//! ([`local::LocalKey`]) is one provider; AWS KMS plugs in through the same trait.

pub mod cache;
pub mod local;

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
    /// Whether this provider should try `stanza`.
    fn matches(&self, stanza: &Stanza) -> bool {
        stanza.provider == self.provider_id() && stanza.key_id == self.key_id()
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
        return Err(Error::Usage(format!(
            "{} wrapping keys given; an object holds at most {}",
            providers.len(),
            crate::format::limits::MAX_STANZAS
        )));
    }
    let (first, rest) = providers
        .split_first()
        .ok_or_else(|| Error::Usage("no wrapping key given".into()))?;
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
/// Stanzas are tried in file order; for each, the matching providers in the order given. A
/// key that unwraps but is not accepted is recorded and the search goes on, so one bad or
/// planted stanza cannot hide a good one, and a key service failing for one stanza does not
/// stop the next. Reports every attempt's reason if none succeeds: exit 5
/// ([`Error::KeyServiceStanzas`]) if any failure was the key service's, else
/// [`Error::CommitmentMismatch`] if every candidate unwrapped but failed `accept`, else
/// [`Error::UnwrapFailed`].
pub fn unwrap_any(
    stanzas: &[Stanza],
    providers: &[&dyn KeyProvider],
    context: &Context,
    accept: &dyn Fn(&DataKey) -> bool,
) -> Result<DataKey> {
    let mut failures = Vec::new();
    let mut rejected = 0usize;
    let mut service = false;
    for s in stanzas {
        for p in providers.iter().filter(|p| p.matches(s)) {
            let reason = match p.unwrap(s, context) {
                Ok(dek) if accept(&dek) => return Ok(dek),
                Ok(_) => {
                    rejected += 1;
                    "the unwrapped data key does not match the header's key commitment".into()
                }
                Err(e) if e.is_authentication() => e.to_string(),
                // One key service failing (a region down, a disabled key) must not stop
                // another stanza from opening the object.
                Err(e) if e.exit_code() == 5 => {
                    service = true;
                    e.to_string()
                }
                Err(e) => return Err(e),
            };
            failures.push(StanzaFailure {
                provider: s.provider.clone(),
                key_id: s.key_id.clone(),
                reason,
            });
        }
    }
    if failures.is_empty() {
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
    if rejected == failures.len() {
        return Err(Error::CommitmentMismatch);
    }
    if service {
        return Err(Error::KeyServiceStanzas(failures));
    }
    Err(Error::UnwrapFailed(failures))
}

#[cfg(test)]
mod tests {
    use super::*;

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
