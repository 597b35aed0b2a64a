//! Space domains end to end, at each site: a space owns `<namespace>.<base>` (its Space's status and the DOMAIN column
//! say so) and its account's extra suffixes, and the site's kube-apiserver itself refuses a tenant, with plain kubectl,
//! every other hostname: Ingress hosts and TLS hosts, no host, a default backend, a wildcard beyond the space, a
//! ClusterIssuer other than the shared one, cert-manager Certificates for foreign names or CAs, and CertificateRequests
//! against a ClusterIssuer; on create and on update, with nothing made. The cluster's admin may do anything.

use std::sync::Mutex;

use crate::harness::{account, create_space, env, eventually, namespace, unique, Kubectl};
use crate::plugin::{create_eventually, space as plugin, tenant_kubeconfig};
use crate::sites::Site;
use std::time::Duration;

const SETTLE: Duration = Duration::from_secs(30);

/// An Ingress `name` routing `host` (none: a rule without a host) to service web, with TLS for `tls` when given, and
/// `annotations` (a YAML flow mapping's entries).
fn ingress(name: &str, host: Option<&str>, tls: &[&str], annotations: &str) -> String {
    let host = host.map_or(String::new(), |h| format!("host: \"{h}\", "));
    let tls = if tls.is_empty() {
        String::new()
    } else {
        let hosts: Vec<String> = tls.iter().map(|h| format!("\"{h}\"")).collect();
        format!("  tls: [{{hosts: [{}], secretName: {name}-tls}}]\n", hosts.join(", "))
    };
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{{annotations}}}}}\n\
spec:\n  rules: [{{{host}http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: \
{{number: 80}}}}}}}}]}}}}]\n{tls}"
    )
}

/// A cert-manager Certificate `name` with `spec` (YAML flow mapping entries besides secretName).
fn certificate(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {{name: {name}}}\n\
spec: {{secretName: {name}, {spec}}}\n"
    )
}

/// What cert-manager's chart gives namespace admins (its role cert-manager-edit), and the like for Gateway API routes
/// (which a platform team using it grants), so a space's owners may use them.
const TENANT_ROLES: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  \
name: cert-manager-edit\n  labels: {rbac.authorization.k8s.io/aggregate-to-admin: \"true\", \
rbac.authorization.k8s.io/aggregate-to-edit: \"true\"}\nrules:\n- apiGroups: [cert-manager.io]\n  \
resources: [certificates, certificaterequests, issuers]\n  \
verbs: [get, list, watch, create, delete, deletecollection, patch, update]\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  \
name: gateway-api-edit\n  labels: {rbac.authorization.k8s.io/aggregate-to-admin: \"true\"}\nrules:\n\
- apiGroups: [gateway.networking.k8s.io]\n  resources: [gateways, httproutes, grpcroutes, tlsroutes]\n  \
verbs: [get, list, watch, create, delete, patch, update]\n";

/// cert-manager's and Gateway API's CRDs in the site's cluster (from the modules the run took them from), and the
/// roles that let a space's owners use them: once per cluster.
fn hostname_kinds(site: &Site) {
    static DONE: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let key = site.name().to_owned();
    if done.contains(&key) {
        return;
    }
    let admin = site.admin();
    for file in ["CERT_MANAGER_CRDS", "GATEWAY_API_CRDS"] {
        let crds = std::fs::read_to_string(env().var(file)).expect("the run's CRDs");
        admin
            .run_with_stdin(&["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&crds))
            .ok();
    }
    admin.apply(TENANT_ROLES);
    admin
        .run(&[
            "wait",
            "--for=condition=Established",
            "crd/certificates.cert-manager.io",
            "crd/certificaterequests.cert-manager.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/httproutes.gateway.networking.k8s.io",
            "crd/grpcroutes.gateway.networking.k8s.io",
            "crd/tlsroutes.gateway.networking.k8s.io",
            "--timeout=60s",
        ])
        .ok();
    done.push(key);
}

/// A Gateway API object of `kind` named `name` with `spec` (YAML flow mapping entries).
fn gateway_api(kind: &str, name: &str, spec: &str) -> String {
    format!("apiVersion: gateway.networking.k8s.io/v1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec: {{{spec}}}\n")
}

/// `manifest` created by `who` in namespace `ns` is refused with a message holding each of `words`, and nothing of
/// kind `kind` named `name` is there afterwards.
#[track_caller]
fn refused(who: &Kubectl, admin: &Kubectl, ns: &str, (kind, name): (&str, &str), manifest: &str, words: &[&str]) {
    let stderr = who
        .run_with_stdin(&["create", "-n", ns, "-f", "-"], Some(manifest))
        .err();
    for word in words {
        assert!(
            stderr.contains(word),
            "{kind} {name}: {word:?} not in the refusal: {stderr}"
        );
    }
    let left = admin.run(&["get", kind, name, "-n", ns]);
    assert!(!left.success, "{kind} {name} was made though refused");
}

/// `manifest` created by `who` in namespace `ns`, tried again while refused: what it needs may be a moment away (a
/// CRD just established, an account's suffix on its way to the namespace).
#[track_caller]
fn made_eventually(who: &Kubectl, ns: &str, manifest: &str) {
    eventually(SETTLE, || {
        let run = who.run_with_stdin(&["create", "-n", ns, "-f", "-"], Some(manifest));
        if run.success {
            Ok(())
        } else {
            Err(run.stderr)
        }
    });
}

#[test]
fn a_space_owns_its_domain_and_kube_apiserver_refuses_tenants_every_other_hostname() {
    hostnames_at(&Site::management());
}

#[test]
fn a_space_owns_its_domain_and_kube_apiserver_refuses_tenants_every_other_hostname_at_the_connected_cluster() {
    hostnames_at(&Site::connected());
}

fn hostnames_at(site: &Site) {
    let env = env();
    let management = env.kubectl("admin");
    let admin = site.admin();
    let (acc, group, user) = (unique("domains"), unique("team"), unique("member"));
    management.apply(&account(&acc, &group, 5, Some(&[]), ""));
    let tenant = env.kubectl_as(&user, &[&group]);
    let (a, b) = (unique("da"), unique("db"));
    create_space(&tenant, &site.space(&a));
    create_space(&tenant, &site.space(&b));
    let base = site.space_domain();
    let (mine, theirs) = (format!("{a}.{base}"), format!("{b}.{base}"));

    // The space says what it owns, in its status and in `-o wide`.
    let status = tenant
        .run(&[
            "get",
            "space",
            &site.space(&a),
            "-o",
            "jsonpath={.status.domain} {.status.domainIssuer}",
        ])
        .ok();
    assert_eq!(status, format!("{mine} shared-ca"), "{}", site.name());
    let explained = tenant.run(&["explain", "space.status.domain"]).ok();
    assert!(explained.contains("The DNS name the space owns"), "{explained}");
    let wide = tenant.run(&["get", "spaces", &site.space(&a), "-o", "wide"]).ok();
    assert!(
        wide.lines().next().is_some_and(|h| h.contains("DOMAIN")) && wide.contains(&mine),
        "{wide}"
    );

    // Straight at the site's kube-apiserver, as the space's owner with plain kubectl.
    let member = site.tenant(&user, &[&group]);
    let issuer = "cert-manager.io/cluster-issuer: shared-ca";
    for (name, host, tls) in [
        ("own", format!("web.{mine}"), vec![format!("web.{mine}")]),
        ("apex", mine.clone(), vec![format!("*.{mine}")]),
    ] {
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        member
            .run_with_stdin(
                &["create", "-n", &a, "-f", "-"],
                Some(&ingress(name, Some(&host), &tls, issuer)),
            )
            .ok();
    }
    let owns = format!("owns {mine}");
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        (
            "foreign",
            ingress("foreign", Some(&format!("web.{theirs}")), &[], ""),
            vec![format!("host web.{theirs} is not this space's"), owns.clone()],
        ),
        (
            "foreign-tls",
            ingress(
                "foreign-tls",
                Some(&format!("web.{mine}")),
                &[&format!("web.{theirs}")],
                "",
            ),
            vec![format!("host web.{theirs}")],
        ),
        (
            "suffix",
            ingress("suffix", Some(&format!("web.x{mine}")), &[], ""),
            vec![format!("host web.x{mine}")],
        ),
        (
            "wildcard",
            ingress("wildcard", Some(&format!("web.{mine}")), &[&format!("*.{base}")], ""),
            vec![format!("host *.{base}")],
        ),
        (
            "nohost",
            ingress("nohost", None, &[], ""),
            vec!["without a host claims every hostname".into()],
        ),
        (
            "other-issuer",
            ingress(
                "other-issuer",
                Some(&format!("web.{mine}")),
                &[],
                "cert-manager.io/cluster-issuer: other-ca",
            ),
            vec!["ClusterIssuer other-ca is not the platform's shared issuer (shared-ca)".into()],
        ),
    ];
    for (name, manifest, words) in &cases {
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        refused(&member, &admin, &a, ("ingress", name), manifest, &words);
    }
    let default_backend = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: catchall}\n\
spec: {defaultBackend: {service: {name: web, port: {number: 80}}}}\n";
    refused(
        &member,
        &admin,
        &a,
        ("ingress", "catchall"),
        default_backend,
        &["a default backend claims every hostname"],
    );
    // Updates too: the owner cannot move an Ingress onto another space's host.
    let moved = member.run(&[
        "patch",
        "ingress",
        "own",
        "-n",
        &a,
        "--type=json",
        "-p",
        &format!(r#"[{{"op":"replace","path":"/spec/rules/0/host","value":"web.{theirs}"}}]"#),
    ]);
    assert!(moved.err().contains(&format!("host web.{theirs}")));
    let host = admin
        .run(&[
            "get",
            "ingress",
            "own",
            "-n",
            &a,
            "-o",
            "jsonpath={.spec.rules[0].host}",
        ])
        .ok();
    assert_eq!(host, format!("web.{mine}"));
    // The cluster's admin may publish any host anywhere.
    admin
        .run_with_stdin(
            &["create", "-n", &a, "-f", "-"],
            Some(&ingress("by-admin", Some(&format!("web.{theirs}")), &[], "")),
        )
        .ok();

    // An account's extra suffix: every space of the account owns it, once an admin gives it; the owner cannot give it
    // to themselves on their namespace.
    let extra = format!("{}.example.org", unique("extra"));
    let own_annotation = member.run(&[
        "annotate",
        "namespace",
        &a,
        &format!("tenancy.loft.sh/account-domains={extra}"),
    ]);
    assert!(own_annotation.err().contains("managed by tenancy-apiserver"));
    let extra_ingress = ingress("extra", Some(&format!("shop.{extra}")), &[], "");
    refused(
        &member,
        &admin,
        &a,
        ("ingress", "extra"),
        &extra_ingress,
        &[&format!("host shop.{extra}")],
    );
    management
        .run(&[
            "patch",
            "accounts.config.tenancy.loft.sh",
            &acc,
            "--type=merge",
            "-p",
            &format!(r#"{{"spec":{{"space":{{"domains":["{extra}"]}}}}}}"#),
        ])
        .ok();
    made_eventually(&member, &b, &extra_ingress);

    // cert-manager's kinds: Certificates for the space's names only, from the shared ClusterIssuer, never a CA; a
    // CertificateRequest against a ClusterIssuer is cert-manager's own to make.
    hostname_kinds(site);
    let shared = "issuerRef: {kind: ClusterIssuer, name: shared-ca}";
    // Letter case and a trailing dot do not matter (kube-apiserver refuses them in Ingresses itself).
    let names = format!(
        "dnsNames: [web.{mine}, \"*.{mine}\", \"API.{}.\"], {shared}",
        mine.to_uppercase()
    );
    made_eventually(&member, &a, &certificate("web", &names));
    let certificates = [
        (
            "cert-foreign",
            format!("dnsNames: [web.{theirs}], {shared}"),
            format!("host web.{theirs}"),
        ),
        (
            "cert-cn",
            format!("commonName: web.{theirs}, dnsNames: [web.{mine}], {shared}"),
            format!("host web.{theirs}"),
        ),
        (
            "cert-ca",
            format!("isCA: true, dnsNames: [web.{mine}], {shared}"),
            "isCA certificates are not issued".into(),
        ),
        (
            "cert-issuer",
            format!("dnsNames: [web.{mine}], issuerRef: {{kind: ClusterIssuer, name: other-ca}}"),
            "ClusterIssuer other-ca is not the platform's shared issuer".into(),
        ),
    ];
    for (name, spec, words) in &certificates {
        refused(
            &member,
            &admin,
            &a,
            ("certificate", name),
            &certificate(name, spec),
            &[words],
        );
    }
    let request = "apiVersion: cert-manager.io/v1\nkind: CertificateRequest\nmetadata: {name: mine}\n\
spec: {request: AAAA, issuerRef: {kind: ClusterIssuer, name: shared-ca}}\n";
    refused(
        &member,
        &admin,
        &a,
        ("certificaterequest", "mine"),
        request,
        &["only cert-manager asks ClusterIssuer shared-ca"],
    );

    // Gateway API: route hostnames and Gateway listeners, as Ingress hosts (none: every hostname).
    let backend = "rules: [{backendRefs: [{name: web, port: 80}]}]";
    let parent = "parentRefs: [{name: gw}]";
    for (kind, plural) in [
        ("HTTPRoute", "httproutes"),
        ("GRPCRoute", "grpcroutes"),
        ("TLSRoute", "tlsroutes"),
    ] {
        let name = plural.trim_end_matches('s');
        let own = gateway_api(
            kind,
            name,
            &format!("{parent}, hostnames: [\"{name}.{mine}\"], {backend}"),
        );
        made_eventually(&member, &a, &own);
        let foreign = gateway_api(
            kind,
            "foreign",
            &format!("{parent}, hostnames: [\"{name}.{theirs}\"], {backend}"),
        );
        refused(
            &member,
            &admin,
            &a,
            (plural, "foreign"),
            &foreign,
            &[&format!("host {name}.{theirs}")],
        );
        // A TLSRoute must name its hostnames (its schema says so); the others may omit them, claiming every one.
        if kind != "TLSRoute" {
            let every = gateway_api(kind, "every", &format!("{parent}, {backend}"));
            refused(
                &member,
                &admin,
                &a,
                (plural, "every"),
                &every,
                &["no hostnames claims every hostname"],
            );
        }
    }
    let listener = |name: &str, host: &str| {
        gateway_api(
            "Gateway",
            name,
            &format!("gatewayClassName: shared, listeners: [{{name: http, protocol: HTTP, port: 80{host}}}]"),
        )
    };
    member
        .run_with_stdin(
            &["create", "-n", &a, "-f", "-"],
            Some(&listener("own", &format!(", hostname: \"*.{mine}\""))),
        )
        .ok();
    refused(
        &member,
        &admin,
        &a,
        ("gateways", "catchall"),
        &listener("catchall", ""),
        &["a listener without a hostname"],
    );
}

#[test]
fn kubectl_space_expose_publishes_a_service_over_https_with_a_certificate_from_the_shared_issuer() {
    let env = env();
    let admin = env.kubectl("admin");
    let (home, acc, space) = (unique("expose-home"), unique("expose"), unique("shop"));
    admin.apply(&format!(
        "{}apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: dev\n  namespace: {home}\n---\n\
apiVersion: config.tenancy.loft.sh/v1\nkind: Account\nmetadata:\n  name: {acc}\nspec:\n  \
subjects: [{{kind: ServiceAccount, name: dev, namespace: {home}}}]\n  space: {{limit: 2, templates: []}}\n",
        namespace(&home)
    ));
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = tenant_kubeconfig(dir.path(), &home, "dev");
    create_eventually(&kubeconfig, &["create", &space, "--account", &acc]);
    // Her service, made with plain kubectl and her own kubeconfig.
    let kubectl = |args: &[&str]| {
        let output = std::process::Command::new(env.var("KUBECTL"))
            .env("KUBECONFIG", &kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    kubectl(&[
        "create",
        "service",
        "clusterip",
        "web",
        "--tcp=80:8080",
        "--tcp=8443:8443",
        "-n",
        &space,
    ]);

    let host = format!("web.{space}.{}", env.var("SPACE_DOMAIN"));
    let out = plugin(&kubeconfig, &["expose", "web", "-n", &space]).ok();
    assert!(out.contains(&format!("https://{host}")), "{out}");
    let rule = admin
        .run(&[
            "get",
            "ingress",
            "web",
            "-n",
            &space,
            "-o",
            "jsonpath={.spec.rules[0].host} {.spec.tls[0].hosts[0]} \
{.metadata.annotations.cert-manager\\.io/cluster-issuer} {.spec.rules[0].http.paths[0].backend.service.port.number}",
        ])
        .ok();
    assert_eq!(rule, format!("{host} {host} shared-ca 80"));
    // Bad input changes nothing: an unknown port, a host that is no DNS name.
    let port = plugin(&kubeconfig, &["expose", "web", "--port", "9999", "-n", &space]).err();
    assert!(port.contains("has no port 9999: its ports are 80, 8443"), "{port}");
    let bad = plugin(&kubeconfig, &["expose", "web", "--host", "a_b", "-n", &space]).err();
    assert!(bad.contains("is not a DNS name"), "{bad}");
    let shop = plugin(
        &kubeconfig,
        &["expose", "web", "--port", "8443", "--host", "shop", "-n", &space],
    )
    .ok();
    assert!(shop.contains(&format!("https://shop.{space}.")), "{shop}");

    // cert-manager makes the certificate from the Ingress, and it names the host and verifies against the shared CA.
    eventually(Duration::from_secs(90), || {
        let ready = admin.run(&[
            "get",
            "certificate",
            "web-tls",
            "-n",
            &space,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        if ready.stdout == "True" {
            Ok(())
        } else {
            Err(ready.stdout + &ready.stderr)
        }
    });
    let crt = admin
        .run(&[
            "get",
            "secret",
            "web-tls",
            "-n",
            &space,
            "-o",
            "jsonpath={.data.tls\\.crt}",
        ])
        .ok();
    let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, crt.trim()).expect("base64");
    let file = dir.path().join("web.crt");
    std::fs::write(&file, pem).expect("writing the certificate");
    let verify = std::process::Command::new("openssl")
        .args(["verify", "-CAfile", env.var("CERT_MANAGER_CA")])
        .arg(&file)
        .output()
        .expect("openssl runs");
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stdout) + String::from_utf8_lossy(&verify.stderr)
    );
    let names = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(&file)
        .output()
        .expect("openssl runs");
    assert!(String::from_utf8_lossy(&names.stdout).contains(&format!("DNS:{host}")));
}
