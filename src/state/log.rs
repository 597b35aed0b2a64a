//! The change log: a bounded ring of entries, one position each, each holding what changed: a namespace's value before
//! the change, and the values right after it of the namespaces the entry touches. The namespaces at an older position
//! are the current ones with the later entries taken back, so an entry costs memory for what changed, never a copy of
//! the namespaces (each entry used to keep a structurally shared snapshot: ~5.9 KB of copied tree path apiece).
//!
//! Positions are the resourceVersions of lists, continue tokens, bookmarks and watch events. They count this server
//! process's changes: `epoch * 2^32 + n` for its n-th entry, the epoch drawn at random when the process starts. Why
//! not etcd revisions, which every replica shares: namespace and RBAC events come from separate watch streams, and
//! kube-apiserver orders events only within one stream, so two replicas apply the same events in different orders and
//! see different intermediate views; a position from one cannot be answered exactly by the other. Waiting until every
//! stream has passed a revision would order them, but an idle stream reports progress only in bookmarks about a minute
//! apart. So a position is exact only in the process that made it, says which process that is, and anywhere else —
//! another replica, a restarted one, a made-up number — it is answered 410 Expired: client-go relists and is exact
//! again. The namespaces' own resourceVersions stay on the objects, for optimistic concurrency.
//!
//! One change (a role gaining a rule, an all-namespaces grant) can show or hide many spaces at once: it is still one
//! entry and one position, so positions move by changes, never by how many namespaces there are. Its events go out in
//! namespace-name order; every one but a watcher's last of the entry carries `"<position>.<namespace>"`, so a client
//! cut off in the middle resumes with exactly the rest (it names only a space that client was shown).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use imbl::OrdMap;
use k8s_openapi::api::core::v1::Namespace;

use crate::access::index::{AccessChange, Scope};
use crate::access::view::{space_name, Effect, UserView};

/// Namespaces by name, as of one position (cheap to clone: structurally shared).
pub type Namespaces = OrdMap<String, Arc<Namespace>>;

/// Positions of one process share their high bits: the epoch.
const EPOCH_SHIFT: u32 = 32;
/// Epochs stay below 2^21, so positions stay below 2^53 and survive clients that read numbers as doubles.
const EPOCH_LIMIT: u64 = 1 << 21;

#[derive(Clone, Debug)]
pub enum Change {
    /// A namespace was created, changed or deleted; `old` is what it was (the entry's snapshot has what it is).
    Namespace { name: String, old: Option<Arc<Namespace>> },
    /// A subject gained or lost access.
    Access(AccessChange),
    /// A subject gained or lost access in a connected cluster, to a namespace there by its own name (the space is
    /// `<cluster>.<namespace>`), or to all of that cluster's.
    Connected { cluster: String, change: AccessChange },
}

// === impl Change ===

impl Change {
    /// What this change does to one user's view, going forward (a namespace change does nothing to a view).
    pub fn apply_to(&self, view: &mut UserView) -> Effect {
        match self {
            Change::Access(change) => view.apply(change),
            Change::Connected { cluster, change } => view.apply_connected(cluster, change),
            Change::Namespace { .. } => Effect::None,
        }
    }
}

impl Change {
    /// What this change would do to one user's view, without doing it.
    #[must_use]
    pub fn effect_on(&self, view: &UserView) -> Effect {
        match self {
            Change::Access(change) => view.effect(None, change),
            Change::Connected { cluster, change } => view.effect(Some(cluster), change),
            Change::Namespace { .. } => Effect::None,
        }
    }
}

/// Takes `later` (entries, oldest first) back from `view`, newest change first: the view as it was before them.
pub fn undo(view: &mut UserView, later: &[&Arc<Entry>]) {
    for entry in later.iter().rev() {
        undo_entry(view, entry);
    }
}

/// Takes one entry back from `view`.
pub fn undo_entry(view: &mut UserView, entry: &Entry) {
    for change in entry.changes.iter().rev() {
        match change {
            Change::Access(change) => view.undo(change),
            Change::Connected { cluster, change } => view.undo_connected(cluster, change),
            Change::Namespace { .. } => {}
        }
    }
}

/// Takes `later` (entries, oldest first) back from `namespaces`: the namespaces as they were before them.
pub fn undo_namespaces(namespaces: &mut Namespaces, later: &[&Arc<Entry>]) {
    for entry in later.iter().rev() {
        for change in entry.changes.iter().rev() {
            if let Change::Namespace { name, old } = change {
                match old {
                    Some(old) => namespaces.insert(name.clone(), old.clone()),
                    None => namespaces.remove(name),
                };
            }
        }
    }
}

#[derive(Debug)]
pub struct Entry {
    pub position: u64,
    pub changes: Vec<Change>,
    after: After,
}

/// The namespaces right after an entry that a watcher may ask about.
#[derive(Debug)]
enum After {
    /// By name (sorted): those its changes name (a namespace changed, or a grant of one namespace).
    Touched(Vec<(String, Option<Arc<Namespace>>)>),
    /// All of them: a change granted or revoked a whole cluster (structurally shared, and rare).
    Every(Namespaces),
}

// === impl Entry ===

impl Entry {
    /// The entry of `changes`, `namespaces` being every namespace right after them.
    #[must_use]
    pub fn new(position: u64, changes: Vec<Change>, namespaces: &Namespaces) -> Self {
        let everything = changes.iter().any(|change| {
            matches!(
                change,
                Change::Access(AccessChange { scope: Scope::All, .. })
                    | Change::Connected {
                        change: AccessChange { scope: Scope::All, .. },
                        ..
                    }
            )
        });
        let after = if everything {
            After::Every(namespaces.clone())
        } else {
            let mut names: Vec<String> = changes
                .iter()
                .filter_map(|change| match change {
                    Change::Namespace { name, .. } => Some(name.clone()),
                    Change::Access(AccessChange {
                        scope: Scope::One(name),
                        ..
                    }) => Some(name.clone()),
                    Change::Connected {
                        cluster,
                        change:
                            AccessChange {
                                scope: Scope::One(name),
                                ..
                            },
                    } => Some(space_name(cluster, name)),
                    Change::Access(_) | Change::Connected { .. } => None,
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            let touched = names
                .into_iter()
                .map(|name| {
                    let now = namespaces.get(&name).cloned();
                    (name, now)
                })
                .collect();
            After::Touched(touched)
        };
        Entry {
            position,
            changes,
            after,
        }
    }

    /// Namespace `name` right after this entry, for a name the entry touches (any, when it touches them all).
    #[must_use]
    pub fn namespace(&self, name: &str) -> Option<&Arc<Namespace>> {
        match &self.after {
            After::Touched(touched) => touched
                .binary_search_by(|(touched, _)| touched.as_str().cmp(name))
                .ok()
                .and_then(|at| touched[at].1.as_ref()),
            After::Every(namespaces) => namespaces.get(name),
        }
    }

    /// Every namespace's name right after this entry, when one of its changes touches them all.
    pub fn every_name(&self) -> impl Iterator<Item = &String> {
        match &self.after {
            After::Every(namespaces) => Some(namespaces.keys()),
            After::Touched(_) => None,
        }
        .into_iter()
        .flatten()
    }
}

/// Where a client stands, as a resourceVersion says: every entry through `after`, and — when it was cut off inside
/// the next entry — that entry's events through namespace `through`. Ordered as the client moves: `P-1` < `P.a` <
/// `P.b` < `P`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub after: u64,
    pub through: Option<String>,
}

// === impl Position ===

impl Position {
    /// After the whole of entry `position`.
    #[must_use]
    pub fn at(position: u64) -> Self {
        Position {
            after: position,
            through: None,
        }
    }

    /// Inside entry `position`, through the event for namespace `name`.
    #[must_use]
    pub fn inside(position: u64, name: &str) -> Self {
        Position {
            after: position.saturating_sub(1),
            through: Some(name.to_owned()),
        }
    }

    /// A resourceVersion as this server writes them, or `None`.
    #[must_use]
    pub fn parse(rv: &str) -> Option<Self> {
        match rv.split_once('.') {
            None => rv.parse().ok().map(Position::at),
            Some((position, name)) if !name.is_empty() => {
                let position: u64 = position.parse().ok()?;
                (position > 0).then(|| Position::inside(position, name))
            }
            Some(_) => None,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.through {
            None => write!(f, "{}", self.after),
            Some(name) => write!(f, "{}.{name}", self.after + 1),
        }
    }
}

/// Where a position falls.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// Older than the ring: 410 Expired.
    Expired { oldest: u64 },
    /// Made by another process (another replica, an earlier run) or by nobody: 410 Expired.
    Foreign { oldest: u64 },
    /// Newer than the newest entry.
    TooLarge { current: u64 },
    /// Known: the namespaces right after the position (the current ones with every later entry taken back), and every
    /// later entry, oldest first.
    At {
        namespaces: Namespaces,
        later: Vec<&'a Arc<Entry>>,
    },
}

#[derive(Debug)]
pub struct Log {
    capacity: usize,
    epoch: u64,
    entries: VecDeque<Arc<Entry>>,
    /// The position just before the oldest entry.
    base_position: u64,
}

// === impl Log ===

impl Log {
    /// A log for this process, under a fresh random epoch.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self::with_epoch(capacity, random_epoch())
    }

    /// A log whose positions start after `epoch * 2^32` (`epoch` is taken modulo 2^21, and 0 becomes 1).
    #[must_use]
    pub fn with_epoch(capacity: usize, epoch: u64) -> Self {
        let epoch = (epoch % EPOCH_LIMIT).max(1);
        Log {
            capacity: capacity.max(1),
            epoch,
            entries: VecDeque::new(),
            base_position: epoch << EPOCH_SHIFT,
        }
    }

    /// The newest position.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.entries.back().map_or(self.base_position, |e| e.position)
    }

    /// The oldest position still answerable.
    #[must_use]
    pub fn oldest(&self) -> u64 {
        self.base_position
    }

    /// The position of the next entry.
    #[must_use]
    pub fn next_position(&self) -> u64 {
        self.position() + 1
    }

    /// Whether `position` was made by this process.
    #[must_use]
    pub fn is_own(&self, position: u64) -> bool {
        position >> EPOCH_SHIFT == self.epoch
    }

    /// Appends an entry, dropping the oldest past capacity. Positions must increase.
    pub fn push(&mut self, entry: Arc<Entry>) {
        debug_assert!(entry.position > self.position());
        self.entries.push_back(entry);
        while self.entries.len() > self.capacity {
            if let Some(oldest) = self.entries.pop_front() {
                self.base_position = oldest.position;
            }
        }
    }

    /// The namespaces right after `position` and the entries after it; `current` are the namespaces now (after the
    /// newest entry).
    #[must_use]
    pub fn lookup(&self, position: u64, current: &Namespaces) -> Lookup<'_> {
        if !self.is_own(position) {
            return Lookup::Foreign {
                oldest: self.base_position,
            };
        }
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
        let split = self.entries.partition_point(|e| e.position <= position);
        let later: Vec<&Arc<Entry>> = self.entries.range(split..).collect();
        let mut namespaces = current.clone();
        undo_namespaces(&mut namespaces, &later);
        Lookup::At { namespaces, later }
    }
}

fn random_epoch() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    let drawn = ring::rand::SystemRandom::new().fill(&mut bytes).is_ok();
    let random = u64::from_le_bytes(bytes);
    if drawn {
        random
    } else {
        // No randomness: the clock still tells processes apart.
        u64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or_default() ^ u64::from(std::process::id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry of one namespace change: `name` made (`old` None) or deleted (`old` its last value).
    fn entry(position: u64, name: &str, old: Option<Arc<Namespace>>, current: &mut Namespaces) -> Arc<Entry> {
        match &old {
            None => current.insert(name.to_owned(), Arc::new(Namespace::default())),
            Some(_) => current.remove(name),
        };
        let change = Change::Namespace {
            name: name.to_owned(),
            old,
        };
        Arc::new(Entry::new(position, vec![change], current))
    }

    const BASE: u64 = 7 << EPOCH_SHIFT;

    #[test]
    fn positions_count_changes_under_the_epoch() {
        let mut log = Log::with_epoch(10, 7);
        assert_eq!(log.position(), BASE);
        assert_eq!(log.next_position(), BASE + 1);
        log.push(entry(BASE + 1, "a", None, &mut Namespaces::new()));
        assert_eq!(log.next_position(), BASE + 2);
        assert!(log.is_own(BASE + 1));
        assert!(
            !log.is_own(2),
            "a small number (an etcd revision, or another epoch) is not ours"
        );
        assert!(!log.is_own((8 << EPOCH_SHIFT) + 1));
        assert!(Log::new(1).position() < 1 << 53, "positions stay exact as doubles");
    }

    #[test]
    fn lookup_returns_the_state_at_a_position_and_what_followed() {
        let mut log = Log::with_epoch(3, 7);
        let mut current = Namespaces::new();
        log.push(entry(BASE + 1, "a", None, &mut current));
        log.push(entry(BASE + 2, "b", None, &mut current));
        let a = current.get("a").cloned();
        log.push(entry(BASE + 3, "a", a.clone(), &mut current));
        let names = |lookup: Lookup<'_>| match lookup {
            Lookup::At { namespaces, later } => (
                namespaces.keys().cloned().collect::<Vec<_>>(),
                later.iter().map(|e| e.position).collect::<Vec<_>>(),
            ),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            names(log.lookup(BASE + 2, &current)),
            (vec!["a".to_owned(), "b".to_owned()], vec![BASE + 3])
        );
        assert_eq!(names(log.lookup(BASE + 3, &current)), (vec!["b".to_owned()], vec![]));
        let at_two = log.lookup(BASE + 2, &current);
        let Lookup::At { namespaces, .. } = at_two else {
            panic!("{at_two:?}");
        };
        assert!(
            Arc::ptr_eq(&namespaces["a"], a.as_ref().expect("made")),
            "a deleted namespace comes back as it was"
        );
        assert!(matches!(log.lookup(BASE + 4, &current), Lookup::TooLarge { current } if current == BASE + 3));
        log.push(entry(BASE + 4, "c", None, &mut current));
        // Entry 1 fell out: its position is now the base, still answerable; older is expired; other epochs are foreign.
        assert_eq!(names(log.lookup(BASE + 1, &current)).0, ["a"]);
        assert!(matches!(log.lookup(BASE, &current), Lookup::Expired { oldest } if oldest == BASE + 1));
        assert!(matches!(log.lookup(2, &current), Lookup::Foreign { .. }));
        assert!(matches!(
            log.lookup((9 << EPOCH_SHIFT) + 2, &current),
            Lookup::Foreign { .. }
        ));
    }

    #[test]
    fn an_entry_answers_for_the_namespaces_it_touches_and_for_all_after_a_cluster_wide_grant() {
        let mut current = Namespaces::new();
        current.insert("other".to_owned(), Arc::new(Namespace::default()));
        let one = entry(1, "a", None, &mut current);
        assert!(one.namespace("a").is_some());
        assert!(one.namespace("other").is_none(), "not touched: not kept");
        assert_eq!(one.every_name().count(), 0);
        let grant = |scope| AccessChange {
            subject: crate::access::index::SubjectKey::Group("g".to_owned()),
            scope,
            gained: true,
        };
        let named = Entry::new(2, vec![Change::Access(grant(Scope::One("other".to_owned())))], &current);
        assert!(named.namespace("other").is_some());
        let all = Entry::new(3, vec![Change::Access(grant(Scope::All))], &current);
        assert_eq!(all.every_name().cloned().collect::<Vec<_>>(), ["a", "other"]);
        assert!(all.namespace("other").is_some());
    }

    #[test]
    fn resource_versions_round_trip() {
        for rv in ["30064771073", "30064771074.team-a-dev"] {
            let position = Position::parse(rv).expect("parses");
            assert_eq!(position.to_string(), rv);
        }
        assert_eq!(
            Position::parse("12.dev"),
            Some(Position {
                after: 11,
                through: Some("dev".to_owned())
            })
        );
        for bad in ["", "x", "12.", "0.dev", "-1", ".dev"] {
            assert_eq!(Position::parse(bad), None, "{bad:?}");
        }
    }
}
