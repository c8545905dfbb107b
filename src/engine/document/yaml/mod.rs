//! YAML 1.2 into the document model. Two readers: [`block`], ours, for the block style
//! AsyncAPI documents are written in, which gives up on anything else; and [`full`],
//! `granit-parser` (see there for why it was chosen), which reads the rest and reports
//! every error. `benches/loader.rs` has the numbers of both.

mod block;
mod full;
mod schema;

pub use schema::scalar_kind;

use super::{Limits, LoadError, Stream};

/// Parses a whole YAML stream (several documents share one tree).
pub fn parse<'a>(text: &'a str, limits: &Limits) -> Result<Stream<'a>, LoadError> {
    match block::parse(text, limits) {
        Some(stream) => Ok(stream),
        None => full::parse(text, limits),
    }
}

/// The block reader alone: `None` where it gives up. For the differential tests.
#[doc(hidden)]
pub fn parse_block<'a>(text: &'a str, limits: &Limits) -> Option<Stream<'a>> {
    block::parse(text, limits)
}

/// The full parser alone. For the differential tests and the benchmark.
#[doc(hidden)]
pub fn parse_full<'a>(text: &'a str, limits: &Limits) -> Result<Stream<'a>, LoadError> {
    full::parse(text, limits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::{NodeRef, Pos, ScalarKind, Value, check_bytes};

    fn each_reader(src: &str, check: impl Fn(&Stream<'_>)) {
        check(&parse(src, &Limits::default()).unwrap());
    }

    fn root<'a>(stream: &'a Stream<'a>) -> NodeRef<'a> {
        stream.roots().next().unwrap()
    }

    fn kind_of(src: &str) -> ScalarKind {
        let stream = parse(src, &Limits::default()).unwrap();
        match root(&stream).value() {
            Value::Scalar { kind, .. } => kind,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(kind_of("true"), ScalarKind::Bool);
        assert_eq!(kind_of("yes"), ScalarKind::Str);
        assert_eq!(kind_of("~"), ScalarKind::Null);
        assert_eq!(kind_of("2.6"), ScalarKind::Float);
        assert_eq!(kind_of("2.6.0"), ScalarKind::Str);
        assert_eq!(kind_of("0x1F"), ScalarKind::Int);
        assert_eq!(kind_of("'3'"), ScalarKind::Str);
        assert_eq!(kind_of("!!str 3"), ScalarKind::Str);
    }

    #[test]
    fn positions_are_one_based_and_entries_carry_key_positions() {
        each_reader("servers:\n  production:\n    url: x\n", |stream| {
            let servers = root(stream).get("servers").unwrap();
            let entry = servers.stored_entry("production").unwrap();
            assert_eq!(stream.tree.pos(entry.key_at), Pos { line: 2, column: 3 });
            assert_eq!(servers.child(entry.value).pos(), Pos { line: 3, column: 5 });
        });
    }

    #[test]
    fn duplicate_keys_are_errors_small_and_large() {
        let err = parse("a: 1\nb: 2\na: 3\n", &Limits::default()).unwrap_err();
        assert!(
            matches!(err, LoadError::DuplicateKey { ref key, pos, first_line: 1 } if key == "a" && pos.line == 3),
            "{err:?}"
        );
        let mut big: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        big.push_str("k7: again\n");
        let err = parse(&big, &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::DuplicateKey { ref key, .. } if key == "k7"));
        assert!(!err.is_syntax());
    }

    #[test]
    fn merge_keys_explicit_wins_and_first_source_wins() {
        let src = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 0\n";
        let stream = parse(src, &Limits::default()).unwrap();
        let c = root(&stream).get("c").unwrap();
        let text = |k: &str| c.get(k).and_then(|n| n.scalar_text()).unwrap();
        assert_eq!(text("x"), "0");
        assert_eq!(text("y"), "1");
        assert_eq!(text("z"), "2");
        assert!(c.get("<<").is_none());
    }

    #[test]
    fn quoted_merge_key_is_an_ordinary_key() {
        let stream = parse("a: &a {x: 1}\nb:\n  '<<': *a\n", &Limits::default()).unwrap();
        assert!(root(&stream).get("b").unwrap().get("<<").is_some());
    }

    #[test]
    fn merge_of_a_scalar_is_an_error() {
        let err = parse("a: &a 1\nb:\n  <<: *a\n", &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::BadMerge { .. }));
    }

    #[test]
    fn alias_bomb_is_refused_by_arithmetic() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            src.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse(&src, &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::AliasExpansion { .. }), "{err:?}");
    }

    #[test]
    fn modest_aliases_are_fine() {
        let src = "s: &s {type: userPassword}\na: *s\nb: *s\n";
        let stream = parse(src, &Limits::default()).unwrap();
        let b = root(&stream).get("b").unwrap();
        assert_eq!(b.get("type").unwrap().as_str(), Some("userPassword"));
    }

    #[test]
    fn depth_limit() {
        let mut src = String::new();
        for i in 0..150 {
            src.push_str(&" ".repeat(i));
            src.push_str("a:\n");
        }
        let err = parse(&src, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, LoadError::TooDeep { max: 100, .. }),
            "{err:?}"
        );
        let limits = Limits {
            max_depth: 400,
            ..Limits::default()
        };
        let deeper: String = (0..300).map(|i| " ".repeat(i) + "a:\n").collect();
        assert!(parse(&deeper, &limits).is_ok());
    }

    #[test]
    fn empty_and_comment_only_sources_are_empty() {
        assert_eq!(parse("", &Limits::default()).unwrap_err(), LoadError::Empty);
        assert_eq!(
            parse("# nothing\n", &Limits::default()).unwrap_err(),
            LoadError::Empty
        );
    }

    #[test]
    fn tabs_in_indentation_are_syntax_errors_with_position() {
        let err = parse("info:\n\ttitle: x\n", &Limits::default()).unwrap_err();
        assert!(
            matches!(err, LoadError::Syntax { pos, .. } if pos.line == 2),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("YAML syntax error: "), "{err}");
    }

    #[test]
    fn non_utf8_is_reported_with_position() {
        let err = check_bytes(b"a: 1\nb: \xff\n", &Limits::default()).unwrap_err();
        assert_eq!(
            err,
            LoadError::NotUtf8 {
                offset: 8,
                pos: Pos { line: 2, column: 4 }
            }
        );
    }

    #[test]
    fn several_documents_are_kept_apart() {
        let stream = parse("a: 1\n---\nb: 2\n", &Limits::default()).unwrap();
        assert_eq!(stream.documents.len(), 2);
        assert_eq!(stream.tree.pos(stream.documents[1].1).line, 2);
    }

    #[test]
    fn keys_that_are_not_scalars_are_a_policy_refusal_not_a_syntax_error() {
        let err = parse("? [a, b]\n: c\n", &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::ComplexKey { .. }), "{err:?}");
        assert!(!err.is_syntax());
    }
}
