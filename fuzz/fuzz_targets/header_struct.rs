//! Structure-aware header fuzzing: an arbitrary `Header` value (fields inside and outside
//! every limit) is serialized; `to_bytes` must refuse exactly the headers docs/FORMAT.md
//! forbids (checked against an independent statement of the limits), and whatever it writes
//! must parse back unchanged. The bytes, with a short body, are then mutated and each
//! version goes through the same checks as the `header` target. See
//! `sealstream_fuzz::header`.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use sealstream_fuzz::header::HeaderSpec;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = HeaderSpec::arbitrary_take_rest(Unstructured::new(data)) {
        spec.check();
    }
});
