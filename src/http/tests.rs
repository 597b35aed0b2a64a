//! The request stack in process: routing, negotiation, errors, and each verb's happy and unhappy paths, with requests
//! built in memory and answered by the same stack a connection uses. The state is fed directly; kube-apiserver's part
//! (SubjectAccessReview, TokenReview, namespace writes) is a small echo (`Kube`) that answers as kube-apiserver would
//! for these cases only. The end-to-end suites (tests/e2e) prove the same behaviour against the real kube-apiserver.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use kube::runtime::watcher::Event;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::stack::{around, stack, Peer};
use super::{App, MAX_BODY};
use crate::authn::{PeerIdentity, RequestHeaderConfig};
use crate::fixtures::{binding, namespace, namespace_role, user_subject};
use crate::state::{Cache, Update};

const SPACES: &str = "/apis/tenancy.loft.sh/v1/spaces";
const TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// kube-apiserver's answers, for what these tests make the server ask: reviews allow everyone but users named
/// `denied-*`, and users named `viewer-*` everything but namespaces; the token `alice-token` is alice's; Accounts and
/// SpaceTemplates are read from `cache`; namespace
/// writes (create, replace, apply, delete) are echoed back as written, and reach `cache` as its reflector would
/// deliver them (writes answer once the state shows them).
async fn kube(
    request: http::Request<kube::client::Body>,
    cache: Arc<Cache>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let sent: Value = body
        .collect()
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b.to_bytes()).ok())
        .unwrap_or_default();
    let path = parts.uri.path();
    let (code, answer) = match (parts.method.clone(), path) {
        (Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
            let user = sent["spec"]["user"].as_str().unwrap_or_default();
            let namespaces = sent["spec"]["resourceAttributes"]["resource"] == "namespaces";
            let denied = user.starts_with("denied-") || (namespaces && user.starts_with("viewer-"));
            let mut review = sent.clone();
            review["status"] = json!({"allowed": !denied, "reason": "as the test says"});
            (200, review)
        }
        (Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews") => {
            let mut review = sent.clone();
            review["status"] = if sent["spec"]["token"] == "alice-token" {
                json!({"authenticated": true, "user": {"username": "alice", "groups": ["system:authenticated"]}})
            } else {
                json!({"authenticated": false})
            };
            (200, review)
        }
        // The Accounts and SpaceTemplates as the state holds them (as kube-apiserver would have them).
        (Method::GET, "/apis/config.tenancy.loft.sh/v1/accounts") => {
            let items: Vec<Value> = cache.read().accounts.values().map(|a| json!(**a)).collect();
            (
                200,
                json!({"apiVersion": "config.tenancy.loft.sh/v1", "kind": "AccountList", "metadata": {}, "items": items}),
            )
        }
        (Method::GET, config) if config.starts_with("/apis/config.tenancy.loft.sh/v1/") => {
            let (kind, name) = config
                .trim_start_matches("/apis/config.tenancy.loft.sh/v1/")
                .split_once('/')
                .unwrap_or_default();
            let state = cache.read();
            let found = match kind {
                "accounts" => state.accounts.get(name).map(|a| json!(**a)),
                "spacetemplates" => state.templates.get(name).map(|t| json!(**t)),
                _ => None,
            };
            match found {
                Some(object) => (200, object),
                None => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}),
                ),
            }
        }
        (Method::POST, "/api/v1/namespaces") => {
            let mut created = sent.clone();
            created["metadata"]["uid"] = json!("uid-new");
            created["metadata"]["resourceVersion"] = json!("100");
            (201, created)
        }
        (Method::PUT, _) => {
            let mut replaced = sent.clone();
            replaced["metadata"]["resourceVersion"] = json!("101");
            (200, replaced)
        }
        (Method::PATCH, _) => {
            let mut applied = sent.clone();
            applied["metadata"]["resourceVersion"] = json!("103");
            (200, applied)
        }
        (Method::DELETE, _) => {
            let name = path.rsplit('/').next().unwrap_or_default();
            (
                200,
                json!({"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": name, "uid": format!("uid-{name}"), "resourceVersion": "102",
                                    "deletionTimestamp": "2026-11-26T00:00:00Z"},
                       "status": {"phase": "Terminating"}}),
            )
        }
        _ => (
            404,
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound"}),
        ),
    };
    let dry_run = parts.uri.query().is_some_and(|q| q.contains("dryRun"));
    if path.starts_with("/api/v1/namespaces") && code < 300 && !dry_run {
        if let Ok(namespace) = serde_json::from_value(answer.clone()) {
            cache.apply(Update::Namespace(Event::Apply(namespace)));
        }
    }
    let mut response = http::Response::new(Full::new(Bytes::from(answer.to_string())));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A synced state: namespaces `a` (alice may use it) and `b` (nobody may), and alice's account `team`.
fn cache() -> Arc<Cache> {
    let cache = Arc::new(Cache::new());
    let role = namespace_role("space-admin", &["get", "list", "watch", "update", "patch", "delete"], 3);
    let binding = binding("a", "alice", "space-admin", vec![user_subject("alice")], 4);
    let account = serde_json::from_value(json!({
        "metadata": {"name": "team", "resourceVersion": "5"},
        "spec": {"subjects": [{"kind": "User", "name": "alice"}]}
    }))
    .expect("an Account");
    let updates = [
        Update::Namespace(Event::InitApply(namespace("a", 1))),
        Update::Namespace(Event::InitApply(namespace("b", 2))),
        Update::Namespace(Event::InitDone),
        Update::ClusterRole(Event::InitApply(role)),
        Update::ClusterRole(Event::InitDone),
        Update::RoleBinding(Event::InitApply(binding)),
        Update::RoleBinding(Event::InitDone),
        Update::Account(Event::InitApply(account)),
        Update::Account(Event::InitDone),
        Update::SpaceTemplate(Event::InitDone),
        Update::Role(Event::InitDone),
        Update::ClusterRoleBinding(Event::InitDone),
    ];
    for update in updates {
        cache.apply(update);
    }
    cache
}

fn app(cache: Arc<Cache>) -> Arc<App> {
    let echoed = cache.clone();
    App::standalone(
        crate::spaces::Registry::new(cache),
        kube::Client::new(
            tower::service_fn(move |request| kube(request, echoed.clone())),
            "default",
        ),
    )
}

/// A connection from kube-apiserver's front proxy (its identity headers are trusted), or from anyone else.
fn peer(front_proxy: bool) -> Arc<Peer> {
    Arc::new(Peer::fixed(
        PeerIdentity {
            proxy_common_name: front_proxy.then(|| "front-proxy-client".to_owned()),
            x509_user: None,
        },
        Arc::new(RequestHeaderConfig::front_proxy(Vec::new())),
    ))
}

struct Answer {
    code: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// A Status with this code and reason, as kube-apiserver sends errors.
    fn status(&self, code: u16, reason: &str) -> Value {
        let status = self.json();
        assert_eq!(self.code.as_u16(), code, "{status}");
        assert_eq!(status["kind"], "Status", "{status}");
        assert_eq!(status["code"], code, "{status}");
        assert_eq!(status["reason"], reason, "{status}");
        status
    }
}

struct Client {
    app: Arc<App>,
    peer: Arc<Peer>,
    /// Identity headers the front proxy adds; none for anonymous callers.
    user: Option<(&'static str, &'static str)>,
}

fn as_user(app: &Arc<App>, name: &'static str) -> Client {
    Client {
        app: app.clone(),
        peer: peer(true),
        user: Some((name, "system:authenticated")),
    }
}

fn as_admin(app: &Arc<App>) -> Client {
    Client {
        app: app.clone(),
        peer: peer(true),
        user: Some(("admin", "system:masters")),
    }
}

impl Client {
    fn request(&self, method: Method, uri: &str) -> http::request::Builder {
        let mut builder = http::Request::builder().method(method).uri(uri);
        if let Some((name, group)) = self.user {
            builder = builder.header("X-Remote-User", name).header("X-Remote-Group", group);
        }
        builder
    }

    async fn send(&self, request: http::request::Builder, body: impl Into<Bytes>) -> Answer {
        let request = request.body(Full::new(body.into())).expect("a request");
        let response = stack(self.app.clone(), self.peer.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(5), body.collect())
            .await
            .expect("a whole body in time")
            .expect("a body")
            .to_bytes();
        Answer {
            code: parts.status,
            headers: parts.headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(self.request(Method::GET, uri), Bytes::new()).await
    }

    async fn get_as(&self, uri: &str, accept: &str) -> Answer {
        self.send(
            self.request(Method::GET, uri).header(header::ACCEPT, accept),
            Bytes::new(),
        )
        .await
    }

    /// The first `n` lines of a watch, then the stream is dropped.
    async fn watch(&self, uri: &str, n: usize) -> (StatusCode, Vec<Value>) {
        self.watch_as(uri, "application/json", n).await
    }

    /// The first `n` lines of a watch in the representation `accept`.
    async fn watch_as(&self, uri: &str, accept: &str, n: usize) -> (StatusCode, Vec<Value>) {
        let request = self
            .request(Method::GET, uri)
            .header(header::ACCEPT, accept)
            .body(Full::new(Bytes::new()))
            .expect("a request");
        let response = stack(self.app.clone(), self.peer.clone())
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let code = response.status();
        let mut body = response.into_body();
        let mut buffer = Vec::new();
        while buffer.iter().filter(|b| **b == b'\n').count() < n {
            match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
                Ok(Some(Ok(frame))) => buffer.extend_from_slice(&frame.into_data().unwrap_or_default()),
                _ => break,
            }
        }
        let lines = buffer
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("a JSON event"))
            .collect();
        (code, lines)
    }
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|i| i["metadata"]["name"].as_str()).collect())
        .unwrap_or_default()
}

// --- routing and authentication ---

#[tokio::test]
async fn probes_answer_without_an_identity_and_readiness_follows_the_caches() {
    let anonymous = Client {
        app: app(cache()),
        peer: peer(false),
        user: None,
    };
    assert_eq!(anonymous.get("/healthz").await.code, StatusCode::OK);
    assert_eq!(anonymous.get("/livez/").await.code, StatusCode::OK);
    assert_eq!(anonymous.get("/readyz").await.code, StatusCode::OK);
    let unsynced = Client {
        app: app(Arc::new(Cache::new())),
        peer: peer(false),
        user: None,
    };
    let answer = unsynced.get("/readyz").await;
    assert_eq!(answer.code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&answer.body).contains("caches not synced"));
}

#[tokio::test]
async fn identity_comes_from_a_trusted_front_proxy_or_a_reviewed_token_only() {
    let app = app(cache());
    // Identity headers on a connection that is not the front proxy's are ignored: 401.
    let spoofing = Client {
        app: app.clone(),
        peer: peer(false),
        user: Some(("alice", "system:masters")),
    };
    spoofing.get(SPACES).await.status(401, "Unauthorized");
    spoofing.get("/apis").await.status(401, "Unauthorized");
    // Unknown routes are not disclosed before authentication either.
    spoofing
        .send(spoofing.request(Method::POST, "/nope"), "")
        .await
        .status(401, "Unauthorized");

    let token = |value: &'static str| {
        Client {
            app: app.clone(),
            peer: peer(false),
            user: None,
        }
        .request(Method::GET, SPACES)
        .header(header::AUTHORIZATION, format!("Bearer {value}"))
    };
    let anonymous = Client {
        app: app.clone(),
        peer: peer(false),
        user: None,
    };
    let alice = anonymous.send(token("alice-token"), "").await;
    assert_eq!(alice.code, StatusCode::OK);
    assert_eq!(names(&alice.json()), ["a"]);
    anonymous.send(token("stolen"), "").await.status(401, "Unauthorized");
}

#[tokio::test]
async fn discovery_is_open_to_every_authenticated_user_in_both_formats() {
    let app = app(cache());
    let user = as_user(&app, "denied-dave");
    let groups = user.get("/apis").await;
    assert_eq!(groups.code, StatusCode::OK);
    assert_eq!(groups.json()["kind"], "APIGroupList");
    let v2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
    let aggregated = user.get_as("/apis", v2).await;
    assert_eq!(aggregated.json()["kind"], "APIGroupDiscoveryList");
    let etag = aggregated.headers.get(header::ETAG).expect("an ETag").clone();
    let cached = user
        .send(
            user.request(Method::GET, "/apis")
                .header(header::ACCEPT, v2)
                .header(header::IF_NONE_MATCH, etag),
            "",
        )
        .await;
    assert_eq!(cached.code, StatusCode::NOT_MODIFIED);
    assert_eq!(user.get("/apis/tenancy.loft.sh").await.json()["kind"], "APIGroup");
    let resources = user.get("/apis/tenancy.loft.sh/v1/").await.json();
    assert_eq!(resources["kind"], "APIResourceList");
    assert!(user.get("/version").await.json()["gitVersion"].is_string());
}

#[tokio::test]
async fn paths_are_authorized_then_routed() {
    let app = app(cache());
    let admin = as_admin(&app);
    let denied = as_user(&app, "denied-dave");
    admin.get("/nope").await.status(404, "NotFound");
    let forbidden = denied.get("/nope").await.status(403, "Forbidden");
    assert_eq!(
        forbidden["message"],
        "forbidden: User \"denied-dave\" cannot get path \"/nope\""
    );
    denied.get("/metrics").await.status(403, "Forbidden");
    let metrics = admin.get("/metrics").await;
    assert_eq!(metrics.code, StatusCode::OK);
    assert!(String::from_utf8_lossy(&metrics.body).contains("tenancy"));
    admin
        .send(admin.request(Method::POST, "/nope"), "")
        .await
        .status(404, "NotFound");
    admin
        .send(admin.request(Method::DELETE, SPACES), "")
        .await
        .status(405, "MethodNotAllowed");
    admin
        .send(admin.request(Method::POST, "/apis/tenancy.loft.sh/v1/accounts"), "")
        .await
        .status(405, "MethodNotAllowed");
    admin
        .get(&format!("{SPACES}/a/status"))
        .await
        .status(405, "MethodNotAllowed");
}

#[tokio::test]
async fn openapi_documents_are_cacheable_and_outdated_hashes_redirect() {
    let app = app(cache());
    let admin = as_admin(&app);
    let v2 = admin.get("/openapi/v2").await;
    assert_eq!(v2.code, StatusCode::OK);
    assert!(v2.headers.contains_key(header::ETAG));
    let root = admin.get("/openapi/v3").await.json();
    let url = root["paths"]["apis/tenancy.loft.sh/v1"]["serverRelativeURL"]
        .as_str()
        .expect("the group's URL")
        .to_owned();
    let current = admin.get(&url).await;
    assert_eq!(current.code, StatusCode::OK);
    assert_eq!(current.headers[header::CACHE_CONTROL], "public, immutable");
    let outdated = admin.get("/openapi/v3/apis/tenancy.loft.sh/v1?hash=old").await;
    assert_eq!(outdated.code, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(outdated.headers[header::LOCATION], url.as_str());
}

// --- spaces: reads ---

#[tokio::test]
async fn list_shows_only_visible_spaces_in_every_representation() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let list = alice.get(SPACES).await;
    assert_eq!(list.code, StatusCode::OK);
    let list = list.json();
    assert_eq!(list["kind"], "SpaceList");
    assert_eq!(names(&list), ["a"]);
    assert!(list["metadata"]["resourceVersion"].is_string());

    let table = alice.get_as(SPACES, TABLE).await.json();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"].as_array().map(Vec::len), Some(1));
    assert!(table["columnDefinitions"].as_array().is_some_and(|c| !c.is_empty()));

    let metadata = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io";
    let partial = alice.get_as(SPACES, metadata).await.json();
    assert_eq!(partial["kind"], "PartialObjectMetadataList");
    assert_eq!(names(&partial), ["a"]);

    alice
        .get_as(SPACES, "application/vnd.kubernetes.protobuf")
        .await
        .status(406, "NotAcceptable");
    assert!(names(&as_user(&app, "bob").get(SPACES).await.json()).is_empty());
}

#[tokio::test]
async fn list_refuses_bad_options_with_kube_apiservers_words() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    alice
        .get(&format!("{SPACES}?labelSelector=a%20in"))
        .await
        .status(400, "BadRequest");
    alice
        .get(&format!("{SPACES}?fieldSelector=spec.x%3Dy"))
        .await
        .status(400, "BadRequest");
    alice
        .get(&format!("{SPACES}?limit=ten"))
        .await
        .status(400, "BadRequest");
    alice
        .get(&format!("{SPACES}?continue=garbage"))
        .await
        .status(400, "BadRequest");
    let invalid = alice
        .get(&format!("{SPACES}?sendInitialEvents=true"))
        .await
        .status(422, "Invalid");
    assert!(invalid["message"]
        .as_str()
        .is_some_and(|m| m.contains("sendInitialEvents is forbidden for list")));
    alice
        .get(&format!("{SPACES}?resourceVersion=abc"))
        .await
        .status(422, "Invalid");
    alice
        .get_as(&format!("{SPACES}?includeObject=All"), TABLE)
        .await
        .status(400, "BadRequest");
    let denied = as_user(&app, "denied-dave").get(SPACES).await.status(403, "Forbidden");
    assert_eq!(
        denied["message"],
        "spaces.tenancy.loft.sh is forbidden: User \"denied-dave\" cannot list resource \"spaces\" in API group \
         \"tenancy.loft.sh\" at the cluster scope: as the test says"
    );
}

#[tokio::test]
async fn get_answers_a_visible_space_and_hides_the_rest_as_missing() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let space = alice.get(&format!("{SPACES}/a")).await;
    assert_eq!(space.code, StatusCode::OK);
    let space = space.json();
    assert_eq!(
        (space["kind"].as_str(), space["metadata"]["name"].as_str()),
        (Some("Space"), Some("a"))
    );
    let row = alice.get_as(&format!("{SPACES}/a"), TABLE).await.json();
    assert_eq!(row["rows"][0]["cells"][0], "a");

    let hidden = alice.get(&format!("{SPACES}/b")).await.status(404, "NotFound");
    let missing = alice.get(&format!("{SPACES}/zz")).await.status(404, "NotFound");
    assert_eq!(hidden["message"], "spaces.tenancy.loft.sh \"b\" not found");
    assert_eq!(missing["message"], "spaces.tenancy.loft.sh \"zz\" not found");
}

#[tokio::test]
async fn watch_streams_visible_spaces_and_refuses_bad_options() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let uri = format!(
        "{SPACES}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true&resourceVersionMatch=NotOlderThan"
    );
    let (code, events) = alice.watch(&uri, 2).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["metadata"]["name"], "a");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );

    // A resume from a position this process never gave out is told 410 on the established watch; client-go relists.
    let (code, events) = alice.watch(&format!("{SPACES}?watch=1&resourceVersion=5"), 1).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (events[0]["type"].as_str(), events[0]["object"]["code"].as_i64()),
        (Some("ERROR"), Some(410))
    );

    alice
        .get(&format!("{SPACES}?watch=1&resourceVersionMatch=NotOlderThan"))
        .await
        .status(422, "Invalid");
    alice
        .get(&format!(
            "{SPACES}?watch=1&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
        ))
        .await
        .status(422, "Invalid");
    as_user(&app, "denied-dave")
        .get(&format!("{SPACES}?watch=1"))
        .await
        .status(403, "Forbidden");
}

// --- spaces: writes ---

#[tokio::test]
async fn create_validates_before_anything_is_written() {
    let app = app(cache());
    let carol = as_user(&app, "carol");
    let post = |query: &str| carol.request(Method::POST, &format!("{SPACES}{query}"));
    let created = carol
        .send(
            post("?dryRun=All"),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"new"}}"#,
        )
        .await;
    assert_eq!(created.code, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(created.json()["metadata"]["name"], "new");
    // YAML bodies are read too, when they say so; without a Content-Type a body is JSON, as kube-apiserver reads it.
    let yaml_body = "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: from-yaml\n";
    let yaml = carol
        .send(
            post("?dryRun=All").header(header::CONTENT_TYPE, "application/yaml"),
            yaml_body,
        )
        .await;
    assert_eq!(yaml.code, StatusCode::CREATED, "{:?}", yaml.body);
    carol
        .send(post("?dryRun=All"), yaml_body)
        .await
        .status(400, "BadRequest");

    let invalid = carol
        .send(
            post(""),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"Not_A_Name"}}"#,
        )
        .await
        .status(422, "Invalid");
    assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.name");
    carol.send(post(""), "{not json").await.status(400, "BadRequest");
    carol
        .send(
            post("?dryRun=Some"),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"x"}}"#,
        )
        .await
        .status(400, "BadRequest");
    let strict = carol
        .send(
            post("?fieldValidation=Strict&dryRun=All"),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"x"},"spek":{}}"#,
        )
        .await
        .status(400, "BadRequest");
    assert!(strict["message"].as_str().is_some_and(|m| m.contains("spek")));
    let warned = carol
        .send(
            post("?fieldValidation=Warn&dryRun=All"),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"x"},"spek":{}}"#,
        )
        .await;
    assert_eq!(warned.code, StatusCode::CREATED);
    assert!(warned.headers[header::WARNING]
        .to_str()
        .is_ok_and(|w| w.starts_with("299 - ") && w.contains("spek")));
    let huge = vec![b' '; MAX_BODY + 1];
    carol.send(post(""), huge).await.status(413, "RequestEntityTooLarge");
    let foreign = carol
        .send(
            post("?dryRun=All"),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"x"},"spec":{"account":"team"}}"#,
        )
        .await
        .status(403, "Forbidden");
    assert!(foreign["message"]
        .as_str()
        .is_some_and(|m| m.contains("not a member of account \"team\"")));
    let dave = as_user(&app, "denied-dave");
    dave.send(dave.request(Method::POST, SPACES), "{}")
        .await
        .status(403, "Forbidden");
}

#[tokio::test]
async fn writes_in_a_media_type_their_verb_does_not_take_are_refused_before_anything_is_read() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let space = r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"a","resourceVersion":"2"}}"#;
    let objects = "the body of the request was in an unknown format - accepted media types include: \
application/json, application/yaml";
    let patches = "the body of the request was in an unknown format - accepted media types include: \
application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
    let before = alice.get(&format!("{SPACES}/a")).await;
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        for (method, uri, message) in [
            (Method::POST, SPACES.to_owned(), objects),
            (Method::PUT, format!("{SPACES}/a"), objects),
            (Method::DELETE, format!("{SPACES}/a"), objects),
            (Method::PATCH, format!("{SPACES}/a"), patches),
        ] {
            let request = alice
                .request(method.clone(), &uri)
                .header(header::CONTENT_TYPE, content_type);
            let refused = alice.send(request, space).await.status(415, "UnsupportedMediaType");
            assert_eq!(refused["message"], message, "{method} {content_type}");
        }
    }
    // Nothing was written: alice's space is as it was.
    let after = alice.get(&format!("{SPACES}/a")).await;
    assert_eq!(after.json(), before.json());
    // A delete without a body needs no Content-Type, and one whose body says JSON is read.
    let delete = alice
        .request(Method::DELETE, &format!("{SPACES}/a"))
        .header(header::CONTENT_TYPE, "application/json");
    let deleted = alice.send(delete, r#"{"preconditions":{"uid":"nope"}}"#).await;
    deleted.status(409, "Conflict");
}

#[tokio::test]
async fn update_and_patch_write_labels_of_the_current_space_only() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let put = alice.request(Method::PUT, &format!("{SPACES}/a"));
    let current = r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"a","resourceVersion":"1","labels":{"team":"x"}}}"#;
    let updated = alice.send(put, current).await;
    assert_eq!(updated.code, StatusCode::OK, "{:?}", updated.body);
    assert_eq!(updated.json()["metadata"]["labels"]["team"], "x");

    let stale = r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"a","resourceVersion":"0"}}"#;
    let conflict = alice
        .send(alice.request(Method::PUT, &format!("{SPACES}/a")), stale)
        .await
        .status(409, "Conflict");
    assert!(conflict["message"]
        .as_str()
        .is_some_and(|m| m.contains("the object has been modified")));
    alice
        .send(
            alice.request(Method::PUT, &format!("{SPACES}/a")),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"b","resourceVersion":"1"}}"#,
        )
        .await
        .status(400, "BadRequest");
    alice
        .send(
            alice.request(Method::PUT, &format!("{SPACES}/b")),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"b","resourceVersion":"2"}}"#,
        )
        .await
        .status(404, "NotFound");

    let patch = |content_type: &'static str| {
        alice
            .request(Method::PATCH, &format!("{SPACES}/a"))
            .header(header::CONTENT_TYPE, content_type)
    };
    let merged = alice
        .send(
            patch("application/merge-patch+json"),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"labels":{"env":"dev"}}}"#,
        )
        .await;
    assert_eq!(merged.code, StatusCode::OK, "{:?}", merged.body);
    assert_eq!(merged.json()["metadata"]["labels"]["env"], "dev");
    let json_patch = alice
        .send(
            patch("application/json-patch+json"),
            r#"[{"op":"add","path":"/metadata/labels","value":{"tier":"1"}}]"#,
        )
        .await;
    assert_eq!(json_patch.json()["metadata"]["labels"]["tier"], "1");
    alice
        .send(patch("application/json-patch+json"), "{}")
        .await
        .status(400, "BadRequest");
    alice
        .send(
            patch("application/json-patch+json"),
            r#"[{"op":"remove","path":"/nope"}]"#,
        )
        .await
        .status(422, "UnprocessableEntity");
    alice
        .send(patch("application/json"), "{}")
        .await
        .status(415, "UnsupportedMediaType");
    let dave = as_user(&app, "denied-dave");
    let dave_patch = dave
        .request(Method::PATCH, &format!("{SPACES}/a"))
        .header(header::CONTENT_TYPE, "application/merge-patch+json");
    dave.send(dave_patch, "{}").await.status(403, "Forbidden");
}

#[tokio::test]
async fn delete_answers_the_terminating_space_and_checks_preconditions() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let delete = || alice.request(Method::DELETE, &format!("{SPACES}/a"));
    let deleted = alice.send(delete(), "").await;
    assert_eq!(deleted.code, StatusCode::OK, "{:?}", deleted.body);
    let deleted = deleted.json();
    assert_eq!(deleted["metadata"]["name"], "a");
    assert!(deleted["metadata"]["deletionTimestamp"].is_string());

    let wrong_uid = r#"{"kind":"DeleteOptions","apiVersion":"v1","preconditions":{"uid":"someone-else"}}"#;
    let conflict = alice.send(delete(), wrong_uid).await.status(409, "Conflict");
    assert_eq!(
        conflict["message"],
        "Precondition failed: UID in precondition: someone-else, UID in object meta: uid-a"
    );
    alice.send(delete(), "{").await.status(400, "BadRequest");
    alice
        .send(alice.request(Method::DELETE, &format!("{SPACES}/b")), "")
        .await
        .status(404, "NotFound");
}

#[tokio::test]
async fn apply_needs_a_field_manager_and_applies_what_it_names() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let apply = |uri: &str| {
        alice
            .request(Method::PATCH, uri)
            .header(header::CONTENT_TYPE, "application/apply-patch+yaml")
    };
    let configuration = "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: a\n  labels:\n    env: dev\n";
    let applied = alice
        .send(apply(&format!("{SPACES}/a?fieldManager=kubectl")), configuration)
        .await;
    assert_eq!(applied.code, StatusCode::OK, "{:?}", applied.body);
    let applied = applied.json();
    assert_eq!(
        (applied["kind"].as_str(), applied["metadata"]["labels"]["env"].as_str()),
        (Some("Space"), Some("dev"))
    );

    // As kube-apiserver: the patch options are refused before the object is looked up, hidden or missing alike.
    for name in ["a", "b", "zz"] {
        let refused = alice
            .send(apply(&format!("{SPACES}/{name}")), configuration)
            .await
            .status(422, "Invalid");
        assert_eq!(
            refused["message"],
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        assert_eq!(
            refused["details"],
            json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
                {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch",
                 "field": "fieldManager"}]})
        );
    }
    // The body names another space than the URL.
    let other = alice
        .send(
            apply(&format!("{SPACES}/a?fieldManager=kubectl")),
            "apiVersion: tenancy.loft.sh/v1\nkind: Space\nmetadata:\n  name: c\n",
        )
        .await
        .status(400, "BadRequest");
    assert_eq!(
        other["message"],
        "the name of the object (c) does not match the name on the URL (a)"
    );
}

/// A Status with the object's name taken out of it, to compare two spaces' answers.
fn anonymized(status: &Value, name: &str) -> Value {
    let text = status.to_string().replace(&format!("\\\"{name}\\\""), "\\\"NAME\\\"");
    let mut status: Value = serde_json::from_str(&text).expect("JSON");
    if status["details"]["name"] == name {
        status["details"]["name"] = json!("NAME");
    }
    status
}

#[tokio::test]
async fn a_hidden_space_answers_every_verb_exactly_as_a_missing_one() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    for (method, content_type) in [
        (Method::GET, None),
        (Method::PUT, None),
        (Method::PATCH, Some("application/merge-patch+json")),
        (Method::DELETE, None),
    ] {
        let answer = |name: &'static str| {
            let mut request = alice.request(method.clone(), &format!("{SPACES}/{name}"));
            if let Some(content_type) = content_type {
                request = request.header(header::CONTENT_TYPE, content_type);
            }
            let body = if method == Method::PUT {
                format!(
                    r#"{{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{{"name":"{name}","resourceVersion":"2"}}}}"#
                )
            } else if method == Method::PATCH {
                r#"{"metadata":{"labels":{"x":"y"}}}"#.to_owned()
            } else {
                String::new()
            };
            alice.send(request, body)
        };
        let hidden = answer("b").await.status(404, "NotFound");
        let missing = answer("zz").await.status(404, "NotFound");
        assert_eq!(hidden["message"], "spaces.tenancy.loft.sh \"b\" not found", "{method}");
        assert_eq!(anonymized(&hidden, "b"), anonymized(&missing, "zz"), "{method}");
    }
}

#[tokio::test]
async fn a_visible_space_the_caller_may_not_change_is_forbidden_on_its_namespace() {
    let cache = cache();
    cache.apply(Update::RoleBinding(Event::Apply(binding(
        "a",
        "vic",
        "space-admin",
        vec![user_subject("viewer-vic")],
        8,
    ))));
    let app = app(cache);
    let vic = as_user(&app, "viewer-vic");
    assert_eq!(vic.get(&format!("{SPACES}/a")).await.code, StatusCode::OK);
    let body = r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"a","resourceVersion":"1"}}"#;
    let forbidden = vic
        .send(vic.request(Method::PUT, &format!("{SPACES}/a")), body)
        .await
        .status(403, "Forbidden");
    assert_eq!(
        forbidden["message"],
        "spaces.tenancy.loft.sh \"a\" is forbidden: User \"viewer-vic\" cannot update resource \"namespaces\" in API \
         group \"\" in the namespace \"a\": as the test says"
    );
    assert_eq!(forbidden["details"]["name"], "a");
    let deleted = vic
        .send(vic.request(Method::DELETE, &format!("{SPACES}/a")), "")
        .await
        .status(403, "Forbidden");
    assert!(deleted["message"]
        .as_str()
        .is_some_and(|m| m.contains("cannot delete resource \"namespaces\"")));
}

#[tokio::test]
async fn update_needs_the_resource_version_it_replaces() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let invalid = alice
        .send(
            alice.request(Method::PUT, &format!("{SPACES}/a")),
            r#"{"apiVersion":"tenancy.loft.sh/v1","kind":"Space","metadata":{"name":"a"}}"#,
        )
        .await
        .status(422, "Invalid");
    assert_eq!(
        invalid["message"],
        "Space.tenancy.loft.sh \"a\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for \
         an update"
    );
    assert_eq!(
        invalid["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update",
                "field": "metadata.resourceVersion"}])
    );
}

#[test]
fn kube_apiservers_refusals_of_a_namespace_are_told_about_the_space() {
    use crate::http::error::status_of;
    use crate::spaces::Error as Spaces;
    let refusal = |code: u16, reason: &str, message: &str| {
        let mut status = kube::core::Status::failure(message, reason).with_code(code);
        status.details = Some(kube::core::response::StatusDetails {
            name: "a".to_owned(),
            group: String::new(),
            kind: "namespaces".to_owned(),
            uid: String::new(),
            causes: vec![kube::core::response::StatusCause {
                reason: "FieldValueInvalid".to_owned(),
                message: "too long".to_owned(),
                field: "metadata.labels".to_owned(),
            }],
            retry_after_seconds: 0,
        });
        kube::Error::Api(Box::new(status))
    };
    let status = |error| serde_json::to_value(status_of(&super::Error::Spaces(error))).expect("JSON");

    let exists = status(Spaces::from_kube(
        refusal(409, "AlreadyExists", "namespaces \"a\" already exists"),
        "a",
    ));
    assert_eq!(
        (exists["code"].as_u64(), exists["reason"].as_str()),
        (Some(409), Some("AlreadyExists"))
    );
    assert_eq!(exists["message"], "spaces.tenancy.loft.sh \"a\" already exists");
    assert_eq!(exists["details"]["name"], "a");

    let invalid = status(Spaces::from_kube(
        refusal(422, "Invalid", "namespaces \"a\" is invalid: metadata.labels: too long"),
        "a",
    ));
    assert_eq!(invalid["code"], 422);
    assert_eq!(
        invalid["message"],
        "spaces.tenancy.loft.sh \"a\" is invalid: metadata.labels: too long"
    );
    assert_eq!(invalid["details"]["causes"][0]["field"], "metadata.labels");
}

#[test]
fn field_errors_are_worded_as_kubes() {
    use crate::http::error::{cause, status_of};
    use crate::spaces::{validation, Error as Spaces, FieldError, Problem};
    let message = |error: Spaces| status_of(&super::Error::Spaces(error)).message.unwrap_or_default();
    let invalid = |errors| {
        message(Spaces::Invalid {
            name: "x".to_owned(),
            errors,
        })
    };
    assert_eq!(
        invalid(validation::name("Not_A_Name")),
        "Space.tenancy.loft.sh \"x\" is invalid: metadata.name: Invalid value: \"Not_A_Name\": a lowercase RFC 1123 \
         label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric \
         character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
    );
    assert_eq!(
        invalid(validation::name("kube-x")),
        "Space.tenancy.loft.sh \"x\" is invalid: metadata.name: Forbidden: \"kube-x\" is reserved for the cluster's \
         own namespaces"
    );
    assert_eq!(
        invalid(vec![
            FieldError::new("metadata.name", Problem::Required, "name or generateName is required"),
            FieldError::new("spec.cluster", Problem::NotFound, "no such cluster").with_value("east"),
        ]),
        "Space.tenancy.loft.sh \"x\" is invalid: [metadata.name: Required value: name or generateName is required, \
         spec.cluster: Not found: \"east\": no such cluster]"
    );
    assert_eq!(
        cause(&FieldError::new("spec.templateParameters.t", Problem::Unsupported, "not a parameter").with_value("t"))
            .message
            .as_deref(),
        Some("Unsupported value: \"t\": not a parameter")
    );
    assert_eq!(
        message(FieldError::not_supported("resourceVersionMatch", "Any", &["Exact", "NotOlderThan"]).into()),
        "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Any\": supported values: \
         \"Exact\", \"NotOlderThan\""
    );
    assert_eq!(
        message(Spaces::Strict(crate::api::decode::StrictError(vec![
            "unknown field \"spec.x\"".to_owned(),
            "unknown field \"y\"".to_owned()
        ]))),
        "strict decoding error: unknown field \"spec.x\", unknown field \"y\""
    );
}

// --- accounts ---

#[tokio::test]
async fn accounts_show_the_callers_own_in_every_verb() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let accounts = "/apis/tenancy.loft.sh/v1/accounts";
    let list = alice.get(accounts).await.json();
    assert_eq!(
        (list["kind"].as_str(), names(&list)),
        (Some("AccountList"), vec!["team"])
    );
    assert!(names(&as_user(&app, "bob").get(accounts).await.json()).is_empty());
    let table = alice.get_as(accounts, TABLE).await.json();
    assert_eq!(table["rows"][0]["cells"][0], "team");

    assert_eq!(
        alice.get(&format!("{accounts}/team")).await.json()["metadata"]["name"],
        "team"
    );
    as_user(&app, "bob")
        .get(&format!("{accounts}/team"))
        .await
        .status(404, "NotFound");

    let (code, events) = alice.watch(&format!("{accounts}?watch=true"), 1).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(
        (
            events[0]["type"].as_str(),
            events[0]["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("team"))
    );
    let (_, expired) = alice
        .watch(&format!("{accounts}?watch=true&resourceVersion=1"), 1)
        .await;
    assert_eq!(expired[0]["object"]["code"], 410);
    alice.get_as(accounts, "text/html").await.status(406, "NotAcceptable");
}

#[tokio::test]
async fn accounts_show_their_members_the_templates_parameters_and_the_clusters_to_create_in() {
    let cache = cache();
    let template = serde_json::from_value(json!({
        "metadata": {"name": "with-tier", "resourceVersion": "6"},
        "spec": {"parameters": [
            {"name": "tier", "default": "dev", "required": true, "validation": "dev|prod", "description": "Where"},
            {"name": "owner"},
        ]}
    }))
    .expect("a SpaceTemplate");
    let named = serde_json::from_value(json!({
        "metadata": {"name": "data", "resourceVersion": "7"},
        "spec": {"subjects": [{"kind": "User", "name": "alice"}],
                 "space": {"templates": ["with-tier", "missing"], "clusters": ["east", "gone"]}}
    }))
    .expect("an Account");
    cache.apply(Update::SpaceTemplate(Event::Apply(template)));
    cache.apply(Update::Account(Event::Apply(named)));
    for cluster in ["east", "west"] {
        cache.apply(Update::Online {
            cluster: cluster.to_owned(),
            online: true,
        });
    }
    let app = app(cache);
    let alice = as_user(&app, "alice");
    let accounts = "/apis/tenancy.loft.sh/v1/accounts";

    let data = alice.get(&format!("{accounts}/data")).await.json();
    assert_eq!(
        data["spec"]["space"]["parameters"],
        json!([
            {"template": "with-tier", "name": "tier", "default": "dev", "required": true, "validation": "dev|prod",
             "description": "Where"},
            {"template": "with-tier", "name": "owner", "required": false},
        ])
    );
    // The clusters it names that are connected; an account naming none may create in every connected cluster.
    assert_eq!(data["spec"]["space"]["clusters"], json!(["east"]));
    let team = alice.get(&format!("{accounts}/team")).await.json();
    assert_eq!(team["spec"]["space"]["clusters"], json!(["east", "west"]));
    assert_eq!(team["spec"]["space"]["parameters"], json!([]));
    let list = alice.get(accounts).await.json();
    assert_eq!(list["items"][0]["spec"]["space"]["parameters"][0]["name"], "tier");
    // Nobody else learns them: the account answers as one that does not exist.
    as_user(&app, "bob")
        .get(&format!("{accounts}/data"))
        .await
        .status(404, "NotFound");
}

#[tokio::test]
async fn accounts_refuse_callers_without_rbac_and_bad_options() {
    let app = app(cache());
    let accounts = "/apis/tenancy.loft.sh/v1/accounts";
    let dave = as_user(&app, "denied-dave");
    let listed = dave.get(accounts).await.status(403, "Forbidden");
    assert_eq!(
        listed["message"],
        "accounts.tenancy.loft.sh is forbidden: User \"denied-dave\" cannot list resource \"accounts\" in API group \
         \"tenancy.loft.sh\" at the cluster scope: as the test says"
    );
    let got = dave.get(&format!("{accounts}/team")).await.status(403, "Forbidden");
    assert!(got["message"]
        .as_str()
        .is_some_and(|m| m.starts_with("accounts.tenancy.loft.sh \"team\" is forbidden") && m.contains("cannot get")));
    let watched = dave
        .get(&format!("{accounts}?watch=true"))
        .await
        .status(403, "Forbidden");
    assert!(watched["message"].as_str().is_some_and(|m| m.contains("cannot watch")));

    let alice = as_user(&app, "alice");
    for uri in [
        format!("{accounts}?includeObject=All"),
        format!("{accounts}/team?includeObject=All"),
        format!("{accounts}?watch=true&includeObject=All"),
    ] {
        let refused = alice.get_as(&uri, TABLE).await.status(400, "BadRequest");
        assert_eq!(
            refused["message"], "includeObject must be one of None, Metadata, Object",
            "{uri}"
        );
    }
    alice
        .get_as(&format!("{accounts}/team"), "application/yaml")
        .await
        .status(406, "NotAcceptable");
}

#[tokio::test]
async fn an_account_watch_encodes_like_a_space_watch() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let accounts = "/apis/tenancy.loft.sh/v1/accounts";
    let uri = format!("{accounts}?watch=true&sendInitialEvents=true&allowWatchBookmarks=true");
    let (_, events) = alice.watch_as(&uri, TABLE, 2).await;
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[0]["object"]["kind"], "Table");
    assert_eq!(events[0]["object"]["rows"][0]["cells"][0], "team");
    assert!(events[0]["object"]["columnDefinitions"].is_array());
    assert_eq!(
        (events[1]["type"].as_str(), events[1]["object"]["kind"].as_str()),
        (Some("BOOKMARK"), Some("Table"))
    );
    let (_, expired) = alice
        .watch(&format!("{accounts}?watch=true&resourceVersion=1"), 1)
        .await;
    assert_eq!(
        expired[0]["object"],
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "too old resource version: 1", "reason": "Expired", "code": 410})
    );
}

// --- the web console ---

const CONSOLE: &str = "/apis/tenancy.loft.sh/v1/console";

#[tokio::test]
async fn console_page_is_served_at_its_folder_with_a_strict_policy() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    let page = alice.get(&format!("{CONSOLE}/")).await;
    assert_eq!(page.code, StatusCode::OK);
    assert_eq!(page.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    let policy = page.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("ASCII");
    assert!(policy.starts_with("default-src 'self';"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(page.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(page.headers[header::CACHE_CONTROL], "no-cache, private");
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains(r#"<script type="module" src="app.js"></script>"#),
        "{html}"
    );
    // No inline script: every <script> names its file.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script type=\"module\" src=").count()
    );

    // Without its slash, the folder sends the browser on to itself with one, so the page's relative URLs resolve
    // under it: a page, not a redirect, which kube-apiserver's aggregator would refuse to pass on.
    let bare = alice.get(CONSOLE).await;
    assert_eq!(bare.code, StatusCode::OK);
    assert_eq!(bare.headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert!(bare.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .is_ok_and(|p| p.starts_with("default-src 'self';")));
    let html = String::from_utf8_lossy(&bare.body);
    assert!(
        html.contains(r#"<meta http-equiv="refresh" content="0; url=console/">"#),
        "{html}"
    );
    assert!(!html.contains("<script"), "{html}");
    // index.html by its name too, and again from the client's cache.
    let etag = page.headers[header::ETAG].clone();
    let cached = alice
        .send(
            alice
                .request(Method::GET, &format!("{CONSOLE}/index.html"))
                .header(header::IF_NONE_MATCH, etag),
            "",
        )
        .await;
    assert_eq!(cached.code, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn console_files_are_served_with_their_types_and_unknown_ones_are_a_not_found_status() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    for (file, content_type) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("app.css", "text/css; charset=utf-8"),
    ] {
        let answer = alice.get(&format!("{CONSOLE}/{file}")).await;
        assert_eq!(answer.code, StatusCode::OK, "{file}");
        assert_eq!(answer.headers[header::CONTENT_TYPE], content_type, "{file}");
        assert_eq!(answer.headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{file}");
        assert!(!answer.body.is_empty(), "{file}");
    }
    let missing = alice.get(&format!("{CONSOLE}/nope.js")).await.status(404, "NotFound");
    assert_eq!(missing["message"], "console.tenancy.loft.sh \"nope.js\" not found");
    alice
        .get(&format!("{CONSOLE}/app.js/more"))
        .await
        .status(405, "MethodNotAllowed");
    alice
        .send(alice.request(Method::POST, &format!("{CONSOLE}/")), "")
        .await
        .status(405, "MethodNotAllowed");
}

#[tokio::test]
async fn console_is_authorized_as_kube_apiserver_authorizes_its_paths_and_is_not_discovered() {
    let app = app(cache());
    let denied = as_user(&app, "denied-dave");
    let page = denied.get(&format!("{CONSOLE}/")).await.status(403, "Forbidden");
    assert_eq!(
        page["message"],
        "console.tenancy.loft.sh is forbidden: User \"denied-dave\" cannot list resource \"console\" in API group \
         \"tenancy.loft.sh\" at the cluster scope: as the test says"
    );
    let file = denied.get(&format!("{CONSOLE}/app.js")).await.status(403, "Forbidden");
    assert_eq!(
        file["message"],
        "console.tenancy.loft.sh \"app.js\" is forbidden: User \"denied-dave\" cannot get resource \"console\" in API \
         group \"tenancy.loft.sh\" at the cluster scope: as the test says"
    );
    // Nor is an unknown file disclosed before authorization.
    denied.get(&format!("{CONSOLE}/nope.js")).await.status(403, "Forbidden");

    let admin = as_admin(&app);
    let resources = admin.get("/apis/tenancy.loft.sh/v1").await.json();
    let names: Vec<&str> = resources["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["spaces", "spaces/sleep", "spaces/wake", "accounts"]);
    let v2 = admin
        .get_as(
            "/apis",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )
        .await;
    assert!(!String::from_utf8_lossy(&v2.body).contains("console"));
}

// --- the stack around any handler ---

#[tokio::test]
async fn discovery_refuses_representations_it_cannot_give() {
    let app = app(cache());
    let alice = as_user(&app, "alice");
    alice
        .get_as("/apis", "application/vnd.kubernetes.protobuf")
        .await
        .status(406, "NotAcceptable");
    alice
        .get_as("/apis", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .await
        .status(406, "NotAcceptable");
}

/// The stack around `handler` instead of the dispatch: what every request gets whatever its handler does.
async fn around_handler<F, Fut>(app: &Arc<App>, handler: F, uri: &str) -> Answer
where
    F: Fn(super::Request) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = super::Response> + Send + 'static,
{
    let service = around(
        app.clone(),
        peer(true),
        tower::service_fn(move |request| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        }),
    );
    let request = as_user(app, "alice")
        .request(Method::GET, uri)
        .body(Full::new(Bytes::new()))
        .expect("a request");
    let response = service.oneshot(request).await.unwrap_or_else(|never| match never {});
    let (parts, body) = response.into_parts();
    Answer {
        code: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("a body").to_bytes(),
    }
}

#[tokio::test]
async fn a_handler_that_panics_answers_500_and_the_stack_serves_on() {
    let app = app(cache());
    fn panics() -> super::Response {
        panic!("a handler that panics on purpose")
    }
    let panicked = around_handler(&app, |_| async { panics() }, SPACES)
        .await
        .status(500, "InternalError");
    assert_eq!(
        panicked["message"],
        "an error on the server has prevented the request from succeeding"
    );
    // The request was counted as any other.
    let metrics = as_admin(&app).get("/metrics").await;
    assert!(String::from_utf8_lossy(&metrics.body).contains("code=\"500\""));
    assert_eq!(as_user(&app, "alice").get(SPACES).await.code, StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn a_handler_that_does_not_answer_in_time_answers_504() {
    let app = app(cache());
    let started = tokio::time::Instant::now();
    let timeout = around_handler(&app, |_| std::future::pending(), SPACES)
        .await
        .status(504, "Timeout");
    assert_eq!(
        timeout["message"],
        "Timeout: request did not complete within the allowed duration"
    );
    let waited = started.elapsed();
    assert!(
        waited >= super::stack::REQUEST_TIMEOUT && waited < super::stack::REQUEST_TIMEOUT + Duration::from_secs(1),
        "{waited:?}"
    );
}

#[tokio::test]
async fn readiness_fails_while_draining_and_everything_else_is_still_served() {
    let app = app(cache());
    let anonymous = Client {
        app: app.clone(),
        peer: peer(false),
        user: None,
    };
    assert_eq!(anonymous.get("/readyz").await.code, StatusCode::OK);
    app.shutdown.drain();
    let draining = anonymous.get("/readyz").await;
    assert_eq!(draining.code, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(String::from_utf8_lossy(&draining.body).contains("[-]shutdown"));
    assert_eq!(anonymous.get("/livez").await.code, StatusCode::OK);
    assert_eq!(names(&as_user(&app, "alice").get(SPACES).await.json()), ["a"]);
}
