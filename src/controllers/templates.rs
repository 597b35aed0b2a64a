//! Templates that stay in force: the spaces of an Account with `spec.space.sync: true` follow their SpaceTemplates.
//! When a template's `metadata.generation` moves past the one a space records (`tenancy.loft.sh/template-status`,
//! shown as the Space's `status.templates`), its objects are applied again (server-side apply, forced, as the server's
//! field manager: created or updated), the objects the recorded version made and the new one does not are deleted,
//! and the record says the new generation, Applied or Failed with the reason. Accounts without `sync` keep what their
//! spaces were made with.
//!
//! Throttled: at most [`SPACES_PER_PASS`] spaces per pass of the repair loop, spaces behind a template first, then
//! retries of failed ones. Safe on any number of replicas: applies and deletes are idempotent, a record is written
//! only over the namespace it was read from (its resourceVersion), and a replica whose cache holds an older
//! generation than the record never acts on it, so replicas never undo each other.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::api::account::{Account, SpaceTemplate};
use crate::api::space::{applied_templates, AppliedTemplate, FAILED};
use crate::api::{ACCOUNT_LABEL, TEMPLATES_ANNOTATION, TEMPLATE_STATUS_ANNOTATION};
use crate::spaces::provision::{records_json, Owner, Plan, Provisioner, CREATING_ANNOTATION};

/// The most spaces one pass brings to new template versions.
pub const SPACES_PER_PASS: usize = 5;

/// One pass: the spaces of syncing accounts whose templates moved on (or failed last time), a few at a time.
pub async fn sync(
    provisioner: &Provisioner,
    namespaces: &[Arc<Namespace>],
    accounts: &[Arc<Account>],
    known: &BTreeMap<String, Arc<SpaceTemplate>>,
) {
    let syncing: BTreeMap<&str, &Arc<Account>> = accounts
        .iter()
        .filter(|a| a.syncs_templates() && a.metadata.deletion_timestamp.is_none())
        .map(|a| (a.name(), a))
        .collect();
    if syncing.is_empty() {
        return;
    }
    // Spaces behind a template come before retries of failures, each group in name order.
    let mut due: Vec<Due<'_>> = Vec::new();
    for ns in namespaces {
        let meta = &ns.metadata;
        let annotations = meta.annotations.as_ref();
        if meta.deletion_timestamp.is_some() || annotations.is_some_and(|a| a.contains_key(CREATING_ANNOTATION)) {
            continue;
        }
        let Some(account) = crate::api::label(ns.as_ref(), ACCOUNT_LABEL).and_then(|a| syncing.get(a)) else {
            continue;
        };
        let records = applied_templates(ns);
        let mut retry = true;
        let stale: Vec<Arc<SpaceTemplate>> = recorded(ns, known)
            .into_iter()
            .filter(
                |t| match behind(t, records.iter().find(|r| Some(&r.name) == t.metadata.name.as_ref())) {
                    Need::No => false,
                    Need::Behind => {
                        retry = false;
                        true
                    }
                    Need::Retry => true,
                },
            )
            .collect();
        if !stale.is_empty() {
            due.push(Due {
                retry,
                ns,
                account,
                stale,
            });
        }
    }
    due.sort_by(|a, b| (a.retry, &a.ns.metadata.name).cmp(&(b.retry, &b.ns.metadata.name)));
    for space in due.into_iter().take(SPACES_PER_PASS) {
        sync_space(provisioner, space.ns, space.account, &space.stale).await;
    }
}

/// A space with templates to apply.
struct Due<'a> {
    /// Only retries of failures, nothing behind.
    retry: bool,
    ns: &'a Namespace,
    account: &'a Arc<Account>,
    stale: Vec<Arc<SpaceTemplate>>,
}

/// Whether a space's record of a template calls for applying it.
#[derive(Debug, PartialEq, Eq)]
enum Need {
    No,
    /// The template moved past the record (or there is none yet).
    Behind,
    /// The record's generation failed.
    Retry,
}

fn behind(template: &SpaceTemplate, record: Option<&AppliedTemplate>) -> Need {
    let generation = template.metadata.generation.unwrap_or_default();
    match record {
        None => Need::Behind,
        Some(r) if r.generation < generation => Need::Behind,
        Some(r) if r.generation == generation && r.status == FAILED => Need::Retry,
        // The same generation applied, or a newer one another replica saw first: nothing to do here.
        Some(_) => Need::No,
    }
}

/// The templates a space was made from, as its namespace names them, that still exist.
fn recorded(ns: &Namespace, known: &BTreeMap<String, Arc<SpaceTemplate>>) -> Vec<Arc<SpaceTemplate>> {
    ns.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(TEMPLATES_ANNOTATION))
        .map(|names| names.split(',').filter_map(|n| known.get(n.trim()).cloned()).collect())
        .unwrap_or_default()
}

/// Applies `stale` in the space of `ns`, removes what their recorded versions made and they no longer hold, and
/// records the outcome.
async fn sync_space(provisioner: &Provisioner, ns: &Namespace, account: &Arc<Account>, stale: &[Arc<SpaceTemplate>]) {
    let plan = Plan::for_namespace(ns, Owner::Account(account.clone()), Vec::new());
    let mut records = applied_templates(ns);
    for template in stale {
        let old = records
            .iter()
            .position(|r| Some(&r.name) == template.metadata.name.as_ref())
            .map(|at| records.remove(at));
        let (mut record, error) = provisioner.apply_template(&plan, template).await;
        let made: BTreeSet<_> = record.objects.iter().cloned().collect();
        let dropped: Vec<_> = old
            .map(|old| old.objects.into_iter().filter(|o| !made.contains(o)).collect())
            .unwrap_or_default();
        if error.is_some() {
            // Nothing is removed after a failure; the record keeps the old objects so that the retry still can.
            record.objects.extend(dropped);
        } else {
            for object in dropped {
                if let Err(reason) = provisioner.delete_object(&plan.name, &object).await {
                    record.status = FAILED.to_owned();
                    record.reason = Some(reason);
                    record.objects.push(object);
                }
            }
        }
        record.objects.sort();
        record.objects.dedup();
        tracing::info!(
            space = %plan.name,
            template = %record.name,
            generation = record.generation,
            status = %record.status,
            reason = record.reason.as_deref().unwrap_or_default(),
            "Synced a SpaceTemplate"
        );
        records.push(record);
    }
    records.sort_by(|a, b| a.name.cmp(&b.name));
    // Written only over the namespace as read: a replica that raced us has written the same or newer; next pass looks.
    let patch = json!({"metadata": {
        "resourceVersion": ns.metadata.resource_version,
        "annotations": {TEMPLATE_STATUS_ANNOTATION: records_json(&records)},
    }});
    match Api::<Namespace>::all(provisioner.client().clone())
        .patch(&plan.name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
        Err(error) => tracing::warn!(space = %plan.name, %error, "Recording template status failed; retrying later"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(generation: i64) -> SpaceTemplate {
        let mut t = SpaceTemplate::default();
        t.metadata.name = Some("t".to_owned());
        t.metadata.generation = Some(generation);
        t
    }

    fn record(generation: i64, status: &str) -> AppliedTemplate {
        AppliedTemplate {
            name: "t".to_owned(),
            generation,
            status: status.to_owned(),
            ..AppliedTemplate::default()
        }
    }

    #[test]
    fn a_space_syncs_only_forward() {
        assert_eq!(behind(&template(2), None), Need::Behind);
        assert_eq!(behind(&template(2), Some(&record(1, "Applied"))), Need::Behind);
        assert_eq!(behind(&template(2), Some(&record(2, "Applied"))), Need::No);
        assert_eq!(behind(&template(2), Some(&record(2, "Failed"))), Need::Retry);
        // A replica whose cache is behind another's never takes the space back.
        assert_eq!(behind(&template(2), Some(&record(3, "Applied"))), Need::No);
        assert_eq!(behind(&template(2), Some(&record(3, "Failed"))), Need::No);
    }
}
