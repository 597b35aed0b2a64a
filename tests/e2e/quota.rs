//! Account quotas end to end: an AccountQuota's limit holds across all of an account's spaces under parallel pod
//! creates by its members, enforced by kube-apiserver's own quota admission on each space's share, and headroom moves
//! to the spaces that need it as pods come and go; one quota spans the account's spaces in every cluster.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{account, create_space, env, eventually, unique, Kubectl, Replica};
use crate::sites::Site;

const SETTLE: Duration = Duration::from_secs(60);
/// How soon a create refused while headroom was on its way must succeed when retried (as a ReplicaSet retries).
const RETRY: Duration = Duration::from_secs(5);

fn account_quota(name: &str, account: &str) -> String {
    account_quota_of(name, account, 4)
}

fn account_quota_of(name: &str, account: &str, pods: u32) -> String {
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: AccountQuota\nmetadata:\n  name: {name}\nspec:\n  account: {account}\n  \
quota:\n    hard: {{pods: \"{pods}\", requests.cpu: \"2\"}}\n"
    )
}

/// The share in namespace `ns` of the cluster `admin` is the admin of, as JSON, or Null when there is none.
fn share_at(admin: &Kubectl, ns: &str) -> Value {
    let run = admin.run(&["get", "resourcequota", "account-quota", "-n", ns, "-o", "json"]);
    serde_json::from_str(&run.stdout).unwrap_or_default()
}

/// The quota's InForce condition: its status and message.
fn in_force(quota: &str) -> (String, String) {
    let conditions = status(quota)["conditions"].as_array().cloned().unwrap_or_default();
    conditions
        .iter()
        .find(|c| c["type"] == "InForce")
        .map(|c| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
            (text(&c["status"]), text(&c["message"]))
        })
        .unwrap_or_default()
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
pub(crate) fn create_pod(user: &Kubectl, space: &str, name: &str) -> Result<(), String> {
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

/// The pods in namespace `ns` of the cluster `admin` is the admin of.
fn pods_in(admin: &Kubectl, ns: &str) -> usize {
    admin.run(&["get", "pods", "-n", ns, "-o", "name"]).ok().lines().count()
}

fn status(quota: &str) -> Value {
    let out = env()
        .kubectl("admin")
        .run(&["get", "accountquota", quota, "-o", "json"])
        .ok();
    serde_json::from_str::<Value>(&out).expect("JSON")["status"].clone()
}

/// Waits until the quota's status shows a share for each of the namespaces `spaces` of `site`, whose pod shares add up
/// to `pods`, and each share is in force (its ResourceQuota's status.hard, what admission checks, equals its spec).
fn shares_settle(site: &Site, quota: &str, spaces: &[String], pods: i64) {
    let admin = site.admin();
    eventually(SETTLE, || {
        let status = status(quota);
        let shares = status["spaces"].as_array().cloned().unwrap_or_default();
        let sum: i64 = shares
            .iter()
            .filter_map(|s| s["hard"]["pods"].as_str()?.parse::<i64>().ok())
            .sum();
        let named = spaces.iter().all(|ns| {
            shares
                .iter()
                .any(|s| s["name"].as_str() == Some(site.space(ns).as_str()))
        });
        let in_force = spaces.iter().all(|ns| {
            let rq = share_at(&admin, ns);
            !rq["status"]["hard"].is_null() && rq["status"]["hard"] == rq["spec"]["hard"]
        });
        if shares.len() == spaces.len() && named && sum == pods && in_force {
            Ok(())
        } else {
            Err(status)
        }
    });
}

#[test]
fn an_account_quota_holds_under_parallel_pod_creates_and_headroom_moves_to_the_spaces_that_need_it() {
    an_account_quota_holds_under_parallel_pod_creates_at(&Site::management());
}

#[test]
fn an_account_quota_holds_under_parallel_pod_creates_at_the_connected_cluster() {
    an_account_quota_holds_under_parallel_pod_creates_at(&Site::connected());
}

/// The account's spaces in `site`; its members create pods straight at that cluster's kube-apiserver.
fn an_account_quota_holds_under_parallel_pod_creates_at(site: &Site) {
    let env = env();
    let management = env.kubectl("admin");
    let admin = site.admin();
    let (acc, group, quota) = (unique("quotaed"), unique("team"), unique("aq"));
    management.apply(&account(&acc, &group, 5, Some(&[]), ""));
    management.apply(&account_quota(&quota, &acc));
    let user = unique("member");
    let tenant = env.kubectl_as(&user, &[&group]);
    let member = site.tenant(&user, &[&group]);
    let spaces: Vec<String> = (0..3).map(|_| unique("qs")).collect();
    for space in &spaces {
        create_space(&tenant, &site.space(space));
        // The create returns once kube-apiserver enforces the share (kube-controller-manager has filled its
        // status.hard), so nothing the owners make from then on escapes it.
        let share = share_at(&admin, space);
        let hard = &share["status"]["hard"];
        assert!(
            hard["pods"].is_string() && hard["requests.cpu"].is_string(),
            "space {space}: its share is not enforced when the create returns: {share}"
        );
    }
    shares_settle(site, &quota, &spaces, 4);
    assert_eq!(in_force(&quota).0, "True", "{}", status(&quota));

    // Twenty creates at once across the three spaces, with a second replica passing over the quota too, killed
    // halfway as a rolling update stops one: never more than four pods in all.
    let second = Replica::start(&[]);
    let created = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(700));
            drop(second);
        });
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
    let total = |spaces: &[String]| spaces.iter().map(|s| pods_in(&admin, s)).sum::<usize>();
    assert!(
        (1..=4).contains(&created),
        "{}: {created} pods were admitted; refusals: {refusals:#?}",
        site.name()
    );
    assert_eq!(total(&spaces), created);
    // Moving headroom afterwards never lets more in.
    std::thread::sleep(Duration::from_secs(3));
    for (i, space) in spaces.iter().enumerate() {
        let _ = create_pod(&member, space, &format!("late{i}"));
    }
    assert!(total(&spaces) <= 4, "{} pods in all", total(&spaces));

    // Tenants see their account's usage.
    let accounts = tenant.run(&["get", "accounts", &acc]).ok();
    assert!(accounts.contains("QUOTA") && accounts.contains("pods"), "{accounts}");

    // All pods gone: every space may start one again.
    for space in &spaces {
        admin
            .run(&["delete", "pods", "--all", "-n", space, "--wait=false"])
            .ok();
    }
    eventually(SETTLE, || match total(&spaces) {
        0 => Ok(()),
        n => Err(n),
    });
    // kube-controller-manager counts the deletions in each share's status.used a moment later; until it has, the
    // planner rightly still sees two busy spaces. Once every share shows no pod in use, none may be left without one.
    eventually(SETTLE, || {
        let shares = status(&quota)["spaces"].as_array().cloned().unwrap_or_default();
        let idle = shares.len() == spaces.len() && shares.iter().all(|s| s["used"]["pods"].as_str() == Some("0"));
        let each_one = shares
            .iter()
            .all(|s| s["hard"]["pods"].as_str().and_then(|p| p.parse::<i64>().ok()) >= Some(1));
        match (idle, each_one) {
            (false, _) => Err(format!("not all idle yet: {shares:?}")),
            (true, true) => Ok(()),
            (true, false) => panic!("a space has no pod of the quota while all are idle: {shares:?}"),
        }
    });
    shares_settle(site, &quota, &spaces, 4);
    create_pod(&member, &spaces[2], "again").expect("an idle space starts a pod at once");
    let busy = &spaces[0];

    // The shares are the space's own: its owners can neither change nor delete them, even when their RBAC lets them
    // write ResourceQuotas (and their status): the admission policy refuses, not RBAC.
    admin.apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: quota-writer, namespace: {busy}}}\n\
rules:\n- apiGroups: [\"\"]\n  resources: [resourcequotas, resourcequotas/status]\n  \
verbs: [get, list, create, update, patch, delete]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: quota-writer, namespace: {busy}}}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: quota-writer}}\n\
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {group}}}]\n"
    ));
    // RBAC does let them: a quota of their own they create and raise.
    eventually(SETTLE, || {
        let run = member.run_with_stdin(
            &["create", "-n", busy, "-f", "-"],
            Some("apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: mine}\nspec: {hard: {pods: \"1\"}}\n"),
        );
        if run.success {
            Ok(())
        } else {
            Err(run.stderr)
        }
    });
    member
        .run(&[
            "patch",
            "resourcequota",
            "mine",
            "-n",
            busy,
            "--type=merge",
            "-p",
            r#"{"spec":{"hard":{"pods":"2"}}}"#,
        ])
        .ok();
    let policy = "is enforced by the platform (label tenancy.loft.sh/enforced)";
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
    assert!(
        patch.stderr.contains(policy),
        "refused, but not by the policy: {}",
        patch.stderr
    );
    // status.hard is what admission checks: the status subresource is guarded as well.
    let patch_status = member.run(&[
        "patch",
        "resourcequota",
        "account-quota",
        "-n",
        busy,
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"hard":{"pods":"100"}}}"#,
    ]);
    assert!(
        !patch_status.success,
        "an owner raised their share's status: {}",
        patch_status.stdout
    );
    assert!(
        patch_status.stderr.contains(policy) && patch_status.stderr.contains("(status)"),
        "refused, but not by the policy: {}",
        patch_status.stderr
    );
    let delete = member.run(&["delete", "resourcequota", "account-quota", "-n", busy]);
    assert!(!delete.success, "an owner deleted their share: {}", delete.stdout);
    assert!(
        delete.stderr.contains(policy),
        "refused, but not by the policy: {}",
        delete.stderr
    );
}

/// The quota its label names and the owner of the share in namespace `ns` of the cluster `admin` is the admin of, as
/// (label, ownerReferences[0].name: empty where there is none).
fn share_owner(admin: &Kubectl, ns: &str) -> Option<(String, String)> {
    let share = share_at(admin, ns);
    let label = share["metadata"]["labels"]["tenancy.loft.sh/account-quota"]
        .as_str()?
        .to_owned();
    let owner = share["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Some((label, owner))
}

#[test]
fn one_account_quota_is_in_force_per_account_and_a_deleted_one_leaves_no_shares_behind() {
    one_account_quota_is_in_force_per_account_and_a_deleted_one_leaves_no_shares_behind_at(&Site::management());
}

#[test]
fn one_account_quota_is_in_force_per_account_and_a_deleted_one_leaves_no_shares_behind_at_the_connected_cluster() {
    one_account_quota_is_in_force_per_account_and_a_deleted_one_leaves_no_shares_behind_at(&Site::connected());
}

/// The account's spaces in `site`.
fn one_account_quota_is_in_force_per_account_and_a_deleted_one_leaves_no_shares_behind_at(site: &Site) {
    let env = env();
    let admin = env.kubectl("admin");
    let site_admin = site.admin();
    let (acc, group) = (unique("requota"), unique("team"));
    let (first, second) = (unique("aq-first"), unique("aq-second"));
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&account_quota(&first, &acc));
    // A share names its quota by label, and has it for owner where the garbage collector can find it: in the
    // management cluster, where AccountQuotas are.
    let owned_by = |quota: &String| {
        let owner = if site.cluster().is_none() {
            quota.clone()
        } else {
            String::new()
        };
        Some((quota.clone(), owner))
    };
    let owner = |ns: &String| share_owner(&site_admin, ns);
    let member = env.kubectl_as(&unique("member"), &[&group]);
    let spaces: Vec<String> = (0..2).map(|_| unique("rq")).collect();
    for ns in &spaces {
        create_space(&member, &site.space(ns));
        assert_eq!(owner(ns), owned_by(&first), "{}", share_at(&site_admin, ns));
    }
    shares_settle(site, &first, &spaces, 4);

    // A second quota for the account: not in force, and it says which one is; the shares stay the first's.
    std::thread::sleep(Duration::from_secs(1)); // creation timestamps have whole seconds
    admin.apply(&account_quota_of(&second, &acc, 2));
    let (state, message) = eventually(SETTLE, || match in_force(&second) {
        (state, message) if !state.is_empty() => Ok((state, message)),
        other => Err(other),
    });
    assert_eq!(state, "False", "{message}");
    assert!(message.contains(&first), "{message}");
    assert_eq!(in_force(&first).0, "True");
    let listed = admin.run(&["get", "accountquota", &second]).ok();
    assert!(listed.contains("INFORCE") && listed.contains("False"), "{listed}");
    for ns in &spaces {
        assert_eq!(owner(ns), owned_by(&first));
    }

    // The first one deleted: the second takes over the account's shares and its limit holds.
    admin.run(&["delete", "accountquota", &first]).ok();
    eventually(SETTLE, || {
        let owners: Vec<_> = spaces.iter().map(owner).collect();
        if owners.iter().all(|o| *o == owned_by(&second)) && in_force(&second).0 == "True" {
            Ok(())
        } else {
            Err((owners, status(&second)))
        }
    });
    shares_settle(site, &second, &spaces, 2);

    // The second one deleted too: its shares go (no space stays capped by a quota that is gone).
    admin.run(&["delete", "accountquota", &second]).ok();
    eventually(Duration::from_secs(20), || {
        let left: Vec<&String> = spaces
            .iter()
            .filter(|ns| !share_at(&site_admin, ns).is_null())
            .collect();
        if left.is_empty() {
            Ok(())
        } else {
            Err(left)
        }
    });
    // A share with no owner reference (so the garbage collector cannot see it), of a quota that is gone: the quota
    // controller deletes it all the same.
    let gone = unique("aq-gone");
    site_admin.apply(&format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: account-quota\n  namespace: {}\n  labels: \
{{tenancy.loft.sh/enforced: \"true\", tenancy.loft.sh/account-quota: {gone}}}\nspec: {{hard: {{pods: \"0\"}}}}\n",
        spaces[0]
    ));
    eventually(Duration::from_secs(20), || match share_at(&site_admin, &spaces[0]) {
        Value::Null => Ok(()),
        share => Err(share),
    });
}

#[test]
fn one_account_quota_spans_the_accounts_spaces_in_every_cluster() {
    let env = env();
    let admin = env.kubectl("admin");
    let x = Site::connected();
    let (acc, group, quota) = (unique("spanned"), unique("team"), unique("aq"));
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&account_quota(&quota, &acc));
    let user = unique("member");
    let member = env.kubectl_as(&user, &[&group]);
    let (here, there) = (unique("qh"), unique("qx"));
    create_space(&member, &here);
    create_space(&member, &x.space(&there));

    // The share in the connected cluster is made there, and enforced there when the create returns.
    let share_there = || -> Value {
        let run = x
            .admin()
            .run(&["get", "resourcequota", "account-quota", "-n", &there, "-o", "json"]);
        serde_json::from_str(&run.stdout).unwrap_or_default()
    };
    let made = share_there();
    assert!(
        made["status"]["hard"]["pods"].is_string(),
        "the share in {} is not enforced when the create returns: {made}",
        x.name()
    );
    // One quota over both: the status names both spaces, their shares adding up to the quota.
    let mut both = vec![here.clone(), x.space(&there)];
    both.sort();
    let pods_of = |share: &Value| share["hard"]["pods"].as_str().and_then(|p| p.parse::<i64>().ok());
    let (mine_there, settled) = eventually(SETTLE, || {
        let status = status(&quota);
        let shares = status["spaces"].as_array().cloned().unwrap_or_default();
        let names: Vec<String> = shares
            .iter()
            .filter_map(|s| s["name"].as_str().map(str::to_owned))
            .collect();
        let sum: i64 = shares.iter().filter_map(pods_of).sum();
        let there_share = shares.iter().find(|s| s["name"] == x.space(&there)).and_then(pods_of);
        let in_force = share_there()["status"]["hard"]["pods"]
            .as_str()
            .and_then(|p| p.parse::<i64>().ok());
        match (names == both && sum == 4, there_share) {
            (true, Some(n)) if n >= 1 && in_force == Some(n) => Ok((n, status)),
            _ => Err(status),
        }
    });
    assert_eq!(in_force(&quota).0, "True", "{settled}");

    // Straight at each cluster's kube-apiserver, the owner starts pods (as headroom moves to where they are) until
    // the quota refuses: the quota's pods across both clusters, never more.
    let owner_there = x.tenant(&user, &[&group]);
    let start_pods = |owner: &Kubectl, space: &str, prefix: &str| -> (usize, Vec<String>) {
        let mut admitted = 0;
        let mut refusals = Vec::new();
        for i in 0..6 {
            // A refusal may be headroom not moved yet: tried again for a few seconds before it counts.
            let tried = eventually_or(Duration::from_secs(3), || {
                create_pod(owner, space, &format!("{prefix}{i}"))
            });
            match tried {
                Ok(()) => admitted += 1,
                Err(refused) => refusals.push(refused),
            }
        }
        (admitted, refusals)
    };
    let (admitted_there, refused_there) = start_pods(&owner_there, &there, "x");
    let (admitted_here, refused_here) = start_pods(&member, &here, "h");
    // The first to grow takes what the other leaves idle: the whole quota is used, and never more.
    assert!(
        admitted_there as i64 >= mine_there && admitted_there + admitted_here == 4,
        "{admitted_there} pods admitted in {}, {admitted_here} here; the quota allows 4",
        x.name()
    );
    for refused in refused_there.iter().chain(&refused_here) {
        assert!(refused.contains("exceeded quota"), "{refused}");
    }
    // The owner cannot raise the share there even with RBAC that lets them: the connected cluster's own admission
    // policy refuses.
    x.admin().apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: quota-writer, namespace: {there}}}\n\
rules:\n- apiGroups: [\"\"]\n  resources: [resourcequotas]\n  verbs: [get, list, patch]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: quota-writer, namespace: {there}}}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: quota-writer}}\n\
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: Group, name: {group}}}]\n"
    ));
    let patch = owner_there.run(&[
        "patch",
        "resourcequota",
        "account-quota",
        "-n",
        &there,
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"100"}}}"#,
    ]);
    assert!(
        !patch.success && patch.stderr.contains("is enforced by the platform"),
        "{}",
        patch.stderr
    );
    // What the pods in both clusters use is counted in the one quota.
    eventually(SETTLE, || {
        let status = status(&quota);
        if status["total"]["used"]["pods"].as_str() == Some(&(admitted_there + admitted_here).to_string()) {
            Ok(())
        } else {
            Err(status)
        }
    });
}

/// Pods started one after another in `space`, one every half second as a Deployment scaling up starts them, each
/// retried every half second for up to [`RETRY`] when refused; how many refusals there were on the way, or the
/// refusal that outlasted the retries.
fn start_one_by_one(owner: &Kubectl, space: &str, prefix: &str, count: usize) -> Result<usize, String> {
    let mut refusals = 0;
    for i in 0..count {
        let deadline = std::time::Instant::now() + RETRY;
        loop {
            match create_pod(owner, space, &format!("{prefix}{i}")) {
                Ok(()) => break,
                Err(refused) if refused.contains("exceeded quota") && std::time::Instant::now() < deadline => {
                    refusals += 1;
                }
                Err(refused) => return Err(format!("pod {prefix}{i} in {space}: {refused}")),
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!("{space}: {count} pods one by one, {refusals} refusals on the way");
    Ok(refusals)
}

/// The account's spaces: two in the management cluster and one in the connected cluster. One space alone takes the
/// whole quota while the others are idle, then gives it back to another that grows the same way.
#[test]
fn one_space_alone_grows_to_the_whole_account_quota_and_gives_it_back_when_it_shrinks() {
    let env = env();
    let admin = env.kubectl("admin");
    let x = Site::connected();
    let (acc, group, quota) = (unique("onequota"), unique("team"), unique("aq"));
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&account_quota(&quota, &acc));
    let user = unique("member");
    let member = env.kubectl_as(&user, &[&group]);
    let (first, second, there) = (unique("qa"), unique("qb"), unique("qx"));
    for space in [first.clone(), second.clone(), x.space(&there)] {
        create_space(&member, &space);
    }
    let mut names = vec![first.clone(), second.clone(), x.space(&there)];
    names.sort();
    eventually(SETTLE, || {
        let status = status(&quota);
        let shares = status["spaces"].as_array().cloned().unwrap_or_default();
        let named: Vec<&str> = shares.iter().filter_map(|s| s["name"].as_str()).collect();
        let sum: i64 = shares
            .iter()
            .filter_map(|s| s["hard"]["pods"].as_str()?.parse::<i64>().ok())
            .sum();
        if named == names && sum == 4 {
            Ok(())
        } else {
            Err(status)
        }
    });

    // The first space, alone busy, reaches the whole quota: at most one refusal on the way, each retried within 5 s.
    let refusals = start_one_by_one(&member, &first, "a", 4).unwrap_or_else(|refused| panic!("{refused}"));
    assert!(refusals <= 1, "{refusals} refusals on the way to the whole quota");
    assert_eq!(pods_in(&admin, &first), 4);
    // The account is full: another space is refused, and says which quota; its owner reads why among its events.
    let refused = create_pod(&member, &second, "over").expect_err("a fifth pod in the account");
    assert!(refused.contains("exceeded quota: account-quota"), "{refused}");
    let why = eventually(SETTLE, || {
        let events = member
            .run(&[
                "get",
                "events",
                "-n",
                &second,
                "--field-selector",
                "reason=AccountQuotaFull",
                "-o",
                "jsonpath={.items[*].message}",
            ])
            .ok();
        if events.contains("pods is used up: 4 of 4") {
            Ok(events)
        } else {
            Err(events)
        }
    });
    assert!(why.contains(&format!("AccountQuota {quota} of account {acc}")), "{why}");

    // The busy space shrinks: the space in the connected cluster grows the same way, straight at its kube-apiserver.
    admin
        .run(&["delete", "pods", "--all", "-n", &first, "--wait=false"])
        .ok();
    eventually(SETTLE, || match pods_in(&admin, &first) {
        0 => Ok(()),
        n => Err(n),
    });
    let owner_there = x.tenant(&user, &[&group]);
    let refusals = start_one_by_one(&owner_there, &there, "x", 4).unwrap_or_else(|refused| panic!("{refused}"));
    assert!(
        refusals <= 1,
        "{refusals} refusals on the way to the whole quota in {}",
        x.name()
    );
    assert_eq!(pods_in(&x.admin(), &there), 4);
    let refused = create_pod(&member, &first, "over").expect_err("a fifth pod in the account");
    assert!(refused.contains("exceeded quota"), "{refused}");
}

/// `check` until it succeeds or `timeout` passes; its last failure then.
fn eventually_or<T, E>(timeout: Duration, mut check: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return Ok(value),
            Err(error) if std::time::Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}
