//! How `kubectl get spaces` prints: the Table columns and rows of spaces.

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use crate::api::table::{age, ColumnDefinition, IncludeObject, PartialObjectMetadata, TableRow};
use crate::api::{Space, CREATOR_ANNOTATION, SHARED_LABEL};

const fn column(
    name: &'static str,
    type_: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i32,
) -> ColumnDefinition {
    ColumnDefinition {
        name,
        type_,
        format,
        description,
        priority,
    }
}

/// NAME, ACCOUNT, CLUSTER, PHASE, AGE; with `-o wide` also CREATOR, SHARED and DOMAIN.
#[must_use]
pub fn columns() -> Vec<ColumnDefinition> {
    vec![
        column("Name", "string", "name", "Name of the space (and of its namespace).", 0),
        column("Account", "string", "", "The Account that owns the space.", 0),
        column(
            "Cluster",
            "string",
            "",
            "The connected cluster the space is in; empty for this cluster.",
            0,
        ),
        column(
            "Phase",
            "string",
            "",
            "Active or Terminating; Unknown while its cluster does not answer.",
            0,
        ),
        column("Age", "string", "", "Time since the namespace was created.", 0),
        column("Creator", "string", "", "Who created the space through this server.", 1),
        column(
            "Shared",
            "boolean",
            "",
            "Whether every tenant may read the space's services.",
            1,
        ),
        column(
            "Domain",
            "string",
            "",
            "The DNS name the space owns, and every name below it; empty where its cluster has no base domain.",
            1,
        ),
    ]
}

/// One row per space, carrying the object `include` asks for in `meta.k8s.io/<version>` shapes.
#[must_use]
pub fn rows(spaces: &[Space], include: IncludeObject, version: &str, now: Timestamp) -> Vec<TableRow> {
    spaces
        .iter()
        .map(|space| {
            let annotation = |key| {
                space
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(key))
                    .cloned()
                    .unwrap_or_default()
            };
            let shared = space
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SHARED_LABEL))
                .is_some_and(|v| v == "true");
            let cells = vec![
                json!(space.name()),
                json!(space.spec.account.clone().unwrap_or_default()),
                json!(space.spec.cluster.clone().unwrap_or_default()),
                json!(space.status.phase.clone().unwrap_or_default()),
                json!(age(space.metadata.creation_timestamp.as_ref().map(|t| t.0), now)),
                json!(annotation(CREATOR_ANNOTATION)),
                json!(shared),
                json!(space.status.domain.clone().unwrap_or_default()),
            ];
            let object = match include {
                IncludeObject::None => None,
                IncludeObject::Metadata => {
                    serde_json::to_value(PartialObjectMetadata::new(version, space.metadata.clone())).ok()
                }
                IncludeObject::Object => serde_json::to_value(space).ok(),
            };
            TableRow { cells, object }
        })
        .collect::<Vec<_>>()
}
