//! Wire types: the `tenancy.loft.sh/v1` resources, and the `meta.k8s.io` shapes k8s-openapi lacks (Table,
//! PartialObjectMetadata, aggregated discovery v2).
//!
//! Only types and pure conversions live here; what to answer is decided in `spaces` and `http`.

pub mod account;
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
/// Label on a namespace naming its owning Account.
pub const ACCOUNT_LABEL: &str = "tenancy.loft.sh/account";
/// Annotation on a namespace naming the user who created it through this server.
pub const CREATOR_ANNOTATION: &str = "tenancy.loft.sh/creator";
/// Label marking a space as shared (visible read-only to every authenticated user).
pub const SHARED_LABEL: &str = "tenancy.loft.sh/shared";
/// Annotation on a namespace naming the SpaceTemplates its space was made from (comma-separated), so the repair pass
/// knows which enforced objects belong there.
pub const TEMPLATES_ANNOTATION: &str = "tenancy.loft.sh/templates";
/// Label (value `true`) on an object in a space that the platform keeps there: owners may read it but neither change
/// nor delete it (deploy/admission.yaml), and the repair pass restores it if it goes.
pub const ENFORCED_LABEL: &str = "tenancy.loft.sh/enforced";
