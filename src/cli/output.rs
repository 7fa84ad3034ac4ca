//! Output destinations: stdout, or a file written to a temporary beside the target and
//! renamed only on success. A temporary is removed on failure, on drop, and on Ctrl-C/SIGTERM,
//! so no partial output is ever left under the final name.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};

static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs a Ctrl-C/SIGTERM handler that deletes live temporaries, aborts S3 multipart
/// uploads in progress, and exits 130.
pub fn install_signal_cleanup() {
    let _ = ctrlc::set_handler(|| {
        remove_live_temps();
        crate::s3::abort_live_uploads();
        eprintln!("sealstream: interrupted; partial output removed");
        std::process::exit(130);
    });
}

fn remove_live_temps() {
    if let Ok(list) = LIVE_TEMPS.lock() {
        for p in list.iter() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn register(p: &Path) {
    if let Ok(mut list) = LIVE_TEMPS.lock() {
        list.push(p.to_path_buf());
    }
}

fn unregister(p: &Path) {
    if let Ok(mut list) = LIVE_TEMPS.lock() {
        list.retain(|q| q != p);
    }
}

/// A file being written under a temporary name.
pub struct AtomicFile {
    tmp: Option<tempfile::NamedTempFile>,
    target: PathBuf,
    force: bool,
}

impl AtomicFile {
    /// Starts writing `target`; fails early if it exists and `force` is false.
    pub fn create(target: &Path, force: bool) -> Result<AtomicFile> {
        let shown = target.display().to_string();
        if target.is_dir() {
            return Err(Error::io(
                format!("writing output '{shown}'"),
                io::Error::other("it is a directory; give a file name"),
            ));
        }
        if !force && target.symlink_metadata().is_ok() {
            return Err(Error::OutputExists(shown));
        }
        let dir = match target.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".sealstream-tmp")
            .tempfile_in(&dir)
            .map_err(|e| {
                Error::io(
                    format!("creating a temporary file in '{}'", dir.display()),
                    e,
                )
            })?;
        register(tmp.path());
        Ok(AtomicFile {
            tmp: Some(tmp),
            target: target.to_path_buf(),
            force,
        })
    }

    /// The open temporary file to write into.
    pub fn file(&mut self) -> Result<&mut std::fs::File> {
        self.tmp
            .as_mut()
            .map(|t| t.as_file_mut())
            .ok_or_else(|| Error::io("writing output", io::Error::other("already committed")))
    }

    /// Flushes to disk and renames over the target (refusing to clobber unless forced).
    pub fn commit(mut self) -> Result<()> {
        let shown = self.target.display().to_string();
        let Some(tmp) = self.tmp.take() else {
            return Ok(());
        };
        tmp.as_file()
            .sync_all()
            .map_err(|e| Error::io(format!("writing output '{shown}'"), e))?;
        let tmp_path = tmp.path().to_path_buf();
        let res = if self.force {
            tmp.persist(&self.target)
        } else {
            tmp.persist_noclobber(&self.target)
        };
        unregister(&tmp_path);
        match res {
            Ok(_) => Ok(()),
            Err(e) => {
                // The temporary is deleted when the error's file handle drops.
                if e.error.kind() == io::ErrorKind::AlreadyExists {
                    Err(Error::OutputExists(shown))
                } else {
                    Err(Error::io(format!("renaming into '{shown}'"), e.error))
                }
            }
        }
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(t) = self.tmp.take() {
            unregister(t.path());
            // NamedTempFile removes itself on drop.
        }
    }
}

/// Where output goes.
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, committed on success.
    File(AtomicFile),
}

impl Sink {
    /// Opens the sink for `-o PATH` (absent or `-` = stdout).
    pub fn open(path: Option<&Path>, force: bool, refuse_terminal: bool) -> Result<Sink> {
        match path {
            None => Self::stdout(refuse_terminal),
            Some(p) if p.as_os_str() == "-" => Self::stdout(refuse_terminal),
            Some(p) => Ok(Sink::File(AtomicFile::create(p, force)?)),
        }
    }

    fn stdout(refuse_terminal: bool) -> Result<Sink> {
        if refuse_terminal && io::stdout().is_terminal() {
            return Err(Error::Usage(
                "refusing to write ciphertext to a terminal; use -o FILE or redirect stdout".into(),
            ));
        }
        Ok(Sink::Stdout)
    }

    /// True when writing to stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    /// Runs `f` with a buffered writer over the sink; commits a file only if `f` succeeds.
    pub fn write_with<T>(self, f: impl FnOnce(&mut dyn Write) -> Result<T>) -> Result<T> {
        match self {
            Sink::Stdout => {
                let out = io::stdout();
                let mut w = io::BufWriter::with_capacity(1 << 20, out.lock());
                let r = f(&mut w)?;
                w.flush().map_err(|e| Error::io("writing to stdout", e))?;
                Ok(r)
            }
            Sink::File(mut af) => {
                let r = {
                    let file = af.file()?;
                    let mut w = io::BufWriter::with_capacity(1 << 20, file);
                    let r = f(&mut w)?;
                    w.flush().map_err(|e| Error::io("writing output", e))?;
                    r
                };
                af.commit()?;
                Ok(r)
            }
        }
    }
}
