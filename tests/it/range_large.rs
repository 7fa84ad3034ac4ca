//! A ranged read of 1 MiB from the middle of a 4 GiB encrypted file reads at most the
//! covering chunks (1 MiB + two chunks) plus the header, and nothing else.
//!
//! The 4 GiB file is virtual: a `Read + Seek` source that computes each sealed chunk on
//! demand from a fixed data key and a plaintext pattern, so the test needs no disk space
//! and no time proportional to the file size, yet serves exactly the bytes a real file
//! written by `envelope::encrypt` with that key and salt would hold.

use std::io::{self, Read, Seek, SeekFrom};

use sealstream::PayloadCipher;
use sealstream::engine::EngineOptions;
use sealstream::envelope::{self, EncryptParams};
use sealstream::format::{Context, Header, Stanza, Suite};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::range::{ByteRange, decrypt_range};
use sealstream::testkit::ChunkCipher as _;

const CS: u64 = 64 * 1024;
const STRIDE: u64 = CS + 16;
const LEN: u64 = 4 * (1 << 30) + 12_345; // 4 GiB and a ragged last chunk
const MIB: u64 = 1 << 20;

fn pattern(pos: u64) -> u8 {
    (pos.wrapping_mul(2_654_435_761) >> 13) as u8 ^ (pos >> 20) as u8
}

struct VirtualFile {
    header: Vec<u8>,
    cipher: PayloadCipher,
    chunks: u64,
    pos: u64,
    /// The last chunk computed (index, sealed bytes).
    cached: Option<(u64, Vec<u8>)>,
    served: u64,
}

impl VirtualFile {
    fn total(&self) -> u64 {
        self.header.len() as u64 + LEN + 16 * self.chunks
    }

    fn chunk(&mut self, i: u64) -> &[u8] {
        if self.cached.as_ref().map(|c| c.0) != Some(i) {
            let start = i * CS;
            let len = (LEN - start).min(CS) as usize;
            let mut buf = vec![0u8; len + 16];
            for (j, b) in buf[..len].iter_mut().enumerate() {
                *b = pattern(start + j as u64);
            }
            self.cipher
                .seal_chunk(i, i == self.chunks - 1, &mut buf, len)
                .unwrap();
            self.cached = Some((i, buf));
        }
        &self.cached.as_ref().unwrap().1
    }
}

impl Read for VirtualFile {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let hl = self.header.len() as u64;
        let n = if self.pos >= self.total() {
            0
        } else if self.pos < hl {
            let h = &self.header[self.pos as usize..];
            let n = h.len().min(out.len());
            out[..n].copy_from_slice(&h[..n]);
            n
        } else {
            let off = self.pos - hl;
            let (i, within) = (off / STRIDE, (off % STRIDE) as usize);
            let c = self.chunk(i);
            let n = (c.len() - within).min(out.len());
            out[..n].copy_from_slice(&c[within..within + n]);
            n
        };
        self.pos += n as u64;
        self.served += n as u64;
        Ok(n)
    }
}

impl Seek for VirtualFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.total().checked_add_signed(d).unwrap(),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

#[test]
fn one_mib_from_the_middle_of_four_gib_reads_only_covering_chunks() {
    let kek = LocalKey::from_bytes([5; 32]);
    let dek = DataKey::from_bytes([9; 32]);
    let stanza: Stanza = kek.wrap(&dek, &Context::new()).unwrap();
    let params = EncryptParams {
        suite: Suite::Aes256Gcm,
        chunk_size: CS as u32,
        ..EncryptParams::default()
    };
    let (header, cipher) = envelope::seal_header(&dek, [3; 32], vec![stanza], &params).unwrap();
    let mut f = VirtualFile {
        header: header.to_bytes().unwrap(),
        cipher,
        chunks: LEN.div_ceil(CS),
        pos: 0,
        cached: None,
        served: 0,
    };

    // What `sealstream decrypt --range` does: parse the header, unlock, ranged decrypt.
    let (h, hl) = Header::read_from(&mut f).unwrap();
    let providers: [&dyn KeyProvider; 1] = [&kek];
    let cipher = envelope::unlock(&h, &providers, &Context::new(), Default::default()).unwrap();
    let start = 2 * (1 << 30) + 12_345; // not chunk-aligned, so the range spans 17 chunks
    let range = ByteRange::Inclusive(start, start + MIB - 1);
    let mut out = Vec::new();
    let t0 = std::time::Instant::now();
    decrypt_range(
        &mut f,
        hl as u64,
        h.chunk_size,
        &cipher,
        range,
        &mut out,
        &EngineOptions::default(),
    )
    .unwrap();
    eprintln!(
        "ranged read of 1 MiB at 2 GiB of a 4 GiB file: {:?}, {} bytes read",
        t0.elapsed(),
        f.served
    );

    assert_eq!(out.len() as u64, MIB);
    assert!(
        out.iter()
            .enumerate()
            .all(|(j, &b)| b == pattern(start + j as u64)),
        "wrong plaintext"
    );
    let bound = MIB + 2 * STRIDE + hl as u64;
    assert!(
        f.served <= bound,
        "read {} bytes; at most 1 MiB + two chunks + the header = {bound}",
        f.served
    );
    let covering = (start + MIB - 1) / CS - start / CS + 1;
    assert_eq!(f.served, hl as u64 + covering * STRIDE);

    // A range at the end authenticates the final chunk too (and reads only it extra).
    f.served = 0;
    let mut out = Vec::new();
    decrypt_range(
        &mut f,
        hl as u64,
        h.chunk_size,
        &cipher,
        ByteRange::Suffix(100),
        &mut out,
        &EngineOptions::default(),
    )
    .unwrap();
    assert_eq!(out.len(), 100);
    assert!(
        out.iter()
            .enumerate()
            .all(|(j, &b)| b == pattern(LEN - 100 + j as u64))
    );
    let last_chunk = LEN - (LEN.div_ceil(CS) - 1) * CS + 16;
    assert!(f.served <= 2 * last_chunk, "read {}", f.served);
}
