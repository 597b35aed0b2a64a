//! A trunk-only install (`serve --local-spaces=false`): a server beside the shared connected cluster whose own
//! cluster's namespaces are never spaces. Its tenants and admins list only the connected cluster's spaces; a local
//! namespace granted to a tenant never shows (list, get, watch); a bare-name create is 422 naming the cluster to use;
//! `kubectl space create` lands in the connected cluster; readiness and metrics say which mode is in force.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{env, eventually, front_proxy, namespace, role_binding, unique, RawWatch, Replica};
use crate::plugin::{space, tenant_kubeconfig_at};
use crate::sites::Site;

const SETTLE: Duration = Duration::from_secs(30);
const SPACES: &str = "/apis/tenancy.loft.sh/v1/spaces";

fn names(body: &str) -> Vec<String> {
    let list: Value = serde_json::from_str(body).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_trunk_only_server_keeps_no_spaces_in_its_own_cluster() {
    let env = env();
    let admin = env.kubectl("admin");
    let x = Site::connected();
    let cluster = x.cluster().expect("the connected site").to_owned();
    let (home, acc) = (unique("trunk-home"), unique("trunk-acct"));
    let sa = "tenant";
    let me = format!("system:serviceaccount:{home}:{sa}");
    let groups = ["system:serviceaccounts", "system:authenticated"];
    // A local namespace the tenant may get: a space on a default install, never on this one.
    let local = unique("trunk-local");
    admin.apply(&format!(
        "{}{}apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {home}}}\n---\n\
apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {acc}\nspec:\n  \
subjects: [{{kind: ServiceAccount, name: {sa}, namespace: {home}}}]\n  space: {{limit: 3, templates: []}}\n---\n{}",
        namespace(&home),
        namespace(&local),
        role_binding(
            &local,
            "trunk-view",
            "ClusterRole/view",
            &[&format!("ServiceAccount:{home}/{sa}")]
        ),
    ));
    let trunk = Replica::start_with(&[], None, &["--local-spaces=false"]);

    // It says which mode is in force.
    let (code, ready) = crate::harness::curl(
        &format!("{}/readyz?verbose", trunk.url),
        &["--cacert", env.var("SERVER_CA_CERT")],
    );
    assert!(code == 200 && ready.contains("local-spaces: off"), "{code} {ready}");
    let (_, metrics) = trunk.request_as("system:admin", &["system:masters"], "GET", "/metrics", None);
    assert!(metrics.contains("tenancy_local_spaces 0"), "{metrics}");

    // A bare name is refused, naming the cluster to create in.
    let (code, answer) = trunk.request_as(
        &me,
        &groups,
        "POST",
        SPACES,
        Some(r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"bare"}}"#),
    );
    assert_eq!(code, 422, "{answer}");
    assert!(answer.contains(&format!("name it {cluster}.bare")), "{answer}");

    // Watching from the start: a change to the local namespace sends nothing.
    let mut watch = RawWatch::open(&format!("{}{SPACES}?watch=1", trunk.url), &front_proxy(&me, &groups));

    // kubectl space create lands in the connected cluster, the account's first.
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = tenant_kubeconfig_at(dir.path(), &trunk.url, env.var("SERVER_CA_CERT"), &home, sa);
    let ns = unique("trunk-dev");
    let created = eventually(SETTLE, || {
        let run = space(&kubeconfig, &["create", &ns]);
        if run.success {
            Ok((run.stdout, run.stderr))
        } else {
            Err((run.stdout, run.stderr))
        }
    });
    let space = format!("{cluster}.{ns}");
    assert!(created.0.contains(&space), "{created:?}");
    assert!(created.1.contains(&format!("in cluster {cluster}")), "{created:?}");
    x.admin().run(&["get", "namespace", &ns]).ok();

    // Its list, the admin's too, holds only connected spaces; the local namespace is not found.
    let (code, body) = trunk.request_as(&me, &groups, "GET", SPACES, None);
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        names(&body),
        std::slice::from_ref(&space),
        "the tenant's list on a trunk-only server"
    );
    let (_, body) = trunk.request_as("system:admin", &["system:masters"], "GET", SPACES, None);
    let listed = names(&body);
    assert!(
        !listed.is_empty() && listed.iter().all(|n| n.contains('.')),
        "the admin's list holds a local namespace: {listed:?}"
    );
    let (code, body) = trunk.request_as(&me, &groups, "GET", &format!("{SPACES}/{local}"), None);
    assert_eq!(code, 404, "{body}");
    admin
        .run(&["label", "namespace", &local, "touched=yes", "--overwrite"])
        .ok();
    let seen = watch.rest(Duration::from_secs(2));
    let names_seen: Vec<&str> = watch
        .events
        .iter()
        .filter_map(|e| e["object"]["metadata"]["name"].as_str())
        .collect();
    assert!(
        names_seen.iter().all(|n| n.contains('.')),
        "the watch on a trunk-only server showed a local namespace: {names_seen:?} ({} late)",
        seen.len()
    );
    assert!(names_seen.contains(&space.as_str()), "{names_seen:?}");
}
