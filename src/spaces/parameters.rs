//! Template parameters: the values a space gives its SpaceTemplates' declared parameters (`spec.templateParameters`),
//! checked before anything is created, and `${name}` filled in, in one pass, in every string of a template's objects.
//!
//! A name no template of the space declares is refused, like a misspelt field: a typo would otherwise silently take
//! the default.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{FieldError, Problem};
use crate::api::account::{SpaceTemplate, TemplateParameter};

/// The names the server fills in itself; a template may not declare them.
pub const BUILT_IN: &[&str] = &["SPACE", "ACCOUNT", "CREATOR"];
/// Where the values are given, as a field path.
const FIELD: &str = "spec.templateParameters";

/// What is wrong with `given` against the parameters `templates` declare: unknown names, required ones without a value,
/// values that do not match their pattern. Every violation is collected.
#[must_use]
pub fn check(templates: &[&SpaceTemplate], given: &BTreeMap<String, String>) -> Vec<FieldError> {
    let declared: BTreeSet<&str> = templates
        .iter()
        .flat_map(|t| t.spec.parameters.iter().map(|p| p.name.as_str()))
        .collect();
    let mut causes: Vec<FieldError> = given
        .keys()
        .filter(|name| !declared.contains(name.as_str()))
        .map(|name| {
            FieldError::new(
                format!("{FIELD}.{name}"),
                Problem::Unsupported,
                format!(
                    "not a parameter of this space's templates{}",
                    if declared.is_empty() {
                        " (they declare none)".to_owned()
                    } else {
                        format!(
                            " (supported: {})",
                            declared.iter().copied().collect::<Vec<_>>().join(", ")
                        )
                    }
                ),
            )
            .with_value(name)
        })
        .collect();
    // A parameter two templates declare is checked once per declaration: each may ask something of it.
    let mut seen = BTreeSet::new();
    for template in templates {
        for parameter in &template.spec.parameters {
            for c in check_one(template, parameter, given.get(&parameter.name)) {
                if seen.insert(c.clone()) {
                    causes.push(c);
                }
            }
        }
    }
    causes
}

fn check_one(template: &SpaceTemplate, parameter: &TemplateParameter, given: Option<&String>) -> Vec<FieldError> {
    let field = format!("{FIELD}.{}", parameter.name);
    let template = template.metadata.name.as_deref().unwrap_or_default();
    let value = given.or(parameter.default.as_ref());
    if value.is_none_or(String::is_empty) {
        if parameter.required {
            let what = parameter
                .description
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            return vec![FieldError::new(
                field,
                Problem::Required,
                format!(
                    "SpaceTemplate {template:?} requires parameter {:?}{what}",
                    parameter.name
                ),
            )];
        }
        return Vec::new();
    }
    let (Some(value), Some(pattern)) = (given, parameter.validation.as_deref()) else {
        return Vec::new();
    };
    match anchored(pattern) {
        Ok(regex) if regex.is_match(value) => Vec::new(),
        Ok(_) => vec![FieldError::new(
            field,
            Problem::Invalid,
            format!("must match {pattern:?} (SpaceTemplate {template:?})"),
        )
        .with_value(value)],
        Err(_) => vec![FieldError::new(
            field,
            Problem::Invalid,
            format!("SpaceTemplate {template:?} has no usable pattern for it; ask the platform team"),
        )
        .with_value(value)],
    }
}

/// A pattern that must match the whole value.
fn anchored(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::Regex::new(&format!("^(?:{pattern})$"))
}

/// The values of `template`'s declared parameters for a space: given, else the default, else empty. Lenient (no
/// checks): the create checked them, and a repair or sync must fill in what it can.
#[must_use]
pub fn resolve(template: &SpaceTemplate, given: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    template
        .spec
        .parameters
        .iter()
        .filter(|p| !BUILT_IN.contains(&p.name.as_str()))
        .map(|p| {
            let value = given.get(&p.name).or(p.default.as_ref()).cloned().unwrap_or_default();
            (p.name.clone(), value)
        })
        .collect()
}

/// Replaces every `${name}` whose name is in `values`, in every string of a manifest, in one pass: a value that
/// itself holds `${...}` is left as it is, so a tenant's value cannot reach another parameter.
pub fn substitute(value: &mut Value, values: &BTreeMap<String, String>) {
    match value {
        Value::String(s) if s.contains("${") => *s = fill(s, values),
        Value::Array(items) => items.iter_mut().for_each(|v| substitute(v, values)),
        Value::Object(map) => map.values_mut().for_each(|v| substitute(v, values)),
        _ => {}
    }
}

fn fill(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after
            .find('}')
            .and_then(|end| values.get(&after[..end]).map(|v| (end, v)))
        {
            Some((end, value)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str, parameters: Value) -> SpaceTemplate {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"parameters": parameters, "objects": []}
        }))
        .expect("a template")
    }

    fn given(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn fields(causes: &[FieldError]) -> Vec<(String, String)> {
        causes
            .iter()
            .map(crate::http::error::cause)
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.field.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn required_parameters_without_a_value_are_named() {
        let t = template(
            "t",
            serde_json::json!([{"name": "team", "required": true}, {"name": "tier", "required": true, "default": "gold"}]),
        );
        let causes = check(&[&t], &given(&[]));
        assert_eq!(
            fields(&causes),
            [(
                "FieldValueRequired".to_owned(),
                "spec.templateParameters.team".to_owned()
            )]
        );
        assert!(check(&[&t], &given(&[("team", "a")])).is_empty());
        assert_eq!(check(&[&t], &given(&[("team", "")])).len(), 1, "empty is missing");
    }

    #[test]
    fn values_must_match_their_whole_pattern() {
        let t = template("t", serde_json::json!([{"name": "size", "validation": "[0-9]+Gi"}]));
        assert!(check(&[&t], &given(&[("size", "10Gi")])).is_empty());
        for bad in ["10Gix", "x10Gi", "ten"] {
            let causes = check(&[&t], &given(&[("size", bad)]));
            assert_eq!(
                fields(&causes),
                [(
                    "FieldValueInvalid".to_owned(),
                    "spec.templateParameters.size".to_owned()
                )],
                "{bad}"
            );
        }
        assert!(check(&[&t], &given(&[])).is_empty(), "optional and absent");
        let broken = template("b", serde_json::json!([{"name": "x", "validation": "("}]));
        assert_eq!(check(&[&broken], &given(&[("x", "1")])).len(), 1);
    }

    #[test]
    fn unknown_names_are_refused_and_every_cause_collected() {
        let t = template("t", serde_json::json!([{"name": "team", "required": true}]));
        let causes = check(&[&t], &given(&[("teem", "a")]));
        assert_eq!(
            fields(&causes),
            [
                (
                    "FieldValueNotSupported".to_owned(),
                    "spec.templateParameters.teem".to_owned()
                ),
                (
                    "FieldValueRequired".to_owned(),
                    "spec.templateParameters.team".to_owned()
                ),
            ]
        );
        assert_eq!(check(&[], &given(&[("x", "1")])).len(), 1);
    }

    #[test]
    fn a_parameter_two_templates_declare_takes_one_value() {
        let a = template("a", serde_json::json!([{"name": "team", "validation": "[a-z]+"}]));
        let b = template("b", serde_json::json!([{"name": "team", "default": "x"}]));
        assert!(check(&[&a, &b], &given(&[("team", "blue")])).is_empty());
        assert_eq!(resolve(&b, &given(&[("team", "blue")])), given(&[("team", "blue")]));
        assert_eq!(resolve(&b, &given(&[])), given(&[("team", "x")]));
    }

    #[test]
    fn substitution_is_one_pass_and_leaves_unknown_names() {
        let mut manifest = serde_json::json!({
            "metadata": {"name": "${SPACE}-cm"},
            "data": {"a": "${team} in ${SPACE}", "b": "${nope} $${x} ${", "n": 3, "list": ["${team}"]},
        });
        substitute(&mut manifest, &given(&[("SPACE", "dev"), ("team", "${SPACE}")]));
        assert_eq!(
            manifest,
            serde_json::json!({
                "metadata": {"name": "dev-cm"},
                "data": {"a": "${SPACE} in dev", "b": "${nope} $${x} ${", "n": 3, "list": ["${SPACE}"]},
            })
        );
    }
}
