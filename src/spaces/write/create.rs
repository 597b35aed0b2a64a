//! Making a new space: the name (`generateName` filled in), its cluster, its owner (the named account, the caller's
//! only account, or a caller who may create namespaces there), its plan (labels, annotations, templates, parameters),
//! then the provisioner's steps; answered once the creator can see it through this server.
//!
//! What grants the caller anything (account membership, the account's limit, clusters and templates) is decided on the
//! Accounts as kube-apiserver has them now, read fresh (one read per create), and on the SpaceTemplates the cache holds,
//! each one it lacks read fresh: never on a copy the cache has not caught up with, so an Account applied a moment
//! ago counts, and a member removed a moment ago is refused.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::Api;

use super::place::authorize;
#[cfg(feature = "fault-injection")]
use super::CRASH_AFTER_NAMESPACE;
use super::{member_of, revision_of, WriteOptions, Writer, READ_AFTER_CREATE};
use crate::access::view::connected_part;
use crate::api::account::{Account, SpaceTemplate};
use crate::api::Space;
use crate::authn::User;
use crate::authz::Authorizer;
use crate::spaces::provision::{templates_for, Owner, Plan};
use crate::spaces::{parameters, validation, Error, FieldError, Problem};

impl Writer {
    /// Makes a new space: owner resolved, limit held, namespace, owner binding and templates created (all undone if
    /// any step fails). Answers once the creator can see the space through this server.
    ///
    /// # Errors
    /// Invalid spaces, callers with no account and no right to create namespaces, accounts at their limit, names taken.
    pub async fn create(&self, user: &User, mut space: Space, options: &WriteOptions) -> Result<Space, Error> {
        if space.metadata.name.as_deref().unwrap_or_default().is_empty() {
            if let Some(prefix) = space.metadata.generate_name.clone().filter(|p| !p.is_empty()) {
                space.metadata.name = Some(format!("{prefix}{}", random_suffix()));
            }
        }
        let name = space.name().to_owned();
        let cluster = connected_part(&name).map(|(cluster, _)| cluster);
        let mut errors = validation::name(connected_part(&name).map_or(name.as_str(), |(_, namespace)| namespace));
        if cluster.is_some_and(|c| !validation::name(c).is_empty()) {
            errors.push(
                FieldError::new(
                    "metadata.name",
                    Problem::Invalid,
                    "a space in a connected cluster is named <cluster>.<namespace>",
                )
                .with_value(&name),
            );
        }
        if space.spec.cluster.as_deref().is_some_and(|c| !c.is_empty()) && space.spec.cluster.as_deref() != cluster {
            errors.push(
                FieldError::new(
                    "spec.cluster",
                    Problem::Invalid,
                    "a space in a connected cluster is named <cluster>.<namespace>, with that cluster",
                )
                .with_value(space.spec.cluster.as_deref().unwrap_or_default()),
            );
        }
        errors.extend(validation::space(&space, None));
        if !errors.is_empty() {
            return Err(Error::Invalid { name, errors });
        }
        if cluster.is_none() && !self.members.local_spaces() {
            return Err(super::place::no_local_spaces(
                &name,
                &self.clusters_open_to(user).await?,
            ));
        }
        let place = self.place(&name)?;
        let owner = self
            .owner(user, space.spec.account.as_deref(), place.member.authorizer())
            .await?;
        if let (Owner::Account(account), Some(cluster)) = (&owner, place.cluster()) {
            if account
                .spec
                .space
                .clusters
                .as_ref()
                .is_some_and(|allowed| !allowed.iter().any(|c| c == cluster))
            {
                return Err(Error::Forbidden {
                    user: user.name.clone(),
                    verb: "create".to_owned(),
                    name,
                    reason: format!(
                        "account {:?} may not create spaces in cluster {cluster:?}",
                        account.name()
                    ),
                });
            }
        }
        let templates = self.templates_now(&owner).await?;
        let mut plan = self.plan(user, &space, owner, &templates)?;
        plan.name.clone_from(&place.namespace);
        let created = place.provisioner.create_namespace(&plan, options.dry_run).await?;
        if options.dry_run {
            return Ok(place.show(&created));
        }
        // Fault injection for the crash-repair test: die exactly between the namespace and its owner binding.
        #[cfg(feature = "fault-injection")]
        if std::env::var_os(CRASH_AFTER_NAMESPACE).is_some() {
            tracing::error!(space = %name, "{CRASH_AFTER_NAMESPACE} is set: aborting");
            std::process::abort();
        }
        let finished = match place.provisioner.finish(&plan).await {
            Ok(finished) => finished,
            Err(error) => {
                tracing::warn!(space = %name, %error, "Creating a space failed; rolling back");
                place.provisioner.roll_back(&place.namespace).await;
                return Err(error);
            }
        };
        let revision = revision_of(finished.metadata.resource_version.as_deref());
        self.wait_visible(user, &name, revision).await?;
        Ok(place.show(&finished))
    }

    /// Who will own the space: the named account (the caller must belong to it), the caller's only account, or — with
    /// no account at all — the caller alone, if RBAC lets them create namespaces.
    async fn owner(&self, user: &User, requested: Option<&str>, authorizer: &Authorizer) -> Result<Owner, Error> {
        let accounts = self.provisioner.accounts_now(requested).await?;
        let mine: Vec<Arc<Account>> = accounts.into_iter().filter(|a| member_of(a, user)).collect();
        match requested {
            Some(wanted) => mine
                .into_iter()
                .find(|a| a.name() == wanted)
                .map(Owner::Account)
                .ok_or_else(|| Error::AccountForbidden {
                    user: user.name.clone(),
                    account: wanted.to_owned(),
                    space: None,
                }),
            None => match mine.len() {
                1 => Ok(Owner::Account(mine[0].clone())),
                0 => {
                    authorize(authorizer, user, "create", "", "").await?;
                    Ok(Owner::Creator)
                }
                _ => Err(Error::Invalid {
                    name: String::new(),
                    errors: vec![FieldError::new(
                        "spec.account",
                        Problem::Required,
                        format!(
                            "you belong to several accounts ({}): name one",
                            mine.iter().map(|a| a.name()).collect::<Vec<_>>().join(", ")
                        ),
                    )],
                }),
            },
        }
    }

    /// The connected clusters `user` may create spaces in: those their accounts allow (each account's
    /// `spec.space.clusters`, unset: all), or all for a caller of no account.
    async fn clusters_open_to(&self, user: &User) -> Result<Vec<String>, Error> {
        let connected = self.members.names();
        let mine: Vec<Arc<Account>> = self
            .provisioner
            .accounts_now(None)
            .await?
            .into_iter()
            .filter(|a| member_of(a, user))
            .collect();
        if mine.is_empty() {
            return Ok(connected);
        }
        let open = |cluster: &String| {
            mine.iter().any(|a| {
                a.spec
                    .space
                    .clusters
                    .as_ref()
                    .is_none_or(|allowed| allowed.contains(cluster))
            })
        };
        Ok(connected.into_iter().filter(open).collect())
    }

    /// The SpaceTemplates the cache holds, with each one `owner`'s account names that it lacks read fresh (a template
    /// applied together with its Account may not have reached the cache yet).
    async fn templates_now(&self, owner: &Owner) -> Result<BTreeMap<String, Arc<SpaceTemplate>>, Error> {
        let mut known = self.cache.read().templates.clone();
        let names = match owner {
            Owner::Account(account) => account.templates().0,
            Owner::Creator => vec![crate::api::account::DEFAULT_TEMPLATE.to_owned()],
        };
        let templates: Api<SpaceTemplate> = Api::all(self.members.management().client().clone());
        let missing: Vec<String> = names.into_iter().filter(|name| !known.contains_key(name)).collect();
        for name in missing {
            if let Some(template) = templates.get_opt(&name).await.map_err(Error::Backend)? {
                known.insert(name, Arc::new(template));
            }
        }
        Ok(known)
    }

    /// The labels, annotations and templates of a new space, with its template parameters checked against what the
    /// templates declare.
    fn plan(
        &self,
        user: &User,
        space: &Space,
        owner: Owner,
        known: &BTreeMap<String, Arc<SpaceTemplate>>,
    ) -> Result<Plan, Error> {
        let mut labels = space.metadata.labels.clone().unwrap_or_default();
        let mut annotations = space.metadata.annotations.clone().unwrap_or_default();
        if let Owner::Account(account) = &owner {
            if let Some(forced) = &account.spec.space.metadata {
                labels.extend(forced.labels.clone().unwrap_or_default());
                annotations.extend(forced.annotations.clone().unwrap_or_default());
            }
            labels.insert(crate::api::ACCOUNT_LABEL.to_owned(), account.name().to_owned());
        }
        let templates = templates_for(&owner, known)?;
        if let Some(settings) = space.spec.sleep.as_ref().filter(|s| !s.is_empty()) {
            let recorded = serde_json::to_string(settings).map_err(|e| Error::BadRequest(e.to_string()))?;
            annotations.insert(crate::sleep::SETTINGS_ANNOTATION.to_owned(), recorded);
        }
        let given = &space.spec.template_parameters;
        let errors = parameters::check(&templates.iter().map(AsRef::as_ref).collect::<Vec<_>>(), given);
        if !errors.is_empty() {
            return Err(Error::Invalid {
                name: space.name().to_owned(),
                errors,
            });
        }
        if !templates.is_empty() {
            let names: Vec<&str> = templates.iter().filter_map(|t| t.metadata.name.as_deref()).collect();
            annotations.insert(crate::api::TEMPLATES_ANNOTATION.to_owned(), names.join(","));
        }
        if !given.is_empty() {
            let recorded = serde_json::to_string(given).map_err(|e| Error::BadRequest(e.to_string()))?;
            annotations.insert(crate::api::TEMPLATE_PARAMETERS_ANNOTATION.to_owned(), recorded);
        }
        Ok(Plan {
            name: space.name().to_owned(),
            creator: user.name.clone(),
            owner,
            labels,
            annotations,
            templates,
            parameters: given.clone(),
        })
    }

    /// Waits, on the change log rather than a timer, until `user` sees `name` through this server.
    /// Waits until the cache holds `name` at `revision` or later and `user` may get it: what the caller is answered is
    /// then what any get, list or watch through this server shows.
    async fn wait_visible(&self, user: &User, name: &str, revision: u64) -> Result<(), Error> {
        let subjects = self.cache.subjects(user);
        let deadline = tokio::time::Instant::now() + READ_AFTER_CREATE;
        loop {
            let mut entries = {
                let state = self.cache.read();
                let caught_up = state
                    .namespaces
                    .get(name)
                    .is_some_and(|ns| revision_of(ns.metadata.resource_version.as_deref()) >= revision);
                if caught_up && state.may_get(&subjects, name) {
                    return Ok(());
                }
                self.cache.subscribe(&state)
            };
            match tokio::time::timeout_at(deadline, entries.recv()).await {
                Ok(_) => {}
                Err(_) => return Err(Error::ReadAfterCreateTimeout(name.to_owned())),
            }
        }
    }
}

/// Five characters of `generateName`'s alphabet, from the clock and a counter (names need not be secret).
fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mut seed = nanos
        ^ COUNTER
            .fetch_add(0x9E37_79B9, Ordering::Relaxed)
            .wrapping_mul(0x2545_F491_4F6C_DD1D);
    (0..5)
        .map(|_| {
            let c = ALPHABET[usize::try_from(seed % ALPHABET.len() as u64).unwrap_or(0)];
            seed /= ALPHABET.len() as u64;
            char::from(c)
        })
        .collect()
}
