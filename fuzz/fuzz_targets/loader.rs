//! The loader on arbitrary bytes, by both paths (JSON when the text may be JSON, YAML 1.2
//! otherwise): no panic, no hang (libFuzzer's -timeout), memory bounded by the limits
//! (-rss_limit_mb). And what it loads holds together:
//!
//! - every error, and every node, is placed inside the text;
//! - in a tree where each node has one parent, positions never run backwards (a node
//!   after its parent, a sibling after the one before it, a document after the last);
//! - the data, written as JSON and loaded again, is the same data.
#![no_main]

mod input;

use asyncapi_guard::engine::document::{
    self, Limits, LoadError, NodeRef, Offset, Stream, Value, json, yaml,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let limits = input::limits();
    let Some(text) = input::text(bytes) else {
        return;
    };
    let lines = text.split(['\n', '\r']).count().max(1);
    let check = |result: Result<Stream<'_>, LoadError>| match result {
        Ok(stream) => {
            positions_hold(text, lines, &stream);
            round_trips(&stream, &limits);
        }
        Err(error) => {
            let pos = error.pos();
            assert!(
                pos.line as usize <= lines + 1,
                "{error} at {pos:?}, past the {lines} lines of the text"
            );
        }
    };
    check(document::load(text, &limits));
    check(yaml::parse(text, &limits));
    if json::may_be_json(text) {
        check(json::parse(text, &limits, true));
    }
});

fn positions_hold(text: &str, lines: usize, stream: &Stream<'_>) {
    let mut last = 0;
    for &(root, start) in &stream.documents {
        if let Some(start) = start.get() {
            assert!(start <= text.len(), "a document starts at {start}, past the text");
            assert!(start >= last, "a document starts at {start}, before {last}");
            last = start;
        }
        let root = stream.tree.node(root);
        let mut walk = Walk { text, lines, ordered: !stream.tree.shares_nodes(), last };
        walk.node(root);
        last = walk.last;
    }
}

/// A pre-order walk that checks each place it meets against the text and the last place.
struct Walk<'t> {
    text: &'t str,
    lines: usize,
    /// Whether places must come in order: not when an alias or a merge key brings back a node
    /// written earlier.
    ordered: bool,
    last: usize,
}

impl Walk<'_> {
    fn place(&mut self, at: Offset, what: &str) {
        let Some(at) = at.get() else { return };
        assert!(at <= self.text.len(), "{what} at {at}, past the {} bytes of text", self.text.len());
        if self.ordered {
            assert!(at >= self.last, "{what} at {at}, before the place before it ({})", self.last);
            self.last = at;
        }
    }

    fn node(&mut self, node: NodeRef<'_>) {
        self.place(node.at(), "a node");
        let pos = node.pos();
        assert!(pos.line as usize <= self.lines + 1, "a node at {pos:?}, past the {} lines", self.lines);
        match node.value() {
            Value::Scalar { .. } => {}
            Value::Seq(_) => node.items().for_each(|item| self.node(item)),
            Value::Map(_) => {
                for entry in node.entries() {
                    self.place(entry.key_at, "a key");
                    self.node(node.child(entry.value));
                }
            }
        }
    }
}

/// Each document, written as JSON and loaded again, gives the same data; unless writing it
/// out expands aliases past the limits, which loading it again then says.
fn round_trips(stream: &Stream<'_>, limits: &Limits) {
    for root in stream.roots() {
        let Ok(data) = document::value::to_json(root, limits.max_depth) else {
            continue;
        };
        let written = serde_json::to_string(&data).expect("a value serialises");
        match document::load(&written, limits) {
            Ok(again) => {
                let [(root, _)] = again.documents.as_slice() else {
                    panic!("{} documents from one: {written}", again.documents.len());
                };
                let back = document::value::to_json(again.tree.node(*root), limits.max_depth)
                    .unwrap_or_else(|e| panic!("{e}: {written}"));
                assert_eq!(data, back, "{written}");
            }
            Err(LoadError::TooLarge { .. } | LoadError::TooDeep { .. }) => {}
            Err(error) => panic!("{error}: {written}"),
        }
    }
}
