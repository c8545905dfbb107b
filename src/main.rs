//! The `asyncapi-guard` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc (v2) rather than glibc's malloc: a request allocates and frees a few hundred
/// small blocks, and the webhook answers more reviews a second with it. Why this one and
/// not v3 or jemalloc: docs/performance.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = asyncapi_guard::cli::Cli::parse();
    match asyncapi_guard::cli::run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("asyncapi-guard: {error:#}");
            ExitCode::from(2)
        }
    }
}
