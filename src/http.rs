//! The HTTP edge: accepts TLS connections and serves each request through the stack in [`stack`] (request info,
//! authentication, authorization, then one dispatch to the handlers of discovery, spaces, accounts, the web console and
//! the operators' endpoints). Every error, the ERROR event that ends a watch included, becomes a `metav1.Status` in
//! [`error::status_of`] and nowhere else; other modules say what went wrong in their own types.

pub mod accounts;
pub mod audit;
pub mod connections;
pub mod console;
pub mod discovery;
pub mod error;
pub mod idle;
pub mod media_type;
pub mod negotiate;
pub mod ops;
pub mod options;
pub mod request_info;
pub mod response;
pub mod spaces;
pub mod stack;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap};
use http_body_util::combinators::{BoxBody, UnsyncBoxBody};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::authn::{self, User};
use crate::authz::Authorizer;
use crate::config::Limits;
use crate::metrics::RequestMetrics;
use crate::spaces::Registry;
use crate::tls::{self, Acceptor};
pub use error::Error;
use request_info::{RequestInfo, Verb};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Request bodies, whatever their source (a connection, a test), once the stack has limited them.
pub type RequestBody = BoxBody<Bytes, BoxError>;
pub type Request = http::Request<RequestBody>;
/// Response bodies: whole documents, or streams (watch).
pub type Body = UnsyncBoxBody<Bytes, BoxError>;
pub type Response = http::Response<Body>;

/// Request bodies beyond this are refused (kube-apiserver's limit for most requests is 3 MiB): the stack limits them,
/// the handlers that read one answer 413. Here, not in either, so neither imports the other.
pub const MAX_BODY: usize = 3 * 1024 * 1024;
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Go opens extra connections past its peer's stream limit; kube-apiserver multiplexes every watch on one connection.
const MAX_CONCURRENT_STREAMS: u32 = 1000;
/// What HTTP/2 buffers per stream that its peer has not taken yet (hyper's default is 400 KiB): an unread watch holds
/// at most this and its WATCH_FRAMES until SEND_TIMEOUT closes it.
const MAX_SEND_BUFFER: usize = 64 * 1024;
/// How long an HTTP/1 client may take to send a request's headers (hyper's default, made to take effect by a timer).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// HTTP/2 pings: a peer that does not answer one within the timeout is gone, and its connection closed.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything a request may need, shared by all connections.
pub struct App {
    pub registry: Registry,
    /// Set with `--access-mode=sar`: keeps the identities asking for spaces reviewed.
    pub reviewer: Option<Arc<crate::backend::review::Reviewer>>,
    pub writer: crate::spaces::write::Writer,
    /// Every cluster served (the management cluster first).
    pub members: Arc<crate::clusters::Members>,
    pub authorizer: Arc<Authorizer>,
    pub tokens: authn::token::TokenAuthenticator,
    pub metrics: RequestMetrics,
    pub registry_metrics: prometheus::Registry,
    pub shutdown: Shutdown,
}

// === impl App ===

impl App {
    /// An App over `registry` whose kube-apiserver is `client` and which connects no other cluster: for tests and
    /// benches, which answer kube-apiserver's part in process.
    #[doc(hidden)]
    #[must_use]
    pub fn standalone(registry: Registry, client: kube::Client) -> Arc<Self> {
        let authorizer = Arc::new(Authorizer::new(client.clone()));
        let registry_metrics = prometheus::Registry::new();
        let members = Arc::new(crate::clusters::Members::new(
            client.clone(),
            client.clone(),
            authorizer.clone(),
        ));
        Arc::new(App {
            writer: crate::spaces::write::Writer::new(registry.cache().clone(), members.clone()),
            members,
            registry,
            reviewer: None,
            authorizer,
            tokens: authn::token::TokenAuthenticator::new(client),
            metrics: RequestMetrics::register(&registry_metrics),
            registry_metrics,
            shutdown: Shutdown::default(),
        })
    }
}

/// The server's shutdown, in two steps: draining (readiness fails, everything is still served), then closing (the
/// listener closes, open watches end between two events, connections finish what they have in flight and close).
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    draining: CancellationToken,
    closing: CancellationToken,
}

// === impl Shutdown ===

impl Shutdown {
    pub fn drain(&self) {
        self.draining.cancel();
    }

    pub fn close(&self) {
        self.draining.cancel();
        self.closing.cancel();
    }

    #[must_use]
    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Completes once the server closes.
    pub fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.closing.clone().cancelled_owned()
    }
}

/// Accepts connections until the server closes ([`Shutdown::close`]), each served on its own task; then stops
/// accepting, tells every connection to finish (HTTP/1.1: after its response in flight; HTTP/2: GOAWAY, then its open
/// streams) and returns once all have. At most [`Limits::max_connections`] are served at once (a new one past it is
/// closed as it is accepted), and one idle for [`Limits::idle_timeout`] is told to finish the same way.
///
/// # Errors
/// When accepting fails fatally.
pub async fn serve(
    listener: TcpListener,
    acceptor: Arc<Acceptor>,
    app: Arc<App>,
    limits: Limits,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let closing = app.shutdown.closing.clone();
    loop {
        let accepted = tokio::select! {
            () = closing.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Per-connection errors (e.g. too many open files) must not stop the server.
                tracing::warn!(%error, "Accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Watch events are small writes that must go out at once: Nagle's algorithm held each for tens of
        // milliseconds, waiting on kube-apiserver's delayed ACK.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%remote, %error, "Could not set TCP_NODELAY");
        }
        let Ok(permit) = open.clone().try_acquire_owned() else {
            tracing::debug!(%remote, limits.max_connections, "Too many connections; closing a new one");
            app.metrics.refused_connections.inc();
            continue;
        };
        let settings = acceptor.current();
        let (app, acceptor, closing) = (app.clone(), acceptor.clone(), closing.clone());
        connections.spawn(async move {
            let _permit = permit;
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
            let certificates = tls::PeerCertificates::of(stream.get_ref().1, &settings.request_header);
            let peer = Arc::new(stack::Peer::accepted(certificates, acceptor));
            let activity = idle::Activity::new();
            let service = TowerToHyperService::new(idle::track(stack::stack(app, peer), activity.clone()));
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // An HTTP/1 client silent for HEADER_READ_TIMEOUT, or an HTTP/2 peer that stops answering pings, is cut.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT);
            builder
                .http2()
                .timer(TokioTimer::new())
                .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
                .max_send_buf_size(MAX_SEND_BUFFER)
                .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
                .keep_alive_timeout(KEEP_ALIVE_TIMEOUT);
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = closing.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
                () = activity.idle_for(limits.idle_timeout) => {
                    tracing::debug!(%remote, "Closing an idle connection");
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%remote, %error, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    tracing::info!(
        open = connections.len(),
        "Listener closed; waiting for open connections to finish"
    );
    connections.wait().await;
    Ok(())
}

/// A request that passed authentication and authorization, as a resource's handlers receive it.
pub struct Call {
    pub info: RequestInfo,
    pub user: User,
    pub headers: HeaderMap,
    pub body: RequestBody,
}

// === impl Call ===

impl Call {
    /// The verb, for a resource request.
    #[must_use]
    pub fn verb(&self) -> Option<Verb> {
        match &self.info.target {
            request_info::Target::Resource { verb, .. } => Some(*verb),
            _ => None,
        }
    }

    /// The object's name (empty for collection verbs).
    #[must_use]
    pub fn name(&self) -> &str {
        match &self.info.target {
            request_info::Target::Resource { name, .. } => name,
            _ => "",
        }
    }

    #[must_use]
    pub fn accept(&self) -> Option<&str> {
        accept(&self.headers)
    }

    /// The body, leaving an empty one.
    #[must_use]
    pub fn take_body(mut self) -> (Self, RequestBody) {
        let empty = http_body_util::Empty::new().map_err(|never| match never {}).boxed();
        let body = std::mem::replace(&mut self.body, empty);
        (self, body)
    }
}

fn accept(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok())
}
