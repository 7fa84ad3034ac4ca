//! Typed flag values: clap parses each flag straight into the type the library takes
//! (`Backend`, `Suite`, a chunk size as `u32`, a part size, a byte count, a `ByteRange`,
//! bounded counts), and each bound is checked here, once, against the library's constants
//! where the library has one.
//!
//! A bad value is therefore a usage error (exit 2) whose message names the flag, raised
//! before any key is loaded or any file or object is touched; the commands never compare
//! strings or re-check limits later.

use clap::builder::{PossibleValuesParser, RangedU64ValueParser, TypedValueParser};
use sealstream::Backend;
use sealstream::format::{Suite, limits};
use sealstream::range::ByteRange;
use sealstream::size::parse_size;

/// The body cipher suites `--suite` offers, by their library names.
const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];

/// `--backend ring|rustcrypto` as the library's [`Backend`] (the names are the CLI's; the
/// library has no textual form for its backends).
pub fn backend() -> impl TypedValueParser<Value = Backend> {
    PossibleValuesParser::new(["ring", "rustcrypto"]).map(|s| match s.as_str() {
        "rustcrypto" => Backend::RustCrypto,
        _ => Backend::Ring,
    })
}

/// `--suite NAME` as a [`Suite`], offering exactly the names [`Suite::from_name`] accepts
/// (listed in the help and in completions).
pub fn suite() -> impl TypedValueParser<Value = Suite> {
    PossibleValuesParser::new(SUITES.map(Suite::name))
        .try_map(|s| Suite::from_name(&s).ok_or_else(|| format!("unknown suite '{s}'")))
}

/// `--chunk-size SIZE`: plaintext bytes per chunk, within the format's limits
/// ([`limits::MIN_CHUNK_SIZE`]..=[`limits::MAX_CHUNK_SIZE`]).
pub fn chunk_size(s: &str) -> Result<u32, String> {
    let n = parse_size(s)?;
    let (min, max) = (limits::MIN_CHUNK_SIZE, limits::MAX_CHUNK_SIZE);
    u32::try_from(n)
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| {
            format!(
                "{n} bytes is outside {}..{}",
                shown(u64::from(min)),
                shown(u64::from(max))
            )
        })
}

/// `--part-size SIZE`: plaintext bytes per S3 part and ranged GET, within S3's part limits
/// ([`sealstream::s3::MIN_PART_SIZE`]..=[`sealstream::s3::MAX_PART_SIZE`]).
pub fn part_size(s: &str) -> Result<u64, String> {
    let n = parse_size(s)?;
    let (min, max) = (sealstream::s3::MIN_PART_SIZE, sealstream::s3::MAX_PART_SIZE);
    if !(min..=max).contains(&n) {
        return Err(format!(
            "{n} bytes is outside S3's part limits {}..{}",
            shown(min),
            shown(max)
        ));
    }
    Ok(n)
}

/// A byte count such as `--cache-max-bytes 100GiB` (sizes and sums, as everywhere).
pub fn bytes(s: &str) -> Result<u64, String> {
    parse_size(s)
}

/// `--concurrency N`: 1..=[`sealstream::s3::MAX_CONCURRENCY`], the bound the library's
/// settings check too.
pub fn concurrency() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=sealstream::s3::MAX_CONCURRENCY as u64)
}

/// `--jobs N` (files or objects at once in a batch or a recursive walk): 1..=256, as for
/// `--concurrency`: each job holds its own buffers and connections.
pub fn jobs() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=256)
}

/// `--kms-max-decrypts N`: 1..=32. The cap is the CLI's (the library takes any bound a
/// service chooses): enough for every stanza a real file carries, few enough that a hostile
/// file cannot turn one decrypt into a storm of billed KMS calls.
pub fn kms_max_decrypts() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::<usize>::new().range(1..=32)
}

/// `--range START-END|START-|-N` as a [`ByteRange`] (the library's parser and message).
pub fn byte_range(s: &str) -> Result<ByteRange, String> {
    ByteRange::parse(s).map_err(|e| e.to_string())
}

/// A limit as the help text writes it (`4KiB`, `16MiB`, `5GiB`), else in bytes.
fn shown(n: u64) -> String {
    for (unit, name) in [(1u64 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")] {
        if n >= unit && n.is_multiple_of(unit) {
            return format!("{}{name}", n / unit);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_is_checked_against_the_format_limits() {
        assert_eq!(chunk_size("4KiB"), Ok(limits::MIN_CHUNK_SIZE));
        assert_eq!(chunk_size("16MiB"), Ok(limits::MAX_CHUNK_SIZE));
        assert_eq!(chunk_size("64KiB"), Ok(65536));
        for bad in ["4095", "16MiB+1", "1TiB", "12XB", ""] {
            assert!(chunk_size(bad).is_err(), "{bad}");
        }
        assert_eq!(
            chunk_size("1KiB").unwrap_err(),
            "1024 bytes is outside 4KiB..16MiB"
        );
    }

    #[test]
    fn part_size_is_checked_against_s3s_limits() {
        assert_eq!(part_size("5MiB"), Ok(sealstream::s3::MIN_PART_SIZE));
        assert_eq!(part_size("5GiB"), Ok(sealstream::s3::MAX_PART_SIZE));
        assert!(part_size("5242879").is_err());
        assert!(part_size("4MiB").is_err());
        assert!(part_size("5GiB+1").is_err());
        assert_eq!(
            part_size("1MiB").unwrap_err(),
            "1048576 bytes is outside S3's part limits 5MiB..5GiB"
        );
    }

    #[test]
    fn every_offered_suite_name_is_the_librarys() {
        for s in SUITES {
            assert_eq!(Suite::from_name(s.name()), Some(s));
        }
    }

    #[test]
    fn limits_are_shown_in_binary_units() {
        assert_eq!(shown(4096), "4KiB");
        assert_eq!(shown(5 << 30), "5GiB");
        assert_eq!(shown(1000), "1000");
    }
}
