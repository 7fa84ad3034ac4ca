//! The `sealstream` binary: the command-line interface, a consumer of the `sealstream`
//! library like any other. Nothing here is library API.
#![forbid(unsafe_code)]

mod cli;

fn main() {
    std::process::exit(cli::main());
}
