//! Output destinations: stdout, or a file written to a temporary beside the target and
//! renamed only on success. A temporary is removed on failure, on drop, and on Ctrl-C/SIGTERM,
//! so no partial output is ever left under the final name. An existing device, FIFO or
//! descriptor alias (`/dev/null`, `/dev/stdout`, `>(cmd)`) is written directly instead:
//! renaming over it would destroy it. See docs/OUTPUTS.md.

use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sealstream::error::{Error, Result};

static LIVE_TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Installs a Ctrl-C/SIGTERM handler that stops the progress bar (saying it is aborting),
/// deletes live temporaries, aborts S3 multipart uploads in progress, and exits 130.
pub fn install_signal_cleanup() {
    let _ = ctrlc::set_handler(|| {
        super::progress::stop_for_interrupt();
        remove_live_temps();
        super::s3::abort_uploads();
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

/// What an output path names, decided once before anything is written.
enum Target {
    /// Nothing exists there: create a new file (temporary + rename).
    New(PathBuf),
    /// An existing regular file (possibly reached through symlinks): `path` is the real
    /// file, replaced atomically (temporary + rename) only with `--force`; the link stays.
    Regular {
        path: PathBuf,
        meta: std::fs::Metadata,
    },
    /// An existing non-regular file (device, FIFO, socket) or an alias of an open file
    /// descriptor (`/dev/stdout`, `/dev/fd/N`): opened and written directly, never
    /// renamed over, never removed. A block device holds data (a disk), so writing onto
    /// it needs `--force`, like replacing a regular file.
    Special { path: PathBuf, holds_data: bool },
}

/// True when `p`, or any symlink it leads through, is a file-descriptor alias
/// (`/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N`): such names stand for an already-open
/// file, so they are written directly, never replaced.
fn is_fd_alias(p: &Path) -> bool {
    let Ok(mut cur) = std::path::absolute(p) else {
        return false;
    };
    for _ in 0..40 {
        if cur.starts_with("/proc") || cur.starts_with("/dev/fd") {
            return true;
        }
        match std::fs::read_link(&cur) {
            Ok(next) => {
                cur = match cur.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// True when `p` names this process's standard output through a descriptor alias
/// (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`, or a symlink to one of them).
fn is_stdout_alias(p: &Path) -> bool {
    let Ok(mut cur) = std::path::absolute(p) else {
        return false;
    };
    let own = PathBuf::from(format!("/proc/{}/fd/1", std::process::id()));
    for _ in 0..40 {
        if cur == Path::new("/dev/stdout")
            || cur == Path::new("/dev/fd/1")
            || cur == Path::new("/proc/self/fd/1")
            || cur == Path::new("/proc/thread-self/fd/1")
            || cur == own
        {
            return true;
        }
        match std::fs::read_link(&cur) {
            Ok(next) => {
                cur = match cur.parent() {
                    Some(dir) => dir.join(next),
                    None => next,
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// This process's filesystem uid, from `/proc/self/status` (no unsafe code).
fn fs_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(3)?.parse().ok()
}

/// The first symlink on the way to `target` that sits in a sticky, world-writable
/// directory (such as /tmp) and belongs neither to us nor to that directory's owner: a
/// link someone else planted, which would make us write wherever they chose. The kernel's
/// `protected_symlinks` refuses to follow such links in `open`, but following a link
/// ourselves (to rename over its target, or to open a device) would bypass it.
fn untrusted_link(target: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut cur = std::path::absolute(target).ok()?;
    let me = fs_uid();
    for _ in 0..40 {
        let lm = cur.symlink_metadata().ok()?;
        if !lm.file_type().is_symlink() {
            return None;
        }
        let dir = cur.parent()?.to_path_buf();
        let dm = std::fs::metadata(&dir).ok()?;
        if dm.mode() & 0o1002 == 0o1002 && Some(lm.uid()) != me && lm.uid() != dm.uid() {
            return Some(cur);
        }
        cur = dir.join(std::fs::read_link(&cur).ok()?);
    }
    None
}

fn resolve(target: &Path) -> Result<Target> {
    use std::os::unix::fs::FileTypeExt;
    let shown = target.display().to_string();
    let io_err = |e: io::Error| Error::io(format!("writing output '{shown}'"), e);
    // Checked first: a planted link to `/proc/self/fd/N` must not be followed either.
    if let Some(link) = untrusted_link(target) {
        return Err(io_err(io::Error::other(format!(
            "it leads through the symbolic link '{}', which another user owns in a shared \
             sticky directory; refusing to follow it (remove it or give another path)",
            link.display()
        ))));
    }
    if is_fd_alias(target) {
        return Ok(Target::Special {
            path: target.to_path_buf(),
            holds_data: false,
        });
    }
    let lmeta = match target.symlink_metadata() {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok(Target::New(target.to_path_buf()));
        }
        Err(e) => return Err(io_err(e)),
    };
    let via_link = lmeta.file_type().is_symlink();
    let meta = if via_link {
        match std::fs::metadata(target) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(io_err(io::Error::other(
                    "it is a symbolic link to a file that does not exist; \
                     remove the link or give another path",
                )));
            }
            Err(e) => return Err(io_err(e)),
        }
    } else {
        lmeta
    };
    if meta.is_dir() {
        return Err(io_err(io::Error::other(
            "it is a directory; give a file name",
        )));
    }
    if meta.is_file() {
        // Through a link, the real file is replaced; the link keeps pointing at it.
        let path = if via_link {
            std::fs::canonicalize(target).map_err(io_err)?
        } else {
            target.to_path_buf()
        };
        return Ok(Target::Regular { path, meta });
    }
    Ok(Target::Special {
        path: target.to_path_buf(),
        holds_data: meta.file_type().is_block_device(),
    })
}

/// The mode a new file gets under this process's umask (`0666 & !umask`), so outputs look
/// like the files `cp` or a shell redirection would create. The umask is read from
/// `/proc/self/status` (no unsafe code); where it cannot be read, `0600` is used.
fn new_file_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        });
    match umask {
        Some(m) => 0o666 & !m,
        None => 0o600,
    }
}

/// A file output: either a temporary renamed over the target on success (regular files),
/// or an existing special file written directly.
pub struct AtomicFile {
    inner: Inner,
    shown: String,
}

enum Inner {
    Temp {
        tmp: Option<tempfile::NamedTempFile>,
        /// The real path renamed over (symlinks already followed).
        target: PathBuf,
        force: bool,
        /// The file this replaces (`dev`, `ino`), if it must still be the same at commit.
        expect: Option<(u64, u64)>,
        /// Mode (and, for `replacing`, owner) given to the file just before the rename.
        mode: u32,
        owner: Option<(u32, u32)>,
    },
    Direct(std::fs::File),
}

impl AtomicFile {
    /// Starts writing `target`. A new path or an existing regular file (with `force`) is
    /// written to a private temporary and renamed on commit; a symlink to a regular file is
    /// followed (the real file is replaced, the link stays). An existing device, FIFO or
    /// descriptor alias (`/dev/stdout`) is written directly and needs no `force`.
    pub fn create(target: &Path, force: bool) -> Result<AtomicFile> {
        Self::open(target, force, None)
    }

    /// Starts rewriting the regular file `target` (which must still be the file `current`
    /// describes when committed), keeping its mode and, where allowed, its owner.
    pub fn replacing(target: &Path, current: &std::fs::Metadata) -> Result<AtomicFile> {
        Self::open(target, true, Some(current))
    }

    fn open(target: &Path, force: bool, current: Option<&std::fs::Metadata>) -> Result<AtomicFile> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let shown = target.display().to_string();
        let (path, mode, expect, owner) = match resolve(target)? {
            Target::Special {
                path: p,
                holds_data,
            } => {
                if current.is_some() {
                    return Err(Error::io(
                        format!("rewriting '{shown}'"),
                        io::Error::other("it is not a regular file"),
                    ));
                }
                if holds_data && !force {
                    return Err(Error::io(
                        format!("writing output '{shown}'"),
                        io::Error::other(
                            "it is a block device, whose contents would be overwritten; \
                             pass --force to write onto it",
                        ),
                    ));
                }
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| Error::io(format!("opening output '{shown}'"), e))?;
                // A descriptor alias of a regular file (`-o /dev/fd/3` with `3>out`) is
                // emptied first, as the shell's `> /dev/fd/3` would: never a mix of old
                // and new bytes.
                if file.metadata().is_ok_and(|m| m.is_file()) {
                    file.set_len(0)
                        .map_err(|e| Error::io(format!("opening output '{shown}'"), e))?;
                }
                set_direct_name(&shown);
                return Ok(AtomicFile {
                    inner: Inner::Direct(file),
                    shown,
                });
            }
            Target::New(p) => {
                if current.is_some() {
                    return Err(Error::io(
                        format!("rewriting '{shown}'"),
                        io::Error::from(io::ErrorKind::NotFound),
                    ));
                }
                (p, new_file_mode(), None, None)
            }
            Target::Regular { path, meta } => {
                if !force {
                    return Err(Error::OutputExists(shown));
                }
                let id = (meta.dev(), meta.ino());
                match current {
                    Some(c) => {
                        if (c.dev(), c.ino()) != id {
                            return Err(changed_under_us(&shown));
                        }
                        (
                            path,
                            meta.permissions().mode() & 0o7777,
                            Some(id),
                            Some((meta.uid(), meta.gid())),
                        )
                    }
                    // A replaced file keeps its mode, as with `cp` or `>` onto it.
                    None => (path, meta.permissions().mode() & 0o777, Some(id), None),
                }
            }
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "output".into());
        // tempfile creates the temporary 0600: nobody else can open it while it is written.
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
            inner: Inner::Temp {
                tmp: Some(tmp),
                target: path,
                force,
                expect: if current.is_some() { expect } else { None },
                mode,
                owner,
            },
            shown,
        })
    }

    /// True when the output is written directly (a device, FIFO or descriptor alias): a
    /// reader may already have seen what was written before a failure.
    pub fn is_direct(&self) -> bool {
        matches!(self.inner, Inner::Direct(_))
    }

    /// The open file to write into (the temporary, or the special file itself).
    pub fn file(&mut self) -> Result<&mut std::fs::File> {
        match &mut self.inner {
            Inner::Direct(f) => Ok(f),
            Inner::Temp { tmp, .. } => tmp
                .as_mut()
                .map(|t| t.as_file_mut())
                .ok_or_else(|| Error::io("writing output", io::Error::other("already committed"))),
        }
    }

    /// Flushes to disk and renames over the target (refusing to clobber unless forced).
    pub fn commit(mut self) -> Result<()> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let shown = self.shown.clone();
        let (tmp, target, force, expect, mode, owner) = match &mut self.inner {
            Inner::Direct(_) => return Ok(()),
            Inner::Temp {
                tmp,
                target,
                force,
                expect,
                mode,
                owner,
            } => {
                let Some(t) = tmp.take() else {
                    return Ok(());
                };
                (t, target.clone(), *force, *expect, *mode, *owner)
            }
        };
        let tmp_path = tmp.path().to_path_buf();
        let finish = |tmp: &tempfile::NamedTempFile| -> Result<()> {
            let f = tmp.as_file();
            f.sync_all()
                .map_err(|e| Error::io(format!("writing output '{shown}'"), e))?;
            if let Some((uid, gid)) = owner {
                // Best effort: only root may give a file away; the mode is set after.
                let _ = std::os::unix::fs::fchown(f, Some(uid), Some(gid));
            }
            f.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io(format!("writing output '{shown}'"), e))?;
            // What is renamed over must still be a regular file (and, for a rewrite, the
            // same one): a device or FIFO that appeared meanwhile is never replaced.
            match target.symlink_metadata() {
                Ok(m) if !m.is_file() => Err(Error::io(
                    format!("writing output '{shown}'"),
                    io::Error::other(
                        "it changed into a special file or link while being written; nothing was replaced",
                    ),
                )),
                Ok(m) if expect.is_some_and(|id| id != (m.dev(), m.ino())) => {
                    Err(changed_under_us(&shown))
                }
                Err(e) if expect.is_some() || e.kind() != io::ErrorKind::NotFound => {
                    Err(Error::io(format!("writing output '{shown}'"), e))
                }
                _ => Ok(()),
            }
        };
        let res = match finish(&tmp) {
            Err(e) => {
                unregister(&tmp_path);
                return Err(e);
            }
            Ok(()) if force => tmp.persist(&target),
            Ok(()) => tmp.persist_noclobber(&target),
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

fn changed_under_us(shown: &str) -> Error {
    Error::io(
        format!("rewriting '{shown}'"),
        io::Error::other(
            "the file was replaced by another process meanwhile; nothing was changed, try again",
        ),
    )
}

/// The name of an output written directly (device, FIFO), for the "incomplete" notice.
static DIRECT_NAME: Mutex<Option<String>> = Mutex::new(None);

fn set_direct_name(shown: &str) {
    if let Ok(mut n) = DIRECT_NAME.lock() {
        *n = Some(shown.to_string());
    }
}

/// The `-o` path of an output written directly (a device or FIFO), if any: after a
/// failure its reader has seen a prefix, so the user is told to discard it.
pub fn direct_output_name() -> Option<String> {
    DIRECT_NAME.lock().ok().and_then(|n| n.clone())
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Inner::Temp { tmp, .. } = &mut self.inner
            && let Some(t) = tmp.take()
        {
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
            // `-o /dev/stdout` is our own stdout: written in place (keeps `>>` appending).
            Some(p) if is_stdout_alias(p) => Self::stdout(refuse_terminal),
            Some(p) => {
                let mut af = AtomicFile::create(p, force)?;
                if refuse_terminal && af.is_direct() && af.file()?.is_terminal() {
                    return Err(Error::InvalidArgument(format!(
                        "refusing to write ciphertext to the terminal '{}'; give a file or pipe",
                        p.display()
                    )));
                }
                Ok(Sink::File(af))
            }
        }
    }

    fn stdout(refuse_terminal: bool) -> Result<Sink> {
        if refuse_terminal && io::stdout().is_terminal() {
            return Err(Error::InvalidArgument(
                "refusing to write ciphertext to a terminal; use -o FILE or redirect stdout".into(),
            ));
        }
        Ok(Sink::Stdout)
    }

    /// True when writing to stdout.
    pub fn is_stdout(&self) -> bool {
        matches!(self, Sink::Stdout)
    }

    /// True when the output is a terminal (stdout, or a device such as `/dev/tty`): no
    /// progress bar may be drawn into what the user reads.
    pub fn is_terminal(&mut self) -> bool {
        match self {
            Sink::Stdout => io::stdout().is_terminal(),
            Sink::File(af) => af.is_direct() && af.file().is_ok_and(|f| f.is_terminal()),
        }
    }

    /// True when what is written is visible at once (stdout, a device, a FIFO), so a
    /// failure part-way leaves a prefix the reader has already seen.
    pub fn is_streaming(&self) -> bool {
        match self {
            Sink::Stdout => true,
            Sink::File(af) => af.is_direct(),
        }
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
