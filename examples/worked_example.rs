//! Deterministic worked example (test vectors) for docs/FORMAT.md, "Worked example".
//!
//! Run with `cargo run --example worked_example`. Every input is fixed, so the output is
//! stable; FORMAT.md quotes it verbatim. With `-- DIR`, it also writes the three objects
//! (`DIR/vector-chacha20-poly1305.sealed`, `DIR/vector-aes-256-gcm.sealed`,
//! `DIR/vector-empty.sealed`) and the key file (`DIR/vector.key`), for testing another
//! implementation against them.
//!
//! The object is built with the crate's public API (`LocalKey::wrap_with_nonce`,
//! `envelope::seal_header`, `engine::seal`), then every derived value is recomputed
//! *independently* from the formulas in FORMAT.md (SHA-256, HMAC-SHA-256 for HKDF,
//! XChaCha20-Poly1305 for the local wrap, the chunk AEAD with the documented nonce) and
//! asserted equal, and the file is decrypted back with `envelope::decrypt`.
//!
//! WARNING: this program prints the payload key and other secrets. That is acceptable only
//! because all inputs are public test values; never print them for real keys.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use ring::{aead, digest, hmac};

use sealstream::Error;
use sealstream::engine::{self, EngineOptions};
use sealstream::envelope::{self, DecryptParams, EncryptParams, seal_header};
use sealstream::error::HeaderError;
use sealstream::format::{Context, FIXED_LEN, Header, SALT_LEN, Suite, TAG_LEN};
use sealstream::keys::local::LocalKey;
use sealstream::keys::{DataKey, KeyProvider};
use sealstream::testkit::kdf::{self, COMMITMENT_LABEL, PAYLOAD_KEY_LABEL};
use sealstream::testkit::stream;

const CHUNK_SIZE: u32 = 4096;
const PLAINTEXT_LEN: usize = 5000;

fn seq<const N: usize>(start: u8) -> [u8; N] {
    std::array::from_fn(|i| start + i as u8)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Hex in lines of 32 bytes, continuation lines indented by `indent` spaces.
fn hex_wrapped(b: &[u8], indent: usize) -> String {
    let lines: Vec<String> = b.chunks(32).map(hex).collect();
    lines.join(&format!("\n{}", " ".repeat(indent)))
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, key));
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

/// Prints one header field: offset, length, name, hex.
fn field(bytes: &[u8], off: &mut usize, len: usize, name: &str) {
    let v = &bytes[*off..*off + len];
    println!(
        "  {:>5}  {:>3}  {:<24} {}",
        *off,
        len,
        name,
        hex_wrapped(v, 2 + 5 + 2 + 3 + 2 + 24 + 1)
    );
    *off += len;
}

fn u16_at(b: &[u8], off: usize) -> usize {
    usize::from(u16::from_be_bytes([b[off], b[off + 1]]))
}

fn annotate_header(h: &[u8]) {
    println!("  offset  len  field                    value (hex)");
    let mut off = 0;
    field(h, &mut off, 8, "magic \"SEALSTRM\"");
    field(h, &mut off, 1, "version");
    field(h, &mut off, 1, "suite");
    field(h, &mut off, 2, "reserved");
    field(h, &mut off, 4, "chunk_size");
    field(h, &mut off, SALT_LEN, "salt");
    field(h, &mut off, 4, "header_len");
    field(h, &mut off, 32, "commitment");
    assert_eq!(off, FIXED_LEN);
    let pairs = u16_at(h, off);
    field(h, &mut off, 2, "context.count");
    for i in 0..pairs {
        let kl = u16_at(h, off);
        field(h, &mut off, 2, &format!("context[{i}].key_len"));
        field(h, &mut off, kl, &format!("context[{i}].key"));
        let vl = u16_at(h, off);
        field(h, &mut off, 2, &format!("context[{i}].value_len"));
        field(h, &mut off, vl, &format!("context[{i}].value"));
    }
    let stanzas = u16_at(h, off);
    field(h, &mut off, 2, "stanzas.count");
    for i in 0..stanzas {
        let pl = usize::from(h[off]);
        field(h, &mut off, 1, &format!("stanza[{i}].provider_len"));
        field(h, &mut off, pl, &format!("stanza[{i}].provider"));
        let kl = u16_at(h, off);
        field(h, &mut off, 2, &format!("stanza[{i}].key_id_len"));
        field(h, &mut off, kl, &format!("stanza[{i}].key_id"));
        let wl = u16_at(h, off);
        field(h, &mut off, 2, &format!("stanza[{i}].wrapped_len"));
        field(h, &mut off, wl, &format!("stanza[{i}].wrapped"));
    }
    assert_eq!(off, h.len());
    println!("  {off:>5}       (end of header = offset of chunk 0)");
}

/// Opens one chunk independently of the crate (nonce and empty AAD as in FORMAT.md).
fn open_independently(suite: Suite, key: &[u8; 32], nonce: [u8; 12], chunk: &[u8]) -> Vec<u8> {
    let alg = match suite {
        Suite::Aes256Gcm => &aead::AES_256_GCM,
        Suite::ChaCha20Poly1305 => &aead::CHACHA20_POLY1305,
        _ => unreachable!("only the two v1 suites exist"),
    };
    let k = aead::LessSafeKey::new(aead::UnboundKey::new(alg, key).expect("32-byte key"));
    let mut buf = chunk.to_vec();
    let pt = k
        .open_in_place(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::empty(),
            &mut buf,
        )
        .expect("chunk opens with the documented nonce");
    pt.to_vec()
}

/// The documented nonce: 7 zero bytes || BE32(index) || flag.
fn documented_nonce(index: u32, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[7..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

struct Built {
    file: Vec<u8>,
    header_len: usize,
    payload_key: [u8; 32],
}

fn build(
    suite: Suite,
    kek: &LocalKey,
    dek: &DataKey,
    salt: [u8; 32],
    wrap_nonce: [u8; 24],
    ctx: &Context,
    plaintext: &[u8],
) -> Built {
    let stanza = kek.wrap_with_nonce(dek, ctx, wrap_nonce);
    let params = EncryptParams {
        suite,
        chunk_size: CHUNK_SIZE,
        context: ctx.clone(),
        ..EncryptParams::default()
    };
    let (header, cipher) = seal_header(dek, salt, vec![stanza], &params).expect("valid header");
    let mut file = header.to_bytes().expect("header within limits");
    let header_len = file.len();
    let (parsed, parsed_len) = Header::parse(&file).expect("header parses");
    assert_eq!((parsed, parsed_len), (header.clone(), header_len));
    let opts = EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    };
    engine::seal(&cipher, CHUNK_SIZE, plaintext, &mut file, &opts).expect("seal");

    // Independent key schedule: HKDF-SHA-256 written out with HMAC (one output block).
    let h = header.digest();
    let mut auth = file[..48].to_vec();
    auth.extend_from_slice(&ctx.to_bytes());
    assert_eq!(
        h,
        sha256(&auth),
        "H = SHA-256(bytes 0..48 || context block)"
    );
    let prk = hmac_sha256(&salt, &[dek.expose()]);
    let payload_key = hmac_sha256(&prk, &[PAYLOAD_KEY_LABEL, &h, &[1]]);
    let commitment = hmac_sha256(&prk, &[COMMITMENT_LABEL, &h, &[1]]);
    let d = kdf::derive(dek.expose(), &salt, &h);
    assert_eq!(*sealstream::testkit::payload_key(&d), payload_key);
    assert_eq!(d.commitment, commitment);
    assert_eq!(header.commitment, commitment);
    assert_eq!(&file[52..84], &commitment);

    // Round trip through the public decrypt API.
    let mut out = Vec::new();
    let providers: [&dyn KeyProvider; 1] = [kek];
    let dp = DecryptParams {
        expected_context: ctx.clone(),
        ..DecryptParams::default()
    };
    envelope::decrypt(&file[..], &mut out, &providers, &dp).expect("decrypt");
    assert_eq!(out, plaintext, "round trip");

    println!("  H (header digest)        {}", hex(&h));
    println!("  PRK = HKDF-Extract       {}", hex(&prk));
    println!("  payload_key (SECRET)     {}", hex(&payload_key));
    println!("  commitment               {}", hex(&commitment));
    Built {
        file,
        header_len,
        payload_key,
    }
}

fn print_chunks(suite: Suite, b: &Built, plaintext: &[u8]) {
    let stride = CHUNK_SIZE as usize + TAG_LEN;
    let body = &b.file[b.header_len..];
    let n = if body.len() == TAG_LEN {
        1
    } else {
        body.len().div_ceil(stride)
    };
    for i in 0..n {
        let start = i * stride;
        let end = (start + stride).min(body.len());
        let chunk = &body[start..end];
        let last = i + 1 == n;
        let nonce = stream::nonce(i as u64, last);
        assert_eq!(nonce, documented_nonce(i as u32, last));
        let pt = open_independently(suite, &b.payload_key, nonce, chunk);
        let cs = CHUNK_SIZE as usize;
        assert_eq!(pt, plaintext[i * cs..(i * cs + pt.len())]);
        let ct_len = chunk.len() - TAG_LEN;
        println!(
            "  chunk {i}: file offset {}, {} ciphertext bytes + 16-byte tag, final flag {}",
            b.header_len + start,
            ct_len,
            u8::from(last)
        );
        println!("    nonce                  {}", hex(&nonce));
        if ct_len > 0 {
            println!(
                "    ciphertext[0..32]      {}",
                hex(&chunk[..ct_len.min(32)])
            );
        }
        println!("    tag                    {}", hex(&chunk[ct_len..]));
    }
    println!("  total file length        {} bytes", b.file.len());
    println!("  SHA-256(file)            {}", hex(&sha256(&b.file)));
}

fn write_vector(dir: Option<&std::path::Path>, name: &str, bytes: &[u8]) {
    if let Some(d) = dir {
        std::fs::write(d.join(name), bytes).expect("writing a vector file");
    }
}

fn main() {
    let out_dir = std::env::args_os().nth(1).map(std::path::PathBuf::from);
    let out_dir = out_dir.as_deref();
    let kek = LocalKey::from_bytes(seq::<32>(0x00));
    let dek = DataKey::from_bytes(seq::<32>(0x20));
    let salt = seq::<32>(0x40);
    let wrap_nonce = seq::<24>(0x60);
    let ctx = Context::from_pairs([("project", "atlas")]).expect("valid context");
    let plaintext: Vec<u8> = (0..PLAINTEXT_LEN).map(|i| (i % 251) as u8).collect();

    println!("== Inputs ==");
    println!("  KEK (local key)          {}", hex(&seq::<32>(0x00)));
    println!("  DEK (data key)           {}", hex(dek.expose()));
    println!("  salt                     {}", hex(&salt));
    println!("  wrap nonce               {}", hex(&wrap_nonce));
    println!("  context                  {{\"project\": \"atlas\"}}");
    println!("  chunk_size               {CHUNK_SIZE}");
    println!(
        "  plaintext                {PLAINTEXT_LEN} bytes, byte i = i mod 251; SHA-256 {}",
        hex(&sha256(&plaintext))
    );

    println!();
    println!("== Local key ==");
    println!("  key id                   {}", kek.id());
    let mut id_input = b"sealstream v1 local key id".to_vec();
    id_input.extend_from_slice(&seq::<32>(0x00));
    let id_hash = sha256(&id_input);
    assert_eq!(kek.id(), format!("lk1-{}", hex(&id_hash[..16])));
    write_vector(out_dir, "vector.key", kek.to_text().as_bytes());
    println!("  key file line            {}", {
        let text = kek.to_text();
        text.lines()
            .find(|l| !l.starts_with('#'))
            .expect("key line")
            .to_string()
    });

    println!();
    println!("== Local stanza (suite-independent) ==");
    let stanza = kek.wrap_with_nonce(&dek, &ctx, wrap_nonce);
    let mut aad = b"sealstream v1 local wrap".to_vec();
    aad.extend_from_slice(&(kek.id().len() as u16).to_be_bytes());
    aad.extend_from_slice(kek.id().as_bytes());
    aad.extend_from_slice(&ctx.to_bytes());
    // Independent XChaCha20-Poly1305 wrap with the documented AAD.
    let mut buf = *dek.expose();
    let xc = XChaCha20Poly1305::new(&chacha20poly1305::Key::from(seq::<32>(0x00)));
    let tag = xc
        .encrypt_inout_detached(&wrap_nonce.into(), &aad, (&mut buf[..]).into())
        .expect("wrap");
    let mut expect = wrap_nonce.to_vec();
    expect.extend_from_slice(&buf);
    expect.extend_from_slice(&tag);
    assert_eq!(stanza.wrapped, expect);
    println!("  context block            {}", hex(&ctx.to_bytes()));
    println!("  wrap AAD                 {}", hex_wrapped(&aad, 27));
    println!(
        "  wrapped (72 bytes)       {}",
        hex_wrapped(&stanza.wrapped, 27)
    );

    let mut chacha_header = Vec::new();
    for suite in [Suite::ChaCha20Poly1305, Suite::Aes256Gcm] {
        println!();
        println!(
            "== Object: suite {} (0x{:02x}), {PLAINTEXT_LEN}-byte plaintext ==",
            suite.name(),
            suite.id()
        );
        let b = build(suite, &kek, &dek, salt, wrap_nonce, &ctx, &plaintext);
        println!("  header ({} bytes):", b.header_len);
        annotate_header(&b.file[..b.header_len]);
        print_chunks(suite, &b, &plaintext);
        write_vector(out_dir, &format!("vector-{}.sealed", suite.name()), &b.file);
        if suite == Suite::ChaCha20Poly1305 {
            chacha_header = b.file[..b.header_len].to_vec();
            negative_checks(&b, &kek, &ctx);
        }
    }

    println!();
    println!("== Object: suite chacha20-poly1305, EMPTY plaintext (same key, salt, context) ==");
    let b = build(
        Suite::ChaCha20Poly1305,
        &kek,
        &dek,
        salt,
        wrap_nonce,
        &ctx,
        &[],
    );
    println!(
        "  header: {} bytes, identical to the chacha20-poly1305 header above",
        b.header_len
    );
    assert_eq!(b.file[..b.header_len], chacha_header[..]);
    assert_eq!(b.file.len(), b.header_len + TAG_LEN);
    print_chunks(Suite::ChaCha20Poly1305, &b, &[]);
    write_vector(out_dir, "vector-empty.sealed", &b.file);
    println!();
    println!("All independent checks passed; all objects decrypt back to their plaintext.");
}

/// Decrypts `file`, returning the error kind as a short string.
fn outcome(file: &[u8], kek: &LocalKey, expected: &Context) -> String {
    let providers: [&dyn KeyProvider; 1] = [kek];
    let dp = DecryptParams {
        expected_context: expected.clone(),
        ..DecryptParams::default()
    };
    match envelope::decrypt(file, std::io::sink(), &providers, &dp) {
        Ok(_) => "ok".into(),
        // FORMAT.md §11: a version other than 0x01 is its own class, not "header malformed".
        Err(Error::Header(HeaderError::UnsupportedVersion(v))) => {
            format!("unsupported version ({v})")
        }
        Err(Error::Header(h)) => format!("header malformed ({h:?})"),
        Err(Error::ContextMismatch { key, .. }) => format!("context mismatch (key {key:?})"),
        Err(Error::UnwrapFailed(_)) => "unwrap failed".into(),
        Err(Error::NoMatchingKey { .. }) => "no matching key".into(),
        Err(Error::CommitmentMismatch) => "commitment mismatch".into(),
        Err(Error::ChunkAuth { index }) => format!("chunk {index} authentication failed"),
        Err(Error::Truncated { .. }) => "truncated".into(),
        Err(Error::LastChunkEmpty { index }) => format!("last chunk empty (index {index})"),
        Err(e) => format!("other: {e}"),
    }
}

/// Expected decoder behaviour on modified copies of the chacha20-poly1305 object.
fn negative_checks(b: &Built, kek: &LocalKey, ctx: &Context) {
    let hl = b.header_len;
    let stride = CHUNK_SIZE as usize + TAG_LEN;
    println!("  modified copies (expected decoder result):");
    let mut cases: Vec<(&str, Vec<u8>, Context)> = Vec::new();
    cases.push(("unmodified", b.file.clone(), ctx.clone()));
    cases.push((
        "body cut after chunk 0 (chunk boundary)",
        b.file[..hl + stride].to_vec(),
        ctx.clone(),
    ));
    cases.push((
        "last byte removed",
        b.file[..b.file.len() - 1].to_vec(),
        ctx.clone(),
    ));
    let mut empty_final = b.file[..hl + stride].to_vec();
    empty_final.extend_from_slice(&[0u8; TAG_LEN]);
    cases.push(("chunk 1 replaced by 16 bytes", empty_final, ctx.clone()));
    let mut flip = b.file.clone();
    flip[hl + stride] ^= 1;
    cases.push(("first byte of chunk 1 flipped", flip, ctx.clone()));
    let mut salt_flip = b.file.clone();
    salt_flip[16] ^= 1;
    cases.push(("first salt byte flipped", salt_flip, ctx.clone()));
    let mut commit_flip = b.file.clone();
    commit_flip[52] ^= 1;
    cases.push(("first commitment byte flipped", commit_flip, ctx.clone()));
    let mut version = b.file.clone();
    version[8] = 2;
    cases.push(("version byte set to 0x02", version, ctx.clone()));
    let other = Context::from_pairs([("project", "zeus")]).expect("context");
    cases.push(("expected context project=zeus", b.file.clone(), other));
    for (name, file, expected) in cases {
        println!("    {name:<40} -> {}", outcome(&file, kek, &expected));
    }
}
