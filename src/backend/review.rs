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

use backon::{BackoffBuilder, ExponentialBuilder};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use parking_lot::Mutex;
use tokio::sync::{broadcast, Semaphore};
use tokio::time::Instant;

use crate::access::index::{identity_subject, subjects_of, Scope, SubjectKey};
use crate::authn::User;
use crate::authz::{Attributes, Authorizer, Decision, Error};
use crate::metrics::ReviewMetrics;
use crate::state::log::{Change, Entry};
use crate::state::{Cache, Update};

/// Questions in flight at once, across all identities.
pub const CONCURRENCY: usize = 16;
/// How long an identity with no request and no open watch stays reviewed.
pub const IDLE: Duration = Duration::from_secs(300);
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
    user: User,
    subject: SubjectKey,
    /// Its RBAC subjects, to match the changes the RBAC index reports.
    rbac_subjects: Vec<SubjectKey>,
    reviewed: AtomicBool,
    /// A full review waits for its turn: refreshes slower than their interval queue one more, never a pile.
    refresh_queued: AtomicBool,
    /// Held while answers are asked and applied, so that the last answer applied is the last one asked.
    reviewing: tokio::sync::Mutex<()>,
    last_used: Mutex<Instant>,
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

pub struct Reviewer {
    authorizer: Arc<Authorizer>,
    cache: Arc<Cache>,
    refresh: Duration,
    identities: Mutex<HashMap<SubjectKey, Hold>>,
    asking: Semaphore,
    metrics: ReviewMetrics,
}

// === impl Reviewer ===

impl Reviewer {
    #[must_use]
    pub fn new(authorizer: Arc<Authorizer>, cache: Arc<Cache>, refresh: Duration, metrics: ReviewMetrics) -> Arc<Self> {
        Arc::new(Reviewer {
            authorizer,
            cache,
            refresh,
            identities: Mutex::new(HashMap::new()),
            asking: Semaphore::new(CONCURRENCY),
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
            let identity = identities
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Identity {
                        user: user.clone(),
                        subject: key,
                        rbac_subjects: subjects_of(user),
                        reviewed: AtomicBool::new(false),
                        refresh_queued: AtomicBool::new(false),
                        reviewing: tokio::sync::Mutex::new(()),
                        last_used: Mutex::new(Instant::now()),
                    })
                })
                .clone();
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

    /// Every identity in use, including those whose first review is under way: a change it missed is asked about
    /// once that review is done (the questions wait for its lock).
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
                .filter(|identity| !state.index.has_all(std::slice::from_ref(&identity.subject)))
                .collect()
        };
        let mut questions: HashMap<SubjectKey, Questions> = HashMap::new();
        for change in &entry.changes {
            match change {
                Change::Namespace { name, old: None } if entry.namespaces.contains_key(name) => {
                    for identity in &named {
                        questions
                            .entry(identity.subject.clone())
                            .or_default()
                            .names
                            .insert(name.clone());
                    }
                }
                Change::Namespace { .. } => {}
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
            let _reviewing = identity.reviewing.lock().await;
            if questions.whole {
                identity.refresh_queued.store(false, Ordering::Release);
            }
            if let Err(error) = reviewer.review(&identity, &questions).await {
                tracing::warn!(%error, user = %identity.user.name, "Keeping the previous answers for this user");
            }
        });
    }

    /// Asks `questions` for `identity` and applies the answers. Answers about scopes an RBAC change touched that
    /// contradict what the RBAC index now says for the identity's RBAC subjects are asked again after each of
    /// [`CATCH_UP`]'s waits, for kube-apiserver's authorizer to catch up.
    async fn review(&self, identity: &Identity, questions: &Questions) -> Result<(), Error> {
        let mut answers = if questions.whole {
            self.whole(identity).await?
        } else {
            self.ask_names(identity, questions.names.iter().cloned()).await?
        };
        let mut waits = catch_up();
        loop {
            let disputed: Vec<Scope> = {
                let state = self.cache.read();
                answers
                    .iter()
                    .filter(|(scope, allowed)| {
                        questions.rbac.contains(scope)
                            && match scope {
                                Scope::All => state.index.has_all(&identity.rbac_subjects) != *allowed,
                                Scope::One(name) => {
                                    state.namespaces.contains_key(name)
                                        && state.index.may_get(&identity.rbac_subjects, name) != *allowed
                                }
                            }
                    })
                    .map(|(scope, _)| scope.clone())
                    .collect()
            };
            self.cache.apply(Update::Reviewed {
                subject: identity.subject.clone(),
                answers: std::mem::take(&mut answers),
            });
            let Some(wait) = waits.next().filter(|_| !disputed.is_empty()) else {
                return Ok(());
            };
            tokio::time::sleep(wait).await;
            for scope in disputed {
                let allowed = self.ask(identity, &scope).await?;
                answers.push((scope, allowed));
            }
        }
    }

    /// Every answer for `identity`: all namespaces at once when allowed, each existing one otherwise; grants of names
    /// that no longer exist are dropped.
    async fn whole(&self, identity: &Identity) -> Result<Vec<(Scope, bool)>, Error> {
        let all = self.ask(identity, &Scope::All).await?;
        let (existing, held): (Vec<String>, Vec<String>) = {
            let state = self.cache.read();
            let (_, held) = state.index.subject_view(&identity.subject);
            let held = held.into_iter().filter(|n| all || !state.namespaces.contains_key(n));
            (state.namespaces.keys().cloned().collect(), held.collect())
        };
        let mut answers = vec![(Scope::All, all)];
        answers.extend(held.into_iter().map(|name| (Scope::One(name), false)));
        if !all {
            answers.extend(self.ask_names(identity, existing.into_iter()).await?);
        }
        Ok(answers)
    }

    async fn ask_names(
        &self,
        identity: &Identity,
        names: impl Iterator<Item = String>,
    ) -> Result<Vec<(Scope, bool)>, Error> {
        futures::stream::iter(names.map(Scope::One))
            .map(|scope| async move {
                let allowed = self.ask(identity, &scope).await?;
                Ok::<_, Error>((scope, allowed))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await
    }

    /// May `identity` get the namespace, or all namespaces?
    async fn ask(&self, identity: &Identity, scope: &Scope) -> Result<bool, Error> {
        let _permit = self.asking.acquire().await;
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

    /// Forgets identities nobody has used for [`IDLE`] and no watch holds.
    fn forget_idle(&self) {
        let forgotten: Vec<SubjectKey> = {
            let mut identities = self.identities.lock();
            let idle: Vec<SubjectKey> = identities
                .iter()
                .filter(|(_, identity)| Arc::strong_count(identity) == 1 && identity.last_used.lock().elapsed() > IDLE)
                .map(|(key, _)| key.clone())
                .collect();
            for key in &idle {
                identities.remove(key);
            }
            self.metrics
                .identities
                .set(i64::try_from(identities.len()).unwrap_or(i64::MAX));
            idle
        };
        for subject in forgotten {
            self.cache.apply(Update::Forget(subject));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::index::{AccessChange, Index};

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.to_owned(),
            uid: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            extra: std::collections::BTreeMap::new(),
        }
    }

    #[test]
    fn disputed_answers_are_asked_again_for_about_three_seconds() {
        let waits: Vec<u64> = catch_up()
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600]);
    }

    #[test]
    fn an_identity_is_its_name_uid_group_set_and_extra() {
        assert_eq!(
            identity_subject(&user("u", &["a", "b"])),
            identity_subject(&user("u", &["b", "a", "a"]))
        );
        assert_ne!(
            identity_subject(&user("u", &["a"])),
            identity_subject(&user("u", &["a", "b"]))
        );
        assert_ne!(identity_subject(&user("u", &[])), identity_subject(&user("v", &[])));
        let mut with_extra = user("u", &[]);
        with_extra.extra.insert("scopes".to_owned(), vec!["x".to_owned()]);
        assert_ne!(identity_subject(&with_extra), identity_subject(&user("u", &[])));
    }

    #[test]
    fn answers_are_grants_that_change_only_when_the_answer_does_and_can_be_forgotten() {
        let mut index = Index::default();
        let me = identity_subject(&user("u", &[]));
        let one = Scope::One("n1".to_owned());
        let mut changes = Vec::new();
        index.set_reviewed(&me, &one, true, &mut changes);
        index.set_reviewed(&me, &one, true, &mut changes);
        assert_eq!(
            changes,
            [AccessChange {
                subject: me.clone(),
                scope: one.clone(),
                gained: true
            }]
        );
        assert!(index.may_get(std::slice::from_ref(&me), "n1"));
        assert!(!index.may_get(std::slice::from_ref(&me), "n2"));

        changes.clear();
        index.set_reviewed(&me, &Scope::All, true, &mut changes);
        assert!(index.may_get(std::slice::from_ref(&me), "n2"));
        index.forget(&me, &mut changes);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes[1..].iter().all(|c| !c.gained));
        assert!(!index.may_get(std::slice::from_ref(&me), "n1"));
        assert_eq!(index.subject_view(&me), (false, std::collections::HashSet::new()));

        changes.clear();
        index.set_reviewed(&me, &one, false, &mut changes);
        assert!(changes.is_empty());
    }
}
