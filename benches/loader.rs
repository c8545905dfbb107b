//! `cargo bench --bench loader`: choosing the parser with numbers (issue 9). One realistic
//! 1 MiB AsyncAPI document (benches/generated.rs), side by side in one run:
//!
//! - `yaml events`: what each maintained, permissively licensed YAML parser takes to emit its
//!   events: saphyr-parser 0.3.3 (the loader's parser before, and the baseline of the speed
//!   targets) and granit-parser 2.2 in strict mode (the loader's parser now);
//! - `load`: the loader into the document tree, with positions: YAML by the block reader
//!   (the fast path, what `check` uses on this document), YAML by the full parser alone
//!   (granit's events into the tree: what any document the block reader gives up on costs),
//!   and the same document as JSON, beside serde_json building a `Value` of that JSON;
//! - `check process`: the whole `asyncapi-guard check` process on the file, as CI runs it
//!   (`ASYNCAPI_GUARD_BINARY` names another build of it, such as the image's).
//!
//! yaml-rust2 (saphyr's ancestor, with its bugs) and libyaml-safer (69 failures of the YAML
//! test suite) were measured in the same way while choosing (benches/README.md) but are not
//! dependencies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod generated;

use std::process::Command;
use std::time::Duration;

use asyncapi_guard::engine::document::{self, Limits, value::to_json, yaml};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The binary's allocator (src/main.rs), for every parser alike: what is measured is what
/// ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use generated::generated_v3;

fn saphyr_events(text: &str) -> usize {
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    let mut n = 0;
    while let Some(event) = parser.next_event() {
        event.unwrap();
        n += 1;
    }
    n
}

fn granit_events(text: &str) -> usize {
    let options = granit_parser::options! { strict_indentation: true };
    let mut parser = granit_parser::Parser::new_from_str_with_options(text, options);
    let mut n = 0;
    while let Some(event) = parser.next_event() {
        event.unwrap();
        n += 1;
    }
    n
}

fn documents() -> (String, String) {
    let yaml = generated_v3(1 << 20);
    let limits = Limits::default();
    let stream = document::load(&yaml, &limits).unwrap();
    let json = serde_json::to_string_pretty(&to_json(stream.roots().next().unwrap(), 100).unwrap())
        .unwrap();
    (yaml, json)
}

fn parsers(c: &mut Criterion) {
    let (yaml, json) = documents();
    let limits = Limits::default();

    let mut events = c.benchmark_group("yaml events, 1 MiB");
    events.throughput(Throughput::Bytes(yaml.len() as u64));
    events.bench_function("saphyr-parser 0.3.3", |b| b.iter(|| saphyr_events(&yaml)));
    events.bench_function("granit-parser 2.2 strict", |b| {
        b.iter(|| granit_events(&yaml))
    });
    events.finish();

    let mut load = c.benchmark_group("load, 1 MiB document");
    load.throughput(Throughput::Bytes(yaml.len() as u64));
    load.bench_function("YAML into the tree, block reader", |b| {
        b.iter(|| yaml::parse_block(&yaml, &limits).unwrap().tree.len())
    });
    load.bench_function("YAML into the tree, full parser", |b| {
        b.iter(|| yaml::parse_full(&yaml, &limits).unwrap().tree.len())
    });
    load.throughput(Throughput::Bytes(json.len() as u64));
    load.bench_function("JSON into the tree", |b| {
        b.iter(|| document::load(&json, &limits).unwrap().tree.len())
    });
    load.bench_function("JSON into serde_json::Value", |b| {
        b.iter(|| serde_json::from_str::<serde_json::Value>(&json).unwrap())
    });
    load.finish();
}

fn check_process(c: &mut Criterion) {
    let (yaml, json) = documents();
    let dir = tempfile::tempdir().unwrap();
    let yaml_path = dir.path().join("generated.yaml");
    let json_path = dir.path().join("generated.json");
    std::fs::write(&yaml_path, &yaml).unwrap();
    std::fs::write(&json_path, &json).unwrap();
    // What ships is the image's static binary (scripts/release-build): set
    // ASYNCAPI_GUARD_BINARY=target/image/asyncapi-guard to time it instead of this build's.
    let binary = std::env::var_os("ASYNCAPI_GUARD_BINARY")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_asyncapi-guard").into());
    eprintln!("check process: {}", binary.to_string_lossy());
    let mut group = c.benchmark_group("check process, 1 MiB document");
    group.sample_size(20);
    for (name, path) in [("YAML", &yaml_path), ("JSON", &json_path)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let status = Command::new(&binary)
                    .arg("check")
                    .arg(path)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .unwrap();
                assert!(status.success());
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = parsers, check_process
}
criterion_main!(benches);
