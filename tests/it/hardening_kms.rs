//! Issue 14, items 7, 8 and 19: multi-region fail-over when one trusted key's region is
//! down (answers 503, or never answers), one fall-through rule for every stanza failure
//! (a KMS outage does not stop a local key), and a bound on the KMS work one hostile file
//! can cause in discovery mode. KMS traffic goes through the fault proxy
//! (tests/it/common/proxy.rs), which counts calls per operation.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::moto::{create_alias, create_key, kms_encrypt, unique};
use common::proxy::{Fault, KmsEnv as Env, Proxy};
use common::*;

fn setup(test: &str) -> Env {
    Env::start(test, 70_000).expect("AWS_ENDPOINT_URL must point at the emulator")
}

impl Env {
    /// Runs the CLI with KMS traffic sent to `kms_url`, with small retry and time bounds
    /// so a failing region costs little.
    fn run_via(&self, kms_url: &str, args: &[&str]) -> std::process::Output {
        self.cmd_via(kms_url)
            .args(["--kms-max-attempts", "2", "--kms-timeout", "3"])
            .args(args)
            .output()
            .unwrap()
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        self.run_via(&self.proxy.url, args)
    }

    fn decrypted(&self, name: &str) -> bool {
        std::fs::read(self.s.path(name)).is_ok_and(|b| b == self.pt)
    }

    /// Encrypts p.bin to `out` for `keys` (`--kms-key` each) plus the extra args.
    fn encrypt(&self, out: &str, kms_keys: &[&str], extra: &[&str]) {
        let mut args = vec!["encrypt", "p.bin", "-o", out];
        for k in kms_keys {
            args.extend(["--kms-key", k]);
        }
        args.extend(extra);
        let o = self.run(&args);
        assert_eq!(code(&o), 0, "encrypt: {}", stderr(&o));
    }
}

/// Two keys in two regions (A in us-east-1, B in eu-west-1) and an alias for A.
fn two_regions(e: &Env, test: &str) -> (String, String, String) {
    let a = create_key(&e.upstream, "us-east-1");
    let b = create_key(&e.upstream, "eu-west-1");
    let alias = format!("alias/{}", unique(test));
    create_alias(&e.upstream, "us-east-1", &alias, &a);
    (a, b, alias)
}

/// Makes every KMS call naming `a` (by ARN or alias) answer 503.
fn region_a_down(p: &Proxy, a: &str, alias: &str) {
    for name in [a, alias] {
        p.fail_key("*", name, Fault::aws(503, ""));
    }
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn one_region_answering_503_fails_over_to_the_other() {
    let e = setup("one_region_answering_503_fails_over_to_the_other");
    let (a, b, alias) = two_regions(&e, "dr503");
    e.encrypt("p.seal", &[&a, &b], &[]);
    region_a_down(&e.proxy, &a, &alias);
    e.proxy.reset_counters();

    // Both keys as ARNs: no DescribeKey at all; A's stanza fails, B's opens the file.
    let o = e.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "a.bin",
        "--kms-key",
        &a,
        "--kms-key",
        &b,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(e.decrypted("a.bin"));
    assert_eq!(e.proxy.calls("DescribeKey"), 0, "an ARN needs no lookup");

    // A given as an alias: its lookup fails (503), which fails A's stanza only. It is
    // looked up once (2 attempts with --kms-max-attempts 2), and only for the stanza in
    // its region.
    e.proxy.reset_counters();
    let o = e.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "b.bin",
        "--kms-key",
        &alias,
        "--kms-key",
        &b,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(e.decrypted("b.bin"));
    assert_eq!(e.proxy.calls("DescribeKey"), 2, "one lookup, retried once");

    // A batch pays for the failed lookup once, not once per object.
    std::fs::create_dir_all(e.s.path("in")).unwrap();
    for i in 0..3 {
        std::fs::copy(e.s.path("p.seal"), e.s.path(&format!("in/f{i}.seal"))).unwrap();
    }
    e.proxy.reset_counters();
    let o = e.run(&[
        "decrypt",
        "in",
        "--output-dir",
        "out",
        "--kms-key",
        &alias,
        "--kms-key",
        &b,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        e.proxy.calls("DescribeKey"),
        2,
        "looked up once per process"
    );

    // Only A trusted: exit 5, naming A; nothing written.
    for (name, out) in [(a.as_str(), "c.bin"), (alias.as_str(), "d.bin")] {
        let o = e.run(&["decrypt", "p.seal", "-o", out, "--kms-key", name]);
        assert_eq!(code(&o), 5, "{name}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("key service failed"), "{err}");
        assert!(err.contains(name), "names the key: {err}");
        assert!(!e.s.path(out).exists(), "no output for {name}");
    }
}

/// A KMS front that forwards to `upstream` (`host:port`) but holds, unanswered, every
/// request whose body names one of `keys`: a region that accepts connections and never
/// answers. Returns its URL.
fn black_hole_for(upstream: &str, keys: &[&str]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.to_string();
    let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (upstream, keys) = (upstream.clone(), keys.clone());
            std::thread::spawn(move || {
                let _ = forward_or_hold(conn, &upstream, &keys);
            });
        }
    });
    url
}

fn forward_or_hold(mut client: TcpStream, upstream: &str, keys: &[String]) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(120)))?;
    let mut r = std::io::BufReader::new(client.try_clone()?);
    let Some(req) = http1::read_request_head(&mut r)? else {
        return Ok(());
    };
    let mut body = Vec::new();
    if !http1::read_body(&mut r, req.request_framing()?, &mut body) {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&body);
    if keys.iter().any(|k| text.contains(k.as_str())) {
        // Never answer: wait until the client gives up and closes.
        let mut sink = [0u8; 1024];
        while client.read(&mut sink).unwrap_or(0) > 0 {}
        return Ok(());
    }
    // The fault proxy upstream answers with `Connection: close`, so copy until EOF.
    let mut up = TcpStream::connect(upstream)?;
    up.write_all(&req.raw)?;
    up.write_all(&body)?;
    std::io::copy(&mut up, &mut client)?;
    Ok(())
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn one_region_that_never_answers_fails_over_to_the_other() {
    let e = setup("one_region_that_never_answers_fails_over_to_the_other");
    let (a, b, alias) = two_regions(&e, "drhang");
    e.encrypt("p.seal", &[&a, &b], &[]);
    // Every call naming A, by ARN (Decrypt) or by alias (DescribeKey), gets no answer.
    let hole_a = black_hole_for(&e.proxy.authority(), &[&a, &alias]);

    for (name, out) in [(a.as_str(), "a.bin"), (alias.as_str(), "c.bin")] {
        let o = e.run_via(
            &hole_a,
            &[
                "decrypt",
                "p.seal",
                "-o",
                out,
                "--kms-key",
                name,
                "--kms-key",
                &b,
            ],
        );
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        assert!(e.decrypted(out));
    }

    let o = e.run_via(
        &hole_a,
        &["decrypt", "p.seal", "-o", "b.bin", "--kms-key", &a],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains(&a), "{}", stderr(&o));
    assert!(!e.s.path("b.bin").exists());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn a_kms_outage_does_not_stop_a_local_key() {
    let e = setup("a_kms_outage_does_not_stop_a_local_key");
    let a = create_key(&e.upstream, "us-east-1");
    let local = e.s.keyfile("local.key", &key(3));
    let local = local.to_str().unwrap();
    e.encrypt("p.seal", &[&a], &["-k", local]);
    let (h, _) = sealstream::Header::parse(&std::fs::read(e.s.path("p.seal")).unwrap()).unwrap();
    assert_eq!(
        h.stanzas[0].provider, "aws-kms",
        "the KMS stanza comes first"
    );

    // KMS down: every call answers 503.
    e.proxy.fail_first("*", 10_000, Fault::aws(503, ""));
    let o = e.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "a.bin",
        "--kms-key",
        &a,
        "-k",
        local,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(e.decrypted("a.bin"));
    assert!(
        e.proxy.calls("Decrypt") >= 1,
        "the KMS stanza was tried first"
    );

    // A file with no KMS stanza: a trusted alias is never looked up, so no KMS call.
    e.encrypt("l.seal", &[], &["-k", local]);
    e.proxy.reset_counters();
    let o = e.run(&[
        "decrypt",
        "l.seal",
        "-o",
        "l.bin",
        "--kms-key",
        "alias/anything",
        "-k",
        local,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(e.decrypted("l.bin"));
    assert_eq!(e.proxy.requests().len(), 0, "no KMS call at all");

    // With a wrong local key too, the KMS failure decides the class: exit 5.
    let wrong = e.s.keyfile("wrong.key", &key(4));
    let o = e.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "b.bin",
        "--kms-key",
        &a,
        "-k",
        wrong.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(!e.s.path("b.bin").exists());
}

/// A copy of `file` with `bogus` extra stanzas of key `arn` (each a real KMS wrap of
/// another random data key, so it unwraps but fails the commitment) after `copies`
/// identical copies of one more, all before the genuine stanza. Stanzas are not covered
/// by the commitment, so anyone who can write the object can do this.
fn hostile(upstream: &str, file: &[u8], arn: &str, bogus: usize, copies: usize) -> Vec<u8> {
    let (mut h, len) = sealstream::Header::parse(file).unwrap();
    let genuine = h.stanzas.clone();
    let stanza = |i: usize| sealstream::format::Stanza {
        provider: "aws-kms".into(),
        key_id: arn.to_string(),
        wrapped: kms_encrypt(upstream, "us-east-1", arn, &[i as u8; 32]),
    };
    h.stanzas = std::iter::repeat_n(stanza(200), copies).collect();
    h.stanzas.extend((0..bogus).map(stanza));
    h.stanzas.extend(genuine);
    let mut out = h.to_bytes().unwrap();
    out.extend_from_slice(&file[len..]);
    out
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn a_hostile_file_with_many_kms_stanzas_costs_a_bounded_number_of_calls() {
    let e = setup("a_hostile_file_with_many_kms_stanzas_costs_a_bounded_number_of_calls");
    let a = create_key(&e.upstream, "us-east-1");
    let account = a.split(':').nth(4).unwrap().to_string();
    e.encrypt("p.seal", &[&a], &[]);
    let file = std::fs::read(e.s.path("p.seal")).unwrap();
    // 11 identical garbage stanzas, 20 distinct ones, the genuine one: 32 (the limit).
    write(
        &e.s.path("h.seal"),
        &hostile(&e.upstream, &file, &a, 20, 11),
    );
    e.proxy.reset_counters();

    let discovery = ["--kms-discovery", "--kms-allow-account", account.as_str()];
    let mut args = vec!["decrypt", "h.seal", "-o", "a.bin"];
    args.extend(discovery);
    let o = e.run(&args);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    // The copies count once (they would otherwise use up the budget on one cached key).
    assert_eq!(
        e.proxy.calls("Decrypt"),
        8,
        "the default cap, 8 distinct stanzas"
    );
    let err = stderr(&o);
    assert!(
        err.contains("more stanzas") && err.contains("--kms-max-decrypts"),
        "{err}"
    );
    assert!(!e.s.path("a.bin").exists());

    // A trusted key is bounded the same way.
    e.proxy.reset_counters();
    let o = e.run(&[
        "--kms-max-decrypts",
        "3",
        "decrypt",
        "h.seal",
        "-o",
        "b.bin",
        "--kms-key",
        &a,
    ]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert_eq!(e.proxy.calls("Decrypt"), 3);

    // Raised to the format's limit: identical stanzas count once, so 20 + 1 garbage
    // calls and then the genuine stanza opens the file.
    e.proxy.reset_counters();
    let mut args = vec![
        "--kms-max-decrypts",
        "32",
        "decrypt",
        "h.seal",
        "-o",
        "c.bin",
    ];
    args.extend(discovery);
    let o = e.run(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(e.decrypted("c.bin"));
    assert_eq!(
        e.proxy.calls("Decrypt"),
        22,
        "20 distinct + 1 deduplicated + the genuine"
    );

    // The flag is checked: 0 and more than the format's 32 stanzas are usage errors.
    for bad in ["0", "33"] {
        let o = e.run(&[
            "--kms-max-decrypts",
            bad,
            "decrypt",
            "h.seal",
            "-o",
            "d.bin",
            "--kms-key",
            &a,
        ]);
        assert_eq!(code(&o), 2, "{bad}: {}", stderr(&o));
    }
}
