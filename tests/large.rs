//! Multi-GiB streaming in constant memory: 4.5 GiB (past every 32-bit boundary) through
//! seal → OS pipe → open, generated and verified on the fly, never stored. Its own test
//! binary so the process's peak RSS belongs to this test alone.

use std::io::{self, Read, Write};

use sealstream::Backend;
use sealstream::PayloadCipher;
use sealstream::engine::{self, EngineOptions, OpenParams};
use sealstream::format::Suite;
use sealstream::testkit::ChunkCipher as _;

const TOTAL: u64 = 4 * (1 << 30) + (1 << 29) + 12345; // 4.5 GiB + a ragged tail
const CS: u32 = 65536;

/// Pattern period: prime, so it never lines up with a chunk or batch size and a reordered,
/// dropped or duplicated chunk would show as a mismatch.
const PERIOD: usize = 1_048_573;

fn period() -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Copies pattern bytes for stream positions `pos..pos + out.len()` into `out`.
fn fill(pat: &[u8], pos: u64, out: &mut [u8]) {
    let mut done = 0;
    while done < out.len() {
        let off = ((pos + done as u64) % PERIOD as u64) as usize;
        let n = (PERIOD - off).min(out.len() - done);
        out[done..done + n].copy_from_slice(&pat[off..off + n]);
        done += n;
    }
}

/// A reader that produces `len` bytes of the pattern.
struct Pattern<'a> {
    pat: &'a [u8],
    pos: u64,
    len: u64,
}

impl Read for Pattern<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len - self.pos).min(buf.len() as u64) as usize;
        fill(self.pat, self.pos, &mut buf[..n]);
        self.pos += n as u64;
        Ok(n)
    }
}

/// A writer that checks every byte against the pattern.
struct Verify<'a> {
    pat: &'a [u8],
    pos: u64,
    scratch: Vec<u8>,
}

impl Write for Verify<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.scratch.resize(buf.len(), 0);
        fill(self.pat, self.pos, &mut self.scratch);
        if self.scratch != buf {
            return Err(io::Error::other(format!("mismatch near byte {}", self.pos)));
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Peak resident set size (VmHWM) of this process, or why it could not be read. A test
/// that cannot measure its memory bound must fail, not skip the check and print "ok".
fn peak_rss_kib() -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status: {e}"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .ok_or("/proc/self/status has no VmHWM line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("cannot parse {line:?}"))?;
    if kib == 0 {
        return Err(format!("implausible {line:?}"));
    }
    Ok(kib)
}

#[test]
fn four_and_a_half_gib_round_trip_in_constant_memory() {
    let pat = period();
    let pat = &pat[..];
    let cipher = PayloadCipher::new(Suite::Aes256Gcm, Backend::Ring, &[0x42; 32]);
    let (mut rx, tx) = io::pipe().expect("pipe");
    let opts = EngineOptions::default();
    let (sealed, opened) = std::thread::scope(|s| {
        let c = &cipher;
        let sealer = s.spawn(move || {
            let mut tx = tx;
            let r = engine::seal(
                c,
                CS,
                Pattern {
                    pat,
                    pos: 0,
                    len: TOTAL,
                },
                &mut tx,
                &opts,
            );
            drop(tx);
            r
        });
        let mut v = Verify {
            pat,
            pos: 0,
            scratch: Vec::new(),
        };
        let opened = engine::open(c, CS, &mut rx, &mut v, OpenParams::default(), &opts);
        (
            sealer.join().expect("sealer thread"),
            opened.map(|s| (s, v.pos)),
        )
    });
    let sealed = sealed.expect("seal");
    let (opened, verified) = opened.expect("open");
    assert_eq!(sealed.plaintext_bytes, TOTAL);
    assert_eq!(opened.plaintext_bytes, TOTAL);
    assert_eq!(verified, TOTAL);
    assert_eq!(opened.chunks, TOTAL.div_ceil(CS as u64));
    let rss = peak_rss_kib().unwrap_or_else(|why| {
        panic!("the memory bound was NOT checked: {why} (this test needs Linux /proc)")
    });
    eprintln!("peak RSS of the test process: {} MiB", rss / 1024);
    // Two engines' pools (~6 MiB each on 2 cores) plus the test harness: far below the input.
    assert!(rss < 128 * 1024, "peak RSS {rss} KiB grows with input");
}
