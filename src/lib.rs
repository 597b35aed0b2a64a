//! tenancy-apiserver: a Kubernetes extension API server that serves `tenancy.loft.sh/v1` spaces, each user's view
//! of the namespaces RBAC lets them get. The binary (`main.rs`) wires these modules together; benchmarks and tests use
//! them directly.

pub mod access;
pub mod api;
pub mod authn;
pub mod authz;
pub mod backend;
pub mod certs;
pub mod clusters;
pub mod config;
pub mod connect;
pub mod controllers;
pub mod domains;
#[cfg(test)]
mod fixtures;
pub mod http;
pub mod metrics;
pub mod sleep;
pub mod spaces;
pub mod state;
pub mod tls;
pub mod watch;
