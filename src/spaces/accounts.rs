//! The read-only `accounts` view: each caller sees the Accounts they belong to (as a user, through a group, or as a
//! ServiceAccount), with their spaces, their quota's totals, what a new space of theirs may be given (their templates'
//! parameters) and where it may be made (the connected clusters they may create in); any other account answers
//! exactly like one that does not exist.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use k8s_openapi::jiff::Timestamp;
use serde_json::{json, Value};

use super::parameters::BUILT_IN;
use super::Error;
use crate::access::index::is_subject;
use crate::api::account::{Account, AccountParameter};
use crate::api::table::{age, ColumnDefinition, IncludeObject, PartialObjectMetadata, TableRow};
use crate::api::GROUP_VERSION;
use crate::authn::User;
use crate::state::{Cache, State};

pub const RESOURCE: &str = "accounts";
pub const KIND: &str = "Account";

/// The view of one stored Account.
#[must_use]
pub fn view(account: &Account) -> Value {
    let mut metadata = account.metadata.clone();
    metadata.managed_fields = None;
    metadata.finalizers = None;
    let status = account.status.clone().unwrap_or_default();
    let mut view = json!({
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "subjects": account.spec.subjects,
            "space": {
                "limit": account.spec.space.limit,
                "clusterRole": account.owner_role(),
                "templates": account.templates().0,
                "parameters": account.spec.space.parameters.clone().unwrap_or_default(),
                "clusters": account.spec.space.clusters.clone().unwrap_or_default(),
                "local": account.spec.space.local.unwrap_or(true),
            },
        },
        "status": {"spaces": status.spaces, "spaceCount": status.space_count},
    });
    if let Some(quota) = status.quota {
        view["status"]["quota"] = json!(quota);
    }
    view
}

/// `account` as its members see it: with the parameters its templates declare, the connected clusters it may create
/// spaces in (those it names, or every one when it names none; only connected ones, where a create can succeed), and its
/// AccountQuota's totals, if it has one.
fn as_members_see(state: &State, account: &Account) -> Account {
    let mut account = account.clone();
    let parameters = account
        .templates()
        .0
        .iter()
        .filter_map(|name| state.templates.get(name))
        .flat_map(|template| {
            let name = template.metadata.name.clone().unwrap_or_default();
            template
                .spec
                .parameters
                .iter()
                .filter(|p| !BUILT_IN.contains(&p.name.as_str()))
                .map(move |p| AccountParameter {
                    template: name.clone(),
                    parameter: p.clone(),
                })
        })
        .collect();
    account.spec.space.parameters = Some(parameters);
    let clusters = match &account.spec.space.clusters {
        Some(named) => named
            .iter()
            .filter(|c| state.connected.contains_key(*c))
            .cloned()
            .collect(),
        None => state.connected.keys().cloned().collect(),
    };
    account.spec.space.clusters = Some(clusters);
    account.spec.space.local = Some(state.local_spaces);
    let usage = crate::api::account::quota_in_force(state.quotas.values(), account.name())
        .map(|q| q.status.clone().unwrap_or_default().total);
    if let Some(usage) = usage {
        account.status.get_or_insert_with(Default::default).quota = Some(usage);
    }
    account
}

/// "pods 1/4, requests.cpu 500m/2": used of hard, per resource.
fn quota_cell(account: &Account) -> String {
    let Some(usage) = account.status.as_ref().and_then(|s| s.quota.as_ref()) else {
        return "<none>".to_owned();
    };
    usage
        .hard
        .iter()
        .map(|(key, hard)| {
            let used = usage.used.get(key).map_or("0", |q| q.0.as_str());
            format!("{key} {used}/{}", hard.0)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The accounts `user` belongs to, by name.
#[must_use]
pub fn list(cache: &Cache, user: &User) -> (Vec<Account>, ListMeta) {
    let state = cache.read();
    let accounts = state
        .accounts
        .values()
        .filter(|a| is_subject(&a.spec.subjects, user))
        .map(|a| as_members_see(&state, a))
        .collect();
    let metadata = ListMeta {
        resource_version: Some(state.accounts_revision.to_string()),
        ..ListMeta::default()
    };
    (accounts, metadata)
}

/// The account `name`, if `user` belongs to it.
///
/// # Errors
/// [`Error::NotFound`] when it does not exist or `user` is not a member.
pub fn get(cache: &Cache, user: &User, name: &str) -> Result<Account, Error> {
    let state = cache.read();
    state
        .accounts
        .get(name)
        .filter(|a| is_subject(&a.spec.subjects, user))
        .map(|a| as_members_see(&state, a))
        .ok_or_else(|| Error::AccountNotFound(name.to_owned()))
}

#[must_use]
pub fn columns() -> Vec<ColumnDefinition> {
    vec![
        ColumnDefinition {
            name: "Name",
            type_: "string",
            format: "name",
            description: "Name of the account.",
            priority: 0,
        },
        ColumnDefinition {
            name: "Spaces",
            type_: "integer",
            format: "",
            description: "Spaces the account owns.",
            priority: 0,
        },
        ColumnDefinition {
            name: "Limit",
            type_: "string",
            format: "",
            description: "Most spaces the account may own.",
            priority: 0,
        },
        ColumnDefinition {
            name: "Quota",
            type_: "string",
            format: "",
            description: "Used of the AccountQuota's hard limit, per resource, across all the account's spaces.",
            priority: 0,
        },
        ColumnDefinition {
            name: "Age",
            type_: "string",
            format: "",
            description: "Time since the account was created.",
            priority: 0,
        },
    ]
}

#[must_use]
pub fn rows(accounts: &[Account], include: IncludeObject, version: &str) -> Vec<TableRow> {
    let now = Timestamp::now();
    accounts
        .iter()
        .map(|account| {
            let status = account.status.clone().unwrap_or_default();
            let limit = account
                .spec
                .space
                .limit
                .map_or_else(|| "<none>".to_owned(), |l| l.to_string());
            let cells = vec![
                json!(account.name()),
                json!(status.space_count),
                json!(limit),
                json!(quota_cell(account)),
                json!(age(account.metadata.creation_timestamp.as_ref().map(|t| t.0), now)),
            ];
            let object = match include {
                IncludeObject::None => None,
                IncludeObject::Metadata => {
                    let mut metadata = account.metadata.clone();
                    metadata.managed_fields = None;
                    serde_json::to_value(PartialObjectMetadata::new(version, metadata)).ok()
                }
                IncludeObject::Object => Some(view(account)),
            };
            TableRow { cells, object }
        })
        .collect()
}

/// One change of the accounts a watcher's user belongs to.
pub enum Change {
    Added(Account),
    Modified(Account),
    Deleted(Account),
}

/// Streams the accounts `user` belongs to: what changes after `snapshot`, until the timeout or the client leaving.
/// Membership is re-evaluated on every change of the cache, so an account a user is added to or removed from comes
/// as ADDED or DELETED. `encode` turns each change, at the cache position it was seen at, into a watch line.
pub async fn watch(
    cache: std::sync::Arc<Cache>,
    user: User,
    mut seen: std::collections::BTreeMap<String, Account>,
    timeout: std::time::Duration,
    mut encode: impl FnMut(&Change, u64) -> bytes::Bytes,
    sink: tokio::sync::mpsc::Sender<bytes::Bytes>,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut changes = cache.changes();
    // The first pass compares at once: whatever changed since `seen` was taken is sent before any waiting.
    let mut first = true;
    loop {
        if !first {
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => return,
                () = sink.closed() => return,
                changed = changes.changed() => if changed.is_err() { return },
            }
        }
        first = false;
        let (now, position) = {
            let (accounts, metadata) = list(&cache, &user);
            let position = metadata.resource_version.and_then(|rv| rv.parse().ok()).unwrap_or(0);
            (
                accounts
                    .into_iter()
                    .map(|a| (a.name().to_owned(), a))
                    .collect::<std::collections::BTreeMap<_, _>>(),
                position,
            )
        };
        let mut out = Vec::new();
        for (name, account) in &now {
            match seen.get(name) {
                None => out.push(Change::Added(account.clone())),
                // The whole view: its quota's use, its templates' parameters and the connected clusters change it
                // too, and none of them moves the Account's resourceVersion.
                Some(before) if before != account => {
                    out.push(Change::Modified(account.clone()));
                }
                Some(_) => {}
            }
        }
        for (name, account) in &seen {
            if !now.contains_key(name) {
                out.push(Change::Deleted(account.clone()));
            }
        }
        seen = now;
        for change in &out {
            if sink
                .send_timeout(encode(change, position), crate::watch::SEND_TIMEOUT)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}
