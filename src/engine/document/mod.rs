//! The document model the rules read: an arena of nodes with source positions.
//!
//! Nodes live in one `Vec` and refer to each other by index. A YAML alias is stored as a
//! second reference to the anchored node, never as a copy, so an alias bomb costs
//! arithmetic (its expanded size is counted, see `yaml`) instead of memory, and dropping a
//! tree never recurses.

pub mod json;
pub mod pointer;
pub mod yaml;

use std::borrow::Cow;
use std::fmt;

/// A 1-based line and column in the source text; `0` means the node has no source text
/// (a document that reached us as a JSON value, such as a custom resource's `spec`).
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

/// Index of a node in its [`Tree`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

/// What a scalar is under the YAML 1.2 core schema (JSON scalars map onto the same kinds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarKind {
    Null,
    Bool,
    Int,
    Float,
    Str,
}

#[derive(Debug)]
pub enum Value<'a> {
    Scalar {
        text: Cow<'a, str>,
        kind: ScalarKind,
    },
    Seq(Vec<NodeId>),
    Map(Vec<Entry<'a>>),
}

/// One key of a mapping. Keys are scalars; `key_pos` is where the key is written, which is
/// where a finding about the entry points (`servers.production` is reported at `production:`).
#[derive(Debug)]
pub struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub key_pos: Pos,
    pub value: NodeId,
}

#[derive(Debug)]
pub struct Node<'a> {
    pub value: Value<'a>,
    pub pos: Pos,
}

/// All nodes of one source (a YAML stream may hold several documents).
#[derive(Debug, Default)]
pub struct Tree<'a> {
    nodes: Vec<Node<'a>>,
}

impl<'a> Tree<'a> {
    pub(crate) fn push(&mut self, node: Node<'a>) -> NodeId {
        let id = NodeId(u32::try_from(self.nodes.len()).unwrap_or(u32::MAX));
        self.nodes.push(node);
        id
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn node(&self, id: NodeId) -> NodeRef<'_> {
        NodeRef { tree: self, id }
    }
}

static MISSING: Node<'static> = Node {
    value: Value::Scalar {
        text: Cow::Borrowed(""),
        kind: ScalarKind::Null,
    },
    pos: Pos::UNKNOWN,
};

/// A node and the tree it lives in: what the rules navigate with.
#[derive(Clone, Copy)]
pub struct NodeRef<'d> {
    tree: &'d Tree<'d>,
    id: NodeId,
}

impl fmt::Debug for NodeRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeRef({:?} at {:?})", self.id, self.pos())
    }
}

impl<'d> NodeRef<'d> {
    fn raw(&self) -> &'d Node<'d> {
        // Ids are only made by the tree that holds the node, so the fallback is unreachable;
        // it keeps this path free of panics all the same.
        self.tree.nodes.get(self.id.0 as usize).unwrap_or(&MISSING)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn tree(&self) -> &'d Tree<'d> {
        self.tree
    }

    pub fn pos(&self) -> Pos {
        self.raw().pos
    }

    pub fn value(&self) -> &'d Value<'d> {
        &self.raw().value
    }

    pub fn is_map(&self) -> bool {
        matches!(self.value(), Value::Map(_))
    }

    pub fn is_null(&self) -> bool {
        matches!(
            self.value(),
            Value::Scalar {
                kind: ScalarKind::Null,
                ..
            }
        )
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
            Value::Scalar { kind, .. } if *kind == ScalarKind::Null => None,
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn entries(&self) -> &'d [Entry<'d>] {
        match self.value() {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    pub fn entry(&self, key: &str) -> Option<&'d Entry<'d>> {
        self.entries().iter().find(|e| e.key == key)
    }

    pub fn get(&self, key: &str) -> Option<NodeRef<'d>> {
        self.entry(key).map(|e| self.at(e.value))
    }

    /// Items of a sequence; empty for anything else.
    pub fn items(&self) -> impl Iterator<Item = NodeRef<'d>> + use<'d> {
        let tree = self.tree;
        let ids: &'d [NodeId] = match self.value() {
            Value::Seq(items) => items,
            _ => &[],
        };
        ids.iter().map(move |&id| NodeRef { tree, id })
    }

    pub fn as_seq_len(&self) -> Option<usize> {
        match self.value() {
            Value::Seq(items) => Some(items.len()),
            _ => None,
        }
    }

    pub fn at(&self, id: NodeId) -> NodeRef<'d> {
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
