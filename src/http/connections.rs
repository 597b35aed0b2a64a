//! `clusterconnections`: connecting a cluster from the web console, by the steps of `tenancy-apiserver connect`. The
//! caller must be allowed to do by hand what the server then does with its own identity in the management cluster
//! (create Clusters, and Secrets in tenancy-system); the kubeconfig is checked before anything is made, a failure
//! undoes what was made, and the kubeconfig is never stored beyond the Secret the server's own identity gets (a token
//! of the server's ServiceAccount there, not the admin's credentials) nor answered back.

use std::sync::Arc;

use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;

use super::error::Error;
use super::{media_type, response, App, Call, Response};
use crate::api::account::{Cluster, CONFIG_GROUP};
use crate::api::connection::{ClusterConnection, KIND};
use crate::authz::{Attributes, Decision};
use crate::backend::explain;
use crate::connect::target::Target;
use crate::connect::{self, NAMESPACE};
use crate::spaces::{validation, FieldError, Problem};

/// Creates a ClusterConnection: the cluster connected, or why not in words at the field at fault.
///
/// # Errors
/// A body that is not one, a name that is not a DNS label, a kubeconfig that does not parse, whose cluster does not
/// answer or whose user lacks the rights, a caller who may not make Clusters or their Secrets, a Cluster of that name.
pub async fn create(app: &Arc<App>, call: Call) -> Result<Response, Error> {
    let format = media_type::object(&call.headers)?;
    let (call, bytes) = media_type::body(call).await?;
    let mut connection: ClusterConnection = media_type::decode(&bytes, format)
        .map_err(|e| Error::BadRequest(format!("the body of the request is not a valid {KIND}: {e}")))?;
    let name = connection.metadata.name.clone().unwrap_or_default();
    let invalid = |field: &'static str, problem: Problem, detail: String| Error::InvalidConnection {
        name: name.clone(),
        error: Box::new(FieldError::new(field, problem, &detail)),
    };
    if let Some(error) = validation::name(&name).into_iter().next() {
        return Err(Error::InvalidConnection {
            name: name.clone(),
            error: Box::new(error),
        });
    }
    if connection.spec.kubeconfig.trim().is_empty() {
        let detail = "an admin kubeconfig for the cluster to connect".to_owned();
        return Err(invalid("spec.kubeconfig", Problem::Required, detail));
    }
    // What the server does next with its own identity here, the caller must be allowed to do.
    for (group, resource, namespace) in [(CONFIG_GROUP, "clusters", ""), ("", "secrets", NAMESPACE)] {
        let attributes = Attributes::Object {
            verb: "create",
            group,
            resource,
            namespace,
        };
        if let Decision::Deny(reason) = app.authorizer.authorize(&call.user, &attributes).await? {
            return Err(Error::Forbidden {
                user: call.user.name.clone(),
                attributes,
                reason,
            });
        }
    }
    let management = app.members.management().client().clone();
    match Api::<Cluster>::all(management.clone()).get_opt(&name).await {
        Ok(None) => {}
        Ok(Some(_)) => return Err(Error::ClusterExists(name)),
        Err(error) => return Err(Error::ConnectFailed(explain::sentence(&error))),
    }
    let kubeconfig = std::mem::take(&mut connection.spec.kubeconfig);
    let target = Target::from_text(&kubeconfig)
        .await
        .map_err(|problem| invalid("spec.kubeconfig", Problem::Invalid, problem.to_string()))?;
    target
        .check()
        .await
        .map_err(|problem| invalid("spec.kubeconfig", Problem::Invalid, problem.to_string()))?;
    let fields = connect::ClusterFields {
        display_name: connection.spec.display_name.clone(),
        ..connect::ClusterFields::default()
    };
    let user = call.user.name.clone();
    tracing::info!(cluster = %name, %user, "Connecting a cluster from the web console");
    connect::make(&target, &management, &name, &fields)
        .await
        .map_err(|error| match error {
            // Refused in the cluster to connect: about its kubeconfig, for the caller.
            connect::Error::Kube {
                step,
                at: connect::Side::Connected,
                source,
            } => invalid(
                "spec.kubeconfig",
                Problem::Invalid,
                format!("{step} was refused: {}", explain::sentence(&source)),
            ),
            other => Error::ConnectFailed(explain_connect(&other)),
        })?;
    connection.kind = KIND.to_owned();
    connection.api_version = crate::api::GROUP_VERSION.to_owned();
    connection.metadata.creation_timestamp = Some(Time(Timestamp::now()));
    Ok(response::json(StatusCode::CREATED, &connection))
}

/// A failed step of connecting, as a sentence.
fn explain_connect(error: &connect::Error) -> String {
    match error {
        connect::Error::Kube { step, source, .. } => format!("{step} failed: {}", explain::sentence(source)),
        other => other.to_string(),
    }
}
