//! A space's templates: their objects rendered with the space's values and applied in its cluster (server-side apply,
//! forced, as the server's field manager), the record of what each template did, and the objects a template no longer
//! holds deleted.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::Value;

use super::{Owner, Plan, Provisioner, FIELD_MANAGER};
use crate::api::account::{SpaceTemplate, DEFAULT_TEMPLATE};
use crate::api::space::{AppliedTemplate, ObjectReference, APPLIED, FAILED};
use crate::api::{ENFORCED_LABEL, TEMPLATE_LABEL};
use crate::backend::explain;
use crate::spaces::{parameters, Error};

impl Provisioner {
    /// Applies every object of `template` in `plan`'s space, stopping at the first that fails; the record of what was
    /// done (Applied, or Failed with the reason) and the error, if any.
    pub async fn apply_template(&self, plan: &Plan, template: &SpaceTemplate) -> (AppliedTemplate, Option<Error>) {
        let mut record = AppliedTemplate {
            name: template.metadata.name.clone().unwrap_or_default(),
            generation: template.metadata.generation.unwrap_or_default(),
            parameters: parameters::resolve(template, &plan.parameters),
            status: APPLIED.to_owned(),
            reason: None,
            objects: Vec::new(),
        };
        for object in &template.spec.objects {
            match self.apply_object(plan, template, object).await {
                Ok(applied) => record.objects.push(applied),
                Err(error) => {
                    record.status = FAILED.to_owned();
                    record.reason = Some(match &error {
                        Error::Template { message, .. } => message.clone(),
                        other => other.to_string(),
                    });
                    return (record, Some(error));
                }
            }
        }
        record.objects.sort();
        (record, None)
    }

    /// Applies one object of `template` in `plan`'s space (server-side apply, as [`FIELD_MANAGER`], forced: the
    /// template's fields are the platform's), with the parameters filled in and labelled with the template's name.
    ///
    /// # Errors
    /// An unknown or cluster-scoped kind, or kube-apiserver refuses; the message is one line for the tenant.
    pub async fn apply_object(
        &self,
        plan: &Plan,
        template: &SpaceTemplate,
        object: &Value,
    ) -> Result<ObjectReference, Error> {
        let object = render(plan, template, object);
        let template = template.metadata.name.clone().unwrap_or_default();
        let (api_version, kind) = type_of(&object);
        let resource = self
            .resource(&api_version, &kind)
            .await
            .map_err(|message| Error::Template {
                template: template.clone(),
                message,
            })?;
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(Error::Template {
                template,
                message: format!("a {kind} has no metadata.name"),
            });
        }
        let api: Api<DynamicObject> = Api::namespaced_with(self.client().clone(), &plan.name, &resource);
        match api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
        {
            Ok(_) => Ok(ObjectReference {
                api_version,
                kind,
                name,
            }),
            Err(error) => {
                // The whole answer (the server's own permissions, for a refused binding) is for the platform team's
                // log; the tenant is told what was refused and why in one line.
                tracing::warn!(%template, %error, "A template object could not be applied");
                let object = format!("{kind} {name:?}");
                let message = match error {
                    kube::Error::Api(status) => {
                        format!("applying {object} was refused: {} ({})", status.reason, status.code)
                    }
                    _ => format!("applying {object} failed: kube-apiserver did not answer"),
                };
                Err(Error::Template { template, message })
            }
        }
    }

    /// Deletes an object a template made in `space` and no longer holds; one that is gone already is fine.
    ///
    /// # Errors
    /// The kind is unknown, or kube-apiserver refuses.
    pub async fn delete_object(&self, space: &str, object: &ObjectReference) -> Result<(), String> {
        let resource = self.resource(&object.api_version, &object.kind).await?;
        let api: Api<DynamicObject> = Api::namespaced_with(self.client().clone(), space, &resource);
        match api.delete(&object.name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(format!(
                "deleting {} {:?} failed: {}",
                object.kind,
                object.name,
                explain::sentence(&error)
            )),
        }
    }

    /// The API resource of a template object's kind in this cluster, or why it cannot be in a template.
    ///
    /// # Errors
    /// The kind is unknown to kube-apiserver, or cluster-scoped.
    pub async fn resource(&self, api_version: &str, kind: &str) -> Result<ApiResource, String> {
        self.member.resource(api_version, kind).await
    }
}

/// Whether a template object (or any object) carries [`enforced_label`].
#[must_use]
pub fn is_enforced(object: &Value) -> bool {
    object["metadata"]["labels"][ENFORCED_LABEL].as_str() == Some("true")
}

/// A manifest's `apiVersion` and `kind`.
#[must_use]
pub fn type_of(object: &Value) -> (String, String) {
    let field = |name: &str| object[name].as_str().unwrap_or_default().to_owned();
    (field("apiVersion"), field("kind"))
}

/// The values `template` is filled in with in `plan`'s space: its declared parameters (given or defaulted), and
/// `SPACE`, `ACCOUNT` (empty without one) and `CREATOR`, which a declaration cannot override.
#[must_use]
pub fn values(plan: &Plan, template: &SpaceTemplate) -> BTreeMap<String, String> {
    let account = match &plan.owner {
        Owner::Account(account) => account.name(),
        Owner::Creator => "",
    };
    let mut values = parameters::resolve(template, &plan.parameters);
    values.insert("SPACE".to_owned(), plan.name.clone());
    values.insert("ACCOUNT".to_owned(), account.to_owned());
    values.insert("CREATOR".to_owned(), plan.creator.clone());
    values
}

/// One object of `template` as it goes into `plan`'s space: values filled in, the namespace set, and labelled with the
/// template's name (so owners can find what a template made: `-l tenancy.loft.sh/template=NAME`).
#[must_use]
pub fn render(plan: &Plan, template: &SpaceTemplate, object: &Value) -> Value {
    let mut object = object.clone();
    parameters::substitute(&mut object, &values(plan, template));
    object["metadata"]["namespace"] = Value::String(plan.name.clone());
    if !object["metadata"]["labels"].is_object() {
        object["metadata"]["labels"] = Value::Object(serde_json::Map::new());
    }
    object["metadata"]["labels"][TEMPLATE_LABEL] = Value::String(template.metadata.name.clone().unwrap_or_default());
    object
}

/// The template records as the namespace annotation holds them.
#[must_use]
pub fn records_json(records: &[AppliedTemplate]) -> String {
    serde_json::to_string(records).unwrap_or_else(|_| "[]".to_owned())
}

/// The SpaceTemplates of a new space of `owner`: the account's, the default one when it names none, and the default
/// one for a space without an account. A missing default is skipped (an admin removed it); a missing named one is an
/// error, because the account asks for it.
///
/// # Errors
/// The account names a SpaceTemplate that does not exist.
pub fn templates_for(
    owner: &Owner,
    known: &BTreeMap<String, Arc<SpaceTemplate>>,
) -> Result<Vec<Arc<SpaceTemplate>>, Error> {
    let (names, defaulted) = match owner {
        Owner::Account(account) => account.templates(),
        Owner::Creator => (vec![DEFAULT_TEMPLATE.to_owned()], true),
    };
    let mut templates = Vec::new();
    for name in names {
        match known.get(&name) {
            Some(template) => templates.push(template.clone()),
            None if defaulted => {
                tracing::debug!(template = %name, "The default SpaceTemplate does not exist; none applied");
            }
            None => {
                return Err(Error::Template {
                    template: name,
                    message: "no such SpaceTemplate".to_owned(),
                })
            }
        }
    }
    Ok(templates)
}
