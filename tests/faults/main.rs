//! Faults, end to end: kube-apiserver and etcd restarted under the running server, watches cut by the restart and
//! resumed, and watches dropped mid-stream by their clients. The server answers from its cache, so while the control
//! plane is gone it keeps serving what it knows, and once it is back every change flows again — none lost, none
//! invented, none repeated.
//!
//! These tests take the run's shared control plane down, so they run as their own test binary (cargo runs test
//! binaries one after another) and one at a time inside it ([`serial`]). Each leaves the environment as it found it —
//! every component running, kube-apiserver ready, the APIService Available — even when an assertion fails, because
//! the suites after this one (shared, client-go) use the same environment.

#[path = "../e2e/harness.rs"]
#[allow(
    dead_code,
    reason = "the harness serves several test binaries; this one uses part of it"
)]
mod harness;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use tenancy_apiserver::state::log::Position;

use harness::{
    account, create_space, curl, env, eventually, front_proxy, namespace, role_binding, server_readyz, summary, unique,
    RawWatch,
};

/// How long the control plane may take to be fully back (ready, APIService Available, spaces served).
const HEAL: Duration = Duration::from_secs(120);
/// How long a change may take to reach the tenant's list once the control plane is back (reflectors resync).
const CATCH_UP: Duration = Duration::from_secs(60);
/// How long a stream that must stay silent is listened to.
const QUIET: Duration = Duration::from_millis(1500);
/// SIGTERM grace before restart.sh kills a component (kube-apiserver holds open watches until its grace runs out).
const STOP_GRACE: &str = "5";
/// The identity whose requests the server lets through without asking kube-apiserver (see src/authz.rs).
const MASTERS: &str = "system:masters";

// ------------------------------------------------------------------------------------------------- the environment

/// One test at a time: each takes the shared control plane down or measures the server's memory.
fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/controlplane/restart.sh STATE_DIR component action`.
fn control_plane(component: &str, action: &str) -> Result<(), String> {
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(repo().join("tests/controlplane/restart.sh"))
        .arg(env().var("STATE_DIR"))
        .args([component, action])
        .env("CONTROLPLANE_STOP_GRACE", STOP_GRACE)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running restart.sh: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!(
        "restart.sh {component} {action} ({:.1}s): {}",
        started.elapsed().as_secs_f64(),
        stderr.trim()
    );
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("restart.sh {component} {action} failed: {stderr}"))
    }
}

/// Whether the process in PID_DIR/NAME.pid is running.
fn component_running(name: &str) -> Result<u32, String> {
    let file = env().path("PID_DIR").join(format!("{name}.pid"));
    let pid: u32 = std::fs::read_to_string(&file)
        .map_err(|e| format!("{}: {e}", file.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| format!("{name} ({pid}) is gone"))?;
    if status.lines().any(|l| l.starts_with("State:") && l.contains("zombie")) {
        return Err(format!("{name} ({pid}) is a zombie"));
    }
    Ok(pid)
}

/// kube-apiserver's `/readyz` through kubectl as admin.
fn apiserver_ready() -> Result<(), String> {
    let run = env()
        .kubectl("admin")
        .run(&["--request-timeout", "5s", "get", "--raw", "/readyz"]);
    if run.success && run.stdout.trim() == "ok" {
        Ok(())
    } else {
        Err(format!(
            "kube-apiserver /readyz: {} {}",
            run.stdout.trim(),
            run.stderr.trim()
        ))
    }
}

/// Everything the suites after this one need: every component running, kube-apiserver ready, the APIService
/// Available, the server ready and spaces served through the aggregator. Returns how long it took.
fn environment_healthy(timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    let check = || -> Result<(), String> {
        for name in ["etcd", "kube-apiserver", "kube-controller-manager", "tenancy-apiserver"] {
            component_running(name)?;
        }
        apiserver_ready()?;
        let admin = env().kubectl("admin");
        let available = admin.run(&[
            "--request-timeout",
            "5s",
            "get",
            "apiservice",
            "v1.tenancy.loft.sh",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Available\")].status}",
        ]);
        if available.stdout.trim() != "True" {
            return Err(format!(
                "APIService Available={:?} {}",
                available.stdout,
                available.stderr.trim()
            ));
        }
        match server_readyz() {
            (200, body) if body == "ok" => {}
            (code, body) => return Err(format!("server /readyz: {code} {body}")),
        }
        quota_controller_answers()?;
        let spaces = admin.run(&["--request-timeout", "5s", "get", "spaces", "-o", "name"]);
        if !spaces.success || !spaces.stdout.contains("space.tenancy.loft.sh/kube-system") {
            return Err(format!("admin's spaces: {} {}", spaces.stdout, spaces.stderr.trim()));
        }
        Ok(())
    };
    loop {
        match check() {
            Ok(()) => return Ok(started.elapsed()),
            Err(seen) if started.elapsed() >= timeout => {
                return Err(format!("environment not healthy within {timeout:?}: {seen}"))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Whether kube-controller-manager's quota controller puts a ResourceQuota's limits in force again (it copies
/// `spec.hard` into `status.hard`): after kube-apiserver or etcd comes back, its informers may take a while longer than
/// kube-apiserver's readiness, and every space create waits for its share to be in force.
fn quota_controller_answers() -> Result<(), String> {
    let admin = env().kubectl("admin");
    // A new value each time, so that only kube-controller-manager's copy of this very spec can match it.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let pods = (nanos % 1_000_000 + 1000).to_string();
    let probe = format!(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {{name: faults-probe, namespace: default}}\nspec: {{hard: {{pods: \"{pods}\"}}}}\n"
    );
    let applied = admin.run_with_stdin(&["--request-timeout", "5s", "apply", "-f", "-"], Some(&probe));
    if !applied.success {
        return Err(format!("applying the quota probe: {}", applied.stderr.trim()));
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let hard = admin
            .run(&[
                "--request-timeout",
                "5s",
                "get",
                "resourcequota",
                "faults-probe",
                "-n",
                "default",
                "-o",
                "jsonpath={.status.hard.pods}",
            ])
            .stdout;
        if hard.trim() == pods {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "kube-controller-manager has not put the quota probe in force: {hard:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[track_caller]
fn assert_environment_healthy() {
    if let Err(e) = environment_healthy(HEAL) {
        panic!("{e}");
    }
}

/// A component taken down; brought back (and the environment waited on) when ended or dropped, so a failing test
/// still leaves the environment healthy.
struct Outage {
    component: &'static str,
    down: bool,
    started: Instant,
}

impl Outage {
    #[track_caller]
    fn begin(component: &'static str) -> Self {
        let outage = Outage {
            component,
            down: true,
            started: Instant::now(),
        };
        if let Err(e) = control_plane(component, "stop") {
            panic!("{e}");
        }
        outage
    }

    /// Starts the component again and waits until the whole environment is healthy.
    #[track_caller]
    fn end(&mut self) {
        self.down = false;
        let result = control_plane(self.component, "start").and_then(|()| environment_healthy(HEAL));
        match result {
            Ok(healed) => eprintln!(
                "{} was down {:.1}s; environment healthy {:.1}s after its start",
                self.component,
                self.started.elapsed().as_secs_f64() - healed.as_secs_f64(),
                healed.as_secs_f64()
            ),
            Err(e) => panic!("{e}"),
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if self.down {
            if let Err(e) = control_plane(self.component, "start").and_then(|()| environment_healthy(HEAL)) {
                eprintln!(
                    "could not restore the environment after {} went down: {e}",
                    self.component
                );
            }
        }
    }
}

/// Namespaces made for a test, deleted when it ends (after any [`Outage`] declared later has been ended).
struct Namespaces(Vec<String>);

impl Namespaces {
    fn create(prefix: &str, count: usize) -> Self {
        let mut names: Vec<String> = (0..count).map(|_| unique(prefix)).collect();
        names.sort();
        env()
            .kubectl("admin")
            .apply(&names.iter().map(|n| namespace(n)).collect::<String>());
        Namespaces(names)
    }
}

impl std::ops::Index<usize> for Namespaces {
    type Output = String;
    fn index(&self, i: usize) -> &String {
        &self.0[i]
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        let mut args = vec!["delete", "namespace", "--wait=false", "--ignore-not-found"];
        args.extend(self.0.iter().map(String::as_str));
        let _ = env().kubectl("admin").run(&args);
    }
}

// --------------------------------------------------------------------------------------------------------- tenants

/// A unique user (and group) holding `view` in the namespaces it is granted, and nothing else.
struct Tenant {
    user: String,
    group: String,
}

impl Tenant {
    fn new(prefix: &str) -> Self {
        Tenant {
            user: unique(prefix),
            group: unique(&format!("{prefix}-group")),
        }
    }

    #[track_caller]
    fn grant(&self, ns: &str) {
        env().kubectl("admin").apply(&role_binding(
            ns,
            "faults-view",
            "ClusterRole/view",
            &[&format!("User:{}", self.user)],
        ));
    }

    #[track_caller]
    fn revoke(&self, ns: &str) {
        env()
            .kubectl("admin")
            .run(&["delete", "rolebinding", "faults-view", "-n", ns])
            .ok();
    }

    /// The tenant's spaces through kube-apiserver, sorted.
    fn spaces(&self) -> Result<Vec<String>, String> {
        let run = env().kubectl_as(&self.user, &[&self.group]).run(&[
            "--request-timeout",
            "5s",
            "get",
            "spaces",
            "-o",
            "name",
        ]);
        if !run.success {
            return Err(format!("`{}` failed: {}", run.args, run.stderr.trim()));
        }
        let mut names: Vec<String> = run
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("space.tenancy.loft.sh/"))
            .map(str::to_owned)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Waits until the tenant lists exactly `want`.
    #[track_caller]
    fn expect_spaces(&self, want: &[&String], timeout: Duration) {
        let mut want: Vec<String> = want.iter().map(|s| (*s).clone()).collect();
        want.sort();
        eventually(timeout, || match self.spaces() {
            Ok(seen) if seen == want => Ok(()),
            Ok(seen) => Err(format!("{} listed {seen:?}, want {want:?}", self.user)),
            Err(e) => Err(e),
        });
    }

    /// curl arguments that impersonate the tenant through kube-apiserver.
    fn through_apiserver(&self) -> Vec<String> {
        env().apiserver_as(&self.user, &["system:authenticated", &self.group])
    }
}

// -------------------------------------------------------------------------------------- straight at the server

/// A request straight at the server's port as a `system:masters` member (authorized without kube-apiserver).
fn direct(path_and_query: &str) -> (u16, String) {
    let mut args = front_proxy("faults-probe", &[MASTERS]);
    args.extend(["--max-time".to_owned(), "5".to_owned()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&format!("{}{path_and_query}", env().var("SERVER_URL")), &args)
}

/// The server's view of kube-apiserver from its `/metrics`: up, seconds stale, and watch errors over all kinds.
fn backend_metrics() -> Result<(f64, f64, f64), String> {
    let (code, body) = direct("/metrics");
    if code != 200 {
        return Err(format!("/metrics: {code} {body}"));
    }
    let sum = |name: &str| -> f64 {
        body.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    Ok((
        sum("tenancy_apiserver_backend_up "),
        sum("tenancy_apiserver_cache_stale_seconds "),
        sum("tenancy_apiserver_watch_errors_total{"),
    ))
}

/// Names of a SpaceList body, sorted.
fn item_names(body: &str) -> Result<Vec<String>, String> {
    let list: Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    let items = list["items"].as_array().ok_or_else(|| format!("no items: {body}"))?;
    let mut names: Vec<String> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Every space, straight from the server's cache.
fn direct_space_names() -> Result<Vec<String>, String> {
    match direct("/apis/tenancy.loft.sh/v1/spaces") {
        (200, body) => item_names(&body),
        (code, body) => Err(format!("direct list: {code} {body}")),
    }
}

/// The server's cache holds exactly the cluster's namespaces: none lost, none invented.
#[track_caller]
fn assert_cache_matches_the_cluster() {
    eventually(CATCH_UP, || {
        let run = env().kubectl("admin").run(&["get", "namespaces", "-o", "name"]);
        if !run.success {
            return Err(format!("kubectl get namespaces: {}", run.stderr));
        }
        let mut cluster: Vec<String> = run
            .stdout
            .lines()
            .filter_map(|l| l.strip_prefix("namespace/"))
            .map(str::to_owned)
            .collect();
        cluster.sort();
        let cached = direct_space_names()?;
        if cached == cluster {
            Ok(())
        } else {
            let lost: Vec<&String> = cluster.iter().filter(|n| !cached.contains(n)).collect();
            let invented: Vec<&String> = cached.iter().filter(|n| !cluster.contains(n)).collect();
            Err(format!("lost {lost:?}, invented {invented:?}"))
        }
    });
}

/// Lines of the server's log containing `text`.
fn server_log_count(text: &str) -> usize {
    std::fs::read_to_string(env().path("LOG_DIR").join("tenancy-apiserver.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(text))
        .count()
}

/// Polls the server's `/readyz` in the background until finished; every non-200 is kept.
struct ReadyzMonitor {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<(u32, Vec<String>)>>,
}

impl ReadyzMonitor {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let (mut polls, mut failures) = (0, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                let (code, body) = server_readyz();
                polls += 1;
                if code != 200 || body != "ok" {
                    failures.push(format!("at {:?}: {code} {body}", started.elapsed()));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (polls, failures)
        });
        ReadyzMonitor {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops polling; asserts every poll was 200.
    #[track_caller]
    fn assert_always_ready(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let (polls, failures) = self
            .handle
            .take()
            .expect("not finished twice")
            .join()
            .expect("monitor thread");
        assert!(polls > 0, "/readyz was never polled");
        assert_eq!(failures, Vec::<String>::new(), "server /readyz failed in {polls} polls");
        eprintln!("server /readyz: 200 in all {polls} polls");
    }
}

impl Drop for ReadyzMonitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

fn resource_version(event: &Value) -> Position {
    event["object"]["metadata"]["resourceVersion"]
        .as_str()
        .and_then(Position::parse)
        .unwrap_or_else(|| panic!("event without a resourceVersion of this server's: {event}"))
}

fn spaces_url(query: &str) -> String {
    format!("{}/apis/tenancy.loft.sh/v1/spaces{query}", env().var("APISERVER_URL"))
}

// ----------------------------------------------------------------------------------------------------------- tests

/// After an outage: the reflectors resynced, so a grant made now shows and a revocation removes one; `/readyz` never
/// failed; the cache equals the cluster.
fn changes_flow_again(tenant: &Tenant, mine: &String, later: &String, readyz: ReadyzMonitor) {
    tenant.grant(later);
    tenant.expect_spaces(&[mine, later], CATCH_UP);
    tenant.revoke(mine);
    tenant.expect_spaces(&[later], CATCH_UP);
    readyz.assert_always_ready();
    assert_cache_matches_the_cluster();
    tenant.expect_spaces(&[later], Duration::ZERO);
}

#[test]
fn while_kube_apiserver_is_down_the_server_serves_its_cache_and_afterwards_catches_up() {
    let _serial = serial();
    assert_environment_healthy();
    let tenant = Tenant::new("f-api");
    let ns = Namespaces::create("f-api", 2);
    let (mine, later) = (&ns[0], &ns[1]);
    tenant.grant(mine);
    tenant.expect_spaces(&[mine], CATCH_UP);
    let readyz = ReadyzMonitor::start();

    let failures_before = server_log_count("Watch failed");
    let mut outage = Outage::begin("kube-apiserver");
    assert!(
        apiserver_ready().is_err(),
        "kube-apiserver still answers after its stop"
    );
    // The server notices: its reflectors' watches fail and are retried, so what follows is served from its cache.
    eventually(Duration::from_secs(30), || {
        let now = server_log_count("Watch failed");
        if now > failures_before {
            Ok(())
        } else {
            Err(format!(
                "{now} 'Watch failed' lines in the server's log, {failures_before} before the stop"
            ))
        }
    });
    let listed = direct_space_names().unwrap_or_else(|e| panic!("while kube-apiserver is down: {e}"));
    assert!(
        listed.contains(mine) && listed.contains(later) && listed.iter().any(|n| n == "kube-system"),
        "while kube-apiserver is down the server lists {listed:?}"
    );
    let (code, body) = direct(&format!("/apis/tenancy.loft.sh/v1/spaces/{mine}"));
    assert_eq!(code, 200, "get {mine} while kube-apiserver is down: {body}");
    let (code, body) = direct("/apis/tenancy.loft.sh/v1/spaces?watch=1&timeoutSeconds=1");
    assert!(
        code == 200 && body.contains(&format!("\"name\":\"{mine}\"")),
        "watch while kube-apiserver is down: {code} {body}"
    );
    // And says so in its metrics: kube-apiserver is down, the cache ages, the watches failed.
    eventually(Duration::from_secs(20), || {
        let (up, stale, errors) = backend_metrics()?;
        if up == 0.0 && stale > 0.0 && errors > 0.0 {
            Ok(())
        } else {
            Err(format!("up {up}, stale {stale}s, watch errors {errors}"))
        }
    });
    // Still down: the answers above came from the cache.
    assert!(apiserver_ready().is_err(), "kube-apiserver came back on its own");
    outage.end();
    eventually(Duration::from_secs(20), || {
        let (up, stale, _) = backend_metrics()?;
        if up == 1.0 && stale == 0.0 {
            Ok(())
        } else {
            Err(format!("after the restart: up {up}, stale {stale}s"))
        }
    });

    changes_flow_again(&tenant, mine, later, readyz);
}

#[test]
fn while_etcd_is_down_the_server_serves_its_cache_and_afterwards_changes_flow_again() {
    let _serial = serial();
    assert_environment_healthy();
    let tenant = Tenant::new("f-etcd");
    let ns = Namespaces::create("f-etcd", 2);
    let (mine, later) = (&ns[0], &ns[1]);
    tenant.grant(mine);
    tenant.expect_spaces(&[mine], CATCH_UP);
    let readyz = ReadyzMonitor::start();

    let mut outage = Outage::begin("etcd");
    // kube-apiserver notices (its etcd checks fail) but keeps serving what needs no storage.
    eventually(Duration::from_secs(30), || match apiserver_ready() {
        Ok(()) => Err("kube-apiserver still ready with etcd stopped".to_owned()),
        Err(e) if e.contains("etcd") => Ok(()),
        Err(e) => Err(e),
    });
    let listed = direct_space_names().unwrap_or_else(|e| panic!("while etcd is down: {e}"));
    assert!(
        listed.contains(mine) && listed.contains(later),
        "while etcd is down the server lists {listed:?}"
    );
    // Through the aggregator too: authorization needs no storage, and the server needs none at all.
    tenant.expect_spaces(&[mine], Duration::from_secs(20));
    let write = env()
        .kubectl("admin")
        .run(&["--request-timeout", "5s", "label", "namespace", mine, "during=outage"]);
    assert!(!write.success, "a write succeeded with etcd down: {}", write.stdout);
    outage.end();
    changes_flow_again(&tenant, mine, later, readyz);
}

#[test]
fn a_watch_cut_by_a_kube_apiserver_restart_resumes_without_losing_or_repeating_a_change() {
    let _serial = serial();
    assert_environment_healthy();
    let tenant = Tenant::new("f-resume");
    let ns = Namespaces::create("f-resume", 4);
    let (a, b, c, d) = (&ns[0], &ns[1], &ns[2], &ns[3]);
    tenant.grant(a);
    tenant.expect_spaces(&[a], CATCH_UP);

    // A watch through kube-apiserver from a list's resourceVersion, proven live by a grant.
    let auth = tenant.through_apiserver();
    let auth_refs: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (code, body) = curl(&spaces_url(""), &auth_refs);
    assert_eq!(code, 200, "{body}");
    assert_eq!(item_names(&body).expect("a SpaceList"), std::slice::from_ref(a));
    let listed_rv: u64 = serde_json::from_str::<Value>(&body).expect("json")["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("a list's resourceVersion is a number");
    let mut cut = RawWatch::open(&spaces_url(&format!("?watch=1&resourceVersion={listed_rv}")), &auth);
    tenant.grant(b);
    let added_b = format!("ADDED {b}");
    assert!(
        cut.read_until(CATCH_UP, |events| summary(events).contains(&added_b)),
        "the watch before the restart saw {:?} (other output {:?})",
        cut.summary(),
        cut.other
    );
    let last_seen = resource_version(cut.events.last().expect("an event"));

    let mut outage = Outage::begin("kube-apiserver");
    let (status, stderr) = cut
        .ended(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the watch outlived kube-apiserver; saw {:?}", cut.summary()));
    eprintln!("the cut watch ended: {status}: {}", stderr.trim());
    assert_eq!(cut.summary(), [added_b], "events on the cut watch");
    outage.end();

    // Changes while the tenant is not watching: a grant, a revocation and a change to a visible namespace.
    tenant.grant(c);
    tenant.revoke(a);
    env()
        .kubectl("admin")
        .run(&["label", "namespace", b, "faults=resumed"])
        .ok();
    tenant.expect_spaces(&[b, c], CATCH_UP);

    // Resumed from the last resourceVersion seen: every change exactly once, or 410 Expired and a relist.
    let mut expected: Vec<String> = vec![format!("ADDED {c}"), format!("DELETED {a}"), format!("MODIFIED {b}")];
    expected.sort();
    let mut resumed = RawWatch::open(&spaces_url(&format!("?watch=1&resourceVersion={last_seen}")), &auth);
    let complete = |events: &[Value]| {
        let seen = summary(events);
        seen.iter().any(|s| s.starts_with("ERROR")) || expected.iter().all(|e| seen.contains(e))
    };
    let got_all = resumed.read_until(CATCH_UP, complete);
    resumed.rest(QUIET);
    let replayed = resumed.summary();
    assert!(
        got_all,
        "the resumed watch (from {last_seen}) saw {replayed:?}, want {expected:?} or a 410; other output {:?}",
        resumed.other
    );
    let mut live = if let Some(error) = resumed.events.iter().find(|e| e["type"] == "ERROR") {
        eprintln!("resume from {last_seen}: {error}");
        assert_eq!(error["object"]["code"], 410, "{error}");
        assert_eq!(error["object"]["reason"], "Expired", "{error}");
        assert_eq!(replayed.len(), 1, "nothing besides the 410: {replayed:?}");
        // The relist shows the right state, and a watch from it goes on.
        let (code, body) = curl(&spaces_url(""), &auth_refs);
        assert_eq!(code, 200, "{body}");
        assert_eq!(item_names(&body).expect("a SpaceList"), [b.clone(), c.clone()]);
        let rv = serde_json::from_str::<Value>(&body).expect("json")["metadata"]["resourceVersion"]
            .as_str()
            .expect("list resourceVersion")
            .to_owned();
        RawWatch::open(&spaces_url(&format!("?watch=1&resourceVersion={rv}")), &auth)
    } else {
        eprintln!("resume from {last_seen} replayed {replayed:?}");
        let mut sorted = replayed.clone();
        sorted.sort();
        assert_eq!(sorted, expected, "each change exactly once, nothing else");
        let positions: Vec<Position> = resumed.events.iter().map(resource_version).collect();
        assert!(
            positions[0] > last_seen && positions.windows(2).all(|w| w[0] < w[1]),
            "positions {positions:?} after {last_seen}"
        );
        resumed
    };

    // And changes after the resume flow on the same watch, once.
    tenant.grant(d);
    let before = live.events.len();
    let added_d = format!("ADDED {d}");
    assert!(
        live.read_until(CATCH_UP, |events| summary(&events[before..]).contains(&added_d)),
        "after the resume saw {:?}",
        &live.summary()[before..]
    );
    let after = live.rest(QUIET);
    assert_eq!(
        summary(&live.events[before..]),
        [added_d],
        "after the resume (then {:?})",
        summary(&after)
    );
    tenant.expect_spaces(&[b, c, d], Duration::ZERO);
    assert_cache_matches_the_cluster();
}

/// A ClusterRole, deleted when dropped.
struct ClusterRole(String);

impl Drop for ClusterRole {
    fn drop(&mut self) {
        let _ = env()
            .kubectl("admin")
            .run(&["delete", "clusterrole", &self.0, "--ignore-not-found"]);
    }
}

fn cluster_role(name: &str, rules: &str) -> String {
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: {name}\nrules: {rules}\n---\n"
    )
}

/// A client whose watch is cut between two events resumes from the resourceVersion of the last one it got, as
/// client-go's reflector does; it must then get the rest. Two events come from one change whenever one RBAC change
/// shows a tenant several spaces at once (a ClusterRole gaining a rule, as here; or a relist after kube-apiserver
/// restarts, as in the test above).
#[test]
fn a_watch_cut_between_two_events_of_one_change_resumes_with_the_rest() {
    let _serial = serial();
    assert_environment_healthy();
    let admin = env().kubectl("admin");
    let tenant = Tenant::new("f-cut");
    let ns = Namespaces::create("f-cut", 2);
    let role = ClusterRole(unique("f-cut-role"));
    let subject = format!("User:{}", tenant.user);
    admin.apply(
        &[
            cluster_role(&role.0, "[]"),
            role_binding(&ns[0], "faults-cut", &format!("ClusterRole/{}", role.0), &[&subject]),
            role_binding(&ns[1], "faults-cut", &format!("ClusterRole/{}", role.0), &[&subject]),
        ]
        .concat(),
    );
    tenant.expect_spaces(&[], CATCH_UP);
    let auth = tenant.through_apiserver();
    let auth_refs: Vec<&str> = auth.iter().map(String::as_str).collect();
    let (code, body) = curl(&spaces_url(""), &auth_refs);
    assert_eq!(code, 200, "{body}");
    let listed_rv = serde_json::from_str::<Value>(&body).expect("json")["metadata"]["resourceVersion"]
        .as_str()
        .expect("list resourceVersion")
        .to_owned();
    let mut watch = RawWatch::open(&spaces_url(&format!("?watch=1&resourceVersion={listed_rv}")), &auth);

    // One change shows both spaces.
    admin.apply(&cluster_role(
        &role.0,
        "[{apiGroups: [\"\"], resources: [namespaces], verbs: [get]}]",
    ));
    assert!(
        watch.read_until(CATCH_UP, |events| events.len() >= 2),
        "saw {:?}",
        watch.summary()
    );
    watch.rest(QUIET);
    let seen = watch.summary();
    assert_eq!(seen, [format!("ADDED {}", ns[0]), format!("ADDED {}", ns[1])]);
    let positions: Vec<Position> = watch.events.iter().map(resource_version).collect();
    eprintln!("one change, two events at {positions:?}");
    assert_eq!(
        positions[1].after,
        positions[0].after + 1,
        "one change, one position: {positions:?}"
    );

    // Cut after the first event: resumed from its resourceVersion, the second must come.
    let (code, body) = curl(
        &spaces_url(&format!("?watch=1&resourceVersion={}&timeoutSeconds=2", positions[0])),
        &auth_refs,
    );
    assert_eq!(code, 200, "{body}");
    let resumed: Vec<Value> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(
        summary(&resumed),
        [format!("ADDED {}", ns[1])],
        "a client cut after {} (resourceVersion {}) resumed and got {body:?}; the events were {seen:?} at {positions:?}",
        seen[0],
        positions[0]
    );
    tenant.expect_spaces(&[&ns[0], &ns[1]], Duration::ZERO);
}

/// VmRSS of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/<pid>/fd")
        .count()
}

#[test]
fn fifty_watches_dropped_mid_stream_leave_the_server_healthy() {
    const WAVES: usize = 5;
    const PER_WAVE: usize = 10;
    let _serial = serial();
    assert_environment_healthy();
    let pid = component_running("tenancy-apiserver").expect("the server's pid");
    let tenant = Tenant::new("f-drop");
    let ns = Namespaces::create("f-drop", 2);
    let (mine, other) = (&ns[0], &ns[1]);
    tenant.grant(mine);
    tenant.expect_spaces(&[mine], CATCH_UP);
    let url = format!("{}/apis/tenancy.loft.sh/v1/spaces?watch=1", env().var("SERVER_URL"));
    // Half as the tenant (authorized by a cached SubjectAccessReview, one space), half as system:masters (every
    // space in the initial events); over HTTP/1.1 and HTTP/2; cut before, during and after the initial events.
    let drop_one = |i: usize| {
        let (user, groups) = if i.is_multiple_of(2) {
            (tenant.user.clone(), vec!["system:authenticated", tenant.group.as_str()])
        } else {
            ("faults-probe".to_owned(), vec![MASTERS])
        };
        let max_time = match i % 5 {
            0 => "0.02",
            1 => "0.2",
            2 => "0.3",
            3 => "0.5",
            _ => "0.8",
        };
        let protocol = if i % 4 < 2 { "--http1.1" } else { "--http2" };
        Command::new("curl")
            .args(["-sS", "-N", "-o", "/dev/null", "-w", "%{http_code} %{size_download}"])
            .args(["--max-time", max_time, protocol])
            .args(front_proxy(&user, &groups))
            .arg(&url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl starts")
    };
    // Warm up (TLS, authorization cache, allocator), then measure.
    for i in 0..PER_WAVE {
        drop_one(i).wait_with_output().expect("curl runs");
    }
    let (rss_before, fds_before) = (rss(pid), open_fds(pid));

    let started = Instant::now();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut mid_stream = 0;
    for wave in 0..WAVES {
        let children: Vec<Child> = (0..PER_WAVE).map(|i| drop_one(wave * PER_WAVE + i)).collect();
        // Changes keep coming while watches are cut, so the server writes to connections as they go away.
        env()
            .kubectl("admin")
            .run(&[
                "label",
                "namespace",
                mine,
                &format!("faults-wave={wave}"),
                "--overwrite",
            ])
            .ok();
        for child in children {
            let output = child.wait_with_output().expect("curl runs");
            let written = String::from_utf8_lossy(&output.stdout).into_owned();
            let mut parts = written.split_whitespace();
            let (code, size) = (parts.next().unwrap_or("?"), parts.next().unwrap_or("0"));
            if code == "200" && size != "0" {
                mid_stream += 1;
            }
            // curl's exit 28 is its own timeout: the client walked away.
            *outcomes
                .entry(format!("exit {:?}, HTTP {code}", output.status.code()))
                .or_default() += 1;
        }
    }
    eprintln!(
        "{} watches dropped in {:.1}s: {outcomes:?}; {mid_stream} after some of the stream",
        WAVES * PER_WAVE,
        started.elapsed().as_secs_f64()
    );
    assert!(
        mid_stream >= WAVES * PER_WAVE / 2,
        "too few watches were cut mid-stream to mean anything: {outcomes:?}"
    );
    assert!(
        outcomes
            .keys()
            .all(|k| k.contains("HTTP 200") || k.contains("HTTP 000")),
        "a dropped watch got an error status: {outcomes:?}"
    );

    // Healthy afterwards: ready, lists, a new watch gets a change, and nothing was kept for the dropped clients.
    assert_eq!(server_readyz(), (200, "ok".to_owned()));
    component_running("tenancy-apiserver").expect("the server survived");
    let listed = direct_space_names().expect("a list after the drops");
    assert!(listed.contains(mine) && listed.contains(other), "{listed:?}");
    tenant.expect_spaces(&[mine], Duration::ZERO);
    let mut watch = RawWatch::open(
        &format!("{url}&timeoutSeconds=30"),
        &front_proxy(&tenant.user, &[&tenant.group]),
    );
    assert!(
        watch.read_until(Duration::from_secs(10), |events| !events.is_empty()),
        "initial events: {:?} {:?}",
        watch.summary(),
        watch.other
    );
    env()
        .kubectl("admin")
        .run(&["label", "namespace", mine, "faults-wave=done", "--overwrite"])
        .ok();
    let modified = format!("MODIFIED {mine}");
    assert!(
        watch.read_until(CATCH_UP, |events| summary(events).contains(&modified)),
        "a watch after the drops saw {:?}",
        watch.summary()
    );
    drop(watch);
    let fds = eventually(Duration::from_secs(20), || {
        let now = open_fds(pid);
        if now <= fds_before + 10 {
            Ok(now)
        } else {
            Err(format!("{now} open fds, {fds_before} before the drops"))
        }
    });
    let rss_after = rss(pid);
    eprintln!(
        "server RSS {:.1} MiB -> {:.1} MiB; open fds {fds_before} -> {fds}",
        rss_before as f64 / 1048576.0,
        rss_after as f64 / 1048576.0
    );
    assert!(
        rss_after <= rss_before + 50 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
    tenant.expect_spaces(&[mine], Duration::ZERO);
}

// ---------------------------------------------------------------------------------------------- quotas without us

/// The server stopped (SIGSTOP: it hangs rather than refuses, the harder case) until dropped; then continued and the
/// environment waited on, even when an assertion failed.
struct Frozen(u32);

impl Frozen {
    fn begin(pid: u32) -> Self {
        let status = Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -STOP {pid}");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
        if let Err(e) = environment_healthy(HEAL) {
            eprintln!("could not restore the environment after stopping the server: {e}");
        }
    }
}

/// `kubectl create --raw` of a pod in `ns` as `user`: straight to kube-apiserver, no discovery (the aggregated group is
/// unavailable while the server is stopped).
fn create_pod_raw(user: &harness::Kubectl, ns: &str, name: &str) -> Result<(), String> {
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"automountServiceAccountToken": false, "containers": [{"name": "pause", "image": "registry.k8s.io/pause:3.10"}]}
    });
    let path = format!("/api/v1/namespaces/{ns}/pods");
    let run = user.run_with_stdin(
        &["--request-timeout", "20s", "create", "--raw", &path, "-f", "-"],
        Some(&pod.to_string()),
    );
    if run.success {
        Ok(())
    } else {
        Err(run.stderr)
    }
}

/// A member of a new account (its name starting with `prefix`) whose AccountQuota allows 2 pods.
fn quota_member(prefix: &str) -> harness::Kubectl {
    let (acc, group, quota) = (unique(prefix), unique("team"), unique("aq"));
    let admin = env().kubectl("admin");
    admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
    admin.apply(&format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: AccountQuota\nmetadata:\n  name: {quota}\nspec:\n  account: {acc}\n  \
quota:\n    hard: {{pods: \"2\"}}\n"
    ));
    env().kubectl_as(&unique("member"), &[&group])
}

#[test]
fn with_the_server_stopped_tenants_create_pods_within_their_quota_shares_and_nothing_else_notices() {
    let _serial = serial();
    assert_environment_healthy();
    let admin = env().kubectl("admin");
    let member = quota_member("frozen");
    let spaces = [unique("fz"), unique("fz")];
    for space in &spaces {
        create_space(&member, space);
    }
    let _cleanup = Namespaces(spaces.to_vec());
    // One pod each, in force (status.hard is what kube-apiserver admits against).
    for space in &spaces {
        eventually(Duration::from_secs(60), || {
            let hard = admin
                .run(&[
                    "get",
                    "resourcequota",
                    "account-quota",
                    "-n",
                    space,
                    "-o",
                    "jsonpath={.status.hard.pods}",
                ])
                .stdout;
            if hard.trim() == "1" {
                Ok(())
            } else {
                Err(hard)
            }
        });
    }
    let frozen = Frozen::begin(component_running("tenancy-apiserver").expect("the server's pid"));
    // kube-apiserver alone admits what each share allows and refuses the rest.
    eventually(Duration::from_secs(30), || create_pod_raw(&member, &spaces[0], "first"));
    let refused = create_pod_raw(&member, &spaces[0], "second").expect_err("a pod beyond the share");
    assert!(refused.contains("exceeded quota"), "{refused}");
    create_pod_raw(&member, &spaces[1], "first").expect("the other space's share");
    // Nothing else in the cluster notices: an admin makes a namespace and a pod in it.
    let elsewhere = Namespaces::create("fz-other", 1);
    eventually(Duration::from_secs(30), || {
        create_pod_raw(&admin, &elsewhere[0], "unbound")
    });
    drop(frozen);
}

#[test]
fn a_space_whose_quota_share_kube_controller_manager_does_not_enforce_in_time_is_not_created() {
    let _serial = serial();
    assert_environment_healthy();
    let admin = env().kubectl("admin");
    let member = quota_member("unenforced");
    // The account is known (a first space made), so the create below fails only for its share.
    let first = unique("ue");
    create_space(&member, &first);
    let (late, retried) = (unique("ue"), unique("ue"));
    let _cleanup = Namespaces(vec![first, late.clone(), retried.clone()]);

    // kube-controller-manager stopped: nothing fills the new share's status.hard, so kube-apiserver would not enforce
    // it; the owners must get no rights there, and the create fails as a whole.
    let frozen = Frozen::begin(component_running("kube-controller-manager").expect("kube-controller-manager's pid"));
    let started = Instant::now();
    let run = member.run_with_stdin(
        &["create", "-f", "-"],
        Some(&format!(
            "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {late}\n"
        )),
    );
    let took = started.elapsed();
    assert!(!run.success, "created while its share was not enforced: {}", run.stdout);
    assert!(run.stderr.contains("was not in force in time"), "{}", run.stderr);
    eprintln!("refused after {took:?}: {}", run.stderr.trim());
    // Rolled back: no owner binding, the namespace on its way out (the namespace controller, stopped too, finishes it).
    let binding = admin.run(&["get", "rolebinding", "tenancy-owner", "-n", &late]);
    assert!(!binding.success, "the owners got rights: {}", binding.stdout);
    let deleting = admin
        .run(&[
            "get",
            "namespace",
            &late,
            "-o",
            "jsonpath={.metadata.deletionTimestamp}",
        ])
        .stdout;
    assert!(
        !deleting.trim().is_empty(),
        "the half-made namespace was not rolled back"
    );
    drop(frozen);

    // With kube-controller-manager back, a create succeeds and its share is enforced when it returns.
    create_space(&member, &retried);
    let hard = admin
        .run(&[
            "get",
            "resourcequota",
            "account-quota",
            "-n",
            &retried,
            "-o",
            "jsonpath={.status.hard.pods}",
        ])
        .ok();
    assert!(
        !hard.trim().is_empty(),
        "the share is not enforced when the create returns"
    );
}

/// Issue 29: right after kube-apiserver restarts (its watch cache of Accounts freshly built, the server's reflectors
/// reconnecting), an Account applied and a space created in the next command succeeds every time, and a member
/// removed in one command is refused in the next.
#[test]
fn right_after_a_kube_apiserver_restart_a_create_decides_on_the_accounts_as_they_are_now() {
    let _serial = serial();
    assert_environment_healthy();
    let mut outage = Outage::begin("kube-apiserver");
    outage.end();
    let env = env();
    let admin = env.kubectl("admin");
    for i in 0..20 {
        let (acc, group, other) = (unique("f-now"), unique("f-team"), unique("f-team"));
        let member = env.kubectl_as(&unique("f-member"), &[&group]);
        admin.apply(&account(&acc, &group, 5, Some(&[]), ""));
        let space = format!(
            "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {}\n",
            unique("f-now")
        );
        let run = member.run_with_stdin(&["create", "-f", "-"], Some(&space));
        assert!(run.success, "try {i} after the restart: {}", run.stderr);
        admin.apply(&account(&acc, &other, 5, Some(&[]), ""));
        let space = format!(
            "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {}\n",
            unique("f-late")
        );
        let run = member.run_with_stdin(&["create", "-f", "-"], Some(&space));
        assert!(
            !run.success && run.stderr.contains("Forbidden"),
            "try {i} after the restart: a removed member's create: {} {}",
            run.stdout,
            run.stderr
        );
    }
}
