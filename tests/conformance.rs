//! The verdicts of docs/policy.md, file by file: every `allowed` and every set of (rule, path)
//! pairs of a corpus's `expected.json` must come out exactly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use asyncapi_guard::engine::{Engine, Overrides};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    file: String,
    allowed: bool,
    violations: Vec<Violation>,
}

#[derive(Deserialize)]
struct Violation {
    rule: String,
    path: String,
}

/// Every mismatch, one readable line per file.
fn mismatches(corpus: &Path) -> (usize, Vec<String>) {
    let expected: Vec<Expected> =
        serde_json::from_slice(&std::fs::read(corpus.join("expected.json")).unwrap()).unwrap();
    let engine = Engine::default();
    let mut bad = Vec::new();
    for entry in &expected {
        let bytes = std::fs::read(corpus.join(&entry.file)).unwrap();
        let evaluation = engine.evaluate_bytes(&bytes, &Overrides::default());
        let want: BTreeSet<(String, String)> = entry
            .violations
            .iter()
            .map(|v| (v.rule.clone(), v.path.clone()))
            .collect();
        let have: BTreeSet<(String, String)> = evaluation
            .findings
            .iter()
            .map(|f| (f.rule.to_string(), f.path.clone()))
            .collect();
        if evaluation.allowed() != entry.allowed || want != have {
            bad.push(format!(
                "{}: allowed {} (want {}); missing {:?}; extra {:?}",
                entry.file,
                evaluation.allowed(),
                entry.allowed,
                want.difference(&have).collect::<Vec<_>>(),
                have.difference(&want).collect::<Vec<_>>(),
            ));
        }
    }
    (expected.len(), bad)
}

fn assert_corpus(corpus: &Path) {
    let (total, bad) = mismatches(corpus);
    assert!(
        bad.is_empty(),
        "{} of {total} files of {} differ from expected.json:\n{}",
        bad.len(),
        corpus.display(),
        bad.join("\n")
    );
    println!("{}: {total}/{total} files match", corpus.display());
}

#[test]
fn project_corpus_conformance() {
    assert_corpus(&common::fixtures().join("corpus"));
}

/// `../shared`, which CI always has; run through `scripts/test` (or `--run-ignored all`).
fn shared_dir() -> std::path::PathBuf {
    common::shared_dir().expect("../shared is not beside this checkout")
}

#[test]
#[ignore = "needs ../shared beside the checkout (CI has it; scripts/test runs it when present)"]
fn shared_corpus_conformance() {
    assert_corpus(&shared_dir().join("corpus"));
}

/// 297 documents real teams wrote: the same bar as the corpus.
#[test]
#[ignore = "needs ../shared beside the checkout (CI has it; scripts/test runs it when present)"]
fn shared_wild_conformance() {
    assert_corpus(&shared_dir().join("wild"));
}
