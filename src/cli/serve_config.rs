//! `sealstream serve --config FILE`: the gateway's options from a TOML file, for
//! deployments that keep configuration in a file (a mounted config map) rather than on the
//! command line. Precedence, per option: a flag, then its `SEALSTREAM_…` environment
//! variable (both resolved by clap), then the file, then the built-in default.
//!
//! The global options that configure the upstream (`--region`, `--endpoint-url`,
//! `--profile`, `--ca-bundle`, `--s3-*`, `--kms-*`, `--concurrency`, `--part-size`) are read from the file
//! too, under the same precedence, so one file describes a whole deployment; for
//! `region`, `profile` and `endpoint-url`, whose environment is the AWS SDK's own
//! (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`…), that variable wins over the file as a
//! `SEALSTREAM_…` variable does. Their values are checked by the flag's own parser (clap),
//! so a limit is never written twice.
//!
//! The file's keys are the long flag names (`max-requests = 64`). Unknown keys, wrong
//! types and duplicates are refused naming the key and its line, never the value: a value
//! put in the wrong place may be a secret, and errors end up in logs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use clap::ArgMatches;
use clap::parser::ValueSource;
use sealstream::error::{Error, Result};
use toml::de::{DeTable, DeValue};

use super::Cli;
use super::s3::Upstream;
use super::serve::ServeArgs;

/// What a key of the file holds, and where it goes in [`ServeArgs`].
#[derive(Clone, Copy)]
enum Kind {
    Str,
    /// A string or an array of strings (repeatable flags).
    List,
    Bool,
    Uint,
    /// A table of string values (`[context]`).
    Pairs,
    /// A global (upstream) flag's value: a string or an integer, checked by that flag's
    /// own parser; the text is an example of a valid value for the error message.
    Global(&'static str),
}

/// File key (the long flag name), clap argument id, kind.
const KEYS: &[(&str, &str, Kind)] = &[
    ("listen", "listen", Kind::Str),
    ("kms-key", "kms_keys", Kind::List),
    ("key", "keys", Kind::List),
    ("context", "context", Kind::Pairs),
    ("client-credentials", "client_credentials", Kind::Str),
    (
        "serve-plaintext-objects",
        "serve_plaintext_objects",
        Kind::Bool,
    ),
    ("virtual-host-domain", "virtual_host_domains", Kind::List),
    ("max-requests", "max_requests", Kind::Uint),
    ("max-header-bytes", "max_header_bytes", Kind::Uint),
    ("list-concurrency", "list_concurrency", Kind::Uint),
    ("shutdown-grace", "shutdown_grace", Kind::Uint),
    ("header-cache-seconds", "header_cache_seconds", Kind::Uint),
    (
        "upstream-signed-payload",
        "upstream_signed_payload",
        Kind::Bool,
    ),
    ("tls-cert", "tls_cert", Kind::Str),
    ("tls-key", "tls_key", Kind::Str),
    ("reload-interval", "reload_interval", Kind::Uint),
    // The old name of reload-interval (when it reloaded the certificate only).
    ("tls-reload-interval", "reload_interval", Kind::Uint),
    ("log", "log", Kind::Str),
    ("log-format", "log_format", Kind::Str),
    // The global flags that configure the upstream (ids as in `Cli`).
    ("region", "region", Kind::Global("\"eu-west-1\"")),
    ("profile", "profile", Kind::Global("\"backup\"")),
    (
        "endpoint-url",
        "endpoint_url",
        Kind::Global("\"http://minio:9000\""),
    ),
    (
        "ca-bundle",
        "ca_bundle",
        Kind::Global("\"/etc/ssl/private-ca.pem\""),
    ),
    ("kms-max-attempts", "kms_max_attempts", Kind::Global("8")),
    ("kms-timeout", "kms_timeout", Kind::Global("\"60s\"")),
    ("kms-max-decrypts", "kms_max_decrypts", Kind::Global("4")),
    ("concurrency", "concurrency", Kind::Global("4")),
    ("part-size", "part_size", Kind::Global("\"8MiB\"")),
    ("s3-max-attempts", "s3_max_attempts", Kind::Global("8")),
    ("s3-timeout", "s3_timeout", Kind::Global("\"2m\"")),
    (
        "s3-connect-timeout",
        "s3_connect_timeout",
        Kind::Global("\"10s\""),
    ),
    (
        "s3-read-timeout",
        "s3_read_timeout",
        Kind::Global("\"30s\""),
    ),
];

/// The AWS SDK's own environment variables for the global options that have no
/// `SEALSTREAM_…` one: when one is set, it wins over the file (the SDK reads it itself).
const AWS_ENV: &[(&str, &[&str])] = &[
    ("region", &["AWS_REGION", "AWS_DEFAULT_REGION"]),
    ("profile", &["AWS_PROFILE"]),
    ("endpoint_url", &["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"]),
];

/// The ids of the options set by a flag or an environment variable (not by a default):
/// those the file must not override. `m` is serve's matches, which hold the global flags
/// too, given before or after `serve` (clap propagates them; tested).
pub(super) fn given_ids(m: &ArgMatches) -> BTreeSet<String> {
    let aws_env = |id: &str| {
        AWS_ENV.iter().any(|(i, vars)| {
            *i == id
                && vars
                    .iter()
                    .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
        })
    };
    KEYS.iter()
        .filter(|(_, id, _)| {
            matches!(
                m.value_source(id),
                Some(ValueSource::CommandLine | ValueSource::EnvVariable)
            ) || aws_env(id)
        })
        .map(|(_, id, _)| (*id).to_string())
        .collect()
}

/// One value read from the file, typed.
enum Value {
    Str(String),
    List(Vec<String>),
    Bool(bool),
    Uint(u64),
    /// A global flag's value as the flag would be given.
    Global(String),
}

/// `a` and the command line's upstream options with the file's values filled in where no
/// flag or environment variable set the option (no file: both unchanged).
pub(super) fn apply(cli: &Cli, a: &ServeArgs) -> Result<(ServeArgs, Upstream)> {
    let mut out = a.clone();
    let mut up = Upstream::of(cli);
    old_environment(&mut out)?;
    let Some(path) = &a.config else {
        return Ok((out, up));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("reading the config file '{}'", path.display()), e))?;
    for (id, value) in parse(path, &text)? {
        if out.given.contains(id) {
            continue;
        }
        match value {
            Value::Global(v) => set_global(&mut up, id, &v)?,
            value => set(&mut out, id, value),
        }
    }
    Ok((out, up))
}

/// The environment variables of options renamed since, read as clap reads the new one:
/// below the flag and the new variable, above the config file.
const OLD_ENV: &[(&str, &str)] = &[("SEALSTREAM_TLS_RELOAD_INTERVAL", "reload_interval")];

/// Fills in the options whose old environment variable ([`OLD_ENV`]) is set, unless a
/// flag or the new variable set them; a bad value is refused naming the variable.
fn old_environment(a: &mut ServeArgs) -> Result<()> {
    for (var, id) in OLD_ENV {
        if a.given.contains(*id) {
            continue;
        }
        let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
            continue;
        };
        let n = v
            .to_str()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{var} must be a non-negative integer (seconds)"))
            })?;
        set(a, id, Value::Uint(n));
        a.given.insert((*id).to_string());
    }
    Ok(())
}

/// Sets the global option `id` from the file's text `v`, parsed by the flag's own parser
/// (clap, as if `--FLAG v` were given): one place for every bound. `parse` checked it.
fn set_global(up: &mut Upstream, id: &str, v: &str) -> Result<()> {
    let cli = parse_global(id, v).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "config file: '{id}' does not parse (checked before)"
        ))
    })?;
    match id {
        "region" => up.region = cli.region,
        "profile" => up.profile = cli.profile,
        "endpoint_url" => up.endpoint_url = cli.endpoint_url,
        "ca_bundle" => up.ca_bundle = cli.ca_bundle,
        "kms_max_attempts" => up.kms_max_attempts = cli.kms_max_attempts,
        "kms_timeout" => up.kms_timeout = cli.kms_timeout,
        "kms_max_decrypts" => up.kms_max_decrypts = cli.kms_max_decrypts,
        "concurrency" => up.concurrency = cli.concurrency,
        "part_size" => up.part_size = cli.part_size,
        "s3_max_attempts" => up.s3_max_attempts = cli.s3_max_attempts,
        "s3_timeout" => up.s3_timeout = cli.s3_timeout,
        "s3_connect_timeout" => up.s3_connect_timeout = cli.s3_connect_timeout,
        "s3_read_timeout" => up.s3_read_timeout = cli.s3_read_timeout,
        _ => {}
    }
    Ok(())
}

/// The command line `sealstream --FLAG v serve`, parsed: `None` if the flag's parser
/// refuses `v`. The flag is named from its id (`s3_timeout` → `--s3-timeout`).
fn parse_global(id: &str, v: &str) -> Option<Cli> {
    use clap::FromArgMatches as _;
    let flag = format!("--{}", id.replace('_', "-"));
    let m = super::help::command()
        .try_get_matches_from(["sealstream", flag.as_str(), v, "serve"])
        .ok()?;
    Cli::from_arg_matches(&m).ok()
}

fn set(a: &mut ServeArgs, id: &str, v: Value) {
    match (id, v) {
        ("listen", Value::Str(s)) => a.listen = s,
        ("kms_keys", Value::List(l)) => a.kms_keys = l,
        ("keys", Value::List(l)) => a.keys = l.into_iter().map(PathBuf::from).collect(),
        ("context", Value::List(l)) => a.context = l,
        ("client_credentials", Value::Str(s)) => a.client_credentials = Some(s.into()),
        ("serve_plaintext_objects", Value::Bool(b)) => a.serve_plaintext_objects = b,
        ("virtual_host_domains", Value::List(l)) => a.virtual_host_domains = l,
        ("max_requests", Value::Uint(n)) => a.max_requests = usize_of(n),
        ("max_header_bytes", Value::Uint(n)) => a.max_header_bytes = usize_of(n),
        ("list_concurrency", Value::Uint(n)) => a.list_concurrency = usize_of(n),
        ("shutdown_grace", Value::Uint(n)) => a.shutdown_grace = n,
        ("header_cache_seconds", Value::Uint(n)) => a.header_cache_seconds = n,
        ("reload_interval", Value::Uint(n)) => a.reload_interval = n,
        ("upstream_signed_payload", Value::Bool(b)) => a.upstream_signed_payload = b,
        ("tls_cert", Value::Str(s)) => a.tls_cert = Some(s.into()),
        ("tls_key", Value::Str(s)) => a.tls_key = Some(s.into()),
        ("log", Value::Str(s)) => a.log = s,
        ("log_format", Value::Str(s)) => a.log_format = s,
        // `parse` produces each id only with its kind's value.
        _ => {}
    }
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The file's settings as (argument id, value), every key checked.
fn parse(path: &Path, text: &str) -> Result<Vec<(&'static str, Value)>> {
    let line = |at: usize| text.get(..at).map_or(0, |s| s.matches('\n').count()) + 1;
    let bad = |at: usize, what: String| {
        Error::InvalidArgument(format!(
            "config file '{}', line {}: {what}",
            path.display(),
            line(at)
        ))
    };
    let doc = DeTable::parse(text).map_err(|e| {
        // The parser's message only: its full display quotes the line, which could hold
        // a secret pasted in the wrong place.
        bad(
            e.span().map_or(0, |s| s.start),
            format!("not valid TOML: {}", e.message()),
        )
    })?;
    let mut out = Vec::new();
    for (k, v) in doc.get_ref() {
        let key: &str = k.get_ref();
        let at = k.span().start;
        let Some(&(name, id, kind)) = KEYS.iter().find(|(name, _, _)| *name == key) else {
            let known: Vec<&str> = KEYS.iter().map(|(n, _, _)| *n).collect();
            return Err(bad(
                at,
                format!("unknown key '{key}' (known keys: {})", known.join(", ")),
            ));
        };
        if let Some((other, _, _)) = KEYS
            .iter()
            .find(|(n, i, _)| *i == id && *n != name && doc.get_ref().contains_key(*n))
        {
            return Err(bad(
                at,
                format!(
                    "'{name}' and '{other}' are one option (the old and the new name): keep one"
                ),
            ));
        }
        let wrong = |what: &str| bad(at, format!("'{name}' must be {what}"));
        let value = match (kind, v.get_ref()) {
            (Kind::Str, DeValue::String(s)) => Value::Str(s.to_string()),
            (Kind::Str, _) => return Err(wrong("a string")),
            (Kind::List, DeValue::String(s)) => Value::List(vec![s.to_string()]),
            (Kind::List, DeValue::Array(items)) => {
                let mut l = Vec::with_capacity(items.len());
                for i in items.iter() {
                    match i.get_ref() {
                        DeValue::String(s) => l.push(s.to_string()),
                        _ => return Err(wrong("a string or an array of strings")),
                    }
                }
                Value::List(l)
            }
            (Kind::List, _) => return Err(wrong("a string or an array of strings")),
            (Kind::Bool, DeValue::Boolean(b)) => Value::Bool(*b),
            (Kind::Bool, _) => return Err(wrong("true or false")),
            (Kind::Uint, DeValue::Integer(i)) => match u64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) => Value::Uint(n),
                Err(_) => return Err(wrong("a non-negative integer")),
            },
            (Kind::Uint, _) => return Err(wrong("a non-negative integer")),
            (Kind::Pairs, DeValue::Table(t)) => {
                let mut l = Vec::with_capacity(t.len());
                for (ck, cv) in t {
                    let ck: &str = ck.get_ref();
                    let DeValue::String(s) = cv.get_ref() else {
                        return Err(wrong("a table of strings (context key = \"value\")"));
                    };
                    if ck.contains('=') {
                        return Err(bad(
                            at,
                            format!("context key '{ck}' contains '=', which a context key cannot"),
                        ));
                    }
                    l.push(format!("{ck}={s}"));
                }
                Value::List(l)
            }
            (Kind::Pairs, _) => {
                return Err(wrong("a table of strings ([context] with key = \"value\")"));
            }
            (Kind::Global(example), DeValue::String(_) | DeValue::Integer(_)) => {
                let text = match v.get_ref() {
                    DeValue::Integer(i) => match u64::from_str_radix(i.as_str(), i.radix()) {
                        Ok(n) => n.to_string(),
                        Err(_) => return Err(wrong(&format!("a valid --{name}, e.g. {example}"))),
                    },
                    DeValue::String(s) => s.to_string(),
                    _ => String::new(),
                };
                if parse_global(id, &text).is_none() {
                    return Err(wrong(&format!("a valid --{name}, e.g. {example}")));
                }
                Value::Global(text)
            }
            (Kind::Global(example), _) => {
                return Err(wrong(&format!("a string or an integer, e.g. {example}")));
            }
        };
        out.push((id, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        match parse(Path::new("gw.toml"), text) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_kind_parses() {
        let v = parse(
            Path::new("gw.toml"),
            "listen = \"0.0.0.0:9000\"\nkms-key = [\"alias/a\", \"alias/b\"]\nkey = \"k.key\"\n\
             serve-plaintext-objects = true\nmax-requests = 0x40\n[context]\ntenant = \"acme\"\n",
        )
        .unwrap();
        let ids: Vec<&str> = v.iter().map(|(id, _)| *id).collect();
        assert_eq!(
            ids,
            [
                "context",
                "keys",
                "kms_keys",
                "listen",
                "max_requests",
                "serve_plaintext_objects"
            ]
        );
        assert!(matches!(&v[0].1, Value::List(l) if l == &["tenant=acme"]));
        assert!(matches!(&v[1].1, Value::List(l) if l == &["k.key"]));
        assert!(matches!(&v[4].1, Value::Uint(64)));
    }

    /// The example file of docs/GATEWAY.md parses, every upstream key included.
    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../docs/gateway.example.toml");
        let v = parse(Path::new("gateway.example.toml"), text).unwrap();
        for id in [
            "region",
            "endpoint_url",
            "s3_timeout",
            "part_size",
            "kms_max_decrypts",
        ] {
            assert!(v.iter().any(|(i, _)| *i == id), "{id} missing");
        }
    }

    #[test]
    fn upstream_values_are_checked_by_the_flags_parser() {
        let e = errors("part-size = \"1KiB\"\n");
        assert!(
            e.contains("line 1: 'part-size' must be a valid --part-size"),
            "{e}"
        );
        assert!(!e.contains("1KiB"), "{e}");
        let e = errors("\ns3-timeout = \"SECRET123\"\n");
        assert!(
            e.contains("line 2: 's3-timeout' must be a valid --s3-timeout"),
            "{e}"
        );
        assert!(!e.contains("SECRET123"), "{e}");
        let e = errors("endpoint-url = \"SECRET123\"\n");
        assert!(
            e.contains("'endpoint-url' must be a valid --endpoint-url"),
            "{e}"
        );
        let e = errors("concurrency = true\n");
        assert!(
            e.contains("'concurrency' must be a string or an integer"),
            "{e}"
        );
        let v = parse(Path::new("gw.toml"), "s3-timeout = 90\nconcurrency = 3\n").unwrap();
        assert!(matches!(&v[1].1, Value::Global(t) if t == "90"));
    }

    #[test]
    fn bad_files_name_the_key_and_line_never_the_value() {
        let e = errors("listen = \"x\"\naws_secret_access_key = \"SECRET123\"\n");
        assert!(
            e.contains("line 2: unknown key 'aws_secret_access_key'"),
            "{e}"
        );
        assert!(!e.contains("SECRET123"), "{e}");
        let e = errors("max-requests = \"SECRET123\"\n");
        assert!(
            e.contains("'max-requests' must be a non-negative integer"),
            "{e}"
        );
        assert!(!e.contains("SECRET123"), "{e}");
        let e = errors("max-requests = -1\n");
        assert!(e.contains("non-negative"), "{e}");
        let e = errors("kms-key = [\"a\", 3]\n");
        assert!(e.contains("'kms-key' must be a string or an array"), "{e}");
        let e = errors("\n\nlisten = \"SECRET123\nlog = 1\n");
        assert!(e.contains("line 3: not valid TOML"), "{e}");
        assert!(!e.contains("SECRET123"), "{e}");
        let e = errors("listen = \"a\"\nlisten = \"b\"\n");
        assert!(e.contains("not valid TOML"), "{e}");
        let e = errors("[context]\nk = 1\n");
        assert!(e.contains("'context' must be a table of strings"), "{e}");
    }
}
