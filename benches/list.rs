//! List: `Registry::list` (no selectors, no paging) on the synced S10k cache, for the tenant (~30 spaces) and for the
//! admin (all 10,000).

mod latency;
mod world;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use tenancy_apiserver::authn::User;
use tenancy_apiserver::spaces::{ListOptions, Registry};

use world::World;

const TARGET_TENANT_MS: f64 = 1.0;
/// Lists in the hand-rolled loops (the admin's are ~300 times larger).
const TENANT_LOOP: usize = 2_000;
const ADMIN_LOOP: usize = 200;

fn bench(c: &mut Criterion) {
    let cache = World::s10k().synced_cache();
    let registry = Registry::new(cache);
    let options = ListOptions::default();
    let (tenant, admin) = (world::tenant(), world::admin());
    let count = |user: &User| registry.list(user, &options).expect("list").items.len();

    // Every user's count, to show the tenant is typical.
    let started = Instant::now();
    let mut counts: Vec<usize> = (0..world::USERS).map(|i| count(&world::user(i))).collect();
    let all_users = started.elapsed();
    counts.sort_unstable();
    println!();
    println!(
        "S10k list: {} ({}) sees {} spaces, {} ({}) sees {}",
        tenant.name,
        tenant.groups.join(","),
        count(&tenant),
        admin.name,
        admin.groups.join(","),
        count(&admin),
    );
    println!(
        "  all {} users: min {} / median {} / max {} spaces; listing each once took {:.1} ms in all",
        counts.len(),
        counts[0],
        counts[counts.len() / 2],
        counts[counts.len() - 1],
        all_users.as_secs_f64() * 1e3,
    );
    for (who, user, runs) in [("tenant", &tenant, TENANT_LOOP), ("admin", &admin, ADMIN_LOOP)] {
        let mut samples = latency::Samples::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            black_box(registry.list(user, &options).expect("list"));
            samples.push(started.elapsed());
        }
        println!("  {who} list, {runs} in a loop: {}", samples.summary());
        if who == "tenant" {
            let p99_ms = samples.quantile(0.99).as_secs_f64() * 1e3;
            let verdict = if p99_ms < TARGET_TENANT_MS { "met" } else { "MISSED" };
            println!("  target: tenant list < {TARGET_TENANT_MS} ms (p99): {verdict}");
        }
    }
    println!();

    let mut group = c.benchmark_group("s10k_list");
    group.bench_function("tenant", |b| b.iter(|| black_box(registry.list(&tenant, &options))));
    group.bench_function("admin", |b| b.iter(|| black_box(registry.list(&admin, &options))));
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
