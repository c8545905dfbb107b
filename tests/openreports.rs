//! The OpenReports the audit writes validate against the CRDs' schemas (v0.2.1, kept in
//! tests/fixtures/openreports), so the API server accepts them as they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use asyncapi_guard::audit::list::census;
use asyncapi_guard::audit::reports::{ObjectResults, render_stream, reports_of};
use asyncapi_guard::config::Config;
use asyncapi_guard::kubernetes::extract::{CarrierKind, ExtractConfig};
use asyncapi_guard::service::state::ActiveConfig;
use common::fake_api::{self, FakeApi};
use serde_json::json;

const VALIDATE: &str = r#"
import json, sys, yaml, jsonschema
schemas = {}
for path in sys.argv[1:3]:
    crd = yaml.safe_load(open(path))
    schemas[crd["spec"]["names"]["kind"]] = (crd["spec"]["scope"], crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])
text = open(sys.argv[3]).read()
reports = [d for d in yaml.safe_load_all(text) if d]
kinds = sorted(r["kind"] for r in reports)
assert kinds == ["ClusterReport", "Report", "Report"], kinds
for report in reports:
    assert report["apiVersion"] == "openreports.io/v1alpha1"
    scope, schema = schemas[report["kind"]]
    jsonschema.validate(report, schema)
    assert ("namespace" in report["metadata"]) == (scope == "Namespaced"), report["metadata"]
print(f"{len(reports)} reports valid")
"#;

#[test]
#[ignore = "needs python3 with jsonschema and PyYAML (.ci/run installs them)"]
fn openreports_validate_against_the_crd() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let api = FakeApi::new();
    for (ns, labels) in [
        ("payments", json!({})),
        ("relaxed", json!({"asyncapi-guard.io/mode": "warn"})),
    ] {
        api.create(
            fake_api::NAMESPACES,
            None,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}}),
        );
    }
    let insecure =
        std::fs::read_to_string(common::project_dir().join("examples/orders-insecure.yaml"))
            .unwrap();
    let secure =
        std::fs::read_to_string(common::project_dir().join("examples/orders-secure.yaml")).unwrap();
    for (name, ns, document) in [
        ("orders", "payments", &insecure),
        ("billing", "payments", &secure),
        ("orders", "relaxed", &insecure),
    ] {
        api.create(
            fake_api::CONFIG_MAPS,
            Some(ns),
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": name, "namespace": ns, "labels": {"asyncapi-guard.io/document": "true"}},
                   "data": {"asyncapi.yaml": document}}),
        );
    }
    // A cluster-scoped carrier kind's object: in the ClusterReport.
    api.serve_kind(
        "events.example.com",
        "v1",
        "ClusterContract",
        "clustercontracts",
        false,
    );
    api.create(
        &fake_api::collection("events.example.com", "v1", "clustercontracts"),
        None,
        json!({"apiVersion": "events.example.com/v1", "kind": "ClusterContract",
               "metadata": {"name": "shared"}, "spec": {"asyncapi": insecure}}),
    );
    let carriers = ExtractConfig {
        kinds: vec![CarrierKind {
            group: "events.example.com".into(),
            kind: "ClusterContract".into(),
            field: "/spec/asyncapi".into(),
        }],
        ..ExtractConfig::default()
    };
    let census = runtime
        .block_on(async {
            let config = ActiveConfig::from(Config {
                kubernetes: carriers,
                ..Config::default()
            });
            census(&api.client("default"), &config, None, 100).await
        })
        .unwrap();
    let objects: Vec<ObjectResults> = census.audited.iter().map(ObjectResults::of).collect();
    let reports = reports_of(&objects);
    assert_eq!(reports.len(), 3);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reports.yaml");
    std::fs::write(&file, render_stream(&reports)).unwrap();
    let output = Command::new("python3")
        .args(["-c", VALIDATE])
        .arg(common::fixtures().join("openreports/openreports.io_reports.yaml"))
        .arg(common::fixtures().join("openreports/openreports.io_clusterreports.yaml"))
        .arg(&file)
        .output()
        .expect("python3");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    println!("{}", String::from_utf8_lossy(&output.stdout));
}
