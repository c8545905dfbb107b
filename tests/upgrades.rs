//! Upgrades of the webhook configuration while the server keeps its `caBundle`, against the
//! fake API server (made to behave as `../shared/fixtures/apiserver/vwc-*` records): Helm 4's
//! server-side apply, `kubectl apply --server-side`, and Helm 3's client-side three-way
//! merge, adding and removing webhook entries; the caBundle stays set on every entry
//! throughout, and an installation whose caBundle an earlier version applied is released.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fake_api::{self, FakeApi};
use common::self_managed;
use serde_json::{Value, json};

const CONFIGURATIONS: &str = fake_api::WEBHOOK_CONFIGURATIONS;

/// The chart's webhook configuration: an entry per mode, production-all and target (and
/// the exceptions'), with `extraKinds` or without.
fn chart(extra_kinds: bool) -> Value {
    let mut targets = vec![("configmaps", ""), ("asyncapis", "asyncapi-guard.io")];
    if extra_kinds {
        targets.push(("extra-kinds", "events.example.com"));
    }
    let mut webhooks = Vec::new();
    for mode in ["enforce", "warn", "audit"] {
        for all in [false, true] {
            for (target, group) in &targets {
                let suffix = if all { "-production-all" } else { "" };
                webhooks.push(json!({
                    "name": format!("{mode}{suffix}.{target}.asyncapi-guard.io"),
                    "admissionReviewVersions": ["v1"], "sideEffects": "None", "matchPolicy": "Equivalent",
                    "failurePolicy": if mode == "enforce" { "Fail" } else { "Ignore" }, "timeoutSeconds": 5,
                    "clientConfig": {"service": {"name": "asyncapi-guard", "namespace": "guard", "port": 443,
                                                 "path": format!("/validate/{mode}{}", if all { "/production-all" } else { "" })}},
                    "rules": [{"apiGroups": [group], "apiVersions": ["*"], "resources": [target], "operations": ["CREATE", "UPDATE"], "scope": "*"}],
                    "namespaceSelector": {"matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "guard"]}]},
                }));
            }
        }
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "asyncapi-guard", "labels": {"app.kubernetes.io/managed-by": "Helm"}},
           "webhooks": webhooks})
}

fn entries(api: &FakeApi) -> Vec<(String, bool)> {
    api.get(CONFIGURATIONS, None, "asyncapi-guard").unwrap()["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["clientConfig"].get("caBundle").is_some(),
            )
        })
        .collect()
}

fn all_trusted(api: &FakeApi) -> bool {
    entries(api).iter().all(|(_, trusted)| *trusted)
}

/// The server keeps the caBundle while `apply` (Helm 4, kubectl, a GitOps tool) applies the
/// chart with and without extra kinds.
async fn upgrades_by_server_side_apply(manager: &str) {
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    let (status, body) = api.apply(CONFIGURATIONS, None, chart(true), manager, false);
    assert_eq!(status, 201, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let server = self_managed(api.client("guard"), dir.path());
    let material = server.reconcile().await.unwrap();
    assert!(all_trusted(&api));
    let keeping = tokio::spawn(server.run(Duration::from_secs(3600), material));

    // Fewer extra kinds: the entries go, and every remaining one keeps its caBundle.
    let (status, body) = api.apply(CONFIGURATIONS, None, chart(false), manager, false);
    assert_eq!(status, 200, "{manager} removing entries: {body}");
    assert_eq!(entries(&api).len(), 12);
    assert!(all_trusted(&api), "{:?}", entries(&api));
    // Back: the new entries come without a caBundle, and get it within moments.
    let (status, body) = api.apply(CONFIGURATIONS, None, chart(true), manager, false);
    assert_eq!(status, 200, "{manager} adding entries: {body}");
    assert_eq!(entries(&api).len(), 18);
    api.wait_for(
        "the new entries' caBundle",
        Duration::from_secs(5),
        all_trusted,
    )
    .await;
    // Another rule: applied as it came, the caBundle untouched.
    let mut changed = chart(true);
    changed["webhooks"][0]["timeoutSeconds"] = json!(10);
    let (status, body) = api.apply(CONFIGURATIONS, None, changed, manager, false);
    assert_eq!(status, 200, "{body}");
    assert!(all_trusted(&api));
    let configuration = api.get(CONFIGURATIONS, None, "asyncapi-guard").unwrap();
    assert_eq!(configuration["webhooks"][0]["timeoutSeconds"], 10);
    // The server owns caBundles only, by an update: never an entry.
    let ours: Vec<&Value> = configuration["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["manager"] == "asyncapi-guard-certificates")
        .collect();
    assert_eq!(ours.len(), 1);
    assert_eq!(ours[0]["operation"], "Update");
    keeping.abort();
}

#[tokio::test]
async fn helm_4_upgrades_by_server_side_apply_add_and_remove_entries() {
    upgrades_by_server_side_apply("helm").await;
}

#[tokio::test]
async fn kubectl_apply_server_side_of_the_manifests_adds_and_removes_entries() {
    upgrades_by_server_side_apply("kubectl").await;
}

/// Helm 3 patches what changed (a three-way strategic merge patch), as an update.
#[tokio::test]
async fn helm_3_client_side_upgrades_add_and_remove_entries() {
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    api.create(CONFIGURATIONS, None, chart(true));
    let dir = tempfile::tempdir().unwrap();
    let server = self_managed(api.client("guard"), dir.path());
    let material = server.reconcile().await.unwrap();
    let keeping = tokio::spawn(server.run(Duration::from_secs(3600), material));
    let removed: Vec<Value> = chart(true)["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["name"].as_str().unwrap().contains("extra-kinds"))
        .map(|w| json!({"$patch": "delete", "name": w["name"]}))
        .collect();
    let path =
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/asyncapi-guard";
    // Helm 3's upgrade: a strategic merge patch of the entries that changed.
    let helm_patch = |webhooks: Vec<Value>| {
        let query = [("fieldManager".to_owned(), "helm".to_owned())]
            .into_iter()
            .collect();
        let (status, body) = api.exchange(
            "PATCH",
            path,
            &query,
            "application/strategic-merge-patch+json",
            "Helm/3.17.0",
            &json!({ "webhooks": webhooks }),
        );
        assert_eq!(status, 200, "{body}");
    };
    helm_patch(removed);
    assert_eq!(entries(&api).len(), 12);
    assert!(all_trusted(&api));
    let added: Vec<Value> = chart(true)["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["name"].as_str().unwrap().contains("extra-kinds"))
        .cloned()
        .collect();
    helm_patch(added);
    api.wait_for(
        "the new entries' caBundle",
        Duration::from_secs(5),
        all_trusted,
    )
    .await;
    keeping.abort();
}

/// How the caBundle used to be written: applied with force for every entry, so this
/// manager owned each entry's name. Then Helm removing entries left them half, invalid,
/// and the upgrade failed (what `vwc-A4` recorded); an upgraded server releases them.
#[tokio::test]
async fn an_earlier_version_s_apply_ownership_fails_the_upgrade_until_the_server_releases_it() {
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    api.apply(CONFIGURATIONS, None, chart(true), "helm", false);
    let bundle =
        "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUJyZWMKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=";
    let injected: Vec<Value> = chart(true)["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| json!({"name": w["name"], "clientConfig": {"caBundle": bundle}}))
        .collect();
    let old = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                     "metadata": {"name": "asyncapi-guard"}, "webhooks": injected});
    let (status, body) = api.apply(
        CONFIGURATIONS,
        None,
        old,
        "asyncapi-guard-certificates",
        true,
    );
    assert_eq!(status, 200, "{body}");

    let (status, body) = api.apply(CONFIGURATIONS, None, chart(false), "helm", false);
    assert_eq!(status, 422, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("ValidatingWebhookConfiguration.admissionregistration.k8s.io \"asyncapi-guard\" is invalid: [webhooks[2].sideEffects: Required value: must specify one of None, NoneOnDryRun, webhooks[2].clientConfig: Required value: exactly one of url or service is required, webhooks[2].admissionReviewVersions: Required value"),
        "{message}"
    );
    let (status, _) = api.apply(CONFIGURATIONS, None, chart(false), "helm", true);
    assert_eq!(status, 422, "--force-conflicts does not help");
    assert_eq!(entries(&api).len(), 18, "the object is left unchanged");

    // The upgraded server starts: it releases the entries, keeping the caBundles.
    let dir = tempfile::tempdir().unwrap();
    self_managed(api.client("guard"), dir.path())
        .reconcile()
        .await
        .unwrap();
    assert!(all_trusted(&api));
    let (status, body) = api.apply(CONFIGURATIONS, None, chart(false), "helm", false);
    assert_eq!(status, 200, "{body}");
    assert_eq!(entries(&api).len(), 12);
    assert!(all_trusted(&api));
}
