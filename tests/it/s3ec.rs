//! Objects written by the real Amazon S3 Encryption Client for Python (scripts/s3ec_fixture.py,
//! PyPI amazon-s3-encryption-client-python in .tools/s3ec-venv, installed by scripts/test.sh)
//! against the emulator: every mode it writes is decrypted (to a file and to stdout) and
//! migrated by sealstream and compared byte for byte; every tamper case is refused with the
//! right exit code and nothing released; migration keeps Content-Type, user metadata and
//! tags, its result passes ranged decrypts, and it writes only over the version it read.

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::moto::{self, endpoint};
use common::*;

/// One run of the fixture script: its bucket, KMS keys and objects.
struct Fixture {
    bucket: String,
    kms_key: String,
    other_kms_key: String,
    objects: Vec<FixtureObject>,
    plain_dir: tempfile::TempDir,
}

struct FixtureObject {
    name: String,
    key: String,
    context: Vec<(String, String)>,
    content_type: Option<String>,
    metadata: Vec<(String, String)>,
    tags: Vec<(String, String)>,
}

impl Fixture {
    fn object(&self, name: &str) -> &FixtureObject {
        self.objects
            .iter()
            .find(|o| o.name == name)
            .unwrap_or_else(|| panic!("fixture has no object {name}"))
    }

    fn plain(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.plain_dir.path().join(format!("{name}.plain"))).expect("plaintext")
    }

    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// The venv's interpreter (S3EC_PYTHON overrides it).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("S3EC_PYTHON") {
        return p.into();
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/s3ec-venv/bin/python");
    assert!(
        p.exists(),
        "{} is missing: scripts/test.sh installs the Amazon S3 Encryption Client's venv \
         (or run scripts/test.sh's 'S3 Encryption Client' step by hand)",
        p.display()
    );
    p
}

/// Runs scripts/s3ec_fixture.py into a new bucket.
fn write_fixture(test: &str) -> Fixture {
    let up = endpoint(test).expect("emulator");
    let bucket = moto::unique_bucket("s3ec");
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/s3ec_fixture.py"))
        .args(["write", &bucket])
        .arg(plain_dir.path())
        .env("AWS_ENDPOINT_URL", format!("http://{up}"))
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run the fixture script");
    assert!(
        out.status.success(),
        "s3ec_fixture.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("fixture JSON");
    let pairs = |v: &serde_json::Value| -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = v
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        p.sort();
        p
    };
    let objects = v["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| FixtureObject {
            name: o["name"].as_str().unwrap().to_string(),
            key: o["key"].as_str().unwrap().to_string(),
            context: pairs(&o["context"]),
            content_type: o["content_type"].as_str().map(str::to_string),
            metadata: pairs(&o["metadata"]),
            tags: pairs(&o["tags"]),
        })
        .collect();
    Fixture {
        bucket,
        kms_key: v["kms_key"].as_str().unwrap().to_string(),
        other_kms_key: v["other_kms_key"].as_str().unwrap().to_string(),
        objects,
        plain_dir,
    }
}

/// The read-only fixture shared by the tests that do not change it.
fn shared(test: &str) -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| write_fixture(test))
}

/// The GCM modes sealstream reads (everything but CBC).
const READABLE: [&str; 10] = [
    "v3-put",
    "v3-put-ctx",
    "v3-empty",
    "v2-put",
    "v2-put-ctx",
    "v3-multipart",
    "v2-multipart",
    "v2-instruction",
    "v3-instruction",
    "v2-kms-legacy",
];

struct Run {
    s: Scratch,
    ep: String,
}

impl Run {
    fn new(test: &str) -> Run {
        Run {
            s: Scratch::new(),
            ep: format!("http://{}", endpoint(test).expect("emulator")),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = self.s.s3_cmd(&self.ep);
        c.args(["--part-size", "5MiB"]);
        c.args(args).output().expect("run sealstream")
    }

    /// `decrypt URL -o FILE ARGS`: (exit code, the output file if one exists).
    fn decrypt_file(&self, url: &str, extra: &[&str]) -> (Output, Option<Vec<u8>>) {
        let out = self.s.path("out.bin");
        let _ = std::fs::remove_file(&out);
        let mut args = vec!["decrypt", url, "-o", out.to_str().unwrap()];
        args.extend_from_slice(extra);
        let o = self.run(&args);
        (o, std::fs::read(&out).ok())
    }

    /// `decrypt URL ARGS` to stdout.
    fn decrypt_stdout(&self, url: &str, extra: &[&str]) -> Output {
        let mut args = vec!["decrypt", url];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// No file but `home` (and the named output, if kept) is left in the scratch dir.
    fn assert_no_temporaries(&self) {
        let left: Vec<String> = self
            .s
            .files()
            .into_iter()
            .filter(|n| n != "out.bin")
            .collect();
        assert!(left.is_empty(), "temporaries left: {left:?}");
    }
}

fn ctx_args(o: &FixtureObject) -> Vec<String> {
    o.context
        .iter()
        .flat_map(|(k, v)| ["-c".to_string(), format!("{k}={v}")])
        .collect()
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn every_mode_the_client_writes_decrypts_byte_for_byte_to_a_file_and_to_stdout() {
    let test = "every_mode_the_client_writes_decrypts_byte_for_byte_to_a_file_and_to_stdout";
    let f = shared(test);
    let r = Run::new(test);
    for name in READABLE {
        let o = f.object(name);
        let url = f.url(&o.key);
        let ctx = ctx_args(o);
        let mut extra: Vec<&str> = vec!["--kms-key", &f.kms_key];
        extra.extend(ctx.iter().map(String::as_str));
        let (out, bytes) = r.decrypt_file(&url, &extra);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        assert!(
            bytes.as_deref() == Some(&f.plain(name)[..]),
            "{name}: file differs"
        );
        let out = r.decrypt_stdout(&url, &extra);
        assert_eq!(code(&out), 0, "{name} to stdout: {}", stderr(&out));
        assert!(out.stdout == f.plain(name), "{name}: stdout differs");
        r.assert_no_temporaries();
    }
    // Discovery with the account allow-list reads it too; another account does not.
    let url = f.url(&f.object("v3-put").key);
    let (out, bytes) = r.decrypt_file(
        &url,
        &["--kms-discovery", "--kms-allow-account", "123456789012"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(bytes.unwrap(), f.plain("v3-put"));
    let (out, bytes) = r.decrypt_file(
        &url,
        &["--kms-discovery", "--kms-allow-account", "999999999999"],
    );
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(bytes.is_none());
    assert!(stderr(&out).contains("not allowed"), "{}", stderr(&out));
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn inspect_describes_the_client_format() {
    let test = "inspect_describes_the_client_format";
    let f = shared(test);
    let r = Run::new(test);
    let o = f.object("v3-put-ctx");
    let out = r.run(&["inspect", "--json", &f.url(&o.key)]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "amazon-s3-encryption-client");
    assert_eq!(v["client_format_version"], "V3");
    assert_eq!(v["key_commitment"], true);
    assert_eq!(v["key_wrapping"], "kms+context");
    assert_eq!(v["context"]["tenant"], "acme");
    assert_eq!(v["reserved_context"]["aws:x-amz-cek-alg"], "115");
    assert_eq!(v["plaintext_len"], 200_001);
    assert!(v["kms_key"].is_null());
    // --verify unwraps with the named key and reports which one.
    let out = r.run(&[
        "inspect",
        "--json",
        "--verify",
        "--kms-key",
        &f.kms_key,
        &f.url(&f.object("v2-instruction").key),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["client_format_version"], "V2");
    assert_eq!(v["content_cipher"], "AES/GCM/NoPadding");
    assert_eq!(v["verified"], true);
    assert_eq!(v["kms_key"], f.kms_key.as_str());
    assert!(
        v["instruction_file"]
            .as_str()
            .unwrap()
            .ends_with("v2-instruction.instruction")
    );
    // The exact text (keys in alphabetical order, null fields present).
    let up = endpoint(test).unwrap();
    let ctx = |o: &FixtureObject| -> String {
        let pairs: Vec<String> = o
            .context
            .iter()
            .map(|(k, v)| format!("{}:{}", q(k), q(v)))
            .collect();
        format!("{{{}}}", pairs.join(","))
    };
    let etag = |o: &FixtureObject| q(&moto::head_etag(&up, &f.bucket, &o.key).unwrap());
    let o = f.object("v3-put-ctx");
    let url = f.url(&o.key);
    let n = f.plain("v3-put-ctx").len();
    let out = r.run(&["inspect", "--json", &url]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            r#"{{"ciphertext_len":{},"client_format_version":"V3","content_cipher":"115 (ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY)","context":{},"format":"amazon-s3-encryption-client","instruction_file":null,"key_commitment":true,"key_wrapping":"kms+context","kms_key":null,"object":{{"etag":{},"url":"{url}"}},"plaintext_len":{n},"plaintext_len_authenticated":false,"reserved_context":{{"aws:x-amz-cek-alg":"115"}},"verified":null}}
"#,
            n + 16,
            ctx(o),
            etag(o)
        )
    );
    let o = f.object("v2-instruction");
    let url = f.url(&o.key);
    let n = f.plain("v2-instruction").len();
    let out = r.run(&[
        "inspect",
        "--json",
        "--verify",
        "--kms-key",
        &f.kms_key,
        &url,
    ]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            r#"{{"ciphertext_len":{},"client_format_version":"V2","content_cipher":"AES/GCM/NoPadding","context":{},"format":"amazon-s3-encryption-client","instruction_file":"{url}.instruction","key_commitment":false,"key_wrapping":"kms+context","kms_key":"{}","object":{{"etag":{},"url":"{url}"}},"plaintext_len":{n},"plaintext_len_authenticated":false,"reserved_context":{{"aws:x-amz-cek-alg":"AES/GCM/NoPadding"}},"verified":true}}
"#,
            n + 16,
            ctx(o),
            f.kms_key,
            etag(o)
        )
    );
    // Text form.
    let out = r.run(&["inspect", &f.url(&f.object("v2-kms-legacy").key)]);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("V2 metadata") && text.contains("key wrapping:   kms "),
        "{text}"
    );
}

/// `s` as a JSON string (quoted, escaped), for the exact-text checks.
fn q(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

/// The line of `stdout` (JSON Lines) about object `url`.
fn line_of<'a>(stdout: &'a str, url: &str) -> &'a str {
    let tag = format!(r#""object":"{url}""#);
    stdout
        .lines()
        .find(|l| l.contains(&tag))
        .unwrap_or_else(|| panic!("no line for {url} in {stdout}"))
}

/// A copy of fixture object `name` at `key` with `body` and `meta` changed by `edit`.
fn tampered(
    f: &Fixture,
    name: &str,
    key: &str,
    edit: impl FnOnce(&mut Vec<u8>, &mut Vec<(String, String)>),
) -> String {
    let up = endpoint("tampered").unwrap();
    let src = &f.object(name).key;
    let mut body = moto::get_object(&up, &f.bucket, src).expect("fixture object");
    let mut meta = moto::head_object(&up, &f.bucket, src)
        .expect("fixture object")
        .1;
    edit(&mut body, &mut meta);
    let m: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    moto::put_object(&up, &f.bucket, key, &body, &m);
    f.url(key)
}

fn set(meta: &mut [(String, String)], k: &str, v: &str) {
    meta.iter_mut()
        .find(|(n, _)| n == k)
        .unwrap_or_else(|| panic!("no {k}"))
        .1 = v.to_string();
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn tampered_objects_are_refused_with_nothing_released() {
    let test = "tampered_objects_are_refused_with_nothing_released";
    let f = shared(test);
    let r = Run::new(test);
    let up = endpoint(test).unwrap();
    let key = f.kms_key.as_str();
    let meta_of = |name: &str| {
        moto::head_object(&up, &f.bucket, &f.object(name).key)
            .unwrap()
            .1
    };
    let cases: Vec<(&str, String, Vec<&str>, i32)> = vec![
        (
            "flipped body byte (V3)",
            tampered(f, "v3-put", "t/flip3", |b, _| b[1000] ^= 1),
            vec![],
            4,
        ),
        (
            "flipped tag byte (V2)",
            tampered(f, "v2-put", "t/flip2", |b, _| {
                let n = b.len();
                b[n - 1] ^= 0x80
            }),
            vec![],
            4,
        ),
        (
            "truncated body",
            tampered(f, "v2-put", "t/trunc", |b, _| b.truncate(b.len() - 1)),
            vec![],
            4,
        ),
        (
            "body shorter than a tag",
            tampered(f, "v3-put", "t/short", |b, _| b.truncate(10)),
            vec![],
            4,
        ),
        (
            "metadata swapped between two objects (V3, same context)",
            tampered(f, "v3-put", "t/swap3", |_, m| *m = meta_of("v3-empty")),
            vec![],
            4,
        ),
        (
            "metadata swapped between two objects (V2)",
            tampered(f, "v2-put", "t/swap2", |_, m| *m = meta_of("v2-put-ctx")),
            vec!["-c", "tenant=acme"],
            4,
        ),
        (
            "stored context edited (KMS refuses the ciphertext)",
            tampered(f, "v3-put-ctx", "t/ctx", |_, m| {
                set(
                    m,
                    "x-amz-t",
                    r#"{"tenant": "evil", "purpose": "fixture", "aws:x-amz-cek-alg": "115"}"#,
                )
            }),
            vec!["-c", "tenant=evil"],
            4,
        ),
        (
            "content cipher unbound from the context",
            tampered(f, "v2-put-ctx", "t/unbound", |_, m| {
                set(
                    m,
                    "x-amz-matdesc",
                    r#"{"tenant": "acme", "purpose": "fixture"}"#,
                )
            }),
            vec![],
            4,
        ),
        (
            "changed commitment (V3)",
            tampered(f, "v3-put", "t/commit", |_, m| {
                set(m, "x-amz-d", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")
            }),
            vec![],
            4,
        ),
        (
            "changed message id (V3)",
            tampered(f, "v3-put", "t/msgid", |_, m| {
                set(m, "x-amz-i", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")
            }),
            vec![],
            4,
        ),
        (
            "V3 read as V2 (format confusion in the metadata)",
            tampered(f, "v3-put", "t/confuse", |_, m| {
                m.push(("x-amz-key-v2".into(), "AAAA".into()))
            }),
            vec![],
            4,
        ),
        (
            "bad base64 in the metadata",
            tampered(f, "v2-put", "t/b64", |_, m| set(m, "x-amz-iv", "!!!!")),
            vec![],
            4,
        ),
        (
            "unknown content algorithm",
            tampered(f, "v3-put", "t/alg", |_, m| set(m, "x-amz-c", "116")),
            vec![],
            4,
        ),
    ];
    for (what, url, extra, want) in cases {
        let mut args: Vec<&str> = vec!["--kms-key", key];
        args.extend(extra.iter().copied());
        let (out, bytes) = r.decrypt_file(&url, &args);
        assert_eq!(code(&out), want, "{what}: {}", stderr(&out));
        assert!(bytes.is_none(), "{what}: an output file was left");
        let out = r.decrypt_stdout(&url, &args);
        assert_eq!(code(&out), want, "{what} to stdout: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{what}: bytes reached stdout");
        r.assert_no_temporaries();
    }
    // A wrong context asked for: refused before any KMS call.
    let url = f.url(&f.object("v3-put-ctx").key);
    let (out, bytes) = r.decrypt_file(&url, &["--kms-key", key, "-c", "tenant=evil"]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(bytes.is_none() && stderr(&out).contains("context mismatch"));
    // The wrong KMS key: moto answers AccessDeniedException (exit 5); real KMS answers
    // IncorrectKeyException (exit 4). Either way nothing is written.
    let (out, bytes) = r.decrypt_file(&url, &["--kms-key", &f.other_kms_key]);
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(bytes.is_none());
    // No key named at all: nothing to unwrap with (exit 4), no KMS call.
    let (out, bytes) = r.decrypt_file(&url, &[]);
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    assert!(
        bytes.is_none() && stderr(&out).contains("--kms-key"),
        "{}",
        stderr(&out)
    );
    // Unauthenticated CBC: refused (exit 2), whatever the key.
    let (out, bytes) = r.decrypt_file(&f.url(&f.object("v2-cbc").key), &["--kms-key", key]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(bytes.is_none() && stderr(&out).contains("unauthenticated"));
    // A ranged read of an S3EC object is a usage error (its body cannot be read in part).
    let (out, bytes) = r.decrypt_file(
        &f.url(&f.object("v3-put").key),
        &["--kms-key", key, "--range", "0-9"],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(bytes.is_none() && stderr(&out).contains("migrate"));
    r.assert_no_temporaries();
}

fn tags(up: &str, bucket: &str, key: &str) -> Vec<(String, String)> {
    moto::get_object_tagging(up, bucket, key)
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn migrate_keeps_content_metadata_and_tags_and_the_result_reads_with_ranges() {
    let test = "migrate_keeps_content_metadata_and_tags_and_the_result_reads_with_ranges";
    let f = write_fixture(test);
    let r = Run::new(test);
    let up = endpoint(test).unwrap();
    let prefix = f.url("fixture/");
    let etags = |f: &Fixture| -> Vec<Option<String>> {
        f.objects
            .iter()
            .map(|o| moto::head_etag(&up, &f.bucket, &o.key))
            .collect()
    };
    // --dryrun: one report line per object, nothing written.
    let before = etags(&f);
    let out = r.run(&[
        "migrate",
        &prefix,
        "--recursive",
        "--dryrun",
        "--kms-key",
        &f.kms_key,
    ]);
    assert_eq!(code(&out), 2, "CBC is refused: {}", stderr(&out));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), f.objects.len(), "{lines:?}");
    for l in &lines {
        let cbc = l["object"].as_str().unwrap().ends_with("v2-cbc");
        assert_eq!(
            l["status"],
            if cbc { "failed" } else { "would-migrate" },
            "{l}"
        );
    }
    assert_eq!(etags(&f), before, "--dryrun changed an object");
    // The exact text of each kind of line (keys in alphabetical order; null present).
    let dry = String::from_utf8(out.stdout).unwrap();
    let etag_of = |name: &str| {
        let i = f.objects.iter().position(|o| o.name == name).unwrap();
        q(before[i].as_deref().unwrap())
    };
    let (v3, v2i, cbc) = (
        f.url(&f.object("v3-put").key),
        f.url(&f.object("v2-instruction").key),
        f.url(&f.object("v2-cbc").key),
    );
    let n3 = f.plain("v3-put").len();
    let kms = &f.kms_key;
    assert_eq!(
        line_of(&dry, &v3),
        format!(
            r#"{{"format":"V3","instruction_file":null,"kms_key":"{kms}","object":"{v3}","plaintext_bytes":{n3},"source_etag":{},"status":"would-migrate"}}"#,
            etag_of("v3-put")
        )
    );
    assert_eq!(
        line_of(&dry, &v2i),
        format!(
            r#"{{"format":"V2","instruction_file":{},"kms_key":"{kms}","object":"{v2i}","plaintext_bytes":{},"source_etag":{},"status":"would-migrate"}}"#,
            q(&format!("{}.instruction", f.object("v2-instruction").key)),
            f.plain("v2-instruction").len(),
            etag_of("v2-instruction")
        )
    );
    assert_eq!(
        line_of(&dry, &cbc),
        format!(
            r#"{{"error":"{cbc}: refused: the content is AES/CBC/PKCS5Padding, which is unauthenticated: tampering would go unnoticed, so sealstream refuses to decrypt it","exit_code":2,"object":"{cbc}","status":"failed"}}"#
        )
    );
    // The migration itself.
    let out = r.run(&["migrate", &prefix, "--recursive", "--kms-key", &f.kms_key]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // 64 KiB chunks, a 16-byte tag each.
    let body = n3 + 16 * n3.div_ceil(65536).max(1);
    assert_eq!(
        line_of(&String::from_utf8_lossy(&out.stdout), &v3),
        format!(
            r#"{{"body_bytes":{body},"format":"V3","instruction_file":null,"keys":["aws-kms:{kms}"],"kms_key":"{kms}","object":"{v3}","parts":0,"plaintext_bytes":{n3},"source_etag":{},"status":"migrated"}}"#,
            etag_of("v3-put")
        )
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let migrated = lines.iter().filter(|l| l["status"] == "migrated").count();
    assert_eq!(migrated, READABLE.len(), "{lines:?}");
    for name in READABLE {
        let o = f.object(name);
        let url = f.url(&o.key);
        let ctx = ctx_args(o);
        let mut extra: Vec<&str> = vec!["--kms-key", &f.kms_key];
        extra.extend(ctx.iter().map(String::as_str));
        // Now a sealstream object.
        let out = r.run(&["inspect", "--json", &url]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["version"], 1, "{name}: {v}");
        let (out, bytes) = r.decrypt_file(&url, &extra);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        assert!(
            bytes.as_deref() == Some(&f.plain(name)[..]),
            "{name} differs"
        );
        let pt = f.plain(name);
        if pt.len() > 100_000 {
            let mut ranged = extra.clone();
            ranged.extend(["--range", "70000-99999"]);
            let out = r.decrypt_stdout(&url, &ranged);
            assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
            assert!(out.stdout == pt[70_000..100_000], "{name}: range differs");
        }
        // What the object carried beside its body is kept; the S3EC metadata is gone.
        let (_, meta, ct) = moto::head_object(&up, &f.bucket, &o.key).unwrap();
        assert!(
            meta.iter().all(|(k, _)| !k.starts_with("x-amz-")),
            "{name}: {meta:?}"
        );
        for (k, v) in &o.metadata {
            assert!(meta.contains(&(k.clone(), v.clone())), "{name}: lost {k}");
        }
        if let Some(want) = &o.content_type {
            assert_eq!(ct.as_deref(), Some(want.as_str()), "{name}");
        }
        assert_eq!(tags(&up, &f.bucket, &o.key), o.tags, "{name}: tags");
        // Instruction files go with the migration.
        assert!(
            moto::get_object(&up, &f.bucket, &format!("{}.instruction", o.key)).is_none(),
            "{name}: instruction file left"
        );
    }
    // The CBC object is untouched.
    let cbc = f.object("v2-cbc");
    let (_, meta, _) = moto::head_object(&up, &f.bucket, &cbc.key).unwrap();
    assert!(meta.iter().any(|(k, _)| k == "x-amz-key-v2"));
    assert!(moto::list_multipart_uploads(&up, &f.bucket).is_empty());
    // A second run skips what is already migrated.
    let out = r.run(&[
        "migrate",
        &f.url(&f.object("v3-put").key),
        "--kms-key",
        &f.kms_key,
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            r#"{{"object":"{v3}","reason":"already a sealstream object","status":"skipped"}}
"#
        )
    );
    // With --recursive, an object that is neither is skipped too.
    moto::put_object(&up, &f.bucket, "plain/x", b"plain", &[]);
    let plain = f.url("plain/");
    let out = r.run(&["migrate", &plain, "--recursive", "--kms-key", &f.kms_key]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            r#"{{"object":"{plain}x","reason":"not an Amazon S3 Encryption Client object","status":"skipped"}}
"#
        )
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn migrate_refuses_a_tampered_object_and_writes_only_over_the_version_it_read() {
    let test = "migrate_refuses_a_tampered_object_and_writes_only_over_the_version_it_read";
    let f = shared(test);
    let r = Run::new(test);
    let up = endpoint(test).unwrap();
    // Tampered: nothing is stored, the object stays as it was, no upload is left.
    for (what, url) in [
        (
            "flipped",
            tampered(f, "v3-multipart", "m/flip", |b, _| b[6 << 20] ^= 1),
        ),
        (
            "truncated",
            tampered(f, "v2-put", "m/trunc", |b, _| b.truncate(b.len() - 5)),
        ),
    ] {
        let key = url
            .trim_start_matches(&format!("s3://{}/", f.bucket))
            .to_string();
        let before = moto::get_object(&up, &f.bucket, &key).unwrap();
        let out = r.run(&["migrate", &url, "--kms-key", &f.kms_key]);
        assert_eq!(code(&out), 4, "{what}: {}", stderr(&out));
        assert_eq!(
            moto::get_object(&up, &f.bucket, &key).unwrap(),
            before,
            "{what}"
        );
        let (_, meta, _) = moto::head_object(&up, &f.bucket, &key).unwrap();
        assert!(
            meta.iter().all(|(k, _)| !k.starts_with("sealstream")),
            "{what}"
        );
        assert!(
            moto::list_multipart_uploads(&up, &f.bucket).is_empty(),
            "{what}"
        );
    }
    // Replaced after the body was read, before the new object is written: the PutObject
    // carries If-Match with the ETag read, S3 answers 412 (exit 6) and the newer object
    // stays. The proxy holds the PutObject while the test replaces the object.
    let url = tampered(f, "v2-put-ctx", "m/race", |_, _| {});
    let proxy = common::proxy::Proxy::start(&up);
    let held = proxy.pause("PutObject", 0);
    let newer = b"written by someone else meanwhile".to_vec();
    let out = std::thread::scope(|sc| {
        let cli = sc.spawn(|| {
            let mut c = r.s.s3_cmd(&proxy.url);
            c.args(["migrate", &url, "--kms-key", &f.kms_key])
                .output()
                .expect("run sealstream")
        });
        held.wait();
        moto::put_object(&up, &f.bucket, "m/race", &newer, &[("owner", "carol")]);
        held.release();
        cli.join().expect("migrate thread")
    });
    assert_eq!(code(&out), 6, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("PreconditionFailed"),
        "{}",
        stderr(&out)
    );
    assert_eq!(moto::get_object(&up, &f.bucket, "m/race").unwrap(), newer);

    // Replaced before the body is read: the ETag-pinned GET of the body fails (412) and
    // nothing is written. Driven through the library so the replacement lands exactly
    // between opening and reading.
    let url = tampered(f, "v2-put-ctx", "m/race2", |_, _| {});
    let s3url = sealstream::s3::S3Url::parse(&url).unwrap();
    let s3 = sealstream::s3::blocking::S3::connect(sealstream::s3::S3Settings {
        endpoint_url: Some(format!("http://{up}")),
        ..Default::default()
    })
    .unwrap();
    let kms = sealstream::kms::blocking::Kms::connect(sealstream::kms::KmsSettings {
        endpoint_url: Some(format!("http://{up}")),
        ..Default::default()
    })
    .unwrap();
    use sealstream::s3::s3ec::{self, blocking as ec};
    let obj = ec::open(&s3, &s3url).unwrap().expect("an S3EC object");
    let trust = s3ec::KmsTrust {
        keys: vec![f.kms_key.clone()],
        ..Default::default()
    };
    let unlocked = ec::unlock(&kms, &obj, &trust, &Default::default()).unwrap();
    moto::put_object(&up, &f.bucket, "m/race2", &newer, &[("owner", "carol")]);
    let key = sealstream::LocalKey::generate().unwrap();
    let keys: [&dyn sealstream::KeyProvider; 1] = [&key];
    let sealing =
        sealstream::envelope::Sealing::for_providers(&keys, &sealstream::EncryptParams::default())
            .unwrap();
    let engine = sealstream::engine::EngineOptions::default();
    let err = ec::migrate(
        &s3,
        &obj,
        &unlocked,
        sealing,
        &s3ec::MigrateOptions { engine: &engine },
    )
    .unwrap_err();
    assert_eq!(
        err.service_error().map(|s| s.kind()),
        Some(sealstream::error::ServiceErrorKind::PreconditionFailed),
        "{err}"
    );
    assert_eq!(moto::get_object(&up, &f.bucket, "m/race2").unwrap(), newer);
    assert!(moto::list_multipart_uploads(&up, &f.bucket).is_empty());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn recursive_decrypt_of_a_prefix_reads_client_and_sealstream_objects_authenticated() {
    let test = "recursive_decrypt_of_a_prefix_reads_client_and_sealstream_objects_authenticated";
    let f = write_fixture(test);
    let r = Run::new(test);
    // Beside the client's objects: a sealstream object (the default local key) and a
    // client object with one body byte flipped (its tag fails at the very end).
    let sealed_plain: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let src = r.s.path("sealed.src");
    std::fs::write(&src, &sealed_plain).unwrap();
    let out = r.run(&[
        "encrypt",
        src.to_str().unwrap(),
        "-o",
        &f.url("fixture/sealed.bin"),
    ]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    std::fs::remove_file(&src).unwrap();
    tampered(&f, "v3-multipart", "fixture/zz-flipped", |b, _| {
        b[7 << 20] ^= 1
    });
    let dir = r.s.path("out");
    let out = r.run(&[
        "decrypt",
        &f.url("fixture/"),
        "-o",
        dir.to_str().unwrap(),
        "--recursive",
        "--json",
        "--kms-key",
        &f.kms_key,
    ]);
    // Two failures (CBC refused, the flipped tag), reported; everything else decrypted.
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("v2-cbc") && err.contains("zz-flipped"),
        "{err}"
    );
    for name in READABLE {
        let got = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}\n{err}"));
        assert!(got == f.plain(name), "{name}: differs");
    }
    assert_eq!(std::fs::read(dir.join("sealed.bin")).unwrap(), sealed_plain);
    // Nothing of the refused objects, no instruction file taken for an object, no
    // temporary left behind.
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut want: Vec<String> = READABLE.iter().map(|s| s.to_string()).collect();
    want.push("sealed.bin".into());
    want.sort();
    assert_eq!(files, want);
    // One JSON line per object: the client's name their cipher and plaintext size.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let v3 = lines
        .iter()
        .find(|l| {
            l["input"]
                .as_str()
                .is_some_and(|i| i.ends_with("/v3-multipart"))
        })
        .unwrap_or_else(|| panic!("no report for v3-multipart: {lines:?}"));
    assert_eq!(v3["plaintext_bytes"], f.plain("v3-multipart").len() as u64);
    assert!(
        lines.iter().any(|l| l["input"]
            .as_str()
            .is_some_and(|i| i.ends_with("/zz-flipped"))
            && l["exit_code"] == 4),
        "{lines:?}"
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn migrate_reads_a_store_without_tagging_as_no_tags_and_still_stops_on_other_failures() {
    let test = "migrate_reads_a_store_without_tagging_as_no_tags_and_still_stops_on_other_failures";
    let f = shared(test);
    let r = Run::new(test);
    let up = endpoint(test).unwrap();
    let proxy = common::proxy::Proxy::start(&up);
    let via_proxy = |url: &str| {
        let mut c = r.s.s3_cmd(&proxy.url);
        c.args(["migrate", url, "--kms-key", &f.kms_key])
            .output()
            .expect("run sealstream")
    };
    // Refused for another reason: the migration stops and the object stays as it was.
    let url = tampered(f, "v3-put", "m/tags-denied", |_, _| {});
    let before = moto::get_object(&up, &f.bucket, "m/tags-denied").unwrap();
    proxy.fail_key(
        "GetObjectTagging",
        "m/tags-denied",
        common::proxy::Fault::aws(403, "AccessDenied"),
    );
    let out = via_proxy(&url);
    assert_ne!(code(&out), 0, "{}", stderr(&out));
    assert!(stderr(&out).contains("AccessDenied"), "{}", stderr(&out));
    assert_eq!(
        moto::get_object(&up, &f.bucket, "m/tags-denied").unwrap(),
        before
    );
    // s3s-fs and some S3-compatible stores answer NotImplemented (501): no tags to keep.
    let url = tampered(f, "v3-put", "m/no-tagging", |_, _| {});
    proxy.fail_key(
        "GetObjectTagging",
        "m/no-tagging",
        common::proxy::Fault::aws(501, "NotImplemented"),
    );
    proxy.reset_counters();
    let out = via_proxy(&url);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        proxy.calls("GetObjectTagging") >= 1,
        "tags were not asked for"
    );
    let (out, bytes) = r.decrypt_file(&url, &["--kms-key", &f.kms_key]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(bytes.as_deref() == Some(&f.plain("v3-put")[..]));
    assert!(tags(&up, &f.bucket, "m/no-tagging").is_empty());
}
