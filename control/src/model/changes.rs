//! What changed in a model, so that the compiler can work from the change
//! instead of the whole model.
//!
//! Every object map of the [`Model`](super::Model) is a [`Tracked`] map: it
//! can only be changed through methods that record the key in the model's
//! [`Changes`]. Each record gets a version number that is unique in the
//! process, so a model's versions form a chain, and a copy of a model shares
//! its original's chain up to the copy and then forks with versions of its
//! own. [`Changes::since`] answers the objects changed after a version only
//! when that version is on this model's chain; two copies changed apart never
//! pass for one another.
//!
//! The log is part of the model's state in memory only: it is not serialized
//! (a loaded model starts a chain of its own) and it does not take part in
//! equality.
//!
//! The maps are persistent ([`imbl::OrdMap`]): a copy shares every node with
//! its original until one of them writes, which copies the nodes on the path
//! to the written key. Copying a model of any size is therefore cheap, which
//! is what a change (made on a copy, published if valid) and a reader of the
//! published model rely on.

use std::ops::Deref;

use imbl::OrdMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use super::{GroupId, InterfaceId, PrefixListId, VpcId};

/// The next version number handed out in this process.
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

fn fresh_version() -> u64 {
    NEXT_VERSION.fetch_add(1, Ordering::Relaxed)
}

/// An object that was added, changed or removed (also how the journal names
/// a removed object).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Changed {
    Vpc(VpcId),
    Group(GroupId),
    Interface(InterfaceId),
    PrefixList(PrefixListId),
}

/// Records kept before the log is dropped: a model changed this often without
/// [`Changes::trim`] starts a new chain, and its next compilation is a full
/// one.
const MAX_LOG: usize = 1 << 20;

/// The change log of one model. See the module documentation.
#[derive(Clone, Debug)]
pub struct Changes {
    /// The version the log starts after.
    base: u64,
    /// (version, object), versions ascending.
    log: Vec<(u64, Changed)>,
}

impl Default for Changes {
    fn default() -> Self {
        Changes {
            base: fresh_version(),
            log: Vec::new(),
        }
    }
}

/// Not part of the model's value.
impl PartialEq for Changes {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Changes {}

impl Changes {
    /// The model's current version.
    pub fn version(&self) -> u64 {
        self.log.last().map_or(self.base, |&(v, _)| v)
    }

    fn record(&mut self, changed: Changed) {
        if self.log.len() >= MAX_LOG {
            *self = Changes::default();
        }
        self.log.push((fresh_version(), changed));
    }

    /// The objects changed after `version` (with repeats, oldest first), or
    /// `None` when `version` is not on this model's chain (another model, a
    /// copy changed apart, or a log trimmed past it).
    pub fn since(&self, version: u64) -> Option<impl Iterator<Item = Changed> + '_> {
        let start = if version == self.base {
            0
        } else {
            self.log.binary_search_by_key(&version, |&(v, _)| v).ok()? + 1
        };
        Some(self.log[start..].iter().map(|&(_, c)| c))
    }

    /// The objects changed after `version`, each once, in the order of their
    /// first change; `None` as for [`Changes::since`].
    pub fn distinct_since(&self, version: u64) -> Option<Vec<Changed>> {
        let mut seen = std::collections::HashSet::new();
        Some(self.since(version)?.filter(|c| seen.insert(*c)).collect())
    }

    /// Forgets the records up to the current version, which stays on the
    /// chain: `since(version())` still answers, older versions do not.
    pub fn trim(&mut self) {
        self.base = self.version();
        self.log.clear();
    }

    /// No records kept.
    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }
}

/// A key of a tracked map: what its change is recorded as.
pub trait TrackedKey: Ord + Copy {
    fn changed(self) -> Changed;
}

impl TrackedKey for VpcId {
    fn changed(self) -> Changed {
        Changed::Vpc(self)
    }
}

impl TrackedKey for GroupId {
    fn changed(self) -> Changed {
        Changed::Group(self)
    }
}

impl TrackedKey for InterfaceId {
    fn changed(self) -> Changed {
        Changed::Interface(self)
    }
}

impl TrackedKey for PrefixListId {
    fn changed(self) -> Changed {
        Changed::PrefixList(self)
    }
}

/// An object map whose every change is recorded in a [`Changes`]. Reads go
/// through `Deref` to the map; there is no other way to write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
#[serde(bound(
    serialize = "K: Serialize + Ord + Clone, V: Serialize + Clone",
    deserialize = "K: Deserialize<'de> + Ord + Clone, V: Deserialize<'de> + Clone"
))]
pub struct Tracked<K: Ord + Clone, V: Clone> {
    map: OrdMap<K, V>,
}

impl<K: Ord + Clone, V: Clone> Default for Tracked<K, V> {
    fn default() -> Self {
        Tracked { map: OrdMap::new() }
    }
}

impl<K: Ord + Clone, V: Clone> Deref for Tracked<K, V> {
    type Target = OrdMap<K, V>;
    fn deref(&self) -> &OrdMap<K, V> {
        &self.map
    }
}

impl<K: TrackedKey, V: Clone> Tracked<K, V> {
    pub fn insert(&mut self, changes: &mut Changes, key: K, value: V) -> Option<V> {
        changes.record(key.changed());
        self.map.insert(key, value)
    }

    pub fn get_mut(&mut self, changes: &mut Changes, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        changes.record(key.changed());
        Some(value)
    }

    pub fn remove(&mut self, changes: &mut Changes, key: &K) -> Option<V> {
        let value = self.map.remove(key)?;
        changes.record(key.changed());
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changed(c: &Changes, since: u64) -> Option<Vec<Changed>> {
        c.since(since).map(Iterator::collect)
    }

    #[test]
    fn every_write_is_recorded_and_reads_are_not() {
        let mut c = Changes::default();
        let mut m: Tracked<GroupId, &str> = Tracked::default();
        let v0 = c.version();
        m.insert(&mut c, GroupId(1), "a");
        m.insert(&mut c, GroupId(2), "b");
        let v1 = c.version();
        assert_eq!(m.get(&GroupId(1)), Some(&"a"));
        *m.get_mut(&mut c, &GroupId(2)).unwrap() = "c";
        assert!(m.get_mut(&mut c, &GroupId(9)).is_none(), "a miss changes nothing");
        m.remove(&mut c, &GroupId(1));
        assert!(m.remove(&mut c, &GroupId(1)).is_none());
        assert_eq!(
            changed(&c, v0).unwrap(),
            [1, 2, 2, 1].map(|g| Changed::Group(GroupId(g)))
        );
        assert_eq!(
            changed(&c, v1).unwrap(),
            [2, 1].map(|g| Changed::Group(GroupId(g)))
        );
        assert_eq!(changed(&c, c.version()).unwrap(), []);
        assert_eq!(
            c.distinct_since(v0).unwrap(),
            [1, 2].map(|g| Changed::Group(GroupId(g))),
            "each once, by first change"
        );
    }

    #[test]
    fn copies_changed_apart_are_told_apart() {
        let mut m: Tracked<InterfaceId, u8> = Tracked::default();
        let mut a = Changes::default();
        m.insert(&mut a, InterfaceId(1), 1);
        let fork = a.version();
        let mut b = a.clone();
        let (mut ma, mut mb) = (m.clone(), m);
        ma.insert(&mut a, InterfaceId(2), 2);
        mb.insert(&mut b, InterfaceId(3), 3);
        assert_eq!(changed(&b, fork).unwrap(), [Changed::Interface(InterfaceId(3))]);
        assert_eq!(
            changed(&b, a.version()),
            None,
            "b does not descend from a's change"
        );
        assert_eq!(changed(&a, b.version()), None);
        assert_eq!(changed(&Changes::default(), fork), None, "another model");
    }

    #[test]
    fn a_trimmed_log_answers_from_its_current_version_only() {
        let mut c = Changes::default();
        let mut m: Tracked<PrefixListId, u8> = Tracked::default();
        let v0 = c.version();
        m.insert(&mut c, PrefixListId(1), 1);
        let v1 = c.version();
        c.trim();
        assert!(c.is_empty());
        assert_eq!(c.version(), v1);
        assert_eq!(changed(&c, v1).unwrap(), []);
        assert_eq!(changed(&c, v0), None);
        m.insert(&mut c, PrefixListId(2), 2);
        assert_eq!(changed(&c, v1).unwrap(), [Changed::PrefixList(PrefixListId(2))]);
    }
}
