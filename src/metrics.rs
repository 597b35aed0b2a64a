//! `/metrics`: the Prometheus text encoding of the process registry, and the metrics recorded into it: requests (the
//! HTTP edge), kube-apiserver's reachability and the cache's staleness (backend), reviews (`--access-mode=sar`) and
//! connected clusters.

use std::time::Duration;

use http::{Method, StatusCode};
use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

/// Requests by verb, route class and code.
#[derive(Clone)]
pub struct RequestMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Connections closed on accepting them, past `--max-connections`.
    pub refused_connections: IntCounter,
}

// === impl RequestMetrics ===

impl RequestMetrics {
    /// # Panics
    /// At startup only, if the metric definitions are invalid or registered twice.
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "tenancy_apiserver_requests_total",
                "Requests served, by method, route and code.",
            ),
            &["method", "route", "code"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "tenancy_apiserver_request_duration_seconds",
                "Time to answer a request (to the first byte for watches).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let refused_connections = IntCounter::new(
            "tenancy_apiserver_refused_connections_total",
            "Connections closed as they were accepted, past --max-connections.",
        )
        .expect("valid metric");
        registry.register(Box::new(requests.clone())).expect("registered once");
        registry.register(Box::new(latency.clone())).expect("registered once");
        registry
            .register(Box::new(refused_connections.clone()))
            .expect("registered once");
        RequestMetrics {
            requests,
            latency,
            refused_connections,
        }
    }

    pub fn observe(&self, method: &Method, path: &str, code: StatusCode, elapsed: Duration) {
        let route = route_class(path);
        self.requests
            .with_label_values(&[method.as_str(), route, code.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method.as_str(), route])
            .observe(elapsed.as_secs_f64());
    }
}

/// A bounded label: names of spaces never become label values.
fn route_class(path: &str) -> &'static str {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match segments.as_slice() {
        ["apis", _, _, "spaces"] => "spaces",
        ["apis", _, _, "spaces", _] => "space",
        ["apis", ..] => "discovery",
        ["healthz" | "livez" | "readyz"] => "health",
        ["metrics"] => "metrics",
        ["openapi", ..] => "openapi",
        _ => "other",
    }
}

/// The registry in Prometheus' text format.
#[must_use]
pub fn encode(registry: &Registry) -> Vec<u8> {
    let mut buffer = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::warn!(%error, "Encoding metrics failed");
    }
    buffer
}

/// How current the server's picture of the cluster is. During a kube-apiserver outage the server keeps serving its
/// cache; these say that it does and for how long.
#[derive(Clone)]
pub struct BackendMetrics {
    /// Failed watches, by kind (each is retried with backoff).
    pub watch_errors: IntCounterVec,
    /// 1 while kube-apiserver answers the server's probe.
    pub up: IntGauge,
    /// Seconds since kube-apiserver last answered the probe: how stale the cache may be (0 while it answers).
    pub stale_seconds: Gauge,
}

// === impl BackendMetrics ===

impl BackendMetrics {
    /// # Panics
    /// At startup only, if the metric definitions are invalid or registered twice.
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "tenancy_apiserver_watch_errors_total",
                "Watches of kube-apiserver that failed (and were retried), by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let up = IntGauge::new(
            "tenancy_apiserver_backend_up",
            "1 while kube-apiserver answers the server's probe; the cache is served either way.",
        )
        .expect("valid metric");
        let stale_seconds = Gauge::new(
            "tenancy_apiserver_cache_stale_seconds",
            "Seconds since kube-apiserver last answered the server's probe (0 while it answers).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(watch_errors.clone()))
            .expect("registered once");
        registry.register(Box::new(up.clone())).expect("registered once");
        registry
            .register(Box::new(stale_seconds.clone()))
            .expect("registered once");
        BackendMetrics {
            watch_errors,
            up,
            stale_seconds,
        }
    }
}

/// What `--access-mode=sar` asks of kube-apiserver.
#[derive(Clone)]
pub struct ReviewMetrics {
    /// SubjectAccessReviews asked for visibility, by result (`allowed`, `denied`, `error`).
    pub reviews: IntCounterVec,
    /// Identities kept reviewed.
    pub identities: IntGauge,
}

// === impl ReviewMetrics ===

impl ReviewMetrics {
    /// # Panics
    /// At startup only, if the metric definitions are invalid or registered twice.
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let reviews = IntCounterVec::new(
            Opts::new(
                "tenancy_apiserver_access_reviews_total",
                "SubjectAccessReviews asked to decide visibility (--access-mode=sar), by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let identities = IntGauge::new(
            "tenancy_apiserver_access_reviewed_identities",
            "Identities whose visibility is kept reviewed (--access-mode=sar).",
        )
        .expect("valid metric");
        registry.register(Box::new(reviews.clone())).expect("registered once");
        registry
            .register(Box::new(identities.clone()))
            .expect("registered once");
        ReviewMetrics { reviews, identities }
    }
}

/// Connected clusters: whether each answered its last probe.
#[derive(Clone)]
pub struct ClusterMetrics {
    up: prometheus::IntGaugeVec,
    /// Watches of connected clusters that failed (and were retried), by kind.
    pub watch_errors: IntCounterVec,
}

// === impl ClusterMetrics ===

impl ClusterMetrics {
    /// # Panics
    /// At startup only, if the metric definitions are invalid or registered twice.
    #[must_use]
    pub fn register(registry: &Registry) -> Self {
        let up = prometheus::IntGaugeVec::new(
            Opts::new(
                "tenancy_apiserver_cluster_up",
                "1 when the connected cluster answered its last probe, else 0.",
            ),
            &["cluster"],
        )
        .expect("valid metric");
        registry.register(Box::new(up.clone())).expect("registered once");
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "tenancy_apiserver_cluster_watch_errors_total",
                "Watches of connected clusters' kube-apiservers that failed (and were retried), by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(watch_errors.clone()))
            .expect("registered once");
        ClusterMetrics { up, watch_errors }
    }

    pub fn up(&self, cluster: &str, up: bool) {
        self.up.with_label_values(&[cluster]).set(i64::from(up));
    }

    /// A disconnected cluster's series go.
    pub fn forget(&self, cluster: &str) {
        let _ = self.up.remove_label_values(&[cluster]);
    }
}

/// Where spaces live, as a gauge: `tenancy_local_spaces` 1 when the management cluster's namespaces are spaces, 0 on a
/// trunk-only install (`--local-spaces=false`).
///
/// # Panics
/// At startup only, if the metric is registered twice.
pub fn register_local_spaces(registry: &Registry, local_spaces: bool) {
    let gauge = IntGauge::new(
        "tenancy_local_spaces",
        "1 when the management cluster's own namespaces are spaces; 0 on a trunk-only install",
    )
    .expect("a valid metric");
    gauge.set(i64::from(local_spaces));
    registry.register(Box::new(gauge)).expect("registered once");
}
