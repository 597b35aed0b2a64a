//! `kubectl space expose SERVICE [--port P] [--host SUB]`: publishes a service of the current space at
//! `SUB.<the space's domain>` over HTTPS, as one Ingress whose certificate cert-manager gets from the platform's shared
//! ClusterIssuer (its `cert-manager.io/cluster-issuer` annotation). The space's domain and issuer come from the Space's
//! status; kube-apiserver's admission policy is what guarantees the host is the space's own.

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::{json, Value};
use tenancy_apiserver::api::Space;
use tenancy_apiserver::domains::dns_name;

use super::{get, Error, SPACES};

/// The field manager of the Ingresses it makes: exposing the same service again updates its Ingress.
const FIELD_MANAGER: &str = "kubectl-space";

/// What was exposed, for the caller to print.
pub struct Exposed {
    pub ingress: String,
    pub url: String,
    pub issuer: Option<String>,
}

/// Exposes `service` of space (namespace) `namespace` at `host` (default: the service's name) under the space's
/// domain, on its port `port` (a number or a name; default: its first).
///
/// # Errors
/// The space has no domain, the service or its port is not there, the host is no DNS name, or kube-apiserver refuses.
pub async fn expose(
    client: &Client,
    namespace: &str,
    service: &str,
    port: Option<&str>,
    host: Option<&str>,
) -> Result<Exposed, Error> {
    let space: Space = client.request(get(&format!("{SPACES}/{namespace}"))).await?;
    let domain = space.status.domain.ok_or_else(|| {
        Error::Usage(format!(
            "space {namespace} has no domain: its cluster has no base domain for spaces (ask your platform team)"
        ))
    })?;
    let sub = host.unwrap_or(service);
    let label = dns_name(sub)
        .filter(|s| !s.contains('*'))
        .ok_or_else(|| Error::Usage(format!("--host {sub:?} is not a DNS name (labels of a-z, 0-9 and '-')")))?;
    let host = format!("{label}.{domain}");
    let backend_port = backend_port(
        &Api::<Service>::namespaced(client.clone(), namespace)
            .get(service)
            .await?,
        port,
    )?;
    let name = label.replace('.', "-");
    let issuer = space.status.domain_issuer;
    let mut ingress = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": FIELD_MANAGER},
        },
        "spec": {"rules": [{"host": host, "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": backend_port}},
        }]}}]},
    });
    if let Some(issuer) = &issuer {
        ingress["metadata"]["annotations"] = json!({"cert-manager.io/cluster-issuer": issuer});
        ingress["spec"]["tls"] = json!([{"hosts": [host], "secretName": format!("{name}-tls")}]);
    }
    Api::<Ingress>::namespaced(client.clone(), namespace)
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&ingress),
        )
        .await?;
    let scheme = if issuer.is_some() { "https" } else { "http" };
    Ok(Exposed {
        ingress: name,
        url: format!("{scheme}://{host}"),
        issuer,
    })
}

/// The Ingress backend's port for `port` of `service`: by number or by name, default its first port.
fn backend_port(service: &Service, port: Option<&str>) -> Result<Value, Error> {
    let name = service.metadata.name.as_deref().unwrap_or_default();
    let ports = service.spec.as_ref().and_then(|s| s.ports.clone()).unwrap_or_default();
    let found = match port {
        None => ports.first(),
        Some(wanted) => ports
            .iter()
            .find(|p| p.port.to_string() == wanted || p.name.as_deref() == Some(wanted)),
    };
    let known = || ports.iter().map(|p| p.port.to_string()).collect::<Vec<_>>().join(", ");
    match found {
        Some(p) => Ok(json!({"number": p.port})),
        None if ports.is_empty() => Err(Error::Usage(format!("service {name} has no ports"))),
        None => Err(Error::Usage(format!(
            "service {name} has no port {}: its ports are {}",
            port.unwrap_or_default(),
            known()
        ))),
    }
}
