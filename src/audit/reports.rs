//! OpenReports (`openreports.io/v1alpha1`, `Report`): what the audit found, in the form
//! Policy Reporter and Kyverno's tooling read beside every other policy engine's results.
//! One Report per namespace, and one `ClusterReport` for cluster-scoped objects (a carrier
//! kind's), named `asyncapi-guard`: one result per finding (`fail` for
//! enforce, `warn` for warn and audit mode, `skip` for one an exception covers, naming it),
//! a `pass` per compliant object, and the counts.
//! Pure: built from the audit's per-object summaries, never by re-reading documents.

use std::collections::BTreeMap;

use kube::api::ApiResource;
use serde_json::{Value, json};

use super::Audited;
use crate::engine::finding::Mode;

pub const API_VERSION: &str = "openreports.io/v1alpha1";
pub const KIND: &str = "Report";
/// The report of cluster-scoped objects: the same content, without a namespace.
pub const CLUSTER_KIND: &str = "ClusterReport";
/// The Report's name in each namespace, and its `source` and results' `policy`.
pub const NAME: &str = "asyncapi-guard";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "asyncapi-guard");
/// The API server refuses objects over about 1.5 MiB: results stop at this many bytes (the
/// summary still counts everything) and the Report says how many were left out.
pub const MAX_RESULTS_BYTES: usize = 1024 * 1024;
pub const TRUNCATED_ANNOTATION: &str = "asyncapi-guard.io/results-left-out";
/// A digest of what the Report says: a new leader reads it in its first list and skips a
/// write that would change nothing, without reading each Report whole.
pub const DIGEST_ANNOTATION: &str = "asyncapi-guard.io/digest";

pub fn report_resource() -> ApiResource {
    openreports_resource(KIND, "reports")
}

pub fn cluster_report_resource() -> ApiResource {
    openreports_resource(CLUSTER_KIND, "clusterreports")
}

fn openreports_resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "openreports.io".to_owned(),
        version: "v1alpha1".to_owned(),
        api_version: API_VERSION.to_owned(),
        kind: kind.to_owned(),
        plural: plural.to_owned(),
    }
}

/// What a Report says of one object: kept by the audit per object, compared to know whether
/// anything changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectResults {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    /// Empty for a compliant object.
    pub findings: Box<[FindingResult]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FindingResult {
    pub rule: &'static str,
    pub result: &'static str,
    pub severity: &'static str,
    pub message: String,
    pub document: String,
    pub pointer: String,
    pub line: u32,
    pub column: u32,
    /// The exception that covers it (`namespace/name`) and its expiry.
    pub exception: Option<(String, String)>,
}

impl ObjectResults {
    pub fn of(audited: &Audited) -> ObjectResults {
        let findings = audited
            .documents
            .iter()
            .flat_map(|d| d.evaluation.findings.iter().map(move |f| (d, f)))
            .filter_map(|(document, finding)| {
                let result = match finding.mode {
                    Mode::Off => return None,
                    _ if finding.waiver.is_some() => "skip",
                    Mode::Enforce => "fail",
                    Mode::Warn | Mode::Audit => "warn",
                };
                Some(FindingResult {
                    rule: finding.rule.as_str(),
                    result,
                    severity: finding.rule.severity().as_str(),
                    message: finding.message.clone(),
                    document: document.locator.clone(),
                    pointer: finding.path.clone(),
                    line: finding.pos.line,
                    column: finding.pos.column,
                    exception: finding
                        .waiver
                        .as_deref()
                        .map(|w| (w.by.clone(), w.expires.clone())),
                })
            })
            .collect::<Vec<_>>()
            .into_boxed_slice();
        ObjectResults {
            api_version: audited.api_version.clone(),
            kind: audited.id.kind.clone(),
            name: audited.id.name.clone(),
            namespace: audited.id.namespace.clone().unwrap_or_default(),
            uid: audited.uid.clone(),
            findings,
        }
    }

    fn resource(&self) -> Value {
        json!({"apiVersion": self.api_version, "kind": self.kind, "name": self.name,
               "namespace": self.namespace, "uid": self.uid})
    }

    fn results(&self) -> Vec<Value> {
        if self.findings.is_empty() {
            return vec![json!({
                "policy": NAME, "rule": "asyncapi-security", "result": "pass",
                "source": NAME, "scored": true,
                "message": format!("{} meets the asyncapi-guard policy", self.kind),
                "resources": [self.resource()],
            })];
        }
        self.findings
            .iter()
            .map(|f| {
                let mut properties = json!({"document": f.document, "pointer": f.pointer});
                if f.line > 0 {
                    properties["line"] = json!(f.line.to_string());
                    properties["column"] = json!(f.column.to_string());
                }
                if let Some((by, expires)) = &f.exception {
                    properties["exception"] = json!(by);
                    properties["exceptionExpires"] = json!(expires);
                }
                json!({
                    "policy": NAME, "rule": f.rule, "result": f.result, "severity": f.severity,
                    "source": NAME, "scored": true, "category": "AsyncAPI security",
                    "message": f.message, "resources": [self.resource()],
                    "properties": properties,
                })
            })
            .collect()
    }
}

/// The Report of `namespace` for its objects (any order: results are sorted, so an
/// unchanged namespace gives the same Report); for `""`, cluster-scoped objects, the
/// ClusterReport.
pub fn namespace_report<'a>(
    namespace: &str,
    objects: impl IntoIterator<Item = &'a ObjectResults>,
) -> Value {
    let mut objects: Vec<&ObjectResults> = objects.into_iter().collect();
    objects.sort_by(|a, b| (&a.kind, &a.name, &a.uid).cmp(&(&b.kind, &b.name, &b.uid)));
    let mut summary: BTreeMap<&str, u64> = ["pass", "fail", "warn", "error", "skip"]
        .map(|k| (k, 0))
        .into();
    let mut results = Vec::new();
    let mut bytes = 0;
    let mut left_out = 0;
    for object in objects {
        for result in object.results() {
            if let Some(count) = result["result"].as_str().and_then(|r| summary.get_mut(r)) {
                *count += 1;
            }
            let size = result.to_string().len();
            if bytes + size > MAX_RESULTS_BYTES {
                left_out += 1;
                continue;
            }
            bytes += size;
            results.push(result);
        }
    }
    let mut metadata = json!({
        "name": NAME,
        "labels": {MANAGED_BY.0: MANAGED_BY.1},
    });
    if !namespace.is_empty() {
        metadata["namespace"] = json!(namespace);
    }
    let mut annotations = serde_json::Map::new();
    if left_out > 0 {
        annotations.insert(TRUNCATED_ANNOTATION.to_owned(), json!(left_out.to_string()));
    }
    let mut report = json!({
        "apiVersion": API_VERSION,
        "kind": if namespace.is_empty() { CLUSTER_KIND } else { KIND },
        "metadata": metadata,
        "source": NAME,
        "summary": summary,
        "results": results,
    });
    annotations.insert(
        DIGEST_ANNOTATION.to_owned(),
        json!(digest(&report, left_out)),
    );
    report["metadata"]["annotations"] = Value::Object(annotations);
    report
}

/// The digest of a Report's content (what it says, not where or when).
fn digest(report: &Value, left_out: usize) -> String {
    let content = json!([
        report["source"],
        report["summary"],
        report["results"],
        left_out
    ]);
    let hash = ring::digest::digest(&ring::digest::SHA256, content.to_string().as_bytes());
    hash.as_ref()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The digest a Report carries, as written by [`namespace_report`].
pub fn digest_of(report: &Value) -> Option<&str> {
    report
        .pointer("/metadata/annotations")?
        .get(DIGEST_ANNOTATION)?
        .as_str()
}

/// Reports for every namespace of an audit, and a ClusterReport for its cluster-scoped
/// objects (the CLI's `--format openreports`).
pub fn reports_of<'a>(objects: impl IntoIterator<Item = &'a ObjectResults>) -> Vec<Value> {
    let mut by_namespace: BTreeMap<&str, Vec<&ObjectResults>> = BTreeMap::new();
    for object in objects {
        by_namespace
            .entry(object.namespace.as_str())
            .or_default()
            .push(object);
    }
    by_namespace
        .into_iter()
        .map(|(namespace, objects)| namespace_report(namespace, objects))
        .collect()
}

/// A YAML stream of the reports, for `kubectl apply -f -` (each document is JSON, which is
/// YAML).
pub fn render_stream(reports: &[Value]) -> String {
    let mut out = String::new();
    for report in reports {
        out.push_str("---\n");
        out.push_str(&serde_json::to_string_pretty(report).unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, findings: Vec<FindingResult>) -> ObjectResults {
        ObjectResults {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: name.into(),
            namespace: "payments".into(),
            uid: format!("uid-{name}"),
            findings: findings.into_boxed_slice(),
        }
    }

    fn finding(result: &'static str) -> FindingResult {
        FindingResult {
            rule: "server-security-missing",
            result,
            severity: "high",
            message: "production server \"production\" declares no security".into(),
            document: "data/asyncapi.yaml".into(),
            pointer: "/servers/production".into(),
            line: 4,
            column: 3,
            exception: None,
        }
    }

    #[test]
    fn a_result_per_finding_a_pass_per_compliant_object_and_the_counts() {
        let excepted = FindingResult {
            exception: Some((
                "asyncapi-guard/legacy".into(),
                "2027-01-15T00:00:00Z".into(),
            )),
            ..finding("skip")
        };
        let objects = [
            object("b-orders", vec![finding("fail"), finding("warn")]),
            object("a-billing", vec![]),
            object("c-legacy", vec![excepted]),
        ];
        let report = namespace_report("payments", &objects);
        assert_eq!(report["kind"], "Report");
        assert_eq!(report["metadata"]["name"], "asyncapi-guard");
        assert_eq!(
            report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "asyncapi-guard"
        );
        assert_eq!(
            report["summary"],
            json!({"pass": 1, "fail": 1, "warn": 1, "error": 0, "skip": 1})
        );
        let results = report["results"].as_array().unwrap();
        // Sorted by object: a-billing's pass first.
        assert_eq!(results[0]["result"], "pass");
        assert_eq!(results[1]["result"], "fail");
        assert_eq!(results[1]["rule"], "server-security-missing");
        assert_eq!(results[1]["severity"], "high");
        assert_eq!(results[1]["properties"]["line"], "4");
        assert_eq!(results[1]["resources"][0]["uid"], "uid-b-orders");
        // An excepted finding is skipped, and names its exception.
        assert_eq!(results[3]["result"], "skip");
        assert_eq!(
            results[3]["properties"]["exception"],
            "asyncapi-guard/legacy"
        );
        assert_eq!(
            results[3]["properties"]["exceptionExpires"],
            "2027-01-15T00:00:00Z"
        );
        // The same objects in another order: the same Report, and its digest says so.
        let reversed = [objects[2].clone(), objects[1].clone(), objects[0].clone()];
        let again = namespace_report("payments", &reversed);
        assert_eq!(again, report);
        assert_eq!(digest_of(&again).map(str::len), Some(32));
        let changed = namespace_report("payments", &objects[..2]);
        assert_ne!(digest_of(&changed), digest_of(&report));
    }

    #[test]
    fn a_namespace_too_big_is_cut_and_says_so() {
        let many: Vec<ObjectResults> = (0..6000)
            .map(|i| object(&format!("o{i:05}"), vec![finding("fail")]))
            .collect();
        let report = namespace_report("payments", &many);
        let size = report.to_string().len();
        assert!(size < 1536 * 1024, "{size}");
        assert_eq!(report["summary"]["fail"], 6000);
        let kept = report["results"].as_array().unwrap().len();
        assert!(kept < 6000);
        assert_eq!(
            report["metadata"]["annotations"][TRUNCATED_ANNOTATION],
            (6000 - kept).to_string()
        );
    }
}
