//! No allocation per chunk (or per batch) in the hot path: encrypting and decrypting 4N
//! chunks allocates no more than N chunks do. Its own test binary, with one test, so no
//! other test's allocations are counted.

use std::alloc::System;
use std::io;

use sealstream::Backend;
use sealstream::PayloadCipher;
use sealstream::engine::{self, EngineOptions, OpenParams};
use sealstream::format::Suite;
use sealstream::testkit::ChunkCipher as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CS: u32 = 4096;

fn opts() -> EngineOptions<'static> {
    // Two chunks per batch: many trips around the pool, so per-batch costs would show.
    EngineOptions {
        threads: 2,
        batch_bytes: 2 * CS as usize,
        progress: None,
    }
}

fn seal_allocs(cipher: &PayloadCipher, pt: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let region = Region::new(GLOBAL);
    engine::seal(cipher, CS, pt, &mut *out, &opts()).unwrap();
    region.change().allocations
}

fn open_allocs(cipher: &PayloadCipher, ct: &[u8]) -> usize {
    let region = Region::new(GLOBAL);
    engine::open(cipher, CS, ct, io::sink(), OpenParams::default(), &opts()).unwrap();
    region.change().allocations
}

#[test]
fn allocations_do_not_grow_with_chunk_count() {
    for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
        for backend in [Backend::Ring, Backend::RustCrypto] {
            let cipher = PayloadCipher::new(suite, backend, &[7; 32]);
            let n = 64usize;
            let small = vec![1u8; n * CS as usize + 10];
            let large = vec![1u8; 4 * n * CS as usize + 10];
            // Output buffers sized up front so Vec growth is not counted.
            let mut out_s = Vec::with_capacity(small.len() * 2);
            let mut out_l = Vec::with_capacity(large.len() * 2);
            // Warm up once (lazy statics in thread spawning, CPU feature detection).
            seal_allocs(&cipher, &small, &mut out_s);

            let a_small = seal_allocs(&cipher, &small, &mut out_s);
            let a_large = seal_allocs(&cipher, &large, &mut out_l);
            let d_small = open_allocs(&cipher, &out_s);
            let d_large = open_allocs(&cipher, &out_l);
            eprintln!(
                "{suite:?}/{backend:?}: seal {a_small} vs {a_large}, open {d_small} vs {d_large} allocations ({n} vs {} chunks)",
                4 * n
            );
            // Start-up (buffer pool, channels, threads) is a fixed cost; the remainder must
            // not scale with 3N extra chunks (~96 extra batches).
            assert!(a_large <= a_small + 4, "seal: {a_small} -> {a_large}");
            assert!(d_large <= d_small + 4, "open: {d_small} -> {d_large}");
            assert!(a_small < 64, "seal start-up allocations: {a_small}");
        }
    }
}
