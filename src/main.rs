//! The `asyncapi-guard` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

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
