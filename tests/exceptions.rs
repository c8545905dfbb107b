//! Exceptions as a platform team meets them: `serve --exceptions` (the real binary, its
//! Kubernetes API the fake one over HTTP) keeps the cluster's `AsyncAPIException`s from a
//! watch, lets through what one covers with a warning that names it, stops doing so the
//! moment it expires, ignores one written where exceptions do not count, and refuses an
//! exception that would not count.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::fake_api::{self, FakeApi};
use common::server::{Pki, plain_get};
use common::{response, warnings};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

const INSECURE: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

/// A ConfigMap's CREATE review, labelled for the guard, with `document` under `key`.
fn config_map_review(namespace: &str, name: &str, key: &str, document: &str) -> Vec<u8> {
    review(
        ("", "v1", "ConfigMap", "configmaps"),
        namespace,
        name,
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": name, "namespace": namespace, "labels": {"asyncapi-guard.io/document": "true"}},
               "data": {key: document}}),
    )
}

fn review(
    (group, version, kind, resource): (&str, &str, &str, &str),
    namespace: &str,
    name: &str,
    object: Value,
) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": format!("uid-{name}"),
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "name": name, "namespace": namespace, "operation": "CREATE",
            "userInfo": {"username": "someone"},
            "object": object, "oldObject": null, "dryRun": false
        }
    }))
    .unwrap()
}

fn exception(
    namespace: &str,
    name: &str,
    target: Value,
    rules: &[&str],
    expires: Timestamp,
) -> Value {
    json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPIException",
           "metadata": {"name": name, "namespace": namespace},
           "spec": {"match": target, "rules": rules, "reason": format!("{name}: mTLS lands next quarter"),
                    "expires": expires.to_string(), "owner": "team-payments", "ticket": "PAY-1"}})
}

fn target(name: &str, key: Option<&str>) -> Value {
    let mut target = json!({"namespace": "payments", "kind": "ConfigMap", "name": name});
    if let Some(key) = key {
        target["key"] = json!(key);
    }
    target
}

fn from_now(seconds: i64) -> Timestamp {
    Timestamp::now()
        .checked_add(SignedDuration::from_secs(seconds))
        .unwrap()
}

fn kubeconfig(http: &fake_api::FakeHttp) -> [(&'static str, &std::ffi::OsStr); 1] {
    [("KUBECONFIG", http.kubeconfig.as_os_str())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_covers_its_findings_until_it_expires_and_one_elsewhere_counts_for_nothing() {
    let api = FakeApi::new();
    let http = api.serve_http().await;
    let expiring = from_now(6);
    for exception in [
        exception(
            "asyncapi-guard",
            "legacy-orders",
            target("orders-api", Some("asyncapi.yaml")),
            &["server-security-missing"],
            expiring,
        ),
        exception(
            "asyncapi-guard",
            "billing",
            target("billing", None),
            &["server-security-missing"],
            from_now(30 * 24 * 3600),
        ),
        // Where exceptions do not count: whoever writes ConfigMaps in payments writes here.
        exception(
            "payments",
            "self-service",
            target("inventory", None),
            &["server-security-missing"],
            from_now(3600),
        ),
        exception(
            "asyncapi-guard",
            "other-key",
            target("shipping", Some("other.yaml")),
            &["server-security-missing"],
            from_now(3600),
        ),
        exception(
            "asyncapi-guard",
            "other-rule",
            target("returns", None),
            &["security-scheme-undefined"],
            from_now(3600),
        ),
    ] {
        let namespace = exception["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_owned();
        api.create(fake_api::EXCEPTIONS, Some(&namespace), exception);
    }
    let pki = Pki::new();
    let server = pki.start_server_with_env(&["--exceptions"], &kubeconfig(&http));
    Pki::wait_until_ready(&server, Duration::from_secs(10)).await;
    // An insecure document in `payments`, ConfigMap `name`, under `key`.
    let enforce = async |name: &str, key: &str| {
        pki.client
            .review(
                server.admission,
                "/enforce",
                config_map_review("payments", name, key, INSECURE),
            )
            .await
    };

    // Covered, and about to expire (within the 14-day window): allowed, and the warning
    // names the exception, its expiry and its reason.
    let answer = enforce("orders-api", "asyncapi.yaml").await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");
    let said = warnings(&answer);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].starts_with(
            "asyncapi-guard: [server-security-missing] asyncapi.yaml:4:3 production server"
        ),
        "{}",
        said[0]
    );
    assert!(
        said[0].contains(&format!("excepted by asyncapi-guard/legacy-orders, which EXPIRES SOON at {expiring}: legacy-orders: mTLS lands next quarter")),
        "{}",
        said[0]
    );
    // Far from its expiry: `until`.
    let answer = enforce("billing", "asyncapi.yaml").await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");
    assert!(
        warnings(&answer)[0].contains("excepted by asyncapi-guard/billing until "),
        "{:?}",
        warnings(&answer)
    );

    // Not covered: an exception beside the ConfigMap, one for another key, one for another rule.
    for (name, key) in [
        ("inventory", "asyncapi.yaml"),
        ("shipping", "asyncapi.yaml"),
        ("returns", "asyncapi.yaml"),
    ] {
        let answer = enforce(name, key).await;
        assert_eq!(response(&answer)["allowed"], false, "{name}: {answer}");
        assert!(warnings(&answer).is_empty(), "{name}: {answer}");
    }

    let metrics = server.metrics_text().await;
    for line in [
        // Within 14 days of their expiry: legacy-orders, other-key and other-rule.
        "asyncapi_guard_exceptions{state=\"expiring\"} 3",
        "asyncapi_guard_exceptions{state=\"active\"} 1",
        "asyncapi_guard_exceptions{state=\"refused\"} 1",
        "\nasyncapi_guard_exceptions_stale 0\n",
        "asyncapi_guard_admission_findings_total{kind=\"ConfigMap\",rule=\"server-security-missing\",mode=\"excepted\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }

    // It expires while the server runs: from then on the same request is refused, with no
    // restart and no change in the cluster.
    let wait = expiring.duration_since(Timestamp::now()).as_millis().max(0) as u64 + 200;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let answer = enforce("orders-api", "asyncapi.yaml").await;
    assert_eq!(response(&answer)["allowed"], false, "{answer}");
    assert!(
        response(&answer)["status"]["message"]
            .as_str()
            .unwrap()
            .starts_with("ConfigMap payments/orders-api: asyncapi.yaml:4:3 production server \"production\" declares no security [server-security-missing]"),
        "{answer}"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("asyncapi_guard_exceptions{state=\"expired\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_that_would_not_count_is_refused_and_says_why() {
    let api = FakeApi::new();
    let http = api.serve_http().await;
    let pki = Pki::new();
    let server = pki.start_server_with_env(&["--exceptions"], &kubeconfig(&http));
    Pki::wait_until_ready(&server, Duration::from_secs(10)).await;
    let exceptions = (
        "asyncapi-guard.io",
        "v1alpha1",
        "AsyncAPIException",
        "asyncapiexceptions",
    );
    let cases = [
        (
            exception(
                "asyncapi-guard",
                "fine",
                target("orders-api", None),
                &["server-security-missing"],
                from_now(3600),
            ),
            None,
        ),
        (
            exception(
                "asyncapi-guard",
                "late",
                target("orders-api", None),
                &["server-security-missing"],
                from_now(-60),
            ),
            Some("it expired at"),
        ),
        (
            exception(
                "asyncapi-guard",
                "forever",
                target("orders-api", None),
                &["server-security-missing"],
                from_now(200 * 24 * 3600),
            ),
            Some("past the longest an exception may run (90 days from its creation"),
        ),
        (
            exception(
                "asyncapi-guard",
                "typo",
                target("orders-api", None),
                &["server-security"],
                from_now(3600),
            ),
            Some("the unknown rule \"server-security\""),
        ),
        (
            exception(
                "payments",
                "beside",
                target("orders-api", None),
                &["server-security-missing"],
                from_now(3600),
            ),
            Some(
                "it is in namespace \"payments\", where exceptions do not count: exceptions count only in \"asyncapi-guard\"",
            ),
        ),
        (
            {
                let mut e = exception(
                    "asyncapi-guard",
                    "why",
                    target("orders-api", None),
                    &["server-security-missing"],
                    from_now(3600),
                );
                e["spec"]["reason"] = json!(" ");
                e
            },
            Some("spec.reason is empty"),
        ),
    ];
    for (object, refused) in cases {
        let namespace = object["metadata"]["namespace"].as_str().unwrap().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        // Any mode's path: an exception is judged the same way.
        let answer = pki
            .client
            .review(
                server.admission,
                "/warn",
                review(exceptions, &namespace, &name, object),
            )
            .await;
        match refused {
            None => assert_eq!(response(&answer)["allowed"], true, "{name}: {answer}"),
            Some(why) => {
                assert_eq!(response(&answer)["allowed"], false, "{name}: {answer}");
                let message = response(&answer)["status"]["message"].as_str().unwrap();
                assert!(
                    message.starts_with(&format!(
                        "AsyncAPIException {namespace}/{name} is refused: "
                    )),
                    "{message}"
                );
                assert!(message.contains(why), "{name}: {message}");
            }
        }
    }
}

/// `orders-api`'s insecure document, as the API server sends it to `/enforce`.
async fn review_orders(pki: &Pki, server: &common::server::Server) -> Value {
    pki.client
        .review(
            server.admission,
            "/enforce",
            config_map_review("payments", "orders-api", "asyncapi.yaml", INSECURE),
        )
        .await
}

/// An hour's exception for `orders-api`'s missing security, where exceptions count.
fn grant_legacy_orders(api: &FakeApi) {
    api.create(
        fake_api::EXCEPTIONS,
        Some("asyncapi-guard"),
        exception(
            "asyncapi-guard",
            "legacy-orders",
            target("orders-api", None),
            &["server-security-missing"],
            from_now(3600),
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_only_once_listed_without_the_crd_there_are_none_and_a_watch_outage_keeps_the_last_set()
 {
    let api = FakeApi::new();
    let http = api.serve_http().await;
    grant_legacy_orders(&api);
    // The API server is away at start: the replica listens, but is not ready.
    api.set_down(true);
    let pki = Pki::new();
    let server = pki.start_server_with_env(&["--exceptions"], &kubeconfig(&http));
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (status, body) = plain_get(server.metrics, "/readyz").await;
    assert_eq!(status, 503);
    assert_eq!(
        String::from_utf8_lossy(&body),
        "not ready: the exceptions are not listed yet\n"
    );
    api.set_down(false);
    Pki::wait_until_ready(&server, Duration::from_secs(5)).await;
    let answer = review_orders(&pki, &server).await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");

    // The watch goes down: the last known exceptions stay in force, and the replica says so.
    let down_lines = |server: &common::server::Server| {
        server
            .logs()
            .iter()
            .filter(|l| l.contains("the watch is down"))
            .count()
    };
    let before = down_lines(&server);
    api.set_down(true);
    wait_for_stale(&server, 1).await;
    assert_eq!(down_lines(&server) - before, 1, "{:?}", server.logs());
    let answer = review_orders(&pki, &server).await;
    assert_eq!(response(&answer)["allowed"], true, "{answer}");
    // Down a while longer: still one line.
    tokio::time::sleep(Duration::from_secs(3)).await;
    api.set_down(false);
    wait_for_stale(&server, 0).await;
    assert_eq!(
        down_lines(&server) - before,
        1,
        "one line for one outage: {:?}",
        server.logs()
    );
}

/// Waits until the stale gauge (its sample, not its help text) is `value`.
async fn wait_for_stale(server: &common::server::Server, value: u8) {
    let sample = format!("\nasyncapi_guard_exceptions_stale {value}\n");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !server.metrics_text().await.contains(&sample) {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale gauge did not become {value}: {:?}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_crd_a_replica_is_ready_with_no_exceptions_and_finds_them_once_installed() {
    let api = FakeApi::new();
    let http = api.serve_http().await;
    api.set_installed(fake_api::EXCEPTIONS, false);
    let pki = Pki::new();
    let server = pki.start_server_with_env(&["--exceptions"], &kubeconfig(&http));
    Pki::wait_until_ready(&server, Duration::from_secs(5)).await;
    let answer = review_orders(&pki, &server).await;
    assert_eq!(response(&answer)["allowed"], false, "{answer}");
    assert!(server.wait_for_log(
        "the AsyncAPIException CRD is not installed",
        Duration::from_secs(2)
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let said = server
        .logs()
        .iter()
        .filter(|l| l.contains("CRD is not installed"))
        .count();
    assert_eq!(
        said,
        1,
        "said once, however often it looks: {:?}",
        server.logs()
    );

    api.set_installed(fake_api::EXCEPTIONS, true);
    grant_legacy_orders(&api);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = review_orders(&pki, &server).await;
        if response(&answer)["allowed"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the exception was never applied: {:?}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
