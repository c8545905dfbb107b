//! An uninstall leaves nothing that still speaks for the guard: what the server creates in
//! its namespace is owned by its Deployment (the garbage collector deletes it with the
//! Deployment), and `cleanup` (the chart's pre-delete hook) stops the audit first, then
//! deletes its Reports, clears its status conditions and deletes the certificate Secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use asyncapi_guard::audit::controller::AuditSettings;
use asyncapi_guard::cleanup::{CleanupOptions, UNINSTALLING, cleanup};
use asyncapi_guard::service::Shared;
use asyncapi_guard::webhook::certificates::SelfManaged;
use common::audit_replica::{settings, start};
use common::fake_api::{self, FakeApi};
use serde_json::{Value, json};

const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

fn owners(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap(),
                o["name"].as_str().unwrap(),
                o["uid"].as_str().unwrap()
            )
        })
        .collect()
}

#[tokio::test]
async fn what_the_guard_wrote_goes_with_an_uninstall() {
    tokio::task::LocalSet::new()
        .run_until(async {
            let api = FakeApi::new();
            let deployment = api.create(
                fake_api::DEPLOYMENTS,
                Some("asyncapi-guard"),
                json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "asyncapi-guard", "namespace": "asyncapi-guard"},
                       "spec": {"selector": {"matchLabels": {"app": "guard"}}, "template": {"metadata": {"labels": {"app": "guard"}}, "spec": {"containers": [{"name": "guard", "image": "x"}]}}}}),
            );
            let owner = format!("Deployment/asyncapi-guard/{}", deployment["metadata"]["uid"].as_str().unwrap());
            api.create(
                fake_api::CONFIG_MAPS,
                Some("payments"),
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "orders", "namespace": "payments", "labels": {"asyncapi-guard.io/document": "true"}},
                       "data": {"asyncapi.yaml": INSECURE}}),
            );
            api.create(
                fake_api::ASYNCAPIS,
                Some("payments"),
                json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI", "metadata": {"name": "stream", "namespace": "payments"},
                       "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}}),
            );

            // The self-managed certificate Secret and the audit's Lease: owned by the Deployment.
            let dir = tempfile::tempdir().unwrap();
            let certificates = SelfManaged {
                client: api.client("asyncapi-guard"),
                namespace: "asyncapi-guard".into(),
                secret: "asyncapi-guard-tls".into(),
                webhook_configuration: None,
                dns_names: vec!["asyncapi-guard.asyncapi-guard.svc".into()],
                dir: dir.path().to_owned(),
                owner: asyncapi_guard::service::owner::deployment(&api.client("asyncapi-guard"), "asyncapi-guard", "asyncapi-guard").await,
            };
            certificates.reconcile().await.unwrap();
            let secret = api.get(fake_api::SECRETS, Some("asyncapi-guard"), "asyncapi-guard-tls").unwrap();
            assert_eq!(owners(&secret), std::slice::from_ref(&owner));

            let shared = Shared::default();
            let replica = start(
                &api,
                shared.clone(),
                AuditSettings {
                    reports: true,
                    owner_deployment: Some("asyncapi-guard".into()),
                    ..settings("replica-a")
                },
            );
            api.wait_for("the audit's report and status", Duration::from_secs(10), |api| {
                api.get(fake_api::REPORTS, Some("payments"), "asyncapi-guard").is_some()
                    && api
                        .get(fake_api::ASYNCAPIS, Some("payments"), "stream")
                        .is_some_and(|o| !o["status"]["conditions"].is_null())
            })
            .await;
            let lease = api.get(fake_api::LEASES, Some("asyncapi-guard"), "asyncapi-guard-audit").unwrap();
            assert_eq!(owners(&lease), std::slice::from_ref(&owner));

            // helm uninstall: the pre-delete hook runs while the pods still do.
            let cleaned = cleanup(
                &api.client("asyncapi-guard"),
                &CleanupOptions {
                    namespace: "asyncapi-guard".into(),
                    lease: Some("asyncapi-guard-audit".into()),
                    tls_secret: Some("asyncapi-guard-tls".into()),
                    owner_deployment: Some("asyncapi-guard".into()),
                    leader_notice: Duration::from_secs(3),
                },
            )
            .await;
            assert!(cleaned.problems.is_empty(), "{:?}", cleaned.problems);
            assert!(cleaned.lease_taken && cleaned.secret_deleted);
            assert_eq!(cleaned.reports_deleted, 1);
            assert_eq!(cleaned.statuses_cleared, 1);
            assert!(shared.metrics.encode().contains("\nasyncapi_guard_audit_leader 0\n"), "the leader stopped");

            assert!(api.all(fake_api::REPORTS).is_empty());
            let stream = api.get(fake_api::ASYNCAPIS, Some("payments"), "stream").unwrap();
            let conditions = stream["status"]["conditions"].as_array().cloned().unwrap_or_default();
            assert!(conditions.iter().all(|c| c["type"] != "SecurityCompliant"), "{stream}");
            assert!(api.get(fake_api::SECRETS, Some("asyncapi-guard"), "asyncapi-guard-tls").is_none());
            let lease = api.get(fake_api::LEASES, Some("asyncapi-guard"), "asyncapi-guard-audit").unwrap();
            assert_eq!(lease["spec"]["holderIdentity"], UNINSTALLING);
            assert_eq!(owners(&lease), [owner], "it goes with the Deployment");

            // The pods are still there until Helm deletes them: nothing comes back.
            let mut orders = api.get(fake_api::CONFIG_MAPS, Some("payments"), "orders").unwrap();
            orders["data"]["asyncapi.yaml"] = json!(INSECURE.replace("production", "prod"));
            api.replace(fake_api::CONFIG_MAPS, Some("payments"), orders);
            tokio::time::sleep(Duration::from_secs(3)).await;
            assert!(api.all(fake_api::REPORTS).is_empty());
            replica.stop().await;
        })
        .await;
}
