//! `cargo bench --bench engine`: the engine over the corpus, over generated documents of
//! 1 KB, 100 KB and 1 MiB (many servers, channels, operations and schemes), the share of
//! that which is YAML parsing, and the hostile inputs of tests/hostile.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use asyncapi_guard::audit::{Audited, asyncapi_resource};
use asyncapi_guard::engine::{Engine, Overrides};
use asyncapi_guard::kubernetes::exceptions::ExceptionSet;
use asyncapi_guard::kubernetes::raw_object::RawObject;
use asyncapi_guard::service::state::ActiveConfig;
use k8s_openapi::jiff::Timestamp;
mod generated;
#[path = "../tests/common/hostile.rs"]
mod hostile;

use generated::generated_v3;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// The binary's allocator (src/main.rs), so that what is measured is what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn corpus(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    let dir = if dir.is_dir() {
        dir
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
    };
    let expected: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let files: Vec<Vec<u8>> = expected
        .iter()
        .map(|e| std::fs::read(dir.join(e["file"].as_str().unwrap())).unwrap())
        .collect();
    let bytes: usize = files.iter().map(Vec::len).sum();
    let engine = Engine::default();
    let mut group = c.benchmark_group("corpus");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function(format!("{} files", files.len()), |b| {
        b.iter(|| {
            for file in &files {
                std::hint::black_box(engine.evaluate_bytes(file, &Overrides::default()));
            }
        })
    });
    group.finish();
}

fn generated(c: &mut Criterion) {
    let engine = Engine::default();
    let mut group = c.benchmark_group("generated");
    group.measurement_time(Duration::from_secs(8));
    for (name, size) in [("1KB", 1_024), ("100KB", 100 * 1024), ("1MiB", 1024 * 1024)] {
        let yaml = generated_v3(size);
        let evaluation = engine.evaluate_text(&yaml, &Overrides::default());
        assert!(
            evaluation.allowed(),
            "the generated document is secure: {:?}",
            evaluation.findings.first()
        );
        group.throughput(Throughput::Bytes(yaml.len() as u64));
        group.bench_with_input(BenchmarkId::new("evaluate yaml", name), &yaml, |b, yaml| {
            b.iter(|| engine.evaluate_text(yaml, &Overrides::default()))
        });
        group.bench_with_input(
            BenchmarkId::new("load yaml only", name),
            &yaml,
            |b, yaml| b.iter(|| engine.load(yaml).map(|s| s.tree.len())),
        );
        let stream = engine.load(&yaml).unwrap();
        let value = asyncapi_guard::engine::document::value::to_json(
            stream.tree.node(stream.documents[0].0),
            100,
        )
        .unwrap();
        let json = serde_json::to_string(&value).unwrap();
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("evaluate json text", name),
            &json,
            |b, json| b.iter(|| engine.evaluate_text(json, &Overrides::default())),
        );
        // The audit's path for a custom resource: the object's compact JSON, as the API
        // server lists it, decoded for its metadata and read by the engine's JSON reader.
        let object = serde_json::json!({
            "apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
            "metadata": {"name": "orders", "namespace": "payments", "uid": "u", "resourceVersion": "1"},
            "spec": value})
        .to_string();
        group.throughput(Throughput::Bytes(object.len() as u64));
        // Made once, as the audit makes them once for all its objects.
        let (active, exceptions, resource, labels) = (
            ActiveConfig::default(),
            ExceptionSet::default(),
            asyncapi_resource(),
            Default::default(),
        );
        let judge = active.judge(&exceptions, Timestamp::UNIX_EPOCH);
        group.bench_with_input(
            BenchmarkId::new("audit a custom resource", name),
            &object,
            |b, object| {
                b.iter(|| {
                    let object = RawObject::from_json(object).unwrap();
                    Audited::judge(&judge, &resource, &object, &labels)
                })
            },
        );
    }
    group.finish();
}

fn hostile(c: &mut Criterion) {
    let engine = Engine::default();
    let inputs = [
        ("alias bomb", hostile::alias_bomb()),
        ("2,000-deep block nesting", hostile::deep_block(2_000)),
        ("10,000-deep flow nesting", hostile::deep_flow(10_000)),
        ("10,000-deep JSON nesting", hostile::deep_json(10_000)),
        ("5 MiB document", hostile::padded(5 * 1024 * 1024)),
    ];
    let mut group = c.benchmark_group("hostile");
    for (name, input) in &inputs {
        group.bench_function(*name, |b| {
            b.iter(|| engine.evaluate_bytes(input.as_bytes(), &Overrides::default()))
        });
    }
    group.finish();
}

criterion_group!(benches, corpus, generated, hostile);
criterion_main!(benches);
