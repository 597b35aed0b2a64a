//! Content negotiation: which representation an `Accept` header asks for. JSON is always possible, so JSON or `*/*`
//! anywhere in the list never ends in 406.

use crate::api::table::{IncludeObject, META_GROUP};

/// The representations this server produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    /// `meta.k8s.io` Table in the given version (`v1` or `v1beta1`).
    Table(String),
    /// `meta.k8s.io` PartialObjectMetadata (for a single object or a watch event) in the given version.
    PartialObjectMetadata(String),
    /// `meta.k8s.io` PartialObjectMetadataList in the given version.
    PartialObjectMetadataList(String),
    /// `apidiscovery.k8s.io/v2` aggregated discovery (only for `/apis`).
    DiscoveryV2,
}

/// What the response will be: shapes that do not fit the target are not acceptable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Object,
    List,
    Watch,
    Discovery,
}

/// Media types offered in a 406, as kube-apiserver lists its own.
pub const ACCEPTED: &str = "application/json, application/json;as=Table;v=v1;g=meta.k8s.io, \
application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";

struct MediaRange<'a> {
    essence: String,
    params: Vec<(String, &'a str)>,
    quality: f32,
}

fn parse(accept: &str) -> Vec<MediaRange<'_>> {
    let mut ranges: Vec<MediaRange<'_>> = accept
        .split(',')
        .filter_map(|range| {
            let mut parts = range.split(';');
            let essence = parts.next()?.trim().to_ascii_lowercase();
            if essence.is_empty() {
                return None;
            }
            let mut quality = 1.0;
            let mut params = Vec::new();
            for param in parts {
                let Some((key, value)) = param.split_once('=') else {
                    continue;
                };
                let key = key.trim().to_ascii_lowercase();
                let value = value.trim().trim_matches('"');
                if key == "q" {
                    quality = value.parse().unwrap_or(0.0);
                } else {
                    params.push((key, value));
                }
            }
            Some(MediaRange {
                essence,
                params,
                quality,
            })
        })
        .collect();
    // Stable: equal qualities keep the client's order.
    ranges.sort_by(|a, b| b.quality.total_cmp(&a.quality));
    ranges
}

/// The first acceptable representation for `target`, or `None` (406).
#[must_use]
pub fn negotiate(accept: Option<&str>, target: Target) -> Option<Output> {
    let accept = accept.map(str::trim).filter(|a| !a.is_empty());
    let Some(accept) = accept else {
        return Some(Output::Json);
    };
    parse(accept).into_iter().filter(|r| r.quality > 0.0).find_map(|range| {
        if !matches!(range.essence.as_str(), "application/json" | "application/*" | "*/*") {
            return None;
        }
        let param = |name: &str| range.params.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let Some(as_kind) = param("as") else {
            return Some(Output::Json);
        };
        let group = param("g").unwrap_or_default();
        let version = param("v").unwrap_or_default();
        if target == Target::Discovery {
            return (as_kind == "APIGroupDiscoveryList" && group == "apidiscovery.k8s.io" && version == "v2")
                .then_some(Output::DiscoveryV2);
        }
        if group != META_GROUP || !matches!(version, "v1" | "v1beta1") {
            return None;
        }
        let version = version.to_owned();
        match (as_kind, target) {
            ("Table", Target::Object | Target::List | Target::Watch) => Some(Output::Table(version)),
            ("PartialObjectMetadata", Target::Object | Target::Watch) => Some(Output::PartialObjectMetadata(version)),
            ("PartialObjectMetadataList", Target::List) => Some(Output::PartialObjectMetadataList(version)),
            _ => None,
        }
    })
}

/// `includeObject`: absent means Metadata.
#[must_use]
pub fn include_object(value: Option<&str>) -> Option<IncludeObject> {
    match value {
        None | Some("" | "Metadata") => Some(IncludeObject::Metadata),
        Some("None") => Some(IncludeObject::None),
        Some("Object") => Some(IncludeObject::Object),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECTL_GET: &str =
        "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";

    #[test]
    fn kubectl_get_gets_a_table() {
        assert_eq!(
            negotiate(Some(KUBECTL_GET), Target::List),
            Some(Output::Table("v1".into()))
        );
        assert_eq!(
            negotiate(Some(KUBECTL_GET), Target::Object),
            Some(Output::Table("v1".into()))
        );
    }

    #[test]
    fn parameters_in_any_order_and_case() {
        let accept = "application/json; g=meta.k8s.io; v=v1beta1; as=Table";
        assert_eq!(
            negotiate(Some(accept), Target::List),
            Some(Output::Table("v1beta1".into()))
        );
    }

    #[test]
    fn protobuf_first_falls_back_to_json() {
        let accept = "application/vnd.kubernetes.protobuf,application/json";
        assert_eq!(negotiate(Some(accept), Target::List), Some(Output::Json));
        assert_eq!(negotiate(Some("*/*"), Target::Object), Some(Output::Json));
        assert_eq!(negotiate(None, Target::Object), Some(Output::Json));
    }

    #[test]
    fn metadata_client_gets_partial_object_metadata() {
        let accept = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json";
        assert_eq!(
            negotiate(Some(accept), Target::List),
            Some(Output::PartialObjectMetadataList("v1".into()))
        );
        let accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(
            negotiate(Some(accept), Target::Object),
            Some(Output::PartialObjectMetadata("v1".into()))
        );
    }

    #[test]
    fn singular_metadata_on_a_list_is_not_acceptable() {
        let accept = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(negotiate(Some(accept), Target::List), None);
        assert_eq!(negotiate(Some("application/yaml"), Target::List), None);
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf"), Target::List),
            None
        );
    }

    #[test]
    fn discovery_v2_only_when_asked() {
        let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(v2), Target::Discovery), Some(Output::DiscoveryV2));
        let v2beta1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(negotiate(Some(v2beta1), Target::Discovery), Some(Output::Json));
    }

    #[test]
    fn zero_quality_is_refused() {
        assert_eq!(negotiate(Some("application/json;q=0"), Target::List), None);
    }
}
