//! Kubernetes objects that carry AsyncAPI documents: which documents ([`extract`]), and
//! judging them with the engine. The webhook, the audit and `check` all come through here.

pub mod extract;
pub mod namespaces;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

use crate::engine::{Engine, Evaluation, Overrides};
use extract::{Carried, Content, ExtractConfig, ObjectId};

/// Judges one carried document. `field` judges a structured field: the caller knows whether
/// it has source positions for it. `None` when a candidate turned out not to be AsyncAPI.
pub fn judge_carried(
    engine: &Engine,
    carried: &Carried<'_>,
    overrides: &Overrides,
    field: impl FnOnce(&str) -> Option<Evaluation>,
) -> Option<Evaluation> {
    match &carried.content {
        Content::Text(bytes) => Some(engine.evaluate_bytes(bytes, overrides)),
        Content::Candidate(bytes) => engine.evaluate_if_asyncapi(bytes, overrides),
        Content::Field(pointer) => field(pointer),
        Content::Unreadable(why) => Some(engine.evaluate_unreadable(why, overrides)),
    }
}

/// One judged document of an object.
#[derive(Debug, Clone)]
pub struct JudgedDocument {
    /// Where in the object: `data/asyncapi.yaml`, `spec`.
    pub locator: String,
    /// How findings name it: `asyncapi.yaml`, `spec`.
    pub label: String,
    /// Size of the document: its text, or its JSON serialisation.
    pub bytes: usize,
    pub evaluation: Evaluation,
}

/// Judges every document an object (as JSON: `body` holds `data`, `spec`, ...) carries.
pub fn judge_object(
    engine: &Engine,
    id: &ObjectId,
    meta: &ObjectMeta,
    body: &Value,
    config: &ExtractConfig,
    overrides: &Overrides,
) -> Vec<JudgedDocument> {
    extract::extract(id, meta, body, config)
        .iter()
        .filter_map(|carried| {
            let evaluation = judge_carried(engine, carried, overrides, |pointer| {
                body.pointer(pointer)
                    .map(|value| engine.evaluate_json(value, overrides))
            })?;
            let bytes = match &carried.content {
                Content::Text(bytes) | Content::Candidate(bytes) => bytes.len(),
                Content::Field(pointer) => body.pointer(pointer).map_or(0, json_size),
                Content::Unreadable(_) => 0,
            };
            Some(JudgedDocument {
                locator: carried.locator.clone(),
                label: carried.label.clone(),
                bytes,
                evaluation,
            })
        })
        .collect()
}

/// The length of `value` as compact JSON, counted without building the text.
fn json_size(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// The identity and metadata of an object given as JSON (a manifest's document).
pub fn identify(object: &Value) -> Result<(ObjectId, ObjectMeta), String> {
    let text = |field: &str| object.get(field).and_then(Value::as_str);
    let api_version = text("apiVersion").ok_or("it has no apiVersion")?;
    let kind = text("kind").ok_or("it has no kind")?;
    let meta: ObjectMeta = match object.get("metadata") {
        Some(metadata) => serde_json::from_value(metadata.clone())
            .map_err(|e| format!("its metadata is malformed: {e}"))?,
        None => ObjectMeta::default(),
    };
    let name = meta.name.clone().ok_or("it has no metadata.name")?;
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    Ok((
        ObjectId {
            group: group.to_owned(),
            kind: kind.to_owned(),
            namespace: meta.namespace.clone(),
            name,
        },
        meta,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn identifies_core_and_grouped_objects() {
        let (id, _) = identify(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}})).unwrap();
        assert_eq!(id.to_string(), "ConfigMap n/a");
        assert!(id.is_config_map());
        let (id, _) = identify(&json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI", "metadata": {"name": "h"}})).unwrap();
        assert!(id.is_asyncapi_resource());
        assert!(identify(&json!({"kind": "ConfigMap"})).is_err());
        assert!(
            identify(&json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})).is_err()
        );
    }

    #[test]
    fn judges_config_map_keys_and_custom_resource_specs() {
        let engine = Engine::default();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "labels": {"asyncapi-guard.io/document": "true"}},
            "data": {"asyncapi.yaml": "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n", "notes.txt": "x"}});
        let (id, meta) = identify(&cm).unwrap();
        let judged = judge_object(
            &engine,
            &id,
            &meta,
            &cm,
            &ExtractConfig::default(),
            &Overrides::default(),
        );
        assert_eq!(judged.len(), 1);
        assert_eq!(judged[0].label, "asyncapi.yaml");
        assert!(!judged[0].evaluation.allowed());
        assert_eq!(judged[0].evaluation.findings[0].pos.line, 3);

        let cr = json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI", "metadata": {"name": "h", "namespace": "n"},
            "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}});
        let (id, meta) = identify(&cr).unwrap();
        let judged = judge_object(
            &engine,
            &id,
            &meta,
            &cr,
            &ExtractConfig::default(),
            &Overrides::default(),
        );
        assert_eq!(judged[0].label, "spec");
        assert!(!judged[0].evaluation.findings[0].pos.is_known());
    }

    #[test]
    fn unlabelled_candidates_are_judged_only_when_asyncapi() {
        let engine = Engine::default();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"},
            "data": {"leader": "holderIdentity: x", "api": "asyncapi: 2.6.0\n", "broken": "asyncapi: [\n"}});
        let (id, meta) = identify(&cm).unwrap();
        let all = ExtractConfig {
            inspect_all_config_maps: true,
            ..ExtractConfig::default()
        };
        let judged = judge_object(&engine, &id, &meta, &cm, &all, &Overrides::default());
        assert_eq!(
            judged.iter().map(|j| j.label.as_str()).collect::<Vec<_>>(),
            ["api"]
        );
    }
}
