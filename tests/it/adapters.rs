//! The synchronous adapters (issue 15): `Encryptor::wrap_output` → `StreamWriter` (an
//! encrypting `Write`) and `Decryptor::unlock` → `StreamReader` (a decrypting
//! `Read + Seek`), checked against the engine in both directions and against the CLI's
//! `--range`, with tampering, truncation, extension and unfinished writers.

use crate::common;

use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};

use common::*;
use sealstream::engine::{self, EngineOptions};
use sealstream::envelope;
use sealstream::error::Error;
use sealstream::format::{Context, Suite};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::reader::{Decryptor, SequentialReader, StreamReader};
use sealstream::writer::{Encryptor, StreamWriter, error_ref, into_error};

const CS: usize = 4096;
const STRIDE: u64 = CS as u64 + 16;
const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];
/// 0, 1, chunk−1, chunk, chunk+1, several chunks (partial last), several full chunks.
const SIZES: [usize; 7] = [0, 1, CS - 1, CS, CS + 1, 5 * CS + 123, 3 * CS];

fn providers(k: &LocalKey) -> [&dyn KeyProvider; 1] {
    [k]
}

fn writer_for<W: Write>(k: &LocalKey, suite: Suite, out: W) -> StreamWriter<W> {
    let p = params(suite, CS as u32);
    Encryptor::new(&providers(k), &p)
        .unwrap()
        .wrap_output(out)
        .unwrap()
}

/// Writes `pt` in pieces of `step` bytes (0 = one write) and finishes.
fn seal_by_writer(pt: &[u8], k: &LocalKey, suite: Suite, step: usize) -> Vec<u8> {
    let mut w = writer_for(k, suite, Vec::new());
    if step == 0 {
        w.write_all(pt).unwrap();
    } else {
        for piece in pt.chunks(step) {
            w.write_all(piece).unwrap();
        }
    }
    w.finish().unwrap()
}

fn reader(ct: &[u8], k: &LocalKey) -> StreamReader<Cursor<Vec<u8>>> {
    Decryptor::new(Cursor::new(ct.to_vec()))
        .unwrap()
        .unlock(&providers(k), &Context::new())
        .unwrap()
}

fn sealstream_err(e: &io::Error) -> &Error {
    error_ref(e).unwrap_or_else(|| panic!("not a sealstream error: {e:?}"))
}

#[test]
fn writer_output_decrypts_with_the_engine() {
    let k = key(1);
    for suite in SUITES {
        for len in SIZES {
            let pt = data(len);
            // One write, 1-byte writes, odd writes, and writes spanning chunk boundaries.
            for step in [0, 1, 7, CS - 1, CS + 3, 3 * CS + 5] {
                if step == 1 && len > 2 * CS {
                    continue; // 1-byte writes over many chunks add time, not coverage
                }
                let ct = seal_by_writer(&pt, &k, suite, step);
                assert_eq!(
                    ct.len() - header_len(&ct),
                    sealstream::format::body_len_for(len as u64, CS as u32) as usize,
                    "{suite:?} len {len} step {step}"
                );
                let got = open(&ct, &k).unwrap_or_else(|e| panic!("{suite:?} {len} {step}: {e}"));
                assert!(got == pt, "{suite:?} len {len} step {step}");
            }
        }
    }
}

#[test]
fn writer_is_byte_identical_to_the_engine() {
    let k = key(1);
    let dek = DataKey::from_bytes([9; 32]);
    let salt = [5u8; 32];
    for suite in SUITES {
        let p = params(suite, CS as u32);
        let stanzas = vec![k.wrap(&dek, &p.context).unwrap()];
        for len in SIZES {
            let pt = data(len);
            // What envelope::encrypt_with_data_key does, with the salt fixed.
            let (header, cipher) = envelope::seal_header(&dek, salt, stanzas.clone(), &p).unwrap();
            let mut expected = header.to_bytes().unwrap();
            engine::seal(
                &cipher,
                CS as u32,
                &pt[..],
                &mut expected,
                &EngineOptions::default(),
            )
            .unwrap();

            let enc = Encryptor::with_data_key_and_salt(&dek, salt, stanzas.clone(), &p).unwrap();
            assert!(enc.header() == &header);
            let mut w = enc.wrap_output(Vec::new()).unwrap();
            for piece in pt.chunks(1000) {
                w.write_all(piece).unwrap();
            }
            let got = w.finish().unwrap();
            assert!(got == expected, "{suite:?} len {len}");
        }
    }
}

#[test]
fn reader_reads_engine_output() {
    let k = key(1);
    for suite in SUITES {
        for len in SIZES {
            let pt = data(len);
            let ct = seal(&pt, &k, suite, CS as u32);
            let mut r = reader(&ct, &k);
            let mut got = Vec::new();
            r.read_to_end(&mut got).unwrap();
            assert!(got == pt, "{suite:?} len {len}");
            assert_eq!(r.plaintext_len().unwrap(), len as u64);
            // Odd read sizes from the start: 1 byte, then 13 bytes, then chunk+5 ...
            r.seek(SeekFrom::Start(0)).unwrap();
            let mut got = Vec::new();
            let mut sizes = [1usize, 13, CS + 5, 3].iter().cycle();
            loop {
                let mut b = vec![0u8; *sizes.next().unwrap()];
                let n = r.read(&mut b).unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&b[..n]);
            }
            assert!(got == pt, "{suite:?} len {len}, odd reads");
        }
    }
}

#[test]
fn writer_output_reads_back_through_the_reader() {
    let k = key(3);
    for suite in SUITES {
        let pt = data(4 * CS + 77);
        let ct = seal_by_writer(&pt, &k, suite, 333);
        let mut r = reader(&ct, &k);
        r.seek(SeekFrom::Start(CS as u64 - 2)).unwrap();
        let mut b = [0u8; 10];
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, pt[CS - 2..CS + 8]);
    }
}

#[test]
fn dropping_a_writer_without_finish_leaves_a_truncated_object() {
    let k = key(1);
    for suite in SUITES {
        for len in SIZES {
            let pt = data(len);
            let mut out = Vec::new();
            {
                let mut w = writer_for(&k, suite, &mut out);
                w.write_all(&pt).unwrap();
                w.flush().unwrap();
                // dropped here, unfinished
            }
            let e = open(&out, &k).unwrap_err();
            assert!(
                matches!(e, Error::Truncated { .. }),
                "{suite:?} len {len}: {e:?}"
            );
            // The reader refuses it too: at unlock (no chunk at all) or when the end is
            // needed; it never reports the unfinished length as the end.
            match Decryptor::new(Cursor::new(out.clone()))
                .unwrap()
                .unlock(&providers(&k), &Context::new())
            {
                Err(e) => assert!(matches!(e, Error::Truncated { .. }), "{e:?}"),
                Ok(mut r) => {
                    let e = r.seek(SeekFrom::End(0)).unwrap_err();
                    assert!(matches!(sealstream_err(&e), Error::Truncated { .. }));
                    let mut all = Vec::new();
                    assert!(r.seek(SeekFrom::Start(0)).is_ok());
                    let e = r.read_to_end(&mut all).unwrap_err();
                    assert!(matches!(sealstream_err(&e), Error::Truncated { .. }));
                    assert!(pt.starts_with(&all) && all.len() < pt.len());
                }
            }
        }
    }
}

/// Accepts writes until `fail_at` bytes have been written, then fails once, then accepts
/// everything again (so only the writer's own memory of the failure can stop it).
#[derive(Debug)]
struct FailOnce {
    out: Vec<u8>,
    fail_at: usize,
    failed: bool,
}

impl Write for FailOnce {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.failed && self.out.len() + buf.len() > self.fail_at {
            self.failed = true;
            let n = self.fail_at - self.out.len();
            self.out.extend_from_slice(&buf[..n]);
            return Err(io::Error::other("disk full"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_write_is_sticky() {
    let k = key(1);
    let pt = data(6 * CS);
    let hl = {
        let w = writer_for(&k, Suite::Aes256Gcm, Vec::new());
        w.get_ref().len()
    };
    // Fail inside chunk 1 (a partial chunk reached the output), and exactly at its start.
    for fail_at in [hl + STRIDE as usize + 100, hl + STRIDE as usize] {
        let out = FailOnce {
            out: Vec::new(),
            fail_at,
            failed: false,
        };
        let mut w = writer_for(&k, Suite::Aes256Gcm, out);
        let mut failed = None;
        for piece in pt.chunks(1000) {
            if let Err(e) = w.write_all(piece) {
                failed = Some(e);
                break;
            }
        }
        assert!(failed.is_some(), "the inner writer failed");
        // Later writes, flushes and finish all fail.
        let e = w.write(b"more").unwrap_err();
        assert!(e.to_string().contains("earlier write failed"), "{e}");
        assert!(w.flush().is_err());
        let e = w.finish().unwrap_err();
        assert!(e.to_string().contains("earlier write failed"), "{e}");
    }
}

#[cfg(feature = "cli")]
#[test]
fn seek_and_read_match_the_cli_range_output() {
    let s = Scratch::new();
    let k = key(1);
    let kf = s.keyfile("k.key", &k);
    let kp = kf.to_str().unwrap();
    let pt = data(5 * CS + 123); // 6 chunks, the last partial
    let len = pt.len() as u64;
    let ct = seal(&pt, &k, Suite::ChaCha20Poly1305, CS as u32);
    write(&s.path("f.seal"), &ct);
    let cs = CS as u64;
    let specs: Vec<String> = vec![
        "0-0".into(),
        "0-99".into(),
        format!("0-{}", cs - 1),
        format!("{}-{}", cs - 1, cs),
        format!("{}-{}", cs - 10, 3 * cs + 10),
        format!("{}-{}", 2 * cs, 3 * cs - 1),
        format!("{}-{}", 2 * cs + 17, 2 * cs + 17),
        format!("{}-{}", len - 1, len - 1),
        format!("{}-{}", len - 50, len + 5000),
        format!("{}-", 0),
        format!("{}-", cs),
        format!("{}-", 4 * cs + 1),
        format!("{}-", len - 1),
        "-1".into(),
        "-123".into(),
        "-124".into(),
        format!("-{}", cs + 1),
        format!("-{}", len),
        format!("-{}", 10 * len),
        // Beyond the end: the CLI refuses (exit 2), the reader reads nothing.
        format!("{len}-"),
        format!("{}-{}", len + 10, len + 20),
    ];
    let mut r = reader(&ct, &k);
    for spec in &specs {
        let o = s.run(&["decrypt", "-k", kp, "--range", spec, "f.seal"]);
        let (start, count): (u64, Option<u64>) = match spec.split_once('-').unwrap() {
            ("", n) => {
                let n: u64 = n.parse().unwrap();
                // End-relative: SeekFrom::End when it stays inside, else from the start.
                let end = r.seek(SeekFrom::End(0)).unwrap();
                if n <= end {
                    let p = r.seek(SeekFrom::End(-(n as i64))).unwrap();
                    (p, None)
                } else {
                    (r.seek(SeekFrom::Start(0)).unwrap(), None)
                }
            }
            (a, "") => (r.seek(SeekFrom::Start(a.parse().unwrap())).unwrap(), None),
            (a, b) => {
                let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                (r.seek(SeekFrom::Start(a)).unwrap(), Some(b - a + 1))
            }
        };
        let mut got = Vec::new();
        match count {
            Some(c) => (&mut r).take(c).read_to_end(&mut got).unwrap(),
            None => r.read_to_end(&mut got).unwrap(),
        };
        if start >= len {
            assert_eq!(code(&o), 2, "{spec}: {}", stderr(&o));
            assert!(got.is_empty(), "{spec}: reads past the end return nothing");
        } else {
            assert_eq!(code(&o), 0, "{spec}: {}", stderr(&o));
            assert!(!got.is_empty(), "{spec}");
            assert!(got == o.stdout, "{spec}: reader and CLI differ");
            let end = (start + got.len() as u64) as usize;
            assert!(got == pt[start as usize..end], "{spec}: wrong bytes");
        }
    }
}

#[test]
fn reads_touch_only_the_covering_chunks() {
    let k = key(1);
    let pt = data(10 * CS + 5); // 11 chunks
    let ct = seal(&pt, &k, Suite::Aes256Gcm, CS as u32);
    let counting = CountingReader {
        inner: Cursor::new(ct),
        read: 0,
    };
    let d = Decryptor::new(counting).unwrap();
    let mut r = d.unlock(&providers(&k), &Context::new()).unwrap();
    let before = r.get_ref().read;
    // 10 bytes across the boundary of chunks 3 and 4: exactly those two chunks.
    r.seek(SeekFrom::Start(4 * CS as u64 - 5)).unwrap();
    let mut b = [0u8; 10];
    r.read_exact(&mut b).unwrap();
    assert_eq!(b, pt[4 * CS - 5..4 * CS + 5]);
    assert_eq!(r.get_ref().read - before, 2 * STRIDE);
    // Reading inside an already loaded chunk reads nothing more.
    r.seek(SeekFrom::Start(4 * CS as u64 + 100)).unwrap();
    r.read_exact(&mut b).unwrap();
    assert_eq!(r.get_ref().read - before, 2 * STRIDE);
    // The end: the final chunk (5 + 16 bytes) once.
    r.seek(SeekFrom::End(-3)).unwrap();
    let mut t = Vec::new();
    r.read_to_end(&mut t).unwrap();
    assert_eq!(t, pt[pt.len() - 3..]);
    assert_eq!(r.get_ref().read - before, 2 * STRIDE + 5 + 16);
}

fn flip(ct: &[u8], at: usize) -> Vec<u8> {
    let mut t = ct.to_vec();
    t[at] ^= 0x40;
    t
}

#[test]
fn a_tampered_middle_chunk_fails_alone_and_releases_nothing() {
    let k = key(1);
    for suite in SUITES {
        let pt = data(6 * CS + 10); // 7 chunks
        let ct = seal(&pt, &k, suite, CS as u32);
        let hl = header_len(&ct);
        let bad = flip(&ct, hl + 3 * STRIDE as usize + 77); // chunk 3
        let mut r = reader(&bad, &k);
        r.seek(SeekFrom::Start(3 * CS as u64 + 5)).unwrap();
        let mut b = vec![0xAAu8; 100];
        let e = r.read(&mut b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(
            matches!(sealstream_err(&e), Error::ChunkAuth { index: 3 }),
            "{e:?}"
        );
        assert!(b.iter().all(|&x| x == 0xAA), "no byte of chunk 3 released");
        // Again: still fails (nothing of it was kept).
        assert!(r.read(&mut b).is_err());
        // Other chunks, before and after, and the end still read.
        for at in [0, 2 * CS + 1, 4 * CS, 6 * CS + 9] {
            r.seek(SeekFrom::Start(at as u64)).unwrap();
            let mut one = [0u8; 1];
            r.read_exact(&mut one).unwrap();
            assert_eq!(one[0], pt[at], "{suite:?} byte {at}");
        }
        assert_eq!(r.seek(SeekFrom::End(-1)).unwrap(), pt.len() as u64 - 1);
        // A sequential read stops exactly at the bad chunk.
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        let e = r.read_to_end(&mut all).unwrap_err();
        assert!(matches!(sealstream_err(&e), Error::ChunkAuth { index: 3 }));
        assert!(all == pt[..3 * CS]);
        // into_error gives the typed error back.
        assert!(matches!(into_error(e), Error::ChunkAuth { index: 3 }));
    }
}

#[test]
fn a_cut_or_extended_object_fails_before_anything_end_relative() {
    let k = key(1);
    let pt = data(6 * CS); // 6 full chunks, the last one final
    let ct = seal(&pt, &k, Suite::Aes256Gcm, CS as u32);
    let hl = header_len(&ct);
    let c0 = ct[hl..hl + STRIDE as usize].to_vec();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "cut at a chunk boundary",
            ct[..hl + 5 * STRIDE as usize].to_vec(),
        ),
        ("cut inside the final chunk", ct[..ct.len() - 100].to_vec()),
        ("extended by a copy of chunk 0", [ct.clone(), c0].concat()),
        (
            "extended by 100 bytes",
            [ct.clone(), vec![0u8; 100]].concat(),
        ),
    ];
    for (what, bad) in cases {
        let mut r = reader(&bad, &k);
        let claimed =
            sealstream::format::Layout::from_lengths(hl as u64, CS as u32, bad.len() as u64)
                .unwrap()
                .plaintext_len;
        // Every end-relative seek fails, as does asking the length.
        for d in [0i64, -1, -10, -(CS as i64) - 3] {
            let e = r.seek(SeekFrom::End(d)).unwrap_err();
            let err = sealstream_err(&e);
            assert!(
                matches!(err, Error::Truncated { .. } | Error::ChunkAuth { .. }),
                "{what}: End({d}): {err:?}"
            );
        }
        assert!(r.plaintext_len().is_err(), "{what}");
        // Reading where the claimed end is never reports a clean end of file.
        r.seek(SeekFrom::Start(claimed)).unwrap();
        let mut b = [0u8; 8];
        assert!(r.read(&mut b).is_err(), "{what}: read at the claimed end");
        r.seek(SeekFrom::Start(claimed + 1000)).unwrap();
        assert!(r.read(&mut b).is_err(), "{what}: read past the claimed end");
        // A sequential read returns only authentic bytes and then fails.
        r.seek(SeekFrom::Start(0)).unwrap();
        let mut all = Vec::new();
        assert!(r.read_to_end(&mut all).is_err(), "{what}");
        assert!(pt.starts_with(&all), "{what}: only authentic bytes");
        // Bytes clear of the end still read.
        r.seek(SeekFrom::Start(CS as u64)).unwrap();
        r.read_exact(&mut b).unwrap();
        assert_eq!(b, pt[CS..CS + 8], "{what}");
    }
}

#[test]
fn wrong_key_or_context_fail_at_unlock() {
    let k = key(1);
    let mut p = params(Suite::Aes256Gcm, CS as u32);
    p.context = Context::from_pairs([("tenant", "a")]).unwrap();
    let mut ct = Vec::new();
    let mut w = Encryptor::new(&providers(&k), &p)
        .unwrap()
        .wrap_output(&mut ct)
        .unwrap();
    w.write_all(&data(100)).unwrap();
    w.finish().unwrap();

    let d = Decryptor::new(Cursor::new(ct.clone())).unwrap();
    assert_eq!(d.context().get("tenant"), Some("a"));
    assert_eq!(d.stanzas().len(), 1);
    assert_eq!(d.stanzas()[0].key_id, k.id());
    assert_eq!(d.header_len() as usize, header_len(&ct));

    let other = key(2);
    let e = d.unlock(&providers(&other), &Context::new()).unwrap_err();
    assert!(matches!(e, Error::NoMatchingKey { .. }), "{e:?}");

    let d = Decryptor::new(Cursor::new(ct.clone())).unwrap();
    let wrong = Context::from_pairs([("tenant", "b")]).unwrap();
    let e = d.unlock(&providers(&k), &wrong).unwrap_err();
    assert!(matches!(e, Error::ContextMismatch { .. }), "{e:?}");

    let d = Decryptor::new(Cursor::new(ct)).unwrap();
    let right = Context::from_pairs([("tenant", "a")]).unwrap();
    let mut r = d.unlock(&providers(&k), &right).unwrap();
    let mut all = Vec::new();
    r.read_to_end(&mut all).unwrap();
    assert!(all == data(100));
}

#[test]
fn seek_semantics_are_those_of_a_file() {
    let k = key(1);
    let pt = data(2 * CS + 1);
    let ct = seal(&pt, &k, Suite::Aes256Gcm, CS as u32);
    let mut r = reader(&ct, &k);
    assert_eq!(r.seek(SeekFrom::Current(10)).unwrap(), 10);
    assert_eq!(r.seek(SeekFrom::Current(-4)).unwrap(), 6);
    assert_eq!(r.stream_position().unwrap(), 6);
    let e = r.seek(SeekFrom::Current(-7)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let e = r.seek(SeekFrom::End(-(pt.len() as i64) - 1)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert_eq!(
        r.stream_position().unwrap(),
        6,
        "a failed seek does not move"
    );
    // Past the end: allowed, reads return 0.
    assert_eq!(r.seek(SeekFrom::End(50)).unwrap(), pt.len() as u64 + 50);
    let mut b = [0u8; 4];
    assert_eq!(r.read(&mut b).unwrap(), 0);
    // Empty object: length 0, end of file at once.
    let empty = seal(&[], &k, Suite::Aes256Gcm, CS as u32);
    let mut r = reader(&empty, &k);
    assert_eq!(r.read(&mut b).unwrap(), 0);
    assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), 0);
}

#[test]
fn an_object_embedded_at_an_offset_reads() {
    let k = key(1);
    let pt = data(3 * CS + 9);
    let ct = seal(&pt, &k, Suite::Aes256Gcm, CS as u32);
    let mut file = vec![0x55u8; 1000];
    file.extend_from_slice(&ct);
    let mut c = Cursor::new(file);
    c.seek(SeekFrom::Start(1000)).unwrap();
    let mut r = Decryptor::new(c)
        .unwrap()
        .unlock(&providers(&k), &Context::new())
        .unwrap();
    r.seek(SeekFrom::End(-20)).unwrap();
    let mut t = Vec::new();
    r.read_to_end(&mut t).unwrap();
    assert!(t == pt[pt.len() - 20..]);
}

// ---- SequentialReader: a plain `Read` for inputs that cannot seek ----

/// A `Read` that is not `Seek` and hands out at most `max` bytes per call.
struct Pipe<'a> {
    data: &'a [u8],
    max: usize,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(self.max).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

fn sequential<'a>(ct: &'a [u8], k: &LocalKey, max: usize) -> SequentialReader<Pipe<'a>> {
    Decryptor::new(Pipe { data: ct, max })
        .unwrap()
        .unlock_sequential(&providers(k), &Context::new())
        .unwrap()
}

/// Reads to the end in `step`-byte reads; returns what was read and the error, if any.
fn drain<R: Read>(r: &mut R, step: usize) -> (Vec<u8>, Option<io::Error>) {
    let mut got = Vec::new();
    let mut b = vec![0u8; step];
    loop {
        match r.read(&mut b) {
            Ok(0) => return (got, None),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) => return (got, Some(e)),
        }
    }
}

#[test]
fn sequential_reader_round_trips_both_ways() {
    let k = key(1);
    for suite in SUITES {
        for len in SIZES {
            let pt = data(len);
            let by_engine = seal(&pt, &k, suite, CS as u32);
            let by_writer = seal_by_writer(&pt, &k, suite, 1000);
            for ct in [&by_engine, &by_writer] {
                for (max, step) in [(usize::MAX, 64 * 1024), (1, 7), (CS + 3, CS - 1)] {
                    let mut r = sequential(ct, &k, max);
                    let (got, err) = drain(&mut r, step);
                    assert!(err.is_none(), "{suite:?} len {len}: {err:?}");
                    assert!(got == pt, "{suite:?} len {len} max {max} step {step}");
                }
            }
        }
    }
}

#[test]
fn sequential_reader_stops_at_damage_with_only_authentic_bytes() {
    let k = key(1);
    let pt = data(6 * CS); // 6 full chunks
    let ct = seal(&pt, &k, Suite::ChaCha20Poly1305, CS as u32);
    let hl = header_len(&ct);
    let c0 = ct[hl..hl + STRIDE as usize].to_vec();
    let cut = ct[..hl + 4 * STRIDE as usize].to_vec();
    let stray = [ct.clone(), vec![1u8; 5]].concat();
    let extended = [ct.clone(), c0].concat();
    let tampered = flip(&ct, hl + 2 * STRIDE as usize + 9);
    let cases: [(&str, &[u8], usize); 4] = [
        // Chunk 3 is authentic but not final, and the input ends after it: withheld.
        ("cut at a chunk boundary", &cut, 3 * CS),
        ("5 stray bytes after the final chunk", &stray, 5 * CS),
        ("extended by a copy of chunk 0", &extended, 5 * CS),
        ("chunk 2 tampered", &tampered, 2 * CS),
    ];
    for (what, bad, authentic) in cases {
        let mut r = sequential(bad, &k, usize::MAX);
        let (got, err) = drain(&mut r, 1000);
        let err = err.unwrap_or_else(|| panic!("{what}: read to a clean end"));
        let e = sealstream_err(&err);
        assert!(
            matches!(e, Error::Truncated { .. } | Error::ChunkAuth { .. }),
            "{what}: {e:?}"
        );
        assert!(
            got == pt[..authentic],
            "{what}: exactly the authentic chunks"
        );
        // The failure is final: the position in the stream is lost.
        let again = r.read(&mut [0u8; 10]).unwrap_err();
        assert!(
            again.to_string().contains("earlier read failed"),
            "{what}: {again}"
        );
    }
    // An unfinished writer's output: truncated.
    let mut out = Vec::new();
    let mut w = writer_for(&k, Suite::Aes256Gcm, &mut out);
    w.write_all(&pt).unwrap();
    drop(w);
    let (got, err) = drain(&mut sequential(&out, &k, usize::MAX), 1000);
    let err = err.expect("an unfinished object never ends cleanly");
    assert!(
        matches!(sealstream_err(&err), Error::Truncated { .. }),
        "{err:?}"
    );
    assert!(pt.starts_with(&got) && got.len() < pt.len());
}

#[test]
fn both_readers_are_bufread_without_a_copy() {
    use std::io::BufRead;
    let k = key(1);
    let text: String = (0..3000).map(|i| format!("line {i}\n")).collect();
    let ct = seal(text.as_bytes(), &k, Suite::Aes256Gcm, CS as u32);
    let expected: Vec<&str> = text.lines().collect();

    let mut r = reader(&ct, &k);
    let lines: Vec<String> = (&mut r).lines().map(|l| l.unwrap()).collect();
    assert_eq!(lines, expected);
    // fill_buf gives at most the rest of one chunk, from the position.
    r.seek(SeekFrom::Start(CS as u64 - 3)).unwrap();
    assert_eq!(r.fill_buf().unwrap(), &text.as_bytes()[CS - 3..CS]);
    r.consume(3);
    assert_eq!(r.fill_buf().unwrap(), &text.as_bytes()[CS..2 * CS]);

    let r = sequential(&ct, &k, 1000);
    let lines: Vec<String> = r.lines().map(|l| l.unwrap()).collect();
    assert_eq!(lines, expected);

    // A tampered chunk stops `lines` with an error, never a silent end.
    let bad = flip(&ct, header_len(&ct) + STRIDE as usize + 5);
    let mut r = reader(&bad, &k);
    let res: Result<Vec<String>, io::Error> = (&mut r).lines().collect();
    assert!(matches!(
        sealstream_err(&res.unwrap_err()),
        Error::ChunkAuth { index: 1 }
    ));
    let res: Result<Vec<String>, io::Error> = sequential(&bad, &k, 1000).lines().collect();
    assert!(matches!(
        sealstream_err(&res.unwrap_err()),
        Error::ChunkAuth { index: 1 }
    ));
}

#[test]
fn the_adapters_can_move_to_another_thread() {
    fn send<T: Send>() {}
    send::<Encryptor>();
    send::<StreamWriter<std::fs::File>>();
    send::<Decryptor<std::fs::File>>();
    send::<StreamReader<std::fs::File>>();
    send::<SequentialReader<std::fs::File>>();
}
