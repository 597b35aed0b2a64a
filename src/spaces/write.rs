//! Writes to spaces: create, update, patch (merge, JSON, apply) and delete, each carried out on the namespace with the
//! server's identity — after the server has authorized the caller against that namespace itself, since kube-apiserver
//! cannot scope rights on a cluster-scoped space to one namespace.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Preconditions;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::provision::{Owner, Plan, Provisioner};
use super::sleep::Sleeper;
use super::{validation, Error, FieldError, Problem};
use crate::access::index::is_subject;
use crate::api::account::Account;
use crate::api::decode::{self, FieldValidation};
use crate::api::Space;
use crate::authn::User;
use crate::clusters::Members;
use crate::state::log::{Lookup, Position};
use crate::state::Cache;
use place::Place;

mod create;
mod place;
mod sleep;

/// Set in the environment, the server aborts right after creating a space's namespace (tests prove repair with it).
/// Only in builds with the `fault-injection` feature, which the e2e environment turns on; never in a release binary.
#[cfg(feature = "fault-injection")]
pub const CRASH_AFTER_NAMESPACE: &str = "TENANCY_FAULT_CRASH_AFTER_NAMESPACE";
/// How long a create waits for its space to be visible to its creator through this server.
const READ_AFTER_CREATE: Duration = Duration::from_secs(10);
/// How long an update, patch or delete waits for the state to show it before answering anyway.
const READ_AFTER_WRITE: Duration = Duration::from_secs(5);

/// Query options of a write.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub force: bool,
    pub field_validation: FieldValidation,
}

/// The patch formats spaces accept (strategic merge patch is refused before this point).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Apply,
}

/// What a delete answers: the space as it now is (Terminating), or a success Status when it is gone already.
pub enum Deleted {
    Terminating(Box<Space>),
    Gone { name: String, uid: Option<String> },
}

/// Whether `user` is a member of `account`: one of its subjects, and the Account is not being deleted.
fn member_of(account: &Account, user: &User) -> bool {
    account.metadata.deletion_timestamp.is_none() && is_subject(&account.spec.subjects, user)
}

pub struct Writer {
    cache: Arc<Cache>,
    /// Every cluster served: a space's namespace is written in its own.
    members: Arc<Members>,
    provisioner: Arc<Provisioner>,
    /// Sends spaces to sleep and wakes them on request (`spaces/<name>/sleep`, `/wake`).
    sleeper: Arc<Sleeper>,
}

// === impl Writer ===

impl Writer {
    #[must_use]
    pub fn new(cache: Arc<Cache>, members: Arc<Members>) -> Self {
        Writer {
            provisioner: Arc::new(Provisioner::new(members.clone(), cache.clone())),
            cache,
            members,
            sleeper: Arc::default(),
        }
    }

    /// This writer, counting the wake-ups it makes in `sleeper`'s metrics.
    #[must_use]
    pub fn with_sleeper(mut self, sleeper: Arc<Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }

    /// The steps of making a space in the management cluster, shared with the controllers.
    #[must_use]
    pub fn provisioner(&self) -> Arc<Provisioner> {
        self.provisioner.clone()
    }

    /// The namespace behind a space `user` may see.
    fn visible(&self, user: &User, name: &str) -> Result<Arc<Namespace>, Error> {
        let state = self.cache.read();
        state
            .namespaces
            .get(name)
            .filter(|_| state.may_get(&self.cache.subjects(user), name))
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// Whether `rv` — a namespace resourceVersion from a get or list, or a watch position — shows the namespace as it
    /// is now.
    fn is_current(&self, current: &Namespace, rv: &str) -> bool {
        let now = current.metadata.resource_version.as_deref().unwrap_or_default();
        if rv == now {
            return true;
        }
        let Some(position) = Position::parse(rv) else {
            return false;
        };
        // A watch event inside a change carries `<position>.<its space>`: that space as it was after the change.
        let position = position.after + u64::from(position.through.is_some());
        let name = current.metadata.name.as_deref().unwrap_or_default();
        let state = self.cache.read();
        match state.log.lookup(position, &state.namespaces) {
            Lookup::At { namespaces, .. } => namespaces
                .get(name)
                .and_then(|ns| ns.metadata.resource_version.as_deref())
                .is_some_and(|seen| seen == now),
            _ => false,
        }
    }

    /// Waits, on the change log rather than a timer, until the state holds space `name` as `written` (at its
    /// resourceVersion or later), or no longer holds it when `written` is `None` (a delete that finished): a get, list
    /// or watch through this server right after the answer then shows the write, as kube-apiserver's would. The write
    /// has happened either way, so a state that does not catch up within [`READ_AFTER_WRITE`] (its cluster gone
    /// quiet) delays the answer, never fails it.
    async fn wait_seen(&self, name: &str, written: Option<&Space>, options: &WriteOptions) {
        if options.dry_run {
            return;
        }
        let revision = written.map(|space| revision_of(space.metadata.resource_version.as_deref()));
        let deadline = tokio::time::Instant::now() + READ_AFTER_WRITE;
        loop {
            let mut entries = {
                let state = self.cache.read();
                let seen = match (state.namespaces.get(name), revision) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(ns), Some(revision)) => revision_of(ns.metadata.resource_version.as_deref()) >= revision,
                };
                if seen {
                    return;
                }
                self.cache.subscribe(&state)
            };
            match tokio::time::timeout_at(deadline, entries.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) | Err(_) => {
                    tracing::debug!(space = %name, "The state did not show a write in time; answering anyway");
                    return;
                }
            }
        }
    }

    // --- update and patch ---

    /// Replaces a space's labels and annotations (all else is the namespace's or the server's).
    ///
    /// # Errors
    /// Not visible, not allowed, invalid, or stale.
    pub async fn update(&self, user: &User, name: &str, space: Space, options: &WriteOptions) -> Result<Space, Error> {
        let current = self.visible(user, name)?;
        let place = self.place(name)?;
        place.authorize(user, "update", name).await?;
        same_name(&space, name)?;
        let Some(rv) = space.metadata.resource_version.clone().filter(|rv| !rv.is_empty()) else {
            return Err(Error::NoResourceVersion(name.to_owned()));
        };
        let written = self.replace(user, &place, &current, space, &rv, options).await?;
        self.wait_seen(name, Some(&written), options).await;
        Ok(written)
    }

    /// Applies a merge or JSON patch to the space as it is, or a server-side apply to its namespace; the patched space
    /// and the warnings for its unknown fields.
    ///
    /// # Errors
    /// Not visible, not allowed, a patch that does not apply, an invalid result, unknown fields under
    /// `fieldValidation=Strict`, or a stale precondition.
    pub async fn patch(
        &self,
        user: &User,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<(Space, Vec<String>), Error> {
        // Patch options are checked before the space is looked up, as kube-apiserver checks them.
        let manager = options.field_manager.clone();
        if patch_type == PatchType::Apply && manager.is_none() {
            return Err(Error::InvalidPatchOption(FieldError::new(
                "fieldManager",
                Problem::Required,
                "is required for apply patch",
            )));
        }
        let current = self.visible(user, name)?;
        let place = self.place(name)?;
        place.authorize(user, "patch", name).await?;
        let mut document =
            serde_json::to_value(Space::from_namespace(&current)).map_err(|e| Error::BadRequest(e.to_string()))?;
        match patch_type {
            PatchType::Apply => {
                let manager = manager.unwrap_or_default();
                let (written, warnings) = self.apply(&place, &current, body, &manager, options).await?;
                self.wait_seen(name, Some(&written), options).await;
                return Ok((written, warnings));
            }
            PatchType::Merge => {
                let patch: Value =
                    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON patch: {e}")))?;
                json_patch::merge(&mut document, &patch);
            }
            PatchType::Json => {
                let patch: json_patch::Patch =
                    serde_json::from_slice(body).map_err(|e| Error::BadRequest(format!("invalid JSON patch: {e}")))?;
                // Unsafe only in that a failed patch leaves the document half-patched; it is discarded then. (The
                // undoing variant can panic on patches that move a value into itself.)
                json_patch::patch_unsafe(&mut document, &patch).map_err(|e| Error::Unprocessable(e.to_string()))?;
            }
        }
        let (space, unknown) = decode::space(document).map_err(|e| Error::Unprocessable(e.to_string()))?;
        let warnings = options.field_validation.judge(&unknown)?;
        let rv = space
            .metadata
            .resource_version
            .clone()
            .or_else(|| current.metadata.resource_version.clone())
            .unwrap_or_default();
        let patched = self.replace(user, &place, &current, space, &rv, options).await?;
        self.wait_seen(name, Some(&patched), options).await;
        Ok((patched, warnings))
    }

    /// Server-side apply: the space's labels and annotations become an apply configuration of the namespace, so field
    /// ownership and conflicts are kube-apiserver's own, kept in the namespace's managedFields.
    async fn apply(
        &self,
        place: &Place,
        current: &Namespace,
        body: &[u8],
        manager: &str,
        options: &WriteOptions,
    ) -> Result<(Space, Vec<String>), Error> {
        let name = current.metadata.name.clone().unwrap_or_default();
        let text = std::str::from_utf8(body).map_err(|_| Error::BadRequest("apply body is not UTF-8".to_owned()))?;
        let sent: Value = serde_json::from_str(text)
            .or_else(|_| serde_saphyr::from_str::<Value>(text))
            .map_err(|e| Error::BadRequest(format!("invalid apply configuration: {e}")))?;
        let (space, unknown) = decode::space(sent.clone()).map_err(|e| Error::Unprocessable(e.to_string()))?;
        let warnings = options.field_validation.judge(&unknown)?;
        same_name(&space, &name)?;
        // Only what the client named is applied: absent maps must stay absent so they are not claimed.
        let ours = Space::from_namespace(current);
        let mut errors = validation::managed_keys("metadata.labels", space.metadata.labels.as_ref(), None);
        errors.extend(validation::managed_keys(
            "metadata.annotations",
            space.metadata.annotations.as_ref(),
            None,
        ));
        if !space.spec.template_parameters.is_empty() {
            errors.extend(
                validation::space(&space, Some(&ours))
                    .into_iter()
                    .filter(|c| c.field == "spec.templateParameters"),
            );
        }
        if space.spec.account.is_some() && space.spec.account != ours.spec.account {
            errors.extend(
                validation::space(&space, Some(&ours))
                    .into_iter()
                    .filter(|c| c.field == "spec.account"),
            );
        }
        if let Some(sleep) = space
            .spec
            .sleep
            .as_ref()
            .filter(|_| space.spec.sleep != ours.spec.sleep)
        {
            errors.extend(validation::sleep_settings("spec.sleep", sleep));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid { name, errors });
        }
        let mut metadata = serde_json::json!({"name": place.namespace});
        if let Some(labels) = sent.pointer("/metadata/labels") {
            metadata["labels"] = labels.clone();
        }
        if let Some(annotations) = sent.pointer("/metadata/annotations") {
            metadata["annotations"] = annotations.clone();
        }
        // Applied settings are the applier's field, as the namespace's annotation that keeps them.
        if let Some(sleep) = &space.spec.sleep {
            let recorded = serde_json::to_string(sleep).map_err(|e| Error::BadRequest(e.to_string()))?;
            metadata["annotations"][crate::sleep::SETTINGS_ANNOTATION] = Value::String(recorded);
        }
        let configuration = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": metadata});
        let mut params = PatchParams::apply(manager);
        params.force = options.force;
        params.dry_run = options.dry_run;
        let applied = place
            .namespaces()
            .patch(&place.namespace, &params, &Patch::Apply(configuration))
            .await
            .map_err(|e| Error::from_kube(e, &name))?;
        Ok((place.show(&applied), warnings))
    }

    /// Writes `space`'s labels and annotations onto `current` if `rv` still shows it.
    async fn replace(
        &self,
        user: &User,
        place: &Place,
        current: &Namespace,
        mut space: Space,
        rv: &str,
        options: &WriteOptions,
    ) -> Result<Space, Error> {
        let name = current.metadata.name.clone().unwrap_or_default();
        let ours = Space::from_namespace(current);
        let target = space.spec.account.clone();
        let moving = target != ours.spec.account;
        // The account is validated below as a move, not as metadata.
        space.spec.account.clone_from(&ours.spec.account);
        // A stale update is a conflict first, as in kube-apiserver: the client rereads and retries.
        if !self.is_current(current, rv) {
            return Err(Error::Conflict(name));
        }
        let errors = validation::space(&space, Some(&ours));
        if !errors.is_empty() {
            return Err(Error::Invalid { name, errors });
        }
        let mut namespace = current.clone();
        namespace.metadata.name = Some(place.namespace.clone());
        namespace.metadata.labels = space.metadata.labels;
        namespace.metadata.annotations = space.metadata.annotations;
        if space.spec.sleep != ours.spec.sleep {
            crate::spaces::sleep::set_settings(&mut namespace, space.spec.sleep.as_ref(), &user.name)
                .map_err(|e| Error::BadRequest(e.to_string()))?;
        }
        namespace.metadata.managed_fields = None;
        let params = PostParams {
            dry_run: options.dry_run,
            field_manager: options.field_manager.clone(),
        };
        if !moving {
            let replaced = place
                .namespaces()
                .replace(&place.namespace, &params, &namespace)
                .await
                .map_err(|e| Error::from_kube(e, &name))?;
            return Ok(place.show(&replaced));
        }
        let account = self
            .move_target(user, &name, ours.spec.account.as_deref(), target.as_deref())
            .await?;
        namespace
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(crate::api::ACCOUNT_LABEL.to_owned(), account.name().to_owned());
        let plan = Plan {
            name: place.namespace.clone(),
            creator: user.name.clone(),
            owner: Owner::Account(account.clone()),
            labels: Default::default(),
            annotations: Default::default(),
            templates: Vec::new(),
            parameters: Default::default(),
        };
        let moved = place
            .provisioner
            .within_limit(&account, async {
                let replaced = place
                    .namespaces()
                    .replace(&place.namespace, &params, &namespace)
                    .await
                    .map_err(|e| Error::from_kube(e, &name))?;
                if !options.dry_run {
                    place.provisioner.rebind(&plan).await?;
                }
                Ok(replaced)
            })
            .await?;
        Ok(place.show(&moved))
    }

    /// The account a space may move to: the caller must belong to it, and to the account it leaves, as kube-apiserver
    /// has both Accounts now (read fresh: the cache may not have caught up with a member's removal).
    async fn move_target(
        &self,
        user: &User,
        name: &str,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Arc<Account>, Error> {
        let Some(to) = to else {
            return Err(Error::Invalid {
                name: name.to_owned(),
                errors: vec![FieldError::new(
                    "spec.account",
                    Problem::Forbidden,
                    "a space can move to another account, not leave its account",
                )],
            });
        };
        let member = |account: &str| {
            let account = account.to_owned();
            async move {
                let now = self.provisioner.accounts_now(Some(&account)).await?;
                Ok::<_, Error>(now.into_iter().find(|a| member_of(a, user)))
            }
        };
        if let Some(from) = from {
            if member(from).await?.is_none() {
                return Err(Error::AccountForbidden {
                    user: user.name.clone(),
                    account: from.to_owned(),
                    space: Some(name.to_owned()),
                });
            }
        }
        member(to).await?.ok_or_else(|| Error::AccountForbidden {
            user: user.name.clone(),
            account: to.to_owned(),
            space: Some(name.to_owned()),
        })
    }

    // --- delete ---

    /// Deletes the namespace; the space shows Terminating until the namespace controller is done.
    ///
    /// # Errors
    /// Not visible, not allowed, or a precondition that does not hold.
    pub async fn delete(
        &self,
        user: &User,
        name: &str,
        preconditions: Option<Preconditions>,
        propagation: Option<String>,
        options: &WriteOptions,
    ) -> Result<Deleted, Error> {
        let current = self.visible(user, name)?;
        let place = self.place(name)?;
        place.authorize(user, "delete", name).await?;
        let mut kube_preconditions = kube::api::Preconditions {
            uid: current.metadata.uid.clone(),
            resource_version: None,
        };
        if let Some(wanted) = preconditions {
            if let Some(uid) = wanted.uid.filter(|u| !u.is_empty()) {
                if Some(&uid) != current.metadata.uid.as_ref() {
                    return Err(Error::PreconditionFailed {
                        field: "UID",
                        wanted: uid,
                        actual: current.metadata.uid.clone().unwrap_or_default(),
                    });
                }
            }
            if let Some(rv) = wanted.resource_version.filter(|rv| !rv.is_empty()) {
                if !self.is_current(&current, &rv) {
                    return Err(Error::PreconditionFailed {
                        field: "ResourceVersion",
                        wanted: rv,
                        actual: current.metadata.resource_version.clone().unwrap_or_default(),
                    });
                }
                kube_preconditions.resource_version = current.metadata.resource_version.clone();
            }
        }
        let params = DeleteParams {
            dry_run: options.dry_run,
            grace_period_seconds: None,
            propagation_policy: match propagation.as_deref() {
                Some("Orphan") => Some(PropagationPolicy::Orphan),
                Some("Background") => Some(PropagationPolicy::Background),
                Some("Foreground") => Some(PropagationPolicy::Foreground),
                _ => None,
            },
            preconditions: Some(kube_preconditions),
        };
        let deleted = match place
            .namespaces()
            .delete(&place.namespace, &params)
            .await
            .map_err(|e| Error::from_kube(e, name))?
        {
            either::Either::Left(namespace) => Deleted::Terminating(Box::new(place.show(&namespace))),
            either::Either::Right(_) => Deleted::Gone {
                name: name.to_owned(),
                uid: current.metadata.uid.clone(),
            },
        };
        let terminating = match &deleted {
            Deleted::Terminating(space) => Some(space.as_ref()),
            Deleted::Gone { .. } => None,
        };
        self.wait_seen(name, terminating, options).await;
        Ok(deleted)
    }
}

/// A namespace's resourceVersion as kube-apiserver's etcd revision (0 if it is not one), to tell which of two is later.
fn revision_of(resource_version: Option<&str>) -> u64 {
    resource_version.and_then(|rv| rv.parse().ok()).unwrap_or(0)
}

/// A body must name the space its URL names.
fn same_name(space: &Space, name: &str) -> Result<(), Error> {
    if space.name() == name {
        return Ok(());
    }
    Err(Error::NameMismatch {
        sent: space.name().to_owned(),
        url: name.to_owned(),
    })
}
