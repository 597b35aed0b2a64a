//! Upkeep of space domains in one cluster, part of the repair pass: the ConfigMap the `tenancy-space-domains`
//! admission policy takes as its params (applied while the cluster has a base domain, removed when it has none, so
//! the policy then allows everything), and on every namespace of an account the annotation naming the account's extra
//! suffixes. Both are derived from the cluster's member and the cached Accounts, so any replica may run it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::api::account::Account;
use crate::api::ACCOUNT_LABEL;
use crate::clusters::Member;
use crate::connect::NAMESPACE;
use crate::domains::{account_domains, ACCOUNT_DOMAINS_ANNOTATION, PARAMS};

const FIELD_MANAGER: &str = "tenancy-apiserver-domains";

/// Brings the params and the account annotations of `member`'s cluster to what they should be.
pub async fn tend(member: &Member, namespaces: &[Arc<Namespace>], accounts: &[Arc<Account>]) {
    if let Err(error) = params(member).await {
        tracing::warn!(cluster = ?member.cluster(), %error, "Keeping the space-domain params failed; retrying later");
    }
    let api: Api<Namespace> = Api::all(member.client().clone());
    for ns in namespaces.iter().filter(|ns| ns.metadata.deletion_timestamp.is_none()) {
        let labels = ns.metadata.labels.as_ref();
        let account = labels
            .and_then(|l| l.get(ACCOUNT_LABEL))
            .and_then(|name| accounts.iter().find(|a| a.metadata.name.as_ref() == Some(name)));
        let want = account.and_then(|a| a.spec.space.domains.as_deref().and_then(account_domains));
        let have = ns
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ACCOUNT_DOMAINS_ANNOTATION));
        if want.as_ref() == have {
            continue;
        }
        let name = ns.metadata.name.clone().unwrap_or_default();
        let patch = json!({"metadata": {"annotations": {ACCOUNT_DOMAINS_ANNOTATION: want}}});
        if let Err(error) = api.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await {
            tracing::warn!(namespace = %name, %error, "Writing an account's domains on its namespace failed");
        }
    }
}

/// The params ConfigMap: applied when it differs from the cluster's domains, removed when there are none.
async fn params(member: &Member) -> Result<(), kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(member.client().clone(), NAMESPACE);
    // The server may list ConfigMaps (template objects), not get them: one named list.
    let current = api
        .list(&ListParams::default().fields(&format!("metadata.name={PARAMS}")))
        .await?
        .items
        .pop();
    match (member.domains(), current) {
        (Some(domains), current) => {
            let want = domains.params(NAMESPACE);
            let have = current.and_then(|c| c.data).map(|d| json!(d));
            if have.as_ref() != Some(&want["data"]) {
                api.patch(PARAMS, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&want))
                    .await?;
                tracing::info!(cluster = ?member.cluster(), base = %domains.base, "Space domains in force");
            }
        }
        (None, Some(_)) => {
            api.delete(PARAMS, &DeleteParams::default()).await?;
            tracing::info!(cluster = ?member.cluster(), "Space domains removed");
        }
        (None, None) => {}
    }
    Ok(())
}
