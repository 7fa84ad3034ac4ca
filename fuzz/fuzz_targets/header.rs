//! Header parsing: `Header::parse` must never panic; whatever it accepts re-serializes
//! (`to_bytes`) to exactly the bytes it consumed and re-parses to an equal header; and the
//! streaming reader `Header::read_from` agrees with `parse` on the same bytes (same header
//! and length, or the same error).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealstream::error::Error;
use sealstream::format::{Header, Layout};

fuzz_target!(|data: &[u8]| {
    let parsed = Header::parse(data);
    let streamed = Header::read_from(&mut &data[..]);
    match (&parsed, &streamed) {
        (Ok((h, len)), Ok((h2, len2))) => {
            assert_eq!(h, h2, "read_from and parse disagree");
            assert_eq!(len, len2);
        }
        // Including short inputs: this target found read_from calling a short
        // non-sealstream input Truncated where parse says BadMagic (fixed in 9b59796;
        // fuzz/regressions/header, tests/fuzz_regressions.rs).
        (Err(e), Err(Error::Header(e2))) if e == e2 => {}
        _ => panic!("parse = {parsed:?}, read_from = {streamed:?}"),
    }
    let Ok((h, len)) = parsed else { return };
    assert!(len <= data.len());
    assert_eq!(len, h.serialized_len());
    let bytes = h.to_bytes().expect("a parsed header re-serializes");
    assert!(
        bytes == data[..len],
        "re-serialization differs from the input"
    );
    let (again, len2) = Header::parse(&bytes).expect("re-serialized header parses");
    assert_eq!(again, h);
    assert_eq!(len2, len);
    assert_eq!(again.digest(), h.digest());
    // The layout arithmetic on the claimed length must not panic either.
    if let Ok(l) = Layout::from_lengths(len as u64, h.chunk_size, data.len() as u64) {
        assert_eq!(l.total_len(), data.len() as u64);
        let last = l.chunk_count - 1;
        assert_eq!(
            l.chunk_offset(last) + l.chunk_ciphertext_len(last),
            data.len() as u64
        );
    }
});
