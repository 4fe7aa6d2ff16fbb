//! Request extractors whose refusals are problem documents with stable codes. axum's own
//! extractors answer `text/plain` (`400 Invalid URL: …`, `415 Expected request with
//! Content-Type: application/json`), which clients cannot branch on; these wrap them, map each
//! refusal onto [`ApiError`], and refuse text PostgreSQL cannot store before a handler sees it.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequest, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, invalid_text, json_has_unstorable_text};

/// A path parameter. One that cannot be what the route names (an id that is not a UUID) is a
/// resource that cannot exist: `404 not_found`.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::MalformedPath(e.body_text())),
            Err(e) => Err(ApiError::Internal(format!("path parameters: {}", e.body_text()))),
        }
    }
}

/// Query parameters: `422 invalid_query` when they do not parse, `422 invalid_text` when a
/// value or a name holds a NUL character.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        check_query_text(parts.uri.query())?;
        let axum::extract::Query(v) =
            axum::extract::Query::<T>::try_from_uri(&parts.uri).map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
        Ok(Self(v))
    }
}

/// Refuses a query string whose decoded names or values hold a NUL character.
pub fn check_query_text(query: Option<&str>) -> Result<(), ApiError> {
    let Some(q) = query else { return Ok(()) };
    match url::form_urlencoded::parse(q.as_bytes()).find(|(k, v)| k.contains('\0') || v.contains('\0')) {
        Some((k, _)) => Err(invalid_text(&format!("query parameter `{}`", k.replace('\0', "\u{FFFD}")))),
        None => Ok(()),
    }
}

/// A JSON body: `415 unsupported_media_type` without a JSON content type, `413
/// payload_too_large` past the route's body limit, `422 invalid_json` when it does not parse
/// into `T`, and `422 invalid_text` when a string or key at any depth holds a NUL character.
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(&req) {
            return Err(ApiError::UnsupportedMediaType("send the body as application/json".into()));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        parse(&bytes).map(Self)
    }
}

/// An optional JSON body: absent when the request has no `Content-Type` and no body, refused
/// like [`Json`] otherwise.
impl<S: Send + Sync, T: DeserializeOwned> OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if req.headers().contains_key(header::CONTENT_TYPE) {
            return <Self as FromRequest<S>>::from_request(req, state).await.map(Some);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            Ok(None)
        } else {
            Err(ApiError::UnsupportedMediaType("a body needs Content-Type: application/json".into()))
        }
    }
}

/// A JSON body of a route without a body limit of its own (one that also takes uploads):
/// refused like [`Json`], and with `413` past `limit` bytes.
pub async fn json_limited<T: DeserializeOwned>(req: Request, limit: usize) -> Result<T, ApiError> {
    if !is_json(&req) {
        return Err(ApiError::UnsupportedMediaType("send application/json, or multipart/form-data with the file".into()));
    }
    let bytes = axum::body::to_bytes(req.into_body(), limit).await.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::BodyTooLarge(format!("a JSON body may have at most {limit} bytes"))
        } else {
            ApiError::invalid("invalid_json", format!("the body could not be read: {e}"))
        }
    })?;
    parse(&bytes)
}

/// Largest JSON body [`refuse_unstorable_json`] reads: axum's default body limit, which every
/// JSON route but `POST /v1/jobs` (stricter, in its handler) keeps.
pub const MAX_JSON_BYTES: usize = 2 * 1024 * 1024;

/// Refuses a JSON body holding text PostgreSQL cannot store, whichever handler (and whichever
/// module's extractor) would read it, and gives the request back with its body otherwise. A
/// body that does not parse is left for the handler to refuse in its own terms.
pub async fn refuse_unstorable_json(req: Request) -> Result<Request, ApiError> {
    if !is_json(&req) {
        return Ok(req);
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_JSON_BYTES).await.map_err(|e| {
        if is_length_limit(&e) {
            ApiError::BodyTooLarge(format!("a JSON body may have at most {MAX_JSON_BYTES} bytes"))
        } else {
            ApiError::invalid("invalid_json", format!("the body could not be read: {e}"))
        }
    })?;
    if serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| json_has_unstorable_text(&v)) {
        return Err(invalid_text("the JSON body"));
    }
    Ok(Request::from_parts(parts, axum::body::Body::from(bytes)))
}

/// Whether reading a body failed on its size limit.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// `application/json`, or any `application/*+json`, as axum's own extractor accepts.
fn is_json(req: &Request) -> bool {
    let Some(ct) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn body_rejection(e: BytesRejection) -> ApiError {
    match e {
        BytesRejection::FailedToBufferBody(axum::extract::rejection::FailedToBufferBody::LengthLimitError(_)) => {
            ApiError::BodyTooLarge("the JSON body is larger than this route accepts".into())
        }
        other => ApiError::invalid("invalid_json", other.body_text()),
    }
}

/// Parses a JSON body, refusing text PostgreSQL cannot store before anything else sees it.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::invalid("invalid_json", format!("the body is not valid JSON: {e}")))?;
    if json_has_unstorable_text(&value) {
        return Err(invalid_text("the JSON body"));
    }
    serde_json::from_value(value).map_err(|e| ApiError::invalid("invalid_json", format!("the body does not match the schema: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Named {
        name: String,
    }

    #[test]
    fn json_bodies_with_nul_anywhere_are_invalid_text() {
        for body in [r#"{"name": "a\u0000b"}"#, r#"{"name": "x", "deep": [{"k\u0000": 1}]}"#, r#"{"name": "x", "o": {"a": ["\u0000"]}}"#] {
            let err = parse::<serde_json::Value>(body.as_bytes()).expect_err(body);
            assert_eq!(err.code(), "invalid_text", "{body}");
            assert_eq!(err.status(), 422);
        }
        // An escaped backslash followed by `u0000` is ordinary text.
        assert_eq!(parse::<Named>(br#"{"name": "\\u0000"}"#).expect("storable").name, "\\u0000");
    }

    #[test]
    fn json_that_does_not_fit_is_invalid_json() {
        assert_eq!(parse::<Named>(b"{").expect_err("syntax").code(), "invalid_json");
        assert_eq!(parse::<Named>(br#"{"name": 1}"#).expect_err("type").code(), "invalid_json");
        assert_eq!(parse::<Named>(br#"{"name": "a", "x": 1}"#).expect_err("unknown field").code(), "invalid_json");
    }

    #[test]
    fn query_strings_with_nul_are_invalid_text() {
        assert_eq!(check_query_text(Some("schedule=a%00b")).expect_err("nul").code(), "invalid_text");
        assert_eq!(check_query_text(Some("a%00=1")).expect_err("nul name").code(), "invalid_text");
        assert!(check_query_text(Some("schedule=pull&limit=5")).is_ok());
        assert!(check_query_text(None).is_ok());
    }
}
