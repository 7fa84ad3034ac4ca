//! `encrypt|decrypt SRC -o DEST --recursive` (and `rewrap SRC --recursive`, in place):
//! whole trees with the AWS CLI's layout
//! (`SRC/a/b` ↔ `DEST/a/b`, local encrypted files with `.seal`), its `--include/--exclude`
//! filters and `--dryrun`; outputs that exist are skipped unless `--force`, and symlinks
//! are reported, never followed. The transfers themselves are the batch code's.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use sealstream::envelope::EncryptParams;
use sealstream::error::{Error, Result};
use sealstream::keys::cache::CacheLimits;
use sealstream::s3::S3Url;

use super::batch::{self, Job};
use super::decrypt::{DecryptArgs, decrypt_jobs};
use super::encrypt::{EncryptArgs, encrypt_jobs};
use super::rewrap::{RewrapArgs, plan, rewrap_target};
use super::{Cli, Outcome, note, s3};

/// The one source of a recursive transfer.
fn source(inputs: &[PathBuf]) -> Result<&Path> {
    match inputs {
        [one] => Ok(one),
        _ => Err(Error::InvalidArgument(
            "--recursive takes exactly one source: a directory or s3://BUCKET/PREFIX/".into(),
        )),
    }
}

/// The destination, which `--recursive` needs (a tree never goes to stdout).
fn destination(output: Option<&Path>) -> Result<&Path> {
    output.filter(|p| p.as_os_str() != "-").ok_or_else(|| {
        Error::InvalidArgument(
            "--recursive needs a destination: -o DIR or -o s3://BUCKET/PREFIX/".into(),
        )
    })
}

/// `s3://b/p` as the prefix `p/` (as `aws s3 cp --recursive` reads it).
fn as_prefix(mut u: S3Url) -> S3Url {
    if !u.key.is_empty() && !u.key.ends_with('/') {
        u.key.push('/');
    }
    u
}

/// A decrypted file's relative path: `.seal` removed; otherwise a local file gets `.dec`
/// (as in batch mode) and an object keeps its key (uploads carry no suffix).
fn plain_name(rel: &str, local: bool) -> String {
    match rel.strip_suffix(".seal") {
        Some(stem) if !stem.is_empty() && !stem.ends_with('/') => stem.to_string(),
        _ if local => format!("{rel}.dec"),
        _ => rel.to_string(),
    }
}

/// `dest` joined with a relative '/'-separated path, refusing `.`/`..` components (a key
/// such as `a/../../x` must not write outside `dest`).
fn join_inside(dest: &Path, rel: &str) -> Result<PathBuf> {
    let mut out = dest.to_path_buf();
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        if part == ".." || part == "." {
            return Err(Error::InvalidArgument(format!(
                "'{rel}' has a '{part}' component; refusing to write outside {}",
                dest.display()
            )));
        }
        out.push(part);
    }
    Ok(out)
}

fn report_symlinks(quiet: bool, src: &Path, links: &[String]) {
    for l in links {
        note(
            quiet,
            &format!(
                "skipping symlink '{}' (links are not followed; pass its target instead)",
                sealstream::text::escape(&src.join(l).display().to_string())
            ),
        );
    }
}

/// Splits off the jobs whose output exists (reported, kept unless `--force`), then either
/// prints the plan (`--dryrun`) or returns what to run.
fn settle<T>(
    cli: &Cli,
    verb: &str,
    force: bool,
    dryrun: bool,
    items: Vec<T>,
    shown: impl Fn(&T) -> (String, String),
    exists: impl Fn(&T) -> bool,
) -> Result<Option<Vec<T>>> {
    let mut run = Vec::with_capacity(items.len());
    for it in items {
        let (from, to) = shown(&it);
        if !force && exists(&it) {
            note(
                cli.quiet && !dryrun,
                &format!(
                    "skipping '{}': '{}' exists (pass --force to replace it)",
                    sealstream::text::escape(&from),
                    sealstream::text::escape(&to)
                ),
            );
            continue;
        }
        if dryrun {
            println!(
                "(dryrun) {verb}: {} to {}",
                sealstream::text::escape(&from),
                sealstream::text::escape(&to)
            );
        }
        run.push(it);
    }
    if dryrun {
        return Ok(None);
    }
    if run.is_empty() {
        note(
            cli.quiet,
            "nothing to do: every file is up to date or filtered out",
        );
        return Ok(None);
    }
    Ok(Some(run))
}

/// `encrypt DIR -o DEST --recursive`.
pub fn encrypt(
    cli: &Cli,
    a: &EncryptArgs,
    params: EncryptParams<'_>,
    cache: Option<CacheLimits>,
) -> Outcome {
    let src = source(&a.inputs)?;
    if s3::url_of(src)?.is_some() {
        return Err(Error::InvalidArgument(
            "encrypt --recursive reads a local directory; an s3:// source is decrypted with \
             `decrypt --recursive`"
                .into(),
        )
        .into());
    }
    let dest = destination(a.output.as_deref())?;
    let filters = batch::Filters::new(&a.batch.tree.filters)?;
    let tree = batch::walk_tree(src, &filters)?;
    report_symlinks(cli.quiet, src, &tree.symlinks);
    let dryrun = a.batch.tree.dryrun;
    match s3::url_of(dest)? {
        Some(prefix) => {
            let prefix = as_prefix(prefix);
            let jobs: Vec<Job> = tree
                .files
                .into_iter()
                .map(|(input, rel)| Job {
                    input,
                    output: PathBuf::from(rel),
                })
                .collect();
            let existing: HashSet<String> = if a.force || jobs.is_empty() {
                HashSet::new()
            } else {
                s3::keys_under(cli, &prefix)?
            };
            let url = |j: &Job| prefix.with_key(s3::key_under(&prefix, &j.output));
            let shown = |j: &Job| (j.input.display().to_string(), url(j).to_string());
            let exists = |j: &Job| existing.contains(&url(j).key);
            match settle(cli, "encrypt", a.force, dryrun, jobs, shown, exists)? {
                Some(jobs) => s3::encrypt_jobs(cli, a, &prefix, &jobs, params, cache),
                None => Ok(()),
            }
        }
        None => {
            a.object.require_s3()?;
            let jobs = tree
                .files
                .into_iter()
                .map(|(input, rel)| {
                    Ok(Job {
                        input,
                        output: join_inside(dest, &format!("{rel}.seal"))?,
                    })
                })
                .collect::<Result<Vec<Job>>>()?;
            let shown = |j: &Job| {
                (
                    j.input.display().to_string(),
                    j.output.display().to_string(),
                )
            };
            let exists = |j: &Job| j.output.symlink_metadata().is_ok();
            match settle(cli, "encrypt", a.force, dryrun, jobs, shown, exists)? {
                Some(jobs) => encrypt_jobs(cli, a, &jobs, params, cache),
                None => Ok(()),
            }
        }
    }
}

/// `decrypt SRC -o DIR --recursive` (SRC a directory or s3://BUCKET/PREFIX/).
pub fn decrypt(cli: &Cli, a: &DecryptArgs) -> Outcome {
    if a.range.is_some() {
        return Err(Error::InvalidArgument(
            "--range works on one file, not with --recursive".into(),
        )
        .into());
    }
    let src = source(&a.inputs)?;
    let dest = destination(a.output.as_deref())?;
    if s3::url_of(dest)?.is_some() {
        return Err(Error::InvalidArgument(
            "decrypt --recursive writes plaintext to a local directory, not to S3".into(),
        )
        .into());
    }
    let filters = batch::Filters::new(&a.batch.tree.filters)?;
    let dryrun = a.batch.tree.dryrun;
    match s3::url_of(src)? {
        Some(prefix) => {
            let prefix = as_prefix(prefix);
            let mut objects = Vec::new();
            let listed = s3::keys_under(cli, &prefix)?;
            let names: std::collections::HashSet<&str> =
                listed.iter().map(String::as_str).collect();
            for key in listed
                .iter()
                .filter(|k| !super::s3ec::is_instruction_of(k, &names))
                .collect::<std::collections::BTreeSet<_>>()
            {
                let rel = key
                    .strip_prefix(prefix.key.as_str())
                    .unwrap_or(key)
                    .to_string();
                if rel.is_empty() || rel.ends_with('/') || !filters.admits(&rel) {
                    continue;
                }
                let out = join_inside(dest, &plain_name(&rel, false))?;
                objects.push((prefix.with_key(key.clone()), out));
            }
            let shown = |(u, o): &(S3Url, PathBuf)| (u.to_string(), o.display().to_string());
            let exists = |(_, o): &(S3Url, PathBuf)| o.symlink_metadata().is_ok();
            match settle(cli, "decrypt", a.force, dryrun, objects, shown, exists)? {
                Some(objects) => s3::decrypt_objects(cli, a, &objects),
                None => Ok(()),
            }
        }
        None => {
            let tree = batch::walk_tree(src, &filters)?;
            report_symlinks(cli.quiet, src, &tree.symlinks);
            let jobs = tree
                .files
                .into_iter()
                .map(|(input, rel)| {
                    Ok(Job {
                        input,
                        output: join_inside(dest, &plain_name(&rel, true))?,
                    })
                })
                .collect::<Result<Vec<Job>>>()?;
            let shown = |j: &Job| {
                (
                    j.input.display().to_string(),
                    j.output.display().to_string(),
                )
            };
            let exists = |j: &Job| j.output.symlink_metadata().is_ok();
            match settle(cli, "decrypt", a.force, dryrun, jobs, shown, exists)? {
                Some(jobs) => decrypt_jobs(cli, a, &jobs),
                None => Ok(()),
            }
        }
    }
}

/// `rewrap SRC --recursive` (SRC a directory or s3://BUCKET/PREFIX/): every file or object
/// rewrapped in place, `--jobs` at once; one that fails does not stop the others.
pub fn rewrap(cli: &Cli, a: &RewrapArgs) -> Outcome {
    let src = a.file.as_path();
    let filters = batch::Filters::new(&a.tree.filters)?;
    let targets: Vec<PathBuf> = match s3::url_of(src)? {
        Some(prefix) => {
            let prefix = as_prefix(prefix);
            s3::keys_under(cli, &prefix)?
                .into_iter()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|key| {
                    let rel = key.strip_prefix(prefix.key.as_str()).unwrap_or(key);
                    !rel.is_empty() && !rel.ends_with('/') && filters.admits(rel)
                })
                .map(|key| PathBuf::from(prefix.with_key(key).to_string()))
                .collect()
        }
        None => {
            let tree = batch::walk_tree(src, &filters)?;
            report_symlinks(cli.quiet, src, &tree.symlinks);
            tree.files.into_iter().map(|(input, _)| input).collect()
        }
    };
    let shown = |t: &PathBuf| (t.display().to_string(), "its new header".to_string());
    let Some(targets) = settle(cli, "rewrap", true, a.tree.dryrun, targets, shown, |_| {
        false
    })?
    else {
        return Ok(());
    };
    let jobs: Vec<Job> = targets
        .into_iter()
        .map(|t| Job {
            output: t.clone(),
            input: t,
        })
        .collect();
    // One plan for the tree: keys loaded and KMS connected once, not per file.
    let plan = plan(cli, a)?;
    let results = a.json.then(|| super::report::Batch::new("rewrap"));
    let failures = sealstream::jobs::run(jobs.len(), a.jobs, |i| {
        let r = rewrap_target(cli, a, &plan, &jobs[i].input)?;
        if let Some(b) = &results {
            b.push(r);
        }
        Ok::<(), Error>(())
    });
    batch::batch_report(&jobs, failures, cli.quiet, "rewrapped", results)
}
