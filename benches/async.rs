//! The async path (src/aio) against the blocking engine on the same in-memory input:
//! AES-256-GCM, the default chunk size and options (the global pool). The target:
//! async within 10 % of the blocking engine's throughput. Reports only.

use std::io;

use criterion::{Criterion, Throughput, criterion_group};
use sealstream::Backend;
use sealstream::PayloadCipher;
use sealstream::aio;
use sealstream::format::{Suite, limits::DEFAULT_CHUNK_SIZE};
use sealstream::stream::{self, EngineOptions, OpenParams};
use sealstream::testkit::ChunkCipher as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CS: u32 = DEFAULT_CHUNK_SIZE;

fn size() -> usize {
    std::env::var("ASYNC_BENCH_MIB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(64)
        << 20
}

/// The variants measured, in the order of [`Setup::run`]'s index.
const NAMES: [&str; 11] = [
    "seal/sync",
    "seal/async-current-thread",
    "seal/async-multi-thread",
    "seal/EncryptWriter",
    "open/sync",
    "open/async-current-thread",
    "open/async-multi-thread",
    "open/DecryptReader",
    // Sealing with no output copy (into a sink): separates the output copy, which the
    // async task does itself, from the rest of the sealing path.
    "seal-to-sink/sync",
    "seal-to-sink/async-current-thread",
    // Opening into a `Vec` (the plaintext copied out, as `DecryptReader` must copy it into
    // the caller's buffer): the like-for-like baseline for `DecryptReader`.
    "open-to-vec/sync",
];

/// The input, its ciphertext, the cipher and both runtimes: what every variant runs on.
struct Setup {
    pt: Vec<u8>,
    ct: Vec<u8>,
    cipher: PayloadCipher,
    opts: EngineOptions<'static>,
    current: tokio::runtime::Runtime,
    multi: tokio::runtime::Runtime,
}

impl Setup {
    fn new(size: usize) -> Setup {
        let pt = vec![0x17u8; size];
        let cipher = PayloadCipher::new(Suite::Aes256Gcm, Backend::Ring, &[3; 32]);
        let opts = EngineOptions::default();
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let mut ct = Vec::with_capacity(size + size / 1000);
        stream::seal(&cipher, CS, &pt[..], &mut ct, &opts).unwrap();
        Setup {
            pt,
            ct,
            cipher,
            opts,
            current,
            multi,
        }
    }

    /// One run of variant `v` (`NAMES[v]`): seals into `out` (cleared first) or opens into
    /// a sink; `buf` is the `DecryptReader`'s read buffer.
    fn run(&self, v: usize, out: &mut Vec<u8>, buf: &mut [u8]) {
        let (cipher, opts) = (&self.cipher, &self.opts);
        let (pt, ct) = (&self.pt[..], &self.ct[..]);
        out.clear();
        let r = match v {
            0 => stream::seal(cipher, CS, pt, &mut *out, opts),
            1 | 2 => {
                let rt = if v == 1 { &self.current } else { &self.multi };
                rt.block_on(aio::seal(cipher, CS, pt, &mut *out, opts))
            }
            3 => self.current.block_on(async {
                let mut w = aio::EncryptWriter::new(cipher, CS, &mut *out, opts).unwrap();
                w.write_all(pt).await.unwrap();
                w.shutdown().await.unwrap();
                Ok(w.stats())
            }),
            4 => stream::open(cipher, CS, ct, io::sink(), OpenParams::default(), opts),
            5 | 6 => {
                let rt = if v == 5 { &self.current } else { &self.multi };
                rt.block_on(aio::open(
                    cipher,
                    CS,
                    ct,
                    tokio::io::sink(),
                    OpenParams::default(),
                    opts,
                ))
            }
            8 => stream::seal(cipher, CS, pt, io::sink(), opts),
            10 => stream::open(cipher, CS, ct, &mut *out, OpenParams::default(), opts),
            9 => self
                .current
                .block_on(aio::seal(cipher, CS, pt, tokio::io::sink(), opts)),
            _ => self.current.block_on(async {
                let mut r =
                    aio::DecryptReader::new(cipher, CS, ct, OpenParams::default(), opts).unwrap();
                while r.read(buf).await.unwrap() > 0 {}
                Ok(r.stats())
            }),
        };
        r.unwrap();
    }
}

fn async_vs_sync(c: &mut Criterion) {
    let size = size();
    let s = Setup::new(size);
    let mut out = Vec::with_capacity(s.ct.len());
    let mut buf = vec![0u8; 256 * 1024];
    let mut g = c.benchmark_group("async_vs_sync");
    g.sample_size(10);
    g.throughput(Throughput::Bytes(size as u64));
    for (v, name) in NAMES.iter().enumerate() {
        g.bench_function(*name, |b| b.iter(|| s.run(v, &mut out, &mut buf)));
    }
    g.finish();
}

/// `ASYNC_AB=ROUNDS`: instead of criterion, interleave single runs of every variant for
/// ROUNDS rounds (rotating the order each round) and print the median and best throughput
/// of each, so that load from other processes on a shared machine hits all variants alike.
fn interleaved(rounds: usize) {
    use std::time::Instant;
    let size = size();
    let s = Setup::new(size);
    let mut out = Vec::with_capacity(s.ct.len());
    let mut buf = vec![0u8; 256 * 1024];
    let names = NAMES;
    let mut run = |v: usize, out: &mut Vec<u8>| s.run(v, out, &mut buf);
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for v in 0..names.len() {
        run(v, &mut out); // warm-up
    }
    for r in 0..rounds {
        for k in 0..names.len() {
            let v = (k + r) % names.len();
            let t = Instant::now();
            run(v, &mut out);
            times[v].push(t.elapsed().as_secs_f64());
        }
    }
    let mib = size as f64 / (1 << 20) as f64;
    let mut stat = Vec::new();
    for (v, t) in times.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        let med = mib / t[t.len() / 2];
        let best = mib / t[0];
        stat.push((med, best));
        println!(
            "{:28} median {med:7.0} MiB/s  best {best:7.0} MiB/s",
            names[v]
        );
    }
    for (base, first, last) in [(0, 1, 3), (4, 5, 7), (8, 9, 9), (10, 7, 7)] {
        for v in first..=last {
            println!(
                "{:28} / {:10}: median {:.3}  best {:.3}",
                names[v],
                names[base],
                stat[v].0 / stat[base].0,
                stat[v].1 / stat[base].1
            );
        }
    }
}

criterion_group!(benches, async_vs_sync);

fn main() {
    if let Some(rounds) = std::env::var("ASYNC_AB")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        interleaved(rounds);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
