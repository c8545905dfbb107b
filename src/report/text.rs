//! The text form of findings, shared by `check --format text` and the admission denial.

use std::fmt::Write as _;

use crate::kubernetes::extract::DOCUMENT_LABEL;

use super::DocumentReport;
use crate::engine::finding::{Finding, Mode};

/// Where a finding is: `label:line:column`, or, for a document without source text (a
/// custom resource), its path under the object: `spec/servers/production`.
pub fn location(label: &str, finding: &Finding) -> String {
    if finding.pos.is_known() {
        format!("{label}:{}:{}", finding.pos.line, finding.pos.column)
    } else {
        format!("{label}{}", finding.path)
    }
}

/// `- asyncapi.yaml:6:3 /servers/production [server-security-missing] message; hint`
pub fn finding_line(label: &str, finding: &Finding) -> String {
    let mut line = format!("- {}", location(label, finding));
    if finding.pos.is_known() && !finding.path.is_empty() {
        line.push(' ');
        line.push_str(&finding.path);
    }
    let _ = write!(line, " [{}] {}", finding.rule, finding.message);
    if let Some(hint) = &finding.hint {
        let _ = write!(line, "; {hint}");
    }
    line
}

/// What `check --format text` prints: every finding line, then a summary. The audit's
/// unguarded documents (never judged at admission) are listed apart, each with its lines.
pub fn render(reports: &[DocumentReport]) -> String {
    let mut out = String::new();
    let lines = |out: &mut String, report: &DocumentReport| {
        for finding in &report.evaluation.findings {
            out.push_str(&finding_line(&report.label, finding));
            if let Some(waiver) = &finding.waiver {
                let _ = write!(out, " ({waiver})");
            } else if finding.mode != Mode::Enforce {
                let _ = write!(out, " ({})", finding.mode);
            }
            out.push('\n');
        }
    };
    for report in reports.iter().filter(|r| r.unguarded.is_none()) {
        lines(&mut out, report);
    }
    let unguarded: Vec<&DocumentReport> =
        reports.iter().filter(|r| r.unguarded.is_some()).collect();
    if !unguarded.is_empty() {
        out.push_str(
            "unguarded: these ConfigMaps carry AsyncAPI without the asyncapi-guard.io/document label, so admission does not judge them\n",
        );
        let mut told = std::collections::BTreeSet::new();
        for report in unguarded {
            let verdict = if report.evaluation.allowed() {
                "meets the policy"
            } else {
                "violates the policy"
            };
            let _ = writeln!(
                out,
                "* {} (AsyncAPI {}): {verdict}",
                report.file,
                report.evaluation.version.as_deref().unwrap_or("?")
            );
            if let Some(object) = &report.unguarded
                && told.insert(object)
            {
                let _ = writeln!(
                    out,
                    "  to have admission judge {object}: kubectl label configmap{} {} {}=true",
                    object
                        .namespace
                        .as_deref()
                        .map(|ns| format!(" -n {ns}"))
                        .unwrap_or_default(),
                    object.name,
                    DOCUMENT_LABEL,
                );
            }
            lines(&mut out, report);
        }
    }
    let denied = reports.iter().filter(|r| !r.evaluation.allowed()).count();
    let excepted = reports
        .iter()
        .flat_map(|r| &r.evaluation.findings)
        .filter(|f| f.waiver.is_some())
        .count();
    let _ = write!(
        out,
        "{} document{} checked: {} allowed, {denied} denied",
        reports.len(),
        if reports.len() == 1 { "" } else { "s" },
        reports.len() - denied,
    );
    if excepted > 0 {
        let _ = write!(
            out,
            " ({excepted} finding{} excepted)",
            if excepted == 1 { "" } else { "s" }
        );
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::Pos;
    use crate::engine::finding::RuleId;

    fn finding(pos: Pos) -> Finding {
        Finding::new(
            RuleId::ServerSecurityMissing,
            "/servers/production",
            pos,
            "production server \"production\" declares no security",
            Some("reference a scheme from components.securitySchemes"),
        )
    }

    #[test]
    fn lines_with_and_without_positions() {
        assert_eq!(
            finding_line("asyncapi.yaml", &finding(Pos { line: 6, column: 3 })),
            "- asyncapi.yaml:6:3 /servers/production [server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes"
        );
        assert_eq!(
            finding_line("spec", &finding(Pos::UNKNOWN)),
            "- spec/servers/production [server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes"
        );
    }

    #[test]
    fn whole_document_findings_have_no_path() {
        let mut f = finding(Pos { line: 3, column: 1 });
        f.path.clear();
        f.rule = RuleId::DocumentInvalid;
        f.hint = None;
        f.message = "YAML syntax error: x".into();
        assert_eq!(
            finding_line("a.yaml", &f),
            "- a.yaml:3:1 [document-invalid] YAML syntax error: x"
        );
    }
}
