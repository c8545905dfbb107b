//! The loader against the public suites in `../shared/conformance` (CI has them; a fresh
//! clone does not, so these are `#[ignore]`d there and `scripts/test` runs them when it is there):
//! the YAML test suite (every valid case loads, and equals its `in.json` document by
//! document; every error case is refused as a syntax error) and JSONTestSuite (every `y_`
//! case loads with JSON's meaning; no `n_` or `i_` case crashes or hangs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};

use asyncapi_guard::engine::document::{self, Limits, LoadError, value::to_json};
use asyncapi_guard::engine::{Engine, Overrides};
use serde_json::Value as Json;

const NEEDS_SHARED: &str = "../shared/conformance is not beside this checkout";

fn shared_conformance() -> PathBuf {
    common::shared_dir()
        .map(|dir| dir.join("conformance"))
        .filter(|dir| dir.is_dir())
        .expect(NEEDS_SHARED)
}

/// Cases that are valid YAML but that docs/policy.md refuses after loading, with the reason.
/// Anything else that a valid case fails on is a loader defect.
fn policy_refusal(error: &LoadError) -> Option<&'static str> {
    match error {
        LoadError::DuplicateKey { .. } => Some("duplicate keys are refused (docs/policy.md)"),
        LoadError::ComplexKey { .. } => Some("non-scalar keys are refused (docs/policy.md)"),
        LoadError::Empty => Some("a stream of comments only holds no document to check"),
        _ => None,
    }
}

struct Case {
    id: String,
    dir: PathBuf,
}

fn yaml_cases(root: &Path) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let id = dir.file_name().unwrap().to_string_lossy().into_owned();
        if dir.join("in.yaml").is_file() {
            cases.push(Case { id, dir });
        } else {
            let mut subs: Vec<_> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|path| path.join("in.yaml").is_file())
                .collect();
            subs.sort();
            for sub in subs {
                let sub_id = sub.file_name().unwrap().to_string_lossy().into_owned();
                cases.push(Case {
                    id: format!("{id}/{sub_id}"),
                    dir: sub,
                });
            }
        }
    }
    cases
}

/// Numbers compare by value: the suite writes `1.0` where the loader may keep `1`.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(key, a)| y.get(key).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

fn json_stream(text: &str) -> Vec<Json> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Json>()
        .map(|value| value.unwrap())
        .collect()
}

#[test]
#[ignore = "needs ../shared beside the checkout (CI has it; scripts/test runs it when present)"]
fn shared_yaml_test_suite() {
    let root = shared_conformance().join("yaml-test-suite");
    let cases = yaml_cases(&root);
    enough(cases.len(), &root);
    let limits = Limits::default();
    let engine = Engine::default();
    let mut wrong = Vec::new();
    let mut exempt = Vec::new();
    let (mut valid, mut invalid) = (0, 0);
    for case in &cases {
        let text = std::fs::read_to_string(case.dir.join("in.yaml")).unwrap();
        let must_fail = case.dir.join("error").exists();
        let loaded = document::load(&text, &limits);
        if must_fail {
            invalid += 1;
            match loaded {
                Ok(_) => wrong.push(format!("{}: invalid YAML was loaded", case.id)),
                Err(error) if !error.is_syntax() => wrong.push(format!(
                    "{}: refused, but not as a syntax error: {error}",
                    case.id
                )),
                Err(_) => {
                    // And the engine says so with its rule.
                    let evaluation = engine.evaluate_bytes(text.as_bytes(), &Overrides::default());
                    if !evaluation
                        .findings
                        .iter()
                        .any(|finding| finding.rule.to_string() == "document-invalid")
                        || evaluation.allowed()
                    {
                        wrong.push(format!("{}: not refused as document-invalid", case.id));
                    }
                }
            }
            continue;
        }
        valid += 1;
        let stream = match loaded {
            Ok(stream) => stream,
            Err(error) => {
                match policy_refusal(&error) {
                    Some(reason) => exempt.push(format!("{}: {reason}", case.id)),
                    None => wrong.push(format!("{}: valid YAML refused: {error}", case.id)),
                }
                continue;
            }
        };
        let Ok(expected_text) = std::fs::read_to_string(case.dir.join("in.json")) else {
            continue; // Valid, but with no JSON form (the suite says so by leaving it out).
        };
        let expected = json_stream(&expected_text);
        let have: Vec<Json> = stream
            .roots()
            .map(|root| to_json(root, limits.max_depth).unwrap())
            .collect();
        // An empty stream is no document at all; the suite writes nothing for it.
        if have.len() != expected.len() || !have.iter().zip(&expected).all(|(a, b)| same(a, b)) {
            wrong.push(format!(
                "{}: loaded {} but in.json says {}",
                case.id,
                serde_json::to_string(&have).unwrap(),
                serde_json::to_string(&expected).unwrap()
            ));
        }
    }
    report(
        &format!("yaml-test-suite: {valid} valid and {invalid} error cases"),
        &exempt,
        &wrong,
    );
}

/// A suite found where it should be is a few hundred cases, not a handful.
fn enough(cases: usize, root: &std::path::Path) {
    assert!(cases > 300, "only {cases} cases under {}", root.display());
}

/// Says which cases were exempt (and why), and fails on any that came out wrong.
fn report(suite: &str, exempt: &[String], wrong: &[String]) {
    println!(
        "{suite}; {} exempt:\n  {}",
        exempt.len(),
        exempt.join("\n  ")
    );
    assert!(
        wrong.is_empty(),
        "{} cases wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
#[ignore = "needs ../shared beside the checkout (CI has it; scripts/test runs it when present)"]
fn shared_json_test_suite() {
    let root = shared_conformance().join("JSONTestSuite/test_parsing");
    let mut files: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    enough(files.len(), &root);
    let limits = Limits::default();
    let engine = Engine::default();
    let mut wrong = Vec::new();
    let mut exempt = Vec::new();
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(file).unwrap();
        // Whatever the case, the engine answers (the test would abort on a panic, and the
        // nextest timeout catches a hang).
        let _ = engine.evaluate_bytes(&bytes, &Overrides::default());
        if !name.starts_with("y_") {
            continue;
        }
        let loaded = std::str::from_utf8(&bytes)
            .map_err(|error| error.to_string())
            .and_then(|text| {
                document::load(text, &limits)
                    .map(|stream| {
                        stream
                            .roots()
                            .map(|root| to_json(root, limits.max_depth).unwrap())
                            .collect::<Vec<_>>()
                    })
                    .map_err(|error| match policy_refusal(&error) {
                        Some(reason) => format!("EXEMPT {reason}"),
                        None => error.to_string(),
                    })
            });
        match loaded {
            Err(reason) if reason.starts_with("EXEMPT ") => {
                exempt.push(format!("{name}: {}", &reason[7..]))
            }
            Err(error) => wrong.push(format!("{name}: refused: {error}")),
            Ok(have) => {
                // JSON's meaning, as serde_json reads it (it accepts every y_ case but the
                // ones with duplicate keys, which are exempt above).
                let want: Json = serde_json::from_slice(&bytes).unwrap();
                if have.len() != 1 || !same(&have[0], &want) {
                    wrong.push(format!("{name}: loaded {have:?}, JSON says {want}"));
                }
            }
        }
    }
    report(
        &format!("JSONTestSuite: {} files", files.len()),
        &exempt,
        &wrong,
    );
}
