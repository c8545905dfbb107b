//! The one decision of who is judged and how. For one object, its namespace (its labels, or
//! the webhook entry the API server chose by them), the configuration, the exceptions and
//! the time, [`judge`] says whether the object is judged at all, in which mode, and which of
//! its findings an exception covers. Admission, the in-cluster audit, `audit` and `check`
//! all call it, and nothing else decides "guarded", "unguarded" or "excepted": so a report
//! never says of an object what admission would not.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use super::exceptions::{ExceptionPolicy, ExceptionSet, InForce};
use super::extract::{self, Content, DocumentLabel, ExtractConfig, ObjectId};
use super::namespaces::Skipped;
use super::{JudgedDocument, json_size, judge_carried};
use crate::engine::document::NodeRef;
use crate::engine::memo::WithMemo;
use crate::engine::{Engine, Overrides};

/// What is known of the object's namespace.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// Its labels: the audit reads them; `check` stands for a namespace with the labels its
    /// flags give.
    Labels(&'a BTreeMap<String, String>),
    /// The webhook entry the API server called (`/validate/<mode>[/production-all]`): the
    /// chart's entries select namespaces by exactly the labels [`Scope::Labels`] reads, so
    /// the entry is the labels' answer, without an API call on the request path.
    Entry(Overrides),
}

/// Whether and how admission judges an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coverage {
    /// Admission judges it, in this mode.
    Guarded(Overrides),
    /// A ConfigMap without the `asyncapi-guard.io/document` label, where the installation
    /// does not inspect every ConfigMap: admission never sees it. The audit and `check`
    /// still search it for AsyncAPI (judged in its namespace's mode) and report it apart.
    Unguarded(Overrides),
    /// Left out on purpose.
    Skipped(Skipped),
}

impl Coverage {
    pub fn is_guarded(self) -> bool {
        matches!(self, Coverage::Guarded(_))
    }

    /// The mode its documents are judged in; `None` when they are not judged.
    pub fn overrides(self) -> Option<Overrides> {
        match self {
            Coverage::Guarded(overrides) | Coverage::Unguarded(overrides) => Some(overrides),
            Coverage::Skipped(_) => None,
        }
    }
}

/// Decides [`Coverage`] from the object's identity and labels and its namespace.
pub fn coverage(
    config: &ExtractConfig,
    id: &ObjectId,
    meta: &ObjectMeta,
    scope: Scope<'_>,
) -> Coverage {
    let namespace = id.namespace.as_deref();
    let overrides = match scope {
        Scope::Labels(labels) => config.namespaces.overrides_for(namespace, labels),
        // The entries leave excluded namespaces out; should a request from one come anyway,
        // the configuration's word stands, as the audit's does.
        Scope::Entry(_) if config.namespaces.is_excluded(namespace) => {
            Err(Skipped::ExcludedNamespace)
        }
        Scope::Entry(overrides) => Ok(overrides),
    };
    let overrides = match overrides {
        Ok(overrides) => overrides,
        Err(skipped) => return Coverage::Skipped(skipped),
    };
    if !id.is_config_map() {
        return Coverage::Guarded(overrides);
    }
    match DocumentLabel::of(meta) {
        DocumentLabel::OptedIn => Coverage::Guarded(overrides),
        DocumentLabel::OptedOut => Coverage::Skipped(Skipped::OptedOut),
        DocumentLabel::Absent if config.inspect_all_config_maps => Coverage::Guarded(overrides),
        DocumentLabel::Absent => Coverage::Unguarded(overrides),
    }
}

/// Everything a verdict depends on besides the object.
#[derive(Debug, Clone, Copy)]
pub struct Judge<'a> {
    pub engine: &'a Engine,
    pub config: &'a ExtractConfig,
    pub exceptions: &'a ExceptionSet,
    pub policy: &'a ExceptionPolicy,
    /// The clock of the one who judges: exceptions expire by it.
    pub now: Timestamp,
}

/// One object, read: `body` is its tree (`data`, `spec`, ...).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'o> {
    pub id: &'o ObjectId,
    pub meta: &'o ObjectMeta,
    pub body: NodeRef<'o>,
}

/// What one object gets.
#[derive(Debug, Clone)]
pub struct ObjectVerdict {
    pub coverage: Coverage,
    /// Its judged documents (none when skipped); findings an exception covers carry their
    /// waiver.
    pub documents: Vec<JudgedDocument>,
}

impl ObjectVerdict {
    /// Whether admission refuses it.
    pub fn denies(&self) -> bool {
        self.coverage.is_guarded() && self.documents.iter().any(|d| !d.evaluation.allowed())
    }
}

/// Judges `subject`: decides its coverage, judges the documents it carries (text through
/// `memo` when there is one), and covers findings with the exceptions in force.
pub fn judge(
    judge: &Judge<'_>,
    memo: Option<WithMemo<'_>>,
    subject: Subject<'_>,
    scope: Scope<'_>,
) -> ObjectVerdict {
    let coverage = coverage(judge.config, subject.id, subject.meta, scope);
    let Some(overrides) = coverage.overrides() else {
        return ObjectVerdict {
            coverage,
            documents: Vec::new(),
        };
    };
    let mut documents = judge_documents(judge.engine, memo, subject, judge.config, &overrides);
    let in_force = InForce::for_object(
        judge.exceptions,
        judge.policy,
        judge.config,
        subject.id,
        judge.now,
    );
    if !in_force.is_empty() {
        for document in &mut documents {
            for finding in &mut document.evaluation.findings {
                finding.waiver = in_force.waiver(&document.label, finding);
            }
        }
    }
    ObjectVerdict {
        coverage,
        documents,
    }
}

/// Judges every document the object carries. A structured field is judged where it is in
/// the object's tree: with the tree's positions if it has them, and under the configured
/// depth limit counted from the field.
fn judge_documents(
    engine: &Engine,
    memo: Option<WithMemo<'_>>,
    subject: Subject<'_>,
    config: &ExtractConfig,
    overrides: &Overrides,
) -> Vec<JudgedDocument> {
    extract::extract(subject.id, subject.meta, subject.body, config)
        .into_iter()
        .filter_map(|carried| {
            let (evaluation, memo) = judge_carried(engine, memo, &carried, overrides);
            let evaluation = evaluation?;
            let bytes = match &carried.content {
                Content::Text(bytes) | Content::Candidate(bytes) => bytes.len(),
                Content::Field(node) => node.json_source_len().unwrap_or_else(|| json_size(*node)),
                Content::Unreadable(_) => 0,
            };
            Some(JudgedDocument {
                locator: carried.locator,
                label: carried.label,
                bytes,
                evaluation,
                memo,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::finding::Mode;
    use crate::kubernetes::labels;
    use crate::kubernetes::namespaces::{MODE_LABEL, PRODUCTION_LABEL};

    fn meta(label: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            labels: label
                .map(|v| BTreeMap::from([(extract::DOCUMENT_LABEL.to_owned(), v.to_owned())])),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn who_is_judged_and_how() {
        let config = ExtractConfig::default();
        let inspect_all = ExtractConfig {
            inspect_all_config_maps: true,
            ..ExtractConfig::default()
        };
        let cm = ObjectId::config_map("payments", "orders");
        let enforce = Overrides::default();
        let none = labels(&[]);
        let cases = [
            (
                &config,
                Some("true"),
                Scope::Labels(&none),
                Coverage::Guarded(enforce),
            ),
            (
                &config,
                None,
                Scope::Labels(&none),
                Coverage::Unguarded(enforce),
            ),
            (
                &inspect_all,
                None,
                Scope::Labels(&none),
                Coverage::Guarded(enforce),
            ),
            (
                &inspect_all,
                Some("false"),
                Scope::Labels(&none),
                Coverage::Skipped(Skipped::OptedOut),
            ),
            (
                &config,
                Some("false"),
                Scope::Entry(enforce),
                Coverage::Skipped(Skipped::OptedOut),
            ),
            (
                &config,
                None,
                Scope::Entry(enforce),
                Coverage::Unguarded(enforce),
            ),
        ];
        for (config, label, scope, expected) in cases {
            assert_eq!(
                coverage(config, &cm, &meta(label), scope),
                expected,
                "{label:?} {scope:?}"
            );
        }
        // The namespace's labels choose the mode; excluded namespaces and `off` are skipped,
        // whichever the scope.
        let warn_all = labels(&[(MODE_LABEL, "warn"), (PRODUCTION_LABEL, "all")]);
        assert_eq!(
            coverage(&config, &cm, &meta(Some("true")), Scope::Labels(&warn_all)),
            Coverage::Guarded(Overrides {
                mode: Mode::Warn,
                all_servers_production: true
            })
        );
        let off = labels(&[(MODE_LABEL, "off")]);
        assert_eq!(
            coverage(&config, &cm, &meta(Some("true")), Scope::Labels(&off)),
            Coverage::Skipped(Skipped::NamespaceOff)
        );
        let system = ObjectId::config_map("kube-system", "x");
        for scope in [Scope::Labels(&none), Scope::Entry(enforce)] {
            assert_eq!(
                coverage(&config, &system, &meta(Some("true")), scope),
                Coverage::Skipped(Skipped::ExcludedNamespace)
            );
        }
    }
}
