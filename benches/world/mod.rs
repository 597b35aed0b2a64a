//! The generated world the benchmarks run against: scenario S10k, built deterministically from a fixed seed.
//!
//! - 10,000 namespaces `ns-00000`..`ns-09999`;
//! - 1,000 users `user-0000`..`user-0999`, user i in group `group-{i % 100}` (and `system:authenticated`);
//! - 3 RoleBindings per namespace (30,000): `team-view` (ClusterRole `view`) to one of 500 team groups, of which the
//!   100 `group-NN` have members and the 400 `team-NNN` have none among the users; `owner-edit` (ClusterRole `edit`,
//!   one in four `admin`) to a random user; `deployer` (the namespace's Role `namespace-getter`) to its ServiceAccount;
//! - 50 ClusterRoleBindings: `cluster-admin` to `system:masters`, `view` cluster-wide to `auditors`, one ClusterRole
//!   with `resourceNames` (5 namespaces) to the tenant's group, and 47 that grant unrelated things (some of them near
//!   misses: `list` or `watch` namespaces, `namespaces/status`, `namespaces` in the `apps` group);
//! - the aggregated ClusterRoles `view`/`edit`/`admin` with the rules the aggregation controller fills in (all include
//!   `get` on core `namespaces`), their `system:aggregate-to-*` parts, and `cluster-admin` with `*` rules.
//!
//! So a tenant sees about 20 namespaces through its group, 10 it owns, and the tenant's group 5 more by name. There
//! are no Accounts or SpaceTemplates (their initial lists are empty).

// Each benchmark binary compiles this module and uses a part of it.
#![allow(dead_code)]

pub mod objects;
mod rng;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use kube::runtime::watcher::Event;
use tenancy_apiserver::authn::User;
use tenancy_apiserver::spaces::{ListOptions, Registry};
use tenancy_apiserver::state::{Cache, Update};
use tenancy_apiserver::watch::{self, From, Started};

use objects::{group, named_rule, rule, service_account, url_rule, user as user_subject};
use rng::Rng;

pub const SEED: u64 = 0x5_10C0;
pub const NAMESPACES: usize = 10_000;
pub const USERS: usize = 1_000;
/// Groups with members: user i is in group i % GROUPS.
pub const GROUPS: usize = 100;
/// Groups a namespace's `team-view` binding may name; only the first [`GROUPS`] have members.
const TEAMS: usize = 500;
/// The user whose lists and watches are measured.
pub const TENANT: usize = 42;
/// The range a tenant's visible count must fall in for the scenario to be the one described.
pub const TENANT_VISIBLE: std::ops::Range<usize> = 20..60;
const UNRELATED_CLUSTER_ROLE_BINDINGS: usize = 47;
const SELECTED_NAMESPACES: usize = 5;

pub fn namespace_name(index: usize) -> String {
    format!("ns-{index:05}")
}

fn user_name(index: usize) -> String {
    format!("user-{index:04}")
}

fn group_name(index: usize) -> String {
    format!("group-{index:02}")
}

/// User `index` as the authenticator would produce it.
pub fn user(index: usize) -> User {
    User {
        name: user_name(index),
        uid: None,
        groups: vec![group_name(index % GROUPS), "system:authenticated".to_owned()],
        extra: BTreeMap::new(),
    }
}

/// The measured tenant.
pub fn tenant() -> User {
    user(TENANT)
}

/// A cluster admin: `system:masters`, bound to `cluster-admin`.
/// Watches from now, with the initial events, for every user but the tenant and for the admin (the bystanders), and
/// the tenant's: as 1,001 open `kubectl get spaces -w`.
#[allow(dead_code, reason = "only the watch benchmarks open watches")]
pub fn open_watches(cache: &Arc<Cache>) -> (Vec<Started>, Started) {
    let start = |user| {
        let from = From::Now { initial_events: true };
        watch::start(cache, &user, ListOptions::default().filter(), from).expect("watch started")
    };
    let others = (0..USERS)
        .filter(|i| *i != TENANT)
        .map(user)
        .chain([admin()])
        .map(start)
        .collect();
    (others, start(tenant()))
}

/// A namespace the tenant does not see: where the watch benchmarks grant and revoke.
#[allow(dead_code, reason = "only the watch benchmarks grant to the tenant")]
pub fn hidden_from_tenant(cache: &Arc<Cache>) -> String {
    let registry = Registry::new(cache.clone());
    let tenant = tenant();
    (0..NAMESPACES)
        .map(namespace_name)
        .find(|name| registry.get(&tenant, name).is_err())
        .expect("a namespace the tenant does not see")
}

pub fn admin() -> User {
    User {
        name: "kubernetes-admin".to_owned(),
        uid: None,
        groups: vec!["system:masters".to_owned(), "system:authenticated".to_owned()],
        extra: BTreeMap::new(),
    }
}

/// The order the five kinds' initial lists arrive in. The server watches them concurrently, so any order happens;
/// bindings before their roles make the index recompute every binding when the roles arrive.
#[derive(Clone, Copy, Debug)]
pub enum Order {
    RolesFirst,
    BindingsFirst,
}

/// Every object of the world, by kind.
#[derive(Clone)]
pub struct World {
    pub namespaces: Vec<Namespace>,
    pub roles: Vec<Role>,
    pub cluster_roles: Vec<ClusterRole>,
    pub role_bindings: Vec<RoleBinding>,
    pub cluster_role_bindings: Vec<ClusterRoleBinding>,
}

/// How many spaces the tenant and the admin see.
#[derive(Clone, Copy, Debug)]
pub struct Visible {
    pub tenant: usize,
    pub admin: usize,
}

// === impl World ===

impl World {
    /// Scenario S10k (see the module docs).
    pub fn s10k() -> Self {
        let mut rng = Rng::new(SEED);
        let mut resource_version = 1_000_u64;
        let mut rv = move || {
            resource_version += 1;
            resource_version
        };

        let mut namespaces = Vec::with_capacity(NAMESPACES);
        let mut roles = Vec::with_capacity(NAMESPACES);
        let mut role_bindings = Vec::with_capacity(3 * NAMESPACES);
        for i in 0..NAMESPACES {
            let name = namespace_name(i);
            let team = match rng.below(TEAMS) {
                t if t < GROUPS => group_name(t),
                t => format!("team-{t:03}"),
            };
            let owner = user_name(rng.below(USERS));
            let owner_role = if rng.below(4) == 0 { "admin" } else { "edit" };
            let uid = uid(&mut rng);
            namespaces.push(objects::namespace(i, &name, uid, &owner, &team, rv()));
            roles.push(objects::role(
                &name,
                "namespace-getter",
                vec![rule(&[""], &["namespaces"], &["get"])],
                rv(),
            ));
            role_bindings.push(objects::role_binding_to_cluster_role(
                &name,
                "team-view",
                "view",
                vec![group(&team)],
                rv(),
            ));
            role_bindings.push(objects::role_binding_to_cluster_role(
                &name,
                "owner-edit",
                owner_role,
                vec![user_subject(&owner)],
                rv(),
            ));
            role_bindings.push(objects::role_binding_to_role(
                &name,
                "deployer",
                "namespace-getter",
                vec![service_account(&name, "deployer")],
                rv(),
            ));
        }

        let selected: Vec<String> = (0..SELECTED_NAMESPACES)
            .map(|_| namespace_name(rng.below(NAMESPACES)))
            .collect();
        let mut cluster_roles = builtin_cluster_roles(&mut rv);
        cluster_roles.push(objects::cluster_role(
            "selected-namespace-reader",
            vec![named_rule(&[""], &["namespaces"], &["get"], selected)],
            rv(),
        ));
        let mut cluster_role_bindings = vec![
            objects::cluster_role_binding("cluster-admin", "cluster-admin", vec![group("system:masters")], rv()),
            objects::cluster_role_binding("auditors-view", "view", vec![group("auditors")], rv()),
            objects::cluster_role_binding(
                "selected-namespace-readers",
                "selected-namespace-reader",
                vec![group(&group_name(TENANT % GROUPS))],
                rv(),
            ),
        ];
        for i in 0..UNRELATED_CLUSTER_ROLE_BINDINGS {
            let role_name = format!("bench:unrelated-{i:02}");
            cluster_roles.push(objects::cluster_role(&role_name, vec![unrelated_rule(i)], rv()));
            let subject = match i % 3 {
                0 => group("system:authenticated"),
                1 => group(&group_name(i % GROUPS)),
                _ => service_account("kube-system", &format!("controller-{i:02}")),
            };
            cluster_role_bindings.push(objects::cluster_role_binding(
                &format!("bench:unrelated-{i:02}"),
                &role_name,
                vec![subject],
                rv(),
            ));
        }

        World {
            namespaces,
            roles,
            cluster_roles,
            role_bindings,
            cluster_role_bindings,
        }
    }

    /// The world as the watcher events the server's reflectors deliver at startup: for each kind `Init`, one
    /// `InitApply` per object, `InitDone`.
    pub fn into_updates(self, order: Order) -> Vec<Update> {
        let mut updates = Vec::with_capacity(self.object_count() + 14);
        // The world has no Accounts or SpaceTemplates; their empty initial lists still have to arrive.
        initial_list(&mut updates, Vec::new(), Update::Account);
        initial_list(&mut updates, Vec::new(), Update::SpaceTemplate);
        initial_list(&mut updates, self.namespaces, Update::Namespace);
        let roles = |updates: &mut Vec<Update>| {
            initial_list(updates, self.cluster_roles, Update::ClusterRole);
            initial_list(updates, self.roles, Update::Role);
        };
        let bindings = |updates: &mut Vec<Update>| {
            initial_list(updates, self.role_bindings, Update::RoleBinding);
            initial_list(updates, self.cluster_role_bindings, Update::ClusterRoleBinding);
        };
        match order {
            Order::RolesFirst => {
                roles(&mut updates);
                bindings(&mut updates);
            }
            Order::BindingsFirst => {
                bindings(&mut updates);
                roles(&mut updates);
            }
        }
        updates
    }

    pub fn object_count(&self) -> usize {
        self.namespaces.len()
            + self.roles.len()
            + self.cluster_roles.len()
            + self.role_bindings.len()
            + self.cluster_role_bindings.len()
    }

    /// A fresh cache fed the whole world, checked to be the scenario described (see [`verify`]).
    pub fn synced_cache(&self) -> Arc<Cache> {
        let cache = Arc::new(build(self.clone().into_updates(Order::RolesFirst)));
        verify(&cache);
        cache
    }
}

/// Feeds `updates` into a fresh cache, as the server's writer task does.
pub fn build(updates: Vec<Update>) -> Cache {
    let cache = Cache::new();
    for update in updates {
        cache.apply(update);
    }
    cache
}

/// Checks that the cache is synced, the tenant sees a typical number of spaces and the admin sees them all.
///
/// # Panics
/// When any of that is not so: the numbers benchmarked would not be those of the scenario.
pub fn verify(cache: &Arc<Cache>) -> Visible {
    assert!(
        cache.is_ready(),
        "the cache is not synced: the server reflects a kind whose initial list World::into_updates does not send"
    );
    let registry = Registry::new(cache.clone());
    let count = |user: &User| registry.list(user, &ListOptions::default()).expect("list").items.len();
    let visible = Visible {
        tenant: count(&tenant()),
        admin: count(&admin()),
    };
    assert!(
        TENANT_VISIBLE.contains(&visible.tenant),
        "the tenant sees {} spaces, expected {TENANT_VISIBLE:?}",
        visible.tenant
    );
    assert_eq!(visible.admin, NAMESPACES, "the admin sees every namespace");
    visible
}

fn initial_list<K>(updates: &mut Vec<Update>, objects: Vec<K>, wrap: fn(Event<K>) -> Update) {
    updates.push(wrap(Event::Init));
    updates.extend(objects.into_iter().map(|object| wrap(Event::InitApply(object))));
    updates.push(wrap(Event::InitDone));
}

fn uid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// A rule that grants something other than `get` on core namespaces, some of them near misses.
fn unrelated_rule(i: usize) -> PolicyRule {
    match i % 8 {
        0 => rule(&[""], &["namespaces"], &["list"]),
        1 => rule(&["apps"], &["namespaces"], &["get"]),
        2 => rule(&[""], &["nodes"], &["get", "list", "watch"]),
        3 => rule(&[""], &["pods", "pods/log"], &["*"]),
        4 => rule(&["authorization.k8s.io"], &["selfsubjectaccessreviews"], &["create"]),
        5 => url_rule(&["/healthz", "/readyz", "/livez"], &["get"]),
        6 => rule(&[""], &["namespaces/status"], &["get"]),
        _ => rule(&[""], &["namespaces"], &["watch"]),
    }
}

/// `view`, `edit`, `admin` and `cluster-admin`, with aggregated rules as the aggregation controller fills them, and
/// the `system:aggregate-to-*` roles they aggregate.
fn builtin_cluster_roles(rv: &mut impl FnMut() -> u64) -> Vec<ClusterRole> {
    let read = ["get", "list", "watch"];
    let write = ["create", "delete", "deletecollection", "patch", "update"];
    let to_view = vec![
        rule(
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "pods",
                "replicationcontrollers",
                "serviceaccounts",
                "services",
            ],
            &read,
        ),
        rule(
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "pods/log",
                "pods/status",
                "resourcequotas",
            ],
            &read,
        ),
        rule(&[""], &["namespaces", "namespaces/status"], &read),
        rule(
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "deployments",
                "replicasets",
                "statefulsets",
            ],
            &read,
        ),
        rule(&["batch"], &["cronjobs", "jobs"], &read),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], &read),
        rule(&["policy"], &["poddisruptionbudgets"], &read),
        rule(&["discovery.k8s.io"], &["endpointslices"], &read),
    ];
    let to_edit = vec![
        rule(
            &[""],
            &["pods/attach", "pods/exec", "pods/portforward", "pods/proxy"],
            &write,
        ),
        rule(
            &[""],
            &["configmaps", "persistentvolumeclaims", "pods", "secrets", "services"],
            &write,
        ),
        rule(&[""], &["serviceaccounts"], &["impersonate"]),
        rule(
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/scale",
                "replicasets",
                "statefulsets",
            ],
            &write,
        ),
        rule(&["batch"], &["cronjobs", "jobs"], &write),
        rule(&["networking.k8s.io"], &["ingresses", "networkpolicies"], &write),
    ];
    let to_admin = vec![
        rule(&["authorization.k8s.io"], &["localsubjectaccessreviews"], &["create"]),
        rule(&["rbac.authorization.k8s.io"], &["rolebindings", "roles"], &write),
    ];
    let view = to_view.clone();
    let edit: Vec<PolicyRule> = to_edit.iter().chain(&view).cloned().collect();
    let admin: Vec<PolicyRule> = to_admin.iter().chain(&edit).cloned().collect();
    vec![
        objects::cluster_role(
            "cluster-admin",
            vec![rule(&["*"], &["*"], &["*"]), url_rule(&["*"], &["*"])],
            rv(),
        ),
        objects::aggregated_cluster_role("admin", "rbac.authorization.k8s.io/aggregate-to-admin", admin, rv()),
        objects::aggregated_cluster_role("edit", "rbac.authorization.k8s.io/aggregate-to-edit", edit, rv()),
        objects::aggregated_cluster_role("view", "rbac.authorization.k8s.io/aggregate-to-view", view, rv()),
        objects::labelled_cluster_role(
            "system:aggregate-to-admin",
            "rbac.authorization.k8s.io/aggregate-to-admin",
            to_admin,
            rv(),
        ),
        objects::labelled_cluster_role(
            "system:aggregate-to-edit",
            "rbac.authorization.k8s.io/aggregate-to-edit",
            to_edit,
            rv(),
        ),
        objects::labelled_cluster_role(
            "system:aggregate-to-view",
            "rbac.authorization.k8s.io/aggregate-to-view",
            to_view,
            rv(),
        ),
    ]
}
