//! Round trips across sizes at and around chunk and batch boundaries, both suites, several
//! chunk sizes, thread counts and batch geometries, and ring ⇄ RustCrypto cross-checks.

use crate::common;

use common::*;
use proptest::prelude::*;
use sealstream::Backend;
use sealstream::engine::EngineOptions;
use sealstream::envelope::EncryptParams;
use sealstream::format::{Context, Header, Layout, Suite, body_len_for};

const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];

fn sizes(cs: usize) -> Vec<usize> {
    vec![0, 1, cs - 1, cs, cs + 1, 3 * cs - 1, 3 * cs, 3 * cs + 1]
}

#[test]
fn sizes_around_chunk_boundaries_both_suites() {
    let k = key(1);
    for suite in SUITES {
        for cs in [4096u32, 5000, 65536] {
            for len in sizes(cs as usize) {
                let pt = data(len);
                let ct = seal(&pt, &k, suite, cs);
                let hl = header_len(&ct);
                assert_eq!(
                    (ct.len() - hl) as u64,
                    body_len_for(len as u64, cs),
                    "{suite:?} cs={cs} len={len}"
                );
                let layout = Layout::from_lengths(hl as u64, cs, ct.len() as u64).unwrap();
                assert_eq!(layout.plaintext_len, len as u64);
                assert!(open(&ct, &k).unwrap() == pt, "{suite:?} cs={cs} len={len}");
            }
        }
    }
}

#[test]
fn exact_multiple_ends_with_full_final_chunk() {
    // One encoding per plaintext: 2 full chunks, no empty third chunk.
    let k = key(1);
    let ct = seal(&data(8192), &k, Suite::Aes256Gcm, 4096);
    assert_eq!(ct.len() - header_len(&ct), 2 * (4096 + 16));
    let empty = seal(&[], &k, Suite::Aes256Gcm, 4096);
    assert_eq!(
        empty.len() - header_len(&empty),
        16,
        "empty = one empty final chunk"
    );
}

#[test]
fn many_batches_threads_and_batch_geometry() {
    let k = key(2);
    let cs = 4096u32;
    // Small batches force many trips around the buffer pool and every worker.
    for (threads, batch_bytes) in [(1, 4096), (2, 8192), (3, 4096 * 3), (4, 1 << 20)] {
        for len in [0, 4096 * 7, 4096 * 7 + 1, 4096 * 64 - 1, 300_001] {
            let pt = data(len);
            let p = EncryptParams {
                engine: EngineOptions {
                    threads,
                    batch_bytes,
                    progress: None,
                    ..EngineOptions::default()
                },
                ..params(Suite::ChaCha20Poly1305, cs)
            };
            let ct = seal_with(&pt, &[&k], &p);
            let engine = EngineOptions {
                threads: 5 - threads,
                batch_bytes: batch_bytes * 2,
                progress: None,
                ..EngineOptions::default()
            };
            let back = open_with(&ct, &[&k], &Context::new(), Backend::Ring, engine).unwrap();
            assert!(
                back == pt,
                "threads={threads} batch={batch_bytes} len={len}"
            );
        }
    }
}

#[test]
fn output_is_independent_of_threads_and_batches() {
    // Same data key, salt and stanzas → byte-identical files whatever the parallel geometry
    // or backend (nonces depend only on the chunk index); and every geometry opens every
    // file to the same plaintext. (Through `envelope::encrypt` the salt and wrap nonce are
    // random, so the file is built from fixed inputs with `seal_header` + `engine::seal`.)
    use sealstream::keys::{DataKey, KeyProvider};
    let k = key(3);
    let dek = DataKey::from_bytes([0x33; 32]);
    let stanzas = vec![k.wrap(&dek, &Context::new()).unwrap()];
    let geometries = [
        (1, 4096),
        (2, 4096 * 5),
        (7, 4096 * 5),
        (3, 1 << 20),
        (2, 4096 * 3),
    ];
    for suite in SUITES {
        for len in [0usize, 1, 4096, 200_000, 4096 * 15] {
            let pt = data(len);
            let mut reference: Option<Vec<u8>> = None;
            for backend in [Backend::Ring, Backend::RustCrypto] {
                for (threads, batch_bytes) in geometries {
                    let p = EncryptParams {
                        backend,
                        ..params(suite, 4096)
                    };
                    let (h, cipher) =
                        sealstream::envelope::seal_header(&dek, [0x44; 32], stanzas.clone(), &p)
                            .unwrap();
                    let mut file = h.to_bytes().unwrap();
                    let opts = EngineOptions {
                        threads,
                        batch_bytes,
                        progress: None,
                        ..EngineOptions::default()
                    };
                    sealstream::engine::seal(&cipher, 4096, &pt[..], &mut file, &opts).unwrap();
                    match &reference {
                        None => reference = Some(file),
                        Some(r) => assert!(
                            *r == file,
                            "{suite:?} len={len} {backend:?} threads={threads} batch={batch_bytes}: \
                             bytes differ from the reference geometry"
                        ),
                    }
                }
            }
            let file = reference.unwrap();
            for (threads, batch_bytes) in geometries {
                let opts = EngineOptions {
                    threads,
                    batch_bytes,
                    progress: None,
                    ..EngineOptions::default()
                };
                for be in [Backend::Ring, Backend::RustCrypto] {
                    let got = open_with(&file, &[&k], &Context::new(), be, opts).unwrap();
                    assert!(
                        got == pt,
                        "{suite:?} len={len} open {be:?} threads={threads}"
                    );
                }
            }
        }
    }
}

#[test]
fn ring_and_rustcrypto_interoperate() {
    let k = key(4);
    for suite in SUITES {
        let pt = data(70_000);
        let ring_ct = seal_with(&pt, &[&k], &params(suite, 4096));
        let rc_params = EncryptParams {
            backend: Backend::RustCrypto,
            ..params(suite, 4096)
        };
        let rc_ct = seal_with(&pt, &[&k], &rc_params);
        for (ct, be) in [(&ring_ct, Backend::RustCrypto), (&rc_ct, Backend::Ring)] {
            let back = open_with(ct, &[&k], &Context::new(), be, EngineOptions::default());
            assert_eq!(back.unwrap(), pt);
        }
    }
}

#[test]
fn several_keys_each_open_alone() {
    let (a, b, c) = (key(5), key(6), key(7));
    let ctx = Context::from_pairs([("project", "atlas"), ("env", "prod")]).unwrap();
    let p = EncryptParams {
        context: ctx.clone(),
        ..params(Suite::Aes256Gcm, 4096)
    };
    let pt = data(10_000);
    let ct = seal_with(&pt, &[&a, &b, &c], &p);
    let (h, _) = Header::parse(&ct).unwrap();
    assert_eq!(h.stanzas.len(), 3);
    assert_eq!(h.context, ctx);
    for k in [&a, &b, &c] {
        assert_eq!(open(&ct, k).unwrap(), pt);
        let need = Context::from_pairs([("project", "atlas")]).unwrap();
        assert_eq!(
            open_with(&ct, &[k], &need, Backend::Ring, EngineOptions::default()).unwrap(),
            pt
        );
    }
}

#[test]
fn progress_reports_every_byte() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let k = key(8);
    let pt = data(123_457);
    let seen = AtomicU64::new(0);
    let cb = |n: u64| {
        seen.fetch_add(n, Ordering::Relaxed);
    };
    let p = EncryptParams {
        engine: EngineOptions {
            progress: Some(&cb),
            batch_bytes: 8192,
            threads: 2,
            ..EngineOptions::default()
        },
        ..params(Suite::Aes256Gcm, 4096)
    };
    seal_with(&pt, &[&k], &p);
    assert_eq!(seen.load(Ordering::Relaxed), pt.len() as u64);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn prop_round_trip(
        len in 0usize..40_000,
        cs in 4096u32..9000,
        threads in 1usize..4,
        batch in 1usize..6,
        chacha in any::<bool>(),
    ) {
        let k = key(9);
        let suite = if chacha { Suite::ChaCha20Poly1305 } else { Suite::Aes256Gcm };
        let pt = data(len);
        let p = EncryptParams {
            engine: EngineOptions { threads, batch_bytes: batch * cs as usize, progress: None, ..EngineOptions::default() },
            ..params(suite, cs)
        };
        let ct = seal_with(&pt, &[&k], &p);
        prop_assert_eq!(ct.len() - header_len(&ct), body_len_for(len as u64, cs) as usize);
        let back = open_with(&ct, &[&k], &Context::new(), Backend::RustCrypto,
            EngineOptions { threads: 4 - threads, batch_bytes: cs as usize, progress: None, ..EngineOptions::default() }).unwrap();
        prop_assert!(back == pt);
    }
}
