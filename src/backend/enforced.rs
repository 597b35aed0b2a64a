//! Which enforced template objects (label `tenancy.loft.sh/enforced=true`) exist in the cluster: one metadata watch per
//! kind that some template enforces, started the first time the repair pass asks about that kind. The repair pass
//! recreates an enforced object of a space once its kind's watch has listed and the object is not there.
//!
//! Owners cannot delete these objects (deploy/admission.yaml refuses it); what this catches is an admin's deletion, or
//! an object lost while the server was down.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, PartialObjectMeta};
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Client, ResourceExt};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::api::ENFORCED_LABEL;

/// The objects of one kind: `None` until the first list is in.
type Present = Option<HashSet<(String, String)>>;

pub struct Enforced {
    client: Client,
    kinds: Mutex<HashMap<String, Arc<Mutex<Present>>>>,
    changed: Arc<Notify>,
    /// The watches, stopped with this (a disconnected cluster's go with it).
    watches: Mutex<Vec<AbortHandle>>,
}

impl Drop for Enforced {
    fn drop(&mut self) {
        for watch in self.watches.lock().drain(..) {
            watch.abort();
        }
    }
}

// === impl Enforced ===

impl Enforced {
    /// Enforced objects of the cluster `client` watches; `changed` is woken when one goes away or a kind has listed.
    #[must_use]
    pub fn new(client: Client, changed: Arc<Notify>) -> Self {
        Enforced {
            client,
            kinds: Mutex::new(HashMap::new()),
            changed,
            watches: Mutex::default(),
        }
    }

    /// Whether `namespace/name` of `resource`'s kind exists; `None` while that kind's watch has not listed yet (the
    /// first call starts it).
    pub fn exists(&self, resource: &ApiResource, namespace: &str, name: &str) -> Option<bool> {
        let key = format!("{}/{}", resource.api_version, resource.kind);
        let kind = self.kinds.lock().get(&key).cloned();
        match kind {
            Some(present) => present
                .lock()
                .as_ref()
                .map(|set| set.contains(&(namespace.to_owned(), name.to_owned()))),
            None => {
                let present = Arc::new(Mutex::new(None));
                self.kinds.lock().insert(key, present.clone());
                let watch = tokio::spawn(follow(
                    self.client.clone(),
                    resource.clone(),
                    present,
                    self.changed.clone(),
                ));
                self.watches.lock().push(watch.abort_handle());
                None
            }
        }
    }
}

/// Keeps `present` equal to the enforced objects of one kind, forever (the watch retries with backoff).
async fn follow(client: Client, resource: ApiResource, present: Arc<Mutex<Present>>, changed: Arc<Notify>) {
    // Metadata only: presence is all the repair pass needs, and it keeps large objects (ConfigMaps) out of memory.
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &resource);
    let config = watcher::Config::default().labels(&format!("{ENFORCED_LABEL}=true"));
    let mut listing = HashSet::new();
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(error) => {
                tracing::warn!(kind = %resource.kind, %error, "Watching enforced objects failed; retrying");
                continue;
            }
        };
        match event {
            Event::Init => listing.clear(),
            Event::InitApply(object) => {
                listing.insert((object.namespace().unwrap_or_default(), object.name_any()));
            }
            Event::InitDone => {
                *present.lock() = Some(std::mem::take(&mut listing));
                changed.notify_one();
            }
            Event::Apply(object) => {
                if let Some(set) = present.lock().as_mut() {
                    set.insert((object.namespace().unwrap_or_default(), object.name_any()));
                }
            }
            Event::Delete(object) => {
                if let Some(set) = present.lock().as_mut() {
                    set.remove(&(object.namespace().unwrap_or_default(), object.name_any()));
                }
                changed.notify_one();
            }
        }
    }
}
