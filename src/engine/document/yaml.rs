//! YAML 1.2 (and JSON, its subset) into the document model, with positions.
//!
//! Parser choice: `serde_yaml` is deprecated upstream and drops source positions. We use
//! `saphyr-parser`, the maintained successor of yaml-rust/yaml-rust2 (same authors' line):
//! a pull parser for YAML 1.2 that reports a span with every event and borrows plain scalars
//! from the input. Building the tree ourselves from its events lets us enforce what
//! POLICY.md asks of the loader itself: the core schema (only `true`/`false` are booleans),
//! duplicate keys as errors, merge keys, and a cap on alias expansion that is checked by
//! arithmetic, since aliases share nodes instead of being copied.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};

use super::{Entry, Node, NodeId, Pos, ScalarKind, Tree, Value};

/// Bounds on what one source may cost to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest source accepted, in bytes.
    pub max_bytes: usize,
    /// Deepest nesting of mappings and sequences.
    pub max_depth: usize,
    /// Alias expansion is refused when it exceeds both `alias_factor` times the number of
    /// nodes written in the source and `alias_floor` nodes.
    pub alias_factor: u64,
    pub alias_floor: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 3 * 1024 * 1024,
            max_depth: 100,
            alias_factor: 100,
            alias_floor: 100_000,
        }
    }
}

/// Why a source could not be loaded. Every variant knows where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("the document is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("the document is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize, pos: Pos },
    #[error("the document is empty")]
    Empty,
    #[error("YAML syntax error: {message}")]
    Syntax { message: String, pos: Pos },
    #[error("duplicate key \"{key}\" (first defined at line {first_line})")]
    DuplicateKey {
        key: String,
        pos: Pos,
        first_line: u32,
    },
    #[error("nesting is deeper than {max} levels")]
    TooDeep { max: usize, pos: Pos },
    #[error(
        "YAML aliases expand to {expanded} nodes from {source_nodes} written ones, over the limit of {limit}"
    )]
    AliasExpansion {
        expanded: u64,
        source_nodes: u64,
        limit: u64,
        pos: Pos,
    },
    #[error("alias to an anchor that is not defined before it")]
    UnknownAnchor { pos: Pos },
    #[error("mapping keys must be scalars")]
    ComplexKey { pos: Pos },
    #[error("the merge key `<<` needs a mapping or a list of mappings")]
    BadMerge { pos: Pos },
}

impl LoadError {
    pub fn pos(&self) -> Pos {
        match self {
            LoadError::TooLarge { .. } | LoadError::Empty => Pos { line: 1, column: 1 },
            LoadError::NotUtf8 { pos, .. }
            | LoadError::Syntax { pos, .. }
            | LoadError::DuplicateKey { pos, .. }
            | LoadError::TooDeep { pos, .. }
            | LoadError::AliasExpansion { pos, .. }
            | LoadError::UnknownAnchor { pos }
            | LoadError::ComplexKey { pos }
            | LoadError::BadMerge { pos } => *pos,
        }
    }
}

/// The documents of one YAML stream, sharing one tree.
#[derive(Debug)]
pub struct Stream<'a> {
    pub tree: Tree<'a>,
    /// The root of each document, and where the document starts.
    pub documents: Vec<(NodeId, Pos)>,
}

/// Checks size and encoding. The size check comes first, so an oversized input costs nothing.
pub fn check_bytes<'b>(bytes: &'b [u8], limits: &Limits) -> Result<&'b str, LoadError> {
    if bytes.len() > limits.max_bytes {
        return Err(LoadError::TooLarge {
            size: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let offset = e.valid_up_to();
            let before = &bytes[..offset];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let line_start = before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
            let column = String::from_utf8_lossy(&before[line_start..])
                .chars()
                .count()
                + 1;
            Err(LoadError::NotUtf8 {
                offset,
                pos: Pos::new(line, column),
            })
        }
    }
}

/// Parses a whole YAML stream.
pub fn parse_stream<'a>(text: &'a str, limits: &Limits) -> Result<Stream<'a>, LoadError> {
    if text.len() > limits.max_bytes {
        return Err(LoadError::TooLarge {
            size: text.len(),
            max: limits.max_bytes,
        });
    }
    let mut builder = Builder::new(text.len(), limits);
    let mut parser = Parser::new_from_str(text);
    while let Some(event) = parser.next_event() {
        let (event, span) = event.map_err(|e| LoadError::Syntax {
            message: e.info().to_owned(),
            pos: Pos::new(e.marker().line(), e.marker().col() + 1),
        })?;
        builder.event(event, span)?;
    }
    builder.finish()
}

struct PendingKey<'a> {
    text: Cow<'a, str>,
    pos: Pos,
    merge: bool,
}

enum Frame<'a> {
    Seq {
        items: Vec<NodeId>,
    },
    Map {
        entries: Vec<Entry<'a>>,
        key: Option<PendingKey<'a>>,
        merges: Vec<(NodeId, Pos)>,
    },
}

struct Open<'a> {
    frame: Frame<'a>,
    pos: Pos,
    anchor: usize,
    /// Expanded node count of everything inside, aliases counted at their full size.
    size: u64,
}

struct Builder<'a> {
    tree: Tree<'a>,
    /// Expanded size of each node, by node index.
    sizes: Vec<u64>,
    stack: Vec<Open<'a>>,
    anchors: HashMap<usize, NodeId>,
    documents: Vec<(NodeId, Pos)>,
    document_start: Pos,
    expanded: u64,
    /// The biggest alias seen: where an alias bomb is reported.
    biggest_alias: (u64, Pos),
    /// Entries copied by merge keys: the only thing expansion allocates, so bounded early.
    merged_entries: u64,
    merge_budget: u64,
    limits: Limits,
}

impl<'a> Builder<'a> {
    fn new(source_len: usize, limits: &Limits) -> Self {
        let merge_budget = limits
            .alias_factor
            .saturating_mul(source_len as u64)
            .max(limits.alias_floor);
        Builder {
            // Roughly one node per 8 bytes of typical YAML; avoids most regrowth.
            tree: Tree {
                nodes: Vec::with_capacity(source_len / 8),
            },
            sizes: Vec::with_capacity(source_len / 8),
            stack: Vec::new(),
            anchors: HashMap::new(),
            documents: Vec::new(),
            document_start: Pos { line: 1, column: 1 },
            expanded: 0,
            biggest_alias: (0, Pos::UNKNOWN),
            merged_entries: 0,
            merge_budget,
            limits: *limits,
        }
    }

    fn event(&mut self, event: Event<'a>, span: Span) -> Result<(), LoadError> {
        let pos = Pos::new(span.start.line(), span.start.col() + 1);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            Event::DocumentStart(_) => {
                self.anchors.clear();
                self.document_start = pos;
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.expects_key() {
                    let merge =
                        style == ScalarStyle::Plain && tag.is_none() && text.as_ref() == "<<";
                    if anchor != 0 {
                        let value = Value::Scalar {
                            text: text.clone(),
                            kind: ScalarKind::Str,
                        };
                        let id = self.push_node(value, pos, 1);
                        self.anchors.insert(anchor, id);
                    }
                    self.set_key(PendingKey { text, pos, merge });
                } else {
                    let kind = scalar_kind(&text, style, tag.as_deref());
                    let id = self.push_node(Value::Scalar { text, kind }, pos, 1);
                    if anchor != 0 {
                        self.anchors.insert(anchor, id);
                    }
                    self.attach(id, 1)?;
                }
            }
            Event::SequenceStart(anchor, _) => {
                self.open(Frame::Seq { items: Vec::new() }, pos, anchor)?
            }
            Event::MappingStart(anchor, _) => self.open(
                Frame::Map {
                    entries: Vec::new(),
                    key: None,
                    merges: Vec::new(),
                },
                pos,
                anchor,
            )?,
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::Alias(anchor) => {
                let Some(&id) = self.anchors.get(&anchor) else {
                    return Err(LoadError::UnknownAnchor { pos });
                };
                if self.expects_key() {
                    let text = match &self.tree.nodes[id.0 as usize].value {
                        Value::Scalar { text, .. } => text.clone(),
                        _ => return Err(LoadError::ComplexKey { pos }),
                    };
                    self.set_key(PendingKey {
                        text,
                        pos,
                        merge: false,
                    });
                } else {
                    let size = self.sizes.get(id.0 as usize).copied().unwrap_or(1);
                    if size > self.biggest_alias.0 {
                        self.biggest_alias = (size, pos);
                    }
                    self.attach(id, size)?;
                }
            }
        }
        Ok(())
    }

    /// Whether the next node is the key of the innermost mapping.
    fn expects_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Open {
                frame: Frame::Map { key: None, .. },
                ..
            })
        )
    }

    fn set_key(&mut self, pending: PendingKey<'a>) {
        if let Some(Open {
            frame: Frame::Map { key, .. },
            ..
        }) = self.stack.last_mut()
        {
            *key = Some(pending);
        }
    }

    fn open(&mut self, frame: Frame<'a>, pos: Pos, anchor: usize) -> Result<(), LoadError> {
        if self.expects_key() {
            return Err(LoadError::ComplexKey { pos });
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(LoadError::TooDeep {
                max: self.limits.max_depth,
                pos,
            });
        }
        self.stack.push(Open {
            frame,
            pos,
            anchor,
            size: 1,
        });
        Ok(())
    }

    fn close(&mut self) -> Result<(), LoadError> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let mut size = open.size;
        let value = match open.frame {
            Frame::Seq { items } => Value::Seq(items),
            Frame::Map {
                mut entries,
                merges,
                ..
            } => {
                reject_duplicates(&entries)?;
                for (merge, pos) in merges {
                    size = size.saturating_add(self.merge_into(&mut entries, merge, pos)?);
                }
                Value::Map(entries)
            }
        };
        let id = self.push_node(value, open.pos, size);
        if open.anchor != 0 {
            self.anchors.insert(open.anchor, id);
        }
        self.attach(id, size)
    }

    /// Adds the entries of the merged mapping(s) whose keys are not there yet: explicit keys
    /// win, and in `<<: [a, b]` the entries of `a` win over those of `b`. Returns the
    /// expanded size added.
    fn merge_into(
        &mut self,
        entries: &mut Vec<Entry<'a>>,
        merge: NodeId,
        pos: Pos,
    ) -> Result<u64, LoadError> {
        let sources: Vec<NodeId> = match &self.tree.nodes[merge.0 as usize].value {
            Value::Map(_) => vec![merge],
            Value::Seq(items) => items.clone(),
            Value::Scalar { .. } => return Err(LoadError::BadMerge { pos }),
        };
        let mut present: HashSet<Cow<'a, str>> = entries.iter().map(|e| e.key.clone()).collect();
        let mut added = 0u64;
        for source in sources {
            let Value::Map(source_entries) = &self.tree.nodes[source.0 as usize].value else {
                return Err(LoadError::BadMerge { pos });
            };
            for entry in source_entries {
                if present.insert(entry.key.clone()) {
                    entries.push(Entry {
                        key: entry.key.clone(),
                        key_pos: entry.key_pos,
                        value: entry.value,
                    });
                    added = added.saturating_add(
                        self.sizes.get(entry.value.0 as usize).copied().unwrap_or(1),
                    );
                    self.merged_entries += 1;
                }
            }
            if self.merged_entries > self.merge_budget {
                return Err(LoadError::AliasExpansion {
                    expanded: self.merged_entries,
                    source_nodes: self.tree.nodes.len() as u64,
                    limit: self.merge_budget,
                    pos,
                });
            }
        }
        Ok(added)
    }

    fn push_node(&mut self, value: Value<'a>, pos: Pos, size: u64) -> NodeId {
        let id = self.tree.push(Node { value, pos });
        self.sizes.push(size);
        id
    }

    fn attach(&mut self, id: NodeId, size: u64) -> Result<(), LoadError> {
        let Some(parent) = self.stack.last_mut() else {
            self.expanded = self.expanded.saturating_add(size);
            self.documents.push((id, self.document_start));
            return Ok(());
        };
        match &mut parent.frame {
            Frame::Seq { items } => {
                items.push(id);
                parent.size = parent.size.saturating_add(size);
            }
            Frame::Map {
                entries,
                key,
                merges,
            } => {
                // The parser always sends a key before its value; a missing one would be a
                // parser bug, reported as a syntax error rather than a panic.
                let Some(k) = key.take() else {
                    return Err(LoadError::Syntax {
                        message: "mapping value without a key".to_owned(),
                        pos: parent.pos,
                    });
                };
                if k.merge {
                    merges.push((id, k.pos));
                } else {
                    entries.push(Entry {
                        key: k.text,
                        key_pos: k.pos,
                        value: id,
                    });
                    parent.size = parent.size.saturating_add(size);
                }
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Stream<'a>, LoadError> {
        let source_nodes = self.tree.nodes.len() as u64;
        let limit = self
            .limits
            .alias_factor
            .saturating_mul(source_nodes)
            .max(self.limits.alias_floor);
        if self.expanded > limit {
            return Err(LoadError::AliasExpansion {
                expanded: self.expanded,
                source_nodes,
                limit,
                pos: self.biggest_alias.1,
            });
        }
        if self.documents.is_empty() {
            return Err(LoadError::Empty);
        }
        Ok(Stream {
            tree: self.tree,
            documents: self.documents,
        })
    }
}

fn reject_duplicates(entries: &[Entry<'_>]) -> Result<(), LoadError> {
    let duplicate = |first: &Entry<'_>, second: &Entry<'_>| LoadError::DuplicateKey {
        key: second.key.to_string(),
        pos: second.key_pos,
        first_line: first.key_pos.line,
    };
    if entries.len() <= 16 {
        for (i, later) in entries.iter().enumerate() {
            if let Some(first) = entries[..i].iter().find(|e| e.key == later.key) {
                return Err(duplicate(first, later));
            }
        }
        return Ok(());
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| entries[a].key.cmp(&entries[b].key).then(a.cmp(&b)));
    for pair in order.windows(2) {
        let (first, second) = (&entries[pair[0]], &entries[pair[1]]);
        if first.key == second.key {
            return Err(duplicate(first, second));
        }
    }
    Ok(())
}

/// The YAML 1.2 core schema: what a plain scalar is. Quoted and block scalars are strings.
fn scalar_kind(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> ScalarKind {
    if let Some(tag) = tag {
        if tag.handle == "tag:yaml.org,2002:" {
            match tag.suffix.as_str() {
                "str" | "binary" | "timestamp" => return ScalarKind::Str,
                "null" => return ScalarKind::Null,
                "bool" => return ScalarKind::Bool,
                "int" => return ScalarKind::Int,
                "float" => return ScalarKind::Float,
                _ => {}
            }
        } else if tag.handle == "!" && tag.suffix.is_empty() {
            // The non-specific tag `!` makes a scalar a string.
            return ScalarKind::Str;
        }
    }
    if style != ScalarStyle::Plain {
        return ScalarKind::Str;
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => ScalarKind::Null,
        "true" | "True" | "TRUE" | "false" | "False" | "FALSE" => ScalarKind::Bool,
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => ScalarKind::Float,
        _ if is_int(text) => ScalarKind::Int,
        _ if is_float(text) => ScalarKind::Float,
        _ => ScalarKind::Str,
    }
}

fn is_int(text: &str) -> bool {
    let digits = |s: &str, radix: u32| !s.is_empty() && s.chars().all(|c| c.is_digit(radix));
    if let Some(oct) = text.strip_prefix("0o") {
        return digits(oct, 8);
    }
    if let Some(hex) = text.strip_prefix("0x") {
        return digits(hex, 16);
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    digits(unsigned, 10)
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text).as_bytes();
    let mut i = 0;
    let int_digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        let exp_digits = s[i..].iter().take_while(|b| b.is_ascii_digit()).count();
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root<'a>(stream: &'a Stream<'a>) -> crate::engine::document::NodeRef<'a> {
        stream.tree.node(stream.documents[0].0)
    }

    fn kind_of(src: &str) -> ScalarKind {
        let stream = parse_stream(src, &Limits::default()).unwrap();
        match root(&stream).value() {
            Value::Scalar { kind, .. } => *kind,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(kind_of("true"), ScalarKind::Bool);
        assert_eq!(kind_of("yes"), ScalarKind::Str);
        assert_eq!(kind_of("on"), ScalarKind::Str);
        assert_eq!(kind_of("~"), ScalarKind::Null);
        assert_eq!(kind_of("2.6"), ScalarKind::Float);
        assert_eq!(kind_of("2.6.0"), ScalarKind::Str);
        assert_eq!(kind_of("3"), ScalarKind::Int);
        assert_eq!(kind_of("0x1F"), ScalarKind::Int);
        assert_eq!(kind_of("1e3"), ScalarKind::Float);
        assert_eq!(kind_of("'3'"), ScalarKind::Str);
        assert_eq!(kind_of("!!str 3"), ScalarKind::Str);
        assert_eq!(kind_of(".5"), ScalarKind::Float);
        assert_eq!(kind_of("1."), ScalarKind::Float);
        assert_eq!(kind_of("e3"), ScalarKind::Str);
    }

    #[test]
    fn positions_are_one_based_and_entries_carry_key_positions() {
        let stream =
            parse_stream("servers:\n  production:\n    url: x\n", &Limits::default()).unwrap();
        let servers = root(&stream).get("servers").unwrap();
        let entry = servers.entry("production").unwrap();
        assert_eq!(entry.key_pos, Pos { line: 2, column: 3 });
        assert_eq!(servers.at(entry.value).pos(), Pos { line: 3, column: 5 });
    }

    #[test]
    fn duplicate_keys_are_errors_small_and_large() {
        let err = parse_stream("a: 1\nb: 2\na: 3\n", &Limits::default()).unwrap_err();
        assert!(
            matches!(err, LoadError::DuplicateKey { ref key, pos, first_line: 1 } if key == "a" && pos.line == 3),
            "{err:?}"
        );
        let mut big: String = (0..40).map(|i| format!("k{i}: {i}\n")).collect();
        big.push_str("k7: again\n");
        let err = parse_stream(&big, &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::DuplicateKey { ref key, .. } if key == "k7"));
    }

    #[test]
    fn merge_keys_explicit_wins_and_first_source_wins() {
        let src = "a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  x: 0\n";
        let stream = parse_stream(src, &Limits::default()).unwrap();
        let c = root(&stream).get("c").unwrap();
        let text = |k: &str| c.get(k).and_then(|n| n.scalar_text()).unwrap();
        assert_eq!(text("x"), "0");
        assert_eq!(text("y"), "1");
        assert_eq!(text("z"), "2");
        assert!(c.get("<<").is_none());
    }

    #[test]
    fn quoted_merge_key_is_an_ordinary_key() {
        let stream = parse_stream("a: &a {x: 1}\nb:\n  '<<': *a\n", &Limits::default()).unwrap();
        assert!(root(&stream).get("b").unwrap().get("<<").is_some());
    }

    #[test]
    fn merge_of_a_scalar_is_an_error() {
        let err = parse_stream("a: &a 1\nb:\n  <<: *a\n", &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::BadMerge { .. }));
    }

    #[test]
    fn alias_bomb_is_refused_by_arithmetic() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            src.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let err = parse_stream(&src, &Limits::default()).unwrap_err();
        assert!(matches!(err, LoadError::AliasExpansion { .. }), "{err:?}");
    }

    #[test]
    fn modest_aliases_are_fine() {
        let src = "s: &s {type: userPassword}\na: *s\nb: *s\n";
        let stream = parse_stream(src, &Limits::default()).unwrap();
        assert_eq!(
            root(&stream)
                .get("b")
                .unwrap()
                .get("type")
                .unwrap()
                .as_str(),
            Some("userPassword")
        );
    }

    #[test]
    fn depth_limit() {
        let mut src = String::new();
        for i in 0..150 {
            src.push_str(&" ".repeat(i));
            src.push_str("a:\n");
        }
        let err = parse_stream(&src, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, LoadError::TooDeep { max: 100, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn empty_and_comment_only_sources_are_empty() {
        assert_eq!(
            parse_stream("", &Limits::default()).unwrap_err(),
            LoadError::Empty
        );
        assert_eq!(
            parse_stream("# nothing\n", &Limits::default()).unwrap_err(),
            LoadError::Empty
        );
    }

    #[test]
    fn tabs_in_indentation_are_syntax_errors_with_position() {
        let err = parse_stream("info:\n\ttitle: x\n", &Limits::default()).unwrap_err();
        assert!(
            matches!(err, LoadError::Syntax { pos, .. } if pos.line == 2),
            "{err:?}"
        );
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
        let stream = parse_stream("a: 1\n---\nb: 2\n", &Limits::default()).unwrap();
        assert_eq!(stream.documents.len(), 2);
        assert_eq!(stream.documents[1].1.line, 2);
    }
}
