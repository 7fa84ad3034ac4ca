//! Shared helpers for the integration tests: fixed keys, in-memory encryption, and a
//! counting reader for ranged-read assertions.
#![allow(dead_code)]

pub mod http1;
pub mod moto;
pub mod proxy;

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sealstream::Backend;
use sealstream::engine::EngineOptions;
use sealstream::envelope::{self, DecryptParams, EncryptParams};
use sealstream::format::{Context, Header, Suite};
use sealstream::keys::KeyProvider;
use sealstream::keys::local::LocalKey;

pub fn key(n: u8) -> LocalKey {
    LocalKey::from_bytes([n; 32])
}

/// Deterministic test plaintext.
pub fn data(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i % 251) as u8 ^ (i >> 13) as u8)
        .collect()
}

pub fn params(suite: Suite, chunk_size: u32) -> EncryptParams<'static> {
    EncryptParams {
        suite,
        chunk_size,
        ..EncryptParams::default()
    }
}

pub fn seal_with(pt: &[u8], keys: &[&LocalKey], p: &EncryptParams<'_>) -> Vec<u8> {
    let providers: Vec<&dyn KeyProvider> = keys.iter().map(|k| *k as &dyn KeyProvider).collect();
    let mut out = Vec::new();
    envelope::encrypt(pt, &mut out, &providers, p).expect("encrypt");
    out
}

pub fn seal(pt: &[u8], k: &LocalKey, suite: Suite, cs: u32) -> Vec<u8> {
    seal_with(pt, &[k], &params(suite, cs))
}

pub fn open_with(
    ct: &[u8],
    keys: &[&LocalKey],
    expected: &Context,
    backend: Backend,
    engine: EngineOptions<'_>,
) -> sealstream::Result<Vec<u8>> {
    let providers: Vec<&dyn KeyProvider> = keys.iter().map(|k| *k as &dyn KeyProvider).collect();
    let mut out = Vec::new();
    let p = DecryptParams {
        expected_context: expected.clone(),
        backend,
        engine,
    };
    envelope::decrypt(ct, &mut out, &providers, &p)?;
    Ok(out)
}

pub fn open(ct: &[u8], k: &LocalKey) -> sealstream::Result<Vec<u8>> {
    open_with(
        ct,
        &[k],
        &Context::new(),
        Backend::Ring,
        EngineOptions::default(),
    )
}

pub fn header_len(ct: &[u8]) -> usize {
    Header::parse(ct).expect("header").1
}

/// A `Read + Seek` wrapper counting the bytes actually read.
pub struct CountingReader<R> {
    pub inner: R,
    pub read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.inner.seek(pos)
    }
}

// ---- CLI helpers ----

/// The `sealstream` binary. It is built only with the `cli` feature; test files that run
/// it are compiled only then (`#![cfg(feature = "cli")]` or the test's own `cfg`).
#[cfg(feature = "cli")]
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sealstream")
}

/// Without the `cli` feature Cargo still names the binary (and a stale one may be on disk),
/// so a test that reaches for it fails loudly instead of running an old build.
#[cfg(not(feature = "cli"))]
pub fn bin() -> &'static str {
    panic!("this test runs the sealstream binary: mark it #[cfg(feature = \"cli\")]")
}

/// A fresh directory for one test, with its own SEALSTREAM_HOME.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("SEALSTREAM_HOME", self.path("home"))
            .env_remove("XDG_CONFIG_HOME")
            .current_dir(self.dir.path())
            .arg("--quiet");
        c
    }
    /// [`Scratch::cmd`] talking to S3 (and KMS) at `endpoint` only (`http://host:port`),
    /// with static test credentials: no profile, no per-service endpoint from the
    /// environment, so that a test's proxy sees every request.
    pub fn s3_cmd(&self, endpoint: &str) -> Command {
        let mut c = self.cmd();
        c.env("AWS_ENDPOINT_URL", endpoint)
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_ENDPOINT_URL_KMS")
            .env_remove("AWS_PROFILE")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
        c
    }
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run sealstream")
    }
    pub fn keyfile(&self, name: &str, k: &LocalKey) -> PathBuf {
        let p = self.path(name);
        k.save_new(&p).expect("save key");
        p
    }
    /// Files in the scratch dir other than `home` (to catch leftover temporaries).
    pub fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read_dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n != "home")
            .collect();
        v.sort();
        v
    }
}

pub fn write(p: &Path, bytes: &[u8]) {
    std::fs::write(p, bytes).expect("write");
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

// ---- process-wide measurements ----

/// Set in the child process [`in_own_process`] starts.
const OWN_PROCESS: &str = "SEALSTREAM_TEST_OWN_PROCESS";

/// For a test that measures its whole process (thread count, ...): every module of this
/// binary shares one process, and the tests running on parallel threads would be counted
/// too. Returns `true` in a child process of this binary that runs `test` (its full name,
/// `module::function`) alone: the caller then measures. Otherwise starts that child, fails
/// unless it ran exactly that one test and passed, and returns `false`: the caller is done.
pub fn in_own_process(test: &str) -> bool {
    if std::env::var_os(OWN_PROCESS).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("current_exe");
    let o = Command::new(exe)
        .args([
            test,
            "--exact",
            "--include-ignored",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(OWN_PROCESS, "1")
        .output()
        .expect("run the test binary");
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    eprintln!("{err}");
    assert!(
        o.status.success() && out.contains("test result: ok. 1 passed"),
        "{test} in its own process: {}\n{out}",
        o.status
    );
    false
}
