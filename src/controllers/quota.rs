//! Account quotas: what an account may use across all its spaces, in every cluster served, enforced by each cluster's
//! kube-apiserver itself. Each space of the account holds a share, the ResourceQuota `account-quota` (made with the
//! space, in its cluster, before its owners have rights there); this controller moves headroom between the shares as
//! their usage changes. A cluster out of reach keeps the shares it holds (as the quota's status last recorded them),
//! and the rest of the quota is divided among the others. The shares never add up to more
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

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ResourceQuota};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::Client;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::api::account::{quota_in_force, AccountQuota, SpaceShare, IN_FORCE};
use crate::api::quantity::{milli, quantity_of};
use crate::api::{label, ACCOUNT_LABEL};
use crate::clusters::{Member, Members};
use crate::spaces::provision::{wait_for_share, Provisioner, SHARE_LABEL, SHARE_QUOTA};
use crate::spaces::Error;
use crate::state::Cache;

mod plan;
mod report;

pub use plan::{plan, Share};

/// How often the AccountQuotas are looked at, besides after each change of the state: one whose inputs changed (or
/// whose last pass failed) gets a pass.
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// How often every AccountQuota gets a pass whatever its inputs say (a missed event cannot stall it for longer).
const FULL_PASS_INTERVAL: Duration = Duration::from_secs(30);
/// How long a connected cluster may take to answer a quota pass's read of its shares.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);
/// A pass raises no share after holding its Lease this long (the Lease may be broken after 15 s; each call may take
/// up to 10 s).
const RAISE_DEADLINE: Duration = Duration::from_secs(4);

/// What a pass over one AccountQuota starts from, as the state shows it: the quota's version, the account's spaces in
/// every cluster (and which are closing or out of reach), and each share's version (which moves with its
/// `status.used`). A pass runs when it changed since the last good one.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Inputs {
    quota: Option<String>,
    spaces: BTreeMap<String, (bool, bool)>,
    shares: BTreeMap<String, Option<String>>,
}

fn inputs(cache: &Cache, members: &Members, quota: &AccountQuota) -> Inputs {
    let state = cache.read();
    let spaces = account_spaces(&state, members, quota)
        .into_iter()
        .map(|(space, at)| (space, (at.closing, at.reachable)))
        .collect();
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    let ours = |rq: &ResourceQuota| label(rq, SHARE_LABEL) == Some(name);
    let shares = members
        .all()
        .into_iter()
        .flat_map(|member| {
            let shares = state.part(member.cluster()).into_iter().flat_map(|part| &part.shares);
            shares.map(move |(ns, rq)| (member.space(ns), rq))
        })
        .filter(|(_, rq)| ours(rq))
        .map(|(space, rq)| (space, rq.metadata.resource_version.clone()))
        .collect();
    Inputs {
        quota: quota.metadata.resource_version.clone(),
        spaces,
        shares,
    }
}

/// The account a namespace is labelled into, if any.
fn account_of(namespace: &Namespace) -> Option<&str> {
    label(namespace, ACCOUNT_LABEL)
}

/// Where one of an account's spaces is.
struct At {
    member: Arc<Member>,
    /// Its namespace's name in that cluster.
    namespace: String,
    closing: bool,
    /// Whether its cluster answers and has been listed: a share out of reach stays as it is, and the rest of the
    /// quota is divided without it.
    reachable: bool,
}

/// The account's spaces in every cluster served, by space name (`<cluster>.<namespace>` in a connected cluster).
fn account_spaces(state: &crate::state::State, members: &Members, quota: &AccountQuota) -> BTreeMap<String, At> {
    let mut spaces = BTreeMap::new();
    for member in members.all() {
        let reachable = state.is_reachable(member.cluster());
        for ns in state
            .cluster_namespaces(member.cluster())
            .filter(|ns| account_of(ns) == Some(quota.spec.account.as_str()))
        {
            let namespace = ns.metadata.name.clone().unwrap_or_default();
            let at = At {
                member: member.clone(),
                closing: ns.metadata.deletion_timestamp.is_some(),
                reachable,
                namespace,
            };
            spaces.insert(member.space(&at.namespace), at);
        }
    }
    spaces
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
            let mut due = Vec::new();
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
                let before = inputs(&cache, provisioner.members(), quota);
                if done.get(&name) == Some(&before) {
                    continue;
                }
                done.remove(&name);
                due.push((name, before, quota.clone()));
            }
            // All at once: each holds its own account's Leases, and one that waits on a cluster out of reach must
            // not hold back the others.
            let passes = due.iter().map(|(_, _, quota)| pass(&cache, &provisioner, quota));
            let results = futures::future::join_all(passes).await;
            for ((name, before, _), result) in due.into_iter().zip(results) {
                match result {
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
            sweep(&cache, provisioner.members()).await;
        }
        tokio::select! {
            () = tokio::time::sleep(PASS_INTERVAL) => {}
            _ = changes.changed() => {}
        }
    }
}

/// A share no AccountQuota in force looks after.
struct Orphan {
    space: String,
    /// Its cluster, and its namespace there.
    member: Arc<Member>,
    namespace: String,
    /// The quota it names.
    owner: String,
    uid: Option<String>,
    /// Whether that quota is known to this replica.
    known: bool,
}

/// Deletes the shares no AccountQuota in force will look after, in every cluster that answers: their quota is gone (or
/// no longer in force) and their space's account has no quota in force (one that has takes them over in its pass).
/// kube-controller-manager's garbage collector deletes a deleted quota's shares in the management cluster too (their
/// owner reference); this does not depend on it, and it is all there is for the other clusters'.
async fn sweep(cache: &Cache, members: &Members) {
    let mut orphans: Vec<Orphan> = Vec::new();
    {
        let state = cache.read();
        let covered = |space: &String| {
            state
                .namespaces
                .get(space)
                .and_then(|ns| account_of(ns))
                .is_some_and(|account| quota_in_force(state.quotas.values(), account).is_some())
        };
        let looked_after = |owner: &str| {
            state.quotas.get(owner).is_some_and(|q| {
                quota_in_force(state.quotas.values(), &q.spec.account).and_then(|c| c.metadata.name.as_deref())
                    == Some(owner)
            })
        };
        for member in members.all() {
            let Some(part) = state
                .part(member.cluster())
                .filter(|_| state.is_reachable(member.cluster()))
            else {
                continue;
            };
            for (namespace, rq) in &part.shares {
                let Some(owner) = label(rq.as_ref(), SHARE_LABEL) else {
                    continue;
                };
                let space = member.space(namespace);
                if covered(&space) || looked_after(owner) {
                    continue;
                }
                let known = state.quotas.contains_key(owner);
                orphans.push(Orphan {
                    space,
                    member: member.clone(),
                    namespace: namespace.clone(),
                    owner: owner.to_owned(),
                    uid: rq.metadata.uid.clone(),
                    known,
                });
            }
        }
    }
    let management = members.management().client();
    for Orphan {
        space,
        member,
        namespace,
        owner,
        uid,
        known,
    } in orphans
    {
        // A quota this replica has not seen yet may have made it: only one kube-apiserver says is gone counts.
        if !known {
            match Api::<AccountQuota>::all(management.clone()).get_opt(&owner).await {
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
        match Api::<ResourceQuota>::namespaced(member.client().clone(), &namespace)
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

/// One pass over one AccountQuota (the one in force for its account), over the account's spaces in every cluster:
/// shares made or taken over where missing, moved with usage, status written. True when the shares are where the plan
/// wants them; false when the pass stopped short (a share kube-apiserver does not enforce yet, a cluster holding
/// spaces of the account out of reach with shares this replica does not know, or out of time) and the next interval
/// must try again.
async fn pass(cache: &Cache, provisioner: &Provisioner, quota: &AccountQuota) -> Result<bool, Error> {
    let name = quota.metadata.name.clone().unwrap_or_default();
    let total: BTreeMap<String, i128> = quota
        .spec
        .quota
        .hard
        .iter()
        .filter_map(|(key, q)| milli(q).map(|m| (key.clone(), m)))
        .collect();
    let members = provisioner.members();
    // One view of the state for both: which clusters are in reach, and where the account's spaces are.
    let (spaces, in_reach) = {
        let state = cache.read();
        let in_reach: BTreeSet<Option<String>> = members
            .all()
            .iter()
            .map(|m| m.cluster().map(str::to_owned))
            .filter(|cluster| state.is_reachable(cluster.as_deref()))
            .collect();
        (account_spaces(&state, members, quota), in_reach)
    };
    // Shares out of reach keep what the last pass gave them, as the quota's status recorded it.
    let recorded: BTreeMap<&str, &SpaceShare> = quota
        .status
        .iter()
        .flat_map(|s| &s.spaces)
        .map(|share| (share.name.as_str(), share))
        .collect();
    let mut unknown = false;
    let mut away = Vec::new();
    for (space, _) in spaces.iter().filter(|(_, at)| !at.reachable) {
        match recorded.get(space.as_str()) {
            Some(share) => away.push(Share {
                space: space.clone(),
                hard: quantities(Some(&share.hard)),
                used: quantities(Some(&share.used)),
                closing: true,
            }),
            None => unknown = true,
        }
    }
    let mut available = total.clone();
    for (key, left) in &mut available {
        let held: i128 = away.iter().map(|s| s.hard.get(key).copied().unwrap_or(0)).sum();
        *left = (*left - held).max(0);
    }
    // Per account, so a quota replacing another (or a replica that has not seen the change yet) never moves the same
    // shares at the same time; and per quota as well, the Lease the previous version held alone, so that during a
    // rolling update a replica of that version and one of this never pass over the same shares at once. Always in
    // this order, so two passes never wait on each other.
    let work = async {
        let started = Instant::now();
        // Each share read, with the cluster it is in and its namespace there.
        let mut read: BTreeMap<String, (Arc<Member>, String, ResourceQuota)> = BTreeMap::new();
        // The clusters in reach as `spaces` saw them, not as they are after the Leases: a cluster that came into reach
        // meanwhile has its shares among `away`, already taken from `available`; planned again here, they would be
        // planned out of nothing and lowered to zero (a replica's first pass, while it is still probing a cluster).
        let reachable = members
            .all()
            .into_iter()
            .filter(|m| in_reach.contains(&m.cluster().map(str::to_owned)));
        for member in reachable {
            let client = member.client().clone();
            let shares = Api::<ResourceQuota>::all(client.clone());
            let params = ListParams::default().labels(&format!("{SHARE_LABEL}={name}"));
            let list = shares.list(&params);
            // A connected cluster that stopped answering a moment ago still counts as in reach: the pass stops short
            // (raising nothing) rather than holding its Leases while it waits, and the next one knows better.
            let listed = match member.cluster() {
                None => list.await.map_err(Error::Backend)?,
                Some(cluster) => match tokio::time::timeout(ASK_TIMEOUT, list).await {
                    Ok(listed) => listed.map_err(Error::Backend)?,
                    Err(_) => {
                        tracing::debug!(%cluster, quota = %name, "A cluster did not answer the quota pass in time");
                        return Ok(false);
                    }
                },
            };
            for rq in listed.items {
                let namespace = rq.metadata.namespace.clone().unwrap_or_default();
                let space = member.space(&namespace);
                if spaces.contains_key(&space) {
                    read.insert(space, (member.clone(), namespace, rq));
                } else if in_account(&client, &namespace, &quota.spec.account).await? {
                    // A space made a moment ago, with its share, that the state has not seen yet: the next pass counts
                    // it. (Deleting the share here would pull it from under the create that is waiting for it.)
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
                    match Api::<ResourceQuota>::namespaced(client.clone(), &namespace)
                        .delete(SHARE_QUOTA, &only_this)
                        .await
                    {
                        Ok(_) => {}
                        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {}
                        Err(error) => return Err(Error::Backend(error)),
                    }
                }
            }
        }
        // A share made or taken over now is not in this plan (nor, yet, enforced): nothing is raised before the
        // next pass counts it. Nor while a cluster out of reach holds shares this replica does not know.
        let mut raise = !unknown;
        for (space, at) in spaces.iter().filter(|(s, at)| at.reachable && !read.contains_key(*s)) {
            tracing::debug!(%space, quota = %name, "Making a missing share");
            provisioner
                .in_cluster(at.member.clone())
                .create_share(quota, &at.namespace)
                .await?;
            raise = false;
        }
        // A share whose status.hard lacks a key is not enforced for it, so its status.used does not count what is
        // there: planned as using nothing, its headroom would go to the others on top of what it holds.
        raise &= read.values().all(|(_, _, rq)| {
            let status = quantities(rq.status.as_ref().and_then(|s| s.hard.as_ref()));
            total.keys().all(|key| status.contains_key(key))
        });
        let shares: Vec<Share> = read
            .iter()
            .map(|(space, (_, _, rq))| Share {
                space: space.clone(),
                hard: quantities(rq.spec.as_ref().and_then(|s| s.hard.as_ref())),
                used: quantities(rq.status.as_ref().and_then(|s| s.used.as_ref())),
                closing: spaces.get(space).is_none_or(|at| at.closing),
            })
            .collect();
        let where_: Vec<(Client, &str)> = read
            .values()
            .map(|(member, namespace, _)| (member.client().clone(), namespace.as_str()))
            .collect();
        let planned = plan(&available, &shares);
        let mut versions: Vec<String> = read
            .values()
            .map(|(_, _, rq)| rq.metadata.resource_version.clone().unwrap_or_default())
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
        for (i, (share, lowered)) in shares.iter().zip(&lowered).enumerate() {
            if *lowered != share.hard {
                let (client, namespace) = &where_[i];
                versions[i] = write_share(client, namespace, &versions[i], lowered, &share.hard).await?;
            }
        }
        let management = members.management().client();
        if planned == lowered {
            write_status(management, quota, &total, &shares, &planned, &away).await?;
            report_full(quota, &total, &shares, &planned, &away, &where_).await;
            return Ok(raise);
        }
        if !raise {
            return Ok(false);
        }
        // kube-apiserver admits against a quota's status.hard, which kube-controller-manager copies from spec.hard:
        // nothing is raised before every share's status shows its lowered hard.
        for (i, ((share, lowered), (_, _, rq))) in shares.iter().zip(&lowered).zip(read.values()).enumerate() {
            let status = quantities(rq.status.as_ref().and_then(|s| s.hard.as_ref()));
            let behind = *lowered != share.hard || !within(&status, lowered);
            let (client, namespace) = &where_[i];
            if behind && !in_force(client, namespace, lowered, started).await? {
                return Ok(false);
            }
        }
        for (i, ((share, new), lowered)) in shares.iter().zip(&planned).zip(&lowered).enumerate() {
            if new != lowered {
                // Every raise, not only the waits: a slow pass must not raise once its Lease may have lapsed.
                if started.elapsed() >= RAISE_DEADLINE {
                    return Ok(false);
                }
                let (client, namespace) = &where_[i];
                write_share(client, namespace, &versions[i], new, &share.hard).await?;
            }
        }
        write_status(management, quota, &total, &shares, &planned, &away).await?;
        report_full(quota, &total, &shares, &planned, &away, &where_).await;
        Ok(true)
    };
    let account_lease = format!("quota-account-{}", quota.spec.account);
    provisioner
        .holding(&account_lease, provisioner.holding(&format!("quota-{name}"), work))
        .await
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
        .map(|(key, m)| (key.clone(), json!(quantity_of(key, *m).0)))
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

/// Whether a lowered share holds: its `status.hard` (what admission checks) is at most `limits`, waiting for
/// kube-controller-manager until [`RAISE_DEADLINE`], and what it uses then fits in them. Until kube-controller-manager
/// copies the lowered `spec.hard` into `status.hard`, admission still lets pods in up to the old one: a share that took
/// more than its lowered limit meanwhile holds more than the plan gave it, and raising the others would let the sum
/// of what is used pass the total. Once `status.hard` is lowered, every later admission checks it (each writes
/// `status.used` on that same version), so what is used there stays within it.
async fn in_force(
    client: &kube::Client,
    space: &str,
    limits: &BTreeMap<String, i128>,
    started: Instant,
) -> Result<bool, Error> {
    let lowered = wait_for_share(client, space, started + RAISE_DEADLINE, |share| {
        within(&quantities(share.status.as_ref().and_then(|s| s.hard.as_ref())), limits)
    })
    .await?;
    let used = |share: &ResourceQuota| quantities(share.status.as_ref().and_then(|s| s.used.as_ref()));
    Ok(lowered.is_some_and(|share| {
        used(&share)
            .iter()
            .all(|(key, used)| limits.get(key).is_none_or(|limit| used <= limit))
    }))
}

/// Tells each space whose share the pass left with no room for a resource why, as an Event on its share (best
/// effort: a refused Event changes nothing of the quota).
async fn report_full(
    quota: &AccountQuota,
    total: &BTreeMap<String, i128>,
    shares: &[Share],
    planned: &[BTreeMap<String, i128>],
    away: &[Share],
    where_: &[(Client, &str)],
) {
    let mut used: BTreeMap<String, i128> = BTreeMap::new();
    for share in shares.iter().chain(away) {
        for (key, n) in &share.used {
            *used.entry(key.clone()).or_default() += n.max(&0);
        }
    }
    let name = quota.metadata.name.as_deref().unwrap_or_default();
    let tells = shares.iter().zip(planned).zip(where_).filter_map(|((share, planned), (client, namespace))| {
        // A terminating space takes no new objects, Events included, and needs no reason.
        if share.closing {
            return None;
        }
        let message = report::why_full(quota, total, &used, share, planned)?;
        Some(async move {
            if let Err(error) = report::tell(client, namespace, name, &message).await {
                tracing::warn!(space = %share.space, quota = %name, %error, "Telling a space its share is full failed");
            }
        })
    });
    futures::future::join_all(tells).await;
}

/// The quota's status: the totals and each space's share and use, in every cluster (`away`: the shares of clusters out
/// of reach, as last recorded).
async fn write_status(
    client: &kube::Client,
    quota: &AccountQuota,
    total: &BTreeMap<String, i128>,
    shares: &[Share],
    planned: &[BTreeMap<String, i128>],
    away: &[Share],
) -> Result<(), Error> {
    let mut used_total: BTreeMap<String, i128> = total.keys().map(|k| (k.clone(), 0)).collect();
    for share in shares.iter().chain(away) {
        for (key, used) in &share.used {
            if let Some(sum) = used_total.get_mut(key) {
                *sum += used;
            }
        }
    }
    let mut spaces: Vec<(&str, Value)> = shares
        .iter()
        .zip(planned)
        .chain(away.iter().map(|share| (share, &share.hard)))
        .map(|(share, hard)| {
            let entry = json!({"name": share.space, "hard": quantity_map(hard), "used": quantity_map(&share.used)});
            (share.space.as_str(), entry)
        })
        .collect();
    spaces.sort_by(|a, b| a.0.cmp(b.0));
    let spaces: Vec<Value> = spaces.into_iter().map(|(_, entry)| entry).collect();
    let message = format!("the oldest AccountQuota of account {}", quota.spec.account);
    let status = json!({"status": {
        "total": {"hard": quantity_map(total), "used": quantity_map(&used_total)},
        "spaces": spaces,
        "conditions": [condition(quota, true, "Oldest", &message)],
    }});
    patch_status(client, quota, &status).await
}
