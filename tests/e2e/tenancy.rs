//! Accounts, templates, limits and repair, end to end: tenants self-serve spaces with plain kubectl, limits hold under
//! parallel creates on two replicas, failures and crashes leave nothing half-made.

use std::time::Duration;

use crate::harness::{
    account, assert_default_space_objects, create_space, curl, env, eventually, eventually_holds, eventually_holds_at,
    front_proxy, label_account, namespace, space, unique, Kubectl, Replica,
};
use crate::sites::Site;

const SETTLE: Duration = Duration::from_secs(20);

fn namespace_gone(name: &str) {
    namespace_gone_at(&env().kubectl("admin"), name);
}

/// Waits until namespace `name` of the cluster `admin` is the admin of is gone.
fn namespace_gone_at(admin: &Kubectl, name: &str) {
    eventually(Duration::from_secs(60), || {
        let run = admin.run(&["get", "namespace", name, "-o", "name"]);
        if run.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err((run.stdout, run.stderr))
        }
    });
}

#[test]
fn account_members_self_serve_spaces_with_templates_and_nobody_else_sees_them() {
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, group) = (unique("acct"), unique("team"));
    admin.apply(&account(&acc, &group, 3, Some(&["default"]), ""));
    let alice = env.kubectl_as(&unique("member"), &[&group]);
    let bob = env.kubectl_as(&unique("member"), &[&group]);
    let carol = env.kubectl_as(&unique("outsider"), &[&unique("team")]);
    let name = unique("selfserve");
    create_space(&alice, &name);
    // Usable at once, by the creator and the account's other members.
    alice
        .run(&["-n", &name, "create", "deployment", "web", "--image=nginx"])
        .ok();
    assert_eq!(bob.space_names(&[]), std::slice::from_ref(&name));
    let account_cell = bob.run(&["get", "space", &name, "-o", "jsonpath={.spec.account}"]).ok();
    assert_eq!(account_cell, acc);
    assert!(carol.space_names(&[]).is_empty());
    assert!(carol.run(&["get", "space", &name]).err().contains("NotFound"));
    // The default template's objects are there, with the parameters filled in.
    assert_default_space_objects(&name);
    let selector = admin
        .run(&[
            "get",
            "networkpolicy",
            "same-account-only",
            "-n",
            &name,
            "-o",
            "jsonpath={.spec.ingress[0].from[0].namespaceSelector.matchLabels}",
        ])
        .ok();
    assert!(selector.contains(&acc), "{selector}");
    // The account view: members see their account with its count (and no AccountQuota); others do not.
    eventually(SETTLE, || {
        let out = bob.run(&["get", "accounts", "--no-headers"]).ok();
        let cells: Vec<String> = out.split_whitespace().map(str::to_owned).collect();
        if cells.len() == 5 && cells[0] == acc && cells[1] == "1" && cells[2] == "3" && cells[3] == "<none>" {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert!(carol.run(&["get", "account", &acc]).err().contains("NotFound"));
    // kubectl apply works for a second one.
    let second = unique("selfserve");
    let out = bob.run_with_stdin(&["apply", "-f", "-"], Some(&space(&second))).ok();
    assert!(out.contains("created"), "{out}");
    let mut both = vec![name, second];
    both.sort();
    assert_eq!(alice.space_names(&[]), both);
}

#[test]
fn twenty_parallel_creates_on_two_replicas_never_exceed_the_account_limit() {
    let env = env();
    let (acc, group) = (unique("limited"), unique("team"));
    env.kubectl("admin").apply(&account(&acc, &group, 3, Some(&[]), ""));
    let replicas = [Replica::start(&[]), Replica::start(&[])];
    // Both replicas must know the account before the race starts: a member's dry run succeeds only then.
    for replica in &replicas {
        eventually(SETTLE, || {
            let (code, body) = replica.post_as(&unique("m"), &group, &unique("probe"), "?dryRun=All");
            if code == 201 {
                Ok(())
            } else {
                Err((code, body))
            }
        });
    }
    let results: Vec<(u16, String)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let replica = &replicas[i % 2];
                let group = &group;
                scope.spawn(move || replica.create_as(&format!("member-{i}"), group, &unique("race")))
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let created = results.iter().filter(|(code, _)| *code == 201).count();
    let refused: Vec<&(u16, String)> = results.iter().filter(|(code, _)| *code != 201).collect();
    assert_eq!(created, 3, "results: {results:?}");
    assert!(
        refused
            .iter()
            .all(|(code, body)| *code == 403 && body.contains("limit of 3")),
        "{refused:?}"
    );
    let namespaces = env
        .kubectl("admin")
        .run(&[
            "get",
            "namespaces",
            "-l",
            &format!("tenancy.loft.sh/account={acc}"),
            "-o",
            "name",
        ])
        .ok();
    assert_eq!(namespaces.lines().count(), 3, "{namespaces}");
}

#[test]
fn a_template_failure_leaves_no_namespace_behind() {
    a_template_failure_leaves_no_namespace_behind_at(&Site::management());
}

#[test]
fn a_template_failure_leaves_no_namespace_behind_at_the_connected_cluster() {
    a_template_failure_leaves_no_namespace_behind_at(&Site::connected());
}

/// The space asked for in `site`.
fn a_template_failure_leaves_no_namespace_behind_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, group, template) = (unique("broken"), unique("team"), unique("broken-template"));
    admin.apply(&format!(
        concat!(
            "apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata:\n  name: {template}\nspec:\n  objects:\n",
            "  - {{apiVersion: v1, kind: ConfigMap, metadata: {{name: fine}}, data: {{space: \"${{SPACE}}\"}}}}\n",
            "  - {{apiVersion: example.com/v1, kind: NoSuchKind, metadata: {{name: broken}}}}\n---\n{account}"
        ),
        template = template,
        account = account(&acc, &group, 5, Some(&[&template]), ""),
    ));
    let member = env.kubectl_as(&unique("member"), &[&group]);
    let ns = unique("doomed");
    let err = eventually(SETTLE, || {
        let run = member.run_with_stdin(&["create", "-f", "-"], Some(&space(&site.space(&ns))));
        if !run.success && run.stderr.contains("SpaceTemplate") {
            Ok(run.stderr)
        } else {
            Err((run.stdout, run.stderr))
        }
    });
    assert!(err.contains(&template), "{err}");
    namespace_gone_at(&site.admin(), &ns);
}

/// A template is the platform team's, but its parameters are the tenant's: neither a RoleBinding to cluster-admin in
/// the space nor a ClusterRoleBinding in a template gives the creator anything beyond the space. kube-apiserver refuses
/// the binding (the server may bind only its own space roles), the server refuses cluster-scoped objects, and either
/// way the create fails whole and leaves nothing.
#[test]
fn a_template_cannot_give_the_creator_cluster_rights() {
    let env = env();
    let admin = env.kubectl("admin");
    let group = unique("escapers");
    let attempts = [
        (
            unique("escape-rb"),
            "{apiVersion: rbac.authorization.k8s.io/v1, kind: RoleBinding, metadata: {name: escape}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"${CREATOR}\"}]}",
            "refused: Forbidden (403)",
        ),
        (
            unique("escape-crb"),
            "{apiVersion: rbac.authorization.k8s.io/v1, kind: ClusterRoleBinding, metadata: {name: \"escape-${SPACE}\"}, roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}, subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: \"${CREATOR}\"}]}",
            "cluster-scoped",
        ),
    ];
    let creator = unique("escaper");
    let member = env.kubectl_as(&creator, &[&group]);
    for (acc, object, why) in attempts {
        let template = format!("{acc}-template");
        admin.apply(&format!(
            "apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata:\n  name: {template}\nspec:\n  objects:\n  - {object}\n---\n{account}",
            account = account(&acc, &group, 5, Some(&[&template]), ""),
        ));
        let name = unique("escape");
        let err = eventually(SETTLE, || {
            let run = member.run_with_stdin(
                &["create", "-f", "-"],
                Some(&format!("{}spec:\n  account: {acc}\n", space(&name))),
            );
            if !run.success && run.stderr.contains(&template) {
                Ok(run.stderr)
            } else {
                Err((run.stdout, run.stderr))
            }
        });
        assert!(err.contains(why), "{err}");
        namespace_gone(&name);
        let bindings = admin.run(&["get", "clusterrolebindings", "-o", "name"]).ok();
        assert!(!bindings.contains(&name), "{bindings}");
    }
    for question in [
        ["get", "secrets", "-n", "kube-system"],
        ["create", "clusterrolebindings", "-A", ""],
        ["*", "*", "-A", ""],
    ] {
        let mut args = vec!["auth", "can-i"];
        args.extend(question.iter().filter(|a| !a.is_empty()));
        let answer = member.run(&args);
        assert_eq!(answer.stdout.trim(), "no", "{question:?}: {}", answer.stderr);
    }
}

/// When an Account's subjects change, its spaces follow: a member who leaves loses them (the open watch says DELETED),
/// a member who joins gets them, and a member who stays sees no gap.
#[test]
fn an_accounts_spaces_follow_its_subjects() {
    an_accounts_spaces_follow_its_subjects_at(&Site::management());
}

#[test]
fn an_accounts_spaces_follow_its_subjects_at_the_connected_cluster() {
    an_accounts_spaces_follow_its_subjects_at(&Site::connected());
}

/// The account's space in `site`.
fn an_accounts_spaces_follow_its_subjects_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, before, after) = (unique("moving-team"), unique("before"), unique("after"));
    admin.apply(&account(&acc, &before, 5, Some(&[]), ""));
    let leaver = env.kubectl_as(&unique("leaver"), &[&before]);
    let joiner = env.kubectl_as(&unique("joiner"), &[&after]);
    let stayer = env.kubectl_as(&unique("stayer"), &[&before, &after]);
    let name = site.space(&unique("follows"));
    eventually(SETTLE, || {
        let run = leaver.run_with_stdin(
            &["create", "-f", "-"],
            Some(&format!("{}spec:\n  account: {acc}\n", space(&name))),
        );
        if run.success {
            Ok(())
        } else {
            Err(run.stderr)
        }
    });
    let mut leaving = leaver.watch_events("spaces");
    let mut staying = stayer.watch_events("spaces");
    leaving.expect_eventually(&format!("ADDED {name}"), SETTLE);
    staying.expect_eventually(&format!("ADDED {name}"), SETTLE);
    assert!(!joiner.space_names(&[]).contains(&name));

    admin.apply(&account(&acc, &after, 5, Some(&[]), ""));
    leaving.expect_eventually(&format!("DELETED {name}"), SETTLE);
    eventually(SETTLE, || {
        let names = joiner.space_names(&[]);
        if names.contains(&name) {
            Ok(())
        } else {
            Err(names)
        }
    });
    let seen: Vec<String> = staying.rest(Duration::from_millis(1500));
    assert!(
        !seen.iter().any(|line| line.starts_with("DELETED")),
        "the member who stayed saw {seen:?}"
    );
    let err = leaver.run(&["get", "space", &name]).err();
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn a_server_killed_between_namespace_and_owner_binding_leaves_a_space_that_is_repaired() {
    a_server_killed_between_namespace_and_owner_binding_leaves_a_space_that_is_repaired_at(&Site::management());
}

#[test]
fn a_server_killed_between_namespace_and_owner_binding_leaves_a_space_that_is_repaired_at_the_connected_cluster() {
    a_server_killed_between_namespace_and_owner_binding_leaves_a_space_that_is_repaired_at(&Site::connected());
}

/// A replica dies right after making a space's namespace in `site`; the survivor finishes the space there.
fn a_server_killed_between_namespace_and_owner_binding_leaves_a_space_that_is_repaired_at(site: &Site) {
    let env = env();
    let (acc, group) = (unique("crashy"), unique("team"));
    env.kubectl("admin")
        .apply(&account(&acc, &group, 5, Some(&["default"]), ""));
    let ns = unique("half-made");
    let name = site.space(&ns);
    // The replica creates once it has the site's cluster connected and answering.
    let (code, body) =
        Replica::start(&[("TENANCY_FAULT_CRASH_AFTER_NAMESPACE", "1")]).create_until_answered(&group, &name, SETTLE);
    assert_eq!(code, 0, "the replica should have died mid-create of {name}: {body}");
    // Right after the crash: a namespace without its owner binding, marked as being created.
    let admin = site.admin();
    let creating = || {
        admin
            .run(&[
                "get",
                "namespace",
                &ns,
                "-o",
                "jsonpath={.metadata.annotations.tenancy\\.loft\\.sh/creating}",
            ])
            .ok()
    };
    assert_eq!(creating(), "true", "{}: right after the crash", site.name());
    // The surviving server finishes it: owner binding, templates, mark removed.
    eventually_holds_at(
        &admin,
        &ns,
        "rolebinding,resourcequota",
        &[
            "rolebinding.rbac.authorization.k8s.io/tenancy-owner",
            "resourcequota/space-quota",
        ],
        Duration::from_secs(60),
    );
    eventually(SETTLE, || match creating() {
        marked if marked.is_empty() => Ok(()),
        marked => Err(marked),
    });
    let member = env.kubectl_as(&unique("member"), &[&group]);
    eventually(SETTLE, || match member.space_names(&[]) {
        names if names == [name.clone()] => Ok(()),
        names => Err(names),
    });
}

#[test]
fn a_client_that_disconnects_mid_create_leaves_a_whole_space_and_no_lease_held() {
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, group, member) = (unique("hasty"), unique("team"), unique("member"));
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    let name = unique("abandoned");
    let slow = Replica::start(&[("TENANCY_FAULT_PAUSE_HOLDING_LEASE_MS", "4000")]);
    eventually(SETTLE, || {
        match slow.request_as(
            &member,
            &[&group],
            "GET",
            &format!("/apis/tenancy.loft.sh/v1/accounts/{acc}"),
            None,
        ) {
            (200, _) => Ok(()),
            other => Err(other),
        }
    });
    // The client gives up after a second, while the create holds the account's Lease.
    let mut args = front_proxy(&member, &[&group]);
    let body = format!(r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{name}"}}}}"#);
    args.extend(
        [
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data",
            &body,
            "--max-time",
            "1",
        ]
        .map(str::to_owned),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, answer) = curl(&format!("{}/apis/tenancy.loft.sh/v1/spaces", slow.url), &refs);
    assert_eq!(code, 0, "the client should have given up first: {answer}");
    // The create goes on without it: the space is made whole, and the Lease is released, not left to expire.
    eventually_holds(
        &name,
        "rolebinding",
        &["rolebinding.rbac.authorization.k8s.io/tenancy-owner"],
        Duration::from_secs(20),
    );
    eventually(Duration::from_secs(10), || {
        let lease = admin.run(&["get", "lease", "-n", "tenancy-system", &format!("account-{acc}")]);
        if !lease.success && lease.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(format!(
                "the account's Lease is still held: {}{}",
                lease.stdout, lease.stderr
            ))
        }
    });
}

#[test]
fn an_admin_adopts_a_namespace_into_an_account_by_labelling_it() {
    an_admin_adopts_a_namespace_into_an_account_by_labelling_it_at(&Site::management());
}

#[test]
fn an_admin_adopts_a_namespace_into_an_account_by_labelling_it_at_the_connected_cluster() {
    an_admin_adopts_a_namespace_into_an_account_by_labelling_it_at(&Site::connected());
}

/// A namespace of `site`, labelled there by that cluster's admin.
fn an_admin_adopts_a_namespace_into_an_account_by_labelling_it_at(site: &Site) {
    let env = env();
    let admin = site.admin();
    let (acc, group) = (unique("adopter"), unique("team"));
    let existing = unique("legacy");
    env.kubectl("admin").apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&namespace(&existing));
    let member = env.kubectl_as(&unique("member"), &[&group]);
    assert!(member.space_names(&[]).is_empty());
    label_account(&admin, &existing, &acc).ok();
    member.eventually_lists(&[&site.space(&existing)], SETTLE);
}

#[test]
fn deleting_an_account_follows_its_deletion_policy() {
    deleting_an_account_follows_its_deletion_policy_at(&Site::management());
}

#[test]
fn deleting_an_account_follows_its_deletion_policy_at_the_connected_cluster() {
    deleting_an_account_follows_its_deletion_policy_at(&Site::connected());
}

/// The accounts' spaces in `site`.
fn deleting_an_account_follows_its_deletion_policy_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let group = unique("team");
    let (deleting, orphaning) = (unique("acct-delete"), unique("acct-orphan"));
    admin.apply(&format!(
        "{}---\n{}",
        account(&deleting, &group, 5, Some(&[]), "  deletionPolicy: Delete\n"),
        account(&orphaning, &group, 5, Some(&[]), "  deletionPolicy: Orphan\n")
    ));
    let member = env.kubectl_as(&unique("member"), &[&group]);
    let (doomed, kept) = (unique("goes"), unique("stays"));
    for (ns, acc) in [(&doomed, &deleting), (&kept, &orphaning)] {
        let manifest = format!("{}spec:\n  account: {acc}\n", space(&site.space(ns)));
        eventually(SETTLE, || {
            let run = member.run_with_stdin(&["create", "-f", "-"], Some(&manifest));
            if run.success {
                Ok(())
            } else {
                Err(run.stderr)
            }
        });
    }
    // The server holds each account until its policy is carried out.
    eventually(SETTLE, || {
        let finalizers = admin
            .run(&[
                "get",
                "accounts.config.tenancy.loft.sh",
                &deleting,
                "-o",
                "jsonpath={.metadata.finalizers}",
            ])
            .ok();
        if finalizers.contains("tenancy.loft.sh/spaces") {
            Ok(())
        } else {
            Err(finalizers)
        }
    });
    admin
        .run(&[
            "delete",
            "accounts.config.tenancy.loft.sh",
            &deleting,
            &orphaning,
            "--timeout=60s",
        ])
        .ok();
    let there = site.admin();
    namespace_gone_at(&there, &doomed);
    let labels = there
        .run(&["get", "namespace", &kept, "-o", "jsonpath={.metadata.labels}"])
        .ok();
    assert!(!labels.contains("tenancy.loft.sh/account"), "{labels}");
    let bindings = there.run(&["get", "rolebindings", "-n", &kept, "-o", "name"]).ok();
    assert!(!bindings.contains("tenancy-owner"), "{bindings}");
}

#[test]
fn a_member_of_both_accounts_moves_a_space_and_its_owner_binding_follows() {
    a_member_of_both_accounts_moves_a_space_and_its_owner_binding_follows_at(&Site::management());
}

#[test]
fn a_member_of_both_accounts_moves_a_space_and_its_owner_binding_follows_at_the_connected_cluster() {
    a_member_of_both_accounts_moves_a_space_and_its_owner_binding_follows_at(&Site::connected());
}

/// The space in `site`.
fn a_member_of_both_accounts_moves_a_space_and_its_owner_binding_follows_at(site: &Site) {
    let env = env();
    let (from, to) = (unique("acct-from"), unique("acct-to"));
    let (group_from, group_to) = (unique("team"), unique("team"));
    env.kubectl("admin").apply(&format!(
        "{}---\n{}",
        account(&from, &group_from, 5, Some(&[]), ""),
        account(&to, &group_to, 5, Some(&[]), "")
    ));
    let both = env.kubectl_as(&unique("both"), &[&group_from, &group_to]);
    let only_from = env.kubectl_as(&unique("from-only"), &[&group_from]);
    let only_to = env.kubectl_as(&unique("to-only"), &[&group_to]);
    let name = site.space(&unique("mover"));
    let manifest = format!("{}spec:\n  account: {from}\n", space(&name));
    eventually(SETTLE, || {
        let run = both.run_with_stdin(&["create", "-f", "-"], Some(&manifest));
        if run.success {
            Ok(())
        } else {
            Err(run.stderr)
        }
    });
    assert_eq!(only_from.space_names(&[]), std::slice::from_ref(&name));
    let move_to = |account: &str| format!(r#"{{"spec":{{"account":"{account}"}}}}"#);
    let err = only_from
        .run(&["patch", "space", &name, "--type", "merge", "-p", &move_to(&to)])
        .err();
    assert!(err.contains("Forbidden") && err.contains("not a member"), "{err}");

    both.run(&["patch", "space", &name, "--type", "merge", "-p", &move_to(&to)])
        .ok();
    eventually(SETTLE, || {
        let (a, b) = (only_from.space_names(&[]), only_to.space_names(&[]));
        if a.is_empty() && b == [name.clone()] {
            Ok(())
        } else {
            Err((a, b))
        }
    });
    let account_now = both
        .run(&["get", "space", &name, "-o", "jsonpath={.spec.account}"])
        .ok();
    assert_eq!(account_now, to);
}

#[test]
fn a_members_accounts_watch_sees_accounts_come_and_go() {
    let env = env();
    let admin = env.kubectl("admin");
    let group = unique("team");
    let member = env.kubectl_as(&unique("watcher"), &[&group]);
    let mut watch = member.watch_events("accounts");
    let quiet = watch.rest(Duration::from_secs(3));
    assert!(quiet.is_empty(), "{quiet:?}");
    let acc = unique("acct-watched");
    admin.apply(&account(&acc, &group, 2, Some(&[]), ""));
    watch.expect_eventually(&format!("ADDED {acc}"), SETTLE);
    admin
        .run(&["delete", "accounts.config.tenancy.loft.sh", &acc, "--timeout=60s"])
        .ok();
    watch.expect_eventually(&format!("DELETED {acc}"), SETTLE);
}
