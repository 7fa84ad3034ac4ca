//! Batch mode: several inputs or whole directories into `--output-dir`, a few files at a
//! time, one progress bar, and every file's failure reported without losing the others.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sealstream::error::{Error, Result};

use super::output::AtomicFile;

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

/// Runs `work` on every job with `concurrency` files in flight. Each output is written to a
/// temporary and committed only on success. Returns the failures in job order.
pub fn run<F>(jobs: &[Job], concurrency: usize, force: bool, work: F) -> Vec<(usize, Error)>
where
    F: Fn(&Job, File, &mut dyn Write) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..concurrency.clamp(1, jobs.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(i) else { break };
                    if let Err(e) = one(job, force, &work)
                        && let Ok(mut f) = failures.lock()
                    {
                        f.push((i, e));
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().unwrap_or_default();
    f.sort_by_key(|(i, _)| *i);
    f
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
