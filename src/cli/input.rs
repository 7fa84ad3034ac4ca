//! The input side of the local commands: stdin or a file, and the checks made before
//! reading it.

use std::fs::File;
use std::path::{Path, PathBuf};

use sealstream::error::{Error, Result};

/// A local command's input: stdin (length unknown) or an open file with its length when
/// it is a regular file (a FIFO, a character device or a process substitution such as
/// `<(cmd)` has no length to trust: its metadata says 0).
pub(super) enum Input {
    Stdin,
    File(File, Option<u64>),
}

/// Opens INPUT (absent or `-` = stdin).
pub(super) fn open_input(p: Option<&Path>) -> Result<Input> {
    match p {
        None => Ok(Input::Stdin),
        Some(p) if p.as_os_str() == "-" => Ok(Input::Stdin),
        Some(p) => {
            let shown = p.display().to_string();
            let f = File::open(p).map_err(|e| Error::io(format!("opening input '{shown}'"), e))?;
            let meta = f
                .metadata()
                .map_err(|e| Error::io(format!("opening input '{shown}'"), e))?;
            Ok(Input::File(f, meta.is_file().then_some(meta.len())))
        }
    }
}

/// Whether INPUT and OUTPUT are one file (writing would destroy the input as it is read).
pub(super) fn same_file(input: Option<&Path>, output: Option<&Path>) -> bool {
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

/// An input as a result names it: its path, or `-` for stdin.
pub(super) fn shown_input(p: Option<&Path>) -> String {
    p.map_or_else(|| "-".to_string(), |p| p.display().to_string())
}

/// The one input of a single-file command (stdin when absent).
pub(super) fn single_input(inputs: &[PathBuf]) -> Result<Option<&Path>> {
    if inputs.len() > 1 {
        return Err(Error::InvalidArgument(
            "several inputs need --output-dir DIR (one output file per input)".into(),
        ));
    }
    let p = inputs.first().map(PathBuf::as_path);
    if let Some(p) = p.filter(|p| p.is_dir()) {
        return Err(Error::InvalidArgument(format!(
            "'{}' is a directory; use --output-dir DIR to process the files in it",
            p.display()
        )));
    }
    Ok(p)
}
