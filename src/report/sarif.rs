//! `--format sarif`: SARIF 2.1.0, as GitHub code scanning takes it.

use serde_json::{Value, json};

use super::DocumentReport;
use crate::engine::finding::{Finding, Mode, RuleId};
use crate::engine::rules;

const INFORMATION_URI: &str = "https://github.com/asyncapi-guard/asyncapi-guard";

fn level(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "error",
        Mode::Warn => "warning",
        Mode::Audit | Mode::Off => "note",
    }
}

/// `server-security-missing` → `ServerSecurityMissing`, SARIF's readable rule name.
fn rule_name(rule: RuleId) -> String {
    rule.as_str()
        .split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rule_descriptor(rule: RuleId) -> Value {
    let info = rules::info(rule);
    json!({
        "id": rule.as_str(),
        "name": rule_name(rule),
        "shortDescription": {"text": info.summary},
        "fullDescription": {"text": info.summary},
        "help": {"text": info.help, "markdown": info.help},
        "helpUri": format!("{INFORMATION_URI}#rules"),
        "defaultConfiguration": {"level": "error"},
        "properties": {"tags": ["security", "asyncapi"]},
    })
}

fn result(report: &DocumentReport, finding: &Finding) -> Value {
    // GitHub needs a line in the artifact: a document embedded in a manifest points at the
    // key that holds it, and says in the message where in the document the finding is.
    let (pos, embedded) = match report.embedded_at {
        Some(at) => (at, true),
        None => (finding.pos, false),
    };
    let mut text = finding.message.clone();
    if let Some(hint) = &finding.hint {
        text.push_str("; ");
        text.push_str(hint);
    }
    if embedded && finding.pos.is_known() {
        text.push_str(&format!(
            " (in {} at line {}, column {})",
            report.label, finding.pos.line, finding.pos.column
        ));
    }
    let rule_index = RuleId::ALL
        .iter()
        .position(|r| *r == finding.rule)
        .unwrap_or(0);
    let mut result = json!({
        "ruleId": finding.rule.as_str(),
        "ruleIndex": rule_index,
        "level": level(finding.mode),
        "message": {"text": text},
        "locations": [{
            "physicalLocation": {
                "artifactLocation": {"uri": report.artifact},
                "region": {"startLine": pos.line.max(1), "startColumn": pos.column.max(1)},
            },
            "logicalLocations": [{"fullyQualifiedName": format!("{}{}", report.file, finding.path), "kind": "member"}],
        }],
        "partialFingerprints": {"asyncapiGuard/v1": format!("{}:{}:{}", report.file, finding.rule, finding.path)},
        "properties": {"unguarded": report.unguarded.is_some()},
    });
    // Code scanning shows an accepted, external suppression as dismissed, not open.
    if let Some(waiver) = &finding.waiver {
        result["suppressions"] = json!([{
            "kind": "external",
            "status": "accepted",
            "justification": waiver.to_string(),
        }]);
    }
    result
}

pub fn render(reports: &[DocumentReport]) -> String {
    let results: Vec<Value> = reports
        .iter()
        .flat_map(|r| r.evaluation.findings.iter().map(move |f| result(r, f)))
        .collect();
    let sarif = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "asyncapi-guard",
                "informationUri": INFORMATION_URI,
                "version": env!("CARGO_PKG_VERSION"),
                "rules": RuleId::ALL.iter().map(|r| rule_descriptor(*r)).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    });
    let mut text = serde_json::to_string_pretty(&sarif).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_pascal_case() {
        assert_eq!(
            rule_name(RuleId::SecurityRefExternal),
            "SecurityRefExternal"
        );
    }
}
