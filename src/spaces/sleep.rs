//! Sleep mode's actions in one cluster: a space's namespace put to sleep or woken (its `tenancy.loft.sh/sleep-status`,
//! written only if the namespace is still as the decision saw it, so two replicas never both act), and its workloads
//! brought to that state. Asleep: each Deployment and StatefulSet made before the space fell asleep has its replicas
//! recorded on it, is scaled to 0 through its scale subresource, and is marked scaled; each CronJob is suspended with
//! its previous `suspend` recorded (one write). Awake: each recorded object gets its value back unless someone set it
//! since (their value wins: replicas above 0, a CronJob resumed), and the record goes. Every step is idempotent, so a
//! pass after a crash finishes the work.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};

use super::provision::Provisioner;
use super::Error;
use crate::api::account::Account;
use crate::api::ACCOUNT_LABEL;
use crate::backend::activity::Recorded;
use crate::sleep::{
    SleepSettings, SleepStatus, FIELD_MANAGER, REPLICAS_ANNOTATION, SCALED_ANNOTATION, SETTINGS_ANNOTATION,
    STATUS_ANNOTATION, SUSPEND_ANNOTATION,
};

/// Spaces asleep, and wake-ups by cause.
#[derive(Clone)]
pub struct SleepMetrics {
    pub asleep: IntGauge,
    wakeups: IntCounterVec,
}

// === impl SleepMetrics ===

impl SleepMetrics {
    /// # Panics
    /// At startup only, if the metric definitions are invalid or registered twice.
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let asleep = IntGauge::new("tenancy_spaces_asleep", "Spaces asleep now, in every cluster served.")
            .expect("valid metric");
        let wakeups = IntCounterVec::new(
            Opts::new(
                "tenancy_space_wakeups_total",
                "Spaces woken, by cause: activity (a change by a tenant), schedule (wakeSchedule), request (kubectl \
space wake, the console).",
            ),
            &["cause"],
        )
        .expect("valid metric");
        registry.register(Box::new(asleep.clone())).expect("registered once");
        registry.register(Box::new(wakeups.clone())).expect("registered once");
        SleepMetrics { asleep, wakeups }
    }
}

impl Default for SleepMetrics {
    /// Metrics registered nowhere (tests, tools).
    fn default() -> Self {
        SleepMetrics::register(&Registry::new())
    }
}

/// Why a space wakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakeCause {
    Activity,
    Schedule,
    Request,
}

impl WakeCause {
    fn as_str(self) -> &'static str {
        match self {
            WakeCause::Activity => "activity",
            WakeCause::Schedule => "schedule",
            WakeCause::Request => "request",
        }
    }
}

/// The sleep status a namespace records (awake, never active, when it has none).
#[must_use]
pub fn status_of(ns: &Namespace) -> SleepStatus {
    ns.annotations()
        .get(STATUS_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or_default()
}

/// The settings in force for a namespace: its own, else its Account's defaults; `None` when it has none.
#[must_use]
pub fn settings_of(ns: &Namespace, accounts: &BTreeMap<String, Arc<Account>>) -> Option<SleepSettings> {
    let own: Option<SleepSettings> = ns
        .annotations()
        .get(SETTINGS_ANNOTATION)
        .and_then(|text| serde_json::from_str(text).ok());
    own.or_else(|| {
        let account = accounts.get(ns.labels().get(ACCOUNT_LABEL)?)?;
        account.spec.space.sleep.as_deref().cloned()
    })
    .filter(|settings| !settings.is_empty())
}

/// Puts a space's own settings on its namespace (or removes them); a change of settings is the changer's activity,
/// so the inactivity period starts again.
///
/// # Errors
/// When the settings or status cannot be written as JSON.
pub fn set_settings(ns: &mut Namespace, settings: Option<&SleepSettings>, by: &str) -> Result<(), serde_json::Error> {
    let mut status = status_of(ns);
    status.last_activity = Some(MicroTime(Timestamp::now()));
    status.last_activity_by = Some(by.to_owned());
    let annotations = ns.metadata.annotations.get_or_insert_with(BTreeMap::new);
    match settings {
        Some(settings) if !settings.is_empty() => {
            annotations.insert(SETTINGS_ANNOTATION.to_owned(), serde_json::to_string(settings)?);
        }
        _ => {
            annotations.remove(SETTINGS_ANNOTATION);
        }
    }
    annotations.insert(STATUS_ANNOTATION.to_owned(), serde_json::to_string(&status)?);
    Ok(())
}

/// The status of a space falling asleep now for `reason`.
#[must_use]
pub fn asleep(previous: &SleepStatus, reason: &str) -> SleepStatus {
    SleepStatus {
        sleeping: true,
        since: Some(MicroTime(Timestamp::now())),
        reason: Some(reason.to_owned()),
        ..previous.clone()
    }
}

/// The status of a space woken by `by`'s activity at `at`.
#[must_use]
pub fn awake(at: Timestamp, by: &str) -> SleepStatus {
    SleepStatus {
        last_activity: Some(MicroTime(at)),
        last_activity_by: Some(by.to_owned()),
        ..SleepStatus::default()
    }
}

/// What to do with a space's namespace, decided on the namespace as it is (read under the space's Lease).
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// Write this sleep status (waking for this cause); its workloads follow when it sleeps or wakes.
    Write(SleepStatus, Option<WakeCause>),
    /// Bring its workloads to the status it has (what a crash may have left half-done).
    Converge,
    Nothing,
}

/// Carries out sleep and wake in a cluster, counting wake-ups.
#[derive(Clone, Default)]
pub struct Sleeper {
    pub metrics: SleepMetrics,
}

// === impl Sleeper ===

impl Sleeper {
    #[must_use]
    pub fn new(metrics: SleepMetrics) -> Self {
        Sleeper { metrics }
    }

    /// Reads namespace `namespace` of `provisioner`'s cluster, takes the [`Step`] that `decide` asks for it, and
    /// brings its workloads along; the namespace as it then is. All of it holding the space's Lease in the management
    /// cluster: replicas act on one space one at a time, each on what the one before left (a decision made on an older
    /// view never undoes a newer one).
    ///
    /// # Errors
    /// The Lease cannot be had, or the cluster refuses or does not answer.
    pub async fn act(
        &self,
        provisioner: &Provisioner,
        namespace: &str,
        decide: impl FnOnce(&Namespace) -> Step,
    ) -> Result<Namespace, Error> {
        let member = provisioner.member().clone();
        let space = member.space(namespace);
        let lease = format!("sleep.{space}");
        provisioner
            .holding(&lease, async {
                let client = member.client();
                let namespaces: Api<Namespace> = Api::all(client.clone());
                let fresh = namespaces
                    .get(namespace)
                    .await
                    .map_err(|e| Error::from_kube(e, &space))?;
                let previous = status_of(&fresh);
                let (written, status) = match decide(&fresh) {
                    Step::Nothing => return Ok(fresh),
                    Step::Converge => (fresh, previous.clone()),
                    Step::Write(status, cause) => {
                        let text = serde_json::to_string(&status).map_err(|e| Error::BadRequest(e.to_string()))?;
                        let patch = json!({"metadata": {
                            "resourceVersion": fresh.resource_version(),
                            "annotations": {STATUS_ANNOTATION: text},
                        }});
                        let written = namespaces
                            .patch(namespace, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .map_err(|e| Error::from_kube(e, &space))?;
                        if previous.sleeping && !status.sleeping {
                            let cause = cause.unwrap_or(WakeCause::Activity);
                            self.metrics.wakeups.with_label_values(&[cause.as_str()]).inc();
                        }
                        if previous.sleeping == status.sleeping {
                            return Ok(written);
                        }
                        (written, status)
                    }
                };
                converge(client, namespace, &status)
                    .await
                    .map_err(|e| Error::from_kube(e, &space))?;
                Ok(written)
            })
            .await
    }
}

/// Brings the workloads of namespace `namespace` to `status`: asleep or awake.
///
/// # Errors
/// When the cluster refuses or does not answer.
pub async fn converge(client: &Client, namespace: &str, status: &SleepStatus) -> Result<(), kube::Error> {
    let since = status.since.as_ref().map_or_else(Timestamp::now, |t| t.0);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let cronjobs: Api<CronJob> = Api::namespaced(client.clone(), namespace);
    if status.sleeping {
        scale_down(&deployments, since).await?;
        scale_down(&statefulsets, since).await?;
        suspend(&cronjobs, since).await
    } else {
        scale_up(&deployments).await?;
        scale_up(&statefulsets).await?;
        resume(&cronjobs).await
    }
}

fn replicas_of(object: &impl Recorded) -> i32 {
    object.value().0.unwrap_or_default()
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn created_after(object: &impl Resource, since: Timestamp) -> bool {
    object.meta().creation_timestamp.as_ref().is_some_and(|t| t.0 > since)
}

/// Records and zeroes the replicas of every object made before `since` that runs any: the replicas first (a crash
/// after it leaves a record to finish from), then the scale to 0 through the scale subresource, then the mark that it
/// is scaled (from then on, replicas above 0 are someone's change). A record without its mark is finished.
async fn scale_down<K>(api: &Api<K>, since: Timestamp) -> Result<(), kube::Error>
where
    K: Resource + Recorded + Clone + Debug + DeserializeOwned + Serialize,
{
    for object in api.list(&ListParams::default()).await?.items {
        let name = object.name_any();
        let annotations = object.annotations();
        if annotations.contains_key(SCALED_ANNOTATION) || created_after(&object, since) {
            continue;
        }
        if !annotations.contains_key(REPLICAS_ANNOTATION) {
            let replicas = replicas_of(&object);
            if replicas == 0 {
                continue;
            }
            let record = json!({"metadata": {
                "resourceVersion": object.resource_version(),
                "annotations": {REPLICAS_ANNOTATION: replicas.to_string()},
            }});
            match api.patch(&name, &params(), &Patch::Merge(&record)).await {
                Ok(_) => {}
                // Changed meanwhile: the next pass looks again.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => return Err(error),
            }
        }
        api.patch_scale(&name, &params(), &Patch::Merge(&json!({"spec": {"replicas": 0}})))
            .await?;
        let mark = json!({"metadata": {"annotations": {SCALED_ANNOTATION: "true"}}});
        api.patch(&name, &params(), &Patch::Merge(&mark)).await?;
    }
    Ok(())
}

/// Gives every recorded object its replicas back, unless someone scaled it since (their replicas win), and drops the
/// record.
async fn scale_up<K>(api: &Api<K>) -> Result<(), kube::Error>
where
    K: Resource + Recorded + Clone + Debug + DeserializeOwned + Serialize,
{
    for object in api.list(&ListParams::default()).await?.items {
        let Some(recorded) = object.annotations().get(REPLICAS_ANNOTATION) else {
            continue;
        };
        let name = object.name_any();
        if let (0, Ok(replicas)) = (replicas_of(&object), recorded.parse::<i32>()) {
            api.patch_scale(
                &name,
                &params(),
                &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
            )
            .await?;
        }
        let forget =
            json!({"metadata": {"annotations": {REPLICAS_ANNOTATION: Value::Null, SCALED_ANNOTATION: Value::Null}}});
        api.patch(&name, &params(), &Patch::Merge(&forget)).await?;
    }
    Ok(())
}

/// Suspends every CronJob made before `since` that is not suspended, recording its previous value, in one write.
async fn suspend(api: &Api<CronJob>, since: Timestamp) -> Result<(), kube::Error> {
    for cronjob in api.list(&ListParams::default()).await?.items {
        let previous = cronjob.spec.as_ref().and_then(|s| s.suspend);
        if previous == Some(true)
            || created_after(&cronjob, since)
            || cronjob.annotations().contains_key(SUSPEND_ANNOTATION)
        {
            continue;
        }
        let patch = json!({
            "metadata": {
                "resourceVersion": cronjob.resource_version(),
                "annotations": {SUSPEND_ANNOTATION: previous.map(|p| p.to_string()).unwrap_or_default()},
            },
            "spec": {"suspend": true},
        });
        match api.patch(&cronjob.name_any(), &params(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Gives every recorded CronJob its previous `suspend` back, unless someone resumed it since, and drops the record.
async fn resume(api: &Api<CronJob>) -> Result<(), kube::Error> {
    for cronjob in api.list(&ListParams::default()).await?.items {
        let Some(recorded) = cronjob.annotations().get(SUSPEND_ANNOTATION) else {
            continue;
        };
        let mut patch = json!({"metadata": {"annotations": {SUSPEND_ANNOTATION: Value::Null}}});
        if cronjob.spec.as_ref().and_then(|s| s.suspend) == Some(true) {
            patch["spec"] = json!({"suspend": recorded.parse::<bool>().ok()});
        }
        api.patch(&cronjob.name_any(), &params(), &Patch::Merge(&patch)).await?;
    }
    Ok(())
}
