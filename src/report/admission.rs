//! What an admission response says: the denial message (docs/policy.md, "What is
//! reported"), warnings in `warn` mode and for findings an exception covers, and annotations
//! in `audit` mode.

use std::collections::BTreeMap;

use super::text::{finding_line, location};
use crate::engine::Evaluation;
use crate::engine::finding::{Finding, Mode};
use crate::kubernetes::extract::ObjectId;

/// One document of the object, and how its findings are labelled (`asyncapi.yaml`, `spec`).
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    pub label: &'a str,
    pub evaluation: &'a Evaluation,
}

/// The API server truncates a warning past 256 characters. docs/policy.md asks for 120 "where it
/// can be": a warning is that short when its finding is, and uses the rest rather than lose
/// the hint (the "did you mean" is the part people act on).
pub const WARNING_MAX_CHARS: usize = 256;

/// The findings of all documents of the object that `keep` keeps, most severe first.
fn findings<'a>(
    documents: &[Judged<'a>],
    keep: impl Fn(&Finding) -> bool,
) -> Vec<(&'a str, &'a Finding)> {
    let mut out: Vec<(usize, &'a str, &'a Finding)> = documents
        .iter()
        .enumerate()
        .flat_map(|(i, d)| {
            d.evaluation
                .findings
                .iter()
                .filter(|f| keep(f))
                .map(move |f| (i, d.label, f))
        })
        .collect();
    out.sort_by(|a, b| a.2.display_order(b.2).then(a.0.cmp(&b.0)));
    out.into_iter().map(|(_, label, f)| (label, f)).collect()
}

/// The first line names the object, the first finding and how many more there are (Argo CD
/// shows only this line); then one line per finding. Findings an exception covers do not
/// deny, and are not in it.
pub fn denial_message(object: &ObjectId, documents: &[Judged<'_>]) -> Option<String> {
    let denied = findings(documents, Finding::denies);
    let (label, first) = denied.first()?;
    let more = match denied.len() {
        1 => String::new(),
        n => format!(" (+{} more)", n - 1),
    };
    let mut message = format!(
        "{object}: {} {} [{}]{more}",
        location(label, first),
        first.message,
        first.rule
    );
    for (label, finding) in &denied {
        message.push('\n');
        message.push_str(&finding_line(label, finding));
    }
    Some(message)
}

/// One warning per `warn` finding: the rule id first, the hint last; a long message is cut
/// in the middle so that both survive. Then one per finding an exception covers (in
/// `enforce` or `warn` mode): the finding's line, and the exception, its expiry and its
/// reason in place of the hint.
pub fn warnings(documents: &[Judged<'_>]) -> Vec<String> {
    let warned = findings(documents, |f| f.mode == Mode::Warn && f.waiver.is_none())
        .into_iter()
        .map(|(label, f)| {
            let tail = f
                .hint
                .as_ref()
                .map(|hint| format!("; {hint}"))
                .unwrap_or_default();
            warning(label, f, &tail)
        });
    let excepted = findings(documents, |f| {
        matches!(f.mode, Mode::Enforce | Mode::Warn) && f.waiver.is_some()
    })
    .into_iter()
    .filter_map(|(label, f)| Some(warning(label, f, &format!("; {}", f.waiver.as_deref()?))));
    warned.chain(excepted).collect()
}

/// `asyncapi-guard: [rule] location message<tail>`, within the API server's length.
fn warning(label: &str, f: &Finding, tail: &str) -> String {
    let head = format!("asyncapi-guard: [{}] {} ", f.rule, location(label, f));
    let room = WARNING_MAX_CHARS
        .saturating_sub(head.chars().count() + tail.chars().count())
        .max(WARNING_MAX_CHARS / 4);
    truncate(
        &format!("{head}{}{tail}", truncate(&f.message, room)),
        WARNING_MAX_CHARS,
    )
}

/// Audit annotations for `audit` findings (the API server prefixes each key with the
/// webhook's name).
pub fn audit_annotations(documents: &[Judged<'_>]) -> BTreeMap<String, String> {
    let audited = findings(documents, |f| f.mode == Mode::Audit);
    if audited.is_empty() {
        return BTreeMap::new();
    }
    let lines: Vec<String> = audited
        .iter()
        .map(|(label, f)| finding_line(label, f))
        .collect();
    BTreeMap::from([
        ("violations".to_owned(), audited.len().to_string()),
        ("findings".to_owned(), lines.join("\n")),
    ])
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::Pos;
    use crate::engine::finding::RuleId;

    fn f(
        rule: RuleId,
        path: &str,
        line: u32,
        mode: Mode,
        message: &str,
        hint: Option<&str>,
    ) -> Finding {
        let pos = Pos {
            line,
            column: if line == 0 { 0 } else { 3 },
        };
        Finding {
            mode,
            ..Finding::new(rule, path, pos, message, hint)
        }
    }

    fn id() -> ObjectId {
        ObjectId::config_map("payments", "orders-api")
    }

    #[test]
    fn denial_matches_the_policy_example() {
        let evaluation = Evaluation {
            version: Some("2.6.0".into()),
            findings: vec![
                f(
                    RuleId::ServerSecurityMissing,
                    "/servers/production",
                    6,
                    Mode::Enforce,
                    "production server \"production\" declares no security",
                    Some("reference a scheme from components.securitySchemes"),
                ),
                Finding {
                    pos: Pos {
                        line: 14,
                        column: 11,
                    },
                    ..f(
                        RuleId::SecuritySchemeUndefined,
                        "/servers/staging/security/0",
                        14,
                        Mode::Enforce,
                        "scheme \"user-pass\" is not defined in components.securitySchemes",
                        Some("did you mean \"user-password\"?"),
                    )
                },
            ],
        };
        let message = denial_message(
            &id(),
            &[Judged {
                label: "asyncapi.yaml",
                evaluation: &evaluation,
            }],
        )
        .unwrap();
        assert_eq!(message, "ConfigMap payments/orders-api: asyncapi.yaml:6:3 production server \"production\" declares no security [server-security-missing] (+1 more)
- asyncapi.yaml:6:3 /servers/production [server-security-missing] production server \"production\" declares no security; reference a scheme from components.securitySchemes
- asyncapi.yaml:14:11 /servers/staging/security/0 [security-scheme-undefined] scheme \"user-pass\" is not defined in components.securitySchemes; did you mean \"user-password\"?");
    }

    #[test]
    fn no_denial_without_enforced_findings_and_warnings_are_short() {
        let long = "x".repeat(400);
        let evaluation = Evaluation {
            version: None,
            findings: vec![f(
                RuleId::SecurityScopeUndefined,
                "/a",
                2,
                Mode::Warn,
                &long,
                None,
            )],
        };
        let docs = [Judged {
            label: "asyncapi.yaml",
            evaluation: &evaluation,
        }];
        assert_eq!(denial_message(&id(), &docs), None);
        let warnings = warnings(&docs);
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].chars().count(), WARNING_MAX_CHARS);
        assert!(
            warnings[0]
                .starts_with("asyncapi-guard: [security-scope-undefined] asyncapi.yaml:2:3 ")
        );
        assert!(audit_annotations(&docs).is_empty());
    }

    #[test]
    fn a_warning_keeps_its_hint_when_the_message_is_long() {
        let evaluation = Evaluation {
            version: None,
            findings: vec![f(
                RuleId::SecuritySchemeUndefined,
                "/a",
                2,
                Mode::Warn,
                &format!("scheme \"user-pass\" is not defined {}", "y".repeat(300)),
                Some("did you mean \"user-password\"?"),
            )],
        };
        let docs = [Judged {
            label: "asyncapi.yaml",
            evaluation: &evaluation,
        }];
        let warnings = warnings(&docs);
        assert_eq!(warnings[0].chars().count(), WARNING_MAX_CHARS);
        assert!(
            warnings[0].ends_with("…; did you mean \"user-password\"?"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn findings_of_several_keys_are_ordered_by_severity() {
        let a = Evaluation {
            version: None,
            findings: vec![f(
                RuleId::SecurityScopeUndefined,
                "/x",
                1,
                Mode::Enforce,
                "scope",
                None,
            )],
        };
        let b = Evaluation {
            version: None,
            findings: vec![f(
                RuleId::ServerSecurityMissing,
                "/y",
                9,
                Mode::Enforce,
                "missing",
                None,
            )],
        };
        let message = denial_message(
            &id(),
            &[
                Judged {
                    label: "a.yaml",
                    evaluation: &a,
                },
                Judged {
                    label: "b.yaml",
                    evaluation: &b,
                },
            ],
        )
        .unwrap();
        let lines: Vec<&str> = message.lines().collect();
        assert!(
            lines[0].ends_with("b.yaml:9:3 missing [server-security-missing] (+1 more)"),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("- b.yaml:9:3"));
        assert!(lines[2].starts_with("- a.yaml:1:3"));
    }
}
