//! All-namespace grants: on the synced S10k cache, changes to a cluster-wide grant (a ClusterRoleBinding of `view` to a
//! group nobody is in, created and deleted in turn), the kind of change that used to cost one position and one stored
//! name per namespace. First the server alone: 10,000 of them fill the change log (its capacity), 10,000 more show
//! whether memory stays put, and how far positions moved (by changes, never by namespaces). Then with 1,000 watchers
//! open for other users plus the tenant's, every watcher processing every entry as `watch::run` does: the fan-out of
//! one such change, and the event-to-watcher latency of grants to the tenant made among them (compare
//! `event_to_watcher`, which has none).

mod latency;
mod memory;
mod world;

use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::runtime::watcher::Event;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tenancy_apiserver::spaces::{ListOptions, Registry};
use tenancy_apiserver::state::{Cache, Update};
use tenancy_apiserver::watch::{EventType, Item, Started};

use world::{objects, World};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Changes to all-namespace grants.
const CHANGES: usize = 10_000;
/// One grant/revoke of the tenant's (timed) after this many of them.
const EVERY: usize = 20;
const TARGET_MB: f64 = 150.0;
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

/// Applies `count` all-namespace grant changes (a ClusterRoleBinding of `view` to a group nobody is in, created and
/// deleted in turn), each followed by `after` (the watchers' turn); the changes made.
fn bystander_changes(cache: &Cache, count: usize, revision: &mut u64, mut after: impl FnMut(usize)) -> usize {
    for i in 0..count {
        *revision += 1;
        let binding = objects::cluster_role_binding(
            &format!("bench-all-{}", i / 2),
            "view",
            vec![objects::group("bystanders")],
            *revision,
        );
        cache.apply(if i % 2 == 0 {
            Update::ClusterRoleBinding(Event::Apply(binding))
        } else {
            Update::ClusterRoleBinding(Event::Delete(binding))
        });
        after(i);
    }
    count
}

/// Changes a label on `count` namespaces in turn, as kube-apiserver's watch would report them.
fn relabel_namespaces(cache: &Cache, count: usize, revision: &mut u64) {
    for i in 0..count {
        *revision += 1;
        let name = world::namespace_name(i % world::NAMESPACES);
        let Some(current) = cache.read().namespaces.get(&name).cloned() else {
            continue;
        };
        let mut changed = (*current).clone();
        changed
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("bench".to_owned(), i.to_string());
        changed.metadata.resource_version = Some(revision.to_string());
        cache.apply(Update::Namespace(Event::Apply(changed)));
    }
}

fn main() {
    let rss_start = memory::rss_kib().unwrap_or_default();
    let heap_start = memory::live_heap_bytes(ALLOCATOR);
    let cache = World::s10k().synced_cache();
    let heap_built = memory::live_heap_bytes(ALLOCATOR);
    let mut revision = 1_000_000_u64;

    // The server alone: the log filled with these changes (the startup entries pushed out), then as many again.
    bystander_changes(&cache, CHANGES, &mut revision, |_| {});
    let (rss_full, heap_full) = (
        memory::rss_kib().unwrap_or_default(),
        memory::live_heap_bytes(ALLOCATOR),
    );
    let position_before = cache.read().log.position();
    let tenant_before = tenant_position(&cache);
    let mut changes = bystander_changes(&cache, CHANGES, &mut revision, |_| {});
    let (rss_after, heap_after) = (
        memory::rss_kib().unwrap_or_default(),
        memory::live_heap_bytes(ALLOCATOR),
    );
    let moved = cache.read().log.position() - position_before;
    let tenant_moved = tenant_position(&cache) - tenant_before;
    assert_eq!(moved, changes as u64, "one position per change");
    assert_eq!(tenant_moved, changes as u64, "the tenant's positions move by changes");

    // With 1,001 watchers: every change through every watcher, and the tenant's grants timed among them.
    // What a change of one namespace costs in the log (the soak's kind of entry): 10,000 label changes replace the
    // entries above; what the heap gains is theirs, the changed object and the copied path of the snapshot.
    let heap_before_labels = memory::live_heap_bytes(ALLOCATOR);
    relabel_namespaces(&cache, CHANGES, &mut revision);
    let heap_labels = memory::live_heap_bytes(ALLOCATOR);
    let heap_before_watches = heap_labels;
    let mut watchers = Watchers::open(&cache);
    let heap_watches = memory::live_heap_bytes(ALLOCATOR);
    let tenant = world::tenant();
    let namespace = world::hidden_from_tenant(&cache);
    let mut fanout = latency::Samples::with_capacity(CHANGES);
    let mut to_tenant = latency::Samples::with_capacity(2 * CHANGES / EVERY);
    let mut watched = 0;
    for _ in 0..CHANGES / EVERY {
        let started = Instant::now();
        watched += bystander_changes(&cache, EVERY, &mut revision, |_| {
            assert!(watchers.deliver().is_empty(), "a bystander grant reached the tenant");
        });
        fanout.push(started.elapsed() / EVERY as u32);
        for (apply, expected) in [(true, EventType::Added), (false, EventType::Deleted)] {
            revision += 1;
            let grant: RoleBinding = objects::role_binding_to_cluster_role(
                &namespace,
                "bench-grant",
                "view",
                vec![objects::user(&tenant.name)],
                revision,
            );
            let started = Instant::now();
            cache.apply(if apply {
                Update::RoleBinding(Event::Apply(grant))
            } else {
                Update::RoleBinding(Event::Delete(grant))
            });
            let items = watchers.deliver();
            to_tenant.push(started.elapsed());
            assert!(
                matches!(items, [Item::Event { kind, .. }] if *kind == expected),
                "the tenant's watch reported {items:?}, expected {expected:?}"
            );
            watched += 1;
        }
    }
    changes += watched;

    let mb = |bytes: u64| bytes as f64 / 1e6;
    let p99_ms = to_tenant.quantile(0.99).as_secs_f64() * 1e3;
    let server_mb = mb(heap_after.saturating_sub(heap_start));
    println!();
    println!("S10k, all-namespace grant changes (a ClusterRoleBinding for a group nobody is in, made and removed):");
    println!("  {CHANGES} changes moved positions by {moved}, and the tenant's list resourceVersion by {tenant_moved}");
    println!(
        "  live heap: built cache {:.1} MB; with the log full of these changes {:.1} MB; after {CHANGES} more {:.1} MB ({:+.1} MB)",
        mb(heap_built.saturating_sub(heap_start)),
        mb(heap_full.saturating_sub(heap_start)),
        server_mb,
        (heap_after as f64 - heap_full as f64) / 1e6,
    );
    println!(
        "  RSS above the process start (includes the allocator's keep of the generated world): {:.1} MB with the log full, {:.1} MB after {CHANGES} more ({:+.1} MB); peak {:.1} MB",
        memory::mb(rss_full.saturating_sub(rss_start)),
        memory::mb(rss_after.saturating_sub(rss_start)),
        memory::mb(rss_after) - memory::mb(rss_full),
        memory::mb(memory::peak_rss_kib().unwrap_or_default()),
    );
    println!(
        "  {CHANGES} namespace label changes in the log instead: {:+.1} MB, {} bytes per entry",
        (heap_labels as f64 - heap_before_labels as f64) / 1e6,
        heap_labels.saturating_sub(heap_before_labels) / CHANGES as u64
    );
    println!(
        "  {} watches opened (999 tenants seeing ~30 spaces, the admin all 10,000): {:+.1} MB",
        watchers.others.len() + 1,
        (heap_watches as f64 - heap_before_watches as f64) / 1e6
    );
    println!(
        "  with {} watchers ({watched} more changes): one all-namespace change through every watcher: {}",
        watchers.others.len() + 1,
        fanout.summary()
    );
    println!(
        "  grant/revoke -> the tenant's ADDED/DELETED, through every watcher: {}",
        to_tenant.summary()
    );
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!(
        "  target: the server's memory (cache and full log, live heap) < {TARGET_MB} MB after them: {}",
        verdict(server_mb < TARGET_MB)
    );
    println!(
        "  target: event-to-watcher p99 < {TARGET_P99_MS} ms: {}",
        verdict(p99_ms < TARGET_P99_MS)
    );
    println!("  {changes} changes in all");
    println!();
}
