//! The async streaming API (src/aio) against the blocking engine: byte-for-byte equal
//! output, the same refusals of tampered input, cancellation that leaves no valid stream
//! behind, current-thread and multi-thread runtimes, dribbling readers and writers, and
//! many streams sharing one pool. Also the blocking engine's cancel token.

use std::future::Future;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskCx, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use sealstream::Backend;
use sealstream::Error;
use sealstream::PayloadCipher;
use sealstream::aio::{self, DecryptReader, EncryptReader, EncryptWriter};
use sealstream::envelope::{self, EncryptParams};
use sealstream::format::{Context, Suite};
use sealstream::keys::{self, KeyProvider};
use sealstream::stream::{self, BatchBuffers, CancelToken, EngineOptions, OpenParams, Pool};
use sealstream::testkit::ChunkCipher as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

const CS: u32 = 4096;
const SUITES: [Suite; 2] = [Suite::Aes256Gcm, Suite::ChaCha20Poly1305];

fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

/// Three chunks per batch, so a few KiB already span many batches.
fn small_batches() -> EngineOptions<'static> {
    EngineOptions {
        batch_bytes: 3 * CS as usize,
        ..EngineOptions::default()
    }
}

fn sizes() -> Vec<usize> {
    let cs = CS as usize;
    vec![0, 1, cs - 1, cs, cs + 1, 3 * cs, 3 * cs + 1, 40 * cs + 7]
}

fn cipher(suite: Suite, k: u8) -> PayloadCipher {
    PayloadCipher::new(suite, Backend::Ring, &[k; 32])
}

fn sync_seal(c: &PayloadCipher, pt: &[u8]) -> Vec<u8> {
    let mut ct = Vec::new();
    stream::seal(c, CS, pt, &mut ct, &small_batches()).unwrap();
    ct
}

fn sync_open(c: &PayloadCipher, ct: &[u8]) -> sealstream::Result<Vec<u8>> {
    let mut out = Vec::new();
    stream::open(c, CS, ct, &mut out, OpenParams::default(), &small_batches())?;
    Ok(out)
}

/// Runs the test body on a current-thread runtime, then on a multi-thread one.
fn both_runtimes<F, Fut>(f: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(f());
}

async fn seal_with_writer(c: &PayloadCipher, pt: &[u8], opts: &EngineOptions<'_>) -> Vec<u8> {
    let mut w = EncryptWriter::new(c, CS, Vec::new(), opts).unwrap();
    // Uneven pieces: smaller than, equal to and larger than a chunk and a batch.
    let steps = [1usize, 999, 4096, 10_000, 3];
    let mut pos = 0;
    let mut k = 0;
    while pos < pt.len() {
        let n = steps[k % steps.len()].min(pt.len() - pos);
        w.write_all(&pt[pos..pos + n]).await.unwrap();
        pos += n;
        k += 1;
    }
    w.shutdown().await.unwrap();
    assert!(w.is_finished());
    assert_eq!(w.stats().plaintext_bytes, pt.len() as u64);
    w.into_inner()
}

#[test]
fn round_trips_match_the_blocking_engine_byte_for_byte() {
    both_runtimes(|| async {
        for suite in SUITES {
            let c = cipher(suite, 5);
            for len in sizes() {
                let pt = data(len);
                let reference = sync_seal(&c, &pt);
                let opts = small_batches();

                let mut ct = Vec::new();
                let st = aio::seal(&c, CS, &pt[..], &mut ct, &opts).await.unwrap();
                assert_eq!(ct, reference, "aio::seal {suite:?} {len}");
                assert_eq!(st.plaintext_bytes, len as u64);

                assert_eq!(
                    seal_with_writer(&c, &pt, &opts).await,
                    reference,
                    "EncryptWriter {suite:?} {len}"
                );

                let mut via_reader = Vec::new();
                EncryptReader::new(&c, CS, &pt[..], &opts)
                    .unwrap()
                    .read_to_end(&mut via_reader)
                    .await
                    .unwrap();
                assert_eq!(via_reader, reference, "EncryptReader {suite:?} {len}");

                let mut back = Vec::new();
                let st = aio::open(
                    &c,
                    CS,
                    &reference[..],
                    &mut back,
                    OpenParams::default(),
                    &opts,
                )
                .await
                .unwrap();
                assert_eq!(back, pt, "aio::open {suite:?} {len}");
                assert_eq!(st.plaintext_bytes, len as u64);

                let mut back = Vec::new();
                DecryptReader::new(&c, CS, &reference[..], OpenParams::default(), &opts)
                    .unwrap()
                    .read_to_end(&mut back)
                    .await
                    .unwrap();
                assert_eq!(back, pt, "DecryptReader {suite:?} {len}");
            }
        }
    });
}

#[test]
fn ranged_open_matches_the_blocking_engine() {
    both_runtimes(|| async {
        let c = cipher(Suite::Aes256Gcm, 9);
        let pt = data(20 * CS as usize + 100);
        let ct = sync_seal(&c, &pt);
        for (skip, limit) in [(0, Some(1)), (5000, Some(30_000)), (CS as u64, None)] {
            let params = OpenParams {
                skip,
                limit,
                ..OpenParams::default()
            };
            let mut want = Vec::new();
            stream::open(&c, CS, &ct[..], &mut want, params, &small_batches()).unwrap();
            let mut got = Vec::new();
            aio::open(&c, CS, &ct[..], &mut got, params, &small_batches())
                .await
                .unwrap();
            assert_eq!(got, want, "aio::open skip {skip} limit {limit:?}");
            let mut got = Vec::new();
            DecryptReader::new(&c, CS, &ct[..], params, &small_batches())
                .unwrap()
                .read_to_end(&mut got)
                .await
                .unwrap();
            assert_eq!(got, want, "DecryptReader skip {skip} limit {limit:?}");
        }
    });
}

/// Every way of damaging a stream: (name, damaged body).
fn tampered(ct: &[u8]) -> Vec<(String, Vec<u8>)> {
    let stride = CS as usize + 16;
    let mut v = Vec::new();
    for pos in [0, stride - 1, 5 * stride + 17, ct.len() - 1] {
        let mut t = ct.to_vec();
        t[pos] ^= 0x01;
        v.push((format!("flip byte {pos}"), t));
    }
    v.push((
        "truncate at a chunk boundary".into(),
        ct[..6 * stride].to_vec(),
    ));
    v.push((
        "truncate off a boundary".into(),
        ct[..6 * stride + 100].to_vec(),
    ));
    v.push((
        "truncate inside the tag".into(),
        ct[..ct.len() - 3].to_vec(),
    ));
    let mut swap = ct.to_vec();
    swap[2 * stride..3 * stride].copy_from_slice(&ct[3 * stride..4 * stride]);
    swap[3 * stride..4 * stride].copy_from_slice(&ct[2 * stride..3 * stride]);
    v.push(("reorder chunks 2 and 3".into(), swap));
    let mut dup = ct[..4 * stride].to_vec();
    dup.extend_from_slice(&ct[3 * stride..]);
    v.push(("duplicate chunk 3".into(), dup));
    let mut app = ct.to_vec();
    app.extend_from_slice(&[0u8; 5]);
    v.push(("append 5 bytes".into(), app));
    let mut app = ct.to_vec();
    app.extend_from_slice(&ct[..stride]);
    v.push(("append a whole chunk".into(), app));
    v.push(("empty body".into(), Vec::new()));
    v
}

#[test]
fn tampered_streams_are_refused_like_the_blocking_engine() {
    both_runtimes(|| async {
        for suite in SUITES {
            let c = cipher(suite, 3);
            let pt = data(12 * CS as usize + 500);
            let ct = sync_seal(&c, &pt);
            for (name, bad) in tampered(&ct) {
                let want = sync_open(&c, &bad).expect_err(&name);
                let mut out = Vec::new();
                let got = aio::open(
                    &c,
                    CS,
                    &bad[..],
                    &mut out,
                    OpenParams::default(),
                    &small_batches(),
                )
                .await
                .expect_err(&name);
                assert_eq!(
                    std::mem::discriminant(&got),
                    std::mem::discriminant(&want),
                    "{suite:?} {name}: {got} vs {want}"
                );
                assert_eq!(got.to_string(), want.to_string(), "{suite:?} {name}");
                assert!(
                    pt.starts_with(&out),
                    "{name}: output is not authenticated plaintext"
                );

                // The reader: what it released is a prefix of the plaintext, then the error.
                let mut r =
                    DecryptReader::new(&c, CS, &bad[..], OpenParams::default(), &small_batches())
                        .unwrap();
                let mut out = Vec::new();
                let e = r.read_to_end(&mut out).await.expect_err(&name);
                let typed = aio::error_of(&e).unwrap_or_else(|| panic!("{name}: untyped {e}"));
                assert_eq!(typed.to_string(), want.to_string(), "{suite:?} {name}");
                assert!(
                    pt.starts_with(&out),
                    "{name}: reader released unauthenticated bytes"
                );
                assert!(out.len() < pt.len(), "{name}: everything released");
            }
        }
    });
}

/// Output shared with the test after the stream's future is gone.
#[derive(Clone, Default)]
struct SharedOut(Arc<Mutex<Vec<u8>>>);

impl SharedOut {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl AsyncWrite for SharedOut {
    fn poll_write(self: Pin<&mut Self>, _: &mut TaskCx<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(b);
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskCx<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskCx<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Gives `head` bytes, then never again (a client that stopped sending).
struct Stalls {
    data: Vec<u8>,
    pos: usize,
}

impl AsyncRead for Stalls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut TaskCx<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos >= self.data.len() {
            return Poll::Pending;
        }
        let n = buf.remaining().min(self.data.len() - self.pos);
        let p = self.pos;
        buf.put_slice(&self.data[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

/// Sealed output cut short must not open: no final chunk.
fn assert_not_a_stream(c: &PayloadCipher, ct: &[u8], what: &str) {
    let e = sync_open(c, ct).expect_err(what);
    assert!(
        matches!(e, Error::Truncated { .. } | Error::ChunkAuth { .. }),
        "{what}: {e}"
    );
}

#[test]
fn dropping_the_future_stops_the_stream_and_leaves_no_final_chunk() {
    both_runtimes(|| async {
        let pool = Pool::new(2).unwrap();
        let c = cipher(Suite::Aes256Gcm, 4);
        let head = 10 * CS as usize + 123;
        let out = SharedOut::default();
        let opts = EngineOptions {
            pool: Some(&pool),
            ..small_batches()
        };
        let input = Stalls {
            data: data(head),
            pos: 0,
        };
        let fut = aio::seal(&c, CS, input, out.clone(), &opts);
        let r = tokio::time::timeout(Duration::from_millis(200), fut).await;
        assert!(r.is_err(), "the stream cannot finish: its input stalls");
        let written = out.bytes();
        assert!(
            !written.is_empty(),
            "full batches before the stall went out"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(out.bytes(), written, "output after the future was dropped");
        assert_not_a_stream(&c, &written, "dropped aio::seal");

        // The same through an aborted task.
        let out2 = SharedOut::default();
        let (c2, pool2, o2) = (c.clone(), pool.clone(), out2.clone());
        let task = tokio::spawn(async move {
            let opts = EngineOptions {
                pool: Some(&pool2),
                ..small_batches()
            };
            let input = Stalls {
                data: data(head),
                pos: 0,
            };
            aio::seal(&c2, CS, input, o2, &opts).await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        let written = out2.bytes();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(out2.bytes(), written, "output after the task was aborted");
        assert_not_a_stream(&c, &written, "aborted task");

        // A decrypt dropped mid-stream: what was written is authenticated plaintext only.
        let pt = data(30 * CS as usize);
        let ct = sync_seal(&c, &pt);
        let out3 = SharedOut::default();
        let input = Stalls {
            data: ct[..ct.len() / 2].to_vec(),
            pos: 0,
        };
        let fut = aio::open(&c, CS, input, out3.clone(), OpenParams::default(), &opts);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), fut)
                .await
                .is_err()
        );
        let got = out3.bytes();
        assert!(pt.starts_with(&got) && got.len() < pt.len());

        // An EncryptWriter dropped without shutdown.
        let mut w = EncryptWriter::new(&c, CS, out.clone(), &opts).unwrap();
        out.0.lock().unwrap().clear();
        w.write_all(&data(7 * CS as usize + 5)).await.unwrap();
        w.flush().await.unwrap();
        drop(w);
        assert_not_a_stream(&c, &out.bytes(), "EncryptWriter dropped without shutdown");

        // The pool still serves new streams.
        let pt = data(9 * CS as usize + 1);
        let mut ct = Vec::new();
        aio::seal(&c, CS, &pt[..], &mut ct, &opts).await.unwrap();
        assert_eq!(ct, sync_seal(&c, &pt));
    });
}

/// Endless plaintext, a little at a time, with a timer between reads.
struct Dribbling {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Dribbling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let s = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(1))));
        if s.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.sleep = None;
        let n = buf.remaining().min(1000);
        buf.put_slice(&vec![7u8; n]);
        Poll::Ready(Ok(()))
    }
}

#[test]
fn a_cancel_token_stops_async_and_blocking_streams() {
    both_runtimes(|| async {
        let c = cipher(Suite::ChaCha20Poly1305, 8);
        let token = CancelToken::new();
        let opts = EngineOptions {
            cancel: Some(&token),
            ..small_batches()
        };
        let out = SharedOut::default();
        let t2 = token.clone();
        let canceller = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            t2.cancel();
        };
        let start = Instant::now();
        let (r, ()) = tokio::join!(
            aio::seal(&c, CS, Dribbling { sleep: None }, out.clone(), &opts),
            canceller
        );
        assert!(matches!(r, Err(Error::Cancelled(_))), "{r:?}");
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_not_a_stream(&c, &out.bytes(), "cancelled aio::seal");
    });

    // Blocking: an endless reader, cancelled from another thread.
    let c = cipher(Suite::Aes256Gcm, 8);
    let token = CancelToken::new();
    let t2 = token.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        t2.cancel();
    });
    let opts = EngineOptions {
        cancel: Some(&token),
        ..small_batches()
    };
    // Capped, so that a broken cancellation fails (write error) instead of filling memory.
    struct Capped(Vec<u8>);
    impl io::Write for Capped {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0.len() + b.len() > 256 << 20 {
                return Err(io::Error::other("test cap: the stream was not cancelled"));
            }
            self.0.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut capped = Capped(Vec::new());
    let r = stream::seal(&c, CS, io::repeat(1), &mut capped, &opts);
    let out = capped.0;
    canceller.join().unwrap();
    assert!(matches!(r, Err(Error::Cancelled(_))), "{r:?}");
    assert_not_a_stream(&c, &out, "cancelled stream::seal");

    // Blocking, a reader that is slow (not endless): stops at the next batch boundary.
    struct Slow;
    impl Read for Slow {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            let n = b.len().min(500);
            b[..n].fill(2);
            Ok(n)
        }
    }
    let token = CancelToken::new();
    let t2 = token.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        t2.cancel();
    });
    let opts = EngineOptions {
        cancel: Some(&token),
        ..small_batches()
    };
    let start = Instant::now();
    let r = stream::seal(&c, CS, Slow, Vec::new(), &opts);
    assert!(matches!(r, Err(Error::Cancelled(_))), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// Hands out (or takes) at most `max` bytes per call and is pending every other call.
struct Dribble<T> {
    inner: T,
    pos: usize,
    max: usize,
    tick: bool,
}

impl<T> Dribble<T> {
    fn new(inner: T, max: usize) -> Self {
        Dribble {
            inner,
            pos: 0,
            max,
            tick: false,
        }
    }
    fn pend(&mut self, cx: &mut TaskCx<'_>) -> bool {
        self.tick = !self.tick;
        if self.tick {
            cx.waker().wake_by_ref();
        }
        self.tick
    }
}

impl AsyncRead for Dribble<Vec<u8>> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pend(cx) {
            return Poll::Pending;
        }
        let n = buf
            .remaining()
            .min(self.max)
            .min(self.inner.len() - self.pos);
        let p = self.pos;
        buf.put_slice(&self.inner[p..p + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Dribble<Vec<u8>> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskCx<'_>,
        b: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pend(cx) {
            return Poll::Pending;
        }
        let n = b.len().min(self.max);
        self.inner.extend_from_slice(&b[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut TaskCx<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut TaskCx<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[test]
fn dribbling_readers_and_writers() {
    both_runtimes(|| async {
        let c = cipher(Suite::Aes256Gcm, 6);
        for len in [0, 1, CS as usize, 7 * CS as usize + 3] {
            let pt = data(len);
            let reference = sync_seal(&c, &pt);
            for max in [1, 7, 5000] {
                let mut w = Dribble::new(Vec::new(), max);
                aio::seal(
                    &c,
                    CS,
                    Dribble::new(pt.clone(), max),
                    &mut w,
                    &small_batches(),
                )
                .await
                .unwrap();
                assert_eq!(w.inner, reference, "seal len {len} max {max}");

                let mut w = Dribble::new(Vec::new(), max);
                aio::open(
                    &c,
                    CS,
                    Dribble::new(reference.clone(), max),
                    &mut w,
                    OpenParams::default(),
                    &small_batches(),
                )
                .await
                .unwrap();
                assert_eq!(w.inner, pt, "open len {len} max {max}");

                let mut ew =
                    EncryptWriter::new(&c, CS, Dribble::new(Vec::new(), max), &small_batches())
                        .unwrap();
                ew.write_all(&pt).await.unwrap();
                ew.shutdown().await.unwrap();
                assert_eq!(
                    ew.into_inner().inner,
                    reference,
                    "writer len {len} max {max}"
                );

                let mut r = DecryptReader::new(
                    &c,
                    CS,
                    Dribble::new(reference.clone(), max),
                    OpenParams::default(),
                    &small_batches(),
                )
                .unwrap();
                let mut back = Vec::new();
                let mut one = [0u8; 3];
                loop {
                    // Tiny reads on the consumer side too.
                    let n = r.read(&mut one).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    back.extend_from_slice(&one[..n]);
                }
                assert_eq!(back, pt, "reader len {len} max {max}");
            }
        }
    });
}

#[test]
fn many_concurrent_streams_share_one_pool() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = Pool::new(2).unwrap();
        let mut tasks = Vec::new();
        for i in 0..24u8 {
            let pool = pool.clone();
            tasks.push(tokio::spawn(async move {
                let suite = SUITES[usize::from(i) % 2];
                let c = cipher(suite, i);
                let pt = data(usize::from(i) * 3001 + 17 * CS as usize);
                let opts = EngineOptions {
                    pool: Some(&pool),
                    ..small_batches()
                };
                let mut w = EncryptWriter::new(&c, CS, Vec::new(), &opts).unwrap();
                w.write_all(&pt).await.unwrap();
                w.shutdown().await.unwrap();
                let ct = w.into_inner();
                let mut back = Vec::new();
                DecryptReader::new(&c, CS, &ct[..], OpenParams::default(), &opts)
                    .unwrap()
                    .read_to_end(&mut back)
                    .await
                    .unwrap();
                assert!(back == pt, "stream {i}");
                ct
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            let ct = t.await.unwrap();
            let i = i as u8;
            let c = cipher(SUITES[usize::from(i) % 2], i);
            let pt = data(usize::from(i) * 3001 + 17 * CS as usize);
            assert_eq!(ct, sync_seal(&c, &pt), "stream {i} vs blocking engine");
        }
    });
}

#[test]
fn stream_and_sink_forms() {
    both_runtimes(|| async {
        let c = cipher(Suite::Aes256Gcm, 2);
        let pt = data(11 * CS as usize + 99);
        let reference = sync_seal(&c, &pt);

        // Plaintext arrives as a Stream of Bytes (an HTTP body): StreamReader makes it a reader.
        let parts: Vec<io::Result<Bytes>> = pt
            .chunks(3000)
            .map(|p| Ok(Bytes::copy_from_slice(p)))
            .collect();
        let body = tokio_util::io::StreamReader::new(futures_util::stream::iter(parts));
        let mut ct = Vec::new();
        aio::seal(&c, CS, body, &mut ct, &small_batches())
            .await
            .unwrap();
        assert_eq!(ct, reference);

        // Ciphertext as a Stream (a response or upload body).
        let s = EncryptReader::new(&c, CS, &pt[..], &small_batches())
            .unwrap()
            .into_stream();
        let got: Vec<Bytes> = s.map(|b| b.unwrap()).collect().await;
        assert_eq!(got.concat(), reference);

        // Plaintext as a Stream.
        let s = DecryptReader::new(
            &c,
            CS,
            &reference[..],
            OpenParams::default(),
            &small_batches(),
        )
        .unwrap()
        .into_stream();
        let got: Vec<Bytes> = s.map(|b| b.unwrap()).collect().await;
        assert_eq!(got.concat(), pt);

        // A Sink<Bytes> that encrypts; closing it writes the final chunk.
        let mut sink = EncryptWriter::new(&c, CS, Vec::new(), &small_batches())
            .unwrap()
            .into_sink();
        for p in pt.chunks(5000) {
            sink.send(Bytes::copy_from_slice(p)).await.unwrap();
        }
        SinkExt::<Bytes>::close(&mut sink).await.unwrap();
        assert_eq!(sink.into_inner().into_inner(), reference);
    });
}

/// `EncryptReader::into_sealed_stream`: the ciphertext of the blocking engine, one item per
/// whole batch (the engine's buffer, no copy), through slow readers; with `BatchBuffers`
/// the buffers come back when the stream and its items are dropped, and a second stream
/// reuses them instead of allocating.
#[test]
fn sealed_stream_hands_out_whole_batches() {
    both_runtimes(|| async {
        let pool = Pool::new(1).unwrap(); // window 2T + 2 = 4 batches
        let batch = 3 * (CS as usize + 16);
        for suite in SUITES {
            let c = cipher(suite, 6);
            for len in sizes() {
                let pt = data(len);
                let reference = sync_seal(&c, &pt);
                let bufs = BatchBuffers::new(usize::MAX);
                for shared in [None, Some(&bufs)] {
                    let opts = EngineOptions {
                        pool: Some(&pool),
                        buffers: shared,
                        ..small_batches()
                    };
                    let got: Vec<Bytes> =
                        EncryptReader::new(&c, CS, Dribble::new(pt.clone(), 1000), &opts)
                            .unwrap()
                            .into_sealed_stream()
                            .map(|b| b.unwrap())
                            .collect()
                            .await;
                    assert_eq!(got.concat(), reference, "{suite:?} {len}");
                    let (last, whole) = got.split_last().unwrap();
                    assert!(whole.iter().all(|b| b.len() == batch), "{len}");
                    assert!(!last.is_empty() && last.len() <= batch);
                    if shared.is_some() {
                        drop(got);
                        // The window's 4 buffers and one per item handed out.
                        let n = reference.len().div_ceil(batch);
                        assert_eq!(bufs.idle_bytes(), (4 + n) * batch, "{len}");
                    }
                }
                // Again, dropping each item as it comes: the kept buffers are reused.
                let before = bufs.idle_bytes();
                let opts = EngineOptions {
                    pool: Some(&pool),
                    buffers: Some(&bufs),
                    ..small_batches()
                };
                let mut s = EncryptReader::new(&c, CS, &pt[..], &opts)
                    .unwrap()
                    .into_sealed_stream();
                let mut ct = Vec::new();
                while let Some(b) = s.next().await {
                    ct.extend_from_slice(&b.unwrap());
                }
                assert_eq!(ct, reference);
                assert_eq!(s.stats().plaintext_bytes, len as u64);
                drop(s);
                assert_eq!(bufs.idle_bytes(), before, "no new buffers {len}");
            }
        }
        // A failing input: an error, then the end (never a final chunk).
        let c = cipher(Suite::Aes256Gcm, 6);
        let parts: Vec<io::Result<Bytes>> = vec![
            Ok(Bytes::from(data(5 * CS as usize))),
            Err(io::Error::other("client went away")),
        ];
        let body = tokio_util::io::StreamReader::new(futures_util::stream::iter(parts));
        let items: Vec<io::Result<Bytes>> = EncryptReader::new(&c, CS, body, &small_batches())
            .unwrap()
            .into_sealed_stream()
            .collect()
            .await;
        let (last, ok) = items.split_last().unwrap();
        assert!(last.is_err(), "the error comes last");
        assert!(ok.iter().all(|b| b.is_ok()));
    });
}

/// `DecryptReader::into_opened_stream`: the plaintext of the blocking engine (whole and
/// ranged), one item per chunk piece in the engine's buffer (no copy); a damaged stream
/// releases only authenticated plaintext, then `aio::open`'s error, then the end; with `BatchBuffers` the buffers come back once the items are dropped and a
/// second stream reuses them.
#[test]
fn opened_stream_hands_out_authenticated_chunks() {
    both_runtimes(|| async {
        let pool = Pool::new(1).unwrap();
        for suite in SUITES {
            let c = cipher(suite, 8);
            for len in sizes() {
                let pt = data(len);
                let ct = sync_seal(&c, &pt);
                let bufs = BatchBuffers::new(usize::MAX);
                for params in [
                    OpenParams::default(),
                    OpenParams {
                        skip: 5000,
                        limit: Some(30_000),
                        ..OpenParams::default()
                    },
                ] {
                    let mut want = Vec::new();
                    stream::open(&c, CS, &ct[..], &mut want, params, &small_batches()).unwrap();
                    for shared in [None, Some(&bufs)] {
                        let opts = EngineOptions {
                            pool: Some(&pool),
                            buffers: shared,
                            ..small_batches()
                        };
                        let got: Vec<Bytes> = DecryptReader::new(
                            &c,
                            CS,
                            Dribble::new(ct.clone(), 1000),
                            params,
                            &opts,
                        )
                        .unwrap()
                        .into_opened_stream()
                        .map(|b| b.unwrap())
                        .collect()
                        .await;
                        assert_eq!(got.concat(), want, "{suite:?} {len} {params:?}");
                        assert!(got.iter().all(|b| !b.is_empty() && b.len() <= CS as usize));
                    }
                }
                // Dropping each item as it comes: the kept buffers are reused.
                let before = bufs.idle_bytes();
                assert!(before > 0, "buffers came back");
                let opts = EngineOptions {
                    pool: Some(&pool),
                    buffers: Some(&bufs),
                    ..small_batches()
                };
                let mut s = DecryptReader::new(&c, CS, &ct[..], OpenParams::default(), &opts)
                    .unwrap()
                    .into_opened_stream();
                let mut out = Vec::new();
                while let Some(b) = s.next().await {
                    out.extend_from_slice(&b.unwrap());
                }
                assert_eq!(out, pt);
                assert_eq!(s.stats().plaintext_bytes, len as u64);
                drop(s);
                assert_eq!(bufs.idle_bytes(), before, "no new buffers {len}");
            }
            // Damaged streams: the same authenticated prefix as aio::open, then the error.
            let pt = data(12 * CS as usize + 500);
            let ct = sync_seal(&c, &pt);
            for (name, bad) in tampered(&ct) {
                let mut want = Vec::new();
                let want_err = aio::open(
                    &c,
                    CS,
                    &bad[..],
                    &mut want,
                    OpenParams::default(),
                    &small_batches(),
                )
                .await
                .expect_err(&name);
                let items: Vec<io::Result<Bytes>> =
                    DecryptReader::new(&c, CS, &bad[..], OpenParams::default(), &small_batches())
                        .unwrap()
                        .into_opened_stream()
                        .collect()
                        .await;
                let (last, ok) = items.split_last().expect(&name);
                let e = last.as_ref().expect_err(&name);
                let got: Vec<u8> = ok
                    .iter()
                    .flat_map(|b| b.as_ref().expect(&name).to_vec())
                    .collect();
                // How far each got before the error depends on timing (an input error can
                // come before earlier batches are out); both release only authenticated
                // plaintext.
                assert!(pt.starts_with(&want), "{name}");
                assert!(pt.starts_with(&got), "{name}: not authenticated plaintext");
                assert_eq!(
                    aio::error_of(e).map(ToString::to_string),
                    Some(want_err.to_string()),
                    "{suite:?} {name}"
                );
            }
        }
    });
}

#[test]
fn header_helpers_make_and_read_whole_objects() {
    both_runtimes(|| async {
        let key = sealstream::LocalKey::from_bytes([4; 32]);
        let providers: [&dyn KeyProvider; 1] = [&key];
        let params = EncryptParams {
            chunk_size: CS,
            ..EncryptParams::default()
        };
        let (dek, stanzas) = keys::wrap_for_all(&providers, &params.context).unwrap();
        let (header, c) = envelope::seal_header(&dek, [1; 32], stanzas, &params).unwrap();
        let pt = data(9 * CS as usize + 5);
        let mut file = Vec::new();
        aio::encrypt_with_header(&header, &c, &pt[..], &mut file, &small_batches())
            .await
            .unwrap();

        // The blocking library reads it.
        let mut back = Vec::new();
        sealstream::decrypt(&file[..], &mut back, &providers, &Default::default()).unwrap();
        assert_eq!(back, pt);

        // And the async helpers.
        let mut input = &file[..];
        let (h, len) = aio::read_header(&mut input).await.unwrap();
        assert_eq!(h, header);
        assert_eq!(len, header.to_bytes().unwrap().len());
        let c2 = envelope::unlock(&h, &providers, &Context::new(), Backend::Ring).unwrap();
        let mut back = Vec::new();
        aio::decrypt_body(&h, &c2, input, &mut back, &small_batches())
            .await
            .unwrap();
        assert_eq!(back, pt);

        // Header errors as the blocking reader reports them.
        for cut in [0, 5, 60, 84, 100] {
            let mut r = &file[..cut];
            let got = aio::read_header(&mut r).await.unwrap_err();
            let want = sealstream::Header::read_from(&mut &file[..cut]).unwrap_err();
            assert_eq!(got.to_string(), want.to_string(), "cut at {cut}");
        }
        let mut bad = file.clone();
        bad[0] ^= 1;
        assert!(matches!(
            aio::read_header(&mut &bad[..]).await,
            Err(Error::Header(sealstream::HeaderError::BadMagic))
        ));
        let mut huge = file.clone();
        huge[48..52].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            aio::read_header(&mut &huge[..]).await,
            Err(Error::Header(sealstream::HeaderError::HeaderLenOutOfRange(
                _
            )))
        ));
    });
}

/// A header stored apart from its body: `aio::decrypt_body` takes the header and the body
/// separately, so a detached header (`Header::parse_exact`) decrypts the body alone, and
/// another object's header (same key) fails on the first chunk, releasing nothing.
#[test]
fn a_detached_header_decrypts_its_body_alone() {
    let k = sealstream::LocalKey::from_bytes([3; 32]);
    let providers: [&dyn KeyProvider; 1] = [&k];
    let params = EncryptParams {
        chunk_size: CS,
        ..EncryptParams::default()
    };
    let pt = data(5 * CS as usize + 17);
    let seal = || {
        let mut ct = Vec::new();
        envelope::encrypt(&pt[..], &mut ct, &providers, &params).unwrap();
        let (_, hl) = sealstream::format::Header::parse(&ct).unwrap();
        let body = ct.split_off(hl);
        (sealstream::format::Header::parse_exact(&ct).unwrap(), body)
    };
    let (header, body) = seal();
    let (other, _) = seal();
    let unlock = |h| envelope::unlock(h, &providers, &Context::new(), Backend::Ring).unwrap();
    let (cipher, foreign) = (unlock(&header), unlock(&other));
    both_runtimes(|| async {
        let mut out = Vec::new();
        aio::decrypt_body(&header, &cipher, &body[..], &mut out, &small_batches())
            .await
            .unwrap();
        assert!(out == pt);
        let mut out = Vec::new();
        let e = aio::decrypt_body(&other, &foreign, &body[..], &mut out, &small_batches())
            .await
            .unwrap_err();
        assert!(e.is_authentication(), "{e:?}");
        assert!(out.is_empty(), "{} bytes released", out.len());
    });
}
