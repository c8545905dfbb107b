//! `check` on a file of Kubernetes objects: each document an object carries is one entry,
//! judged by the decision admission takes ([`verdict::judge`]).

use std::collections::BTreeMap;

use crate::engine::document::pointer;
use crate::engine::document::value::to_json;
use crate::engine::document::{NodeRef, Stream, Value};
use crate::kubernetes::exceptions::{Exception, is_exception};
use crate::kubernetes::identify;
use crate::kubernetes::verdict::{self, Coverage, Judge, Scope, Subject};
use crate::report::DocumentReport;

/// A file is a manifest when its first document is an object with `apiVersion` and `kind`
/// (and is not itself an AsyncAPI document).
pub fn is_manifest(stream: &Stream<'_>) -> bool {
    stream
        .documents
        .iter()
        .map(|(root, _)| stream.tree.node(*root))
        .find(|root| !root.is_null())
        .is_some_and(|root| {
            root.get("apiVersion").and_then(|v| v.as_str()).is_some()
                && root.get("kind").and_then(|v| v.as_str()).is_some()
                && root.get("asyncapi").is_none()
        })
}

/// How a manifest is judged.
#[derive(Debug, Clone, Copy)]
pub struct ManifestCheck<'a> {
    pub judge: Judge<'a>,
    /// The labels of the namespace the objects are meant for (the flags give them).
    pub namespace_labels: &'a BTreeMap<String, String>,
    /// Admission's exact view: ConfigMaps admission does not see are not reported. By
    /// default they are, since the webhook will let them through unjudged: that is what a
    /// check before merge should catch.
    pub labelled_only: bool,
}

/// Judges every document the manifest's objects carry (`List`s are opened).
pub fn judge_manifest(
    check: &ManifestCheck<'_>,
    file: &str,
    stream: &Stream<'_>,
) -> Vec<DocumentReport> {
    let mut reports = Vec::new();
    for (index, (root, _)) in stream.documents.iter().enumerate() {
        let root = stream.tree.node(*root);
        if root.is_null() {
            continue;
        }
        let is_list = root
            .get("kind")
            .and_then(|k| k.as_str())
            .is_some_and(|k| k.ends_with("List"))
            && root.get("items").is_some();
        if is_list {
            for (item_index, item) in root
                .get("items")
                .into_iter()
                .flat_map(|items| items.items())
                .enumerate()
            {
                judge_one(
                    check,
                    file,
                    item,
                    &format!("document/{index}/items/{item_index}"),
                    &mut reports,
                );
            }
        } else {
            judge_one(
                check,
                file,
                root,
                &format!("document/{index}"),
                &mut reports,
            );
        }
    }
    reports
}

fn judge_one(
    check: &ManifestCheck<'_>,
    file: &str,
    node: NodeRef<'_>,
    fallback_name: &str,
    reports: &mut Vec<DocumentReport>,
) {
    let engine = check.judge.engine;
    let unreadable = |why: String| {
        let overrides = check
            .judge
            .config
            .namespaces
            .overrides_for(None, check.namespace_labels)
            .unwrap_or_default();
        DocumentReport {
            file: format!("{file}#{fallback_name}"),
            label: format!("{file}#{fallback_name}"),
            artifact: file.to_owned(),
            embedded_at: Some(node.pos()),
            unguarded: None,
            evaluation: engine.evaluate_unreadable(&why, &overrides),
        }
    };
    if !node.is_map() {
        return reports.push(unreadable(
            "this document of the manifest is not a Kubernetes object".to_owned(),
        ));
    }
    let (id, meta) = match identify(node) {
        Ok(found) => found,
        // Only objects that could carry a document are worth an error.
        Err(why) if node.get("data").is_some() || node.get("spec").is_some() => {
            return reports.push(unreadable(format!(
                "the object cannot be identified: {why}"
            )));
        }
        Err(_) => return,
    };
    let subject = Subject {
        id: &id,
        meta: &meta,
        body: node,
    };
    let verdict = verdict::judge(
        &check.judge,
        None,
        subject,
        Scope::Labels(check.namespace_labels),
    );
    let unguarded = matches!(verdict.coverage, Coverage::Unguarded(_));
    if unguarded && check.labelled_only {
        return;
    }
    for document in verdict.documents {
        let entry = format!("{file}#{}/{}", id.path(), document.locator);
        // A structured field is part of this file: its findings have the file's positions.
        // Text (a ConfigMap key, a string field) has its own: SARIF points at its key.
        let at = pointer::resolve(node, &format!("/{}", document.locator));
        let structured = at.as_ref().is_some_and(|at| at.node.is_map());
        let embedded_at = if structured {
            None
        } else {
            at.map(|key| key.pos()).or(Some(node.pos()))
        };
        reports.push(DocumentReport {
            label: if structured {
                file.to_owned()
            } else {
                entry.clone()
            },
            file: entry,
            artifact: file.to_owned(),
            embedded_at,
            unguarded: unguarded.then(|| id.clone()),
            evaluation: document.evaluation,
        });
    }
}

/// The `AsyncAPIException` objects of a manifest (`List`s are opened); other objects are
/// left alone. `max_depth` is the depth the manifest was loaded under.
pub fn exceptions_in(stream: &Stream<'_>, max_depth: usize) -> Vec<Exception> {
    let mut found = Vec::new();
    let mut take = |node: NodeRef<'_>| {
        let Ok((id, _)) = identify(node) else {
            return;
        };
        if is_exception(&id.group, &id.kind)
            && let Ok(object) = to_json(node, max_depth)
        {
            found.push(Exception::from_object(&object));
        }
    };
    for (root, _) in &stream.documents {
        let root = stream.tree.node(*root);
        match root
            .get("items")
            .filter(|items| matches!(items.value(), Value::Seq(_)))
        {
            Some(items) => items.items().for_each(&mut take),
            None if root.is_map() => take(root),
            None => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::exceptions::ExceptionSet;
    use crate::service::state::ActiveConfig;

    const MANIFEST: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: orders-api
  namespace: payments
  labels:
    asyncapi-guard.io/document: 'true'
data:
  asyncapi.yaml: |
    asyncapi: 2.6.0
    servers:
      production:
        url: x
        protocol: amqp
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: orders
---
apiVersion: asyncapi-guard.io/v1alpha1
kind: AsyncAPI
metadata:
  name: hello
  namespace: payments
spec:
  asyncapi: 3.0.0
  servers:
    production:
      host: x
      protocol: amqp
";

    static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

    fn check<'a>(
        active: &'a ActiveConfig,
        exceptions: &'a ExceptionSet,
        labelled_only: bool,
    ) -> ManifestCheck<'a> {
        ManifestCheck {
            judge: active.judge(exceptions, "2026-12-07T00:00:00Z".parse().unwrap()),
            namespace_labels: &NO_LABELS,
            labelled_only,
        }
    }

    const UNLABELLED: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: legacy
  namespace: payments
data:
  README: not a document
  spec: |
    asyncapi: 3.0.0
    servers:
      production:
        host: x
        protocol: amqp
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: opted-out
  namespace: payments
  labels:
    asyncapi-guard.io/document: \"false\"
data:
  asyncapi.yaml: |
    asyncapi: 3.0.0
    servers:
      production:
        host: x
        protocol: amqp
";

    #[test]
    fn an_unlabelled_config_map_that_holds_asyncapi_is_judged_and_flagged() {
        let (active, none) = (ActiveConfig::default(), ExceptionSet::default());
        let stream = active.engine.load(UNLABELLED).unwrap();
        let reports = judge_manifest(&check(&active, &none, false), "u.yaml", &stream);
        // The README key is not AsyncAPI; the label "false" opts the second one out.
        assert_eq!(reports.len(), 1);
        assert_eq!(
            reports[0].file,
            "u.yaml#ConfigMap/payments/legacy/data/spec"
        );
        assert!(!reports[0].evaluation.allowed());
        assert_eq!(
            reports[0]
                .unguarded
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("ConfigMap payments/legacy")
        );
        // Admission's exact view.
        assert!(judge_manifest(&check(&active, &none, true), "u.yaml", &stream).is_empty());
    }

    #[test]
    fn each_carried_document_is_one_entry() {
        let (active, none) = (ActiveConfig::default(), ExceptionSet::default());
        let stream = active.engine.load(MANIFEST).unwrap();
        assert!(is_manifest(&stream));
        let reports = judge_manifest(&check(&active, &none, false), "m.yaml", &stream);
        let files: Vec<&str> = reports.iter().map(|r| r.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "m.yaml#ConfigMap/payments/orders-api/data/asyncapi.yaml",
                "m.yaml#AsyncAPI/payments/hello/spec"
            ]
        );
        // ConfigMap text: positions within the key's document; SARIF points at the key.
        assert_eq!(reports[0].evaluation.findings[0].pos.line, 3);
        assert_eq!(reports[0].embedded_at.map(|p| p.line), Some(9));
        // A custom resource's spec is part of the file: the file's own positions.
        assert_eq!(reports[1].evaluation.findings[0].pos.line, 29);
        assert_eq!(reports[1].label, "m.yaml");
    }

    #[test]
    fn an_exception_in_force_covers_its_findings_and_they_do_not_deny() {
        let exceptions = "apiVersion: asyncapi-guard.io/v1alpha1
kind: AsyncAPIException
metadata:
  name: legacy-orders
  namespace: asyncapi-guard
  creationTimestamp: '2026-12-01T00:00:00Z'
spec:
  match: {namespace: payments, kind: ConfigMap, name: orders-api, key: asyncapi.yaml}
  rules: [server-security-missing]
  reason: legacy broker
  expires: '2027-01-15T00:00:00Z'
";
        let active = ActiveConfig::default();
        let stream = active.engine.load(exceptions).unwrap();
        let found = exceptions_in(&stream, 100);
        assert_eq!(found.len(), 1);
        let set = ExceptionSet::new(found);
        let stream = active.engine.load(MANIFEST).unwrap();
        let reports = judge_manifest(&check(&active, &set, false), "m.yaml", &stream);
        let config_map = &reports[0].evaluation;
        assert!(config_map.allowed(), "{config_map:?}");
        let waiver = config_map.findings[0].waiver.as_ref().unwrap();
        assert_eq!(waiver.by, "asyncapi-guard/legacy-orders");
        // It names one object: the custom resource beside it is still denied.
        assert!(!reports[1].evaluation.allowed());
    }

    #[test]
    fn lists_are_opened() {
        let list = format!(
            "apiVersion: v1\nkind: List\nitems:\n{}",
            MANIFEST
                .split("---")
                .next()
                .unwrap()
                .lines()
                .enumerate()
                .map(|(i, l)| if i == 0 {
                    format!("- {l}\n")
                } else {
                    format!("  {l}\n")
                })
                .collect::<String>()
        );
        let (active, none) = (ActiveConfig::default(), ExceptionSet::default());
        let stream = active.engine.load(&list).unwrap();
        let reports = judge_manifest(&check(&active, &none, false), "l.yaml", &stream);
        assert_eq!(reports.len(), 1);
    }

    #[test]
    fn asyncapi_documents_are_not_manifests() {
        let active = ActiveConfig::default();
        assert!(!is_manifest(
            &active.engine.load("asyncapi: 3.0.0\ninfo: {}\n").unwrap()
        ));
        assert!(!is_manifest(
            &active
                .engine
                .load("apiVersion: v1\nkind: x\nasyncapi: 3.0.0\n")
                .unwrap()
        ));
    }
}
