//! Visibility by SubjectAccessReview (`--access-mode=sar`), for clusters whose authorizers are not only RBAC
//! (webhooks): kube-apiserver is asked the question the RBAC index answers — may this identity `get` namespace N in N,
//! or every namespace — and its answers become grants of the identity in the index. Lists, pages, resumes and watches
//! then behave exactly as under RBAC, because they read the same index and the same change log.
//!
//! An identity is reviewed in full when it first asks (that request waits for the answers), then kept current while it
//! is in use: one namespace again when the namespace appears or when RBAC changes a grant of one of its subjects
//! there, and in full every refresh interval, because a webhook's decisions change without telling anyone. It is
//! forgotten when unused for [`IDLE`] with no watch open. kube-apiserver has no batch review, so a batch is the set of
//! questions of one review, asked [`CONCURRENCY`] at a time and applied as one change.
//!
//! Bounded under tenants who mint credentials:
//! - Every token of one account is one identity: the per-credential extra kube-apiserver adds to each token
//!   ([`PER_CREDENTIAL_EXTRA`]) is not part of it, nor of the reviews asked for it.
//! - At most [`MAX_IDENTITIES`] identities are kept; a new one makes room by forgetting the least recently used one
//!   that nothing holds (its answers leave the index). Identities held by an open watch, a request in flight or a
//!   review under way are never forgotten, so the map exceeds the bound only by what is held.
//! - Questions take turns ([`Turns`]): those of a request waiting for its identity's first review before any
//!   refresh or follow-up, and among them one account after another (a ServiceAccount's account is its namespace),
//!   so one tenant's hundred new identities get one share of kube-apiserver, like anyone else's first request.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio::sync::{broadcast, oneshot};
use tokio::time::Instant;

use crate::access::index::{identity_subject, subjects_of, Scope, SubjectKey, PER_CREDENTIAL_EXTRA};
use crate::access::view::connected_part;
use crate::authn::User;
use crate::authz::{Attributes, Authorizer, Decision, Error};
use crate::metrics::ReviewMetrics;
use crate::state::log::{Change, Entry};
use crate::state::{Cache, Update};

/// Questions in flight at once, across all identities.
pub const CONCURRENCY: usize = 16;
/// How long an identity with no request and no open watch stays reviewed.
pub const IDLE: Duration = Duration::from_secs(300);
/// Identities kept reviewed at most, beside those held: each costs a review per namespace every refresh (unless it
/// may get all), and its answers in the index.
pub const MAX_IDENTITIES: usize = 256;
/// Waits before asking again when kube-apiserver's answer contradicts an RBAC change this server has already seen:
/// its authorizer reads RBAC from its own informers, which may be a moment behind ours. 100 ms, doubling, five times
/// (about 3 s in all).
fn catch_up() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_times(5)
        .build()
}

/// One identity in use.
pub struct Identity {
    /// Who is asked about: the first caller of this identity, without [`PER_CREDENTIAL_EXTRA`].
    user: User,
    subject: SubjectKey,
    /// Whose turn its questions take ([`account`]).
    account: String,
    /// Its RBAC subjects, to match the changes the RBAC index reports.
    rbac_subjects: Vec<SubjectKey>,
    reviewed: AtomicBool,
    /// A full review waits for its turn: refreshes slower than their interval queue one more, never a pile.
    refresh_queued: AtomicBool,
    /// Held by a whole review while it asks and applies: one at a time. A change's few questions never wait for it.
    reviewing: tokio::sync::Mutex<()>,
    /// When the answers applied were asked, so that an answer asked earlier never replaces one asked later.
    applied: Mutex<Applied>,
    last_used: Mutex<Instant>,
}

/// When the answers in force for one identity were asked: its last whole review, and each scope asked on its own
/// since then (forgotten by the next whole review asked after it, so this stays as small as the changes between two).
#[derive(Debug, Default)]
struct Applied {
    whole: Option<Instant>,
    scopes: HashMap<Scope, Instant>,
}

// === impl Applied ===

impl Applied {
    /// Keeps the answers asked at `asked` that nothing applied was asked after, and records them as in force.
    fn admit(&mut self, asked: Instant, whole: bool, answers: Vec<(Scope, bool)>) -> Vec<(Scope, bool)> {
        let newer_whole = !whole && self.whole.is_some_and(|at| at > asked);
        let answers: Vec<(Scope, bool)> = answers
            .into_iter()
            .filter(|(scope, _)| !newer_whole && self.scopes.get(scope).is_none_or(|at| *at <= asked))
            .collect();
        if whole {
            self.whole = self.whole.max(Some(asked));
            self.scopes.retain(|_, at| *at > asked);
        } else {
            for (scope, _) in &answers {
                self.scopes.insert(scope.clone(), asked);
            }
        }
        answers
    }
}

/// Keeps an identity reviewed while held: a watch holds it for as long as it is open.
pub type Hold = Arc<Identity>;

/// What to ask again for one identity.
#[derive(Debug, Default)]
struct Questions {
    whole: bool,
    names: BTreeSet<String>,
    /// The scopes an RBAC change touched: their answers must agree with the RBAC index, once kube-apiserver caught up.
    rbac: BTreeSet<Scope>,
}

/// Which questions go first: those a request or an open watch waits for (first reviews, the few questions of an RBAC
/// change), then whole reviews (refreshes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    First = 0,
    Later = 1,
}

pub struct Reviewer {
    authorizer: Arc<Authorizer>,
    cache: Arc<Cache>,
    refresh: Duration,
    limit: usize,
    identities: Mutex<HashMap<SubjectKey, Hold>>,
    turns: Turns,
    metrics: ReviewMetrics,
}

// === impl Reviewer ===

impl Reviewer {
    #[must_use]
    pub fn new(authorizer: Arc<Authorizer>, cache: Arc<Cache>, refresh: Duration, metrics: ReviewMetrics) -> Arc<Self> {
        Self::with_limit(authorizer, cache, refresh, metrics, MAX_IDENTITIES)
    }

    /// [`Reviewer::new`] keeping at most `limit` identities (beside those held).
    #[must_use]
    pub fn with_limit(
        authorizer: Arc<Authorizer>,
        cache: Arc<Cache>,
        refresh: Duration,
        metrics: ReviewMetrics,
        limit: usize,
    ) -> Arc<Self> {
        Arc::new(Reviewer {
            authorizer,
            cache,
            refresh,
            limit: limit.max(1),
            identities: Mutex::new(HashMap::new()),
            turns: Turns::new(CONCURRENCY),
            metrics,
        })
    }

    /// Makes sure `user`'s identity has been reviewed, waiting for its first review if needed.
    ///
    /// # Errors
    /// When kube-apiserver cannot answer the first review.
    pub async fn hold(&self, user: &User) -> Result<Hold, Error> {
        let identity = {
            let key = identity_subject(user);
            let mut identities = self.identities.lock();
            let identity = if let Some(identity) = identities.get(&key) {
                identity.clone()
            } else {
                self.make_room(&mut identities);
                let mut user = user.clone();
                user.extra
                    .retain(|key, _| !PER_CREDENTIAL_EXTRA.contains(&key.as_str()));
                let identity = Arc::new(Identity {
                    account: account(&user),
                    rbac_subjects: subjects_of(&user),
                    user,
                    subject: key.clone(),
                    reviewed: AtomicBool::new(false),
                    refresh_queued: AtomicBool::new(false),
                    reviewing: tokio::sync::Mutex::new(()),
                    applied: Mutex::new(Applied::default()),
                    last_used: Mutex::new(Instant::now()),
                });
                identities.insert(key, identity.clone());
                identity
            };
            self.metrics
                .identities
                .set(i64::try_from(identities.len()).unwrap_or(i64::MAX));
            identity
        };
        *identity.last_used.lock() = Instant::now();
        if !identity.reviewed.load(Ordering::Acquire) {
            let _reviewing = identity.reviewing.lock().await;
            if !identity.reviewed.load(Ordering::Acquire) {
                self.review(
                    &identity,
                    &Questions {
                        whole: true,
                        ..Questions::default()
                    },
                    Class::First,
                )
                .await?;
                identity.reviewed.store(true, Ordering::Release);
            }
        }
        Ok(identity)
    }

    /// Keeps every identity in use current until the cache's change stream ends.
    pub async fn run(self: Arc<Self>) {
        let mut entries = {
            let state = self.cache.read();
            self.cache.subscribe(&state)
        };
        let mut refresh = tokio::time::interval_at(Instant::now() + self.refresh, self.refresh);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = refresh.tick() => {
                    self.forget_idle();
                    self.review_all();
                }
                received = entries.recv() => match received {
                    Ok(entry) => self.follow(&entry),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.review_all(),
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }

    /// Every identity in use, including those whose first review is under way: a change that review may have missed
    /// is asked about at once, and whichever answer was asked last stays in force ([`Applied`]).
    fn identities_in_use(&self) -> Vec<Hold> {
        self.identities.lock().values().cloned().collect()
    }

    fn review_all(self: &Arc<Self>) {
        for identity in self.identities_in_use() {
            if identity.refresh_queued.swap(true, Ordering::AcqRel) {
                continue;
            }
            self.spawn_review(
                identity,
                Questions {
                    whole: true,
                    ..Questions::default()
                },
            );
        }
    }

    /// What a change-log entry may have changed for identities in use: new namespaces, and RBAC grants of their
    /// subjects.
    fn follow(self: &Arc<Self>, entry: &Entry) {
        let identities = self.identities_in_use();
        if identities.is_empty() {
            return;
        }
        // An identity allowed every namespace needs no answer for a new one.
        let named: Vec<&Hold> = {
            let state = self.cache.read();
            identities
                .iter()
                .filter(|identity| !state.management.index.has_all(std::slice::from_ref(&identity.subject)))
                .collect()
        };
        let mut questions: HashMap<SubjectKey, Questions> = HashMap::new();
        for change in &entry.changes {
            match change {
                // Connected clusters' spaces are decided by their RBAC, never by a review sent here.
                Change::Namespace { name, old: None }
                    if entry.namespace(name).is_some() && connected_part(name).is_none() =>
                {
                    for identity in &named {
                        questions
                            .entry(identity.subject.clone())
                            .or_default()
                            .names
                            .insert(name.clone());
                    }
                }
                Change::Namespace { .. } | Change::Connected { .. } => {}
                Change::Access(access) => {
                    if matches!(access.subject, SubjectKey::Reviewed(_)) {
                        continue;
                    }
                    for identity in identities.iter().filter(|i| i.rbac_subjects.contains(&access.subject)) {
                        let questions = questions.entry(identity.subject.clone()).or_default();
                        questions.rbac.insert(access.scope.clone());
                        match &access.scope {
                            Scope::All => questions.whole = true,
                            Scope::One(name) => {
                                questions.names.insert(name.clone());
                            }
                        }
                    }
                }
            }
        }
        for identity in identities {
            if let Some(questions) = questions.remove(&identity.subject) {
                self.spawn_review(identity, questions);
            }
        }
    }

    fn spawn_review(self: &Arc<Self>, identity: Hold, questions: Questions) {
        let reviewer = self.clone();
        tokio::spawn(async move {
            // A change's questions are answered beside a whole review under way, not after it: under a webhook
            // authorizer every identity's refresh asks about every namespace, which may take longer than a watcher
            // should wait to see a new namespace.
            let _reviewing = if questions.whole {
                let reviewing = identity.reviewing.lock().await;
                identity.refresh_queued.store(false, Ordering::Release);
                Some(reviewing)
            } else {
                None
            };
            // A change's few questions are waited on by a watcher (within a second); a whole review is background.
            let class = if questions.whole { Class::Later } else { Class::First };
            if let Err(error) = reviewer.review(&identity, &questions, class).await {
                tracing::warn!(%error, user = %identity.user.name, "Keeping the previous answers for this user");
            }
        });
    }

    /// Asks `questions` for `identity` and applies the answers. Answers about scopes an RBAC change touched that
    /// contradict what the RBAC index now says for the identity's RBAC subjects are asked again after each of
    /// [`CATCH_UP`]'s waits, for kube-apiserver's authorizer to catch up.
    async fn review(&self, identity: &Identity, questions: &Questions, class: Class) -> Result<(), Error> {
        let mut asked = Instant::now();
        let mut answers = if questions.whole {
            self.whole(identity, class).await?
        } else {
            self.ask_names(identity, questions.names.iter().cloned(), class).await?
        };
        let mut whole = questions.whole;
        let mut waits = catch_up();
        loop {
            let disputed: Vec<Scope> = {
                let state = self.cache.read();
                answers
                    .iter()
                    .filter(|(scope, allowed)| {
                        questions.rbac.contains(scope)
                            && match scope {
                                Scope::All => state.management.index.has_all(&identity.rbac_subjects) != *allowed,
                                Scope::One(name) => {
                                    state.namespaces.contains_key(name)
                                        && state.management.index.may_get(&identity.rbac_subjects, name) != *allowed
                                }
                            }
                    })
                    .map(|(scope, _)| scope.clone())
                    .collect()
            };
            {
                // Admitted and applied under one lock: no answer asked later can be applied in between.
                let mut applied = identity.applied.lock();
                let answers = applied.admit(asked, whole, std::mem::take(&mut answers));
                self.cache.apply(Update::Reviewed {
                    subject: identity.subject.clone(),
                    answers,
                });
            }
            let Some(wait) = waits.next().filter(|_| !disputed.is_empty()) else {
                return Ok(());
            };
            tokio::time::sleep(wait).await;
            (asked, whole) = (Instant::now(), false);
            for scope in disputed {
                let allowed = self.ask(identity, &scope, class).await?;
                answers.push((scope, allowed));
            }
        }
    }

    /// Every answer for `identity`: all namespaces at once when allowed, each existing one otherwise; grants of names
    /// that no longer exist are dropped.
    async fn whole(&self, identity: &Identity, class: Class) -> Result<Vec<(Scope, bool)>, Error> {
        let all = self.ask(identity, &Scope::All, class).await?;
        let (existing, held): (Vec<String>, Vec<String>) = {
            let state = self.cache.read();
            let (_, held) = state.management.index.subject_view(&identity.subject);
            let held = held.into_iter().filter(|n| all || !state.namespaces.contains_key(n));
            (state.management.namespaces.keys().cloned().collect(), held.collect())
        };
        let mut answers = vec![(Scope::All, all)];
        answers.extend(held.into_iter().map(|name| (Scope::One(name), false)));
        if !all {
            answers.extend(self.ask_names(identity, existing.into_iter(), class).await?);
        }
        Ok(answers)
    }

    async fn ask_names(
        &self,
        identity: &Identity,
        names: impl Iterator<Item = String>,
        class: Class,
    ) -> Result<Vec<(Scope, bool)>, Error> {
        futures::stream::iter(names.map(Scope::One))
            .map(|scope| async move {
                let allowed = self.ask(identity, &scope, class).await?;
                Ok::<_, Error>((scope, allowed))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// May `identity` get the namespace, or all namespaces?
    async fn ask(&self, identity: &Identity, scope: &Scope, class: Class) -> Result<bool, Error> {
        let _turn = self.turns.take(&identity.account, class).await;
        let name = match scope {
            Scope::All => String::new(),
            Scope::One(name) => name.clone(),
        };
        let attributes = Attributes::Namespace {
            verb: "get".to_owned(),
            name,
        };
        let answer = self.authorizer.ask(&identity.user, &attributes).await;
        let result = match &answer {
            Ok(Decision::Allow) => "allowed",
            Ok(Decision::Deny(_)) => "denied",
            Err(_) => "error",
        };
        self.metrics.reviews.with_label_values(&[result]).inc();
        Ok(answer? == Decision::Allow)
    }

    /// Forgets identities nobody has used for [`IDLE`] and nothing holds.
    fn forget_idle(&self) {
        let mut identities = self.identities.lock();
        let idle: Vec<SubjectKey> = identities
            .iter()
            .filter(|(_, identity)| unheld(identity) && identity.last_used.lock().elapsed() > IDLE)
            .map(|(key, _)| key.clone())
            .collect();
        for key in idle {
            self.forget(&mut identities, key);
        }
        self.metrics
            .identities
            .set(i64::try_from(identities.len()).unwrap_or(i64::MAX));
    }

    /// Forgets the least recently used identities nothing holds until a new one fits in [`Reviewer::limit`].
    fn make_room(&self, identities: &mut HashMap<SubjectKey, Hold>) {
        while identities.len() >= self.limit {
            let Some(oldest) = identities
                .iter()
                .filter(|(_, identity)| unheld(identity))
                .min_by_key(|(_, identity)| *identity.last_used.lock())
                .map(|(key, _)| key.clone())
            else {
                return;
            };
            self.forget(identities, oldest);
        }
    }

    /// Drops an identity and its answers. Under the identities' lock, so that the same identity asked for again starts
    /// afresh after its old answers are gone.
    fn forget(&self, identities: &mut HashMap<SubjectKey, Hold>, subject: SubjectKey) {
        identities.remove(&subject);
        self.cache.apply(Update::Forget(subject));
    }
}

/// Nothing but the identities' map holds it: no watch, no request in flight, no review under way. Checked under the
/// map's lock, which every new holder takes to get it.
fn unheld(identity: &Hold) -> bool {
    Arc::strong_count(identity) == 1
}

/// Whose turn an identity's questions take: a ServiceAccount's namespace (a tenant who may create ServiceAccounts
/// there can mint any number of identities), otherwise the user's name.
fn account(user: &User) -> String {
    match user.name.strip_prefix("system:serviceaccount:") {
        Some(rest) => format!("system:serviceaccount:{}", rest.split(':').next().unwrap_or_default()),
        None => user.name.clone(),
    }
}

/// [`CONCURRENCY`] questions in flight, handed out fairly: a question a request waits for before any other, and within
/// each class one account after another (round robin; an account's own questions in the order asked). An account
/// with a hundred identities in their first review thus gets as many turns as one with a single identity.
struct Turns {
    shared: Arc<TurnsShared>,
}

struct TurnsShared {
    queues: Mutex<Queues>,
}

struct Queues {
    free: usize,
    /// By [`Class`].
    classes: [Accounts; 2],
}

/// Waiting questions of one class, by account; `order` holds each account with waiting questions once.
#[derive(Default)]
struct Accounts {
    order: VecDeque<String>,
    waiting: HashMap<String, VecDeque<oneshot::Sender<Turn>>>,
}

/// One question's turn; the next waiting question gets it when dropped.
struct Turn {
    shared: Option<Arc<TurnsShared>>,
}

impl Turns {
    fn new(concurrency: usize) -> Self {
        Turns {
            shared: Arc::new(TurnsShared {
                queues: Mutex::new(Queues {
                    free: concurrency,
                    classes: [Accounts::default(), Accounts::default()],
                }),
            }),
        }
    }

    async fn take(&self, account: &str, class: Class) -> Turn {
        let waiting = {
            let mut queues = self.shared.queues.lock();
            // Free turns exist only while nobody waits: a returned turn goes to a waiting question first.
            if queues.free > 0 {
                queues.free -= 1;
                return Turn {
                    shared: Some(self.shared.clone()),
                };
            }
            let (sender, receiver) = oneshot::channel();
            queues.classes[class as usize].push(account, sender);
            receiver
        };
        // The sender is only ever dropped after its receiver (`TurnsShared::pass` sends or finds it gone), and both
        // live in `self`, borrowed for this wait; a turn that cannot arrive is none to give back.
        waiting.await.unwrap_or(Turn { shared: None })
    }
}

impl TurnsShared {
    /// Hands a returned turn to the next waiting question still waiting, or frees it.
    fn pass(self: Arc<Self>) {
        let mut queues = self.queues.lock();
        while let Some(waiter) = queues.next() {
            match waiter.send(Turn {
                shared: Some(self.clone()),
            }) {
                Ok(()) => return,
                // Its request went away; the turn is not dropped here, or it would be passed again.
                Err(mut turn) => turn.shared = None,
            }
        }
        queues.free += 1;
    }
}

impl Queues {
    fn next(&mut self) -> Option<oneshot::Sender<Turn>> {
        self.classes.iter_mut().find_map(Accounts::next)
    }
}

impl Accounts {
    fn push(&mut self, account: &str, waiter: oneshot::Sender<Turn>) {
        if let Some(queue) = self.waiting.get_mut(account) {
            queue.push_back(waiter);
        } else {
            self.waiting.insert(account.to_owned(), VecDeque::from([waiter]));
            self.order.push_back(account.to_owned());
        }
    }

    /// The first waiter of the account whose turn it is; that account goes last.
    fn next(&mut self) -> Option<oneshot::Sender<Turn>> {
        let account = self.order.pop_front()?;
        let queue = self.waiting.get_mut(&account)?;
        let waiter = queue.pop_front();
        if queue.is_empty() {
            self.waiting.remove(&account);
        } else {
            self.order.push_back(account);
        }
        waiter
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            shared.pass();
        }
    }
}

#[cfg(test)]
mod tests;
