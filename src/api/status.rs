//! `metav1.Status` bodies, shaped as kube-apiserver shapes them for each reason.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::GROUP;

/// A failure Status with `reason`, `code` and `message`, and details naming the object when there is one.
#[must_use]
pub fn failure(code: u16, reason: &str, message: String, details: Option<StatusDetails>) -> Status {
    Status {
        status: Some("Failure".to_owned()),
        code: Some(i32::from(code)),
        reason: Some(reason.to_owned()),
        message: Some(message),
        details,
        ..Status::default()
    }
}

/// Details naming `name` of `kind` (a resource, e.g. `spaces`) in this server's group.
#[must_use]
pub fn details(kind: &str, name: &str) -> StatusDetails {
    StatusDetails {
        group: Some(GROUP.to_owned()),
        kind: Some(kind.to_owned()),
        name: (!name.is_empty()).then(|| name.to_owned()),
        ..StatusDetails::default()
    }
}

/// 404 for `resource` `name`: the same words whether the object is missing or hidden from the caller.
#[must_use]
pub fn not_found(resource: &str, name: &str) -> Status {
    failure(
        404,
        "NotFound",
        format!("{resource}.{GROUP} \"{name}\" not found"),
        Some(details(resource, name)),
    )
}

/// 403 in kube-apiserver's words for a resource request.
#[must_use]
pub fn forbidden(user: &str, verb: &str, resource: &str, name: &str, reason: &str) -> Status {
    let mut status = forbidden_in(user, verb, GROUP, resource, name, "", reason);
    status.details = Some(details(resource, name));
    status
}

/// 403 for `verb` on `resource` of API group `group` (`""`: the core group), named `name` or not, in `namespace` or at
/// the cluster scope, in kube-apiserver's words.
#[must_use]
pub fn forbidden_in(
    user: &str,
    verb: &str,
    group: &str,
    resource: &str,
    name: &str,
    namespace: &str,
    reason: &str,
) -> Status {
    let qualified = if group.is_empty() {
        resource.to_owned()
    } else {
        format!("{resource}.{group}")
    };
    let object = if name.is_empty() {
        qualified
    } else {
        format!("{qualified} \"{name}\"")
    };
    let scope = if namespace.is_empty() {
        "at the cluster scope".to_owned()
    } else {
        format!("in the namespace \"{namespace}\"")
    };
    let mut message = format!(
        "{object} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{group}\" {scope}"
    );
    if !reason.is_empty() {
        message.push_str(": ");
        message.push_str(reason);
    }
    failure(403, "Forbidden", message, None)
}

/// 403 for a non-resource path.
#[must_use]
pub fn forbidden_path(user: &str, verb: &str, path: &str) -> Status {
    failure(
        403,
        "Forbidden",
        format!("forbidden: User \"{user}\" cannot {verb} path \"{path}\""),
        None,
    )
}

/// 400 for a malformed parameter.
#[must_use]
pub fn bad_request(message: String) -> Status {
    failure(400, "BadRequest", message, None)
}

/// 422 for `kind` `name` with field causes, in kube-apiserver's words.
#[must_use]
pub fn invalid(kind: &str, name: &str, causes: Vec<StatusCause>) -> Status {
    let summary = causes
        .iter()
        .map(|c| {
            format!(
                "{}: {}",
                c.field.as_deref().unwrap_or_default(),
                c.message.as_deref().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let message = if causes.len() > 1 {
        format!("{kind}.{GROUP} \"{name}\" is invalid: [{summary}]")
    } else {
        format!("{kind}.{GROUP} \"{name}\" is invalid: {summary}")
    };
    let mut details = details(kind, name);
    details.causes = Some(causes);
    failure(422, "Invalid", message, Some(details))
}

/// 504 for a resourceVersion ahead of what this server has seen.
#[must_use]
pub fn too_large(message: String) -> Status {
    let details = StatusDetails {
        causes: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause {
            reason: Some("ResourceVersionTooLarge".to_owned()),
            message: Some("Too large resource version".to_owned()),
            field: None,
        }]),
        retry_after_seconds: Some(1),
        ..StatusDetails::default()
    };
    failure(504, "Timeout", message, Some(details))
}
