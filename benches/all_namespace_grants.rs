//! All-namespace grants: on the synced S10k cache with 1,000 watchers open for other users plus the tenant's, 10,000
//! changes to cluster-wide grants (a ClusterRoleBinding of `view` to a group none of them is in, created and deleted
//! in turn), every watcher processing every entry, as `watch::run` does. Reports what they cost: the server's RSS and
//! live heap growth (the change log fills to its capacity of 10,000 entries, so this is its steady state), how far
//! positions moved (by changes, never by namespaces), and the event-to-watcher latency of grants to the tenant made in
//! between, against the same measurement on a log without them (`event_to_watcher`).

mod latency;
mod memory;
mod world;

use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::watcher::Event;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tenancy_apiserver::backend::cache::{Cache, Update};
use tenancy_apiserver::spaces::{ListOptions, Registry};
use tenancy_apiserver::watch::{EventType, Item, Started};

use world::{objects, World};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Changes to all-namespace grants.
const CHANGES: usize = 10_000;
/// One grant/revoke of the tenant's (timed) after this many of them.
const EVERY: usize = 20;
const TARGET_RSS_MB: f64 = 150.0;
const TARGET_P99_MS: f64 = 50.0;

struct Watchers {
    others: Vec<Started>,
    tenant: Started,
    items: Vec<Item>,
}

// === impl Watchers ===

impl Watchers {
    fn open(cache: &Arc<Cache>) -> Self {
        let (others, tenant) = world::open_watches(cache);
        Watchers {
            others,
            tenant,
            items: Vec::new(),
        }
    }

    /// Every watcher processes the newest entry, the tenant's last; what the tenant got.
    fn deliver(&mut self) -> &[Item] {
        for other in &mut self.others {
            let entry = other.entries.try_recv().expect("an entry for every watcher");
            other.session.process(&entry, None, &mut self.items);
            self.items.clear();
        }
        let entry = self.tenant.entries.try_recv().expect("an entry for the tenant");
        self.tenant.session.process(&entry, None, &mut self.items);
        &self.items
    }
}

fn tenant_position(cache: &Arc<Cache>) -> u64 {
    let list = Registry::new(cache.clone())
        .list(&world::tenant(), &ListOptions::default())
        .expect("the tenant lists");
    list.metadata
        .resource_version
        .as_deref()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric list resourceVersion")
}

fn main() {
    let rss_start = memory::rss_kib().unwrap_or_default();
    let cache = World::s10k().synced_cache();
    let mut watchers = Watchers::open(&cache);
    let registry = Registry::new(cache.clone());
    let tenant = world::tenant();
    let namespace = (0..world::NAMESPACES)
        .map(world::namespace_name)
        .find(|name| registry.get(&tenant, name).is_err())
        .expect("a namespace the tenant does not see");
    let rss_before = memory::rss_kib().unwrap_or_default();
    let heap_before = memory::live_heap_bytes(ALLOCATOR);
    let position_before = cache.read().log.position();
    let tenant_before = tenant_position(&cache);

    let mut fanout = latency::Samples::with_capacity(CHANGES);
    let mut to_tenant = latency::Samples::with_capacity(2 * CHANGES / EVERY);
    let mut revision = 1_000_000_u64;
    let mut changes = 0_usize;
    for i in 0..CHANGES {
        revision += 1;
        let binding = objects::cluster_role_binding(
            &format!("bench-all-{}", i / 2),
            "view",
            vec![objects::group("bystanders")],
            revision,
        );
        let update = if i % 2 == 0 {
            Update::ClusterRoleBinding(Event::Apply(binding))
        } else {
            Update::ClusterRoleBinding(Event::Delete(binding))
        };
        let started = Instant::now();
        cache.apply(update);
        assert!(watchers.deliver().is_empty(), "a bystander grant reached the tenant");
        fanout.push(started.elapsed());
        changes += 1;
        if i % EVERY == EVERY - 1 {
            for (apply, expected) in [(true, EventType::Added), (false, EventType::Deleted)] {
                revision += 1;
                let grant: RoleBinding = objects::role_binding_to_cluster_role(
                    &namespace,
                    "bench-grant",
                    "view",
                    vec![objects::user(&tenant.name)],
                    revision,
                );
                let update = if apply {
                    Update::RoleBinding(Event::Apply(grant))
                } else {
                    Update::RoleBinding(Event::Delete(grant))
                };
                let started = Instant::now();
                cache.apply(update);
                let items = watchers.deliver();
                to_tenant.push(started.elapsed());
                assert!(
                    matches!(items, [Item::Event { kind, .. }] if *kind == expected),
                    "the tenant's watch reported {items:?}, expected {expected:?}"
                );
                changes += 1;
            }
        }
    }

    let rss_after = memory::rss_kib().unwrap_or_default();
    let heap_after = memory::live_heap_bytes(ALLOCATOR);
    let moved = cache.read().log.position() - position_before;
    let tenant_moved = tenant_position(&cache) - tenant_before;
    assert_eq!(moved, changes as u64, "one position per change");
    assert_eq!(tenant_moved, changes as u64, "the tenant's positions move by changes");

    let growth_mb = memory::mb(rss_after.saturating_sub(rss_before));
    let rss_mb = memory::mb(rss_after.saturating_sub(rss_start));
    let log_bytes = heap_after.saturating_sub(heap_before);
    let p99_ms = to_tenant.quantile(0.99).as_secs_f64() * 1e3;
    println!();
    println!(
        "S10k, {CHANGES} changes of all-namespace grants (+{} grants/revokes to the tenant), {} watchers:",
        changes - CHANGES,
        watchers.others.len() + 1
    );
    println!("  positions moved by {moved} ({changes} changes); the tenant's list resourceVersion by {tenant_moved}");
    println!(
        "  RSS: {rss_mb:.1} MB above the process start ({:.1} MB for the built cache and watchers, +{growth_mb:.1} MB during the changes)",
        memory::mb(rss_before.saturating_sub(rss_start))
    );
    println!(
        "  process peak (VmHWM): {:.1} MB",
        memory::mb(memory::peak_rss_kib().unwrap_or_default())
    );
    println!(
        "  live heap growth during the changes (the change log at capacity): {:.1} MB, {} bytes per change",
        log_bytes as f64 / 1e6,
        log_bytes / changes as u64
    );
    println!(
        "  one all-namespace change, applied and processed by every watcher: {}",
        fanout.summary()
    );
    println!(
        "  grant/revoke -> the tenant's ADDED/DELETED, through every watcher: {}",
        to_tenant.summary()
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "  target: RSS < {TARGET_RSS_MB} MB after them: {}",
        verdict(rss_mb < TARGET_RSS_MB)
    );
    println!(
        "  target: event-to-watcher p99 < {TARGET_P99_MS} ms: {}",
        verdict(p99_ms < TARGET_P99_MS)
    );
    println!();
}
