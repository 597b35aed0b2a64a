//! The incremental access index: for every subject (user or group), which namespaces RBAC lets it `get`, kept current
//! one RBAC event at a time. Each update reports the (subject, scope) pairs that gained or lost access, so watches can
//! tell every affected user without re-evaluating anything else.
//!
//! Counts, not flags: a subject may be granted the same namespace by several bindings; it loses access only when the
//! last one goes. Updates add new grants before removing old ones, so a binding that is edited without changing its
//! effect reports nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::grants_get_namespaces;
use crate::authn::User;

/// Who a binding names, reduced to what RBAC matches on: ServiceAccounts are users named
/// `system:serviceaccount:<ns>:<name>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubjectKey {
    User(String),
    Group(String),
    /// A whole identity (name, uid, groups, extra) whose access kube-apiserver answered by SubjectAccessReview
    /// (`--access-mode=sar`); never named by a binding.
    Reviewed(String),
}

/// A grant of one namespace, or of all.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    All,
    One(String),
}

/// A subject crossed from no access to access (`gained`) or back, for a scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessChange {
    pub subject: SubjectKey,
    pub scope: Scope,
    pub gained: bool,
}

/// What a role's rules grant of `get namespaces`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Grant {
    #[default]
    Nothing,
    All,
    Names(BTreeSet<String>),
}

impl Grant {
    fn of(rules: Option<&[PolicyRule]>) -> Self {
        let mut grant = Grant::Nothing;
        for rule in rules.unwrap_or_default().iter().filter(|r| grants_get_namespaces(r)) {
            match rule.resource_names.as_deref() {
                None | Some([]) => return Grant::All,
                Some(names) => {
                    if let Grant::Nothing = grant {
                        grant = Grant::Names(BTreeSet::new());
                    }
                    if let Grant::Names(set) = &mut grant {
                        set.extend(names.iter().cloned());
                    }
                }
            }
        }
        grant
    }

    fn allows(&self, namespace: &str) -> bool {
        match self {
            Grant::Nothing => false,
            Grant::All => true,
            Grant::Names(names) => names.contains(namespace),
        }
    }
}

type NamespacedKey = (String, String);
/// What a binding grants each of its subjects.
type Contribution = Box<[Scope]>;

/// One binding as the index keeps it: 30,000 of them at 10,000 namespaces, so kept small (a sorted slice rather than
/// a set of subjects, the role's kind as a tag).
#[derive(Clone, Debug)]
struct BindingState {
    role_kind: RoleKind,
    role_name: String,
    /// Sorted, without duplicates.
    subjects: Box<[SubjectKey]>,
    contribution: Contribution,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RoleKind {
    ClusterRole,
    Role,
    /// Anything else a roleRef may say: grants nothing.
    Other,
}

impl RoleKind {
    fn of(kind: &str) -> Self {
        match kind {
            "ClusterRole" => RoleKind::ClusterRole,
            "Role" => RoleKind::Role,
            _ => RoleKind::Other,
        }
    }
}

impl BindingState {
    fn new(role_ref: &RoleRef, subjects: Option<&[Subject]>, namespace: &str) -> Self {
        BindingState {
            role_kind: RoleKind::of(&role_ref.kind),
            role_name: role_ref.name.clone(),
            subjects: subject_keys(subjects, namespace).into_iter().collect(),
            contribution: Box::default(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct SubjectGrants {
    all: u32,
    names: HashMap<String, u32>,
}

/// The index. One writer applies events; readers query under a read lock.
#[derive(Debug, Default)]
pub struct Index {
    cluster_role_grants: HashMap<String, Grant>,
    role_grants: HashMap<NamespacedKey, Grant>,
    role_bindings: HashMap<NamespacedKey, BindingState>,
    cluster_role_bindings: HashMap<String, BindingState>,
    by_subject: HashMap<SubjectKey, SubjectGrants>,
    by_namespace: HashMap<String, HashMap<SubjectKey, u32>>,
    role_bindings_by_cluster_role: HashMap<String, HashSet<NamespacedKey>>,
    role_bindings_by_role: HashMap<NamespacedKey, HashSet<NamespacedKey>>,
    cluster_role_bindings_by_cluster_role: HashMap<String, HashSet<String>>,
}

/// The `user.extra` keys that name one credential rather than who holds it: kube-apiserver adds
/// `authentication.kubernetes.io/credential-id` (the token's `JTI=...`, or an x509 serial) to every token it
/// authenticates, so each `kubectl create token` of one ServiceAccount would otherwise be an identity of its own.
/// kube documents it as identifying the credential for audit, not for authorization. The pod and node extras of a
/// bound token (`authentication.kubernetes.io/pod-name`, `pod-uid`, `node-name`, `node-uid`) are kept: they are the
/// same for every token of one pod, and an authorizer may decide by them.
pub const PER_CREDENTIAL_EXTRA: &[&str] = &["authentication.kubernetes.io/credential-id"];

/// The index subject of `user`'s whole identity, under which `--access-mode=sar` keeps the answers of
/// SubjectAccessReviews: name, uid, groups (as a set) and extra without [`PER_CREDENTIAL_EXTRA`], so all the tokens of
/// one account share one set of answers.
#[must_use]
pub fn identity_subject(user: &User) -> SubjectKey {
    let mut groups = user.groups.clone();
    groups.sort();
    groups.dedup();
    let extra: BTreeMap<&String, &Vec<String>> = user
        .extra
        .iter()
        .filter(|(key, _)| !PER_CREDENTIAL_EXTRA.contains(&key.as_str()))
        .collect();
    SubjectKey::Reviewed(serde_json::json!([user.name, user.uid, groups, extra]).to_string())
}

/// The subject keys a user matches: its name and each of its groups.
#[must_use]
pub fn subjects_of(user: &User) -> Vec<SubjectKey> {
    // Deduplicated: a group listed twice (two X-Remote-Group lines, or O twice in a certificate) is one subject, or a
    // view would count its grants twice and miss their revocation.
    let mut subjects: Vec<SubjectKey> = std::iter::once(SubjectKey::User(user.name.clone()))
        .chain(user.groups.iter().cloned().map(SubjectKey::Group))
        .collect();
    subjects.sort();
    subjects.dedup();
    subjects
}

/// RBAC subjects as keys; `namespace` is the binding's ("" for cluster bindings), the default for ServiceAccounts.
pub fn subject_keys(subjects: Option<&[Subject]>, namespace: &str) -> BTreeSet<SubjectKey> {
    subjects
        .unwrap_or_default()
        .iter()
        .filter_map(|s| match s.kind.as_str() {
            "User" => Some(SubjectKey::User(s.name.clone())),
            "Group" => Some(SubjectKey::Group(s.name.clone())),
            "ServiceAccount" => {
                let ns = s.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or(namespace);
                (!ns.is_empty()).then(|| SubjectKey::User(format!("system:serviceaccount:{ns}:{}", s.name)))
            }
            _ => None,
        })
        .collect()
}

/// Whether `user` is one of `subjects` (by name, group or ServiceAccount), as RBAC matches a ClusterRoleBinding.
#[must_use]
pub fn is_subject(subjects: &[Subject], user: &User) -> bool {
    let keys = subject_keys(Some(subjects), "");
    subjects_of(user).iter().any(|s| keys.contains(s))
}

fn meta_key(namespace: Option<&str>, name: Option<&str>) -> Option<NamespacedKey> {
    Some((namespace?.to_owned(), name?.to_owned()))
}

// === impl Index ===

impl Index {
    // --- queries ---

    /// Whether any of `subjects` may get `namespace`.
    #[must_use]
    pub fn may_get(&self, subjects: &[SubjectKey], namespace: &str) -> bool {
        self.has_all(subjects)
            || self
                .by_namespace
                .get(namespace)
                .is_some_and(|granted| subjects.iter().any(|s| granted.contains_key(s)))
    }

    /// Whether any of `subjects` may get every namespace.
    #[must_use]
    pub fn has_all(&self, subjects: &[SubjectKey]) -> bool {
        subjects
            .iter()
            .any(|s| self.by_subject.get(s).is_some_and(|g| g.all > 0))
    }

    /// The namespaces granted one by one to any of `subjects` (existing or not).
    #[cfg(test)]
    #[must_use]
    pub fn granted_names(&self, subjects: &[SubjectKey]) -> BTreeSet<String> {
        subjects
            .iter()
            .filter_map(|s| self.by_subject.get(s))
            .flat_map(|g| g.names.keys().cloned())
            .collect()
    }

    /// Per subject: whether it has all namespaces, and the names it has one by one.
    #[must_use]
    pub fn subject_view(&self, subject: &SubjectKey) -> (bool, HashSet<String>) {
        self.by_subject.get(subject).map_or_else(
            || (false, HashSet::new()),
            |g| (g.all > 0, g.names.keys().cloned().collect()),
        )
    }

    /// Every grant the index holds, as losses: what dropping the whole index means to the views built from it.
    #[must_use]
    pub fn revoke_all(&self) -> Vec<AccessChange> {
        let mut changes = Vec::new();
        for (subject, grants) in &self.by_subject {
            let lost = |scope| AccessChange {
                subject: subject.clone(),
                scope,
                gained: false,
            };
            if grants.all > 0 {
                changes.push(lost(Scope::All));
            }
            changes.extend(grants.names.keys().map(|name| lost(Scope::One(name.clone()))));
        }
        changes
    }

    // --- updates ---

    pub fn apply_cluster_role(&mut self, role: &ClusterRole, changes: &mut Vec<AccessChange>) {
        let Some(name) = role.metadata.name.clone() else {
            return;
        };
        let grant = Grant::of(role.rules.as_deref());
        self.set_cluster_role_grant(name, grant, changes);
    }

    pub fn delete_cluster_role(&mut self, name: &str, changes: &mut Vec<AccessChange>) {
        self.set_cluster_role_grant(name.to_owned(), Grant::Nothing, changes);
    }

    pub fn apply_role(&mut self, role: &Role, changes: &mut Vec<AccessChange>) {
        let Some(key) = meta_key(role.metadata.namespace.as_deref(), role.metadata.name.as_deref()) else {
            return;
        };
        let grant = Grant::of(role.rules.as_deref());
        self.set_role_grant(key, grant, changes);
    }

    pub fn delete_role(&mut self, namespace: &str, name: &str, changes: &mut Vec<AccessChange>) {
        self.set_role_grant((namespace.to_owned(), name.to_owned()), Grant::Nothing, changes);
    }

    pub fn apply_role_binding(&mut self, binding: &RoleBinding, changes: &mut Vec<AccessChange>) {
        let Some(key) = meta_key(binding.metadata.namespace.as_deref(), binding.metadata.name.as_deref()) else {
            return;
        };
        let state = BindingState::new(&binding.role_ref, binding.subjects.as_deref(), &key.0);
        self.replace_role_binding(key, Some(state), changes);
    }

    pub fn delete_role_binding(&mut self, namespace: &str, name: &str, changes: &mut Vec<AccessChange>) {
        self.replace_role_binding((namespace.to_owned(), name.to_owned()), None, changes);
    }

    pub fn apply_cluster_role_binding(&mut self, binding: &ClusterRoleBinding, changes: &mut Vec<AccessChange>) {
        let Some(name) = binding.metadata.name.clone() else {
            return;
        };
        let state = BindingState::new(&binding.role_ref, binding.subjects.as_deref(), "");
        self.replace_cluster_role_binding(name, Some(state), changes);
    }

    pub fn delete_cluster_role_binding(&mut self, name: &str, changes: &mut Vec<AccessChange>) {
        self.replace_cluster_role_binding(name.to_owned(), None, changes);
    }

    /// Records what a SubjectAccessReview answered for a reviewed identity: at most one grant per scope.
    pub fn set_reviewed(
        &mut self,
        subject: &SubjectKey,
        scope: &Scope,
        allowed: bool,
        changes: &mut Vec<AccessChange>,
    ) {
        let grants = self.by_subject.get(subject);
        let held = match scope {
            Scope::All => grants.is_some_and(|g| g.all > 0),
            Scope::One(name) => grants.is_some_and(|g| g.names.contains_key(name)),
        };
        let (subjects, scopes) = (std::slice::from_ref(subject), std::slice::from_ref(scope));
        match (allowed, held) {
            (true, false) => self.add(subjects, scopes, changes),
            (false, true) => self.remove(subjects, scopes, changes),
            _ => {}
        }
    }

    /// Drops every grant of `subject` (a reviewed identity nobody uses any more).
    pub fn forget(&mut self, subject: &SubjectKey, changes: &mut Vec<AccessChange>) {
        let Some(grants) = self.by_subject.get(subject) else {
            return;
        };
        let mut scopes: Vec<Scope> = grants
            .names
            .iter()
            .flat_map(|(name, count)| std::iter::repeat_n(Scope::One(name.clone()), *count as usize))
            .collect();
        scopes.extend(std::iter::repeat_n(Scope::All, grants.all as usize));
        self.remove(std::slice::from_ref(subject), &scopes, changes);
    }

    /// Names of every RBAC object held, by kind, for relists: what is not in a fresh list must be deleted.
    #[must_use]
    pub fn role_binding_keys(&self) -> Vec<NamespacedKey> {
        self.role_bindings.keys().cloned().collect()
    }

    #[must_use]
    pub fn role_keys(&self) -> Vec<NamespacedKey> {
        self.role_grants.keys().cloned().collect()
    }

    #[must_use]
    pub fn cluster_role_names(&self) -> Vec<String> {
        self.cluster_role_grants.keys().cloned().collect()
    }

    #[must_use]
    pub fn cluster_role_binding_names(&self) -> Vec<String> {
        self.cluster_role_bindings.keys().cloned().collect()
    }

    // --- internals ---

    fn role_binding_contribution(&self, namespace: &str, state: &BindingState) -> Contribution {
        let grants = match state.role_kind {
            RoleKind::ClusterRole => self.cluster_role_grants.get(&state.role_name),
            RoleKind::Role => self.role_grants.get(&(namespace.to_owned(), state.role_name.clone())),
            RoleKind::Other => None,
        }
        .is_some_and(|grant| grant.allows(namespace));
        if !grants {
            return Box::default();
        }
        Box::new([Scope::One(namespace.to_owned())])
    }

    fn cluster_role_binding_contribution(&self, state: &BindingState) -> Contribution {
        if state.role_kind != RoleKind::ClusterRole {
            return Box::default();
        }
        match self.cluster_role_grants.get(&state.role_name) {
            None | Some(Grant::Nothing) => Box::default(),
            Some(Grant::All) => Box::new([Scope::All]),
            Some(Grant::Names(names)) => names.iter().cloned().map(Scope::One).collect(),
        }
    }

    fn replace_role_binding(&mut self, key: NamespacedKey, new: Option<BindingState>, changes: &mut Vec<AccessChange>) {
        let new = new.map(|mut state| {
            state.contribution = self.role_binding_contribution(&key.0, &state);
            state
        });
        if let Some(state) = &new {
            self.add(&state.subjects, &state.contribution, changes);
            match state.role_kind {
                RoleKind::ClusterRole => {
                    self.role_bindings_by_cluster_role
                        .entry(state.role_name.clone())
                        .or_default()
                        .insert(key.clone());
                }
                RoleKind::Role => {
                    self.role_bindings_by_role
                        .entry((key.0.clone(), state.role_name.clone()))
                        .or_default()
                        .insert(key.clone());
                }
                RoleKind::Other => {}
            }
        }
        let old = match new {
            Some(state) => self.role_bindings.insert(key.clone(), state),
            None => self.role_bindings.remove(&key),
        };
        if let Some(old) = old {
            self.remove(&old.subjects, &old.contribution, changes);
            let still_refs = self
                .role_bindings
                .get(&key)
                .is_some_and(|s| s.role_kind == old.role_kind && s.role_name == old.role_name);
            if !still_refs {
                match old.role_kind {
                    RoleKind::ClusterRole => {
                        remove_ref(&mut self.role_bindings_by_cluster_role, &old.role_name, &key);
                    }
                    RoleKind::Role => {
                        remove_ref(&mut self.role_bindings_by_role, &(key.0.clone(), old.role_name), &key);
                    }
                    RoleKind::Other => {}
                }
            }
        }
    }

    fn replace_cluster_role_binding(
        &mut self,
        name: String,
        new: Option<BindingState>,
        changes: &mut Vec<AccessChange>,
    ) {
        let new = new.map(|mut state| {
            state.contribution = self.cluster_role_binding_contribution(&state);
            state
        });
        if let Some(state) = &new {
            self.add(&state.subjects, &state.contribution, changes);
            self.cluster_role_bindings_by_cluster_role
                .entry(state.role_name.clone())
                .or_default()
                .insert(name.clone());
        }
        let old = match new {
            Some(state) => self.cluster_role_bindings.insert(name.clone(), state),
            None => self.cluster_role_bindings.remove(&name),
        };
        if let Some(old) = old {
            self.remove(&old.subjects, &old.contribution, changes);
            let still_refs = self
                .cluster_role_bindings
                .get(&name)
                .is_some_and(|s| s.role_name == old.role_name);
            if !still_refs {
                remove_ref(&mut self.cluster_role_bindings_by_cluster_role, &old.role_name, &name);
            }
        }
    }

    fn set_cluster_role_grant(&mut self, name: String, grant: Grant, changes: &mut Vec<AccessChange>) {
        if !replace_grant(&mut self.cluster_role_grants, &name, grant) {
            return;
        }
        let role_bindings = referrers(&self.role_bindings_by_cluster_role, &name);
        let cluster_role_bindings = referrers(&self.cluster_role_bindings_by_cluster_role, &name);
        self.recompute(&role_bindings, &cluster_role_bindings, changes);
    }

    fn set_role_grant(&mut self, key: NamespacedKey, grant: Grant, changes: &mut Vec<AccessChange>) {
        if !replace_grant(&mut self.role_grants, &key, grant) {
            return;
        }
        let role_bindings = referrers(&self.role_bindings_by_role, &key);
        self.recompute(&role_bindings, &[], changes);
    }

    /// Re-derives the contributions of bindings whose role changed: all additions first, then all removals.
    fn recompute(
        &mut self,
        role_bindings: &[NamespacedKey],
        cluster_role_bindings: &[String],
        changes: &mut Vec<AccessChange>,
    ) {
        let mut removals = Vec::new();
        for key in role_bindings {
            let Some(state) = self.role_bindings.get(key) else {
                continue;
            };
            let contribution = self.role_binding_contribution(&key.0, state);
            let subjects = state.subjects.clone();
            self.add(&subjects, &contribution, changes);
            if let Some(state) = self.role_bindings.get_mut(key) {
                removals.push((subjects, std::mem::replace(&mut state.contribution, contribution)));
            }
        }
        for name in cluster_role_bindings {
            let Some(state) = self.cluster_role_bindings.get(name) else {
                continue;
            };
            let contribution = self.cluster_role_binding_contribution(state);
            let subjects = state.subjects.clone();
            self.add(&subjects, &contribution, changes);
            if let Some(state) = self.cluster_role_bindings.get_mut(name) {
                removals.push((subjects, std::mem::replace(&mut state.contribution, contribution)));
            }
        }
        for (subjects, old) in removals {
            self.remove(&subjects, &old, changes);
        }
    }

    /// Grants each of `subjects` each of `scopes` once more.
    fn add(&mut self, subjects: &[SubjectKey], scopes: &[Scope], changes: &mut Vec<AccessChange>) {
        for (subject, scope) in subjects.iter().flat_map(|s| scopes.iter().map(move |scope| (s, scope))) {
            let grants = self.by_subject.entry(subject.clone()).or_default();
            let count = match scope {
                Scope::All => &mut grants.all,
                Scope::One(ns) => {
                    *self
                        .by_namespace
                        .entry(ns.clone())
                        .or_default()
                        .entry(subject.clone())
                        .or_default() += 1;
                    grants.names.entry(ns.clone()).or_default()
                }
            };
            *count += 1;
            if *count == 1 {
                changes.push(AccessChange {
                    subject: subject.clone(),
                    scope: scope.clone(),
                    gained: true,
                });
            }
        }
    }

    /// Takes one grant of each of `scopes` from each of `subjects`.
    fn remove(&mut self, subjects: &[SubjectKey], scopes: &[Scope], changes: &mut Vec<AccessChange>) {
        for (subject, scope) in subjects.iter().flat_map(|s| scopes.iter().map(move |scope| (s, scope))) {
            let Some(grants) = self.by_subject.get_mut(subject) else {
                continue;
            };
            let now_zero = match scope {
                Scope::All => {
                    grants.all = grants.all.saturating_sub(1);
                    grants.all == 0
                }
                Scope::One(ns) => {
                    if let Some(per_ns) = self.by_namespace.get_mut(ns) {
                        if let Some(count) = per_ns.get_mut(subject) {
                            *count = count.saturating_sub(1);
                            if *count == 0 {
                                per_ns.remove(subject);
                            }
                        }
                        if per_ns.is_empty() {
                            self.by_namespace.remove(ns);
                        }
                    }
                    match grants.names.get_mut(ns) {
                        Some(count) => {
                            *count = count.saturating_sub(1);
                            let zero = *count == 0;
                            if zero {
                                grants.names.remove(ns);
                            }
                            zero
                        }
                        None => false,
                    }
                }
            };
            if grants.all == 0 && grants.names.is_empty() {
                self.by_subject.remove(subject);
            }
            if now_zero {
                changes.push(AccessChange {
                    subject: subject.clone(),
                    scope: scope.clone(),
                    gained: false,
                });
            }
        }
    }
}

/// Stores a role's grant (forgetting roles that grant nothing); whether it changed.
fn replace_grant<K: std::hash::Hash + Eq + Clone>(grants: &mut HashMap<K, Grant>, key: &K, grant: Grant) -> bool {
    let old = if grant == Grant::Nothing {
        grants.remove(key)
    } else {
        grants.insert(key.clone(), grant.clone())
    };
    old.unwrap_or_default() != grant
}

/// The bindings that refer to a role.
fn referrers<K: std::hash::Hash + Eq, V: Clone>(refs: &HashMap<K, HashSet<V>>, key: &K) -> Vec<V> {
    refs.get(key)
        .map(|set| set.iter().cloned().collect())
        .unwrap_or_default()
}

fn remove_ref<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(map: &mut HashMap<K, HashSet<V>>, key: &K, value: &V) {
    if let Some(set) = map.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
