//! `sealstream encrypt`: one file or stdin, a batch (--output-dir), a tree (--recursive),
//! to local files or S3 (the S3 side is in `s3.rs`).

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::batch::{self, BatchArgs, batch_engine, batch_report, batch_total};
use super::input::{Input, open_input, same_file, shown_input, single_input};
use super::keys::encryption_keys;
use super::output::Sink;
use super::parse::{self, parse_context};
use super::{Cli, Outcome, attributes, engine_opts, help, progress, recursive, report, s3, values};
use sealstream::engine::EngineOptions;
use sealstream::envelope::{self, EncryptParams};
use sealstream::error::Error;
use sealstream::format::Suite;
use sealstream::keys::cache::{CacheLimits, DataKeyCache};

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
    #[arg(long, default_value = "aes-256-gcm", value_parser = values::suite(), help_heading = help::FORMAT)]
    pub suite: Suite,
    /// Plaintext bytes per chunk, 4KiB..16MiB (memory use is about (2×threads+2)×max(1MiB, SIZE)).
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = values::chunk_size, help_heading = help::FORMAT)]
    pub chunk_size: u32,
    /// Reuse one data key for several objects of a batch for at most this long (e.g. 30s, 5m,
    /// 1h30m); enables data-key caching. Each object still gets its own salt and payload key.
    #[arg(long, value_name = "DURATION", value_parser = parse::parse_duration, help_heading = help::CACHE)]
    pub cache_max_age: Option<Duration>,
    /// With --cache-max-age: at most this many objects per data key.
    #[arg(long, value_name = "N", requires = "cache_max_age", help_heading = help::CACHE)]
    pub cache_max_objects: Option<u64>,
    /// With --cache-max-age: at most this many plaintext bytes per data key (e.g. 100GiB).
    #[arg(long, value_name = "SIZE", requires = "cache_max_age", value_parser = values::bytes, help_heading = help::CACHE)]
    pub cache_max_bytes: Option<u64>,
    /// Attributes of the stored objects (S3 outputs).
    #[command(flatten)]
    pub object: attributes::ObjectArgs,
    /// Print one JSON object per result on stdout (JSON Lines with --output-dir, failures
    /// included): sizes, keys, object URL, ETag, version id, header location, duration.
    /// Needs an output other than stdout.
    #[arg(long, help_heading = help::OUTPUT)]
    pub json: bool,
}

/// `encrypt`: picks the form (tree, batch, S3 object, file or stdin) and runs it.
pub(super) fn encrypt(cli: &Cli, a: &EncryptArgs) -> Outcome {
    let started = std::time::Instant::now();
    let context = parse_context(&a.context)?;
    let cache = cache_limits(a);
    let params = EncryptParams {
        suite: a.suite,
        chunk_size: a.chunk_size,
        context,
        backend: cli.backend,
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
        Input::File(_, len) => *len,
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
    let providers = keys.providers();
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

/// The data-key cache `--cache-max-*` asks for (none without `--cache-max-age`).
fn cache_limits(a: &EncryptArgs) -> Option<CacheLimits> {
    let age = a.cache_max_age?;
    Some(CacheLimits {
        max_age: age,
        max_objects: a.cache_max_objects.unwrap_or(u64::from(u32::MAX)),
        max_bytes: a.cache_max_bytes.unwrap_or(u64::MAX),
    })
}

/// `encrypt INPUT… --output-dir DIR` to local files.
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
pub(super) fn encrypt_jobs(
    cli: &Cli,
    a: &EncryptArgs,
    jobs: &[batch::Job],
    params: EncryptParams<'_>,
    cache: Option<CacheLimits>,
) -> Outcome {
    let keys = encryption_keys(cli, &a.keys, &a.kms_keys)?;
    let providers = keys.providers();
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
