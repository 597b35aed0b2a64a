//! `ClusterConnection` (tenancy.loft.sh/v1, create only): how the web console connects a cluster. Its spec carries an
//! admin kubeconfig for the cluster, used for the steps of `tenancy-apiserver connect` and never stored or answered
//! back; what is kept is the `Cluster` it makes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// The resource kube-apiserver and this server authorize it by (`create clusterconnections.tenancy.loft.sh`); not in
/// discovery, as the console's paths are not.
pub const RESOURCE: &str = "clusterconnections";
pub const KIND: &str = "ClusterConnection";

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConnection {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ClusterConnectionSpec,
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConnectionSpec {
    /// A kubeconfig with cluster-admin rights in the cluster to connect, everything in it (no file names). Never
    /// stored, never answered back.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubeconfig: String,
    /// A name for people, the Cluster's `spec.displayName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}
