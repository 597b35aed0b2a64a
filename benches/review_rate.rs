//! `--access-mode=sar` at S10k (10,000 namespaces): how many SubjectAccessReviews identities cost, and how fast the
//! reviewer asks them. kube-apiserver is played in process by a `kube::Client` over a function that answers each
//! review from the world's own RBAC index (so the answers are those RBAC would give) and counts it; the rates are
//! therefore this server's own ceiling, with kube-apiserver answering instantly.
//!
//! Printed, not criterion-timed (each phase sends up to a million reviews):
//! - one identity's first review, alone;
//! - 100 tokens of one ServiceAccount arriving at once (one identity: one set of reviews);
//! - another user's first request while 100 new identities are in their first review, for 100 ServiceAccounts of one
//!   namespace (one account: they take one turn between them) and for 100 users (100 accounts);
//! - 100 identities in use: the reviews of one refresh of them all, and the rate they are asked at.

mod world;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tenancy_apiserver::access::index::subjects_of;
use tenancy_apiserver::authn::User;
use tenancy_apiserver::authz::Authorizer;
use tenancy_apiserver::backend::review::{Reviewer, CONCURRENCY};
use tenancy_apiserver::metrics::ReviewMetrics;
use tenancy_apiserver::state::Cache;

use world::World;

/// Identities in use.
const IDENTITIES: usize = 100;
/// The refresh interval of the steady-state window (the server's default is 30 s; shorter here so the window sees
/// whole refreshes).
const REFRESH: Duration = Duration::from_secs(2);
const WINDOW: Duration = Duration::from_secs(6);

/// kube-apiserver's SubjectAccessReview, answered by the world's RBAC index.
fn client(cache: Arc<Cache>, asked: Arc<AtomicU64>) -> kube::Client {
    let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
        let (cache, asked) = (cache.clone(), asked.clone());
        async move {
            let body = request.into_body().collect().await.expect("a body").to_bytes();
            let mut review: serde_json::Value = serde_json::from_slice(&body).expect("a review");
            let spec = &review["spec"];
            let user = User {
                name: spec["user"].as_str().unwrap_or_default().to_owned(),
                uid: None,
                groups: spec["groups"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|g| g.as_str().map(str::to_owned))
                    .collect(),
                extra: std::collections::BTreeMap::new(),
            };
            let subjects = subjects_of(&user);
            let name = spec["resourceAttributes"]["name"].as_str().unwrap_or_default();
            let allowed = {
                let state = cache.read();
                if name.is_empty() {
                    state.management.index.has_all(&subjects)
                } else {
                    state.management.index.may_get(&subjects, name)
                }
            };
            review["status"] = serde_json::json!({ "allowed": allowed });
            asked.fetch_add(1, Ordering::Relaxed);
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(review.to_string()))))
        }
    });
    kube::Client::new(service, "default")
}

struct Bench {
    world: Arc<Cache>,
}

/// A fresh reviewer over the world, and its count of reviews asked.
struct Fresh {
    reviewer: Arc<Reviewer>,
    asked: Arc<AtomicU64>,
}

impl Bench {
    fn fresh(&self, refresh: Duration) -> Fresh {
        let asked = Arc::new(AtomicU64::new(0));
        let authorizer = Arc::new(Authorizer::new(client(self.world.clone(), asked.clone())));
        let reviewer = Reviewer::new(
            authorizer,
            self.world.clone(),
            refresh,
            ReviewMetrics::register(&prometheus::Registry::new()),
        );
        Fresh { reviewer, asked }
    }
}

impl Fresh {
    fn asked(&self) -> u64 {
        self.asked.load(Ordering::Relaxed)
    }

    /// Holds `user` (its first review when new); the time it took.
    async fn first(&self, user: &User) -> Duration {
        let started = Instant::now();
        drop(self.reviewer.hold(user).await.expect("reviewed"));
        started.elapsed()
    }
}

fn service_account(namespace: &str, name: &str, credential: Option<usize>) -> User {
    let mut extra = std::collections::BTreeMap::new();
    if let Some(id) = credential {
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_owned(),
            vec![format!("JTI={id:08x}")],
        );
    }
    User {
        name: format!("system:serviceaccount:{namespace}:{name}"),
        uid: None,
        groups: vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ],
        extra,
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Another user's first request while `crowd` are all in their first review.
async fn bystander(bench: &Bench, what: &str, crowd: Vec<User>, alone: Duration) {
    let fresh = bench.fresh(Duration::from_secs(3600));
    let tasks: Vec<_> = crowd
        .into_iter()
        .map(|user| {
            let reviewer = fresh.reviewer.clone();
            tokio::spawn(async move { drop(reviewer.hold(&user).await) })
        })
        .collect();
    // Well under way: every one of them has questions waiting.
    while fresh.asked() < 20_000 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before = fresh.asked();
    let waited = fresh.first(&world::tenant()).await;
    let during = fresh.asked() - before;
    for task in tasks {
        task.abort();
    }
    println!(
        "  {what}: {:.0} ms ({:.0}x alone), {during} reviews answered meanwhile",
        waited.as_secs_f64() * 1e3,
        waited.as_secs_f64() / alone.as_secs_f64(),
    );
}

async fn run(bench: &Bench) {
    let namespaces = bench.world.read().namespaces.len();
    println!();
    println!(
        "S10k review rate: {namespaces} namespaces, {CONCURRENCY} reviews in flight, kube-apiserver answering in process"
    );

    let fresh = bench.fresh(Duration::from_secs(3600));
    let alone = fresh.first(&world::tenant()).await;
    println!(
        "  one identity's first review: {} reviews in {:.0} ms ({:.0}/s)",
        fresh.asked(),
        alone.as_secs_f64() * 1e3,
        per_second(fresh.asked(), alone),
    );

    let fresh = bench.fresh(Duration::from_secs(3600));
    let started = Instant::now();
    let tokens = futures::future::join_all((0..IDENTITIES).map(|i| {
        let reviewer = fresh.reviewer.clone();
        let token = service_account("ns-00001", "robot", Some(i));
        async move { drop(reviewer.hold(&token).await.expect("reviewed")) }
    }));
    tokens.await;
    println!(
        "  {IDENTITIES} tokens of one ServiceAccount at once: {} reviews in {:.0} ms",
        fresh.asked(),
        started.elapsed().as_secs_f64() * 1e3,
    );

    println!(
        "  {}'s first request while {IDENTITIES} new identities are reviewed:",
        world::tenant().name
    );
    let accounts = (0..IDENTITIES)
        .map(|i| service_account("ns-00001", &format!("robot-{i:03}"), Some(i)))
        .collect();
    bystander(bench, "100 ServiceAccounts of one namespace", accounts, alone).await;
    let users = (0..IDENTITIES).map(|i| world::user(100 + i)).collect();
    bystander(bench, "100 users", users, alone).await;

    let fresh = bench.fresh(REFRESH);
    let users: Vec<User> = (0..IDENTITIES).map(world::user).collect();
    let started = Instant::now();
    let holds = futures::future::join_all(users.iter().map(|user| fresh.reviewer.hold(user))).await;
    let (round, took) = (fresh.asked(), started.elapsed());
    println!(
        "  {IDENTITIES} identities in use: one review of them all = {round} reviews, asked in {:.1} s ({:.0}/s); \
         every 30 s that is {:.0}/s",
        took.as_secs_f64(),
        per_second(round, took),
        round as f64 / 30.0,
    );
    tokio::spawn(fresh.reviewer.clone().run());
    // The first refresh starts one interval after `run`; from then on they follow each other.
    tokio::time::sleep(REFRESH + Duration::from_millis(100)).await;
    let before = fresh.asked();
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    println!(
        "  refreshing every {} s, over {} s: {:.0} reviews/s",
        REFRESH.as_secs(),
        WINDOW.as_secs(),
        per_second(fresh.asked() - before, started.elapsed()),
    );
    drop(holds);
    println!();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it once the same way: this is a printout, not a
    // criterion group, so there is nothing to filter.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // kube's client starts its worker on the runtime it is made in.
    let _entered = runtime.enter();
    let bench = Bench {
        world: World::s10k().synced_cache(),
    };
    runtime.block_on(run(&bench));
}
