//! Shared machinery for the sealstream fuzz targets (fuzz/README.md).
//!
//! The `decrypt` and `range` targets read one of two input shapes, chosen by the low bit of
//! the first byte:
//!
//! * **raw** (`byte0 & 1 == 0`): the rest of the input is the file, byte for byte. The seed
//!   corpus holds real files for [`fuzz_key`], so libFuzzer's own mutations start from a
//!   header that unlocks and reach the chunk engine.
//! * **structured** (`byte0 & 1 == 1`): the rest is decoded with `arbitrary` into a
//!   [`FileSpec`] (plaintext, chunk size 4096..=8192, suite, context, stanzas, DEK, salt) and
//!   a list of [`Edit`]s. The harness builds a *valid* file for [`fuzz_key`] from the spec,
//!   then applies the edits (flip, truncate, append, splice, chunk swaps…). Because the
//!   plaintext is known, the target can check exact output, not just "no panic".
//!
//! Files are built with the same steps as `envelope::encrypt` (`seal_header`,
//! `Header::to_bytes`, `engine::seal`) but with the DEK, salt and wrap nonce taken from the
//! input: `encrypt` draws them from the OS RNG, which would make every input
//! non-reproducible (crashes could not be replayed or minimised).

pub mod header;

use std::io::{self, Write};
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use sealstream::engine::{self, EngineOptions};
use sealstream::envelope::{self, EncryptParams};
use sealstream::format::{Context, Stanza, Suite, TAG_LEN};
use sealstream::keys::DataKey;
use sealstream::keys::local::LocalKey;
use sealstream::Backend;
use sealstream::range::ByteRange;

/// Bytes of the key every fuzz file is encrypted to (and that every target decrypts with).
pub const FUZZ_KEY_BYTES: [u8; 32] = [7; 32];
/// A second local key, for files with two stanzas.
pub const OTHER_KEY_BYTES: [u8; 32] = [8; 32];
/// Most edits applied to one structured file.
pub const MAX_EDITS: usize = 6;

/// The fixed decryption key `LocalKey::from_bytes([7; 32])`.
pub fn fuzz_key() -> &'static LocalKey {
    static K: OnceLock<LocalKey> = OnceLock::new();
    K.get_or_init(|| LocalKey::from_bytes(FUZZ_KEY_BYTES))
}

/// The second key `LocalKey::from_bytes([8; 32])`.
pub fn other_key() -> &'static LocalKey {
    static K: OnceLock<LocalKey> = OnceLock::new();
    K.get_or_init(|| LocalKey::from_bytes(OTHER_KEY_BYTES))
}

/// Whether to print one `STAT` line per input to stderr (`SEALSTREAM_FUZZ_STATS=1`), for
/// tallying outcomes over a corpus: run the target binary on a corpus directory with
/// `-runs=0` (docs/FUZZING.md).
pub fn stats_enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("SEALSTREAM_FUZZ_STATS").is_some_and(|v| v == "1"))
}

/// A short name for an outcome: `ok`, or the error variant (`ChunkAuth`, `Header`…).
pub fn outcome<T>(r: &Result<T, sealstream::Error>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => {
            let d = format!("{e:?}");
            d.split(|c: char| !c.is_ascii_alphanumeric())
                .next()
                .unwrap_or_default()
                .to_string()
        }
    }
}

/// Where the wrapped-key stanzas of a structured file come from.
#[derive(Arbitrary, Debug, Clone)]
pub enum StanzaLayout {
    /// One stanza for the fuzz key.
    Single,
    /// A stanza for another local key, then the fuzz key's.
    OtherFirst,
    /// The fuzz key's stanza, then another local key's.
    OtherAfter,
    /// A foreign-provider stanza (never matches a local key) before the fuzz key's.
    ForeignFirst {
        /// Opaque wrapped bytes (clamped to 1..=1024).
        wrapped: Vec<u8>,
    },
}

/// Everything needed to build one valid file deterministically.
#[derive(Arbitrary, Debug, Clone)]
pub struct FileSpec {
    /// ChaCha20-Poly1305 instead of AES-256-GCM.
    pub chacha: bool,
    /// Chunk size is `4096 + chunk_extra % 4097` (4096..=8192).
    pub chunk_extra: u16,
    /// Full chunks before the tail: `full_chunks % 4`.
    pub full_chunks: u8,
    /// Tail bytes: `tail % (chunk_size + 1)` (0 with no full chunk = empty plaintext).
    pub tail: u16,
    /// Plaintext byte pattern, repeated (first 32 bytes used; empty = `i mod 251`).
    pub pattern: Vec<u8>,
    /// Encryption context pairs (first 3 used; an invalid set falls back to none).
    pub context: Vec<(String, String)>,
    /// Stanza list.
    pub stanzas: StanzaLayout,
    /// Data key.
    pub dek: [u8; 32],
    /// Per-object salt.
    pub salt: [u8; 32],
    /// Nonce of the local wraps.
    pub wrap_nonce: [u8; 24],
}

/// A valid file and what it contains.
#[derive(Debug, Clone)]
pub struct Built {
    /// The complete file.
    pub file: Vec<u8>,
    /// Its plaintext.
    pub plaintext: Vec<u8>,
    /// Its chunk size.
    pub chunk_size: u32,
    /// Its header length (offset of chunk 0).
    pub header_len: usize,
    /// Its encryption context.
    pub context: Context,
}

/// Engine options for building files: one thread, default batches.
fn build_opts() -> EngineOptions<'static> {
    EngineOptions {
        threads: 1,
        ..EngineOptions::default()
    }
}

impl FileSpec {
    /// Chunk size in 4096..=8192.
    pub fn chunk_size(&self) -> u32 {
        4096 + u32::from(self.chunk_extra) % 4097
    }

    /// The plaintext this spec describes.
    pub fn plaintext(&self) -> Vec<u8> {
        let cs = self.chunk_size() as usize;
        let len = usize::from(self.full_chunks % 4) * cs + usize::from(self.tail) % (cs + 1);
        let pat = &self.pattern[..self.pattern.len().min(32)];
        if pat.is_empty() {
            (0..len).map(|i| (i % 251) as u8).collect()
        } else {
            pat.iter().copied().cycle().take(len).collect()
        }
    }

    /// The context (first 3 pairs, or none if they do not form a valid context).
    pub fn context(&self) -> Context {
        Context::from_pairs(self.context.iter().take(3).cloned()).unwrap_or_default()
    }

    /// Builds the valid file. Panics if the library refuses its own valid inputs.
    pub fn build(&self) -> Built {
        let cs = self.chunk_size();
        let plaintext = self.plaintext();
        let context = self.context();
        let dek = DataKey::from_bytes(self.dek);
        let mine = fuzz_key().wrap_with_nonce(&dek, &context, self.wrap_nonce);
        let other = || other_key().wrap_with_nonce(&dek, &context, self.wrap_nonce);
        let stanzas = match &self.stanzas {
            StanzaLayout::Single => vec![mine],
            StanzaLayout::OtherFirst => vec![other(), mine],
            StanzaLayout::OtherAfter => vec![mine, other()],
            StanzaLayout::ForeignFirst { wrapped } => {
                let mut w = wrapped[..wrapped.len().min(1024)].to_vec();
                if w.is_empty() {
                    w.push(0);
                }
                let foreign = Stanza {
                    provider: "aws-kms".into(),
                    key_id: "arn:aws:kms:us-east-1:111122223333:key/fuzz".into(),
                    wrapped: w,
                };
                vec![foreign, mine]
            }
        };
        let params = EncryptParams {
            suite: if self.chacha {
                Suite::ChaCha20Poly1305
            } else {
                Suite::Aes256Gcm
            },
            chunk_size: cs,
            context: context.clone(),
            backend: Backend::Ring,
            engine: build_opts(),
        };
        let (header, cipher) = envelope::seal_header(&dek, self.salt, stanzas, &params)
            .expect("seal_header accepts a valid spec");
        let mut file = header
            .to_bytes()
            .expect("a header seal_header accepted serializes");
        let header_len = file.len();
        assert_eq!(header_len, header.serialized_len());
        let stats = engine::seal(&cipher, cs, &plaintext[..], &mut file, &build_opts())
            .expect("sealing to a Vec cannot fail");
        assert_eq!(stats.plaintext_bytes, plaintext.len() as u64);
        assert_eq!(
            file.len() as u64,
            header_len as u64 + sealstream::format::body_len_for(plaintext.len() as u64, cs)
        );
        Built {
            file,
            plaintext,
            chunk_size: cs,
            header_len,
            context,
        }
    }
}

/// One modification of a valid file. Positions are taken modulo the current length.
#[derive(Arbitrary, Debug, Clone)]
pub enum Edit {
    /// XOR one byte with `mask` (0 = no change).
    Flip {
        /// Position.
        at: u32,
        /// XOR mask.
        mask: u8,
    },
    /// Overwrite a big-endian u32 (e.g. `chunk_size` at 12, `header_len` at 48).
    SetBe32 {
        /// Position.
        at: u32,
        /// Value.
        value: u32,
    },
    /// Cut the file to `len % (current + 1)` bytes.
    Truncate {
        /// New length.
        len: u32,
    },
    /// Append bytes (at most 64).
    Append {
        /// Bytes.
        bytes: Vec<u8>,
    },
    /// Insert bytes (at most 64).
    Insert {
        /// Position.
        at: u32,
        /// Bytes.
        bytes: Vec<u8>,
    },
    /// Remove up to `len` bytes.
    Remove {
        /// Position.
        at: u32,
        /// Length.
        len: u16,
    },
    /// Copy `len` bytes from `from` over the bytes at `to`.
    Splice {
        /// Source.
        from: u32,
        /// Destination.
        to: u32,
        /// Length.
        len: u16,
    },
    /// Exchange two chunks (chunk boundaries of the original layout).
    SwapChunks {
        /// First chunk.
        a: u8,
        /// Second chunk.
        b: u8,
    },
    /// Repeat a chunk right after itself.
    DuplicateChunk {
        /// Chunk.
        index: u8,
    },
    /// Delete a chunk.
    DropChunk {
        /// Chunk.
        index: u8,
    },
}

fn pos(at: u32, len: usize) -> Option<usize> {
    (len > 0).then(|| at as usize % len)
}

/// Splits `file` into the header and body chunks of a `stride`-byte grid.
fn split_chunks(file: &[u8], header_len: usize, stride: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let hl = header_len.min(file.len());
    let chunks = file[hl..].chunks(stride).map(<[u8]>::to_vec).collect();
    (file[..hl].to_vec(), chunks)
}

fn join_chunks(head: Vec<u8>, chunks: Vec<Vec<u8>>) -> Vec<u8> {
    let mut out = head;
    for c in chunks {
        out.extend_from_slice(&c);
    }
    out
}

impl Edit {
    /// Applies the edit; `header_len` and `chunk_size` locate chunks for the chunk edits.
    pub fn apply(&self, file: &mut Vec<u8>, header_len: usize, chunk_size: u32) {
        let stride = chunk_size as usize + TAG_LEN;
        let len = file.len();
        match self {
            Edit::Flip { at, mask } => {
                if let Some(p) = pos(*at, len) {
                    file[p] ^= mask;
                }
            }
            Edit::SetBe32 { at, value } => {
                if let Some(p) = pos(*at, len.saturating_sub(3)) {
                    file[p..p + 4].copy_from_slice(&value.to_be_bytes());
                }
            }
            Edit::Truncate { len: n } => file.truncate(*n as usize % (len + 1)),
            Edit::Append { bytes } => file.extend_from_slice(&bytes[..bytes.len().min(64)]),
            Edit::Insert { at, bytes } => {
                let p = *at as usize % (len + 1);
                let b = &bytes[..bytes.len().min(64)];
                file.splice(p..p, b.iter().copied());
            }
            Edit::Remove { at, len: n } => {
                if let Some(p) = pos(*at, len) {
                    let end = p.saturating_add(usize::from(*n)).min(len);
                    file.drain(p..end);
                }
            }
            Edit::Splice { from, to, len: n } => {
                if let (Some(f), Some(t)) = (pos(*from, len), pos(*to, len)) {
                    let n = usize::from(*n).min(len - f).min(len - t);
                    file.copy_within(f..f + n, t);
                }
            }
            Edit::SwapChunks { a, b } => {
                let (head, mut chunks) = split_chunks(file, header_len, stride);
                if !chunks.is_empty() {
                    let n = chunks.len();
                    chunks.swap(usize::from(*a) % n, usize::from(*b) % n);
                    *file = join_chunks(head, chunks);
                }
            }
            Edit::DuplicateChunk { index } => {
                let (head, mut chunks) = split_chunks(file, header_len, stride);
                if !chunks.is_empty() {
                    let i = usize::from(*index) % chunks.len();
                    let c = chunks[i].clone();
                    chunks.insert(i + 1, c);
                    *file = join_chunks(head, chunks);
                }
            }
            Edit::DropChunk { index } => {
                let (head, mut chunks) = split_chunks(file, header_len, stride);
                if !chunks.is_empty() {
                    let i = usize::from(*index) % chunks.len();
                    chunks.remove(i);
                    *file = join_chunks(head, chunks);
                }
            }
        }
    }
}

/// What the harness knows about a file it built.
#[derive(Debug, Clone)]
pub struct Truth {
    /// The plaintext of the valid file the input was derived from.
    pub plaintext: Vec<u8>,
    /// Its chunk size.
    pub chunk_size: u32,
    /// Its context.
    pub context: Context,
    /// True when the edits left the file byte-for-byte unchanged.
    pub unmodified: bool,
}

/// A file to decrypt, plus the truth when the harness built it.
#[derive(Debug, Clone)]
pub struct Case {
    /// The bytes handed to the decoder.
    pub file: Vec<u8>,
    /// `Some` for structured inputs.
    pub truth: Option<Truth>,
}

/// A structured input: the file spec and the edits.
#[derive(Arbitrary, Debug, Clone)]
pub struct Structured {
    /// The valid file.
    pub spec: FileSpec,
    /// Edits applied in order (at most [`MAX_EDITS`]).
    pub edits: Vec<Edit>,
}

impl Structured {
    /// Builds the file and applies the edits.
    pub fn case(&self) -> Case {
        let built = self.spec.build();
        let mut file = built.file.clone();
        for e in self.edits.iter().take(MAX_EDITS) {
            e.apply(&mut file, built.header_len, built.chunk_size);
        }
        let unmodified = file == built.file;
        Case {
            file,
            truth: Some(Truth {
                plaintext: built.plaintext,
                chunk_size: built.chunk_size,
                context: built.context,
                unmodified,
            }),
        }
    }
}

/// Engine tuning picked by the fuzzer: 1 or 2 threads, batches of one chunk to 1 MiB.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct RunOpts {
    /// Two worker threads instead of one.
    pub two_threads: bool,
    /// Batch size selector.
    pub batch: u8,
    /// Use the RustCrypto backend for the single-backend runs.
    pub rustcrypto: bool,
}

impl RunOpts {
    /// From the bits of a raw-mode prefix byte.
    pub fn from_bits(b: u8) -> RunOpts {
        RunOpts {
            two_threads: b & 0x02 != 0,
            batch: (b >> 2) & 0x03,
            rustcrypto: b & 0x10 != 0,
        }
    }

    /// The engine options (small batches, so multi-batch paths run on small files).
    pub fn engine(&self) -> EngineOptions<'static> {
        EngineOptions {
            threads: if self.two_threads { 2 } else { 1 },
            batch_bytes: match self.batch % 4 {
                0 => 1,             // one chunk per batch
                1 => 2 * 8192,      // two to four chunks
                2 => 3 * 4096 + 17, // two or three chunks
                _ => engine::DEFAULT_BATCH_BYTES,
            },
            progress: None,
            ..EngineOptions::default()
        }
    }

    /// The backend for single-backend runs.
    pub fn backend(&self) -> Backend {
        if self.rustcrypto {
            Backend::RustCrypto
        } else {
            Backend::Ring
        }
    }
}

/// A `Write` that records everything and can be told to fail after `fail_after` bytes.
#[derive(Debug, Default)]
pub struct Recorder {
    /// Bytes accepted so far.
    pub out: Vec<u8>,
    /// Fail any write that would go past this many bytes.
    pub fail_after: Option<usize>,
    /// Set once a write failed.
    pub failed: bool,
    /// Set if `flush` was called after a failure (harmless; recorded for debugging).
    pub flushes: usize,
}

impl Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(limit) = self.fail_after {
            let room = limit.saturating_sub(self.out.len());
            if room == 0 && !buf.is_empty() {
                self.failed = true;
                return Err(io::Error::other("fuzz writer: injected failure"));
            }
            let n = buf.len().min(room);
            self.out.extend_from_slice(&buf[..n]);
            return Ok(n);
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flushes += 1;
        Ok(())
    }
}

/// A position in the plaintext, chosen relative to things that matter.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Pos {
    /// Absolute, small.
    Start(u16),
    /// `len - x` (saturating).
    FromEnd(u16),
    /// `index * chunk_size + delta` (saturating).
    Chunk {
        /// Chunk index.
        index: u8,
        /// Offset from the chunk start.
        delta: i8,
    },
    /// Anything.
    Any(u64),
}

impl Pos {
    /// Resolves against a plaintext length and chunk size.
    pub fn resolve(self, len: u64, chunk_size: u64) -> u64 {
        match self {
            Pos::Start(x) => u64::from(x),
            Pos::FromEnd(x) => len.saturating_sub(u64::from(x)),
            Pos::Chunk { index, delta } => {
                let base = u64::from(index) * chunk_size;
                base.saturating_add_signed(i64::from(delta))
            }
            Pos::Any(x) => x,
        }
    }
}

/// A range shape with positions to resolve.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum RangeSpec {
    /// `START-END`.
    Inclusive(Pos, Pos),
    /// `START-`.
    From(Pos),
    /// `-N`.
    Suffix(Pos),
}

impl RangeSpec {
    /// The concrete range for a plaintext length and chunk size.
    pub fn resolve(self, len: u64, chunk_size: u64) -> ByteRange {
        match self {
            RangeSpec::Inclusive(a, b) => {
                ByteRange::Inclusive(a.resolve(len, chunk_size), b.resolve(len, chunk_size))
            }
            RangeSpec::From(a) => ByteRange::From(a.resolve(len, chunk_size)),
            RangeSpec::Suffix(n) => ByteRange::Suffix(n.resolve(len, chunk_size)),
        }
    }
}

/// HTTP `bytes=` semantics over a known plaintext: the expected slice bounds, or `None`
/// when unsatisfiable or degenerate (`-0`, END < START). Independent of `range::plan` on
/// purpose.
pub fn expected_span(r: ByteRange, len: u64) -> Option<(u64, u64)> {
    let (s, e) = match r {
        ByteRange::Inclusive(s, e) => {
            if s >= len || e < s {
                return None;
            }
            (s, e.min(len - 1) + 1)
        }
        ByteRange::From(s) => {
            if s >= len {
                return None;
            }
            (s, len)
        }
        ByteRange::Suffix(n) => {
            if len == 0 || n == 0 {
                return None;
            }
            (len - n.min(len), len)
        }
    };
    Some((s, e))
}

/// Decodes a structured input from the bytes after the mode byte.
pub fn structured(u: &mut Unstructured<'_>) -> arbitrary::Result<Structured> {
    Structured::arbitrary(u)
}
