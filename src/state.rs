//! The server's picture of every cluster it serves: the spaces, the change log, Accounts, SpaceTemplates and
//! AccountQuotas, and one [`Part`] per cluster (its access index, namespaces, shares and the server's bindings there),
//! changed by one writer task in the order events arrive (fed by each cluster's reflectors and the reviewer), read by
//! every request under a short read lock (never held across an await).
//!
//! The management cluster's part and each connected cluster's are the same type, fed by the same code. Connected
//! clusters' spaces sit among the management cluster's as `<cluster>.<namespace>`, and every cluster's changes go into
//! the one change log, so a list, watch or resume across all clusters is exact exactly as for one cluster alone.

mod cluster;
pub mod log;

pub use cluster::{Part, UNKNOWN_PHASE};

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::runtime::watcher::Event;
use kube::ResourceExt;
use parking_lot::{RwLock, RwLockReadGuard};
use tokio::sync::broadcast;

use self::cluster::Relist;
use self::log::{Change, Entry, Log, Namespaces};
use crate::access::index::{subjects_of, AccessChange, Index, Scope, SubjectKey};
use crate::access::view::{connected_part, SharedViews, Subjects, UserView};
use crate::access::AccessMode;
use crate::api::account::{Account, AccountQuota, SpaceTemplate};
use crate::authn::User;
use crate::domains::SpaceDomains;

/// RoleBindings the server makes and tracks: a space's owners, and the readers of a shared space.
pub const SERVER_BINDINGS: &[&str] = &["tenancy-owner", "tenancy-shared-reader"];

/// Entries kept for resumes and consistent pages.
const LOG_CAPACITY: usize = 10_000;
/// Entries buffered per watcher before it is considered too slow and closed.
pub const WATCH_BUFFER: usize = 4096;

/// One event from one of the reflected kinds.
pub enum Update {
    Account(Event<Account>),
    SpaceTemplate(Event<SpaceTemplate>),
    /// Not needed for readiness: an account's usage is shown once known.
    AccountQuota(Event<AccountQuota>),
    /// A space's share of its AccountQuota (the ResourceQuota `account-quota`): its usage moves the quota's shares.
    Share(Event<ResourceQuota>),
    Namespace(Event<Namespace>),
    Role(Event<Role>),
    ClusterRole(Event<ClusterRole>),
    RoleBinding(Event<RoleBinding>),
    ClusterRoleBinding(Event<ClusterRoleBinding>),
    /// SubjectAccessReview answers for a reviewed identity (`--access-mode=sar`).
    Reviewed {
        subject: SubjectKey,
        answers: Vec<(Scope, bool)>,
    },
    /// A reviewed identity nobody uses any more.
    Forget(SubjectKey),
    /// A Namespace, RBAC or share event of a connected cluster (those above without it are the management cluster's).
    Connected {
        cluster: String,
        update: Box<Update>,
    },
    /// Whether a connected cluster's kube-apiserver answers (its spaces show phase `Unknown` while it does not).
    Online {
        cluster: String,
        online: bool,
    },
    /// A served cluster's space domains (`None`: the management cluster), shown in its spaces' status.
    Domains {
        cluster: Option<String>,
        domains: Option<SpaceDomains>,
    },
    /// A connected cluster's Cluster is gone: its spaces and grants go with it.
    Disconnected(String),
}

// === impl Update ===

impl Update {
    /// Drops the objects' managed fields: nothing the server does reads them in what it keeps, and they are most of a
    /// small object's memory (a JSON tree per field manager).
    fn forget_managed_fields(&mut self) {
        fn forget<K: kube::Resource>(event: &mut Event<K>) {
            match event {
                Event::Apply(object) | Event::Delete(object) | Event::InitApply(object) => {
                    object.meta_mut().managed_fields = None;
                }
                Event::Init | Event::InitDone => {}
            }
        }
        match self {
            Update::Account(event) => forget(event),
            Update::SpaceTemplate(event) => forget(event),
            Update::AccountQuota(event) => forget(event),
            Update::Share(event) => forget(event),
            Update::Namespace(event) => forget(event),
            Update::Role(event) => forget(event),
            Update::ClusterRole(event) => forget(event),
            Update::RoleBinding(event) => forget(event),
            Update::ClusterRoleBinding(event) => forget(event),
            Update::Connected { update, .. } => update.forget_managed_fields(),
            Update::Reviewed { .. }
            | Update::Forget(_)
            | Update::Online { .. }
            | Update::Domains { .. }
            | Update::Disconnected(_) => {}
        }
    }
}

/// The server's RoleBindings in one cluster (`tenancy-owner`, `tenancy-shared-reader`), by binding name, then
/// namespace.
pub type ServerBindings = BTreeMap<String, BTreeMap<String, Arc<RoleBinding>>>;

/// The configuration kinds whose first list must be complete (with the management cluster's part) before the server is
/// ready.
const REQUIRED: [&str; 2] = ["accounts", "spacetemplates"];

pub struct State {
    /// Every served cluster's namespaces as spaces: the management cluster's by their names, a connected cluster's as
    /// `<cluster>.<namespace>`.
    pub namespaces: Namespaces,
    pub log: Log,
    /// Accounts and SpaceTemplates by name.
    pub accounts: BTreeMap<String, Arc<Account>>,
    /// The accounts view's resourceVersion: the newest etcd revision among account events (the view keeps no history,
    /// so it has a position of its own that only account changes move).
    pub accounts_revision: u64,
    pub templates: BTreeMap<String, Arc<SpaceTemplate>>,
    /// AccountQuotas by name.
    pub quotas: BTreeMap<String, Arc<AccountQuota>>,
    /// The management cluster's part (in `--access-mode=sar`, its index holds the reviewed answers); empty when its
    /// namespaces are not spaces.
    pub management: Part,
    /// Whether the management cluster's own namespaces are spaces (`--local-spaces`).
    pub local_spaces: bool,
    /// Connected clusters' parts, by name.
    pub connected: BTreeMap<String, Part>,
    /// Configuration objects of a relist in progress, per kind (watcher `Init` .. `InitDone`).
    relist: ConfigRelist,
    synced: HashSet<&'static str>,
}

#[derive(Default)]
struct ConfigRelist {
    accounts: Vec<Account>,
    templates: Vec<SpaceTemplate>,
    quotas: Vec<AccountQuota>,
}

pub struct Cache {
    mode: AccessMode,
    state: RwLock<State>,
    entries: broadcast::Sender<Arc<Entry>>,
    ready: AtomicBool,
    /// Counts applied events; every subscriber wakes on each (the reconcilers and the accounts watches look again).
    generation: tokio::sync::watch::Sender<u64>,
    /// The views of open watches, one per user and position.
    views: Arc<SharedViews>,
}

// === impl Cache ===

impl Default for Cache {
    fn default() -> Self {
        Self::new()
    }
}

impl Cache {
    #[must_use]
    pub fn new() -> Self {
        Self::with_access_mode(AccessMode::Rbac)
    }

    /// A cache whose views answer from `mode`'s grants.
    #[must_use]
    pub fn with_access_mode(mode: AccessMode) -> Self {
        Self::with_options(mode, true)
    }

    /// A cache whose views answer from `mode`'s grants; with `local_spaces` false (a trunk-only install), the
    /// management cluster's namespaces are never spaces, and its Namespace and RBAC events are not taken.
    #[must_use]
    pub fn with_options(mode: AccessMode, local_spaces: bool) -> Self {
        Cache {
            mode,
            state: RwLock::new(State {
                namespaces: Namespaces::new(),
                log: Log::new(LOG_CAPACITY),
                accounts: BTreeMap::new(),
                accounts_revision: 0,
                templates: BTreeMap::new(),
                quotas: BTreeMap::new(),
                management: Part::new(true),
                local_spaces,
                connected: BTreeMap::new(),
                relist: ConfigRelist::default(),
                synced: HashSet::new(),
            }),
            entries: broadcast::channel(WATCH_BUFFER).0,
            ready: AtomicBool::new(false),
            generation: tokio::sync::watch::Sender::new(0),
            views: Arc::default(),
        }
    }

    #[must_use]
    pub fn access_mode(&self) -> AccessMode {
        self.mode
    }

    /// The index subjects whose grants make up `user`'s view: here its name and groups under RBAC, its whole
    /// identity under SubjectAccessReview; in connected clusters its name and groups.
    #[must_use]
    pub fn subjects(&self, user: &User) -> Subjects {
        let connected = subjects_of(user);
        let local = match self.mode {
            AccessMode::Rbac => connected.clone(),
            AccessMode::Sar => vec![crate::access::index::identity_subject(user)],
        };
        Subjects { local, connected }
    }

    /// The views open watches share.
    #[must_use]
    pub fn views(&self) -> &Arc<SharedViews> {
        &self.views
    }

    /// A receiver that wakes after each applied event.
    #[must_use]
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Whether every kind has been listed once.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// A read snapshot. Hold it briefly and never across an await.
    pub fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read()
    }

    /// Subscribes to entries after the state seen through `_state`: taken under the same read lock, so no entry is
    /// missed or seen twice.
    #[must_use]
    pub fn subscribe(&self, _state: &RwLockReadGuard<'_, State>) -> broadcast::Receiver<Arc<Entry>> {
        self.entries.subscribe()
    }

    /// Applies one event (the writer's only entry point).
    pub fn apply(&self, mut update: Update) {
        update.forget_managed_fields();
        let mut state = self.state.write();
        let mut changes = Vec::new();
        state.apply(update, &mut changes);
        self.generation.send_modify(|g| *g += 1);
        let synced = REQUIRED.iter().all(|kind| state.synced.contains(kind))
            && (state.management.is_synced() || !state.local_spaces);
        if synced && !self.ready.swap(true, Ordering::AcqRel) {
            tracing::info!(namespaces = state.namespaces.len(), "Caches synced");
        }
        if changes.is_empty() {
            return;
        }
        let entry = Arc::new(Entry::new(state.log.next_position(), changes, &state.namespaces));
        state.log.push(entry.clone());
        // No receiver is fine; a full receiver lags and closes itself: the writer never waits.
        let _ = self.entries.send(entry);
    }
}

fn revision_of(object: &impl ResourceExt) -> u64 {
    object.resource_version().and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

// === impl State ===

impl State {
    /// Whether `subjects` may get space `name` (in whichever cluster it is).
    #[must_use]
    pub fn may_get(&self, subjects: &Subjects, name: &str) -> bool {
        match connected_part(name) {
            None => self.management.index.may_get(&subjects.local, name),
            Some((cluster, namespace)) => self
                .connected
                .get(cluster)
                .is_some_and(|part| part.index.may_get(&subjects.connected, namespace)),
        }
    }

    /// The current view of a user with `subjects`, across all clusters.
    #[must_use]
    pub fn view(&self, subjects: Subjects) -> UserView {
        UserView::new(
            &self.management.index,
            self.connected.iter().map(|(name, part)| (name.as_str(), &part.index)),
            subjects,
        )
    }

    /// Whether a served cluster (`None`: the management cluster) is one to act in now: it answers and its namespaces
    /// and RBAC have been listed (acting on a partial picture would undo what is there).
    #[must_use]
    pub fn is_reachable(&self, cluster: Option<&str>) -> bool {
        self.part(cluster).is_some_and(|p| p.online && p.is_synced())
    }

    /// One served cluster's namespaces, by their names there (`None`: the management cluster); none for a cluster not
    /// connected.
    pub fn cluster_namespaces<'a>(&'a self, cluster: Option<&str>) -> impl Iterator<Item = &'a Arc<Namespace>> + 'a {
        self.part(cluster).into_iter().flat_map(|part| part.namespaces.values())
    }

    /// One served cluster's namespaces, by their names there (`None`: the management cluster), and the server's
    /// bindings there: what the controllers look after in it. Empty for a cluster not connected.
    #[must_use]
    pub fn cluster_part(&self, cluster: Option<&str>) -> (Vec<Arc<Namespace>>, ServerBindings) {
        self.part(cluster).map_or_else(Default::default, |part| {
            (
                part.namespaces.values().cloned().collect(),
                part.server_bindings.clone(),
            )
        })
    }

    /// Applies `update`, adding what it changed for watchers to `changes`.
    fn apply(&mut self, update: Update, changes: &mut Vec<Change>) {
        let mut access = Vec::new();
        match update {
            Update::Account(event) => {
                let revision = match &event {
                    Event::Apply(a) | Event::Delete(a) | Event::InitApply(a) => revision_of(a),
                    _ => 0,
                };
                self.config_event(event, "accounts", |s| &mut s.accounts, |r| &mut r.accounts);
                self.accounts_revision = self.accounts_revision.max(revision);
            }
            Update::SpaceTemplate(event) => {
                self.config_event(event, "spacetemplates", |s| &mut s.templates, |r| &mut r.templates);
            }
            Update::AccountQuota(event) => {
                self.config_event(event, "accountquotas", |s| &mut s.quotas, |r| &mut r.quotas);
            }
            Update::Reviewed { subject, answers } => {
                for (scope, allowed) in &answers {
                    self.management
                        .index
                        .set_reviewed(&subject, scope, *allowed, &mut access);
                }
            }
            Update::Forget(subject) => self.management.index.forget(&subject, &mut access),
            Update::Connected { cluster, update } => self.cluster_event(Some(&cluster), *update, changes),
            Update::Online { cluster, online } => {
                let at = cluster.clone();
                self.cluster_event(Some(&at), Update::Online { cluster, online }, changes);
            }
            cluster_update @ (Update::Namespace(_)
            | Update::Role(_)
            | Update::ClusterRole(_)
            | Update::RoleBinding(_)
            | Update::ClusterRoleBinding(_)
            | Update::Share(_)) => {
                if self.local_spaces {
                    self.cluster_event(None, cluster_update, changes);
                }
            }
            Update::Domains { cluster, domains } => {
                let at = cluster.clone();
                self.cluster_event(at.as_deref(), Update::Domains { cluster, domains }, changes);
            }
            Update::Disconnected(cluster) => self.disconnect(&cluster, changes),
        }
        changes.extend(access.into_iter().map(Change::Access));
    }

    fn remove_namespace(&mut self, name: String, changes: &mut Vec<Change>) {
        if let Some(old) = self.namespaces.remove(&name) {
            changes.push(Change::Namespace { name, old: Some(old) });
        }
    }

    /// Accounts and templates: kept by name, no access effect.
    fn config_event<K: ResourceExt + Clone>(
        &mut self,
        event: Event<K>,
        kind: &'static str,
        map: fn(&mut Self) -> &mut BTreeMap<String, Arc<K>>,
        buffer: fn(&mut ConfigRelist) -> &mut Vec<K>,
    ) {
        match event {
            Event::Apply(object) => {
                map(self).insert(object.name_any(), Arc::new(object));
            }
            Event::Delete(object) => {
                map(self).remove(&object.name_any());
            }
            Event::Init => buffer(&mut self.relist).clear(),
            Event::InitApply(object) => buffer(&mut self.relist).push(object),
            Event::InitDone => {
                let listed = std::mem::take(buffer(&mut self.relist));
                *map(self) = listed.into_iter().map(|o| (o.name_any(), Arc::new(o))).collect();
                self.synced.insert(kind);
            }
        }
    }

    /// Puts a space among the spaces, unless it is the same as shown already.
    fn put_namespace(&mut self, ns: Arc<Namespace>, changes: &mut Vec<Change>) {
        let name = ns.name_any();
        let old = self.namespaces.get(&name).cloned();
        // The status and the shown domain too: a connected cluster's space shows phase Unknown while its cluster does
        // not answer, and a space's domain follows its cluster's base.
        if old.as_ref().is_some_and(|o| {
            o.resource_version() == ns.resource_version()
                && o.status == ns.status
                && o.metadata.annotations == ns.metadata.annotations
        }) {
            return;
        }
        self.namespaces.insert(name.clone(), ns);
        changes.push(Change::Namespace { name, old });
    }
}

/// One RBAC event into `index` (a cluster's part), relists buffered in `relist`.
fn rbac_event<K: Rbac>(
    index: &mut Index,
    relist: &mut Relist,
    synced: &mut HashSet<&'static str>,
    event: Event<K>,
    kind: &'static str,
    changes: &mut Vec<AccessChange>,
) {
    match event {
        Event::Apply(object) => object.apply_to(index, changes),
        Event::Delete(object) => object.delete_from(index, changes),
        Event::Init => K::relist_buffer(relist).clear(),
        Event::InitApply(object) => K::relist_buffer(relist).push(object),
        Event::InitDone => {
            let listed = std::mem::take(K::relist_buffer(relist));
            let keys: HashSet<(String, String)> = listed.iter().map(Rbac::key).collect();
            for object in &listed {
                object.apply_to(index, changes);
            }
            for key in K::held(index) {
                if !keys.contains(&key) {
                    K::delete_key(index, &key, changes);
                }
            }
            synced.insert(kind);
        }
    }
}

/// What the writer needs of each RBAC kind.
trait Rbac: ResourceExt + Sized {
    fn apply_to(&self, index: &mut Index, changes: &mut Vec<AccessChange>);
    fn delete_key(index: &mut Index, key: &(String, String), changes: &mut Vec<AccessChange>);
    fn held(index: &Index) -> Vec<(String, String)>;
    fn relist_buffer(relist: &mut Relist) -> &mut Vec<Self>;

    fn key(&self) -> (String, String) {
        (self.namespace().unwrap_or_default(), self.name_any())
    }

    fn delete_from(&self, index: &mut Index, changes: &mut Vec<AccessChange>) {
        Self::delete_key(index, &self.key(), changes);
    }
}

impl Rbac for Role {
    fn apply_to(&self, index: &mut Index, changes: &mut Vec<AccessChange>) {
        index.apply_role(self, changes);
    }
    fn delete_key(index: &mut Index, (ns, name): &(String, String), changes: &mut Vec<AccessChange>) {
        index.delete_role(ns, name, changes);
    }
    fn held(index: &Index) -> Vec<(String, String)> {
        index.role_keys()
    }
    fn relist_buffer(relist: &mut Relist) -> &mut Vec<Self> {
        &mut relist.roles
    }
}

impl Rbac for ClusterRole {
    fn apply_to(&self, index: &mut Index, changes: &mut Vec<AccessChange>) {
        index.apply_cluster_role(self, changes);
    }
    fn delete_key(index: &mut Index, (_, name): &(String, String), changes: &mut Vec<AccessChange>) {
        index.delete_cluster_role(name, changes);
    }
    fn held(index: &Index) -> Vec<(String, String)> {
        index
            .cluster_role_names()
            .into_iter()
            .map(|n| (String::new(), n))
            .collect()
    }
    fn relist_buffer(relist: &mut Relist) -> &mut Vec<Self> {
        &mut relist.cluster_roles
    }
}

impl Rbac for RoleBinding {
    fn apply_to(&self, index: &mut Index, changes: &mut Vec<AccessChange>) {
        index.apply_role_binding(self, changes);
    }
    fn delete_key(index: &mut Index, (ns, name): &(String, String), changes: &mut Vec<AccessChange>) {
        index.delete_role_binding(ns, name, changes);
    }
    fn held(index: &Index) -> Vec<(String, String)> {
        index.role_binding_keys()
    }
    fn relist_buffer(relist: &mut Relist) -> &mut Vec<Self> {
        &mut relist.role_bindings
    }
}

impl Rbac for ClusterRoleBinding {
    fn apply_to(&self, index: &mut Index, changes: &mut Vec<AccessChange>) {
        index.apply_cluster_role_binding(self, changes);
    }
    fn delete_key(index: &mut Index, (_, name): &(String, String), changes: &mut Vec<AccessChange>) {
        index.delete_cluster_role_binding(name, changes);
    }
    fn held(index: &Index) -> Vec<(String, String)> {
        index
            .cluster_role_binding_names()
            .into_iter()
            .map(|n| (String::new(), n))
            .collect()
    }
    fn relist_buffer(relist: &mut Relist) -> &mut Vec<Self> {
        &mut relist.cluster_role_bindings
    }
}

/// Which namespaces hold the server's own RoleBindings; the reconcilers act on what is missing.
fn track_server_bindings(bindings: &mut ServerBindings, event: &Event<RoleBinding>) {
    let ours = |rb: &RoleBinding| {
        let name = rb.name_any();
        SERVER_BINDINGS
            .contains(&name.as_str())
            .then(|| (name, rb.namespace().unwrap_or_default()))
    };
    match event {
        Event::Apply(rb) | Event::InitApply(rb) => {
            if let Some((name, ns)) = ours(rb) {
                bindings.entry(name).or_default().insert(ns, Arc::new(rb.clone()));
            }
        }
        Event::Delete(rb) => {
            if let Some((name, ns)) = ours(rb) {
                bindings.entry(name).or_default().remove(&ns);
            }
        }
        Event::Init => bindings.clear(),
        Event::InitDone => {}
    }
}

/// A share ResourceQuota's event, into `shares` (by namespace) and, during a relist, `relist`.
fn share_event(
    shares: &mut BTreeMap<String, Arc<ResourceQuota>>,
    relist: &mut Vec<ResourceQuota>,
    event: Event<ResourceQuota>,
) {
    let namespace = |rq: &ResourceQuota| rq.namespace().unwrap_or_default();
    match event {
        Event::Apply(rq) => {
            shares.insert(namespace(&rq), Arc::new(rq));
        }
        Event::Delete(rq) => {
            shares.remove(&namespace(&rq));
        }
        Event::Init => relist.clear(),
        Event::InitApply(rq) => relist.push(rq),
        Event::InitDone => {
            *shares = std::mem::take(relist)
                .into_iter()
                .map(|rq| (namespace(&rq), Arc::new(rq)))
                .collect();
        }
    }
}
