//! Batch mode: several inputs or whole directories into `--output-dir`, a few files at a
//! time, one progress bar, and every file's failure reported without losing the others.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Args;
use sealstream::engine::EngineOptions;
use sealstream::error::{Error, Result};

use super::exit::{self, Failure};
use super::output::AtomicFile;
use super::{Cli, Outcome, help, note, report};

/// One file to process.
#[derive(Debug, Clone)]
pub struct Job {
    /// Source file.
    pub input: PathBuf,
    /// Destination file.
    pub output: PathBuf,
}

/// Lists the jobs for `inputs` (files, or directories walked recursively) into `out_dir`,
/// naming each output with `rename` (applied to the file name).
pub fn plan(
    inputs: &[PathBuf],
    out_dir: &Path,
    rename: &dyn Fn(&str) -> String,
) -> Result<Vec<Job>> {
    let mut jobs = Vec::new();
    for input in inputs {
        // An input that cannot be read fails on its own when its job runs, with the others
        // still processed.
        if input.is_dir() {
            let base = input.file_name().map(PathBuf::from).unwrap_or_default();
            walk(input, &out_dir.join(base), rename, &mut jobs)?;
        } else {
            let name = input
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("'{}' has no file name", input.display()))
                })?;
            jobs.push(Job {
                input: input.clone(),
                output: out_dir.join(rename(&name)),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    for j in &jobs {
        if !seen.insert(j.output.clone()) {
            return Err(Error::InvalidArgument(format!(
                "two inputs would both be written to '{}'",
                j.output.display()
            )));
        }
    }
    Ok(jobs)
}

fn walk(
    dir: &Path,
    out: &Path,
    rename: &dyn Fn(&str) -> String,
    jobs: &mut Vec<Job>,
) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(format!("reading directory '{}'", dir.display()), e))?
        .filter_map(|e| e.ok())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        // Symlinks are skipped: following them could loop or leave the tree.
        let Ok(ft) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if ft.is_dir() {
            walk(&path, &out.join(&name), rename, jobs)?;
        } else if ft.is_file() {
            jobs.push(Job {
                input: path,
                output: out.join(rename(&name)),
            });
        }
    }
    Ok(())
}

/// Runs `work` on every job with `concurrency` files in flight (the library's job pool).
/// Each output is written to a temporary and committed only on success. Returns the
/// failures in job order.
pub fn run<F>(jobs: &[Job], concurrency: usize, force: bool, work: F) -> Vec<(usize, Error)>
where
    F: Fn(&Job, File, &mut dyn Write) -> Result<()> + Sync,
{
    sealstream::jobs::run(jobs.len(), concurrency, |i| one(&jobs[i], force, &work))
}

fn one<F>(job: &Job, force: bool, work: &F) -> Result<()>
where
    F: Fn(&Job, File, &mut dyn Write) -> Result<()> + Sync,
{
    let input = File::open(&job.input)
        .map_err(|e| Error::io(format!("opening input '{}'", job.input.display()), e))?;
    if let Some(dir) = job.output.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating '{}'", dir.display()), e))?;
    }
    let mut out = AtomicFile::create(&job.output, force)?;
    {
        let file = out.file()?;
        let mut w = io::BufWriter::with_capacity(1 << 20, file);
        work(job, input, &mut w)?;
        w.flush().map_err(|e| Error::io("writing output", e))?;
    }
    out.commit()
}

/// `--include` / `--exclude` as the AWS CLI applies them: every file is included, then
/// each filter in the order given includes or excludes the relative paths it matches, the
/// last match winning. `*` matches across '/', as the AWS CLI's fnmatch does.
#[derive(Debug, Default)]
pub struct Filters {
    rules: Vec<(bool, globset::GlobMatcher)>,
}

impl Filters {
    /// Filters from `(include?, pattern)` in command-line order.
    pub fn new(rules: &[(bool, String)]) -> Result<Filters> {
        let mut out = Vec::with_capacity(rules.len());
        for (include, pat) in rules {
            let g = globset::GlobBuilder::new(pat)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| {
                    Error::InvalidArgument(format!(
                        "--{} {pat:?}: {e}",
                        if *include { "include" } else { "exclude" }
                    ))
                })?;
            out.push((*include, g.compile_matcher()));
        }
        Ok(Filters { rules: out })
    }

    /// Whether the file at `rel` (relative to the source, '/'-separated) is transferred.
    pub fn admits(&self, rel: &str) -> bool {
        let mut keep = true;
        for (include, g) in &self.rules {
            if g.is_match(rel) {
                keep = *include;
            }
        }
        keep
    }
}

/// What walking a source tree found: the files to transfer (relative paths, sorted) and
/// the symbolic links it did not follow (reported, never silently dropped).
#[derive(Debug, Default)]
pub struct Tree {
    /// Files to transfer: (absolute source path, relative '/'-separated path).
    pub files: Vec<(PathBuf, String)>,
    /// Symbolic links left alone (relative paths).
    pub symlinks: Vec<String>,
}

/// Walks `src` (a directory) as `aws s3 cp --recursive` does: every regular file below it
/// by its path relative to `src`, filtered; symlinks are not followed.
pub fn walk_tree(src: &Path, filters: &Filters) -> Result<Tree> {
    if !src.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "--recursive needs a directory (or an s3:// prefix) as its source; '{}' is not one",
            src.display()
        )));
    }
    let mut tree = Tree::default();
    for entry in walkdir::WalkDir::new(src)
        .follow_links(false)
        .sort_by_file_name()
        .min_depth(1)
    {
        let entry = entry.map_err(|e| {
            let path = e
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            Error::io(
                format!("walking '{path}'"),
                e.into_io_error()
                    .unwrap_or_else(|| io::Error::other("a directory loop")),
            )
        })?;
        let rel = relative(src, entry.path())?;
        let ft = entry.file_type();
        if ft.is_symlink() {
            if filters.admits(&rel) {
                tree.symlinks.push(rel);
            }
        } else if ft.is_file() && filters.admits(&rel) {
            tree.files.push((entry.path().to_path_buf(), rel));
        }
    }
    Ok(tree)
}

/// `path` below `base` as a '/'-separated relative path (UTF-8 only: object keys are).
fn relative(base: &Path, path: &Path) -> Result<String> {
    let rel = path.strip_prefix(base).map_err(|_| {
        Error::InvalidArgument(format!(
            "'{}' is not below '{}'",
            path.display(),
            base.display()
        ))
    })?;
    let mut parts = Vec::new();
    for c in rel.components() {
        let s = c.as_os_str().to_str().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "'{}' is not valid UTF-8; rename it (object keys and reports are UTF-8)",
                path.display()
            ))
        })?;
        parts.push(s);
    }
    Ok(parts.join("/"))
}

/// Several files at once.
#[derive(Debug, Args)]
pub struct BatchArgs {
    /// Write one output per input into DIR (directories are walked recursively and their
    /// layout kept; encrypt adds `.seal`, decrypt removes it or else adds `.dec`).
    #[arg(long, value_name = "DIR", help_heading = help::OUTPUT)]
    pub output_dir: Option<PathBuf>,
    /// Files processed at once in batch mode; memory is about jobs × the per-file bound.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = super::values::jobs(), help_heading = help::OUTPUT)]
    pub jobs: usize,
    /// Transfer a whole tree as `aws s3 cp --recursive` does: INPUT is a directory or
    /// s3://BUCKET/PREFIX/, -o the destination directory or prefix, and SRC/a/b goes to
    /// DEST/a/b (encrypt adds .seal to local files, decrypt removes it), so a round trip
    /// restores the tree. Existing outputs are skipped unless --force; symlinks are
    /// reported, not followed.
    #[arg(short = 'r', long, conflicts_with = "output_dir", help_heading = help::OUTPUT)]
    pub recursive: bool,
    /// --include/--exclude/--dryrun.
    #[command(flatten)]
    pub tree: TreeArgs,
}

/// The options of a walk over a directory or an S3 prefix (`--recursive`), shared by
/// encrypt, decrypt and rewrap.
#[derive(Debug, Args)]
pub struct TreeArgs {
    /// With --recursive: leave out files whose path relative to the source matches
    /// PATTERN (`*` crosses '/'; repeatable; with --include, the last match wins).
    #[arg(long, value_name = "PATTERN", help_heading = help::OUTPUT)]
    pub exclude: Vec<String>,
    /// With --recursive: take back files matching PATTERN that an earlier --exclude left out.
    #[arg(long, value_name = "PATTERN", help_heading = help::OUTPUT)]
    pub include: Vec<String>,
    /// With --recursive: print what would be done (on stdout) and do nothing.
    #[arg(long, help_heading = help::OUTPUT)]
    pub dryrun: bool,
    /// --include/--exclude in command-line order (filled from the parsed matches: the order
    /// decides which wins).
    #[arg(skip)]
    pub filters: Vec<(bool, String)>,
}

impl TreeArgs {
    /// The options that only `--recursive` uses (clap's `requires` is satisfied by a flag's
    /// default value, so it is checked here).
    pub(super) fn check(&self, recursive: bool) -> Result<()> {
        if !recursive && (!self.filters.is_empty() || self.dryrun) {
            return Err(Error::InvalidArgument(
                "--include, --exclude and --dryrun go with --recursive".into(),
            ));
        }
        Ok(())
    }
}

impl BatchArgs {
    /// See [`TreeArgs::check`].
    pub(super) fn check(&self) -> Result<()> {
        self.tree.check(self.recursive)
    }
}

/// The `--include`/`--exclude` values of a command in command-line order.
pub(super) fn ordered_filters(m: &clap::ArgMatches) -> Vec<(bool, String)> {
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

/// Engine threads per file in a batch: the cores shared among the files in flight.
pub(super) fn batch_engine<'a>(
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

pub(super) fn batch_total(jobs: &[Job]) -> u64 {
    jobs.iter()
        .filter_map(|j| std::fs::metadata(&j.input).ok())
        .map(|m| m.len())
        .sum()
}

/// Reports each failure, then a summary; the first failure's exit code is the batch's.
/// With `--json` (`json` set), first one line per stored result, then one per failure.
pub(super) fn batch_report(
    jobs: &[Job],
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

#[cfg(test)]
mod tree_tests {
    use super::*;

    #[test]
    fn filters_apply_in_order_last_match_wins() {
        let f = Filters::new(&[
            (false, "*".into()),
            (true, "*.txt".into()),
            (false, "logs/*".into()),
        ])
        .unwrap();
        assert!(f.admits("a.txt"));
        assert!(f.admits("deep/dir/b.txt"), "* crosses '/'");
        assert!(!f.admits("c.bin"));
        assert!(!f.admits("logs/d.txt"));
        assert!(Filters::default().admits("anything"));
        assert!(Filters::new(&[(true, "[".into())]).is_err());
    }

    #[test]
    fn walk_reports_symlinks_and_filters() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("src");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::write(root.join("top.txt"), b"1").unwrap();
        std::fs::write(root.join("a/b/deep.txt"), b"2").unwrap();
        std::fs::write(root.join("a/skip.bin"), b"3").unwrap();
        std::os::unix::fs::symlink(root.join("top.txt"), root.join("a/link.txt")).unwrap();
        let f = Filters::new(&[(false, "*.bin".into())]).unwrap();
        let t = walk_tree(&root, &f).unwrap();
        let rels: Vec<&str> = t.files.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(rels, ["a/b/deep.txt", "top.txt"]);
        assert_eq!(t.symlinks, ["a/link.txt"]);
        assert!(walk_tree(&root.join("top.txt"), &f).is_err());
    }
}
