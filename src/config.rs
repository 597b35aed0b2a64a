//! Command-line options of `serve`, completed and validated into what the server runs with.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::access::AccessMode;
use crate::domains::SpaceDomains;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--{flag} {path}: file not found")]
    Missing { flag: &'static str, path: PathBuf },
    #[error("--space-domain/--space-issuer: {0}")]
    Domains(String),
}

/// Flag names follow Kubernetes' generic API servers.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Port to serve HTTPS on.
    #[arg(long, default_value_t = 8443)]
    pub secure_port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Serving certificate (PEM; the chain may follow the leaf).
    #[arg(long)]
    pub tls_cert_file: PathBuf,
    /// Private key of the serving certificate (PEM).
    #[arg(long)]
    pub tls_private_key_file: PathBuf,
    /// Kubeconfig of the server's own identity; unset: in-cluster config, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// How a user's visible namespaces are decided: `rbac` evaluates RBAC objects in this server (exact for clusters
    /// authorized by RBAC alone, and the fastest); `sar` asks kube-apiserver SubjectAccessReviews, for clusters whose
    /// authorizers are not only RBAC (webhooks).
    #[arg(long, value_enum, default_value_t = AccessMode::Rbac)]
    pub access_mode: AccessMode,
    /// Whether this cluster's own namespaces are spaces. `false`: a management ("trunk") cluster that only connects
    /// the others; its namespaces are never spaces, and every space lives in a connected cluster (`<cluster>.<name>`).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub local_spaces: bool,
    /// The base domain of this cluster's spaces: each owns `<namespace>.<base>` and every name below it, and
    /// kube-apiserver refuses every other hostname in it (Ingresses, Gateway API routes, cert-manager Certificates).
    /// Unset: no space domains here.
    #[arg(long)]
    pub space_domain: Option<String>,
    /// The shared ClusterIssuer tenants may name for certificates under their space's domain; every other
    /// ClusterIssuer is refused to them. Unset: none.
    #[arg(long)]
    pub space_issuer: Option<String>,
    /// With `--access-mode=sar`: how often every identity in use is reviewed again in full, e.g. `30s` or `2m`
    /// (RBAC changes and new namespaces are reviewed at once; a webhook's own changes wait for this).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub access_review_refresh: Duration,
    /// On SIGTERM: how long the whole shutdown may take, from the signal to the exit (readiness fails at once, then
    /// `--shutdown-delay`, then the listener closes, open watches end and requests in flight finish). The default
    /// leaves room within Kubernetes' default `terminationGracePeriodSeconds` of 30.
    #[arg(long, default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace_period: Duration,
    /// On SIGTERM: how long to keep serving, unready, before the listener closes, so endpoints and load balancers stop
    /// sending new connections first (kube-apiserver's `--shutdown-delay-duration`). `0s` closes at once.
    #[arg(long, default_value = "3s", value_parser = parse_duration_or_zero)]
    pub shutdown_delay: Duration,
    /// Connections served at once; past it, a new connection is closed as soon as it is accepted. kube-apiserver needs
    /// a few (it multiplexes every request and watch over HTTP/2); the cap bounds what idle or abusive connections
    /// cost (each holds its TLS and HTTP buffers).
    #[arg(long, default_value_t = 2000)]
    pub max_connections: usize,
    /// A connection with no request in flight for this long is closed (a watch is in flight while it is open), one
    /// that never sent a request included. kube-apiserver dials again when it next needs one.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub idle_connection_timeout: Duration,
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    pub kubeconfig: Option<PathBuf>,
    pub access_mode: AccessMode,
    pub local_spaces: bool,
    pub space_domains: Option<SpaceDomains>,
    pub access_review_refresh: Duration,
    pub shutdown_grace_period: Duration,
    pub shutdown_delay: Duration,
    pub connections: Limits,
}

/// What connections may cost: how many are served at once, and how long one may carry nothing.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

/// A duration as Kubernetes flags write them (Go's syntax, read by kube's parser: `30s`, `2m`, `1h30m`, `1.5s`), at
/// least a second.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_duration_or_zero(text)?;
    if duration < Duration::from_secs(1) {
        return Err("must be at least 1s".to_owned());
    }
    Ok(duration)
}

/// A duration as [`parse_duration`] reads it, where `0s` is allowed (nothing to wait for).
fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    // kube's parser takes "" for zero; Go's flags refuse it, and a number without a unit.
    if text.is_empty() || text.ends_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a duration like 30s, 2m or 1h: a unit is missing"
        ));
    }
    let parsed: kube::core::Duration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 30s, 2m or 1h: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    Ok(Duration::from(parsed))
}

// === impl Options ===

impl Options {
    /// Fills in what the flags leave implicit and checks what can be checked before connecting anywhere.
    ///
    /// # Errors
    /// When a named file does not exist, or the space domain or issuer is no DNS name.
    pub fn complete(self) -> Result<Config, Error> {
        for (flag, path) in [
            ("tls-cert-file", &self.tls_cert_file),
            ("tls-private-key-file", &self.tls_private_key_file),
        ] {
            if !path.is_file() {
                return Err(Error::Missing {
                    flag,
                    path: path.clone(),
                });
            }
        }
        if let Some(path) = &self.kubeconfig {
            if !path.is_file() {
                return Err(Error::Missing {
                    flag: "kubeconfig",
                    path: path.clone(),
                });
            }
        }
        Ok(Config {
            listen: SocketAddr::new(self.bind_address, self.secure_port),
            tls_cert_file: self.tls_cert_file,
            tls_private_key_file: self.tls_private_key_file,
            kubeconfig: self.kubeconfig,
            access_mode: self.access_mode,
            local_spaces: self.local_spaces,
            space_domains: SpaceDomains::new(self.space_domain.as_deref(), self.space_issuer.as_deref())
                .map_err(Error::Domains)?,
            access_review_refresh: self.access_review_refresh,
            shutdown_grace_period: self.shutdown_grace_period,
            // The delay is part of the grace period, never longer.
            shutdown_delay: self.shutdown_delay.min(self.shutdown_grace_period),
            connections: Limits {
                max_connections: self.max_connections.max(1),
                idle_timeout: self.idle_connection_timeout,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_read_in_kubernetes_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "30", "0s", "-1s", "500ms", "1d", "30 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn a_delay_may_be_zero_but_not_negative() {
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration_or_zero("3s"), Ok(Duration::from_secs(3)));
        for bad in ["", "3", "-1s", "1d"] {
            assert!(parse_duration_or_zero(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
