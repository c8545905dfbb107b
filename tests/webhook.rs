//! `asyncapi-guard serve` as a kube-apiserver calls it: real HTTPS to the real binary on an
//! ephemeral port, with the AdmissionReviews an API server v1.36 sent, and a client that
//! verifies the certificate.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::response;
use common::server::{Ca, Client, Pki, SecretVolume, plain_get};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECURE_V2: &str = "asyncapi: '2.6.0'\ninfo:\n  title: Hello world application\n  version: '0.1.0'\nservers:\n  production:\n    url: broker.mycompany.com\n    protocol: amqp\n    security:\n      - user-password: []\ncomponents:\n  securitySchemes:\n    user-password:\n      type: userPassword\n";
/// The insecure document of the captures: production without security, a typo'd scheme.
const INSECURE_V2: &str = "asyncapi: '2.6.0'\ninfo:\n  title: Hello world application\n  version: '0.1.0'\nservers:\n  production:\n    url: broker.mycompany.com\n    protocol: amqp\n  staging:\n    url: staging.mycompany.com\n    protocol: amqp\n    security:\n      - user-pass: []\nchannels:\n  hello:\n    publish:\n      message:\n        payload:\n          type: string\ncomponents:\n  securitySchemes:\n    user-password:\n      type: userPassword\n";

fn config_map_denial(name: &str) -> String {
    format!(
        "ConfigMap payments/{name}: asyncapi.yaml:6:3 production server \"production\" declares no security [server-security-missing] (+1 more)\n\
         - asyncapi.yaml:6:3 /servers/production [server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes\n\
         - asyncapi.yaml:13:9 /servers/staging/security/0 [security-scheme-undefined] scheme \"user-pass\" is not defined in components.securitySchemes; did you mean \"user-password\"?"
    )
}

fn resource_denial(name: &str) -> String {
    format!(
        "AsyncAPI payments/{name}: spec/servers/production production server \"production\" declares no security [server-security-missing] (+1 more)\n\
         - spec/servers/production [server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes\n\
         - spec/servers/staging/security/0 [security-scheme-undefined] scheme \"user-pass\" is not defined in components.securitySchemes; did you mean \"user-password\"?"
    )
}

/// The project's copies, and the shared originals when they are beside the checkout.
fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![common::fixtures().join("admission")];
    match common::shared_dir() {
        Some(shared) => dirs.push(shared.join("fixtures/admission")),
        None => println!(
            "../shared/fixtures/admission is not beside this checkout: the project's copies only"
        ),
    }
    dirs
}

fn fixtures() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for dir in fixture_dirs() {
        let mut names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        for path in names {
            let review: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                review,
            ));
        }
    }
    assert!(out.len() >= 14, "the fixtures are missing");
    out
}

fn bytes(review: &Value) -> Vec<u8> {
    serde_json::to_vec(review).unwrap()
}

fn is_labelled(review: &Value) -> bool {
    review["request"]["object"]["metadata"]["labels"]["asyncapi-guard.io/document"].is_string()
}

fn is_resource(review: &Value) -> bool {
    review["request"]["kind"]["kind"] == "AsyncAPI"
}

/// What docs/policy.md says each captured request gets.
fn expected(name: &str, review: &Value) -> Option<String> {
    let object_name = review["request"]["name"].as_str().unwrap();
    if review["request"]["operation"] == "DELETE" || !name.contains("insecure") {
        return None;
    }
    Some(if is_resource(review) {
        resource_denial(object_name)
    } else {
        config_map_denial(object_name)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_captured_review_gets_its_verdict() {
    let pki = Pki::new();
    let server = pki.start_server(&[]);
    for (name, review) in fixtures() {
        let answer = pki
            .client
            .review(server.admission, "?timeout=10s", bytes(&review))
            .await;
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{name}");
        assert_eq!(answer["kind"], "AdmissionReview", "{name}");
        let r = response(&answer);
        assert_eq!(
            r["uid"], review["request"]["uid"],
            "{name}: the uid is echoed"
        );
        match expected(&name, &review) {
            None => assert_eq!(r["allowed"], true, "{name}: {r}"),
            Some(message) => {
                assert_eq!(r["allowed"], false, "{name}");
                assert_eq!(r["status"]["code"], 403, "{name}");
                assert_eq!(r["status"]["message"], message.as_str(), "{name}");
            }
        }
    }
}

/// Argo CD and Flux re-send unchanged objects; a dry run is followed by the same
/// apply. The verdict comes from the memo, the denial still names the request's object, and
/// a configuration reload starts an empty memo. A dry run's document is kept at once; any
/// other the second time it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_documents_are_judged_from_the_memo_until_a_reload() {
    let pki = Pki::new();
    let mut volume = SecretVolume::new(
        &pki.dir.path().join("config"),
        &[("config.yaml", "mode: enforce\n")],
    );
    let config = volume.path("config.yaml").display().to_string();
    let server = pki.start_server(&["--config", &config]);
    let dry = bytes(&fixture("configmap-create-insecure-dryrun.json"));
    let real = bytes(&fixture("configmap-create-insecure.json"));
    let first = pki.client.review(server.admission, "", dry).await;
    let second = pki.client.review(server.admission, "", real.clone()).await;
    assert_eq!(response(&first)["allowed"], false);
    assert_eq!(response(&first)["status"], response(&second)["status"]);
    let metrics = server.metrics_text().await;
    for line in [
        "asyncapi_guard_memo_lookups_total{result=\"miss\"} 1",
        "asyncapi_guard_memo_lookups_total{result=\"hit\"} 1",
        "asyncapi_guard_memo_entries 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // A new configuration judges anew: the memo of the old one is gone with it.
    volume.update(&[("config.yaml", "mode: warn\n")]);
    assert!(server.wait_for_log("configuration reloaded", Duration::from_secs(10)));
    assert!(
        server
            .metrics_text()
            .await
            .contains("asyncapi_guard_memo_entries 0")
    );
    let warned = pki.client.review(server.admission, "", real.clone()).await;
    assert_eq!(
        response(&warned)["allowed"],
        true,
        "judged under the new mode"
    );
    // Not a dry run: the document is kept the second time it comes, and found the third.
    for _ in 0..2 {
        let again = pki.client.review(server.admission, "", real.clone()).await;
        assert_eq!(response(&again), response(&warned));
    }
    let metrics = server.metrics_text().await;
    for line in [
        "asyncapi_guard_memo_lookups_total{result=\"first_sight\"} 1",
        "asyncapi_guard_memo_lookups_total{result=\"miss\"} 2",
        "asyncapi_guard_memo_lookups_total{result=\"hit\"} 2",
        "asyncapi_guard_memo_entries 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// Every CREATE and UPDATE again, with a secure and an insecure document put into it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_put_into_every_fixture() {
    let pki = Pki::new();
    let config = pki.dir.path().join("all.yaml");
    std::fs::write(&config, "kubernetes:\n  inspectAllConfigMaps: true\n").unwrap();
    let server = pki.start_server(&[]);
    let inspect_all = pki.start_server(&["--config", &config.display().to_string()]);

    for (name, original) in fixtures() {
        if original["request"]["operation"] == "DELETE" {
            continue;
        }
        for secure in [true, false] {
            let mut review = original.clone();
            let object = &mut review["request"]["object"];
            if is_resource(&original) {
                object["spec"] = if secure {
                    json!({"asyncapi": "3.0.0", "info": {"title": "t", "version": "1"},
                           "servers": {"production": {"host": "h", "protocol": "amqp", "security": [{"$ref": "#/components/securitySchemes/up"}]}},
                           "components": {"securitySchemes": {"up": {"type": "userPassword"}}}})
                } else {
                    serde_json::to_value(
                        serde_json::from_str::<Value>(&yaml_to_json(INSECURE_V2)).unwrap(),
                    )
                    .unwrap()
                };
            } else {
                object["data"]["asyncapi.yaml"] =
                    json!(if secure { SECURE_V2 } else { INSECURE_V2 });
            }
            let object_name = original["request"]["name"].as_str().unwrap();
            let answer = pki
                .client
                .review(server.admission, "?timeout=10s", bytes(&review))
                .await;
            let r = response(&answer);
            assert_eq!(r["uid"], original["request"]["uid"], "{name}");
            let judged = is_resource(&original) || is_labelled(&original);
            if secure || !judged {
                assert_eq!(r["allowed"], true, "{name} secure={secure}: {r}");
            } else {
                let message = if is_resource(&original) {
                    resource_denial(object_name)
                } else {
                    config_map_denial(object_name)
                };
                assert_eq!(r["status"]["message"], message.as_str(), "{name}");
            }
            // With every ConfigMap inspected, an unlabelled one that holds AsyncAPI is judged too.
            if !is_resource(&original) && !is_labelled(&original) {
                let answer = pki
                    .client
                    .review(inspect_all.admission, "", bytes(&review))
                    .await;
                assert_eq!(response(&answer)["allowed"], secure, "{name} inspected");
            }
        }
    }
}

/// The insecure document as JSON (the API server re-serialises a custom resource's spec).
fn yaml_to_json(yaml: &str) -> String {
    let engine = asyncapi_guard::engine::Engine::default();
    let stream = engine.load(yaml).unwrap();
    let value = asyncapi_guard::engine::document::value::to_json(
        stream.tree.node(stream.documents[0].0),
        100,
    )
    .unwrap();
    serde_json::to_string(&value).unwrap()
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&std::fs::read(common::fixtures().join("admission").join(name)).unwrap())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warn_and_audit_modes_allow_and_say_why() {
    let pki = Pki::new();
    let server = pki.start_server(&[]);
    let insecure = bytes(&fixture("configmap-create-insecure.json"));

    let answer = pki
        .client
        .review(server.admission, "/warn?timeout=10s", insecure.clone())
        .await;
    assert_eq!(response(&answer)["allowed"], true);
    let warnings = common::warnings(&answer);
    assert_eq!(warnings.len(), 2);
    assert!(
        warnings[0].contains("[server-security-missing]")
            && warnings[0].contains("asyncapi.yaml:6:3"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("[security-scheme-undefined]"),
        "{warnings:?}"
    );
    // The API server keeps 256 characters of a warning; the hint is in them.
    assert!(warnings.iter().all(|w| w.chars().count() <= 256));

    let answer = pki
        .client
        .review(server.admission, "/audit/production-all", insecure.clone())
        .await;
    let r = response(&answer);
    assert_eq!(r["allowed"], true);
    assert!(r["warnings"].is_null());
    assert_eq!(r["auditAnnotations"]["violations"], "2");
    assert!(
        r["auditAnnotations"]["findings"]
            .as_str()
            .unwrap()
            .contains("[server-security-missing]")
    );
    assert!(server.wait_for_log("audit: allowed with violations", Duration::from_secs(5)));
    // The same options as a query string (for curl; the API server allows no query).
    let answer = pki
        .client
        .review(server.admission, "?mode=warn&production=all", insecure)
        .await;
    assert_eq!(response(&answer)["warnings"].as_array().unwrap().len(), 2);

    let metrics = server.metrics_text().await;
    assert!(metrics.contains("asyncapi_guard_admission_findings_total{kind=\"ConfigMap\",rule=\"server-security-missing\",mode=\"audit\"} 1"), "{metrics}");
    assert!(metrics.contains("asyncapi_guard_admission_requests_total{kind=\"ConfigMap\",operation=\"CREATE\",verdict=\"allowed\",dry_run=\"false\"} 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_gets_the_real_verdict() {
    let pki = Pki::new();
    let server = pki.start_server(&[]);
    let real = pki
        .client
        .review(
            server.admission,
            "",
            bytes(&fixture("configmap-create-insecure.json")),
        )
        .await;
    let dry = pki
        .client
        .review(
            server.admission,
            "",
            bytes(&fixture("configmap-create-insecure-dryrun.json")),
        )
        .await;
    assert_eq!(response(&real)["status"], response(&dry)["status"]);
    assert_eq!(response(&dry)["allowed"], false);
    // Counted apart: Argo CD and Flux diffs must not look like deploys on a dashboard.
    let metrics = server.metrics_text().await;
    for dry_run in ["true", "false"] {
        assert!(
            metrics.contains(&format!("asyncapi_guard_admission_requests_total{{kind=\"ConfigMap\",operation=\"CREATE\",verdict=\"denied\",dry_run=\"{dry_run}\"}} 1")),
            "{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_answers_and_the_server_keeps_serving() {
    let pki = Pki::new();
    let server = pki.start_server(&["--max-request-bytes", "65536", "--request-timeout", "1s"]);
    let valid = fixture("configmap-create.json");
    let uid = valid["request"]["uid"].as_str().unwrap().to_owned();
    let mut wrong_version = valid.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut wrong_kind = valid.clone();
    wrong_kind["kind"] = json!("ConfigMap");
    let mut no_request = valid.clone();
    no_request.as_object_mut().unwrap().remove("request");

    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "malformed JSON",
            "application/json",
            b"{\"apiVersion\": ".to_vec(),
            200,
        ),
        (
            "wrong apiVersion",
            "application/json",
            bytes(&wrong_version),
            200,
        ),
        ("wrong kind", "application/json", bytes(&wrong_kind), 200),
        ("no request", "application/json", bytes(&no_request), 200),
        (
            "non-UTF-8",
            "application/json",
            b"{\"apiVersion\": \"\xff\xfe\"}".to_vec(),
            200,
        ),
        (
            "over the body limit",
            "application/json",
            vec![b' '; 100 * 1024],
            413,
        ),
        ("wrong content type", "application/yaml", bytes(&valid), 415),
    ];
    for (what, content_type, body, status) in cases {
        let (got, body, _) = pki
            .client
            .post(server.admission, "/validate", content_type, body)
            .await
            .unwrap();
        assert_eq!(got, status, "{what}: {}", String::from_utf8_lossy(&body));
        if status == 200 {
            let answer: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(answer["kind"], "AdmissionReview", "{what}");
            assert_eq!(response(&answer)["allowed"], false, "{what}");
            assert_eq!(response(&answer)["status"]["code"], 400, "{what}");
        }
    }
    // The uid is echoed whenever the request carries one.
    let answer: Value = serde_json::from_slice(
        &pki.client
            .post(
                server.admission,
                "/validate",
                "application/json",
                bytes(&wrong_version),
            )
            .await
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(response(&answer)["uid"], uid.as_str());

    // A slow client: headers, then a trickle of the body. It is cut off; others are served.
    let mut slow = pki.client.connect(server.admission).await.unwrap();
    slow.write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 5000\r\n\r\n{\"a\":").await.unwrap();
    let answer = pki.client.review(server.admission, "", bytes(&valid)).await;
    assert_eq!(
        response(&answer)["allowed"],
        true,
        "served while a slow client waits"
    );
    let mut reply = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut reply)).await;
    assert!(read.is_ok(), "the slow client is cut off");
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&reply)
    );

    let answer = pki.client.review(server.admission, "", bytes(&valid)).await;
    assert_eq!(response(&answer)["uid"], uid.as_str());
    assert!(!server.logs().iter().any(|l| l.contains("panicked")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_both_ports_and_metrics() {
    let pki = Pki::new();
    let server = pki.start_server(&[]);
    for path in ["/healthz", "/readyz"] {
        assert_eq!(plain_get(server.metrics, path).await.0, 200, "{path}");
        let request = pki.client.connect(server.admission).await.unwrap();
        drop(request);
    }
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("asyncapi_guard_certificate_expiry_timestamp_seconds"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn certificate_rotation_while_requests_flow() {
    let mut pki = Pki::new();
    // No periodic re-read within the test: only the watcher can see the `..data` swap.
    let server = pki.start_server(&["--reload-interval", "1h"]);
    let old_leaf = pki
        .client
        .post(server.admission, "/healthz", "text/plain", vec![])
        .await
        .unwrap()
        .2;
    // The API server's caBundle holds both CAs while the certificate rotates.
    let new_ca = Ca::new("rotated CA");
    let client = Client::new(&[&pki.ca.der, &new_ca.der], None);
    let review = bytes(&fixture("configmap-create.json"));

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..3 {
        let (client, review, stop, addr) = (
            client.clone(),
            review.clone(),
            stop.clone(),
            server.admission,
        );
        load.push(tokio::spawn(async move {
            let (mut ok, mut leaves) = (0usize, std::collections::HashSet::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, body, leaf) = client
                    .post(addr, "/validate", "application/json", review.clone())
                    .await
                    .expect("no request fails during rotation");
                assert_eq!(status, 200);
                let answer: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(answer["response"]["allowed"], true);
                leaves.insert(leaf.to_vec());
                ok += 1;
            }
            (ok, leaves)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new_leaf = new_ca.server("localhost");
    pki.volume.update(&[
        ("tls.crt", &new_leaf.cert_pem),
        ("tls.key", &new_leaf.key_pem),
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = client
            .post(server.admission, "/healthz", "text/plain", vec![])
            .await
            .unwrap()
            .2;
        if seen == new_leaf.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut leaves = std::collections::HashSet::new();
    let mut total = 0;
    for task in load {
        let (ok, seen) = task.await.unwrap();
        total += ok;
        leaves.extend(seen);
    }
    assert!(total > 10, "requests flowed: {total}");
    assert!(
        leaves.contains(&old_leaf.to_vec()) && leaves.contains(&new_leaf.der.to_vec()),
        "both certificates were served"
    );
    let metrics = server.metrics_text().await;
    assert!(
        metrics.contains("asyncapi_guard_certificate_reloads_total{result=\"success\"} 1"),
        "{metrics}"
    );

    // A broken update is refused; the rotated certificate stays.
    pki.volume
        .update(&[("tls.crt", "garbage"), ("tls.key", "garbage")]);
    assert!(server.wait_for_log("certificate reload failed", Duration::from_secs(10)));
    assert_eq!(
        client
            .post(server.admission, "/healthz", "text/plain", vec![])
            .await
            .unwrap()
            .2,
        new_leaf.der
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_reload_keeps_the_last_good_one() {
    let pki = Pki::new();
    let mut volume = SecretVolume::new(
        &pki.dir.path().join("config"),
        &[(
            "config.yaml",
            "rules:\n  server-security-missing: warn\n  security-scheme-undefined: warn\n",
        )],
    );
    let config = volume.path("config.yaml").display().to_string();
    let server = pki.start_server(&["--config", &config]);
    let insecure = bytes(&fixture("configmap-create-insecure.json"));
    let allowed = || async {
        let answer = pki
            .client
            .review(server.admission, "", insecure.clone())
            .await;
        response(&answer)["allowed"] == true
    };
    assert!(allowed().await);

    // A file that does not load, then a truncated one (no reload to the defaults: it would
    // drop the warn modes): each refused, said in the log and counted, the last good
    // configuration kept.
    for (failures, text, said) in [
        (1, "rules:\n  no-such-rule: warn\n", "no-such-rule"),
        (2, "", "the configuration is empty"),
    ] {
        volume.update(&[("config.yaml", text)]);
        assert!(server.wait_for_log("configuration reload failed", Duration::from_secs(10)));
        assert!(
            server.wait_for_log(said, Duration::from_secs(10)),
            "the log says what is wrong"
        );
        assert!(allowed().await, "the last good configuration stays");
        let counted =
            format!("asyncapi_guard_config_reloads_total{{result=\"failure\"}} {failures}");
        assert!(server.metrics_text().await.contains(&counted), "{counted}");
    }

    volume.update(&[("config.yaml", "mode: enforce\n")]);
    assert!(server.wait_for_log("configuration reloaded", Duration::from_secs(10)));
    assert!(!allowed().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_request_in_flight_then_exits() {
    let pki = Pki::new();
    let mut server = pki.start_server(&["--shutdown-grace", "10s"]);
    let body = bytes(&fixture("configmap-create-insecure.json"));
    let (head, tail) = body.split_at(body.len() / 2);

    let mut in_flight = pki.client.connect(server.admission).await.unwrap();
    in_flight
        .write_all(format!("POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len()).as_bytes())
        .await
        .unwrap();
    in_flight.write_all(head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.terminate();
    assert!(server.wait_for_log("draining", Duration::from_secs(5)));
    in_flight.write_all(tail).await.unwrap();
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), in_flight.read_to_end(&mut reply))
        .await
        .unwrap()
        .unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(
        reply.contains("\"allowed\":false"),
        "the answer is the real verdict: {reply}"
    );

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "did not exit within the grace period"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    assert!(server.logs().iter().any(|l| l.contains("\"stopped\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_verified_when_asked() {
    let pki = Pki::new();
    let api_servers = Ca::new("API server client CA");
    let ca_file = pki.dir.path().join("client-ca.pem");
    std::fs::write(&ca_file, &api_servers.pem).unwrap();
    let server = pki.start_server(&["--client-ca", &ca_file.display().to_string()]);
    let review = bytes(&fixture("configmap-create.json"));

    let post = async |client: Client| {
        client
            .post(
                server.admission,
                "/validate",
                "application/json",
                review.clone(),
            )
            .await
    };
    let apiserver = Client::new(&[&pki.ca.der], Some(&api_servers.client("kube-apiserver")));
    assert_eq!(post(apiserver).await.unwrap().0, 200);
    // No client certificate, or one from another authority: the handshake fails.
    assert!(post(Client::new(&[&pki.ca.der], None)).await.is_err());
    let stranger = Client::new(&[&pki.ca.der], Some(&Ca::new("other").client("intruder")));
    assert!(post(stranger).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_served() {
    let pki = Pki::new();
    let server = pki.start_server(&[]);
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = Client::with_versions(&[&pki.ca.der], None, &[version]);
        let tls = client.connect(server.admission).await.unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
    }
}

#[test]
fn start_up_with_a_bad_configuration_fails_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(&config, "limits:\n  maxDepth: 0\n").unwrap();
    // `serve` with `args`, which must fail: what it said.
    let refused = |args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(common::binary())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let stderr = refused(&["--config".as_ref(), config.as_os_str()]);
    assert!(
        stderr.contains("config.yaml:2:3: limits.maxDepth: must be between 2 and 1000"),
        "{stderr}"
    );
    assert!(!stderr.contains("listening"));

    let stderr = refused(&[
        "--tls-cert".as_ref(),
        "/nonexistent.crt".as_ref(),
        "--tls-key".as_ref(),
        "/nonexistent.key".as_ref(),
    ]);
    assert!(stderr.contains("/nonexistent.crt"), "{stderr}");
}

/// `--log-format text` writes no ANSI colours into a redirected log.
#[test]
fn text_logs_to_a_pipe_have_no_colours() {
    use std::io::BufRead as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(common::binary())
        .args(["serve", "--log-format", "text", "--listen", "127.0.0.1:0"])
        .args(["--metrics-listen", "127.0.0.1:0", "--self-signed-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = Vec::new();
    for line in std::io::BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let done = line.contains("listening");
        lines.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    assert!(lines.iter().any(|l| l.contains("listening")), "{lines:?}");
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no escape codes in a piped log: {lines:?}"
    );
}

/// The chart's alerts and dashboard read only metrics the server exposes: a renamed metric
/// would leave an alert that can never fire and a panel that stays empty. The server runs as
/// the chart runs it, with the audit and exceptions (against the fake API server), and has
/// denied a request and audited a violation, so every family has a sample.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_and_the_dashboard_read_only_metrics_the_server_exposes() {
    let api = common::fake_api::FakeApi::new();
    let http = api.serve_http().await;
    let insecure = fixture("configmap-create-insecure.json");
    let mut config_map = insecure["request"]["object"].clone();
    for volatile in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
    ] {
        config_map["metadata"]
            .as_object_mut()
            .unwrap()
            .remove(volatile);
    }
    let namespace = config_map["metadata"]["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    api.create(common::fake_api::CONFIG_MAPS, Some(&namespace), config_map);
    api.ensure_namespace("asyncapi-guard");
    let pki = Pki::new();
    let server = pki.start_server_with_env(
        &[
            "--audit",
            "--exceptions",
            "--namespace",
            "asyncapi-guard",
            "--pod-name",
            "replica-a",
        ],
        &[("KUBECONFIG", http.kubeconfig.as_os_str())],
    );
    Pki::wait_until_ready(&server, Duration::from_secs(10)).await;
    let answer = pki
        .client
        .review(server.admission, "/enforce", bytes(&insecure))
        .await;
    assert_eq!(answer["response"]["status"]["code"], 403, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut text = server.metrics_text().await;
    while !text.contains("asyncapi_guard_audit_violations{") {
        assert!(
            Instant::now() < deadline,
            "no audit violation in\n{text}\n{:#?}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        text = server.metrics_text().await;
    }
    // Family names (a description may name one) and sample names, from each family's type:
    // a counter's samples end in _total, a histogram's in _bucket, _sum and _count.
    let mut exposed = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some(declared) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = declared.split_once(' ').unwrap();
        exposed.insert(name.to_owned());
        match kind {
            "counter" => exposed.insert(format!("{name}_total")),
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    exposed.insert(format!("{name}{suffix}"));
                }
                true
            }
            _ => exposed.insert(name.to_owned()),
        };
    }
    let chart = common::project_dir().join("charts/asyncapi-guard");
    let mut read = 0;
    for file in [
        "templates/prometheusrule.yaml",
        "dashboards/asyncapi-guard.json",
    ] {
        let source = std::fs::read_to_string(chart.join(file)).unwrap();
        let names: std::collections::BTreeSet<&str> = source
            .match_indices("asyncapi_guard_")
            .map(|(at, _)| {
                let rest = &source[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .collect();
        for name in &names {
            assert!(
                exposed.contains(*name),
                "{file} reads {name}, which /metrics does not expose:\n{exposed:#?}"
            );
        }
        read += names.len();
    }
    assert!(read >= 10, "only {read} metric names read");
}
