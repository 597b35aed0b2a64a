//! Connected clusters: for each `Cluster`, the kubeconfig its Secret holds becomes that cluster's member (client
//! and reflectors, `clusters::Member`), and what its kube-apiserver answers becomes the Cluster's status
//! (`Connecting` until its namespaces and RBAC are listed, then `Ready` with the version, the namespace count and the
//! time, or `Offline` with the reason), `tenancy_apiserver_cluster_up`,
//! and whether its spaces show their phase or `Unknown`. A cluster that goes away never affects the server's
//! readiness; it recovers on the next pass, without a restart. A Cluster deleted is disconnected: its spaces go.
//! Clusters are watched (a new one is connected at once), and all are asked together every few seconds; a cluster
//! connected anew gets tenancy's guards (`connect::guards`), reported in its `Guarded` condition.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher::{self, watcher};
use kube::runtime::{reflector, WatchStreamExt};
use kube::Client;
use parking_lot::Mutex;
use serde_json::json;
use tokio::sync::Notify;

use crate::api::account::Cluster;
use crate::backend::explain;
use crate::clusters::{Member, Members};
use crate::connect;
use crate::connect::NAMESPACE;
use crate::domains::SpaceDomains;
use crate::metrics::ClusterMetrics;
use crate::state::{Cache, Part, Update};

/// How often each connected cluster is asked (all of them together).
const INTERVAL: Duration = Duration::from_secs(3);
/// What the platform team does about a Cluster whose credentials are missing or unusable.
const CONNECT_AGAIN: &str = "run tenancy-apiserver connect again";
/// How often guards a cluster refused are tried again.
const GUARD_RETRY: Duration = Duration::from_secs(10);
/// How often a cluster's guards are applied again (an admin may have deleted one there).
const GUARD_REFRESH: Duration = Duration::from_secs(60);
/// How long one cluster may take to answer before it counts as offline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the clusters controller works with.
pub struct Context {
    /// Calls to the management cluster (Secrets, Cluster status).
    pub client: Client,
    /// The management cluster's long watches (Clusters).
    pub watch: Client,
    pub cache: Arc<Cache>,
    pub members: Arc<Members>,
    pub metrics: ClusterMetrics,
    /// Each connected cluster's guards: `None` once installed, else why they could not be (yet).
    pub guards: Arc<Mutex<BTreeMap<String, Option<String>>>>,
}

/// Keeps every Cluster connected and its status current, forever: Clusters are watched, so one made, changed or
/// deleted is acted on at once; every connected cluster is asked again each [`INTERVAL`], all of them together.
pub async fn run(context: Context) {
    let context = &context;
    let (clusters, writer) = reflector::store::<Cluster>();
    let events = reflector(
        writer,
        watcher(Api::<Cluster>::all(context.watch.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    // The watch runs on its own, so the store fills while a pass waits on the clusters it probes.
    let touched = Arc::new(Notify::new());
    let notify = touched.clone();
    let watch = tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            match event {
                Ok(_) => notify.notify_one(),
                Err(error) => tracing::debug!(%error, "Watching Clusters failed; retrying"),
            }
        }
    });
    let _stop_watch = DropGuard(watch.abort_handle());
    if clusters.wait_until_ready().await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = Vec::new();
    loop {
        tokio::select! {
            // Its own status writes come back as events too: only what the server acts on (a Cluster made, deleted,
            // or given other credentials) is worth a pass before the next tick.
            () = touched.notified() => if signature(&clusters.state()) == seen {
                continue;
            },
            _ = tick.tick() => {}
        }
        let current = clusters.state();
        seen = signature(&current);
        pass(context, &current).await;
    }
}

/// Aborts a task when dropped.
struct DropGuard(tokio::task::AbortHandle);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a pass acts on, of each Cluster: its name, identity and credentials.
fn signature(clusters: &[Arc<Cluster>]) -> Vec<(String, String, String, Option<String>)> {
    let mut signature: Vec<_> = clusters
        .iter()
        .map(|c| {
            let reference = &c.spec.config.secret_ref;
            (
                c.metadata.name.clone().unwrap_or_default(),
                c.metadata.uid.clone().unwrap_or_default(),
                reference.name.clone(),
                reference.key.clone(),
            )
        })
        .collect();
    signature.sort();
    signature
}

/// Probes every Cluster at once (one that does not answer must not hold back the others), and disconnects the ones
/// that are gone.
async fn pass(context: &Context, clusters: &[Arc<Cluster>]) {
    let mut names = BTreeSet::new();
    let mut probes = Vec::new();
    for cluster in clusters {
        let name = cluster.metadata.name.clone().unwrap_or_default();
        // A space in it is `<cluster>.<namespace>`: a name with a dot would be ambiguous.
        if name.contains('.') {
            tracing::warn!(cluster = %name, "A Cluster's name must not contain a dot; ignored");
            continue;
        }
        names.insert(name.clone());
        probes.push(async move { probe(context, cluster, &name).await });
    }
    futures::future::join_all(probes).await;
    // Connected, or only known to the state (a Cluster whose Secret never gave a client).
    let mut known: BTreeSet<String> = context.members.names().into_iter().collect();
    known.extend(context.cache.read().connected.keys().cloned());
    for gone in known.into_iter().filter(|n| !names.contains(n)) {
        context.members.disconnect(&gone);
        context.guards.lock().remove(&gone);
        context.cache.apply(Update::Disconnected(gone.clone()));
        context.metrics.forget(&gone);
        tracing::info!(cluster = %gone, "Disconnected");
    }
}

/// Connects `cluster` (if not yet, or with new credentials), asks it, and writes what it said.
async fn probe(context: &Context, cluster: &Cluster, name: &str) {
    let answer = tokio::time::timeout(PROBE_TIMEOUT, ask(context, cluster, name))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "its kube-apiserver did not answer within {}s",
                PROBE_TIMEOUT.as_secs()
            ))
        });
    let now = Timestamp::now().to_string();
    // Answering, but its spaces are not all known yet until its reflectors have listed once.
    let synced = context.cache.read().connected.get(name).is_some_and(Part::is_synced);
    let guarded = context.guards.lock().get(name).cloned().map(|problem| match problem {
        None => json!({"type": "Guarded", "status": "True", "reason": "Installed", "message": "", "lastTransitionTime": now}),
        Some(problem) => json!({"type": "Guarded", "status": "False", "reason": "Refused", "message": problem, "lastTransitionTime": now}),
    });
    let mut status = match &answer {
        Ok((version, namespaces)) if !synced => json!({
            "phase": "Connecting", "version": version, "namespaces": namespaces,
            "conditions": [{"type": "Ready", "status": "False", "reason": "Syncing", "message": "listing its namespaces and RBAC", "lastTransitionTime": now}],
        }),
        Ok((version, namespaces)) => json!({
            "phase": "Ready", "version": version, "namespaces": namespaces, "lastSync": now,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Connected", "message": "", "lastTransitionTime": now}],
        }),
        Err(reason) => json!({
            "phase": "Offline",
            "conditions": [{"type": "Ready", "status": "False", "reason": "Unreachable", "message": reason, "lastTransitionTime": now}],
        }),
    };
    if let (Some(guarded), Some(conditions)) = (guarded, status["conditions"].as_array_mut()) {
        conditions.push(guarded);
    }
    context.metrics.up(name, answer.is_ok());
    context.cache.apply(Update::Online {
        cluster: name.to_owned(),
        online: answer.is_ok(),
    });
    if let Err(error) = Api::<Cluster>::all(context.client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
    {
        tracing::debug!(cluster = %name, %error, "Writing a Cluster's status failed");
    }
}

/// The cluster's kube-apiserver version and namespace count, or why it could not be asked.
async fn ask(context: &Context, cluster: &Cluster, name: &str) -> Result<(String, usize), String> {
    let reference = &cluster.spec.config.secret_ref;
    let secret_name = format!("{NAMESPACE}/{}", reference.name);
    let secret = Api::<Secret>::namespaced(context.client.clone(), NAMESPACE)
        .get(&reference.name)
        .await
        .map_err(|e| match e {
            e if explain::is_not_found(&e) => format!("Secret {secret_name} not found: {CONNECT_AGAIN}"),
            e => format!("Secret {secret_name} could not be read: {}", explain::sentence(&e)),
        })?;
    let key = reference.key.as_deref().unwrap_or("kubeconfig");
    let text = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or_else(|| format!("Secret {secret_name} has no key {key}: {CONNECT_AGAIN}"))?;
    let secret_version = secret.metadata.resource_version.clone().unwrap_or_default();
    let (member, new) = context
        .members
        .connect(
            &context.cache,
            &context.metrics.watch_errors,
            name,
            &secret_version,
            &text,
        )
        .await?;
    if new {
        tokio::spawn(guard(Arc::downgrade(&member), name.to_owned(), context.guards.clone()));
    }
    let domains = SpaceDomains::new(
        cluster.spec.space_domain.as_deref(),
        cluster.spec.space_issuer.as_deref(),
    )
    .unwrap_or_else(|problem| {
        tracing::warn!(cluster = %name, %problem, "A Cluster's space domain is unusable; it has none until fixed");
        None
    });
    if member.set_domains(domains.clone()) || new {
        context.cache.apply(Update::Domains {
            cluster: Some(name.to_owned()),
            domains,
        });
    }
    let unanswered = |e: kube::Error| format!("its kube-apiserver did not answer: {}", explain::sentence(&e));
    let remote = member.client().clone();
    let version = remote.apiserver_version().await.map_err(unanswered)?;
    // Counted from what the reflectors hold once they have listed, rather than listing again every pass.
    let namespaces = {
        let state = context.cache.read();
        state
            .connected
            .get(name)
            .filter(|c| c.is_synced())
            .map(|c| c.namespaces.len())
    };
    let namespaces = match namespaces {
        Some(count) => count,
        None => Api::<k8s_openapi::api::core::v1::Namespace>::all(remote)
            .list_metadata(&ListParams::default())
            .await
            .map_err(unanswered)?
            .items
            .len(),
    };
    Ok((version.git_version, namespaces))
}

/// Installs the guards (`connect::guards`) in a newly connected cluster, and again every [`GUARD_REFRESH`] (every
/// [`GUARD_RETRY`] while it refuses), for as long as it is connected with these credentials: one an admin deleted there
/// comes back. What happened is in the Cluster's `Guarded` condition.
async fn guard(member: Weak<Member>, name: String, guards: Arc<Mutex<BTreeMap<String, Option<String>>>>) {
    while let Some(member) = member.upgrade() {
        let installed = connect::guards::install(member.client()).await;
        drop(member);
        let pause = match installed {
            Ok(()) => {
                if guards.lock().insert(name.clone(), None) != Some(None) {
                    tracing::info!(cluster = %name, "Guards installed");
                }
                GUARD_REFRESH
            }
            Err((guard, error)) => {
                let problem = format!(
                    "{guard} could not be installed ({}): run tenancy-apiserver connect again",
                    explain::sentence(&error)
                );
                tracing::warn!(cluster = %name, %problem, "Guards not installed; retrying");
                guards.lock().insert(name.clone(), Some(problem));
                GUARD_RETRY
            }
        };
        tokio::time::sleep(pause).await;
    }
}
