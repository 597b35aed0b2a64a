//! Sleep mode's rules, without I/O: a space's sleep settings (its `spec.sleep`, or its Account's `spec.space.sleep`),
//! what its namespace records about its sleep (`status.sleep`), what each workload records while its space sleeps, who
//! counts as activity, and whether a space should fall asleep or wake now. `spaces::sleep` acts on them and
//! `controllers::sleep` runs them.

use std::str::FromStr;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, MicroTime};
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// On a namespace: the space's own `spec.sleep`, as JSON.
pub const SETTINGS_ANNOTATION: &str = "tenancy.loft.sh/sleep";
/// On a namespace: its `status.sleep`, as JSON (written by the server only).
pub const STATUS_ANNOTATION: &str = "tenancy.loft.sh/sleep-status";
/// On a Deployment or StatefulSet of a sleeping space: its replicas before it was scaled to 0.
pub const REPLICAS_ANNOTATION: &str = "tenancy.loft.sh/sleep-replicas";
/// On a Deployment or StatefulSet of a sleeping space, once it is scaled to 0 (after [`REPLICAS_ANNOTATION`]): from
/// then on, replicas above 0 are someone's change.
pub const SCALED_ANNOTATION: &str = "tenancy.loft.sh/sleep-scaled";
/// On a CronJob of a sleeping space: its `spec.suspend` before it was suspended (`true`, `false`, or empty: unset).
pub const SUSPEND_ANNOTATION: &str = "tenancy.loft.sh/sleep-suspend";
/// The field manager of every write sleep mode makes (its changes are never a tenant's activity).
pub const FIELD_MANAGER: &str = "tenancy-apiserver-sleep";
/// Writers whose changes are not a tenant's activity: this server, and the control plane's own components (a
/// ReplicaSet made by the deployment controller, a pod's status from its kubelet).
const QUIET_MANAGERS: &[&str] = &[
    FIELD_MANAGER,
    "tenancy-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-apiserver",
];

/// Why a space fell asleep.
pub const BY_INACTIVITY: &str = "Inactivity";
pub const BY_SCHEDULE: &str = "Schedule";
pub const BY_REQUEST: &str = "Requested";

/// `spec.sleep`: when a space sleeps on its own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepSettings {
    /// Asleep once nobody but the server has changed anything in the space for this long (`30m`, `2h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_inactivity: Option<String>,
    /// Asleep at each of these times (cron, five fields, in `timezone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Awake at each of these times (cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_schedule: Option<String>,
    /// The IANA time zone of both schedules (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// `status.sleep`: whether the space sleeps, since when and why, and its last activity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SleepStatus {
    #[serde(default)]
    pub sleeping: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<MicroTime>,
    /// `Inactivity`, `Schedule` or `Requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity: Option<MicroTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_activity_by: Option<String>,
}

/// Settings that parse: what [`decide`] works from.
#[derive(Clone, Debug)]
pub struct Rules {
    after_inactivity: Option<Duration>,
    schedule: Option<Cron>,
    wake_schedule: Option<Cron>,
    timezone: chrono_tz::Tz,
}

/// What a space should do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Stay,
    /// Fall asleep, for this reason.
    Sleep(&'static str),
    /// Wake: by the activity of someone (`Some`), or by the wake schedule (`None`).
    Wake(Option<String>),
}

/// A change seen in a space: when, and by whom (a field manager, or a user).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub at: Timestamp,
    pub by: String,
    /// Whether `at` is exact: false for a time from managed fields, which have whole seconds.
    pub exact: bool,
}

// === impl Seen ===

impl Seen {
    /// A change at an exact time (an audited request, a value taken over, seen now).
    #[must_use]
    pub fn exact(at: Timestamp, by: impl Into<String>) -> Self {
        Seen {
            at,
            by: by.into(),
            exact: true,
        }
    }

    /// A change at a time given to the second (managed fields).
    #[must_use]
    pub fn to_the_second(at: Timestamp, by: impl Into<String>) -> Self {
        Seen {
            at,
            by: by.into(),
            exact: false,
        }
    }

    /// Whether this change came after `since`. One known to the second counts from the next second on: `kubectl
    /// apply` then `kubectl space sleep` in one breath leaves the space asleep (so does a change made in the rest of
    /// the second after the sleep; a taken value is exact and always counts).
    #[must_use]
    pub fn after(&self, since: Timestamp) -> bool {
        if self.exact {
            self.at > since
        } else {
            self.at.as_second() > since.as_second()
        }
    }

    /// Whether this says more than `known`: later.
    #[must_use]
    pub fn newer_than(&self, known: &Seen) -> bool {
        self.at > known.at
    }
}

// === impl SleepSettings ===

impl SleepSettings {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == SleepSettings::default()
    }

    /// The settings as rules, or what is wrong with each field (its name under `spec.sleep`, and why).
    ///
    /// # Errors
    /// Every field that does not parse.
    pub fn rules(&self) -> Result<Rules, Vec<(&'static str, String)>> {
        let mut problems = Vec::new();
        let after_inactivity = self
            .after_inactivity
            .as_deref()
            .and_then(|text| duration(text).map_err(|e| problems.push(("afterInactivity", e))).ok());
        let mut cron = |field: &'static str, text: Option<&str>| {
            text.and_then(|text| cron(text).map_err(|e| problems.push((field, e))).ok())
        };
        let schedule = cron("schedule", self.schedule.as_deref());
        let wake_schedule = cron("wakeSchedule", self.wake_schedule.as_deref());
        let timezone = match self.timezone.as_deref() {
            None | Some("") => Some(chrono_tz::UTC),
            Some(name) => chrono_tz::Tz::from_str(name)
                .map_err(|_| {
                    problems.push((
                        "timezone",
                        format!("{name:?} is no IANA time zone (e.g. Europe/Berlin)"),
                    ))
                })
                .ok(),
        };
        if self.wake_schedule.is_some() && self.schedule.is_none() && self.after_inactivity.is_none() {
            problems.push((
                "wakeSchedule",
                "wakes a space that sleeps by schedule or inactivity: set schedule or afterInactivity too".to_owned(),
            ));
        }
        match timezone {
            Some(timezone) if problems.is_empty() => Ok(Rules {
                after_inactivity,
                schedule,
                wake_schedule,
                timezone,
            }),
            _ => Err(problems),
        }
    }
}

/// A duration of at least 10 s, as kube writes them (`90s`, `30m`, `1h30m`).
fn duration(text: &str) -> Result<Duration, String> {
    let parsed: kube::core::Duration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 30m or 2h: {e}"))?;
    if parsed.is_negative() || Duration::from(parsed) < Duration::from_secs(10) {
        return Err(format!("{text:?} is shorter than 10s"));
    }
    Ok(Duration::from(parsed))
}

/// A five-field cron expression (minute hour day-of-month month day-of-week), as a CronJob's `schedule`.
fn cron(text: &str) -> Result<Cron, String> {
    if text.split_whitespace().count() != 5 && !text.trim_start().starts_with('@') {
        return Err(format!(
            "{text:?} is not a cron schedule of five fields (minute hour day-of-month month day-of-week)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("{text:?} is not a cron schedule: {e}"))
}

// === impl Rules ===

impl Rules {
    /// The latest time of `cron` at or before `now`.
    fn previous(&self, cron: &Cron, now: Timestamp) -> Option<Timestamp> {
        let now = chrono::DateTime::from_timestamp(now.as_second(), 0)?.with_timezone(&self.timezone);
        let at = cron.find_previous_occurrence(&now, true).ok()?;
        Timestamp::from_second(at.timestamp()).ok()
    }
}

/// What `status` and `activity` (the latest change seen in the space by anyone but the server) ask of a space with
/// `rules` at `now`. A space that never had activity counts from `created`.
#[must_use]
pub fn decide(
    rules: &Rules,
    status: &SleepStatus,
    activity: Option<&Seen>,
    created: Timestamp,
    now: Timestamp,
) -> Verdict {
    if status.sleeping {
        let since = status.since.as_ref().map_or(now, |t| t.0);
        if let Some(seen) = activity.filter(|seen| seen.after(since)) {
            return Verdict::Wake(Some(seen.by.clone()));
        }
        let woken = rules
            .wake_schedule
            .as_ref()
            .and_then(|cron| rules.previous(cron, now))
            .is_some_and(|at| at > since);
        return if woken { Verdict::Wake(None) } else { Verdict::Stay };
    }
    let last = [status.last_activity.as_ref().map(|t| t.0), activity.map(|seen| seen.at)]
        .into_iter()
        .flatten()
        .fold(created, Timestamp::max);
    if let Some(after) = rules.after_inactivity {
        if now.duration_since(last).unsigned_abs() >= after && now > last {
            return Verdict::Sleep(BY_INACTIVITY);
        }
    }
    if let Some(at) = rules.schedule.as_ref().and_then(|cron| rules.previous(cron, now)) {
        let woken_after = rules
            .wake_schedule
            .as_ref()
            .and_then(|cron| rules.previous(cron, now))
            .is_some_and(|wake| wake >= at);
        if at > last && !woken_after {
            return Verdict::Sleep(BY_SCHEDULE);
        }
    }
    Verdict::Stay
}

/// The latest change to an object by anyone but the server and the control plane, from its managed fields (status
/// writes are never a tenant's).
#[must_use]
pub fn latest_change(fields: &[ManagedFieldsEntry]) -> Option<Seen> {
    fields
        .iter()
        .filter(|entry| entry.subresource.as_deref().unwrap_or_default() != "status")
        .filter_map(|entry| {
            let manager = entry.manager.as_deref().unwrap_or_default();
            let quiet = QUIET_MANAGERS.contains(&manager);
            Some(Seen::to_the_second(entry.time.as_ref()?.0, manager)).filter(|_| !quiet)
        })
        .max_by_key(|seen| seen.at)
}

/// Whether a request kube-apiserver audited is a tenant's activity: anyone's but the server's own identity (`server`),
/// the control plane's (`system:` users that are no ServiceAccount, and `kube-system`'s ServiceAccounts) and cluster
/// admins' (`system:masters`: a platform engineer looking around does not keep a space awake).
#[must_use]
pub fn is_tenant(username: &str, groups: &[String], server: &str) -> bool {
    let component = match username.strip_prefix("system:serviceaccount:") {
        Some(account) => account.starts_with("kube-system:"),
        None => username.starts_with("system:"),
    };
    username != server && !component && !groups.iter().any(|g| g == "system:masters")
}

/// Whether someone set a sleeping workload's value since sleep mode did: a Deployment or StatefulSet it scaled to 0
/// runs replicas again, or a CronJob it suspended is not suspended. A kubectl scale through the scale subresource leaves
/// no managed-fields owner, so the value itself is what tells.
#[must_use]
pub fn taken(
    annotations: &std::collections::BTreeMap<String, String>,
    replicas: Option<i32>,
    suspend: Option<bool>,
) -> bool {
    match (replicas, suspend) {
        (Some(replicas), _) => annotations.contains_key(SCALED_ANNOTATION) && replicas != 0,
        (None, Some(suspend)) => annotations.contains_key(SUSPEND_ANNOTATION) && !suspend,
        (None, None) => false,
    }
}

#[cfg(test)]
mod tests;
