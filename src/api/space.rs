//! `Space`: the tenant's view of one Namespace (same name, uid and resourceVersion).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use serde::{Deserialize, Serialize};

use crate::domains::{SHOWN_DOMAIN, SHOWN_ISSUER};
use crate::sleep::{SleepSettings, SleepStatus, SETTINGS_ANNOTATION, STATUS_ANNOTATION};

use super::{ACCOUNT_LABEL, GROUP_VERSION, TEMPLATE_PARAMETERS_ANNOTATION, TEMPLATE_STATUS_ANNOTATION};

/// Kind of a single space.
pub const KIND: &str = "Space";
/// Kind of a list of spaces.
pub const LIST_KIND: &str = "SpaceList";
/// Plural resource name, as in URLs.
pub const RESOURCE: &str = "spaces";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Space {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: SpaceSpec,
    #[serde(default)]
    pub status: SpaceStatus,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceSpec {
    /// The owning Account, mirrored from the namespace's `tenancy.loft.sh/account` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The connected cluster the space's namespace is in (its name is then `<cluster>.<namespace>`); none for this
    /// cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Mirror of the namespace's `spec.finalizers` (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Values of the parameters its SpaceTemplates declare, given at creation (immutable afterwards); mirrored from
    /// the namespace's `tenancy.loft.sh/template-parameters` annotation.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_parameters: BTreeMap<String, String>,
    /// When the space sleeps on its own (unset: its Account's `spec.space.sleep`); mirrored from the namespace's
    /// `tenancy.loft.sh/sleep` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepSettings>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceStatus {
    /// `Active` or `Terminating`, from the namespace; `Sleeping` for an active namespace whose space sleeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Whether it sleeps, since when and why, and its last activity (`tenancy.loft.sh/sleep-status`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep: Option<SleepStatus>,
    /// What each SpaceTemplate did in the space, from the namespace's `tenancy.loft.sh/template-status` annotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub templates: Vec<AppliedTemplate>,
    /// The DNS name the space owns, with every name below it (`<namespace>.<base>`), where its cluster has a base
    /// domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The shared ClusterIssuer its certificates may come from (`kubectl space expose` names it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_issuer: Option<String>,
}

/// The record of one SpaceTemplate in one space.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedTemplate {
    /// The SpaceTemplate's name.
    pub name: String,
    /// The SpaceTemplate's `metadata.generation` that was applied (or tried).
    #[serde(default)]
    pub generation: i64,
    /// The parameters it was filled in with (given or defaulted).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, String>,
    /// `Applied` or `Failed`.
    #[serde(default)]
    pub status: String,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The objects it made, so that a newer version that drops one can remove it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectReference>,
}

/// The phase of a sleeping space.
pub const SLEEPING: &str = "Sleeping";
/// Status of a template that was applied whole.
pub const APPLIED: &str = "Applied";
/// Status of a template that could not be applied; `reason` says why.
pub const FAILED: &str = "Failed";

/// One object of a template, as applied in a space.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceList {
    pub api_version: String,
    pub kind: String,
    pub metadata: ListMeta,
    pub items: Vec<Space>,
}

// === impl Space ===

impl Space {
    /// The space that shows `ns`. Managed fields stay on the namespace: they describe the namespace's fields.
    #[must_use]
    pub fn from_namespace(ns: &Namespace) -> Self {
        // Field by field: managedFields describe the namespace's fields and are most of the metadata's size.
        let m = &ns.metadata;
        // The state's copy carries the space's domain as annotations of its own; they are status, not the
        // namespace's.
        let mut annotations = m.annotations.clone();
        let mut shown = |key: &str| {
            let value = annotations.as_mut().and_then(|a| a.remove(key));
            if value.is_some() && annotations.as_ref().is_some_and(BTreeMap::is_empty) {
                annotations = None;
            }
            value
        };
        let (domain, domain_issuer) = (shown(SHOWN_DOMAIN), shown(SHOWN_ISSUER));
        let metadata = ObjectMeta {
            annotations,
            creation_timestamp: m.creation_timestamp.clone(),
            deletion_grace_period_seconds: m.deletion_grace_period_seconds,
            deletion_timestamp: m.deletion_timestamp.clone(),
            finalizers: m.finalizers.clone(),
            generate_name: m.generate_name.clone(),
            generation: m.generation,
            labels: m.labels.clone(),
            managed_fields: None,
            name: m.name.clone(),
            namespace: m.namespace.clone(),
            owner_references: m.owner_references.clone(),
            resource_version: m.resource_version.clone(),
            self_link: m.self_link.clone(),
            uid: m.uid.clone(),
        };
        let account = metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(ACCOUNT_LABEL))
            .cloned();
        let finalizers = ns
            .spec
            .as_ref()
            .and_then(|spec| spec.finalizers.clone())
            .unwrap_or_default();
        let sleep: Option<SleepStatus> = annotation_json(ns, STATUS_ANNOTATION);
        let phase = match ns.status.as_ref().and_then(|status| status.phase.clone()) {
            Some(phase) if phase == "Active" && sleep.as_ref().is_some_and(|s| s.sleeping) => Some(SLEEPING.to_owned()),
            phase => phase,
        };
        let cluster = metadata
            .name
            .as_deref()
            .and_then(crate::access::view::connected_part)
            .map(|(cluster, _)| cluster.to_owned());
        Space {
            api_version: GROUP_VERSION.to_owned(),
            kind: KIND.to_owned(),
            spec: SpaceSpec {
                account,
                cluster,
                finalizers,
                template_parameters: template_parameters(ns),
                sleep: annotation_json(ns, SETTINGS_ANNOTATION),
            },
            status: SpaceStatus {
                phase,
                sleep,
                templates: applied_templates(ns),
                domain,
                domain_issuer,
            },
            metadata,
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
}

/// The template parameters recorded on `ns` (none when the annotation is absent or not a JSON map of strings).
#[must_use]
pub fn template_parameters(ns: &Namespace) -> BTreeMap<String, String> {
    annotation_json(ns, TEMPLATE_PARAMETERS_ANNOTATION).unwrap_or_default()
}

/// The template records on `ns` (none when the annotation is absent or unreadable).
#[must_use]
pub fn applied_templates(ns: &Namespace) -> Vec<AppliedTemplate> {
    annotation_json(ns, TEMPLATE_STATUS_ANNOTATION).unwrap_or_default()
}

fn annotation_json<T: serde::de::DeserializeOwned>(ns: &Namespace, key: &str) -> Option<T> {
    let text = ns.metadata.annotations.as_ref()?.get(key)?;
    serde_json::from_str(text).ok()
}

// === impl SpaceList ===

impl SpaceList {
    #[must_use]
    pub fn new(items: Vec<Space>, metadata: ListMeta) -> Self {
        SpaceList {
            api_version: GROUP_VERSION.to_owned(),
            kind: LIST_KIND.to_owned(),
            metadata,
            items,
        }
    }
}
