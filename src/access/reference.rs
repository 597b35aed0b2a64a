//! The straightforward reference evaluation of RBAC for `get namespaces`, one binding at a time, as kube-apiserver's
//! RBAC authorizer does it. The index must always agree with it; tests hold them side by side.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::grants_get_namespaces;
use crate::authn::User;

/// Read access to the RBAC objects of the cluster, as held by the reflectors (or a test's fixture).
pub trait RbacSource {
    fn cluster_role_bindings(&self) -> Vec<Arc<ClusterRoleBinding>>;
    /// RoleBindings of one namespace, or of all namespaces when `namespace` is `None`.
    fn role_bindings(&self, namespace: Option<&str>) -> Vec<Arc<RoleBinding>>;
    fn cluster_role(&self, name: &str) -> Option<Arc<ClusterRole>>;
    fn role(&self, namespace: &str, name: &str) -> Option<Arc<Role>>;
}

/// The namespaces a user may get.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Visibility {
    /// A ClusterRoleBinding grants every namespace.
    pub all: bool,
    /// Namespaces granted one by one (empty when `all`).
    pub names: BTreeSet<String>,
}

/// Every namespace `user` may get.
#[must_use]
pub fn visible_namespaces(rbac: &impl RbacSource, user: &User) -> Visibility {
    let mut visibility = Visibility::default();
    for binding in rbac.cluster_role_bindings() {
        if !binding_applies(binding.subjects.as_deref(), user, "") {
            continue;
        }
        for rule in cluster_binding_rules(rbac, &binding.role_ref) {
            if !grants_get_namespaces(&rule) {
                continue;
            }
            match rule.resource_names.as_deref() {
                None | Some([]) => {
                    return Visibility {
                        all: true,
                        names: BTreeSet::new(),
                    }
                }
                Some(names) => visibility.names.extend(names.iter().cloned()),
            }
        }
    }
    for binding in rbac.role_bindings(None) {
        let Some(namespace) = binding.metadata.namespace.as_deref() else {
            continue;
        };
        if visibility.names.contains(namespace) {
            continue;
        }
        if role_binding_grants(rbac, &binding, user, namespace) {
            visibility.names.insert(namespace.to_owned());
        }
    }
    visibility
}

/// Whether `user` may get namespace `namespace`.
#[must_use]
pub fn may_get(rbac: &impl RbacSource, user: &User, namespace: &str) -> bool {
    let cluster_wide = rbac.cluster_role_bindings().iter().any(|binding| {
        binding_applies(binding.subjects.as_deref(), user, "")
            && cluster_binding_rules(rbac, &binding.role_ref)
                .iter()
                .any(|rule| rule_allows_get_namespace(rule, namespace))
    });
    cluster_wide
        || rbac
            .role_bindings(Some(namespace))
            .iter()
            .any(|binding| role_binding_grants(rbac, binding, user, namespace))
}

fn role_binding_grants(rbac: &impl RbacSource, binding: &RoleBinding, user: &User, namespace: &str) -> bool {
    binding_applies(binding.subjects.as_deref(), user, namespace)
        && role_binding_rules(rbac, &binding.role_ref, namespace)
            .iter()
            .any(|rule| rule_allows_get_namespace(rule, namespace))
}

/// Rules a ClusterRoleBinding's roleRef points at; a dangling or non-ClusterRole ref grants nothing.
fn cluster_binding_rules(rbac: &impl RbacSource, role_ref: &RoleRef) -> Vec<PolicyRule> {
    if role_ref.kind != "ClusterRole" {
        return Vec::new();
    }
    rbac.cluster_role(&role_ref.name)
        .and_then(|role| role.rules.clone())
        .unwrap_or_default()
}

/// Rules a RoleBinding's roleRef points at: a Role in the binding's namespace, or a ClusterRole.
fn role_binding_rules(rbac: &impl RbacSource, role_ref: &RoleRef, namespace: &str) -> Vec<PolicyRule> {
    match role_ref.kind.as_str() {
        "ClusterRole" => cluster_binding_rules(rbac, role_ref),
        "Role" => rbac
            .role(namespace, &role_ref.name)
            .and_then(|role| role.rules.clone())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Whether any subject names `user`. `namespace` is the binding's namespace ("" for ClusterRoleBindings): a
/// ServiceAccount subject without a namespace means one in the binding's namespace.
#[must_use]
pub fn binding_applies(subjects: Option<&[Subject]>, user: &User, namespace: &str) -> bool {
    subjects
        .unwrap_or_default()
        .iter()
        .any(|subject| subject_applies(subject, user, namespace))
}

/// RBAC's `appliesToUser`.
#[must_use]
pub fn subject_applies(subject: &Subject, user: &User, namespace: &str) -> bool {
    match subject.kind.as_str() {
        "User" => subject.name == user.name,
        "Group" => user.groups.contains(&subject.name),
        "ServiceAccount" => {
            let sa_namespace = match subject.namespace.as_deref() {
                Some(ns) if !ns.is_empty() => ns,
                _ => namespace,
            };
            !sa_namespace.is_empty()
                && user
                    .name
                    .strip_prefix("system:serviceaccount:")
                    .and_then(|rest| rest.split_once(':'))
                    .is_some_and(|(ns, name)| ns == sa_namespace && name == subject.name)
        }
        _ => false,
    }
}

/// Whether the rule allows `get` on the core namespace named `namespace` (RBAC's `RuleAllows`).
#[must_use]
pub fn rule_allows_get_namespace(rule: &PolicyRule, namespace: &str) -> bool {
    grants_get_namespaces(rule)
        && match rule.resource_names.as_deref() {
            None | Some([]) => true,
            Some(names) => names.iter().any(|name| name == namespace),
        }
}
