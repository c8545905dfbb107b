//! Between the document model and `serde_json` values: configuration files and manifests
//! turned into typed structs, and (for tests) values turned into trees. Objects from the
//! API server are not decoded into values at all: the webhook and the audit read their
//! JSON text with the engine's reader.

use serde_json::Value as Json;

use super::{LoadError, NodeRef, ScalarKind, Value};

#[cfg(test)]
pub use from_value::from_json;

/// Values into trees: for unit tests that write an object as `json!`.
#[cfg(test)]
mod from_value {
    use std::borrow::Cow;

    use serde_json::Value as Json;

    use super::super::build::{Builder, Collection};
    use super::super::{Limits, LoadError, Offset, ScalarKind, Stream, Syntax};

    /// A JSON value as a one-document stream without positions. Strings are borrowed.
    pub fn from_json<'v>(value: &'v Json, limits: &Limits) -> Result<Stream<'v>, LoadError> {
        let mut builder = Builder::new("", Syntax::Json, false, limits);
        builder.start_document(Offset::UNKNOWN);
        add(&mut builder, value)?;
        builder.finish()
    }

    // Recursion is bounded: the builder refuses nesting deeper than the limit before going on.
    fn add<'v>(builder: &mut Builder<'v>, value: &'v Json) -> Result<(), LoadError> {
        let at = Offset::UNKNOWN;
        let mut scalar = |text: Cow<'v, str>, kind| builder.scalar(text, kind, at, 0, false);
        match value {
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
            Json::Array(items) => {
                builder.open(Collection::Seq, at, 0)?;
                for item in items {
                    add(builder, item)?;
                }
                builder.close()
            }
            Json::Object(map) => {
                builder.open(Collection::Map, at, 0)?;
                for (key, item) in map {
                    builder.scalar(Cow::Borrowed(key.as_str()), ScalarKind::Str, at, 0, false)?;
                    add(builder, item)?;
                }
                builder.close()
            }
        }
    }
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
        Value::Seq(_) => Json::Array(
            node.items()
                .map(|item| to_json_at(item, depth + 1, max_depth))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(_) => {
            let entries = node.entries();
            let mut map = serde_json::Map::with_capacity(entries.len());
            for entry in entries {
                map.insert(
                    entry.key.to_string(),
                    to_json_at(node.child(entry.value), depth + 1, max_depth)?,
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
    if let Ok(u) = unsigned.parse::<u64>() {
        return Some(u.into());
    }
    unsigned
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::{Limits, Pos, load};

    #[test]
    fn converts_without_positions() {
        let json = serde_json::json!({"asyncapi": "2.6.0", "servers": {"p": {"port": 1}}, "l": [true, null, 1.5]});
        let stream = from_json(&json, &Limits::default()).unwrap();
        let root = stream.roots().next().unwrap();
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
        assert_eq!(to_json(root, 10).unwrap(), json);
    }

    #[test]
    fn yaml_to_json_keeps_scalar_types() {
        let stream = load(
            "a: 1\nb: '1'\nc: true\nd: ~\ne: [1.5, 0x10]\nf: yes\n",
            &Limits::default(),
        )
        .unwrap();
        let json = to_json(stream.roots().next().unwrap(), 10).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"a": 1, "b": "1", "c": true, "d": null, "e": [1.5, 16], "f": "yes"})
        );
    }

    #[test]
    fn alias_chains_are_depth_checked() {
        let mut src = String::from("a0: &a0 [x]\n");
        for i in 1..50 {
            src.push_str(&format!("a{i}: &a{i} [*a{}]\n", i - 1));
        }
        let stream = load(&src, &Limits::default()).unwrap();
        let root = stream.roots().next().unwrap();
        assert!(matches!(to_json(root, 20), Err(LoadError::TooDeep { .. })));
        assert!(to_json(root, 60).is_ok());
    }

    #[test]
    fn refuses_deep_values() {
        let mut json = serde_json::json!(1);
        for _ in 0..10 {
            json = serde_json::json!([json]);
        }
        let limits = Limits {
            max_depth: 5,
            ..Limits::default()
        };
        assert!(matches!(
            from_json(&json, &limits),
            Err(LoadError::TooDeep { max: 5, .. })
        ));
    }
}
