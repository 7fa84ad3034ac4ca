//! The command line as a user meets it (issue 17, terminal side): `--endpoint-url`, help
//! text (snapshots under tests/snapshots/), completions and man page, durations, and
//! terminal behaviour. Every test runs the `sealstream` binary.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.
#![cfg(feature = "cli")]

mod common;

use std::process::{Command, Output};

use common::moto::{self, endpoint};
use common::*;

/// A command with static test credentials and NO endpoint in the environment: whatever
/// endpoint the binary uses must come from its command line.
fn no_endpoint_env(s: &Scratch) -> Command {
    let mut c = s.cmd();
    c.env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .env_remove("AWS_ENDPOINT_URL_KMS")
        .env_remove("AWS_PROFILE")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Nothing may fall back to a real AWS file or profile.
        .env("AWS_CONFIG_FILE", s.path("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.path("aws-credentials"));
    c
}

fn run(mut c: Command, args: &[&str]) -> Output {
    c.args(args).output().expect("run sealstream")
}

// ---- --endpoint-url ----

/// With no endpoint variable at all, `--endpoint-url` alone reaches the emulator for both
/// S3 (upload, download) and KMS (GenerateDataKey, Decrypt): an S3 + KMS round trip.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn endpoint_url_flag_alone_reaches_s3_and_kms() {
    let Some(auth) = endpoint("endpoint_url_flag_alone_reaches_s3_and_kms") else {
        return;
    };
    let url = format!("http://{auth}");
    let bucket = moto::unique_bucket("ssep");
    moto::create_bucket(&auth, &bucket);
    let arn = moto::create_key(&auth, "us-east-1");
    let s = Scratch::new();
    let pt = data(300_000);
    write(&s.path("p.bin"), &pt);
    let obj = format!("s3://{bucket}/dir/p.bin.seal");
    // The flag before the subcommand (global) for encrypt, after it for decrypt.
    let o = run(
        no_endpoint_env(&s),
        &[
            "--endpoint-url",
            &url,
            "encrypt",
            "p.bin",
            "-o",
            &obj,
            "--kms-key",
            &arn,
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        moto::head_object(&auth, &bucket, "dir/p.bin.seal").is_some(),
        "the object is not in the emulator"
    );
    let o = run(
        no_endpoint_env(&s),
        &[
            "decrypt",
            &obj,
            "-o",
            "back.bin",
            "--kms-key",
            &arn,
            "--endpoint-url",
            &url,
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("back.bin")).unwrap(), pt);
}

/// Precedence: the flag wins over the service variables and AWS_ENDPOINT_URL, which here
/// name a port where nothing listens (so a request that obeyed them would be refused).
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn endpoint_url_flag_wins_over_the_variables() {
    let Some(auth) = endpoint("endpoint_url_flag_wins_over_the_variables") else {
        return;
    };
    let url = format!("http://{auth}");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let bucket = moto::unique_bucket("ssep");
    moto::create_bucket(&auth, &bucket);
    let arn = moto::create_key(&auth, "us-east-1");
    let s = Scratch::new();
    write(&s.path("p.bin"), b"precedence");
    let obj = format!("s3://{bucket}/p.seal");
    let with_dead_env = || {
        let mut c = no_endpoint_env(&s);
        c.env("AWS_ENDPOINT_URL", &dead)
            .env("AWS_ENDPOINT_URL_S3", &dead)
            .env("AWS_ENDPOINT_URL_KMS", &dead)
            .args(["--s3-max-attempts", "1", "--kms-max-attempts", "1"]);
        c
    };
    // Without the flag the variables are obeyed: refused, S3 exit 6.
    let o = run(with_dead_env(), &["encrypt", "p.bin", "-o", &obj]);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    // KMS alone (local output): refused, key service exit 5.
    let o = run(
        with_dead_env(),
        &["encrypt", "p.bin", "-o", "p.seal", "--kms-key", &arn],
    );
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    let o = run(
        with_dead_env(),
        &[
            "--endpoint-url",
            &url,
            "encrypt",
            "p.bin",
            "-o",
            &obj,
            "--kms-key",
            &arn,
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(
        with_dead_env(),
        &["--endpoint-url", &url, "decrypt", &obj, "--kms-key", &arn],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout, b"precedence");
}

/// A value that is not an http(s) URL with a host is a usage error before anything runs.
#[test]
fn endpoint_url_must_be_an_http_url() {
    let s = Scratch::new();
    write(&s.path("p.bin"), b"x");
    for bad in ["localhost:9000", "ftp://h", "http://", "https:///x"] {
        let o = run(
            no_endpoint_env(&s),
            &[
                "--endpoint-url",
                bad,
                "encrypt",
                "p.bin",
                "-o",
                "s3://some-bucket/k",
            ],
        );
        assert_eq!(code(&o), 2, "{bad}: {}", stderr(&o));
        assert!(stderr(&o).contains("--endpoint-url"), "{}", stderr(&o));
    }
}
