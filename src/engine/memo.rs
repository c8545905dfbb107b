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

use std::sync::Arc;

use quick_cache::Weighter;
use quick_cache::sync::Cache;
use ring::digest;

use super::finding::Mode;
use super::{Engine, Evaluation, Overrides};

/// What a lookup did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    Hit,
    Miss,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    digest: [u8; 32],
    mode: Mode,
    all_servers_production: bool,
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
        }
    }

    fn key(bytes: &[u8], overrides: &Overrides, candidate: bool) -> Key {
        let mut digest = [0; 32];
        digest.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
        Key {
            digest,
            mode: overrides.mode,
            all_servers_production: overrides.all_servers_production,
            candidate,
        }
    }

    /// [`Engine::evaluate_bytes`], memoised.
    pub fn evaluate_bytes(
        &self,
        engine: &Engine,
        bytes: &[u8],
        overrides: &Overrides,
    ) -> (Evaluation, Lookup) {
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
    ) -> (Option<Evaluation>, Lookup) {
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

    const INSECURE: &[u8] =
        b"asyncapi: 3.0.0\nservers:\n  production:\n    host: x\n    protocol: amqp\n";

    #[test]
    fn the_same_bytes_and_options_hit_and_anything_else_misses() {
        let engine = Engine::default();
        let memo = Memo::new(1 << 20);
        let enforce = Overrides::default();
        let (first, lookup) = memo.evaluate_bytes(&engine, INSECURE, &enforce);
        assert_eq!(lookup, Lookup::Miss);
        let (again, lookup) = memo.evaluate_bytes(&engine, INSECURE, &enforce);
        assert_eq!(lookup, Lookup::Hit);
        assert_eq!(first, again);
        assert_eq!(first, engine.evaluate_bytes(INSECURE, &enforce));

        // The mode is part of the verdict, so of the key.
        let warn = Overrides {
            mode: Mode::Warn,
            ..Overrides::default()
        };
        let (warned, lookup) = memo.evaluate_bytes(&engine, INSECURE, &warn);
        assert_eq!(lookup, Lookup::Miss);
        assert!(warned.allowed() && !first.allowed());
        // One byte more is another document.
        let mut changed = INSECURE.to_vec();
        changed.push(b'\n');
        assert_eq!(
            memo.evaluate_bytes(&engine, &changed, &enforce).1,
            Lookup::Miss
        );
        // A candidate's "not AsyncAPI" is remembered too, apart from a promised document's.
        assert_eq!(
            memo.evaluate_if_asyncapi(&engine, b"leader: x", &enforce),
            (None, Lookup::Miss)
        );
        assert_eq!(
            memo.evaluate_if_asyncapi(&engine, b"leader: x", &enforce),
            (None, Lookup::Hit)
        );
        assert_eq!(
            memo.evaluate_bytes(&engine, b"leader: x", &enforce).1,
            Lookup::Miss
        );
    }

    #[test]
    fn it_stays_within_its_bytes() {
        let engine = Engine::default();
        let memo = Memo::new(64 * 1024);
        for i in 0..5000 {
            let document = format!(
                "asyncapi: 3.0.0\nx-n: {i}\nservers:\n  production:\n    host: x\n    protocol: amqp\n"
            );
            memo.evaluate_bytes(&engine, document.as_bytes(), &Overrides::default());
        }
        assert!(memo.weight() <= 64 * 1024, "{}", memo.weight());
        assert!(memo.len() < 5000);
    }
}
