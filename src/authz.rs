//! May this user do this here? Every request is authorized in this server too, by SubjectAccessReview against
//! kube-apiserver, with allow and deny answers cached for a short time as kube's delegated authorizer does (one review
//! for concurrent requests that ask the same question; failures are not cached).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::{Api, PostParams};
use kube::Client;

use crate::api::GROUP;
use crate::authn::User;

/// How long an answer is reused (kube's `--authorization-webhook-cache-{authorized,unauthorized}-ttl` default).
const TTL: Duration = Duration::from_secs(10);
/// Bound on the cache (the least used answers go first).
const MAX_ENTRIES: u64 = 10_000;

#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// Shared by every request that waited for the same review.
    #[error("SubjectAccessReview failed")]
    Review(#[source] Arc<kube::Error>),
}

/// What is asked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Attributes {
    /// A verb on this server's resource (cluster-scoped), optionally on one name.
    Resource {
        verb: String,
        resource: String,
        name: String,
    },
    /// A verb on a non-resource path (`/metrics`, `/openapi/v2`, ...).
    Path { verb: String, path: String },
    /// A verb on a core namespace, as kube-apiserver asks it: the namespace is its own name. With an empty name, the
    /// verb at the cluster scope (`create namespaces`).
    Namespace { verb: String, name: String },
    /// A verb on another group's resource in the cluster (`group` "" is the core group), in `namespace` (or at the
    /// cluster scope when empty): what the server would do on a caller's behalf, asked as that caller first.
    Object {
        verb: &'static str,
        group: &'static str,
        resource: &'static str,
        namespace: &'static str,
    },
}

/// The answer, with kube-apiserver's reason when denied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
}

pub struct Authorizer {
    client: Client,
    cache: moka::future::Cache<(User, Attributes), Decision>,
}

// === impl Authorizer ===

impl Authorizer {
    #[must_use]
    pub fn new(client: Client) -> Self {
        Authorizer {
            client,
            cache: moka::future::Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// # Errors
    /// When kube-apiserver cannot answer the review.
    pub async fn authorize(&self, user: &User, attributes: &Attributes) -> Result<Decision, Error> {
        // kube's delegated authorizer lets system:masters through without asking, so the aggregator's probes work
        // even while kube-apiserver is busy.
        if user.groups.iter().any(|g| g == "system:masters") {
            return Ok(Decision::Allow);
        }
        self.cache
            .try_get_with((user.clone(), attributes.clone()), self.ask(user, attributes))
            .await
            .map_err(|shared| (*shared).clone())
    }

    /// Asks kube-apiserver now, bypassing the cache: for answers that must be at least as new as an event just seen.
    ///
    /// # Errors
    /// When kube-apiserver cannot answer the review.
    pub async fn ask(&self, user: &User, attributes: &Attributes) -> Result<Decision, Error> {
        let review = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &review(user, attributes))
            .await
            .map_err(|e| Error::Review(Arc::new(e)))?;
        let status = review.status.unwrap_or_default();
        Ok(if status.allowed && !status.denied.unwrap_or(false) {
            Decision::Allow
        } else {
            Decision::Deny(status.reason.unwrap_or_default())
        })
    }
}

fn review(user: &User, attributes: &Attributes) -> SubjectAccessReview {
    let (resource_attributes, non_resource_attributes) = match attributes {
        Attributes::Resource { verb, resource, name } => {
            // `spaces/sleep` is resource `spaces`, subresource `sleep`, as kube-apiserver asks it.
            let (resource, subresource) = resource
                .split_once('/')
                .map_or((resource.as_str(), None), |(r, s)| (r, Some(s.to_owned())));
            (
                Some(ResourceAttributes {
                    group: Some(GROUP.to_owned()),
                    version: Some(crate::api::VERSION.to_owned()),
                    resource: Some(resource.to_owned()),
                    subresource,
                    verb: Some(verb.clone()),
                    name: (!name.is_empty()).then(|| name.clone()),
                    ..ResourceAttributes::default()
                }),
                None,
            )
        }
        Attributes::Namespace { verb, name } => (
            Some(ResourceAttributes {
                group: Some(String::new()),
                version: Some("v1".to_owned()),
                resource: Some("namespaces".to_owned()),
                verb: Some(verb.clone()),
                name: (!name.is_empty()).then(|| name.clone()),
                namespace: (!name.is_empty()).then(|| name.clone()),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Attributes::Object {
            verb,
            group,
            resource,
            namespace,
        } => (
            Some(ResourceAttributes {
                group: Some((*group).to_owned()),
                resource: Some((*resource).to_owned()),
                verb: Some((*verb).to_owned()),
                namespace: (!namespace.is_empty()).then(|| (*namespace).to_owned()),
                ..ResourceAttributes::default()
            }),
            None,
        ),
        Attributes::Path { verb, path } => (
            None,
            Some(NonResourceAttributes {
                path: Some(path.clone()),
                verb: Some(verb.clone()),
            }),
        ),
    };
    SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.name.clone()),
            uid: user.uid.clone(),
            groups: Some(user.groups.clone()),
            extra: (!user.extra.is_empty()).then(|| user.extra.clone()),
            resource_attributes,
            non_resource_attributes,
        },
        ..SubjectAccessReview::default()
    }
}
