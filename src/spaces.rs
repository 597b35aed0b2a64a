//! The spaces registry: each verb on `spaces` mapped onto Namespaces, answered from the caches and filtered by what
//! the caller may see. A space the caller cannot see is reported exactly as one that does not exist.

pub mod selector;
pub mod table;

use std::sync::Arc;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;

use crate::access;
use crate::api::{Space, SpaceList};
use crate::authn::User;
use crate::backend::Stores;
use selector::{FieldSelector, LabelSelector};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Missing or invisible: the same error either way.
    #[error("space {0:?} not found")]
    NotFound(String),
    #[error(transparent)]
    Selector(#[from] selector::Error),
}

/// What a list asks for.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub label_selector: LabelSelector,
    pub field_selector: FieldSelector,
}

/// Spaces, served from the caches.
#[derive(Clone)]
pub struct Registry {
    stores: Stores,
}

// === impl Registry ===

impl Registry {
    #[must_use]
    pub fn new(stores: Stores) -> Self {
        Registry { stores }
    }

    /// The space `name`, if `user` may see it.
    ///
    /// # Errors
    /// [`Error::NotFound`] when it does not exist or is hidden from `user`.
    pub fn get(&self, user: &User, name: &str) -> Result<Space, Error> {
        let not_found = || Error::NotFound(name.to_owned());
        let namespace = self.stores.namespace(name).ok_or_else(not_found)?;
        if !access::may_get(&self.stores, user, name) {
            return Err(not_found());
        }
        Ok(Space::from_namespace(&namespace))
    }

    /// Every space `user` may see that matches `options`, sorted by name.
    #[must_use]
    pub fn list(&self, user: &User, options: &ListOptions) -> SpaceList {
        let visibility = access::visible_namespaces(&self.stores, user);
        let mut namespaces: Vec<Arc<Namespace>> = if visibility.all {
            self.stores.namespaces.state()
        } else {
            visibility
                .names
                .iter()
                .filter_map(|name| self.stores.namespace(name))
                .collect()
        };
        namespaces.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let items = namespaces
            .iter()
            .filter(|ns| {
                let name = ns.metadata.name.as_deref().unwrap_or_default();
                options.field_selector.matches(name) && options.label_selector.matches(ns.metadata.labels.as_ref())
            })
            .map(|ns| Space::from_namespace(ns))
            .collect();
        let metadata = ListMeta {
            resource_version: Some(self.stores.namespace_revision().to_string()),
            ..ListMeta::default()
        };
        SpaceList::new(items, metadata)
    }
}
