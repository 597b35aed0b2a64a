//! Discovery: the group list (or aggregated discovery v2), the group, its resources, and `/version`; open to every
//! authenticated user, as kube's `system:discovery` role makes them.

use http::{header, HeaderMap, HeaderValue, StatusCode};

use super::error::Error;
use super::negotiate::{negotiate, Output, Target};
use super::request_info::Discovery;
use super::{response, Response};
use crate::api::discovery;

/// # Errors
/// An `Accept` header this server cannot satisfy.
pub fn serve(document: Discovery, headers: &HeaderMap) -> Result<Response, Error> {
    Ok(match document {
        Discovery::Root => return root(headers),
        Discovery::Group => response::json(StatusCode::OK, &discovery::api_group()),
        Discovery::Resources => response::json(StatusCode::OK, &discovery::api_resource_list()),
        Discovery::Version => response::json(StatusCode::OK, &version()),
    })
}

fn root(headers: &HeaderMap) -> Result<Response, Error> {
    match negotiate(super::accept(headers), Target::Discovery).ok_or(Error::NotAcceptable)? {
        Output::DiscoveryV2 => {
            static DOCUMENT: std::sync::OnceLock<crate::api::openapi::Document> = std::sync::OnceLock::new();
            let document = DOCUMENT.get_or_init(|| crate::api::openapi::Document::new(&discovery::aggregated_v2()));
            let mut response = response::cacheable(
                headers,
                document,
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
            );
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("public"));
            Ok(response)
        }
        _ => Ok(response::json(StatusCode::OK, &discovery::api_group_list())),
    }
}

fn version() -> serde_json::Value {
    serde_json::json!({
        "major": "1",
        "minor": "0",
        "gitVersion": concat!("v", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
    })
}
