//! The library's envelope-level APIs that the CLI goes through instead of doing their work
//! itself: `envelope::Unlocked` (a sealed input whose header is in front of the body or
//! detached, decrypted whole or by range) and `rewrap::Rewrap` (a rewrap planned once:
//! keys to add and remove, KMS rotation, KMS names resolved for removal). The KMS tests
//! need the emulator and are ignored under plain `cargo test` (`--include-ignored`).

use crate::common;

use std::io::{Cursor, Read, Seek, SeekFrom};
#[cfg(feature = "kms")]
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use sealstream::engine::EngineOptions;
use sealstream::envelope::Unlocked;
use sealstream::error::RewrapRefusal;
#[cfg(feature = "kms")]
use sealstream::format::Stanza;
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::KeyProvider;
use sealstream::range::ByteRange;
use sealstream::reader::{Decryptor, StreamReader};
use sealstream::rewrap::Rewrap;
use sealstream::{Backend, Error, LocalKey};

const CHUNK: u32 = 4096;
/// Seven full chunks and a short last one.
const LEN: usize = 7 * CHUNK as usize + 1000;

/// A sealed object with its header and body apart, as an S3 object keeps them.
struct Split {
    pt: Vec<u8>,
    ct: Vec<u8>,
    header: Header,
    body: Vec<u8>,
}

fn split(k: &LocalKey, context: Context) -> Split {
    let pt = data(LEN);
    let p = sealstream::EncryptParams {
        context,
        ..params(Suite::Aes256Gcm, CHUNK)
    };
    let ct = seal_with(&pt, &[k], &p);
    let (header, hl) = Header::parse(&ct).unwrap();
    Split {
        body: ct[hl..].to_vec(),
        pt,
        ct,
        header,
    }
}

fn unlock<R: std::io::Read>(
    input: R,
    detached: Option<Header>,
    k: &LocalKey,
    expected: &Context,
) -> sealstream::Result<Unlocked<R>> {
    let keys: [&dyn KeyProvider; 1] = [k];
    Unlocked::new(input, detached, &keys, expected, Backend::default())
}

fn whole<R: std::io::Read + Send>(u: Unlocked<R>) -> (sealstream::Result<u64>, Vec<u8>) {
    let mut out = Vec::new();
    let r = u
        .decrypt(&mut out, &EngineOptions::default())
        .map(|s| s.plaintext_bytes);
    (r, out)
}

fn ranged<R: std::io::Read + std::io::Seek + Send>(
    u: Unlocked<R>,
    range: ByteRange,
) -> (sealstream::Result<u64>, Vec<u8>) {
    let mut out = Vec::new();
    let r = u
        .decrypt_range(range, &mut out, &EngineOptions::default())
        .map(|s| s.plaintext_bytes);
    (r, out)
}

/// The ranges every form must serve, with the plaintext slice each selects.
fn ranges(len: usize) -> Vec<(ByteRange, std::ops::Range<usize>)> {
    let l = len as u64;
    vec![
        (ByteRange::Inclusive(0, 9), 0..10),
        (ByteRange::Inclusive(4090, 4100), 4090..4101),
        (ByteRange::Inclusive(5000, l + 100), 5000..len),
        (ByteRange::From(l - 3), len - 3..len),
        (ByteRange::Suffix(1500), len - 1500..len),
    ]
}

// ---- envelope::Unlocked ----

#[test]
fn detached_header_decrypts_whole_and_by_range_like_the_file_form() {
    let k = key(1);
    let s = split(&k, Context::new());
    let none = Context::new();

    let u = unlock(Cursor::new(&s.body), Some(s.header.clone()), &k, &none).unwrap();
    assert_eq!(u.header(), &s.header);
    let layout = u.layout(s.body.len() as u64).unwrap();
    assert_eq!(
        (layout.header_len, layout.plaintext_len),
        (0, LEN as u64),
        "a detached header: the body starts the input"
    );
    let (r, out) = whole(u);
    assert_eq!(r.unwrap(), LEN as u64);
    assert!(out == s.pt);

    // The file form through the same API: the header is read from the input.
    let u = unlock(Cursor::new(&s.ct), None, &k, &none).unwrap();
    let layout = u.layout(s.ct.len() as u64).unwrap();
    assert_eq!(layout.header_len, header_len(&s.ct) as u64);
    assert_eq!(layout.plaintext_len, LEN as u64);
    let (r, out) = whole(u);
    assert_eq!(r.unwrap(), LEN as u64);
    assert!(out == s.pt);

    for (range, want) in ranges(LEN) {
        let u = unlock(Cursor::new(&s.body), Some(s.header.clone()), &k, &none).unwrap();
        let (r, out) = ranged(u, range);
        assert_eq!(r.unwrap(), want.len() as u64, "{range:?}");
        assert!(out == s.pt[want.clone()], "detached {range:?}");
        let u = unlock(Cursor::new(&s.ct), None, &k, &none).unwrap();
        let (r, out) = ranged(u, range);
        assert_eq!(r.unwrap(), want.len() as u64, "{range:?}");
        assert!(out == s.pt[want], "inline {range:?}");
    }
}

/// A ranged read finds the body where the input is once the header is known: an object
/// embedded after other bytes, or a body after them, is read from there, not from 0.
#[test]
fn ranges_count_from_where_the_object_starts_in_the_input() {
    let k = key(2);
    let s = split(&k, Context::new());
    let junk = vec![0xAAu8; 777];
    for (detached, object) in [(None, &s.ct), (Some(s.header.clone()), &s.body)] {
        let mut input = Cursor::new([&junk[..], object].concat());
        input.seek(SeekFrom::Start(junk.len() as u64)).unwrap();
        let u = unlock(input, detached.clone(), &k, &Context::new()).unwrap();
        let (r, out) = ranged(u, ByteRange::Inclusive(100, 8191));
        assert_eq!(r.unwrap(), 8092, "detached: {}", detached.is_some());
        assert!(out == s.pt[100..8192]);
    }
}

#[test]
fn a_wrong_key_or_context_fails_before_any_plaintext() {
    let k = key(3);
    let ctx = Context::from_pairs([("tenant", "acme")]).unwrap();
    let s = split(&k, ctx.clone());
    // Right key, right context: fine.
    assert!(unlock(Cursor::new(&s.body), Some(s.header.clone()), &k, &ctx).is_ok());
    let cases: [(&str, LocalKey, Context); 2] = [
        ("wrong key", key(4), ctx.clone()),
        (
            "wrong context",
            key(3),
            Context::from_pairs([("tenant", "other")]).unwrap(),
        ),
    ];
    for (what, key, expected) in cases {
        for detached in [None, Some(s.header.clone())] {
            let input = if detached.is_some() { &s.body } else { &s.ct };
            let e = unlock(Cursor::new(input), detached, &key, &expected).unwrap_err();
            assert!(e.is_authentication(), "{what}: {e}");
        }
    }
    let e = unlock(Cursor::new(&s.body), Some(s.header.clone()), &key(4), &ctx).unwrap_err();
    assert!(matches!(e, Error::NoMatchingKey { .. }), "{e:?}");
}

/// The detached header is authenticated by the key commitment: a changed salt, chunk size
/// or context fails on unlock, and another object's header (same key) fails on the body.
#[test]
fn a_tampered_or_foreign_detached_header_fails() {
    let k = key(5);
    let s = split(&k, Context::from_pairs([("a", "1")]).unwrap());
    let none = Context::new();
    type Change = fn(&mut Header);
    let tampered: [(&str, Change); 3] = [
        ("salt", |h| h.salt[0] ^= 1),
        ("chunk size", |h| h.chunk_size *= 2),
        ("context", |h| {
            h.context = Context::from_pairs([("a", "2")]).unwrap();
        }),
    ];
    for (what, change) in tampered {
        let mut h = s.header.clone();
        change(&mut h);
        let e = unlock(Cursor::new(&s.body), Some(h), &k, &none).unwrap_err();
        assert!(e.is_authentication(), "{what}: {e:?}");
    }
    // Another object's header under the same key unlocks (it is a real header), but its
    // payload key does not open this body: the first chunk fails, nothing is released.
    let other = split(&k, Context::from_pairs([("a", "1")]).unwrap());
    let u = unlock(Cursor::new(&s.body), Some(other.header.clone()), &k, &none).unwrap();
    let (r, out) = whole(u);
    assert!(r.unwrap_err().is_authentication());
    assert!(out.is_empty(), "{} bytes released", out.len());
}

#[test]
fn a_tampered_or_cut_body_fails_whole_and_by_range() {
    let k = key(6);
    let s = split(&k, Context::new());
    let none = Context::new();
    // A flipped byte in chunk 3: the whole decryption fails at that chunk, and a range
    // covering it fails, while a range before it is served.
    let mut body = s.body.clone();
    body[3 * (CHUNK as usize + 16) + 10] ^= 1;
    let u = unlock(Cursor::new(&body), Some(s.header.clone()), &k, &none).unwrap();
    let (r, out) = whole(u);
    assert!(r.unwrap_err().is_authentication());
    assert!(
        out.len() <= 3 * CHUNK as usize,
        "nothing of chunk 3 or later"
    );
    let u = unlock(Cursor::new(&body), Some(s.header.clone()), &k, &none).unwrap();
    let (r, out) = ranged(
        u,
        ByteRange::Inclusive(3 * CHUNK as u64, 3 * CHUNK as u64 + 5),
    );
    assert!(r.unwrap_err().is_authentication());
    assert!(out.is_empty());
    let u = unlock(Cursor::new(&body), Some(s.header.clone()), &k, &none).unwrap();
    let (r, out) = ranged(u, ByteRange::Inclusive(0, 99));
    assert_eq!(r.unwrap(), 100);
    assert!(out == s.pt[..100]);

    // A body cut after chunk 5: whatever depends on the end fails before writing, and
    // so does the whole decryption at the (now) last chunk.
    let cut = &s.body[..6 * (CHUNK as usize + 16)];
    for range in [
        ByteRange::Suffix(10),
        ByteRange::From(100),
        ByteRange::Inclusive(0, LEN as u64),
    ] {
        let u = unlock(Cursor::new(cut), Some(s.header.clone()), &k, &none).unwrap();
        let (r, out) = ranged(u, range);
        assert!(r.unwrap_err().is_authentication(), "{range:?}");
        assert!(out.is_empty(), "{range:?}");
    }
    let u = unlock(Cursor::new(cut), Some(s.header.clone()), &k, &none).unwrap();
    let (r, _) = whole(u);
    assert!(r.unwrap_err().is_authentication());
    // An impossible length has no layout (the progress bar gets no total).
    let u = unlock(Cursor::new(cut), Some(s.header.clone()), &k, &none).unwrap();
    assert!(u.layout(5).is_err());
}

/// A whole decryption never seeks: a detached header with a body from a pipe works (the
/// CLI's `decrypt <(cat BODY) --header-from H` once failed with "Illegal seek").
#[test]
fn a_detached_header_with_an_unseekable_body_decrypts() {
    let k = key(8);
    let s = split(&k, Context::new());
    let u = unlock(&s.body[..], Some(s.header.clone()), &k, &Context::new()).unwrap();
    let (r, out) = whole(u);
    assert_eq!(r.unwrap(), LEN as u64);
    assert!(out == s.pt);
}

/// The header bytes of `s` (as `inspect --export-header` writes them).
fn header_bytes(s: &Split) -> &[u8] {
    &s.ct[..s.ct.len() - s.body.len()]
}

/// `Decryptor::with_detached_header` over `body`, unlocked with `k`.
fn detached_reader<R: Read + Seek>(
    header: &[u8],
    body: R,
    k: &LocalKey,
) -> sealstream::Result<StreamReader<R>> {
    let keys: [&dyn KeyProvider; 1] = [k];
    Decryptor::with_detached_header(header, body)?.unlock(&keys, &Context::new())
}

/// The streaming reader takes a header kept apart from its body: the same plaintext as
/// the file form, by plain reads, seeks from the end and front to back on a pipe, with
/// the body at an offset in its input too.
#[test]
fn decryptor_with_a_detached_header_reads_like_the_file_form() {
    let k = key(9);
    let s = split(&k, Context::from_pairs([("a", "1")]).unwrap());
    let hb = header_bytes(&s);
    let keys: [&dyn KeyProvider; 1] = [&k];
    let d = Decryptor::with_detached_header(hb, Cursor::new(&s.body)).unwrap();
    assert_eq!(d.header(), &s.header);
    assert_eq!(d.header_len(), hb.len() as u64);
    let mut r = d
        .unlock(&keys, &Context::from_pairs([("a", "1")]).unwrap())
        .unwrap();
    assert_eq!(r.plaintext_len().unwrap(), LEN as u64);
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert!(out == s.pt, "whole");
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert!(tail == s.pt[LEN - 10..], "tail");
    r.seek(SeekFrom::Start(5000)).unwrap();
    let mut mid = [0u8; 300];
    r.read_exact(&mut mid).unwrap();
    assert!(mid[..] == s.pt[5000..5300], "middle");

    // The body need not start its input: chunk 0 is where the input is positioned.
    let mut shifted = b"prefix".to_vec();
    shifted.extend_from_slice(&s.body);
    let mut c = Cursor::new(shifted);
    c.seek(SeekFrom::Start(6)).unwrap();
    let d = Decryptor::with_detached_header(hb, c).unwrap();
    let mut r = d
        .unlock(&keys, &Context::from_pairs([("a", "1")]).unwrap())
        .unwrap();
    r.seek(SeekFrom::End(-10)).unwrap();
    let mut tail = Vec::new();
    r.read_to_end(&mut tail).unwrap();
    assert!(tail == s.pt[LEN - 10..], "shifted tail");

    // A body that cannot seek, front to back.
    let mut r = Decryptor::with_detached_header(hb, &s.body[..])
        .unwrap()
        .unlock_sequential(&keys, &Context::from_pairs([("a", "1")]).unwrap())
        .unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).unwrap();
    assert!(out == s.pt, "sequential");

    // A stored-apart header is exactly one header: a byte more is refused.
    let mut long = hb.to_vec();
    long.push(0);
    let e = Decryptor::with_detached_header(&long, Cursor::new(&s.body)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Header(sealstream::format::HeaderError::TrailingBytes { .. })
        ),
        "{e:?}"
    );
}

/// A detached header is authenticated like an inline one: a tampered one fails on
/// unlock; another object's header (same key) unlocks but its payload key does not open
/// this body, so the first read fails and returns nothing; a tampered or cut body fails
/// where the damage is, never returning bytes of a failed chunk.
#[test]
fn decryptor_with_a_wrong_or_tampered_detached_header_or_body_fails() {
    let k = key(10);
    let s = split(&k, Context::new());
    let hb = header_bytes(&s);
    let auth = |e: &std::io::Error| {
        sealstream::writer::error_ref(e).is_some_and(|e| e.is_authentication())
    };

    let mut h = s.header.clone();
    h.salt[0] ^= 1;
    let e = detached_reader(&h.to_bytes().unwrap(), Cursor::new(&s.body), &k).unwrap_err();
    assert!(e.is_authentication(), "salt: {e:?}");

    let other = split(&k, Context::new());
    let mut r = detached_reader(header_bytes(&other), Cursor::new(&s.body), &k).unwrap();
    let mut out = Vec::new();
    let e = r.read_to_end(&mut out).unwrap_err();
    assert!(auth(&e), "{e:?}");
    assert!(out.is_empty(), "{} bytes released", out.len());

    // A flipped byte in chunk 3: chunks before it read, chunk 3 fails.
    let mut body = s.body.clone();
    body[3 * (CHUNK as usize + 16) + 10] ^= 1;
    let mut r = detached_reader(hb, Cursor::new(&body), &k).unwrap();
    let mut first = vec![0u8; 3 * CHUNK as usize];
    r.read_exact(&mut first).unwrap();
    assert!(first == s.pt[..3 * CHUNK as usize]);
    let mut more = [0u8; 10];
    let e = r.read(&mut more).unwrap_err();
    assert!(auth(&e), "{e:?}");

    // A body cut after chunk 5: the end is authenticated before it is used.
    let cut = &s.body[..6 * (CHUNK as usize + 16)];
    let mut r = detached_reader(hb, Cursor::new(cut), &k).unwrap();
    let e = r.seek(SeekFrom::End(-10)).unwrap_err();
    assert!(auth(&e), "{e:?}");
    assert!(r.plaintext_len().unwrap_err().is_authentication());
}

#[cfg(feature = "cli")]
#[test]
fn cli_header_from_reads_a_body_from_a_fifo() {
    let sc = Scratch::new();
    let k = key(9);
    let kf = sc.keyfile("k.key", &k);
    let s = split(&k, Context::new());
    write(&sc.path("h"), &s.ct[..header_len(&s.ct)]);
    let fifo = sc.path("body.fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(st.success(), "mkfifo failed");
    let writer = {
        let (fifo, body) = (fifo.clone(), s.body.clone());
        std::thread::spawn(move || {
            // Fails only if the reader went away; the exit code below says why.
            let _ = std::fs::write(&fifo, &body);
        })
    };
    let o = sc.run(&[
        "decrypt",
        fifo.to_str().unwrap(),
        "--header-from",
        "h",
        "-k",
        kf.to_str().unwrap(),
        "-o",
        "out",
    ]);
    // Had the command not opened the FIFO, the writer would wait for a reader forever:
    // open it here without blocking (O_NONBLOCK), so the join below always returns.
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(0o4000)
        .open(&fifo);
    writer.join().unwrap();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read(sc.path("out")).unwrap() == s.pt);
}

/// `envelope::decrypt` is `Unlocked` with the header in front: same plaintext, same
/// refusal of a body without its header.
#[test]
fn envelope_decrypt_is_the_inline_form() {
    let k = key(7);
    let s = split(&k, Context::new());
    assert!(open(&s.ct, &k).unwrap() == s.pt);
    let e = open(&s.body, &k).unwrap_err();
    assert!(matches!(e, Error::Header(_)), "{e:?}");
}

// ---- rewrap::Rewrap ----

fn sealed_for(keys: &[&LocalKey]) -> (Vec<u8>, Header) {
    let ct = seal_with(&data(10_000), keys, &params(Suite::Aes256Gcm, CHUNK));
    let (h, _) = Header::parse(&ct).unwrap();
    (ct, h)
}

/// Whether `h` in front of `ct`'s body decrypts with `k`.
fn opens(ct: &[u8], h: &Header, k: &LocalKey) -> bool {
    let body = &ct[header_len(ct)..];
    unlock(Cursor::new(body), Some(h.clone()), k, &Context::new())
        .map(|u| whole(u).0.is_ok())
        .unwrap_or(false)
}

fn ids(h: &Header) -> Vec<String> {
    h.stanzas
        .iter()
        .map(|s| format!("{}:{}", s.provider, s.key_id))
        .collect()
}

#[test]
fn a_plan_adds_and_removes_keys_for_every_header_it_is_applied_to() {
    let (a, b, c) = (key(11), key(12), key(13));
    let plan = Rewrap::new()
        .unlock_with(Box::new(key(11)))
        .add_key(Box::new(key(13)))
        .remove_key(b.id());
    assert!(plan.changes_keys());
    // Two objects (different data keys), rewrapped from several threads at once.
    let objects = [sealed_for(&[&a, &b]), sealed_for(&[&a, &b])];
    let new: Vec<Header> = std::thread::scope(|t| {
        let hs: Vec<_> = objects
            .iter()
            .map(|(_, h)| t.spawn(|| plan.apply(h).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for ((ct, old), new) in objects.iter().zip(&new) {
        assert_eq!(
            ids(new),
            vec![format!("local:{}", a.id()), format!("local:{}", c.id())]
        );
        assert_eq!(
            (new.salt, new.commitment, new.chunk_size),
            (old.salt, old.commitment, old.chunk_size),
            "the body's keys are unchanged"
        );
        assert!(opens(ct, new, &a) && opens(ct, new, &c));
        assert!(!opens(ct, new, &b), "the removed key no longer opens it");
    }
    // `provider:key_id` names a stanza too. Removing the one stanza the keys at hand
    // open is refused (the one left might not open); with the key of the one left, done.
    let plan = |unlock: u8| {
        Rewrap::new()
            .unlock_with(Box::new(key(unlock)))
            .remove_key(format!("local:{}", a.id()))
    };
    match plan(11).apply(&objects[0].1) {
        Err(Error::RewrapRefused(RewrapRefusal::WouldLockOut { added: None })) => {}
        other => panic!("{other:?}"),
    }
    let h = plan(12).apply(&objects[0].1).unwrap();
    assert_eq!(ids(&h), vec![format!("local:{}", b.id())]);
}

#[test]
fn an_empty_plan_changes_nothing_and_refusals_are_typed() {
    let (a, b) = (key(21), key(22));
    let (_, h) = sealed_for(&[&a]);
    let empty = Rewrap::new();
    assert!(!empty.changes_keys());
    assert_eq!(empty.apply(&h).unwrap(), h);

    let refused = |plan: Rewrap<'_>| match plan.apply(&h) {
        Err(Error::RewrapRefused(r)) => r,
        other => panic!("{other:?}"),
    };
    let no_such = Rewrap::new()
        .unlock_with(Box::new(key(21)))
        .remove_key(b.id());
    assert_eq!(
        refused(no_such),
        RewrapRefusal::NoSuchStanza(b.id().to_string())
    );
    let nothing_left = Rewrap::new()
        .unlock_with(Box::new(key(21)))
        .remove_key(a.id());
    assert_eq!(refused(nothing_left), RewrapRefusal::NoStanzaLeft);
    // Adding a key needs the data key: without a key that opens the object, no change.
    let e = Rewrap::new()
        .unlock_with(Box::new(key(22)))
        .add_key(Box::new(key(23)))
        .apply(&h)
        .unwrap_err();
    assert!(matches!(e, Error::NoMatchingKey { .. }), "{e:?}");
}

/// A header with a (fake) KMS stanza after its real local one: stanzas are outside the
/// key commitment, so the local key still opens it, and removal names are read against a
/// header that has KMS stanzas.
#[cfg(feature = "kms")]
fn with_kms_stanza(local: &LocalKey) -> Header {
    let (_, mut h) = sealed_for(&[local]);
    h.stanzas.push(Stanza {
        provider: sealstream::kms::PROVIDER_ID.into(),
        key_id: FAKE_ARN.into(),
        wrapped: vec![1; 40],
    });
    h
}

#[cfg(feature = "kms")]
const FAKE_ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/0000-fake";

/// KMS is reached only when the plan needs it: a removal that names a stanza as given, or
/// a local rewrap, never connects; a KMS alias that names no stanza does, and the
/// connection's failure is the plan's.
#[cfg(feature = "kms")]
#[test]
fn a_plan_connects_to_kms_only_when_a_kms_name_must_be_resolved() {
    let a = key(31);
    let h = with_kms_stanza(&a);
    let calls = AtomicUsize::new(0);
    let counter = &calls;
    let plan = |remove: &str| {
        Rewrap::new()
            .unlock_with(Box::new(key(31)))
            .remove_key(remove)
            .with_kms(Box::new(move || {
                counter.fetch_add(1, Ordering::SeqCst);
                Err(Error::key_service("no KMS in this test"))
            }))
    };
    let new = plan(FAKE_ARN).apply(&h).unwrap();
    assert_eq!(ids(&new), vec![format!("local:{}", a.id())]);
    let new = plan(&format!("aws-kms:{FAKE_ARN}")).apply(&h).unwrap();
    assert_eq!(ids(&new), vec![format!("local:{}", a.id())]);
    let e = plan("alias/gone").apply(&h).unwrap_err();
    assert!(matches!(e, Error::KeyService(_)), "{e:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A header without KMS stanzas never looks a name up.
    let (_, local_only) = sealed_for(&[&a]);
    let e = plan("alias/gone").apply(&local_only).unwrap_err();
    assert!(
        matches!(e, Error::RewrapRefused(RewrapRefusal::NoSuchStanza(_))),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1, "no connection for it");
}

#[cfg(feature = "kms")]
#[test]
fn a_rotation_without_kms_is_refused() {
    let a = key(32);
    let h = with_kms_stanza(&a);
    let e = Rewrap::new()
        .rotate_kms(vec![FAKE_ARN.into()], "alias/new")
        .apply(&h)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e:?}");
}

// ---- KMS, against the emulator ----

#[cfg(feature = "kms")]
mod kms {
    use std::sync::Arc;

    use super::*;
    use common::moto::{create_alias, create_key, endpoint, unique};
    use sealstream::kms::KmsSettings;
    use sealstream::kms::blocking::{Kms, KmsKey};

    fn connect() -> sealstream::Result<Arc<Kms>> {
        Kms::connect(KmsSettings {
            region: Some("us-east-1".into()),
            ..KmsSettings::default()
        })
    }

    /// An object sealed for the KMS key `arn` and a local key.
    fn sealed_kms(kms: &Arc<Kms>, arn: &str, local: &LocalKey) -> (Vec<u8>, Header) {
        let wrap = KmsKey::for_wrapping(kms, arn);
        let keys: [&dyn KeyProvider; 2] = [&wrap, local];
        let mut ct = Vec::new();
        sealstream::encrypt(
            &data(20_000)[..],
            &mut ct,
            &keys,
            &params(Suite::Aes256Gcm, CHUNK),
        )
        .unwrap();
        let (h, _) = Header::parse(&ct).unwrap();
        (ct, h)
    }

    /// Whether the KMS key `name` (trusted as `--kms-key` trusts it) opens `h` + body.
    fn kms_opens(kms: &Arc<Kms>, ct: &[u8], h: &Header, name: &str) -> bool {
        let k = KmsKey::trusted(kms, name).unwrap();
        let keys: [&dyn KeyProvider; 1] = [&k];
        let body = &ct[header_len(ct)..];
        match Unlocked::new(
            Cursor::new(body),
            Some(h.clone()),
            &keys,
            &Context::new(),
            Backend::default(),
        ) {
            Ok(u) => whole(u).0.is_ok(),
            Err(_) => false,
        }
    }

    #[test]
    #[ignore = "needs the emulator (scripts/test.sh runs it)"]
    fn rotation_moves_kms_stanzas_with_one_connection_for_every_header() {
        let Some(ep) = endpoint("rotation_moves_kms_stanzas") else {
            return;
        };
        let (old, new) = (create_key(&ep, "us-east-1"), create_key(&ep, "us-east-1"));
        let alias = format!("alias/{}", unique("rot-old"));
        create_alias(&ep, "us-east-1", &alias, &old);
        let kms = connect().unwrap();
        let local = key(41);
        let objects = [
            sealed_kms(&kms, &old, &local),
            sealed_kms(&kms, &old, &local),
        ];
        let connections = AtomicUsize::new(0);
        // The source by alias: resolved with DescribeKey when a stanza could be it.
        let plan = Rewrap::new()
            .with_kms(Box::new(|| {
                connections.fetch_add(1, Ordering::SeqCst);
                connect()
            }))
            .rotate_kms(vec![alias.clone()], new.clone());
        assert!(
            !plan.changes_keys(),
            "a rotation alone needs no unlocking key"
        );
        for (ct, h) in &objects {
            let rotated = plan.apply(h).unwrap();
            let kms_ids: Vec<&str> = rotated
                .stanzas
                .iter()
                .filter(|s| s.provider == sealstream::kms::PROVIDER_ID)
                .map(|s| s.key_id.as_str())
                .collect();
            assert_eq!(kms_ids, vec![new.as_str()]);
            assert_eq!(rotated.stanzas.len(), 2, "the local stanza kept");
            assert!(kms_opens(&kms, ct, &rotated, &new));
            assert!(!kms_opens(&kms, ct, &rotated, &old));
            assert!(opens(ct, &rotated, &local));
            // Rotated already: nothing of the old key is left to move.
            match plan.apply(&rotated) {
                Err(Error::RewrapRefused(RewrapRefusal::NothingToRotate { from })) => {
                    assert_eq!(from, vec![alias.clone()])
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(connections.load(Ordering::SeqCst), 1);

        // Rotation, then a local key added and the rotated-to key's stanza kept.
        let plan = Rewrap::new()
            .with_kms(Box::new(connect))
            .unlock_with(Box::new(key(41)))
            .add_key(Box::new(key(42)))
            .remove_key(local.id())
            .rotate_kms(vec![old.clone()], new.clone());
        let (ct, h) = &objects[0];
        let done = plan.apply(h).unwrap();
        assert_eq!(
            ids(&done),
            vec![format!("aws-kms:{new}"), format!("local:{}", key(42).id())]
        );
        assert!(kms_opens(&kms, ct, &done, &new) && opens(ct, &done, &key(42)));
        assert!(!opens(ct, &done, &local));
    }

    #[test]
    #[ignore = "needs the emulator (scripts/test.sh runs it)"]
    fn removal_takes_kms_aliases_and_key_ids() {
        let Some(ep) = endpoint("removal_takes_kms_aliases_and_key_ids") else {
            return;
        };
        let arn = create_key(&ep, "us-east-1");
        let alias = format!("alias/{}", unique("rm"));
        create_alias(&ep, "us-east-1", &alias, &arn);
        let key_id = arn.rsplit('/').next().unwrap().to_string();
        let kms = connect().unwrap();
        let local = key(43);
        let (ct, h) = sealed_kms(&kms, &arn, &local);
        for name in [alias.as_str(), key_id.as_str(), arn.as_str()] {
            let plan = Rewrap::new()
                .with_kms(Box::new(connect))
                .unlock_with(Box::new(key(43)))
                .remove_key(name);
            let new = plan.apply(&h).unwrap();
            assert_eq!(ids(&new), vec![format!("local:{}", local.id())], "{name}");
            assert!(opens(&ct, &new, &local));
        }
        // An alias of no key: KMS says so, nothing is removed.
        let e = Rewrap::new()
            .with_kms(Box::new(connect))
            .unlock_with(Box::new(key(43)))
            .remove_key("alias/no-such-key")
            .apply(&h)
            .unwrap_err();
        assert!(e.service_error().is_some(), "{e:?}");
        // An alias of another key: resolved, names no stanza, refused as such.
        let other = create_key(&ep, "us-east-1");
        let other_alias = format!("alias/{}", unique("other"));
        create_alias(&ep, "us-east-1", &other_alias, &other);
        let e = Rewrap::new()
            .with_kms(Box::new(connect))
            .unlock_with(Box::new(key(43)))
            .remove_key(other_alias.clone())
            .apply(&h)
            .unwrap_err();
        assert!(
            matches!(&e, Error::RewrapRefused(RewrapRefusal::NoSuchStanza(n)) if *n == other_alias),
            "{e:?}"
        );
    }
}
