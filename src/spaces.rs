//! The spaces registry: each verb on `spaces` mapped onto Namespaces, answered from the state and filtered by what
//! the caller may see. A space the caller cannot see is reported exactly as one that does not exist — in gets, lists,
//! pages, counts and continue tokens alike.

pub mod accounts;
pub mod paging;
pub mod parameters;
pub mod provision;
pub mod selector;
pub mod sleep;
pub mod table;
pub mod validation;
pub mod write;

use std::ops::Bound;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

use crate::api::{Space, SpaceList};
use crate::authn::User;
use crate::state::log::{Lookup, Position};
use crate::state::Cache;
use crate::watch::{self, Filter};
use paging::ContinueToken;
use selector::{FieldSelector, LabelSelector};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing or invisible: the same error either way.
    #[error("space {0:?} not found")]
    NotFound(String),
    /// Missing, or the caller is not a member: the same error either way.
    #[error("account {0:?} not found")]
    AccountNotFound(String),
    #[error(transparent)]
    Selector(#[from] selector::Error),
    #[error(transparent)]
    Paging(#[from] paging::Error),
    /// A list or watch option that cannot be honoured.
    #[error("invalid option {}", .0.field)]
    InvalidOption(FieldError),
    /// A patch option that cannot be honoured (checked before the space is looked up, as kube-apiserver does).
    #[error("invalid patch option {}", .0.field)]
    InvalidPatchOption(FieldError),
    #[error(transparent)]
    Watch(#[from] watch::Error),
    /// A watch of accounts resumed from a position other than the current one: accounts keep no history.
    #[error("accounts keep no history: resourceVersion {0} is not the current one")]
    AccountsExpired(String),
    /// A continue token whose snapshot has left the change log.
    #[error("continue token expired")]
    ContinueExpired,
    /// Visible, but the caller may not do this to the namespace.
    #[error("forbidden")]
    Forbidden {
        user: String,
        verb: String,
        name: String,
        reason: String,
    },
    #[error("invalid space {name:?}")]
    Invalid { name: String, errors: Vec<FieldError> },
    /// An update without the resourceVersion it replaces.
    #[error("space {0:?}: an update needs a resourceVersion")]
    NoResourceVersion(String),
    /// A body naming another space than the URL.
    #[error("the body names space {sent:?}, the URL {url:?}")]
    NameMismatch { sent: String, url: String },
    /// Unknown fields under `fieldValidation=Strict`.
    #[error(transparent)]
    Strict(#[from] crate::api::decode::StrictError),
    #[error("space {0:?} changed since it was read")]
    Conflict(String),
    #[error("space {0:?} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    BadRequest(String),
    /// A patch that does not apply, or whose result is not a Space.
    #[error("{0}")]
    Unprocessable(String),
    /// A delete's precondition (`UID` or `ResourceVersion`) that the space no longer meets.
    #[error("precondition on {field} failed")]
    PreconditionFailed {
        field: &'static str,
        wanted: String,
        actual: String,
    },
    #[error("space {0:?} was created but is not visible yet")]
    ReadAfterCreateTimeout(String),
    /// The connected cluster a write is for does not answer now.
    #[error("connected cluster {0:?} is unavailable")]
    ClusterUnavailable(String),
    /// kube-apiserver refused the namespace write: its answer, about the namespace (told as one about the space).
    #[error("kube-apiserver refused: {}", .0.message)]
    Kube(Box<kube::core::Status>),
    #[error("talking to kube-apiserver")]
    Backend(#[source] kube::Error),
    #[error(transparent)]
    Authz(#[from] crate::authz::Error),
    #[error("account {account:?} has reached its limit of {limit} spaces")]
    LimitReached { account: String, limit: i64 },
    /// A new space's share of its account's quota was not enforced (kube-controller-manager fills it in) in time.
    #[error("the account quota's share in space {0:?} was not in force in time; try again")]
    ShareNotInForce(String),
    /// Another create of the same account held its lock for too long.
    #[error("too many concurrent creates for {0}; try again")]
    Busy(String),
    #[error("SpaceTemplate {template:?} could not be applied: {message}")]
    Template { template: String, message: String },
    /// The caller is not a subject of the account it named (for the space `space`, when there is one yet).
    #[error("user {user:?} is not a member of account {account:?}")]
    AccountForbidden {
        user: String,
        account: String,
        space: Option<String>,
    },
}

/// What is wrong with one field (of a space, or of a list, watch or patch request's options), in this module's terms:
/// where, which kind of problem, the value refused (when the problem shows one), and the detail. `http::error` words
/// it as kube's field errors do.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldError {
    /// The field's path (`metadata.name`, `spec.templateParameters.tier`, `resourceVersionMatch`).
    pub field: String,
    pub problem: Problem,
    pub value: Option<String>,
    pub detail: String,
    /// For a value that is none of a fixed few: those few.
    pub supported: Vec<String>,
}

/// The kinds of field problems, as kube's field errors tell them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Problem {
    Invalid,
    Unsupported,
    Forbidden,
    Required,
    NotFound,
}

// === impl FieldError ===

impl FieldError {
    #[must_use]
    pub fn new(field: impl Into<String>, problem: Problem, detail: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            problem,
            value: None,
            detail: detail.into(),
            supported: Vec::new(),
        }
    }

    /// `value` of `field` is none of `supported`.
    #[must_use]
    pub fn not_supported(field: impl Into<String>, value: impl Into<String>, supported: &[&str]) -> Self {
        FieldError {
            supported: supported.iter().map(|s| (*s).to_owned()).collect(),
            ..FieldError::new(field, Problem::Unsupported, "").with_value(value)
        }
    }

    /// The same error, naming the value refused.
    #[must_use]
    pub fn with_value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }
}

impl From<FieldError> for Error {
    /// A list or watch option that cannot be honoured.
    fn from(option: FieldError) -> Self {
        Error::InvalidOption(option)
    }
}

// === impl Error ===

impl Error {
    /// A kube-apiserver error on the namespace `name`, told as an error on the space.
    #[must_use]
    pub fn from_kube(error: kube::Error, name: &str) -> Self {
        match error {
            kube::Error::Api(status) => match status.code {
                404 => Error::NotFound(name.to_owned()),
                409 if status.reason == "AlreadyExists" => Error::AlreadyExists(name.to_owned()),
                409 if status.reason == "Conflict" && status.message.contains("the object has been modified") => {
                    Error::Conflict(name.to_owned())
                }
                _ => Error::Kube(status),
            },
            other => Error::Backend(other),
        }
    }
}

/// What a list or watch asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

// === impl ListOptions ===

impl ListOptions {
    /// Whether a namespace passes the selectors.
    #[must_use]
    pub fn matches(&self, ns: &Namespace) -> bool {
        self.field_selector
            .matches(ns.metadata.name.as_deref().unwrap_or_default())
            && self.label_selector.matches(ns.metadata.labels.as_ref())
    }

    /// The selectors as a watch filter.
    #[must_use]
    pub fn filter(&self) -> Filter {
        let options = self.clone();
        Box::new(move |ns| options.matches(ns))
    }
}

/// Parses a resourceVersion a client sent.
///
/// # Errors
/// When it is not one this server writes.
pub fn parse_resource_version(rv: &str) -> Result<Position, Error> {
    Position::parse(rv).ok_or_else(|| {
        FieldError::new("resourceVersion", Problem::Invalid, "must be a number")
            .with_value(rv)
            .into()
    })
}

/// Spaces, served from the cache.
#[derive(Clone)]
pub struct Registry {
    cache: Arc<Cache>,
}

// === impl Registry ===

impl Registry {
    #[must_use]
    pub fn new(cache: Arc<Cache>) -> Self {
        Registry { cache }
    }

    #[must_use]
    pub fn cache(&self) -> &Arc<Cache> {
        &self.cache
    }

    /// The space `name`, if `user` may see it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist or is hidden from `user`.
    pub fn get(&self, user: &User, name: &str) -> Result<Space, Error> {
        let state = self.cache.read();
        let namespace = state
            .namespaces
            .get(name)
            .filter(|_| state.may_get(&self.cache.subjects(user), name))
            .cloned();
        drop(state);
        namespace
            .map(|ns| Space::from_namespace(&ns))
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// One page of the spaces `user` may see that match `options`, in name order, from one consistent snapshot.
    ///
    /// # Errors
    /// Bad or expired continue tokens, resourceVersions out of the log's window, invalid option combinations.
    pub fn list(&self, user: &User, options: &ListOptions) -> Result<SpaceList, Error> {
        let token = options
            .continue_token
            .as_deref()
            .map(ContinueToken::decode)
            .transpose()?;
        let state = self.cache.read();
        let current = state.log.position();
        let requested = match (
            &token,
            options.resource_version.as_deref(),
            options.resource_version_match.as_deref(),
        ) {
            (Some(token), _, _) => token.position,
            (None, None | Some(""), Some(_)) => {
                return Err(FieldError::new(
                    "resourceVersionMatch",
                    Problem::Forbidden,
                    "resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
                .into())
            }
            (None, None | Some("" | "0"), None) => current,
            (None, Some(rv), Some("Exact")) => {
                let position = parse_resource_version(rv)?;
                // A list shows the state between two changes; a position inside one is no such state.
                if position.through.is_some() {
                    return Err(watch::Error::Expired {
                        requested: rv.to_owned(),
                        oldest: state.log.oldest(),
                    }
                    .into());
                }
                position.after
            }
            (None, Some(rv), None | Some("NotOlderThan")) => {
                watch::not_older_than(&state.log, &parse_resource_version(rv)?)?;
                current
            }
            (None, Some(_), Some(other)) => {
                return Err(FieldError::not_supported("resourceVersionMatch", other, &["Exact", "NotOlderThan"]).into())
            }
        };
        let mut view = state.view(self.cache.subjects(user));
        let namespaces = if requested == current {
            state.namespaces.clone()
        } else {
            match state.log.lookup(requested, &state.namespaces) {
                Lookup::At { namespaces, later } => {
                    crate::state::log::undo(&mut view, &later);
                    namespaces
                }
                Lookup::Expired { .. } | Lookup::Foreign { .. } if token.is_some() => {
                    return Err(Error::ContinueExpired)
                }
                other => {
                    return Err(watch::Error::from_lookup(&requested, &other)
                        .unwrap_or(watch::Error::TooLarge {
                            requested: requested.to_string(),
                            current,
                        })
                        .into())
                }
            }
        };
        drop(state);

        let after = token.as_ref().map(|t| t.start.clone());
        let candidates: Box<dyn Iterator<Item = Arc<Namespace>>> = if view.sees_all_of_a_cluster() {
            let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
            Box::new(
                namespaces
                    .range((lower, Bound::Unbounded))
                    .filter(|(name, _)| view.sees(name))
                    .map(|(_, ns)| ns.clone()),
            )
        } else {
            let mut names: Vec<&String> = view
                .granted_names()
                .filter(|name| after.as_ref().is_none_or(|after| *name > after))
                .collect();
            names.sort();
            Box::new(names.into_iter().filter_map(|name| namespaces.get(name).cloned()))
        };
        let mut matching = candidates.filter(|ns| options.matches(ns));
        let limit = options.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let items: Vec<Space> = matching
            .by_ref()
            .take(limit)
            .map(|ns| Space::from_namespace(&ns))
            .collect();
        let remaining = matching.count();
        let mut metadata = ListMeta {
            resource_version: Some(requested.to_string()),
            ..ListMeta::default()
        };
        if remaining > 0 {
            let last = items.last().map(|s| s.name().to_owned()).unwrap_or_default();
            metadata.continue_ = Some(
                ContinueToken {
                    position: requested,
                    start: last,
                }
                .encode(),
            );
            metadata.remaining_item_count = i64::try_from(remaining).ok();
        }
        Ok(SpaceList::new(items, metadata))
    }
}
