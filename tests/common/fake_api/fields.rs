//! Field ownership, as kube-apiserver keeps it in `metadata.managedFields` (server-side
//! apply): which manager owns which field, what an apply may take from another manager, and
//! what it removes when it no longer sets a field.
//!
//! A field is a path in `fieldsV1` terms: `f:<key>` steps into a map, `k:{"name":"x"}` into
//! the item of a keyed list, and `.` stands for the map or item itself (an apply owns the
//! items it names; an update owns the maps and items it creates).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

pub type FieldPath = Vec<String>;
pub type FieldSet = BTreeSet<FieldPath>;

/// Lists whose items merge by a key, and the key. Other lists, and the maps of
/// [`ATOMIC_MAPS`], are replaced whole and owned as one field.
const KEYS: [&str; 2] = ["name", "type"];
/// Maps that are atomic in the schemas this fake serves (a webhook's selectors, an Event's
/// object reference).
const ATOMIC_MAPS: [&str; 3] = ["namespaceSelector", "objectSelector", "regarding"];
/// Fields no manager owns.
const UNOWNED: [&str; 2] = ["apiVersion", "kind"];
const UNOWNED_METADATA: [&str; 9] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "selfLink",
];

/// One entry of `managedFields`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub subresource: Option<String>,
    pub api_version: String,
    pub time: String,
    pub fields: FieldSet,
}

impl Entry {
    /// How a conflict names the manager: an update's with the version it wrote.
    pub fn conflict_name(&self) -> String {
        if self.operation == "Update" {
            format!("\"{}\" using {}", self.manager, self.api_version)
        } else {
            format!("\"{}\"", self.manager)
        }
    }
}

/// The item key of a keyed list's item: `k:{"name":"x"}`.
fn item_key(list: &[Value], item: &Value) -> Option<String> {
    let key = list_key(list)?;
    let value = item.get(key)?;
    Some(format!("k:{}", json!({ key: value })))
}

/// The key a list merges by, when every item has it as a string.
pub fn list_key(items: &[Value]) -> Option<&'static str> {
    KEYS.into_iter().find(|key| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(key).is_some_and(Value::is_string))
    })
}

/// Who writes fields, which decides what a value owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// Server-side apply: what it names, maps not owned whole.
    Apply,
    /// Any other write: also the maps and items it creates (`.`). `typed`: a built-in kind,
    /// whose empty structs are dropped on the way in and so set nothing (a custom
    /// resource keeps and owns its empty maps).
    Update { typed: bool },
}

/// Every field `value` sets, under `at`. List items are always owned with their `.`. An
/// update's nulls set nothing, and `metadata` is never owned as a whole.
pub fn fields_of(value: &Value, at: &FieldPath, writer: Writer, out: &mut FieldSet) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let unset = match (child, writer) {
                    (Value::Null, Writer::Update { .. }) => true,
                    (Value::Object(inner), Writer::Update { typed: true }) => inner.is_empty(),
                    _ => false,
                };
                if unset {
                    continue;
                }
                if at.is_empty() && UNOWNED.contains(&key.as_str()) {
                    continue;
                }
                if at.len() == 1
                    && at[0] == "f:metadata"
                    && UNOWNED_METADATA.contains(&key.as_str())
                {
                    continue;
                }
                let mut path = at.clone();
                path.push(format!("f:{key}"));
                field(child, key, path, writer, out);
            }
        }
        _ => {
            out.insert(at.clone());
        }
    }
}

fn field(value: &Value, key: &str, path: FieldPath, writer: Writer, out: &mut FieldSet) {
    match value {
        Value::Object(map) if !map.is_empty() && !ATOMIC_MAPS.contains(&key) => {
            if writer != Writer::Apply && path != ["f:metadata"] {
                let mut marker = path.clone();
                marker.push(".".to_owned());
                out.insert(marker);
            }
            fields_of(value, &path, writer, out);
        }
        Value::Array(items) if list_key(items).is_some() => {
            for item in items {
                let Some(key) = item_key(items, item) else {
                    continue;
                };
                let mut item_path = path.clone();
                item_path.push(key);
                let mut marker = item_path.clone();
                marker.push(".".to_owned());
                out.insert(marker);
                fields_of(item, &item_path, writer, out);
            }
        }
        _ => {
            out.insert(path);
        }
    }
}

/// The value at `path`, if there is one.
pub fn get<'v>(value: &'v Value, path: &[String]) -> Option<&'v Value> {
    let Some((step, rest)) = path.split_first() else {
        return Some(value);
    };
    if step == "." {
        return Some(value);
    }
    let child = if let Some(key) = step.strip_prefix("f:") {
        value.get(key)?
    } else if let Some(key) = step.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(key).ok()?;
        value
            .as_array()?
            .iter()
            .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))?
    } else {
        return None;
    };
    get(child, rest)
}

/// Removes what `path` names (a field, or with `.` last an item of a list); says whether
/// something went.
pub fn remove(value: &mut Value, path: &[String]) -> bool {
    match path {
        [] => false,
        [step] if step.starts_with("f:") => value
            .as_object_mut()
            .and_then(|map| map.remove(&step[2..]))
            .is_some(),
        // A map's own marker: the map stays while it holds fields of others.
        [step, last] if last == "." && step.starts_with("f:") => false,
        [step, last] if last == "." && step.starts_with("k:") => {
            let Ok(key) = serde_json::from_str::<Map<String, Value>>(&step[2..]) else {
                return false;
            };
            let Some(items) = value.as_array_mut() else {
                return false;
            };
            let before = items.len();
            items.retain(|item| !key.iter().all(|(k, v)| item.get(k) == Some(v)));
            items.len() != before
        }
        [step, rest @ ..] => {
            let child = if let Some(key) = step.strip_prefix("f:") {
                value.get_mut(key)
            } else if let Some(key) = step.strip_prefix("k:") {
                let Ok(key) = serde_json::from_str::<Map<String, Value>>(key) else {
                    return false;
                };
                value.as_array_mut().and_then(|items| {
                    items
                        .iter_mut()
                        .find(|item| key.iter().all(|(k, v)| item.get(k) == Some(v)))
                })
            } else {
                None
            };
            child.is_some_and(|child| remove(child, rest))
        }
    }
}

/// `managedFields` as entries.
pub fn decode(object: &Value) -> Vec<Entry> {
    object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let mut fields = FieldSet::new();
            decode_fields(entry.get("fieldsV1")?, &mut Vec::new(), &mut fields);
            Some(Entry {
                manager: entry.get("manager")?.as_str()?.to_owned(),
                operation: entry.get("operation")?.as_str()?.to_owned(),
                subresource: entry
                    .get("subresource")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                api_version: entry
                    .get("apiVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                time: entry
                    .get("time")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                fields,
            })
        })
        .collect()
}

fn decode_fields(value: &Value, at: &mut FieldPath, out: &mut FieldSet) {
    let Some(map) = value.as_object() else {
        return;
    };
    if map.is_empty() && !at.is_empty() {
        out.insert(at.clone());
        return;
    }
    for (key, child) in map {
        at.push(key.clone());
        if key == "." {
            out.insert(at.clone());
        } else {
            decode_fields(child, at, out);
        }
        at.pop();
    }
}

/// Entries as `managedFields`, in the API server's shape; entries that own nothing go.
/// Writes `entries` into the object's `managedFields`, which an object nobody owns a field
/// of does not have.
pub fn store(object: &mut Value, entries: &[Entry]) {
    if entries.is_empty() {
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.remove("managedFields");
        }
    } else {
        object["metadata"]["managedFields"] = encode(entries);
    }
}

pub fn encode(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|entry| {
                let mut fields = Map::new();
                for path in &entry.fields {
                    insert(&mut fields, path);
                }
                let mut out = json!({
                    "manager": entry.manager, "operation": entry.operation,
                    "apiVersion": entry.api_version, "time": entry.time,
                    "fieldsType": "FieldsV1", "fieldsV1": fields,
                });
                if let Some(sub) = &entry.subresource {
                    out["subresource"] = json!(sub);
                }
                out
            })
            .collect(),
    )
}

fn insert(map: &mut Map<String, Value>, path: &[String]) {
    if let Some((first, rest)) = path.split_first() {
        let child = map.entry(first.clone()).or_insert_with(|| json!({}));
        if let Value::Object(child) = child {
            insert(child, rest);
        }
    }
}

/// Whether `path` is `base` or under it.
pub fn under(path: &[String], base: &[String]) -> bool {
    path.len() >= base.len() && path[..base.len()] == *base
}

/// The owner of `path` among `entries` other than `manager`'s, if any.
pub fn other_owner<'e>(entries: &'e [Entry], manager: &str, path: &FieldPath) -> Option<&'e str> {
    entries
        .iter()
        .find(|e| e.manager != manager && e.fields.contains(path))
        .map(|e| e.manager.as_str())
}

/// `.data.shared`, as conflicts name a field.
pub fn dotted(path: &FieldPath) -> String {
    path.iter()
        .filter(|step| *step != ".")
        .map(|step| {
            step.strip_prefix("f:")
                .map(|k| format!(".{k}"))
                .unwrap_or_else(|| format!("[{}]", step.trim_start_matches("k:")))
        })
        .collect()
}
