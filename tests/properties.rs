//! Random mutations of corpus documents never panic, give the same findings twice, and a
//! document judged as JSON text (a file) gets the same findings as the same document in a
//! custom resource's spec, as the audit reads one from the API server, positions aside.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::OnceLock;

use asyncapi_guard::audit::{Audited, asyncapi_resource};
use asyncapi_guard::engine::finding::Finding;
use asyncapi_guard::engine::{Engine, Evaluation, Overrides};
use asyncapi_guard::kubernetes::exceptions::ExceptionSet;
use asyncapi_guard::kubernetes::raw_object::RawObject;
use asyncapi_guard::service::state::ActiveConfig;
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use serde_json::Value;

fn corpus() -> &'static Vec<Vec<u8>> {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = common::fixtures().join("corpus");
        let expected: Vec<Value> =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        expected
            .iter()
            .map(|e| std::fs::read(dir.join(e["file"].as_str().unwrap())).unwrap())
            .collect()
    })
}

/// Text fragments that stress YAML and the rules.
const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    "- ",
    "\t",
    "'",
    "\"",
    "&a ",
    "*a",
    "<<: *a\n",
    "~",
    "null",
    "{}",
    "[]",
    "\n---\n",
    "$ref: '#/components/securitySchemes/x'",
    "$ref: 'http://x'",
    "security: []\n",
    "- {}\n",
    "production",
    "type: oauth2\n",
    "\u{feff}",
    "\u{0}",
    "#",
    "!!str ",
    "? ",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete { at: usize, len: usize },
    Insert { at: usize, fragment: usize },
    DuplicateLine { line: usize },
    SwapLines { a: usize, b: usize },
    Truncate { at: usize },
    FlipByte { at: usize, bit: u8 },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Edit::Delete { at, len }),
        (any::<usize>(), 0..FRAGMENTS.len())
            .prop_map(|(at, fragment)| Edit::Insert { at, fragment }),
        any::<usize>().prop_map(|line| Edit::DuplicateLine { line }),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines { a, b }),
        any::<usize>().prop_map(|at| Edit::Truncate { at }),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipByte { at, bit }),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len().max(1);
        match *e {
            Edit::Delete { at, len } => {
                let at = at % n;
                let end = (at + len).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Edit::Insert { at, fragment } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, FRAGMENTS[fragment].bytes());
            }
            Edit::DuplicateLine { line } | Edit::SwapLines { a: line, .. } if bytes.is_empty() => {
                let _ = line;
            }
            Edit::DuplicateLine { line } => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let i = line % lines.len();
                lines.insert(i, lines[i].clone());
                bytes = lines.join(&b'\n');
            }
            Edit::SwapLines { a, b } => {
                let mut lines: Vec<Vec<u8>> =
                    bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let len = lines.len();
                lines.swap(a % len, b % len);
                bytes = lines.join(&b'\n');
            }
            Edit::Truncate { at } => bytes.truncate(at % n),
            Edit::FlipByte { at, bit } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= 1 << bit;
                }
            }
        }
    }
    bytes
}

#[derive(Debug, Clone)]
enum Change {
    Remove,
    Replace(Value),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        Just(Change::Remove),
        Just(Change::Replace(Value::Null)),
        Just(Change::Replace(serde_json::json!({}))),
        Just(Change::Replace(serde_json::json!([]))),
        Just(Change::Replace(serde_json::json!([{}]))),
        Just(Change::Replace(serde_json::json!("production"))),
        Just(Change::Replace(serde_json::json!(2.6))),
        Just(Change::Replace(
            serde_json::json!({"$ref": "#/components/securitySchemes/nope"})
        )),
        Just(Change::Replace(serde_json::json!({"$ref": "#/servers"}))),
        Just(Change::Replace(
            serde_json::json!({"type": "oauth2", "flows": {}})
        )),
    ]
}

/// Applies `change` at the `pick`-th node (pre-order) of `value`.
fn mutate(value: &mut Value, pick: usize, change: &Change) {
    fn walk(value: &mut Value, counter: &mut usize, pick: usize, change: &Change) -> bool {
        let children: Vec<String> = match value {
            Value::Object(map) => map.keys().cloned().collect(),
            Value::Array(items) => (0..items.len()).map(|i| i.to_string()).collect(),
            _ => return false,
        };
        for key in children {
            *counter += 1;
            if *counter == pick {
                match (value, change) {
                    (Value::Object(map), Change::Remove) => {
                        map.remove(&key);
                    }
                    (Value::Array(items), Change::Remove) => {
                        items.remove(key.parse::<usize>().unwrap());
                    }
                    (Value::Object(map), Change::Replace(new)) => {
                        map.insert(key, new.clone());
                    }
                    (Value::Array(items), Change::Replace(new)) => {
                        items[key.parse::<usize>().unwrap()] = new.clone();
                    }
                    _ => {}
                }
                return true;
            }
            let child = match value {
                Value::Object(map) => map.get_mut(&key),
                Value::Array(items) => items.get_mut(key.parse::<usize>().unwrap()),
                _ => None,
            };
            if child.is_some_and(|child| walk(child, counter, pick, change)) {
                return true;
            }
        }
        false
    }
    let mut counter = 0;
    walk(value, &mut counter, pick, change);
}

/// `spec` judged as the audit judges an `AsyncAPI` it listed: the object's compact JSON,
/// as the API server sends it.
fn as_custom_resource(engine: &Engine, spec: &Value) -> Evaluation {
    let object = serde_json::json!({
        "apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
        "metadata": {"name": "orders", "namespace": "payments"}, "spec": spec});
    let object = RawObject::from_json(&object.to_string()).unwrap();
    let active = ActiveConfig {
        engine: engine.clone(),
        ..ActiveConfig::default()
    };
    let audited = Audited::judge(
        &active.judge(&ExceptionSet::default(), Timestamp::UNIX_EPOCH),
        &asyncapi_resource(),
        &object,
        &Default::default(),
    );
    let [document] = audited.documents.as_slice() else {
        panic!("one document: {audited:?}")
    };
    document.evaluation.clone()
}

fn without_positions(findings: &[Finding]) -> Vec<(String, String, String)> {
    let mut out: Vec<_> = findings
        .iter()
        .map(|f| (f.rule.to_string(), f.path.clone(), f.message.clone()))
        .collect();
    out.sort();
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn text_mutations_never_panic_and_are_deterministic(
        file in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..6),
    ) {
        let source = &corpus()[file.index(corpus().len())];
        let mutated = apply(source.clone(), &edits);
        let engine = Engine::default();
        let first = engine.evaluate_bytes(&mutated, &Overrides::default());
        let second = engine.evaluate_bytes(&mutated, &Overrides::default());
        prop_assert_eq!(&first, &second);
        for finding in &first.findings {
            prop_assert!(!finding.message.is_empty());
            prop_assert!(finding.path.is_empty() || finding.path.starts_with('/'));
        }
    }

    #[test]
    fn structural_mutations_agree_between_a_file_and_a_custom_resource(
        file in any::<prop::sample::Index>(),
        changes in prop::collection::vec((1usize..400, change()), 1..4),
    ) {
        let source = &corpus()[file.index(corpus().len())];
        let engine = Engine::default();
        // Files that are not one document of data (not UTF-8, not YAML, a stream of several,
        // aliases nested too deep to write out) have no single value to mutate.
        let text = std::str::from_utf8(source);
        prop_assume!(text.is_ok(), "not UTF-8");
        let stream = engine.load(text.unwrap());
        prop_assume!(stream.is_ok(), "does not load");
        let stream = stream.unwrap();
        prop_assume!(stream.documents.len() == 1, "not one document");
        let value = asyncapi_guard::engine::document::value::to_json(stream.roots().next().unwrap(), 100);
        prop_assume!(value.is_ok(), "cannot be written out");
        let mut value = value.unwrap();
        for (pick, change) in &changes {
            mutate(&mut value, *pick, change);
        }
        let as_text = serde_json::to_string_pretty(&value).unwrap();
        let from_text = engine.evaluate_text(&as_text, &Overrides::default());
        let again = engine.evaluate_text(&as_text, &Overrides::default());
        prop_assert_eq!(&from_text, &again);
        // A custom resource's spec is an object (the CRD's schema says so): a corpus file
        // whose top level is something else has no custom resource to compare with.
        prop_assume!(value.is_object(), "the top level is not a mapping");
        let from_resource = as_custom_resource(&engine, &value);
        prop_assert_eq!(without_positions(&from_text.findings), without_positions(&from_resource.findings));
        prop_assert_eq!(from_text.allowed(), from_resource.allowed());
    }
}
