//! Watches through kube-apiserver: access granted or revoked by any RBAC change reaches the user's open
//! `kubectl get spaces -w` within a second, and nobody else's; WatchList, resume and paging behave as on built-ins.

use std::time::Duration;

use crate::harness::{curl, env, namespace, role_binding, unique};

/// The promise: a grant or revocation shows on the open watch within a second.
const WITHIN: Duration = Duration::from_secs(1);
/// How long a watch that must stay silent is listened to.
const QUIET: Duration = Duration::from_millis(1500);

#[test]
fn rbac_changes_reach_the_users_open_watch_within_a_second_and_nobody_elses() {
    let env = env();
    let admin = env.kubectl("admin");
    let (direct, by_group, aggregated, warmup) =
        (unique("w-direct"), unique("w-group"), unique("w-agg"), unique("w-warm"));
    let (user, group, other_group, bystander) = (
        unique("watcher"),
        unique("wgroup"),
        unique("wother"),
        unique("bystander"),
    );
    let aggregate = unique("w-aggregate");
    admin.apply(
        &[
            namespace(&direct),
            namespace(&by_group),
            namespace(&aggregated),
            namespace(&warmup),
            // Bound to another group for now; the user's group is added later.
            role_binding(
                &by_group,
                "shared",
                "ClusterRole/view",
                &[&format!("Group:{other_group}")],
            ),
            // An aggregated ClusterRole with no rules yet, already bound to the user.
            format!(
                "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {aggregate}\n\
aggregationRule:\n  clusterRoleSelectors:\n  - matchLabels:\n      tenancy-e2e/{aggregate}: \"true\"\nrules: []\n---\n"
            ),
            role_binding(
                &aggregated,
                "agg",
                &format!("ClusterRole/{aggregate}"),
                &[&format!("User:{user}")],
            ),
        ]
        .concat(),
    );
    let mut watch = env.kubectl_as(&user, &[&group]).watch_events("spaces");
    let mut other = env
        .kubectl_as(&bystander, &[&other_group.replace("wother", "wnone")])
        .watch_events("spaces");

    // Warm-up: proves the watch is established before anything is timed.
    admin.apply(&role_binding(
        &warmup,
        "warm",
        "ClusterRole/view",
        &[&format!("User:{user}")],
    ));
    watch.expect_next(&format!("ADDED {warmup}"), Duration::from_secs(20));

    // A new RoleBinding.
    admin.apply(&role_binding(
        &direct,
        "direct",
        "ClusterRole/edit",
        &[&format!("User:{user}")],
    ));
    watch.expect_next(&format!("ADDED {direct}"), WITHIN);

    // The user's group added to an existing RoleBinding.
    admin.apply(&role_binding(
        &by_group,
        "shared",
        "ClusterRole/view",
        &[&format!("Group:{other_group}"), &format!("Group:{group}")],
    ));
    watch.expect_next(&format!("ADDED {by_group}"), WITHIN);

    // An aggregated ClusterRole gaining the rule through the aggregation controller.
    admin.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {aggregate}-part\n  labels:\n    tenancy-e2e/{aggregate}: \"true\"\n\
rules:\n- apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"get\", \"list\"]\n"
    ));
    watch.expect_next(&format!("ADDED {aggregated}"), Duration::from_secs(2) + WITHIN);

    // Revocations.
    admin.run(&["delete", "rolebinding", "direct", "-n", &direct]).ok();
    watch.expect_next(&format!("DELETED {direct}"), WITHIN);
    admin.apply(&role_binding(
        &by_group,
        "shared",
        "ClusterRole/view",
        &[&format!("Group:{other_group}")],
    ));
    watch.expect_next(&format!("DELETED {by_group}"), WITHIN);
    // Deleting the namespace: it turns Terminating, then the tenant loses it (the namespace controller removes its
    // RoleBindings first, then the namespace).
    admin.run(&["delete", "namespace", &warmup, "--wait=false"]).ok();
    watch.expect_next(&format!("MODIFIED {warmup}"), WITHIN);
    // While the tenant still sees it, the namespace controller's own status updates are changes of it too: under
    // --access-mode=sar the revocation waits on its review, so one of them may come first. Nothing else may.
    let mut line = watch.next_lines(1, Duration::from_secs(15)).remove(0);
    while line == format!("MODIFIED {warmup}") {
        line = watch.next_lines(1, Duration::from_secs(15)).remove(0);
    }
    assert_eq!(
        line,
        format!("DELETED {warmup}"),
        "the tenant loses the deleted namespace"
    );

    assert_eq!(watch.rest(QUIET), Vec::<String>::new(), "nothing else for the user");
    assert_eq!(
        other.rest(QUIET),
        Vec::<String>::new(),
        "the bystander saw someone else's spaces"
    );
}

/// curl through kube-apiserver as `user`; the raw body.
fn raw_as(user: &str, path_and_query: &str) -> (u16, String) {
    let env = env();
    let args = env.apiserver_as(user, &["system:authenticated"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&format!("{}{path_and_query}", env.var("APISERVER_URL")), &args)
}

fn events(body: &str) -> Vec<serde_json::Value> {
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn summary(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap_or("?"),
                e["object"]["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

/// A user with access to `count` fresh namespaces; returns (user, sorted names).
fn tenant_with(count: usize, prefix: &str) -> (String, Vec<String>) {
    let user = unique(prefix);
    let mut names: Vec<String> = (0..count).map(|_| unique(prefix)).collect();
    names.sort();
    let manifest: String = names
        .iter()
        .map(|ns| namespace(ns) + &role_binding(ns, "access", "ClusterRole/view", &[&format!("User:{user}")]))
        .collect();
    env().kubectl("admin").apply(&manifest);
    crate::harness::eventually(Duration::from_secs(10), || {
        let seen = env().kubectl_as(&user, &[]).space_names(&[]);
        if seen == names {
            Ok(())
        } else {
            Err(seen)
        }
    });
    (user, names)
}

#[test]
fn watch_list_sends_initial_events_then_the_initial_events_end_bookmark() {
    let (user, names) = tenant_with(2, "wl");
    let (code, body) = raw_as(
        &user,
        "/apis/tenancy.loft.sh/v1/spaces?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=2",
    );
    assert_eq!(code, 200, "{body}");
    let events = events(&body);
    assert_eq!(
        summary(&events[..2]),
        names.iter().map(|n| format!("ADDED {n}")).collect::<Vec<_>>()
    );
    let bookmark = &events[2];
    assert_eq!(bookmark["type"], "BOOKMARK", "{body}");
    assert_eq!(bookmark["object"]["kind"], "Space");
    assert_eq!(bookmark["object"]["apiVersion"], "tenancy.loft.sh/v1");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert!(bookmark["object"]["metadata"]["resourceVersion"]
        .as_str()
        .is_some_and(|rv| !rv.is_empty()));

    // Asked wrongly, it is a 422 that client-go does not retry.
    let (code, body) = raw_as(
        &user,
        "/apis/tenancy.loft.sh/v1/spaces?watch=1&sendInitialEvents=true&allowWatchBookmarks=true",
    );
    assert_eq!(code, 422, "{body}");
}

#[test]
fn a_watch_resumed_from_a_list_resource_version_gets_exactly_the_later_changes() {
    let env = env();
    let admin = env.kubectl("admin");
    let (user, names) = tenant_with(2, "resume");
    let (code, body) = raw_as(&user, "/apis/tenancy.loft.sh/v1/spaces");
    assert_eq!(code, 200, "{body}");
    let list: serde_json::Value = serde_json::from_str(&body).expect("json");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_owned();

    let granted = unique("resume-new");
    admin.apply(
        &(namespace(&granted) + &role_binding(&granted, "access", "ClusterRole/view", &[&format!("User:{user}")])),
    );
    // The grant is in force before the revoke starts: in --access-mode=sar each waits on its own review, so two
    // changes made back to back could otherwise land in either order.
    crate::harness::eventually(Duration::from_secs(10), || {
        let seen = env.kubectl_as(&user, &[]).space_names(&[]);
        if seen.contains(&granted) {
            Ok(())
        } else {
            Err(seen)
        }
    });
    admin.run(&["delete", "rolebinding", "access", "-n", &names[0]]).ok();
    crate::harness::eventually(Duration::from_secs(10), || {
        let seen = env.kubectl_as(&user, &[]).space_names(&[]);
        if seen.contains(&granted) && !seen.contains(&names[0]) {
            Ok(())
        } else {
            Err(seen)
        }
    });

    let (code, body) = raw_as(
        &user,
        &format!("/apis/tenancy.loft.sh/v1/spaces?watch=1&resourceVersion={rv}&timeoutSeconds=1"),
    );
    assert_eq!(code, 200, "{body}");
    let resumed = events(&body);
    assert_eq!(
        summary(&resumed),
        [format!("ADDED {granted}"), format!("DELETED {}", names[0])],
        "{body}"
    );
    let positions: Vec<u64> = resumed
        .iter()
        .map(|e| {
            e["object"]["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|rv| rv.parse().ok())
                .expect("rv")
        })
        .collect();
    let start: u64 = rv.parse().expect("numeric");
    assert!(
        positions[0] > start && positions[0] < positions[1],
        "{positions:?} after {start}"
    );

    // From the last event on: nothing more.
    let (_, body) = raw_as(
        &user,
        &format!(
            "/apis/tenancy.loft.sh/v1/spaces?watch=1&resourceVersion={}&timeoutSeconds=1",
            positions[1]
        ),
    );
    assert_eq!(summary(&events(&body)), Vec::<String>::new(), "{body}");
}

#[test]
fn pages_are_full_and_count_only_what_the_tenant_may_see() {
    let (user, names) = tenant_with(5, "page");
    let mut seen = Vec::new();
    let mut continue_token = String::new();
    let mut pages = Vec::new();
    loop {
        let query = if continue_token.is_empty() {
            "?limit=2".to_owned()
        } else {
            format!("?limit=2&continue={continue_token}")
        };
        let (code, body) = raw_as(&user, &format!("/apis/tenancy.loft.sh/v1/spaces{query}"));
        assert_eq!(code, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).expect("json");
        let items: Vec<String> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        pages.push((items.len(), page["metadata"]["remainingItemCount"].as_i64()));
        seen.extend(items);
        match page["metadata"]["continue"].as_str() {
            Some(token) if !token.is_empty() => continue_token = token.to_owned(),
            _ => break,
        }
        assert!(pages.len() < 10, "runaway paging: {pages:?}");
    }
    assert_eq!(seen, names);
    assert_eq!(pages, [(2, Some(3)), (2, Some(1)), (1, None)]);

    let (code, body) = raw_as(&user, "/apis/tenancy.loft.sh/v1/spaces?limit=2&continue=garbage");
    assert_eq!(code, 400, "{body}");
}

#[test]
fn table_and_metadata_watches_carry_their_own_shapes() {
    let env = env();
    let (user, names) = tenant_with(1, "shapes");
    // kubectl's own table watch: the header once, then a row per event.
    let mut table = env.kubectl_as(&user, &[]).spawn(&["get", "spaces", "-w"]);
    let header = table.rest(Duration::from_secs(3));
    assert_eq!(header.len(), 2, "{header:?}");
    assert_eq!(
        header[0].split_whitespace().collect::<Vec<_>>(),
        ["NAME", "ACCOUNT", "CLUSTER", "PHASE", "AGE"]
    );
    assert!(header[1].starts_with(&names[0]), "{header:?}");
    env.kubectl("admin")
        .run(&["label", "namespace", &names[0], "touched=yes"])
        .ok();
    let row = table.rest(QUIET);
    assert_eq!(row.len(), 1, "{row:?}");
    assert!(row[0].starts_with(&names[0]) && row[0].contains("Active"), "{row:?}");

    // A metadata client's watch: every event object, bookmarks included, is PartialObjectMetadata.
    let args = env.apiserver_as(&user, &["system:authenticated"]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend([
        "-H",
        "Accept: application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json",
    ]);
    let (code, body) = curl(
        &format!(
            "{}/apis/tenancy.loft.sh/v1/spaces?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
            env.var("APISERVER_URL")
        ),
        &args,
    );
    assert_eq!(code, 200, "{body}");
    let events = events(&body);
    assert_eq!(events.len(), 2, "{body}");
    for event in &events {
        assert_eq!(event["object"]["kind"], "PartialObjectMetadata", "{event}");
        assert_eq!(event["object"]["apiVersion"], "meta.k8s.io/v1", "{event}");
    }
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "BOOKMARK");
}
