//! The install path the README gives, `kubectl apply -k deploy/`: rendered by the real kubectl, and every object
//! accepted by the real kube-apiserver (a server-side dry run, since the Deployment's pods cannot run on the local
//! control plane). Kustomize refuses files outside a kustomization's root, so this is where that breaks first.

use crate::harness::env;

#[test]
fn deploy_renders_with_kustomize_and_kube_apiserver_accepts_every_object() {
    let env = env();
    let admin = env.kubectl("admin");
    let deploy = env.path("REPO_DIR").join("deploy");
    let deploy = deploy.to_str().expect("a UTF-8 path");
    let rendered = admin.run(&["kustomize", deploy]).ok();
    for kind in [
        "Namespace",
        "CustomResourceDefinition",
        "ClusterRole",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "APIService",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "SpaceTemplate",
    ] {
        assert!(
            rendered.contains(&format!("\nkind: {kind}\n")),
            "deploy/ renders no {kind}:\n{rendered}"
        );
    }
    let objects = rendered.matches("\nkind: ").count();
    let applied = admin.run(&["apply", "-k", deploy, "--dry-run=server"]).ok();
    let accepted = applied.lines().filter(|l| l.ends_with("(server dry run)")).count();
    assert_eq!(
        accepted, objects,
        "kube-apiserver accepted {accepted} of {objects} objects:\n{applied}"
    );
}
