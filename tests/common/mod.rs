//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod audit_replica;
pub mod fake_api;
pub mod hostile;
pub mod mock_api;
pub mod server;

use std::path::{Path, PathBuf};

pub fn project_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures() -> PathBuf {
    project_dir().join("tests/fixtures")
}

/// Self-managed certificates as the chart sets them up: the Secret `asyncapi-guard-tls` in
/// `guard`, kept in the configuration `asyncapi-guard`'s caBundle.
pub fn self_managed(
    client: kube::Client,
    dir: &Path,
) -> asyncapi_guard::webhook::certificates::SelfManaged {
    asyncapi_guard::webhook::certificates::SelfManaged {
        client,
        namespace: "guard".into(),
        secret: "asyncapi-guard-tls".into(),
        webhook_configuration: Some("asyncapi-guard".into()),
        dns_names: vec!["asyncapi-guard.guard.svc".into()],
        dir: dir.to_owned(),
        owner: None,
    }
}

/// The `response` of an AdmissionReview answer.
pub fn response(review: &serde_json::Value) -> &serde_json::Value {
    &review["response"]
}

/// The admission warnings of an AdmissionReview answer (none when it has none).
pub fn warnings(review: &serde_json::Value) -> Vec<String> {
    review["response"]["warnings"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w.as_str().map(str::to_owned))
        .collect()
}

/// `../shared`, when this checkout sits beside it (CI always; a fresh clone never).
pub fn shared_dir() -> Option<PathBuf> {
    let dir = project_dir().join("../shared");
    dir.is_dir().then_some(dir)
}

/// The binary under test: this build's, or the one `ASYNCAPI_GUARD_BINARY` names (CI runs
/// the tests that drive the binary once more on the image's static build).
pub fn binary() -> PathBuf {
    std::env::var_os("ASYNCAPI_GUARD_BINARY").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_asyncapi-guard")),
        PathBuf::from,
    )
}

/// The entries of a `--format json` report (`check`, `audit`): each file, whether it is
/// allowed, and whether it is unguarded.
pub fn report_files(report: &serde_json::Value) -> Vec<(String, bool, bool)> {
    report["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["file"].as_str().unwrap_or_default().to_owned(),
                f["allowed"] == true,
                f["unguarded"] == true,
            )
        })
        .collect()
}

/// An `AsyncAPI` whose spec nests `depth` objects deep: deeper than serde_json's recursion
/// limit (128) when `depth` is over it, where a cluster client that decodes objects into
/// values stops.
pub fn nested_asyncapi(name: &str, namespace: &str, depth: usize) -> serde_json::Value {
    let mut nested = serde_json::json!("bottom");
    for _ in 0..depth {
        nested = serde_json::json!({ "a": nested });
    }
    serde_json::json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": {"asyncapi": "3.0.0", "info": {"title": "t", "version": "1", "x-nested": nested}}})
}
