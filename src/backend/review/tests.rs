use std::convert::Infallible;
use std::pin::pin;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use futures::{poll, FutureExt};
use http_body_util::{BodyExt, Full};
use kube::runtime::watcher::Event;

use super::*;
use crate::access::index::{AccessChange, Index};
use crate::fixtures::namespace;

const CREDENTIAL_ID: &str = "authentication.kubernetes.io/credential-id";

fn with_extra(mut user: User, key: &str, value: &str) -> User {
    user.extra.insert(key.to_owned(), vec![value.to_owned()]);
    user
}

/// A reviewer over a cache of `namespaces` namespaces, whose authorizer allows each namespace by name but not all
/// at once, and counts the reviews it answers.
fn reviewer(namespaces: usize, limit: usize) -> (Arc<Reviewer>, Arc<Cache>, Arc<AtomicUsize>) {
    reviewer_answering(namespaces, limit, |name| {
        let allowed = name.is_some();
        async move { allowed }.boxed()
    })
}

/// A reviewer whose authorizer answers a question about a namespace (`None`: all of them) with `answer`.
fn reviewer_answering(
    namespaces: usize,
    limit: usize,
    answer: impl Fn(Option<String>) -> futures::future::BoxFuture<'static, bool> + Send + Sync + 'static,
) -> (Arc<Reviewer>, Arc<Cache>, Arc<AtomicUsize>) {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let answer = Arc::new(answer);
    let client = kube::Client::new(
        tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let (counter, answer) = (counter.clone(), answer.clone());
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                let sent: serde_json::Value =
                    serde_json::from_slice(&request.into_body().collect().await.expect("body").to_bytes())
                        .expect("a review");
                let mut review = sent.clone();
                let name = sent["spec"]["resourceAttributes"]["name"].as_str().map(str::to_owned);
                review["status"] = serde_json::json!({ "allowed": answer(name).await });
                Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(review.to_string()))))
            }
        }),
        "default",
    );
    let cache = Arc::new(Cache::new());
    for i in 0..namespaces {
        cache.apply(Update::Namespace(Event::Apply(namespace(&format!("ns-{i}"), 1))));
    }
    let reviewer = Reviewer::with_limit(
        Arc::new(Authorizer::new(client)),
        cache.clone(),
        Duration::from_secs(30),
        ReviewMetrics::register(&prometheus::Registry::new()),
        limit,
    );
    (reviewer, cache, asked)
}

fn grants(cache: &Cache, user: &User) -> BTreeSet<String> {
    cache
        .read()
        .management
        .index
        .subject_view(&identity_subject(user))
        .1
        .into_iter()
        .collect()
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not within 2 s: {what}");
}

/// A refresh may take long (one question per namespace for every identity in use). The questions of a change are
/// answered beside it, and the refresh, asked before them, does not undo their answers when it ends.
#[tokio::test]
async fn a_changes_questions_do_not_wait_for_a_refresh_under_way_nor_get_undone_by_it() {
    let (open, gate) = tokio::sync::watch::channel(true);
    let allowed: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new((0..3).map(|i| format!("ns-{i}")).collect()));
    let (reviewer, cache, asked) = reviewer_answering(3, 8, {
        let allowed = allowed.clone();
        move |name| {
            let mut gate = gate.clone();
            let allowed = allowed.clone();
            async move {
                let Some(name) = name else { return false };
                // What kube-apiserver answers is decided when the question arrives, however long it then takes.
                let answer = allowed.lock().contains(&name);
                if name == "ns-0" {
                    gate.wait_for(|open| *open).await.expect("gate");
                }
                answer
            }
            .boxed()
        }
    });
    let alice = user("alice", &[]);
    let identity = reviewer.hold(&alice).await.expect("reviewed");
    assert_eq!(grants(&cache, &alice).len(), 3);

    open.send_replace(false);
    reviewer.review_all();
    // The refresh has asked about every namespace: all of them and the three names.
    eventually("the refresh asked", || asked.load(Ordering::Relaxed) == 4 + 4).await;
    allowed.lock().remove("ns-1");
    allowed.lock().insert("ns-new".to_owned());
    cache.apply(Update::Namespace(Event::Apply(namespace("ns-new", 1))));
    reviewer.spawn_review(
        identity.clone(),
        Questions {
            names: ["ns-1".to_owned(), "ns-new".to_owned()].into(),
            ..Questions::default()
        },
    );
    let expected: BTreeSet<String> = ["ns-0", "ns-2", "ns-new"].map(str::to_owned).into();
    eventually("the change's answers while the refresh waits", || {
        grants(&cache, &alice) == expected
    })
    .await;

    let before = identity.applied.lock().whole;
    open.send_replace(true);
    eventually("the refresh ends", || identity.applied.lock().whole != before).await;
    assert_eq!(
        grants(&cache, &alice),
        expected,
        "the refresh asked about ns-1 before it was revoked"
    );
    assert_eq!(
        identity.applied.lock().scopes.len(),
        2,
        "kept until a refresh asked after them ends"
    );

    let before = identity.applied.lock().whole;
    reviewer.review_all();
    eventually("the next refresh ends", || identity.applied.lock().whole != before).await;
    assert_eq!(grants(&cache, &alice), expected);
    assert!(
        identity.applied.lock().scopes.is_empty(),
        "{:?}",
        identity.applied.lock()
    );
}

fn granted(cache: &Cache, user: &User) -> usize {
    cache
        .read()
        .management
        .index
        .subject_view(&identity_subject(user))
        .1
        .len()
}

#[test]
fn tokens_of_one_account_are_one_identity_but_its_pod_is_part_of_it() {
    let sa = user("system:serviceaccount:team:robot", &["system:serviceaccounts"]);
    let one = with_extra(sa.clone(), CREDENTIAL_ID, "JTI=1");
    let two = with_extra(sa.clone(), CREDENTIAL_ID, "JTI=2");
    assert_eq!(identity_subject(&one), identity_subject(&two));
    assert_eq!(identity_subject(&one), identity_subject(&sa));
    let in_pod = with_extra(one.clone(), "authentication.kubernetes.io/pod-name", "p");
    assert_ne!(identity_subject(&in_pod), identity_subject(&one));
    assert_eq!(
        identity_subject(&in_pod),
        identity_subject(&with_extra(
            with_extra(sa, "authentication.kubernetes.io/pod-name", "p"),
            CREDENTIAL_ID,
            "JTI=3"
        ))
    );
}

#[test]
fn a_service_accounts_turns_are_its_namespaces() {
    assert_eq!(
        account(&user("system:serviceaccount:team:robot", &[])),
        "system:serviceaccount:team"
    );
    assert_eq!(account(&user("alice", &[])), "alice");
}

#[tokio::test]
async fn many_tokens_of_one_account_cause_one_set_of_reviews() {
    let (reviewer, cache, asked) = reviewer(10, 8);
    let sa = user("system:serviceaccount:team:robot", &[]);
    let holds = futures::future::join_all(
        (0..100)
            .map(|i| with_extra(sa.clone(), CREDENTIAL_ID, &format!("JTI={i}")))
            .map(|token| {
                let reviewer = reviewer.clone();
                async move { reviewer.hold(&token).await.expect("reviewed") }
            }),
    )
    .await;
    assert_eq!(
        asked.load(Ordering::Relaxed),
        11,
        "one for all namespaces, one per namespace"
    );
    assert_eq!(reviewer.identities.lock().len(), 1);
    assert!(
        holds[0].user.extra.is_empty(),
        "asked without a token's id: {:?}",
        holds[0].user
    );
    assert_eq!(granted(&cache, &sa), 10);
}

#[tokio::test]
async fn the_least_recently_used_identity_nothing_holds_is_forgotten_first() {
    let (reviewer, cache, asked) = reviewer(3, 2);
    let [a, b, c] = [user("a", &[]), user("b", &[]), user("c", &[])];
    drop(reviewer.hold(&a).await.expect("reviewed"));
    drop(reviewer.hold(&b).await.expect("reviewed"));
    drop(reviewer.hold(&a).await.expect("reviewed"));
    assert_eq!(asked.load(Ordering::Relaxed), 8, "a and b once each");
    // b was used least recently: c takes its place, and b's answers leave the index.
    drop(reviewer.hold(&c).await.expect("reviewed"));
    assert_eq!(
        (granted(&cache, &a), granted(&cache, &b), granted(&cache, &c)),
        (3, 0, 3)
    );
    assert!(!reviewer.identities.lock().contains_key(&identity_subject(&b)));

    // A held identity (an open watch) stays, even when it is the oldest and the map is full.
    let watching = reviewer.hold(&a).await.expect("reviewed");
    drop(reviewer.hold(&c).await.expect("reviewed"));
    drop(reviewer.hold(&b).await.expect("reviewed"));
    assert_eq!(
        (granted(&cache, &a), granted(&cache, &b), granted(&cache, &c)),
        (3, 3, 0)
    );
    let d = user("d", &[]);
    let also_held = reviewer.hold(&b).await.expect("reviewed");
    drop(reviewer.hold(&d).await.expect("reviewed"));
    assert_eq!(
        reviewer.identities.lock().len(),
        3,
        "over the limit only by what is held"
    );
    drop((watching, also_held));
    drop(reviewer.hold(&c).await.expect("reviewed"));
    assert_eq!(reviewer.identities.lock().len(), 2);
}

#[tokio::test]
async fn waiting_requests_go_first_and_accounts_take_turns() {
    let turns = Turns::new(1);
    let held = turns.take("x", Class::Later).await;
    let mut later = pin!(turns.take("a", Class::Later));
    let mut a1 = pin!(turns.take("a", Class::First));
    let mut a2 = pin!(turns.take("a", Class::First));
    let mut a3 = pin!(turns.take("a", Class::First));
    let mut b1 = pin!(turns.take("b", Class::First));
    let gone = turns.take("c", Class::First);
    for waiting in [
        poll!(later.as_mut()),
        poll!(a1.as_mut()),
        poll!(a2.as_mut()),
        poll!(a3.as_mut()),
        poll!(b1.as_mut()),
    ] {
        assert!(waiting.is_pending());
    }
    {
        let mut gone = pin!(gone);
        assert!(poll!(gone.as_mut()).is_pending());
    }
    drop(held);
    // The order: a1, b1 (the accounts alternate), a2, a3, then the refresh; c's request went away.
    let std::task::Poll::Ready(turn) = poll!(a1.as_mut()) else {
        panic!("a's first question goes first")
    };
    assert!(poll!(b1.as_mut()).is_pending());
    drop(turn);
    assert!(poll!(a2.as_mut()).is_pending(), "b's turn");
    let std::task::Poll::Ready(turn) = poll!(b1.as_mut()) else {
        panic!("b goes second")
    };
    drop(turn);
    let std::task::Poll::Ready(turn) = poll!(a2.as_mut()) else {
        panic!("then a again")
    };
    drop(turn);
    let std::task::Poll::Ready(turn) = poll!(a3.as_mut()) else {
        panic!("and a")
    };
    assert!(poll!(later.as_mut()).is_pending());
    drop(turn);
    let std::task::Poll::Ready(turn) = poll!(later.as_mut()) else {
        panic!("the refresh last")
    };
    drop(turn);
    assert_eq!(turns.shared.queues.lock().free, 1, "the skipped turn was given back");
}

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
fn an_identity_is_its_name_uid_group_set_and_extra_but_a_tokens_id() {
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
