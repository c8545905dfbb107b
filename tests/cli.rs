//! `asyncapi-guard check` as a user or a CI job runs it: files, directories, stdin,
//! manifests; every output format; exit codes 0, 1 and 2.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn check(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(common::binary())
        .arg("check")
        .args(args)
        .current_dir(common::project_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn json(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn an_allowed_file_exits_0() {
    let out = check(&["examples/orders-secure.yaml"], None);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "1 document checked: 1 allowed, 0 denied\n");
}

#[test]
fn a_denied_file_exits_1_with_one_line_per_finding() {
    let out = check(&["examples/orders-insecure.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "- examples/orders-insecure.yaml:8:3 /servers/production [server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes\n\
         - examples/orders-insecure.yaml:15:9 /servers/staging/security/0 [security-scheme-undefined] scheme \"user-pass\" is not defined in components.securitySchemes; did you mean \"user-password\"?\n\
         1 document checked: 0 allowed, 1 denied\n"
    );
}

#[test]
fn a_directory_is_searched_recursively_for_documents() {
    let out = check(
        &["--format", "json", "tests/fixtures/corpus/examples"],
        None,
    );
    let files: Vec<String> = json(&out)["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["file"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        files.contains(
            &"tests/fixtures/corpus/examples/v3.0.0/social-media/backend/asyncapi.yaml".to_owned()
        ),
        "{files:?}"
    );
    assert!(
        files
            .iter()
            .all(|f| f.ends_with(".yaml") || f.ends_with(".yml") || f.ends_with(".json"))
    );
    assert!(!files.iter().any(|f| f.ends_with("README.md")));
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "directory order is stable");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the 1.2.0 example is document-invalid"
    );
}

#[test]
fn stdin_is_read_for_dash() {
    let doc = std::fs::read("examples/orders-insecure.yaml").unwrap();
    let out = check(&["--format", "json", "-"], Some(&doc));
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(report["files"][0]["file"], "-");
    assert_eq!(report["files"][0]["version"], "2.6.0");
    assert_eq!(report["files"][0]["violations"][0]["line"], 8);
}

#[test]
fn a_multi_document_manifest_gives_one_entry_per_carried_document() {
    let out = check(&["--format", "json", "examples/manifests.yaml"], None);
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    let file = |name: &str, allowed, unguarded| {
        (
            format!("examples/manifests.yaml#{name}"),
            allowed,
            unguarded,
        )
    };
    assert_eq!(
        common::report_files(&report),
        [
            file(
                "ConfigMap/payments/orders-api/data/asyncapi.yaml",
                true,
                false
            ),
            file(
                "ConfigMap/payments/billing-api/data/asyncapi.yaml",
                false,
                false
            ),
            // Unlabelled, so unguarded: judged because its key holds AsyncAPI.
            file(
                "ConfigMap/payments/unrelated/data/settings.yaml",
                true,
                true
            ),
            file("AsyncAPI/payments/hello-world/spec", true, false),
        ]
    );
    let violation = &report["files"][1]["violations"][0];
    assert_eq!(violation["rule"], "server-security-anonymous");
    assert_eq!(violation["path"], "/servers/prod-eu/security/0");
    assert_eq!(violation["line"], 10);
    assert_eq!(report["summary"]["denied"], 1);
}

#[test]
fn sarif_is_what_code_scanning_takes() {
    let out = check(
        &[
            "--format",
            "sarif",
            "examples/orders-insecure.yaml",
            "examples/manifests.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let sarif = json(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 7);
    assert!(
        rules
            .iter()
            .all(|r| r["help"]["text"].as_str().is_some_and(|t| !t.is_empty()))
    );
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for result in results {
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        assert_eq!(result["level"], "error");
        let region = &result["locations"][0]["physicalLocation"]["region"];
        assert!(region["startLine"].as_u64().unwrap() >= 1);
        assert!(region["startColumn"].as_u64().unwrap() >= 1);
    }
    // A ConfigMap key's document points at the key in the manifest.
    let embedded = &results[2]["locations"][0]["physicalLocation"];
    assert_eq!(
        embedded["artifactLocation"]["uri"],
        "examples/manifests.yaml"
    );
    assert_eq!(embedded["region"]["startLine"], 35);
}

#[test]
fn configuration_changes_modes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "rules:\n  server-security-missing: warn\n  security-scheme-undefined: off\n",
    )
    .unwrap();
    let out = check(
        &[
            "--config",
            config.to_str().unwrap(),
            "--format",
            "json",
            "examples/orders-insecure.yaml",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0));
    let file = &json(&out)["files"][0];
    assert_eq!(file["allowed"], true);
    let violations = file["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0]["mode"], "warn");
}

#[test]
fn all_servers_production_flag() {
    let doc = b"asyncapi: 3.0.0\nservers:\n  dev:\n    host: x\n    protocol: amqp\n";
    assert_eq!(check(&["-"], Some(doc)).status.code(), Some(0));
    assert_eq!(
        check(&["--all-servers-production", "-"], Some(doc))
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn errors_exit_2() {
    let missing = check(&["examples/nope.yaml"], None);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("examples/nope.yaml"));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    std::fs::write(&config, "production:\n  include: ['(']\n").unwrap();
    let bad_config = check(
        &[
            "--config",
            config.to_str().unwrap(),
            "examples/orders-secure.yaml",
        ],
        None,
    );
    assert_eq!(bad_config.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&bad_config.stderr);
    assert!(
        stderr.contains("bad.yaml:2:13: production.include[0]: pattern \"(\""),
        "{stderr}"
    );

    assert_eq!(
        check(&[], None).status.code(),
        Some(2),
        "no path is a usage error"
    );
    assert_eq!(
        check(&["--format", "xml", "x"], None).status.code(),
        Some(2)
    );
}

const UNLABELLED_CONFIG_MAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: orders-api
  namespace: payments
data:
  asyncapi.yaml: |
    asyncapi: 3.0.0
    info: {title: Orders, version: '1'}
    servers:
      production:
        host: broker.example.com
        protocol: amqp
";

/// An unlabelled ConfigMap with an insecure document is not passed as "0 documents
/// checked": `check` says that the webhook would let it through unjudged, and how to label it.
#[test]
fn an_unlabelled_config_map_is_caught_and_the_fix_is_given_once() {
    let output = check(&["-"], Some(UNLABELLED_CONFIG_MAP.as_bytes()));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("[server-security-missing]"), "{text}");
    assert_eq!(
        text.matches(
            "kubectl label configmap -n payments orders-api asyncapi-guard.io/document=true"
        )
        .count(),
        1,
        "{text}"
    );
    let output = check(
        &["--format", "json", "-"],
        Some(UNLABELLED_CONFIG_MAP.as_bytes()),
    );
    assert_eq!(json(&output)["files"][0]["unguarded"], true);

    // Admission's exact view, for those who want it.
    let output = check(
        &["--labelled-only", "-"],
        Some(UNLABELLED_CONFIG_MAP.as_bytes()),
    );
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("0 documents checked"));
}

/// `asyncapi-guard.io/document: "false"` opts a ConfigMap out; a labelled key without an
/// extension is judged by its content, not passed silently.
#[test]
fn the_label_false_opts_out_and_a_key_without_extension_is_judged_by_content() {
    let opted_out = UNLABELLED_CONFIG_MAP.replace(
        "  namespace: payments\n",
        "  namespace: payments\n  labels:\n    asyncapi-guard.io/document: \"false\"\n",
    );
    let output = check(&["-"], Some(opted_out.as_bytes()));
    assert_eq!(output.status.code(), Some(0), "{}", stdout(&output));
    assert!(stdout(&output).contains("0 documents checked"));

    let from_file = UNLABELLED_CONFIG_MAP
        .replace(
            "  namespace: payments\n",
            "  namespace: payments\n  labels:\n    asyncapi-guard.io/document: \"true\"\n",
        )
        .replace("  asyncapi.yaml: |", "  asyncapi: |");
    let output = check(&["--labelled-only", "-"], Some(from_file.as_bytes()));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("#ConfigMap/payments/orders-api/data/asyncapi:"),
        "{text}"
    );
}

/// `--exceptions` applies AsyncAPIException manifests as the cluster would: the one in force
/// covers its finding (excepted, exit 0); one in a namespace where exceptions do not count,
/// or expired, covers nothing and says why on standard error.
#[test]
fn exceptions_cover_findings_as_in_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("orders.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: orders-api\n  namespace: payments\n  labels:\n    asyncapi-guard.io/document: 'true'\ndata:\n  asyncapi.yaml: |\n    asyncapi: 3.0.0\n    servers:\n      production:\n        host: x\n        protocol: amqp\n",
    )
    .unwrap();
    let expires = |days: i64| {
        k8s_openapi::jiff::Timestamp::now()
            .checked_add(k8s_openapi::jiff::SignedDuration::from_hours(24 * days))
            .unwrap()
            .to_string()
    };
    let exception = |namespace: &str, name: &str, expires: String| {
        format!(
            "apiVersion: asyncapi-guard.io/v1alpha1\nkind: AsyncAPIException\nmetadata:\n  name: {name}\n  namespace: {namespace}\nspec:\n  match: {{namespace: payments, kind: ConfigMap, name: orders-api, key: asyncapi.yaml}}\n  rules: [server-security-missing]\n  reason: legacy broker\n  expires: '{expires}'\n"
        )
    };
    let exceptions = dir.path().join("exceptions");
    std::fs::create_dir(&exceptions).unwrap();
    let write = |file: &str, text: String| std::fs::write(exceptions.join(file), text).unwrap();
    write(
        "ignored.yaml",
        [
            exception("payments", "self-service", expires(10)),
            exception("asyncapi-guard", "late", expires(-1)),
        ]
        .join("---\n"),
    );

    let manifest = manifest.to_str().unwrap();
    let exceptions_dir = exceptions.to_str().unwrap();
    let out = check(&["--exceptions", exceptions_dir, manifest], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exception payments/self-service does not apply: it is in namespace \"payments\", where exceptions do not count"), "{stderr}");
    assert!(
        stderr.contains("exception asyncapi-guard/late does not apply: it expired at"),
        "{stderr}"
    );

    write(
        "legacy.yaml",
        exception("asyncapi-guard", "legacy-orders", expires(30)),
    );
    let out = check(
        &["--exceptions", exceptions_dir, "--format", "json", manifest],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = json(&out);
    let file = &report["files"][0];
    assert_eq!(file["allowed"], true);
    let excepted = &file["violations"][0]["excepted"];
    assert_eq!(excepted["by"], "asyncapi-guard/legacy-orders");
    assert_eq!(excepted["reason"], "legacy broker");
    let out = check(&["--exceptions", exceptions_dir, manifest], None);
    assert!(
        stdout(&out).contains("[server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes (excepted by asyncapi-guard/legacy-orders until "),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).ends_with("1 document checked: 1 allowed, 0 denied (1 finding excepted)\n"),
        "{}",
        stdout(&out)
    );
    // SARIF: a suppressed result, which code scanning shows as dismissed.
    let out = check(
        &[
            "--exceptions",
            exceptions_dir,
            "--format",
            "sarif",
            manifest,
        ],
        None,
    );
    let sarif = json(&out);
    assert_eq!(
        sarif["runs"][0]["results"][0]["suppressions"][0]["kind"],
        "external"
    );
}
