//! JSON text (RFC 8259) into the document model, with positions.
//!
//! Hand-written because a JSON library gives either speed or positions, not both, and
//! because the tree must come out exactly as the YAML readers build it: the same builder,
//! the same duplicate-key refusal, the same depth limit. It is iterative (nesting costs
//! heap, not stack), so the configured depth limit is the only one that applies.

use std::borrow::Cow;

use super::build::{Builder, Collection};
use super::{Limits, LoadError, Offset, ScalarKind, Stream, Syntax, pos_of};

/// Whether `text` may be JSON, judged by its first character: YAML that is not JSON fails
/// the JSON parser at once, so a wrong guess costs next to nothing.
pub fn may_be_json(text: &str) -> bool {
    matches!(
        text.bytes().find(|b| !is_ws(*b)),
        Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n')
    )
}

/// Parses a JSON text. `positions` says whether the tree shows line and column (a custom
/// resource's JSON, which nobody wrote line by line, does not).
pub fn parse<'a>(text: &'a str, limits: &Limits, positions: bool) -> Result<Stream<'a>, LoadError> {
    parse_skipping(text, limits, positions, &[])
}

/// [`parse`], except that the member at `skip` (member names from the root object, such
/// as `["request", "oldObject"]`) is stepped over without being built: it is not in the
/// tree. It is read only as far as finding its end takes (strings and brackets), so a
/// malformed literal inside it is not reported; what is skipped is never judged.
pub fn parse_skipping<'a>(
    text: &'a str,
    limits: &Limits,
    positions: bool,
    skip: &[&str],
) -> Result<Stream<'a>, LoadError> {
    if text.len() > limits.max_bytes {
        return Err(LoadError::TooLarge {
            size: text.len(),
            max: limits.max_bytes,
        });
    }
    let mut parser = JsonParser {
        text,
        bytes: text.as_bytes(),
        i: 0,
        builder: Builder::new(text, Syntax::Json, positions, limits),
        objects: Vec::new(),
        positions,
        skip,
        on_skip_path: 0,
    };
    parser.document()?;
    parser.builder.finish()
}

/// The first quote, backslash or control character at or after `from`: eight bytes at a
/// time (a vector search per run costs more than the run when runs are a line long).
fn special_byte(bytes: &[u8], from: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        // Bytes below 0x20, equal to '"', equal to '\\'. The lowest flagged byte is exact
        // (the borrow that can flag a byte wrongly only runs upwards from a true match).
        let found = (x.wrapping_sub(ONES * 0x20) & !x & HIGHS)
            | zero_in(x ^ (ONES * u64::from(b'"')))
            | zero_in(x ^ (ONES * u64::from(b'\\')));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes
        .get(at..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| at + i)
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Just past the closing quote of the string whose opening quote is at `at`; `None` when
/// there is no string there or it is not closed.
pub(crate) fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut from = at + 1;
    loop {
        from += memchr::memchr2(b'"', b'\\', bytes.get(from..)?)?;
        match bytes.get(from) {
            Some(b'"') => return Some(from + 1),
            // An escape: the byte after the backslash is never the closing quote.
            _ => from += 2,
        }
    }
}

/// Just past `count` closing brackets from `at`, with whitespace before each; `None` when
/// something else comes first.
pub(crate) fn past_closers(bytes: &[u8], mut at: usize, count: usize) -> Option<usize> {
    for _ in 0..count {
        at += bytes.get(at..)?.iter().take_while(|&&b| is_ws(b)).count();
        match bytes.get(at) {
            Some(b'}' | b']') => at += 1,
            _ => return None,
        }
    }
    Some(at)
}

struct JsonParser<'a, 's> {
    text: &'a str,
    bytes: &'a [u8],
    i: usize,
    builder: Builder<'a>,
    /// Per open container: whether it is an object.
    objects: Vec<bool>,
    positions: bool,
    /// The member not to build (see [`parse_skipping`]); empty for none.
    skip: &'s [&'s str],
    /// How many of the open containers, from the root, lie on the path to `skip`.
    on_skip_path: usize,
}

/// What reading a member name found.
#[derive(PartialEq, Eq)]
enum Member {
    /// A name and its colon: its value comes next.
    Named,
    /// Skipped members, then no further member: the object ends next.
    NoMore,
}

impl<'a> JsonParser<'a, '_> {
    fn error(&self, at: usize, message: impl Into<String>) -> LoadError {
        LoadError::Syntax {
            syntax: Syntax::Json,
            message: message.into(),
            pos: if self.positions {
                pos_of(self.text, at)
            } else {
                super::Pos::UNKNOWN
            },
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&b) = self.bytes.get(self.i) {
            if !is_ws(b) {
                break;
            }
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    fn document(&mut self) -> Result<(), LoadError> {
        self.skip_ws();
        self.builder.start_document(Offset::new(self.i));
        loop {
            // A value is expected here.
            self.skip_ws();
            let at = self.i;
            let offset = Offset::new(at);
            match self.peek() {
                Some(b'{') => {
                    self.open_object(offset)?;
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                        self.end_container()?;
                    } else if self.key()? == Member::Named {
                        continue;
                    }
                }
                Some(b'[') => {
                    self.builder.open(Collection::Seq, offset, 0)?;
                    self.objects.push(false);
                    self.i += 1;
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        self.end_container()?;
                    } else {
                        continue;
                    }
                }
                Some(b'"') => {
                    let text = self.string()?;
                    self.builder
                        .scalar(text, ScalarKind::Str, offset, 0, false)?;
                }
                Some(b't') => self.literal("true", ScalarKind::Bool)?,
                Some(b'f') => self.literal("false", ScalarKind::Bool)?,
                Some(b'n') => self.literal("null", ScalarKind::Null)?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.error(at, "expected a value")),
                None => return Err(self.error(at, "unexpected end of input, expected a value")),
            }
            // After a value: a separator, the end of a container, or the end of the text.
            loop {
                self.skip_ws();
                let at = self.i;
                match (self.objects.last(), self.peek()) {
                    (None, None) => return Ok(()),
                    (None, Some(_)) => {
                        return Err(self.error(at, "unexpected text after the JSON value"));
                    }
                    (Some(true), Some(b',')) => {
                        self.i += 1;
                        if self.key()? == Member::Named {
                            break;
                        }
                    }
                    (Some(false), Some(b',')) => {
                        self.i += 1;
                        break;
                    }
                    (Some(true), Some(b'}')) | (Some(false), Some(b']')) => {
                        self.i += 1;
                        self.end_container()?;
                    }
                    (Some(true), _) => {
                        return Err(self.error(at, "expected ',' or '}' after an object member"));
                    }
                    (Some(false), _) => {
                        return Err(self.error(at, "expected ',' or ']' after an array element"));
                    }
                }
            }
        }
    }

    fn open_object(&mut self, at: Offset) -> Result<(), LoadError> {
        // An object is on the path to the skipped member if its parent is and its own name
        // is the next name of the path (the root object always is).
        let depth = self.objects.len();
        if !self.skip.is_empty()
            && self.on_skip_path == depth
            && (depth == 0 || self.builder.pending_key() == self.skip.get(depth - 1).copied())
        {
            self.on_skip_path += 1;
        }
        self.builder.open(Collection::Map, at, 0)?;
        self.objects.push(true);
        Ok(())
    }

    fn end_container(&mut self) -> Result<(), LoadError> {
        self.objects.pop();
        self.on_skip_path = self.on_skip_path.min(self.objects.len());
        self.builder.close()
    }

    /// A member's name and the colon after it; a member to skip is stepped over with its
    /// value, and the next member's name read instead, if there is one.
    fn key(&mut self) -> Result<Member, LoadError> {
        loop {
            self.skip_ws();
            let at = self.i;
            if self.peek() != Some(b'"') {
                return Err(self.error(at, "expected a member name in double quotes"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error(self.i, "expected ':' after a member name"));
            }
            self.i += 1;
            let depth = self.objects.len();
            let skipped = depth == self.skip.len()
                && self.on_skip_path == depth
                && self.skip.last() == Some(&key.as_ref());
            if !skipped {
                self.builder
                    .scalar(key, ScalarKind::Str, Offset::new(at), 0, false)?;
                return Ok(Member::Named);
            }
            self.skip_value()?;
            self.skip_ws();
            if self.peek() != Some(b',') {
                return Ok(Member::NoMore);
            }
            self.i += 1;
        }
    }

    /// Steps over one value, finding its end by its strings and brackets alone.
    fn skip_value(&mut self) -> Result<(), LoadError> {
        self.skip_ws();
        let at = self.i;
        if matches!(self.peek(), None | Some(b',' | b'}' | b']')) {
            return Err(self.error(at, "expected a value"));
        }
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'"' => {
                    let Some(end) = string_end(self.bytes, self.i) else {
                        return Err(self.error(self.i, "unterminated string"));
                    };
                    self.i = end;
                    if depth == 0 {
                        return Ok(());
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' | b',' if depth == 0 => return Ok(()),
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
        if depth == 0 {
            Ok(())
        } else {
            Err(self.error(at, "unexpected end of input in a skipped value"))
        }
    }

    fn literal(&mut self, word: &str, kind: ScalarKind) -> Result<(), LoadError> {
        let at = self.i;
        if !self.bytes[at..].starts_with(word.as_bytes()) {
            return Err(self.error(at, "expected a value"));
        }
        self.i += word.len();
        self.builder.scalar(
            Cow::Borrowed(&self.text[at..self.i]),
            kind,
            Offset::new(at),
            0,
            false,
        )
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), LoadError> {
        let at = self.i;
        let digits = |p: &Self, from: usize| {
            p.bytes[from..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        };
        let mut i = at + usize::from(self.bytes[at] == b'-');
        match self.bytes.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => i += digits(self, i),
            _ => return Err(self.error(i, "invalid number: expected a digit")),
        }
        let mut kind = ScalarKind::Int;
        if self.bytes.get(i) == Some(&b'.') {
            let n = digits(self, i + 1);
            if n == 0 {
                return Err(self.error(i + 1, "invalid number: expected a digit after '.'"));
            }
            i += 1 + n;
            kind = ScalarKind::Float;
        }
        if matches!(self.bytes.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(self.bytes.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let n = digits(self, i);
            if n == 0 {
                return Err(self.error(i, "invalid number: expected a digit in the exponent"));
            }
            i += n;
            kind = ScalarKind::Float;
        }
        self.i = i;
        self.builder.scalar(
            Cow::Borrowed(&self.text[at..i]),
            kind,
            Offset::new(at),
            0,
            false,
        )
    }

    /// A string, at its opening quote. Borrowed from the text unless it has escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, LoadError> {
        let start = self.i + 1;
        let Some(end) = special_byte(self.bytes, start) else {
            return Err(self.error(self.i, "unterminated string"));
        };
        match self.bytes[end] {
            b'"' => {
                self.i = end + 1;
                Ok(Cow::Borrowed(&self.text[start..end]))
            }
            b'\\' => self.escaped_string(start, end),
            _ => Err(self.error(end, "control character in a string: escape it")),
        }
    }

    /// The rest of a string that has an escape at `escape`.
    fn escaped_string(
        &mut self,
        start: usize,
        mut escape: usize,
    ) -> Result<Cow<'a, str>, LoadError> {
        // Sized to the next '"': the closing quote unless an escaped one comes first, so a
        // long escaped string (a document in a ConfigMap, a line per `\n`) is not regrown
        // and copied a dozen times, and the size is never more than the string's own.
        let next_quote = memchr::memchr(b'"', self.bytes.get(escape..).unwrap_or_default());
        let mut out = String::with_capacity(escape - start + next_quote.unwrap_or(16));
        out.push_str(&self.text[start..escape]);
        loop {
            // At a backslash.
            let code = self.bytes.get(escape + 1).copied();
            let mut next = escape + 2;
            match code {
                Some(b'"') => out.push('"'),
                Some(b'\\') => out.push('\\'),
                Some(b'/') => out.push('/'),
                Some(b'b') => out.push('\u{8}'),
                Some(b'f') => out.push('\u{c}'),
                Some(b'n') => out.push('\n'),
                Some(b'r') => out.push('\r'),
                Some(b't') => out.push('\t'),
                Some(b'u') => {
                    let (c, after) = self.unicode_escape(escape)?;
                    out.push(c);
                    next = after;
                }
                _ => return Err(self.error(escape, "invalid escape in a string")),
            }
            // Escaped strings are mostly short runs between escapes (a document's lines
            // between `\n`s): one pass finds the end of a run and any control in it.
            let Some(end) = special_byte(self.bytes, next) else {
                return Err(self.error(start - 1, "unterminated string"));
            };
            if self.bytes[end] < 0x20 {
                return Err(self.error(end, "control character in a string: escape it"));
            }
            out.push_str(&self.text[next..end]);
            if self.bytes[end] == b'"' {
                self.i = end + 1;
                return Ok(Cow::Owned(out));
            }
            escape = end;
        }
    }

    /// `\uXXXX` at `at`, with a following `\uXXXX` when the first is a high surrogate.
    fn unicode_escape(&self, at: usize) -> Result<(char, usize), LoadError> {
        let hex = |from: usize| -> Option<u32> {
            let digits = self.bytes.get(from..from + 4)?;
            let text = std::str::from_utf8(digits).ok()?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(text, 16).ok()
        };
        let Some(first) = hex(at + 2) else {
            return Err(self.error(at, "invalid \\u escape: expected four hex digits"));
        };
        let after = at + 6;
        let code = match first {
            0xD800..=0xDBFF => {
                let low = (self.bytes.get(after..after + 2) == Some(b"\\u"))
                    .then(|| hex(after + 2))
                    .flatten();
                match low {
                    Some(low @ 0xDC00..=0xDFFF) => {
                        let code = 0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00);
                        return char::from_u32(code)
                            .map(|c| (c, after + 6))
                            .ok_or_else(|| self.error(at, "invalid surrogate pair"));
                    }
                    _ => {
                        return Err(self.error(
                            at,
                            "a high surrogate escape must be followed by a low surrogate escape",
                        ));
                    }
                }
            }
            0xDC00..=0xDFFF => {
                return Err(self.error(at, "a low surrogate escape without a high one"));
            }
            code => code,
        };
        char::from_u32(code)
            .map(|c| (c, after))
            .ok_or_else(|| self.error(at, "invalid \\u escape"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::{Pos, Value};

    fn root_of(text: &str) -> serde_json::Value {
        let stream = parse(text, &Limits::default(), true).unwrap();
        crate::engine::document::value::to_json(stream.roots().next().unwrap(), 100).unwrap()
    }

    #[test]
    fn values_and_escapes() {
        assert_eq!(
            root_of(
                r#" {"a": [1, -2.5e3, true, false, null], "b\n\u00e9\ud83d\ude80": "x\"\\\/\b\f\r\t"} "#
            ),
            serde_json::json!({"a": [1, -2500.0, true, false, null], "b\n\u{e9}🚀": "x\"\\/\u{8}\u{c}\r\t"})
        );
        assert_eq!(root_of("\"\u{FFFF}\""), serde_json::json!("\u{FFFF}"));
        // Long escaped strings, an escaped quote early and late (the first is the tree's own
        // text as it was read, the others are added to it).
        let line = "servers:\\n  production:\\n".repeat(40);
        assert_eq!(
            root_of(&format!(
                r#"{{"d": "{line}\"{line}", "e": "\u00e9{line}\"", "f": "a\tb"}}"#
            )),
            serde_json::json!({
                "d": format!("{0}\"{0}", "servers:\n  production:\n".repeat(40)),
                "e": format!("\u{e9}{}\"", "servers:\n  production:\n".repeat(40)),
                "f": "a\tb",
            })
        );
        assert_eq!(root_of("[]"), serde_json::json!([]));
    }

    #[test]
    fn keeps_positions_and_kinds() {
        let stream = parse(
            "{\n  \"servers\": {\n    \"p\": 1.0\n  }\n}",
            &Limits::default(),
            true,
        )
        .unwrap();
        let root = stream.roots().next().unwrap();
        let servers = root.get("servers").unwrap();
        let entry = servers.stored_entry("p").unwrap();
        assert_eq!(stream.tree.pos(entry.key_at), Pos { line: 3, column: 5 });
        let p = servers.get("p").unwrap();
        assert!(matches!(
            p.value(),
            Value::Scalar {
                kind: ScalarKind::Float,
                ..
            }
        ));
        let hidden = parse("{\"a\": 1}", &Limits::default(), false).unwrap();
        assert!(!hidden.roots().next().unwrap().pos().is_known());
    }

    #[test]
    fn rejects_what_rfc_8259_rejects() {
        for text in [
            "{\"a\": 1,}",
            "[1,]",
            "{'a': 1}",
            "[01]",
            "[1.]",
            "[.5]",
            "[1e]",
            "[-]",
            "[\"a\tb\"]",
            "[\"\\x\"]",
            "[\"\\ud800\"]",
            "[\"\\udc00\"]",
            "[tru]",
            "[1] [2]",
            "{\"a\" 1}",
            "[",
            "{\"a\":",
            "\"abc",
            "[NaN]",
        ] {
            let err = parse(text, &Limits::default(), true).unwrap_err();
            assert!(
                matches!(
                    err,
                    LoadError::Syntax {
                        syntax: Syntax::Json,
                        ..
                    }
                ),
                "{text:?}: {err:?}"
            );
        }
    }

    #[test]
    fn duplicate_keys_and_depth_are_refused() {
        assert!(matches!(
            parse("{\"a\": 1, \"a\": 2}", &Limits::default(), true),
            Err(LoadError::DuplicateKey { .. })
        ));
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(matches!(
            parse(&deep, &Limits::default(), true),
            Err(LoadError::TooDeep { max: 100, .. })
        ));
        let limits = Limits {
            max_depth: 300,
            ..Limits::default()
        };
        assert!(parse(&deep, &limits, true).is_ok());
    }

    #[test]
    fn special_bytes_are_found_exactly() {
        let naive = |bytes: &[u8], from: usize| {
            (from..bytes.len()).find(|&i| matches!(bytes[i], b'"' | b'\\' | 0..=0x1f))
        };
        // Every special byte at every place of a 20-byte run, after every other byte.
        for special in [b'"', b'\\', 0x00, 0x0a, 0x1f] {
            for before in 0..=255u8 {
                for place in 0..20 {
                    let mut bytes = vec![before; 20];
                    bytes[place] = special;
                    for from in [0, 1, 7, 8, 9] {
                        assert_eq!(
                            special_byte(&bytes, from),
                            naive(&bytes, from),
                            "{special} after {before} at {place} from {from}"
                        );
                    }
                }
            }
        }
        assert_eq!(special_byte(b"abc", 0), None);
        assert_eq!(special_byte(b"abc", 5), None);
        assert_eq!(special_byte("é\"".as_bytes(), 0), Some(2));
    }

    #[test]
    fn the_skipped_member_is_stepped_over_unbuilt() {
        let skip = ["request", "oldObject"];
        let read = |text: &str| {
            let stream = parse_skipping(text, &Limits::default(), true, &skip).unwrap();
            crate::engine::document::value::to_json(stream.roots().next().unwrap(), 100).unwrap()
        };
        // Strings holding brackets, quotes and backslashes; nested containers; scalars; the
        // member first, last, alone; its name elsewhere is an ordinary member.
        let old = r#"{"a": ["}", "\"", "\\", {"b": [1, {"c": null}]}], "d": "]"}"#;
        assert_eq!(
            read(&format!(
                r#"{{"request": {{"oldObject": {old}, "uid": "u"}}, "oldObject": 1}}"#
            )),
            serde_json::json!({"request": {"uid": "u"}, "oldObject": 1})
        );
        assert_eq!(
            read(r#"{"request": {"uid": "u", "oldObject": null}}"#),
            serde_json::json!({"request": {"uid": "u"}})
        );
        assert_eq!(
            read(r#"{"request": {"oldObject": "x"}}"#),
            serde_json::json!({"request": {}})
        );
        assert_eq!(
            read(r#"{"request": {"object": {"oldObject": 2}, "oldObject": [1, 2]}}"#),
            serde_json::json!({"request": {"object": {"oldObject": 2}}})
        );
        assert_eq!(
            read(r#"[{"request": {"oldObject": 3}}]"#),
            serde_json::json!([{"request": {"oldObject": 3}}])
        );
        // What is skipped is not held to the limits or to unique keys.
        let deep = "[".repeat(500) + &"]".repeat(500);
        assert_eq!(
            read(&format!(
                r#"{{"request": {{"oldObject": {deep}, "x": {{"k": 1, "j": 2}}}}}}"#
            )),
            serde_json::json!({"request": {"x": {"k": 1, "j": 2}}})
        );
        for text in [
            r#"{"request": {"oldObject": }}"#,
            r#"{"request": {"oldObject": "abc}}"#,
            r#"{"request": {"oldObject": [1, 2}"#,
            r#"{"request": {"oldObject": 1,}}"#,
            r#"{"request": {"oldObject": 1 "uid": "u"}}"#,
        ] {
            assert!(
                parse_skipping(text, &Limits::default(), true, &skip).is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn errors_say_where() {
        let err = parse("{\n  \"a\": 1\n  \"b\": 2\n}", &Limits::default(), true).unwrap_err();
        assert_eq!(err.pos(), Pos { line: 3, column: 3 });
        assert!(
            err.to_string()
                .starts_with("JSON syntax error: expected ','"),
            "{err}"
        );
    }
}
