//! Kube I/O: the two clients (long watches; calls on a request's path), the reflectors (watches of Namespaces, RBAC
//! objects, Accounts, SpaceTemplates, AccountQuotas and their share ResourceQuotas) feeding the state every read is
//! answered from, the watch on kube-apiserver's authentication ConfigMap, the SubjectAccessReview reviewer of
//! `--access-mode=sar` (`review`), the watch of enforced template objects (`enforced`), each served cluster's
//! reflectors (`cluster`), and failed calls told as sentences (`explain`).

pub mod activity;
pub mod cluster;
pub mod enforced;
pub mod explain;
pub mod review;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use prometheus::IntCounterVec;
use serde::de::DeserializeOwned;

use crate::state::{Cache, Update};

use crate::api::account::{Account, AccountQuota, SpaceTemplate};

use crate::authn::{RequestHeaderConfig, AUTH_CONFIGMAP_NAME, AUTH_CONFIGMAP_NAMESPACE};
use crate::metrics::BackendMetrics;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("configuring the kube client")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("building the kube client")]
    Client(#[source] kube::Error),
    #[error("reading the authentication ConfigMap")]
    AuthConfig(#[source] kube::Error),
}

/// The two kube clients: one for the reflectors' long watches (kube's defaults: no read timeout, its own generous
/// retries), one for calls on a request's path.
pub struct Clients {
    pub watch: Client,
    /// TokenReview, SubjectAccessReview and writes: each answer within [`CALL_TIMEOUT`], and 429/503/504 retried at
    /// most [`CALL_RETRIES`] times (0.1 s doubling to 1 s, or as `Retry-After` says), so a request never waits on
    /// kube-apiserver for long.
    pub call: Client,
}

/// How long one call on a request's path may wait for kube-apiserver's answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries of one call on a request's path, for kube-apiserver's "try again" answers.
pub const CALL_RETRIES: u32 = 3;

/// The kube configuration from `kubeconfig`, else in-cluster config, else `$KUBECONFIG` / `~/.kube/config`.
///
/// # Errors
/// When no usable configuration is found.
pub async fn config(kubeconfig: Option<&Path>) -> Result<kube::Config, Error> {
    match kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| Error::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })
        }
        None => match kube::Config::incluster() {
            Ok(config) => Ok(config),
            Err(_) => kube::Config::infer().await.map_err(Error::InferConfig),
        },
    }
}

/// Kube clients from [`config`]'s configuration.
///
/// # Errors
/// When no usable configuration is found.
pub async fn clients(kubeconfig: Option<&Path>) -> Result<Clients, Error> {
    clients_from(config(kubeconfig).await?)
}

/// The two kube clients for one cluster's configuration (this cluster's, or a connected one's).
///
/// # Errors
/// When the configuration cannot make a client.
pub fn clients_from(config: kube::Config) -> Result<Clients, Error> {
    let watch = Client::try_from(config.clone()).map_err(Error::Client)?;
    let mut call = config;
    call.default_retry = false;
    call.read_timeout = Some(CALL_TIMEOUT);
    // The timeout then counts from the request, not from when its pooled connection went idle.
    call.reset_reader_on_write = true;
    let retries =
        kube::client::retry::RetryPolicy::new(Duration::from_millis(100), Duration::from_secs(1), CALL_RETRIES, true)
            .map_err(|e| Error::Client(kube::Error::Service(e.into())))?;
    let call = kube::client::ClientBuilder::try_from(call)
        .map_err(Error::Client)?
        // A retry resends a clone of the request through a clone of the service: the buffer makes it clonable.
        .with_layer(&tower::buffer::BufferLayer::new(1024))
        .with_layer(&tower::retry::RetryLayer::new(retries))
        .build();
    Ok(Clients { watch, call })
}

/// How often kube-apiserver is probed for [`BackendMetrics`]' staleness.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Feeds `cache` from a watch per kind, in arrival order, forever (each watch retries with backoff).
pub async fn run(client: Client, cache: Arc<Cache>, metrics: BackendMetrics) {
    let errors = &metrics.watch_errors;
    let mut streams = vec![
        held_back(watch(Api::<Account>::all(client.clone()), Update::Account, errors)),
        held_back(watch(
            Api::<SpaceTemplate>::all(client.clone()),
            Update::SpaceTemplate,
            errors,
        )),
        watch(Api::<AccountQuota>::all(client.clone()), Update::AccountQuota, errors),
    ];
    // The management cluster's own part, from the same reflectors as every connected cluster's (none on a trunk-only
    // install: its namespaces are not spaces).
    if cache.read().local_spaces {
        streams.extend(cluster::streams(&client, errors));
    }
    tokio::spawn(probe(client, metrics));
    let mut updates = futures::stream::select_all(streams);
    while let Some(update) = updates.next().await {
        cache.apply(update);
    }
}

/// Test builds only: with [`HOLD_BACK_CONFIG`] set, the Account and SpaceTemplate reflectors deliver their first list
/// and nothing after it, so a test can prove that writes never decide on a cache that has not caught up.
#[cfg(feature = "fault-injection")]
pub const HOLD_BACK_CONFIG: &str = "TENANCY_FAULT_HOLD_BACK_CONFIG";

/// `updates`, or with [`HOLD_BACK_CONFIG`] set (test builds) only up to the end of its first list.
fn held_back(updates: futures::stream::BoxStream<'static, Update>) -> futures::stream::BoxStream<'static, Update> {
    #[cfg(feature = "fault-injection")]
    if std::env::var_os(HOLD_BACK_CONFIG).is_some() {
        tracing::warn!("{HOLD_BACK_CONFIG} is set: Accounts and SpaceTemplates are held at their first list");
        let mut listed = false;
        return updates
            .take_while(move |update| {
                let before = listed;
                listed |= matches!(
                    update,
                    Update::Account(Event::InitDone) | Update::SpaceTemplate(Event::InitDone)
                );
                futures::future::ready(!before)
            })
            .chain(futures::stream::pending())
            .boxed();
    }
    updates
}

/// A kind's watch events as [`Update`]s; errors are logged and the watch retried.
fn watch<K>(
    api: Api<K>,
    wrap: fn(Event<K>) -> Update,
    errors: &IntCounterVec,
) -> futures::stream::BoxStream<'static, Update>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watch_selected(api, watcher::Config::default(), wrap, errors)
}

/// [`watch`] of the objects `config` selects.
fn watch_selected<K>(
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(Event<K>) -> Update,
    errors: &IntCounterVec,
) -> futures::stream::BoxStream<'static, Update>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watch_backing_off(api, config, wrap, errors, watcher::DefaultBackoff::default())
}

/// [`watch_selected`] that waits `backoff` after each failure.
fn watch_backing_off<K, B>(
    api: Api<K>,
    config: watcher::Config,
    wrap: fn(Event<K>) -> Update,
    errors: &IntCounterVec,
    backoff: B,
) -> futures::stream::BoxStream<'static, Update>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    B: kube::runtime::utils::Backoff + 'static,
{
    let kind = K::kind(&()).into_owned();
    let errors = errors.with_label_values(&[kind.as_str()]);
    watcher::watcher(api, config)
        .backoff(backoff)
        .filter_map(move |event| {
            let update = match event {
                Ok(event) => Some(wrap(event)),
                Err(error) => {
                    errors.inc();
                    tracing::warn!(%kind, %error, "Watch failed; retrying");
                    None
                }
            };
            futures::future::ready(update)
        })
        .boxed()
}

/// Asks kube-apiserver for its version every [`PROBE_INTERVAL`]: whether it answers, and since when it has not.
async fn probe(client: Client, metrics: BackendMetrics) {
    let mut last_answer = tokio::time::Instant::now();
    let mut ticks = tokio::time::interval(PROBE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let answered = tokio::time::timeout(PROBE_INTERVAL, client.apiserver_version())
            .await
            .is_ok_and(|version| version.is_ok());
        if answered {
            last_answer = tokio::time::Instant::now();
        }
        metrics.up.set(i64::from(answered));
        metrics.stale_seconds.set(if answered {
            0.0
        } else {
            last_answer.elapsed().as_secs_f64()
        });
    }
}

/// Reads kube-apiserver's request-header settings once (at startup, before serving).
///
/// # Errors
/// When the ConfigMap cannot be read.
pub async fn request_header_config(client: &Client) -> Result<ConfigMap, Error> {
    Api::<ConfigMap>::namespaced(client.clone(), AUTH_CONFIGMAP_NAMESPACE)
        .get(AUTH_CONFIGMAP_NAME)
        .await
        .map_err(Error::AuthConfig)
}

/// Calls `apply` with the request-header settings each time kube-apiserver's ConfigMap changes.
pub async fn watch_request_header_config(client: Client, apply: impl Fn(RequestHeaderConfig)) {
    let api = Api::<ConfigMap>::namespaced(client, AUTH_CONFIGMAP_NAMESPACE);
    let config = watcher::Config::default().fields(&format!("metadata.name={AUTH_CONFIGMAP_NAME}"));
    let mut changes = watcher::watcher(api, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    loop {
        match changes.try_next().await {
            Ok(Some(cm)) => match RequestHeaderConfig::from_configmap(&cm) {
                Ok(settings) => apply(settings),
                Err(error) => tracing::warn!(%error, "Ignoring unusable authentication ConfigMap"),
            },
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "Watch of the authentication ConfigMap failed; retrying")
            }
        }
    }
}

#[cfg(test)]
mod tests;
