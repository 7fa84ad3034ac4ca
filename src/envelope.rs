//! Envelope encryption of one object: data key → header → STREAM body, and back.
//!
//! This is the library's main entry point. It ties the key providers ([`crate::keys`]),
//! the header ([`crate::format`]), the key schedule (HKDF, crate-private) and the
//! engine ([`crate::engine`]) together, and owns the order of checks on decrypt:
//! header syntax → expected context → unwrap → key commitment → chunks.

use std::io::{Read, Seek, Write};

use crate::engine::{self, EngineOptions, OpenParams, StreamStats};
use crate::error::{Error, Result, RewrapRefusal, StanzaFailure};
use crate::format::{Context, Header, Layout, SALT_LEN, Stanza, Suite, limits};
use crate::keys::{self, AsyncKeyProvider, DataKey, Inline, KeyProvider, block_on, inline};
use crate::parts;
use crate::primitives::aead::Backend;
use crate::primitives::kdf::{self, PartKeys};
use crate::primitives::stream::PayloadCipher;

/// How to encrypt one object.
#[derive(Debug, Clone)]
pub struct EncryptParams<'a> {
    /// Body cipher suite.
    pub suite: Suite,
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Encryption context, authenticated and bound into every stanza.
    pub context: Context,
    /// AEAD implementation for the body.
    pub backend: Backend,
    /// Engine tuning.
    pub engine: EngineOptions<'a>,
}

impl Default for EncryptParams<'_> {
    fn default() -> Self {
        EncryptParams {
            suite: Suite::Aes256Gcm,
            chunk_size: limits::DEFAULT_CHUNK_SIZE,
            context: Context::new(),
            backend: Backend::default(),
            engine: EngineOptions::default(),
        }
    }
}

/// How to decrypt one object.
#[derive(Debug, Clone, Default)]
pub struct DecryptParams<'a> {
    /// Pairs the file's context must contain with these exact values.
    pub expected_context: Context,
    /// AEAD implementation for the body.
    pub backend: Backend,
    /// Engine tuning.
    pub engine: EngineOptions<'a>,
}

/// Builds the header and payload cipher for a new object from an existing data key.
///
/// `encrypt` calls this with a fresh key and salt; test vectors call it with fixed ones.
pub fn seal_header(
    dek: &DataKey,
    salt: [u8; SALT_LEN],
    stanzas: Vec<Stanza>,
    params: &EncryptParams<'_>,
) -> Result<(Header, PayloadCipher)> {
    let mut header = Header {
        suite: params.suite,
        chunk_size: params.chunk_size,
        salt,
        commitment: [0; 32],
        context: params.context.clone(),
        stanzas,
    };
    header
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    let derived = kdf::derive(dek.expose(), &salt, &header.digest());
    header.commitment = derived.commitment;
    let cipher = PayloadCipher::new(params.suite, params.backend, &derived.payload_key);
    Ok((header, cipher))
}

/// One object's header with the payload cipher that seals its body: what a sealing sink
/// (a file, an S3 upload, an async writer) needs, so that none of them sees the data key
/// or the payload cipher's construction. Made by [`Sealing::new`] with a fresh salt.
pub struct Sealing {
    header: Header,
    cipher: PayloadCipher,
    parts: PartKeys,
    backend: Backend,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Sealing {
    /// Prepares a new object under `dek` (wrapped as `stanzas`): a fresh salt gives it its
    /// own payload key and key commitment even when the data key is reused (a cache).
    pub fn new(dek: &DataKey, stanzas: Vec<Stanza>, params: &EncryptParams<'_>) -> Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        keys::fill_random(&mut salt)?;
        let (header, cipher) = seal_header(dek, salt, stanzas, params)?;
        let parts = PartKeys::new(dek.expose(), &header.salt, &header.digest());
        Ok(Sealing {
            header,
            cipher,
            parts,
            backend: params.backend,
        })
    }

    /// Resumes sealing an object whose header was written earlier (another process started
    /// the multipart upload whose parts this one seals): `dek` must be the header's data
    /// key, which the key commitment proves before anything is sealed under it.
    pub fn resume(header: Header, dek: &DataKey, backend: Backend) -> Result<Self> {
        let derived = kdf::derive(dek.expose(), &header.salt, &header.digest());
        if !kdf::commitment_matches(&header.commitment, &derived.commitment) {
            return Err(Error::CommitmentMismatch);
        }
        let cipher = PayloadCipher::new(header.suite, backend, &derived.payload_key);
        let parts = PartKeys::new(dek.expose(), &header.salt, &header.digest());
        Ok(Sealing {
            header,
            cipher,
            parts,
            backend,
        })
    }

    /// Prepares one part of a part-wise body (FORMAT.md §17) under a fresh random salt, so
    /// that uploading the same part number again never reuses a key and nonce.
    pub fn seal_part(&self, number: u32) -> Result<PartSealing> {
        if number == 0 || number > parts::MAX_PARTS {
            return Err(Error::InvalidArgument(format!(
                "part number {number} is outside 1..={}",
                parts::MAX_PARTS
            )));
        }
        let mut salt = [0u8; parts::PART_SALT_LEN];
        keys::fill_random(&mut salt)?;
        Ok(self.seal_part_with_salt(number, salt))
    }

    /// [`Sealing::seal_part`] with a given salt: for test vectors only (a salt must never
    /// be reused for the same object and part number).
    #[doc(hidden)]
    pub fn seal_part_with_salt(
        &self,
        number: u32,
        salt: [u8; parts::PART_SALT_LEN],
    ) -> PartSealing {
        let key = self.parts.part_key(number, &salt);
        PartSealing {
            number,
            salt,
            cipher: PayloadCipher::new(self.header.suite, self.backend, &key),
        }
    }

    /// The authenticated manifest of a completed part-wise body: the parts that make the
    /// object, in order, with the salts and plaintext lengths they were sealed with.
    pub fn part_manifest(&self, entries: Vec<parts::PartEntry>) -> Result<Vec<u8>> {
        let manifest =
            parts::Manifest::new(entries, self.header.chunk_size).map_err(Error::PartManifest)?;
        Ok(manifest.encode(&self.parts.manifest_key()))
    }

    /// Prepares a new object under a fresh data key wrapped for every provider.
    pub fn for_providers(
        providers: &[&dyn KeyProvider],
        params: &EncryptParams<'_>,
    ) -> Result<Self> {
        let (dek, stanzas) = keys::wrap_for_all(providers, &params.context)?;
        Sealing::new(&dek, stanzas, params)
    }

    /// [`Sealing::for_providers`] with async providers (KMS awaited on the caller's
    /// runtime).
    pub async fn for_providers_async(
        providers: &[&dyn AsyncKeyProvider],
        params: &EncryptParams<'_>,
    ) -> Result<Self> {
        let (dek, stanzas) = keys::wrap_for_all_async(providers, &params.context).await?;
        Sealing::new(&dek, stanzas, params)
    }

    /// The header to store in front of (or beside) the body.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload cipher, for this crate's sealing drivers only.
    pub(crate) fn cipher(&self) -> &PayloadCipher {
        &self.cipher
    }

    /// Splits into the header and cipher, for this crate's drivers that own them.
    #[allow(dead_code)]
    pub(crate) fn into_parts(self) -> (Header, PayloadCipher) {
        (self.header, self.cipher)
    }
}

/// An object whose data key was recovered and checked against the header's key
/// commitment: what an opening source (a file, an S3 download, an async reader) needs to
/// release authenticated plaintext, without seeing the data key.
pub struct Opening {
    header: Header,
    cipher: PayloadCipher,
    parts: PartKeys,
    backend: Backend,
}

/// One part of a part-wise body being sealed (FORMAT.md §17): its number and fresh salt,
/// which the writer must record for the manifest, and the part's cipher.
pub struct PartSealing {
    number: u32,
    salt: [u8; parts::PART_SALT_LEN],
    cipher: PayloadCipher,
}

impl std::fmt::Debug for PartSealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartSealing")
            .field("number", &self.number)
            .finish_non_exhaustive()
    }
}

impl PartSealing {
    /// The part number this part is keyed for.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// The part's salt: goes into the manifest entry of this part.
    pub fn salt(&self) -> &[u8; parts::PART_SALT_LEN] {
        &self.salt
    }

    /// The part's cipher, for this crate's sealing drivers only.
    #[allow(dead_code)]
    pub(crate) fn cipher(&self) -> &PayloadCipher {
        &self.cipher
    }
}

impl std::fmt::Debug for Opening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opening")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl Opening {
    /// Checks the expected context, unwraps a stanza and verifies the key commitment
    /// (see [`unwrap_data_key`]).
    pub fn unlock(
        header: Header,
        providers: &[&dyn KeyProvider],
        expected_context: &Context,
        backend: Backend,
    ) -> Result<Self> {
        let dek = unwrap_data_key(&header, providers, expected_context)?;
        Ok(Opening::with_verified_key(header, &dek, backend))
    }

    /// [`Opening::unlock`] with async providers (same checks, same order).
    pub async fn unlock_async(
        header: Header,
        providers: &[&dyn AsyncKeyProvider],
        expected_context: &Context,
        backend: Backend,
    ) -> Result<Self> {
        let dek = unwrap_data_key_async(&header, providers, expected_context).await?;
        Ok(Opening::with_verified_key(header, &dek, backend))
    }

    /// Opens with a data key already verified for this header (a cached unwrap).
    pub fn with_verified_key(header: Header, dek: &DataKey, backend: Backend) -> Self {
        let cipher = cipher_for(&header, dek, backend);
        let parts = PartKeys::new(dek.expose(), &header.salt, &header.digest());
        Opening {
            header,
            cipher,
            parts,
            backend,
        }
    }

    /// Verifies a part-wise body's manifest (FORMAT.md §17) against this object's key and
    /// the stored body length, and places its parts: the authenticated map a reader needs
    /// before it fetches any part.
    pub fn part_layout(&self, manifest: &[u8], body_len: u64) -> Result<parts::PartLayout> {
        let chunk_size = self.header.chunk_size;
        let manifest = parts::Manifest::decode(manifest, &self.parts.manifest_key(), chunk_size)
            .map_err(Error::PartManifest)?;
        parts::PartLayout::new(&manifest, chunk_size, body_len).map_err(Error::PartManifest)
    }

    /// The cipher of one part of a part-wise body, for this crate's opening drivers only.
    #[allow(dead_code)]
    pub(crate) fn part_cipher(&self, entry: &parts::PartEntry) -> PayloadCipher {
        let key = self.parts.part_key(entry.number, &entry.salt);
        PayloadCipher::new(self.header.suite, self.backend, &key)
    }

    /// The header that was unlocked.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload cipher, for this crate's opening drivers only.
    pub(crate) fn cipher(&self) -> &PayloadCipher {
        &self.cipher
    }

    /// Splits into the header and cipher, for this crate's drivers that own them.
    #[allow(dead_code)]
    pub(crate) fn into_parts(self) -> (Header, PayloadCipher) {
        (self.header, self.cipher)
    }
}

/// Encrypts `input` to `output` under a fresh data key wrapped for every provider.
pub fn encrypt<R, W>(
    input: R,
    output: W,
    providers: &[&dyn KeyProvider],
    params: &EncryptParams<'_>,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    let (dek, stanzas) = keys::wrap_for_all(providers, &params.context)?;
    encrypt_with_data_key(input, output, &dek, stanzas, params)
}

/// Encrypts under a data key the caller already holds with its stanzas (from a
/// [`crate::keys::cache::DataKeyCache`]); a fresh salt still gives this object its own
/// payload key and commitment.
pub fn encrypt_with_data_key<R, W>(
    input: R,
    mut output: W,
    dek: &DataKey,
    stanzas: Vec<Stanza>,
    params: &EncryptParams<'_>,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    let sealing = Sealing::new(dek, stanzas, params)?;
    let bytes = sealing
        .header()
        .to_bytes()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    output
        .write_all(&bytes)
        .map_err(|e| Error::io("writing output", e))?;
    engine::seal(
        sealing.cipher(),
        params.chunk_size,
        input,
        output,
        &params.engine,
    )
}

/// Recovers and verifies the data key of a parsed header.
///
/// Checks the expected context first, then unwraps stanzas in order until one yields a key
/// that passes the key-commitment check (constant time). A key returned here is the
/// object's key.
pub fn unwrap_data_key(
    header: &Header,
    providers: &[&dyn KeyProvider],
    expected_context: &Context,
) -> Result<DataKey> {
    let inline = inline(providers);
    let refs: Vec<&Inline<'_>> = inline.iter().collect();
    block_on(unwrap_data_key_core(header, &refs, expected_context))
}

/// [`unwrap_data_key`] with async providers.
pub async fn unwrap_data_key_async(
    header: &Header,
    providers: &[&dyn AsyncKeyProvider],
    expected_context: &Context,
) -> Result<DataKey> {
    unwrap_data_key_core(header, providers, expected_context).await
}

/// The one implementation of [`unwrap_data_key`] (sync and async).
async fn unwrap_data_key_core<P: AsyncKeyProvider + ?Sized>(
    header: &Header,
    providers: &[&P],
    expected_context: &Context,
) -> Result<DataKey> {
    header.context.require(expected_context)?;
    let digest = header.digest();
    let commits = |dek: &DataKey| {
        let derived = kdf::derive(dek.expose(), &header.salt, &digest);
        kdf::commitment_matches(&header.commitment, &derived.commitment)
    };
    keys::unwrap_any_core(&header.stanzas, providers, &header.context, &commits).await
}

/// Recovers the payload cipher for a parsed header (all checks of [`unwrap_data_key`]).
pub fn unlock(
    header: &Header,
    providers: &[&dyn KeyProvider],
    expected_context: &Context,
    backend: Backend,
) -> Result<PayloadCipher> {
    let dek = unwrap_data_key(header, providers, expected_context)?;
    Ok(cipher_for(header, &dek, backend))
}

/// The payload cipher for a header and an already-verified data key.
pub fn cipher_for(header: &Header, dek: &DataKey, backend: Backend) -> PayloadCipher {
    let derived = kdf::derive(dek.expose(), &header.salt, &header.digest());
    PayloadCipher::new(header.suite, backend, &derived.payload_key)
}

/// Decrypts a whole object from `input` to `output`, releasing only authenticated chunks.
pub fn decrypt<R, W>(
    input: R,
    output: W,
    providers: &[&dyn KeyProvider],
    params: &DecryptParams<'_>,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    Unlocked::new(
        input,
        None,
        providers,
        &params.expected_context,
        params.backend,
    )?
    .decrypt(output, &params.engine)
}

/// A sealed input whose data key was recovered and checked, with none of its body read.
///
/// Why a value between unlocking and decrypting: a caller learns the header (its keys,
/// suite, chunk size) and the layout the input's length implies *before* any plaintext is
/// written, so it can report them or size a progress bar, and then chooses how to decrypt
/// (all of it or a range) and with which [`EngineOptions`] (a progress callback, threads).
///
/// The header is either in front of the body (the file form) or was kept apart (an S3
/// object's body downloaded by another tool, with its header saved by `sealstream inspect
/// --export-header`): [`Unlocked::new`] takes both, so nobody splices `header ‖ body`
/// back together or shifts offsets by the header's length themselves. The checks and
/// their order are [`decrypt`]'s in both cases.
pub struct Unlocked<R> {
    opening: Opening,
    input: R,
    /// Bytes of the input before chunk 0 (counted from where the input started): the
    /// header's length, or 0 when the header was detached.
    body_offset: u64,
}

impl<R> std::fmt::Debug for Unlocked<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("header", self.opening.header())
            .field("body_offset", &self.body_offset)
            .finish_non_exhaustive()
    }
}

impl<R: Read> Unlocked<R> {
    /// Unlocks the object in `input`. With `detached_header: None`, the header is read
    /// from `input`'s current position and the body follows it; with `Some(header)` (a
    /// header stored apart, e.g. parsed with [`Header::parse_exact`]), `input` is the body
    /// alone, from its first byte. Then checks `expected_context`, unwraps a stanza with
    /// `providers` and verifies the key commitment (see [`unwrap_data_key`]): a wrong key,
    /// context or header fails here, before any plaintext.
    pub fn new(
        mut input: R,
        detached_header: Option<Header>,
        providers: &[&dyn KeyProvider],
        expected_context: &Context,
        backend: Backend,
    ) -> Result<Self> {
        let (header, body_offset) = match detached_header {
            Some(h) => (h, 0),
            None => {
                let (h, len) = Header::read_from(&mut input)?;
                (h, len as u64)
            }
        };
        let opening = Opening::unlock(header, providers, expected_context, backend)?;
        Ok(Unlocked {
            opening,
            input,
            body_offset,
        })
    }

    /// The unlocked header: what a report shows (stanzas, suite, chunk size, context).
    pub fn header(&self) -> &Header {
        self.opening.header()
    }

    /// The chunk layout an input of `input_len` bytes implies, counted from where the
    /// input started (its header, or its body when the header was detached; then
    /// [`Layout::header_len`] is 0). Unauthenticated, from lengths alone: for sizing a
    /// progress bar; a length that does not match the real end fails when decrypting.
    pub fn layout(&self, input_len: u64) -> Result<Layout> {
        Layout::from_lengths(self.body_offset, self.header().chunk_size, input_len)
    }

    /// Decrypts the whole body to `output`, releasing only authenticated chunks (the end
    /// of the input must be the end of the object).
    pub fn decrypt<W: Write>(self, output: W, opts: &EngineOptions<'_>) -> Result<StreamStats>
    where
        R: Send,
    {
        engine::open(
            self.opening.cipher(),
            self.opening.header().chunk_size,
            self.input,
            output,
            OpenParams::default(),
            opts,
        )
    }
}

impl<R: Read + Seek> Unlocked<R> {
    /// Decrypts only `range` of the plaintext to `output`, reading just the chunks that
    /// cover it (see [`crate::range::decrypt_range`]: whatever depends on where the
    /// plaintext ends is authenticated first). The body must run to the end of the input.
    pub fn decrypt_range<W: Write>(
        mut self,
        range: crate::range::ByteRange,
        output: W,
        opts: &EngineOptions<'_>,
    ) -> Result<StreamStats>
    where
        R: Send,
    {
        // Nothing of the body was read: chunk 0 is where the input is now.
        let body_start = self
            .input
            .stream_position()
            .map_err(|e| Error::io("seeking input", e))?;
        crate::range::decrypt_range(
            self.input,
            body_start,
            self.opening.header().chunk_size,
            self.opening.cipher(),
            range,
            output,
            opts,
        )
    }
}

/// Key rotation: a new stanza list for the same data key. The body is not touched.
///
/// Unwraps with `unlock_with` (verifying the commitment), drops stanzas whose key id is in
/// `remove` (as `key_id` or `provider:key_id`), and wraps for every key in `add` (replacing a
/// stanza of the same key). Refuses to leave the object with no stanza, and, when removing,
/// refuses ([`Error::RewrapRefused`]) unless a stanza of the new list verifies against the
/// key commitment with the keys at hand (`unlock_with` and `add`): removing the one stanza
/// that works while keeping one that never does would lock the data out.
pub fn rewrap(
    header: &Header,
    unlock_with: &[&dyn KeyProvider],
    add: &[&dyn KeyProvider],
    remove: &[String],
) -> Result<Header> {
    let (unlock_with, add) = (inline(unlock_with), inline(add));
    let unlock_refs: Vec<&Inline<'_>> = unlock_with.iter().collect();
    let add_refs: Vec<&Inline<'_>> = add.iter().collect();
    block_on(rewrap_core(header, &unlock_refs, &add_refs, remove))
}

/// [`rewrap`] with async providers (same rules, same lockout guard).
pub async fn rewrap_async(
    header: &Header,
    unlock_with: &[&dyn AsyncKeyProvider],
    add: &[&dyn AsyncKeyProvider],
    remove: &[String],
) -> Result<Header> {
    rewrap_core(header, unlock_with, add, remove).await
}

/// The one implementation of [`rewrap`] (sync and async).
async fn rewrap_core<P: AsyncKeyProvider + ?Sized>(
    header: &Header,
    unlock_with: &[&P],
    add: &[&P],
    remove: &[String],
) -> Result<Header> {
    let dek = unwrap_data_key_core(header, unlock_with, &Context::new()).await?;
    for r in remove {
        if !header.stanzas.iter().any(|s| stanza_named(s, r)) {
            return Err(Error::RewrapRefused(RewrapRefusal::NoSuchStanza(r.clone())));
        }
    }
    let mut stanzas: Vec<Stanza> = header
        .stanzas
        .iter()
        .filter(|s| !remove.iter().any(|r| stanza_named(s, r)))
        .filter(|s| !add.iter().any(|p| p.matches(s)))
        .cloned()
        .collect();
    let kept = stanzas.len();
    for p in add {
        stanzas.push(p.wrap(&dek, &header.context).await?);
    }
    if stanzas.is_empty() {
        return Err(Error::RewrapRefused(RewrapRefusal::NoStanzaLeft));
    }
    let new = Header {
        stanzas,
        ..header.clone()
    };
    new.validate()
        .map_err(|e| Error::InvalidArgument(format!("cannot write this header: {e}")))?;
    if !remove.is_empty() {
        refuse_lockout(&new, kept, unlock_with, add).await?;
    }
    Ok(new)
}

/// The removal guard: some stanza of `new` must verify against the key commitment.
///
/// Kept stanzas (`new.stanzas[..kept]`) are checked with every key at hand; if none
/// verifies, each added stanza is unwrapped by the provider that just wrapped it (for KMS
/// that is a `Decrypt`: it proves the caller can really use the new key).
async fn refuse_lockout<P: AsyncKeyProvider + ?Sized>(
    new: &Header,
    kept: usize,
    unlock_with: &[&P],
    add: &[&P],
) -> Result<()> {
    let digest = new.digest();
    let held: Vec<&P> = unlock_with.iter().chain(add).copied().collect();
    for s in &new.stanzas[..kept] {
        if let StanzaCheck::Verified = check_stanza(new, &digest, s, &held).await {
            return Ok(());
        }
    }
    let mut added = None;
    for (p, s) in add.iter().zip(&new.stanzas[kept..]) {
        match check_with(new, &digest, s, *p).await {
            StanzaCheck::Verified => return Ok(()),
            StanzaCheck::Failed(e) => {
                added = Some(StanzaFailure {
                    provider: s.provider.clone(),
                    key_id: p.key_id().to_string(),
                    reason: e.to_string(),
                });
            }
            StanzaCheck::NotChecked => {}
        }
    }
    Err(Error::RewrapRefused(RewrapRefusal::WouldLockOut { added }))
}

/// Whether `name` names stanza `s` (as its `key_id` or `provider:key_id`): how removal
/// names are read, here and by [`crate::rewrap::Rewrap`].
pub(crate) fn stanza_named(s: &Stanza, name: &str) -> bool {
    s.key_id == name || format!("{}:{}", s.provider, s.key_id) == name
}

/// The outcome of checking one stanza with the keys at hand.
#[derive(Debug)]
#[non_exhaustive]
pub enum StanzaCheck {
    /// A key unwrapped it and the result matches the header's key commitment.
    Verified,
    /// No offered key matches this stanza.
    NotChecked,
    /// Every matching key failed (the last reason).
    Failed(Error),
}

/// Checks every stanza independently: unwrap with each matching provider, then compare the
/// result with the header's key commitment. Used by `inspect --verify` and before
/// removing keys, so a user can see which keys really open a file.
pub fn verify_stanzas(header: &Header, providers: &[&dyn KeyProvider]) -> Vec<StanzaCheck> {
    let inline = inline(providers);
    let refs: Vec<&Inline<'_>> = inline.iter().collect();
    block_on(verify_stanzas_core(header, &refs))
}

/// [`verify_stanzas`] with async providers.
pub async fn verify_stanzas_async(
    header: &Header,
    providers: &[&dyn AsyncKeyProvider],
) -> Vec<StanzaCheck> {
    verify_stanzas_core(header, providers).await
}

async fn verify_stanzas_core<P: AsyncKeyProvider + ?Sized>(
    header: &Header,
    providers: &[&P],
) -> Vec<StanzaCheck> {
    let digest = header.digest();
    let mut checks = Vec::with_capacity(header.stanzas.len());
    for s in &header.stanzas {
        checks.push(check_stanza(header, &digest, s, providers).await);
    }
    checks
}

/// Checks one stanza of `header` (whose digest is `digest`) with every matching provider.
async fn check_stanza<P: AsyncKeyProvider + ?Sized>(
    header: &Header,
    digest: &[u8; 32],
    s: &Stanza,
    providers: &[&P],
) -> StanzaCheck {
    let mut result = StanzaCheck::NotChecked;
    for p in providers.iter().filter(|p| p.matches(s)) {
        // A lazily resolved key (an alias) may turn out not to be this stanza's key, or
        // its lookup may fail: the latter is this stanza's failure, like an unwrap's.
        match p.confirm(s).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                result = StanzaCheck::Failed(e);
                continue;
            }
        }
        match check_with(header, digest, s, *p).await {
            StanzaCheck::Verified => return StanzaCheck::Verified,
            other => result = other,
        }
    }
    result
}

/// Unwraps one stanza with one provider and compares the result with the commitment.
async fn check_with<P: AsyncKeyProvider + ?Sized>(
    header: &Header,
    digest: &[u8; 32],
    s: &Stanza,
    p: &P,
) -> StanzaCheck {
    match p.unwrap(s, &header.context).await {
        Ok(dek) => {
            let derived = kdf::derive(dek.expose(), &header.salt, digest);
            if kdf::commitment_matches(&header.commitment, &derived.commitment) {
                StanzaCheck::Verified
            } else {
                StanzaCheck::Failed(Error::CommitmentMismatch)
            }
        }
        Err(e) => StanzaCheck::Failed(e),
    }
}

/// What `inspect` reports: header fields plus the layout implied by the total length.
#[derive(Debug, Clone)]
pub struct Inspection {
    /// Parsed header.
    pub header: Header,
    /// Header length = offset of chunk 0.
    pub header_len: u64,
    /// Total ciphertext length, if known.
    pub ciphertext_len: Option<u64>,
    /// Chunk layout, or why the length is inconsistent. Unauthenticated (no key was used).
    pub layout: Option<std::result::Result<Layout, String>>,
}

/// Describes an object from its header and total length, without any key.
pub fn inspect(header: Header, header_len: u64, ciphertext_len: Option<u64>) -> Inspection {
    let layout = ciphertext_len
        .map(|t| Layout::from_lengths(header_len, header.chunk_size, t).map_err(|e| e.to_string()));
    Inspection {
        header,
        header_len,
        ciphertext_len,
        layout,
    }
}

/// Seals one part of a part-wise body (FORMAT.md §17): the part's plaintext as a v1 body
/// (§6) under the part's own key. Its ciphertext is `parts::part_ciphertext_len` bytes.
pub fn seal_part_body<R, W>(
    part: &PartSealing,
    chunk_size: u32,
    input: R,
    output: W,
    opts: &EngineOptions<'_>,
) -> Result<StreamStats>
where
    R: Read + Send,
    W: Write,
{
    engine::seal(&part.cipher, chunk_size, input, output, opts)
}

/// Decrypts a part-wise body read from `body` (positioned anywhere; it is sought): all of
/// it, every part authenticated whole, or only `range`, reading just the covering chunks of
/// the parts it touches. `layout` comes from [`Opening::part_layout`]. Returns the
/// plaintext bytes written.
pub fn open_part_wise<R, W>(
    opening: &Opening,
    layout: &parts::PartLayout,
    mut body: R,
    range: Option<crate::range::ByteRange>,
    mut output: W,
    opts: &EngineOptions<'_>,
) -> Result<u64>
where
    R: Read + std::io::Seek + Send,
    W: Write,
{
    use std::io::SeekFrom;
    let reads: Vec<parts::PartRead> = match range {
        Some(r) => layout.plan(r)?.2,
        None => layout.whole(),
    };
    let mut written = 0;
    for read in reads {
        let part = &layout.parts()[read.index];
        let cipher = opening.part_cipher(&part.entry);
        body.seek(SeekFrom::Start(read.body_range.start))
            .map_err(|e| Error::io("seeking the body", e))?;
        let len = read.body_range.end - read.body_range.start;
        let stats = engine::open(
            &cipher,
            layout.chunk_size(),
            (&mut body).take(len),
            &mut output,
            read.params,
            opts,
        )?;
        written += stats.plaintext_bytes;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalKey;
    use crate::error::RewrapRefusal;

    /// Rewrap refusals are typed (the CLI words them with its flags) and their own text
    /// names no command-line flag.
    #[test]
    fn rewrap_refusals_are_typed_and_flag_free() {
        let (a, b) = (LocalKey::from_bytes([1; 32]), LocalKey::from_bytes([2; 32]));
        let mut sealed = Vec::new();
        let keys: [&dyn KeyProvider; 1] = [&a];
        encrypt(&b"x"[..], &mut sealed, &keys, &EncryptParams::default()).unwrap();
        let (header, _) = Header::parse(&sealed).unwrap();
        let cases = [
            (
                vec![b.id().to_string()],
                RewrapRefusal::NoSuchStanza(b.id().into()),
            ),
            (vec![a.id().to_string()], RewrapRefusal::NoStanzaLeft),
        ];
        for (remove, want) in cases {
            match rewrap(&header, &keys, &[], &remove) {
                Err(Error::RewrapRefused(got)) => {
                    assert_eq!(got, want);
                    let text = Error::RewrapRefused(got).to_string();
                    assert!(!text.contains("--") && !text.contains(" -"), "{text}");
                }
                other => panic!("{remove:?}: {other:?}"),
            }
        }
    }
}
