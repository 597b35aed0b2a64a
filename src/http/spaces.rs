//! `spaces`: each verb's request read into the registry's or the writer's terms, and its answer written in the
//! representation asked for (JSON, Table, PartialObjectMetadata; watch streams of the same).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{DeleteOptions, ListMeta, ObjectMeta, Status};
use k8s_openapi::jiff::Timestamp;

use super::error::Error;
use super::negotiate::{negotiate, Output, Target};
use super::request_info::Verb;
use super::response::WatchEncoder;
use super::{media_type, options, response, App, Call, Response};
use crate::api::decode::FieldValidation;
use crate::api::table::{
    ColumnDefinition, IncludeObject, PartialObjectMetadata, PartialObjectMetadataList, Table, TableRow,
};
use crate::api::{space, status, Space};
use crate::authn::User;
use crate::backend::review::Hold;
use crate::spaces::{self as registry, table, write, FieldError, Problem};
use crate::watch;

/// Events between the watcher task and the response body; small, since the watcher's own entry buffer absorbs bursts
/// (and an unread watch holds these until it is closed).
const WATCH_FRAMES: usize = 16;

/// # Errors
/// Whatever the registry or the writer refuses, bad options or bodies, or a representation this server cannot give.
pub async fn serve(app: &Arc<App>, call: Call) -> Result<Response, Error> {
    // Under SubjectAccessReview visibility, the caller's answers are in the index before its spaces are read.
    let hold = match &app.reviewer {
        Some(reviewer) => Some(reviewer.hold(&call.user).await?),
        None => None,
    };
    match call.verb() {
        Some(Verb::List) => list(app, &call),
        Some(Verb::Watch) => watch(app, &call, hold),
        Some(Verb::Get) => get(app, &call),
        Some(Verb::Create) => create(app, call).await,
        Some(Verb::Update) => update(app, call).await,
        Some(Verb::Patch) => patch(app, call).await,
        Some(Verb::Delete) => delete(app, call).await,
        None => Err(Error::MethodNotAllowed(call.info.method.clone())),
    }
}

fn list(app: &App, call: &Call) -> Result<Response, Error> {
    let query = &call.info.query;
    if query.contains("sendInitialEvents") {
        let forbidden = "sendInitialEvents is forbidden for list";
        return Err(registry::Error::from(FieldError::new("sendInitialEvents", Problem::Forbidden, forbidden)).into());
    }
    let output = negotiate(call.accept(), Target::List).ok_or(Error::NotAcceptable)?;
    let list = app.registry.list(&call.user, &options::list(query)?)?;
    Ok(match output {
        Output::Table(version) => {
            let rows = table::rows(&list.items, options::include_object(query)?, &version, Timestamp::now());
            response::json(
                StatusCode::OK,
                &Table::new(&version, list.metadata, table::columns(), rows),
            )
        }
        Output::PartialObjectMetadataList(version) => {
            let items = list
                .items
                .into_iter()
                .map(|s| PartialObjectMetadata::new(&version, s.metadata))
                .collect();
            response::json(
                StatusCode::OK,
                &PartialObjectMetadataList::new(&version, list.metadata, items),
            )
        }
        _ => response::json(StatusCode::OK, &list),
    })
}

fn get(app: &App, call: &Call) -> Result<Response, Error> {
    let output = negotiate(call.accept(), Target::Object).ok_or(Error::NotAcceptable)?;
    let include = options::include_object(&call.info.query)?;
    let space = app.registry.get(&call.user, call.name())?;
    Ok(match output {
        Output::Table(version) => {
            let metadata = ListMeta {
                resource_version: space.metadata.resource_version.clone(),
                ..ListMeta::default()
            };
            let rows = table::rows(std::slice::from_ref(&space), include, &version, Timestamp::now());
            response::json(StatusCode::OK, &Table::new(&version, metadata, table::columns(), rows))
        }
        Output::PartialObjectMetadata(version) => {
            response::json(StatusCode::OK, &PartialObjectMetadata::new(&version, space.metadata))
        }
        _ => response::json(StatusCode::OK, &space),
    })
}

fn watch(app: &App, call: &Call, hold: Option<Hold>) -> Result<Response, Error> {
    let query = &call.info.query;
    let invalid =
        |field, problem, detail: &str| Error::from(registry::Error::from(FieldError::new(field, problem, detail)));
    let output = negotiate(call.accept(), Target::Watch).ok_or(Error::NotAcceptable)?;
    let include = options::include_object(query)?;
    let mut list_options = options::list(query)?;
    let send_initial_events = query.flag("sendInitialEvents");
    let bookmarks = query.flag("allowWatchBookmarks").unwrap_or(false);
    match (
        send_initial_events,
        list_options.resource_version_match.take().as_deref(),
    ) {
        (None, Some(_)) => {
            return Err(invalid(
                "resourceVersionMatch",
                Problem::Forbidden,
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            ))
        }
        (Some(_), Some("NotOlderThan")) | (None, None) => {}
        (Some(_), _) => {
            return Err(invalid(
                "resourceVersionMatch",
                Problem::Unsupported,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ))
        }
    }
    if send_initial_events == Some(true) && !bookmarks {
        return Err(invalid(
            "allowWatchBookmarks",
            Problem::Required,
            "sendInitialEvents requires allowWatchBookmarks=true",
        ));
    }
    let requested = match list_options.resource_version.as_deref() {
        None | Some("0") => None,
        Some(rv) => Some(registry::parse_resource_version(rv)?),
    };
    let from = match (send_initial_events, requested) {
        // WatchList: the state at least as new as the requested position, then the initial-events-end bookmark.
        (Some(true), Some(position)) => match watch::not_older_than(&app.registry.cache().read().log, &position) {
            // Too large is an answer to the request; expired is told on the established watch, as kube-apiserver does.
            Err(error @ watch::Error::TooLarge { .. }) => return Err(registry::Error::from(error).into()),
            Err(expired) => Err(expired),
            Ok(()) => Ok(watch::From::Now { initial_events: true }),
        },
        (Some(initial_events), None) => Ok(watch::From::Now { initial_events }),
        (None, None) => Ok(watch::From::Now { initial_events: true }),
        (_, Some(position)) => Ok(watch::From::Position(position)),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(WATCH_FRAMES);
    let mut encode = encoder(output, include);
    let watch_options = watch::Options {
        bookmarks,
        initial_events_end: send_initial_events == Some(true),
        timeout: options::watch_timeout(query),
    };
    match from.and_then(|from| watch::start(app.registry.cache(), &call.user, list_options.filter(), from)) {
        Ok(started) => {
            tokio::spawn(async move {
                watch::run(started, watch_options, encode, sender).await;
                drop(hold);
            });
        }
        Err(error @ watch::Error::TooLarge { .. }) => return Err(registry::Error::from(error).into()),
        Err(error) => {
            // As kube-apiserver: the watch is established, then ends with a 410 ERROR event; client-go relists.
            let bytes = encode(&watch::Item::Expired(error));
            tokio::spawn(async move {
                let _ = sender.send(bytes).await;
            });
        }
    }
    Ok(response::watch(receiver))
}

/// Encodes watch items in the negotiated representation.
fn encoder(output: Output, include: IncludeObject) -> impl FnMut(&watch::Item) -> Bytes {
    let mut encoder = WatchEncoder::new(output, include);
    move |item| match item {
        watch::Item::Event {
            kind,
            namespace,
            position,
        } => {
            let mut space = Space::from_namespace(namespace);
            space.metadata.resource_version = Some(position.to_string());
            encoder.event(kind.as_str(), &space, &position.to_string())
        }
        watch::Item::Bookmark {
            position,
            initial_events_end,
        } => encoder.bookmark::<Space>(&position.to_string(), *initial_events_end),
        watch::Item::Expired(error) => response::watch_error(&registry::Error::Watch(error.clone()).into()),
    }
}

impl response::Watched for Space {
    const KIND: &'static str = space::KIND;

    fn columns() -> Vec<ColumnDefinition> {
        table::columns()
    }

    fn rows(&self, include: IncludeObject, version: &str) -> Vec<TableRow> {
        table::rows(std::slice::from_ref(self), include, version, Timestamp::now())
    }

    fn metadata(&self) -> ObjectMeta {
        self.metadata.clone()
    }

    fn whole(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

// --- writes ---

/// A Space from a JSON or YAML body, and the warnings its unknown fields earn under `validation`.
fn decode_space(
    bytes: &[u8],
    format: media_type::Format,
    validation: FieldValidation,
) -> Result<(Space, Vec<String>), Error> {
    let not_a_space = |e: String| Error::BadRequest(format!("the body of the request is not a valid Space: {e}"));
    let value: serde_json::Value = media_type::decode(bytes, format).map_err(not_a_space)?;
    let (space, unknown) = crate::api::decode::space(value).map_err(|e| not_a_space(e.to_string()))?;
    let warnings = validation.judge(&unknown).map_err(registry::Error::from)?;
    Ok((space, warnings))
}

/// The written space in the representation asked for, with a `Warning` header per warning (as kube-apiserver sends
/// them: `299 - "<text>"`).
fn written(code: StatusCode, space: &Space, warnings: &[String], call: &Call) -> Result<Response, Error> {
    let mut response = match negotiate(call.accept(), Target::Object).ok_or(Error::NotAcceptable)? {
        Output::PartialObjectMetadata(version) => {
            response::json(code, &PartialObjectMetadata::new(&version, space.metadata.clone()))
        }
        _ => response::json(code, space),
    };
    for warning in warnings {
        if let Ok(value) = HeaderValue::from_str(&format!("299 - {warning:?}")) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

/// Runs a write to its end on a task of its own, whatever happens to the request: a client that disconnects, or a
/// request that times out, would otherwise drop it between a namespace and its owner binding, or with the account's
/// Lease held.
async fn to_the_end<T, F>(app: &Arc<App>, user: &User, write: impl FnOnce(Arc<App>, User) -> F) -> Result<T, Error>
where
    T: Send + 'static,
    F: Future<Output = Result<T, registry::Error>> + Send + 'static,
{
    let task = tokio::spawn(write(app.clone(), user.clone()));
    match task.await {
        Ok(result) => Ok(result?),
        Err(error) => {
            tracing::error!(%error, "A write's task failed");
            Err(Error::Internal)
        }
    }
}

async fn create(app: &Arc<App>, call: Call) -> Result<Response, Error> {
    let format = media_type::object(&call.headers)?;
    let (call, bytes) = media_type::body(call).await?;
    let options = options::write(&call.info.query)?;
    let (space, warnings) = decode_space(&bytes, format, options.field_validation)?;
    let created = to_the_end(app, &call.user, |app, user| async move {
        app.writer.create(&user, space, &options).await
    })
    .await?;
    written(StatusCode::CREATED, &created, &warnings, &call)
}

async fn update(app: &Arc<App>, call: Call) -> Result<Response, Error> {
    let format = media_type::object(&call.headers)?;
    let (call, bytes) = media_type::body(call).await?;
    let options = options::write(&call.info.query)?;
    let (space, warnings) = decode_space(&bytes, format, options.field_validation)?;
    let name = call.name().to_owned();
    let updated = to_the_end(app, &call.user, |app, user| async move {
        app.writer.update(&user, &name, space, &options).await
    })
    .await?;
    written(StatusCode::OK, &updated, &warnings, &call)
}

async fn patch(app: &Arc<App>, call: Call) -> Result<Response, Error> {
    let patch_type = media_type::patch(&call.headers)?;
    let (call, bytes) = media_type::body(call).await?;
    let options = options::write(&call.info.query)?;
    let name = call.name().to_owned();
    let (patched, warnings) = to_the_end(app, &call.user, |app, user| async move {
        app.writer.patch(&user, &name, patch_type, &bytes, &options).await
    })
    .await?;
    written(StatusCode::OK, &patched, &warnings, &call)
}

/// `POST spaces/<name>/sleep` and `/wake`: the space as it then is.
pub async fn sleep_or_wake(app: &Arc<App>, call: Call, sleep: bool) -> Result<Response, Error> {
    if let Some(reviewer) = &app.reviewer {
        reviewer.hold(&call.user).await?;
    }
    let space = app.writer.sleep_or_wake(&call.user, call.name(), sleep).await?;
    written(StatusCode::OK, &space, &[], &call)
}

async fn delete(app: &Arc<App>, call: Call) -> Result<Response, Error> {
    // A body's media type is judged only when there is a body, as kube-apiserver does; so is the body itself.
    let format = media_type::object(&call.headers);
    let (call, bytes) = media_type::body(call).await?;
    let mut options = options::write(&call.info.query)?;
    let delete: DeleteOptions = if bytes.is_empty() {
        DeleteOptions::default()
    } else {
        media_type::decode(&bytes, format?).map_err(|e| Error::BadRequest(format!("invalid DeleteOptions: {e}")))?
    };
    if delete.dry_run.as_ref().is_some_and(|d| d.iter().any(|v| v == "All")) {
        options.dry_run = true;
    }
    let propagation = delete
        .propagation_policy
        .clone()
        .or_else(|| call.info.query.get("propagationPolicy").map(str::to_owned));
    let name = call.name().to_owned();
    let deleted = to_the_end(app, &call.user, |app, user| async move {
        app.writer
            .delete(&user, &name, delete.preconditions, propagation, &options)
            .await
    })
    .await?;
    match deleted {
        write::Deleted::Terminating(space) => written(StatusCode::OK, &space, &[], &call),
        write::Deleted::Gone { name, uid } => {
            let mut details = status::details(space::RESOURCE, &name);
            details.uid = uid;
            let success = Status {
                status: Some("Success".to_owned()),
                details: Some(details),
                ..Status::default()
            };
            Ok(response::json(StatusCode::OK, &success))
        }
    }
}
