//! The creators' web page at `/` and its assets, embedded in the binary from `api/web/`.
//!
//! Plain ES modules and CSS, no build step. Assets are served under `/assets/<version>/`, where
//! the version is a hash of all of them: the page itself is never cached, so it always names the
//! current version, and the assets can then be cached for a year without a stale module ever
//! meeting a new one (relative imports stay inside one version's folder). The page and its
//! assets are public; every API call the page makes carries the creator's key.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// Embedded files: name, content type, bytes.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../web/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../web/api.js")),
    ("render.js", "text/javascript; charset=utf-8", include_bytes!("../../web/render.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../web/style.css")),
    ("icon.svg", "image/svg+xml", include_bytes!("../../web/icon.svg")),
];

const INDEX: &str = include_str!("../../web/index.html");

/// Hash of every asset, naming the folder they are served from.
static VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut h = Sha256::new();
    for (name, _, bytes) in ASSETS {
        h.update(name.as_bytes());
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }
    hex::encode(&h.finalize()[..6])
});

/// The page with the asset folder filled in.
static PAGE: LazyLock<String> = LazyLock::new(|| INDEX.replace("{{assets}}", &format!("/assets/{}", *VERSION)));

/// `/` and `/assets/{version}/{file}`; not part of the API document.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(page)).route("/assets/{version}/{file}", get(asset))
}

/// The Content-Security-Policy of the page: only its own origin, plus the storage endpoint that
/// presigned uploads go to directly.
fn content_security_policy(storage_endpoint: &str) -> String {
    let storage = origin(storage_endpoint).map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
         connect-src 'self'{storage}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// `scheme://host[:port]` of a URL, if it is an http(s) URL without characters that could break
/// out of a CSP source expression.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let clean = !host.is_empty() && host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    clean.then(|| format!("{scheme}://{host}"))
}

async fn page(State(state): State<AppState>) -> Response {
    let mut resp = (StatusCode::OK, PAGE.as_str()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // Revalidated every time, so that it always names the current asset version.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(csp) = HeaderValue::from_str(&content_security_policy(&state.settings.storage.endpoint)) {
        h.insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    security_headers(h);
    resp
}

async fn asset(Path((version, file)): Path<(String, String)>) -> Result<Response, ApiError> {
    let (_, content_type, bytes) = ASSETS.iter().find(|(name, _, _)| *name == file).ok_or(ApiError::NotFound("asset"))?;
    let mut resp = (StatusCode::OK, *bytes).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A page cached from before a deploy may ask for an older version: answer with the current
    // file, but do not let that answer be cached under the old name.
    let caching = if version == *VERSION { "public, max-age=31536000, immutable" } else { "no-cache" };
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(caching));
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", *VERSION)) {
        h.insert(header::ETAG, tag);
    }
    security_headers(h);
    Ok(resp)
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_current_asset_folder_and_nothing_external() {
        assert!(PAGE.contains(&format!("/assets/{}/app.js", *VERSION)));
        assert!(!PAGE.contains("{{assets}}"));
        for (name, _, bytes) in ASSETS {
            let text = String::from_utf8_lossy(bytes);
            assert!(!text.contains("https://") || *name == "icon.svg", "{name} must not load anything from another origin");
        }
    }

    #[test]
    fn the_policy_allows_only_this_origin_and_the_storage_endpoint() {
        let csp = content_security_policy("http://minio:9000/");
        assert!(csp.starts_with("default-src 'self';"));
        assert!(csp.contains("connect-src 'self' http://minio:9000;"));
        assert!(!content_security_policy("http://bad host; script-src *").contains("script-src *"));
        assert_eq!(origin("https://user:pw@s3.example.com/bucket"), Some("https://s3.example.com".into()));
        assert_eq!(origin("ftp://x"), None);
    }
}
