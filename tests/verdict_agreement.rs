//! Admission, the audit and `check` give one object the same verdict: generated objects ×
//! namespace labels × configurations (inspectAllConfigMaps on and off, excluded namespaces,
//! rule modes, default modes) × exceptions × clock times. Admission is asked as the API
//! server asks it: only when a webhook entry of the chart selects the namespace and the
//! object, at the path of that entry.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;

use asyncapi_guard::audit::{Audited, asyncapi_resource, config_map_resource};
use asyncapi_guard::cli::manifest::{ManifestCheck, judge_manifest};
use asyncapi_guard::config::Config;
use asyncapi_guard::engine::Overrides;
use asyncapi_guard::engine::finding::Mode;
use asyncapi_guard::kubernetes::exceptions::{Exception, ExceptionSet};
use asyncapi_guard::kubernetes::raw_object::RawObject;
use asyncapi_guard::service::state::ActiveConfig;
use asyncapi_guard::webhook::admission::{Context, RequestOptions, review};
use k8s_openapi::jiff::Timestamp;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use serde_json::{Value, json};

const DOCUMENTS: [&str; 5] = [
    // Insecure production server.
    "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n",
    // Insecure only where every server is production.
    "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  staging:\n    host: x\n    protocol: amqp\n",
    // A scheme that is not defined, and a scope: two rules.
    "asyncapi: 2.6.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - user-pass: []\n",
    "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/up'\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n",
    "not: asyncapi\n",
];
const NAMESPACES: [&str; 3] = ["payments", "team-x", "kube-system"];
const RULES: [&str; 3] = [
    "server-security-missing",
    "security-scheme-undefined",
    "document-invalid",
];
const NOW: [&str; 2] = ["2026-12-07T00:00:00Z", "2027-01-20T00:00:00Z"];

/// An exception: its namespace, whether it names this object, its rules, its key, its
/// expiry.
type GeneratedException = (
    &'static str,
    bool,
    Vec<&'static str>,
    Option<&'static str>,
    &'static str,
);

#[derive(Debug, Clone)]
struct Case {
    inspect_all: bool,
    exclude_team_x: bool,
    default_mode: &'static str,
    rule_mode: Option<(&'static str, &'static str)>,
    namespace: &'static str,
    mode_label: Option<&'static str>,
    production_label: Option<&'static str>,
    /// A ConfigMap (with this document label: absent, "true", "false") or an AsyncAPI.
    config_map: Option<Option<&'static str>>,
    key: &'static str,
    document: &'static str,
    exceptions: Vec<GeneratedException>,
    now: &'static str,
}

fn case() -> impl Strategy<Value = Case> {
    let config = (
        any::<bool>(),
        any::<bool>(),
        prop::sample::select(vec!["enforce", "enforce", "enforce", "warn", "audit"]),
        prop::option::weighted(
            0.3,
            (
                prop::sample::select(RULES.to_vec()),
                prop::sample::select(vec!["enforce", "warn", "audit", "off"]),
            ),
        ),
    );
    // Weighted towards objects admission judges, so that denials and exceptions are common
    // (the_generated_cases_cover_denials_allows_and_exceptions checks it).
    let namespace = (
        prop::sample::select(vec![
            NAMESPACES[0],
            NAMESPACES[0],
            NAMESPACES[0],
            NAMESPACES[1],
            NAMESPACES[2],
        ]),
        prop::option::weighted(
            0.3,
            prop::sample::select(vec!["enforce", "warn", "audit", "off", "loud"]),
        ),
        prop::option::weighted(0.3, prop::sample::select(vec!["all", "some"])),
    );
    let object = (
        prop::option::weighted(
            0.7,
            prop::option::weighted(0.8, prop::sample::select(vec!["true", "true", "false", ""])),
        ),
        prop::sample::select(vec!["asyncapi.yaml", "asyncapi.yaml", "spec"]),
        prop::sample::select(vec![
            DOCUMENTS[0],
            DOCUMENTS[0],
            DOCUMENTS[1],
            DOCUMENTS[2],
            DOCUMENTS[2],
            DOCUMENTS[3],
            DOCUMENTS[4],
        ]),
    );
    let exception = (
        prop::sample::select(vec!["asyncapi-guard", "asyncapi-guard", "payments"]),
        prop::bool::weighted(0.8),
        prop::sample::subsequence(RULES.to_vec(), 1..=2),
        prop::option::weighted(
            0.3,
            prop::sample::select(vec!["asyncapi.yaml", "spec", "other.yaml"]),
        ),
        prop::sample::select(vec![
            "2027-01-01T00:00:00Z",
            "2027-01-01T00:00:00Z",
            "2026-12-01T00:00:00Z",
        ]),
    );
    (
        config,
        namespace,
        object,
        prop::collection::vec(exception, 0..=3),
        prop::sample::select(NOW.to_vec()),
    )
        .prop_map(
            |(
                (inspect_all, exclude_team_x, default_mode, rule_mode),
                (namespace, mode_label, production_label),
                (config_map, key, document),
                exceptions,
                now,
            )| Case {
                inspect_all,
                exclude_team_x,
                default_mode,
                rule_mode,
                namespace,
                mode_label,
                production_label,
                config_map,
                key,
                document,
                exceptions,
                now,
            },
        )
}

impl Case {
    fn config(&self) -> ActiveConfig {
        let mut exclude = vec!["kube-system", "asyncapi-guard"];
        if self.exclude_team_x {
            exclude.push("team-x");
        }
        let rules = match self.rule_mode {
            Some((rule, mode)) => format!("rules: {{{rule}: {mode}}}\n"),
            None => String::new(),
        };
        let text = format!(
            "{rules}kubernetes:\n  inspectAllConfigMaps: {}\n  namespaces:\n    defaultMode: {}\n    exclude: {exclude:?}\n",
            self.inspect_all, self.default_mode
        );
        ActiveConfig::from(Config::parse(text.as_bytes(), "config.yaml").unwrap())
    }

    fn labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert(
            "kubernetes.io/metadata.name".to_owned(),
            self.namespace.to_owned(),
        );
        if let Some(mode) = self.mode_label {
            labels.insert("asyncapi-guard.io/mode".to_owned(), mode.to_owned());
        }
        if let Some(production) = self.production_label {
            labels.insert(
                "asyncapi-guard.io/production".to_owned(),
                production.to_owned(),
            );
        }
        labels
    }

    fn object(&self) -> Value {
        match self.config_map {
            Some(label) => {
                let mut metadata =
                    json!({"name": "orders-api", "namespace": self.namespace, "uid": "u-1"});
                if let Some(label) = label {
                    metadata["labels"] = json!({"asyncapi-guard.io/document": label});
                }
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {self.key: self.document}})
            }
            None => {
                let engine = asyncapi_guard::engine::Engine::default();
                let stream = engine.load(self.document).unwrap();
                let spec = asyncapi_guard::engine::document::value::to_json(
                    stream.roots().next().unwrap(),
                    100,
                )
                .unwrap();
                json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
                       "metadata": {"name": "orders-api", "namespace": self.namespace, "uid": "u-1", "generation": 1},
                       "spec": spec})
            }
        }
    }

    fn kind(&self) -> &'static str {
        if self.config_map.is_some() {
            "ConfigMap"
        } else {
            "AsyncAPI"
        }
    }

    fn exceptions(&self) -> ExceptionSet {
        ExceptionSet::new(self.exceptions.iter().enumerate().map(|(i, (namespace, ours, rules, key, expires))| {
            let mut target = json!({"namespace": self.namespace, "kind": self.kind(),
                                    "name": if *ours { "orders-api" } else { "billing" }});
            if let Some(key) = key {
                target["key"] = json!(key);
            }
            Exception::from_object(&json!({
                "apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPIException",
                "metadata": {"name": format!("e{i}"), "namespace": namespace, "creationTimestamp": "2026-11-30T00:00:00Z"},
                "spec": {"match": target, "rules": rules, "reason": "legacy", "expires": expires}}))
        }))
    }

    /// The webhook entry the API server calls, as the chart's selectors choose it; `None`
    /// when no entry matches (the object is let through unjudged).
    fn entry(&self, config: &ActiveConfig) -> Option<Overrides> {
        let scope = &config.kubernetes.namespaces;
        if scope.exclude.iter().any(|n| n == self.namespace) {
            return None;
        }
        if let Some(label) = self.config_map {
            match label {
                Some("false") => return None,
                None if !self.inspect_all => return None,
                _ => {}
            }
        }
        let mode = match self.mode_label {
            Some("off") => return None,
            Some("enforce") => Mode::Enforce,
            Some("warn") => Mode::Warn,
            Some("audit") => Mode::Audit,
            _ => scope.default_mode,
        };
        Some(Overrides {
            mode,
            all_servers_production: self.production_label == Some("all"),
        })
    }
}

/// (rule, effect) of each finding that counts against the object, sorted.
type Effects = Vec<(String, String)>;

fn admission(
    case: &Case,
    config: &ActiveConfig,
    exceptions: &ExceptionSet,
    now: Timestamp,
) -> (bool, Effects) {
    let Some(overrides) = case.entry(config) else {
        return (true, Vec::new());
    };
    let object = case.object();
    let (group, resource) = if case.config_map.is_some() {
        ("", "configmaps")
    } else {
        ("asyncapi-guard.io", "asyncapis")
    };
    let body = serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "u", "kind": {"group": group, "version": object["apiVersion"].as_str().unwrap().rsplit('/').next().unwrap(), "kind": case.kind()},
                    "resource": {"group": group, "version": "v1", "resource": resource},
                    "name": "orders-api", "namespace": case.namespace, "operation": "CREATE",
                    "userInfo": {}, "object": object, "oldObject": null, "dryRun": false}}))
    .unwrap();
    let context = Context {
        active: config,
        exceptions,
        now,
    };
    let (answer, outcome) = review(&context, &body, &RequestOptions { overrides });
    let allowed = answer.response.unwrap().allowed;
    let mut effects: Effects = outcome
        .findings
        .iter()
        .map(|(rule, effect)| (rule.to_string(), (*effect).to_owned()))
        .collect();
    effects.sort();
    (allowed, effects)
}

fn audit(
    case: &Case,
    config: &ActiveConfig,
    exceptions: &ExceptionSet,
    now: Timestamp,
) -> (bool, Effects) {
    let resource = if case.config_map.is_some() {
        config_map_resource()
    } else {
        asyncapi_resource()
    };
    let object = RawObject::from_json(&case.object().to_string()).unwrap();
    let audited = Audited::judge(
        &config.judge(exceptions, now),
        &resource,
        &object,
        &case.labels(),
    );
    if !audited.guarded() {
        return (true, Vec::new());
    }
    let mut effects: Effects = audited
        .findings()
        .map(|(_, f)| (f.rule.to_string(), f.effect().to_owned()))
        .collect();
    effects.sort();
    (audited.compliant(), effects)
}

fn check(
    case: &Case,
    config: &ActiveConfig,
    exceptions: &ExceptionSet,
    now: Timestamp,
) -> (bool, Effects) {
    let manifest = serde_json::to_string(&case.object()).unwrap();
    let stream = config.engine.load(&manifest).unwrap();
    let labels = case.labels();
    let check = ManifestCheck {
        judge: config.judge(exceptions, now),
        namespace_labels: &labels,
        // Admission's exact view: what it never sees is not its verdict.
        labelled_only: true,
    };
    let reports = judge_manifest(&check, "m.yaml", &stream);
    let mut effects: Effects = reports
        .iter()
        .flat_map(|r| {
            r.evaluation
                .findings
                .iter()
                .map(|f| (f.rule.to_string(), f.effect().to_owned()))
        })
        .collect();
    effects.sort();
    (reports.iter().all(|r| r.evaluation.allowed()), effects)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn admission_the_audit_and_check_agree(case in case()) {
        let config = case.config();
        let exceptions = case.exceptions();
        let now: Timestamp = case.now.parse().unwrap();
        let admitted = admission(&case, &config, &exceptions, now);
        let audited = audit(&case, &config, &exceptions, now);
        let checked = check(&case, &config, &exceptions, now);
        prop_assert_eq!(&admitted, &audited, "admission and the audit differ: {:?}", case);
        prop_assert_eq!(&admitted, &checked, "admission and check differ: {:?}", case);
    }
}

/// The generator reaches the cases that matter: each answer, and excepted findings.
#[test]
fn the_generated_cases_cover_denials_allows_and_exceptions() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut denied, mut allowed, mut excepted) = (0, 0, 0);
    for _ in 0..600 {
        let case = case().new_tree(&mut runner).unwrap().current();
        let config = case.config();
        let (ok, effects) = admission(
            &case,
            &config,
            &case.exceptions(),
            case.now.parse().unwrap(),
        );
        if ok {
            allowed += 1
        } else {
            denied += 1
        }
        excepted += usize::from(effects.iter().any(|(_, e)| e == "excepted"));
    }
    assert!(
        denied > 50 && allowed > 50 && excepted > 10,
        "denied {denied}, allowed {allowed}, excepted {excepted}"
    );
}
