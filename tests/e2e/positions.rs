//! resourceVersions across replicas and restarts: each server process answers its own positions exactly, and every
//! position it did not make (another replica's, an earlier run's, one from before it started, a made-up one) with
//! 410 Expired, so a client relists instead of being replayed a history that invents or omits changes.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{env, eventually, namespace, role_binding, server_request_as, unique, Replica};

const SETTLE: Duration = Duration::from_secs(20);

/// One server process, reached straight with the front-proxy certificate.
struct Server {
    name: &'static str,
    url: String,
}

struct Tenant {
    user: String,
    group: String,
}

impl Tenant {
    fn get(&self, server: &Server, path: &str) -> (u16, String) {
        server_request_as(&server.url, &self.user, &[&self.group], "GET", path, None)
    }

    /// The names this tenant lists on `server`, its resourceVersion, and (with `limit=1`) the continue token.
    fn list(&self, server: &Server, query: &str) -> (Vec<String>, String, Option<String>) {
        let (code, body) = self.get(server, &format!("/apis/tenancy.loft.sh/v1/spaces{query}"));
        assert_eq!(code, 200, "list on {}: {body}", server.name);
        let list: Value = serde_json::from_str(&body).expect("a SpaceList");
        let names = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_owned))
            .collect();
        let rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let token = list["metadata"]["continue"].as_str().map(str::to_owned);
        (names, rv, token)
    }

    fn eventually_lists(&self, server: &Server, want: &[&String]) {
        let mut want: Vec<String> = want.iter().map(|s| (*s).clone()).collect();
        want.sort();
        eventually(SETTLE, || {
            let (names, _, _) = self.list(server, "");
            if names == want {
                Ok(())
            } else {
                Err((server.name, names))
            }
        });
    }

    /// The events of a watch on `server` from `rv` that ends after two seconds: `TYPE name`, or `ERROR <code>`.
    fn watch_from(&self, server: &Server, rv: &str) -> Vec<String> {
        let (code, body) = self.get(
            server,
            &format!("/apis/tenancy.loft.sh/v1/spaces?watch=1&resourceVersion={rv}&timeoutSeconds=2"),
        );
        assert_eq!(code, 200, "watch on {} from {rv}: {body}", server.name);
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                match event["type"].as_str() {
                    Some("ERROR") => format!("ERROR {} {}", event["object"]["code"], event["object"]["reason"]),
                    kind => format!(
                        "{} {}",
                        kind.unwrap_or("?"),
                        event["object"]["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                }
            })
            .collect()
    }
}

/// What a client that had `before` ends with after applying `events` in order.
fn replay(before: &[String], events: &[String]) -> BTreeSet<String> {
    let mut state: BTreeSet<String> = before.iter().cloned().collect();
    for event in events {
        match event.split_once(' ') {
            Some(("ADDED" | "MODIFIED", name)) => {
                state.insert(name.to_owned());
            }
            Some(("DELETED", name)) => {
                state.remove(name);
            }
            _ => panic!("unexpected event {event:?} in {events:?}"),
        }
    }
    state
}

#[test]
fn each_replica_answers_its_own_positions_exactly_and_every_other_position_with_410() {
    let env = env();
    let admin = env.kubectl("admin");
    let tenant = Tenant {
        user: unique("rv-user"),
        group: unique("rv-team"),
    };
    let (a, b, c) = (unique("rv-a"), unique("rv-b"), unique("rv-c"));
    let subject = format!("Group:{}", tenant.group);
    admin.apply(
        &[
            namespace(&a),
            namespace(&b),
            namespace(&c),
            role_binding(&a, "rv", "ClusterRole/view", &[&subject]),
            role_binding(&b, "rv", "ClusterRole/view", &[&subject]),
        ]
        .concat(),
    );
    let (first, second) = (Replica::start(&[]), Replica::start(&[]));
    let servers = [
        Server {
            name: "the run's server",
            url: env.var("SERVER_URL").to_owned(),
        },
        Server {
            name: "replica 1",
            url: first.url.clone(),
        },
        Server {
            name: "replica 2",
            url: second.url.clone(),
        },
    ];
    let mut before = Vec::new();
    for server in &servers {
        tenant.eventually_lists(server, &[&a, &b]);
        let (names, rv, _) = tenant.list(server, "");
        let (_, _, token) = tenant.list(server, "?limit=1");
        before.push((names, rv, token.expect("two spaces, one per page: a continue token")));
    }

    // A revoke, a deletion and a grant, while nobody watches.
    admin.run(&["delete", "rolebinding", "rv", "-n", &a]).ok();
    admin.run(&["delete", "namespace", &b, "--wait=false"]).ok();
    admin.apply(&role_binding(&c, "rv", "ClusterRole/view", &[&subject]));
    for server in &servers {
        tenant.eventually_lists(server, &[&c]);
    }
    let late = Replica::start(&[]);
    let late = Server {
        name: "a replica started later",
        url: late.url.clone(),
    };
    tenant.eventually_lists(&late, &[&c]);

    for (i, server) in servers.iter().enumerate() {
        let (names, rv, token) = &before[i];
        // On the process that gave the position: exactly the changes in between, each once, the revoke and the
        // deletion included.
        let events = tenant.watch_from(server, rv);
        assert!(
            events.iter().all(|e| !e.starts_with("ERROR")),
            "{} from its own {rv}: {events:?}",
            server.name
        );
        assert_eq!(
            replay(names, &events),
            BTreeSet::from([c.clone()]),
            "{} from its own {rv}: {events:?}",
            server.name
        );
        for gone in [&a, &b] {
            assert!(
                events.contains(&format!("DELETED {gone}")),
                "{} from {rv} omitted {gone}'s DELETED: {events:?}",
                server.name
            );
        }
        assert_eq!(
            events.iter().filter(|e| e.ends_with(&format!(" {c}"))).count(),
            1,
            "{}: {events:?}",
            server.name
        );

        // Anywhere else — the other replicas, the one started later — 410 Expired and nothing else.
        for other in servers.iter().chain([&late]).filter(|o| o.url != server.url) {
            let what = format!("{}'s {rv} on {}", server.name, other.name);
            assert_eq!(
                tenant.watch_from(other, rv),
                ["ERROR 410 \"Expired\""],
                "watch from {what}"
            );
            let (code, body) = tenant.get(
                other,
                &format!("/apis/tenancy.loft.sh/v1/spaces?resourceVersion={rv}&resourceVersionMatch=Exact"),
            );
            assert_eq!(code, 410, "an Exact list at {what}: {body}");
            let (code, body) = tenant.get(
                other,
                &format!("/apis/tenancy.loft.sh/v1/spaces?limit=1&continue={token}"),
            );
            assert_eq!(code, 410, "{}'s continue token on {}: {body}", server.name, other.name);
            assert!(body.contains("\"reason\":\"Expired\""), "{body}");
        }
    }

    // A position from before any of them started (resourceVersion 2 of a fresh cluster) is never replayed.
    for server in servers.iter().chain([&late]) {
        assert_eq!(
            tenant.watch_from(server, "2"),
            ["ERROR 410 \"Expired\""],
            "{}",
            server.name
        );
    }
}

#[test]
fn through_kube_apiserver_another_processs_position_is_410_and_its_own_is_exact() {
    // The same, as a client sees it through the aggregator: the process kube-apiserver proxies to answers another
    // process's position (a replica's, or its predecessor's after a rolling update) with 410, and its own exactly.
    let env = env();
    let admin = env.kubectl("admin");
    let user = unique("rv-kubectl");
    let ns = unique("rv-k");
    admin.apply(&(namespace(&ns) + &role_binding(&ns, "rv", "ClusterRole/view", &[&format!("User:{user}")])));
    let tenant = env.kubectl_as(&user, &[]);
    tenant.eventually_lists(&[&ns], SETTLE);
    let list: Value = serde_json::from_str(&tenant.run(&["get", "--raw", "/apis/tenancy.loft.sh/v1/spaces"]).ok())
        .expect("a SpaceList");
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a resourceVersion")
        .to_owned();
    // Another process's position, through kube-apiserver: 410.
    let other = Replica::start(&[]);
    let (code, body) = server_request_as(&other.url, &user, &[], "GET", "/apis/tenancy.loft.sh/v1/spaces", None);
    assert_eq!(code, 200, "{body}");
    let foreign: Value = serde_json::from_str(&body).expect("a SpaceList");
    let foreign = foreign["metadata"]["resourceVersion"].as_str().expect("rv").to_owned();
    let out = tenant
        .run(&[
            "get",
            "--raw",
            &format!("/apis/tenancy.loft.sh/v1/spaces?watch=1&resourceVersion={foreign}&timeoutSeconds=2"),
        ])
        .ok();
    assert!(out.contains("\"code\":410") && out.contains("Expired"), "{out}");
    // Its own position, through kube-apiserver: exact.
    admin.run(&["label", "namespace", &ns, "rv=changed"]).ok();
    let out = tenant
        .run(&[
            "get",
            "--raw",
            &format!("/apis/tenancy.loft.sh/v1/spaces?watch=1&resourceVersion={rv}&timeoutSeconds=2"),
        ])
        .ok();
    let events: Vec<Value> = out
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("event"))
        .collect();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(events[0]["type"], "MODIFIED", "{out}");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["rv"], "changed", "{out}");
}
