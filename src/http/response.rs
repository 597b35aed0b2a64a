//! Building responses: whole JSON documents, Status bodies, cacheable documents with ETags, and watch streams with the
//! one encoder of their events ([`WatchEncoder`]) for every resource.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta, Status};
use serde::Serialize;

use super::error::{status_of, Error};
use super::negotiate::Output;
use super::{Body, BoxError, Response};
use crate::api::table::{ColumnDefinition, IncludeObject, PartialObjectMetadata, Table, TableRow};

/// A whole body.
#[must_use]
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

#[must_use]
pub fn bytes(code: StatusCode, content_type: &'static str, bytes: impl Into<Bytes>) -> Response {
    let mut response = Response::new(full(bytes));
    *response.status_mut() = code;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[must_use]
pub fn json(code: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(encoded) => bytes(code, "application/json", encoded),
        Err(error) => {
            tracing::error!(%error, "Encoding a response failed");
            bytes(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", "encoding failed")
        }
    }
}

/// A Status, with its code as the HTTP status.
#[must_use]
pub fn status(status: &Status) -> Response {
    let code = status
        .code
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json(code, status)
}

#[must_use]
pub fn error(error: &Error) -> Response {
    status(&status_of(error))
}

/// A document with an ETag: 304 when the client's `If-None-Match` has it, the body otherwise; `Vary: Accept` always.
#[must_use]
pub fn cacheable(
    headers: &HeaderMap,
    document: &crate::api::openapi::Document,
    content_type: &'static str,
) -> Response {
    let etag = format!("\"{}\"", document.etag);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut response = if not_modified {
        let mut r = bytes(StatusCode::NOT_MODIFIED, content_type, Bytes::new());
        r.headers_mut().remove(header::CONTENT_TYPE);
        r
    } else {
        bytes(StatusCode::OK, content_type, document.body.clone())
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

/// A watch response: headers now, then each line the watcher task sends, flushed as it comes.
#[must_use]
pub fn watch(receiver: tokio::sync::mpsc::Receiver<Bytes>) -> Response {
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, BoxError>(hyper::body::Frame::data(bytes)), receiver))
    });
    let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// One watch event line: `{"type": kind, "object": object}` and a newline.
#[must_use]
pub fn watch_event(kind: &str, object: &impl Serialize) -> Bytes {
    #[derive(Serialize)]
    struct Event<'a, T> {
        #[serde(rename = "type")]
        kind: &'a str,
        object: &'a T,
    }
    let mut line = serde_json::to_vec(&Event { kind, object }).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A watch's ERROR event: the error's Status, as kube-apiserver ends a watch it cannot continue.
#[must_use]
pub fn watch_error(error: &Error) -> Bytes {
    watch_event("ERROR", &status_of(error))
}

/// One object of a watched resource, in each representation a watch may be asked for. Its resourceVersion is the
/// event's position.
pub trait Watched {
    /// The kind a bookmark of this resource has, in the resource's own representation.
    const KIND: &'static str;
    fn columns() -> Vec<ColumnDefinition>;
    fn rows(&self, include: IncludeObject, version: &str) -> Vec<TableRow>;
    /// Its metadata, for PartialObjectMetadata.
    fn metadata(&self) -> ObjectMeta;
    /// The whole object.
    fn whole(&self) -> serde_json::Value;
}

/// Encodes one watch's events as newline-delimited `{"type", "object"}` lines in the negotiated representation: the
/// whole object, a Table (its columns on the first event only), or PartialObjectMetadata; bookmarks in the same
/// representation; errors as Status.
pub struct WatchEncoder {
    output: Output,
    include: IncludeObject,
    columns_sent: bool,
}

// === impl WatchEncoder ===

impl WatchEncoder {
    #[must_use]
    pub fn new(output: Output, include: IncludeObject) -> Self {
        WatchEncoder {
            output,
            include,
            columns_sent: false,
        }
    }

    /// An ADDED, MODIFIED or DELETED event of `object`, seen at `position`.
    pub fn event<T: Watched>(&mut self, kind: &str, object: &T, position: &str) -> Bytes {
        let encoded = match &self.output {
            Output::Table(version) => {
                let columns = if self.columns_sent { Vec::new() } else { T::columns() };
                self.columns_sent = true;
                let metadata = ListMeta {
                    resource_version: Some(position.to_owned()),
                    ..ListMeta::default()
                };
                let rows = object.rows(self.include, version);
                serde_json::to_value(Table::new(version, metadata, columns, rows))
            }
            Output::PartialObjectMetadata(version) => {
                serde_json::to_value(PartialObjectMetadata::new(version, object.metadata()))
            }
            _ => Ok(object.whole()),
        };
        watch_event(kind, &encoded.unwrap_or_default())
    }

    /// A BOOKMARK at `position`; the end of a WatchList's initial events when `initial_events_end`.
    #[must_use]
    pub fn bookmark<T: Watched>(&self, position: &str, initial_events_end: bool) -> Bytes {
        let mut metadata = serde_json::json!({"resourceVersion": position});
        if initial_events_end {
            metadata["annotations"] = serde_json::json!({"k8s.io/initial-events-end": "true"});
        }
        let object = match &self.output {
            Output::PartialObjectMetadata(version) => serde_json::json!({
                "apiVersion": format!("meta.k8s.io/{version}"), "kind": "PartialObjectMetadata", "metadata": metadata
            }),
            Output::Table(version) => serde_json::json!({
                "apiVersion": format!("meta.k8s.io/{version}"), "kind": "Table", "metadata": metadata, "rows": []
            }),
            _ => serde_json::json!({"apiVersion": crate::api::GROUP_VERSION, "kind": T::KIND, "metadata": metadata}),
        };
        watch_event("BOOKMARK", &object)
    }
}
