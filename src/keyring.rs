//! Which keys an operation holds, and in which order.
//!
//! A program that encrypts and decrypts for a user has to decide, every time, which keys
//! to use: the key files it was given, the KMS keys it was given, and whether the embedded
//! default key (`keys::local::default_key_path`) stands in when nothing was named. Those
//! decisions are policy, the same for every front end, so they live here once:
//!
//! - **Encryption** ([`Keyring::for_encryption`]): KMS keys first (the first one generates
//!   the data key: one `GenerateDataKey` call instead of a local generation and a wrap),
//!   then the key files; with neither, the default key, created on first use if the
//!   [`DefaultKey`] policy allows it. The default key is never added beside a named key:
//!   an object would silently be wrapped for a key the caller did not ask for.
//! - **Decryption** ([`Keyring::for_decryption`]): the key files (or, when none is named,
//!   the default key if it exists), then the trusted KMS keys, then KMS discovery. Trying
//!   the default key beside a KMS key costs nothing and opens what it wrapped.
//!
//! The library never prints: what the user must be told (a key file others can read, a
//! default key just created that has to be backed up) is handed to the caller as a
//! [`KeyringEvent`], at the moment it happens, so an event before a failure (a readable
//! key file, then a missing one) still reaches the user.
//!
//! KMS keys are named with the `kms` feature; the core builds the same keyrings of local
//! keys without it.
//!
//! ```
//! use sealstream::keyring::{DefaultKey, Keyring, KeyringEvent, KeyringSpec};
//!
//! let dir = tempfile::tempdir()?;
//! let spec = KeyringSpec::new()
//!     .default_key(DefaultKey::CreateIfMissing)
//!     .default_key_path(dir.path().join("local.key"));
//!
//! // Nothing named: the default key is created, and the caller is told to back it up.
//! let mut events = Vec::new();
//! let ring = Keyring::for_encryption(&spec, &mut |e| events.push(e))?;
//! assert!(matches!(events[..], [KeyringEvent::DefaultKeyCreated { .. }]));
//! let mut sealed = Vec::new();
//! sealstream::encrypt(&b"hi"[..], &mut sealed, &ring.providers(), &Default::default())?;
//!
//! // Decryption uses the default key now that it exists.
//! let ring = Keyring::for_decryption(&spec, &mut |e| println!("{e}"))?;
//! let mut opened = Vec::new();
//! sealstream::decrypt(&sealed[..], &mut opened, &ring.providers(), &Default::default())?;
//! assert_eq!(opened, b"hi");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::keys::KeyProvider;
use crate::keys::local::{self, LocalKey};

#[cfg(feature = "kms")]
use std::sync::Arc;

#[cfg(feature = "kms")]
use crate::kms::KmsSettings;
#[cfg(feature = "kms")]
use crate::kms::blocking;

/// What to say when no key is held: in library terms (the binary names its flags instead).
#[cfg(feature = "kms")]
const NO_KEY_ADVICE: &str = "name a key file or a KMS key";
/// What to say when no key is held (the core knows only key files).
#[cfg(not(feature = "kms"))]
const NO_KEY_ADVICE: &str = "name a key file";

/// Whether the embedded default key stands in when no key is named.
///
/// A library user opts in: [`DefaultKey::Never`] is the default, so a service never reads
/// or creates a key in a home directory unless it says so.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DefaultKey {
    /// Never use the default key: with nothing named, building the keyring fails.
    #[default]
    Never,
    /// Use the default key if its file exists; never create it.
    IfPresent,
    /// Use the default key, creating it on first use (encryption only: a key created now
    /// opens nothing, so for decryption this is [`DefaultKey::IfPresent`]).
    CreateIfMissing,
}

/// Something the caller must tell the user while a keyring is built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyringEvent {
    /// A key file was loaded but others can read it (see
    /// [`LocalKey::load_with_warnings`]); shown even when the caller is quiet, as ssh does.
    KeyFileWarning {
        /// The key file.
        path: PathBuf,
        /// The warning, naming the file and the fix.
        message: String,
    },
    /// The default key did not exist and was created: without a backup, everything
    /// encrypted only for it is lost with it.
    DefaultKeyCreated {
        /// The new key's id (`lk1-…`).
        key_id: String,
        /// Where it was written.
        path: PathBuf,
    },
}

/// The sentence for the user.
impl std::fmt::Display for KeyringEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyringEvent::KeyFileWarning { message, .. } => f.write_str(message),
            KeyringEvent::DefaultKeyCreated { key_id, path } => write!(
                f,
                "created the default local key {key_id} at '{}'. Back it up: without it your files cannot be decrypted.",
                path.display()
            ),
        }
    }
}

/// The keys an operation may use, as named by the caller: key files, KMS keys, KMS
/// discovery and the [`DefaultKey`] policy. Building a [`Keyring`] from it applies the
/// order and the default-key rules of this module.
#[derive(Debug, Clone, Default)]
pub struct KeyringSpec {
    local_keys: Vec<PathBuf>,
    default_key: DefaultKey,
    /// `None`: `keys::local::default_key_path()` (the environment's), asked only when the
    /// default key is considered.
    default_key_path: Option<PathBuf>,
    #[cfg(feature = "kms")]
    kms_keys: Vec<String>,
    #[cfg(feature = "kms")]
    kms_discovery: Option<Vec<String>>,
    #[cfg(feature = "kms")]
    kms_max_decrypts: Option<usize>,
    #[cfg(feature = "kms")]
    kms_settings: KmsSettings,
}

impl KeyringSpec {
    /// An empty spec: no key named, [`DefaultKey::Never`].
    pub fn new() -> KeyringSpec {
        KeyringSpec::default()
    }

    /// Key files, in the order given (appended to any named before).
    pub fn local_keys<P: Into<PathBuf>>(mut self, paths: impl IntoIterator<Item = P>) -> Self {
        self.local_keys.extend(paths.into_iter().map(Into::into));
        self
    }

    /// Whether the default key stands in when nothing is named (see [`DefaultKey`]).
    pub fn default_key(mut self, policy: DefaultKey) -> Self {
        self.default_key = policy;
        self
    }

    /// Keeps the default key at `path` instead of the environment's location
    /// (`keys::local::default_key_path`): a service's own key, or a test's temporary
    /// directory.
    pub fn default_key_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.default_key_path = Some(path.into());
        self
    }

    /// KMS keys (id, alias or ARN), in the order given: for encryption they wrap the data
    /// key (the first generates it); for decryption they are trusted, and only stanzas of
    /// exactly these keys are sent to KMS.
    #[cfg(feature = "kms")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
    pub fn kms_keys<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.kms_keys.extend(names.into_iter().map(Into::into));
        self
    }

    /// Decryption only: also try any KMS stanza whose key is in one of `accounts` (at least
    /// one is required; building the keyring fails otherwise).
    #[cfg(feature = "kms")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
    pub fn kms_discovery(mut self, accounts: Vec<String>) -> Self {
        self.kms_discovery = Some(accounts);
        self
    }

    /// Most stanzas sent to KMS per object when decrypting (default
    /// [`crate::kms::DEFAULT_MAX_DECRYPTS_PER_OBJECT`]): bounds what a hostile file with
    /// many stanzas costs.
    #[cfg(feature = "kms")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
    pub fn kms_max_decrypts(mut self, n: usize) -> Self {
        self.kms_max_decrypts = Some(n);
        self
    }

    /// How to reach KMS (region, profile, retries, timeout, endpoint). KMS is connected
    /// with these only if a KMS key or discovery is named.
    #[cfg(feature = "kms")]
    #[cfg_attr(docsrs, doc(cfg(feature = "kms")))]
    pub fn kms_settings(mut self, settings: KmsSettings) -> Self {
        self.kms_settings = settings;
        self
    }

    /// Where the default key is, for loading it.
    fn default_path(&self) -> Result<PathBuf> {
        match &self.default_key_path {
            Some(p) => Ok(p.clone()),
            None => local::default_key_path(),
        }
    }

    /// The encryption order, KMS not yet connected: KMS keys, key files, else the default
    /// key (per the policy). Loads and creates key files only.
    fn encryption_sources(&self, on_event: &mut dyn FnMut(KeyringEvent)) -> Result<Vec<Source>> {
        let mut out = Vec::new();
        #[cfg(feature = "kms")]
        out.extend(self.kms_keys.iter().cloned().map(Source::KmsWrapping));
        for p in &self.local_keys {
            out.push(Source::Local(load_key_file(p, on_event)?));
        }
        if out.is_empty() {
            if self.default_key == DefaultKey::Never {
                return Err(no_key(None));
            }
            let path = self.default_path()?;
            let key = if path.exists() {
                load_key_file(&path, on_event)?
            } else if self.default_key == DefaultKey::CreateIfMissing {
                let (key, created) = local::load_or_create(&path)?;
                if created {
                    on_event(KeyringEvent::DefaultKeyCreated {
                        key_id: key.id().to_string(),
                        path,
                    });
                }
                key
            } else {
                return Err(no_key(Some(Ok(path))));
            };
            out.push(Source::Local(key));
        }
        Ok(out)
    }

    /// The decryption order, KMS not yet connected: key files (else the default key if it
    /// exists and the policy allows it), trusted KMS keys, discovery.
    fn decryption_sources(&self, on_event: &mut dyn FnMut(KeyringEvent)) -> Result<Vec<Source>> {
        let mut out = Vec::new();
        for p in &self.local_keys {
            out.push(Source::Local(load_key_file(p, on_event)?));
        }
        // Asked only when the default key is considered; a failure to locate it is not
        // fatal here (other keys may be named), only part of the "no key" error.
        let default_path = (self.local_keys.is_empty() && self.default_key != DefaultKey::Never)
            .then(|| self.default_path());
        if let Some(Ok(p)) = &default_path
            && p.exists()
        {
            out.push(Source::Local(load_key_file(p, on_event)?));
        }
        #[cfg(feature = "kms")]
        {
            out.extend(self.kms_keys.iter().cloned().map(Source::KmsTrusted));
            if let Some(accounts) = &self.kms_discovery {
                out.push(Source::KmsDiscovery(accounts.clone()));
            }
        }
        if out.is_empty() {
            return Err(no_key(default_path));
        }
        Ok(out)
    }
}

/// One key of a keyring before KMS is connected, in keyring order.
#[derive(Debug)]
enum Source {
    Local(LocalKey),
    #[cfg(feature = "kms")]
    KmsWrapping(String),
    #[cfg(feature = "kms")]
    KmsTrusted(String),
    #[cfg(feature = "kms")]
    KmsDiscovery(Vec<String>),
}

/// The error for a keyring with no key: naming the default key when it was looked for.
fn no_key(default_path: Option<Result<PathBuf>>) -> Error {
    match default_path {
        None => Error::InvalidArgument(format!("no key given; {NO_KEY_ADVICE}")),
        Some(p) => {
            let shown = p.map_or_else(|_| "(unknown)".into(), |p| p.display().to_string());
            Error::io(
                format!("loading the default key '{shown}'"),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("it does not exist; {NO_KEY_ADVICE}"),
                ),
            )
        }
    }
}

/// Loads one key file, handing its permission warnings to `on_event`: how every key file
/// named by a user is read (a file others can write is refused, see
/// [`LocalKey::load_with_warnings`]).
pub fn load_key_file(path: &Path, on_event: &mut dyn FnMut(KeyringEvent)) -> Result<LocalKey> {
    let (key, warnings) = LocalKey::load_with_warnings(path)?;
    for message in warnings {
        on_event(KeyringEvent::KeyFileWarning {
            path: path.to_path_buf(),
            message,
        });
    }
    Ok(key)
}

/// The keys one operation holds, in the order they are used: for encryption the first
/// generates the data key and every one wraps it; for decryption they are tried in order.
///
/// Synchronous: its KMS keys are the blocking layer (`kms::blocking`, which drives its own
/// runtime), so a keyring that names KMS keys must be built and used outside an async
/// runtime; async code holds `kms::KmsKey`s itself.
pub struct Keyring {
    providers: Vec<Box<dyn KeyProvider>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.providers
                    .iter()
                    .map(|p| format!("{}:{}", p.provider_id(), p.key_id())),
            )
            .finish()
    }
}

impl Keyring {
    /// The keys to encrypt for, in the encryption order (module docs). KMS is connected
    /// first, and only if a KMS key is named; `on_event` gets what the user must be told.
    pub fn for_encryption(
        spec: &KeyringSpec,
        on_event: &mut dyn FnMut(KeyringEvent),
    ) -> Result<Keyring> {
        let mut kms = LazyKms::new(spec);
        #[cfg(feature = "kms")]
        if !spec.kms_keys.is_empty() {
            kms.get()?;
        }
        let sources = spec.encryption_sources(on_event)?;
        Ok(Keyring {
            providers: providers(sources, &mut kms)?,
        })
    }

    /// The keys to decrypt with, in the decryption order (module docs). KMS is connected
    /// after the key files are loaded, and only if a KMS key or discovery is named; no
    /// KMS call is made here (an alias is resolved only when a stanza could be its key).
    pub fn for_decryption(
        spec: &KeyringSpec,
        on_event: &mut dyn FnMut(KeyringEvent),
    ) -> Result<Keyring> {
        let sources = spec.decryption_sources(on_event)?;
        Ok(Keyring {
            providers: providers(sources, &mut LazyKms::new(spec))?,
        })
    }

    /// The providers as the envelope functions take them (`&[&dyn KeyProvider]`).
    pub fn providers(&self) -> Vec<&dyn KeyProvider> {
        self.providers.iter().map(|p| p.as_ref()).collect()
    }

    /// The providers, owned (for a plan that keeps them, such as `rewrap::Rewrap`).
    pub fn into_providers(self) -> Vec<Box<dyn KeyProvider>> {
        self.providers
    }
}

/// The providers for `sources`, in order; KMS connected on first need.
fn providers(sources: Vec<Source>, kms: &mut LazyKms<'_>) -> Result<Vec<Box<dyn KeyProvider>>> {
    #[cfg(not(feature = "kms"))]
    let _ = kms;
    let mut out: Vec<Box<dyn KeyProvider>> = Vec::with_capacity(sources.len());
    for s in sources {
        match s {
            Source::Local(k) => out.push(Box::new(k)),
            #[cfg(feature = "kms")]
            Source::KmsWrapping(name) => {
                out.push(Box::new(blocking::KmsKey::for_wrapping(kms.get()?, &name)));
            }
            #[cfg(feature = "kms")]
            Source::KmsTrusted(name) => {
                let key = blocking::KmsKey::trusted(kms.get()?, &name)?;
                out.push(Box::new(key.with_max_decrypts(kms.max_decrypts)));
            }
            #[cfg(feature = "kms")]
            Source::KmsDiscovery(accounts) => {
                let d = blocking::KmsDiscovery::new(kms.get()?, accounts)?;
                out.push(Box::new(d.with_max_decrypts(kms.max_decrypts)));
            }
        }
    }
    Ok(out)
}

/// A blocking KMS connection made on first use, with the spec's settings.
#[cfg(feature = "kms")]
struct LazyKms<'s> {
    settings: &'s KmsSettings,
    max_decrypts: usize,
    kms: Option<Arc<blocking::Kms>>,
}

#[cfg(feature = "kms")]
impl<'s> LazyKms<'s> {
    fn new(spec: &'s KeyringSpec) -> LazyKms<'s> {
        LazyKms {
            settings: &spec.kms_settings,
            max_decrypts: spec
                .kms_max_decrypts
                .unwrap_or(crate::kms::DEFAULT_MAX_DECRYPTS_PER_OBJECT),
            kms: None,
        }
    }

    fn get(&mut self) -> Result<&Arc<blocking::Kms>> {
        let kms = match self.kms.take() {
            Some(k) => k,
            None => blocking::Kms::connect(self.settings.clone())?,
        };
        Ok(self.kms.insert(kms))
    }
}

/// The core has no KMS: nothing to connect.
#[cfg(not(feature = "kms"))]
struct LazyKms<'s>(std::marker::PhantomData<&'s KeyringSpec>);

#[cfg(not(feature = "kms"))]
impl<'s> LazyKms<'s> {
    fn new(_: &'s KeyringSpec) -> LazyKms<'s> {
        LazyKms(std::marker::PhantomData)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key file in `dir` (mode 0600), and its key id.
    fn key_file(dir: &Path, name: &str) -> (PathBuf, String) {
        let k = LocalKey::generate().unwrap();
        let p = dir.join(name);
        k.save_new(&p).unwrap();
        (p, k.id().to_string())
    }

    /// The sources as comparable labels: a local key by its id, KMS by role and name.
    fn labels(sources: &[Source]) -> Vec<String> {
        sources
            .iter()
            .map(|s| match s {
                Source::Local(k) => k.id().to_string(),
                #[cfg(feature = "kms")]
                Source::KmsWrapping(n) => format!("wrap:{n}"),
                #[cfg(feature = "kms")]
                Source::KmsTrusted(n) => format!("trust:{n}"),
                #[cfg(feature = "kms")]
                Source::KmsDiscovery(a) => format!("discovery:{}", a.join(",")),
            })
            .collect()
    }

    fn collect(events: &mut Vec<KeyringEvent>) -> impl FnMut(KeyringEvent) + '_ {
        |e| events.push(e)
    }

    #[test]
    fn key_files_keep_their_order_and_the_default_key_is_not_added_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, id_a) = key_file(dir.path(), "a.key");
        let (b, id_b) = key_file(dir.path(), "b.key");
        let (default, _) = key_file(dir.path(), "default.key");
        let spec = KeyringSpec::new()
            .local_keys([&b, &a])
            .default_key(DefaultKey::CreateIfMissing)
            .default_key_path(&default);
        let mut events = Vec::new();
        let enc = spec.encryption_sources(&mut collect(&mut events)).unwrap();
        assert_eq!(labels(&enc), [id_b.clone(), id_a.clone()]);
        let dec = spec.decryption_sources(&mut collect(&mut events)).unwrap();
        assert_eq!(labels(&dec), [id_b.clone(), id_a.clone()]);
        assert!(events.is_empty(), "{events:?}");
        // The providers of a keyring are the same keys in the same order.
        let ring = Keyring::for_encryption(&spec, &mut |_| {}).unwrap();
        let ids: Vec<&str> = ring.providers().iter().map(|p| p.key_id()).collect();
        assert_eq!(ids, [id_b.as_str(), id_a.as_str()]);
    }

    #[test]
    fn encryption_creates_the_default_key_only_when_the_policy_allows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("home").join("local.key");
        let spec = KeyringSpec::new().default_key_path(&path);
        let mut events = Vec::new();

        // Never: no key, nothing created.
        let e = spec
            .encryption_sources(&mut collect(&mut events))
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        assert!(e.to_string().contains(NO_KEY_ADVICE), "{e}");
        // IfPresent: the default key is named in the error, and still not created.
        let spec = spec.default_key(DefaultKey::IfPresent);
        let e = spec
            .encryption_sources(&mut collect(&mut events))
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("does not exist"), "{msg}");
        assert!(!path.exists());
        assert!(events.is_empty(), "{events:?}");

        // CreateIfMissing: created once, and the caller is told where.
        let spec = spec.default_key(DefaultKey::CreateIfMissing);
        let first = spec.encryption_sources(&mut collect(&mut events)).unwrap();
        assert!(path.exists());
        let [Source::Local(k)] = &first[..] else {
            panic!("{first:?}")
        };
        assert_eq!(
            events,
            [KeyringEvent::DefaultKeyCreated {
                key_id: k.id().to_string(),
                path: path.clone(),
            }]
        );
        assert!(
            events[0].to_string().contains("Back it up"),
            "{}",
            events[0]
        );
        // The second time it is loaded, not replaced, and nothing is reported.
        events.clear();
        let again = spec.encryption_sources(&mut collect(&mut events)).unwrap();
        assert_eq!(labels(&again), labels(&first));
        assert!(events.is_empty(), "{events:?}");
        // IfPresent now finds it.
        let spec = spec.default_key(DefaultKey::IfPresent);
        let present = spec.encryption_sources(&mut collect(&mut events)).unwrap();
        assert_eq!(labels(&present), labels(&first));
    }

    #[test]
    fn decryption_uses_the_default_key_only_if_present_and_never_creates_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("local.key");
        let spec = KeyringSpec::new()
            .default_key(DefaultKey::CreateIfMissing)
            .default_key_path(&path);
        let e = spec.decryption_sources(&mut |_| {}).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("loading the default key '{}'", path.display())),
            "{msg}"
        );
        assert!(msg.contains(NO_KEY_ADVICE), "{msg}");
        assert!(!path.exists(), "a key created to decrypt opens nothing");

        let (_, default_id) = key_file(dir.path(), "local.key");
        let found = spec.decryption_sources(&mut |_| {}).unwrap();
        assert_eq!(labels(&found), [default_id]);
        // Never: the key on disk is not touched.
        let never = spec.clone().default_key(DefaultKey::Never);
        let e = never.decryption_sources(&mut |_| {}).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
        // A named key file replaces the default key.
        let (named, named_id) = key_file(dir.path(), "named.key");
        let with = spec.local_keys([named]);
        let found = with.decryption_sources(&mut |_| {}).unwrap();
        assert_eq!(labels(&found), [named_id]);
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_key_file_is_reported_even_when_a_later_one_fails() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let (open, _) = key_file(dir.path(), "open.key");
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
        let missing = dir.path().join("missing.key");
        let spec = KeyringSpec::new().local_keys([&open, &missing]);
        for decrypting in [false, true] {
            let mut events = Vec::new();
            let r = if decrypting {
                Keyring::for_decryption(&spec, &mut collect(&mut events))
            } else {
                Keyring::for_encryption(&spec, &mut collect(&mut events))
            };
            assert!(r.is_err());
            let [KeyringEvent::KeyFileWarning { path, message }] = &events[..] else {
                panic!("{events:?}")
            };
            assert_eq!(path, &open);
            assert!(message.contains("readable by everyone"), "{message}");
        }
    }

    #[cfg(feature = "kms")]
    #[test]
    fn encryption_puts_kms_keys_first_and_skips_the_default_key() {
        let dir = tempfile::tempdir().unwrap();
        let (a, id_a) = key_file(dir.path(), "a.key");
        let default = dir.path().join("local.key");
        let spec = KeyringSpec::new()
            .local_keys([&a])
            .kms_keys(["alias/one", "alias/two"])
            .kms_discovery(vec!["111122223333".into()])
            .default_key(DefaultKey::CreateIfMissing)
            .default_key_path(&default);
        let enc = spec.encryption_sources(&mut |_| {}).unwrap();
        assert_eq!(labels(&enc), ["wrap:alias/one", "wrap:alias/two", &id_a]);
        // A KMS key alone is enough: no default key is created beside it.
        let kms_only = KeyringSpec::new()
            .kms_keys(["alias/one"])
            .default_key(DefaultKey::CreateIfMissing)
            .default_key_path(&default);
        let enc = kms_only.encryption_sources(&mut |_| {}).unwrap();
        assert_eq!(labels(&enc), ["wrap:alias/one"]);
        assert!(!default.exists());
    }

    #[cfg(feature = "kms")]
    #[test]
    fn decryption_tries_key_files_then_trusted_kms_keys_then_discovery() {
        let dir = tempfile::tempdir().unwrap();
        let (a, id_a) = key_file(dir.path(), "a.key");
        let (_, default_id) = key_file(dir.path(), "local.key");
        let kms = KeyringSpec::new()
            .kms_keys(["alias/one", "alias/two"])
            .kms_discovery(vec!["111122223333".into(), "444455556666".into()])
            .default_key(DefaultKey::IfPresent)
            .default_key_path(dir.path().join("local.key"));
        let dec = kms
            .clone()
            .local_keys([&a])
            .decryption_sources(&mut |_| {})
            .unwrap();
        assert_eq!(
            labels(&dec),
            [
                id_a.as_str(),
                "trust:alias/one",
                "trust:alias/two",
                "discovery:111122223333,444455556666"
            ]
        );
        // Without -k the default key (present) leads, beside the KMS keys.
        let dec = kms.decryption_sources(&mut |_| {}).unwrap();
        assert_eq!(labels(&dec)[0], default_id);
        assert_eq!(dec.len(), 4);
    }
}
