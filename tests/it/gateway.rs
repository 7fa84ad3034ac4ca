//! `sealstream serve` with real S3 clients nobody here wrote: the AWS CLI v2 (Debian's
//! `awscli`, run as /usr/bin/aws) and boto3 (from the emulator's venv), against moto
//! upstream and the gateway started as a child process on a free port.
//!
//! scripts/test.sh installs both clients. Multipart uploads (part-wise objects, FORMAT.md
//! §17) have their own tests at the end.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::moto::{self, endpoint, unique};
use common::*;

mod deletes;
mod header_cache;
mod part_copy;
mod reload;
mod upstream_payload;

const CLIENT_ID: &str = "GWCLIENTKEY0001";
const CLIENT_SECRET: &str = "gateway-client-secret-0001";
const AWS: &str = "/usr/bin/aws";

/// A running gateway (killed on drop) and the scratch directory it uses.
struct Gateway {
    child: Child,
    url: String,
    authority: String,
    upstream: String,
    scratch: Scratch,
    key: PathBuf,
}

impl Gateway {
    fn start(test: &str, extra: &[&str]) -> Gateway {
        Gateway::start_with_env(test, extra, &[])
    }

    fn start_with_env(test: &str, extra: &[&str], env: &[(&str, &str)]) -> Gateway {
        let upstream = endpoint(test).expect("emulator");
        let scratch = Scratch::new();
        let creds = client_credentials(&scratch);
        // The same local key in every gateway (objects of one test's gateways interoperate),
        // unless the test gives a KMS key: then only that one, so KMS is really needed.
        let key = scratch.keyfile("gw.key", &common::key(7));
        let mut cmd = serve_cmd(&scratch);
        cmd.args(["--listen", "127.0.0.1:0"]);
        if !extra.contains(&"--kms-key") {
            cmd.arg("-k").arg(&key);
        }
        cmd.arg("--client-credentials")
            .arg(&creds)
            .args(extra)
            .envs(env.iter().copied());
        Gateway::spawn(cmd, scratch, upstream, key)
    }

    /// Runs `cmd` (a `serve` listening on port 0; stderr to the scratch's gateway.log)
    /// and waits for its first stdout line, which names the address.
    fn spawn(mut cmd: Command, scratch: Scratch, upstream: String, key: PathBuf) -> Gateway {
        cmd.stdout(Stdio::piped())
            .stderr(std::fs::File::create(scratch.path("gateway.log")).expect("log file"));
        let mut child = cmd.spawn().expect("start sealstream serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("the gateway did not start: {}", log_of(&scratch)));
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}: {}", log_of(&scratch)))
            .to_string();
        let authority = url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string();
        Gateway {
            child,
            url,
            authority,
            upstream,
            scratch,
            key,
        }
    }

    fn log(&self) -> String {
        log_of(&self.scratch)
    }

    /// The AWS CLI v2 against the gateway, with the client credentials only.
    fn aws(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut c = Command::new(AWS);
        c.args(["--endpoint-url", &self.url])
            .args(args)
            .current_dir(self.scratch.dir.path());
        client_env(&mut c, &self.scratch);
        run_with_stdin(c, stdin)
    }

    /// A boto3 script (the emulator's venv) with `GW`, `UPSTREAM`, `BUCKET` and the
    /// client credentials in its environment; it must print `ALL OK` last.
    fn python(&self, script: &str, bucket: &str, extra_env: &[(&str, String)]) -> String {
        let path = self.scratch.path("t.py");
        write(&path, format!("{PY_PRELUDE}\n{script}").as_bytes());
        let mut c = Command::new(python());
        c.arg(&path)
            .current_dir(self.scratch.dir.path())
            .env("GW", &self.url)
            .env("UPSTREAM", format!("http://{}", self.upstream))
            .env("BUCKET", bucket);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        client_env(&mut c, &self.scratch);
        let o = c.output().expect("run python");
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success() && out.trim_end().ends_with("ALL OK"),
            "python failed ({:?}):\n{out}\n{}\n--- gateway log:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stderr),
            self.log()
        );
        out
    }

    /// The value of one series in the gateway's `/metrics` (served without a signature).
    fn metric(&self, series: &str) -> u64 {
        let metrics = raw_get(&self.authority, "/metrics");
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
    }

    fn bucket(&self) -> String {
        let b = unique("gw");
        moto::create_bucket(&self.upstream, &b);
        b
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `sealstream serve` with the scratch's home and none of the test machine's
/// `SEALSTREAM_…` options.
fn serve_cmd(s: &Scratch) -> Command {
    let mut cmd = Command::new(bin());
    cmd.env("SEALSTREAM_HOME", s.path("home"))
        .current_dir(s.dir.path())
        .arg("serve");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SEALSTREAM_") && k != "SEALSTREAM_HOME" {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The client-credentials file with the test client.
fn client_credentials(s: &Scratch) -> PathBuf {
    let creds = s.path("clients.ini");
    write(
        &creds,
        format!(
            "# test clients\n[tester]\naws_access_key_id = {CLIENT_ID}\naws_secret_access_key = {CLIENT_SECRET}\n"
        )
        .as_bytes(),
    );
    creds
}

fn log_of(s: &Scratch) -> String {
    std::fs::read_to_string(s.path("gateway.log")).unwrap_or_default()
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/moto-venv/bin/python")
}

/// The client side's environment: the gateway's client credentials, no AWS files or
/// endpoint of the machine (the upstream's credentials must never reach a client).
fn client_env(c: &mut Command, s: &Scratch) {
    c.env("AWS_ACCESS_KEY_ID", CLIENT_ID)
        .env("AWS_SECRET_ACCESS_KEY", CLIENT_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", s.path("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", s.path("aws-credentials"))
        .env("AWS_PAGER", "")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_CA_BUNDLE");
}

fn run_with_stdin(mut c: Command, stdin: Option<&[u8]>) -> Output {
    c.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn client");
    if let Some(input) = stdin {
        let mut w = child.stdin.take().expect("stdin");
        w.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("client output")
}

fn ok(o: &Output, what: &str) {
    assert!(
        o.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Helpers every boto3 script gets: `c` (client through the gateway), `up` (straight to
/// moto), `err_code(fn)`.
const PY_PRELUDE: &str = r#"
import os, sys, json, hashlib, base64, urllib.request, urllib.error
import boto3
from botocore.config import Config
GW, UP, B = os.environ["GW"], os.environ["UPSTREAM"], os.environ["BUCKET"]
cfg = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1, "mode": "standard"})
c = boto3.client("s3", endpoint_url=GW, region_name="us-east-1", config=cfg)
up = boto3.client("s3", endpoint_url=UP, region_name="us-east-1", aws_access_key_id="testing",
                  aws_secret_access_key="testing", config=Config(s3={"addressing_style": "path"}))
def err(f):
    try:
        f()
    except c.exceptions.ClientError as e:
        return (e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"])
    raise AssertionError("expected an error")
def metric(series):
    # one series of the gateway's /metrics (served without a signature)
    text = urllib.request.urlopen(GW + "/metrics").read().decode()
    for line in text.splitlines():
        if line.startswith(series + " "):
            return int(line.split()[-1])
    raise AssertionError(series + " missing from /metrics")
def upstream_keys(prefix=""):
    r = up.list_objects_v2(Bucket=B, Prefix=prefix)
    return sorted(o["Key"] for o in r.get("Contents", []))
"#;

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn aws_cli_v2_round_trip() {
    let gw = Gateway::start("aws_cli_v2_round_trip", &[]);
    let b = gw.bucket();
    let v = Command::new(AWS)
        .arg("--version")
        .output()
        .expect("aws --version");
    assert!(
        String::from_utf8_lossy(&v.stdout).starts_with("aws-cli/2."),
        "{AWS} is not the AWS CLI v2: {}",
        String::from_utf8_lossy(&v.stdout)
    );
    let plain = data(300_000);
    write(&gw.scratch.path("small.bin"), &plain);
    let dst = format!("s3://{b}/dir/small.bin");
    ok(
        &gw.aws(&["s3", "cp", "small.bin", &dst], None),
        "aws s3 cp up",
    );
    // Stored encrypted: the upstream body is not the plaintext and has our metadata.
    let raw = moto::get_object(&gw.upstream, &b, "dir/small.bin").expect("stored upstream");
    assert_eq!(
        raw.len(),
        300_000 + 5 * 16,
        "5 chunks of 64 KiB, one tag each"
    );
    assert!(!raw.windows(64).any(|w| w == &plain[1000..1064]));
    let (_, meta, _) = moto::head_object(&gw.upstream, &b, "dir/small.bin").expect("head");
    assert!(
        meta.iter().any(|(k, v)| k == "sealstream" && v == "1"),
        "{meta:?}"
    );

    ok(
        &gw.aws(&["s3", "cp", &dst, "back.bin"], None),
        "aws s3 cp down",
    );
    assert!(std::fs::read(gw.scratch.path("back.bin")).unwrap() == plain);

    let ls = gw.aws(&["s3", "ls", &format!("s3://{b}/dir/")], None);
    ok(&ls, "aws s3 ls");
    let ls = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(
        ls.contains(" 300000 small.bin"),
        "plaintext size listed: {ls}"
    );

    let r = gw.aws(
        &[
            "s3api",
            "get-object",
            "--bucket",
            &b,
            "--key",
            "dir/small.bin",
            "--range",
            "bytes=70000-70099",
            "range.out",
        ],
        None,
    );
    ok(&r, "aws s3api get-object --range");
    assert!(String::from_utf8_lossy(&r.stdout).contains("bytes 70000-70099/300000"));
    assert!(std::fs::read(gw.scratch.path("range.out")).unwrap() == plain[70000..70100]);

    // stdin up, stdout down.
    let small = b"hello from stdin\n".repeat(1000);
    let stdin_dst = format!("s3://{b}/dir/stdin.txt");
    ok(
        &gw.aws(&["s3", "cp", "-", &stdin_dst], Some(&small)),
        "aws s3 cp -",
    );
    let o = gw.aws(&["s3", "cp", &stdin_dst, "-"], None);
    ok(&o, "aws s3 cp to stdout");
    assert!(o.stdout == small);

    // sync a small tree up, again (nothing to do: sizes are compared in plaintext), down.
    let tree = gw.scratch.path("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    write(&tree.join("a.txt"), b"alpha\n");
    write(&tree.join("sub/b.bin"), &data(70_000));
    write(&tree.join("sub/empty"), b"");
    // (mtimes an hour back: `sync` re-uploads a file newer than the object's Last-Modified,
    // which has one-second resolution, so a file written this second could be sent twice)
    let past = std::time::SystemTime::now() - Duration::from_secs(3600);
    for f in ["a.txt", "sub/b.bin", "sub/empty"] {
        let file = std::fs::File::options()
            .write(true)
            .open(tree.join(f))
            .unwrap();
        file.set_modified(past).unwrap();
    }
    let prefix = format!("s3://{b}/tree/");
    ok(
        &gw.aws(&["s3", "sync", "tree", &prefix], None),
        "aws s3 sync up",
    );
    let again = gw.aws(&["s3", "sync", "tree", &prefix], None);
    ok(&again, "aws s3 sync again");
    assert!(
        again.stdout.is_empty(),
        "a second sync uploaded again: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    ok(
        &gw.aws(&["s3", "sync", &prefix, "tree2"], None),
        "aws s3 sync down",
    );
    for f in ["a.txt", "sub/b.bin", "sub/empty"] {
        assert!(
            std::fs::read(tree.join(f)).unwrap()
                == std::fs::read(gw.scratch.path("tree2").join(f)).unwrap(),
            "{f}"
        );
    }

    ok(&gw.aws(&["s3", "rm", &stdin_dst], None), "aws s3 rm");
    assert!(moto::get_object(&gw.upstream, &b, "dir/stdin.txt").is_none());
    let ls = gw.aws(&["s3", "ls", &format!("s3://{b}/dir/")], None);
    assert!(!String::from_utf8_lossy(&ls.stdout).contains("stdin.txt"));
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn boto3_operations() {
    let gw = Gateway::start("boto3_operations", &[]);
    let b = gw.bucket();
    gw.python(
        r#"
data = os.urandom(300_000)
r = c.put_object(Bucket=B, Key="o/a.bin", Body=data, ContentType="text/x-test",
                 Metadata={"color": "red", "n": "1"})
etag = r["ETag"]
# whole, then every Range form
g = c.get_object(Bucket=B, Key="o/a.bin")
assert g["Body"].read() == data and g["ContentLength"] == 300_000
assert g["ContentType"] == "text/x-test" and g["Metadata"] == {"color": "red", "n": "1"}, g["Metadata"]
for rng, want, cr in [("bytes=100-199", data[100:200], "bytes 100-199/300000"),
                      ("bytes=299990-", data[299990:], "bytes 299990-299999/300000"),
                      ("bytes=-10", data[-10:], "bytes 299990-299999/300000"),
                      ("bytes=65530-65545", data[65530:65546], "bytes 65530-65545/300000"),
                      ("bytes=299000-999999", data[299000:], "bytes 299000-299999/300000")]:
    g = c.get_object(Bucket=B, Key="o/a.bin", Range=rng)
    assert g["Body"].read() == want, rng
    assert g["ContentRange"] == cr and g["ContentLength"] == len(want), (rng, g["ContentRange"])
assert err(lambda: c.get_object(Bucket=B, Key="o/a.bin", Range="bytes=300000-")) == ("InvalidRange", 416)
# HEAD: plaintext size, metadata, content type
h = c.head_object(Bucket=B, Key="o/a.bin")
assert h["ContentLength"] == 300_000 and h["Metadata"] == {"color": "red", "n": "1"}
assert h["ContentType"] == "text/x-test" and h["ETag"] == etag
# conditionals
assert err(lambda: c.get_object(Bucket=B, Key="o/a.bin", IfMatch='"nope"')) == ("PreconditionFailed", 412)
assert c.get_object(Bucket=B, Key="o/a.bin", IfMatch=etag)["Body"].read() == data
assert err(lambda: c.get_object(Bucket=B, Key="o/a.bin", IfNoneMatch=etag))[1] == 304
import datetime
future = datetime.datetime(2100, 1, 1, tzinfo=datetime.timezone.utc)
past = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
assert err(lambda: c.get_object(Bucket=B, Key="o/a.bin", IfModifiedSince=future))[1] == 304
assert c.get_object(Bucket=B, Key="o/a.bin", IfModifiedSince=past)["ContentLength"] == 300_000
assert err(lambda: c.get_object(Bucket=B, Key="o/a.bin", IfUnmodifiedSince=past)) == ("PreconditionFailed", 412)
# an object written in one piece has one part: the whole object
assert c.get_object(Bucket=B, Key="o/a.bin", PartNumber=1)["Body"].read() == data
assert err(lambda: c.get_object(Bucket=B, Key="o/a.bin", PartNumber=2)) == ("InvalidPartNumber", 416)
# create-only
assert err(lambda: c.put_object(Bucket=B, Key="o/a.bin", Body=b"x", IfNoneMatch="*")) == ("PreconditionFailed", 412)
assert c.get_object(Bucket=B, Key="o/a.bin")["Body"].read() == data
# checksums the SDK computes are verified on the plaintext; a wrong one stores nothing
c.put_object(Bucket=B, Key="o/sha.bin", Body=data[:1000], ChecksumAlgorithm="SHA256")
c.put_object(Bucket=B, Key="o/crc.bin", Body=data[:1000], ChecksumAlgorithm="CRC32")
bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
assert err(lambda: c.put_object(Bucket=B, Key="o/bad.bin", Body=data[:1000], ChecksumSHA256=bad)) == ("BadDigest", 400)
badmd5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
assert err(lambda: c.put_object(Bucket=B, Key="o/bad.bin", Body=data[:1000], ContentMD5=badmd5)) == ("BadDigest", 400)
assert "o/bad.bin" not in upstream_keys("o/")
# a header too big for the metadata goes to a companion, which listings hide
big = {"m%02d" % i: "v" * 60 for i in range(25)}  # 1850 bytes: only the companion form fits
c.put_object(Bucket=B, Key="o/comp.bin", Body=data[:5000], Metadata=big)
ups = upstream_keys("o/")
comp = [k for k in ups if k.startswith("o/comp.bin.sealstream-header-")]
assert len(comp) == 1, ups
assert c.get_object(Bucket=B, Key="o/comp.bin")["Body"].read() == data[:5000]
# its companion stays in this bucket: a copy to another bucket is refused, not broken
assert err(lambda: c.copy_object(Bucket=B + "-other", Key="x", CopySource={"Bucket": B, "Key": "o/comp.bin"})) == ("NotImplemented", 501)
want = {"o/a.bin": 300_000, "o/sha.bin": 1000, "o/crc.bin": 1000, "o/comp.bin": 5000}
l2 = {o["Key"]: o["Size"] for o in c.list_objects_v2(Bucket=B, Prefix="o/")["Contents"]}
assert l2 == want, l2
l1 = {o["Key"]: o["Size"] for o in c.list_objects(Bucket=B, Prefix="o/")["Contents"]}
assert l1 == want, l1
# pagination and delimiters pass through
p = c.list_objects_v2(Bucket=B, Prefix="o/", MaxKeys=2)
assert p["IsTruncated"] and len(p["Contents"]) == 2
p2 = c.list_objects_v2(Bucket=B, Prefix="o/", ContinuationToken=p["NextContinuationToken"])
assert len(p["Contents"]) + len(p2["Contents"]) >= 4
d = c.list_objects_v2(Bucket=B, Delimiter="/")
assert [x["Prefix"] for x in d["CommonPrefixes"]] == ["o/"]
# ListObjects (v1) pages as S3 pages them, page after page by Marker, with and without a
# delimiter (moto 5.2.5's own v1 skips keys with a delimiter and MaxKeys: the gateway
# serves v1 from upstream v2); NextMarker only with a delimiter, the page's last entry
for k in ["v/a", "v/b/1", "v/b/2", "v/c", "v/d/1", "v/e"]:
    c.put_object(Bucket=B, Key=k, Body=b"x")
def v1_pages(**kw):
    pages, marker = [], ""
    while True:
        r = c.list_objects(Bucket=B, Prefix="v/", Marker=marker, **kw)
        assert all("Owner" in o for o in r.get("Contents", [])), r
        page = sorted([o["Key"] for o in r.get("Contents", [])] + [p["Prefix"] for p in r.get("CommonPrefixes", [])])
        pages.append(page)
        want = page[-1] if r["IsTruncated"] and "Delimiter" in kw else None
        assert r.get("NextMarker") == want, (kw, r.get("NextMarker"), want)
        if not r["IsTruncated"]:
            return pages
        marker = page[-1]
for kw, want in [
    ({"MaxKeys": 2}, [["v/a", "v/b/1"], ["v/b/2", "v/c"], ["v/d/1", "v/e"]]),
    ({"MaxKeys": 1, "Delimiter": "/"}, [["v/a"], ["v/b/"], ["v/c"], ["v/d/"], ["v/e"]]),
    ({"MaxKeys": 2, "Delimiter": "/"}, [["v/a", "v/b/"], ["v/c", "v/d/"], ["v/e"]]),
    ({"Delimiter": "/"}, [["v/a", "v/b/", "v/c", "v/d/", "v/e"]]),
]:
    assert v1_pages(**kw) == want, (kw, v1_pages(**kw))
for k in ["v/a", "v/b/1", "v/b/2", "v/c", "v/d/1", "v/e"]:
    c.delete_object(Bucket=B, Key=k)
# copy: header kept (COPY), metadata replaced (REPLACE)
c.copy_object(Bucket=B, Key="o/copy.bin", CopySource={"Bucket": B, "Key": "o/a.bin"})
assert c.get_object(Bucket=B, Key="o/copy.bin")["Body"].read() == data
c.copy_object(Bucket=B, Key="o/copy2.bin", CopySource={"Bucket": B, "Key": "o/a.bin"},
              MetadataDirective="REPLACE", Metadata={"color": "blue"}, ContentType="text/y")
g = c.get_object(Bucket=B, Key="o/copy2.bin")
assert g["Body"].read() == data and g["Metadata"] == {"color": "blue"} and g["ContentType"] == "text/y"
# a presigned GET fetched with a plain HTTP client (boto3's default here: a SigV2 URL)
url = c.generate_presigned_url("get_object", Params={"Bucket": B, "Key": "o/a.bin"}, ExpiresIn=300)
assert urllib.request.urlopen(url).read() == data
try:
    urllib.request.urlopen(url.replace("Signature=", "Signature=0"))
    raise AssertionError("tampered presigned URL accepted")
except urllib.error.HTTPError as e:
    assert e.code == 403, e.code
# a presigned PUT (SigV4 query, UNSIGNED-PAYLOAD) with a plain HTTP client
v4 = boto3.client("s3", endpoint_url=GW, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
url = v4.generate_presigned_url("put_object", Params={"Bucket": B, "Key": "o/pre.bin"}, ExpiresIn=300)
# (urllib's default Content-Type, form-urlencoded, makes moto mangle the stored body)
urllib.request.urlopen(urllib.request.Request(url, data=data[:7000], method="PUT",
                                              headers={"Content-Type": "application/octet-stream"}))
assert c.get_object(Bucket=B, Key="o/pre.bin")["Body"].read() == data[:7000]
assert up.get_object(Bucket=B, Key="o/pre.bin")["ContentLength"] == 7016
c.delete_object(Bucket=B, Key="o/pre.bin")
# deletes: the companion goes with its object
c.delete_object(Bucket=B, Key="o/comp.bin")
assert not [k for k in upstream_keys("o/") if "comp.bin" in k], upstream_keys("o/")
c.delete_object(Bucket=B, Key="o/never-existed")
r = c.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "o/copy.bin"}, {"Key": "o/copy2.bin"}]})
assert sorted(x["Key"] for x in r["Deleted"]) == ["o/copy.bin", "o/copy2.bin"]
assert upstream_keys("o/") == ["o/a.bin", "o/crc.bin", "o/sha.bin"], upstream_keys("o/")
# bucket calls pass through
assert B in [x["Name"] for x in c.list_buckets()["Buckets"]]
c.head_bucket(Bucket=B)
c.create_bucket(Bucket=B + "-new")
assert c.get_bucket_location(Bucket=B + "-new").get("LocationConstraint") in (None, "")
print("ALL OK")
"#,
        &b,
        &[],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn refusals_and_security() {
    let gw = Gateway::start("refusals_and_security", &[]);
    let b = gw.bucket();
    moto::put_object(&gw.upstream, &b, "plain.txt", b"not encrypted", &[]);
    gw.python(
        r#"
wrong = boto3.client("s3", endpoint_url=GW, region_name="us-east-1", config=cfg,
                     aws_access_key_id=os.environ["AWS_ACCESS_KEY_ID"], aws_secret_access_key="wrong")
assert err(lambda: wrong.put_object(Bucket=B, Key="w.bin", Body=b"x" * 100)) == ("SignatureDoesNotMatch", 403)
unknown = boto3.client("s3", endpoint_url=GW, region_name="us-east-1", config=cfg,
                       aws_access_key_id="AKIANOBODY", aws_secret_access_key="x")
assert err(lambda: unknown.get_object(Bucket=B, Key="plain.txt")) == ("InvalidAccessKeyId", 403)
assert err(lambda: unknown.list_objects_v2(Bucket=B)) == ("InvalidAccessKeyId", 403)
# unsigned requests
for method, data in [("PUT", b"abc"), ("GET", None)]:
    try:
        urllib.request.urlopen(urllib.request.Request(f"{GW}/{B}/u.bin", data=data, method=method))
        raise AssertionError("unsigned request accepted")
    except urllib.error.HTTPError as e:
        assert e.code == 403, e.code
assert "w.bin" not in upstream_keys() and "u.bin" not in upstream_keys()
# unknown bucket
assert err(lambda: c.put_object(Bucket=B + "-missing", Key="k", Body=b"x")) == ("NoSuchBucket", 404)
assert err(lambda: c.get_object(Bucket=B + "-missing", Key="k")) == ("NoSuchBucket", 404)
assert err(lambda: c.get_object(Bucket=B, Key="nothing-here")) == ("NoSuchKey", 404)
# an object that is not a sealstream object is refused, never served as if protected
assert err(lambda: c.get_object(Bucket=B, Key="plain.txt")) == ("SealstreamNotEncrypted", 409)
assert err(lambda: c.head_object(Bucket=B, Key="plain.txt"))[1] == 409
assert err(lambda: c.copy_object(Bucket=B, Key="copy.txt", CopySource={"Bucket": B, "Key": "plain.txt"})) == ("SealstreamNotEncrypted", 409)
# multipart: a bare (or forged) upload id cannot upload parts, nor copy them
assert err(lambda: c.upload_part(Bucket=B, Key="mp.bin", UploadId="x", PartNumber=1, Body=b"x")) == ("InvalidArgument", 400)
assert err(lambda: c.upload_part(Bucket=B, Key="mp.bin", UploadId="x~AAAA", PartNumber=1, Body=b"x")) == ("NoSuchUpload", 404)
assert err(lambda: c.upload_part_copy(Bucket=B, Key="mp.bin", UploadId="x", PartNumber=1, CopySource={"Bucket": B, "Key": "plain.txt"})) == ("InvalidArgument", 400)
# a plaintext object is no copy source either (as it is no GetObject's)
u = c.create_multipart_upload(Bucket=B, Key="mp.bin")["UploadId"]
assert err(lambda: c.upload_part_copy(Bucket=B, Key="mp.bin", UploadId=u, PartNumber=1, CopySource={"Bucket": B, "Key": "plain.txt"})) == ("SealstreamNotEncrypted", 409)
c.abort_multipart_upload(Bucket=B, Key="mp.bin", UploadId=u)
assert not up.list_multipart_uploads(Bucket=B).get("Uploads")
# part manifest keys are reserved too
assert err(lambda: c.put_object(Bucket=B, Key="a.sealstream-parts-0123456789abcdef", Body=b"x")) == ("InvalidArgument", 400)
assert err(lambda: c.get_object(Bucket=B, Key="a.sealstream-parts-0123456789abcdef")) == ("InvalidArgument", 400)
# our companion keys are reserved
assert err(lambda: c.put_object(Bucket=B, Key="a.sealstream-header-0123456789abcdef", Body=b"x")) == ("InvalidArgument", 400)
assert err(lambda: c.put_object(Bucket=B, Key="m.bin", Body=b"x", Metadata={"sealstream-header": "x"})) == ("InvalidArgument", 400)
assert upstream_keys() == ["plain.txt"], upstream_keys()
print("ALL OK")
"#,
        &b,
        &[],
    );
    // /metrics counts the requests refused by authentication, by code (and nothing else:
    // the NoSuchKey, 409s and 400s above are not authentication failures).
    let refused = |code: &str| {
        gw.metric(&format!(
            "sealstream_gateway_client_authentication_failures_total{{code=\"{code}\"}}"
        ))
    };
    assert_eq!(
        (
            refused("SignatureDoesNotMatch"),
            refused("InvalidAccessKeyId"),
            refused("AccessDenied"),
            refused("RequestTimeTooSkewed")
        ),
        (1, 2, 2, 0)
    );
    let o = gw.aws(&["s3", "cp", &format!("s3://{b}/plain.txt"), "p.txt"], None);
    assert!(!o.status.success() && !gw.scratch.path("p.txt").exists());

    // An oversized request head is refused before any S3 processing.
    let mut s = std::net::TcpStream::connect(&gw.authority).expect("connect");
    let big = "x".repeat(100 * 1024);
    let _ = write!(
        s,
        "GET /{b}/k HTTP/1.1\r\nHost: {}\r\nX-Big: {big}\r\n\r\n",
        gw.authority
    );
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.1 431"),
        "{}",
        &resp[..resp.len().min(200)]
    );
    // Health check without credentials.
    let resp = raw_get(&gw.authority, "/healthz");
    assert!(resp.ends_with("ok\n"), "{resp}");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn plaintext_objects_served_only_when_asked() {
    let gw = Gateway::start(
        "plaintext_objects_served_only_when_asked",
        &["--serve-plaintext-objects"],
    );
    let b = gw.bucket();
    moto::put_object(
        &gw.upstream,
        &b,
        "plain.txt",
        b"0123456789 not encrypted",
        &[],
    );
    gw.python(
        r#"
assert c.get_object(Bucket=B, Key="plain.txt")["Body"].read() == b"0123456789 not encrypted"
g = c.get_object(Bucket=B, Key="plain.txt", Range="bytes=2-4")
assert g["Body"].read() == b"234", g
assert c.head_object(Bucket=B, Key="plain.txt")["ContentLength"] == 24
# new objects are still written encrypted
c.put_object(Bucket=B, Key="new.bin", Body=b"secret" * 10)
assert up.get_object(Bucket=B, Key="new.bin")["Body"].read() != b"secret" * 10
# a part copied from a plaintext object is sealed like any part (whole, and a range)
pc = lambda key, u, n, **kw: c.upload_part_copy(Bucket=B, Key=key, UploadId=u, PartNumber=n,
                                                CopySource={"Bucket": B, "Key": "plain.txt"}, **kw)
u = c.create_multipart_upload(Bucket=B, Key="mp.bin")["UploadId"]
e1 = c.upload_part(Bucket=B, Key="mp.bin", UploadId=u, PartNumber=1, Body=b"x" * (5 << 20))["ETag"]
e2 = pc("mp.bin", u, 2)["CopyPartResult"]["ETag"]
assert err(lambda: pc("mp.bin", u, 3, CopySourceRange="bytes=2-24")) == ("InvalidRange", 416)
assert err(lambda: pc("mp.bin", u, 3, CopySourceRange="bytes=24-30")) == ("InvalidRange", 416)
c.complete_multipart_upload(Bucket=B, Key="mp.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]})
assert c.get_object(Bucket=B, Key="mp.bin")["Body"].read() == b"x" * (5 << 20) + b"0123456789 not encrypted"
assert b"not encrypted" not in up.get_object(Bucket=B, Key="mp.bin")["Body"].read()
u = c.create_multipart_upload(Bucket=B, Key="mp2.bin")["UploadId"]
e1 = pc("mp2.bin", u, 1, CopySourceRange="bytes=2-4")["CopyPartResult"]["ETag"]
c.complete_multipart_upload(Bucket=B, Key="mp2.bin", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": e1}]})
assert c.get_object(Bucket=B, Key="mp2.bin")["Body"].read() == b"234"
print("ALL OK")
"#,
        &b,
        &[],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn tampered_objects_fail_in_every_client() {
    let gw = Gateway::start("tampered_objects_fail_in_every_client", &[]);
    let b = gw.bucket();
    // A byte flipped in a late chunk: the answer has started (status 200, the first MiB
    // sent) when the chunk fails, so the response must be aborted, not ended short.
    gw.python(
        r#"
data = os.urandom(3 << 20)
c.put_object(Bucket=B, Key="late.bin", Body=data)
c.put_object(Bucket=B, Key="early.bin", Body=data[:200_000])
for key, at in [("late.bin", int(2.5 * (1 << 20))), ("early.bin", 10)]:
    o = up.get_object(Bucket=B, Key=key)
    body = bytearray(o["Body"].read()); body[at] ^= 1
    up.put_object(Bucket=B, Key=key, Body=bytes(body), Metadata=o["Metadata"])
try:
    got = c.get_object(Bucket=B, Key="late.bin")["Body"].read()
    raise AssertionError("a tampered object was read to the end: %d bytes" % len(got))
except AssertionError:
    raise
except Exception as e:
    print("boto3 failed:", type(e).__name__)
# tampered at the start: an ordinary error answer, with our code
assert err(lambda: c.get_object(Bucket=B, Key="early.bin")) == ("SealstreamAuthenticationFailed", 409)
# a range of intact chunks is still served (only the covering chunks are read)
assert c.get_object(Bucket=B, Key="late.bin", Range="bytes=0-99")["Body"].read() == data[:100]
print("ALL OK")
"#,
        &b,
        &[],
    );
    let o = gw.aws(
        &["s3", "cp", &format!("s3://{b}/late.bin"), "late.bin"],
        None,
    );
    assert!(!o.status.success(), "aws s3 cp reported success");
    assert!(!gw.scratch.path("late.bin").exists());
    let o = gw.aws(&["s3", "cp", &format!("s3://{b}/late.bin"), "-"], None);
    assert!(!o.status.success(), "aws s3 cp to stdout reported success");
    let o = gw.aws(
        &[
            "s3api",
            "get-object",
            "--bucket",
            &b,
            "--key",
            "late.bin",
            "late2.bin",
        ],
        None,
    );
    assert!(!o.status.success(), "aws s3api get-object reported success");
    // /metrics counts them (and is served without a signature, like /healthz).
    assert!(gw.metric("sealstream_gateway_authentication_failures_total") >= 3);
    assert!(gw.metric("sealstream_gateway_plaintext_bytes_sent_total") >= 1 << 20);
    assert_eq!(
        gw.metric("sealstream_gateway_plaintext_bytes_received_total"),
        (3 << 20) + 200_000
    );
    assert!(gw.metric("sealstream_gateway_requests_total{method=\"GET\",status=\"409\"}") >= 1);
}

/// A plain unsigned GET; the whole answer (head and body) as text.
fn raw_get(authority: &str, path: &str) -> String {
    let resp = raw_request(authority, path);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    resp
}

/// [`raw_get`] whatever the status.
fn raw_request(authority: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(authority).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// The `x-amz-request-id` of a raw answer.
fn request_id(resp: &str) -> String {
    resp.lines()
        .find_map(|l| l.strip_prefix("x-amz-request-id: "))
        .unwrap_or_else(|| panic!("no request id: {resp}"))
        .trim()
        .to_string()
}

/// A gateway configured by `config` (TOML, `{key}` and `{creds}` replaced by the paths of
/// a local key and the client credentials), `args` and `env`; no emulator needed as long
/// as nothing reaches upstream.
fn configured(config: Option<&str>, args: &[&str], env: &[(&str, &str)]) -> Gateway {
    let scratch = Scratch::new();
    let creds = client_credentials(&scratch);
    let key = scratch.keyfile("gw.key", &common::key(7));
    let mut cmd = serve_cmd(&scratch);
    if let Some(text) = config {
        let path = scratch.path("gateway.toml");
        let text = text
            .replace("{key}", &key.display().to_string())
            .replace("{creds}", &creds.display().to_string());
        write(&path, text.as_bytes());
        cmd.arg("--config").arg(path);
    }
    cmd.args(args)
        .envs(env.iter().copied())
        // Upstream is never called, but loading the AWS configuration must not wait for
        // an instance metadata service.
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    Gateway::spawn(cmd, scratch, String::new(), key)
}

/// Options from `--config FILE`, `SEALSTREAM_…` variables and flags: flag > environment >
/// file > default, per option; JSON logs (from the file) carry the request id the
/// gateway answers with. No upstream call is made, so no emulator is needed.
#[test]
fn config_file_environment_and_flags() {
    const FILE: &str = r#"
# the gateway's options; keys are the long flag names
listen = "127.0.0.1:0"
key = ["{key}"]
client-credentials = "{creds}"
max-requests = 7
list-concurrency = 3
log-format = "json"
[context]
tenant = "acme"
"#;
    let max = "sealstream_gateway_requests_max";
    // Defaults: no file.
    let gw = configured(
        None,
        &[
            "--listen",
            "127.0.0.1:0",
            "-k",
            "gw.key",
            "--client-credentials",
            "clients.ini",
        ],
        &[],
    );
    assert_eq!(gw.metric(max), 256);
    // Text logs by default: the request line names the id the client got.
    let resp = raw_request(&gw.authority, "/some-bucket/some-key");
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let id = request_id(&resp);
    assert!(
        gw.log()
            .lines()
            .any(|l| l.contains(&format!("request_id={id}")) && l.contains("status=403")),
        "no text log line for {id}:\n{}",
        gw.log()
    );
    drop(gw);
    // The file alone.
    let gw = configured(Some(FILE), &[], &[]);
    assert_eq!(gw.metric(max), 7);
    // JSON logs (from the file): one object per line, the request's with its id.
    let resp = raw_request(&gw.authority, "/some-bucket/some-key");
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    let id = request_id(&resp);
    let log = gw.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|v| v["request_id"] == id.as_str()
            && v["status"] == 403
            && v["method"] == "GET"
            && v["message"] == "request"),
        "no JSON request line for {id}:\n{log}"
    );
    drop(gw);
    // The environment wins over the file, a flag over both.
    let env = [("SEALSTREAM_MAX_REQUESTS", "9")];
    assert_eq!(configured(Some(FILE), &[], &env).metric(max), 9);
    let gw = configured(Some(FILE), &["--max-requests", "11"], &env);
    assert_eq!(gw.metric(max), 11);
    // The file's JSON format, overridden by the environment: text lines again.
    let gw = configured(Some(FILE), &[], &[("SEALSTREAM_LOG_FORMAT", "text")]);
    raw_request(&gw.authority, "/some-bucket/some-key");
    assert!(gw.log().contains(" request_id="), "{}", gw.log());
}

/// A config file with an unknown key, a mistyped value or a syntax error: exit 2 before
/// serving, the key and line named, the value never printed (it may be a secret put in
/// the wrong place).
#[test]
fn bad_config_files_are_refused() {
    let s = Scratch::new();
    let run = |text: &str| {
        let path = s.path("bad.toml");
        write(&path, text.as_bytes());
        let o = serve_cmd(&s)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run serve");
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        assert!(o.stdout.is_empty(), "it started serving");
        let e = stderr(&o);
        assert!(!e.contains("SECRET123"), "the value was printed: {e}");
        e
    };
    let e = run("listen = \"127.0.0.1:0\"\naws_secret_access_key = \"SECRET123\"\n");
    assert!(
        e.contains("bad.toml', line 2: unknown key 'aws_secret_access_key'"),
        "{e}"
    );
    let e = run("# a comment\nmax-requests = \"SECRET123\"\n");
    assert!(
        e.contains("line 2: 'max-requests' must be a non-negative integer"),
        "{e}"
    );
    let e = run("listen = \"SECRET123\n");
    assert!(e.contains("line 1: not valid TOML"), "{e}");
    // Nothing names the client credentials: the error says where they can come from.
    let e = run("key = \"k.key\"\n");
    assert!(e.contains("--client-credentials FILE"), "{e}");
    // A certificate without its key, whichever source gave it.
    let e = run("key = \"k.key\"\nclient-credentials = \"c.ini\"\ntls-cert = \"c.pem\"\n");
    assert!(e.contains("--tls-cert and --tls-key go together"), "{e}");
    // A missing file.
    let o = serve_cmd(&s)
        .args(["--config", "missing.toml"])
        .output()
        .expect("run serve");
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("missing.toml"), "{}", stderr(&o));
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn one_format_with_the_cli() {
    let gw = Gateway::start("one_format_with_the_cli", &[]);
    let b = gw.bucket();
    let plain = data(200_000);
    write(&gw.scratch.path("p.bin"), &plain);
    // gateway → sealstream decrypt
    ok(
        &gw.aws(
            &["s3", "cp", "p.bin", &format!("s3://{b}/via-gw.bin")],
            None,
        ),
        "upload through the gateway",
    );
    let key = gw.key.to_str().unwrap().to_string();
    let o = gw.scratch.run(&[
        "decrypt",
        &format!("s3://{b}/via-gw.bin"),
        "-k",
        &key,
        "-o",
        "dec.bin",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(gw.scratch.path("dec.bin")).unwrap() == plain);
    // sealstream encrypt → gateway
    let o = gw.scratch.run(&[
        "encrypt",
        "p.bin",
        "-k",
        &key,
        "-o",
        &format!("s3://{b}/via-cli.bin"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    ok(
        &gw.aws(
            &["s3", "cp", &format!("s3://{b}/via-cli.bin"), "back.bin"],
            None,
        ),
        "download through the gateway",
    );
    assert!(std::fs::read(gw.scratch.path("back.bin")).unwrap() == plain);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn graceful_shutdown_finishes_requests_in_flight() {
    let mut gw = Gateway::start("graceful_shutdown_finishes_requests_in_flight", &[]);
    let b = gw.bucket();
    let pid = gw.child.id().to_string();
    gw.python(
        r#"
import signal, time
data = os.urandom(3 << 20)
c.put_object(Bucket=B, Key="big.bin", Body=data)
g = c.get_object(Bucket=B, Key="big.bin")
first = g["Body"].read(1000)
os.kill(int(os.environ["GW_PID"]), signal.SIGTERM)
time.sleep(1)
rest = g["Body"].read()
assert first + rest == data, len(first + rest)
print("ALL OK")
"#,
        &b,
        &[("GW_PID", pid)],
    );
    let start = Instant::now();
    loop {
        if let Some(st) = gw.child.try_wait().expect("wait") {
            assert!(st.success(), "gateway exit: {st:?}\n{}", gw.log());
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the gateway did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(std::net::TcpStream::connect(&gw.authority).is_err());
}

/// A streaming body for the Rust SDK: it cannot be buffered, so the SDK sends it as
/// `aws-chunked` with signed chunks and a CRC32 trailer
/// (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`).
struct Streamed(Vec<bytes::Bytes>);

impl http_body::Body for Streamed {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        let next = if self.0.is_empty() {
            None
        } else {
            Some(Ok(http_body::Frame::data(self.0.remove(0))))
        };
        std::task::Poll::Ready(next)
    }
    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.0.iter().map(|b| b.len() as u64).sum())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
async fn rust_sdk_aws_chunked_with_trailer() {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
    let gw = Gateway::start(
        "rust_sdk_aws_chunked_with_trailer",
        &["--log", "sealstream=debug"],
    );
    let b = gw.bucket();
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_sdk_s3::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(&gw.url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(CLIENT_ID, CLIENT_SECRET, None, None, "t"))
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    let plain = data(300_000);
    let pieces: Vec<bytes::Bytes> = plain
        .chunks(70_000)
        .map(bytes::Bytes::copy_from_slice)
        .collect();
    let body = aws_sdk_s3::primitives::ByteStream::new(
        aws_smithy_types::body::SdkBody::from_body_1_x(Streamed(pieces)),
    );
    client
        .put_object()
        .bucket(&b)
        .key("sdk.bin")
        .content_length(300_000)
        .body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutObject: {e:?}\n{}", gw.log()));
    let log = gw.log();
    assert!(
        log.contains("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER")
            && log.contains("x-amz-checksum-crc32"),
        "the SDK did not send aws-chunked with a trailer:\n{log}"
    );
    let got = client
        .get_object()
        .bucket(&b)
        .key("sdk.bin")
        .send()
        .await
        .expect("GetObject");
    let got = got.body.collect().await.expect("body").into_bytes();
    assert!(got == plain[..]);
    let raw = moto::get_object(&gw.upstream, &b, "sdk.bin").expect("upstream");
    assert_eq!(raw.len(), 300_000 + 5 * 16);
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn virtual_hosted_style_and_request_limit() {
    let gw = Gateway::start(
        "virtual_hosted_style_and_request_limit",
        &["--virtual-host-domain", "s3.gw.test", "--max-requests", "1"],
    );
    let b = gw.bucket();
    let port = gw.authority.rsplit(':').next().unwrap().to_string();
    gw.python(
        r#"
from urllib.parse import urlsplit, urlunsplit
port = os.environ["GW_PORT"]
vh = boto3.client("s3", endpoint_url="http://s3.gw.test:" + port, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "virtual"}, retries={"max_attempts": 1}))
hosts = []
def to_loopback(request, **kw):
    # BUCKET.s3.gw.test does not resolve: connect to 127.0.0.1, keep the signed Host.
    u = urlsplit(request.url)
    hosts.append(u.netloc)
    request.headers["Host"] = u.netloc
    request.url = urlunsplit((u.scheme, "127.0.0.1:" + port, u.path, u.query, u.fragment))
vh.meta.events.register("before-send.s3", to_loopback)
vh.put_object(Bucket=B, Key="vh/a.txt", Body=b"virtual hosted")
assert vh.get_object(Bucket=B, Key="vh/a.txt")["Body"].read() == b"virtual hosted"
assert [o["Key"] for o in vh.list_objects_v2(Bucket=B)["Contents"]] == ["vh/a.txt"]
assert hosts[0] == B + ".s3.gw.test:" + port, hosts
# path-style still works beside it
assert c.get_object(Bucket=B, Key="vh/a.txt")["Body"].read() == b"virtual hosted"
# the request limit: a GET whose body is not read holds the only slot
data = os.urandom(12 << 20)
c.put_object(Bucket=B, Key="big.bin", Body=data)
g = c.get_object(Bucket=B, Key="big.bin")
assert err(lambda: c.head_object(Bucket=B, Key="vh/a.txt"))[1] == 503
assert err(lambda: c.get_object(Bucket=B, Key="vh/a.txt")) == ("SlowDown", 503)
assert g["Body"].read() == data
g["Body"].close()
import time
time.sleep(0.5)
assert c.head_object(Bucket=B, Key="vh/a.txt")["ContentLength"] == 14
print("ALL OK")
"#,
        &b,
        &[("GW_PORT", port)],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn kms_key_and_context() {
    let up = endpoint("kms_key_and_context").expect("emulator");
    let key = moto::create_key(&up, "us-east-1");
    let gw = Gateway::start(
        "kms_key_and_context",
        &["--kms-key", &key, "-c", "tenant=acme"],
    );
    let b = gw.bucket();
    gw.python(
        r#"
data = os.urandom(150_000)
c.put_object(Bucket=B, Key="k.bin", Body=data)
assert c.get_object(Bucket=B, Key="k.bin")["Body"].read() == data
assert c.get_object(Bucket=B, Key="k.bin", Range="bytes=-5")["Body"].read() == data[-5:]
assert c.head_object(Bucket=B, Key="k.bin")["ContentLength"] == 150_000
print("ALL OK")
"#,
        &b,
        &[],
    );
    assert_eq!(
        gw.metric("sealstream_gateway_kms_calls_total{operation=\"GenerateDataKey\"}"),
        1,
        "one PutObject, one data key"
    );
    // The object is a KMS-wrapped sealstream object with the context bound: the CLI opens
    // it with the key and the context, and not without the context.
    let dec = |ctx: &[&str]| {
        let mut args = vec!["decrypt", "--kms-key", key.as_str()];
        args.extend_from_slice(ctx);
        let src = format!("s3://{b}/k.bin");
        args.extend_from_slice(&[src.as_str(), "-o", "-"]);
        gw.scratch.run(&args)
    };
    let o = dec(&["-c", "tenant=acme"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout.len(), 150_000);
    let o = dec(&["-c", "tenant=other"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    // HEAD and listings make no KMS call: they work with KMS unreachable, GET does not.
    let no_kms = Gateway::start_with_env(
        "kms_key_and_context",
        &[
            "--kms-key",
            &key,
            "-c",
            "tenant=acme",
            "--kms-max-attempts",
            "2",
        ],
        // S3 stays on the emulator (AWS_ENDPOINT_URL_S3 wins for S3); KMS gets a dead
        // endpoint. (AWS_ENDPOINT_URL_KMS alone did not reach the library's KMS client.)
        &[
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
            ("AWS_ENDPOINT_URL_S3", &format!("http://{up}")),
        ],
    );
    no_kms.python(
        r#"
assert c.head_object(Bucket=B, Key="k.bin")["ContentLength"] == 150_000
assert [(o["Key"], o["Size"]) for o in c.list_objects_v2(Bucket=B)["Contents"]] == [("k.bin", 150_000)]
assert err(lambda: c.get_object(Bucket=B, Key="k.bin"))[1] in (500, 503)
print("ALL OK")
"#,
        &b,
        &[],
    );
    // KMS cost: one Decrypt per object, however many GETs (concurrent ranged ones as
    // download tools send, then sequential), through the KMS provider's single-flight
    // cache of unwrapped data keys; HEAD and listings none. Read from the gateway's
    // /metrics, and cross-checked against the SDK's own debug log of a fresh gateway.
    let counted = Gateway::start(
        "kms_key_and_context",
        &[
            "--kms-key",
            &key,
            "-c",
            "tenant=acme",
            "--log",
            "info,aws_smithy_runtime=debug,aws_sdk_kms=debug",
        ],
    );
    counted.python(
        r#"
import threading
def kms_costs():
    return (metric('sealstream_gateway_kms_calls_total{operation="Decrypt"}'),
            metric("sealstream_gateway_data_key_cache_hits_total"),
            metric("sealstream_gateway_data_key_cache_misses_total"))
assert kms_costs() == (0, 0, 0), kms_costs()
assert c.head_object(Bucket=B, Key="k.bin")["ContentLength"] == 150_000
assert c.list_objects_v2(Bucket=B)["KeyCount"] == 1
assert c.list_objects(Bucket=B)["Contents"][0]["Size"] == 150_000
assert kms_costs() == (0, 0, 0), ("HEAD and LIST made KMS calls", kms_costs())
errors = []
def ranged(i):
    try:
        r = c.get_object(Bucket=B, Key="k.bin", Range="bytes=%d-%d" % (i * 15000, i * 15000 + 14999))
        assert len(r["Body"].read()) == 15000
    except Exception as e:
        errors.append(e)
ts = [threading.Thread(target=ranged, args=(i,)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
assert not errors, errors
# (Decrypt calls, cache hits, misses): one unwrap, the other 7 from the cache
assert kms_costs() == (1, 7, 1), ("8 concurrent ranged GETs", kms_costs())
for _ in range(3):
    assert len(c.get_object(Bucket=B, Key="k.bin")["Body"].read()) == 150_000
assert kms_costs() == (1, 10, 1), ("then 3 sequential GETs", kms_costs())
print("ALL OK")
"#,
        &b,
        &[],
    );
    assert_eq!(
        counted.metric("sealstream_gateway_kms_calls_total{operation=\"GenerateDataKey\"}"),
        0
    );
    let log = counted.log();
    let mut ids: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("rpc.method=\"Decrypt\""))
        .filter_map(|l| l.split("sdk_invocation_id=").nth(1))
        .filter_map(|r| r.split([' ', '}']).next())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "KMS Decrypt calls for 11 GETs of one object: {ids:?}"
    );
    // A gateway with another context refuses it with our code, before any byte.
    let other = Gateway::start(
        "kms_key_and_context",
        &["--kms-key", &key, "-c", "tenant=other"],
    );
    other.python(
        r#"
assert err(lambda: c.get_object(Bucket=B, Key="k.bin")) == ("SealstreamNoKey", 403)
print("ALL OK")
"#,
        &b,
        &[],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn https_with_boto3_and_the_aws_cli() {
    // A self-signed certificate for 127.0.0.1, made with the openssl command.
    let certs = Scratch::new();
    let (cert, key) = (certs.path("cert.pem"), certs.path("key.pem"));
    let o = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let gw = Gateway::start(
        "https_with_boto3_and_the_aws_cli",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--log",
            "info,sealstream=debug",
        ],
    );
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let b = gw.bucket();
    gw.python(
        r#"
tls = boto3.client("s3", endpoint_url=GW, region_name="us-east-1", verify=os.environ["CA"],
                   config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
data = os.urandom(200_000)
tls.put_object(Bucket=B, Key="tls.bin", Body=data, Metadata={"via": "https"})
g = tls.get_object(Bucket=B, Key="tls.bin")
assert g["Body"].read() == data and g["Metadata"] == {"via": "https"}
assert tls.get_object(Bucket=B, Key="tls.bin", Range="bytes=5-9")["Body"].read() == data[5:10]
# an unverified certificate is refused by the client (the gateway is really on TLS)
strict = boto3.client("s3", endpoint_url=GW, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
try:
    strict.head_object(Bucket=B, Key="tls.bin")
    raise AssertionError("self-signed certificate accepted without the CA")
except AssertionError:
    raise
except Exception as e:
    assert "SSL" in type(e).__name__ or "certificate" in str(e).lower(), repr(e)
print("ALL OK")
"#,
        &b,
        &[("CA", cert.to_str().unwrap().to_string())],
    );
    write(&gw.scratch.path("up.bin"), &data(100_000));
    let ca = cert.to_str().unwrap();
    ok(
        &gw.aws(
            &[
                "--ca-bundle",
                ca,
                "s3",
                "cp",
                "up.bin",
                &format!("s3://{b}/cli.bin"),
            ],
            None,
        ),
        "aws s3 cp over https",
    );
    ok(
        &gw.aws(
            &[
                "--ca-bundle",
                ca,
                "s3",
                "cp",
                &format!("s3://{b}/cli.bin"),
                "down.bin",
            ],
            None,
        ),
        "aws s3 cp down over https",
    );
    assert!(std::fs::read(gw.scratch.path("down.bin")).unwrap() == data(100_000));
    // What the clients sent as bodies over TLS (reported, and both must have worked).
    let log = gw.log();
    let forms: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("PutObject body"))
        .filter_map(|l| l.split("payload=").nth(1))
        .collect();
    println!("PutObject bodies over https: {forms:?}");
    assert_eq!(forms.len(), 2, "{log}");
    // boto3: aws-chunked, unsigned, with a CRC32 trailer; the AWS CLI: UNSIGNED-PAYLOAD.
    assert!(
        forms[0].starts_with("Some(\"STREAMING-UNSIGNED-PAYLOAD-TRAILER\")")
            && forms[0].contains("x-amz-checksum-crc32"),
        "{forms:?}"
    );
    assert!(
        forms[1].starts_with("Some(\"UNSIGNED-PAYLOAD\")"),
        "{forms:?}"
    );
}

// ---- TLS certificate reload (SIGHUP) ------------------------------------------------------

/// A test CA and leaf certificates for 127.0.0.1 signed by it, made with the openssl command.
struct TestPki {
    dir: Scratch,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = Scratch::new();
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
                .args(["-subj", "/CN=sealstream-test-ca", "-keyout"])
                .arg(dir.path("ca.key"))
                .arg("-out")
                .arg(dir.path("ca.pem")),
        );
        TestPki { dir }
    }

    /// A leaf `CN=cn` with subjectAltName IP:127.0.0.1: (certificate PEM, key PEM).
    fn leaf(&self, cn: &str) -> (Vec<u8>, Vec<u8>) {
        let (cert, key) = (
            self.dir.path(&format!("{cn}.pem")),
            self.dir.path(&format!("{cn}.key")),
        );
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-CA"])
                .arg(self.dir.path("ca.pem"))
                .arg("-CAkey")
                .arg(self.dir.path("ca.key"))
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .args(["-nodes", "-days", "1", "-subj", &format!("/CN={cn}")])
                .args(["-addext", "subjectAltName=IP:127.0.0.1"])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert),
        );
        (std::fs::read(cert).unwrap(), std::fs::read(key).unwrap())
    }

    /// A client that trusts only the test CA (rustls on ring, as the gateway).
    fn client(&self) -> std::sync::Arc<rustls::ClientConfig> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(self.dir.path("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        // Every connection a full handshake: a resumed session would report the
        // certificate of the session it resumes, not the one the gateway serves now.
        config.resumption = rustls::client::Resumption::disabled();
        std::sync::Arc::new(config)
    }
}

fn openssl(cmd: &mut Command) {
    let o = cmd.output().expect("openssl");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The DER of the first certificate of a PEM chain.
fn leaf_der(pem: &[u8]) -> Vec<u8> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

/// One HTTPS connection to the gateway (verified against the test CA), kept open across
/// requests (HTTP/1.1 keep-alive).
struct TlsConn {
    tls: rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
}

impl TlsConn {
    fn open(authority: &str, client: &std::sync::Arc<rustls::ClientConfig>) -> TlsConn {
        let tcp = std::net::TcpStream::connect(authority).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
        }
        TlsConn { tls }
    }

    /// The leaf certificate the gateway presented on this connection.
    fn peer_leaf(&self) -> Vec<u8> {
        self.tls
            .conn
            .peer_certificates()
            .expect("peer certificates")[0]
            .to_vec()
    }

    /// `GET /healthz` on this connection; must answer `ok`.
    fn health(&mut self) {
        write!(self.tls, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        self.tls.flush().unwrap();
        let mut resp = Vec::new();
        let mut buf = [0u8; 4096];
        while !resp.ends_with(b"\r\n\r\nok\n") {
            let n = self.tls.read(&mut buf).expect("read the answer");
            assert!(
                n > 0,
                "connection closed: {}",
                String::from_utf8_lossy(&resp)
            );
            resp.extend_from_slice(&buf[..n]);
        }
        assert!(
            resp.starts_with(b"HTTP/1.1 200"),
            "{}",
            String::from_utf8_lossy(&resp)
        );
    }
}

/// Waits until the gateway's log has `n` lines containing `needle`.
fn wait_for_lines(gw: &Gateway, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = gw.log();
        if log.lines().filter(|l| l.contains(needle)).count() >= n {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "{n} × {needle:?} not logged:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn send_signal(gw: &Gateway, signal: &str) {
    let o = Command::new("kill")
        .args([signal, &gw.child.id().to_string()])
        .output()
        .expect("kill");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A gateway that never calls its upstream (health checks and TLS only), with `args` and
/// `config` added to its config file.
fn offline_gateway(config: &str, args: &[&str]) -> Gateway {
    let config = format!(
        "listen = \"127.0.0.1:0\"\nkey = \"{{key}}\"\nclient-credentials = \"{{creds}}\"\n\
         region = \"us-east-1\"\nendpoint-url = \"http://127.0.0.1:9\"\n{config}"
    );
    let mut all = vec!["serve"];
    all.extend_from_slice(args);
    configured_upstream(&config, &all, &[])
}

/// SIGHUP reloads the certificate and key (docs/GATEWAY.md "HTTPS and certificate
/// renewal"): new connections get the new certificate, a connection opened before keeps
/// working; a bad new file (garbage, empty, a key of another certificate, missing) is
/// logged with its name and the working certificate stays served; SIGTERM still shuts
/// down. No emulator needed.
#[test]
fn tls_certificate_reload_on_sighup() {
    let pki = TestPki::new();
    let client = pki.client();
    let (a_cert, a_key) = pki.leaf("gw-a");
    let (b_cert, b_key) = pki.leaf("gw-b");
    let (c_cert, c_key) = pki.leaf("gw-c");
    let live = Scratch::new();
    let (cert, key) = (live.path("tls.crt"), live.path("tls.key"));
    write(&cert, &a_cert);
    write(&key, &a_key);
    let mut gw = offline_gateway(
        "tls-reload-interval = 0\n",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(gw.url.starts_with("https://"), "{}", gw.url);
    let log = wait_for_lines(&gw, "TLS certificate loaded", 1);
    assert!(
        log.contains("CN=gw-a") && log.contains("names=[127.0.0.1]"),
        "{log}"
    );

    let mut before = TlsConn::open(&gw.authority, &client);
    assert!(before.peer_leaf() == leaf_der(&a_cert), "not certificate A");
    before.health();

    // Renewal: both files replaced, then SIGHUP.
    write(&cert, &b_cert);
    write(&key, &b_key);
    send_signal(&gw, "-HUP");
    let log = wait_for_lines(&gw, "TLS certificate reloaded", 1);
    let line = log
        .lines()
        .find(|l| l.contains("TLS certificate reloaded"))
        .unwrap()
        .to_string();
    assert!(
        line.contains("CN=gw-b") && line.contains("sha256="),
        "{line}"
    );
    let mut after = TlsConn::open(&gw.authority, &client);
    assert!(
        after.peer_leaf() == leaf_der(&b_cert),
        "new connection not on certificate B"
    );
    after.health();
    // The connection opened before the reload goes on, on its own session.
    before.health();
    assert!(before.peer_leaf() == leaf_der(&a_cert));

    // Bad new files: each logged with the file's name; certificate B stays served.
    let cert_name = cert.display().to_string();
    let key_name = key.display().to_string();
    let bad: [(&str, &[u8], &[u8], &str); 6] = [
        (
            "garbage certificate",
            b"not a certificate\n",
            &b_key,
            &cert_name,
        ),
        ("empty certificate", b"", &b_key, &cert_name),
        (
            "certificate of bad DER",
            b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n",
            &b_key,
            &cert_name,
        ),
        ("key of another certificate", &c_cert, &b_key, &key_name),
        (
            "garbage key",
            &b_cert,
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            &key_name,
        ),
        ("empty key", &b_cert, b"", &key_name),
    ];
    let failed = "TLS certificate reload failed";
    for (i, (what, cert_pem, key_pem, named)) in bad.into_iter().enumerate() {
        write(&cert, cert_pem);
        write(&key, key_pem);
        send_signal(&gw, "-HUP");
        let log = wait_for_lines(&gw, failed, i + 1);
        let line = log.lines().filter(|l| l.contains(failed)).nth(i).unwrap();
        assert!(
            line.contains("ERROR") && line.contains(named),
            "{what}: {line}"
        );
        println!("{what}: {line}");
        if what == "key of another certificate" {
            assert!(
                line.contains("does not match the first certificate"),
                "{line}"
            );
        }
        assert!(
            gw.child.try_wait().unwrap().is_none(),
            "{what}: the gateway exited:\n{log}"
        );
        let mut c = TlsConn::open(&gw.authority, &client);
        assert!(
            c.peer_leaf() == leaf_der(&b_cert),
            "{what}: certificate B replaced"
        );
        c.health();
    }
    // A missing file too.
    std::fs::remove_file(&cert).unwrap();
    send_signal(&gw, "-HUP");
    let log = wait_for_lines(&gw, failed, bad.len() + 1);
    assert!(
        log.lines()
            .rfind(|l| l.contains(failed))
            .unwrap()
            .contains(&cert_name)
    );
    assert!(TlsConn::open(&gw.authority, &client).peer_leaf() == leaf_der(&b_cert));
    assert_eq!(log.matches("TLS certificate reloaded").count(), 1, "{log}");

    // Good files again: served; the first connection still works.
    write(&cert, &c_cert);
    write(&key, &c_key);
    send_signal(&gw, "-HUP");
    wait_for_lines(&gw, "TLS certificate reloaded", 2);
    let mut c = TlsConn::open(&gw.authority, &client);
    assert!(
        c.peer_leaf() == leaf_der(&c_cert),
        "certificate C not served"
    );
    c.health();
    before.health();
    after.health();

    // SIGTERM still shuts down gracefully.
    drop((before, after, c));
    send_signal(&gw, "-TERM");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no exit after SIGTERM:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}:\n{}", gw.log());
    assert!(gw.log().contains("shutdown requested"), "{}", gw.log());
}

/// Where nobody sends a signal (a Kubernetes secret volume: `tls.crt` and `tls.key` are
/// symlinks into `..data`, itself a symlink swapped to a new directory), the periodic
/// check (`tls-reload-interval`, here from the config file) picks up a new certificate;
/// a bad version is logged once, not at every check, and the working certificate stays.
#[test]
fn tls_certificate_reload_when_the_files_change() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let pki = TestPki::new();
        let client = pki.client();
        let (a_cert, a_key) = pki.leaf("gw-a");
        let (b_cert, b_key) = pki.leaf("gw-b");
        let (c_cert, c_key) = pki.leaf("gw-c");
        let live = Scratch::new();
        let versions: [(&str, &[u8], &[u8]); 4] = [
            ("v1", &a_cert, &a_key),
            ("v2", &b_cert, &b_key),
            ("v3", b"not a certificate\n", &b_key),
            ("v4", &c_cert, &c_key),
        ];
        for (dir, cert, key) in versions {
            std::fs::create_dir(live.path(dir)).unwrap();
            write(&live.path(&format!("{dir}/tls.crt")), cert);
            write(&live.path(&format!("{dir}/tls.key")), key);
        }
        let publish = |dir: &str| {
            let tmp = live.path("..data_tmp");
            symlink(dir, &tmp).unwrap();
            std::fs::rename(&tmp, live.path("..data")).unwrap();
        };
        publish("v1");
        symlink("..data/tls.crt", live.path("tls.crt")).unwrap();
        symlink("..data/tls.key", live.path("tls.key")).unwrap();
        let gw = offline_gateway(
            "tls-reload-interval = 1\n",
            &[
                "--tls-cert",
                live.path("tls.crt").to_str().unwrap(),
                "--tls-key",
                live.path("tls.key").to_str().unwrap(),
            ],
        );
        let served = || TlsConn::open(&gw.authority, &client).peer_leaf();
        assert!(served() == leaf_der(&a_cert), "not certificate A");
        let mut before = TlsConn::open(&gw.authority, &client);
        before.health();

        publish("v2");
        let log = wait_for_lines(&gw, "TLS certificate reloaded", 1);
        assert!(
            log.contains("TLS certificate files changed: reloading"),
            "{log}"
        );
        assert!(served() == leaf_der(&b_cert), "certificate B not served");

        let failed = "TLS certificate files changed but could not be loaded";
        publish("v3");
        let log = wait_for_lines(&gw, failed, 1);
        let line = log.lines().find(|l| l.contains(failed)).unwrap();
        assert!(line.contains("ERROR") && line.contains("tls.crt"), "{line}");
        assert!(served() == leaf_der(&b_cert), "certificate B replaced");
        // Reported once: the next checks see the same files.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(gw.log().matches(failed).count(), 1, "{}", gw.log());

        publish("v4");
        wait_for_lines(&gw, "TLS certificate reloaded", 2);
        assert!(served() == leaf_der(&c_cert), "certificate C not served");
        before.health();
        assert_eq!(
            gw.log().matches("TLS certificate reloaded").count(),
            2,
            "{}",
            gw.log()
        );
        // The checking task does not hold up a graceful shutdown.
        drop(before);
        let mut gw = gw;
        send_signal(&gw, "-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while gw.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM:\n{}",
                gw.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(gw.child.wait().unwrap().success(), "{}", gw.log());
    }
}

// ---- multipart uploads: part-wise objects (FORMAT.md §17, docs/GATEWAY.md) ---------------

/// Python helpers for the multipart tests: the ciphertext length of a part, and the
/// upstream view of an object's manifest.
const PY_PARTS: &str = r#"
CS = 65536
def clen(p):
    return p + 16 * max(1, -(-p // CS))
def manifest_name(key):
    return up.head_object(Bucket=B, Key=key)["Metadata"]["sealstream-parts"]
"#;

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn multipart_aws_cli_round_trip() {
    let gw = Gateway::start("multipart_aws_cli_round_trip", &[]);
    let b = gw.bucket();
    // Over the CLI's 8 MiB threshold: 3 parts of 8 MiB (the last shorter), 10 at once.
    let len = (20 << 20) + 12_345;
    let plain = data(len);
    write(&gw.scratch.path("big.bin"), &plain);
    let dst = format!("s3://{b}/mp/big.bin");
    ok(
        &gw.aws(&["s3", "cp", "big.bin", &dst], None),
        "aws s3 cp up",
    );

    // Stored as a part-wise object: version 2, a manifest object named after the key.
    let (_, meta, _) = moto::head_object(&gw.upstream, &b, "mp/big.bin").expect("head");
    assert!(
        meta.iter().any(|(k, v)| k == "sealstream" && v == "2"),
        "{meta:?}"
    );
    let manifest = meta
        .iter()
        .find(|(k, _)| k == "sealstream-parts")
        .map(|(_, v)| v.clone())
        .expect("sealstream-parts");
    assert!(
        manifest.starts_with("mp/big.bin.sealstream-parts-"),
        "{manifest}"
    );
    let m = moto::get_object(&gw.upstream, &b, &manifest).expect("manifest stored");
    assert_eq!(m.len(), 16 + 3 * 28 + 32, "3 entries");
    let raw = moto::get_object(&gw.upstream, &b, "mp/big.bin").expect("stored");
    assert!(!raw.windows(64).any(|w| w == &plain[9_000_000..9_000_064]));

    // Listed in plaintext size, the manifest object hidden.
    let ls = gw.aws(&["s3", "ls", &format!("s3://{b}/mp/")], None);
    ok(&ls, "aws s3 ls");
    let ls = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(ls.contains(&format!(" {len} big.bin")), "{ls}");
    assert!(!ls.contains("sealstream-parts"), "{ls}");

    // Down with the CLI's concurrent ranged GETs.
    ok(
        &gw.aws(&["s3", "cp", &dst, "back.bin"], None),
        "aws s3 cp down",
    );
    assert!(std::fs::read(gw.scratch.path("back.bin")).unwrap() == plain);

    // A range across the boundary of parts 1 and 2 (8 MiB).
    let (s, e) = ((8 << 20) - 1000, (8 << 20) + 999);
    let r = gw.aws(
        &[
            "s3api",
            "get-object",
            "--bucket",
            &b,
            "--key",
            "mp/big.bin",
            "--range",
            &format!("bytes={s}-{e}"),
            "range.out",
        ],
        None,
    );
    ok(&r, "aws s3api get-object --range");
    assert!(String::from_utf8_lossy(&r.stdout).contains(&format!("bytes {s}-{e}/{len}")));
    assert!(std::fs::read(gw.scratch.path("range.out")).unwrap() == plain[s..=e]);
    let h = gw.aws(
        &[
            "s3api",
            "head-object",
            "--bucket",
            &b,
            "--key",
            "mp/big.bin",
        ],
        None,
    );
    ok(&h, "head-object");
    assert!(String::from_utf8_lossy(&h.stdout).contains(&format!("\"ContentLength\": {len}")));

    // The same object read by the library and CLI (FORMAT.md §17 reader): whole, and a
    // range across the part boundary; rewrap changes only its keys (the manifest object
    // stays valid: its key excludes the stanzas), and the gateway still serves it.
    let key = gw.key.to_str().unwrap().to_string();
    let o = gw
        .scratch
        .run(&["decrypt", &dst, "-k", &key, "-o", "cli.bin"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(gw.scratch.path("cli.bin")).unwrap() == plain);
    let o = gw.scratch.run(&[
        "decrypt",
        &dst,
        "-k",
        &key,
        "--range",
        &format!("{s}-{e}"),
        "-o",
        "cli-range.bin",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(gw.scratch.path("cli-range.bin")).unwrap() == plain[s..=e]);
    let o = gw.scratch.run(&["inspect", &dst]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let before = moto::head_object(&gw.upstream, &b, "mp/big.bin").expect("head");
    let other = gw.scratch.path("other.key");
    let o = gw.scratch.run(&["keygen", "-o", other.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = gw.scratch.run(&[
        "rewrap",
        &dst,
        "-k",
        &key,
        "--add-key",
        other.to_str().unwrap(),
    ]);
    assert_eq!(code(&o), 0, "rewrap of a part-wise object: {}", stderr(&o));
    let after = moto::head_object(&gw.upstream, &b, "mp/big.bin").expect("head");
    assert_eq!(after.0, before.0, "the body is not rewritten");
    let meta = |h: &(u64, Vec<(String, String)>, Option<String>), k: &str| {
        h.1.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    assert_eq!(
        meta(&after, "sealstream").as_deref(),
        Some("2"),
        "still part-wise"
    );
    assert_eq!(
        meta(&after, "sealstream-parts"),
        meta(&before, "sealstream-parts")
    );
    // The added key alone opens it, whole and ranged.
    let o = gw.scratch.run(&[
        "decrypt",
        &dst,
        "-k",
        other.to_str().unwrap(),
        "--range",
        &format!("{s}-{e}"),
        "-o",
        "other-range.bin",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(gw.scratch.path("other-range.bin")).unwrap() == plain[s..=e]);
    let o = gw.scratch.run(&[
        "decrypt",
        &dst,
        "-k",
        other.to_str().unwrap(),
        "-o",
        "other.bin",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(gw.scratch.path("other.bin")).unwrap() == plain);
    ok(
        &gw.aws(&["s3", "cp", &dst, "again.bin"], None),
        "aws s3 cp down after the rewrap",
    );
    assert!(std::fs::read(gw.scratch.path("again.bin")).unwrap() == plain);

    // rm takes the manifest object with it.
    ok(&gw.aws(&["s3", "rm", &dst], None), "aws s3 rm");
    assert!(moto::get_object(&gw.upstream, &b, "mp/big.bin").is_none());
    assert!(moto::get_object(&gw.upstream, &b, &manifest).is_none());
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn multipart_boto3() {
    let gw = Gateway::start("multipart_boto3", &[]);
    let b = gw.bucket();
    gw.python(
        &format!(
            "{PY_PARTS}{}",
            r#"
from boto3.s3.transfer import TransferConfig
MiB = 1 << 20
data = os.urandom(23 * MiB + 777)
open("up.bin", "wb").write(data)
tc = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=8)
c.upload_file("up.bin", B, "t/file.bin", Config=tc)
assert up.head_object(Bucket=B, Key="t/file.bin")["Metadata"]["sealstream"] == "2"
c.download_file(B, "t/file.bin", "down.bin", Config=tc)
assert open("down.bin", "rb").read() == data
assert c.head_object(Bucket=B, Key="t/file.bin")["ContentLength"] == len(data)
for rng, want in [("bytes=0-0", data[:1]), ("bytes=%d-%d" % (5 * MiB - 3, 10 * MiB + 2), data[5 * MiB - 3:10 * MiB + 3]),
                  ("bytes=-100", data[-100:]), ("bytes=%d-" % (20 * MiB), data[20 * MiB:]),
                  ("bytes=%d-%d" % (len(data) - 10, len(data) + 50), data[-10:])]:
    o = c.get_object(Bucket=B, Key="t/file.bin", Range=rng)
    assert o["Body"].read() == want, rng
    assert o["ContentRange"].endswith("/%d" % len(data)), o["ContentRange"]
assert err(lambda: c.get_object(Bucket=B, Key="t/file.bin", Range="bytes=%d-" % len(data)))[1] == 416
listed = {o["Key"]: o["Size"] for o in c.list_objects_v2(Bucket=B)["Contents"]}
assert listed == {"t/file.bin": len(data)}, listed

# Low level: part 2 uploaded twice (the last wins), parts out of order.
p1, p2a, p2b, p3 = os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)
u = c.create_multipart_upload(Bucket=B, Key="t/low.bin", ContentType="text/x-test", Metadata={"color": "blue"})["UploadId"]
e3 = c.upload_part(Bucket=B, Key="t/low.bin", UploadId=u, PartNumber=3, Body=p3)["ETag"]
e2a = c.upload_part(Bucket=B, Key="t/low.bin", UploadId=u, PartNumber=2, Body=p2a)["ETag"]
e1 = c.upload_part(Bucket=B, Key="t/low.bin", UploadId=u, PartNumber=1, Body=p1)["ETag"]
e2b = c.upload_part(Bucket=B, Key="t/low.bin", UploadId=u, PartNumber=2, Body=p2b)["ETag"]
assert e2a != e2b
# ListParts: plaintext sizes; the bare upstream id works for it as well
bare = u.split("~")[0]
for uid in (u, bare):
    ps = c.list_parts(Bucket=B, Key="t/low.bin", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in ps] == [(1, 5 * MiB), (2, 5 * MiB), (3, 1000)], ps
ups = c.list_multipart_uploads(Bucket=B)["Uploads"]
assert [(x["Key"], x["UploadId"]) for x in ups] == [("t/low.bin", bare)], ups
assert err(lambda: c.upload_part(Bucket=B, Key="t/low.bin", UploadId=bare, PartNumber=4, Body=b"x")) == ("InvalidArgument", 400)
# Complete refusals: nothing is written
def complete(parts, uid=u, **kw):
    return c.complete_multipart_upload(Bucket=B, Key="t/low.bin", UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]}, **kw)
assert err(lambda: complete([(2, e2b), (1, e1)])) == ("InvalidPartOrder", 400)
assert err(lambda: complete([(1, e1), (2, e2a), (3, e3)])) == ("InvalidPart", 400)
assert err(lambda: complete([(1, e1.split("-")[0] + '"'), (3, e3)])) == ("InvalidPart", 400)
assert err(lambda: complete([(1, e1), (4, e3)])) == ("InvalidPart", 400)
assert err(lambda: complete([(1, e1)], uid=bare)) == ("InvalidArgument", 400)
# Malformed XML (the body replaced after boto3 built it)
def break_xml(request, **kw):
    request.data = b"<CompleteMultipartUpload><Part><PartNumber>1</Part>"
    for h in [k for k in request.headers.keys() if k.lower().startswith("x-amz-checksum") or k.lower() == "content-md5"]:
        del request.headers[h]
c.meta.events.register_first("before-sign.s3.CompleteMultipartUpload", break_xml)
assert err(lambda: complete([(1, e1), (2, e2b), (3, e3)]))[0] == "MalformedXML"
c.meta.events.unregister("before-sign.s3.CompleteMultipartUpload", break_xml)
assert upstream_keys() == ["t/file.bin", manifest_name("t/file.bin")], upstream_keys()
r = complete([(1, e1), (2, e2b), (3, e3)])
assert r["ETag"].endswith('-3"'), r
o = c.get_object(Bucket=B, Key="t/low.bin")
assert o["Body"].read() == p1 + p2b + p3
assert o["ContentType"] == "text/x-test" and o["Metadata"] == {"color": "blue"}, o
assert c.get_object(Bucket=B, Key="t/low.bin", Range="bytes=%d-%d" % (10 * MiB - 5, 10 * MiB + 5))["Body"].read() == (p2b + p3)[5 * MiB - 5:5 * MiB + 6]
# partNumber: the plaintext of that part with S3's headers (206, Content-Range, parts
# count); HEAD answers the same from the manifest, without a key
total = len(p1 + p2b + p3)
for n, want, first in [(1, p1, 0), (2, p2b, 5 * MiB), (3, p3, 10 * MiB)]:
    o = c.get_object(Bucket=B, Key="t/low.bin", PartNumber=n)
    assert o["Body"].read() == want, n
    assert o["ResponseMetadata"]["HTTPStatusCode"] == 206, o
    assert o["PartsCount"] == 3 and o["ContentLength"] == len(want), o
    assert o["ContentRange"] == "bytes %d-%d/%d" % (first, first + len(want) - 1, total), o
    h = c.head_object(Bucket=B, Key="t/low.bin", PartNumber=n)
    assert h["PartsCount"] == 3 and h["ContentLength"] == len(want), h
    assert h["ContentRange"] == o["ContentRange"], h
assert "PartsCount" not in c.head_object(Bucket=B, Key="t/low.bin")
assert err(lambda: c.get_object(Bucket=B, Key="t/low.bin", PartNumber=4)) == ("InvalidPartNumber", 416)
assert err(lambda: c.get_object(Bucket=B, Key="t/low.bin", PartNumber=1, Range="bytes=0-1")) == ("InvalidRequest", 400)
# S3 forgets the parts of a completed upload; the manifest shows it is this completion.
assert complete([(1, e1), (2, e2b), (3, e3)])["ETag"] == r["ETag"]
# ... but not with another part list
assert err(lambda: complete([(1, e1), (2, e2b)]))[0] == "NoSuchUpload"
assert c.get_object(Bucket=B, Key="t/low.bin")["Body"].read() == p1 + p2b + p3
# A Complete that upstream refuses (a part under 5 MiB that is not the last) leaves no manifest.
u4 = c.create_multipart_upload(Bucket=B, Key="t/small.bin")["UploadId"]
es = [c.upload_part(Bucket=B, Key="t/small.bin", UploadId=u4, PartNumber=n, Body=b"s" * 1000)["ETag"] for n in (1, 2)]
assert err(lambda: c.complete_multipart_upload(Bucket=B, Key="t/small.bin", UploadId=u4,
    MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(es)]}))[0] == "EntityTooSmall"
assert [k for k in upstream_keys() if k.startswith("t/small.bin")] == [], upstream_keys()
c.abort_multipart_upload(Bucket=B, Key="t/small.bin", UploadId=u4)

# A subset of the parts; If-None-Match: * on an existing key fails.
u2 = c.create_multipart_upload(Bucket=B, Key="t/sub.bin")["UploadId"]
es = [c.upload_part(Bucket=B, Key="t/sub.bin", UploadId=u2, PartNumber=n, Body=p)["ETag"] for n, p in [(1, p1), (2, p2a), (3, p3)]]
def complete2(parts, **kw):
    return c.complete_multipart_upload(Bucket=B, Key="t/sub.bin", UploadId=u2,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in parts]}, **kw)
complete2([(1, es[0]), (3, es[2])])
assert c.get_object(Bucket=B, Key="t/sub.bin")["Body"].read() == p1 + p3
# part numbers are the upload's: parts 1 and 3, no part 2
o = c.get_object(Bucket=B, Key="t/sub.bin", PartNumber=3)
assert o["Body"].read() == p3 and o["PartsCount"] == 2, o
assert o["ContentRange"] == "bytes %d-%d/%d" % (len(p1), len(p1) + len(p3) - 1, len(p1 + p3)), o
assert err(lambda: c.get_object(Bucket=B, Key="t/sub.bin", PartNumber=2)) == ("InvalidPartNumber", 416)
u3 = c.create_multipart_upload(Bucket=B, Key="t/sub.bin")["UploadId"]
e = c.upload_part(Bucket=B, Key="t/sub.bin", UploadId=u3, PartNumber=1, Body=b"new")["ETag"]
assert err(lambda: c.complete_multipart_upload(Bucket=B, Key="t/sub.bin", UploadId=u3, IfNoneMatch="*",
    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e}]}))[0] == "PreconditionFailed"
assert c.get_object(Bucket=B, Key="t/sub.bin")["Body"].read() == p1 + p3
# Abort (with the gateway's id) removes the upload
c.abort_multipart_upload(Bucket=B, Key="t/sub.bin", UploadId=u3)
assert not c.list_multipart_uploads(Bucket=B).get("Uploads")
# Replacing an object uploaded in parts removes its old manifest; copies are refused.
old_manifest = manifest_name("t/sub.bin")
c.put_object(Bucket=B, Key="t/sub.bin", Body=b"single")
assert old_manifest not in upstream_keys()
# CopyObject: the copy gets its own manifest (a copy of the source's, named after it)
low = p1 + p2b + p3
c.copy_object(Bucket=B, Key="t/copy.bin", CopySource={"Bucket": B, "Key": "t/low.bin"})
assert manifest_name("t/copy.bin").startswith("t/copy.bin.sealstream-parts-")
o = c.get_object(Bucket=B, Key="t/copy.bin")
assert o["Body"].read() == low and o["ContentType"] == "text/x-test" and o["Metadata"] == {"color": "blue"}, o
# ... in place with new metadata (REPLACE): the manifest stays
before = manifest_name("t/copy.bin")
c.copy_object(Bucket=B, Key="t/copy.bin", CopySource={"Bucket": B, "Key": "t/copy.bin"},
              MetadataDirective="REPLACE", Metadata={"color": "red"}, ContentType="text/x-red")
o = c.get_object(Bucket=B, Key="t/copy.bin")
assert o["Body"].read() == low and o["Metadata"] == {"color": "red"} and o["ContentType"] == "text/x-red", o
assert manifest_name("t/copy.bin") == before and before in upstream_keys()
# ... to another bucket
B2 = B + "-copy"
c.create_bucket(Bucket=B2)
c.copy_object(Bucket=B2, Key="t/low.bin", CopySource={"Bucket": B, "Key": "t/low.bin"})
assert c.get_object(Bucket=B2, Key="t/low.bin", Range="bytes=100-5242979")["Body"].read() == low[100:5242980]
c.delete_object(Bucket=B2, Key="t/low.bin")
assert not up.list_objects_v2(Bucket=B2).get("Contents")
c.delete_bucket(Bucket=B2)
# DeleteObjects takes manifests along; listings never show them; the copy outlives its source.
listed = sorted(o["Key"] for o in c.list_objects_v2(Bucket=B)["Contents"])
assert listed == ["t/copy.bin", "t/file.bin", "t/low.bin", "t/sub.bin"], listed
c.delete_objects(Bucket=B, Delete={"Objects": [{"Key": "t/file.bin"}, {"Key": "t/low.bin"}, {"Key": "t/sub.bin"}]})
assert c.get_object(Bucket=B, Key="t/copy.bin")["Body"].read() == low
c.delete_object(Bucket=B, Key="t/copy.bin")
assert upstream_keys() == [], upstream_keys()
# Metadata too large to leave room for the header: the header goes to a companion object,
# named like the manifest; read, deleted with the object; an aborted upload's goes too.
big = {"big": "x" * 1700}
for key, finish in [("t/comp.bin", True), ("t/comp-abort.bin", False)]:
    u5 = c.create_multipart_upload(Bucket=B, Key=key, Metadata=big)["UploadId"]
    comp = [k for k in upstream_keys() if k.startswith(key + ".sealstream-header-")]
    assert len(comp) == 1, upstream_keys()
    es = [c.upload_part(Bucket=B, Key=key, UploadId=u5, PartNumber=n, Body=p)["ETag"] for n, p in [(1, p1), (2, p3)]]
    if finish:
        c.complete_multipart_upload(Bucket=B, Key=key, UploadId=u5,
            MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(es)]})
        h = up.head_object(Bucket=B, Key=key)["Metadata"]
        assert h["sealstream-companion"] == comp[0] and "sealstream-header" not in h, h
        o = c.get_object(Bucket=B, Key=key)
        assert o["Body"].read() == p1 + p3 and o["Metadata"] == big
        assert c.list_objects_v2(Bucket=B)["Contents"][0]["Size"] == len(p1 + p3)
        c.delete_object(Bucket=B, Key=key)
    else:
        c.abort_multipart_upload(Bucket=B, Key=key, UploadId=u5)
    assert upstream_keys() == [], upstream_keys()
print("ALL OK")
"#
        ),
        &b,
        &[],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn multipart_across_two_gateways() {
    // No state shared but S3 (and the same key file): create on A, parts alternately on A
    // and B, complete on B, read on A. B signs its upstream payloads (the SDK's default
    // over HTTP, --upstream-signed-payload), A sends them unsigned with a CRC32 trailer:
    // both kinds of part make one object.
    let a = Gateway::start("multipart_across_two_gateways", &[]);
    let b_gw = Gateway::start(
        "multipart_across_two_gateways",
        &["--upstream-signed-payload"],
    );
    let b = a.bucket();
    a.python(
        r#"
cb = boto3.client("s3", endpoint_url=os.environ["GW2"], region_name="us-east-1", config=cfg)
MiB = 1 << 20
parts = [os.urandom(5 * MiB + n) for n in range(4)] + [os.urandom(12345)]
u = c.create_multipart_upload(Bucket=B, Key="two.bin")["UploadId"]
etags = []
for i, p in enumerate(parts):
    gw = c if i % 2 == 0 else cb
    etags.append(gw.upload_part(Bucket=B, Key="two.bin", UploadId=u, PartNumber=i + 1, Body=p)["ETag"])
cb.complete_multipart_upload(Bucket=B, Key="two.bin", UploadId=u,
    MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(etags)]})
whole = b"".join(parts)
assert c.get_object(Bucket=B, Key="two.bin")["Body"].read() == whole
assert c.get_object(Bucket=B, Key="two.bin", Range="bytes=%d-%d" % (10 * MiB, 16 * MiB))["Body"].read() == whole[10 * MiB:16 * MiB + 1]
assert cb.head_object(Bucket=B, Key="two.bin")["ContentLength"] == len(whole)
small = os.urandom(300_000)
cb.put_object(Bucket=B, Key="signed.bin", Body=small)
assert c.get_object(Bucket=B, Key="signed.bin")["Body"].read() == small
print("ALL OK")
"#,
        &b,
        &[("GW2", b_gw.url.clone())],
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn multipart_tampering_is_detected() {
    // Without the header cache: each manifest tampering below must be seen by the very
    // next GET. With it, a manifest replaced upstream while the object itself did not
    // change is read again only after --header-cache-seconds; meanwhile GETs use the
    // manifest authenticated when it was loaded (docs/GATEWAY.md "Limits and costs").
    let gw = Gateway::start(
        "multipart_tampering_is_detected",
        &["--header-cache-seconds", "0"],
    );
    let b = gw.bucket();
    gw.python(
        &format!(
            "{PY_PARTS}{}",
            r#"
MiB = 1 << 20
def upload(key, parts):
    u = c.create_multipart_upload(Bucket=B, Key=key)["UploadId"]
    es = [c.upload_part(Bucket=B, Key=key, UploadId=u, PartNumber=i + 1, Body=p)["ETag"] for i, p in enumerate(parts)]
    c.complete_multipart_upload(Bucket=B, Key=key, UploadId=u,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e} for i, e in enumerate(es)]})
parts = [os.urandom(5 * MiB), os.urandom(5 * MiB), os.urandom(1000)]
upload("t.bin", parts)
upload("other.bin", [os.urandom(5 * MiB), os.urandom(10)])
assert c.get_object(Bucket=B, Key="t.bin")["Body"].read() == b"".join(parts)
spans, at = [], 0
for p in parts:
    spans.append((at, at + clen(len(p)) - 1)); at += clen(len(p))

def recompose(key, order):
    # A plain upstream multipart upload made of ranges of the stored object, same metadata.
    h = up.head_object(Bucket=B, Key="t.bin")
    u = up.create_multipart_upload(Bucket=B, Key=key, Metadata=h["Metadata"])["UploadId"]
    es = []
    for n, i in enumerate(order):
        r = up.upload_part_copy(Bucket=B, Key=key, UploadId=u, PartNumber=n + 1,
                                CopySource={"Bucket": B, "Key": "t.bin"}, CopySourceRange="bytes=%d-%d" % spans[i])
        es.append(r["CopyPartResult"]["ETag"])
    up.complete_multipart_upload(Bucket=B, Key=key, UploadId=u,
        MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(es)]})

AUTH = ("SealstreamAuthenticationFailed", 409)
# a part dropped: the body is shorter than the manifest's parts
recompose("dropped.bin", [0, 2])
assert err(lambda: c.get_object(Bucket=B, Key="dropped.bin")) == AUTH
assert err(lambda: c.get_object(Bucket=B, Key="dropped.bin", Range="bytes=0-9")) == AUTH
# two parts of the same length swapped: the part keys bind their numbers
recompose("swapped.bin", [1, 0, 2])
assert err(lambda: c.get_object(Bucket=B, Key="swapped.bin")) == AUTH
assert err(lambda: c.get_object(Bucket=B, Key="swapped.bin", Range="bytes=%d-%d" % (6 * MiB, 6 * MiB + 9))) == AUTH
assert err(lambda: c.get_object(Bucket=B, Key="swapped.bin", PartNumber=1)) == AUTH
# the control: recomposed in the right order, it reads
recompose("same.bin", [0, 1, 2])
assert c.get_object(Bucket=B, Key="same.bin")["Body"].read() == b"".join(parts)
# another object's manifest in place of this one's: the manifest MAC
other = up.get_object(Bucket=B, Key=manifest_name("other.bin"))["Body"].read()
mine = manifest_name("t.bin")
saved = up.get_object(Bucket=B, Key=mine)["Body"].read()
up.put_object(Bucket=B, Key=mine, Body=other)
assert err(lambda: c.get_object(Bucket=B, Key="t.bin")) == AUTH
# one bit of the manifest flipped
bad = bytearray(saved); bad[20] ^= 1
up.put_object(Bucket=B, Key=mine, Body=bytes(bad))
assert err(lambda: c.get_object(Bucket=B, Key="t.bin")) == AUTH
# the manifest deleted
up.delete_object(Bucket=B, Key=mine)
assert err(lambda: c.get_object(Bucket=B, Key="t.bin")) == AUTH
up.put_object(Bucket=B, Key=mine, Body=saved)
assert c.get_object(Bucket=B, Key="t.bin")["Body"].read() == b"".join(parts)
# a byte of a late chunk flipped: the answer has begun, so it is aborted, not cut short
o = up.get_object(Bucket=B, Key="t.bin")
body = bytearray(o["Body"].read()); body[spans[1][0] + 100] ^= 1
recompose_meta = o["Metadata"]
u = up.create_multipart_upload(Bucket=B, Key="t.bin", Metadata=recompose_meta)["UploadId"]
es = []
for n, (s, e) in enumerate(spans):
    es.append(up.upload_part(Bucket=B, Key="t.bin", UploadId=u, PartNumber=n + 1, Body=bytes(body[s:e + 1]))["ETag"])
up.complete_multipart_upload(Bucket=B, Key="t.bin", UploadId=u,
    MultipartUpload={"Parts": [{"PartNumber": n + 1, "ETag": e} for n, e in enumerate(es)]})
try:
    got = c.get_object(Bucket=B, Key="t.bin")["Body"].read()
    raise AssertionError("a tampered object was read to the end: %d bytes" % len(got))
except AssertionError:
    raise
except Exception as e:
    print("boto3 failed:", type(e).__name__)
assert c.get_object(Bucket=B, Key="t.bin", Range="bytes=0-99")["Body"].read() == parts[0][:100]
# by part number: the tampered part is refused, an intact one served
assert err(lambda: c.get_object(Bucket=B, Key="t.bin", PartNumber=2)) == AUTH
assert c.get_object(Bucket=B, Key="t.bin", PartNumber=1)["Body"].read() == parts[0]
print("ALL OK")
"#
        ),
        &b,
        &[],
    );
    let o = gw.aws(&["s3", "cp", &format!("s3://{b}/t.bin"), "t.bin"], None);
    assert!(!o.status.success(), "aws s3 cp reported success");
    // The library/CLI reader refuses the same tampered objects (exit 4), with nothing
    // released from the tampered part; the untouched control object reads.
    let key = gw.key.to_str().unwrap().to_string();
    for name in ["dropped.bin", "swapped.bin", "t.bin"] {
        let out = format!("cli-{name}");
        let o = gw.scratch.run(&[
            "decrypt",
            &format!("s3://{b}/{name}"),
            "-k",
            &key,
            "-o",
            &out,
        ]);
        assert_eq!(code(&o), 4, "{name}: {}", stderr(&o));
        assert!(
            !gw.scratch.path(&out).exists(),
            "{name}: output left behind"
        );
    }
    let o = gw.scratch.run(&[
        "decrypt",
        &format!("s3://{b}/same.bin"),
        "-k",
        &key,
        "-o",
        "cli-same.bin",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!gw.scratch.path("t.bin").exists());
    let o = gw.aws(
        &["s3", "cp", &format!("s3://{b}/swapped.bin"), "s.bin"],
        None,
    );
    assert!(!o.status.success(), "aws s3 cp reported success");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn multipart_gateway_killed_mid_upload() {
    let mut gw = Gateway::start("multipart_gateway_killed_mid_upload", &[]);
    let b = gw.bucket();
    write(&gw.scratch.path("big.bin"), &data(160 << 20));
    let mut c = Command::new(AWS);
    c.args(["--endpoint-url", &gw.url])
        .args(["s3", "cp", "big.bin", &format!("s3://{b}/big.bin")])
        .current_dir(gw.scratch.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    client_env(&mut c, &gw.scratch);
    let mut client = c.spawn().expect("aws s3 cp");
    let start = Instant::now();
    while moto::list_multipart_uploads(&gw.upstream, &b).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no upload started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    gw.child.kill().expect("kill -9 the gateway");
    let _ = gw.child.wait();
    let status = client.wait().expect("aws exits");
    assert!(
        !status.success(),
        "the upload succeeded before the gateway was killed"
    );
    let _ = std::fs::remove_file(gw.scratch.path("big.bin"));
    // Nothing readable at the key; the incomplete upload is listed and abortable through
    // another gateway process.
    assert!(moto::get_object(&gw.upstream, &b, "big.bin").is_none());
    let gw2 = Gateway::start("multipart_gateway_killed_mid_upload", &[]);
    gw2.python(
        r#"
assert err(lambda: c.get_object(Bucket=B, Key="big.bin")) == ("NoSuchKey", 404)
ups = c.list_multipart_uploads(Bucket=B)["Uploads"]
assert [x["Key"] for x in ups] == ["big.bin"], ups
uid = ups[0]["UploadId"]
assert "~" not in uid
c.list_parts(Bucket=B, Key="big.bin", UploadId=uid)
c.abort_multipart_upload(Bucket=B, Key="big.bin", UploadId=uid)
assert not c.list_multipart_uploads(Bucket=B).get("Uploads")
assert not up.list_multipart_uploads(Bucket=B).get("Uploads")
assert [k for k in upstream_keys() if ".sealstream-parts-" in k] == []
print("ALL OK")
"#,
        &b,
        &[],
    );
}

/// Unconditional GETs reuse a header loaded in the last seconds (no HEAD upstream), yet a
/// GET always sees the object as it is upstream: replaced behind the gateway's back (the
/// GET pinned to the old ETag fails, the header is loaded again) or deleted (NoSuchKey).
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn repeated_gets_reuse_the_header_and_see_changes() {
    // A header kept for 10 minutes: the test must not depend on how fast it runs.
    let gw = Gateway::start(
        "repeated_gets_reuse_the_header_and_see_changes",
        &["--header-cache-seconds", "600"],
    );
    let b = gw.bucket();
    let key = gw.key.to_str().unwrap().to_string();
    let url = format!("s3://{b}/obj.bin");
    let put = |pt: &[u8]| {
        write(&gw.scratch.path("p.bin"), pt);
        // Straight to upstream with the CLI, not through the gateway.
        let o = gw
            .scratch
            .run(&["encrypt", "p.bin", "-k", &key, "-o", &url, "--force"]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    };
    let get = |out: &str| {
        gw.aws(
            &[
                "s3api",
                "get-object",
                "--bucket",
                &b,
                "--key",
                "obj.bin",
                "--range",
                "bytes=100-199",
                out,
            ],
            None,
        )
    };
    let first = data(300_000);
    put(&first);
    let hits = gw.metric("sealstream_gateway_header_cache_hits_total");
    for n in 0..3 {
        ok(&get("r.out"), "ranged GET");
        assert!(std::fs::read(gw.scratch.path("r.out")).unwrap() == first[100..200]);
        assert_eq!(
            gw.metric("sealstream_gateway_header_cache_hits_total"),
            hits + n,
            "GET {n}: the header was not reused"
        );
    }
    // Replaced upstream: another data key, another header, other bytes.
    let second: Vec<u8> = first.iter().map(|b| b ^ 0x55).collect();
    put(&second);
    let stale = gw.metric("sealstream_gateway_header_cache_stale_total");
    ok(&get("r2.out"), "ranged GET after the replacement");
    assert!(
        std::fs::read(gw.scratch.path("r2.out")).unwrap() == second[100..200],
        "the gateway served the replaced object's bytes"
    );
    assert_eq!(
        gw.metric("sealstream_gateway_header_cache_stale_total"),
        stale + 1
    );
    // Deleted upstream: NoSuchKey, not the cached header's object.
    let stale = gw.metric("sealstream_gateway_header_cache_stale_total");
    ok(&get("r3.out"), "ranged GET caching the new header");
    moto::delete_object(&gw.upstream, &b, "obj.bin");
    let r = get("r4.out");
    assert_ne!(
        r.status.code(),
        Some(0),
        "GET of a deleted object succeeded"
    );
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("NoSuchKey"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    assert_eq!(
        gw.metric("sealstream_gateway_header_cache_stale_total"),
        stale + 1
    );
    // --header-cache-seconds 0: every GET HEADs upstream.
    let off = Gateway::start(
        "repeated_gets_reuse_the_header_and_see_changes",
        &["--header-cache-seconds", "0"],
    );
    put(&first);
    for _ in 0..2 {
        let r = off.aws(
            &[
                "s3api",
                "get-object",
                "--bucket",
                &b,
                "--key",
                "obj.bin",
                "--range",
                "bytes=0-9",
                "o.out",
            ],
            None,
        );
        ok(&r, "GET with the cache off");
    }
    assert_eq!(off.metric("sealstream_gateway_header_cache_hits_total"), 0);
}

/// Versioned buckets (docs/GATEWAY.md "Versioned buckets"): a version id pins every
/// upstream read of a GET, HEAD or copy; each object form (inline header, companion header,
/// part-wise) is read at an older version after an overwrite deleted its companion or
/// manifest; ListObjectVersions hides our objects and gives plaintext sizes; a missing
/// version, a delete marker and a tampered version get the errors clients expect.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn versioned_bucket_reads_older_versions() {
    let gw = Gateway::start("versioned_bucket_reads_older_versions", &[]);
    let b = gw.bucket();
    let out = gw.python(
        r#"
up.put_bucket_versioning(Bucket=B, VersioningConfiguration={"Status": "Enabled"})
d1, d2 = os.urandom(300_000), os.urandom(100_000)
v1 = c.put_object(Bucket=B, Key="k", Body=d1)["VersionId"]
v2 = c.put_object(Bucket=B, Key="k", Body=d2)["VersionId"]
assert v1 and v2 and v1 != v2, (v1, v2)
open("v1.bin", "wb").write(d1)
# GET, HEAD and ranges of v1 (twice: the second from the header cache, keyed by version)
for _ in range(2):
    g = c.get_object(Bucket=B, Key="k", VersionId=v1)
    assert g["Body"].read() == d1 and g["VersionId"] == v1 and g["ContentLength"] == len(d1)
    assert c.get_object(Bucket=B, Key="k")["Body"].read() == d2
# the current object's cached header: an overwrite straight upstream (a new version; the
# cached one still exists) is seen at once, not served from the cached version
d3 = os.urandom(50_000)
c.put_object(Bucket=B, Key="kx", Body=d3)
assert c.get_object(Bucket=B, Key="k")["Body"].read() == d2
v3 = up.copy_object(Bucket=B, Key="k", CopySource={"Bucket": B, "Key": "kx"})["VersionId"]
g = c.get_object(Bucket=B, Key="k")
assert g["Body"].read() == d3 and g["VersionId"] == v3
assert metric("sealstream_gateway_header_cache_stale_total") >= 1
h = c.head_object(Bucket=B, Key="k", VersionId=v1)
assert h["ContentLength"] == len(d1) and h["VersionId"] == v1, h
assert c.head_object(Bucket=B, Key="k")["VersionId"] == v3
for rng, want in [("bytes=70000-200000", d1[70000:200001]), ("bytes=-1000", d1[-1000:]),
                  ("bytes=299990-", d1[299990:])]:
    g = c.get_object(Bucket=B, Key="k", VersionId=v1, Range=rng)
    assert g["Body"].read() == want, rng
    assert g["ContentRange"].endswith("/300000"), g["ContentRange"]
assert err(lambda: c.get_object(Bucket=B, Key="k", VersionId=v1, Range="bytes=400000-")) == ("InvalidRange", 416)

# companion form: metadata over 2 KB puts the header in a companion object
pad = {"m%02d" % i: "v" * 60 for i in range(25)}  # only the companion form fits
c1 = c.put_object(Bucket=B, Key="kc", Body=d1, Metadata=pad)["VersionId"]
comp1 = [k for k in upstream_keys("kc.") if ".sealstream-header-" in k]
assert len(comp1) == 1, comp1
c.put_object(Bucket=B, Key="kc", Body=d2, Metadata=pad)
# the overwrite deleted v1's companion (a delete marker): found among its versions
assert comp1[0] not in upstream_keys("kc.")
g = c.get_object(Bucket=B, Key="kc", VersionId=c1)
assert g["Body"].read() == d1 and g["Metadata"] == pad
assert c.head_object(Bucket=B, Key="kc", VersionId=c1)["ContentLength"] == len(d1)
assert c.get_object(Bucket=B, Key="kc", VersionId=c1, Range="bytes=5-9")["Body"].read() == d1[5:10]

# part-wise (multipart upload), overwritten by a single PUT: its manifest is deleted
big = os.urandom((5 << 20) + 1000)
u = c.create_multipart_upload(Bucket=B, Key="km")["UploadId"]
p1 = c.upload_part(Bucket=B, Key="km", UploadId=u, PartNumber=1, Body=big[:5 << 20])["ETag"]
p2 = c.upload_part(Bucket=B, Key="km", UploadId=u, PartNumber=2, Body=big[5 << 20:])["ETag"]
m1 = c.complete_multipart_upload(Bucket=B, Key="km", UploadId=u, MultipartUpload={"Parts": [
    {"PartNumber": 1, "ETag": p1}, {"PartNumber": 2, "ETag": p2}]})["VersionId"]
c.put_object(Bucket=B, Key="km", Body=b"small")
assert not [k for k in upstream_keys("km.") if ".sealstream-parts-" in k]
assert c.get_object(Bucket=B, Key="km", VersionId=m1)["Body"].read() == big
g = c.get_object(Bucket=B, Key="km", VersionId=m1, Range="bytes=%d-%d" % ((5 << 20) - 10, (5 << 20) + 9))
assert g["Body"].read() == big[(5 << 20) - 10:(5 << 20) + 10]
assert c.head_object(Bucket=B, Key="km", VersionId=m1)["ContentLength"] == len(big)
assert c.get_object(Bucket=B, Key="km", VersionId=m1, PartNumber=2)["Body"].read() == big[5 << 20:]

# copies of older versions: to a new key, and in place (a restore) for each form
r = c.copy_object(Bucket=B, Key="k-copy", CopySource={"Bucket": B, "Key": "k", "VersionId": v1})
assert r["CopySourceVersionId"] == v1, r
assert c.get_object(Bucket=B, Key="k-copy")["Body"].read() == d1
c.copy_object(Bucket=B, Key="kc-copy", CopySource={"Bucket": B, "Key": "kc", "VersionId": c1})
assert c.get_object(Bucket=B, Key="kc-copy")["Body"].read() == d1
c.copy_object(Bucket=B, Key="km", CopySource={"Bucket": B, "Key": "km", "VersionId": m1})
assert c.get_object(Bucket=B, Key="km")["Body"].read() == big
c.copy_object(Bucket=B, Key="km-copy", CopySource={"Bucket": B, "Key": "km", "VersionId": m1})
assert c.get_object(Bucket=B, Key="km-copy", Range="bytes=0-9")["Body"].read() == big[:10]

# a version id that names nothing; a delete marker
assert err(lambda: c.get_object(Bucket=B, Key="k", VersionId="nosuchversion0000")) == ("NoSuchVersion", 404)
assert err(lambda: c.head_object(Bucket=B, Key="k", VersionId="nosuchversion0000"))[1] == 404
assert err(lambda: c.copy_object(Bucket=B, Key="x", CopySource={"Bucket": B, "Key": "k", "VersionId": "nosuchversion0000"})) == ("NoSuchVersion", 404)
c.delete_object(Bucket=B, Key="k")
dm = [m for m in up.list_object_versions(Bucket=B, Prefix="k")["DeleteMarkers"] if m["Key"] == "k"][0]
assert err(lambda: c.get_object(Bucket=B, Key="k"))[1] == 404
assert err(lambda: c.head_object(Bucket=B, Key="k", VersionId=dm["VersionId"]))[1] == 405
assert c.get_object(Bucket=B, Key="k", VersionId=v1)["Body"].read() == d1

# ListObjectVersions: our companions and manifests hidden, plaintext sizes
lv = c.list_object_versions(Bucket=B)
keys = sorted({v["Key"] for v in lv["Versions"]} | {m["Key"] for m in lv.get("DeleteMarkers", [])})
assert keys == ["k", "k-copy", "kc", "kc-copy", "km", "km-copy", "kx"], keys
sizes = {v["VersionId"]: v["Size"] for v in lv["Versions"]}
assert sizes[v1] == len(d1) and sizes[v2] == len(d2) and sizes[c1] == len(d1) and sizes[m1] == len(big), sizes
assert [m["VersionId"] for m in lv["DeleteMarkers"]] == [dm["VersionId"]]

# one version tampered (a byte flipped, stored as a new version with the same metadata):
# that version fails, the others still read
t1 = c.put_object(Bucket=B, Key="kt", Body=d1)["VersionId"]
o = up.get_object(Bucket=B, Key="kt", VersionId=t1)
body = bytearray(o["Body"].read()); body[10] ^= 1
t2 = up.put_object(Bucket=B, Key="kt", Body=bytes(body), Metadata=o["Metadata"])["VersionId"]
assert err(lambda: c.get_object(Bucket=B, Key="kt", VersionId=t2)) == ("SealstreamAuthenticationFailed", 409)
assert err(lambda: c.get_object(Bucket=B, Key="kt")) == ("SealstreamAuthenticationFailed", 409)
assert c.get_object(Bucket=B, Key="kt", VersionId=t1)["Body"].read() == d1

# a deleted companion whose versions hold two contents: which one is not knowable
a1 = c.put_object(Bucket=B, Key="ka", Body=d1, Metadata=pad)["VersionId"]
ca = [k for k in upstream_keys("ka.") if ".sealstream-header-" in k][0]
up.put_object(Bucket=B, Key=ca, Body=b"another header")
up.delete_object(Bucket=B, Key=ca)
assert err(lambda: c.get_object(Bucket=B, Key="ka", VersionId=a1)) == ("SealstreamAmbiguousVersion", 409)
print("V1=" + v1)
print("ALL OK")
"#,
        &b,
        &[],
    );
    let v1 = out
        .lines()
        .find_map(|l| l.strip_prefix("V1="))
        .expect("version id")
        .to_string();
    let d1 = std::fs::read(gw.scratch.path("v1.bin")).expect("v1.bin");
    // The AWS CLI: get-object (whole and ranged), head-object and copy-object of v1.
    let o = gw.aws(
        &[
            "s3api",
            "get-object",
            "--bucket",
            &b,
            "--key",
            "k",
            "--version-id",
            &v1,
            "got.bin",
        ],
        None,
    );
    ok(&o, "aws s3api get-object --version-id");
    assert_eq!(std::fs::read(gw.scratch.path("got.bin")).unwrap(), d1);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&v1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = gw.aws(
        &[
            "s3api",
            "get-object",
            "--bucket",
            &b,
            "--key",
            "k",
            "--version-id",
            &v1,
            "--range",
            "bytes=1000-1999",
            "part.bin",
        ],
        None,
    );
    ok(&o, "aws s3api get-object --version-id --range");
    assert_eq!(
        std::fs::read(gw.scratch.path("part.bin")).unwrap(),
        &d1[1000..2000]
    );
    let o = gw.aws(
        &[
            "s3api",
            "head-object",
            "--bucket",
            &b,
            "--key",
            "k",
            "--version-id",
            &v1,
        ],
        None,
    );
    ok(&o, "aws s3api head-object --version-id");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"ContentLength\": 300000"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = gw.aws(
        &[
            "s3api",
            "copy-object",
            "--bucket",
            &b,
            "--key",
            "cli-copy",
            "--copy-source",
            &format!("{b}/k?versionId={v1}"),
        ],
        None,
    );
    ok(&o, "aws s3api copy-object ?versionId=");
    let o = gw.aws(
        &["s3", "cp", &format!("s3://{b}/cli-copy"), "copy.bin"],
        None,
    );
    ok(&o, "aws s3 cp of the copy");
    assert_eq!(std::fs::read(gw.scratch.path("copy.bin")).unwrap(), d1);
    // A version id that names nothing: the CLI fails with S3's code, no file left.
    let o = gw.aws(
        &[
            "s3api",
            "get-object",
            "--bucket",
            &b,
            "--key",
            "k",
            "--version-id",
            "nosuchversion0000",
            "none.bin",
        ],
        None,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("NoSuchVersion"), "{}", stderr(&o));
    let o = gw.aws(
        &[
            "s3api",
            "list-object-versions",
            "--bucket",
            &b,
            "--prefix",
            "k",
        ],
        None,
    );
    ok(&o, "aws s3api list-object-versions");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("sealstream-"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"Size\": 300000"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// The `upstream settings` line a gateway logs at start (the settings its upstream clients
/// are built with), waiting for it.
fn upstream_settings(gw: &Gateway) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(l) = gw.log().lines().find(|l| l.contains("upstream settings")) {
            return l.to_string();
        }
        assert!(Instant::now() < deadline, "no settings line:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A gateway with `config` (as [`configured`]) and exactly the AWS environment `env`
/// (no AWS_REGION or endpoint of the machine): the upstream is never called.
fn configured_upstream(config: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
    let scratch = Scratch::new();
    let creds = client_credentials(&scratch);
    let key = scratch.keyfile("gw.key", &common::key(7));
    let path = scratch.path("gateway.toml");
    let mut text = config
        .replace("{key}", &key.display().to_string())
        .replace("{creds}", &creds.display().to_string());
    if text.contains("{ca}") {
        // A CA certificate for `ca-bundle` (checked at start, so it must be a real one).
        let (ca, ca_key) = (scratch.path("ca.pem"), scratch.path("ca.key"));
        let o = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
            .args(["-subj", "/CN=sealstream-test-ca", "-keyout"])
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca)
            .output()
            .expect("openssl");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        text = text.replace("{ca}", &ca.display().to_string());
    }
    write(&path, text.as_bytes());
    let mut cmd = Command::new(bin());
    cmd.env("SEALSTREAM_HOME", scratch.path("home"))
        .current_dir(scratch.dir.path());
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if (k.starts_with("SEALSTREAM_") && k != "SEALSTREAM_HOME") || k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .arg("--config")
        .arg(&path)
        .envs(env.iter().copied())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", scratch.path("aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            scratch.path("aws-credentials"),
        );
    Gateway::spawn(cmd, scratch, String::new(), key)
}

/// The global upstream flags from `--config`: flag (before or after `serve`) >
/// environment (`SEALSTREAM_…`, or the SDK's own `AWS_REGION`/`AWS_ENDPOINT_URL`) > file >
/// default, read back from the settings line the gateway logs; bad values refused as the
/// flag refuses them, without echoing them. No emulator needed.
#[test]
fn config_file_sets_the_upstream() {
    const FILE: &str = r#"
listen = "127.0.0.1:0"
key = "{key}"
client-credentials = "{creds}"
region = "eu-west-3"
endpoint-url = "http://127.0.0.1:9"
ca-bundle = "{ca}"
part-size = "16MiB"
s3-max-attempts = 5
s3-timeout = 45
kms-timeout = "90s"
concurrency = 3
"#;
    // The file alone (a flag of serve's own alongside).
    let gw = configured_upstream(FILE, &["serve", "--max-requests", "4"], &[]);
    let line = upstream_settings(&gw);
    for want in [
        "region=eu-west-3",
        "endpoint_url=http://127.0.0.1:9",
        "ca.pem s3_max_attempts",
        "part_size=16777216",
        "s3_max_attempts=5",
        "s3_timeout=45s",
        "kms_timeout=90s",
        "concurrency=3",
        // defaults where the file says nothing
        "s3_read_timeout=30s",
        "kms_max_attempts=8",
        "profile=(AWS chain)",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    assert_eq!(gw.metric("sealstream_gateway_requests_max"), 4);
    drop(gw);
    // The environment over the file; flags (before and after `serve`) over both.
    let env = [
        ("SEALSTREAM_S3_TIMEOUT", "50s"),
        ("SEALSTREAM_S3_MAX_ATTEMPTS", "6"),
        ("AWS_REGION", "ap-south-1"),
        ("AWS_ENDPOINT_URL", "http://127.0.0.1:7"),
    ];
    let gw = configured_upstream(
        FILE,
        &["--concurrency", "2", "serve", "--s3-max-attempts", "7"],
        &env,
    );
    let line = upstream_settings(&gw);
    for want in [
        "s3_timeout=50s",
        "s3_max_attempts=7",
        "concurrency=2",
        "part_size=16777216",
        // the SDK reads its own variables: the file's values are not used
        "region=(AWS chain)",
        "endpoint_url=(AWS chain)",
    ] {
        assert!(line.contains(want), "{want} missing: {line}");
    }
    drop(gw);
    let gw = configured_upstream(
        FILE,
        &[
            "serve",
            "--endpoint-url",
            "http://127.0.0.1:8",
            "--region",
            "us-west-2",
        ],
        &env,
    );
    let line = upstream_settings(&gw);
    assert!(line.contains("endpoint_url=http://127.0.0.1:8"), "{line}");
    assert!(line.contains("region=us-west-2"), "{line}");
    drop(gw);
    // Bad values: exit 2, key and line named, the value not echoed.
    let s = Scratch::new();
    for (text, want) in [
        (
            "key = \"k.key\"\npart-size = \"SECRET123\"\n",
            "line 2: 'part-size' must be a valid --part-size",
        ),
        (
            "endpoint-url = \"SECRET123\"\n",
            "line 1: 'endpoint-url' must be a valid --endpoint-url",
        ),
        (
            "s3-timeout = [1]\n",
            "line 1: 's3-timeout' must be a string or an integer",
        ),
    ] {
        let path = s.path("bad.toml");
        write(&path, text.as_bytes());
        let o = serve_cmd(&s)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("run serve");
        assert_eq!(code(&o), 2, "{}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains(want), "{e}");
        assert!(!e.contains("SECRET123"), "the value was printed: {e}");
    }
}

/// The file's `endpoint-url` really reaches the upstream: with no `AWS_ENDPOINT_URL`, it
/// is the only way to the emulator, and a round trip through the gateway works.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn config_file_endpoint_reaches_the_upstream() {
    let upstream = endpoint("config_file_endpoint_reaches_the_upstream").expect("emulator");
    let file = format!(
        "listen = \"127.0.0.1:0\"\nkey = \"{{key}}\"\nclient-credentials = \"{{creds}}\"\n\
         region = \"us-east-1\"\nendpoint-url = \"http://{upstream}\"\ns3-max-attempts = 2\n"
    );
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let mut gw = configured_upstream(&file, &["serve"], &env);
    gw.upstream = upstream;
    let line = upstream_settings(&gw);
    assert!(
        line.contains(&format!("endpoint_url=http://{}", gw.upstream)),
        "{line}"
    );
    let b = gw.bucket();
    gw.python(
        r#"
c.put_object(Bucket=B, Key="via-file", Body=b"configured upstream")
assert c.get_object(Bucket=B, Key="via-file")["Body"].read() == b"configured upstream"
assert up.head_object(Bucket=B, Key="via-file")["Metadata"]["sealstream"] == "1"
print("ALL OK")
"#,
        &b,
        &[],
    );
}
