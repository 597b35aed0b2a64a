//! Connected clusters, first part: `tenancy-apiserver connect` against a second local control plane makes the
//! server's identity there with its least RBAC, and the kubeconfig Secret and Cluster in the management cluster; the
//! server reports the cluster Ready, then Offline when it goes away, without losing its own readiness; `disconnect`
//! removes it all. Tenants can neither read the kubeconfig nor make Clusters. The second part, what tenants see of a
//! connected cluster's spaces, is in `spaces`.

mod connections;
mod quota;
pub(crate) mod spaces;
mod trunk;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;

use crate::harness::{
    after_exit, env, eventually, parse_env_file, server_readyz, server_request_as, unique, Env, Kubectl,
};

const SETTLE: Duration = Duration::from_secs(40);
/// SIGTERM grace before restart.sh kills a component (kube-apiserver holds open watches until its grace runs out).
const STOP_GRACE: &str = "5";

/// Another control plane on its own ports, stopped when dropped.
pub(crate) struct SecondControlPlane {
    state: PathBuf,
    env: Env,
    up: bool,
}

impl SecondControlPlane {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// A control plane whose up.sh gets `vars` in its environment.
    fn start_with(vars: &[(&str, &str)]) -> Self {
        let state = std::env::temp_dir().join(unique("tenancy-second-cluster"));
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let output = Command::new("bash")
            .arg(repo.join("tests/controlplane/up.sh"))
            .arg(&state)
            .envs(vars.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .expect("tests/controlplane/up.sh runs");
        assert!(output.status.success(), "the second control plane did not start");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let file = PathBuf::from(stdout.lines().last().expect("up.sh prints its env file").trim());
        SecondControlPlane {
            env: parse_env_file(&file),
            state,
            up: true,
        }
    }

    fn admin_kubeconfig(&self) -> String {
        self.env.var("KUBECONFIG_ADMIN").to_owned()
    }

    /// Asserts that the server's identity (its ServiceAccount) is in this cluster.
    #[track_caller]
    pub(crate) fn assert_server_identity(&self) {
        let (ok, out) = self.kubectl(&[
            "get",
            "serviceaccount",
            "-n",
            "tenancy-system",
            "tenancy-apiserver-connected",
        ]);
        assert!(ok, "{out}");
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(self.env.var("KUBECTL"))
            .arg("--kubeconfig")
            .arg(self.admin_kubeconfig())
            .args(args)
            .output()
            .expect("kubectl runs");
        let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        (output.status.success(), text)
    }

    /// kubectl as this control plane's admin.
    pub(crate) fn admin(&self) -> Kubectl {
        self.env.kubectl("admin")
    }

    /// kubectl here with a bearer token of this cluster.
    pub(crate) fn kubectl_token(&self, token: &str) -> Kubectl {
        self.env.kubectl_token(token)
    }

    /// kubectl here as `user` in `groups` (the admin impersonating them): how this cluster's RBAC sees that user.
    pub(crate) fn kubectl_as(&self, user: &str, groups: &[&str]) -> Kubectl {
        self.env.kubectl_as(user, groups)
    }

    /// `tests/controlplane/restart.sh STATE component action` on this control plane (`action`: stop, start or
    /// restart; start and restart return once the component is healthy again), or what it said when it failed.
    fn restart(&self, component: &str, action: &str) -> Result<(), String> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let started = Instant::now();
        let output = Command::new("bash")
            .arg(repo.join("tests/controlplane/restart.sh"))
            .arg(&self.state)
            .args([component, action])
            .env("CONTROLPLANE_STOP_GRACE", STOP_GRACE)
            .stdin(Stdio::null())
            .output()
            .expect("tests/controlplane/restart.sh runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "second control plane: restart.sh {component} {action} ({:.1}s): {}",
            started.elapsed().as_secs_f64(),
            stderr.trim()
        );
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "restart.sh {component} {action} on the second control plane failed: {stderr}"
            ))
        }
    }

    /// For a control plane that is never dropped (one in a `static`): once this test process has exited, a detached
    /// watchdog disconnects `cluster` from the management cluster, stops this control plane and removes its state.
    fn clean_up_after_exit(&self, cluster: &str) {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        after_exit(&format!(
            "timeout 30 '{bin}' disconnect --name '{cluster}' --management-kubeconfig '{management}' >/dev/null 2>&1; \
bash '{down}' '{state}' >/dev/null 2>&1; rm -rf '{state}'",
            bin = env().var("SERVER_BIN"),
            management = env().var("KUBECONFIG_ADMIN"),
            down = repo.join("tests/controlplane/down.sh").display(),
            state = self.state.display(),
        ));
    }

    fn stop(&mut self) {
        if self.up {
            self.up = false;
            let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
            let _ = Command::new("bash")
                .arg(repo.join("tests/controlplane/down.sh"))
                .arg(&self.state)
                .output();
        }
    }
}

impl Drop for SecondControlPlane {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// Waits until the Cluster `name`'s `path` (a jsonpath), as the management cluster's admin reads it, is `want`.
#[track_caller]
pub(crate) fn cluster_becomes(name: &str, path: &str, want: &str, timeout: Duration) {
    let admin = env().kubectl("admin");
    eventually(timeout, || {
        let got = admin
            .run(&[
                "get",
                "clusters.config.tenancy.loft.sh",
                name,
                "-o",
                &format!("jsonpath={path}"),
            ])
            .ok();
        if got == want {
            Ok(())
        } else {
            Err(format!("Cluster {name}: {path} is {got:?}, not {want:?}"))
        }
    });
}

/// The kubeconfig the server got for connected cluster `name`, from its Secret in the management cluster.
fn server_kubeconfig(name: &str) -> serde_json::Value {
    let encoded = env()
        .kubectl("admin")
        .run(&[
            "get",
            "secret",
            "-n",
            "tenancy-system",
            &format!("cluster-{name}"),
            "-o",
            "jsonpath={.data.kubeconfig}",
        ])
        .ok();
    let kubeconfig = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .expect("base64");
    serde_json::from_slice(&kubeconfig).expect("a JSON kubeconfig")
}

fn tenancy(args: &[&str]) -> (bool, String) {
    let output = Command::new(env().var("SERVER_BIN"))
        .args(args)
        .output()
        .expect("the server binary runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn connect_makes_a_second_cluster_ready_then_offline_and_disconnect_removes_it() {
    let env = env();
    let admin = env.kubectl("admin");
    let management = env.var("KUBECONFIG_ADMIN").to_owned();
    let mut second = SecondControlPlane::start();
    let name = unique("c2");
    let (ok, out) = tenancy(&[
        "connect",
        "--name",
        &name,
        "--kubeconfig",
        &second.admin_kubeconfig(),
        "--management-kubeconfig",
        &management,
    ]);
    assert!(ok, "connect: {out}");

    // In the connected cluster: the server's identity, whose token may read namespaces and RBAC but not Secrets.
    second.assert_server_identity();
    let kubeconfig = server_kubeconfig(&name);
    let token = kubeconfig["users"][0]["user"]["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let server = second.env.var("APISERVER_URL").to_owned();
    let can = |verb: &str, resource: &str| {
        let output = Command::new(second.env.var("KUBECTL"))
            .args(["--server", &server, "--insecure-skip-tls-verify", "--token", &token])
            .args(["auth", "can-i", verb, resource, "-A"])
            .output()
            .expect("kubectl runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(can("list", "namespaces"), "yes");
    assert_eq!(can("watch", "rolebindings"), "yes");
    assert_eq!(can("get", "secrets"), "no");
    assert_eq!(can("delete", "clusterroles"), "no");

    // Tenants can neither read the kubeconfig nor make Clusters.
    let alice = env.kubectl("alice");
    let read = alice.run(&["get", "secret", "-n", "tenancy-system", &format!("cluster-{name}")]);
    assert!(!read.success && read.stderr.contains("Forbidden"), "{}", read.stderr);
    let cluster =
        format!("apiVersion: config.tenancy.loft.sh/v1\nkind: Cluster\nmetadata:\n  name: {name}-x\nspec: {{}}\n");
    let made = alice.run_with_stdin(&["create", "-f", "-"], Some(&cluster));
    assert!(!made.success && made.stderr.contains("Forbidden"), "{}", made.stderr);

    // The server reports it Ready, with its version and namespaces, and counts it up.
    eventually(SETTLE, || {
        let status = admin
            .run(&[
                "get",
                "cluster",
                &name,
                "-o",
                "jsonpath={.status.phase} {.status.version} {.status.namespaces}",
            ])
            .ok();
        let fields: Vec<&str> = status.split_whitespace().collect();
        match fields.as_slice() {
            ["Ready", version, count] if version.starts_with("v1.37") && count.parse::<u32>().is_ok_and(|n| n >= 4) => {
                Ok(())
            }
            _ => Err(status),
        }
    });
    let up = |value: &str| {
        let (_, metrics) = server_request_as(
            env.var("SERVER_URL"),
            "admin",
            &["system:masters"],
            "GET",
            "/metrics",
            None,
        );
        metrics.contains(&format!("tenancy_apiserver_cluster_up{{cluster=\"{name}\"}} {value}"))
    };
    eventually(SETTLE, || if up("1") { Ok(()) } else { Err("cluster_up not 1") });

    // The cluster carries tenancy's guards, as deploy/ gives them to the management cluster, and the server says so.
    for (kind, names) in [
        (
            "validatingadmissionpolicy",
            "tenancy-namespace-keys tenancy-enforced-objects tenancy-space-domains",
        ),
        (
            "validatingadmissionpolicybinding",
            "tenancy-namespace-keys tenancy-enforced-objects tenancy-space-domains",
        ),
        (
            "clusterrole",
            "tenancy-space-admin tenancy-space-admin-namespace tenancy-shared-reader",
        ),
    ] {
        let mut args = vec!["get", kind];
        args.extend(names.split(' '));
        let (ok, out) = second.kubectl(&args);
        assert!(ok, "{kind} in the connected cluster: {out}");
    }
    cluster_becomes(
        &name,
        "{.status.conditions[?(@.type==\"Guarded\")].status}",
        "True",
        SETTLE,
    );

    // Without a space domain nothing changes for anyone; with one (set on its Cluster), kube-apiserver there refuses
    // a space's owner another space's host; without it again, nothing is refused.
    let ns = unique("dom");
    second.admin().run(&["create", "namespace", &ns]).ok();
    second
        .admin()
        .run(&[
            "create",
            "rolebinding",
            "owner",
            "--clusterrole=admin",
            "--user=owner",
            "-n",
            &ns,
        ])
        .ok();
    let owner = second.kubectl_as("owner", &[]);
    let publish = |host: &str| {
        let ingress = format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{generateName: web-}}\nspec:\n  \
rules: [{{host: {host}, http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: \
{{number: 80}}}}}}}}]}}}}]\n"
        );
        owner.run_with_stdin(&["create", "-n", &ns, "-f", "-"], Some(&ingress))
    };
    publish("anything.example.com").ok();
    let domain = |value: &str| {
        admin
            .run(&[
                "patch",
                "cluster",
                &name,
                "--type=merge",
                "-p",
                &format!(r#"{{"spec":{{"spaceDomain":{value}}}}}"#),
            ])
            .ok();
    };
    domain("\"fresh.test\"");
    eventually(SETTLE, || match publish("again.example.com") {
        run if !run.success && run.stderr.contains(&format!("owns {ns}.fresh.test")) => Ok(()),
        run => Err(run.stderr),
    });
    publish(&format!("web.{ns}.fresh.test")).ok();
    domain("null");
    eventually(SETTLE, || match publish("later.example.com") {
        run if run.success => Ok(()),
        run => Err(run.stderr),
    });

    // It goes away: Offline with the reason, while the server stays ready.
    second.stop();
    eventually(SETTLE, || {
        let status = admin
            .run(&[
                "get",
                "cluster",
                &name,
                "-o",
                "jsonpath={.status.phase}: {.status.conditions[0].message}",
            ])
            .ok();
        if status.starts_with("Offline: ") && status.len() > "Offline: ".len() {
            Ok(())
        } else {
            Err(status)
        }
    });
    eventually(SETTLE, || if up("0") { Ok(()) } else { Err("cluster_up not 0") });
    let (code, body) = server_readyz();
    assert_eq!((code, body.as_str()), (200, "ok"));

    // disconnect removes the Cluster and its Secret.
    let (ok, out) = tenancy(&["disconnect", "--name", &name, "--management-kubeconfig", &management]);
    assert!(ok, "disconnect: {out}");
    let gone = admin.run(&["get", "cluster", &name]);
    assert!(!gone.success && gone.stderr.contains("NotFound"), "{}", gone.stderr);
    let gone = admin.run(&["get", "secret", "-n", "tenancy-system", &format!("cluster-{name}")]);
    assert!(!gone.success && gone.stderr.contains("NotFound"), "{}", gone.stderr);
}
