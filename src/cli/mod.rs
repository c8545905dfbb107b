//! The command line: one clap-derived struct, every flag with its environment variable.

pub mod audit;
pub mod check;
pub mod cleanup;
pub mod manifest;
pub mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "asyncapi-guard",
    version,
    about = "Stops insecure AsyncAPI definitions: a CLI for CI, a Kubernetes admission webhook, a cluster audit."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge AsyncAPI documents and Kubernetes manifests (exit 0 allowed, 1 denied, 2 error).
    Check(check::CheckArgs),
    /// Serve the validating admission webhook (HTTPS), with metrics on a plain-HTTP port.
    Serve(Box<serve::ServeArgs>),
    /// Judge what is already in the cluster: labelled ConfigMaps, AsyncAPI resources, and
    /// unguarded ConfigMaps that carry AsyncAPI without the label.
    Audit(audit::AuditArgs),
    /// Before an uninstall: remove the Reports and status conditions the audit wrote, the
    /// certificate Secret, and stop the audit (the chart's pre-delete hook runs it).
    Cleanup(cleanup::CleanupArgs),
}

/// Runs a command. Errors are usage or I/O errors (exit code 2), reported by `main`.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Serve(args) => serve::run(*args),
        Command::Audit(args) => audit::run(&args),
        Command::Cleanup(args) => cleanup::run(&args),
    }
}
