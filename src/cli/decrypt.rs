//! `sealstream decrypt`: one file or stdin (optionally a --range, or a body with
//! --header-from), a batch, a tree; the S3 side is in `s3.rs`.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::batch::{self, BatchArgs, batch_engine, batch_report, batch_total};
use super::exit::Failure;
use super::input::{Input, open_input, same_file, shown_input, single_input};
use super::keys::{KmsTrustArgs, decryption_keys};
use super::output::Sink;
use super::parse::parse_context;
use super::{Cli, CliResult, Outcome, engine_opts, help, progress, recursive, report, s3, values};
use sealstream::engine::{EngineOptions, StreamStats};
use sealstream::envelope::Unlocked;
use sealstream::error::{Error, Result};
use sealstream::format::{Header, limits};
use sealstream::range::ByteRange;

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
    #[arg(long, value_name = "START-END", allow_hyphen_values = true, value_parser = values::byte_range, help_heading = help::INPUT)]
    pub range: Option<ByteRange>,
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

/// `decrypt INPUT… --output-dir DIR`, from local files or S3 prefixes.
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
pub(super) fn decrypt_jobs(cli: &Cli, a: &DecryptArgs, jobs: &[batch::Job]) -> Outcome {
    let expected = parse_context(&a.context)?;
    let keys = decryption_keys(cli, &a.keys, &a.kms)?;
    let providers = keys.providers();
    let be = cli.backend;
    let pb = progress::bar(Some(batch_total(jobs)), cli.quiet, "decrypting");
    let inc = |n: u64| pb.inc(n);
    let opts = batch_engine(cli, a.batch.jobs, &inc);
    let json = a.json.then(|| report::Batch::new("decrypt"));
    let failures = batch::run(jobs, a.batch.jobs, a.force, |job, f, w| {
        let started = std::time::Instant::now();
        let src = Unlocked::new(f, None, &providers, &expected, be)?;
        let header = src.header();
        let done = json.is_some().then(|| report::Report {
            suite: Some(header.suite.name()),
            chunk_size: Some(header.chunk_size),
            ..report::Report::new("decrypt", job.input.display().to_string(), started)
                .output(Some(&job.output))
                .with_keys(&header.stanzas)
        });
        let stats = src.decrypt(w, &opts)?;
        if let (Some(b), Some(r)) = (&json, done) {
            b.push(report::Report {
                plaintext_bytes: Some(stats.plaintext_bytes),
                ..r
            });
        }
        Ok(())
    });
    pb.finish_and_clear();
    batch_report(jobs, failures, cli.quiet, "decrypted", json)
}

/// `decrypt`: picks the form (tree, batch, S3 object, file or stdin) and runs it.
pub(super) fn decrypt(cli: &Cli, a: &DecryptArgs) -> CliResult {
    let started = std::time::Instant::now();
    let clean = |e: Error| (Failure::from(e), false);
    let expected = parse_context(&a.context).map_err(clean)?;
    let range = a.range;
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
    let detached = match &a.header_from {
        Some(p) => Some(read_header_file(p).map_err(clean)?),
        None => None,
    };
    if range.is_some() && matches!(input, Input::Stdin) {
        return Err(clean(Error::InvalidArgument(
            "--range needs a seekable INPUT file, not stdin".into(),
        )));
    }
    let keys = decryption_keys(cli, &a.keys, &a.kms).map_err(clean)?;
    let providers = keys.providers();
    let mut sink = Sink::open(a.output.as_deref(), a.force, false).map_err(clean)?;
    report::check_stdout_free(a.json, sink.is_stdout()).map_err(clean)?;
    let to_stdout = sink.is_streaming();
    let be = cli.backend;
    let mut ends = progress::Ends {
        input_is_terminal: false,
        output_is_terminal: sink.is_terminal(),
    };
    // The library reads the header (in front of the body, or --header-from's), unlocks it
    // and decrypts; this only reports.
    let (header, (r, wrote_any)) = match input {
        Input::Stdin => {
            ends.input_is_terminal = progress::stdin_input(cli.quiet);
            let src =
                Unlocked::new(io::stdin(), detached, &providers, &expected, be).map_err(clean)?;
            let header = src.header().clone();
            (
                header,
                write_out(cli, sink, None, ends, |w, o| src.decrypt(w, o)),
            )
        }
        Input::File(f, len) => {
            let src = Unlocked::new(f, detached, &providers, &expected, be).map_err(clean)?;
            let header = src.header().clone();
            // The bar's total is the plaintext length the input's length implies (a body
            // of impossible length fails in the decryption, the bar just has no total).
            let total = len
                .and_then(|l| src.layout(l).ok())
                .map(|l| l.plaintext_len);
            let r = write_out(cli, sink, total, ends, |w, o| match range {
                Some(rg) => src.decrypt_range(rg, w, o),
                None => src.decrypt(w, o),
            });
            (header, r)
        }
    };
    let stats = r.map_err(|e| (Failure::from(e), to_stdout && wrote_any))?;
    if a.json {
        let mut json = report::Report::new("decrypt", shown_input(input_path), started)
            .with_keys(&header.stanzas);
        json.suite = Some(header.suite.name());
        json.chunk_size = Some(header.chunk_size);
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
fn read_header_file(p: &Path) -> Result<Header> {
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
        Ok(header) => Ok(header),
        Err(TrailingBytes { header_len, given }) => Err(Error::Header(TrailingBytes {
            header_len,
            given: given.max(on_disk),
        })),
        Err(e) => Err(Error::Header(e)),
    }
}

/// Runs `decrypt` into `sink` behind a progress bar of `total` bytes, with the engine
/// options of the global flags; also says whether anything reached the sink (to warn about
/// partial stdout output).
fn write_out(
    cli: &Cli,
    sink: Sink,
    total: Option<u64>,
    ends: progress::Ends,
    decrypt: impl FnOnce(&mut dyn Write, &EngineOptions<'_>) -> Result<StreamStats>,
) -> (Result<StreamStats>, bool) {
    let pb = progress::bar_between(total, cli.quiet, "decrypting", ends);
    let inc = |n: u64| pb.inc(n);
    let opts = engine_opts(cli, Some(&inc));
    let mut wrote = false;
    let r = sink.write_with(|w| {
        let mut cw = CountingWriter {
            inner: w,
            wrote: &mut wrote,
        };
        decrypt(&mut cw, &opts)
    });
    pb.finish_and_clear();
    (r, wrote)
}

/// Remembers whether anything reached the writer, to warn about partial stdout output.
pub(super) struct CountingWriter<'a, W: Write + ?Sized> {
    pub(super) inner: &'a mut W,
    pub(super) wrote: &'a mut bool,
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
