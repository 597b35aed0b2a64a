//! Authentication decisions: which peers' identity headers are believed, how headers are read, and bearer tokens.

use http::{HeaderMap, HeaderValue};

use super::*;

fn config() -> RequestHeaderConfig {
    RequestHeaderConfig {
        ca_certificates: Vec::new(),
        allowed_names: vec!["front-proxy-client".to_owned()],
        username_headers: vec!["X-Remote-User".to_owned(), "X-Other-User".to_owned()],
        uid_headers: vec!["X-Remote-Uid".to_owned()],
        group_headers: vec!["X-Remote-Group".to_owned()],
        extra_header_prefixes: vec!["X-Remote-Extra-".to_owned()],
        client_ca_certificates: Vec::new(),
    }
}

fn proxy(cn: &str) -> PeerIdentity {
    PeerIdentity {
        proxy_common_name: Some(cn.to_owned()),
        x509_user: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

#[test]
fn headers_without_a_verified_certificate_are_ignored() {
    let err = authenticate(
        &config(),
        &PeerIdentity::default(),
        &headers(&[("X-Remote-User", "admin")]),
    );
    assert!(
        matches!(err, Ok(None)),
        "only a bearer token could still authenticate this request"
    );
}

#[test]
fn certificate_with_a_common_name_outside_the_allowed_names_is_not_trusted() {
    let err = authenticate(
        &config(),
        &proxy("someone-else"),
        &headers(&[("X-Remote-User", "admin")]),
    );
    assert!(
        matches!(err, Ok(None)),
        "only a bearer token could still authenticate this request"
    );
}

#[test]
fn empty_allowed_names_trust_any_certificate_from_the_ca() {
    let mut cfg = config();
    cfg.allowed_names.clear();
    let user = authenticate(&cfg, &proxy("anything"), &headers(&[("x-remote-user", "alice")]))
        .expect("trusted")
        .expect("a user");
    assert_eq!(user.name, "alice");
}

#[test]
fn trusted_proxy_asserts_user_groups_uid_and_extras() {
    let user = authenticate(
        &config(),
        &proxy("front-proxy-client"),
        &headers(&[
            ("x-remote-user", "alice"),
            ("x-remote-uid", "1234"),
            ("x-remote-group", "team-a"),
            ("X-REMOTE-GROUP", "a,b"),
            ("x-remote-extra-authentication.kubernetes.io%2fcredential-id", "JTI=1"),
            ("X-Remote-Extra-Scopes", "one"),
            ("x-remote-extra-scopes", "two"),
        ]),
    )
    .expect("trusted")
    .expect("a user");
    assert_eq!(user.name, "alice");
    assert_eq!(user.uid.as_deref(), Some("1234"));
    assert_eq!(user.groups, ["team-a", "a,b", "system:authenticated"]);
    assert_eq!(
        user.extra.get("authentication.kubernetes.io/credential-id"),
        Some(&vec!["JTI=1".to_owned()])
    );
    assert_eq!(
        user.extra.get("scopes"),
        Some(&vec!["one".to_owned(), "two".to_owned()])
    );
}

#[test]
fn first_non_empty_username_header_wins() {
    let user = authenticate(
        &config(),
        &proxy("front-proxy-client"),
        &headers(&[
            ("x-remote-user", ""),
            ("x-other-user", "bob"),
            ("x-remote-user", "mallory"),
        ]),
    )
    .expect("trusted")
    .expect("a user");
    // Go's Header.Get takes the first value of X-Remote-User, which is empty, so the next header name wins.
    assert_eq!(user.name, "bob");
}

#[test]
fn no_username_means_not_authenticated() {
    let err = authenticate(
        &config(),
        &proxy("front-proxy-client"),
        &headers(&[("x-remote-group", "system:masters")]),
    );
    assert!(matches!(err, Err(Error::Unauthenticated)));
}

#[test]
fn system_authenticated_is_not_added_twice_nor_to_anonymous() {
    let cfg = config();
    let p = proxy("front-proxy-client");
    let user = authenticate(
        &cfg,
        &p,
        &headers(&[("x-remote-user", "a"), ("x-remote-group", "system:authenticated")]),
    )
    .expect("trusted")
    .expect("a user");
    assert_eq!(user.groups, ["system:authenticated"]);
    let anon = authenticate(&cfg, &p, &headers(&[("x-remote-user", "system:anonymous")]))
        .expect("trusted")
        .expect("a user");
    assert!(anon.groups.is_empty());
}

#[test]
fn configmap_defaults_header_names_and_parses_lists() {
    let pem = rcgen::generate_simple_self_signed(vec!["x".to_owned()])
        .expect("cert")
        .cert
        .pem();
    let cm = ConfigMap {
        data: Some(
            [
                ("requestheader-client-ca-file".to_owned(), pem),
                (
                    "requestheader-allowed-names".to_owned(),
                    r#"["front-proxy-client"]"#.to_owned(),
                ),
                (
                    "requestheader-group-headers".to_owned(),
                    r#"["X-Remote-Group"]"#.to_owned(),
                ),
            ]
            .into(),
        ),
        ..ConfigMap::default()
    };
    let cfg = RequestHeaderConfig::from_configmap(&cm).expect("valid");
    assert_eq!(cfg.ca_certificates.len(), 1);
    assert_eq!(cfg.allowed_names, ["front-proxy-client"]);
    assert_eq!(cfg.username_headers, ["x-remote-user"]);
    assert_eq!(cfg.group_headers, ["X-Remote-Group"]);
    assert!(cfg.uid_headers.is_empty());
    assert_eq!(cfg.extra_header_prefixes, ["x-remote-extra-"]);
}

#[test]
fn configmap_without_request_header_ca_is_an_error() {
    let cm = ConfigMap::default();
    assert!(matches!(
        RequestHeaderConfig::from_configmap(&cm),
        Err(Error::MissingKey("requestheader-client-ca-file"))
    ));
}

#[test]
fn an_x509_user_is_its_certificate_and_headers_on_its_connection_are_ignored() {
    let peer = PeerIdentity {
        proxy_common_name: None,
        x509_user: Some(("nobody".to_owned(), vec!["team-z".to_owned()])),
    };
    let user = authenticate(
        &config(),
        &peer,
        &headers(&[("x-remote-user", "admin"), ("x-remote-group", "system:masters")]),
    )
    .expect("authenticated")
    .expect("a user");
    assert_eq!(user.name, "nobody");
    assert_eq!(user.groups, ["team-z", "system:authenticated"]);
}

#[test]
fn bearer_tokens_are_read_from_the_authorization_header() {
    assert_eq!(
        bearer_token(&headers(&[("authorization", "Bearer abc.def")])),
        Some("abc.def")
    );
    assert_eq!(
        bearer_token(&headers(&[("authorization", "bearer  xyz ")])),
        Some("xyz")
    );
    assert_eq!(bearer_token(&headers(&[("authorization", "Basic abc")])), None);
    assert_eq!(bearer_token(&headers(&[("authorization", "Bearer ")])), None);
    assert_eq!(bearer_token(&headers(&[])), None);
}
