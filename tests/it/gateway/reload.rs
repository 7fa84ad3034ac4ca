//! Client credentials reloaded without a restart (docs/GATEWAY.md "Reloading without a
//! restart"): a client added to the file and a client removed take effect on SIGHUP or at
//! the periodic check, a bad new file is logged (file and line, never a secret) and the
//! keys served so far stay in force, a request in flight finishes on the keys it started
//! with. Real clients (boto3, the AWS CLI v2) against moto.

use super::*;

/// The second client (the first is the `tester` of [`client_credentials`]).
const B_ID: &str = "GWCLIENTKEY0002";
const B_SECRET: &str = "gateway-client-secret-0002";

/// The credentials file's text for the clients named: `a` is [`CLIENT_ID`] (label
/// `tester`), `b` is [`B_ID`] (label `second`).
fn clients(a: bool, b: bool) -> String {
    let mut s = String::from("# test clients\n");
    if a {
        s += &format!(
            "[tester]\naws_access_key_id = {CLIENT_ID}\naws_secret_access_key = {CLIENT_SECRET}\n"
        );
    }
    if b {
        s += &format!("[second]\naws_access_key_id = {B_ID}\naws_secret_access_key = {B_SECRET}\n");
    }
    s
}

/// Replaces the gateway's client-credentials file the way an operator should: a new file
/// renamed into place.
fn replace_clients(gw: &Gateway, text: &str) {
    let tmp = gw.scratch.path("clients.ini.new");
    write(&tmp, text.as_bytes());
    std::fs::rename(&tmp, gw.scratch.path("clients.ini")).expect("rename");
}

/// boto3 clients `a` (the default client `c`) and `b`, and `works(cl, key)` (a PUT and a
/// GET of `key`) for the scripts below.
const PY_CLIENTS: &str = r#"
a = c
b = boto3.client("s3", endpoint_url=GW, region_name="us-east-1", config=cfg,
                 aws_access_key_id=os.environ["B_ID"], aws_secret_access_key=os.environ["B_SECRET"])
def works(cl, key):
    data = os.urandom(1000)
    cl.put_object(Bucket=B, Key=key, Body=data)
    assert cl.get_object(Bucket=B, Key=key)["Body"].read() == data
def refused(cl, key):
    assert err(lambda: cl.put_object(Bucket=B, Key=key, Body=b"x")) == ("InvalidAccessKeyId", 403)
    assert err(lambda: cl.get_object(Bucket=B, Key="a0")) == ("InvalidAccessKeyId", 403)
    assert key not in upstream_keys()
"#;

fn py(gw: &Gateway, bucket: &str, script: &str) {
    gw.python(
        &format!("{PY_CLIENTS}\n{script}\nprint(\"ALL OK\")\n"),
        bucket,
        &[("B_ID", B_ID.into()), ("B_SECRET", B_SECRET.into())],
    );
}

/// SIGHUP reloads the client credentials: B added → B's requests succeed; A removed → A
/// gets 403 InvalidAccessKeyId; a broken file (unparseable, an access key id twice, empty,
/// missing) → logged naming the file (and line), no secret, B still works and A is still
/// refused; a good file again → both work. `/metrics` counts the reloads.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn client_credentials_reload_on_sighup() {
    let gw = Gateway::start(
        "client_credentials_reload_on_sighup",
        &["--reload-interval", "0"],
    );
    let bkt = gw.bucket();
    py(&gw, &bkt, "works(a, \"a0\")\nrefused(b, \"b0\")");

    let reloaded = "client credentials reloaded";
    replace_clients(&gw, &clients(true, true));
    send_signal(&gw, "-HUP");
    let log = wait_for_lines(&gw, reloaded, 1);
    let line = log.lines().find(|l| l.contains(reloaded)).unwrap();
    assert!(
        line.contains("2 clients (added: [second], removed: [], changed: [])"),
        "{line}"
    );
    py(&gw, &bkt, "works(b, \"b1\")\nworks(a, \"a1\")");

    replace_clients(&gw, &clients(false, true));
    send_signal(&gw, "-HUP");
    let log = wait_for_lines(&gw, reloaded, 2);
    let line = log.lines().filter(|l| l.contains(reloaded)).nth(1).unwrap();
    assert!(
        line.contains("1 client (added: [], removed: [tester], changed: [])"),
        "{line}"
    );
    py(&gw, &bkt, "refused(a, \"a2\")\nworks(b, \"b2\")");

    // Broken files: each logged with the file's name (and the line), B stays in force.
    let name = gw.scratch.path("clients.ini").display().to_string();
    let b_only = clients(false, true);
    let broken: [(&str, Option<String>, &str); 4] = [
        (
            "unparseable",
            Some(format!(
                "{b_only}[third]\naws_access_key_id = AK3\nSECRETLINE\n"
            )),
            "line 7: expected 'name = value'",
        ),
        (
            "access key id twice",
            Some(format!(
                "{b_only}[again]\naws_access_key_id = {B_ID}\naws_secret_access_key = other-secret\n"
            )),
            "line 6: [again]: access key id GWCLIENTKEY0002 appears twice (also in [second])",
        ),
        ("empty", Some(String::new()), "no credentials in the file"),
        ("missing", None, "reading the client credentials file"),
    ];
    let failed = "client credentials reload failed";
    for (i, (what, text, says)) in broken.iter().enumerate() {
        match text {
            Some(t) => replace_clients(&gw, t),
            None => std::fs::remove_file(gw.scratch.path("clients.ini")).unwrap(),
        }
        send_signal(&gw, "-HUP");
        let log = wait_for_lines(&gw, failed, i + 1);
        let line = log.lines().filter(|l| l.contains(failed)).nth(i).unwrap();
        println!("{what}: {line}");
        assert!(
            line.contains("ERROR")
                && line.contains(&name)
                && line.contains(says)
                && line.contains("the previous client keys stay in force"),
            "{what}: {line}"
        );
        py(
            &gw,
            &bkt,
            &format!("works(b, \"b3-{i}\")\nrefused(a, \"a3-{i}\")"),
        );
    }

    // Fixed: both again.
    replace_clients(&gw, &clients(true, true));
    send_signal(&gw, "-HUP");
    wait_for_lines(&gw, reloaded, 3);
    py(&gw, &bkt, "works(a, \"a4\")\nworks(b, \"b4\")");

    let reloads = |what: &str, result: &str| {
        gw.metric(&format!(
            "sealstream_gateway_reloads_total{{what=\"{what}\",result=\"{result}\"}}"
        ))
    };
    assert_eq!(
        (
            reloads("client_credentials", "ok"),
            reloads("client_credentials", "error"),
            reloads("tls", "ok"),
            reloads("tls", "error")
        ),
        (3, 4, 0, 0)
    );
    let log = gw.log();
    for secret in [CLIENT_SECRET, B_SECRET, "other-secret", "SECRETLINE"] {
        assert!(!log.contains(secret), "{secret} logged:\n{log}");
    }
}

/// A request whose signature was checked finishes when its key is removed meanwhile: a
/// PutObject signed by A sends half its body, A is removed (SIGHUP, reloaded), the rest
/// is sent, the object is stored; A's next request is refused.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn request_in_flight_keeps_its_credentials() {
    let gw = Gateway::start(
        "request_in_flight_keeps_its_credentials",
        &["--reload-interval", "0"],
    );
    let bkt = gw.bucket();
    replace_clients(&gw, &clients(true, true));
    send_signal(&gw, "-HUP");
    wait_for_lines(&gw, "client credentials reloaded", 1);
    let (started, go) = (gw.scratch.path("started"), gw.scratch.path("go"));
    // SigV4 by botocore's signer, the body sent by hand (UNSIGNED-PAYLOAD) in two halves.
    let script = format!(
        r#"{PY_PRELUDE}
{PY_CLIENTS}
import http.client, time
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
body = os.urandom(600_000)
path = f"/{{B}}/inflight.bin"
req = AWSRequest(method="PUT", url=GW + path,
                 headers={{"Content-Length": str(len(body)), "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}})
SigV4Auth(Credentials(os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]),
          "s3", "us-east-1").add_auth(req)
conn = http.client.HTTPConnection(GW.split("//")[1], timeout=60)
conn.putrequest("PUT", path, skip_accept_encoding=True)
for k, v in req.headers.items():
    conn.putheader(k, v)
conn.endheaders()
conn.send(body[:300_000])
open({started:?}, "w").close()
deadline = time.time() + 30
while not os.path.exists({go:?}):
    assert time.time() < deadline, "no go"
    time.sleep(0.02)
conn.send(body[300_000:])
r = conn.getresponse()
answer = r.read()
assert r.status == 200, (r.status, answer)
assert b.get_object(Bucket=B, Key="inflight.bin")["Body"].read() == body
refused(a, "after")
print("ALL OK")
"#
    );
    let path = gw.scratch.path("inflight.py");
    write(&path, script.as_bytes());
    let mut c = Command::new(python());
    c.arg(&path)
        .current_dir(gw.scratch.dir.path())
        .env("GW", &gw.url)
        .env("UPSTREAM", format!("http://{}", gw.upstream))
        .env("BUCKET", &bkt)
        .env("B_ID", B_ID)
        .env("B_SECRET", B_SECRET)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    client_env(&mut c, &gw.scratch);
    let child = c.spawn().expect("python");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the upload did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    replace_clients(&gw, &clients(false, true));
    send_signal(&gw, "-HUP");
    let log = wait_for_lines(&gw, "client credentials reloaded", 2);
    assert!(log.contains("removed: [tester]"), "{log}");
    write(&go, b"");
    let o = child.wait_with_output().expect("python output");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.trim_end().ends_with("ALL OK"),
        "{out}\n{}\n--- gateway log:\n{}",
        String::from_utf8_lossy(&o.stderr),
        gw.log()
    );
}

/// The AWS CLI v2 as client `id` (the gateway's client environment otherwise).
fn aws_as(gw: &Gateway, id: &str, secret: &str, args: &[&str]) -> Output {
    let mut c = Command::new(AWS);
    c.args(["--endpoint-url", &gw.url])
        .args(args)
        .current_dir(gw.scratch.dir.path());
    client_env(&mut c, &gw.scratch);
    c.env("AWS_ACCESS_KEY_ID", id)
        .env("AWS_SECRET_ACCESS_KEY", secret);
    run_with_stdin(c, None)
}

/// Where nobody sends a signal (a Kubernetes secret volume: `clients.ini` a symlink into
/// `..data`, itself a symlink swapped to a new directory), the periodic check
/// (`--reload-interval 1`) picks up the new client keys; a bad version is logged once and
/// the keys in force stay. The AWS CLI v2 as the clients.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn client_credentials_reload_when_the_file_changes() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::symlink;
        let gw = Gateway::start(
            "client_credentials_reload_when_the_file_changes",
            &["--reload-interval", "1"],
        );
        let bkt = gw.bucket();
        let list = ["s3api", "list-objects-v2", "--bucket", bkt.as_str()];
        let a = || aws_as(&gw, CLIENT_ID, CLIENT_SECRET, &list);
        let b = || aws_as(&gw, B_ID, B_SECRET, &list);
        let refused = |o: Output, who: &str| {
            assert!(!o.status.success(), "{who} accepted");
            let e = String::from_utf8_lossy(&o.stderr);
            assert!(e.contains("(InvalidAccessKeyId)"), "{who}: {e}");
        };
        ok(&a(), "A at start");
        refused(b(), "B at start");

        let live = gw.scratch.path("live");
        std::fs::create_dir(&live).unwrap();
        let versions = [
            ("v1", clients(false, true)),
            (
                "v2",
                format!(
                    "{}[dup]\naws_access_key_id = {B_ID}\naws_secret_access_key = x\n",
                    clients(false, true)
                ),
            ),
            ("v3", clients(true, true)),
        ];
        for (dir, text) in &versions {
            std::fs::create_dir(live.join(dir)).unwrap();
            write(&live.join(dir).join("clients.ini"), text.as_bytes());
        }
        let publish = |dir: &str| {
            let tmp = live.join("..data_tmp");
            symlink(dir, &tmp).unwrap();
            std::fs::rename(&tmp, live.join("..data")).unwrap();
        };
        publish("v1");
        // The file the gateway reads becomes the volume's symlink (itself a change).
        let link = gw.scratch.path("clients.ini.link");
        symlink(live.join("..data/clients.ini"), &link).unwrap();
        std::fs::rename(&link, gw.scratch.path("clients.ini")).unwrap();

        let reloaded = "client credentials reloaded";
        let log = wait_for_lines(&gw, reloaded, 1);
        assert!(
            log.contains("client credentials file changed: reloading")
                && log.contains("removed: [tester]"),
            "{log}"
        );
        ok(&b(), "B after the first change");
        refused(a(), "A after the first change");

        let failed = "client credentials file changed but could not be loaded";
        publish("v2");
        let log = wait_for_lines(&gw, failed, 1);
        let line = log.lines().find(|l| l.contains(failed)).unwrap();
        assert!(
            line.contains("ERROR") && line.contains("clients.ini") && line.contains("line 6"),
            "{line}"
        );
        ok(&b(), "B after the bad version");
        refused(a(), "A after the bad version");
        // Reported once: the next checks see the same file.
        std::thread::sleep(Duration::from_millis(2500));
        assert_eq!(gw.log().matches(failed).count(), 1, "{}", gw.log());

        publish("v3");
        wait_for_lines(&gw, reloaded, 2);
        ok(&a(), "A after the fix");
        ok(&b(), "B after the fix");
        assert_eq!(
            gw.metric(
                "sealstream_gateway_reloads_total{what=\"client_credentials\",result=\"error\"}"
            ),
            1
        );
    }
}

/// Without TLS a SIGHUP reloads the client credentials only, and does not stop the
/// gateway. No emulator needed.
#[test]
fn sighup_without_tls_reloads_the_client_credentials() {
    let gw = offline_gateway("", &[]);
    assert!(gw.url.starts_with("http://"), "{}", gw.url);
    send_signal(&gw, "-HUP");
    let log = wait_for_lines(&gw, "client credentials reloaded: 1 client (unchanged)", 1);
    assert!(!log.contains("ERROR"), "{log}");
    raw_get(&gw.authority, "/healthz");
    let mut gw = gw;
    assert!(gw.child.try_wait().unwrap().is_none(), "{}", gw.log());
}

/// `--reload-interval` and its old name `--tls-reload-interval`, as flags, environment
/// variables and config-file keys: flag > new variable > old variable > file > default,
/// read back from the line the gateway logs at start; both names in one file, or a bad
/// old variable, are refused. No emulator needed.
#[test]
fn reload_interval_and_its_old_name() {
    let every = |gw: &Gateway| {
        let log = gw.log();
        if log.contains("files are reloaded on SIGHUP only") {
            return 0;
        }
        let l = log
            .lines()
            .find(|l| l.contains("for changes every "))
            .unwrap_or_else(|| panic!("no interval logged:\n{log}"));
        let n = l.split("for changes every ").nth(1).unwrap();
        n[..n.find('s').unwrap()].parse::<u64>().unwrap()
    };
    let old_env = ("SEALSTREAM_TLS_RELOAD_INTERVAL", "3");
    let new_env = ("SEALSTREAM_RELOAD_INTERVAL", "4");
    for (config, args, env, want) in [
        ("", &[][..], &[][..], 60),
        ("", &["--tls-reload-interval", "5"][..], &[][..], 5),
        ("", &["--reload-interval", "7"][..], &[old_env][..], 7),
        ("", &[][..], &[old_env][..], 3),
        ("", &[][..], &[old_env, new_env][..], 4),
        ("reload-interval = 2\n", &[][..], &[][..], 2),
        ("tls-reload-interval = 0\n", &[][..], &[][..], 0),
        ("reload-interval = 2\n", &[][..], &[old_env][..], 3),
        (
            "reload-interval = 2\n",
            &["--tls-reload-interval", "6"][..],
            &[old_env][..],
            6,
        ),
    ] {
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let config = format!(
            "listen = \"127.0.0.1:0\"\nkey = \"{{key}}\"\nclient-credentials = \"{{creds}}\"\n\
             region = \"us-east-1\"\nendpoint-url = \"http://127.0.0.1:9\"\n{config}"
        );
        let gw = configured_upstream(&config, &all, env);
        assert_eq!(every(&gw), want, "{config} {args:?} {env:?}:\n{}", gw.log());
    }
    let s = Scratch::new();
    let path = s.path("both.toml");
    write(&path, b"reload-interval = 1\ntls-reload-interval = 2\n");
    let o = serve_cmd(&s).arg("--config").arg(&path).output().unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("'reload-interval' and 'tls-reload-interval' are one option"),
        "{}",
        stderr(&o)
    );
    let o = serve_cmd(&s)
        .env("SEALSTREAM_TLS_RELOAD_INTERVAL", "soon")
        .output()
        .unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("SEALSTREAM_TLS_RELOAD_INTERVAL must be a non-negative integer"),
        "{}",
        stderr(&o)
    );
}

/// A bad client-credentials file at start: exit 2 before serving, the file and line
/// named, no secret. No emulator needed.
#[test]
fn bad_client_credentials_at_start() {
    let s = Scratch::new();
    let creds = s.path("clients.ini");
    write(
        &creds,
        format!(
            "{}[again]\naws_access_key_id = {B_ID}\naws_secret_access_key = SECRET123\n",
            clients(false, true)
        )
        .as_bytes(),
    );
    let o = serve_cmd(&s)
        .args([
            "--listen",
            "127.0.0.1:0",
            "-k",
            "gw.key",
            "--client-credentials",
        ])
        .arg(&creds)
        .output()
        .expect("run serve");
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "it started serving");
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "client credentials file '{}': line 6:",
            creds.display()
        )) && e.contains("appears twice"),
        "{e}"
    );
    assert!(!e.contains("SECRET123") && !e.contains(B_SECRET), "{e}");
}
