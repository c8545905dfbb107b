//! What the in-cluster audit writes, and when, on day two: never from a partial view, nothing
//! at all after a restart that changed nothing, nothing more in a namespace being deleted,
//! current again soon after the API server returns, Events that never keep a stale message,
//! and one leader at a time however the replicas start.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::controller::AuditSettings;
use asyncapi_guard::service::Shared;
use common::audit_replica::{Replica, holder, settings, start};
use common::fake_api::{self, FakeApi, Recorded};
use serde_json::{Value, json};

const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";
const UNDEFINED: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/nope'\n";
const SECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/up'\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n";

fn config_map(name: &str, namespace: &str, document: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": namespace, "labels": {"asyncapi-guard.io/document": "true"}},
           "data": {"asyncapi.yaml": document}})
}

fn resource(name: &str, namespace: &str) -> Value {
    json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}})
}

/// Namespaces with a few insecure and secure objects of both kinds.
fn cluster() -> FakeApi {
    let api = FakeApi::new();
    for namespace in ["payments", "team-a", "team-b"] {
        api.create(
            fake_api::CONFIG_MAPS,
            Some(namespace),
            config_map("orders", namespace, INSECURE),
        );
        api.create(
            fake_api::CONFIG_MAPS,
            Some(namespace),
            config_map("billing", namespace, SECURE),
        );
        api.create(
            fake_api::ASYNCAPIS,
            Some(namespace),
            resource("stream", namespace),
        );
    }
    api
}

fn with_reports(identity: &str) -> AuditSettings {
    AuditSettings {
        reports: true,
        ..settings(identity)
    }
}

async fn local<F: std::future::Future<Output = ()>>(scenario: F) {
    tokio::task::LocalSet::new().run_until(scenario).await;
}

/// Waits until the replica's audit is current and has nothing left to write.
async fn settled(api: &FakeApi, shared: &Shared) {
    let shared = shared.clone();
    api.wait_for("the audit to settle", Duration::from_secs(15), move |_| {
        let text = shared.metrics.encode();
        text.contains("\nasyncapi_guard_audit_current 1\n")
            && text.contains("\nasyncapi_guard_audit_pending_writes 0\n")
    })
    .await;
}

/// The audit's writes: anything but a read, except the Lease's.
fn audit_writes(requests: &[Recorded]) -> Vec<&Recorded> {
    requests
        .iter()
        .filter(|r| r.is_write() && !r.path.contains("/leases"))
        .collect()
}

#[tokio::test]
async fn nothing_is_written_before_every_kind_is_listed() {
    local(async {
        let api = cluster();
        // The AsyncAPI resources cannot be listed for a while; the ConfigMaps can.
        for _ in 0..3 {
            api.fail_next(
                http::Method::GET,
                "/apis/asyncapi-guard.io/v1alpha1/asyncapis",
                503,
                "ServiceUnavailable",
            );
        }
        let shared = Shared::default();
        let replica = start(&api, shared.clone(), with_reports("replica-a"));
        settled(&api, &shared).await;
        let requests = api.requests();
        let listed = requests
            .iter()
            .position(|r| {
                r.path == "/apis/asyncapi-guard.io/v1alpha1/asyncapis"
                    && r.status == 200
                    && !r.query.contains_key("watch")
            })
            .expect("the AsyncAPI resources were listed in the end");
        let failures = requests[..listed]
            .iter()
            .filter(|r| r.status == 503)
            .count();
        assert_eq!(failures, 3);
        let early: Vec<String> = requests[..listed]
            .iter()
            .filter(|r| r.is_write() && !r.path.contains("/leases"))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(early.is_empty(), "written from a partial view: {early:?}");
        // And once listed, everything: each namespace's Report has both kinds.
        for namespace in ["payments", "team-a", "team-b"] {
            let report = api
                .get(fake_api::REPORTS, Some(namespace), "asyncapi-guard")
                .unwrap();
            assert_eq!(report["summary"]["fail"], 2, "{namespace}: {report}");
            assert_eq!(report["summary"]["pass"], 1, "{namespace}: {report}");
        }
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_restart_with_nothing_changed_writes_nothing() {
    local(async {
        let api = cluster();
        let shared = Shared::default();
        let first = start(&api, shared.clone(), with_reports("replica-a"));
        settled(&api, &shared).await;
        assert!(!audit_writes(&api.requests()).is_empty());
        first.stop().await;
        let before = api.requests().len();

        let shared = Shared::default();
        let second = start(&api, shared.clone(), with_reports("replica-b"));
        settled(&api, &shared).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let requests = api.requests();
        let after = &requests[before..];
        let writes: Vec<String> = audit_writes(after)
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(writes.is_empty(), "a restart with nothing changed wrote {writes:?}");
        let reads_of_one_report = after
            .iter()
            .filter(|r| r.path.ends_with("/reports/asyncapi-guard"))
            .count();
        assert_eq!(reads_of_one_report, 0, "no read per namespace");
        assert!(shared.metrics.encode().contains(
            "asyncapi_guard_audit_violations{namespace=\"payments\",rule=\"server-security-missing\"} 2"
        ));
        second.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_namespace_being_deleted_gets_no_more_writes() {
    local(async {
        let api = cluster();
        let shared = Shared::default();
        let replica = start(&api, shared.clone(), with_reports("replica-a"));
        settled(&api, &shared).await;
        api.terminate_namespace("team-b");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = api.requests().len();
        // Its objects change while it is deleted (updates are still allowed there).
        for document in [UNDEFINED, SECURE, INSECURE] {
            let mut orders = api
                .get(fake_api::CONFIG_MAPS, Some("team-b"), "orders")
                .unwrap();
            orders["data"]["asyncapi.yaml"] = json!(document);
            api.replace(fake_api::CONFIG_MAPS, Some("team-b"), orders);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        settled(&api, &shared).await;
        let requests = api.requests();
        let attempts: Vec<String> = audit_writes(&requests[before..])
            .iter()
            .filter(|r| r.path.contains("/namespaces/team-b/"))
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect();
        assert!(attempts.is_empty(), "{attempts:?}");
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_terminating_namespace_seen_only_through_a_refusal_is_dropped_not_retried() {
    local(async {
        let api = cluster();
        let shared = Shared::default();
        // The audit learns it from the API server's refusal, not from the namespace watch.
        api.fail_next(
            http::Method::POST,
            "/namespaces/team-b/events",
            403,
            "Forbidden",
        );
        let replica = start(&api, shared.clone(), with_reports("replica-a"));
        settled(&api, &shared).await;
        let refused = api
            .requests()
            .iter()
            .filter(|r| r.path.contains("/namespaces/team-b/events"))
            .count();
        // A plain 403 is refused for good: one attempt, no retry loop.
        assert_eq!(refused, 1);
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn current_again_within_seconds_of_the_api_server_returning() {
    local(async {
        let api = cluster();
        let shared = Shared::default();
        let replica = start(&api, shared.clone(), settings("replica-a"));
        settled(&api, &shared).await;
        // kube-apiserver restarts: every watch ends, and the history the watches would
        // resume from is gone when it is back.
        api.set_down(true);
        let metrics = shared.clone();
        api.wait_for("the outage in the metrics", Duration::from_secs(4), move |_| {
            metrics.metrics.encode().contains("asyncapi_guard_audit_watch_up{resource=\"configmaps\"} 0")
        })
        .await;
        // Long enough for kube's own backoff to have grown past 5 s.
        tokio::time::sleep(Duration::from_secs(6)).await;
        api.compact();
        api.set_down(false);
        let back = tokio::time::Instant::now();
        api.create(fake_api::CONFIG_MAPS, Some("team-a"), config_map("fresh", "team-a", INSECURE));
        let gauge = "asyncapi_guard_audit_violations{namespace=\"team-a\",rule=\"server-security-missing\"} 3";
        let metrics = shared.clone();
        api.wait_for("the new violation in the gauge", Duration::from_secs(5), move |_| {
            metrics.metrics.encode().contains(gauge)
        })
        .await;
        assert!(back.elapsed() < Duration::from_secs(5));
        let text = shared.metrics.encode();
        assert!(text.contains("asyncapi_guard_audit_watch_up{resource=\"configmaps\"} 1"), "{text}");
        assert!(text.contains("asyncapi_guard_audit_relists_total{resource=\"configmaps\"} 2"), "listed at the start and once after: {text}");
        replica.stop().await;
    })
    .await;
}

#[tokio::test]
async fn a_changed_verdict_is_a_new_event_never_a_repeat_of_a_stale_one() {
    local(async {
        let api = FakeApi::new();
        api.create(
            fake_api::CONFIG_MAPS,
            Some("payments"),
            config_map("orders", "payments", INSECURE),
        );
        let shared = Shared::default();
        let replica = start(&api, shared.clone(), settings("replica-a"));
        let notes = |api: &FakeApi| -> Vec<(String, i64)> {
            let mut notes: Vec<(String, i64)> = api
                .all(fake_api::EVENTS)
                .iter()
                .map(|e| {
                    (
                        e["note"].as_str().unwrap_or_default().to_owned(),
                        e["series"]["count"].as_i64().unwrap_or(1),
                    )
                })
                .collect();
            notes.sort();
            notes
        };
        api.wait_for("the first event", Duration::from_secs(10), |api| {
            notes(api).len() == 1
        })
        .await;
        let set = |document: &str| {
            let mut orders = api
                .get(fake_api::CONFIG_MAPS, Some("payments"), "orders")
                .unwrap();
            orders["data"]["asyncapi.yaml"] = json!(document);
            api.replace(fake_api::CONFIG_MAPS, Some("payments"), orders);
        };
        // Another finding: another Event, the first one left as it was.
        set(UNDEFINED);
        api.wait_for("the second event", Duration::from_secs(10), |api| {
            notes(api).len() == 2
        })
        .await;
        let events = notes(&api);
        assert!(
            events
                .iter()
                .any(|(n, c)| n.contains("[server-security-missing]") && *c == 1),
            "{events:?}"
        );
        assert!(
            events
                .iter()
                .any(|(n, c)| n.contains("[security-scheme-undefined]") && *c == 1),
            "{events:?}"
        );
        // The first verdict again: that Event, counted once more, still true.
        set(INSECURE);
        api.wait_for(
            "the first event counted again",
            Duration::from_secs(10),
            |api| {
                notes(api)
                    .iter()
                    .any(|(n, c)| n.contains("[server-security-missing]") && *c == 2)
            },
        )
        .await;
        assert_eq!(notes(&api).len(), 2);
        replica.stop().await;
    })
    .await;
}

/// Replicas that start at the same instant never lead together: each takes the Lease under
/// a field manager of its own, so the second apply of a free Lease conflicts.
#[tokio::test]
async fn replicas_starting_together_never_lead_at_once() {
    local(async {
        for round in 0..8 {
            let api = FakeApi::new();
            // Requests take a little while, so that the replicas' requests interleave.
            api.set_latency(Duration::from_millis(25));
            let replicas: Vec<(Shared, Replica)> = (0..3)
                .map(|i| {
                    let shared = Shared::default();
                    let replica = start(
                        &api,
                        shared.clone(),
                        settings(&format!("replica-{round}-{i}")),
                    );
                    (shared, replica)
                })
                .collect();
            let mut led = false;
            let deadline = tokio::time::Instant::now() + Duration::from_millis(2500);
            while tokio::time::Instant::now() < deadline {
                let leaders = replicas
                    .iter()
                    .filter(|(shared, _)| {
                        shared
                            .metrics
                            .encode()
                            .contains("\nasyncapi_guard_audit_leader 1\n")
                    })
                    .count();
                assert!(
                    leaders <= 1,
                    "round {round}: {leaders} replicas lead at once (Lease held by {:?})",
                    holder(&api)
                );
                led |= leaders == 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(led, "round {round}: nobody led");
            for (_, replica) in replicas {
                replica.stop().await;
            }
        }
    })
    .await;
}
