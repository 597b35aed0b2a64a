//! TLS termination: the serving certificate, ALPN (h2, http/1.1), and client certificates requested but optional,
//! verified against the request-header CA and the cluster's client CA. Which of the two a certificate chains to is
//! established per connection against each CA alone: only a request-header certificate may assert identities in
//! headers; a client-CA certificate is an x509 user.
//!
//! Both inputs change at run time. The request-header settings (kube-apiserver republishes its ConfigMap) and the
//! serving certificate files (a rotated Secret; polled, see [`Acceptor::watch_files`]) each build a new
//! [`ServerConfig`] for new connections; open connections keep theirs, so their watches go on. What a connection's
//! client certificate proves is judged again under the settings in force for every request ([`PeerCertificates`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::authn::{PeerIdentity, RequestHeaderConfig};

/// How often the serving certificate files are read again for a change.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading {path}")]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// What the files held when the current settings were built, and what they held at the last failed attempt (told
    /// once, not at every poll). Also serializes rebuilds.
    files: Mutex<Files>,
}

struct Files {
    loaded: Contents,
    failed: Option<Contents>,
}

/// The serving certificate files' bytes: a change is any difference (a Secret volume swaps its files by symlink, and
/// timestamps can go backwards).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
}

// === impl Acceptor ===

impl Acceptor {
    /// # Errors
    /// When the certificate files or the CA bundle cannot be used.
    pub fn new(cert_file: &Path, key_file: &Path, request_header: RequestHeaderConfig) -> Result<Self, Error> {
        let contents = read(cert_file, key_file)?;
        let settings = build(&contents, cert_file, key_file, Arc::new(request_header))?;
        Ok(Acceptor {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            current: ArcSwap::from_pointee(settings),
            files: Mutex::new(Files {
                loaded: contents,
                failed: None,
            }),
        })
    }

    /// Settings for the next connection.
    #[must_use]
    pub fn current(&self) -> Arc<Settings> {
        self.current.load_full()
    }

    /// Rebuilds with new request-header settings and the serving certificate last loaded.
    ///
    /// # Errors
    /// The old settings stay when the new ones cannot be used.
    pub fn update(&self, request_header: RequestHeaderConfig) -> Result<(), Error> {
        let files = self.files.lock();
        let settings = build(&files.loaded, &self.cert_file, &self.key_file, Arc::new(request_header))?;
        self.current.store(Arc::new(settings));
        Ok(())
    }

    /// Reads the serving certificate files again and, if they changed, rebuilds for new connections with them
    /// (keeping the request-header settings as they are). `Ok(false)`: unchanged.
    ///
    /// # Errors
    /// When the files cannot be read or used (e.g. a certificate written before its key): the old settings stay, and
    /// the next call tries again.
    pub fn reload(&self) -> Result<bool, Error> {
        let mut files = self.files.lock();
        let contents = read(&self.cert_file, &self.key_file)?;
        if contents == files.loaded {
            files.failed = None;
            return Ok(false);
        }
        let request_header = self.current.load().request_header.clone();
        match build(&contents, &self.cert_file, &self.key_file, request_header) {
            Ok(settings) => {
                self.current.store(Arc::new(settings));
                *files = Files {
                    loaded: contents,
                    failed: None,
                };
                Ok(true)
            }
            Err(error) => {
                files.failed = Some(contents);
                Err(error)
            }
        }
    }

    /// Polls the serving certificate files every [`FILE_POLL_INTERVAL`] (see [`Acceptor::reload`]), forever.
    pub async fn watch_files(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(FILE_POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let failed_before = self.files.lock().failed.clone();
            match self.reload() {
                Ok(true) => tracing::info!(
                    cert = %self.cert_file.display(),
                    "Serving certificate changed; new connections get it, open ones keep theirs"
                ),
                Ok(false) => {}
                Err(error) => {
                    // Once per content: a half-written rotation is retried quietly until its other file arrives.
                    if failed_before != self.files.lock().failed {
                        tracing::warn!(error = %error, source = ?std::error::Error::source(&error), "Keeping the old serving certificate");
                    }
                }
            }
        }
    }
}

fn read(cert_file: &Path, key_file: &Path) -> Result<Contents, Error> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| Error::ReadFile {
            path: path.to_owned(),
            source,
        })
    };
    Ok(Contents {
        cert: read(cert_file)?,
        key: read(key_file)?,
    })
}

fn build(
    contents: &Contents,
    cert_file: &Path,
    key_file: &Path,
    request_header: Arc<RequestHeaderConfig>,
) -> Result<Settings, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_slice_iter(&contents.cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| Error::Read {
            path: cert_file.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(Error::NoCertificate(cert_file.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_slice(&contents.key).map_err(|source| Error::Read {
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
    // Refuses a key that does not match the certificate (a rotation caught halfway).
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(Error::Config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(Error::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Settings {
        server_config: Arc::new(config),
        request_header,
    })
}

/// A connection's client certificate chain and what it proves, judged again whenever the request-header settings in
/// force differ from those it was last judged under: a long-lived connection (kube-apiserver keeps one for every
/// watch it proxies) loses or gains front-proxy trust with the authentication ConfigMap, not at its next reconnect.
pub struct PeerCertificates {
    /// Leaf first, as the client sent it; empty when it sent none.
    chain: Vec<CertificateDer<'static>>,
    judged: Mutex<(Arc<RequestHeaderConfig>, PeerIdentity)>,
}

// === impl PeerCertificates ===

impl PeerCertificates {
    /// What a finished handshake's client certificate proves under the settings it was accepted with.
    #[must_use]
    pub fn of(connection: &ServerConnection, request_header: &Arc<RequestHeaderConfig>) -> Self {
        let chain: Vec<CertificateDer<'static>> = connection
            .peer_certificates()
            .map(|chain| chain.iter().map(|c| c.clone().into_owned()).collect())
            .unwrap_or_default();
        let identity = identity_of(&chain, request_header);
        PeerCertificates {
            chain,
            judged: Mutex::new((request_header.clone(), identity)),
        }
    }

    /// A peer taken to have proved `identity` under `request_header` (in-process tests, which have no handshake). It
    /// has no chain, so under any other settings it proves nothing.
    #[must_use]
    pub fn assumed(identity: PeerIdentity, request_header: Arc<RequestHeaderConfig>) -> Self {
        PeerCertificates {
            chain: Vec::new(),
            judged: Mutex::new((request_header, identity)),
        }
    }

    /// What the chain proves under `current`: the last judgement while the settings are the same, else a new one.
    #[must_use]
    pub fn identity(&self, current: &Arc<RequestHeaderConfig>) -> PeerIdentity {
        let mut judged = self.judged.lock();
        if !Arc::ptr_eq(&judged.0, current) {
            if *judged.0 != **current {
                judged.1 = identity_of(&self.chain, current);
            }
            judged.0 = current.clone();
        }
        judged.1.clone()
    }
}

/// What a client certificate chain (leaf first) proves: a front proxy (chains to the request-header CA) or an x509 user
/// (chains to the client CA), judged against each CA alone, now.
#[must_use]
pub fn identity_of(chain: &[CertificateDer<'static>], request_header: &RequestHeaderConfig) -> PeerIdentity {
    let Some((leaf, intermediates)) = chain.split_first() else {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    fn request_header(ca: CertificateDer<'static>) -> RequestHeaderConfig {
        RequestHeaderConfig::front_proxy(vec![ca])
    }

    /// A CA, and a client certificate with `common_name` it signed.
    fn client_chain(common_name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        ca_params.distinguished_name.push(DnType::CommonName, "front-proxy-ca");
        let ca_key = KeyPair::generate().expect("key");
        let ca = ca_params.self_signed(&ca_key).expect("CA");
        let issuer = Issuer::new(ca_params, ca_key);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params
            .signed_by(&KeyPair::generate().expect("key"), &issuer)
            .expect("leaf");
        (ca.der().clone(), leaf.der().clone())
    }

    #[test]
    fn a_changed_serving_certificate_is_loaded_and_a_half_written_one_waits_for_its_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let names = ["localhost".to_owned()];
        let first = crate::certs::generate(&names, 1).expect("certificate");
        crate::certs::write(&first, dir.path()).expect("written");
        let (ca, _) = client_chain("front-proxy-client");
        let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let acceptor = Acceptor::new(&cert_file, &key_file, request_header(ca)).expect("acceptor");
        let before = acceptor.current();
        assert!(!acceptor.reload().expect("readable"), "nothing changed");

        // The certificate arrives before its key: refused, the old one stays, and the next poll tries again.
        let second = crate::certs::generate(&names, 1).expect("certificate");
        std::fs::write(&cert_file, &second.cert_pem).expect("written");
        assert!(acceptor.reload().is_err(), "a certificate without its key");
        assert!(acceptor.reload().is_err(), "still without its key");
        assert!(Arc::ptr_eq(&before.server_config, &acceptor.current().server_config));

        std::fs::write(&key_file, &second.key_pem).expect("written");
        assert!(acceptor.reload().expect("the pair"), "both files changed");
        let after = acceptor.current();
        assert!(!Arc::ptr_eq(&before.server_config, &after.server_config));
        // The request-header settings are the same object: open connections are not judged again for this.
        assert!(Arc::ptr_eq(&before.request_header, &after.request_header));
        assert!(!acceptor.reload().expect("readable"), "loaded already");

        // A file that went away (a Secret volume between two symlinks) keeps the certificate in use.
        std::fs::remove_file(&key_file).expect("removed");
        assert!(acceptor.reload().is_err());
        assert!(Arc::ptr_eq(&after.server_config, &acceptor.current().server_config));
    }

    #[test]
    fn what_a_connection_proves_follows_the_settings_in_force() {
        let (ca, leaf) = client_chain("front-proxy-client");
        let (other_ca, _) = client_chain("front-proxy-client");
        let accepted = Arc::new(request_header(ca.clone()));
        let peer = PeerCertificates {
            chain: vec![leaf.clone()],
            judged: Mutex::new((accepted.clone(), identity_of(&[leaf], &accepted))),
        };
        let proxy = |settings: &Arc<RequestHeaderConfig>| peer.identity(settings).proxy_common_name;
        assert_eq!(proxy(&accepted).as_deref(), Some("front-proxy-client"));

        // kube-apiserver rotated its request-header CA: the same connection's next request proves nothing.
        let rotated = Arc::new(request_header(other_ca.clone()));
        assert_eq!(proxy(&rotated), None);
        assert_eq!(peer.identity(&rotated).x509_user, None);

        // Both CAs in the bundle (a rotation's overlap), as a new object with the old one in it: trusted again.
        let mut both = request_header(other_ca);
        both.ca_certificates.push(ca.clone());
        assert_eq!(proxy(&Arc::new(both)).as_deref(), Some("front-proxy-client"));

        // Equal settings in a new object (a ConfigMap resync) keep the judgement.
        assert_eq!(
            proxy(&Arc::new(request_header(ca))).as_deref(),
            Some("front-proxy-client")
        );

        // A chain from the client CA only is an x509 user, not a proxy.
        let (client_ca, client_leaf) = client_chain("jane");
        let mut settings = request_header(client_chain("x").0);
        settings.client_ca_certificates = vec![client_ca];
        let identity = identity_of(&[client_leaf], &settings);
        assert_eq!(identity.proxy_common_name, None);
        assert_eq!(identity.x509_user.map(|(name, _)| name).as_deref(), Some("jane"));
    }
}
