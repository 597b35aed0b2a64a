//! Account quotas: what an account may use across all its spaces, enforced by kube-apiserver itself. Each space of the
//! account holds a share, the ResourceQuota `account-quota` (made with the space, before its owners have rights
//! there); this controller moves headroom between the shares as their usage changes. The shares never add up to more
//! than the account's `hard`, and nothing of this server is in the admission path: with it down, tenants go on within
//! the shares they hold, and the rest of the cluster does not notice.
//!
//! Why the shares cannot overflow: a pass holds its account's Lease and its quota's (one pass at a time, across
//! replicas, and across versions in a rolling update), reads the shares fresh from kube-apiserver, lowers shares
//! before it raises any, and makes every write conditional on the share's resourceVersion as read. A pod admitted in between changes the share's `status.used`, so its
//! resourceVersion, so the write fails and the next pass starts again from what is. A pass raises nothing once it has
//! held its Lease for [`RAISE_DEADLINE`], well inside the Lease's life, so a stalled pass cannot overlap the next one.
//! Nor does it raise while a share is new or not enforced for every limit (its `status.used` does not count yet).
//!
//! One AccountQuota is in force per account, the oldest ([`quota_in_force`]); any other only says so in its status.
//! Shares belong to their quota (label and owner reference): the one in force takes over shares in its spaces left by
//! another, and shares no quota in force looks after (their quota deleted) are deleted here, not only by the garbage
//! collector.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::api::account::{quota_in_force, AccountQuota, IN_FORCE};
use crate::api::quantity::{from_milli, milli};
use crate::api::ACCOUNT_LABEL;
use crate::spaces::provision::{wait_for_share, Provisioner, SHARE_LABEL, SHARE_QUOTA};
use crate::spaces::Error;
use crate::state::Cache;

/// How often the AccountQuotas are looked at, besides after each change of the state: one whose inputs changed (or
/// whose last pass failed) gets a pass.
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// How often every AccountQuota gets a pass whatever its inputs say (a missed event cannot stall it for longer).
const FULL_PASS_INTERVAL: Duration = Duration::from_secs(30);
/// A pass raises no share after holding its Lease this long (the Lease may be broken after 15 s; each call may take
/// up to 10 s).
const RAISE_DEADLINE: Duration = Duration::from_secs(4);

/// One space's share as read: its current `hard`, what is `used` (thousandths), and whether it may grow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Share {
    pub space: String,
    pub hard: BTreeMap<String, i128>,
    pub used: BTreeMap<String, i128>,
    /// A terminating space gets no headroom.
    pub closing: bool,
}

/// What a pass over one AccountQuota starts from, as the state shows it: the quota's version, the account's spaces
/// (and which are closing), and each share's version (which moves with its `status.used`). A pass runs when it
/// changed since the last good one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inputs {
    quota: Option<String>,
    spaces: BTreeMap<String, bool>,
    shares: BTreeMap<String, Option<String>>,
}

fn inputs(cache: &Cache, quota: &AccountQuota) -> Inputs {
    let state = cache.read();
    let spaces = account_spaces(&state, quota);
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    let shares = state
        .shares
        .iter()
        .filter(|(_, rq)| {
            rq.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SHARE_LABEL))
                .map(String::as_str)
                == Some(name)
        })
        .map(|(space, rq)| (space.clone(), rq.metadata.resource_version.clone()))
        .collect();
    Inputs {
        quota: quota.metadata.resource_version.clone(),
        spaces,
        shares,
    }
}

/// The account's spaces in this cluster (connected clusters' are not covered), and whether each is closing.
/// The account a namespace is labelled into, if any.
fn account_of(namespace: &Namespace) -> Option<&str> {
    namespace
        .metadata
        .labels
        .as_ref()?
        .get(ACCOUNT_LABEL)
        .map(String::as_str)
}

fn account_spaces(state: &crate::state::State, quota: &AccountQuota) -> BTreeMap<String, bool> {
    state
        .local_namespaces()
        .filter(|(_, ns)| account_of(ns) == Some(quota.spec.account.as_str()))
        .map(|(space, ns)| (space.clone(), ns.metadata.deletion_timestamp.is_some()))
        .collect()
}

/// Keeps every AccountQuota's shares moving with usage, forever.
pub async fn run(cache: Arc<Cache>, provisioner: Arc<Provisioner>) {
    let mut changes = cache.changes();
    let mut done: BTreeMap<String, Inputs> = BTreeMap::new();
    let mut full_pass = Instant::now();
    loop {
        if full_pass.elapsed() >= FULL_PASS_INTERVAL {
            done.clear();
            full_pass = Instant::now();
        }
        if cache.is_ready() {
            let quotas: Vec<Arc<AccountQuota>> = cache.read().quotas.values().cloned().collect();
            done.retain(|name, _| quotas.iter().any(|q| q.metadata.name.as_ref() == Some(name)));
            for quota in &quotas {
                let name = quota.metadata.name.clone().unwrap_or_default();
                // One quota per account is in force; any other only says which one is.
                let covering = quota_in_force(&quotas, &quota.spec.account).and_then(|q| q.metadata.name.clone());
                if covering.as_ref() != Some(&name) {
                    done.remove(&name);
                    let covering = covering.unwrap_or_default();
                    if let Err(error) = superseded(provisioner.client(), quota, &covering).await {
                        tracing::warn!(quota = %name, %error, "Writing a superseded quota's status failed");
                    }
                    continue;
                }
                let before = inputs(&cache, quota);
                if done.get(&name) == Some(&before) {
                    continue;
                }
                done.remove(&name);
                match pass(&cache, &provisioner, quota).await {
                    // What the pass wrote comes back as new inputs, and one more pass finds nothing to do.
                    Ok(true) => {
                        done.insert(name, before);
                    }
                    // Stopped short (a share not enforced yet, or out of time): the next interval tries again.
                    Ok(false) => {}
                    // A share changed under the pass (a pod admitted): expected, and the next pass starts from it.
                    Err(Error::Backend(kube::Error::Api(status))) if status.code == 409 => {
                        tracing::debug!(quota = %name, "A share changed during the quota pass");
                    }
                    Err(Error::Conflict(_)) => {
                        tracing::debug!(quota = %name, "A share changed during the quota pass");
                    }
                    Err(error) => {
                        tracing::warn!(quota = %name, %error, source = ?std::error::Error::source(&error), "Quota pass failed; the next one starts again");
                    }
                }
            }
            sweep(&cache, provisioner.client()).await;
        }
        tokio::select! {
            () = tokio::time::sleep(PASS_INTERVAL) => {}
            _ = changes.changed() => {}
        }
    }
}

/// Deletes the shares no AccountQuota in force will look after: their quota is gone (or no longer in force) and their
/// space's account has no quota in force (one that has takes them over in its pass). kube-controller-manager's garbage
/// collector deletes a deleted quota's shares too (their owner reference); this does not depend on it.
async fn sweep(cache: &Cache, client: &kube::Client) {
    let orphans: Vec<(String, String, Option<String>, bool)> = {
        let state = cache.read();
        let covered = |space: &String| {
            state
                .namespaces
                .get(space)
                .and_then(|ns| account_of(ns))
                .is_some_and(|account| quota_in_force(state.quotas.values(), account).is_some())
        };
        let looked_after = |owner: &String| {
            state.quotas.get(owner).is_some_and(|q| {
                quota_in_force(state.quotas.values(), &q.spec.account).and_then(|c| c.metadata.name.as_ref())
                    == Some(owner)
            })
        };
        state
            .shares
            .iter()
            .filter_map(|(space, rq)| {
                let owner = rq.metadata.labels.as_ref()?.get(SHARE_LABEL)?;
                if covered(space) || looked_after(owner) {
                    return None;
                }
                let known = state.quotas.contains_key(owner);
                Some((space.clone(), owner.clone(), rq.metadata.uid.clone(), known))
            })
            .collect()
    };
    for (space, owner, uid, known) in orphans {
        // A quota this replica has not seen yet may have made it: only one kube-apiserver says is gone counts.
        if !known {
            match Api::<AccountQuota>::all(client.clone()).get_opt(&owner).await {
                Ok(None) => {}
                Ok(Some(_)) => continue,
                Err(error) => {
                    tracing::warn!(quota = %owner, %error, "Could not check whether a share's quota is gone");
                    continue;
                }
            }
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match Api::<ResourceQuota>::namespaced(client.clone(), &space)
            .delete(SHARE_QUOTA, &params)
            .await
        {
            Ok(_) => tracing::info!(%space, quota = %owner, "Deleted a share whose AccountQuota is gone"),
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
            Err(error) => tracing::warn!(%space, quota = %owner, %error, "Deleting an orphaned share failed"),
        }
    }
}

/// A quota that is not in force because `covering` (the oldest of its account) is: says so in its status, once.
async fn superseded(client: &kube::Client, quota: &AccountQuota, covering: &str) -> Result<(), Error> {
    let message = format!(
        "not in force: AccountQuota {covering} covers account {} (the oldest AccountQuota of an account is the one in force)",
        quota.spec.account
    );
    let status = quota.status.clone().unwrap_or_default();
    let current = status.conditions.iter().find(|c| c.type_ == IN_FORCE);
    if current.is_some_and(|c| c.status == "False" && c.message == message) && status.spaces.is_empty() {
        return Ok(());
    }
    let patch = json!({"status": {
        "total": null,
        "spaces": null,
        "conditions": [condition(quota, false, "Superseded", &message)],
    }});
    patch_status(client, quota, &patch).await
}

/// Merges `status` (`{"status": ...}`) into the quota's status.
async fn patch_status(client: &kube::Client, quota: &AccountQuota, status: &Value) -> Result<(), Error> {
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    Api::<AccountQuota>::all(client.clone())
        .patch_status(name, &PatchParams::default(), &Patch::Merge(status))
        .await
        .map_err(Error::Backend)?;
    Ok(())
}

/// The [`IN_FORCE`] condition, its transition time kept while its status stays (so rewriting it changes nothing).
fn condition(quota: &AccountQuota, in_force: bool, reason: &str, message: &str) -> Value {
    let status = if in_force { "True" } else { "False" };
    let since = quota
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == IN_FORCE && c.status == status))
        .map_or_else(
            || Timestamp::from_second(Timestamp::now().as_second()).map_or_else(|_| String::new(), |t| t.to_string()),
            |c| c.last_transition_time.0.to_string(),
        );
    json!({
        "type": IN_FORCE,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
        "observedGeneration": quota.metadata.generation,
    })
}

/// Whether namespace `space` is, as kube-apiserver has it now, an open space of `account`.
async fn in_account(client: &kube::Client, space: &str, account: &str) -> Result<bool, Error> {
    let namespace = Api::<Namespace>::all(client.clone())
        .get_opt(space)
        .await
        .map_err(Error::Backend)?;
    Ok(namespace.is_some_and(|ns| ns.metadata.deletion_timestamp.is_none() && account_of(&ns) == Some(account)))
}

/// One pass over one AccountQuota (the one in force for its account): shares made or taken over where missing, moved
/// with usage, status written. True when the shares are where the plan wants them; false when the pass stopped short
/// (a share kube-apiserver does not enforce yet, or out of time) and the next interval must try again.
async fn pass(cache: &Cache, provisioner: &Provisioner, quota: &AccountQuota) -> Result<bool, Error> {
    let name = quota.metadata.name.clone().unwrap_or_default();
    let total: BTreeMap<String, i128> = quota
        .spec
        .quota
        .hard
        .iter()
        .filter_map(|(key, q)| milli(q).map(|m| (key.clone(), m)))
        .collect();
    let spaces = account_spaces(&cache.read(), quota);
    let client = provisioner.client().clone();
    // Per account, so a quota replacing another (or a replica that has not seen the change yet) never moves the same
    // shares at the same time; and per quota as well, the Lease the previous version held alone, so that during a
    // rolling update a replica of that version and one of this never pass over the same shares at once. Always in
    // this order, so two passes never wait on each other.
    let work = async {
        let started = Instant::now();
        let all: Api<ResourceQuota> = Api::all(client.clone());
        let listed = all
            .list(&ListParams::default().labels(&format!("{SHARE_LABEL}={name}")))
            .await
            .map_err(Error::Backend)?;
        let mut read = BTreeMap::new();
        for rq in listed.items {
            let space = rq.metadata.namespace.clone().unwrap_or_default();
            if spaces.contains_key(&space) {
                read.insert(space, rq);
            } else if in_account(&client, &space, &quota.spec.account).await? {
                // A space made a moment ago, with its share, that the state has not seen yet: the next pass counts it.
                // (Deleting the share here would pull it from under the create that is waiting for it.)
                return Ok(false);
            } else {
                // The space left the account: its share goes back (this one, not one made since).
                let only_this = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: rq.metadata.uid.clone(),
                        resource_version: None,
                    }),
                    ..DeleteParams::default()
                };
                match Api::<ResourceQuota>::namespaced(client.clone(), &space)
                    .delete(SHARE_QUOTA, &only_this)
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                    Err(error) => return Err(Error::Backend(error)),
                }
            }
        }
        // A share made or taken over now is not in this plan (nor, yet, enforced): nothing is raised before the
        // next pass counts it.
        let mut raise = true;
        for space in spaces.keys().filter(|s| !read.contains_key(*s)) {
            provisioner.create_share(quota, space).await?;
            raise = false;
        }
        // A share whose status.hard lacks a key is not enforced for it, so its status.used does not count what is
        // there: planned as using nothing, its headroom would go to the others on top of what it holds.
        raise &= read.values().all(|rq| {
            let status = quantities(rq.status.as_ref().and_then(|s| s.hard.as_ref()));
            total.keys().all(|key| status.contains_key(key))
        });
        let shares: Vec<Share> = read
            .iter()
            .map(|(space, rq)| Share {
                space: space.clone(),
                hard: quantities(rq.spec.as_ref().and_then(|s| s.hard.as_ref())),
                used: quantities(rq.status.as_ref().and_then(|s| s.used.as_ref())),
                closing: spaces.get(space).copied().unwrap_or(true),
            })
            .collect();
        let planned = plan(&total, &shares);
        let mut versions: BTreeMap<&str, String> = read
            .iter()
            .map(|(space, rq)| (space.as_str(), rq.metadata.resource_version.clone().unwrap_or_default()))
            .collect();
        // Lower first, then raise: at no moment do the shares add up to more than the total.
        let lowered: Vec<BTreeMap<String, i128>> = shares
            .iter()
            .zip(&planned)
            .map(|(share, new)| {
                new.iter()
                    .map(|(key, n)| (key.clone(), (*n).min(share.hard.get(key).copied().unwrap_or(0))))
                    .collect()
            })
            .collect();
        for (share, lowered) in shares.iter().zip(&lowered) {
            if *lowered != share.hard {
                let rv = versions[share.space.as_str()].clone();
                let rv = write_share(&client, &share.space, &rv, lowered, &share.hard).await?;
                versions.insert(&share.space, rv);
            }
        }
        if planned == lowered {
            write_status(&client, quota, &total, &shares, &planned).await?;
            return Ok(raise);
        }
        if !raise {
            return Ok(false);
        }
        // kube-apiserver admits against a quota's status.hard, which kube-controller-manager copies from spec.hard:
        // nothing is raised before every share's status shows its lowered hard.
        for ((share, lowered), rq) in shares.iter().zip(&lowered).zip(read.values()) {
            let status = quantities(rq.status.as_ref().and_then(|s| s.hard.as_ref()));
            let behind = *lowered != share.hard || !within(&status, lowered);
            if behind && !in_force(&client, &share.space, lowered, started).await? {
                return Ok(false);
            }
        }
        for ((share, new), lowered) in shares.iter().zip(&planned).zip(&lowered) {
            if new != lowered {
                // Every raise, not only the waits: a slow pass must not raise once its Lease may have lapsed.
                if started.elapsed() >= RAISE_DEADLINE {
                    return Ok(false);
                }
                let rv = versions[share.space.as_str()].clone();
                write_share(&client, &share.space, &rv, new, &share.hard).await?;
            }
        }
        write_status(&client, quota, &total, &shares, &planned).await?;
        Ok(true)
    };
    let account_lease = format!("quota-account-{}", quota.spec.account);
    provisioner
        .holding(&account_lease, provisioner.holding(&format!("quota-{name}"), work))
        .await
}

/// The new shares: each space keeps what it uses, and the rest of the total is split evenly in whole units (thousandths
/// for CPU), the odd units going first to the spaces that use least (so an idle space can always start something
/// while there is anything left), then by name. A total already overrun
/// (objects older than the quota) is handed out to the users in name order, so the shares still add up to no more.
#[must_use]
pub fn plan(total: &BTreeMap<String, i128>, shares: &[Share]) -> Vec<BTreeMap<String, i128>> {
    let mut planned = vec![BTreeMap::new(); shares.len()];
    for (key, &limit) in total {
        let used = |s: &Share| s.used.get(key).copied().unwrap_or(0).max(0);
        let unit = if key.contains("cpu") || limit % 1000 != 0 {
            1
        } else {
            1000
        };
        let sum_used: i128 = shares.iter().map(used).sum();
        if sum_used >= limit {
            let mut left = limit.max(0);
            for (share, new) in shares.iter().zip(&mut planned) {
                let take = used(share).min(left);
                new.insert(key.clone(), take);
                left -= take;
            }
            continue;
        }
        let open: Vec<usize> = (0..shares.len()).filter(|i| !shares[*i].closing).collect();
        let units = (limit - sum_used) / unit;
        let count = i128::try_from(open.len()).unwrap_or(i128::MAX).max(1);
        let (each, mut odd) = (units / count, units % count);
        let mut order = open.clone();
        // Least used first, then by name (the shares come sorted, and the sort is stable).
        order.sort_by_key(|i| used(&shares[*i]));
        let mut extra = vec![0_i128; shares.len()];
        for i in order {
            if odd == 0 {
                break;
            }
            extra[i] = 1;
            odd -= 1;
        }
        for (i, (share, new)) in shares.iter().zip(&mut planned).enumerate() {
            let slack = if share.closing { 0 } else { (each + extra[i]) * unit };
            new.insert(key.clone(), used(share) + slack);
        }
    }
    planned
}

fn quantities(
    map: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> BTreeMap<String, i128> {
    map.into_iter()
        .flatten()
        .filter_map(|(key, q)| milli(q).map(|m| (key.clone(), m)))
        .collect()
}

fn quantity_map(map: &BTreeMap<String, i128>) -> Value {
    map.iter()
        .map(|(key, m)| (key.clone(), json!(from_milli(*m).0)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// Sets a share's `hard` to `new` if its resourceVersion is still `rv` (keys no longer in the quota are removed); the
/// new resourceVersion.
async fn write_share(
    client: &kube::Client,
    space: &str,
    rv: &str,
    new: &BTreeMap<String, i128>,
    old: &BTreeMap<String, i128>,
) -> Result<String, Error> {
    let mut hard = quantity_map(new);
    for key in old.keys().filter(|k| !new.contains_key(*k)) {
        hard[key] = Value::Null;
    }
    let patch = json!({"metadata": {"resourceVersion": rv}, "spec": {"hard": hard}});
    let written = Api::<ResourceQuota>::namespaced(client.clone(), space)
        .patch(SHARE_QUOTA, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .map_err(Error::Backend)?;
    Ok(written.metadata.resource_version.unwrap_or_default())
}

/// Whether every limit in `status` (a share's status.hard) is at most the one in `limits`, and none is missing.
fn within(status: &BTreeMap<String, i128>, limits: &BTreeMap<String, i128>) -> bool {
    limits
        .iter()
        .all(|(key, limit)| status.get(key).is_some_and(|s| s <= limit))
}

/// Whether a share's `status.hard` (what admission checks) is at most `limits`, waiting for kube-controller-manager
/// until [`RAISE_DEADLINE`].
async fn in_force(
    client: &kube::Client,
    space: &str,
    limits: &BTreeMap<String, i128>,
    started: Instant,
) -> Result<bool, Error> {
    wait_for_share(client, space, started + RAISE_DEADLINE, |share| {
        within(&quantities(share.status.as_ref().and_then(|s| s.hard.as_ref())), limits)
    })
    .await
}

/// The quota's status: the totals and each space's share and use.
async fn write_status(
    client: &kube::Client,
    quota: &AccountQuota,
    total: &BTreeMap<String, i128>,
    shares: &[Share],
    planned: &[BTreeMap<String, i128>],
) -> Result<(), Error> {
    let mut used_total: BTreeMap<String, i128> = total.keys().map(|k| (k.clone(), 0)).collect();
    for share in shares {
        for (key, used) in &share.used {
            if let Some(sum) = used_total.get_mut(key) {
                *sum += used;
            }
        }
    }
    let spaces: Vec<Value> = shares
        .iter()
        .zip(planned)
        .map(
            |(share, hard)| json!({"name": share.space, "hard": quantity_map(hard), "used": quantity_map(&share.used)}),
        )
        .collect();
    let message = format!("the oldest AccountQuota of account {}", quota.spec.account);
    let status = json!({"status": {
        "total": {"hard": quantity_map(total), "used": quantity_map(&used_total)},
        "spaces": spaces,
        "conditions": [condition(quota, true, "Oldest", &message)],
    }});
    patch_status(client, quota, &status).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(space: &str, hard: &[(&str, i128)], used: &[(&str, i128)]) -> Share {
        let map = |pairs: &[(&str, i128)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        Share {
            space: space.to_owned(),
            hard: map(hard),
            used: map(used),
            closing: false,
        }
    }

    fn total(pairs: &[(&str, i128)]) -> BTreeMap<String, i128> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    fn sum(planned: &[BTreeMap<String, i128>], key: &str) -> i128 {
        planned.iter().map(|p| p[key]).sum()
    }

    #[test]
    fn idle_spaces_split_the_total_evenly_in_whole_units() {
        let shares = [share("a", &[], &[]), share("b", &[], &[]), share("c", &[], &[])];
        let planned = plan(&total(&[("pods", 4000), ("requests.cpu", 2000)]), &shares);
        let pods: Vec<i128> = planned.iter().map(|p| p["pods"]).collect();
        assert_eq!(pods, [2000, 1000, 1000]);
        let cpu: Vec<i128> = planned.iter().map(|p| p["requests.cpu"]).collect();
        assert_eq!(cpu, [667, 667, 666]);
    }

    #[test]
    fn headroom_moves_to_the_idle_spaces_first() {
        // a runs two pods; b and c are idle: each of them may start one.
        let shares = [
            share("a", &[("pods", 2000)], &[("pods", 2000)]),
            share("b", &[("pods", 1000)], &[]),
            share("c", &[("pods", 1000)], &[]),
        ];
        let planned = plan(&total(&[("pods", 4000)]), &shares);
        assert_eq!(
            planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(),
            [2000, 1000, 1000]
        );
        // a's pods are gone and c runs one: the two free pods go to the idle a and b.
        let shares = [
            share("a", &[("pods", 2000)], &[]),
            share("b", &[("pods", 1000)], &[]),
            share("c", &[("pods", 1000)], &[("pods", 1000)]),
        ];
        let planned = plan(&total(&[("pods", 4000)]), &shares);
        assert_eq!(
            planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(),
            [1000, 1000, 2000]
        );
    }

    #[test]
    fn shares_never_add_up_to_more_than_the_total_and_never_below_use() {
        let cases = [
            vec![share("a", &[], &[("pods", 3000)]), share("b", &[], &[("pods", 1000)])],
            vec![share("a", &[], &[("pods", 5000)]), share("b", &[], &[("pods", 1000)])],
            vec![
                share("a", &[], &[]),
                share("b", &[], &[("pods", 4000)]),
                share("c", &[], &[]),
            ],
        ];
        for shares in cases {
            let planned = plan(&total(&[("pods", 4000)]), &shares);
            assert!(sum(&planned, "pods") <= 4000, "{planned:?}");
            for (share, new) in shares.iter().zip(&planned) {
                let used = share.used.get("pods").copied().unwrap_or(0);
                assert!(
                    new["pods"] >= used.min(4000 - (sum(&planned, "pods") - new["pods"])),
                    "{planned:?}"
                );
            }
        }
    }

    #[test]
    fn a_closing_space_gets_no_headroom() {
        let mut closing = share("a", &[("pods", 2000)], &[("pods", 1000)]);
        closing.closing = true;
        let planned = plan(&total(&[("pods", 4000)]), &[closing, share("b", &[], &[])]);
        assert_eq!(planned.iter().map(|p| p["pods"]).collect::<Vec<_>>(), [1000, 3000]);
    }
}
