//! The Amazon S3 Encryption Client's content-metadata parser (`s3::s3ec::metadata`), whose
//! every input (object metadata, instruction file) an attacker with write access to the
//! bucket controls: `parse` never panics and fails with a typed error that has a sentence;
//! what it accepts is self-consistent (a KMS ciphertext of 1..=6144 bytes, V3 with its
//! commitment, fixed IV and the content cipher bound in the context); and an instruction
//! file is never consulted for an object whose own metadata holds the data key.
//!
//! Input: `name\tvalue` lines (names lowercased, as S3 returns them); after a NUL byte, the
//! bytes of an instruction file.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use sealstream::s3::s3ec::metadata::{self, Placement, Version, Wrapping};

fuzz_target!(|data: &[u8]| {
    let (meta_part, instruction) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let Ok(text) = std::str::from_utf8(meta_part) else {
        return;
    };
    let meta: BTreeMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('\t'))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
        .collect();
    match metadata::parse(&meta, instruction) {
        Err(e) => assert!(!e.to_string().is_empty()),
        Ok(env) => {
            assert!(!env.encrypted_data_key.is_empty());
            assert!(env.encrypted_data_key.len() <= metadata::MAX_ENCRYPTED_DATA_KEY);
            match env.version {
                Version::V3 => {
                    assert!(env.commitment.is_some());
                    assert_eq!(env.iv, [1; metadata::IV_LEN]);
                    assert_eq!(env.aad(), [0, 0x73]);
                }
                Version::V2 => assert!(env.commitment.is_none() && env.aad().is_empty()),
            }
            if env.wrapping == Wrapping::KmsContext {
                let want = if env.version == Version::V3 { "115" } else { "AES/GCM/NoPadding" };
                assert_eq!(
                    env.kms_context.get(metadata::CONTEXT_CEK_ALG).map(String::as_str),
                    Some(want)
                );
            }
            let own = metadata::placement(&meta);
            assert_eq!(env.instruction_file, own != Placement::Object);
            if own == Placement::Object {
                assert_eq!(metadata::parse(&meta, None).as_ref(), Ok(&env));
            }
        }
    }
});
