//! No allocation per chunk in the sync adapters (`StreamWriter`, `StreamReader`,
//! `SequentialReader`): streaming 4N chunks allocates no more than N chunks do. Its own
//! test binary with one test, as tests/alloc.rs, so no other test's allocations count.

use std::alloc::System;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};

use sealstream::format::{Context, Suite};
use sealstream::keys::KeyProvider;
use sealstream::keys::local::LocalKey;
use sealstream::{Decryptor, EncryptParams, Encryptor};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CS: usize = 4096;

/// Allocations while writing `pt` (in odd pieces) through a `StreamWriter` and finishing.
fn write_allocs(
    providers: &[&dyn KeyProvider],
    suite: Suite,
    pt: &[u8],
    out: &mut Vec<u8>,
) -> usize {
    out.clear();
    let p = EncryptParams {
        suite,
        chunk_size: CS as u32,
        ..EncryptParams::default()
    };
    let enc = Encryptor::new(providers, &p).unwrap();
    let region = Region::new(GLOBAL);
    let mut w = enc.wrap_output(&mut *out).unwrap();
    for piece in pt.chunks(1000) {
        w.write_all(piece).unwrap();
    }
    w.finish().unwrap();
    region.change().allocations
}

/// Allocations while reading all of `ct` through a `StreamReader` (with seeks) and a
/// `SequentialReader`, after unlocking.
fn read_allocs(providers: &[&dyn KeyProvider], ct: &[u8]) -> (usize, usize) {
    let mut b = [0u8; 1000];
    let mut r = Decryptor::new(Cursor::new(ct))
        .unwrap()
        .unlock(providers, &Context::new())
        .unwrap();
    let region = Region::new(GLOBAL);
    r.seek(SeekFrom::End(-10)).unwrap();
    r.seek(SeekFrom::Start(0)).unwrap();
    while r.read(&mut b).unwrap() > 0 {}
    let seekable = region.change().allocations;

    let mut r = Decryptor::new(ct)
        .unwrap()
        .unlock_sequential(providers, &Context::new())
        .unwrap();
    let region = Region::new(GLOBAL);
    while r.read(&mut b).unwrap() > 0 {}
    (seekable, region.change().allocations)
}

#[test]
fn adapter_allocations_do_not_grow_with_chunk_count() {
    let k = LocalKey::from_bytes([3; 32]);
    let providers: [&dyn KeyProvider; 1] = [&k];
    for suite in [Suite::Aes256Gcm, Suite::ChaCha20Poly1305] {
        let n = 64usize;
        let small = vec![1u8; n * CS + 10];
        let large = vec![1u8; 4 * n * CS + 10];
        let mut out_s = Vec::with_capacity(small.len() * 2);
        let mut out_l = Vec::with_capacity(large.len() * 2);
        write_allocs(&providers, suite, &small, &mut out_s); // warm-up
        // The count is process-wide: the test harness's own threads can allocate now and
        // then. The least of three runs ignores that; a per-chunk allocation would add
        // at least 3n to every run.
        let w_small = (0..3)
            .map(|_| write_allocs(&providers, suite, &small, &mut out_s))
            .min()
            .unwrap();
        let w_large = (0..3)
            .map(|_| write_allocs(&providers, suite, &large, &mut out_l))
            .min()
            .unwrap();
        let (s_small, q_small) = (0..3)
            .map(|_| read_allocs(&providers, &out_s))
            .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1)))
            .unwrap();
        let (s_large, q_large) = (0..3)
            .map(|_| read_allocs(&providers, &out_l))
            .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1)))
            .unwrap();
        eprintln!(
            "{suite:?}: writer {w_small} vs {w_large}, seekable {s_small} vs {s_large}, sequential {q_small} vs {q_large} ({n} vs {} chunks)",
            4 * n
        );
        assert!(
            w_large <= w_small,
            "writer allocates per chunk: {w_small} vs {w_large}"
        );
        assert!(
            s_large <= s_small,
            "StreamReader allocates per chunk: {s_small} vs {s_large}"
        );
        assert!(
            q_large <= q_small,
            "SequentialReader allocates per chunk: {q_small} vs {q_large}"
        );
        assert!(w_small < n && s_small < n && q_small < n);
    }
}
