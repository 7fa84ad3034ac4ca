//! Criterion benches: chunk seal/open per suite and backend, header parse, and the whole
//! engine over an in-memory stream. Reports only; tests assert behaviour.

use std::hint::black_box;
use std::io;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sealstream::Backend;
use sealstream::PayloadCipher;
use sealstream::engine::{self, EngineOptions, OpenParams};
use sealstream::format::{Context, Header, Stanza, Suite};
use sealstream::testkit::ChunkCipher as _;

const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];
const BACKENDS: [Backend; 2] = [Backend::Ring, Backend::RustCrypto];
/// The chunk sizes of the release-binary sweep (scripts/bench.sh).
const CHUNK_SIZES: [usize; 5] = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

fn chunk_seal_open(c: &mut Criterion) {
    let mut g = c.benchmark_group("chunk");
    for suite in SUITES {
        for backend in BACKENDS {
            let cipher = PayloadCipher::new(suite, backend, &[3; 32]);
            for size in CHUNK_SIZES {
                let name = format!("{}/{:?}", suite.name(), backend);
                g.throughput(Throughput::Bytes(size as u64));
                let mut buf = vec![0x42u8; size + 16];
                g.bench_with_input(
                    BenchmarkId::new(format!("seal/{name}"), size),
                    &size,
                    |b, &n| b.iter(|| cipher.seal_chunk(black_box(5), false, &mut buf, n).unwrap()),
                );
                let mut sealed = vec![0x42u8; size + 16];
                cipher.seal_chunk(5, false, &mut sealed, size).unwrap();
                let mut work = sealed.clone();
                g.bench_with_input(
                    BenchmarkId::new(format!("open/{name}"), size),
                    &size,
                    |b, _| {
                        b.iter(|| {
                            work.copy_from_slice(&sealed);
                            cipher.open_chunk(black_box(5), false, &mut work).unwrap()
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

fn header_parse(c: &mut Criterion) {
    let h = Header {
        suite: Suite::Aes256Gcm,
        chunk_size: 65536,
        salt: [1; 32],
        commitment: [2; 32],
        context: Context::from_pairs([("project", "atlas"), ("env", "prod")]).unwrap(),
        stanzas: (0..3)
            .map(|i| Stanza {
                provider: "local".into(),
                key_id: format!("lk1-{i:032x}"),
                wrapped: vec![9; 72],
            })
            .collect(),
    };
    let bytes = h.to_bytes().unwrap();
    c.bench_function("header/parse", |b| {
        b.iter(|| Header::parse(black_box(&bytes)).unwrap())
    });
    c.bench_function("header/serialize", |b| {
        b.iter(|| black_box(&h).to_bytes().unwrap())
    });
}

/// Opens a whole STREAM body from memory into a sink (the engine's decrypt cost alone).
fn open_to_sink(
    cipher: &PayloadCipher,
    cs: u32,
    ct: &[u8],
    opts: &EngineOptions<'_>,
) -> engine::StreamStats {
    engine::open(cipher, cs, ct, io::sink(), OpenParams::default(), opts).unwrap()
}

fn engine_in_memory(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.sample_size(10);
    let size = 64 * 1024 * 1024;
    let pt = vec![0x17u8; size];
    g.throughput(Throughput::Bytes(size as u64));
    for suite in SUITES {
        let cipher = PayloadCipher::new(suite, Backend::Ring, &[3; 32]);
        let all_cores = EngineOptions::default().effective_threads();
        // One worker, then all cores; on a one-core machine these are the same run, and
        // criterion refuses a benchmark ID twice.
        let counts: &[usize] = if all_cores > 1 { &[1, 0] } else { &[1] };
        for &threads in counts {
            let opts = EngineOptions {
                threads,
                ..EngineOptions::default()
            };
            let label = format!("{}/threads={}", suite.name(), opts.effective_threads());
            let mut ct = Vec::with_capacity(size + size / 1000);
            g.bench_function(format!("seal/{label}"), |b| {
                b.iter(|| {
                    ct.clear();
                    engine::seal(&cipher, 65536, &pt[..], &mut ct, &opts).unwrap()
                })
            });
            g.bench_function(format!("open/{label}"), |b| {
                b.iter(|| open_to_sink(&cipher, 65536, &ct, &opts))
            });
        }
    }
    g.finish();
}

/// The engine on all cores at each chunk size of the sweep, in memory (no file I/O), so the
/// release-binary sweep can be told apart from the engine's own per-chunk cost.
fn engine_chunk_sizes(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_chunk");
    g.sample_size(10);
    let size = 64 * 1024 * 1024;
    let pt = vec![0x17u8; size];
    g.throughput(Throughput::Bytes(size as u64));
    let opts = EngineOptions::default();
    for suite in SUITES {
        let cipher = PayloadCipher::new(suite, Backend::Ring, &[3; 32]);
        for cs in CHUNK_SIZES {
            let cs = cs as u32;
            let mut ct = Vec::with_capacity(size + size / 1000);
            engine::seal(&cipher, cs, &pt[..], &mut ct, &opts).unwrap();
            g.bench_with_input(
                BenchmarkId::new(format!("seal/{}", suite.name()), cs),
                &cs,
                |b, &cs| b.iter(|| engine::seal(&cipher, cs, &pt[..], io::sink(), &opts).unwrap()),
            );
            g.bench_with_input(
                BenchmarkId::new(format!("open/{}", suite.name()), cs),
                &cs,
                |b, &cs| b.iter(|| open_to_sink(&cipher, cs, &ct, &opts)),
            );
        }
    }
    g.finish();
}

criterion_group!(
    benches,
    chunk_seal_open,
    header_parse,
    engine_in_memory,
    engine_chunk_sizes
);
criterion_main!(benches);
