//! Local key files: `LocalKey::parse(text, "fuzz")` never panics and only fails with a
//! key-file error; a key it accepts re-serializes (`to_text`) and re-parses to the same id,
//! and the id is the key's fingerprint (`lk1-` + 32 lowercase hex digits).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealstream::error::Error;
use sealstream::keys::KeyProvider;
use sealstream::keys::local::LocalKey;

fuzz_target!(|data: &[u8]| {
    // Key files are read with `read_to_string`: non-UTF-8 never reaches the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match LocalKey::parse(text, "fuzz") {
        Ok(k) => {
            let id = k.id().to_string();
            assert_eq!(id.len(), 4 + 32);
            assert!(id.starts_with("lk1-"));
            assert!(
                id[4..]
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert_eq!(k.key_id(), id);
            let again = LocalKey::parse(&k.to_text(), "fuzz").expect("to_text re-parses");
            assert_eq!(again.id(), id);
            assert_eq!(*again.to_text(), *k.to_text());
        }
        Err(e) => assert!(
            matches!(e, Error::KeyFile { ref path, .. } if path == "fuzz"),
            "{e:?}"
        ),
    }
});
