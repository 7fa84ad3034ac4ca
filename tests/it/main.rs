//! The integration tests: one test binary (`it`) with one module per area, so the shared
//! fixtures in `common` and the link against the whole dependency tree happen once, not
//! once per file (docs/TESTING.md, "Layout"). `cargo test --test it s3::` runs one module.
//!
//! Only what needs a process of its own is a separate binary: tests/alloc.rs and
//! tests/adapters_alloc.rs (a counting `#[global_allocator]`) and tests/large.rs (asserts
//! the process's peak RSS). Modules here share one process and run on parallel threads:
//! no test may set environment variables, change the working directory or depend on
//! process-wide state another module could change (child processes get their own
//! environment through `Command::env`).
//!
//! Feature gates: a module that needs a feature is compiled only with it, so
//! `cargo test --no-default-features` builds and runs the core modules alone.

mod common;

mod adapters;
#[cfg(feature = "async")]
mod async_stream;
#[cfg(feature = "cli")]
mod batch;
#[cfg(feature = "cli")]
mod cli;
#[cfg(feature = "cli")]
mod cli_ux;
mod emulator;
#[cfg(all(feature = "s3", feature = "kms"))]
mod examples;
mod fuzz_regressions;
#[cfg(feature = "cli")]
mod gateway;
#[cfg(feature = "cli")]
mod hardening_aws;
#[cfg(all(feature = "cli", unix))]
mod hardening_files;
#[cfg(feature = "cli")]
mod hardening_keys;
#[cfg(feature = "cli")]
mod hardening_kms;
mod hardening_ranges;
#[cfg(feature = "cli")]
mod hardening_s3_objects;
#[cfg(feature = "cli")]
mod hardening_spec;
mod hardening_tests;
#[cfg(feature = "cli")]
mod kms;
#[cfg(feature = "kms")]
mod kms_async;
#[cfg(feature = "cli")]
mod kms_faults;
mod library_envelope;
mod parts;
mod range;
mod range_large;
mod roundtrip;
#[cfg(feature = "cli")]
mod s3;
#[cfg(feature = "s3")]
mod s3_async;
#[cfg(feature = "s3")]
mod s3_harness;
#[cfg(feature = "cli")]
mod s3ec;
mod secrets;
mod tamper;
mod vectors;
