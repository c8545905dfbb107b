//! Hostile input: each ends as `document-invalid`, never as a panic, a stack overflow, a hang
//! or unbounded memory. Time is measured in `cargo bench` (benches/engine.rs, group
//! `hostile`); here a generous deadline only tells a hang from an answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::hostile;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use asyncapi_guard::engine::finding::RuleId;
use asyncapi_guard::engine::{Engine, Overrides};

/// Generous: a debug build on a loaded CI machine, not a speed target.
const HANG_GUARD: Duration = Duration::from_secs(30);
/// Address space for the whole process, binary and allocator included.
const ADDRESS_SPACE_KIB: u64 = 1024 * 1024;

fn hostile_inputs() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("alias bomb", hostile::alias_bomb().into_bytes()),
        (
            "10,000-deep flow nesting",
            hostile::deep_flow(10_000).into_bytes(),
        ),
        (
            "10,000-deep JSON nesting",
            hostile::deep_json(10_000).into_bytes(),
        ),
        // ~50 MB of indentation: refused for size before parsing;
        // `deep_block_within_the_size_limit` covers the depth limit itself.
        (
            "10,000-deep block nesting",
            hostile::deep_block(10_000).into_bytes(),
        ),
        (
            "5 MiB document",
            hostile::padded(5 * 1024 * 1024).into_bytes(),
        ),
        (
            "non-UTF-8 bytes",
            b"asyncapi: 3.0.0\ninfo:\n  title: \xff\xfe\xc3\x28\n".to_vec(),
        ),
        ("empty file", Vec::new()),
        (
            "top-level array",
            b"- asyncapi: 3.0.0\n- servers: {}\n".to_vec(),
        ),
        (
            "version as a number",
            b"asyncapi: 3.0\nservers: {}\n".to_vec(),
        ),
    ]
}

fn with_deadline<T: Send + 'static>(what: &str, work: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    // Spawned threads have a 2 MiB stack, a quarter of the main thread's: recursion on
    // attacker-controlled depth would overflow here first.
    std::thread::Builder::new()
        .name(what.to_owned())
        .spawn(move || {
            let _ = tx.send(work());
        })
        .unwrap();
    rx.recv_timeout(HANG_GUARD)
        .unwrap_or_else(|_| panic!("{what}: no answer within {HANG_GUARD:?} (hang or panic)"))
}

#[test]
fn each_hostile_input_is_document_invalid_in_process() {
    for (what, bytes) in hostile_inputs() {
        let evaluation = with_deadline(what, move || {
            Engine::default().evaluate_bytes(&bytes, &Overrides::default())
        });
        let rules: Vec<RuleId> = evaluation.findings.iter().map(|f| f.rule).collect();
        assert_eq!(
            rules,
            [RuleId::DocumentInvalid],
            "{what}: {:?}",
            evaluation.findings
        );
        assert!(!evaluation.allowed(), "{what}");
        println!("{what}: {}", evaluation.findings[0].message);
    }
}

#[test]
fn deep_block_within_the_size_limit() {
    let src = hostile::deep_block(2_000);
    assert!(src.len() < 3 * 1024 * 1024);
    let evaluation = with_deadline("deep block", move || {
        Engine::default().evaluate_text(&src, &Overrides::default())
    });
    assert_eq!(evaluation.findings.len(), 1);
    assert_eq!(evaluation.findings[0].rule, RuleId::DocumentInvalid);
    assert!(
        evaluation.findings[0].message.contains("deeper than 100"),
        "{}",
        evaluation.findings[0].message
    );
}

#[test]
fn each_hostile_input_is_document_invalid_through_the_binary_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    for (what, bytes) in hostile_inputs() {
        let file = dir.path().join("input.yaml");
        std::fs::write(&file, &bytes).unwrap();
        let script =
            format!("ulimit -v {ADDRESS_SPACE_KIB} && exec \"$0\" check --format json \"$1\"");
        let child = Command::new("sh")
            .args(["-c", &script])
            .arg(common::binary())
            .arg(&file)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = with_deadline(what, move || child.wait_with_output().unwrap());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{what}: exit {:?}, stderr {stderr}",
            output.status
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let rules: Vec<&str> = json["files"][0]["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["rule"].as_str().unwrap())
            .collect();
        assert_eq!(rules, ["document-invalid"], "{what}");
    }
}
