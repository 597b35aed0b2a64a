//! Identity spoofing straight at the server's port: only kube-apiserver's front-proxy certificate may assert who is
//! asking. Every forged case gets 401 (or a refused handshake) and no data; the real proxy certificate is the control.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use crate::harness::{curl, env, eventually, front_proxy_raw, namespace, role_binding, unique};

/// Writes a client certificate (and key) for `cn` signed by `issuer`, valid from `from` to `until` (days from now).
fn client_cert(issuer: &Issuer<'_, KeyPair>, cn: &str, from: i64, until: i64) -> (PathBuf, PathBuf) {
    signed_cert(issuer, cn, &[], from, until)
}

/// The same, with organizations (an x509 user's groups).
fn signed_cert(issuer: &Issuer<'_, KeyPair>, cn: &str, groups: &[&str], from: i64, until: i64) -> (PathBuf, PathBuf) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, cn);
    for group in groups {
        params.distinguished_name.push(DnType::OrganizationName, *group);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::days(from);
    params.not_after = now + time::Duration::days(until);
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, issuer).expect("signed");
    // Inside the run's state directory, which the run removes.
    let dir = env().path("STATE_DIR").join("e2e-certs").join(unique("certs"));
    std::fs::create_dir_all(&dir).expect("dir");
    let (crt, pem) = (dir.join("client.crt"), dir.join("client.key"));
    std::fs::write(&crt, cert.pem()).expect("write cert");
    std::fs::write(&pem, key.serialize_pem()).expect("write key");
    (crt, pem)
}

fn front_proxy_ca() -> Issuer<'static, KeyPair> {
    let pki = env().path("PKI_DIR");
    let cert = std::fs::read_to_string(pki.join("front-proxy-ca.crt")).expect("front-proxy CA");
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("front-proxy-ca.key")).expect("key")).expect("key");
    Issuer::from_ca_cert_pem(&cert, key).expect("issuer")
}

fn foreign_ca() -> Issuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, "front-proxy-ca");
    Issuer::new(params, KeyPair::generate().expect("key"))
}

/// Identity headers nobody may send but a trusted front proxy.
const FORGED: [&str; 3] = [
    "X-Remote-User: admin",
    "X-Remote-Group: system:masters",
    "X-Remote-Group: team-a",
];

fn forged() -> Vec<String> {
    FORGED.iter().map(|h| (*h).to_owned()).collect()
}

fn spaces_url() -> String {
    format!("{}/apis/tenancy.loft.sh/v1/spaces", env().var("SERVER_URL"))
}

/// `curl args` as `&str`s.
fn curl_with(url: &str, args: &[String]) -> (u16, String) {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(url, &args)
}

/// Lists spaces directly on the server's port with forged headers and the given client certificate.
fn forged_list(cert: Option<(PathBuf, PathBuf)>) -> (u16, String) {
    let cert = cert.as_ref().map(|(crt, key)| (crt.as_path(), key.as_path()));
    curl_with(&spaces_url(), &front_proxy_raw(cert, &forged()))
}

#[track_caller]
fn assert_refused((code, body): (u16, String)) {
    assert!(
        code == 401 || code == 0,
        "expected 401 or a refused handshake, got {code}: {body}"
    );
    assert!(!body.contains("\"items\""), "data leaked: {body}");
    assert!(!body.contains("kube-system"), "data leaked: {body}");
    if code == 401 {
        let status: serde_json::Value = serde_json::from_str(&body).expect("a Status body");
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "Unauthorized");
        assert_eq!(status["code"], 401);
    }
}

#[test]
fn forged_headers_without_a_certificate_are_unauthorized() {
    let (code, body) = forged_list(None);
    assert_eq!(code, 401, "{body}");
    assert_refused((code, body));
}

#[test]
fn forged_headers_with_a_certificate_from_another_ca_are_refused() {
    assert_refused(forged_list(Some(client_cert(
        &foreign_ca(),
        "front-proxy-client",
        -1,
        30,
    ))));
}

fn cluster_ca() -> Issuer<'static, KeyPair> {
    let pki = env().path("PKI_DIR");
    let cert = std::fs::read_to_string(pki.join("ca.crt")).expect("cluster CA");
    let key = KeyPair::from_pem(&std::fs::read_to_string(pki.join("ca.key")).expect("key")).expect("key");
    Issuer::from_ca_cert_pem(&cert, key).expect("issuer")
}

/// A client-CA certificate for `cn` in organizations `groups`.
fn user_cert(cn: &str, groups: &[&str], from: i64, until: i64) -> (PathBuf, PathBuf) {
    signed_cert(&cluster_ca(), cn, groups, from, until)
}

fn names(body: &str) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    let mut names: Vec<String> = list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items: {body}"))
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_client_ca_certificate_is_its_own_user_and_identity_headers_beside_it_are_ignored() {
    // CN=nobody, no grants: forged X-Remote-* (admin, system:masters) must not lend it anything.
    let (code, body) = forged_list(Some(user_cert(&unique("nobody"), &[], -1, 30)));
    assert_eq!(code, 200, "{body}");
    assert_eq!(names(&body), Vec::<String>::new(), "the headers were believed: {body}");
    // The cluster's own admin certificate (O=system:masters) is an x509 admin: everything.
    let pki = env().path("PKI_DIR");
    let (code, body) = forged_list(Some((pki.join("admin.crt"), pki.join("admin.key"))));
    assert_eq!(code, 200, "{body}");
    assert!(names(&body).contains(&"kube-system".to_owned()), "{body}");
}

#[test]
fn an_expired_client_ca_certificate_is_refused() {
    assert_refused(forged_list(Some(user_cert("admin", &["system:masters"], -30, -1))));
}

#[test]
fn bearer_tokens_are_reviewed_and_forged_headers_beside_them_are_ignored() {
    let env = env();
    let admin = env.kubectl("admin");
    let (home, granted) = (unique("tok-home"), unique("tok-granted"));
    admin.apply(&[crate::harness::namespace(&home), crate::harness::namespace(&granted)].concat());
    admin.run(&["create", "serviceaccount", "prober", "-n", &home]).ok();
    admin.apply(&crate::harness::role_binding(
        &granted,
        "prober",
        "ClusterRole/view",
        &[&format!("ServiceAccount:{home}/prober")],
    ));
    let token = admin.run(&["create", "token", "prober", "-n", &home]).ok();
    let url = spaces_url();
    let mut headers = vec![format!("Authorization: Bearer {}", token.trim())];
    headers.extend(forged());
    let args = front_proxy_raw(None, &headers);
    eventually(Duration::from_secs(20), || {
        let (code, body) = curl_with(&url, &args);
        if code == 200 && names(&body) == [granted.clone()] {
            Ok(())
        } else {
            Err((code, body))
        }
    });
    let (code, body) = curl(
        &url,
        &[
            "--cacert",
            env.var("SERVER_CA_CERT"),
            "-H",
            "Authorization: Bearer not-a-token",
        ],
    );
    assert_eq!(code, 401, "{body}");
    assert_refused((code, body));
}

#[test]
fn front_proxy_ca_certificate_with_a_common_name_outside_the_allowed_names_is_unauthorized() {
    let (code, body) = forged_list(Some(client_cert(&front_proxy_ca(), "intruder", -1, 30)));
    assert_eq!(code, 401, "{body}");
    assert_refused((code, body));
}

#[test]
fn expired_front_proxy_certificate_is_refused() {
    assert_refused(forged_list(Some(client_cert(
        &front_proxy_ca(),
        "front-proxy-client",
        -30,
        -1,
    ))));
}

#[test]
fn front_proxy_certificate_not_yet_valid_is_refused() {
    assert_refused(forged_list(Some(client_cert(
        &front_proxy_ca(),
        "front-proxy-client",
        1,
        30,
    ))));
}

#[test]
fn the_real_front_proxy_certificate_is_trusted() {
    // The control: the same request with kube-apiserver's own proxy certificate is served, so the refusals above are
    // the server's judgement, not a broken test.
    let env = env();
    let (code, body) = forged_list(Some((
        env.path("FRONT_PROXY_CLIENT_CERT"),
        env.path("FRONT_PROXY_CLIENT_KEY"),
    )));
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("\"kind\":\"SpaceList\"") && body.contains("kube-system"),
        "{body}"
    );
}

#[test]
fn health_endpoints_need_no_identity_and_everything_else_does() {
    let env = env();
    let ca = env.var("SERVER_CA_CERT");
    for path in ["/healthz", "/livez", "/readyz"] {
        let (code, body) = curl(&format!("{}{path}", env.var("SERVER_URL")), &["--cacert", ca]);
        assert_eq!((code, body.as_str()), (200, "ok"), "{path}");
    }
    for path in [
        "/apis",
        "/apis/tenancy.loft.sh/v1",
        "/metrics",
        "/apis/tenancy.loft.sh/v1/spaces/default",
    ] {
        let (code, body) = curl(&format!("{}{path}", env.var("SERVER_URL")), &["--cacert", ca]);
        assert_eq!(code, 401, "{path}: {body}");
    }
}

/// kube-apiserver's authentication ConfigMap, which the server watches for its request-header settings.
const AUTH_CONFIGMAP: [&str; 4] = ["configmap", "-n", "kube-system", "extension-apiserver-authentication"];

/// The ConfigMap's `data` as JSON, read as the cluster admin.
fn auth_configmap() -> Result<serde_json::Value, String> {
    let mut args = vec!["get"];
    args.extend(AUTH_CONFIGMAP);
    args.extend(["-o", "json"]);
    let run = env().kubectl("admin").run(&args);
    if !run.success {
        return Err(format!("`{}`: {}", run.args, run.stderr));
    }
    serde_json::from_str(&run.stdout).map_err(|e| format!("{e}: {}", run.stdout))
}

/// Edits the ConfigMap's `data` as the cluster admin, replacing it at the resourceVersion read so a concurrent writer
/// (kube-apiserver reconciles it too) is never overwritten: a conflict reads again and retries. No write when `edit`
/// changes nothing. Errors instead of panicking: this also runs from a `Drop`.
fn edit_auth_configmap(edit: impl Fn(&mut serde_json::Value) -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..10 {
        let mut cm = auth_configmap()?;
        if !cm["data"].is_object() {
            return Err(format!("the ConfigMap has no data: {cm}"));
        }
        let before = cm["data"].clone();
        edit(&mut cm["data"])?;
        if cm["data"] == before {
            return Ok(());
        }
        let run = env()
            .kubectl("admin")
            .run_with_stdin(&["replace", "-f", "-"], Some(&cm.to_string()));
        if run.success {
            return Ok(());
        }
        if !run.stderr.contains("the object has been modified") {
            return Err(format!("`{}`: {}", run.args, run.stderr));
        }
        last = run.stderr;
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    Err(format!("still conflicting after 10 attempts: {last}"))
}

/// The request-header CA bundle of the ConfigMap's `data`.
fn ca_bundle(data: &serde_json::Value) -> &str {
    data["requestheader-client-ca-file"].as_str().unwrap_or_default()
}

/// The certificate blocks of a PEM bundle.
fn pem_blocks(bundle: &str) -> impl Iterator<Item = &str> {
    bundle
        .split_inclusive("-----END CERTIFICATE-----")
        .filter(|block| block.contains("-----BEGIN CERTIFICATE-----"))
        .map(str::trim)
}

/// A certificate block's base64 body without line breaks: kube-apiserver re-encodes the bundle when it reconciles it,
/// so a certificate is recognized by its content, not its text.
fn pem_body(block: &str) -> String {
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .collect()
}

fn pem_bodies(bundle: &str) -> Vec<String> {
    pem_blocks(bundle).map(pem_body).collect()
}

/// The allowed names, a JSON list in a string.
fn allowed_names(data: &serde_json::Value) -> Result<Vec<String>, String> {
    let list = data["requestheader-allowed-names"].as_str().unwrap_or("[]");
    serde_json::from_str(list).map_err(|e| format!("{e}: {list}"))
}

/// An extra front proxy (its CA, and its CN) added to the ConfigMap beside kube-apiserver's own; removed again when
/// dropped, so a failing test leaves the ConfigMap as it found it. Only ever adds or removes its own entries.
struct ExtraFrontProxy {
    ca_pem: String,
    ca_body: String,
    name: String,
}

impl ExtraFrontProxy {
    /// A new proxy named `unique(prefix)` (not yet in the ConfigMap), and its client certificate and key.
    fn generate(prefix: &str) -> (Self, (PathBuf, PathBuf)) {
        let name = unique(prefix);
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, format!("{name}-ca"));
        let now = time::OffsetDateTime::now_utc();
        // Short-lived, so that even a leaked entry would be dropped by kube-apiserver, which filters expired CAs out.
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(1);
        let ca = rcgen::CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        let cert = client_cert(&ca, &name, -1, 1);
        let ca_pem = ca.pem();
        let proxy = ExtraFrontProxy {
            ca_body: pem_body(&ca_pem),
            ca_pem,
            name,
        };
        (proxy, cert)
    }

    fn add(&self) -> Result<(), String> {
        edit_auth_configmap(|data| {
            let (has_ca, has_name) = self.present(data)?;
            if !has_ca {
                let bundle = ca_bundle(data);
                let separator = if bundle.is_empty() || bundle.ends_with('\n') {
                    ""
                } else {
                    "\n"
                };
                data["requestheader-client-ca-file"] = format!("{bundle}{separator}{}", self.ca_pem).into();
            }
            if !has_name {
                let mut names = allowed_names(data)?;
                names.push(self.name.clone());
                data["requestheader-allowed-names"] = serde_json::to_string(&names).map_err(|e| e.to_string())?.into();
            }
            Ok(())
        })
    }

    fn remove(&self) -> Result<(), String> {
        edit_auth_configmap(|data| {
            let (has_ca, has_name) = self.present(data)?;
            if has_ca {
                let kept: String = pem_blocks(ca_bundle(data))
                    .filter(|block| pem_body(block) != self.ca_body)
                    .map(|block| format!("{block}\n"))
                    .collect();
                data["requestheader-client-ca-file"] = kept.into();
            }
            if has_name {
                let mut names = allowed_names(data)?;
                names.retain(|n| *n != self.name);
                data["requestheader-allowed-names"] = serde_json::to_string(&names).map_err(|e| e.to_string())?.into();
            }
            Ok(())
        })
    }

    /// Whether the ConfigMap's `data` holds this proxy's CA, and its name.
    fn present(&self, data: &serde_json::Value) -> Result<(bool, bool), String> {
        Ok((
            pem_bodies(ca_bundle(data)).contains(&self.ca_body),
            allowed_names(data)?.contains(&self.name),
        ))
    }
}

impl Drop for ExtraFrontProxy {
    fn drop(&mut self) {
        if let Err(error) = self.remove() {
            eprintln!("could not remove front proxy {} from the ConfigMap: {error}", self.name);
        }
    }
}

/// A list of spaces as the forged admin sees it (kube-system among them): the headers were believed.
fn lists_everything((code, body): (u16, String)) -> Result<(), (u16, String)> {
    if code == 200 && body.contains("\"kind\":\"SpaceList\"") && body.contains("kube-system") {
        Ok(())
    } else {
        Err((code, body))
    }
}

/// Every CA and allowed name of `original` is still in `data`: kube-apiserver's own proxy was never touched.
#[track_caller]
fn assert_originals_kept(original: &serde_json::Value, data: &serde_json::Value) {
    for body in pem_bodies(ca_bundle(original)) {
        assert!(
            pem_bodies(ca_bundle(data)).contains(&body),
            "an original CA is gone: {data}"
        );
    }
    for name in allowed_names(original).expect("names") {
        assert!(
            allowed_names(data).expect("names").contains(&name),
            "{name} is gone: {data}"
        );
    }
}

/// A CA and proxy name added to kube-apiserver's ConfigMap are trusted for new connections, and distrusted once
/// removed, with the server still running. kube-apiserver keeps both edits: its cluster-authentication-trust controller
/// only unions its own settings into the ConfigMap (on a one-minute tick).
#[test]
fn request_header_ca_changes_apply_to_new_connections_without_a_restart() {
    use std::time::{Duration, Instant};

    let (proxy, cert) = ExtraFrontProxy::generate("rotated-proxy");
    let original = auth_configmap().expect("the ConfigMap")["data"].clone();
    assert_eq!(proxy.present(&original), Ok((false, false)));

    // Unknown CA: the forged admin is not believed.
    assert_refused(forged_list(Some(cert.clone())));

    // Trusted, without a restart: a new connection with the new proxy's certificate asserts identities.
    proxy.add().expect("adding the proxy");
    let added = Instant::now();
    crate::harness::eventually(Duration::from_secs(30), || {
        lists_everything(forged_list(Some(cert.clone())))
    });
    eprintln!("new front-proxy CA trusted after {:?}", added.elapsed());
    // Additive: kube-apiserver's own CA and proxy are still in the ConfigMap and still trusted.
    let data = auth_configmap().expect("the ConfigMap")["data"].clone();
    assert_eq!(proxy.present(&data), Ok((true, true)), "{data}");
    assert_originals_kept(&original, &data);
    let env = env();
    lists_everything(forged_list(Some((
        env.path("FRONT_PROXY_CLIENT_CERT"),
        env.path("FRONT_PROXY_CLIENT_KEY"),
    ))))
    .expect("the real front proxy is still trusted");

    // Untrusted again, as soon as it is removed.
    proxy.remove().expect("removing the proxy");
    let removed = Instant::now();
    let refused = crate::harness::eventually(Duration::from_secs(30), || match forged_list(Some(cert.clone())) {
        (code @ (0 | 401), body) => Ok((code, body)),
        seen => Err(seen),
    });
    eprintln!(
        "new front-proxy CA distrusted after {:?} (HTTP code {})",
        removed.elapsed(),
        refused.0
    );
    assert_refused(refused);
    let data = auth_configmap().expect("the ConfigMap")["data"].clone();
    assert_eq!(proxy.present(&data), Ok((false, false)), "{data}");
    assert_originals_kept(&original, &data);
}

/// One HTTP/2 connection to the run's server, with a client certificate, held open across requests: every request of
/// it goes over that one TLS session (hyper's sender is bound to its connection and never reconnects).
struct OneConnection {
    runtime: tokio::runtime::Runtime,
    sender: hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>,
    origin: String,
}

impl OneConnection {
    fn open(cert: &Path, key: &Path) -> Self {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

        let env = env();
        let origin = env.var("SERVER_URL").to_owned();
        let url = url::Url::parse(&origin).expect("SERVER_URL");
        let (host, port) = (url.host_str().expect("a host").to_owned(), url.port().expect("a port"));
        let pem = |path: &Path| -> Vec<CertificateDer<'static>> {
            CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        };
        let mut roots = rustls::RootCertStore::empty();
        for ca in pem(&env.path("SERVER_CA_CERT")) {
            roots.add(ca).expect("the server's CA");
        }
        let key = PrivateKeyDer::from_pem_file(key).expect("the client key");
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .expect("TLS versions")
                .with_root_certificates(roots)
                .with_client_auth_cert(pem(cert), key)
                .expect("the client certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        // One worker, so the connection's task keeps answering the server (pings, settings) between requests.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let sender = runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
                .await
                .expect("connect");
            let name = ServerName::try_from(host).expect("a server name");
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .expect("the TLS handshake");
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "HTTP/2 negotiated");
            let (sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tls),
            )
            .await
            .expect("the HTTP/2 handshake");
            tokio::spawn(connection);
            sender
        });
        OneConnection {
            runtime,
            sender,
            origin,
        }
    }

    /// GET `path` with `headers` on this connection: (HTTP code, body). Panics if the connection is gone.
    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        use http_body_util::BodyExt;

        let mut request = http::Request::get(format!("{}{path}", self.origin));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(http_body_util::Full::default()).expect("a request");
        let sender = &mut self.sender;
        self.runtime.block_on(async {
            sender.ready().await.expect("the connection is still open");
            let response = sender.send_request(request).await.expect("an answer on the connection");
            let code = response.status().as_u16();
            let body = response.into_body().collect().await.expect("the body").to_bytes();
            (code, String::from_utf8_lossy(&body).into_owned())
        })
    }
}

/// The same, for a connection opened before the change: trust is judged per request under the settings in force, so a
/// proxy whose CA is removed is refused on the very connection it opened while trusted (kube-apiserver keeps its
/// connections to an aggregated server open for long).
#[test]
fn a_removed_request_header_ca_is_distrusted_on_a_connection_opened_while_it_was_trusted() {
    // Its own CA and name beside kube-apiserver's, never theirs: the other tests keep using the real proxy meanwhile.
    let (proxy, cert) = ExtraFrontProxy::generate("held-proxy");
    let headers = [("X-Remote-User", "admin"), ("X-Remote-Group", "system:masters")];

    proxy.add().expect("adding the proxy");
    eventually(Duration::from_secs(30), || {
        lists_everything(forged_list(Some(cert.clone())))
    });
    let mut held = OneConnection::open(&cert.0, &cert.1);
    lists_everything(held.get("/apis/tenancy.loft.sh/v1/spaces", &headers)).expect("trusted on the held connection");

    proxy.remove().expect("removing the proxy");
    let removed = std::time::Instant::now();
    // The server has the new settings once a new connection is refused; the held one must be refused at once too.
    eventually(Duration::from_secs(30), || match forged_list(Some(cert.clone())) {
        (code @ (0 | 401), body) => Ok((code, body)),
        seen => Err(seen),
    });
    let refused = held.get("/apis/tenancy.loft.sh/v1/spaces", &headers);
    eprintln!(
        "held connection's front-proxy CA distrusted after {:?}",
        removed.elapsed()
    );
    assert_eq!(refused.0, 401, "{}", refused.1);
    assert_refused(refused);
    // The connection itself is still good: a request that needs no identity is answered on it.
    assert_eq!(held.get("/readyz", &[]), (200, "ok".to_owned()));
    // Trusted again on the same connection once the CA is back; removed again by the guard.
    proxy.add().expect("adding the proxy again");
    eventually(Duration::from_secs(30), || {
        lists_everything(held.get("/apis/tenancy.loft.sh/v1/spaces", &headers))
    });
}

/// kube-apiserver's request-header rules, end to end through the real proxy certificate: header names in any case;
/// only the first value of the user header counts (an empty one is no user, never a cue to read the next); a comma is
/// part of a group's name, never a second group.
#[test]
fn identity_headers_are_read_exactly_as_kube_apiserver_reads_them() {
    let env = env();
    let admin = env.kubectl("admin");
    let (mine, ours) = (unique("hdr-user-ns"), unique("hdr-group-ns"));
    let (user, group) = (unique("hdr-user"), unique("hdr-group"));
    admin.apply(
        &[
            namespace(&mine),
            namespace(&ours),
            role_binding(&mine, "view", "ClusterRole/view", &[&format!("User:{user}")]),
            role_binding(&ours, "view", "ClusterRole/view", &[&format!("Group:{group}")]),
        ]
        .concat(),
    );
    let proxy = (env.path("FRONT_PROXY_CLIENT_CERT"), env.path("FRONT_PROXY_CLIENT_KEY"));
    let list = |headers: &[String], cert: bool| -> (u16, String) {
        let cert = cert.then_some((proxy.0.as_path(), proxy.1.as_path()));
        curl_with(&spaces_url(), &front_proxy_raw(cert, headers))
    };
    let related = |body: &str| -> Vec<String> {
        names(body)
            .into_iter()
            .filter(|n| *n == mine || *n == ours || n == "kube-system")
            .collect()
    };
    let mut both = vec![mine.clone(), ours.clone()];
    both.sort();

    // Lower-case names are the same headers. (Waits for the bindings to reach the server.)
    eventually(Duration::from_secs(10), || {
        let (code, body) = list(
            &[format!("x-remote-user: {user}"), format!("x-remote-group: {group}")],
            true,
        );
        if code == 200 && related(&body) == both {
            Ok(())
        } else {
            Err((code, body))
        }
    });
    // A second user header is not read: the first value is the user.
    let (code, body) = list(
        &[format!("X-Remote-User: {user}"), "X-Remote-User: admin".to_owned()],
        true,
    );
    assert_eq!((code, related(&body)), (200, vec![mine.clone()]), "{body}");
    // An empty first value is no user at all (`Name;` is curl's way to send a header with an empty value).
    let (code, body) = list(&["X-Remote-User;".to_owned(), "X-Remote-User: admin".to_owned()], true);
    assert_refused((code, body));
    // One group per header line: a comma does not smuggle in system:masters, nor split off the real group.
    let (code, body) = list(
        &[
            format!("X-Remote-User: {user}"),
            format!("X-Remote-Group: {group},system:masters"),
        ],
        true,
    );
    assert_eq!((code, related(&body)), (200, vec![mine.clone()]), "{body}");
    // Groups split across lines are each a group.
    let (code, body) = list(
        &[
            format!("X-Remote-User: {user}"),
            "X-Remote-Group: nobody-in-particular".to_owned(),
            format!("X-Remote-Group: {group}"),
        ],
        true,
    );
    assert_eq!((code, related(&body)), (200, both), "{body}");
    // And without the proxy certificate, none of it counts, in any case.
    assert_refused(list(
        &[
            "x-remote-user: admin".to_owned(),
            "x-remote-group: system:masters".to_owned(),
        ],
        false,
    ));
}
