//! `tenancy-apiserver connect` and `disconnect`: what the server needs in a cluster it is to serve spaces of, made there
//! with that cluster's admin kubeconfig (a ServiceAccount, the least RBAC, a token), and in the management cluster the
//! Secret holding a kubeconfig for that identity and the `Cluster` naming it. Tenants never see either: the Secret is
//! readable only by the server, and only cluster admins may create Clusters. The cluster gets tenancy's guards too
//! (`guards`: admission policies and tenant roles).

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DeleteParams};
use kube::Client;
use serde_json::json;

use crate::api::account::Cluster;

pub mod guards;
mod make;
pub mod target;

pub use make::make;
use target::Target;

/// Where the server's identity lives, in the management cluster and in each connected one.
pub const NAMESPACE: &str = "tenancy-system";
/// The server's identity in a connected cluster, and its ClusterRole and binding there.
pub const IDENTITY: &str = "tenancy-apiserver-connected";
/// How long the token in the Secret lasts; `connect` again renews it.
const TOKEN_SECONDS: i64 = 365 * 24 * 3600;
const FIELD_MANAGER: &str = "tenancy-apiserver-connect";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidDomains(String),
    /// The cluster's kubeconfig, or what its cluster says about it.
    #[error(transparent)]
    Target(#[from] target::Problem),
    #[error("{step}")]
    Kube {
        step: String,
        /// The cluster whose kube-apiserver refused it.
        at: Side,
        #[source]
        source: kube::Error,
    },
    #[error("kube-apiserver issued no token for {IDENTITY}")]
    NoToken,
    /// Not a DNS label: its spaces, `<name>.<namespace>`, could not be told apart.
    #[error("--name {0:?}: a cluster's name must be a DNS label (lowercase letters, digits and '-', at most 63 characters, no dots)")]
    InvalidName(String),
    /// A kubeconfig that cannot be read or used.
    #[error(transparent)]
    Config(#[from] crate::backend::Error),
}

/// Which cluster a step of connecting acts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The cluster being connected (or disconnected).
    Connected,
    /// The management cluster.
    Management,
}

/// `connect`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Connect {
    /// The cluster's name in the management cluster (a DNS label: spaces there are named `<name>.<namespace>`).
    #[arg(long)]
    pub name: String,
    /// A kubeconfig with cluster-admin rights in the cluster to connect (its current context).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// The management cluster's kubeconfig (unset: in-cluster config, then `$KUBECONFIG`, then `~/.kube/config`).
    #[arg(long)]
    pub management_kubeconfig: Option<PathBuf>,
    #[command(flatten)]
    pub fields: ClusterFields,
}

/// What a Cluster says of its cluster besides where its credentials are.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClusterFields {
    /// A name for people.
    #[arg(long)]
    pub display_name: Option<String>,
    /// The base domain of its spaces: each owns `<namespace>.<base>` and every name below it (`Cluster.spec.spaceDomain`).
    #[arg(long)]
    pub space_domain: Option<String>,
    /// The shared ClusterIssuer there that tenants may name (`Cluster.spec.spaceIssuer`).
    #[arg(long)]
    pub space_issuer: Option<String>,
}

/// `disconnect`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Disconnect {
    #[arg(long)]
    pub name: String,
    /// The connected cluster's admin kubeconfig, to remove the server's identity there too (unset: left there).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long)]
    pub management_kubeconfig: Option<PathBuf>,
}

/// The name of the Secret holding a connected cluster's kubeconfig.
#[must_use]
pub fn secret_name(cluster: &str) -> String {
    format!("cluster-{cluster}")
}

/// Connects the cluster: its kubeconfig checked (it parses, its cluster answers, its user may do what connecting
/// takes), then the server's identity and guards there, then its Secret and Cluster here; a failure undoes what was
/// made.
///
/// # Errors
/// What is wrong with the kubeconfig, or a refusal by either kube-apiserver.
pub async fn connect(args: &Connect) -> Result<(), Error> {
    if !crate::spaces::validation::name(&args.name).is_empty() {
        return Err(Error::InvalidName(args.name.clone()));
    }
    crate::domains::SpaceDomains::new(args.fields.space_domain.as_deref(), args.fields.space_issuer.as_deref())
        .map_err(Error::InvalidDomains)?;
    let target = Target::from_file(&args.kubeconfig).await?;
    target.check().await?;
    let management = client(args.management_kubeconfig.as_deref()).await?;
    make(&target, &management, &args.name, &args.fields).await
}

/// Disconnects the cluster: its Cluster and Secret here, and with `--kubeconfig` the server's identity there.
///
/// # Errors
/// An unreadable kubeconfig, or a refusal by either kube-apiserver (what is already gone is not an error).
pub async fn disconnect(args: &Disconnect) -> Result<(), Error> {
    let management = client(args.management_kubeconfig.as_deref()).await?;
    let gone = |step: &'static str, at: Side| {
        move |result: Result<(), kube::Error>| match result {
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(Error::Kube {
                step: step.to_owned(),
                at,
                source,
            }),
            Ok(()) => Ok(()),
        }
    };
    let delete = DeleteParams::default();
    gone("deleting the Cluster", Side::Management)(
        Api::<Cluster>::all(management.clone())
            .delete(&args.name, &delete)
            .await
            .map(|_| ()),
    )?;
    gone("deleting the kubeconfig Secret", Side::Management)(
        Api::<Secret>::namespaced(management, NAMESPACE)
            .delete(&secret_name(&args.name), &delete)
            .await
            .map(|_| ()),
    )?;
    if let Some(kubeconfig) = &args.kubeconfig {
        let target = Target::from_file(kubeconfig).await?.client;
        gone("deleting the ClusterRoleBinding in the cluster", Side::Connected)(
            Api::<ClusterRoleBinding>::all(target.clone())
                .delete(IDENTITY, &delete)
                .await
                .map(|_| ()),
        )?;
        gone("deleting the ClusterRole in the cluster", Side::Connected)(
            Api::<ClusterRole>::all(target.clone())
                .delete(IDENTITY, &delete)
                .await
                .map(|_| ()),
        )?;
        gone("deleting the ServiceAccount in the cluster", Side::Connected)(
            Api::<ServiceAccount>::namespaced(target, NAMESPACE)
                .delete(IDENTITY, &delete)
                .await
                .map(|_| ()),
        )?;
    }
    Ok(())
}

/// The least the server needs in a connected cluster: read namespaces and RBAC (its index), make namespaces, owner
/// bindings and template objects (spaces created there), put spaces to sleep and wake them, ask TokenReviews and
/// SubjectAccessReviews, and keep its guards current.
fn connected_role() -> serde_json::Value {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": IDENTITY},
        "rules": [
            {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "clusterroles", "rolebindings", "clusterrolebindings"], "verbs": ["get", "list", "watch"]},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create", "update", "patch", "delete"]},
            // The owner binding names ClusterRole admin: binding it needs `bind`, not admin's rights themselves.
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["tenancy-space-admin", "tenancy-shared-reader"]},
            // Template objects, as in this cluster (deploy/rbac.yaml).
            {"apiGroups": [""], "resources": ["resourcequotas", "limitranges", "configmaps", "serviceaccounts"], "verbs": ["create", "list", "watch", "patch", "delete"]},
            // The space-domain policy's params (kept by the server): kube-apiserver lets only who may get them bind
            // the policy to them.
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"], "resourceNames": [crate::domains::PARAMS]},
            // AccountQuota shares, read one at a time while kube-controller-manager puts them in force.
            {"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get"]},
            // Why a space's pods are refused under its AccountQuota: an Event on its share.
            {"apiGroups": [""], "resources": ["events"], "verbs": ["get", "create", "patch"]},
            {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["create", "list", "watch", "patch", "delete"]},
            // Sleep mode, as in this cluster (deploy/rbac.yaml).
            {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["apps"], "resources": ["deployments/scale", "statefulsets/scale"], "verbs": ["get", "patch", "update"]},
            {"apiGroups": ["batch"], "resources": ["cronjobs"], "verbs": ["get", "list", "watch", "patch"]},
            {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["list", "watch"]},
            {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["list", "watch"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["tokenreviews"], "verbs": ["create"]},
            {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
            // Its guards (`guards`), kept current by the server: these objects only, and the tenant roles' rights
            // granted through them without the server holding them (`escalate`).
            {"apiGroups": ["admissionregistration.k8s.io"], "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"], "verbs": ["get", "patch"], "resourceNames": guards::POLICIES},
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["get", "patch", "escalate"], "resourceNames": guards::TENANT_ROLES},
        ],
    })
}

async fn client(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    let config = crate::backend::config(kubeconfig).await?;
    Client::try_from(config).map_err(|source| Error::Kube {
        step: "building a client for the management cluster".to_owned(),
        at: Side::Management,
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    #[tokio::test]
    async fn a_name_that_is_not_a_dns_label_is_refused_before_anything_is_made() {
        for name in ["prod.eu", "Prod", "", "-x"] {
            let args = super::Connect {
                name: name.to_owned(),
                kubeconfig: PathBuf::from("/nonexistent"),
                management_kubeconfig: None,
                fields: super::ClusterFields::default(),
            };
            let refused = super::connect(&args).await;
            assert!(
                matches!(refused, Err(super::Error::InvalidName(_))),
                "{name:?}: {refused:?}"
            );
        }
    }
}
