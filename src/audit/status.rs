//! What the audit writes, decided from what it read alone: the `SecurityCompliant`
//! condition of an AsyncAPI resource, the Event on any other object (a ConfigMap, an object
//! of a configured carrier kind), an exception's status and the Event that says it expired.
//! Pure, so the "write only what changed" rule is tested without a cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use super::Audited;
use super::events::truncate;
use crate::engine::finding::Mode;
use crate::kubernetes::exceptions::{Exception, ExceptionPolicy, ExceptionState, Refusal};
use crate::kubernetes::extract::ExtractConfig;

pub const CONDITION_TYPE: &str = "SecurityCompliant";
pub const COMPLIANT_REASON: &str = "Compliant";

/// The condition to write, or `None` when the current one already says it. The transition
/// time moves only when the status does.
pub fn desired_condition(
    audited: &Audited,
    current: &[Condition],
    generation: Option<i64>,
    now: Timestamp,
) -> Option<Condition> {
    let (status, reason, message) = match audited.violations().next() {
        None => {
            let warnings: usize = audited
                .documents
                .iter()
                .map(|d| d.evaluation.findings.len())
                .sum();
            let mode = match audited.mode() {
                Mode::Enforce => String::new(),
                other => format!(" (its namespace is in {other} mode)"),
            };
            let message = match warnings {
                0 => format!("no violations of the asyncapi-guard policy{mode}"),
                n => format!("no enforced violations{mode}; {n} finding(s) in warn or audit mode"),
            };
            ("True", COMPLIANT_REASON.to_owned(), message)
        }
        Some((_, first)) => {
            let message = audited
                .denial()
                .and_then(|text| text.lines().next().map(str::to_owned))
                .unwrap_or_else(|| first.message.clone());
            ("False", first.rule.to_string(), message)
        }
    };
    let previous = current.iter().find(|c| c.type_ == CONDITION_TYPE);
    if let Some(previous) = previous
        && previous.status == status
        && previous.reason == reason
        && previous.message == message
        && previous.observed_generation == generation
    {
        return None;
    }
    let last_transition_time = match previous {
        Some(previous) if previous.status == status => previous.last_transition_time.clone(),
        _ => Time(now),
    };
    Some(Condition {
        type_: CONDITION_TYPE.to_owned(),
        status: status.to_owned(),
        reason,
        message,
        observed_generation: generation,
        last_transition_time,
    })
}

/// An Event the audit emits about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// `NonCompliant`, or `Unguarded` for a ConfigMap admission never sees.
    pub reason: &'static str,
    pub note: String,
}

/// The Event for an object without a status of ours (a ConfigMap, a carrier kind's object): a
/// non-compliant one, or a ConfigMap that carries AsyncAPI without the label (admission never
/// sees it). `None` for a compliant, guarded one.
pub fn object_event(audited: &Audited) -> Option<ObjectEvent> {
    if !audited.carries_documents() || (audited.guarded() && audited.compliant()) {
        return None;
    }
    let first_line = audited
        .denial()
        .and_then(|text| text.lines().next().map(str::to_owned));
    let (reason, note) = match (audited.guarded(), first_line) {
        (true, Some(line)) => ("NonCompliant", line),
        (true, None) => return None,
        (false, line) => (
            "Unguarded",
            format!(
                "carries AsyncAPI documents without the asyncapi-guard.io/document label, so admission does not judge them{}",
                line.map(|l| format!("; {l}"))
                    .unwrap_or_else(|| "; they meet the policy".to_owned())
            ),
        ),
    };
    Some(ObjectEvent {
        reason,
        // The API server refuses notes over 1 KiB.
        note: truncate(&note, 1000),
    })
}

/// The status of an exception: `Accepted` (whether it counts, and if not why), `Expired`,
/// and how many findings it covers now (a stale exception covers none). The transition
/// times of unchanged conditions are kept from `exception.status`.
pub fn exception_status(
    exception: &Exception,
    policy: &ExceptionPolicy,
    config: &ExtractConfig,
    now: Timestamp,
    covered: u64,
) -> Value {
    let refusals = exception.refusals(policy, config, now);
    let expired = refusals
        .iter()
        .find(|r| matches!(r, Refusal::Expired { .. }));
    let refused: Vec<&Refusal> = refusals
        .iter()
        .filter(|r| !matches!(r, Refusal::Expired { .. }))
        .collect();
    let expires = exception
        .terms
        .as_ref()
        .map(|t| t.expires.to_string())
        .unwrap_or_default();
    let accepted = match refused.first() {
        None => ("True", "Accepted", "the exception counts".to_owned()),
        Some(first) => (
            "False",
            first.reason(),
            refused
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    };
    let expired = match (expired, exception.state(policy, config, now)) {
        (Some(_), _) => ("True", "Expired", format!("expired at {expires}")),
        (None, ExceptionState::Expiring) => (
            "False",
            "ExpiresSoon",
            format!("expires at {expires}, within exceptions.warnBefore"),
        ),
        (None, _) if expires.is_empty() => {
            ("False", "Invalid", "it has no valid expiry".to_owned())
        }
        (None, _) => ("False", "InForce", format!("expires at {expires}")),
    };
    let previous = |type_: &str, status: &str| {
        exception
            .status
            .as_ref()
            .and_then(|s| s.get("conditions"))
            .and_then(Value::as_array)
            .and_then(|conditions| {
                conditions
                    .iter()
                    .find(|c| c["type"] == type_ && c["status"] == status)
            })
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(Time(now)))
    };
    let condition = |type_: &str, (status, reason, message): (&str, &str, String)| {
        json!({"type": type_, "status": status, "reason": reason,
               "message": truncate(&message, 32_000),
               "observedGeneration": exception.generation,
               "lastTransitionTime": previous(type_, status)})
    };
    json!({
        "observedGeneration": exception.generation,
        "coveredFindings": covered,
        "conditions": [condition("Accepted", accepted), condition("Expired", expired)],
    })
}

/// Whether `current` (as the cluster holds it) already says what `desired` says.
pub fn same_exception_status(current: Option<&Value>, desired: &Value) -> bool {
    current.is_some_and(|current| current == desired)
}

/// The note of the Event on an exception that expired.
pub fn expired_note(exception: &Exception) -> String {
    let (expires, reason, target) = exception
        .terms
        .as_ref()
        .map(|t| {
            (
                t.expires.to_string(),
                t.reason.as_str(),
                format!("{} {}/{}", t.target.kind, t.target.namespace, t.target.name),
            )
        })
        .unwrap_or_default();
    truncate(
        &format!(
            "expired at {expires}: the findings it covered in {target} are violations again (it said: {reason})"
        ),
        1000,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audited, asyncapi_resource, config_map_resource};
    use crate::engine::Engine;
    use crate::kubernetes::exceptions::ExceptionSet;
    use crate::kubernetes::raw_object::RawObject;
    use crate::service::state::ActiveConfig;

    const INSECURE: &str =
        "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n";
    const SECURE: &str = "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/up'\ncomponents:\n  securitySchemes:\n    up: {type: userPassword}\n";

    fn resource(document: &str) -> Audited {
        let spec: serde_json::Value = {
            let engine = Engine::default();
            let stream = engine.load(document).unwrap();
            crate::engine::document::value::to_json(stream.tree.node(stream.documents[0].0), 100)
                .unwrap()
        };
        let object = RawObject::from_json(
            &serde_json::json!({
            "apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
            "metadata": {"name": "orders", "namespace": "payments", "generation": 4},
            "spec": spec})
            .to_string(),
        )
        .unwrap();
        let active = ActiveConfig::default();
        Audited::judge(
            &active.judge(&ExceptionSet::default(), now()),
            &asyncapi_resource(),
            &object,
            &Default::default(),
        )
    }

    fn config_map(document: &str, labelled: bool) -> Audited {
        let labels = if labelled {
            serde_json::json!({"asyncapi-guard.io/document": "true"})
        } else {
            serde_json::json!({})
        };
        let object = RawObject::from_json(
            &serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "orders", "namespace": "payments", "labels": labels},
            "data": {"asyncapi.yaml": document, "other": "x: 1"}})
            .to_string(),
        )
        .unwrap();
        let active = ActiveConfig::default();
        Audited::judge(
            &active.judge(&ExceptionSet::default(), now()),
            &config_map_resource(),
            &object,
            &Default::default(),
        )
    }

    fn now() -> Timestamp {
        "2026-11-22T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_violation_is_a_false_condition_with_the_first_rule_and_line() {
        let condition = desired_condition(&resource(INSECURE), &[], Some(4), now()).unwrap();
        assert_eq!(condition.status, "False");
        assert_eq!(condition.reason, "server-security-missing");
        assert_eq!(
            condition.message,
            "AsyncAPI payments/orders: spec/servers/production production server \"production\" declares no security [server-security-missing]"
        );
        assert_eq!(condition.observed_generation, Some(4));
        assert_eq!(condition.last_transition_time, Time(now()));
    }

    #[test]
    fn nothing_is_written_when_nothing_changed() {
        let audited = resource(INSECURE);
        let written = desired_condition(&audited, &[], Some(4), now()).unwrap();
        let later: Timestamp = "2026-11-22T11:00:00Z".parse().unwrap();
        assert_eq!(
            desired_condition(&audited, std::slice::from_ref(&written), Some(4), later),
            None
        );
        // A new generation with the same verdict: written, but the transition time stays.
        let again =
            desired_condition(&audited, std::slice::from_ref(&written), Some(5), later).unwrap();
        assert_eq!(again.last_transition_time, written.last_transition_time);
        // Fixed: the status flips and the transition time moves.
        let fixed = desired_condition(&resource(SECURE), &[written], Some(6), later).unwrap();
        assert_eq!(
            (fixed.status.as_str(), fixed.reason.as_str()),
            ("True", "Compliant")
        );
        assert_eq!(fixed.last_transition_time, Time(later));
    }

    #[test]
    fn other_conditions_are_left_alone() {
        let other = Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Ok".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(now()),
        };
        let condition = desired_condition(&resource(SECURE), &[other], Some(4), now()).unwrap();
        assert_eq!(condition.type_, CONDITION_TYPE);
    }

    #[test]
    fn events_for_non_compliant_and_unguarded_config_maps_only() {
        assert!(object_event(&config_map(SECURE, true)).is_none());
        let denied = object_event(&config_map(INSECURE, true)).unwrap();
        assert_eq!(denied.reason, "NonCompliant");
        assert!(
            denied
                .note
                .starts_with("ConfigMap payments/orders: asyncapi.yaml:3:3 ")
        );
        let unguarded = object_event(&config_map(SECURE, false)).unwrap();
        assert_eq!(unguarded.reason, "Unguarded");
        assert!(unguarded.note.ends_with("they meet the policy"));
        let unguarded_bad = object_event(&config_map(INSECURE, false)).unwrap();
        assert!(unguarded_bad.note.contains("[server-security-missing]"));
        // Not AsyncAPI at all: nothing to say.
        assert!(object_event(&config_map("just: yaml", false)).is_none());
    }

    #[test]
    fn an_exception_status_says_whether_it_counts_until_when_and_what_it_covers() {
        let exception = |namespace: &str, expires: &str| {
            Exception::from_object(&serde_json::json!({
                "metadata": {"name": "legacy", "namespace": namespace, "generation": 2,
                             "creationTimestamp": "2026-11-20T00:00:00Z"},
                "spec": {"match": {"namespace": "payments", "kind": "ConfigMap", "name": "orders"},
                         "rules": ["server-security-missing"], "reason": "legacy broker", "expires": expires}}))
        };
        let (policy, config) = (ExceptionPolicy::default(), ExtractConfig::default());
        let status = exception_status(
            &exception("asyncapi-guard", "2027-01-20T00:00:00Z"),
            &policy,
            &config,
            now(),
            3,
        );
        assert_eq!(status["coveredFindings"], 3);
        assert_eq!(status["observedGeneration"], 2);
        assert_eq!(status["conditions"][0]["type"], "Accepted");
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["conditions"][1]["reason"], "InForce");

        let elsewhere = exception_status(
            &exception("payments", "2027-01-20T00:00:00Z"),
            &policy,
            &config,
            now(),
            0,
        );
        assert_eq!(elsewhere["conditions"][0]["status"], "False");
        assert_eq!(elsewhere["conditions"][0]["reason"], "NamespaceNotAllowed");
        assert!(
            elsewhere["conditions"][0]["message"]
                .as_str()
                .unwrap()
                .contains("where exceptions do not count")
        );

        let mut late = exception("asyncapi-guard", "2026-11-21T00:00:00Z");
        let expired = exception_status(&late, &policy, &config, now(), 0);
        assert_eq!(expired["conditions"][1]["status"], "True");
        assert_eq!(expired["conditions"][1]["reason"], "Expired");
        // Written, then computed again later: the same, transition times included.
        late.status = Some(expired.clone());
        let later: Timestamp = "2026-11-23T00:00:00Z".parse().unwrap();
        let again = exception_status(&late, &policy, &config, later, 0);
        assert!(same_exception_status(late.status.as_ref(), &again));
        assert_eq!(
            expired_note(&late),
            "expired at 2026-11-21T00:00:00Z: the findings it covered in ConfigMap payments/orders are violations again (it said: legacy broker)"
        );
    }

    #[test]
    fn unguarded_config_maps_are_searched_for_asyncapi_keys() {
        let audited = config_map(INSECURE, false);
        assert!(!audited.guarded());
        assert_eq!(
            audited.documents.len(),
            1,
            "only the key that holds AsyncAPI"
        );
        assert_eq!(audited.documents[0].label, "asyncapi.yaml");
    }
}
