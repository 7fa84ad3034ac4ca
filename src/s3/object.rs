//! The object form: how one sealstream file is stored as an S3 object.
//!
//! A sealstream file is `header ‖ body`. On S3 the **body** (every chunk, byte for byte) is
//! the object's content, and the **header** travels beside it: base64 in the user metadata
//! when it fits S3's 2 KB metadata limit, else in a *companion object* whose name the
//! metadata gives, pinned by the header's key commitment. The wrapped keys therefore never
//! live in the body, so a metadata-only rewrap really removes a key. Converting between the
//! two forms is lossless: `file = header ‖ body`, `body = file[header_len..]`.
//!
//! This module is pure (no I/O): it builds and parses the metadata, so it can be fuzzed and
//! specified on its own (docs/FORMAT.md, "Object form on S3").

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::error::HeaderError;
use crate::format::{COMMITMENT_LEN, Header, limits};

/// Metadata key (without `x-amz-meta-`) whose presence marks a sealstream object; its value
/// is the object-form version.
pub const META_FORMAT: &str = "sealstream";
/// The only object-form version this build writes and reads.
pub const OBJECT_FORM_VERSION: &str = "1";
/// Metadata key holding the whole header, base64 (RFC 4648, padded), when it fits.
pub const META_HEADER: &str = "sealstream-header";
/// Object-form version of a part-wise object (FORMAT.md §17.4): the header placed as in
/// version 1, the body made of independently sealed parts listed by a manifest object.
pub const OBJECT_FORM_PART_WISE: &str = "2";
/// Metadata entry naming a part-wise object's manifest object (FORMAT.md §17.4).
pub const META_PARTS: &str = "sealstream-parts";
/// Metadata key naming the companion object (same bucket) that holds the header.
pub const META_COMPANION: &str = "sealstream-companion";
/// Metadata key holding the header's key commitment (base64) in the companion form, so a
/// stale or swapped companion is recognised before any key is used.
pub const META_COMMITMENT: &str = "sealstream-commitment";
/// The prefix S3 puts before user-metadata names on the wire; counted in the size limit.
pub const WIRE_PREFIX: &str = "x-amz-meta-";
/// S3's limit on user metadata: the UTF-8 bytes of every name (counted here with its
/// `x-amz-meta-` prefix, to stay on the safe side) and value.
pub const MAX_USER_METADATA: usize = 2048;
/// Companion objects are named `<object key><COMPANION_INFIX><16 hex digits>`.
pub const COMPANION_INFIX: &str = ".sealstream-header-";
/// S3's limit on an object key, in UTF-8 bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// The largest base64 text that can hold a header of [`limits::MAX_HEADER_LEN`] bytes.
pub const MAX_HEADER_B64_LEN: usize = (limits::MAX_HEADER_LEN as usize).div_ceil(3) * 4;

/// Where an object's header is: in its metadata, in a companion object, or (found by
/// `S3::open_object`, never by [`locate`]) at the start of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderLocation {
    /// The header bytes, decoded from [`META_HEADER`].
    Inline(Vec<u8>),
    /// A companion object in the same bucket, and the commitment its header must carry.
    Companion {
        /// The companion object's key.
        key: String,
        /// The key commitment pinned in the metadata.
        commitment: [u8; COMMITMENT_LEN],
    },
    /// No sealstream metadata, but the body starts with a header: a whole sealstream file
    /// stored as the object by another tool (`aws s3 cp x.seal s3://…`). The chunks follow
    /// the header in the body, and the header is authenticated as a file's is.
    Body,
}

/// True if `name` (lowercase, without `x-amz-meta-`) is one of ours: such entries are
/// replaced on rewrap, every other user-metadata entry is preserved.
pub fn is_sealstream_key(name: &str) -> bool {
    name == META_FORMAT || name.starts_with("sealstream-")
}

/// Bytes that `pairs` count against [`MAX_USER_METADATA`].
pub fn metadata_size<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> usize {
    pairs
        .into_iter()
        .map(|(k, v)| WIRE_PREFIX.len() + k.len() + v.len())
        .sum()
}

/// Reads the header location from an object's user metadata (names lowercase, without the
/// `x-amz-meta-` prefix, as S3 returns them). The `Err` text says what is wrong and what to
/// do; callers wrap it in [`crate::Error::ObjectMetadata`].
pub fn locate(meta: &BTreeMap<String, String>) -> Result<HeaderLocation, String> {
    let Some(version) = meta.get(META_FORMAT) else {
        return Err(format!(
            "the object has no '{WIRE_PREFIX}{META_FORMAT}' metadata: either it is not a \
             sealstream object, or its metadata was lost (e.g. copied by a tool that drops \
             user metadata). The body alone cannot be decrypted; if you kept its header \
             (`sealstream inspect --export-header`), download the body and run \
             `sealstream decrypt BODY --header-from HEADER`"
        ));
    };
    if version != OBJECT_FORM_VERSION {
        return Err(format!(
            "object-form version '{}' is not supported (this build reads version \
             {OBJECT_FORM_VERSION}); upgrade sealstream",
            printable(version)
        ));
    }
    match (meta.get(META_HEADER), meta.get(META_COMPANION)) {
        (Some(_), Some(_)) => Err(format!(
            "both '{META_HEADER}' and '{META_COMPANION}' are set; the metadata was tampered with"
        )),
        (None, None) => Err(format!(
            "neither '{META_HEADER}' nor '{META_COMPANION}' is set: the header is missing \
             (metadata tampered with or truncated)"
        )),
        (Some(b64), None) => {
            if b64.len() > MAX_HEADER_B64_LEN {
                return Err(format!(
                    "'{META_HEADER}' is {} bytes, more than any valid header",
                    b64.len()
                ));
            }
            // Exactly the canonical encoding (FORMAT.md §15.1): no whitespace anywhere.
            let bytes = B64
                .decode(b64)
                .map_err(|_| format!("'{META_HEADER}' is not valid base64 (tampered with)"))?;
            Ok(HeaderLocation::Inline(bytes))
        }
        (None, Some(key)) => {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(format!(
                    "'{META_COMPANION}' is not a valid object key ({} bytes)",
                    key.len()
                ));
            }
            let c = meta.get(META_COMMITMENT).ok_or_else(|| {
                format!(
                    "'{META_COMPANION}' is set but '{META_COMMITMENT}' is missing (tampered with)"
                )
            })?;
            let raw = if c.len() <= 64 {
                B64.decode(c).ok()
            } else {
                None
            };
            let commitment: [u8; COMMITMENT_LEN] =
                raw.and_then(|v| v.try_into().ok()).ok_or_else(|| {
                    format!("'{META_COMMITMENT}' is not 32 bytes of base64 (tampered with)")
                })?;
            Ok(HeaderLocation::Companion {
                key: key.clone(),
                commitment,
            })
        }
    }
}

/// Parses bytes that must be exactly one header with nothing after it (FORMAT.md §15.2):
/// the one rule for inline metadata, companion objects and `decrypt --header-from`, so no
/// stored header can carry bytes that a reader silently ignores.
pub fn parse_exact(bytes: &[u8]) -> Result<Header, HeaderError> {
    let (header, len) = Header::parse(bytes)?;
    if len != bytes.len() {
        return Err(HeaderError::TrailingBytes {
            header_len: len as u64,
            given: bytes.len() as u64,
        });
    }
    Ok(header)
}

/// Parses header bytes from either location: they must be exactly one valid header, and a
/// companion's header must carry the commitment pinned in the metadata.
pub fn parse_header(bytes: &[u8], pinned: Option<&[u8; COMMITMENT_LEN]>) -> Result<Header, String> {
    let header = parse_exact(bytes).map_err(|e| format!("invalid header: {e}"))?;
    if let Some(c) = pinned
        && &header.commitment != c
    {
        return Err(
            "the companion object's header does not belong to this object (its key \
                 commitment differs from the one in the metadata): it is stale or was swapped"
                .into(),
        );
    }
    Ok(header)
}

/// The sealstream metadata for a header, and the companion object to write if it does not
/// fit beside `other_bytes` of other user metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Entries to set (names without `x-amz-meta-`).
    pub metadata: Vec<(String, String)>,
    /// `(companion key, header bytes)` when the header goes to a companion object.
    pub companion: Option<(String, Vec<u8>)>,
}

/// Decides where a header goes: inline if the whole user metadata (ours plus
/// `other_bytes`) stays within [`MAX_USER_METADATA`], else a companion object named with
/// `unique` (16 hex digits, fresh per write so an old companion is never overwritten in place).
pub fn place(
    header_bytes: &[u8],
    commitment: &[u8; COMMITMENT_LEN],
    object_key: &str,
    other_bytes: usize,
    unique: u64,
) -> Result<Placement, String> {
    let b64 = B64.encode(header_bytes);
    let inline = vec![
        (META_FORMAT.to_string(), OBJECT_FORM_VERSION.to_string()),
        (META_HEADER.to_string(), b64),
    ];
    let size = metadata_size(inline.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if other_bytes + size <= MAX_USER_METADATA {
        return Ok(Placement {
            metadata: inline,
            companion: None,
        });
    }
    let companion = companion_key(object_key, unique)?;
    let metadata = vec![
        (META_FORMAT.to_string(), OBJECT_FORM_VERSION.to_string()),
        (META_COMPANION.to_string(), companion.clone()),
        (META_COMMITMENT.to_string(), B64.encode(commitment)),
    ];
    let size = metadata_size(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if other_bytes + size > MAX_USER_METADATA {
        return Err(format!(
            "the object's other user metadata ({other_bytes} bytes) leaves no room for \
             sealstream's {size} bytes within S3's {MAX_USER_METADATA}-byte limit"
        ));
    }
    Ok(Placement {
        metadata,
        companion: Some((companion, header_bytes.to_vec())),
    })
}

/// The companion object key for `object_key`.
pub fn companion_key(object_key: &str, unique: u64) -> Result<String, String> {
    let k = format!("{object_key}{COMPANION_INFIX}{unique:016x}");
    if k.len() > MAX_KEY_LEN {
        return Err(format!(
            "the header does not fit in S3 metadata and the object key is too long for a \
             companion object ({} bytes > {MAX_KEY_LEN}); use a shorter key, fewer wrapping \
             keys or a smaller context",
            k.len()
        ));
    }
    Ok(k)
}

/// True if `companion` is named exactly as a writer names a companion of `object_key`
/// (`<object_key>.sealstream-header-<16 lowercase hex digits>`). Writers delete an old
/// companion only when this holds, so metadata naming some other object (planted, or kept
/// by a copy to another key) can never make sealstream delete that object.
pub fn companion_belongs_to(object_key: &str, companion: &str) -> bool {
    companion
        .strip_prefix(object_key)
        .and_then(|rest| rest.strip_prefix(COMPANION_INFIX))
        .is_some_and(|tail| {
            tail.len() == 16
                && tail
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// True if `meta` is valid object-form metadata whose header is in the companion `key`
/// (a writer keeps a companion it wrote while the current metadata still names it).
pub fn names_companion(meta: &BTreeMap<String, String>, key: &str) -> bool {
    matches!(locate(meta), Ok(HeaderLocation::Companion { key: k, .. }) if k == key)
}

/// A companion that a writer replacing or rewrapping `object_key` may delete, according to
/// the object's old metadata: `Ok(None)` when the metadata names no companion, `Ok(Some((key,
/// pinned commitment)))` for a candidate (whose content the caller must still check against
/// the commitment), `Err(reason)` when a companion is named but must be left alone.
pub fn companion_to_clean(
    object_key: &str,
    meta: &BTreeMap<String, String>,
) -> Result<Option<(String, [u8; COMMITMENT_LEN])>, String> {
    let Some(named) = meta.get(META_COMPANION) else {
        return Ok(None);
    };
    let shown: String = named
        .chars()
        .take(200)
        .filter(|c| !c.is_control())
        .collect();
    match locate(meta) {
        Ok(HeaderLocation::Companion { key, commitment }) => {
            if companion_belongs_to(object_key, &key) {
                Ok(Some((key, commitment)))
            } else {
                Err(format!(
                    "the old metadata names '{shown}' as its header object, which is not named \
                     after this object (expected '{object_key}{COMPANION_INFIX}<16 hex digits>'); \
                     it may belong to another object, so it was left alone"
                ))
            }
        }
        Ok(HeaderLocation::Inline(_) | HeaderLocation::Body) => Ok(None),
        Err(e) => Err(format!(
            "the old metadata names '{shown}' as its header object but is not valid ({e}); \
             it was left alone"
        )),
    }
}

/// True for keys that name a companion object (batch listings skip them).
pub fn is_companion_key(key: &str) -> bool {
    key.rfind(COMPANION_INFIX).is_some_and(|i| {
        let tail = &key[i + COMPANION_INFIX.len()..];
        tail.len() == 16 && tail.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn printable(s: &str) -> String {
    s.chars().take(32).filter(|c| !c.is_control()).collect()
}

/// What [`part_wise`] finds: the manifest object's key and the metadata in version-1 form.
pub type PartWise = (String, BTreeMap<String, String>);

/// For object-form version 2 (FORMAT.md §17.4): the manifest object's key, and the
/// metadata as [`locate`] reads it (the header is placed exactly as in version 1, so only
/// the version entry differs). `None` for any other metadata, which [`locate`] judges.
pub fn part_wise(meta: &BTreeMap<String, String>) -> Result<Option<PartWise>, String> {
    if meta.get(META_FORMAT).map(String::as_str) != Some(OBJECT_FORM_PART_WISE) {
        return Ok(None);
    }
    let name = meta.get(META_PARTS).ok_or_else(|| {
        format!("object-form version 2 without '{META_PARTS}': the metadata was tampered with")
    })?;
    if name.is_empty() || name.len() > MAX_KEY_LEN {
        return Err(format!("'{META_PARTS}' is not an object key"));
    }
    let mut v1 = meta.clone();
    v1.insert(META_FORMAT.to_string(), OBJECT_FORM_VERSION.to_string());
    Ok(Some((name.clone(), v1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_marker_explains_lost_metadata() {
        let e = locate(&meta(&[("other", "x")])).unwrap_err();
        assert!(e.contains("metadata was lost"), "{e}");
    }

    #[test]
    fn inline_and_companion_round_trip() {
        let hdr = vec![7u8; 300];
        let p = place(&hdr, &[1; 32], "a/b", 0, 42).unwrap();
        assert!(p.companion.is_none());
        let m: BTreeMap<_, _> = p.metadata.into_iter().collect();
        assert_eq!(locate(&m).unwrap(), HeaderLocation::Inline(hdr.clone()));

        let big = vec![7u8; 2000];
        let p = place(&big, &[1; 32], "a/b", 0, 42).unwrap();
        let (ck, bytes) = p.companion.clone().unwrap();
        assert_eq!(ck, "a/b.sealstream-header-000000000000002a");
        assert!(is_companion_key(&ck));
        assert_eq!(bytes, big);
        let m: BTreeMap<_, _> = p.metadata.into_iter().collect();
        assert_eq!(
            locate(&m).unwrap(),
            HeaderLocation::Companion {
                key: ck,
                commitment: [1; 32]
            }
        );
    }

    #[test]
    fn other_metadata_pushes_the_header_out() {
        let hdr = vec![7u8; 300];
        assert!(
            place(&hdr, &[1; 32], "k", 1700, 1)
                .unwrap()
                .companion
                .is_some()
        );
        assert!(place(&hdr, &[1; 32], "k", 2040, 1).is_err());
    }

    #[test]
    fn tampered_metadata_is_rejected() {
        for m in [
            meta(&[("sealstream", "2"), ("sealstream-header", "AAAA")]),
            meta(&[("sealstream", "1")]),
            meta(&[("sealstream", "1"), ("sealstream-header", "!!")]),
            meta(&[
                ("sealstream", "1"),
                ("sealstream-header", "AAAA"),
                ("sealstream-companion", "x"),
            ]),
            meta(&[("sealstream", "1"), ("sealstream-companion", "x")]),
            meta(&[
                ("sealstream", "1"),
                ("sealstream-companion", "x"),
                ("sealstream-commitment", "AAAA"),
            ]),
        ] {
            assert!(locate(&m).is_err(), "{m:?}");
        }
    }

    #[test]
    fn only_companions_named_after_the_object_may_be_cleaned() {
        let c = companion_key("a/b", 0xfeed).unwrap();
        assert!(companion_belongs_to("a/b", &c));
        for bad in [
            "victim",
            "a/b",
            "a/b.sealstream-header-",
            "a/b.sealstream-header-000000000000FEED",
            "a/b.sealstream-header-000000000000feed0",
            "a/b.sealstream-header-000000000000fee",
            "a/bc.sealstream-header-000000000000feed",
            "x/a/b.sealstream-header-000000000000feed",
        ] {
            assert!(!companion_belongs_to("a/b", bad), "{bad}");
        }
        // A copy of a/b at another key names a/b's companion: not c's to delete.
        assert!(!companion_belongs_to("a/c", &c));

        let with = |k: &str| {
            meta(&[
                ("sealstream", "1"),
                ("sealstream-companion", k),
                ("sealstream-commitment", &B64.encode([3u8; 32])),
            ])
        };
        assert_eq!(
            companion_to_clean("a/b", &with(&c)).unwrap(),
            Some((c.clone(), [3; 32]))
        );
        assert!(companion_to_clean("a/b", &with("victim")).is_err());
        assert!(companion_to_clean("a/c", &with(&c)).is_err());
        let mut broken = with(&c);
        broken.remove("sealstream-commitment");
        assert!(companion_to_clean("a/b", &broken).is_err());
        assert_eq!(
            companion_to_clean("a/b", &meta(&[("other", "x")])).unwrap(),
            None
        );
    }

    #[test]
    fn a_companion_name_belongs_to_exactly_one_object_key() {
        let keys = [
            "a",
            "a/b",
            "a.sealstream-header-00000000000000ab",
            "a.sealstream-header-",
            "dir/",
            "ü é",
        ];
        for k in keys {
            for u in [0u64, 0xab, u64::MAX] {
                let c = companion_key(k, u).unwrap();
                for other in keys {
                    assert_eq!(companion_belongs_to(other, &c), other == k, "{other} / {c}");
                }
            }
        }
    }

    #[test]
    fn companion_key_limits() {
        assert!(companion_key(&"k".repeat(1000), 1).is_err());
        assert!(!is_companion_key("a.sealstream-header-xyz"));
        assert!(!is_companion_key("plain"));
    }

    /// FORMAT.md §15.2: a stored header is exactly one header; one byte more is refused
    /// (inline metadata, companion object and `--header-from` share `parse_exact`).
    #[test]
    fn a_stored_header_with_trailing_bytes_is_refused() {
        let k = crate::keys::local::LocalKey::from_bytes([9; 32]);
        let providers: [&dyn crate::keys::KeyProvider; 1] = [&k];
        let mut file = Vec::new();
        crate::envelope::encrypt(
            &b"x"[..],
            &mut file,
            &providers,
            &crate::envelope::EncryptParams::default(),
        )
        .expect("encrypt");
        let (header, len) = Header::parse(&file).expect("header");
        assert_eq!(parse_exact(&file[..len]).expect("exact"), header);
        assert_eq!(
            parse_exact(&file[..len + 1]),
            Err(HeaderError::TrailingBytes {
                header_len: len as u64,
                given: len as u64 + 1
            })
        );
        let e = parse_header(&file, None).expect_err("a whole file is not a header");
        assert!(e.contains("trailing bytes"), "{e}");
    }
}
