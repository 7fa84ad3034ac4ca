//! The `sealstream` binary: a thin layer over [`sealstream::cli`].
#![forbid(unsafe_code)]

fn main() {
    std::process::exit(sealstream::cli::main());
}
