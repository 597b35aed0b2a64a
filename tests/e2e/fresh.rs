//! A create decides on the Accounts and SpaceTemplates as kube-apiserver has them now, not as the server's cache last
//! saw them: an Account applied in one command counts for a create in the next, a member removed in one command is
//! refused in the next, and a template applied with its Account is in the first space. Proven deterministically on a
//! replica whose Account and SpaceTemplate reflectors are held at their first list, and as users do it, through
//! kube-apiserver and through a replica started a moment before.

use std::time::Duration;

use crate::harness::{account, create_space, env, eventually, space, unique, Kubectl, Replica};

const SETTLE: Duration = Duration::from_secs(20);

const SPACES: &str = "/apis/tenancy.loft.sh/v1/spaces";

/// A Space named `name` in account `account`, as JSON.
fn space_in(name: &str, account: &str) -> String {
    format!(
        r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{name}"}},"spec":{{"account":"{account}"}}}}"#
    )
}

/// A SpaceTemplate `name` with one ConfigMap `from-template`, and an Account of `group` naming it.
fn account_with_template(account_name: &str, group: &str, template: &str) -> String {
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata: {{name: {template}}}\nspec:\n  objects:\n  \
- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: from-template}}, data: {{from: {template}}}}}\n---\n{}",
        account(account_name, group, 5, Some(&[template]), "")
    )
}

/// Whether namespace `ns` holds the ConfigMap a template made.
fn has_template_object(admin: &Kubectl, ns: &str) -> bool {
    admin
        .run(&["get", "configmap", "from-template", "-n", ns, "-o", "name"])
        .success
}

#[test]
fn a_replica_whose_cache_is_held_back_decides_on_the_accounts_and_templates_as_they_are_now() {
    let env = env();
    let admin = env.kubectl("admin");
    let (old, leaving, staying) = (unique("acct-held"), unique("team"), unique("team"));
    admin.apply(&account(&old, &leaving, 5, Some(&[]), ""));
    let kept = unique("kept");
    create_space(&env.kubectl_as(&unique("member"), &[&leaving]), &kept);
    // Its Accounts and SpaceTemplates stay as they were when it listed them: `old` with the group `leaving`.
    let held = Replica::start(&[("TENANCY_FAULT_HOLD_BACK_CONFIG", "1")]);

    // A member removed: refused at once, though the replica's cache still lists them.
    admin.apply(&account(&old, &staying, 5, Some(&[]), ""));
    let (code, answer) = held.request_as(
        &unique("leaver"),
        &[&leaving],
        "POST",
        SPACES,
        Some(&space_in(&unique("removed"), &old)),
    );
    assert_eq!(code, 403, "a removed member created a space: {answer}");
    assert!(answer.contains("not a member"), "{answer}");
    // The space's owner binding follows the Account to `staying`, and the replica that is behind does not move it back.
    let bound = || {
        admin
            .run(&[
                "get",
                "rolebinding",
                "tenancy-owner",
                "-n",
                &kept,
                "-o",
                "jsonpath={.subjects[*].name}",
            ])
            .ok()
    };
    eventually(SETTLE, || match bound() {
        now if now == staying => Ok(()),
        now => Err(now),
    });
    for _ in 0..8 {
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(
            bound(),
            staying,
            "the owner binding of {kept} went back to the old subjects"
        );
    }

    // A new Account and the template it names, applied together: its member gets the space, with the template's
    // object, though the replica's cache has neither.
    let (new, group, template) = (unique("acct-new"), unique("team"), unique("tpl-new"));
    admin.apply(&account_with_template(&new, &group, &template));
    let newcomer = unique("newcomer");
    // The replica's cache is indeed held back: its accounts view (answered from the cache) does not know the Account.
    let (code, answer) = held.request_as(
        &newcomer,
        &[&group],
        "GET",
        &format!("/apis/tenancy.loft.sh/v1/accounts/{new}"),
        None,
    );
    assert_eq!(code, 404, "the held-back replica's cache has the new Account: {answer}");
    let ns = unique("added");
    let (code, answer) = held.request_as(&newcomer, &[&group], "POST", SPACES, Some(&space_in(&ns, &new)));
    assert_eq!(code, 201, "a new account's member was refused: {answer}");
    assert!(
        has_template_object(&admin, &ns),
        "space {ns} lacks its template's object"
    );
}

#[test]
fn an_account_applied_then_a_space_created_in_the_next_command_succeeds_every_time() {
    let env = env();
    let admin = env.kubectl("admin");
    let fresh = Replica::start(&[]);
    for i in 0..20 {
        let (acc, group, other) = (unique("acct-now"), unique("team"), unique("team"));
        let user = unique("member");
        let member = env.kubectl_as(&user, &[&group]);
        // Through kube-apiserver, with kubectl.
        admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
        let ns = unique("now");
        let run = member.run_with_stdin(&["create", "-f", "-"], Some(&space(&ns)));
        assert!(run.success, "try {i}: {}", run.stderr);
        // Straight at a replica started a moment before.
        let (code, answer) = fresh.request_as(&user, &[&group], "POST", SPACES, Some(&space_in(&unique("now"), &acc)));
        assert_eq!(code, 201, "try {i}, at the new replica: {answer}");
        // Removed: refused in the next command.
        admin.apply(&account(&acc, &other, 5, Some(&[]), ""));
        let run = member.run_with_stdin(&["create", "-f", "-"], Some(&space(&unique("late"))));
        assert!(!run.success, "try {i}: a removed member created a space");
        assert!(run.stderr.contains("Forbidden"), "try {i}: {}", run.stderr);
    }
    // An Account naming a template made in the same apply: the first space has the template's object.
    let (acc, group, template) = (unique("acct-tpl"), unique("team"), unique("tpl-now"));
    admin.apply(&account_with_template(&acc, &group, &template));
    let ns = unique("templated");
    let run = env
        .kubectl_as(&unique("member"), &[&group])
        .run_with_stdin(&["create", "-f", "-"], Some(&space(&ns)));
    assert!(run.success, "{}", run.stderr);
    assert!(
        has_template_object(&admin, &ns),
        "space {ns} lacks its template's object"
    );
}
