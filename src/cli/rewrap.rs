//! `sealstream rewrap`: change which keys open a file (local files here; S3 objects in
//! `s3.rs`), never touching the body.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use clap::Args;

use super::keys::{KmsTrustArgs, decryption_keys, kms_connect, load_key_file};
use super::{Cli, help, note, output, report, s3};
use sealstream::error::{Error, Result};
use sealstream::format::Header;
use sealstream::keys::KeyProvider;
use sealstream::kms::blocking::KmsKey;
use sealstream::rewrap::Rewrap;

/// `rewrap` options.
#[derive(Debug, Args)]
pub struct RewrapArgs {
    /// The encrypted file to rewrite in place, or s3://BUCKET/KEY (only the metadata changes,
    /// through a server-side copy; the body is never downloaded). With --recursive, a
    /// directory or s3://BUCKET/PREFIX/.
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
    /// location, duration); with --recursive one line per file or object (JSON Lines),
    /// failures included.
    #[arg(long, help_heading = help::OUTPUT)]
    pub json: bool,
    /// Rewrap every file under the directory FILE, or every object under
    /// s3://BUCKET/PREFIX/ (companion headers and part manifests are not objects of their
    /// own): key rotation for a whole tree or prefix. Symlinks are reported, not followed;
    /// one failure does not stop the others, and the exit code is the first failure's.
    #[arg(short = 'r', long, help_heading = help::OUTPUT)]
    pub recursive: bool,
    /// With --recursive: files or objects rewrapped at once.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = super::values::jobs(), help_heading = help::OUTPUT)]
    pub jobs: usize,
    /// --include/--exclude/--dryrun.
    #[command(flatten)]
    pub tree: super::batch::TreeArgs,
    /// Key file that can open the file now (default: the embedded default key).
    #[arg(short = 'k', long = "key", value_name = "KEYFILE", help_heading = help::KEYS)]
    pub keys: Vec<PathBuf>,
    /// KMS keys trusted for unwrapping.
    #[command(flatten)]
    pub kms: KmsTrustArgs,
}

/// `rewrap FILE`: checks the flags, then rewrites a local file's header in place (S3
/// objects go to `s3.rs`).
pub(super) fn rewrap(cli: &Cli, a: &RewrapArgs) -> super::Outcome {
    let changes_keys = !(a.add.is_empty() && a.add_kms.is_empty() && a.remove.is_empty());
    if !changes_keys && a.rotate_to.is_none() {
        return Err(Error::InvalidArgument(
            "rewrap needs --add-key KEYFILE, --add-kms-key KEY, --remove-key KEYID or --rotate-to-kms-key KEY".into(),
        ).into());
    }
    if a.rotate_to.is_some() && a.kms.kms_keys.is_empty() {
        return Err(Error::InvalidArgument(
            "--rotate-to-kms-key needs the current KMS key(s) with --kms-key".into(),
        )
        .into());
    }
    a.tree.check(a.recursive)?;
    if a.recursive {
        return super::recursive::rewrap(cli, a);
    }
    let r = rewrap_target(cli, a, &plan(cli, a)?, &a.file)?;
    if a.json {
        r.emit()?;
    }
    Ok(())
}

/// Rewraps one file or object (`target`: a path or an s3:// URL) and returns its result
/// for `--json`.
pub(super) fn rewrap_target(
    cli: &Cli,
    a: &RewrapArgs,
    plan: &Rewrap<'_>,
    target: &std::path::Path,
) -> Result<report::Report> {
    let started = std::time::Instant::now();
    let shown = target.display().to_string();
    if let Some(url) = s3::url_of(target)? {
        return s3::rewrap(cli, plan, &url, started);
    }
    let mut f = File::open(target).map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
    let meta = f
        .metadata()
        .map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
    check_rewrap_target(&shown, &meta, a.break_hard_links)?;
    let (header, _) = Header::read_from(&mut f)?;
    let new = plan.apply(&header)?;
    let bytes = new
        .to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    // Through a symlink, the real file is rewritten (the link stays a link).
    let mut out = output::AtomicFile::replacing(target, &meta)?;
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
    Ok(report::Report {
        output: Some(shown.clone()),
        encrypted_bytes: std::fs::metadata(target).ok().map(|m| m.len()),
        header_location: Some("file".into()),
        ..report::Report::new("rewrap", shown.clone(), started).with_keys(&new.stanzas)
    })
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

/// The note saying which stanzas the rewrapped file now has.
pub(super) fn report_rewrap(cli: &Cli, shown: &str, new: &Header) {
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

/// The plan the flags ask for, made once for every target: the keys that open the files
/// now (loaded only when keys are added or removed: a KMS rotation needs none), the keys
/// to add and remove, the KMS rotation; KMS is connected only when first needed.
pub(super) fn plan<'c>(cli: &'c Cli, a: &RewrapArgs) -> Result<Rewrap<'c>> {
    let mut plan = Rewrap::new().with_kms(Box::new(move || kms_connect(cli)));
    let changes_keys = !(a.add.is_empty() && a.add_kms.is_empty() && a.remove.is_empty());
    if changes_keys {
        for k in decryption_keys(cli, &a.keys, &a.kms)?.into_providers() {
            plan = plan.unlock_with(k);
        }
    }
    // Added in this order: the key files, then the KMS keys.
    let mut add: Vec<Box<dyn KeyProvider>> = Vec::new();
    for p in &a.add {
        add.push(Box::new(load_key_file(cli, p)?));
    }
    if !a.add_kms.is_empty() {
        let kms = kms_connect(cli)?;
        for k in &a.add_kms {
            add.push(Box::new(KmsKey::for_wrapping(&kms, k)));
        }
    }
    for k in add {
        plan = plan.add_key(k);
    }
    for r in &a.remove {
        plan = plan.remove_key(r.clone());
    }
    if let Some(dest) = &a.rotate_to {
        plan = plan.rotate_kms(a.kms.kms_keys.clone(), dest.clone());
    }
    Ok(plan)
}
