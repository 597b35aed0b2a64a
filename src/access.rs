//! Who may see which namespace: RBAC evaluation of `get namespaces` with the exact semantics of kube-apiserver's
//! RBAC authorizer.
//!
//! A namespace is visible to a user when RBAC would allow `get` on `namespaces` named N in namespace N (kube-apiserver
//! puts a namespace's own name in the request's namespace). So a ClusterRoleBinding can grant all namespaces (or the
//! ones in its rules' resourceNames), and a RoleBinding in N can grant N. Aggregated ClusterRoles need nothing special:
//! the aggregation controller writes their rules, and the RBAC authorizer reads only `rules`, as we do.

pub mod index;
#[cfg(test)]
pub mod reference;
pub mod view;

use k8s_openapi::api::rbac::v1::PolicyRule;

/// Where the answer to "which namespaces may this user get" comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessMode {
    /// The RBAC index: RBAC objects evaluated in this server, exactly as kube-apiserver's RBAC authorizer does.
    Rbac,
    /// SubjectAccessReviews asked of kube-apiserver ([`review`]), for clusters whose authorizers are not only RBAC.
    Sar,
}

/// Whether the rule allows `get` on core `namespaces`, for some name.
#[must_use]
pub fn grants_get_namespaces(rule: &PolicyRule) -> bool {
    let has =
        |items: Option<&[String]>, want: &str| items.unwrap_or_default().iter().any(|item| item == want || item == "*");
    rule.verbs.iter().any(|verb| verb == "get" || verb == "*")
        && has(rule.api_groups.as_deref(), "")
        && has(rule.resources.as_deref(), "namespaces")
}

#[cfg(test)]
mod tests;
