//! One-core, in-place AEAD throughput of ring, aws-lc-rs and RustCrypto for both of
//! sealstream's suites, at the chunk sizes of the chunk-size sweep.
//!
//! Usage: `sealstream-backends-bench [SECONDS_PER_SAMPLE] [SAMPLES]` (defaults 0.3, 7).
//! Prints one Markdown row per suite, backend and operation: the median GiB/s over SAMPLES
//! samples, each sample running the operation repeatedly for SECONDS_PER_SAMPLE. Every
//! backend's output is checked against ring's before timing (same ciphertext and tag, and
//! each opens the others' output), so a row can only be printed for a correct backend.

use std::hint::black_box;
use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, KeyInit};

const SIZES: [usize; 5] = [16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20];
const KEY: [u8; 32] = [0x42; 32];
const NONCE: [u8; 12] = [7; 12];

#[derive(Clone, Copy, PartialEq)]
enum Suite {
    Aes,
    ChaCha,
}

/// One backend for one suite: seal in place returning the tag; open in place a buffer
/// holding ciphertext ‖ tag (the one in-place open that all three backends offer).
trait Aead {
    fn seal(&self, buf: &mut [u8]) -> [u8; 16];
    fn open(&self, ct_and_tag: &mut [u8]) -> bool;
}

struct Ring(ring::aead::LessSafeKey);
impl Ring {
    fn new(s: Suite) -> Self {
        let alg = match s {
            Suite::Aes => &ring::aead::AES_256_GCM,
            Suite::ChaCha => &ring::aead::CHACHA20_POLY1305,
        };
        Ring(ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(alg, &KEY).unwrap(),
        ))
    }
}
impl Aead for Ring {
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let n = ring::aead::Nonce::assume_unique_for_key(NONCE);
        let t = self
            .0
            .seal_in_place_separate_tag(n, ring::aead::Aad::empty(), buf)
            .unwrap();
        t.as_ref().try_into().unwrap()
    }
    fn open(&self, ct_and_tag: &mut [u8]) -> bool {
        let n = ring::aead::Nonce::assume_unique_for_key(NONCE);
        self.0
            .open_in_place(n, ring::aead::Aad::empty(), ct_and_tag)
            .is_ok()
    }
}

struct AwsLc(aws_lc_rs::aead::LessSafeKey);
impl AwsLc {
    fn new(s: Suite) -> Self {
        let alg = match s {
            Suite::Aes => &aws_lc_rs::aead::AES_256_GCM,
            Suite::ChaCha => &aws_lc_rs::aead::CHACHA20_POLY1305,
        };
        AwsLc(aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(alg, &KEY).unwrap(),
        ))
    }
}
impl Aead for AwsLc {
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(NONCE);
        let t = self
            .0
            .seal_in_place_separate_tag(n, aws_lc_rs::aead::Aad::empty(), buf)
            .unwrap();
        t.as_ref().try_into().unwrap()
    }
    fn open(&self, ct_and_tag: &mut [u8]) -> bool {
        let n = aws_lc_rs::aead::Nonce::assume_unique_for_key(NONCE);
        self.0
            .open_in_place(n, aws_lc_rs::aead::Aad::empty(), ct_and_tag)
            .is_ok()
    }
}

struct Rc<A>(A);
impl<A: AeadInOut<NonceSize = aes_gcm::aead::consts::U12, TagSize = aes_gcm::aead::consts::U16>>
    Aead for Rc<A>
{
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        self.0
            .encrypt_inout_detached(&NONCE.into(), b"", buf.into())
            .unwrap()
            .into()
    }
    fn open(&self, ct_and_tag: &mut [u8]) -> bool {
        let (ct, tag) = ct_and_tag.split_at_mut(ct_and_tag.len() - 16);
        let tag: [u8; 16] = (&*tag).try_into().unwrap();
        self.0
            .decrypt_inout_detached(&NONCE.into(), b"", ct.into(), &tag.into())
            .is_ok()
    }
}

fn backends(s: Suite) -> Vec<(&'static str, Box<dyn Aead>)> {
    let rc: Box<dyn Aead> = match s {
        Suite::Aes => Box::new(Rc(aes_gcm::Aes256Gcm::new(&KEY.into()))),
        Suite::ChaCha => Box::new(Rc(chacha20poly1305::ChaCha20Poly1305::new(&KEY.into()))),
    };
    vec![
        ("ring 0.17", Box::new(Ring::new(s))),
        ("aws-lc-rs 1", Box::new(AwsLc::new(s))),
        (
            match s {
                Suite::Aes => "RustCrypto aes-gcm 0.11",
                Suite::ChaCha => "RustCrypto chacha20poly1305 0.11",
            },
            rc,
        ),
    ]
}

/// Median GiB/s of `samples` samples of `f` over `len` bytes.
fn measure(len: usize, secs: f64, samples: usize, mut f: impl FnMut()) -> f64 {
    let budget = Duration::from_secs_f64(secs);
    let mut rates = Vec::with_capacity(samples);
    f(); // warm-up
    for _ in 0..samples {
        let t0 = Instant::now();
        let mut n = 0u64;
        while t0.elapsed() < budget {
            f();
            n += 1;
        }
        let el = t0.elapsed().as_secs_f64();
        rates.push(n as f64 * len as f64 / el / (1u64 << 30) as f64);
    }
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[rates.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map_or(0.3, |s| s.parse().expect("SECONDS"));
    let samples: usize = args.get(2).map_or(7, |s| s.parse().expect("SAMPLES"));
    let header: String = SIZES
        .iter()
        .map(|s| format!(" {} KiB |", s >> 10))
        .collect();
    println!("| suite | backend | op |{header}");
    println!("|---|---|---|{}", "---|".repeat(SIZES.len()));
    let mut row = "| — | memcpy (reference) | copy |".to_string();
    for &len in &SIZES {
        let src = vec![1u8; len + 16];
        let mut dst = vec![0u8; len + 16];
        let rate = measure(len, secs, samples, || {
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        });
        row += &format!(" {rate:.2} |");
    }
    println!("{row}");
    for (suite, name) in [
        (Suite::Aes, "AES-256-GCM"),
        (Suite::ChaCha, "ChaCha20-Poly1305"),
    ] {
        let all = backends(suite);
        // Cross-check: every backend produces ring's ciphertext and tag, and opens it.
        for &len in &SIZES {
            let pt: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut want = pt.clone();
            let want_tag = all[0].1.seal(&mut want);
            for (bname, b) in &all {
                let mut got = pt.clone();
                assert!(
                    b.seal(&mut got) == want_tag && got == want,
                    "{bname}: wrong output"
                );
                got.extend_from_slice(&want_tag);
                assert!(
                    b.open(&mut got) && got[..len] == pt[..],
                    "{bname}: cannot open"
                );
                got.copy_from_slice(&[&want[..], &want_tag[..]].concat());
                got[len / 2] ^= 1;
                assert!(!b.open(&mut got), "{bname}: accepted a flipped byte");
            }
        }
        for (bname, b) in &all {
            for op in ["seal", "open"] {
                let mut row = format!("| {name} | {bname} | {op} |");
                for &len in &SIZES {
                    let mut buf = vec![1u8; len];
                    let tag = b.seal(&mut buf);
                    let rate = if op == "seal" {
                        measure(len, secs, samples, || {
                            black_box(b.seal(black_box(&mut buf)));
                        })
                    } else {
                        // Opening in place turns the buffer into plaintext, so each open
                        // first restores ciphertext ‖ tag from a copy: these rates include
                        // one memcpy of the chunk (the "memcpy" row gives its speed).
                        let sealed = [&buf[..], &tag[..]].concat();
                        let mut work = sealed.clone();
                        measure(len, secs, samples, || {
                            work.copy_from_slice(&sealed);
                            assert!(b.open(black_box(&mut work)));
                        })
                    };
                    row += &format!(" {rate:.2} |");
                }
                println!("{row}");
            }
        }
    }
}
