//! The audit of the kinds the configuration names as carriers (`kubernetes.kinds`), which
//! admission judges: before, the audit read only ConfigMaps and `AsyncAPI`s, so an insecure
//! document in a carrier created before the webhook was never reported. Against the fake API
//! server, whose discovery lists a kind once a test serves it (its CRD installed).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::controller::AuditSettings;
use asyncapi_guard::audit::list::{Census, census};
use asyncapi_guard::config::Config;
use asyncapi_guard::kubernetes::extract::{CarrierKind, ExtractConfig};
use asyncapi_guard::service::Shared;
use asyncapi_guard::service::state::ActiveConfig;
use common::audit_replica::{Replica, settings, start};
use common::fake_api::{self, FakeApi};
use serde_json::{Value, json};

const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";
const GROUP: &str = "events.example.com";
const REPORTS: &str = "apis/openreports.io/v1alpha1/reports";
const CLUSTER_REPORTS: &str = "apis/openreports.io/v1alpha1/clusterreports";

fn carriers() -> ExtractConfig {
    ExtractConfig {
        kinds: vec![
            CarrierKind {
                group: GROUP.into(),
                kind: "EventContract".into(),
                field: "/spec/asyncapi".into(),
            },
            CarrierKind {
                group: GROUP.into(),
                kind: "ClusterContract".into(),
                field: "/spec/asyncapi".into(),
            },
            // Configured, but its CRD is not installed.
            CarrierKind {
                group: "streams.example.com".into(),
                kind: "Stream".into(),
                field: "/spec/document".into(),
            },
        ],
        ..ExtractConfig::default()
    }
}

fn contract(kind: &str, name: &str, namespace: Option<&str>, document: &str) -> Value {
    let mut metadata = json!({"name": name});
    if let Some(ns) = namespace {
        metadata["namespace"] = json!(ns);
    }
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": kind, "metadata": metadata,
           "spec": {"asyncapi": document}})
}

fn contracts() -> String {
    fake_api::collection(GROUP, "v1", "eventcontracts")
}

/// A cluster that serves the two contract kinds, one namespaced and one cluster-scoped.
fn cluster() -> FakeApi {
    let api = FakeApi::new();
    api.serve_kind(GROUP, "v1", "EventContract", "eventcontracts", true);
    api.serve_kind(GROUP, "v1", "ClusterContract", "clustercontracts", false);
    api.create(
        fake_api::NAMESPACES,
        None,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "payments"}}),
    );
    api.create(
        &contracts(),
        Some("payments"),
        contract("EventContract", "orders", Some("payments"), INSECURE),
    );
    // No document in the field: nothing to judge, as admission judges nothing.
    api.create(
        &contracts(),
        Some("payments"),
        json!({"apiVersion": format!("{GROUP}/v1"), "kind": "EventContract",
               "metadata": {"name": "empty", "namespace": "payments"}, "spec": {}}),
    );
    api.create(
        &fake_api::collection(GROUP, "v1", "clustercontracts"),
        None,
        contract("ClusterContract", "shared", None, INSECURE),
    );
    api
}

async fn audit(api: &FakeApi, namespace: Option<&str>) -> Census {
    audit_with(api, &carriers(), namespace).await
}

async fn audit_with(api: &FakeApi, kubernetes: &ExtractConfig, namespace: Option<&str>) -> Census {
    let config = ActiveConfig::from(Config {
        kubernetes: kubernetes.clone(),
        ..Config::default()
    });
    census(&api.client("default"), &config, namespace, 100)
        .await
        .unwrap()
}

fn audited_paths(census: &Census) -> Vec<String> {
    let mut paths: Vec<String> = census.audited.iter().map(|a| a.id.path()).collect();
    paths.sort();
    paths
}

#[tokio::test]
async fn the_cli_audit_judges_the_configured_carrier_kinds_and_says_which_it_could_not() {
    let api = cluster();
    let everything = audit(&api, None).await;
    assert_eq!(
        audited_paths(&everything),
        ["ClusterContract/shared", "EventContract/payments/orders"]
    );
    let group_discoveries = api
        .requests()
        .iter()
        .filter(|r| r.path == format!("/apis/{GROUP}/v1"))
        .count();
    assert_eq!(
        group_discoveries, 1,
        "the two kinds of one group are discovered together"
    );
    let orders = everything
        .audited
        .iter()
        .find(|a| a.id.name == "orders")
        .unwrap();
    assert_eq!(orders.id.group, GROUP);
    assert_eq!(orders.api_version, format!("{GROUP}/v1"));
    assert!(orders.guarded(), "admission judges every carrier object");
    assert!(!orders.compliant());
    assert!(
        orders.denial().unwrap().contains("server-security-missing"),
        "{:?}",
        orders.denial()
    );
    assert_eq!(
        orders.reports()[0].file,
        "EventContract/payments/orders/spec/asyncapi"
    );
    assert_eq!(everything.skipped.len(), 1, "{:?}", everything.skipped);
    assert!(
        everything.skipped[0].starts_with("Stream.streams.example.com: ")
            && everything.skipped[0].contains("CRD installed"),
        "{:?}",
        everything.skipped
    );

    // In one namespace, a cluster-scoped kind has no objects to list: said, not guessed.
    let payments = audit(&api, Some("payments")).await;
    assert_eq!(audited_paths(&payments), ["EventContract/payments/orders"]);
    assert!(
        payments
            .skipped
            .iter()
            .any(|s| s.starts_with("clustercontracts.events.example.com: cluster-scoped")),
        "{:?}",
        payments.skipped
    );
}

/// A carrier whose document is in an annotation: the audit reads the object's metadata into
/// its tree for it (it leaves the metadata out for the others), as admission has it.
#[tokio::test]
async fn a_document_in_an_annotation_is_audited() {
    let api = FakeApi::new();
    api.serve_kind(GROUP, "v1", "Gateway", "gateways", true);
    api.create(
        &fake_api::collection(GROUP, "v1", "gateways"),
        Some("payments"),
        json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Gateway",
               "metadata": {"name": "edge", "namespace": "payments",
                            "annotations": {"example.com/asyncapi": INSECURE}},
               "spec": {"replicas": 2}}),
    );
    let kubernetes = ExtractConfig {
        kinds: vec![CarrierKind {
            group: GROUP.into(),
            kind: "Gateway".into(),
            field: "/metadata/annotations/example.com~1asyncapi".into(),
        }],
        ..ExtractConfig::default()
    };
    let found = audit_with(&api, &kubernetes, None).await;
    assert_eq!(audited_paths(&found), ["Gateway/payments/edge"]);
    let edge = &found.audited[0];
    assert!(
        edge.denial().unwrap().contains("server-security-missing"),
        "{:?}",
        edge.denial()
    );
}

#[tokio::test]
async fn a_carrier_crd_removed_after_discovery_is_skipped_and_the_rest_still_audited() {
    let api = cluster();
    // Discovery still lists it, but its list answers 404 (the CRD deleted in between).
    api.fail_next(http::Method::GET, "/eventcontracts", 404, "NotFound");
    let census = audit(&api, None).await;
    assert_eq!(audited_paths(&census), ["ClusterContract/shared"]);
    assert!(
        census
            .skipped
            .iter()
            .any(|s| s.starts_with("eventcontracts.events.example.com: ")),
        "{:?}",
        census.skipped
    );
}

#[tokio::test]
async fn an_api_server_that_fails_discovery_fails_the_cli_audit() {
    let api = cluster();
    // The group's discovery document, asked for before any list of the group.
    api.fail_next(
        http::Method::GET,
        "/apis/events.example.com/v1",
        503,
        "ServiceUnavailable",
    );
    let config = ActiveConfig::from(Config {
        kubernetes: carriers(),
        ..Config::default()
    });
    let result = census(&api.client("default"), &config, None, 100).await;
    assert!(
        result.is_err(),
        "a half audit must not look like a clean one"
    );
}

fn events_about(api: &FakeApi, name: &str) -> Vec<Value> {
    api.all(fake_api::EVENTS)
        .into_iter()
        .filter(|e| e["regarding"]["name"] == name)
        .collect()
}

/// `serve --audit` watches the carriers too: an Event on the non-compliant object, the
/// violation gauge, for an object listed at the start and for one created later.
#[tokio::test]
async fn the_in_cluster_audit_watches_the_carrier_kinds() {
    tokio::task::LocalSet::new()
        .run_until(watch_carriers())
        .await;
}

/// The in-cluster audit of `api` with the carriers configured and reports on.
fn start_with_carriers(api: &FakeApi) -> (Shared, Replica) {
    let shared = Shared::new(Config {
        kubernetes: carriers(),
        ..Config::default()
    });
    let replica = start(
        api,
        shared.clone(),
        AuditSettings {
            reports: true,
            ..settings("replica-a")
        },
    );
    (shared, replica)
}

async fn watch_carriers() {
    let api = cluster();
    let (shared, replica) = start_with_carriers(&api);
    api.wait_for(
        "the event on payments/orders",
        Duration::from_secs(10),
        |api| !events_about(api, "orders").is_empty(),
    )
    .await;
    let event = &events_about(&api, "orders")[0];
    assert_eq!(event["reason"], "NonCompliant");
    assert_eq!(event["regarding"]["kind"], "EventContract");
    assert_eq!(event["regarding"]["apiVersion"], format!("{GROUP}/v1"));
    assert!(
        event["note"]
            .as_str()
            .unwrap()
            .contains("EventContract payments/orders"),
        "{event}"
    );
    api.wait_for(
        "the event on the cluster-scoped contract",
        Duration::from_secs(10),
        |api| !events_about(api, "shared").is_empty(),
    )
    .await;

    // The namespaced contract is in its namespace's OpenReports Report, the cluster-scoped
    // one in the ClusterReport; no write is tried to a namespace without a name.
    api.wait_for("the payments report", Duration::from_secs(10), |api| {
        api.get(REPORTS, Some("payments"), "asyncapi-guard")
            .is_some_and(|r| r["results"].to_string().contains("orders"))
    })
    .await;
    api.wait_for("the cluster report", Duration::from_secs(10), |api| {
        api.get(CLUSTER_REPORTS, None, "asyncapi-guard")
            .is_some_and(|r| r["results"].to_string().contains("shared"))
    })
    .await;
    let cluster_report = api.get(CLUSTER_REPORTS, None, "asyncapi-guard").unwrap();
    assert_eq!(cluster_report["kind"], "ClusterReport");
    assert!(cluster_report["metadata"].get("namespace").is_none());
    assert!(
        api.requests()
            .iter()
            .all(|r| !r.path.contains("/namespaces//")),
        "a write to a nameless namespace"
    );

    api.create(
        &contracts(),
        Some("payments"),
        contract("EventContract", "refunds", Some("payments"), INSECURE),
    );
    api.wait_for(
        "the event on the contract created later",
        Duration::from_secs(10),
        |api| !events_about(api, "refunds").is_empty(),
    )
    .await;
    let gauge = "asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 2";
    api.wait_for(gauge, Duration::from_secs(10), |_| {
        shared.metrics.encode().contains(gauge)
    })
    .await;

    // The carriers taken out of the configuration: their violations leave the gauges at the
    // re-audit the change starts, rather than stay counted with no watch to clear them.
    shared
        .config
        .store(std::sync::Arc::new(ActiveConfig::from(Config::default())));
    api.wait_for(
        "the carriers' violations to leave the gauges",
        Duration::from_secs(15),
        |_| !shared.metrics.encode().contains("namespace=\"payments\""),
    )
    .await;

    replica.stop().await;
}

/// OpenReports installed without its ClusterReport CRD: the namespace Reports are written,
/// and the missing CRD is looked for again a minute later, not at every flush.
#[tokio::test]
async fn without_the_cluster_report_crd_the_namespace_reports_are_still_written() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let api = cluster();
            api.set_installed(CLUSTER_REPORTS, false);
            let (_, replica) = start_with_carriers(&api);
            api.wait_for("the payments report", Duration::from_secs(10), |api| {
                api.get(REPORTS, Some("payments"), "asyncapi-guard")
                    .is_some()
            })
            .await;
            // Two flushes more.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let asked = api
                .requests()
                .iter()
                .filter(|r| r.path.contains("/clusterreports"))
                .count();
            assert_eq!(asked, 1, "the missing CRD is asked about once a minute");
            replica.stop().await;
        })
        .await;
}

/// A re-audit whose discovery fails keeps watching the carriers found before: their
/// violations stay in the gauges and reports instead of leaving until the next re-audit and
/// coming back after it.
#[tokio::test]
async fn a_failed_discovery_keeps_the_carriers_found_before() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let api = cluster();
            let (shared, replica) = start_with_carriers(&api);
            let gauge = "asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 1";
            api.wait_for(gauge, Duration::from_secs(10), |_| {
                shared.metrics.encode().contains(gauge)
            })
            .await;

            api.fail_next(
                http::Method::GET,
                "/apis/events.example.com/v1",
                503,
                "ServiceUnavailable",
            );
            // The same configuration stored again: a re-audit, with discovery failing.
            shared.config.store(std::sync::Arc::new(ActiveConfig::from(Config {
                kubernetes: carriers(),
                ..Config::default()
            })));
            let failed_at = |api: &FakeApi| {
                api.requests()
                    .iter()
                    .position(|r| r.status == 503 && r.path.contains("/apis/events.example.com/v1"))
            };
            api.wait_for("the failed discovery", Duration::from_secs(15), |api| {
                failed_at(api).is_some()
            })
            .await;
            // The re-audit's watches start once it lists ConfigMaps again.
            api.wait_for("ConfigMaps listed again", Duration::from_secs(10), |api| {
                let requests = api.requests();
                let failed = failed_at(api).unwrap();
                requests[failed..]
                    .iter()
                    .any(|r| r.path.ends_with("/configmaps") && !r.query.contains_key("watch"))
            })
            .await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                shared.metrics.encode().contains(gauge),
                "the carrier's violation left the gauges:\n{}",
                shared.metrics.encode()
            );
            replica.stop().await;
        })
        .await;
}

/// The fake API server names a kind a test serves as kube-apiserver names an installed CRD's:
/// objects and lists carry its kind, and errors name its resource with the group.
#[tokio::test]
async fn the_fake_api_names_a_served_kind_as_the_api_server_does() {
    let api = FakeApi::new();
    api.serve_kind(GROUP, "v1", "EventContract", "eventcontracts", true);
    let collection = fake_api::collection(GROUP, "v1", "eventcontracts");
    let created = api.create(
        &collection,
        Some("payments"),
        json!({"metadata": {"name": "orders"}, "spec": {}}),
    );
    assert_eq!(created["kind"], "EventContract");
    assert_eq!(created["apiVersion"], format!("{GROUP}/v1"));

    let client = api.client("payments");
    let get = |path: String| {
        let client = client.clone();
        async move {
            let request = http::Request::get(path).body(Vec::new()).unwrap();
            client.request_text(request).await
        }
    };
    let list: Value = serde_json::from_str(
        &get(format!("/{collection}"))
            .await
            .expect("the list of a served kind"),
    )
    .unwrap();
    assert_eq!(list["kind"], "EventContractList");

    let missing = format!("/apis/{GROUP}/v1/namespaces/payments/eventcontracts/absent");
    match get(missing).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 404);
            assert_eq!(
                status.message,
                format!("eventcontracts.{GROUP} \"absent\" not found")
            );
        }
        other => panic!("a missing object is a 404: {other:?}"),
    }
    match get("/api/v1/namespaces/payments/configmaps/absent".to_owned()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.message, "configmaps \"absent\" not found");
        }
        other => panic!("a missing ConfigMap is a 404: {other:?}"),
    }
}
