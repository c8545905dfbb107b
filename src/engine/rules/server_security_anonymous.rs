//! `server-security-anonymous`: a production server's `security` holds an empty
//! requirement `{}`, which lets clients in without authenticating.
//!
//! Only AsyncAPI 2.x has empty requirements: in 3.x an item of `security` is a scheme, and
//! `{}` is a scheme without a type (security-scheme-invalid).

use super::server_security_missing::subject;
use super::{RuleInfo, finding};
use crate::engine::analysis::{Analysis, ServerDefinition};
use crate::engine::document::Value;
use crate::engine::finding::{Finding, RuleId};

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::ServerSecurityAnonymous,
    summary: "A production server allows anonymous access through an empty security requirement.",
    help: "Remove the empty requirement `{}` from the server's `security` list, so that every \
           client must satisfy one of the remaining requirements.",
};

pub(crate) fn check(analysis: &Analysis<'_>, out: &mut Vec<Finding>) {
    if analysis.version.is_v3() {
        return;
    }
    for server in analysis.production_servers() {
        let ServerDefinition::Object(object) = &server.definition else {
            continue;
        };
        let Some(security) = object.child("security") else {
            continue;
        };
        for (index, item) in security.items() {
            let empty =
                item.node.is_null() || matches!(item.node.value(), Value::Map(e) if e.is_empty());
            if empty {
                out.push(finding(
                    INFO.id,
                    &item,
                    format!(
                        "{} allows anonymous access: security requirement {index} is empty",
                        subject(server)
                    ),
                    Some(
                        "remove the empty requirement {} so that clients must authenticate"
                            .to_owned(),
                    ),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::{SecuritySchemeInvalid, ServerSecurityAnonymous as ANON};
    use crate::engine::rules::test_support::{findings, pairs};

    const SCHEMES: &str = "components:\n  securitySchemes:\n    up: {type: userPassword}\n";

    #[test]
    fn v2_empty_requirement_on_production() {
        let src = format!(
            "asyncapi: 2.6.0\nservers:\n  production:\n    url: x\n    protocol: amqp\n    security:\n      - up: []\n      - {{}}\n{SCHEMES}"
        );
        assert_eq!(
            findings(&src),
            pairs(&[(ANON, "/servers/production/security/1")])
        );
    }

    #[test]
    fn v2_empty_requirement_elsewhere_is_allowed() {
        let src = format!(
            "asyncapi: 2.6.0\nservers:\n  dev:\n    url: x\n    protocol: amqp\n    security:\n      - {{}}\n{SCHEMES}"
        );
        assert_eq!(findings(&src), vec![]);
    }

    #[test]
    fn v2_null_item_counts_as_empty() {
        let src = format!(
            "asyncapi: 2.1.0\nservers:\n  prod:\n    url: x\n    protocol: amqp\n    security:\n      -\n{SCHEMES}"
        );
        assert_eq!(findings(&src), pairs(&[(ANON, "/servers/prod/security/0")]));
    }

    #[test]
    fn v3_empty_object_is_a_scheme_without_type() {
        let src = format!(
            "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - {{}}\n{SCHEMES}"
        );
        assert_eq!(
            findings(&src),
            pairs(&[(SecuritySchemeInvalid, "/servers/production/security/0")])
        );
    }
}
