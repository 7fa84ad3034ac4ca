//! Parsing of human sizes (`64KiB`, `1GiB+5`), as people write chunk sizes, part sizes and
//! byte offsets: public so that a service reading such values from its configuration or a
//! request accepts exactly what the command line accepts.

/// Parses a size: digits with an optional binary suffix (`K`/`KiB`, `M`/`MiB`, `G`/`GiB`,
/// `T`/`TiB`, case-insensitive), or a sum of such terms joined by `+`.
///
/// Decimal suffixes (`KB`, `MB`) are rejected rather than guessed.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let mut total: u64 = 0;
    for term in s.split('+') {
        let v = parse_term(term.trim())?;
        total = total
            .checked_add(v)
            .ok_or_else(|| format!("'{s}' is too large"))?;
    }
    Ok(total)
}

fn parse_term(t: &str) -> Result<u64, String> {
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "'{t}' is not a size (expected e.g. 4096, 64KiB, 1GiB)"
        ));
    }
    let n: u64 = digits.parse().map_err(|_| format!("'{t}' is too large"))?;
    let mult: u64 = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => {
            return Err(format!(
                "unknown size suffix '{other}' (use KiB, MiB, GiB or TiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("'{t}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("64KiB").unwrap(), 65536);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("3GiB+1MiB").unwrap(), 3 * (1 << 30) + (1 << 20));
        assert!(parse_size("1MB").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("x").is_err());
        assert!(parse_size("99999999999999999999").is_err());
        assert!(parse_size("16777216T").is_err());
    }
}
