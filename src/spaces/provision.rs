//! Making a space: its namespace, its owner RoleBinding and its account's templates, in that order, with the rollback
//! beside it. The namespace carries a `tenancy.loft.sh/creating` mark until the last step is done, so a space left
//! half-made by a crash is found and finished by the repair pass (`controllers::reconcile`), never left without its owner binding.
//!
//! An account's space limit is checked and the namespace created while holding a per-account Lease in kube-apiserver
//! (`lease`), so parallel creates — on any number of replicas — never exceed it. A space of an account with an
//! AccountQuota gets its share first (`share`); its templates come last (`templates`). One provisioner serves one
//! cluster (a `clusters::Member`); limits count every cluster's spaces.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::Value;

use super::Error;
use crate::api::account::{quota_in_force, Account, AccountQuota, SpaceTemplate, DEFAULT_OWNER_ROLE};
use crate::api::{ACCOUNT_LABEL, CREATOR_ANNOTATION, ENFORCED_LABEL, TEMPLATE_STATUS_ANNOTATION};
use crate::backend::enforced::Enforced;
use crate::clusters::{Member, Members};
use crate::state::Cache;

mod lease;
mod share;
mod templates;
#[cfg(test)]
mod tests;

use share::SHARE_WAIT;
pub use share::{enforced, share_quota, wait_for_share};
pub use templates::{is_enforced, records_json, render, templates_for, type_of, values};

/// The ResourceQuota holding a space's share of its account's AccountQuota.
pub const SHARE_QUOTA: &str = "account-quota";
pub use crate::api::account::SHARE_LABEL;
/// The RoleBinding that makes a space's owners its admins.
pub const OWNER_BINDING: &str = "tenancy-owner";
/// Marks a namespace whose space is not finished yet.
pub const CREATING_ANNOTATION: &str = "tenancy.loft.sh/creating";
/// Namespace holding the server's Leases.
pub const LEASE_NAMESPACE: &str = "tenancy-system";
/// Milliseconds a create pauses while it holds its account's Lease (test builds only).
#[cfg(feature = "fault-injection")]
pub const PAUSE_HOLDING_LEASE: &str = "TENANCY_FAULT_PAUSE_HOLDING_LEASE_MS";
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

    /// The Accounts as kube-apiserver has them now, not as the cache last saw them: `name` alone when given (one GET),
    /// else all (one LIST). What grants anything on a write is decided on these.
    ///
    /// # Errors
    /// When kube-apiserver does not answer the read.
    pub async fn accounts_now(&self, name: Option<&str>) -> Result<Vec<Arc<Account>>, Error> {
        let accounts: Api<Account> = Api::all(self.management().clone());
        let now = match name {
            Some(name) => accounts
                .get_opt(name)
                .await
                .map_err(Error::Backend)?
                .into_iter()
                .collect(),
            None => {
                accounts
                    .list(&ListParams::default())
                    .await
                    .map_err(Error::Backend)?
                    .items
            }
        };
        Ok(now.into_iter().map(Arc::new).collect())
    }

    /// The account's spaces as kube-apiserver has them now (a consistent read, not the cache).
    async fn count_spaces(&self, account: &str) -> Result<i64, Error> {
        let selector = ListParams::default().labels(&format!("{ACCOUNT_LABEL}={account}"));
        fn live<'a>(namespaces: impl IntoIterator<Item = &'a Namespace>) -> usize {
            namespaces
                .into_iter()
                .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                .count()
        }
        // Every cluster is asked, all at once (under the Lease, so exact); one that does not answer counts with what the
        // state last saw of it.
        let counts = self.members.holding_spaces().into_iter().map(|member| {
            let selector = &selector;
            async move {
                let asked = tokio::time::timeout(
                    COUNT_TIMEOUT,
                    Api::<Namespace>::all(member.client().clone()).list(selector),
                )
                .await;
                match asked {
                    Ok(Ok(list)) => live(&list.items),
                    _ => live(
                        self.cache
                            .read()
                            .cluster_namespaces(member.cluster())
                            .map(AsRef::as_ref)
                            .filter(|ns| crate::api::label(*ns, ACCOUNT_LABEL) == Some(account)),
                    ),
                }
            }
        });
        let count: usize = futures::future::join_all(counts).await.into_iter().sum();
        Ok(i64::try_from(count).unwrap_or(i64::MAX))
    }

    /// The owner binding and the templates, then the creating mark removed; the finished namespace. Idempotent: the
    /// repair pass calls it on a half-made space.
    ///
    /// # Errors
    /// When a step fails; the caller rolls back.
    pub async fn finish(&self, plan: &Plan) -> Result<Namespace, Error> {
        // The quota share first: once the owners have rights in the space, everything they make counts. In whichever
        // cluster the space is: an AccountQuota covers its account's spaces in every cluster.
        if let Owner::Account(account) = &plan.owner {
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
                if wait_for_share(self.client(), &plan.name, until, enforced)
                    .await?
                    .is_none()
                {
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

    /// Deletes a half-made space's namespace (its objects go with it).
    pub async fn roll_back(&self, name: &str) {
        if let Err(error) = Api::<Namespace>::all(self.client().clone())
            .delete(name, &DeleteParams::default())
            .await
        {
            tracing::error!(space = %name, %error, "Rolling back a half-made space failed; the repair pass will retry");
        }
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
