//! Sleep mode's loop: in every cluster that holds spaces, every [`INTERVAL`] and at once when a tenant's change is seen,
//! each space with sleep settings (its own or its Account's) or a sleep status is decided (`sleep::decide`) and acted
//! on: it falls asleep, wakes, or has its last activity recorded. Every replica runs it; each decision is made again on
//! the namespace as it is, under the space's Lease (`Sleeper::act`), so replicas act one after another and none undoes
//! what another did. A space is never sent to sleep before its cluster's activity watches have listed (its quiet might
//! be activity not yet seen).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use crate::api::account::Account;
use crate::sleep::{decide, Seen, SleepStatus, Verdict, STATUS_ANNOTATION};
use crate::spaces::provision::Provisioner;
use crate::spaces::sleep::{asleep, awake, settings_of, status_of, Sleeper, Step, WakeCause};
use crate::state::Cache;

/// The longest the loop waits without a change.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// A tenant's change is written as the space's last activity once it is this much newer than the one recorded, so a
/// busy space's namespace is written at most once a minute (what decides is the change itself, seen by every replica).
const RECORD_EVERY: Duration = Duration::from_secs(60);

/// Runs the loop forever.
pub async fn run(cache: Arc<Cache>, provisioner: Arc<Provisioner>, sleeper: Arc<Sleeper>) {
    let mut changes = cache.changes();
    while !cache.is_ready() {
        if changes.changed().await.is_err() {
            return;
        }
    }
    // The sleep status each namespace's workloads were last brought to by this replica: after a restart each is
    // brought once more, which finishes what a crash left half-done.
    let mut converged: HashMap<(Option<String>, String), String> = HashMap::new();
    loop {
        let clusters = provisioner.members().holding_spaces();
        let mut sleeping = 0;
        for member in &clusters {
            let provisioner = provisioner.in_cluster(member.clone());
            sleeping += pass(&cache, &provisioner, &sleeper, &mut converged).await;
        }
        sleeper.metrics.asleep.set(sleeping);
        // No cluster holds spaces (a trunk-only install with none connected yet): `select_all` takes at least one.
        if clusters.is_empty() {
            tokio::time::sleep(INTERVAL).await;
            continue;
        }
        let seen = futures::future::select_all(clusters.iter().map(|m| Box::pin(m.activity().changed())));
        let _ = tokio::time::timeout(INTERVAL, seen).await;
        // Let a burst of changes settle into one pass.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one space needs: decided on the state's copy first (most need nothing), then again on the namespace as it is,
/// under the space's Lease.
struct Judge<'a> {
    accounts: &'a BTreeMap<String, Arc<Account>>,
    seen: Option<Seen>,
    /// Whether the cluster's activity watches have listed: no space is sent to sleep before.
    listed: bool,
    /// The status this replica last brought the space's workloads to.
    converged: Option<&'a String>,
}

// === impl Judge ===

impl Judge<'_> {
    fn step(&self, ns: &Namespace) -> Step {
        let status = status_of(ns);
        let settings = settings_of(ns, self.accounts);
        if ns.metadata.deletion_timestamp.is_some() || (settings.is_none() && !status.sleeping) {
            return Step::Nothing;
        }
        let seen = self.seen.as_ref();
        let now = Timestamp::now();
        let created = ns.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let verdict = match settings.map(|s| s.rules()) {
            Some(Ok(rules)) => decide(&rules, &status, seen, created, now),
            // Settings that do not parse (an Account's, which kube-apiserver checks less): a space sent to sleep by
            // hand still wakes on activity.
            _ => {
                let since = status.since.as_ref().map_or(now, |t| t.0);
                match seen.filter(|s| status.sleeping && s.after(since)) {
                    Some(seen) => Verdict::Wake(Some(seen.by.clone())),
                    None => Verdict::Stay,
                }
            }
        };
        match verdict {
            Verdict::Sleep(reason) if self.listed => Step::Write(asleep(&status, reason), None),
            Verdict::Wake(Some(by)) => Step::Write(awake(seen.map_or(now, |s| s.at), &by), Some(WakeCause::Activity)),
            Verdict::Wake(None) => Step::Write(awake(now, "wakeSchedule"), Some(WakeCause::Schedule)),
            Verdict::Sleep(_) | Verdict::Stay => match newer_activity(&status, seen) {
                Some(recorded) => Step::Write(recorded, None),
                None => match ns.annotations().get(STATUS_ANNOTATION) {
                    Some(text) if self.converged != Some(text) => Step::Converge,
                    _ => Step::Nothing,
                },
            },
        }
    }
}

/// One cluster's spaces; how many sleep.
async fn pass(
    cache: &Cache,
    provisioner: &Provisioner,
    sleeper: &Sleeper,
    converged: &mut HashMap<(Option<String>, String), String>,
) -> i64 {
    let member = provisioner.member();
    let (namespaces, accounts, reachable) = {
        let state = cache.read();
        (
            state.cluster_part(member.cluster()).0,
            state.accounts.clone(),
            state.is_reachable(member.cluster()),
        )
    };
    let activity = member.activity();
    let listed = activity.is_listed();
    let mut sleeping = 0;
    for ns in namespaces {
        sleeping += i64::from(status_of(&ns).sleeping);
        let name = ns.name_any();
        let key = (member.cluster().map(str::to_owned), name.clone());
        let judge = Judge {
            accounts: &accounts,
            seen: activity.latest(&name),
            listed,
            converged: converged.get(&key),
        };
        if !reachable || judge.step(&ns) == Step::Nothing {
            continue;
        }
        match sleeper.act(provisioner, &name, |fresh| judge.step(fresh)).await {
            Ok(written) => {
                if let Some(text) = written.annotations().get(STATUS_ANNOTATION) {
                    converged.insert(key, text.clone());
                }
            }
            Err(error) => {
                tracing::warn!(cluster = ?member.cluster(), namespace = %name, %error, "Sleep mode could not act");
            }
        }
    }
    sleeping
}

/// The status with `seen` as its last activity, when it is enough newer than the one recorded.
fn newer_activity(status: &SleepStatus, seen: Option<&Seen>) -> Option<SleepStatus> {
    let seen = seen?;
    let recorded = status.last_activity.as_ref().map(|t| t.0);
    let due = recorded.is_none_or(|at| seen.at.duration_since(at).unsigned_abs() >= RECORD_EVERY && seen.at > at);
    (due && !status.sleeping).then(|| awake(seen.at, &seen.by))
}
