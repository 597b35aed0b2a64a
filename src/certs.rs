//! Serving certificates: a CA and a certificate for the in-cluster Service name (what the aggregator verifies),
//! made by the `certs` subcommand for local runs and for clusters without cert-manager, with the manifests that install
//! them: the serving Secret, the APIService's `caBundle` as a kustomize patch, the Helm chart's values for them, and
//! optionally a kustomize overlay of deploy/ that uses all of it.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("generating a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The DNS names a serving certificate for `service` in `namespace` carries, plus `extra`.
#[must_use]
pub fn service_names(service: &str, namespace: &str, extra: &[String]) -> Vec<String> {
    let mut names = vec![
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        format!("{service}.{namespace}"),
        service.to_owned(),
    ];
    names.extend(extra.iter().cloned());
    names
}

/// PEM files of a new CA and of a serving certificate it signed.
pub struct Bundle {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a serving certificate for `names` (DNS names or IP addresses), valid for `days`.
///
/// # Errors
/// When key generation or signing fails.
pub fn generate(names: &[String], days: i64) -> Result<Bundle, Error> {
    let now = time::OffsetDateTime::now_utc();
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.distinguished_name = DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tenancy-apiserver-ca");
    ca_params.not_before = now - time::Duration::hours(1);
    ca_params.not_after = now + time::Duration::days(days);
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map_or("tenancy-apiserver", String::as_str),
    );
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(days);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(Bundle {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `ca.crt`, `tls.crt` and `tls.key` (the names of a kubernetes.io/tls Secret plus its CA) into `dir`.
///
/// # Errors
/// When a file cannot be written.
pub fn write(bundle: &Bundle, dir: &Path) -> Result<(), Error> {
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| Error::Write { path, source })
    };
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_owned(),
        source,
    })?;
    write("ca.crt", &bundle.ca_pem)?;
    write("tls.crt", &bundle.cert_pem)?;
    write("tls.key", &bundle.key_pem)
}

/// The APIService the patch fills in (apiservice/apiservice.yaml, the chart's templates/apiservice.yaml).
pub const APISERVICE: &str = "v1.tenancy.loft.sh";

/// Where the manifests put a bundle: the serving Secret's namespace and name (the Deployment mounts it).
pub struct Install<'a> {
    pub namespace: &'a str,
    pub secret_name: &'a str,
}

impl Install<'_> {
    /// The kubernetes.io/tls Secret the Deployment mounts, with `ca.crt` beside the pair (the chart's selfSigned mode
    /// makes the same keys).
    #[must_use]
    pub fn secret(&self, bundle: &Bundle) -> String {
        format!(
            "# The serving certificate, made by `tenancy-apiserver certs` (certs/README.md). Keep it out of version control\n\
             # in plain form (it holds the private key): seal or encrypt it for GitOps.\n\
             apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
             type: kubernetes.io/tls\ndata:\n  ca.crt: {ca}\n  tls.crt: {crt}\n  tls.key: {key}\n",
            name = self.secret_name,
            namespace = self.namespace,
            ca = b64(&bundle.ca_pem),
            crt = b64(&bundle.cert_pem),
            key = b64(&bundle.key_pem),
        )
    }

    /// A kustomize patch setting the APIService's `caBundle` to the bundle's CA.
    #[must_use]
    pub fn apiservice_ca_bundle(bundle: &Bundle) -> String {
        format!(
            "# kube-apiserver's aggregator verifies the server's certificate against this CA (ca.crt beside this file).\n\
             apiVersion: apiregistration.k8s.io/v1\nkind: APIService\nmetadata:\n  name: {APISERVICE}\n\
             spec:\n  caBundle: {ca}\n",
            ca = b64(&bundle.ca_pem),
        )
    }

    /// Values for the Helm chart (charts/tenancy-apiserver): the Secret, applied first, and its CA.
    #[must_use]
    pub fn helm_values(&self, bundle: &Bundle) -> String {
        format!(
            "# helm install ... -f helm-values.yaml, after `kubectl apply -f secret.yaml`.\n\
             certificates:\n  mode: existingSecret\n  secretName: {name}\n  caBundle: {ca}\n",
            name = self.secret_name,
            ca = b64(&bundle.ca_pem),
        )
    }

    /// A kustomize overlay: `base` (deploy/, as a path relative to the overlay or a remote reference) with the Secret
    /// and the APIService's `caBundle`, so that `kubectl apply -k` on the overlay's directory installs everything.
    #[must_use]
    pub fn kustomization(base: &str) -> String {
        format!(
            "# deploy/ with the serving certificate of `tenancy-apiserver certs`: kubectl apply -k on this directory.\n\
             apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - {base}\n\
             \x20 - {SECRET_FILE}\npatches:\n  - path: {PATCH_FILE}\n"
        )
    }
}

/// The files [`write_install`] writes beside the PEM files.
pub const SECRET_FILE: &str = "secret.yaml";
pub const PATCH_FILE: &str = "apiservice-ca-bundle.yaml";
pub const HELM_VALUES_FILE: &str = "helm-values.yaml";
pub const KUSTOMIZATION_FILE: &str = "kustomization.yaml";

fn b64(pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(pem)
}

/// Writes the manifests of `install` for `bundle` into `dir` (after [`write`]): the Secret, the APIService patch, the
/// Helm values and, with `kustomize_base`, a kustomize overlay of that base. A base that is a local directory is
/// written relative to `dir`, as kustomize reads it; anything else (a remote reference) as given.
///
/// # Errors
/// When a file cannot be written.
pub fn write_install(
    bundle: &Bundle,
    install: &Install,
    dir: &Path,
    kustomize_base: Option<&str>,
) -> Result<(), Error> {
    let write = |name: &str, contents: &str| {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| Error::Write { path, source })
    };
    write(SECRET_FILE, &install.secret(bundle))?;
    write(PATCH_FILE, &Install::apiservice_ca_bundle(bundle))?;
    write(HELM_VALUES_FILE, &install.helm_values(bundle))?;
    if let Some(base) = kustomize_base {
        let base = match (std::fs::canonicalize(base), std::fs::canonicalize(dir)) {
            (Ok(base), Ok(dir)) if base.is_dir() => relative(&dir, &base).display().to_string(),
            _ => base.to_owned(),
        };
        write(KUSTOMIZATION_FILE, &Install::kustomization(&base))?;
    }
    Ok(())
}

/// `to` as a path relative to `from` (both absolute, without `.` or `..`).
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = std::iter::repeat_n(std::path::Component::ParentDir, from.len() - common).collect();
    path.extend(&to[common..]);
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        let cases = [
            ("/a/b/overlay", "/a/b/deploy", "../deploy"),
            ("/a/deploy/serving", "/a/deploy", ".."),
            ("/a", "/a/deploy", "deploy"),
            ("/a", "/a", "."),
            ("/x/y", "/a/deploy", "../../a/deploy"),
        ];
        for (from, to, want) in cases {
            assert_eq!(
                relative(Path::new(from), Path::new(to)),
                Path::new(want),
                "{from} -> {to}"
            );
        }
    }

    #[test]
    fn manifests_carry_the_bundle_base64_encoded() {
        let bundle = Bundle {
            ca_pem: "CA".into(),
            cert_pem: "CRT".into(),
            key_pem: "KEY".into(),
        };
        let install = Install {
            namespace: "ns",
            secret_name: "serving",
        };
        let secret = install.secret(&bundle);
        for want in [
            "kind: Secret\n",
            "type: kubernetes.io/tls\n",
            "  name: serving\n  namespace: ns\n",
            "  ca.crt: Q0E=\n",
            "  tls.crt: Q1JU\n",
            "  tls.key: S0VZ\n",
        ] {
            assert!(secret.contains(want), "no {want:?} in:\n{secret}");
        }
        let patch = Install::apiservice_ca_bundle(&bundle);
        assert!(
            patch.contains("  name: v1.tenancy.loft.sh\nspec:\n  caBundle: Q0E=\n"),
            "{patch}"
        );
        let values = install.helm_values(&bundle);
        assert!(
            values.contains("  mode: existingSecret\n  secretName: serving\n  caBundle: Q0E=\n"),
            "{values}"
        );
        let kustomization = Install::kustomization("../deploy");
        assert!(
            kustomization.contains(
                "resources:\n  - ../deploy\n  - secret.yaml\npatches:\n  - path: apiservice-ca-bundle.yaml\n"
            ),
            "{kustomization}"
        );
    }
}
