//! The cluster to connect, from an admin's kubeconfig: a client for it, the server URL and CA the server's own
//! kubeconfig there will name, and whether that admin may do what connecting takes there. All of it is asked before
//! anything is made, so a kubeconfig that does not parse, whose cluster does not answer, or whose user lacks the rights
//! is refused with a sentence saying which, and leaves nothing behind in either cluster.

use std::path::Path;

use base64::Engine;
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;

use super::NAMESPACE;
use crate::backend::explain;

/// What is wrong with a kubeconfig given to connect a cluster, in words for the platform team.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    #[error("the kubeconfig does not parse: {0}")]
    Parse(String),
    #[error("the kubeconfig's current context names no cluster server")]
    NoServer,
    #[error(
        "the kubeconfig refers to the file {0}: give one with everything in it (kubectl config view --raw --minify --flatten)"
    )]
    File(String),
    #[error("reading {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the cluster at {server} does not answer: {reason}")]
    NoAnswer { server: String, reason: String },
    #[error("the cluster at {server} does not accept the kubeconfig's credentials: {reason}")]
    Credentials { server: String, reason: String },
    #[error("the kubeconfig's user may not {missing} in the cluster at {server}: connecting needs cluster-admin rights there")]
    Rights { server: String, missing: String },
}

/// The cluster to connect.
pub struct Target {
    pub client: Client,
    /// Its kube-apiserver's URL and CA (base64 PEM), for the kubeconfig the server gets.
    pub server: String,
    pub certificate_authority: String,
}

/// What connecting makes in the cluster, as (verb, group, resource, subresource, namespace): each is asked of its
/// kube-apiserver before anything is made.
const RIGHTS: &[(&str, &str, &str, &str, &str)] = &[
    ("create", "", "namespaces", "", ""),
    ("create", "", "serviceaccounts", "", NAMESPACE),
    ("create", "", "serviceaccounts", "token", NAMESPACE),
    ("create", "rbac.authorization.k8s.io", "clusterroles", "", ""),
    ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", ""),
    (
        "create",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicies",
        "",
        "",
    ),
    (
        "create",
        "admissionregistration.k8s.io",
        "validatingadmissionpolicybindings",
        "",
        "",
    ),
];

// === impl Target ===

impl Target {
    /// From the kubeconfig at `path` (the files it names are read beside it).
    ///
    /// # Errors
    /// It cannot be read, does not parse, or names no server.
    pub async fn from_file(path: &Path) -> Result<Self, Problem> {
        let display = path.display().to_string();
        let kubeconfig = Kubeconfig::read_from(path).map_err(|e| Problem::Parse(format!("{display}: {e}")))?;
        let certificate_authority = |file: &str| {
            let file = path.parent().unwrap_or_else(|| Path::new(".")).join(file);
            std::fs::read(&file).map_err(|e| Problem::Read {
                path: file.display().to_string(),
                reason: e.to_string(),
            })
        };
        let (server, certificate_authority) = server_of(&kubeconfig, certificate_authority)?;
        let config = crate::backend::config(Some(path))
            .await
            .map_err(|e| Problem::Parse(format!("{display}: {}", explain::root_cause(&e))))?;
        let client = Client::try_from(config).map_err(|e| Problem::Parse(explain::sentence(&e)))?;
        Ok(Target {
            client,
            server,
            certificate_authority,
        })
    }

    /// From a kubeconfig's text (pasted in the web console): everything it needs must be in it, no file names.
    ///
    /// # Errors
    /// It does not parse, names a file, or names no server.
    pub async fn from_text(text: &str) -> Result<Self, Problem> {
        // The parser's first line says where and what; the rest quotes the text, which may hold a credential.
        let kubeconfig = Kubeconfig::from_yaml(text).map_err(|e| {
            let said = e.to_string();
            Problem::Parse(said.lines().next().unwrap_or_default().trim().to_owned())
        })?;
        for cluster in kubeconfig.clusters.iter().filter_map(|c| c.cluster.as_ref()) {
            if let Some(file) = &cluster.certificate_authority {
                return Err(Problem::File(file.clone()));
            }
        }
        for user in kubeconfig.auth_infos.iter().filter_map(|a| a.auth_info.as_ref()) {
            let files = [&user.client_certificate, &user.client_key, &user.token_file];
            if let Some(file) = files.into_iter().flatten().next() {
                return Err(Problem::File(file.clone()));
            }
        }
        let (server, certificate_authority) = server_of(&kubeconfig, |file| Err(Problem::File(file.to_owned())))?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| Problem::Parse(explain::root_cause(&e)))?;
        let client = Client::try_from(config).map_err(|e| Problem::Parse(explain::sentence(&e)))?;
        Ok(Target {
            client,
            server,
            certificate_authority,
        })
    }

    /// Whether the kubeconfig's user may make there what connecting makes (its SelfSubjectAccessReviews).
    ///
    /// # Errors
    /// The cluster does not answer, refuses the credentials, or denies a right (the first, in words).
    pub async fn check(&self) -> Result<(), Problem> {
        let reviews: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        for (verb, group, resource, subresource, namespace) in RIGHTS {
            let review = SelfSubjectAccessReview {
                spec: SelfSubjectAccessReviewSpec {
                    resource_attributes: Some(ResourceAttributes {
                        verb: Some((*verb).to_owned()),
                        group: Some((*group).to_owned()),
                        resource: Some((*resource).to_owned()),
                        subresource: (!subresource.is_empty()).then(|| (*subresource).to_owned()),
                        namespace: (!namespace.is_empty()).then(|| (*namespace).to_owned()),
                        ..ResourceAttributes::default()
                    }),
                    ..SelfSubjectAccessReviewSpec::default()
                },
                ..SelfSubjectAccessReview::default()
            };
            let answer = tokio::time::timeout(CHECK_TIMEOUT, reviews.create(&PostParams::default(), &review))
                .await
                .map_err(|_| Problem::NoAnswer {
                    server: self.server.clone(),
                    reason: format!("no answer within {}s", CHECK_TIMEOUT.as_secs()),
                })?;
            let allowed = match answer {
                Ok(review) => review.status.is_some_and(|s| s.allowed),
                Err(kube::Error::Api(status)) if status.code == 401 => {
                    return Err(Problem::Credentials {
                        server: self.server.clone(),
                        reason: explain::sentence(&kube::Error::Api(status)),
                    })
                }
                // A 403 on the review itself: this user may not even ask, let alone connect.
                Err(kube::Error::Api(status)) if status.code == 403 => false,
                Err(error) => {
                    return Err(Problem::NoAnswer {
                        server: self.server.clone(),
                        reason: explain::sentence(&error),
                    })
                }
            };
            if !allowed {
                let what = match (*subresource, *group) {
                    ("", "") => (*resource).to_owned(),
                    ("", group) => format!("{resource}.{group}"),
                    (subresource, _) => format!("{resource}/{subresource}"),
                };
                let scope = if namespace.is_empty() {
                    String::new()
                } else {
                    format!(" in namespace {namespace}")
                };
                return Err(Problem::Rights {
                    server: self.server.clone(),
                    missing: format!("{verb} {what}{scope}"),
                });
            }
        }
        Ok(())
    }
}

/// How long the cluster to connect may take to answer each question before it counts as not answering.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The server URL of `kubeconfig`'s current context, and its CA as base64 PEM (`read` reads a CA named by file).
fn server_of(
    kubeconfig: &Kubeconfig,
    read: impl Fn(&str) -> Result<Vec<u8>, Problem>,
) -> Result<(String, String), Problem> {
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| Some(&c.name) == kubeconfig.current_context.as_ref())
        .and_then(|c| c.context.as_ref())
        .map(|c| c.cluster.clone())
        .unwrap_or_default();
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context)
        .and_then(|c| c.cluster.clone())
        .ok_or(Problem::NoServer)?;
    let server = cluster.server.clone().ok_or(Problem::NoServer)?;
    let certificate_authority = match (&cluster.certificate_authority_data, &cluster.certificate_authority) {
        (Some(data), _) => data.clone(),
        (None, Some(file)) => base64::engine::general_purpose::STANDARD.encode(read(file)?),
        (None, None) => String::new(),
    };
    Ok((server, certificate_authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pasted_kubeconfig_must_parse_name_a_server_and_carry_its_files() {
        let garbled = Target::from_text("token: [s3cret").await;
        assert!(
            matches!(&garbled, Err(Problem::Parse(said)) if !said.contains("s3cret") && !said.contains('\n')),
            "one line, quoting none of the text: {:?}",
            garbled.err()
        );
        let no_context = Target::from_text("apiVersion: v1\nkind: Config\nclusters: []\n").await;
        assert!(matches!(no_context, Err(Problem::NoServer)), "{:?}", no_context.err());
        let with_file = "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
clusters: [{name: c, cluster: {server: \"https://127.0.0.1:6443\", certificate-authority: /etc/ca.crt}}]\n\
users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n";
        let refused = Target::from_text(with_file).await;
        assert!(
            matches!(&refused, Err(Problem::File(f)) if f == "/etc/ca.crt"),
            "{:?}",
            refused.err()
        );
        let message = Problem::File("/etc/ca.crt".to_owned()).to_string();
        assert!(
            message.contains("kubectl config view --raw --minify --flatten"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_cluster_that_does_not_answer_is_said_to() {
        let closed = "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
clusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\", insecure-skip-tls-verify: true}}]\n\
users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n";
        let target = Target::from_text(closed).await.expect("a kubeconfig");
        let problem = target.check().await.expect_err("nothing listens on port 9");
        assert!(
            matches!(&problem, Problem::NoAnswer { server, .. } if server == "https://127.0.0.1:9"),
            "{problem:?}"
        );
        assert!(problem
            .to_string()
            .starts_with("the cluster at https://127.0.0.1:9 does not answer: "));
    }
}
