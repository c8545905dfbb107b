//! `document-invalid`: the input is not an AsyncAPI document asyncapi-guard can judge:
//! unparseable, not a mapping, no `asyncapi`, an unsupported version, or over the limits.
//! An invalid document is never allowed: what cannot be read cannot be verified.

use super::{RuleInfo, finding};
use crate::engine::document::pointer::Located;
use crate::engine::document::{LoadError, NodeRef, Pos};
use crate::engine::finding::{Finding, Mode, RuleId};
use crate::engine::version::SpecVersion;

pub const INFO: RuleInfo = RuleInfo {
    id: RuleId::DocumentInvalid,
    summary: "The input is not an AsyncAPI document that can be judged (syntax, structure, version or size).",
    help: "Make the input one YAML or JSON document whose top level is a mapping with a \
           supported `asyncapi` version as a string (2.0.0 to 2.6.0, 3.0.0 or 3.1.0), within \
           the configured size, depth and alias limits.",
};

fn whole(pos: Pos, message: String, hint: &str) -> Finding {
    Finding {
        rule: INFO.id,
        path: String::new(),
        pos,
        message,
        hint: Some(hint.to_owned()),
        mode: Mode::Enforce,
        waiver: None,
    }
}

pub(crate) fn from_load_error(error: &LoadError) -> Finding {
    let hint = match error {
        LoadError::TooLarge { .. } => {
            "split the document, or raise limits.maxDocumentBytes in the configuration"
        }
        LoadError::NotUtf8 { .. } => "save the document as UTF-8",
        LoadError::Empty => "an AsyncAPI document starts with a line such as asyncapi: '3.0.0'",
        LoadError::Syntax { .. } => "fix the YAML or JSON syntax at this position",
        LoadError::DuplicateKey { .. } => {
            "keep one of the two keys: YAML and JSON keys must be unique"
        }
        LoadError::TooDeep { .. } => {
            "flatten the document with $ref, or raise limits.maxDepth in the configuration"
        }
        LoadError::AliasExpansion { .. } => {
            "write the repeated parts out, or use fewer nested aliases"
        }
        LoadError::UnknownAnchor { .. } => {
            "define the anchor (&name) before the alias (*name) that uses it"
        }
        LoadError::ComplexKey { .. } => "use plain strings as keys",
        LoadError::BadMerge { .. } => "merge (<<) only mappings, or a list of mappings",
    };
    whole(error.pos(), error.to_string(), hint)
}

pub(crate) fn unreadable(why: &str) -> Finding {
    whole(
        Pos::UNKNOWN,
        format!("the document cannot be read: {why}"),
        "put the AsyncAPI document, as YAML or JSON text, where the object says it is",
    )
}

pub(crate) fn several_documents(count: usize, second: Pos) -> Finding {
    whole(
        second,
        format!("the file holds {count} YAML documents; an AsyncAPI file holds exactly one"),
        "remove the extra documents, or the --- separators",
    )
}

/// Judges the top level: the version to analyse with, or why there is nothing to analyse.
pub(crate) fn version_of(root: NodeRef<'_>) -> Result<SpecVersion, Finding> {
    let top = Located::root(root);
    if !root.is_map() {
        return Err(whole(
            root.pos(),
            format!("the top level is {}, not a mapping", root.type_name()),
            "an AsyncAPI document is a mapping that starts with asyncapi: '3.0.0'",
        ));
    }
    let Some(version) = top.child("asyncapi") else {
        return Err(whole(
            root.pos(),
            "there is no asyncapi field, so this is not an AsyncAPI document".to_owned(),
            "add the version it is written for, such as asyncapi: '3.0.0'",
        ));
    };
    let supported = "supported versions are 2.0.0 to 2.6.0, 3.0.0 and 3.1.0";
    match version.node.as_str() {
        None => Err(finding(
            INFO.id,
            &version,
            format!(
                "asyncapi is {}{}, not a version string",
                version.node.type_name(),
                version
                    .node
                    .scalar_text()
                    .map(|t| format!(" ({t})"))
                    .unwrap_or_default()
            ),
            Some("quote the full version, such as asyncapi: '2.6.0'".to_owned()),
        )),
        Some(text) => SpecVersion::parse(text).ok_or_else(|| {
            finding(
                INFO.id,
                &version,
                format!("AsyncAPI version \"{text}\" is not supported"),
                Some(supported.to_owned()),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::finding::RuleId::DocumentInvalid as INVALID;
    use crate::engine::rules::test_support::{findings, of_rule, pairs};

    #[test]
    fn structure_and_version() {
        let whole = pairs(&[(INVALID, "")]);
        let version = pairs(&[(INVALID, "/asyncapi")]);
        assert_eq!(findings("- asyncapi: 2.6.0\n"), whole);
        assert_eq!(findings("just a string\n"), whole);
        assert_eq!(findings("info: {title: x}\n"), whole);
        assert_eq!(findings("asyncapi: 2.6\n"), version);
        assert_eq!(findings("asyncapi: 3\n"), version);
        assert_eq!(findings("asyncapi: true\n"), version);
        assert_eq!(findings("asyncapi: 2.7.0\n"), version);
        assert_eq!(findings("asyncapi: '1.2.0'\n"), version);
        assert_eq!(findings("asyncapi: '2.6.0'\n"), vec![]);
    }

    #[test]
    fn loading_problems() {
        let whole = pairs(&[(INVALID, "")]);
        assert_eq!(findings(""), whole);
        assert_eq!(findings("asyncapi: 2.6.0\ninfo:\n\ttitle: x\n"), whole);
        assert_eq!(findings("asyncapi: 2.6.0\nasyncapi: 3.0.0\n"), whole);
        assert_eq!(findings("asyncapi: 2.6.0\n---\nasyncapi: 2.6.0\n"), whole);
        assert_eq!(findings("asyncapi: 2.6.0\nbad: [unclosed, {\n"), whole);
    }

    #[test]
    fn messages_say_why_and_where() {
        let found = of_rule("asyncapi: 2.6\n", INVALID);
        assert_eq!(
            found[0].message,
            "asyncapi is a number (2.6), not a version string"
        );
        assert_eq!((found[0].pos.line, found[0].pos.column), (1, 1));
        let found = of_rule("asyncapi: 2.6.0\n---\nasyncapi: 2.6.0\n", INVALID);
        assert_eq!(found[0].pos.line, 2);
        let found = of_rule("asyncapi: 2.6.0\ninfo:\n\ttitle: x\n", INVALID);
        assert!(
            found[0].message.starts_with("YAML syntax error"),
            "{}",
            found[0].message
        );
        assert_eq!(found[0].pos.line, 3);
    }
}
