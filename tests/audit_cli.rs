//! `asyncapi-guard audit` as a user runs it: a kubeconfig and a context that point at a fake
//! API server (plain HTTP, in this process), namespaces, every format, the exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::process::Output;

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use serde_json::{Value, json};

const INSECURE: &str =
    "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

fn config_maps(namespace: &str) -> Vec<Value> {
    vec![
        json!({"metadata": {"name": "orders", "namespace": namespace, "labels": {"asyncapi-guard.io/document": "true"}},
               "data": {"asyncapi.yaml": INSECURE}}),
        json!({"metadata": {"name": "kube-root-ca.crt", "namespace": namespace}, "data": {"ca.crt": "-----BEGIN CERTIFICATE-----"}}),
        json!({"metadata": {"name": "legacy", "namespace": namespace}, "data": {"api.json": "{\"asyncapi\": \"2.6.0\"}"}}),
    ]
}

/// One page of `items`, `limit` long, from the offset in the continue token.
fn page(kind: &str, items: Vec<Value>, query: &HashMap<String, String>) -> Json<Value> {
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(500);
    let start: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let end = (start + limit).min(items.len());
    let mut metadata = json!({"resourceVersion": "1"});
    if end < items.len() {
        metadata["continue"] = json!(end.to_string());
    }
    Json(
        json!({"apiVersion": "v1", "kind": kind, "metadata": metadata, "items": items[start..end].to_vec()}),
    )
}

async fn fake_api() -> std::net::SocketAddr {
    let app = Router::new()
        .route(
            "/api/v1/namespaces/{ns}/configmaps",
            get(|Path(ns): Path<String>, Query(q): Query<HashMap<String, String>>| async move { page("ConfigMapList", config_maps(&ns), &q) }),
        )
        .route(
            "/api/v1/configmaps",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                page("ConfigMapList", [config_maps("payments"), config_maps("billing")].concat(), &q)
            }),
        )
        .route(
            "/apis/asyncapi-guard.io/v1alpha1/namespaces/{ns}/asyncapis",
            get(|Path(ns): Path<String>, Query(q): Query<HashMap<String, String>>| async move {
                let mut items = vec![json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
                    "metadata": {"name": "hello", "namespace": ns},
                    "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}})];
                if ns == "deep" {
                    items.push(common::nested_asyncapi("nested", &ns, 150));
                }
                page("AsyncAPIList", items, &q)
            }),
        )
        .route(
            "/apis/asyncapi-guard.io/v1alpha1/asyncapis",
            get(|| async { (StatusCode::NOT_FOUND, Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "the server could not find the requested resource"}))).into_response() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

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
    let addr = fake_api().await;
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
    let files: Vec<(String, bool, bool)> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                f["allowed"].as_bool().unwrap(),
                f["unguarded"] == true,
            )
        })
        .collect();
    assert_eq!(
        files,
        [
            (
                "ConfigMap/payments/orders/data/asyncapi.yaml".to_owned(),
                false,
                false
            ),
            (
                "ConfigMap/payments/legacy/data/api.json".to_owned(),
                true,
                true
            ),
            ("AsyncAPI/payments/hello/spec".to_owned(), false, false),
        ]
    );
    assert_eq!(report["files"][0]["violations"][0]["line"], 3);

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

    // All namespaces; the cluster-wide AsyncAPI list is refused (no CRD): said, not fatal.
    let out = audit(args(&config, &["-A", "--format", "sarif"])).await;
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
    let addr = fake_api().await;
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
