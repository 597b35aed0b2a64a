//! Where a space's namespace is, as a write needs it: the cluster it is in (a [`Member`]), its name there, and whether
//! that cluster lets the caller do this to it (asked there: a connected cluster's RBAC decides for its namespaces).

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

use super::Writer;
use crate::access::view::connected_part;
use crate::api::Space;
use crate::authn::User;
use crate::authz::{Attributes, Authorizer, Decision};
use crate::clusters::Member;
use crate::spaces::provision::Provisioner;
use crate::spaces::{Error, FieldError, Problem};

impl Writer {
    /// Where space `name`'s namespace is: this cluster, or a connected cluster that answers now.
    ///
    /// # Errors
    /// An unknown cluster (422 on `spec.cluster`), one that does not answer now (503), or a bare name where this
    /// cluster holds no spaces (422 on `metadata.name`).
    pub(super) fn place(&self, name: &str) -> Result<Place, Error> {
        let Some((cluster, namespace)) = connected_part(name) else {
            if !self.members.local_spaces() {
                return Err(no_local_spaces(name, &self.members.names()));
            }
            return Ok(Place {
                namespace: name.to_owned(),
                member: self.members.management().clone(),
                provisioner: self.provisioner.clone(),
            });
        };
        let Some(member) = self.members.connected(cluster) else {
            return Err(Error::Invalid {
                name: name.to_owned(),
                errors: vec![FieldError::new(
                    "spec.cluster",
                    Problem::NotFound,
                    "no connected cluster of that name (the name is <cluster>.<namespace>)",
                )
                .with_value(cluster)],
            });
        };
        if !self.cache.read().connected.get(cluster).is_some_and(|c| c.online) {
            return Err(Error::ClusterUnavailable(cluster.to_owned()));
        }
        Ok(Place {
            namespace: namespace.to_owned(),
            provisioner: Arc::new(self.provisioner.in_cluster(member.clone())),
            member,
        })
    }
}

/// A bare name on a trunk-only install: which clusters it could be made in instead (`clusters`: those the caller may
/// create in), as an example name.
pub(super) fn no_local_spaces(name: &str, clusters: &[String]) -> Error {
    let message = match clusters.first() {
        Some(first) => format!(
            "this server keeps no spaces in its own cluster: name it {first}.{name} (<cluster>.<namespace>; you may \
create in {})",
            clusters.join(", ")
        ),
        None => "this server keeps no spaces in its own cluster, and no connected cluster is open to you: a space is \
named <cluster>.<namespace>"
            .to_owned(),
    };
    Error::Invalid {
        name: name.to_owned(),
        errors: vec![FieldError::new("metadata.name", Problem::Required, message).with_value(name)],
    }
}

/// Where a space's namespace is, as a write needs it: the cluster it is in, and its name there.
pub(super) struct Place {
    /// The namespace's name there.
    pub(super) namespace: String,
    pub(super) member: Arc<Member>,
    /// Makes spaces there, under this server's Leases and account limits.
    pub(super) provisioner: Arc<Provisioner>,
}

// === impl Place ===

impl Place {
    pub(super) fn namespaces(&self) -> Api<Namespace> {
        Api::all(self.member.client().clone())
    }

    /// The connected cluster; `None` for the management cluster.
    pub(super) fn cluster(&self) -> Option<&str> {
        self.member.cluster()
    }

    /// A namespace there as the space this server shows.
    pub(super) fn show(&self, namespace: &Namespace) -> Space {
        let mut namespace = namespace.clone();
        let name = namespace.metadata.name.clone().unwrap_or_default();
        if let Some(domains) = self.member.domains() {
            domains.mark(&name, &mut namespace);
        }
        namespace.metadata.name = Some(self.member.space(&name));
        Space::from_namespace(&namespace)
    }

    /// Whether that cluster lets `user` `verb` the namespace; refused in the words of space `space`.
    pub(super) async fn authorize(&self, user: &User, verb: &str, space: &str) -> Result<(), Error> {
        authorize(self.member.authorizer(), user, verb, &self.namespace, space).await
    }
}

/// Whether `authorizer` lets `user` `verb` namespace `namespace` (`""`: namespaces in general); refused in the words of
/// space `space`.
pub(super) async fn authorize(
    authorizer: &Authorizer,
    user: &User,
    verb: &str,
    namespace: &str,
    space: &str,
) -> Result<(), Error> {
    let attributes = Attributes::Namespace {
        verb: verb.to_owned(),
        name: namespace.to_owned(),
    };
    match authorizer.authorize(user, &attributes).await? {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(Error::Forbidden {
            user: user.name.clone(),
            verb: verb.to_owned(),
            name: space.to_owned(),
            reason,
        }),
    }
}
