//! The router: one file per resource, assembled here together with the OpenAPI document so
//! that the two cannot drift apart.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use reelq_shared::metrics;

use crate::state::AppState;

pub mod admin;
pub mod events;
pub mod feedback;
pub mod hashtags;
pub mod health;
pub mod jobs;
pub mod models;
pub mod music;
pub mod page;
pub mod videos;

#[derive(OpenApi)]
#[openapi(
    info(title = "reelq", description = "Analyse short videos: upload, submit jobs, read results.", license(name = "Apache-2.0")),
    modifiers(&BearerAuth),
    tags(
        (name = "videos", description = "Uploads"),
        (name = "jobs", description = "Analysis jobs"),
        (name = "trends", description = "Trending hashtags and music from pulled TikTok data"),
        (name = "models", description = "Trained model versions"),
        (name = "admin", description = "Scheduler, training and model operation (admin keys)"),
        (name = "health", description = "Operations"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("rq_<prefix>_<secret>").build()),
        );
    }
}

/// The API's routes and its OpenAPI document, from the same handler list.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let uploads = OpenApiRouter::new()
        .routes(routes!(videos::upload))
        .routes(routes!(jobs::submit))
        .layer(DefaultBodyLimit::disable());
    let rest = OpenApiRouter::new()
        .routes(routes!(videos::get_video))
        .routes(routes!(videos::presign))
        .routes(routes!(videos::complete))
        .routes(routes!(jobs::get_job))
        .routes(routes!(jobs::list_jobs))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::get_output))
        .routes(routes!(events::job_events))
        .routes(routes!(feedback::save_feedback, feedback::get_feedback))
        .routes(routes!(hashtags::trending))
        .routes(routes!(music::recommendations))
        .routes(routes!(admin::list_runs, admin::trigger_run))
        .routes(routes!(admin::list_dead_letters))
        .routes(routes!(admin::replay_all))
        .routes(routes!(admin::replay_job))
        .routes(routes!(admin::job_replays))
        .routes(routes!(models::list_models))
        .routes(routes!(models::rollback))
        .routes(routes!(models::start_training))
        .routes(routes!(models::get_training))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics_text));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(uploads).merge(rest).split_for_parts()
}

/// The OpenAPI document served at `/openapi.json` and committed as `docs/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_router();
    doc.paths.paths.insert(
        "/openapi.json".to_owned(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .tag("health")
                .summary(Some("This OpenAPI document"))
                .response("200", utoipa::openapi::ResponseBuilder::new().description("OpenAPI 3.1 document")),
        ),
    );
    doc
}

/// The full application router with middleware.
pub fn router(state: AppState) -> Router {
    let (api, _) = api_router();
    let doc = openapi();
    let doc_json = std::sync::Arc::new(doc.to_json().unwrap_or_default());
    let timeout = Duration::from_secs(state.settings.api.request_timeout_secs);
    api.route(
        "/openapi.json",
        get(move || {
            let body = doc_json.clone();
            async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], (*body).clone()) }
        }),
    )
    .merge(page::router())
    .fallback(|| async { crate::error::ApiError::NotFound("route") })
    .layer(middleware::from_fn_with_state(crate::ingest::UploadGuard::new(state.clone()), crate::ingest::guard_uploads))
    .layer(middleware::from_fn_with_state(timeout, track))
    .with_state(state)
}

/// Records metrics per matched route and applies the request deadline (uploads excepted: they
/// are bounded by their size limit, and a slow client on a large file is legitimate).
async fn track(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let is_upload = method == "POST" && (route == "/v1/videos" || route == "/v1/jobs");
    let started = Instant::now();
    let span = tracing::info_span!("http", method = %method, route = %route, trace_id = tracing::field::Empty);
    // Continue the caller's trace when it sends one (W3C `traceparent`).
    let carrier: std::collections::HashMap<String, String> = ["traceparent", "tracestate"]
        .iter()
        .filter_map(|h| req.headers().get(*h).and_then(|v| v.to_str().ok()).map(|v| ((*h).to_owned(), v.to_owned())))
        .collect();
    reelq_shared::telemetry::set_parent(&span, &carrier);
    // A request refused before its body was read (a bad key on an upload) leaves the rest of
    // the body on the connection; the server then drops it, and a client that reuses it for
    // its next request sees that request fail. Saying so lets clients open a fresh one.
    let sends_body = req.version() <= axum::http::Version::HTTP_11
        && (req.headers().contains_key(axum::http::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|n| n > 0));
    let mut resp = {
        use tracing::Instrument as _;
        let fut = next.run(req).instrument(span);
        if is_upload {
            fut.await
        } else {
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => crate::error::ApiError::Unavailable("request deadline exceeded".into()).into_response(),
            }
        }
    };
    if sends_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
    let m = metrics::get();
    m.http_requests.with_label_values(&[route.as_str(), method.as_str(), resp.status().as_str()]).inc();
    m.http_seconds.with_label_values(&[route.as_str(), method.as_str()]).observe(started.elapsed().as_secs_f64());
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_openapi_document_is_current() {
        let current = super::openapi().to_pretty_json().expect("serialises");
        let committed = include_str!("../../docs/openapi.json");
        assert_eq!(
            committed.trim(),
            current.trim(),
            "docs/openapi.json is stale: regenerate it with `cargo run -p reelq-api -- openapi > docs/openapi.json`"
        );
    }
}
