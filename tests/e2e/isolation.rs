//! Tenant isolation outside the spaces API: kube-apiserver itself (deploy/admission.yaml) keeps the server's
//! `tenancy.loft.sh/` keys on namespaces and the enforced objects inside spaces out of owners' reach, by every verb
//! plain kubectl has; and new spaces are closed to each other by default (the `default` SpaceTemplate). Each guarantee
//! is proven at both sites (`sites`): in the management cluster, and in a connected one, where the owner talks to that
//! cluster's kube-apiserver straight.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::harness::{
    self, assert_default_space_objects_at, create_space, env, eventually, eventually_holds_at, label_account,
    namespace, unique, Kubectl,
};
use crate::sites::Site;

const SETTLE: Duration = Duration::from_secs(20);

/// An Account of `group` that names no templates, so its new spaces get the default one.
fn account(name: &str, group: &str) -> String {
    harness::account(name, group, 5, None, "")
}

/// The namespace's `tenancy.loft.sh/` labels and annotations, as the admin of its cluster (`admin`) reads them.
fn server_keys(admin: &Kubectl, name: &str) -> BTreeMap<String, String> {
    let out = admin.run(&["get", "namespace", name, "-o", "json"]).ok();
    let ns: serde_json::Value = serde_json::from_str(&out).expect("namespace JSON");
    let mut keys = BTreeMap::new();
    for (field, values) in [
        ("label", &ns["metadata"]["labels"]),
        ("annotation", &ns["metadata"]["annotations"]),
    ] {
        for (key, value) in values.as_object().into_iter().flatten() {
            if key.starts_with("tenancy.loft.sh/") {
                keys.insert(format!("{field} {key}"), value.as_str().unwrap_or_default().to_owned());
            }
        }
    }
    keys
}

/// The Account's `status.spaceCount` ("0" while the server has not written a status: it writes none for no spaces).
fn space_count(account: &str) -> String {
    let count = env()
        .kubectl("admin")
        .run(&[
            "get",
            "accounts.config.tenancy.loft.sh",
            account,
            "-o",
            "jsonpath={.status.spaceCount}",
        ])
        .ok();
    if count.is_empty() {
        "0".to_owned()
    } else {
        count
    }
}

/// Every way plain kubectl changes a namespace's metadata, each aimed at a `tenancy.loft.sh/` key; each must be
/// refused by the kube-apiserver of the namespace's cluster (whose admin is `admin`) with a message naming the key and
/// who may set it, and change nothing.
fn assert_every_path_is_refused(owner: &Kubectl, admin: &Kubectl, name: &str, other_account: &str) {
    let before = server_keys(admin, name);
    let move_to = format!("tenancy.loft.sh/account={other_account}");
    let merge = format!(r#"{{"metadata":{{"labels":{{"tenancy.loft.sh/account":"{other_account}"}}}}}}"#);
    let json =
        format!(r#"[{{"op":"replace","path":"/metadata/labels/tenancy.loft.sh~1account","value":"{other_account}"}}]"#);
    let attempts: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "label (move)",
            vec!["label", "namespace", name, &move_to, "--overwrite"],
            "tenancy.loft.sh/account",
        ),
        (
            "label (remove)",
            vec!["label", "namespace", name, "tenancy.loft.sh/account-"],
            "tenancy.loft.sh/account",
        ),
        (
            "label (publish)",
            vec!["label", "namespace", name, "tenancy.loft.sh/shared=true"],
            "tenancy.loft.sh/shared",
        ),
        (
            "annotate (creator)",
            vec![
                "annotate",
                "namespace",
                name,
                "tenancy.loft.sh/creator=mallory",
                "--overwrite",
            ],
            "tenancy.loft.sh/creator",
        ),
        (
            "annotate (remove templates)",
            vec!["annotate", "namespace", name, "tenancy.loft.sh/templates-"],
            "tenancy.loft.sh/templates",
        ),
        (
            "merge patch",
            vec!["patch", "namespace", name, "--type", "merge", "-p", &merge],
            "tenancy.loft.sh/account",
        ),
        (
            "JSON patch",
            vec!["patch", "namespace", name, "--type", "json", "-p", &json],
            "tenancy.loft.sh/account",
        ),
        (
            "strategic merge patch",
            vec!["patch", "namespace", name, "--type", "strategic", "-p", &merge],
            "tenancy.loft.sh/account",
        ),
    ];
    for (what, args, key) in attempts {
        let err = owner.run(&args).err();
        assert!(
            err.contains(key) && err.contains("tenancy-apiserver") && err.contains("cluster admins"),
            "{what}: the refusal should name {key} and who may set it: {err}"
        );
        assert_eq!(server_keys(admin, name), before, "{what} changed the namespace");
    }

    // update (replace) of the whole object, as read.
    let read = owner.run(&["get", "namespace", name, "-o", "json"]).ok();
    let mut ns: serde_json::Value = serde_json::from_str(&read).expect("namespace JSON");
    ns["metadata"]["labels"]["tenancy.loft.sh/account"] = other_account.into();
    let err = owner
        .run_with_stdin(&["replace", "-f", "-"], Some(&ns.to_string()))
        .err();
    assert!(err.contains("tenancy.loft.sh/account"), "replace: {err}");
    // kubectl edit, with an editor that moves the namespace.
    let editor = format!("sed -i -e 's#tenancy.loft.sh/account: .*#tenancy.loft.sh/account: {other_account}#'");
    let err = owner
        .run_env(&["edit", "namespace", name], &[("KUBE_EDITOR", &editor)])
        .err();
    assert!(err.contains("tenancy.loft.sh/account"), "edit: {err}");
    // server-side apply, taking the field over.
    let applied = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    tenancy.loft.sh/account: {other_account}\n"
    );
    let err = owner
        .run_with_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "mallory",
                "-f",
                "-",
            ],
            Some(&applied),
        )
        .err();
    assert!(err.contains("tenancy.loft.sh/account"), "server-side apply: {err}");
    assert_eq!(
        server_keys(admin, name),
        before,
        "replace, edit or apply changed the namespace"
    );
}

#[test]
fn an_owner_cannot_move_publish_or_relabel_their_namespace_by_any_verb() {
    for site in Site::all() {
        an_owner_cannot_move_publish_or_relabel_their_namespace_at(&site);
    }
}

fn an_owner_cannot_move_publish_or_relabel_their_namespace_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let (mine, theirs) = (unique("iso-a"), unique("iso-b"));
    let (my_group, their_group) = (unique("team"), unique("team"));
    admin.apply(&(account(&mine, &my_group) + "---\n" + &account(&theirs, &their_group)));
    let (alice_name, carol_name) = (unique("alice"), unique("carol"));
    let alice = env.kubectl_as(&alice_name, &[&my_group]);
    let carol = env.kubectl_as(&carol_name, &[&their_group]);
    // The same owner, straight at the kube-apiserver of the space's cluster.
    let alice_there = site.tenant(&alice_name, &[&my_group]);
    let name = unique("iso");
    let space = site.space(&name);
    create_space(&alice, &space);
    eventually(SETTLE, || {
        let count = space_count(&mine);
        if count == "1" {
            Ok(())
        } else {
            Err(format!("{}: {count}", site.name()))
        }
    });

    assert_every_path_is_refused(&alice_there, &site.admin(), &name, &theirs);

    assert!(
        carol.space_names(&[]).is_empty(),
        "{}: carol sees {:?}",
        site.name(),
        carol.space_names(&[])
    );
    assert!(carol.run(&["get", "space", &space]).err().contains("NotFound"));
    assert_eq!(space_count(&theirs), "0", "{}", site.name());
    assert_eq!(space_count(&mine), "1", "{}", site.name());

    // Owners keep every other key, on the namespace and through the space.
    alice_there.run(&["label", "namespace", &name, "app=web"]).ok();
    alice_there.run(&["annotate", "namespace", &name, "note=mine"]).ok();
    alice.run(&["label", "space", &space, "tier=gold"]).ok();
    alice.run(&["annotate", "space", &space, "owner-note=also-mine"]).ok();
    let labels = site
        .admin()
        .run(&["get", "namespace", &name, "-o", "jsonpath={.metadata.labels}"])
        .ok();
    assert!(
        labels.contains("\"app\":\"web\"") && labels.contains("\"tier\":\"gold\""),
        "{}: {labels}",
        site.name()
    );
    // The cluster's admin still may: moving the namespace to the other account, carol sees it.
    label_account(&site.admin(), &name, &theirs).ok();
    carol.eventually_lists(&[&space], SETTLE);
}

#[test]
fn an_owner_without_an_account_cannot_label_their_way_into_one() {
    for site in Site::all() {
        an_owner_without_an_account_cannot_label_their_way_into_one_at(&site);
    }
}

fn an_owner_without_an_account_cannot_label_their_way_into_one_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let there = site.admin();
    let (victim, victim_group) = (unique("victim"), unique("team"));
    admin.apply(&account(&victim, &victim_group));
    // A user who may create namespaces in the space's cluster, and so owns spaces there without an account.
    let solo = unique("solo");
    let crb = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {solo}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {solo}}}\n\
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {solo}}}]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {solo}\n\
rules: [{{apiGroups: [\"\"], resources: [namespaces], verbs: [create]}}]\n"
    );
    there.apply(&crb);
    let owner = env.kubectl_as(&solo, &[]);
    let owner_there = site.tenant(&solo, &[]);
    let name = unique("solo-space");
    create_space(&owner, &site.space(&name));
    // Closed by default: the default template's objects are there, with no account to admit.
    let objects = there
        .run(&["get", "resourcequota,networkpolicy", "-n", &name, "-o", "name"])
        .ok();
    assert!(
        objects.contains("resourcequota/space-quota")
            && objects.contains("networkpolicy.networking.k8s.io/same-account-only"),
        "{}: {objects}",
        site.name()
    );
    // Creating a namespace already in an account is refused as well (they may create namespaces).
    let labelled = namespace(&unique("smuggled")).replace(
        "metadata:\n",
        &format!("metadata:\n  labels:\n    tenancy.loft.sh/account: {victim}\n"),
    );
    let err = owner_there
        .run_with_stdin(&["create", "-f", "-"], Some(&labelled))
        .err();
    assert!(err.contains("tenancy.loft.sh/account"), "{}: {err}", site.name());
    let err = label_account(&owner_there, &name, &victim).err();
    assert!(err.contains("tenancy.loft.sh/account"), "{}: {err}", site.name());
    assert_eq!(space_count(&victim), "0", "{}", site.name());
    there.run(&["delete", "clusterrolebinding,clusterrole", &solo]).ok();
}

#[test]
fn a_service_account_owner_is_held_to_the_same_rules() {
    for site in Site::all() {
        a_service_account_owner_is_held_to_the_same_rules_at(&site);
    }
}

/// A ServiceAccount's token, as a pod of `home` would have it, in the cluster `admin` is the admin of (made there).
fn deployer_token(admin: &Kubectl, home: &str) -> String {
    admin.apply(&namespace(home));
    admin.run(&["create", "serviceaccount", "deployer", "-n", home]).ok();
    let token = admin
        .run(&["create", "token", "deployer", "-n", home, "--duration=1h"])
        .ok();
    token.trim().to_owned()
}

fn a_service_account_owner_is_held_to_the_same_rules_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let (mine, theirs, home) = (unique("robots"), unique("humans"), unique("ci"));
    let robot = format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {mine}\nspec:\n  \
subjects: [{{kind: ServiceAccount, name: deployer, namespace: {home}}}]\n"
    );
    admin.apply(&(robot + "---\n" + &account(&theirs, &unique("team"))));
    // The same ServiceAccount in both clusters: its token here creates the space; the one of the space's cluster acts
    // there, as a pod there would.
    let token = deployer_token(&admin, &home);
    let deployer = env.kubectl_token(&token);
    let deployer_there = match site.cluster() {
        None => env.kubectl_token(&token),
        Some(_) => site.with_token(&deployer_token(&site.admin(), &home)),
    };
    let name = unique("robot-space");
    create_space(&deployer, &site.space(&name));

    let err = label_account(&deployer_there, &name, &theirs).err();
    assert!(
        err.contains("tenancy.loft.sh/account") && err.contains("cluster admins"),
        "{}: {err}",
        site.name()
    );
    let err = deployer_there
        .run(&["delete", "networkpolicy", "same-account-only", "-n", &name])
        .err();
    assert!(err.contains("enforced"), "{}: {err}", site.name());
    deployer_there.run(&["label", "namespace", &name, "built-by=ci"]).ok();
    assert_eq!(space_count(&theirs), "0", "{}", site.name());
}

#[test]
fn enforced_objects_hold_against_owners_and_come_back_when_an_admin_deletes_them() {
    for site in Site::all() {
        enforced_objects_hold_against_owners_and_come_back_at(&site);
    }
}

fn enforced_objects_hold_against_owners_and_come_back_at(site: &Site) {
    let env = env();
    let admin = site.admin();
    let (acc, group) = (unique("guarded"), unique("team"));
    env.kubectl("admin").apply(&account(&acc, &group));
    let alice_name = unique("alice");
    // Through the management cluster for the space; straight at its cluster for what is inside it.
    let tenant = env.kubectl_as(&alice_name, &[&group]);
    let alice = site.tenant(&alice_name, &[&group]);
    let name = unique("guarded");
    let space = site.space(&name);
    create_space(&tenant, &space);

    // An Account naming no templates gets the default one, whole.
    assert_default_space_objects_at(&admin, &name);

    // The owner reads them, and can change or delete none of them.
    alice
        .run(&["get", "networkpolicy", "same-account-only", "-n", &name])
        .ok();
    let refusals: Vec<Vec<&str>> = vec![
        vec!["delete", "networkpolicy", "same-account-only", "-n", &name],
        vec!["delete", "networkpolicy", "--all", "-n", &name],
        vec![
            "label",
            "networkpolicy",
            "same-account-only",
            "-n",
            &name,
            "tenancy.loft.sh/enforced-",
        ],
        vec![
            "patch",
            "networkpolicy",
            "same-account-only",
            "-n",
            &name,
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"ingress":[{}]}}"#,
        ],
        vec!["delete", "rolebinding", "tenancy-owner", "-n", &name],
        vec!["label", "rolebinding", "tenancy-owner", "-n", &name, "extra=1"],
    ];
    for args in refusals {
        let err = alice.run(&args).err();
        assert!(
            err.contains("enforced") && err.contains("cluster admins"),
            "{}: {args:?}: {err}",
            site.name()
        );
    }
    let policies = admin
        .run(&[
            "get",
            "networkpolicy",
            "same-account-only",
            "-n",
            &name,
            "-o",
            "jsonpath={.spec.ingress}",
        ])
        .ok();
    assert!(
        policies.contains(&acc),
        "{}: the policy changed: {policies}",
        site.name()
    );
    // Nor can they pass their own object off as enforced.
    alice.run(&["create", "configmap", "fake", "-n", &name]).ok();
    let err = alice
        .run(&[
            "label",
            "configmap",
            "fake",
            "-n",
            &name,
            "tenancy.loft.sh/enforced=true",
        ])
        .err();
    assert!(err.contains("enforced"), "{err}");
    // Their own policies are theirs.
    alice
        .run_with_stdin(
            &["create", "-n", &name, "-f", "-"],
            Some(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: mine\n\
spec:\n  podSelector: {}\n  policyTypes: [Ingress]\n",
            ),
        )
        .ok();
    alice.run(&["delete", "networkpolicy", "mine", "-n", &name]).ok();

    // An admin may delete them; the server puts them back.
    admin
        .run(&["delete", "networkpolicy", "same-account-only", "-n", &name])
        .ok();
    admin.run(&["delete", "rolebinding", "tenancy-owner", "-n", &name]).ok();
    eventually_holds_at(
        &admin,
        &name,
        "networkpolicy,rolebinding",
        &[
            "networkpolicy.networking.k8s.io/same-account-only",
            "rolebinding.rbac.authorization.k8s.io/tenancy-owner",
        ],
        Duration::from_secs(30),
    );
    // Deleting the space takes its enforced objects with it (the namespace controller is not refused).
    tenant.run(&["delete", "space", &space]).ok();
    eventually(Duration::from_secs(60), || {
        let run = admin.run(&["get", "namespace", &name, "-o", "name"]);
        if run.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err((run.stdout, run.stderr))
        }
    });
}
