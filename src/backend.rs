//! The kube client and the reflectors: local caches of Namespaces and RBAC objects that every read is answered from,
//! and the watch on kube-apiserver's authentication ConfigMap.

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

use crate::access::RbacSource;
use crate::authn::{RequestHeaderConfig, AUTH_CONFIGMAP_NAME, AUTH_CONFIGMAP_NAMESPACE};

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

/// A kube client from `--kubeconfig`, else in-cluster config, else `$KUBECONFIG` / `~/.kube/config`.
///
/// # Errors
/// When no usable configuration is found.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = match kubeconfig {
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
                })?
        }
        None => match kube::Config::incluster() {
            Ok(config) => config,
            Err(_) => kube::Config::infer().await.map_err(Error::InferConfig)?,
        },
    };
    Client::try_from(config).map_err(Error::Client)
}

/// Cloneable read handles on the caches.
#[derive(Clone)]
pub struct Stores {
    pub namespaces: Store<Namespace>,
    pub roles: Store<Role>,
    pub cluster_roles: Store<ClusterRole>,
    pub role_bindings: Store<RoleBinding>,
    pub cluster_role_bindings: Store<ClusterRoleBinding>,
    namespace_revision: Arc<AtomicU64>,
    ready: Arc<AtomicBool>,
}

// === impl Stores ===

impl Stores {
    /// Starts a reflector per kind on `client`; the returned future drives them all and must be spawned.
    pub fn start(client: &Client) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let namespace_revision = Arc::new(AtomicU64::new(0));
        let revision = namespace_revision.clone();
        let (namespaces, namespaces_run) = reflect(Api::<Namespace>::all(client.clone()), move |ns: &Namespace| {
            if let Some(rv) = ns.metadata.resource_version.as_deref().and_then(|rv| rv.parse().ok()) {
                revision.fetch_max(rv, Ordering::Relaxed);
            }
        });
        let (roles, roles_run) = reflect(Api::<Role>::all(client.clone()), |_: &Role| {});
        let (cluster_roles, cluster_roles_run) = reflect(Api::<ClusterRole>::all(client.clone()), |_: &ClusterRole| {});
        let (role_bindings, role_bindings_run) = reflect(Api::<RoleBinding>::all(client.clone()), |_: &RoleBinding| {});
        let (cluster_role_bindings, cluster_role_bindings_run) = reflect(
            Api::<ClusterRoleBinding>::all(client.clone()),
            |_: &ClusterRoleBinding| {},
        );
        let stores = Stores {
            namespaces,
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
            namespace_revision,
            ready: Arc::new(AtomicBool::new(false)),
        };
        let readiness = {
            let stores = stores.clone();
            async move {
                let synced = futures::try_join!(
                    stores.namespaces.wait_until_ready(),
                    stores.roles.wait_until_ready(),
                    stores.cluster_roles.wait_until_ready(),
                    stores.role_bindings.wait_until_ready(),
                    stores.cluster_role_bindings.wait_until_ready(),
                );
                if synced.is_ok() {
                    stores.ready.store(true, Ordering::Release);
                    tracing::info!("Caches synced");
                }
            }
        };
        let run = async move {
            futures::join!(
                namespaces_run,
                roles_run,
                cluster_roles_run,
                role_bindings_run,
                cluster_role_bindings_run,
                readiness
            );
        };
        (stores, run)
    }

    /// Whether every cache has finished its first list.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The highest namespace resourceVersion seen: a list's resourceVersion.
    #[must_use]
    pub fn namespace_revision(&self) -> u64 {
        self.namespace_revision.load(Ordering::Relaxed)
    }

    #[must_use]
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.get(&ObjectRef::new(name))
    }
}

impl RbacSource for Stores {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.state()
    }

    fn role_bindings(&self, namespace: Option<&str>) -> Vec<Arc<RoleBinding>> {
        match namespace {
            None => self.role_bindings.state(),
            Some(ns) => self
                .role_bindings
                .state_filter(|binding| binding.metadata.namespace.as_deref() == Some(ns)),
        }
    }

    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        self.cluster_roles.get(&ObjectRef::new(name))
    }

    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>> {
        self.roles.get(&ObjectRef::new(name).within(namespace))
    }
}

/// A store of `K` and the future that keeps it current; `observe` sees every applied object.
fn reflect<K, F>(api: Api<K>, observe: F) -> (Store<K>, impl Future<Output = ()> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    F: Fn(&K) + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let kind = <K as Resource>::kind(&()).into_owned();
    let stream = watcher(api).default_backoff().reflect(writer);
    let run = async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(Event::Apply(obj) | Event::InitApply(obj)) => observe(&obj),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%kind, %error, "Watch failed; retrying"),
                }
                futures::future::ready(())
            })
            .await;
    };
    (reader, run)
}

fn watcher<K>(api: Api<K>) -> impl futures::Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher::watcher(api, watcher::Config::default())
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
