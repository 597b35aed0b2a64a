//! What the query asks of a list, a watch or a write, parsed into each module's own options.

use std::time::Duration;

use super::error::Error;
use super::negotiate;
use super::request_info::Query;
use crate::api::decode::FieldValidation;
use crate::api::table::IncludeObject;
use crate::spaces::{self, selector, FieldError, ListOptions, Problem};

/// Without `timeoutSeconds`, a watch ends after this long and the client re-establishes it.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Selectors, paging and resourceVersion of a list or watch.
///
/// # Errors
/// A selector that does not parse, or a limit that is not a number.
pub fn list(query: &Query) -> Result<ListOptions, Error> {
    let text = |key: &str| query.get(key).unwrap_or_default();
    let label_selector = selector::LabelSelector::parse(text("labelSelector")).map_err(spaces::Error::from)?;
    let field_selector = selector::FieldSelector::parse(text("fieldSelector")).map_err(spaces::Error::from)?;
    let limit = match query.nonempty("limit") {
        None => None,
        Some(limit) => Some(limit.parse::<i64>().map_err(|_| {
            Error::BadOption(FieldError::new("limit", Problem::Invalid, "must be an integer").with_value(limit))
        })?)
        .and_then(|l| usize::try_from(l).ok()),
    };
    let owned = |key: &str| query.nonempty(key).map(str::to_owned);
    Ok(ListOptions {
        label_selector,
        field_selector,
        limit,
        continue_token: owned("continue"),
        resource_version: owned("resourceVersion"),
        resource_version_match: owned("resourceVersionMatch"),
    })
}

/// dryRun, fieldManager, force and fieldValidation of a write.
///
/// # Errors
/// A dryRun other than `All`, or an unknown fieldValidation.
pub fn write(query: &Query) -> Result<spaces::write::WriteOptions, Error> {
    let dry_run = match query.nonempty("dryRun") {
        None => false,
        Some("All") => true,
        Some(other) => {
            return Err(Error::BadOption(FieldError::not_supported("dryRun", other, &["All"])));
        }
    };
    let field_validation = query.get("fieldValidation");
    Ok(spaces::write::WriteOptions {
        dry_run,
        field_manager: query.nonempty("fieldManager").map(str::to_owned),
        force: query.flag("force") == Some(true),
        field_validation: FieldValidation::parse(field_validation).ok_or_else(|| {
            Error::BadOption(FieldError::not_supported(
                "fieldValidation",
                field_validation.unwrap_or_default(),
                &FieldValidation::SUPPORTED,
            ))
        })?,
    })
}

/// How much of each object a Table row carries.
///
/// # Errors
/// A value other than None, Metadata or Object.
pub fn include_object(query: &Query) -> Result<IncludeObject, Error> {
    negotiate::include_object(query.get("includeObject"))
        .ok_or_else(|| Error::BadRequest("includeObject must be one of None, Metadata, Object".to_owned()))
}

/// How long a watch stays open.
#[must_use]
pub fn watch_timeout(query: &Query) -> Duration {
    query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .filter(|t| *t > 0)
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs)
}
