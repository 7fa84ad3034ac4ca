//! No allocation per chunk (or per batch) in the hot path: encrypting and decrypting 4N
//! chunks allocates no more than N chunks do, on a private pool (`threads: 2`), on a pool
//! shared between streams, and on the global pool. Its own test binary, with one test, so no
//! other test's allocations are counted.

use std::alloc::System;
use std::io;

use sealstream::Backend;
use sealstream::PayloadCipher;
use sealstream::engine::{self, EngineOptions, OpenParams};
use sealstream::format::Suite;
use sealstream::stream::Pool;
use sealstream::testkit::ChunkCipher as _;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const CS: u32 = 4096;

/// Which pool the stream runs on.
#[derive(Debug, Clone, Copy)]
enum On<'a> {
    /// `threads: 2`: a private pool started for the stream.
    Private,
    /// A pool the caller started once and shares.
    Shared(&'a Pool),
    /// `threads: 0`: the process-wide pool.
    Global,
}

fn opts(on: On<'_>) -> EngineOptions<'_> {
    // Two chunks per batch: many trips around the pool, so per-batch costs would show.
    let (threads, pool) = match on {
        On::Private => (2, None),
        On::Shared(p) => (0, Some(p)),
        On::Global => (0, None),
    };
    EngineOptions {
        threads,
        batch_bytes: 2 * CS as usize,
        pool,
        ..EngineOptions::default()
    }
}

fn seal_allocs(cipher: &PayloadCipher, pt: &[u8], out: &mut Vec<u8>, on: On<'_>) -> usize {
    out.clear();
    let region = Region::new(GLOBAL);
    engine::seal(cipher, CS, pt, &mut *out, &opts(on)).unwrap();
    region.change().allocations
}

fn open_allocs(cipher: &PayloadCipher, ct: &[u8], on: On<'_>) -> usize {
    let region = Region::new(GLOBAL);
    engine::open(cipher, CS, ct, io::sink(), OpenParams::default(), &opts(on)).unwrap();
    region.change().allocations
}

#[test]
fn allocations_do_not_grow_with_chunk_count() {
    let shared = Pool::new(2).unwrap();
    for on in [On::Private, On::Shared(&shared), On::Global] {
        sync_case(on);
    }
    #[cfg(feature = "async")]
    for on in [On::Shared(&shared), On::Global] {
        async_case(on);
    }
}

/// The async drivers and adapters (src/aio) on a current-thread runtime: the same bound.
#[cfg(feature = "async")]
fn async_case(on: On<'_>) {
    use sealstream::aio;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let cipher = PayloadCipher::new(Suite::Aes256Gcm, Backend::Ring, &[7; 32]);
    let n = 64usize;
    let small = vec![1u8; n * CS as usize + 10];
    let large = vec![1u8; 4 * n * CS as usize + 10];
    let mut out_s = Vec::with_capacity(small.len() * 2);
    let mut out_l = Vec::with_capacity(large.len() * 2);
    let mut sink = vec![0u8; 100_000];
    // Every run: (seal, open, writer, reader) allocations.
    let mut run = |pt: &[u8], out: &mut Vec<u8>| {
        let o = opts(on);
        out.clear();
        let r = Region::new(GLOBAL);
        rt.block_on(aio::seal(&cipher, CS, pt, &mut *out, &o))
            .unwrap();
        let seal = r.change().allocations;
        let r = Region::new(GLOBAL);
        rt.block_on(aio::open(
            &cipher,
            CS,
            &out[..],
            tokio::io::sink(),
            OpenParams::default(),
            &o,
        ))
        .unwrap();
        let open = r.change().allocations;
        let r = Region::new(GLOBAL);
        rt.block_on(async {
            let mut w = aio::EncryptWriter::new(&cipher, CS, tokio::io::sink(), &o).unwrap();
            for piece in pt.chunks(10_000) {
                w.write_all(piece).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let writer = r.change().allocations;
        let r = Region::new(GLOBAL);
        rt.block_on(async {
            let mut rd =
                aio::DecryptReader::new(&cipher, CS, &out[..], OpenParams::default(), &o).unwrap();
            while rd.read(&mut sink).await.unwrap() > 0 {}
        });
        let reader = r.change().allocations;
        (seal, open, writer, reader)
    };
    run(&small, &mut out_s); // warm-up
    let a = run(&small, &mut out_s);
    let b = run(&large, &mut out_l);
    eprintln!(
        "async {on:?}: (seal, open, writer, reader) {a:?} vs {b:?} ({n} vs {} chunks)",
        4 * n
    );
    assert!(b.0 <= a.0 + 4, "aio::seal: {a:?} -> {b:?}");
    assert!(b.1 <= a.1 + 4, "aio::open: {a:?} -> {b:?}");
    assert!(b.2 <= a.2 + 4, "EncryptWriter: {a:?} -> {b:?}");
    assert!(b.3 <= a.3 + 4, "DecryptReader: {a:?} -> {b:?}");
    assert!(a.0 < 64 && a.2 < 64, "async start-up allocations: {a:?}");
}

fn sync_case(on: On<'_>) {
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
            seal_allocs(&cipher, &small, &mut out_s, on);
            open_allocs(&cipher, &out_s, on);

            let a_small = seal_allocs(&cipher, &small, &mut out_s, on);
            let a_large = seal_allocs(&cipher, &large, &mut out_l, on);
            let d_small = open_allocs(&cipher, &out_s, on);
            let d_large = open_allocs(&cipher, &out_l, on);
            eprintln!(
                "{on:?} {suite:?}/{backend:?}: seal {a_small} vs {a_large}, open {d_small} vs {d_large} allocations ({n} vs {} chunks)",
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
