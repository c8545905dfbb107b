//! An object as the API server sent it, for the audit's lists and watches: the metadata the
//! cluster client needs decoded, everything else kept as the JSON text it came in.
//!
//! Why not `kube`'s `DynamicObject`: it decodes the whole object into a `serde_json::Value`,
//! recursively, so one custom resource nested deeper than serde_json's recursion limit
//! (about 128) fails the decoding of its whole list page or watch event, and the audit of
//! every object of that kind stops. The text instead goes to the engine's own JSON reader,
//! iterative and under the configured limits, exactly as the webhook reads an
//! AdmissionReview; so the audit and admission see an object the same way, and the object
//! is decoded once, not into a `Value` and then again into the document tree.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::ApiResource;
use kube::core::{DynamicResourceScope, Resource};
use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// A listed or watched object: `metadata` as far as the audit and the cluster client read it,
/// and the rest of the object as JSON text.
#[derive(Debug, Clone)]
pub struct RawObject {
    pub metadata: ObjectMeta,
    body: String,
    /// Where `status` stands in `body`.
    status: Option<Range<usize>>,
}

impl RawObject {
    /// The object as JSON text without its `metadata` (decoded already, in [`Self::metadata`]):
    /// every other member as it came, in its order. Documents are in `spec`, `data` and the
    /// like; writing the metadata back for the reader to read again was a third of the cost
    /// of a small object's audit.
    pub fn body(&self) -> &str {
        &self.body
    }

    /// The object as JSON text with the metadata that was read (name, namespace, labels,
    /// annotations, ...), as admission has it: for a carrier kind whose document is in an
    /// annotation.
    pub fn body_with_metadata(&self) -> Result<String, serde_json::Error> {
        let metadata = serde_json::to_string(&self.metadata)?;
        let rest = self.body.strip_prefix('{').unwrap_or(&self.body);
        let comma = if rest.starts_with('}') { "" } else { "," };
        Ok(format!("{{\"metadata\":{metadata}{comma}{rest}"))
    }

    /// `status`, as JSON text, when it has one.
    pub fn status(&self) -> Option<&str> {
        self.body.get(self.status.clone()?)
    }

    /// From the JSON text of an object (for tests, and objects that come from elsewhere).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// The metadata fields that are read: identity, the resourceVersion the watch resumes from,
/// the generation a status condition observes, labels and annotations. The rest (above all
/// `managedFields`, whose `fieldsV1` nests as deep as the object) is stepped over by
/// serde_json's skipping, which is iterative.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Metadata {
    name: Option<String>,
    namespace: Option<String>,
    generate_name: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    generation: Option<i64>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

impl From<Metadata> for ObjectMeta {
    fn from(m: Metadata) -> Self {
        ObjectMeta {
            name: m.name,
            namespace: m.namespace,
            generate_name: m.generate_name,
            uid: m.uid,
            resource_version: m.resource_version,
            generation: m.generation,
            labels: m.labels,
            annotations: m.annotations,
            ..ObjectMeta::default()
        }
    }
}

impl<'de> Deserialize<'de> for RawObject {
    /// Only from serde_json's own deserializer over text (the members are borrowed from it
    /// as `RawValue`s): a list's `items` and a watch event's `object` both are, as `kube`
    /// decodes them (the API server writes an event's `type` before its `object`, so
    /// serde's tagged enum does not buffer the object; a buffered one would be refused, not
    /// misread). One pass: `metadata` is decoded, every other member kept as its text and
    /// copied into `body` (serde_json's skipping of a member is iterative: no depth limit
    /// of its own).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ObjectVisitor)
    }
}

struct ObjectVisitor;

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = RawObject;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<RawObject, A::Error> {
        let mut metadata: Option<ObjectMeta> = None;
        let mut status = None;
        // Room for a small object's members: growing from one byte took five copies.
        let mut body = String::with_capacity(512);
        body.push('{');
        while let Some(key) = members.next_key::<Cow<'de, str>>()? {
            if key == "metadata" {
                if metadata.is_some() {
                    return Err(A::Error::duplicate_field("metadata"));
                }
                metadata = Some(
                    members
                        .next_value::<Option<Metadata>>()?
                        .unwrap_or_default()
                        .into(),
                );
                continue;
            }
            if body.len() > 1 {
                body.push(',');
            }
            // The key as JSON again. One borrowed from the input had no escapes there, so
            // it has no character that needs one: it goes back as it was.
            match &key {
                Cow::Borrowed(key) => {
                    body.push('"');
                    body.push_str(key);
                    body.push('"');
                }
                Cow::Owned(key) => {
                    body.push_str(&serde_json::to_string(key).map_err(A::Error::custom)?);
                }
            }
            body.push(':');
            // Borrowed from the input, not copied into a box of its own and then into `body`:
            // kube decodes list pages and watch events from text (`serde_json::from_str`),
            // as `from_json` does. A decoder over a reader could not lend it, and would
            // refuse the object rather than misread it.
            let value: &'de RawValue = members.next_value()?;
            let start = body.len();
            body.push_str(value.get());
            if key == "status" {
                status = Some(start..body.len());
            }
        }
        body.push('}');
        Ok(RawObject {
            metadata: metadata.unwrap_or_default(),
            body,
            status,
        })
    }
}

impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn kind(resource: &ApiResource) -> Cow<'_, str> {
        resource.kind.as_str().into()
    }

    fn group(resource: &ApiResource) -> Cow<'_, str> {
        resource.group.as_str().into()
    }

    fn version(resource: &ApiResource) -> Cow<'_, str> {
        resource.version.as_str().into()
    }

    fn api_version(resource: &ApiResource) -> Cow<'_, str> {
        resource.api_version.as_str().into()
    }

    fn plural(resource: &ApiResource) -> Cow<'_, str> {
        resource.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth))
    }

    #[test]
    fn the_metadata_is_read_and_the_object_kept_as_it_came() {
        let text = format!(
            r#"{{"kind":"AsyncAPI","metadata":{{"name":"a","namespace":"n","uid":"u","resourceVersion":"7","generation":3,
              "labels":{{"l":"1"}},"annotations":{{"k":"v"}},"creationTimestamp":"2026-01-01T00:00:00Z",
              "managedFields":[{{"fieldsV1":{deep}}}]}},
              "spec":{deep},"status":{{"conditions":[]}}}}"#,
            deep = nested(400)
        );
        let object = RawObject::from_json(&text).unwrap();
        assert_eq!(
            object.body(),
            format!(
                r#"{{"kind":"AsyncAPI","spec":{deep},"status":{{"conditions":[]}}}}"#,
                deep = nested(400)
            )
        );
        assert_eq!(
            object.body_with_metadata().unwrap(),
            format!(
                r#"{{"metadata":{meta},"kind":"AsyncAPI","spec":{deep},"status":{{"conditions":[]}}}}"#,
                meta = r#"{"annotations":{"k":"v"},"generation":3,"labels":{"l":"1"},"name":"a","namespace":"n","resourceVersion":"7","uid":"u"}"#,
                deep = nested(400)
            )
        );
        assert_eq!(object.status(), Some(r#"{"conditions":[]}"#));
        let meta = &object.metadata;
        assert_eq!(meta.name.as_deref(), Some("a"));
        assert_eq!(meta.namespace.as_deref(), Some("n"));
        assert_eq!(meta.uid.as_deref(), Some("u"));
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert_eq!(meta.generation, Some(3));
        assert_eq!(meta.labels.as_ref().unwrap()["l"], "1");
        assert_eq!(meta.annotations.as_ref().unwrap()["k"], "v");
        assert!(meta.managed_fields.is_none() && meta.creation_timestamp.is_none());
    }

    #[test]
    fn a_decoder_that_cannot_lend_its_text_is_refused_not_misread() {
        let text = r#"{"metadata":{"name":"a"},"spec":{"asyncapi":"3.0.0"}}"#;
        assert_eq!(
            RawObject::from_json(text).unwrap().body(),
            r#"{"spec":{"asyncapi":"3.0.0"}}"#
        );
        assert!(serde_json::from_reader::<_, RawObject>(text.as_bytes()).is_err());
    }

    #[test]
    fn a_list_page_with_an_object_deeper_than_serde_json_recursion_decodes() {
        let page = format!(
            r#"{{"kind":"AsyncAPIList","apiVersion":"v1","metadata":{{"resourceVersion":"1"}},
              "items":[{{"metadata":{{"name":"deep"}},"spec":{}}},{{"metadata":{{"name":"flat"}}}}]}}"#,
            nested(1000)
        );
        let list: kube::core::ObjectList<RawObject> = serde_json::from_str(&page).unwrap();
        let names: Vec<_> = list.items.iter().map(|o| o.metadata.name.clone()).collect();
        assert_eq!(names, [Some("deep".into()), Some("flat".into())]);

        let event = format!(
            r#"{{"type":"ADDED","object":{{"metadata":{{"name":"deep"}},"spec":{}}}}}"#,
            nested(1000)
        );
        let event: kube::core::WatchEvent<RawObject> = serde_json::from_str(&event).unwrap();
        assert!(
            matches!(event, kube::core::WatchEvent::Added(o) if o.metadata.name.as_deref() == Some("deep"))
        );
    }

    #[test]
    fn keys_are_written_back_as_json() {
        let object =
            RawObject::from_json(r#"{"metadata":{"name":"a"},"sp\u0065c":{"a\"b":1},"x\n":2}"#)
                .unwrap();
        assert_eq!(object.body(), r#"{"spec":{"a\"b":1},"x\n":2}"#);
        let bare = RawObject::from_json(r#"{"metadata":{"name":"a"}}"#).unwrap();
        assert_eq!(bare.body(), "{}");
        assert_eq!(
            bare.body_with_metadata().unwrap(),
            r#"{"metadata":{"name":"a"}}"#
        );
    }

    #[test]
    fn metadata_of_the_wrong_type_is_an_error_not_a_guess() {
        for text in [
            r#"{"metadata":{"name":1}}"#,
            r#"{"metadata":{"labels":{"a":1}}}"#,
            r#"{"metadata":"x"}"#,
            r#""object""#,
        ] {
            assert!(RawObject::from_json(text).is_err(), "{text}");
        }
    }
}
