//! Which AsyncAPI documents a Kubernetes object carries (docs/policy.md, "What is read").
//!
//! Works on the object as the engine's document tree: the webhook reads the API server's
//! JSON into one (iteratively, under the configured limits), the audit builds one from what
//! `kube` listed, and `check` has one from the manifest file; so all three share it, and a
//! structured field is judged where it is, with the positions its tree has.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::engine::document::{NodeRef, Value, pointer};

/// The label that opts a ConfigMap in.
pub const DOCUMENT_LABEL: &str = "asyncapi-guard.io/document";
/// The annotation that lists, comma-separated, the keys of a ConfigMap that hold documents.
pub const KEYS_ANNOTATION: &str = "asyncapi-guard.io/keys";
/// The custom resource whose `spec` is the document.
pub const CR_GROUP: &str = "asyncapi-guard.io";
pub const CR_VERSION: &str = "v1alpha1";
pub const CR_KIND: &str = "AsyncAPI";
pub const CR_PLURAL: &str = "asyncapis";

const DOCUMENT_SUFFIXES: [&str; 3] = [".yaml", ".yml", ".json"];

/// What the installation asks to look at, besides labelled ConfigMaps and `AsyncAPI`s.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtractConfig {
    /// Look at ConfigMaps without the label too (a key counts only if it holds an AsyncAPI
    /// document).
    #[serde(default)]
    pub inspect_all_config_maps: bool,
    /// Other kinds that carry a document in one field.
    #[serde(default)]
    pub kinds: Vec<CarrierKind>,
    /// Which namespaces admission judges and in which mode (the chart renders it from its
    /// webhook entries); the audit follows it.
    #[serde(default)]
    pub namespaces: super::namespaces::NamespaceScope,
}

/// A kind that carries a document in the field a JSON pointer names: as YAML or JSON text,
/// or as a structured object.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CarrierKind {
    /// API group; `""` for the core group.
    #[serde(default)]
    pub group: String,
    pub kind: String,
    /// JSON pointer to the field, such as `/spec/asyncapi`.
    pub field: String,
}

/// An object, as messages name it: `ConfigMap payments/orders-api`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// The ConfigMap `namespace/name`.
    pub fn config_map(namespace: &str, name: &str) -> ObjectId {
        ObjectId {
            group: String::new(),
            kind: "ConfigMap".to_owned(),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
        }
    }

    /// `ConfigMap/payments/orders-api`, as used in `check`'s file names.
    pub fn path(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{}/{ns}/{}", self.kind, self.name),
            None => format!("{}/{}", self.kind, self.name),
        }
    }

    pub fn is_config_map(&self) -> bool {
        self.group.is_empty() && self.kind == "ConfigMap"
    }

    pub fn is_asyncapi_resource(&self) -> bool {
        self.group == CR_GROUP && self.kind == CR_KIND
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// What a carried document is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content<'o> {
    /// YAML or JSON text: a ConfigMap key, a string field.
    Text(Cow<'o, [u8]>),
    /// Text judged only if it is an AsyncAPI document (unlabelled ConfigMaps, when the
    /// installation inspects all of them).
    Candidate(Cow<'o, [u8]>),
    /// A structured field of the object: its node in the object's tree.
    Field(NodeRef<'o>),
    /// The object says a document is here, but there is nothing readable.
    Unreadable(String),
}

/// One document an object carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carried<'o> {
    /// Where in the object: `data/asyncapi.yaml`, `binaryData/x.json`, `spec`.
    pub locator: String,
    /// How findings name it: the key (`asyncapi.yaml`) or the field (`spec`).
    pub label: String,
    pub content: Content<'o>,
}

/// The documents `body` (the whole object) carries; empty when it carries none. Whether
/// the object is judged at all (an unlabelled ConfigMap, an excluded namespace) is decided
/// before, by [`super::verdict`]: here a ConfigMap without the label is searched for keys
/// that hold AsyncAPI.
pub fn extract<'o>(
    id: &ObjectId,
    meta: &ObjectMeta,
    body: NodeRef<'o>,
    config: &ExtractConfig,
) -> Vec<Carried<'o>> {
    if id.is_config_map() {
        return config_map(meta, body);
    }
    if id.is_asyncapi_resource() {
        return vec![structured_field(body, "/spec").unwrap_or_else(|| {
            field(
                "/spec",
                Content::Unreadable("the AsyncAPI resource has no spec".to_owned()),
            )
        })];
    }
    config
        .carriers_of(id)
        .filter_map(|k| structured_field(body, &k.field))
        .collect()
}

impl ExtractConfig {
    /// The configured carriers of `id`'s kind (ConfigMaps and `AsyncAPI`s have their own
    /// rules and none).
    fn carriers_of<'c>(&'c self, id: &'c ObjectId) -> impl Iterator<Item = &'c CarrierKind> {
        let carrier = !id.is_config_map() && !id.is_asyncapi_resource();
        self.kinds
            .iter()
            .filter(move |k| carrier && k.group == id.group && k.kind == id.kind)
    }

    /// Whether a document of `id` may be in its metadata (a carrier whose field is an
    /// annotation): only then must the object's tree hold the metadata.
    pub fn reads_metadata(&self, id: &ObjectId) -> bool {
        self.carriers_of(id)
            .any(|k| k.field == "/metadata" || k.field.starts_with("/metadata/"))
    }
}

/// What a ConfigMap's `asyncapi-guard.io/document` label says (docs/policy.md: any value but
/// `false` opts in; `false` opts out, even of `inspectAllConfigMaps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentLabel {
    OptedIn,
    OptedOut,
    Absent,
}

impl DocumentLabel {
    pub fn of(meta: &ObjectMeta) -> DocumentLabel {
        match meta.labels.as_ref().and_then(|l| l.get(DOCUMENT_LABEL)) {
            None => DocumentLabel::Absent,
            Some(value) if value == "false" => DocumentLabel::OptedOut,
            Some(_) => DocumentLabel::OptedIn,
        }
    }
}

fn config_map<'o>(meta: &ObjectMeta, body: NodeRef<'o>) -> Vec<Carried<'o>> {
    let labelled = match DocumentLabel::of(meta) {
        DocumentLabel::OptedIn => true,
        DocumentLabel::Absent => false,
        DocumentLabel::OptedOut => return Vec::new(),
    };
    let listed: Option<BTreeSet<&str>> = labelled
        .then(|| meta.annotations.as_ref()?.get(KEYS_ANNOTATION))
        .flatten()
        .map(|keys| {
            keys.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .collect()
        });
    // A labelled ConfigMap promises a document in each listed key, or else in each key
    // named like a document file; its other keys (`--from-file=asyncapi=...`) are judged
    // when their content is AsyncAPI, as every key of an unlabelled one is.
    let promised = |key: &str| match &listed {
        Some(listed) => Some(listed.contains(key)),
        None if labelled && DOCUMENT_SUFFIXES.iter().any(|s| key.ends_with(s)) => Some(true),
        None => None,
    };
    let mut out = Vec::new();
    let mut found = BTreeSet::new();
    for (field, binary) in [("data", false), ("binaryData", true)] {
        let Some(map) = body.get(field).filter(NodeRef::is_map) else {
            continue;
        };
        for entry in map.entries() {
            let key: &'o str = entry.key;
            let value = map.child(entry.value);
            let promised = match promised(key) {
                Some(false) => continue,
                Some(true) => true,
                None => false,
            };
            found.insert(key);
            let locator = format!("{field}/{key}");
            let bytes: Result<Cow<'o, [u8]>, String> = match (value.as_str(), binary) {
                (Some(text), false) => Ok(Cow::Borrowed(text.as_bytes())),
                (Some(text), true) => base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map(Cow::Owned)
                    .map_err(|e| format!("binaryData key \"{key}\" is not valid base64: {e}")),
                (None, _) => Err(format!("{field} key \"{key}\" is not a string")),
            };
            let content = match bytes {
                Ok(bytes) if promised => Content::Text(bytes),
                Ok(bytes) => Content::Candidate(bytes),
                // Only a promised key must hold a document; others are left alone.
                Err(_) if !promised => continue,
                Err(why) => Content::Unreadable(why),
            };
            out.push(Carried {
                locator,
                label: key.to_owned(),
                content,
            });
        }
    }
    if let Some(listed) = listed {
        for key in listed.difference(&found) {
            out.push(Carried {
                locator: format!("data/{key}"),
                label: (*key).to_owned(),
                content: Content::Unreadable(format!(
                    "key \"{key}\" is listed in the {KEYS_ANNOTATION} annotation but the ConfigMap has no such key"
                )),
            });
        }
    }
    out
}

/// The field at `pointer`: text, a structured document, or nothing if absent.
fn structured_field<'o>(body: NodeRef<'o>, at: &str) -> Option<Carried<'o>> {
    let node = pointer::resolve(body, at)?.node;
    let content = match node.value() {
        _ if node.is_null() => return None,
        Value::Map(_) => Content::Field(node),
        _ => match node.as_str() {
            Some(text) => Content::Text(Cow::Borrowed(text.as_bytes())),
            None => Content::Unreadable(format!(
                "{at} is {}, not an AsyncAPI document",
                node.type_name()
            )),
        },
    };
    Some(field(at, content))
}

/// A document in a field: named by its pointer, without the leading slash (`spec`).
fn field<'o>(pointer: &str, content: Content<'o>) -> Carried<'o> {
    let name = pointer.trim_start_matches('/').to_owned();
    Carried {
        locator: name.clone(),
        label: name,
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::Stream;
    use crate::engine::document::value::from_json;
    use serde_json::json;

    fn tree(value: &serde_json::Value) -> Stream<'_> {
        from_json(value, &crate::engine::document::Limits::default()).unwrap()
    }

    fn root<'s>(stream: &'s Stream<'_>) -> NodeRef<'s> {
        stream.roots().next().unwrap()
    }

    fn meta(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        }
    }

    fn cm() -> ObjectId {
        ObjectId::config_map("payments", "orders-api")
    }

    /// What the ConfigMap `payments/orders-api` with `body` and `meta` carries: each
    /// locator, and what its content is (`text a`, `candidate d`, `unreadable ...`).
    fn carried(body: serde_json::Value, meta: &ObjectMeta) -> Vec<(String, String)> {
        let body_tree = tree(&body);
        extract(&cm(), meta, root(&body_tree), &ExtractConfig::default())
            .into_iter()
            .map(|c| {
                let content = match c.content {
                    Content::Text(b) => format!("text {}", String::from_utf8_lossy(&b)),
                    Content::Candidate(b) => format!("candidate {}", String::from_utf8_lossy(&b)),
                    Content::Unreadable(why) => format!("unreadable {why}"),
                    Content::Field(_) => "field".to_owned(),
                };
                (c.locator, content)
            })
            .collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(l, c)| ((*l).to_owned(), (*c).to_owned()))
            .collect()
    }

    #[test]
    fn labelled_config_map_documents_by_suffix() {
        let body = json!({"data": {"asyncapi.yaml": "a", "b.json": "b", "c.yml": "c", "readme.txt": "d"},
                          "binaryData": {"bin.yaml": "YXN5bmNhcGk6IDMuMC4w"}});
        // Named like a document: it must be one. Any other key: only if it is AsyncAPI.
        assert_eq!(
            carried(body, &meta(&[(DOCUMENT_LABEL, "")], &[])),
            pairs(&[
                ("data/asyncapi.yaml", "text a"),
                ("data/b.json", "text b"),
                ("data/c.yml", "text c"),
                ("data/readme.txt", "candidate d"),
                ("binaryData/bin.yaml", "text asyncapi: 3.0.0"),
            ])
        );
    }

    #[test]
    fn a_labelled_key_without_an_extension_is_judged_by_its_content() {
        // kubectl create configmap --from-file=asyncapi=orders.yaml
        let body = json!({"data": {"asyncapi": "asyncapi: 3.0.0"}});
        assert_eq!(
            carried(body, &meta(&[(DOCUMENT_LABEL, "true")], &[])),
            pairs(&[("data/asyncapi", "candidate asyncapi: 3.0.0")])
        );
    }

    #[test]
    fn the_label_false_opts_out() {
        let body = json!({"data": {"asyncapi.yaml": "asyncapi: 3.0.0"}});
        let opted_out = meta(&[(DOCUMENT_LABEL, "false")], &[]);
        assert_eq!(DocumentLabel::of(&opted_out), DocumentLabel::OptedOut);
        assert!(carried(body, &opted_out).is_empty());
        for value in ["", "true", "yes", "False"] {
            let m = meta(&[(DOCUMENT_LABEL, value)], &[]);
            assert_eq!(DocumentLabel::of(&m), DocumentLabel::OptedIn, "{value:?}");
        }
    }

    #[test]
    fn keys_annotation_lists_exactly_and_reports_missing_keys() {
        let body = json!({"data": {"spec": "a", "asyncapi.yaml": "b"}});
        let m = meta(
            &[(DOCUMENT_LABEL, "true")],
            &[(KEYS_ANNOTATION, " spec , gone.yaml,")],
        );
        assert_eq!(
            carried(body, &m),
            pairs(&[
                ("data/spec", "text a"),
                (
                    "data/gone.yaml",
                    "unreadable key \"gone.yaml\" is listed in the asyncapi-guard.io/keys annotation but the ConfigMap has no such key"
                ),
            ])
        );
    }

    #[test]
    fn every_key_of_an_unlabelled_config_map_is_a_candidate() {
        let body = json!({"data": {"leader": "x", "a.yaml": "y"}});
        assert_eq!(
            carried(body, &meta(&[], &[])),
            pairs(&[
                ("data/a.yaml", "candidate y"),
                ("data/leader", "candidate x")
            ])
        );
    }

    #[test]
    fn bad_binary_data_in_a_labelled_config_map_is_unreadable() {
        let body = json!({"binaryData": {"x.yaml": "%%%"}});
        let found = carried(body, &meta(&[(DOCUMENT_LABEL, "")], &[]));
        assert!(
            found[0]
                .1
                .starts_with("unreadable binaryData key \"x.yaml\" is not valid base64"),
            "{found:?}"
        );
    }

    #[test]
    fn asyncapi_resource_spec_is_a_field() {
        let id = ObjectId {
            group: CR_GROUP.into(),
            kind: CR_KIND.into(),
            namespace: Some("p".into()),
            name: "h".into(),
        };
        let body = json!({"spec": {"asyncapi": "3.0.0"}});
        let body_tree = tree(&body);
        let found = extract(
            &id,
            &ObjectMeta::default(),
            root(&body_tree),
            &ExtractConfig::default(),
        );
        assert_eq!(
            found[0].content,
            Content::Field(root(&body_tree).get("spec").unwrap())
        );
        assert_eq!(found[0].label, "spec");
        let empty = json!({});
        let empty_tree = tree(&empty);
        let none = extract(
            &id,
            &ObjectMeta::default(),
            root(&empty_tree),
            &ExtractConfig::default(),
        );
        assert!(matches!(none[0].content, Content::Unreadable(_)));
    }

    #[test]
    fn configured_kinds_as_text_or_object() {
        let config = ExtractConfig {
            inspect_all_config_maps: false,
            namespaces: Default::default(),
            kinds: vec![CarrierKind {
                group: "events.example.com".into(),
                kind: "Contract".into(),
                field: "/spec/asyncapi".into(),
            }],
        };
        let id = ObjectId {
            group: "events.example.com".into(),
            kind: "Contract".into(),
            namespace: None,
            name: "c".into(),
        };
        let text_body = json!({"spec": {"asyncapi": "asyncapi: 3.0.0"}});
        let text_body_tree = tree(&text_body);
        let text = extract(&id, &ObjectMeta::default(), root(&text_body_tree), &config);
        assert!(matches!(text[0].content, Content::Text(_)));
        assert_eq!(text[0].label, "spec/asyncapi");
        let obj_body = json!({"spec": {"asyncapi": {"asyncapi": "3.0.0"}}});
        let obj_body_tree = tree(&obj_body);
        let obj = extract(&id, &ObjectMeta::default(), root(&obj_body_tree), &config);
        assert_eq!(
            obj[0].content,
            Content::Field(
                pointer::resolve(root(&obj_body_tree), "/spec/asyncapi")
                    .unwrap()
                    .node
            )
        );
        let other = ObjectId {
            kind: "Other".into(),
            ..id
        };
        assert!(
            extract(
                &other,
                &ObjectMeta::default(),
                root(&tree(&json!({"spec": {"asyncapi": "x"}}))),
                &config
            )
            .is_empty()
        );
    }

    #[test]
    fn object_ids_print_as_messages_want() {
        assert_eq!(cm().to_string(), "ConfigMap payments/orders-api");
        assert_eq!(cm().path(), "ConfigMap/payments/orders-api");
    }
}
