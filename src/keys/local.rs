//! Local key-encryption keys (KEKs): a 256-bit secret in a small, versioned text file.
//!
//! File format (docs/FORMAT.md, "Local key file"): comment lines starting with `#`, and one
//! line `sealstream-local-key-v1 <key-id> <base64 key>`. The key id is a fingerprint of the
//! key (`lk1-` + 32 hex digits), checked on load so a corrupted file is caught.
//!
//! Wrapping uses XChaCha20-Poly1305 with a random 192-bit nonce (safe for any number of
//! wraps under one KEK) and binds the key id and the encryption context as associated data.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::format::{Context, Stanza};
use crate::keys::{DataKey, KeyProvider};

/// Provider id of local-key stanzas.
pub const PROVIDER_ID: &str = "local";
/// First token of the key line.
pub const KEY_LINE_TAG: &str = "sealstream-local-key-v1";
/// Label hashed with the key to form its id.
pub const KEY_ID_LABEL: &[u8] = b"sealstream v1 local key id";
/// Label that starts the associated data of a local wrap.
pub const WRAP_AAD_LABEL: &[u8] = b"sealstream v1 local wrap";
/// Wrapped-key length: 24-byte nonce, 32-byte encrypted DEK, 16-byte tag.
pub const WRAPPED_LEN: usize = 24 + 32 + 16;
/// Largest key file we will read (it is ~300 bytes; anything bigger is not a key file).
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// A local key-encryption key. Zeroized on drop; `Debug` shows only the id.
pub struct LocalKey {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

impl std::fmt::Debug for LocalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The key id of a key: `lk1-` + hex of the first 16 bytes of SHA-256(label || key).
pub fn key_id_for(key: &[u8; 32]) -> String {
    let mut h = Sha256::new();
    h.update(KEY_ID_LABEL);
    h.update(key);
    let d = h.finalize();
    let mut id = String::from("lk1-");
    for b in &d[..16] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

impl LocalKey {
    /// A new random key.
    pub fn generate() -> Result<LocalKey> {
        let dek = DataKey::generate()?;
        Ok(LocalKey::from_bytes(*dek.expose()))
    }

    /// A key from raw bytes (tests, vectors).
    pub fn from_bytes(bytes: [u8; 32]) -> LocalKey {
        let key = Zeroizing::new(bytes);
        let id = key_id_for(&key);
        LocalKey { key, id }
    }

    /// Parses the text form; `origin` names the file in errors.
    ///
    /// Follows docs/FORMAT.md §10.2: an optional UTF-8 byte-order mark, lines split on LF,
    /// "whitespace" meaning ASCII whitespace only. Errors never quote the file's content (a
    /// malformed key line may still hold the key).
    pub fn parse(text: &str, origin: &str) -> Result<LocalKey> {
        let bad = |reason: &str| Error::KeyFile {
            path: origin.to_string(),
            reason: reason.to_string(),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut found: Option<LocalKey> = None;
        for line in text.split('\n') {
            let line = line.trim_ascii();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if found.is_some() {
                return Err(bad("more than one key line"));
            }
            let mut parts = line.split_ascii_whitespace();
            let (tag, id, b64) = (parts.next(), parts.next(), parts.next());
            if parts.next().is_some() {
                return Err(bad(
                    "the key line has more than three fields (tag, key id, base64 key)",
                ));
            }
            match tag {
                Some(KEY_LINE_TAG) => {}
                Some(t) if is_other_version_tag(t) => {
                    return Err(bad(
                        "the key line is for another key-file version; upgrade sealstream",
                    ));
                }
                Some(t) if t.starts_with("sealstream-local-key-") => {
                    return Err(bad(&format!(
                        "the key line must be '{KEY_LINE_TAG} KEY-ID BASE64-KEY', fields separated by spaces"
                    )));
                }
                _ => return Err(bad(&format!("expected a line starting '{KEY_LINE_TAG}'"))),
            }
            let (Some(id), Some(b64)) = (id, b64) else {
                return Err(bad("the key line needs a key id and a base64 key"));
            };
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|_| bad("the key is not valid base64"))?,
            );
            let bytes: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| bad("the key is not 32 bytes"))?;
            let key = LocalKey::from_bytes(bytes);
            if key.id != id {
                return Err(bad(
                    "the key id does not match the key (the file is corrupted)",
                ));
            }
            found = Some(key);
        }
        found.ok_or_else(|| bad("no key line"))
    }

    /// Reads a key file, refusing one that others can write (see [`LocalKey::load_with_warnings`]).
    ///
    /// Warnings (a key others can read) are dropped; the CLI uses `load_with_warnings`.
    pub fn load(path: &Path) -> Result<LocalKey> {
        Self::load_with_warnings(path).map(|(k, _)| k)
    }

    /// Reads a key file and returns the key with any warnings about it, for the caller to
    /// show.
    ///
    /// Like ssh with private keys: a key file that group or others can write is refused
    /// (whoever can write it can substitute their own key); one they can read is accepted
    /// with a warning. The owner is not checked (a root-owned or service-owned key is
    /// fine). The mode is taken from the opened file, so the check and the read see the
    /// same file, and at most 64 KiB + 1 bytes are read, whatever the file is (a FIFO,
    /// a device, `/proc`): a larger one is refused without reading the rest.
    pub fn load_with_warnings(path: &Path) -> Result<(LocalKey, Vec<String>)> {
        let shown = path.display().to_string();
        let io_err = |e| Error::io(format!("reading key file '{shown}'"), e);
        let bad = |reason: String| Error::KeyFile {
            path: shown.clone(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        #[cfg_attr(not(unix), allow(unused_mut))]
        let mut warnings = Vec::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o022 != 0 {
                return Err(bad(format!(
                    "it is writable by {} (mode {mode:03o}), so someone else could replace the key; run `chmod 600 {shown}` (and check the key was not changed)",
                    if mode & 0o002 != 0 {
                        "everyone"
                    } else {
                        "its group"
                    }
                )));
            }
            if mode & 0o044 != 0 {
                warnings.push(format!(
                    "key file '{shown}' is readable by {} (mode {mode:03o}); anyone who can read it can decrypt your files: run `chmod 600 {shown}`",
                    if mode & 0o004 != 0 { "everyone" } else { "its group" }
                ));
            }
        }
        if meta.is_file() && meta.len() > MAX_KEY_FILE_LEN {
            return Err(bad(format!("larger than {MAX_KEY_FILE_LEN} bytes")));
        }
        // Room for the bound plus one byte, allocated once so the buffer never moves
        // (a reallocation would leave an unwiped copy of the key behind).
        let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_LEN as usize + 1));
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut buf)
            .map_err(io_err)?;
        if buf.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(bad(format!(
                "larger than {MAX_KEY_FILE_LEN} bytes (reading stopped there)"
            )));
        }
        let text = std::str::from_utf8(&buf).map_err(|_| {
            bad("it is not UTF-8 text; a key file is the text `LocalKey::save_new` writes".into())
        })?;
        Ok((LocalKey::parse(text, &shown)?, warnings))
    }

    /// The text form (contains the secret).
    pub fn to_text(&self) -> Zeroizing<String> {
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&self.key[..]));
        Zeroizing::new(format!(
            "# sealstream local key-encryption key (format v1)\n\
             # Keep this file secret and backed up: files encrypted to it cannot be\n\
             # decrypted without it.\n\
             {KEY_LINE_TAG} {} {}\n",
            self.id, *b64
        ))
    }

    /// Writes a new key file with mode 0600; never replaces an existing file.
    pub fn save_new(&self, path: &Path) -> Result<()> {
        let shown = path.display().to_string();
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::OutputExists(shown.clone())
            } else {
                Error::io(format!("creating key file '{shown}'"), e)
            }
        })?;
        let write = f
            .write_all(self.to_text().as_bytes())
            .and_then(|_| f.sync_all());
        if let Err(e) = write {
            let _ = std::fs::remove_file(path);
            return Err(Error::io(format!("writing key file '{shown}'"), e));
        }
        Ok(())
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn aad(&self, context: &Context) -> Vec<u8> {
        let mut aad = Vec::new();
        aad.extend_from_slice(WRAP_AAD_LABEL);
        aad.extend_from_slice(&(self.id.len() as u16).to_be_bytes());
        aad.extend_from_slice(self.id.as_bytes());
        aad.extend_from_slice(&context.to_bytes());
        aad
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.key))
    }

    /// Wraps with a caller-chosen nonce (deterministic test vectors only).
    pub fn wrap_with_nonce(&self, dek: &DataKey, context: &Context, nonce: [u8; 24]) -> Stanza {
        let mut buf = Zeroizing::new(*dek.expose());
        // A 32-byte message is far below the cipher's limit: cannot fail.
        #[allow(clippy::expect_used)]
        let tag = self
            .cipher()
            .encrypt_inout_detached(&nonce.into(), &self.aad(context), (&mut buf[..]).into())
            .expect("32-byte wrap within limits");
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&buf[..]);
        wrapped.extend_from_slice(&tag);
        Stanza {
            provider: PROVIDER_ID.into(),
            key_id: self.id.clone(),
            wrapped,
        }
    }
}

/// Wrapping and unwrapping are local computation: a local key serves async callers inline.
impl crate::keys::NonBlocking for LocalKey {}

impl KeyProvider for LocalKey {
    fn provider_id(&self) -> &str {
        PROVIDER_ID
    }

    fn key_id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, dek: &DataKey, context: &Context) -> Result<Stanza> {
        let mut nonce = [0u8; 24];
        crate::keys::fill_random(&mut nonce)?;
        Ok(self.wrap_with_nonce(dek, context, nonce))
    }

    fn unwrap(&self, stanza: &Stanza, context: &Context) -> Result<DataKey> {
        let fail = |reason: &str| {
            Error::UnwrapFailed(vec![crate::error::StanzaFailure {
                provider: stanza.provider.clone(),
                key_id: stanza.key_id.clone(),
                reason: reason.into(),
            }])
        };
        if stanza.wrapped.len() != WRAPPED_LEN {
            return Err(fail("wrapped key has the wrong length"));
        }
        let (nonce, rest) = stanza.wrapped.split_at(24);
        let (ct, tag) = rest.split_at(32);
        let mut buf = Zeroizing::new([0u8; 32]);
        buf.copy_from_slice(ct);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| fail("bad nonce"))?;
        let tag: [u8; 16] = tag.try_into().map_err(|_| fail("bad tag"))?;
        self.cipher()
            .decrypt_inout_detached(
                &nonce.into(),
                &self.aad(context),
                (&mut buf[..]).into(),
                &tag.into(),
            )
            .map_err(|_| {
                fail("authentication failed (wrong key, different encryption context, or the stanza was modified)")
            })?;
        Ok(DataKey::from_bytes(*buf))
    }
}

/// `sealstream-local-key-v<digits>` other than v1: a key file of another format version.
fn is_other_version_tag(t: &str) -> bool {
    t.strip_prefix("sealstream-local-key-v")
        .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
}

/// Where the embedded default key lives: `$SEALSTREAM_HOME/local.key`, else
/// `$XDG_CONFIG_HOME/sealstream/local.key`, else `~/.config/sealstream/local.key`.
pub fn default_key_path() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("SEALSTREAM_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(home).join("local.key"));
    }
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("sealstream").join("local.key"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(h) => Ok(PathBuf::from(h)
            .join(".config")
            .join("sealstream")
            .join("local.key")),
        None => Err(Error::InvalidArgument(
            "cannot locate the default key: set SEALSTREAM_HOME or HOME, or give the key file's path".into(),
        )),
    }
}

/// Loads the default key, creating it (and its directory, mode 0700) if absent.
///
/// Returns the key and `Some(path)` when it was just created, so the caller can tell the user.
pub fn load_or_create_default() -> Result<(LocalKey, Option<PathBuf>)> {
    let path = default_key_path()?;
    let (key, created) = load_or_create(&path)?;
    Ok((key, created.then_some(path)))
}

/// Loads the key file at `path`, creating it (and its directory, mode 0700) if absent:
/// [`load_or_create_default`] for a key kept elsewhere (a service's own key location, a
/// test's temporary directory).
///
/// Returns the key and whether it was just created, so the caller can tell the user to
/// back it up. Losing a race with another process creating it loads theirs.
pub fn load_or_create(path: &Path) -> Result<(LocalKey, bool)> {
    if path.exists() {
        return Ok((LocalKey::load(path)?, false));
    }
    if let Some(dir) = path.parent() {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir)
            .map_err(|e| Error::io(format!("creating '{}'", dir.display()), e))?;
    }
    let key = LocalKey::generate()?;
    match key.save_new(path) {
        Ok(()) => Ok((key, true)),
        // Lost a race with another process creating it: use theirs.
        Err(Error::OutputExists(_)) => Ok((LocalKey::load(path)?, false)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_wrap() {
        let k = LocalKey::from_bytes([5; 32]);
        let k2 = LocalKey::parse(&k.to_text(), "t").unwrap();
        assert_eq!(k.id(), k2.id());
        let ctx = Context::from_pairs([("a", "b")]).unwrap();
        let dek = DataKey::from_bytes([1; 32]);
        let s = k.wrap(&dek, &ctx).unwrap();
        assert_eq!(k2.unwrap(&s, &ctx).unwrap().expose(), dek.expose());
        assert!(k2.unwrap(&s, &Context::new()).is_err());
    }

    #[test]
    fn debug_shows_the_id_and_never_the_key() {
        let bytes = [5u8; 32];
        let k = LocalKey::from_bytes(bytes);
        let shown = format!("{k:?} {k:#?}");
        assert!(shown.contains(k.id()), "{shown}");
        // Every form a leak would take: the base64 of the key file, the array's Debug
        // (one line or pretty), hex.
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        assert!(!shown.contains(&b64[..8]), "{shown}");
        assert!(!shown.contains("5, 5, 5"), "{shown}");
        assert!(!shown.contains("5,\n"), "{shown}");
        assert!(!shown.contains("050505"), "{shown}");
    }

    fn key_line(k: &LocalKey) -> String {
        k.to_text()
            .lines()
            .find(|l| l.starts_with(KEY_LINE_TAG))
            .unwrap()
            .to_string()
    }

    #[test]
    fn key_file_whitespace_bom_and_line_ends_follow_format_10_2() {
        let k = LocalKey::from_bytes([9; 32]);
        let line = key_line(&k);
        let ok = |t: &str| LocalKey::parse(t, "t").map(|p| p.id().to_string());
        // A UTF-8 BOM, CRLF line ends, tabs and runs of ASCII whitespace are fine.
        assert_eq!(ok(&format!("\u{feff}{line}\n")).unwrap(), k.id());
        assert_eq!(
            ok(&format!("# c\r\n\t{}\r\n", line.replace(' ', " \t "))).unwrap(),
            k.id()
        );
        // Unicode whitespace is not whitespace: NBSP, EM SPACE, LINE SEPARATOR.
        for ws in ['\u{a0}', '\u{2003}', '\u{2028}'] {
            let t = line.replacen(' ', &ws.to_string(), 1);
            assert!(ok(&t).is_err(), "{ws:?} accepted as a separator");
            assert!(ok(&format!("{ws}{line}")).is_err(), "{ws:?} trimmed");
        }
        // A BOM anywhere but the start is not skipped; a vertical tab is not whitespace.
        assert!(ok(&format!("# c\n\u{feff}{line}")).is_err());
        assert!(ok(&line.replacen(' ', "\u{b}", 1)).is_err());
    }

    #[test]
    fn parse_errors_never_quote_the_file() {
        let k = LocalKey::from_bytes([0x3c; 32]);
        let line = key_line(&k);
        let b64 = line.rsplit(' ').next().unwrap().to_string();
        for t in [
            line.replace(' ', ","),
            line.replace(' ', ";"),
            line.replace(KEY_LINE_TAG, "sealstream-local-key-v2"),
            line.replace(KEY_LINE_TAG, "x"),
            format!("{b64}\n"),
            format!("{line} {b64}"),
            line.replace(&b64, &b64[1..]),
        ] {
            let e = LocalKey::parse(&t, "t").unwrap_err().to_string();
            for n in 4..=b64.len() {
                for w in b64.as_bytes().windows(n).step_by(3) {
                    let w = std::str::from_utf8(w).unwrap();
                    assert!(!e.contains(w), "{e:?} quotes {w:?}");
                }
            }
        }
    }

    #[test]
    fn corrupted_id_rejected() {
        let k = LocalKey::from_bytes([5; 32]);
        let t = k.to_text().replace("lk1-", "lk1-0");
        assert!(matches!(
            LocalKey::parse(&t, "t"),
            Err(Error::KeyFile { .. })
        ));
    }
}
