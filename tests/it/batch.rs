//! Batch mode: directories and several inputs into --output-dir, layout kept, each file
//! committed on its own, and one failure reported without losing the others.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use common::*;

fn tree(s: &Scratch) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("src/a.bin", data(70_000)),
        ("src/empty.bin", Vec::new()),
        ("src/sub/b.bin", data(5)),
        ("src/sub/deeper/c.bin", data(300_000)),
        ("loose.bin", data(1234)),
    ];
    for (p, d) in &files {
        let path = s.path(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write(&path, d);
    }
    files
}

#[test]
fn directory_and_files_round_trip_with_layout_kept() {
    let s = Scratch::new();
    let files = tree(&s);
    let kf = s.keyfile("k.key", &key(31));
    let kp = kf.to_str().unwrap();
    let o = s.run(&[
        "encrypt",
        "-k",
        kp,
        "src",
        "loose.bin",
        "--output-dir",
        "enc",
        "--jobs",
        "3",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for p in [
        "enc/src/a.bin.seal",
        "enc/src/sub/deeper/c.bin.seal",
        "enc/loose.bin.seal",
    ] {
        assert!(s.path(p).exists(), "{p}");
    }
    let o = s.run(&["decrypt", "-k", kp, "enc", "--output-dir", "dec"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for (p, d) in &files {
        let back = std::fs::read(s.path("dec/enc").join(p)).unwrap();
        assert!(back == *d, "{p}");
    }
    // Each encrypted file has its own data key unless caching was asked for.
    let a = std::fs::read(s.path("enc/src/a.bin.seal")).unwrap();
    let b = std::fs::read(s.path("enc/loose.bin.seal")).unwrap();
    let (ha, _) = sealstream::Header::parse(&a).unwrap();
    let (hb, _) = sealstream::Header::parse(&b).unwrap();
    assert_ne!(ha.stanzas[0].wrapped, hb.stanzas[0].wrapped);
}

#[test]
fn one_bad_file_does_not_lose_the_others() {
    let s = Scratch::new();
    tree(&s);
    let kf = s.keyfile("k.key", &key(32));
    let kp = kf.to_str().unwrap();
    let o = s.run(&["encrypt", "-k", kp, "src", "--output-dir", "enc"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Tamper with one file's last byte.
    let victim = s.path("enc/src/sub/b.bin.seal");
    let mut v = std::fs::read(&victim).unwrap();
    *v.last_mut().unwrap() ^= 1;
    write(&victim, &v);

    let o = s.run(&["decrypt", "-k", kp, "enc", "--output-dir", "dec"]);
    assert_eq!(code(&o), 4, "the failure's exit code: {}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("b.bin.seal"), "names the file: {err}");
    assert!(err.contains("1 of 4 files failed"), "{err}");
    assert!(
        !s.path("dec/enc/src/sub/b.bin").exists(),
        "no output for the bad file"
    );
    assert!(s.path("dec/enc/src/a.bin").exists());
    assert!(s.path("dec/enc/src/sub/deeper/c.bin").exists());
    let leftovers: Vec<_> = walk(&s.path("dec"))
        .into_iter()
        .filter(|p| p.ends_with(".sealstream-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Existing outputs are not replaced without --force; the rest still goes through.
    std::fs::create_dir_all(s.path("again")).unwrap();
    write(&s.path("again/a.bin"), b"keep me");
    let o = s.run(&[
        "decrypt",
        "-k",
        kp,
        "enc/src/a.bin.seal",
        "enc/loose.missing",
        "enc/src/empty.bin.seal",
        "--output-dir",
        "again",
    ]);
    assert_eq!(code(&o), 3, "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("again/a.bin")).unwrap(), b"keep me");
    assert!(s.path("again/empty.bin").exists());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[test]
fn batch_usage_errors() {
    let s = Scratch::new();
    tree(&s);
    let kf = s.keyfile("k.key", &key(33));
    let kp = kf.to_str().unwrap();
    for args in [
        vec!["encrypt", "-k", kp, "src/a.bin", "loose.bin", "-o", "x"],
        vec!["encrypt", "-k", kp, "src", "-o", "x"],
        vec!["encrypt", "-k", kp, "src"],
        vec!["encrypt", "-k", kp, "--output-dir", "out"],
        vec![
            "encrypt",
            "-k",
            kp,
            "src",
            "--output-dir",
            "o",
            "--cache-max-objects",
            "3",
        ],
        vec![
            "encrypt",
            "-k",
            kp,
            "src",
            "--output-dir",
            "o",
            "--cache-max-age",
            "5 parsecs",
        ],
        vec![
            "decrypt",
            "-k",
            kp,
            "src",
            "--output-dir",
            "o",
            "--range",
            "0-1",
        ],
    ] {
        let o = s.run(&args);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
    }
    assert!(!s.path("x").exists() && !s.path("o").exists() && !s.path("out").exists());
}

#[test]
fn local_cache_shares_a_data_key_within_limits() {
    let s = Scratch::new();
    tree(&s);
    let kf = s.keyfile("k.key", &key(34));
    let kp = kf.to_str().unwrap();
    let o = s.run(&[
        "encrypt",
        "-k",
        kp,
        "src",
        "loose.bin",
        "--output-dir",
        "enc",
        "--jobs",
        "1",
        "--cache-max-age",
        "5m",
        "--cache-max-objects",
        "2",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // 5 files, 2 per data key → 3 distinct wrapped keys; salts all differ.
    let mut wrapped = std::collections::HashSet::new();
    let mut salts = std::collections::HashSet::new();
    for p in walk(&s.path("enc")) {
        let (h, _) = sealstream::Header::parse(&std::fs::read(&p).unwrap()).unwrap();
        wrapped.insert(h.stanzas[0].wrapped.clone());
        salts.insert(h.salt);
    }
    assert_eq!(wrapped.len(), 3);
    assert_eq!(salts.len(), 5);
    let o = s.run(&["decrypt", "-k", kp, "enc", "--output-dir", "dec"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}
