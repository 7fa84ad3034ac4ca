//! A key rotation planned once and applied to any number of headers.
//!
//! [`crate::envelope::rewrap`] changes one header with the keys it is handed. Rotating a
//! file, an S3 object or a whole tree takes more than that: move the stanzas of some KMS
//! keys to another KMS key with `ReEncrypt` (the data key never leaves KMS), then add and
//! remove stanzas, where a key to remove may be named as a KMS key is named elsewhere (an
//! alias, a bare key id) rather than by the ARN the stanza holds. [`Rewrap`] is that
//! plan, so the command line, its `--recursive` form and S3 objects share one
//! implementation, and a tree pays for loading keys and connecting to KMS once.
//!
//! ```
//! use sealstream::rewrap::Rewrap;
//! use sealstream::{Header, KeyProvider, LocalKey};
//!
//! let old = || LocalKey::from_bytes([1; 32]);
//! let new = || LocalKey::from_bytes([2; 32]);
//! let mut sealed = Vec::new();
//! let keys: [&dyn KeyProvider; 1] = [&old()];
//! sealstream::encrypt(&b"data"[..], &mut sealed, &keys, &Default::default())?;
//! let (header, _) = Header::parse(&sealed)?;
//!
//! // Made once, applied to as many headers as there are objects to rotate.
//! let plan = Rewrap::new()
//!     .unlock_with(Box::new(old()))
//!     .add_key(Box::new(new()))
//!     .remove_key(old().id());
//! let rotated = plan.apply(&header)?;
//! assert_eq!(rotated.stanzas.len(), 1);
//! assert_eq!(rotated.stanzas[0].key_id, new().id());
//! # Ok::<(), sealstream::Error>(())
//! ```

use crate::error::Result;
use crate::format::Header;
use crate::keys::KeyProvider;

/// Which keys should open an object after a rewrap: built once from what the caller
/// asks, applied to each header with [`Rewrap::apply`] (from several threads at once if
/// need be). The body is never touched.
///
/// Order of the changes: the KMS rotation first (`Rewrap::rotate_kms`, with the `kms` feature), then removals
/// and additions with [`crate::envelope::rewrap`]'s rules and lockout guard.
pub struct Rewrap<'k> {
    unlock_with: Vec<Box<dyn KeyProvider + 'k>>,
    add: Vec<Box<dyn KeyProvider + 'k>>,
    remove: Vec<String>,
    /// The KMS keys whose stanzas move, and the key they move to.
    #[cfg(feature = "kms")]
    rotate: Option<(Vec<String>, String)>,
    #[cfg(feature = "kms")]
    kms: Option<kms::KmsPlan<'k>>,
}

impl std::fmt::Debug for Rewrap<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids = |ps: &[Box<dyn KeyProvider + '_>]| -> Vec<String> {
            ps.iter()
                .map(|p| format!("{}:{}", p.provider_id(), p.key_id()))
                .collect()
        };
        let mut d = f.debug_struct("Rewrap");
        d.field("unlock_with", &ids(&self.unlock_with))
            .field("add", &ids(&self.add))
            .field("remove", &self.remove);
        #[cfg(feature = "kms")]
        d.field("rotate", &self.rotate);
        d.finish()
    }
}

impl Default for Rewrap<'_> {
    fn default() -> Self {
        Rewrap::new()
    }
}

impl<'k> Rewrap<'k> {
    /// A plan that changes nothing yet.
    pub fn new() -> Self {
        Rewrap {
            unlock_with: Vec::new(),
            add: Vec::new(),
            remove: Vec::new(),
            #[cfg(feature = "kms")]
            rotate: None,
            #[cfg(feature = "kms")]
            kms: None,
        }
    }

    /// A key that opens the objects now: adding or removing a stanza needs the data key
    /// (and removing one needs a stanza left that verifies). A KMS rotation alone does not.
    pub fn unlock_with(mut self, key: Box<dyn KeyProvider + 'k>) -> Self {
        self.unlock_with.push(key);
        self
    }

    /// A key to wrap the data key for (replacing a stanza of the same key).
    pub fn add_key(mut self, key: Box<dyn KeyProvider + 'k>) -> Self {
        self.add.push(key);
        self
    }

    /// A stanza to remove, named by its key id or `provider:key_id`; with
    /// `Rewrap::with_kms` (feature `kms`), also by a KMS alias or bare key id, resolved to the ARN the
    /// stanza holds (one `DescribeKey` per name for the life of the plan).
    pub fn remove_key(mut self, name: impl Into<String>) -> Self {
        self.remove.push(name.into());
        self
    }

    /// Whether the plan adds or removes stanzas (and so unwraps the data key).
    pub fn changes_keys(&self) -> bool {
        !(self.add.is_empty() && self.remove.is_empty())
    }

    /// The new header for `header`: rotated, then with the keys added and removed.
    ///
    /// Fails, changing nothing, with [`crate::Error::RewrapRefused`] when the request
    /// cannot be carried out (a key to remove has no stanza, no stanza would be left or
    /// none left would verify, nothing to rotate), or with the error of a key or of KMS.
    pub fn apply(&self, header: &Header) -> Result<Header> {
        #[cfg(feature = "kms")]
        let rotated = match &self.rotate {
            Some((from, to)) => Some(self.kms_plan()?.rotate(header, from, to)?),
            None => None,
        };
        #[cfg(not(feature = "kms"))]
        let rotated: Option<Header> = None;
        let header = rotated.as_ref().unwrap_or(header);
        if !self.changes_keys() {
            return Ok(header.clone());
        }
        let remove = self.removal_names(header)?;
        let unlock: Vec<&dyn KeyProvider> = self.unlock_with.iter().map(|p| &**p as _).collect();
        let add: Vec<&dyn KeyProvider> = self.add.iter().map(|p| &**p as _).collect();
        crate::envelope::rewrap(header, &unlock, &add, &remove)
    }

    /// The removal names as stanza names (see [`Rewrap::remove_key`]). A name that still
    /// names no stanza is left for [`crate::envelope::rewrap`] to refuse, naming it.
    fn removal_names(&self, header: &Header) -> Result<Vec<String>> {
        #[cfg(feature = "kms")]
        if let Some(k) = &self.kms {
            return self
                .remove
                .iter()
                .map(|r| k.stanza_name(header, r, self.sources()))
                .collect();
        }
        let _ = header; // only KMS names are read against the header
        Ok(self.remove.clone())
    }
}

#[cfg(feature = "kms")]
#[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
pub use kms::KmsConnect;

#[cfg(feature = "kms")]
mod kms {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use super::Rewrap;
    use crate::error::{Error, Result, RewrapRefusal};
    use crate::format::Header;
    use crate::keys::KeyProvider;
    use crate::kms::PROVIDER_ID;
    use crate::kms::blocking::{Kms, KmsKey};

    /// Whether `name` is how `header` names one of its stanzas (`key_id` or
    /// `provider:key_id`), as [`crate::envelope::rewrap`] reads removal names.
    fn names_stanza(header: &Header, name: &str) -> bool {
        header
            .stanzas
            .iter()
            .any(|s| crate::envelope::stanza_named(s, name))
    }

    /// How a plan reaches KMS: called when a KMS call is first needed (and again only
    /// if it failed), so a plan that never needs KMS, such as a local rewrap that removes
    /// a local key, never loads the AWS configuration.
    pub type KmsConnect<'k> = Box<dyn Fn() -> Result<Arc<Kms>> + Send + Sync + 'k>;

    /// The KMS side of a plan: the connection, made once, and what it has learnt.
    pub(super) struct KmsPlan<'k> {
        connect: KmsConnect<'k>,
        /// The connection and the trusted rotation sources, once made: their lazy
        /// `DescribeKey` lookups then serve every header of the plan.
        connected: Mutex<Option<Arc<Connected>>>,
        /// Removal names already resolved to a key ARN.
        resolved: Mutex<HashMap<String, String>>,
    }

    struct Connected {
        kms: Arc<Kms>,
        rotate_from: Vec<KmsKey>,
    }

    impl<'k> Rewrap<'k> {
        /// Lets the plan call KMS (for [`Rewrap::rotate_kms`] and to resolve the KMS names
        /// given to [`Rewrap::remove_key`]), through a connection made by `connect` when first
        /// needed.
        #[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
        pub fn with_kms(mut self, connect: KmsConnect<'k>) -> Self {
            self.kms = Some(KmsPlan {
                connect,
                connected: Mutex::new(None),
                resolved: Mutex::new(HashMap::new()),
            });
            self
        }

        /// Replaces every stanza of the KMS keys `from` (ids, aliases or ARNs, trusted as
        /// [`crate::kms::KmsKey::trusted`] trusts them) with a `ReEncrypt` of it to `to`:
        /// the data key stays inside KMS. So the key commitment cannot be checked here;
        /// a stanza that did not belong to the object would still fail it on the next
        /// decrypt. A header with no stanza of `from` is refused
        /// ([`RewrapRefusal::NothingToRotate`]). Needs [`Rewrap::with_kms`].
        #[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
        pub fn rotate_kms(mut self, from: Vec<String>, to: impl Into<String>) -> Self {
            self.rotate = Some((from, to.into()));
            self
        }

        /// The KMS side, or why there is none.
        pub(super) fn kms_plan(&self) -> Result<&KmsPlan<'k>> {
            self.kms.as_ref().ok_or_else(|| {
                Error::InvalidArgument(
                    "a KMS rotation needs a KMS connection (Rewrap::with_kms)".into(),
                )
            })
        }

        /// The names of the rotation's source keys (trusted when the connection is made).
        pub(super) fn sources(&self) -> &[String] {
            self.rotate
                .as_ref()
                .map_or(&[], |(from, _)| from.as_slice())
        }
    }

    impl KmsPlan<'_> {
        /// The connection, made on first use (a failure is not kept: the next header
        /// tries again, as a fresh command would), with the rotation's source keys.
        fn connected(&self, rotate_from: &[String]) -> Result<Arc<Connected>> {
            let mut slot = self
                .connected
                .lock()
                .map_err(|_| Error::key_service("the KMS connection lock was poisoned"))?;
            if let Some(c) = slot.as_ref() {
                return Ok(Arc::clone(c));
            }
            let kms = (self.connect)()?;
            let rotate_from = rotate_from
                .iter()
                .map(|k| KmsKey::trusted(&kms, k))
                .collect::<Result<_>>()?;
            let c = Arc::new(Connected { kms, rotate_from });
            *slot = Some(Arc::clone(&c));
            Ok(c)
        }

        /// `header` with every stanza of `from` re-encrypted to `dest`.
        pub(super) fn rotate(
            &self,
            header: &Header,
            from: &[String],
            dest: &str,
        ) -> Result<Header> {
            let c = self.connected(from)?;
            let mut header = header.clone();
            let mut rotated = 0;
            for st in header.stanzas.iter_mut() {
                let mut ours = false;
                for k in c.rotate_from.iter().filter(|k| k.matches(st)) {
                    ours |= k.confirm(st)?;
                }
                if ours {
                    *st = c.kms.re_encrypt(st, dest, &header.context)?;
                    rotated += 1;
                }
            }
            if rotated == 0 {
                return Err(Error::RewrapRefused(RewrapRefusal::NothingToRotate {
                    from: from.to_vec(),
                }));
            }
            Ok(header)
        }

        /// `name` as a stanza name: one that names no stanza as given but refers to a
        /// KMS key as a trusted key may (an alias, a bare key id, an alias ARN) is
        /// resolved to the key ARN the stanzas hold, with one `DescribeKey`; a name that
        /// still names no stanza is returned as given.
        pub(super) fn stanza_name(
            &self,
            header: &Header,
            name: &str,
            rotate_from: &[String],
        ) -> Result<String> {
            let has_kms = header.stanzas.iter().any(|s| s.provider == PROVIDER_ID);
            let kms_like = name.starts_with("alias/")
                || name.starts_with("arn:")
                || !name.contains(['/', ':']);
            if names_stanza(header, name) || !has_kms || !kms_like {
                return Ok(name.to_string());
            }
            let known = self
                .resolved
                .lock()
                .map_err(|_| Error::key_service("the KMS name cache lock was poisoned"))?
                .get(name)
                .cloned();
            let arn = match known {
                Some(arn) => arn,
                None => {
                    let arn = self.connected(rotate_from)?.kms.resolve_arn(name)?;
                    if let Ok(mut m) = self.resolved.lock() {
                        m.insert(name.to_string(), arn.clone());
                    }
                    arn
                }
            };
            Ok(if names_stanza(header, &arn) {
                arn
            } else {
                name.to_string()
            })
        }
    }
}
