//! The engine's configuration: modes, the production selector, load limits.

use std::collections::BTreeMap;

use super::document::Limits;
use super::finding::{Mode, RuleId};
use super::production::ProductionSelector;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    /// The mode of the whole policy.
    pub mode: Mode,
    /// Per-rule modes; a rule not listed is `enforce`.
    pub rule_modes: BTreeMap<RuleId, Mode>,
    pub production: ProductionSelector,
    pub limits: Limits,
}

impl Policy {
    /// The mode a finding of `rule` gets: each layer can only relax the one above it.
    pub fn rule_mode(&self, rule: RuleId, request: Mode) -> Mode {
        let rule_mode = self.rule_modes.get(&rule).copied().unwrap_or(Mode::Enforce);
        self.mode.min(rule_mode).min(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_strict_layer_wins() {
        let mut policy = Policy::default();
        assert_eq!(
            policy.rule_mode(RuleId::SecurityScopeUndefined, Mode::Enforce),
            Mode::Enforce
        );
        policy
            .rule_modes
            .insert(RuleId::SecurityScopeUndefined, Mode::Warn);
        assert_eq!(
            policy.rule_mode(RuleId::SecurityScopeUndefined, Mode::Enforce),
            Mode::Warn
        );
        assert_eq!(
            policy.rule_mode(RuleId::SecurityScopeUndefined, Mode::Audit),
            Mode::Audit
        );
        assert_eq!(
            policy.rule_mode(RuleId::ServerSecurityMissing, Mode::Warn),
            Mode::Warn
        );
        policy.mode = Mode::Audit;
        assert_eq!(
            policy.rule_mode(RuleId::ServerSecurityMissing, Mode::Enforce),
            Mode::Audit
        );
        policy.rule_modes.insert(RuleId::DocumentInvalid, Mode::Off);
        assert_eq!(
            policy.rule_mode(RuleId::DocumentInvalid, Mode::Enforce),
            Mode::Off
        );
    }
}
