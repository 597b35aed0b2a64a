//! Wire types: the `tenancy.loft.sh/v1` resources, and the `meta.k8s.io` shapes k8s-openapi lacks (Table,
//! PartialObjectMetadata, aggregated discovery v2).
//!
//! Only types and pure conversions live here; what to answer is decided in `spaces` and `http`.

pub mod account;
pub mod connection;
pub mod decode;
pub mod discovery;
pub mod openapi;
pub mod quantity;
pub mod space;
pub mod status;
pub mod table;

pub use space::{Space, SpaceList};

/// The API group this server serves.
pub const GROUP: &str = "tenancy.loft.sh";
/// The one version of [`GROUP`].
pub const VERSION: &str = "v1";
/// `group/version`, as it appears in `apiVersion`.
pub const GROUP_VERSION: &str = "tenancy.loft.sh/v1";
/// The resource kube-apiserver names the web console's paths by (`/apis/tenancy.loft.sh/v1/console/...`) when it
/// authorizes them; no API resource, and not in discovery.
pub const CONSOLE_RESOURCE: &str = "console";
/// Label on a namespace naming its owning Account.
pub const ACCOUNT_LABEL: &str = "tenancy.loft.sh/account";

/// The value of an object's label `key`, if it has one.
#[must_use]
pub fn label<'a>(object: &'a impl kube::Resource, key: &str) -> Option<&'a str> {
    object.meta().labels.as_ref()?.get(key).map(String::as_str)
}
/// Annotation on a namespace naming the user who created it through this server.
pub const CREATOR_ANNOTATION: &str = "tenancy.loft.sh/creator";
/// Label marking a space as shared (visible read-only to every authenticated user).
pub const SHARED_LABEL: &str = "tenancy.loft.sh/shared";
/// Annotation on a namespace naming the SpaceTemplates its space was made from (comma-separated), so the repair pass
/// knows which enforced objects belong there.
pub const TEMPLATES_ANNOTATION: &str = "tenancy.loft.sh/templates";
/// Annotation on a namespace holding the values its creator gave the templates' parameters (`spec.templateParameters`
/// of its Space, as a JSON object), so that repairs and syncs fill the templates in as the create did.
pub const TEMPLATE_PARAMETERS_ANNOTATION: &str = "tenancy.loft.sh/template-parameters";
/// Annotation on a namespace recording what each of its templates did there (a JSON list: name, generation,
/// parameters, Applied or Failed with the reason, the objects made), shown as the Space's `status.templates`.
pub const TEMPLATE_STATUS_ANNOTATION: &str = "tenancy.loft.sh/template-status";
/// Label on an object a template made, naming that template.
pub const TEMPLATE_LABEL: &str = "tenancy.loft.sh/template";
/// Label (value `true`) on an object in a space that the platform keeps there: owners may read it but neither change
/// nor delete it (deploy/admission.yaml), and the repair pass restores it if it goes.
pub const ENFORCED_LABEL: &str = "tenancy.loft.sh/enforced";
