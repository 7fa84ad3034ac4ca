//! Header parsing: `Header::parse` must never panic; whatever it accepts re-serializes
//! (`to_bytes`) to exactly the bytes it consumed and re-parses to an equal header; and the
//! streaming reader `Header::read_from` agrees with `parse` on the same bytes (same header
//! and length, or the same error). The checks live in `sealstream_fuzz::header`, shared with
//! `header_struct`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sealstream_fuzz::header::check_header_bytes(data));
