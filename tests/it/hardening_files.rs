//! Issue 14, items 9, 10, 16 and 17: where local outputs go and how they look.
//!
//! - 9: an existing device, FIFO or descriptor alias given to `-o` is written directly,
//!   never renamed over; symlinks to regular files are followed.
//! - 10: local `rewrap` through a symlink rewrites the real file; other hard links refuse.
//! - 16: a reader that closes the pipe early ends the run quietly with 141.
//! - 17: temporaries are private, final outputs get the umask's mode, key files stay 0600.
//!
//! Every special file here is made inside a private temporary directory (never /dev).
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// True when running as root (needed for `mknod`); the caller skips with a message if not.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A private character device with the numbers of /dev/null (1,3), inside the scratch dir.
fn make_null_device(s: &Scratch, name: &str) -> Option<PathBuf> {
    if !is_root() {
        eprintln!("SKIPPED: mknod needs root; device-node cases not run");
        return None;
    }
    let p = s.path(name);
    let st = Command::new("mknod")
        .arg(&p)
        .args(["c", "1", "3"])
        .status()
        .expect("run mknod");
    assert!(st.success(), "mknod failed");
    Some(p)
}

fn assert_null_device(p: &Path) {
    let m = fs::symlink_metadata(p).expect("device still there");
    assert!(
        m.file_type().is_char_device(),
        "{} is no longer a character device",
        p.display()
    );
    assert_eq!(m.rdev(), fs::metadata(p).unwrap().rdev());
    // major 1, minor 3 in the Linux encoding.
    assert_eq!((m.rdev() >> 8) & 0xfff, 1);
    assert_eq!(m.rdev() & 0xff, 3);
}

fn mkfifo(p: &Path) {
    let st = Command::new("mkfifo").arg(p).status().expect("run mkfifo");
    assert!(st.success(), "mkfifo failed");
}

fn assert_fifo(p: &Path) {
    let m = fs::symlink_metadata(p).expect("fifo still there");
    assert!(
        m.file_type().is_fifo(),
        "{} is no longer a FIFO",
        p.display()
    );
}

fn assert_symlink_to(p: &Path, to: &Path) {
    let m = fs::symlink_metadata(p).expect("link still there");
    assert!(
        m.file_type().is_symlink(),
        "{} is no longer a symlink",
        p.display()
    );
    assert_eq!(fs::read_link(p).unwrap(), to);
}

/// Reads a FIFO to the end on another thread (the writer blocks until a reader opens it).
fn fifo_reader(p: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let p = p.to_path_buf();
    std::thread::spawn(move || {
        let mut v = Vec::new();
        fs::File::open(&p)
            .expect("open fifo for reading")
            .read_to_end(&mut v)
            .expect("read fifo");
        v
    })
}

/// A scratch dir with key `a.key` and `p.bin` (plaintext `pt`) encrypted to `p.seal`.
fn sealed(len: usize) -> (Scratch, Vec<u8>) {
    let s = Scratch::new();
    s.keyfile("a.key", &key(1));
    let pt = data(len);
    write(&s.path("p.bin"), &pt);
    let o = s.run(&["encrypt", "p.bin", "-k", "a.key", "-o", "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    (s, pt)
}

fn temporaries(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sealstream-tmp"))
        .collect()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

// ---- item 9: special files are written to, never renamed over ----

#[test]
fn device_output_is_written_directly_with_or_without_force() {
    let (s, _) = sealed(200_000);
    let Some(dev) = make_null_device(&s, "null") else {
        return;
    };
    // The attack: `-o /dev/null --force` must not replace the node with a regular file.
    let o = s.run(&["decrypt", "p.seal", "-k", "a.key", "-o", "null", "--force"]);
    assert_null_device(&dev);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // `-o /dev/null`-like works without --force, and the node survives.
    let o = s.run(&["decrypt", "p.seal", "-k", "a.key", "-o", "null"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_null_device(&dev);
    let o = s.run(&["encrypt", "p.bin", "-k", "a.key", "-o", "null", "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_null_device(&dev);
    assert!(temporaries(s.dir.path()).is_empty());
}

#[test]
fn symlink_to_a_device_is_followed_and_both_survive() {
    let (s, _) = sealed(100_000);
    let Some(dev) = make_null_device(&s, "null") else {
        return;
    };
    std::os::unix::fs::symlink("null", s.path("link")).unwrap();
    for force in [true, false] {
        let mut args = vec!["decrypt", "p.seal", "-k", "a.key", "-o", "link"];
        if force {
            args.push("--force");
        }
        let o = s.run(&args);
        assert_symlink_to(&s.path("link"), Path::new("null"));
        assert_null_device(&dev);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
}

#[test]
fn fifo_output_is_written_directly_and_stays_a_fifo() {
    let (s, pt) = sealed(300_000);
    let fifo = s.path("out.fifo");
    mkfifo(&fifo);
    for force in [true, false] {
        let reader = fifo_reader(&fifo);
        let mut args = vec!["decrypt", "p.seal", "-k", "a.key", "-o", "out.fifo"];
        if force {
            args.push("--force");
        }
        let o = s.run(&args);
        // Checked before joining: a reader blocked on a replaced FIFO would never return.
        assert_fifo(&fifo);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(reader.join().unwrap(), pt);
    }
    assert!(temporaries(s.dir.path()).is_empty());
}

#[test]
fn stdout_alias_symlink_needs_no_force_and_is_not_replaced() {
    let (s, pt) = sealed(300_000);
    // A private stand-in for /dev/stdout: a symlink to this process's descriptor 1.
    let link = s.path("stdout");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    // stdout a pipe; `--force` must not replace the link with a file either.
    for force in [true, false] {
        let mut args = vec!["decrypt", "p.seal", "-k", "a.key", "-o", "stdout"];
        if force {
            args.push("--force");
        }
        let o = s.cmd().args(&args).output().unwrap();
        assert_symlink_to(&link, Path::new("/proc/self/fd/1"));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(o.stdout, pt);
    }
    // stdout a regular file (the shell's `> out.bin`): written in place, no --force.
    let out = s.path("out.bin");
    let f = fs::File::create(&out).unwrap();
    let o = s
        .cmd()
        .args(["decrypt", "p.seal", "-k", "a.key", "-o", "stdout"])
        .stdout(Stdio::from(f))
        .output()
        .unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(&out).unwrap(), pt);
    assert_symlink_to(&link, Path::new("/proc/self/fd/1"));
    assert!(temporaries(s.dir.path()).is_empty());
}

#[test]
fn symlink_to_a_regular_file_replaces_the_target_and_keeps_the_link() {
    let (s, pt) = sealed(100_000);
    write(&s.path("old.bin"), b"old contents");
    std::os::unix::fs::symlink("old.bin", s.path("link")).unwrap();
    // Without --force: an existing regular file behind the link is not replaced.
    let o = s.run(&["decrypt", "p.seal", "-k", "a.key", "-o", "link"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(fs::read(s.path("old.bin")).unwrap(), b"old contents");
    // With --force: the real file is replaced atomically, the link stays a link.
    let o = s.run(&["decrypt", "p.seal", "-k", "a.key", "-o", "link", "--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_symlink_to(&s.path("link"), Path::new("old.bin"));
    assert_eq!(fs::read(s.path("old.bin")).unwrap(), pt);
    assert!(temporaries(s.dir.path()).is_empty());
}

#[test]
fn block_device_output_needs_force() {
    let (s, _) = sealed(10_000);
    if !is_root() {
        eprintln!("SKIPPED: mknod needs root; block-device case not run");
        return;
    }
    // A private block node (loop major 7, an unlikely minor): only refused, never opened.
    let blk = s.path("disk");
    let st = Command::new("mknod")
        .arg(&blk)
        .args(["b", "7", "250"])
        .status()
        .unwrap();
    assert!(st.success());
    let o = s.run(&["decrypt", "p.seal", "-k", "a.key", "-o", "disk"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("block device"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    let m = fs::symlink_metadata(&blk).unwrap();
    assert!(m.file_type().is_block_device());
}

/// A symlink planted by another user in a sticky, world-writable directory (as in /tmp)
/// is not followed, whatever it points at: the kernel refuses the same for `open`.
#[test]
fn someone_elses_symlink_in_a_sticky_directory_is_not_followed() {
    let (s, _) = sealed(10_000);
    if !is_root() {
        eprintln!("SKIPPED: chown to another user needs root; case not run");
        return;
    }
    let shared = s.path("shared");
    fs::create_dir(&shared).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    write(&s.path("victim.bin"), b"precious");
    let link = shared.join("out.bin");
    std::os::unix::fs::symlink(s.path("victim.bin"), &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(54321), Some(54321)).unwrap();
    let o = s.run(&[
        "decrypt",
        "p.seal",
        "-k",
        "a.key",
        "-o",
        "shared/out.bin",
        "--force",
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("another user"), "{}", stderr(&o));
    assert_eq!(fs::read(s.path("victim.bin")).unwrap(), b"precious");
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The same link owned by us is followed as usual.
    std::os::unix::fs::lchown(&link, Some(0), Some(0)).unwrap();
    let o = s.run(&[
        "decrypt",
        "p.seal",
        "-k",
        "a.key",
        "-o",
        "shared/out.bin",
        "--force",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(s.path("victim.bin")).unwrap(), data(10_000));
}

#[test]
fn dangling_symlink_output_is_refused_even_with_force() {
    let (s, _) = sealed(10_000);
    std::os::unix::fs::symlink("missing.bin", s.path("link")).unwrap();
    for force in [false, true] {
        let mut args = vec!["decrypt", "p.seal", "-k", "a.key", "-o", "link"];
        if force {
            args.push("--force");
        }
        let o = s.run(&args);
        assert_eq!(code(&o), 3, "{}", stderr(&o));
        assert!(stderr(&o).contains("does not exist"), "{}", stderr(&o));
        assert_symlink_to(&s.path("link"), Path::new("missing.bin"));
        assert!(!s.path("missing.bin").exists());
    }
}

#[test]
fn failing_decryption_into_a_fifo_releases_only_authenticated_chunks() {
    let s = Scratch::new();
    s.keyfile("a.key", &key(1));
    let pt = data((1 << 20) + 1000);
    write(&s.path("p.bin"), &pt);
    let o = s.run(&[
        "encrypt",
        "p.bin",
        "-k",
        "a.key",
        "--chunk-size",
        "64KiB",
        "-o",
        "p.seal",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Corrupt the last chunk: everything before it authenticates, it does not.
    let mut ct = fs::read(s.path("p.seal")).unwrap();
    let n = ct.len();
    ct[n - 20] ^= 1;
    write(&s.path("bad.seal"), &ct);
    let fifo = s.path("out.fifo");
    mkfifo(&fifo);
    let reader = fifo_reader(&fifo);
    let o = s.run(&["decrypt", "bad.seal", "-k", "a.key", "-o", "out.fifo"]);
    assert_fifo(&fifo);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let got = reader.join().unwrap();
    // The reader saw a prefix of the plaintext and nothing from the bad (last) chunk.
    assert!(got.len() < pt.len());
    assert!(got.len() <= pt.len() - 1000);
    assert_eq!(got[..], pt[..got.len()]);
    assert!(
        stderr(&o).contains("'out.fifo' is incomplete; discard it"),
        "{}",
        stderr(&o)
    );
}

// ---- item 10: rewrap through symlinks and hard links ----

fn decrypts_with(s: &Scratch, file: &str, keyfile: &str) -> bool {
    code(&s.run(&["decrypt", file, "-k", keyfile, "-o", "-"])) == 0
}

#[test]
fn rewrap_through_a_symlink_rewrites_the_real_file() {
    let (s, _) = sealed(100_000);
    s.keyfile("b.key", &key(2));
    fs::set_permissions(s.path("p.seal"), fs::Permissions::from_mode(0o640)).unwrap();
    std::os::unix::fs::symlink("p.seal", s.path("link.seal")).unwrap();
    let o = s.run(&["rewrap", "link.seal", "-k", "a.key", "--add-key", "b.key"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_symlink_to(&s.path("link.seal"), Path::new("p.seal"));
    assert!(
        decrypts_with(&s, "p.seal", "b.key"),
        "real file not rewrapped"
    );
    assert_eq!(mode(&s.path("p.seal")), 0o640, "mode not kept");
    // And removing a key through the link removes it from the real file.
    let kid = sealstream::keys::local::LocalKey::load(&s.path("a.key"))
        .unwrap()
        .id()
        .to_string();
    let o = s.run(&["rewrap", "link.seal", "-k", "b.key", "--remove-key", &kid]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        !decrypts_with(&s, "p.seal", "a.key"),
        "removed key still opens"
    );
    assert!(decrypts_with(&s, "p.seal", "b.key"));
    assert!(temporaries(s.dir.path()).is_empty());
}

#[test]
fn rewrap_refuses_a_file_with_other_hard_links_unless_asked() {
    let (s, _) = sealed(100_000);
    s.keyfile("b.key", &key(2));
    fs::hard_link(s.path("p.seal"), s.path("other.seal")).unwrap();
    let before = fs::read(s.path("p.seal")).unwrap();
    let o = s.run(&["rewrap", "p.seal", "-k", "a.key", "--add-key", "b.key"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("hard link") && e.contains("--break-hard-links"),
        "{e}"
    );
    assert_eq!(fs::read(s.path("p.seal")).unwrap(), before);
    assert_eq!(fs::metadata(s.path("p.seal")).unwrap().nlink(), 2);
    // Asked explicitly: this name is rewrapped, the other link keeps the old file.
    let o = s.run(&[
        "rewrap",
        "p.seal",
        "-k",
        "a.key",
        "--add-key",
        "b.key",
        "--break-hard-links",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(decrypts_with(&s, "p.seal", "b.key"));
    assert!(!decrypts_with(&s, "other.seal", "b.key"));
    assert_eq!(fs::read(s.path("other.seal")).unwrap(), before);
}

#[test]
fn rewrap_refuses_a_special_file() {
    let (s, _) = sealed(10_000);
    s.keyfile("b.key", &key(2));
    let fifo = s.path("x.fifo");
    mkfifo(&fifo);
    // Keep a writer on the FIFO so that opening it for reading does not block forever.
    let w = {
        let p = fifo.clone();
        std::thread::spawn(move || {
            let _ = fs::OpenOptions::new().write(true).open(&p);
        })
    };
    let o = s.run(&["rewrap", "x.fifo", "-k", "a.key", "--add-key", "b.key"]);
    w.join().unwrap();
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    assert_fifo(&fifo);
}

// ---- item 16: a reader that stops early ----

/// Runs `args` with stdout a pipe, reads `n` bytes, closes the pipe, and returns the exit
/// code and stderr.
fn read_then_close(s: &Scratch, args: &[&str], n: usize) -> (i32, String) {
    let mut child = s
        .cmd()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; n];
    out.read_exact(&mut buf).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    (code(&o), stderr(&o))
}

#[test]
fn closing_the_pipe_early_exits_141_quietly() {
    let (s, _) = sealed(8 << 20);
    let (c, e) = read_then_close(&s, &["decrypt", "p.seal", "-k", "a.key"], 10);
    assert_eq!(c, 141, "stderr: {e}");
    assert_eq!(e, "", "stderr must stay empty");
    // Encrypting to a closed pipe, too (from a file and from stdin).
    let (c, e) = read_then_close(&s, &["encrypt", "p.bin", "-k", "a.key"], 10);
    assert_eq!(c, 141, "stderr: {e}");
    assert_eq!(e, "");
    assert!(temporaries(s.dir.path()).is_empty());
}

#[test]
fn closing_an_output_fifo_early_exits_141_quietly() {
    let (s, _) = sealed(8 << 20);
    let fifo = s.path("out.fifo");
    mkfifo(&fifo);
    let reader = {
        let p = fifo.clone();
        std::thread::spawn(move || {
            let mut f = fs::File::open(&p).unwrap();
            let mut buf = [0u8; 10];
            f.read_exact(&mut buf).unwrap();
        })
    };
    let o = s.run(&["decrypt", "p.seal", "-k", "a.key", "-o", "out.fifo"]);
    // All checked before joining: a reader whose FIFO was never opened would never return.
    assert_fifo(&fifo);
    assert_eq!(code(&o), 141, "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    reader.join().unwrap();
    assert!(temporaries(s.dir.path()).is_empty());
}

// ---- item 17: modes ----

/// Runs sealstream under `umask` (through `sh`, as a user's shell would).
fn under_umask(s: &Scratch, umask: &str, args: &[&str]) -> std::process::Output {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("umask {umask}; exec \"$0\" --quiet \"$@\""))
        .arg(bin())
        .args(args)
        .env("SEALSTREAM_HOME", s.path("home"))
        .env_remove("XDG_CONFIG_HOME")
        .current_dir(s.dir.path());
    c.output().unwrap()
}

#[test]
fn new_outputs_get_the_umask_mode_and_keys_stay_private() {
    let (s, _) = sealed(100_000);
    for (umask, want) in [
        ("022", 0o644),
        ("027", 0o640),
        ("077", 0o600),
        ("002", 0o664),
    ] {
        let dec = format!("d{umask}.bin");
        let enc = format!("e{umask}.seal");
        let o = under_umask(&s, umask, &["decrypt", "p.seal", "-k", "a.key", "-o", &dec]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(mode(&s.path(&dec)), want, "plaintext under umask {umask}");
        let o = under_umask(&s, umask, &["encrypt", "p.bin", "-k", "a.key", "-o", &enc]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(mode(&s.path(&enc)), want, "ciphertext under umask {umask}");
        let k = format!("k{umask}.key");
        let o = under_umask(&s, umask, &["keygen", "-o", &k]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(mode(&s.path(&k)), 0o600, "key file under umask {umask}");
    }
    // Batch outputs too.
    let o = under_umask(
        &s,
        "022",
        &["decrypt", "p.seal", "-k", "a.key", "--output-dir", "outdir"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(mode(&s.path("outdir").join("p")), 0o644);
    // The default key created on first use stays 0600 whatever the umask.
    let o = under_umask(&s, "000", &["encrypt", "p.bin", "-o", "default.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(mode(&s.path("home").join("local.key")), 0o600);
    assert_eq!(mode(&s.path("default.seal")), 0o666);
}

#[test]
fn replacing_a_file_keeps_its_mode() {
    let (s, _) = sealed(100_000);
    write(&s.path("out.bin"), b"old");
    fs::set_permissions(s.path("out.bin"), fs::Permissions::from_mode(0o600)).unwrap();
    let o = under_umask(
        &s,
        "022",
        &[
            "decrypt", "p.seal", "-k", "a.key", "-o", "out.bin", "--force",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        mode(&s.path("out.bin")),
        0o600,
        "a private file became readable"
    );
}

#[test]
fn the_temporary_is_private_while_it_is_written() {
    let s = Scratch::new();
    s.keyfile("a.key", &key(1));
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("umask 000; exec \"$0\" --quiet encrypt -k a.key -o out.seal")
        .arg(bin())
        .env("SEALSTREAM_HOME", s.path("home"))
        .current_dir(s.dir.path())
        .stdin(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Write some data and keep stdin open: the temporary exists until stdin ends.
    std::io::Write::write_all(&mut stdin, &data(3 << 20)).unwrap();
    let tmp = loop {
        if let Some(t) = temporaries(s.dir.path()).into_iter().next() {
            break s.path(&t);
        }
        assert!(child.try_wait().unwrap().is_none(), "exited early");
        std::thread::yield_now();
    };
    assert_eq!(mode(&tmp), 0o600, "temporary readable by others");
    drop(stdin);
    let o = child.wait_with_output().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(mode(&s.path("out.seal")), 0o666);
    assert!(temporaries(s.dir.path()).is_empty());
}
