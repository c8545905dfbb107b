//! The engine on AsyncAPI-shaped documents, each rendered as block YAML and as JSON:
//! - the verdict and the findings (rule, path) are the same for both renderings;
//! - every finding's path resolves to a node of the document, and its line and column are
//!   inside the text;
//! - `allowed` holds exactly when no finding is enforced.
#![no_main]

use std::fmt::Write as _;

use arbitrary::Arbitrary;
use asyncapi_guard::engine::document::{self, Limits, pointer};
use asyncapi_guard::engine::finding::Mode;
use asyncapi_guard::engine::{Engine, Overrides};
use libfuzzer_sys::fuzz_target;

/// A small tree; names come from vocabularies that hit the rules.
#[derive(Arbitrary, Debug)]
enum Node {
    Null,
    Bool(bool),
    Int(i16),
    Text(Word),
    List(Vec<Node>),
    Map(Vec<(Word, Node)>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Word {
    Production,
    ProdEu,
    Staging,
    NonProd,
    EnvProduction,
    Security,
    Servers,
    Components,
    SecuritySchemes,
    Type,
    UserPassword,
    Oauth2,
    ScramSha256,
    Flows,
    Scopes,
    AvailableScopes,
    Tags,
    Name,
    Ref,
    RefToScheme,
    RefToMissing,
    RefExternal,
    Host,
    Protocol,
    Operations,
    Channels,
    Empty,
    Quote,
    Unicode,
    Number,
}

impl Word {
    fn text(self) -> &'static str {
        match self {
            Word::Production => "production",
            Word::ProdEu => "prod-eu",
            Word::Staging => "staging",
            Word::NonProd => "non-prod",
            Word::EnvProduction => "env:production",
            Word::Security => "security",
            Word::Servers => "servers",
            Word::Components => "components",
            Word::SecuritySchemes => "securitySchemes",
            Word::Type => "type",
            Word::UserPassword => "userPassword",
            Word::Oauth2 => "oauth2",
            Word::ScramSha256 => "scramSha256",
            Word::Flows => "flows",
            Word::Scopes => "scopes",
            Word::AvailableScopes => "availableScopes",
            Word::Tags => "tags",
            Word::Name => "name",
            Word::Ref => "$ref",
            Word::RefToScheme => "#/components/securitySchemes/production",
            Word::RefToMissing => "#/components/securitySchemes/missing",
            Word::RefExternal => "other.yaml#/components/securitySchemes/x",
            Word::Host => "host",
            Word::Protocol => "protocol",
            Word::Operations => "operations",
            Word::Channels => "channels",
            Word::Empty => "",
            Word::Quote => "it's \"quoted\"\\",
            Word::Unicode => "é🚀",
            Word::Number => "1.0",
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Document {
    version: u8,
    servers: Vec<(Word, Node)>,
    components: Node,
    rest: Vec<(Word, Node)>,
}

const VERSIONS: [&str; 9] = [
    "2.0.0", "2.3.0", "2.5.0", "2.6.0", "3.0.0", "3.1.0", "3.0.0", "1.2.0", "3.0",
];

/// A scalar as JSON writes it: also valid YAML 1.2 in flow and block context.
fn quoted(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

fn json(node: &Node, out: &mut String) {
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Node::Text(w) => out.push_str(&quoted(w.text())),
        Node::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                json(item, out);
            }
            out.push(']');
        }
        Node::Map(entries) => {
            out.push('{');
            let mut seen = Vec::new();
            for (key, value) in entries {
                if seen.contains(&key.text()) {
                    continue; // duplicate keys are a refusal of their own
                }
                if !seen.is_empty() {
                    out.push(',');
                }
                seen.push(key.text());
                out.push_str(&quoted(key.text()));
                out.push(':');
                json(value, out);
            }
            out.push('}');
        }
    }
}

fn is_collection(node: &Node) -> bool {
    matches!(node, Node::List(items) if !items.is_empty())
        || matches!(node, Node::Map(entries) if !entries.is_empty())
}

/// Block style, two spaces per level; empty collections and scalars in flow style.
fn yaml(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::List(items) if !items.is_empty() => {
            for item in items {
                out.push_str(&pad);
                out.push('-');
                if is_collection(item) {
                    out.push('\n');
                    yaml(item, indent + 2, out);
                } else {
                    out.push(' ');
                    json(item, out);
                    out.push('\n');
                }
            }
        }
        Node::Map(entries) if !entries.is_empty() => {
            let mut seen = Vec::new();
            for (key, value) in entries {
                if seen.contains(&key.text()) {
                    continue;
                }
                seen.push(key.text());
                out.push_str(&pad);
                out.push_str(&quoted(key.text()));
                out.push(':');
                if is_collection(value) {
                    out.push('\n');
                    yaml(value, indent + 2, out);
                } else {
                    out.push(' ');
                    json(value, out);
                    out.push('\n');
                }
            }
        }
        other => {
            out.push_str(&pad);
            json(other, out);
            out.push('\n');
        }
    }
}

fuzz_target!(|document: Document| {
    let version = VERSIONS[document.version as usize % VERSIONS.len()];
    let tree = Node::Map(
        [
            (Word::Servers, Node::Map(document.servers)),
            (Word::Components, document.components),
        ]
        .into_iter()
        .chain(document.rest)
        .collect(),
    );
    // `asyncapi` first, then the generated fields.
    let mut json_text = format!("{{\"asyncapi\":{}", quoted(version));
    let mut body = String::new();
    json(&tree, &mut body);
    if body.len() > 2 {
        json_text.push(',');
        json_text.push_str(&body[1..]);
    } else {
        json_text.push('}');
    }
    let mut yaml_text = format!("asyncapi: {}\n", quoted(version));
    yaml(&tree, 0, &mut yaml_text);

    let engine = Engine::default();
    let overrides = Overrides::default();
    let from_yaml = engine.evaluate_text(&yaml_text, &overrides);
    let from_json = engine.evaluate_text(&json_text, &overrides);
    let key = |e: &asyncapi_guard::engine::Evaluation| {
        let mut pairs: Vec<(String, String)> = e
            .findings
            .iter()
            .map(|f| (f.rule.to_string(), f.path.clone()))
            .collect();
        pairs.sort();
        (e.allowed(), pairs)
    };
    assert_eq!(
        key(&from_yaml),
        key(&from_json),
        "YAML:\n{yaml_text}\nJSON:\n{json_text}"
    );

    for (text, evaluation) in [(&yaml_text, &from_yaml), (&json_text, &from_json)] {
        assert_eq!(
            evaluation.allowed(),
            !evaluation.findings.iter().any(|f| f.mode == Mode::Enforce)
        );
        let Ok(stream) = document::load(text, &Limits::default()) else {
            continue;
        };
        let Some(root) = stream.roots().next() else {
            continue;
        };
        let lines: Vec<&str> = text.split('\n').collect();
        for finding in &evaluation.findings {
            if !finding.path.is_empty() {
                assert!(
                    pointer::resolve(root, &finding.path).is_some(),
                    "{} does not resolve in\n{text}",
                    finding.path
                );
            }
            if finding.pos.is_known() {
                let line = lines.get(finding.pos.line as usize - 1);
                assert!(
                    line.is_some_and(|l| finding.pos.column as usize <= l.chars().count() + 1),
                    "{:?} is outside\n{text}",
                    finding.pos
                );
            }
        }
    }
});
