//! The Amazon S3 Encryption Client side of the commands: `decrypt s3://…` and `inspect
//! s3://…` of an S3EC object, and `migrate`. Argument handling and reporting only; the
//! work is in [`sealstream::s3::s3ec`] (docs/MIGRATION.md).

use std::io::{self, Write};
use std::path::PathBuf;

use super::decrypt::{CountingWriter, DecryptArgs};
use super::exit::{self, Failure};
use super::inspect::InspectArgs;
use super::keys::{KmsTrustArgs, kms_connect, load_key_file};
use super::output::Sink;
use super::{Cli, CliResult, Outcome, help, note, report, values};
use clap::Args;
use sealstream::engine::EngineOptions;
use sealstream::envelope::{EncryptParams, Sealing};
use sealstream::error::{Error, Result};
use sealstream::format::{Context, Suite};
use sealstream::keys::{self, KeyProvider};
use sealstream::kms::blocking::{Kms, KmsKey};
use sealstream::range::ByteRange;
use sealstream::s3::blocking::S3;
use sealstream::s3::s3ec::{self as lib, KmsTrust, MigrateOptions, S3ecObject, Unlocked};
use sealstream::s3::{S3Url, object};

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
    #[arg(long, default_value = "aes-256-gcm", value_parser = values::suite(), help_heading = help::FORMAT)]
    pub suite: Suite,
    /// Plaintext bytes per chunk of the new object, 4KiB..16MiB.
    #[arg(long, value_name = "SIZE", default_value = "64KiB", value_parser = values::chunk_size, help_heading = help::FORMAT)]
    pub chunk_size: u32,
}

/// The KMS trust of a command's `--kms-key` / `--kms-discovery` flags.
fn trust(cli: &Cli, t: &KmsTrustArgs) -> KmsTrust {
    KmsTrust {
        keys: t.kms_keys.clone(),
        discovery_accounts: if t.kms_discovery {
            t.kms_allow_accounts.clone()
        } else {
            Vec::new()
        },
        max_decrypts: cli.kms_max_decrypts,
    }
}

/// Unlocks `obj` with the trusted KMS keys (no KMS connection when none is trusted: the
/// library then reports that no key was offered).
fn unlock(
    cli: &Cli,
    kms: &mut Option<std::sync::Arc<Kms>>,
    t: &KmsTrustArgs,
    obj: &S3ecObject,
    expected: &Context,
) -> Result<Unlocked> {
    if !t.any() {
        lib::check_context(&obj.envelope, expected)?;
        return Err(Error::NoMatchingKey {
            stanzas: vec![
                "aws-kms:(the KMS key that wrapped this S3 Encryption Client object)".into(),
            ],
            offered: vec![],
        });
    }
    let k = match kms {
        Some(k) => k.clone(),
        None => kms.insert(kms_connect(cli)?).clone(),
    };
    lib::blocking::unlock(&k, obj, &trust(cli, t), expected)
}

/// `decrypt s3://bucket/key` of an S3EC object: to a file through a temporary renamed only
/// after the tag verified; to a stream (stdout, a FIFO, a device) in two downloads, the
/// first verifying, the second releasing verified windows only.
pub(super) fn decrypt(
    cli: &Cli,
    a: &DecryptArgs,
    s3: &S3,
    obj: &S3ecObject,
    expected: &Context,
    range: Option<ByteRange>,
) -> CliResult {
    let clean = |e: Error| (Failure::from(e), false);
    if range.is_some() {
        return Err(clean(Error::InvalidArgument(format!(
            "{}: --range is not available for an Amazon S3 Encryption Client object: its body \
             is one AES-GCM whose tag is at the end, so no part of it is authentic before the \
             whole is read; run `sealstream migrate {}` first, then ranged reads are \
             authenticated",
            obj.url, obj.url
        ))));
    }
    let mut kms = None;
    let unlocked = unlock(cli, &mut kms, &a.kms, obj, expected).map_err(clean)?;
    let sink = Sink::open(a.output.as_deref(), a.force, false).map_err(clean)?;
    if !sink.is_streaming() {
        // A temporary file beside the output: renamed into place only after the tag verified.
        return sink
            .write_with(|w| lib::blocking::get_staged(s3, obj, &unlocked, w))
            .map(|_| ())
            .map_err(clean);
    }
    note(
        cli.quiet,
        &format!(
            "{}: Amazon S3 Encryption Client object, output to a stream: verifying the whole body first, then downloading it again for the plaintext (two downloads of {} bytes)",
            obj.url, obj.head.content_length
        ),
    );
    let verified = lib::blocking::verify(s3, obj, &unlocked).map_err(clean)?;
    let mut wrote_any = false;
    let r = sink.write_with(|w| {
        let mut cw = CountingWriter {
            inner: w,
            wrote: &mut wrote_any,
        };
        lib::blocking::get_verified(s3, obj, &unlocked, &verified, &mut cw)
    });
    r.map(|_| ()).map_err(|e| (Failure::from(e), wrote_any))
}

/// One S3EC object of `decrypt s3://bucket/prefix/ -o DIR --recursive`, written to `out`
/// for the batch output `target`. The batch commits `out` (a temporary renamed onto
/// `target`) only on `Ok`, so a regular file gets the tag verified before anything is
/// released, in one download, as for a single object. An existing special file at
/// `target` (a FIFO, a device: written directly) gets the two-pass read instead: verify,
/// then release verified windows only. `kms` is the batch's one KMS connection, opened by
/// the first S3EC object that needs it. Returns the plaintext length.
pub(super) fn decrypt_into(
    cli: &Cli,
    a: &DecryptArgs,
    s3: &S3,
    obj: &S3ecObject,
    kms: &std::sync::Mutex<Option<std::sync::Arc<Kms>>>,
    target: &std::path::Path,
    out: &mut dyn Write,
) -> Result<u64> {
    let expected = super::parse::parse_context(&a.context)?;
    let mut handle = kms.lock().ok().and_then(|k| k.clone());
    let unlocked = unlock(cli, &mut handle, &a.kms, obj, &expected)?;
    if let (Some(h), Ok(mut k)) = (handle, kms.lock()) {
        k.get_or_insert(h);
    }
    if std::fs::metadata(target).is_ok_and(|m| !m.is_file()) {
        let verified = lib::blocking::verify(s3, obj, &unlocked)?;
        return lib::blocking::get_verified(s3, obj, &unlocked, &verified, out);
    }
    lib::blocking::get_staged(s3, obj, &unlocked, out)
}

/// The `--json` line of one S3EC object a batch decrypted (`plaintext` bytes to `out`).
pub(super) fn batch_report(
    obj: &S3ecObject,
    out: &std::path::Path,
    plaintext: u64,
    started: std::time::Instant,
) -> super::report::Report {
    super::report::Report {
        output: Some(out.display().to_string()),
        plaintext_bytes: Some(plaintext),
        encrypted_bytes: Some(obj.head.content_length),
        suite: Some(obj.envelope.content_cipher()),
        etag: obj.head.etag.clone(),
        version_id: obj.head.version_id.clone(),
        content_type: obj.head.content_type.clone(),
        metadata: Some(
            obj.head
                .metadata
                .iter()
                .filter(|(k, _)| !lib::metadata::is_s3ec_key(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        ..super::report::Report::new("decrypt", obj.url.to_string(), started)
    }
}

/// Whether `key`, listed with the keys in `listed`, is the instruction file of another
/// listed object (`KEY.instruction` beside `KEY`): part of that object's envelope, not an
/// object to decrypt or migrate on its own.
pub(super) fn is_instruction_of(key: &str, listed: &std::collections::HashSet<&str>) -> bool {
    key.strip_suffix(lib::metadata::INSTRUCTION_SUFFIX)
        .is_some_and(|base| listed.contains(base))
}

fn context_map<'a>(
    pairs: impl Iterator<Item = (&'a str, &'a str)>,
) -> std::collections::BTreeMap<String, String> {
    pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `inspect s3://bucket/key` of an S3EC object: its metadata only (and, with `--verify`,
/// the KMS unwrap and key commitment).
pub(super) fn inspect(cli: &Cli, a: &InspectArgs, obj: &S3ecObject) -> Outcome {
    if a.export_header.is_some() {
        return Err(Error::InvalidArgument(format!(
            "{}: --export-header: an Amazon S3 Encryption Client object has no sealstream header",
            obj.url
        ))
        .into());
    }
    let env = &obj.envelope;
    let verified = if a.verify {
        let mut kms = None;
        Some(unlock(cli, &mut kms, &a.kms, obj, &Context::new()))
    } else {
        None
    };
    let legacy_key = env
        .kms_context
        .get(lib::metadata::CONTEXT_KMS_CMK_ID)
        .cloned();
    let kms_key = match &verified {
        Some(Ok(u)) => Some(u.kms_key().to_string()),
        _ => legacy_key,
    };
    let reserved = env
        .kms_context
        .iter()
        .filter(|(k, _)| {
            k.as_str() == lib::metadata::CONTEXT_CEK_ALG
                || k.as_str() == lib::metadata::CONTEXT_KMS_CMK_ID
        })
        .map(|(k, v)| (k.as_str(), v.as_str()));
    if a.json {
        let r = report::S3ecInspection {
            ciphertext_len: obj.head.content_length,
            client_format_version: env.version.name(),
            content_cipher: env.content_cipher(),
            context: context_map(env.user_context()),
            format: "amazon-s3-encryption-client",
            instruction_file: obj
                .instruction
                .as_ref()
                .map(|(k, _)| format!("s3://{}/{k}", obj.url.bucket)),
            key_commitment: env.commitment.is_some(),
            key_wrapping: env.wrapping.name(),
            kms_key,
            object: report::S3ecObjectRef {
                etag: obj.head.etag.clone(),
                url: obj.url.to_string(),
            },
            plaintext_len: obj.plaintext_len(),
            plaintext_len_authenticated: false,
            reserved_context: context_map(reserved),
            verified: verified.as_ref().map(|r| r.is_ok()),
        };
        report::emit_line(&r)?;
    } else {
        let esc = sealstream::text::escape;
        let mut s = String::new();
        s.push_str(&format!("object:         {}\n", esc(&obj.url.to_string())));
        s.push_str(&format!(
            "format:         Amazon S3 Encryption Client, {} metadata\n",
            env.version.name()
        ));
        s.push_str(&format!("content cipher: {}\n", env.content_cipher()));
        s.push_str(&format!(
            "key commitment: {}\n",
            if env.commitment.is_some() {
                "yes (checked before decrypting)"
            } else {
                "no"
            }
        ));
        s.push_str(&format!(
            "key wrapping:   {} (AWS KMS)\n",
            env.wrapping.name()
        ));
        s.push_str(&format!(
            "kms key:        {}\n",
            match &kms_key {
                Some(k) => esc(k),
                None => "not recorded in the metadata (KMS reads it from the ciphertext; --verify --kms-key KEY checks it)".into(),
            }
        ));
        if let Some((k, _)) = &obj.instruction {
            s.push_str(&format!(
                "metadata in:    instruction file s3://{}/{}\n",
                esc(&obj.url.bucket),
                esc(k)
            ));
        }
        s.push_str(&format!(
            "body:           {} bytes (plaintext {} bytes, from the length; authenticated only on decrypt)\n",
            obj.head.content_length,
            obj.plaintext_len()
        ));
        let user: Vec<(&str, &str)> = env.user_context().collect();
        if user.is_empty() {
            s.push_str("context:        (none)\n");
        } else {
            s.push_str("context:\n");
            for (k, v) in user {
                s.push_str(&format!("  {}={}\n", esc(k), esc(v)));
            }
        }
        match &verified {
            Some(Ok(_)) => {
                s.push_str("verified:       data key unwrapped (and commitment checked)\n")
            }
            Some(Err(e)) => s.push_str(&format!(
                "verified:       FAILED: {}\n",
                esc(&exit::message(e))
            )),
            None => {}
        }
        io::stdout()
            .lock()
            .write_all(s.as_bytes())
            .map_err(|e| Error::io("writing to stdout", e))?;
    }
    match verified {
        Some(Err(e)) => Err(e.into()),
        _ => Ok(()),
    }
}

/// Writes one object's line of the migration report. A line that cannot be written does
/// not stop the migration (the objects' outcomes stand; the exit code says whether any
/// failed).
fn report_line(line: &report::MigrateLine) {
    let _ = report::emit_line(line);
}

/// `migrate s3://bucket/key` or `migrate s3://bucket/prefix/ --recursive`.
pub(super) fn migrate(cli: &Cli, a: &MigrateArgs) -> Outcome {
    let url = super::s3::url_of(&a.source)?.ok_or_else(|| {
        Error::InvalidArgument(format!(
            "migrate works on S3 objects: give s3://BUCKET/KEY, not '{}'",
            a.source.display()
        ))
    })?;
    if !a.recursive {
        url.require_object()?;
    }
    let expected = super::parse::parse_context(&a.context)?;
    let local: Vec<sealstream::LocalKey> = a
        .wrap_keys
        .iter()
        .map(|p: &PathBuf| load_key_file(cli, p))
        .collect::<Result<_>>()?;
    let s3 = super::s3::connect(cli)?;
    let mut kms: Option<std::sync::Arc<Kms>> = None;
    let targets: Vec<S3Url> = if a.recursive {
        let listed = s3.list(&url)?;
        let names: std::collections::HashSet<&str> =
            listed.iter().map(|(k, _)| k.as_str()).collect();
        listed
            .iter()
            .filter(|(k, _)| !is_instruction_of(k, &names))
            .map(|(k, _)| url.with_key(k.clone()))
            .collect()
    } else {
        vec![url.clone()]
    };
    let job = MigrateJob {
        cli,
        a,
        s3: &s3,
        suite: a.suite,
        chunk_size: a.chunk_size,
        expected: &expected,
        local: &local,
    };
    let mut failures: Vec<Error> = Vec::new();
    for t in &targets {
        match job.one(t, &mut kms) {
            Ok(()) => {}
            Err(e) => {
                report_line(&report::MigrateLine::failed(t.to_string(), &e));
                if !a.recursive {
                    return Err(e.into());
                }
                eprintln!("sealstream: error: {}", exit::message(&e));
                failures.push(e);
            }
        }
    }
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(Failure::BatchFailed {
            failed: failures.len(),
            total: targets.len(),
            code: exit::code(first),
        }),
    }
}

struct MigrateJob<'a> {
    cli: &'a Cli,
    a: &'a MigrateArgs,
    s3: &'a S3,
    suite: Suite,
    chunk_size: u32,
    expected: &'a Context,
    local: &'a [sealstream::LocalKey],
}

impl MigrateJob<'_> {
    fn one(&self, url: &S3Url, kms: &mut Option<std::sync::Arc<Kms>>) -> Result<()> {
        let Some(head) = self.s3.head(url)? else {
            return Err(Error::Storage(
                sealstream::error::ServiceError::new(
                    sealstream::error::Service::S3,
                    sealstream::error::ServiceErrorKind::NotFound,
                    format!("{url}: no such object"),
                )
                .with_code(Some("NoSuchKey".into())),
            ));
        };
        if head.metadata.keys().any(|k| object::is_sealstream_key(k)) {
            report_line(&report::MigrateLine::skipped(
                url.to_string(),
                "already a sealstream object",
            ));
            return Ok(());
        }
        let Some(obj) = lib::blocking::from_head(self.s3, url, head)? else {
            if self.a.recursive {
                report_line(&report::MigrateLine::skipped(
                    url.to_string(),
                    "not an Amazon S3 Encryption Client object",
                ));
                return Ok(());
            }
            return Err(Error::InvalidArgument(format!(
                "{url} is neither an Amazon S3 Encryption Client object nor a sealstream object; nothing to migrate"
            )));
        };
        let unlocked = unlock(self.cli, kms, &self.a.kms, &obj, self.expected)?;
        let context = Context::from_pairs(obj.envelope.user_context())?;
        let kms_handle = match kms {
            Some(k) => k.clone(),
            None => kms.insert(kms_connect(self.cli)?).clone(),
        };
        let default = self.a.wrap_kms_keys.is_empty() && self.local.is_empty();
        let wrap_names: Vec<String> = if default {
            vec![unlocked.kms_key().to_string()]
        } else {
            self.a.wrap_kms_keys.clone()
        };
        let kms_keys: Vec<KmsKey> = wrap_names
            .iter()
            .map(|k| KmsKey::for_wrapping(&kms_handle, k))
            .collect();
        let line = report::MigrateLine::would_migrate(
            url.to_string(),
            obj.envelope.version.name(),
            obj.plaintext_len(),
            unlocked.kms_key().to_string(),
            obj.instruction.as_ref().map(|(k, _)| k.clone()),
            obj.head.etag.clone(),
        );
        if self.a.dryrun {
            report_line(&line);
            return Ok(());
        }
        let refs: Vec<&dyn KeyProvider> = kms_keys
            .iter()
            .map(|k| k as &dyn KeyProvider)
            .chain(self.local.iter().map(|k| k as &dyn KeyProvider))
            .collect();
        let params = EncryptParams {
            suite: self.suite,
            chunk_size: self.chunk_size,
            context: context.clone(),
            backend: self.cli.backend,
            engine: EngineOptions::default(),
        };
        let (dek, stanzas) = keys::wrap_for_all(&refs, &context)?;
        let keys_used: Vec<String> = stanzas
            .iter()
            .map(|s| format!("{}:{}", s.provider, s.key_id))
            .collect();
        let sealing = Sealing::new(&dek, stanzas, &params)?;
        let engine = EngineOptions {
            threads: self.cli.threads.unwrap_or(0),
            ..EngineOptions::default()
        };
        let rep = lib::blocking::migrate(
            self.s3,
            &obj,
            &unlocked,
            sealing,
            &MigrateOptions { engine: &engine },
        )?;
        report_line(&line.migrated(keys_used, rep.body_bytes, rep.parts));
        note(
            self.cli.quiet,
            &format!(
                "migrated {url} ({} plaintext bytes) to a sealstream object",
                rep.plaintext_bytes
            ),
        );
        Ok(())
    }
}
