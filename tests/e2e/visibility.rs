//! Who sees which spaces: exactly the namespaces RBAC lets them get, through kube-apiserver.

use std::time::Duration;

use crate::harness::{curl, env, eventually, front_proxy, namespace, role_binding, unique, Replica};

const SETTLE: Duration = Duration::from_secs(10);

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn tenants_see_exactly_the_namespaces_rbac_lets_them_get() {
    let env = env();
    let admin = env.kubectl("admin");
    admin.apply(
        &std::fs::read_to_string(format!(
            "{}/tests/fixtures/rbac-tenants.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))
        .expect("fixture"),
    );

    let team_a = strings(&["team-a-dev", "team-a-prod"]);
    for user in ["alice", "bob"] {
        let seen = eventually(SETTLE, || {
            let names = env.kubectl(user).space_names(&[]);
            if names == team_a {
                Ok(names)
            } else {
                Err(names)
            }
        });
        assert_eq!(seen, team_a, "{user}");
    }
    let carol = eventually(SETTLE, || {
        let names = env.kubectl("carol").space_names(&[]);
        if names == ["team-b-dev"] {
            Ok(names)
        } else {
            Err(names)
        }
    });
    assert_eq!(carol, ["team-b-dev"]);

    // dave (group auditors, ClusterRoleBinding to view) and admin see every namespace; other tests create
    // namespaces concurrently, so compare with the namespace list until both agree. Only local spaces count: the
    // clusters tests connect other clusters meanwhile, whose spaces (`<cluster>.<namespace>`) admin sees too.
    for user in ["dave", "admin"] {
        eventually(SETTLE, || {
            let mut namespaces: Vec<String> = admin
                .run(&["get", "namespaces", "-o", "name"])
                .ok()
                .lines()
                .filter_map(|l| l.strip_prefix("namespace/"))
                .map(str::to_owned)
                .collect();
            namespaces.sort();
            let spaces: Vec<String> = env
                .kubectl(user)
                .space_names(&[])
                .into_iter()
                .filter(|name| !name.contains('.'))
                .collect();
            if spaces == namespaces {
                Ok(())
            } else {
                Err((user, spaces, namespaces))
            }
        });
    }
    let dave = env.kubectl("dave").space_names(&[]);
    for ns in [
        "team-a-dev",
        "team-a-prod",
        "team-b-dev",
        "shared-tools",
        "kube-system",
        "default",
    ] {
        assert!(dave.contains(&ns.to_owned()), "dave should see {ns}: {dave:?}");
    }
}

#[test]
fn hidden_space_answers_word_for_word_like_a_missing_one() {
    let env = env();
    let hidden = unique("hidden");
    let missing = unique("missing");
    env.kubectl("admin").apply(&namespace(&hidden));
    let user = unique("nosy");
    let nosy = env.kubectl_as(&user, &[]);

    let hidden_err = nosy.run(&["get", "space", &hidden]).err();
    let missing_err = nosy.run(&["get", "space", &missing]).err();
    assert_eq!(
        hidden_err.replace(&hidden, "NAME"),
        missing_err.replace(&missing, "NAME")
    );
    assert_eq!(
        missing_err.trim(),
        format!("Error from server (NotFound): spaces.tenancy.loft.sh \"{missing}\" not found")
    );

    // The raw Status bodies too, through kube-apiserver.
    let url = |name: &str| format!("{}/apis/tenancy.loft.sh/v1/spaces/{name}", env.var("APISERVER_URL"));
    let args = env.apiserver_as(&user, &["system:authenticated"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (hidden_code, hidden_body) = crate::harness::curl(&url(&hidden), &args);
    let (missing_code, missing_body) = crate::harness::curl(&url(&missing), &args);
    assert_eq!((hidden_code, missing_code), (404, 404));
    assert_eq!(
        hidden_body.replace(&hidden, "NAME"),
        missing_body.replace(&missing, "NAME")
    );

    // And no list, selector, page or watch holds a trace of it.
    assert!(nosy.space_names(&[]).is_empty());
    assert!(nosy
        .space_names(&["--field-selector", &format!("metadata.name={hidden}")])
        .is_empty());
    for query in [
        format!("?fieldSelector=metadata.name%3D{hidden}"),
        "?limit=1".to_owned(),
        format!("?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3D{hidden}"),
        "?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1"
            .to_owned(),
    ] {
        let (code, body) = crate::harness::curl(
            &format!("{}/apis/tenancy.loft.sh/v1/spaces{query}", env.var("APISERVER_URL")),
            &args,
        );
        assert_eq!(code, 200, "{query}: {body}");
        assert!(!body.contains(&hidden), "{query} leaked {hidden}: {body}");
        assert!(
            !body.contains("remainingItemCount") && !body.contains("\"continue\":\"e"),
            "{query}: {body}"
        );
    }
    // Naming an account one is not in does not get a space either.
    let foreign = nosy
        .run_with_stdin(
            &["create", "-f", "-"],
            Some(&format!(
                "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {}\nspec:\n  account: team-a\n",
                unique("foreign")
            )),
        )
        .err();
    assert!(
        foreign.contains("Forbidden") && foreign.contains("not a member"),
        "{foreign}"
    );
}

#[test]
fn deleting_a_role_binding_removes_the_space_from_the_next_list() {
    let env = env();
    let admin = env.kubectl("admin");
    let ns = unique("revoke");
    let user = unique("revokee");
    admin.apply(&(namespace(&ns) + &role_binding(&ns, "access", "ClusterRole/view", &[&format!("User:{user}")])));
    let tenant = env.kubectl_as(&user, &[]);
    tenant.eventually_lists(&[&ns], SETTLE);
    tenant.run(&["get", "space", &ns]).ok();

    admin.run(&["delete", "rolebinding", "access", "-n", &ns]).ok();
    eventually(SETTLE, || {
        let names = tenant.space_names(&[]);
        if names.is_empty() {
            Ok(())
        } else {
            Err(names)
        }
    });
    let err = tenant.run(&["get", "space", &ns]).err();
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn groups_roles_and_aggregated_cluster_roles_grant_visibility() {
    let env = env();
    let admin = env.kubectl("admin");
    let (by_group, by_role, by_aggregate, not_granted) = (unique("grp"), unique("role"), unique("agg"), unique("none"));
    let group = unique("team");
    let user = unique("member");
    let aggregate_label = unique("aggregate");
    let manifest = [
        namespace(&by_group),
        namespace(&by_role),
        namespace(&by_aggregate),
        namespace(&not_granted),
        role_binding(&by_group, "by-group", "ClusterRole/view", &[&format!("Group:{group}")]),
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: ns-getter\n  namespace: {by_role}\n\
rules:\n- apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"get\"]\n---\n"
        ),
        role_binding(&by_role, "by-role", "Role/ns-getter", &[&format!("User:{user}")]),
        // An aggregated ClusterRole whose rules come only from the aggregation controller.
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {aggregate_label}\n\
aggregationRule:\n  clusterRoleSelectors:\n  - matchLabels:\n      tenancy-e2e/{aggregate_label}: \"true\"\nrules: []\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {aggregate_label}-part\n  labels:\n    tenancy-e2e/{aggregate_label}: \"true\"\n\
rules:\n- apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"*\"]\n---\n"
        ),
        role_binding(&by_aggregate, "by-aggregate", &format!("ClusterRole/{aggregate_label}"), &[&format!("User:{user}")]),
        // Granted only to someone else.
        role_binding(&not_granted, "other", "ClusterRole/view", &[&format!("User:{}", unique("other"))]),
    ]
    .concat();
    admin.apply(&manifest);
    let mut want = vec![by_group.clone(), by_role.clone(), by_aggregate.clone()];
    want.sort();
    let tenant = env.kubectl_as(&user, &[&group]);
    eventually(SETTLE, || {
        let names = tenant.space_names(&[]);
        if names == want {
            Ok(())
        } else {
            Err(names)
        }
    });
    // Without the group, only the user's own bindings count.
    let mut without_group = vec![by_role, by_aggregate];
    without_group.sort();
    assert_eq!(env.kubectl_as(&user, &[]).space_names(&[]), without_group);
}

#[test]
fn service_account_token_sees_namespaces_bound_to_its_account_and_groups() {
    let env = env();
    let admin = env.kubectl("admin");
    let home = unique("sa-home");
    let granted = unique("sa-granted");
    let via_group = unique("sa-group");
    admin.apply(&[namespace(&home), namespace(&granted), namespace(&via_group)].concat());
    admin.run(&["create", "serviceaccount", "robot", "-n", &home]).ok();
    admin.apply(
        &[
            role_binding(
                &granted,
                "robot",
                "ClusterRole/view",
                &[&format!("ServiceAccount:{home}/robot")],
            ),
            role_binding(
                &via_group,
                "robots",
                "ClusterRole/view",
                &[&format!("Group:system:serviceaccounts:{home}")],
            ),
        ]
        .concat(),
    );
    let token = admin.run(&["create", "token", "robot", "-n", &home]).ok();
    let robot = env.kubectl_token(token.trim());
    let mut want = vec![granted, via_group];
    want.sort();
    eventually(SETTLE, || {
        let names = robot.space_names(&[]);
        if names == want {
            Ok(())
        } else {
            Err(names)
        }
    });
}

#[test]
fn cluster_role_binding_with_resource_names_grants_only_those_namespaces() {
    let env = env();
    let admin = env.kubectl("admin");
    let (named, other) = (unique("named"), unique("unnamed"));
    let user = unique("picky");
    let role = unique("only-named");
    admin.apply(&format!(
        "{}{}apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {role}\nrules:\n\
- apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"get\"]\n  resourceNames: [\"{named}\"]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {role}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {role}}}\n\
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n",
        namespace(&named),
        namespace(&other)
    ));
    let tenant = env.kubectl_as(&user, &[]);
    tenant.eventually_lists(&[&named], SETTLE);
    assert!(tenant.run(&["get", "space", &other]).err().contains("NotFound"));
}

#[test]
fn selectors_filter_the_visible_spaces() {
    let env = env();
    let admin = env.kubectl("admin");
    let (dev, prod) = (unique("sel-dev"), unique("sel-prod"));
    let user = unique("selector");
    admin.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {dev}\n  labels: {{env: dev}}\n---\n\
apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {prod}\n  labels: {{env: prod}}\n---\n{}{}",
        role_binding(&dev, "access", "ClusterRole/view", &[&format!("User:{user}")]),
        role_binding(&prod, "access", "ClusterRole/view", &[&format!("User:{user}")]),
    ));
    let tenant = env.kubectl_as(&user, &[]);
    eventually(SETTLE, || {
        let names = tenant.space_names(&[]);
        if names.len() == 2 {
            Ok(())
        } else {
            Err(names)
        }
    });
    assert_eq!(tenant.space_names(&["-l", "env=dev"]), std::slice::from_ref(&dev));
    assert_eq!(
        tenant.space_names(&["-l", "env in (prod,qa)"]),
        std::slice::from_ref(&prod)
    );
    assert_eq!(tenant.space_names(&["-l", "env!=dev"]), std::slice::from_ref(&prod));
    assert_eq!(
        tenant.space_names(&["--field-selector", &format!("metadata.name={prod}")]),
        std::slice::from_ref(&prod)
    );
    assert_eq!(
        tenant.space_names(&["--field-selector", &format!("metadata.name!={prod}")]),
        [dev]
    );
    let err = tenant
        .run(&["get", "spaces", "--field-selector", "status.phase=Active"])
        .err();
    assert!(
        err.contains("BadRequest") && err.contains("is not a known field selector"),
        "{err}"
    );
    let err = tenant.run(&["get", "spaces", "-l", "env in (dev"]).err();
    assert!(err.contains("BadRequest"), "{err}");
}

/// The control plane's authorization webhook (tests/controlplane/authz-webhook) lets user `webhook-<id>` do anything
/// in namespaces named `webhook-<id>-*`, and `webhook-all-<id>` get every namespace; RBAC grants them nothing. Those
/// grants are spaces when the server decides visibility by SubjectAccessReview, kept current on an open watch, and are
/// invisible to the RBAC index.
#[test]
fn a_webhook_authorizers_grants_are_spaces_exactly_when_visibility_comes_from_subject_access_reviews() {
    let env = env();
    let admin = env.kubectl("admin");
    let user = unique("webhook");
    let (one, two, three) = (format!("{user}-one"), format!("{user}-two"), format!("{user}-three"));
    let other = unique("not-webhook");
    admin.apply(&[namespace(&one), namespace(&two), namespace(&other)].concat());
    let tenant = env.kubectl_as(&user, &[]);
    // kube-apiserver itself consults the webhook for this user.
    tenant.run(&["get", "configmaps", "-n", &one]).ok();
    tenant.run(&["get", "configmaps", "-n", &other]).err();
    let related = |names: Vec<String>| -> Vec<String> {
        names
            .into_iter()
            .filter(|n| n.starts_with(&format!("{user}-")) || *n == other)
            .collect()
    };

    if env.var("SERVER_ACCESS_MODE") != "sar" {
        assert_eq!(related(tenant.space_names(&[])), Vec::<String>::new());
        let err = tenant.run(&["get", "space", &one]).err();
        assert!(err.contains("NotFound"), "{err}");
        return;
    }

    assert_eq!(related(tenant.space_names(&[])), [one.clone(), two.clone()]);
    tenant.run(&["get", "space", &one]).ok();
    let err = tenant.run(&["get", "space", &other]).err();
    assert!(err.contains("NotFound"), "{err}");

    let mut watch = tenant.watch_events("spaces");
    watch.expect_eventually(&format!("ADDED {two}"), Duration::from_secs(10));
    admin.apply(&namespace(&three));
    watch.expect_eventually(&format!("ADDED {three}"), Duration::from_secs(5));
    admin.run(&["delete", "namespace", &three, "--wait=false"]).ok();
    watch.expect_eventually(&format!("DELETED {three}"), Duration::from_secs(60));
    let shown: Vec<&String> = watch.seen.iter().filter(|line| line.ends_with(&other)).collect();
    assert!(shown.is_empty(), "the watch showed {shown:?}");

    let everything = env.kubectl_as(&unique("webhook-all"), &[]);
    assert!(everything.space_names(&[]).contains(&other));
}

/// kube-apiserver gives every token its own `authentication.kubernetes.io/credential-id` extra. Two tokens of one
/// ServiceAccount see the same spaces; under SubjectAccessReview visibility they are one identity, reviewed once. The
/// reviews are counted on a server of this test's own (the run's server serves every test at once), sent each token's
/// identity exactly as kube-apiserver's `kubectl auth whoami` reports it.
#[test]
fn tokens_of_one_service_account_see_the_same_spaces_and_share_one_set_of_reviews() {
    let env = env();
    let admin = env.kubectl("admin");
    let (home, granted) = (unique("tokens-home"), unique("tokens-granted"));
    admin.apply(&[namespace(&home), namespace(&granted)].concat());
    admin.run(&["create", "serviceaccount", "robot", "-n", &home]).ok();
    admin.apply(&role_binding(
        &granted,
        "robot",
        "ClusterRole/view",
        &[&format!("ServiceAccount:{home}/robot")],
    ));
    let robots: Vec<_> = (0..2)
        .map(|_| env.kubectl_token(admin.run(&["create", "token", "robot", "-n", &home]).ok().trim()))
        .collect();
    for robot in &robots {
        eventually(SETTLE, || {
            let names = robot.space_names(&[]);
            if names == [granted.clone()] {
                Ok(())
            } else {
                Err(names)
            }
        });
    }
    if env.var("SERVER_ACCESS_MODE") != "sar" {
        return;
    }

    let identities: Vec<serde_json::Value> = robots
        .iter()
        .map(|robot| {
            let who = robot.run(&["auth", "whoami", "-o", "json"]).ok();
            serde_json::from_str::<serde_json::Value>(&who).expect("a SelfSubjectReview")["status"]["userInfo"].clone()
        })
        .collect();
    let credential = |info: &serde_json::Value| info["extra"]["authentication.kubernetes.io/credential-id"].clone();
    assert_ne!(credential(&identities[0]), credential(&identities[1]), "{identities:?}");
    assert!(credential(&identities[0]).is_array(), "{identities:?}");

    let replica = Replica::start(&[]);
    let started = std::time::Instant::now();
    let list_as = |info: &serde_json::Value| {
        let groups: Vec<&str> = info["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .filter_map(|g| g.as_str())
            .collect();
        let mut args = front_proxy(info["username"].as_str().expect("a name"), &groups);
        for (key, values) in info["extra"].as_object().into_iter().flatten() {
            for value in values.as_array().into_iter().flatten() {
                args.push("-H".to_owned());
                args.push(format!(
                    "X-Remote-Extra-{}: {}",
                    key.replace('%', "%25").replace('/', "%2f"),
                    value.as_str().expect("a value")
                ));
            }
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, body) = curl(&format!("{}/apis/tenancy.loft.sh/v1/spaces", replica.url), &args);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(&format!("\"name\":\"{granted}\"")), "{body}");
    };
    let reviews = || {
        let (code, text) = replica.request_as("admin", &["system:masters"], "GET", "/metrics", None);
        assert_eq!(code, 200, "{text}");
        let value = |name: &str| -> f64 {
            text.lines()
                .filter(|line| line.starts_with(name))
                .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        (
            value("tenancy_apiserver_access_reviews_total"),
            value("tenancy_apiserver_access_reviewed_identities"),
        )
    };

    let (none, _) = reviews();
    list_as(&identities[0]);
    let (first, one) = reviews();
    list_as(&identities[1]);
    let (second, still_one) = reviews();
    assert_eq!(
        (one, still_one),
        (1.0, 1.0),
        "identities reviewed after each token's list, for {identities:?}"
    );
    // Other tests' new namespaces are each asked about for this identity too, and every 30 s it is reviewed again
    // in full: only a second token's own full review, within that time, would make the second count as large.
    if started.elapsed() < Duration::from_secs(25) {
        assert!(
            second - first < first - none,
            "reviews: {none} before, {first} after the first token's list, {second} after the second's"
        );
    }
}
