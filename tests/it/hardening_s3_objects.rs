//! Issue 14, items 1, 2 and 20, against the emulator (moto):
//!
//! * (1) an old object's `sealstream-companion` metadata can never make sealstream delete
//!   another object: `encrypt --force`, batch encrypt and `rewrap` delete an old companion
//!   only when it is named after the object's own key and holds the object's header;
//! * (2) `rewrap s3://…` never silently loses a concurrent update: a new version written in a
//!   versioned bucket, or a second rewrap, makes the losing rewrap fail (exit 6) and leaves
//!   the other writer's state current;
//! * (20) what FORMAT.md §15.2 now claims about stale and swapped companions.
//!
//! Races are interleaved deterministically: by reading the object (the library's
//! `open_object`) before the other writer runs, or with `replace_header_with`'s hook, which
//! runs just before the copy, after every check the rewrap makes before writing.
// Compiled only with the `cli` feature: this file runs the `sealstream` binary.

use crate::common;

use std::process::Output;

use base64::Engine as _;
use common::moto;
use common::proxy::{Fault, Proxy};
use common::*;
use sealstream::s3::blocking::S3;
use sealstream::s3::{ObjectInfo, RewrapStage, S3Settings, S3Url};
use sealstream::{KeyProvider, LocalKey};

struct Env {
    s: Scratch,
    up: String,
    bucket: String,
}

fn setup(test: &str, versioned: bool) -> Env {
    let up = moto::endpoint(test).expect("this test needs the emulator (AWS_ENDPOINT_URL)");
    let bucket = moto::unique_bucket("hso");
    moto::create_bucket(&up, &bucket);
    if versioned {
        moto::enable_versioning(&up, &bucket);
    }
    Env {
        s: Scratch::new(),
        up,
        bucket,
    }
}

impl Env {
    fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_at(&format!("http://{}", self.up), args)
    }

    /// Runs the CLI against `endpoint` (the emulator, or a fault proxy in front of it).
    fn run_at(&self, endpoint: &str, args: &[&str]) -> Output {
        let o = self.s.s3_cmd(endpoint).args(args).output();
        o.expect("run sealstream")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_eq!(code(&o), 0, "{args:?}: {}", stderr(&o));
        o
    }

    fn keyfile(&self, n: u8) -> String {
        let p = self.s.path(&format!("k{n}"));
        if !p.exists() {
            self.s.keyfile(&format!("k{n}"), &key(n));
        }
        p.to_str().unwrap().to_string()
    }

    /// Encrypts `pt` to `key` for local keys `keys` (12 keys or more need a companion).
    fn encrypt(&self, key: &str, pt: &[u8], keys: &[u8], force: bool) -> Output {
        let p = self.s.path("in");
        write(&p, pt);
        let files: Vec<String> = keys.iter().map(|&n| self.keyfile(n)).collect();
        let url = self.url(key);
        let mut args = vec!["encrypt", p.to_str().unwrap(), "-o", &url];
        for f in &files {
            args.extend(["-k", f.as_str()]);
        }
        if force {
            args.push("--force");
        }
        self.ok(&args)
    }

    /// Decrypts `key` with local key `n`: (exit code, plaintext, stderr).
    fn decrypt(&self, key: &str, n: u8) -> (i32, Vec<u8>, String) {
        let out = self.s.path("out");
        let _ = std::fs::remove_file(&out);
        let k = self.keyfile(n);
        let o = self.run(&[
            "decrypt",
            &self.url(key),
            "-k",
            &k,
            "-o",
            out.to_str().unwrap(),
        ]);
        (
            code(&o),
            std::fs::read(&out).unwrap_or_default(),
            stderr(&o),
        )
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        moto::get_object(&self.up, &self.bucket, key)
    }

    fn meta(&self, key: &str) -> Vec<(String, String)> {
        moto::head_object(&self.up, &self.bucket, key)
            .expect("object exists")
            .1
    }

    fn meta_value(&self, key: &str, name: &str) -> Option<String> {
        self.meta(key)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A server-side copy of `src` to `dst` keeping all its metadata (what `aws s3 cp`
    /// between two keys does): the copy names `src`'s companion.
    fn copy(&self, src: &str, dst: &str) {
        let meta = self.meta(src);
        let m: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        moto::copy_object_replace_metadata(&self.up, &self.bucket, src, dst, &m, None);
    }

    /// An attacker who may write `key` plants sealstream metadata naming `companion`.
    fn plant(&self, key: &str, companion: &str) {
        let commitment = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
        moto::put_object(
            &self.up,
            &self.bucket,
            key,
            b"planted",
            &[
                ("sealstream", "1"),
                ("sealstream-companion", companion),
                ("sealstream-commitment", &commitment),
            ],
        );
    }
}

fn connect() -> S3 {
    S3::connect(S3Settings::default()).expect("connect")
}

fn open(s3: &S3, e: &Env, key: &str) -> ObjectInfo {
    s3.open_object(&S3Url::parse(&e.url(key)).unwrap())
        .expect("open")
}

/// The header of `obj` with local key `add` added and `remove` removed, unwrapped with `with`.
fn rewrapped(
    obj: &ObjectInfo,
    with: u8,
    add: Option<u8>,
    remove: &[u8],
) -> sealstream::format::Header {
    let w = key(with);
    let added: Vec<LocalKey> = add.into_iter().map(key).collect();
    let added: Vec<&dyn KeyProvider> = added.iter().map(|k| k as &dyn KeyProvider).collect();
    let removed: Vec<String> = remove.iter().map(|&n| key(n).id().to_string()).collect();
    sealstream::envelope::rewrap(&obj.header, &[&w as &dyn KeyProvider], &added, &removed)
        .expect("rewrap header")
}

fn twelve() -> Vec<u8> {
    (1..=12).collect()
}

// ---- item 1: companion deletion --------------------------------------------------------

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn force_overwrite_leaves_a_planted_companion_victim_alone() {
    let e = setup("planted_force", false);
    moto::put_object(&e.up, &e.bucket, "victim/data", b"precious", &[]);
    e.plant("k", "victim/data");
    let o = e.encrypt("k", b"new content", &[1], true);
    assert_eq!(e.get("victim/data").as_deref(), Some(&b"precious"[..]));
    assert!(
        stderr(&o).contains("victim/data") && stderr(&o).contains("left alone"),
        "say on stderr that the named object was left alone: {}",
        stderr(&o)
    );

    // Named after the key, but its content is not a header carrying the pinned commitment.
    let decoy = "k2.sealstream-header-00000000000000aa";
    moto::put_object(&e.up, &e.bucket, decoy, b"someone's data", &[]);
    e.plant("k2", decoy);
    let o = e.encrypt("k2", b"new content", &[1], true);
    assert_eq!(e.get(decoy).as_deref(), Some(&b"someone's data"[..]));
    assert!(stderr(&o).contains("left alone"), "{}", stderr(&o));
    let (c, pt, err) = e.decrypt("k2", 1);
    assert_eq!((c, pt.as_slice()), (0, &b"new content"[..]), "{err}");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn force_overwrite_deletes_only_its_own_companion() {
    let e = setup("own_companion", false);
    let pt = data(70_000);
    e.encrypt("own", &pt, &twelve(), false);
    let c = e
        .meta_value("own", "sealstream-companion")
        .expect("companion form");
    // A copy at another key names own's companion: overwriting the copy must keep it.
    e.copy("own", "dup");
    let o = e.encrypt("dup", b"x", &[1], true);
    assert!(
        e.get(&c).is_some(),
        "the source object's companion was deleted"
    );
    assert!(stderr(&o).contains("left alone"), "{}", stderr(&o));
    let (code, got, err) = e.decrypt("own", 12);
    assert_eq!(code, 0, "{err}");
    assert!(got == pt);
    // Overwriting the object itself still removes its own companion (it holds its keys).
    let o = e.encrypt("own", b"y", &[1], true);
    assert!(e.get(&c).is_none(), "own companion not cleaned up");
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn batch_force_leaves_a_planted_companion_victim_alone() {
    let e = setup("planted_batch", false);
    moto::put_object(&e.up, &e.bucket, "victim", b"precious", &[]);
    e.plant("p/f.txt", "victim");
    let f = e.s.path("f.txt");
    write(&f, b"batch content");
    let k = e.keyfile(1);
    let prefix = e.url("p/");
    let o = e.ok(&[
        "encrypt",
        f.to_str().unwrap(),
        "--output-dir",
        &prefix,
        "-k",
        &k,
        "--force",
    ]);
    assert_eq!(e.get("victim").as_deref(), Some(&b"precious"[..]));
    assert!(stderr(&o).contains("left alone"), "{}", stderr(&o));
    let (c, pt, err) = e.decrypt("p/f.txt", 1);
    assert_eq!((c, pt.as_slice()), (0, &b"batch content"[..]), "{err}");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn rewrap_of_a_copy_leaves_the_source_companion_alone() {
    let e = setup("rewrap_copy", false);
    let pt = data(70_000);
    e.encrypt("src", &pt, &twelve(), false);
    let c = e.meta_value("src", "sealstream-companion").unwrap();
    e.copy("src", "dup");
    // Down to two keys: dup's header moves inline; the old companion is src's, not dup's.
    let k1 = e.keyfile(1);
    let mut args: Vec<String> = vec!["rewrap".into(), e.url("dup"), "-k".into(), k1];
    for i in 3..=12u8 {
        args.extend(["--remove-key".into(), key(i).id().to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = e.ok(&args);
    assert!(stderr(&o).contains("left alone"), "{}", stderr(&o));
    assert!(
        e.get(&c).is_some(),
        "rewrap deleted another object's companion"
    );
    let (code, got, err) = e.decrypt("src", 12);
    assert_eq!(code, 0, "the source object became undecryptable: {err}");
    assert!(got == pt);
    assert!(e.meta_value("dup", "sealstream-header").is_some());
    assert_eq!(
        e.decrypt("dup", 12).0,
        4,
        "removed key still opens the copy"
    );
}

// ---- item 2: lost updates in rewrap ----------------------------------------------------

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn rewrap_does_not_roll_back_a_concurrent_version() {
    let e = setup("versioned_race", true);
    let s3 = connect();
    e.encrypt("o", b"version one", &[1, 2], false);

    // A new version lands between the rewrap's read and its write.
    let obj = open(&s3, &e, "o");
    e.encrypt("o", b"version two", &[1, 2], true);
    let new = rewrapped(&obj, 1, None, &[2]);
    let err = s3
        .replace_header(&obj, &new)
        .expect_err("must not roll back");
    assert!(matches!(err, sealstream::Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("changed"), "{err}");
    let (c, pt, msg) = e.decrypt("o", 2);
    assert_eq!((c, pt.as_slice()), (0, &b"version two"[..]), "{msg}");

    // The same, but the new version lands after every check, just before the copy.
    let obj = open(&s3, &e, "o");
    let new = rewrapped(&obj, 1, None, &[2]);
    let err = s3
        .replace_header_with(&obj, &new, &mut |stage| {
            if stage == RewrapStage::BeforeCopy {
                e.encrypt("o", b"version three", &[1, 2], true);
            }
        })
        .expect_err("must not roll back");
    assert!(matches!(err, sealstream::Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("another writer"), "{err}");
    let (c, pt, msg) = e.decrypt("o", 2);
    assert_eq!((c, pt.as_slice()), (0, &b"version three"[..]), "{msg}");
}

/// The copy carries every condition S3 has on what was read; when the service enforces one
/// (moto does not: the proxy answers 412 as S3 would), nothing is left changed.
#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn rewrap_copy_is_conditional_and_a_failed_condition_changes_nothing() {
    let e = setup("copy_conditions", false);
    let proxy = Proxy::start(&e.up);
    e.encrypt("o", &data(70_000), &twelve(), false);
    let before = e.meta("o");
    let etag = moto::head_etag(&e.up, &e.bucket, "o").expect("etag");
    let k1 = e.keyfile(1);
    let k13 = e.keyfile(13);
    let args = ["rewrap", &e.url("o"), "-k", &k1, "--add-key", &k13];
    proxy.fail_first("CopyObject", 1, Fault::aws(412, "PreconditionFailed"));
    let o = e.run_at(&proxy.url, &args);
    assert_eq!(code(&o), 6, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("changed after sealstream read it"),
        "{}",
        stderr(&o)
    );
    assert_eq!(e.meta("o"), before, "metadata changed");
    let companions = moto::list_keys(&e.up, &e.bucket, "o.");
    assert_eq!(companions.len(), 1, "orphaned companion: {companions:?}");

    let o = e.run_at(&proxy.url, &args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let copy = proxy
        .requests()
        .into_iter()
        .rfind(|r| r.op == "CopyObject")
        .expect("a CopyObject");
    assert_eq!(
        copy.header("x-amz-copy-source-if-match"),
        Some(etag.as_str())
    );
    assert_eq!(copy.header("if-match"), Some(etag.as_str()));
    assert!(
        copy.header("x-amz-copy-source-if-unmodified-since")
            .is_some(),
        "unversioned source: Last-Modified condition missing"
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn rewrap_does_not_resurrect_an_object_deleted_meanwhile() {
    let e = setup("versioned_delete", true);
    let s3 = connect();
    e.encrypt("o", b"data", &[1, 2], false);
    let obj = open(&s3, &e, "o");
    let new = rewrapped(&obj, 1, None, &[2]);
    let err = s3
        .replace_header_with(&obj, &new, &mut |stage| {
            if stage == RewrapStage::BeforeCopy {
                moto::delete_object(&e.up, &e.bucket, "o");
            }
        })
        .expect_err("the object was deleted");
    assert!(matches!(err, sealstream::Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("deleted"), "{err}");
    assert!(
        moto::head_object(&e.up, &e.bucket, "o").is_none(),
        "rewrap brought a deleted object back"
    );
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn two_concurrent_rewraps_do_not_lose_an_update() {
    let e = setup("rewrap_race", false);
    let s3 = connect();
    e.encrypt("o", b"data", &[1, 2, 3], false);
    // Both read the same state; B removes key 2 and wins, A (removing key 3) must fail
    // rather than bring key 2 back.
    let a = open(&s3, &e, "o");
    let b = open(&s3, &e, "o");
    s3.replace_header(&b, &rewrapped(&b, 1, None, &[2]))
        .expect("first rewrap");
    let err = s3
        .replace_header(&a, &rewrapped(&a, 1, None, &[3]))
        .expect_err("the second rewrap must notice the first");
    assert!(matches!(err, sealstream::Error::Storage(_)), "{err}");
    assert_eq!(e.decrypt("o", 2).0, 4, "a removed key came back");
    assert_eq!(e.decrypt("o", 3).0, 0, "A's rewrap reported failure");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn two_interleaved_rewraps_in_a_versioned_bucket_do_not_lose_an_update() {
    let e = setup("rewrap_race_v", true);
    let s3 = connect();
    e.encrypt("o", b"data", &[1, 2, 3], false);
    let a = open(&s3, &e, "o");
    let b = open(&s3, &e, "o");
    // B runs to completion after A's last check and before A's copy.
    let err = s3
        .replace_header_with(&a, &rewrapped(&a, 1, None, &[3]), &mut |stage| {
            if stage == RewrapStage::BeforeCopy {
                // The hook runs inside A's call on the blocking handle's runtime: B's
                // blocking call runs on a thread of its own, as a second process would.
                std::thread::scope(|t| {
                    t.spawn(|| {
                        s3.replace_header(&b, &rewrapped(&b, 1, None, &[2]))
                            .expect("B's rewrap")
                    })
                    .join()
                    .expect("B's thread")
                });
            }
        })
        .expect_err("A must notice B");
    assert!(matches!(err, sealstream::Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("another writer"), "{err}");
    // Typed: a caller can tell a lost race (retry on the current object) from a failure.
    assert_eq!(
        err.service_error().map(|s| s.kind()),
        Some(sealstream::error::ServiceErrorKind::PreconditionFailed),
        "{err}"
    );
    assert_eq!(e.decrypt("o", 2).0, 4, "B's removal was lost");
    let (c, pt, msg) = e.decrypt("o", 3);
    assert_eq!((c, pt.as_slice()), (0, &b"data"[..]), "{msg}");
}

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn a_write_right_after_the_rewrap_is_reported() {
    let e = setup("after_copy", false);
    let s3 = connect();
    let pt = data(70_000);
    e.encrypt("o", &pt, &twelve(), false);
    let old_c = e.meta_value("o", "sealstream-companion").unwrap();
    let obj = open(&s3, &e, "o");
    // Still 12 keys after the rewrap: the new header goes to a new companion.
    let new = rewrapped(&obj, 1, Some(13), &[2]);
    let err = s3
        .replace_header_with(&obj, &new, &mut |stage| {
            if stage == RewrapStage::AfterCopy {
                e.encrypt("o", b"newer", &[1], true);
            }
        })
        .expect_err("the rewrap's result is not current");
    assert!(matches!(err, sealstream::Error::Storage(_)), "{err}");
    assert!(err.to_string().contains("right after"), "{err}");
    let (c, got, msg) = e.decrypt("o", 1);
    assert_eq!((c, got.as_slice()), (0, &b"newer"[..]), "{msg}");
    // Nothing else is left but the old companion, which the failed rewrap keeps (and
    // names in its error): the companion it wrote was dropped by the other writer's
    // --force, which found it named in the metadata it replaced.
    assert!(err.to_string().contains(&old_c), "{err}");
    let left: Vec<String> = moto::list_keys(&e.up, &e.bucket, "o.")
        .into_iter()
        .filter(|k| *k != old_c)
        .collect();
    assert!(left.is_empty(), "orphaned companion: {left:?}");
}

// ---- item 20: what a stale companion can and cannot do ----------------------------------

#[test]
#[ignore = "needs the emulator (scripts/test.sh runs it)"]
fn stale_and_swapped_companions() {
    let e = setup("stale_companion", false);
    let pt = data(70_000);
    e.encrypt("s", &pt, &twelve(), false);
    e.encrypt("other", &pt, &twelve(), false);
    let old_meta = e.meta("s");
    let old_c = e.meta_value("s", "sealstream-companion").unwrap();
    // Rewrap (still companion form): a new companion, the old one deleted.
    let k1 = e.keyfile(1);
    let k13 = e.keyfile(13);
    e.ok(&["rewrap", &e.url("s"), "-k", &k1, "--add-key", &k13]);
    let new_c = e.meta_value("s", "sealstream-companion").unwrap();
    assert_ne!(new_c, old_c);
    assert!(e.get(&old_c).is_none(), "the stale companion was kept");
    // Pointing the metadata back at it finds nothing (exit 4, "missing").
    let m: Vec<(&str, &str)> = old_meta
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    moto::copy_object_replace_metadata(&e.up, &e.bucket, "s", "s", &m, None);
    let (c, _, err) = e.decrypt("s", 1);
    assert_eq!(c, 4, "{err}");
    assert!(err.contains("missing"), "{err}");
    // A swapped companion (another object's header) fails its pinned commitment.
    let other_c = e.meta_value("other", "sealstream-companion").unwrap();
    let commitment = e.meta_value("s", "sealstream-commitment").unwrap();
    moto::copy_object_replace_metadata(
        &e.up,
        &e.bucket,
        "s",
        "s",
        &[
            ("sealstream", "1"),
            ("sealstream-companion", &other_c),
            ("sealstream-commitment", &commitment),
        ],
        None,
    );
    let (c, _, err) = e.decrypt("s", 1);
    assert_eq!(c, 4, "{err}");
    assert!(err.contains("does not belong to this object"), "{err}");
}
