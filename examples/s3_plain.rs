//! Plain (unencrypted) S3 transfer, the baseline for `scripts/bench_s3.sh`.
//!
//! ```text
//! cargo run --release --example s3_plain -- put FILE s3://bucket/key [--part-size SIZE] [--concurrency N]
//! cargo run --release --example s3_plain -- get s3://bucket/key OUT  [--part-size SIZE] [--concurrency N]
//! ```
//!
//! It does what `sealstream encrypt FILE -o s3://…` and `sealstream decrypt s3://… -o OUT`
//! do on the wire, minus the encryption, so that the two can be compared fairly:
//!
//! - the client is sealstream's own: `S3::connect` (src/s3/mod.rs) with the default
//!   settings but part size and concurrency, driven on the runtime it owns (same rustls+ring
//!   HTTP client, retries, timeouts, 2-thread tokio runtime, path-style addressing with an
//!   endpoint override);
//! - `put` is a multipart upload (CreateMultipartUpload with CRC32 as the checksum
//!   algorithm, UploadPart with a CRC32 checksum, CompleteMultipartUpload with
//!   `If-None-Match: *`), each part's body held in memory as `Bytes`, at most N parts in
//!   flight. Parts hold the same plaintext bytes as sealstream's: SIZE rounded up to whole
//!   64 KiB chunks (sealstream's parts are those chunks plus a 16-byte tag each);
//! - `get` HEADs the object, then issues ranged GETs (pinned with `If-Match: ETAG`) of SIZE
//!   rounded up to whole 64 KiB, at most N in flight, and writes them in order to OUT.
//!
//! Defaults are sealstream's: `--part-size 8MiB --concurrency 4`. It prints one line to
//! stderr: bytes, seconds, MB/s.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures_util::StreamExt;
use sealstream::s3::{DEFAULT_CONCURRENCY, DEFAULT_PART_SIZE, S3, S3Settings, S3Url};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc};

/// sealstream's default chunk size: parts are whole chunks.
const CHUNK: u64 = 64 * 1024;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An SDK error with its cause chain (the service's code and message).
fn sdk<E: std::error::Error>(op: &str) -> impl FnOnce(E) -> BoxError + '_ {
    move |e| format!("{op}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)).into()
}

fn main() {
    if let Err(e) = run() {
        eprintln!("s3_plain: {e}");
        std::process::exit(1);
    }
}

fn usage() -> BoxError {
    "usage: s3_plain put FILE s3://bucket/key | get s3://bucket/key OUT  [--part-size SIZE] [--concurrency N]".into()
}

fn run() -> Result<(), BoxError> {
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
    // The very client sealstream uses: same constructor, settings and runtime.
    let s3 = S3::connect(S3Settings {
        concurrency,
        part_size,
        ..S3Settings::default()
    })?;
    let rt = s3.block_on(async { Handle::current() });
    let client = s3.client();
    let t = Instant::now();
    let bytes = match pos.as_slice() {
        [m, file, url] if m == "put" => {
            put(&rt, client, file, &S3Url::parse(url)?, part, concurrency)?
        }
        [m, url, out] if m == "get" => {
            get(&rt, client, &S3Url::parse(url)?, out, part, concurrency)?
        }
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

/// Multipart upload of FILE as is; returns the bytes uploaded.
fn put(
    rt: &Handle,
    client: &Client,
    file: &str,
    url: &S3Url,
    part: u64,
    concurrency: usize,
) -> Result<u64, BoxError> {
    let mut f = std::fs::File::open(file)?;
    let len = f.metadata()?.len();
    let id = rt
        .block_on(
            client
                .create_multipart_upload()
                .bucket(&url.bucket)
                .key(&url.key)
                .content_type("application/octet-stream")
                .checksum_algorithm(ChecksumAlgorithm::Crc32)
                .send(),
        )
        .map_err(sdk("CreateMultipartUpload"))?
        .upload_id()
        .ok_or("CreateMultipartUpload returned no upload id")?
        .to_string();
    let sem = Arc::new(Semaphore::new(concurrency));
    let done: Arc<Mutex<Vec<CompletedPart>>> = Arc::default();
    let failed: Arc<Mutex<Option<String>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut sent = 0u64;
    let mut n = 0i32;
    let result = (|| -> Result<(), BoxError> {
        while sent < len || n == 0 {
            let want = part.min(len - sent);
            // A fresh buffer per part, as sealstream's part sink does.
            let mut buf = Vec::with_capacity(want as usize);
            (&mut f).take(want).read_to_end(&mut buf)?;
            if buf.len() as u64 != want {
                return Err(format!("{file} shrank while reading").into());
            }
            let body = Bytes::from(buf);
            let permit = rt.block_on(Arc::clone(&sem).acquire_owned())?;
            if let Some(e) = failed.lock().map_err(|_| "poisoned")?.take() {
                return Err(e.into());
            }
            n += 1;
            sent += want;
            let (client, url, id) = (client.clone(), url.clone(), id.clone());
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            tasks.push(rt.spawn(async move {
                let r = client
                    .upload_part()
                    .bucket(&url.bucket)
                    .key(&url.key)
                    .upload_id(id)
                    .part_number(n)
                    .checksum_algorithm(ChecksumAlgorithm::Crc32)
                    .body(ByteStream::from(body))
                    .send()
                    .await;
                match r {
                    Ok(out) => done.lock().unwrap().push(
                        CompletedPart::builder()
                            .part_number(n)
                            .set_e_tag(out.e_tag)
                            .set_checksum_crc32(out.checksum_crc32)
                            .build(),
                    ),
                    Err(e) => {
                        let msg = format!(
                            "UploadPart {n}: {}",
                            aws_sdk_s3::error::DisplayErrorContext(&e)
                        );
                        failed.lock().unwrap().get_or_insert(msg);
                    }
                }
                drop(permit);
            }));
        }
        rt.block_on(async {
            for t in tasks.drain(..) {
                let _ = t.await;
            }
        });
        if let Some(e) = failed.lock().map_err(|_| "poisoned")?.take() {
            return Err(e.into());
        }
        let mut parts = std::mem::take(&mut *done.lock().map_err(|_| "poisoned")?);
        parts.sort_by_key(|p| p.part_number());
        if parts.len() != n as usize {
            return Err(format!("{} of {n} parts were stored", parts.len()).into());
        }
        rt.block_on(
            client
                .complete_multipart_upload()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(&id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .if_none_match("*")
                .send(),
        )
        .map_err(sdk("CompleteMultipartUpload"))?;
        Ok(())
    })();
    if result.is_err() {
        for t in &tasks {
            t.abort();
        }
        let _ = rt.block_on(
            client
                .abort_multipart_upload()
                .bucket(&url.bucket)
                .key(&url.key)
                .upload_id(&id)
                .send(),
        );
    }
    result.map(|()| sent)
}

/// Parallel ranged GETs of the object, written in order to OUT; returns the bytes written.
fn get(
    rt: &Handle,
    client: &Client,
    url: &S3Url,
    out: &str,
    part: u64,
    concurrency: usize,
) -> Result<u64, BoxError> {
    let head = rt.block_on(
        client
            .head_object()
            .bucket(&url.bucket)
            .key(&url.key)
            .send(),
    )?;
    let len = head.content_length().unwrap_or(0).max(0) as u64;
    let etag = head.e_tag().map(str::to_string);
    let mut ranges = Vec::new();
    let mut a = 0;
    while a < len {
        let b = (a + part).min(len);
        ranges.push((a, b - a));
        a = b;
    }
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, String>>(1);
    let (c, u) = (client.clone(), url.clone());
    rt.spawn(async move {
        let mut s = futures_util::stream::iter(ranges)
            .map(|(off, n)| {
                let (c, u, etag) = (c.clone(), u.clone(), etag.clone());
                async move {
                    let r = c
                        .get_object()
                        .bucket(&u.bucket)
                        .key(&u.key)
                        .range(format!("bytes={}-{}", off, off + n - 1))
                        .set_if_match(etag)
                        .send()
                        .await
                        .map_err(|e| {
                            format!("GetObject: {}", aws_sdk_s3::error::DisplayErrorContext(&e))
                        })?;
                    let b = r
                        .body
                        .collect()
                        .await
                        .map_err(|e| e.to_string())?
                        .into_bytes();
                    if b.len() as u64 != n {
                        return Err(format!("asked for {n} bytes at {off}, got {}", b.len()));
                    }
                    Ok(b)
                }
            })
            .buffered(concurrency);
        while let Some(r) = s.next().await {
            let stop = r.is_err();
            if tx.send(r).await.is_err() || stop {
                break;
            }
        }
    });
    let mut w = std::fs::File::create(out)?;
    let mut got = 0u64;
    while let Some(r) = rx.blocking_recv() {
        let b = r?;
        w.write_all(&b)?;
        got += b.len() as u64;
    }
    w.flush()?;
    if got != len {
        return Err(format!("wrote {got} of {len} bytes").into());
    }
    Ok(got)
}
