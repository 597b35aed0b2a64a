//! Command-line options of `serve`, completed and validated into what the server runs with.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--{flag} {path}: file not found")]
    Missing { flag: &'static str, path: PathBuf },
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
}

/// Validated settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    pub kubeconfig: Option<PathBuf>,
}

// === impl Options ===

impl Options {
    /// Fills in what the flags leave implicit and checks what can be checked before connecting anywhere.
    ///
    /// # Errors
    /// When a named file does not exist.
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
        })
    }
}
