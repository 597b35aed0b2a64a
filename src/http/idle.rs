//! Idle connections: a connection with no request in flight (a watch is in flight until its response ends) for
//! `--idle-connection-timeout` is closed, whatever its protocol, including one that never sent a byte after its TLS
//! handshake. Together with `--max-connections` this bounds what idle or abandoned connections cost.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use super::{Body, BoxError, Response};

/// One connection's requests in flight, and when it last did anything (milliseconds after it was accepted).
pub struct Activity {
    accepted: Instant,
    in_flight: AtomicUsize,
    last_ms: AtomicU64,
}

/// A request in flight, until its response body is dropped.
pub struct InFlight(Arc<Activity>);

// === impl Activity ===

impl Activity {
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            accepted: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.touch();
        InFlight(self.clone())
    }

    /// Completes once the connection has had nothing in flight for `timeout`.
    pub async fn idle_for(&self, timeout: Duration) {
        loop {
            let last = self.accepted + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            if self.in_flight.load(Ordering::Acquire) == 0 && last.elapsed() >= timeout {
                return;
            }
            // Busy: look again a timeout from now; idle: when the timeout since the last activity is up.
            let next = if self.in_flight.load(Ordering::Acquire) == 0 {
                last + timeout
            } else {
                Instant::now() + timeout
            };
            tokio::time::sleep_until(next).await;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// `inner`, each request counted in flight on `activity` until its response body is done with.
pub fn track<S, R>(
    inner: S,
    activity: Arc<Activity>,
) -> impl Service<R, Response = Response, Error = S::Error, Future: Send + 'static> + Clone + Send + 'static
where
    S: Service<R, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Send + 'static,
{
    tower::service_fn(move |request: R| {
        let in_flight = activity.begin();
        let call = inner.clone().oneshot(request);
        // Boxed: hyper keeps a request's future in the task that then streams its response, sized for the larger of
        // the two, for as long as a watch is open; a box is let go once the response is made.
        Box::pin(async move {
            let response = call.await?;
            Ok(response.map(|body| Tracked { body, in_flight }.boxed_unsync()))
        })
    })
}

/// A response body that keeps its request in flight.
struct Tracked {
    body: Body,
    #[allow(dead_code, reason = "held for its Drop")]
    in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight_for_the_whole_timeout() {
        let activity = Activity::new();
        let timeout = Duration::from_secs(60);
        let in_flight = activity.begin();
        let idle = tokio::time::timeout(Duration::from_secs(600), activity.idle_for(timeout));
        assert!(idle.await.is_err(), "a watch in flight for 10 minutes keeps it open");
        drop(in_flight);
        let ended = Instant::now();
        activity.idle_for(timeout).await;
        assert!(
            ended.elapsed() >= timeout,
            "idle for the timeout after its last response ended"
        );
        assert!(ended.elapsed() < timeout + Duration::from_secs(1));

        let silent = Activity::new();
        let accepted = Instant::now();
        silent.idle_for(timeout).await;
        assert!(accepted.elapsed() >= timeout && accepted.elapsed() < timeout + Duration::from_secs(1));
    }
}
