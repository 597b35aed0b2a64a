//! Decoding a Space as kube-apiserver does under `fieldValidation`: fields the type does not know are found by path
//! (`spec.x`, `metadata.ownerReferences[0].y`), then ignored, warned about, or refused.

use serde_json::Value;

use super::Space;

/// What to do with unknown fields (`fieldValidation`); kube-apiserver's default is `Warn`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

// === impl FieldValidation ===

/// Unknown fields refused under `fieldValidation=Strict`, each described as in a warning.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fields: {}", .0.join(", "))]
pub struct StrictError(pub Vec<String>);

impl FieldValidation {
    /// The values kube-apiserver accepts, as they are spelt.
    pub const SUPPORTED: [&'static str; 3] = ["Ignore", "Strict", "Warn"];

    /// `None` for a value kube-apiserver would not accept.
    #[must_use]
    pub fn parse(value: Option<&str>) -> Option<Self> {
        match value {
            None | Some("") => Some(FieldValidation::default()),
            Some("Ignore") => Some(FieldValidation::Ignore),
            Some("Warn") => Some(FieldValidation::Warn),
            Some("Strict") => Some(FieldValidation::Strict),
            Some(_) => None,
        }
    }

    /// The warnings to send for `unknown` fields.
    ///
    /// # Errors
    /// Under `Strict`, when there are unknown fields.
    pub fn judge(self, unknown: &[String]) -> Result<Vec<String>, StrictError> {
        let described: Vec<String> = unknown.iter().map(|path| format!("unknown field {path:?}")).collect();
        match self {
            _ if described.is_empty() => Ok(Vec::new()),
            FieldValidation::Ignore => Ok(Vec::new()),
            FieldValidation::Warn => Ok(described),
            FieldValidation::Strict => Err(StrictError(described)),
        }
    }
}

/// `value` as a Space, with the paths of the fields a Space does not have.
///
/// # Errors
/// When `value` is not a Space at all (a known field of the wrong type).
pub fn space(value: Value) -> Result<(Space, Vec<String>), serde_json::Error> {
    let mut unknown = Vec::new();
    let space = serde_ignored::deserialize(value, |path| unknown.push(field_path(&path)))?;
    Ok((space, unknown))
}

/// A path as kube-apiserver writes it: dots between fields, `[i]` for list items.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    match path {
        serde_ignored::Path::Root => String::new(),
        serde_ignored::Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        serde_ignored::Path::Map { parent, key } => match field_path(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        serde_ignored::Path::Some { parent }
        | serde_ignored::Path::NewtypeStruct { parent }
        | serde_ignored::Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unknown(value: Value) -> Vec<String> {
        space(value).expect("a space").1
    }

    #[test]
    fn unknown_fields_are_found_by_path_and_known_ones_are_not() {
        let known = serde_json::json!({
            "apiVersion": "tenancy.loft.sh/v1", "kind": "Space",
            "metadata": {"name": "a", "labels": {"x": "y"}, "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u"}]},
            "spec": {"account": "team"}, "status": {"phase": "Active"}
        });
        assert!(unknown(known).is_empty());
        let extra = serde_json::json!({
            "apiVersion": "tenancy.loft.sh/v1", "kind": "Space", "extra": 1,
            "metadata": {"name": "a", "nmae": "b", "ownerReferences": [{"apiVersion": "v1", "kind": "K", "name": "n", "uid": "u", "bad": true}]},
            "spec": {"acount": "team"}
        });
        assert_eq!(
            unknown(extra),
            [
                "extra",
                "metadata.nmae",
                "metadata.ownerReferences[0].bad",
                "spec.acount"
            ]
        );
    }

    #[test]
    fn each_mode_does_what_kube_apiserver_does() {
        let fields = vec!["spec.x".to_owned(), "y".to_owned()];
        assert_eq!(FieldValidation::Ignore.judge(&fields), Ok(vec![]));
        assert_eq!(
            FieldValidation::Warn.judge(&fields),
            Ok(vec![
                "unknown field \"spec.x\"".to_owned(),
                "unknown field \"y\"".to_owned()
            ])
        );
        assert_eq!(
            FieldValidation::Strict.judge(&fields),
            Err(StrictError(vec![
                "unknown field \"spec.x\"".to_owned(),
                "unknown field \"y\"".to_owned()
            ]))
        );
        assert_eq!(FieldValidation::Strict.judge(&[]), Ok(vec![]));
        assert_eq!(FieldValidation::parse(None), Some(FieldValidation::Warn));
        assert!(FieldValidation::parse(Some("strict")).is_none());
    }
}
