//! `security-ref-external`: a security requirement or scheme `$ref`s outside the document,
//! so what it requires cannot be verified (nothing outside the document is ever fetched).

use super::server_security_missing::subject;
use super::{RuleInfo, finding};
use crate::engine::analysis::{Analysis, Resolution, ServerDefinition};
use crate::engine::finding::{Finding, RuleId};

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::SecurityRefExternal,
    summary: "A security requirement, scheme or production server is defined outside the document and cannot be verified.",
    help: "Define the security scheme (or the production server) in this document, under \
           components, instead of referencing another file or URL.",
};

pub(crate) fn check(analysis: &Analysis<'_>, out: &mut Vec<Finding>) {
    for used in &analysis.uses {
        if let Resolution::External { reference, at } = &used.resolution {
            out.push(finding(
                INFO.id,
                at,
                format!("\"{reference}\" points outside this document, so the security scheme cannot be verified"),
                Some("define the scheme under components.securitySchemes in this document".to_owned()),
            ));
        }
    }
    for server in analysis.production_servers() {
        if let ServerDefinition::External(reference) = &server.definition {
            out.push(finding(
                INFO.id,
                &server.entry,
                format!(
                    "{} is defined outside this document (\"{reference}\"), so its security cannot be verified",
                    subject(server)
                ),
                Some("define the server, with its security, in this document".to_owned()),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::SecurityRefExternal as EXT;
    use crate::engine::rules::test_support::{findings, pairs};

    #[test]
    fn v3_requirement_to_a_url_or_file() {
        for reference in [
            "https://example.com/s.yaml#/x",
            "./shared.yaml#/up",
            "other.yaml",
        ] {
            let src = format!(
                "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '{reference}'\n"
            );
            assert_eq!(
                findings(&src),
                pairs(&[(EXT, "/servers/production/security/0")]),
                "{reference}"
            );
        }
    }

    #[test]
    fn used_component_that_is_external_is_reported_at_the_component() {
        for (version, requirement) in [
            ("2.6.0", "- corp: []"),
            ("3.1.0", "- $ref: '#/components/securitySchemes/corp'"),
        ] {
            let src = format!(
                "asyncapi: {version}\nservers:\n  production:\n    host: x\n    url: x\n    protocol: amqp\n    security:\n      {requirement}\n  other:\n    host: y\n    url: y\n    protocol: amqp\n    security:\n      {requirement}\ncomponents:\n  securitySchemes:\n    corp:\n      $ref: 'https://schemas.example.com/security.yaml#/corp'\n"
            );
            assert_eq!(
                findings(&src),
                pairs(&[(EXT, "/components/securitySchemes/corp")]),
                "{version}"
            );
        }
    }

    #[test]
    fn unused_external_component_is_not_judged() {
        let src = "asyncapi: 2.6.0\ncomponents:\n  securitySchemes:\n    corp:\n      $ref: 'https://x/y.yaml'\n";
        assert_eq!(findings(src), vec![]);
    }

    #[test]
    fn production_server_by_external_ref() {
        let src = "asyncapi: 3.0.0\nservers:\n  production:\n    $ref: '../common/servers.yaml#/main'\n  staging:\n    $ref: '../common/servers.yaml#/staging'\n";
        assert_eq!(findings(src), pairs(&[(EXT, "/servers/production")]));
    }
}
