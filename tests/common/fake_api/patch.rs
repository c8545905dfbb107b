//! The ways a client changes an object: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! strategic merge patch (keyed lists merge by key), and server-side apply's merge.

use serde_json::{Value, json};

use super::fields::list_key;

/// RFC 7386: maps merge, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
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
                    merge(target.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Strategic merge patch: as a merge patch, but lists keyed by `name` (or a condition's
/// `type`) merge item by item, as the built-in kinds' schemas say of such lists.
pub fn strategic(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (k, v) in patch {
                // Directives (`$setElementOrder/...`, `$retainKeys`) only order or prune.
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    target.remove(k);
                    continue;
                }
                match target.get_mut(k) {
                    Some(existing) => strategic(existing, v),
                    None => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) if list_key(patch).is_some() => {
            let key = list_key(patch).unwrap_or("name");
            for item in patch {
                let id = item.get(key);
                // `{"$patch": "delete", "name": "x"}` removes the item (Helm 3's three-way
                // merge writes removals so).
                if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                    target.retain(|t| t.get(key) != id);
                    continue;
                }
                match target.iter_mut().find(|t| t.get(key) == id) {
                    Some(existing) => strategic(existing, item),
                    None => target.push(item.clone()),
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// Server-side apply's merge of the applied configuration into the object: maps merge,
/// keyed lists merge by key, other lists and scalars are replaced. (What an apply no longer
/// sets is removed apart, by ownership.)
pub fn apply(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (k, v) in patch {
                match target.get_mut(k) {
                    Some(existing) if !v.is_null() => apply(existing, v),
                    _ => {
                        target.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(target), Value::Array(patch)) if list_key(patch).is_some() => {
            let key = list_key(patch).unwrap_or("name");
            for item in patch {
                let id = item.get(key);
                match target.iter_mut().find(|t| t.get(key) == id) {
                    Some(existing) => apply(existing, item),
                    None => target.push(item.clone()),
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// RFC 6902 (`add`, `remove`, `replace`, `test`); `Err` when an operation cannot apply (the
/// API server answers 422).
pub fn json_patch(target: &mut Value, operations: &Value) -> Result<(), String> {
    let operations = operations.as_array().ok_or("a JSON patch is a list")?;
    for operation in operations {
        let op = operation["op"].as_str().ok_or("op missing")?;
        let path = operation["path"].as_str().ok_or("path missing")?;
        let tokens: Vec<String> = path
            .split('/')
            .skip(1)
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect();
        match op {
            "test" => {
                if target.pointer(path) != Some(&operation["value"]) {
                    return Err(format!("test failed at {path}"));
                }
            }
            "remove" => {
                let (parent, last) = parent_of(target, &tokens)?;
                match parent {
                    Value::Object(map) => {
                        map.remove(&last).ok_or(format!("nothing at {path}"))?;
                    }
                    Value::Array(items) => {
                        let index: usize = last.parse().map_err(|_| format!("bad index {path}"))?;
                        if index >= items.len() {
                            return Err(format!("nothing at {path}"));
                        }
                        items.remove(index);
                    }
                    _ => return Err(format!("nothing at {path}")),
                }
            }
            "add" | "replace" => {
                let value = operation.get("value").cloned().ok_or("value missing")?;
                if tokens.is_empty() {
                    *target = value;
                    continue;
                }
                let replace = op == "replace";
                let (parent, last) = parent_of(target, &tokens)?;
                match parent {
                    Value::Object(map) => {
                        if replace && !map.contains_key(&last) {
                            return Err(format!("nothing to replace at {path}"));
                        }
                        map.insert(last, value);
                    }
                    Value::Array(items) => {
                        if last == "-" && !replace {
                            items.push(value);
                        } else {
                            let index: usize =
                                last.parse().map_err(|_| format!("bad index {path}"))?;
                            match (replace, index < items.len(), index == items.len()) {
                                (true, true, _) => items[index] = value,
                                (false, _, true) | (false, true, _) => items.insert(index, value),
                                _ => return Err(format!("index out of range at {path}")),
                            }
                        }
                    }
                    _ => return Err(format!("no container at {path}")),
                }
            }
            other => return Err(format!("unsupported op {other}")),
        }
    }
    Ok(())
}

fn parent_of<'v>(
    target: &'v mut Value,
    tokens: &[String],
) -> Result<(&'v mut Value, String), String> {
    let (last, parents) = tokens.split_last().ok_or("the root has no parent")?;
    let mut here = target;
    for token in parents {
        here = match here {
            Value::Object(map) => map.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("no {token}"))?;
    }
    Ok((here, last.clone()))
}
