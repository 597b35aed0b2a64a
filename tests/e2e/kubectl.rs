//! The kubectl verbs on spaces, as tenants with only their own RBAC, through kube-apiserver.

use std::time::Duration;

use crate::harness::{env, eventually, namespace, role_binding, unique, Kubectl};

/// A tenant allowed to create namespaces (so the server lets them self-serve spaces), and nothing else.
fn creator() -> (String, Kubectl) {
    let env = env();
    let user = unique("creator");
    env.kubectl("admin").apply(&format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: tenancy-e2e-namespace-creator\n\
rules:\n- apiGroups: [\"\"]\n  resources: [\"namespaces\"]\n  verbs: [\"create\"]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: {user}\n\
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tenancy-e2e-namespace-creator}}\n\
subjects: [{{apiGroup: rbac.authorization.k8s.io, kind: User, name: {user}}}]\n"
    ));
    let kubectl = env.kubectl_as(&user, &[]);
    (user, kubectl)
}

fn space(name: &str, labels: &str) -> String {
    format!("apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\n")
}

/// Creates a space, retrying while a fresh ClusterRoleBinding is not yet in kube-apiserver's authorizer cache.
fn create(tenant: &Kubectl, manifest: &str) -> String {
    eventually(Duration::from_secs(20), || {
        let run = tenant.run_with_stdin(&["create", "-f", "-"], Some(manifest));
        if run.success {
            Ok(run.stdout)
        } else {
            Err(run.stderr)
        }
    })
}

#[test]
fn a_tenant_creates_uses_changes_and_deletes_a_space_with_plain_kubectl() {
    let (_, tenant) = creator();
    let name = unique("own");
    let created = create(&tenant, &space(&name, "env: dev"));
    assert_eq!(created.trim(), format!("space.tenancy.loft.sh/{name} created"));
    // Read-after-create, and the owner binding: usable at once.
    assert_eq!(tenant.space_names(&[]), std::slice::from_ref(&name));
    tenant
        .run(&["-n", &name, "create", "configmap", "settings", "--from-literal=a=b"])
        .ok();
    tenant
        .run(&["-n", &name, "create", "deployment", "web", "--image=nginx"])
        .ok();

    // Output formats.
    let yaml = tenant.run(&["get", "space", &name, "-o", "yaml"]).ok();
    assert!(
        yaml.contains("kind: Space") && yaml.contains("phase: Active") && yaml.contains("env: dev"),
        "{yaml}"
    );
    assert!(yaml.contains("tenancy.loft.sh/creator:"), "{yaml}");
    let jsonpath = tenant
        .run(&["get", "space", &name, "-o", "jsonpath={.status.phase}"])
        .ok();
    assert_eq!(jsonpath, "Active");
    let columns = tenant
        .run(&[
            "get",
            "spaces",
            "-o",
            "custom-columns=N:.metadata.name,P:.status.phase",
            "--no-headers",
        ])
        .ok();
    assert_eq!(
        columns.split_whitespace().collect::<Vec<_>>(),
        [name.as_str(), "Active"]
    );
    let with_label = tenant.run(&["get", "spaces", "-L", "env", "--no-headers"]).ok();
    assert!(with_label.trim_end().ends_with("dev"), "{with_label}");
    let sorted = tenant
        .run(&["get", "spaces", "--sort-by=.metadata.name", "-o", "name"])
        .ok();
    assert_eq!(sorted.trim(), format!("space.tenancy.loft.sh/{name}"));
    let described = tenant.run(&["describe", "space", &name]).ok();
    assert!(described.contains(&name) && described.contains("Active"), "{described}");

    // Labels, annotations and patches round-trip to the namespace.
    tenant.run(&["label", "space", &name, "tier=gold"]).ok();
    tenant.run(&["annotate", "space", &name, "note=hello"]).ok();
    tenant
        .run(&[
            "patch",
            "space",
            &name,
            "--type",
            "merge",
            "-p",
            r#"{"metadata":{"labels":{"merged":"yes"}}}"#,
        ])
        .ok();
    tenant
        .run(&[
            "patch",
            "space",
            &name,
            "--type",
            "json",
            "-p",
            r#"[{"op":"add","path":"/metadata/labels/json","value":"yes"}]"#,
        ])
        .ok();
    let labels = env()
        .kubectl("admin")
        .run(&["get", "namespace", &name, "-o", "jsonpath={.metadata.labels}"])
        .ok();
    for label in [
        r#""tier":"gold""#,
        r#""merged":"yes""#,
        r#""json":"yes""#,
        r#""env":"dev""#,
    ] {
        assert!(labels.contains(label), "{label} missing from the namespace: {labels}");
    }
    let note = env()
        .kubectl("admin")
        .run(&["get", "namespace", &name, "-o", "jsonpath={.metadata.annotations.note}"])
        .ok();
    assert_eq!(note, "hello");
    let err = tenant
        .run(&[
            "patch",
            "space",
            &name,
            "--type",
            "strategic",
            "-p",
            r#"{"metadata":{"labels":{"s":"1"}}}"#,
        ])
        .err();
    assert!(
        err.contains("the body of the request was in an unknown format"),
        "{err}"
    );
    let err = tenant
        .run(&["label", "space", &name, "tenancy.loft.sh/account=stolen"])
        .err();
    assert!(
        err.contains("is invalid") && err.contains("managed by the server"),
        "{err}"
    );

    // edit through $KUBE_EDITOR, apply twice (client- and server-side).
    let edited = tenant
        .run_env(
            &["edit", "space", &name],
            &[("KUBE_EDITOR", "sed -i s/tier:\\ gold/tier:\\ silver/")],
        )
        .ok();
    assert!(edited.contains("edited"), "{edited}");
    let manifest = space(&name, "env: prod");
    let first = tenant.run_with_stdin(&["apply", "-f", "-"], Some(&manifest)).ok();
    let second = tenant.run_with_stdin(&["apply", "-f", "-"], Some(&manifest)).ok();
    assert!(first.contains("configured"), "{first}");
    assert!(second.contains("unchanged"), "{second}");
    for _ in 0..2 {
        let out = tenant
            .run_with_stdin(&["apply", "--server-side", "-f", "-"], Some(&manifest))
            .ok();
        assert!(out.contains("serverside-applied"), "{out}");
    }
    let labels = tenant
        .run(&[
            "get",
            "space",
            &name,
            "-o",
            "jsonpath={.metadata.labels.env} {.metadata.labels.tier}",
        ])
        .ok();
    assert_eq!(labels, "prod silver");

    // A stale update is a conflict.
    let stale = tenant.run(&["get", "space", &name, "-o", "json"]).ok();
    tenant.run(&["label", "space", &name, "bump=1"]).ok();
    let err = tenant.run_with_stdin(&["replace", "-f", "-"], Some(&stale)).err();
    assert!(
        err.contains("Conflict") && err.contains("the object has been modified"),
        "{err}"
    );

    assert_eq!(tenant.run(&["auth", "can-i", "delete", "spaces"]).ok().trim(), "yes");
    let deleted = tenant.run(&["delete", "space", &name, "--wait", "--timeout=60s"]).ok();
    assert!(deleted.contains("deleted"), "{deleted}");
    let err = tenant.run(&["get", "space", &name]).err();
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn a_visible_space_the_tenant_may_not_change_is_forbidden() {
    let env = env();
    let name = unique("readonly");
    let user = unique("viewer");
    env.kubectl("admin")
        .apply(&(namespace(&name) + &role_binding(&name, "view", "ClusterRole/view", &[&format!("User:{user}")])));
    let viewer = env.kubectl_as(&user, &[]);
    eventually(Duration::from_secs(10), || {
        let seen = viewer.space_names(&[]);
        if seen == [name.clone()] {
            Ok(())
        } else {
            Err(seen)
        }
    });
    for args in [
        vec!["label", "space", &name, "a=b"],
        vec!["delete", "space", &name, "--wait=false"],
    ] {
        let err = viewer.run(&args).err();
        assert!(err.contains("Forbidden") && err.contains("cannot"), "{args:?}: {err}");
    }
    let labels = env
        .kubectl("admin")
        .run(&["get", "namespace", &name, "-o", "jsonpath={.metadata.labels.a}"])
        .ok();
    assert_eq!(labels, "", "nothing changed");
}

#[test]
fn a_hidden_space_cannot_be_changed_and_says_not_found() {
    let env = env();
    let name = unique("hidden-w");
    env.kubectl("admin").apply(&namespace(&name));
    let (_, stranger) = creator();
    for args in [
        vec!["label", "space", &name, "a=b"],
        vec!["annotate", "space", &name, "a=b"],
        vec!["delete", "space", &name],
        vec!["patch", "space", &name, "--type", "merge", "-p", "{}"],
    ] {
        let err = stranger.run(&args).err();
        assert!(
            err.contains(&format!("spaces.tenancy.loft.sh \"{name}\" not found")),
            "{args:?}: {err}"
        );
    }
    // Creating it tells that the name is taken, as kube-apiserver does for any namespace: names are global.
    let err = stranger
        .run_with_stdin(&["create", "-f", "-"], Some(&space(&name, "")))
        .err();
    assert!(err.contains("AlreadyExists") || err.contains("Forbidden"), "{err}");
}

#[test]
fn creating_needs_the_right_to_create_namespaces_and_a_valid_name() {
    let env = env();
    let nobody = env.kubectl_as(&unique("nobody"), &[]);
    let name = unique("denied");
    let err = nobody
        .run_with_stdin(&["create", "-f", "-"], Some(&space(&name, "")))
        .err();
    assert!(
        err.contains("Forbidden") && err.contains("cannot create resource \"namespaces\""),
        "{err}"
    );

    let (_, tenant) = creator();
    // Wait until the creator's binding is effective, with a dry run that creates nothing.
    let probe = unique("probe");
    let out = create(&tenant, &space(&probe, "")).replace("created", "");
    assert!(out.contains(&probe));
    tenant.run(&["delete", "space", &probe, "--wait=false"]).ok();

    for (bad, words) in [
        ("kube-mine", "reserved"),
        ("default", "reserved"),
        ("Not_A_Label", "RFC 1123"),
    ] {
        let err = tenant
            .run_with_stdin(&["create", "-f", "-"], Some(&space(bad, "")))
            .err();
        assert!(err.contains("is invalid") && err.contains(words), "{bad}: {err}");
    }
    let dry = unique("dry");
    let out = tenant
        .run_with_stdin(&["create", "--dry-run=server", "-f", "-"], Some(&space(&dry, "")))
        .ok();
    assert!(out.contains("created (server dry run)"), "{out}");
    let err = env.kubectl("admin").run(&["get", "namespace", &dry]).err();
    assert!(err.contains("NotFound"), "a dry run created {dry}: {err}");
}

/// Unknown fields, as kube-apiserver treats them: kubectl's default (`--validate=strict`) is refused with the field's
/// path, `--validate=warn` is applied with a warning per field, `--validate=false` silently; patches alike.
#[test]
fn unknown_fields_are_refused_warned_about_or_ignored_as_kubectl_asks() {
    let (_, tenant) = creator();
    let name = unique("strict");
    let typo = format!("{}spec:\n  acount: team-a\n", space(&name, ""));
    // Waits out the creator's fresh binding, as `create` does, but for the refusal.
    let refused = eventually(Duration::from_secs(20), || {
        let run = tenant.run_with_stdin(&["create", "-f", "-"], Some(&typo));
        if !run.success && run.stderr.contains("BadRequest") {
            Ok(run.stderr)
        } else {
            Err((run.stdout, run.stderr))
        }
    });
    assert!(
        refused.contains(r#"strict decoding error: unknown field "spec.acount""#),
        "{refused}"
    );
    env().kubectl("admin").run(&["get", "namespace", &name]).err();

    let warned = tenant.run_with_stdin(&["create", "--validate=warn", "-f", "-"], Some(&typo));
    assert!(warned.success, "{}", warned.stderr);
    assert!(
        warned.stderr.contains(r#"Warning: unknown field "spec.acount""#),
        "{}",
        warned.stderr
    );

    // kubectl patch sends no fieldValidation: kube-apiserver's default, Warn.
    let patch = r#"{"metadata":{"labels":{"tier":"gold"},"lables":{"x":"y"}}}"#;
    let warned = tenant.run(&["patch", "space", &name, "--type", "merge", "-p", patch]);
    assert!(warned.success, "{}", warned.stderr);
    assert!(
        warned.stderr.contains(r#"Warning: unknown field "metadata.lables""#),
        "{}",
        warned.stderr
    );
    let label = |tenant: &Kubectl| {
        tenant
            .run(&["get", "space", &name, "-o", "jsonpath={.metadata.labels.tier}"])
            .ok()
    };
    assert_eq!(label(&tenant), "gold");
    // kubectl apply patches, and replace puts, with Strict: refused, and nothing changes.
    let silver = format!("{}spec:\n  acount: team-a\n", space(&name, "tier: silver"));
    for verb in ["apply", "replace"] {
        let err = tenant.run_with_stdin(&[verb, "-f", "-"], Some(&silver)).err();
        assert!(
            err.contains(r#"strict decoding error: unknown field "spec.acount""#),
            "{verb}: {err}"
        );
        assert_eq!(label(&tenant), "gold", "a refused {verb} changed the space");
    }
    let ignored = tenant.run_with_stdin(&["apply", "--validate=false", "-f", "-"], Some(&silver));
    assert!(
        ignored.success && !ignored.stderr.contains("unknown field"),
        "{}",
        ignored.stderr
    );
    assert_eq!(label(&tenant), "silver");
    tenant.run(&["delete", "space", &name, "--wait=false"]).ok();
}
