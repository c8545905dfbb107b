//! Self-managed certificates against a scripted API server: first start, a second replica
//! that loses the race, an up-to-date Secret that is left alone.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use asyncapi_guard::webhook::certificates::SelfManaged;
use common::mock_api::{self, status};
use http::Method;
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/guard/secrets";
const WEBHOOKS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

fn managed(client: kube::Client, dir: &std::path::Path) -> SelfManaged {
    SelfManaged {
        client,
        namespace: "guard".into(),
        secret: "asyncapi-guard-tls".into(),
        webhook_configuration: Some("asyncapi-guard".into()),
        dns_names: vec!["asyncapi-guard.guard.svc".into()],
        dir: dir.to_owned(),
    }
}

fn webhook_configuration(ca_bundle: Option<&str>) -> Value {
    let client_config = |path: &str| {
        let mut config = json!({"service": {"name": "asyncapi-guard", "namespace": "guard", "path": path, "port": 443}});
        if let Some(bundle) = ca_bundle {
            config["caBundle"] = json!(bundle);
        }
        config
    };
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
           "metadata": {"name": "asyncapi-guard", "resourceVersion": "7"},
           "webhooks": [
               {"name": "enforce.configmaps.asyncapi-guard.io", "clientConfig": client_config("/validate/enforce"),
                "admissionReviewVersions": ["v1"], "sideEffects": "None"},
               {"name": "warn.configmaps.asyncapi-guard.io", "clientConfig": client_config("/validate/warn"),
                "admissionReviewVersions": ["v1"], "sideEffects": "None"}]})
}

fn b64(value: &Value) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(value.as_str().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn first_start_creates_the_secret_writes_the_files_and_sets_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut api) = mock_api::client("guard");
    let managed = managed(client, dir.path());
    let task = tokio::spawn(async move { managed.reconcile().await });

    api.expect(Method::GET, &format!("{SECRETS}/asyncapi-guard-tls"))
        .await
        .not_found("secrets", "asyncapi-guard-tls");
    let create = api.expect(Method::POST, SECRETS).await;
    assert_eq!(create.body["type"], "kubernetes.io/tls");
    let data = create.body["data"].clone();
    let ca = b64(&data["ca.crt"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(b64(&data["ca.key"]).contains("PRIVATE KEY"));
    let created = create.body.clone();
    create.respond(201, created);

    api.expect(Method::GET, &format!("{WEBHOOKS}/asyncapi-guard"))
        .await
        .respond(200, webhook_configuration(None));
    let replace = api
        .expect(Method::PUT, &format!("{WEBHOOKS}/asyncapi-guard"))
        .await;
    assert_eq!(
        replace.body["metadata"]["resourceVersion"], "7",
        "optimistic concurrency"
    );
    for webhook in replace.body["webhooks"].as_array().unwrap() {
        assert_eq!(b64(&webhook["clientConfig"]["caBundle"]), ca);
    }
    let replaced = replace.body.clone();
    replace.respond(200, replaced);

    let material = task.await.unwrap().unwrap();
    assert_eq!(material.ca_bundle, ca);
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        b64(&data["tls.crt"])
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.key")).unwrap(),
        b64(&data["tls.key"])
    );
}

#[tokio::test]
async fn a_replica_that_loses_the_race_uses_the_winners_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut api) = mock_api::client("guard");
    let winner_secret = {
        // What the other replica wrote: produced by the same code, so it is valid.
        let (other_client, mut other_api) = mock_api::client("guard");
        let other = managed(other_client, tempfile::tempdir().unwrap().path());
        let task = tokio::spawn(async move { other.reconcile().await });
        other_api
            .expect(Method::GET, SECRETS)
            .await
            .not_found("secrets", "asyncapi-guard-tls");
        let create = other_api.expect(Method::POST, SECRETS).await;
        let mut winner_secret = create.body.clone();
        winner_secret["metadata"]["resourceVersion"] = json!("1");
        create.respond(201, winner_secret.clone());
        other_api
            .expect(Method::GET, WEBHOOKS)
            .await
            .not_found("validatingwebhookconfigurations", "asyncapi-guard");
        task.await.unwrap().unwrap();
        winner_secret
    };
    let managed = managed(client, dir.path());
    let task = tokio::spawn(async move { managed.reconcile().await });
    api.expect(Method::GET, SECRETS)
        .await
        .not_found("secrets", "asyncapi-guard-tls");
    api.expect(Method::POST, SECRETS).await.respond(
        409,
        status(
            409,
            "AlreadyExists",
            "secrets \"asyncapi-guard-tls\" already exists",
        ),
    );
    api.expect(Method::GET, SECRETS)
        .await
        .respond(200, winner_secret.clone());
    // Up to date now: no write; the webhook configuration already trusts the CA.
    let bundle = winner_secret["data"]["ca.crt"].as_str().unwrap().to_owned();
    api.expect(Method::GET, WEBHOOKS)
        .await
        .respond(200, webhook_configuration(Some(&bundle)));
    let material = task.await.unwrap().unwrap();
    assert_eq!(material.cert, b64(&winner_secret["data"]["tls.crt"]));
}
