//! The request stack, outermost first: how every request is served, read top to bottom in [`stack`]. Each step is an
//! async fn of its state, the request and the rest of the stack ([`Next`]), so a step can answer early (401, 403,
//! 504) or pass the request on.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use http_body_util::BodyExt;
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use super::error::Error;
use super::request_info::{Access, RequestInfo, Resource, Target, Verb};
use super::{
    accounts, audit, connections, console, discovery, ops, response, spaces, App, BoxError, Call, Request, Response,
    MAX_BODY,
};
use crate::authn::{self, PeerIdentity, RequestHeaderConfig, User};
use crate::authz::Decision;
use crate::tls::{Acceptor, PeerCertificates};

/// How long a handler may take to answer (kube-apiserver's default `--request-timeout`); a watch answers at once and
/// then streams for its own timeout.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Who is on the other end of a connection: its client certificates, judged per request under the front-proxy settings
/// in force then (not those the connection was accepted under).
pub struct Peer {
    certificates: PeerCertificates,
    settings: Box<dyn Fn() -> Arc<RequestHeaderConfig> + Send + Sync>,
}

// === impl Peer ===

impl Peer {
    /// A connection accepted by `acceptor`, whose current settings judge each request.
    #[must_use]
    pub fn accepted(certificates: PeerCertificates, acceptor: Arc<Acceptor>) -> Self {
        Peer {
            certificates,
            settings: Box::new(move || acceptor.current().request_header.clone()),
        }
    }

    /// A peer that proved `identity` under settings that never change (in-process tests).
    #[must_use]
    pub fn fixed(identity: PeerIdentity, request_header: Arc<RequestHeaderConfig>) -> Self {
        Peer {
            certificates: PeerCertificates::assumed(identity, request_header.clone()),
            settings: Box::new(move || request_header.clone()),
        }
    }

    /// The settings in force and what this peer proves under them.
    fn now(&self) -> (Arc<RequestHeaderConfig>, PeerIdentity) {
        let settings = (self.settings)();
        let identity = self.certificates.identity(&settings);
        (settings, identity)
    }
}

/// The rest of the stack, as a step sees it.
pub type Next = BoxCloneService<Request, Response, Infallible>;

/// The whole stack for one connection, over any request body.
pub fn stack<B>(
    app: Arc<App>,
    peer: Arc<Peer>,
) -> impl Service<http::Request<B>, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    let handlers = app.clone();
    around(
        app,
        peer,
        tower::service_fn(move |request| dispatch(handlers.clone(), request).map(Ok::<_, Infallible>)),
    )
}

/// The steps of [`stack`] around `handlers` (the one dispatch; in tests, a handler that misbehaves on purpose).
pub(super) fn around<B, H>(
    app: Arc<App>,
    peer: Arc<Peer>,
    handlers: H,
) -> impl Service<http::Request<B>, Response = Response, Error = Infallible, Future: Send + 'static> + Clone + Send + 'static
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
    H: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    H::Future: Send + 'static,
{
    ServiceBuilder::new()
        .map_response(|response: http::Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                .on_request(())
                .on_response(())
                .on_failure(()),
        )
        .map_request(limit_body::<B>)
        .layer(step(app.clone(), observe))
        .map_response(|response: http::Response<_>| response.map(BodyExt::boxed_unsync))
        .layer(CatchPanicLayer::custom(panicked))
        .layer(step((), timeout))
        .layer(step((), request_info))
        .layer(step(app.clone(), until_shutdown))
        .layer(step((app.clone(), peer), authenticate))
        .layer(step(app, authorize))
        .service(handlers)
}

/// One span per request; authentication records the user in it.
/// One span per request, for the request's log line and everything logged while serving it (kube's client adds a span
/// per call to kube-apiserver inside it). Request info records the verb, authentication the user; `Audit-ID` is the ID
/// kube-apiserver gives the request in its audit log.
fn span<B>(request: &http::Request<B>) -> tracing::Span {
    let audit_id = request.headers().get("Audit-ID").and_then(|v| v.to_str().ok());
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        verb = tracing::field::Empty,
        user = tracing::field::Empty,
        audit_id,
    )
}

/// Body limit: reading more than [`MAX_BODY`] bytes fails, and the handler answers 413.
fn limit_body<B>(request: http::Request<B>) -> Request
where
    B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
    B::Error: Into<BoxError>,
{
    request.map(|body| http_body_util::Limited::new(body, MAX_BODY).boxed())
}

/// Metrics and the request's log line: every answer, panics' 500s included. Probes are logged at debug only (kubelet
/// asks every few seconds). For a watch, the latency is the time to its headers.
async fn observe(app: Arc<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = run(next, request).await;
    let (code, elapsed) = (response.status(), started.elapsed());
    app.metrics.observe(&method, &path, code, elapsed);
    let latency_ms = elapsed.as_secs_f64() * 1e3;
    if matches!(path.trim_end_matches('/'), "/healthz" | "/livez" | "/readyz") {
        tracing::debug!(code = code.as_u16(), latency_ms, "Request");
    } else {
        tracing::info!(code = code.as_u16(), latency_ms, "Request");
    }
    response
}

/// Panic catch: one bad request answers 500 instead of tearing down a connection shared by many users.
fn panicked(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("Handler panicked");
    response::error(&Error::Internal)
}

async fn timeout((): (), request: Request, next: Next) -> Response {
    tokio::time::timeout(REQUEST_TIMEOUT, run(next, request))
        .await
        .unwrap_or_else(|_| response::error(&Error::Timeout))
}

async fn request_info((): (), mut request: Request, next: Next) -> Response {
    let info = RequestInfo::new(request.method(), request.uri());
    tracing::Span::current().record("verb", info.verb());
    request.extensions_mut().insert(info);
    run(next, request).await
}

/// Shutdown: a watch ends when the server closes, between two events, as a normal end of its stream (never a reset), so
/// its client resumes — on another replica, behind a Service.
async fn until_shutdown(app: Arc<App>, request: Request, next: Next) -> Response {
    let watch = matches!(
        request.extensions().get::<RequestInfo>().map(|info| &info.target),
        Some(Target::Resource { verb: Verb::Watch, .. })
    );
    let response = run(next, request).await;
    if !watch {
        return response;
    }
    let closing = Box::pin(app.shutdown.closing());
    response.map(|body| EndsOnClose { body, closing }.boxed_unsync())
}

/// A response body that ends, at a frame boundary, once `closing` completes.
struct EndsOnClose<F> {
    body: super::Body,
    closing: std::pin::Pin<Box<F>>,
}

impl<F: Future<Output = ()>> http_body::Body for EndsOnClose<F> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.closing.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        std::pin::Pin::new(&mut this.body).poll_frame(cx)
    }
}

/// Authentication: a verified front proxy's headers, an x509 user, or a bearer token reviewed by kube-apiserver.
async fn authenticate((app, peer): (Arc<App>, Arc<Peer>), mut request: Request, next: Next) -> Response {
    let public = matches!(
        request.extensions().get::<RequestInfo>().map(RequestInfo::access),
        Some(Access::Public)
    );
    if public {
        return run(next, request).await;
    }
    let (settings, identity) = peer.now();
    let proxied = authn::authenticate(&settings, &identity, request.headers());
    let token = authn::bearer_token(request.headers()).map(str::to_owned);
    let user = match (proxied, token) {
        (Ok(Some(user)), _) => Ok(user),
        (Ok(None), Some(token)) => app.tokens.authenticate(&token).await,
        (Ok(None), None) => Err(authn::Error::Unauthenticated),
        (Err(error), _) => Err(error),
    };
    match user {
        Ok(user) => {
            tracing::Span::current().record("user", user.name.as_str());
            request.extensions_mut().insert(user);
            run(next, request).await
        }
        Err(error) => response::error(&Error::Authn(error)),
    }
}

/// Authorization, in this server too (never only in kube-apiserver).
async fn authorize(app: Arc<App>, request: Request, next: Next) -> Response {
    let access = request.extensions().get::<RequestInfo>().map(RequestInfo::access);
    let (Some(Access::Authorized(attributes)), Some(user)) = (access, request.extensions().get::<User>().cloned())
    else {
        return run(next, request).await;
    };
    match app.authorizer.authorize(&user, &attributes).await {
        Ok(Decision::Allow) => run(next, request).await,
        Ok(Decision::Deny(reason)) => response::error(&Error::Forbidden {
            user: user.name.clone(),
            attributes,
            reason,
        }),
        Err(error) => response::error(&Error::Authz(error)),
    }
}

/// The one dispatch: each target to its resource's handlers.
async fn dispatch(app: Arc<App>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let (Some(info), user) = (
        parts.extensions.remove::<RequestInfo>(),
        parts.extensions.remove::<User>(),
    ) else {
        return response::error(&Error::Internal);
    };
    let result = match (&info.target, user) {
        (Target::Probe(probe), _) => Ok(ops::probe(&app, *probe, info.query.get("verbose").is_some())),
        (Target::MethodNotAllowed, _) => Err(Error::MethodNotAllowed(info.method.clone())),
        (Target::NotFound, _) => Err(Error::NoRoute),
        // Authentication put a user in every request that is not a probe.
        (_, None) => Err(Error::Internal),
        (Target::Discovery(document), Some(_)) => discovery::serve(*document, &parts.headers),
        (Target::Document(document), Some(_)) => ops::document(&app, *document, &info, &parts.headers),
        (Target::Audit { cluster }, Some(_)) => audit::receive(&app, cluster.as_deref(), body).await,
        (
            Target::Resource {
                resource: Resource::Console,
                name,
                ..
            },
            Some(_),
        ) => console::serve(name, &parts.uri, &parts.headers, app.members.local_spaces()),
        (Target::Resource { resource, .. }, Some(user)) => {
            let resource = *resource;
            let call = Call {
                info,
                user,
                headers: parts.headers,
                body,
            };
            match resource {
                Resource::Spaces => spaces::serve(&app, call).await,
                Resource::Accounts => accounts::serve(&app, &call),
                Resource::ClusterConnections => connections::create(&app, call).await,
                Resource::SpaceSleep => spaces::sleep_or_wake(&app, call, true).await,
                Resource::SpaceWake => spaces::sleep_or_wake(&app, call, false).await,
                // Served above, from the raw URI (whose trailing slash request info trims).
                Resource::Console => Err(Error::Internal),
            }
        }
    };
    result.unwrap_or_else(|error| response::error(&error))
}

/// The rest of the stack's answer. Not an `async fn`: rustc cannot prove that future `Send` through the steps'
/// higher-ranked bounds.
fn run(next: Next, request: Request) -> impl Future<Output = Response> + Send + 'static {
    next.oneshot(request)
        .map(|result| result.unwrap_or_else(|never| match never {}))
}

/// A step of the stack: `f(state, request, next)`, as axum's `middleware::from_fn_with_state`.
#[derive(Clone)]
struct Step<St, F> {
    state: St,
    f: F,
}

fn step<St, F>(state: St, f: F) -> Step<St, F> {
    Step { state, f }
}

impl<St: Clone, F: Clone, S> Layer<S> for Step<St, F>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Service = StepService<St, F>;

    fn layer(&self, inner: S) -> Self::Service {
        StepService {
            state: self.state.clone(),
            f: self.f.clone(),
            next: BoxCloneService::new(inner),
        }
    }
}

#[derive(Clone)]
struct StepService<St, F> {
    state: St,
    f: F,
    next: Next,
}

impl<St, F, Fut> Service<Request> for StepService<St, F>
where
    St: Clone,
    F: Fn(St, Request, Next) -> Fut,
    Fut: Future<Output = Response> + Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // The rest of the stack is made ready when the step calls it (`oneshot`).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        (self.f)(self.state.clone(), request, self.next.clone()).map(Ok).boxed()
    }
}
