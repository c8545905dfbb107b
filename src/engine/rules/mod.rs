//! The rules of docs/policy.md, one module each, named after the rule id.
//!
//! Every rule reads the same [`Analysis`]; none of them parses, resolves or formats.

pub mod document_invalid;
pub mod security_ref_external;
pub mod security_scheme_invalid;
pub mod security_scheme_undefined;
pub mod security_scope_undefined;
pub mod server_security_anonymous;
pub mod server_security_missing;

use super::analysis::Analysis;
use super::document::pointer::Located;
use super::finding::{Finding, Mode, RuleId};

/// What a rule is, for help texts, SARIF and the README.
#[derive(Debug)]
pub struct RuleInfo {
    pub id: RuleId,
    /// One line: what the rule finds.
    pub summary: &'static str,
    /// How to fix what it finds.
    pub help: &'static str,
}

pub fn info(id: RuleId) -> &'static RuleInfo {
    match id {
        RuleId::DocumentInvalid => &document_invalid::INFO,
        RuleId::ServerSecurityMissing => &server_security_missing::INFO,
        RuleId::ServerSecurityAnonymous => &server_security_anonymous::INFO,
        RuleId::SecuritySchemeUndefined => &security_scheme_undefined::INFO,
        RuleId::SecurityRefExternal => &security_ref_external::INFO,
        RuleId::SecuritySchemeInvalid => &security_scheme_invalid::INFO,
        RuleId::SecurityScopeUndefined => &security_scope_undefined::INFO,
    }
}

pub(crate) type Check = for<'d> fn(&Analysis<'d>, &mut Vec<Finding>);

/// The rules that judge a loaded document; `document-invalid` decides whether there is one.
pub(crate) const DOCUMENT_RULES: [(RuleId, Check); 6] = [
    (
        RuleId::ServerSecurityMissing,
        server_security_missing::check,
    ),
    (
        RuleId::ServerSecurityAnonymous,
        server_security_anonymous::check,
    ),
    (
        RuleId::SecuritySchemeUndefined,
        security_scheme_undefined::check,
    ),
    (RuleId::SecurityRefExternal, security_ref_external::check),
    (
        RuleId::SecuritySchemeInvalid,
        security_scheme_invalid::check,
    ),
    (
        RuleId::SecurityScopeUndefined,
        security_scope_undefined::check,
    ),
];

/// A finding at `at`; the engine sets its mode.
pub(crate) fn finding(
    rule: RuleId,
    at: &Located<'_>,
    message: String,
    hint: Option<String>,
) -> Finding {
    Finding {
        rule,
        path: at.path(),
        pos: at.pos(),
        message,
        hint,
        mode: Mode::Enforce,
        waiver: None,
    }
}

/// The candidate closest to `wanted`, if one is close enough to be a likely typo.
pub(crate) fn did_you_mean<'c>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let wanted_lower = wanted.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != wanted)
        .map(|c| {
            (
                strsim::damerau_levenshtein(&wanted_lower, &c.to_lowercase()),
                c,
            )
        })
        .filter(|(distance, c)| {
            let longest = wanted.chars().count().max(c.chars().count());
            *distance <= (longest / 3).max(1)
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The last token of a pointer, decoded: the name of a component.
pub(crate) fn last_token(path: &str) -> String {
    let token = path.rsplit('/').next().unwrap_or(path);
    token.replace("~1", "/").replace("~0", "~")
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::engine::finding::RuleId;
    use crate::engine::{Engine, Overrides};

    /// The (rule, path) pairs the default engine finds in `src`.
    pub fn findings(src: &str) -> Vec<(RuleId, String)> {
        let engine = Engine::default();
        let mut out: Vec<_> = engine
            .evaluate_bytes(src.as_bytes(), &Overrides::default())
            .findings
            .into_iter()
            .map(|f| (f.rule, f.path))
            .collect();
        out.sort();
        out
    }

    /// The findings of one rule, with messages and hints, for message tests.
    pub fn of_rule(src: &str, rule: RuleId) -> Vec<crate::engine::finding::Finding> {
        Engine::default()
            .evaluate_bytes(src.as_bytes(), &Overrides::default())
            .findings
            .into_iter()
            .filter(|f| f.rule == rule)
            .collect()
    }

    pub fn pairs(list: &[(RuleId, &str)]) -> Vec<(RuleId, String)> {
        let mut out: Vec<_> = list.iter().map(|(r, p)| (*r, (*p).to_owned())).collect();
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let names = ["user-password", "apiKey", "oauth"];
        assert_eq!(did_you_mean("user-pass", names), Some("user-password"));
        assert_eq!(did_you_mean("user_password", names), Some("user-password"));
        assert_eq!(did_you_mean("apikey", names), Some("apiKey"));
        assert_eq!(did_you_mean("ghostOperationScheme", names), None);
        assert_eq!(did_you_mean("x", names), None);
    }

    #[test]
    fn every_rule_has_info() {
        for rule in RuleId::ALL {
            assert_eq!(info(rule).id, rule);
            assert!(!info(rule).summary.is_empty() && !info(rule).help.is_empty());
        }
    }

    #[test]
    fn last_token_decodes() {
        assert_eq!(last_token("/components/securitySchemes/a~1b"), "a/b");
    }
}
