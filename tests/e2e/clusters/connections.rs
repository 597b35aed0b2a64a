//! Connecting a cluster from the web console: a `ClusterConnection` posted through kube-apiserver by a cluster admin
//! (tenants are refused) with an admin kubeconfig pasted whole. A kubeconfig that does not parse, whose cluster does
//! not answer, or whose user lacks the rights is refused with a sentence saying which, at `spec.kubeconfig`, and leaves
//! nothing behind in either cluster; a good one connects the cluster as `tenancy-apiserver connect` does, and the
//! kubeconfig is never answered back.

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use super::{cluster_becomes, SecondControlPlane};
use crate::harness::{env, unique};

const PATH: &str = "/apis/tenancy.loft.sh/v1/clusterconnections";

/// POSTs a ClusterConnection named `name` with `kubeconfig` as `user` in `groups`: (code, the answer as JSON).
fn connect_as(user: &str, groups: &[&str], name: &str, kubeconfig: &str) -> (u16, Value) {
    let body = json!({
        "apiVersion": "tenancy.loft.sh/v1", "kind": "ClusterConnection", "metadata": {"name": name},
        "spec": {"kubeconfig": kubeconfig, "displayName": "from the console"},
    });
    let (code, out) = env().apiserver_request_as(user, groups, "POST", PATH, Some(&body.to_string()));
    (code, serde_json::from_str(&out).unwrap_or(Value::String(out)))
}

/// A refusal at `spec.kubeconfig` whose message holds `says`.
#[track_caller]
fn refused_at_the_kubeconfig((code, status): (u16, Value), says: &str) {
    assert_eq!(code, 422, "{status}");
    assert_eq!(status["reason"], "Invalid", "{status}");
    assert_eq!(status["details"]["causes"][0]["field"], "spec.kubeconfig", "{status}");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(message.contains(says), "the refusal should say {says:?}: {message}");
}

/// The flattened admin kubeconfig of `plane` (everything in it), as an admin would paste it: YAML, or with `-o json`.
fn flattened(plane: &SecondControlPlane, extra: &[&str]) -> String {
    let output = Command::new(plane.env.var("KUBECTL"))
        .args(["config", "view", "--raw", "--minify", "--flatten", "--kubeconfig"])
        .arg(plane.admin_kubeconfig())
        .args(extra)
        .output()
        .expect("kubectl runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn pasted(plane: &SecondControlPlane) -> String {
    flattened(plane, &[])
}

#[test]
fn a_cluster_admin_connects_a_cluster_from_the_console_and_a_bad_kubeconfig_leaves_nothing_behind() {
    let admin = env().kubectl("admin");
    let plane = SecondControlPlane::start();
    let name = unique("cc");
    let platform = unique("platform");
    let as_platform = |kubeconfig: &str| connect_as(&platform, &["system:masters"], &name, kubeconfig);
    let nothing_here = || {
        let cluster = admin.run(&["get", "clusters.config.tenancy.loft.sh", &name]);
        let secret = admin.run(&["get", "secret", "-n", "tenancy-system", &format!("cluster-{name}")]);
        assert!(
            cluster.stderr.contains("NotFound") && secret.stderr.contains("NotFound"),
            "a refused connection left {} {}",
            cluster.stdout,
            secret.stdout
        );
    };
    let nothing_there = || {
        let (_, out) = plane.kubectl(&["get", "namespace", "tenancy-system", "-o", "name"]);
        assert!(
            out.contains("NotFound"),
            "a refused connection left in the cluster: {out}"
        );
    };

    // Tenants may not: kube-apiserver refuses them before the server sees the request.
    let (code, status) = connect_as(&unique("tenant"), &[], &name, &pasted(&plane));
    assert_eq!(code, 403, "{status}");

    refused_at_the_kubeconfig(
        as_platform("this is: [not a kubeconfig"),
        "the kubeconfig does not parse",
    );
    let closed = "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
clusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\", insecure-skip-tls-verify: true}}]\n\
users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n";
    refused_at_the_kubeconfig(
        as_platform(closed),
        "the cluster at https://127.0.0.1:9 does not answer",
    );
    // A user of that cluster with no rights there: a ServiceAccount's token.
    let (ok, out) = plane.kubectl(&["create", "serviceaccount", "nobody", "-n", "default"]);
    assert!(ok, "{out}");
    let (ok, token) = plane.kubectl(&["create", "token", "nobody", "-n", "default"]);
    assert!(ok, "{token}");
    let mut weak: Value = serde_json::from_str(&flattened(&plane, &["-o", "json"])).expect("a kubeconfig as JSON");
    weak["users"][0]["user"] = json!({"token": token.trim()});
    refused_at_the_kubeconfig(
        as_platform(&weak.to_string()),
        "may not create namespaces in the cluster at",
    );
    nothing_here();
    nothing_there();

    // A good one connects it: the Cluster becomes Ready, and the cluster holds the server's identity and its guards.
    let (code, created) = as_platform(&pasted(&plane));
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["kind"], "ClusterConnection", "{created}");
    assert!(
        created["spec"].get("kubeconfig").is_none(),
        "the kubeconfig was answered back: {created}"
    );
    cluster_becomes(&name, "{.status.phase}", "Ready", Duration::from_secs(60));
    plane.assert_server_identity();
    let (ok, out) = plane.kubectl(&["get", "validatingadmissionpolicy", "tenancy-namespace-keys"]);
    assert!(ok, "{out}");
    // The Secret holds the server's own identity there (a token of its ServiceAccount), not the admin's credentials.
    let kubeconfig = super::server_kubeconfig(&name);
    let user = &kubeconfig["users"][0];
    assert_eq!(user["name"], "tenancy-apiserver-connected", "{kubeconfig}");
    assert!(
        user["user"]["token"].is_string() && user["user"].get("client-certificate-data").is_none(),
        "{kubeconfig}"
    );
    // Connecting the same name again is refused, and changes nothing.
    let (code, status) = as_platform(&pasted(&plane));
    assert_eq!(code, 409, "{status}");

    let (ok, out) = super::tenancy(&[
        "disconnect",
        "--name",
        &name,
        "--management-kubeconfig",
        env().var("KUBECONFIG_ADMIN"),
    ]);
    assert!(ok, "{out}");
}
