//! Objects written by the Amazon S3 Encryption Client (S3EC): read them with bounded memory
//! and authenticated output, and migrate them into sealstream's object form.
//!
//! An S3EC body is one AES-256-GCM over the whole object, its tag at the end: nothing of it
//! is authentic until the last byte is read. So nothing is released before that:
//! - [`S3::s3ec_get_staged`] writes plaintext only to a destination the caller keeps from
//!   everyone until it returns `Ok` (the CLI: a temporary file renamed afterwards);
//! - [`S3::s3ec_verify`] reads the body once and keeps nothing but a SHA-256 per 4 MiB of
//!   ciphertext; [`S3::s3ec_get_verified`] then reads it again (pinned to the same ETag and
//!   version) and releases each window's plaintext only once that window's ciphertext hashes
//!   as in the verified pass: output to a stream, at the price of two downloads;
//! - [`S3::s3ec_migrate`] re-encrypts into a sealstream object with one read, completing the
//!   new object's upload only after the tag verified (the parts stay invisible until then),
//!   and only if the S3EC object is still the version read (`If-Match`).
//!
//! Layers: [`metadata`] parses the content metadata (plain, synchronous, fuzzed);
//! `content` holds the key schedule and the GCM stream (plain, synchronous, crate-private
//! because it yields unauthenticated plaintext); this module is the I/O edge (S3 and KMS,
//! async), with [`blocking`] on top for the CLI. Format facts and their sources:
//! docs/MIGRATION.md.

pub(crate) mod content;
pub mod metadata;

use std::collections::BTreeMap;
use std::pin::Pin as StdPin;
use std::task::{Context as TaskContext, Poll, ready};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use zeroize::Zeroizing;

use self::content::{BodyDecryptor, BodyError};
pub use self::metadata::{Envelope, FormatError, Placement, Refused, Version, Wrapping};
use super::transfer::{Pin, RangedReader};
use super::upload::{PutJob, Replacing};
use super::{Head, ObjectAttributes, PutReport, S3, S3Url, not_found, sdk_error};
use crate::envelope::Sealing;
use crate::error::{Error, Result, StanzaFailure};
use crate::format::Context;
use crate::keys::DataKey;
use crate::stream::{EngineOptions, io_error};

/// Ciphertext bytes per hash window of the verified two-pass read (and the most plaintext
/// its second pass holds before releasing it).
pub const VERIFY_WINDOW: usize = 4 << 20;

/// Bytes handed to the GCM stream at once.
const FEED: usize = 1 << 20;

/// An S3EC object: what HEAD said and its parsed envelope (not yet unlocked).
#[derive(Debug, Clone)]
pub struct S3ecObject {
    /// Where it is.
    pub url: S3Url,
    /// HEAD of the object (its ETag and version pin every later read and the migration).
    pub head: Head,
    /// The content metadata.
    pub envelope: Envelope,
    /// The instruction file read, with its ETag, when the metadata came from one.
    pub instruction: Option<(String, Option<String>)>,
}

impl S3ecObject {
    /// The plaintext length: the body less its 16-byte tag (from the object's length, so
    /// authenticated only once the body is).
    pub fn plaintext_len(&self) -> u64 {
        self.head
            .content_length
            .saturating_sub(metadata::TAG_LEN as u64)
    }

    fn pin(&self) -> Pin {
        Pin {
            etag: self.head.etag.clone(),
            version_id: self.head.version_id.clone(),
        }
    }

    fn foreign(&self, reason: impl std::fmt::Display) -> Error {
        Error::ForeignObject {
            object: self.url.to_string(),
            reason: reason.to_string(),
        }
    }
}

/// Maps a metadata error of `url` to the crate error: a refused mode is
/// [`Error::Unsupported`], anything else [`Error::ForeignObject`] (authentication).
pub fn format_error(url: &S3Url, e: FormatError) -> Error {
    if e.is_refusal() {
        Error::Unsupported {
            object: url.to_string(),
            reason: e.to_string(),
        }
    } else {
        Error::ForeignObject {
            object: url.to_string(),
            reason: e.to_string(),
        }
    }
}

/// Which KMS keys may unwrap an S3EC data key: the same trust rules as sealstream's own
/// stanzas. S3EC metadata does not record the key, so each named key is tried with KMS
/// `Decrypt` pinned to it (KMS refuses a ciphertext of another key); discovery lets KMS use
/// the key the ciphertext names and keeps the data key only if that key's account is
/// allowed.
#[derive(Debug, Clone, Default)]
pub struct KmsTrust {
    /// KMS keys (id, alias or ARN) trusted to unwrap, tried in order.
    pub keys: Vec<String>,
    /// Discovery: accounts whose keys are accepted (empty: no discovery).
    pub discovery_accounts: Vec<String>,
    /// Most KMS calls for one object.
    pub max_decrypts: usize,
}

/// An unlocked S3EC object: its body key (the key commitment already checked for V3).
pub struct Unlocked {
    key: Zeroizing<[u8; 32]>,
    kms_key: String,
}

impl std::fmt::Debug for Unlocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unlocked")
            .field("kms_key", &self.kms_key)
            .finish_non_exhaustive()
    }
}

impl Unlocked {
    /// The ARN of the KMS key that unwrapped the data key (as KMS reported it).
    pub fn kms_key(&self) -> &str {
        &self.kms_key
    }
}

/// Checks the caller's expected pairs against the stored context (each must be present
/// with the same value, as for sealstream objects); the reserved names cannot be asked for.
pub fn check_context(env: &Envelope, expected: &Context) -> Result<()> {
    for (k, v) in expected.iter() {
        if k == metadata::CONTEXT_CEK_ALG || k == metadata::CONTEXT_KMS_CMK_ID {
            return Err(Error::InvalidArgument(format!(
                "'{k}' is reserved by the S3 Encryption Client and cannot be required"
            )));
        }
        match env.user_context().find(|(sk, _)| *sk == k) {
            Some((_, found)) if found == v => {}
            found => {
                return Err(Error::ContextMismatch {
                    key: k.to_string(),
                    found: found.map(|(_, v)| v.to_string()),
                });
            }
        }
    }
    Ok(())
}

/// Unwraps the data key with KMS as `trust` allows, checks `expected` and (V3) the key
/// commitment, and derives the body key. Authentication failures (a KMS refusal of the
/// ciphertext or context, a wrong commitment) are exit-4 errors; KMS's own failures are
/// [`Error::KeyService`] / [`Error::KeyServiceStanzas`].
pub async fn unlock(
    kms: &crate::kms::Kms,
    obj: &S3ecObject,
    trust: &KmsTrust,
    expected: &Context,
) -> Result<Unlocked> {
    let env = &obj.envelope;
    check_context(env, expected)?;
    let budget = trust.max_decrypts.max(1);
    let mut auth = Vec::new();
    let mut service = Vec::new();
    let mut tried = 0usize;
    let mut found: Option<(DataKey, String)> = None;
    for key in &trust.keys {
        if tried >= budget {
            break;
        }
        tried += 1;
        match kms
            .decrypt_foreign(&env.encrypted_data_key, &env.kms_context, Some(key))
            .await
        {
            Ok(got) => {
                found = Some(got);
                break;
            }
            Err(e) => push_failure(&mut auth, &mut service, key, e),
        }
    }
    if found.is_none() && !trust.discovery_accounts.is_empty() && tried < budget {
        tried += 1;
        match kms
            .decrypt_foreign(&env.encrypted_data_key, &env.kms_context, None)
            .await
        {
            Ok((dek, arn)) => {
                let account = crate::kms::account_of(&arn);
                if account
                    .as_ref()
                    .is_some_and(|a| trust.discovery_accounts.contains(a))
                {
                    found = Some((dek, arn));
                } else {
                    // `dek` is dropped (and wiped) here, unused.
                    auth.push(StanzaFailure {
                        provider: crate::kms::PROVIDER_ID.into(),
                        key_id: arn.clone(),
                        reason: format!(
                            "the data key is wrapped by {arn}, whose account is not allowed for discovery ({})",
                            trust.discovery_accounts.join(", ")
                        ),
                    });
                }
            }
            Err(e) => push_failure(&mut auth, &mut service, "discovery", e),
        }
    }
    let Some((dek, kms_key)) = found else {
        if tried == 0 {
            return Err(Error::NoMatchingKey {
                stanzas: vec![format!(
                    "{}:(not recorded in S3 Encryption Client metadata)",
                    crate::kms::PROVIDER_ID
                )],
                offered: vec![],
            });
        }
        return Err(if service.is_empty() {
            Error::UnwrapFailed(auth)
        } else {
            service.extend(auth);
            Error::KeyServiceStanzas(service)
        });
    };
    let key = content::content_key(env, &dek).map_err(|e| match e {
        Error::CommitmentMismatch => obj.foreign(
            "the key commitment (x-amz-d) does not match the data key and message id (x-amz-i): the metadata was modified or belongs to another object",
        ),
        e => e,
    })?;
    Ok(Unlocked { key, kms_key })
}

fn push_failure(
    auth: &mut Vec<StanzaFailure>,
    service: &mut Vec<StanzaFailure>,
    key: &str,
    e: Error,
) {
    let failure = |reason: String| StanzaFailure {
        provider: crate::kms::PROVIDER_ID.into(),
        key_id: key.to_string(),
        reason,
    };
    match e {
        Error::UnwrapFailed(fs) => auth.extend(fs.into_iter().map(|f| failure(f.reason))),
        e if e.is_key_service() => service.push(failure(e.to_string())),
        e => auth.push(failure(e.to_string())),
    }
}

/// What the first pass of a two-pass read proved: the hash of every window of ciphertext
/// whose whole the GCM tag authenticated.
#[derive(Debug, Clone)]
pub struct Verified {
    windows: Vec<[u8; 32]>,
    /// The authenticated plaintext length.
    pub plaintext_len: u64,
    etag: Option<String>,
}

/// How the plaintext reader releases what it decrypts.
enum Gate {
    /// As decrypted (unauthenticated until the end): staging and migration only.
    Open,
    /// Nothing released; record a hash per window.
    Record(Vec<[u8; 32]>),
    /// Released per window, after its hash matches the first pass's.
    Replay {
        expected: Vec<[u8; 32]>,
        next: usize,
    },
}

/// The plaintext of an S3EC body as an `AsyncRead`: never reaches end-of-file unless the
/// tag verified; any failure is an `io::Error` carrying the typed [`Error`].
struct PlainReader {
    src: RangedReader,
    dec: Option<BodyDecryptor>,
    object: String,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    pos: usize,
    gate: Gate,
    hasher: Sha256,
    in_window: usize,
    held: Vec<u8>,
    eof: bool,
    failed: bool,
    plaintext: u64,
}

impl PlainReader {
    fn new(s3: &S3, obj: &S3ecObject, unlocked: &Unlocked, gate: Gate) -> Result<PlainReader> {
        let len = obj.head.content_length;
        let dec =
            BodyDecryptor::new(&obj.envelope, &unlocked.key, len).map_err(|e| obj.foreign(e))?;
        let src = RangedReader::new(
            s3,
            &obj.url,
            obj.pin(),
            0,
            len,
            s3.settings.part_size,
            s3.settings.concurrency,
        );
        Ok(PlainReader {
            src,
            dec: Some(dec),
            object: obj.url.to_string(),
            inbuf: vec![0; FEED],
            out: Vec::new(),
            pos: 0,
            gate,
            hasher: Sha256::new(),
            in_window: 0,
            held: Vec::new(),
            eof: false,
            failed: false,
            plaintext: 0,
        })
    }

    fn body_error(&self, e: BodyError) -> Error {
        Error::ForeignObject {
            object: self.object.clone(),
            reason: e.to_string(),
        }
    }

    /// Feeds `n` bytes of `inbuf`, window by window.
    fn feed(&mut self, n: usize) -> Result<()> {
        let mut off = 0;
        while off < n {
            let take = (n - off).min(VERIFY_WINDOW - self.in_window);
            let piece = off..off + take;
            let dec = self
                .dec
                .as_mut()
                .ok_or_else(|| Error::storage("S3EC reader used after its end"))?;
            let pt = dec
                .update(&self.inbuf[piece.clone()])
                .map_err(|e| Error::ForeignObject {
                    object: self.object.clone(),
                    reason: e.to_string(),
                })?;
            if !matches!(self.gate, Gate::Open) {
                self.hasher.update(&self.inbuf[piece]);
            }
            self.in_window += take;
            self.plaintext += pt.len() as u64;
            match &self.gate {
                Gate::Open => self.out.extend_from_slice(&pt),
                Gate::Record(_) => {}
                Gate::Replay { .. } => self.held.extend_from_slice(&pt),
            }
            if self.in_window == VERIFY_WINDOW {
                self.close_window()?;
            }
            off += take;
        }
        Ok(())
    }

    /// A window is complete: record its hash, or check it and release what is held.
    fn close_window(&mut self) -> Result<()> {
        self.in_window = 0;
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        match &mut self.gate {
            Gate::Open => {}
            Gate::Record(w) => w.push(digest),
            Gate::Replay { expected, next } => {
                if expected.get(*next) != Some(&digest) {
                    return Err(Error::ForeignObject {
                        object: self.object.clone(),
                        reason: format!(
                            "the second read returned other bytes than the verified first one (window {next}); the object changed although its ETag did not"
                        ),
                    });
                }
                *next += 1;
                self.out.append(&mut self.held);
            }
        }
        Ok(())
    }

    /// End of the body: check length and tag, then release the rest.
    fn finish(&mut self) -> Result<()> {
        let dec = self
            .dec
            .take()
            .ok_or_else(|| Error::storage("S3EC reader finished twice"))?;
        let last = dec.finish().map_err(|e| self.body_error(e))?;
        self.plaintext += last.len() as u64;
        match &self.gate {
            Gate::Open => self.out.extend_from_slice(&last),
            Gate::Record(_) => {}
            Gate::Replay { .. } => self.held.extend_from_slice(&last),
        }
        if self.in_window > 0 {
            self.close_window()?;
        } else if let Gate::Replay { .. } = self.gate {
            self.out.append(&mut self.held);
        }
        if let Gate::Replay { expected, next } = &self.gate
            && *next != expected.len()
        {
            return Err(Error::ForeignObject {
                object: self.object.clone(),
                reason: "the second read was shorter than the verified first one".into(),
            });
        }
        self.eof = true;
        Ok(())
    }
}

impl AsyncRead for PlainReader {
    fn poll_read(
        self: StdPin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.out.len() {
                let n = buf.remaining().min(this.out.len() - this.pos);
                buf.put_slice(&this.out[this.pos..this.pos + n]);
                this.pos += n;
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if this.failed {
                return Poll::Ready(Err(std::io::Error::other(
                    "the S3 Encryption Client body failed earlier",
                )));
            }
            this.out.clear();
            this.pos = 0;
            let mut rb = ReadBuf::new(&mut this.inbuf);
            let polled = ready!(StdPin::new(&mut this.src).poll_read(cx, &mut rb));
            let n = rb.filled().len();
            let step = match polled {
                Err(e) => Err(io_error("reading the S3 Encryption Client body", e)),
                Ok(()) if n == 0 => this.finish(),
                Ok(()) => this.feed(n),
            };
            if let Err(e) = step {
                this.failed = true;
                return Poll::Ready(Err(std::io::Error::other(e)));
            }
        }
    }
}

async fn drain<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: Option<&mut W>,
) -> Result<u64> {
    let mut buf = vec![0u8; FEED];
    let mut total = 0u64;
    let mut w = w;
    loop {
        let n = tokio::io::AsyncReadExt::read(r, &mut buf)
            .await
            .map_err(|e| io_error("reading the S3 Encryption Client body", e))?;
        if n == 0 {
            break;
        }
        if let Some(w) = w.as_mut() {
            w.write_all(&buf[..n])
                .await
                .map_err(|e| io_error("writing output", e))?;
        }
        total += n as u64;
    }
    if let Some(w) = w.as_mut() {
        w.flush().await.map_err(|e| io_error("writing output", e))?;
    }
    Ok(total)
}

/// How a migration writes its sealstream object.
pub struct MigrateOptions<'a> {
    /// Engine options of the sealing (threads or pool).
    pub engine: &'a EngineOptions<'a>,
}

impl S3 {
    /// Looks at `url` as an S3EC object: HEAD, and the instruction file (`KEY.instruction`)
    /// when the metadata needs it or has no S3EC names at all. `Ok(None)`: not an S3EC
    /// object. A refused mode is [`Error::Unsupported`]; malformed metadata
    /// [`Error::ForeignObject`].
    pub async fn s3ec_open(&self, url: &S3Url) -> Result<Option<S3ecObject>> {
        url.require_object()?;
        let head = self.head(url).await?.ok_or_else(|| not_found(url))?;
        self.s3ec_from_head(url, head).await
    }

    /// [`S3::s3ec_open`] with a HEAD already made.
    pub async fn s3ec_from_head(&self, url: &S3Url, head: Head) -> Result<Option<S3ecObject>> {
        let place = metadata::placement(&head.metadata);
        let instruction = match place {
            Placement::Object => None,
            Placement::Absent | Placement::InstructionFile => {
                let iurl = url.with_key(format!("{}{}", url.key, metadata::INSTRUCTION_SUFFIX));
                let got = self
                    .get_small_tagged(&iurl, metadata::MAX_INSTRUCTION_FILE)
                    .await
                    .map_err(|e| match e {
                        Error::ObjectMetadata { reason, .. } => Error::ForeignObject {
                            object: url.to_string(),
                            reason: format!("instruction file {iurl}: {reason}"),
                        },
                        e => e,
                    })?;
                match got {
                    Some((bytes, etag)) => Some((iurl.key.clone(), bytes, etag)),
                    None if place == Placement::Absent => return Ok(None),
                    None => {
                        return Err(format_error(url, FormatError::NeedsInstructionFile));
                    }
                }
            }
        };
        let envelope = metadata::parse(
            &head.metadata,
            instruction.as_ref().map(|(_, b, _)| b.as_slice()),
        )
        .map_err(|e| format_error(url, e))?;
        if let Err(e) = content::check_body_len(head.content_length) {
            return Err(Error::ForeignObject {
                object: url.to_string(),
                reason: e.to_string(),
            });
        }
        Ok(Some(S3ecObject {
            url: url.clone(),
            head,
            envelope,
            instruction: instruction.map(|(k, _, e)| (k, e)),
        }))
    }

    /// Decrypts the body into `staging`, which **receives unauthenticated plaintext** until
    /// this returns `Ok` (then all of it is authentic). Only for a destination nobody reads
    /// before that and that is discarded on `Err`: a temporary file renamed afterwards.
    /// One download, pinned to the object's ETag and version; memory bounded by the
    /// transfer's segments. Returns the plaintext length.
    pub async fn s3ec_get_staged<W: AsyncWrite + Unpin>(
        &self,
        obj: &S3ecObject,
        unlocked: &Unlocked,
        staging: &mut W,
    ) -> Result<u64> {
        let mut r = PlainReader::new(self, obj, unlocked, Gate::Open)?;
        drain(&mut r, Some(staging)).await
    }

    /// First pass of a streamed read: downloads and authenticates the whole body, keeping
    /// only a SHA-256 per [`VERIFY_WINDOW`] of ciphertext (no plaintext).
    pub async fn s3ec_verify(&self, obj: &S3ecObject, unlocked: &Unlocked) -> Result<Verified> {
        let mut r = PlainReader::new(self, obj, unlocked, Gate::Record(Vec::new()))?;
        drain::<_, tokio::io::Sink>(&mut r, None).await?;
        let Gate::Record(windows) = std::mem::replace(&mut r.gate, Gate::Open) else {
            return Err(Error::storage("S3EC verify pass lost its record"));
        };
        Ok(Verified {
            windows,
            plaintext_len: r.plaintext,
            etag: obj.head.etag.clone(),
        })
    }

    /// Second pass: downloads the body again (same ETag and version as the first) and
    /// writes each window's plaintext to `output` only after its ciphertext hashed as in
    /// the verified pass. Nothing unauthenticated reaches `output`; if the bytes differ, the
    /// output holds a verified prefix and the call fails.
    pub async fn s3ec_get_verified<W: AsyncWrite + Unpin>(
        &self,
        obj: &S3ecObject,
        unlocked: &Unlocked,
        verified: &Verified,
        output: &mut W,
    ) -> Result<u64> {
        if verified.etag != obj.head.etag {
            return Err(Error::InvalidArgument(format!(
                "the Verified given for {} comes from another version of the object",
                obj.url
            )));
        }
        let gate = Gate::Replay {
            expected: verified.windows.clone(),
            next: 0,
        };
        let mut r = PlainReader::new(self, obj, unlocked, gate)?;
        drain(&mut r, Some(output)).await
    }

    /// Re-encrypts an S3EC object in place into sealstream's object form with one read:
    /// the new object is sealed by `sealing`, keeps the Content-Type, the user metadata
    /// (without the S3EC's names) and the tags, and is stored only if the S3EC object is
    /// still the version read (`If-Match` on its ETag; S3 answers 412 otherwise, and
    /// nothing changes). Its upload completes only after the S3EC tag verified; on any
    /// failure the upload is aborted and the S3EC object stays as it was. The instruction
    /// file, if any, is deleted afterwards (only if unchanged since read).
    pub async fn s3ec_migrate(
        &self,
        obj: &S3ecObject,
        unlocked: &Unlocked,
        sealing: Sealing,
        opts: &MigrateOptions<'_>,
    ) -> Result<PutReport> {
        let etag = obj.head.etag.clone().ok_or_else(|| {
            Error::storage(format!(
                "{}: the service gave no ETag, so the object cannot be replaced conditionally",
                obj.url
            ))
        })?;
        let tags = self
            .object_tagging(&obj.url, obj.head.version_id.clone())
            .await?;
        let metadata: BTreeMap<String, String> = obj
            .head
            .metadata
            .iter()
            .filter(|(k, _)| !metadata::is_s3ec_key(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let replace = Replacing {
            if_match: etag,
            content_type: obj.head.content_type.clone(),
            metadata,
            tagging: tags,
        };
        let job = PutJob {
            force: true,
            replace: Some(&replace),
            plaintext_len: Some(obj.plaintext_len()),
            engine: opts.engine,
            progress: None,
            attributes: &ObjectAttributes::default(),
        };
        let reader = PlainReader::new(self, obj, unlocked, Gate::Open)?;
        let report = self.put_with(&obj.url, reader, sealing, &job, None).await?;
        if let Some((key, etag)) = &obj.instruction {
            let iurl = obj.url.with_key(key.clone());
            let r = self
                .client
                .delete_object()
                .bucket(&iurl.bucket)
                .key(&iurl.key)
                .set_if_match(etag.clone())
                .send()
                .await;
            if let Err(e) = r {
                return Err(sdk_error(&self.endpoint, &iurl, "DeleteObject", e));
            }
        }
        Ok(report)
    }
}

/// The blocking layer: the same calls for the CLI and synchronous programs, S3 on the
/// [`super::blocking::S3`]'s runtime and KMS on the [`crate::kms::blocking::Kms`]'s.
pub mod blocking {
    use std::io::Write;

    use super::{KmsTrust, MigrateOptions, S3ecObject, Unlocked, Verified};
    use crate::envelope::Sealing;
    use crate::error::Result;
    use crate::format::Context;
    use crate::s3::blocking::{S3, SyncIo};
    use crate::s3::{PutReport, S3Url};

    /// [`super::S3::s3ec_open`].
    pub fn open(s3: &S3, url: &S3Url) -> Result<Option<S3ecObject>> {
        s3.block_on(s3.as_async().s3ec_open(url))
    }

    /// [`super::S3::s3ec_from_head`].
    pub fn from_head(s3: &S3, url: &S3Url, head: crate::s3::Head) -> Result<Option<S3ecObject>> {
        s3.block_on(s3.as_async().s3ec_from_head(url, head))
    }

    /// [`super::unlock`] on the KMS handle's runtime.
    pub fn unlock(
        kms: &crate::kms::blocking::Kms,
        obj: &S3ecObject,
        trust: &KmsTrust,
        expected: &Context,
    ) -> Result<Unlocked> {
        kms.block_on(super::unlock(kms.as_async(), obj, trust, expected))
    }

    /// [`super::S3::s3ec_get_staged`]: `staging` receives unauthenticated plaintext until
    /// this returns `Ok`.
    pub fn get_staged<W: Write>(
        s3: &S3,
        obj: &S3ecObject,
        unlocked: &Unlocked,
        staging: W,
    ) -> Result<u64> {
        let mut w = SyncIo(staging);
        s3.block_on(s3.as_async().s3ec_get_staged(obj, unlocked, &mut w))
    }

    /// [`super::S3::s3ec_verify`].
    pub fn verify(s3: &S3, obj: &S3ecObject, unlocked: &Unlocked) -> Result<Verified> {
        s3.block_on(s3.as_async().s3ec_verify(obj, unlocked))
    }

    /// [`super::S3::s3ec_get_verified`].
    pub fn get_verified<W: Write>(
        s3: &S3,
        obj: &S3ecObject,
        unlocked: &Unlocked,
        verified: &Verified,
        output: W,
    ) -> Result<u64> {
        let mut w = SyncIo(output);
        s3.block_on(
            s3.as_async()
                .s3ec_get_verified(obj, unlocked, verified, &mut w),
        )
    }

    /// [`super::S3::s3ec_migrate`].
    pub fn migrate(
        s3: &S3,
        obj: &S3ecObject,
        unlocked: &Unlocked,
        sealing: Sealing,
        opts: &MigrateOptions<'_>,
    ) -> Result<PutReport> {
        s3.block_on(s3.as_async().s3ec_migrate(obj, unlocked, sealing, opts))
    }
}
