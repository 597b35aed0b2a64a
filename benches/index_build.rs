//! Index build: the whole S10k world fed into a fresh cache through the watcher event protocol (for each kind `Init`,
//! `InitApply` per object, `InitDone`), as the server does at startup. Prints one cold build with its memory, then
//! times warm builds with criterion in both orders the initial lists may arrive in.

mod memory;
mod world;

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tenancy_apiserver::state::{Cache, Update};

use world::{Order, World};

/// Counts live heap bytes for the cold build's report (a few atomic adds per allocation in the timed builds too).
#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const TARGET_MS: f64 = 2_000.0;
const TARGET_MB: f64 = 150.0;

/// One build from a cold process: time, and memory as the kernel sees it. The RSS before generating the events is the
/// baseline; after the build every event has been consumed (namespaces moved into the cache, RBAC objects dropped
/// once indexed), so what is left above the baseline is the cache (plus whatever the allocator keeps of freed memory;
/// the live heap, counted by the instrumented allocator, is the cache alone).
fn report_cold_build() {
    let before = memory::rss_kib();
    let heap_before = memory::live_heap_bytes(ALLOCATOR);
    let world = World::s10k();
    let objects = world.object_count();
    let updates = world.into_updates(Order::RolesFirst);
    let generated = memory::rss_kib();
    let started = Instant::now();
    let (cache, per_kind) = build_timed(updates);
    let elapsed = started.elapsed();
    let cache = Arc::new(cache);
    let after = memory::rss_kib();
    let heap = memory::live_heap_bytes(ALLOCATOR).saturating_sub(heap_before);
    let peak = memory::peak_rss_kib();
    let visible = world::verify(&cache);

    let ms = elapsed.as_secs_f64() * 1e3;
    println!();
    match (before, generated, after, peak) {
        (Some(before), Some(generated), Some(after), Some(peak)) => {
            let cache_mb = memory::mb(after.saturating_sub(before));
            println!(
                "S10k build: {ms:.0} ms, cache memory ~{cache_mb:.0} MB (RSS growth; live heap {:.0} MB)",
                heap as f64 / 1e6
            );
            println!(
                "  {objects} objects; RSS {:.0} MB before generating, {:.0} MB with the events generated, {:.0} MB \
                 after the build; process peak (VmHWM) {:.0} MB",
                memory::mb(before),
                memory::mb(generated),
                memory::mb(after),
                memory::mb(peak),
            );
            println!(
                "  targets: build < {TARGET_MS:.0} ms: {}; cache < {TARGET_MB:.0} MB: {}",
                verdict(ms < TARGET_MS),
                verdict(cache_mb < TARGET_MB),
            );
        }
        _ => {
            println!(
                "S10k build: {ms:.0} ms, cache memory unknown (no /proc/self/status; live heap {:.0} MB)",
                heap as f64 / 1e6
            );
            println!("  target: build < {TARGET_MS:.0} ms: {}", verdict(ms < TARGET_MS));
        }
    }
    println!("  by kind (its Init, InitApply… and InitDone): time, and live heap change while applying (the objects");
    println!("  themselves were allocated when generated: namespaces move into the cache, RBAC objects are dropped)");
    for cost in &per_kind {
        println!(
            "    {:<18} {:>5.0} ms {:>+7.1} MB",
            cost.kind,
            cost.time.as_secs_f64() * 1e3,
            cost.heap_bytes as f64 / 1e6
        );
    }
    println!("  tenant sees {} spaces, admin {}", visible.tenant, visible.admin);
    println!();
}

/// What one kind's initial list cost: time spent applying its events, and the live heap it left behind.
struct KindCost {
    kind: &'static str,
    time: Duration,
    heap_bytes: i64,
}

/// [`world::build`], also adding up what each kind's events cost.
fn build_timed(updates: Vec<Update>) -> (Cache, Vec<KindCost>) {
    let cache = Cache::new();
    let mut costs: Vec<KindCost> = Vec::new();
    let mut heap = memory::live_heap_bytes(ALLOCATOR);
    for update in updates {
        let kind = kind_of(&update);
        // The event is already in memory: applying it moves it into the cache or drops it.
        let started = Instant::now();
        cache.apply(update);
        let elapsed = started.elapsed();
        let now = memory::live_heap_bytes(ALLOCATOR);
        let grown = now as i64 - heap as i64;
        heap = now;
        match costs.last_mut() {
            Some(cost) if cost.kind == kind => {
                cost.time += elapsed;
                cost.heap_bytes += grown;
            }
            _ => costs.push(KindCost {
                kind,
                time: elapsed,
                heap_bytes: grown,
            }),
        }
    }
    (cache, costs)
}

/// The kind an update is about. Not a `match`, so that a kind added to the server does not stop this compiling.
fn kind_of(update: &Update) -> &'static str {
    if matches!(update, Update::Account(_)) {
        "Account"
    } else if matches!(update, Update::SpaceTemplate(_)) {
        "SpaceTemplate"
    } else if matches!(update, Update::Namespace(_)) {
        "Namespace"
    } else if matches!(update, Update::Role(_)) {
        "Role"
    } else if matches!(update, Update::ClusterRole(_)) {
        "ClusterRole"
    } else if matches!(update, Update::RoleBinding(_)) {
        "RoleBinding"
    } else if matches!(update, Update::ClusterRoleBinding(_)) {
        "ClusterRoleBinding"
    } else {
        "other"
    }
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn bench(c: &mut Criterion) {
    report_cold_build();
    let world = World::s10k();
    let mut group = c.benchmark_group("s10k_build");
    // Each build takes long enough to be timed alone: the same number of builds per sample.
    group.sampling_mode(SamplingMode::Flat);
    for (name, order) in [
        ("roles_first", Order::RolesFirst),
        ("bindings_first", Order::BindingsFirst),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || world.clone().into_updates(order),
                |updates| black_box(world::build(updates)),
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
    targets = bench
}
criterion_main!(benches);
