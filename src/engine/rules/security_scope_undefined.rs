//! `security-scope-undefined`: an OAuth2 scope that a requirement needs is not declared by
//! the scheme's flows. v2 lists required scopes in the requirement; v3 in the scheme's own
//! `scopes`. Only valid OAuth2 schemes are judged, against the union of their flows'
//! scopes; OpenID Connect scopes are never checked (no flows declare them).

use std::collections::BTreeSet;

use super::security_scheme_invalid::{FLOWS, is_valid, scheme_label, scopes_field};
use super::{RuleInfo, did_you_mean, finding};
use crate::engine::analysis::{Analysis, Resolution};
use crate::engine::document::pointer::Located;
use crate::engine::document::{NodeRef, NodeSet};
use crate::engine::finding::{Finding, RuleId};

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::SecurityScopeUndefined,
    summary: "A required OAuth2 scope is not declared by any flow of its scheme.",
    help: "Declare the scope under one of the scheme's flows (v2: `scopes`, v3: \
           `availableScopes`), or stop requiring it.",
};

pub(crate) fn check(analysis: &Analysis<'_>, out: &mut Vec<Finding>) {
    let version = analysis.version;
    let mut judged = NodeSet::new(analysis.root.tree());
    for used in &analysis.uses {
        let Resolution::Scheme(scheme) = &used.resolution else {
            continue;
        };
        // v3: the scheme carries its required scopes, so each scheme is judged once (and
        // validated once: a document's thousands of requirements name a few schemes).
        if version.is_v3() && !judged.insert(scheme.node.id()) {
            continue;
        }
        if scheme.node.get("type").and_then(|t| t.as_str()) != Some("oauth2")
            || !is_valid(analysis, scheme.node.id())
        {
            continue;
        }
        let required = if version.is_v3() {
            scheme.child("scopes")
        } else {
            used.requested_scopes.clone()
        };
        let Some(required) = required else { continue };
        let field = scopes_field(version);
        for (_, scope) in required.items() {
            let Some(name) = scope.node.scalar_text() else {
                continue;
            };
            if !declares(scheme.node, field, name) {
                let declared = declared_scopes(scheme.node, field);
                out.push(undeclared(scheme, &scope, name, &declared));
            }
        }
    }
}

/// Each flow's scopes mapping (`field`) of `scheme`.
fn scope_maps<'d>(scheme: NodeRef<'d>, field: &str) -> impl Iterator<Item = NodeRef<'d>> {
    let flows = scheme.get("flows");
    FLOWS
        .iter()
        .filter_map(move |(flow, _)| flows?.get(flow)?.get(field))
}

/// Whether a flow of `scheme` declares `name`: looked up in each flow's scopes, so that a
/// scheme whose scopes are all declared costs no set of them (judging a small document
/// built one for every scheme).
fn declares(scheme: NodeRef<'_>, field: &str, name: &str) -> bool {
    scope_maps(scheme, field).any(|scopes| scopes.get(name).is_some())
}

fn declared_scopes<'d>(scheme: NodeRef<'d>, field: &str) -> BTreeSet<&'d str> {
    scope_maps(scheme, field)
        .flat_map(|scopes| scopes.entries().map(|e| e.key))
        .collect()
}

fn undeclared(
    scheme: &Located<'_>,
    scope: &Located<'_>,
    name: &str,
    declared: &BTreeSet<&str>,
) -> Finding {
    let hint = match did_you_mean(name, declared.iter().copied()) {
        Some(close) => format!("did you mean \"{close}\"?"),
        None if declared.is_empty() => "the scheme's flows declare no scopes".to_owned(),
        None => format!(
            "declared scopes: {}",
            declared
                .iter()
                .map(|s| format!("\"{s}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    finding(
        INFO.id,
        scope,
        format!(
            "scope \"{name}\" is not declared by the flows of {}",
            scheme_label(scheme)
        ),
        Some(hint),
    )
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::SecuritySchemeInvalid as INVALID;
    use crate::engine::finding::RuleId::SecurityScopeUndefined as SCOPE;
    use crate::engine::rules::test_support::{findings, of_rule, pairs};

    const V2: &str = "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - oauth:\n        - lights:read\n        - lights:explode\ncomponents:\n  securitySchemes:\n    oauth:\n      type: oauth2\n      flows:\n        clientCredentials:\n          tokenUrl: https://t\n          scopes:\n            lights:read: r\n        implicit:\n          authorizationUrl: https://a\n          scopes:\n            lights:write: w\n";

    #[test]
    fn v2_required_scopes_are_in_the_requirement() {
        assert_eq!(
            findings(V2),
            pairs(&[(SCOPE, "/servers/production/security/0/oauth/1")])
        );
        let found = of_rule(V2, SCOPE);
        assert_eq!(
            found[0].message,
            "scope \"lights:explode\" is not declared by the flows of security scheme \"oauth\""
        );
    }

    #[test]
    fn v2_union_of_flows() {
        let src = V2.replace("lights:explode", "lights:write");
        assert_eq!(findings(&src), vec![]);
    }

    #[test]
    fn v2_operation_scopes() {
        let src = V2.replace("        - lights:explode\n", "") .replace(
            "components:",
            "channels:\n  c:\n    subscribe:\n      security:\n        - oauth: [admin]\ncomponents:",
        );
        assert_eq!(
            findings(&src),
            pairs(&[(SCOPE, "/channels/c/subscribe/security/0/oauth/0")])
        );
    }

    /// V2 with a flow that lacks its tokenUrl: the scheme is invalid.
    fn v2_invalid_scheme() -> String {
        V2.replace("          tokenUrl: https://t\n", "")
    }

    #[test]
    fn invalid_schemes_are_not_scope_checked() {
        assert_eq!(
            findings(&v2_invalid_scheme()),
            pairs(&[(INVALID, "/components/securitySchemes/oauth")])
        );
    }

    /// Validity is shared with `security-scheme-invalid` (see `Analysis::invalid_schemes`):
    /// with that rule off, this one still validates the scheme itself.
    #[test]
    fn invalid_schemes_are_not_scope_checked_with_the_scheme_rule_off() {
        use crate::engine::finding::Mode;
        use crate::engine::finding::RuleId;
        use crate::engine::policy::Policy;
        use crate::engine::{Engine, Overrides};
        let mut policy = Policy::default();
        policy
            .rule_modes
            .insert(RuleId::SecuritySchemeInvalid, Mode::Off);
        let engine = Engine::new(policy);
        let judge = |src: &str| {
            engine
                .evaluate_bytes(src.as_bytes(), &Overrides::default())
                .findings
                .into_iter()
                .map(|f| f.rule)
                .collect::<Vec<_>>()
        };
        assert_eq!(judge(V2), vec![SCOPE], "the scope rule runs alone");
        assert_eq!(judge(&v2_invalid_scheme()), vec![]);
    }

    #[test]
    fn openid_connect_scopes_are_never_checked() {
        let src = "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - oidc: [anything, goes]\ncomponents:\n  securitySchemes:\n    oidc: {type: openIdConnect, openIdConnectUrl: 'https://x'}\n";
        assert_eq!(findings(src), vec![]);
    }

    const V3: &str = "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/oauth'\n  other:\n    host: y\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/oauth'\ncomponents:\n  securitySchemes:\n    oauth:\n      type: oauth2\n      flows:\n        clientCredentials:\n          tokenUrl: https://t\n          availableScopes:\n            lights:read: r\n      scopes: [lights:read, lights:explode]\n";

    #[test]
    fn v3_required_scopes_are_in_the_scheme_reported_once() {
        assert_eq!(
            findings(V3),
            pairs(&[(SCOPE, "/components/securitySchemes/oauth/scopes/1")])
        );
    }

    #[test]
    fn v3_inline_scheme_scopes() {
        let src = "asyncapi: 3.0.0\noperations:\n  op:\n    action: send\n    security:\n      - type: oauth2\n        flows:\n          password:\n            tokenUrl: https://t\n            availableScopes: {a: a}\n        scopes: [a, admin]\n";
        assert_eq!(
            findings(src),
            pairs(&[(SCOPE, "/operations/op/security/0/scopes/1")])
        );
        assert_eq!(
            of_rule(src, SCOPE)[0].hint.as_deref(),
            Some("declared scopes: \"a\"")
        );
    }
}
