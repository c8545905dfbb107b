//! The one finding type every output renders.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::document::Pos;

/// The rule ids of docs/policy.md. Declared most severe first: sorting by id sorts by severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleId {
    DocumentInvalid,
    ServerSecurityMissing,
    ServerSecurityAnonymous,
    SecuritySchemeUndefined,
    SecurityRefExternal,
    SecuritySchemeInvalid,
    SecurityScopeUndefined,
}

impl RuleId {
    pub const ALL: [RuleId; 7] = [
        RuleId::DocumentInvalid,
        RuleId::ServerSecurityMissing,
        RuleId::ServerSecurityAnonymous,
        RuleId::SecuritySchemeUndefined,
        RuleId::SecurityRefExternal,
        RuleId::SecuritySchemeInvalid,
        RuleId::SecurityScopeUndefined,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::DocumentInvalid => "document-invalid",
            RuleId::ServerSecurityMissing => "server-security-missing",
            RuleId::ServerSecurityAnonymous => "server-security-anonymous",
            RuleId::SecuritySchemeUndefined => "security-scheme-undefined",
            RuleId::SecurityRefExternal => "security-ref-external",
            RuleId::SecuritySchemeInvalid => "security-scheme-invalid",
            RuleId::SecurityScopeUndefined => "security-scope-undefined",
        }
    }

    /// How bad a finding of this rule is, in the words policy reports use (OpenReports,
    /// Policy Reporter): an open production server is the worst; a document that cannot be
    /// judged hides whatever it holds.
    pub fn severity(self) -> Severity {
        match self {
            RuleId::ServerSecurityMissing | RuleId::ServerSecurityAnonymous => Severity::High,
            RuleId::SecuritySchemeUndefined | RuleId::DocumentInvalid => Severity::High,
            RuleId::SecuritySchemeInvalid | RuleId::SecurityScopeUndefined => Severity::Medium,
            RuleId::SecurityRefExternal => Severity::Low,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule \"{0}\"")]
pub struct UnknownRule(pub String);

impl FromStr for RuleId {
    type Err = UnknownRule;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RuleId::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

/// What a finding does. Ordered from least to most strict, so the effective mode of a
/// finding is the minimum of the modes that apply to it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Not evaluated at all.
    Off,
    /// Allowed; recorded (audit annotations, logs, metrics).
    Audit,
    /// Allowed; shown to the user as a warning.
    Warn,
    /// Denied.
    #[default]
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Audit => "audit",
            Mode::Warn => "warn",
            Mode::Enforce => "enforce",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode \"{0}\" (expected enforce, warn, audit or off)")]
pub struct UnknownMode(pub String);

impl FromStr for Mode {
    type Err = UnknownMode;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Mode::Off),
            "audit" => Ok(Mode::Audit),
            "warn" => Ok(Mode::Warn),
            "enforce" => Ok(Mode::Enforce),
            other => Err(UnknownMode(other.to_owned())),
        }
    }
}

/// A named, time-boxed acceptance of findings (in a cluster, an `AsyncAPIException`): a
/// finding it covers is still reported, but does not deny. Like SARIF's suppressions, it
/// says who accepted the finding, why, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Waiver {
    /// What grants it: `asyncapi-guard/legacy-orders` (namespace/name of the exception).
    pub by: String,
    /// When it stops applying, RFC 3339.
    pub expires: String,
    pub reason: String,
    /// Whether it expires within the warning window: the warning says so.
    pub expiring: bool,
}

/// `excepted by asyncapi-guard/legacy-orders until 2027-03-01T00:00:00Z: <reason>`, or,
/// when it is about to expire, `...legacy-orders, which EXPIRES SOON at ...`: how every
/// output names what excepts a finding.
impl fmt::Display for Waiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let until = if self.expiring {
            ", which EXPIRES SOON at"
        } else {
            " until"
        };
        write!(
            f,
            "excepted by {}{until} {}: {}",
            self.by, self.expires, self.reason
        )
    }
}

/// One violation of one rule at one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    /// JSON pointer into the document, to the offending node (`""` for the whole document).
    pub path: String,
    /// Where that node is written; unknown for documents without source text.
    pub pos: Pos,
    /// One sentence a person can act on.
    pub message: String,
    /// The fix, where one helps.
    pub hint: Option<String>,
    /// What the finding does, after the policy's, the rule's and the request's modes.
    pub mode: Mode,
    /// The exception that covers it, if one does: then it does not deny.
    pub waiver: Option<std::sync::Arc<Waiver>>,
}

impl Finding {
    /// A finding of `rule` at `path` (written at `pos`), enforced until the engine sets its
    /// mode.
    pub fn new(rule: RuleId, path: &str, pos: Pos, message: &str, hint: Option<&str>) -> Finding {
        Finding {
            rule,
            path: path.to_owned(),
            pos,
            message: message.to_owned(),
            hint: hint.map(str::to_owned),
            mode: Mode::Enforce,
            waiver: None,
        }
    }

    /// Whether it refuses the object: enforced and not covered by an exception.
    pub fn denies(&self) -> bool {
        self.mode == Mode::Enforce && self.waiver.is_none()
    }

    /// What it does, as metrics and logs name it: its mode, or `excepted`.
    pub fn effect(&self) -> &'static str {
        if self.waiver.is_some() {
            "excepted"
        } else {
            self.mode.as_str()
        }
    }

    /// The order findings are shown in: denying before warning, most severe rule first,
    /// then in document order.
    pub fn display_order(&self, other: &Finding) -> std::cmp::Ordering {
        other
            .mode
            .cmp(&self.mode)
            .then(self.rule.cmp(&other.rule))
            .then(self.pos.cmp(&other.pos))
            .then(self.path.cmp(&other.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_parse_and_print() {
        for rule in RuleId::ALL {
            assert_eq!(rule.as_str().parse::<RuleId>().unwrap(), rule);
        }
        assert!("server-security".parse::<RuleId>().is_err());
    }

    #[test]
    fn modes_are_ordered_by_strictness() {
        assert!(Mode::Off < Mode::Audit && Mode::Audit < Mode::Warn && Mode::Warn < Mode::Enforce);
        assert_eq!(Mode::Enforce.min(Mode::Warn), Mode::Warn);
    }
}
