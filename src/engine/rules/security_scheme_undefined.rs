//! `security-scheme-undefined`: a security requirement, on any server or operation where
//! the version reads `security`, names (v2) or `$ref`s (v3) a scheme that
//! `components.securitySchemes` does not define.

use super::{RuleInfo, did_you_mean, finding, last_token};
use crate::engine::analysis::{Analysis, RefProblem, Resolution, Undefined};
use crate::engine::document::pointer;
use crate::engine::finding::{Finding, RuleId};

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::SecuritySchemeUndefined,
    summary: "A security requirement names a scheme that components.securitySchemes does not define.",
    help: "Define the scheme under components.securitySchemes, or fix the name (v2) or the \
           `$ref` (v3) so that it points at one that is defined.",
};

const SCHEMES_PREFIX: &str = "#/components/securitySchemes/";

pub(crate) fn check(analysis: &Analysis<'_>, out: &mut Vec<Finding>) {
    // Gathered for the first finding's "did you mean": most documents have none.
    let mut scheme_names = None;
    for used in &analysis.uses {
        let Resolution::Undefined(undefined) = &used.resolution else {
            continue;
        };
        let names: &[&str] = scheme_names.get_or_insert_with(|| analysis.scheme_names());
        let (message, hint) = match undefined {
            Undefined::Name(name) => (
                format!("scheme \"{name}\" is not defined in components.securitySchemes"),
                Some(match did_you_mean(name, names.iter().copied()) {
                    Some(close) => format!("did you mean \"{close}\"?"),
                    None => format!("define \"{name}\" under components.securitySchemes"),
                }),
            ),
            Undefined::NotARequirement => (
                format!(
                    "security requirement is {}, not a mapping of scheme names to scopes",
                    used.requirement.node.type_name()
                ),
                Some("write each requirement as \"- <scheme name>: []\"".to_owned()),
            ),
            Undefined::Reference { reference, problem } => {
                let wanted = last_token(reference);
                let close = did_you_mean(&wanted, names.iter().copied())
                    .map(|c| format!("did you mean \"{SCHEMES_PREFIX}{}\"?", pointer_token(c)));
                match problem {
                    RefProblem::OutsideSchemes => (
                        format!(
                            "\"{reference}\" does not point to an entry of components.securitySchemes"
                        ),
                        close.or_else(|| Some(format!("use \"{SCHEMES_PREFIX}<name>\""))),
                    ),
                    RefProblem::Dangling => (
                        format!("scheme \"{wanted}\" is not defined in components.securitySchemes"),
                        close.or_else(|| {
                            Some(format!(
                                "define \"{wanted}\" under components.securitySchemes"
                            ))
                        }),
                    ),
                    RefProblem::Cycle => (
                        format!(
                            "\"{reference}\" is part of a $ref cycle and never reaches a scheme"
                        ),
                        Some("make the chain of $refs end at a scheme object".to_owned()),
                    ),
                }
            }
        };
        out.push(finding(INFO.id, &used.requirement, message, hint));
    }
}

fn pointer_token(name: &str) -> String {
    pointer::push("", name).trim_start_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::SecuritySchemeUndefined as UNDEF;
    use crate::engine::rules::test_support::{findings, of_rule, pairs};

    fn v2(version: &str, extra: &str) -> String {
        format!(
            "asyncapi: {version}\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - user-password: []\n{extra}components:\n  securitySchemes:\n    user-password: {{type: userPassword}}\n"
        )
    }

    #[test]
    fn v2_undefined_name_with_suggestion() {
        let src = v2("2.6.0", "").replace("- user-password: []", "- user-pass: []");
        let found = of_rule(&src, UNDEF);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "/servers/production/security/0");
        assert_eq!(
            found[0].message,
            "scheme \"user-pass\" is not defined in components.securitySchemes"
        );
        assert_eq!(
            found[0].hint.as_deref(),
            Some("did you mean \"user-password\"?")
        );
    }

    #[test]
    fn v2_operation_security_only_from_2_4() {
        let ops = "channels:\n  a/b:\n    publish:\n      security:\n        - ghost: []\n";
        assert_eq!(
            findings(&v2("2.4.0", ops)),
            pairs(&[(UNDEF, "/channels/a~1b/publish/security/0")])
        );
        assert_eq!(findings(&v2("2.3.0", ops)), vec![]);
    }

    #[test]
    fn v2_trait_by_ref_is_reported_once_where_it_is_written() {
        let ops = "channels:\n  a:\n    publish:\n      traits:\n        - $ref: '#/components/operationTraits/t'\n    subscribe:\n      traits:\n        - $ref: '#/components/operationTraits/t'\n";
        let src = v2("2.6.0", ops).replace(
            "components:\n",
            "components:\n  operationTraits:\n    t:\n      security:\n        - ghost: []\n",
        );
        assert_eq!(
            findings(&src),
            pairs(&[(UNDEF, "/components/operationTraits/t/security/0")])
        );
    }

    #[test]
    fn v2_component_servers_and_channels_from_2_3() {
        let extra = "x-none: 1\n";
        let src = v2("2.3.0", extra).replace(
            "components:\n",
            "components:\n  servers:\n    backup:\n      url: y\n      protocol: mqtt\n      security:\n        - ghost: []\n",
        );
        assert_eq!(
            findings(&src),
            pairs(&[(UNDEF, "/components/servers/backup/security/0")])
        );
        assert_eq!(findings(&src.replace("2.3.0", "2.2.0")), vec![]);
    }

    #[test]
    fn v2_requirement_that_is_not_a_mapping() {
        let src = v2("2.6.0", "").replace("- user-password: []", "- user-password");
        let found = of_rule(&src, UNDEF);
        assert_eq!(found.len(), 1);
        assert!(
            found[0].message.contains("not a mapping"),
            "{}",
            found[0].message
        );
    }

    #[test]
    fn v2_without_components() {
        let src = "asyncapi: 2.0.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - a: []\n      - b: []\n";
        assert_eq!(
            findings(src),
            pairs(&[
                (UNDEF, "/servers/production/security/0"),
                (UNDEF, "/servers/production/security/1")
            ])
        );
    }

    fn v3(security: &str) -> String {
        format!(
            "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - {security}\ncomponents:\n  securitySchemes:\n    user-password: {{type: userPassword}}\n    alias:\n      $ref: '#/components/securitySchemes/user-password'\n  schemas:\n    s: {{type: string}}\n"
        )
    }

    #[test]
    fn v3_ref_must_resolve_under_security_schemes() {
        assert_eq!(
            findings(&v3("$ref: '#/components/securitySchemes/user-password'")),
            vec![]
        );
        assert_eq!(
            findings(&v3("$ref: '#/components/securitySchemes/alias'")),
            vec![]
        );
        for bad in [
            "$ref: '#/components/securitySchemes/ghost'",
            "$ref: '#/components/schemas/s'",
            "$ref: '#/components/securitySchemes'",
            "$ref: '#/nowhere'",
        ] {
            assert_eq!(
                findings(&v3(bad)),
                pairs(&[(UNDEF, "/servers/production/security/0")]),
                "{bad}"
            );
        }
    }

    #[test]
    fn v3_suggestion_is_a_full_reference() {
        let found = of_rule(
            &v3("$ref: '#/components/securitySchemes/user_password'"),
            UNDEF,
        );
        assert_eq!(
            found[0].message,
            "scheme \"user_password\" is not defined in components.securitySchemes"
        );
        assert_eq!(
            found[0].hint.as_deref(),
            Some("did you mean \"#/components/securitySchemes/user-password\"?")
        );
    }

    #[test]
    fn v3_keys_beside_ref_are_ignored() {
        let src = v3("$ref: '#/components/securitySchemes/user-password'\n        type: bogus");
        assert_eq!(findings(&src), vec![]);
    }

    #[test]
    fn v3_ref_cycle_is_undefined() {
        let src = v3("$ref: '#/components/securitySchemes/a'").replace(
            "  schemas:",
            "    a: {$ref: '#/components/securitySchemes/b'}\n    b: {$ref: '#/components/securitySchemes/a'}\n  schemas:",
        );
        assert_eq!(
            findings(&src),
            pairs(&[(UNDEF, "/servers/production/security/0")])
        );
    }

    #[test]
    fn v3_channel_security_is_ignored() {
        let src = v3("$ref: '#/components/securitySchemes/user-password'")
            .replace("components:", "channels:\n  c:\n    security:\n      - $ref: '#/components/securitySchemes/ghost'\ncomponents:");
        assert_eq!(findings(&src), vec![]);
    }

    #[test]
    fn v3_operations_traits_and_component_operations() {
        let src = v3("$ref: '#/components/securitySchemes/user-password'").replace(
            "components:\n",
            "operations:\n  send:\n    action: send\n    security:\n      - $ref: '#/components/securitySchemes/g1'\n    traits:\n      - security:\n          - $ref: '#/components/securitySchemes/g2'\ncomponents:\n  operations:\n    other:\n      action: receive\n      security:\n        - $ref: '#/components/securitySchemes/g3'\n",
        );
        assert_eq!(
            findings(&src),
            pairs(&[
                (UNDEF, "/components/operations/other/security/0"),
                (UNDEF, "/operations/send/security/0"),
                (UNDEF, "/operations/send/traits/0/security/0"),
            ])
        );
    }
}
