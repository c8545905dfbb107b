//! The audit's calls to the API server: the CLI census's list paging against scripted
//! exchanges; the in-cluster audit's writes (the status it writes and does not rewrite, the
//! Events it emits, what a re-list forgets) against the fake API server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::list;
use asyncapi_guard::service::Shared;
use asyncapi_guard::service::state::ActiveConfig;
use common::audit_replica::{settings, start};
use common::fake_api::{self, FakeApi};
use common::mock_api;
use http::Method;
use serde_json::{Value, json};

const INSECURE: &str =
    "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

fn config_map(name: &str, labelled: bool, data: Value) -> Value {
    let mut metadata = json!({"name": name, "namespace": "payments", "uid": format!("uid-{name}"), "resourceVersion": "1"});
    if labelled {
        metadata["labels"] = json!({"asyncapi-guard.io/document": "true"});
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data})
}

fn list_page(kind: &str, items: Vec<Value>, next: Option<&str>) -> Value {
    let mut metadata = json!({"resourceVersion": "10"});
    if let Some(token) = next {
        metadata["continue"] = json!(token);
    }
    json!({"apiVersion": "v1", "kind": kind, "metadata": metadata, "items": items})
}

#[tokio::test]
async fn the_census_pages_through_lists_and_reports_what_it_could_not_list() {
    let (client, mut api) = mock_api::client("payments");
    let task =
        tokio::spawn(async move { list::census(&client, &ActiveConfig::default(), None, 2).await });
    // The exceptions first (none: the kind is not installed), then the namespaces' labels:
    // they choose the mode, as they choose the webhook entry.
    api.expect(
        Method::GET,
        "/apis/asyncapi-guard.io/v1alpha1/asyncapiexceptions?",
    )
    .await
    .not_served();
    let namespaces = api.expect(Method::GET, "/api/v1/namespaces?").await;
    assert!(namespaces.uri.contains("limit=2"), "{}", namespaces.uri);
    namespaces.respond(
        200,
        list_page(
            "NamespaceList",
            vec![json!({"metadata": {"name": "payments", "resourceVersion": "1"}})],
            None,
        ),
    );
    let first = api.expect(Method::GET, "/api/v1/configmaps?").await;
    assert!(
        first.uri.contains("limit=2") && !first.uri.contains("continue"),
        "{}",
        first.uri
    );
    first.respond(
        200,
        list_page(
            "ConfigMapList",
            vec![
                config_map("orders", true, json!({"asyncapi.yaml": INSECURE})),
                config_map("leader-lock", false, json!({"holder": "x"})),
            ],
            Some("page-2"),
        ),
    );
    let second = api.expect(Method::GET, "/api/v1/configmaps?").await;
    assert!(
        second.uri.contains("continue=page-2") && second.uri.contains("limit=2"),
        "{}",
        second.uri
    );
    second.respond(
        200,
        list_page(
            "ConfigMapList",
            vec![config_map(
                "legacy",
                false,
                json!({"spec.yaml": INSECURE, "notes": "plain text"}),
            )],
            None,
        ),
    );
    api.expect(Method::GET, "/apis/asyncapi-guard.io/v1alpha1/asyncapis?")
        .await
        .not_served();

    let census = task.await.unwrap().unwrap();
    assert_eq!(census.pages, 2);
    let found: Vec<(String, bool, bool)> = census
        .audited
        .iter()
        .map(|a| (a.id.to_string(), a.guarded(), a.compliant()))
        .collect();
    assert_eq!(
        found,
        [
            ("ConfigMap payments/orders".to_owned(), true, false),
            ("ConfigMap payments/legacy".to_owned(), false, false)
        ]
    );
    assert_eq!(
        census.audited[1].documents[0].label, "spec.yaml",
        "only the key that holds AsyncAPI"
    );
    assert_eq!(census.skipped.len(), 1);
    assert!(
        census.skipped[0].starts_with("asyncapis.asyncapi-guard.io"),
        "{:?}",
        census.skipped
    );
}

const SECURE: &str = "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/up'\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n";

/// An AsyncAPI resource in `payments` whose document is insecure, with `status`.
fn resource(name: &str, status: Option<Value>) -> Value {
    let mut object = json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
        "metadata": {"name": name, "namespace": "payments"},
        "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}});
    if let Some(status) = status {
        object["status"] = status;
    }
    object
}

fn said(name: &str) -> String {
    format!(
        "AsyncAPI payments/{name}: spec/servers/production production server \"production\" declares no security [server-security-missing]"
    )
}

fn gauge(shared: &Shared) -> Option<String> {
    shared
        .metrics
        .encode()
        .lines()
        .find(|l| l.starts_with("asyncapi_guard_audit_violations{"))
        .map(str::to_owned)
}

/// Runs `scenario` on a local task set: the audit's future runs there, as on its thread in
/// `serve`.
async fn local<F: std::future::Future<Output = ()>>(scenario: F) {
    tokio::task::LocalSet::new().run_until(scenario).await;
}

#[tokio::test]
async fn a_non_compliant_resource_gets_its_condition_by_server_side_apply_after_a_retry() {
    local(async {
        let api = FakeApi::new();
        api.create(fake_api::ASYNCAPIS, Some("payments"), resource("orders", None));
        // The API server is briefly unavailable: the audit backs off and tries again.
        api.fail_next(Method::PATCH, "/asyncapis/orders/status", 503, "ServiceUnavailable");
        let shared = Shared::default();
        let running = start(&api, shared.clone(), settings("replica-a"));
        api.wait_for("the condition", Duration::from_secs(10), |api| {
            api.get(fake_api::ASYNCAPIS, Some("payments"), "orders")
                .is_some_and(|o| !o["status"].is_null())
        })
        .await;
        let patches = api.writes_to("/asyncapis/orders/status");
        assert_eq!(patches.len(), 2, "one refused, one written");
        assert_eq!(patches[0].status, 503);
        let patch = &patches[1];
        assert_eq!(patch.content_type, "application/apply-patch+yaml");
        assert_eq!(patch.field_manager(), Some("asyncapi-guard-audit"));
        assert_eq!(patch.query.get("force").map(String::as_str), Some("true"));
        let object = api.get(fake_api::ASYNCAPIS, Some("payments"), "orders").unwrap();
        let condition = &object["status"]["conditions"][0];
        assert_eq!(condition["type"], "SecurityCompliant");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "server-security-missing");
        assert_eq!(condition["message"], said("orders"));
        assert_eq!(condition["observedGeneration"], 1);
        assert_eq!(object["status"]["observedGeneration"], 1);
        assert!(FakeApi::managers(&object).contains(&"asyncapi-guard-audit".to_owned()));
        assert_eq!(
            gauge(&shared).as_deref(),
            Some("asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 1")
        );
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_status_that_already_says_it_is_not_written_again() {
    local(async {
        let api = FakeApi::new();
        let created = api.create(fake_api::ASYNCAPIS, Some("payments"), resource("orders", None));
        let mut object = created.clone();
        object["status"] = json!({"observedGeneration": 1, "conditions": [{
            "type": "SecurityCompliant", "status": "False", "reason": "server-security-missing",
            "message": said("orders"), "observedGeneration": 1, "lastTransitionTime": "2026-11-20T08:00:00Z"}]});
        let (status, body) = api.merge_patch(fake_api::ASYNCAPIS, Some("payments"), "orders", json!({"status": object["status"]}), "earlier-leader");
        // Through the main resource a status is ignored; through /status it is kept.
        assert_eq!(status, 200, "{body}");
        api.merge_patch_at(
            "/apis/asyncapi-guard.io/v1alpha1/namespaces/payments/asyncapis/orders/status",
            &json!({"status": object["status"]}),
        );
        let shared = Shared::default();
        let running = start(&api, shared.clone(), settings("replica-a"));
        let metrics = shared.clone();
        api.wait_for("the audit to be current", Duration::from_secs(10), move |_| {
            metrics.metrics.encode().contains("asyncapi_guard_audit_current 1")
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(api.writes_to("/asyncapis/orders/status").is_empty());
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn non_compliant_and_unguarded_config_maps_get_an_event_and_compliant_ones_none() {
    local(async {
        let api = FakeApi::new();
        for (name, labelled, document) in [
            ("orders", true, INSECURE),
            ("legacy", false, INSECURE),
            ("billing", true, SECURE),
        ] {
            api.create(
                fake_api::CONFIG_MAPS,
                Some("payments"),
                config_map(name, labelled, json!({"asyncapi.yaml": document})),
            );
        }
        let running = start(&api, Shared::default(), settings("replica-a"));
        api.wait_for("two events", Duration::from_secs(10), |api| {
            api.all(fake_api::EVENTS).len() == 2
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let events = api.all(fake_api::EVENTS);
        assert_eq!(events.len(), 2, "{events:?}");
        for (name, reason) in [("orders", "NonCompliant"), ("legacy", "Unguarded")] {
            let event = events
                .iter()
                .find(|e| e["regarding"]["name"] == name)
                .unwrap();
            assert_eq!(event["reason"], reason);
            assert_eq!(event["type"], "Warning");
            assert_eq!(event["action"], "Audit");
            assert_eq!(event["reportingController"], "asyncapi-guard");
            assert_eq!(event["reportingInstance"], "replica-a");
            assert_eq!(event["regarding"]["kind"], "ConfigMap");
            assert!(
                event["note"]
                    .as_str()
                    .unwrap()
                    .contains("[server-security-missing]"),
                "{event}"
            );
        }
        running.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_relist_forgets_what_was_deleted_unwatched_and_deletions_clear_the_gauges() {
    local(async {
        let api = FakeApi::new();
        for name in ["a", "b"] {
            api.create(fake_api::ASYNCAPIS, Some("payments"), resource(name, None));
        }
        let shared = Shared::default();
        let running = start(&api, shared.clone(), settings("replica-a"));
        let count = |n: u32| {
            let shared = shared.clone();
            move |_: &FakeApi| {
                gauge(&shared)
                    == (n > 0).then(|| format!("asyncapi_guard_audit_violations{{namespace=\"payments\",rule=\"server-security-missing\"}} {n}"))
            }
        };
        api.wait_for("two violations", Duration::from_secs(10), count(2)).await;
        // The API server goes away; b is deleted meanwhile and its history compacted, so
        // the watch must list again, and b never comes back.
        api.set_down(true);
        tokio::time::sleep(Duration::from_millis(300)).await;
        {
            let store = api.clone();
            store.set_down(false);
            store.delete(fake_api::ASYNCAPIS, Some("payments"), "b");
            store.set_down(true);
        }
        api.compact();
        api.set_down(false);
        api.wait_for("one violation", Duration::from_secs(10), count(1)).await;
        api.delete(fake_api::ASYNCAPIS, Some("payments"), "a");
        api.wait_for("no violation: the series is gone", Duration::from_secs(10), count(0)).await;
        running.stop().await;
    })
    .await;
}
