//! The document model the rules read: an arena of nodes with source positions, and the
//! loaders that build it from YAML 1.2 or JSON text.
//!
//! Nodes live in one `Vec` and refer to each other by index; the entries of every mapping
//! and the items of every sequence live contiguously in two more, so loading allocates per
//! document, not per node. A YAML alias is stored as a second reference to the anchored
//! node, never as a copy, so an alias bomb costs arithmetic (its expanded size is counted,
//! see [`build`]) instead of memory, and dropping a tree never recurses.
//!
//! Positions are byte offsets; a line and column are worked out only when something asks
//! for one (a finding, an error), so a document with no finding never pays for them.

pub(crate) mod build;
pub mod json;
pub mod pointer;
pub mod value;
pub mod yaml;

use std::cell::OnceCell;
use std::fmt;

/// Mappings with more entries than this are looked up by key order (see [`Tree`]);
/// smaller ones by a scan, which is faster there.
pub(crate) const INDEXED: usize = 16;

/// A 1-based line and column (in characters) in the source text; `0` means the node has
/// no source text (a document that reached us as a JSON value, such as a custom resource's
/// `spec`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub const UNKNOWN: Pos = Pos { line: 0, column: 0 };

    pub fn new(line: usize, column: usize) -> Pos {
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }
    }

    pub fn is_known(self) -> bool {
        self.line > 0
    }
}

/// A byte offset into the source text, or [`Offset::UNKNOWN`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset(u32);

impl Offset {
    pub const UNKNOWN: Offset = Offset(u32::MAX);

    pub(crate) fn new(offset: usize) -> Offset {
        // Sources are bounded by `Limits::max_bytes`, which the configuration keeps far
        // below 4 GiB; an offset that does not fit is simply not shown.
        Offset(u32::try_from(offset).unwrap_or(u32::MAX))
    }

    pub fn get(self) -> Option<usize> {
        (self != Offset::UNKNOWN).then_some(self.0 as usize)
    }
}

/// Index of a node in its [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// A set of the nodes of one tree: a bit per node, since a document's objects are visited
/// by the thousand and hashing each id cost more than the rest of the visit.
#[derive(Debug)]
pub struct NodeSet(Vec<u64>);

impl NodeSet {
    pub fn new(tree: &Tree<'_>) -> NodeSet {
        NodeSet(vec![0; tree.len().div_ceil(64)])
    }

    /// Adds `id`; whether it was not there yet.
    pub fn insert(&mut self, id: NodeId) -> bool {
        // An id past the tree is not one of its nodes: never made by it, so never reached.
        let Some(word) = self.0.get_mut(id.index() / 64) else {
            return false;
        };
        let bit = 1u64 << (id.index() % 64);
        let new = *word & bit == 0;
        *word |= bit;
        new
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.0
            .get(id.index() / 64)
            .is_some_and(|word| word & (1u64 << (id.index() % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&word| word == 0)
    }
}

/// What a scalar is under the YAML 1.2 core schema (JSON scalars map onto the same kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

/// Where the children of a collection are, in the tree's entry or item storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Children {
    start: u32,
    len: u32,
}

impl Children {
    pub fn len(self) -> usize {
        self.len as usize
    }

    pub fn is_empty(self) -> bool {
        self.len == 0
    }

    fn range(self) -> std::ops::Range<usize> {
        let start = self.start as usize;
        start..start + self.len as usize
    }
}

/// A node's value, as the rules read it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value<'a> {
    Scalar { text: &'a str, kind: ScalarKind },
    Seq(Children),
    Map(Children),
}

/// One key of a mapping. Keys are scalars; `key_at` is where the key is written, which is
/// where a finding about the entry points (`servers.production` is reported at `production:`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry<'a> {
    pub key: &'a str,
    pub key_at: Offset,
    pub value: NodeId,
}

/// Where a scalar's or a key's text is: a slice of the source, or (the high bit of `start`)
/// of the tree's own text, for what the source does not hold as it is (escapes, folds, a
/// number of a JSON value). Eight bytes where a `Cow<str>` took twenty-four: a node is 20
/// bytes and an entry 16, half of what they were, and a big document's tree is written,
/// read and faulted in at half the cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Text {
    start: u32,
    len: u32,
}

impl Text {
    const OWNED: u32 = 1 << 31;
    const EMPTY: Text = Text { start: 0, len: 0 };

    /// `None` when the text does not fit (sources are bounded by `Limits::max_bytes`, far
    /// below 2 GiB, so never in practice).
    fn new(start: usize, len: usize, owned: bool) -> Option<Text> {
        let start = u32::try_from(start).ok().filter(|s| s & Text::OWNED == 0)?;
        Some(Text {
            start: if owned { start | Text::OWNED } else { start },
            len: u32::try_from(len).ok()?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Slot {
    Scalar(Text, ScalarKind),
    Seq(Children),
    Map(Children),
}

#[derive(Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) slot: Slot,
    pub(crate) at: Offset,
    /// How many collections deep the node goes: 0 for a scalar, 1 for a collection of
    /// scalars. Lets a caller check a depth limit on a subtree without walking it.
    pub(crate) height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StoredEntry {
    pub(crate) key: Text,
    pub(crate) key_at: Offset,
    pub(crate) value: NodeId,
}

/// All nodes of one source (a YAML stream may hold several documents).
#[derive(Debug, Default)]
pub struct Tree<'a> {
    nodes: Vec<Node>,
    entries: Vec<StoredEntry>,
    /// For each mapping of more than [`INDEXED`] entries, one after another: their
    /// positions in key order, so a lookup is a binary search rather than a scan (a document
    /// with thousands of channels resolves thousands of `$ref`s into them).
    key_order: Vec<u32>,
    /// Beside each place of `key_order`, the [`key_prefix`] of its key: sorting and
    /// searching compare these, which lie side by side, and read a key's text only among
    /// equal prefixes.
    key_prefixes: Vec<u64>,
    /// Where each indexed mapping's order starts in `key_order`, by where its entries start
    /// in `entries`; in close order, which is the order of their entries. Packed rather than
    /// kept at the entries' own places, which would leave unused places before every big
    /// mapping to be regrown.
    indexed: Vec<(u32, u32)>,
    items: Vec<NodeId>,
    /// The text offsets and borrowed texts point into.
    source: &'a str,
    /// Whether positions are shown (a custom resource's JSON has no lines a person wrote).
    positions: bool,
    /// Whether the source is JSON text, so that offsets point at JSON's tokens
    /// ([`NodeRef::json_source_len`]).
    json: bool,
    /// The texts the source does not hold as they are: see [`Text`].
    owned: String,
    lines: OnceCell<Vec<u32>>,
    /// Whether a node has more than one parent (a YAML alias or merge key): its path then
    /// depends on the way it was reached, and [`pointer::Located`] keeps that way.
    shared: bool,
    /// Each node's parent and its place there, made the first time a path is asked for
    /// (a finding); see [`Tree::path_between`].
    parents: OnceCell<Vec<(u32, u32)>>,
}

impl<'a> Tree<'a> {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: NodeId) -> NodeRef<'_> {
        NodeRef { tree: self, id }
    }

    /// The key order of an indexed mapping and its keys' prefixes (see `key_order`);
    /// `None` for any other mapping.
    fn key_order_of(&self, children: Children) -> Option<(&[u32], &[u64])> {
        let at = self
            .indexed
            .binary_search_by_key(&children.start, |&(start, _)| start)
            .ok()?;
        let from = self.indexed[at].1 as usize;
        let range = from..from + children.len();
        Some((
            self.key_order.get(range.clone())?,
            self.key_prefixes.get(range)?,
        ))
    }

    /// The text `text` stands for.
    pub(crate) fn text(&self, text: Text) -> &str {
        let (base, range) = self.place(text);
        // Texts are only made by the builder from these strings; the fallback keeps the
        // path free of panics all the same.
        base.get(range).unwrap_or("")
    }

    /// The bytes of `text`, for comparing keys: byte order is the order of `str`, and a
    /// byte slice needs no check that its ends are character boundaries, which looking
    /// keys up (a binary search over thousands) and sorting them paid on every comparison.
    pub(crate) fn key_bytes(&self, text: Text) -> &[u8] {
        let (base, range) = self.place(text);
        base.as_bytes().get(range).unwrap_or(&[])
    }

    fn place(&self, text: Text) -> (&str, std::ops::Range<usize>) {
        let (base, start) = if text.start & Text::OWNED != 0 {
            (self.owned.as_str(), text.start & !Text::OWNED)
        } else {
            (self.source, text.start)
        };
        let start = start as usize;
        (base, start..start + text.len as usize)
    }

    fn value_of(&self, node: &Node) -> Value<'_> {
        match node.slot {
            Slot::Scalar(text, kind) => Value::Scalar {
                text: self.text(text),
                kind,
            },
            Slot::Seq(children) => Value::Seq(children),
            Slot::Map(children) => Value::Map(children),
        }
    }

    fn entry_of(&self, entry: &StoredEntry) -> Entry<'_> {
        Entry {
            key: self.text(entry.key),
            key_at: entry.key_at,
            value: entry.value,
        }
    }

    /// Whether some node has several parents, a YAML alias or merge key (see
    /// [`pointer::Located`]).
    pub fn shares_nodes(&self) -> bool {
        self.shared
    }

    /// The JSON pointer from `base` down to `node`, in a tree where each node has one
    /// parent. Paths are asked for only by findings, so they are made here, from parent
    /// links built on the first request, rather than carried along every step of judging.
    pub(crate) fn path_between(&self, base: NodeId, node: NodeId) -> String {
        let parents = self.parents.get_or_init(|| self.parent_links());
        let mut steps = Vec::new();
        let mut here = node;
        // Stops at `base`, or at the top should `node` not be under it (never: a Located
        // is only made by walking down from its base).
        while here != base {
            match parents.get(here.index()) {
                Some(&(parent, place)) if parent != u32::MAX => {
                    steps.push((NodeId(parent), place as usize));
                    here = NodeId(parent);
                }
                _ => break,
            }
        }
        let mut path = String::new();
        for &(parent, place) in steps.iter().rev() {
            // A mapping's child is named by its key, a list's by its place.
            match self.node(parent).stored_entries().get(place) {
                Some(entry) => pointer::push_onto(&mut path, self.text(entry.key)),
                None => pointer::push_index_onto(&mut path, place),
            }
        }
        path
    }

    fn parent_links(&self) -> Vec<(u32, u32)> {
        let mut parents = vec![(u32::MAX, 0); self.nodes.len()];
        for index in 0..self.nodes.len() {
            let node = self.node(NodeId(index as u32));
            let children = (node.stored_entries().iter().map(|e| e.value))
                .chain(node.item_ids().iter().copied());
            for (place, child) in children.enumerate() {
                if let Some(link) = parents.get_mut(child.index()) {
                    *link = (index as u32, place as u32);
                }
            }
        }
        parents
    }

    /// The line and column of `offset` in the source, if the tree has one.
    pub fn pos(&self, offset: Offset) -> Pos {
        match offset.get() {
            Some(offset) if self.positions => {
                let lines = self.lines.get_or_init(|| line_starts(self.source));
                pos_in(self.source, lines, offset)
            }
            _ => Pos::UNKNOWN,
        }
    }
}

/// The byte offset at which each line starts. Line breaks are LF, CRLF and a lone CR, as
/// YAML 1.2 counts them.
pub(crate) fn line_starts(text: &str) -> Vec<u32> {
    let bytes = text.as_bytes();
    let mut starts = Vec::with_capacity(bytes.len() / 32 + 1);
    starts.push(0);
    for at in memchr::memchr2_iter(b'\n', b'\r', bytes) {
        let lone_cr = bytes[at] == b'\r' && bytes.get(at + 1) != Some(&b'\n');
        if bytes[at] == b'\n' || lone_cr {
            starts.push(Offset::new(at + 1).0);
        }
    }
    starts
}

fn pos_in(text: &str, lines: &[u32], offset: usize) -> Pos {
    let line = lines.partition_point(|&start| start as usize <= offset);
    let start = lines
        .get(line.saturating_sub(1))
        .map_or(0, |&start| start as usize);
    let column = text.get(start..offset).map_or(0, |s| s.chars().count());
    Pos::new(line.max(1), column + 1)
}

/// The position of `offset` in `text`, for a one-off question (an error message).
pub(crate) fn pos_of(text: &str, offset: usize) -> Pos {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    pos_in(text, &line_starts(&text[..offset]), offset)
}

static MISSING: Node = Node {
    slot: Slot::Scalar(Text::EMPTY, ScalarKind::Null),
    at: Offset::UNKNOWN,
    height: 0,
};

/// A node and the tree it lives in: what the rules navigate with.
#[derive(Clone, Copy)]
pub struct NodeRef<'d> {
    tree: &'d Tree<'d>,
    id: NodeId,
}

/// The same node of the same tree.
impl PartialEq for NodeRef<'_> {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self.tree, other.tree) && self.id == other.id
    }
}

impl Eq for NodeRef<'_> {}

impl fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeRef({:?} at {:?})", self.id, self.raw().at)
    }
}

/// A key's first eight bytes, zero-padded, as a number: equal keys have equal prefixes,
/// and most different keys different ones. Big-endian, so that prefixes order keys as
/// their bytes do (`key_order` is then in key order, which is easier to read in a
/// debugger; lookups rely only on sorting and searching by the same prefix).
pub(crate) fn key_prefix(key: &[u8]) -> u64 {
    let mut word = [0; 8];
    let n = key.len().min(8);
    word[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(word)
}

/// Whether two keys are the same bytes, compared in registers: keys are short (`type`,
/// `security`, a channel's name), and `==` on slices calls `memcmp`. Judging, mostly
/// lookups, ran 6 % fewer instructions on the small generated document (callgrind).
#[inline]
pub(crate) fn same_key(a: &[u8], b: &[u8]) -> bool {
    /// The first or the last `N` bytes of a key at least `N` long.
    fn word<const N: usize>(bytes: &[u8], last: bool) -> [u8; N] {
        let chunk = if last {
            bytes.last_chunk::<N>()
        } else {
            bytes.first_chunk::<N>()
        };
        chunk.copied().unwrap_or([0; N])
    }
    if a.len() != b.len() {
        return false;
    }
    match a.len() {
        // Two overlapping words cover the key: equal words, equal keys.
        8..=16 => {
            let head = u64::from_ne_bytes(word(a, false)) ^ u64::from_ne_bytes(word(b, false));
            let tail = u64::from_ne_bytes(word(a, true)) ^ u64::from_ne_bytes(word(b, true));
            head | tail == 0
        }
        4..=7 => {
            let head = u32::from_ne_bytes(word(a, false)) ^ u32::from_ne_bytes(word(b, false));
            let tail = u32::from_ne_bytes(word(a, true)) ^ u32::from_ne_bytes(word(b, true));
            head | tail == 0
        }
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

impl<'d> NodeRef<'d> {
    fn raw(&self) -> &'d Node {
        // Ids are only made by the tree that holds the node, so the fallback is unreachable;
        // it keeps this path free of panics all the same.
        self.tree.nodes.get(self.id.index()).unwrap_or(&MISSING)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn tree(&self) -> &'d Tree<'d> {
        self.tree
    }

    pub fn at(&self) -> Offset {
        self.raw().at
    }

    pub fn pos(&self) -> Pos {
        self.tree.pos(self.raw().at)
    }

    pub fn height(&self) -> u32 {
        self.raw().height
    }

    pub fn value(&self) -> Value<'d> {
        self.tree.value_of(self.raw())
    }

    pub fn is_map(&self) -> bool {
        matches!(self.raw().slot, Slot::Map(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(self.raw().slot, Slot::Scalar(_, ScalarKind::Null))
    }

    /// The text of a string scalar (`asyncapi: 2.6` is a number, not a string).
    pub fn as_str(&self) -> Option<&'d str> {
        match self.value() {
            Value::Scalar {
                text,
                kind: ScalarKind::Str,
            } => Some(text),
            _ => None,
        }
    }

    /// The text of any scalar but null.
    pub fn scalar_text(&self) -> Option<&'d str> {
        match self.value() {
            Value::Scalar {
                kind: ScalarKind::Null,
                ..
            } => None,
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// How many bytes of the JSON source the node spans, from its first token to its last:
    /// found by going down its last members to a scalar, then reading past that scalar and
    /// the brackets that close above it. Reads as much as the tree is deep, not every node
    /// of a big `spec`. `None`
    /// when the source is not JSON or an offset is unknown (a tree made from a value).
    pub fn json_source_len(&self) -> Option<usize> {
        if !self.tree.json {
            return None;
        }
        let source = self.tree.source.as_bytes();
        let start = self.at().get()?;
        // The collections gone down into, each closed by a bracket after the last scalar.
        let mut open = 0;
        let mut last = *self;
        let end = loop {
            let child = match last.raw().slot {
                Slot::Map(_) => last.stored_entries().last().map(|entry| entry.value),
                Slot::Seq(_) => last.item_ids().last().copied(),
                Slot::Scalar(_, ScalarKind::Str) => {
                    break json::string_end(source, last.at().get()?)?;
                }
                // Numbers and literals are kept as written.
                Slot::Scalar(..) => {
                    break last.at().get()? + last.scalar_text().unwrap_or("null").len();
                }
            };
            open += 1;
            match child {
                Some(child) => last = last.child(child),
                // Empty: its opening bracket, then its closing one below.
                None => break last.at().get()? + 1,
            }
        };
        json::past_closers(source, end, open)?.checked_sub(start)
    }

    fn stored_entries(&self) -> &'d [StoredEntry] {
        match self.raw().slot {
            Slot::Map(children) => self.tree.entries.get(children.range()).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The entries of a mapping, in the order written; none for anything else.
    pub fn entries(
        &self,
    ) -> impl ExactSizeIterator<Item = Entry<'d>> + DoubleEndedIterator + Clone + use<'d> {
        let tree = self.tree;
        self.stored_entries().iter().map(|e| tree.entry_of(e))
    }

    /// The member `key` of a mapping. Compares stored key bytes without making a `str` of
    /// them (checking character boundaries on every lookup is a cost judging need not pay).
    pub fn get(&self, key: &str) -> Option<NodeRef<'d>> {
        self.stored_entry(key).map(|e| self.child(e.value))
    }

    /// The entry of `key` in a mapping, as stored: its value and where its key is, for the
    /// lookups that need no key text ([`NodeRef::get`], [`pointer::Located::child`]).
    pub(crate) fn stored_entry(&self, key: &str) -> Option<&'d StoredEntry> {
        let tree = self.tree;
        let entries = self.stored_entries();
        if entries.len() <= INDEXED {
            // Lengths first: most keys differ in length, and that needs no text.
            return entries.iter().find(|e| {
                e.key.len as usize == key.len() && same_key(tree.key_bytes(e.key), key.as_bytes())
            });
        }
        let Slot::Map(children) = self.raw().slot else {
            return None;
        };
        let (order, prefixes) = tree.key_order_of(children)?;
        let wanted = key_prefix(key.as_bytes());
        // The run of keys with the wanted prefix, then the key among them.
        let first = prefixes.partition_point(|&p| p < wanted);
        let run = prefixes.get(first..)?.partition_point(|&p| p == wanted);
        let candidates = order.get(first..first + run)?;
        let found = candidates
            .binary_search_by(|&i| {
                entries
                    .get(i as usize)
                    .map_or(std::cmp::Ordering::Less, |e| {
                        tree.key_bytes(e.key).cmp(key.as_bytes())
                    })
            })
            .ok()?;
        entries.get(*candidates.get(found)? as usize)
    }

    /// A member that should be a string: `Ok(None)` when it is absent or null, otherwise
    /// the type it has when it is not a string (for the caller's message).
    pub fn optional_str(&self, key: &str) -> Result<Option<&'d str>, &'static str> {
        match self.get(key) {
            None => Ok(None),
            Some(member) if member.is_null() => Ok(None),
            Some(member) => member.as_str().map(Some).ok_or(member.type_name()),
        }
    }

    fn item_ids(&self) -> &'d [NodeId] {
        match self.raw().slot {
            Slot::Seq(children) => self.tree.items.get(children.range()).unwrap_or(&[]),
            _ => &[],
        }
    }

    /// Items of a sequence; empty for anything else.
    pub fn items(&self) -> impl Iterator<Item = NodeRef<'d>> + use<'d> {
        let tree = self.tree;
        self.item_ids().iter().map(move |&id| NodeRef { tree, id })
    }

    pub fn as_seq_len(&self) -> Option<usize> {
        match self.value() {
            Value::Seq(children) => Some(children.len()),
            _ => None,
        }
    }

    /// Another node of the same tree.
    pub fn child(&self, id: NodeId) -> NodeRef<'d> {
        NodeRef {
            tree: self.tree,
            id,
        }
    }

    /// The `$ref` of a Reference Object, if this node is one.
    pub fn reference(&self) -> Option<&'d str> {
        self.get("$ref").and_then(|r| r.as_str())
    }

    /// A short name for the node's type, for messages.
    pub fn type_name(&self) -> &'static str {
        match self.value() {
            Value::Map(_) => "a mapping",
            Value::Seq(_) => "a list",
            Value::Scalar { kind, .. } => match kind {
                ScalarKind::Null => "null",
                ScalarKind::Bool => "a boolean",
                ScalarKind::Int | ScalarKind::Float => "a number",
                ScalarKind::Str => "a string",
            },
        }
    }
}

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

impl Limits {
    /// The largest `max_bytes` a configuration may set: offsets are 32-bit.
    pub const MAX_BYTES_CEILING: usize = 1 << 30;
    /// The deepest `max_depth` a configuration may set.
    pub const MAX_DEPTH_CEILING: usize = 1000;
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

/// The notation a syntax error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Syntax {
    Yaml,
    Json,
}

impl fmt::Display for Syntax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Syntax::Yaml => "YAML",
            Syntax::Json => "JSON",
        })
    }
}

/// Why a source could not be loaded. Every variant knows where it happened. Syntax errors
/// (the text is not YAML 1.2 or JSON) are told apart from the refusals of docs/policy.md of text
/// that parses (duplicate keys, keys that are not scalars, limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("the document is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: usize, max: usize },
    #[error("the document is not valid UTF-8 (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize, pos: Pos },
    #[error("the document is empty")]
    Empty,
    #[error("{syntax} syntax error: {message}")]
    Syntax {
        syntax: Syntax,
        message: String,
        pos: Pos,
    },
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
    #[error("mapping keys must be scalars (valid YAML, but not in an AsyncAPI document)")]
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

    /// Whether the text is not YAML (or JSON) at all, as opposed to a refusal of text that
    /// parses.
    pub fn is_syntax(&self) -> bool {
        matches!(
            self,
            LoadError::Syntax { .. } | LoadError::UnknownAnchor { .. }
        )
    }
}

/// The documents of one source, sharing one tree.
#[derive(Debug)]
pub struct Stream<'a> {
    pub tree: Tree<'a>,
    /// The root of each document, and where the document starts.
    pub documents: Vec<(NodeId, Offset)>,
}

impl<'a> Stream<'a> {
    /// The root of each document.
    pub fn roots(&self) -> impl Iterator<Item = NodeRef<'_>> {
        self.documents.iter().map(|(root, _)| self.tree.node(*root))
    }

    /// The first way in which two streams differ (documents, nodes, kinds, texts, offsets,
    /// heights, entries, items), or `None` when they are the same tree. Holds the YAML
    /// block reader to the full parser in tests and in the differential fuzz target.
    #[doc(hidden)]
    pub fn difference(&self, other: &Stream<'_>) -> Option<String> {
        let (a, b) = (&self.tree, &other.tree);
        // Compared as read, not as stored: one reader may borrow a text the other copied.
        fn nodes<'t>(t: &'t Tree<'_>) -> Vec<(Value<'t>, Offset, u32)> {
            t.nodes
                .iter()
                .map(|n| (t.value_of(n), n.at, n.height))
                .collect()
        }
        fn entries<'t>(t: &'t Tree<'_>) -> Vec<Entry<'t>> {
            t.entries.iter().map(|e| t.entry_of(e)).collect()
        }
        first_difference("document", &self.documents, &other.documents)
            .or_else(|| first_difference("node", &nodes(a), &nodes(b)))
            .or_else(|| first_difference("entry", &entries(a), &entries(b)))
            .or_else(|| first_difference("item", &a.items, &b.items))
    }
}

/// The first place where `a` and `b` differ, for [`Stream::difference`].
fn first_difference<T: PartialEq + fmt::Debug>(what: &str, a: &[T], b: &[T]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("{} / {} {what}s", a.len(), b.len()));
    }
    let i = a.iter().zip(b).position(|(x, y)| x != y)?;
    Some(format!("{what} {i}: {:?} / {:?}", a[i], b[i]))
}

/// Checks size and encoding, and drops a UTF-8 byte order mark. The size check comes
/// first, so an oversized input costs nothing.
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
            let valid = String::from_utf8_lossy(&bytes[..offset]);
            Err(LoadError::NotUtf8 {
                offset,
                pos: pos_of(&valid, valid.len()),
            })
        }
    }
}

/// Loads a source the way docs/policy.md says: text that is JSON (RFC 8259) is read as JSON;
/// any other text as YAML 1.2, whatever the file or key is named (AsyncAPI tools choose by
/// content, and real `.json` files hold YAML). JSON is a subset of YAML 1.2, so reading a
/// JSON text with a JSON parser changes nothing but what YAML parsers get wrong (surrogate
/// pairs) and the speed.
pub fn load<'a>(text: &'a str, limits: &Limits) -> Result<Stream<'a>, LoadError> {
    if text.len() > limits.max_bytes {
        return Err(LoadError::TooLarge {
            size: text.len(),
            max: limits.max_bytes,
        });
    }
    let mut json_error = None;
    if json::may_be_json(text) {
        match json::parse(text, limits, true) {
            Ok(stream) => return Ok(stream),
            // Not JSON after all: YAML decides. Any other refusal (a duplicate key, the
            // depth) would be YAML's too.
            Err(error @ LoadError::Syntax { .. }) => json_error = Some(error),
            Err(error) => return Err(error),
        }
    }
    yaml::parse(text, limits).map_err(|yaml_error| match json_error {
        // Both failed: the error found further into the text is the more useful one.
        Some(json_error) if yaml_error.is_syntax() && json_error.pos() > yaml_error.pos() => {
            json_error
        }
        _ => yaml_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_node_spans_what_a_json_reader_reads_from_its_offset() {
        // Pretty and compact, escapes (a quote and a backslash last in a string), empty
        // collections last at every depth, numbers and literals last.
        let texts = [
            "{\n  \"a\": {\"b\": [1, 2.5e3, {\"c\": \"x\\\"y\\\\\"}]},\n  \"d\": [ [ ] ,{ } ],\n  \"e\": {\"f\": {}}\n}\n",
            r#"{"s":"\u00e9\ud83d\ude80","n":[-0,true,false,null],"m":{"k":[[[]]]}}"#,
            r#"[{"a":"b"},"t",12,{}]"#,
        ];
        for text in texts {
            let stream = load(text, &Limits::default()).unwrap();
            for id in 0..stream.tree.len() as u32 {
                let node = stream.tree.node(NodeId(id));
                let start = node.at().get().unwrap();
                let mut values = serde_json::Deserializer::from_str(&text[start..])
                    .into_iter::<serde::de::IgnoredAny>();
                assert!(values.next().unwrap().is_ok());
                assert_eq!(
                    node.json_source_len(),
                    Some(values.byte_offset()),
                    "{text:?} at {start}"
                );
            }
        }
    }

    #[test]
    fn only_json_with_offsets_is_measured_by_its_source() {
        let yaml = load("a: [1, 2]\n", &Limits::default()).unwrap();
        assert_eq!(yaml.roots().next().unwrap().json_source_len(), None);
        let value = serde_json::json!({"a": [1, 2]});
        let built = value::from_json(&value, &Limits::default()).unwrap();
        assert_eq!(built.roots().next().unwrap().json_source_len(), None);
    }

    #[test]
    fn node_sets_add_each_node_once() {
        let stream = load("a: [1, 2]\nb: {c: 3}\n", &Limits::default()).unwrap();
        let mut set = NodeSet::new(&stream.tree);
        let ids: Vec<NodeId> = (0..stream.tree.len() as u32).map(NodeId).collect();
        assert!(ids.iter().all(|&id| set.insert(id)));
        assert!(ids.iter().all(|&id| !set.insert(id)));
        assert!(!set.insert(NodeId(10_000)));
    }

    #[test]
    fn same_key_agrees_with_comparing_the_bytes() {
        // Every length the comparison treats apart (0-3, 4-7, 8-16, longer).
        let letters: Vec<u8> = (b'a'..=b'z').collect();
        let copy = letters.clone();
        for len in 0..letters.len() {
            let key = &letters[..len];
            assert!(same_key(key, &copy[..len]), "{len}");
            assert!(!same_key(key, &letters[..len + 1]), "{len}: longer");
            for at in 0..len {
                let mut other = key.to_vec();
                other[at] = other[at].to_ascii_uppercase();
                assert!(!same_key(key, &other), "{len}: byte {at}");
            }
        }
    }

    #[test]
    fn positions_count_characters_and_all_line_breaks() {
        let text = "a: 1\r\nb: é\rc: x\n  d";
        let lines = line_starts(text);
        assert_eq!(lines, [0, 6, 12, 17]);
        assert_eq!(pos_in(text, &lines, 0), Pos { line: 1, column: 1 });
        assert_eq!(pos_in(text, &lines, 9), Pos { line: 2, column: 4 });
        assert_eq!(pos_in(text, &lines, 15), Pos { line: 3, column: 4 });
        assert_eq!(pos_in(text, &lines, 19), Pos { line: 4, column: 3 });
        for offset in [0, 9, 15, 19] {
            assert_eq!(pos_of(text, offset), pos_in(text, &lines, offset));
        }
    }

    #[test]
    fn json_text_is_read_as_json_and_other_text_as_yaml() {
        let limits = Limits::default();
        // A surrogate pair: JSON's meaning, whatever a YAML parser makes of it.
        let stream = load(r#"{"x": "\ud83d\ude80"}"#, &limits).unwrap();
        let root = stream.roots().next().unwrap();
        assert_eq!(root.get("x").unwrap().as_str(), Some("🚀"));
        // YAML flow style that is not JSON.
        let stream = load("{x: 1, y: [a, b],}", &limits).unwrap();
        let root = stream.roots().next().unwrap();
        assert_eq!(root.get("y").unwrap().as_seq_len(), Some(2));
        // A duplicate key in JSON stays refused.
        assert!(matches!(
            load(r#"{"a": 1, "a": 2}"#, &limits),
            Err(LoadError::DuplicateKey { .. })
        ));
    }

    #[test]
    fn big_mappings_are_looked_up_by_key_order() {
        let limits = Limits::default();
        let keys: Vec<String> = (0..200).rev().map(|i| format!("k{i}")).collect();
        let yaml: String = keys.iter().map(|k| format!("{k}: v{k}\n")).collect();
        let json = format!(
            "{{{}}}",
            keys.iter()
                .map(|k| format!("\"{k}\": \"v{k}\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        // A merge into a big mapping: the order is made again with the merged keys.
        let merged = format!(
            "base: &b {{m1: x, m2: y}}\nbig:\n  <<: *b\n{}",
            yaml.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        for (text, path) in [(&yaml, None), (&json, None), (&merged, Some("big"))] {
            let stream = load(text, &limits).unwrap();
            let mut map = stream.roots().next().unwrap();
            if let Some(key) = path {
                map = map.get(key).unwrap();
            }
            for key in &keys {
                assert_eq!(
                    map.get(key).and_then(|n| n.scalar_text()),
                    Some(format!("v{key}").as_str())
                );
            }
            assert!(map.get("k200").is_none() && map.get("").is_none() && map.get("k").is_none());
            if path.is_some() {
                assert_eq!(map.get("m2").and_then(|n| n.scalar_text()), Some("y"));
            }
        }
    }

    #[test]
    fn big_mappings_find_keys_that_share_their_first_eight_bytes() {
        // Keys alike in their first eight bytes, keys that begin other keys, NUL bytes
        // (which pad a short key's prefix), and keys past ASCII: the prefix decides where
        // it can, and the text among equal prefixes.
        let mut keys: Vec<String> = (0..150).map(|i| format!("orders.{i}.placed")).collect();
        keys.extend(
            [
                "a",
                "a\\u0000",
                "a\\u0000\\u0000",
                "ab",
                "abcdefgh",
                "abcdefghi",
            ]
            .map(str::to_owned),
        );
        keys.extend(["abcdefgh\\u0000", "é", "éé", "\\u0000", ""].map(str::to_owned));
        let json = format!(
            "{{{}}}",
            keys.iter()
                .enumerate()
                .map(|(i, k)| format!("\"{k}\": {i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let stream = load(&json, &Limits::default()).unwrap();
        let map = stream.roots().next().unwrap();
        for (i, key) in keys.iter().enumerate() {
            let key = key.replace("\\u0000", "\0");
            assert_eq!(
                map.get(&key).and_then(|n| n.scalar_text()),
                Some(i.to_string().as_str()),
                "{key:?}"
            );
        }
        for absent in [
            "orders.150.placed",
            "orders.",
            "a\0\0\0",
            "abcdefg",
            "abcdefghij",
            "e",
        ] {
            assert!(map.get(absent).is_none(), "{absent:?}");
        }
        // A key given twice among keys with its prefix is still a duplicate.
        let twice = json.replacen("\"orders.7.placed\"", "\"orders.70.placed\"", 1);
        assert!(matches!(
            load(&twice, &Limits::default()),
            Err(LoadError::DuplicateKey { key, .. }) if key == "orders.70.placed"
        ));
    }

    #[test]
    fn every_big_mapping_finds_its_own_keys() {
        // Siblings, one inside another (the inner closes first), and small mappings between
        // them: each big one is found through its own key order, not a neighbour's.
        let limits = Limits::default();
        let big = |prefix: &str, indent: &str| -> String {
            (0..40)
                .rev()
                .map(|i| format!("{indent}{prefix}{i}: {prefix}-v{i}\n"))
                .collect()
        };
        let yaml = format!(
            "first:\n{}small: {{a: 1}}\nouter:\n  inner:\n{}{}second:\n{}",
            big("f", "  "),
            big("i", "    "),
            big("o", "  "),
            big("s", "  "),
        );
        let stream = load(&yaml, &limits).unwrap();
        let root = stream.roots().next().unwrap();
        let outer = root.get("outer").unwrap();
        for (map, prefix) in [
            (root.get("first").unwrap(), "f"),
            (outer.get("inner").unwrap(), "i"),
            (outer, "o"),
            (root.get("second").unwrap(), "s"),
        ] {
            for i in 0..40 {
                let value = format!("{prefix}-v{i}");
                let key = format!("{prefix}{i}");
                assert_eq!(map.get(&key).and_then(|n| n.scalar_text()), Some(&*value));
            }
            assert!(map.get(&format!("{prefix}40")).is_none());
        }
        assert!(outer.get("f1").is_none());
    }

    #[test]
    fn of_two_syntax_errors_the_later_one_is_shown() {
        let err = load("{\"a\": 1,\n \"b\" 2}", &Limits::default()).unwrap_err();
        assert!(err.is_syntax(), "{err:?}");
        assert_eq!(err.pos().line, 2);
    }
}
