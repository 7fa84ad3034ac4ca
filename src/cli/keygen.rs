//! `sealstream keygen`: a new local key-encryption key, to a file or stdout.

use std::io::{self, Write};
use std::path::Path;

use super::note;
use sealstream::error::{Error, Result};
use sealstream::keys::local::LocalKey;

/// `keygen [-o FILE]`: a new key to FILE (never replacing one) or to stdout.
pub(super) fn keygen(out: Option<&Path>, quiet: bool) -> Result<()> {
    let key = LocalKey::generate()?;
    match out {
        Some(p) if p.as_os_str() != "-" => {
            // keygen has no --force (replacing a key loses every file wrapped for it): say
            // what to do instead of the generic "pass --force" of other outputs.
            key.save_new(p).map_err(|e| match e {
                Error::OutputExists(shown) => Error::io(
                    format!("writing the key to '{shown}'"),
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file is already there and keygen never replaces one (a replaced \
                         key can no longer open the files wrapped for it); choose another \
                         path, or move the old file away first",
                    ),
                ),
                e => e,
            })?;
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
