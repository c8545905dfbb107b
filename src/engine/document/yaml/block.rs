//! A reader for the block-style YAML that AsyncAPI documents are written in: block mappings
//! and sequences, plain scalars (wrapped over lines of text too), quoted scalars (folded
//! over lines in block context), literal and folded block scalars, and flow collections that
//! open and close on one line.
//!
//! It never decides alone. Whatever lies outside that subset (anchors, aliases, tags,
//! directives, several documents, plain scalars wrapped onto a line that starts with an
//! indicator or holds `: ` or ` #`, multi-line flow collections, nested compact sequences,
//! tabs, CR line breaks, ...), and whatever is not valid YAML, makes it
//! give up with [`Bail`], and the
//! full parser reads the text from the start: errors and their messages always come from
//! the full parser. What it accepts, it must turn into the very tree the full parser
//! builds, node offsets included; the YAML test suite, the corpora, a property test and a
//! differential fuzz target (`fuzz/fuzz_targets/yaml_differential.rs`) hold it to that.
//!
//! It exists for speed: it reads the generated 1 MiB document into the tree ten times faster
//! than `granit-parser` produces its events (`cargo bench --bench loader`), and it feeds the same
//! [`Builder`], so keys, depth and size limits are enforced in one place.

use std::borrow::Cow;

use super::schema::plain_kind;
use crate::engine::document::build::{Builder, Collection};
use crate::engine::document::{Limits, Offset, ScalarKind, Stream, Syntax};

/// The text is outside the subset, or not valid YAML: the full parser decides.
#[derive(Debug)]
pub(super) struct Bail;

type Read<T> = Result<T, Bail>;

/// Recursion here is bounded by this, far below what a thread's stack holds; deeper
/// documents are the full parser's (which enforces the configured depth limit).
const MAX_NESTING: usize = 96;

/// YAML limits an implicit key, from its start to its colon, to 1024 characters; keys
/// anywhere near that (counted in bytes, which are never fewer) go to the full parser.
const MAX_KEY: usize = 1000;

/// Reads `text` if it lies inside the subset; `None` sends it to the full parser.
pub(super) fn parse<'a>(text: &'a str, limits: &Limits) -> Option<Stream<'a>> {
    // A byte-order mark may open the stream (editors on Windows write one); anywhere else
    // it is the full parser's.
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    if !printable_lines(&text.as_bytes()[start..]) {
        return None;
    }
    let mut reader = Reader {
        text,
        bytes: text.as_bytes(),
        at: start,
        nesting: 0,
        builder: Builder::new(text, Syntax::Yaml, true, limits),
    };
    reader.document().ok()?;
    reader.builder.finish().ok()
}

/// Whether every byte is printable for YAML and no line break but LF occurs: no tab, CR,
/// control character, NEL, byte-order mark, U+2028/U+2029 or noncharacter U+FFFE/U+FFFF.
/// Those are where readers disagree or YAML says something special, so they are the full
/// parser's.
fn printable_lines(bytes: &[u8]) -> bool {
    for (index, chunk) in bytes.chunks(64).enumerate() {
        // Branch-free over the chunk, so the common case is vectorised.
        let suspect = chunk.iter().fold(false, |acc, &b| {
            acc | ((b < 0x20) & (b != b'\n')) | (b >= 0x7f)
        });
        if suspect && !chunk_is_printable(chunk, bytes, index * 64) {
            return false;
        }
    }
    true
}

fn chunk_is_printable(chunk: &[u8], bytes: &[u8], start: usize) -> bool {
    for (i, &b) in chunk.iter().enumerate() {
        let at = start + i;
        let next = |k: usize| bytes.get(at + k).copied().unwrap_or(0);
        let bad = match b {
            b'\n' | 0x20..=0x7e => false,
            0x00..=0x1f | 0x7f => true,
            // U+0080..U+009F, NEL among them.
            0xc2 => next(1) < 0xa0,
            // U+2028, U+2029.
            0xe2 => next(1) == 0x80 && matches!(next(2), 0xa8 | 0xa9),
            // U+FEFF, U+FFFE, U+FFFF.
            0xef => (next(1) == 0xbb && next(2) == 0xbf) || (next(1) == 0xbf && next(2) >= 0xbe),
            _ => false,
        };
        if bad {
            return false;
        }
    }
    true
}

/// How a plain scalar in block context ends.
enum PlainEnd {
    /// At `: ` (or `:` at the end of the line): it was a key; the colon's offset.
    Key(usize),
    /// At a comment or the end of the line.
    Line,
}

enum Chomp {
    Clip,
    Strip,
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    /// Where reading goes on.
    at: usize,
    nesting: usize,
    builder: Builder<'a>,
}

fn is_blank_or_end(b: Option<u8>) -> bool {
    matches!(b, None | Some(b' ' | b'\n'))
}

fn is_flow_indicator(b: u8) -> bool {
    matches!(b, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'a> Reader<'a> {
    fn byte(&self, at: usize) -> Option<u8> {
        self.bytes.get(at).copied()
    }

    fn spaces_from(&self, mut at: usize) -> usize {
        while self.byte(at) == Some(b' ') {
            at += 1;
        }
        at
    }

    fn line_end(&self, at: usize) -> usize {
        memchr::memchr(b'\n', &self.bytes[at.min(self.bytes.len())..])
            .map_or(self.bytes.len(), |i| at + i)
    }

    fn str(&self, start: usize, end: usize) -> Read<&'a str> {
        self.text.get(start..end).ok_or(Bail)
    }

    fn enter(&mut self) -> Read<()> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(Bail);
        }
        Ok(())
    }

    /// From the start of a line, steps over blank and comment lines. Returns the start of
    /// the next line with content and its indentation, leaving `at` on that line's start;
    /// `None` at the end of the text.
    fn skip_blank_lines(&mut self) -> Option<(usize, usize)> {
        loop {
            let start = self.at;
            let first = self.spaces_from(start);
            match self.byte(first) {
                None => {
                    self.at = self.bytes.len();
                    return None;
                }
                Some(b'\n') => self.at = first + 1,
                Some(b'#') => self.at = (self.line_end(first) + 1).min(self.bytes.len()),
                Some(_) => return Some((start, first - start)),
            }
        }
    }

    /// [`Self::skip_blank_lines`] inside a document, where a document marker gives up.
    fn next_content(&mut self) -> Read<Option<(usize, usize)>> {
        match self.skip_blank_lines() {
            Some((start, 0)) if self.is_document_marker(start) => Err(Bail),
            found => Ok(found),
        }
    }

    fn is_document_marker(&self, at: usize) -> bool {
        let rest = &self.bytes[at..];
        (rest.starts_with(b"---") || rest.starts_with(b"...")) && is_blank_or_end(self.byte(at + 3))
    }

    /// The indentation of the next line that is not blank, comments included; `None` at
    /// the end. Used after a plain scalar, which a more indented line would continue.
    fn next_nonblank_indent(&self) -> Option<usize> {
        let mut start = self.at;
        while start < self.bytes.len() {
            let first = self.spaces_from(start);
            match self.byte(first) {
                None => return None,
                Some(b'\n') => start = first + 1,
                Some(_) => return Some(first - start),
            }
        }
        None
    }

    /// After a node on a line: spaces, then a comment (after a space) or the line's end.
    /// Moves to the next line.
    fn finish_line(&mut self, from: usize) -> Read<()> {
        let after = self.spaces_from(from);
        match self.byte(after) {
            None => self.at = self.bytes.len(),
            Some(b'\n') => self.at = after + 1,
            Some(b'#') if after > from || self.byte(from.wrapping_sub(1)) == Some(b' ') => {
                self.at = (self.line_end(after) + 1).min(self.bytes.len());
            }
            Some(_) => return Err(Bail),
        }
        Ok(())
    }

    fn document(&mut self) -> Read<()> {
        let (mut start, mut indent) = self.skip_blank_lines().ok_or(Bail)?;
        let mut document_at = start + indent;
        if indent == 0 && self.is_document_marker(start) {
            if self.bytes[start] != b'-' {
                return Err(Bail);
            }
            document_at = start;
            self.finish_line(start + 3)?;
            (start, indent) = self.next_content()?.ok_or(Bail)?;
        }
        let first = start + indent;
        if self.byte(first) == Some(b'%') {
            return Err(Bail);
        }
        self.builder.start_document(Offset::new(document_at));
        self.block_node(indent, first)?;
        match self.next_content()? {
            None => Ok(()),
            Some(_) => Err(Bail),
        }
    }

    /// A block node whose first character is at `first`, in column `column`.
    fn block_node(&mut self, column: usize, first: usize) -> Read<()> {
        if self.byte(first) == Some(b'-') && is_blank_or_end(self.byte(first + 1)) {
            return self.block_sequence(column, first, false);
        }
        self.block_mapping(column, first)
    }

    fn block_mapping(&mut self, column: usize, first_key: usize) -> Read<()> {
        self.enter()?;
        self.builder
            .open(Collection::Map, Offset::new(first_key), 0)
            .map_err(|_| Bail)?;
        let mut key_at = first_key;
        loop {
            let colon = self.key(key_at)?;
            self.mapping_value(column, colon)?;
            match self.next_content()? {
                Some((start, indent)) if indent == column => {
                    key_at = start + indent;
                    if self.byte(key_at) == Some(b'-') && is_blank_or_end(self.byte(key_at + 1)) {
                        return Err(Bail);
                    }
                }
                Some((_, indent)) if indent > column => return Err(Bail),
                _ => break,
            }
        }
        self.nesting -= 1;
        self.builder.close().map_err(|_| Bail)
    }

    /// Reads a key starting at `at` and hands it to the builder; returns the colon's offset.
    fn key(&mut self, at: usize) -> Read<usize> {
        let colon = match self.byte(at) {
            Some(quote @ (b'"' | b'\'')) => {
                let (text, end) = self.quoted(at, quote, None)?;
                let colon = self.spaces_from(end);
                if self.byte(colon) != Some(b':')
                    || !is_blank_or_end(self.byte(colon + 1))
                    || colon - at > MAX_KEY
                {
                    return Err(Bail);
                }
                self.key_scalar(text, at)?;
                colon
            }
            _ => {
                self.plain_start(at)?;
                let (end, how) = self.plain_in_block(at);
                let PlainEnd::Key(colon) = how else {
                    return Err(Bail);
                };
                let text = self.str(at, end)?;
                // A plain `<<` is a merge key: the full parser's.
                if text == "<<" || colon - at > MAX_KEY {
                    return Err(Bail);
                }
                self.key_scalar(Cow::Borrowed(text), at)?;
                colon
            }
        };
        Ok(colon)
    }

    fn key_scalar(&mut self, text: Cow<'a, str>, at: usize) -> Read<()> {
        self.builder
            .scalar(text, ScalarKind::Str, Offset::new(at), 0, false)
            .map_err(|_| Bail)
    }

    fn scalar(&mut self, text: Cow<'a, str>, kind: ScalarKind, at: usize) -> Read<()> {
        self.builder
            .scalar(text, kind, Offset::new(at), 0, false)
            .map_err(|_| Bail)
    }

    /// The value after the colon at `colon` of a key in a mapping at `column`.
    fn mapping_value(&mut self, column: usize, colon: usize) -> Read<()> {
        let at = self.spaces_from(colon + 1);
        match self.byte(at) {
            None | Some(b'\n' | b'#') => {
                self.finish_line(colon + 1)?;
                match self.next_content()? {
                    Some((start, indent)) if indent > column => {
                        self.block_node(indent, start + indent)
                    }
                    Some((start, indent))
                        if indent == column
                            && self.byte(start + indent) == Some(b'-')
                            && is_blank_or_end(self.byte(start + indent + 1)) =>
                    {
                        self.block_sequence(column, start + indent, true)
                    }
                    _ => self.scalar(Cow::Borrowed("~"), ScalarKind::Null, colon),
                }
            }
            Some(_) => self.node_on_line(column, at, None),
        }
    }

    /// A node that starts on the line of its key or `-`, at `at`, in a collection at
    /// `column`. A key there starts a mapping at `mapping_column` (the compact mapping of a
    /// sequence item); where there is none (after a key), a key there is the full parser's.
    fn node_on_line(
        &mut self,
        column: usize,
        at: usize,
        mapping_column: Option<usize>,
    ) -> Read<()> {
        match self.byte(at) {
            Some(b'|' | b'>') => self.block_scalar(column, at),
            Some(b'[' | b'{') => {
                let end = self.flow_node(at)?;
                self.finish_line(end)
            }
            Some(quote @ (b'"' | b'\'')) => {
                let (text, end) = self.quoted(at, quote, Some(column))?;
                if let Some(mapping_column) = mapping_column
                    && self.byte(self.spaces_from(end)) == Some(b':')
                {
                    // `- "key": value`: a mapping inside the item.
                    return self.block_mapping(mapping_column, at);
                }
                self.scalar(text, ScalarKind::Str, at)?;
                self.finish_line(end)
            }
            _ => {
                self.plain_start(at)?;
                let (end, how) = self.plain_in_block(at);
                if let PlainEnd::Key(_) = how {
                    return match mapping_column {
                        Some(mapping_column) => self.block_mapping(mapping_column, at),
                        None => Err(Bail),
                    };
                }
                let text = self.str(at, end)?;
                if let Some((folded, next_line)) = self.plain_lines(column, text, end)? {
                    let kind = plain_kind(&folded);
                    self.scalar(Cow::Owned(folded), kind, at)?;
                    self.at = next_line;
                    return Ok(());
                }
                self.scalar(Cow::Borrowed(text), plain_kind(text), at)?;
                self.finish_line(end)?;
                self.no_continuation(column)
            }
        }
    }

    /// A plain scalar whose first line is `first` (ending at `end`), in a collection at
    /// `column`, that goes on over the more indented lines after it: its text folded as
    /// YAML folds (a line break between two lines is a space, each blank line between them
    /// a line feed; spaces around each line dropped), and the start of the line after its
    /// last. `None` when no line continues it, or when its first line ends in a comment.
    ///
    /// Wrapped `description`s are where AsyncAPI documents have these. A continuation line
    /// that would mean anything but text (`: ` or ` #` in it, an indicator or a comment
    /// first) is the full parser's: there YAML has errors and readers differ.
    fn plain_lines(&self, column: usize, first: &str, end: usize) -> Read<Option<(String, usize)>> {
        if !matches!(self.byte(self.spaces_from(end)), Some(b'\n')) {
            return Ok(None);
        }
        let mut folded: Option<String> = None;
        let mut blank_lines = 0;
        let mut line = self.spaces_from(end) + 1;
        let mut next_line = line;
        while line < self.bytes.len() {
            let content = self.spaces_from(line);
            match self.byte(content) {
                None => break,
                Some(b'\n') => {
                    blank_lines += 1;
                    line = content + 1;
                    continue;
                }
                Some(_) if content - line <= column => break,
                Some(
                    b'#' | b'-' | b'?' | b':' | b',' | b'[' | b']' | b'{' | b'}' | b'&' | b'*'
                    | b'!' | b'|' | b'>' | b'\'' | b'"' | b'%' | b'@' | b'`',
                ) => return Err(Bail),
                Some(_) => {}
            }
            let line_end = self.line_end(content);
            let words = &self.bytes[content..line_end];
            if words.windows(2).any(|w| w == b": " || w == b" #") || words.ends_with(b":") {
                return Err(Bail);
            }
            let text = folded.get_or_insert_with(|| first.to_owned());
            if blank_lines == 0 {
                text.push(' ');
            } else {
                (0..blank_lines).for_each(|_| text.push('\n'));
            }
            text.push_str(self.str(content, self.trim_end(content, line_end))?);
            blank_lines = 0;
            line = (line_end + 1).min(self.bytes.len());
            next_line = line;
        }
        Ok(folded.map(|text| (text, next_line)))
    }

    /// A plain scalar would go on over a more indented line (even a comment line, which
    /// readers treat differently): the full parser's.
    fn no_continuation(&self, column: usize) -> Read<()> {
        match self.next_nonblank_indent() {
            Some(indent) if indent > column => Err(Bail),
            _ => Ok(()),
        }
    }

    /// A block sequence whose first `-` is at `first_dash`, in column `column`. An indentless
    /// sequence (`key:` then `- item` at the key's column) starts, for the full parser,
    /// where its first item does.
    fn block_sequence(&mut self, column: usize, first_dash: usize, indentless: bool) -> Read<()> {
        self.enter()?;
        let start = if indentless {
            let item = self.spaces_from(first_dash + 1);
            if matches!(self.byte(item), None | Some(b'\n' | b'#')) {
                return Err(Bail);
            }
            item
        } else {
            first_dash
        };
        self.builder
            .open(Collection::Seq, Offset::new(start), 0)
            .map_err(|_| Bail)?;
        let mut dash = first_dash;
        loop {
            self.sequence_item(column, dash)?;
            match self.next_content()? {
                Some((start, indent))
                    if indent == column
                        && self.byte(start + indent) == Some(b'-')
                        && is_blank_or_end(self.byte(start + indent + 1)) =>
                {
                    dash = start + indent;
                }
                Some((_, indent)) if indent > column || (indent == column && !indentless) => {
                    return Err(Bail);
                }
                _ => break,
            }
        }
        self.nesting -= 1;
        self.builder.close().map_err(|_| Bail)
    }

    fn sequence_item(&mut self, column: usize, dash: usize) -> Read<()> {
        let at = self.spaces_from(dash + 1);
        match self.byte(at) {
            Some(b'#') => Err(Bail),
            None | Some(b'\n') => {
                self.finish_line(dash + 1)?;
                match self.next_content()? {
                    Some((start, indent)) if indent > column => {
                        self.block_node(indent, start + indent)
                    }
                    _ => self.scalar(Cow::Borrowed("~"), ScalarKind::Null, at),
                }
            }
            Some(b'-') if is_blank_or_end(self.byte(at + 1)) => Err(Bail),
            Some(_) => self.node_on_line(column, at, Some(column + (at - dash))),
        }
    }

    /// A plain scalar may not start with an indicator (`-`, `?` and `:` only before a space).
    fn plain_start(&self, at: usize) -> Read<()> {
        match self.byte(at) {
            None
            | Some(
                b',' | b'[' | b']' | b'{' | b'}' | b'#' | b'&' | b'*' | b'!' | b'|' | b'>' | b'\''
                | b'"' | b'%' | b'@' | b'`' | b' ' | b'\n',
            ) => Err(Bail),
            Some(b'-' | b'?' | b':') if is_blank_or_end(self.byte(at + 1)) => Err(Bail),
            Some(b'?' | b':') => Err(Bail),
            _ => Ok(()),
        }
    }

    /// A plain scalar in block context from `at`: returns where its text ends (trailing
    /// spaces trimmed) and how it ends.
    fn plain_in_block(&self, at: usize) -> (usize, PlainEnd) {
        // One pass to the line's end: most plain scalars are keys, which end long before it.
        let mut i = at;
        while let Some(&b) = self.bytes.get(i) {
            match b {
                b'\n' => break,
                b':' if is_blank_or_end(self.byte(i + 1)) => {
                    return (self.trim_end(at, i), PlainEnd::Key(i));
                }
                b'#' if self.bytes[i - 1] == b' ' => return (self.trim_end(at, i), PlainEnd::Line),
                _ => i += 1,
            }
        }
        (self.trim_end(at, i), PlainEnd::Line)
    }

    fn trim_end(&self, start: usize, mut end: usize) -> usize {
        while end > start && self.bytes[end - 1] == b' ' {
            end -= 1;
        }
        end
    }

    /// A quoted scalar; returns its text and the offset after it. It may go on over more
    /// lines only where `column` is given (block context): the lines after the first must
    /// be indented past that column, and they are folded as YAML folds flow scalars.
    fn quoted(&self, at: usize, quote: u8, column: Option<usize>) -> Read<(Cow<'a, str>, usize)> {
        let close = self.closing_quote(at, quote)?;
        let body = at + 1;
        let raw = &self.bytes[body..close];
        if memchr::memchr(b'\n', raw).is_none() {
            let text = if quote == b'\'' {
                self.single_quoted_line(body, close)?
            } else {
                self.double_quoted_line(body, close)?
            };
            return Ok((text, close + 1));
        }
        let column = column.ok_or(Bail)?;
        // Escaped line breaks and escapes next to folded whitespace: the full parser's.
        if quote == b'"' && memchr::memchr(b'\\', raw).is_some() {
            return Err(Bail);
        }
        let lines: Vec<&str> = self.str(body, close)?.split('\n').collect();
        let mut text = String::with_capacity(raw.len());
        let mut blank_lines = 0usize;
        for (i, line) in lines.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == lines.len();
            if !first {
                let indent = line.len() - line.trim_start_matches(' ').len();
                // The closing quote's line counts even with nothing before the quote.
                if indent <= column && (last || !line.trim_start_matches(' ').is_empty()) {
                    return Err(Bail);
                }
            }
            let part = match (first, last) {
                (true, _) => line.trim_end_matches(' '),
                (false, true) => line.trim_start_matches(' '),
                (false, false) => line.trim_matches(' '),
            };
            if !first {
                if part.is_empty() && !last {
                    blank_lines += 1;
                    continue;
                }
                if blank_lines == 0 {
                    text.push(' ');
                } else {
                    text.extend(std::iter::repeat_n('\n', blank_lines));
                }
                blank_lines = 0;
            }
            if quote == b'\'' {
                text.push_str(&part.replace("''", "'"));
            } else {
                text.push_str(part);
            }
        }
        Ok((Cow::Owned(text), close + 1))
    }

    /// The offset of the quote that closes the scalar opened at `at`.
    fn closing_quote(&self, at: usize, quote: u8) -> Read<usize> {
        let mut from = at + 1;
        loop {
            let rest = self.bytes.get(from..).ok_or(Bail)?;
            let stop = if quote == b'\'' {
                memchr::memchr(b'\'', rest)
            } else {
                memchr::memchr2(b'"', b'\\', rest)
            }
            .ok_or(Bail)?
                + from;
            match self.bytes[stop] {
                b'\\' => from = stop + 2,
                b'\'' if self.byte(stop + 1) == Some(b'\'') => from = stop + 2,
                _ => return Ok(stop),
            }
        }
    }

    fn single_quoted_line(&self, body: usize, close: usize) -> Read<Cow<'a, str>> {
        let text = self.str(body, close)?;
        Ok(if text.contains("''") {
            Cow::Owned(text.replace("''", "'"))
        } else {
            Cow::Borrowed(text)
        })
    }

    fn double_quoted_line(&self, body: usize, close: usize) -> Read<Cow<'a, str>> {
        let Some(first) = memchr::memchr(b'\\', &self.bytes[body..close]) else {
            return Ok(Cow::Borrowed(self.str(body, close)?));
        };
        let mut text = String::with_capacity(close - body);
        let mut from = body;
        let mut escape = body + first;
        loop {
            text.push_str(self.str(from, escape)?);
            from = self.escape(escape, close, &mut text)?;
            match memchr::memchr(b'\\', &self.bytes[from..close]) {
                Some(i) => escape = from + i,
                None => break,
            }
        }
        text.push_str(self.str(from, close)?);
        Ok(Cow::Owned(text))
    }

    /// The escape at `at` (a backslash) into `out`; returns the offset after it.
    fn escape(&self, at: usize, line_end: usize, out: &mut String) -> Read<usize> {
        let code = if at + 1 < line_end {
            self.bytes[at + 1]
        } else {
            return Err(Bail);
        };
        let simple = match code {
            b'0' => '\0',
            b'a' => '\u{7}',
            b'b' => '\u{8}',
            b't' => '\t',
            b'n' => '\n',
            b'v' => '\u{b}',
            b'f' => '\u{c}',
            b'r' => '\r',
            b'e' => '\u{1b}',
            b' ' => ' ',
            b'"' => '"',
            b'/' => '/',
            b'\\' => '\\',
            b'N' => '\u{85}',
            b'_' => '\u{a0}',
            b'L' => '\u{2028}',
            b'P' => '\u{2029}',
            b'x' | b'u' | b'U' => {
                let digits = match code {
                    b'x' => 2,
                    b'u' => 4,
                    _ => 8,
                };
                let hex = self.str(at + 2, (at + 2 + digits).min(line_end))?;
                if hex.len() != digits || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Bail);
                }
                // Surrogates (and pairs of them) are the full parser's.
                let value = u32::from_str_radix(hex, 16).map_err(|_| Bail)?;
                out.push(char::from_u32(value).ok_or(Bail)?);
                return Ok(at + 2 + digits);
            }
            _ => return Err(Bail),
        };
        out.push(simple);
        Ok(at + 2)
    }

    /// A flow collection that closes on its line; returns the offset after it.
    fn flow_node(&mut self, at: usize) -> Read<usize> {
        self.enter()?;
        let (kind, close) = match self.byte(at) {
            Some(b'[') => (Collection::Seq, b']'),
            _ => (Collection::Map, b'}'),
        };
        self.builder
            .open(kind, Offset::new(at), 0)
            .map_err(|_| Bail)?;
        let mut i = self.spaces_from(at + 1);
        loop {
            if self.byte(i) == Some(close) {
                break;
            }
            if kind == Collection::Map {
                i = self.flow_key(i)?;
                i = self.spaces_from(i);
                if matches!(self.byte(i), Some(b',' | b'}')) {
                    return Err(Bail);
                }
            }
            i = self.flow_item(i)?;
            i = self.spaces_from(i);
            match self.byte(i) {
                Some(b',') => i = self.spaces_from(i + 1),
                Some(b) if b == close => break,
                _ => return Err(Bail),
            }
        }
        self.nesting -= 1;
        self.builder.close().map_err(|_| Bail)?;
        Ok(i + 1)
    }

    /// A key of a flow mapping and its colon; returns the offset after the colon.
    fn flow_key(&mut self, at: usize) -> Read<usize> {
        let (text, end, plain) = match self.byte(at) {
            Some(quote @ (b'"' | b'\'')) => {
                let (text, end) = self.quoted(at, quote, None)?;
                (text, end, false)
            }
            _ => {
                self.flow_plain_start(at)?;
                let end = self.plain_in_flow(at);
                (Cow::Borrowed(self.str(at, end)?), end, true)
            }
        };
        let colon = self.spaces_from(end);
        // Only a quoted (JSON-like) key may have its value right after the colon.
        if self.byte(colon) != Some(b':')
            || (plain && self.byte(colon + 1) != Some(b' '))
            || colon - at > MAX_KEY
        {
            return Err(Bail);
        }
        if text == "<<" {
            return Err(Bail);
        }
        self.key_scalar(text, at)?;
        Ok(colon + 1)
    }

    /// A node inside a flow collection; returns the offset after it.
    fn flow_item(&mut self, at: usize) -> Read<usize> {
        match self.byte(at) {
            Some(b'[' | b'{') => self.flow_node(at),
            Some(quote @ (b'"' | b'\'')) => {
                let (text, end) = self.quoted(at, quote, None)?;
                self.scalar(text, ScalarKind::Str, at)?;
                self.no_pair(end)
            }
            _ => {
                self.flow_plain_start(at)?;
                let end = self.plain_in_flow(at);
                let text = self.str(at, end)?;
                self.scalar(Cow::Borrowed(text), plain_kind(text), at)?;
                self.no_pair(end)
            }
        }
    }

    /// `[a: b]` (a pair inside a flow sequence) is the full parser's.
    fn no_pair(&self, end: usize) -> Read<usize> {
        if self.byte(self.spaces_from(end)) == Some(b':') {
            return Err(Bail);
        }
        Ok(end)
    }

    fn flow_plain_start(&self, at: usize) -> Read<()> {
        self.plain_start(at)?;
        if matches!(self.byte(at), Some(b'-')) && self.byte(at + 1).is_some_and(is_flow_indicator) {
            return Err(Bail);
        }
        Ok(())
    }

    /// A plain scalar inside a flow collection: ends at a flow indicator, at `: ` or `:`
    /// before an indicator, or at a comment; returns where its text ends.
    fn plain_in_flow(&self, at: usize) -> usize {
        let line_end = self.line_end(at);
        let mut i = at;
        while i < line_end {
            match self.bytes[i] {
                b',' | b'[' | b']' | b'{' | b'}' => break,
                b':' if self
                    .byte(i + 1)
                    .is_none_or(|b| b == b' ' || b == b'\n' || is_flow_indicator(b)) =>
                {
                    break;
                }
                b'#' if self.bytes[i - 1] == b' ' => break,
                _ => i += 1,
            }
        }
        self.trim_end(at, i)
    }

    /// A literal (`|`) or folded (`>`) scalar whose indicator is at `at`, in a node at
    /// `parent` column: its content must be indented more.
    fn block_scalar(&mut self, parent: usize, at: usize) -> Read<()> {
        let literal = self.byte(at) == Some(b'|');
        let mut header = at + 1;
        let chomp = match self.byte(header) {
            Some(b'-') => {
                header += 1;
                Chomp::Strip
            }
            Some(b'+' | b'0'..=b'9') => return Err(Bail),
            _ => Chomp::Clip,
        };
        if !is_blank_or_end(self.byte(header)) {
            return Err(Bail);
        }
        self.finish_line(header)?;
        // The first line sets the indentation; leading blank lines are the full parser's.
        let first = self.at;
        let indent = self.spaces_from(first) - first;
        if indent <= parent || matches!(self.byte(first + indent), None | Some(b'\n')) {
            return Err(Bail);
        }
        let content_at = first + indent;
        let mut text = String::new();
        let mut blank_run = 0usize;
        let mut lines = 0usize;
        // Whether the last line was more indented than the first: folding never joins such
        // a line to its neighbours (YAML 1.2, 8.1.3).
        let mut last_spaced = false;
        let mut line = first;
        while line < self.bytes.len() {
            let first_char = self.spaces_from(line);
            let spaces = first_char - line;
            let end = self.line_end(line);
            if first_char == end {
                if spaces > indent {
                    return Err(Bail);
                }
                blank_run += 1;
            } else if spaces < indent {
                break;
            } else {
                let spaced = spaces > indent;
                if lines > 0 {
                    if literal || spaced || last_spaced {
                        text.push('\n');
                        text.extend(std::iter::repeat_n('\n', blank_run));
                    } else if blank_run == 0 {
                        text.push(' ');
                    } else {
                        text.extend(std::iter::repeat_n('\n', blank_run));
                    }
                }
                last_spaced = spaced;
                blank_run = 0;
                text.push_str(self.str(line + indent, end)?);
                lines += 1;
            }
            if end == self.bytes.len() {
                // A last line without a line break: what clipping keeps differs.
                if lines > 0 && first_char != end {
                    return Err(Bail);
                }
                line = end;
                break;
            }
            line = end + 1;
        }
        // Trailing blank lines belong to the scalar and, clipped or stripped, add nothing.
        if let Chomp::Clip = chomp {
            text.push('\n');
        }
        // Back to the start of the line that ended the scalar.
        self.at = line;
        self.scalar(Cow::Owned(text), ScalarKind::Str, content_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::yaml::full;

    /// The block reader reads `text`, into the tree the full parser builds.
    fn reads(text: &str) {
        let limits = Limits::default();
        let fast = parse(text, &limits).unwrap_or_else(|| panic!("gave up on {text:?}"));
        let full = full::parse(text, &limits).unwrap();
        assert_eq!(fast.difference(&full), None, "{text:?}");
    }

    fn gives_up(text: &str) {
        assert!(parse(text, &Limits::default()).is_none(), "read {text:?}");
    }

    #[test]
    fn reads_the_block_style_of_asyncapi_documents() {
        for text in [
            "asyncapi: 3.0.0\ninfo:\n  title: x   # c\n  version: '1.0'\n",
            "# head\n\n---\na: 1\n",
            "--- # c\na: 1\n",
            "  a: 1\n  b: 2\n",
            "servers:\n  prod:\n    security:\n      - $ref: '#/components/securitySchemes/s'\n",
            "tags:\n- name: a\n  v: \"q\\n\"\n-\n  x: 1\n- \nd: 1\n",
            "- a\n- b: 1\n  c: [x, {y: z}, ]\n-\n  - nested\n",
            "a:\nb:\n",
            "e: {}\nf: []\ng: {\"a\":1, 'b': \"c\"}\nh: [-1, a:b, 'q''s']\n",
            "k k  : v\n'q': 1\n\"d\\tq\": 2\n",
            "lit: |\n  one\n    two\n\n  three\n\n\nnext: x\n",
            "fold: >-\n  one\n  two\n\n  three\nstrip: |-\n  x\n",
            "a: >\n  x\n    more indented\n",
            "f: >\n  a\n  b\n\n    c\n     d\n\n\n  e\n  f\n    g\n  h\nn: 1\n",
            "f: >-\n  a\n\n    b\n\n  c\n",
            "- >\n   a\n     ![](x.png)\n   b\n",
            "s: 'a long\n  line\n\n  folded '\nd: \"x\n   y\n  \"\n",
            "esc: \"\\x41\\u00e9\\U0001F680\\0\\/\\\\\\\"\"\n",
            "types: [true, False, ~, null, 0x1F, 0o7, 1e3, .inf, -.5, 2.6.0]\n",
            "url: https://x.example/a?b=c#frag\nhash: a#b\n",
            "unicode: é — 🚀\n",
            "\u{feff}a: 1\nb: [x]\n",
            "\u{feff}# c\n\n---\na: 1\n",
            "\u{feff}- x\n",
            // Multi-line plain scalars: wrapped descriptions.
            "a: multi\n  line plain\nb: 1\n",
            "d: one   \n   two  \n\n     three\n\n\n  four\n\ne: x\n",
            "a:\n  b: x\n   y\n  c: z\n",
            "- one\n  two\n- three\n four\n",
            "- k: one\n   two\n  v: 1 2\n    3\n",
            "a: 1\n  2\n",
            "a: true\n  false\n",
            "a: x\n  y#z a:b\n  é — 🚀\n",
            "a: x\n  y\n\n",
            "a: x\n  y",
            "a: x\n  y\n  \n  z\n",
            "  a: x\n    y\n  b: 1\n",
        ] {
            reads(text);
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_read() {
        for text in [
            "",
            "# only\n",
            "a: &x 1\nb: *x\n",
            "a: !!str 1\n",
            "%YAML 1.2\n---\na: 1\n",
            "a: 1\n---\nb: 2\n",
            "a: 1\n...\n",
            "a:\tb\n",
            "a: 1\r\nb: 2\r\n",
            "a: 1\n\u{feff}b: 2\n",
            "\u{feff}\u{feff}a: 1\n",
            "a: x\n  b: c\n",
            "a: x\n  y:\n",
            "a: x\n  y #c\n",
            "a: x # c\n  y\n",
            "a: x\n  # c\n  y\n",
            "a: x\n  - y\n",
            "a: x\n  'y'\n",
            "a: x\n  [y]\n",
            "- x\n  &y z\n",
            "a: 1\n  # a more indented comment after a plain scalar\n",
            "a: |+\n  keep\n",
            "a: |2\n   x\n",
            "a: |\n\n  leading blank\n",
            "a: [x,\n  y]\n",
            "a: \"x\\\n  y\"\n",
            "a: \"\\ud83d\\ude80\"\n",
            "- - nested compact\n",
            "<<: {a: 1}\n",
            "? complex\n: key\n",
            "a: b: c\n",
            "a: 'unclosed\n",
            "a: 1\n b: 2\n",
            "a: 1\nb\n",
            "a: [x] y\n",
            "a: \"x\"#c\n",
            // Implicit keys near YAML's 1024-character limit (a fuzzer's find).
            &format!("\"{}\": 1\n", "k".repeat(1024)),
            &format!("{}: 1\n", "k".repeat(1024)),
            &format!("a: {{{}: 1}}\n", "k".repeat(1024)),
        ] {
            gives_up(text);
        }
    }

    #[test]
    fn errors_are_left_to_the_full_parser() {
        // The text is not YAML: the block reader gives up, and `yaml::parse` reports the
        // full parser's error at the line that is at fault.
        let text = "a: 1\nb: \"x\ny\"\n";
        gives_up(text);
        let err = super::super::parse(text, &Limits::default()).unwrap_err();
        assert!(err.is_syntax() && err.pos().line == 3, "{err:?}");
        // A duplicate key: given up, refused by the full parser as docs/policy.md says.
        gives_up("a: 1\na: 2\n");
    }

    #[test]
    fn deep_nesting_is_left_to_the_full_parser() {
        let deep: String = (0..MAX_NESTING + 5)
            .map(|i| " ".repeat(i) + "a:\n")
            .collect();
        gives_up(&deep);
        let shallow: String = (0..40).map(|i| " ".repeat(i) + "a:\n").collect();
        reads(&shallow);
    }
}
