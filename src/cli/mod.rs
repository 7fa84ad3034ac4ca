//! The `sealstream` command line: parses arguments, calls the library, reports.
//!
//! Nothing here does cryptography; it maps flags to [`sealstream::envelope`] calls, picks input
//! and output streams, and turns errors into messages and exit codes.

mod attributes;
pub mod batch;
pub mod exit;
mod help;
mod hints;
mod logging;
pub mod output;
pub mod parse;
pub mod progress;
mod recursive;
mod report;
mod s3;
mod s3ec;
mod serve;
mod serve_config;

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, FromArgMatches, Parser, Subcommand};

use exit::Failure;
use output::Sink;
use parse::parse_context;
use sealstream::Backend;
use sealstream::engine::EngineOptions;
use sealstream::envelope::{self, DecryptParams, EncryptParams};
use sealstream::error::{Error, Result};
use sealstream::format::{Header, Suite, limits};
use sealstream::keys::KeyProvider;
use sealstream::keys::cache::{CacheLimits, DataKeyCache};
use sealstream::keys::local::{self, LocalKey};
use sealstream::kms::KmsSettings;
use sealstream::kms::blocking::{Kms, KmsDiscovery, KmsKey};
use sealstream::range::{self, ByteRange};

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
    #[arg(long, global = true, value_name = "NAME", default_value = "ring", value_parser = ["ring", "rustcrypto"], help_heading = help::ENGINE)]
    pub backend: String,
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
    #[arg(long, global = true, value_name = "N", default_value_t = sealstream::kms::DEFAULT_MAX_DECRYPTS_PER_OBJECT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=32), help_heading = help::KMS)]
    pub kms_max_decrypts: usize,
    /// Parts uploaded, or ranged GETs downloaded, at once. Memory for an S3 transfer is
    /// bounded by about (N + 1) × --part-size plus the engine's buffers (a few MiB),
    /// whatever the object's size.
    #[arg(long, global = true, value_name = "N", default_value_t = sealstream::s3::DEFAULT_CONCURRENCY, help_heading = help::S3)]
    pub concurrency: usize,
    /// Plaintext bytes per part and per ranged GET (5MiB..5GiB, whole chunks). Grown for
    /// large files so an upload needs at most 10,000 parts; from stdin (length unknown)
    /// parts double in size after every 1,000 parts.
    #[arg(long, global = true, value_name = "SIZE", default_value = "8MiB", help_heading = help::S3)]
    pub part_size: String,
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

/// `encrypt` options.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// File(s) or directories to encrypt (absent or '-' = stdin). Several inputs or a
    /// directory need --output-dir.
    pub inputs: Vec<PathBuf>,
    /// Where to write (absent or '-' = stdout; never a terminal), or s3://BUCKET/KEY to
    /// encrypt while uploading (multipart, parallel parts; see --concurrency, --part-size).
    #[arg(short, long, value_name = "OUTPUT", conflicts_with = "output_dir", help_heading = help::OUTPUT)]
    pub output: Option<PathBuf>,
    /// Batch mode.
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Replace OUTPUT if it exists.
    #[arg(short, long, help_heading = help::OUTPUT)]
    pub force: bool,
    /// Local key file to wrap the data key for (repeat for several). Default: the embedded
    /// default key ($SEALSTREAM_HOME/local.key or ~/.config/sealstream/local.key), created
    /// on first use.
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", help_heading = help::KEYS)]
    pub keys: Vec<PathBuf>,
    /// AWS KMS key (id, alias, or ARN) to wrap the data key for (repeatable). The first one
    /// generates the data key (GenerateDataKey); each further one wraps it (Encrypt) in its
    /// own region. With --kms-key, the default local key is not added unless given with -k.
    #[arg(long = "kms-key", value_name = "KEY", help_heading = help::KEYS)]
    pub kms_keys: Vec<String>,
    /// Encryption context pair, bound to the data (repeatable).
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", help_heading = help::KEYS)]
    pub context: Vec<String>,
    /// Body cipher suite.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305"], help_heading = help::FORMAT)]
    pub suite: String,
    /// Plaintext bytes per chunk, 4KiB..16MiB (memory use is about (2×threads+2)×max(1MiB, SIZE)).
    #[arg(long, value_name = "SIZE", default_value = "64KiB", help_heading = help::FORMAT)]
    pub chunk_size: String,
    /// Reuse one data key for several objects of a batch for at most this long (e.g. 30s, 5m,
    /// 1h30m); enables data-key caching. Each object still gets its own salt and payload key.
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration, help_heading = help::CACHE)]
    pub cache_max_age: Option<Duration>,
    /// With --cache-max-age: at most this many objects per data key.
    #[arg(long, value_name = "N", requires = "cache_max_age", help_heading = help::CACHE)]
    pub cache_max_objects: Option<u64>,
    /// With --cache-max-age: at most this many plaintext bytes per data key (e.g. 100GiB).
    #[arg(long, value_name = "SIZE", requires = "cache_max_age", help_heading = help::CACHE)]
    pub cache_max_bytes: Option<String>,
    /// Attributes of the stored objects (S3 outputs).
    #[command(flatten)]
    pub object: attributes::ObjectArgs,
    /// Print one JSON object per result on stdout (JSON Lines with --output-dir, failures
    /// included): sizes, keys, object URL, ETag, version id, header location, duration.
    /// Needs an output other than stdout.
    #[arg(long, help_heading = help::OUTPUT)]
    pub json: bool,
}

/// `decrypt` options.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// File(s) or directories to decrypt (absent or '-' = stdin), or s3://BUCKET/KEY to
    /// download and decrypt (parallel ranged GETs). Several inputs or a directory need
    /// --output-dir.
    pub inputs: Vec<PathBuf>,
    /// Read the header from this file (exactly a header, as saved with `inspect
    /// --export-header`; bytes after it are refused) and treat INPUT as the body alone:
    /// decrypts an S3 object's body downloaded by another tool.
    #[arg(long, value_name = "FILE", help_heading = help::INPUT)]
    pub header_from: Option<PathBuf>,
    /// Decrypt only this plaintext byte range: START-END (inclusive), START- or -N.
    /// Bounds accept KiB/MiB/GiB and sums (1GiB+10). INPUT must be a file or an S3 object
    /// (then only the chunks covering the range are fetched).
    #[arg(long, value_name = "START-END", allow_hyphen_values = true, help_heading = help::INPUT)]
    pub range: Option<String>,
    /// Where to write the plaintext (absent or '-' = stdout).
    #[arg(short, long, value_name = "OUTPUT", conflicts_with = "output_dir", help_heading = help::OUTPUT)]
    pub output: Option<PathBuf>,
    /// Batch mode.
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Replace OUTPUT if it exists.
    #[arg(short, long, help_heading = help::OUTPUT)]
    pub force: bool,
    /// Print one JSON object per result on stdout (JSON Lines with --output-dir, failures
    /// included): sizes, keys, object URL, ETag, version id, header location, duration.
    /// Needs an output other than stdout.
    #[arg(long, help_heading = help::OUTPUT)]
    pub json: bool,
    /// Local key file(s) to try (default: the embedded default key).
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", help_heading = help::KEYS)]
    pub keys: Vec<PathBuf>,
    /// KMS keys trusted for unwrapping.
    #[command(flatten)]
    pub kms: KmsTrustArgs,
    /// Context pair the file must carry (repeatable); a missing or different pair fails.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", help_heading = help::KEYS)]
    pub context: Vec<String>,
}

/// `inspect` options.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// File to inspect (absent or '-' = stdin), or s3://BUCKET/KEY (reads only the metadata
    /// and, if the header is in a companion object, that object).
    pub input: Option<PathBuf>,
    /// Print one JSON object (schema in README).
    #[arg(long, help_heading = help::OUTPUT)]
    pub json: bool,
    /// Also write the header bytes to FILE (never overwrites): with the body it converts the
    /// object form back to the file form (`decrypt BODY --header-from FILE`).
    #[arg(long, value_name = "FILE", help_heading = help::OUTPUT)]
    pub export_header: Option<PathBuf>,
    /// Also unwrap every stanza with the keys given (-k, default key, --kms-key…) and check
    /// it against the key commitment; exit 4 (or 5) if a stanza with a matching key fails.
    #[arg(long, help_heading = help::KEYS)]
    pub verify: bool,
    /// Local key file(s) for --verify (default: the embedded default key, if present).
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", requires = "verify", help_heading = help::KEYS)]
    pub keys: Vec<PathBuf>,
    /// KMS keys trusted for --verify.
    #[command(flatten)]
    pub kms: KmsTrustArgs,
}

/// `rewrap` options.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The encrypted file to rewrite in place, or s3://BUCKET/KEY (only the metadata changes,
    /// through a server-side copy; the body is never downloaded).
    pub file: PathBuf,
    /// Key file to add a wrapped copy of the data key for (repeatable).
    #[arg(long = "add-key", value_name = "KEYFILE", help_heading = help::CHANGES)]
    pub add: Vec<PathBuf>,
    /// AWS KMS key (id, alias, or ARN) to add a wrapped copy of the data key for (repeatable).
    #[arg(long = "add-kms-key", value_name = "KEY", help_heading = help::CHANGES)]
    pub add_kms: Vec<String>,
    /// Key whose stanza to remove (repeatable): a key id as `inspect` shows it, or a KMS
    /// key as --kms-key takes it (alias, key id or ARN; resolved with DescribeKey).
    #[arg(long = "remove-key", value_name = "KEY", help_heading = help::CHANGES)]
    pub remove: Vec<String>,
    /// Move the stanzas of the trusted --kms-key(s) to this KMS key with KMS ReEncrypt, so the
    /// data key never leaves KMS (the old stanzas are replaced).
    #[arg(long = "rotate-to-kms-key", value_name = "KEY", help_heading = help::CHANGES)]
    pub rotate_to: Option<String>,
    /// Rewrap a local file that has other hard links anyway: only this name gets the new
    /// header, the other links keep the old file (and any key removed now).
    #[arg(long = "break-hard-links", help_heading = help::CHANGES)]
    pub break_hard_links: bool,
    /// Print the result as one JSON object on stdout (keys after the change, header
    /// location, duration).
    #[arg(long, help_heading = help::OUTPUT)]
    pub json: bool,
    /// Key file that can open the file now (default: the embedded default key).
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", help_heading = help::KEYS)]
    pub keys: Vec<PathBuf>,
    /// KMS keys trusted for unwrapping.
    #[command(flatten)]
    pub kms: KmsTrustArgs,
}

/// `migrate` options.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The S3 Encryption Client object, s3://BUCKET/KEY, or with --recursive every object
    /// under s3://BUCKET/PREFIX/.
    pub source: PathBuf,
    /// Migrate every object under the prefix (instruction files and sealstream objects are
    /// skipped, other objects reported as skipped).
    #[arg(long, help_heading = help::INPUT)]
    pub recursive: bool,
    /// Check and report what would be migrated (metadata read, data key unwrapped), write
    /// nothing.
    #[arg(long, help_heading = help::OUTPUT)]
    pub dryrun: bool,
    /// KMS keys trusted for unwrapping the S3 Encryption Client's data key.
    #[command(flatten)]
    pub kms: KmsTrustArgs,
    /// Context pair the object must carry (repeatable); a missing or different pair fails.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", help_heading = help::KEYS)]
    pub context: Vec<String>,
    /// KMS key to wrap the new data key for (repeatable). Default, with no --wrap-kms-key
    /// and no --wrap-key: the KMS key that unwrapped the object's data key.
    #[arg(long = "wrap-kms-key", value_name = "KEY", help_heading = help::KEYS)]
    pub wrap_kms_keys: Vec<String>,
    /// Local key file to wrap the new data key for (repeatable).
    #[arg(long = "wrap-key", value_name = "KEYFILE", help_heading = help::KEYS)]
    pub wrap_keys: Vec<PathBuf>,
    /// Body cipher suite of the new object.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305"], help_heading = help::FORMAT)]
    pub suite: String,
    /// Plaintext bytes per chunk of the new object, 4KiB..16MiB.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", help_heading = help::FORMAT)]
    pub chunk_size: String,
}

/// Several files at once.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Write one output per input into DIR (directories are walked recursively and their
    /// layout kept; encrypt adds `.seal`, decrypt removes it or else adds `.dec`).
    #[arg(long, value_name = "DIR", help_heading = help::OUTPUT)]
    pub output_dir: Option<PathBuf>,
    /// Files processed at once in batch mode; memory is about jobs × the per-file bound.
    #[arg(long, value_name = "N", default_value_t = 2, help_heading = help::OUTPUT)]
    pub jobs: usize,
    /// Transfer a whole tree as `aws s3 cp --recursive` does: INPUT is a directory or
    /// s3://BUCKET/PREFIX/, -o the destination directory or prefix, and SRC/a/b goes to
    /// DEST/a/b (encrypt adds .seal to local files, decrypt removes it), so a round trip
    /// restores the tree. Existing outputs are skipped unless --force; symlinks are
    /// reported, not followed.
    #[arg(short = 'r', long, conflicts_with = "output_dir", help_heading = help::OUTPUT)]
    pub recursive: bool,
    /// With --recursive: leave out files whose path relative to the source matches
    /// PATTERN (`*` crosses '/'; repeatable; with --include, the last match wins).
    #[arg(long, value_name = "PATTERN", help_heading = help::OUTPUT)]
    pub exclude: Vec<String>,
    /// With --recursive: take back files matching PATTERN that an earlier --exclude left out.
    #[arg(long, value_name = "PATTERN", help_heading = help::OUTPUT)]
    pub include: Vec<String>,
    /// With --recursive: print what would be transferred (on stdout) and transfer nothing.
    #[arg(long, help_heading = help::OUTPUT)]
    pub dryrun: bool,
    /// --include/--exclude in command-line order (filled from the parsed matches: the order
    /// decides which wins).
    #[arg(skip)]
    pub filters: Vec<(bool, String)>,
}

impl BatchArgs {
    /// The options that only `--recursive` uses (clap's `requires` is satisfied by a flag's
    /// default value, so it is checked here).
    fn check(&self) -> Result<()> {
        if !self.recursive && (!self.filters.is_empty() || self.dryrun) {
            return Err(Error::InvalidArgument(
                "--include, --exclude and --dryrun go with --recursive".into(),
            ));
        }
        Ok(())
    }
}

/// The `--include`/`--exclude` values of a command in command-line order.
fn ordered_filters(m: &clap::ArgMatches) -> Vec<(bool, String)> {
    let mut all: Vec<(usize, bool, String)> = Vec::new();
    for (id, include) in [("include", true), ("exclude", false)] {
        if let (Some(ix), Some(vals)) = (
            m.indices_of(id),
            m.try_get_many::<String>(id).ok().flatten(),
        ) {
            all.extend(ix.zip(vals).map(|(i, v)| (i, include, v.clone())));
        }
    }
    all.sort_by_key(|(i, _, _)| *i);
    all.into_iter().map(|(_, inc, v)| (inc, v)).collect()
}

/// Which KMS keys a decrypting command may call.
#[derive(Debug, Args)]
pub struct KmsTrustArgs {
    /// AWS KMS key (id, alias, or ARN) trusted to unwrap the data key (repeatable). Only
    /// stanzas of exactly these keys are sent to KMS.
    #[arg(long = "kms-key", value_name = "KEY", help_heading = help::KEYS)]
    pub kms_keys: Vec<String>,
    /// Try any KMS stanza whose key is in an allowed account (needs --kms-allow-account).
    #[arg(long, help_heading = help::KEYS)]
    pub kms_discovery: bool,
    /// Account id allowed in --kms-discovery (repeatable).
    #[arg(
        long = "kms-allow-account",
        value_name = "ACCOUNT",
        requires = "kms_discovery",
        help_heading = help::KEYS
    )]
    pub kms_allow_accounts: Vec<String>,
}

impl KmsTrustArgs {
    fn any(&self) -> bool {
        !self.kms_keys.is_empty() || self.kms_discovery
    }
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match help::command().try_get_matches().and_then(|m| {
        let mut cli = Cli::from_arg_matches(&m)?;
        match (&mut cli.command, m.subcommand()) {
            (Command::Encrypt(a), Some((_, sub))) => a.batch.filters = ordered_filters(sub),
            (Command::Decrypt(a), Some((_, sub))) => a.batch.filters = ordered_filters(sub),
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
            keygen(output.as_deref(), cli.quiet).map_err(|e| clean(e.into()))
        }
        Command::Encrypt(a) => encrypt(cli, a).map_err(clean),
        Command::Decrypt(a) => decrypt(cli, a),
        Command::Inspect(a) => inspect(cli, a).map_err(clean),
        Command::Rewrap(a) => rewrap(cli, a).map_err(|e| clean(e.into())),
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

fn backend(cli: &Cli) -> Backend {
    if cli.backend == "rustcrypto" {
        Backend::RustCrypto
    } else {
        Backend::Ring
    }
}

fn engine_opts<'a>(cli: &Cli, progress: Option<&'a (dyn Fn(u64) + Sync)>) -> EngineOptions<'a> {
    EngineOptions {
        threads: cli.threads.unwrap_or(0),
        progress,
        ..EngineOptions::default()
    }
}

fn keygen(out: Option<&Path>, quiet: bool) -> Result<()> {
    let key = LocalKey::generate()?;
    match out {
        Some(p) if p.as_os_str() != "-" => {
            // keygen has no --force (replacing a key loses every file wrapped for it): say
            // what to do instead of the generic "pass --force" of other outputs.
            key.save_new(p).map_err(|e| match e {
                Error::OutputExists(shown) => Error::io(
                    format!("writing the key to '{shown}'"),
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file is already there and keygen never replaces one (a replaced \
                         key can no longer open the files wrapped for it); choose another \
                         path, or move the old file away first",
                    ),
                ),
                e => e,
            })?;
            note(
                quiet,
                &format!("wrote key {} to '{}'", key.id(), p.display()),
            );
        }
        _ => {
            let mut o = io::stdout().lock();
            o.write_all(key.to_text().as_bytes())
                .and_then(|_| o.flush())
                .map_err(|e| Error::io("writing to stdout", e))?;
        }
    }
    Ok(())
}

/// The keys one command holds, in the order they are used: for encryption the first one
/// generates the data key; for decryption they are tried in order.
#[derive(Default)]
struct Keyring {
    providers: Vec<Box<dyn KeyProvider>>,
}

impl Keyring {
    fn as_refs(&self) -> Vec<&dyn KeyProvider> {
        self.providers.iter().map(|p| p.as_ref()).collect()
    }

    fn push_local(&mut self, k: LocalKey) {
        self.providers.push(Box::new(k));
    }

    fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

fn kms_connect(cli: &Cli) -> Result<Arc<Kms>> {
    Kms::connect(KmsSettings {
        region: cli.region.clone(),
        profile: cli.profile.clone(),
        max_attempts: cli.kms_max_attempts,
        operation_timeout: cli.kms_timeout.max(Duration::from_secs(1)),
        retry_notes: !cli.quiet,
        endpoint_url: cli.endpoint_url.clone(),
        ..KmsSettings::default()
    })
}

fn load_local(paths: &[PathBuf], ring: &mut Keyring) -> Result<()> {
    for p in paths {
        ring.push_local(load_key_file(p)?);
    }
    Ok(())
}

/// Loads one key file, printing its permission warnings (even with --quiet, like ssh).
fn load_key_file(p: &Path) -> Result<LocalKey> {
    let (key, warnings) = LocalKey::load_with_warnings(p)?;
    for w in warnings {
        eprintln!("sealstream: warning: {w}");
    }
    Ok(key)
}

/// Keys for encryption: KMS keys first (the first generates the data key), then local keys;
/// with neither, the embedded default key (created on first use).
fn encryption_keys(cli: &Cli, local_paths: &[PathBuf], kms_keys: &[String]) -> Result<Keyring> {
    let mut ring = Keyring::default();
    if !kms_keys.is_empty() {
        let kms = kms_connect(cli)?;
        for k in kms_keys {
            ring.providers.push(Box::new(KmsKey::for_wrapping(&kms, k)));
        }
    }
    load_local(local_paths, &mut ring)?;
    if ring.is_empty() {
        let default = local::default_key_path()?;
        let (key, created) = if default.exists() {
            (load_key_file(&default)?, None)
        } else {
            local::load_or_create_default()?
        };
        if let Some(p) = created {
            note(
                cli.quiet,
                &format!(
                    "created the default local key {} at '{}'. Back it up: without it your files cannot be decrypted.",
                    key.id(),
                    p.display()
                ),
            );
        }
        ring.push_local(key);
    }
    Ok(ring)
}

/// Keys for decryption: local keys (-k, else the default key if it exists), then the KMS
/// keys the caller trusts.
fn decryption_keys(cli: &Cli, local_paths: &[PathBuf], trust: &KmsTrustArgs) -> Result<Keyring> {
    let mut ring = Keyring::default();
    load_local(local_paths, &mut ring)?;
    let default_path = local::default_key_path().ok();
    if local_paths.is_empty()
        && let Some(p) = default_path.as_ref().filter(|p| p.exists())
    {
        ring.push_local(load_key_file(p)?);
    }
    if trust.any() {
        let kms = kms_connect(cli)?;
        // No KMS call here: an alias or key id is resolved only when a stanza could be
        // its key, so one unreachable region fails that stanza, not the whole command.
        for k in &trust.kms_keys {
            let key = KmsKey::trusted(&kms, k)?.with_max_decrypts(cli.kms_max_decrypts);
            ring.providers.push(Box::new(key));
        }
        if trust.kms_discovery {
            let d = KmsDiscovery::new(&kms, trust.kms_allow_accounts.clone())?;
            ring.providers
                .push(Box::new(d.with_max_decrypts(cli.kms_max_decrypts)));
        }
    }
    if ring.is_empty() {
        let shown = default_path.map_or_else(|| "(unknown)".into(), |p| p.display().to_string());
        return Err(Error::io(
            format!("loading the default key '{shown}'"),
            io::Error::new(
                io::ErrorKind::NotFound,
                "it does not exist; pass a key with -k KEYFILE or --kms-key KEY",
            ),
        ));
    }
    Ok(ring)
}

enum Input {
    Stdin,
    File(File, u64),
}

fn open_input(p: Option<&Path>) -> Result<Input> {
    match p {
        None => Ok(Input::Stdin),
        Some(p) if p.as_os_str() == "-" => Ok(Input::Stdin),
        Some(p) => {
            let shown = p.display().to_string();
            let f = File::open(p).map_err(|e| Error::io(format!("opening input '{shown}'"), e))?;
            let len = f
                .metadata()
                .map_err(|e| Error::io(format!("opening input '{shown}'"), e))?
                .len();
            Ok(Input::File(f, len))
        }
    }
}

fn same_file(input: Option<&Path>, output: Option<&Path>) -> bool {
    match (input, output) {
        (Some(i), Some(o)) if i.as_os_str() != "-" && o.as_os_str() != "-" => {
            match (std::fs::canonicalize(i), std::fs::canonicalize(o)) {
                (Ok(a), Ok(b)) => a == b,
                _ => false,
            }
        }
        _ => false,
    }
}

fn encrypt(cli: &Cli, a: &EncryptArgs) -> Outcome {
    let started = std::time::Instant::now();
    let suite = Suite::from_name(&a.suite)
        .ok_or_else(|| Error::InvalidArgument(format!("unknown suite '{}'", a.suite)))?;
    let cs = sealstream::size::parse_size(&a.chunk_size)
        .map_err(|e| Error::InvalidArgument(format!("--chunk-size: {e}")))?;
    if cs < u64::from(limits::MIN_CHUNK_SIZE) || cs > u64::from(limits::MAX_CHUNK_SIZE) {
        return Err(
            Error::InvalidArgument(format!("--chunk-size {cs} is outside 4KiB..16MiB")).into(),
        );
    }
    let context = parse_context(&a.context)?;
    let cache = cache_limits(a)?;
    let params = EncryptParams {
        suite,
        chunk_size: cs as u32,
        context,
        backend: backend(cli),
        engine: EngineOptions::default(),
    };
    a.batch.check()?;
    if a.batch.recursive {
        return recursive::encrypt(cli, a, params, cache);
    }
    if let Some(dir) = &a.batch.output_dir {
        if let Some(prefix) = s3::url_of(dir)? {
            return s3::encrypt_batch(cli, a, &prefix, params, cache);
        }
        a.object.require_s3()?;
        return encrypt_batch(cli, a, dir, params, cache);
    }
    let input_path = single_input(&a.inputs)?;
    if let Some(url) = a.output.as_deref().map(s3::url_of).transpose()?.flatten() {
        return Ok(s3::encrypt(cli, a, input_path, &url, params)?);
    }
    a.object.require_s3()?;
    if same_file(input_path, a.output.as_deref()) {
        return Err(Error::InvalidArgument("input and output are the same file".into()).into());
    }
    let input = open_input(input_path)?;
    let keys = encryption_keys(cli, &a.keys, &a.kms_keys)?;
    let sink = Sink::open(a.output.as_deref(), a.force, true)?;
    report::check_stdout_free(a.json, sink.is_stdout())?;
    let total = match &input {
        Input::File(_, len) => Some(*len),
        Input::Stdin => None,
    };
    if let Some(len) = total {
        sealstream::format::check_plaintext_len(len, params.chunk_size)?;
    }
    // Encrypt refuses a terminal output; a terminal input gets a hint, not a spinner.
    let ends = progress::Ends {
        input_is_terminal: matches!(input, Input::Stdin) && progress::stdin_input(cli.quiet),
        output_is_terminal: false,
    };
    let pb = progress::bar_between(total, cli.quiet, "encrypting", ends);
    let inc = |n: u64| pb.inc(n);
    let params = EncryptParams {
        engine: engine_opts(cli, Some(&inc)),
        ..params
    };
    let providers = keys.as_refs();
    let (dek, stanzas) = sealstream::keys::wrap_for_all(&providers, &params.context)?;
    let key_refs = report::key_refs(&stanzas);
    let r = sink.write_with(|w| match input {
        Input::Stdin => envelope::encrypt_with_data_key(io::stdin(), w, &dek, stanzas, &params),
        Input::File(f, _) => envelope::encrypt_with_data_key(f, w, &dek, stanzas, &params),
    });
    pb.finish_and_clear();
    let stats = r?;
    if a.json {
        let output = a.output.as_deref().map(|p| p.display().to_string());
        report::Report {
            plaintext_bytes: Some(stats.plaintext_bytes),
            encrypted_bytes: a
                .output
                .as_deref()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len()),
            suite: Some(params.suite.name()),
            chunk_size: Some(params.chunk_size),
            header_location: Some("file".into()),
            output,
            keys: key_refs,
            ..report::Report::new("encrypt", shown_input(input_path), started)
        }
        .emit()?;
    }
    Ok(())
}

/// An input as a result names it: its path, or `-` for stdin.
fn shown_input(p: Option<&Path>) -> String {
    p.map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

/// The one input of a single-file command (stdin when absent).
fn single_input(inputs: &[PathBuf]) -> Result<Option<&Path>> {
    if inputs.len() > 1 {
        return Err(Error::InvalidArgument(
            "several inputs need --output-dir DIR (one output file per input)".into(),
        ));
    }
    let p = inputs.first().map(PathBuf::as_path);
    if let Some(p) = p.filter(|p| p.is_dir()) {
        return Err(Error::InvalidArgument(format!(
            "'{}' is a directory; use --output-dir DIR to process the files in it",
            p.display()
        )));
    }
    Ok(p)
}

fn cache_limits(a: &EncryptArgs) -> Result<Option<CacheLimits>> {
    let Some(age) = a.cache_max_age else {
        return Ok(None);
    };
    let max_bytes = match &a.cache_max_bytes {
        Some(b) => sealstream::size::parse_size(b)
            .map_err(|e| Error::InvalidArgument(format!("--cache-max-bytes: {e}")))?,
        None => u64::MAX,
    };
    Ok(Some(CacheLimits {
        max_age: age,
        max_objects: a.cache_max_objects.unwrap_or(u64::from(u32::MAX)),
        max_bytes,
    }))
}

/// Engine threads per file in a batch: the cores shared among the files in flight.
fn batch_engine<'a>(
    cli: &Cli,
    jobs: usize,
    progress: &'a (dyn Fn(u64) + Sync),
) -> EngineOptions<'a> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    EngineOptions {
        threads: cli.threads.unwrap_or((cores / jobs.max(1)).max(1)),
        progress: Some(progress),
        ..EngineOptions::default()
    }
}

fn batch_total(jobs: &[batch::Job]) -> u64 {
    jobs.iter()
        .filter_map(|j| std::fs::metadata(&j.input).ok())
        .map(|m| m.len())
        .sum()
}

/// Reports each failure, then a summary; the first failure's exit code is the batch's.
/// With `--json` (`json` set), first one line per stored result, then one per failure.
fn batch_report(
    jobs: &[batch::Job],
    failures: Vec<(usize, Error)>,
    quiet: bool,
    verb: &str,
    json: Option<report::Batch>,
) -> Outcome {
    if let Some(b) = json {
        b.emit(jobs, &failures)?;
    }
    for (i, e) in &failures {
        eprintln!(
            "sealstream: error: {}: {}",
            sealstream::text::escape(&jobs[*i].input.display().to_string()),
            exit::message(e)
        );
    }
    match failures.first() {
        None => {
            note(quiet, &format!("{verb} {} file(s)", jobs.len()));
            Ok(())
        }
        Some((_, first)) => Err(Failure::BatchFailed {
            failed: failures.len(),
            total: jobs.len(),
            code: exit::code(first),
        }),
    }
}

fn encrypt_batch(
    cli: &Cli,
    a: &EncryptArgs,
    dir: &Path,
    params: EncryptParams<'_>,
    cache: Option<CacheLimits>,
) -> Outcome {
    if a.inputs.is_empty() {
        return Err(
            Error::InvalidArgument("--output-dir needs input files or directories".into()).into(),
        );
    }
    let jobs = batch::plan(&a.inputs, dir, &|n| format!("{n}.seal"))?;
    encrypt_jobs(cli, a, &jobs, params, cache)
}

/// Encrypts every job's input to its output (local files), `--jobs` at a time.
fn encrypt_jobs(
    cli: &Cli,
    a: &EncryptArgs,
    jobs: &[batch::Job],
    params: EncryptParams<'_>,
    cache: Option<CacheLimits>,
) -> Outcome {
    let keys = encryption_keys(cli, &a.keys, &a.kms_keys)?;
    let providers = keys.as_refs();
    let cache = cache.map(DataKeyCache::new);
    let pb = progress::bar(Some(batch_total(jobs)), cli.quiet, "encrypting");
    let inc = |n: u64| pb.inc(n);
    let params = EncryptParams {
        engine: batch_engine(cli, a.batch.jobs, &inc),
        ..params
    };
    let json = a.json.then(|| report::Batch::new("encrypt"));
    let failures = batch::run(jobs, a.batch.jobs, a.force, |job, f, w| {
        let started = std::time::Instant::now();
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        sealstream::format::check_plaintext_len(len, params.chunk_size)?;
        let (dek, stanzas) = match &cache {
            Some(c) => c.data_key(&providers, &params.context, len)?,
            None => sealstream::keys::wrap_for_all(&providers, &params.context)?,
        };
        let keys = report::key_refs(&stanzas);
        let stats = envelope::encrypt_with_data_key(f, w, &dek, stanzas, &params)?;
        if let Some(b) = &json {
            b.push(report::Report {
                plaintext_bytes: Some(stats.plaintext_bytes),
                keys,
                suite: Some(params.suite.name()),
                chunk_size: Some(params.chunk_size),
                header_location: Some("file".into()),
                ..report::Report::new("encrypt", job.input.display().to_string(), started)
                    .output(Some(&job.output))
            });
        }
        Ok(())
    });
    pb.finish_and_clear();
    batch_report(jobs, failures, cli.quiet, "encrypted", json)
}

fn decrypt_batch(cli: &Cli, a: &DecryptArgs, dir: &Path) -> Outcome {
    if a.inputs.is_empty() {
        return Err(
            Error::InvalidArgument("--output-dir needs input files or directories".into()).into(),
        );
    }
    let urls: Vec<s3::S3UrlOpt> = a
        .inputs
        .iter()
        .map(|p| s3::url_of(p))
        .collect::<Result<_>>()?;
    if urls.iter().any(Option::is_some) {
        let prefixes: Option<Vec<_>> = urls.into_iter().collect();
        let prefixes = prefixes.ok_or_else(|| {
            Error::InvalidArgument(
                "mix of s3:// and local inputs; decrypt them in separate runs".into(),
            )
        })?;
        return s3::decrypt_batch(cli, a, &prefixes, dir);
    }
    if a.range.is_some() {
        return Err(Error::InvalidArgument(
            "--range works on one file, not with --output-dir".into(),
        )
        .into());
    }
    let jobs = batch::plan(&a.inputs, dir, &|n| match n.strip_suffix(".seal") {
        Some(stem) if !stem.is_empty() => stem.to_string(),
        _ => format!("{n}.dec"),
    })?;
    decrypt_jobs(cli, a, &jobs)
}

/// Decrypts every job's input to its output (local files), `--jobs` at a time.
fn decrypt_jobs(cli: &Cli, a: &DecryptArgs, jobs: &[batch::Job]) -> Outcome {
    let expected = parse_context(&a.context)?;
    let keys = decryption_keys(cli, &a.keys, &a.kms)?;
    let providers = keys.as_refs();
    let be = backend(cli);
    let pb = progress::bar(Some(batch_total(jobs)), cli.quiet, "decrypting");
    let inc = |n: u64| pb.inc(n);
    let opts = batch_engine(cli, a.batch.jobs, &inc);
    let json = a.json.then(|| report::Batch::new("decrypt"));
    let failures = batch::run(jobs, a.batch.jobs, a.force, |job, mut f, w| {
        let started = std::time::Instant::now();
        let (header, _) = Header::read_from(&mut f)?;
        let cipher = envelope::unlock(&header, &providers, &expected, be)?;
        let stats = sealstream::engine::open(
            &cipher,
            header.chunk_size,
            f,
            w,
            sealstream::engine::OpenParams::default(),
            &opts,
        )?;
        if let Some(b) = &json {
            b.push(report::Report {
                plaintext_bytes: Some(stats.plaintext_bytes),
                suite: Some(header.suite.name()),
                chunk_size: Some(header.chunk_size),
                ..report::Report::new("decrypt", job.input.display().to_string(), started)
                    .output(Some(&job.output))
                    .with_keys(&header.stanzas)
            });
        }
        Ok(())
    });
    pb.finish_and_clear();
    batch_report(jobs, failures, cli.quiet, "decrypted", json)
}

fn decrypt(cli: &Cli, a: &DecryptArgs) -> CliResult {
    let started = std::time::Instant::now();
    let clean = |e: Error| (Failure::from(e), false);
    let expected = parse_context(&a.context).map_err(clean)?;
    let range = a
        .range
        .as_deref()
        .map(ByteRange::parse)
        .transpose()
        .map_err(clean)?;
    a.batch.check().map_err(clean)?;
    if a.batch.recursive {
        return recursive::decrypt(cli, a).map_err(|e| (e, false));
    }
    if let Some(dir) = &a.batch.output_dir {
        return decrypt_batch(cli, a, dir).map_err(|e| (e, false));
    }
    if let Some(url) = a
        .inputs
        .first()
        .filter(|_| a.inputs.len() == 1)
        .map(|p| s3::url_of(p))
        .transpose()
        .map_err(clean)?
        .flatten()
    {
        return s3::decrypt(cli, a, &url, expected, range);
    }
    let input_path = single_input(&a.inputs).map_err(clean)?;
    if same_file(input_path, a.output.as_deref()) {
        return Err(clean(Error::InvalidArgument(
            "input and output are the same file".into(),
        )));
    }
    let input = open_input(input_path).map_err(clean)?;
    let header_prefix = match &a.header_from {
        Some(p) => Some(read_header_file(p).map_err(clean)?),
        None => None,
    };
    if range.is_some() && matches!(input, Input::Stdin) {
        return Err(clean(Error::InvalidArgument(
            "--range needs a seekable INPUT file, not stdin".into(),
        )));
    }
    let keys = decryption_keys(cli, &a.keys, &a.kms).map_err(clean)?;
    let providers = keys.as_refs();
    let mut sink = Sink::open(a.output.as_deref(), a.force, false).map_err(clean)?;
    report::check_stdout_free(a.json, sink.is_stdout()).map_err(clean)?;
    let to_stdout = sink.is_streaming();
    let be = backend(cli);
    let mut json = report::Report::new("decrypt", shown_input(input_path), started);
    let mut ends = progress::Ends {
        input_is_terminal: false,
        output_is_terminal: sink.is_terminal(),
    };

    let mut wrote_any = false;
    let r = match input {
        Input::Stdin => {
            ends.input_is_terminal = progress::stdin_input(cli.quiet);
            let pb = progress::bar_between(None, cli.quiet, "decrypting", ends);
            let inc = |n: u64| pb.inc(n);
            let params = DecryptParams {
                expected_context: expected,
                backend: be,
                engine: engine_opts(cli, Some(&inc)),
            };
            let r = sink.write_with(|w| {
                let mut cw = CountingWriter {
                    inner: w,
                    wrote: &mut wrote_any,
                };
                let prefix = io::Cursor::new(header_prefix.unwrap_or_default());
                envelope::decrypt(prefix.chain(io::stdin()), &mut cw, &providers, &params)
            });
            pb.finish_and_clear();
            r
        }
        Input::File(f, len) => {
            // With --header-from, the input is the body alone: decrypt `header ‖ body`.
            let (mut f, len) = match header_prefix {
                Some(h) => {
                    let hl = h.len() as u64;
                    (Prefixed::new(h, f), len + hl)
                }
                None => (Prefixed::new(Vec::new(), f), len),
            };
            let (header, header_len) = Header::read_from(&mut f).map_err(clean)?;
            let cipher = envelope::unlock(&header, &providers, &expected, be).map_err(clean)?;
            json = json.with_keys(&header.stanzas);
            json.suite = Some(header.suite.name());
            json.chunk_size = Some(header.chunk_size);
            let total = len
                .checked_sub(header_len as u64)
                .map(|b| b.saturating_sub(b.div_ceil(u64::from(header.chunk_size) + 16) * 16));
            let pb = progress::bar_between(total, cli.quiet, "decrypting", ends);
            let inc = |n: u64| pb.inc(n);
            let opts = engine_opts(cli, Some(&inc));
            let r = sink.write_with(|w| {
                let mut cw = CountingWriter {
                    inner: w,
                    wrote: &mut wrote_any,
                };
                match range {
                    Some(rg) => range::decrypt_range(
                        &mut f,
                        header_len as u64,
                        header.chunk_size,
                        &cipher,
                        rg,
                        &mut cw,
                        &opts,
                    ),
                    None => sealstream::engine::open(
                        &cipher,
                        header.chunk_size,
                        &mut f,
                        &mut cw,
                        sealstream::engine::OpenParams::default(),
                        &opts,
                    ),
                }
            });
            pb.finish_and_clear();
            r
        }
    };
    let stats = r.map_err(|e| (Failure::from(e), to_stdout && wrote_any))?;
    if a.json {
        json.output = a.output.as_deref().map(|p| p.display().to_string());
        json.plaintext_bytes = Some(stats.plaintext_bytes);
        json.range = range_shown(range, stats.plaintext_bytes);
        json.duration_ms = started.elapsed().as_millis() as u64;
        json.emit().map_err(clean)?;
    }
    Ok(())
}

/// The `[first, last]` a `--range` served, from its plan and the bytes written.
fn range_shown(range: Option<ByteRange>, written: u64) -> Option<[u64; 2]> {
    let r = range?;
    let first = match r {
        ByteRange::Inclusive(a, _) | ByteRange::From(a) => a,
        // `-N`: where it starts depends on the file's length, not known here.
        ByteRange::Suffix(_) => return None,
    };
    (written > 0).then(|| [first, first + written - 1])
}

/// Reads a saved header from `p`: exactly one header and nothing after it (FORMAT.md
/// §15.2), read with a bound, so a whole sealstream file or a header with appended bytes is
/// refused instead of silently half-used.
fn read_header_file(p: &Path) -> Result<Vec<u8>> {
    let shown = p.display().to_string();
    let what = || format!("reading header file '{shown}'");
    let f = File::open(p).map_err(|e| Error::io(format!("opening header file '{shown}'"), e))?;
    let on_disk = f.metadata().map_err(|e| Error::io(what(), e))?.len();
    let mut bytes = Vec::new();
    f.take(u64::from(limits::MAX_HEADER_LEN) + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(what(), e))?;
    use sealstream::error::HeaderError::TrailingBytes;
    match Header::parse_exact(&bytes) {
        Ok(_) => Ok(bytes),
        Err(TrailingBytes { header_len, given }) => Err(Error::Header(TrailingBytes {
            header_len,
            given: given.max(on_disk),
        })),
        Err(e) => Err(Error::Header(e)),
    }
}

/// `prefix ‖ file` as one seekable stream: a header from elsewhere in front of a body.
struct Prefixed {
    prefix: Vec<u8>,
    file: File,
    pos: u64,
    file_len: u64,
}

impl Prefixed {
    fn new(prefix: Vec<u8>, file: File) -> Prefixed {
        let file_len = file.metadata().map_or(0, |m| m.len());
        Prefixed {
            prefix,
            file,
            pos: 0,
            file_len,
        }
    }
}

impl Read for Prefixed {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let plen = self.prefix.len() as u64;
        if self.pos < plen {
            let start = self.pos as usize;
            let n = buf.len().min(self.prefix.len() - start);
            buf[..n].copy_from_slice(&self.prefix[start..start + n]);
            self.pos += n as u64;
            if self.pos == plen {
                self.file.seek(io::SeekFrom::Start(0))?;
            }
            return Ok(n);
        }
        let n = self.file.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl io::Seek for Prefixed {
    fn seek(&mut self, to: io::SeekFrom) -> io::Result<u64> {
        let plen = self.prefix.len() as u64;
        let total = plen + self.file_len;
        let target = match to {
            io::SeekFrom::Start(n) => Some(n),
            io::SeekFrom::End(d) => total.checked_add_signed(d),
            io::SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before start"))?;
        if target >= plen {
            self.file.seek(io::SeekFrom::Start(target - plen))?;
        }
        self.pos = target;
        Ok(target)
    }
}

/// Remembers whether anything reached the writer, to warn about partial stdout output.
struct CountingWriter<'a, W: Write + ?Sized> {
    inner: &'a mut W,
    wrote: &'a mut bool,
}

impl<W: Write + ?Sized> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if n > 0 {
            *self.wrote = true;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn inspect(cli: &Cli, a: &InspectArgs) -> Outcome {
    if let Some(url) = a.input.as_deref().map(s3::url_of).transpose()?.flatten() {
        return s3::inspect(cli, a, &url);
    }
    let (header, header_len, total) = match open_input(a.input.as_deref())? {
        Input::File(mut f, len) => {
            let (h, hl) = Header::read_from(&mut f)?;
            (h, hl, len)
        }
        Input::Stdin => {
            progress::stdin_input(cli.quiet);
            let mut stdin = io::stdin().lock();
            let (h, hl) = Header::read_from(&mut stdin)?;
            let rest =
                io::copy(&mut stdin, &mut io::sink()).map_err(|e| Error::io("reading stdin", e))?;
            (h, hl, hl as u64 + rest)
        }
    };
    let checks = if a.verify {
        let keys = decryption_keys(cli, &a.keys, &a.kms)?;
        Some(envelope::verify_stanzas(&header, &keys.as_refs()))
    } else {
        None
    };
    if let Some(p) = &a.export_header {
        s3::export_header(p, &header)?;
    }
    let info = envelope::inspect(header, header_len as u64, Some(total));
    let text = if a.json {
        inspection_json(&info, checks.as_deref()).to_string() + "\n"
    } else {
        inspection_text(&info, checks.as_deref())
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing to stdout", e))?;
    verification_outcome(&info, checks.as_deref(), a.verify)
}

/// The exit status of `inspect [--verify]`: a stanza whose key was offered but failed is
/// an error; unmatched stanzas are not, unless nothing verified at all.
fn verification_outcome(
    info: &envelope::Inspection,
    checks: Option<&[envelope::StanzaCheck]>,
    verify: bool,
) -> Outcome {
    let failed: Vec<&Error> = checks
        .into_iter()
        .flatten()
        .filter_map(|c| match c {
            envelope::StanzaCheck::Failed(e) => Some(e),
            _ => None,
        })
        .collect();
    let verified = checks
        .into_iter()
        .flatten()
        .any(|c| matches!(c, envelope::StanzaCheck::Verified));
    match failed.first() {
        Some(e) => Err(Failure::StanzasFailedVerification {
            failed: failed.len(),
            total: info.header.stanzas.len(),
            code: exit::code(e),
        }),
        None if verify && !verified => Err(Error::NoMatchingKey {
            stanzas: info
                .header
                .stanzas
                .iter()
                .map(|s| format!("{}:{}", s.provider, s.key_id))
                .collect(),
            offered: vec![],
        }
        .into()),
        None => Ok(()),
    }
}

fn check_label(c: &envelope::StanzaCheck) -> (Option<bool>, Option<String>) {
    match c {
        envelope::StanzaCheck::Verified => (Some(true), None),
        envelope::StanzaCheck::NotChecked => (None, Some("no matching key offered".into())),
        envelope::StanzaCheck::Failed(e) => (Some(false), Some(exit::message(e))),
        // `StanzaCheck` is `#[non_exhaustive]`: an outcome this build does not know is
        // reported as unchecked rather than guessed.
        _ => (None, Some("check outcome unknown to this build".into())),
    }
}

/// The `inspect --json` object (schema documented in the README).
pub fn inspection_json(
    info: &envelope::Inspection,
    checks: Option<&[envelope::StanzaCheck]>,
) -> serde_json::Value {
    let h = &info.header;
    let ctx: serde_json::Map<String, serde_json::Value> = h
        .context
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let stanzas: Vec<serde_json::Value> = h
        .stanzas
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = serde_json::json!({"provider": s.provider, "key_id": s.key_id});
            if let Some(c) = checks.and_then(|c| c.get(i)) {
                let (ok, reason) = check_label(c);
                v["verified"] = serde_json::json!(ok);
                v["reason"] = serde_json::json!(reason);
            }
            v
        })
        .collect();
    let (chunk_count, plaintext_len, body_error) = match &info.layout {
        Some(Ok(l)) => (Some(l.chunk_count), Some(l.plaintext_len), None),
        Some(Err(e)) => (None, None, Some(e.clone())),
        None => (None, None, None),
    };
    serde_json::json!({
        "version": sealstream::format::VERSION,
        "suite": h.suite.name(),
        "chunk_size": h.chunk_size,
        "header_len": info.header_len,
        "chunk_count": chunk_count,
        "ciphertext_len": info.ciphertext_len,
        "plaintext_len": plaintext_len,
        "plaintext_len_authenticated": false,
        "body_error": body_error,
        "context": ctx,
        "stanzas": stanzas,
    })
}

fn inspection_text(
    info: &envelope::Inspection,
    checks: Option<&[envelope::StanzaCheck]>,
) -> String {
    let h = &info.header;
    let mut s = String::new();
    s.push_str(&format!(
        "format:         sealstream v{}\n",
        sealstream::format::VERSION
    ));
    s.push_str(&format!("suite:          {}\n", h.suite.name()));
    s.push_str(&format!("chunk size:     {} bytes\n", h.chunk_size));
    s.push_str(&format!("header length:  {} bytes\n", info.header_len));
    if let Some(t) = info.ciphertext_len {
        s.push_str(&format!("ciphertext:     {t} bytes\n"));
    }
    match &info.layout {
        Some(Ok(l)) => {
            s.push_str(&format!("chunks:         {}\n", l.chunk_count));
            s.push_str(&format!(
                "plaintext:      {} bytes (from the length; authenticated only on decrypt)\n",
                l.plaintext_len
            ));
        }
        Some(Err(e)) => s.push_str(&format!("body:           INVALID: {e}\n")),
        None => {}
    }
    if h.context.is_empty() {
        s.push_str("context:        (none)\n");
    } else {
        s.push_str("context:\n");
        for (k, v) in h.context.iter() {
            s.push_str(&format!(
                "  {}={}\n",
                sealstream::text::escape(k),
                sealstream::text::escape(v)
            ));
        }
    }
    s.push_str("stanzas:\n");
    for (i, st) in h.stanzas.iter().enumerate() {
        let status = match checks.and_then(|c| c.get(i)).map(check_label) {
            Some((Some(true), _)) => "  [verified]".to_string(),
            Some((Some(false), Some(r))) => format!("  [FAILED: {}]", sealstream::text::escape(&r)),
            Some((None, _)) => "  [not checked: no matching key]".to_string(),
            _ => String::new(),
        };
        s.push_str(&format!(
            "  {:<8} {}{status}\n",
            sealstream::text::escape(&st.provider),
            sealstream::text::escape(&st.key_id)
        ));
    }
    s
}

/// Replaces every stanza of the trusted KMS keys with a `ReEncrypt` to `dest`.
///
/// The data key stays inside KMS, so the key commitment cannot be checked here; a stanza
/// that did not belong to this file would still fail it on the next decrypt.
fn rotate_kms_stanzas(
    cli: &Cli,
    mut header: Header,
    from: &[String],
    dest: &str,
) -> Result<Header> {
    let kms = kms_connect(cli)?;
    let trusted: Vec<KmsKey> = from
        .iter()
        .map(|k| KmsKey::trusted(&kms, k))
        .collect::<Result<_>>()?;
    let mut rotated = 0;
    for st in header.stanzas.iter_mut() {
        let mut ours = false;
        for k in trusted.iter().filter(|k| k.matches(st)) {
            ours |= k.confirm(st)?;
        }
        if ours {
            *st = kms.re_encrypt(st, dest, &header.context)?;
            rotated += 1;
        }
    }
    if rotated == 0 {
        return Err(Error::InvalidArgument(format!(
            "--rotate-to-kms-key: the file has no stanza of {}",
            from.join(", ")
        )));
    }
    Ok(header)
}

fn rewrap(cli: &Cli, a: &RewrapArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let shown = a.file.display().to_string();
    let changes_keys = !(a.add.is_empty() && a.add_kms.is_empty() && a.remove.is_empty());
    if !changes_keys && a.rotate_to.is_none() {
        return Err(Error::InvalidArgument(
            "rewrap needs --add-key KEYFILE, --add-kms-key KEY, --remove-key KEYID or --rotate-to-kms-key KEY".into(),
        ));
    }
    if a.rotate_to.is_some() && a.kms.kms_keys.is_empty() {
        return Err(Error::InvalidArgument(
            "--rotate-to-kms-key needs the current KMS key(s) with --kms-key".into(),
        ));
    }
    if let Some(url) = s3::url_of(&a.file)? {
        return s3::rewrap(cli, a, &url, started);
    }
    let mut f = File::open(&a.file).map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
    check_rewrap_target(&shown, &meta, a.break_hard_links)?;
    let (header, _) = Header::read_from(&mut f)?;
    let new = rewrapped_header(cli, a, header)?;
    let bytes = new
        .to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    // Through a symlink, the real file is rewritten (the link stays a link).
    let mut out = output::AtomicFile::replacing(&a.file, &meta)?;
    {
        let file = out.file()?;
        let mut w = io::BufWriter::with_capacity(1 << 20, file);
        w.write_all(&bytes)
            .map_err(|e| Error::io(format!("writing '{shown}'"), e))?;
        // The body is copied byte for byte: rewrap never re-encrypts.
        io::copy(&mut (&mut f).take(u64::MAX), &mut w)
            .map_err(|e| Error::io(format!("copying the body of '{shown}'"), e))?;
        w.flush()
            .map_err(|e| Error::io(format!("writing '{shown}'"), e))?;
    }
    out.commit()?;
    report_rewrap(cli, &shown, &new);
    if a.json {
        report::Report {
            output: Some(shown.clone()),
            encrypted_bytes: std::fs::metadata(&a.file).ok().map(|m| m.len()),
            header_location: Some("file".into()),
            ..report::Report::new("rewrap", shown.clone(), started).with_keys(&new.stanzas)
        }
        .emit()?;
    }
    Ok(())
}

/// Local rewrap replaces the file with a new one: refuse what that would get wrong.
fn check_rewrap_target(shown: &str, meta: &std::fs::Metadata, break_links: bool) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    if !meta.is_file() {
        return Err(Error::io(
            format!("rewrapping '{shown}'"),
            io::Error::other("it is not a regular file; rewrap works on sealstream files"),
        ));
    }
    if meta.nlink() > 1 && !break_links {
        return Err(Error::io(
            format!("rewrapping '{shown}'"),
            io::Error::other(format!(
                "it has {} other hard link(s), which would keep the old header (and any key \
                 removed now); remove the other links first, or pass --break-hard-links to \
                 rewrap this name only",
                meta.nlink() - 1
            )),
        ));
    }
    Ok(())
}

fn report_rewrap(cli: &Cli, shown: &str, new: &Header) {
    note(
        cli.quiet,
        &format!(
            "rewrapped '{}': {} stanza(s): {}",
            sealstream::text::escape(shown),
            new.stanzas.len(),
            new.stanzas
                .iter()
                .map(|s| format!(
                    "{}:{}",
                    sealstream::text::escape(&s.provider),
                    sealstream::text::escape(&s.key_id)
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
}

/// `--remove-key` values as stanza names: one that names no stanza as given but refers to a
/// KMS key the way `--kms-key` does (an alias, a bare key id, an alias ARN) is resolved to
/// the key ARN the stanzas hold, with one `DescribeKey`. A value that still names no stanza
/// is left for the library to refuse, naming it.
fn removal_names(cli: &Cli, header: &Header, remove: &[String]) -> Result<Vec<String>> {
    let named = |r: &str| {
        header
            .stanzas
            .iter()
            .any(|s| s.key_id == r || format!("{}:{}", s.provider, s.key_id) == r)
    };
    let has_kms = header
        .stanzas
        .iter()
        .any(|s| s.provider == sealstream::kms::PROVIDER_ID);
    let mut kms = None;
    let mut out = Vec::with_capacity(remove.len());
    for r in remove {
        let kms_like = r.starts_with("alias/") || r.starts_with("arn:") || !r.contains(['/', ':']);
        if named(r) || !has_kms || !kms_like {
            out.push(r.clone());
            continue;
        }
        let k = match &kms {
            Some(k) => k,
            None => kms.insert(kms_connect(cli)?),
        };
        let arn = k.resolve_arn(r)?;
        out.push(if named(&arn) { arn } else { r.clone() });
    }
    Ok(out)
}

/// The header `rewrap` asks for: rotation via ReEncrypt, then added and removed keys.
fn rewrapped_header(cli: &Cli, a: &RewrapArgs, mut header: Header) -> Result<Header> {
    let changes_keys = !(a.add.is_empty() && a.add_kms.is_empty() && a.remove.is_empty());
    let keys = if changes_keys {
        decryption_keys(cli, &a.keys, &a.kms)?
    } else {
        Keyring::default()
    };
    let mut add = Keyring::default();
    load_local(&a.add, &mut add)?;
    if !a.add_kms.is_empty() {
        let kms = kms_connect(cli)?;
        for k in &a.add_kms {
            add.providers.push(Box::new(KmsKey::for_wrapping(&kms, k)));
        }
    }
    if let Some(dest) = &a.rotate_to {
        header = rotate_kms_stanzas(cli, header, &a.kms.kms_keys, dest)?;
    }
    if changes_keys {
        let remove = removal_names(cli, &header, &a.remove)?;
        envelope::rewrap(&header, &keys.as_refs(), &add.as_refs(), &remove)
    } else {
        Ok(header)
    }
}
