//! The HTTP edge: accepts TLS connections, builds the request stack, routes, negotiates the representation, and turns
//! every module's error into a `metav1.Status` (in [`status_of`], and nowhere else).

pub mod negotiate;

use std::collections::HashMap;
use std::convert::Infallible;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, Status};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::api::decode::FieldValidation;
use crate::api::table::{PartialObjectMetadata, PartialObjectMetadataList, Table};
use crate::api::{discovery, space, status, GROUP};
use crate::authn::{self, PeerIdentity, RequestHeaderConfig, User};
use crate::authz::{self, Attributes, Authorizer, Decision};
use crate::metrics::{self, RequestMetrics};
use crate::spaces::{self, selector, ListOptions, Registry};
use crate::tls::{self, Acceptor};
use crate::watch;
use negotiate::{negotiate, Output, Target};

/// Response body: whole documents now, streams (watch) later.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Go opens extra connections past its peer's stream limit; kube-apiserver multiplexes every watch on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 1000;

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
    #[error("method {0} is not supported")]
    MethodNotAllowed(Method),
    #[error("not acceptable")]
    NotAcceptable,
    #[error("{0}")]
    BadRequest(String),
    #[error("unsupported patch type")]
    UnsupportedPatch,
}

/// Everything a request may need, shared by all connections.
pub struct App {
    pub registry: Registry,
    /// Set with `--access-mode=sar`: keeps the identities asking for spaces reviewed.
    pub reviewer: Option<Arc<crate::backend::review::Reviewer>>,
    pub writer: spaces::write::Writer,
    pub authorizer: Arc<Authorizer>,
    pub tokens: authn::token::TokenAuthenticator,
    pub metrics: RequestMetrics,
    pub registry_metrics: prometheus::Registry,
}

/// Accepts connections until the listener fails; each connection is served on its own task.
///
/// # Errors
/// When accepting fails fatally.
pub async fn serve(listener: TcpListener, acceptor: Arc<Acceptor>, app: Arc<App>) -> std::io::Result<()> {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Per-connection errors (e.g. too many open files) must not stop the server.
                tracing::warn!(%error, "Accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let settings = acceptor.current();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = tokio_rustls::TlsAcceptor::from(settings.server_config.clone());
            let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    tracing::debug!(%remote, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%remote, "TLS handshake timed out");
                    return;
                }
            };
            let peer = Arc::new(tls::peer_identity(stream.get_ref().1, &settings.request_header));
            let request_header = settings.request_header.clone();
            let service = hyper::service::service_fn(move |req| {
                let (app, peer, request_header) = (app.clone(), peer.clone(), request_header.clone());
                async move { Ok::<_, Infallible>(handle(&app, &request_header, &peer, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder.http2().max_concurrent_streams(MAX_CONCURRENT_STREAMS);
            if let Err(error) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%remote, %error, "Connection ended with an error");
            }
        });
    }
}

/// The request stack, outermost first.
async fn handle(
    app: &App,
    request_header: &RequestHeaderConfig,
    peer: &PeerIdentity,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    // Catch panics so that one bad request answers 500 instead of tearing down a connection shared by many users.
    let response = AssertUnwindSafe(route(app, request_header, peer, req))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(http.method = %method, http.route = %path, "Handler panicked");
            Err(RouteError::Internal)
        });
    let response = response.unwrap_or_else(|error| error.into_response());
    app.metrics
        .observe(&method, &path, response.status(), started.elapsed());
    response
}

/// An error on its way out: a module error to map, or an internal failure whose cause was already logged.
enum RouteError {
    Status(Error),
    Internal,
}

impl From<Error> for RouteError {
    fn from(error: Error) -> Self {
        RouteError::Status(error)
    }
}

impl RouteError {
    fn into_response(self) -> Response<Body> {
        let status = match self {
            RouteError::Status(error) => status_of(&error),
            RouteError::Internal => status::failure(
                500,
                "InternalError",
                "an error on the server has prevented the request from succeeding".to_owned(),
                None,
            ),
        };
        status_response(&status)
    }
}

/// The one place errors become `metav1.Status`.
fn status_of(error: &Error) -> Status {
    match error {
        Error::Authn(_) => status::failure(401, "Unauthorized", "Unauthorized".to_owned(), None),
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
        Error::Spaces(spaces::Error::InvalidOptions(message)) => status::failure(
            422,
            "Invalid",
            format!("ListOptions.meta.k8s.io \"\" is invalid: {message}"),
            None,
        ),
        Error::Spaces(spaces::Error::Watch(cause @ watch::Error::Expired { .. })) => {
            status::failure(410, "Expired", cause.to_string(), None)
        }
        Error::Spaces(spaces::Error::Watch(cause @ watch::Error::TooLarge { .. })) => {
            status::too_large(cause.to_string())
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
        Error::Spaces(spaces::Error::Invalid { name, causes }) => status::invalid(space::KIND, name, causes.clone()),
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
        Error::Spaces(spaces::Error::PreconditionFailed(message)) => {
            status::failure(409, "Conflict", message.clone(), None)
        }
        Error::Spaces(spaces::Error::BadRequest(message)) => status::bad_request(message.clone()),
        Error::Spaces(spaces::Error::Unprocessable(message)) => status::failure(422, "UnprocessableEntity", message.clone(), None),
        Error::Spaces(spaces::Error::ReadAfterCreateTimeout(name)) => status::failure(
            504,
            "Timeout",
            format!("spaces.{GROUP} \"{name}\" was created but is not visible yet; retry the get"),
            Some(status::details(space::RESOURCE, name)),
        ),
        Error::Spaces(spaces::Error::Kube { code, reason, message, causes }) => {
            let mut details = status::details(space::RESOURCE, "");
            details.causes = (!causes.is_empty()).then(|| causes.clone());
            status::failure(*code, reason, message.clone(), Some(details))
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
        Error::Spaces(cause @ spaces::Error::Busy(_)) => {
            let mut details = status::details(space::RESOURCE, "");
            details.retry_after_seconds = Some(1);
            status::failure(429, "TooManyRequests", cause.to_string(), Some(details))
        }
        Error::Spaces(cause @ spaces::Error::Template { .. }) => {
            tracing::warn!(error = %cause, "SpaceTemplate failed");
            status::failure(500, "InternalError", format!("Internal error occurred: {cause}"), None)
        }
        Error::UnsupportedPatch => status::failure(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".to_owned(),
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
        },
        Error::NoRoute => status::failure(404, "NotFound", error.to_string(), None),
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
    }
}

/// kube-apiserver's words for a continue token older than its window.
const CONTINUE_EXPIRED: &str =
    "The provided continue parameter is too old to display a consistent list result. You can \
start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder \
of the results. Continuing with the provided token results in an inconsistent list - objects that were created, \
modified, or deleted between the time the first chunk was returned and now may show up in the list.";

fn status_response(status: &Status) -> Response<Body> {
    let code = status
        .code
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, status)
}

fn json_response(code: StatusCode, body: &impl Serialize) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => bytes_response(code, "application/json", bytes),
        Err(error) => {
            tracing::error!(%error, "Encoding a response failed");
            bytes_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                b"encoding failed".to_vec(),
            )
        }
    }
}

fn bytes_response(code: StatusCode, content_type: &'static str, bytes: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(bytes)).boxed_unsync());
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn query_params(req: &Request<Incoming>) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
        // The first value counts, as in Go's url.Values.Get.
        params.entry(key.into_owned()).or_insert_with(|| value.into_owned());
    }
    params
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}

async fn route(
    app: &App,
    request_header: &RequestHeaderConfig,
    peer: &PeerIdentity,
    req: Request<Incoming>,
) -> Result<Response<Body>, RouteError> {
    let path = req.uri().path().trim_end_matches('/').to_owned();
    // Health is answered before authentication: kubelet probes carry no identity.
    match path.as_str() {
        "/healthz" | "/livez" => return Ok(bytes_response(StatusCode::OK, "text/plain", b"ok".to_vec())),
        "/readyz" => {
            return Ok(if app.registry.cache().is_ready() {
                bytes_response(StatusCode::OK, "text/plain", b"ok".to_vec())
            } else {
                bytes_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "text/plain",
                    b"[-]caches not synced\nreadyz check failed".to_vec(),
                )
            })
        }
        _ => {}
    }
    // Authentication: only a verified front proxy may assert an identity.
    let user = match authn::authenticate(request_header, peer, req.headers()).map_err(Error::from)? {
        Some(user) => user,
        None => {
            let token = authn::bearer_token(req.headers()).ok_or(Error::Authn(authn::Error::Unauthenticated))?;
            app.tokens.authenticate(token).await.map_err(Error::from)?
        }
    };
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    // Discovery is open to every authenticated user, as kube's system:discovery role makes it.
    if method == Method::GET {
        match segments.as_slice() {
            ["apis"] => return discovery_root(req.headers()),
            ["apis", GROUP] => return Ok(json_response(StatusCode::OK, &discovery::api_group())),
            ["apis", GROUP, "v1"] => return Ok(json_response(StatusCode::OK, &discovery::api_resource_list())),
            ["version"] => return Ok(json_response(StatusCode::OK, &version())),
            _ => {}
        }
    }
    // Authorization of everything else, in this server too.
    let resource = |verb: &str, name: &str| Attributes::Resource {
        verb: verb.to_owned(),
        resource: space::RESOURCE.to_owned(),
        name: name.to_owned(),
    };
    let attributes = match (&method, segments.as_slice()) {
        (&Method::GET, ["apis", GROUP, "v1", "spaces"]) => resource(if is_watch(&req) { "watch" } else { "list" }, ""),
        (&Method::GET, ["apis", GROUP, "v1", "accounts"]) => Attributes::Resource {
            verb: if is_watch(&req) { "watch" } else { "list" }.to_owned(),
            resource: spaces::accounts::RESOURCE.to_owned(),
            name: String::new(),
        },
        (&Method::GET, ["apis", GROUP, "v1", "accounts", name]) => Attributes::Resource {
            verb: "get".to_owned(),
            resource: spaces::accounts::RESOURCE.to_owned(),
            name: (*name).to_owned(),
        },
        (_, ["apis", GROUP, "v1", "accounts", ..]) => return Err(Error::MethodNotAllowed(method).into()),
        (&Method::POST, ["apis", GROUP, "v1", "spaces"]) => resource("create", ""),
        (&Method::GET, ["apis", GROUP, "v1", "spaces", name]) => resource("get", name),
        (&Method::PUT, ["apis", GROUP, "v1", "spaces", name]) => resource("update", name),
        (&Method::PATCH, ["apis", GROUP, "v1", "spaces", name]) => resource("patch", name),
        (&Method::DELETE, ["apis", GROUP, "v1", "spaces", name]) => resource("delete", name),
        (_, ["apis", GROUP, "v1", "spaces", ..]) => return Err(Error::MethodNotAllowed(method).into()),
        (&Method::GET, _) => Attributes::Path {
            verb: "get".to_owned(),
            path: path.clone(),
        },
        _ => return Err(Error::NoRoute.into()),
    };
    authorize(app, &user, attributes).await?;
    // Under SubjectAccessReview visibility, the caller's answers are in the index before its spaces are read.
    let hold = match (&app.reviewer, segments.as_slice()) {
        (Some(reviewer), ["apis", GROUP, "v1", "spaces", ..]) => Some(reviewer.hold(&user).await.map_err(Error::from)?),
        _ => None,
    };
    match (&method, segments.as_slice()) {
        (&Method::GET, ["apis", GROUP, "v1", "spaces"]) => list_spaces(app, &user, &req, hold),
        (&Method::GET, ["apis", GROUP, "v1", "spaces", name]) => get_space(app, &user, &req, name),
        (&Method::POST, ["apis", GROUP, "v1", "spaces"]) => create_space(app, &user, req).await,
        (&Method::GET, ["apis", GROUP, "v1", "accounts"]) => list_accounts(app, &user, &req),
        (&Method::GET, ["apis", GROUP, "v1", "accounts", name]) => get_account(app, &user, &req, name),
        (&Method::PUT, ["apis", GROUP, "v1", "spaces", name]) => update_space(app, &user, req, name).await,
        (&Method::PATCH, ["apis", GROUP, "v1", "spaces", name]) => patch_space(app, &user, req, name).await,
        (&Method::DELETE, ["apis", GROUP, "v1", "spaces", name]) => delete_space(app, &user, req, name).await,
        (&Method::GET, ["openapi", "v2"]) => Ok(openapi_document(req.headers(), crate::api::openapi::v2(), false)),
        (&Method::GET, ["openapi", "v3"]) => Ok(json_response(StatusCode::OK, &crate::api::openapi::v3_root())),
        (&Method::GET, ["openapi", "v3", "apis", GROUP, "v1"]) => {
            let hash = query_params(&req).get("hash").cloned();
            let document = crate::api::openapi::v3();
            match hash {
                // kube-openapi's answer to an outdated hash: the current URL.
                Some(hash) if hash != document.etag => {
                    let mut response = bytes_response(StatusCode::MOVED_PERMANENTLY, "text/plain", Vec::new());
                    if let Ok(location) = HeaderValue::from_str(&crate::api::openapi::v3_url()) {
                        response.headers_mut().insert(header::LOCATION, location);
                    }
                    Ok(response)
                }
                Some(_) => Ok(openapi_document(req.headers(), document, true)),
                None => Ok(openapi_document(req.headers(), document, false)),
            }
        }
        (&Method::GET, ["metrics"]) => Ok(bytes_response(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics::encode(&app.registry_metrics),
        )),
        _ => Err(Error::NoRoute.into()),
    }
}

/// An OpenAPI document with its ETag; 304 when the client has it. `immutable` when asked for by its hash.
fn openapi_document(headers: &HeaderMap, document: &crate::api::openapi::Document, immutable: bool) -> Response<Body> {
    let mut response = cacheable(headers, document, "application/json");
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if immutable {
            "public, immutable"
        } else {
            "no-cache, private"
        }),
    );
    response
}

/// A document with an ETag: 304 when the client's `If-None-Match` has it, the body otherwise; `Vary: Accept` always.
fn cacheable(
    headers: &HeaderMap,
    document: &crate::api::openapi::Document,
    content_type: &'static str,
) -> Response<Body> {
    let etag = format!("\"{}\"", document.etag);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if not_modified {
        let mut r = bytes_response(StatusCode::NOT_MODIFIED, content_type, Vec::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        r
    } else {
        bytes_response(StatusCode::OK, content_type, document.body.clone())
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn list_accounts(app: &App, user: &User, req: &Request<Incoming>) -> Result<Response<Body>, RouteError> {
    let params = query_params(req);
    if is_watch(req) {
        return watch_accounts(app, user, req, &params);
    }
    let output = negotiate(accept(req.headers()), Target::List).ok_or(Error::NotAcceptable)?;
    let (accounts, metadata) = spaces::accounts::list(app.registry.cache(), user);
    Ok(match output {
        Output::Table(version) => {
            let rows = spaces::accounts::rows(&accounts, include_object(&params)?, &version);
            json_response(
                StatusCode::OK,
                &Table::new(&version, metadata, spaces::accounts::columns(), rows),
            )
        }
        _ => {
            let items: Vec<serde_json::Value> = accounts.iter().map(spaces::accounts::view).collect();
            json_response(
                StatusCode::OK,
                &serde_json::json!({"apiVersion": crate::api::GROUP_VERSION, "kind": "AccountList", "metadata": metadata, "items": items}),
            )
        }
    })
}

/// Accounts are few and change rarely: their watch keeps no history. A resume from the current position continues; from
/// any other position it is told 410 Expired and relists, as client-go does for any expired watch.
fn watch_accounts(
    app: &App,
    user: &User,
    req: &Request<Incoming>,
    params: &HashMap<String, String>,
) -> Result<Response<Body>, RouteError> {
    let output = negotiate(accept(req.headers()), Target::Watch).ok_or(Error::NotAcceptable)?;
    let include = include_object(params)?;
    let flag = |key: &str| params.get(key).map(|v| matches!(v.as_str(), "true" | "1"));
    let initial_end = flag("sendInitialEvents") == Some(true);
    let bookmarks = flag("allowWatchBookmarks").unwrap_or(false);
    let (accounts, metadata) = spaces::accounts::list(app.registry.cache(), user);
    let current = metadata.resource_version.clone().unwrap_or_default();
    let requested = params
        .get("resourceVersion")
        .filter(|rv| !rv.is_empty() && *rv != "0")
        .cloned();
    let resume = requested.is_some() && !initial_end;
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let version = match &output {
        Output::Table(v) | Output::PartialObjectMetadata(v) => v.clone(),
        _ => "v1".to_owned(),
    };
    let mut columns_sent = false;
    let mut encode = move |kind: &str, account: Option<&crate::api::account::Account>, position: &str, end: bool| {
        let object = match (account, &output) {
            (Some(account), Output::Table(_)) => {
                let columns = if columns_sent {
                    Vec::new()
                } else {
                    spaces::accounts::columns()
                };
                columns_sent = true;
                let rows = spaces::accounts::rows(std::slice::from_ref(account), include, &version);
                let metadata = ListMeta {
                    resource_version: Some(position.to_owned()),
                    ..ListMeta::default()
                };
                serde_json::to_value(Table::new(&version, metadata, columns, rows)).unwrap_or_default()
            }
            (Some(account), Output::PartialObjectMetadata(_)) => {
                let mut meta = account.metadata.clone();
                meta.managed_fields = None;
                meta.resource_version = Some(position.to_owned());
                serde_json::to_value(PartialObjectMetadata::new(&version, meta)).unwrap_or_default()
            }
            (Some(account), _) => {
                let mut view = spaces::accounts::view(account);
                view["metadata"]["resourceVersion"] = serde_json::json!(position);
                view
            }
            (None, _) => {
                let mut meta = serde_json::json!({"resourceVersion": position});
                if end {
                    meta["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
                }
                serde_json::json!({"apiVersion": crate::api::GROUP_VERSION, "kind": spaces::accounts::KIND, "metadata": meta})
            }
        };
        let mut line = serde_json::to_vec(&serde_json::json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(WATCH_FRAMES);
    let mut first = Vec::new();
    if resume && requested.as_deref() != Some(current.as_str()) {
        let status = status::failure(
            410,
            "Expired",
            format!("too old resource version: {}", requested.unwrap_or_default()),
            None,
        );
        let mut line = serde_json::to_vec(&serde_json::json!({"type": "ERROR", "object": status})).unwrap_or_default();
        line.push(b'\n');
        first.push(Bytes::from(line));
        tokio::spawn(async move {
            for bytes in first {
                let _ = sender.send(bytes).await;
            }
        });
    } else {
        if !resume {
            for account in &accounts {
                first.push(encode("ADDED", Some(account), &current, false));
            }
        }
        if initial_end && bookmarks {
            first.push(encode("BOOKMARK", None, &current, true));
        }
        let seen = accounts.into_iter().map(|a| (a.name().to_owned(), a)).collect();
        let cache = app.registry.cache().clone();
        let user = user.clone();
        tokio::spawn(async move {
            for bytes in first {
                if sender.send(bytes).await.is_err() {
                    return;
                }
            }
            let encode = move |change: &spaces::accounts::Change, position: u64| {
                let (kind, account) = match change {
                    spaces::accounts::Change::Added(a) => ("ADDED", a),
                    spaces::accounts::Change::Modified(a) => ("MODIFIED", a),
                    spaces::accounts::Change::Deleted(a) => ("DELETED", a),
                };
                encode(kind, Some(account), &position.to_string(), false)
            };
            spaces::accounts::watch(cache, user, seen, timeout, encode, sender).await;
        });
    }
    Ok(watch_response(receiver))
}

fn get_account(app: &App, user: &User, req: &Request<Incoming>, name: &str) -> Result<Response<Body>, RouteError> {
    let params = query_params(req);
    let output = negotiate(accept(req.headers()), Target::Object).ok_or(Error::NotAcceptable)?;
    let account = spaces::accounts::get(app.registry.cache(), user, name).map_err(Error::from)?;
    Ok(match output {
        Output::Table(version) => {
            let rows = spaces::accounts::rows(std::slice::from_ref(&account), include_object(&params)?, &version);
            json_response(
                StatusCode::OK,
                &Table::new(&version, ListMeta::default(), spaces::accounts::columns(), rows),
            )
        }
        _ => json_response(StatusCode::OK, &spaces::accounts::view(&account)),
    })
}

/// A watch response: headers now, then each line the watcher task sends, flushed as it comes.
fn watch_response(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(hyper::body::Frame::data(bytes)), receiver))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Request bodies beyond this are refused (kube-apiserver's limit for most requests is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

async fn body(req: Request<Incoming>) -> Result<(http::request::Parts, Bytes), RouteError> {
    let (parts, body) = req.into_parts();
    let limited = http_body_util::Limited::new(body, MAX_BODY);
    match limited.collect().await {
        Ok(collected) => Ok((parts, collected.to_bytes())),
        Err(_) => Err(Error::BadRequest("the request body could not be read or is too large".to_owned()).into()),
    }
}

fn write_options(params: &HashMap<String, String>) -> Result<spaces::write::WriteOptions, Error> {
    let dry_run = match params.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(Error::BadRequest(format!(
                "dryRun: Unsupported value: {other:?}: supported values: \"All\""
            )))
        }
    };
    Ok(spaces::write::WriteOptions {
        dry_run,
        field_manager: params.get("fieldManager").filter(|m| !m.is_empty()).cloned(),
        force: matches!(params.get("force").map(String::as_str), Some("true" | "1")),
        field_validation: FieldValidation::parse(params.get("fieldValidation").map(String::as_str))
            .map_err(Error::BadRequest)?,
    })
}

fn query_of(parts: &http::request::Parts) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes()) {
        params.entry(key.into_owned()).or_insert_with(|| value.into_owned());
    }
    params
}

/// A Space from a JSON (or YAML) body, and the warnings its unknown fields earn under `validation`.
fn decode_space(bytes: &[u8], validation: FieldValidation) -> Result<(crate::api::Space, Vec<String>), Error> {
    let not_a_space = |e: String| Error::BadRequest(format!("the body of the request is not a valid Space: {e}"));
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .or_else(|_| {
            std::str::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| serde_saphyr::from_str(text).map_err(|e| e.to_string()))
        })
        .map_err(not_a_space)?;
    let (space, unknown) = crate::api::decode::space(value).map_err(|e| not_a_space(e.to_string()))?;
    let warnings = validation.judge(&unknown).map_err(Error::BadRequest)?;
    Ok((space, warnings))
}

/// The written space in the representation asked for, with a `Warning` header per warning (as kube-apiserver sends
/// them: `299 - "<text>"`).
fn written(
    code: StatusCode,
    space: &crate::api::Space,
    warnings: &[String],
    headers: &HeaderMap,
) -> Result<Response<Body>, RouteError> {
    let mut response = match negotiate(accept(headers), Target::Object).ok_or(Error::NotAcceptable)? {
        Output::PartialObjectMetadata(version) => {
            json_response(code, &PartialObjectMetadata::new(&version, space.metadata.clone()))
        }
        _ => json_response(code, space),
    };
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&format!("299 - {warning:?}")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

async fn create_space(app: &App, user: &User, req: Request<Incoming>) -> Result<Response<Body>, RouteError> {
    let (parts, bytes) = body(req).await?;
    let options = write_options(&query_of(&parts))?;
    let (space, warnings) = decode_space(&bytes, options.field_validation)?;
    let created = app.writer.create(user, space, &options).await.map_err(Error::from)?;
    written(StatusCode::CREATED, &created, &warnings, &parts.headers)
}

async fn update_space(
    app: &App,
    user: &User,
    req: Request<Incoming>,
    name: &str,
) -> Result<Response<Body>, RouteError> {
    let (parts, bytes) = body(req).await?;
    let options = write_options(&query_of(&parts))?;
    let (space, warnings) = decode_space(&bytes, options.field_validation)?;
    let updated = app
        .writer
        .update(user, name, space, &options)
        .await
        .map_err(Error::from)?;
    written(StatusCode::OK, &updated, &warnings, &parts.headers)
}

async fn patch_space(app: &App, user: &User, req: Request<Incoming>, name: &str) -> Result<Response<Body>, RouteError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let patch_type = match content_type.as_str() {
        "application/merge-patch+json" => spaces::write::PatchType::Merge,
        "application/json-patch+json" => spaces::write::PatchType::Json,
        "application/apply-patch+yaml" | "application/apply-patch+cbor" => spaces::write::PatchType::Apply,
        _ => return Err(Error::UnsupportedPatch.into()),
    };
    let (parts, bytes) = body(req).await?;
    let options = write_options(&query_of(&parts))?;
    let (patched, warnings) = app
        .writer
        .patch(user, name, patch_type, &bytes, &options)
        .await
        .map_err(Error::from)?;
    written(StatusCode::OK, &patched, &warnings, &parts.headers)
}

async fn delete_space(
    app: &App,
    user: &User,
    req: Request<Incoming>,
    name: &str,
) -> Result<Response<Body>, RouteError> {
    let (parts, bytes) = body(req).await?;
    let params = query_of(&parts);
    let mut options = write_options(&params)?;
    let delete: k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions = if bytes.is_empty() {
        Default::default()
    } else {
        serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    if delete.dry_run.as_ref().is_some_and(|d| d.iter().any(|v| v == "All")) {
        options.dry_run = true;
    }
    let propagation = delete
        .propagation_policy
        .clone()
        .or_else(|| params.get("propagationPolicy").cloned());
    match app
        .writer
        .delete(user, name, delete.preconditions, propagation, &options)
        .await
        .map_err(Error::from)?
    {
        spaces::write::Deleted::Terminating(space) => written(StatusCode::OK, &space, &[], &parts.headers),
        spaces::write::Deleted::Gone { name, uid } => {
            let mut details = status::details(space::RESOURCE, &name);
            details.uid = uid;
            let success = Status {
                status: Some("Success".to_owned()),
                details: Some(details),
                ..Status::default()
            };
            Ok(json_response(StatusCode::OK, &success))
        }
    }
}

fn is_watch(req: &Request<Incoming>) -> bool {
    matches!(query_params(req).get("watch").map(String::as_str), Some("1" | "true"))
}

async fn authorize(app: &App, user: &User, attributes: Attributes) -> Result<(), RouteError> {
    match app.authorizer.authorize(user, &attributes).await.map_err(Error::from)? {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) => Err(Error::Forbidden {
            user: user.name.clone(),
            attributes,
            reason,
        }
        .into()),
    }
}

fn discovery_root(headers: &HeaderMap) -> Result<Response<Body>, RouteError> {
    match negotiate(accept(headers), Target::Discovery).ok_or(Error::NotAcceptable)? {
        Output::DiscoveryV2 => {
            static DOCUMENT: std::sync::OnceLock<crate::api::openapi::Document> = std::sync::OnceLock::new();
            let document = DOCUMENT.get_or_init(|| crate::api::openapi::Document::new(&discovery::aggregated_v2()));
            let mut response = cacheable(
                headers,
                document,
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
            Ok(response)
        }
        _ => Ok(json_response(StatusCode::OK, &discovery::api_group_list())),
    }
}

fn version() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": "0",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}

fn list_options(params: &HashMap<String, String>) -> Result<ListOptions, Error> {
    let text = |key: &str| params.get(key).map_or("", String::as_str);
    let label_selector = selector::LabelSelector::parse(text("labelSelector")).map_err(spaces::Error::from)?;
    let field_selector = selector::FieldSelector::parse(text("fieldSelector")).map_err(spaces::Error::from)?;
    let limit = match params.get("limit").map(String::as_str) {
        None | Some("") => None,
        Some(limit) => Some(
            limit
                .parse::<i64>()
                .map_err(|_| Error::BadRequest(format!("limit: Invalid value: {limit:?}: must be an integer")))?,
        )
        .and_then(|l| usize::try_from(l).ok()),
    };
    let nonempty = |key: &str| params.get(key).filter(|v| !v.is_empty()).cloned();
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: nonempty("continue"),
        resource_version: nonempty("resourceVersion"),
        resource_version_match: nonempty("resourceVersionMatch"),
    })
}

fn include_object(params: &HashMap<String, String>) -> Result<crate::api::table::IncludeObject, Error> {
    negotiate::include_object(params.get("includeObject").map(String::as_str))
        .ok_or_else(|| Error::BadRequest("includeObject must be one of None, Metadata, Object".to_owned()))
}

fn list_spaces(
    app: &App,
    user: &User,
    req: &Request<Incoming>,
    hold: Option<crate::backend::review::Hold>,
) -> Result<Response<Body>, RouteError> {
    let params = query_params(req);
    if is_watch(req) {
        return watch_spaces(app, user, req, &params, hold);
    }
    if params.contains_key("sendInitialEvents") {
        return Err(Error::Spaces(spaces::Error::InvalidOptions(
            "sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list".to_owned(),
        ))
        .into());
    }
    let output = negotiate(accept(req.headers()), Target::List).ok_or(Error::NotAcceptable)?;
    let options = list_options(&params)?;
    let list = app.registry.list(user, &options).map_err(Error::from)?;
    Ok(match output {
        Output::Table(version) => {
            let rows = spaces::table::rows(&list.items, include_object(&params)?, &version, Timestamp::now());
            json_response(
                StatusCode::OK,
                &Table::new(&version, list.metadata, spaces::table::columns(), rows),
            )
        }
        Output::PartialObjectMetadataList(version) => {
            let items = list
                .items
                .into_iter()
                .map(|s| PartialObjectMetadata::new(&version, s.metadata))
                .collect();
            json_response(
                StatusCode::OK,
                &PartialObjectMetadataList::new(&version, list.metadata, items),
            )
        }
        _ => json_response(StatusCode::OK, &list),
    })
}

/// Events between the watcher task and the response body; small, since the watcher's own entry buffer absorbs bursts.
const WATCH_FRAMES: usize = 64;
/// Without `timeoutSeconds`, a watch ends after this long and the client re-establishes it.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

fn watch_spaces(
    app: &App,
    user: &User,
    req: &Request<Incoming>,
    params: &HashMap<String, String>,
    hold: Option<crate::backend::review::Hold>,
) -> Result<Response<Body>, RouteError> {
    let invalid = |message: &str| Error::Spaces(spaces::Error::InvalidOptions(message.to_owned()));
    let output = negotiate(accept(req.headers()), Target::Watch).ok_or(Error::NotAcceptable)?;
    let include = include_object(params)?;
    let mut options = list_options(params)?;
    let flag = |key: &str| params.get(key).map(|v| matches!(v.as_str(), "true" | "1"));
    let send_initial_events = flag("sendInitialEvents");
    let bookmarks = flag("allowWatchBookmarks").unwrap_or(false);
    let rv_match = options.resource_version_match.take();
    match (send_initial_events, rv_match.as_deref()) {
        (None, Some(_)) => {
            return Err(invalid(
                "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
            .into())
        }
        (Some(_), Some("NotOlderThan")) => {}
        (Some(_), _) => {
            return Err(invalid(
                "resourceVersionMatch: Unsupported value: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
            .into())
        }
        (None, None) => {}
    }
    if send_initial_events == Some(true) && !bookmarks {
        return Err(invalid(
            "allowWatchBookmarks: Required value: sendInitialEvents requires allowWatchBookmarks=true",
        )
        .into());
    }
    let requested = match options.resource_version.as_deref() {
        None | Some("0") => None,
        Some(rv) => Some(spaces::parse_resource_version(rv).map_err(Error::from)?),
    };
    let from = match (send_initial_events, requested) {
        // WatchList: the state at least as new as the requested position, then the initial-events-end bookmark.
        (Some(true), Some(position)) => match watch::not_older_than(&app.registry.cache().read().log, &position) {
            // Too large is an answer to the request; expired is told on the established watch, as kube-apiserver does.
            Err(error @ watch::Error::TooLarge { .. }) => return Err(Error::from(spaces::Error::from(error)).into()),
            Err(expired) => Err(expired),
            Ok(()) => Ok(watch::From::Now { initial_events: true }),
        },
        (Some(true), None) => Ok(watch::From::Now { initial_events: true }),
        (Some(false), None) => Ok(watch::From::Now { initial_events: false }),
        (None, None) => Ok(watch::From::Now { initial_events: true }),
        (_, Some(position)) => Ok(watch::From::Position(position)),
    };
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(WATCH_FRAMES);
    let encode = watch_encoder(output, include);
    let watch_options = watch::Options {
        bookmarks,
        initial_events_end: send_initial_events == Some(true),
        timeout,
    };
    match from.and_then(|from| watch::start(app.registry.cache(), user, options.filter(), from)) {
        Ok(started) => {
            tokio::spawn(async move {
                watch::run(started, watch_options, encode, sender).await;
                drop(hold);
            });
        }
        Err(error @ watch::Error::TooLarge { .. }) => return Err(Error::from(spaces::Error::from(error)).into()),
        Err(error @ watch::Error::Expired { .. }) => {
            // As kube-apiserver: the watch is established, then ends with a 410 ERROR event; client-go relists.
            let mut encode = encode;
            let item = watch::Item::Expired {
                message: error.to_string(),
            };
            let bytes = encode(&item);
            tokio::spawn(async move {
                let _ = sender.send(bytes).await;
            });
        }
    }
    Ok(watch_response(receiver))
}

/// Encodes watch items as newline-delimited `{"type", "object"}` events in the negotiated representation.
fn watch_encoder(output: Output, include: crate::api::table::IncludeObject) -> impl FnMut(&watch::Item) -> Bytes {
    let mut columns_sent = false;
    move |item| {
        let (kind, object) = match item {
            watch::Item::Event {
                kind,
                namespace,
                position,
            } => {
                let mut space = crate::api::Space::from_namespace(namespace);
                space.metadata.resource_version = Some(position.to_string());
                let object = match &output {
                    Output::Table(version) => {
                        let columns = if columns_sent {
                            Vec::new()
                        } else {
                            spaces::table::columns()
                        };
                        columns_sent = true;
                        let metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta {
                            resource_version: Some(position.to_string()),
                            ..Default::default()
                        };
                        let rows =
                            spaces::table::rows(std::slice::from_ref(&space), include, version, Timestamp::now());
                        serde_json::to_value(Table::new(version, metadata, columns, rows))
                    }
                    Output::PartialObjectMetadata(version) => {
                        serde_json::to_value(PartialObjectMetadata::new(version, space.metadata))
                    }
                    _ => serde_json::to_value(&space),
                };
                (kind.as_str(), object.unwrap_or_default())
            }
            watch::Item::Bookmark {
                position,
                initial_events_end,
            } => {
                let mut metadata = serde_json::json!({"resourceVersion": position.to_string()});
                if *initial_events_end {
                    metadata["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
                }
                let (api_version, kind) = match &output {
                    Output::PartialObjectMetadata(version) => {
                        (format!("meta.k8s.io/{version}"), "PartialObjectMetadata")
                    }
                    Output::Table(version) => (format!("meta.k8s.io/{version}"), "Table"),
                    _ => (crate::api::GROUP_VERSION.to_owned(), space::KIND),
                };
                let object = if kind == "Table" {
                    serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "rows": []})
                } else {
                    serde_json::json!({"apiVersion": api_version, "kind": kind, "metadata": metadata})
                };
                ("BOOKMARK", object)
            }
            watch::Item::Expired { message } => {
                let status = status::failure(410, "Expired", message.clone(), None);
                ("ERROR", serde_json::to_value(status).unwrap_or_default())
            }
        };
        let mut line = serde_json::to_vec(&serde_json::json!({"type": kind, "object": object})).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }
}

fn get_space(app: &App, user: &User, req: &Request<Incoming>, name: &str) -> Result<Response<Body>, RouteError> {
    let params = query_params(req);
    let output = negotiate(accept(req.headers()), Target::Object).ok_or(Error::NotAcceptable)?;
    let include = include_object(&params)?;
    let space = app.registry.get(user, name).map_err(Error::from)?;
    Ok(match output {
        Output::Table(version) => {
            let metadata = k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta {
                resource_version: space.metadata.resource_version.clone(),
                ..Default::default()
            };
            let rows = spaces::table::rows(std::slice::from_ref(&space), include, &version, Timestamp::now());
            json_response(
                StatusCode::OK,
                &Table::new(&version, metadata, spaces::table::columns(), rows),
            )
        }
        Output::PartialObjectMetadata(version) => {
            json_response(StatusCode::OK, &PartialObjectMetadata::new(&version, space.metadata))
        }
        _ => json_response(StatusCode::OK, &space),
    })
}
