//! `Space`: the tenant's view of one Namespace (same name, uid and resourceVersion).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use serde::{Deserialize, Serialize};

use super::{ACCOUNT_LABEL, GROUP_VERSION};

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
    /// Mirror of the namespace's `spec.finalizers` (read-only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpaceStatus {
    /// `Active` or `Terminating`, from the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
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
        let metadata = ObjectMeta {
            annotations: m.annotations.clone(),
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
        let phase = ns.status.as_ref().and_then(|status| status.phase.clone());
        Space {
            api_version: GROUP_VERSION.to_owned(),
            kind: KIND.to_owned(),
            metadata,
            spec: SpaceSpec { account, finalizers },
            status: SpaceStatus { phase },
        }
    }

    #[must_use]
    pub fn name(&self) -> &str {
        self.metadata.name.as_deref().unwrap_or_default()
    }
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
