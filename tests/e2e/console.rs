//! The web console through kube-apiserver, as a tenant's browser reaches it: kube-apiserver authorizes its paths with
//! the tenants' RBAC shipped in deploy/ (`list` on `console` for the page, `get` for a file) and passes the server's
//! headers on; it is not discovered. The page itself is driven in a browser by tests/console.

use crate::harness::{curl, env};

const CONSOLE: &str = "/apis/tenancy.loft.sh/v1/console";

/// (code, headers in lower case, body) of a GET through kube-apiserver with alice's token.
fn get_as_alice(path: &str) -> (u16, String, String) {
    let env = env();
    let url = format!("{}{path}", env.var("APISERVER_URL"));
    let authorization = format!("Authorization: Bearer {}", env.var("TOKEN_ALICE"));
    let (code, out) = curl(&url, &["-i", "--cacert", env.var("CA_CERT"), "-H", &authorization]);
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("{path}: no headers in {out:?}"));
    (code, head.to_lowercase(), body.to_owned())
}

#[test]
fn every_tenant_gets_the_console_through_kube_apiserver_with_its_headers() {
    let (code, headers, body) = get_as_alice(&format!("{CONSOLE}/"));
    assert_eq!(code, 200, "{headers}\n{body}");
    assert!(headers.contains("content-type: text/html; charset=utf-8"), "{headers}");
    assert!(
        headers.contains("content-security-policy: default-src 'self';"),
        "{headers}"
    );
    assert!(headers.contains("x-content-type-options: nosniff"), "{headers}");
    assert!(
        body.contains(r#"<script type="module" src="app.js"></script>"#),
        "{body}"
    );

    let (code, headers, _) = get_as_alice(&format!("{CONSOLE}/app.js"));
    assert_eq!(code, 200, "{headers}");
    assert!(
        headers.contains("content-type: text/javascript; charset=utf-8"),
        "{headers}"
    );

    // Without the slash: a page sending the browser on to the folder (kube-apiserver passes no redirect on).
    let (code, headers, body) = get_as_alice(CONSOLE);
    assert_eq!(code, 200, "{headers}\n{body}");
    assert!(body.contains(r#"content="0; url=console/""#), "{body}");

    let (code, _, body) = get_as_alice(&format!("{CONSOLE}/nope.js"));
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains(r#""message":"console.tenancy.loft.sh \"nope.js\" not found""#),
        "{body}"
    );
}

/// kube-apiserver's answer to alice's SelfSubjectAccessReview for `verb` on the console (`name`: a file).
fn alice_may(verb: &str, name: &str) -> bool {
    let review = serde_json::json!({
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"group": "tenancy.loft.sh", "resource": "console", "verb": verb, "name": name}},
    });
    let answer = env()
        .kubectl("alice")
        .run_with_stdin(
            &[
                "create",
                "--validate=false",
                "-f",
                "-",
                "-o",
                "jsonpath={.status.allowed}",
            ],
            Some(&review.to_string()),
        )
        .ok();
    answer.trim() == "true"
}

#[test]
fn kube_apiserver_authorizes_the_console_as_list_and_get_of_a_resource_tenants_hold() {
    // (`kubectl auth can-i` cannot ask: it resolves the resource through discovery, where the console is not.)
    assert!(alice_may("list", ""));
    assert!(alice_may("get", "app.js"));
    // Nothing more: the console gives no right of its own.
    assert!(!alice_may("create", ""));
    assert!(!alice_may("watch", ""));
    let resources = env()
        .kubectl("alice")
        .run(&["api-resources", "--api-group=tenancy.loft.sh", "-o", "name"])
        .ok();
    assert!(!resources.contains("console"), "{resources}");
}
