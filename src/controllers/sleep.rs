//! Sleep mode's loop: in every cluster that holds spaces, every [`INTERVAL`] and at once when a tenant's change is seen,
//! each space with sleep settings (its own or its Account's) or a sleep status is decided (`sleep::decide`) and acted
//! on: it falls asleep, wakes, or has its last activity recorded. Every replica runs it; a decision is written only if
//! the namespace is still as the replica saw it, so one replica acts and the other sees the result. A space is never
//! sent to sleep before its cluster's activity watches have listed (its quiet might be activity not yet seen).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::ResourceExt;

use crate::clusters::{Member, Members};
use crate::sleep::{decide, SleepStatus, Verdict, STATUS_ANNOTATION};
use crate::spaces::sleep::{asleep, awake, converge, settings_of, status_of, Sleeper, WakeCause};
use crate::state::Cache;

/// The longest the loop waits without a change.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// A tenant's change is written as the space's last activity once it is this much newer than the one recorded, so a
/// busy space's namespace is written at most once a minute (what decides is the change itself, seen by every replica).
const RECORD_EVERY: Duration = Duration::from_secs(60);

/// Runs the loop forever.
pub async fn run(cache: Arc<Cache>, members: Arc<Members>, sleeper: Arc<Sleeper>) {
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
        let clusters = members.holding_spaces();
        let mut sleeping = 0;
        for member in &clusters {
            sleeping += pass(&cache, member, &sleeper, &mut converged).await;
        }
        sleeper.metrics.asleep.set(sleeping);
        let seen = futures::future::select_all(clusters.iter().map(|m| Box::pin(m.activity().changed())));
        let _ = tokio::time::timeout(INTERVAL, seen).await;
        // Let a burst of changes settle into one pass.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One cluster's spaces; how many sleep.
async fn pass(
    cache: &Cache,
    member: &Member,
    sleeper: &Sleeper,
    converged: &mut HashMap<(Option<String>, String), String>,
) -> i64 {
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
        let status = status_of(&ns);
        sleeping += i64::from(status.sleeping);
        let settings = settings_of(&ns, &accounts);
        if !reachable || ns.metadata.deletion_timestamp.is_some() || (settings.is_none() && !status.sleeping) {
            continue;
        }
        let name = ns.name_any();
        let seen = activity.latest(&name);
        let now = Timestamp::now();
        let created = ns.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
        let verdict = match settings.map(|s| s.rules()) {
            Some(Ok(rules)) => decide(&rules, &status, seen.as_ref(), created, now),
            // Settings that do not parse (an Account's, which kube-apiserver checks less): a space sent to sleep by
            // hand still wakes on activity.
            _ => {
                let since = status.since.as_ref().map_or(now, |t| t.0);
                match seen.as_ref().filter(|s| status.sleeping && s.after(since)) {
                    Some(seen) => Verdict::Wake(Some(seen.by.clone())),
                    None => Verdict::Stay,
                }
            }
        };
        let (wanted, cause) = match verdict {
            Verdict::Sleep(reason) if listed => (asleep(&status, reason), None),
            Verdict::Wake(Some(by)) => {
                let at = seen.as_ref().map_or(now, |s| s.at);
                (awake(at, &by), Some(WakeCause::Activity))
            }
            Verdict::Wake(None) => (awake(now, "wakeSchedule"), Some(WakeCause::Schedule)),
            Verdict::Sleep(_) | Verdict::Stay => match newer_activity(&status, seen.as_ref()) {
                Some(recorded) => (recorded, None),
                None => {
                    finish(member, &ns, &status, converged).await;
                    continue;
                }
            },
        };
        match sleeper.change(member.client(), &ns, &wanted, cause).await {
            Ok(Some(written)) => {
                if let Some(text) = written.annotations().get(STATUS_ANNOTATION) {
                    converged.insert((member.cluster().map(str::to_owned), name), text.clone());
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(cluster = ?member.cluster(), namespace = %name, %error, "Sleep mode could not act");
            }
        }
    }
    sleeping
}

/// The status with `seen` as its last activity, when it is enough newer than the one recorded.
fn newer_activity(status: &SleepStatus, seen: Option<&crate::sleep::Seen>) -> Option<SleepStatus> {
    let seen = seen?;
    let recorded = status.last_activity.as_ref().map(|t| t.0);
    let due = recorded.is_none_or(|at| seen.at.duration_since(at).unsigned_abs() >= RECORD_EVERY && seen.at > at);
    (due && !status.sleeping).then(|| awake(seen.at, &seen.by))
}

/// Brings a namespace's workloads to its sleep status once per status this replica sees.
async fn finish(
    member: &Member,
    ns: &Namespace,
    status: &SleepStatus,
    converged: &mut HashMap<(Option<String>, String), String>,
) {
    let Some(text) = ns.annotations().get(STATUS_ANNOTATION) else {
        return;
    };
    let key = (member.cluster().map(str::to_owned), ns.name_any());
    if converged.get(&key) == Some(text) {
        return;
    }
    // The state may be a moment behind another replica's decision: acting on a status that is no longer the
    // namespace's would undo it.
    let namespaces: Api<Namespace> = Api::all(member.client().clone());
    match namespaces.get(&key.1).await {
        Ok(now) if now.annotations().get(STATUS_ANNOTATION) == Some(text) => {}
        Ok(_) => return,
        Err(error) => {
            tracing::warn!(cluster = ?member.cluster(), namespace = %key.1, %error, "Sleep mode could not act");
            return;
        }
    }
    match converge(member.client(), &key.1, status).await {
        Ok(()) => {
            converged.insert(key, text.clone());
        }
        Err(error) => {
            tracing::warn!(cluster = ?member.cluster(), namespace = %key.1, %error, "Sleep mode could not act")
        }
    }
}
