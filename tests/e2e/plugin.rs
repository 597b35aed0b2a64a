//! `kubectl space` (the `kubectl-space` binary of this crate) as a tenant uses it: with her own kubeconfig and only her
//! own RBAC, through kube-apiserver, run directly and as a kubectl plugin found on PATH.
//!
//! The tenant is a ServiceAccount named alice in a namespace of this test, with a real token: the run's token user
//! alice is the demo tenant whose exact list visibility.rs asserts, so spaces made for her here would race with it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{account, env, eventually, namespace, unique, Run};

const SETTLE: Duration = Duration::from_secs(20);

/// The plugin as built by cargo for this test run.
fn plugin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kubectl-space"))
}

/// Runs `program args` with `KUBECONFIG=kubeconfig` and `extra` environment variables.
fn run(program: &Path, kubeconfig: &Path, args: &[&str], extra: &[(&str, &std::ffi::OsStr)]) -> Run {
    let output = Command::new(program)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{} runs: {e}", program.display()));
    Run {
        args: format!(
            "KUBECONFIG={} {} {}",
            kubeconfig.display(),
            program.display(),
            args.join(" ")
        ),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        success: output.status.success(),
    }
}

/// `kubectl space args` with `kubeconfig`.
pub(crate) fn space(kubeconfig: &Path, args: &[&str]) -> Run {
    run(&plugin_binary(), kubeconfig, args, &[])
}

/// A kubeconfig for ServiceAccount `sa` in `ns` with a fresh token: what a tenant is handed.
pub(crate) fn tenant_kubeconfig(dir: &Path, ns: &str, sa: &str) -> PathBuf {
    let env = env();
    tenant_kubeconfig_at(dir, env.var("APISERVER_URL"), env.var("CA_CERT"), ns, sa)
}

/// [`tenant_kubeconfig`] for the server at `server`, whose certificate `ca` signs.
pub(crate) fn tenant_kubeconfig_at(dir: &Path, server: &str, ca: &str, ns: &str, sa: &str) -> PathBuf {
    let env = env();
    let token = env
        .kubectl("admin")
        .run(&["create", "token", sa, "-n", ns, "--duration=1h"])
        .ok();
    let file = dir.join("alice.kubeconfig");
    std::fs::write(
        &file,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: {server}\n    \
certificate-authority: {ca}\nusers:\n- name: alice\n  user:\n    token: {token}\ncontexts:\n- name: alice@local\n  \
context:\n    cluster: local\n    user: alice\n- name: elsewhere\n  context:\n    cluster: local\n    user: alice\n    \
namespace: untouched\ncurrent-context: alice@local\n",
            token = token.trim(),
        ),
    )
    .expect("writing the tenant's kubeconfig");
    file
}

/// `kubectl space args` (a create), again until it succeeds: the server may be a moment behind a new Account. Its stdout.
pub(crate) fn create_eventually(kubeconfig: &Path, args: &[&str]) -> String {
    eventually(SETTLE, || {
        let run = space(kubeconfig, args);
        if run.success {
            Ok(run.stdout)
        } else {
            Err(run.stderr)
        }
    })
}

/// The cells of `name`'s row in a printed table.
fn row_of<'a>(table: &'a str, name: &str) -> Vec<&'a str> {
    table
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("{name} missing from:\n{table}"))
        .split_whitespace()
        .collect()
}

#[test]
fn a_tenant_lists_creates_uses_and_deletes_her_spaces_with_kubectl_space() {
    let env = env();
    let admin = env.kubectl("admin");
    let (home, acc, other, outsiders) = (
        unique("plugin-home"),
        unique("plugin-acct"),
        unique("plugin-other"),
        unique("team"),
    );
    let not_hers = unique("plugin-not-hers");
    admin.apply(&format!(
        "{}{}apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: alice\n  namespace: {home}\n---\n\
apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {acc}\nspec:\n  \
subjects: [{{kind: ServiceAccount, name: alice, namespace: {home}}}]\n  space: {{limit: 3}}\n---\n{}",
        namespace(&home),
        namespace(&not_hers),
        account(&other, &outsiders, 3, None, ""),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = tenant_kubeconfig(dir.path(), &home, "alice");
    let original = std::fs::read_to_string(&kubeconfig).expect("kubeconfig");

    // Help reads like kubectl's, without a cluster.
    let help = space(&kubeconfig, &["--help"]).ok();
    for part in [
        "Examples:",
        "Available Commands:",
        "Usage:\n  kubectl space",
        "use ",
        "accounts",
    ] {
        assert!(help.contains(part), "{part:?} missing from:\n{help}");
    }
    let help = space(&kubeconfig, &["create", "--help"]).ok();
    assert!(help.contains("Usage:\n  kubectl space create NAME"), "{help}");

    // accounts: hers, and not the one she is not in (the server may be a moment behind the Account's creation).
    eventually(SETTLE, || {
        let out = space(&kubeconfig, &["accounts"]).ok();
        let row: Vec<&str> = out
            .lines()
            .find(|l| l.starts_with(&acc))
            .unwrap_or("")
            .split_whitespace()
            .collect();
        if out.starts_with("NAME") && row.get(1..3) == Some(&["0", "3"][..]) {
            Ok(out)
        } else {
            Err(out)
        }
    });
    let accounts = space(&kubeconfig, &["accounts"]).ok();
    assert!(!accounts.contains(&other), "{accounts}");

    // create, in her account; the space is hers at once.
    let name = unique("plugin-space");
    let created = create_eventually(&kubeconfig, &["create", &name, "--account", &acc]);
    assert_eq!(created, format!("space.tenancy.loft.sh/{name} created\n"));

    // list: her space with the server's columns; never a namespace she has no access to.
    let list = space(&kubeconfig, &["list"]).ok();
    let header: Vec<&str> = list.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "ACCOUNT", "CLUSTER", "PHASE", "AGE"], "{list}");
    let row = row_of(&list, &name);
    assert_eq!(row[..3], [name.as_str(), acc.as_str(), "Active"], "{list}");
    assert!(!list.contains(&not_hers), "{list}");
    assert!(!list.contains(&home), "{list}");
    let names = space(&kubeconfig, &["list", "-o", "name"]).ok();
    assert_eq!(names, format!("space.tenancy.loft.sh/{name}\n"));
    // --kubeconfig works as well as KUBECONFIG.
    let flagged = run(
        &plugin_binary(),
        Path::new("/nonexistent"),
        &[
            "list",
            "-o",
            "name",
            "--kubeconfig",
            kubeconfig.to_str().expect("utf-8 path"),
        ],
        &[],
    )
    .ok();
    assert_eq!(flagged, names);

    // use, on a copy: only the current context's namespace changes; kubectl without -n then works in the space.
    let copy = dir.path().join("copy.kubeconfig");
    std::fs::copy(&kubeconfig, &copy).expect("copying the kubeconfig");
    let used = space(&copy, &["use", &name]).ok();
    assert!(used.contains(&name), "{used}");
    let kubectl = env.path("KUBECTL");
    let current = run(
        &kubectl,
        &copy,
        &["config", "view", "--minify", "-o", "jsonpath={..namespace}"],
        &[],
    )
    .ok();
    assert_eq!(current, name);
    let elsewhere = run(
        &kubectl,
        &copy,
        &[
            "config",
            "view",
            "--minify",
            "--context",
            "elsewhere",
            "-o",
            "jsonpath={..namespace}",
        ],
        &[],
    )
    .ok();
    assert_eq!(elsewhere, "untouched");
    let token_before = run(
        &kubectl,
        &kubeconfig,
        &["config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}"],
        &[],
    )
    .ok();
    let token_after = run(
        &kubectl,
        &copy,
        &["config", "view", "--raw", "-o", "jsonpath={.users[0].user.token}"],
        &[],
    )
    .ok();
    assert_eq!(token_after, token_before);
    run(&kubectl, &copy, &["create", "configmap", "made-without-n"], &[]).ok();
    admin.run(&["get", "configmap", "made-without-n", "-n", &name]).ok();
    assert_eq!(std::fs::read_to_string(&kubeconfig).expect("kubeconfig"), original);

    // use of a space she cannot see: the server's NotFound, and the file stays as it was.
    let before = std::fs::read_to_string(&copy).expect("copy");
    let err = space(&copy, &["use", &not_hers]).err();
    assert!(
        err.contains(&format!(
            "Error from server (NotFound): spaces.tenancy.loft.sh \"{not_hers}\" not found"
        )),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&copy).expect("copy"), before);

    // create in an account she is not a member of: the server's Forbidden, exit non-zero, nothing made.
    let refused = unique("plugin-refused");
    let err = space(&kubeconfig, &["create", &refused, "--account", &other]).err();
    assert!(err.starts_with("Error from server (Forbidden): "), "{err}");
    assert!(err.contains(&format!("not a member of account \"{other}\"")), "{err}");
    let gone = admin.run(&["get", "namespace", &refused]).err();
    assert!(gone.contains("NotFound"), "{gone}");

    // As a kubectl plugin: kubectl finds kubectl-space on PATH.
    let bin_dir = plugin_binary().parent().expect("the binary's directory").to_owned();
    let path = std::env::join_paths(
        std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .expect("a PATH");
    let through_kubectl = run(
        &kubectl,
        &kubeconfig,
        &["space", "list", "-o", "name"],
        &[("PATH", path.as_os_str())],
    )
    .ok();
    assert_eq!(through_kubectl, names);
    let help = run(
        &kubectl,
        &kubeconfig,
        &["space", "--help"],
        &[("PATH", path.as_os_str())],
    )
    .ok();
    assert!(help.contains("Usage:\n  kubectl space [command]"), "{help}");

    // delete: waits until the space is gone from her view.
    let deleted = space(&kubeconfig, &["delete", &name]).ok();
    assert_eq!(deleted, format!("space.tenancy.loft.sh \"{name}\" deleted\n"));
    let after = space(&kubeconfig, &["list", "-o", "name"]);
    assert!(
        after.success && !after.stdout.contains(&name),
        "{}{}",
        after.stdout,
        after.stderr
    );
}

#[test]
fn a_tenant_creates_a_space_from_a_template_in_the_account_that_applies_it() {
    let env = env();
    let admin = env.kubectl("admin");
    let (home, plain, templated, tpl) = (
        unique("plugin-tpl-home"),
        unique("plugin-plain"),
        unique("plugin-templated"),
        unique("plugin-template"),
    );
    let subject = format!("{{kind: ServiceAccount, name: alice, namespace: {home}}}");
    // Two accounts of hers: one with the default template, one with a template declaring a parameter.
    admin.apply(&format!(
        "{}apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: alice\n  namespace: {home}\n---\n\
apiVersion: config.tenancy.loft.sh/v1\nkind: SpaceTemplate\nmetadata:\n  name: {tpl}\nspec:\n  \
parameters:\n  - {{name: tier, default: bronze}}\n  objects:\n  - {{apiVersion: v1, kind: ConfigMap, \
metadata: {{name: settings}}, data: {{tier: \"${{tier}}\", account: \"${{ACCOUNT}}\"}}}}\n---\n\
apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {plain}\nspec:\n  \
subjects: [{subject}]\n  space: {{limit: 3}}\n---\n\
apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {templated}\nspec:\n  \
subjects: [{subject}]\n  space: {{limit: 3, templates: [{tpl}]}}\n",
        namespace(&home),
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = tenant_kubeconfig(dir.path(), &home, "alice");

    let help = space(&kubeconfig, &["create", "--help"]).ok();
    for part in [
        "--template TEMPLATE",
        "--param KEY=VALUE",
        "kubectl space create team-a-web --template web",
    ] {
        assert!(help.contains(part), "{part:?} missing from:\n{help}");
    }

    // --template picks the account that applies it (of her two, while the server may be a moment behind them);
    // --param reaches the template's objects.
    let name = unique("plugin-from-template");
    let created = create_eventually(
        &kubeconfig,
        &["create", &name, "--template", &tpl, "--param", "tier=gold"],
    );
    assert_eq!(created, format!("space.tenancy.loft.sh/{name} created\n"));
    let list = space(&kubeconfig, &["list"]).ok();
    let row = row_of(&list, &name);
    assert_eq!(row[..2], [name.as_str(), templated.as_str()], "{list}");
    let settings = admin
        .run(&[
            "get",
            "configmap",
            "settings",
            "-n",
            &name,
            "-o",
            "jsonpath={.data.tier} {.data.account}",
        ])
        .ok();
    assert_eq!(settings, format!("gold {templated}"));
    // Only that account's templates: not the default one of the other account.
    let quotas = admin.run(&["get", "resourcequota", "-n", &name, "-o", "name"]).ok();
    assert_eq!(quotas, "", "{quotas}");

    // An account that does not apply it, a template none of hers applies, a template two of hers apply: refused before
    // anything is sent, saying why, and nothing is made.
    let refused = unique("plugin-tpl-refused");
    let err = space(
        &kubeconfig,
        &["create", &refused, "--template", &tpl, "--account", &plain],
    )
    .err();
    assert!(
        err.contains(&format!(
            "account \"{plain}\" does not apply template \"{tpl}\"; its templates: default"
        )),
        "{err}"
    );
    let err = space(&kubeconfig, &["create", &refused, "--template", "no-such-template"]).err();
    assert!(
        err.contains("no account of yours applies template \"no-such-template\"")
            && err.contains(&format!("{plain} (default)"))
            && err.contains(&format!("{templated} ({tpl})")),
        "{err}"
    );
    admin.apply(&format!(
        "apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {plain}\nspec:\n  \
subjects: [{subject}]\n  space: {{limit: 3, templates: [default, {tpl}]}}\n"
    ));
    let err = eventually(SETTLE, || {
        let run = space(&kubeconfig, &["create", &refused, "--template", &tpl]);
        if run.stderr.contains("several") {
            Ok(run.stderr)
        } else {
            Err((run.success, run.stderr))
        }
    });
    let mut both = [plain.as_str(), templated.as_str()];
    both.sort_unstable();
    assert!(
        err.contains(&format!(
            "applied by several of your accounts: {}, {}; choose one with --account",
            both[0], both[1]
        )),
        "{err}"
    );
    let gone = admin.run(&["get", "namespace", &refused]).err();
    assert!(gone.contains("NotFound"), "{gone}");

    // A parameter her template does not declare: the server's own refusal, naming the field.
    let err = space(
        &kubeconfig,
        &[
            "create",
            &refused,
            "--template",
            &tpl,
            "--account",
            &templated,
            "--param",
            "tire=gold",
        ],
    )
    .err();
    assert!(err.contains("spec.templateParameters.tire"), "{err}");
    let gone = admin.run(&["get", "namespace", &refused]).err();
    assert!(gone.contains("NotFound"), "{gone}");

    space(&kubeconfig, &["delete", &name, "--wait=false"]).ok();
}
