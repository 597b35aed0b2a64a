//! Who is asking, in kube-apiserver's order: identities asserted by its front proxy (trusted only on a connection whose
//! client certificate chains to the request-header CA and carries an allowed CN), then x509 client certificates from the
//! cluster's client CA (CN = user, O = groups), then bearer tokens (TokenReview, see `token`). Nothing else: no
//! anonymous access beyond the health endpoints.

pub mod token;

use std::collections::BTreeMap;

use http::HeaderMap;
use k8s_openapi::api::core::v1::ConfigMap;

/// Namespace and name of the ConfigMap kube-apiserver publishes its front-proxy settings in.
pub const AUTH_CONFIGMAP_NAMESPACE: &str = "kube-system";
pub const AUTH_CONFIGMAP_NAME: &str = "extension-apiserver-authentication";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ConfigMap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME} has no {0}")]
    MissingKey(&'static str),
    #[error("ConfigMap key {key} is not a JSON list of strings")]
    BadList {
        key: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("no certificate in the request-header CA bundle")]
    NoCertificates,
    #[error("the request-header CA bundle is not valid PEM")]
    BadPem(#[source] rustls_pki_types::pem::Error),
    /// The request carries no identity this server trusts.
    #[error("Unauthorized")]
    Unauthenticated,
}

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct User {
    pub name: String,
    pub uid: Option<String>,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// kube-apiserver's `--requestheader-*` settings, as published in the authentication ConfigMap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeaderConfig {
    /// DER certificates of the request-header CA: the only roots a front-proxy certificate may chain to.
    pub ca_certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Allowed CNs of the front-proxy certificate; empty means any certificate from the CA.
    pub allowed_names: Vec<String>,
    pub username_headers: Vec<String>,
    pub uid_headers: Vec<String>,
    pub group_headers: Vec<String>,
    pub extra_header_prefixes: Vec<String>,
    /// DER certificates of the cluster's client CA (`client-ca-file`): x509 users. May be empty.
    pub client_ca_certificates: Vec<rustls_pki_types::CertificateDer<'static>>,
}

// === impl RequestHeaderConfig ===

impl RequestHeaderConfig {
    /// Trust in front proxies whose certificates chain to `ca_certificates` (any CN), reading kube-apiserver's usual
    /// headers (`X-Remote-User`, `X-Remote-Group`, `X-Remote-Extra-*`); no client CA.
    #[must_use]
    pub fn front_proxy(ca_certificates: Vec<rustls_pki_types::CertificateDer<'static>>) -> Self {
        RequestHeaderConfig {
            ca_certificates,
            allowed_names: Vec::new(),
            username_headers: vec!["X-Remote-User".to_owned()],
            uid_headers: Vec::new(),
            group_headers: vec!["X-Remote-Group".to_owned()],
            extra_header_prefixes: vec!["X-Remote-Extra-".to_owned()],
            client_ca_certificates: Vec::new(),
        }
    }

    /// Reads the settings from kube-apiserver's ConfigMap, with kube-apiserver's defaults for absent header names.
    ///
    /// # Errors
    /// When the CA is missing or unparsable, or a list key is not a JSON list.
    pub fn from_configmap(cm: &ConfigMap) -> Result<Self, Error> {
        let data = cm.data.clone().unwrap_or_default();
        let ca = data
            .get("requestheader-client-ca-file")
            .filter(|pem| !pem.trim().is_empty())
            .ok_or(Error::MissingKey("requestheader-client-ca-file"))?;
        let list = |key: &'static str, default: &[&str]| -> Result<Vec<String>, Error> {
            match data.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
                None => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
                Some(json) => serde_json::from_str(json).map_err(|source| Error::BadList { key, source }),
            }
        };
        Ok(RequestHeaderConfig {
            ca_certificates: parse_certificates(ca.as_bytes())?,
            allowed_names: list("requestheader-allowed-names", &[])?,
            username_headers: list("requestheader-username-headers", &["x-remote-user"])?,
            uid_headers: list("requestheader-uid-headers", &[])?,
            group_headers: list("requestheader-group-headers", &["x-remote-group"])?,
            extra_header_prefixes: list("requestheader-extra-headers-prefix", &["x-remote-extra-"])?,
            client_ca_certificates: data
                .get("client-ca-file")
                .filter(|pem| !pem.trim().is_empty())
                .map(|pem| parse_certificates(pem.as_bytes()))
                .transpose()?
                .unwrap_or_default(),
        })
    }

    /// Whether a verified front-proxy certificate with this CN may assert identities.
    #[must_use]
    pub fn allows_common_name(&self, common_name: &str) -> bool {
        self.allowed_names.is_empty() || self.allowed_names.iter().any(|n| n == common_name)
    }
}

/// Certificates of a PEM bundle.
///
/// # Errors
/// When the bundle holds no certificate or bad PEM.
pub fn parse_certificates(pem: &[u8]) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, Error> {
    use rustls_pki_types::pem::PemObject;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Error::BadPem)?;
    if certs.is_empty() {
        return Err(Error::NoCertificates);
    }
    Ok(certs)
}

/// What the TLS layer proved about a connection's client certificate.
#[derive(Clone, Debug, Default)]
pub struct PeerIdentity {
    /// CN of a client certificate that chained to the request-header CA (chain, validity and the clientAuth usage
    /// verified against those roots alone). `None`: no such certificate, so no header is trusted.
    pub proxy_common_name: Option<String>,
    /// CN and O of a client certificate that chained to the cluster's client CA: an x509 user.
    pub x509_user: Option<(String, Vec<String>)>,
}

/// Authenticates a request from its connection's client certificate and its headers. `Ok(None)`: neither a trusted
/// proxy nor an x509 user — a bearer token is the last chance (see `token`).
///
/// # Errors
/// [`Error::Unauthenticated`] when a trusted front proxy names no user.
pub fn authenticate(
    config: &RequestHeaderConfig,
    peer: &PeerIdentity,
    headers: &HeaderMap,
) -> Result<Option<User>, Error> {
    let trusted = peer
        .proxy_common_name
        .as_deref()
        .is_some_and(|cn| config.allows_common_name(cn));
    if !trusted {
        // Identity headers on this connection are ignored: only the certificate (or later a token) counts.
        return Ok(peer.x509_user.as_ref().map(|(name, organizations)| {
            let mut groups = organizations.clone();
            if !groups.iter().any(|g| g == "system:authenticated") {
                groups.push("system:authenticated".to_owned());
            }
            User {
                name: name.clone(),
                uid: None,
                groups,
                extra: BTreeMap::new(),
            }
        }));
    }
    let name = first_value(headers, &config.username_headers).ok_or(Error::Unauthenticated)?;
    let uid = first_value(headers, &config.uid_headers);
    let mut groups = all_values(headers, &config.group_headers);
    let extra = extras(headers, &config.extra_header_prefixes);
    let implicit = name != "system:anonymous"
        && !groups
            .iter()
            .any(|g| g == "system:authenticated" || g == "system:unauthenticated");
    if implicit {
        groups.push("system:authenticated".to_owned());
    }
    Ok(Some(User {
        name,
        uid,
        groups,
        extra,
    }))
}

/// The bearer token of an `Authorization` header, if any.
#[must_use]
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The first header, in configured order, whose first value is non-empty (Go's `headerValue`).
fn first_value(headers: &HeaderMap, names: &[String]) -> Option<String> {
    names.iter().find_map(|name| {
        headers
            .get(name.as_str())
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    })
}

/// Every non-empty value of every configured header, one per line: a group name may contain commas.
fn all_values(headers: &HeaderMap, names: &[String]) -> Vec<String> {
    names
        .iter()
        .flat_map(|name| headers.get_all(name.as_str()).iter())
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Extras: the header suffix after a prefix, lowercased then percent-unescaped, is the key.
fn extras(headers: &HeaderMap, prefixes: &[String]) -> BTreeMap<String, Vec<String>> {
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for prefix in prefixes {
        let prefix = prefix.to_ascii_lowercase();
        for (name, value) in headers {
            let Some(suffix) = name.as_str().strip_prefix(prefix.as_str()) else {
                continue;
            };
            let Ok(value) = value.to_str() else { continue };
            let key = percent_encoding::percent_decode_str(suffix)
                .decode_utf8_lossy()
                .into_owned();
            extra.entry(key).or_default().push(value.to_owned());
        }
    }
    extra
}

#[cfg(test)]
mod tests;
