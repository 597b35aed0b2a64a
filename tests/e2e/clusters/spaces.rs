//! Connected clusters, second part: what tenants see of them. A connected cluster X's namespace `ns` is the space
//! `X.ns` (with `spec.cluster: X`) in the management cluster's lists, watches, gets, creates and deletes, visible to
//! whoever X's RBAC lets get that namespace under the same user name and groups. While X is unreachable its spaces stay
//! listed with phase `Unknown` and writes to it are refused with a 503 naming it; when it is back, watches carry on
//! without phantom or lost events. `disconnect` takes its spaces away.
//!
//! One second control plane, connected once, serves every test here (each one costs seconds to start and CPU to run).
//! Tests that only add their own objects share it; the two that take it away (outage, disconnect) have it alone, and
//! give it back connected and up. It is disconnected and stopped once this test process exits.

use std::sync::{OnceLock, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use serde_json::Value;

use super::{cluster_becomes, tenancy, SecondControlPlane};
use crate::harness::{
    account, create_space, env, eventually, namespace, role_binding, server_readyz, space, unique, Kubectl,
    DEFAULT_SPACE_OBJECTS,
};

/// How long a list may take to show what was just granted (both clusters' caches and the RBAC there).
const SETTLE: Duration = Duration::from_secs(20);
/// A grant or revocation in X on the tenant's open watch: the local promise is a second from the change (tests/e2e/
/// watch.rs); a connected cluster's change crosses one more watch connection, so half a second of slack.
const WITHIN: Duration = Duration::from_millis(1500);
/// How long a stream that must stay silent is listened to.
const QUIET: Duration = Duration::from_millis(1500);
/// From X's kube-apiserver stopping to its spaces showing phase `Unknown`.
const UNKNOWN_WITHIN: Duration = Duration::from_secs(15);
/// From X's kube-apiserver being healthy again to its spaces showing phase `Active`.
const BACK_WITHIN: Duration = Duration::from_secs(30);
/// How long a namespace deletion may take in X: its kube-controller-manager's namespace controller empties the
/// namespace first, and on a loaded two-core machine right after X's kube-apiserver restarted (another test takes it
/// away and back) that once took over 60 s. What is ours is checked at once: Terminating right after the delete.
const GONE_WITHIN: Duration = Duration::from_secs(120);

// ===================================================================================== the shared connected cluster

/// The connected cluster these tests share.
pub(crate) struct Shared {
    /// Its name in the management cluster (a DNS label): its namespace `ns` is the space `<name>.ns`.
    pub(crate) name: String,
    pub(crate) plane: SecondControlPlane,
    /// Who may use it now: tests that only add objects read-lock it, a test that takes it away write-locks it.
    turn: RwLock<()>,
}

/// The shared connected cluster: started, connected and `Ready` on first use.
pub(crate) fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let name = unique("x");
        let audit = audit_webhook(&name);
        let plane = SecondControlPlane::start_with(&[("CONTROLPLANE_AUDIT_WEBHOOK_KUBECONFIG", &audit)]);
        plane.clean_up_after_exit(&name);
        let shared = Shared {
            name,
            plane,
            turn: RwLock::new(()),
        };
        shared.connect();
        shared
    })
}

/// A kubeconfig for kube-apiserver's audit webhook that sends the events of connected cluster `name` to the run's
/// server (`/audit/<name>`), as a platform sets it up for sleep mode: a token of the management cluster's
/// ServiceAccount `tenancy-system/tenancy-audit`, bound to ClusterRole `tenancy-audit-sink` (deploy/rbac.yaml).
fn audit_webhook(name: &str) -> String {
    let env = env();
    let admin = env.kubectl("admin");
    admin.apply(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: tenancy-audit, namespace: tenancy-system}\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: tenancy-audit-sink}\n\
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tenancy-audit-sink}\n\
subjects: [{kind: ServiceAccount, name: tenancy-audit, namespace: tenancy-system}]\n",
    );
    let token = admin
        .run(&[
            "create",
            "token",
            "tenancy-audit",
            "-n",
            "tenancy-system",
            "--duration",
            "24h",
        ])
        .ok();
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: tenancy\n  cluster:\n    server: {server}/audit/{name}\n    \
certificate-authority: {ca}\nusers:\n- name: audit\n  user:\n    token: {token}\ncontexts:\n- name: audit\n  context: \
{{cluster: tenancy, user: audit}}\ncurrent-context: audit\n",
        server = env.var("SERVER_URL"),
        ca = env.var("SERVER_CA_CERT"),
        token = token.trim(),
    );
    let path = std::env::temp_dir().join(format!("{}-audit.kubeconfig", unique("tenancy")));
    std::fs::write(&path, kubeconfig).expect("the audit webhook's kubeconfig is written");
    path.display().to_string()
}

// === impl Shared ===

impl Shared {
    /// A turn alongside the other tests that leave the cluster as it is.
    pub(crate) fn share(&self) -> RwLockReadGuard<'_, ()> {
        self.turn.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// A turn alone, for a test that takes the cluster away (and brings it back).
    pub(crate) fn alone(&self) -> RwLockWriteGuard<'_, ()> {
        self.turn.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The space that namespace `ns` of this cluster is in the management cluster.
    pub(crate) fn space(&self, ns: &str) -> String {
        format!("{}.{ns}", self.name)
    }

    /// kubectl in this cluster as its admin.
    fn admin(&self) -> Kubectl {
        self.plane.admin()
    }

    /// `tenancy-apiserver connect` of this control plane under this name: whether it succeeded, and what it said.
    fn try_connect(&self) -> (bool, String) {
        tenancy(&[
            "connect",
            "--name",
            &self.name,
            "--kubeconfig",
            &self.plane.admin_kubeconfig(),
            "--management-kubeconfig",
            env().var("KUBECONFIG_ADMIN"),
            "--space-domain",
            &self.space_domain(),
            "--space-issuer",
            "shared-ca",
        ])
    }

    /// The base domain of this cluster's spaces (its Cluster's `spec.spaceDomain`): its own, not the management's.
    pub(crate) fn space_domain(&self) -> String {
        format!("{}.test", self.name)
    }

    /// Connects this control plane under this name, then waits until the server reports the Cluster `Ready` and shows
    /// what is made there.
    #[track_caller]
    fn connect(&self) {
        let (ok, out) = self.try_connect();
        assert!(ok, "connect --name {} failed: {out}", self.name);
        cluster_becomes(&self.name, "{.status.phase}", "Ready", Duration::from_secs(60));
        self.settled();
    }

    /// Waits until the server shows what is made in this cluster now: a namespace made there becomes a space here.
    /// (Right after connect, or after its kube-apiserver restarted, its watches may be refused or expired a while.)
    #[track_caller]
    pub(crate) fn settled(&self) {
        let probe = unique("xprobe");
        self.admin().apply(&namespace(&probe));
        let space = self.space(&probe);
        eventually(Duration::from_secs(60), || {
            let run = env().kubectl("admin").run(&["get", "space", &space, "-o", "name"]);
            if run.success {
                Ok(())
            } else {
                Err(format!("{space} not yet a space: {}", run.stderr))
            }
        });
        let _ = self.admin().run(&["delete", "namespace", &probe, "--wait=false"]);
    }

    /// `tenancy-apiserver disconnect` of this cluster, on the management side only (its identity in the cluster stays,
    /// so `connect` again is quick).
    #[track_caller]
    fn disconnect(&self) {
        let (ok, out) = tenancy(&[
            "disconnect",
            "--name",
            &self.name,
            "--management-kubeconfig",
            env().var("KUBECONFIG_ADMIN"),
        ]);
        assert!(ok, "disconnect --name {} failed: {out}", self.name);
    }

    /// Whether this cluster's RBAC lets `user` in `groups` get namespace `ns`: `kubectl auth can-i get namespace/NS
    /// -n NS` there, impersonating them (the attributes kube-apiserver checks for a GET of that namespace).
    fn can_get(&self, ns: &str, user: &str, groups: &[&str]) -> bool {
        let answer =
            self.plane
                .kubectl_as(user, groups)
                .run(&["auth", "can-i", "get", &format!("namespace/{ns}"), "-n", ns]);
        match answer.stdout.trim() {
            "yes" => true,
            "no" => false,
            other => panic!(
                "`{}` in the connected cluster answered {other:?}: {}",
                answer.args, answer.stderr
            ),
        }
    }

    /// Stops this cluster's kube-apiserver; it is started again by [`Outage::end`], or when the outage is dropped (a
    /// failed test gives the other tests their cluster back).
    #[track_caller]
    pub(crate) fn outage(&self) -> Outage<'_> {
        if let Err(error) = self.plane.restart("kube-apiserver", "stop") {
            // Maybe half-stopped: start it again for the other tests.
            let _ = self.plane.restart("kube-apiserver", "start");
            panic!("{error}");
        }
        Outage {
            shared: self,
            over: false,
        }
    }
}

/// X's kube-apiserver, stopped.
pub(crate) struct Outage<'a> {
    shared: &'a Shared,
    over: bool,
}

// === impl Outage ===

impl Outage<'_> {
    /// Starts X's kube-apiserver again; returns once it is healthy.
    #[track_caller]
    pub(crate) fn end(mut self) {
        self.over = true;
        if let Err(error) = self.shared.plane.restart("kube-apiserver", "start") {
            panic!("{error}");
        }
        self.shared.settled();
    }
}

impl Drop for Outage<'_> {
    fn drop(&mut self) {
        if !self.over {
            // Never a panic here: this runs while a failed test unwinds.
            let _ = self.shared.plane.restart("kube-apiserver", "start");
        }
    }
}

/// The shared cluster, disconnected; connected again by [`Disconnected::reconnect`] or when dropped.
struct Disconnected<'a> {
    shared: &'a Shared,
    over: bool,
}

// === impl Disconnected ===

impl Disconnected<'_> {
    fn reconnect(mut self) {
        self.over = true;
        self.shared.connect();
    }
}

impl Drop for Disconnected<'_> {
    fn drop(&mut self) {
        if !self.over {
            // Never a panic here: this runs while a failed test unwinds.
            let _ = self.shared.try_connect();
        }
    }
}

// ============================================================================================================ helpers

/// YAML for a namespace with labels (`key: value` flow pairs).
fn labelled_namespace(name: &str, labels: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n---\n")
}

/// YAML for a Role in `ns` that may get namespaces (in a namespace, that is the namespace itself).
fn namespace_reader(ns: &str, name: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
rules:\n- apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"get\"]\n---\n"
    )
}

fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    names.sort();
    names
}

/// Waits until `tenant` lists exactly `want` (sorted), saying what it wanted when it does not.
#[track_caller]
fn lists_exactly(tenant: &Kubectl, who: &str, want: &[String], timeout: Duration) {
    eventually(timeout, || {
        let seen = tenant.space_names(&[]);
        if seen == want {
            Ok(())
        } else {
            Err(format!("{who} should list exactly {want:?}; listed {seen:?}"))
        }
    });
}

/// `status.phase` of space `name` as `tenant` sees it (`kubectl get space NAME -o jsonpath`), or the error.
fn phase(tenant: &Kubectl, name: &str) -> Result<String, String> {
    let run = tenant.run(&["get", "space", name, "-o", "jsonpath={.status.phase}"]);
    if run.success {
        Ok(run.stdout)
    } else {
        Err(run.stderr)
    }
}

/// Waits until `tenant` sees space `name` in phase `want`.
#[track_caller]
fn phase_becomes(tenant: &Kubectl, name: &str, want: &str, timeout: Duration, why: &str) {
    eventually(timeout, || match phase(tenant, name) {
        Ok(seen) if seen == want => Ok(()),
        seen => Err(format!("{why}: space {name} should show phase {want}; saw {seen:?}")),
    });
}

/// The CLUSTER cell of each row of `kubectl get spaces` (by the header's column offset: an empty cell is blanks).
#[track_caller]
fn cluster_cells(table: &str) -> Vec<(String, String)> {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    let at = header
        .find("CLUSTER")
        .unwrap_or_else(|| panic!("`kubectl get spaces` should have a CLUSTER column; it printed:\n{table}"));
    lines
        .map(|row| {
            let name = row.split_whitespace().next().unwrap_or_default().to_owned();
            let cell = row
                .get(at..)
                .filter(|rest| !rest.starts_with(char::is_whitespace))
                .and_then(|rest| rest.split_whitespace().next())
                .unwrap_or_default()
                .to_owned();
            (name, cell)
        })
        .collect()
}

/// What the watch lines `TYPE name phase` say of space `name`: its event types in order, and its phases in order with
/// repeats folded.
fn history(lines: &[String], name: &str) -> (Vec<String>, Vec<String>) {
    let mut kinds = Vec::new();
    let mut phases: Vec<String> = Vec::new();
    for line in lines {
        let mut fields = line.split_whitespace();
        let (Some(kind), Some(object)) = (fields.next(), fields.next()) else {
            continue;
        };
        if object != name {
            continue;
        }
        kinds.push(kind.to_owned());
        let phase = fields.next().unwrap_or_default().to_owned();
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
    }
    (kinds, phases)
}

/// Asserts what a watch open across X's outage (`lines`: its events after the initial ones, `TYPE name phase`) must
/// have said: nothing of the local space, only MODIFIED to Unknown and back to Active of X's space that stayed, and
/// exactly one ADDED of the namespace made in X afterwards.
#[track_caller]
fn assert_outage_seen_right(what: &str, lines: &[String], local: &str, remote: &str, fresh: &str) {
    let (kinds, _) = history(lines, local);
    assert!(
        kinds.is_empty(),
        "{what}: the local space {local} did not change, so no event for it; saw {kinds:?}; all events: {lines:?}"
    );
    let (kinds, phases) = history(lines, remote);
    assert!(
        kinds.iter().all(|k| k == "MODIFIED"),
        "{what}: {remote} stayed (X was only unreachable), so only MODIFIED events for it, no ADDED or DELETED; \
saw {kinds:?}; all events: {lines:?}"
    );
    assert_eq!(
        phases,
        ["Unknown", "Active"],
        "{what}: {remote} should go to phase Unknown while X is down, then back to Active; all events: {lines:?}"
    );
    let (kinds, _) = history(lines, fresh);
    assert_eq!(
        kinds.iter().filter(|k| *k != "MODIFIED").collect::<Vec<_>>(),
        ["ADDED"],
        "{what}: the namespace made in X after the outage should come as exactly one ADDED {fresh}, no DELETED; \
all events: {lines:?}"
    );
}

// ============================================================================================================== tests

#[test]
fn a_connected_clusters_namespaces_are_spaces_named_cluster_dot_namespace_seen_by_its_rbac() {
    let x = shared();
    let _turn = x.share();
    let env = env();
    let (user, group) = (unique("cu"), unique("cg"));
    let (by_user, by_group, hidden, local) = (unique("xa"), unique("xb"), unique("xc"), unique("xl"));
    // In X: one namespace the user may get through a RoleBinding to view, one through a Role of their group, one
    // bound to someone else only.
    x.admin().apply(
        &[
            labelled_namespace(&by_user, "tier: web"),
            role_binding(&by_user, "access", "ClusterRole/view", &[&format!("User:{user}")]),
            labelled_namespace(&by_group, "tier: db"),
            namespace_reader(&by_group, "namespace-reader"),
            role_binding(
                &by_group,
                "access",
                "Role/namespace-reader",
                &[&format!("Group:{group}")],
            ),
            namespace(&hidden),
            role_binding(
                &hidden,
                "access",
                "ClusterRole/admin",
                &[&format!("User:{}", unique("someone-else"))],
            ),
        ]
        .concat(),
    );
    // In the management cluster: one local space, labelled like the first.
    env.kubectl("admin").apply(
        &[
            labelled_namespace(&local, "tier: web"),
            role_binding(&local, "access", "ClusterRole/view", &[&format!("User:{user}")]),
        ]
        .concat(),
    );
    let tenant = env.kubectl_as(&user, &[&group]);
    let (remote_user, remote_group, remote_hidden) = (x.space(&by_user), x.space(&by_group), x.space(&hidden));

    // The list merges both clusters, by each cluster's RBAC.
    let all = sorted(&[&local, &remote_user, &remote_group]);
    lists_exactly(&tenant, &format!("{user} in {group}"), &all, SETTLE);
    // Cross-checked with X's own answer for the same user name and groups.
    let listed = tenant.space_names(&[]);
    for ns in [&by_user, &by_group, &hidden] {
        let can = x.can_get(ns, &user, &[&group]);
        let shown = listed.contains(&x.space(ns));
        assert_eq!(
            shown,
            can,
            "{user} in {group} should list {} exactly when `kubectl auth can-i get namespace/{ns} --as {user} \
--as-group {group}` in the connected cluster says yes (it says {}); listed: {listed:?}",
            x.space(ns),
            if can { "yes" } else { "no" }
        );
    }
    assert!(
        x.can_get(&by_user, &user, &[&group]) && !x.can_get(&hidden, &user, &[&group]),
        "the setup in X itself is wrong"
    );

    // The object: named cluster.namespace, with spec.cluster; a local space has none.
    let object: Value =
        serde_json::from_str(&tenant.run(&["get", "space", &remote_user, "-o", "json"]).ok()).expect("a Space as JSON");
    assert_eq!(object["metadata"]["name"], remote_user.as_str(), "{object}");
    assert_eq!(
        object["spec"]["cluster"],
        x.name.as_str(),
        "space {remote_user} should have spec.cluster: {}; got {object}",
        x.name
    );
    assert_eq!(object["status"]["phase"], "Active", "{object}");
    assert_eq!(
        object["metadata"]["labels"]["tier"], "web",
        "the namespace's labels in X: {object}"
    );
    let object: Value =
        serde_json::from_str(&tenant.run(&["get", "space", &local, "-o", "json"]).ok()).expect("a Space as JSON");
    assert!(
        object["spec"].get("cluster").is_none(),
        "the local space {local} should have no spec.cluster: {object}"
    );
    // A namespace of X the user may not get is not found, exactly like one that does not exist.
    let err = tenant.run(&["get", "space", &remote_hidden]).err();
    assert!(
        err.contains("NotFound"),
        "{remote_hidden} (X's RBAC says no) should be NotFound: {err}"
    );

    // kubectl's table has a CLUSTER column: X for X's spaces, empty for local ones.
    let table = tenant.run(&["get", "spaces"]).ok();
    let cells = cluster_cells(&table);
    for (name, want) in [
        (&remote_user, x.name.as_str()),
        (&remote_group, x.name.as_str()),
        (&local, ""),
    ] {
        let cell = cells.iter().find(|(row, _)| row == name).map(|(_, cell)| cell.as_str());
        assert_eq!(
            cell,
            Some(want),
            "the CLUSTER cell of {name} should be {want:?}; the table:\n{table}"
        );
    }

    // Field selectors on spec.cluster: one cluster's spaces, or (empty) only local ones.
    let only_x = tenant.space_names(&["--field-selector", &format!("spec.cluster={}", x.name)]);
    assert_eq!(
        only_x,
        sorted(&[&remote_user, &remote_group]),
        "--field-selector spec.cluster={} should list only X's spaces",
        x.name
    );
    let only_local = tenant.space_names(&["--field-selector", "spec.cluster="]);
    assert_eq!(
        only_local,
        std::slice::from_ref(&local),
        "--field-selector spec.cluster= (empty) should list only local spaces"
    );
    // Label selectors, on the namespaces' labels in each cluster.
    assert_eq!(
        tenant.space_names(&["-l", "tier=web"]),
        sorted(&[&local, &remote_user]),
        "-l tier=web: the local namespace and X's namespace {by_user} carry it"
    );
    assert_eq!(
        tenant.space_names(&["-l", "tier=db"]),
        std::slice::from_ref(&remote_group),
        "-l tier=db: only X's namespace {by_group} carries it"
    );

    // A real login too: a ServiceAccount token of the management cluster is the user
    // system:serviceaccount:NS:NAME, which a RoleBinding in X can name.
    let (sa_ns, for_sa) = (unique("xsa"), unique("xs"));
    env.kubectl("admin").apply(&format!(
        "{}apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: tenant\n  namespace: {sa_ns}\n",
        namespace(&sa_ns)
    ));
    x.admin().apply(
        &[
            namespace(&for_sa),
            role_binding(
                &for_sa,
                "access",
                "ClusterRole/view",
                &[&format!("ServiceAccount:{sa_ns}/tenant")],
            ),
        ]
        .concat(),
    );
    let token = env
        .kubectl("admin")
        .run(&["create", "token", "tenant", "-n", &sa_ns])
        .ok();
    let robot = env.kubectl_token(token.trim());
    let sa_user = format!("system:serviceaccount:{sa_ns}:tenant");
    lists_exactly(&robot, &sa_user, &[x.space(&for_sa)], SETTLE);
    assert!(
        x.can_get(
            &for_sa,
            &sa_user,
            &["system:serviceaccounts", &format!("system:serviceaccounts:{sa_ns}")]
        ),
        "the setup in X itself is wrong"
    );
}

#[test]
fn grants_and_revokes_in_a_connected_cluster_reach_the_open_watch_within_a_second() {
    let x = shared();
    let _turn = x.share();
    let env = env();
    let admin = env.kubectl("admin");
    let (user, group, bystander) = (unique("cu"), unique("cg"), unique("cu-bystander"));
    let (warmup, direct, by_group) = (unique("xw-warm"), unique("xw-direct"), unique("xw-group"));
    admin.apply(&namespace(&warmup));
    x.admin().apply(
        &[
            namespace(&direct),
            namespace(&by_group),
            namespace_reader(&by_group, "namespace-reader"),
        ]
        .concat(),
    );
    let (remote_direct, remote_group) = (x.space(&direct), x.space(&by_group));
    let mut watch = env.kubectl_as(&user, &[&group]).watch_events("spaces");
    let mut other = env.kubectl_as(&bystander, &[&unique("cg")]).watch_events("spaces");

    // Warm-up with a local grant: proves the watch is established before anything is timed.
    admin.apply(&role_binding(
        &warmup,
        "access",
        "ClusterRole/view",
        &[&format!("User:{user}")],
    ));
    watch.expect_next(&format!("ADDED {warmup}"), SETTLE);

    // A RoleBinding in X to the user.
    x.admin().apply(&role_binding(
        &direct,
        "direct",
        "ClusterRole/admin",
        &[&format!("User:{user}")],
    ));
    watch.expect_next(&format!("ADDED {remote_direct}"), WITHIN);
    // A RoleBinding in X of a Role that may get the namespace, to the user's group.
    x.admin().apply(&role_binding(
        &by_group,
        "by-group",
        "Role/namespace-reader",
        &[&format!("Group:{group}")],
    ));
    watch.expect_next(&format!("ADDED {remote_group}"), WITHIN);

    // Revoked in X: the RoleBinding deleted.
    x.admin().run(&["delete", "rolebinding", "direct", "-n", &direct]).ok();
    watch.expect_next(&format!("DELETED {remote_direct}"), WITHIN);
    // The namespace deleted in X: Terminating, then gone (X's namespace controller removes its RoleBindings first).
    x.admin().run(&["delete", "namespace", &by_group, "--wait=false"]).ok();
    watch.expect_next(&format!("MODIFIED {remote_group}"), WITHIN);
    watch.expect_next(&format!("DELETED {remote_group}"), GONE_WITHIN);

    assert_eq!(
        watch.rest(QUIET),
        Vec::<String>::new(),
        "nothing else for {user}; all so far: {:?}",
        watch.seen
    );
    assert_eq!(
        other.rest(QUIET),
        Vec::<String>::new(),
        "the bystander saw someone else's spaces"
    );
}

#[test]
fn a_tenant_creates_and_deletes_a_space_in_a_connected_cluster_within_the_accounts_limit_across_clusters() {
    let x = shared();
    let _turn = x.share();
    let env = env();
    let admin = env.kubectl("admin");
    let (acc, group, user, template) = (unique("xacct"), unique("cg"), unique("cu"), unique("xtemplate"));
    // An Account of limit 2 with the default template and one of its own (a ConfigMap with its parameters).
    admin.apply(&format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata:\n  name: {template}\nspec:\n  objects:\n  \
- {{apiVersion: v1, kind: ConfigMap, metadata: {{name: space-info}}, data: {{account: \"${{ACCOUNT}}\", creator: \"${{CREATOR}}\"}}}}\n\
---\n{}",
        account(&acc, &group, 2, Some(&["default", &template]), "")
    ));
    let tenant = env.kubectl_as(&user, &[&group]);
    let x_admin = x.admin();

    // Plain kubectl create of a Space named X.ns makes namespace ns in X.
    let ns = unique("xmine");
    let name = x.space(&ns);
    create_space(&tenant, &name);
    let status = tenant
        .run(&[
            "get",
            "space",
            &name,
            "-o",
            "jsonpath={.spec.cluster} {.spec.account} {.status.phase}",
        ])
        .ok();
    assert_eq!(
        status,
        format!("{} {acc} Active", x.name),
        "right after the create, {user} should get {name} with spec.cluster, spec.account and phase \
(`cluster account phase`)"
    );
    let label = x_admin
        .run(&[
            "get",
            "namespace",
            &ns,
            "-o",
            "jsonpath={.metadata.labels.tenancy\\.loft\\.sh/account}",
        ])
        .ok();
    assert_eq!(
        label, acc,
        "namespace {ns} in X should carry the label tenancy.loft.sh/account={acc}"
    );
    let objects = x_admin
        .run(&[
            "get",
            "resourcequota,limitrange,networkpolicy,rolebinding,configmap",
            "-n",
            &ns,
            "-o",
            "name",
        ])
        .ok();
    for object in DEFAULT_SPACE_OBJECTS.iter().chain(&["configmap/space-info"]) {
        assert!(
            objects.contains(object),
            "{object} (owner binding or a template's object) missing from namespace {ns} in X: {objects}"
        );
    }
    let info = x_admin
        .run(&[
            "get",
            "configmap",
            "space-info",
            "-n",
            &ns,
            "-o",
            "jsonpath={.data.account} {.data.creator}",
        ])
        .ok();
    assert_eq!(
        info,
        format!("{acc} {user}"),
        "the template's parameters ${{ACCOUNT}} ${{CREATOR}}"
    );
    let can = x
        .plane
        .kubectl_as(&user, &[&group])
        .run(&["auth", "can-i", "create", "deployments", "-n", &ns]);
    assert_eq!(
        can.stdout.trim(),
        "yes",
        "the owner binding in X should let {user} work in {ns} there: {}",
        can.stderr
    );
    let here = admin.run(&["get", "namespace", &ns]);
    assert!(
        !here.success && here.stderr.contains("NotFound"),
        "no namespace {ns} in the management cluster: {}{}",
        here.stdout,
        here.stderr
    );

    // The limit of 2 holds across clusters: with one local space as the second, a third is refused in either.
    let local = unique("xmine-local");
    create_space(&tenant, &local);
    let (third_x, third_local) = (unique("xthird"), unique("xthird-local"));
    for (third, where_) in [(x.space(&third_x), "in X"), (third_local.clone(), "locally")] {
        let err = tenant
            .run_with_stdin(&["create", "-f", "-"], Some(&space(&third)))
            .err();
        assert!(
            err.contains("Forbidden") && err.contains("limit of 2"),
            "a third space {where_} ({third}) should be refused (Forbidden, \"limit of 2\": one space in X and one \
local count against it): {err}"
        );
    }
    let made = x_admin.run(&["get", "namespace", &third_x]);
    assert!(
        made.stderr.contains("NotFound"),
        "the refused {third_x} must not exist in X: {}",
        made.stdout
    );
    let made = admin.run(&["get", "namespace", &third_local]);
    assert!(
        made.stderr.contains("NotFound"),
        "the refused {third_local} must not exist locally: {}",
        made.stdout
    );

    // kubectl delete space X.ns deletes namespace ns in X: Terminating, then gone.
    tenant.run(&["delete", "space", &name, "--wait=false"]).ok();
    let right_after = x_admin.run(&["get", "namespace", &ns, "-o", "jsonpath={.status.phase}"]);
    assert!(
        (right_after.success && right_after.stdout == "Terminating") || right_after.stderr.contains("NotFound"),
        "right after `kubectl delete space {name}`, namespace {ns} in X should be Terminating (or already gone): \
{} {}",
        right_after.stdout,
        right_after.stderr
    );
    eventually(GONE_WITHIN, || {
        let run = x_admin.run(&["get", "namespace", &ns, "-o", "name"]);
        if run.stderr.contains("NotFound") {
            Ok(())
        } else {
            Err(format!(
                "namespace {ns} in X should be gone: {} {}",
                run.stdout, run.stderr
            ))
        }
    });
    let err = tenant.run(&["get", "space", &name]).err();
    assert!(
        err.contains("NotFound"),
        "{name} should be NotFound once deleted: {err}"
    );

    // Its place under the limit is free again; this time with spec.cluster and spec.account spelled out.
    let again = unique("xagain");
    let manifest = format!(
        "{}spec:\n  cluster: {}\n  account: {acc}\n",
        space(&x.space(&again)),
        x.name
    );
    eventually(SETTLE, || {
        let run = tenant.run_with_stdin(&["create", "-f", "-"], Some(&manifest));
        if run.success {
            Ok(())
        } else {
            Err(format!(
                "with {name} deleted, {user} should create {} (spec.cluster and spec.account set): {}",
                x.space(&again),
                run.stderr
            ))
        }
    });
    let owner = x_admin.run(&["get", "rolebinding", "tenancy-owner", "-n", &again, "-o", "name"]);
    assert!(
        owner.success,
        "namespace {again} in X with its owner binding: {}",
        owner.stderr
    );
}

#[test]
fn a_connected_cluster_that_goes_away_shows_unknown_refuses_writes_with_503_and_comes_back_without_phantom_events() {
    let x = shared();
    let _alone = x.alone();
    let env = env();
    let (user, group, acc) = (unique("cu"), unique("cg"), unique("xacct"));
    let (there, here, fresh) = (unique("xo-there"), unique("xo-here"), unique("xo-fresh"));
    x.admin().apply(
        &[
            namespace(&there),
            role_binding(&there, "access", "ClusterRole/view", &[&format!("User:{user}")]),
        ]
        .concat(),
    );
    env.kubectl("admin").apply(
        &[
            namespace(&here),
            role_binding(&here, "access", "ClusterRole/view", &[&format!("User:{user}")]),
            account(&acc, &group, 5, Some(&[]), ""),
        ]
        .concat(),
    );
    let tenant = env.kubectl_as(&user, &[&group]);
    let (remote, remote_fresh) = (x.space(&there), x.space(&fresh));
    lists_exactly(
        &tenant,
        &format!("{user} before the outage"),
        &sorted(&[&here, &remote]),
        SETTLE,
    );

    // A list's position before the outage, to resume a watch from afterwards.
    let (code, body) = env.apiserver_request_as(&user, &[&group], "GET", "/apis/tenancy.loft.sh/v1/spaces", None);
    assert_eq!(code, 200, "{body}");
    let list: Value = serde_json::from_str(&body).expect("a SpaceList");
    let before = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("the list's resourceVersion")
        .to_owned();
    // A watch open across the outage.
    let mut watch = tenant.watch_events_with("spaces", " {.object.status.phase}");
    let mut initial = watch.next_lines(2, SETTLE);
    initial.sort();
    let mut want = vec![format!("ADDED {here} Active"), format!("ADDED {remote} Active")];
    want.sort();
    assert_eq!(initial, want, "the watch's initial events");
    let from = watch.seen.len();

    // X's kube-apiserver goes away.
    let outage = x.outage();
    phase_becomes(
        &tenant,
        &remote,
        "Unknown",
        UNKNOWN_WITHIN,
        "X's kube-apiserver is stopped",
    );
    lists_exactly(
        &tenant,
        &format!("{user} while X is down (its spaces stay listed)"),
        &sorted(&[&here, &remote]),
        Duration::ZERO,
    );
    assert_eq!(
        phase(&tenant, &here),
        Ok("Active".to_owned()),
        "the local space while X is down"
    );
    let (code, body) = server_readyz();
    assert_eq!(
        (code, body.as_str()),
        (200, "ok"),
        "the server's /readyz while X is down"
    );
    // A create in X: 503 ServiceUnavailable naming X (besides in the space's own name).
    let doomed = x.space(&unique("xo-doomed"));
    let (code, body) = env.apiserver_request_as(
        &user,
        &[&group],
        "POST",
        "/apis/tenancy.loft.sh/v1/spaces",
        Some(&format!(
            r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{doomed}"}}}}"#
        )),
    );
    let status: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let message = status["message"].as_str().unwrap_or_default().replace(&doomed, "");
    assert!(
        code == 503 && status["reason"] == "ServiceUnavailable" && message.contains(&x.name),
        "creating {doomed} while X is down should answer 503 ServiceUnavailable with a message naming the cluster {} \
(not only in the space's name); got {code}: {body}",
        x.name
    );
    let err = tenant
        .run_with_stdin(&["create", "-f", "-"], Some(&space(&doomed)))
        .err();
    assert!(
        err.contains("ServiceUnavailable") && err.replace(&doomed, "").contains(&x.name),
        "kubectl create of {doomed} while X is down should say ServiceUnavailable and name the cluster {}: {err}",
        x.name
    );

    // X comes back: Active again; a namespace made in X now arrives once.
    outage.end();
    phase_becomes(
        &tenant,
        &remote,
        "Active",
        BACK_WITHIN,
        "X's kube-apiserver is healthy again",
    );
    x.admin().apply(
        &[
            namespace(&fresh),
            role_binding(&fresh, "access", "ClusterRole/view", &[&format!("User:{user}")]),
        ]
        .concat(),
    );
    watch.expect_eventually(&format!("ADDED {remote_fresh} Active"), SETTLE);
    let rest = watch.rest(QUIET);
    let mut seen = watch.seen[from..].to_vec();
    seen.extend(rest);
    assert_outage_seen_right("the watch open across X's outage", &seen, &here, &remote, &remote_fresh);

    // The same from a watch resumed at the list's position from before the outage.
    let (code, body) = env.apiserver_request_as(
        &user,
        &[&group],
        "GET",
        &format!("/apis/tenancy.loft.sh/v1/spaces?watch=1&resourceVersion={before}&timeoutSeconds=2"),
        None,
    );
    assert_eq!(code, 200, "the watch resumed at {before}: {body}");
    let resumed: Vec<String> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let event: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not an event ({e}): {l}"));
            format!(
                "{} {} {}",
                event["type"].as_str().unwrap_or("?"),
                event["object"]["metadata"]["name"].as_str().unwrap_or_default(),
                event["object"]["status"]["phase"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_outage_seen_right(
        &format!("the watch resumed at {before} (a list's position before the outage)"),
        &resumed,
        &here,
        &remote,
        &remote_fresh,
    );
}

#[test]
fn disconnect_takes_a_clusters_spaces_out_of_lists_and_connect_brings_them_back() {
    let x = shared();
    let _alone = x.alone();
    let env = env();
    let (user, group) = (unique("cu"), unique("cg"));
    let (there, here) = (unique("xd-there"), unique("xd-here"));
    x.admin().apply(
        &[
            namespace(&there),
            role_binding(&there, "access", "ClusterRole/view", &[&format!("User:{user}")]),
        ]
        .concat(),
    );
    env.kubectl("admin").apply(
        &[
            namespace(&here),
            role_binding(&here, "access", "ClusterRole/view", &[&format!("User:{user}")]),
        ]
        .concat(),
    );
    let tenant = env.kubectl_as(&user, &[&group]);
    let remote = x.space(&there);
    lists_exactly(
        &tenant,
        &format!("{user} while X is connected"),
        &sorted(&[&here, &remote]),
        SETTLE,
    );
    let mut watch = tenant.watch_events("spaces");
    let mut initial = watch.next_lines(2, SETTLE);
    initial.sort();
    let mut want = vec![format!("ADDED {here}"), format!("ADDED {remote}")];
    want.sort();
    assert_eq!(initial, want, "the watch's initial events");

    x.disconnect();
    let disconnected = Disconnected { shared: x, over: false };
    lists_exactly(
        &tenant,
        &format!("{user} once X is disconnected"),
        std::slice::from_ref(&here),
        SETTLE,
    );
    watch.expect_eventually(&format!("DELETED {remote}"), SETTLE);
    let err = tenant.run(&["get", "space", &remote]).err();
    assert!(
        err.contains("NotFound"),
        "{remote} should be NotFound once X is disconnected: {err}"
    );
    assert!(
        !watch.seen.contains(&format!("DELETED {here}")),
        "the local space {here} stays: {:?}",
        watch.seen
    );

    // Connected again (the other tests share it), its spaces are back.
    disconnected.reconnect();
    lists_exactly(
        &tenant,
        &format!("{user} once X is connected again"),
        &sorted(&[&here, &remote]),
        SETTLE,
    );
    watch.expect_eventually(&format!("ADDED {remote}"), SETTLE);
}
