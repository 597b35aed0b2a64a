//! The index against a straightforward reference evaluation of RBAC (`access::visible_namespaces` / `may_get`), over
//! random worlds changed by random sequences of adds, updates and deletes.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::access::reference::{self as access, RbacSource};

/// xorshift64*: deterministic, so a failing seed can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const NAMESPACES: &[&str] = &["a", "b", "c", "d"];
const USERS: &[&str] = &["u1", "u2", "system:serviceaccount:a:sa", "system:serviceaccount:b:sa"];
const GROUPS: &[&str] = &["g1", "g2", "system:authenticated"];
const ROLE_NAMES: &[&str] = &["r1", "r2", "r3"];

#[derive(Default)]
struct World {
    cluster_roles: BTreeMap<String, Arc<ClusterRole>>,
    roles: BTreeMap<(String, String), Arc<Role>>,
    role_bindings: BTreeMap<(String, String), Arc<RoleBinding>>,
    cluster_role_bindings: BTreeMap<String, Arc<ClusterRoleBinding>>,
}

impl RbacSource for World {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.values().cloned().collect()
    }
    fn role_bindings(&self, namespace: Option<&str>) -> Vec<Arc<RoleBinding>> {
        self.role_bindings
            .iter()
            .filter(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .map(|(_, b)| b.clone())
            .collect()
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        self.cluster_roles.get(name).cloned()
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>> {
        self.roles.get(&(namespace.to_owned(), name.to_owned())).cloned()
    }
}

fn random_rules(rng: &mut Rng) -> Vec<PolicyRule> {
    (0..rng.below(3))
        .map(|_| PolicyRule {
            verbs: vec![(*rng.pick(&["get", "list", "*", "update"])).to_owned()],
            api_groups: Some(vec![(*rng.pick(&["", "*", "apps"])).to_owned()]),
            resources: Some(vec![
                (*rng.pick(&["namespaces", "*", "pods", "namespaces/status"])).to_owned()
            ]),
            resource_names: if rng.chance(30) {
                Some(vec![(*rng.pick(NAMESPACES)).to_owned()])
            } else {
                None
            },
            non_resource_urls: None,
        })
        .collect()
}

fn random_subjects(rng: &mut Rng) -> Vec<Subject> {
    (0..=rng.below(3))
        .map(|_| match rng.below(3) {
            0 => Subject {
                kind: "User".into(),
                name: (*rng.pick(USERS)).into(),
                ..Subject::default()
            },
            1 => Subject {
                kind: "Group".into(),
                name: (*rng.pick(GROUPS)).into(),
                ..Subject::default()
            },
            _ => Subject {
                kind: "ServiceAccount".into(),
                name: "sa".into(),
                namespace: if rng.chance(50) {
                    Some((*rng.pick(NAMESPACES)).into())
                } else {
                    None
                },
                ..Subject::default()
            },
        })
        .collect()
}

fn random_ref(rng: &mut Rng) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".into(),
        kind: (*rng.pick(&["ClusterRole", "Role"])).into(),
        name: (*rng.pick(ROLE_NAMES)).into(),
    }
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        ..ObjectMeta::default()
    }
}

/// One random add, update or delete, applied to both the world and the index.
fn step(rng: &mut Rng, world: &mut World, index: &mut Index, changes: &mut Vec<AccessChange>) {
    let ns = (*rng.pick(NAMESPACES)).to_owned();
    let name = (*rng.pick(ROLE_NAMES)).to_owned();
    let delete = rng.chance(25);
    match rng.below(4) {
        0 => {
            if delete {
                world.cluster_roles.remove(&name);
                index.delete_cluster_role(&name, changes);
            } else {
                let role = ClusterRole {
                    metadata: meta(None, &name),
                    rules: Some(random_rules(rng)),
                    aggregation_rule: None,
                };
                index.apply_cluster_role(&role, changes);
                world.cluster_roles.insert(name, Arc::new(role));
            }
        }
        1 => {
            if delete {
                world.roles.remove(&(ns.clone(), name.clone()));
                index.delete_role(&ns, &name, changes);
            } else {
                let role = Role {
                    metadata: meta(Some(&ns), &name),
                    rules: Some(random_rules(rng)),
                };
                index.apply_role(&role, changes);
                world.roles.insert((ns, name), Arc::new(role));
            }
        }
        2 => {
            let binding_name = format!("rb{}", rng.below(3));
            if delete {
                world.role_bindings.remove(&(ns.clone(), binding_name.clone()));
                index.delete_role_binding(&ns, &binding_name, changes);
            } else {
                let binding = RoleBinding {
                    metadata: meta(Some(&ns), &binding_name),
                    role_ref: random_ref(rng),
                    subjects: Some(random_subjects(rng)),
                };
                index.apply_role_binding(&binding, changes);
                world.role_bindings.insert((ns, binding_name), Arc::new(binding));
            }
        }
        _ => {
            let binding_name = format!("crb{}", rng.below(3));
            if delete {
                world.cluster_role_bindings.remove(&binding_name);
                index.delete_cluster_role_binding(&binding_name, changes);
            } else {
                let binding = ClusterRoleBinding {
                    metadata: meta(None, &binding_name),
                    role_ref: random_ref(rng),
                    subjects: Some(random_subjects(rng)),
                };
                index.apply_cluster_role_binding(&binding, changes);
                world.cluster_role_bindings.insert(binding_name, Arc::new(binding));
            }
        }
    }
}

fn users() -> Vec<User> {
    let mut users = Vec::new();
    for name in USERS {
        for mask in 0..(1 << GROUPS.len()) {
            let groups = GROUPS
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, g)| (*g).to_owned())
                .collect();
            users.push(User {
                name: (*name).to_owned(),
                uid: None,
                groups,
                extra: BTreeMap::new(),
            });
        }
    }
    users
}

#[test]
fn index_agrees_with_reference_rbac_evaluation_after_random_changes() {
    let users = users();
    for seed in 1..=1_000u64 {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut world = World::default();
        let mut index = Index::default();
        // What the reported changes say each subject holds, replayed independently of the index.
        let mut replayed: HashMap<(SubjectKey, Scope), bool> = HashMap::new();
        for step_no in 0..30 {
            let mut changes = Vec::new();
            step(&mut rng, &mut world, &mut index, &mut changes);
            for change in changes {
                let held = replayed
                    .entry((change.subject.clone(), change.scope.clone()))
                    .or_default();
                assert_ne!(
                    *held, change.gained,
                    "seed {seed} step {step_no}: duplicate report {change:?}"
                );
                *held = change.gained;
            }
            for user in &users {
                let subjects = subjects_of(user);
                let reference = access::visible_namespaces(&world, user);
                assert_eq!(
                    index.has_all(&subjects),
                    reference.all,
                    "seed {seed} step {step_no} user {user:?}"
                );
                for ns in NAMESPACES {
                    let want = access::may_get(&world, user, ns);
                    assert_eq!(
                        index.may_get(&subjects, ns),
                        want,
                        "seed {seed} step {step_no} user {user:?} ns {ns}"
                    );
                    let by_reports = subjects.iter().any(|s| {
                        replayed.get(&(s.clone(), Scope::All)) == Some(&true)
                            || replayed.get(&(s.clone(), Scope::One((*ns).to_owned()))) == Some(&true)
                    });
                    assert_eq!(
                        by_reports, want,
                        "seed {seed} step {step_no}: reports disagree for {user:?} {ns}"
                    );
                }
                if !reference.all {
                    let granted: HashSet<String> = index.granted_names(&subjects).into_iter().collect();
                    let want: HashSet<String> = reference.names.into_iter().collect();
                    assert_eq!(granted, want, "seed {seed} step {step_no} user {user:?}");
                }
            }
        }
    }
}

#[test]
fn editing_a_binding_without_changing_its_effect_reports_nothing() {
    let mut index = Index::default();
    let mut changes = Vec::new();
    index.apply_cluster_role(&crate::fixtures::namespace_role("view", &["get"], 0), &mut changes);
    let binding = |subjects: Vec<Subject>| RoleBinding {
        metadata: meta(Some("a"), "b"),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: "view".into(),
        },
        subjects: Some(subjects),
    };
    let alice = Subject {
        kind: "User".into(),
        name: "alice".into(),
        ..Subject::default()
    };
    let bob = Subject {
        kind: "User".into(),
        name: "bob".into(),
        ..Subject::default()
    };
    index.apply_role_binding(&binding(vec![alice.clone()]), &mut changes);
    assert_eq!(
        changes,
        [AccessChange {
            subject: SubjectKey::User("alice".into()),
            scope: Scope::One("a".into()),
            gained: true
        }]
    );
    changes.clear();
    index.apply_role_binding(&binding(vec![alice.clone(), bob]), &mut changes);
    assert_eq!(
        changes,
        [AccessChange {
            subject: SubjectKey::User("bob".into()),
            scope: Scope::One("a".into()),
            gained: true
        }]
    );
    changes.clear();
    index.apply_role_binding(&binding(vec![alice.clone(), alice]), &mut changes);
    assert_eq!(
        changes,
        [AccessChange {
            subject: SubjectKey::User("bob".into()),
            scope: Scope::One("a".into()),
            gained: false
        }]
    );
}
