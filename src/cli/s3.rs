//! The S3 side of the commands: `encrypt -o s3://…`, `decrypt s3://…`, `inspect s3://…`,
//! `rewrap s3://…`. Argument handling and reporting only; the work is in [`sealstream::s3`].

use std::io::{self, Write};
use std::path::Path;

use super::batch::{batch_engine, batch_report, batch_total};
use super::decrypt::{CountingWriter, DecryptArgs};
use super::encrypt::EncryptArgs;
use super::input::{Input, open_input, shown_input};
use super::inspect::{InspectArgs, inspection_report, inspection_text, verification_outcome};
use super::keys::{decryption_keys, encryption_keys};
use super::output::{AtomicFile, Sink};
use super::rewrap::report_rewrap;
use super::{CliResult, engine_opts, note, progress};
use sealstream::envelope::{self, EncryptParams, Opening, Sealing};
use sealstream::error::{Error, Result, Service, ServiceErrorKind};
use sealstream::format::{Context, body_len_for};
use sealstream::keys;
use sealstream::range::ByteRange;
use sealstream::s3::blocking::{GetOptions, PutOptions, S3};
use sealstream::s3::{CompanionCleanup, HeaderLocation, S3Settings, S3Url};

/// The S3 handles this process created, so the Ctrl-C/SIGTERM handler can abort their
/// uploads ([`S3::abort_all`]) before it exits. The CLI's own state: the library keeps
/// the live uploads in each handle.
static HANDLES: std::sync::Mutex<Vec<S3>> = std::sync::Mutex::new(Vec::new());

/// Aborts the multipart uploads of every handle this process created and deletes the
/// companion objects they wrote (the signal handler calls this before exiting).
pub(super) fn abort_uploads() {
    let handles = match HANDLES.lock() {
        Ok(h) => h.clone(),
        Err(_) => return,
    };
    for h in handles {
        h.abort_all();
    }
}

/// What the user can do about an S3 failure, by error code or kind, in terms of this
/// CLI's flags: appended to the library's message (which names no flag).
fn hint(e: Error) -> Error {
    let Error::Storage(se) = e else { return e };
    if se.service() != Service::S3 {
        return Error::Storage(se);
    }
    let by_code = match se.code() {
        Some("NoSuchBucket") => Some("; create the bucket or fix its name"),
        Some("NoSuchKey" | "NotFound") => Some("; check the object key"),
        Some(
            "AccessDenied" | "AllAccessDisabled" | "InvalidAccessKeyId" | "SignatureDoesNotMatch",
        ) => Some(
            "; check the credentials (--profile, AWS_*) and their S3 permissions on this bucket",
        ),
        Some("PermanentRedirect" | "AuthorizationHeaderMalformed") => {
            Some("; the bucket is in another region; pass --region or set AWS_REGION")
        }
        Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout") => Some(
            "; the service kept failing after retries; try again later, lower --concurrency or raise --s3-max-attempts",
        ),
        Some("PreconditionFailed") => {
            Some("; the object changed while sealstream was working on it")
        }
        Some(_) => Some("; see the S3 documentation for this error code"),
        None => None,
    };
    let suffix = match by_code {
        Some(h) => h,
        None => match se.kind() {
            ServiceErrorKind::Timeout => {
                ", or raise --s3-read-timeout / --s3-timeout / --s3-connect-timeout"
            }
            ServiceErrorKind::Credentials if se.message().starts_with("no AWS credentials") => {
                ", or pass --profile NAME for a configured profile"
            }
            _ => "",
        },
    };
    let msg = format!("{}{suffix}", se.message());
    Error::Storage(se.with_message(msg))
}

/// An optional S3 URL (one per command-line input).
pub(super) type S3UrlOpt = Option<S3Url>;

/// `Some(url)` if `p` is an `s3://` URL (validated), `None` for a local path.
pub(super) fn url_of(p: &Path) -> Result<Option<S3Url>> {
    match p.to_str() {
        Some(s) if S3Url::is_s3(s) => S3Url::parse(s).map(Some),
        _ => Ok(None),
    }
}

/// The shortest timeout the S3 options take (shorter values are raised to it, as `0` always was).
const ONE_SECOND: std::time::Duration = std::time::Duration::from_secs(1);

/// The global S3 options as library settings (the CLI's `connect` and `serve` both take
/// them from this); their bounds were checked when clap parsed them (`values.rs`).
pub(super) fn settings(cli: &super::Cli) -> Result<S3Settings> {
    settings_for(&Upstream::of(cli), cli.quiet)
}

/// The global options that configure the upstream S3 and KMS clients, apart from the
/// parsed command line: `serve` also takes them from its config file
/// (src/cli/serve_config.rs), and every command turns them into settings here, once.
#[derive(Debug, Clone)]
pub(super) struct Upstream {
    /// `--region`.
    pub region: Option<String>,
    /// `--profile`.
    pub profile: Option<String>,
    /// `--endpoint-url`.
    pub endpoint_url: Option<String>,
    /// `--ca-bundle` (AWS_CA_BUNDLE).
    pub ca_bundle: Option<std::path::PathBuf>,
    /// `--kms-max-attempts`.
    pub kms_max_attempts: u32,
    /// `--kms-timeout`.
    pub kms_timeout: std::time::Duration,
    /// `--kms-max-decrypts`.
    pub kms_max_decrypts: usize,
    /// `--concurrency`.
    pub concurrency: usize,
    /// `--part-size`.
    pub part_size: u64,
    /// `--s3-max-attempts`.
    pub s3_max_attempts: u32,
    /// `--s3-timeout`.
    pub s3_timeout: std::time::Duration,
    /// `--s3-connect-timeout`.
    pub s3_connect_timeout: std::time::Duration,
    /// `--s3-read-timeout`.
    pub s3_read_timeout: std::time::Duration,
}

impl Upstream {
    /// The command line's values (flags, their environment variables, defaults).
    pub(super) fn of(cli: &super::Cli) -> Upstream {
        Upstream {
            region: cli.region.clone(),
            profile: cli.profile.clone(),
            endpoint_url: cli.endpoint_url.clone(),
            ca_bundle: cli.ca_bundle.clone(),
            kms_max_attempts: cli.kms_max_attempts,
            kms_timeout: cli.kms_timeout,
            kms_max_decrypts: cli.kms_max_decrypts,
            concurrency: cli.concurrency,
            part_size: cli.part_size,
            s3_max_attempts: cli.s3_max_attempts,
            s3_timeout: cli.s3_timeout,
            s3_connect_timeout: cli.s3_connect_timeout,
            s3_read_timeout: cli.s3_read_timeout,
        }
    }

    /// The KMS call bound as the settings take it (at least a second, as the S3 ones).
    pub(super) fn kms_operation_timeout(&self) -> std::time::Duration {
        self.kms_timeout.max(ONE_SECOND)
    }
}

/// [`settings`] from already resolved upstream options; `quiet` silences retry notes.
pub(super) fn settings_for(u: &Upstream, quiet: bool) -> Result<S3Settings> {
    Ok(S3Settings {
        region: u.region.clone(),
        profile: u.profile.clone(),
        max_attempts: u.s3_max_attempts,
        concurrency: u.concurrency,
        part_size: u.part_size,
        connect_timeout: u.s3_connect_timeout.max(ONE_SECOND),
        read_timeout: u.s3_read_timeout.max(ONE_SECOND),
        operation_timeout: u.s3_timeout.max(ONE_SECOND),
        retry_notes: !quiet,
        // `--endpoint-url` wins over AWS_ENDPOINT_URL_S3 and AWS_ENDPOINT_URL.
        endpoint_url: u.endpoint_url.clone(),
        ca_bundle: u.ca_bundle.clone(),
        ..S3Settings::default()
    })
}

/// Connects with the global S3 options.
pub(super) fn connect(cli: &super::Cli) -> Result<S3> {
    let s3 = S3::connect(settings(cli)?).map_err(hint)?;
    if let Ok(mut h) = HANDLES.lock() {
        h.push(s3.clone());
    }
    Ok(s3)
}

/// `encrypt INPUT -o s3://bucket/key`.
pub(super) fn encrypt(
    cli: &super::Cli,
    a: &EncryptArgs,
    input_path: Option<&Path>,
    url: &S3Url,
    params: EncryptParams<'_>,
) -> Result<()> {
    let started = std::time::Instant::now();
    url.require_object()?;
    let s3 = connect(cli)?;
    // Opened once: a FIFO's writer would see its reader go away if it were reopened.
    let input = open_input(input_path)?;
    let plaintext_len = match &input {
        Input::File(_, len) => *len,
        Input::Stdin => None,
    };
    // Fail before any key-service call if the object exists.
    if !a.force && s3.head(url).map_err(hint)?.is_some() {
        return Err(Error::OutputExists(url.to_string()));
    }
    sealstream::s3::part_plan_for(params.chunk_size, s3.settings().part_size, plaintext_len)?;
    let ring = encryption_keys(cli, &a.keys, &a.kms_keys)?;
    let (dek, stanzas) = keys::wrap_for_all(&ring.providers(), &params.context)?;
    let key_refs = super::report::key_refs(&stanzas);
    let sealing = Sealing::new(&dek, stanzas, &params)?;
    let attributes = a.object.attributes(input_path)?;
    let total = plaintext_len.map(|l| body_len_for(l, params.chunk_size));
    let ends = progress::Ends {
        input_is_terminal: plaintext_len.is_none() && progress::stdin_input(cli.quiet),
        output_is_terminal: false,
    };
    let pb = progress::bar_between(total, cli.quiet, "uploading", ends);
    let inc = |n: u64| pb.inc(n);
    let opts = PutOptions {
        force: a.force,
        plaintext_len,
        engine: engine_opts(cli, None),
        progress: Some(&inc),
        attributes: Some(&attributes),
    };
    let r = match input {
        Input::File(f, _) => s3.put_encrypted(url, f, sealing, &opts),
        Input::Stdin => s3.put_encrypted(url, io::stdin(), sealing, &opts),
    };
    pb.finish_and_clear();
    let rep = r.map_err(hint)?;
    warn_kept(&rep.old_companion);
    let placement = match &rep.companion {
        Some(c) => format!("header in companion object s3://{}/{c}", url.bucket),
        None => "header in the object's metadata".to_string(),
    };
    if a.json {
        super::report::Report {
            output: Some(url.to_string()),
            plaintext_bytes: Some(rep.plaintext_bytes),
            encrypted_bytes: Some(rep.body_bytes),
            keys: key_refs,
            suite: Some(params.suite.name()),
            chunk_size: Some(params.chunk_size),
            header_location: Some(match &rep.companion {
                Some(c) => format!("s3://{}/{c}", url.bucket),
                None => "metadata".into(),
            }),
            etag: rep.etag.clone(),
            version_id: rep.version_id.clone(),
            parts: Some(rep.parts),
            content_type: Some(
                attributes
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "application/octet-stream".into()),
            ),
            ..super::report::Report::new("encrypt", shown_input(input_path), started)
        }
        .emit()?;
    }
    note(
        cli.quiet,
        &format!(
            "encrypted {} bytes to {url} ({} body bytes, {}; {placement})",
            rep.plaintext_bytes,
            rep.body_bytes,
            match rep.parts {
                0 => "single PUT".to_string(),
                n => format!("{n} parts"),
            }
        ),
    );
    Ok(())
}

/// `decrypt s3://bucket/key [-o OUT] [--range R]`.
pub(super) fn decrypt(
    cli: &super::Cli,
    a: &DecryptArgs,
    url: &S3Url,
    expected: Context,
    range: Option<ByteRange>,
) -> CliResult {
    let clean = |e: Error| (super::Failure::from(e), false);
    if a.header_from.is_some() {
        return Err(clean(Error::InvalidArgument(
            "--header-from is for a body downloaded by another tool; an s3:// input brings its own header".into(),
        )));
    }
    let started = std::time::Instant::now();
    url.require_object().map_err(clean)?;
    let mut sink = Sink::open(a.output.as_deref(), a.force, false).map_err(clean)?;
    super::report::check_stdout_free(a.json, sink.is_stdout()).map_err(clean)?;
    let to_stdout = sink.is_stdout();
    let ends = progress::Ends {
        input_is_terminal: false,
        output_is_terminal: sink.is_terminal(),
    };
    let s3 = connect(cli).map_err(clean)?;
    let obj = match open_or_s3ec(&s3, url).map_err(clean)? {
        Opened::Sealstream(o) => *o,
        Opened::S3ec(o) => {
            drop(sink);
            return super::s3ec::decrypt(cli, a, &s3, &o, &expected, range);
        }
    };
    let ring = decryption_keys(cli, &a.keys, &a.kms).map_err(clean)?;
    let opening = Opening::unlock(
        obj.header.clone(),
        &ring.providers(),
        &expected,
        cli.backend,
    )
    .map_err(clean)?;
    let total = obj.layout().ok().map(|l| l.plaintext_len);
    let pb = progress::bar_between(
        total.filter(|_| range.is_none()),
        cli.quiet,
        "downloading",
        ends,
    );
    let inc = |n: u64| pb.inc(n);
    let opts = GetOptions {
        engine: engine_opts(cli, Some(&inc)),
    };
    let mut wrote_any = false;
    let r = sink.write_with(|w| {
        let mut cw = CountingWriter {
            inner: w,
            wrote: &mut wrote_any,
        };
        match range {
            Some(rg) => s3.get_range_decrypted(&obj, &opening, rg, &mut cw, &opts),
            None => s3.get_decrypted(&obj, &opening, &mut cw, &opts),
        }
        .map_err(hint)
    });
    pb.finish_and_clear();
    let served = r.map_err(|e| (super::Failure::from(e), to_stdout && wrote_any))?;
    if a.json {
        object_report("decrypt", url, &obj, started)
            .output(a.output.as_deref())
            .served(&served, range.is_some())
            .emit()
            .map_err(clean)?;
    }
    Ok(())
}

/// Where an object's header is, as results show it: `metadata`, the companion's URL, or
/// `body` (a whole sealstream file stored as the object).
fn location_shown(url: &S3Url, l: &HeaderLocation) -> String {
    match l {
        HeaderLocation::Inline(_) => "metadata".to_string(),
        HeaderLocation::Companion { key, .. } => format!("s3://{}/{key}", url.bucket),
        HeaderLocation::Body => "body".to_string(),
        // A location newer than this binary's wording.
        other => format!("{other:?}"),
    }
}

/// A result about one object: its keys, ETag, version, Content-Type, user metadata and
/// where its header is.
fn object_report(
    command: &'static str,
    url: &S3Url,
    obj: &sealstream::s3::ObjectInfo,
    started: std::time::Instant,
) -> super::report::Report {
    super::report::Report {
        encrypted_bytes: Some(obj.head.content_length),
        suite: Some(obj.header.suite.name()),
        chunk_size: Some(obj.header.chunk_size),
        header_location: Some(location_shown(url, &obj.location)),
        etag: obj.head.etag.clone(),
        version_id: obj.head.version_id.clone(),
        content_type: obj.head.content_type.clone(),
        metadata: Some(super::report::user_metadata(&obj.head.metadata)),
        ..super::report::Report::new(command, url.to_string(), started)
    }
    .with_keys(&obj.header.stanzas)
}

/// An object opened for reading: sealstream's, or one the Amazon S3 Encryption Client wrote.
enum Opened {
    Sealstream(Box<sealstream::s3::ObjectInfo>),
    S3ec(Box<sealstream::s3::s3ec::S3ecObject>),
}

/// Opens a sealstream object; if it has no sealstream metadata, looks at it as an Amazon
/// S3 Encryption Client object (its metadata, else its instruction file) before reporting
/// the original error. Objects with sealstream metadata never take the second look.
fn open_or_s3ec(s3: &S3, url: &S3Url) -> Result<Opened> {
    match s3.open_object(url) {
        Ok(o) => Ok(Opened::Sealstream(Box::new(o))),
        Err(Error::ObjectMetadata { object, reason }) => {
            let head = s3.head(url).map_err(hint)?;
            let sealstream_meta = head.as_ref().is_some_and(|h| {
                h.metadata
                    .keys()
                    .any(|k| sealstream::s3::object::is_sealstream_key(k))
            });
            if let Some(head) = head.filter(|_| !sealstream_meta)
                && let Some(o) =
                    sealstream::s3::s3ec::blocking::from_head(s3, url, head).map_err(hint)?
            {
                return Ok(Opened::S3ec(Box::new(o)));
            }
            Err(Error::ObjectMetadata { object, reason })
        }
        Err(e) => Err(hint(e)),
    }
}

/// `inspect s3://bucket/key`: HEAD (+ companion), never the body.
pub(super) fn inspect(cli: &super::Cli, a: &InspectArgs, url: &S3Url) -> super::Outcome {
    let s3 = connect(cli)?;
    let obj = match open_or_s3ec(&s3, url)? {
        Opened::Sealstream(o) => *o,
        Opened::S3ec(o) => return super::s3ec::inspect(cli, a, &o),
    };
    if let Some(p) = &a.export_header {
        export_header(p, &obj.header)?;
    }
    let checks = if a.verify {
        let ring = decryption_keys(cli, &a.keys, &a.kms)?;
        Some(envelope::verify_stanzas(&obj.header, &ring.providers()))
    } else {
        None
    };
    let location = location_shown(url, &obj.location);
    let info = envelope::inspect(
        obj.header.clone(),
        obj.header_len,
        Some(obj.header_len + obj.head.content_length - obj.chunks_start()),
    );
    if a.json {
        let mut r = inspection_report(&info, checks.as_deref());
        r.object = Some(super::report::InspectedObject {
            body_len: obj.head.content_length,
            etag: obj.head.etag.clone(),
            header_location: location,
            url: url.to_string(),
        });
        super::report::emit_line(&r)?;
    } else {
        let text = format!(
            "object:         {}\nbody:           {} bytes (the file form is the header followed by the body)\nheader in:      {}\n{}",
            sealstream::text::escape(&url.to_string()),
            obj.head.content_length,
            sealstream::text::escape(&location),
            inspection_text(&info, checks.as_deref())
        );
        io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| Error::io("writing to stdout", e))?;
    }
    verification_outcome(&info, checks.as_deref(), a.verify)
}

/// Writes the header bytes to a new file (never over an existing one).
pub(super) fn export_header(p: &Path, header: &sealstream::format::Header) -> Result<()> {
    let bytes = header
        .to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    // inspect has no --force: an existing file gets its own advice, not "pass --force".
    let exists = |e: Error| match e {
        Error::OutputExists(shown) => Error::io(
            format!("writing the header to '{shown}'"),
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "a file is already there and --export-header never replaces one; choose \
                 another path or remove that file first",
            ),
        ),
        e => e,
    };
    let mut out = AtomicFile::create(p, false).map_err(exists)?;
    out.file()?
        .write_all(&bytes)
        .map_err(|e| Error::io(format!("writing '{}'", p.display()), e))?;
    out.commit().map_err(exists)
}

/// `rewrap s3://bucket/key …`: a new header through a server-side copy onto itself;
/// returns the result for `--json`.
pub(super) fn rewrap(
    cli: &super::Cli,
    plan: &sealstream::rewrap::Rewrap<'_>,
    url: &S3Url,
    started: std::time::Instant,
) -> Result<super::report::Report> {
    let s3 = connect(cli)?;
    let obj = s3.open_object(url).map_err(hint)?;
    let new = plan.apply(&obj.header)?;
    let rep = s3.replace_header(&obj, &new).map_err(hint)?;
    warn_kept(&rep.old_companion);
    report_rewrap(cli, &url.to_string(), &new);
    let mut r = object_report("rewrap", url, &obj, started).with_keys(&new.stanzas);
    r.output = Some(url.to_string());
    r.header_location = Some(match &rep.companion {
        Some(c) => format!("s3://{}/{c}", url.bucket),
        None => "metadata".into(),
    });
    // The copy wrote a new version (its id and the ETag are the service's to say;
    // the ETag of a metadata-only copy is unchanged).
    r.version_id = None;
    if let Some(c) = rep.companion {
        note(
            cli.quiet,
            &format!(
                "the header is in the companion object s3://{}/{}",
                url.bucket,
                sealstream::text::escape(&c)
            ),
        );
    }
    Ok(r)
}

/// `encrypt FILES|DIRS --output-dir s3://bucket/prefix/`: one object per file (the relative
/// path under the prefix, no suffix), `--jobs` files at once, the data-key cache if asked.
pub(super) fn encrypt_batch(
    cli: &super::Cli,
    a: &EncryptArgs,
    prefix: &S3Url,
    params: EncryptParams<'_>,
    cache: Option<sealstream::keys::cache::CacheLimits>,
) -> super::Outcome {
    if a.inputs.is_empty() {
        return Err(
            Error::InvalidArgument("--output-dir needs input files or directories".into()).into(),
        );
    }
    let jobs = super::batch::plan(&a.inputs, Path::new(""), &|n| n.to_string())?;
    encrypt_jobs(cli, a, prefix, &jobs, params, cache)
}

/// Uploads every job's input to the object named by its output (a relative path) under
/// `prefix`, `--jobs` at a time.
pub(super) fn encrypt_jobs(
    cli: &super::Cli,
    a: &EncryptArgs,
    prefix: &S3Url,
    jobs: &[super::batch::Job],
    params: EncryptParams<'_>,
    cache: Option<sealstream::keys::cache::CacheLimits>,
) -> super::Outcome {
    // Checked once up front (a bad option fails before any upload).
    a.object.attributes(None)?;
    let keys_of: Vec<String> = jobs.iter().map(|j| key_under(prefix, &j.output)).collect();
    let s3 = connect(cli)?;
    let ring = encryption_keys(cli, &a.keys, &a.kms_keys)?;
    let providers = ring.providers();
    let cache = cache.map(sealstream::keys::cache::DataKeyCache::new);
    let pb = progress::bar(Some(batch_total(jobs)), cli.quiet, "uploading");
    let inc = |n: u64| pb.inc(n);
    let engine = batch_engine(cli, a.batch.jobs, &inc);
    let json = a.json.then(|| super::report::Batch::new("encrypt"));
    let failures = sealstream::jobs::run(jobs.len(), a.batch.jobs, |i| {
        let job = &jobs[i];
        let url = prefix.with_key(keys_of[i].clone());
        let f = std::fs::File::open(&job.input)
            .map_err(|e| Error::io(format!("opening input '{}'", job.input.display()), e))?;
        let len = f
            .metadata()
            .map_err(|e| Error::io(format!("opening input '{}'", job.input.display()), e))?
            .len();
        if !a.force && s3.head(&url).map_err(hint)?.is_some() {
            return Err(Error::OutputExists(url.to_string()));
        }
        let (dek, stanzas) = match &cache {
            Some(c) => c.data_key(&providers, &params.context, len)?,
            None => keys::wrap_for_all(&providers, &params.context)?,
        };
        let started = std::time::Instant::now();
        let attributes = a.object.attributes(Some(&job.input))?;
        let opts = PutOptions {
            attributes: Some(&attributes),
            force: a.force,
            plaintext_len: Some(len),
            engine: sealstream::engine::EngineOptions {
                progress: None,
                ..engine
            },
            progress: None,
        };
        // Progress in plaintext bytes, once the object is stored.
        let keys = super::report::key_refs(&stanzas);
        let sealing = Sealing::new(&dek, stanzas, &params)?;
        let r = s3.put_encrypted(&url, f, sealing, &opts).map_err(hint)?;
        warn_kept(&r.old_companion);
        inc(r.plaintext_bytes);
        if let Some(b) = &json {
            b.push(super::report::Report {
                output: Some(url.to_string()),
                plaintext_bytes: Some(r.plaintext_bytes),
                encrypted_bytes: Some(r.body_bytes),
                keys,
                suite: Some(params.suite.name()),
                chunk_size: Some(params.chunk_size),
                header_location: Some(match &r.companion {
                    Some(c) => format!("s3://{}/{c}", url.bucket),
                    None => "metadata".into(),
                }),
                etag: r.etag,
                version_id: r.version_id,
                parts: Some(r.parts),
                content_type: attributes.content_type.clone(),
                ..super::report::Report::new("encrypt", job.input.display().to_string(), started)
            });
        }
        Ok(())
    });
    pb.finish_and_clear();
    batch_report(jobs, failures, cli.quiet, "encrypted", json)
}

/// `decrypt s3://bucket/prefix/ --output-dir DIR`: every object under the prefix (companion
/// objects skipped) to DIR/<relative key>, a trailing `.seal` removed.
pub(super) fn decrypt_batch(
    cli: &super::Cli,
    a: &DecryptArgs,
    prefixes: &[S3Url],
    dir: &Path,
) -> super::Outcome {
    if a.range.is_some() {
        return Err(Error::InvalidArgument(
            "--range works on one object, not with --output-dir".into(),
        )
        .into());
    }
    let s3 = connect(cli)?;
    let mut objects: Vec<(S3Url, std::path::PathBuf)> = Vec::new();
    for p in prefixes {
        let listed = if p.key.is_empty() || p.key.ends_with('/') {
            s3.list(p).map_err(hint)?
        } else {
            vec![(p.key.clone(), 0)]
        };
        let base = p.key.rfind('/').map_or("", |i| &p.key[..=i]);
        for (k, _) in listed {
            let rel = k.strip_prefix(base).unwrap_or(&k);
            let rel = match rel.strip_suffix(".seal") {
                Some(stem) if !stem.is_empty() && !stem.ends_with('/') => stem,
                _ => rel,
            };
            let mut out = dir.to_path_buf();
            for part in rel.split('/').filter(|s| !s.is_empty()) {
                if part == ".." || part == "." {
                    return Err(Error::InvalidArgument(format!(
                        "object key '{k}' has a '{part}' component; refusing to write outside {}",
                        dir.display()
                    ))
                    .into());
                }
                out.push(part);
            }
            objects.push((p.with_key(k.clone()), out));
        }
    }
    if objects.is_empty() {
        return Err(
            Error::InvalidArgument("no objects under the given prefix(es)".to_string()).into(),
        );
    }
    decrypt_objects(cli, a, &objects)
}

/// Downloads and decrypts every (object, output path), `--jobs` at a time.
pub(super) fn decrypt_objects(
    cli: &super::Cli,
    a: &DecryptArgs,
    objects: &[(S3Url, std::path::PathBuf)],
) -> super::Outcome {
    let expected = super::parse::parse_context(&a.context)?;
    let s3 = connect(cli)?;
    let jobs: Vec<super::batch::Job> = objects
        .iter()
        .map(|(u, out)| super::batch::Job {
            input: u.to_string().into(),
            output: out.clone(),
        })
        .collect();
    let ring = decryption_keys(cli, &a.keys, &a.kms)?;
    let providers = ring.providers();
    let be = cli.backend;
    let pb = progress::bar(None, cli.quiet, "downloading");
    let inc = |n: u64| pb.inc(n);
    let engine = batch_engine(cli, a.batch.jobs, &inc);
    let json = a.json.then(|| super::report::Batch::new("decrypt"));
    let kms = std::sync::Mutex::new(None);
    let failures = sealstream::jobs::run(objects.len(), a.batch.jobs, |i| {
        let started = std::time::Instant::now();
        let (url, out) = &objects[i];
        let opened = open_or_s3ec(&s3, url)?;
        if let Some(d) = out.parent() {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating '{}'", d.display()), e))?;
        }
        let mut af = AtomicFile::create(out, a.force)?;
        let obj = match opened {
            Opened::Sealstream(o) => *o,
            Opened::S3ec(o) => {
                // Committed only after the whole body authenticated (src/cli/s3ec.rs).
                let mut w = io::BufWriter::with_capacity(1 << 20, af.file()?);
                let n = super::s3ec::decrypt_into(cli, a, &s3, &o, &kms, out, &mut w)?;
                w.flush().map_err(|e| Error::io("writing output", e))?;
                drop(w);
                af.commit()?;
                if let Some(b) = &json {
                    b.push(super::s3ec::batch_report(&o, out, n, started));
                }
                return Ok(());
            }
        };
        let opening = Opening::unlock(obj.header.clone(), &providers, &expected, be)?;
        let served = {
            let mut w = io::BufWriter::with_capacity(1 << 20, af.file()?);
            let served = s3
                .get_decrypted(&obj, &opening, &mut w, &GetOptions { engine })
                .map_err(hint)?;
            w.flush().map_err(|e| Error::io("writing output", e))?;
            served
        };
        af.commit()?;
        if let Some(b) = &json {
            b.push(
                object_report("decrypt", url, &obj, started)
                    .output(Some(out))
                    .served(&served, false),
            );
        }
        Ok(())
    });
    pb.finish_and_clear();
    batch_report(&jobs, failures, cli.quiet, "decrypted", json)
}

/// Says on stderr (even with --quiet: it is about what was *not* cleaned up) that an old
/// companion object was left alone, and why.
fn warn_kept(c: &CompanionCleanup) {
    if let CompanionCleanup::Kept(why) = c {
        eprintln!("sealstream: warning: {why}");
    }
}

/// The keys under `prefix` (companion objects excluded): what a recursive transfer
/// compares with.
pub(super) fn keys_under(
    cli: &super::Cli,
    prefix: &S3Url,
) -> Result<std::collections::HashSet<String>> {
    let s3 = connect(cli)?;
    Ok(s3
        .list(prefix)
        .map_err(hint)?
        .into_iter()
        .map(|(k, _)| k)
        .collect())
}

/// The object key for a batch output path (relative, '/'-separated) under `prefix`.
pub(super) fn key_under(prefix: &S3Url, rel: &Path) -> String {
    let mut k = prefix.key.clone();
    if !k.is_empty() && !k.ends_with('/') {
        k.push('/');
    }
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    k.push_str(&parts.join("/"));
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use sealstream::error::ServiceError;

    fn s3_error(kind: ServiceErrorKind, code: Option<&str>, msg: &str) -> Error {
        Error::Storage(
            ServiceError::new(Service::S3, kind, msg).with_code(code.map(str::to_string)),
        )
    }

    /// The library's messages name no flag; the CLI adds the ones that help, by code or
    /// kind, in the sentences it printed before the split.
    #[test]
    fn hints_name_the_flags_by_code_and_kind() {
        let cases = [
            (
                s3_error(
                    ServiceErrorKind::InvalidRequest,
                    Some("PermanentRedirect"),
                    "x",
                ),
                "x; the bucket is in another region; pass --region or set AWS_REGION",
            ),
            (
                s3_error(ServiceErrorKind::Throttled, Some("SlowDown"), "x"),
                "x; the service kept failing after retries; try again later, lower --concurrency or raise --s3-max-attempts",
            ),
            (
                s3_error(
                    ServiceErrorKind::Timeout,
                    None,
                    "no answer; check the network",
                ),
                "no answer; check the network, or raise --s3-read-timeout / --s3-timeout / --s3-connect-timeout",
            ),
            (
                s3_error(
                    ServiceErrorKind::Credentials,
                    None,
                    "no AWS credentials found (…); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                ),
                "no AWS credentials found (…); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile NAME for a configured profile",
            ),
            (
                s3_error(ServiceErrorKind::Unreachable, None, "refused"),
                "refused",
            ),
        ];
        for (e, want) in cases {
            let Error::Storage(se) = hint(e) else {
                panic!("kind changed")
            };
            assert_eq!(se.message(), want);
        }
        // Other errors pass through untouched.
        assert!(
            matches!(hint(Error::InvalidArgument("u".into())), Error::InvalidArgument(m) if m == "u")
        );
    }
}
