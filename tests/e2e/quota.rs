//! Account quotas end to end: an AccountQuota's limit holds across all of an account's spaces under parallel pod
//! creates by its members, enforced by kube-apiserver's own quota admission on each space's share, and headroom moves
//! to the spaces that need it as pods come and go.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{account, create_space, env, eventually, unique, Kubectl};

const SETTLE: Duration = Duration::from_secs(60);

fn account_quota(name: &str, account: &str) -> String {
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: AccountQuota\nmetadata:\n  name: {name}\nspec:\n  account: {account}\n  \
quota:\n    hard: {{pods: \"4\", requests.cpu: \"2\"}}\n"
    )
}

/// A pod that never runs here (no kubelet), but counts against quotas like any other.
fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  automountServiceAccountToken: false\n  containers:\n  \
- name: pause\n    image: registry.k8s.io/pause:3.10\n    resources: {{requests: {{cpu: 100m}}, limits: {{cpu: 100m}}}}\n"
    )
}

/// Creates a pod, retrying as a client should when kube-apiserver's quota admission could not record the use: Conflict
/// (a share was being written at the same moment: "please apply your changes to the latest version and try again"),
/// or its batch timed out on a loaded machine. Neither creates the pod.
fn create_pod(user: &Kubectl, space: &str, name: &str) -> Result<(), String> {
    for _ in 0..10 {
        let run = user.run_with_stdin(&["create", "-n", space, "-f", "-"], Some(&pod(name)));
        if run.success {
            return Ok(());
        }
        let retry = ["the object has been modified", "resource quota evaluation timed out"];
        if !retry.iter().any(|r| run.stderr.contains(r)) {
            return Err(run.stderr);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("pod {name}: no answer but Conflict or timeout in 10 tries"))
}

fn pods_in(space: &str) -> usize {
    env()
        .kubectl("admin")
        .run(&["get", "pods", "-n", space, "-o", "name"])
        .ok()
        .lines()
        .count()
}

fn status(quota: &str) -> Value {
    let out = env()
        .kubectl("admin")
        .run(&["get", "accountquota", quota, "-o", "json"])
        .ok();
    serde_json::from_str::<Value>(&out).expect("JSON")["status"].clone()
}

/// Waits until the quota's status shows a share for each of `spaces`, whose pod shares add up to `pods`, and each share
/// is in force (its ResourceQuota's status.hard, what admission checks, equals its spec).
fn shares_settle(quota: &str, spaces: &[String], pods: i64) {
    eventually(SETTLE, || {
        let status = status(quota);
        let shares = status["spaces"].as_array().cloned().unwrap_or_default();
        let sum: i64 = shares
            .iter()
            .filter_map(|s| s["hard"]["pods"].as_str()?.parse::<i64>().ok())
            .sum();
        let in_force = spaces.iter().all(|space| {
            let rq = env()
                .kubectl("admin")
                .run(&["get", "resourcequota", "account-quota", "-n", space, "-o", "json"]);
            let rq: Value = serde_json::from_str(&rq.stdout).unwrap_or_default();
            !rq["status"]["hard"].is_null() && rq["status"]["hard"] == rq["spec"]["hard"]
        });
        if shares.len() == spaces.len() && sum == pods && in_force {
            Ok(())
        } else {
            Err(status)
        }
    });
}

#[test]
fn an_account_quota_holds_under_parallel_pod_creates_and_headroom_moves_to_the_spaces_that_need_it() {
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, group, quota) = (unique("quotaed"), unique("team"), unique("aq"));
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&account_quota(&quota, &acc));
    let member = env.kubectl_as(&unique("member"), &[&group]);
    let spaces: Vec<String> = (0..3).map(|_| unique("qs")).collect();
    for space in &spaces {
        create_space(&member, space);
    }
    shares_settle(&quota, &spaces, 4);

    // Twenty creates at once across the three spaces: never more than four pods in all.
    let created = std::thread::scope(|scope| {
        let tries: Vec<_> = (0..20)
            .map(|i| {
                let (member, space) = (&member, &spaces[i % 3]);
                scope.spawn(move || {
                    // The space's default ServiceAccount may still be on its way: retry that, nothing else.
                    loop {
                        match create_pod(member, space, &format!("p{i}")) {
                            Err(e) if e.contains("serviceaccount") => std::thread::sleep(Duration::from_millis(200)),
                            other => return other,
                        }
                    }
                })
            })
            .collect();
        tries.into_iter().map(|t| t.join().expect("a try")).collect::<Vec<_>>()
    });
    let refusals: Vec<&String> = created.iter().filter_map(|r| r.as_ref().err()).collect();
    let created = created.len() - refusals.len();
    let total = |spaces: &[String]| spaces.iter().map(|s| pods_in(s)).sum::<usize>();
    assert!(
        (1..=4).contains(&created),
        "{created} pods were admitted; refusals: {refusals:#?}"
    );
    assert_eq!(total(&spaces), created);
    // Moving headroom afterwards never lets more in.
    std::thread::sleep(Duration::from_secs(3));
    for (i, space) in spaces.iter().enumerate() {
        let _ = create_pod(&member, space, &format!("late{i}"));
    }
    assert!(total(&spaces) <= 4, "{} pods in all", total(&spaces));

    // Tenants see their account's usage.
    let accounts = member.run(&["get", "accounts", &acc]).ok();
    assert!(accounts.contains("QUOTA") && accounts.contains("pods"), "{accounts}");

    // All pods gone: every space may start one again, and the first space, alone busy, gets the headroom the others
    // leave while they stay idle.
    for space in &spaces {
        admin
            .run(&["delete", "pods", "--all", "-n", space, "--wait=false"])
            .ok();
    }
    eventually(SETTLE, || match total(&spaces) {
        0 => Ok(()),
        n => Err(n),
    });
    let (busy, idle) = (&spaces[0], &spaces[1]);
    eventually(SETTLE, || create_pod(&member, busy, "b1"));
    eventually(SETTLE, || create_pod(&member, busy, "b2"));
    // The idle spaces keep one pod each of the headroom: the busy one is refused a third...
    let refused = create_pod(&member, busy, "b3").expect_err("a third pod while the others are idle");
    assert!(refused.contains("exceeded quota"), "{refused}");
    // ...which an idle space can start at once.
    create_pod(&member, idle, "i1").expect("an idle space starts a pod within its share");
    // Deleting the busy space's pods frees their headroom for the others.
    admin
        .run(&["delete", "pod", "b1", "b2", "-n", busy, "--wait=false"])
        .ok();
    eventually(SETTLE, || create_pod(&member, idle, "i2"));
    assert!(total(&spaces) <= 4, "{} pods in all", total(&spaces));

    // The shares are the space's own: its owners can neither change nor delete them.
    let patch = member.run(&[
        "patch",
        "resourcequota",
        "account-quota",
        "-n",
        busy,
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"100"}}}"#,
    ]);
    assert!(!patch.success, "an owner raised their share: {}", patch.stdout);
    let delete = member.run(&["delete", "resourcequota", "account-quota", "-n", busy]);
    assert!(!delete.success, "an owner deleted their share: {}", delete.stdout);
}
