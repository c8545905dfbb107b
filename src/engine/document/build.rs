//! Builds a [`Tree`] from the events of any loader (YAML, JSON, a JSON value), and enforces
//! in one place what docs/policy.md asks of loading itself: unique scalar keys, merge keys, the
//! depth limit, and a cap on alias expansion that is checked by arithmetic, since aliases
//! share nodes instead of being copied.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::{
    Children, INDEXED, Limits, LoadError, Node, NodeId, Offset, Pos, ScalarKind, Slot, StoredEntry,
    Stream, Syntax, Text, Tree, key_prefix, same_key,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Collection {
    Map,
    Seq,
}

struct PendingKey {
    text: Text,
    at: Offset,
    merge: bool,
}

struct Open {
    kind: Collection,
    at: Offset,
    anchor: usize,
    /// Where this collection's children start in `open_entries` / `open_items`.
    start: usize,
    key: Option<PendingKey>,
    /// Where this mapping's merge keys start in `open_merges`.
    merges_start: usize,
    /// Expanded node count of everything inside, aliases counted at their full size.
    size: u64,
    height: u32,
}

pub(crate) struct Builder<'a> {
    /// The text offsets point into, for error positions; empty when there is none.
    text: &'a str,
    tree: Tree<'a>,
    /// Expanded size of each node, by node index; only kept by a reader that has aliases
    /// and merge keys (YAML's full parser): the others never look a size up, and a big
    /// document would pay eight bytes a node for nothing.
    sizes: Option<Vec<u64>>,
    stack: Vec<Open>,
    /// The children of the open collections, innermost last.
    open_entries: Vec<StoredEntry>,
    open_items: Vec<NodeId>,
    /// The values of the merge keys (`<<`) of the open mappings, innermost last: rare, so
    /// kept beside the stack rather than in each of its frames.
    open_merges: Vec<(NodeId, Offset)>,
    anchors: HashMap<usize, NodeId>,
    documents: Vec<(NodeId, Offset)>,
    document_start: Offset,
    expanded: u64,
    /// The biggest alias seen: where an alias bomb is reported.
    biggest_alias: (u64, Offset),
    /// Entries copied by merge keys: the only thing expansion allocates, so bounded early.
    merged_entries: u64,
    merge_budget: u64,
    limits: Limits,
}

impl<'a> Builder<'a> {
    /// For a reader with anchors, aliases and merge keys: see [`Builder::new`].
    pub(crate) fn with_aliases(text: &'a str, positions: bool, limits: &Limits) -> Self {
        let mut builder = Builder::new(text, Syntax::Yaml, positions, limits);
        builder.sizes = Some(Vec::with_capacity(builder.tree.nodes.capacity()));
        builder
    }

    /// `text` is the source the offsets point into, in `syntax`; `positions` says whether
    /// the tree shows them (a custom resource's JSON has no lines a person wrote). For a
    /// reader without aliases or merge keys ([`Builder::with_aliases`] otherwise).
    pub(crate) fn new(text: &'a str, syntax: Syntax, positions: bool, limits: &Limits) -> Self {
        let merge_budget = limits
            .alias_factor
            .saturating_mul(text.len() as u64)
            .max(limits.alias_floor);
        // Nodes reserved up front, so that a big document's are not regrown (copied and
        // faulted in again): the corpora's YAML has a node per 20 to 31 bytes, and the JSON
        // the API server sends, without indentation, more.
        let nodes = text.len()
            / match syntax {
                Syntax::Yaml => 16,
                Syntax::Json => 12,
            };
        // Every entry has a colon: regrowing (copying, faulting in) the entries of a big
        // document costs more than this count. Capped like the nodes, so that a text of
        // colons reserves no more than any other text of its size.
        let entries = memchr::memchr_iter(b':', text.as_bytes())
            .count()
            .min(nodes);
        Builder {
            text,
            tree: Tree {
                nodes: Vec::with_capacity(nodes),
                entries: Vec::with_capacity(entries),
                key_order: Vec::new(),
                key_prefixes: Vec::new(),
                indexed: Vec::new(),
                items: Vec::with_capacity(nodes / 8),
                source: text,
                positions,
                json: matches!(syntax, Syntax::Json),
                owned: String::new(),
                lines: Default::default(),
                shared: false,
                parents: Default::default(),
            },
            sizes: None,
            stack: Vec::with_capacity(16),
            open_entries: Vec::with_capacity(64),
            open_items: Vec::with_capacity(64),
            open_merges: Vec::new(),
            anchors: HashMap::new(),
            documents: Vec::new(),
            document_start: Offset::new(0),
            expanded: 0,
            biggest_alias: (0, Offset::UNKNOWN),
            merged_entries: 0,
            merge_budget,
            limits: *limits,
        }
    }

    /// The position of `at`, for an error.
    pub(crate) fn pos(&self, at: Offset) -> Pos {
        match at.get() {
            Some(offset) if self.tree.positions => super::pos_of(self.text, offset),
            _ => Pos::UNKNOWN,
        }
    }

    pub(crate) fn start_document(&mut self, at: Offset) {
        self.anchors.clear();
        self.document_start = at;
    }

    /// Whether the next node is the key of the innermost mapping.
    pub(crate) fn expects_key(&self) -> bool {
        matches!(
            self.stack.last(),
            Some(Open {
                kind: Collection::Map,
                key: None,
                ..
            })
        )
    }

    /// A scalar: the key of the innermost mapping if one is expected, else a value.
    /// `merge_key` says whether, as a key, it is the merge key `<<` (plain and untagged).
    pub(crate) fn scalar(
        &mut self,
        text: Cow<'a, str>,
        kind: ScalarKind,
        at: Offset,
        anchor: usize,
        merge_key: bool,
    ) -> Result<(), LoadError> {
        let text = self.intern(text)?;
        if self.expects_key() {
            if anchor != 0 {
                let id = self.push_node(Slot::Scalar(text, ScalarKind::Str), at, 1, 0);
                self.anchors.insert(anchor, id);
            }
            self.set_key(PendingKey {
                text,
                at,
                merge: merge_key,
            });
            Ok(())
        } else {
            let id = self.push_node(Slot::Scalar(text, kind), at, 1, 0);
            if anchor != 0 {
                self.anchors.insert(anchor, id);
            }
            self.attach(id, 1, 0)
        }
    }

    /// Where `text` is kept: in place when it is a slice of the source (most scalars, found
    /// by address: the readers borrow from the source), else copied into the tree's own
    /// text (escaped or folded scalars, a JSON value's strings, words like `null`).
    fn intern(&mut self, text: Cow<'a, str>) -> Result<Text, LoadError> {
        let source = self.tree.source;
        let (base, address) = (source.as_ptr() as usize, text.as_ptr() as usize);
        let in_place = match text {
            Cow::Borrowed(slice)
                if address >= base && address + slice.len() <= base + source.len() =>
            {
                Text::new(address - base, slice.len(), false)
            }
            // The first owned text becomes the tree's own text as it is: a review's one
            // escaped document is not copied again.
            Cow::Owned(text) if self.tree.owned.is_empty() => {
                let len = text.len();
                self.tree.owned = text;
                Text::new(0, len, true)
            }
            _ => {
                let start = self.tree.owned.len();
                self.tree.owned.push_str(&text);
                Text::new(start, text.len(), true)
            }
        };
        // Past 2 GiB of text: far over any configured `max_bytes`, so this is the limit
        // that applies, said the same way.
        in_place.ok_or(LoadError::TooLarge {
            size: self.tree.source.len().saturating_add(self.tree.owned.len()),
            max: Text::OWNED as usize,
        })
    }

    /// The key waiting for its value in the innermost mapping, if any.
    pub(crate) fn pending_key(&self) -> Option<&str> {
        let key = self.stack.last()?.key.as_ref()?;
        Some(self.tree.text(key.text))
    }

    fn set_key(&mut self, pending: PendingKey) {
        if let Some(open) = self.stack.last_mut() {
            open.key = Some(pending);
        }
    }

    pub(crate) fn open(
        &mut self,
        kind: Collection,
        at: Offset,
        anchor: usize,
    ) -> Result<(), LoadError> {
        if self.expects_key() {
            return Err(LoadError::ComplexKey { pos: self.pos(at) });
        }
        if self.stack.len() >= self.limits.max_depth {
            return Err(LoadError::TooDeep {
                max: self.limits.max_depth,
                pos: self.pos(at),
            });
        }
        let start = match kind {
            Collection::Map => self.open_entries.len(),
            Collection::Seq => self.open_items.len(),
        };
        self.stack.push(Open {
            kind,
            at,
            anchor,
            start,
            key: None,
            merges_start: self.open_merges.len(),
            size: 1,
            height: 1,
        });
        Ok(())
    }

    pub(crate) fn close(&mut self) -> Result<(), LoadError> {
        let Some(open) = self.stack.pop() else {
            return Ok(());
        };
        let mut size = open.size;
        let value = match open.kind {
            Collection::Seq => {
                let start = self.tree.items.len();
                self.tree.items.extend(self.open_items.drain(open.start..));
                Slot::Seq(children(start, self.tree.items.len()))
            }
            Collection::Map => {
                let mut order = self.reject_duplicates(open.start)?;
                // Checked before draining: collecting an empty drain, on every mapping of
                // every document, was a tenth of loading a small one.
                let merged = self.open_merges.len() > open.merges_start;
                if merged {
                    let merges: Vec<_> = self.open_merges.drain(open.merges_start..).collect();
                    for (merge, at) in merges {
                        size = size.saturating_add(self.merge_into(open.start, merge, at)?);
                    }
                }
                let start = self.tree.entries.len();
                let len = self.open_entries.len() - open.start;
                if len > INDEXED {
                    if merged {
                        order = key_order(&self.tree, &self.open_entries[open.start..]);
                    }
                    // Only big mappings are indexed (see `Tree::indexed`).
                    let at = (place(start), place(self.tree.key_order.len()));
                    self.tree.indexed.push(at);
                    self.tree.key_order.extend(order.iter().map(|k| k.index));
                    self.tree
                        .key_prefixes
                        .extend(order.iter().map(|k| k.prefix));
                }
                self.tree
                    .entries
                    .extend(self.open_entries.drain(open.start..));
                Slot::Map(children(start, self.tree.entries.len()))
            }
        };
        let id = self.push_node(value, open.at, size, open.height);
        if open.anchor != 0 {
            self.anchors.insert(open.anchor, id);
        }
        self.attach(id, size, open.height)
    }

    pub(crate) fn alias(&mut self, anchor: usize, at: Offset) -> Result<(), LoadError> {
        let Some(&id) = self.anchors.get(&anchor) else {
            return Err(LoadError::UnknownAnchor { pos: self.pos(at) });
        };
        if self.expects_key() {
            let text = match self.tree.nodes[id.index()].slot {
                Slot::Scalar(text, _) => text,
                _ => return Err(LoadError::ComplexKey { pos: self.pos(at) }),
            };
            self.set_key(PendingKey {
                text,
                at,
                merge: false,
            });
            Ok(())
        } else {
            let size = self.size_of(id, at)?;
            if size > self.biggest_alias.0 {
                self.biggest_alias = (size, at);
            }
            let height = self.tree.nodes[id.index()].height;
            self.tree.shared = true;
            self.attach(id, size, height)
        }
    }

    /// Adds the entries of the merged mapping(s) whose keys are not there yet: explicit keys
    /// win, and in `<<: [a, b]` the entries of `a` win over those of `b`. Returns the
    /// expanded size added.
    fn merge_into(&mut self, start: usize, merge: NodeId, at: Offset) -> Result<u64, LoadError> {
        let sources: Vec<NodeId> = match self.tree.nodes[merge.index()].slot {
            Slot::Map(_) => vec![merge],
            Slot::Seq(items) => self.tree.items[items.range()].to_vec(),
            Slot::Scalar(..) => return Err(LoadError::BadMerge { pos: self.pos(at) }),
        };
        // Merge keys are rare: the keys are copied out rather than borrowed from the tree
        // that the loop adds to.
        let mut present: HashSet<String> = self.open_entries[start..]
            .iter()
            .map(|e| self.tree.text(e.key).to_owned())
            .collect();
        let mut added = 0u64;
        for source in sources {
            let Slot::Map(source_entries) = self.tree.nodes[source.index()].slot else {
                return Err(LoadError::BadMerge { pos: self.pos(at) });
            };
            for index in source_entries.range() {
                let entry = self.tree.entries[index];
                if present.insert(self.tree.text(entry.key).to_owned()) {
                    added = added.saturating_add(self.size_of(entry.value, at)?);
                    self.open_entries.push(entry);
                    self.merged_entries += 1;
                    self.tree.shared = true;
                }
            }
            if self.merged_entries > self.merge_budget {
                return Err(LoadError::AliasExpansion {
                    expanded: self.merged_entries,
                    source_nodes: self.tree.nodes.len() as u64,
                    limit: self.merge_budget,
                    pos: self.pos(at),
                });
            }
        }
        Ok(added)
    }

    /// Refuses a key given twice; for a big mapping, returns its key order (see
    /// [`Tree`]), which the check sorts for anyway.
    fn reject_duplicates(&self, start: usize) -> Result<Vec<OrderedKey>, LoadError> {
        let entries = &self.open_entries[start..];
        let tree = &self.tree;
        let duplicate = |first: &StoredEntry, second: &StoredEntry| LoadError::DuplicateKey {
            key: tree.text(second.key).to_owned(),
            pos: self.pos(second.key_at),
            first_line: self.pos(first.key_at).line,
        };
        // Lengths first, as lookups do: most pairs of a small mapping's keys differ in
        // length, and that needs neither key's text.
        let same = |a: &StoredEntry, b: &StoredEntry| {
            a.key.len == b.key.len && same_key(tree.key_bytes(a.key), tree.key_bytes(b.key))
        };
        if entries.len() <= INDEXED {
            for (i, later) in entries.iter().enumerate() {
                if let Some(first) = entries[..i].iter().find(|e| same(e, later)) {
                    return Err(duplicate(first, later));
                }
            }
            return Ok(Vec::new());
        }
        let order = key_order(tree, entries);
        for pair in order.windows(2) {
            let (first, second) = (
                &entries[pair[0].index as usize],
                &entries[pair[1].index as usize],
            );
            if pair[0].prefix == pair[1].prefix && same(first, second) {
                return Err(duplicate(first, second));
            }
        }
        Ok(order)
    }

    /// The expanded size of `id`, for an alias or a merge at `at`. A reader that did not
    /// ask for sizes has no aliases: one that sends one anyway is refused rather than
    /// letting the alias go uncounted.
    fn size_of(&self, id: NodeId, at: Offset) -> Result<u64, LoadError> {
        match &self.sizes {
            Some(sizes) => Ok(sizes.get(id.index()).copied().unwrap_or(1)),
            None => Err(LoadError::Syntax {
                syntax: Syntax::Yaml,
                message: "an alias or merge key where the reader has none".to_owned(),
                pos: self.pos(at),
            }),
        }
    }

    fn push_node(&mut self, slot: Slot, at: Offset, size: u64, height: u32) -> NodeId {
        let id = NodeId(place(self.tree.nodes.len()));
        self.tree.nodes.push(Node { slot, at, height });
        if let Some(sizes) = &mut self.sizes {
            sizes.push(size);
        }
        id
    }

    fn attach(&mut self, id: NodeId, size: u64, height: u32) -> Result<(), LoadError> {
        let Some(parent) = self.stack.last_mut() else {
            self.expanded = self.expanded.saturating_add(size);
            self.documents.push((id, self.document_start));
            return Ok(());
        };
        parent.height = parent.height.max(height.saturating_add(1));
        match parent.kind {
            Collection::Seq => {
                self.open_items.push(id);
                parent.size = parent.size.saturating_add(size);
            }
            Collection::Map => {
                // Every loader sends a key before its value; a missing one would be a
                // loader bug, reported as a syntax error rather than a panic.
                let Some(key) = parent.key.take() else {
                    let at = parent.at;
                    return Err(LoadError::Syntax {
                        syntax: Syntax::Yaml,
                        message: "mapping value without a key".to_owned(),
                        pos: self.pos(at),
                    });
                };
                if key.merge {
                    self.open_merges.push((id, key.at));
                } else {
                    self.open_entries.push(StoredEntry {
                        key: key.text,
                        key_at: key.at,
                        value: id,
                    });
                    parent.size = parent.size.saturating_add(size);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn finish(self) -> Result<Stream<'a>, LoadError> {
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
                pos: self.pos(self.biggest_alias.1),
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

/// A place of a big mapping's key order: the entry, and its key's prefix.
#[derive(Debug, Clone, Copy)]
struct OrderedKey {
    prefix: u64,
    index: u32,
}

/// The positions of `entries` in key order (equal keys in the order they were written).
fn key_order(tree: &Tree<'_>, entries: &[StoredEntry]) -> Vec<OrderedKey> {
    // Sorted with each key's prefix and bytes at hand, rather than found from its place on
    // every comparison; most comparisons end at the prefixes. The order is (prefix, key),
    // the one `NodeRef::entry` searches by; equal keys stay side by side for the
    // duplicate check.
    let mut keyed: Vec<(u64, &[u8], u32)> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = tree.key_bytes(e.key);
            (key_prefix(key), key, place(i))
        })
        .collect();
    keyed.sort_unstable();
    keyed
        .into_iter()
        .map(|(prefix, _, index)| OrderedKey { prefix, index })
        .collect()
}

/// A place in one of the tree's vectors, as the tree stores it; the size limits keep every
/// place far below `u32::MAX`.
fn place(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn children(start: usize, end: usize) -> Children {
    Children {
        start: place(start),
        len: u32::try_from(end - start).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_the_source_stay_in_place_and_others_are_copied() {
        let source = "key: value";
        let mut builder = Builder::new(source, Syntax::Yaml, true, &Limits::default());
        builder.start_document(Offset::new(0));
        builder.open(Collection::Map, Offset::new(0), 0).unwrap();
        let own = String::from("value");
        for text in [Cow::Borrowed(&source[..3]), Cow::Borrowed(own.as_str())] {
            builder
                .scalar(text, ScalarKind::Str, Offset::new(0), 0, false)
                .unwrap();
        }
        builder
            .scalar(
                Cow::Borrowed(&source[5..]),
                ScalarKind::Str,
                Offset::new(5),
                0,
                false,
            )
            .unwrap();
        builder
            .scalar(
                Cow::Owned("x~y".to_owned()),
                ScalarKind::Str,
                Offset::new(5),
                0,
                false,
            )
            .unwrap();
        builder.close().unwrap();
        let stream = builder.finish().unwrap();
        // The keys are slices of the source; the values (a string of our own, and an owned
        // text) are not.
        let owned = |t: Text| t.start & Text::OWNED != 0;
        let keys: Vec<bool> = stream.tree.entries.iter().map(|e| owned(e.key)).collect();
        assert_eq!(keys, [false, false]);
        let values: Vec<bool> = (stream.tree.nodes.iter())
            .filter_map(|n| match n.slot {
                Slot::Scalar(t, _) => Some(owned(t)),
                _ => None,
            })
            .collect();
        assert_eq!(values, [true, true]);
        let root = stream.roots().next().unwrap();
        let entries: Vec<_> = root
            .entries()
            .map(|e| (e.key, root.child(e.value).as_str()))
            .collect();
        assert_eq!(entries, [("key", Some("value")), ("value", Some("x~y"))]);
    }

    #[test]
    fn a_builder_without_sizes_refuses_an_alias_rather_than_not_counting_it() {
        // `[&a x, *a]` as a reader sends it, up to the alias.
        let up_to_the_alias = |mut builder: Builder<'static>| {
            let at = Offset::new(0);
            builder.start_document(at);
            builder.open(Collection::Seq, at, 0).unwrap();
            builder
                .scalar(
                    Cow::Borrowed("x"),
                    ScalarKind::Str,
                    Offset::new(4),
                    1,
                    false,
                )
                .unwrap();
            builder
        };
        let limits = Limits::default();
        let mut plain = up_to_the_alias(Builder::new("[&a x, *a]", Syntax::Yaml, true, &limits));
        assert!(matches!(
            plain.alias(1, Offset::new(7)),
            Err(LoadError::Syntax { .. })
        ));
        let mut counted = up_to_the_alias(Builder::with_aliases("[&a x, *a]", true, &limits));
        counted.alias(1, Offset::new(7)).unwrap();
        counted.close().unwrap();
        assert_eq!(counted.finish().unwrap().tree.len(), 2);
    }
}
