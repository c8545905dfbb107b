//! Self-managed certificates against the fake API server (first start, the caBundle kept by
//! a watch, two replicas, IP names) and a scripted one (the exact exchanges of a replica that
//! loses the race to create the Secret).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use asyncapi_guard::webhook::certificates::SelfManaged;
use common::self_managed;
use std::time::Duration;

use common::fake_api::{self, FakeApi};
use common::mock_api::{self, status};
use http::Method;
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/guard/secrets";
const WEBHOOKS: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

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

/// A webhook configuration as the chart renders it (no caBundle), for the fake API server.
fn rendered_configuration() -> Value {
    let mut configuration = webhook_configuration(None);
    configuration["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    configuration
}

fn ca_bundles(configuration: &Value) -> Vec<Option<String>> {
    configuration["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["clientConfig"].get("caBundle").map(b64))
        .collect()
}

const SECRETS_COLLECTION: &str = fake_api::SECRETS;
const CONFIGURATIONS: &str = fake_api::WEBHOOK_CONFIGURATIONS;

#[tokio::test]
async fn first_start_creates_the_secret_writes_the_files_and_sets_the_ca_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    api.create(CONFIGURATIONS, None, rendered_configuration());
    let managed = self_managed(api.client("guard"), dir.path());
    let material = managed.reconcile().await.unwrap();

    let secret = api
        .get(SECRETS_COLLECTION, Some("guard"), "asyncapi-guard-tls")
        .unwrap();
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let ca = b64(&secret["data"]["ca.crt"]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(b64(&secret["data"]["ca.key"]).contains("PRIVATE KEY"));
    assert_eq!(material.ca_bundle, ca);
    assert_eq!(
        FakeApi::managers(&secret),
        ["asyncapi-guard-certificates"],
        "the Secret is written under our own field manager"
    );

    let configuration = api.get(CONFIGURATIONS, None, "asyncapi-guard").unwrap();
    assert_eq!(
        ca_bundles(&configuration),
        [Some(ca.clone()), Some(ca.clone())]
    );
    assert!(
        FakeApi::managers(&configuration).contains(&"asyncapi-guard-certificates".to_owned()),
        "{:?}",
        FakeApi::managers(&configuration)
    );
    let patch = &api.writes_to("validatingwebhookconfigurations")[0];
    // An update, which owns only the caBundles it sets (tests/upgrades.rs says why).
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    assert_eq!(patch.field_manager(), Some("asyncapi-guard-certificates"));
    // Only the caBundle is sent: Helm's or Argo CD's fields are not touched.
    for webhook in patch.body["webhooks"].as_array().unwrap() {
        let keys: Vec<&String> = webhook.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["clientConfig", "name"]);
    }
    assert!(patch.body["metadata"]["resourceVersion"].is_string());

    for (file, key) in [("tls.crt", "tls.crt"), ("tls.key", "tls.key")] {
        let path = dir.path().join(file);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            b64(&secret["data"][key])
        );
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{file} is written 0600, not {mode:o}");
    }

    // A second start finds everything in place: no write at all.
    let writes = api.requests().iter().filter(|r| r.is_write()).count();
    managed.reconcile().await.unwrap();
    assert_eq!(
        api.requests().iter().filter(|r| r.is_write()).count(),
        writes
    );
}

/// A webhook configuration created after the server started, or replaced without its
/// caBundle, gets it within seconds, not at the next hourly check (until then the API
/// server cannot call the webhook, and every guarded object is refused).
#[tokio::test]
async fn a_configuration_created_later_or_replaced_without_its_ca_bundle_gets_it_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    let managed = self_managed(api.client("guard"), dir.path());
    let material = managed.reconcile().await.unwrap();
    let ca = material.ca_bundle.clone();
    // Renewal is hourly; the watch must not wait for it.
    let running = tokio::spawn(managed.run(Duration::from_secs(3600), material));

    let has_bundle = |api: &FakeApi| {
        api.get(CONFIGURATIONS, None, "asyncapi-guard")
            .is_some_and(|c| {
                ca_bundles(&c)
                    .iter()
                    .all(|b| b.as_deref() == Some(ca.as_str()))
            })
    };
    // Created after the server started (helm install ordering, or a re-apply).
    api.create(CONFIGURATIONS, None, rendered_configuration());
    api.wait_for(
        "the caBundle of a new configuration",
        Duration::from_secs(5),
        has_bundle,
    )
    .await;

    // `kubectl replace -f` (or an Argo CD Replace sync) drops the field.
    api.replace(CONFIGURATIONS, None, rendered_configuration());
    assert!(!has_bundle(&api));
    api.wait_for(
        "the caBundle after a replace",
        Duration::from_secs(5),
        has_bundle,
    )
    .await;

    // Delete to unblock, then apply again.
    api.delete(CONFIGURATIONS, None, "asyncapi-guard");
    api.create(CONFIGURATIONS, None, rendered_configuration());
    api.wait_for(
        "the caBundle after delete and create",
        Duration::from_secs(5),
        has_bundle,
    )
    .await;

    // Idempotent: events about our own write, or about anything else, write nothing more.
    let writes = api.writes_to("validatingwebhookconfigurations").len();
    let mut labelled = api.get(CONFIGURATIONS, None, "asyncapi-guard").unwrap();
    labelled["metadata"]["labels"] = json!({"team": "platform"});
    api.replace(CONFIGURATIONS, None, labelled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        api.writes_to("validatingwebhookconfigurations").len(),
        writes
    );
    running.abort();
}

#[tokio::test]
async fn two_replicas_agree_on_one_secret_and_both_keep_the_ca_bundle() {
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = self_managed(api.client("guard"), one.path());
    let second = self_managed(api.client("guard"), two.path());
    let (a, b) = tokio::join!(first.reconcile(), second.reconcile());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both serve the certificate of the one Secret");
    assert_eq!(api.all(SECRETS_COLLECTION).len(), 1);
    let runs = [
        tokio::spawn(first.run(Duration::from_secs(3600), a.clone())),
        tokio::spawn(second.run(Duration::from_secs(3600), b)),
    ];
    api.create(CONFIGURATIONS, None, rendered_configuration());
    api.wait_for("the caBundle", Duration::from_secs(5), |api| {
        api.get(CONFIGURATIONS, None, "asyncapi-guard")
            .is_some_and(|c| {
                ca_bundles(&c)
                    .iter()
                    .all(|x| x.as_deref() == Some(a.ca_bundle.as_str()))
            })
    })
    .await;
    runs.iter().for_each(tokio::task::JoinHandle::abort);
}

/// A replica that has not seen a CA rotation yet must not put its old bundle back over the
/// new one another replica set: the two would rewrite the configuration in turn.
#[tokio::test]
async fn a_replica_behind_a_ca_rotation_follows_the_secret_instead_of_fighting() {
    use asyncapi_guard::webhook::certificates::{Plan, issue};
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    let dir = tempfile::tempdir().unwrap();
    let behind = self_managed(api.client("guard"), dir.path());
    let old = behind.reconcile().await.unwrap();
    // Another replica rotates the CA: the Secret holds the new bundle (new CA, then the old).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rotated = issue(
        &Plan::NewCa("test"),
        Some(&old),
        &["asyncapi-guard.guard.svc".to_owned()],
        now,
    )
    .unwrap();
    assert_ne!(rotated.ca_bundle, old.ca_bundle);
    let mut secret = api
        .get(SECRETS_COLLECTION, Some("guard"), "asyncapi-guard-tls")
        .unwrap();
    use base64::Engine as _;
    let encode = |text: &str| json!(base64::engine::general_purpose::STANDARD.encode(text));
    secret["data"]["ca.crt"] = encode(&rotated.ca_bundle);
    secret["data"]["ca.key"] = encode(&rotated.ca_key);
    secret["data"]["tls.crt"] = encode(&rotated.cert);
    secret["data"]["tls.key"] = encode(&rotated.key);
    api.replace(SECRETS_COLLECTION, Some("guard"), secret);
    // ... and set it in the configuration, which this replica now watches with its old one.
    let mut configuration = rendered_configuration();
    for webhook in configuration["webhooks"].as_array_mut().unwrap() {
        webhook["clientConfig"]["caBundle"] = encode(&rotated.ca_bundle);
    }
    let running = tokio::spawn(behind.run(Duration::from_secs(3600), old));
    api.create(CONFIGURATIONS, None, configuration);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = api.get(CONFIGURATIONS, None, "asyncapi-guard").unwrap();
    assert!(
        ca_bundles(&seen)
            .iter()
            .all(|b| b.as_deref() == Some(rotated.ca_bundle.as_str())),
        "the new bundle stays"
    );
    assert!(api.writes_to("validatingwebhookconfigurations").is_empty());
    // And the replica serves the certificate of the new CA now.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("tls.crt")).unwrap(),
        rotated.cert
    );
    running.abort();
}

#[tokio::test]
async fn an_ip_name_does_not_reissue_the_certificate_at_every_start() {
    let api = FakeApi::new();
    api.ensure_namespace("guard");
    let dir = tempfile::tempdir().unwrap();
    let with_ip = |client| SelfManaged {
        dns_names: vec!["asyncapi-guard.guard.svc".into(), "127.0.0.1".into()],
        ..self_managed(client, dir.path())
    };
    let first = with_ip(api.client("guard")).reconcile().await.unwrap();
    let secret_writes = api.writes_to("secrets").len();
    let second = with_ip(api.client("guard")).reconcile().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(
        api.writes_to("secrets").len(),
        secret_writes,
        "no new certificate"
    );
}

#[tokio::test]
async fn a_replica_that_loses_the_race_uses_the_winners_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (client, mut api) = mock_api::client("guard");
    let winner_secret = {
        // What the other replica wrote: produced by the same code, so it is valid.
        let (other_client, mut other_api) = mock_api::client("guard");
        let other = self_managed(other_client, tempfile::tempdir().unwrap().path());
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
    let managed = self_managed(client, dir.path());
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
    api.expect(Method::GET, &format!("{WEBHOOKS}/asyncapi-guard"))
        .await
        .respond(200, webhook_configuration(Some(&bundle)));
    api.expect_nothing(Duration::from_millis(200)).await;
    let material = task.await.unwrap().unwrap();
    assert_eq!(material.cert, b64(&winner_secret["data"]["tls.crt"]));
}
