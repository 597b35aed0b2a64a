//! Every cluster this server serves, each one [`Member`]: the management cluster first (where the tenancy API, its
//! Accounts and Leases live), then each connected cluster, made once when its Cluster is connected and dropped on
//! disconnect (or remade when its credentials change). A member holds what talking to that cluster takes: its call
//! client, its SubjectAccessReviews, its discovery of template kinds (kept for the member's life), the watches of its
//! enforced template objects and, for a connected cluster, the reflectors that feed its part of the state. Writes,
//! repairs and controllers are handed a member, so one piece of code serves every cluster.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::Client;
use parking_lot::Mutex;
use prometheus::IntCounterVec;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::access::view::space_name;
use crate::authz::Authorizer;
use crate::backend::activity::Activity;
use crate::backend::enforced::Enforced;
use crate::backend::{clients_from, cluster, explain, Clients};
use crate::domains::SpaceDomains;
use crate::state::Cache;

/// One cluster this server serves.
pub struct Member {
    /// `None` for the management cluster; a connected cluster's name otherwise.
    cluster: Option<String>,
    client: Client,
    authorizer: Arc<Authorizer>,
    /// Template kinds discovered in this cluster, by `apiVersion/kind`.
    kinds: Mutex<HashMap<String, ApiResource>>,
    enforced: Enforced,
    /// For long watches there.
    watch: Client,
    /// What tenants do there (sleep mode), watched from the first time sleep mode asks.
    activity: std::sync::OnceLock<Activity>,
    /// The server's own user name there, once asked.
    identity: tokio::sync::OnceCell<String>,
    /// The version of the Secret this member's credentials came from (connected clusters).
    secret_version: String,
    /// Its space domains: from `serve --space-domain` for the management cluster, from its Cluster's spec for a
    /// connected one (which may change while it stays connected).
    domains: Mutex<Option<SpaceDomains>>,
    /// The reflectors feeding this cluster's part of the state (connected clusters; the management cluster's are
    /// `backend::run`'s, for the server's whole life).
    reflectors: Option<AbortHandle>,
}

impl Drop for Member {
    fn drop(&mut self) {
        if let Some(reflectors) = &self.reflectors {
            reflectors.abort();
        }
    }
}

// === impl Member ===

impl Member {
    /// The connected cluster's name; `None` for the management cluster.
    #[must_use]
    pub fn cluster(&self) -> Option<&str> {
        self.cluster.as_deref()
    }

    #[must_use]
    pub fn is_management(&self) -> bool {
        self.cluster.is_none()
    }

    /// The client for calls to this cluster (timeouts and bounded retries).
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Its space domains, if its platform team gave it a base domain.
    #[must_use]
    pub fn domains(&self) -> Option<SpaceDomains> {
        self.domains.lock().clone()
    }

    /// Sets its space domains; whether they changed.
    pub fn set_domains(&self, domains: Option<SpaceDomains>) -> bool {
        let mut current = self.domains.lock();
        let changed = *current != domains;
        *current = domains;
        changed
    }

    /// This cluster's SubjectAccessReviews.
    #[must_use]
    pub fn authorizer(&self) -> &Arc<Authorizer> {
        &self.authorizer
    }

    /// What tenants do in this cluster's namespaces (the first call starts its watches).
    pub fn activity(&self) -> &Activity {
        self.activity.get_or_init(|| Activity::new(&self.watch))
    }

    /// The server's own user name in this cluster (a SelfSubjectReview, asked once): its requests are never a tenant's.
    ///
    /// # Errors
    /// When kube-apiserver does not answer.
    pub async fn identity(&self) -> Result<&str, kube::Error> {
        let name = self
            .identity
            .get_or_try_init(|| async {
                let reviews: Api<SelfSubjectReview> = Api::all(self.client.clone());
                let review = reviews
                    .create(&kube::api::PostParams::default(), &SelfSubjectReview::default())
                    .await?;
                Ok::<_, kube::Error>(
                    review
                        .status
                        .and_then(|s| s.user_info)
                        .and_then(|u| u.username)
                        .unwrap_or_default(),
                )
            })
            .await?;
        Ok(name)
    }

    /// Which enforced template objects exist in this cluster.
    #[must_use]
    pub fn enforced(&self) -> &Enforced {
        &self.enforced
    }

    /// The space this cluster's namespace `namespace` is: its own name here, `<cluster>.<namespace>` for a connected
    /// cluster's.
    #[must_use]
    pub fn space(&self, namespace: &str) -> String {
        match &self.cluster {
            None => namespace.to_owned(),
            Some(cluster) => space_name(cluster, namespace),
        }
    }

    /// The API resource of a template object's kind in this cluster (discovered once per kind), or why it cannot be in
    /// a template.
    ///
    /// # Errors
    /// The kind is unknown to this cluster's kube-apiserver, or cluster-scoped.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, String> {
        let key = format!("{api_version}/{kind}");
        if let Some(resource) = self.kinds.lock().get(&key) {
            return Ok(resource.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| match e {
                e if matches!(e, kube::Error::Discovery(_)) || explain::is_not_found(&e) => {
                    format!("kube-apiserver serves no kind {key}")
                }
                e => format!("the kind {key} could not be looked up: {}", explain::sentence(&e)),
            })?;
        // A template fills one space; a cluster-scoped object would reach beyond it (a ClusterRoleBinding, above all).
        if capabilities.scope != kube::discovery::Scope::Namespaced {
            return Err(format!(
                "{kind} is cluster-scoped; a template holds only objects of the space's namespace"
            ));
        }
        self.kinds.lock().insert(key, resource.clone());
        Ok(resource)
    }
}

/// The clusters this server serves: the management cluster, and the connected ones by name.
pub struct Members {
    management: Arc<Member>,
    /// Whether the management cluster holds spaces too (`--local-spaces`).
    local_spaces: bool,
    connected: Mutex<BTreeMap<String, Arc<Member>>>,
    /// Woken when an enforced object goes away in any cluster, or a kind's watch has listed: the repair pass looks.
    changed: Arc<Notify>,
}

// === impl Members ===

impl Members {
    /// The management cluster, whose calls go through `client`, long watches through `watch` and reviews through
    /// `authorizer`; nothing connected yet.
    #[must_use]
    pub fn new(client: Client, watch: Client, authorizer: Arc<Authorizer>) -> Self {
        let changed = Arc::new(Notify::new());
        Members {
            management: Arc::new(Member {
                cluster: None,
                enforced: Enforced::new(watch.clone(), changed.clone()),
                watch,
                activity: std::sync::OnceLock::new(),
                identity: tokio::sync::OnceCell::new(),
                client,
                authorizer,
                kinds: Mutex::default(),
                domains: Mutex::default(),
                secret_version: String::new(),
                reflectors: None,
            }),
            connected: Mutex::default(),
            changed,
            local_spaces: true,
        }
    }

    /// These members, with the management cluster holding spaces or not (a trunk-only install).
    #[must_use]
    pub fn with_local_spaces(mut self, local_spaces: bool) -> Self {
        self.local_spaces = local_spaces;
        self
    }

    /// Whether the management cluster holds spaces too.
    #[must_use]
    pub fn local_spaces(&self) -> bool {
        self.local_spaces
    }

    /// The clusters spaces live in: every one served, or only the connected ones on a trunk-only install.
    #[must_use]
    pub fn holding_spaces(&self) -> Vec<Arc<Member>> {
        let connected = self.all_connected();
        if self.local_spaces {
            std::iter::once(self.management.clone()).chain(connected).collect()
        } else {
            connected
        }
    }

    #[must_use]
    pub fn management(&self) -> &Arc<Member> {
        &self.management
    }

    /// Connected cluster `cluster`, if it is connected.
    #[must_use]
    pub fn connected(&self, cluster: &str) -> Option<Arc<Member>> {
        self.connected.lock().get(cluster).cloned()
    }

    /// The connected clusters, by name.
    #[must_use]
    pub fn all_connected(&self) -> Vec<Arc<Member>> {
        self.connected.lock().values().cloned().collect()
    }

    /// Every cluster served: the management cluster first.
    #[must_use]
    pub fn all(&self) -> Vec<Arc<Member>> {
        std::iter::once(self.management.clone())
            .chain(self.all_connected())
            .collect()
    }

    /// The names of the clusters connected now.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.connected.lock().keys().cloned().collect()
    }

    /// Completes when an enforced object went away in some cluster, or a kind's watch has listed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// `cluster` as a member, for the kubeconfig `kubeconfig` read from its Secret at `secret_version`: the one already
    /// serving when the Secret is unchanged, else a new member (whose reflectors replace the old ones). Whether it is
    /// new, so its guards are installed once per connection.
    ///
    /// # Errors
    /// When the kubeconfig is unusable: a sentence saying so, and what to do.
    pub async fn connect(
        &self,
        cache: &Arc<Cache>,
        errors: &IntCounterVec,
        cluster: &str,
        secret_version: &str,
        kubeconfig: &str,
    ) -> Result<(Arc<Member>, bool), String> {
        if let Some(member) = self.connected.lock().get(cluster) {
            if member.secret_version == secret_version {
                return Ok((member.clone(), false));
            }
        }
        let unusable = |e: &dyn std::fmt::Display| {
            format!("the kubeconfig in its Secret cannot be used ({e}): run tenancy-apiserver connect again")
        };
        let kubeconfig = Kubeconfig::from_yaml(kubeconfig).map_err(|e| unusable(&e))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| unusable(&e))?;
        // Writes, reviews and probes get the call client's timeout and bounded retries, as the management cluster's do.
        let Clients { watch, call } = clients_from(config).map_err(|e| unusable(&explain::root_cause(&e)))?;
        // Its identity's rights there take a moment to be in force after `connect` made them: reflectors started
        // before would be refused and back off for long, so the next pass tries again instead.
        let namespaces: Api<Namespace> = Api::all(call.clone());
        match namespaces.list_metadata(&ListParams::default().limit(1)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 401 || status.code == 403 => {
                return Err(format!(
                    "its kube-apiserver does not let the server's identity list namespaces ({}): if this lasts, \
run tenancy-apiserver connect again",
                    status.message
                ));
            }
            Err(error) => {
                return Err(format!(
                    "its kube-apiserver did not answer: {}",
                    explain::sentence(&error)
                ))
            }
        }
        let reflectors = tokio::spawn(cluster::reflect(
            cluster.to_owned(),
            watch.clone(),
            cache.clone(),
            errors.clone(),
        ));
        let member = Arc::new(Member {
            cluster: Some(cluster.to_owned()),
            authorizer: Arc::new(Authorizer::new(call.clone())),
            enforced: Enforced::new(watch.clone(), self.changed.clone()),
            watch,
            activity: std::sync::OnceLock::new(),
            identity: tokio::sync::OnceCell::new(),
            client: call,
            kinds: Mutex::default(),
            domains: Mutex::default(),
            secret_version: secret_version.to_owned(),
            reflectors: Some(reflectors.abort_handle()),
        });
        self.connected.lock().insert(cluster.to_owned(), member.clone());
        Ok((member, true))
    }

    /// Stops serving `cluster`; whether it was connected. What is in flight there finishes with the member it holds.
    pub fn disconnect(&self, cluster: &str) -> bool {
        self.connected.lock().remove(cluster).is_some()
    }
}
