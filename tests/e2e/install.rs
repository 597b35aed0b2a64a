//! The install paths the README gives: `kubectl apply -k deploy/` and the Helm chart (charts/tenancy-apiserver),
//! rendered by the real kubectl and helm, and every object accepted by the real kube-apiserver (a server-side dry run,
//! since the Deployment's pods cannot run on the local control plane). Kustomize refuses files outside a
//! kustomization's root, so this is where that breaks first. That the chart's defaults are exactly deploy/'s objects
//! is tests/install/same-objects.sh's check.

use base64::Engine as _;

use crate::harness::{env, unique, Kubectl};

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

/// `kubectl apply -k DIR --dry-run=server`: kube-apiserver accepts every object of `rendered` (DIR's kustomize output).
#[track_caller]
fn assert_kustomization_accepted(admin: &Kubectl, dir: &str, rendered: &str) {
    let objects = rendered.matches("\nkind: ").count();
    let applied = admin.run(&["apply", "-k", dir, "--dry-run=server"]).ok();
    let accepted = applied.lines().filter(|l| l.ends_with("(server dry run)")).count();
    assert_eq!(
        accepted, objects,
        "kube-apiserver accepted {accepted} of {objects} objects of {dir}:\n{applied}"
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
    // A versioned image that a node may already have: never `latest`, which means Always pull of a tag nobody publishes.
    let image = format!("image: tenancy-apiserver:{}\n", env!("CARGO_PKG_VERSION"));
    assert!(rendered.contains(&image), "deploy/ runs no {image}{rendered}");
    assert!(rendered.contains("imagePullPolicy: IfNotPresent\n"), "{rendered}");
    assert_kustomization_accepted(&admin, deploy, &rendered);
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
            "--image=tenancy-apiserver:0.1.0",
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

/// One replica and a PodDisruptionBudget of minAvailable 1 would block every node drain: no PDB then.
#[test]
fn chart_with_one_replica_has_no_disruption_budget() {
    let admin = env().kubectl("admin");
    let rendered = chart(&["replicas=1"]);
    assert!(rendered.contains("replicas: 1\n"), "{rendered}");
    assert!(!rendered.contains("\nkind: PodDisruptionBudget\n"), "{rendered}");
    assert_server_accepts(&admin, &rendered, "the chart with one replica");
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

/// Every one of `wants` is in `doc`.
#[track_caller]
fn assert_contains_all(doc: &str, wants: &[&str]) {
    for want in wants {
        assert!(doc.contains(want), "no {want} in:\n{doc}");
    }
}

/// The document of `kind` named `name` in a rendered manifest.
#[track_caller]
fn object<'a>(rendered: &'a str, kind: &str, name: &str) -> &'a str {
    documents(rendered)
        .find(|doc| doc.contains(&format!("\nkind: {kind}\n")) && doc.contains(&format!("\n  name: {name}\n")))
        .unwrap_or_else(|| panic!("no {kind} {name} in:\n{rendered}"))
}

/// cert-manager's CRDs are not on the local control plane: its objects must render, everything else is accepted.
/// Without an issuer of the user's, the chain is cert-manager's usual one: a self-signed Issuer makes a CA, a CA Issuer
/// signs the serving certificate, and the APIService trusts the CA, so a renewed serving certificate is still trusted.
#[test]
fn chart_with_cert_manager_renders_its_ca_chain_and_the_rest_is_accepted() {
    let admin = env().kubectl("admin");
    let rendered = chart(&["certificates.mode=certManager"]);
    assert_kinds(
        &rendered,
        &["Certificate", "Issuer", "APIService"],
        "the chart (certManager)",
    );
    let self_signed = object(&rendered, "Issuer", "tenancy-apiserver-selfsigned");
    assert!(self_signed.contains("\n  selfSigned: {}"), "{self_signed}");
    let ca = object(&rendered, "Certificate", "tenancy-apiserver-ca");
    assert_contains_all(
        ca,
        &[
            "isCA: true",
            "secretName: tenancy-apiserver-ca",
            "name: tenancy-apiserver-selfsigned",
        ],
    );
    let ca_issuer = object(&rendered, "Issuer", "tenancy-apiserver-ca");
    assert!(
        ca_issuer.contains("\n  ca:\n    secretName: tenancy-apiserver-ca"),
        "{ca_issuer}"
    );
    let serving = object(&rendered, "Certificate", "tenancy-apiserver-serving");
    assert_contains_all(
        serving,
        &[
            "secretName: tenancy-apiserver-serving",
            "\"tenancy-apiserver.tenancy-system.svc\"",
            "issuerRef:\n    kind: Issuer\n    name: tenancy-apiserver-ca",
        ],
    );
    assert!(!serving.contains("isCA"), "{serving}");
    let apiservice = object(&rendered, "APIService", "v1.tenancy.loft.sh");
    assert!(
        apiservice.contains("cert-manager.io/inject-ca-from: tenancy-system/tenancy-apiserver-ca\n"),
        "the APIService must trust the CA, not the serving certificate:\n{apiservice}"
    );
    assert!(
        !apiservice.contains("\n  caBundle:"),
        "cert-manager injects caBundle:\n{apiservice}"
    );
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

/// With an issuer of the user's, the chart makes no CA: the serving certificate comes from that issuer, and the
/// APIService trusts the ca.crt it puts in the serving Secret.
#[test]
fn chart_with_cert_manager_and_an_issuer_of_ones_own_makes_no_ca() {
    let rendered = chart(&[
        "certificates.mode=certManager",
        "certificates.certManager.issuerRef.kind=ClusterIssuer",
        "certificates.certManager.issuerRef.name=platform-ca",
    ]);
    assert!(!rendered.contains("\nkind: Issuer\n"), "{rendered}");
    assert!(!rendered.contains("name: tenancy-apiserver-ca\n"), "{rendered}");
    let serving = object(&rendered, "Certificate", "tenancy-apiserver-serving");
    assert!(
        serving.contains("kind: ClusterIssuer\n    name: platform-ca"),
        "{serving}"
    );
    let apiservice = object(&rendered, "APIService", "v1.tenancy.loft.sh");
    assert!(
        apiservice.contains("cert-manager.io/inject-ca-from: tenancy-system/tenancy-apiserver-serving\n"),
        "{apiservice}"
    );
}

/// `tenancy-apiserver certs --kustomize-base deploy/` writes an overlay that installs everything with no hand
/// edit: deploy/'s objects, the serving Secret and the APIService's caBundle, all accepted by kube-apiserver. The
/// Secret and the Helm values it writes install the chart the same way (existingSecret, for GitOps).
#[test]
fn certs_writes_a_kustomize_overlay_and_helm_values_that_install_the_serving_certificate() {
    let env = env();
    let admin = env.kubectl("admin");
    let dir = env.path("STATE_DIR").join("install-certs").join(unique("overlay"));
    let deploy = env.path("REPO_DIR").join("deploy");
    let output = std::process::Command::new(env.var("SERVER_BIN"))
        .arg("certs")
        .arg("--out-dir")
        .arg(&dir)
        .arg("--kustomize-base")
        .arg(&deploy)
        .output()
        .expect("tenancy-apiserver certs runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let ca = std::fs::read(dir.join("ca.crt")).expect("certs writes ca.crt");
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);

    let kustomization = std::fs::read_to_string(dir.join("kustomization.yaml")).expect("a kustomization.yaml");
    assert!(
        !kustomization.contains(&format!("  - {}\n", deploy.display())),
        "the base is written relative to the overlay, as kustomize reads it:\n{kustomization}"
    );
    let overlay = dir.to_str().expect("a UTF-8 path");
    let rendered = format!("---\n{}", admin.run(&["kustomize", overlay]).ok());
    assert_kinds(&rendered, &KINDS, "the certs overlay");
    let secret = object(&rendered, "Secret", "tenancy-apiserver-serving");
    assert_contains_all(
        secret,
        &[
            "namespace: tenancy-system\n",
            "type: kubernetes.io/tls",
            "tls.crt: ",
            "tls.key: ",
            &format!("ca.crt: {ca_bundle}\n"),
        ],
    );
    let apiservice = object(&rendered, "APIService", "v1.tenancy.loft.sh");
    assert!(apiservice.contains(&format!("caBundle: {ca_bundle}\n")), "{apiservice}");
    assert_kustomization_accepted(&admin, overlay, &rendered);

    let values = dir.join("helm-values.yaml");
    let chart_dir = env.path("REPO_DIR").join("charts/tenancy-apiserver");
    let rendered = env
        .helm(&[
            "template",
            "tenancy-apiserver",
            chart_dir.to_str().expect("a UTF-8 path"),
            "--namespace",
            "tenancy-system",
            "-f",
            values.to_str().expect("a UTF-8 path"),
        ])
        .ok();
    let rendered = format!("---\n{rendered}");
    let apiservice = object(&rendered, "APIService", "v1.tenancy.loft.sh");
    assert!(
        apiservice.contains(&format!("caBundle: \"{ca_bundle}\"")),
        "{apiservice}"
    );
    assert!(
        !rendered.contains("\nkind: Secret\n"),
        "existingSecret renders no Secret:\n{rendered}"
    );
    let secret = std::fs::read_to_string(dir.join("secret.yaml")).expect("a secret.yaml");
    let with_secret = format!("---\n{secret}{rendered}");
    assert_server_accepts(&admin, &with_secret, "the chart with certs' Secret and values");
}
