//! Exceptions in the in-cluster audit, with the watch every replica keeps: a covered finding
//! is a `skip` result naming its exception, counts in no gauge and gets no Event; each
//! exception's status says whether it counts and what it covers; and when one expires while
//! the audit runs, the object fails again everywhere, with an Event on both.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::controller::AuditSettings;
use asyncapi_guard::service::{Shared, Shutdown};
use common::audit_replica::{settings, start};
use common::fake_api::{self, FakeApi};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

fn config_map(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "payments", "labels": {"asyncapi-guard.io/document": "true"}},
           "data": {"asyncapi.yaml": INSECURE}})
}

fn exception(namespace: &str, name: &str, target: &str, expires: Timestamp) -> Value {
    json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPIException",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"match": {"namespace": "payments", "kind": "ConfigMap", "name": target, "key": "asyncapi.yaml"},
                    "rules": ["server-security-missing"], "reason": "legacy broker", "expires": expires.to_string()}})
}

fn report(api: &FakeApi) -> Option<Value> {
    api.get(fake_api::REPORTS, Some("payments"), "asyncapi-guard")
}

fn result_of<'r>(report: &'r Value, name: &str) -> Option<&'r Value> {
    report["results"]
        .as_array()?
        .iter()
        .find(|r| r["resources"][0]["name"] == name)
}

fn status(api: &FakeApi, namespace: &str, name: &str) -> Value {
    api.get(fake_api::EXCEPTIONS, Some(namespace), name)
        .map(|e| e["status"].clone())
        .unwrap_or(Value::Null)
}

fn condition<'s>(status: &'s Value, type_: &str) -> &'s Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == type_))
        .unwrap_or(&Value::Null)
}

fn events(api: &FakeApi, name: &str, reason: &str) -> usize {
    api.all(fake_api::EVENTS)
        .iter()
        .filter(|e| e["regarding"]["name"] == name && e["reason"] == reason)
        .count()
}

#[tokio::test]
async fn exceptions_in_the_audit_until_one_expires() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let api = FakeApi::new();
            api.create(fake_api::CONFIG_MAPS, Some("payments"), config_map("orders"));
            api.create(fake_api::CONFIG_MAPS, Some("payments"), config_map("billing"));
            let expires = Timestamp::now().checked_add(SignedDuration::from_secs(4)).unwrap();
            api.create(fake_api::EXCEPTIONS, Some("asyncapi-guard"), exception("asyncapi-guard", "legacy", "orders", expires));
            // Beside the ConfigMap, where exceptions do not count.
            let later = Timestamp::now().checked_add(SignedDuration::from_hours(1)).unwrap();
            api.create(fake_api::EXCEPTIONS, Some("payments"), exception("payments", "self-service", "billing", later));

            // Every replica keeps the exceptions from a watch; the leader audits.
            let shared = Shared::default();
            shared.health.wait_for_exceptions();
            let shutdown = Shutdown::new();
            let watch = tokio::task::spawn_local(asyncapi_guard::service::exceptions::keep(
                api.client("asyncapi-guard"),
                shared.clone(),
                shutdown.clone(),
            ));
            let replica = start(&api, shared.clone(), AuditSettings { reports: true, ..settings("replica-a") });

            api.wait_for("the report and both statuses", Duration::from_secs(10), |api| {
                report(api).is_some()
                    && !status(api, "asyncapi-guard", "legacy").is_null()
                    && !status(api, "payments", "self-service").is_null()
            })
            .await;
            let payments = report(&api).unwrap();
            let orders = result_of(&payments, "orders").unwrap();
            assert_eq!(orders["result"], "skip", "{payments}");
            assert_eq!(orders["properties"]["exception"], "asyncapi-guard/legacy");
            assert_eq!(orders["properties"]["exceptionExpires"], expires.to_string());
            assert_eq!(result_of(&payments, "billing").unwrap()["result"], "fail");
            assert_eq!(payments["summary"]["skip"], 1);
            let gauge = |n: u8| format!("asyncapi_guard_audit_violations{{namespace=\"payments\",rule=\"server-security-missing\"}} {n}");
            assert!(shared.metrics.encode().contains(&gauge(1)), "only billing counts");
            assert_eq!(events(&api, "orders", "NonCompliant"), 0);
            assert_eq!(events(&api, "billing", "NonCompliant"), 1);

            let legacy = status(&api, "asyncapi-guard", "legacy");
            assert_eq!(legacy["coveredFindings"], 1, "{legacy}");
            assert_eq!(condition(&legacy, "Accepted")["status"], "True");
            assert_eq!(condition(&legacy, "Expired")["status"], "False");
            assert_eq!(condition(&legacy, "Expired")["reason"], "ExpiresSoon");
            let refused = status(&api, "payments", "self-service");
            assert_eq!(refused["coveredFindings"], 0);
            assert_eq!(condition(&refused, "Accepted")["status"], "False");
            assert_eq!(condition(&refused, "Accepted")["reason"], "NamespaceNotAllowed");

            // It expires while the audit runs: orders fails again everywhere, and both the
            // exception and the object get an Event.
            api.wait_for("the exception to expire in the audit", Duration::from_secs(10), |api| {
                report(api).is_some_and(|r| result_of(&r, "orders").is_some_and(|o| o["result"] == "fail"))
                    && events(api, "legacy", "Expired") == 1
                    && events(api, "orders", "NonCompliant") == 1
            })
            .await;
            assert!(shared.metrics.encode().contains(&gauge(2)));
            api.wait_for("the expired status", Duration::from_secs(5), |api| {
                let legacy = status(api, "asyncapi-guard", "legacy");
                condition(&legacy, "Expired")["status"] == "True" && legacy["coveredFindings"] == 0
            })
            .await;
            let note = api
                .all(fake_api::EVENTS)
                .into_iter()
                .find(|e| e["regarding"]["name"] == "legacy")
                .unwrap();
            assert_eq!(note["regarding"]["kind"], "AsyncAPIException");
            assert_eq!(
                note["note"],
                format!("expired at {expires}: the findings it covered in ConfigMap payments/orders are violations again (it said: legacy broker)")
            );

            replica.stop().await;
            shutdown.cancel();
            let _ = watch.await;
        })
        .await;
}
