//! The media types a write's body may have, as kube-apiserver accepts them for each verb: JSON or YAML for an object
//! (create, update, a delete's options), a patch type for patch. Anything else is refused with 415 before the body is
//! read, as kube-apiserver does: a browser sends `text/plain`, a form or multipart across origins without asking first,
//! so a page a tenant visits could otherwise write through the tenant's `kubectl proxy`. And reading such a body: whole,
//! within [`MAX_BODY`], decoded as its media type says.

use http::{header, HeaderMap};

use bytes::Bytes;
use http_body_util::BodyExt;

use super::error::Error;
use super::{Call, RequestBody, MAX_BODY};
use crate::spaces::write::PatchType;

/// What create, update and delete accept, in kube-apiserver's order (a body without a Content-Type is the first).
pub const OBJECT_TYPES: &[&str] = &["application/json", "application/yaml"];
/// What patch accepts; strategic merge patch is not among them (a space has no patch strategy of its own).
pub const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/apply-patch+yaml",
];

/// How an object's body is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

/// The format of an object body, from its Content-Type. As kube-apiserver's negotiation: parameters (`charset`) are
/// ignored, the type is case-insensitive, and no Content-Type at all means JSON.
///
/// # Errors
/// Any other media type, or one that does not parse: 415.
pub fn object(headers: &HeaderMap) -> Result<Format, Error> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Format::Json);
    };
    let essence = value.to_str().ok().and_then(essence);
    match essence.as_deref() {
        Some("application/json") => Ok(Format::Json),
        Some("application/yaml") => Ok(Format::Yaml),
        _ => Err(Error::UnsupportedMediaType(OBJECT_TYPES)),
    }
}

/// The patch type of a patch body, from its Content-Type. As kube-apiserver: everything before the first `;`, trimmed,
/// compared as it is (a patch without a Content-Type is refused).
///
/// # Errors
/// Any other media type: 415.
pub fn patch(headers: &HeaderMap) -> Result<PatchType, Error> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match value.split(';').next().unwrap_or_default().trim() {
        "application/json-patch+json" => Ok(PatchType::Json),
        "application/merge-patch+json" => Ok(PatchType::Merge),
        "application/apply-patch+yaml" => Ok(PatchType::Apply),
        _ => Err(Error::UnsupportedMediaType(PATCH_TYPES)),
    }
}

/// The request body, whole, within [`MAX_BODY`].
pub async fn body(call: Call) -> Result<(Call, Bytes), Error> {
    let (call, body) = call.take_body();
    Ok((call, read(body).await?))
}

/// A request body, whole, within [`MAX_BODY`] (the stack limits it; past it, 413).
pub async fn read(body: RequestBody) -> Result<Bytes, Error> {
    match body.collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(Error::TooLarge { limit: MAX_BODY }),
        Err(_) => Err(Error::BadRequest("the request body could not be read".to_owned())),
    }
}

/// A JSON or YAML document, as its Content-Type says.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], format: Format) -> Result<T, String> {
    match format {
        Format::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Format::Yaml => std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_saphyr::from_str(text).map_err(|e| e.to_string())),
    }
}

/// `type/subtype` of a media type, lowercased, when it is one (Go's `mime.ParseMediaType` as far as it matters here).
fn essence(value: &str) -> Option<String> {
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
    };
    (token(kind) && token(subtype)).then_some(essence)
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("a header value"),
        );
        headers
    }

    #[test]
    fn objects_are_json_or_yaml_whatever_their_parameters_or_case() {
        assert_eq!(object(&HeaderMap::new()).ok(), Some(Format::Json));
        assert_eq!(object(&with("application/json")).ok(), Some(Format::Json));
        assert_eq!(
            object(&with("Application/JSON; charset=utf-8")).ok(),
            Some(Format::Json)
        );
        assert_eq!(object(&with("application/yaml")).ok(), Some(Format::Yaml));
    }

    #[test]
    fn what_a_browser_sends_across_origins_is_refused() {
        for refused in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "",
            "application/vnd.kubernetes.protobuf",
            "json",
        ] {
            assert!(
                matches!(object(&with(refused)), Err(Error::UnsupportedMediaType(OBJECT_TYPES))),
                "{refused:?} was accepted"
            );
            assert!(
                matches!(patch(&with(refused)), Err(Error::UnsupportedMediaType(PATCH_TYPES))),
                "{refused:?} was accepted as a patch"
            );
        }
        assert!(object(&with("application/json-patch+json")).is_err());
    }

    #[test]
    fn patches_are_the_patch_types_only() {
        assert_eq!(
            patch(&with("application/merge-patch+json; charset=utf-8")).ok(),
            Some(PatchType::Merge)
        );
        assert_eq!(patch(&with("application/json-patch+json")).ok(), Some(PatchType::Json));
        assert_eq!(
            patch(&with("application/apply-patch+yaml")).ok(),
            Some(PatchType::Apply)
        );
        assert!(patch(&HeaderMap::new()).is_err());
        assert!(patch(&with("application/strategic-merge-patch+json")).is_err());
        assert!(patch(&with("application/json")).is_err());
    }
}
