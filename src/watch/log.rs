//! The change log: a bounded ring of entries with strictly increasing positions, each holding what changed and the
//! namespaces as they were right after it.
//!
//! Positions are the resourceVersions of watch events, bookmarks and lists. An entry starts at the etcd revision of
//! the event that made it when that revision is ahead of the log, and right after the previous entry otherwise:
//! namespace and RBAC events come from separate streams whose revisions interleave, and a client resuming from a
//! position must get every later change exactly once. One change can show or hide several spaces at once (a role
//! gaining a rule, an all-namespaces grant), so an entry spans one position per namespace it touches, in name order:
//! every event a watcher gets has a position of its own, and a client cut off between two events of one entry resumes
//! with the rest. The namespaces' own resourceVersions stay on the objects.

use std::collections::VecDeque;
use std::sync::Arc;

use imbl::OrdMap;
use k8s_openapi::api::core::v1::Namespace;

use crate::access::index::AccessChange;

/// Namespaces by name, as of one position (cheap to clone: structurally shared).
pub type Namespaces = OrdMap<String, Arc<Namespace>>;

#[derive(Clone, Debug)]
pub enum Change {
    /// A namespace was created, changed or deleted; `old` is what it was (the entry's snapshot has what it is).
    Namespace { name: String, old: Option<Arc<Namespace>> },
    /// A subject gained or lost access.
    Access(AccessChange),
}

#[derive(Debug)]
pub struct Entry {
    /// The first position of the entry; it spans `slots.len()` positions (at least one).
    pub position: u64,
    pub changes: Vec<Change>,
    /// Every namespace right after this entry.
    pub namespaces: Namespaces,
    /// The namespaces this entry may show, hide or change for some watcher, sorted: the event for `slots[i]` has
    /// position `position + i`.
    pub slots: Arc<[String]>,
}

// === impl Entry ===

impl Entry {
    /// An entry starting at `position`; its slots are derived from its changes and snapshot.
    #[must_use]
    pub fn new(position: u64, changes: Vec<Change>, namespaces: Namespaces) -> Self {
        let mut names: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
        let mut everything = false;
        for change in &changes {
            match change {
                Change::Namespace { name, .. } => {
                    names.insert(name.clone());
                }
                Change::Access(access) => match &access.scope {
                    crate::access::index::Scope::One(name) => {
                        names.insert(name.clone());
                    }
                    crate::access::index::Scope::All => everything = true,
                },
            }
        }
        if everything {
            names.extend(namespaces.keys().cloned());
        }
        Entry {
            position,
            changes,
            namespaces,
            slots: names.into_iter().collect::<Vec<_>>().into(),
        }
    }

    /// The last position the entry spans.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.position + (self.slots.len().max(1) as u64) - 1
    }

    /// The position of the event for namespace `name` in this entry.
    #[must_use]
    pub fn position_of(&self, name: &str) -> u64 {
        let slot = self
            .slots
            .binary_search_by(|s| s.as_str().cmp(name))
            .unwrap_or_else(|i| i);
        self.position + slot as u64
    }
}

/// Where a position falls.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Older than the ring: 410 Expired.
    Expired { oldest: u64 },
    /// Newer than the newest entry.
    TooLarge { current: u64 },
    /// Known: the namespaces before the first later entry, and every entry with events after the position, oldest
    /// first (the first may be partly seen already: its events up to the position are not to be sent again).
    At {
        namespaces: Namespaces,
        later: Vec<&'a Arc<Entry>>,
    },
}

#[derive(Debug)]
pub struct Log {
    capacity: usize,
    entries: VecDeque<Arc<Entry>>,
    /// Position and namespaces just before the oldest entry.
    base_position: u64,
    base_namespaces: Namespaces,
}

// === impl Log ===

impl Log {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Log {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            base_position: 0,
            base_namespaces: Namespaces::new(),
        }
    }

    /// The newest position.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.entries.back().map_or(self.base_position, |e| e.end())
    }

    /// The next position for an event carrying etcd revision `revision` (0 if none).
    #[must_use]
    pub fn next_position(&self, revision: u64) -> u64 {
        revision.max(self.position() + 1)
    }

    /// Appends an entry, dropping the oldest past capacity. Positions must increase.
    pub fn push(&mut self, entry: Arc<Entry>) {
        debug_assert!(entry.position > self.position());
        self.entries.push_back(entry);
        while self.entries.len() > self.capacity {
            if let Some(oldest) = self.entries.pop_front() {
                self.base_position = oldest.end();
                self.base_namespaces = oldest.namespaces.clone();
            }
        }
    }

    /// The namespaces at `position` and the entries after it.
    #[must_use]
    pub fn lookup(&self, position: u64) -> Lookup<'_> {
        if position < self.base_position {
            return Lookup::Expired {
                oldest: self.base_position,
            };
        }
        if position > self.position() {
            return Lookup::TooLarge {
                current: self.position(),
            };
        }
        let split = self.entries.partition_point(|e| e.end() <= position);
        let namespaces = if split == 0 {
            self.base_namespaces.clone()
        } else {
            self.entries[split - 1].namespaces.clone()
        };
        Lookup::At {
            namespaces,
            later: self.entries.range(split..).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(position: u64, names: &[&str]) -> Arc<Entry> {
        let namespaces = names
            .iter()
            .map(|n| ((*n).to_owned(), Arc::new(Namespace::default())))
            .collect();
        Arc::new(Entry::new(position, Vec::new(), namespaces))
    }

    #[test]
    fn positions_follow_revisions_and_never_go_back() {
        let mut log = Log::new(10);
        assert_eq!(log.next_position(100), 100);
        log.push(entry(100, &[]));
        assert_eq!(
            log.next_position(90),
            101,
            "an older revision from another stream still moves forward"
        );
        assert_eq!(log.next_position(0), 101);
        assert_eq!(log.next_position(205), 205);
    }

    #[test]
    fn lookup_returns_the_state_at_a_position_and_what_followed() {
        let mut log = Log::new(3);
        log.push(entry(10, &["a"]));
        log.push(entry(11, &["a", "b"]));
        log.push(entry(15, &["b"]));
        match log.lookup(12) {
            Lookup::At { namespaces, later } => {
                assert_eq!(namespaces.keys().cloned().collect::<Vec<_>>(), ["a", "b"]);
                assert_eq!(later.iter().map(|e| e.position).collect::<Vec<_>>(), [15]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(log.lookup(16), Lookup::TooLarge { current: 15 }));
        log.push(entry(16, &[]));
        // Entry 10 fell out: 10 is now the base, still answerable; older is expired.
        assert!(matches!(log.lookup(10), Lookup::At { .. }));
        assert!(matches!(log.lookup(9), Lookup::Expired { oldest: 10 }));
    }
}
