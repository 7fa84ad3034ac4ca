//! The S3 object form's metadata parser (`s3::object`): `locate` never panics on any user
//! metadata, an inline header it accepts re-serializes to the same bytes and is placed back
//! inline by `place`, and a companion header is accepted only with the pinned commitment;
//! the object-form version 2 reader (`part_wise`) never panics and keeps the rest intact.
//!
//! Input: `name\tvalue` lines (names lowercased, as S3 returns them); after a NUL byte, the
//! bytes of a companion object.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sealstream::s3::object::{self, HeaderLocation};

fuzz_target!(|data: &[u8]| {
    let (meta_part, companion) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(meta_part) else {
        return;
    };
    let meta: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    // Object-form version 2 (FORMAT.md §17): the manifest pointer, then the version-1 view
    // its header placement is read from.
    match object::part_wise(&meta) {
        Err(msg) => assert!(!msg.is_empty()),
        Ok(Some((name, v1))) => {
            assert!(!name.is_empty() && name.len() <= object::MAX_KEY_LEN);
            assert_eq!(meta.get(object::META_FORMAT).map(String::as_str), Some("2"));
            assert_eq!(v1.get(object::META_FORMAT).map(String::as_str), Some("1"));
            // The view differs from the metadata in the version only.
            assert_eq!(v1.len(), meta.len());
            let _ = object::locate(&v1);
        }
        Ok(None) => assert_ne!(meta.get(object::META_FORMAT).map(String::as_str), Some("2")),
    }
    match object::locate(&meta) {
        Err(msg) => assert!(!msg.is_empty()),
        Ok(HeaderLocation::Inline(bytes)) => {
            assert!(bytes.len() <= object::MAX_HEADER_B64_LEN);
            if let Ok(h) = object::parse_header(&bytes, None) {
                let again = h.to_bytes().expect("a parsed header serializes");
                assert_eq!(again, bytes, "inline header does not round-trip");
                if let Ok(p) = object::place(&bytes, &h.commitment, "k", 0, 1) {
                    let m: BTreeMap<String, String> = p.metadata.into_iter().collect();
                    match (p.companion, object::locate(&m)) {
                        (None, Ok(HeaderLocation::Inline(b))) => assert_eq!(b, bytes),
                        (Some((_, b)), Ok(HeaderLocation::Companion { commitment, .. })) => {
                            assert_eq!(b, bytes);
                            assert_eq!(commitment, h.commitment);
                        }
                        (c, l) => panic!("place/locate disagree: {c:?} {l:?}"),
                    }
                }
            }
        }
        Ok(HeaderLocation::Companion { key, commitment }) => {
            assert!(!key.is_empty() && key.len() <= object::MAX_KEY_LEN);
            if let Ok(h) = object::parse_header(companion, Some(&commitment)) {
                assert_eq!(h.commitment, commitment);
                assert_eq!(h.to_bytes().expect("serializes"), companion);
            }
        }
        // `locate` reads metadata only: a header in the body is `S3::open_object`'s finding.
        Ok(other) => panic!("locate found {other:?} in metadata"),
    }
});
