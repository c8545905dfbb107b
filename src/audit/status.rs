//! What the audit writes for an object, decided from the object alone: the
//! `SecurityCompliant` condition of an AsyncAPI resource, the Event on any other object (a
//! ConfigMap, an object of a configured carrier kind). Pure, so the "write only what
//! changed" rule is tested without a cluster.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::{Event, EventType};

use super::Audited;
use crate::engine::finding::Mode;

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

/// The Event for an object without a status of ours (a ConfigMap, a carrier kind's object): a
/// non-compliant one, or a ConfigMap that carries AsyncAPI without the label (admission never
/// sees it). `None` for a compliant, guarded one.
pub fn object_event(audited: &Audited) -> Option<Event> {
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
    Some(Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        // The API server refuses notes over 1 KiB.
        note: Some(truncate(&note, 1000)),
        action: "Audit".to_owned(),
        secondary: None,
    })
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
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
                .unwrap()
                .starts_with("ConfigMap payments/orders: asyncapi.yaml:3:3 ")
        );
        let unguarded = object_event(&config_map(SECURE, false)).unwrap();
        assert_eq!(unguarded.reason, "Unguarded");
        assert!(unguarded.note.unwrap().ends_with("they meet the policy"));
        let unguarded_bad = object_event(&config_map(INSECURE, false)).unwrap();
        assert!(
            unguarded_bad
                .note
                .unwrap()
                .contains("[server-security-missing]")
        );
        // Not AsyncAPI at all: nothing to say.
        assert!(object_event(&config_map("just: yaml", false)).is_none());
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
