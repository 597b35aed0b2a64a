//! One user's visibility, derived from the index and movable along the change log: forward (a watch applying new
//! changes) and backward (a resume or a paged list looking at an older position).

use std::collections::HashMap;

use super::index::{AccessChange, Index, Scope, SubjectKey};

/// How many of the user's subjects grant each namespace, and how many grant all.
#[derive(Clone, Debug, Default)]
pub struct UserView {
    subjects: Vec<SubjectKey>,
    all: u32,
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

// === impl UserView ===

impl UserView {
    /// The view at the index's current position.
    #[must_use]
    pub fn new(index: &Index, subjects: Vec<SubjectKey>) -> Self {
        let mut view = UserView {
            subjects,
            all: 0,
            names: HashMap::new(),
        };
        for subject in &view.subjects {
            let (all, names) = index.subject_view(subject);
            view.all += u32::from(all);
            for name in names {
                *view.names.entry(name).or_default() += 1;
            }
        }
        view
    }

    #[must_use]
    pub fn sees(&self, namespace: &str) -> bool {
        self.all > 0 || self.names.contains_key(namespace)
    }

    #[must_use]
    pub fn sees_all(&self) -> bool {
        self.all > 0
    }

    /// Namespaces granted one by one (whether or not they exist), unordered.
    pub fn granted_names(&self) -> impl Iterator<Item = &String> {
        self.names.keys()
    }

    /// Applies a change going forward.
    pub fn apply(&mut self, change: &AccessChange) -> Effect {
        self.shift(change, change.gained)
    }

    /// Takes a change back, going backward in the log.
    pub fn undo(&mut self, change: &AccessChange) {
        self.shift(change, !change.gained);
    }

    fn shift(&mut self, change: &AccessChange, add: bool) -> Effect {
        if !self.subjects.contains(&change.subject) {
            return Effect::None;
        }
        match &change.scope {
            Scope::All => {
                if add {
                    self.all += 1;
                } else {
                    self.all = self.all.saturating_sub(1);
                }
                Effect::All
            }
            Scope::One(name) => {
                if add {
                    *self.names.entry(name.clone()).or_default() += 1;
                } else if let Some(count) = self.names.get_mut(name) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        self.names.remove(name);
                    }
                }
                Effect::One(name.clone())
            }
        }
    }
}
