//! What tenants do in a cluster's namespaces, as sleep mode needs it: the latest change in each namespace by anyone
//! but this server and the control plane, read from the managed fields of its workloads, pods, services and config
//! maps (one watch per kind, cluster-wide, metadata only but for the workloads sleep mode records; nothing of the
//! objects is kept). A sleeping workload whose value someone set since (`kubectl scale` of a sleeping Deployment, a
//! suspended CronJob resumed) is a change now, whatever the clock says; so is the deletion of an object nothing owns.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, Resource, ResourceExt};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::sleep::{latest_change, taken, Seen};

/// The kinds watched.
const KINDS: usize = 7;

pub struct Activity {
    context: Context,
    watches: Vec<AbortHandle>,
}

impl Drop for Activity {
    fn drop(&mut self) {
        for watch in &self.watches {
            watch.abort();
        }
    }
}

// === impl Activity ===

impl Activity {
    /// Watches the cluster `client` reaches, from now until dropped.
    #[must_use]
    pub fn new(client: &Client) -> Self {
        let (seen, listed, changed) = (Arc::default(), Arc::new(AtomicUsize::new(0)), Arc::new(Notify::new()));
        let handle = |task: tokio::task::JoinHandle<()>| task.abort_handle();
        let context = Context {
            seen: Arc::clone(&seen),
            listed: Arc::clone(&listed),
            changed: Arc::clone(&changed),
        };
        let watches = vec![
            handle(tokio::spawn(watch_recorded::<Deployment>(
                client.clone(),
                context.clone(),
            ))),
            handle(tokio::spawn(watch_recorded::<StatefulSet>(
                client.clone(),
                context.clone(),
            ))),
            handle(tokio::spawn(watch_recorded::<CronJob>(client.clone(), context.clone()))),
            handle(tokio::spawn(watch::<Job>(client.clone(), context.clone()))),
            handle(tokio::spawn(watch::<Pod>(client.clone(), context.clone()))),
            handle(tokio::spawn(watch::<Service>(client.clone(), context.clone()))),
            handle(tokio::spawn(watch::<ConfigMap>(client.clone(), context))),
        ];
        Activity {
            context: Context { seen, listed, changed },
            watches,
        }
    }

    /// Whether every kind has been listed once: before that, a namespace's quiet may only be unseen activity.
    #[must_use]
    pub fn is_listed(&self) -> bool {
        self.context.listed.load(Ordering::Acquire) >= KINDS
    }

    /// A request in `namespace` that kube-apiserver's audit webhook reported (reads count too).
    pub fn record(&self, namespace: &str, seen: Seen) {
        self.context.record(namespace.to_owned(), seen);
    }

    /// The latest change seen in `namespace`.
    #[must_use]
    pub fn latest(&self, namespace: &str) -> Option<Seen> {
        self.context.seen.lock().get(namespace).cloned()
    }

    /// Completes at the next change seen anywhere.
    pub async fn changed(&self) {
        self.context.changed.notified().await;
    }
}

#[derive(Clone)]
struct Context {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    listed: Arc<AtomicUsize>,
    changed: Arc<Notify>,
}

// === impl Context ===

impl Context {
    fn record(&self, namespace: String, change: Seen) {
        let mut seen = self.seen.lock();
        let newer = seen.get(&namespace).is_none_or(|known| change.newer_than(known));
        if newer {
            seen.insert(namespace, change);
            drop(seen);
            self.changed.notify_one();
        }
    }
}

/// What sleep mode records of a workload, as it is now: its replicas (Deployments, StatefulSets; unset is 1) or its
/// suspend (CronJobs; unset is false). The watcher reads it to tell a taken value, `spaces::sleep` to scale.
pub trait Recorded {
    fn value(&self) -> (Option<i32>, Option<bool>);
}

impl Recorded for Deployment {
    fn value(&self) -> (Option<i32>, Option<bool>) {
        (Some(self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)), None)
    }
}

impl Recorded for StatefulSet {
    fn value(&self) -> (Option<i32>, Option<bool>) {
        (Some(self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)), None)
    }
}

impl Recorded for CronJob {
    fn value(&self) -> (Option<i32>, Option<bool>) {
        (None, Some(self.spec.as_ref().and_then(|s| s.suspend).unwrap_or(false)))
    }
}

/// Follows one kind of workload sleep mode records, whole (its value is in its spec), forever.
async fn watch_recorded<K>(client: Client, context: Context)
where
    K: Resource<DynamicType = ()> + Recorded + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    follow(Api::<K>::all(client), context, |object: &K| {
        let (replicas, suspend) = object.value();
        taken(object.annotations(), replicas, suspend).then(|| {
            Seen::exact(
                Timestamp::now(),
                format!("a change to {}/{}", K::kind(&()), object.name_any()),
            )
        })
    })
    .await;
}

/// Follows one kind's metadata forever.
async fn watch<K>(client: Client, context: Context)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    follow(Api::<PartialObjectMeta<K>>::all(client), context, |_| None).await;
}

/// Records each object's latest change by a tenant, what `taken` says of it, and deletions of objects nothing owns;
/// the watch retries with backoff.
async fn follow<K>(api: Api<K>, context: Context, taken: impl Fn(&K) -> Option<Seen>)
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).into_owned();
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed = false;
    while let Some(event) = events.next().await {
        let object = match event {
            Ok(Event::InitDone) => {
                if !listed {
                    listed = true;
                    context.listed.fetch_add(1, Ordering::AcqRel);
                    context.changed.notify_one();
                }
                continue;
            }
            Ok(Event::Init) => continue,
            Ok(Event::Apply(object) | Event::InitApply(object)) => object,
            Ok(Event::Delete(object)) => {
                if object.owner_references().is_empty() {
                    let by = format!("someone (deleted {kind}/{})", object.name_any());
                    context.record(
                        object.namespace().unwrap_or_default(),
                        Seen::exact(Timestamp::now(), by),
                    );
                }
                continue;
            }
            Err(error) => {
                tracing::debug!(%kind, %error, "Watching activity failed; retrying");
                continue;
            }
        };
        let namespace = object.namespace().unwrap_or_default();
        if let Some(change) = latest_change(object.meta().managed_fields.as_deref().unwrap_or_default()) {
            context.record(namespace.clone(), change);
        }
        if let Some(change) = taken(&object) {
            context.record(namespace, change);
        }
    }
}
