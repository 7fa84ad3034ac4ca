//! Plain (unencrypted) S3 transfer, the baseline for `scripts/bench_s3.sh`.
//!
//! ```text
//! cargo run --release --example s3_plain -- put FILE s3://bucket/key [--part-size SIZE] [--concurrency N]
//! cargo run --release --example s3_plain -- get s3://bucket/key OUT  [--part-size SIZE] [--concurrency N]
//! ```
//!
//! It does what `sealstream encrypt FILE -o s3://…` and `sealstream decrypt s3://… -o OUT`
//! do on the wire, minus the encryption, so that the two can be compared fairly: it uses
//! the very transfer layer the encrypted forms are built on (`sealstream::s3::transfer`),
//! with a handle made by `S3::connect` (same rustls+ring HTTP client, retries, timeouts,
//! path-style addressing with an endpoint override) on a 2-thread tokio runtime:
//!
//! - `put` is a [`MultipartWriter`] (CreateMultipartUpload with CRC32, UploadPart with a
//!   CRC32 checksum, CompleteMultipartUpload with `If-None-Match: *`), at most N parts in
//!   flight. Parts hold the same plaintext bytes as sealstream's: SIZE rounded up to whole
//!   64 KiB chunks (sealstream's parts are those chunks plus a 16-byte tag each);
//! - `get` HEADs the object, then reads it with a [`RangedReader`]: ranged GETs pinned
//!   with `If-Match: ETAG` of SIZE rounded up to whole 64 KiB, at most N in flight,
//!   written in order to OUT.
//!
//! Defaults are sealstream's: `--part-size 8MiB --concurrency 4`. It prints one line to
//! stderr: bytes, seconds, MB/s.

use std::time::Instant;

use bytes::Bytes;
use sealstream::s3::transfer::{MultipartWriter, Pin, RangedReader, WriterOptions};
use sealstream::s3::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, S3, S3Settings, S3Url};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// sealstream's default chunk size: parts are whole chunks.
const CHUNK: u64 = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("s3_plain: {e}");
        std::process::exit(1);
    }
}

fn usage() -> BoxError {
    "usage: s3_plain put FILE s3://bucket/key | get s3://bucket/key OUT  [--part-size SIZE] [--concurrency N]".into()
}

async fn run() -> Result<(), BoxError> {
    let mut pos = Vec::new();
    let mut part_size = DEFAULT_PART_SIZE;
    let mut concurrency = DEFAULT_CONCURRENCY;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--part-size" => {
                part_size = sealstream::size::parse_size(&args.next().ok_or_else(usage)?)?;
            }
            "--concurrency" => concurrency = args.next().ok_or_else(usage)?.parse()?,
            _ => pos.push(a),
        }
    }
    if concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    // Same plaintext bytes per part as sealstream: whole 64 KiB chunks.
    let part = part_size.div_ceil(CHUNK).max(1) * CHUNK;
    let s3 = S3::connect(S3Settings {
        concurrency,
        part_size,
        ..S3Settings::default()
    })
    .await?;
    let t = Instant::now();
    let bytes = match pos.as_slice() {
        [m, file, url] if m == "put" => put(&s3, file, &S3Url::parse(url)?, part).await?,
        [m, url, out] if m == "get" => get(&s3, &S3Url::parse(url)?, out, part).await?,
        _ => return Err(usage()),
    };
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "s3_plain {}: {bytes} bytes in {s:.3} s = {:.0} MB/s (part {part} bytes, concurrency {concurrency})",
        pos[0],
        bytes as f64 / s / 1e6
    );
    Ok(())
}

/// Fills `buf` from `f` unless the file ends first; returns the bytes read.
async fn fill(f: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).await? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Multipart upload of FILE as is; returns the bytes uploaded.
async fn put(s3: &S3, file: &str, url: &S3Url, part: u64) -> Result<u64, BoxError> {
    let mut f = tokio::fs::File::open(file).await?;
    let mut w = MultipartWriter::new(
        s3,
        url,
        WriterOptions {
            create_only: true,
            ..WriterOptions::default()
        },
    );
    // A part is sent once the next one has a byte: the last part goes to `finish`.
    let mut cur = vec![0u8; part as usize];
    let mut n = fill(&mut f, &mut cur).await?;
    let r = async {
        loop {
            let mut next = vec![0u8; part as usize];
            let m = fill(&mut f, &mut next).await?;
            cur.truncate(n);
            let body = Bytes::from(std::mem::replace(&mut cur, next));
            if m == 0 {
                return Ok::<_, BoxError>(w.finish(body).await?);
            }
            w.write_part(body).await?;
            n = m;
        }
    }
    .await;
    match r {
        Ok(done) => Ok(done.bytes),
        Err(e) => {
            w.abort().await;
            Err(e)
        }
    }
}

/// Parallel ranged GETs of the object, written in order to OUT; returns the bytes written.
async fn get(s3: &S3, url: &S3Url, out: &str, part: u64) -> Result<u64, BoxError> {
    let head = s3
        .head(url)
        .await?
        .ok_or_else(|| format!("{url} does not exist"))?;
    let len = head.content_length;
    let pin = Pin {
        etag: head.etag,
        version_id: head.version_id,
    };
    let mut r = RangedReader::new(s3, url, pin, 0, len, part, 0);
    let mut w = tokio::fs::File::create(out).await?;
    let mut got = 0u64;
    while let Some(seg) = r.next_segment().await {
        let seg = seg?;
        w.write_all(&seg).await?;
        got += seg.len() as u64;
        r.recycle(seg);
    }
    w.flush().await?;
    if got != len {
        return Err(format!("wrote {got} of {len} bytes").into());
    }
    Ok(got)
}
