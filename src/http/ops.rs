//! The operators' endpoints: health probes, metrics, and the OpenAPI documents (each behind a `get` on its path).

use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::error::Error;
use super::request_info::{Document, Probe, RequestInfo};
use super::{response, App, Response};
use crate::api::openapi;

/// A health probe's answer; `verbose` (`?verbose`, as kube-apiserver's) lists the checks, and where spaces live.
#[must_use]
pub fn probe(app: &App, probe: Probe, verbose: bool) -> Response {
    match probe {
        Probe::Live => response::bytes(StatusCode::OK, "text/plain", "ok"),
        // First thing on SIGTERM: endpoints stop sending new requests while this replica still serves them.
        Probe::Ready if app.shutdown.is_draining() => response::bytes(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "[-]shutdown: shutting down\nreadyz check failed",
        ),
        Probe::Ready if app.registry.cache().is_ready() && verbose => {
            let spaces = if app.members.local_spaces() {
                "[+]local-spaces: on (this cluster's namespaces are spaces, and so are the connected clusters')"
            } else {
                "[+]local-spaces: off (a trunk-only install: spaces live in connected clusters only)"
            };
            let body = format!("[+]caches synced\n{spaces}\nreadyz check passed");
            response::bytes(StatusCode::OK, "text/plain", body)
        }
        Probe::Ready if app.registry.cache().is_ready() => response::bytes(StatusCode::OK, "text/plain", "ok"),
        Probe::Ready => response::bytes(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "[-]caches not synced\nreadyz check failed",
        ),
    }
}

/// # Errors
/// A path this server does not serve.
pub fn document(app: &App, document: Document, info: &RequestInfo, headers: &HeaderMap) -> Result<Response, Error> {
    match document {
        Document::OpenApiV2 => Ok(openapi_document(headers, openapi::v2(), false)),
        Document::OpenApiV3Root => Ok(response::json(StatusCode::OK, &openapi::v3_root())),
        Document::OpenApiV3Group => {
            let document = openapi::v3();
            Ok(match info.query.get("hash") {
                // kube-openapi's answer to an outdated hash: the current URL.
                Some(hash) if hash != document.etag => {
                    let mut response = response::bytes(StatusCode::MOVED_PERMANENTLY, "text/plain", "");
                    if let Ok(location) = HeaderValue::from_str(&openapi::v3_url()) {
                        response.headers_mut().insert(header::LOCATION, location);
                    }
                    response
                }
                Some(_) => openapi_document(headers, document, true),
                None => openapi_document(headers, document, false),
            })
        }
        Document::Metrics => Ok(response::bytes(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            crate::metrics::encode(&app.registry_metrics),
        )),
        Document::Unknown => Err(Error::NoRoute),
    }
}

/// An OpenAPI document with its ETag; 304 when the client has it. `immutable` when asked for by its hash.
fn openapi_document(headers: &HeaderMap, document: &openapi::Document, immutable: bool) -> Response {
    let mut response = response::cacheable(headers, document, "application/json");
    let cache_control = if immutable {
        "public, immutable"
    } else {
        "no-cache, private"
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    response
}
