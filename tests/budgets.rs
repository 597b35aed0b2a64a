//! Memory budgets: what the server keeps per namespace (with its RoleBindings), per open watch and per change-log
//! entry, counted by an instrumented allocator on the benches' S10k world (benches/world: 10,000 namespaces, 30,000
//! RoleBindings, 1,000 users). Each figure must stay under its budget, so a structure that grows (a copy per watch, a
//! snapshot per entry, managed fields kept) fails here rather than in a platform team's cluster. The budgets are the
//! figures measured when they were set plus 10-30% (4.6 KB, 3.0 KB, 0.2 KB, 1.8 KB, 0.5 KB; before issue 27: ~8 KB a
//! namespace, a copied snapshot path of ~5.9 KB an entry); benches/memory.sh measures the whole process through
//! kube-apiserver.
//!
//! One test: the allocator counts every thread, so nothing else may run in this binary while it measures.

#[path = "../benches/memory/mod.rs"]
#[allow(dead_code, reason = "shared with the benchmarks, which use all of it")]
mod memory;
#[path = "../benches/world/mod.rs"]
mod world;

use std::alloc::System;
use std::sync::Arc;

use kube::runtime::watcher::Event;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};
use tenancy_apiserver::state::Update;
use tenancy_apiserver::watch::Started;

use world::{Order, World};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// A namespace in the cache, with its three RoleBindings in the access index (bytes).
const PER_NAMESPACE: u64 = 5_200;
/// A user's first open watch: its session, its view of the spaces its user may see (~30 here) and its receiver.
const FIRST_WATCH_OF_A_USER: u64 = 3_500;
/// Every further watch of a user: it shares the first one's view.
const FURTHER_WATCH_OF_A_USER: u64 = 400;
/// A change-log entry for a namespace's change, holding the namespace as it was before.
const NAMESPACE_ENTRY: u64 = 2_000;
/// A change-log entry for an RBAC change that grants or revokes one subject everything.
const RBAC_ENTRY: u64 = 600;

fn live() -> u64 {
    memory::live_heap_bytes(ALLOCATOR)
}

/// Bytes per item held from `before` to now.
fn per(before: u64, items: usize) -> u64 {
    live().saturating_sub(before) / items as u64
}

fn open(cache: &Arc<tenancy_apiserver::state::Cache>) -> Vec<Started> {
    let (mut others, tenant) = world::open_watches(cache);
    others.push(tenant);
    // What a watch sends first is let go once sent (watch::run): not part of what an open watch holds.
    for started in &mut others {
        started.first = Vec::new();
    }
    others
}

#[test]
fn per_namespace_per_watch_and_per_entry_memory_stay_within_budget() {
    // The events hold the objects; once the build has consumed them, what is left is the cache.
    let before = live();
    let updates = World::s10k().into_updates(Order::RolesFirst);
    let cache = Arc::new(world::build(updates));
    let cache_bytes = live().saturating_sub(before);
    let visible = world::verify(&cache);
    let per_namespace = cache_bytes / world::NAMESPACES as u64;

    let before = live();
    let first = open(&cache);
    let first_watch = per(before, first.len());
    let before = live();
    let second = open(&cache);
    let further_watch = per(before, second.len());

    let before = live();
    let changes = 2_000;
    let base = cache.read().log.position();
    for i in 0..changes {
        let name = world::namespace_name(i);
        let mut namespace = cache.read().namespaces[&name].as_ref().clone();
        namespace.metadata.resource_version = Some((base + i as u64).to_string());
        namespace
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert("touched".to_owned(), i.to_string());
        cache.apply(Update::Namespace(Event::Apply(namespace)));
    }
    let namespace_entry = per(before, changes);

    let before = live();
    for i in 0..changes {
        let binding = world::objects::cluster_role_binding(
            "budget-grant",
            "view",
            vec![world::objects::group("nobody-is-in-it")],
            base + (changes + i) as u64,
        );
        cache.apply(Update::ClusterRoleBinding(if i % 2 == 0 {
            Event::Apply(binding)
        } else {
            Event::Delete(binding)
        }));
    }
    let rbac_entry = per(before, changes);
    assert_eq!(
        cache.read().log.position(),
        base + 2 * changes as u64,
        "one entry per change"
    );

    let figures = [
        ("a namespace with its RoleBindings", per_namespace, PER_NAMESPACE),
        ("a user's first watch", first_watch, FIRST_WATCH_OF_A_USER),
        ("a further watch of that user", further_watch, FURTHER_WATCH_OF_A_USER),
        ("a namespace change's log entry", namespace_entry, NAMESPACE_ENTRY),
        ("an RBAC change's log entry", rbac_entry, RBAC_ENTRY),
    ];
    println!(
        "S10k: {} namespaces, cache {:.1} MB; the tenant sees {}",
        world::NAMESPACES,
        cache_bytes as f64 / 1e6,
        visible.tenant
    );
    for (what, bytes, budget) in figures {
        println!("  {what:<36} {bytes:>6} bytes (budget {budget})");
    }
    for (what, bytes, budget) in figures {
        assert!(bytes <= budget, "{what}: {bytes} bytes, over its budget of {budget}");
    }
    drop((first, second));
}
