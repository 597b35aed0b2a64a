//! The repair and upkeep pass: after any change in the state, and at least every [`INTERVAL`], it brings what the server
//! owns to what it should be, in every cluster it serves (the management cluster and each connected one that answers)
//! by the same code:
//! - finishes spaces left half-made by a crash (owner binding, templates), or removes them when their account is gone;
//! - adopts namespaces an admin labelled with an account (their owner binding appears), and keeps every account
//!   space's owner binding on the account's current subjects and role;
//! - keeps the `tenancy-shared-reader` binding in exactly the namespaces labelled `tenancy.loft.sh/shared=true`;
//! - recreates a space's enforced template objects (label `tenancy.loft.sh/enforced=true`) when they go;
//! - brings the spaces of accounts with `spec.space.sync: true` to their templates' new versions (`controllers::templates`);
//! - keeps each cluster's space-domain params and its account namespaces' extra domains (`controllers::domains`);
//! - keeps each Account's status (its spaces in every cluster, and their count) current;
//! - carries out an Account's deletion policy in every cluster, holding it with a finalizer until that is done.
//!
//! Every action is idempotent and derived from the cache, so running it twice, on two replicas, or after a crash is
//! harmless.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::api::account::{Account, SpaceTemplate, ACCOUNT_FINALIZER};
use crate::api::{ACCOUNT_LABEL, CREATOR_ANNOTATION, ENFORCED_LABEL, SHARED_LABEL, TEMPLATES_ANNOTATION};
use crate::clusters::{Member, Members};
use crate::spaces::provision::{
    enforced_label, is_enforced, owner_binding, render, templates_for, type_of, Owner, Plan, Provisioner,
    CREATING_ANNOTATION, OWNER_BINDING,
};
use crate::state::Cache;

/// The longest the pass waits without a change.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// A space still marked creating after this long is taken to be abandoned by a crashed create.
pub const ABANDONED_AFTER: Duration = Duration::from_secs(10);
/// The binding that opens a shared space to every authenticated user, and its role.
pub const SHARED_BINDING: &str = "tenancy-shared-reader";

/// Runs the pass forever.
pub async fn run(cache: Arc<Cache>, provisioner: Arc<Provisioner>) {
    let mut changes = cache.changes();
    while !cache.is_ready() {
        if changes.changed().await.is_err() {
            return;
        }
    }
    loop {
        pass(&cache, &provisioner).await;
        let wake = async {
            tokio::select! {
                _ = changes.changed() => {}
                () = provisioner.members().changed() => {}
            }
        };
        let _ = tokio::time::timeout(INTERVAL, wake).await;
        // Let a burst of events settle into one pass.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What one pass works from: the Accounts and SpaceTemplates, and each cluster's part.
struct Snapshot {
    accounts: Vec<Arc<Account>>,
    templates: BTreeMap<String, Arc<SpaceTemplate>>,
    clusters: Vec<Part>,
}

/// One served cluster as the state has it: its namespaces by their names there and the server's bindings there.
struct Part {
    member: Arc<Member>,
    /// Whether it answers and its namespaces and RBAC have been listed: only then is it acted in (acting on a partial
    /// picture would undo what is there); its spaces still count in its accounts' status.
    reachable: bool,
    namespaces: Vec<Arc<Namespace>>,
    owner_bindings: BTreeMap<String, Arc<RoleBinding>>,
    shared_bindings: BTreeMap<String, Arc<RoleBinding>>,
}

fn snapshot(cache: &Cache, members: &Members) -> Snapshot {
    let state = cache.read();
    let clusters = members
        .all()
        .into_iter()
        .map(|member| {
            let (namespaces, mut bindings) = state.cluster_part(member.cluster());
            let reachable = state.is_reachable(member.cluster());
            Part {
                reachable,
                namespaces,
                owner_bindings: bindings.remove(OWNER_BINDING).unwrap_or_default(),
                shared_bindings: bindings.remove(SHARED_BINDING).unwrap_or_default(),
                member,
            }
        })
        .collect();
    Snapshot {
        accounts: state.accounts.values().cloned().collect(),
        templates: state.templates.clone(),
        clusters,
    }
}

fn label<'a>(ns: &'a Namespace, key: &str) -> Option<&'a str> {
    ns.metadata.labels.as_ref().and_then(|l| l.get(key)).map(String::as_str)
}

fn annotation<'a>(ns: &'a Namespace, key: &str) -> Option<&'a str> {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn age(ns: &Namespace) -> Duration {
    ns.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| Timestamp::now().as_second() - t.0.as_second())
        .and_then(|s| u64::try_from(s).ok())
        .map_or(Duration::ZERO, Duration::from_secs)
}

async fn pass(cache: &Cache, provisioner: &Provisioner) {
    let snapshot = snapshot(cache, provisioner.members());
    // All clusters at once: one that has just stopped answering must not hold back the others' repairs.
    let tends = snapshot.clusters.iter().filter(|p| p.reachable).map(|part| {
        let snapshot = &snapshot;
        async move {
            let here = provisioner.in_cluster(part.member.clone());
            tend(&here, part, snapshot).await;
        }
    });
    futures::future::join_all(tends).await;
    for account in &snapshot.accounts {
        upkeep_account(provisioner, account, &snapshot.clusters).await;
    }
}

/// What the server keeps in one cluster: half-made spaces finished, enforced objects restored, adopted namespaces,
/// owner bindings on their accounts, shared-reader bindings, synced templates.
async fn tend(provisioner: &Provisioner, part: &Part, snapshot: &Snapshot) {
    for ns in &part.namespaces {
        if ns.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = ns.metadata.name.clone().unwrap_or_default();
        let account = label(ns, ACCOUNT_LABEL).map(|a| snapshot.accounts.iter().find(|acc| acc.name() == a).cloned());
        let creating = annotation(ns, CREATING_ANNOTATION).is_some();
        if creating && age(ns) >= ABANDONED_AFTER {
            repair(provisioner, ns, account.clone(), &snapshot.templates).await;
        } else if !creating {
            restore_enforced(provisioner, ns, account.clone(), &snapshot.templates).await;
        }
        if let (false, Some(Some(account))) = (creating, &account) {
            if account.metadata.deletion_timestamp.is_none() {
                let plan = plan_for(ns, Owner::Account(account.clone()), Vec::new());
                match part.owner_bindings.get(&name) {
                    // Adoption: a namespace an admin labelled with an existing, live account.
                    None => {
                        tracing::info!(space = %name, account = %account.name(), "Adopting a namespace into its account");
                        if let Err(error) = provisioner.finish(&plan).await {
                            tracing::warn!(space = %name, %error, "Adoption failed; retrying later");
                        }
                    }
                    // The account's subjects or role changed: its spaces follow, and whoever left loses them.
                    Some(current) => follow_account(provisioner, current, &plan).await,
                }
            }
        }
        let shared = label(ns, SHARED_LABEL) == Some("true");
        let binding = part.shared_bindings.get(&name);
        // A binding made before bindings were enforced gets the label in place (no gap for its readers).
        let unlabelled = binding.is_some_and(|b| !is_enforced_binding(b));
        if shared != binding.is_some() {
            set_shared(provisioner, &name, shared).await;
        } else if shared && unlabelled {
            label_enforced(provisioner, &name, SHARED_BINDING).await;
        }
    }
    super::templates::sync(provisioner, &part.namespaces, &snapshot.accounts, &snapshot.templates).await;
    super::domains::tend(&part.member, &part.namespaces, &snapshot.accounts).await;
}

fn plan_for(ns: &Namespace, owner: Owner, templates: Vec<Arc<SpaceTemplate>>) -> Plan {
    Plan::for_namespace(ns, owner, templates)
}

/// The templates a space was made from, as its namespace records them.
fn recorded_templates(ns: &Namespace, known: &BTreeMap<String, Arc<SpaceTemplate>>) -> Vec<Arc<SpaceTemplate>> {
    annotation(ns, TEMPLATES_ANNOTATION)
        .unwrap_or_default()
        .split(',')
        .filter_map(|name| known.get(name.trim()).cloned())
        .collect()
}

fn is_enforced_binding(binding: &RoleBinding) -> bool {
    binding
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(ENFORCED_LABEL))
        .is_some_and(|v| v == "true")
}

/// Recreates the enforced objects of the templates a finished space was made from, when they are gone.
async fn restore_enforced(
    provisioner: &Provisioner,
    ns: &Namespace,
    account: Option<Option<Arc<Account>>>,
    known: &BTreeMap<String, Arc<SpaceTemplate>>,
) {
    // Most passes find nothing to restore: a space made from no template costs no plan.
    let templates = recorded_templates(ns, known);
    if templates.is_empty() {
        return;
    }
    let owner = match account {
        Some(Some(account)) => Owner::Account(account),
        None => Owner::Creator,
        // Its account is gone: `${ACCOUNT}` cannot be filled in as it was.
        Some(None) => return,
    };
    let plan = plan_for(ns, owner, Vec::new());
    for template in templates {
        for object in template.spec.objects.iter().filter(|o| is_enforced(o)) {
            let name = render(&plan, &template, object)["metadata"]["name"].clone();
            let (api_version, kind) = type_of(object);
            let Ok(resource) = provisioner.resource(&api_version, &kind).await else {
                continue;
            };
            if provisioner
                .enforced()
                .exists(&resource, &plan.name, name.as_str().unwrap_or_default())
                == Some(false)
            {
                tracing::info!(space = %plan.name, %kind, name = %name, "Restoring an enforced template object");
                if let Err(error) = provisioner.apply_object(&plan, &template, object).await {
                    tracing::warn!(space = %plan.name, %error, "Restoring an enforced object failed; retrying later");
                }
            }
        }
    }
}

/// Finishes a space a crashed create left behind, or removes it when it can no longer be finished.
async fn repair(
    provisioner: &Provisioner,
    ns: &Namespace,
    account: Option<Option<Arc<Account>>>,
    known: &BTreeMap<String, Arc<SpaceTemplate>>,
) {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let owner = match account {
        Some(Some(account)) => Owner::Account(account),
        None if annotation(ns, CREATOR_ANNOTATION).is_some_and(|c| !c.is_empty()) => Owner::Creator,
        _ => {
            tracing::warn!(space = %name, "Removing a half-made space whose owner is gone");
            provisioner.roll_back(&name).await;
            return;
        }
    };
    let templates = if annotation(ns, TEMPLATES_ANNOTATION).is_some() {
        recorded_templates(ns, known)
    } else {
        templates_for(&owner, known).unwrap_or_default()
    };
    tracing::info!(space = %name, "Finishing a space left half-made");
    if let Err(error) = provisioner.finish(&plan_for(ns, owner, templates)).await {
        tracing::warn!(space = %name, %error, "Finishing failed; removing the half-made space");
        provisioner.roll_back(&name).await;
    }
}

/// Brings a space's owner binding to its account's subjects and role. Subjects are updated in place, so members who
/// stay never lose access; a new role needs a new binding (roleRef is immutable).
async fn follow_account(provisioner: &Provisioner, current: &RoleBinding, plan: &Plan) {
    let wanted = owner_binding(plan);
    let same_subjects = subject_set(current.subjects.as_deref()) == subject_set(wanted.subjects.as_deref());
    // A binding made before owner bindings were enforced gets the label.
    if same_subjects && current.role_ref == wanted.role_ref && is_enforced_binding(current) {
        return;
    }
    // Only on the Account as kube-apiserver has it now: a replica whose cache is behind must not move the binding back.
    if let Owner::Account(cached) = &plan.owner {
        match provisioner.accounts_now(Some(cached.name())).await.as_deref() {
            Ok([now]) if now.spec.subjects == cached.spec.subjects && now.owner_role() == cached.owner_role() => {}
            Ok(_) => {
                tracing::debug!(space = %plan.name, "The cached Account is behind; its owner binding waits");
                return;
            }
            Err(error) => {
                tracing::warn!(space = %plan.name, %error, "Reading the Account failed; retrying later");
                return;
            }
        }
    }
    tracing::info!(space = %plan.name, "The account changed; its owner binding follows");
    let result = if current.role_ref == wanted.role_ref {
        let mut updated = current.clone();
        updated.subjects = wanted.subjects;
        updated
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .extend(enforced_label());
        Api::<RoleBinding>::namespaced(provisioner.client().clone(), &plan.name)
            .replace(OWNER_BINDING, &PostParams::default(), &updated)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    } else {
        provisioner.rebind(plan).await.map_err(|e| e.to_string())
    };
    if let Err(error) = result {
        tracing::warn!(space = %plan.name, %error, "Updating the owner binding failed; retrying later");
    }
}

/// Subjects as RBAC matches them: kind, name, and a ServiceAccount's namespace (apiGroup is defaulted by the server).
fn subject_set(subjects: Option<&[Subject]>) -> BTreeSet<(String, String, String)> {
    subjects
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let namespace = if s.kind == "ServiceAccount" {
                s.namespace.clone().unwrap_or_default()
            } else {
                String::new()
            };
            (s.kind.clone(), s.name.clone(), namespace)
        })
        .collect()
}

async fn label_enforced(provisioner: &Provisioner, namespace: &str, binding: &str) {
    let patch = json!({"metadata": {"labels": enforced_label()}});
    if let Err(error) = Api::<RoleBinding>::namespaced(provisioner.client().clone(), namespace)
        .patch(binding, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(space = %namespace, %binding, %error, "Labelling a binding enforced failed; retrying later");
    }
}

async fn set_shared(provisioner: &Provisioner, namespace: &str, shared: bool) {
    let bindings: Api<RoleBinding> = Api::namespaced(provisioner.client().clone(), namespace);
    let result = if shared {
        let binding = RoleBinding {
            metadata: ObjectMeta {
                name: Some(SHARED_BINDING.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(enforced_label()),
                ..ObjectMeta::default()
            },
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: SHARED_BINDING.to_owned(),
            },
            subjects: Some(vec![Subject {
                kind: "Group".to_owned(),
                name: "system:authenticated".to_owned(),
                api_group: Some("rbac.authorization.k8s.io".to_owned()),
                namespace: None,
            }]),
        };
        bindings.create(&PostParams::default(), &binding).await.map(|_| ())
    } else {
        bindings
            .delete(SHARED_BINDING, &DeleteParams::default())
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) => tracing::info!(space = %namespace, shared, "Shared-space readers updated"),
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
        Err(error) => tracing::warn!(space = %namespace, %error, "Updating shared-space readers failed"),
    }
}

/// An Account's finalizer, deletion policy (carried out in every cluster; held while a cluster holding its spaces
/// does not answer) and status (its spaces in every cluster).
async fn upkeep_account(provisioner: &Provisioner, account: &Account, clusters: &[Part]) {
    let accounts: Api<Account> = Api::all(provisioner.members().management().client().clone());
    let name = account.name();
    let mine = |part: &Part| -> Vec<Arc<Namespace>> {
        part.namespaces
            .iter()
            .filter(|ns| label(ns, ACCOUNT_LABEL) == Some(name))
            .cloned()
            .collect()
    };
    let finalizers = account.metadata.finalizers.clone().unwrap_or_default();
    let held = finalizers.iter().any(|f| f == ACCOUNT_FINALIZER);
    if account.metadata.deletion_timestamp.is_some() {
        if !held {
            return;
        }
        let delete = account.deletes_spaces();
        let mut unreachable = false;
        for part in clusters {
            let spaces = mine(part);
            if !part.reachable {
                unreachable |= !spaces.is_empty();
                continue;
            }
            let here = provisioner.in_cluster(part.member.clone());
            for ns in &spaces {
                let space = ns.metadata.name.clone().unwrap_or_default();
                if delete {
                    if ns.metadata.deletion_timestamp.is_none() {
                        tracing::info!(%space, account = %name, "Deleting a space with its account");
                        here.roll_back(&space).await;
                    }
                } else {
                    orphan(&here, &space).await;
                }
            }
        }
        if unreachable {
            tracing::info!(account = %name, "A cluster holding spaces of a deleted account does not answer; waiting");
            return;
        }
        let remaining: Vec<String> = finalizers.into_iter().filter(|f| f != ACCOUNT_FINALIZER).collect();
        let patch =
            json!({"metadata": {"finalizers": remaining, "resourceVersion": account.metadata.resource_version}});
        if let Err(error) = accounts
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::warn!(account = %name, %error, "Releasing an account failed; retrying later");
        }
        return;
    }
    if !held {
        let mut with = finalizers;
        with.push(ACCOUNT_FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": with, "resourceVersion": account.metadata.resource_version}});
        if let Err(error) = accounts
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(account = %name, %error, "Adding the finalizer failed; retrying later");
        }
    }
    let mut spaces: Vec<String> = clusters
        .iter()
        .flat_map(|part| {
            mine(part)
                .into_iter()
                .filter(|ns| ns.metadata.deletion_timestamp.is_none())
                .map(|ns| part.member.space(ns.metadata.name.as_deref().unwrap_or_default()))
        })
        .collect();
    spaces.sort();
    let count = i64::try_from(spaces.len()).unwrap_or(i64::MAX);
    let current = account.status.clone().unwrap_or_default();
    if current.spaces != spaces || current.space_count != count {
        let patch = json!({"status": {"spaces": spaces, "spaceCount": count}});
        if let Err(error) = accounts
            .patch_status(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(account = %name, %error, "Updating account status failed; retrying later");
        }
    }
}

/// A space whose account is deleted with policy Orphan: its owner binding and account label go; the namespace stays.
async fn orphan(provisioner: &Provisioner, space: &str) {
    let bindings: Api<RoleBinding> = Api::namespaced(provisioner.client().clone(), space);
    match bindings.delete(OWNER_BINDING, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => {}
        Err(error) => tracing::warn!(%space, %error, "Removing an orphan's owner binding failed"),
    }
    let patch = json!({"metadata": {"labels": {ACCOUNT_LABEL: null}}});
    if let Err(error) = Api::<Namespace>::all(provisioner.client().clone())
        .patch(space, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        tracing::warn!(%space, %error, "Unlabelling an orphaned space failed");
    }
}
