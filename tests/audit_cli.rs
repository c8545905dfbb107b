//! `asyncapi-guard audit` as a user runs it: a kubeconfig and a context that point at the
//! fake API server (plain HTTP, in this process), namespaces, every format, the exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;

use common::fake_api::{self, FakeApi, FakeHttp};
use serde_json::{Value, json};

const INSECURE: &str =
    "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

fn config_maps(namespace: &str) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "orders", "namespace": namespace, "labels": {"asyncapi-guard.io/document": "true"}},
               "data": {"asyncapi.yaml": INSECURE}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kube-root-ca.crt", "namespace": namespace}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "legacy", "namespace": namespace}, "data": {"api.json": "{\"asyncapi\": \"2.6.0\"}"}}),
    ]
}

fn hello(namespace: &str) -> Value {
    json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
           "metadata": {"name": "hello", "namespace": namespace},
           "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}})
}

/// ConfigMaps in payments and billing, an AsyncAPI in payments, and in deep one nested
/// deeper than the depth limit; served over HTTP.
async fn cluster() -> (FakeApi, FakeHttp) {
    let api = FakeApi::new();
    for namespace in ["payments", "billing"] {
        for object in config_maps(namespace) {
            api.create(fake_api::CONFIG_MAPS, Some(namespace), object);
        }
    }
    api.create(fake_api::ASYNCAPIS, Some("payments"), hello("payments"));
    api.create(fake_api::ASYNCAPIS, Some("deep"), hello("deep"));
    api.create(
        fake_api::ASYNCAPIS,
        Some("deep"),
        common::nested_asyncapi("nested", "deep", 150),
    );
    let http = api.serve_http().await;
    (api, http)
}

/// Two contexts on the fake API server: `fake` in payments, `other` (current) in billing.
fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: auditor, namespace: payments}}\n- name: other\n  context: {{cluster: fake, user: auditor, namespace: billing}}\ncurrent-context: other\nusers:\n- name: auditor\n  user: {{token: not-a-real-token}}\n"
        ),
    )
    .unwrap();
    path
}

async fn audit(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(common::binary())
            .arg("audit")
            .args(args)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn args(kubeconfig: &std::path::Path, rest: &[&str]) -> Vec<String> {
    let mut out = vec!["--kubeconfig".to_owned(), kubeconfig.display().to_string()];
    out.extend(rest.iter().map(|s| (*s).to_owned()));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_lists_judges_and_reports_like_check() {
    let (api, http) = cluster().await;
    let addr = http.addr;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{addr}"));

    // The context's namespace, in JSON, one object per page.
    let out = audit(args(
        &config,
        &["--context", "fake", "--format", "json", "--page-size", "1"],
    ))
    .await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        common::report_files(&report),
        [
            (
                "ConfigMap/payments/legacy/data/api.json".to_owned(),
                true,
                true
            ),
            (
                "ConfigMap/payments/orders/data/asyncapi.yaml".to_owned(),
                false,
                false
            ),
            ("AsyncAPI/payments/hello/spec".to_owned(), false, false),
        ]
    );
    assert_eq!(report["files"][1]["violations"][0]["line"], 3);
    // Page by page: one object a page.
    let pages = api
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v1/namespaces/payments/configmaps")
        .count();
    assert_eq!(pages, 3);

    // Text: finding lines as check prints them, the unguarded ones apart.
    let out = audit(args(&config, &["--context", "fake", "-n", "payments"])).await;
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("- ConfigMap/payments/orders/data/asyncapi.yaml:3:3 /servers/production [server-security-missing]"), "{text}");
    assert!(
        text.contains(
            "- AsyncAPI/payments/hello/spec/servers/production [server-security-missing]"
        ),
        "{text}"
    );
    assert!(text.contains("unguarded: these ConfigMaps carry AsyncAPI without the asyncapi-guard.io/document label"), "{text}");
    assert!(
        text.contains(
            "* ConfigMap/payments/legacy/data/api.json (AsyncAPI 2.6.0): meets the policy"
        ),
        "{text}"
    );

    // All namespaces; without the AsyncAPI CRD: said, not fatal.
    api.set_installed(fake_api::ASYNCAPIS, false);
    let out = audit(args(&config, &["-A", "--format", "sarif"])).await;
    api.set_installed(fake_api::ASYNCAPIS, true);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not audited: asyncapis.asyncapi-guard.io")
    );
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        2,
        "one finding per labelled ConfigMap, in two namespaces"
    );

    // The current context (billing) by default.
    let out = audit(args(&config, &["--format", "json"])).await;
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        report["files"][0]["file"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap/billing/")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_nested_deeper_than_the_depth_limit_is_reported_and_the_others_still_judged() {
    let (_api, http) = cluster().await;
    let addr = http.addr;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{addr}"));
    let out = audit(args(
        &config,
        &["--context", "fake", "-n", "deep", "--format", "json"],
    ))
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("asyncapis"), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let verdicts: Vec<(&str, Vec<&str>)> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let rules = f["violations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["rule"].as_str().unwrap())
                .collect();
            (f["file"].as_str().unwrap(), rules)
        })
        .filter(|(file, _)| file.starts_with("AsyncAPI/"))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("AsyncAPI/deep/hello/spec", vec!["server-security-missing"]),
            ("AsyncAPI/deep/nested/spec", vec!["document-invalid"]),
        ],
        "{report:#}"
    );
    let nested = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == "AsyncAPI/deep/nested/spec")
        .map(|f| &f["violations"][0]["message"])
        .unwrap();
    assert!(
        nested.as_str().unwrap().contains("100"),
        "the configured depth limit is named: {nested}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = kubeconfig(dir.path(), &format!("http://{closed}"));
    let out = audit(args(&config, &["--context", "fake"])).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot list the cluster's objects"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let missing = audit(vec![
        "--kubeconfig".into(),
        dir.path().join("nope").display().to_string(),
    ])
    .await;
    assert_eq!(missing.status.code(), Some(2));
}
