//! Identity spoofing straight at the server's port: only kube-apiserver's front-proxy certificate may assert who is
//! asking. Every forged case gets 401 (or a refused handshake) and no data; the real proxy certificate is the control.

use std::path::PathBuf;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

use crate::harness::{curl, env, unique};

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
    let dir = std::env::temp_dir().join(unique("tenancy-e2e-certs"));
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

const FORGED: [&str; 6] = [
    "-H",
    "X-Remote-User: admin",
    "-H",
    "X-Remote-Group: system:masters",
    "-H",
    "X-Remote-Group: team-a",
];

/// Lists spaces directly on the server's port with forged headers and the given client certificate.
fn forged_list(cert: Option<(PathBuf, PathBuf)>) -> (u16, String) {
    let env = env();
    let url = format!("{}/apis/tenancy.loft.sh/v1/spaces", env.var("SERVER_URL"));
    let mut args: Vec<String> = vec!["--cacert".into(), env.var("SERVER_CA_CERT").into()];
    if let Some((crt, key)) = cert {
        args.extend([
            "--cert".into(),
            crt.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ]);
    }
    args.extend(FORGED.iter().map(|s| (*s).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&url, &args)
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
    let url = format!("{}/apis/tenancy.loft.sh/v1/spaces", env.var("SERVER_URL"));
    let authorization = format!("Authorization: Bearer {}", token.trim());
    let mut args = vec!["--cacert", env.var("SERVER_CA_CERT"), "-H", &authorization];
    args.extend(FORGED);
    crate::harness::eventually(std::time::Duration::from_secs(20), || {
        let (code, body) = curl(&url, &args);
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
