//! What the in-cluster audit remembers between watch events: per object, only what its
//! writes and gauges need, compactly (a passing object is its name, its kind and a few
//! numbers), so that memory grows by a few hundred bytes per object, not by its document.
//!
//! The book is filled from the watches (a kind is "listed" once its first list completed),
//! and says what is owed to the cluster: a status condition, an Event, the Report of a
//! namespace. It never writes; the write queue asks it what to write when a write is due.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::ApiResource;

use super::Audited;
use super::reports::{FindingResult, ObjectResults};
use super::resources::resource_name;
use crate::engine::finding::RuleId;

/// An object's uid: a UUID in 16 bytes (what the API server gives), any other text as is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Uid {
    Uuid(u128),
    Text(Arc<str>),
}

impl Uid {
    pub fn new(text: &str) -> Uid {
        let hex: String = text.chars().filter(|c| *c != '-').collect();
        let canonical = text.len() == 36
            && hex.len() == 32
            && text
                .char_indices()
                .all(|(i, c)| matches!(i, 8 | 13 | 18 | 23) == (c == '-'))
            && hex
                .chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
        match u128::from_str_radix(&hex, 16) {
            Ok(n) if canonical => Uid::Uuid(n),
            _ => Uid::Text(text.into()),
        }
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Uid::Text(text) => f.write_str(text),
            Uid::Uuid(n) => {
                let hex = format!("{n:032x}");
                write!(
                    f,
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
        }
    }
}

/// A kind the audit watches, by its index in [`Kinds`].
pub type KindIndex = u16;

#[derive(Debug, Clone)]
pub struct KindInfo {
    pub resource: ApiResource,
    /// `configmaps`, `asyncapis.asyncapi-guard.io`.
    pub name: String,
    /// Its objects carry our status condition (the `AsyncAPI` resource) rather than Events.
    pub has_status: bool,
    pub namespaced: bool,
}

/// Every kind the audit has watched this leadership: indices stay valid across re-audits.
#[derive(Debug, Default)]
pub struct Kinds(Vec<KindInfo>);

impl Kinds {
    /// The index of `resource`, added when new.
    pub fn index(&mut self, resource: &ApiResource, namespaced: bool) -> KindIndex {
        let name = resource_name(resource);
        if let Some(i) = self.0.iter().position(|k| k.name == name) {
            self.0[i].resource = resource.clone();
            return i as KindIndex;
        }
        self.0.push(KindInfo {
            resource: resource.clone(),
            has_status: resource.group == crate::kubernetes::extract::CR_GROUP
                && resource.kind == crate::kubernetes::extract::CR_KIND,
            name,
            namespaced,
        });
        (self.0.len() - 1) as KindIndex
    }

    pub fn get(&self, index: KindIndex) -> Option<&KindInfo> {
        self.0.get(usize::from(index))
    }
}

/// A status condition or an Event the cluster is owed for one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Owed {
    Condition(Box<Condition>, Option<i64>),
    /// An Event with this note; `reason` NonCompliant or Unguarded.
    Event {
        reason: &'static str,
        note: Box<str>,
    },
}

/// What the audit remembers of one object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: Box<str>,
    pub kind: KindIndex,
    pub guarded: bool,
    /// Rules of the findings that deny, one per finding: the gauges.
    pub violations: Box<[RuleId]>,
    /// Its results in the namespace's Report (guarded objects only; none: it passes).
    pub findings: Box<[FindingResult]>,
    /// How many findings each exception covers (by `namespace/name`).
    pub waived: Box<[(Arc<str>, u32)]>,
    /// What its last Event said (a hash of the note; 0: none emitted, or none wanted).
    pub emitted: u64,
    /// What the cluster is owed for it, until written.
    pub owed: Option<Owed>,
    /// The watch pass that last saw it: a re-list forgets what it did not see again.
    pub seen: u32,
}

/// A note's hash, to tell an Event already emitted from one to emit.
pub fn note_hash(note: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    note.hash(&mut hasher);
    hasher.finish().max(1)
}

/// Every object the audit has judged, by namespace (`""` for cluster-scoped ones) and uid.
#[derive(Debug, Default)]
pub struct Book {
    namespaces: HashMap<Arc<str>, HashMap<Uid, Entry>>,
    /// The gauges' values, by namespace and rule.
    counts: BTreeMap<(Arc<str>, RuleId), i64>,
}

/// How the gauges move: (namespace, rule, new count) for each series that changed.
pub type GaugeChanges = Vec<(Arc<str>, RuleId, i64)>;

impl Book {
    /// The namespace's interned name.
    fn namespace(&mut self, name: &str) -> Arc<str> {
        match self.namespaces.get_key_value(name) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Arc<str> = name.into();
                self.namespaces.insert(key.clone(), HashMap::new());
                key
            }
        }
    }

    pub fn get(&self, namespace: &str, uid: &Uid) -> Option<&Entry> {
        self.namespaces.get(namespace)?.get(uid)
    }

    pub fn get_mut(&mut self, namespace: &str, uid: &Uid) -> Option<&mut Entry> {
        self.namespaces.get_mut(namespace)?.get_mut(uid)
    }

    /// Records `audited` (of kind `kind`, seen in pass `seen`); returns the namespace's
    /// interned name and the gauge changes.
    pub fn put(
        &mut self,
        kind: KindIndex,
        audited: &Audited,
        seen: u32,
        emitted: Option<u64>,
        owed: Option<Owed>,
    ) -> (Arc<str>, GaugeChanges) {
        let namespace = self.namespace(audited.id.namespace.as_deref().unwrap_or_default());
        let uid = Uid::new(&audited.uid);
        let results = ObjectResults::of(audited);
        let mut waived: BTreeMap<Arc<str>, u32> = BTreeMap::new();
        for (_, finding) in audited.findings() {
            if let Some(waiver) = &finding.waiver {
                *waived.entry(waiver.by.as_str().into()).or_default() += 1;
            }
        }
        let violations: Box<[RuleId]> = audited.violations().map(|(_, f)| f.rule).collect();
        let mut changes = Vec::new();
        let before = self
            .get(&namespace, &uid)
            .map(|e| e.violations.clone())
            .unwrap_or_default();
        self.count(&namespace, &before, -1, &mut changes);
        self.count(&namespace, &violations, 1, &mut changes);
        let entry = Entry {
            name: audited.id.name.as_str().into(),
            kind,
            guarded: audited.guarded(),
            violations,
            findings: if audited.guarded() {
                results.findings
            } else {
                Box::new([])
            },
            waived: waived.into_iter().collect(),
            emitted: emitted.unwrap_or(0),
            owed,
            seen,
        };
        self.namespaces
            .entry(namespace.clone())
            .or_default()
            .insert(uid, entry);
        (namespace, changes)
    }

    /// Forgets an object (deleted, or no longer carrying a document).
    pub fn remove(&mut self, namespace: &str, uid: &Uid) -> Option<(Entry, GaugeChanges)> {
        let key = self.namespaces.get_key_value(namespace)?.0.clone();
        let objects = self.namespaces.get_mut(namespace)?;
        let entry = objects.remove(uid)?;
        if objects.is_empty() {
            self.namespaces.remove(namespace);
        }
        let mut changes = Vec::new();
        self.count(&key, &entry.violations, -1, &mut changes);
        Some((entry, changes))
    }

    /// Forgets the objects that are `gone`; returns their namespaces and the gauge changes.
    pub fn forget_where(&mut self, gone: impl Fn(&Entry) -> bool) -> (Vec<Arc<str>>, GaugeChanges) {
        let found: Vec<(Arc<str>, Uid)> = self
            .namespaces
            .iter()
            .flat_map(|(namespace, objects)| {
                objects
                    .iter()
                    .filter(|(_, entry)| gone(entry))
                    .map(move |(uid, _)| (namespace.clone(), uid.clone()))
            })
            .collect();
        let mut changes = Vec::new();
        let mut namespaces = std::collections::BTreeSet::new();
        for (namespace, uid) in found {
            if let Some((_, mut moved)) = self.remove(&namespace, &uid) {
                changes.append(&mut moved);
            }
            namespaces.insert(namespace);
        }
        (namespaces.into_iter().collect(), changes)
    }

    fn count(
        &mut self,
        namespace: &Arc<str>,
        rules: &[RuleId],
        delta: i64,
        changes: &mut GaugeChanges,
    ) {
        for rule in rules {
            let key = (namespace.clone(), *rule);
            let count = self.counts.entry(key.clone()).or_insert(0);
            *count += delta;
            let value = *count;
            if value <= 0 {
                self.counts.remove(&key);
            }
            match changes
                .iter_mut()
                .find(|(n, r, _)| n == namespace && r == rule)
            {
                Some(change) => change.2 = value.max(0),
                None => changes.push((namespace.clone(), *rule, value.max(0))),
            }
        }
    }

    /// The namespaces that hold objects (`""`: cluster-scoped ones).
    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<str>> {
        self.namespaces.keys()
    }

    /// The objects of `namespace`.
    pub fn objects(&self, namespace: &str) -> impl Iterator<Item = (&Uid, &Entry)> {
        self.namespaces.get(namespace).into_iter().flatten()
    }

    /// Every object owed a write.
    pub fn owing(&self) -> Vec<(Arc<str>, Uid)> {
        self.namespaces
            .iter()
            .flat_map(|(namespace, objects)| {
                objects
                    .iter()
                    .filter(|(_, e)| e.owed.is_some())
                    .map(move |(uid, _)| (namespace.clone(), uid.clone()))
            })
            .collect()
    }

    /// How many findings each exception covers now, across the book.
    pub fn covered(&self) -> HashMap<Arc<str>, u64> {
        let mut covered: HashMap<Arc<str>, u64> = HashMap::new();
        for objects in self.namespaces.values() {
            for entry in objects.values() {
                for (by, count) in &entry.waived {
                    *covered.entry(by.clone()).or_default() += u64::from(*count);
                }
            }
        }
        covered
    }

    /// The objects of `namespace`, as its Report lists them.
    pub fn report_objects(&self, namespace: &str, kinds: &Kinds) -> Vec<ObjectResults> {
        self.objects(namespace)
            .filter(|(_, e)| e.guarded)
            .filter_map(|(uid, entry)| {
                let kind = kinds.get(entry.kind)?;
                Some(ObjectResults {
                    api_version: kind.resource.api_version.clone(),
                    kind: kind.resource.kind.clone(),
                    name: entry.name.to_string(),
                    namespace: namespace.to_owned(),
                    uid: uid.to_string(),
                    findings: entry.findings.clone(),
                })
            })
            .collect()
    }

    /// Every object, forgotten (leadership lost); the gauges' series to remove.
    pub fn clear(&mut self) -> Vec<(Arc<str>, RuleId)> {
        self.namespaces.clear();
        std::mem::take(&mut self.counts).into_keys().collect()
    }

    pub fn len(&self) -> usize {
        self.namespaces.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_kept_in_sixteen_bytes_and_written_back_as_they_came() {
        for text in [
            "8a813153-5f7e-48c4-bcc9-af77ff29926f",
            "00000000-0000-4000-8000-000000000001",
        ] {
            let uid = Uid::new(text);
            assert!(matches!(uid, Uid::Uuid(_)), "{text}");
            assert_eq!(uid.to_string(), text);
        }
        for text in [
            "uid-orders",
            "8A813153-5F7E-48C4-BCC9-AF77FF29926F",
            "8a8131535f7e48c4bcc9af77ff29926f--",
        ] {
            let uid = Uid::new(text);
            assert!(matches!(uid, Uid::Text(_)), "{text}");
            assert_eq!(uid.to_string(), text);
        }
    }
}
