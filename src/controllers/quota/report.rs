//! Why a space's pods are refused under its AccountQuota, told where kube-apiserver's own quota refusals are looked
//! for: a Warning Event on the space's share (ResourceQuota `account-quota`), naming the AccountQuota. Written when a
//! pass leaves a share with no room for a resource, saying whether the account's quota is used up or its last headroom
//! is with busier spaces; written again only when that changes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use super::plan::Share;
use crate::api::account::AccountQuota;
use crate::api::quantity::quantity_of;
use crate::spaces::provision::SHARE_QUOTA;

/// The reason of the Event.
pub const REASON: &str = "AccountQuotaFull";

/// What a share with no room says: one sentence per full resource, or `None` when it has room for every one.
/// `used`: what the account uses in all, by resource.
#[must_use]
pub fn why_full(
    quota: &AccountQuota,
    total: &BTreeMap<String, i128>,
    used: &BTreeMap<String, i128>,
    share: &Share,
    planned: &BTreeMap<String, i128>,
) -> Option<String> {
    let reasons: Vec<String> = total
        .iter()
        .filter_map(|(key, &limit)| {
            let here = share.used.get(key).copied().unwrap_or(0).max(0);
            if planned.get(key).copied().unwrap_or(0) > here {
                return None;
            }
            let all = used.get(key).copied().unwrap_or(0);
            Some(if all >= limit {
                format!(
                    "{key} is used up: {} of {} across the account's spaces, {} of it here",
                    quantity_of(key, all).0,
                    quantity_of(key, limit).0,
                    quantity_of(key, here).0
                )
            } else {
                format!(
                    "this space's share of {key} is full at {}: the account's other {} are with its busier spaces \
until their use goes down",
                    quantity_of(key, here).0,
                    quantity_of(key, limit - all).0
                )
            })
        })
        .collect();
    if reasons.is_empty() {
        return None;
    }
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    Some(format!(
        "AccountQuota {name} of account {}: {}; new objects that count against it are refused here",
        quota.spec.account,
        reasons.join("; ")
    ))
}

/// Puts `message` on the share in `namespace` as a Warning Event named after the quota (one per quota and space),
/// unless it says that already.
///
/// # Errors
/// When kube-apiserver refuses.
pub async fn tell(client: &Client, namespace: &str, quota: &str, message: &str) -> Result<(), kube::Error> {
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let name = format!("{SHARE_QUOTA}.{quota}");
    let now = Timestamp::now().to_string();
    match events.get_opt(&name).await? {
        Some(event) if event.message.as_deref() == Some(message) => Ok(()),
        Some(event) => {
            let patch = json!({
                "message": message,
                "count": event.count.unwrap_or(1) + 1,
                "lastTimestamp": now,
            });
            events
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map(drop)
        }
        None => {
            let event: Event = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {"apiVersion": "v1", "kind": "ResourceQuota", "namespace": namespace, "name": SHARE_QUOTA},
                "reason": REASON,
                "message": message,
                "type": "Warning",
                "count": 1,
                "firstTimestamp": now,
                "lastTimestamp": now,
                "source": {"component": "tenancy-apiserver"},
                "reportingComponent": "tenancy-apiserver",
            }))
            .map_err(kube::Error::SerdeError)?;
            events.create(&PostParams::default(), &event).await.map(drop)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota() -> AccountQuota {
        serde_json::from_value(json!({
            "apiVersion": "config.tenancy.loft.sh/v1", "kind": "AccountQuota",
            "metadata": {"name": "aq"}, "spec": {"account": "team-a", "quota": {"hard": {"pods": "4"}}},
        }))
        .expect("an AccountQuota")
    }

    fn map(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn a_full_share_says_whether_the_account_is_used_up_or_its_headroom_is_elsewhere() {
        let total = map(&[("pods", 4000), ("requests.cpu", 2000)]);
        let share = Share {
            space: "a".to_owned(),
            used: map(&[("pods", 1000), ("requests.cpu", 100)]),
            ..Share::default()
        };
        let room = map(&[("pods", 2000), ("requests.cpu", 500)]);
        assert_eq!(why_full(&quota(), &total, &map(&[("pods", 4000)]), &share, &room), None);

        let used_up = why_full(
            &quota(),
            &total,
            &map(&[("pods", 4000)]),
            &share,
            &map(&[("pods", 1000), ("requests.cpu", 500)]),
        );
        assert_eq!(
            used_up.as_deref(),
            Some("AccountQuota aq of account team-a: pods is used up: 4 of 4 across the account's spaces, 1 of it here; new objects that count against it are refused here")
        );
        let elsewhere = why_full(
            &quota(),
            &total,
            &map(&[("pods", 2000)]),
            &share,
            &map(&[("pods", 1000), ("requests.cpu", 500)]),
        );
        assert!(
            elsewhere.as_deref().is_some_and(
                |m| m.contains("share of pods is full at 1: the account's other 2 are with its busier spaces")
            ),
            "{elsewhere:?}"
        );
    }
}
