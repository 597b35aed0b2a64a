//! Everything that can go wrong in a request, and the one place it becomes a `metav1.Status` ([`status_of`]): each
//! module's error says what went wrong, in its own terms; the words kube-apiserver would use are chosen here.

use http::Method;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Status, StatusCause, StatusDetails};

use super::negotiate;
use crate::api::account::CONFIG_GROUP;
use crate::api::table::META_GROUP;
use crate::api::{space, status, GROUP};
use crate::authn;
use crate::authz::{self, Attributes};
use crate::spaces::{self, FieldError, Problem};
use crate::watch;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Authn(#[from] authn::Error),
    #[error(transparent)]
    Authz(#[from] authz::Error),
    #[error(transparent)]
    Spaces(#[from] spaces::Error),
    #[error("forbidden")]
    Forbidden {
        user: String,
        attributes: Attributes,
        reason: String,
    },
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// A file the web console does not have.
    #[error("console file {0:?} not found")]
    ConsoleFileNotFound(String),
    #[error("method {0} is not supported")]
    MethodNotAllowed(Method),
    #[error("not acceptable")]
    NotAcceptable,
    #[error("{0}")]
    BadRequest(String),
    /// A query parameter this server cannot read (400, as kube-apiserver answers for these).
    #[error("bad option {}", .0.field)]
    BadOption(FieldError),
    /// A write's body in a media type its verb does not take: the types it does.
    #[error("unsupported media type")]
    UnsupportedMediaType(&'static [&'static str]),
    /// A ClusterConnection refused at one field (the kubeconfig's problems in words).
    #[error("invalid cluster connection {name:?}")]
    InvalidConnection { name: String, error: Box<FieldError> },
    /// A Cluster of the connection's name exists already.
    #[error("cluster {0:?} exists")]
    ClusterExists(String),
    /// The management cluster refused a step of connecting (the server's own rights), in words.
    #[error("connecting failed: {0}")]
    ConnectFailed(String),
    /// A request body over the limit.
    #[error("request entity too large")]
    TooLarge { limit: usize },
    /// Something the answer needs cannot be had now; the client sends again.
    #[error("{0}")]
    Unavailable(String),
    /// The handler did not answer in time (watches answer at once and stream afterwards).
    #[error("request timed out")]
    Timeout,
    /// A failure whose cause was already logged (a handler that panicked).
    #[error("internal error")]
    Internal,
}

/// The one place errors become `metav1.Status`.
#[must_use]
pub fn status_of(error: &Error) -> Status {
    match error {
        Error::Authn(_) => status::failure(401, "Unauthorized", "Unauthorized".to_owned(), None),
        Error::Unavailable(message) => status::failure(503, "ServiceUnavailable", message.clone(), None),
        Error::Authz(cause) => {
            tracing::error!(error = %cause, source = ?std::error::Error::source(cause), "Authorization failed");
            status::failure(
                500,
                "InternalError",
                "Internal error occurred: authorization check failed".to_owned(),
                None,
            )
        }
        Error::Spaces(spaces::Error::NotFound(name)) => status::not_found(space::RESOURCE, name),
        Error::Spaces(spaces::Error::AccountNotFound(name)) => status::not_found(spaces::accounts::RESOURCE, name),
        Error::Spaces(spaces::Error::Selector(cause)) => status::bad_request(cause.to_string()),
        Error::Spaces(spaces::Error::Paging(cause)) => status::bad_request(cause.to_string()),
        Error::Spaces(spaces::Error::InvalidOption(option)) => {
            let message = format!("ListOptions.{META_GROUP} \"\" is invalid: {}", field_error(option));
            status::failure(422, "Invalid", message, None)
        }
        Error::Spaces(spaces::Error::InvalidPatchOption(option)) => {
            let message = format!("PatchOptions.{META_GROUP} \"\" is invalid: {}", field_error(option));
            let details = StatusDetails {
                group: Some(META_GROUP.to_owned()),
                kind: Some("PatchOptions".to_owned()),
                causes: Some(vec![cause(option)]),
                ..StatusDetails::default()
            };
            status::failure(422, "Invalid", message, Some(details))
        }
        Error::Spaces(spaces::Error::Watch(watch::Error::Expired { requested, oldest })) => status::failure(
            410,
            "Expired",
            format!("too old resource version: {requested} ({oldest})"),
            None,
        ),
        Error::Spaces(spaces::Error::Watch(watch::Error::FellBehind { position, missed })) => status::failure(
            410,
            "Expired",
            format!("too old resource version: {position}: the watcher fell {missed} changes behind"),
            None,
        ),
        Error::Spaces(spaces::Error::AccountsExpired(requested)) => status::failure(
            410,
            "Expired",
            format!("too old resource version: {requested}"),
            None,
        ),
        Error::Spaces(spaces::Error::Watch(watch::Error::TooLarge { requested, current })) => {
            status::too_large(format!("Too large resource version: {requested}, current: {current}"))
        }
        Error::Spaces(spaces::Error::Forbidden { user, verb, name, reason }) => {
            let mut message = format!(
                "spaces.{GROUP} \"{name}\" is forbidden: User \"{user}\" cannot {verb} resource \"namespaces\" in API group \"\" in the namespace \"{name}\""
            );
            if name.is_empty() {
                message = format!(
                    "spaces.{GROUP} is forbidden: User \"{user}\" cannot {verb} resource \"namespaces\" in API group \"\" at the cluster scope"
                );
            }
            if !reason.is_empty() {
                message.push_str(": ");
                message.push_str(reason);
            }
            status::failure(403, "Forbidden", message, Some(status::details(space::RESOURCE, name)))
        }
        Error::Spaces(spaces::Error::Invalid { name, errors }) => {
            status::invalid(space::KIND, name, errors.iter().map(cause).collect())
        }
        Error::Spaces(spaces::Error::NoResourceVersion(name)) => {
            // kube-apiserver shows the missing resourceVersion as the number it parses it to.
            let missing = StatusCause {
                reason: Some("FieldValueInvalid".to_owned()),
                field: Some("metadata.resourceVersion".to_owned()),
                message: Some("Invalid value: 0x0: must be specified for an update".to_owned()),
            };
            status::invalid(space::KIND, name, vec![missing])
        }
        Error::Spaces(spaces::Error::NameMismatch { sent, url }) => status::bad_request(format!(
            "the name of the object ({sent}) does not match the name on the URL ({url})"
        )),
        Error::Spaces(spaces::Error::Strict(unknown)) => {
            status::bad_request(format!("strict decoding error: {}", unknown.0.join(", ")))
        }
        Error::Spaces(spaces::Error::Conflict(name)) => status::failure(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on spaces.{GROUP} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(status::details(space::RESOURCE, name)),
        ),
        Error::Spaces(spaces::Error::AlreadyExists(name)) => status::failure(
            409,
            "AlreadyExists",
            format!("spaces.{GROUP} \"{name}\" already exists"),
            Some(status::details(space::RESOURCE, name)),
        ),
        Error::Spaces(spaces::Error::PreconditionFailed { field, wanted, actual }) => status::failure(
            409,
            "Conflict",
            format!("Precondition failed: {field} in precondition: {wanted}, {field} in object meta: {actual}"),
            None,
        ),
        Error::Spaces(spaces::Error::BadRequest(message)) => status::bad_request(message.clone()),
        Error::Spaces(spaces::Error::Unprocessable(message)) => status::failure(422, "UnprocessableEntity", message.clone(), None),
        Error::Spaces(spaces::Error::ReadAfterCreateTimeout(name)) => status::failure(
            504,
            "Timeout",
            format!("spaces.{GROUP} \"{name}\" was created but is not visible yet; retry the get"),
            Some(status::details(space::RESOURCE, name)),
        ),
        Error::Spaces(spaces::Error::ClusterUnavailable(cluster)) => status::failure(
            503,
            "ServiceUnavailable",
            format!("connected cluster {cluster:?} is unavailable: its kube-apiserver does not answer; try again later"),
            None,
        ),
        Error::Spaces(spaces::Error::Kube(refused)) => {
            // kube-apiserver's answer about the namespace, told about the space.
            let causes: Vec<StatusCause> = refused
                .details
                .iter()
                .flat_map(|d| &d.causes)
                .map(|c| StatusCause {
                    reason: Some(c.reason.clone()),
                    message: Some(c.message.clone()),
                    field: Some(c.field.clone()),
                })
                .collect();
            let mut details = status::details(space::RESOURCE, "");
            details.causes = (!causes.is_empty()).then_some(causes);
            let message = refused.message.replace("namespaces \"", &format!("spaces.{GROUP} \""));
            status::failure(refused.code, &refused.reason, message, Some(details))
        }
        Error::Spaces(spaces::Error::Backend(cause)) => {
            tracing::error!(error = %cause, "kube-apiserver request failed");
            status::failure(500, "InternalError", "Internal error occurred: the cluster could not be reached".to_owned(), None)
        }
        Error::Spaces(spaces::Error::Authz(cause)) => {
            tracing::error!(error = %cause, "Authorization failed");
            status::failure(500, "InternalError", "Internal error occurred: authorization check failed".to_owned(), None)
        }
        Error::Spaces(cause @ spaces::Error::LimitReached { .. }) => status::failure(
            403,
            "Forbidden",
            format!("spaces.{GROUP} is forbidden: {cause}"),
            Some(status::details(space::RESOURCE, "")),
        ),
        Error::Spaces(spaces::Error::AccountForbidden {
            user,
            account,
            space: named,
        }) => {
            // kube-apiserver's wording for a forbidden request, naming the space when there is one.
            let object = named.as_ref().map(|s| format!(" \"{s}\"")).unwrap_or_default();
            let message = format!(
                "spaces.tenancy.loft.sh{object} is forbidden: User \"{user}\" is not a member of account \"{account}\""
            );
            let name = named.as_deref().unwrap_or_default();
            status::failure(403, "Forbidden", message, Some(status::details(space::RESOURCE, name)))
        }
        Error::Spaces(cause @ spaces::Error::ShareNotInForce(_)) => {
            let mut details = status::details(space::RESOURCE, "");
            details.retry_after_seconds = Some(1);
            status::failure(503, "ServiceUnavailable", cause.to_string(), Some(details))
        }
        Error::Spaces(cause @ spaces::Error::Busy(_)) => {
            let mut details = status::details(space::RESOURCE, "");
            details.retry_after_seconds = Some(1);
            status::failure(429, "TooManyRequests", cause.to_string(), Some(details))
        }
        Error::Spaces(cause @ spaces::Error::Template { .. }) => {
            tracing::warn!(error = %cause, "SpaceTemplate failed");
            status::failure(500, "InternalError", format!("Internal error occurred: {cause}"), None)
        }
        Error::UnsupportedMediaType(accepted) => status::failure(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                accepted.join(", ")
            ),
            None,
        ),
        Error::Spaces(spaces::Error::ContinueExpired) => {
            status::failure(410, "Expired", CONTINUE_EXPIRED.to_owned(), None)
        }
        Error::Forbidden {
            user,
            attributes,
            reason,
        } => match attributes {
            Attributes::Resource { verb, resource, name } => status::forbidden(user, verb, resource, name, reason),
            Attributes::Path { verb, path } => status::forbidden_path(user, verb, path),
            Attributes::Namespace { verb, name } => status::forbidden(user, verb, "namespaces", name, reason),
            Attributes::Object {
                verb,
                group,
                resource,
                namespace,
            } => status::forbidden_in(user, verb, group, resource, "", namespace, reason),
        },
        Error::NoRoute => status::failure(404, "NotFound", error.to_string(), None),
        Error::InvalidConnection { name, error } => {
            status::invalid(crate::api::connection::KIND, name, vec![cause(error)])
        }
        Error::ClusterExists(name) => status::failure(
            409,
            "AlreadyExists",
            format!("clusters.{CONFIG_GROUP} \"{name}\" already exists"),
            None,
        ),
        Error::ConnectFailed(why) => {
            tracing::warn!(%why, "Connecting a cluster failed");
            status::failure(
                500,
                "InternalError",
                format!("Internal error occurred: connecting the cluster failed: {why}"),
                None,
            )
        }
        Error::ConsoleFileNotFound(name) => status::not_found(crate::api::CONSOLE_RESOURCE, name),
        Error::MethodNotAllowed(method) => status::failure(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            None,
        ),
        Error::NotAcceptable => status::failure(
            406,
            "NotAcceptable",
            format!("only the following media types are accepted: {}", negotiate::ACCEPTED),
            None,
        ),
        Error::BadRequest(message) => status::bad_request(message.clone()),
        Error::BadOption(option) => status::bad_request(format!("{}: {}", option.field, field_error_body(option))),
        Error::TooLarge { limit } => status::failure(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
            None,
        ),
        Error::Timeout => status::failure(
            504,
            "Timeout",
            "Timeout: request did not complete within the allowed duration".to_owned(),
            None,
        ),
        Error::Internal => status::failure(
            500,
            "InternalError",
            "an error on the server has prevented the request from succeeding".to_owned(),
            None,
        ),
    }
}

/// A field error as kube's `field.Error` prints it: `<field>: <body>`.
fn field_error(error: &FieldError) -> String {
    format!("{}: {}", error.field, field_error_body(error))
}

/// A field error's text without its field, as kube's `field.Error.ErrorBody`: the kind of problem, the value refused
/// (quoted; never for required or forbidden fields), then the detail.
fn field_error_body(error: &FieldError) -> String {
    let kind = match error.problem {
        Problem::Invalid => "Invalid value",
        Problem::Unsupported => "Unsupported value",
        Problem::Forbidden => "Forbidden",
        Problem::Required => "Required value",
        Problem::NotFound => "Not found",
    };
    let mut body = match (&error.value, error.problem) {
        (Some(value), Problem::Invalid | Problem::Unsupported | Problem::NotFound) => format!("{kind}: {value:?}"),
        _ => kind.to_owned(),
    };
    if !error.detail.is_empty() {
        body.push_str(": ");
        body.push_str(&error.detail);
    }
    if !error.supported.is_empty() {
        let supported: Vec<String> = error.supported.iter().map(|s| format!("{s:?}")).collect();
        body.push_str(": supported values: ");
        body.push_str(&supported.join(", "));
    }
    body
}

/// A field error as a Status cause.
#[must_use]
pub fn cause(error: &FieldError) -> StatusCause {
    let reason = match error.problem {
        Problem::Invalid => "FieldValueInvalid",
        Problem::Unsupported => "FieldValueNotSupported",
        Problem::Forbidden => "FieldValueForbidden",
        Problem::Required => "FieldValueRequired",
        Problem::NotFound => "FieldValueNotFound",
    };
    StatusCause {
        reason: Some(reason.to_owned()),
        field: Some(error.field.clone()),
        message: Some(field_error_body(error)),
    }
}

/// kube-apiserver's words for a continue token older than its window.
const CONTINUE_EXPIRED: &str =
    "The provided continue parameter is too old to display a consistent list result. You can \
start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder \
of the results. Continuing with the provided token results in an inconsistent list - objects that were created, \
modified, or deleted between the time the first chunk was returned and now may show up in the list.";
