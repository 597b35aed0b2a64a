//! A served cluster's reflectors, the same for the management cluster and each connected one: its Namespaces, RBAC and
//! AccountQuota shares, fed to its part of the state in arrival order. A connected cluster's run until the member that
//! started them (`clusters::Member`) is dropped, and their events are tagged with the cluster.

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use prometheus::IntCounterVec;

use super::watch_backing_off;
use crate::api::account::SHARE_LABEL;
use crate::state::{Cache, Update};

/// One cluster's watches, as the management cluster's [`Update`]s.
pub fn streams(client: &Client, errors: &IntCounterVec) -> Vec<BoxStream<'static, Update>> {
    let all = watcher::Config::default;
    vec![
        watch(Api::<Namespace>::all(client.clone()), all(), Update::Namespace, errors),
        watch(Api::<Role>::all(client.clone()), all(), Update::Role, errors),
        watch(
            Api::<ClusterRole>::all(client.clone()),
            all(),
            Update::ClusterRole,
            errors,
        ),
        watch(
            Api::<RoleBinding>::all(client.clone()),
            all(),
            Update::RoleBinding,
            errors,
        ),
        watch(
            Api::<ClusterRoleBinding>::all(client.clone()),
            all(),
            Update::ClusterRoleBinding,
            errors,
        ),
        // Its spaces' shares of their AccountQuotas, whose use moves the quotas' shares.
        watch(
            Api::<ResourceQuota>::all(client.clone()),
            all().labels(SHARE_LABEL),
            Update::Share,
            errors,
        ),
    ]
}

/// Feeds `cache` with connected cluster `cluster`'s watches, in arrival order, until aborted; its logs name the
/// cluster.
pub async fn reflect(cluster: String, client: Client, cache: Arc<Cache>, errors: IntCounterVec) {
    let span = tracing::info_span!("cluster", name = %cluster);
    let feed = async move {
        let mut updates = futures::stream::select_all(streams(&client, &errors));
        while let Some(update) = updates.next().await {
            cache.apply(Update::Connected {
                cluster: cluster.clone(),
                update: Box::new(update),
            });
        }
    };
    tracing::Instrument::instrument(feed, span).await;
}

/// A watch of a served cluster. Its failures are retried within a few seconds at most (kube's default waits up to 30
/// s): a cluster just connected refuses or expires watches for a moment, and a write there waits for its events.
fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(watcher::Event<K>) -> Update,
    errors: &IntCounterVec,
) -> BoxStream<'static, Update>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let backoff = watcher::ExponentialBackoff::from(
        backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(200))
            .with_max_delay(std::time::Duration::from_secs(3))
            .with_jitter()
            .without_max_times(),
    );
    watch_backing_off(api, config, wrap, errors, backoff)
}
