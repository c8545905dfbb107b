//! Prometheus metrics, in text format on the plain-HTTP metrics port: the webhook's
//! requests, reloads and certificates, and the audit's gauges.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use std::collections::BTreeMap;

use crate::engine::finding::RuleId;
use crate::engine::memo::Lookup;
use crate::kubernetes::exceptions::ExceptionState;

/// One admission request, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub struct RequestRecord<'a> {
    /// Empty when the request could not be read.
    pub kind: &'a str,
    pub operation: &'a str,
    /// `allowed`, `denied`, `invalid`.
    pub verdict: &'a str,
    pub dry_run: bool,
    /// Each finding's rule and effect (its mode, or `excepted`).
    pub findings: &'a [(RuleId, &'static str)],
    pub document_bytes: &'a [usize],
    pub memo: &'a [Lookup],
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: String,
    operation: String,
    verdict: String,
    /// Argo CD and Flux diff by server-side dry run: those requests are counted apart.
    dry_run: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FindingLabels {
    kind: String,
    rule: String,
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabels {
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    target: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ViolationLabels {
    pub namespace: String,
    pub rule: String,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    duration: Histogram,
    document_bytes: Histogram,
    certificate_expiry: Gauge,
    config_reloads: Family<ResultLabels, Counter>,
    certificate_reloads: Family<ResultLabels, Counter>,
    /// Current violations found by the in-cluster audit.
    pub audit_violations: Family<ViolationLabels, Gauge>,
    /// 1 while this replica holds the audit's Lease.
    pub audit_leader: Gauge,
    /// 1 once every kind the audit watches is listed (it writes from then on).
    pub audit_current: Gauge,
    /// Writes the audit owes and has not finished.
    pub audit_pending_writes: Gauge,
    audit_watch_up: Family<ResourceLabels, Gauge>,
    audit_relists: Family<ResourceLabels, Counter>,
    audit_writes: Family<WriteLabels, Counter>,
    memo_lookups: Family<ResultLabels, Counter>,
    memo_entries: Gauge,
    memo_bytes: Gauge,
    exceptions: Family<StateLabels, Gauge>,
    /// 1 while the exceptions in force are the last known ones, not the cluster's current.
    pub exceptions_stale: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("asyncapi_guard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "Admission requests, by kind, operation, verdict and whether they were dry runs",
            requests.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "admission_findings",
            "Findings in admission requests, by kind, rule and mode",
            findings.clone(),
        );
        // 50 µs to about 3.3 s.
        let duration = Histogram::new(exponential_buckets(0.000_05, 2.0, 17));
        registry.register(
            "admission_duration_seconds",
            "Time to answer an admission request",
            duration.clone(),
        );
        // 256 B to 8 MiB.
        let document_bytes = Histogram::new(exponential_buckets(256.0, 2.0, 16));
        registry.register(
            "document_bytes",
            "Size of each AsyncAPI document judged at admission",
            document_bytes.clone(),
        );
        let certificate_expiry = Gauge::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the serving certificate expires (Unix time)",
            certificate_expiry.clone(),
        );
        let config_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result (success or failure)",
            config_reloads.clone(),
        );
        let certificate_reloads = Family::<ResultLabels, Counter>::default();
        registry.register(
            "certificate_reloads",
            "Certificate reloads, by result (success or failure)",
            certificate_reloads.clone(),
        );
        let audit_violations = Family::<ViolationLabels, Gauge>::default();
        registry.register(
            "audit_violations",
            "Current violations in the cluster found by the audit, by namespace and rule",
            audit_violations.clone(),
        );
        let memo_lookups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "memo_lookups",
            "Documents looked up in the verdict memo, by result (hit or miss)",
            memo_lookups.clone(),
        );
        let memo_entries = Gauge::default();
        registry.register(
            "memo_entries",
            "Verdicts held in the memo",
            memo_entries.clone(),
        );
        let memo_bytes = Gauge::default();
        registry.register(
            "memo_bytes",
            "About how many bytes the memo's verdicts hold",
            memo_bytes.clone(),
        );
        let exceptions = Family::<StateLabels, Gauge>::default();
        registry.register(
            "exceptions",
            "AsyncAPIException objects, by state (active, expiring, expired, refused)",
            exceptions.clone(),
        );
        let exceptions_stale = Gauge::default();
        registry.register(
            "exceptions_stale",
            "Whether the exceptions watch is down (1) and the last known exceptions apply",
            exceptions_stale.clone(),
        );
        let audit_leader = Gauge::default();
        registry.register(
            "audit_leader",
            "1 while this replica holds the audit's Lease and audits the cluster",
            audit_leader.clone(),
        );
        let audit_current = Gauge::default();
        registry.register(
            "audit_current",
            "1 once every kind the audit watches is listed and its writes follow the cluster",
            audit_current.clone(),
        );
        let audit_pending_writes = Gauge::default();
        registry.register(
            "audit_pending_writes",
            "Status, Event and Report writes the audit owes and has not finished",
            audit_pending_writes.clone(),
        );
        let audit_watch_up = Family::<ResourceLabels, Gauge>::default();
        registry.register(
            "audit_watch_up",
            "1 while the audit's watch of a resource is listed and current, 0 while it is down",
            audit_watch_up.clone(),
        );
        let audit_relists = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "audit_relists",
            "Completed lists of a resource by the audit (at start, after a watch failed, at each re-audit)",
            audit_relists.clone(),
        );
        let audit_writes = Family::<WriteLabels, Counter>::default();
        registry.register(
            "audit_writes",
            "The audit's writes, by target (object, report, exception-status, exception-event) and result",
            audit_writes.clone(),
        );
        let metrics = Metrics {
            audit_leader,
            audit_current,
            audit_pending_writes,
            audit_watch_up,
            audit_relists,
            audit_writes,
            exceptions,
            exceptions_stale,
            memo_lookups,
            memo_entries,
            memo_bytes,
            registry,
            requests,
            findings,
            duration,
            document_bytes,
            certificate_expiry,
            config_reloads,
            certificate_reloads,
            audit_violations,
        };
        // Series whose labels are known in advance exist from the start, at 0: a rate or
        // an increase of them is then defined before the first event, and an alert on a
        // failure can fire on the first one.
        for ok in [true, false] {
            let _ = metrics.config_reloads.get_or_create(&result(ok));
            let _ = metrics.certificate_reloads.get_or_create(&result(ok));
        }
        for lookup in [Lookup::Hit, Lookup::Miss, Lookup::FirstSight] {
            let _ = metrics.memo_lookups.get_or_create(&ResultLabels {
                result: lookup.as_str().to_owned(),
            });
        }
        metrics
    }
}

fn result(ok: bool) -> ResultLabels {
    ResultLabels {
        result: if ok { "success" } else { "failure" }.to_owned(),
    }
}

impl Metrics {
    pub fn observe(&self, outcome: &RequestRecord<'_>, seconds: f64) {
        let kind = if outcome.kind.is_empty() {
            "unknown"
        } else {
            outcome.kind
        };
        self.requests
            .get_or_create(&RequestLabels {
                kind: kind.to_owned(),
                operation: if outcome.operation.is_empty() {
                    "unknown"
                } else {
                    outcome.operation
                }
                .to_owned(),
                verdict: outcome.verdict.to_owned(),
                dry_run: outcome.dry_run.to_string(),
            })
            .inc();
        for (rule, effect) in outcome.findings {
            self.findings
                .get_or_create(&FindingLabels {
                    kind: kind.to_owned(),
                    rule: rule.to_string(),
                    mode: (*effect).to_owned(),
                })
                .inc();
        }
        for lookup in outcome.memo {
            self.memo_lookups
                .get_or_create(&ResultLabels {
                    result: lookup.as_str().to_owned(),
                })
                .inc();
        }
        for bytes in outcome.document_bytes {
            self.document_bytes.observe(*bytes as f64);
        }
        self.duration.observe(seconds);
    }

    /// The memo's size, read when the metrics are scraped.
    pub fn set_memo_size(&self, entries: usize, bytes: u64) {
        self.memo_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        self.memo_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    pub fn audit_watch_up(&self, resource: &str, up: bool) {
        self.audit_watch_up
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .set(i64::from(up));
    }

    pub fn audit_relisted(&self, resource: &str) {
        self.audit_relists
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .inc();
    }

    pub fn audit_written(&self, target: &str, result: &str) {
        self.audit_writes
            .get_or_create(&WriteLabels {
                target: target.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    /// How many exceptions stand in each state, read when the metrics are scraped.
    pub fn set_exception_states(&self, states: &BTreeMap<ExceptionState, usize>) {
        for (state, count) in states {
            self.exceptions
                .get_or_create(&StateLabels {
                    state: state.as_str().to_owned(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    pub fn set_certificate_expiry(&self, unix_seconds: i64) {
        self.certificate_expiry.set(unix_seconds);
    }

    pub fn config_reloaded(&self, ok: bool) {
        self.config_reloads.get_or_create(&result(ok)).inc();
    }

    pub fn certificate_reloaded(&self, ok: bool) {
        self.certificate_reloads.get_or_create(&result(ok)).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_findings_and_reloads_are_exposed() {
        let metrics = Metrics::default();
        let outcome = RequestRecord {
            kind: "ConfigMap",
            operation: "CREATE",
            verdict: "denied",
            dry_run: false,
            findings: &[
                (RuleId::ServerSecurityMissing, "enforce"),
                (RuleId::SecuritySchemeUndefined, "excepted"),
            ],
            document_bytes: &[5000],
            memo: &[Lookup::Miss],
        };
        metrics.observe(&outcome, 0.0004);
        metrics.config_reloaded(false);
        metrics.set_certificate_expiry(1_900_000_000);
        let text = metrics.encode();
        assert!(text.contains("asyncapi_guard_admission_requests_total{kind=\"ConfigMap\",operation=\"CREATE\",verdict=\"denied\",dry_run=\"false\"} 1"), "{text}");
        assert!(text.contains("asyncapi_guard_admission_findings_total{kind=\"ConfigMap\",rule=\"server-security-missing\",mode=\"enforce\"} 1"));
        assert!(text.contains("asyncapi_guard_admission_findings_total{kind=\"ConfigMap\",rule=\"security-scheme-undefined\",mode=\"excepted\"} 1"));
        assert!(text.contains("asyncapi_guard_config_reloads_total{result=\"failure\"} 1"));
        assert!(text.contains("asyncapi_guard_certificate_expiry_timestamp_seconds 1900000000"));
        assert!(text.contains("asyncapi_guard_admission_duration_seconds_bucket"));
        assert!(text.contains("asyncapi_guard_document_bytes_sum 5000"));
    }
}
