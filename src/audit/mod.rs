//! The cluster audit: objects created before the webhook, while it was down with
//! `failurePolicy: Ignore`, or ConfigMaps that carry AsyncAPI without the opt-in label, are
//! judged with the same engine and reported where people look.
//!
//! - [`resources`]: the kinds read: ConfigMaps, `AsyncAPI`s, the configured carriers.
//! - [`list`]: the objects, listed page by page (`asyncapi-guard audit`).
//! - [`status`]: what to write for an object (pure).
//! - [`controller`]: the in-cluster audit of `serve --audit`.

pub mod book;
pub mod controller;
pub mod events;
pub mod list;
pub mod reports;
pub mod resources;
pub mod status;
pub mod writes;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Resource;
use kube::api::ApiResource;

use crate::engine::document::json;
use crate::engine::finding::{Finding, Mode};
use crate::kubernetes::extract::{CR_GROUP, CR_KIND, CR_PLURAL, CR_VERSION, ObjectId};
use crate::kubernetes::raw_object::RawObject;
use crate::kubernetes::verdict::{self, Coverage, Judge, Scope, Subject};
use crate::kubernetes::{JudgedDocument, object_limits};
use crate::report::DocumentReport;
use crate::report::admission::{Judged, denial_message};

/// The AsyncAPI custom resource, for dynamic API calls.
pub fn asyncapi_resource() -> ApiResource {
    ApiResource {
        group: CR_GROUP.to_owned(),
        version: CR_VERSION.to_owned(),
        api_version: format!("{CR_GROUP}/{CR_VERSION}"),
        kind: CR_KIND.to_owned(),
        plural: CR_PLURAL.to_owned(),
    }
}

pub fn config_map_resource() -> ApiResource {
    ApiResource::erase::<ConfigMap>(&())
}

/// The labels of the cluster's namespaces: they choose the mode admission applies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamespaceLabels(HashMap<String, BTreeMap<String, String>>);

impl NamespaceLabels {
    const NONE: &BTreeMap<String, String> = &BTreeMap::new();

    /// Records a namespace; says whether its labels changed.
    pub fn insert(&mut self, namespace: &Namespace) -> bool {
        let name = namespace.metadata.name.clone().unwrap_or_default();
        let labels = namespace.metadata.labels.clone().unwrap_or_default();
        self.0.insert(name, labels.clone()) != Some(labels)
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// The labels of `namespace`; none for one not seen (its objects get the default mode).
    pub fn of(&self, namespace: Option<&str>) -> &BTreeMap<String, String> {
        namespace
            .and_then(|ns| self.0.get(ns))
            .unwrap_or(Self::NONE)
    }
}

/// An object of the cluster, judged.
#[derive(Debug, Clone)]
pub struct Audited {
    pub id: ObjectId,
    /// For reports that name the object: `v1`, `asyncapi-guard.io/v1alpha1`.
    pub api_version: String,
    pub uid: String,
    /// Whether admission judges it, and in which mode ([`verdict::coverage`]).
    pub coverage: Coverage,
    pub documents: Vec<JudgedDocument>,
}

impl Audited {
    /// Judges `object` of kind `resource` exactly as admission would in its namespace
    /// (labelled `namespace_labels`), through the one decision admission takes
    /// ([`verdict::judge`]). A ConfigMap admission never sees (unlabelled, where not every
    /// ConfigMap is inspected) is still searched for keys that hold AsyncAPI: those are the
    /// "unguarded" ones.
    pub fn judge(
        judge: &Judge<'_>,
        resource: &ApiResource,
        object: &RawObject,
        namespace_labels: &BTreeMap<String, String>,
    ) -> Audited {
        let meta = object.meta();
        let id = ObjectId {
            group: resource.group.clone(),
            kind: resource.kind.clone(),
            namespace: meta.namespace.clone(),
            name: meta.name.clone().unwrap_or_default(),
        };
        let audited = |coverage, documents| Audited {
            id: id.clone(),
            api_version: resource.api_version.clone(),
            uid: meta.uid.clone().unwrap_or_default(),
            coverage,
            documents,
        };
        let scope = Scope::Labels(namespace_labels);
        // Decided first, so that what is skipped is not even read.
        let coverage = verdict::coverage(judge.config, &id, meta, scope);
        let Some(overrides) = coverage.overrides() else {
            return audited(coverage, Vec::new());
        };
        // Read as the webhook reads the object of a review: the engine's JSON reader, under
        // the limits of a whole object, without positions (nobody wrote this JSON line by
        // line). Its metadata was decoded already, to the fields that are read
        // (`managedFields` stepped over: it is not judged, and it can be large), and is put
        // in the tree only for a carrier whose document is in it (an annotation).
        let text = if judge.config.reads_metadata(&id) {
            object.body_with_metadata().map(Cow::Owned)
        } else {
            Ok(Cow::Borrowed(object.body()))
        };
        let limits = object_limits(judge.engine);
        let read = match &text {
            Ok(text) => json::parse(text, &limits, false).map_err(|e| e.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match read {
            // No memo: the audit re-judges on purpose (a changed configuration).
            Ok(stream) => match stream.roots().next() {
                Some(body) => {
                    let subject = Subject {
                        id: &id,
                        meta,
                        body,
                    };
                    let verdict = verdict::judge(judge, None, subject, scope);
                    audited(verdict.coverage, verdict.documents)
                }
                None => audited(coverage, Vec::new()),
            },
            // Too deep to read: admission would refuse it too.
            Err(error) => audited(
                coverage,
                vec![JudgedDocument {
                    locator: String::new(),
                    label: id.kind.clone(),
                    bytes: 0,
                    memo: None,
                    evaluation: judge.engine.evaluate_unreadable(
                        &format!("the object cannot be read: {error}"),
                        &overrides,
                    ),
                }],
            ),
        }
    }

    /// Admission judges it.
    pub fn guarded(&self) -> bool {
        self.coverage.is_guarded()
    }

    /// The mode admission applies in its namespace; `off` when it is not judged.
    pub fn mode(&self) -> Mode {
        self.coverage.overrides().map_or(Mode::Off, |o| o.mode)
    }

    /// Whether it carries an AsyncAPI document at all.
    pub fn carries_documents(&self) -> bool {
        !self.documents.is_empty()
    }

    /// Compliant when no document has a finding that denies (enforced, and not covered by
    /// an exception).
    pub fn compliant(&self) -> bool {
        self.documents.iter().all(|d| d.evaluation.allowed())
    }

    /// The findings that deny, by document label.
    pub fn violations(&self) -> impl Iterator<Item = (&str, &Finding)> {
        self.findings().filter(|(_, f)| f.denies())
    }

    /// Every finding, by document label.
    pub fn findings(&self) -> impl Iterator<Item = (&str, &Finding)> {
        self.documents.iter().flat_map(|d| {
            d.evaluation
                .findings
                .iter()
                .map(move |f| (d.label.as_str(), f))
        })
    }

    /// The text admission would deny it with.
    pub fn denial(&self) -> Option<String> {
        let judged: Vec<Judged<'_>> = self
            .documents
            .iter()
            .map(|d| Judged {
                label: &d.label,
                evaluation: &d.evaluation,
            })
            .collect();
        denial_message(&self.id, &judged)
    }

    /// One report per document, as `check` prints them: `ConfigMap/payments/orders-api/data/asyncapi.yaml`.
    pub fn reports(&self) -> Vec<DocumentReport> {
        self.documents
            .iter()
            .map(|d| {
                let file = format!("{}/{}", self.id.path(), d.locator);
                DocumentReport {
                    label: file.clone(),
                    artifact: file.clone(),
                    file,
                    embedded_at: None,
                    unguarded: (!self.guarded()).then(|| self.id.clone()),
                    evaluation: d.evaluation.clone(),
                }
            })
            .collect()
    }
}
