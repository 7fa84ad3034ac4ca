//! Telling that files the gateway reads at start have a new version, without reading them:
//! the periodic reload check (`sealstream serve --reload-interval`) of the TLS certificate
//! and key (tls.rs) and of the client credentials (creds.rs) share it, so both see the
//! same changes (a Kubernetes secret volume's symlink swap, a file renamed into place, a
//! file rewritten in place) and both report a bad version once.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// What tells a new version of a file without reading it: modification time, length and
/// (on Unix) device and inode, of the file a symlink points to. A Kubernetes secret
/// volume swaps a symlink to a new directory (new inodes); an ACME client or an operator
/// renames new files into place or rewrites them (new time and usually length). `None`:
/// the file cannot be stat'ed (missing), itself a state that changes.
pub(super) type FileStamp = Option<(Option<SystemTime>, u64, u64, u64)>;

/// The stamp of `p` now.
pub(super) fn file_stamp(p: &std::path::Path) -> FileStamp {
    let m = std::fs::metadata(p).ok()?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt as _;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Some((m.modified().ok(), m.len(), dev, ino))
}

/// A set of files and their stamps at the last load or load attempt. Its lock is held
/// through a reload, so that two reloads of the same files (a signal and the periodic
/// check) never interleave.
#[derive(Debug)]
pub(super) struct FileWatch {
    paths: Vec<PathBuf>,
    seen: Mutex<Vec<FileStamp>>,
}

impl FileWatch {
    /// Stamps `paths` now: call it before reading them the first time, so that a change
    /// while reading is seen by the next check.
    pub(super) fn new(paths: Vec<PathBuf>) -> FileWatch {
        let seen = stamps(&paths);
        FileWatch::with_stamps(paths, seen)
    }

    /// A watch of `paths` whose stamps were taken (by [`file_stamp`]) before they were
    /// read.
    pub(super) fn with_stamps(paths: Vec<PathBuf>, seen: Vec<FileStamp>) -> FileWatch {
        FileWatch {
            paths,
            seen: Mutex::new(seen),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<FileStamp>> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `load` (which reads the files) for a reload asked for, whether or not the
    /// files changed; stamped before `load` reads.
    pub(super) fn reload<T>(&self, load: impl FnOnce() -> T) -> T {
        let mut seen = self.lock();
        *seen = stamps(&self.paths);
        load()
    }

    /// Runs `load` only if a file's stamp changed since the last load or attempt
    /// (`None` if none did). A bad new version is thus loaded, and reported, once: the
    /// next attempt waits for a file to change again (or for [`FileWatch::reload`]).
    pub(super) fn reload_if_changed<T>(&self, load: impl FnOnce() -> T) -> Option<T> {
        let mut seen = self.lock();
        let now = stamps(&self.paths);
        if now == *seen {
            return None;
        }
        *seen = now;
        Some(load())
    }
}

fn stamps(paths: &[PathBuf]) -> Vec<FileStamp> {
    paths.iter().map(|p| file_stamp(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_seen_once() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, b"one").unwrap();
        let w = FileWatch::new(vec![a.clone(), b.clone()]);
        assert_eq!(w.reload_if_changed(|| 1), None);
        // A new file (b was missing), then a rewrite of another length.
        std::fs::write(&b, b"x").unwrap();
        assert_eq!(w.reload_if_changed(|| 2), Some(2));
        assert_eq!(w.reload_if_changed(|| 3), None);
        std::fs::write(&a, b"three").unwrap();
        assert_eq!(w.reload_if_changed(|| 4), Some(4));
        // A file renamed into place (a new inode, same length).
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, b"thre3").unwrap();
        std::fs::rename(&tmp, &a).unwrap();
        assert_eq!(w.reload_if_changed(|| 5), Some(5));
        // Removed.
        std::fs::remove_file(&b).unwrap();
        assert_eq!(w.reload_if_changed(|| 6), Some(6));
        assert_eq!(w.reload_if_changed(|| 7), None);
        // A reload asked for always loads, and stamps.
        assert_eq!(w.reload(|| 8), 8);
        std::fs::write(&b, b"y").unwrap();
        assert_eq!(w.reload(|| 9), 9);
        assert_eq!(w.reload_if_changed(|| 10), None);
    }
}
