//! The request stack's own cost: a tenant's and the admin's list of spaces through `http::stack::stack` in process
//! (front-proxy identity, request info, authorization from its cache, dispatch, JSON encoding of the whole body)
//! beside `Registry::list` alone, on the synced S10k cache. kube-apiserver's only part, the first SubjectAccessReview
//! (then cached for 10 s), is answered "allowed" in process.

mod latency;
mod world;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http_body_util::{BodyExt, Full};
use tenancy_apiserver::authn::{PeerIdentity, RequestHeaderConfig, User};
use tenancy_apiserver::http::stack::{stack, Peer};
use tenancy_apiserver::http::App;
use tenancy_apiserver::spaces::{ListOptions, Registry};
use tower::ServiceExt;

use world::World;

const RUNS: usize = 2_000;

async fn allowed(_: http::Request<kube::client::Body>) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let review =
        r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{},"status":{"allowed":true}}"#;
    Ok(http::Response::new(Full::new(Bytes::from_static(review.as_bytes()))))
}

fn app(registry: Registry) -> Arc<App> {
    App::standalone(registry, kube::Client::new(tower::service_fn(allowed), "default"))
}

fn front_proxy() -> Arc<Peer> {
    Arc::new(Peer::fixed(
        PeerIdentity {
            proxy_common_name: Some("front-proxy-client".to_owned()),
            x509_user: None,
        },
        Arc::new(RequestHeaderConfig::front_proxy(Vec::new())),
    ))
}

/// One list through the stack; the body's length, so that it is encoded and read whole.
async fn list(app: &Arc<App>, peer: &Arc<Peer>, user: &User) -> usize {
    let mut request = http::Request::get("/apis/tenancy.loft.sh/v1/spaces").header("X-Remote-User", user.name.as_str());
    for group in &user.groups {
        request = request.header("X-Remote-Group", group.as_str());
    }
    let request = request.body(Full::new(Bytes::new())).expect("a request");
    let response = stack(app.clone(), peer.clone())
        .oneshot(request)
        .await
        .unwrap_or_else(|never| match never {});
    assert_eq!(response.status(), http::StatusCode::OK);
    response.into_body().collect().await.expect("a body").to_bytes().len()
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // kube's client starts its worker on the runtime it is made in.
    let _entered = runtime.enter();
    let registry = Registry::new(World::s10k().synced_cache());
    let options = ListOptions::default();
    let (app, peer) = (app(registry.clone()), front_proxy());
    let (tenant, admin) = (world::tenant(), world::admin());

    println!();
    for (who, user, runs) in [("tenant", &tenant, RUNS), ("admin", &admin, RUNS / 20)] {
        let bytes = runtime.block_on(list(&app, &peer, user));
        let (mut direct, mut stacked) = (
            latency::Samples::with_capacity(runs),
            latency::Samples::with_capacity(runs),
        );
        for _ in 0..runs {
            let started = Instant::now();
            std::hint::black_box(registry.list(user, &options).expect("list"));
            direct.push(started.elapsed());
            let started = Instant::now();
            std::hint::black_box(runtime.block_on(list(&app, &peer, user)));
            stacked.push(started.elapsed());
        }
        println!("S10k {who} list ({bytes} bytes of JSON), {runs} in a loop:");
        println!("  Registry::list alone:         {}", direct.summary());
        println!("  through the request stack:    {}", stacked.summary());
    }
    println!();

    let mut group = c.benchmark_group("s10k_request");
    group.bench_function("tenant_list_through_stack", |b| {
        b.iter(|| runtime.block_on(list(&app, &peer, &tenant)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
