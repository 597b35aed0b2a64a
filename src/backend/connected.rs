//! Connected clusters' kube I/O: each cluster's two clients (built from the kubeconfig in its Secret, rebuilt only when
//! the Secret changes), its SubjectAccessReviews (TTL-cached as this cluster's are) and the reflectors that feed that
//! cluster's part of the state (its Namespaces and RBAC), stopped when the cluster is disconnected or its credentials
//! change.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use parking_lot::Mutex;
use prometheus::IntCounterVec;
use tokio::task::AbortHandle;

use super::{clients_from, watch, Clients};
use crate::authz::Authorizer;
use crate::state::{Cache, Update};

/// One connected cluster: its client, for the Secret version it was built from, and its reflectors.
struct Connection {
    secret_version: String,
    client: Client,
    authorizer: Arc<Authorizer>,
    reflectors: AbortHandle,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reflectors.abort();
    }
}

/// The connected clusters the server reflects, by name.
#[derive(Default)]
pub struct Connections {
    clusters: Mutex<BTreeMap<String, Connection>>,
}

// === impl Connections ===

impl Connections {
    /// The client of connected cluster `cluster`, if it is connected.
    #[must_use]
    pub fn client(&self, cluster: &str) -> Option<Client> {
        self.clusters.lock().get(cluster).map(|c| c.client.clone())
    }

    /// The client and the authorizer (its SubjectAccessReviews) of connected cluster `cluster`, if it is connected.
    #[must_use]
    pub fn client_and_authorizer(&self, cluster: &str) -> Option<(Client, Arc<Authorizer>)> {
        self.clusters
            .lock()
            .get(cluster)
            .map(|c| (c.client.clone(), c.authorizer.clone()))
    }

    /// The names of the clusters connected now.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.clusters.lock().keys().cloned().collect()
    }

    /// `cluster`'s client for the kubeconfig `kubeconfig` read from its Secret at `secret_version`: the one already
    /// running when the Secret is unchanged, else a new client whose reflectors replace the old ones.
    ///
    /// # Errors
    /// When the kubeconfig is unusable.
    pub async fn connect(
        &self,
        cache: &Arc<Cache>,
        errors: &IntCounterVec,
        cluster: &str,
        secret_version: &str,
        kubeconfig: &str,
    ) -> Result<Client, String> {
        if let Some(connection) = self.clusters.lock().get(cluster) {
            if connection.secret_version == secret_version {
                return Ok(connection.client.clone());
            }
        }
        let unusable = |e: &dyn std::fmt::Display| {
            format!("the kubeconfig in its Secret cannot be used ({e}): run tenancy-apiserver connect again")
        };
        let kubeconfig = Kubeconfig::from_yaml(kubeconfig).map_err(|e| unusable(&e))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| unusable(&e))?;
        // Writes, reviews and probes get the call client's timeout and bounded retries, as this cluster's do.
        let Clients { watch, call: client } =
            clients_from(config).map_err(|e| unusable(&super::explain::root_cause(&e)))?;
        let reflectors = tokio::spawn(reflect(cluster.to_owned(), watch, cache.clone(), errors.clone()));
        let connection = Connection {
            secret_version: secret_version.to_owned(),
            authorizer: Arc::new(Authorizer::new(client.clone())),
            client: client.clone(),
            reflectors: reflectors.abort_handle(),
        };
        self.clusters.lock().insert(cluster.to_owned(), connection);
        Ok(client)
    }

    /// Stops reflecting `cluster`; whether it was connected.
    pub fn disconnect(&self, cluster: &str) -> bool {
        self.clusters.lock().remove(cluster).is_some()
    }
}

/// Feeds `cache` with `cluster`'s Namespaces and RBAC, in arrival order, until aborted.
async fn reflect(cluster: String, client: Client, cache: Arc<Cache>, errors: IntCounterVec) {
    let streams = vec![
        watch(Api::<Namespace>::all(client.clone()), Update::Namespace, &errors),
        watch(Api::<Role>::all(client.clone()), Update::Role, &errors),
        watch(Api::<ClusterRole>::all(client.clone()), Update::ClusterRole, &errors),
        watch(Api::<RoleBinding>::all(client.clone()), Update::RoleBinding, &errors),
        watch(
            Api::<ClusterRoleBinding>::all(client.clone()),
            Update::ClusterRoleBinding,
            &errors,
        ),
    ];
    let mut updates = futures::stream::select_all(streams);
    while let Some(update) = updates.next().await {
        cache.apply(Update::Connected {
            cluster: cluster.clone(),
            update: Box::new(update),
        });
    }
}
