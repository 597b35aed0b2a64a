//! What the server writes for people to read (status conditions, template records) is sentences that say what is wrong
//! and what to do, never a program's debug output: a Cluster whose Secret is missing, holds no kubeconfig or points
//! nowhere, and a template that names a kind kube-apiserver does not serve. Then every message of every Cluster,
//! AccountQuota and template record in the cluster at that moment, whichever test made it, is read the same way.

use std::time::Duration;

use serde_json::Value;

use tenancy_apiserver::backend::explain::debug_formatting;

use crate::harness::{account, env, eventually, space, unique};

const SETTLE: Duration = Duration::from_secs(30);

fn admin_json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&env().kubectl("admin").run(&all).ok()).expect("kubectl's JSON")
}

/// The Ready condition's message of Cluster `name` once it is not empty.
fn offline_message(name: &str) -> String {
    eventually(SETTLE, || {
        let cluster = admin_json(&["get", "clusters.config.tenancy.loft.sh", name]);
        let message = cluster["status"]["conditions"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if cluster["status"]["phase"] == "Offline" && !message.is_empty() {
            Ok(message)
        } else {
            Err(cluster["status"].clone())
        }
    })
}

fn cluster(name: &str, secret: &str) -> String {
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n  config:\n    \
secretRef: {{name: {secret}, key: kubeconfig}}\n"
    )
}

fn secret(name: &str, kubeconfig: &str) -> String {
    let kubeconfig = serde_json::to_string(kubeconfig).expect("a JSON string");
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: tenancy-system\nstringData:\n  \
kubeconfig: {kubeconfig}\n"
    )
}

#[test]
fn status_messages_and_template_records_are_sentences_that_say_what_to_do() {
    let admin = env().kubectl("admin");
    let missing = unique("msg-missing");
    let garbled = unique("msg-garbled");
    let nowhere = unique("msg-nowhere");
    let closed_port =
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:9\"}}]\n\
users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n";
    admin.apply(&format!(
        "{}---\n{}---\n{}---\n{}---\n{}",
        secret(&garbled, "this is: [not a kubeconfig"),
        secret(&nowhere, closed_port),
        cluster(&missing, &format!("{missing}-secret")),
        cluster(&garbled, &garbled),
        cluster(&nowhere, &nowhere),
    ));

    assert_eq!(
        offline_message(&missing),
        format!("Secret tenancy-system/{missing}-secret not found: run tenancy-apiserver connect again")
    );
    let message = offline_message(&garbled);
    assert!(
        message.starts_with("the kubeconfig in its Secret cannot be used (") && message.ends_with("connect again"),
        "{message}"
    );
    let message = offline_message(&nowhere);
    assert!(message.starts_with("its kube-apiserver did not answer"), "{message}");
    // What `kubectl describe` shows is the same sentence.
    let described = admin
        .run(&["describe", "clusters.config.tenancy.loft.sh", &missing])
        .ok();
    assert!(
        described.contains("not found: run tenancy-apiserver connect again"),
        "{described}"
    );

    // A template naming a kind kube-apiserver does not serve: the tenant's create is refused, and a synced space's
    // record says which kind.
    let group = unique("msg-team");
    let template = unique("msg-template");
    admin.apply(&format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata:\n  name: {template}\nspec:\n  objects:\n  \
- {{apiVersion: example.com/v1, kind: Widget, metadata: {{name: w}}}}\n---\n{}",
        account(&group, &group, 2, Some(&[&template]), "")
    ));
    let tenant = env().kubectl_as(&unique("msg-user"), &[&group]);
    let refused = eventually(SETTLE, || {
        let run = tenant.run_with_stdin(&["create", "-f", "-"], Some(&space(&unique("msg-space"))));
        if run.stderr.contains("SpaceTemplate") {
            Ok(run.stderr)
        } else {
            Err((run.success, run.stderr))
        }
    });
    assert!(
        refused.contains("kube-apiserver serves no kind example.com/v1/Widget"),
        "{refused}"
    );
    assert_eq!(debug_formatting(&refused), None, "{refused}");

    // Every message the server wrote that is in the cluster now, from this test or any other.
    let mut read = 0;
    for (kind, item) in [
        "clusters.config.tenancy.loft.sh",
        "accountquotas.config.tenancy.loft.sh",
    ]
    .iter()
    .flat_map(|kind| {
        admin_json(&["get", kind])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(move |i| (kind, i))
    }) {
        for condition in item["status"]["conditions"].as_array().cloned().unwrap_or_default() {
            let message = condition["message"].as_str().unwrap_or_default();
            assert_eq!(
                debug_formatting(message),
                None,
                "{kind} {}: {message}",
                item["metadata"]["name"]
            );
            read += 1;
        }
    }
    for namespace in admin_json(&["get", "namespaces"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let Some(records) = namespace["metadata"]["annotations"]["tenancy.loft.sh/template-status"].as_str() else {
            continue;
        };
        let records: Value = serde_json::from_str(records).unwrap_or_default();
        for record in records.as_array().cloned().unwrap_or_default() {
            let reason = record["reason"].as_str().unwrap_or_default();
            assert_eq!(
                debug_formatting(reason),
                None,
                "{}: {reason}",
                namespace["metadata"]["name"]
            );
            read += 1;
        }
    }
    assert!(read >= 3, "only {read} messages were read");

    admin
        .run(&[
            "delete",
            "clusters.config.tenancy.loft.sh",
            &missing,
            &garbled,
            &nowhere,
        ])
        .ok();
    admin
        .run(&["delete", "secret", "-n", "tenancy-system", &garbled, &nowhere])
        .ok();
}
