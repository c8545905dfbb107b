//! The `asyncapi-guard` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc rather than glibc's malloc: a request allocates and frees a few hundred small
/// blocks (the document's tree, the findings, the answer), and glibc spent an eighth of the
/// webhook's time in them (benches/load-compare.sh: 13 % more reviews a second with
/// mimalloc; jemalloc did as well but builds far slower). Its arena is advised for
/// transparent huge pages, which makes `check` of a 1 MiB document fault in a sixth of the
/// pages; `serve` turns huge pages off for itself (src/cli/serve.rs), where they would cost
/// memory instead. The v2 line, not v3: v3 gives each size class of big blocks its own
/// 4 MiB page, so `check` of the 1 MiB document touched 8 huge pages (16 MiB zeroed, 25 MiB
/// resident) where v2 touches 5 (20 MiB resident), 0.3 ms of 6; the webhook's rate is the
/// same with either (benches/load-compare.sh).
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
