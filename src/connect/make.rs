//! Connecting, once the cluster's kubeconfig has passed its checks (`target`): in the cluster, the server's identity
//! (namespace, ServiceAccount, ClusterRole and binding, a token) and tenancy's guards; in the management cluster, the
//! Secret with the server's kubeconfig and the `Cluster`. What this run made is undone if a later step fails, so a
//! failed connect leaves nothing behind in either cluster; what was there before is left as it was.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use super::target::Target;
use super::{
    connected_role, guards, secret_name, ClusterFields, Error, Side, FIELD_MANAGER, IDENTITY, NAMESPACE, TOKEN_SECONDS,
};
use crate::api::account::Cluster;

/// What this run made, to be undone if a later step fails.
#[derive(Default)]
struct Made {
    namespace: bool,
    service_account: bool,
    cluster_role: bool,
    binding: bool,
    guards: Vec<(String, String)>,
    secret: bool,
    cluster: bool,
}

/// Makes everything connecting `target` as `name` takes, in it and in `management`; on failure, undoes what it made.
///
/// # Errors
/// The first step either kube-apiserver refuses.
pub async fn make(target: &Target, management: &Client, name: &str, fields: &ClusterFields) -> Result<(), Error> {
    let mut made = Made::default();
    let result = steps(target, management, name, fields, &mut made).await;
    if result.is_err() {
        undo(&made, &target.client, management, name).await;
    }
    result
}

async fn steps(
    target: &Target,
    management: &Client,
    name: &str,
    fields: &ClusterFields,
    made: &mut Made,
) -> Result<(), Error> {
    let there = &target.client;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let step_at = |at: Side| {
        move |what: &str| {
            let what = what.to_owned();
            move |source| Error::Kube { step: what, at, source }
        }
    };
    let (step, step_here) = (step_at(Side::Connected), step_at(Side::Management));
    let namespaces: Api<Namespace> = Api::all(there.clone());
    made.namespace = absent(&namespaces, NAMESPACE).await;
    namespaces
        .patch(
            NAMESPACE,
            &params,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})),
        )
        .await
        .map_err(step("creating namespace tenancy-system in the cluster"))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(there.clone(), NAMESPACE);
    made.service_account = absent(&accounts, IDENTITY).await;
    accounts
        .patch(IDENTITY, &params, &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": IDENTITY, "namespace": NAMESPACE}})))
        .await
        .map_err(step("creating the ServiceAccount in the cluster"))?;
    let roles: Api<ClusterRole> = Api::all(there.clone());
    made.cluster_role = absent(&roles, IDENTITY).await;
    roles
        .patch(IDENTITY, &params, &Patch::Apply(connected_role()))
        .await
        .map_err(step("creating the ClusterRole in the cluster"))?;
    let binding = json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": IDENTITY},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": IDENTITY},
        "subjects": [{"kind": "ServiceAccount", "name": IDENTITY, "namespace": NAMESPACE}],
    });
    let bindings: Api<ClusterRoleBinding> = Api::all(there.clone());
    made.binding = absent(&bindings, IDENTITY).await;
    bindings
        .patch(IDENTITY, &params, &Patch::Apply(binding))
        .await
        .map_err(step("creating the ClusterRoleBinding in the cluster"))?;
    made.guards = guards::missing(there).await;
    guards::install(there)
        .await
        .map_err(|(guard, source)| step(&format!("creating {guard} in the cluster"))(source))?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(TOKEN_SECONDS),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(IDENTITY, &PostParams::default(), &request)
        .await
        .map_err(step("requesting a token in the cluster"))?
        .status
        .map(|s| s.token)
        .filter(|t| !t.is_empty())
        .ok_or(Error::NoToken)?;

    let kubeconfig = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": target.server, "certificate-authority-data": target.certificate_authority}}],
        "users": [{"name": IDENTITY, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": IDENTITY}}],
    });
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": secret_name(name), "namespace": NAMESPACE, "labels": {"tenancy.loft.sh/cluster": name}},
        "stringData": {"kubeconfig": kubeconfig.to_string()},
    });
    let secrets: Api<Secret> = Api::namespaced(management.clone(), NAMESPACE);
    made.secret = absent(&secrets, &secret_name(name)).await;
    secrets
        .patch(&secret_name(name), &params, &Patch::Apply(secret))
        .await
        .map_err(step_here("writing the kubeconfig Secret in the management cluster"))?;
    let mut spec = json!({"config": {"secretRef": {"name": secret_name(name), "key": "kubeconfig"}}});
    for (key, value) in [
        ("displayName", &fields.display_name),
        ("spaceDomain", &fields.space_domain),
        ("spaceIssuer", &fields.space_issuer),
    ] {
        if let Some(value) = value {
            spec[key] = json!(value);
        }
    }
    let cluster =
        json!({"apiVersion": "config.tenancy.loft.sh/v1", "kind": "Cluster", "metadata": {"name": name}, "spec": spec});
    let clusters: Api<Cluster> = Api::all(management.clone());
    made.cluster = absent(&clusters, name).await;
    clusters
        .patch(name, &params, &Patch::Apply(cluster))
        .await
        .map_err(step_here("creating the Cluster in the management cluster"))?;
    Ok(())
}

/// Whether `name` is not there (as far as kube-apiserver says; an error counts as there, so it is never undone).
async fn absent<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    matches!(api.get_opt(name).await, Ok(None))
}

/// Deletes what a failed run made, last made first; what cannot be deleted is logged.
async fn undo(made: &Made, there: &Client, management: &Client, name: &str) {
    let delete = DeleteParams::default();
    let mut results = Vec::new();
    if made.cluster {
        results.push((
            "the Cluster",
            Api::<Cluster>::all(management.clone())
                .delete(name, &delete)
                .await
                .map(drop),
        ));
    }
    if made.secret {
        let secrets = Api::<Secret>::namespaced(management.clone(), NAMESPACE);
        results.push((
            "the kubeconfig Secret",
            secrets.delete(&secret_name(name), &delete).await.map(drop),
        ));
    }
    results.push(("the guards", guards::remove(there, &made.guards).await));
    if made.binding {
        let bindings = Api::<ClusterRoleBinding>::all(there.clone());
        results.push((
            "the ClusterRoleBinding",
            bindings.delete(IDENTITY, &delete).await.map(drop),
        ));
    }
    if made.cluster_role {
        let roles = Api::<ClusterRole>::all(there.clone());
        results.push(("the ClusterRole", roles.delete(IDENTITY, &delete).await.map(drop)));
    }
    if made.service_account {
        let accounts = Api::<ServiceAccount>::namespaced(there.clone(), NAMESPACE);
        results.push(("the ServiceAccount", accounts.delete(IDENTITY, &delete).await.map(drop)));
    }
    if made.namespace {
        let namespaces = Api::<Namespace>::all(there.clone());
        results.push((
            "namespace tenancy-system",
            namespaces.delete(NAMESPACE, &delete).await.map(drop),
        ));
    }
    for (what, result) in results {
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => tracing::warn!(cluster = %name, %what, %error, "Undoing a failed connect left something"),
        }
    }
}
