//! Following local `$ref` chains. Nothing outside the document is ever fetched or read.

use super::document::NodeRef;
use super::document::pointer::{self, Located, Reference};

/// Where a chain of references ends.
#[derive(Debug)]
pub enum Target<'d> {
    /// A node that is not itself a reference.
    Node(Located<'d>),
    /// A reference that leaves the document; `at` is the node that holds it.
    External { reference: &'d str, at: Located<'d> },
    /// A local reference that names nothing, or a cycle.
    Unresolved { reference: &'d str, why: Unresolved },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolved {
    Dangling,
    Cycle,
}

/// No real document chains more references than this; a longer chain is treated as a cycle.
const MAX_HOPS: usize = 64;

/// Follows `$ref`s from `start` until a node that is not a Reference Object.
pub fn follow<'d>(root: NodeRef<'d>, start: Located<'d>) -> Target<'d> {
    // Most nodes a chain starts from are no reference at all: they return before the
    // cycle guard is filled.
    let Some(mut reference) = start.node.reference() else {
        return Target::Node(start);
    };
    let mut here = start;
    // On the stack: every reference of a document starts a chain here.
    let mut seen = [here.node.id(); MAX_HOPS];
    let mut hops = 0;
    loop {
        if hops >= MAX_HOPS || seen[..hops].contains(&here.node.id()) {
            return Target::Unresolved {
                reference,
                why: Unresolved::Cycle,
            };
        }
        seen[hops] = here.node.id();
        hops += 1;
        match pointer::classify(reference) {
            Reference::External => {
                return Target::External {
                    reference,
                    at: here,
                };
            }
            Reference::Local(ptr) => match pointer::resolve(root, &ptr) {
                Some(next) => here = next,
                None => {
                    return Target::Unresolved {
                        reference,
                        why: Unresolved::Dangling,
                    };
                }
            },
        }
        reference = match here.node.reference() {
            Some(next) => next,
            None => return Target::Node(here),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::document::{Limits, load};

    fn with_root(src: &str, check: impl FnOnce(NodeRef<'_>)) {
        let stream = load(src, &Limits::default()).unwrap();
        check(stream.roots().next().unwrap());
    }

    #[test]
    fn follows_chains_to_the_end() {
        with_root(
            "a: {$ref: '#/b'}\nb: {$ref: '#/c'}\nc: {type: http}\n",
            |root| match follow(root, Located::root(root).child("a").unwrap()) {
                Target::Node(n) => assert_eq!(n.path(), "/c"),
                other => panic!("{other:?}"),
            },
        );
    }

    #[test]
    fn detects_cycles_and_dangling_and_external() {
        with_root(
            "a: {$ref: '#/b'}\nb: {$ref: '#/a'}\nd: {$ref: '#/nope'}\ne: {$ref: 'other.yaml#/x'}\n",
            |root| {
                let top = Located::root(root);
                assert!(matches!(
                    follow(root, top.child("a").unwrap()),
                    Target::Unresolved {
                        why: Unresolved::Cycle,
                        ..
                    }
                ));
                assert!(matches!(
                    follow(root, top.child("d").unwrap()),
                    Target::Unresolved {
                        why: Unresolved::Dangling,
                        ..
                    }
                ));
                match follow(root, top.child("e").unwrap()) {
                    Target::External { reference, at } => {
                        assert_eq!(reference, "other.yaml#/x");
                        assert_eq!(at.path(), "/e");
                    }
                    other => panic!("{other:?}"),
                }
            },
        );
    }

    #[test]
    fn self_reference_is_a_cycle() {
        with_root("a: {$ref: '#/a'}\n", |root| {
            assert!(matches!(
                follow(root, Located::root(root).child("a").unwrap()),
                Target::Unresolved {
                    why: Unresolved::Cycle,
                    ..
                }
            ));
        });
    }
}
