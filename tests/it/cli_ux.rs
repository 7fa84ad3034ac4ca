//! The command line as a user meets it (issue 17, terminal side): `--endpoint-url`, help
//! text (snapshots under tests/snapshots/), completions and man page, durations, and
//! terminal behaviour. Every test runs the `sealstream` binary.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

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

// ---- help text ----

/// `sealstream ARGS` with a clean environment (no `SEALSTREAM_*` value shown as `[env: …=x]`,
/// no color forced) and a fixed width, so the help text is the same on every machine.
fn help_of(args: &[&str]) -> String {
    let o = Command::new(bin())
        .env_clear()
        .env("COLUMNS", "100")
        .args(args)
        .output()
        .expect("run sealstream");
    assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).expect("help is UTF-8")
}

/// The subcommands the top-level help lists (clap's own `help` aside).
fn subcommands() -> Vec<String> {
    let top = help_of(&["--help"]);
    let list = top
        .split_once("Commands:\n")
        .expect("a Commands section")
        .1
        .split("\n\n")
        .next()
        .unwrap_or("");
    list.lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

/// Compares `actual` with tests/snapshots/NAME byte for byte; with
/// SEALSTREAM_UPDATE_SNAPSHOTS=1 writes it instead (then review the diff with git).
fn assert_snapshot(name: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("SEALSTREAM_UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        eprintln!("wrote {}", path.display());
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; create it with SEALSTREAM_UPDATE_SNAPSHOTS=1 cargo test --test it cli_ux::",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the help the binary prints, first at line {}:\n  expected: {:?}\n  actual:   {:?}\n\
             If the change is intended: SEALSTREAM_UPDATE_SNAPSHOTS=1 cargo test --test it cli_ux::, \
             then review `git diff tests/snapshots`.\n--- actual ---\n{actual}",
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line),
        );
    }
}

/// Every command's `--help`, byte for byte: a changed flag, hint, heading, example or exit
/// code shows up as a snapshot diff. A new command without a snapshot fails too.
#[test]
fn help_snapshots() {
    let subs = subcommands();
    assert!(subs.len() >= 5, "{subs:?}");
    assert_snapshot("help.txt", &help_of(&["--help"]));
    for sub in &subs {
        assert_snapshot(&format!("help-{sub}.txt"), &help_of(&[sub, "--help"]));
    }
    // No stale snapshot of a command that no longer exists.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    for e in std::fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(sub) = name
            .strip_prefix("help-")
            .and_then(|n| n.strip_suffix(".txt"))
        {
            assert!(subs.iter().any(|s| s == sub), "stale snapshot {name}");
        }
    }
}

/// Every command's help ends with examples that use it and with the exit codes, and shows
/// only the global options it uses.
#[test]
fn help_has_examples_exit_codes_and_only_meaningful_options() {
    for sub in subcommands() {
        let h = help_of(&[&sub, "--help"]);
        let examples = h
            .split_once("Examples:\n")
            .unwrap_or_else(|| panic!("{sub}: no Examples section"))
            .1;
        assert!(
            examples.contains(&format!("sealstream {sub}")),
            "{sub}: no example of it"
        );
        for code in [
            "0  success",
            "2  usage",
            "3  I/O",
            "4  auth",
            "5  key",
            "6  storage",
            "130  cancelled",
            "141  ",
        ] {
            assert!(h.contains(code), "{sub}: exit codes lack {code:?}");
        }
    }
    let keygen = help_of(&["keygen", "--help"]);
    for hidden in [
        "--region",
        "--profile",
        "--endpoint-url",
        "--kms-",
        "--s3-",
        "--concurrency",
        "--part-size",
        "--threads",
        "--backend",
    ] {
        assert!(!keygen.contains(hidden), "keygen shows {hidden}:\n{keygen}");
    }
    let inspect = help_of(&["inspect", "--help"]);
    for hidden in ["--part-size", "--threads", "--backend"] {
        assert!(!inspect.contains(hidden), "inspect shows {hidden}");
    }
    for shown in [
        "--endpoint-url",
        "--kms-timeout",
        "--s3-timeout",
        "--kms-max-decrypts",
    ] {
        assert!(inspect.contains(shown), "inspect lacks {shown}");
    }
    let encrypt = help_of(&["encrypt", "--help"]);
    assert!(
        !encrypt.contains("--kms-max-decrypts"),
        "encrypt never decrypts"
    );
    // Hidden is not refused: a global option before any command still parses.
    let s = Scratch::new();
    let o = run(s.cmd(), &["--region", "eu-west-1", "keygen", "-o", "k.key"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// The flags an error message suggests exist on the command that printed it: each `--flag`
/// (and `-k`/`-c`/`-o`) in `message` is listed in `sub --help`.
fn assert_suggested_flags_exist(sub: &str, message: &str) {
    let help = help_of(&[sub, "--help"]);
    let words = message.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    for w in words {
        let known = if w.starts_with("--") && w.len() > 2 {
            help.contains(&format!("{w} ")) || help.contains(&format!("{w}\n"))
        } else if w.len() == 2 && w.starts_with('-') {
            help.contains(&format!("{w}, --"))
        } else {
            continue;
        };
        assert!(
            known,
            "`{sub}` suggests {w}, which `{sub} --help` does not list:\n{message}"
        );
    }
}

/// Hints are true: what an error tells the user to pass exists on that command. `keygen`
/// and `inspect --export-header` never replace a file and have no --force to suggest.
#[test]
fn error_hints_name_flags_the_command_has() {
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(1));
    let k = k.to_str().unwrap();
    let other = s.keyfile("other.key", &key(2));
    let other = other.to_str().unwrap();
    write(&s.path("p.bin"), b"plain");
    assert_eq!(
        code(&s.run(&["encrypt", "-k", k, "p.bin", "-o", "p.seal"])),
        0
    );
    write(&s.path("taken"), b"x");
    // (command, arguments, exit code, advice the message must hold)
    let cases: Vec<(&str, Vec<&str>, i32, &str)> = vec![
        (
            "keygen",
            vec!["keygen", "-o", "taken"],
            3,
            "choose another path",
        ),
        (
            "inspect",
            vec!["inspect", "p.seal", "--export-header", "taken"],
            3,
            "choose another path",
        ),
        (
            "encrypt",
            vec!["encrypt", "-k", k, "p.bin", "-o", "taken"],
            3,
            "--force",
        ),
        (
            "decrypt",
            vec!["decrypt", "-k", k, "p.seal", "-o", "taken"],
            3,
            "--force",
        ),
        (
            "encrypt",
            vec!["encrypt", "-k", k, "p.bin", "taken", "-o", "x"],
            2,
            "--output-dir",
        ),
        (
            "decrypt",
            vec!["decrypt", "p.seal", "-o", "x"],
            3,
            "-k KEYFILE",
        ),
        (
            "decrypt",
            vec!["decrypt", "-k", other, "p.seal", "-o", "x"],
            4,
            "pass the right key",
        ),
        (
            "inspect",
            vec!["inspect", "p.seal", "--verify", "-k", other],
            4,
            "pass the right key",
        ),
        ("rewrap", vec!["rewrap", "p.seal", "-k", k], 2, "--add-key"),
        (
            "rewrap",
            vec!["rewrap", "p.seal", "-k", k, "--remove-key", "lk1-00"],
            2,
            "inspect",
        ),
        (
            "rewrap",
            vec!["rewrap", "p.seal", "--rotate-to-kms-key", "alias/x"],
            2,
            "--kms-key",
        ),
        (
            "decrypt",
            vec!["decrypt", "-k", k, "--range", "0-1"],
            2,
            "--range",
        ),
        (
            "inspect",
            vec!["inspect", "p.seal", "--verify", "--kms-discovery"],
            2,
            "--kms-allow-account",
        ),
    ];
    for (sub, args, want, advice) in cases {
        let o = s.run(&args);
        assert_eq!(code(&o), want, "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(advice), "{args:?}: {}", stderr(&o));
        assert_suggested_flags_exist(sub, &stderr(&o));
    }
    // The replacement advice of keygen says what to do instead.
    let o = s.run(&["keygen", "-o", "taken"]);
    assert!(stderr(&o).contains("never replaces"), "{}", stderr(&o));
    assert_eq!(std::fs::read(s.path("taken")).unwrap(), b"x");
}

// ---- completions and man page ----

fn stdout_of(args: &[&str]) -> String {
    let o = Command::new(bin())
        .env_clear()
        .args(args)
        .output()
        .expect("run sealstream");
    assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).expect("UTF-8")
}

/// Whether a tool is on PATH (checked tools are optional where the tests run).
fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The completion script of every shell names every command; bash's parses (`bash -n`) and,
/// loaded into bash, completes a command name and a command's option.
#[test]
fn completions_name_every_command_and_bash_runs_them() {
    let subs = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        for sub in &subs {
            assert!(script.contains(sub.as_str()), "{shell}: no {sub}");
        }
        assert!(
            script.contains("endpoint-url"),
            "{shell}: no --endpoint-url"
        );
    }
    assert!(have("bash"), "bash is needed for this test");
    let s = Scratch::new();
    std::fs::write(s.path("c.bash"), stdout_of(&["completions", "bash"])).unwrap();
    let o = Command::new("bash")
        .args(["-n", "c.bash"])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "bash -n: {}", stderr(&o));
    // Drive the completion function as bash's `complete` would.
    let complete = |words: &str| -> String {
        let script = format!(
            "source ./c.bash; COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); \
             COMP_LINE=\"${{COMP_WORDS[*]}}\"; COMP_POINT=${{#COMP_LINE}}; \
             _sealstream sealstream \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        let o = Command::new("bash")
            .args(["-c", &script])
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{words}: {}", stderr(&o));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(complete("sealstream enc").trim(), "encrypt");
    assert_eq!(complete("sealstream completions z").trim(), "zsh");
    let rewrap = complete("sealstream rewrap --rot");
    assert_eq!(rewrap.trim(), "--rotate-to-kms-key", "{rewrap}");
}

/// `sealstream man` lists every command's page; every page renders with groff without a
/// warning and carries its options, examples and exit codes.
#[test]
fn man_pages_name_every_command_and_render() {
    let subs = subcommands();
    let top = stdout_of(&["man"]);
    assert!(
        top.starts_with(".ie") || top.contains(".TH sealstream 1"),
        "{top}"
    );
    for sub in &subs {
        assert!(
            top.contains(&format!("sealstream\\-{sub}(1)")),
            "sealstream(1) does not list sealstream-{sub}(1)"
        );
    }
    assert!(!top.contains("sealstream\\-help(1)"), "help has no page");
    let groff = have("groff");
    let s = Scratch::new();
    let mut pages = vec![("sealstream".to_string(), top)];
    for sub in &subs {
        pages.push((format!("sealstream-{sub}"), stdout_of(&["man", sub])));
    }
    for (name, page) in &pages {
        assert!(page.contains(&format!(".TH {name} 1")), "{name}: title");
        assert!(
            page.contains("Exit codes:") && page.contains("130"),
            "{name}: exit codes"
        );
        assert!(page.contains("Examples:"), "{name}: examples");
        if groff {
            let f = s.path(&format!("{name}.1"));
            std::fs::write(&f, page).unwrap();
            let o = Command::new("groff")
                .args(["-k", "-man", "-ww", "-z"])
                .arg(&f)
                .output()
                .unwrap();
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "groff on {name}(1): {}",
                stderr(&o)
            );
        }
    }
    let encrypt = &pages
        .iter()
        .find(|(n, _)| n == "sealstream-encrypt")
        .unwrap()
        .1;
    assert!(encrypt.contains("\\-\\-chunk\\-size"), "{encrypt}");
    let o = Command::new(bin()).args(["man", "nope"]).output().unwrap();
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert!(stderr(&o).contains("keygen, encrypt"), "{}", stderr(&o));
}

// ---- durations ----

/// The wrapped data key of each `.seal` file in `dir`, sorted by file name.
fn wrapped_keys(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| {
            let mut f = std::fs::File::open(p).unwrap();
            let (h, _) = sealstream::format::Header::read_from(&mut f).unwrap();
            h.stanzas[0].wrapped.clone()
        })
        .collect()
}

/// `--cache-max-age` takes humantime's forms (`1h30m`, `1h 30m`, `90min`) and plain
/// seconds, and with any of them the files of a batch share one data key.
#[test]
fn cache_max_age_takes_compound_durations() {
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(5));
    let k = k.to_str().unwrap();
    std::fs::create_dir(s.path("src")).unwrap();
    write(&s.path("src/a"), b"first");
    write(&s.path("src/b"), b"second");
    for (i, age) in ["1h30m", "1h 30m", "90min", "5400"].iter().enumerate() {
        let out = format!("enc{i}");
        let o = s.run(&[
            "encrypt",
            "-k",
            k,
            "src",
            "--output-dir",
            &out,
            "--jobs",
            "1",
            "--cache-max-age",
            age,
        ]);
        assert_eq!(code(&o), 0, "{age}: {}", stderr(&o));
        let w = wrapped_keys(&s.path(&out).join("src"));
        assert_eq!(w.len(), 2);
        assert_eq!(w[0], w[1], "{age}: the two files do not share a data key");
    }
    // Without the cache each file has its own data key (the comparison above can fail).
    let o = s.run(&[
        "encrypt",
        "-k",
        k,
        "src",
        "--output-dir",
        "plain",
        "--jobs",
        "1",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let w = wrapped_keys(&s.path("plain/src"));
    assert_ne!(w[0], w[1]);
}

/// A duration that does not parse is a usage error (exit 2) naming the flag (or the
/// variable's flag) and showing the accepted forms; nothing is written.
#[test]
fn bad_durations_are_usage_errors() {
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(6));
    let k = k.to_str().unwrap();
    write(&s.path("p.bin"), b"x");
    /// (extra arguments, an environment variable set, the flag the error must name)
    type Case<'a> = (Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec!["--cache-max-age", "1x"], None, "--cache-max-age"),
        (
            vec!["--cache-max-age", "5 parsecs"],
            None,
            "--cache-max-age",
        ),
        (vec!["--cache-max-age=-5m"], None, "--cache-max-age"),
        (
            vec!["--cache-max-age", "99999999999999999999999"],
            None,
            "--cache-max-age",
        ),
        (vec!["--s3-timeout", "1h30"], None, "--s3-timeout"),
        (vec!["--kms-timeout", "soon"], None, "--kms-timeout"),
        (
            vec![],
            Some(("SEALSTREAM_S3_READ_TIMEOUT", "30 s x")),
            "--s3-read-timeout",
        ),
        (
            vec![],
            Some(("SEALSTREAM_KMS_TIMEOUT", "abc")),
            "--kms-timeout",
        ),
    ];
    for (extra, env, flag) in cases {
        let mut c = s.cmd();
        if let Some((name, value)) = env {
            c.env(name, value);
        }
        let mut args = vec!["encrypt", "-k", k, "p.bin", "-o", "p.seal"];
        args.extend(extra.iter().copied());
        let o = run(c, &args);
        assert_eq!(code(&o), 2, "{args:?} {env:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(flag) && err.contains("1h30m"), "{err}");
        assert!(!s.path("p.seal").exists());
    }
    // The timeouts take the same forms; a plain number is still seconds.
    for (flag, value) in [
        ("--kms-timeout", "1m30s"),
        ("--s3-timeout", "2m"),
        ("--s3-read-timeout", "45"),
    ] {
        let o = run(
            s.cmd(),
            &[
                flag, value, "encrypt", "-k", k, "p.bin", "-o", "ok.seal", "--force",
            ],
        );
        assert_eq!(code(&o), 0, "{flag} {value}: {}", stderr(&o));
    }
}

// ---- terminal behaviour (a real pseudo-terminal through util-linux `script`) ----

/// Runs `sealstream ARGS` on a fresh pseudo-terminal (stdin, stdout and stderr all on it,
/// 100×30) through util-linux `script`, which logs everything the terminal shows to `log`.
/// What is written to the returned child's stdin is typed on the terminal; closing it
/// types Ctrl-D.
fn on_terminal(s: &Scratch, args: &[&str], log: &std::path::Path) -> std::process::Child {
    let v = Command::new("script").arg("--version").output();
    assert!(
        v.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("util-linux")),
        "this test needs util-linux `script` for a pseudo-terminal"
    );
    let mut line = format!("stty cols 100 rows 30; exec '{}'", bin());
    for a in args {
        assert!(!a.contains('\''), "{a}");
        line.push_str(&format!(" '{a}'"));
    }
    Command::new("script")
        .args(["-q", "-f", "-e", "-c", &line])
        .arg(log)
        .env("SEALSTREAM_HOME", s.path("home"))
        .env("TERM", "xterm")
        .current_dir(s.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run script")
}

/// Waits for `child` (at most 60 s, then kills it and fails).
fn finish(mut child: std::process::Child) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the command on the terminal did not finish");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Plaintext decrypted to the terminal is shown alone: no progress bar is drawn into it
/// (stderr is the same terminal, so a bar would be interleaved with the plaintext).
#[test]
#[ignore = "needs a pseudo-terminal through util-linux script (scripts/test.sh runs it)"]
fn plaintext_on_a_terminal_has_no_progress_bar_in_it() {
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(7));
    let k = k.to_str().unwrap();
    // 8 MiB of printable text without newlines: long enough for a bar to be drawn.
    let pt = b"0123456789abcdef".repeat(1 << 19);
    write(&s.path("p.bin"), &pt);
    let o = s.run(&["encrypt", "-k", k, "p.bin", "-o", "p.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let log = s.path("terminal.log");
    let child = on_terminal(&s, &["decrypt", "-k", k, "p.seal"], &log);
    assert_eq!(finish(child), 0);
    let shown = std::fs::read(&log).unwrap();
    let text = String::from_utf8_lossy(&shown);
    assert!(
        !text.contains("decrypting"),
        "a progress bar was drawn on the terminal"
    );
    assert!(!shown.contains(&0x1b), "escape sequences on the terminal");
    // The plaintext arrived whole and contiguous.
    let at = shown
        .windows(16)
        .position(|w| w == b"0123456789abcdef")
        .expect("no plaintext on the terminal");
    assert_eq!(&shown[at..at + pt.len()], &pt[..]);
}

/// With no input given and stdin a terminal, encrypt says what it is waiting for instead
/// of drawing a spinner, then encrypts what is typed up to Ctrl-D.
#[test]
#[ignore = "needs a pseudo-terminal through util-linux script (scripts/test.sh runs it)"]
fn no_input_on_a_terminal_prints_a_hint_not_a_spinner() {
    use std::io::Write as _;
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(8));
    let k = k.to_str().unwrap();
    let log = s.path("terminal.log");
    let mut child = on_terminal(&s, &["encrypt", "-k", k, "-o", "typed.seal"], &log);
    let start = std::time::Instant::now();
    while !std::fs::read(&log).is_ok_and(|b| String::from_utf8_lossy(&b).contains("Ctrl-D")) {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            panic!(
                "no hint on the terminal: {:?}",
                String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default())
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed secret\n").unwrap();
    drop(stdin); // Ctrl-D
    assert_eq!(finish(child), 0);
    let shown = String::from_utf8_lossy(&std::fs::read(&log).unwrap()).into_owned();
    assert!(
        shown.contains("reading the input from the terminal"),
        "{shown}"
    );
    assert!(
        !shown.contains("encrypting"),
        "a spinner was drawn: {shown}"
    );
    let o = s.run(&["decrypt", "-k", k, "typed.seal"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout, b"typed secret\n");
}

/// Ctrl-C during an encryption with a progress bar: the bar stops at once and says that it
/// is aborting, the command exits 130, and no output (nor temporary) is left behind.
#[test]
#[ignore = "needs a pseudo-terminal through util-linux script (scripts/test.sh runs it)"]
fn ctrl_c_stops_the_bar_saying_it_aborts() {
    use std::io::Write as _;
    let s = Scratch::new();
    let k = s.keyfile("k.key", &key(9));
    let k = k.to_str().unwrap();
    // The input is a FIFO fed slowly, so the command is still running when Ctrl-C comes.
    let fifo = s.path("in.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let feeder = {
        let (fifo, stop) = (fifo.clone(), stop.clone());
        std::thread::spawn(move || {
            let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&fifo) else {
                return;
            };
            let block = vec![0x5au8; 64 * 1024];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if f.write_all(&block).is_err() {
                    return; // the reader is gone
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    let log = s.path("terminal.log");
    let mut child = on_terminal(&s, &["encrypt", "-k", k, "in.fifo", "-o", "out.seal"], &log);
    let shown = || String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).into_owned();
    let start = std::time::Instant::now();
    while !shown().contains("encrypting") {
        if start.elapsed() > std::time::Duration::from_secs(30) {
            let _ = child.kill();
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            panic!("no progress bar on the terminal: {:?}", shown());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Ctrl-C typed on the terminal: its line discipline sends SIGINT to the command.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let code = finish(child);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = feeder.join();
    let text = shown();
    assert_eq!(code, 130, "{text}");
    assert!(text.contains("interrupted: aborting"), "{text}");
    // A FIFO has no length: a spinner, not a bar "… of 0 B".
    assert!(!text.contains("/0 B"), "a bar with a 0-byte total: {text}");
    let left: Vec<_> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("out.seal"))
        .collect();
    assert!(left.is_empty(), "output left behind: {left:?}");
}
