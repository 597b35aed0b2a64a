//! Request headers as a front proxy (or anyone else) sends them, through `authn::authenticate`.
//!
//! The input is read as header lines, `name: value` separated by `\n` (names and values that `http` refuses are
//! skipped, as hyper would have refused the request). Each request is authenticated on a connection from the trusted
//! front proxy and on connections that are not.
//!
//! Invariants:
//! - authentication never panics;
//! - headers never assert an identity on a connection without a trusted front-proxy certificate: with no client
//!   certificate at all it is unauthenticated (`Err(Unauthenticated)`, or `Ok(None)`: left to a bearer token), and with
//!   an x509 user certificate it is exactly that certificate's user, whatever the headers say;
//! - a trusted one never yields an empty user name, and the name is one of the username header values (it is refused
//!   only when the first X-Remote-User value is empty or missing);
//! - groups never contain an empty string, and each is a group header value or `system:authenticated`;
//! - extra values are values of headers under an extra prefix.
#![no_main]

use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use tenancy_apiserver::authn::{authenticate, Error, PeerIdentity, RequestHeaderConfig};

/// What kube-apiserver publishes in `kube-system/extension-apiserver-authentication` with its usual flags.
fn config() -> RequestHeaderConfig {
    let list = |names: &[&str]| names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    RequestHeaderConfig {
        ca_certificates: Vec::new(),
        allowed_names: list(&["front-proxy-client"]),
        username_headers: list(&["X-Remote-User"]),
        uid_headers: list(&["X-Remote-Uid"]),
        group_headers: list(&["X-Remote-Group"]),
        extra_header_prefixes: list(&["X-Remote-Extra-"]),
        client_ca_certificates: Vec::new(),
    }
}

fn peer(cn: Option<&str>, x509_user: Option<(&str, &[&str])>) -> PeerIdentity {
    PeerIdentity {
        proxy_common_name: cn.map(str::to_owned),
        x509_user: x509_user.map(|(name, orgs)| (name.to_owned(), orgs.iter().map(|o| (*o).to_owned()).collect())),
    }
}

fn headers(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let value = value.trim_ascii_start();
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.trim_ascii()),
            HeaderValue::from_bytes(value),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    headers
}

/// Every value of `name` that is visible ASCII.
fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect()
}

fuzz_target!(|data: &[u8]| {
    let config = config();
    let headers = headers(data);
    let untrusted = [
        None,
        Some(""),
        Some("front-proxy-client "),
        Some("Front-Proxy-Client"),
        Some("kube-apiserver"),
    ];

    // No trusted proxy, no client certificate: nothing the headers say counts.
    for cn in untrusted {
        let result = authenticate(&config, &peer(cn, None), &headers);
        assert!(
            matches!(result, Err(Error::Unauthenticated) | Ok(None)),
            "untrusted peer {cn:?} authenticated from headers: {result:?}"
        );
    }

    // No trusted proxy, an x509 user: that user and only that user.
    for cn in untrusted {
        let orgs: &[&str] = &["team-a", "system:authenticated"];
        match authenticate(&config, &peer(cn, Some(("carol", orgs))), &headers) {
            Ok(Some(user)) => {
                assert_eq!(user.name, "carol", "headers changed an x509 user's name");
                assert_eq!(user.uid, None, "headers gave an x509 user a uid");
                assert!(
                    user.extra.is_empty(),
                    "headers gave an x509 user extras: {:?}",
                    user.extra
                );
                for group in &user.groups {
                    assert!(
                        orgs.contains(&group.as_str()),
                        "headers gave an x509 user group {group:?}"
                    );
                }
            }
            other => panic!("x509 user on an untrusted proxy connection: {other:?}"),
        }
    }

    // The trusted front proxy (with or without an x509 identity of its own: the proxy's word wins).
    for x509_user in [None, Some(("front-proxy-client", &[][..]))] {
        match authenticate(&config, &peer(Some("front-proxy-client"), x509_user), &headers) {
            Ok(Some(user)) => {
                assert!(!user.name.is_empty(), "empty user name");
                assert!(
                    values(&headers, "x-remote-user").contains(&user.name.as_str()),
                    "user {:?} is no X-Remote-User value",
                    user.name
                );
                let sent_groups = values(&headers, "x-remote-group");
                for group in &user.groups {
                    assert!(!group.is_empty(), "empty group in {:?}", user.groups);
                    assert!(
                        group == "system:authenticated" || sent_groups.contains(&group.as_str()),
                        "group {group:?} was not sent"
                    );
                }
                if let Some(uid) = &user.uid {
                    assert!(
                        values(&headers, "x-remote-uid").contains(&uid.as_str()),
                        "uid {uid:?} was not sent"
                    );
                }
                let sent_extra: Vec<&str> = headers
                    .iter()
                    .filter(|(name, _)| name.as_str().starts_with("x-remote-extra-"))
                    .filter_map(|(_, v)| v.to_str().ok())
                    .collect();
                for value in user.extra.values().flatten() {
                    assert!(
                        sent_extra.contains(&value.as_str()),
                        "extra value {value:?} was not sent"
                    );
                }
            }
            Err(Error::Unauthenticated) | Ok(None) => {
                // Like Go's `Header.Get`, only the first X-Remote-User value counts.
                let first = headers.get("x-remote-user").map(HeaderValue::to_str);
                assert!(
                    matches!(first, None | Some(Ok("") | Err(_))),
                    "a trusted request naming user {first:?} was refused"
                );
            }
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
});
