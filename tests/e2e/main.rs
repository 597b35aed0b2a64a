//! End-to-end tests: the server behind a real kube-apiserver, driven by the real kubectl and by raw HTTPS, each case as
//! a user with only the RBAC the case gives them.
//!
//! `make test` (tests/run.sh) starts one control plane and server for the whole run and passes its env file in
//! `TENANCY_E2E_ENV`; a bare `cargo test` starts its own (see `harness`).

#[allow(dead_code, reason = "the harness serves both test binaries; each uses part of it")]
mod harness;

mod authn;
mod clusters;
mod console;
mod cross_site;
mod discovery;
mod domains;
mod fresh;
mod install;
mod isolation;
mod kubectl;
mod lifecycle;
mod messages;
mod plugin;
mod positions;
mod quota;
mod sites;
mod sleep;
mod templates;
mod tenancy;
mod visibility;
mod watch;
