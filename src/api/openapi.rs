//! OpenAPI documents for `tenancy.loft.sh/v1`: v2 (merged by the aggregator into kube-apiserver's) and v3 (served per
//! group-version and proxied to kubectl as it is). Schemas carry `x-kubernetes-group-version-kind` so `kubectl explain`
//! works; PATCH lists no strategic-merge-patch, so `kubectl apply` sends merge patches; no `fieldValidation` parameter
//! is declared, so kubectl validates client-side.
//!
//! The apimachinery schemas (ObjectMeta, ListMeta, Status, ...) are kube-apiserver's own, refreshed by
//! tests/controlplane/openapi-meta.sh: a v3 document must resolve every `$ref` by itself.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::{space, GROUP, GROUP_VERSION, VERSION};

const META_V2: &str = include_str!("openapi/meta-v2.json");
const META_V3: &str = include_str!("openapi/meta-v3.json");
const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1";
const SPACE: &str = "io.loft.tenancy.v1.Space";
const SPACE_LIST: &str = "io.loft.tenancy.v1.SpaceList";

/// A served document and its ETag (a hash of its bytes; stable for the life of the process).
pub struct Document {
    pub body: Vec<u8>,
    pub etag: String,
}

impl Document {
    #[must_use]
    pub fn new(value: &Value) -> Self {
        Self::of_bytes(serde_json::to_vec(value).unwrap_or_default())
    }

    /// A document of any bytes (the console's files too).
    #[must_use]
    pub fn of_bytes(body: Vec<u8>) -> Self {
        let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        });
        Document {
            body,
            etag: format!("{hash:016X}"),
        }
    }
}

/// The Swagger 2.0 document.
pub fn v2() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| Document::new(&document(Version::V2)))
}

/// The OpenAPI 3 document of `apis/tenancy.loft.sh/v1`.
pub fn v3() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| Document::new(&document(Version::V3)))
}

/// The v3 discovery document: where each group-version's document is, with its hash.
#[must_use]
pub fn v3_root() -> Value {
    json!({"paths": {format!("apis/{GROUP_VERSION}"): {"serverRelativeURL": v3_url()}}})
}

/// The current URL of the v3 document (kube-apiserver caches by this hash).
#[must_use]
pub fn v3_url() -> String {
    format!("/openapi/v3/apis/{GROUP_VERSION}?hash={}", v3().etag)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Version {
    V2,
    V3,
}

impl Version {
    fn reference(self, name: &str) -> Value {
        match self {
            Version::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Version::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }

    /// A `$ref` where a description sits beside it: v3 needs `allOf` for that.
    fn described_reference(self, name: &str, description: &str) -> Value {
        match self {
            Version::V2 => json!({"$ref": format!("#/definitions/{name}"), "description": description}),
            Version::V3 => json!({"allOf": [self.reference(name)], "description": description, "default": {}}),
        }
    }
}

fn gvk(kind: &str) -> Value {
    json!([{"group": GROUP, "version": VERSION, "kind": kind}])
}

fn schemas(version: Version) -> Map<String, Value> {
    let mut schemas: Map<String, Value> =
        serde_json::from_str(if version == Version::V2 { META_V2 } else { META_V3 }).unwrap_or_default();
    let api_version = json!({"description": "APIVersion defines the versioned schema of this representation of an object.", "type": "string"});
    let kind = json!({"description": "Kind is a string value representing the REST resource this object represents.", "type": "string"});
    schemas.insert(
        SPACE.to_owned(),
        json!({
            "description": "Space is a tenant's view of one Namespace: same name, uid and resourceVersion. Labels and annotations are mirrored to the namespace; keys under tenancy.loft.sh/ are managed by the server.",
            "type": "object",
            "properties": {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": version.described_reference(&format!("{META}.ObjectMeta"), "Standard object's metadata: the namespace's."),
                "spec": {
                    "description": "SpaceSpec describes the space.",
                    "type": "object",
                    "properties": {
                        "account": {"description": "The Account that owns the space (read-only: set by the server).", "type": "string"},
                        "cluster": {"description": "The connected cluster the space's namespace is in (the space is then named <cluster>.<namespace>); empty for the management cluster's own. Set at creation; immutable.", "type": "string"},
                        "finalizers": {"description": "Mirror of the namespace's spec.finalizers (read-only).", "type": "array", "items": {"type": "string", "default": ""}},
                        "templateParameters": {"description": "Values of the parameters the space's SpaceTemplates declare (spec.parameters), substituted as ${name}. Checked at creation (required, validation pattern, known names); immutable afterwards.", "type": "object", "additionalProperties": {"type": "string", "default": ""}},
                        "sleep": {
                            "description": "When the space sleeps on its own (unset: its Account's spec.space.sleep). Asleep: Deployments and StatefulSets scaled to 0 and CronJobs suspended, each with its value recorded; a change in the space by anyone but the server wakes it.",
                            "type": "object",
                            "properties": {
                                "afterInactivity": {"description": "Asleep once nobody but the server has changed anything in the space for this long (at least 10s), e.g. 30m or 2h.", "type": "string"},
                                "schedule": {"description": "Asleep at each of these times: cron, five fields (minute hour day-of-month month day-of-week), e.g. 0 20 * * 1-5.", "type": "string"},
                                "wakeSchedule": {"description": "Awake at each of these times (cron, five fields), e.g. 0 7 * * 1-5.", "type": "string"},
                                "timezone": {"description": "The IANA time zone of both schedules (default UTC).", "type": "string"},
                            },
                        },
                    },
                },
                "status": {
                    "description": "SpaceStatus is the observed state of the space.",
                    "type": "object",
                    "properties": {
                        "phase": {"description": "Active or Terminating, from the namespace; Sleeping while an active space sleeps.", "type": "string"},
                        "sleep": {
                            "description": "Whether the space sleeps, since when and why, and its last activity (read-only).",
                            "type": "object",
                            "properties": {
                                "sleeping": {"description": "Whether it sleeps now.", "type": "boolean"},
                                "since": {"description": "Since when it sleeps (RFC 3339, microseconds).", "type": "string", "format": "date-time"},
                                "reason": {"description": "Why it sleeps: Inactivity, Schedule or Requested.", "type": "string"},
                                "lastActivity": {"description": "The last change (or audited request) in the space by anyone but the server, as recorded (at most once a minute while awake).", "type": "string", "format": "date-time"},
                                "lastActivityBy": {"description": "Who made it: a field manager (kubectl, kubectl-client-side-apply, ...) or a user.", "type": "string"},
                            },
                        },
                        "domain": {"description": "The DNS name the space owns, with every name below it (<namespace>.<base domain of its cluster>); unset where its cluster has no base domain.", "type": "string"},
                        "domainIssuer": {"description": "The platform's shared cert-manager ClusterIssuer for names under the space's domain.", "type": "string"},
                        "templates": {
                            "description": "What each SpaceTemplate did in the space (read-only, from the namespace's tenancy.loft.sh/template-status annotation).",
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"description": "The SpaceTemplate.", "type": "string", "default": ""},
                                    "generation": {"description": "The SpaceTemplate's metadata.generation that was applied.", "type": "integer", "format": "int64"},
                                    "parameters": {"description": "The values it was filled in with.", "type": "object", "additionalProperties": {"type": "string", "default": ""}},
                                    "status": {"description": "Applied or Failed.", "type": "string"},
                                    "reason": {"description": "Why it failed.", "type": "string"},
                                    "objects": {
                                        "description": "The objects it made in the space.",
                                        "type": "array",
                                        "items": {"type": "object", "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "name": {"type": "string"}}},
                                    },
                                },
                            },
                            "x-kubernetes-list-type": "atomic",
                        },
                    },
                },
            },
            "x-kubernetes-group-version-kind": gvk(space::KIND),
        }),
    );
    schemas.insert(
        SPACE_LIST.to_owned(),
        json!({
            "description": "SpaceList is a list of the spaces the caller may see.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": api_version,
                "kind": kind,
                "metadata": version.described_reference(&format!("{META}.ListMeta"), "Standard list metadata."),
                "items": {"description": "The spaces.", "type": "array", "items": version.reference(SPACE)},
            },
            "x-kubernetes-group-version-kind": gvk(space::LIST_KIND),
        }),
    );
    schemas
}

/// One operation, in either version's shape.
fn operation(
    version: Version,
    id: &str,
    description: &str,
    action: &str,
    request: Option<(&[&str], &str)>,
    response: &str,
) -> Value {
    let mut op = json!({
        "tags": ["tenancyLoftSh_v1"],
        "description": description,
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": GROUP, "version": VERSION, "kind": space::KIND},
    });
    let json_types = ["application/json", "application/yaml"];
    match version {
        Version::V2 => {
            op["produces"] = json!(json_types);
            op["schemes"] = json!(["https"]);
            op["responses"] = json!({"200": {"description": "OK", "schema": version.reference(response)}, "401": {"description": "Unauthorized"}});
            if let Some((consumes, body)) = request {
                op["consumes"] = json!(consumes);
                op["parameters"] =
                    json!([{"name": "body", "in": "body", "required": true, "schema": version.reference(body)}]);
            }
        }
        Version::V3 => {
            let content: Map<String, Value> = json_types
                .iter()
                .map(|t| ((*t).to_owned(), json!({"schema": version.reference(response)})))
                .collect();
            op["responses"] =
                json!({"200": {"description": "OK", "content": content}, "401": {"description": "Unauthorized"}});
            if let Some((consumes, body)) = request {
                let content: Map<String, Value> = consumes
                    .iter()
                    .map(|t| ((*t).to_owned(), json!({"schema": version.reference(body)})))
                    .collect();
                op["requestBody"] = json!({"content": content, "required": true});
            }
        }
    }
    op
}

fn query(version: Version, name: &str, description: &str, kind: &str) -> Value {
    match version {
        Version::V2 => {
            json!({"name": name, "in": "query", "description": description, "type": kind, "uniqueItems": true})
        }
        Version::V3 => {
            json!({"name": name, "in": "query", "description": description, "schema": {"type": kind, "uniqueItems": true}})
        }
    }
}

fn paths(version: Version) -> Value {
    let base = format!("/apis/{GROUP_VERSION}/spaces");
    let object_types: &[&str] = &["application/json", "application/yaml"];
    let patch_types: &[&str] = &[
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    let status = format!("{META}.Status");
    let patch = format!("{META}.Patch");
    let delete_options = format!("{META}.DeleteOptions");
    let name_param = match version {
        Version::V2 => {
            json!({"name": "name", "in": "path", "required": true, "description": "name of the Space", "type": "string", "uniqueItems": true})
        }
        Version::V3 => {
            json!({"name": "name", "in": "path", "required": true, "description": "name of the Space", "schema": {"type": "string", "uniqueItems": true}})
        }
    };
    let list_params = json!([
        query(
            version,
            "labelSelector",
            "A selector to restrict the list of returned objects by their labels.",
            "string"
        ),
        query(version, "fieldSelector", "A selector on metadata.name.", "string"),
        query(version, "limit", "Maximum number of spaces in one page.", "integer"),
        query(
            version,
            "continue",
            "The continue token of the previous page.",
            "string"
        ),
        query(
            version,
            "resourceVersion",
            "Resource version to list at or watch from.",
            "string"
        ),
        query(
            version,
            "resourceVersionMatch",
            "How resourceVersion applies to a list: Exact or NotOlderThan.",
            "string"
        ),
        query(version, "watch", "Watch for changes instead of listing.", "boolean"),
        query(version, "allowWatchBookmarks", "Send BOOKMARK events.", "boolean"),
        query(
            version,
            "sendInitialEvents",
            "Start a watch with the current state (WatchList).",
            "boolean"
        ),
        query(
            version,
            "timeoutSeconds",
            "Timeout of the list or watch call.",
            "integer"
        ),
    ]);
    let write_params = json!([
        query(
            version,
            "dryRun",
            "When present (All), modifications are not persisted.",
            "string"
        ),
        query(
            version,
            "fieldManager",
            "Name of the actor making the change; required for apply.",
            "string"
        ),
    ]);
    let mut patch_op = operation(
        version,
        "patchTenancyLoftShV1Space",
        "partially update the specified Space",
        "patch",
        Some((patch_types, &patch)),
        SPACE,
    );
    // Declared, so kubectl leaves unknown-field checks to the server and says which field is unknown.
    let mut validated_params = write_params.clone();
    if let Some(params) = validated_params.as_array_mut() {
        params.push(query(
            version,
            "fieldValidation",
            "What to do with fields a Space does not have: Ignore, Warn (the default, a Warning header each) or \
             Strict (400).",
            "string",
        ));
    }
    let mut patch_params = validated_params.clone();
    if let Some(params) = patch_params.as_array_mut() {
        params.push(query(
            version,
            "force",
            "Force an apply, taking ownership of conflicting fields.",
            "boolean",
        ));
    }
    patch_op["parameters"] = patch_params;
    let mut list_op = operation(
        version,
        "listTenancyLoftShV1Space",
        "list the Spaces the caller may see",
        "list",
        None,
        SPACE_LIST,
    );
    list_op["x-kubernetes-group-version-kind"]["kind"] = json!(space::KIND);
    let mut create_op = operation(
        version,
        "createTenancyLoftShV1Space",
        "create a Space (and its namespace)",
        "post",
        Some((object_types, SPACE)),
        SPACE,
    );
    merge_params(&mut create_op, &validated_params);
    let mut replace_op = operation(
        version,
        "replaceTenancyLoftShV1Space",
        "replace the specified Space",
        "put",
        Some((object_types, SPACE)),
        SPACE,
    );
    merge_params(&mut replace_op, &validated_params);
    let mut delete_op = operation(
        version,
        "deleteTenancyLoftShV1Space",
        "delete a Space (and its namespace)",
        "delete",
        Some((object_types, &delete_options)),
        &status,
    );
    merge_params(&mut delete_op, &write_params);
    json!({
        base.clone(): {
            "parameters": list_params,
            "get": list_op,
            "post": create_op,
        },
        format!("{base}/{{name}}"): {
            "parameters": [name_param],
            "get": operation(version, "readTenancyLoftShV1Space", "read the specified Space", "get", None, SPACE),
            "put": replace_op,
            "patch": patch_op,
            "delete": delete_op,
        },
    })
}

/// Adds query parameters after an operation's body parameter (v2) or as its parameters (v3).
fn merge_params(op: &mut Value, params: &Value) {
    let mut all = op["parameters"].as_array().cloned().unwrap_or_default();
    all.extend(params.as_array().cloned().unwrap_or_default());
    op["parameters"] = Value::Array(all);
}

fn document(version: Version) -> Value {
    let info = json!({"title": "tenancy-apiserver", "version": env!("CARGO_PKG_VERSION")});
    match version {
        Version::V2 => json!({
            "swagger": "2.0",
            "info": info,
            "paths": paths(version),
            "definitions": schemas(version),
        }),
        Version::V3 => json!({
            "openapi": "3.0.0",
            "info": info,
            "paths": paths(version),
            "components": {"schemas": schemas(version)},
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key == "$ref" {
                        out.push(v.as_str().unwrap_or_default().to_owned());
                    }
                    refs(v, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves_inside_each_document() {
        for (doc, prefix, section) in [
            (v2(), "#/definitions/", "/definitions"),
            (v3(), "#/components/schemas/", "/components/schemas"),
        ] {
            let value: Value = serde_json::from_slice(&doc.body).expect("json");
            let mut all = Vec::new();
            refs(&value, &mut all);
            assert!(!all.is_empty());
            for reference in all {
                let name = reference.strip_prefix(prefix).unwrap_or_else(|| panic!("{reference}"));
                assert!(
                    value.pointer(section).and_then(|s| s.get(name)).is_some(),
                    "unresolved {reference}"
                );
            }
        }
    }

    #[test]
    fn patch_never_advertises_strategic_merge_patch() {
        for doc in [v2(), v3()] {
            let text = String::from_utf8_lossy(&doc.body);
            assert!(!text.contains("strategic-merge-patch"));
            assert!(text.contains("application/merge-patch+json"));
        }
    }
}
