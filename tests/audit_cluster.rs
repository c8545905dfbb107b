//! `asyncapi-guard audit` against a real cluster, when KUBECONFIG names one:
//!
//!     KUBECONFIG=~/.kube/config cargo nextest run --test audit_cluster --run-ignored all
//!
//! (`scripts/test` runs it whenever KUBECONFIG is set.)
//!
//! It makes a throwaway namespace (labelled asyncapi-guard.io/mode=off, so that an installed
//! webhook leaves it alone), puts an insecure document in a labelled and in an unlabelled
//! ConfigMap, audits the namespace through the binary, and deletes the namespace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};

const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

#[tokio::test]
#[ignore = "needs a cluster: KUBECONFIG=~/.kube/config cargo nextest run --test audit_cluster --run-ignored all"]
async fn cluster_audit_of_a_real_namespace() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG must name the cluster to audit"
    );
    let client = kube::Client::try_default()
        .await
        .expect("a client for the KUBECONFIG cluster");
    let namespace = format!("asyncapi-guard-audit-test-{}", std::process::id());
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": namespace, "labels": {"asyncapi-guard.io/mode": "off"}}}))
    .unwrap();
    namespaces
        .create(&PostParams::default(), &ns)
        .await
        .expect("create the test namespace");

    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    for (name, labelled) in [("guarded", true), ("legacy", false)] {
        let mut object =
            serde_json::json!({"metadata": {"name": name}, "data": {"asyncapi.yaml": INSECURE}});
        if labelled {
            object["metadata"]["labels"] =
                serde_json::json!({"asyncapi-guard.io/document": "true"});
        }
        config_maps
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .expect("create a ConfigMap");
    }
    let output = std::process::Command::new(common::binary())
        .args([
            "audit",
            "-n",
            &namespace,
            "--format",
            "json",
            "--page-size",
            "1",
        ])
        .output()
        .unwrap();
    let _ = namespaces
        .delete(&namespace, &DeleteParams::default())
        .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let files = report["files"].as_array().unwrap();
    let entry = |name: &str| {
        files
            .iter()
            .find(|f| f["file"] == format!("ConfigMap/{namespace}/{name}/data/asyncapi.yaml"))
            .unwrap_or_else(|| panic!("no entry for {name}: {report}"))
    };
    assert_eq!(
        entry("guarded")["violations"][0]["rule"],
        "server-security-missing"
    );
    assert!(entry("guarded")["unguarded"].is_null());
    assert_eq!(entry("legacy")["unguarded"], true);
    println!(
        "{namespace}: {} documents audited through the binary",
        files.len()
    );
}
