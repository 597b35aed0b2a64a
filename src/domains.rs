//! Space domains: in a cluster whose platform team gave it a base domain (`serve --space-domain` for the management
//! cluster, `Cluster.spec.spaceDomain` for a connected one), each space owns `<namespace>.<base>` and every name below
//! it, and its Account's extra suffixes (`spec.space.domains`). kube-apiserver itself refuses every other hostname
//! (deploy/admission.yaml, policy `tenancy-space-domains`), from what the server keeps in each cluster: the ConfigMap
//! [`PARAMS`] in tenancy-system (the base and the shared ClusterIssuer) and, on an account's namespaces, the annotation
//! [`ACCOUNT_DOMAINS_ANNOTATION`]. Deriving a space's name from its namespace's needs no first-come lookup and nothing
//! of ours in the admission path. This module says what those hold; `controllers::domains` keeps them.

use serde_json::{json, Value};

/// The ConfigMap (in tenancy-system, in every cluster with a base domain) the admission policy takes as its params.
pub const PARAMS: &str = "tenancy-space-domains";
/// On a namespace of an account with `spec.space.domains`: those suffixes, comma-separated (the server's key, so
/// tenants cannot set it: deploy/admission.yaml).
pub const ACCOUNT_DOMAINS_ANNOTATION: &str = "tenancy.loft.sh/account-domains";
/// Carried on the state's copy of a namespace only (never written to kube-apiserver): the space's domain, which
/// `Space::from_namespace` moves into `status.domain`. The state's copy, so a change of the base reaches lists and
/// watches as a change of the space.
pub const SHOWN_DOMAIN: &str = "tenancy.loft.sh/domain";
/// Likewise: the shared ClusterIssuer, moved into `status.domainIssuer`.
pub const SHOWN_ISSUER: &str = "tenancy.loft.sh/domain-issuer";

/// One cluster's space domains.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpaceDomains {
    /// Lower case, no trailing dot.
    pub base: String,
    /// The shared ClusterIssuer tenants may name; none: no ClusterIssuer at all.
    pub issuer: Option<String>,
}

impl SpaceDomains {
    /// The domains of a cluster given `base` and `issuer` as the platform team wrote them; `None` without a base.
    ///
    /// # Errors
    /// A base that is no DNS name, or an issuer that is no object name: a sentence naming it.
    pub fn new(base: Option<&str>, issuer: Option<&str>) -> Result<Option<Self>, String> {
        let Some(base) = base.filter(|b| !b.trim().is_empty()) else {
            return Ok(None);
        };
        let base = dns_name(base).ok_or_else(|| {
            format!("space domain {base:?} is not a DNS name (lower-case labels of letters, digits and '-', joined by dots)")
        })?;
        let issuer = match issuer.map(str::trim).filter(|i| !i.is_empty()) {
            None => None,
            Some(issuer) => Some(
                dns_name(issuer)
                    .filter(|i| i == issuer)
                    .ok_or_else(|| format!("space issuer {issuer:?} is not a ClusterIssuer name"))?,
            ),
        };
        Ok(Some(SpaceDomains { base, issuer }))
    }

    /// The domain namespace `namespace` of this cluster owns.
    #[must_use]
    pub fn of(&self, namespace: &str) -> String {
        format!("{namespace}.{}", self.base)
    }

    /// Marks the state's copy `shown` of this cluster's namespace `namespace` with its domain and issuer, which the
    /// space's status takes ([`SHOWN_DOMAIN`]).
    pub fn mark(&self, namespace: &str, shown: &mut k8s_openapi::api::core::v1::Namespace) {
        let annotations = shown.metadata.annotations.get_or_insert_with(Default::default);
        annotations.insert(SHOWN_DOMAIN.to_owned(), self.of(namespace));
        if let Some(issuer) = &self.issuer {
            annotations.insert(SHOWN_ISSUER.to_owned(), issuer.clone());
        }
    }

    /// The policy's params: the ConfigMap [`PARAMS`] in `namespace` (the server's, tenancy-system) as the server
    /// applies it.
    #[must_use]
    pub fn params(&self, namespace: &str) -> Value {
        let mut data = json!({"base": self.base});
        if let Some(issuer) = &self.issuer {
            data["issuer"] = json!(issuer);
        }
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": PARAMS, "namespace": namespace},
            "data": data,
        })
    }
}

/// `name` as a DNS name in the form the policy compares (lower case, no trailing dot), or `None` when it is none.
#[must_use]
pub fn dns_name(name: &str) -> Option<String> {
    let name = name.trim().to_ascii_lowercase();
    let name = name.strip_suffix('.').unwrap_or(&name).to_owned();
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    (name.len() <= 253 && name.split('.').all(label_ok)).then_some(name)
}

/// The value of [`ACCOUNT_DOMAINS_ANNOTATION`] for an account whose `spec.space.domains` are `domains`: the DNS names
/// among them, normalized, sorted and comma-separated; `None` when there are none.
#[must_use]
pub fn account_domains(domains: &[String]) -> Option<String> {
    let mut names: Vec<String> = domains.iter().filter_map(|d| dns_name(d)).collect();
    names.sort();
    names.dedup();
    (!names.is_empty()).then(|| names.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_is_read_as_a_dns_name_and_none_is_no_domains() {
        let d = SpaceDomains::new(Some("Apps.Example.COM."), Some("shared-ca")).expect("valid");
        assert_eq!(
            d,
            Some(SpaceDomains {
                base: "apps.example.com".into(),
                issuer: Some("shared-ca".into())
            })
        );
        assert_eq!(d.expect("some").of("team-a-dev"), "team-a-dev.apps.example.com");
        assert_eq!(SpaceDomains::new(None, Some("x")), Ok(None));
        assert_eq!(SpaceDomains::new(Some(" "), None), Ok(None));
        for bad in [
            "apps..example.com",
            "-apps.example.com",
            "apps_x.example.com",
            "*.apps.example.com",
        ] {
            assert!(SpaceDomains::new(Some(bad), None).is_err(), "{bad} was taken");
        }
        assert!(SpaceDomains::new(Some("apps.example.com"), Some("Shared_CA")).is_err());
    }

    #[test]
    fn account_domains_are_normalized_and_sorted() {
        let given = [
            "B.example.org.".to_owned(),
            "a.example.org".to_owned(),
            "b.example.org".to_owned(),
            "bad_".to_owned(),
        ];
        assert_eq!(account_domains(&given).as_deref(), Some("a.example.org,b.example.org"));
        assert_eq!(account_domains(&[]), None);
    }
}
