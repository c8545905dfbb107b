//! A bounded memo of evaluations, for the webhook: Argo CD and Flux re-send unchanged
//! objects on every sync, and a dry run is followed by the same apply, so most documents
//! the webhook sees it has judged before.
//!
//! The key is the SHA-256 of the document's bytes and everything else the verdict depends
//! on (the request's mode and production override, and whether the text is only a
//! candidate). A cryptographic hash, because a collision would let a crafted document
//! reuse another's "allowed"; the policy is not in the key because a memo belongs to one
//! engine and is dropped with it when the configuration is reloaded. Only the engine's
//! own results are kept (never cluster state), and messages that name the object are
//! rendered per request from them.
//!
//! A document enters the memo the second time it is seen ([`Keep::OnRepeat`]), or at once
//! when it is sure to come again ([`Keep::Now`]: a dry run). Which documents were seen once
//! is kept as fast fingerprints by a [`Doorkeeper`], the admission filter of TinyLFU: a
//! document seen only once costs no SHA-256 and no entry (hashing a 3 KB document and
//! storing its verdict were an eighth of the webhook's time when every document was new),
//! and one-off documents do not push out the ones GitOps re-sends.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use ring::digest;

use super::{Engine, Evaluation, Overrides};

/// When a document the memo does not hold is put into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// At once: the same document is expected again (a dry run is followed by its apply).
    Now,
    /// The second time it is seen (within the doorkeeper's memory).
    OnRepeat,
}

/// A memo and when to keep what it does not hold: how the webhook judges with it.
#[derive(Debug, Clone, Copy)]
pub struct WithMemo<'m> {
    pub memo: &'m Memo,
    pub keep: Keep,
}

/// What a lookup did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
    /// Not looked up: the first time the document was seen, it is judged and not kept.
    FirstSight,
}

impl Lookup {
    /// The metric's label.
    pub fn as_str(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::FirstSight => "first_sight",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    digest: [u8; 32],
    overrides: Overrides,
    candidate: bool,
}

/// A cached verdict: `None` for a candidate that is not AsyncAPI.
type Entry = Arc<Option<Evaluation>>;

#[derive(Clone)]
struct ByApproximateSize;

impl Weighter<Key, Entry> for ByApproximateSize {
    fn weight(&self, _key: &Key, entry: &Entry) -> u64 {
        // The key, the map's own overhead and the findings' text.
        let findings: usize = entry.as_ref().as_ref().map_or(0, |e| {
            e.findings
                .iter()
                .map(|f| {
                    96 + f.path.len() + f.message.len() + f.hint.as_ref().map_or(0, String::len)
                })
                .sum()
        });
        (128 + findings) as u64
    }
}

pub struct Memo {
    cache: Cache<Key, Entry, ByApproximateSize>,
    doorkeeper: Doorkeeper,
}

/// Fingerprints of the documents seen lately, one per slot, a newer one taking the slot of
/// an older. Safe with a fast, non-cryptographic hash: a fingerprint only decides whether a
/// document is looked up and kept by its SHA-256, never whose verdict it gets. Two documents
/// with one fingerprint cost a SHA-256 the first of them did not need; a document whose
/// slot was taken in between is judged once more. Neither changes a verdict.
struct Doorkeeper {
    slots: Box<[AtomicU64]>,
    /// Seeded per process, so that which documents share a slot cannot be planned.
    hasher: foldhash::fast::RandomState,
}

impl Doorkeeper {
    /// 256 KiB: a cluster's documents between two syncs fit many times over.
    const SLOTS: usize = 1 << 15;

    fn new() -> Doorkeeper {
        Doorkeeper {
            slots: (0..Doorkeeper::SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }

    /// Whether the document was seen before (under the same options); it counts as seen
    /// from now on. Relaxed: concurrent requests may each take it as new, which only means
    /// judging it without the memo.
    fn seen_before(&self, bytes: &[u8], overrides: &Overrides, candidate: bool) -> bool {
        // What the memo's key holds, with the bytes in place of their SHA-256; never 0, the
        // empty slot.
        let fingerprint = self.hasher.hash_one((bytes, overrides, candidate)) | 1;
        let slot = (fingerprint >> 32) as usize % Doorkeeper::SLOTS;
        self.slots[slot].swap(fingerprint, Ordering::Relaxed) == fingerprint
    }
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

impl Memo {
    /// Holds about `max_bytes` of evaluations (each entry weighs at least 128 bytes, which
    /// also bounds the number of entries).
    pub fn new(max_bytes: u64) -> Memo {
        let estimated_items = usize::try_from(max_bytes / 512).unwrap_or(1024).max(16);
        Memo {
            cache: Cache::with_weighter(estimated_items, max_bytes, ByApproximateSize),
            doorkeeper: Doorkeeper::new(),
        }
    }

    fn key(bytes: &[u8], overrides: &Overrides, candidate: bool) -> Key {
        let mut digest = [0; 32];
        digest.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
        Key {
            digest,
            overrides: *overrides,
            candidate,
        }
    }

    /// Whether the document is to be judged without the memo (its first sight). Either way
    /// it counts as seen from now on: the apply after a dry run then finds it.
    fn first_sight(
        &self,
        keep: Keep,
        bytes: &[u8],
        overrides: &Overrides,
        candidate: bool,
    ) -> bool {
        let seen = self.doorkeeper.seen_before(bytes, overrides, candidate);
        keep == Keep::OnRepeat && !seen
    }

    /// [`Engine::evaluate_bytes`], memoised.
    pub fn evaluate_bytes(
        &self,
        engine: &Engine,
        bytes: &[u8],
        overrides: &Overrides,
        keep: Keep,
    ) -> (Evaluation, Lookup) {
        if self.first_sight(keep, bytes, overrides, false) {
            return (engine.evaluate_bytes(bytes, overrides), Lookup::FirstSight);
        }
        let key = Memo::key(bytes, overrides, false);
        if let Some(Some(evaluation)) = self.cache.get(&key).as_deref() {
            return (evaluation.clone(), Lookup::Hit);
        }
        let evaluation = engine.evaluate_bytes(bytes, overrides);
        self.cache.insert(key, Arc::new(Some(evaluation.clone())));
        (evaluation, Lookup::Miss)
    }

    /// [`Engine::evaluate_if_asyncapi`], memoised.
    pub fn evaluate_if_asyncapi(
        &self,
        engine: &Engine,
        bytes: &[u8],
        overrides: &Overrides,
        keep: Keep,
    ) -> (Option<Evaluation>, Lookup) {
        if self.first_sight(keep, bytes, overrides, true) {
            return (
                engine.evaluate_if_asyncapi(bytes, overrides),
                Lookup::FirstSight,
            );
        }
        let key = Memo::key(bytes, overrides, true);
        if let Some(entry) = self.cache.get(&key) {
            return (entry.as_ref().clone(), Lookup::Hit);
        }
        let evaluation = engine.evaluate_if_asyncapi(bytes, overrides);
        self.cache.insert(key, Arc::new(evaluation.clone()));
        (evaluation, Lookup::Miss)
    }

    pub fn len(&self) -> usize {
        self.cache.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// About how many bytes the entries hold.
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::finding::Mode;

    const INSECURE: &[u8] =
        b"asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

    #[test]
    fn the_same_bytes_and_options_hit_and_anything_else_misses() {
        let engine = Engine::default();
        let memo = Memo::new(1 << 20);
        let enforce = Overrides::default();
        let (first, lookup) = memo.evaluate_bytes(&engine, INSECURE, &enforce, Keep::Now);
        assert_eq!(lookup, Lookup::Miss);
        let (again, lookup) = memo.evaluate_bytes(&engine, INSECURE, &enforce, Keep::Now);
        assert_eq!(lookup, Lookup::Hit);
        assert_eq!(first, again);
        assert_eq!(first, engine.evaluate_bytes(INSECURE, &enforce));

        // The mode is part of the verdict, so of the key.
        let warn = Overrides {
            mode: Mode::Warn,
            ..Overrides::default()
        };
        let (warned, lookup) = memo.evaluate_bytes(&engine, INSECURE, &warn, Keep::Now);
        assert_eq!(lookup, Lookup::Miss);
        assert!(warned.allowed() && !first.allowed());
        // One byte more is another document.
        let mut changed = INSECURE.to_vec();
        changed.push(b'\n');
        assert_eq!(
            memo.evaluate_bytes(&engine, &changed, &enforce, Keep::Now)
                .1,
            Lookup::Miss
        );
        // A candidate's "not AsyncAPI" is remembered too, apart from a promised document's.
        assert_eq!(
            memo.evaluate_if_asyncapi(&engine, b"leader: x", &enforce, Keep::Now),
            (None, Lookup::Miss)
        );
        assert_eq!(
            memo.evaluate_if_asyncapi(&engine, b"leader: x", &enforce, Keep::Now),
            (None, Lookup::Hit)
        );
        assert_eq!(
            memo.evaluate_bytes(&engine, b"leader: x", &enforce, Keep::Now)
                .1,
            Lookup::Miss
        );
    }

    #[test]
    fn a_document_is_kept_when_seen_again_unless_it_is_sure_to_come_again() {
        let engine = Engine::default();
        let memo = Memo::new(1 << 20);
        let enforce = Overrides::default();
        let judged = engine.evaluate_bytes(INSECURE, &enforce);
        let lookups: Vec<_> = (0..3)
            .map(|_| {
                let (evaluation, lookup) =
                    memo.evaluate_bytes(&engine, INSECURE, &enforce, Keep::OnRepeat);
                assert_eq!(evaluation, judged);
                lookup
            })
            .collect();
        assert_eq!(lookups, [Lookup::FirstSight, Lookup::Miss, Lookup::Hit]);
        assert_eq!(memo.len(), 1);

        // Seen under other options, or as a candidate, it is another document.
        let warn = Overrides {
            mode: Mode::Warn,
            ..Overrides::default()
        };
        assert_eq!(
            memo.evaluate_bytes(&engine, INSECURE, &warn, Keep::OnRepeat)
                .1,
            Lookup::FirstSight
        );
        assert_eq!(
            memo.evaluate_if_asyncapi(&engine, INSECURE, &enforce, Keep::OnRepeat)
                .1,
            Lookup::FirstSight
        );
        assert_eq!(
            memo.evaluate_if_asyncapi(&engine, INSECURE, &enforce, Keep::OnRepeat)
                .1,
            Lookup::Miss
        );

        // A dry run's document is kept at once: its apply follows.
        let other = b"asyncapi: 3.0.0\nservers: {}\n";
        assert_eq!(
            memo.evaluate_bytes(&engine, other, &enforce, Keep::Now).1,
            Lookup::Miss
        );
        assert_eq!(
            memo.evaluate_bytes(&engine, other, &enforce, Keep::OnRepeat)
                .1,
            Lookup::Hit
        );
    }

    #[test]
    fn documents_seen_once_take_no_room() {
        let engine = Engine::default();
        let memo = Memo::new(1 << 20);
        for i in 0..1000 {
            let document = format!("asyncapi: 3.0.0\nx-n: {i}\n");
            let (_, lookup) = memo.evaluate_bytes(
                &engine,
                document.as_bytes(),
                &Overrides::default(),
                Keep::OnRepeat,
            );
            assert_eq!(lookup, Lookup::FirstSight);
        }
        assert!(memo.is_empty());
    }

    #[test]
    fn it_stays_within_its_bytes() {
        let engine = Engine::default();
        let memo = Memo::new(64 * 1024);
        for i in 0..5000 {
            let document = format!(
                "asyncapi: 3.0.0\nx-n: {i}\nservers:\n  production:\n    host: x\n    protocol: amqp\n"
            );
            memo.evaluate_bytes(
                &engine,
                document.as_bytes(),
                &Overrides::default(),
                Keep::Now,
            );
        }
        assert!(memo.weight() <= 64 * 1024, "{}", memo.weight());
        assert!(memo.len() < 5000);
    }
}
