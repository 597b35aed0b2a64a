//! What tenancy needs in every cluster it serves besides the server's identity, as deploy/ ships it to the management
//! cluster: the admission policies that guard the server's keys on namespaces and the objects it enforces
//! (deploy/admission.yaml; tenants talk to each cluster's kube-apiserver directly, so each carries its own guard), and
//! the ClusterRoles the server's bindings name (deploy/tenant-rbac.yaml). `connect` installs them; the server applies
//! them again each time it connects a cluster, so a new server version brings its guards to every cluster.

use k8s_openapi::api::admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding};
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::Client;
use serde_json::Value;

/// The ClusterRoles that the bindings the server makes in each space name.
pub const TENANT_ROLES: [&str; 3] = [
    "tenancy-space-admin",
    "tenancy-space-admin-namespace",
    "tenancy-shared-reader",
];
/// The admission policies (and their bindings, of the same names).
pub const POLICIES: [&str; 3] = [
    "tenancy-namespace-keys",
    "tenancy-enforced-objects",
    "tenancy-space-domains",
];

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
        .filter(|doc| doc["kind"] == "ClusterRole" && TENANT_ROLES.iter().any(|name| doc["metadata"]["name"] == *name))
        .map(|mut role| {
            // An aggregated role's rules are kube-controller-manager's to fill: applied as `rules: []`, every apply
            // would empty them until it fills them again, and the owners would lose their spaces meanwhile.
            let aggregated = !role["aggregationRule"].is_null();
            if let (Some(fields), true) = (role.as_object_mut(), aggregated) {
                fields.remove("rules");
            }
            role
        });
    let mut admission = documents(include_str!("../../deploy/admission.yaml"));
    // Policies before their bindings: a binding to a policy not yet there guards nothing for a moment.
    admission.sort_by_key(|doc| doc["kind"] != "ValidatingAdmissionPolicy");
    roles.chain(admission).collect()
}

/// The API of a guard's kind in the cluster `client` talks to; `None` for a kind that is no guard.
fn api_of(client: &Client, kind: &str) -> Option<Api<DynamicObject>> {
    let resource = match kind {
        "ClusterRole" => ApiResource::erase::<ClusterRole>(&()),
        "ValidatingAdmissionPolicy" => ApiResource::erase::<ValidatingAdmissionPolicy>(&()),
        "ValidatingAdmissionPolicyBinding" => ApiResource::erase::<ValidatingAdmissionPolicyBinding>(&()),
        _ => return None,
    };
    Some(Api::all_with(client.clone(), &resource))
}

/// A guard's kind and name.
fn kind_and_name(guard: &Value) -> (String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (text(&guard["kind"]), text(&guard["metadata"]["name"]))
}

/// Applies every guard in the cluster `client` talks to (server-side apply, forced: they are the platform's).
///
/// # Errors
/// The first guard kube-apiserver refuses: its kind, its name, and the refusal.
pub async fn install(client: &Client) -> Result<(), (String, kube::Error)> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for guard in guards() {
        let (kind, name) = kind_and_name(&guard);
        let Some(api) = api_of(client, &kind) else {
            continue;
        };
        api.patch(&name, &params, &Patch::Apply(&guard))
            .await
            .map_err(|error| (format!("{kind} {name}"), error))?;
    }
    Ok(())
}

/// The guards the cluster `client` talks to does not hold yet, as (kind, name): what an install would make.
pub async fn missing(client: &Client) -> Vec<(String, String)> {
    let mut missing = Vec::new();
    for guard in guards() {
        let (kind, name) = kind_and_name(&guard);
        let Some(api) = api_of(client, &kind) else {
            continue;
        };
        // Not known to be missing is left alone: only what surely was not there is ever removed.
        if matches!(api.get_opt(&name).await, Ok(None)) {
            missing.push((kind, name));
        }
    }
    missing
}

/// Removes the guards `made` (as [`missing`] named them) from the cluster `client` talks to, bindings first.
///
/// # Errors
/// The first removal kube-apiserver refuses (one already gone is fine).
pub async fn remove(client: &Client, made: &[(String, String)]) -> Result<(), kube::Error> {
    for (kind, name) in made.iter().rev() {
        let Some(api) = api_of(client, kind) else {
            continue;
        };
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(error),
        }
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

    #[test]
    fn an_aggregated_role_is_applied_without_rules_so_its_aggregated_rules_stay() {
        let guards = guards();
        let admin = guards
            .iter()
            .find(|g| g["metadata"]["name"] == "tenancy-space-admin")
            .expect("the owners' role");
        assert!(!admin["aggregationRule"].is_null(), "{admin}");
        assert!(admin.get("rules").is_none(), "{admin}");
        let reader = guards
            .iter()
            .find(|g| g["metadata"]["name"] == "tenancy-shared-reader")
            .expect("the shared readers' role");
        assert!(reader["rules"].as_array().is_some_and(|r| !r.is_empty()), "{reader}");
    }
}
