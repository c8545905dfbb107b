//! JSON pointers (RFC 6901) over the document model, and `$ref` strings.
//!
//! Escaping and parsing are `jsonptr`'s; walking is ours, since the nodes are ours.

use std::borrow::Cow;

use jsonptr::Token;
use percent_encoding::percent_decode_str;

use super::{NodeId, NodeRef, Offset, Pos, Value};

/// A node, where a finding about it should point (the key of a mapping entry, or the item
/// itself in a sequence), and the way to the pointer that names it.
///
/// The pointer is made only when asked for ([`Located::path`]: by findings): judging walks
/// every server, operation and requirement of a document and made a string at every step,
/// which cost a third of judging and most of its memory. In a tree where each node has one
/// parent the path follows from the tree; where a YAML alias or merge key gives a node
/// several, the path depends on the way it was reached, so that way is kept as it goes.
#[derive(Clone, Debug)]
pub struct Located<'d> {
    pub node: NodeRef<'d>,
    pub at: Offset,
    /// Where the path starts: the document's root.
    base: NodeId,
    /// The path as walked, kept only in a tree that shares nodes.
    route: Option<Box<str>>,
}

impl<'d> Located<'d> {
    pub fn root(node: NodeRef<'d>) -> Self {
        Located {
            node,
            at: node.at(),
            base: node.id(),
            route: node.tree().shares_nodes().then(Box::default),
        }
    }

    /// The JSON pointer of the node, from the document's root.
    pub fn path(&self) -> String {
        match &self.route {
            Some(route) => route.to_string(),
            None => self.node.tree().path_between(self.base, self.node.id()),
        }
    }

    /// The line and column a finding about this node shows.
    pub fn pos(&self) -> Pos {
        self.node.tree().pos(self.at)
    }

    fn step(&self, node: NodeRef<'d>, at: Offset, route: impl FnOnce(&str) -> String) -> Self {
        Located {
            node,
            at,
            base: self.base,
            route: self.route.as_deref().map(|r| route(r).into_boxed_str()),
        }
    }

    /// The value under `key`, if this is a mapping that has it.
    pub fn child(&self, key: &str) -> Option<Located<'d>> {
        let entry = self.node.stored_entry(key)?;
        Some(self.step(self.node.child(entry.value), entry.key_at, |r| push(r, key)))
    }

    /// Every entry of a mapping, as `(key, value)`.
    pub fn children(&self) -> impl Iterator<Item = (&'d str, Located<'d>)> + '_ {
        self.node.entries().map(move |entry| {
            (
                entry.key,
                self.step(self.node.child(entry.value), entry.key_at, |r| {
                    push(r, entry.key)
                }),
            )
        })
    }

    /// Every item of a sequence.
    pub fn items(&self) -> impl Iterator<Item = (usize, Located<'d>)> + '_ {
        self.node
            .items()
            .enumerate()
            .map(move |(i, node)| (i, self.step(node, node.at(), |r| push_index(r, i))))
    }
}

/// `path` with one more token, escaped.
pub fn push(path: &str, token: &str) -> String {
    let mut out = String::with_capacity(path.len() + token.len() + 1);
    out.push_str(path);
    push_onto(&mut out, token);
    out
}

/// Appends `/token`, escaped, to `path`.
pub(crate) fn push_onto(path: &mut String, token: &str) {
    path.push('/');
    // Almost no key has a `~` or `/` to escape: it is then the token as it is.
    if token.contains(['~', '/']) {
        path.push_str(Token::new(token).encoded());
    } else {
        path.push_str(token);
    }
}

pub fn push_index(path: &str, index: usize) -> String {
    let mut out = String::with_capacity(path.len() + 8);
    out.push_str(path);
    push_index_onto(&mut out, index);
    out
}

/// Appends `/index` to `path`.
pub(crate) fn push_index_onto(path: &mut String, index: usize) {
    use std::fmt::Write;
    let _ = write!(path, "/{index}");
}

/// A `$ref` string: inside this document (`#...`), or anywhere else (never fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference<'r> {
    /// The JSON pointer of the fragment, percent-decoded (still `~`-escaped).
    Local(Cow<'r, str>),
    External,
}

pub fn classify(reference: &str) -> Reference<'_> {
    match reference.strip_prefix('#') {
        // Almost no fragment has a `%`: it is then the pointer as it is.
        Some(fragment) if !fragment.contains('%') => Reference::Local(Cow::Borrowed(fragment)),
        Some(fragment) => Reference::Local(percent_decode_str(fragment).decode_utf8_lossy()),
        None => Reference::External,
    }
}

/// Walks `pointer` from `root`. `None` when the pointer is malformed or a token is missing.
///
/// The node `pointer` names under `root`: every `$ref` of a document is resolved here.
pub fn resolve<'d>(root: NodeRef<'d>, pointer: &str) -> Option<Located<'d>> {
    let mut node = root;
    let mut at = root.at();
    for key in decoded_tokens(pointer)? {
        let key = key?;
        match node.value() {
            Value::Map(_) => {
                let entry = node.stored_entry(&key)?;
                node = node.child(entry.value);
                at = entry.key_at;
            }
            Value::Seq(_) => {
                node = node.items().nth(array_index(&key)?)?;
                at = node.at();
            }
            Value::Scalar { .. } => return None,
        }
    }
    // The path is the pointer itself: its tokens are already in the escaped form paths are
    // written in (RFC 6901 escapes are unique), which is also the path the tree gives.
    Some(Located {
        node,
        at,
        base: root.id(),
        route: root
            .tree()
            .shares_nodes()
            .then(|| pointer.to_owned().into_boxed_str()),
    })
}

/// The tokens of a pointer, each unescaped as it is reached (`None` for a malformed one);
/// `None` for a pointer that neither is empty nor starts with `/`.
///
/// Split here rather than by `jsonptr`'s parser: this is the walk of every `$ref` of a
/// document, and the parser's separate validating pass cost more than the walk. The rules
/// are RFC 6901's, and a test holds [`tokens`] to `jsonptr`'s.
fn decoded_tokens(pointer: &str) -> Option<impl Iterator<Item = Option<Cow<'_, str>>>> {
    let rest = match pointer {
        "" => None,
        _ => Some(pointer.strip_prefix('/')?),
    };
    Some(
        rest.into_iter()
            .flat_map(|r| r.split('/'))
            .map(decode_token),
    )
}

/// One reference token unescaped (`~1` is `/`, `~0` is `~`); `None` for a `~` that starts
/// no escape, which makes the pointer malformed.
fn decode_token(token: &str) -> Option<Cow<'_, str>> {
    if !token.contains('~') {
        return Some(Cow::Borrowed(token));
    }
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '~' => match chars.next()? {
                '0' => '~',
                '1' => '/',
                _ => return None,
            },
            c => c,
        });
    }
    Some(Cow::Owned(out))
}

/// RFC 6901 array indices: digits, no leading zero.
fn array_index(token: &str) -> Option<usize> {
    if token.is_empty()
        || (token.len() > 1 && token.starts_with('0'))
        || !token.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    token.parse().ok()
}

/// The member `pointer` names directly under `parent`, decoded; `None` when it names
/// anything else or is malformed. `parent` holds plain names (no `~` or `/`), so a token
/// equals one decoded exactly when it equals it as written.
///
/// Matched by prefixes rather than split into tokens: this runs for every security
/// requirement of a document, and splitting cost more than the comparison.
pub fn member_of<'p>(pointer: &'p str, parent: &[&str]) -> Option<Cow<'p, str>> {
    let mut rest = pointer;
    for name in parent {
        debug_assert!(!name.contains(['~', '/']), "{name}");
        rest = rest.strip_prefix('/')?.strip_prefix(name)?;
    }
    let member = rest.strip_prefix('/')?;
    if member.contains('/') {
        return None;
    }
    decode_token(member)
}

/// The decoded tokens of a pointer; `None` for a malformed one.
pub fn tokens(pointer: &str) -> Option<Vec<String>> {
    decoded_tokens(pointer)?
        .map(|token| token.map(Cow::into_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::{Limits, load};
    use jsonptr::Pointer;

    #[test]
    fn escapes_tilde_and_slash() {
        assert_eq!(push("/channels", "a/b~c"), "/channels/a~1b~0c");
    }

    #[test]
    fn classifies_references() {
        assert_eq!(
            classify("#/components/securitySchemes/a%20b"),
            Reference::Local(Cow::Borrowed("/components/securitySchemes/a b"))
        );
        assert_eq!(classify("https://x/y.yaml#/a"), Reference::External);
        assert_eq!(classify("./file.yaml"), Reference::External);
    }

    #[test]
    fn tokens_are_split_and_unescaped_as_jsonptr_does() {
        for pointer in [
            "", "/", "//", "/a", "/a/b", "/a~0b", "/a~1b", "/~01", "/~10", "/~", "/a~", "/~2",
            "/a~0~1~", "a", "/é~1ü", "/0/01",
        ] {
            let theirs = Pointer::parse(pointer).ok().map(|p| {
                p.tokens()
                    .map(|t| t.decoded().into_owned())
                    .collect::<Vec<_>>()
            });
            assert_eq!(tokens(pointer), theirs, "{pointer:?}");
        }
    }

    #[test]
    fn names_members_of_a_parent() {
        let schemes = ["components", "securitySchemes"];
        let member = |pointer| member_of(pointer, &schemes).map(Cow::into_owned);
        assert_eq!(
            member("/components/securitySchemes/a~1b").as_deref(),
            Some("a/b")
        );
        assert_eq!(member("/components/securitySchemes/").as_deref(), Some(""));
        assert_eq!(
            member("/components/securitySchemes/~0~1").as_deref(),
            Some("~/")
        );
        assert_eq!(member("/components/security~1Schemes/a"), None);
        assert_eq!(member("/components/securitySchemes"), None);
        assert_eq!(member("/components/securitySchemes/a/b"), None);
        assert_eq!(member("/components/servers/a"), None);
        assert_eq!(member("/components/securitySchemes/a~2"), None);
        assert_eq!(member("/components/securitySchemes~/a"), None);
        assert_eq!(member("components/securitySchemes/a"), None);
        assert_eq!(member(""), None);
        assert_eq!(member("/"), None);
    }

    #[test]
    fn paths_are_the_way_walked_with_or_without_shared_nodes() {
        fn walk(here: &Located<'_>, expected: &str, seen: &mut usize) {
            assert_eq!(here.path(), expected);
            *seen += 1;
            for (key, child) in here.children() {
                walk(&child, &push(expected, key), seen);
            }
            for (i, item) in here.items() {
                walk(&item, &push_index(expected, i), seen);
            }
        }
        // One parent per node: the tree gives the path. An alias and a merge key: a node has
        // several parents, and the path is the one walked (`/one/k/1/z`, not `/base/k/1/z`).
        for (src, shared, nodes) in [
            ("a:\n  b/c: [x, {k~: v}]\n  d: {e: 1}\n", false, 8),
            (
                "base: &b {k: [1, {z: 2}]}\none: *b\ntwo:\n  <<: *b\n  own: 3\n",
                true,
                17,
            ),
        ] {
            let stream = load(src, &Limits::default()).unwrap();
            assert_eq!(stream.tree.shares_nodes(), shared, "{src}");
            let root = stream.roots().next().unwrap();
            let mut seen = 0;
            walk(&Located::root(root), "", &mut seen);
            assert_eq!(seen, nodes, "{src}");
            let found = resolve(root, if shared { "/two/k/1" } else { "/a/b~1c/1" }).unwrap();
            let expected = if shared { "/two/k/1" } else { "/a/b~1c/1" };
            assert_eq!(found.path(), expected);
            assert_eq!(
                found.child("z").map(|z| z.path()),
                shared.then(|| "/two/k/1/z".to_owned())
            );
        }
    }

    #[test]
    fn resolves_through_maps_and_lists_with_escapes() {
        let src = "channels:\n  a/b~c:\n    list: [x, {k: v}]\n";
        let stream = load(src, &Limits::default()).unwrap();
        let root = stream.roots().next().unwrap();
        let found = resolve(root, "/channels/a~1b~0c/list/1/k").unwrap();
        assert_eq!(found.node.as_str(), Some("v"));
        assert_eq!(found.path(), "/channels/a~1b~0c/list/1/k");
        assert_eq!(
            found.pos(),
            Pos {
                line: 3,
                column: 16
            }
        );
        assert!(resolve(root, "/channels/a~1b~0c/list/01").is_none());
        assert!(resolve(root, "/channels/missing").is_none());
        assert!(resolve(root, "no-leading-slash").is_none());
        assert_eq!(resolve(root, "").unwrap().path(), "");
    }
}
