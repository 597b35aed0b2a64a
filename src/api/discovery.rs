//! Discovery documents: the legacy APIGroup/APIResourceList forms and aggregated discovery v2.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    APIGroup, APIGroupList, APIResource, APIResourceList, GroupVersionForDiscovery, ListMeta, ObjectMeta,
};
use kube::core::discovery::v2::{
    APIGroupDiscovery, APIGroupDiscoveryList, APIResourceDiscovery, APISubresourceDiscovery, APIVersionDiscovery,
    GroupVersionKind,
};
use serde_json::{json, Value};

use super::{space, GROUP, GROUP_VERSION, VERSION};

/// The verbs `spaces` serves. Only verbs that work are advertised: the garbage collector and kubectl act on them.
pub const SPACE_VERBS: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
/// The read-only accounts view.
pub const ACCOUNT_VERBS: &[&str] = &["get", "list", "watch"];
pub const SPACE_SHORT_NAMES: &[&str] = &["sp"];
/// A space's subresources (sleep mode's actions): each takes `create` and answers the Space.
pub const SPACE_SUBRESOURCES: &[&str] = &["sleep", "wake"];
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
        resources: vec![APIResource {
            name: space::RESOURCE.to_owned(),
            singular_name: "space".to_owned(),
            namespaced: false,
            kind: space::KIND.to_owned(),
            verbs: strings(SPACE_VERBS),
            short_names: Some(strings(SPACE_SHORT_NAMES)),
            categories: Some(strings(CATEGORIES)),
            ..APIResource::default()
        }]
        .into_iter()
        .chain(SPACE_SUBRESOURCES.iter().map(|subresource| APIResource {
            name: format!("{}/{subresource}", space::RESOURCE),
            namespaced: false,
            kind: space::KIND.to_owned(),
            verbs: strings(&["create"]),
            ..APIResource::default()
        }))
        .chain([APIResource {
            name: "accounts".to_owned(),
            singular_name: "account".to_owned(),
            namespaced: false,
            kind: "Account".to_owned(),
            verbs: strings(ACCOUNT_VERBS),
            categories: Some(strings(CATEGORIES)),
            ..APIResource::default()
        }])
        .collect(),
    }
}

/// `apidiscovery.k8s.io/v2` APIGroupDiscoveryList for `/apis`, from kube-core's types (which leave `kind` and
/// `apiVersion` to the caller).
#[must_use]
pub fn aggregated_v2() -> Value {
    let resource =
        |resource: &str, singular: &str, kind: &str, verbs: &[&str], short_names: &[&str]| APIResourceDiscovery {
            resource: Some(resource.to_owned()),
            response_kind: Some(GroupVersionKind {
                group: Some(GROUP.to_owned()),
                version: Some(VERSION.to_owned()),
                kind: Some(kind.to_owned()),
            }),
            scope: Some("Cluster".to_owned()),
            singular_resource: Some(singular.to_owned()),
            verbs: strings(verbs),
            short_names: strings(short_names),
            categories: strings(CATEGORIES),
            subresources: Vec::new(),
        };
    let list = APIGroupDiscoveryList {
        metadata: Some(ListMeta::default()),
        items: vec![APIGroupDiscovery {
            metadata: Some(ObjectMeta {
                name: Some(GROUP.to_owned()),
                ..ObjectMeta::default()
            }),
            versions: vec![APIVersionDiscovery {
                version: Some(VERSION.to_owned()),
                freshness: Some("Current".to_owned()),
                resources: vec![
                    APIResourceDiscovery {
                        subresources: SPACE_SUBRESOURCES
                            .iter()
                            .map(|subresource| APISubresourceDiscovery {
                                subresource: Some((*subresource).to_owned()),
                                response_kind: Some(GroupVersionKind {
                                    group: Some(GROUP.to_owned()),
                                    version: Some(VERSION.to_owned()),
                                    kind: Some(space::KIND.to_owned()),
                                }),
                                verbs: strings(&["create"]),
                                accepted_types: Vec::new(),
                            })
                            .collect(),
                        ..resource(space::RESOURCE, "space", space::KIND, SPACE_VERBS, SPACE_SHORT_NAMES)
                    },
                    resource("accounts", "account", "Account", ACCOUNT_VERBS, &[]),
                ],
            }],
        }],
    };
    let mut document = serde_json::to_value(list).unwrap_or_default();
    document["kind"] = json!("APIGroupDiscoveryList");
    document["apiVersion"] = json!("apidiscovery.k8s.io/v2");
    document
}
