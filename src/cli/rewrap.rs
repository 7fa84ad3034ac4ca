//! `sealstream rewrap`: change which keys open a file (local files here; S3 objects in
//! `s3.rs`), never touching the body.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;

use clap::Args;

use super::keys::{Keyring, KmsTrustArgs, decryption_keys, kms_connect, load_local};
use super::{Cli, help, note, output, report, s3};
use sealstream::envelope;
use sealstream::error::{Error, Result};
use sealstream::format::Header;
use sealstream::keys::KeyProvider;
use sealstream::kms::blocking::KmsKey;

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
    let r = rewrap_target(cli, a, &a.file)?;
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
    target: &std::path::Path,
) -> Result<report::Report> {
    let started = std::time::Instant::now();
    let shown = target.display().to_string();
    if let Some(url) = s3::url_of(target)? {
        return s3::rewrap(cli, a, &url, started);
    }
    let mut f = File::open(target).map_err(|e| Error::io(format!("opening '{shown}'"), e))?;
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
pub(super) fn rewrapped_header(cli: &Cli, a: &RewrapArgs, mut header: Header) -> Result<Header> {
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
