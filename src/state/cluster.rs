//! One served cluster's part of the state, the same for the management cluster and each connected one: its access
//! index, its namespaces by their own names, whether it answers, the server's bindings and the AccountQuota shares
//! there, fed by that cluster's own reflectors. Its namespaces are shown among the spaces (a connected cluster's as
//! `<cluster>.<namespace>`, phase `Unknown` while it does not answer), and its access changes go into the one change
//! log, tagged with the cluster.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use super::log::Change;
use super::{rbac_event, share_event, track_server_bindings, ServerBindings, State, Update};
use crate::access::index::{AccessChange, Index};
use crate::access::view::space_name;
use crate::domains::SpaceDomains;

/// One served cluster's part of the state.
pub struct Part {
    pub index: Index,
    /// Its namespaces by their own names, as that cluster has them.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// Whether its kube-apiserver answered when last asked (the management cluster's always counts as answering: this
    /// server is its extension).
    pub online: bool,
    /// The server's RoleBindings there (`tenancy-owner`, `tenancy-shared-reader`), by binding name, then namespace.
    pub server_bindings: ServerBindings,
    /// The AccountQuota shares there (ResourceQuotas `account-quota`), by namespace.
    pub shares: BTreeMap<String, Arc<ResourceQuota>>,
    /// Its space domains, shown in its spaces' status.
    pub domains: Option<SpaceDomains>,
    pub(super) relist: Relist,
    synced: HashSet<&'static str>,
}

/// Objects of a relist in progress, per kind (watcher `Init` .. `InitDone`).
#[derive(Default)]
pub(super) struct Relist {
    namespaces: Vec<Namespace>,
    pub(super) roles: Vec<Role>,
    pub(super) cluster_roles: Vec<ClusterRole>,
    pub(super) role_bindings: Vec<RoleBinding>,
    pub(super) cluster_role_bindings: Vec<ClusterRoleBinding>,
    shares: Vec<ResourceQuota>,
}

/// The kinds whose first list makes a cluster's part complete.
const KINDS: [&str; 5] = [
    "namespaces",
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// The phase a space of a connected cluster shows while that cluster does not answer: neither dropped nor invented.
pub const UNKNOWN_PHASE: &str = "Unknown";

// === impl Part ===

impl Part {
    /// An empty part, answering or not.
    #[must_use]
    pub(super) fn new(online: bool) -> Self {
        Part {
            index: Index::default(),
            namespaces: BTreeMap::new(),
            online,
            server_bindings: ServerBindings::new(),
            shares: BTreeMap::new(),
            domains: None,
            relist: Relist::default(),
            synced: HashSet::new(),
        }
    }

    /// Whether its namespaces and RBAC have been listed once.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        KINDS.iter().all(|kind| self.synced.contains(kind))
    }
}

/// How a cluster's access change goes into the log: the management cluster's as it is, a connected one's tagged.
fn tagged(cluster: Option<&str>, change: AccessChange) -> Change {
    match cluster {
        None => Change::Access(change),
        Some(cluster) => Change::Connected {
            cluster: cluster.to_owned(),
            change,
        },
    }
}

/// The space a cluster's namespace is.
fn space_of(cluster: Option<&str>, namespace: &str) -> String {
    cluster.map_or_else(|| namespace.to_owned(), |c| space_name(c, namespace))
}

impl State {
    /// A served cluster's part (`None`: the management cluster's); none for a cluster not connected.
    #[must_use]
    pub fn part(&self, cluster: Option<&str>) -> Option<&Part> {
        match cluster {
            None => Some(&self.management),
            Some(cluster) => self.connected.get(cluster),
        }
    }

    /// Every served cluster's part, the management cluster's first.
    pub fn parts(&self) -> impl Iterator<Item = (Option<&str>, &Part)> {
        std::iter::once((None, &self.management)).chain(self.connected.iter().map(|(c, p)| (Some(c.as_str()), p)))
    }

    fn part_mut(&mut self, cluster: Option<&str>) -> &mut Part {
        match cluster {
            None => &mut self.management,
            Some(cluster) => self
                .connected
                .entry(cluster.to_owned())
                .or_insert_with(|| Part::new(false)),
        }
    }

    /// One served cluster's Namespace, RBAC, share or reachability event; its access changes are logged as that
    /// cluster's.
    pub(super) fn cluster_event(&mut self, cluster: Option<&str>, update: Update, changes: &mut Vec<Change>) {
        let mut access = Vec::new();
        let part = self.part_mut(cluster);
        let (index, relist, synced) = (&mut part.index, &mut part.relist, &mut part.synced);
        match update {
            Update::Namespace(event) => return self.namespace_event(cluster, event, changes),
            Update::Role(event) => rbac_event(index, relist, synced, event, "roles", &mut access),
            Update::ClusterRole(event) => rbac_event(index, relist, synced, event, "clusterroles", &mut access),
            Update::RoleBinding(event) => {
                track_server_bindings(&mut part.server_bindings, &event);
                rbac_event(index, relist, synced, event, "rolebindings", &mut access);
            }
            Update::ClusterRoleBinding(event) => {
                rbac_event(index, relist, synced, event, "clusterrolebindings", &mut access);
            }
            Update::Share(event) => share_event(&mut part.shares, &mut relist.shares, event),
            Update::Online { online, .. } if part.online != online => {
                part.online = online;
                self.show_all(cluster, changes);
            }
            Update::Domains { domains, .. } if part.domains != domains => {
                part.domains = domains;
                self.show_all(cluster, changes);
            }
            _ => {}
        }
        changes.extend(access.into_iter().map(|change| tagged(cluster, change)));
    }

    fn namespace_event(&mut self, cluster: Option<&str>, event: Event<Namespace>, changes: &mut Vec<Change>) {
        let part = self.part_mut(cluster);
        match event {
            Event::Apply(ns) => {
                let name = ns.name_any();
                part.namespaces.insert(name.clone(), Arc::new(ns));
                self.show(cluster, &name, changes);
            }
            Event::Delete(ns) => {
                let name = ns.name_any();
                part.namespaces.remove(&name);
                self.remove_namespace(space_of(cluster, &name), changes);
            }
            Event::Init => part.relist.namespaces.clear(),
            Event::InitApply(ns) => part.relist.namespaces.push(ns),
            Event::InitDone => {
                let listed = std::mem::take(&mut part.relist.namespaces);
                let listed: BTreeMap<String, Arc<Namespace>> =
                    listed.into_iter().map(|ns| (ns.name_any(), Arc::new(ns))).collect();
                let before = std::mem::replace(&mut part.namespaces, listed);
                part.synced.insert("namespaces");
                let names: Vec<String> = part.namespaces.keys().cloned().collect();
                for name in &names {
                    self.show(cluster, name, changes);
                }
                for name in before.keys().filter(|name| names.binary_search(name).is_err()) {
                    self.remove_namespace(space_of(cluster, name), changes);
                }
            }
        }
    }

    /// Shows every namespace of cluster `cluster` again (its reachability or domains changed).
    fn show_all(&mut self, cluster: Option<&str>, changes: &mut Vec<Change>) {
        let names: Vec<String> = self
            .part(cluster)
            .map(|part| part.namespaces.keys().cloned().collect())
            .unwrap_or_default();
        for name in names {
            self.show(cluster, &name, changes);
        }
    }

    /// Puts cluster `cluster`'s namespace `name` among the spaces: the management cluster's as it is, a connected
    /// one's as `<cluster>.<name>`, its phase `Unknown` while that cluster does not answer, and its domain (where the
    /// cluster has a base) as annotations of the state's copy that the space's status takes.
    fn show(&mut self, cluster: Option<&str>, name: &str, changes: &mut Vec<Change>) {
        let Some(part) = self.part(cluster) else {
            return;
        };
        let Some(ns) = part.namespaces.get(name) else {
            return;
        };
        let offline = cluster.is_some() && !part.online;
        let shown = if cluster.is_none() && part.domains.is_none() {
            ns.clone()
        } else {
            let mut shown = Namespace::clone(ns);
            if let Some(cluster) = cluster {
                shown.metadata.name = Some(space_name(cluster, name));
            }
            if offline {
                shown.status.get_or_insert_with(Default::default).phase = Some(UNKNOWN_PHASE.to_owned());
            }
            if let Some(domains) = &part.domains {
                domains.mark(name, &mut shown);
            }
            Arc::new(shown)
        };
        self.put_namespace(shown, changes);
    }

    /// A connected cluster gone: its spaces are deleted, and every grant it gave is taken back (so a cluster connected
    /// again under the same name starts from nothing in every view).
    pub(super) fn disconnect(&mut self, cluster: &str, changes: &mut Vec<Change>) {
        let Some(part) = self.connected.remove(cluster) else {
            return;
        };
        for name in part.namespaces.keys() {
            self.remove_namespace(space_name(cluster, name), changes);
        }
        for change in part.index.revoke_all() {
            changes.push(tagged(Some(cluster), change));
        }
    }
}
