//! A connected cluster's reflectors: its Namespaces, RBAC and AccountQuota shares, fed to its part of the state in
//! arrival order, until the member that started them (`clusters::Member`) is dropped.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::Client;
use prometheus::IntCounterVec;

use kube::runtime::watcher;

use super::{watch, watch_selected};
use crate::api::account::SHARE_LABEL;
use crate::state::{Cache, Update};

/// Feeds `cache` with `cluster`'s Namespaces and RBAC, in arrival order, until aborted; its logs name the cluster.
pub async fn reflect(cluster: String, client: Client, cache: Arc<Cache>, errors: IntCounterVec) {
    let span = tracing::info_span!("cluster", name = %cluster);
    tracing::Instrument::instrument(feed(cluster, client, cache, errors), span).await;
}

async fn feed(cluster: String, client: Client, cache: Arc<Cache>, errors: IntCounterVec) {
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
        // Its spaces' shares of their AccountQuotas, whose use moves the quotas' shares.
        watch_selected(
            Api::<ResourceQuota>::all(client.clone()),
            watcher::Config::default().labels(SHARE_LABEL),
            Update::Share,
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
