//! The help text around the clap definitions: option headings, which global options each
//! command shows, an EXAMPLES section per command and the exit codes on every command.
//!
//! [`command`] is the one `clap::Command` the binary parses with, and the one its help,
//! completions and man page are generated from, so what the user reads is what is parsed.
//! tests/it/cli_ux.rs snapshots every command's `--help` (tests/snapshots/) and the unit tests
//! below parse every example with the real definitions.

use std::io::{self, Write};

use clap::{Arg, CommandFactory};
use sealstream::error::{Error, Result};

use super::Cli;

/// Heading of the options that choose keys and the encryption context.
pub const KEYS: &str = "Key options";
/// Heading of the options about where and how output is written.
pub const OUTPUT: &str = "Output options";
/// Heading of the options about what is read.
pub const INPUT: &str = "Input options";
/// Heading of the options that fix the encrypted format (suite, chunk size).
pub const FORMAT: &str = "Format options";
/// Heading of the data-key cache options of a batch.
pub const CACHE: &str = "Data-key cache options";
/// Heading of `rewrap`'s changes to the set of keys.
pub const CHANGES: &str = "Key changes";
/// Heading of the local crypto engine's options.
pub const ENGINE: &str = "Engine options";
/// Heading of the options every AWS service call uses.
pub const AWS: &str = "AWS options";
/// Heading of the KMS call options.
pub const KMS: &str = "KMS options";
/// Heading of the S3 transfer options.
pub const S3: &str = "S3 options";
/// Heading of the attributes an upload sets on the objects it stores.
pub const OBJECT: &str = "Object attributes (S3 outputs)";

/// The exit codes, as `cli::exit` defines them (`exit::tests` and tests/it/cli.rs hold them to
/// it). Shown at the end of every command's help.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  2  usage error (bad option, unsatisfiable range)
  3  I/O error (missing input, unwritable output, an output file or S3 object that exists
     and is not to be replaced, bad key file)
  4  authentication failure (tampered or truncated data, wrong key, wrong or missing context,
     key-commitment mismatch, malformed header, missing or tampered S3 object metadata)
  5  key-service error (KMS)
  6  storage error (S3; names the object, the operation and the service's error code)
130  cancelled (Ctrl-C or SIGTERM); partial output removed, multipart uploads aborted
141  the reader closed the output early (`| head`); nothing printed, as for `cat`";

const EXAMPLES_MAIN: &str = "\
Global options may come before or after the command; each command's help shows those it uses.

Examples:
  # Encrypt and decrypt a file with the default local key (created on first use)
  sealstream encrypt big.bin -o big.bin.seal
  sealstream decrypt big.bin.seal -o big.bin
  # Upload a backup from a pipe, encrypted for a KMS key, and restore it
  tar -c data | sealstream encrypt -o s3://bucket/backup/data.tar.seal --kms-key alias/backup
  sealstream decrypt s3://bucket/backup/data.tar.seal --kms-key alias/backup | tar -x
  # See who can open a file, then give a second key access
  sealstream inspect big.bin.seal
  sealstream rewrap big.bin.seal --add-key second.key";

const EXAMPLES_KEYGEN: &str = "\
Examples:
  # A new key file, mode 0600 (an existing file is never replaced)
  sealstream keygen -o backup.key
  # Encrypt for it; keep a copy of the key offline: without it the files cannot be opened
  sealstream encrypt big.bin -o big.bin.seal -k backup.key";

const EXAMPLES_ENCRYPT: &str = "\
Examples:
  # A file, with the default local key (created on first use)
  sealstream encrypt big.bin -o big.bin.seal
  # For a KMS key and an offline key file, with a context pair bound to the data
  sealstream encrypt big.bin -o big.bin.seal --kms-key alias/backup -k offline.key -c project=atlas
  # A backup from a pipe straight to S3 (multipart upload while encrypting)
  pg_dump db | sealstream encrypt -o s3://bucket/db/dump.seal --kms-key alias/backup
  # A tree to a prefix as aws s3 cp --recursive lays it out; existing objects are skipped
  sealstream encrypt photos -o s3://bucket/photos/ --recursive --exclude '*.tmp' --dryrun
  # ... to cold storage, in a bucket whose policy demands SSE-KMS
  sealstream encrypt db.dump -o s3://bucket/db.seal --storage-class DEEP_ARCHIVE --sse aws:kms
  # A directory tree, one .seal file per file, a data key reused for up to 5 minutes
  sealstream encrypt photos --output-dir enc --cache-max-age 5m";

const EXAMPLES_DECRYPT: &str = "\
Examples:
  # A file, with the default local key or the given ones
  sealstream decrypt big.bin.seal -o big.bin -k offline.key
  # From S3 into a pipe; only the KMS keys you name are called
  sealstream decrypt s3://bucket/db/dump.seal --kms-key alias/backup | psql db
  # One MiB at 3 GiB (only the chunks covering it are read or downloaded)
  sealstream decrypt s3://bucket/big.bin.seal --range 3GiB-3GiB+1MiB -o part.bin
  # Fail unless the file carries this context pair
  sealstream decrypt big.bin.seal -o big.bin -c project=atlas
  # An S3 body downloaded by another tool, with its header saved by inspect
  sealstream decrypt body.bin --header-from body.header -o big.bin
  # Restore a tree saved with encrypt --recursive (s3://bucket/photos/a/b -> photos/a/b)
  sealstream decrypt s3://bucket/photos/ -o photos --recursive --exclude '*.tmp'
  # An object written by the Amazon S3 Encryption Client (to stdout: downloaded twice,
  # verified first; see docs/MIGRATION.md)
  sealstream decrypt s3://bucket/archive/report.pdf -o report.pdf --kms-key alias/archive";

const EXAMPLES_INSPECT: &str = "\
Examples:
  sealstream inspect big.bin.seal
  sealstream inspect s3://bucket/db/dump.seal --json
  # Check every stanza against the keys given (exit 4 or 5 if one with a matching key fails)
  sealstream inspect big.bin.seal --verify -k offline.key --kms-key alias/backup
  # Save an S3 object's header, to decrypt its body fetched by another tool
  sealstream inspect s3://bucket/big.bin.seal --export-header body.header";

const EXAMPLES_REWRAP: &str = "\
Examples:
  # Add a key (the file stays decryptable with the old one)
  sealstream rewrap big.bin.seal -k old.key --add-key new.key
  # Replace a key: add the new one, remove the old one's stanza (key id from inspect)
  sealstream rewrap big.bin.seal -k old.key --add-key new.key --remove-key lk1-0123456789abcdef
  # Move an S3 object's KMS stanzas to another KMS key (metadata only, body not read)
  sealstream rewrap s3://bucket/db/dump.seal --kms-key alias/old --rotate-to-kms-key alias/new";

const EXAMPLES_MIGRATE: &str = "\
Objects written by the Amazon S3 Encryption Client (V2 or V3 metadata, AES-GCM, KMS-wrapped
data key) become sealstream objects in place: one streaming read, the new object stored only
after the old one's GCM tag verified and only if it was not changed meanwhile (If-Match).
Content-Type, user metadata and tags are kept. One JSON line per object on stdout.
AES/CBC and V1 objects are refused. See docs/MIGRATION.md.

Examples:
  # What would happen, without writing
  sealstream migrate s3://bucket/archive/ --recursive --dryrun --kms-key alias/archive
  # One object, wrapped again for the KMS key that wrapped it, same context
  sealstream migrate s3://bucket/archive/report.pdf --kms-key alias/archive
  # A whole prefix, wrapped for a new KMS key and an offline key file
  sealstream migrate s3://bucket/archive/ --recursive --kms-key alias/old --wrap-kms-key alias/new --wrap-key offline.key";

const EXAMPLES_SERVE: &str = "\
Examples:
  # In front of a bucket, new objects under a KMS key; clients sign with the keys in clients.ini
  sealstream serve --listen 0.0.0.0:9000 --kms-key alias/backup --client-credentials clients.ini
  # A client: any S3 tool, pointed at the gateway
  aws --endpoint-url http://gateway:9000 s3 cp backup.tar s3://bucket/backup.tar
  # HTTPS, a context pair stamped on every object and required on every read
  sealstream serve --tls-cert gw.pem --tls-key gw.key -c tenant=acme --kms-key alias/acme --client-credentials clients.ini
  # After renewing gw.pem and gw.key: serve them without a restart (open connections go on)
  kill -HUP $(pidof sealstream)";

const EXAMPLES_COMPLETIONS: &str = "\
Examples:
  # Install for bash, zsh or fish (new shells pick them up)
  sealstream completions bash > ~/.local/share/bash-completion/completions/sealstream
  sealstream completions zsh > ~/.zfunc/_sealstream
  sealstream completions fish > ~/.config/fish/completions/sealstream.fish";

const EXAMPLES_MAN: &str = "\
Examples:
  # Install the pages where man finds them
  sealstream man > ~/.local/share/man/man1/sealstream.1
  sealstream man encrypt > ~/.local/share/man/man1/sealstream-encrypt.1";

/// Groups of global options, by what they configure (the engine's --threads and
/// --backend and S3's --part-size matter to encrypt and decrypt only).
const AWS_IDS: &[&str] = &["region", "profile", "endpoint_url"];
const KMS_CALL_IDS: &[&str] = &["kms_max_attempts", "kms_timeout"];
const S3_REQUEST_IDS: &[&str] = &[
    "s3_max_attempts",
    "s3_timeout",
    "s3_connect_timeout",
    "s3_read_timeout",
];

/// Whether the global option `id` means something for `command`. The others stay
/// accepted (a global option may precede any command) but are hidden from its help:
/// `keygen`, `completions` and `man` talk to no service and run no engine. A command not
/// listed here (a new one) shows them all until someone decides otherwise.
fn shows_global(command: &str, id: &str) -> bool {
    let aws = AWS_IDS.contains(&id) || KMS_CALL_IDS.contains(&id) || S3_REQUEST_IDS.contains(&id);
    match command {
        "keygen" | "completions" | "man" => false,
        "encrypt" => id != "kms_max_decrypts",
        "inspect" => aws || id == "kms_max_decrypts",
        "rewrap" => aws || id == "kms_max_decrypts" || id == "concurrency",
        // The gateway runs the engine on the shared pool (no --threads/--backend).
        "serve" => !matches!(id, "threads" | "backend"),
        _ => true,
    }
}

/// Examples for a command (`None`: the command has none).
fn examples(command: &str) -> Option<&'static str> {
    Some(match command {
        "keygen" => EXAMPLES_KEYGEN,
        "encrypt" => EXAMPLES_ENCRYPT,
        "decrypt" => EXAMPLES_DECRYPT,
        "inspect" => EXAMPLES_INSPECT,
        "rewrap" => EXAMPLES_REWRAP,
        "migrate" => EXAMPLES_MIGRATE,
        "serve" => EXAMPLES_SERVE,
        "completions" => EXAMPLES_COMPLETIONS,
        "man" => EXAMPLES_MAN,
        _ => return None,
    })
}

/// The command line's definition: the derive's, plus examples and exit codes after each
/// command's help and the global options a command does not use hidden from it.
pub fn command() -> clap::Command {
    decorate(Cli::command())
}

/// The additions of [`command`] to the derive's definition `cmd`.
fn decorate(cmd: clap::Command) -> clap::Command {
    let mut cmd = cmd.after_help(format!("{EXAMPLES_MAIN}\n\n{EXIT_CODES}"));
    // Propagates the global options into every subcommand, so they can be hidden there.
    cmd.build();
    cmd.mut_subcommands(|sc| {
        let name = sc.get_name().to_string();
        let after = match examples(&name) {
            Some(ex) => format!("{ex}\n\n{EXIT_CODES}"),
            None => EXIT_CODES.to_string(),
        };
        sc.after_help(after).mut_args(|a: Arg| {
            let id = a.get_id().as_str();
            if a.is_global_set() && id != "quiet" && !shows_global(&name, id) {
                a.hide(true)
            } else {
                a
            }
        })
    })
}

/// `sealstream completions SHELL`: the script clap_complete generates from [`command`], so
/// it offers exactly the commands and options the binary parses (hidden ones excepted).
pub fn completions(shell: clap_complete::Shell) -> Result<()> {
    let mut cmd = command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sealstream", &mut out);
    to_stdout(&out)
}

/// `sealstream man [COMMAND]`: the page clap_mangen renders from [`command`] (without
/// clap's `help` command, which has no page): sealstream(1), or sealstream-COMMAND(1).
pub fn man(name: Option<&str>) -> Result<()> {
    let cmd = decorate(Cli::command().disable_help_subcommand(true));
    let page = match name {
        None => cmd,
        Some(n) => cmd.find_subcommand(n).cloned().ok_or_else(|| {
            let names: Vec<&str> = cmd.get_subcommands().map(|c| c.get_name()).collect();
            Error::InvalidArgument(format!(
                "man: no command '{}'; the commands are {}",
                sealstream::text::escape(n),
                names.join(", ")
            ))
        })?,
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .source(format!("sealstream {}", env!("CARGO_PKG_VERSION")))
        .manual("User Commands")
        .render(&mut out)
        .map_err(|e| Error::io("rendering the man page", e))?;
    to_stdout(&out)
}

fn to_stdout(bytes: &[u8]) -> Result<()> {
    let mut o = io::stdout().lock();
    o.write_all(bytes)
        .and_then(|()| o.flush())
        .map_err(|e| Error::io("writing to stdout", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        command().debug_assert();
    }

    /// The `sealstream …` part of an example line: pipes and redirections around it removed.
    fn example_args(line: &str) -> Option<Vec<String>> {
        let part = line
            .split(" | ")
            .map(str::trim)
            .find(|p| p.starts_with("sealstream "))?;
        let mut words = part.split_whitespace().skip(1);
        let mut args = Vec::new();
        while let Some(w) = words.next() {
            if w == ">" || w == "<" {
                words.next();
            } else {
                args.push(w.to_string());
            }
        }
        Some(args)
    }

    /// Every example parses with the real definitions: an example naming a flag the command
    /// does not have (or a value it refuses) fails here.
    #[test]
    fn every_example_parses() {
        let all = [
            ("", EXAMPLES_MAIN),
            ("keygen", EXAMPLES_KEYGEN),
            ("encrypt", EXAMPLES_ENCRYPT),
            ("decrypt", EXAMPLES_DECRYPT),
            ("inspect", EXAMPLES_INSPECT),
            ("rewrap", EXAMPLES_REWRAP),
            ("migrate", EXAMPLES_MIGRATE),
            ("completions", EXAMPLES_COMPLETIONS),
            ("man", EXAMPLES_MAN),
        ];
        for (name, text) in all {
            let mut own = 0;
            let body = text.split_once("Examples:\n").map_or("", |(_, b)| b);
            for line in body.lines().filter(|l| !l.trim_start().starts_with('#')) {
                let args = example_args(line).unwrap_or_else(|| panic!("no command in {line:?}"));
                if name.is_empty() || args.first().is_some_and(|a| a == name) {
                    own += 1;
                }
                let argv = std::iter::once("sealstream".to_string()).chain(args);
                if let Err(e) = command().try_get_matches_from(argv) {
                    panic!("example {line:?} does not parse: {e}");
                }
            }
            assert!(own > 0, "{name} has no example of itself");
        }
    }

    /// The duration defaults written in the definitions are the library's constants.
    #[test]
    fn duration_defaults_are_the_library_constants() {
        use clap::FromArgMatches;
        let m = command()
            .try_get_matches_from(["sealstream", "keygen"])
            .unwrap();
        let cli = Cli::from_arg_matches(&m).unwrap();
        // Unless the environment sets them (then this test says nothing about the default).
        let vars = [
            "SEALSTREAM_S3_TIMEOUT",
            "SEALSTREAM_S3_CONNECT_TIMEOUT",
            "SEALSTREAM_S3_READ_TIMEOUT",
            "SEALSTREAM_KMS_TIMEOUT",
        ];
        if vars.iter().any(|v| std::env::var_os(v).is_some()) {
            return;
        }
        assert_eq!(cli.s3_timeout, sealstream::s3::DEFAULT_OPERATION_TIMEOUT);
        assert_eq!(
            cli.s3_connect_timeout,
            sealstream::s3::DEFAULT_CONNECT_TIMEOUT
        );
        assert_eq!(cli.s3_read_timeout, sealstream::s3::DEFAULT_READ_TIMEOUT);
        assert_eq!(
            cli.kms_timeout,
            sealstream::kms::KmsSettings::default().operation_timeout
        );
    }

    /// Durations: plain seconds, humantime's units and combinations; the rest refused.
    #[test]
    fn durations_parse_as_documented() {
        use super::super::parse::parse_duration;
        use std::time::Duration;
        let ok = [
            ("90", 90),
            (" 30 ", 30),
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2days", 172_800),
            ("1d", 86_400),
            ("1.5h", 5400),
        ];
        for (text, secs) in ok {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        for bad in ["", "1x", "-5m", "1h30", "m", "99999999999999999999999"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
    }

    /// The exit codes shown are exactly those `cli::exit` defines.
    #[test]
    fn exit_codes_shown_are_the_defined_ones() {
        use super::super::exit;
        let shown: Vec<i32> = EXIT_CODES
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        let defined = [
            exit::OK,
            exit::USAGE,
            exit::IO,
            exit::AUTHENTICATION,
            exit::KEY_SERVICE,
            exit::STORAGE,
            exit::CANCELLED,
            exit::BROKEN_PIPE,
        ];
        assert_eq!(shown, defined);
    }
}
