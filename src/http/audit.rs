//! kube-apiserver's audit webhook, for sleep mode: where a platform points it at the server (`POST /audit` from the
//! management cluster's kube-apiserver, `/audit/<cluster>` from a connected cluster's), every request a tenant made
//! in a namespace — reads too: `kubectl get pods`, `logs`, `exec` — is activity in that namespace's space. Requests of
//! the server itself, of the control plane and of cluster admins are not (`sleep::is_tenant`), nor refused ones.
//! The README shows the flags and the audit policy that keeps this cheap (metadata only, namespaced requests only).

use std::sync::Arc;

use http::StatusCode;
use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;

use super::error::Error;
use super::{media_type, response, App, RequestBody, Response};
use crate::sleep::{is_tenant, Seen};

/// `audit.k8s.io/v1` EventList, as far as sleep mode reads it.
#[derive(Debug, Default, Deserialize)]
struct EventList {
    #[serde(default)]
    items: Vec<Event>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Event {
    #[serde(default)]
    user: UserInfo,
    /// Who the request acted as (`kubectl --as`): the one whose activity it is.
    #[serde(default)]
    impersonated_user: Option<UserInfo>,
    #[serde(default)]
    object_ref: Option<ObjectReference>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    #[serde(default)]
    stage_timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ObjectReference {
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: Option<u16>,
}

/// Takes one batch of audit events from the kube-apiserver of `cluster` (`None`: the management cluster's).
///
/// # Errors
/// An unknown cluster (404), a body that is no EventList (400), or a server that cannot tell its own identity there
/// yet (503: kube-apiserver sends the batch again).
pub async fn receive(app: &Arc<App>, cluster: Option<&str>, body: RequestBody) -> Result<Response, Error> {
    let member = match cluster {
        None => app.members.management().clone(),
        Some(cluster) => app.members.connected(cluster).ok_or(Error::NoRoute)?,
    };
    let bytes = media_type::read(body).await?;
    let events: EventList =
        serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("not an audit EventList: {e}")))?;
    let server = member
        .identity()
        .await
        .map_err(|e| Error::Unavailable(format!("the server cannot tell its own identity yet: {e}")))?;
    let activity = member.activity();
    for event in events.items {
        let Some(namespace) = event.object_ref.and_then(|r| r.namespace).filter(|ns| !ns.is_empty()) else {
            continue;
        };
        let refused = event
            .response_status
            .and_then(|s| s.code)
            .is_some_and(|code| code >= 400);
        let at = event.stage_timestamp.and_then(|t| t.parse::<Timestamp>().ok());
        let user = event.impersonated_user.unwrap_or(event.user);
        if let (Some(at), false) = (at, refused) {
            if is_tenant(&user.username, &user.groups, server) {
                activity.record(&namespace, Seen::exact(at, user.username));
            }
        }
    }
    Ok(response::json(StatusCode::OK, &serde_json::json!({})))
}
