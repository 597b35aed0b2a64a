//! Discovery documents: the legacy APIGroup/APIResourceList forms and aggregated discovery v2.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery,
};
use serde_json::{json, Value};

use super::{space, GROUP, GROUP_VERSION, VERSION};

/// The verbs `spaces` serves. Only verbs that work are advertised: the garbage collector and kubectl act on them.
pub const SPACE_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// The read-only accounts view.
pub const ACCOUNT_VERBS: &[&str] = &["get", "list", "watch"];
pub const SPACE_SHORT_NAMES: &[&str] = &["sp"];
pub const CATEGORIES: &[&str] = &["tenancy"];

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn group_version() -> GroupVersionForDiscovery {
    GroupVersionForDiscovery {
        group_version: GROUP_VERSION.to_owned(),
        version: VERSION.to_owned(),
    }
}

#[must_use]
pub fn api_group() -> APIGroup {
    APIGroup {
        name: GROUP.to_owned(),
        versions: vec![group_version()],
        preferred_version: Some(group_version()),
        server_address_by_client_cidrs: None,
    }
}

#[must_use]
pub fn api_group_list() -> APIGroupList {
    APIGroupList {
        groups: vec![api_group()],
    }
}

#[must_use]
pub fn api_resource_list() -> APIResourceList {
    APIResourceList {
        group_version: GROUP_VERSION.to_owned(),
        resources: vec![
            APIResource {
                name: space::RESOURCE.to_owned(),
                singular_name: "space".to_owned(),
                namespaced: false,
                kind: space::KIND.to_owned(),
                verbs: strings(SPACE_VERBS),
                short_names: Some(strings(SPACE_SHORT_NAMES)),
                categories: Some(strings(CATEGORIES)),
                ..APIResource::default()
            },
            APIResource {
                name: "accounts".to_owned(),
                singular_name: "account".to_owned(),
                namespaced: false,
                kind: "Account".to_owned(),
                verbs: strings(ACCOUNT_VERBS),
                categories: Some(strings(CATEGORIES)),
                ..APIResource::default()
            },
        ],
    }
}

/// `apidiscovery.k8s.io/v2` APIGroupDiscoveryList for `/apis` (k8s-openapi has no types for it).
#[must_use]
pub fn aggregated_v2() -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [{
            "metadata": {"name": GROUP},
            "versions": [{
                "version": VERSION,
                "freshness": "Current",
                "resources": [{
                    "resource": space::RESOURCE,
                    "responseKind": {"group": GROUP, "version": VERSION, "kind": space::KIND},
                    "scope": "Cluster",
                    "singularResource": "space",
                    "verbs": SPACE_VERBS,
                    "shortNames": SPACE_SHORT_NAMES,
                    "categories": CATEGORIES,
                }, {
                    "resource": "accounts",
                    "responseKind": {"group": GROUP, "version": VERSION, "kind": "Account"},
                    "scope": "Cluster",
                    "singularResource": "account",
                    "verbs": ACCOUNT_VERBS,
                    "categories": CATEGORIES,
                }],
            }],
        }],
    })
}
