//! Which namespaces admission judges, and in which mode: the chart's webhook entries choose
//! by namespace labels (`asyncapi-guard.io/mode`, `asyncapi-guard.io/production`) and leave
//! out the excluded namespaces. The audit judges each object exactly as those entries would,
//! so that it never reports what admission lets through by design, nor calls compliant what
//! admission would refuse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Overrides;
use crate::engine::finding::Mode;

/// The namespace label that chooses the mode: `enforce`, `warn`, `audit` or `off`.
pub const MODE_LABEL: &str = "asyncapi-guard.io/mode";
/// The namespace label that makes every server production: `all`.
pub const PRODUCTION_LABEL: &str = "asyncapi-guard.io/production";

/// The chart renders this from `webhook.defaultMode` and its excluded namespaces, so that
/// it matches the webhook entries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespaceScope {
    /// The mode of namespaces without the mode label (or with a value it does not know).
    #[serde(default)]
    pub default_mode: Mode,
    /// Namespaces admission never judges.
    #[serde(default = "system_namespaces")]
    pub exclude: Vec<String>,
}

fn system_namespaces() -> Vec<String> {
    ["kube-system", "kube-public", "kube-node-lease"]
        .map(str::to_owned)
        .to_vec()
}

impl Default for NamespaceScope {
    fn default() -> Self {
        NamespaceScope {
            default_mode: Mode::Enforce,
            exclude: system_namespaces(),
        }
    }
}

/// Why an object is not judged at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its namespace is one admission never judges (`kube-system`, the release's own, ...).
    ExcludedNamespace,
    /// Its namespace is labelled `asyncapi-guard.io/mode=off`.
    NamespaceOff,
    /// A ConfigMap labelled `asyncapi-guard.io/document=false`.
    OptedOut,
}

impl NamespaceScope {
    pub fn is_excluded(&self, namespace: Option<&str>) -> bool {
        namespace.is_some_and(|ns| self.exclude.iter().any(|e| e == ns))
    }

    /// What admission applies to objects of `namespace` (with these labels), or why it does
    /// not judge them at all. Cluster-scoped objects (`None`) get the default mode.
    pub fn overrides_for(
        &self,
        namespace: Option<&str>,
        labels: &BTreeMap<String, String>,
    ) -> Result<Overrides, Skipped> {
        if self.is_excluded(namespace) {
            return Err(Skipped::ExcludedNamespace);
        }
        // As the webhook entries' selectors: a known value picks its entry, `off` none, and
        // any other value (or none) the default entry.
        let mode = match labels.get(MODE_LABEL).map(String::as_str) {
            Some("off") => return Err(Skipped::NamespaceOff),
            Some("enforce") => Mode::Enforce,
            Some("warn") => Mode::Warn,
            Some("audit") => Mode::Audit,
            _ => self.default_mode,
        };
        Ok(Overrides {
            mode,
            all_servers_production: labels.get(PRODUCTION_LABEL).is_some_and(|v| v == "all"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::labels;

    #[test]
    fn labels_choose_the_mode_as_the_webhook_entries_do() {
        let scope = NamespaceScope::default();
        let mode = |pairs: &[(&str, &str)]| {
            scope
                .overrides_for(Some("team-a"), &labels(pairs))
                .ok()
                .map(|o| (o.mode, o.all_servers_production))
        };
        assert_eq!(mode(&[]), Some((Mode::Enforce, false)));
        assert_eq!(mode(&[(MODE_LABEL, "warn")]), Some((Mode::Warn, false)));
        assert_eq!(mode(&[(MODE_LABEL, "audit")]), Some((Mode::Audit, false)));
        assert_eq!(mode(&[(MODE_LABEL, "off")]), None);
        assert_eq!(
            scope.overrides_for(Some("team-a"), &labels(&[(MODE_LABEL, "off")])),
            Err(Skipped::NamespaceOff)
        );
        assert_eq!(mode(&[(MODE_LABEL, "loud")]), Some((Mode::Enforce, false)));
        assert_eq!(
            mode(&[(MODE_LABEL, "warn"), (PRODUCTION_LABEL, "all")]),
            Some((Mode::Warn, true))
        );
        assert_eq!(
            mode(&[(PRODUCTION_LABEL, "some")]),
            Some((Mode::Enforce, false))
        );
    }

    #[test]
    fn excluded_namespaces_are_skipped_and_the_default_mode_applies_elsewhere() {
        let scope = NamespaceScope {
            default_mode: Mode::Warn,
            exclude: vec!["kube-system".into(), "asyncapi-guard".into()],
        };
        assert_eq!(
            scope.overrides_for(Some("asyncapi-guard"), &labels(&[])),
            Err(Skipped::ExcludedNamespace)
        );
        assert_eq!(
            scope
                .overrides_for(Some("payments"), &labels(&[]))
                .map(|o| o.mode),
            Ok(Mode::Warn)
        );
        assert_eq!(
            scope.overrides_for(None, &labels(&[])).map(|o| o.mode),
            Ok(Mode::Warn)
        );
    }
}
