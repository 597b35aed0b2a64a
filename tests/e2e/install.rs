//! The install paths the README gives: `kubectl apply -k deploy/` and the Helm chart (charts/tenancy-apiserver),
//! rendered by the real kubectl and helm, and every object accepted by the real kube-apiserver (a server-side dry run,
//! since the Deployment's pods cannot run on the local control plane). Kustomize refuses files outside a
//! kustomization's root, so this is where that breaks first. That the chart's defaults are exactly deploy/'s objects
//! is tests/install/same-objects.sh's check.

use base64::Engine as _;

use crate::harness::{env, Kubectl};

/// The kinds every install has.
const KINDS: [&str; 11] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "Deployment",
    "PodDisruptionBudget",
    "ResourceQuota",
    "Service",
    "APIService",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "SpaceTemplate",
];

#[track_caller]
fn assert_kinds(rendered: &str, kinds: &[&str], what: &str) {
    for kind in kinds {
        assert!(
            rendered.contains(&format!("\nkind: {kind}\n")),
            "{what} renders no {kind}:\n{rendered}"
        );
    }
}

/// `kubectl apply --dry-run=server` of a multi-object manifest; every object must be accepted.
#[track_caller]
fn assert_server_accepts(admin: &Kubectl, manifest: &str, what: &str) {
    let objects = documents(manifest).count();
    let applied = admin
        .run_with_stdin(&["apply", "-f", "-", "--dry-run=server"], Some(manifest))
        .ok();
    let accepted = applied.lines().filter(|l| l.ends_with("(server dry run)")).count();
    assert_eq!(
        accepted, objects,
        "kube-apiserver accepted {accepted} of {objects} objects of {what}:\n{applied}"
    );
}

/// The non-empty YAML documents of a manifest (comments alone are empty).
fn documents(manifest: &str) -> impl Iterator<Item = &str> {
    manifest
        .split("\n---\n")
        .filter(|doc| doc.lines().any(|l| l.starts_with("kind: ")))
}

/// The chart rendered as `helm template` renders it for the release namespace deploy/ uses, CRDs included.
fn chart(values: &[&str]) -> String {
    let env = env();
    let chart = env.path("REPO_DIR").join("charts/tenancy-apiserver");
    let chart = chart.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "template",
        "tenancy-apiserver",
        chart,
        "--namespace",
        "tenancy-system",
        "--include-crds",
    ];
    for value in values {
        args.extend(["--set", value]);
    }
    // A leading "---" so that the first document splits like the others.
    format!("---\n{}", env.helm(&args).ok())
}

#[test]
fn deploy_renders_with_kustomize_and_kube_apiserver_accepts_every_object() {
    let env = env();
    let admin = env.kubectl("admin");
    let deploy = env.path("REPO_DIR").join("deploy");
    let deploy = deploy.to_str().expect("a UTF-8 path");
    let rendered = admin.run(&["kustomize", deploy]).ok();
    assert_kinds(&rendered, &KINDS, "deploy/");
    let objects = rendered.matches("\nkind: ").count();
    let applied = admin.run(&["apply", "-k", deploy, "--dry-run=server"]).ok();
    let accepted = applied.lines().filter(|l| l.ends_with("(server dry run)")).count();
    assert_eq!(
        accepted, objects,
        "kube-apiserver accepted {accepted} of {objects} objects:\n{applied}"
    );
}

/// The Deployment's pods run at system-cluster-critical in the server's namespace: kube-apiserver's Priority and
/// ResourceQuota admission must admit such a pod there (a dry run of the Deployment alone creates no pod).
#[test]
fn a_system_cluster_critical_pod_is_admitted_in_the_server_namespace() {
    let admin = env().kubectl("admin");
    let pod = r#"{"spec": {"priorityClassName": "system-cluster-critical"}}"#;
    let created = admin
        .run(&[
            "run",
            "priority-check",
            "--namespace=tenancy-system",
            "--image=tenancy-apiserver:latest",
            "--restart=Never",
            "--overrides",
            pod,
            "--dry-run=server",
            "-o",
            "jsonpath={.spec.priorityClassName} {.spec.priority}",
        ])
        .ok();
    // The Priority admission plugin resolved the class to its value (kubectl prints it as a float: 2e+09).
    let (class, priority) = created.split_once(' ').unwrap_or((&created, ""));
    assert_eq!(class, "system-cluster-critical", "{created}");
    assert!(!priority.is_empty(), "no priority set on the pod: {created}");
}

#[test]
fn chart_defaults_render_and_kube_apiserver_accepts_every_object() {
    let admin = env().kubectl("admin");
    let rendered = chart(&[]);
    assert_kinds(&rendered, &KINDS, "the chart");
    for helm_only in [
        "helm.sh/chart",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/instance",
    ] {
        assert!(!rendered.contains(helm_only), "the chart adds {helm_only}:\n{rendered}");
    }
    assert_server_accepts(&admin, &rendered, "the chart's defaults");
}

#[test]
fn chart_with_an_existing_secret_and_its_ca_bundle_is_accepted() {
    let env = env();
    let admin = env.kubectl("admin");
    let ca = std::fs::read(env.path("SERVER_CA_CERT")).expect("the server's CA certificate");
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    let ca_value = format!("certificates.caBundle={ca_bundle}");
    let rendered = chart(&[
        "certificates.mode=existingSecret",
        "certificates.secretName=my-serving",
        &ca_value,
        "accessMode=sar",
        "replicas=3",
        "defaultTemplate.enabled=false",
    ]);
    assert!(rendered.contains(&format!("caBundle: \"{ca_bundle}\"")), "{rendered}");
    assert!(rendered.contains("secretName: my-serving"), "{rendered}");
    assert!(rendered.contains("- --access-mode=sar"), "{rendered}");
    assert!(rendered.contains("replicas: 3"), "{rendered}");
    assert!(!rendered.contains("\nkind: SpaceTemplate\n"), "{rendered}");
    assert_server_accepts(&admin, &rendered, "the chart with an existing Secret");
}

#[test]
fn chart_with_self_signed_certificates_is_accepted() {
    let admin = env().kubectl("admin");
    let rendered = chart(&["certificates.mode=selfSigned"]);
    assert_kinds(&rendered, &["Secret", "APIService"], "the chart (selfSigned)");
    let secret = documents(&rendered)
        .find(|doc| doc.contains("\nkind: Secret\n"))
        .expect("a Secret");
    let ca = secret
        .lines()
        .find_map(|l| l.strip_prefix("  ca.crt: "))
        .expect("the Secret's ca.crt");
    assert!(
        rendered.contains(&format!("caBundle: \"{ca}\"")),
        "the APIService does not trust the Secret's CA:\n{rendered}"
    );
    assert_server_accepts(&admin, &rendered, "the chart with self-signed certificates");
}

/// cert-manager's CRDs are not on the local control plane: its objects must render, everything else is accepted.
#[test]
fn chart_with_cert_manager_renders_its_certificate_and_the_rest_is_accepted() {
    let admin = env().kubectl("admin");
    let rendered = chart(&["certificates.mode=certManager"]);
    assert_kinds(
        &rendered,
        &["Certificate", "Issuer", "APIService"],
        "the chart (certManager)",
    );
    let apiservice = documents(&rendered)
        .find(|doc| doc.contains("\nkind: APIService\n"))
        .expect("an APIService");
    assert!(
        apiservice.contains("cert-manager.io/inject-ca-from: tenancy-system/tenancy-apiserver-serving"),
        "{apiservice}"
    );
    assert!(
        !apiservice.contains("\n  caBundle:"),
        "cert-manager injects caBundle:\n{apiservice}"
    );
    let certificate = documents(&rendered)
        .find(|doc| doc.contains("\nkind: Certificate\n"))
        .expect("a Certificate");
    for want in [
        "secretName: tenancy-apiserver-serving",
        "\"tenancy-apiserver.tenancy-system.svc\"",
    ] {
        assert!(certificate.contains(want), "no {want} in:\n{certificate}");
    }
    let rest: String = documents(&rendered)
        .filter(|doc| !doc.contains("\napiVersion: cert-manager.io/"))
        .map(|doc| format!("---\n{doc}\n"))
        .collect();
    assert_server_accepts(
        &admin,
        &rest,
        "the chart with cert-manager (without cert-manager's objects)",
    );
}
