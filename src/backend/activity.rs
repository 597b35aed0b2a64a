//! What tenants do in a cluster's namespaces, as sleep mode needs it: the latest change in each namespace by anyone
//! but this server and the control plane, read from the managed fields of its workloads, pods, services and config
//! maps (one metadata watch per kind, cluster-wide; nothing of the objects is kept). A workload whose recorded sleep
//! value someone took over (`kubectl scale` of a sleeping Deployment) is a change now, whatever the clock says; so is
//! the deletion of an object nothing owns.

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

use crate::sleep::{latest_change, taken_over, Seen, REPLICAS_ANNOTATION, SUSPEND_ANNOTATION};

/// The kinds watched.
const KINDS: usize = 7;

pub struct Activity {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    /// Kinds whose first list is in.
    listed: Arc<AtomicUsize>,
    changed: Arc<Notify>,
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
        let follow = |task: tokio::task::JoinHandle<()>| task.abort_handle();
        let context = Context {
            seen: Arc::clone(&seen),
            listed: Arc::clone(&listed),
            changed: Arc::clone(&changed),
        };
        let watches = vec![
            follow(tokio::spawn(watch::<Deployment>(
                client.clone(),
                context.clone(),
                Some("replicas"),
            ))),
            follow(tokio::spawn(watch::<StatefulSet>(
                client.clone(),
                context.clone(),
                Some("replicas"),
            ))),
            follow(tokio::spawn(watch::<CronJob>(
                client.clone(),
                context.clone(),
                Some("suspend"),
            ))),
            follow(tokio::spawn(watch::<Job>(client.clone(), context.clone(), None))),
            follow(tokio::spawn(watch::<Pod>(client.clone(), context.clone(), None))),
            follow(tokio::spawn(watch::<Service>(client.clone(), context.clone(), None))),
            follow(tokio::spawn(watch::<ConfigMap>(client.clone(), context, None))),
        ];
        Activity {
            seen,
            listed,
            changed,
            watches,
        }
    }

    /// Whether every kind has been listed once: before that, a namespace's quiet may only be unseen activity.
    #[must_use]
    pub fn is_listed(&self) -> bool {
        self.listed.load(Ordering::Acquire) >= KINDS
    }

    /// The latest change seen in `namespace`.
    #[must_use]
    pub fn latest(&self, namespace: &str) -> Option<Seen> {
        self.seen.lock().get(namespace).cloned()
    }

    /// Completes at the next change seen anywhere.
    pub async fn changed(&self) {
        self.changed.notified().await;
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

/// Follows one kind forever (the watch retries with backoff). `recorded`: the spec field sleep mode records on it.
async fn watch<K>(client: Client, context: Context, recorded: Option<&'static str>)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut listed = false;
    while let Some(event) = events.next().await {
        let object: PartialObjectMeta<K> = match event {
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
                    let by = format!("someone (deleted {}/{})", K::kind(&()), object.name_any());
                    context.record(object.namespace().unwrap_or_default(), Seen::new(Timestamp::now(), by));
                }
                continue;
            }
            Err(error) => {
                tracing::debug!(kind = %K::kind(&()), %error, "Watching activity failed; retrying");
                continue;
            }
        };
        let namespace = object.namespace().unwrap_or_default();
        let fields = object.metadata.managed_fields.as_deref().unwrap_or_default();
        if let Some(change) = latest_change(fields) {
            context.record(namespace.clone(), change);
        }
        let record = match recorded {
            Some("replicas") => REPLICAS_ANNOTATION,
            Some(_) => SUSPEND_ANNOTATION,
            None => continue,
        };
        if object.annotations().contains_key(record) {
            if let Some(change) = taken_over(fields, recorded.unwrap_or_default()) {
                context.record(namespace, change);
            }
        }
    }
}
