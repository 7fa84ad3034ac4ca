//! Command-line behaviour: the embedded default key, keygen, stdin/stdout, --force,
//! atomic outputs, exit codes, inspect, and rewrap.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::io::Write;
use std::process::Stdio;

use common::*;
use sealstream::format::Header;

fn pipe(s: &Scratch, args: &[&str], input: &[u8]) -> std::process::Output {
    let mut child = s
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let t = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let o = child.wait_with_output().unwrap();
    t.join().unwrap();
    o
}

#[test]
fn default_key_is_created_once_and_used_for_both_directions() {
    let s = Scratch::new();
    let pt = data(200_000);
    write(&s.path("p.bin"), &pt);
    // Without --quiet, the creation note must appear.
    let c = std::process::Command::new(bin())
        .env("SEALSTREAM_HOME", s.path("home"))
        .current_dir(s.dir.path())
        .args(["encrypt", "p.bin", "-o", "p.seal"])
        .output()
        .unwrap();
    assert_eq!(code(&c), 0, "{}", stderr(&c));
    assert!(stderr(&c).contains("created the default local key"));
    assert!(stderr(&c).contains("Back it up"));
    let key_path = s.path("home").join("local.key");
    assert!(key_path.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let key_before = std::fs::read(&key_path).unwrap();
    let o = s.run(&["encrypt", "p.bin", "-o", "p2.seal"]);
    assert_eq!(code(&o), 0);
    assert_eq!(
        std::fs::read(&key_path).unwrap(),
        key_before,
        "key not recreated"
    );
    let o = s.run(&["decrypt", "p.seal", "-o", "back.bin"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(s.path("back.bin")).unwrap() == pt);
}

#[test]
fn decrypt_without_any_key_says_what_to_do() {
    let s = Scratch::new();
    let k = key(1);
    write(
        &s.path("f.seal"),
        &seal(b"hi", &k, sealstream::Suite::Aes256Gcm, 4096),
    );
    let o = s.run(&["decrypt", "f.seal"]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("-k KEYFILE"), "{}", stderr(&o));
}

#[test]
fn keygen_writes_0600_and_never_overwrites() {
    let s = Scratch::new();
    let o = s.run(&["keygen", "-o", "a.key"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(s.path("a.key")).unwrap();
    assert!(text.contains("sealstream-local-key-v1 lk1-"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.path("a.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    let o = s.run(&["keygen", "-o", "a.key"]);
    assert_eq!(code(&o), 3);
    assert_eq!(std::fs::read_to_string(s.path("a.key")).unwrap(), text);
    let o = s.run(&["keygen"]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("sealstream-local-key-v1"));
}

#[test]
fn stdin_to_stdout_round_trip_with_context_and_suites() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(3));
    let kp = kf.to_str().unwrap();
    for suite in ["aes-256-gcm", "chacha20-poly1305"] {
        for len in [0usize, 1, 65535, 65536, 65537, 300_000] {
            let pt = data(len);
            let enc = pipe(
                &s,
                &[
                    "encrypt",
                    "-k",
                    kp,
                    "-c",
                    "a=1",
                    "--suite",
                    suite,
                    "--chunk-size",
                    "64KiB",
                ],
                &pt,
            );
            assert_eq!(code(&enc), 0, "{}", stderr(&enc));
            let dec = pipe(&s, &["decrypt", "-k", kp, "-c", "a=1"], &enc.stdout);
            assert_eq!(code(&dec), 0, "{}", stderr(&dec));
            assert!(dec.stdout == pt, "{suite} {len}");
            let rc = pipe(
                &s,
                &[
                    "--backend",
                    "rustcrypto",
                    "--threads",
                    "1",
                    "decrypt",
                    "-k",
                    kp,
                ],
                &enc.stdout,
            );
            assert!(rc.stdout == pt, "rustcrypto backend {suite} {len}");
        }
    }
}

#[test]
fn files_round_trip_chunk_sizes() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(4));
    let kp = kf.to_str().unwrap();
    let pt = data(1_000_003);
    write(&s.path("p.bin"), &pt);
    for cs in ["4KiB", "5000", "1MiB", "16MiB"] {
        let o = s.run(&[
            "encrypt",
            "-k",
            kp,
            "--chunk-size",
            cs,
            "p.bin",
            "-o",
            "p.seal",
            "--force",
        ]);
        assert_eq!(code(&o), 0, "{cs}: {}", stderr(&o));
        let o = s.run(&["decrypt", "-k", kp, "p.seal", "-o", "b.bin", "--force"]);
        assert_eq!(code(&o), 0, "{cs}: {}", stderr(&o));
        assert!(std::fs::read(s.path("b.bin")).unwrap() == pt, "{cs}");
    }
}

#[test]
fn existing_output_needs_force() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(5));
    let kp = kf.to_str().unwrap();
    write(&s.path("p.bin"), b"plaintext");
    write(&s.path("p.seal"), b"precious");
    let o = s.run(&["encrypt", "-k", kp, "p.bin", "-o", "p.seal"]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("--force"));
    assert_eq!(std::fs::read(s.path("p.seal")).unwrap(), b"precious");
    let o = s.run(&["encrypt", "-k", kp, "p.bin", "-o", "p.seal", "--force"]);
    assert_eq!(code(&o), 0);
    assert_ne!(std::fs::read(s.path("p.seal")).unwrap(), b"precious");
    assert_eq!(s.files(), vec!["k.key", "p.bin", "p.seal"]);
}

#[test]
fn usage_and_io_exit_codes() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(6));
    let kp = kf.to_str().unwrap();
    write(&s.path("p.bin"), b"x");
    for (args, want) in [
        (
            vec![
                "encrypt",
                "-k",
                kp,
                "--chunk-size",
                "1KiB",
                "p.bin",
                "-o",
                "o",
            ],
            2,
        ),
        (
            vec![
                "encrypt",
                "-k",
                kp,
                "--chunk-size",
                "32MiB",
                "p.bin",
                "-o",
                "o",
            ],
            2,
        ),
        (
            vec![
                "encrypt",
                "-k",
                kp,
                "--chunk-size",
                "12XB",
                "p.bin",
                "-o",
                "o",
            ],
            2,
        ),
        (
            vec!["encrypt", "-k", kp, "--suite", "rot13", "p.bin", "-o", "o"],
            2,
        ),
        (
            vec!["encrypt", "-k", kp, "-c", "novalue", "p.bin", "-o", "o"],
            2,
        ),
        (
            vec![
                "encrypt", "-k", kp, "-c", "a=1", "-c", "a=2", "p.bin", "-o", "o",
            ],
            2,
        ),
        (vec!["encrypt", "--bogus"], 2),
        (vec!["decrypt", "-k", kp, "--range", "9-1", "p.bin"], 2),
        (vec!["encrypt", "-k", kp, "missing.bin", "-o", "o"], 3),
        (vec!["encrypt", "-k", "nokey.key", "p.bin", "-o", "o"], 3),
        (vec!["encrypt", "-k", kp, "p.bin", "-o", "nodir/o"], 3),
        (vec!["encrypt", "-k", kp, "p.bin", "-o", "p.bin"], 2),
        (vec!["decrypt", "-k", kp, "p.bin", "-o", "o"], 4),
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), want, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).len() > 10, "{args:?}: message expected");
    }
    assert!(!s.path("o").exists());
    // Help documents the exit codes.
    let o = s.run(&["--help"]);
    assert_eq!(code(&o), 0);
    let help = String::from_utf8_lossy(&o.stdout);
    for c in [
        "0  success",
        "2  usage",
        "3  I/O",
        "4  authentication",
        "5  key-service",
        "6  storage",
    ] {
        assert!(help.contains(c), "help lacks '{c}'");
    }
}

/// Every typed flag value is checked when clap parses it: a bad one is a usage error (exit
/// 2) naming the flag and the bound, before any key, file or object is touched (the input
/// named here does not exist, which would otherwise be exit 3).
#[test]
fn bad_flag_values_are_usage_errors_naming_the_flag() {
    let s = Scratch::new();
    for (args, flag, why) in [
        (
            &["encrypt", "--chunk-size", "1KiB", "nofile"][..],
            "--chunk-size",
            "outside 4KiB..16MiB",
        ),
        (
            &["encrypt", "--chunk-size", "16MiB+1", "nofile"],
            "--chunk-size",
            "outside 4KiB..16MiB",
        ),
        (
            &["encrypt", "--suite", "rot13", "nofile"],
            "--suite",
            "aes-256-gcm",
        ),
        (
            &["--backend", "openssl", "encrypt", "nofile"],
            "--backend",
            "rustcrypto",
        ),
        (
            &["--part-size", "4MiB", "encrypt", "nofile"],
            "--part-size",
            "5MiB..5GiB",
        ),
        (
            &["--part-size", "5GiB+1", "encrypt", "nofile"],
            "--part-size",
            "5MiB..5GiB",
        ),
        (
            &["--concurrency", "0", "encrypt", "nofile"],
            "--concurrency",
            "1..=256",
        ),
        (
            &["--concurrency", "257", "encrypt", "nofile"],
            "--concurrency",
            "1..=256",
        ),
        (
            &[
                "encrypt",
                "--cache-max-age",
                "1m",
                "--cache-max-bytes",
                "1QB",
                "nofile",
            ],
            "--cache-max-bytes",
            "suffix",
        ),
        (
            &["decrypt", "--range", "9-1", "nofile"],
            "--range",
            "END is before START",
        ),
        (
            &["decrypt", "--range", "x", "nofile"],
            "--range",
            "invalid range",
        ),
        (
            &["migrate", "--chunk-size", "99", "s3://b/k"],
            "--chunk-size",
            "outside 4KiB..16MiB",
        ),
        (
            &["migrate", "--suite", "rot13", "s3://b/k"],
            "--suite",
            "chacha20-poly1305",
        ),
    ] {
        let o = s.run(args);
        let e = stderr(&o);
        assert_eq!(code(&o), 2, "{args:?}: {e}");
        assert!(
            e.contains(&format!("'{flag} <")),
            "{args:?} does not name {flag}: {e}"
        );
        assert!(e.contains(why), "{args:?} does not say '{why}': {e}");
    }
    // The bounds themselves are accepted.
    write(&s.path("p.bin"), &data(10_000));
    let kf = s.keyfile("k.key", &key(7));
    let kp = kf.to_str().unwrap();
    for (i, cs) in ["4KiB", "16MiB"].into_iter().enumerate() {
        let out = format!("o{i}");
        let o = s.run(&[
            "--concurrency",
            "256",
            "--part-size",
            "5GiB",
            "--backend",
            "rustcrypto",
            "encrypt",
            "-k",
            kp,
            "--chunk-size",
            cs,
            "--suite",
            "chacha20-poly1305",
            "p.bin",
            "-o",
            &out,
        ]);
        assert_eq!(code(&o), 0, "{cs}: {}", stderr(&o));
        let h = Header::parse(&std::fs::read(s.path(&out)).unwrap())
            .unwrap()
            .0;
        assert_eq!(
            u64::from(h.chunk_size),
            sealstream::size::parse_size(cs).unwrap()
        );
        assert_eq!(h.suite, sealstream::format::Suite::ChaCha20Poly1305);
    }
}

#[test]
fn malformed_key_file_is_an_io_error_with_reason() {
    let s = Scratch::new();
    write(&s.path("bad.key"), b"sealstream-local-key-v1 lk1-00 AAAA\n");
    write(&s.path("p.bin"), b"x");
    let o = s.run(&["encrypt", "-k", "bad.key", "p.bin", "-o", "o"]);
    assert_eq!(code(&o), 3);
    assert!(
        stderr(&o).contains("not a valid sealstream local key"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn inspect_json_schema() {
    let s = Scratch::new();
    let (a, b) = (key(7), key(8));
    let ka = s.keyfile("a.key", &a);
    let kb = s.keyfile("b.key", &b);
    write(&s.path("p.bin"), &data(150_000));
    let o = s.run(&[
        "encrypt",
        "-k",
        ka.to_str().unwrap(),
        "-k",
        kb.to_str().unwrap(),
        "-c",
        "project=atlas",
        "--chunk-size",
        "64KiB",
        "p.bin",
        "-o",
        "p.seal",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.run(&["inspect", "--json", "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let hl = header_len(&std::fs::read(s.path("p.seal")).unwrap()) as u64;
    assert_eq!(v["version"], 1);
    assert_eq!(v["suite"], "aes-256-gcm");
    assert_eq!(v["chunk_size"], 65536);
    assert_eq!(v["header_len"], hl);
    assert_eq!(v["chunk_count"], 3);
    assert_eq!(v["plaintext_len"], 150_000);
    assert_eq!(v["ciphertext_len"], hl + 150_000 + 3 * 16);
    assert_eq!(v["context"]["project"], "atlas");
    assert_eq!(v["stanzas"][0]["provider"], "local");
    assert_eq!(v["stanzas"][0]["key_id"], a.id());
    assert_eq!(v["stanzas"][1]["key_id"], b.id());
    // From stdin too, and the human form.
    let o = pipe(
        &s,
        &["inspect", "--json"],
        &std::fs::read(s.path("p.seal")).unwrap(),
    );
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v, w);
    let o = s.run(&["inspect", "p.seal"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("project=atlas"));
    // Not a sealstream file.
    let o = s.run(&["inspect", "p.bin"]);
    assert_eq!(code(&o), 4);
}

/// The exact text of `inspect --json` (README, "inspect --json"): keys in alphabetical
/// order, null fields present, `verified`/`reason` only with `--verify`, `object` only for
/// S3 (tests/it/s3.rs), control characters escaped by JSON. Scripts compare this text.
#[test]
fn inspect_json_exact_text() {
    let s = Scratch::new();
    let (a, b) = (key(43), key(44));
    let ka = s.keyfile("a.key", &a);
    let kb = s.keyfile("b.key", &b);
    let (ka, kb) = (ka.to_str().unwrap(), kb.to_str().unwrap());
    write(&s.path("p.bin"), &data(150_000));
    let o = s.run(&[
        "encrypt",
        "-k",
        ka,
        "-k",
        kb,
        "-c",
        "project=atlas",
        "-c",
        "note=a\"b\\c\u{1b}[31m\u{e9}",
        "--chunk-size",
        "64KiB",
        "p.bin",
        "-o",
        "p.seal",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let bytes = std::fs::read(s.path("p.seal")).unwrap();
    let hl = header_len(&bytes);
    let ct = bytes.len();
    let ctx = r#""context":{"note":"a\"b\\c\u001b[31mé","project":"atlas"}"#;
    let (ia, ib) = (a.id(), b.id());
    let stdout = |o: &std::process::Output| String::from_utf8(o.stdout.clone()).unwrap();

    let o = s.run(&["inspect", "--json", "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let head = format!(
        r#"{{"body_error":null,"chunk_count":3,"chunk_size":65536,"ciphertext_len":{ct},{ctx},"header_len":{hl},"plaintext_len":150000,"plaintext_len_authenticated":false,"stanzas":"#
    );
    let tail = r#","suite":"aes-256-gcm","version":1}"#;
    assert_eq!(
        stdout(&o),
        format!(
            r#"{head}[{{"key_id":"{ia}","provider":"local"}},{{"key_id":"{ib}","provider":"local"}}]{tail}
"#
        )
    );

    // --verify: both check fields on every stanza, null where they do not apply.
    let o = s.run(&["inspect", "--json", "--verify", "-k", ka, "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            r#"{head}[{{"key_id":"{ia}","provider":"local","reason":null,"verified":true}},{{"key_id":"{ib}","provider":"local","reason":"no matching key offered","verified":null}}]{tail}
"#
        )
    );

    // A stanza that fails its check: verified false, with the reason.
    let (mut h, _) = sealstream::Header::parse(&bytes).unwrap();
    let foreign = sealstream::DataKey::from_bytes([7; 32]);
    h.stanzas[1] = sealstream::KeyProvider::wrap(&b, &foreign, &h.context).unwrap();
    let bad_header = h.to_bytes().unwrap();
    write(
        &s.path("bad.seal"),
        &[bad_header.clone(), bytes[hl..].to_vec()].concat(),
    );
    let o = s.run(&[
        "inspect", "--json", "--verify", "-k", ka, "-k", kb, "bad.seal",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reason = v["stanzas"][1]["reason"].as_str().unwrap().to_string();
    assert!(reason.starts_with("key commitment"), "{reason}");
    let bhl = bad_header.len();
    let bct = bhl + bytes.len() - hl;
    assert_eq!(
        stdout(&o),
        format!(
            r#"{{"body_error":null,"chunk_count":3,"chunk_size":65536,"ciphertext_len":{bct},{ctx},"header_len":{bhl},"plaintext_len":150000,"plaintext_len_authenticated":false,"stanzas":[{{"key_id":"{ia}","provider":"local","reason":null,"verified":true}},{{"key_id":"{ib}","provider":"local","reason":{},"verified":false}}]{tail}
"#,
            serde_json::to_string(&reason).unwrap()
        )
    );

    // A detached header alone: no body, so body_error and null lengths.
    let o = s.run(&["inspect", "p.seal", "--export-header", "p.hdr"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = s.run(&["inspect", "--json", "p.hdr"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!(
            r#"{{"body_error":"truncated input: the body has no chunks at all","chunk_count":null,"chunk_size":65536,"ciphertext_len":{hl},{ctx},"header_len":{hl},"plaintext_len":null,"plaintext_len_authenticated":false,"stanzas":[{{"key_id":"{ia}","provider":"local"}},{{"key_id":"{ib}","provider":"local"}}]{tail}
"#
        )
    );
}

#[test]
fn rewrap_changes_only_the_stanzas_and_removed_keys_stop_working() {
    let s = Scratch::new();
    let (old, new) = (key(9), key(10));
    let ko = s.keyfile("old.key", &old);
    let kn = s.keyfile("new.key", &new);
    let (ko, kn) = (ko.to_str().unwrap(), kn.to_str().unwrap());
    let pt = data(300_000);
    write(&s.path("p.bin"), &pt);
    let o = s.run(&["encrypt", "-k", ko, "-c", "x=y", "p.bin", "-o", "f.seal"]);
    assert_eq!(code(&o), 0);
    let before = std::fs::read(s.path("f.seal")).unwrap();
    let hb = header_len(&before);

    let o = s.run(&[
        "rewrap",
        "f.seal",
        "-k",
        ko,
        "--add-key",
        kn,
        "--remove-key",
        old.id(),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after = std::fs::read(s.path("f.seal")).unwrap();
    let ha = header_len(&after);
    assert!(before[hb..] == after[ha..], "body bytes must be identical");
    let (h, _) = Header::parse(&after).unwrap();
    assert_eq!(h.stanzas.len(), 1);
    assert_eq!(h.stanzas[0].key_id, new.id());
    let (hbh, _) = Header::parse(&before).unwrap();
    assert_eq!(
        (h.salt, h.commitment, h.context.clone()),
        (hbh.salt, hbh.commitment, hbh.context)
    );

    let o = s.run(&["decrypt", "-k", ko, "f.seal"]);
    assert_eq!(code(&o), 4, "removed key must no longer open the file");
    let o = s.run(&["decrypt", "-k", kn, "-c", "x=y", "f.seal", "-o", "b.bin"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(s.path("b.bin")).unwrap() == pt);

    // Refusals leave the file untouched.
    for args in [
        vec!["rewrap", "f.seal", "-k", kn, "--remove-key", new.id()],
        vec!["rewrap", "f.seal", "-k", kn, "--remove-key", "lk1-nope"],
        vec!["rewrap", "f.seal", "-k", kn],
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
    let o = s.run(&["rewrap", "f.seal", "-k", ko, "--add-key", ko]);
    assert_eq!(code(&o), 4, "the old key can no longer unlock it");
    assert_eq!(std::fs::read(s.path("f.seal")).unwrap(), after);
    assert_eq!(
        s.files(),
        vec!["b.bin", "f.seal", "new.key", "old.key", "p.bin"]
    );
}

#[test]
fn encrypt_refuses_a_terminal_but_writes_to_a_pipe() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(11));
    let o = pipe(&s, &["encrypt", "-k", kf.to_str().unwrap()], b"abc");
    assert_eq!(code(&o), 0);
    assert!(o.stdout.starts_with(b"SEALSTRM"));
    // `script` (util-linux, Debian's essential bsdutils) gives the command a terminal as stdout.
    write(&s.path("p.bin"), b"abc");
    let cmd = format!(
        "{} --quiet encrypt -k {} p.bin; echo EXIT=$?",
        bin(),
        kf.display()
    );
    // The typescript goes to a private file, never to a system path.
    let typescript = s.path("typescript");
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd])
        .arg(&typescript)
        .env("SEALSTREAM_HOME", s.path("home"))
        .current_dir(s.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("util-linux `script` is required for this test");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("EXIT=2"), "{out}");
    assert!(
        out.contains("refusing to write ciphertext to a terminal"),
        "{out}"
    );
    assert!(!out.contains("SEALSTRM"));
}

#[cfg(unix)]
#[test]
fn sigterm_mid_stream_removes_the_temporary_and_leaves_no_output() {
    let s = Scratch::new();
    let kf = s.keyfile("k.key", &key(12));
    let mut child = s
        .cmd()
        .args(["encrypt", "-k", kf.to_str().unwrap(), "-o", "out.seal"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Feed some data and keep the pipe open: the child is now mid-stream, blocked on input,
    // with its temporary output file present.
    stdin.write_all(&data(3 << 20)).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !s.files().iter().any(|f| f.ends_with(".sealstream-tmp")) {
        assert!(
            std::time::Instant::now() < deadline,
            "no temporary appeared: {:?}",
            s.files()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id().to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    drop(stdin);
    assert_eq!(code(&o), 130, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("partial output removed"),
        "{}",
        stderr(&o)
    );
    assert_eq!(s.files(), vec!["k.key"], "temporary or output left behind");
}

#[test]
fn inspect_verify_checks_each_stanza_against_the_commitment() {
    let s = Scratch::new();
    let (a, b, c) = (key(40), key(41), key(42));
    let ka = s.keyfile("a.key", &a);
    let kb = s.keyfile("b.key", &b);
    let kc = s.keyfile("c.key", &c);
    let (ka, kb, kc) = (
        ka.to_str().unwrap(),
        kb.to_str().unwrap(),
        kc.to_str().unwrap(),
    );
    write(&s.path("p.bin"), &data(10_000));
    let o = s.run(&["encrypt", "-k", ka, "-k", kb, "p.bin", "-o", "p.seal"]);
    assert_eq!(code(&o), 0);

    let o = s.run(&["inspect", "--json", "--verify", "-k", ka, "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["stanzas"][0]["verified"], true);
    assert_eq!(
        v["stanzas"][1]["verified"],
        serde_json::Value::Null,
        "b not offered"
    );

    // Replace b's stanza with one wrapping a foreign data key: b unwraps it, but it fails
    // the commitment, and --verify says so (exit 4) while a still verifies.
    let bytes = std::fs::read(s.path("p.seal")).unwrap();
    let (mut h, hl) = sealstream::Header::parse(&bytes).unwrap();
    let foreign = sealstream::DataKey::from_bytes([7; 32]);
    h.stanzas[1] = sealstream::KeyProvider::wrap(&b, &foreign, &h.context).unwrap();
    write(
        &s.path("bad.seal"),
        &[h.to_bytes().unwrap(), bytes[hl..].to_vec()].concat(),
    );
    let o = s.run(&["inspect", "--verify", "-k", ka, "-k", kb, "bad.seal"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("[verified]"), "{out}");
    assert!(out.contains("[FAILED: key commitment"), "{out}");
    assert!(
        stderr(&o).contains("1 of 2 stanzas failed verification"),
        "{}",
        stderr(&o)
    );

    // No offered key matches any stanza.
    let o = s.run(&["inspect", "--verify", "-k", kc, "p.seal"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
}

fn json_lines(o: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect()
}

/// `--json` on encrypt, decrypt and rewrap: one object per result with sizes, keys, suite,
/// header location and duration; JSON Lines for a batch, failures included; refused when
/// the data itself goes to stdout.
#[test]
fn json_results_for_encrypt_decrypt_rewrap() {
    let s = Scratch::new();
    let pt = data(300_000);
    write(&s.path("p.bin"), &pt);
    let k1 = key(31);
    let k2 = key(32);
    let f1 = s.keyfile("k1.key", &k1);
    let f2 = s.keyfile("k2.key", &k2);
    let (f1, f2) = (f1.to_str().unwrap(), f2.to_str().unwrap());

    let o = s.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "-k",
        f1,
        "--json",
        "--chunk-size",
        "16KiB",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = json_lines(&o);
    assert_eq!(v.len(), 1);
    let v = &v[0];
    assert_eq!(v["command"], "encrypt");
    assert_eq!(v["input"], "p.bin");
    assert_eq!(v["output"], "p.seal");
    assert_eq!(v["plaintext_bytes"], 300_000);
    let file_len = std::fs::metadata(s.path("p.seal")).unwrap().len();
    assert_eq!(v["encrypted_bytes"], file_len);
    assert_eq!(v["keys"][0]["provider"], "local");
    assert_eq!(v["keys"][0]["key_id"], k1.id());
    assert_eq!(v["suite"], "aes-256-gcm");
    assert_eq!(v["chunk_size"], 16384);
    assert_eq!(v["header_location"], "file");
    assert!(v["duration_ms"].is_u64());

    let o = s.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "r.bin",
        "-k",
        f1,
        "--json",
        "--range",
        "1000-1999",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["command"], "decrypt");
    assert_eq!(v["plaintext_bytes"], 1000);
    assert_eq!(v["range"], serde_json::json!([1000, 1999]));
    assert_eq!(v["keys"][0]["key_id"], k1.id());
    assert_eq!(std::fs::read(s.path("r.bin")).unwrap(), &pt[1000..2000]);

    let o = s.run(&["rewrap", "p.seal", "-k", f1, "--add-key", f2, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = &json_lines(&o)[0];
    assert_eq!(v["command"], "rewrap");
    let ids: Vec<&str> = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [k1.id(), k2.id()]);

    // Data to stdout: --json has nowhere to go.
    for args in [
        vec!["encrypt", "p.bin", "-k", f1, "--json"],
        vec!["decrypt", "p.seal", "-o", "-", "-k", f1, "--json"],
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("--json"), "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "{args:?}: nothing on stdout");
    }

    // A batch: one line per stored file, then one per failure with its exit code.
    std::fs::create_dir_all(s.path("tree/sub")).unwrap();
    write(&s.path("tree/a.txt"), b"alpha");
    write(&s.path("tree/sub/b.txt"), b"beta");
    let o = s.run(&["encrypt", "tree", "--output-dir", "enc", "-k", f1, "--json"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut lines = json_lines(&o);
    lines.sort_by_key(|v| v["input"].as_str().unwrap().to_string());
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["plaintext_bytes"], 5);
    assert_eq!(lines[1]["plaintext_bytes"], 4);
    // Corrupt one encrypted file: its decryption fails (exit 4), the other succeeds.
    let enc: Vec<String> = lines
        .iter()
        .map(|v| v["output"].as_str().unwrap().to_string())
        .collect();
    let mut bad = std::fs::read(s.path(&enc[1])).unwrap();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    write(&s.path(&enc[1]), &bad);
    let o = s.run(&["decrypt", "enc", "--output-dir", "dec", "-k", f1, "--json"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 2, "{lines:?}");
    let ok: Vec<_> = lines.iter().filter(|v| v.get("error").is_none()).collect();
    let failed: Vec<_> = lines.iter().filter(|v| v.get("error").is_some()).collect();
    assert_eq!((ok.len(), failed.len()), (1, 1), "{lines:?}");
    assert_eq!(ok[0]["plaintext_bytes"], 5);
    assert_eq!(failed[0]["exit_code"], 4);
    assert_eq!(failed[0]["input"], enc[1].as_str());
}

/// A file without a header (e.g. an S3 object's body fetched by another tool) is refused
/// with a hint at `--header-from` / `inspect --export-header`, not only "bad magic".
#[test]
fn headerless_input_gets_the_header_from_hint() {
    let s = Scratch::new();
    write(&s.path("body.bin"), &data(70_000));
    let k = s.keyfile("k.key", &key(51));
    for args in [
        vec!["decrypt", "body.bin", "-o", "x", "-k", k.to_str().unwrap()],
        vec!["inspect", "body.bin"],
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 4, "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("bad magic"), "{err}");
        assert!(
            err.contains("--header-from HEADER") && err.contains("--export-header HEADER"),
            "{err}"
        );
        assert!(!s.path("x").exists());
    }
}

/// `--recursive` with the AWS CLI's layout: `SRC/a/b` ↔ `DEST/a/b(.seal)`, so a round trip
/// restores the tree exactly; `--include/--exclude` in order (last match wins); `--dryrun`
/// writes nothing; existing outputs are skipped unless `--force`; symlinks are reported.
#[test]
fn recursive_round_trip_restores_the_tree() {
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(71));
    let k = k.to_str().unwrap();
    std::fs::create_dir_all(s.path("src/sub/deeper")).unwrap();
    write(&s.path("src/a.txt"), b"alpha");
    write(&s.path("src/sub/b.txt"), &data(200_000));
    write(&s.path("src/sub/deeper/c.bin"), &data(1000));
    write(&s.path("src/sub/skip.log"), b"log");
    std::os::unix::fs::symlink(s.path("src/a.txt"), s.path("src/link.txt")).unwrap();
    // Without --quiet, to see the notes.
    let loud = |args: &[&str]| {
        std::process::Command::new(bin())
            .env("SEALSTREAM_HOME", s.path("home"))
            .current_dir(s.path(""))
            .args(args)
            .output()
            .unwrap()
    };

    let o = loud(&[
        "encrypt",
        "src",
        "-o",
        "enc",
        "--recursive",
        "--exclude",
        "*.log",
        "-k",
        k,
        "--dryrun",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let plan = String::from_utf8(o.stdout.clone()).unwrap();
    assert_eq!(plan.lines().count(), 3, "{plan}");
    assert!(
        plan.contains("(dryrun) encrypt: src/sub/b.txt to enc/sub/b.txt.seal"),
        "{plan}"
    );
    assert!(!s.path("enc").exists(), "--dryrun wrote nothing");

    let o = loud(&[
        "encrypt",
        "src",
        "-o",
        "enc",
        "--recursive",
        "--exclude",
        "*.log",
        "-k",
        k,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("skipping symlink") && stderr(&o).contains("link.txt"),
        "{}",
        stderr(&o)
    );
    for f in [
        "enc/a.txt.seal",
        "enc/sub/b.txt.seal",
        "enc/sub/deeper/c.bin.seal",
    ] {
        assert!(s.path(f).is_file(), "{f}");
    }
    assert!(!s.path("enc/sub/skip.log.seal").exists(), "excluded");
    assert!(
        !s.path("enc/src").exists(),
        "no extra level: the AWS CLI's layout"
    );

    // Again without --force: everything exists, nothing is rewritten.
    let before = std::fs::read(s.path("enc/a.txt.seal")).unwrap();
    let o = loud(&[
        "encrypt",
        "src",
        "-o",
        "enc",
        "--recursive",
        "--exclude",
        "*.log",
        "-k",
        k,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("exists (pass --force"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(s.path("enc/a.txt.seal")).unwrap(), before);

    let o = s.run(&["decrypt", "enc", "-o", "out", "--recursive", "-k", k]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for f in ["a.txt", "sub/b.txt", "sub/deeper/c.bin"] {
        assert_eq!(
            std::fs::read(s.path(&format!("out/{f}"))).unwrap(),
            std::fs::read(s.path(&format!("src/{f}"))).unwrap(),
            "{f}"
        );
    }
    assert!(!s.path("out/enc").exists());

    // Filters in order: exclude everything, then take back one directory.
    let o = s.run(&[
        "decrypt",
        "enc",
        "-o",
        "only",
        "--recursive",
        "-k",
        k,
        "--exclude",
        "*",
        "--include",
        "sub/deeper/*",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(s.path("only/sub/deeper/c.bin").is_file());
    assert!(!s.path("only/a.txt").exists() && !s.path("only/sub/b.txt").exists());

    // Usage errors: no destination, a file as the source, filters without --recursive.
    for args in [
        vec!["encrypt", "src", "--recursive", "-k", k],
        vec!["encrypt", "src/a.txt", "-o", "x", "--recursive", "-k", k],
        vec![
            "encrypt",
            "src",
            "--output-dir",
            "x",
            "--exclude",
            "*",
            "-k",
            k,
        ],
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
}

/// `rewrap DIR --recursive`: every sealstream file under the tree gets the added key (so
/// the new key alone opens it), filters and --dryrun apply, a file that is not a
/// sealstream file fails alone (exit 4, named, left byte for byte) while the others are
/// done, and --json writes one line per file, the failure included.
#[test]
fn rewrap_recursive_adds_a_key_to_a_tree() {
    let s = Scratch::new();
    let old = s.keyfile("old.key", &key(72));
    let new = s.keyfile("new.key", &key(73));
    let (old, new) = (old.to_str().unwrap(), new.to_str().unwrap());
    std::fs::create_dir_all(s.path("t/sub")).unwrap();
    write(&s.path("a.bin"), &data(70_000));
    write(&s.path("b.bin"), b"bravo");
    for (src, dst) in [
        ("a.bin", "t/a.seal"),
        ("b.bin", "t/sub/b.seal"),
        ("b.bin", "t/skip.seal"),
    ] {
        let o = s.run(&["encrypt", src, "-o", dst, "-k", old]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    let before_skip = std::fs::read(s.path("t/skip.seal")).unwrap();
    // --dryrun: the plan on stdout, nothing changed.
    let o = s.run(&[
        "rewrap",
        "t",
        "--recursive",
        "--exclude",
        "skip.*",
        "-k",
        old,
        "--add-key",
        new,
        "--dryrun",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let plan = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(plan.lines().count(), 2, "{plan}");
    let o = s.run(&["decrypt", "t/a.seal", "-k", new, "-o", "x.out"]);
    assert_eq!(code(&o), 4, "--dryrun rewrapped: {}", stderr(&o));
    // A file that is not a sealstream file in the tree.
    write(&s.path("t/notes.txt"), b"plain notes");
    let o = s.run(&[
        "rewrap",
        "t",
        "--recursive",
        "--exclude",
        "skip.*",
        "-k",
        old,
        "--add-key",
        new,
        "--json",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("notes.txt"), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(
        lines.iter().filter(|l| l.get("error").is_some()).count(),
        1,
        "{lines:?}"
    );
    assert_eq!(
        std::fs::read(s.path("t/notes.txt")).unwrap(),
        b"plain notes"
    );
    // The new key alone opens the rewrapped files; the excluded one is untouched.
    for (f, want) in [
        ("t/a.seal", data(70_000)),
        ("t/sub/b.seal", b"bravo".to_vec()),
    ] {
        let o = s.run(&["decrypt", f, "-k", new, "-o", "-"]);
        assert_eq!(code(&o), 0, "{f}: {}", stderr(&o));
        assert_eq!(o.stdout, want, "{f}");
    }
    assert_eq!(std::fs::read(s.path("t/skip.seal")).unwrap(), before_skip);
    // Filters without --recursive are a usage error.
    let o = s.run(&[
        "rewrap",
        "t/a.seal",
        "--exclude",
        "x",
        "-k",
        old,
        "--add-key",
        new,
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}
