//! The call client's bounded retries, against a local HTTP server that answers "try again" a given number of times.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;

use super::{clients_from, CALL_RETRIES};

/// Serves on a loopback port: the first `unavailable` requests get 503, the rest a Namespace. Counts the requests.
async fn server(unavailable: u32) -> (String, Arc<AtomicU32>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let seen = Arc::new(AtomicU32::new(0));
    let counter = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_: Request<hyper::body::Incoming>| {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let (code, body) = if n < unavailable {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                r#"{"kind":"Status","apiVersion":"v1","status":"Failure","code":503}"#,
                            )
                        } else {
                            (
                                StatusCode::OK,
                                r#"{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"a"}}"#,
                            )
                        };
                        let response = Response::builder()
                            .status(code)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(body.as_bytes())))
                            .expect("response");
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (url, seen)
}

fn namespaces(url: &str) -> Api<Namespace> {
    let config = kube::Config::new(url.parse().expect("url"));
    Api::all(clients_from(config).expect("clients").call)
}

#[tokio::test]
async fn the_call_client_retries_try_again_answers_and_then_succeeds() {
    let (url, seen) = server(CALL_RETRIES).await;
    let namespace = namespaces(&url).get("a").await.expect("answered after the retries");
    assert_eq!(namespace.metadata.name.as_deref(), Some("a"));
    assert_eq!(seen.load(Ordering::SeqCst), CALL_RETRIES + 1);
}

#[tokio::test]
async fn the_call_client_gives_up_after_its_retries() {
    let (url, seen) = server(u32::MAX).await;
    let error = namespaces(&url).get("a").await.expect_err("never answered");
    assert!(error.to_string().contains("503"), "{error}");
    assert_eq!(seen.load(Ordering::SeqCst), CALL_RETRIES + 1);
}
