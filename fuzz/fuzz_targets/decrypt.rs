//! Whole-file decryption (`envelope::decrypt`) with the fixed key `[7; 32]`.
//!
//! Input shapes (fuzz/src/lib.rs): raw file bytes, or a valid file built from the input and
//! then edited. Checks, beyond "no panic, no hang":
//!
//! * every error is an authentication/format error (exit 4), or the injected writer error;
//! * only authenticated chunks are released: the output is always a multiple of the chunk
//!   size on error, and (when the plaintext is known) a prefix of it;
//! * on success the output is exactly the plaintext (whenever the file was derived from a
//!   valid one, edited or not: an edit that still decrypts must not change a byte);
//! * an unmodified valid file with a satisfiable expected context always decrypts;
//! * ring and RustCrypto backends agree on output and error, byte for byte;
//! * a failing writer is always reported as an error.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sealstream::envelope::{self, DecryptParams};
use sealstream::error::Error;
use sealstream::format::{Context, Header};
use sealstream::keys::KeyProvider;
use sealstream::Backend;
use sealstream_fuzz::{
    Case, Recorder, RunOpts, Truth, fuzz_key, outcome, stats_enabled, structured,
};

/// What the decryptor requires of the context (structured mode only).
#[derive(Arbitrary, Debug)]
enum Expect {
    Nothing,
    SameAsFile,
    Pair(String, String),
}

struct Outcome {
    result: Result<u64, Error>,
    out: Vec<u8>,
    writer_failed: bool,
}

fn run(
    file: &[u8],
    expected: &Context,
    opts: &RunOpts,
    backend: Backend,
    fail_after: Option<usize>,
) -> Outcome {
    let providers: [&dyn KeyProvider; 1] = [fuzz_key()];
    let params = DecryptParams {
        expected_context: expected.clone(),
        backend,
        engine: opts.engine(),
    };
    let mut rec = Recorder {
        fail_after,
        ..Recorder::default()
    };
    let result = envelope::decrypt(file, &mut rec, &providers, &params).map(|s| {
        assert_eq!(s.plaintext_bytes, rec.out.len() as u64, "stats disagree");
        s.plaintext_bytes
    });
    Outcome {
        result,
        out: rec.out,
        writer_failed: rec.failed,
    }
}

fn check(case: &Case, expected: &Context, opts: &RunOpts, fail_after: Option<usize>) {
    let header_cs = Header::parse(&case.file)
        .ok()
        .map(|(h, _)| h.chunk_size as usize);

    let o = run(&case.file, expected, opts, Backend::Ring, fail_after);
    if stats_enabled() {
        eprintln!(
            "STAT decrypt shape={} unmodified={} writer_fails={} result={} out={}",
            if case.truth.is_some() {
                "structured"
            } else {
                "raw"
            },
            case.truth.as_ref().is_some_and(|t| t.unmodified),
            o.writer_failed,
            outcome(&o.result),
            o.out.len()
        );
    }
    if fail_after.is_none() {
        // Differential: the second backend must behave identically.
        let o2 = run(&case.file, expected, opts, Backend::RustCrypto, None);
        assert_eq!(o.out, o2.out, "backends released different output");
        let e1 = o.result.as_ref().map_err(|e| e.to_string());
        let e2 = o2.result.as_ref().map_err(|e| e.to_string());
        assert_eq!(e1, e2, "backends disagree");
    }

    match &o.result {
        Ok(_) => {
            assert!(!o.writer_failed, "a failed write was not reported");
            if let Some(t) = &case.truth {
                assert!(o.out == t.plaintext, "decrypted to something else");
            }
        }
        Err(e) => {
            if o.writer_failed {
                assert!(matches!(e, Error::Io { .. }), "write failure became {e:?}");
            } else {
                assert!(e.is_authentication(), "unexpected error class: {e:?}");
            }
            if let Some(cs) = header_cs {
                // Output length is limited by the writer when it failed; otherwise only
                // whole, authenticated chunks were released.
                if !o.writer_failed {
                    assert_eq!(o.out.len() % cs, 0, "partial chunk released: {e:?}");
                }
            } else {
                assert!(o.out.is_empty(), "output without a header: {e:?}");
            }
            if let Some(t) = &case.truth {
                assert!(
                    t.plaintext.starts_with(&o.out),
                    "released bytes are not a prefix of the plaintext: {e:?}"
                );
                must_succeed(t, expected, o.writer_failed, e);
            }
        }
    }
}

/// An unmodified valid file whose context satisfies the expectation must decrypt.
fn must_succeed(t: &Truth, expected: &Context, writer_failed: bool, e: &Error) {
    if t.unmodified && !writer_failed && t.context.require(expected).is_ok() {
        panic!("a valid file failed to decrypt: {e:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // Raw file bytes.
        let case = Case {
            file: rest.to_vec(),
            truth: None,
        };
        check(&case, &Context::new(), &RunOpts::from_bits(mode), None);
        return;
    }
    let mut u = Unstructured::new(rest);
    let Ok(s) = structured(&mut u) else { return };
    let Ok(opts) = RunOpts::arbitrary(&mut u) else {
        return;
    };
    let expect = Expect::arbitrary(&mut u).unwrap_or(Expect::Nothing);
    let fail_after: Option<u16> = Option::arbitrary(&mut u).unwrap_or(None);
    let case = s.case();
    let truth = case.truth.as_ref().expect("structured cases have a truth");
    let expected = match expect {
        Expect::Nothing => Context::new(),
        Expect::SameAsFile => truth.context.clone(),
        Expect::Pair(k, v) => Context::from_pairs([(k, v)]).unwrap_or_default(),
    };
    check(&case, &expected, &opts, fail_after.map(usize::from));
});
