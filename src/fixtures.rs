//! Objects for unit tests, shaped as kube-apiserver lists them: namespaces, a ClusterRole over namespaces, RoleBindings
//! to users, and users. Test builds only.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::authn::User;

/// Metadata with a uid (`uid-<name>`) and, when `rv` is not 0, a resourceVersion.
pub fn meta(namespace: Option<&str>, name: &str, rv: u64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: namespace.map(Into::into),
        uid: Some(format!("uid-{name}")),
        resource_version: (rv != 0).then(|| rv.to_string()),
        ..ObjectMeta::default()
    }
}

pub fn namespace(name: &str, rv: u64) -> Namespace {
    Namespace {
        metadata: meta(None, name, rv),
        ..Namespace::default()
    }
}

/// A ClusterRole granting `verbs` on core namespaces.
pub fn namespace_role(name: &str, verbs: &[&str], rv: u64) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name, rv),
        rules: Some(vec![PolicyRule {
            verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["namespaces".into()]),
            ..PolicyRule::default()
        }]),
        aggregation_rule: None,
    }
}

pub fn user_subject(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        name: name.into(),
        ..Subject::default()
    }
}

/// A RoleBinding `name` in `namespace` of the ClusterRole `role` to `subjects`.
pub fn binding(namespace: &str, name: &str, role: &str, subjects: Vec<Subject>, rv: u64) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(namespace), name, rv),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: role.into(),
        },
        subjects: Some(subjects),
    }
}

/// An authenticated user in no other group.
pub fn user(name: &str) -> User {
    User {
        name: name.into(),
        uid: None,
        groups: vec!["system:authenticated".into()],
        extra: BTreeMap::new(),
    }
}
