//! Making a space: its namespace, its owner RoleBinding and its account's templates, in that order, with the rollback
//! beside it. The namespace carries a `tenancy.loft.sh/creating` mark until the last step is done, so a space left
//! half-made by a crash is found and finished by the repair pass (`controllers::reconcile`), never left without its owner binding.
//!
//! An account's space limit is checked and the namespace created while holding a per-account Lease in kube-apiserver,
//! so parallel creates — on any number of replicas — never exceed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::Client;
use serde_json::Value;

use super::{parameters, Error};
use crate::api::account::{
    quota_in_force, Account, AccountQuota, SpaceTemplate, CONFIG_GROUP, DEFAULT_OWNER_ROLE, DEFAULT_TEMPLATE,
};
use crate::api::space::{AppliedTemplate, ObjectReference, APPLIED, FAILED};
use crate::api::{ACCOUNT_LABEL, CREATOR_ANNOTATION, ENFORCED_LABEL, TEMPLATE_LABEL, TEMPLATE_STATUS_ANNOTATION};
use crate::backend::enforced::Enforced;
use crate::backend::explain;
use crate::clusters::{Member, Members};
use crate::state::Cache;

/// The ResourceQuota holding a space's share of its account's AccountQuota.
pub const SHARE_QUOTA: &str = "account-quota";
pub use crate::api::account::SHARE_LABEL;
/// The RoleBinding that makes a space's owners its admins.
pub const OWNER_BINDING: &str = "tenancy-owner";
/// Marks a namespace whose space is not finished yet.
pub const CREATING_ANNOTATION: &str = "tenancy.loft.sh/creating";
/// Namespace holding the server's Leases.
pub const LEASE_NAMESPACE: &str = "tenancy-system";
/// How long a lease holder may take before others may break its lease (a crashed replica).
const LEASE_SECONDS: i32 = 15;
/// Milliseconds a create pauses while it holds its account's Lease (test builds only).
#[cfg(feature = "fault-injection")]
pub const PAUSE_HOLDING_LEASE: &str = "TENANCY_FAULT_PAUSE_HOLDING_LEASE_MS";
/// How long a create waits for its account's lease.
const LEASE_WAIT: Duration = Duration::from_secs(20);
/// How long a new space's share may take to be enforced (kube-controller-manager fills its status.hard) before the
/// create fails.
const SHARE_WAIT: Duration = Duration::from_secs(10);
/// How long a connected cluster may take to count an account's spaces before its last known count is used.
const COUNT_TIMEOUT: Duration = Duration::from_secs(3);
/// The field manager of the template objects the server applies (server-side apply), and so the owner of their fields.
pub const FIELD_MANAGER: &str = "tenancy-apiserver";

/// Who owns a new space.
#[derive(Clone, Debug)]
pub enum Owner {
    Account(Arc<Account>),
    /// No account: the creator alone.
    Creator,
}

/// Everything the steps need, resolved before the first one.
pub struct Plan {
    pub name: String,
    pub creator: String,
    pub owner: Owner,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub templates: Vec<Arc<SpaceTemplate>>,
    /// The values given to the templates' declared parameters (`spec.templateParameters`).
    pub parameters: BTreeMap<String, String>,
}

// === impl Plan ===

impl Plan {
    /// The plan of the space `ns` already is: its name, creator, labels, annotations and template parameters as the
    /// namespace records them.
    #[must_use]
    pub fn for_namespace(ns: &Namespace, owner: Owner, templates: Vec<Arc<SpaceTemplate>>) -> Self {
        Plan {
            name: ns.metadata.name.clone().unwrap_or_default(),
            creator: ns
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CREATOR_ANNOTATION))
                .cloned()
                .unwrap_or_default(),
            owner,
            labels: ns.metadata.labels.clone().unwrap_or_default(),
            annotations: ns.metadata.annotations.clone().unwrap_or_default(),
            templates,
            parameters: crate::api::space::template_parameters(ns),
        }
    }
}

/// Makes, finishes and removes spaces in one cluster (a [`Member`]), under the management cluster's Leases and the
/// account limits counted across every cluster.
pub struct Provisioner {
    /// The cluster the spaces are made in.
    member: Arc<Member>,
    /// Every cluster: the management cluster's Leases, and every cluster's spaces counted towards account limits.
    members: Arc<Members>,
    /// The state: a connected cluster's spaces as last seen, counted when it does not answer.
    cache: Arc<Cache>,
    identity: String,
}

// === impl Provisioner ===

impl Provisioner {
    /// A provisioner for the management cluster of `members`.
    #[must_use]
    pub fn new(members: Arc<Members>, cache: Arc<Cache>) -> Self {
        let identity = format!(
            "tenancy-apiserver-{}-{}",
            std::process::id(),
            Timestamp::now().as_nanosecond() % 1_000_000
        );
        Provisioner {
            member: members.management().clone(),
            members,
            cache,
            identity,
        }
    }

    /// A provisioner for connected cluster `cluster`, if it is connected.
    #[must_use]
    pub fn for_connected(&self, cluster: &str) -> Option<Self> {
        self.members.connected(cluster).map(|member| self.in_cluster(member))
    }

    /// A provisioner that makes spaces in `member`, under this one's Leases and limits (cheap: what is learned about a
    /// cluster lives in its member).
    #[must_use]
    pub fn in_cluster(&self, member: Arc<Member>) -> Self {
        Provisioner {
            member,
            members: self.members.clone(),
            cache: self.cache.clone(),
            identity: self.identity.clone(),
        }
    }

    /// The cluster this provisioner makes spaces in.
    #[must_use]
    pub fn member(&self) -> &Arc<Member> {
        &self.member
    }

    /// Every cluster served.
    #[must_use]
    pub fn members(&self) -> &Arc<Members> {
        &self.members
    }

    #[must_use]
    pub fn client(&self) -> &Client {
        self.member.client()
    }

    /// The management cluster's client: Leases, Accounts, AccountQuotas.
    fn management(&self) -> &Client {
        self.members.management().client()
    }

    /// Which enforced template objects exist.
    #[must_use]
    pub fn enforced(&self) -> &Enforced {
        self.member.enforced()
    }

    /// Creates the namespace (marked as creating), within the account's limit when there is one.
    ///
    /// # Errors
    /// The limit is reached, the name is taken, or kube-apiserver refuses.
    pub async fn create_namespace(&self, plan: &Plan, dry_run: bool) -> Result<Namespace, Error> {
        let mut annotations = plan.annotations.clone();
        annotations.insert(CREATOR_ANNOTATION.to_owned(), plan.creator.clone());
        if !dry_run {
            annotations.insert(CREATING_ANNOTATION.to_owned(), "true".to_owned());
        }
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(plan.name.clone()),
                labels: Some(plan.labels.clone()),
                annotations: Some(annotations),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let create = || async {
            Api::<Namespace>::all(self.client().clone())
                .create(
                    &PostParams {
                        dry_run,
                        field_manager: Some("tenancy-apiserver".to_owned()),
                    },
                    &namespace,
                )
                .await
                .map_err(|e| Error::from_kube(e, &plan.name))
        };
        match &plan.owner {
            Owner::Creator => create().await,
            Owner::Account(account) => self.within_limit(account, create()).await,
        }
    }

    /// Runs `add` — which adds one space to `account` — only if the account is below its limit, holding the account's
    /// Lease throughout so that no other replica adds one meanwhile.
    ///
    /// # Errors
    /// The limit is reached, the lease cannot be had, or `add` fails.
    pub async fn within_limit<T>(
        &self,
        account: &Account,
        add: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let Some(limit) = account.spec.space.limit else {
            return add.await;
        };
        self.holding(&format!("account-{}", account.name()), async {
            let count = self.count_spaces(account.name()).await?;
            if count >= limit {
                return Err(Error::LimitReached {
                    account: account.name().to_owned(),
                    limit,
                });
            }
            // Fault injection for the disconnect test: a create that holds the Lease for a while.
            #[cfg(feature = "fault-injection")]
            if let Some(pause) = std::env::var(PAUSE_HOLDING_LEASE).ok().and_then(|ms| ms.parse().ok()) {
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            add.await
        })
        .await
    }

    /// Moves a space's owner binding to `plan`'s owner: the old binding goes, the new one comes.
    ///
    /// # Errors
    /// When kube-apiserver refuses either step.
    pub async fn rebind(&self, plan: &Plan) -> Result<(), Error> {
        let bindings: Api<RoleBinding> = Api::namespaced(self.client().clone(), &plan.name);
        match bindings.delete(OWNER_BINDING, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(Error::from_kube(error, &plan.name)),
        }
        bindings
            .create(&PostParams::default(), &owner_binding(plan))
            .await
            .map(|_| ())
            .map_err(|e| Error::from_kube(e, &plan.name))
    }

    /// The account's spaces as kube-apiserver has them now (a consistent read, not the cache).
    async fn count_spaces(&self, account: &str) -> Result<i64, Error> {
        let selector = ListParams::default().labels(&format!("{ACCOUNT_LABEL}={account}"));
        let live = |list: Vec<Namespace>| {
            list.iter()
                .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                .count()
        };
        let mut count = live(
            Api::<Namespace>::all(self.management().clone())
                .list(&selector)
                .await
                .map_err(Error::Backend)?
                .items,
        );
        // Each connected cluster is asked too (under the Lease, so exact); one that does not answer counts with what
        // the state last saw of it.
        for member in self.members.all_connected() {
            let cluster = member.cluster().unwrap_or_default();
            let asked = tokio::time::timeout(
                COUNT_TIMEOUT,
                Api::<Namespace>::all(member.client().clone()).list(&selector),
            )
            .await;
            count += match asked {
                Ok(Ok(list)) => live(list.items),
                _ => {
                    let state = self.cache.read();
                    state.connected.get(cluster).map_or(0, |part| {
                        part.namespaces
                            .values()
                            .filter(|ns| {
                                ns.metadata.deletion_timestamp.is_none()
                                    && ns.metadata.labels.as_ref().and_then(|l| l.get(ACCOUNT_LABEL))
                                        == Some(&account.to_owned())
                            })
                            .count()
                    })
                }
            };
        }
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }

    /// The owner binding and the templates, then the creating mark removed; the finished namespace. Idempotent: the
    /// repair pass calls it on a half-made space.
    ///
    /// # Errors
    /// When a step fails; the caller rolls back.
    pub async fn finish(&self, plan: &Plan) -> Result<Namespace, Error> {
        // The quota share first: once the owners have rights in the space, everything they make counts. (Connected
        // clusters' spaces are not covered by AccountQuotas yet.)
        if let (Owner::Account(account), true) = (&plan.owner, self.member.is_management()) {
            // Read fresh, not from the state: an AccountQuota made just before this create may not have reached the
            // reflector yet, and its space would go unshared until the next pass.
            let quotas: Vec<Arc<AccountQuota>> = Api::<AccountQuota>::all(self.management().clone())
                .list(&ListParams::default())
                .await
                .map_err(Error::Backend)?
                .items
                .into_iter()
                .map(Arc::new)
                .collect();
            if let Some(quota) = quota_in_force(&quotas, account.name()).cloned() {
                self.create_share(&quota, &plan.name).await?;
                // kube-apiserver enforces a ResourceQuota only once kube-controller-manager has filled its
                // status.hard: until then the owners get no rights here, or what they make in between is not counted.
                let until = tokio::time::Instant::now() + SHARE_WAIT;
                if !wait_for_share(self.client(), &plan.name, until, enforced).await? {
                    return Err(Error::ShareNotInForce(plan.name.clone()));
                }
            }
        }
        let bindings: Api<RoleBinding> = Api::namespaced(self.client().clone(), &plan.name);
        match bindings.create(&PostParams::default(), &owner_binding(plan)).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(Error::from_kube(error, &plan.name)),
        }
        let mut records = Vec::new();
        for template in &plan.templates {
            let (record, error) = self.apply_template(plan, template).await;
            if let Some(error) = error {
                return Err(error);
            }
            records.push(record);
        }
        let mut annotations = serde_json::json!({CREATING_ANNOTATION: null});
        if !records.is_empty() {
            annotations[TEMPLATE_STATUS_ANNOTATION] = Value::String(records_json(&records));
        }
        let unmark = serde_json::json!({"metadata": {"annotations": annotations}});
        Api::<Namespace>::all(self.client().clone())
            .patch(&plan.name, &PatchParams::default(), &Patch::Merge(unmark))
            .await
            .map_err(|e| Error::from_kube(e, &plan.name))
    }

    /// The space's share of `quota`: nothing until the quota controller moves headroom to it. One that exists is left as
    /// it is, but taken over when it belongs to another AccountQuota (one deleted, or no longer in force): its label
    /// and owner become `quota`'s.
    ///
    /// # Errors
    /// When kube-apiserver refuses.
    pub async fn create_share(&self, quota: &AccountQuota, space: &str) -> Result<(), Error> {
        let shares: Api<ResourceQuota> = Api::namespaced(self.client().clone(), space);
        let wanted = share_quota(quota, space);
        match shares.create(&PostParams::default(), &wanted).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(Error::from_kube(error, space)),
        }
        let existing = shares.get(SHARE_QUOTA).await.map_err(|e| Error::from_kube(e, space))?;
        if existing.metadata.labels.as_ref().and_then(|l| l.get(SHARE_LABEL))
            == wanted.metadata.labels.as_ref().and_then(|l| l.get(SHARE_LABEL))
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

    /// Runs `work` holding the Lease `name` in [`LEASE_NAMESPACE`], so that no other replica runs work under the same
    /// Lease meanwhile (it is broken only once [`LEASE_SECONDS`] old: a crashed holder).
    ///
    /// # Errors
    /// The Lease cannot be had, or `work` fails.
    pub async fn holding<T>(
        &self,
        name: &str,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let lease = self.acquire(name).await?;
        let result = work.await;
        self.release(lease).await;
        result
    }

    /// Deletes a half-made space's namespace (its objects go with it).
    pub async fn roll_back(&self, name: &str) {
        if let Err(error) = Api::<Namespace>::all(self.client().clone())
            .delete(name, &DeleteParams::default())
            .await
        {
            tracing::error!(space = %name, %error, "Rolling back a half-made space failed; the repair pass will retry");
        }
    }

    /// Applies every object of `template` in `plan`'s space, stopping at the first that fails; the record of what was
    /// done (Applied, or Failed with the reason) and the error, if any.
    pub async fn apply_template(&self, plan: &Plan, template: &SpaceTemplate) -> (AppliedTemplate, Option<Error>) {
        let mut record = AppliedTemplate {
            name: template.metadata.name.clone().unwrap_or_default(),
            generation: template.metadata.generation.unwrap_or_default(),
            parameters: parameters::resolve(template, &plan.parameters),
            status: APPLIED.to_owned(),
            reason: None,
            objects: Vec::new(),
        };
        for object in &template.spec.objects {
            match self.apply_object(plan, template, object).await {
                Ok(applied) => record.objects.push(applied),
                Err(error) => {
                    record.status = FAILED.to_owned();
                    record.reason = Some(match &error {
                        Error::Template { message, .. } => message.clone(),
                        other => other.to_string(),
                    });
                    return (record, Some(error));
                }
            }
        }
        record.objects.sort();
        (record, None)
    }

    /// Applies one object of `template` in `plan`'s space (server-side apply, as [`FIELD_MANAGER`], forced: the
    /// template's fields are the platform's), with the parameters filled in and labelled with the template's name.
    ///
    /// # Errors
    /// An unknown or cluster-scoped kind, or kube-apiserver refuses; the message is one line for the tenant.
    pub async fn apply_object(
        &self,
        plan: &Plan,
        template: &SpaceTemplate,
        object: &Value,
    ) -> Result<ObjectReference, Error> {
        let object = render(plan, template, object);
        let template = template.metadata.name.clone().unwrap_or_default();
        let (api_version, kind) = type_of(&object);
        let resource = self
            .resource(&api_version, &kind)
            .await
            .map_err(|message| Error::Template {
                template: template.clone(),
                message,
            })?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(Error::Template {
                template,
                message: format!("a {kind} has no metadata.name"),
            });
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client().clone(), &plan.name, &resource);
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => Ok(ObjectReference {
                api_version,
                kind,
                name,
            }),
            Err(error) => {
                // The whole answer (the server's own permissions, for a refused binding) is for the platform team's
                // log; the tenant is told what was refused and why in one line.
                tracing::warn!(%template, %error, "A template object could not be applied");
                let object = format!("{kind} {name:?}");
                let message = match error {
                    kube::Error::Api(status) => {
                        format!("applying {object} was refused: {} ({})", status.reason, status.code)
                    }
                    _ => format!("applying {object} failed: kube-apiserver did not answer"),
                };
                Err(Error::Template { template, message })
            }
        }
    }

    /// Deletes an object a template made in `space` and no longer holds; one that is gone already is fine.
    ///
    /// # Errors
    /// The kind is unknown, or kube-apiserver refuses.
    pub async fn delete_object(&self, space: &str, object: &ObjectReference) -> Result<(), String> {
        let resource = self.resource(&object.api_version, &object.kind).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client().clone(), space, &resource);
        match api.delete(&object.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(format!(
                "deleting {} {:?} failed: {}",
                object.kind,
                object.name,
                explain::sentence(&error)
            )),
        }
    }

    /// The API resource of a template object's kind in this cluster, or why it cannot be in a template.
    ///
    /// # Errors
    /// The kind is unknown to kube-apiserver, or cluster-scoped.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, String> {
        self.member.resource(api_version, kind).await
    }

    // --- leases ---

    async fn acquire(&self, name: &str) -> Result<Lease, Error> {
        let leases: Api<Lease> = Api::namespaced(self.management().clone(), LEASE_NAMESPACE);
        let deadline = tokio::time::Instant::now() + LEASE_WAIT;
        // 10 ms, doubling to 200 ms, until the deadline: creates of one account are short, so the lease comes soon.
        let mut pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_millis(200))
            .without_max_times()
            .build();
        loop {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_owned()),
                    namespace: Some(LEASE_NAMESPACE.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(LEASE_SECONDS),
                    acquire_time: Some(MicroTime(Timestamp::now())),
                    ..LeaseSpec::default()
                }),
            };
            match leases.create(&PostParams::default(), &lease).await {
                Ok(lease) => return Ok(lease),
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    self.break_if_expired(&leases, name).await;
                }
                Err(error) => return Err(Error::Backend(error)),
            }
            match pauses.next() {
                Some(pause) if tokio::time::Instant::now() < deadline => tokio::time::sleep(pause).await,
                _ => return Err(Error::Busy(name.to_owned())),
            }
        }
    }

    /// Deletes a lease whose holder is past its duration (it crashed), guarded by its resourceVersion.
    async fn break_if_expired(&self, leases: &Api<Lease>, name: &str) {
        let Ok(lease) = leases.get(name).await else { return };
        let spec = lease.spec.clone().unwrap_or_default();
        let since = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
        let duration = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
        let expired = since.is_none_or(|t| Timestamp::now().as_second() - t.as_second() > duration);
        if expired {
            let params = DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    resource_version: lease.metadata.resource_version.clone(),
                    uid: None,
                }),
                ..DeleteParams::default()
            };
            tracing::warn!(lease = %name, holder = ?spec.holder_identity, "Breaking an expired lease");
            let _ = leases.delete(name, &params).await;
        }
    }

    async fn release(&self, lease: Lease) {
        let leases: Api<Lease> = Api::namespaced(self.management().clone(), LEASE_NAMESPACE);
        let name = lease.metadata.name.clone().unwrap_or_default();
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                uid: lease.metadata.uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        if let Err(error) = leases.delete(&name, &params).await {
            tracing::warn!(lease = %name, %error, "Releasing a lease failed; it expires by itself");
        }
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

/// Reads the share of `space` until `ready` says yes (true) or `until` is past (false).
///
/// # Errors
/// When kube-apiserver refuses a read.
pub async fn wait_for_share(
    client: &Client,
    space: &str,
    until: tokio::time::Instant,
    ready: impl Fn(&ResourceQuota) -> bool,
) -> Result<bool, Error> {
    let shares: Api<ResourceQuota> = Api::namespaced(client.clone(), space);
    loop {
        let share = shares.get(SHARE_QUOTA).await.map_err(|e| Error::from_kube(e, space))?;
        if ready(&share) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The owner RoleBinding: the account's subjects to its role, or the creator alone to the default owner role.
#[must_use]
pub fn owner_binding(plan: &Plan) -> RoleBinding {
    let (subjects, role) = match &plan.owner {
        Owner::Account(account) => (account.spec.subjects.clone(), account.owner_role().to_owned()),
        Owner::Creator => (vec![creator_subject(&plan.creator)], DEFAULT_OWNER_ROLE.to_owned()),
    };
    RoleBinding {
        metadata: ObjectMeta {
            name: Some(OWNER_BINDING.to_owned()),
            namespace: Some(plan.name.clone()),
            labels: Some(enforced_label()),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role,
        },
        subjects: Some(subjects),
    }
}

/// The RBAC subject naming a user (ServiceAccounts as ServiceAccount subjects).
#[must_use]
pub fn creator_subject(user: &str) -> Subject {
    match user
        .strip_prefix("system:serviceaccount:")
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, sa)) => Subject {
            kind: "ServiceAccount".to_owned(),
            name: sa.to_owned(),
            namespace: Some(ns.to_owned()),
            api_group: None,
        },
        None => Subject {
            kind: "User".to_owned(),
            name: user.to_owned(),
            namespace: None,
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
        },
    }
}

/// The label that makes an object enforced: owners may read it, never change or delete it (deploy/admission.yaml).
#[must_use]
pub fn enforced_label() -> BTreeMap<String, String> {
    BTreeMap::from([(ENFORCED_LABEL.to_owned(), "true".to_owned())])
}

/// Whether a template object (or any object) carries [`enforced_label`].
#[must_use]
pub fn is_enforced(object: &Value) -> bool {
    object["metadata"]["labels"][ENFORCED_LABEL].as_str() == Some("true")
}

/// A manifest's `apiVersion` and `kind`.
#[must_use]
pub fn type_of(object: &Value) -> (String, String) {
    let field = |name: &str| object[name].as_str().unwrap_or_default().to_owned();
    (field("apiVersion"), field("kind"))
}

/// The values `template` is filled in with in `plan`'s space: its declared parameters (given or defaulted), and
/// `SPACE`, `ACCOUNT` (empty without one) and `CREATOR`, which a declaration cannot override.
#[must_use]
pub fn values(plan: &Plan, template: &SpaceTemplate) -> BTreeMap<String, String> {
    let account = match &plan.owner {
        Owner::Account(account) => account.name(),
        Owner::Creator => "",
    };
    let mut values = parameters::resolve(template, &plan.parameters);
    values.insert("SPACE".to_owned(), plan.name.clone());
    values.insert("ACCOUNT".to_owned(), account.to_owned());
    values.insert("CREATOR".to_owned(), plan.creator.clone());
    values
}

/// One object of `template` as it goes into `plan`'s space: values filled in, the namespace set, and labelled with the
/// template's name (so owners can find what a template made: `-l tenancy.loft.sh/template=NAME`).
#[must_use]
pub fn render(plan: &Plan, template: &SpaceTemplate, object: &Value) -> Value {
    let mut object = object.clone();
    parameters::substitute(&mut object, &values(plan, template));
    object["metadata"]["namespace"] = Value::String(plan.name.clone());
    if !object["metadata"]["labels"].is_object() {
        object["metadata"]["labels"] = Value::Object(serde_json::Map::new());
    }
    object["metadata"]["labels"][TEMPLATE_LABEL] = Value::String(template.metadata.name.clone().unwrap_or_default());
    object
}

/// The template records as the namespace annotation holds them.
#[must_use]
pub fn records_json(records: &[AppliedTemplate]) -> String {
    serde_json::to_string(records).unwrap_or_else(|_| "[]".to_owned())
}

/// The SpaceTemplates of a new space of `owner`: the account's, the default one when it names none, and the default
/// one for a space without an account. A missing default is skipped (an admin removed it); a missing named one is an
/// error, because the account asks for it.
///
/// # Errors
/// The account names a SpaceTemplate that does not exist.
pub fn templates_for(
    owner: &Owner,
    known: &BTreeMap<String, Arc<SpaceTemplate>>,
) -> Result<Vec<Arc<SpaceTemplate>>, Error> {
    let (names, defaulted) = match owner {
        Owner::Account(account) => account.templates(),
        Owner::Creator => (vec![DEFAULT_TEMPLATE.to_owned()], true),
    };
    let mut templates = Vec::new();
    for name in names {
        match known.get(&name) {
            Some(template) => templates.push(template.clone()),
            None if defaulted => {
                tracing::debug!(template = %name, "The default SpaceTemplate does not exist; none applied");
            }
            None => {
                return Err(Error::Template {
                    template: name,
                    message: "no such SpaceTemplate".to_owned(),
                })
            }
        }
    }
    Ok(templates)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(name: &str, account: &str, created: i64) -> Arc<AccountQuota> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "uid": format!("uid-{name}"),
                             "creationTimestamp": Timestamp::from_second(created).expect("a time").to_string()},
                "spec": {"account": account, "quota": {"hard": {"pods": "4", "requests.cpu": "2"}}},
            }))
            .expect("a quota"),
        )
    }

    #[test]
    fn the_oldest_account_quota_of_an_account_is_in_force() {
        let quotas = [
            quota("b", "blue", 100),
            quota("a", "blue", 200),
            quota("c", "blue", 100),
            quota("d", "red", 50),
        ];
        let name = |account| quota_in_force(&quotas, account).and_then(|q| q.metadata.name.clone());
        // Oldest first, then by name.
        assert_eq!(name("blue").as_deref(), Some("b"));
        assert_eq!(name("red").as_deref(), Some("d"));
        assert_eq!(name("green"), None);
    }

    #[test]
    fn a_share_is_owned_by_its_quota_and_enforced_once_its_status_has_every_limit() {
        let share = share_quota(&quota("q", "blue", 100), "dev");
        let owner = &share.metadata.owner_references.as_ref().expect("an owner")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("AccountQuota", "q", "uid-q")
        );
        assert_eq!(owner.api_version, "config.tenancy.loft.sh/v1");
        assert_eq!(share.metadata.labels.as_ref().expect("labels")[SHARE_LABEL], "q");
        assert!(!enforced(&share), "no status yet");
        let mut partly = share.clone();
        partly.status = serde_json::from_value(serde_json::json!({"hard": {"pods": "0"}})).expect("a status");
        assert!(!enforced(&partly), "requests.cpu is not enforced yet");
        let mut whole = share;
        whole.status =
            serde_json::from_value(serde_json::json!({"hard": {"pods": "0", "requests.cpu": "0"}})).expect("a status");
        assert!(enforced(&whole));
    }

    #[test]
    fn objects_are_filled_in_and_labelled_with_their_template() {
        let template: SpaceTemplate = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "base"},
            "spec": {"parameters": [{"name": "team", "default": "none"}, {"name": "SPACE", "default": "x"}]}
        }))
        .expect("a template");
        let plan = Plan {
            name: "dev".to_owned(),
            creator: "alice".to_owned(),
            owner: Owner::Creator,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            templates: Vec::new(),
            parameters: BTreeMap::from([("team".to_owned(), "blue".to_owned())]),
        };
        let object = serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "${SPACE}-cm"},
            "data": {"who": "${CREATOR} of ${team} in ${SPACE} (${ACCOUNT})"},
        });
        assert_eq!(
            render(&plan, &template, &object),
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "dev-cm", "namespace": "dev", "labels": {"tenancy.loft.sh/template": "base"}},
                "data": {"who": "alice of blue in dev ()"},
            })
        );
    }

    #[test]
    fn creators_become_user_or_service_account_subjects() {
        assert_eq!(creator_subject("alice").kind, "User");
        let sa = creator_subject("system:serviceaccount:ci:deployer");
        assert_eq!(
            (sa.kind.as_str(), sa.name.as_str(), sa.namespace.as_deref()),
            ("ServiceAccount", "deployer", Some("ci"))
        );
    }
}
