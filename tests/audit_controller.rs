//! The audit against the fake API server (tests/common/fake_api/), the way a platform team
//! meets it: namespaces labelled off, warn or production=all, an excluded namespace, two
//! replicas handing the Lease over on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::controller::AuditSettings;
use asyncapi_guard::engine::finding::Mode;
use asyncapi_guard::service::Shared;
use common::audit_replica::{holder, settings, start};
use common::fake_api::{self, FakeApi};
use serde_json::{Value, json};

/// Insecure only if every server is production: its one server is `staging`.
const STAGING_ONLY: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  staging:\n    host: x\n    protocol: amqp\n";
const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn config_map(name: &str, namespace: &str, document: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace, "labels": {"asyncapi-guard.io/document": "true"}},
           "data": {"asyncapi.yaml": document}})
}

/// A cluster where each namespace asks admission for something else.
fn cluster() -> FakeApi {
    let api = FakeApi::new();
    for (name, labels) in [
        ("quiet", json!({"asyncapi-guard.io/mode": "off"})),
        ("relaxed", json!({"asyncapi-guard.io/mode": "warn"})),
        ("payments", json!({"asyncapi-guard.io/production": "all"})),
        ("team-a", json!({})),
        ("kube-system", json!({})),
    ] {
        api.create(fake_api::NAMESPACES, None, namespace(name, labels));
    }
    for (name, ns, document) in [
        ("orders", "quiet", INSECURE),
        ("orders", "relaxed", INSECURE),
        ("orders", "payments", STAGING_ONLY),
        ("orders", "team-a", STAGING_ONLY),
        ("orders", "kube-system", INSECURE),
    ] {
        api.create(
            fake_api::CONFIG_MAPS,
            Some(ns),
            config_map(name, ns, document),
        );
    }
    api
}

/// The audit judges each namespace as admission does: nothing in a mode=off namespace,
/// and every server production in a production=all one (a staging-only insecure document
/// is not compliant there).
#[tokio::test]
async fn the_cli_audit_judges_each_namespace_as_admission_does() {
    let api = cluster();
    let census = api.census().await;
    assert!(census.skipped.is_empty(), "{:?}", census.skipped);
    let mut seen: Vec<(String, Mode, bool)> = census
        .audited
        .iter()
        .map(|a| (a.id.namespace.clone().unwrap(), a.mode(), a.compliant()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            // production=all: the staging server is production here.
            ("payments".to_owned(), Mode::Enforce, false),
            // warn: admission allows it with warnings, so it is no violation.
            ("relaxed".to_owned(), Mode::Warn, true),
            ("team-a".to_owned(), Mode::Enforce, true),
        ],
        "quiet (mode=off) and kube-system (excluded) are not audited"
    );
    let relaxed = census
        .audited
        .iter()
        .find(|a| a.id.namespace.as_deref() == Some("relaxed"))
        .unwrap();
    assert!(
        relaxed.documents[0]
            .evaluation
            .findings
            .iter()
            .all(|f| f.mode == Mode::Warn)
    );
}

#[tokio::test]
async fn without_permission_to_read_namespaces_the_cli_audit_says_so_and_uses_the_default_mode() {
    let api = cluster();
    api.fail_next(http::Method::GET, "/api/v1/namespaces", 403, "Forbidden");
    let census = api.census().await;
    assert!(
        census.skipped[0].starts_with("namespaces: ") && census.skipped[0].contains("default mode"),
        "{:?}",
        census.skipped
    );
    // Excluded namespaces need no labels to be left out.
    assert!(
        census
            .audited
            .iter()
            .all(|a| a.id.namespace.as_deref() != Some("kube-system"))
    );
}

/// Waits until the audit has reported on payments/orders (the fixture's non-compliant object).
async fn wait_for_the_payments_event(api: &FakeApi) {
    api.wait_for(
        "the event on payments/orders",
        Duration::from_secs(10),
        |api| !events_about(api, "payments").is_empty(),
    )
    .await;
}

fn events_about(api: &FakeApi, namespace: &str) -> Vec<Value> {
    api.all(fake_api::EVENTS)
        .into_iter()
        .filter(|e| e["regarding"]["namespace"] == namespace)
        .collect()
}

/// On SIGTERM a replica releases the Lease (the next one leads at once, not after the
/// lease runs out), a new leader does not emit again the Events already emitted, and the
/// in-cluster audit follows namespace labels.
// The audit's future is not `Send` (it runs on a thread of its own in `serve`): here it runs
// on a local task set beside the test.
#[tokio::test]
async fn replicas_hand_the_lease_over_on_shutdown_and_do_not_repeat_events() {
    tokio::task::LocalSet::new().run_until(hand_over()).await;
}

async fn hand_over() {
    let api = cluster();
    let first = start(&api, Shared::default(), settings("replica-a"));
    api.wait_for("replica-a to lead", Duration::from_secs(10), |api| {
        holder(api).as_deref() == Some("replica-a")
    })
    .await;
    wait_for_the_payments_event(&api).await;
    // Give the audit time to finish its pass over the other namespaces.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let payments = events_about(&api, "payments");
    assert_eq!(payments.len(), 1, "{payments:?}");
    assert_eq!(payments[0]["reason"], "NonCompliant");
    assert!(
        payments[0]["note"]
            .as_str()
            .unwrap()
            .contains("server-security-missing")
    );
    for quiet in ["quiet", "relaxed", "team-a", "kube-system"] {
        assert!(
            events_about(&api, quiet).is_empty(),
            "no event in {quiet}: {:?}",
            events_about(&api, quiet)
        );
    }

    // SIGTERM: the Lease is released at once.
    first.stop().await;
    assert_eq!(holder(&api), None, "the Lease is released");

    let started = tokio::time::Instant::now();
    let second = start(&api, Shared::default(), settings("replica-b"));
    api.wait_for("replica-b to lead", Duration::from_secs(5), |api| {
        holder(api).as_deref() == Some("replica-b")
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // It audits everything again, but the verdict did not change: no second Event.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let events = events_about(&api, "payments");
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["series"].is_null(),
        "not even counted again: {events:?}"
    );

    second.stop().await;
}

#[tokio::test]
async fn a_namespace_label_change_re_audits_its_objects() {
    tokio::task::LocalSet::new().run_until(label_change()).await;
}

async fn label_change() {
    let api = cluster();
    let shared = Shared::default();
    let running = start(&api, shared.clone(), settings("replica-a"));
    let gauge = |shared: &Shared, namespace: &str| {
        shared.metrics.encode().lines().any(|l| {
            l.starts_with(&format!(
                "asyncapi_guard_audit_violations{{namespace=\"{namespace}\""
            ))
        })
    };
    let metrics = shared.clone();
    api.wait_for(
        "the violation in payments",
        Duration::from_secs(10),
        move |_| gauge(&metrics, "payments"),
    )
    .await;
    // The team turns admission off for the namespace: the audit follows.
    let mut payments = api.get(fake_api::NAMESPACES, None, "payments").unwrap();
    payments["metadata"]["labels"] = json!({"asyncapi-guard.io/mode": "off"});
    api.replace(fake_api::NAMESPACES, None, payments);
    let metrics = shared.clone();
    api.wait_for(
        "the violation in payments to be forgotten",
        Duration::from_secs(10),
        move |_| !gauge(&metrics, "payments"),
    )
    .await;
    running.stop().await;
}

const REPORTS: &str = "apis/openreports.io/v1alpha1/reports";

fn report(api: &FakeApi, namespace: &str) -> Option<Value> {
    api.get(REPORTS, Some(namespace), "asyncapi-guard")
}

/// One OpenReports Report per namespace, written when results change and only then;
/// a fixed object's results turn to pass, a deleted object's disappear; without the CRD the
/// audit carries on, and starts writing once the CRD is installed. Time is paused: the
/// minute the audit waits before looking for the CRD again passes at once.
#[tokio::test(start_paused = true)]
async fn reports_follow_the_verdicts_and_the_crd() {
    tokio::task::LocalSet::new()
        .run_until(reports_scenario())
        .await;
}

async fn reports_scenario() {
    let api = cluster();
    api.set_installed(REPORTS, false);
    let running = start(
        &api,
        Shared::default(),
        AuditSettings {
            reports: true,
            ..settings("replica-a")
        },
    );
    // The audit works without the CRD (its Events are there), and writes no report.
    wait_for_the_payments_event(&api).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(api.writes_to("openreports.io").is_empty());

    // The CRD is installed later: reports appear (the audit looks again within a minute).
    api.set_installed(REPORTS, true);
    api.wait_for("the payments report", Duration::from_secs(75), |api| {
        report(api, "payments").is_some()
    })
    .await;
    let payments = report(&api, "payments").unwrap();
    assert_eq!(payments["summary"]["fail"], 1, "{payments}");
    assert_eq!(payments["results"][0]["rule"], "server-security-missing");
    assert_eq!(payments["results"][0]["resources"][0]["name"], "orders");
    assert_eq!(
        FakeApi::managers(&payments),
        ["asyncapi-guard-audit"],
        "written by server-side apply under the audit's field manager"
    );
    let relaxed = report(&api, "relaxed").unwrap();
    assert_eq!(relaxed["summary"]["warn"], 1, "warn mode: {relaxed}");
    assert_eq!(report(&api, "team-a").unwrap()["summary"]["pass"], 1);
    for skipped in ["quiet", "kube-system"] {
        assert!(report(&api, skipped).is_none(), "{skipped} is not audited");
    }

    // Nothing changes: nothing is written.
    let writes = api.writes_to("openreports.io").len();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(api.writes_to("openreports.io").len(), writes);

    // A fix turns the result to pass; a deletion removes the results (and the empty report).
    let mut fixed = api
        .get(fake_api::CONFIG_MAPS, Some("payments"), "orders")
        .unwrap();
    fixed["data"]["asyncapi.yaml"] = json!(INSECURE.replace(
        "    protocol: amqp\n",
        "    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/up'\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n"
    ).replace("production", "staging"));
    api.replace(fake_api::CONFIG_MAPS, Some("payments"), fixed);
    api.wait_for(
        "the payments report to pass",
        Duration::from_secs(10),
        |api| {
            report(api, "payments")
                .is_some_and(|r| r["summary"]["pass"] == 1 && r["summary"]["fail"] == 0)
        },
    )
    .await;
    api.delete(fake_api::CONFIG_MAPS, Some("team-a"), "orders");
    api.wait_for("the team-a report to go", Duration::from_secs(10), |api| {
        report(api, "team-a").is_none()
    })
    .await;

    running.stop().await;
}

fn condition_reason(api: &FakeApi, name: &str) -> Option<String> {
    api.get(fake_api::ASYNCAPIS, Some("team-a"), name)
        .and_then(|o| {
            o["status"]["conditions"][0]["reason"]
                .as_str()
                .map(str::to_owned)
        })
}

/// A custom resource nested deeper than serde_json's recursion limit used to fail the
/// decoding of its list page and of every watch event that carried it: the watch of all
/// `AsyncAPI`s backed off for ever. Now it is judged (too deep for the configured limit)
/// like any other, whether listed at the start or seen by the watch later.
#[tokio::test]
async fn a_resource_nested_deeper_than_serde_json_allows_is_judged_and_the_watch_goes_on() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let api = cluster();
            api.create(
                fake_api::ASYNCAPIS,
                Some("team-a"),
                common::nested_asyncapi("listed", "team-a", 200),
            );
            let running = start(&api, Shared::default(), settings("replica-a"));
            api.wait_for(
                "the listed one's condition",
                Duration::from_secs(10),
                |api| condition_reason(api, "listed").is_some(),
            )
            .await;
            assert_eq!(
                condition_reason(&api, "listed").as_deref(),
                Some("document-invalid")
            );
            api.create(
                fake_api::ASYNCAPIS,
                Some("team-a"),
                common::nested_asyncapi("watched", "team-a", 300),
            );
            let mut insecure = common::nested_asyncapi("after", "team-a", 1);
            insecure["spec"]["servers"] = json!({"production": {"host": "x", "protocol": "amqp"}});
            api.create(fake_api::ASYNCAPIS, Some("team-a"), insecure);
            api.wait_for(
                "the later ones' conditions",
                Duration::from_secs(10),
                |api| {
                    condition_reason(api, "watched").is_some()
                        && condition_reason(api, "after").is_some()
                },
            )
            .await;
            assert_eq!(
                condition_reason(&api, "watched").as_deref(),
                Some("document-invalid")
            );
            assert_eq!(
                condition_reason(&api, "after").as_deref(),
                Some("server-security-missing")
            );
            running.stop().await;
        })
        .await;
}

/// With `inspectAllConfigMaps`, admission judges an unlabelled ConfigMap that holds AsyncAPI:
/// so does the audit, which used to call it unguarded, leave it out of the OpenReports and
/// report it apart.
#[tokio::test]
async fn with_inspect_all_an_unlabelled_config_map_is_guarded_as_admission_judges_it() {
    let api = FakeApi::new();
    api.create(
        fake_api::CONFIG_MAPS,
        Some("team-a"),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "legacy", "namespace": "team-a"},
               "data": {"api": INSECURE, "notes": "plain text"}}),
    );
    let census_with = |inspect_all: bool| {
        let api = api.clone();
        async move {
            let config = asyncapi_guard::service::state::ActiveConfig::from(
                asyncapi_guard::config::Config::parse(
                    format!("kubernetes:\n  inspectAllConfigMaps: {inspect_all}\n").as_bytes(),
                    "c.yaml",
                )
                .unwrap(),
            );
            asyncapi_guard::audit::list::census(&api.client("default"), &config, None, 100)
                .await
                .unwrap()
        }
    };
    let census = census_with(true).await;
    let [legacy] = census.audited.as_slice() else {
        panic!("{:?}", census.audited)
    };
    assert!(legacy.guarded(), "admission judges it, so it is guarded");
    assert!(!legacy.compliant());
    let reports = legacy.reports();
    assert!(reports.iter().all(|r| r.unguarded.is_none()));
    let event = asyncapi_guard::audit::status::object_event(legacy).unwrap();
    assert_eq!(event.reason, "NonCompliant");

    // Without it, admission never sees the ConfigMap: unguarded.
    let census = census_with(false).await;
    assert!(!census.audited[0].guarded());
    let event = asyncapi_guard::audit::status::object_event(&census.audited[0]).unwrap();
    assert_eq!(event.reason, "Unguarded");
}
