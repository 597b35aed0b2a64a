//! TLS termination: the serving certificate, ALPN (h2, http/1.1), and client certificates requested but optional,
//! verified against the request-header CA and the cluster's client CA. Which of the two a certificate chains to is
//! established again per connection against each CA alone: only a request-header certificate may assert identities in
//! headers; a client-CA certificate is an x509 user.
//!
//! The request-header settings change at run time (kube-apiserver republishes its ConfigMap): each change builds a new
//! [`ServerConfig`] that new connections use; open connections keep the settings they were verified with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::authn::{PeerIdentity, RequestHeaderConfig};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{0} holds no certificate")]
    NoCertificate(PathBuf),
    #[error("building the client certificate verifier")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
    #[error("the request-header CA bundle")]
    Roots(#[source] rustls::Error),
    #[error("the serving certificate and key")]
    Config(#[source] rustls::Error),
}

/// What a new connection is accepted with: the TLS config and the request-header settings it verifies against.
pub struct Settings {
    pub server_config: Arc<ServerConfig>,
    pub request_header: Arc<RequestHeaderConfig>,
}

/// The current [`Settings`], swapped atomically when the serving certificate or request-header settings change.
pub struct Acceptor {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: ArcSwap<Settings>,
}

// === impl Acceptor ===

impl Acceptor {
    /// # Errors
    /// When the certificate files or the CA bundle cannot be used.
    pub fn new(cert_file: &Path, key_file: &Path, request_header: RequestHeaderConfig) -> Result<Self, Error> {
        let settings = build(cert_file, key_file, request_header)?;
        Ok(Acceptor {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: ArcSwap::from_pointee(settings),
        })
    }

    /// Settings for the next connection.
    #[must_use]
    pub fn current(&self) -> Arc<Settings> {
        self.current.load_full()
    }

    /// Rebuilds with new request-header settings (re-reading the serving certificate too, so a rotated one is picked
    /// up on the same occasion).
    ///
    /// # Errors
    /// The old settings stay when the new ones cannot be used.
    pub fn update(&self, request_header: RequestHeaderConfig) -> Result<(), Error> {
        let settings = build(&self.cert_file, &self.key_file, request_header)?;
        self.current.store(Arc::new(settings));
        Ok(())
    }
}

fn build(cert_file: &Path, key_file: &Path, request_header: RequestHeaderConfig) -> Result<Settings, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| Error::Read {
            path: cert_file.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(cert_file.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|source| Error::Read {
        path: key_file.to_owned(),
        source,
    })?;
    let mut roots = RootCertStore::empty();
    for ca in request_header
        .ca_certificates
        .iter()
        .chain(&request_header.client_ca_certificates)
    {
        roots.add(ca.clone()).map_err(Error::Roots)?;
    }
    // Bearer-token callers and probes send no certificate; the certificate only decides whether X-Remote-* counts.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(Error::Verifier)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(Error::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Settings {
        server_config: Arc::new(config),
        request_header: Arc::new(request_header),
    })
}

/// What a finished handshake's client certificate proves: a front proxy (chains to the request-header CA) or an x509
/// user (chains to the client CA), judged against each CA alone.
#[must_use]
pub fn peer_identity(connection: &ServerConnection, request_header: &RequestHeaderConfig) -> PeerIdentity {
    let Some((leaf, intermediates)) = connection.peer_certificates().and_then(<[_]>::split_first) else {
        return PeerIdentity::default();
    };
    let chains_to = |cas: &[CertificateDer<'static>]| -> bool {
        let anchors: Vec<_> = cas
            .iter()
            .filter_map(|ca| webpki::anchor_from_trusted_cert(ca).ok().map(|a| a.to_owned()))
            .collect();
        let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
            return false;
        };
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &anchors,
                intermediates,
                rustls_pki_types::UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .is_ok()
    };
    let Some((common_name, organizations)) = subject(leaf) else {
        return PeerIdentity::default();
    };
    if chains_to(&request_header.ca_certificates) {
        PeerIdentity {
            proxy_common_name: Some(common_name),
            x509_user: None,
        }
    } else if chains_to(&request_header.client_ca_certificates) {
        PeerIdentity {
            proxy_common_name: None,
            x509_user: Some((common_name, organizations)),
        }
    } else {
        PeerIdentity::default()
    }
}

/// CN and the O values of a certificate's subject.
fn subject(der: &CertificateDer<'_>) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_owned();
    let organizations = cert
        .subject()
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_owned))
        .collect();
    Some((cn, organizations))
}
