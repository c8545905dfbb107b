//! `security-scheme-invalid`: a scheme that is referenced or inline has a `type` the
//! document's version does not allow, or lacks what that type requires.
//!
//! Only schemes in use are judged (an unused broken scheme denies nothing); extra fields
//! are ignored; `type` is case-sensitive.

use super::{RuleInfo, did_you_mean, finding, last_token};
use crate::engine::analysis::{Analysis, Resolution};
use crate::engine::document::pointer::Located;
use crate::engine::document::{NodeId, NodeRef, NodeSet};
use crate::engine::finding::{Finding, RuleId};
use crate::engine::version::SpecVersion;

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::SecuritySchemeInvalid,
    summary: "A security scheme in use has a type the AsyncAPI version does not define, or lacks a field its type requires.",
    help: "Give the scheme a `type` the document's AsyncAPI version defines and the fields that \
           type requires: apiKey needs `in` (user or password); httpApiKey needs `name` and `in` \
           (query, header or cookie); http needs `scheme`; oauth2 needs `flows` whose flows have \
           their URLs and scopes; openIdConnect needs `openIdConnectUrl`.",
};

const TYPES_2_0: [&str; 9] = [
    "userPassword",
    "apiKey",
    "X509",
    "symmetricEncryption",
    "asymmetricEncryption",
    "httpApiKey",
    "http",
    "oauth2",
    "openIdConnect",
];
const SASL_TYPES: [&str; 4] = ["plain", "scramSha256", "scramSha512", "gssapi"];

/// The OAuth flows and the URLs each requires (besides its scopes).
pub(crate) const FLOWS: [(&str, &[&str]); 4] = [
    ("implicit", &["authorizationUrl"]),
    ("password", &["tokenUrl"]),
    ("clientCredentials", &["tokenUrl"]),
    ("authorizationCode", &["authorizationUrl", "tokenUrl"]),
];

/// Where a flow declares its scopes: `scopes` in 2.x, `availableScopes` in 3.x.
pub(crate) fn scopes_field(version: SpecVersion) -> &'static str {
    if version.is_v3() {
        "availableScopes"
    } else {
        "scopes"
    }
}

#[derive(Debug)]
pub(crate) struct Problem {
    pub what: String,
    pub hint: Option<String>,
}

fn problem(what: impl Into<String>, hint: impl Into<Option<String>>) -> Problem {
    Problem {
        what: what.into(),
        hint: hint.into(),
    }
}

pub(crate) fn check(analysis: &Analysis<'_>, out: &mut Vec<Finding>) {
    let invalid = invalid_schemes(analysis);
    if invalid.is_empty() {
        return;
    }
    let mut reported = NodeSet::new(analysis.root.tree());
    for used in &analysis.uses {
        let Resolution::Scheme(scheme) = &used.resolution else {
            continue;
        };
        let id = scheme.node.id();
        if !invalid.contains(id) || !reported.insert(id) {
            continue;
        }
        // Validated again for what is wrong: only the invalid ones, which deny anyway.
        if let Err(p) = validate(scheme.node, analysis.version) {
            let hint = version_2_requirement(analysis, scheme).or(p.hint);
            out.push(finding(
                INFO.id,
                scheme,
                format!("{} {}", scheme_label(scheme), p.what),
                hint,
            ));
        }
    }
}

/// Whether a scheme that a requirement uses is valid (see [`Analysis::invalid_schemes`]).
pub(crate) fn is_valid(analysis: &Analysis<'_>, scheme: NodeId) -> bool {
    !invalid_schemes(analysis).contains(scheme)
}

fn invalid_schemes<'a>(analysis: &'a Analysis<'_>) -> &'a NodeSet {
    analysis.invalid_schemes.get_or_init(|| {
        let tree = analysis.root.tree();
        let (mut judged, mut invalid) = (NodeSet::new(tree), NodeSet::new(tree));
        for used in &analysis.uses {
            if let Resolution::Scheme(scheme) = &used.resolution {
                let id = scheme.node.id();
                if judged.insert(id) && validate(scheme.node, analysis.version).is_err() {
                    invalid.insert(id);
                }
            }
        }
        invalid
    })
}

/// A 3.x document written with a 2.x requirement (`security: [{saslScram: []}]`): an inline
/// "scheme" with no type whose only key names a defined scheme. The fix is a reference, and
/// the hint says it in a form people can paste; close names get "did you mean".
fn version_2_requirement(analysis: &Analysis<'_>, scheme: &Located<'_>) -> Option<String> {
    if !analysis.version.is_v3()
        || scheme.node.get("type").is_some()
        || scheme.path().starts_with("/components/securitySchemes/")
    {
        return None;
    }
    let mut entries = scheme.node.entries();
    let (Some(entry), None) = (entries.next(), entries.next()) else {
        return None;
    };
    let defined = analysis
        .root
        .get("components")
        .and_then(|c| c.get("securitySchemes"))?;
    let name = entry.key;
    let target = if defined.get(name).is_some() {
        name
    } else {
        did_you_mean(name, defined.entries().map(|e| e.key))?
    };
    Some(format!(
        "reference it: $ref: '#{}'",
        crate::engine::document::pointer::push("/components/securitySchemes", target)
    ))
}

/// `security scheme "<name>"` for a component, `inline security scheme` otherwise.
pub(crate) fn scheme_label(scheme: &Located<'_>) -> String {
    let path = scheme.path();
    if path.starts_with("/components/securitySchemes/") {
        format!("security scheme \"{}\"", last_token(&path))
    } else {
        "inline security scheme".to_owned()
    }
}

pub(crate) fn validate(scheme: NodeRef<'_>, version: SpecVersion) -> Result<(), Problem> {
    if !scheme.is_map() {
        return Err(problem(
            format!("is {}, not a security scheme object", scheme.type_name()),
            Some("a scheme is a mapping with at least a type".to_owned()),
        ));
    }
    // Listed only for a message: every valid scheme of every document passes here.
    let allowed = TYPES_2_0
        .iter()
        .chain(if version.has_sasl_schemes() {
            SASL_TYPES.iter()
        } else {
            [].iter()
        })
        .copied();
    let listed = || allowed.clone().collect::<Vec<_>>().join(", ");
    let kind = match scheme.get("type") {
        None => {
            return Err(problem(
                "has no type",
                Some(format!("set type to one of: {}", listed())),
            ));
        }
        Some(t) => t.as_str().ok_or_else(|| {
            problem(
                format!("has a type that is {}, not a string", t.type_name()),
                Some(format!("set type to one of: {}", listed())),
            )
        })?,
    };
    if !allowed.clone().any(|t| t == kind) {
        let hint = if SASL_TYPES.contains(&kind) {
            "SASL types need AsyncAPI 2.1.0 or later".to_owned()
        } else if let Some(close) = did_you_mean(kind, allowed.clone()) {
            format!("did you mean \"{close}\"? (type is case-sensitive)")
        } else {
            format!("use one of: {}", listed())
        };
        return Err(problem(
            format!("has type \"{kind}\", which AsyncAPI {version} does not define"),
            Some(hint),
        ));
    }
    match kind {
        "apiKey" => require_one_of(scheme, kind, "in", &["user", "password"]).map_err(|mut p| {
            if scheme.get("in").and_then(|n| n.as_str()).is_some_and(|v| ["header", "query", "cookie"].contains(&v)) {
                p.hint = Some("apiKey is sent as the user or password; for an HTTP API key use type httpApiKey".to_owned());
            }
            p
        }),
        "httpApiKey" => {
            require_string(scheme, kind, "name")?;
            require_one_of(scheme, kind, "in", &["query", "header", "cookie"])
        }
        "http" => require_string(scheme, kind, "scheme"),
        "openIdConnect" => require_string(scheme, kind, "openIdConnectUrl"),
        "oauth2" => validate_flows(scheme, version),
        _ => Ok(()),
    }
}

fn require_string(scheme: NodeRef<'_>, kind: &str, field: &str) -> Result<(), Problem> {
    match scheme.get(field) {
        Some(v) if v.as_str().is_some_and(|s| !s.is_empty()) => Ok(()),
        Some(v) if v.as_str().is_none() => Err(problem(
            format!(
                "of type {kind} has a {field} that is {}, not a string",
                v.type_name()
            ),
            Some(format!("set {field}")),
        )),
        _ => Err(problem(
            format!("of type {kind} has no {field}"),
            Some(format!("set {field}, which type {kind} requires")),
        )),
    }
}

fn require_one_of(
    scheme: NodeRef<'_>,
    kind: &str,
    field: &str,
    values: &[&str],
) -> Result<(), Problem> {
    let expected = || {
        values
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match scheme.get(field).map(|v| v.as_str()) {
        Some(Some(v)) if values.contains(&v) => Ok(()),
        Some(Some(v)) => Err(problem(
            format!(
                "of type {kind} has {field}: \"{v}\", which is not {}",
                expected()
            ),
            Some(format!("set {field} to {}", expected())),
        )),
        _ => Err(problem(
            format!("of type {kind} has no {field}"),
            Some(format!("set {field} to {}", expected())),
        )),
    }
}

fn validate_flows(scheme: NodeRef<'_>, version: SpecVersion) -> Result<(), Problem> {
    let Some(flows) = scheme.get("flows") else {
        return Err(problem(
            "of type oauth2 has no flows",
            Some("declare at least one flow under flows (implicit, password, clientCredentials or authorizationCode)".to_owned()),
        ));
    };
    if !flows.is_map() {
        return Err(problem(
            format!(
                "of type oauth2 has flows that are {}, not a mapping",
                flows.type_name()
            ),
            None,
        ));
    }
    let scopes_key = scopes_field(version);
    let mut any = false;
    for (name, urls) in FLOWS {
        let Some(flow) = flows.get(name) else {
            continue;
        };
        any = true;
        if !flow.is_map() {
            return Err(problem(
                format!(
                    "of type oauth2 has a {name} flow that is {}, not a mapping",
                    flow.type_name()
                ),
                None,
            ));
        }
        for url in urls {
            if flow
                .get(url)
                .and_then(|u| u.as_str())
                .is_none_or(str::is_empty)
            {
                return Err(problem(
                    format!("of type oauth2 has a {name} flow without {url}"),
                    Some(format!("set flows.{name}.{url}")),
                ));
            }
        }
        if !flow.get(scopes_key).is_some_and(|s| s.is_map()) {
            let other = if version.is_v3() {
                "scopes"
            } else {
                "availableScopes"
            };
            let hint = if flow.get(other).is_some() {
                format!("AsyncAPI {version} calls this field {scopes_key}, not {other}")
            } else {
                format!("declare the flow's scopes as a mapping under flows.{name}.{scopes_key}")
            };
            return Err(problem(
                format!("of type oauth2 has a {name} flow without {scopes_key}"),
                Some(hint),
            ));
        }
    }
    if any {
        Ok(())
    } else {
        Err(problem(
            "of type oauth2 declares no flow",
            Some(
                "declare implicit, password, clientCredentials or authorizationCode under flows"
                    .to_owned(),
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::SecuritySchemeInvalid as INVALID;
    use crate::engine::rules::test_support::{findings, of_rule, pairs};

    /// A document whose production server uses scheme `s`, defined as `scheme` (flow style).
    fn doc(version: &str, scheme: &str) -> String {
        let requirement = if version.starts_with('3') {
            "$ref: '#/components/securitySchemes/s'"
        } else {
            "s: []"
        };
        format!(
            "asyncapi: {version}\nservers:\n  production:\n    host: x\n    url: x\n    protocol: amqp\n    security:\n      - {requirement}\ncomponents:\n  securitySchemes:\n    s: {scheme}\n"
        )
    }

    fn invalid(version: &str, scheme: &str) -> bool {
        let found = findings(&doc(version, scheme));
        assert!(found.iter().all(|(r, _)| *r == INVALID), "{found:?}");
        match found.as_slice() {
            [] => false,
            [(_, path)] if path == "/components/securitySchemes/s" => true,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_version_2_requirement_in_a_version_3_document_gets_the_reference_to_paste() {
        let doc = "asyncapi: 3.0.0\ninfo: {title: t, version: '1'}\nservers:\n  production:\n    host: x\n    protocol: kafka\n    security:\n      - saslScram: []\n      - saslScrm: []\n      - nothing: []\ncomponents:\n  securitySchemes:\n    saslScram:\n      type: scramSha256\n";
        let evaluation = crate::engine::Engine::default()
            .evaluate_text(doc, &crate::engine::Overrides::default());
        let hints: Vec<Option<&str>> = evaluation
            .findings
            .iter()
            .filter(|f| f.rule == INVALID)
            .map(|f| f.hint.as_deref())
            .collect();
        assert_eq!(
            hints,
            [
                Some("reference it: $ref: '#/components/securitySchemes/saslScram'"),
                Some("reference it: $ref: '#/components/securitySchemes/saslScram'"),
                Some(
                    "set type to one of: userPassword, apiKey, X509, symmetricEncryption, asymmetricEncryption, httpApiKey, http, oauth2, openIdConnect, plain, scramSha256, scramSha512, gssapi"
                ),
            ]
        );
    }

    #[test]
    fn each_invalid_scheme_is_reported_once_however_often_it_is_used() {
        let src = "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/a'\n      - $ref: '#/components/securitySchemes/b'\n  staging:\n    host: y\n    protocol: amqp\n    security:\n      - $ref: '#/components/securitySchemes/a'\n      - $ref: '#/components/securitySchemes/ok'\ncomponents:\n  securitySchemes:\n    a: {type: bogusAuth}\n    b: {type: http}\n    ok: {type: X509}\n";
        assert_eq!(
            findings(src),
            pairs(&[
                (INVALID, "/components/securitySchemes/a"),
                (INVALID, "/components/securitySchemes/b"),
            ])
        );
    }

    #[test]
    fn types_by_version() {
        for v in ["2.0.0", "2.6.0", "3.0.0"] {
            assert!(!invalid(v, "{type: userPassword}"));
            assert!(!invalid(v, "{type: X509}"));
            assert!(invalid(v, "{type: x509}"), "type is case-sensitive");
            assert!(invalid(v, "{type: bogusAuth}"));
            assert!(invalid(v, "{description: no type}"));
            assert!(invalid(v, "{type: 5}"));
            assert!(invalid(v, "not-a-mapping"));
        }
        assert!(invalid("2.0.0", "{type: plain}"), "2.0.0 has no SASL types");
        for sasl in ["plain", "scramSha256", "scramSha512", "gssapi"] {
            assert!(!invalid("2.1.0", &format!("{{type: {sasl}}}")));
            assert!(!invalid("3.1.0", &format!("{{type: {sasl}}}")));
        }
    }

    #[test]
    fn required_fields() {
        for v in ["2.6.0", "3.0.0"] {
            assert!(!invalid(v, "{type: apiKey, in: user}"));
            assert!(invalid(v, "{type: apiKey, in: header}"));
            assert!(invalid(v, "{type: apiKey}"));
            assert!(!invalid(v, "{type: httpApiKey, name: X-Key, in: header}"));
            assert!(invalid(v, "{type: httpApiKey, in: header}"));
            assert!(invalid(v, "{type: httpApiKey, name: X-Key, in: body}"));
            assert!(!invalid(v, "{type: http, scheme: bearer, extra: ignored}"));
            assert!(invalid(v, "{type: http, bearerFormat: JWT}"));
            assert!(!invalid(
                v,
                "{type: openIdConnect, openIdConnectUrl: 'https://x'}"
            ));
            assert!(invalid(v, "{type: openIdConnect}"));
            assert!(invalid(v, "{type: oauth2}"));
            assert!(invalid(v, "{type: oauth2, flows: {}}"));
        }
    }

    #[test]
    fn oauth_flows_by_version() {
        let v2_ok = "{type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://t', scopes: {read: r}}}}";
        let v3_ok = "{type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://t', availableScopes: {read: r}}}}";
        assert!(!invalid("2.6.0", v2_ok));
        assert!(invalid("3.0.0", v2_ok));
        assert!(!invalid("3.0.0", v3_ok));
        assert!(invalid("2.6.0", v3_ok));
        assert!(invalid(
            "2.6.0",
            "{type: oauth2, flows: {clientCredentials: {scopes: {read: r}}}}"
        ));
        assert!(invalid(
            "2.6.0",
            "{type: oauth2, flows: {authorizationCode: {tokenUrl: 'https://t', scopes: {}}}}"
        ));
        assert!(!invalid(
            "2.6.0",
            "{type: oauth2, flows: {implicit: {authorizationUrl: 'https://a', scopes: {}}}}"
        ));
    }

    #[test]
    fn wrong_scopes_key_gets_a_hint() {
        let found = of_rule(
            &doc(
                "2.6.0",
                "{type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://t', availableScopes: {read: r}}}}",
            ),
            INVALID,
        );
        assert_eq!(
            found[0].message,
            "security scheme \"s\" of type oauth2 has a clientCredentials flow without scopes"
        );
        assert_eq!(
            found[0].hint.as_deref(),
            Some("AsyncAPI 2.6.0 calls this field scopes, not availableScopes")
        );
    }

    #[test]
    fn unknown_type_message_and_case_hint() {
        let found = of_rule(&doc("3.0.0", "{type: x509}"), INVALID);
        assert_eq!(
            found[0].message,
            "security scheme \"s\" has type \"x509\", which AsyncAPI 3.0.0 does not define"
        );
        assert_eq!(
            found[0].hint.as_deref(),
            Some("did you mean \"X509\"? (type is case-sensitive)")
        );
    }

    #[test]
    fn unused_schemes_are_not_judged() {
        let src = "asyncapi: 2.6.0\ncomponents:\n  securitySchemes:\n    broken: {type: oauth2}\n";
        assert_eq!(findings(src), vec![]);
    }

    #[test]
    fn inline_v3_scheme_is_judged_where_it_is() {
        let src = "asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n    security:\n      - type: http\n        description: no scheme\n";
        assert_eq!(
            findings(src),
            pairs(&[(INVALID, "/servers/production/security/0")])
        );
        assert!(
            of_rule(src, INVALID)[0]
                .message
                .starts_with("inline security scheme of type http has no scheme")
        );
    }

    #[test]
    fn scheme_used_twice_is_reported_once() {
        let src = doc("2.6.0", "{type: bogus}").replace(
            "components:",
            "channels:\n  c:\n    publish:\n      security:\n        - s: []\ncomponents:",
        );
        assert_eq!(
            findings(&src),
            pairs(&[(INVALID, "/components/securitySchemes/s")])
        );
    }
}
