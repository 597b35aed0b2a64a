//! Writes through a tenant's `kubectl proxy`, as a page the tenant visits could send them: browsers send `text/plain`,
//! form and multipart bodies across origins without asking first. Each is refused with kube-apiserver's 415 and
//! changes nothing; JSON, YAML and server-side apply (what kubectl, client-go and the console send) still work.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{account, curl, env, eventually, unique, Kubectl, Streaming};

const SETTLE: Duration = Duration::from_secs(20);
const OBJECTS: &str =
    "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml";
const PATCHES: &str = "the body of the request was in an unknown format - accepted media types include: \
application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";

/// `kubectl proxy` on a free port as the tenant, and its URL.
struct Proxy {
    url: String,
    _process: Streaming,
}

impl Proxy {
    fn start(tenant: &Kubectl) -> Self {
        let mut process = tenant.spawn(&["proxy", "--port=0"]);
        let line = process.next_lines(1, SETTLE).remove(0);
        let address = line
            .strip_prefix("Starting to serve on ")
            .unwrap_or_else(|| panic!("kubectl proxy said {line:?}"));
        Proxy {
            url: format!("http://{address}/apis/tenancy.loft.sh/v1/spaces"),
            _process: process,
        }
    }

    /// `method` on `path` (below spaces) with `content_type` and `body`: (code, the answer as JSON).
    fn send(&self, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        let header = format!("Content-Type: {content_type}");
        let (code, out) = curl(
            &format!("{}{path}", self.url),
            &["-X", method, "-H", &header, "--data-binary", body],
        );
        (code, serde_json::from_str(&out).unwrap_or(Value::String(out)))
    }
}

fn space_json(name: &str) -> String {
    format!(r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{name}"}}}}"#)
}

#[track_caller]
fn assert_unsupported(what: &str, (code, status): (u16, Value), message: &str) {
    assert_eq!(code, 415, "{what}: {status}");
    assert_eq!(status["kind"], "Status", "{what}: {status}");
    assert_eq!(status["reason"], "UnsupportedMediaType", "{what}: {status}");
    assert_eq!(status["message"], message, "{what}: {status}");
}

#[test]
fn writes_a_browser_may_send_across_origins_are_refused_through_kubectl_proxy_and_kubectls_own_still_work() {
    let env = env();
    let group = unique("xsite");
    env.kubectl("admin").apply(&account(&group, &group, 5, None, ""));
    let tenant = env.kubectl_as(&unique("xsite-user"), &[&group]);
    let proxy = Proxy::start(&tenant);

    // The tenant's account is live once a JSON create through the proxy succeeds: the baseline that the refusals
    // below are refusals of media types, not of the tenant.
    let made = unique("xsite-json");
    eventually(SETTLE, || {
        match proxy.send("POST", "", "application/json", &space_json(&made)) {
            (201, _) => Ok(()),
            other => Err(other),
        }
    });

    let refused = unique("xsite-refused");
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=tenancy",
    ] {
        let answer = proxy.send("POST", "", content_type, &space_json(&refused));
        assert_unsupported(&format!("POST {content_type}"), answer, OBJECTS);
        let label = r#"{"metadata":{"labels":{"cross":"site"}}}"#;
        let answer = proxy.send("PATCH", &format!("/{made}"), content_type, label);
        assert_unsupported(&format!("PATCH {content_type}"), answer, PATCHES);
        let answer = proxy.send("PUT", &format!("/{made}"), content_type, &space_json(&made));
        assert_unsupported(&format!("PUT {content_type}"), answer, OBJECTS);
        let answer = proxy.send(
            "DELETE",
            &format!("/{made}"),
            content_type,
            r#"{"kind":"DeleteOptions"}"#,
        );
        assert_unsupported(&format!("DELETE {content_type}"), answer, OBJECTS);
    }
    // Nothing was made or changed: no such space, no such namespace, the label absent, the space still there.
    let missing = tenant.run(&["get", "space", &refused]);
    assert!(
        !missing.success && missing.stderr.contains("NotFound"),
        "{}",
        missing.stderr
    );
    let namespace = env.kubectl("admin").run(&["get", "namespace", &refused]);
    assert!(!namespace.success, "a refused create made namespace {refused}");
    let labels = tenant
        .run(&[
            "get",
            "space",
            &made,
            "-o",
            "jsonpath={.metadata.labels.cross}|{.status.phase}",
        ])
        .ok();
    assert_eq!(labels, "|Active", "{made} was changed by a refused write");

    // YAML with its own media type, a JSON merge patch, kubectl's server-side apply, and a JSON delete's options.
    let yaml = unique("xsite-yaml");
    let body = format!("apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {yaml}\n");
    let (code, created) = proxy.send("POST", "", "application/yaml", &body);
    assert_eq!(code, 201, "YAML create: {created}");
    let label = r#"{"metadata":{"labels":{"tier":"gold"}}}"#;
    let (code, patched) = proxy.send("PATCH", &format!("/{made}"), "application/merge-patch+json", label);
    assert_eq!(
        (code, &patched["metadata"]["labels"]["tier"]),
        (200, &Value::from("gold")),
        "{patched}"
    );
    let applied = format!("{}  labels: {{applied: \"yes\"}}\n", crate::harness::space(&yaml));
    tenant
        .run_with_stdin(&["apply", "--server-side", "-f", "-"], Some(&applied))
        .ok();
    let label = tenant
        .run(&["get", "space", &yaml, "-o", "jsonpath={.metadata.labels.applied}"])
        .ok();
    assert_eq!(label, "yes");
    for name in [&made, &yaml] {
        let options = r#"{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Background"}"#;
        let (code, deleted) = proxy.send("DELETE", &format!("/{name}"), "application/json", options);
        assert_eq!(code, 200, "delete {name}: {deleted}");
    }
}
