//! The web console: its files (console/: HTML, CSS, JavaScript modules), embedded in the binary and served under
//! `/apis/tenancy.loft.sh/v1/console/`, so kube-apiserver authenticates the browser's user exactly as for spaces and the
//! page talks, with that identity, to the same endpoints kubectl uses. Not listed in discovery: it is no API resource.
//!
//! Authorized as kube-apiserver authorizes the path (`list console` for the folder, `get console <file>` for a file).
//! The headers keep the page to itself: its own files only, no inline script (`Content-Security-Policy`), no sniffing,
//! no framing, no referrer leaving it.
//!
//! The folder asked for without its slash cannot be redirected: kube-apiserver's aggregator refuses any redirect from an
//! extension server (502 "the backend attempted to redirect this request, which is not permitted"). It gets a page
//! that sends the browser on (a meta refresh, as no script may run inline), so the console's relative URLs resolve.

use http::{header, HeaderMap, HeaderValue, StatusCode, Uri};

use super::error::Error;
use super::{response, Response};
use crate::api::openapi::Document;

/// The page's only sources are its own files (scripts, styles, and the API through `connect-src`, all `'self'`).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; \
object-src 'none'";

/// The folder without its slash: the browser is sent on to the folder (relative, so it holds behind any prefix a proxy
/// adds, as `kubectl proxy --api-prefix`).
const TO_FOLDER: &str = "<!doctype html>\n<html lang=\"en\">\n<meta charset=\"utf-8\">\n\
<meta http-equiv=\"refresh\" content=\"0; url=console/\">\n<title>tenancy console</title>\n\
<p><a href=\"console/\">Open the console</a></p>\n</html>\n";

/// Every file: name, content type, bytes.
const FILES: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("console/index.html"),
    ),
    ("app.css", "text/css; charset=utf-8", include_bytes!("console/app.css")),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/api.js"),
    ),
    (
        "ui.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/ui.js"),
    ),
    (
        "spaces.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/spaces.js"),
    ),
    (
        "create.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/create.js"),
    ),
    (
        "expose.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/expose.js"),
    ),
    (
        "accounts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/accounts.js"),
    ),
    (
        "shared.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/shared.js"),
    ),
    (
        "platform.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/platform.js"),
    ),
    (
        "connect.js",
        "text/javascript; charset=utf-8",
        include_bytes!("console/connect.js"),
    ),
    // Its own icon, or the browser asks kube-apiserver for /favicon.ico, which tenants may not read (a 403 per load).
    ("icon.svg", "image/svg+xml", include_bytes!("console/icon.svg")),
];

/// The file `name` (`""`: the folder, whose page is index.html), or, for the folder asked for without its slash, the
/// page that sends the browser to it: the console's files are relative to the folder. `install.json` says how this
/// server is installed (`localSpaces`: whether the management cluster's namespaces are spaces), for the platform pages.
///
/// # Errors
/// A file the console does not have: 404.
pub fn serve(name: &str, uri: &Uri, headers: &HeaderMap, local_spaces: bool) -> Result<Response, Error> {
    let mut response = if name.is_empty() && !uri.path().ends_with('/') {
        response::bytes(StatusCode::OK, "text/html; charset=utf-8", TO_FOLDER)
    } else if name == "install.json" {
        response::json(StatusCode::OK, &serde_json::json!({"localSpaces": local_spaces}))
    } else {
        let name = if name.is_empty() { "index.html" } else { name };
        let (index, content_type) = FILES
            .iter()
            .enumerate()
            .find_map(|(i, (file, content_type, _))| (*file == name).then_some((i, *content_type)))
            .ok_or_else(|| Error::ConsoleFileNotFound(name.to_owned()))?;
        response::cacheable(headers, &documents()[index], content_type)
    };
    let headers = response.headers_mut();
    // Revalidated on every load (an ETag makes that a 304), so a new server's console is used at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    Ok(response)
}

/// The files with their ETags, hashed once.
fn documents() -> &'static [Document] {
    static DOCUMENTS: std::sync::OnceLock<Vec<Document>> = std::sync::OnceLock::new();
    DOCUMENTS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, bytes)| Document::of_bytes(bytes.to_vec()))
            .collect()
    })
}
