//! `--format json`: docs/policy.md, "What is reported".

use serde::Serialize;

use super::DocumentReport;
use crate::engine::finding::{Finding, Mode, RuleId};

#[derive(Serialize)]
struct Output<'a> {
    files: Vec<File<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct File<'a> {
    file: &'a str,
    allowed: bool,
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    unguarded: bool,
    violations: Vec<Violation<'a>>,
}

#[derive(Serialize)]
struct Violation<'a> {
    rule: RuleId,
    path: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    column: Option<u32>,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'a str>,
    mode: Mode,
    /// The exception that covers it: then it does not deny.
    #[serde(skip_serializing_if = "Option::is_none")]
    excepted: Option<Excepted<'a>>,
}

#[derive(Serialize)]
struct Excepted<'a> {
    by: &'a str,
    expires: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct Summary {
    documents: usize,
    allowed: usize,
    denied: usize,
}

fn violation(finding: &Finding) -> Violation<'_> {
    let known = finding.pos.is_known();
    Violation {
        rule: finding.rule,
        path: &finding.path,
        line: known.then_some(finding.pos.line),
        column: known.then_some(finding.pos.column),
        message: &finding.message,
        hint: finding.hint.as_deref(),
        mode: finding.mode,
        excepted: finding.waiver.as_deref().map(|waiver| Excepted {
            by: &waiver.by,
            expires: &waiver.expires,
            reason: &waiver.reason,
        }),
    }
}

pub fn render(reports: &[DocumentReport]) -> String {
    let files: Vec<File<'_>> = reports
        .iter()
        .map(|r| File {
            file: &r.file,
            allowed: r.evaluation.allowed(),
            version: r.evaluation.version.as_deref(),
            unguarded: r.unguarded.is_some(),
            violations: r.evaluation.findings.iter().map(violation).collect(),
        })
        .collect();
    let allowed = files.iter().filter(|f| f.allowed).count();
    let output = Output {
        summary: Summary {
            documents: files.len(),
            allowed,
            denied: files.len() - allowed,
        },
        files,
    };
    // Serialising plain structs of strings and numbers cannot fail.
    let mut text = serde_json::to_string_pretty(&output).unwrap_or_default();
    text.push('\n');
    text
}
