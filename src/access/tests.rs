//! Every RBAC rule shape, checked on the reference evaluation and on the index at once: each helper below asserts that
//! the two agree before returning the answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::index::{subjects_of, Index};
use super::reference::{self, RbacSource, Visibility};
use crate::authn::User;

fn index_of(world: &World) -> Index {
    let mut index = Index::default();
    let mut changes = Vec::new();
    for role in &world.cluster_roles {
        index.apply_cluster_role(role, &mut changes);
    }
    for role in &world.roles {
        index.apply_role(role, &mut changes);
    }
    for binding in &world.role_bindings {
        index.apply_role_binding(binding, &mut changes);
    }
    for binding in &world.cluster_role_bindings {
        index.apply_cluster_role_binding(binding, &mut changes);
    }
    index
}

fn visible_namespaces(world: &World, user: &User) -> Visibility {
    let want = reference::visible_namespaces(world, user);
    let index = index_of(world);
    let subjects = subjects_of(user);
    assert_eq!(
        index.has_all(&subjects),
        want.all,
        "index and reference disagree on all-namespaces for {user:?}"
    );
    if !want.all {
        assert_eq!(
            index.granted_names(&subjects),
            want.names,
            "index and reference disagree for {user:?}"
        );
    }
    want
}

fn may_get(world: &World, user: &User, namespace: &str) -> bool {
    let want = reference::may_get(world, user, namespace);
    assert_eq!(
        index_of(world).may_get(&subjects_of(user), namespace),
        want,
        "{user:?} {namespace}"
    );
    want
}

#[derive(Default)]
struct World {
    cluster_roles: Vec<Arc<ClusterRole>>,
    roles: Vec<Arc<Role>>,
    cluster_role_bindings: Vec<Arc<ClusterRoleBinding>>,
    role_bindings: Vec<Arc<RoleBinding>>,
}

impl RbacSource for World {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>> {
        self.cluster_role_bindings.clone()
    }
    fn role_bindings(&self, namespace: Option<&str>) -> Vec<Arc<RoleBinding>> {
        self.role_bindings
            .iter()
            .filter(|b| namespace.is_none() || b.metadata.namespace.as_deref() == namespace)
            .cloned()
            .collect()
    }
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>> {
        self.cluster_roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name))
            .cloned()
    }
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>> {
        self.roles
            .iter()
            .find(|r| r.metadata.name.as_deref() == Some(name) && r.metadata.namespace.as_deref() == Some(namespace))
            .cloned()
    }
}

fn strings(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| (*s).to_owned()).collect())
}

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
    PolicyRule {
        verbs: strings(verbs).unwrap_or_default(),
        api_groups: strings(groups),
        resources: strings(resources),
        resource_names: if names.is_empty() { None } else { strings(names) },
        non_resource_urls: None,
    }
}

fn meta(namespace: Option<&str>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        ..ObjectMeta::default()
    }
}

fn subject(kind: &str, name: &str, namespace: Option<&str>) -> Subject {
    Subject {
        kind: kind.to_owned(),
        name: name.to_owned(),
        namespace: namespace.map(str::to_owned),
        api_group: (kind != "ServiceAccount").then(|| "rbac.authorization.k8s.io".to_owned()),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: "rbac.authorization.k8s.io".to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.to_owned(),
        uid: None,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        extra: BTreeMap::new(),
    }
}

impl World {
    fn cluster_role(mut self, name: &str, rules: Vec<PolicyRule>) -> Self {
        self.cluster_roles.push(Arc::new(ClusterRole {
            metadata: meta(None, name),
            rules: Some(rules),
            aggregation_rule: None,
        }));
        self
    }
    fn role(mut self, namespace: &str, name: &str, rules: Vec<PolicyRule>) -> Self {
        self.roles.push(Arc::new(Role {
            metadata: meta(Some(namespace), name),
            rules: Some(rules),
        }));
        self
    }
    fn role_binding(mut self, namespace: &str, to: RoleRef, subjects: Vec<Subject>) -> Self {
        let name = format!("rb-{}", self.role_bindings.len());
        self.role_bindings.push(Arc::new(RoleBinding {
            metadata: meta(Some(namespace), &name),
            role_ref: to,
            subjects: Some(subjects),
        }));
        self
    }
    fn cluster_role_binding(mut self, to: RoleRef, subjects: Vec<Subject>) -> Self {
        let name = format!("crb-{}", self.cluster_role_bindings.len());
        self.cluster_role_bindings.push(Arc::new(ClusterRoleBinding {
            metadata: meta(None, &name),
            role_ref: to,
            subjects: Some(subjects),
        }));
        self
    }
}

fn names(v: &Visibility) -> Vec<&str> {
    v.names.iter().map(String::as_str).collect()
}

fn reader() -> Vec<PolicyRule> {
    vec![rule(&["get", "list", "watch"], &[""], &["namespaces"], &[])]
}

#[test]
fn role_binding_to_cluster_role_grants_its_namespace_to_a_group() {
    let world = World::default()
        .cluster_role("edit", reader())
        .role_binding(
            "team-a-dev",
            role_ref("ClusterRole", "edit"),
            vec![subject("Group", "team-a", None)],
        )
        .role_binding(
            "team-a-prod",
            role_ref("ClusterRole", "edit"),
            vec![subject("Group", "team-a", None)],
        );
    let alice = user("alice", &["team-a", "system:authenticated"]);
    let carol = user("carol", &["team-b", "system:authenticated"]);
    let v = visible_namespaces(&world, &alice);
    assert!(!v.all);
    assert_eq!(names(&v), ["team-a-dev", "team-a-prod"]);
    assert!(may_get(&world, &alice, "team-a-dev"));
    assert_eq!(visible_namespaces(&world, &carol), Visibility::default());
    assert!(!may_get(&world, &carol, "team-a-dev"));
}

#[test]
fn role_binding_to_user_and_to_role_in_same_namespace() {
    let world = World::default()
        .role("ns1", "ns-reader", reader())
        .role("ns2", "ns-reader", vec![rule(&["list"], &[""], &["namespaces"], &[])])
        .role_binding(
            "ns1",
            role_ref("Role", "ns-reader"),
            vec![subject("User", "carol", None)],
        )
        .role_binding(
            "ns2",
            role_ref("Role", "ns-reader"),
            vec![subject("User", "carol", None)],
        )
        // A RoleBinding cannot reach a Role of another namespace: ns3 has no Role named ns-reader.
        .role_binding(
            "ns3",
            role_ref("Role", "ns-reader"),
            vec![subject("User", "carol", None)],
        );
    let carol = user("carol", &[]);
    assert_eq!(names(&visible_namespaces(&world, &carol)), ["ns1"]);
    assert!(may_get(&world, &carol, "ns1"));
    assert!(!may_get(&world, &carol, "ns2"), "list without get grants nothing");
    assert!(!may_get(&world, &carol, "ns3"));
}

#[test]
fn cluster_role_binding_grants_every_namespace() {
    let world = World::default().cluster_role("view", reader()).cluster_role_binding(
        role_ref("ClusterRole", "view"),
        vec![subject("Group", "auditors", None)],
    );
    let dave = user("dave", &["auditors"]);
    let v = visible_namespaces(&world, &dave);
    assert!(v.all);
    assert!(may_get(&world, &dave, "kube-system"));
    assert!(!visible_namespaces(&world, &user("alice", &["team-a"])).all);
}

#[test]
fn cluster_role_binding_with_resource_names_grants_only_those() {
    let world = World::default()
        .cluster_role("some", vec![rule(&["get"], &[""], &["namespaces"], &["a", "b"])])
        .cluster_role_binding(role_ref("ClusterRole", "some"), vec![subject("User", "u", None)]);
    let u = user("u", &[]);
    let v = visible_namespaces(&world, &u);
    assert!(!v.all);
    assert_eq!(names(&v), ["a", "b"]);
    assert!(may_get(&world, &u, "a"));
    assert!(!may_get(&world, &u, "c"));
}

#[test]
fn resource_names_in_a_role_binding_must_name_the_namespace() {
    let world = World::default()
        .cluster_role("only-x", vec![rule(&["get"], &[""], &["namespaces"], &["x"])])
        .role_binding("x", role_ref("ClusterRole", "only-x"), vec![subject("User", "u", None)])
        .role_binding("y", role_ref("ClusterRole", "only-x"), vec![subject("User", "u", None)]);
    assert_eq!(names(&visible_namespaces(&world, &user("u", &[]))), ["x"]);
}

#[test]
fn wildcards_in_verbs_groups_and_resources_match() {
    let world = World::default()
        .cluster_role("star-verbs", vec![rule(&["*"], &[""], &["namespaces"], &[])])
        .cluster_role("star-groups", vec![rule(&["get"], &["*"], &["namespaces"], &[])])
        .cluster_role("star-resources", vec![rule(&["get"], &[""], &["*"], &[])])
        .role_binding(
            "n1",
            role_ref("ClusterRole", "star-verbs"),
            vec![subject("User", "u", None)],
        )
        .role_binding(
            "n2",
            role_ref("ClusterRole", "star-groups"),
            vec![subject("User", "u", None)],
        )
        .role_binding(
            "n3",
            role_ref("ClusterRole", "star-resources"),
            vec![subject("User", "u", None)],
        );
    assert_eq!(names(&visible_namespaces(&world, &user("u", &[]))), ["n1", "n2", "n3"]);
}

#[test]
fn rules_for_other_groups_resources_subresources_or_verbs_do_not_match() {
    let world = World::default()
        .cluster_role(
            "near-misses",
            vec![
                rule(&["get"], &["apps"], &["namespaces"], &[]),
                rule(&["get"], &[""], &["namespaces/status"], &[]),
                rule(&["get"], &[""], &["*/status"], &[]),
                rule(&["get"], &[""], &["pods"], &[]),
                rule(&["list", "watch", "update"], &[""], &["namespaces"], &[]),
            ],
        )
        .role_binding(
            "n1",
            role_ref("ClusterRole", "near-misses"),
            vec![subject("User", "u", None)],
        )
        .cluster_role_binding(role_ref("ClusterRole", "near-misses"), vec![subject("User", "u", None)]);
    let v = visible_namespaces(&world, &user("u", &[]));
    assert_eq!(v, Visibility::default());
}

#[test]
fn dangling_role_refs_grant_nothing() {
    let world = World::default()
        .role_binding(
            "n1",
            role_ref("ClusterRole", "missing"),
            vec![subject("User", "u", None)],
        )
        .role_binding("n2", role_ref("Role", "missing"), vec![subject("User", "u", None)])
        .cluster_role_binding(role_ref("ClusterRole", "missing"), vec![subject("User", "u", None)]);
    assert_eq!(visible_namespaces(&world, &user("u", &[])), Visibility::default());
}

#[test]
fn cluster_role_binding_to_a_role_kind_grants_nothing() {
    let world = World::default()
        .role("n1", "r", reader())
        .cluster_role_binding(role_ref("Role", "r"), vec![subject("User", "u", None)]);
    assert_eq!(visible_namespaces(&world, &user("u", &[])), Visibility::default());
}

#[test]
fn service_account_subjects_match_their_user_name_and_default_to_the_binding_namespace() {
    let sa = user(
        "system:serviceaccount:tools:deployer",
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:tools",
            "system:authenticated",
        ],
    );
    let world = World::default()
        .cluster_role("view", reader())
        // Namespace given explicitly.
        .role_binding(
            "n1",
            role_ref("ClusterRole", "view"),
            vec![subject("ServiceAccount", "deployer", Some("tools"))],
        )
        // No namespace: the binding's own namespace, which is not the SA's.
        .role_binding(
            "n2",
            role_ref("ClusterRole", "view"),
            vec![subject("ServiceAccount", "deployer", None)],
        )
        // No namespace, binding in the SA's namespace.
        .role_binding(
            "tools",
            role_ref("ClusterRole", "view"),
            vec![subject("ServiceAccount", "deployer", None)],
        )
        // The implicit group of the SA's namespace.
        .role_binding(
            "n3",
            role_ref("ClusterRole", "view"),
            vec![subject("Group", "system:serviceaccounts:tools", None)],
        )
        // Another SA of the same name elsewhere.
        .role_binding(
            "n4",
            role_ref("ClusterRole", "view"),
            vec![subject("ServiceAccount", "deployer", Some("other"))],
        );
    assert_eq!(names(&visible_namespaces(&world, &sa)), ["n1", "n3", "tools"]);
    // A user who merely looks like an SA name without the prefix matches nothing.
    assert_eq!(
        names(&visible_namespaces(&world, &user("deployer", &[]))),
        Vec::<&str>::new()
    );
}

#[test]
fn service_account_subject_without_namespace_in_a_cluster_role_binding_matches_nobody() {
    let world = World::default().cluster_role("view", reader()).cluster_role_binding(
        role_ref("ClusterRole", "view"),
        vec![subject("ServiceAccount", "deployer", None)],
    );
    let sa = user("system:serviceaccount:tools:deployer", &[]);
    assert!(!visible_namespaces(&world, &sa).all);
}

#[test]
fn system_authenticated_group_binding_reaches_every_user() {
    let world = World::default().cluster_role("view", reader()).role_binding(
        "shared",
        role_ref("ClusterRole", "view"),
        vec![subject("Group", "system:authenticated", None)],
    );
    let anyone = user("zed", &["system:authenticated"]);
    assert_eq!(names(&visible_namespaces(&world, &anyone)), ["shared"]);
}

#[test]
fn unknown_subject_kinds_match_nobody() {
    let world = World::default().cluster_role("view", reader()).role_binding(
        "n1",
        role_ref("ClusterRole", "view"),
        vec![subject("Robot", "u", None)],
    );
    assert_eq!(visible_namespaces(&world, &user("u", &[])), Visibility::default());
}
