//! Kubernetes objects that carry AsyncAPI documents: which documents ([`extract`]), whether
//! and how an object is judged and which exceptions cover its findings ([`verdict`], the one
//! decision the webhook, the audit and `check` all take), and judging documents with the
//! engine.

pub mod exceptions;
pub mod extract;
pub mod namespaces;
pub mod raw_object;
pub mod verdict;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::engine::document::{Limits, NodeRef, Value};
use crate::engine::memo::{Lookup, WithMemo};
use crate::engine::{Engine, Evaluation, Overrides};
use extract::{Carried, Content, ObjectId};

/// Judges one carried document; a structured field where it is in the object's tree, with
/// the positions that tree has. `None` when a candidate turned out not to be AsyncAPI.
/// Text is looked up in `memo` first, when there is one (the webhook's); the lookup's result
/// comes back for the metrics.
pub fn judge_carried(
    engine: &Engine,
    memo: Option<WithMemo<'_>>,
    carried: &Carried<'_>,
    overrides: &Overrides,
) -> (Option<Evaluation>, Option<Lookup>) {
    match (&carried.content, memo) {
        (Content::Text(bytes), Some(WithMemo { memo, keep })) => {
            let (evaluation, lookup) = memo.evaluate_bytes(engine, bytes, overrides, keep);
            (Some(evaluation), Some(lookup))
        }
        (Content::Text(bytes), None) => (Some(engine.evaluate_bytes(bytes, overrides)), None),
        (Content::Candidate(bytes), Some(WithMemo { memo, keep })) => {
            let (evaluation, lookup) = memo.evaluate_if_asyncapi(engine, bytes, overrides, keep);
            (evaluation, Some(lookup))
        }
        (Content::Candidate(bytes), None) => (engine.evaluate_if_asyncapi(bytes, overrides), None),
        (Content::Field(node), _) => (Some(engine.evaluate_field(*node, overrides)), None),
        (Content::Unreadable(why), _) => (Some(engine.evaluate_unreadable(why, overrides)), None),
    }
}

/// One judged document of an object.
#[derive(Debug, Clone)]
pub struct JudgedDocument {
    /// Where in the object: `data/asyncapi.yaml`, `spec`.
    pub locator: String,
    /// How findings name it: `asyncapi.yaml`, `spec`.
    pub label: String,
    /// Size of the document: its text, or for a structured field the bytes it spans in the
    /// object's JSON (about its compact JSON size where there is no JSON source).
    pub bytes: usize,
    pub evaluation: Evaluation,
    /// Whether the memo had it (only text is memoised, and only where there is a memo).
    pub memo: Option<Lookup>,
}

/// How deep an object may nest above the document it carries (`spec`, `spec/asyncapi`):
/// the object is read with this much room beyond the configured depth, and each document is
/// held to the configured depth alone ([`Engine::evaluate_field`]).
pub const OBJECT_NESTING: usize = 8;

/// The limits to read a whole object under. The depth is the deepest any configuration may
/// allow, plus the object's own nesting: so a document over the configured depth is read,
/// then refused by rule with that limit in the message ([`Engine::evaluate_field`], which
/// checks the height the reader recorded, without walking). Reading is iterative and
/// stops at that ceiling, so memory stays bounded. No size limit of their own: the
/// request's size is bounded where it is read, and each document's when it is judged.
pub fn object_limits(engine: &Engine) -> Limits {
    Limits {
        max_depth: Limits::MAX_DEPTH_CEILING.max(engine.policy().limits.max_depth) + OBJECT_NESTING,
        max_bytes: Limits::MAX_BYTES_CEILING,
        ..engine.policy().limits
    }
}

/// About the length of `node` as compact JSON (strings counted unescaped), without building
/// the text: for the size metric only, where the tree has no JSON source to measure (what
/// the webhook and the audit read always has). Iterative: the tree may be as deep as the
/// limits allow.
pub(crate) fn json_size(node: NodeRef<'_>) -> usize {
    let mut size = 0;
    let mut stack = vec![node];
    while let Some(node) = stack.pop() {
        match node.value() {
            Value::Scalar { text, kind } => {
                let quotes = if kind == crate::engine::document::ScalarKind::Str {
                    2
                } else {
                    0
                };
                size += text.len() + quotes;
            }
            Value::Seq(_) => {
                let before = stack.len();
                stack.extend(node.items());
                size += 2 + (stack.len() - before).saturating_sub(1);
            }
            Value::Map(_) => {
                let entries = node.entries();
                size += 2 + entries.len().saturating_sub(1);
                for entry in entries {
                    size += entry.key.len() + 3;
                    stack.push(node.child(entry.value));
                }
            }
        }
    }
    size
}

/// The metadata of an object's tree: what its documents are judged by (name, namespace,
/// generateName, labels, annotations), each held to its type. Nothing else is read or
/// copied: a real object's managedFields (and other fields the API server has validated
/// already) can be bigger than the document, and this runs on every request.
pub fn metadata_of(object: NodeRef<'_>) -> Result<ObjectMeta, ObjectError> {
    let Some(metadata) = object.get("metadata").filter(|m| !m.is_null()) else {
        return Ok(ObjectMeta::default());
    };
    if !metadata.is_map() {
        return Err(ObjectError::MalformedMetadata {
            field: String::new(),
            found: metadata.type_name(),
            wanted: "a mapping",
        });
    }
    let text = |field: &str| -> Result<Option<String>, ObjectError> {
        metadata
            .optional_str(field)
            .map(|text| text.map(str::to_owned))
            .map_err(|found| ObjectError::MalformedMetadata {
                field: format!(".{field}"),
                found,
                wanted: "a string",
            })
    };
    let strings = |field: &str| -> Result<Option<BTreeMap<String, String>>, ObjectError> {
        let Some(map) = metadata.get(field).filter(|v| !v.is_null()) else {
            return Ok(None);
        };
        if !map.is_map() {
            return Err(ObjectError::MalformedMetadata {
                field: format!(".{field}"),
                found: map.type_name(),
                wanted: "a mapping",
            });
        }
        map.entries()
            .map(|entry| {
                let value = map.child(entry.value);
                value
                    .as_str()
                    .map(|v| (entry.key.to_string(), v.to_owned()))
                    .ok_or_else(|| ObjectError::MalformedMetadata {
                        field: format!(".{field}.{}", entry.key),
                        found: value.type_name(),
                        wanted: "a string",
                    })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    };
    Ok(ObjectMeta {
        name: text("name")?,
        namespace: text("namespace")?,
        generate_name: text("generateName")?,
        labels: strings("labels")?,
        annotations: strings("annotations")?,
        ..ObjectMeta::default()
    })
}

/// Why an object's identity or metadata cannot be read. Messages say "it", the object,
/// which the caller names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// `field` is where below `metadata` (empty for `metadata` itself), as `.labels.team`.
    #[error(
        "its metadata is malformed: {} is {found}, not {wanted}",
        metadata_field(field)
    )]
    MalformedMetadata {
        field: String,
        found: &'static str,
        wanted: &'static str,
    },
    #[error("it has no {0}")]
    Missing(&'static str),
}

fn metadata_field(field: &str) -> String {
    if field.is_empty() {
        "it".to_owned()
    } else {
        format!("metadata{field}")
    }
}

/// Labels from pairs, for tests.
#[cfg(test)]
pub(crate) fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The identity and metadata of an object (a manifest's document).
pub fn identify(object: NodeRef<'_>) -> Result<(ObjectId, ObjectMeta), ObjectError> {
    let text = |field: &'static str| {
        object
            .get(field)
            .and_then(|v| v.as_str())
            .ok_or(ObjectError::Missing(field))
    };
    let api_version = text("apiVersion")?;
    let kind = text("kind")?;
    let meta = metadata_of(object)?;
    let name = meta
        .name
        .clone()
        .ok_or(ObjectError::Missing("metadata.name"))?;
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
    use crate::engine::document::value::from_json;
    use extract::ExtractConfig;
    use serde_json::json;

    fn identify_json(value: serde_json::Value) -> Result<(ObjectId, ObjectMeta), ObjectError> {
        let stream = from_json(&value, &Limits::default()).unwrap();
        identify(stream.roots().next().unwrap())
    }

    #[test]
    fn metadata_is_read_for_what_judging_needs_and_checked_there() {
        let (_, meta) = identify_json(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
                "name": "a", "namespace": "n", "generateName": "a-",
                "labels": {"asyncapi-guard.io/document": "true"},
                "annotations": {"asyncapi-guard.io/keys": "x.yaml", "note": ""},
                // Not read: neither its shape nor its depth stops a request.
                "managedFields": [{"fieldsV1": {"f:data": {"f:x": {"f:y": {"f:z": {}}}}}}],
                "creationTimestamp": "not a time",
            }}),
        )
        .unwrap();
        assert_eq!(meta.name.as_deref(), Some("a"));
        assert_eq!(meta.namespace.as_deref(), Some("n"));
        assert_eq!(meta.generate_name.as_deref(), Some("a-"));
        assert_eq!(meta.labels.unwrap()["asyncapi-guard.io/document"], "true");
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations["asyncapi-guard.io/keys"], "x.yaml");
        assert_eq!(annotations.len(), 2);
        assert!(meta.managed_fields.is_none());

        for (metadata, says) in [
            (
                json!({"name": "a", "labels": {"x": 1}}),
                "metadata.labels.x is a number",
            ),
            (
                json!({"name": "a", "annotations": ["x"]}),
                "metadata.annotations is a list",
            ),
            (json!({"name": ["a"]}), "metadata.name is a list"),
            (json!("a"), "it is a string, not a mapping"),
        ] {
            let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata});
            let why = identify_json(object).unwrap_err().to_string();
            assert!(why.contains(says), "{why}");
        }
    }

    #[test]
    fn identifies_core_and_grouped_objects() {
        let (id, _) = identify_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"}})).unwrap();
        assert_eq!(id.to_string(), "ConfigMap n/a");
        assert!(id.is_config_map());
        let (id, _) = identify_json(json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI", "metadata": {"name": "h"}})).unwrap();
        assert!(id.is_asyncapi_resource());
        assert_eq!(
            identify_json(json!({"kind": "ConfigMap"})).unwrap_err(),
            ObjectError::Missing("apiVersion")
        );
        assert!(
            identify_json(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}))
                .is_err()
        );
    }

    /// Judges the object `value` as admission would, with `config`: its compact JSON read by
    /// the engine's JSON reader, without positions.
    fn judge_json(value: &serde_json::Value, config: &ExtractConfig) -> Vec<JudgedDocument> {
        let engine = Engine::default();
        let text = value.to_string();
        let stream =
            crate::engine::document::json::parse(&text, &object_limits(&engine), false).unwrap();
        let object = stream.roots().next().unwrap();
        let (id, meta) = identify(object).unwrap();
        let judge = verdict::Judge {
            engine: &engine,
            config,
            exceptions: &exceptions::ExceptionSet::default(),
            policy: &exceptions::ExceptionPolicy::default(),
            now: k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        };
        let subject = verdict::Subject {
            id: &id,
            meta: &meta,
            body: object,
        };
        verdict::judge(
            &judge,
            None,
            subject,
            verdict::Scope::Entry(Overrides::default()),
        )
        .documents
    }

    #[test]
    fn judges_config_map_keys_and_custom_resource_specs() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "namespace": "n", "labels": {"asyncapi-guard.io/document": "true"}},
            "data": {"asyncapi.yaml": "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n", "notes.txt": "x"}});
        let judged = judge_json(&cm, &ExtractConfig::default());
        assert_eq!(judged.len(), 1);
        assert_eq!(judged[0].label, "asyncapi.yaml");
        assert!(!judged[0].evaluation.allowed());
        assert_eq!(judged[0].evaluation.findings[0].pos.line, 3);
        assert_eq!(judged[0].bytes, 69, "a key's size is its text's");

        let cr = json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI", "metadata": {"name": "h", "namespace": "n"},
            "spec": {"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}}}});
        let judged = judge_json(&cr, &ExtractConfig::default());
        assert_eq!(judged[0].label, "spec");
        assert!(!judged[0].evaluation.findings[0].pos.is_known());
        // A field's size is what it spans in the object's JSON, escapes included.
        let spec = json!({"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}},
            "info": {"description": "\"quoted\" and \u{e9}"}});
        let cr = json!({"apiVersion": "asyncapi-guard.io/v1alpha1", "kind": "AsyncAPI",
            "metadata": {"name": "h", "namespace": "n"}, "spec": spec});
        assert_eq!(
            judge_json(&cr, &ExtractConfig::default())[0].bytes,
            spec.to_string().len()
        );
    }

    #[test]
    fn a_field_without_json_source_is_measured_as_compact_json() {
        // Lists, empty collections and every kind of scalar.
        let spec = json!({"asyncapi": "3.0.0", "servers": {"production": {"host": "x", "protocol": "amqp"}},
            "tags": [{"name": "a"}, 1, true, null, [], {}]});
        let stream = from_json(&spec, &Limits::default()).unwrap();
        let root = stream.roots().next().unwrap();
        assert_eq!(root.json_source_len(), None);
        assert_eq!(json_size(root), spec.to_string().len());
    }

    #[test]
    fn unlabelled_candidates_are_judged_only_when_asyncapi() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "n"},
            "data": {"leader": "holderIdentity: x", "api": "asyncapi: 2.6.0\n", "broken": "asyncapi: [\n"}});
        let all = ExtractConfig {
            inspect_all_config_maps: true,
            ..ExtractConfig::default()
        };
        assert_eq!(
            judge_json(&cm, &all)
                .iter()
                .map(|j| j.label.as_str())
                .collect::<Vec<_>>(),
            ["api"]
        );
    }
}
