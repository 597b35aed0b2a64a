//! Per-user watches over the change log. Each watcher replays the log from its starting position, then follows new
//! entries, turning each into the ADDED / MODIFIED / DELETED events its user should see: a space appears when its
//! namespace is created or access is granted, and disappears when either goes.
//!
//! Fan-out never waits on a watcher: every watcher has its own bounded buffer of entries (a broadcast receiver). A
//! watcher that falls more than that buffer behind — or whose client stops reading for [`SEND_TIMEOUT`] — is sent an
//! `ERROR` 410 Expired event and closed, so its client relists; nobody else is delayed by it.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_openapi::api::core::v1::Namespace;
use tokio::sync::{broadcast, mpsc};
use tokio::time::Instant;

use crate::access::view::{Effect, SharedViews, UserView};
use crate::authn::User;
use crate::state::log::{Change, Entry, Log, Lookup, Namespaces, Position};
use crate::state::Cache;

/// How long a client may leave a written event unread before its watch is closed.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One thing to tell a watcher.
#[derive(Clone, Debug)]
pub enum Item {
    Event {
        kind: EventType,
        namespace: Arc<Namespace>,
        /// Where the client stands once it has this event: the event object's resourceVersion.
        position: Position,
    },
    Bookmark {
        position: u64,
        /// The end of a WatchList's initial events.
        initial_events_end: bool,
    },
    /// The watcher fell behind (or resumed too far back): 410, the client relists.
    Expired(Error),
}

/// Where a watch starts.
#[derive(Clone, Debug)]
pub enum From {
    /// At the current position; with synthetic ADDED events for what the user sees now, or without.
    Now { initial_events: bool },
    /// Strictly after this position.
    Position(Position),
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Older than what the log keeps, or made by another process (replica, earlier run): the client relists.
    #[error("resourceVersion {requested} is older than the log's oldest position {oldest}, or not this process's")]
    Expired { requested: String, oldest: u64 },
    #[error("resourceVersion {requested} is ahead of the current position {current}")]
    TooLarge { requested: String, current: u64 },
    /// A watcher that fell more than its buffer behind at `position`, missing `missed` entries: the client relists.
    #[error("the watcher fell {missed} changes behind at {position}")]
    FellBehind { position: u64, missed: u64 },
}

// === impl Error ===

impl Error {
    /// The error for `requested` when the log says it is not answerable, if it is not.
    #[must_use]
    pub fn from_lookup(requested: &impl std::fmt::Display, lookup: &Lookup<'_>) -> Option<Self> {
        let requested = requested.to_string();
        match *lookup {
            Lookup::Expired { oldest } | Lookup::Foreign { oldest } => Some(Error::Expired { requested, oldest }),
            Lookup::TooLarge { current } => Some(Error::TooLarge { requested, current }),
            Lookup::At { .. } => None,
        }
    }
}

/// Whether the log can answer with a state at least as new as `requested` (`resourceVersionMatch=NotOlderThan`, for
/// lists and WatchList): only a position of this process can be ordered against its current one.
///
/// # Errors
/// [`Error::Expired`] for another process's position, [`Error::TooLarge`] for one this process has not reached.
pub fn not_older_than(log: &Log, requested: &Position) -> Result<(), Error> {
    if !log.is_own(requested.after) {
        return Err(Error::Expired {
            requested: requested.to_string(),
            oldest: log.oldest(),
        });
    }
    if requested.after > log.position() {
        return Err(Error::TooLarge {
            requested: requested.to_string(),
            current: log.position(),
        });
    }
    Ok(())
}

/// Which namespaces the watcher's selectors let through.
pub type Filter = Box<dyn Fn(&Namespace) -> bool + Send + Sync>;

/// One watcher's view: what its user may see, as of the last entry it processed. What it has shown its client is not
/// kept: it is exactly what that view and the namespaces at that position let through (kept, it was a map of every
/// shown space per open watch, most of a watch's memory).
pub struct Session {
    /// Shared with the other watches of its user at the same position.
    view: Arc<UserView>,
    filter: Filter,
    views: Arc<SharedViews>,
}

/// A started watch: what to send first, and the live entries to follow.
pub struct Started {
    pub session: Session,
    /// Synthetic ADDED events, then the replay of entries after the starting position.
    pub first: Vec<Item>,
    /// The position the first items bring the client to.
    pub position: u64,
    pub entries: broadcast::Receiver<Arc<Entry>>,
}

// === impl Session ===

impl Session {
    fn new(view: Arc<UserView>, filter: Filter, views: Arc<SharedViews>) -> Self {
        Session { view, filter, views }
    }

    /// `namespace` (named `name`), if this watcher's user sees it and its selectors let it through.
    fn visible<'a>(&self, name: &str, namespace: Option<&'a Arc<Namespace>>) -> Option<&'a Arc<Namespace>> {
        self.visible_in(&self.view, name, namespace)
    }

    /// [`Session::visible`] under `view`.
    fn visible_in<'a>(
        &self,
        view: &UserView,
        name: &str,
        namespace: Option<&'a Arc<Namespace>>,
    ) -> Option<&'a Arc<Namespace>> {
        namespace.filter(|ns| view.sees(name) && (self.filter)(ns))
    }

    /// What the client is shown of `namespaces`, in name order.
    fn shown<'a>(&self, namespaces: &'a Namespaces) -> Vec<&'a Arc<Namespace>> {
        if self.view.sees_all_of_a_cluster() {
            return namespaces
                .iter()
                .filter_map(|(name, ns)| self.visible(name, Some(ns)))
                .collect();
        }
        let mut names: Vec<&String> = self.view.granted_names().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| self.visible(name, namespaces.get(name)))
            .collect()
    }

    /// What one log entry means to this watcher, in namespace-name order. Events for names up to `through` (where a
    /// client was cut off inside this entry) only update this watcher's state and are not sent again. The last event
    /// carries the entry's position; those before it, a position inside the entry.
    pub fn process(&mut self, entry: &Entry, through: Option<&str>, out: &mut Vec<Item>) {
        let first = out.len();
        let mut affected = BTreeSet::new();
        let mut everything = false;
        let mut moves_view = false;
        // A namespace as it was before this entry, for those it changes: the value before its first change here.
        let mut before: HashMap<&str, Option<&Arc<Namespace>>> = HashMap::new();
        for change in &entry.changes {
            match change.effect_on(&self.view) {
                Effect::None => {}
                Effect::One(name) => {
                    moves_view = true;
                    affected.insert(name);
                }
                Effect::All => {
                    moves_view = true;
                    everything = true;
                }
            }
            if let Change::Namespace { name, old } = change {
                affected.insert(name.clone());
                before.entry(name).or_insert(old.as_ref());
            }
        }
        if affected.is_empty() && !everything {
            return;
        }
        if everything {
            // Every namespace there was before the entry is still there, or one of its changes deleted it.
            affected.extend(entry.every_name().cloned());
        }
        let before_of = |name: &str| before.get(name).copied().unwrap_or_else(|| entry.namespace(name));
        let was_view = self.view.clone();
        if moves_view {
            self.view = match self.views.get(self.view.subjects(), entry.position) {
                Some(shared) => shared,
                None => {
                    let mut view = UserView::clone(&self.view);
                    for change in &entry.changes {
                        change.apply_to(&mut view);
                    }
                    self.views.share(entry.position, Arc::new(view))
                }
            };
        }
        for name in affected {
            let was_shown = self.visible_in(&was_view, &name, before_of(&name)).is_some();
            let position = through
                .is_none_or(|through| name.as_str() > through)
                .then(|| Position::inside(entry.position, &name));
            let was = before_of(&name);
            let now = self.visible(&name, entry.namespace(&name));
            let kind = match (was_shown, now) {
                (false, Some(_)) => EventType::Added,
                (true, Some(now)) if !was.is_some_and(|was| Arc::ptr_eq(was, now)) => EventType::Modified,
                (true, None) => EventType::Deleted,
                _ => continue,
            };
            // A space gone from view is told as it is now, or (deleted) as it last was.
            let Some(namespace) = now.or_else(|| entry.namespace(&name)).or(was).cloned() else {
                continue;
            };
            if let Some(position) = position {
                out.push(Item::Event {
                    kind,
                    namespace,
                    position,
                });
            }
        }
        if let Some(Item::Event { position, .. }) = out[first..].last_mut() {
            *position = Position::at(entry.position);
        }
    }
}

/// Starts a watch for `user` from `from`: computes its first items and subscribes to what follows, atomically.
///
/// # Errors
/// When the starting position has left the log or is ahead of it.
pub fn start(cache: &Cache, user: &User, filter: Filter, from: From) -> Result<Started, Error> {
    let state = cache.read();
    let entries = cache.subscribe(&state);
    let subjects = cache.subjects(user);
    let position = state.log.position();
    let views = cache.views().clone();
    let mut first = Vec::new();
    let session = match from {
        From::Now { initial_events } => {
            let view = match views.get(&subjects, position) {
                Some(shared) => shared,
                None => views.share(position, Arc::new(state.view(subjects))),
            };
            let session = Session::new(view, filter, views);
            if initial_events {
                first.extend(
                    session
                        .shown(&state.namespaces)
                        .into_iter()
                        .map(|namespace| Item::Event {
                            kind: EventType::Added,
                            namespace: namespace.clone(),
                            position: Position::at(position),
                        }),
                );
            }
            session
        }
        From::Position(requested) => match state.log.lookup(requested.after, &state.namespaces) {
            // A position inside an entry names one that exists.
            Lookup::At { later, .. } if requested.through.is_some() && later.is_empty() => {
                return Err(Error::TooLarge {
                    requested: requested.to_string(),
                    current: position,
                })
            }
            Lookup::At { later, .. } => {
                // The view now, taken back to the requested position, then replayed forward with the client.
                let mut view = state.view(subjects);
                crate::state::log::undo(&mut view, &later);
                let mut session = Session::new(Arc::new(view), filter, views);
                let mut through = requested.through.as_deref();
                for entry in later {
                    session.process(entry, through.take(), &mut first);
                }
                session
            }
            other => {
                return Err(Error::from_lookup(&requested, &other).unwrap_or(Error::TooLarge {
                    requested: requested.to_string(),
                    current: position,
                }))
            }
        },
    };
    Ok(Started {
        session,
        first,
        position,
        entries,
    })
}

/// How a started watch runs.
pub struct Options {
    pub bookmarks: bool,
    /// Send the `k8s.io/initial-events-end` bookmark after the first items (WatchList).
    pub initial_events_end: bool,
    pub timeout: Duration,
}

/// Streams a started watch into `sink`, each item encoded by `encode`, until the timeout, the client leaving, or the
/// watcher falling behind.
pub async fn run(
    mut started: Started,
    options: Options,
    mut encode: impl FnMut(&Item) -> Bytes,
    sink: mpsc::Sender<Bytes>,
) {
    let deadline = Instant::now() + options.timeout;
    let send = |sink: &mpsc::Sender<Bytes>, bytes: Bytes| {
        let sink = sink.clone();
        async move { matches!(sink.send_timeout(bytes, SEND_TIMEOUT).await, Ok(())) }
    };
    let mut position = started.position;
    let mut first = std::mem::take(&mut started.first);
    if options.initial_events_end {
        first.push(Item::Bookmark {
            position: started.position,
            initial_events_end: true,
        });
    }
    for item in &first {
        if !send(&sink, encode(item)).await {
            return;
        }
    }
    // Not kept for the watch's lifetime: a watch that began with every space of its user would carry them all.
    drop(first);
    let mut bookmarks = tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
    let mut items = Vec::new();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => return,
            () = sink.closed() => return,
            _ = bookmarks.tick(), if options.bookmarks => {
                let bookmark = Item::Bookmark { position, initial_events_end: false };
                if !send(&sink, encode(&bookmark)).await {
                    return;
                }
            }
            received = started.entries.recv() => match received {
                Ok(entry) => {
                    if entry.position <= started.position {
                        continue;
                    }
                    started.session.process(&entry, None, &mut items);
                    position = entry.position;
                    for item in items.drain(..) {
                        if !send(&sink, encode(&item)).await {
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::info!(missed, "Closing a watcher that fell behind");
                    let expired = Item::Expired(Error::FellBehind { position, missed });
                    let _ = send(&sink, encode(&expired)).await;
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests;
