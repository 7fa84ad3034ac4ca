//! Ranged decryption (`range::decrypt_range`) of raw or edited files with arbitrary ranges.
//!
//! Raw input: `[mode] [kind] [a: BE32] [b: BE32] file…`; `kind & 3`: 1 = `a-`, 2 = `-b`,
//! else `a-b`; with `kind & 4`, `a` and `b` count back from the claimed end (fuzz/README.md).
//! Structured input: a valid file built from the input, edits, and a range relative to its
//! length and chunks.
//!
//! Checks:
//!
//! * errors are authentication/format errors, or `RangeNotSatisfiable` for an unsatisfiable range
//!   (`InvalidArgument` for a malformed one);
//! * when the whole file decrypts, the ranged read succeeds exactly when the range is
//!   satisfiable, and returns exactly that slice of the full plaintext;
//! * when the plaintext is known (structured), a successful ranged read returns exactly the
//!   HTTP `bytes=` slice of the *original* plaintext, even if the file was edited (a
//!   truncated or extended file must not shift what a range returns); a failed one released
//!   only a prefix of that slice;
//! * whatever is returned agrees with the authenticated prefix a full decrypt released.
#![no_main]

use std::io::Cursor;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sealstream::engine::{self, OpenParams};
use sealstream::envelope;
use sealstream::error::Error;
use sealstream::format::{Context, Header, Layout};
use sealstream::keys::KeyProvider;
use sealstream::range::{self, ByteRange};
use sealstream_fuzz::{
    Case, RangeSpec, Recorder, RunOpts, expected_span, fuzz_key, outcome, stats_enabled, structured,
};

fn raw_range(kind: u8, a: u32, b: u32, claimed_len: u64) -> ByteRange {
    // Bit 2: positions count back from the (claimed) end.
    let at = |x: u32| {
        if kind & 4 != 0 {
            claimed_len.saturating_sub(u64::from(x))
        } else {
            u64::from(x)
        }
    };
    match kind & 3 {
        1 => ByteRange::From(at(a)),
        2 => ByteRange::Suffix(u64::from(b)),
        _ => ByteRange::Inclusive(at(a), at(b)),
    }
}

fn slice(pt: &[u8], span: (u64, u64)) -> &[u8] {
    &pt[span.0 as usize..span.1 as usize]
}

fn check(case: &Case, opts: &RunOpts, range_of: impl FnOnce(u64, u64) -> ByteRange) {
    let Ok((header, header_len)) = Header::parse(&case.file) else {
        return;
    };
    let providers: [&dyn KeyProvider; 1] = [fuzz_key()];
    let cipher = match envelope::unlock(&header, &providers, &Context::new(), opts.backend()) {
        Ok(c) => c,
        Err(e) => {
            assert!(e.is_authentication(), "unlock: {e:?}");
            return;
        }
    };
    let cs = header.chunk_size;
    let body = &case.file[header_len..];
    // Reference: the whole body through the streaming engine.
    let mut full = Recorder::default();
    let full_result = engine::open(
        &cipher,
        cs,
        body,
        &mut full,
        OpenParams::default(),
        &opts.engine(),
    );
    let claimed = Layout::from_lengths(header_len as u64, cs, case.file.len() as u64).ok();
    let claimed_len = claimed.map_or(0, |l| l.plaintext_len);
    // Degenerate ranges (`-0`, END < START) included: the parser never makes them, but
    // library callers can (this target found them underflowing, fixed in 9b59796).
    let r = range_of(claimed_len, u64::from(cs));

    let mut rec = Recorder::default();
    let result = range::decrypt_range(
        Cursor::new(&case.file[..]),
        header_len as u64,
        cs,
        &cipher,
        r,
        &mut rec,
        &opts.engine(),
    );
    let out = &rec.out;
    if stats_enabled() {
        eprintln!(
            "STAT range shape={} unmodified={} full={} range={} result={} out={}",
            if case.truth.is_some() {
                "structured"
            } else {
                "raw"
            },
            case.truth.as_ref().is_some_and(|t| t.unmodified),
            outcome(&full_result),
            match r {
                ByteRange::Inclusive(..) => "inclusive",
                ByteRange::From(_) => "from",
                ByteRange::Suffix(_) => "suffix",
            },
            outcome(&result),
            out.len()
        );
    }
    match &result {
        Ok(s) => assert_eq!(s.plaintext_bytes, out.len() as u64),
        Err(e) => assert!(
            e.is_authentication()
                || matches!(e, Error::InvalidArgument(_) | Error::RangeNotSatisfiable { .. }),
            "unexpected error class: {e:?}"
        ),
    }

    // 1. Against the full decrypt of the same bytes.
    match &full_result {
        Ok(_) => {
            let pt = &full.out;
            match (expected_span(r, pt.len() as u64), &result) {
                (Some(span), Ok(_)) => assert!(out == slice(pt, span), "wrong bytes for {r:?}"),
                (Some(_), Err(e)) => panic!("satisfiable {r:?} failed on a valid file: {e:?}"),
                (None, Ok(_)) => panic!("unsatisfiable {r:?} returned {} bytes", out.len()),
                // Malformed (`-0`, `8-0`): an invalid argument; unsatisfiable: typed.
                (None, Err(e)) => assert!(
                    if r.validate().is_err() {
                        matches!(e, Error::InvalidArgument(_))
                    } else {
                        matches!(e, Error::RangeNotSatisfiable { .. })
                    },
                    "{r:?}: {e:?}"
                ),
            }
        }
        Err(_) => {
            // Whatever the ranged read returned must agree with the authenticated prefix
            // the full decrypt released before it failed.
            if let (Ok(_), Some(l)) = (&result, claimed) {
                let start = range::plan(r, &l).map(|p| p.start).unwrap_or(0) as usize;
                let pre = &full.out;
                if start + out.len() <= pre.len() {
                    assert!(
                        out[..] == pre[start..start + out.len()],
                        "ranged and full decrypt disagree"
                    );
                }
            }
        }
    }

    // 2. Against the original plaintext, when known.
    if let Some(t) = &case.truth {
        let span = expected_span(r, t.plaintext.len() as u64);
        match (&result, span) {
            (Ok(_), Some(span)) => assert!(
                out == slice(&t.plaintext, span),
                "edited file returned other bytes for {r:?}"
            ),
            (Ok(_), None) => panic!("{r:?} is unsatisfiable for the original plaintext"),
            (Err(_), Some(span)) => assert!(slice(&t.plaintext, span).starts_with(out)),
            (Err(_), None) => assert!(out.is_empty()),
        }
        if t.unmodified {
            assert!(full_result.is_ok(), "valid file failed: {full_result:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if rest.len() < 9 {
            return;
        }
        let (kind, a, b) = (
            rest[0],
            u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]),
            u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]),
        );
        let case = Case {
            file: rest[9..].to_vec(),
            truth: None,
        };
        check(&case, &RunOpts::from_bits(mode), |len, _| {
            raw_range(kind, a, b, len)
        });
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(s) = structured(&mut u) else { return };
    let Ok(opts) = RunOpts::arbitrary(&mut u) else {
        return;
    };
    let Ok(spec) = RangeSpec::arbitrary(&mut u) else {
        return;
    };
    let case = s.case();
    check(&case, &opts, |len, cs| spec.resolve(len, cs));
});
