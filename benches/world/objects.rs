//! Constructors for the Kubernetes objects of a generated world, shaped like what a watch delivers (names,
//! resourceVersions, and for namespaces the labels, managedFields, spec and status a real cluster returns).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, NamespaceSpec, NamespaceStatus};
use k8s_openapi::api::rbac::v1::{
    AggregationRule, ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, LabelSelector, ManagedFieldsEntry, ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

const RBAC_GROUP: &str = "rbac.authorization.k8s.io";
/// 2025-01-01T00:00:00Z: namespaces are created one second apart from here.
const EPOCH_SECONDS: i64 = 1_735_689_600;

fn meta(namespace: Option<&str>, name: &str, resource_version: u64) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        resource_version: Some(resource_version.to_string()),
        ..ObjectMeta::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// A rule over `resources` of `api_groups` ("" is core).
pub fn rule(api_groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(strings(api_groups)),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

/// A rule limited to the objects named `names`.
pub fn named_rule(api_groups: &[&str], resources: &[&str], verbs: &[&str], names: Vec<String>) -> PolicyRule {
    PolicyRule {
        resource_names: Some(names),
        ..rule(api_groups, resources, verbs)
    }
}

/// A rule over non-resource URLs (health endpoints and the like).
pub fn url_rule(urls: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        non_resource_urls: Some(strings(urls)),
        verbs: strings(verbs),
        ..PolicyRule::default()
    }
}

pub fn cluster_role(name: &str, rules: Vec<PolicyRule>, resource_version: u64) -> ClusterRole {
    ClusterRole {
        metadata: meta(None, name, resource_version),
        rules: Some(rules),
        aggregation_rule: None,
    }
}

/// An aggregated ClusterRole whose `rules` the aggregation controller has already filled from the roles labelled
/// `label=true`.
pub fn aggregated_cluster_role(name: &str, label: &str, rules: Vec<PolicyRule>, resource_version: u64) -> ClusterRole {
    ClusterRole {
        aggregation_rule: Some(AggregationRule {
            cluster_role_selectors: Some(vec![LabelSelector {
                match_labels: Some(BTreeMap::from([(label.to_owned(), "true".to_owned())])),
                ..LabelSelector::default()
            }]),
        }),
        ..cluster_role(name, rules, resource_version)
    }
}

/// A ClusterRole carrying `label=true`, picked up by an aggregated role.
pub fn labelled_cluster_role(name: &str, label: &str, rules: Vec<PolicyRule>, resource_version: u64) -> ClusterRole {
    let mut role = cluster_role(name, rules, resource_version);
    role.metadata.labels = Some(BTreeMap::from([(label.to_owned(), "true".to_owned())]));
    role
}

pub fn role(namespace: &str, name: &str, rules: Vec<PolicyRule>, resource_version: u64) -> Role {
    Role {
        metadata: meta(Some(namespace), name, resource_version),
        rules: Some(rules),
    }
}

pub fn user(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: "User".to_owned(),
        name: name.to_owned(),
        namespace: None,
    }
}

pub fn group(name: &str) -> Subject {
    Subject {
        api_group: Some(RBAC_GROUP.to_owned()),
        kind: "Group".to_owned(),
        name: name.to_owned(),
        namespace: None,
    }
}

pub fn service_account(namespace: &str, name: &str) -> Subject {
    Subject {
        api_group: None,
        kind: "ServiceAccount".to_owned(),
        name: name.to_owned(),
        namespace: Some(namespace.to_owned()),
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: RBAC_GROUP.to_owned(),
        kind: kind.to_owned(),
        name: name.to_owned(),
    }
}

/// A RoleBinding in `namespace` to the ClusterRole `cluster_role`.
pub fn role_binding_to_cluster_role(
    namespace: &str,
    name: &str,
    cluster_role: &str,
    subjects: Vec<Subject>,
    resource_version: u64,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(namespace), name, resource_version),
        role_ref: role_ref("ClusterRole", cluster_role),
        subjects: Some(subjects),
    }
}

/// A RoleBinding in `namespace` to the Role `role` of the same namespace.
pub fn role_binding_to_role(
    namespace: &str,
    name: &str,
    role: &str,
    subjects: Vec<Subject>,
    resource_version: u64,
) -> RoleBinding {
    RoleBinding {
        metadata: meta(Some(namespace), name, resource_version),
        role_ref: role_ref("Role", role),
        subjects: Some(subjects),
    }
}

pub fn cluster_role_binding(
    name: &str,
    cluster_role: &str,
    subjects: Vec<Subject>,
    resource_version: u64,
) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: meta(None, name, resource_version),
        role_ref: role_ref("ClusterRole", cluster_role),
        subjects: Some(subjects),
    }
}

/// The `index`-th namespace as kube-apiserver returns it after `kubectl create`: uid, creation time, the automatic
/// name label plus an owner and a team label, one managedFields entry, the `kubernetes` finalizer, phase Active.
pub fn namespace(index: usize, name: &str, uid: String, owner: &str, team: &str, resource_version: u64) -> Namespace {
    let created = Timestamp::from_second(EPOCH_SECONDS + index as i64).expect("a valid timestamp");
    let labels = BTreeMap::from([
        ("kubernetes.io/metadata.name".to_owned(), name.to_owned()),
        ("tenancy.loft.sh/account".to_owned(), owner.to_owned()),
        ("team".to_owned(), team.to_owned()),
    ]);
    let fields = serde_json::json!({
        "f:metadata": {"f:labels": {
            ".": {},
            "f:kubernetes.io/metadata.name": {},
            "f:team": {},
            "f:tenancy.loft.sh/account": {},
        }}
    });
    Namespace {
        metadata: ObjectMeta {
            uid: Some(uid),
            creation_timestamp: Some(Time(created)),
            labels: Some(labels),
            managed_fields: Some(vec![ManagedFieldsEntry {
                api_version: Some("v1".to_owned()),
                fields_type: Some("FieldsV1".to_owned()),
                fields_v1: Some(FieldsV1(fields)),
                manager: Some("kubectl-create".to_owned()),
                operation: Some("Update".to_owned()),
                subresource: None,
                time: Some(Time(created)),
            }]),
            ..meta(None, name, resource_version)
        },
        spec: Some(NamespaceSpec {
            finalizers: Some(vec!["kubernetes".to_owned()]),
        }),
        status: Some(NamespaceStatus {
            phase: Some("Active".to_owned()),
            conditions: None,
        }),
    }
}
