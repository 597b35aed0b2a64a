//! A connected cluster's part of the state: its access index, its namespaces by their own names, whether it answers and
//! the server's bindings there, fed by its own reflectors (`Update::Connected`). Its namespaces are shown among the
//! spaces as `<cluster>.<namespace>` (phase `Unknown` while it does not answer), and its access changes go into the one
//! change log, tagged with the cluster.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use kube::runtime::watcher::Event;
use kube::ResourceExt;

use super::log::Change;
use super::{rbac_event, share_event, track_server_bindings, Relist, ServerBindings, State, Update};
use crate::access::index::Index;
use crate::access::view::space_name;

/// A connected cluster's part of the state.
#[derive(Default)]
pub struct Connected {
    pub index: Index,
    /// Its namespaces by their own names, as that cluster has them.
    pub namespaces: BTreeMap<String, Arc<Namespace>>,
    /// Whether its kube-apiserver answered when last asked.
    pub online: bool,
    /// The server's RoleBindings there, as [`State::server_bindings`] holds them here.
    pub server_bindings: ServerBindings,
    /// The AccountQuota shares there, by namespace, as [`State::shares`] holds them here.
    pub shares: BTreeMap<String, Arc<ResourceQuota>>,
    relist: Relist,
    synced: HashSet<&'static str>,
}

// === impl Connected ===

impl Connected {
    /// Whether its namespaces and RBAC have been listed once.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        CONNECTED_KINDS.iter().all(|kind| self.synced.contains(kind))
    }
}

/// The kinds reflected from a connected cluster.
const CONNECTED_KINDS: [&str; 5] = [
    "namespaces",
    "roles",
    "clusterroles",
    "rolebindings",
    "clusterrolebindings",
];

/// The phase a space of a connected cluster shows while that cluster does not answer: neither dropped nor invented.
pub const UNKNOWN_PHASE: &str = "Unknown";

impl State {
    /// A connected cluster's Namespace or RBAC event; its access changes are logged as that cluster's.
    pub(super) fn connected_event(&mut self, cluster: &str, update: Update, changes: &mut Vec<Change>) {
        let mut access = Vec::new();
        let part = self.connected.entry(cluster.to_owned()).or_default();
        let (index, relist, synced) = (&mut part.index, &mut part.relist, &mut part.synced);
        match update {
            Update::Namespace(event) => return self.connected_namespace_event(cluster, event, changes),
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
            _ => {}
        }
        changes.extend(access.into_iter().map(|change| Change::Connected {
            cluster: cluster.to_owned(),
            change,
        }));
    }

    fn connected_namespace_event(&mut self, cluster: &str, event: Event<Namespace>, changes: &mut Vec<Change>) {
        let Some(part) = self.connected.get_mut(cluster) else {
            return;
        };
        match event {
            Event::Apply(ns) => {
                let name = ns.name_any();
                part.namespaces.insert(name.clone(), Arc::new(ns));
                self.show_connected(cluster, &name, changes);
            }
            Event::Delete(ns) => {
                let name = ns.name_any();
                part.namespaces.remove(&name);
                self.remove_namespace(space_name(cluster, &name), changes);
            }
            Event::Init => part.relist.namespaces.clear(),
            Event::InitApply(ns) => part.relist.namespaces.push(ns),
            Event::InitDone => {
                let listed = std::mem::take(&mut part.relist.namespaces);
                part.namespaces = listed.into_iter().map(|ns| (ns.name_any(), Arc::new(ns))).collect();
                part.synced.insert("namespaces");
                let names: Vec<String> = part.namespaces.keys().cloned().collect();
                for name in &names {
                    self.show_connected(cluster, name, changes);
                }
                let prefix = space_name(cluster, "");
                let gone: Vec<String> = self
                    .namespaces
                    .range(prefix.clone()..)
                    .take_while(|(space, _)| space.starts_with(&prefix))
                    .filter(|(space, _)| names.binary_search(&space[prefix.len()..].to_owned()).is_err())
                    .map(|(space, _)| space.clone())
                    .collect();
                for space in gone {
                    self.remove_namespace(space, changes);
                }
            }
        }
    }

    /// Puts connected cluster `cluster`'s namespace `name` among the spaces, as `<cluster>.<name>`, its phase
    /// `Unknown` while that cluster does not answer.
    pub(super) fn show_connected(&mut self, cluster: &str, name: &str, changes: &mut Vec<Change>) {
        let Some(part) = self.connected.get(cluster) else {
            return;
        };
        let Some(ns) = part.namespaces.get(name) else {
            return;
        };
        let mut shown = Namespace::clone(ns);
        shown.metadata.name = Some(space_name(cluster, name));
        if !part.online {
            shown.status.get_or_insert_with(Default::default).phase = Some(UNKNOWN_PHASE.to_owned());
        }
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
            changes.push(Change::Connected {
                cluster: cluster.to_owned(),
                change,
            });
        }
    }
}
