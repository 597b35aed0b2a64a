//! What tenancy needs in every cluster it serves besides the server's identity, as deploy/ ships it to the management
//! cluster: the admission policies that guard the server's keys on namespaces and the objects it enforces
//! (deploy/admission.yaml; tenants talk to each cluster's kube-apiserver directly, so each carries its own guard), and
//! the ClusterRoles the server's bindings name (deploy/tenant-rbac.yaml). `connect` installs them; the server applies
//! them again each time it connects a cluster, so a new server version brings its guards to every cluster.

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

/// The ClusterRoles that the bindings the server makes in each space name.
pub const TENANT_ROLES: [&str; 3] = [
    "tenancy-space-admin",
    "tenancy-space-admin-namespace",
    "tenancy-shared-reader",
];
/// The admission policies (and their bindings, of the same names).
pub const POLICIES: [&str; 2] = ["tenancy-namespace-keys", "tenancy-enforced-objects"];

/// The field manager of the guards: the server and `connect` own them alike.
const FIELD_MANAGER: &str = "tenancy-apiserver-guards";

/// The guards, as deploy/ has them: the tenant ClusterRoles, then the policies, then their bindings.
#[must_use]
pub fn guards() -> Vec<Value> {
    let documents = |text: &'static str| {
        text.split("\n---\n")
            .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
            .collect::<Vec<_>>()
    };
    let roles = documents(include_str!("../../deploy/tenant-rbac.yaml"))
        .into_iter()
        .filter(|doc| doc["kind"] == "ClusterRole" && TENANT_ROLES.iter().any(|name| doc["metadata"]["name"] == *name));
    let mut admission = documents(include_str!("../../deploy/admission.yaml"));
    // Policies before their bindings: a binding to a policy not yet there guards nothing for a moment.
    admission.sort_by_key(|doc| doc["kind"] != "ValidatingAdmissionPolicy");
    roles.chain(admission).collect()
}

/// Applies every guard in the cluster `client` talks to (server-side apply, forced: they are the platform's).
///
/// # Errors
/// The first guard kube-apiserver refuses: its kind, its name, and the refusal.
pub async fn install(client: &Client) -> Result<(), (String, kube::Error)> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for guard in guards() {
        let name = guard["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let kind = guard["kind"].as_str().unwrap_or_default().to_owned();
        let patch = Patch::Apply(&guard);
        let applied = match kind.as_str() {
            "ClusterRole" => Api::<ClusterRole>::all(client.clone())
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            "ValidatingAdmissionPolicy" => Api::<ValidatingAdmissionPolicy>::all(client.clone())
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            "ValidatingAdmissionPolicyBinding" => Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
                .patch(&name, &params, &patch)
                .await
                .map(drop),
            _ => continue,
        };
        applied.map_err(|error| (format!("{kind} {name}"), error))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cluster_gets_the_tenant_roles_and_both_policies_with_their_bindings() {
        let names: Vec<(String, String)> = guards()
            .iter()
            .map(|g| {
                (
                    g["kind"].as_str().unwrap_or_default().to_owned(),
                    g["metadata"]["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let mut want: Vec<(String, String)> = TENANT_ROLES
            .iter()
            .map(|name| ("ClusterRole".to_owned(), (*name).to_owned()))
            .collect();
        want.extend(
            POLICIES
                .iter()
                .map(|name| ("ValidatingAdmissionPolicy".to_owned(), (*name).to_owned())),
        );
        want.extend(
            POLICIES
                .iter()
                .map(|name| ("ValidatingAdmissionPolicyBinding".to_owned(), (*name).to_owned())),
        );
        assert_eq!(names, want);
    }
}
