//! AWS KMS as a key provider, through the CLI against the local emulator (moto), with keys
//! each test creates for itself (aws-sdk-kms, tests/it/common/moto.rs). Ignored under plain `cargo test`; run by
//! `scripts/test.sh` (`--include-ignored`), and a failure without `AWS_ENDPOINT_URL`.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use common::moto::{create_alias, create_key, endpoint, unique};
use common::*;
use sealstream::format::Header;

const ACCOUNT: &str = "123456789012"; // moto's default account

struct Env {
    s: Scratch,
    pt: Vec<u8>,
}

fn setup(test: &str) -> Option<(String, Env)> {
    let authority = endpoint(test)?;
    let s = Scratch::new();
    let pt = data(300_001);
    write(&s.path("p.bin"), &pt);
    Some((authority, Env { s, pt }))
}

fn ok(o: &std::process::Output) {
    assert_eq!(code(o), 0, "{}", stderr(o));
}

fn inspect(s: &Scratch, file: &str) -> serde_json::Value {
    let o = s.run(&["inspect", "--json", file]);
    ok(&o);
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_alias_and_second_region_each_decrypt_alone() {
    let Some((ep, e)) = setup("kms_alias_and_second_region_each_decrypt_alone") else {
        return;
    };
    let us = create_key(&ep, "us-east-1");
    let alias = format!("alias/{}", unique("backup"));
    create_alias(&ep, "us-east-1", &alias, &us);
    let eu = create_key(&ep, "eu-west-1");

    let o = e.s.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "--kms-key",
        &alias,
        "--kms-key",
        &eu,
        "-c",
        "project=atlas",
    ]);
    ok(&o);
    let v = inspect(&e.s, "p.seal");
    assert_eq!(v["stanzas"][0]["provider"], "aws-kms");
    assert_eq!(
        v["stanzas"][0]["key_id"],
        us.as_str(),
        "stored as the key ARN"
    );
    assert_eq!(v["stanzas"][1]["key_id"], eu.as_str());
    assert_eq!(v["context"]["project"], "atlas");
    assert!(
        !e.s.path("home").join("local.key").exists(),
        "no default key with --kms-key"
    );

    // The us-east-1 key through its alias; the eu-west-1 key by ARN with another default
    // region configured (its region comes from the ARN).
    for (trust, region) in [(alias.as_str(), "us-east-1"), (eu.as_str(), "ap-south-1")] {
        let out = unique("out");
        let o =
            e.s.cmd()
                .env("AWS_REGION", region)
                .args([
                    "decrypt",
                    "p.seal",
                    "-o",
                    &out,
                    "--kms-key",
                    trust,
                    "-c",
                    "project=atlas",
                ])
                .output()
                .unwrap();
        ok(&o);
        assert!(std::fs::read(e.s.path(&out)).unwrap() == e.pt, "{trust}");
    }
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_and_local_keys_mix() {
    let Some((ep, e)) = setup("kms_and_local_keys_mix") else {
        return;
    };
    let arn = create_key(&ep, "us-east-1");
    let kf = e.s.keyfile("l.key", &key(21));
    let kp = kf.to_str().unwrap();
    ok(&e.s.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "--kms-key",
        &arn,
        "-k",
        kp,
    ]));
    let v = inspect(&e.s, "p.seal");
    assert_eq!(v["stanzas"][0]["provider"], "aws-kms");
    assert_eq!(v["stanzas"][1]["provider"], "local");
    ok(&e.s.run(&["decrypt", "p.seal", "-o", "a.bin", "-k", kp]));
    ok(&e
        .s
        .run(&["decrypt", "p.seal", "-o", "b.bin", "--kms-key", &arn]));
    assert!(std::fs::read(e.s.path("a.bin")).unwrap() == e.pt);
    assert!(std::fs::read(e.s.path("b.bin")).unwrap() == e.pt);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_decrypt_calls_only_trusted_keys() {
    let Some((ep, e)) = setup("kms_decrypt_calls_only_trusted_keys") else {
        return;
    };
    let arn = create_key(&ep, "us-east-1");
    let other = create_key(&ep, "us-east-1");
    ok(&e
        .s
        .run(&["encrypt", "p.bin", "-o", "p.seal", "--kms-key", &arn]));
    // Nothing trusted: refused without calling KMS.
    let o = e.s.run(&["decrypt", "p.seal", "-o", "x.bin"]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    // Another key trusted: the file's key is not called.
    let o =
        e.s.run(&["decrypt", "p.seal", "-o", "x.bin", "--kms-key", &other]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("--kms-key"), "{}", stderr(&o));
    // Discovery needs an allow-list and honours it.
    let o =
        e.s.run(&["decrypt", "p.seal", "-o", "x.bin", "--kms-discovery"]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let o = e.s.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "x.bin",
        "--kms-discovery",
        "--kms-allow-account",
        "999999999999",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(!e.s.path("x.bin").exists());
    let o = e.s.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "x.bin",
        "--kms-discovery",
        "--kms-allow-account",
        ACCOUNT,
    ]);
    ok(&o);
    assert!(std::fs::read(e.s.path("x.bin")).unwrap() == e.pt);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_context_and_stanza_tampering_fail_authentication() {
    let Some((ep, e)) = setup("kms_context_and_stanza_tampering_fail_authentication") else {
        return;
    };
    let arn = create_key(&ep, "us-east-1");
    let run = |args: &[&str]| e.s.run(args);
    ok(&run(&[
        "encrypt",
        "p.bin",
        "-o",
        "a.seal",
        "--kms-key",
        &arn,
        "-c",
        "tier=gold",
    ]));
    ok(&run(&[
        "encrypt",
        "p.bin",
        "-o",
        "b.seal",
        "--kms-key",
        &arn,
        "-c",
        "tier=gold",
    ]));
    let a = std::fs::read(e.s.path("a.seal")).unwrap();
    let b = std::fs::read(e.s.path("b.seal")).unwrap();
    let (ha, la) = Header::parse(&a).unwrap();
    let (hb, _) = Header::parse(&b).unwrap();

    // Required context differs: refused before any KMS call.
    let o = run(&[
        "decrypt",
        "a.seal",
        "-o",
        "x",
        "--kms-key",
        &arn,
        "-c",
        "tier=iron",
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("context mismatch"), "{}", stderr(&o));

    // The header's context changed: KMS refuses the wrapped key (its context differs).
    let mut h = ha.clone();
    h.context = sealstream::Context::from_pairs([("tier", "iron")]).unwrap();
    write(
        &e.s.path("ctx.seal"),
        &[h.to_bytes().unwrap(), a[la..].to_vec()].concat(),
    );
    let o = run(&["decrypt", "ctx.seal", "-o", "x", "--kms-key", &arn]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("InvalidCiphertextException"),
        "{}",
        stderr(&o)
    );

    // The wrapped key was modified.
    let mut h = ha.clone();
    let last = h.stanzas[0].wrapped.len() - 1;
    h.stanzas[0].wrapped[last] ^= 1;
    write(
        &e.s.path("blob.seal"),
        &[h.to_bytes().unwrap(), a[la..].to_vec()].concat(),
    );
    let o = run(&["decrypt", "blob.seal", "-o", "x", "--kms-key", &arn]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));

    // A stanza from another file under the same key and context: KMS unwraps it, but it is
    // the other file's data key, so the key commitment fails.
    let mut h = ha.clone();
    h.stanzas = hb.stanzas.clone();
    write(
        &e.s.path("swap.seal"),
        &[h.to_bytes().unwrap(), a[la..].to_vec()].concat(),
    );
    let o = run(&["decrypt", "swap.seal", "-o", "x", "--kms-key", &arn]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("key commitment"), "{}", stderr(&o));
    assert!(!e.s.path("x").exists());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_service_errors_exit_5_and_leave_nothing() {
    let Some((_ep, e)) = setup("kms_service_errors_exit_5_and_leave_nothing") else {
        return;
    };
    let alias = format!("alias/{}", unique("missing"));
    let o =
        e.s.run(&["encrypt", "p.bin", "-o", "p.seal", "--kms-key", &alias]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("NotFoundException"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&alias), "names the key: {}", stderr(&o));

    // Unreachable endpoint: named in the message; bounded retries.
    let o =
        e.s.cmd()
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .args([
                "--kms-max-attempts",
                "2",
                "encrypt",
                "p.bin",
                "-o",
                "p.seal",
                "--kms-key",
                "alias/x",
            ])
            .output()
            .unwrap();
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("http://127.0.0.1:9"), "{}", stderr(&o));
    assert_eq!(e.s.files(), vec!["p.bin"], "no output or temporary left");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_rewrap_adds_kms_and_removes_local_without_touching_the_body() {
    let Some((ep, e)) = setup("kms_rewrap_adds_kms_and_removes_local") else {
        return;
    };
    let arn = create_key(&ep, "us-east-1");
    let local = key(22);
    let kf = e.s.keyfile("l.key", &local);
    let kp = kf.to_str().unwrap();
    ok(&e.s.run(&["encrypt", "p.bin", "-o", "p.seal", "-k", kp]));
    let before = std::fs::read(e.s.path("p.seal")).unwrap();
    ok(&e.s.run(&[
        "rewrap",
        "p.seal",
        "-k",
        kp,
        "--add-kms-key",
        &arn,
        "--remove-key",
        local.id(),
    ]));
    let after = std::fs::read(e.s.path("p.seal")).unwrap();
    assert!(
        before[header_len(&before)..] == after[header_len(&after)..],
        "body identical"
    );
    let v = inspect(&e.s, "p.seal");
    assert_eq!(v["stanzas"].as_array().unwrap().len(), 1);
    assert_eq!(v["stanzas"][0]["key_id"], arn.as_str());
    let o = e.s.run(&["decrypt", "p.seal", "-o", "x", "-k", kp]);
    assert_eq!(code(&o), 4, "the removed local key no longer opens it");
    ok(&e
        .s
        .run(&["decrypt", "p.seal", "-o", "y", "--kms-key", &arn]));
    assert!(std::fs::read(e.s.path("y")).unwrap() == e.pt);
}

/// `-v` logs each KMS call (operation, status, request id, duration) on stderr.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn verbose_logs_kms_calls() {
    let Some((ep, e)) = setup("verbose_logs_kms_calls") else {
        return;
    };
    let arn = create_key(&ep, "us-east-1");
    // Not Scratch::cmd: it adds --quiet.
    let run = |args: &[&str]| {
        std::process::Command::new(bin())
            .env("SEALSTREAM_HOME", e.s.path("home"))
            .env_remove("RUST_LOG")
            .current_dir(e.s.path(""))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["-v", "encrypt", "p.bin", "-o", "p.seal", "--kms-key", &arn]);
    ok(&o);
    let log = stderr(&o);
    let kms_calls = |log: &str, op: &str| {
        log.lines()
            .filter(|l| {
                l.contains("service=KMS")
                    && l.contains(&format!("operation={op} "))
                    && l.contains(" call ")
                    && l.contains("status=200")
                    && l.contains("elapsed_ms=")
            })
            .count()
    };
    assert_eq!(kms_calls(&log, "GenerateDataKey"), 1, "{log}");
    let o = run(&["-v", "decrypt", "p.seal", "-o", "x.bin", "--kms-key", &arn]);
    ok(&o);
    assert_eq!(kms_calls(&stderr(&o), "Decrypt"), 1, "{}", stderr(&o));
    assert_eq!(std::fs::read(e.s.path("x.bin")).unwrap(), e.pt);
}

/// `rewrap --remove-key` takes a KMS key as `--kms-key` does: by alias and by bare key id,
/// not only by the ARN the stanza holds; an unknown alias removes nothing.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn remove_key_accepts_kms_aliases_and_key_ids() {
    let Some((ep, e)) = setup("remove_key_accepts_kms_aliases") else {
        return;
    };
    let local = key(23);
    let kf = e.s.keyfile("l.key", &local);
    let kp = kf.to_str().unwrap();
    let arn = create_key(&ep, "us-east-1");
    let alias = format!("alias/{}", unique("rm"));
    create_alias(&ep, "us-east-1", &alias, &arn);
    let key_id = arn.rsplit('/').next().unwrap().to_string();
    for (n, name) in [alias.as_str(), key_id.as_str()].into_iter().enumerate() {
        let f = format!("p{n}.seal");
        ok(&e
            .s
            .run(&["encrypt", "p.bin", "-o", &f, "-k", kp, "--kms-key", &arn]));
        assert_eq!(inspect(&e.s, &f)["stanzas"].as_array().unwrap().len(), 2);
        let before = std::fs::read(e.s.path(&f)).unwrap();
        // An alias of no key: refused, the file unchanged.
        let o =
            e.s.run(&["rewrap", &f, "-k", kp, "--remove-key", "alias/no-such-key"]);
        assert_ne!(code(&o), 0, "{}", stderr(&o));
        assert_eq!(std::fs::read(e.s.path(&f)).unwrap(), before);
        ok(&e.s.run(&["rewrap", &f, "-k", kp, "--remove-key", name]));
        let v = inspect(&e.s, &f);
        let stanzas = v["stanzas"].as_array().unwrap();
        assert_eq!(stanzas.len(), 1, "{name}: {v}");
        assert_eq!(stanzas[0]["key_id"], local.id(), "{name}");
    }
}

/// README.md's "Common workflows" block, run as written with bash (`set -euo pipefail`)
/// against the emulator: only the bucket and the KMS aliases are renamed to this test's
/// own. Then the restored archive and tree must equal the originals, the skipped swap file
/// must be absent, and the slice must be exactly the requested bytes.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn readme_workflows_run_as_written() {
    let Some((ep, e)) = setup("readme_workflows_run_as_written") else {
        return;
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let block = readme
        .split("<!-- workflows:begin -->")
        .nth(1)
        .and_then(|r| r.split("<!-- workflows:end -->").next())
        .expect("README.md has a workflows block");
    let script = block
        .trim()
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the block is one ```sh fence");
    let bucket = common::moto::unique_bucket("readme");
    common::moto::create_bucket(&ep, &bucket);
    let key = create_key(&ep, "us-east-1");
    let alias = format!("alias/{}", unique("backup"));
    create_alias(&ep, "us-east-1", &alias, &key);
    let new_key = create_key(&ep, "us-east-1");
    let new_alias = format!("alias/{}", unique("backup-2027"));
    create_alias(&ep, "us-east-1", &new_alias, &new_key);
    let script = script
        .replace("s3://backups/", &format!("s3://{bucket}/"))
        .replace("alias/backup-2027", "@NEW_ALIAS@")
        .replace("alias/backup", &alias)
        .replace("@NEW_ALIAS@", &new_alias);
    // The tree: text, a nested file, an 8 MiB file for the ranged read, a swap file.
    let s = &e.s;
    let big = data(8 << 20);
    std::fs::create_dir_all(s.path("project/a")).unwrap();
    write(&s.path("project/notes.txt"), b"remember the milk\n");
    write(&s.path("project/a/b.bin"), &e.pt);
    write(&s.path("project/big.bin"), &big);
    write(&s.path("project/.notes.txt.swp"), b"swap");
    let bindir = s.path("bin");
    std::fs::create_dir_all(&bindir).unwrap();
    std::os::unix::fs::symlink(bin(), bindir.join("sealstream")).unwrap();
    let path = format!(
        "{}:{}",
        bindir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(s.dir.path())
        .env("PATH", path)
        .env("SEALSTREAM_HOME", s.path("home"))
        .env("AWS_ENDPOINT_URL", format!("http://{ep}"))
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL_KMS")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("bash");
    assert_eq!(
        code(&o),
        0,
        "the README workflows failed:\n{}\n{script}",
        stderr(&o)
    );
    // The archive restored through the pipes, and the tree restored from the prefix.
    for root in ["restored/project", "project-restored"] {
        assert_eq!(
            std::fs::read(s.path(&format!("{root}/notes.txt"))).unwrap(),
            b"remember the milk\n"
        );
        assert_eq!(
            std::fs::read(s.path(&format!("{root}/a/b.bin"))).unwrap(),
            e.pt
        );
        assert_eq!(
            std::fs::read(s.path(&format!("{root}/big.bin"))).unwrap(),
            big
        );
    }
    assert!(
        !s.path("project-restored/.notes.txt.swp").exists(),
        "--exclude '*.swp' was not applied"
    );
    assert_eq!(
        std::fs::read(s.path("slice.bin")).unwrap(),
        &big[4 << 20..=5 << 20]
    );
    // inspect --json printed one object naming the KMS key.
    let out = String::from_utf8_lossy(&o.stdout);
    let v: serde_json::Value = serde_json::from_str(out.trim()).expect("inspect --json");
    assert!(v.to_string().contains(&key), "{v}");
    // The rotation: one JSON line per object of the tree (3: the swap file was excluded),
    // each now wrapped for the new key only; the decrypt with the new key alone worked.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(s.path("rotated.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for l in &lines {
        let keys = l["keys"].to_string();
        assert!(keys.contains(&new_key) && !keys.contains(&key), "{l}");
    }
    assert_eq!(
        std::fs::read(s.path("notes.txt")).unwrap(),
        b"remember the milk\n"
    );
}
