//! Command-line value parsers: `size::parse_size`, `range::ByteRange::parse` and the
//! binary's `parse_context` (src/cli/parse.rs, included with `#[path]`: the CLI is not
//! library API) never panic.
//!
//! Input: UTF-8 text split on `\n`: line 1 is a size, line 2 a range, every further line a
//! `-c KEY=VALUE` argument. Checks: a parsed size prints and re-parses to itself; a parsed
//! range is never degenerate (`START <= END`, suffix >= 1) and re-parses from its canonical
//! text; a parsed context holds exactly the given pairs, and its canonical block survives a
//! trip through a header.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The binary's own parsers, compiled into this target as they are into the binary.
#[path = "../../src/cli/parse.rs"]
#[allow(dead_code)]
mod parse;
use sealstream::error::Error;
use sealstream::format::{Header, Stanza, Suite};
use sealstream::range::ByteRange;
use sealstream::size::parse_size;

fn range_text(r: ByteRange) -> String {
    match r {
        ByteRange::Inclusive(s, e) => format!("{s}-{e}"),
        ByteRange::From(s) => format!("{s}-"),
        ByteRange::Suffix(n) => format!("-{n}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let size = lines.next().unwrap_or("");
    let range = lines.next().unwrap_or("");
    let pairs: Vec<String> = lines.map(str::to_string).collect();

    if let Ok(n) = parse_size(size) {
        assert_eq!(parse_size(&n.to_string()), Ok(n));
    }

    match ByteRange::parse(range) {
        Ok(r) => {
            match r {
                ByteRange::Inclusive(s, e) => assert!(s <= e, "{range:?} -> {r:?}"),
                ByteRange::Suffix(n) => assert!(n >= 1, "{range:?} -> {r:?}"),
                ByteRange::From(_) => {}
            }
            assert_eq!(ByteRange::parse(&range_text(r)).ok(), Some(r));
        }
        Err(e) => assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}"),
    }

    match parse::parse_context(&pairs) {
        Ok(ctx) => {
            assert_eq!(ctx.len(), pairs.len());
            for p in &pairs {
                let (k, v) = p.split_once('=').expect("accepted pairs contain '='");
                assert_eq!(ctx.get(k), Some(v));
            }
            // The canonical encoding survives a header round trip (parse re-checks order,
            // UTF-8 and every limit the constructor enforced).
            let h = Header {
                suite: Suite::Aes256Gcm,
                chunk_size: 4096,
                salt: [0; 32],
                commitment: [0; 32],
                context: ctx.clone(),
                stanzas: vec![Stanza {
                    provider: "local".into(),
                    key_id: "k".into(),
                    wrapped: vec![0],
                }],
            };
            let bytes = h.to_bytes().expect("a valid context fits a header");
            let (back, len) = Header::parse(&bytes).expect("header with that context parses");
            assert_eq!(len, bytes.len());
            assert_eq!(back.context, ctx);
            assert_eq!(back.context.to_bytes(), ctx.to_bytes());
        }
        Err(e) => assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}"),
    }
});
