//! The shared environment of an e2e run, and helpers to act in it as a given user.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Variables of the env file written by tests/env/up.sh.
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn var(&self, name: &str) -> &str {
        self.vars
            .get(name)
            .unwrap_or_else(|| panic!("{name} missing from the e2e env file"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        PathBuf::from(self.var(name))
    }

    /// kubectl with a user's kubeconfig (`admin`, `alice`, `bob`, `carol`, `dave`).
    pub fn kubectl(&self, user: &str) -> Kubectl {
        Kubectl {
            binary: self.path("KUBECTL"),
            kubeconfig: self.path(&format!("KUBECONFIG_{}", user.to_uppercase())),
            impersonate: Vec::new(),
        }
    }

    /// helm as tests/install/helm.sh built it, for rendering the chart (`helm template` talks to no cluster).
    pub fn helm(&self, args: &[&str]) -> Run {
        let output = Command::new(self.path("HELM"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("helm runs");
        Run::from(format!("helm {}", args.join(" ")), output)
    }

    /// kubectl as any user and groups, through the admin's impersonation: the aggregator forwards them as
    /// `X-Remote-User` / `X-Remote-Group` exactly as for a real login.
    pub fn kubectl_as(&self, user: &str, groups: &[&str]) -> Kubectl {
        let mut k = self.kubectl("admin");
        k.impersonate.push(format!("--as={user}"));
        k.impersonate.extend(groups.iter().map(|g| format!("--as-group={g}")));
        k
    }
}

/// The run's environment: the one `make test` started, or one started now for this test binary.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let file = std::env::var_os("TENANCY_E2E_ENV")
            .map(PathBuf::from)
            .unwrap_or_else(start_own_env);
        parse_env_file(&file)
    })
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the product for this process alone; a watchdog tears it down once this process exits.
fn start_own_env() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tenancy-e2e-{}", std::process::id()));
    let output = Command::new("bash")
        .arg(repo().join("tests/env/up.sh"))
        .arg(&dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("tests/env/up.sh runs");
    assert!(output.status.success(), "tests/env/up.sh failed");
    after_exit(&format!(
        "bash {down} {dir} >/dev/null 2>&1; rm -rf {dir}",
        down = repo().join("tests/controlplane/down.sh").display(),
        dir = dir.display(),
    ));
    let stdout = String::from_utf8_lossy(&output.stdout);
    PathBuf::from(stdout.lines().last().expect("up.sh prints the env file").trim())
}

pub fn parse_env_file(file: &Path) -> Env {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    // The file is bash `export NAME=value` lines with %q quoting; let bash itself expand them.
    let script = format!("set -a; source {}; env -0", file.display());
    let output = Command::new("bash").args(["-c", &script]).output().expect("bash runs");
    assert!(output.status.success(), "sourcing {} failed: {text}", file.display());
    let vars = output
        .stdout
        .split(|b| *b == 0)
        .filter_map(|entry| {
            let entry = String::from_utf8_lossy(entry);
            entry.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect();
    Env { vars }
}

/// A kubectl invocation's result, printed whole when an expectation fails.
pub struct Run {
    pub args: String,
    pub stdout: String,
    pub stderr: String,
    pub success: bool,
}

impl Run {
    fn from(args: String, output: Output) -> Self {
        Run {
            args,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            success: output.status.success(),
        }
    }

    /// Stdout of a command that must succeed.
    #[track_caller]
    pub fn ok(self) -> String {
        assert!(
            self.success,
            "`{}` failed:\nstdout: {}\nstderr: {}",
            self.args, self.stdout, self.stderr
        );
        self.stdout
    }

    /// Stderr of a command that must fail.
    #[track_caller]
    pub fn err(self) -> String {
        assert!(
            !self.success,
            "`{}` should have failed; stdout: {}",
            self.args, self.stdout
        );
        self.stderr
    }
}

pub struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
    impersonate: Vec<String>,
}

impl Kubectl {
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        self.run_full(args, stdin, &[])
    }

    /// kubectl with extra environment variables (e.g. `KUBE_EDITOR`).
    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        self.run_full(args, None, vars)
    }

    fn run_full(&self, args: &[&str], stdin: Option<&str>, vars: &[(&str, &str)]) -> Run {
        let mut command = Command::new(&self.binary);
        command.envs(vars.iter().copied());
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&self.impersonate)
            .args(args)
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("kubectl starts");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes())
                .expect("writing kubectl's stdin");
        }
        let output = child.wait_with_output().expect("kubectl runs");
        Run::from(
            format!("kubectl {} {}", self.impersonate.join(" "), args.join(" ")),
            output,
        )
    }

    /// `kubectl apply -f -` of a manifest.
    #[track_caller]
    pub fn apply(&self, manifest: &str) {
        self.run_with_stdin(&["apply", "-f", "-"], Some(manifest)).ok();
    }

    /// Waits up to `timeout` until this user lists exactly `want`, in any order.
    #[track_caller]
    pub fn eventually_lists(&self, want: &[&String], timeout: Duration) {
        let mut want: Vec<String> = want.iter().map(|s| (*s).clone()).collect();
        want.sort();
        eventually(timeout, || {
            let seen = self.space_names(&[]);
            if seen == want {
                Ok(())
            } else {
                Err(seen)
            }
        });
    }

    /// Names of the spaces this user lists, sorted.
    #[track_caller]
    pub fn space_names(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["get", "spaces", "-o", "name"];
        args.extend_from_slice(extra);
        let mut names: Vec<String> = self
            .run(&args)
            .ok()
            .lines()
            .filter_map(|l| l.strip_prefix("space.tenancy.loft.sh/"))
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }
}

/// A name unique to this run and call, so tests never share objects: `<prefix>-<pid>-<n>`.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id() % 100_000,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with the last value it saw.
#[track_caller]
pub fn eventually<T, S: std::fmt::Debug>(timeout: Duration, mut check: impl FnMut() -> Result<T, S>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("condition not met within {timeout:?}; last saw: {seen:?}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// What every new space of an account without named templates holds: the default SpaceTemplate's objects and the
/// owner binding, as `kubectl get -o name` prints them.
pub const DEFAULT_SPACE_OBJECTS: &[&str] = &[
    "resourcequota/space-quota",
    "limitrange/space-limits",
    "networkpolicy.networking.k8s.io/same-account-only",
    "networkpolicy.networking.k8s.io/egress-to-own-account-shared-and-dns",
    "rolebinding.rbac.authorization.k8s.io/tenancy-owner",
];

/// Asserts that namespace `ns` holds every one of [`DEFAULT_SPACE_OBJECTS`].
#[track_caller]
pub fn assert_default_space_objects(ns: &str) {
    assert_default_space_objects_at(&env().kubectl("admin"), ns);
}

/// [`assert_default_space_objects`] in the cluster `admin` is the admin of.
#[track_caller]
pub fn assert_default_space_objects_at(admin: &Kubectl, ns: &str) {
    let objects = admin
        .run(&[
            "get",
            "resourcequota,limitrange,networkpolicy,rolebinding",
            "-n",
            ns,
            "-o",
            "name",
        ])
        .ok();
    for object in DEFAULT_SPACE_OBJECTS {
        assert!(objects.contains(object), "{object} missing from {ns}: {objects}");
    }
}

/// Waits up to `timeout` until `kubectl get KINDS -n NS -o name` (as the admin) lists every one of `objects`.
#[track_caller]
pub fn eventually_holds(ns: &str, kinds: &str, objects: &[&str], timeout: Duration) {
    eventually_holds_at(&env().kubectl("admin"), ns, kinds, objects, timeout);
}

/// [`eventually_holds`] in the cluster `admin` is the admin of.
#[track_caller]
pub fn eventually_holds_at(admin: &Kubectl, ns: &str, kinds: &str, objects: &[&str], timeout: Duration) {
    eventually(timeout, || {
        let out = admin.run(&["get", kinds, "-n", ns, "-o", "name"]).ok();
        if objects.iter().all(|o| out.contains(o)) {
            Ok(())
        } else {
            Err(out)
        }
    });
}

/// YAML for an Account of `group` with a space limit. `templates`: the SpaceTemplates it names, or `None` to name
/// none (so the default one applies); `extra`: more lines of its spec.
pub fn account(name: &str, group: &str, limit: u32, templates: Option<&[&str]>, extra: &str) -> String {
    let templates = templates.map_or(String::new(), |t| format!(", templates: [{}]", t.join(", ")));
    format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {name}\nspec:\n  \
subjects: [{{kind: Group, name: {group}}}]\n  space: {{limit: {limit}{templates}}}\n{extra}"
    )
}

/// YAML for a Space.
pub fn space(name: &str) -> String {
    format!("apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {name}\n")
}

/// Creates space `name` as `user` with `kubectl create`, retried as a client retries a create whose answer it did not
/// get (a 5xx on a loaded machine): a retry that finds the space there (AlreadyExists) and visible to `user` is the
/// earlier try's success. Every distinct failure is reported if none succeeds.
#[track_caller]
pub fn create_space(user: &Kubectl, name: &str) {
    let manifest = space(name);
    let mut seen: Vec<String> = Vec::new();
    eventually(Duration::from_secs(20), || {
        let run = user.run_with_stdin(&["create", "-f", "-"], Some(&manifest));
        if run.success {
            return Ok(());
        }
        let retried = !seen.is_empty();
        if !seen.contains(&run.stderr) {
            seen.push(run.stderr.clone());
        }
        if retried && run.stderr.contains("AlreadyExists") && user.run(&["get", "space", name, "-o", "name"]).success {
            return Ok(());
        }
        Err(seen.join(" | then: "))
    });
}

/// `kubectl label namespace NS tenancy.loft.sh/account=ACCOUNT --overwrite` as `user`: an admin moves or adopts a
/// namespace this way, and an owner must be refused.
pub fn label_account(user: &Kubectl, ns: &str, account: &str) -> Run {
    user.run(&[
        "label",
        "namespace",
        ns,
        &format!("tenancy.loft.sh/account={account}"),
        "--overwrite",
    ])
}

/// YAML for a namespace.
pub fn namespace(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n---\n")
}

/// YAML for a RoleBinding of `role` (`Kind/name`) to subjects (`Kind:name` or `ServiceAccount:ns/name`).
pub fn role_binding(namespace: &str, name: &str, role: &str, subjects: &[&str]) -> String {
    let (role_kind, role_name) = role.split_once('/').expect("role is Kind/name");
    let subjects: String = subjects
        .iter()
        .map(|s| {
            let (kind, name) = s.split_once(':').expect("subject is Kind:name");
            match (kind, name.split_once('/')) {
                ("ServiceAccount", Some((ns, sa))) => {
                    format!("  - kind: ServiceAccount\n    name: {sa}\n    namespace: {ns}\n")
                }
                _ => format!("  - apiGroup: rbac.authorization.k8s.io\n    kind: {kind}\n    name: {name}\n"),
            }
        })
        .collect();
    format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: {role_kind}\n  name: {role_name}\nsubjects:\n{subjects}---\n"
    )
}

/// A raw HTTPS request with curl; returns (HTTP code, body). Code 0 means the TLS handshake or connection failed.
pub fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = stdout.rsplit_once('\n').unwrap_or(("", stdout.as_str()));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

impl Env {
    /// kubectl authenticating with a bearer token only (e.g. a ServiceAccount's), as a pod would.
    pub fn kubectl_token(&self, token: &str) -> Kubectl {
        let dir = std::env::temp_dir().join(format!("tenancy-e2e-kubeconfigs-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join(format!("{}.kubeconfig", unique("token")));
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
users:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context: {{cluster: c, user: u}}\ncurrent-context: c\n",
            server = self.var("APISERVER_URL"),
            ca = self.var("CA_CERT"),
        );
        std::fs::write(&file, kubeconfig).expect("writing a kubeconfig");
        Kubectl {
            binary: self.path("KUBECTL"),
            kubeconfig: file,
            impersonate: Vec::new(),
        }
    }

    /// curl arguments that authenticate to kube-apiserver as admin and impersonate `user` with `groups`.
    pub fn apiserver_as(&self, user: &str, groups: &[&str]) -> Vec<String> {
        let pki = self.path("PKI_DIR");
        let mut args = vec![
            "--cacert".to_owned(),
            self.var("CA_CERT").to_owned(),
            "--cert".to_owned(),
            pki.join("admin.crt").display().to_string(),
            "--key".to_owned(),
            pki.join("admin.key").display().to_string(),
            "-H".to_owned(),
            format!("Impersonate-User: {user}"),
        ];
        for group in groups {
            args.push("-H".to_owned());
            args.push(format!("Impersonate-Group: {group}"));
        }
        args
    }
}

impl Env {
    /// A request through kube-apiserver as its admin impersonating `user` in `groups` (kube-apiserver adds
    /// `system:authenticated`), as a tenant's client would send it; `path` starts with `/`. Returns (HTTP code, body).
    pub fn apiserver_request_as(
        &self,
        user: &str,
        groups: &[&str],
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        let url = format!("{}{path}", self.var("APISERVER_URL"));
        curl_json(&url, self.apiserver_as(user, groups), method, body)
    }
}

/// A long-running kubectl (e.g. `get -w`) whose stdout lines arrive on a channel; killed when dropped.
pub struct Streaming {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Kubectl {
    pub fn spawn(&self, args: &[&str]) -> Streaming {
        let mut child = Command::new(&self.binary)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(&self.impersonate)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl starts");
        let lines = lines_of(child.stdout.take().expect("piped stdout"));
        Streaming {
            child,
            lines,
            seen: Vec::new(),
        }
    }
}

impl Kubectl {
    /// `kubectl get <resource> -w`, one `TYPE name` line per event.
    pub fn watch_events(&self, resource: &str) -> Streaming {
        self.spawn(&[
            "get",
            resource,
            "-w",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.metadata.name}{\"\\n\"}",
        ])
    }
}

impl Kubectl {
    /// `kubectl get <resource> -w`, one `TYPE name` line per event followed by `fields`, a jsonpath template of the
    /// event (e.g. `" {.object.status.phase}"`).
    pub fn watch_events_with(&self, resource: &str, fields: &str) -> Streaming {
        self.spawn(&[
            "get",
            resource,
            "-w",
            "--output-watch-events",
            "-o",
            &format!("jsonpath={{.type}} {{.object.metadata.name}}{fields}{{\"\\n\"}}"),
        ])
    }
}

impl Streaming {
    /// The next `count` lines, each within `timeout` (they stay in `seen` too).
    #[track_caller]
    pub fn next_lines(&mut self, count: usize, timeout: Duration) -> Vec<String> {
        let mut lines = Vec::new();
        while lines.len() < count {
            match self.lines.recv_timeout(timeout) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    lines.push(line);
                }
                Err(_) => panic!("wanted {count} lines, got only {lines:?} (no more within {timeout:?})"),
            }
        }
        lines
    }

    /// Waits up to `timeout` for the next line, which must be `want`.
    #[track_caller]
    pub fn expect_next(&mut self, want: &str, timeout: Duration) {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                self.seen.push(line.clone());
                assert_eq!(line, want, "all lines so far: {:?}", self.seen);
            }
            Err(_) => panic!("no line within {timeout:?}; wanted {want:?}; saw {:?}", self.seen),
        }
    }

    /// Waits up to `timeout` for the line `want`, passing over others (which stay in `seen`).
    #[track_caller]
    pub fn expect_eventually(&mut self, want: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line == want {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line {want:?} within {timeout:?}; saw {:?}", self.seen);
    }

    /// Every line that arrives within `quiet`.
    pub fn rest(&mut self, quiet: Duration) -> Vec<String> {
        let mut rest = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            rest.push(line);
        }
        rest
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Another server process on its own port (a second replica, or one started later), killed when dropped. It runs the
/// same binary with the same identity as the run's server; requests reach it straight, with the front-proxy
/// certificate, as kube-apiserver's proxy would send them.
pub struct Replica {
    child: std::process::Child,
    pub url: String,
    /// Its stderr (the server's log).
    pub log: PathBuf,
}

impl Replica {
    pub fn start(extra_env: &[(&str, &str)]) -> Self {
        Self::start_with(extra_env, None, &[])
    }

    /// A replica serving the certificate in `serving` (`ca.crt`, `tls.crt`, `tls.key`; `None`: the run's server's),
    /// with more flags of `serve`.
    pub fn start_with(extra_env: &[(&str, &str)], serving: Option<&Path>, args: &[&str]) -> Self {
        let env = env();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("free port")
            .local_addr()
            .expect("addr")
            .port();
        let serving = serving.map_or_else(
            || env.path("SERVER_CA_CERT").parent().expect("serving dir").to_owned(),
            Path::to_owned,
        );
        let log = std::env::temp_dir().join(format!("tenancy-e2e-replica-{}-{port}.log", std::process::id()));
        let child = Command::new(env.var("SERVER_BIN"))
            .args([
                "serve",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                &port.to_string(),
            ])
            .arg("--tls-cert-file")
            .arg(serving.join("tls.crt"))
            .arg("--tls-private-key-file")
            .arg(serving.join("tls.key"))
            .arg("--kubeconfig")
            .arg(env.var("SERVER_KUBECONFIG"))
            .args(["--access-mode", env.var("SERVER_ACCESS_MODE")])
            // The run's space domains: replicas of one install share their flags.
            .args(["--space-domain", env.var("SPACE_DOMAIN")])
            .args(["--space-issuer", env.var("SPACE_ISSUER")])
            .args(args)
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("replica log"))
            .spawn()
            .expect("replica starts");
        let url = format!("https://127.0.0.1:{port}");
        let ca = serving.join("ca.crt");
        eventually(Duration::from_secs(30), || {
            let (code, body) = curl(&format!("{url}/readyz"), &["--cacert", &ca.display().to_string()]);
            if code == 200 {
                Ok(())
            } else {
                Err((code, body))
            }
        });
        Replica { child, url, log }
    }

    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    /// Sends SIGTERM, as the kubelet does to a terminating pod.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// The exit status, once the process has exited within `timeout`.
    pub fn exited(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A request straight to this replica as `user` in `groups`; `path` starts with `/`.
    pub fn request_as(
        &self,
        user: &str,
        groups: &[&str],
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, String) {
        server_request_as(&self.url, user, groups, method, path, body)
    }

    /// Creates a space directly on this replica, as kube-apiserver's proxy would for `user` in `group`.
    pub fn create_as(&self, user: &str, group: &str, name: &str) -> (u16, String) {
        self.post_as(user, group, name, "")
    }

    /// Creates `name` as a new member of `group`, again until this replica answers 201 or dies mid-create (code 0):
    /// a replica still syncing, or not yet connected to the space's cluster, refuses.
    pub fn create_until_answered(&self, group: &str, name: &str, timeout: Duration) -> (u16, String) {
        eventually(timeout, || {
            let (code, body) = self.create_as(&unique("member"), group, name);
            if code == 0 || code == 201 {
                Ok((code, body))
            } else {
                Err((code, body))
            }
        })
    }

    pub fn post_as(&self, user: &str, group: &str, name: &str, query: &str) -> (u16, String) {
        let body = format!(r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{name}"}}}}"#);
        self.request_as(
            user,
            &[group],
            "POST",
            &format!("/apis/tenancy.loft.sh/v1/spaces{query}"),
            Some(&body),
        )
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A request straight to a server process at `url` (the run's own is `SERVER_URL`), with the front-proxy certificate
/// and `X-Remote-*` headers naming `user` and `groups`.
pub fn server_request_as(
    url: &str,
    user: &str,
    groups: &[&str],
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    curl_json(&format!("{url}{path}"), front_proxy(user, groups), method, body)
}

/// The server's own `/readyz`, straight at its port (probes need no identity).
pub fn server_readyz() -> (u16, String) {
    let env = env();
    curl(
        &format!("{}/readyz", env.var("SERVER_URL")),
        &["--cacert", env.var("SERVER_CA_CERT"), "--max-time", "3"],
    )
}

/// `curl -X method url` with `args` (how to authenticate), and `body` as JSON if there is one: (HTTP code, body).
fn curl_json(url: &str, mut args: Vec<String>, method: &str, body: Option<&str>) -> (u16, String) {
    args.extend(["-X".to_owned(), method.to_owned()]);
    if let Some(body) = body {
        args.extend([
            "-H".to_owned(),
            "Content-Type: application/json".to_owned(),
            "--data".to_owned(),
            body.to_owned(),
        ]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(url, &refs)
}

/// curl arguments for a server's own port with kube-apiserver's front-proxy certificate, asserting `user`/`groups`.
pub fn front_proxy(user: &str, groups: &[&str]) -> Vec<String> {
    let env = env();
    let mut headers = vec![format!("X-Remote-User: {user}")];
    headers.extend(groups.iter().map(|group| format!("X-Remote-Group: {group}")));
    front_proxy_raw(
        Some((
            &env.path("FRONT_PROXY_CLIENT_CERT"),
            &env.path("FRONT_PROXY_CLIENT_KEY"),
        )),
        &headers,
    )
}

/// curl arguments for a server's own port: its CA, the client certificate and key `cert` (if any), and `headers` as
/// they are (`Name: value` lines, or curl's `Name;` for an empty value), for tests of what the server believes.
pub fn front_proxy_raw(cert: Option<(&Path, &Path)>, headers: &[String]) -> Vec<String> {
    let mut args: Vec<String> = vec!["--cacert".to_owned(), env().var("SERVER_CA_CERT").to_owned()];
    if let Some((crt, key)) = cert {
        args.extend([
            "--cert".to_owned(),
            crt.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]);
    }
    for header in headers {
        args.extend(["-H".to_owned(), header.clone()]);
    }
    args
}

/// Runs the shell `script` once this test process has exited, however it exits: a detached watchdog cleans up what a
/// static (never dropped) started.
pub fn after_exit(script: &str) {
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.2; done; {script}",
        pid = std::process::id()
    );
    // Detached and never waited on: it must outlive this process to clean up after it.
    #[allow(
        clippy::zombie_processes,
        reason = "the watchdog outlives the test process by design"
    )]
    Command::new("setsid")
        .args(["bash", "-c", &watchdog])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("watchdog starts");
}

/// A raw watch with curl; its newline-delimited events arrive on a channel. Killed when dropped.
pub struct RawWatch {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
    /// Every event received, in order.
    pub events: Vec<Value>,
    /// Lines that were not events.
    pub other: Vec<String>,
}

impl RawWatch {
    pub fn open(url: &str, args: &[String]) -> Self {
        let mut child = Command::new("curl")
            .args(["-sS", "-N", "--max-time", "600"])
            .args(args)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("curl starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr_pipe = child.stderr.take().expect("piped stderr");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            *sink.lock().unwrap_or_else(PoisonError::into_inner) = text;
        });
        let lines = lines_of(stdout);
        RawWatch {
            child,
            lines,
            stderr,
            events: Vec::new(),
            other: Vec::new(),
        }
    }

    /// Reads until `done(events)` holds, the stream ends, or `timeout`; whether `done` held.
    pub fn read_until(&mut self, timeout: Duration, done: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while !done(&self.events) {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            match self.lines.recv_timeout(left) {
                Ok(line) => self.take(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return done(&self.events),
            }
        }
        true
    }

    /// Every event arriving within `quiet` of the previous one.
    pub fn rest(&mut self, quiet: Duration) -> Vec<Value> {
        let before = self.events.len();
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            self.take(line);
        }
        self.events[before..].to_vec()
    }

    fn take(&mut self, line: String) {
        match serde_json::from_str::<Value>(&line) {
            Ok(event) if event.get("type").is_some() => self.events.push(event),
            _ if line.trim().is_empty() => {}
            _ => self.other.push(line),
        }
    }

    /// Waits for curl to exit: its status and stderr.
    pub fn ended(&mut self, timeout: Duration) -> Option<(ExitStatus, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Drain what arrived before the end.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.take(line);
                }
                let stderr = self.stderr.lock().unwrap_or_else(PoisonError::into_inner).clone();
                return Some((status, stderr));
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn summary(&self) -> Vec<String> {
        summary(&self.events)
    }
}

impl Drop for RawWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `TYPE name` of each event (`ERROR <code>` for errors).
pub fn summary(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e["type"].as_str() {
            Some("ERROR") => format!("ERROR {}", e["object"]["code"]),
            kind => format!(
                "{} {}",
                kind.unwrap_or("?"),
                e["object"]["metadata"]["name"].as_str().unwrap_or("")
            ),
        })
        .collect()
}

/// The lines a child process writes to `stdout`, as they come, on a channel (closed at its end).
fn lines_of(stdout: std::process::ChildStdout) -> mpsc::Receiver<String> {
    let (sender, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    lines
}
