//! What a client may put in a Space: names (DNS-1123 labels, not reserved), and metadata outside the server's own
//! `tenancy.loft.sh/` keys. Every violation is collected, as kube-apiserver's validation does.

use std::collections::BTreeMap;

use super::{FieldError, Problem};
use crate::api::Space;

/// Keys under this prefix are the server's: users may neither set nor remove them.
pub const MANAGED_PREFIX: &str = "tenancy.loft.sh/";

/// Names a space may not take: the cluster's own namespaces and the project's.
const RESERVED_NAMES: &[&str] = &["default"];
const RESERVED_PREFIXES: &[&str] = &["kube-", "kubernetes-", "openshift-", "tenancy-system"];

/// What is wrong with a name for a new space.
#[must_use]
pub fn name(name: &str) -> Vec<FieldError> {
    let mut causes = Vec::new();
    let field = "metadata.name";
    if name.is_empty() {
        causes.push(FieldError::new(
            field,
            Problem::Required,
            "name or generateName is required",
        ));
        return causes;
    }
    let bytes = name.as_bytes();
    let valid = name.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    if !valid {
        causes.push(
            FieldError::new(
                field,
                Problem::Invalid,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start \
and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
            )
            .with_value(name),
        );
    }
    let reserved = RESERVED_NAMES.contains(&name)
        || RESERVED_PREFIXES.iter().any(|p| name.starts_with(p))
        || ["kube", "kubernetes", "openshift"].contains(&name);
    if reserved {
        causes.push(FieldError::new(
            field,
            Problem::Forbidden,
            format!("{name:?} is reserved for the cluster's own namespaces"),
        ));
    }
    causes
}

/// Errors for any `tenancy.loft.sh/` key that differs between what the client sent and what the server keeps.
#[must_use]
pub fn managed_keys(
    field: &str,
    sent: Option<&BTreeMap<String, String>>,
    kept: Option<&BTreeMap<String, String>>,
) -> Vec<FieldError> {
    let managed = |map: Option<&BTreeMap<String, String>>| -> BTreeMap<String, String> {
        map.map(|m| {
            m.iter()
                .filter(|(k, _)| k.starts_with(MANAGED_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
    };
    let (sent, kept) = (managed(sent), managed(kept));
    let mut keys: Vec<&String> = sent.keys().chain(kept.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| sent.get(*k) != kept.get(*k))
        .map(|k| {
            FieldError::new(
                format!("{field}[{k}]"),
                Problem::Forbidden,
                format!("keys under {MANAGED_PREFIX} are managed by the server"),
            )
        })
        .collect()
}

/// What is wrong with a space a client wants to become `current` (or to create, when `current` is `None`).
#[must_use]
pub fn space(sent: &Space, current: Option<&Space>) -> Vec<FieldError> {
    let mut causes = Vec::new();
    if sent.api_version != crate::api::GROUP_VERSION || sent.kind != crate::api::space::KIND {
        causes.push(
            FieldError::new(
                "apiVersion",
                Problem::Invalid,
                format!("must be {}, kind Space", crate::api::GROUP_VERSION),
            )
            .with_value(format!("{}/{}", sent.api_version, sent.kind)),
        );
    }
    let kept = current.map(|c| &c.metadata);
    causes.extend(managed_keys(
        "metadata.labels",
        sent.metadata.labels.as_ref(),
        kept.and_then(|m| m.labels.as_ref()),
    ));
    causes.extend(managed_keys(
        "metadata.annotations",
        sent.metadata.annotations.as_ref(),
        kept.and_then(|m| m.annotations.as_ref()),
    ));
    // Parameters fill in the templates once given; the create flow checks them against what the templates declare.
    if let Some(current) = current {
        if sent.spec.template_parameters != current.spec.template_parameters {
            causes.push(FieldError::new(
                "spec.templateParameters",
                Problem::Forbidden,
                "field is immutable: template parameters are given when a space is created",
            ));
        }
    }
    if let Some(settings) = sent
        .spec
        .sleep
        .as_ref()
        .filter(|_| current.is_none_or(|c| c.spec.sleep != sent.spec.sleep))
    {
        causes.extend(sleep_settings("spec.sleep", settings));
    }
    // A new space may name its account (the create flow checks membership); an existing one keeps it.
    let account = current.and_then(|c| c.spec.account.as_ref());
    if current.is_some() && sent.spec.account.as_ref() != account {
        causes.push(FieldError::new(
            "spec.account",
            Problem::Forbidden,
            "the owning account is set by the server",
        ));
    }
    causes
}

/// What is wrong with sleep settings at `field` (`spec.sleep`): each field that does not parse, named.
#[must_use]
pub fn sleep_settings(field: &str, settings: &crate::sleep::SleepSettings) -> Vec<FieldError> {
    settings
        .rules()
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|(name, detail)| FieldError::new(format!("{field}.{name}"), Problem::Invalid, detail))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_dns_labels_and_not_reserved() {
        assert!(name("team-a-dev").is_empty());
        for bad in ["", "Team", "-a", "a-", "a_b", &"x".repeat(64)] {
            assert!(!name(bad).is_empty(), "{bad:?}");
        }
        for reserved in [
            "default",
            "kube-system",
            "kube-anything",
            "kubernetes-dashboard",
            "openshift-x",
            "kube",
        ] {
            let causes = name(reserved);
            assert_eq!(causes.len(), 1, "{reserved}");
            assert_eq!(
                crate::http::error::cause(&causes[0]).reason.as_deref(),
                Some("FieldValueForbidden")
            );
        }
    }

    #[test]
    fn managed_keys_may_be_neither_set_nor_removed() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
        };
        let kept = map(&[("tenancy.loft.sh/account", "a"), ("x", "1")]);
        assert!(managed_keys(
            "l",
            Some(&map(&[("tenancy.loft.sh/account", "a"), ("y", "2")])),
            Some(&kept)
        )
        .is_empty());
        assert_eq!(
            managed_keys("l", Some(&map(&[("x", "1")])), Some(&kept)).len(),
            1,
            "removed"
        );
        assert_eq!(
            managed_keys("l", Some(&map(&[("tenancy.loft.sh/account", "b")])), Some(&kept)).len(),
            1,
            "changed"
        );
        assert_eq!(
            managed_keys("l", Some(&map(&[("tenancy.loft.sh/shared", "true")])), None).len(),
            1,
            "set"
        );
    }
}
