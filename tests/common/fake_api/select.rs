//! Label and field selectors, as kube-apiserver reads them.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    Exists(String),
    Absent(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector(Vec<Term>);

impl LabelSelector {
    /// `a=b,c,!d,e!=f,g in (x,y),h notin (z)`; `Err` with the API server's kind of message.
    pub fn parse(text: &str) -> Result<LabelSelector, String> {
        let mut terms = Vec::new();
        for raw in split_terms(text) {
            let term = raw.trim();
            if term.is_empty() {
                continue;
            }
            let words: Vec<&str> = term.split_whitespace().collect();
            let parsed = if let [key, op, rest @ ..] = words.as_slice()
                && (*op == "in" || *op == "notin")
            {
                let set = rest.join(" ");
                let values = set
                    .strip_prefix('(')
                    .and_then(|s| s.strip_suffix(')'))
                    .ok_or_else(|| format!("found '{set}', expected: '('"))?
                    .split(',')
                    .map(|v| v.trim().to_owned())
                    .collect();
                if *op == "in" {
                    Term::In((*key).to_owned(), values)
                } else {
                    Term::NotIn((*key).to_owned(), values)
                }
            } else if let Some(key) = term.strip_prefix('!') {
                Term::Absent(valid(key)?)
            } else if let Some((key, value)) = term.split_once("!=") {
                Term::NotEquals(valid(key)?, valid_value(value)?)
            } else if let Some((key, value)) =
                term.split_once("==").or_else(|| term.split_once('='))
            {
                Term::Equals(valid(key)?, valid_value(value)?)
            } else {
                Term::Exists(valid(term)?)
            };
            terms.push(parsed);
        }
        Ok(LabelSelector(terms))
    }

    pub fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|term| match term {
            Term::Exists(k) => get(k).is_some(),
            Term::Absent(k) => get(k).is_none(),
            Term::Equals(k, v) => get(k) == Some(v.as_str()),
            Term::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Term::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
            Term::NotIn(k, vs) => get(k).is_none_or(|l| vs.iter().all(|v| v != l)),
        })
    }
}

/// Splits on commas that are not inside a `( )` set.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
}

fn valid(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.contains(['=', '!', ' ', '(', ')']) {
        return Err(format!("found '{key}', expected: identifier"));
    }
    Ok(key.to_owned())
}

fn valid_value(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.contains(['=', '!', ' ']) {
        return Err("found '=', expected: ',' or 'end of string'".to_owned());
    }
    Ok(value.to_owned())
}

/// A field selector: only `metadata.name` and `metadata.namespace` are known, as for the
/// kinds this fake serves.
pub fn field_terms(text: &str) -> Result<Vec<(String, String, bool)>, String> {
    let mut terms = Vec::new();
    for term in text.split(',').filter(|t| !t.is_empty()) {
        let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
            (f, v, false)
        } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
            (f, v, true)
        } else {
            return Err(format!(
                "invalid selector: '{term}'; can't understand '{term}'"
            ));
        };
        if field != "metadata.name" && field != "metadata.namespace" {
            return Err(format!(
                "\"{field}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
            ));
        }
        terms.push((field.to_owned(), value.to_owned(), equal));
    }
    Ok(terms)
}

pub fn fields_match(terms: &[(String, String, bool)], object: &Value) -> bool {
    terms.iter().all(|(field, value, equal)| {
        let pointer = format!("/{}", field.replace('.', "/"));
        (object.pointer(&pointer).and_then(Value::as_str) == Some(value.as_str())) == *equal
    })
}
