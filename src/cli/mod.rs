//! The `sealstream` command line: parses arguments, calls the library, reports.
//!
//! Nothing here does cryptography; it maps flags to [`sealstream::envelope`] calls, picks input
//! and output streams, and turns errors into messages and exit codes.

mod attributes;
pub mod batch;
mod decrypt;
mod encrypt;
pub mod exit;
mod help;
mod hints;
mod input;
mod inspect;
mod keygen;
mod keys;
mod logging;
pub mod output;
pub mod parse;
pub mod progress;
mod recursive;
mod report;
mod rewrap;
mod s3;
mod s3ec;
mod serve;
mod serve_config;
mod values;

use std::path::PathBuf;
use std::time::Duration;

use clap::{FromArgMatches, Parser, Subcommand};

use exit::Failure;
use sealstream::Backend;
use sealstream::engine::EngineOptions;

use decrypt::DecryptArgs;
use encrypt::EncryptArgs;
use inspect::InspectArgs;
use rewrap::RewrapArgs;
use s3ec::MigrateArgs;

/// Envelope encryption for very large files: STREAM-chunked AEAD on all cores.
#[derive(Debug, Parser)]
#[command(name = "sealstream", version)]
pub struct Cli {
    /// Do not show a progress bar or notes on stderr (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Log to stderr: -v every AWS call (operation, range, status, request id, duration)
    /// and retries, -vv also the AWS SDK's own decisions, -vvv everything. RUST_LOG
    /// (e.g. sealstream=debug) overrides. Turns the progress bar off.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Worker threads for chunk crypto (default: one per core).
    #[arg(long, global = true, value_name = "N", help_heading = help::ENGINE)]
    pub threads: Option<usize>,
    /// AEAD implementation for the body: ring (fastest here) or rustcrypto (pure Rust).
    #[arg(long, global = true, value_name = "NAME", default_value = "ring", value_parser = values::backend(), help_heading = help::ENGINE)]
    pub backend: Backend,
    /// AWS region for KMS keys given without an ARN and for S3 (default: the AWS
    /// configuration chain).
    #[arg(long, global = true, value_name = "REGION", help_heading = help::AWS)]
    pub region: Option<String>,
    /// AWS named profile (default: the AWS configuration chain). Given explicitly, its
    /// credentials win over AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment; a
    /// profile defined in neither AWS file is a usage error (exit 2).
    #[arg(long, global = true, value_name = "NAME", help_heading = help::AWS)]
    pub profile: Option<String>,
    /// Send S3 and KMS requests to this URL instead of AWS's (MinIO, a local emulator, a
    /// VPC endpoint), as the AWS CLI's --endpoint-url. Precedence: this flag, then
    /// AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_KMS, then AWS_ENDPOINT_URL. S3 is then
    /// addressed path-style (http://HOST/BUCKET/KEY).
    #[arg(long, global = true, value_name = "URL", value_parser = parse::parse_endpoint_url, help_heading = help::AWS)]
    pub endpoint_url: Option<String>,
    /// PEM file of CA certificates to trust for HTTPS to S3 and KMS besides the system's
    /// roots (a MinIO or Ceph store behind a private CA), as the AWS CLI's --ca-bundle and
    /// its AWS_CA_BUNDLE variable.
    #[arg(long, global = true, value_name = "FILE", env = "AWS_CA_BUNDLE", help_heading = help::AWS)]
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Attempts per KMS call, including the first; throttling and transient faults are
    /// retried with exponential backoff and jitter.
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 8,
        env = "SEALSTREAM_KMS_MAX_ATTEMPTS",
        help_heading = help::KMS
    )]
    pub kms_max_attempts: u32,
    /// Upper bound on one KMS call including its retries (e.g. 60, 90s, 2m; at least 1s).
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        default_value = "60s",
        value_parser = parse::parse_duration,
        env = "SEALSTREAM_KMS_TIMEOUT",
        help_heading = help::KMS
    )]
    pub kms_timeout: Duration,
    /// Most KMS stanzas sent to KMS for one object when decrypting (identical stanzas
    /// count once); bounds what a hostile file with many stanzas can cost.
    #[arg(long, global = true, value_name = "N", default_value_t = sealstream::kms::DEFAULT_MAX_DECRYPTS_PER_OBJECT, value_parser = values::kms_max_decrypts(), help_heading = help::KMS)]
    pub kms_max_decrypts: usize,
    /// Parts uploaded, or ranged GETs downloaded, at once. Memory for an S3 transfer is
    /// bounded by about (N + 1) × --part-size plus the engine's buffers (a few MiB),
    /// whatever the object's size.
    #[arg(long, global = true, value_name = "N", default_value_t = sealstream::s3::DEFAULT_CONCURRENCY, value_parser = values::concurrency(), help_heading = help::S3)]
    pub concurrency: usize,
    /// Plaintext bytes per part and per ranged GET (5MiB..5GiB, whole chunks). Grown for
    /// large files so an upload needs at most 10,000 parts; from stdin (length unknown)
    /// parts double in size after every 1,000 parts.
    #[arg(long, global = true, value_name = "SIZE", default_value = "8MiB", value_parser = values::part_size, help_heading = help::S3)]
    pub part_size: u64,
    /// Attempts per S3 request, including the first; SlowDown/503 and transient network
    /// errors are retried with exponential backoff and jitter.
    #[arg(
        long,
        global = true,
        value_name = "N",
        default_value_t = 8,
        env = "SEALSTREAM_S3_MAX_ATTEMPTS",
        help_heading = help::S3
    )]
    pub s3_max_attempts: u32,
    /// Upper bound on an S3 operation that does not move data (HEAD, List, create/abort
    /// multipart, delete), retries included. Transfers (GET, PUT, parts, copies) have no
    /// wall-clock bound; they are bounded by the two timeouts below. At least 1s.
    #[arg(long, global = true, value_name = "DURATION", default_value = "2m", value_parser = parse::parse_duration, env = "SEALSTREAM_S3_TIMEOUT", help_heading = help::S3)]
    pub s3_timeout: Duration,
    /// How long to wait for a connection to the S3 endpoint (at least 1s).
    #[arg(long, global = true, value_name = "DURATION", default_value = "10s", value_parser = parse::parse_duration, env = "SEALSTREAM_S3_CONNECT_TIMEOUT", help_heading = help::S3)]
    pub s3_connect_timeout: Duration,
    /// How long to wait for the first byte of an S3 answer once the request (body included)
    /// is sent, and longest time a transfer may make no progress (at least 1s).
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = parse::parse_duration, env = "SEALSTREAM_S3_READ_TIMEOUT", help_heading = help::S3)]
    pub s3_read_timeout: Duration,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new local key-encryption key (mode 0600, never overwrites).
    Keygen {
        /// Where to write the key (absent or '-' = stdout). An existing file is never
        /// replaced: choose a new path.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Encrypt INPUT (default stdin) to OUTPUT (default stdout).
    Encrypt(Box<EncryptArgs>),
    /// Decrypt INPUT (default stdin) to OUTPUT (default stdout); only authenticated data is written.
    Decrypt(DecryptArgs),
    /// Show a file's header and layout (no key needed; lengths are unauthenticated).
    Inspect(InspectArgs),
    /// Change which keys can open FILE without touching its body (atomic replace).
    Rewrap(RewrapArgs),
    /// Re-encrypt objects written by the Amazon S3 Encryption Client into sealstream
    /// objects, in place, one streaming pass each (docs/MIGRATION.md).
    Migrate(MigrateArgs),
    /// Run an S3-compatible gateway: clients read and write through it with any S3 tool,
    /// objects are stored encrypted upstream (docs/GATEWAY.md).
    Serve(serve::ServeArgs),
    /// Print a shell completion script to stdout (generated from these definitions).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) of sealstream, or of one of its commands, to stdout.
    Man {
        /// The command whose page to print, sealstream-COMMAND(1) (absent: sealstream(1)).
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match help::command().try_get_matches().and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        match (&mut cli.command, m.subcommand()) {
            (Command::Encrypt(a), Some((_, sub))) => {
                a.batch.tree.filters = batch::ordered_filters(sub)
            }
            (Command::Decrypt(a), Some((_, sub))) => {
                a.batch.tree.filters = batch::ordered_filters(sub)
            }
            (Command::Rewrap(a), Some((_, sub))) => a.tree.filters = batch::ordered_filters(sub),
            _ => {}
        }
        serve::note_sources(&mut cli, &m);
        Ok(cli)
    }) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // The gateway handles SIGTERM/Ctrl-C itself (graceful shutdown) and its own logging.
    if !matches!(cli.command, Command::Serve(_)) {
        output::install_signal_cleanup();
        match logging::init(cli.verbose, cli.quiet) {
            Ok(on) => progress::set_logging(on),
            Err(e) => {
                eprintln!("sealstream: error: {e}");
                return Failure::from(e).code();
            }
        }
    }
    match run(&cli) {
        Ok(()) => exit::OK,
        // The reader of our output went away (`| head`): stop quietly, as `cat` does, with
        // the status a shell shows for a process killed by SIGPIPE (128 + 13). Not 0: the
        // rest of the input was neither read nor authenticated.
        Err((e, _)) if e.is_broken_pipe() => exit::BROKEN_PIPE,
        Err((e, stdout_dirty)) => {
            eprintln!("sealstream: error: {e}");
            if stdout_dirty {
                match output::direct_output_name() {
                    Some(n) => eprintln!(
                        "sealstream: the output already written to '{n}' is incomplete; discard it"
                    ),
                    None => eprintln!(
                        "sealstream: the output written to stdout is incomplete; discard it"
                    ),
                }
            }
            e.code()
        }
    }
}

/// A command's outcome, with whether stdout already got (now incomplete) output.
type CliResult = std::result::Result<(), (Failure, bool)>;

/// A command's outcome when it never writes to stdout before failing.
type Outcome = std::result::Result<(), Failure>;

fn run(cli: &Cli) -> CliResult {
    let clean = |e: Failure| (e, false);
    match &cli.command {
        Command::Keygen { output } => {
            keygen::keygen(output.as_deref(), cli.quiet).map_err(|e| clean(e.into()))
        }
        Command::Encrypt(a) => encrypt::encrypt(cli, a).map_err(clean),
        Command::Decrypt(a) => decrypt::decrypt(cli, a),
        Command::Inspect(a) => inspect::inspect(cli, a).map_err(clean),
        Command::Rewrap(a) => rewrap::rewrap(cli, a).map_err(clean),
        Command::Migrate(a) => s3ec::migrate(cli, a).map_err(clean),
        Command::Serve(a) => serve::serve(cli, a).map_err(|e| clean(e.into())),
        Command::Completions { shell } => help::completions(*shell).map_err(|e| clean(e.into())),
        Command::Man { command } => help::man(command.as_deref()).map_err(|e| clean(e.into())),
    }
}

fn note(quiet: bool, msg: &str) {
    if !quiet {
        eprintln!("sealstream: {msg}");
    }
}

fn engine_opts<'a>(cli: &Cli, progress: Option<&'a (dyn Fn(u64) + Sync)>) -> EngineOptions<'a> {
    EngineOptions {
        threads: cli.threads.unwrap_or(0),
        progress,
        ..EngineOptions::default()
    }
}
