//! Connected clusters' health: for each `Cluster`, the kubeconfig its Secret holds is used to ask that cluster's
//! kube-apiserver for its version and its namespaces, and the answer becomes the Cluster's status (`Ready` with the
//! version, the namespace count and the time, or `Offline` with the reason) and `tenancy_apiserver_cluster_up`. A
//! cluster that goes away never affects the server's readiness; it recovers on the next pass, without a restart.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;

use crate::api::account::Cluster;
use crate::connect::NAMESPACE;
use crate::metrics::ClusterMetrics;

/// How often each connected cluster is asked.
const INTERVAL: Duration = Duration::from_secs(5);
/// How long one cluster may take to answer before it counts as offline.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps every Cluster's status current, forever.
pub async fn run(client: Client, metrics: ClusterMetrics) {
    loop {
        match Api::<Cluster>::all(client.clone()).list(&ListParams::default()).await {
            Ok(clusters) => {
                for cluster in clusters.items {
                    probe(&client, &metrics, &cluster).await;
                }
            }
            Err(error) => tracing::debug!(%error, "Listing Clusters failed"),
        }
        tokio::time::sleep(INTERVAL).await;
    }
}

/// What one cluster said, written to its status.
async fn probe(client: &Client, metrics: &ClusterMetrics, cluster: &Cluster) {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let answer = tokio::time::timeout(PROBE_TIMEOUT, ask(client, cluster))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {}s", PROBE_TIMEOUT.as_secs())));
    let now = Timestamp::now().to_string();
    let status = match &answer {
        Ok((version, namespaces)) => json!({
            "phase": "Ready", "version": version, "namespaces": namespaces, "lastSync": now,
            "conditions": [{"type": "Ready", "status": "True", "reason": "Connected", "message": "", "lastTransitionTime": now}],
        }),
        Err(reason) => json!({
            "phase": "Offline",
            "conditions": [{"type": "Ready", "status": "False", "reason": "Unreachable", "message": reason, "lastTransitionTime": now}],
        }),
    };
    metrics.up(&name, answer.is_ok());
    if let Err(error) = Api::<Cluster>::all(client.clone())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
        .await
    {
        tracing::debug!(cluster = %name, %error, "Writing a Cluster's status failed");
    }
}

/// The cluster's kube-apiserver version and namespace count, or why it could not be asked.
async fn ask(client: &Client, cluster: &Cluster) -> Result<(String, usize), String> {
    let reference = &cluster.spec.config.secret_ref;
    let secret = Api::<Secret>::namespaced(client.clone(), NAMESPACE)
        .get(&reference.name)
        .await
        .map_err(|e| format!("reading Secret {NAMESPACE}/{}: {e}", reference.name))?;
    let key = reference.key.as_deref().unwrap_or("kubeconfig");
    let text = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).into_owned())
        .ok_or_else(|| format!("Secret {NAMESPACE}/{} has no key {key}", reference.name))?;
    let kubeconfig = Kubeconfig::from_yaml(&text).map_err(|e| format!("the kubeconfig in the Secret: {e}"))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| format!("the kubeconfig in the Secret: {e}"))?;
    let remote = Client::try_from(config).map_err(|e| e.to_string())?;
    let version = remote.apiserver_version().await.map_err(|e| e.to_string())?;
    let namespaces = Api::<Namespace>::all(remote)
        .list_metadata(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok((version.git_version, namespaces.items.len()))
}
