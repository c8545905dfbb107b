//! The audit's calls to the API server, against scripted exchanges: list paging, the status
//! it writes (and does not rewrite), the Events it emits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::controller::{AuditSettings, Auditor, audit_once};
use asyncapi_guard::audit::list;
use asyncapi_guard::audit::{asyncapi_resource, config_map_resource};
use asyncapi_guard::kubernetes::raw_object::RawObject;
use asyncapi_guard::service::Shared as AppState;
use asyncapi_guard::service::metrics::Metrics;
use asyncapi_guard::service::state::ActiveConfig;
use common::mock_api::{self, status};
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
    .respond(
        404,
        status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ),
    );
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
        .respond(
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ),
        );

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

fn state() -> AppState {
    AppState::default()
}

fn resource(status: Option<Value>) -> RawObject {
    let mut object = json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
        "metadata": {"name": "orders", "namespace": "payments", "uid": "uid-orders", "generation": 3, "resourceVersion": "7"},
        "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}});
    if let Some(status) = status {
        object["status"] = status;
    }
    RawObject::from_json(&object.to_string()).unwrap()
}

const STATUS_PATH: &str =
    "/apis/asyncapi-guard.io/v1alpha1/namespaces/payments/asyncapis/orders/status?";

#[tokio::test]
async fn a_non_compliant_resource_gets_its_condition_by_server_side_apply_after_a_retry() {
    let (client, mut api) = mock_api::client("payments");
    let state = state();
    let metrics = state.metrics.clone();
    let object = resource(None);
    let kind = asyncapi_resource();
    let audit = audit_once(client, state, &kind, &object);
    let script = async {
        // The API server is briefly unavailable: the audit backs off and tries again.
        api.expect(Method::PATCH, STATUS_PATH).await.respond(
            503,
            status(503, "ServiceUnavailable", "etcd leader changed"),
        );
        let patch = api.expect(Method::PATCH, STATUS_PATH).await;
        assert_eq!(patch.content_type, "application/apply-patch+yaml");
        assert!(
            patch.uri.contains("fieldManager=asyncapi-guard-audit")
                && patch.uri.contains("force=true"),
            "{}",
            patch.uri
        );
        let condition = &patch.body["status"]["conditions"][0];
        assert_eq!(condition["type"], "SecurityCompliant");
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["reason"], "server-security-missing");
        assert_eq!(
            condition["message"],
            "AsyncAPI payments/orders: spec/servers/production production server \"production\" declares no security [server-security-missing]"
        );
        assert_eq!(condition["observedGeneration"], 3);
        assert_eq!(patch.body["status"]["observedGeneration"], 3);
        assert_eq!(patch.body["apiVersion"], "asyncapi-guard.io/v1alpha1");
        let applied = patch.body.clone();
        patch.respond(200, applied);
    };
    // The audit and the API server's script run side by side.
    let (counts, ()) = tokio::join!(audit, script);
    assert_eq!(
        counts,
        [(
            "payments".to_owned(),
            "server-security-missing".to_owned(),
            1
        )]
    );
    assert!(metrics.encode().contains(
        "asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 1"
    ));
}

#[tokio::test]
async fn a_status_that_already_says_it_is_not_written_again() {
    let (client, mut api) = mock_api::client("payments");
    let current = json!({"observedGeneration": 3, "conditions": [{
        "type": "SecurityCompliant", "status": "False", "reason": "server-security-missing",
        "message": "AsyncAPI payments/orders: spec/servers/production production server \"production\" declares no security [server-security-missing]",
        "observedGeneration": 3, "lastTransitionTime": "2026-11-20T08:00:00Z"}]});
    audit_once(
        client,
        state(),
        &asyncapi_resource(),
        &resource(Some(current)),
    )
    .await;
    api.expect_nothing(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn non_compliant_and_unguarded_config_maps_get_an_event() {
    for (labelled, reason) in [(true, "NonCompliant"), (false, "Unguarded")] {
        let (client, mut api) = mock_api::client("payments");
        let object = RawObject::from_json(
            &config_map("orders", labelled, json!({"asyncapi.yaml": INSECURE})).to_string(),
        )
        .unwrap();
        let kind = config_map_resource();
        let audit = audit_once(client, state(), &kind, &object);
        let script = async {
            let event = api
                .expect(
                    Method::POST,
                    "/apis/events.k8s.io/v1/namespaces/payments/events",
                )
                .await;
            assert_eq!(event.body["reason"], reason);
            assert_eq!(event.body["type"], "Warning");
            assert_eq!(event.body["action"], "Audit");
            assert_eq!(event.body["reportingController"], "asyncapi-guard");
            assert_eq!(event.body["regarding"]["kind"], "ConfigMap");
            assert_eq!(event.body["regarding"]["name"], "orders");
            assert_eq!(event.body["regarding"]["uid"], "uid-orders");
            assert!(
                event.body["note"]
                    .as_str()
                    .unwrap()
                    .contains("[server-security-missing]"),
                "{}",
                event.body["note"]
            );
            let created = event.body.clone();
            event.respond(201, created);
        };
        tokio::join!(audit, script);
    }
}

#[tokio::test]
async fn a_compliant_labelled_config_map_gets_no_event() {
    let (client, mut api) = mock_api::client("payments");
    let secure = "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/up'\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n";
    let object = RawObject::from_json(
        &config_map("orders", true, json!({"asyncapi.yaml": secure})).to_string(),
    )
    .unwrap();
    let kind = config_map_resource();
    let (counts, ()) = tokio::join!(
        audit_once(client, state(), &kind, &object),
        api.expect_nothing(Duration::from_millis(300))
    );
    assert!(counts.is_empty());
}

#[tokio::test]
async fn a_relist_forgets_what_was_deleted_unwatched_and_deletions_clear_the_gauges() {
    let (client, mut api) = mock_api::client("payments");
    let state = state();
    let metrics = state.metrics.clone();
    let settings = AuditSettings {
        reports: false,
        lease: String::new(),
        namespace: String::new(),
        identity: "t".into(),
        resync: Duration::from_secs(600),
    };
    let mut auditor = Auditor::new(client, state.clone(), &settings);
    let config = state.config.load_full();
    let kind = asyncapi_resource();
    // Non-compliant, with a status that already says so: judged and counted, nothing written.
    let said = |name: &str| {
        let mut object = resource(Some(json!({"observedGeneration": 3, "conditions": [{
            "type": "SecurityCompliant", "status": "False", "reason": "server-security-missing",
            "message": format!("AsyncAPI payments/{name}: spec/servers/production production server \"production\" declares no security [server-security-missing]"),
            "observedGeneration": 3, "lastTransitionTime": "2026-11-20T08:00:00Z"}]})));
        object.metadata.name = Some(name.to_owned());
        object.metadata.uid = Some(format!("uid-{name}"));
        object
    };
    let gauge = |metrics: &Metrics| {
        metrics
            .encode()
            .lines()
            .find(|l| l.starts_with("asyncapi_guard_audit_violations{"))
            .map(str::to_owned)
    };
    let events = async {
        use kube::runtime::watcher::Event;
        auditor.on_event(&config, &kind, Event::Init).await;
        auditor
            .on_event(&config, &kind, Event::InitApply(said("a")))
            .await;
        auditor
            .on_event(&config, &kind, Event::InitApply(said("b")))
            .await;
        auditor.on_event(&config, &kind, Event::InitDone).await;
        let two = gauge(&metrics);
        // The watch restarts; b was deleted meanwhile and never comes back.
        auditor.on_event(&config, &kind, Event::Init).await;
        auditor
            .on_event(&config, &kind, Event::InitApply(said("a")))
            .await;
        auditor.on_event(&config, &kind, Event::InitDone).await;
        let one = gauge(&metrics);
        auditor
            .on_event(&config, &kind, Event::Delete(said("a")))
            .await;
        (two, one, gauge(&metrics))
    };
    let ((two, one, none), ()) =
        tokio::join!(events, api.expect_nothing(Duration::from_millis(300)));
    assert_eq!(
        two.as_deref(),
        Some(
            "asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 2"
        )
    );
    assert_eq!(
        one.as_deref(),
        Some(
            "asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 1"
        )
    );
    assert_eq!(none, None, "no violations left: the series is gone");
}
