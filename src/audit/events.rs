//! The audit's Events (`events.k8s.io/v1`). kube's `Recorder` groups repeats by reason and
//! object without looking at the note, so a changed verdict used to become "count 2" of an
//! Event that still said the old one. Here an Event is named by its object and its note: a
//! new note is a new Event; the same note again (a verdict that came back) counts on its
//! own series.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};

use super::book::note_hash;

/// The Events' reporting controller: a new leader finds its predecessor's by it.
pub const REPORTING_CONTROLLER: &str = "asyncapi-guard";
/// The API server refuses notes over 1 KiB.
const NOTE_MAX: usize = 1000;

/// One Event to emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub regarding: ObjectReference,
    /// `Warning` or `Normal`.
    pub type_: &'static str,
    pub reason: &'static str,
    pub note: String,
}

/// The Event's name: its object's and its note's. Kubernetes names are at most 253
/// characters; the object's part is cut to leave room for the note's hash.
pub fn event_name(regarding: &ObjectReference, note: &str) -> String {
    let object = regarding.name.as_deref().unwrap_or("object");
    let mut end = object.len().min(230);
    while !object.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}.{:016x}",
        object[..end].trim_end_matches(['.', '-']),
        note_hash(note)
    )
}

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
pub fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub(3);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// Emits `notice` by `instance` (this replica). The same note about the same object again
/// counts on that Event's series instead.
pub async fn publish(client: &Client, instance: &str, notice: &Notice) -> Result<(), kube::Error> {
    let namespace = notice
        .regarding
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let api: Api<Event> = Api::namespaced(client.clone(), &namespace);
    let note = truncate(&notice.note, NOTE_MAX);
    let name = event_name(&notice.regarding, &note);
    let now = MicroTime(Timestamp::now());
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.clone()),
            ..ObjectMeta::default()
        },
        action: Some("Audit".to_owned()),
        event_time: Some(now.clone()),
        note: Some(note),
        reason: Some(notice.reason.to_owned()),
        regarding: Some(notice.regarding.clone()),
        reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
        reporting_instance: Some(instance.to_owned()),
        type_: Some(notice.type_.to_owned()),
        ..Event::default()
    };
    match api.create(&PostParams::default(), &event).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            // Said before, and true again: one more of the same.
            let count = match api.get_opt(&name).await? {
                Some(existing) => existing.series.map_or(2, |s| s.count + 1),
                None => return api.create(&PostParams::default(), &event).await.map(|_| ()),
            };
            let series = serde_json::json!({"series": EventSeries {
                count,
                last_observed_time: now,
            }});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_is_named_by_its_object_and_its_note() {
        let regarding = ObjectReference {
            name: Some("orders-api".into()),
            ..ObjectReference::default()
        };
        let a = event_name(&regarding, "fails server-security-missing");
        assert!(a.starts_with("orders-api."), "{a}");
        assert_eq!(a, event_name(&regarding, "fails server-security-missing"));
        assert_ne!(a, event_name(&regarding, "meets the policy"));
        let long = ObjectReference {
            name: Some("x".repeat(253)),
            ..ObjectReference::default()
        };
        assert!(event_name(&long, "n").len() <= 253);
        assert_eq!(truncate(&"é".repeat(600), 1000).len(), 999);
    }
}
