//! KMS faults the emulator never produces, injected by a loopback proxy in front of it
//! (tests/it/common/proxy.rs): throttling and 5xx that clear after N calls (retried, and the
//! call count is exact), permanent errors (not retried), endless throttling (bounded), and
//! a disabled key in one region while another region's stanza still works.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use common::moto::create_key;
use common::proxy::{Fault, KmsEnv as Env, Proxy};
use common::*;

fn setup(test: &str) -> Option<Env> {
    Env::start(test, 100_000)
}

/// This module's `run` on the shared `KmsEnv`: a trait, as other modules of the test
/// binary add their own `run` to the same type.
trait Run {
    /// Runs the CLI with KMS traffic routed through the proxy.
    fn run(&self, args: &[&str]) -> std::process::Output;
}

impl Run for Env {
    fn run(&self, args: &[&str]) -> std::process::Output {
        self.cmd_via(&self.proxy.url).args(args).output().unwrap()
    }
}

fn throttle() -> Fault {
    Fault::aws(400, "ThrottlingException")
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn throttling_clears_and_the_retry_count_is_exact() {
    let Some(e) = setup("throttling_clears_and_the_retry_count_is_exact") else {
        return;
    };
    let arn = create_key(&e.upstream, "us-east-1");
    e.proxy.fail_first("GenerateDataKey", 3, throttle());
    let o = e.run(&["encrypt", "p.bin", "-o", "p.seal", "--kms-key", &arn]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        e.proxy.calls("GenerateDataKey"),
        4,
        "3 throttled + 1 success"
    );

    e.proxy.fail_first("Decrypt", 2, Fault::aws(503, ""));
    let o = e.run(&["decrypt", "p.seal", "-o", "b.bin", "--kms-key", &arn]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(e.proxy.calls("Decrypt"), 3, "2 × 503 + 1 success");
    assert!(std::fs::read(e.s.path("b.bin")).unwrap() == e.pt);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn permanent_errors_are_not_retried() {
    let Some(e) = setup("permanent_errors_are_not_retried") else {
        return;
    };
    let arn = create_key(&e.upstream, "us-east-1");
    e.proxy.fail_key(
        "GenerateDataKey",
        &arn,
        Fault::aws(400, "AccessDeniedException"),
    );
    let o = e.run(&["encrypt", "p.bin", "-o", "p.seal", "--kms-key", &arn]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("AccessDeniedException"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("kms:GenerateDataKey"),
        "names the permission: {}",
        stderr(&o)
    );
    assert_eq!(e.proxy.calls("GenerateDataKey"), 1);
    assert_eq!(e.s.files(), vec!["p.bin"]);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn endless_throttling_gives_up_within_the_bound() {
    let Some(e) = setup("endless_throttling_gives_up_within_the_bound") else {
        return;
    };
    let arn = create_key(&e.upstream, "us-east-1");
    e.proxy.fail_first("GenerateDataKey", 1000, throttle());
    let o = e.run(&[
        "--kms-max-attempts",
        "3",
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "--kms-key",
        &arn,
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("throttled after 3 attempts"),
        "{}",
        stderr(&o)
    );
    assert_eq!(e.proxy.calls("GenerateDataKey"), 3);
    assert_eq!(e.s.files(), vec!["p.bin"], "no output or temporary left");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn a_disabled_key_in_one_region_does_not_block_the_other() {
    let Some(e) = setup("a_disabled_key_in_one_region_does_not_block_the_other") else {
        return;
    };
    let us = create_key(&e.upstream, "us-east-1");
    let eu = create_key(&e.upstream, "eu-west-1");
    let o = e.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "--kms-key",
        &us,
        "--kms-key",
        &eu,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));

    e.proxy
        .fail_key("Decrypt", &us, Fault::aws(400, "DisabledException"));
    let o = e.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "a.bin",
        "--kms-key",
        &us,
        "--kms-key",
        &eu,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(e.s.path("a.bin")).unwrap() == e.pt);
    assert_eq!(
        e.proxy.calls("Decrypt"),
        2,
        "disabled stanza, then the other region"
    );

    // Only the disabled key trusted: exit 5, naming the stanza and the reason.
    let o = e.run(&["decrypt", "p.seal", "-o", "b.bin", "--kms-key", &us]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("DisabledException"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&us), "{}", stderr(&o));
    assert!(!e.s.path("b.bin").exists());

    for (err, expect) in [
        ("NotFoundException", "NotFoundException"),
        ("KMSInvalidStateException", "pending deletion"),
    ] {
        let p = Proxy::start(&e.upstream);
        p.fail_key("Decrypt", &eu, Fault::aws(400, err));
        let o =
            e.s.cmd()
                .env("AWS_ENDPOINT_URL_KMS", &p.url)
                .args(["decrypt", "p.seal", "-o", "c.bin", "--kms-key", &eu])
                .output()
                .unwrap();
        assert_eq!(code(&o), 5, "{err}: {}", stderr(&o));
        assert!(stderr(&o).contains(expect), "{err}: {}", stderr(&o));
    }
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn rotation_by_reencrypt_keeps_the_data_key_inside_kms() {
    let Some(e) = setup("rotation_by_reencrypt_keeps_the_data_key_inside_kms") else {
        return;
    };
    let old = create_key(&e.upstream, "us-east-1");
    let new = create_key(&e.upstream, "us-east-1");
    let o = e.run(&[
        "encrypt",
        "p.bin",
        "-o",
        "p.seal",
        "--kms-key",
        &old,
        "-c",
        "app=x",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = std::fs::read(e.s.path("p.seal")).unwrap();

    let o = e.run(&[
        "rewrap",
        "p.seal",
        "--kms-key",
        &old,
        "--rotate-to-kms-key",
        &new,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(e.proxy.calls("ReEncrypt"), 1);
    assert_eq!(e.proxy.calls("Decrypt"), 0, "the data key never left KMS");
    assert_eq!(e.proxy.calls("Encrypt"), 0);

    let after = std::fs::read(e.s.path("p.seal")).unwrap();
    assert!(
        before[header_len(&before)..] == after[header_len(&after)..],
        "body identical"
    );
    let (h, _) = sealstream::Header::parse(&after).unwrap();
    assert_eq!(h.stanzas.len(), 1);
    assert_eq!(h.stanzas[0].key_id, new);

    let o = e.run(&["decrypt", "p.seal", "-o", "a.bin", "--kms-key", &old]);
    assert_eq!(
        code(&o),
        4,
        "the old key no longer opens it: {}",
        stderr(&o)
    );
    let o = e.run(&[
        "decrypt",
        "p.seal",
        "-o",
        "b.bin",
        "--kms-key",
        &new,
        "-c",
        "app=x",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(e.s.path("b.bin")).unwrap() == e.pt);

    // Nothing to rotate: a usage error that leaves the file alone.
    let o = e.run(&[
        "rewrap",
        "p.seal",
        "--kms-key",
        &old,
        "--rotate-to-kms-key",
        &new,
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(std::fs::read(e.s.path("p.seal")).unwrap(), after);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn too_many_wrapping_keys_are_refused_before_any_kms_call() {
    let Some(e) = setup("too_many_wrapping_keys_are_refused_before_any_kms_call") else {
        return;
    };
    let arn = create_key(&e.upstream, "us-east-1");
    let mut args: Vec<&str> = vec!["encrypt", "p.bin", "-o", "p.seal"];
    for _ in 0..33 {
        args.extend(["--kms-key", arn.as_str()]);
    }
    let o = e.run(&args);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("at most 32"), "{}", stderr(&o));
    assert_eq!(
        e.proxy.calls("GenerateDataKey") + e.proxy.calls("Encrypt"),
        0
    );
    assert_eq!(e.s.files(), vec!["p.bin"]);
}

fn many_files(e: &Env, n: usize, len: usize) {
    std::fs::create_dir_all(e.s.path("in")).unwrap();
    for i in 0..n {
        write(&e.s.path(&format!("in/f{i:02}.bin")), &data(len + i));
    }
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn encryption_cache_limits_hold_exactly_and_decryption_reuses_unwrapped_keys() {
    let Some(e) = setup("encryption_cache_limits_hold_exactly") else {
        return;
    };
    let arn = create_key(&e.upstream, "us-east-1");
    many_files(&e, 10, 1000);
    let o = e.run(&[
        "encrypt",
        "in",
        "--output-dir",
        "enc",
        "--kms-key",
        &arn,
        "--cache-max-age",
        "5m",
        "--cache-max-objects",
        "3",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        e.proxy.calls("GenerateDataKey"),
        4,
        "max-objects 3 over 10 objects"
    );

    let o = e.run(&["decrypt", "enc", "--output-dir", "dec", "--kms-key", &arn]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        e.proxy.calls("Decrypt"),
        4,
        "one Decrypt per distinct data key"
    );
    assert_eq!(e.proxy.calls("DescribeKey"), 0, "a key ARN needs no lookup");
    for i in 0..10 {
        let back = std::fs::read(e.s.path(&format!("dec/enc/in/f{i:02}.bin"))).unwrap();
        assert!(back == data(1000 + i));
    }
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn byte_limit_and_no_cache() {
    let Some(e) = setup("byte_limit_and_no_cache") else {
        return;
    };
    let arn = create_key(&e.upstream, "us-east-1");
    many_files(&e, 10, 100 * 1024);
    // Files are 100 KiB (+ i bytes): two fit in 250 KiB, a third does not.
    let o = e.run(&[
        "encrypt",
        "in",
        "--output-dir",
        "a",
        "--kms-key",
        &arn,
        "--cache-max-age",
        "5m",
        "--cache-max-bytes",
        "250KiB",
        "--jobs",
        "1",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(e.proxy.calls("GenerateDataKey"), 5);
    let o = e.run(&["encrypt", "in", "--output-dir", "b", "--kms-key", &arn]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        e.proxy.calls("GenerateDataKey"),
        15,
        "no cache: one per object"
    );
}
