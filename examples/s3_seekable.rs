//! Random access to an encrypted S3 object: `seek` + `read` (and `read_at`) over
//! [`S3::get_range_decrypted`], which fetches only the chunks covering each read and
//! authenticates every one of them.
//!
//! The object's plaintext length comes from S3's Content-Length, which is only a claim
//! until the final chunk has been authenticated as final. So the first end-relative
//! operation (`SeekFrom::End`, or asking for the length) reads the last byte with a suffix
//! range: the library authenticates the final chunk before it answers, and only then is the
//! length trusted. A truncated or extended object fails there, before any byte is returned.
//!
//! Run against S3 or the emulator (AWS_ENDPOINT_URL, region and credentials from the
//! standard chain): `cargo run --example s3_seekable --features s3 [s3://bucket/key]`.
//! It encrypts a 3 MiB test object there under a fresh local key (default:
//! `s3://sealstream-seekable-example/seekable.bin`, the bucket created if missing), reads
//! 200 ranges at pseudo-random offsets plus end-relative ones, checks every byte against
//! the plaintext, deletes the object and exits 0; any mismatch exits non-zero.

use std::io::SeekFrom;

use sealstream::envelope::{EncryptParams, Opening, Sealing};
use sealstream::keys::AsyncKeyProvider;
use sealstream::range::ByteRange;
use sealstream::s3::{GetOptions, ObjectInfo, PutOptions, S3, S3Settings, S3Url};
use sealstream::{Backend, Context, LocalKey, Result};

/// A seekable, decrypting reader over one S3 object (`Read + Seek`, async).
struct SeekableObject {
    s3: S3,
    obj: ObjectInfo,
    opening: Opening,
    pos: u64,
    /// The plaintext length once the final chunk has been authenticated.
    authentic_len: Option<u64>,
}

impl SeekableObject {
    /// HEADs the object, checks the expected context, unwraps and verifies its data key.
    async fn open(
        s3: &S3,
        url: &S3Url,
        keys: &[&dyn AsyncKeyProvider],
        expected: &Context,
    ) -> Result<Self> {
        let obj = s3.open_object(url).await?;
        let opening =
            Opening::unlock_async(obj.header.clone(), keys, expected, Backend::default()).await?;
        Ok(SeekableObject {
            s3: s3.clone(),
            obj,
            opening,
            pos: 0,
            authentic_len: None,
        })
    }

    /// The plaintext length, authenticated: reading the last byte makes the library open
    /// the final chunk as final (a one-chunk GET) before it trusts the claimed length.
    async fn len(&mut self) -> Result<u64> {
        if let Some(n) = self.authentic_len {
            return Ok(n);
        }
        let claimed = self.obj.layout()?.plaintext_len;
        if claimed > 0 {
            let mut last = Vec::new();
            self.s3
                .get_range_decrypted(
                    &self.obj,
                    &self.opening,
                    ByteRange::Suffix(1),
                    &mut last,
                    &GetOptions::default(),
                )
                .await?;
        }
        // An empty object's only chunk is the final one: reading it authenticates it too.
        self.authentic_len = Some(claimed);
        Ok(claimed)
    }

    /// Moves the cursor like `std::io::Seek`; `SeekFrom::End` uses the authenticated length.
    async fn seek(&mut self, to: SeekFrom) -> Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len().await?.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| {
            sealstream::Error::InvalidArgument(format!("seek to {to:?} is before the start"))
        })?;
        Ok(self.pos)
    }

    /// Reads up to `buf.len()` bytes at the cursor (0 at the end), like `std::io::Read`.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize> {
        let n = self.read_at(self.pos, buf).await?;
        self.pos += n as u64;
        Ok(n)
    }

    /// Reads up to `buf.len()` bytes at `offset`: one ranged GET of the covering chunks.
    async fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // A range reaching the end is authenticated against the final chunk by the library;
        // past the end there is nothing to read.
        if offset >= self.len().await? {
            return Ok(0);
        }
        let mut out = Vec::with_capacity(buf.len());
        let range = ByteRange::Inclusive(offset, offset + buf.len() as u64 - 1);
        self.s3
            .get_range_decrypted(
                &self.obj,
                &self.opening,
                range,
                &mut out,
                &GetOptions::default(),
            )
            .await?;
        buf[..out.len()].copy_from_slice(&out);
        Ok(out.len())
    }
}

/// xorshift64*: reproducible offsets without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let arg = std::env::args().nth(1);
    let url = S3Url::parse(
        arg.as_deref()
            .unwrap_or("s3://sealstream-seekable-example/seekable.bin"),
    )?;
    url.require_object()?;

    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    let s3 = S3::from_conf(&conf, S3Settings::default())?;
    // The example's own bucket if it does not exist yet (path-style for an emulator).
    let plain = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(conf.endpoint_url().is_some())
            .build(),
    );
    if plain
        .head_bucket()
        .bucket(&url.bucket)
        .send()
        .await
        .is_err()
    {
        plain.create_bucket().bucket(&url.bucket).send().await?;
    }

    // A test object: 3 MiB + 77 bytes in 64 KiB chunks (49 chunks, the last one short).
    let key = LocalKey::generate()?;
    let keys: [&dyn AsyncKeyProvider; 1] = [&key];
    let context = Context::from_pairs([("purpose", "seekable-example")])?;
    let plaintext: Vec<u8> = (0..3 * 1024 * 1024 + 77u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let params = EncryptParams {
        context: context.clone(),
        chunk_size: 64 * 1024,
        ..EncryptParams::default()
    };
    let sealing = Sealing::for_providers_async(&keys, &params).await?;
    let opts = PutOptions {
        force: true,
        plaintext_len: Some(plaintext.len() as u64),
        ..PutOptions::default()
    };
    s3.put_encrypted(&url, &plaintext[..], sealing, &opts)
        .await?;
    println!("stored {url}: {} plaintext bytes", plaintext.len());

    let outcome = check(&s3, &url, &keys, &context, &plaintext).await;
    s3.delete_object(&url).await?;
    outcome?;
    println!("all reads matched the plaintext");
    Ok(())
}

async fn check(
    s3: &S3,
    url: &S3Url,
    keys: &[&dyn AsyncKeyProvider],
    context: &Context,
    plaintext: &[u8],
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut reader = SeekableObject::open(s3, url, keys, context).await?;
    let total = plaintext.len() as u64;

    // End-relative first: the final chunk is authenticated before the length is used.
    let len = reader.len().await?;
    if len != total {
        return Err(format!("length {len}, expected {total}").into());
    }
    let mut tail = [0u8; 100];
    reader.seek(SeekFrom::End(-100)).await?;
    let n = reader.read(&mut tail).await?;
    if tail[..n] != plaintext[plaintext.len() - 100..] {
        return Err("the last 100 bytes differ".into());
    }
    println!("last 100 bytes: ok (end-relative, final chunk authenticated first)");
    if reader.read(&mut tail).await? != 0 {
        return Err("a read at the end returned bytes".into());
    }

    // Random reads anywhere, some crossing chunk boundaries, some running past the end.
    let mut rng = Rng(0x5EA1_57EA_u64);
    let mut buf = vec![0u8; 200 * 1024];
    for i in 0..200 {
        let offset = rng.below(total);
        let want = 1 + rng.below(buf.len() as u64) as usize;
        reader.seek(SeekFrom::Start(offset)).await?;
        let n = reader.read(&mut buf[..want]).await?;
        let expect = &plaintext[offset as usize..(offset as usize + want).min(plaintext.len())];
        if &buf[..n] != expect {
            return Err(format!("read {i}: {want} bytes at {offset} differ").into());
        }
    }
    println!("200 random reads: ok");

    // Relative seeks.
    reader.seek(SeekFrom::Start(1_000_000)).await?;
    reader.seek(SeekFrom::Current(-10)).await?;
    let mut ten = [0u8; 10];
    reader.read(&mut ten).await?;
    if ten[..] != plaintext[999_990..1_000_000] {
        return Err("relative seek read the wrong bytes".into());
    }
    println!("relative seek: ok");
    Ok(())
}
