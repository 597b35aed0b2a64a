//! One user's visibility, derived from the index of each cluster and movable along the change log: forward (a watch
//! applying new changes) and backward (a resume or a paged list looking at an older position). A connected cluster's
//! grants count only for its own spaces (`<cluster>.<namespace>`), never for another cluster's.
//!
//! Open watches share views: a view is a function of the user's subjects and a log position, so every watch of one
//! user at one position holds the same one ([`SharedViews`]), instead of a copy of every space its user may see each.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::index::{AccessChange, Index, Scope, SubjectKey};

/// The index subjects a user matches: in this cluster (as the access mode says), and in connected clusters (its name
/// and groups, which their RBAC decides on).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Subjects {
    pub local: Vec<SubjectKey>,
    pub connected: Vec<SubjectKey>,
}

/// How many of the user's subjects grant each space, and how many grant all of a cluster's.
#[derive(Clone, Debug, Default)]
pub struct UserView {
    subjects: Subjects,
    all: u32,
    all_in: HashMap<String, u32>,
    names: HashMap<String, u32>,
}

/// What a change did to one user's visibility.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing this user can notice.
    None,
    /// These namespaces may have become visible or invisible.
    One(String),
    /// Every namespace may have changed (an all-namespaces grant came or went).
    All,
}

/// The space name of namespace `namespace` in connected cluster `cluster`.
#[must_use]
pub fn space_name(cluster: &str, namespace: &str) -> String {
    format!("{cluster}.{namespace}")
}

/// The connected cluster and namespace a space name stands for; `None` for this cluster's namespaces (namespace names
/// are DNS labels: a dot always means another cluster).
#[must_use]
pub fn connected_part(space: &str) -> Option<(&str, &str)> {
    space.split_once('.')
}

// === impl UserView ===

impl UserView {
    /// The view at the indexes' current positions: this cluster's, and each connected cluster's by name.
    #[must_use]
    pub fn new<'a>(
        index: &Index,
        connected: impl IntoIterator<Item = (&'a str, &'a Index)>,
        subjects: Subjects,
    ) -> Self {
        let mut view = UserView {
            subjects,
            ..UserView::default()
        };
        for subject in &view.subjects.local {
            let (all, names) = index.subject_view(subject);
            view.all += u32::from(all);
            for name in names {
                *view.names.entry(name).or_default() += 1;
            }
        }
        for (cluster, index) in connected {
            for subject in &view.subjects.connected {
                let (all, names) = index.subject_view(subject);
                if all {
                    *view.all_in.entry(cluster.to_owned()).or_default() += 1;
                }
                for name in names {
                    *view.names.entry(space_name(cluster, &name)).or_default() += 1;
                }
            }
        }
        view
    }

    #[must_use]
    pub fn sees(&self, space: &str) -> bool {
        let all = match connected_part(space) {
            None => self.all > 0,
            Some((cluster, _)) => self.all_in.get(cluster).is_some_and(|n| *n > 0),
        };
        all || self.names.contains_key(space)
    }

    /// Whether some cluster's every namespace is granted: then the candidates are all spaces, not the granted names.
    #[must_use]
    pub fn sees_all_of_a_cluster(&self) -> bool {
        self.all > 0 || self.all_in.values().any(|n| *n > 0)
    }

    /// Spaces granted one by one (whether or not they exist), unordered.
    pub fn granted_names(&self) -> impl Iterator<Item = &String> {
        self.names.keys()
    }

    #[must_use]
    pub fn subjects(&self) -> &Subjects {
        &self.subjects
    }

    /// What a change of this cluster (`cluster` `None`) or of a connected one would do to this view, without doing it.
    #[must_use]
    pub fn effect(&self, cluster: Option<&str>, change: &AccessChange) -> Effect {
        let subjects = match cluster {
            None => &self.subjects.local,
            Some(_) => &self.subjects.connected,
        };
        if !subjects.contains(&change.subject) {
            return Effect::None;
        }
        match (&change.scope, cluster) {
            (Scope::All, _) => Effect::All,
            (Scope::One(name), None) => Effect::One(name.clone()),
            (Scope::One(name), Some(cluster)) => Effect::One(space_name(cluster, name)),
        }
    }

    /// Applies a change of this cluster going forward.
    pub fn apply(&mut self, change: &AccessChange) -> Effect {
        self.shift(None, change, change.gained)
    }

    /// Takes a change of this cluster back, going backward in the log.
    pub fn undo(&mut self, change: &AccessChange) {
        self.shift(None, change, !change.gained);
    }

    /// Applies a change of connected cluster `cluster` going forward.
    pub fn apply_connected(&mut self, cluster: &str, change: &AccessChange) -> Effect {
        self.shift(Some(cluster), change, change.gained)
    }

    /// Takes a change of connected cluster `cluster` back.
    pub fn undo_connected(&mut self, cluster: &str, change: &AccessChange) {
        self.shift(Some(cluster), change, !change.gained);
    }

    fn shift(&mut self, cluster: Option<&str>, change: &AccessChange, add: bool) -> Effect {
        let subjects = match cluster {
            None => &self.subjects.local,
            Some(_) => &self.subjects.connected,
        };
        if !subjects.contains(&change.subject) {
            return Effect::None;
        }
        match &change.scope {
            Scope::All => {
                let count = match cluster {
                    None => &mut self.all,
                    Some(cluster) => self.all_in.entry(cluster.to_owned()).or_default(),
                };
                if add {
                    *count += 1;
                } else {
                    *count = count.saturating_sub(1);
                }
                Effect::All
            }
            Scope::One(name) => {
                let name = match cluster {
                    None => name.clone(),
                    Some(cluster) => space_name(cluster, name),
                };
                if add {
                    *self.names.entry(name.clone()).or_default() += 1;
                } else if let Some(count) = self.names.get_mut(&name) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.names.remove(&name);
                    }
                }
                Effect::One(name)
            }
        }
    }
}

/// The views of open watches, each held once per user and position: a watch that moves its view to a position where
/// another watch of the same user already holds one takes that one and drops its own.
#[derive(Debug, Default)]
pub struct SharedViews {
    views: Mutex<Pool>,
}

#[derive(Debug, Default)]
struct Pool {
    /// The newest view held of each user's subjects, and its position.
    by_subjects: HashMap<Subjects, (u64, Weak<UserView>)>,
    /// Entries at the last sweep of views nobody holds.
    swept_at: usize,
}

// === impl SharedViews ===

impl SharedViews {
    /// The view of `subjects` at `position`, if a watch holds it.
    #[must_use]
    pub fn get(&self, subjects: &Subjects, position: u64) -> Option<Arc<UserView>> {
        let pool = self.views.lock();
        let (held_at, view) = pool.by_subjects.get(subjects)?;
        (*held_at == position).then(|| view.upgrade()).flatten()
    }

    /// `view`, which is at `position`, or the equal one a watch already holds there.
    #[must_use]
    pub fn share(&self, position: u64, view: Arc<UserView>) -> Arc<UserView> {
        let mut pool = self.views.lock();
        if let Some((held_at, held)) = pool.by_subjects.get(&view.subjects) {
            if *held_at == position {
                if let Some(held) = held.upgrade() {
                    return held;
                }
            }
            if *held_at > position && held.strong_count() > 0 {
                // A newer one is held: this watch is behind, and keeps its own until it gets there.
                return view;
            }
        }
        pool.by_subjects
            .insert(view.subjects.clone(), (position, Arc::downgrade(&view)));
        if pool.by_subjects.len() >= 2 * pool.swept_at.max(64) {
            pool.by_subjects.retain(|_, (_, view)| view.strong_count() > 0);
            pool.swept_at = pool.by_subjects.len();
        }
        view
    }
}
