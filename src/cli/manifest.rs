//! `check` on a file of Kubernetes objects: each document an object carries is one entry.

use crate::engine::document::NodeRef;
use crate::engine::document::Stream;
use crate::engine::document::pointer;
use crate::engine::{Engine, Overrides};
use crate::kubernetes::extract::{self, Content, DocumentLabel, ExtractConfig};
use crate::kubernetes::{identify, judge_carried};
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
    pub engine: &'a Engine,
    pub config: &'a ExtractConfig,
    pub overrides: &'a Overrides,
    /// Admission's exact view: ConfigMaps without the opt-in label are not looked at. By
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
    let ManifestCheck {
        engine,
        config,
        overrides,
        labelled_only,
    } = *check;
    let unreadable = |why: String| DocumentReport {
        file: format!("{file}#{fallback_name}"),
        label: format!("{file}#{fallback_name}"),
        artifact: file.to_owned(),
        embedded_at: Some(node.pos()),
        unguarded: None,
        evaluation: engine.evaluate_unreadable(&why, overrides),
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
    // A ConfigMap the webhook will not judge (no label, and the installation does not
    // inspect them all): its keys that hold AsyncAPI are judged here, and flagged.
    let unguarded = !labelled_only
        && id.is_config_map()
        && !config.inspect_all_config_maps
        && DocumentLabel::of(&meta) == DocumentLabel::Absent;
    let search_all = ExtractConfig {
        inspect_all_config_maps: true,
        ..config.clone()
    };
    let extract_config = if unguarded { &search_all } else { config };
    for carried in extract::extract(&id, &meta, node, extract_config) {
        let entry = format!("{file}#{}/{}", id.path(), carried.locator);
        let structured = matches!(carried.content, Content::Field(_));
        // A structured field is part of this file: its findings have the file's positions.
        let (evaluation, _) = judge_carried(engine, None, &carried, overrides);
        let Some(evaluation) = evaluation else {
            continue;
        };
        let embedded_at = if structured {
            None
        } else {
            pointer::resolve(node, &format!("/{}", carried.locator))
                .map(|key| key.pos())
                .or(Some(node.pos()))
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
            evaluation,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    static CONFIG: ExtractConfig = ExtractConfig {
        inspect_all_config_maps: false,
        kinds: Vec::new(),
        namespaces: crate::kubernetes::namespaces::NamespaceScope {
            default_mode: crate::engine::finding::Mode::Enforce,
            exclude: Vec::new(),
        },
    };
    static OVERRIDES: Overrides = Overrides {
        mode: crate::engine::finding::Mode::Enforce,
        all_servers_production: false,
    };

    fn check(engine: &Engine, labelled_only: bool) -> ManifestCheck<'_> {
        ManifestCheck {
            engine,
            config: &CONFIG,
            overrides: &OVERRIDES,
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
        let engine = Engine::default();
        let stream = engine.load(UNLABELLED).unwrap();
        let reports = judge_manifest(&check(&engine, false), "u.yaml", &stream);
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
        assert!(judge_manifest(&check(&engine, true), "u.yaml", &stream).is_empty());
    }

    #[test]
    fn each_carried_document_is_one_entry() {
        let engine = Engine::default();
        let stream = engine.load(MANIFEST).unwrap();
        assert!(is_manifest(&stream));
        let reports = judge_manifest(&check(&engine, false), "m.yaml", &stream);
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
        let engine = Engine::default();
        let stream = engine.load(&list).unwrap();
        let reports = judge_manifest(&check(&engine, false), "l.yaml", &stream);
        assert_eq!(reports.len(), 1);
    }

    #[test]
    fn asyncapi_documents_are_not_manifests() {
        let engine = Engine::default();
        assert!(!is_manifest(
            &engine.load("asyncapi: 3.0.0\ninfo: {}\n").unwrap()
        ));
        assert!(!is_manifest(
            &engine
                .load("apiVersion: v1\nkind: x\nasyncapi: 3.0.0\n")
                .unwrap()
        ));
    }
}
