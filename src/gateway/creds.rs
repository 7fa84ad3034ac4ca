//! The client credentials file: which access keys may sign requests to the gateway.
//!
//! The format is the AWS shared-credentials INI file that every S3 client already reads
//! (`~/.aws/credentials`), so one file can configure both sides:
//!
//! ```ini
//! # comments start with '#' or ';'
//! [backup-team]
//! aws_access_key_id = AKIAGATEWAYBACKUP01
//! aws_secret_access_key = 5ZEh3sQ…
//! ```
//!
//! Each section is one client; the section name is only a label (it appears in the
//! gateway's logs). Other keys in a section (`region`, `aws_session_token`…) are ignored;
//! session tokens are not supported (a client credential is a long-lived key pair).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::watch::{FileStamp, FileWatch};
use crate::{Error, Result};

/// The access keys the gateway accepts, each with its secret and a label. Kept apart from
/// the gateway's own upstream credentials (the AWS chain): a client of the gateway never
/// holds a key that works against the bucket directly.
#[derive(Clone, Default)]
pub struct ClientCredentials {
    /// access key id → (label, secret)
    keys: BTreeMap<String, (String, String)>,
    /// The file [`ClientCredentials::load`] read and its stamp from just before reading:
    /// the gateway reads it again on a reload, and its periodic check compares against
    /// that stamp (a change made while the gateway starts is not missed).
    file: Option<(PathBuf, FileStamp)>,
}

impl fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secrets.
        f.debug_struct("ClientCredentials")
            .field("access_keys", &self.keys.keys().collect::<Vec<_>>())
            .field("file", &self.file.as_ref().map(|(p, _)| p))
            .finish()
    }
}

impl ClientCredentials {
    /// Reads a credentials file (see the module documentation for the format). The set
    /// remembers the file, so that a gateway built with it can read it again
    /// ([`super::Gateway::reload_client_credentials`]). An error names the file and, for
    /// a bad line, its number; never a secret.
    pub fn load(path: &Path) -> Result<ClientCredentials> {
        let stamp = super::watch::file_stamp(path);
        let name = || path.display();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::io(
                format!("reading the client credentials file '{}'", name()),
                e,
            )
        })?;
        let mut creds = ClientCredentials::parse(&text).map_err(|reason| {
            Error::InvalidArgument(format!("client credentials file '{}': {reason}", name()))
        })?;
        creds.file = Some((path.to_path_buf(), stamp));
        Ok(creds)
    }

    /// Parses the text of a credentials file; the error says which line is wrong (and
    /// never quotes a secret).
    pub fn parse(text: &str) -> std::result::Result<ClientCredentials, String> {
        /// One `[label]` section as read so far: its header's line, and the access key
        /// id with its line.
        struct Section {
            label: String,
            line: usize,
            id: Option<(String, usize)>,
            secret: Option<String>,
        }
        let mut out = ClientCredentials::default();
        let finish = |s: Option<Section>,
                      out: &mut ClientCredentials|
         -> std::result::Result<(), String> {
            let Some(s) = s else {
                return Ok(());
            };
            match (s.id, s.secret) {
                (Some((id, line)), Some(secret)) => out
                    .add(&s.label, &id, &secret)
                    .map_err(|e| format!("line {line}: {e}")),
                _ => Err(format!(
                    "section [{}] (line {}) needs both aws_access_key_id and aws_secret_access_key",
                    s.label, s.line
                )),
            }
        };
        let mut section: Option<Section> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let lineno = n + 1;
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let label = rest
                    .strip_suffix(']')
                    .ok_or_else(|| format!("line {lineno}: a section header must end with ']'"))?
                    .trim()
                    .to_string();
                finish(section.take(), &mut out)?;
                section = Some(Section {
                    label,
                    line: lineno,
                    id: None,
                    secret: None,
                });
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| format!("line {lineno}: expected 'name = value' or '[section]'"))?;
            let (k, v) = (k.trim(), v.trim());
            let Some(s) = section.as_mut() else {
                return Err(format!(
                    "line {lineno}: '{k}' is outside any [section]; put each client's keys under a [name] line"
                ));
            };
            match k {
                "aws_access_key_id" => s.id = Some((v.to_string(), lineno)),
                "aws_secret_access_key" => s.secret = Some(v.to_string()),
                _ => {}
            }
        }
        finish(section.take(), &mut out)?;
        if out.keys.is_empty() {
            return Err(
                "no credentials in the file: add a [name] section with aws_access_key_id and aws_secret_access_key"
                    .into(),
            );
        }
        Ok(out)
    }

    /// Adds one client key pair (for programs that build the set themselves).
    pub fn add(
        &mut self,
        label: &str,
        access_key_id: &str,
        secret: &str,
    ) -> std::result::Result<(), String> {
        if access_key_id.is_empty() || secret.is_empty() {
            return Err(format!("[{label}]: empty access key id or secret"));
        }
        if access_key_id.chars().any(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "[{label}]: the access key id must be printable ASCII without spaces"
            ));
        }
        if let Some((first, _)) = self.keys.get(access_key_id) {
            return Err(format!(
                "[{label}]: access key id {access_key_id} appears twice (also in [{first}])"
            ));
        }
        self.keys.insert(
            access_key_id.to_string(),
            (label.to_string(), secret.to_string()),
        );
        Ok(())
    }

    /// Number of client keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no client key is configured (the gateway refuses to start so).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The file [`ClientCredentials::load`] read, if the set came from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// What changes for clients when `new` replaces `self`, by label.
    fn change_to(&self, new: &ClientCredentials) -> CredentialsChange {
        let mut c = CredentialsChange {
            clients: new.len(),
            ..CredentialsChange::default()
        };
        for (id, (label, secret)) in &new.keys {
            match self.keys.get(id) {
                None => c.added.push(label.clone()),
                Some(old) if old != &(label.clone(), secret.clone()) => {
                    c.changed.push(label.clone());
                }
                Some(_) => {}
            }
        }
        for (id, (label, _)) in &self.keys {
            if !new.keys.contains_key(id) {
                c.removed.push(label.clone());
            }
        }
        c
    }
}

/// What a reload of the client credentials changed, by the files' section labels (never
/// access key ids or secrets): what `sealstream serve` logs, and what a program reloading
/// the gateway can report or check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsChange {
    /// Client keys accepted from now on.
    pub clients: usize,
    /// Labels of the access keys that are new.
    pub added: Vec<String>,
    /// Labels of the access keys no longer accepted.
    pub removed: Vec<String>,
    /// Labels of the access keys kept with a new secret or label.
    pub changed: Vec<String>,
}

impl fmt::Display for CredentialsChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clients = if self.clients == 1 {
            "client"
        } else {
            "clients"
        };
        write!(f, "{} {clients} ", self.clients)?;
        if self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() {
            return f.write_str("(unchanged)");
        }
        write!(
            f,
            "(added: [{}], removed: [{}], changed: [{}])",
            self.added.join(", "),
            self.removed.join(", "),
            self.changed.join(", ")
        )
    }
}

/// The client credentials new requests are checked against, replaceable while serving:
/// a reload swaps the whole set at once (an `Arc` under a lock held only for the swap
/// and for each lookup), so a request is checked against one set, old or new, never a
/// mix; a request whose signature was checked keeps going when its key is removed. A
/// reload that fails leaves the set in place.
pub(super) struct CredStore {
    current: RwLock<Arc<ClientCredentials>>,
    /// The file the set was loaded from and its stamp, if any.
    watch: Option<(PathBuf, FileWatch)>,
}

impl fmt::Debug for CredStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredStore")
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

impl CredStore {
    /// Serves `creds`; their file (if [`ClientCredentials::load`] read them) is what a
    /// reload reads.
    pub(super) fn new(creds: ClientCredentials) -> CredStore {
        let watch = creds
            .file
            .clone()
            .map(|(p, stamp)| (p.clone(), FileWatch::with_stamps(vec![p], vec![stamp])));
        CredStore {
            current: RwLock::new(Arc::new(creds)),
            watch,
        }
    }

    /// The set in force.
    pub(super) fn current(&self) -> Arc<ClientCredentials> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The secret of `access_key` in the set in force.
    fn secret(&self, access_key: &str) -> Option<s3s::auth::SecretKey> {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        current
            .keys
            .get(access_key)
            .map(|(_, secret)| secret.as_str().into())
    }

    /// Makes `new` the set in force (refused if empty: no client could sign), logging
    /// what changed.
    pub(super) fn set(&self, mut new: ClientCredentials) -> Result<CredentialsChange> {
        if new.is_empty() {
            return Err(Error::InvalidArgument(
                "the gateway needs at least one client credential (access key id and secret)"
                    .into(),
            ));
        }
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        // The file stays the one read at start (or the new one read from it).
        new.file = current.file.clone();
        let change = current.change_to(&new);
        *current = Arc::new(new);
        drop(current);
        tracing::info!(
            clients = change.clients,
            "client credentials reloaded: {change}"
        );
        Ok(change)
    }

    /// Reads the file again and, if it parses, makes it the set in force. On an error
    /// (missing, unreadable, empty, a bad line, a duplicate access key id) nothing
    /// changes and the error names the file (and the line). `Ok(None)` if the set did not
    /// come from a file.
    pub(super) fn reload(&self) -> Result<Option<CredentialsChange>> {
        let Some((path, watch)) = &self.watch else {
            return Ok(None);
        };
        watch.reload(|| self.read_and_set(path)).map(Some)
    }

    /// [`CredStore::reload`] if the file changed (time, length or inode) since the last
    /// load or attempt; `Ok(None)` if not. A bad new version is reported once.
    pub(super) fn reload_if_changed(&self) -> Result<Option<CredentialsChange>> {
        let Some((path, watch)) = &self.watch else {
            return Ok(None);
        };
        watch
            .reload_if_changed(|| {
                tracing::info!(
                    file = %path.display(),
                    "client credentials file changed: reloading"
                );
                self.read_and_set(path)
            })
            .transpose()
    }

    fn read_and_set(&self, path: &Path) -> Result<CredentialsChange> {
        self.set(ClientCredentials::load(path)?)
    }
}

/// Looks up a client's secret for s3s's signature checks in the set in force; an unknown
/// access key id gets S3's own answer (403 InvalidAccessKeyId), as a client would get
/// from S3.
pub(crate) struct Auth {
    pub(super) store: Arc<CredStore>,
}

#[async_trait::async_trait]
impl s3s::auth::S3Auth for Auth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<s3s::auth::SecretKey> {
        self.store.secret(access_key).ok_or_else(|| {
            super::errors::error(
                "InvalidAccessKeyId",
                http::StatusCode::FORBIDDEN,
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ini() {
        let c = ClientCredentials::parse(
            "# c\n[a]\naws_access_key_id = AK1\naws_secret_access_key=S1\nregion=x\n\n[b]\naws_access_key_id=AK2\naws_secret_access_key = S2\n",
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        assert!(format!("{c:?}").contains("AK1") && !format!("{c:?}").contains("S1"));
    }

    #[test]
    fn refuses_bad_files() {
        for (bad, says) in [
            ("", "no credentials in the file"),
            (
                "aws_access_key_id = x\n",
                "line 1: 'aws_access_key_id' is outside",
            ),
            (
                "[a]\naws_access_key_id = AK\n",
                "section [a] (line 1) needs both",
            ),
            (
                "[a\naws_access_key_id = AK\naws_secret_access_key = S\n",
                "line 1: a section header must end",
            ),
            ("[a]\nnonsense\n", "line 2: expected 'name = value'"),
            (
                "[a]\naws_access_key_id=AK\naws_secret_access_key=S\n[b]\naws_access_key_id=AK\naws_secret_access_key=T\n",
                "line 5: [b]: access key id AK appears twice (also in [a])",
            ),
            (
                "[a]\naws_secret_access_key=SECRET\naws_access_key_id=\n",
                "line 3: [a]: empty access key id or secret",
            ),
        ] {
            let e = ClientCredentials::parse(bad).err().unwrap_or_default();
            assert!(e.contains(says), "{bad:?}: {e}");
            assert!(
                !e.contains("SECRET") && !e.contains("=T") && !e.contains("= S"),
                "{e}"
            );
        }
    }

    fn write(path: &Path, text: &str) {
        // Renamed into place, as an operator (or the kubelet) replaces the file.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    const A: &str = "[a]\naws_access_key_id = AKA\naws_secret_access_key = sekrit-a\n";
    const B: &str = "[b]\naws_access_key_id = AKB\naws_secret_access_key = sekrit-b\n";

    fn secret(store: &CredStore, id: &str) -> Option<String> {
        store.secret(id).map(|s| s.expose().to_string())
    }

    /// The store swaps whole sets: a set taken before a reload (a request in flight) is
    /// unchanged by it, new lookups see the new set, a bad file changes nothing.
    #[test]
    fn reload_swaps_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clients.ini");
        write(&file, A);
        let store = CredStore::new(ClientCredentials::load(&file).unwrap());
        assert_eq!(secret(&store, "AKA").as_deref(), Some("sekrit-a"));
        assert_eq!(secret(&store, "AKB"), None);
        assert_eq!(store.reload_if_changed().unwrap(), None);
        let before = store.current();

        write(&file, &format!("{A}{B}"));
        let change = store.reload().unwrap().unwrap();
        assert_eq!(change.added, ["b"]);
        assert!(change.removed.is_empty() && change.changed.is_empty());
        assert_eq!(
            change.to_string(),
            "2 clients (added: [b], removed: [], changed: [])"
        );
        assert_eq!(secret(&store, "AKB").as_deref(), Some("sekrit-b"));
        assert_eq!(before.len(), 1, "a set in use was changed");
        // The reload stamped the file: nothing more to do for the periodic check.
        assert_eq!(store.reload_if_changed().unwrap(), None);

        // The periodic check: A removed, B's secret rotated.
        write(&file, &B.replace("sekrit-b", "sekrit-b2"));
        let change = store.reload_if_changed().unwrap().unwrap();
        assert_eq!(
            (
                change.clients,
                change.added.len(),
                change.removed,
                change.changed
            ),
            (1, 0, vec!["a".to_string()], vec!["b".to_string()])
        );
        assert_eq!(secret(&store, "AKA"), None);
        assert_eq!(secret(&store, "AKB").as_deref(), Some("sekrit-b2"));

        // Bad versions: each refused naming the file (and line), none a secret; B stays.
        let name = file.display().to_string();
        for (bad, says) in [
            (
                format!("{B}{B}"),
                "line 5: [b]: access key id AKB appears twice",
            ),
            (
                "[c]\naws_access_key_id = AKC\nSECRETLINE\n".to_string(),
                "line 3: expected",
            ),
            (String::new(), "no credentials in the file"),
        ] {
            write(&file, &bad);
            let e = store.reload_if_changed().unwrap_err().to_string();
            assert!(e.contains(&name) && e.contains(says), "{e}");
            // (Not "SB": a temporary directory's random name may hold it.)
            assert!(!e.contains("sekrit") && !e.contains("SECRET"), "{e}");
            assert_eq!(secret(&store, "AKB").as_deref(), Some("sekrit-b2"));
            // Reported once: unchanged since the attempt.
            assert_eq!(store.reload_if_changed().unwrap(), None);
        }
        std::fs::remove_file(&file).unwrap();
        let e = store.reload_if_changed().unwrap_err().to_string();
        assert!(e.contains(&name), "{e}");
        let e = store.reload().unwrap_err().to_string();
        assert!(e.contains(&name), "{e}");
        assert_eq!(secret(&store, "AKB").as_deref(), Some("sekrit-b2"));

        // Fixed: the same keys again is a reload that changes nothing.
        write(&file, &B.replace("sekrit-b", "sekrit-b2"));
        let change = store.reload().unwrap().unwrap();
        assert_eq!(change.to_string(), "1 client (unchanged)");
        // An empty set is never served.
        assert!(store.set(ClientCredentials::default()).is_err());
        assert_eq!(store.current().len(), 1);
    }

    /// A set built in code has no file to reload; it can be replaced.
    #[test]
    fn sets_without_a_file() {
        let mut c = ClientCredentials::default();
        c.add("x", "AKX", "SX").unwrap();
        let store = CredStore::new(c);
        assert_eq!(store.reload().unwrap(), None);
        assert_eq!(store.reload_if_changed().unwrap(), None);
        let change = store.set(ClientCredentials::parse(A).unwrap()).unwrap();
        assert_eq!(
            (change.added, change.removed),
            (vec!["a".into()], vec!["x".into()])
        );
        assert_eq!(secret(&store, "AKX"), None);
    }
}
