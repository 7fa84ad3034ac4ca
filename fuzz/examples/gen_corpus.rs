//! Writes the checked-in seed corpora under fuzz/corpus/<target>/ (deterministic).
//!
//! `cargo run --manifest-path fuzz/Cargo.toml --example gen_corpus [-- DIR]`
//!
//! Seeds are small (each under 10 KB): a few valid files and headers for the fuzz key
//! `[7; 32]`, key files, and CLI argument texts. Files found in the directories that this
//! program does not write (e.g. interesting inputs added by hand) are left alone.

use std::path::{Path, PathBuf};

use sealstream::keys::local::LocalKey;
use sealstream_fuzz::{Built, FileSpec, StanzaLayout};

fn spec(chacha: bool, full_chunks: u8, tail: u16, ctx: &[(&str, &str)]) -> FileSpec {
    FileSpec {
        chacha,
        chunk_extra: 0,
        full_chunks,
        tail,
        pattern: Vec::new(),
        context: ctx
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stanzas: StanzaLayout::Single,
        dek: std::array::from_fn(|i| 0x20 + i as u8),
        salt: std::array::from_fn(|i| 0x40 + i as u8),
        wrap_nonce: std::array::from_fn(|i| 0x60 + i as u8),
    }
}

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    assert!(
        bytes.len() < 10 * 1024,
        "{target}/{name} is too big for a seed"
    );
    let d = dir.join(target);
    std::fs::create_dir_all(&d).expect("create corpus dir");
    std::fs::write(d.join(name), bytes).expect("write seed");
}

fn with_prefix(prefix: &[u8], file: &[u8]) -> Vec<u8> {
    let mut v = prefix.to_vec();
    v.extend_from_slice(file);
    v
}

fn main() {
    let dir: PathBuf = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus"));

    let two_chunks = spec(false, 1, 904, &[]).build(); // 5000 bytes, 2 chunks
    let empty = spec(true, 0, 0, &[]).build();
    let one_byte_ctx = spec(true, 0, 1, &[("project", "atlas"), ("tier", "gold")]).build();
    let exact = spec(false, 2, 0, &[]).build(); // 8192 bytes, 2 full chunks
    let mut two_stanzas = spec(false, 0, 100, &[("a", "1")]);
    two_stanzas.stanzas = StanzaLayout::OtherFirst;
    let two_stanzas = two_stanzas.build();
    let mut foreign = spec(true, 0, 10, &[]);
    foreign.stanzas = StanzaLayout::ForeignFirst {
        wrapped: vec![0xaa; 40],
    };
    let foreign = foreign.build();
    let mut odd_cs = spec(true, 1, 7, &[]);
    odd_cs.chunk_extra = 1; // chunk size 4097
    let odd_cs = odd_cs.build();

    let files: [(&str, &Built); 7] = [
        ("aes-5000", &two_chunks),
        ("chacha-empty", &empty),
        ("chacha-1-context", &one_byte_ctx),
        ("aes-8192-exact", &exact),
        ("aes-two-stanzas", &two_stanzas),
        ("chacha-foreign-stanza", &foreign),
        ("chacha-cs4097", &odd_cs),
    ];

    // header: headers alone, and one whole file.
    for (name, b) in &files {
        write(&dir, "header", name, &b.file[..b.header_len]);
    }
    write(&dir, "header", "aes-5000-whole", &two_chunks.file);

    // decrypt: raw mode (even first byte; its bits pick threads/batch/backend), and
    // structured mode (odd first byte; the rest is decoded by `arbitrary`).
    for (i, (name, b)) in files.iter().enumerate() {
        let mode = (i as u8) << 1;
        write(
            &dir,
            "decrypt",
            &format!("raw-{name}"),
            &with_prefix(&[mode], &b.file),
        );
    }
    let zeros: Vec<u8> = std::iter::once(1)
        .chain(std::iter::repeat_n(0, 300))
        .collect();
    write(&dir, "decrypt", "structured-zeros", &zeros);
    let ramp: Vec<u8> = std::iter::once(1)
        .chain((0..=255u8).cycle().take(600))
        .collect();
    write(&dir, "decrypt", "structured-ramp", &ramp);

    // range: raw mode `[mode][kind][a BE32][b BE32] file`.
    let ranges: [(&str, u8, u32, u32); 6] = [
        ("inclusive-0-99", 0, 0, 99),
        ("inclusive-across-chunks", 0, 4000, 4200),
        ("from-4096", 1, 4096, 0),
        ("suffix-10", 2, 0, 10),
        ("from-end-minus-1", 1 | 4, 1, 0),
        ("inclusive-past-end", 0, 4990, 1 << 20),
    ];
    for (i, (name, kind, a, b)) in ranges.iter().enumerate() {
        let mut pre = vec![(i as u8 % 4) << 1, *kind];
        pre.extend_from_slice(&a.to_be_bytes());
        pre.extend_from_slice(&b.to_be_bytes());
        write(
            &dir,
            "range",
            &format!("raw-{name}"),
            &with_prefix(&pre, &two_chunks.file),
        );
    }
    let mut pre = vec![0u8, 2];
    pre.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 5]);
    write(
        &dir,
        "range",
        "raw-exact-suffix-5",
        &with_prefix(&pre, &exact.file),
    );
    write(&dir, "range", "structured-ramp", &ramp);

    // keyfile: the text form and variants the parser must accept or reject cleanly.
    let k = LocalKey::from_bytes([7; 32]);
    let text = k.to_text().to_string();
    write(&dir, "keyfile", "valid", text.as_bytes());
    write(
        &dir,
        "keyfile",
        "valid-crlf",
        text.replace('\n', "\r\n").as_bytes(),
    );
    let line = text.lines().last().expect("key line").to_string();
    write(&dir, "keyfile", "bare-line", line.as_bytes());
    write(
        &dir,
        "keyfile",
        "indented-tabs",
        format!("\t{}\t\n# end\n", line.replace(' ', "\t")).as_bytes(),
    );
    write(
        &dir,
        "keyfile",
        "two-lines",
        format!("{line}\n{line}\n").as_bytes(),
    );
    write(
        &dir,
        "keyfile",
        "bad-id",
        line.replace("lk1-", "lk1-0").as_bytes(),
    );
    write(
        &dir,
        "keyfile",
        "future-version",
        line.replace("-v1", "-v2").as_bytes(),
    );

    // cli_parsers: "size\nrange\nKEY=VALUE\n...".
    let texts: [(&str, &str); 6] = [
        ("typical", "64KiB\n0-1023\nproject=atlas\ntier=gold"),
        ("sums", "1GiB+5\n1MiB+1-2MiB\nk=v=w"),
        ("suffix", "4096\n-4KiB\n"),
        ("open", " 16 MiB \n 10 - \nempty="),
        ("overflow", "16777216T\n99999999999999999999-\na=1\na=2"),
        ("bad", "1MB\n-0\nnoequals"),
    ];
    for (name, t) in texts {
        write(&dir, "cli_parsers", name, t.as_bytes());
    }

    // header_struct: `arbitrary` decodes any bytes into a `HeaderSpec`, so the seeds are
    // byte patterns that decode to different shapes (empty and filled contexts, stanza
    // lists of several lengths, edits); the fuzzer takes it from there.
    let patterns: [(&str, Vec<u8>); 5] = [
        ("zeros-64", vec![0; 64]),
        ("zeros-512", vec![0; 512]),
        ("ramp-512", (0..512).map(|i| i as u8).collect()),
        ("ones-256", vec![0xff; 256]),
        (
            "alternating-600",
            (0..600)
                .map(|i| if i % 2 == 0 { 1 } else { 0x41 })
                .collect(),
        ),
    ];
    for (name, bytes) in patterns {
        write(&dir, "header_struct", name, &bytes);
    }
    println!("wrote seed corpora under {}", dir.display());
}
