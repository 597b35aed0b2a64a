//! Shared spaces, end to end. A shared space is visible to every authenticated user, so this runs as its own test
//! binary — cargo runs test binaries one after another — to keep it out of the e2e suite's exact per-user lists.

#[path = "../e2e/harness.rs"]
#[allow(
    dead_code,
    reason = "the harness serves both test binaries; this one uses part of it"
)]
mod harness;

use std::time::Duration;

use harness::{env, eventually, namespace, unique};

const SETTLE: Duration = Duration::from_secs(20);

/// Deletes the shared namespace even when an assertion fails, so no later run sees it.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = env()
            .kubectl("admin")
            .run(&["delete", "namespace", &self.0, "--wait=false"]);
    }
}

#[test]
fn a_shared_space_is_listed_by_every_tenant_its_services_readable_and_nothing_writable() {
    let env = env();
    let admin = env.kubectl("admin");
    let shared = unique("shared-certs");
    let _cleanup = Cleanup(shared.clone());
    admin.apply(&namespace(&shared));
    admin
        .run(&[
            "-n",
            &shared,
            "create",
            "service",
            "clusterip",
            "cert-issuer",
            "--tcp=443:8443",
        ])
        .ok();
    let tenant = env.kubectl_as(&unique("anyone"), &[&unique("team")]);
    let mut watch = tenant.watch_events("spaces");
    // Other runs' shared spaces may come and go on this watch; this one must not be there yet.
    let first = watch.rest(Duration::from_secs(3));
    assert!(first.iter().all(|l| !l.ends_with(&shared)), "not shared yet: {first:?}");

    // Only an admin can share: tenants cannot set the server's labels on a space.
    let err = tenant
        .run(&["label", "space", &shared, "tenancy.loft.sh/shared=true"])
        .err();
    assert!(err.contains("NotFound"), "{err}");
    admin
        .run(&["label", "namespace", &shared, "tenancy.loft.sh/shared=true"])
        .ok();
    watch.expect_eventually(&format!("ADDED {shared}"), SETTLE);
    let listed = tenant.run(&["get", "spaces", "-o", "name"]).ok();
    assert!(listed.contains(&format!("space.tenancy.loft.sh/{shared}")), "{listed}");

    // Its services are readable; nothing else is, and nothing is writable.
    let services = tenant.run(&["-n", &shared, "get", "services", "-o", "name"]).ok();
    assert_eq!(services.trim(), "service/cert-issuer");
    let err = tenant.run(&["-n", &shared, "get", "configmaps"]).err();
    assert!(err.to_lowercase().contains("forbidden"), "{err}");
    let err = tenant.run(&["-n", &shared, "create", "configmap", "x"]).err();
    assert!(err.to_lowercase().contains("forbidden"), "{err}");
    let err = tenant.run(&["-n", &shared, "delete", "service", "cert-issuer"]).err();
    assert!(err.to_lowercase().contains("forbidden"), "{err}");
    let err = tenant.run(&["label", "space", &shared, "mine=yes"]).err();
    assert!(err.to_lowercase().contains("forbidden"), "{err}");
    let err = tenant.run(&["delete", "space", &shared, "--wait=false"]).err();
    assert!(err.to_lowercase().contains("forbidden"), "{err}");

    // Unsharing takes it away again, with a DELETED on the open watch.
    admin
        .run(&["label", "namespace", &shared, "tenancy.loft.sh/shared-"])
        .ok();
    watch.expect_eventually(&format!("DELETED {shared}"), SETTLE);
    eventually(SETTLE, || {
        let run = tenant.run(&["-n", &shared, "get", "services"]);
        if run.stderr.to_lowercase().contains("forbidden") {
            Ok(())
        } else {
            Err(run.stdout)
        }
    });
}
