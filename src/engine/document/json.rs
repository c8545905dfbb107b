//! A JSON value (a custom resource's `spec` as the API server sends it) into the document
//! model. Such documents have no source text, so every position is unknown.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::yaml::LoadError;
use super::{Entry, Node, NodeId, NodeRef, Pos, ScalarKind, Tree, Value};

/// Borrows the strings of `value`; fails only on nesting deeper than `max_depth`.
pub fn from_json<'v>(value: &'v Json, max_depth: usize) -> Result<(Tree<'v>, NodeId), LoadError> {
    let mut tree = Tree::default();
    let root = add(&mut tree, value, 0, max_depth)?;
    Ok((tree, root))
}

fn add<'v>(
    tree: &mut Tree<'v>,
    value: &'v Json,
    depth: usize,
    max_depth: usize,
) -> Result<NodeId, LoadError> {
    let scalar = |text: Cow<'v, str>, kind| Value::Scalar { text, kind };
    let value = match value {
        Json::Null => scalar(Cow::Borrowed("null"), ScalarKind::Null),
        Json::Bool(b) => scalar(
            Cow::Borrowed(if *b { "true" } else { "false" }),
            ScalarKind::Bool,
        ),
        Json::Number(n) => {
            let kind = if n.is_f64() {
                ScalarKind::Float
            } else {
                ScalarKind::Int
            };
            scalar(Cow::Owned(n.to_string()), kind)
        }
        Json::String(s) => scalar(Cow::Borrowed(s.as_str()), ScalarKind::Str),
        Json::Array(_) | Json::Object(_) if depth >= max_depth => {
            return Err(LoadError::TooDeep {
                max: max_depth,
                pos: Pos::UNKNOWN,
            });
        }
        Json::Array(items) => {
            let ids = items
                .iter()
                .map(|item| add(tree, item, depth + 1, max_depth))
                .collect::<Result<Vec<_>, _>>()?;
            Value::Seq(ids)
        }
        Json::Object(map) => {
            let mut entries = Vec::with_capacity(map.len());
            for (key, item) in map {
                entries.push(Entry {
                    key: Cow::Borrowed(key.as_str()),
                    key_pos: Pos::UNKNOWN,
                    value: add(tree, item, depth + 1, max_depth)?,
                });
            }
            Value::Map(entries)
        }
    };
    Ok(tree.push(Node {
        value,
        pos: Pos::UNKNOWN,
    }))
}

/// A node as a JSON value (for configuration files and Kubernetes manifests). Aliases are
/// expanded here, so the depth is checked again: a chain of aliases can nest deeper than
/// anything written in the source.
pub fn to_json(node: NodeRef<'_>, max_depth: usize) -> Result<Json, LoadError> {
    to_json_at(node, 0, max_depth)
}

fn to_json_at(node: NodeRef<'_>, depth: usize, max_depth: usize) -> Result<Json, LoadError> {
    if depth > max_depth {
        return Err(LoadError::TooDeep {
            max: max_depth,
            pos: node.pos(),
        });
    }
    Ok(match node.value() {
        Value::Scalar { text, kind } => match kind {
            ScalarKind::Null => Json::Null,
            ScalarKind::Bool => Json::Bool(text.eq_ignore_ascii_case("true")),
            ScalarKind::Int | ScalarKind::Float => parse_number(text)
                .map(Json::Number)
                .unwrap_or_else(|| Json::String(text.to_string())),
            ScalarKind::Str => Json::String(text.to_string()),
        },
        Value::Seq(items) => Json::Array(
            items
                .iter()
                .map(|&id| to_json_at(node.at(id), depth + 1, max_depth))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(entries) => {
            let mut map = serde_json::Map::with_capacity(entries.len());
            for entry in entries {
                map.insert(
                    entry.key.to_string(),
                    to_json_at(node.at(entry.value), depth + 1, max_depth)?,
                );
            }
            Json::Object(map)
        }
    })
}

fn parse_number(text: &str) -> Option<serde_json::Number> {
    let unsigned = text.strip_prefix('+').unwrap_or(text);
    if let Some(hex) = unsigned.strip_prefix("0x") {
        return i64::from_str_radix(hex, 16).ok().map(Into::into);
    }
    if let Some(oct) = unsigned.strip_prefix("0o") {
        return i64::from_str_radix(oct, 8).ok().map(Into::into);
    }
    if let Ok(i) = unsigned.parse::<i64>() {
        return Some(i.into());
    }
    unsigned
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_without_positions() {
        let json = serde_json::json!({"asyncapi": "2.6.0", "servers": {"p": {"port": 1}}, "l": [true, null, 1.5]});
        let (tree, root) = from_json(&json, 100).unwrap();
        let root = tree.node(root);
        assert_eq!(root.get("asyncapi").unwrap().as_str(), Some("2.6.0"));
        assert_eq!(root.pos(), Pos::UNKNOWN);
        let port = root
            .get("servers")
            .unwrap()
            .get("p")
            .unwrap()
            .get("port")
            .unwrap();
        assert_eq!(port.scalar_text(), Some("1"));
        assert_eq!(port.as_str(), None);
        assert_eq!(root.get("l").unwrap().items().count(), 3);
    }

    #[test]
    fn yaml_to_json_keeps_scalar_types() {
        use crate::engine::document::yaml::{Limits, parse_stream};
        let stream = parse_stream(
            "a: 1\nb: '1'\nc: true\nd: ~\ne: [1.5, 0x10]\nf: yes\n",
            &Limits::default(),
        )
        .unwrap();
        let json = to_json(stream.tree.node(stream.documents[0].0), 10).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": "1", "c": true, "d": null, "e": [1.5, 16], "f": "yes"})
        );
    }

    #[test]
    fn alias_chains_are_depth_checked() {
        use crate::engine::document::yaml::{Limits, parse_stream};
        let mut src = String::from("a0: &a0 [x]\n");
        for i in 1..50 {
            src.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let stream = parse_stream(&src, &Limits::default()).unwrap();
        let root = stream.tree.node(stream.documents[0].0);
        assert!(matches!(to_json(root, 20), Err(LoadError::TooDeep { .. })));
        assert!(to_json(root, 60).is_ok());
    }

    #[test]
    fn refuses_deep_values() {
        let mut json = serde_json::json!(1);
        for _ in 0..10 {
            json = serde_json::json!([json]);
        }
        assert!(matches!(
            from_json(&json, 5),
            Err(LoadError::TooDeep { max: 5, .. })
        ));
    }
}
