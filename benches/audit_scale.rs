//! The in-cluster audit at scale: the real binary (`serve --audit --exceptions`) against the
//! fake API server of the tests, served over HTTP on loopback, with generated namespaces
//! and objects. For each size it prints, for a first start and for a restart with nothing
//! changed: the time until every insecure object is in the gauge and the audit is current
//! with nothing left to write, the number of write calls, and the binary's resident memory
//! once settled.
//!
//! Run with `cargo bench --bench audit_scale` (sizes: `AUDIT_SCALE_SIZES=5000,20000`).
//! The fake API server runs in this process, so its cost is on the same two cores as the
//! binary's: the times are an upper bound of the audit's own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::fake_api::{self, FakeApi};
use common::server::plain_get;
use serde_json::json;

thread_local! {
    /// How long after settling the memory is read: 5 s when measuring, 1 s as a test.
    static STEADY: Duration = if std::env::args().any(|a| a == "--bench") {
        Duration::from_secs(5)
    } else {
        Duration::from_secs(1)
    };
}

/// Labelled ConfigMaps per namespace (one in ten insecure), and AsyncAPI resources.
const PER_NAMESPACE: usize = 50;
const RESOURCES_PER_NAMESPACE: usize = 5;

/// A document of about 3 KB, different for every object.
fn document(namespace: usize, index: usize, insecure: bool) -> String {
    let security = if insecure {
        String::new()
    } else {
        "    security:\n      - $ref: '#/components/securitySchemes/sasl'\n".to_owned()
    };
    let mut channels = String::new();
    for c in 0..12 {
        channels.push_str(&format!(
            "  orders-{c}:\n    address: team-{namespace}.orders.{index}.{c}\n    description: Orders of shop {index} in region {c}, published when an order is placed or changed.\n    messages:\n      placed:\n        payload:\n          type: object\n          properties:\n            id: {{type: string}}\n            amount: {{type: number}}\n"
        ));
    }
    format!(
        "asyncapi: 3.0.0\ninfo:\n  title: Shop {namespace}-{index}\n  version: 1.0.{index}\nservers:\n  production:\n    host: kafka-{namespace}.example.com:9093\n    protocol: kafka-secure\n{security}channels:\n{channels}components:\n  securitySchemes:\n    sasl:\n      type: scramSha512\n"
    )
}

/// Populates `api` with about `objects` guarded objects; returns how many are insecure.
fn populate(api: &FakeApi, objects: usize) -> usize {
    let namespaces = objects.div_ceil(PER_NAMESPACE + RESOURCES_PER_NAMESPACE);
    let mut insecure = 0;
    for n in 0..namespaces {
        let namespace = format!("team-{n:04}");
        for i in 0..PER_NAMESPACE {
            let bad = i % 10 == 0;
            insecure += usize::from(bad);
            api.create(
                fake_api::CONFIG_MAPS,
                Some(&namespace),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": format!("api-{i}"), "namespace": namespace,
                                    "labels": {"asyncapi-guard.io/document": "true"}},
                       "data": {"asyncapi.yaml": document(n, i, bad)}}),
            );
            // As many ConfigMaps that are nobody's business.
            api.create(
                fake_api::CONFIG_MAPS,
                Some(&namespace),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": format!("settings-{i}"), "namespace": namespace},
                       "data": {"LOG_LEVEL": "info", "FEATURES": "a,b,c"}}),
            );
        }
        for i in 0..RESOURCES_PER_NAMESPACE {
            let bad = i == 0;
            insecure += usize::from(bad);
            let engine = asyncapi_guard::engine::Engine::default();
            let text = document(n, 1000 + i, bad);
            let stream = engine.load(&text).unwrap();
            let spec = asyncapi_guard::engine::document::value::to_json(
                stream.roots().next().unwrap(),
                100,
            )
            .unwrap();
            api.create(
                fake_api::ASYNCAPIS,
                Some(&namespace),
                json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
                       "metadata": {"name": format!("stream-{i}"), "namespace": namespace}, "spec": spec}),
            );
        }
    }
    insecure
}

struct Run {
    settled: Duration,
    writes: usize,
    rss_kib: u64,
}

fn rss_kib(child: &Child) -> u64 {
    std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

fn metric(text: &str, name: &str) -> Option<i64> {
    text.lines()
        .find(|l| l.split(' ').next() == Some(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn violations(text: &str) -> i64 {
    text.lines()
        .filter(|l| l.starts_with("asyncapi_guard_audit_violations{"))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<i64>().ok()))
        .sum()
}

/// Starts the binary against `kubeconfig` and waits until the audit has settled.
async fn run(api: &FakeApi, kubeconfig: &std::path::Path, identity: &str, insecure: usize) -> Run {
    let before = api.requests().len();
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let mut child = Command::new(common::binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--metrics-listen"])
        .arg(format!("127.0.0.1:{metrics_port}"))
        .args([
            "--audit",
            "--exceptions",
            "--namespace",
            "asyncapi-guard",
            "--pod-name",
            identity,
        ])
        .arg("--self-signed-dir")
        .arg(dir.path())
        .env("KUBECONFIG", kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let settled = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "did not settle"
        );
        let Ok(Ok((200, body))) = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::spawn(async move { plain_get(addr, "/metrics").await }),
        )
        .await
        else {
            continue;
        };
        let text = String::from_utf8_lossy(&body);
        if metric(&text, "asyncapi_guard_audit_current") == Some(1)
            && metric(&text, "asyncapi_guard_audit_pending_writes") == Some(0)
            && violations(&text) == i64::try_from(insecure).unwrap()
        {
            break started.elapsed();
        }
    };
    // Steady state: what it holds once the lists' pages are gone.
    tokio::time::sleep(STEADY.with(|s| *s)).await;
    let rss = rss_kib(&child);
    let writes = api.requests()[before..]
        .iter()
        .filter(|r| r.is_write() && !r.path.contains("/leases"))
        .count();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    Run {
        settled,
        writes,
        rss_kib: rss,
    }
}

/// `asyncapi-guard audit -A` against the same API: the time a client takes to list and judge
/// everything once, the floor of a restart's.
fn cli_audit(kubeconfig: &std::path::Path) -> Duration {
    let started = Instant::now();
    let output = Command::new(common::binary())
        .args(["audit", "-A", "--format", "json"])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .unwrap();
    assert!(
        output.status.code() == Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    started.elapsed()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    // As a test (`cargo test`, nextest): one small run, that the measurement still works.
    if args.iter().any(|a| a == "--list") {
        if !args.iter().any(|a| a == "--ignored") {
            println!("smoke: test");
        }
        return;
    }
    let default = if args.iter().any(|a| a == "--bench") {
        "0,5000,20000"
    } else {
        "200"
    };
    let sizes: Vec<usize> = std::env::var("AUDIT_SCALE_SIZES")
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!(
        "| guarded objects | run | time to a full gauge, current | write calls | RSS once settled | RSS per 1,000 guarded objects |"
    );
    println!("|---|---|---|---|---|---|");
    for size in sizes {
        let api = FakeApi::new();
        api.ensure_namespace("asyncapi-guard");
        let insecure = populate(&api, size);
        let http = api.serve_http().await;
        let kubeconfig = http.kubeconfig.clone();
        if size > 0 {
            let cli = tokio::task::spawn_blocking(move || cli_audit(&kubeconfig))
                .await
                .unwrap();
            println!(
                "| {size} | `audit -A` (the CLI, once) | {:.1} s | 0 | | |",
                cli.as_secs_f64()
            );
        }
        for (label, identity) in [
            ("first start", "replica-a"),
            ("restart, nothing changed", "replica-b"),
        ] {
            let run = run(&api, &http.kubeconfig, identity, insecure).await;
            let per_thousand = if size == 0 {
                String::new()
            } else {
                format!(
                    "{:.2} MiB",
                    run.rss_kib as f64 / 1024.0 / (size as f64 / 1000.0)
                )
            };
            println!(
                "| {size} | {label} | {:.1} s | {} | {:.1} MiB | {per_thousand} |",
                run.settled.as_secs_f64(),
                run.writes,
                run.rss_kib as f64 / 1024.0,
            );
        }
    }
}
