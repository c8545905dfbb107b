//! An in-process Kubernetes API server with state, for the tests of code that watches and
//! writes: a real `kube::Client` talks to it over a tower service, with no network.
//!
//! It behaves like kube-apiserver where our code depends on it:
//! - `get` of a missing object is a 404; a watch started before the object exists gets an
//!   `ADDED` event when it appears, `MODIFIED` and `DELETED` after;
//! - `replace` (PUT) stores exactly what was sent (fields left out are dropped), and fails
//!   with 409 when the sent `resourceVersion` is not the current one;
//! - server-side apply needs a `fieldManager`, merges lists keyed by `name` (and conditions by
//!   `type`), records the manager in `managedFields`, and refuses, without `force`, to take
//!   a field another manager set to a different value;
//! - writes without a `fieldManager` are recorded under the manager `unknown`;
//! - a resource that is not installed (a CRD absent) answers 404 to everything;
//! - lists page with `limit` and `continue`, and filter by `metadata.name` field selectors
//!   and equality/existence label selectors;
//! - discovery (`/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`) lists the built-in
//!   kinds and those a test serves (a CRD installed), less those not installed;
//! - objects and lists carry their kind, a served one's too; a failure about one object
//!   names its resource (`configmaps "x" not found`, `eventcontracts.events.example.com`)
//!   and says in `details` which object.
//!
//! Tests change objects through the same store (as `kubectl` would), and read the log of
//! requests to check what the code under test did.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A collection, as its URL names it: `api/v1/configmaps`,
/// `apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations`.
pub type Collection = String;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    collection: Collection,
    namespace: Option<String>,
    name: String,
}

/// One request the client made.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
    pub status: u16,
}

impl Recorded {
    pub fn field_manager(&self) -> Option<&str> {
        self.query.get("fieldManager").map(String::as_str)
    }

    pub fn is_write(&self) -> bool {
        !matches!(self.method, Method::GET)
    }
}

struct Watcher {
    collection: Collection,
    namespace: Option<String>,
    name: Option<String>,
    labels: Option<String>,
    sender: mpsc::UnboundedSender<Bytes>,
}

struct Fault {
    method: Method,
    path_contains: String,
    status: u16,
    reason: String,
}

#[derive(Default)]
struct Store {
    revision: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change, for watches that start from an older resourceVersion.
    changes: Vec<(u64, Key, &'static str, Value)>,
    watchers: Vec<Watcher>,
    faults: Vec<Fault>,
    uninstalled: BTreeSet<Collection>,
    /// Kinds served besides the built-in ones (CRDs installed by the test).
    served: Vec<Served>,
    requests: Vec<Recorded>,
}

/// A kind the API server serves, for discovery.
#[derive(Debug, Clone)]
struct Served {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
}

/// What discovery lists without a test serving it: the kinds our code reads and writes.
const BUILT_IN: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    ("", "v1", "Namespace", "namespaces", false),
    ("events.k8s.io", "v1", "Event", "events", true),
    ("coordination.k8s.io", "v1", "Lease", "leases", true),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
    ),
    (
        "asyncapi-guard.io",
        "v1alpha1",
        "AsyncAPI",
        "asyncapis",
        true,
    ),
    ("openreports.io", "v1alpha1", "Report", "reports", true),
    (
        "openreports.io",
        "v1alpha1",
        "ClusterReport",
        "clusterreports",
        false,
    ),
];

#[derive(Clone, Default)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
}

/// The collection of a kind: `collection("", "v1", "configmaps")`.
pub fn collection(group: &str, version: &str, plural: &str) -> Collection {
    if group.is_empty() {
        format!("api/{version}/{plural}")
    } else {
        format!("apis/{group}/{version}/{plural}")
    }
}

pub const CONFIG_MAPS: &str = "api/v1/configmaps";
pub const SECRETS: &str = "api/v1/secrets";
pub const NAMESPACES: &str = "api/v1/namespaces";
pub const EVENTS: &str = "apis/events.k8s.io/v1/events";
pub const LEASES: &str = "apis/coordination.k8s.io/v1/leases";
pub const WEBHOOK_CONFIGURATIONS: &str =
    "apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
pub const ASYNCAPIS: &str = "apis/asyncapi-guard.io/v1alpha1/asyncapis";

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

type Reply = (u16, Value);

/// Whether `sent` names a resourceVersion other than the current one (a stale write).
fn stale(sent: &Value, current: &Value) -> bool {
    let rv = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    rv(sent).is_some_and(|sent| Some(sent) != rv(current))
}

fn error(code: u16, reason: &str, message: impl Into<String>) -> Reply {
    (code, status_body(code, reason, &message.into()))
}

/// What a collection holds, as kube-apiserver names it.
struct Resource {
    /// `v1`, `coordination.k8s.io/v1`.
    api_version: String,
    /// `ConfigMap`: objects' `kind`, and with `List` their lists'.
    kind: String,
    group: String,
    plural: String,
}

impl Resource {
    /// One object as error messages name it: `configmaps "x"`,
    /// `leases.coordination.k8s.io "x"`.
    fn named(&self, name: &str) -> String {
        if self.group.is_empty() {
            format!("{} \"{name}\"", self.plural)
        } else {
            format!("{}.{} \"{name}\"", self.plural, self.group)
        }
    }
}

/// A failure about one object, as kube-apiserver words it (`NewNotFound`, `NewConflict`,
/// ...): the message names the resource (`configmaps "x"`), and `details` the object.
fn object_error(
    code: u16,
    reason: &str,
    resource: &Resource,
    name: &str,
    message: String,
) -> Reply {
    let mut body = status_body(code, reason, &message);
    body["details"] = json!({"name": name, "kind": resource.plural});
    if !resource.group.is_empty() {
        body["details"]["group"] = json!(resource.group);
    }
    (code, body)
}

/// Parses `/api/v1/namespaces/ns/configmaps/name/status`.
fn parse_path(path: &str) -> Option<(Key, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => (format!("api/{version}"), rest),
        ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
        _ => (None, rest),
    };
    let (plural, name, sub) = match rest {
        [plural] => (*plural, "", None),
        [plural, name] => (*plural, *name, None),
        [plural, name, sub] => (*plural, *name, Some((*sub).to_owned())),
        _ => return None,
    };
    Some((
        Key {
            collection: format!("{prefix}/{plural}"),
            namespace,
            name: name.to_owned(),
        },
        sub,
    ))
}

fn parse_query(query: Option<&str>) -> BTreeMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=b,c,!d,e!=f`: equality, existence and their negations.
fn labels_match(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let get = |k: &str| labels.get(k.trim()).and_then(Value::as_str);
        if let Some((k, v)) = term.split_once("!=") {
            get(k) != Some(v.trim())
        } else if let Some((k, v)) = term.split_once('=') {
            get(k.trim_end_matches('=')) == Some(v.trim())
        } else if let Some(k) = term.strip_prefix('!') {
            get(k).is_none()
        } else {
            get(term).is_some()
        }
    })
}

fn fields_match(selector: &str, object: &Value) -> bool {
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let Some((field, value)) = term.split_once('=') else {
            return true;
        };
        let pointer = format!("/{}", field.trim_end_matches('=').replace('.', "/"));
        object.pointer(&pointer).and_then(Value::as_str) == Some(value)
    })
}

/// The key that identifies an item of a list for merging, if the list is keyed.
fn list_key(items: &[Value]) -> Option<&'static str> {
    ["name", "type"].into_iter().find(|key| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(key).is_some_and(Value::is_string))
    })
}

/// Server-side apply's merge: maps merge, keyed lists merge by key, other lists and scalars
/// are replaced.
fn apply_merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (k, v) in patch {
                match target.get_mut(k) {
                    Some(existing) if !v.is_null() => apply_merge(existing, v),
                    _ => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) if list_key(patch).is_some() => {
            let key = list_key(patch).unwrap_or("name");
            for item in patch {
                let id = item.get(key).cloned();
                match target.iter_mut().find(|t| t.get(key) == id.as_ref()) {
                    Some(existing) => apply_merge(existing, item),
                    None => target.push(item.clone()),
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// RFC 7386.
fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = json!({});
            }
            let Value::Object(target) = target else {
                return;
            };
            for (k, v) in patch {
                if v.is_null() {
                    target.remove(k);
                } else {
                    merge_patch(target.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Leaf fields, as pointers; items of keyed lists are named by their key.
fn leaves(value: &Value, at: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                leaves(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(items) if list_key(items).is_some() => {
            let key = list_key(items).unwrap_or("name");
            for item in items {
                let id = item.get(key).and_then(Value::as_str).unwrap_or_default();
                leaves(item, format!("{at}/[{key}={id}]"), out);
            }
        }
        other => {
            out.insert(at, other.clone());
        }
    }
}

fn now() -> String {
    "2026-11-30T00:00:00Z".to_owned()
}

/// One watch event as the API server writes it: `type` before `object` (Go's field order),
/// which a client that keeps the object's text unparsed depends on. serde_json's map would
/// sort `object` first.
fn watch_line(kind: &str, object: &Value) -> String {
    format!("{{\"type\":{},\"object\":{object}}}\n", json!(kind))
}

impl Store {
    /// The collection's resource: built in, or a kind a test serves (found whether or not
    /// it is installed); its plural stands in for the kind of anything else.
    fn resource(&self, collection: &str) -> Resource {
        let parts: Vec<&str> = collection.split('/').collect();
        let (group, version, plural) = match parts.as_slice() {
            ["api", version, plural] => ("", *version, *plural),
            ["apis", group, version, plural] => (*group, *version, *plural),
            _ => ("", "", collection),
        };
        let kind = BUILT_IN
            .iter()
            .find(|&&(g, _, _, p, _)| g == group && p == plural)
            .map(|&(_, _, kind, _, _)| kind.to_owned())
            .or_else(|| {
                self.served
                    .iter()
                    .find(|s| s.group == group && s.plural == plural)
                    .map(|s| s.kind.clone())
            })
            .unwrap_or_else(|| plural.to_owned());
        Resource {
            api_version: if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            },
            kind,
            group: group.to_owned(),
            plural: plural.to_owned(),
        }
    }

    fn not_found(&self, key: &Key) -> Reply {
        let resource = self.resource(&key.collection);
        let message = format!("{} not found", resource.named(&key.name));
        object_error(404, "NotFound", &resource, &key.name, message)
    }

    fn installed(&self, collection: &str) -> bool {
        !self.uninstalled.contains(collection)
    }

    /// Every kind discovery lists: built in or served, and installed.
    fn served(&self) -> Vec<Served> {
        BUILT_IN
            .iter()
            .map(|&(group, version, kind, plural, namespaced)| Served {
                group: group.to_owned(),
                version: version.to_owned(),
                kind: kind.to_owned(),
                plural: plural.to_owned(),
                namespaced,
            })
            .chain(self.served.iter().cloned())
            .filter(|s| self.installed(&collection(&s.group, &s.version, &s.plural)))
            .collect()
    }

    /// The discovery documents, as kube-apiserver serves them; `None` for any other path.
    fn discovery(&self, path: &str) -> Option<Reply> {
        let served = self.served();
        let resources = |group: &str, version: &str| {
            let list: Vec<Value> = served
                .iter()
                .filter(|s| s.group == group && s.version == version)
                .map(|s| {
                    json!({"name": s.plural, "singularName": s.kind.to_lowercase(), "namespaced": s.namespaced,
                           "kind": s.kind, "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]})
                })
                .collect();
            let group_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            if list.is_empty() {
                error(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            } else {
                (
                    200,
                    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list}),
                )
            }
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        Some(match segments.as_slice() {
            ["api"] => (
                200,
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
            ),
            ["api", version] => resources("", version),
            ["apis"] => {
                let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for s in served.iter().filter(|s| !s.group.is_empty()) {
                    let versions = groups.entry(&s.group).or_default();
                    if !versions.contains(&s.version.as_str()) {
                        versions.push(&s.version);
                    }
                }
                let groups: Vec<Value> = groups
                    .into_iter()
                    .map(|(name, versions)| {
                        let versions: Vec<Value> = versions
                            .iter()
                            .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
                            .collect();
                        json!({"name": name, "preferredVersion": versions[0], "versions": versions})
                    })
                    .collect();
                (
                    200,
                    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                )
            }
            ["apis", group, version] => resources(group, version),
            _ => return None,
        })
    }

    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    fn notify(&mut self, key: &Key, kind: &'static str, object: &Value) {
        let rv = self.revision;
        self.changes.push((rv, key.clone(), kind, object.clone()));
        let line = Bytes::from(watch_line(kind, object));
        self.watchers.retain(|w| {
            if w.collection != key.collection
                || (w.namespace.is_some() && w.namespace != key.namespace)
                || w.name.as_ref().is_some_and(|n| *n != key.name)
                || w.labels.as_ref().is_some_and(|l| {
                    !labels_match(
                        l,
                        object.pointer("/metadata/labels").unwrap_or(&Value::Null),
                    )
                })
            {
                return !w.sender.is_closed();
            }
            w.sender.send(line.clone()).is_ok()
        });
    }

    /// Records `manager` as the owner of `fields`, taking them from any other manager.
    fn own(object: &mut Value, manager: &str, operation: &str, fields: &BTreeMap<String, Value>) {
        let mut managed: Vec<Value> = object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for entry in &mut managed {
            if let Some(owned) = entry.get_mut("fieldsV1").and_then(Value::as_object_mut) {
                owned.retain(|path, _| !fields.contains_key(path));
            }
        }
        managed.retain(|e| {
            e.get("fieldsV1")
                .and_then(Value::as_object)
                .is_some_and(|f| !f.is_empty())
        });
        let owned: serde_json::Map<String, Value> =
            fields.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        match managed
            .iter_mut()
            .find(|e| e["manager"] == manager && e["operation"] == operation)
        {
            Some(entry) => {
                if let Some(existing) = entry["fieldsV1"].as_object_mut() {
                    existing.extend(owned);
                }
            }
            None => managed.push(json!({"manager": manager, "operation": operation,
                                        "fieldsType": "FieldsV1", "fieldsV1": owned})),
        }
        object["metadata"]["managedFields"] = Value::Array(managed);
    }

    fn stamp(&mut self, key: &Key, object: &mut Value, previous: Option<&Value>) {
        let resource = self.resource(&key.collection);
        if object.get("apiVersion").is_none() {
            object["apiVersion"] = json!(resource.api_version);
        }
        if object.get("kind").is_none() {
            object["kind"] = json!(resource.kind);
        }
        if !object.get("metadata").is_some_and(Value::is_object) {
            object["metadata"] = json!({});
        }
        let rv = self.bump();
        let metadata = &mut object["metadata"];
        metadata["name"] = json!(key.name);
        if let Some(ns) = &key.namespace {
            metadata["namespace"] = json!(ns);
        }
        metadata["resourceVersion"] = json!(rv.to_string());
        match previous {
            Some(previous) => {
                for field in ["uid", "creationTimestamp"] {
                    metadata[field] = previous["metadata"][field].clone();
                }
                let spec_changed = previous.get("spec") != object.get("spec");
                let generation = previous["metadata"]["generation"].as_i64().unwrap_or(1);
                object["metadata"]["generation"] = json!(if spec_changed {
                    generation + 1
                } else {
                    generation
                });
            }
            None => {
                self.uid += 1;
                metadata["uid"] = json!(format!("uid-{}", self.uid));
                metadata["creationTimestamp"] = json!(now());
                metadata["generation"] = json!(1);
            }
        }
    }

    fn create(&mut self, mut key: Key, mut object: Value, manager: &str) -> Reply {
        if key.name.is_empty() {
            key.name = match (
                object.pointer("/metadata/name").and_then(Value::as_str),
                object
                    .pointer("/metadata/generateName")
                    .and_then(Value::as_str),
            ) {
                (Some(name), _) => name.to_owned(),
                (None, Some(prefix)) => format!("{prefix}{}", self.revision + 1),
                (None, None) => return error(422, "Invalid", "metadata.name: Required value"),
            };
        }
        if self.objects.contains_key(&key) {
            let resource = self.resource(&key.collection);
            let message = format!("{} already exists", resource.named(&key.name));
            return object_error(409, "AlreadyExists", &resource, &key.name, message);
        }
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
        self.stamp(&key, &mut object, None);
        let mut fields = BTreeMap::new();
        leaves(&object, String::new(), &mut fields);
        Store::own(&mut object, manager, "Update", &fields);
        self.objects.insert(key.clone(), object.clone());
        self.notify(&key, "ADDED", &object);
        (201, object)
    }

    fn replace(&mut self, key: Key, sub: Option<&str>, sent: Value, manager: &str) -> Reply {
        let Some(current) = self.objects.get(&key).cloned() else {
            return self.not_found(&key);
        };
        if stale(&sent, &current) {
            return self.conflict(&key);
        }
        let mut object = match sub {
            // The status subresource changes only the status.
            Some("status") => {
                let mut object = current.clone();
                object["status"] = sent.get("status").cloned().unwrap_or(Value::Null);
                object
            }
            _ => {
                let mut object = sent;
                // The main resource never changes the status of a kind that has one.
                match current.get("status") {
                    Some(status) if key.collection == ASYNCAPIS => {
                        object["status"] = status.clone()
                    }
                    _ => {}
                }
                object
            }
        };
        object["metadata"]["managedFields"] = current["metadata"]["managedFields"].clone();
        self.stamp(&key, &mut object, Some(&current));
        let changed = changed_leaves(&current, &object);
        Store::own(&mut object, manager, "Update", &changed);
        self.store_modified(key, object)
    }

    fn conflict(&self, key: &Key) -> Reply {
        let resource = self.resource(&key.collection);
        let message = format!(
            "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
            resource.named(&key.name)
        );
        object_error(409, "Conflict", &resource, &key.name, message)
    }

    fn store_modified(&mut self, key: Key, object: Value) -> Reply {
        let unchanged = self
            .objects
            .get(&key)
            .is_some_and(|current| strip_volatile(current) == strip_volatile(&object));
        if unchanged {
            // The API server does not bump the resourceVersion of a no-op write.
            let current = self.objects.get(&key).cloned().unwrap_or(object);
            self.revision -= 1;
            return (200, current);
        }
        self.objects.insert(key.clone(), object.clone());
        self.notify(&key, "MODIFIED", &object);
        (200, object)
    }

    fn apply(
        &mut self,
        key: Key,
        sub: Option<&str>,
        patch: Value,
        manager: Option<&str>,
        force: bool,
    ) -> Reply {
        let Some(manager) = manager else {
            return error(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            );
        };
        let mut applied = patch.clone();
        if let Some(metadata) = applied.get_mut("metadata").and_then(Value::as_object_mut) {
            for volatile in [
                "resourceVersion",
                "managedFields",
                "uid",
                "creationTimestamp",
            ] {
                metadata.remove(volatile);
            }
        }
        let mut fields = BTreeMap::new();
        leaves(&applied, String::new(), &mut fields);
        fields.retain(|path, _| {
            path != "/apiVersion" && path != "/kind" && !path.starts_with("/metadata/name")
        });
        let Some(current) = self.objects.get(&key).cloned() else {
            if sub == Some("status") {
                return self.not_found(&key);
            }
            let mut object = applied;
            self.stamp(&key, &mut object, None);
            Store::own(&mut object, manager, "Apply", &fields);
            self.objects.insert(key.clone(), object.clone());
            self.notify(&key, "ADDED", &object);
            return (201, object);
        };
        let mut current_leaves = BTreeMap::new();
        leaves(&current, String::new(), &mut current_leaves);
        if !force {
            let owners = owners(&current);
            let conflicts: Vec<String> = fields
                .iter()
                .filter(|(path, value)| {
                    current_leaves.get(*path).is_some_and(|have| have != *value)
                        && owners.get(*path).is_some_and(|owner| owner != manager)
                })
                .map(|(path, _)| format!("conflict with \"{}\": {path}", owners[path]))
                .collect();
            if !conflicts.is_empty() {
                return error(
                    409,
                    "Conflict",
                    format!(
                        "Apply failed with {} conflicts: {}",
                        conflicts.len(),
                        conflicts.join(", ")
                    ),
                );
            }
        }
        let mut object = current.clone();
        apply_merge(&mut object, &applied);
        self.stamp(&key, &mut object, Some(&current));
        Store::own(&mut object, manager, "Apply", &fields);
        self.store_modified(key, object)
    }

    fn patch_merge(&mut self, key: Key, patch: Value, manager: &str) -> Reply {
        let Some(current) = self.objects.get(&key).cloned() else {
            return self.not_found(&key);
        };
        if stale(&patch, &current) {
            return self.conflict(&key);
        }
        let mut object = current.clone();
        merge_patch(&mut object, &patch);
        self.stamp(&key, &mut object, Some(&current));
        let changed = changed_leaves(&current, &object);
        Store::own(&mut object, manager, "Update", &changed);
        self.store_modified(key, object)
    }

    fn delete(&mut self, key: Key) -> Reply {
        match self.objects.remove(&key) {
            Some(object) => {
                self.bump();
                self.notify(&key, "DELETED", &object);
                (200, object)
            }
            None => self.not_found(&key),
        }
    }

    fn list(&self, key: &Key, query: &BTreeMap<String, String>) -> Reply {
        let mut items: Vec<&Value> = self
            .objects
            .iter()
            .filter(|(k, object)| {
                k.collection == key.collection
                    && (key.namespace.is_none() || k.namespace == key.namespace)
                    && query
                        .get("fieldSelector")
                        .is_none_or(|s| fields_match(s, object))
                    && query.get("labelSelector").is_none_or(|s| {
                        labels_match(
                            s,
                            object.pointer("/metadata/labels").unwrap_or(&Value::Null),
                        )
                    })
            })
            .map(|(_, object)| object)
            .collect();
        let start: usize = query
            .get("continue")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        items = items.split_off(start.min(items.len()));
        let mut metadata = json!({"resourceVersion": self.revision.to_string()});
        if let Some(limit) = query.get("limit").and_then(|l| l.parse::<usize>().ok())
            && limit > 0
            && items.len() > limit
        {
            items.truncate(limit);
            metadata["continue"] = json!((start + limit).to_string());
        }
        let resource = self.resource(&key.collection);
        (
            200,
            json!({"apiVersion": resource.api_version, "kind": format!("{}List", resource.kind), "metadata": metadata, "items": items}),
        )
    }
}

fn strip_volatile(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for volatile in ["resourceVersion", "managedFields", "generation"] {
            metadata.remove(volatile);
        }
    }
    object
}

fn changed_leaves(before: &Value, after: &Value) -> BTreeMap<String, Value> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    leaves(&strip_volatile(before), String::new(), &mut old);
    leaves(&strip_volatile(after), String::new(), &mut new);
    new.into_iter()
        .filter(|(k, v)| old.get(k) != Some(v))
        .collect()
}

/// Who owns each leaf field.
fn owners(object: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for entry in object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let manager = entry["manager"].as_str().unwrap_or_default();
        for path in entry["fieldsV1"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
        {
            out.insert(path.clone(), manager.to_owned());
        }
    }
    out
}

type ResponseBody = UnsyncBoxBody<Bytes, Infallible>;

fn respond((status, body): Reply) -> Response<ResponseBody> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed_unsync())
        .unwrap_or_default()
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    /// The CLI audit's census of this cluster, with the default engine and extraction.
    pub async fn census(&self) -> asyncapi_guard::audit::list::Census {
        asyncapi_guard::audit::list::census(
            &self.client("default"),
            &asyncapi_guard::service::state::ActiveConfig::default(),
            None,
            100,
        )
        .await
        .expect("the census of the fake cluster")
    }

    /// A client of this API server whose default namespace is `namespace`.
    pub fn client(&self, namespace: &str) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.handle(request).await) }
        });
        kube::Client::new(service, namespace)
    }

    async fn handle(&self, request: Request<Body>) -> Response<ResponseBody> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let content_type = parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else if content_type.contains("yaml") {
            // kube sends apply patches as JSON, which is YAML.
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let path = parts.uri.path().to_owned();
        let query = parse_query(parts.uri.query());
        let mut store = self.store.lock().unwrap();
        let mut record = Recorded {
            method: parts.method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
            status: 0,
        };
        let fault = store
            .faults
            .iter()
            .position(|f| f.method == parts.method && path.contains(&f.path_contains));
        if let Some(index) = fault {
            let fault = store.faults.remove(index);
            record.status = fault.status;
            store.requests.push(record);
            return respond(error(fault.status, &fault.reason, "injected by the test"));
        }
        if parts.method == Method::GET
            && let Some(reply) = store.discovery(&path)
        {
            record.status = reply.0;
            store.requests.push(record);
            return respond(reply);
        }
        let Some((key, sub)) = parse_path(&path) else {
            record.status = 404;
            store.requests.push(record);
            return respond(error(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        };
        if !store.installed(&key.collection) {
            record.status = 404;
            store.requests.push(record);
            return respond(error(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ));
        }
        let manager = query.get("fieldManager").cloned();
        let force = query.get("force").is_some_and(|f| f == "true");
        let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
        if watch && key.name.is_empty() {
            record.status = 200;
            store.requests.push(record);
            return self.watch(&mut store, key, &query);
        }
        let reply = match (parts.method.clone(), key.name.is_empty()) {
            (Method::GET, true) => store.list(&key, &query),
            (Method::GET, false) => match store.objects.get(&key) {
                Some(object) => (200, object.clone()),
                None => store.not_found(&key),
            },
            (Method::POST, true) => {
                store.create(key, body, manager.as_deref().unwrap_or("unknown"))
            }
            (Method::PUT, false) => store.replace(
                key,
                sub.as_deref(),
                body,
                manager.as_deref().unwrap_or("unknown"),
            ),
            (Method::PATCH, false) if content_type.starts_with("application/apply-patch") => {
                store.apply(key, sub.as_deref(), body, manager.as_deref(), force)
            }
            (Method::PATCH, false) => {
                store.patch_merge(key, body, manager.as_deref().unwrap_or("unknown"))
            }
            (Method::DELETE, false) => store.delete(key),
            _ => error(
                405,
                "MethodNotAllowed",
                "not supported by the fake API server",
            ),
        };
        record.status = reply.0;
        store.requests.push(record);
        respond(reply)
    }

    fn watch(
        &self,
        store: &mut Store,
        key: Key,
        query: &BTreeMap<String, String>,
    ) -> Response<ResponseBody> {
        let (sender, receiver) = mpsc::unbounded_channel();
        let name = query
            .get("fieldSelector")
            .and_then(|s| s.split(',').find_map(|t| t.strip_prefix("metadata.name=")))
            .map(str::to_owned);
        let labels = query.get("labelSelector").cloned();
        let since: u64 = query
            .get("resourceVersion")
            .and_then(|rv| rv.parse().ok())
            .unwrap_or(store.revision);
        for (rv, changed, kind, object) in &store.changes {
            let matches = *rv > since
                && changed.collection == key.collection
                && (key.namespace.is_none() || changed.namespace == key.namespace)
                && name.as_ref().is_none_or(|n| *n == changed.name)
                && labels.as_ref().is_none_or(|l| {
                    labels_match(
                        l,
                        object.pointer("/metadata/labels").unwrap_or(&Value::Null),
                    )
                });
            if matches {
                let _ = sender.send(Bytes::from(watch_line(kind, object)));
            }
        }
        store.watchers.push(Watcher {
            collection: key.collection,
            namespace: key.namespace,
            name,
            labels,
            sender,
        });
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver
                .recv()
                .await
                .map(|line| (Ok::<_, Infallible>(Frame::data(line)), receiver))
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(StreamBody::new(stream).boxed_unsync())
            .unwrap_or_default()
    }

    // What tests do, as kubectl would.

    /// Creates an object in `collection` (namespaced when `namespace` is given).
    pub fn create(&self, collection: &str, namespace: Option<&str>, object: Value) -> Value {
        let key = Key {
            collection: collection.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        };
        let (status, object) = self
            .store
            .lock()
            .unwrap()
            .create(key, object, "kubectl-create");
        assert_eq!(status, 201, "create: {object}");
        object
    }

    /// `kubectl replace -f`: stores exactly `object` (no resourceVersion: unconditional).
    pub fn replace(&self, collection: &str, namespace: Option<&str>, mut object: Value) -> Value {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
        }
        let key = Key {
            collection: collection.to_owned(),
            namespace: namespace.map(str::to_owned),
            name,
        };
        let (status, object) =
            self.store
                .lock()
                .unwrap()
                .replace(key, None, object, "kubectl-replace");
        assert_eq!(status, 200, "replace: {object}");
        object
    }

    pub fn delete(&self, collection: &str, namespace: Option<&str>, name: &str) {
        let key = Key {
            collection: collection.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        let (status, object) = self.store.lock().unwrap().delete(key);
        assert_eq!(status, 200, "delete: {object}");
    }

    pub fn get(&self, collection: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let key = Key {
            collection: collection.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        self.store.lock().unwrap().objects.get(&key).cloned()
    }

    /// Every object of `collection`, in every namespace.
    pub fn all(&self, collection: &str) -> Vec<Value> {
        let store = self.store.lock().unwrap();
        store
            .objects
            .iter()
            .filter(|(k, _)| k.collection == collection)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// The managers recorded in an object's `managedFields`.
    pub fn managers(object: &Value) -> Vec<String> {
        object
            .pointer("/metadata/managedFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e["manager"].as_str().map(str::to_owned))
            .collect()
    }

    /// Makes a resource answer 404 (its CRD is not installed), or installs it again.
    pub fn set_installed(&self, collection: &str, installed: bool) {
        let mut store = self.store.lock().unwrap();
        if installed {
            store.uninstalled.remove(collection);
        } else {
            store.uninstalled.insert(collection.to_owned());
        }
    }

    /// Serves a kind, as installing its CRD does: discovery lists it from now on.
    pub fn serve_kind(
        &self,
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        namespaced: bool,
    ) {
        self.store.lock().unwrap().served.push(Served {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
        });
    }

    /// The next request of `method` whose path contains `path_contains` fails with `status`.
    pub fn fail_next(&self, method: Method, path_contains: &str, status: u16, reason: &str) {
        self.store.lock().unwrap().faults.push(Fault {
            method,
            path_contains: path_contains.to_owned(),
            status,
            reason: reason.to_owned(),
        });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.store.lock().unwrap().requests.clone()
    }

    /// The writes (anything but GET) made so far, to paths containing `path_contains`.
    pub fn writes_to(&self, path_contains: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.is_write() && r.path.contains(path_contains))
            .collect()
    }

    /// Waits until `condition` holds of the store, or fails the test after `within`.
    pub async fn wait_for(
        &self,
        what: &str,
        within: std::time::Duration,
        condition: impl Fn(&FakeApi) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + within;
        while !condition(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited {within:?} for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}
