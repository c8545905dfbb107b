//! An in-process Kubernetes API server with state, for the tests of code that watches and
//! writes: a real `kube::Client` talks to it over a tower service (or over plain HTTP, for
//! the binary), with no cluster.
//!
//! It answers as kube-apiserver 1.36 answers the calls the project makes; the recorded
//! exchanges in `../shared/fixtures/apiserver/` are replayed against it
//! (`tests/fake_api_replay.rs`), and that test lists every difference it tolerates. In
//! particular:
//! - server-side apply: ownership by manager name only; a field another manager owns with a
//!   different value conflicts (409) unless forced, the same value is co-owned; an apply
//!   that stops setting a field removes it unless another manager owns it, and an item of
//!   a keyed list goes only when no manager owns it any more (so an entry whose name and
//!   `caBundle` another manager applied stays, half, and fails validation);
//! - updates (create, PUT, merge, JSON and strategic patches) own what they change, and a
//!   client may rewrite `managedFields`;
//! - validation of the kinds the project writes (422), `NamespaceTerminating` (403) for
//!   creations in a namespace being deleted, 404 `namespaces "x" not found`, and a plain
//!   text `404 page not found` for anything not served (a CRD not installed);
//! - lists page with opaque `continue` tokens; watches start with `ADDED` for what exists
//!   when asked without a resourceVersion, follow label selectors in and out, and answer a
//!   compacted resourceVersion with an `ERROR` event `410 Expired`;
//! - an outage: every request fails to connect and every watch ends.
//!
//! Tests change objects through the same store (as `kubectl` would), and read the log of
//! requests to check what the code under test did.
#![allow(dead_code)]

mod fields;
mod patch;
mod select;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use fields::{Entry, FieldSet, Writer};
use select::LabelSelector;

/// A collection, as its URL names it: `api/v1/configmaps`,
/// `apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations`.
pub type Collection = String;

pub const CONFIG_MAPS: &str = "api/v1/configmaps";
pub const SECRETS: &str = "api/v1/secrets";
pub const NAMESPACES: &str = "api/v1/namespaces";
pub const EVENTS: &str = "apis/events.k8s.io/v1/events";
pub const LEASES: &str = "apis/coordination.k8s.io/v1/leases";
pub const DEPLOYMENTS: &str = "apis/apps/v1/deployments";
pub const WEBHOOK_CONFIGURATIONS: &str =
    "apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";
pub const ASYNCAPIS: &str = "apis/asyncapi-guard.io/v1alpha1/asyncapis";
pub const EXCEPTIONS: &str = "apis/asyncapi-guard.io/v1alpha1/asyncapiexceptions";
pub const REPORTS: &str = "apis/openreports.io/v1alpha1/reports";
pub const CLUSTER_REPORTS: &str = "apis/openreports.io/v1alpha1/clusterreports";

/// The collection of a kind: `collection("", "v1", "configmaps")`.
pub fn collection(group: &str, version: &str, plural: &str) -> Collection {
    if group.is_empty() {
        format!("api/{version}/{plural}")
    } else {
        format!("apis/{group}/{version}/{plural}")
    }
}

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
    pub user_agent: String,
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

/// A kind the API server serves.
#[derive(Debug, Clone)]
struct Served {
    group: String,
    version: String,
    kind: String,
    plural: String,
    namespaced: bool,
    /// Has a `status` subresource: the main resource never writes `status`, and `/status`
    /// writes nothing else.
    status: bool,
}

impl Served {
    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    fn collection(&self) -> Collection {
        collection(&self.group, &self.version, &self.plural)
    }

    /// A built-in kind (not a custom resource).
    fn typed(&self) -> bool {
        matches!(
            self.group.as_str(),
            "" | "apps" | "coordination.k8s.io" | "events.k8s.io" | "admissionregistration.k8s.io"
        )
    }

    /// One object as error messages name it: `configmaps "x"`,
    /// `leases.coordination.k8s.io "x"`.
    fn named(&self, name: &str) -> String {
        if self.group.is_empty() {
            format!("{} \"{name}\"", self.plural)
        } else {
            format!("{}.{} \"{name}\"", self.plural, self.group)
        }
    }

    /// A custom resource's (a CRD installed), not one the API server has built in.
    fn is_custom(&self) -> bool {
        ![
            "",
            "events.k8s.io",
            "coordination.k8s.io",
            "apps",
            "admissionregistration.k8s.io",
        ]
        .contains(&self.group.as_str())
    }

    /// Custom resources carry a generation; of the built-in kinds here, Deployments and
    /// webhook configurations do.
    fn has_generation(&self) -> bool {
        self.is_custom() || ["apps", "admissionregistration.k8s.io"].contains(&self.group.as_str())
    }
}

/// What discovery lists without a test serving it: the kinds the project reads and writes.
const BUILT_IN: &[(&str, &str, &str, &str, bool, bool)] = &[
    ("", "v1", "ConfigMap", "configmaps", true, false),
    ("", "v1", "Secret", "secrets", true, false),
    ("", "v1", "Namespace", "namespaces", false, false),
    ("events.k8s.io", "v1", "Event", "events", true, false),
    ("coordination.k8s.io", "v1", "Lease", "leases", true, false),
    ("apps", "v1", "Deployment", "deployments", true, true),
    (
        "admissionregistration.k8s.io",
        "v1",
        "ValidatingWebhookConfiguration",
        "validatingwebhookconfigurations",
        false,
        false,
    ),
    (
        "asyncapi-guard.io",
        "v1alpha1",
        "AsyncAPI",
        "asyncapis",
        true,
        true,
    ),
    (
        "asyncapi-guard.io",
        "v1alpha1",
        "AsyncAPIException",
        "asyncapiexceptions",
        true,
        true,
    ),
    (
        "openreports.io",
        "v1alpha1",
        "Report",
        "reports",
        true,
        false,
    ),
    (
        "openreports.io",
        "v1alpha1",
        "ClusterReport",
        "clusterreports",
        false,
        false,
    ),
];

struct Watcher {
    collection: Collection,
    namespace: Option<String>,
    name: Option<String>,
    labels: Option<LabelSelector>,
    sender: mpsc::UnboundedSender<Bytes>,
}

struct Fault {
    method: Method,
    path_contains: String,
    status: u16,
    reason: String,
}

/// What the API server answers.
enum Reply {
    Json(u16, Value),
    /// A path it does not serve: `404 page not found`, as plain text.
    NotServed,
    Watch(mpsc::UnboundedReceiver<Bytes>),
    /// The connection fails (an outage).
    Refused,
}

fn status_body(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn error(code: u16, reason: &str, message: impl Into<String>) -> Reply {
    Reply::Json(code, status_body(code, reason, &message.into()))
}

/// A failure about one object: the message names the resource (`configmaps "x"`), and
/// `details` the object, its group and its plural.
fn object_error(code: u16, reason: &str, served: &Served, name: &str, message: String) -> Reply {
    let mut body = status_body(code, reason, &message);
    body["details"] = json!({"name": name, "kind": served.plural});
    if !served.group.is_empty() {
        body["details"]["group"] = json!(served.group);
    }
    Reply::Json(code, body)
}

/// One watch event as the API server writes it: `type` before `object` (Go's field order),
/// which a client that keeps the object's text unparsed depends on. serde_json's map would
/// sort `object` first.
fn watch_line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!(
        "{{\"type\":{},\"object\":{object}}}\n",
        json!(kind)
    ))
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn uuid(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// The metadata no client writes and no comparison of content looks at.
fn strip_volatile(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        for volatile in ["resourceVersion", "managedFields", "generation"] {
            metadata.remove(volatile);
        }
    }
    object
}

fn sans_time(entries: &[Entry]) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| Entry {
            time: String::new(),
            ..e.clone()
        })
        .collect()
}

/// One request about one object (or, to create one, its collection).
struct Call<'r> {
    served: Served,
    key: Key,
    sub: Option<String>,
    request: &'r Incoming<'r>,
}

impl<'r> Call<'r> {
    fn parts(&self) -> (&Served, &Key, Option<&str>, &'r Incoming<'r>) {
        (&self.served, &self.key, self.sub.as_deref(), self.request)
    }
}

/// Where a request goes.
enum Route {
    Discovery,
    Resource {
        served: Served,
        key: Key,
        sub: Option<String>,
    },
}

#[derive(Default)]
struct Store {
    revision: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    /// Every change, for watches that start from an older resourceVersion.
    changes: Vec<(u64, Key, &'static str, Value, Option<Value>)>,
    /// Changes at or below this revision are forgotten (etcd compaction).
    compacted: u64,
    watchers: Vec<Watcher>,
    faults: Vec<Fault>,
    uninstalled: BTreeSet<Collection>,
    /// Kinds served besides the built-in ones (CRDs installed by the test).
    extra: Vec<Served>,
    requests: Vec<Recorded>,
    down: bool,
    /// How long each request takes, at most: a network's, so that clients interleave.
    latency: std::time::Duration,
    /// Draws of the latency (a cheap generator: the spread matters, not its quality).
    draws: u64,
}

/// A request, as the store takes it.
struct Incoming<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a BTreeMap<String, String>,
    content_type: &'a str,
    user_agent: &'a str,
    body: Value,
}

impl Incoming<'_> {
    /// The field manager: as asked, else the User-Agent up to its first `/`, else
    /// `unknown`.
    fn manager(&self) -> String {
        if let Some(manager) = self.query.get("fieldManager") {
            return manager.clone();
        }
        match self.user_agent.split('/').next() {
            Some(agent) if !agent.is_empty() => agent.to_owned(),
            _ => "unknown".to_owned(),
        }
    }

    fn dry_run(&self) -> bool {
        self.query.get("dryRun").is_some_and(|d| d == "All")
    }
}

impl Store {
    fn served(&self) -> Vec<Served> {
        BUILT_IN
            .iter()
            .map(
                |&(group, version, kind, plural, namespaced, status)| Served {
                    group: group.to_owned(),
                    version: version.to_owned(),
                    kind: kind.to_owned(),
                    plural: plural.to_owned(),
                    namespaced,
                    status,
                },
            )
            .chain(self.extra.iter().cloned())
            .filter(|s| !self.uninstalled.contains(&s.collection()))
            .collect()
    }

    fn served_at(&self, collection: &str) -> Option<Served> {
        self.served()
            .into_iter()
            .find(|s| s.collection() == collection)
    }

    /// Where `path` goes; `None` when nothing is served there.
    fn route(&self, path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (prefix, rest): (String, &[&str]) = match segments.as_slice() {
            ["api"] | ["apis"] => return Some(Route::Discovery),
            ["api", version] => return self.group_served("", version).then_some(Route::Discovery),
            ["apis", group] => {
                return self
                    .served()
                    .iter()
                    .any(|s| s.group == *group)
                    .then_some(Route::Discovery);
            }
            ["apis", group, version] => {
                return self
                    .group_served(group, version)
                    .then_some(Route::Discovery);
            }
            ["api", version, rest @ ..] => (format!("api/{version}"), rest),
            ["apis", group, version, rest @ ..] => (format!("apis/{group}/{version}"), rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, plural, rest @ ..]
                if self
                    .served_at(&format!("{prefix}/{plural}"))
                    .is_some_and(|s| s.namespaced) =>
            {
                (Some((*ns).to_owned()), [&[*plural][..], rest].concat())
            }
            _ => (None, rest.to_vec()),
        };
        let (plural, name, sub) = match rest.as_slice() {
            [plural] => (*plural, "", None),
            [plural, name] => (*plural, *name, None),
            [plural, name, sub] => (*plural, *name, Some((*sub).to_owned())),
            _ => return None,
        };
        let served = self.served_at(&format!("{prefix}/{plural}"))?;
        // A namespaced kind is listed across namespaces, never read by name outside one.
        if served.namespaced && namespace.is_none() && !name.is_empty() {
            return None;
        }
        Some(Route::Resource {
            key: Key {
                collection: served.collection(),
                namespace,
                name: name.to_owned(),
            },
            served,
            sub,
        })
    }

    fn group_served(&self, group: &str, version: &str) -> bool {
        self.served()
            .iter()
            .any(|s| s.group == group && s.version == version)
    }

    /// The discovery documents, as kube-apiserver serves them.
    fn discovery(&self, path: &str) -> Reply {
        let served = self.served();
        let resources = |group: &str, version: &str| {
            let list: Vec<Value> = served
                .iter()
                .filter(|s| s.group == group && s.version == version)
                .flat_map(|s| {
                    // Namespaces are deleted one by one.
                    let verbs: &[&str] = if s.kind == "Namespace" {
                        &["create", "delete", "get", "list", "patch", "update", "watch"]
                    } else {
                        &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
                    };
                    let mut entries = vec![json!({"name": s.plural, "singularName": s.kind.to_lowercase(), "namespaced": s.namespaced,
                           "kind": s.kind, "verbs": verbs})];
                    if s.status {
                        entries.push(json!({"name": format!("{}/status", s.plural), "singularName": "", "namespaced": s.namespaced,
                            "kind": s.kind, "verbs": ["get", "patch", "update"]}));
                    }
                    entries
                })
                .collect();
            let group_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            // The core group's list has no apiVersion; the others' have.
            let mut body = json!({"kind": "APIResourceList", "groupVersion": group_version, "resources": list});
            if !group.is_empty() {
                body["apiVersion"] = json!("v1");
            }
            Reply::Json(200, body)
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match segments.as_slice() {
            ["api"] => Reply::Json(
                200,
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1:6443"}]}),
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
                        json!({"name": name, "versions": versions, "preferredVersion": versions[0]})
                    })
                    .collect();
                Reply::Json(
                    200,
                    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
                )
            }
            ["apis", group] => {
                let versions: Vec<Value> = served
                    .iter()
                    .filter(|s| s.group == *group)
                    .map(|s| json!({"groupVersion": s.api_version(), "version": s.version}))
                    .collect();
                Reply::Json(
                    200,
                    json!({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": versions, "preferredVersion": versions.first()}),
                )
            }
            ["apis", group, version] => resources(group, version),
            _ => Reply::NotServed,
        }
    }

    fn not_found(&self, served: &Served, name: &str) -> Reply {
        object_error(
            404,
            "NotFound",
            served,
            name,
            format!("{} not found", served.named(name)),
        )
    }

    fn conflict(&self, served: &Served, name: &str) -> Reply {
        object_error(
            409,
            "Conflict",
            served,
            name,
            format!(
                "Operation cannot be fulfilled on {}: the object has been modified; please apply your changes to the latest version and try again",
                served.named(name)
            ),
        )
    }

    fn namespace_object(&self, name: &str) -> Option<&Value> {
        self.objects.get(&Key {
            collection: NAMESPACES.to_owned(),
            namespace: None,
            name: name.to_owned(),
        })
    }

    /// Whether an object may be created in `key`'s namespace: it must exist, and not be
    /// terminating.
    fn may_create_in(&self, served: &Served, key: &Key) -> Option<Reply> {
        let namespace = key.namespace.as_ref()?;
        let Some(object) = self.namespace_object(namespace) else {
            let mut body = status_body(
                404,
                "NotFound",
                &format!("namespaces \"{namespace}\" not found"),
            );
            body["details"] = json!({"name": namespace, "kind": "namespaces"});
            return Some(Reply::Json(404, body));
        };
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            let mut body = status_body(
                403,
                "Forbidden",
                &format!(
                    "{} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    served.named(&key.name)
                ),
            );
            body["details"] = json!({"name": key.name, "kind": served.plural, "causes": [{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {namespace} is being terminated"),
                "field": "metadata.namespace"}]});
            if !served.group.is_empty() {
                body["details"]["group"] = json!(served.group);
            }
            return Some(Reply::Json(403, body));
        }
        None
    }

    fn bump(&mut self) -> u64 {
        self.revision += 1;
        self.revision
    }

    /// Tells the watches of `key`'s collection; `before` is the object before a change (a
    /// label change can take it into or out of a watch's selector).
    fn notify(&mut self, key: &Key, kind: &'static str, object: &Value, before: Option<&Value>) {
        self.changes.push((
            self.revision,
            key.clone(),
            kind,
            object.clone(),
            before.cloned(),
        ));
        let labels = |o: &Value| {
            o.pointer("/metadata/labels")
                .cloned()
                .unwrap_or(Value::Null)
        };
        self.watchers.retain(|w| {
            if w.collection != key.collection
                || (w.namespace.is_some() && w.namespace != key.namespace)
                || w.name.as_ref().is_some_and(|n| *n != key.name)
            {
                return !w.sender.is_closed();
            }
            let line = match &w.labels {
                None => Some(watch_line(kind, object)),
                Some(selector) => {
                    let now_in = selector.matches(&labels(object));
                    let was_in = before.is_some_and(|b| selector.matches(&labels(b)));
                    match (kind, was_in, now_in) {
                        ("DELETED", _, true) => Some(watch_line("DELETED", object)),
                        ("DELETED", _, false) => None,
                        (_, false, true) => Some(watch_line("ADDED", object)),
                        (_, true, true) => Some(watch_line(kind, object)),
                        (_, true, false) => before.map(|b| watch_line("DELETED", b)),
                        (_, false, false) => None,
                    }
                }
            };
            match line {
                Some(line) => w.sender.send(line).is_ok(),
                None => !w.sender.is_closed(),
            }
        });
    }

    /// Fills in what the server keeps: identity, resourceVersion, generation.
    fn stamp(&mut self, served: &Served, key: &Key, object: &mut Value, previous: Option<&Value>) {
        object["apiVersion"] = json!(served.api_version());
        object["kind"] = json!(served.kind);
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
                for field in ["uid", "creationTimestamp", "deletionTimestamp"] {
                    match previous["metadata"].get(field) {
                        Some(value) => metadata[field] = value.clone(),
                        None => {
                            if let Some(m) = metadata.as_object_mut() {
                                m.remove(field);
                            }
                        }
                    }
                }
                if served.has_generation() {
                    let content = |o: &Value| {
                        let mut o = strip_volatile(o);
                        if let Some(o) = o.as_object_mut() {
                            o.remove("metadata");
                            o.remove("status");
                        }
                        o
                    };
                    let generation = previous["metadata"]["generation"].as_i64().unwrap_or(1);
                    object["metadata"]["generation"] =
                        json!(if content(previous) != content(object) {
                            generation + 1
                        } else {
                            generation
                        });
                }
            }
            None => {
                self.uid += 1;
                metadata["uid"] = json!(uuid(self.uid));
                metadata["creationTimestamp"] = json!(now());
                if served.has_generation() {
                    object["metadata"]["generation"] = json!(1);
                }
            }
        }
    }

    fn invalid(
        &self,
        served: &Served,
        object: &Value,
        previous: Option<&Value>,
        name: &str,
    ) -> Option<Reply> {
        let causes = validate::causes(&served.group, &served.kind, object, previous);
        (!causes.is_empty()).then(|| {
            Reply::Json(
                422,
                validate::status(&served.group, &served.kind, name, &causes),
            )
        })
    }

    /// Stores a changed object (or does nothing, for a write that changes nothing).
    fn commit(
        &mut self,
        served: &Served,
        key: Key,
        mut object: Value,
        entries: Vec<Entry>,
        current: &Value,
        dry_run: bool,
    ) -> Reply {
        let unchanged = strip_volatile(current) == strip_volatile(&object)
            && sans_time(&fields::decode(current)) == sans_time(&entries);
        if unchanged {
            // The API server does not bump the resourceVersion of a no-op write.
            return Reply::Json(200, current.clone());
        }
        if let Some(reply) = self.invalid(served, &object, Some(current), &key.name) {
            return reply;
        }
        if dry_run {
            return Reply::Json(200, object);
        }
        self.stamp(served, &key, &mut object, Some(current));
        fields::store(&mut object, &entries);
        self.objects.insert(key.clone(), object.clone());
        self.notify(&key, "MODIFIED", &object, Some(current));
        Reply::Json(200, object)
    }

    /// What an update (not an apply) by `manager` owns: the fields it changed (and the maps
    /// and items it created), taken from every other manager; fields it removed are owned
    /// by nobody.
    fn update_entries(
        mut entries: Vec<Entry>,
        manager: &str,
        sub: Option<&str>,
        before: &Value,
        after: &Value,
        served: &Served,
    ) -> Vec<Entry> {
        let (mut old, mut new) = (FieldSet::new(), FieldSet::new());
        let writer = Writer::Update {
            typed: served.typed(),
        };
        fields::fields_of(before, &Vec::new(), writer, &mut old);
        fields::fields_of(after, &Vec::new(), writer, &mut new);
        let changed: FieldSet = new
            .iter()
            .filter(|path| {
                !old.contains(*path)
                    || (path.last().is_none_or(|l| l != ".")
                        && fields::get(before, path) != fields::get(after, path))
            })
            .cloned()
            .collect();
        let removed: FieldSet = old.difference(&new).cloned().collect();
        for entry in &mut entries {
            entry
                .fields
                .retain(|path| !changed.contains(path) && !removed.contains(path));
        }
        if !changed.is_empty() {
            let sub = sub.map(str::to_owned);
            match entries
                .iter_mut()
                .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == sub)
            {
                Some(entry) => {
                    entry.fields.extend(changed);
                    entry.time = now();
                }
                None => entries.push(Entry {
                    manager: manager.to_owned(),
                    operation: "Update".to_owned(),
                    subresource: sub,
                    api_version: served.api_version(),
                    time: now(),
                    fields: changed,
                }),
            }
        }
        entries.retain(|e| !e.fields.is_empty());
        entries
    }

    fn create(&mut self, call: Call<'_>) -> Reply {
        let Call {
            served,
            mut key,
            request,
            ..
        } = call;
        let served = &served;
        let mut object = request.body.clone();
        if !object.is_object() {
            return error(
                400,
                "BadRequest",
                "the body of the request was in an unknown format",
            );
        }
        if let (Some(ns), Some(sent)) = (
            &key.namespace,
            object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str),
        ) && sent != ns
        {
            return error(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            );
        }
        key.name = match (
            object.pointer("/metadata/name").and_then(Value::as_str),
            object
                .pointer("/metadata/generateName")
                .and_then(Value::as_str),
        ) {
            (Some(name), _) if !name.is_empty() => name.to_owned(),
            (_, Some(prefix)) => format!("{prefix}{:05x}", self.revision + 1),
            _ => {
                let cause = validate::required(
                    "metadata.name".to_owned(),
                    "name or generateName is required",
                );
                return Reply::Json(
                    422,
                    validate::status(&served.group, &served.kind, "", &[cause]),
                );
            }
        };
        if let Some(refused) = self.may_create_in(served, &key) {
            return refused;
        }
        if self.objects.contains_key(&key) {
            return object_error(
                409,
                "AlreadyExists",
                served,
                &key.name,
                format!("{} already exists", served.named(&key.name)),
            );
        }
        if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            for volatile in [
                "resourceVersion",
                "managedFields",
                "uid",
                "creationTimestamp",
            ] {
                metadata.remove(volatile);
            }
        }
        if served.status
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        // Defaults set before ownership is worked out are owned by the creator; those set
        // after (a Namespace's finalizer and phase, an Event's deprecated fields) by nobody.
        if served.kind == "Secret" {
            string_data(&mut object);
            if object.get("type").is_none() {
                object["type"] = json!("Opaque");
            }
        }
        if served.kind == "Namespace" {
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(key.name);
        }
        let entries = Store::update_entries(
            Vec::new(),
            &request.manager(),
            None,
            &json!({}),
            &object,
            served,
        );
        if served.kind == "Namespace" {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        if served.kind == "Event" {
            for (field, default) in [
                ("deprecatedSource", json!({})),
                ("deprecatedFirstTimestamp", Value::Null),
                ("deprecatedLastTimestamp", Value::Null),
            ] {
                if object.get(field).is_none() {
                    object[field] = default;
                }
            }
        }
        self.insert_new(served, key, object, entries, request.dry_run())
    }

    /// Stores a new object (validated first), owned as `entries` say: 201.
    fn insert_new(
        &mut self,
        served: &Served,
        key: Key,
        mut object: Value,
        entries: Vec<Entry>,
        dry_run: bool,
    ) -> Reply {
        if let Some(reply) = self.invalid(served, &object, None, &key.name) {
            return reply;
        }
        if dry_run {
            return Reply::Json(201, object);
        }
        self.stamp(served, &key, &mut object, None);
        fields::store(&mut object, &entries);
        self.objects.insert(key.clone(), object.clone());
        self.notify(&key, "ADDED", &object, None);
        Reply::Json(201, object)
    }

    /// Stores what an update (PUT or a patch) made of `current`: ownership from
    /// `managedFields` as the client sent them when it changed them, else as they were.
    fn finish_update(
        &mut self,
        call: Call<'_>,
        (current, mut object): (&Value, Value),
        sent_fields: Option<&Value>,
    ) -> Reply {
        let (served, key, sub, request) = call.parts();
        keep_identity(&mut object, current);
        let base = match sent_fields {
            Some(given) if Some(given) != current.pointer("/metadata/managedFields") => {
                fields::decode(&json!({"metadata": {"managedFields": given}}))
            }
            _ => fields::decode(current),
        };
        let entries =
            Store::update_entries(base, &request.manager(), sub, current, &object, served);
        self.commit(
            served,
            key.clone(),
            object,
            entries,
            current,
            request.dry_run(),
        )
    }

    fn replace(&mut self, call: Call<'_>) -> Reply {
        let (served, key, sub, request) =
            (&call.served, &call.key, call.sub.as_deref(), call.request);
        let Some(current) = self.objects.get(key).cloned() else {
            return self.not_found(served, &key.name);
        };
        let sent = request.body.clone();
        if sent
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != key.name)
        {
            return error(
                400,
                "BadRequest",
                format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    sent["metadata"]["name"].as_str().unwrap_or_default(),
                    key.name
                ),
            );
        }
        if stale(&sent, &current) {
            return self.conflict(served, &key.name);
        }
        let mut object = only_subresource(served, sub, &current, sent.clone());
        if served.kind == "Secret" {
            string_data(&mut object);
        }
        let sent_fields = sent.pointer("/metadata/managedFields");
        self.finish_update(call, (&current, object), sent_fields)
    }

    fn patch(&mut self, call: Call<'_>) -> Reply {
        let (served, key, sub, request) =
            (&call.served, &call.key, call.sub.as_deref(), call.request);
        let content_type = request
            .content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim();
        let force = request.query.get("force").is_some_and(|f| f == "true");
        if content_type == "application/apply-patch+yaml" {
            return self.apply(call, force);
        }
        if !matches!(
            content_type,
            "application/merge-patch+json"
                | "application/json-patch+json"
                | "application/strategic-merge-patch+json"
        ) {
            let mut body = status_body(415, "UnsupportedMediaType", "415: Unsupported Media Type");
            body["details"] = json!({});
            return Reply::Json(415, body);
        }
        if force {
            return patch_options_invalid(validate::Cause {
                reason: "FieldValueForbidden",
                message: "Forbidden: may not be specified for non-apply patch".to_owned(),
                field: "force".to_owned(),
            });
        }
        let Some(current) = self.objects.get(key).cloned() else {
            return self.not_found(served, &key.name);
        };
        let mut object = current.clone();
        match content_type {
            "application/json-patch+json" => {
                if patch::json_patch(&mut object, &request.body).is_err() {
                    let mut body = status_body(
                        422,
                        "Invalid",
                        "the server rejected our request due to an error in our request",
                    );
                    body["details"] = json!({});
                    return Reply::Json(422, body);
                }
            }
            "application/strategic-merge-patch+json" => {
                if stale(&request.body, &current) {
                    return self.conflict(served, &key.name);
                }
                patch::strategic(&mut object, &request.body);
            }
            _ => {
                if stale(&request.body, &current) {
                    return self.conflict(served, &key.name);
                }
                patch::merge(&mut object, &request.body);
            }
        }
        let sent_fields = object.pointer("/metadata/managedFields").cloned();
        let object = only_subresource(served, sub, &current, object);
        self.finish_update(call, (&current, object), sent_fields.as_ref())
    }

    fn apply(&mut self, call: Call<'_>, force: bool) -> Reply {
        let (served, key, sub, request) = call.parts();
        let Some(manager) = request.query.get("fieldManager").cloned() else {
            return patch_options_invalid(validate::required(
                "fieldManager".to_owned(),
                "is required for apply patch",
            ));
        };
        let mut applied = request.body.clone();
        if !applied.is_object() {
            return error(
                400,
                "BadRequest",
                "the body of the request was in an unknown format",
            );
        }
        let kind = applied
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let api_version = applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if kind != served.kind || api_version != served.api_version() {
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            return error(
                400,
                "BadRequest",
                format!("invalid object type: {group}/{version}, Kind={kind}"),
            );
        }
        // What this apply is about: the status alone, or all but the status.
        if sub == Some("status") {
            let status = applied.get("status").cloned();
            let metadata = applied.get("metadata").cloned();
            applied = json!({"apiVersion": api_version, "kind": kind});
            if let Some(metadata) = metadata {
                applied["metadata"] = metadata;
            }
            if let Some(status) = status {
                applied["status"] = status;
            }
        } else if served.status
            && let Some(map) = applied.as_object_mut()
        {
            map.remove("status");
        }
        let mut applied_fields = FieldSet::new();
        fields::fields_of(&applied, &Vec::new(), Writer::Apply, &mut applied_fields);
        let sub_owned = sub.map(str::to_owned);

        let Some(current) = self.objects.get(key).cloned() else {
            if sub.is_some() {
                return self.not_found(served, &key.name);
            }
            if applied
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none()
            {
                return error(
                    400,
                    "BadRequest",
                    format!(
                        "the name of the object ({} based on URL) was undeterminable: name must be provided",
                        key.name
                    ),
                );
            }
            if let Some(refused) = self.may_create_in(served, key) {
                return refused;
            }
            let mut object = applied.clone();
            if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                metadata.remove("resourceVersion");
            }
            let entries = vec![Entry {
                manager,
                operation: "Apply".to_owned(),
                subresource: None,
                api_version: served.api_version(),
                time: now(),
                fields: applied_fields,
            }];
            return self.insert_new(served, key.clone(), object, entries, request.dry_run());
        };
        if stale(&applied, &current) {
            return self.conflict(served, &key.name);
        }
        let mut entries = fields::decode(&current);
        // Conflicts: a field another manager owns, set here to another value. A field set to
        // the value it has is shared, forced or not.
        let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut conflicting = FieldSet::new();
        for path in applied_fields
            .iter()
            .filter(|p| p.last().is_none_or(|l| l != "."))
        {
            let Some(have) = fields::get(&current, path) else {
                continue;
            };
            if fields::get(&applied, path) == Some(have) {
                continue;
            }
            for entry in entries
                .iter()
                .filter(|e| e.manager != manager && e.fields.contains(path))
            {
                conflicts
                    .entry(entry.conflict_name())
                    .or_default()
                    .push(fields::dotted(path));
                conflicting.insert(path.clone());
            }
        }
        if !conflicts.is_empty() && !force {
            return apply_conflict(&conflicts);
        }
        for entry in entries.iter_mut().filter(|e| e.manager != manager) {
            entry.fields.retain(|p| !conflicting.contains(p));
        }
        let mut object = current.clone();
        patch::apply(&mut object, &applied);
        // What this manager applied before and no longer does goes, unless another owns it.
        let previous = entries.iter().position(|e| {
            e.manager == manager && e.operation == "Apply" && e.subresource == sub_owned
        });
        let before: FieldSet = previous
            .map(|i| entries[i].fields.clone())
            .unwrap_or_default();
        match previous {
            Some(i) => {
                entries[i].fields = applied_fields.clone();
                entries[i].time = now();
            }
            None => entries.push(Entry {
                manager: manager.clone(),
                operation: "Apply".to_owned(),
                subresource: sub_owned,
                api_version: served.api_version(),
                time: now(),
                fields: applied_fields.clone(),
            }),
        }
        let mut dropped: Vec<&Vec<String>> = before.difference(&applied_fields).collect();
        // Items before their fields: a removed item takes its fields with it.
        dropped.sort_by_key(|p| p.len());
        for path in dropped {
            let owned = entries.iter().any(|e| e.fields.contains(path));
            if owned {
                continue;
            }
            let is_item = path.len() >= 2
                && path[path.len() - 1] == "."
                && path[path.len() - 2].starts_with("k:");
            if is_item {
                if fields::remove(&mut object, path) {
                    let item = &path[..path.len() - 1];
                    for entry in &mut entries {
                        entry.fields.retain(|p| !fields::under(p, item));
                    }
                }
            } else if path.last().is_none_or(|l| l != ".") && fields::remove(&mut object, path) {
                // A map left empty goes too, unless a manager owns the map itself.
                let mut parent = path.clone();
                while parent.pop().is_some() && parent.last().is_some_and(|s| s.starts_with("f:")) {
                    let mut marker = parent.clone();
                    marker.push(".".to_owned());
                    let empty = fields::get(&object, &parent)
                        .is_some_and(|v| v.as_object().is_some_and(serde_json::Map::is_empty));
                    if !empty || entries.iter().any(|e| e.fields.contains(&marker)) {
                        break;
                    }
                    fields::remove(&mut object, &parent);
                }
            }
        }
        entries.retain(|e| !e.fields.is_empty());
        self.commit(
            served,
            key.clone(),
            object,
            entries,
            &current,
            request.dry_run(),
        )
    }

    fn delete(&mut self, call: Call<'_>) -> Reply {
        let Call {
            served,
            key,
            request,
            ..
        } = call;
        let served = &served;
        let Some(current) = self.objects.get(&key).cloned() else {
            return self.not_found(served, &key.name);
        };
        if let Some(rv) = request
            .body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && current
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                != Some(rv)
        {
            // Worded by kind, not resource, and so are its details.
            let message = format!(
                "Operation cannot be fulfilled on {} \"{}\": the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                served.kind,
                key.name,
                current["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or_default()
            );
            let mut body = status_body(409, "Conflict", &message);
            body["details"] = json!({"name": key.name, "kind": served.kind});
            return Reply::Json(409, body);
        }
        if served.kind == "Namespace" {
            // No controller here finishes it: it stays terminating.
            let mut object = current.clone();
            object["metadata"]["deletionTimestamp"] = json!(now());
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Terminating"});
            self.bump();
            object["metadata"]["resourceVersion"] = json!(self.revision.to_string());
            self.objects.insert(key.clone(), object.clone());
            self.notify(&key, "MODIFIED", &object, Some(&current));
            return Reply::Json(200, object);
        }
        self.objects.remove(&key);
        self.bump();
        self.notify(&key, "DELETED", &current, Some(&current));
        let mut details =
            json!({"name": key.name, "kind": served.plural, "uid": current["metadata"]["uid"]});
        if !served.group.is_empty() {
            details["group"] = json!(served.group);
        }
        Reply::Json(
            200,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}),
        )
    }

    fn list(&self, served: &Served, key: &Key, query: &BTreeMap<String, String>) -> Reply {
        let labels = match query
            .get("labelSelector")
            .map(|s| LabelSelector::parse(s))
            .transpose()
        {
            Ok(labels) => labels,
            Err(message) => return error(400, "BadRequest", message),
        };
        let fields = match query
            .get("fieldSelector")
            .map(|s| select::field_terms(s))
            .transpose()
        {
            Ok(fields) => fields.unwrap_or_default(),
            Err(message) => return error(400, "BadRequest", message),
        };
        // A list at an exact resourceVersion is read from history, which compaction drops.
        if query
            .get("resourceVersionMatch")
            .is_some_and(|m| m == "Exact")
            && let Some(since) = query
                .get("resourceVersion")
                .and_then(|rv| rv.parse::<u64>().ok())
            && since < self.compacted
        {
            return error(
                410,
                "Expired",
                "The resourceVersion for the provided list is too old.",
            );
        }
        // Keys sort by collection first: only this collection's objects are visited.
        let first = Key {
            collection: key.collection.clone(),
            namespace: None,
            name: String::new(),
        };
        let items: Vec<&Value> = self
            .objects
            .range(first..)
            .take_while(|(k, _)| k.collection == key.collection)
            .filter(|(k, object)| {
                (key.namespace.is_none() || k.namespace == key.namespace)
                    && select::fields_match(&fields, object)
                    && labels.as_ref().is_none_or(|l| {
                        l.matches(object.pointer("/metadata/labels").unwrap_or(&Value::Null))
                    })
            })
            .map(|(_, object)| object)
            .collect();
        let start = match query.get("continue") {
            None => 0,
            Some(token) => match token
                .strip_prefix("fake-continue-")
                .and_then(|n| n.parse::<usize>().ok())
            {
                Some(start) => start,
                None => {
                    return error(
                        400,
                        "BadRequest",
                        "invalid continue token: continue key is not valid: invalid character looking for beginning of value",
                    );
                }
            },
        };
        let rest = items.len().saturating_sub(start);
        // resourceVersion=0 is served from the watch cache, whole: the limit does not apply.
        let limit = query
            .get("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0 && query.get("resourceVersion").is_none_or(|rv| rv != "0"))
            .unwrap_or(usize::MAX);
        // Only the page is copied.
        let mut page: Vec<Value> = items
            .iter()
            .skip(start)
            .take(limit)
            .map(|o| (*o).clone())
            .collect();
        let mut metadata = json!({"resourceVersion": self.revision.to_string()});
        if rest > limit {
            let remaining = rest - limit;
            metadata["continue"] = json!(format!("fake-continue-{}", start + limit));
            if labels.is_none() {
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
        // Built-in kinds' items come without kind and apiVersion; custom resources' with.
        if !served.is_custom() {
            for item in &mut page {
                if let Some(map) = item.as_object_mut() {
                    map.remove("kind");
                    map.remove("apiVersion");
                }
            }
        }
        Reply::Json(
            200,
            json!({"apiVersion": served.api_version(), "kind": format!("{}List", served.kind), "metadata": metadata, "items": page}),
        )
    }

    fn watch(&mut self, key: Key, query: &BTreeMap<String, String>) -> Reply {
        let (sender, receiver) = mpsc::unbounded_channel();
        let name = query
            .get("fieldSelector")
            .and_then(|s| s.split(',').find_map(|t| t.strip_prefix("metadata.name=")))
            .map(str::to_owned);
        let labels = query
            .get("labelSelector")
            .and_then(|s| LabelSelector::parse(s).ok());
        let matches = |k: &Key, object: &Value| {
            k.collection == key.collection
                && (key.namespace.is_none() || k.namespace == key.namespace)
                && name.as_ref().is_none_or(|n| *n == k.name)
                && labels.as_ref().is_none_or(|l| {
                    l.matches(object.pointer("/metadata/labels").unwrap_or(&Value::Null))
                })
        };
        match query.get("resourceVersion").map(String::as_str) {
            None | Some("") | Some("0") => {
                for (k, object) in &self.objects {
                    if matches(k, object) {
                        let _ = sender.send(watch_line("ADDED", object));
                    }
                }
            }
            Some(rv) => {
                let since: u64 = rv.parse().unwrap_or(0);
                if since < self.compacted {
                    let status = status_body(
                        410,
                        "Expired",
                        &format!("too old resource version: {since} ({})", self.compacted),
                    );
                    let _ = sender.send(watch_line("ERROR", &status));
                    return Reply::Watch(receiver);
                }
                for (at, k, kind, object, _) in &self.changes {
                    if *at > since && matches(k, object) {
                        let _ = sender.send(watch_line(kind, object));
                    }
                }
            }
        }
        self.watchers.push(Watcher {
            collection: key.collection,
            namespace: key.namespace,
            name,
            labels,
            sender,
        });
        Reply::Watch(receiver)
    }

    fn handle(&mut self, request: &Incoming<'_>) -> Reply {
        if self.down {
            return Reply::Refused;
        }
        if let Some(index) = self
            .faults
            .iter()
            .position(|f| f.method == *request.method && request.path.contains(&f.path_contains))
        {
            let fault = self.faults.remove(index);
            return error(fault.status, &fault.reason, "injected by the test");
        }
        let Some(route) = self.route(request.path) else {
            return Reply::NotServed;
        };
        let (served, key, sub) = match route {
            Route::Discovery if *request.method == Method::GET => {
                return self.discovery(request.path);
            }
            Route::Discovery => {
                return error(
                    405,
                    "MethodNotAllowed",
                    "the server does not allow this method on the requested resource",
                );
            }
            Route::Resource { served, key, sub } => (served, key, sub),
        };
        let watch = request
            .query
            .get("watch")
            .is_some_and(|w| w == "true" || w == "1");
        let method = request.method.clone();
        let collection = key.name.is_empty();
        let call = Call {
            served,
            key,
            sub,
            request,
        };
        match (method, collection) {
            (Method::GET, true) if watch => self.watch(call.key, request.query),
            (Method::GET, true) => self.list(&call.served, &call.key, request.query),
            (Method::GET, false) => match self.objects.get(&call.key) {
                Some(object) => Reply::Json(200, object.clone()),
                None => self.not_found(&call.served, &call.key.name),
            },
            (Method::POST, true) => self.create(call),
            (Method::PUT, false) => self.replace(call),
            (Method::PATCH, false) => self.patch(call),
            (Method::DELETE, false) => self.delete(call),
            _ => error(
                405,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
        }
    }
}

/// A patch's options refused (422), as the API server words it: `PatchOptions` has no name.
fn patch_options_invalid(cause: validate::Cause) -> Reply {
    Reply::Json(
        422,
        validate::status("meta.k8s.io", "PatchOptions", "", &[cause]),
    )
}

fn apply_conflict(conflicts: &BTreeMap<String, Vec<String>>) -> Reply {
    let count: usize = conflicts.values().map(Vec::len).sum();
    let plural = if count == 1 { "" } else { "s" };
    let described: Vec<String> = conflicts
        .iter()
        .map(|(manager, fields)| match fields.as_slice() {
            [one] => format!("conflict with {manager}: {one}"),
            many => format!(
                "conflicts with {manager}:\n{}",
                many.iter()
                    .map(|f| format!("- {f}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        })
        .collect();
    let mut causes: Vec<(String, String)> = conflicts
        .iter()
        .flat_map(|(manager, fields)| fields.iter().map(move |f| (f.clone(), manager.clone())))
        .collect();
    causes.sort();
    let mut body = status_body(
        409,
        "Conflict",
        &format!(
            "Apply failed with {count} conflict{plural}: {}",
            described.join("\n")
        ),
    );
    body["details"] = json!({"causes": causes.iter().map(|(field, manager)| json!({
        "reason": "FieldManagerConflict", "message": format!("conflict with {manager}"), "field": field})).collect::<Vec<_>>()});
    Reply::Json(409, body)
}

/// Whether `sent` names a resourceVersion other than the current one (a stale write).
fn stale(sent: &Value, current: &Value) -> bool {
    let rv = |v: &Value| {
        v.pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .filter(|rv| !rv.is_empty())
            .map(str::to_owned)
    };
    rv(sent).is_some_and(|sent| Some(sent) != rv(current))
}

/// What a write to `sub` makes of `current`, given the object it sent (or patched into):
/// `/status` changes the status alone, and the main resource of a kind with a status
/// subresource never changes its status.
fn only_subresource(served: &Served, sub: Option<&str>, current: &Value, sent: Value) -> Value {
    if !served.status && sub.is_none() {
        return sent;
    }
    let (mut object, status_from) = if sub == Some("status") {
        (current.clone(), &sent)
    } else {
        (sent.clone(), current)
    };
    match status_from.get("status") {
        Some(status) => object["status"] = status.clone(),
        None => {
            if let Some(map) = object.as_object_mut() {
                map.remove("status");
            }
        }
    }
    object
}

/// What a write cannot change: identity and creation.
fn keep_identity(object: &mut Value, current: &Value) {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object["metadata"] = json!({});
    }
    for field in ["uid", "creationTimestamp"] {
        if let Some(value) = current["metadata"].get(field) {
            object["metadata"][field] = value.clone();
        }
    }
}

/// A Secret's `stringData` is stored as `data`.
fn string_data(object: &mut Value) {
    let Some(strings) = object.as_object_mut().and_then(|o| o.remove("stringData")) else {
        return;
    };
    for (key, value) in strings.as_object().into_iter().flatten() {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(value.as_str().unwrap_or_default());
        object["data"][key] = json!(encoded);
    }
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
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

type ResponseBody = UnsyncBoxBody<Bytes, std::convert::Infallible>;

/// The connection refused during an outage.
#[derive(Debug)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection refused (the fake API server is down)")
    }
}

impl std::error::Error for Refused {}

fn respond(reply: Reply) -> Result<Response<ResponseBody>, Refused> {
    let response = match reply {
        Reply::Refused => return Err(Refused),
        Reply::Json(status, body) => Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())).boxed_unsync()),
        Reply::NotServed => Response::builder()
            .status(404)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from_static(b"404 page not found\n")).boxed_unsync()),
        Reply::Watch(receiver) => {
            let stream = futures::stream::unfold(receiver, |mut receiver| async move {
                receiver.recv().await.map(|line| {
                    (
                        Ok::<_, std::convert::Infallible>(Frame::data(line)),
                        receiver,
                    )
                })
            });
            Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .body(StreamBody::new(stream).boxed_unsync())
        }
    };
    Ok(response.unwrap_or_default())
}

#[derive(Clone, Default)]
pub struct FakeApi {
    store: Arc<Mutex<Store>>,
}

/// The fake served over plain HTTP, for a process to reach (the binary under test).
pub struct FakeHttp {
    pub addr: SocketAddr,
    /// A kubeconfig whose current context is this server, namespace `default`.
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

/// A request header's value, or empty.
pub fn header(parts: &http::request::Parts, name: &str) -> String {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// A request's body: JSON, or YAML (kube sends apply patches as JSON, which is YAML, and
/// kubectl sends YAML).
pub fn body_of(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or_else(|_| yaml_body(bytes))
    }
}

/// The events of a watch opened with [`FakeApi::open_watch`].
pub struct WatchFeed(mpsc::UnboundedReceiver<Bytes>);

impl WatchFeed {
    /// The events sent since the last call.
    pub fn events(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        while let Ok(line) = self.0.try_recv() {
            events.push(serde_json::from_slice(&line).unwrap_or(Value::Null));
        }
        events
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeApi {
    /// An API server with the built-in kinds, the project's CRDs and OpenReports installed,
    /// and the namespace `default`.
    pub fn new() -> FakeApi {
        let api = FakeApi::default();
        api.ensure_namespace("default");
        api
    }

    /// The CLI audit's census of this cluster, with the default configuration.
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
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            api.clone().serve(request)
        });
        kube::Client::new(service, namespace)
    }

    /// Serves this API over plain HTTP on a loopback port, with a kubeconfig for it.
    pub async fn serve_http(&self) -> FakeHttp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |request: Request<hyper::body::Incoming>| api.clone().serve(request),
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{addr}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: fake-token\n"
            ),
        )
        .unwrap();
        FakeHttp {
            addr,
            kubeconfig,
            _dir: dir,
            task,
        }
    }

    /// One request, from a client in this process or over HTTP: after the network's time
    /// ([`FakeApi::set_latency`]), answered.
    async fn serve<B: hyper::body::Body>(
        self,
        request: Request<B>,
    ) -> Result<Response<ResponseBody>, Refused> {
        let (parts, body) = request.into_parts();
        let bytes = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let delay = self.draw_latency();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        self.answer(&parts, &bytes)
    }

    fn answer(
        &self,
        parts: &http::request::Parts,
        bytes: &[u8],
    ) -> Result<Response<ResponseBody>, Refused> {
        let content_type = header(parts, "content-type");
        let user_agent = header(parts, "user-agent");
        let body = body_of(bytes);
        let path = parts.uri.path().to_owned();
        let query = parse_query(parts.uri.query());
        let mut store = self.store.lock().unwrap();
        let request = Incoming {
            method: &parts.method,
            path: &path,
            query: &query,
            content_type: &content_type,
            user_agent: &user_agent,
            body: body.clone(),
        };
        let reply = store.handle(&request);
        let status = match &reply {
            Reply::Json(status, _) => *status,
            Reply::NotServed => 404,
            Reply::Watch(_) => 200,
            Reply::Refused => 0,
        };
        store.requests.push(Recorded {
            method: parts.method.clone(),
            path,
            query,
            content_type,
            user_agent,
            body,
            status,
        });
        drop(store);
        respond(reply)
    }

    /// One request, as a client sends it, answered as it would be: the status and body
    /// (`Value::String` for a plain-text one), or the watch events sent at once. For the
    /// replay of recorded exchanges.
    pub fn exchange(
        &self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        content_type: &str,
        user_agent: &str,
        body: &Value,
    ) -> (u16, Value) {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut store = self.store.lock().unwrap();
        let request = Incoming {
            method: &method,
            path,
            query,
            content_type,
            user_agent,
            body: body.clone(),
        };
        match store.handle(&request) {
            Reply::Json(status, body) => (status, body),
            Reply::NotServed => (404, json!("404 page not found\n")),
            Reply::Refused => (0, Value::Null),
            Reply::Watch(receiver) => (200, Value::Array(WatchFeed(receiver).events())),
        }
    }

    /// A watch opened as a client opens it (`GET ...?watch=1`), whose events are read when
    /// the caller asks: for the replay of watches during which objects changed.
    pub fn open_watch(&self, path: &str, query: &BTreeMap<String, String>) -> WatchFeed {
        let mut store = self.store.lock().unwrap();
        let request = Incoming {
            method: &Method::GET,
            path,
            query,
            content_type: "",
            user_agent: "",
            body: Value::Null,
        };
        match store.handle(&request) {
            Reply::Watch(receiver) => WatchFeed(receiver),
            _ => panic!("{path} with {query:?} is not a watch"),
        }
    }

    // What tests do, as kubectl would.

    fn key(collection: &str, namespace: Option<&str>, name: &str) -> Key {
        Key {
            collection: collection.to_owned(),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// A request as `kubectl` makes it, at `target` (collection, namespace, name).
    fn request(
        &self,
        method: Method,
        (collection, namespace, name): (&str, Option<&str>, &str),
        query: &[(&str, &str)],
        content_type: &str,
        body: Value,
    ) -> (u16, Value) {
        let path = match namespace {
            Some(ns) => {
                let (prefix, plural) = collection.rsplit_once('/').unwrap_or(("", collection));
                format!("/{prefix}/namespaces/{ns}/{plural}/{name}")
            }
            None => format!("/{collection}/{name}"),
        };
        let path = path.trim_end_matches('/').to_owned();
        let query: BTreeMap<String, String> = query
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.exchange(
            method.as_str(),
            &path,
            &query,
            content_type,
            "kubectl/v1.36.0",
            &body,
        )
    }

    /// `kubectl create namespace`, unless it exists.
    pub fn ensure_namespace(&self, name: &str) {
        if self.get(NAMESPACES, None, name).is_none() {
            self.create(
                NAMESPACES,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            );
        }
    }

    /// Creates an object in `collection` (namespaced when `namespace` is given, which is
    /// created first when missing), as `kubectl create` does.
    pub fn create(&self, collection: &str, namespace: Option<&str>, object: Value) -> Value {
        if let Some(ns) = namespace {
            self.ensure_namespace(ns);
        }
        let (status, created) = self.request(
            Method::POST,
            (collection, namespace, ""),
            &[("fieldManager", "kubectl-create")],
            "application/json",
            object,
        );
        assert_eq!(status, 201, "create: {created}");
        created
    }

    /// `kubectl replace -f`: stores exactly `object` (no resourceVersion: unconditional).
    pub fn replace(&self, collection: &str, namespace: Option<&str>, mut object: Value) -> Value {
        let name = name_of(&object);
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
        let (status, replaced) = self.request(
            Method::PUT,
            (collection, namespace, &name),
            &[("fieldManager", "kubectl-replace")],
            "application/json",
            object,
        );
        assert_eq!(status, 200, "replace: {replaced}");
        replaced
    }

    /// Server-side apply by `manager` (`kubectl apply --server-side`, Helm 4, Argo CD):
    /// the status and body the API server answers.
    pub fn apply(
        &self,
        collection: &str,
        namespace: Option<&str>,
        object: Value,
        manager: &str,
        force: bool,
    ) -> (u16, Value) {
        if let Some(ns) = namespace {
            self.ensure_namespace(ns);
        }
        let name = name_of(&object);
        let mut query = vec![("fieldManager", manager)];
        if force {
            query.push(("force", "true"));
        }
        self.request(
            Method::PATCH,
            (collection, namespace, &name),
            &query,
            "application/apply-patch+yaml",
            object,
        )
    }

    /// A JSON merge patch by `manager` (Helm 3's client-side three-way merge writes so).
    pub fn merge_patch(
        &self,
        collection: &str,
        namespace: Option<&str>,
        name: &str,
        patch: Value,
        manager: &str,
    ) -> (u16, Value) {
        self.request(
            Method::PATCH,
            (collection, namespace, name),
            &[("fieldManager", manager)],
            "application/merge-patch+json",
            patch,
        )
    }

    /// A merge patch at `path` (an object's, or its `/status`), sent as a client without a
    /// field manager or a User-Agent sends it (the manager is then `unknown`); it must
    /// succeed.
    pub fn merge_patch_at(&self, path: &str, patch: &Value) -> Value {
        let (status, body) = self.exchange(
            "PATCH",
            path,
            &BTreeMap::new(),
            "application/merge-patch+json",
            "",
            patch,
        );
        assert_eq!(status, 200, "merge patch of {path}: {body}");
        body
    }

    pub fn delete(&self, collection: &str, namespace: Option<&str>, name: &str) {
        let (status, object) = self.request(
            Method::DELETE,
            (collection, namespace, name),
            &[],
            "application/json",
            Value::Null,
        );
        assert_eq!(status, 200, "delete: {object}");
    }

    /// Deletes a namespace: it stays Terminating (nothing here finishes it), and refuses new
    /// objects, as a real one does while its objects are removed.
    pub fn terminate_namespace(&self, name: &str) {
        self.delete(NAMESPACES, None, name);
    }

    pub fn get(&self, collection: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        self.store
            .lock()
            .unwrap()
            .objects
            .get(&FakeApi::key(collection, namespace, name))
            .cloned()
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

    /// Makes a resource answer `404 page not found` (its CRD is not installed), or installs
    /// it again.
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
        self.store.lock().unwrap().extra.push(Served {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            status: false,
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

    /// Each request takes up to `latency` before it is answered, as over a network: clients
    /// that start together interleave their requests as they do against a real server.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.store.lock().unwrap().latency = latency;
    }

    fn draw_latency(&self) -> std::time::Duration {
        let mut store = self.store.lock().unwrap();
        if store.latency.is_zero() {
            return std::time::Duration::ZERO;
        }
        store.draws = store
            .draws
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let micros = u64::try_from(store.latency.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        std::time::Duration::from_micros((store.draws >> 33) % micros)
    }

    /// An outage: while down, every request fails to connect and every watch has ended.
    pub fn set_down(&self, down: bool) {
        let mut store = self.store.lock().unwrap();
        store.down = down;
        if down {
            store.watchers.clear();
        }
    }

    /// etcd compaction: a watch from any resourceVersion before now gets `410 Expired`.
    pub fn compact(&self) {
        let mut store = self.store.lock().unwrap();
        store.compacted = store.revision;
        store.changes.clear();
    }

    /// Ends every open watch (the API server restarting, a load balancer's idle timeout).
    pub fn drop_watches(&self) {
        self.store.lock().unwrap().watchers.clear();
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

/// `metadata.name`, or nothing.
fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// An apply body written as YAML (as `kubectl` may send it), read by the engine's loader.
fn yaml_body(bytes: &[u8]) -> Value {
    let engine = asyncapi_guard::engine::Engine::default();
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| engine.load(text).ok())
        .and_then(|stream| {
            stream
                .roots()
                .next()
                .and_then(|root| asyncapi_guard::engine::document::value::to_json(root, 200).ok())
        })
        .unwrap_or(Value::Null)
}
