//! The stored configuration (`config.tenancy.loft.sh/v1` CRDs shipped in deploy/): Accounts, SpaceTemplates,
//! AccountQuotas and connected Clusters, and the read-only `tenancy.loft.sh/v1` Account view of Accounts.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::api::rbac::v1::Subject;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::core::ClusterResourceScope;
use serde::{Deserialize, Serialize};

/// Group of the stored CRDs.
pub const CONFIG_GROUP: &str = "config.tenancy.loft.sh";
/// The owner role when an Account names none.
pub const DEFAULT_OWNER_ROLE: &str = "tenancy-space-admin";
/// Finalizer the server keeps on Accounts so that their deletion policy is carried out even if it was down.
pub const ACCOUNT_FINALIZER: &str = "tenancy.loft.sh/spaces";
/// The SpaceTemplate applied to new spaces whose Account names none, and to spaces without an account: secure by
/// default (deploy/ ships it with a quota and network policies that keep accounts apart).
pub const DEFAULT_TEMPLATE: &str = "default";
/// Names the AccountQuota a space's share (its ResourceQuota `account-quota`) belongs to.
pub const SHARE_LABEL: &str = "tenancy.loft.sh/account-quota";
/// The AccountQuota status condition saying whether the quota is the one in force for its account.
pub const IN_FORCE: &str = "InForce";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AccountSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSpec {
    #[serde(default)]
    pub subjects: Vec<Subject>,
    #[serde(default)]
    pub space: AccountSpaces,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSpaces {
    /// Most spaces the account may own, in all clusters together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// The connected clusters its members may create spaces in, besides this one; unset: every connected cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_role: Option<String>,
    /// Unset: [`DEFAULT_TEMPLATE`]; an explicit list, even an empty one, is used as it is (`[]` opts out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub templates: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Box<ForcedMetadata>>,
    /// `true`: the account's spaces follow their templates when those change (objects created, updated and removed);
    /// unset or `false`: templates are applied once, at creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<bool>,
    /// Extra DNS suffixes every space of the account owns besides its own `<namespace>.<base>` (set by admins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<Vec<String>>,
    /// Sleep settings of its spaces that have none of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<Box<crate::sleep::SleepSettings>>,
    /// Whether its members may create spaces in the management cluster (a bare name): `false` on a trunk-only install
    /// (`--local-spaces=false`), where every space is `<cluster>.<namespace>`. Shown in the `tenancy.loft.sh` view
    /// only (never stored on the Account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    /// The parameters its templates declare, so its members know what a new space may be given: shown in the
    /// `tenancy.loft.sh` view only (never stored on the Account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Vec<AccountParameter>>,
}

/// A parameter one of an account's SpaceTemplates declares, as the account's view shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountParameter {
    /// The SpaceTemplate that declares it.
    pub template: String,
    #[serde(flatten)]
    pub parameter: TemplateParameter,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ForcedMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountStatus {
    #[serde(default)]
    pub spaces: Vec<String>,
    #[serde(default)]
    pub space_count: i64,
    /// The account's AccountQuota totals, shown in the `tenancy.loft.sh` view only (never stored on the Account).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Usage>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceTemplate {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SpaceTemplateSpec,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpaceTemplateSpec {
    /// Parameters the objects use as `${name}`, given per space in its `spec.templateParameters`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<TemplateParameter>,
    #[serde(default)]
    pub objects: Vec<serde_json::Value>,
}

/// What an account may use across all its spaces (kiosk's shape): enforced by a share of it in each space, a
/// ResourceQuota kube-apiserver itself enforces (see `controllers/quota`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountQuota {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: AccountQuotaSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<AccountQuotaStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountQuotaSpec {
    /// The Account's name.
    #[serde(default)]
    pub account: String,
    #[serde(default)]
    pub quota: Hard,
}

/// A ResourceQuota's `hard`: resource name to quantity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hard {
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
}

/// Totals, and each space's share: `hard` is what the space's ResourceQuota may hold at most (the ledger the shares
/// are moved by: their sum never exceeds the account's `hard`), `used` what kube-apiserver counts in it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountQuotaStatus {
    #[serde(default)]
    pub total: Usage,
    #[serde(default)]
    pub spaces: Vec<SpaceShare>,
    /// [`IN_FORCE`]: True for the quota that covers its account, False (naming the one that does) for any other.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// The AccountQuota in force for `account` among `quotas`: the oldest (then the first by name), so every replica picks
/// the same one and a newer quota never takes the account from an older one while it exists.
pub fn quota_in_force<'a>(
    quotas: impl IntoIterator<Item = &'a std::sync::Arc<AccountQuota>>,
    account: &str,
) -> Option<&'a std::sync::Arc<AccountQuota>> {
    quotas
        .into_iter()
        .filter(|q| q.spec.account == account)
        .min_by_key(|q| {
            (
                q.metadata.creation_timestamp.as_ref().map(|t| t.0),
                q.metadata.name.clone(),
            )
        })
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub used: BTreeMap<String, Quantity>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SpaceShare {
    pub name: String,
    #[serde(default)]
    pub hard: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub used: BTreeMap<String, Quantity>,
}

/// One declared parameter of a SpaceTemplate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TemplateParameter {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The value when the space gives none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// The value (given or defaulted) may not be empty.
    #[serde(default)]
    pub required: bool,
    /// A regular expression a given value must match in full.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
}

/// A connected cluster: where the server finds its credentials there (a kubeconfig in a Secret in tenancy-system),
/// and how that cluster is doing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cluster {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: ClusterSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    #[serde(default)]
    pub config: ClusterConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The base domain of the cluster's spaces (`serve --space-domain` for the management cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_domain: Option<String>,
    /// The shared ClusterIssuer in that cluster (`serve --space-issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_issuer: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    #[serde(default)]
    pub secret_ref: SecretRef,
}

/// A key of a Secret in tenancy-system.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SecretRef {
    #[serde(default)]
    pub name: String,
    /// Default `kubeconfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

macro_rules! config_resource {
    ($type:ty, $kind:literal, $plural:literal) => {
        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = ClusterResourceScope;

            fn kind((): &()) -> Cow<'_, str> {
                Cow::Borrowed($kind)
            }
            fn group((): &()) -> Cow<'_, str> {
                Cow::Borrowed(CONFIG_GROUP)
            }
            fn version((): &()) -> Cow<'_, str> {
                Cow::Borrowed("v1")
            }
            fn api_version((): &()) -> Cow<'_, str> {
                Cow::Borrowed("config.tenancy.loft.sh/v1")
            }
            fn plural((): &()) -> Cow<'_, str> {
                Cow::Borrowed($plural)
            }
            fn meta(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut ObjectMeta {
                &mut self.metadata
            }
        }
    };
}

config_resource!(Account, "Account", "accounts");
config_resource!(SpaceTemplate, "SpaceTemplate", "spacetemplates");
config_resource!(AccountQuota, "AccountQuota", "accountquotas");
config_resource!(Cluster, "Cluster", "clusters");

// === impl Account ===

impl Account {
    #[must_use]
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }

    /// The role owners get in the account's spaces.
    #[must_use]
    pub fn owner_role(&self) -> &str {
        self.spec
            .space
            .cluster_role
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_OWNER_ROLE)
    }

    /// The SpaceTemplates of the account's new spaces, and whether they are the default rather than named.
    #[must_use]
    pub fn templates(&self) -> (Vec<String>, bool) {
        match &self.spec.space.templates {
            Some(named) => (named.clone(), false),
            None => (vec![DEFAULT_TEMPLATE.to_owned()], true),
        }
    }

    /// Whether the account's spaces follow changes of their templates (`spec.space.sync`).
    #[must_use]
    pub fn syncs_templates(&self) -> bool {
        self.spec.space.sync == Some(true)
    }

    /// Whether the account's spaces are deleted with it.
    #[must_use]
    pub fn deletes_spaces(&self) -> bool {
        self.spec.deletion_policy.as_deref() == Some("Delete")
    }
}
