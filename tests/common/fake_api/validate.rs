//! What kube-apiserver refuses as `Invalid` (422) for the kinds the project writes: a
//! webhook entry without its required fields, an Event without `eventTime`, a TLS Secret
//! without its key, a Secret's type changed, and a custom resource that breaks its CRD's
//! schema (read from the chart's `crds/`: types, required fields, patterns, lengths, enums,
//! dates).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// One reason an object is invalid.
#[derive(Debug, Clone)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

pub fn required(field: String, message: &str) -> Cause {
    Cause {
        reason: "FieldValueRequired",
        message: if message.is_empty() {
            "Required value".to_owned()
        } else {
            format!("Required value: {message}")
        },
        field,
    }
}

fn invalid(field: String, value: &Value, why: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        message: format!("Invalid value: {value}: {why}"),
        field,
    }
}

/// The causes `object` of `kind` (in `group`) is refused for; empty when it is valid.
/// `previous` is the stored object, for an update.
pub fn causes(group: &str, kind: &str, object: &Value, previous: Option<&Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    match (group, kind) {
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            for (i, webhook) in object["webhooks"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = |field: &str| format!("webhooks[{i}].{field}");
                if webhook.get("name").is_none() {
                    causes.push(required(at("name"), ""));
                }
                if webhook.get("sideEffects").is_none() {
                    causes.push(required(
                        at("sideEffects"),
                        "must specify one of None, NoneOnDryRun",
                    ));
                }
                let client = &webhook["clientConfig"];
                if client.get("url").is_some() == client.get("service").is_some() {
                    causes.push(required(
                        at("clientConfig"),
                        "exactly one of url or service is required",
                    ));
                }
                if webhook["admissionReviewVersions"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
                {
                    causes.push(required(
                        at("admissionReviewVersions"),
                        "must specify one of v1, v1beta1",
                    ));
                }
            }
        }
        ("events.k8s.io", "Event") => {
            if object.get("eventTime").is_none_or(Value::is_null) {
                causes.push(required("eventTime".to_owned(), ""));
            }
        }
        ("", "Secret") => {
            if let Some(previous) = previous
                && previous.get("type") != object.get("type")
            {
                causes.push(invalid(
                    "type".to_owned(),
                    &object["type"],
                    "field is immutable",
                ));
            }
            if object["type"] == "kubernetes.io/tls" {
                for key in ["tls.crt", "tls.key"] {
                    let data = object.pointer(&format!("/data/{}", key.replace('/', "~1")));
                    if data.is_none() {
                        causes.push(required(format!("data[{key}]"), ""));
                    }
                }
            }
        }
        _ => {
            if let Some(schema) = crd_schema(group, kind) {
                check_schema(schema, object, "", &mut causes);
            }
        }
    }
    causes
}

/// The 422 body for `causes`, worded as kube-apiserver words it.
pub fn status(group: &str, kind: &str, name: &str, causes: &[Cause]) -> Value {
    // events.k8s.io Events are validated as the core type: no group in the answer.
    let group = if kind == "Event" { "" } else { group };
    let qualified = if group.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}.{group}")
    };
    let listed: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let listed = match listed.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let mut details = json!({"kind": kind, "causes": causes.iter().map(|c| json!({
        "reason": c.reason, "message": c.message, "field": c.field})).collect::<Vec<_>>()});
    // An object refused before it has a name (or options, which have none) has none here.
    if !name.is_empty() {
        details["name"] = json!(name);
    }
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("{qualified} \"{name}\" is invalid: {listed}"),
           "reason": "Invalid", "details": details, "code": 422})
}

/// The served version's schema of the chart's CRD for `group`/`kind`.
fn crd_schema(group: &str, kind: &str) -> Option<&'static Value> {
    static SCHEMAS: OnceLock<BTreeMap<(String, String), Value>> = OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            let dir = super::super::project_dir().join("charts/asyncapi-guard/crds");
            let mut schemas = BTreeMap::new();
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let Ok(text) = std::fs::read_to_string(entry.path()) else {
                    continue;
                };
                let engine = asyncapi_guard::engine::Engine::default();
                let Ok(stream) = engine.load(&text) else {
                    continue;
                };
                for root in stream.roots() {
                    let Ok(crd) = asyncapi_guard::engine::document::value::to_json(root, 200)
                    else {
                        continue;
                    };
                    let spec = &crd["spec"];
                    let key = (
                        spec["group"].as_str().unwrap_or_default().to_owned(),
                        spec["names"]["kind"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    );
                    if let Some(schema) = spec["versions"][0].pointer("/schema/openAPIV3Schema") {
                        schemas.insert(key, schema.clone());
                    }
                }
            }
            schemas
        })
        .get(&(group.to_owned(), kind.to_owned()))
}

fn check_schema(schema: &Value, value: &Value, at: &str, causes: &mut Vec<Cause>) {
    let name = |key: &str| {
        if at.is_empty() {
            key.to_owned()
        } else {
            format!("{at}.{key}")
        }
    };
    let in_body =
        |rule: String| format!("{} in body {rule}", if at.is_empty() { "body" } else { at });
    if value.is_null() {
        return;
    }
    let wanted = schema["type"].as_str().unwrap_or_default();
    let fits = match wanted {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    };
    if !fits {
        causes.push(Cause {
            reason: "FieldValueTypeInvalid",
            message: format!(
                "Invalid value: \"{}\": {at} in body must be of type {wanted}",
                kind_of(value)
            ),
            field: at.to_owned(),
        });
        return;
    }
    if let Some(pattern) = schema["pattern"].as_str()
        && let Some(text) = value.as_str()
        && !matches_pattern(pattern, text)
    {
        causes.push(invalid(
            at.to_owned(),
            value,
            &in_body(format!("should match '{pattern}'")),
        ));
    }
    if let (Some(min), Some(text)) = (schema["minLength"].as_u64(), value.as_str())
        && (text.chars().count() as u64) < min
    {
        causes.push(invalid(
            at.to_owned(),
            value,
            &in_body(format!("should be at least {min} chars long")),
        ));
    }
    if let (Some(min), Some(items)) = (schema["minItems"].as_u64(), value.as_array())
        && (items.len() as u64) < min
    {
        causes.push(invalid(
            at.to_owned(),
            &json!(items.len()),
            &in_body(format!("should have at least {min} items")),
        ));
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!("Unsupported value: {value}"),
            field: at.to_owned(),
        });
    }
    if schema["format"] == "date-time"
        && let Some(text) = value.as_str()
        && text.parse::<k8s_openapi::jiff::Timestamp>().is_err()
    {
        causes.push(invalid(
            at.to_owned(),
            value,
            &in_body("must be of type date-time".to_owned()),
        ));
    }
    if let Some(object) = value.as_object() {
        for key in schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(key) {
                causes.push(required(name(key), ""));
            }
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (key, child) in object {
                if let Some(child_schema) = properties.get(key) {
                    check_schema(child_schema, child, &name(key), causes);
                }
            }
        }
    }
    if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_schema(item_schema, item, &format!("{at}[{i}]"), causes);
        }
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}

/// The patterns of the chart's CRDs, by regex-automata (the crate's own regex engine).
fn matches_pattern(pattern: &str, text: &str) -> bool {
    regex_automata::meta::Regex::new(pattern).is_ok_and(|re| re.is_match(text))
}
