//! Event to watcher: on the synced S10k cache with 1,000 watchers open for other users (999 tenants and the admin, who
//! see nothing of the change) plus the tenant's, the time from applying one RBAC event (a RoleBinding granting the
//! tenant a namespace it did not see) to the tenant's session producing the ADDED item, with every other session
//! having processed the same entry first: the write, the fan-out and the per-watcher work, on one thread. Grants and
//! revocations alternate so the state does not grow; revocations (DELETED) are timed too in the hand-rolled loop.

mod latency;
mod world;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use tenancy_apiserver::state::{Cache, Update};
use tenancy_apiserver::watch::{EventType, Item, Started};

use world::World;

const TARGET_P99_MS: f64 = 50.0;
/// Grant/revoke pairs in the hand-rolled loop.
const LOOP: usize = 2_000;

/// The cache, the open watches and the binding that goes back and forth.
struct Fanout {
    cache: Arc<Cache>,
    /// Everyone else's watches, served before the tenant's (the tenant is the last in line: the worst case).
    others: Vec<Started>,
    tenant: Started,
    namespace: String,
    resource_version: u64,
    items: Vec<Item>,
}

/// How long one event took: to apply, and to reach the tenant's session through everyone else's.
struct Timing {
    apply: Duration,
    total: Duration,
}

// === impl Fanout ===

impl Fanout {
    fn open(cache: Arc<Cache>) -> Self {
        let namespace = world::hidden_from_tenant(&cache);
        let (others, tenant) = world::open_watches(&cache);
        let resource_version = cache.read().log.position() + 1;
        Fanout {
            cache,
            others,
            tenant,
            namespace,
            resource_version,
            items: Vec::new(),
        }
    }

    fn binding(&mut self) -> RoleBinding {
        self.resource_version += 1;
        RoleBinding {
            metadata: ObjectMeta {
                name: Some("bench-grant".to_owned()),
                namespace: Some(self.namespace.clone()),
                resource_version: Some(self.resource_version.to_string()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: "view".to_owned(),
            },
            subjects: Some(vec![Subject {
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                kind: "User".to_owned(),
                name: world::tenant().name,
                namespace: None,
            }]),
        }
    }

    fn grant(&mut self) -> Timing {
        let update = Update::RoleBinding(Event::Apply(self.binding()));
        self.step(update, EventType::Added)
    }

    fn revoke(&mut self) -> Timing {
        let update = Update::RoleBinding(Event::Delete(self.binding()));
        self.step(update, EventType::Deleted)
    }

    /// Applies `update`, lets every other watcher process what it produced, then the tenant's, which must report
    /// `expected` for the namespace.
    fn step(&mut self, update: Update, expected: EventType) -> Timing {
        let started = Instant::now();
        self.cache.apply(update);
        let apply = started.elapsed();
        for other in &mut self.others {
            deliver(other, &mut self.items);
            assert!(self.items.is_empty(), "a bystander's watch reported the tenant's grant");
        }
        deliver(&mut self.tenant, &mut self.items);
        let total = started.elapsed();
        match self.items.as_slice() {
            [Item::Event { kind, namespace, .. }]
                if *kind == expected && namespace.metadata.name.as_deref() == Some(self.namespace.as_str()) => {}
            other => panic!(
                "the tenant's watch reported {other:?}, expected {expected:?} {}",
                self.namespace
            ),
        }
        self.items.clear();
        Timing { apply, total }
    }
}

/// What one watcher makes of the entries waiting for it (exactly one per step).
fn deliver(watcher: &mut Started, items: &mut Vec<Item>) {
    let entry = watcher.entries.try_recv().expect("an entry for every watcher");
    watcher.session.process(&entry, None, items);
}

fn hand_rolled(fanout: &mut Fanout) {
    let mut grants = latency::Samples::with_capacity(LOOP);
    let mut revokes = latency::Samples::with_capacity(LOOP);
    let mut applies = latency::Samples::with_capacity(2 * LOOP);
    for _ in 0..LOOP {
        for (timing, samples) in [(fanout.grant(), &mut grants), (fanout.revoke(), &mut revokes)] {
            samples.push(timing.total);
            applies.push(timing.apply);
        }
    }
    let p99_ms = grants.quantile(0.99).as_secs_f64() * 1e3;
    println!();
    println!(
        "S10k event to watcher ({} other watchers + the tenant's, {LOOP} grant/revoke pairs):",
        fanout.others.len()
    );
    println!("  grant  -> ADDED:   {}", grants.summary());
    println!("  revoke -> DELETED: {}", revokes.summary());
    println!("  of which Cache::apply alone: {}", applies.summary());
    let verdict = if p99_ms < TARGET_P99_MS { "met" } else { "MISSED" };
    println!("  target: event-to-watcher p99 < {TARGET_P99_MS} ms: {verdict}");
    println!();
}

fn bench(c: &mut Criterion) {
    let mut fanout = Fanout::open(World::s10k().synced_cache());
    hand_rolled(&mut fanout);
    let mut group = c.benchmark_group("s10k_event_to_watcher");
    group.bench_function("grant_to_added_1001_watchers", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                total += fanout.grant().total;
                fanout.revoke();
            }
            total
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
