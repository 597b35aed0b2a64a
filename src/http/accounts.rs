//! `accounts`: list, watch and get of the accounts the caller belongs to, in the representation asked for.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ListMeta, ObjectMeta};

use super::error::Error;
use super::negotiate::{negotiate, Output, Target};
use super::request_info::Verb;
use super::response::WatchEncoder;
use super::{options, response, App, Call, Response};
use crate::api::account::Account;
use crate::api::table::{ColumnDefinition, IncludeObject, Table, TableRow};
use crate::spaces::{self, accounts};

/// Events between the watcher task and the response body.
const WATCH_FRAMES: usize = 64;

/// # Errors
/// An account the caller may not see, bad options, or a representation this server cannot give.
pub fn serve(app: &App, call: &Call) -> Result<Response, Error> {
    match call.verb() {
        Some(Verb::List) => list(app, call),
        Some(Verb::Watch) => watch(app, call),
        Some(Verb::Get) => get(app, call),
        _ => Err(Error::MethodNotAllowed(call.info.method.clone())),
    }
}

fn list(app: &App, call: &Call) -> Result<Response, Error> {
    let output = negotiate(call.accept(), Target::List).ok_or(Error::NotAcceptable)?;
    let (accounts, metadata) = accounts::list(app.registry.cache(), &call.user);
    Ok(match output {
        Output::Table(version) => {
            let rows = accounts::rows(&accounts, options::include_object(&call.info.query)?, &version);
            response::json(
                StatusCode::OK,
                &Table::new(&version, metadata, accounts::columns(), rows),
            )
        }
        _ => {
            let items: Vec<serde_json::Value> = accounts.iter().map(accounts::view).collect();
            response::json(
                StatusCode::OK,
                &serde_json::json!({"apiVersion": crate::api::GROUP_VERSION, "kind": "AccountList", "metadata": metadata, "items": items}),
            )
        }
    })
}

fn get(app: &App, call: &Call) -> Result<Response, Error> {
    let output = negotiate(call.accept(), Target::Object).ok_or(Error::NotAcceptable)?;
    let account = accounts::get(app.registry.cache(), &call.user, call.name())?;
    Ok(match output {
        Output::Table(version) => {
            let include = options::include_object(&call.info.query)?;
            let rows = accounts::rows(std::slice::from_ref(&account), include, &version);
            response::json(
                StatusCode::OK,
                &Table::new(&version, ListMeta::default(), accounts::columns(), rows),
            )
        }
        _ => response::json(StatusCode::OK, &accounts::view(&account)),
    })
}

/// Accounts are few and change rarely: their watch keeps no history. A resume from the current position continues; from
/// any other position it is told 410 Expired and relists, as client-go does for any expired watch.
fn watch(app: &App, call: &Call) -> Result<Response, Error> {
    let query = &call.info.query;
    let output = negotiate(call.accept(), Target::Watch).ok_or(Error::NotAcceptable)?;
    let include = options::include_object(query)?;
    let initial_end = query.flag("sendInitialEvents") == Some(true);
    let bookmarks = query.flag("allowWatchBookmarks").unwrap_or(false);
    let timeout: Duration = options::watch_timeout(query);
    let (accounts, metadata) = accounts::list(app.registry.cache(), &call.user);
    let current = metadata.resource_version.clone().unwrap_or_default();
    let requested = query.nonempty("resourceVersion").filter(|rv| *rv != "0");
    let resume = requested.is_some() && !initial_end;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(WATCH_FRAMES);
    if resume && requested != Some(current.as_str()) {
        let expired = Error::from(spaces::Error::AccountsExpired(requested.unwrap_or_default().to_owned()));
        let bytes = response::watch_error(&expired);
        tokio::spawn(async move {
            let _ = sender.send(bytes).await;
        });
        return Ok(response::watch(receiver));
    }
    let mut encoder = WatchEncoder::new(output, include);
    let mut first = Vec::new();
    if !resume {
        for account in &accounts {
            first.push(encoder.event(
                "ADDED",
                &Seen {
                    account,
                    position: &current,
                },
                &current,
            ));
        }
    }
    if initial_end && bookmarks {
        first.push(encoder.bookmark::<Seen>(&current, true));
    }
    let seen = accounts.into_iter().map(|a| (a.name().to_owned(), a)).collect();
    let cache = app.registry.cache().clone();
    let user = call.user.clone();
    tokio::spawn(async move {
        for bytes in first {
            if sender.send(bytes).await.is_err() {
                return;
            }
        }
        let encode = move |change: &accounts::Change, position: u64| {
            let (kind, account) = match change {
                accounts::Change::Added(a) => ("ADDED", a),
                accounts::Change::Modified(a) => ("MODIFIED", a),
                accounts::Change::Deleted(a) => ("DELETED", a),
            };
            let position = position.to_string();
            encoder.event(
                kind,
                &Seen {
                    account,
                    position: &position,
                },
                &position,
            )
        };
        accounts::watch(cache, user, seen, timeout, encode, sender).await;
    });
    Ok(response::watch(receiver))
}

/// An account as a watch event shows it: at `position`.
struct Seen<'a> {
    account: &'a Account,
    position: &'a str,
}

impl response::Watched for Seen<'_> {
    const KIND: &'static str = accounts::KIND;

    fn columns() -> Vec<ColumnDefinition> {
        accounts::columns()
    }

    fn rows(&self, include: IncludeObject, version: &str) -> Vec<TableRow> {
        accounts::rows(std::slice::from_ref(self.account), include, version)
    }

    fn metadata(&self) -> ObjectMeta {
        let mut metadata = self.account.metadata.clone();
        metadata.managed_fields = None;
        metadata.resource_version = Some(self.position.to_owned());
        metadata
    }

    fn whole(&self) -> serde_json::Value {
        let mut view = accounts::view(self.account);
        view["metadata"]["resourceVersion"] = serde_json::json!(self.position);
        view
    }
}
