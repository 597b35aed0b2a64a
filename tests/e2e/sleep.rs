//! Sleep mode as a tenant lives it, with kube-controller-manager's deployment and replicaset controllers making and
//! removing the pods: an idle space falls asleep and stays asleep while only the server writes; waking gives back
//! exactly what it had; a tenant's own change while it sleeps wakes it and wins; any replica, started at any time,
//! wakes what another sent to sleep; only who may update a space can send it to sleep or wake it.

use std::time::Duration;

use crate::harness::{create_space, env, eventually, unique, Kubectl, Replica};
use crate::plugin;
use crate::sites::Site;

const RECORDED_REPLICAS: &str = "tenancy.loft.sh/sleep-replicas";
/// How long a space with `afterInactivity: 15s` may take to fall asleep: the period, the loop's interval, and a loaded
/// machine's slack.
const FALLS_ASLEEP: Duration = Duration::from_secs(60);
const ACTS: Duration = Duration::from_secs(30);

fn workloads() -> &'static str {
    "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: registry.invalid/web:1}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: '0 3 * * *'
  jobTemplate:
    spec:
      template:
        spec: {restartPolicy: Never, containers: [{name: job, image: registry.invalid/job:1}]}
"
}

/// An Account of `group` whose spaces sleep after `after` unless they say otherwise (`None`: no default).
fn account(name: &str, group: &str, after: Option<&str>) -> String {
    let sleep = after.map_or(String::new(), |after| {
        format!("\n    sleep: {{afterInactivity: {after}}}")
    });
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {name}\nspec:\n  subjects: [{{kind: \
Group, name: {group}}}]\n  space:\n    limit: 5\n    templates: []{sleep}\n"
    )
}

fn get(who: &Kubectl, args: &[&str]) -> String {
    who.run(args).ok()
}

fn phase(tenant: &Kubectl, space: &str) -> String {
    get(tenant, &["get", "space", space, "-o", "jsonpath={.status.phase}"])
}

/// The Deployment's replicas and record, and the CronJob's suspend and record, as the site's admin reads them.
fn workload_state(admin: &Kubectl, ns: &str) -> (String, String, String, String) {
    let deployment = get(
        admin,
        &[
            "get",
            "deployment",
            "web",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.replicas} {.metadata.annotations}",
        ],
    );
    let (replicas, annotations) = deployment.split_once(' ').unwrap_or((&deployment, ""));
    let cronjob = get(
        admin,
        &[
            "get",
            "cronjob",
            "nightly",
            "-n",
            ns,
            "-o",
            "jsonpath={.spec.suspend} {.metadata.annotations}",
        ],
    );
    let (suspend, cron_annotations) = cronjob.split_once(' ').unwrap_or((&cronjob, ""));
    (
        replicas.to_owned(),
        annotations.to_owned(),
        suspend.to_owned(),
        cron_annotations.to_owned(),
    )
}

fn pods(admin: &Kubectl, ns: &str) -> usize {
    get(admin, &["get", "pods", "-n", ns, "-o", "name"]).lines().count()
}

#[track_caller]
fn until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    eventually(timeout, || if check() { Ok(()) } else { Err(what.to_owned()) });
}

/// Sets a space's `spec.sleep` (JSON; `null` removes it) with kubectl, as `who`.
fn set_sleep(who: &Kubectl, space: &str, sleep: &str) {
    let patch = format!(r#"{{"spec":{{"sleep":{sleep}}}}}"#);
    who.run(&["patch", "space", space, "--type=merge", "-p", &patch]).ok();
}

/// POST to a space's sleep or wake subresource with kubectl, as `who`.
fn act(who: &Kubectl, space: &str, action: &str) -> crate::harness::Run {
    who.run_with_stdin(
        &[
            "create",
            "--raw",
            &format!("/apis/tenancy.loft.sh/v1/spaces/{space}/{action}"),
            "-f",
            "-",
        ],
        Some("{}"),
    )
}

/// A member of a new Account (sleeping after `after` by default, if given) with a space of their own at `site`,
/// named `<prefix>-...`, holding the Deployment and the CronJob of [`workloads`] (`with_workloads`).
struct Owner {
    user: String,
    account: String,
    group: String,
    /// The member, through the management cluster (the tenancy API).
    tenant: Kubectl,
    /// The member, straight at the site's kube-apiserver.
    direct: Kubectl,
    ns: String,
    space: String,
}

fn owner(site: &Site, prefix: &str, after: Option<&str>, with_workloads: bool) -> Owner {
    let env = env();
    let (account_name, group, user) = (unique("sleepers"), unique("team"), unique("sleeper"));
    env.kubectl("admin").apply(&account(&account_name, &group, after));
    let ns = unique(prefix);
    let owner = Owner {
        tenant: env.kubectl_as(&user, &[&group]),
        direct: site.tenant(&user, &[&group]),
        space: site.space(&ns),
        ns,
        user,
        account: account_name,
        group,
    };
    create_space(&owner.tenant, &owner.space);
    if with_workloads {
        owner
            .direct
            .run_with_stdin(&["apply", "-n", &owner.ns, "-f", "-"], Some(workloads()))
            .ok();
    }
    owner
}

#[test]
fn an_idle_space_sleeps_and_wakes_exactly_and_a_tenants_change_wakes_it_and_wins() {
    sleeps_and_wakes_at(&Site::management());
}

#[test]
fn an_idle_space_sleeps_and_wakes_exactly_and_a_tenants_change_wakes_it_and_wins_at_the_connected_cluster() {
    sleeps_and_wakes_at(&Site::connected());
}

/// At the management cluster the space says when it sleeps; at the connected cluster its Account's default does.
fn sleeps_and_wakes_at(site: &Site) {
    let management = env().kubectl("admin");
    let admin = site.admin();
    let by_account = site.cluster().is_some();
    let Owner {
        account: acc,
        group,
        tenant,
        direct,
        ns,
        space,
        ..
    } = owner(site, "sleepy", by_account.then_some("15s"), true);
    until("two pods", ACTS, || pods(&admin, &ns) == 2);
    if !by_account {
        set_sleep(&tenant, &space, r#"{"afterInactivity":"15s"}"#);
    }

    // Idle: asleep, every workload recorded and stopped.
    until("asleep", FALLS_ASLEEP, || phase(&tenant, &space) == "Sleeping");
    let reason = get(
        &tenant,
        &["get", "space", &space, "-o", "jsonpath={.status.sleep.reason}"],
    );
    assert_eq!(reason, "Inactivity", "{}", site.name());
    until("stopped", ACTS, || {
        let (replicas, annotations, suspend, cron_annotations) = workload_state(&admin, &ns);
        replicas == "0"
            && annotations.contains(&format!(r#""{RECORDED_REPLICAS}":"2""#))
            && suspend == "true"
            && cron_annotations.contains(r#""tenancy.loft.sh/sleep-suspend":"false""#)
    });
    until("no pods", ACTS, || pods(&admin, &ns) == 0);
    // Only the server and kube-controller-manager write while it sleeps: it stays asleep. (What is proven here is
    // that nothing happens, so a wait longer than the loop's interval is the test.)
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(phase(&tenant, &space), "Sleeping", "{}", site.name());
    assert_eq!(workload_state(&admin, &ns).0, "0");

    // Woken by request: exactly what it had.
    let woken = act(&tenant, &space, "wake").ok();
    assert!(woken.contains(r#""phase":"Active""#), "{woken}");
    until("restored", ACTS, || {
        let (replicas, annotations, suspend, cron_annotations) = workload_state(&admin, &ns);
        replicas == "2"
            && !annotations.contains(RECORDED_REPLICAS)
            && suspend == "false"
            && !cron_annotations.contains("tenancy.loft.sh/sleep-suspend")
    });
    until("two pods again", ACTS, || pods(&admin, &ns) == 2);

    // Sent to sleep by hand (no inactivity period now), then the tenant scales straight at the cluster: awake, with
    // the tenant's 3 replicas, not the 2 recorded.
    if by_account {
        management.apply(&account(&acc, &group, None));
    } else {
        set_sleep(&tenant, &space, "null");
    }
    let slept = act(&tenant, &space, "sleep").ok();
    assert!(slept.contains(r#""phase":"Sleeping""#), "{slept}");
    until("stopped again", ACTS, || workload_state(&admin, &ns).0 == "0");
    direct
        .run(&["scale", "deployment/web", "--replicas", "3", "-n", &ns])
        .ok();
    until("woken by the tenant's scale", ACTS, || {
        phase(&tenant, &space) == "Active"
    });
    until("the tenant's replicas", ACTS, || {
        let (replicas, annotations, suspend, _) = workload_state(&admin, &ns);
        replicas == "3" && !annotations.contains(RECORDED_REPLICAS) && suspend == "false"
    });
    let by = get(
        &tenant,
        &["get", "space", &space, "-o", "jsonpath={.status.sleep.lastActivityBy}"],
    );
    assert!(by.contains("Deployment/web"), "woken by {by:?}");
    assert_eq!(
        get(
            &admin,
            &["get", "deployment", "web", "-n", &ns, "-o", "jsonpath={.spec.replicas}"]
        ),
        "3"
    );
}

/// The records live on the objects: a replica that never saw the space sleep wakes it exactly, after the one that sent
/// it to sleep is killed. Every replica runs the sleep loop at once (the run's server too), and none undoes another.
#[test]
fn a_space_sent_to_sleep_by_one_replica_is_woken_exactly_by_another_started_after_the_first_was_killed() {
    let management = env().kubectl("admin");
    let Owner {
        user,
        group,
        tenant,
        ns,
        ..
    } = owner(&Site::management(), "restart", None, true);
    let groups = [group.as_str(), "system:authenticated"];
    let path = |action: &str| format!("/apis/tenancy.loft.sh/v1/spaces/{ns}/{action}");

    let first = Replica::start(&[]);
    let (code, answer) = first.request_as(&user, &groups, "POST", &path("sleep"), Some("{}"));
    assert_eq!(code, 200, "{answer}");
    until("stopped", ACTS, || workload_state(&management, &ns).0 == "0");
    drop(first);

    let second = Replica::start(&[]);
    let (code, answer) = second.request_as(&user, &groups, "POST", &path("wake"), Some("{}"));
    assert_eq!(code, 200, "{answer}");
    until("restored", ACTS, || {
        let (replicas, annotations, suspend, _) = workload_state(&management, &ns);
        replicas == "2" && !annotations.contains(RECORDED_REPLICAS) && suspend == "false"
    });
    assert_eq!(phase(&tenant, &ns), "Active");
}

#[test]
fn only_who_may_update_a_space_sends_it_to_sleep_and_a_hidden_one_is_not_found() {
    let env = env();
    let management = env.kubectl("admin");
    let Owner {
        account: acc,
        group,
        tenant: owner,
        ns,
        ..
    } = owner(&Site::management(), "guarded", None, false);

    let stranger = env.kubectl_as(&unique("stranger"), &[]);
    for action in ["sleep", "wake"] {
        let err = act(&stranger, &ns, action).err();
        assert!(err.contains("NotFound") || err.contains("not found"), "{action}: {err}");
    }
    // A viewer sees the space but may not change it.
    let viewer = unique("viewer");
    management.apply(&crate::harness::role_binding(
        &ns,
        "viewer",
        "ClusterRole/tenancy-shared-reader",
        &[&format!("User:{viewer}")],
    ));
    let viewer = env.kubectl_as(&viewer, &[]);
    eventually(ACTS, || {
        viewer.run(&["get", "space", &ns]).success.then_some(()).ok_or(())
    });
    let err = act(&viewer, &ns, "sleep").err();
    assert!(err.contains("Forbidden") || err.contains("forbidden"), "{err}");
    assert_eq!(phase(&owner, &ns), "Active");

    // Settings that do not parse: 422 naming the field, nothing changed.
    let err = owner
        .run(&[
            "patch",
            "space",
            &ns,
            "--type=merge",
            "-p",
            r#"{"spec":{"sleep":{"schedule":"0 25 * * *"}}}"#,
        ])
        .err();
    assert!(err.contains("spec.sleep.schedule") && err.contains("Invalid"), "{err}");
    let settings = get(&owner, &["get", "space", &ns, "-o", "jsonpath={.spec.sleep}"]);
    assert!(settings.is_empty(), "{settings}");
    let bad = account(&acc, &group, Some("soon"));
    let run = management.run_with_stdin(&["apply", "-f", "-"], Some(&bad));
    assert!(
        !run.success && run.stderr.contains("spec.space.sleep.afterInactivity"),
        "{}",
        run.stderr
    );
    let bad = account(&acc, &group, None).replace("templates: []", "templates: []\n    sleep: {schedule: '0 20 * *'}");
    let run = management.run_with_stdin(&["apply", "-f", "-"], Some(&bad));
    assert!(
        !run.success && run.stderr.contains("spec.space.sleep.schedule"),
        "{}",
        run.stderr
    );

    // The owner, with the plugin: asleep and awake.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let home = unique("sleep-sa");
    management.run(&["create", "namespace", &home]).ok();
    management.run(&["create", "serviceaccount", "robot", "-n", &home]).ok();
    management.apply(&crate::harness::role_binding(
        &ns,
        "robot",
        "ClusterRole/tenancy-space-admin",
        &[&format!("ServiceAccount:{home}/robot")],
    ));
    let kubeconfig = plugin::tenant_kubeconfig(dir.path(), &home, "robot");
    eventually(ACTS, || {
        plugin::space(&kubeconfig, &["sleep", &ns])
            .success
            .then_some(())
            .ok_or(())
    });
    assert_eq!(phase(&owner, &ns), "Sleeping");
    let said = plugin::space(&kubeconfig, &["wake", &ns]).ok();
    assert!(said.contains("is awake"), "{said}");
    assert_eq!(phase(&owner, &ns), "Active");
}

/// Where kube-apiserver's audit webhook reaches the server (the shared connected cluster's does, as
/// deploy/audit-policy.yaml and README set it up), a tenant's read in a sleeping space wakes it; an admin's does not.
#[test]
fn a_tenants_read_wakes_a_sleeping_space_where_the_audit_webhook_reaches_the_server() {
    let site = Site::connected();
    let admin = site.admin();
    let Owner {
        user,
        tenant,
        direct,
        ns,
        space,
        ..
    } = owner(&site, "read", None, true);
    until("two pods", ACTS, || pods(&admin, &ns) == 2);
    eventually(ACTS, || act(&tenant, &space, "sleep").success.then_some(()).ok_or(()));
    until("stopped", ACTS, || workload_state(&admin, &ns).0 == "0");
    // A cluster admin looking around (its own reads, not as a tenant) leaves it asleep.
    admin.run(&["get", "pods,deployments", "-n", &ns]).ok();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(phase(&tenant, &space), "Sleeping");

    direct.run(&["get", "pods", "-n", &ns]).ok();
    until("woken by the tenant's read", ACTS, || {
        phase(&tenant, &space) == "Active"
    });
    let by = get(
        &tenant,
        &["get", "space", &space, "-o", "jsonpath={.status.sleep.lastActivityBy}"],
    );
    assert_eq!(by, user);
    until("restored", ACTS, || workload_state(&admin, &ns).0 == "2");
}

/// A schedule sends a space to sleep at its next time (every minute here, in a time zone of its own), and the reason
/// says so.
#[test]
fn a_schedule_sends_a_space_to_sleep_at_its_time() {
    let management = env().kubectl("admin");
    let Owner { tenant, ns, .. } = owner(&Site::management(), "scheduled", None, true);
    set_sleep(&tenant, &ns, r#"{"schedule":"* * * * *","timezone":"Asia/Kolkata"}"#);
    until("asleep on schedule", Duration::from_secs(90), || {
        phase(&tenant, &ns) == "Sleeping"
    });
    let reason = get(&tenant, &["get", "space", &ns, "-o", "jsonpath={.status.sleep.reason}"]);
    assert_eq!(reason, "Schedule");
    until("stopped", ACTS, || workload_state(&management, &ns).0 == "0");
    // Without a schedule, a woken space stays awake.
    set_sleep(&tenant, &ns, "null");
    act(&tenant, &ns, "wake").ok();
    until("restored", ACTS, || workload_state(&management, &ns).0 == "2");
}
