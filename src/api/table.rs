//! `meta.k8s.io` Table and PartialObjectMetadata: what `kubectl get` and metadata clients ask for.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde::Serialize;

/// Group of Table and PartialObjectMetadata.
pub const META_GROUP: &str = "meta.k8s.io";

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    pub api_version: String,
    pub kind: &'static str,
    pub metadata: ListMeta,
    /// Omitted on all but the first event of a table watch.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub column_definitions: Vec<ColumnDefinition>,
    pub rows: Vec<TableRow>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnDefinition {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub type_: &'static str,
    pub format: &'static str,
    pub description: &'static str,
    pub priority: i32,
}

#[derive(Clone, Debug, Serialize)]
pub struct TableRow {
    pub cells: Vec<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
}

/// What a Table row carries besides its cells (`includeObject`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    #[default]
    Metadata,
    Object,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialObjectMetadata {
    pub api_version: String,
    pub kind: &'static str,
    pub metadata: ObjectMeta,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartialObjectMetadataList {
    pub api_version: String,
    pub kind: &'static str,
    pub metadata: ListMeta,
    pub items: Vec<PartialObjectMetadata>,
}

// === impl Table ===

impl Table {
    /// A table in `meta.k8s.io/<version>`.
    #[must_use]
    pub fn new(
        version: &str,
        metadata: ListMeta,
        column_definitions: Vec<ColumnDefinition>,
        rows: Vec<TableRow>,
    ) -> Self {
        Table {
            api_version: format!("{META_GROUP}/{version}"),
            kind: "Table",
            metadata,
            column_definitions,
            rows,
        }
    }
}

// === impl PartialObjectMetadata ===

impl PartialObjectMetadata {
    #[must_use]
    pub fn new(version: &str, metadata: ObjectMeta) -> Self {
        PartialObjectMetadata {
            api_version: format!("{META_GROUP}/{version}"),
            kind: "PartialObjectMetadata",
            metadata,
        }
    }
}

impl PartialObjectMetadataList {
    #[must_use]
    pub fn new(version: &str, metadata: ListMeta, items: Vec<PartialObjectMetadata>) -> Self {
        PartialObjectMetadataList {
            api_version: format!("{META_GROUP}/{version}"),
            kind: "PartialObjectMetadataList",
            metadata,
            items,
        }
    }
}

/// The AGE cell, rendered as kube-apiserver renders it (`duration.HumanDuration`), since kubectl prints cells verbatim.
#[must_use]
pub fn age(created: Option<Timestamp>, now: Timestamp) -> String {
    match created {
        Some(created) => human_duration(now.duration_since(created)),
        None => "<unknown>".to_owned(),
    }
}

/// apimachinery's `duration.HumanDuration`.
#[must_use]
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{dy}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_duration_matches_apimachinery() {
        let cases = [
            (-5, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (150, "2m30s"),
            (600, "10m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 60, "3h1m"),
            (8 * 3600, "8h"),
            (48 * 3600, "2d"),
            (50 * 3600, "2d2h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(SignedDuration::from_secs(secs)), want, "{secs}s");
        }
    }
}
