//! Encrypt a file by *writing* into it, then read it back with random access.
//!
//! `Encryptor::wrap_output` gives an encrypting `Write` (for code that produces data:
//! serializers, loggers, request handlers); `Decryptor::unlock` gives a decrypting
//! `Read + Seek` that reads and authenticates only the chunks it needs, so a tail or a
//! record in the middle of a large encrypted file costs a chunk, not the file.
//!
//! Run with `cargo run --example seekable`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};

use sealstream::{Context, Decryptor, EncryptParams, Encryptor, KeyProvider, LocalKey};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("records.seal");
    let key = LocalKey::generate()?;
    let providers: [&dyn KeyProvider; 1] = [&key];

    // Write 10 000 fixed-size records through the encrypting writer.
    let params = EncryptParams {
        context: Context::from_pairs([("dataset", "records")])?,
        ..EncryptParams::default()
    };
    let mut writer = Encryptor::new(&providers, &params)?.wrap_output(File::create(&path)?)?;
    for i in 0..10_000u32 {
        writeln!(writer, "record {i:08}")?; // 16 bytes each
    }
    // Without this the file would be rejected as truncated.
    writer.finish()?.sync_all()?;

    // Look at the header before using a key, then unlock with the expected context.
    let decryptor = Decryptor::new(File::open(&path)?)?;
    println!(
        "context: {:?}, wrapped for: {:?}",
        decryptor.context(),
        decryptor
            .stanzas()
            .iter()
            .map(|s| format!("{}:{}", s.provider, s.key_id))
            .collect::<Vec<_>>()
    );
    let expected = Context::from_pairs([("dataset", "records")])?;
    let mut reader = decryptor.unlock(&providers, &expected)?;

    // Random access: record 4242 is at byte 4242 × 16.
    let mut record = [0u8; 16];
    reader.seek(SeekFrom::Start(4242 * 16))?;
    reader.read_exact(&mut record)?;
    print!("middle: {}", String::from_utf8_lossy(&record));

    // End-relative: the final chunk is authenticated before the length is trusted.
    reader.seek(SeekFrom::End(-16))?;
    reader.read_exact(&mut record)?;
    print!("last:   {}", String::from_utf8_lossy(&record));
    println!("plaintext length: {} bytes", reader.plaintext_len()?);
    Ok(())
}
