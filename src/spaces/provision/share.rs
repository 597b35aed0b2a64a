//! A space's share of its account's AccountQuota: the ResourceQuota [`SHARE_QUOTA`], owned by its quota, and whether
//! kube-apiserver enforces it yet (kube-controller-manager fills in its `status.hard`).

use std::time::Duration;

use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;

use super::{enforced_label, Provisioner, SHARE_LABEL, SHARE_QUOTA};
use crate::api::account::{AccountQuota, CONFIG_GROUP};
use crate::spaces::Error;

/// How long a new space's share may take to be enforced (kube-controller-manager fills its status.hard) before the
/// create fails.
pub(super) const SHARE_WAIT: Duration = Duration::from_secs(10);

impl Provisioner {
    /// The space's share of `quota`: nothing until the quota controller moves headroom to it. One that exists is left as
    /// it is, but taken over when it belongs to another AccountQuota (one deleted, or no longer in force): its label
    /// and owner become `quota`'s.
    ///
    /// # Errors
    /// When kube-apiserver refuses.
    pub async fn create_share(&self, quota: &AccountQuota, space: &str) -> Result<(), Error> {
        let shares: Api<ResourceQuota> = Api::namespaced(self.client().clone(), space);
        let mut wanted = share_quota(quota, space);
        // Its quota lives in the management cluster: another cluster's garbage collector could not find it there.
        if !self.member().is_management() {
            wanted.metadata.owner_references = None;
        }
        match shares.create(&PostParams::default(), &wanted).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(Error::from_kube(error, space)),
        }
        let existing = shares.get(SHARE_QUOTA).await.map_err(|e| Error::from_kube(e, space))?;
        if crate::api::label(&existing, SHARE_LABEL) == crate::api::label(&wanted, SHARE_LABEL)
            && existing.metadata.owner_references == wanted.metadata.owner_references
        {
            return Ok(());
        }
        // Its hard stays as it is (within the old quota's plan) until the next pass of `quota` moves it.
        let adopt = serde_json::json!({"metadata": {
            "resourceVersion": existing.metadata.resource_version,
            "labels": wanted.metadata.labels,
            "ownerReferences": wanted.metadata.owner_references,
        }});
        shares
            .patch(SHARE_QUOTA, &PatchParams::default(), &Patch::Merge(adopt))
            .await
            .map(|_| ())
            .map_err(|e| Error::from_kube(e, space))
    }
}

/// The ResourceQuota holding a space's share of an AccountQuota: every resource of the quota at zero, labelled so
/// that tenants cannot change it (deploy/admission.yaml) and the quota controller finds it.
#[must_use]
pub fn share_quota(quota: &AccountQuota, space: &str) -> ResourceQuota {
    let mut labels = enforced_label();
    labels.insert(SHARE_LABEL.to_owned(), quota.metadata.name.clone().unwrap_or_default());
    let zero = k8s_openapi::apimachinery::pkg::api::resource::Quantity("0".to_owned());
    ResourceQuota {
        metadata: ObjectMeta {
            name: Some(SHARE_QUOTA.to_owned()),
            namespace: Some(space.to_owned()),
            labels: Some(labels),
            // kube-controller-manager's garbage collector deletes the share with its quota (the quota controller does
            // too, so it does not depend on that alone). No blockOwnerDeletion: that needs rights on the quota's
            // finalizers, and nothing waits for the shares to go.
            owner_references: Some(vec![OwnerReference {
                api_version: format!("{CONFIG_GROUP}/v1"),
                kind: "AccountQuota".to_owned(),
                name: quota.metadata.name.clone().unwrap_or_default(),
                uid: quota.metadata.uid.clone().unwrap_or_default(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ResourceQuotaSpec {
            hard: Some(
                quota
                    .spec
                    .quota
                    .hard
                    .keys()
                    .map(|k| (k.clone(), zero.clone()))
                    .collect(),
            ),
            ..ResourceQuotaSpec::default()
        }),
        status: None,
    }
}

/// Whether kube-apiserver enforces the share `rq`: kube-controller-manager has set its status.hard for every key of its
/// spec.hard (until then admission lets everything in, uncounted).
#[must_use]
pub fn enforced(rq: &ResourceQuota) -> bool {
    let status = rq.status.as_ref().and_then(|s| s.hard.as_ref());
    rq.spec
        .as_ref()
        .and_then(|s| s.hard.as_ref())
        .into_iter()
        .flatten()
        .all(|(key, _)| status.is_some_and(|s| s.contains_key(key)))
}

/// Reads the share of `space` until `ready` says yes (the share as read then) or `until` is past (`None`).
///
/// # Errors
/// When kube-apiserver refuses a read.
pub async fn wait_for_share(
    client: &Client,
    space: &str,
    until: tokio::time::Instant,
    ready: impl Fn(&ResourceQuota) -> bool,
) -> Result<Option<ResourceQuota>, Error> {
    let shares: Api<ResourceQuota> = Api::namespaced(client.clone(), space);
    loop {
        let share = shares.get(SHARE_QUOTA).await.map_err(|e| Error::from_kube(e, space))?;
        if ready(&share) {
            return Ok(Some(share));
        }
        if tokio::time::Instant::now() >= until {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
