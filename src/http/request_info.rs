//! What a request asks for, worked out once from its method, path and query (kube-apiserver's RequestInfo): the one
//! route table, read by authentication (is an identity needed?), authorization (which attributes?) and dispatch.

use std::collections::HashMap;

use http::Method;

use crate::api::GROUP;
use crate::authz::Attributes;

/// The request's query, first value per key (as Go's `url.Values.Get`).
#[derive(Clone, Debug, Default)]
pub struct Query(HashMap<String, String>);

/// The resources this server serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Spaces,
    Accounts,
    /// The web console's files (`console/` and `console/<file>`): not an API resource, but kube-apiserver authorizes
    /// every path under `/apis/<group>/<version>` as one, so this server does too, with the same attributes.
    Console,
    /// Connecting a cluster from the web console (create only).
    ClusterConnections,
    /// A space sent to sleep now (`spaces/<name>/sleep`, create only).
    SpaceSleep,
    /// A space woken now (`spaces/<name>/wake`, create only).
    SpaceWake,
}

/// kube's verbs, as RBAC names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    List,
    Watch,
    Get,
    Create,
    Update,
    Patch,
    Delete,
}

/// The documents every authenticated user may read (kube's `system:discovery` role).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discovery {
    /// `/apis`: the group list, or aggregated discovery v2.
    Root,
    /// `/apis/tenancy.loft.sh`
    Group,
    /// `/apis/tenancy.loft.sh/v1`
    Resources,
    /// `/version`
    Version,
}

/// Non-resource paths behind a `get` authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Document {
    OpenApiV2,
    OpenApiV3Root,
    OpenApiV3Group,
    Metrics,
    /// A path this server does not serve: 404 for those allowed to ask, 403 for the others (as kube-apiserver).
    Unknown,
}

/// Health probes: answered without an identity, since kubelet's probes carry none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Probe(Probe),
    Discovery(Discovery),
    Document(Document),
    Resource {
        resource: Resource,
        verb: Verb,
        /// Empty for collection verbs.
        name: String,
    },
    /// kube-apiserver's audit webhook (`POST /audit`, `/audit/<cluster>` from a connected cluster's): requests in
    /// namespaces are sleep mode's activity.
    Audit {
        /// `None`: the management cluster's kube-apiserver.
        cluster: Option<String>,
    },
    /// A method this server does not serve on an existing resource path.
    MethodNotAllowed,
    /// A method other than GET on a path this server does not serve.
    NotFound,
}

/// Whom a request needs to be: nobody, anybody authenticated, or somebody the authorizer allows.
pub enum Access {
    Public,
    Authenticated,
    Authorized(Attributes),
}

#[derive(Clone, Debug)]
pub struct RequestInfo {
    pub method: Method,
    /// Without a trailing slash.
    pub path: String,
    pub query: Query,
    pub target: Target,
}

// === impl Query ===

impl Query {
    #[must_use]
    pub fn parse(query: Option<&str>) -> Self {
        let mut params = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            params.entry(key.into_owned()).or_insert_with(|| value.into_owned());
        }
        Query(params)
    }

    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// The value, unless missing or empty.
    #[must_use]
    pub fn nonempty(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    /// A boolean parameter as kube parses it (`true` or `1`); `None` when absent.
    #[must_use]
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| matches!(v, "true" | "1"))
    }

    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

// === impl Resource ===

impl Resource {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Spaces => crate::api::space::RESOURCE,
            Resource::Accounts => crate::spaces::accounts::RESOURCE,
            Resource::Console => crate::api::CONSOLE_RESOURCE,
            Resource::ClusterConnections => crate::api::connection::RESOURCE,
            Resource::SpaceSleep => "spaces/sleep",
            Resource::SpaceWake => "spaces/wake",
        }
    }
}

// === impl Verb ===

impl Verb {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Get => "get",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
        }
    }
}

// === impl RequestInfo ===

impl RequestInfo {
    #[must_use]
    pub fn new(method: &Method, uri: &http::Uri) -> Self {
        let path = uri.path().trim_end_matches('/').to_owned();
        let query = Query::parse(uri.query());
        let target = target(method, &path, &query);
        RequestInfo {
            method: method.clone(),
            path,
            query,
            target,
        }
    }

    /// The verb as kube's audit log and RBAC name it: the resource verb, or the method for other paths.
    #[must_use]
    pub fn verb(&self) -> &'static str {
        match &self.target {
            Target::Resource { verb, .. } => verb.as_str(),
            _ => match self.method {
                Method::GET | Method::HEAD => "get",
                Method::POST => "post",
                Method::PUT => "put",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "other",
            },
        }
    }

    /// Who may make this request.
    #[must_use]
    pub fn access(&self) -> Access {
        match &self.target {
            Target::Probe(_) => Access::Public,
            Target::Discovery(_) | Target::MethodNotAllowed | Target::NotFound => Access::Authenticated,
            Target::Document(_) => Access::Authorized(Attributes::Path {
                verb: "get".to_owned(),
                path: self.path.clone(),
            }),
            // As kube-apiserver authorizes a non-resource POST.
            Target::Audit { .. } => Access::Authorized(Attributes::Path {
                verb: "post".to_owned(),
                path: self.path.clone(),
            }),
            Target::Resource { resource, verb, name } => Access::Authorized(Attributes::Resource {
                verb: verb.as_str().to_owned(),
                resource: resource.as_str().to_owned(),
                name: name.clone(),
            }),
        }
    }
}

fn target(method: &Method, path: &str, query: &Query) -> Target {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let get = method == Method::GET;
    let collection = if query.flag("watch") == Some(true) {
        Verb::Watch
    } else {
        Verb::List
    };
    let resource = |resource, verb, name: &str| Target::Resource {
        resource,
        verb,
        name: name.to_owned(),
    };
    match (segments.as_slice(), get) {
        (["healthz" | "livez"], _) => Target::Probe(Probe::Live),
        (["readyz"], _) => Target::Probe(Probe::Ready),
        (["apis"], true) => Target::Discovery(Discovery::Root),
        (["apis", GROUP], true) => Target::Discovery(Discovery::Group),
        (["apis", GROUP, "v1"], true) => Target::Discovery(Discovery::Resources),
        (["version"], true) => Target::Discovery(Discovery::Version),
        (["apis", GROUP, "v1", "spaces"], _) => match *method {
            Method::GET => resource(Resource::Spaces, collection, ""),
            Method::POST => resource(Resource::Spaces, Verb::Create, ""),
            _ => Target::MethodNotAllowed,
        },
        (["apis", GROUP, "v1", "spaces", name], _) => match *method {
            Method::GET => resource(Resource::Spaces, Verb::Get, name),
            Method::PUT => resource(Resource::Spaces, Verb::Update, name),
            Method::PATCH => resource(Resource::Spaces, Verb::Patch, name),
            Method::DELETE => resource(Resource::Spaces, Verb::Delete, name),
            _ => Target::MethodNotAllowed,
        },
        (["apis", GROUP, "v1", "spaces", name, "sleep"], false) if *method == Method::POST => {
            resource(Resource::SpaceSleep, Verb::Create, name)
        }
        (["apis", GROUP, "v1", "spaces", name, "wake"], false) if *method == Method::POST => {
            resource(Resource::SpaceWake, Verb::Create, name)
        }
        (["apis", GROUP, "v1", "accounts"], true) => resource(Resource::Accounts, collection, ""),
        (["apis", GROUP, "v1", "accounts", name], true) => resource(Resource::Accounts, Verb::Get, name),
        // kube-apiserver's RequestInfo: `console` (with or without its slash) is a list, `console/app.js` a get.
        (["apis", GROUP, "v1", "console"], true) => resource(Resource::Console, collection, ""),
        (["apis", GROUP, "v1", "console", name], true) => resource(Resource::Console, Verb::Get, name),
        (["apis", GROUP, "v1", "clusterconnections"], false) if *method == Method::POST => {
            resource(Resource::ClusterConnections, Verb::Create, "")
        }
        (["apis", GROUP, "v1", "spaces" | "accounts" | "console" | "clusterconnections", ..], _) => {
            Target::MethodNotAllowed
        }
        (["openapi", "v2"], true) => Target::Document(Document::OpenApiV2),
        (["openapi", "v3"], true) => Target::Document(Document::OpenApiV3Root),
        (["openapi", "v3", "apis", GROUP, "v1"], true) => Target::Document(Document::OpenApiV3Group),
        (["metrics"], true) => Target::Document(Document::Metrics),
        (["audit"], false) if *method == Method::POST => Target::Audit { cluster: None },
        (["audit", cluster], false) if *method == Method::POST => Target::Audit {
            cluster: Some((*cluster).to_owned()),
        },
        (_, true) => Target::Document(Document::Unknown),
        (_, false) => Target::NotFound,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target_of(method: Method, uri: &str) -> Target {
        RequestInfo::new(&method, &uri.parse().expect("a URI")).target
    }

    fn spaces(verb: Verb, name: &str) -> Target {
        Target::Resource {
            resource: Resource::Spaces,
            verb,
            name: name.to_owned(),
        }
    }

    #[test]
    fn verbs_follow_method_path_and_watch_parameter() {
        let base = "/apis/tenancy.loft.sh/v1";
        assert_eq!(
            target_of(Method::GET, &format!("{base}/spaces")),
            spaces(Verb::List, "")
        );
        assert_eq!(
            target_of(Method::GET, &format!("{base}/spaces/?watch=1")),
            spaces(Verb::Watch, "")
        );
        assert_eq!(
            target_of(Method::GET, &format!("{base}/spaces?watch=false")),
            spaces(Verb::List, "")
        );
        assert_eq!(
            target_of(Method::POST, &format!("{base}/spaces")),
            spaces(Verb::Create, "")
        );
        assert_eq!(
            target_of(Method::GET, &format!("{base}/spaces/a")),
            spaces(Verb::Get, "a")
        );
        assert_eq!(
            target_of(Method::PUT, &format!("{base}/spaces/a")),
            spaces(Verb::Update, "a")
        );
        assert_eq!(
            target_of(Method::PATCH, &format!("{base}/spaces/a")),
            spaces(Verb::Patch, "a")
        );
        assert_eq!(
            target_of(Method::DELETE, &format!("{base}/spaces/a")),
            spaces(Verb::Delete, "a")
        );
        assert_eq!(
            target_of(Method::DELETE, &format!("{base}/spaces")),
            Target::MethodNotAllowed
        );
        assert_eq!(
            target_of(Method::POST, &format!("{base}/spaces/a")),
            Target::MethodNotAllowed
        );
        assert_eq!(
            target_of(Method::GET, &format!("{base}/spaces/a/status")),
            Target::MethodNotAllowed
        );
        assert_eq!(
            target_of(Method::POST, &format!("{base}/accounts")),
            Target::MethodNotAllowed
        );
    }

    #[test]
    fn console_paths_are_authorized_as_kube_apiserver_does_list_for_the_folder_get_for_a_file() {
        let console = |verb, name: &str| Target::Resource {
            resource: Resource::Console,
            verb,
            name: name.to_owned(),
        };
        let base = "/apis/tenancy.loft.sh/v1/console";
        assert_eq!(target_of(Method::GET, base), console(Verb::List, ""));
        assert_eq!(target_of(Method::GET, &format!("{base}/")), console(Verb::List, ""));
        assert_eq!(
            target_of(Method::GET, &format!("{base}/app.js")),
            console(Verb::Get, "app.js")
        );
        assert_eq!(target_of(Method::POST, base), Target::MethodNotAllowed);
        assert_eq!(target_of(Method::GET, &format!("{base}/a/b")), Target::MethodNotAllowed);
    }

    #[test]
    fn everything_else_is_a_document_probe_or_missing() {
        assert_eq!(target_of(Method::GET, "/healthz"), Target::Probe(Probe::Live));
        assert_eq!(target_of(Method::GET, "/readyz/"), Target::Probe(Probe::Ready));
        assert_eq!(target_of(Method::GET, "/apis"), Target::Discovery(Discovery::Root));
        assert_eq!(target_of(Method::POST, "/apis"), Target::NotFound);
        assert_eq!(target_of(Method::GET, "/metrics"), Target::Document(Document::Metrics));
        assert_eq!(target_of(Method::GET, "/nope"), Target::Document(Document::Unknown));
        assert_eq!(target_of(Method::PUT, "/nope"), Target::NotFound);
    }

    #[test]
    fn query_keeps_the_first_value_and_decodes() {
        let query = Query::parse(Some("labelSelector=a%3Db&labelSelector=c&watch=true&limit="));
        assert_eq!(query.get("labelSelector"), Some("a=b"));
        assert_eq!(query.flag("watch"), Some(true));
        assert_eq!(query.nonempty("limit"), None);
        assert!(query.contains("limit"));
    }
}
