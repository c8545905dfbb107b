//! `server-security-missing`: a production server declares no `security`, or an empty list.

use super::{RuleInfo, finding};
use crate::engine::analysis::{Analysis, ProductionReason, RootServer, ServerDefinition};
use crate::engine::document::Value;
use crate::engine::finding::{Finding, RuleId};

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::ServerSecurityMissing,
    summary: "A production server declares no security requirement.",
    help: "Give every production server a non-empty `security` list that references a scheme \
           from components.securitySchemes (v2: `- user-password: []`; v3: \
           `- $ref: '#/components/securitySchemes/user-password'`).",
};

const HINT: &str = "reference a scheme from components.securitySchemes";

pub(crate) fn check(analysis: &Analysis<'_>, out: &mut Vec<Finding>) {
    for server in analysis.production_servers() {
        match &server.definition {
            // Judged by security-ref-external: the definition cannot be read.
            ServerDefinition::External(_) => {}
            ServerDefinition::Unresolved(reference) => out.push(finding(
                INFO.id,
                &server.entry,
                format!(
                    "{} is a $ref to \"{reference}\", which does not resolve in this document, so it declares no security",
                    subject(server)
                ),
                Some("point $ref at an entry of components.servers, or define the server inline".to_owned()),
            )),
            ServerDefinition::Object(object) => match object.child("security") {
                None => out.push(finding(
                    INFO.id,
                    &server.entry,
                    format!("{} declares no security", subject(server)),
                    Some(HINT.to_owned()),
                )),
                Some(security) => {
                    let what = match security.node.value() {
                        Value::Seq(items) if !items.is_empty() => continue,
                        Value::Seq(_) => "an empty security list".to_owned(),
                        _ if security.node.is_null() => "security: null".to_owned(),
                        _ => format!("a security that is {}, not a list", security.node.type_name()),
                    };
                    out.push(finding(
                        INFO.id,
                        &security,
                        format!("{} declares no security: it has {what}", subject(server)),
                        Some(HINT.to_owned()),
                    ));
                }
            },
        }
    }
}

/// `production server "<key>"`, with the reason when the name does not say it.
pub(crate) fn subject(server: &RootServer<'_>) -> String {
    match &server.production {
        Some(ProductionReason::Tag(tag)) => {
            format!("production server \"{}\" (tagged \"{tag}\")", server.key)
        }
        Some(ProductionReason::AllServers) => format!(
            "server \"{}\" (every server is production here)",
            server.key
        ),
        _ => format!("production server \"{}\"", server.key),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::{self, ServerSecurityMissing as MISSING};
    use crate::engine::rules::test_support::{findings, of_rule, pairs};

    const V2_HEAD: &str = "asyncapi: 2.6.0\ninfo: {title: t, version: '1'}\n";
    const V3_HEAD: &str = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\n";
    const V2_SCHEMES: &str = "components:\n  securitySchemes:\n    up: {type: userPassword}\n";

    fn v2(servers: &str) -> String {
        format!("{V2_HEAD}servers:\n{servers}{V2_SCHEMES}")
    }

    #[test]
    fn absent_security_is_reported_at_the_server_with_the_policy_message() {
        let src = v2("  production:\n    url: x\n    protocol: amqp\n");
        let found = of_rule(&src, MISSING);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, "/servers/production");
        assert_eq!((found[0].pos.line, found[0].pos.column), (4, 3));
        assert_eq!(
            found[0].message,
            "production server \"production\" declares no security"
        );
        assert_eq!(
            found[0].hint.as_deref(),
            Some("reference a scheme from components.securitySchemes")
        );
    }

    #[test]
    fn empty_null_and_non_list_are_reported_at_security() {
        for value in ["[]", "null", "~", "up", "{up: []}"] {
            let src = v2(&format!(
                "  prod:\n    url: x\n    protocol: amqp\n    security: {value}\n"
            ));
            assert_eq!(
                findings(&src),
                pairs(&[(MISSING, "/servers/prod/security")]),
                "security: {value}"
            );
        }
    }

    #[test]
    fn non_production_servers_may_omit_security() {
        let src = v2(
            "  staging:\n    url: x\n    protocol: amqp\n  pre-prod:\n    url: y\n    protocol: amqp\n",
        );
        assert_eq!(findings(&src), vec![]);
    }

    #[test]
    fn tags_make_a_server_production_from_2_5_only() {
        let server =
            "  broker:\n    url: x\n    protocol: amqp\n    tags:\n      - name: Production\n";
        assert_eq!(
            findings(&v2(server)),
            pairs(&[(MISSING, "/servers/broker")])
        );
        let old = v2(server).replace("2.6.0", "2.4.0");
        assert_eq!(findings(&old), vec![]);
        let msg = &of_rule(&v2(server), MISSING)[0].message;
        assert_eq!(
            msg,
            "production server \"broker\" (tagged \"Production\") declares no security"
        );
    }

    #[test]
    fn v3_tag_by_ref_is_resolved() {
        let src = format!(
            "{V3_HEAD}servers:\n  broker:\n    host: x\n    protocol: amqp\n    tags:\n      - $ref: '#/components/tags/prod'\ncomponents:\n  tags:\n    prod: {{name: prod}}\n"
        );
        assert_eq!(findings(&src), pairs(&[(MISSING, "/servers/broker")]));
    }

    #[test]
    fn server_by_ref_is_judged_under_its_key() {
        let src = format!(
            "{V3_HEAD}servers:\n  production:\n    $ref: '#/components/servers/main'\ncomponents:\n  servers:\n    main: {{host: x, protocol: amqp}}\n"
        );
        assert_eq!(findings(&src), pairs(&[(MISSING, "/servers/production")]));
        // A component server is never production by itself.
        let alone = format!(
            "{V3_HEAD}servers:\n  staging:\n    $ref: '#/components/servers/production'\ncomponents:\n  servers:\n    production: {{host: x, protocol: amqp}}\n"
        );
        assert_eq!(findings(&alone), vec![]);
    }

    #[test]
    fn server_ref_that_does_not_resolve_declares_no_security() {
        let src =
            format!("{V3_HEAD}servers:\n  production:\n    $ref: '#/components/servers/nope'\n");
        assert_eq!(findings(&src), pairs(&[(MISSING, "/servers/production")]));
    }

    #[test]
    fn all_servers_production_by_configuration() {
        use crate::engine::{Engine, Overrides};
        let src = v2("  staging:\n    url: x\n    protocol: amqp\n");
        let eval = Engine::default().evaluate_bytes(
            src.as_bytes(),
            &Overrides {
                all_servers_production: true,
                ..Overrides::default()
            },
        );
        let rules: Vec<RuleId> = eval.findings.iter().map(|f| f.rule).collect();
        assert_eq!(rules, vec![MISSING]);
        assert!(
            eval.findings[0]
                .message
                .contains("every server is production")
        );
    }
}
