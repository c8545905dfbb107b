//! `asyncapi-guard check`: files, directories and stdin, for CI before merge.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{ArgAction, Args};

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;

use super::manifest;
use super::manifest::ManifestCheck;
use crate::config::Config;
use crate::kubernetes::exceptions::{Exception, ExceptionSet};
use crate::kubernetes::namespaces::PRODUCTION_LABEL;
use crate::report::{self, DocumentReport, Format};
use crate::service::state::ActiveConfig;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Configuration file (YAML): modes, production selector, limits.
    #[arg(long, env = "ASYNCAPI_GUARD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text, env = "ASYNCAPI_GUARD_FORMAT")]
    pub format: Format,
    /// Treat every server as production.
    #[arg(long, action = ArgAction::SetTrue, env = "ASYNCAPI_GUARD_ALL_SERVERS_PRODUCTION")]
    pub all_servers_production: bool,
    /// In manifests, judge only ConfigMaps labelled asyncapi-guard.io/document, as admission
    /// does. By default an unlabelled ConfigMap whose keys hold AsyncAPI is judged too (and
    /// reported as unguarded: the webhook would let it through unjudged).
    #[arg(long, action = ArgAction::SetTrue, env = "ASYNCAPI_GUARD_LABELLED_ONLY")]
    pub labelled_only: bool,
    /// AsyncAPIException manifests (files or directories) to apply, as the cluster would:
    /// only those in a namespace the configuration allows (exceptions.namespaces), not
    /// expired, within exceptions.maxDuration. Covered findings are reported as excepted and
    /// do not fail the check.
    #[arg(
        long,
        value_name = "PATH",
        env = "ASYNCAPI_GUARD_EXCEPTIONS_FROM",
        value_delimiter = ','
    )]
    pub exceptions: Vec<String>,
    /// AsyncAPI documents or Kubernetes manifests; directories are searched for .yaml, .yml
    /// and .json files; `-` reads standard input.
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<String>,
}

const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        Some(path) => Config::load_or_defaults(path)?,
        None => Config::default(),
    };
    let active = ActiveConfig::from(config);
    // The namespace the manifests are meant for, as far as the flags say.
    let mut namespace_labels = BTreeMap::new();
    if args.all_servers_production {
        namespace_labels.insert(PRODUCTION_LABEL.to_owned(), "all".to_owned());
    }
    let now = Timestamp::now();
    let mut io_errors = 0;
    let exceptions = load_exceptions(&active, &args.exceptions, now, &mut io_errors);
    let check = ManifestCheck {
        judge: active.judge(&exceptions, now),
        namespace_labels: &namespace_labels,
        labelled_only: args.labelled_only,
    };

    let mut reports = Vec::new();
    for input in &args.paths {
        for (name, bytes) in read_input(input) {
            match bytes {
                Ok(bytes) => reports.extend(judge_file(&check, &name, &bytes)),
                Err(error) => {
                    io_errors += 1;
                    eprintln!("asyncapi-guard: {name}: {error:#}");
                }
            }
        }
    }

    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(report::render(args.format, &reports).as_bytes())
        .context("cannot write the output")?;
    Ok(if io_errors > 0 {
        ExitCode::from(2)
    } else if reports.iter().any(|r| !r.evaluation.allowed()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The exceptions in the files `paths` name. Those that do not count (another namespace,
/// expired, too long, invalid) are left out and said on standard error, as the cluster
/// says it in their status; a file that cannot be read is an I/O error.
fn load_exceptions(
    active: &ActiveConfig,
    paths: &[String],
    now: Timestamp,
    io_errors: &mut usize,
) -> ExceptionSet {
    let limits = &active.engine.policy().limits;
    let mut found: Vec<Exception> = Vec::new();
    for input in paths {
        for (name, bytes) in read_input(input) {
            let loaded = bytes.and_then(|bytes| {
                let text = crate::engine::document::check_bytes(&bytes, limits)?;
                let stream = active.engine.load(text)?;
                Ok(manifest::exceptions_in(&stream, limits.max_depth))
            });
            match loaded {
                Ok(exceptions) => found.extend(exceptions),
                Err(error) => {
                    *io_errors += 1;
                    eprintln!("asyncapi-guard: exceptions {name}: {error:#}");
                }
            }
        }
    }
    for exception in &found {
        let refusals = exception.refusals(&active.exceptions, &active.kubernetes, now);
        for refusal in refusals {
            eprintln!(
                "asyncapi-guard: exception {} does not apply: {refusal}",
                exception.by()
            );
        }
    }
    ExceptionSet::new(found)
}

/// The files an argument names, with their contents (or why they cannot be read).
fn read_input(input: &str) -> Vec<(String, anyhow::Result<Vec<u8>>)> {
    if input == "-" {
        let mut bytes = Vec::new();
        let read = std::io::stdin()
            .lock()
            .read_to_end(&mut bytes)
            .map(|_| bytes)
            .context("cannot read standard input");
        return vec![(input.to_owned(), read)];
    }
    let path = Path::new(input);
    if !path.is_dir() {
        return vec![(input.to_owned(), read_file(path))];
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
        match entry {
            Ok(entry) if entry.file_type().is_file() && has_document_extension(entry.path()) => {
                files.push((entry.path().display().to_string(), read_file(entry.path())));
            }
            Ok(_) => {}
            Err(error) => files.push((input.to_owned(), Err(error.into()))),
        }
    }
    files
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn has_document_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

/// One file: an AsyncAPI document, or a manifest whose objects carry documents.
fn judge_file(check: &ManifestCheck<'_>, name: &str, bytes: &[u8]) -> Vec<DocumentReport> {
    let engine = check.judge.engine;
    // A bare document stands in the namespace the flags describe.
    let overrides = &check
        .judge
        .config
        .namespaces
        .overrides_for(None, check.namespace_labels)
        .unwrap_or_default();
    let text = match crate::engine::document::check_bytes(bytes, &engine.policy().limits) {
        Ok(text) => text,
        Err(error) => {
            return vec![DocumentReport::file(
                name,
                engine.evaluate_load_error(&error, overrides),
            )];
        }
    };
    match engine.load(text) {
        Err(error) => vec![DocumentReport::file(
            name,
            engine.evaluate_load_error(&error, overrides),
        )],
        Ok(stream) if manifest::is_manifest(&stream) => {
            manifest::judge_manifest(check, name, &stream)
        }
        Ok(stream) => vec![DocumentReport::file(
            name,
            engine.evaluate_stream(&stream, overrides),
        )],
    }
}
