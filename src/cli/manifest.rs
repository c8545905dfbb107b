//! `check` on a file of Kubernetes objects: each document an object carries is one entry.

use serde_json::Value;

use crate::engine::document::NodeRef;
use crate::engine::document::Stream;
use crate::engine::document::pointer;
use crate::engine::document::value::to_json;
use crate::engine::{Engine, Overrides};
use crate::kubernetes::extract::{self, Content, ExtractConfig};
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

/// Judges every document the manifest's objects carry (`List`s are opened).
pub fn judge_manifest(
    engine: &Engine,
    config: &ExtractConfig,
    file: &str,
    stream: &Stream<'_>,
    overrides: &Overrides,
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
                    engine,
                    config,
                    file,
                    item,
                    &format!("document/{index}/items/{item_index}"),
                    overrides,
                    &mut reports,
                );
            }
        } else {
            judge_one(
                engine,
                config,
                file,
                root,
                &format!("document/{index}"),
                overrides,
                &mut reports,
            );
        }
    }
    reports
}

fn judge_one(
    engine: &Engine,
    config: &ExtractConfig,
    file: &str,
    node: NodeRef<'_>,
    fallback_name: &str,
    overrides: &Overrides,
    reports: &mut Vec<DocumentReport>,
) {
    let unreadable = |why: String| DocumentReport {
        file: format!("{file}#{fallback_name}"),
        label: format!("{file}#{fallback_name}"),
        artifact: file.to_owned(),
        embedded_at: Some(node.pos()),
        unguarded: false,
        evaluation: engine.evaluate_unreadable(&why, overrides),
    };
    let object: Value = match to_json(node, engine.policy().limits.max_depth) {
        Ok(object) => object,
        Err(error) => {
            return reports.push(unreadable(format!("the object cannot be read: {error}")));
        }
    };
    if !object.is_object() {
        return reports.push(unreadable(
            "this document of the manifest is not a Kubernetes object".to_owned(),
        ));
    }
    let (id, meta) = match identify(&object) {
        Ok(found) => found,
        // Only objects that could carry a document are worth an error.
        Err(why) if object.get("data").is_some() || object.get("spec").is_some() => {
            return reports.push(unreadable(format!(
                "the object cannot be identified: {why}"
            )));
        }
        Err(_) => return,
    };
    for carried in extract::extract(&id, &meta, &object, config) {
        let entry = format!("{file}#{}/{}", id.path(), carried.locator);
        let structured = matches!(carried.content, Content::Field(_));
        // A structured field is part of this file: its findings have the file's positions.
        let evaluation = judge_carried(engine, &carried, overrides, |ptr| {
            pointer::resolve(node, ptr).map(|field| engine.evaluate_root(field.node, overrides))
        });
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
            unguarded: false,
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

    #[test]
    fn each_carried_document_is_one_entry() {
        let engine = Engine::default();
        let stream = engine.load(MANIFEST).unwrap();
        assert!(is_manifest(&stream));
        let reports = judge_manifest(
            &engine,
            &ExtractConfig::default(),
            "m.yaml",
            &stream,
            &Overrides::default(),
        );
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
        let reports = judge_manifest(
            &engine,
            &ExtractConfig::default(),
            "l.yaml",
            &stream,
            &Overrides::default(),
        );
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
