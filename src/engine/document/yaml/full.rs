//! The full YAML 1.2 parser: `granit-parser`'s events into the shared builder.
//!
//! Parser choice (see `benches/loader.rs` for the numbers): `serde_yaml` is deprecated
//! upstream and drops positions; `saphyr-parser` 0.3.x refuses valid YAML (a flow sequence
//! closed at its key's indentation after a quoted item) and surrogate-pair escapes;
//! `libyaml-safer` fails 69 cases of the YAML test suite; `yaml-rust2` has saphyr's bugs.
//! `granit-parser`, the maintained fork of saphyr-parser behind serde-saphyr, passes the
//! whole suite in its strict mode, combines surrogate pairs, reports byte offsets, forbids
//! `unsafe` and is fuzzed upstream. Its speed matters less than it seems: most documents
//! are read by our own block reader, and this parser only sees the rest.
//!
//! One leniency over strict mode: the closing bracket of a multi-line flow collection may
//! sit at the indentation of the key (or `-`) that holds the collection. the policy's corpus
//! of real documents has it, PyYAML and libyaml accept it, and refusing it would block a
//! correct deploy; content lines inside the collection, and the continuation lines of
//! quoted scalars, must still be indented past that key, as the test suite demands.

use granit_parser::{ErrorKind, Event, Parser, ScalarStyle, ScanError, Span, StructureStyle};

use super::schema::scalar_kind;
use crate::engine::document::build::{Builder, Collection};
use crate::engine::document::{Limits, LoadError, Offset, Pos, Stream, Syntax, pos_of};

pub(super) fn parse<'a>(text: &'a str, limits: &Limits) -> Result<Stream<'a>, LoadError> {
    match run(text, limits, Indentation::Strict) {
        Err(Failure::Scan(error))
            if matches!(error.kind(), ErrorKind::InvalidIndentation)
                && closes_flow_at_line_start(text, &error) =>
        {
            run(text, limits, Indentation::ClosingBracketsAtKey)
                .map_err(|failure| failure.into_load_error(text))
        }
        result => result.map_err(|failure| failure.into_load_error(text)),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Indentation {
    /// granit's strict mode: the YAML test suite's indentation rules.
    Strict,
    /// granit's lenient mode, with the strict rules checked here, except for a closing
    /// bracket at the indentation of the collection's key.
    ClosingBracketsAtKey,
}

enum Failure {
    Scan(ScanError),
    Load(LoadError),
    /// A line of a multi-line flow collection or quoted scalar is not indented enough.
    UnderIndented(usize),
}

impl Failure {
    fn into_load_error(self, text: &str) -> LoadError {
        match self {
            Failure::Load(error) => error,
            Failure::Scan(error) => {
                let marker = error.marker();
                let pos = match marker.byte_offset() {
                    Some(offset) => pos_of(text, offset),
                    None => Pos::new(marker.line(), marker.col() + 1),
                };
                let message = match error.kind() {
                    ErrorKind::UnknownAnchor => return LoadError::UnknownAnchor { pos },
                    _ => error.info(),
                };
                LoadError::Syntax {
                    syntax: Syntax::Yaml,
                    message,
                    pos,
                }
            }
            Failure::UnderIndented(offset) => LoadError::Syntax {
                syntax: Syntax::Yaml,
                message: "invalid indentation: this line must be indented past the key that \
                          holds the value"
                    .to_owned(),
                pos: pos_of(text, offset),
            },
        }
    }
}

impl From<LoadError> for Failure {
    fn from(error: LoadError) -> Self {
        Failure::Load(error)
    }
}

/// Whether the strict parser stopped at a `]` or `}` that starts its line.
fn closes_flow_at_line_start(text: &str, error: &ScanError) -> bool {
    let Some(offset) = error.marker().byte_offset() else {
        return false;
    };
    let bytes = text.as_bytes();
    let line_start = bytes[..offset.min(bytes.len())]
        .iter()
        .rposition(|&b| b == b'\n' || b == b'\r')
        .map_or(0, |i| i + 1);
    matches!(bytes.get(offset), Some(b']' | b'}'))
        && bytes[line_start..offset].iter().all(|&b| b == b' ')
}

fn offset(span: &Span) -> Offset {
    span.start
        .byte_offset()
        .map_or(Offset::UNKNOWN, Offset::new)
}

fn run<'a>(text: &'a str, limits: &Limits, mode: Indentation) -> Result<Stream<'a>, Failure> {
    // Our depth limit must be the one that applies, not the parser's own.
    let nesting = limits.max_depth.saturating_add(1).max(255);
    // Comments are not read: their events are off. kube's own YAML reader turns granit's
    // `comments` feature on for the whole build, and with it granit buffers the comments it
    // meets while looking ahead and refuses valid YAML past 96 of them in a row.
    let options = granit_parser::options! {
        strict_indentation: mode == Indentation::Strict,
        flow_nesting_limit: nesting,
        block_nesting_limit: nesting,
        emit_comments: false,
    };
    let mut parser = Parser::new_from_str_with_options(text, options);
    let mut builder = Builder::with_aliases(text, true, limits);
    let mut indents = Indents::default();
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(Failure::Scan)?;
        match step(text, mode, &mut builder, &mut indents, event, &span) {
            Ok(()) => {}
            Err(
                error @ Failure::Load(
                    LoadError::ComplexKey { .. }
                    | LoadError::DuplicateKey { .. }
                    | LoadError::BadMerge { .. },
                ),
            ) => return Err(syntax_error_after(&mut parser).unwrap_or(error)),
            // The limits stop at once: reading on is what they exist to prevent.
            Err(error) => return Err(error),
        }
    }
    Ok(builder.finish()?)
}

/// A refusal of text that parses (a complex or duplicate key) must not hide a syntax error
/// further on: the text is not YAML at all, and the message must say so. Reading on costs
/// no more than the parse that was under way.
fn syntax_error_after<'a>(parser: &mut Parser<'a, granit_parser::StrInput<'a>>) -> Option<Failure> {
    while let Some(event) = parser.next_event() {
        if let Err(error) = event {
            return Some(Failure::Scan(error));
        }
    }
    None
}

fn step<'a>(
    text: &'a str,
    mode: Indentation,
    builder: &mut Builder<'a>,
    indents: &mut Indents,
    event: Event<'a>,
    span: &Span,
) -> Result<(), Failure> {
    let at = offset(span);
    {
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(..) => builder.start_document(at),
            Event::Scalar(value, style, anchor, tag) => {
                if mode == Indentation::ClosingBracketsAtKey
                    && matches!(style, ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted)
                    && indents.flow_depth == 0
                {
                    indents.check_quoted(text, span)?;
                }
                let plain = style == ScalarStyle::Plain;
                let tag = tag.as_deref().map(|t| (t.handle(), t.suffix()));
                let kind = scalar_kind(&value, plain, tag);
                let merge_key = plain && tag.is_none() && value.as_ref() == "<<";
                builder.scalar(value, kind, at, anchor, merge_key)?;
            }
            Event::SequenceStart(style, anchor, _) => {
                indents.open(style, span);
                builder.open(Collection::Seq, at, anchor)?;
            }
            Event::MappingStart(style, anchor, _) => {
                indents.open(style, span);
                builder.open(Collection::Map, at, anchor)?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if mode == Indentation::ClosingBracketsAtKey {
                    indents.close(text, span)?;
                } else {
                    indents.pop();
                }
                builder.close()?;
            }
            Event::Alias(anchor) => builder.alias(anchor, at)?,
            // Presentation events, which these options do not ask for.
            _ => {}
        }
    }
    Ok(())
}

/// The indentation context the strict rules are checked against in lenient mode.
#[derive(Default)]
struct Indents {
    /// Per open collection: whether it is flow style, its column, and where it started.
    open: Vec<(bool, usize, usize)>,
    flow_depth: usize,
}

impl Indents {
    fn open(&mut self, style: StructureStyle, span: &Span) {
        let flow = style == StructureStyle::Flow;
        self.flow_depth += usize::from(flow);
        let start = span.start.byte_offset().unwrap_or(0);
        self.open.push((flow, span.start.col(), start));
    }

    fn pop(&mut self) -> Option<(bool, usize, usize)> {
        let top = self.open.pop();
        if let Some((true, ..)) = top {
            self.flow_depth = self.flow_depth.saturating_sub(1);
        }
        top
    }

    /// The column of the innermost block collection; `None` at the top level.
    fn block_indent(&self) -> Option<usize> {
        self.open
            .iter()
            .rev()
            .find(|(flow, ..)| !flow)
            .map(|(_, column, _)| *column)
    }

    /// At the end of an outermost flow collection, checks the lines it spans.
    fn close(&mut self, text: &str, span: &Span) -> Result<(), Failure> {
        if let Some((true, _, start)) = self.pop()
            && self.flow_depth == 0
        {
            let end = span.start.byte_offset().unwrap_or(start);
            check_lines(text, start, end, self.block_indent(), true)?;
        }
        Ok(())
    }

    /// Checks the continuation lines of a quoted scalar in block context.
    fn check_quoted(&self, text: &str, span: &Span) -> Result<(), Failure> {
        let start = span.start.byte_offset().unwrap_or(0);
        let end = span.end.byte_offset().unwrap_or(start);
        check_lines(text, start, end, self.block_indent(), false)
    }
}

/// Every line after the first of `text[start..=end]` must be indented past `key_column`
/// (the column of the block collection that holds the node; any indentation at the top
/// level). Blank lines are exempt; so are comment lines and, at the key's own column, a
/// closing bracket, inside a flow collection.
fn check_lines(
    text: &str,
    start: usize,
    end: usize,
    key_column: Option<usize>,
    flow: bool,
) -> Result<(), Failure> {
    let Some(key_column) = key_column else {
        return Ok(());
    };
    let bytes = text.as_bytes();
    let end = end.min(bytes.len());
    let mut line_start = match bytes[start.min(end)..end]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
    {
        Some(i) => start + i,
        None => return Ok(()),
    };
    while line_start < end {
        // Step over the line break.
        if bytes[line_start] == b'\r' && bytes.get(line_start + 1) == Some(&b'\n') {
            line_start += 1;
        }
        line_start += 1;
        let line_end = bytes[line_start..]
            .iter()
            .position(|&b| b == b'\n' || b == b'\r')
            .map_or(bytes.len(), |i| line_start + i);
        let line = &bytes[line_start..line_end];
        let spaces = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[spaces..];
        let blank = rest.iter().all(|&b| b == b' ' || b == b'\t');
        let exempt = blank
            || (flow && rest.first() == Some(&b'#'))
            || (flow && matches!(rest.first(), Some(b']' | b'}')) && spaces >= key_column);
        if !exempt && spaces <= key_column {
            return Err(Failure::UnderIndented(line_start));
        }
        line_start = line_end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Stream<'_>, LoadError> {
        parse(text, &Limits::default())
    }

    #[test]
    fn any_number_of_comments_may_stand_between_a_key_and_its_value() {
        // A long commented-out block where the parser looks ahead for the value. With its
        // comment events on (kube's YAML reader turns granit's `comments` feature on for the
        // whole build), granit buffers them and refused past 96: valid YAML refused. Found by
        // the yaml_differential fuzz target, where the block reader read the text.
        let comments = "# a commented-out line\n".repeat(300);
        for text in [
            format!("key:\n{comments}  value\nother: &a x\n"),
            format!("key:    # trailing\n{comments}- item\n"),
            format!("- a\n{comments}- b\n"),
        ] {
            assert!(load(&text).is_ok(), "{:?}", load(&text).err());
        }
    }

    #[test]
    fn a_flow_sequence_may_close_at_its_keys_indentation() {
        for text in [
            "x:\n  e: [\n    \"a\"\n  ]\n",
            "x:\n  e: [\n    'a', b\n  ]\n  f: 1\n",
            "x:\n  e: {\n    a: \"b\"\n  }\n",
            "- [a,\n]\n",
            "a:\n  - [x,\n  ]\n",
        ] {
            assert!(load(text).is_ok(), "{text:?}: {:?}", load(text).err());
        }
        let stream = load("x:\n  e: [\n    \"a\"\n  ]\n").unwrap();
        let root = stream.roots().next().unwrap();
        let e = root.get("x").unwrap().get("e").unwrap();
        assert_eq!(e.items().next().unwrap().as_str(), Some("a"));
    }

    #[test]
    fn but_not_lower_and_content_must_be_indented_past_the_key() {
        for (text, line) in [
            ("x:\n  e: [\n    \"a\"\n ]\n", 4),
            ("x:\n  e: [\n    \"a\",\n  b\n  ]\n", 4),
            ("x:\n  e: [\n    \"a\"\n  ]\n  f: \"g\nh\"\n", 6),
            ("flow: [a,\nb,\nc]\n", 2),
            ("x:\n  e: [\n  ]\ny: \"a\n\tb\"\n", 5),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.is_syntax(), "{text:?}: {err:?}");
            assert_eq!(err.pos().line, line, "{text:?}: {err:?}");
        }
    }

    #[test]
    fn a_quoted_scalar_continued_at_column_one_is_reported_on_that_line() {
        let err = load("---\nquoted: \"a\nb\nc\"\n").unwrap_err();
        assert!(
            matches!(err, LoadError::Syntax { pos, .. } if pos == Pos { line: 3, column: 1 }),
            "{err:?}"
        );
    }

    #[test]
    fn surrogate_pair_escapes_are_one_character() {
        let stream = load("x: \"\\ud83d\\ude80\"\n").unwrap();
        let root = stream.roots().next().unwrap();
        assert_eq!(root.get("x").unwrap().as_str(), Some("🚀"));
        assert!(load("x: \"\\ud83d\"\n").unwrap_err().is_syntax());
    }
}
