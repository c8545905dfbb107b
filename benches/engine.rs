//! `cargo bench --bench engine`: the engine over the corpus, over generated documents of
//! 1 KB, 100 KB and 1 MiB (many servers, channels, operations and schemes), the share of
//! that which is YAML parsing, and the hostile inputs of tests/hostile.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use asyncapi_guard::engine::{Engine, Overrides};
#[path = "../tests/common/hostile.rs"]
mod hostile;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// A v3 document of about `target` bytes: `n` production servers, channels and operations,
/// all secured, over 20 OAuth2 and SCRAM schemes, so that every rule has work to do.
pub fn generated_v3(target: usize) -> String {
    let head = "asyncapi: 3.0.0\ninfo:\n  title: Generated\n  version: 1.0.0\n";
    let per_item = 560; // bytes a server + channel + operation take, measured
    let n = (target.saturating_sub(2_000) / per_item).max(1);
    let mut servers = String::from("servers:\n");
    let mut channels = String::from("channels:\n");
    let mut operations = String::from("operations:\n");
    for i in 0..n {
        let scheme = i % 20;
        let _ = write!(
            servers,
            "  prod-{i}:\n    host: broker-{i}.example.com:9093\n    protocol: kafka-secure\n    security:\n      - $ref: '#/components/securitySchemes/s{scheme}'\n    tags:\n      - name: production\n"
        );
        let _ = write!(
            channels,
            "  orders{i}:\n    address: orders.{i}.placed\n    messages:\n      placed:\n        payload:\n          type: object\n          properties:\n            id: {{type: string}}\n            amount: {{type: number, minimum: 0}}\n"
        );
        let _ = write!(
            operations,
            "  send{i}:\n    action: send\n    channel:\n      $ref: '#/channels/orders{i}'\n    security:\n      - $ref: '#/components/securitySchemes/s{scheme}'\n"
        );
    }
    let mut components = String::from("components:\n  securitySchemes:\n");
    for s in 0..20 {
        if s % 2 == 0 {
            let _ = write!(
                components,
                "    s{s}:\n      type: oauth2\n      flows:\n        clientCredentials:\n          tokenUrl: https://auth.example.com/token\n          availableScopes:\n            orders:read: read\n            orders:write: write\n      scopes: [orders:write]\n"
            );
        } else {
            let _ = write!(components, "    s{s}:\n      type: scramSha512\n");
        }
    }
    format!("{head}{servers}{channels}{operations}{components}")
}

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
        group.bench_with_input(
            BenchmarkId::new("evaluate json value (custom resource)", name),
            &value,
            |b, value| b.iter(|| engine.evaluate_json(value, &Overrides::default())),
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
