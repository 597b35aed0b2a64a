//! Controllers: loops that bring what the server owns in the cluster to what its state says it should be.

pub mod clusters;
pub mod domains;
pub mod quota;
pub mod reconcile;
pub mod sleep;
pub mod templates;
