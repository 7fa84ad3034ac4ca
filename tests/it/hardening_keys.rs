//! Issue 14, local files and keys: items 11–15 and the key-file definition of item 22.
//!
//! Each test reproduces the attack or mistake through the CLI (or the library where the
//! CLI cannot build the input) and fails without its fix.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;
use sealstream::format::{Context, Header};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};

fn set_mode(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Writes `bytes` as a key file with `mode`.
fn key_file_with(s: &Scratch, name: &str, bytes: &[u8], mode: u32) -> std::path::PathBuf {
    let p = s.path(name);
    write(&p, bytes);
    set_mode(&p, mode);
    p
}

fn key_line(k: &LocalKey) -> String {
    k.to_text()
        .lines()
        .find(|l| l.starts_with("sealstream-local-key-v1"))
        .expect("key line")
        .to_string()
}

// ---- item 11: rewrap --remove-key cannot lock the data out ----

/// `keep.seal` wrapped for `a` (works) plus a stanza for `b` that wraps a foreign data key:
/// `b` unwraps it, but it never passes the key commitment.
fn file_with_a_dead_stanza(s: &Scratch, a: &LocalKey, b: &LocalKey) -> Vec<u8> {
    let ct = seal_with(
        &data(5000),
        &[a],
        &params(sealstream::Suite::Aes256Gcm, 4096),
    );
    let (mut h, hl) = Header::parse(&ct).expect("header");
    let foreign = DataKey::from_bytes([0x77; 32]);
    h.stanzas.push(b.wrap(&foreign, &h.context).expect("wrap"));
    let bytes = [h.to_bytes().expect("header bytes"), ct[hl..].to_vec()].concat();
    write(&s.path("keep.seal"), &bytes);
    bytes
}

/// `rewrap` with `args` is refused as a lock-out (exit 2) and leaves `file` as `before`.
fn assert_lockout_refused(s: &Scratch, args: &[&str], file: &str, before: &[u8]) {
    let o = s.run(args);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--remove-key refused"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(s.path(file)).unwrap(), before);
}

/// `rewrap FILE -k KEYFILE --remove-key REMOVE` succeeds and leaves one stanza, which
/// `a` opens.
fn assert_removed_leaving_a(s: &Scratch, file: &str, keyfile: &str, remove: &str, a: &LocalKey) {
    let o = s.run(&["rewrap", file, "-k", keyfile, "--remove-key", remove]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after = std::fs::read(s.path(file)).unwrap();
    assert_eq!(Header::parse(&after).unwrap().0.stanzas.len(), 1);
    assert_eq!(open(&after, a).expect("a opens it"), data(5000));
}

#[test]
fn remove_key_refuses_to_leave_only_stanzas_that_never_verify() {
    let s = Scratch::new();
    let (a, b, c) = (key(1), key(2), key(3));
    let ka = s.keyfile("a.key", &a);
    let kb = s.keyfile("b.key", &b);
    let kc = s.keyfile("c.key", &c);
    let (ka, kb, kc) = (
        ka.to_str().unwrap(),
        kb.to_str().unwrap(),
        kc.to_str().unwrap(),
    );
    let before = file_with_a_dead_stanza(&s, &a, &b);

    // Removing the working stanza, with or without b's key at hand: refused, exit 2,
    // the file untouched and no temporary left behind.
    for extra in [&[][..], &["-k", kb][..]] {
        let mut args = vec!["rewrap", "keep.seal", "-k", ka];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--remove-key", a.id()]);
        assert_lockout_refused(&s, &args, "keep.seal", &before);
        assert_eq!(s.files(), ["a.key", "b.key", "c.key", "keep.seal"]);
    }

    // Removing it while adding a key that verifies is fine, and the file opens with it.
    let o = s.run(&[
        "rewrap",
        "keep.seal",
        "-k",
        ka,
        "--add-key",
        kc,
        "--remove-key",
        a.id(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after = std::fs::read(s.path("keep.seal")).unwrap();
    assert_eq!(open(&after, &c).expect("c opens it"), data(5000));

    // Removing the dead stanza while a verified one remains is fine too.
    write(&s.path("keep.seal"), &before);
    assert_removed_leaving_a(&s, "keep.seal", ka, b.id(), &a);
}

// ---- item 12: key-file content is never echoed ----

#[test]
fn a_malformed_key_file_is_never_echoed() {
    let s = Scratch::new();
    let k = key(0x3c);
    let line = key_line(&k);
    let b64 = line.rsplit(' ').next().unwrap().to_string();
    s.keyfile("ok.key", &k);
    let ct = seal(&data(10), &k, sealstream::Suite::Aes256Gcm, 4096);
    write(&s.path("f.seal"), &ct);
    for (i, body) in [
        line.replace(' ', ","),
        line.replace(' ', ";"),
        line.replace("sealstream-local-key-v1", "sealstream-local-key-v2"),
        format!("{b64}\n"),
        format!("{line} {b64}\n"),
    ]
    .iter()
    .enumerate()
    {
        let p = key_file_with(&s, &format!("bad{i}.key"), body.as_bytes(), 0o600);
        let p = p.to_str().unwrap();
        for args in [
            vec!["decrypt", "f.seal", "-o", "out", "-k", p],
            vec!["encrypt", "f.seal", "-o", "out2", "-k", p],
            vec!["inspect", "--verify", "f.seal", "-k", p],
        ] {
            let o = s.run(&args);
            assert_eq!(code(&o), 3, "{args:?}: {}", stderr(&o));
            let err = stderr(&o) + &String::from_utf8_lossy(&o.stdout);
            assert!(err.contains("not a valid sealstream local key"), "{err}");
            // No piece of the key (6 characters or more) appears anywhere.
            for w in b64.as_bytes().windows(6) {
                let w = std::str::from_utf8(w).unwrap();
                assert!(!err.contains(w), "{args:?} echoes {w:?}: {err}");
            }
        }
    }
}

// ---- item 13: key-file permissions and a bounded read ----

#[test]
fn key_files_others_can_write_are_refused_and_readable_ones_warned_about() {
    let s = Scratch::new();
    let k = key(4);
    let text = k.to_text();
    write(&s.path("p.bin"), &data(100));
    for (mode, who) in [
        (0o620, "its group"),
        (0o602, "everyone"),
        (0o666, "everyone"),
    ] {
        let p = key_file_with(&s, "w.key", text.as_bytes(), mode);
        let o = s.run(&[
            "encrypt",
            "p.bin",
            "-o",
            "p.seal",
            "-k",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 3, "mode {mode:o}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(&format!("writable by {who}")), "{e}");
        assert!(e.contains("chmod 600"), "{e}");
        assert!(!s.path("p.seal").exists(), "mode {mode:o}: output written");
        std::fs::remove_file(&p).unwrap();
    }
    // Readable by others: works, with a warning on stderr even under --quiet.
    for (mode, who) in [(0o640, "its group"), (0o644, "everyone")] {
        let p = key_file_with(&s, "r.key", text.as_bytes(), mode);
        let o = s.run(&[
            "encrypt",
            "p.bin",
            "-o",
            "p.seal",
            "-k",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let e = stderr(&o);
        assert!(
            e.contains("warning") && e.contains(&format!("readable by {who}")),
            "{e}"
        );
        let o = s.run(&[
            "decrypt",
            "p.seal",
            "-o",
            "p.out",
            "-k",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        std::fs::remove_file(s.path("p.seal")).unwrap();
        std::fs::remove_file(s.path("p.out")).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
    // 0600 and 0400: silent.
    for mode in [0o600, 0o400] {
        let p = key_file_with(&s, "q.key", text.as_bytes(), mode);
        let o = s.run(&[
            "encrypt",
            "p.bin",
            "-o",
            "p.seal",
            "-k",
            p.to_str().unwrap(),
        ]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(stderr(&o), "");
        std::fs::remove_file(s.path("p.seal")).unwrap();
        std::fs::remove_file(&p).unwrap();
    }
    // The default key is checked the same way.
    let o = s.run(&["encrypt", "p.bin", "-o", "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    set_mode(&s.path("home").join("local.key"), 0o660);
    let o = s.run(&["decrypt", "p.seal", "-o", "p.out"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("writable by its group"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_endless_key_file_is_refused_without_reading_it_all() {
    let s = Scratch::new();
    let fifo = s.path("key.fifo");
    let st = std::process::Command::new("mkfifo")
        .args(["-m", "600"])
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(st.success());
    write(&s.path("p.bin"), &data(100));

    // The writer offers 16 MiB; it learns how much was taken from the broken pipe.
    const OFFER: usize = 16 << 20;
    let w = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .open(&fifo)
                .expect("open fifo for writing");
            let block = [b'x'; 8192];
            let mut sent = 0;
            while sent < OFFER {
                match f.write(&block) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            sent
        })
    };
    let o = s.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "-k",
        fifo.to_str().unwrap(),
    ]);
    // Whatever happened, unblock a writer still waiting for a reader (non-blocking open
    // of the read end; the writer then sees a broken pipe), so the test cannot hang.
    {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000; // Linux
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&fifo);
    }
    let sent = w.join().expect("writer");
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("larger than 65536 bytes"),
        "{}",
        stderr(&o)
    );
    assert!(
        sent < OFFER,
        "the whole {sent}-byte stream was read before refusing it"
    );
    assert!(!s.path("p.seal").exists());
}

#[test]
fn a_key_file_over_the_bound_is_refused() {
    let s = Scratch::new();
    let k = key(6);
    let mut text = k.to_text().as_bytes().to_vec();
    text.extend(std::iter::repeat_n(b'#', 65536));
    let p = key_file_with(&s, "big.key", &text, 0o600);
    write(&s.path("p.bin"), &data(100));
    let o = s.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "-k",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("larger than 65536 bytes"),
        "{}",
        stderr(&o)
    );
}

// ---- item 22: the key-file text definition (FORMAT.md §10.2) ----

#[test]
fn key_file_bom_crlf_and_non_utf8() {
    let s = Scratch::new();
    let k = key(8);
    write(&s.path("p.bin"), &data(100));
    // A UTF-8 BOM and CRLF line ends (a file saved by a Windows editor) load.
    let windows = format!("\u{feff}{}", k.to_text().replace('\n', "\r\n"));
    let p = key_file_with(&s, "win.key", windows.as_bytes(), 0o600);
    let o = s.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "-k",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A key file that is not UTF-8 (here Latin-1 in a comment) is refused as such.
    let mut latin1 = b"# cl\xe9 de secours\n".to_vec();
    latin1.extend_from_slice(k.to_text().as_bytes());
    let p = key_file_with(&s, "latin1.key", &latin1, 0o600);
    let o = s.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "p.out",
        "-k",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert!(stderr(&o).contains("not UTF-8 text"), "{}", stderr(&o));
    // Unicode whitespace is not a separator: a no-break space between the fields.
    let nbsp = k.to_text().replace("v1 lk1", "v1\u{a0}lk1");
    let p = key_file_with(&s, "nbsp.key", nbsp.as_bytes(), 0o600);
    let o = s.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "p.out",
        "-k",
        p.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
}

// ---- item 14: file-derived text cannot forge output lines ----

#[test]
fn a_hostile_context_cannot_forge_inspect_or_error_lines() {
    let s = Scratch::new();
    let k = key(9);
    let kp = s.keyfile("k.key", &k);
    let kp = kp.to_str().unwrap();
    let forged = "ok\n  local    lk1-00000000000000000000000000000000  [verified]\r\u{1b}[2K\u{1b}[1Aevil\u{202e}";
    let ctx = Context::from_pairs([("note", forged), ("a\nb", "c")]).unwrap();
    let p = sealstream::EncryptParams {
        context: ctx,
        ..params(sealstream::Suite::Aes256Gcm, 4096)
    };
    write(&s.path("h.seal"), &seal_with(&data(10), &[&k], &p));

    let o = s.run(&["inspect", "--verify", "-k", kp, "h.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    assert!(
        !out.contains(['\u{1b}', '\r', '\u{202e}']),
        "raw control characters: {out:?}"
    );
    let verified: Vec<&str> = out.lines().filter(|l| l.ends_with("[verified]")).collect();
    assert_eq!(verified.len(), 1, "{out}");
    assert!(verified[0].contains(k.id()), "{out}");
    assert!(
        !out.lines()
            .any(|l| l.trim_start().starts_with("local    lk1-0000")),
        "{out}"
    );
    assert!(
        out.contains(
            "  note=ok\\n  local    lk1-00000000000000000000000000000000  [verified]\\r\\u{1b}[2K\\u{1b}[1Aevil\\u{202e}\n"
        ),
        "{out}"
    );
    assert!(out.contains("  a\\nb=c\n"), "{out}");

    // --json keeps the exact value (serde escapes it) and stays valid JSON.
    let o = s.run(&["inspect", "--json", "h.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(v["context"]["note"], forged);
    assert_eq!(v["context"]["a\nb"], "c");

    // A decrypt error quoting the file's context: one line, no raw controls.
    let o = s.run(&["decrypt", "h.seal", "-o", "out", "-k", kp, "-c", "note=x"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!e.contains(['\u{1b}', '\r', '\u{202e}']), "{e:?}");
    assert!(e.contains("note=\"ok\\n  local"), "{e}");
}

#[test]
fn stanza_failure_reasons_are_escaped_in_errors() {
    // Reasons come from key services (free text); provider and key ids are validated
    // printable ASCII. A reason with a newline stays on its stanza's line.
    let e = sealstream::Error::UnwrapFailed(vec![sealstream::error::StanzaFailure {
        provider: "local".into(),
        key_id: "lk1-x".into(),
        reason: "denied\nlocal:lk1-y: [verified]\u{1b}[1A".into(),
    }]);
    let shown = e.to_string();
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(!shown.contains('\u{1b}'), "{shown:?}");
    assert!(
        shown.ends_with("lk1-x: denied\\nlocal:lk1-y: [verified]\\u{1b}[1A"),
        "{shown}"
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn remove_key_checks_kms_stanzas_against_the_commitment() {
    use common::moto;
    let name = "remove_key_checks_kms_stanzas_against_the_commitment";
    let ep = moto::endpoint(name).expect("the emulator (AWS_ENDPOINT_URL) is needed");
    let arn = moto::create_key(&ep, "us-east-1");
    let s = Scratch::new();
    let a = key(31);
    let ka = s.keyfile("a.key", &a);
    let ka = ka.to_str().unwrap();
    // A file for `a`, plus a KMS stanza (made by raw KMS Encrypt) wrapping a foreign data
    // key: KMS decrypts it fine, but it never passes the key commitment.
    let ct = seal_with(
        &data(5000),
        &[&a],
        &params(sealstream::Suite::Aes256Gcm, 4096),
    );
    let (mut h, hl) = Header::parse(&ct).expect("header");
    h.stanzas.push(sealstream::format::Stanza {
        provider: "aws-kms".into(),
        key_id: arn.clone(),
        wrapped: moto::kms_encrypt(&ep, "us-east-1", &arn, &[0x66u8; 32]),
    });
    let before = [h.to_bytes().expect("header bytes"), ct[hl..].to_vec()].concat();
    write(&s.path("k.seal"), &before);

    let args = [
        "rewrap",
        "k.seal",
        "-k",
        ka,
        "--kms-key",
        &arn,
        "--remove-key",
        a.id(),
    ];
    assert_lockout_refused(&s, &args, "k.seal", &before);
    assert_removed_leaving_a(&s, "k.seal", ka, &arn, &a);
}

#[test]
fn a_hostile_file_name_in_a_batch_cannot_forge_lines() {
    let s = Scratch::new();
    let k = key(12);
    let kp = s.keyfile("k.key", &k);
    std::fs::create_dir(s.path("in")).unwrap();
    let name = "x\nsealstream: decrypted 1 file(s)\u{1b}[2K.seal";
    write(&s.path("in").join(name), b"not sealstream at all");
    let o = s.run(&[
        "decrypt",
        "in",
        "--output-dir",
        "out",
        "-k",
        kp.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(!e.contains('\u{1b}'), "{e:?}");
    assert!(
        !e.lines().any(|l| l.starts_with("sealstream: decrypted")),
        "{e}"
    );
    assert!(
        e.contains("x\\nsealstream: decrypted 1 file(s)\\u{1b}[2K.seal"),
        "{e}"
    );
}
