//! The `sealstream` command line: parses arguments, calls the library, reports.
//!
//! Nothing here does cryptography; it maps flags to [`crate::envelope`] calls, picks input
//! and output streams, and turns errors into messages and exit codes.

pub mod output;
pub mod progress;

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};

use crate::engine::EngineOptions;
use crate::envelope::{self, DecryptParams, EncryptParams};
use crate::error::{Error, Result};
use crate::format::{Context, Header, Suite, limits};
use crate::keys::KeyProvider;
use crate::keys::local::{self, LocalKey};
use crate::primitives::aead::Backend;
use crate::range::{self, ByteRange};
use output::Sink;

const EXIT_CODES: &str = "\
Exit codes:
  0  success
  2  usage error (bad option, unsatisfiable range)
  3  I/O error (missing input, unwritable output, output exists without --force, bad key file)
  4  authentication failure (tampered or truncated data, wrong key, wrong or missing context,
     key-commitment mismatch, malformed header)
  5  key-service error (KMS)
  6  storage error (S3)";

/// Envelope encryption for very large files: STREAM-chunked AEAD on all cores.
#[derive(Debug, Parser)]
#[command(name = "sealstream", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    /// Do not show a progress bar or notes on stderr (errors are still printed).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Worker threads for chunk crypto (default: one per core).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,
    /// AEAD implementation for the body: ring (fastest here) or rustcrypto (pure Rust).
    #[arg(long, global = true, value_name = "NAME", default_value = "ring", value_parser = ["ring", "rustcrypto"])]
    pub backend: String,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new local key-encryption key (mode 0600, never overwrites).
    Keygen {
        /// Where to write the key (absent or '-' = stdout).
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Encrypt INPUT (default stdin) to OUTPUT (default stdout).
    #[command(after_help = EXIT_CODES)]
    Encrypt(EncryptArgs),
    /// Decrypt INPUT (default stdin) to OUTPUT (default stdout); only authenticated data is written.
    #[command(after_help = EXIT_CODES)]
    Decrypt(DecryptArgs),
    /// Show a file's header and layout (no key needed; lengths are unauthenticated).
    Inspect {
        /// File to inspect (absent or '-' = stdin).
        input: Option<PathBuf>,
        /// Print one JSON object (schema in README).
        #[arg(long)]
        json: bool,
    },
    /// Change which keys can open FILE without touching its body (atomic replace).
    #[command(after_help = EXIT_CODES)]
    Rewrap(RewrapArgs),
}

/// `encrypt` options.
#[derive(Debug, Args)]
pub struct EncryptArgs {
    /// File to encrypt (absent or '-' = stdin).
    pub input: Option<PathBuf>,
    /// Where to write (absent or '-' = stdout; never a terminal).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<PathBuf>,
    /// Local key file to wrap the data key for (repeat for several). Default: the embedded
    /// default key ($SEALSTREAM_HOME/local.key or ~/.config/sealstream/local.key), created
    /// on first use.
    #[arg(short = 'k', long = "key", value_name = "KEYFILE")]
    pub keys: Vec<PathBuf>,
    /// Encryption context pair, bound to the data (repeatable).
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Body cipher suite.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305"])]
    pub suite: String,
    /// Plaintext bytes per chunk, 4KiB..16MiB (memory use is about (2×threads+2)×max(1MiB, SIZE)).
    #[arg(long, value_name = "SIZE", default_value = "64KiB")]
    pub chunk_size: String,
    /// Replace OUTPUT if it exists.
    #[arg(short, long)]
    pub force: bool,
}

/// `decrypt` options.
#[derive(Debug, Args)]
pub struct DecryptArgs {
    /// File to decrypt (absent or '-' = stdin).
    pub input: Option<PathBuf>,
    /// Where to write the plaintext (absent or '-' = stdout).
    #[arg(short, long, value_name = "OUTPUT")]
    pub output: Option<PathBuf>,
    /// Local key file(s) to try (default: the embedded default key).
    #[arg(short = 'k', long = "key", value_name = "KEYFILE")]
    pub keys: Vec<PathBuf>,
    /// Context pair the file must carry (repeatable); a missing or different pair fails.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE")]
    pub context: Vec<String>,
    /// Decrypt only this plaintext byte range: START-END (inclusive), START- or -N.
    /// Bounds accept KiB/MiB/GiB and sums (1GiB+10). INPUT must be a file.
    #[arg(long, value_name = "START-END", allow_hyphen_values = true)]
    pub range: Option<String>,
    /// Replace OUTPUT if it exists.
    #[arg(short, long)]
    pub force: bool,
}

/// `rewrap` options.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The encrypted file to rewrite in place.
    pub file: PathBuf,
    /// Key file that can open the file now (default: the embedded default key).
    #[arg(short = 'k', long = "key", value_name = "KEYFILE")]
    pub keys: Vec<PathBuf>,
    /// Key file to add a wrapped copy of the data key for (repeatable).
    #[arg(long = "add-key", value_name = "KEYFILE")]
    pub add: Vec<PathBuf>,
    /// Key id (as shown by `inspect`) whose stanza to remove (repeatable).
    #[arg(long = "remove-key", value_name = "KEYID")]
    pub remove: Vec<String>,
}

/// Runs the CLI and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    output::install_signal_cleanup();
    match run(&cli) {
        Ok(()) => 0,
        Err((e, stdout_dirty)) => {
            eprintln!("sealstream: error: {e}");
            if stdout_dirty {
                eprintln!("sealstream: the output written to stdout is incomplete; discard it");
            }
            e.exit_code()
        }
    }
}

type CliResult = std::result::Result<(), (Error, bool)>;

fn run(cli: &Cli) -> CliResult {
    let clean = |e: Error| (e, false);
    match &cli.command {
        Command::Keygen { output } => keygen(output.as_deref(), cli.quiet).map_err(clean),
        Command::Encrypt(a) => encrypt(cli, a).map_err(clean),
        Command::Decrypt(a) => decrypt(cli, a),
        Command::Inspect { input, json } => inspect(input.as_deref(), *json).map_err(clean),
        Command::Rewrap(a) => rewrap(cli, a).map_err(clean),
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
            key.save_new(p)?;
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

/// Parses `-c KEY=VALUE` flags into a context.
pub fn parse_context(pairs: &[String]) -> Result<Context> {
    let mut kv = Vec::with_capacity(pairs.len());
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("context '{p}' is not KEY=VALUE")))?;
        kv.push((k.to_string(), v.to_string()));
    }
    Context::from_pairs(kv)
}

fn load_keys(paths: &[PathBuf], create_default: bool, quiet: bool) -> Result<Vec<LocalKey>> {
    if !paths.is_empty() {
        return paths.iter().map(|p| LocalKey::load(p)).collect();
    }
    if create_default {
        let (key, created) = local::load_or_create_default()?;
        if let Some(p) = created {
            note(
                quiet,
                &format!(
                    "created the default local key {} at '{}'. Back it up: without it your files cannot be decrypted.",
                    key.id(),
                    p.display()
                ),
            );
        }
        return Ok(vec![key]);
    }
    let path = local::default_key_path()?;
    if !path.exists() {
        return Err(Error::io(
            format!("loading the default key '{}'", path.display()),
            io::Error::new(
                io::ErrorKind::NotFound,
                "it does not exist; pass the key with -k KEYFILE",
            ),
        ));
    }
    Ok(vec![LocalKey::load(&path)?])
}

fn as_providers(keys: &[LocalKey]) -> Vec<&dyn KeyProvider> {
    keys.iter().map(|k| k as &dyn KeyProvider).collect()
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

fn encrypt(cli: &Cli, a: &EncryptArgs) -> Result<()> {
    let suite = Suite::from_name(&a.suite)
        .ok_or_else(|| Error::Usage(format!("unknown suite '{}'", a.suite)))?;
    let cs = crate::size::parse_size(&a.chunk_size)
        .map_err(|e| Error::Usage(format!("--chunk-size: {e}")))?;
    if cs < u64::from(limits::MIN_CHUNK_SIZE) || cs > u64::from(limits::MAX_CHUNK_SIZE) {
        return Err(Error::Usage(format!(
            "--chunk-size {cs} is outside 4KiB..16MiB"
        )));
    }
    let context = parse_context(&a.context)?;
    if same_file(a.input.as_deref(), a.output.as_deref()) {
        return Err(Error::Usage("input and output are the same file".into()));
    }
    let input = open_input(a.input.as_deref())?;
    let keys = load_keys(&a.keys, true, cli.quiet)?;
    let sink = Sink::open(a.output.as_deref(), a.force, true)?;
    let total = match &input {
        Input::File(_, len) => Some(*len),
        Input::Stdin => None,
    };
    let pb = progress::bar(total, cli.quiet, "encrypting");
    let inc = |n: u64| pb.inc(n);
    let params = EncryptParams {
        suite,
        chunk_size: cs as u32,
        context,
        backend: backend(cli),
        engine: engine_opts(cli, Some(&inc)),
    };
    let providers = as_providers(&keys);
    let r = sink.write_with(|w| match input {
        Input::Stdin => envelope::encrypt(io::stdin(), w, &providers, &params),
        Input::File(f, _) => envelope::encrypt(f, w, &providers, &params),
    });
    pb.finish_and_clear();
    r.map(|_| ())
}

fn decrypt(cli: &Cli, a: &DecryptArgs) -> CliResult {
    let clean = |e: Error| (e, false);
    let expected = parse_context(&a.context).map_err(clean)?;
    let range = a
        .range
        .as_deref()
        .map(ByteRange::parse)
        .transpose()
        .map_err(clean)?;
    if same_file(a.input.as_deref(), a.output.as_deref()) {
        return Err(clean(Error::Usage(
            "input and output are the same file".into(),
        )));
    }
    let input = open_input(a.input.as_deref()).map_err(clean)?;
    if range.is_some() && matches!(input, Input::Stdin) {
        return Err(clean(Error::Usage(
            "--range needs a seekable INPUT file, not stdin".into(),
        )));
    }
    let keys = load_keys(&a.keys, false, cli.quiet).map_err(clean)?;
    let providers = as_providers(&keys);
    let sink = Sink::open(a.output.as_deref(), a.force, false).map_err(clean)?;
    let to_stdout = sink.is_stdout();
    let be = backend(cli);

    let mut wrote_any = false;
    let r = match input {
        Input::Stdin => {
            let pb = progress::bar(None, cli.quiet, "decrypting");
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
                envelope::decrypt(io::stdin(), &mut cw, &providers, &params)
            });
            pb.finish_and_clear();
            r
        }
        Input::File(mut f, len) => {
            let (header, header_len) = Header::read_from(&mut f).map_err(clean)?;
            let cipher = envelope::unlock(&header, &providers, &expected, be).map_err(clean)?;
            let total = len
                .checked_sub(header_len as u64)
                .map(|b| b.saturating_sub(b.div_ceil(u64::from(header.chunk_size) + 16) * 16));
            let pb = progress::bar(total, cli.quiet, "decrypting");
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
                    None => crate::engine::open(
                        &cipher,
                        header.chunk_size,
                        &mut f,
                        &mut cw,
                        crate::engine::OpenParams::default(),
                        &opts,
                    ),
                }
            });
            pb.finish_and_clear();
            r
        }
    };
    r.map(|_| ()).map_err(|e| (e, to_stdout && wrote_any))
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

fn inspect(input: Option<&Path>, json: bool) -> Result<()> {
    let (header, header_len, total) = match open_input(input)? {
        Input::File(mut f, len) => {
            let (h, hl) = Header::read_from(&mut f)?;
            (h, hl, len)
        }
        Input::Stdin => {
            let mut stdin = io::stdin().lock();
            let (h, hl) = Header::read_from(&mut stdin)?;
            let rest =
                io::copy(&mut stdin, &mut io::sink()).map_err(|e| Error::io("reading stdin", e))?;
            (h, hl, hl as u64 + rest)
        }
    };
    let info = envelope::inspect(header, header_len as u64, Some(total));
    let text = if json {
        inspection_json(&info).to_string() + "\n"
    } else {
        inspection_text(&info)
    };
    io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(|e| Error::io("writing to stdout", e))
}

/// The `inspect --json` object (schema documented in the README).
pub fn inspection_json(info: &envelope::Inspection) -> serde_json::Value {
    let h = &info.header;
    let ctx: serde_json::Map<String, serde_json::Value> = h
        .context
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::String(v.to_string())))
        .collect();
    let stanzas: Vec<serde_json::Value> = h
        .stanzas
        .iter()
        .map(|s| serde_json::json!({"provider": s.provider, "key_id": s.key_id}))
        .collect();
    let (chunk_count, plaintext_len, body_error) = match &info.layout {
        Some(Ok(l)) => (Some(l.chunk_count), Some(l.plaintext_len), None),
        Some(Err(e)) => (None, None, Some(e.clone())),
        None => (None, None, None),
    };
    serde_json::json!({
        "version": crate::format::VERSION,
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

fn inspection_text(info: &envelope::Inspection) -> String {
    let h = &info.header;
    let mut s = String::new();
    s.push_str(&format!(
        "format:         sealstream v{}\n",
        crate::format::VERSION
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
            s.push_str(&format!("  {k}={v}\n"));
        }
    }
    s.push_str("stanzas:\n");
    for st in &h.stanzas {
        s.push_str(&format!("  {:<8} {}\n", st.provider, st.key_id));
    }
    s
}

fn rewrap(cli: &Cli, a: &RewrapArgs) -> Result<()> {
    let shown = a.file.display().to_string();
    if a.add.is_empty() && a.remove.is_empty() {
        return Err(Error::Usage(
            "rewrap needs --add-key KEYFILE and/or --remove-key KEYID".into(),
        ));
    }
    let keys = load_keys(&a.keys, false, cli.quiet)?;
    let add: Vec<LocalKey> = a
        .add
        .iter()
        .map(|p| LocalKey::load(p))
        .collect::<Result<_>>()?;
    let mut f = File::open(&a.file).map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
    let (header, _) = Header::read_from(&mut f)?;
    let new = envelope::rewrap(
        &header,
        &as_providers(&keys),
        &as_providers(&add),
        &a.remove,
    )?;
    let bytes = new
        .to_bytes()
        .map_err(|e| Error::Usage(format!("cannot write this header: {e}")))?;
    let mut out = output::AtomicFile::create(&a.file, true)?;
    {
        let file = out.file()?;
        file.set_permissions(meta.permissions())
            .map_err(|e| Error::io(format!("writing '{shown}'"), e))?;
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
    note(
        cli.quiet,
        &format!(
            "rewrapped '{}': {} stanza(s): {}",
            shown,
            new.stanzas.len(),
            new.stanzas
                .iter()
                .map(|s| format!("{}:{}", s.provider, s.key_id))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok(())
}
