//! The router: one file per resource, assembled here together with the OpenAPI document so
//! that the two cannot drift apart.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use reelq_shared::metrics;

use crate::error::{ApiError, PROBLEM_JSON, Problem, problem_response};
use crate::state::AppState;

pub mod admin;
pub mod analyses;
pub mod events;
pub mod feedback;
pub mod hashtags;
pub mod health;
pub mod jobs;
pub mod models;
pub mod music;
pub mod page;
pub mod songs;
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
        (name = "admin", description = "Scheduler, training, model operation, the song catalogue and data erasure (admin keys)"),
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

/// Documents on every operation the refusals that do not depend on its handler: the ones its
/// extractors and the middleware answer (bad key, admin only, malformed id, query or body,
/// over-long URI) and the dependency faults any database call can meet. Each is a problem
/// document. Written once here so that no route's documentation can forget one.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, item) in openapi.paths.paths.iter_mut() {
            let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for op in ops.into_iter().flatten() {
                document_errors(path, op);
            }
        }
    }
}

fn document_errors(path: &str, op: &mut Operation) {
    let params = op.parameters.as_deref().unwrap_or_default();
    let has = |place: ParameterIn| params.iter().any(|p| p.parameter_in == place);
    let (in_path, in_query, in_header) = (has(ParameterIn::Path), has(ParameterIn::Query), has(ParameterIn::Header));
    let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let admin = op.tags.as_ref().is_some_and(|t| t.iter().any(|t| t == "admin"));
    let mut add = |status: &str, description: &str| {
        if op.responses.responses.contains_key(status) {
            return;
        }
        let mut response = ResponseBuilder::new()
            .description(description)
            .content(PROBLEM_JSON, ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem"))).build());
        if status == "503" {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(utoipa::openapi::schema::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer))
                    .description(Some("Seconds to wait before trying again"))
                    .build(),
            );
        }
        op.responses.responses.insert(status.to_owned(), response.build().into());
    };
    add("414", "The URI is longer than the server accepts (`uri_too_long`)");
    if secured {
        add("401", "No valid API key (`unauthorized`)");
    }
    if admin {
        add("403", "Not an admin key (`forbidden`)");
    }
    if in_path {
        add("404", "No such resource for this tenant, or an id that is not a UUID (`not_found`)");
    }
    if in_query || in_header {
        add("422", "A parameter is invalid (`invalid_query`, `invalid_text` for a NUL character, or a code naming the parameter)");
    }
    if op.request_body.is_some() {
        add("400", "The body could not be read as JSON (`bad_request`); most routes answer 422 `invalid_json` instead");
        add("413", "The body is larger than this route accepts (`payload_too_large`)");
        add("415", "The body's Content-Type is not one this route accepts (`unsupported_media_type`)");
        add("422", "The body is invalid (`invalid_json`, `invalid_text` for a NUL character, or a code naming the field)");
    }
    if path.starts_with("/v1/") {
        add("500", "An internal error; the body says nothing internal (`internal_error`)");
        add("503", "A dependency (database, storage, broker) is unavailable (`service_unavailable`)");
    }
}

/// The API's routes and its OpenAPI document, from the same handler list.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    // Routes that read their body themselves, each with its own limit.
    let uploads = OpenApiRouter::new()
        .routes(routes!(videos::upload))
        .routes(routes!(jobs::submit))
        .routes(routes!(jobs::submit_batch))
        .layer(DefaultBodyLimit::disable());
    let rest = OpenApiRouter::new()
        .routes(routes!(videos::get_video, videos::delete_video))
        .routes(routes!(videos::presign))
        .routes(routes!(videos::complete))
        .routes(routes!(analyses::list_analyses))
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
        .routes(routes!(admin::erase_tenant))
        .routes(routes!(songs::add_song, songs::list_songs))
        .routes(routes!(songs::add_pulled_songs))
        .routes(routes!(songs::delete_song))
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
    // Last: `ApiDoc`'s own modifiers run before the routes' operations exist.
    ErrorResponses.modify(&mut doc);
    document_job_error_codes(&mut doc);
    doc
}

/// Lists the stable codes of failed jobs on the schemas that carry one, from the enum itself,
/// so the document names every code the worker can store.
fn document_job_error_codes(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::Schema;
    let codes: Vec<String> = reelq_shared::domain::JobErrorCode::ALL.iter().map(|c| format!("`{c}`")).collect();
    let Some(components) = doc.components.as_mut() else { return };
    for name in ["JobErrorView", "DoneError"] {
        if let Some(RefOr::T(Schema::Object(schema))) = components.schemas.get_mut(name)
            && let Some(RefOr::T(Schema::Object(code))) = schema.properties.get_mut("code")
        {
            let said = code.description.take().unwrap_or_default();
            code.description = Some(format!("{said} One of: {}.", codes.join(", ")).trim().to_owned());
        }
    }
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
    .fallback(|| async { ApiError::NotFound("route") })
    .layer(middleware::from_fn(problem_details))
    .layer(middleware::from_fn_with_state(crate::ingest::UploadGuard::new(state.clone()), crate::ingest::guard_uploads))
    .layer(middleware::from_fn_with_state(timeout, track))
    .with_state(state)
}

/// Longest request target (path and query) accepted. Real URIs of this API are well under a
/// kilobyte; a longer one is a bug or an attack, and refusing it here answers with a problem
/// document, where hyper's own limit (64 KiB) answers with an empty 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Makes every refusal a problem document and refuses what no handler should see: an over-long
/// URI, a path `{id}` that is not a UUID, and query or JSON body text PostgreSQL cannot store
/// (upload bodies are not JSON and pass untouched). Responses
/// that axum builds itself (405 for a method a route lacks, rejections of extractors in other
/// modules) come as plain text or empty; they are rewritten here with a stable code per status.
async fn problem_details(req: Request, next: Next) -> Response {
    if req.uri().path_and_query().map_or(0, |pq| pq.as_str().len()) > MAX_URI_BYTES {
        return ApiError::UriTooLong(MAX_URI_BYTES).into_response();
    }
    if let Err(e) = malformed_id(&req) {
        return e.into_response();
    }
    if let Err(e) = crate::extract::check_query_text(req.uri().query()) {
        return e.into_response();
    }
    let req = match crate::extract::refuse_unstorable_json(req).await {
        Ok(req) => req,
        Err(e) => return e.into_response(),
    };
    let resp = next.run(req).await;
    let is_problem = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if resp.status().as_u16() < 400 || is_problem {
        return resp;
    }
    as_problem(resp).await
}

/// Every `{id}` in this API's routes is a UUID, so one that does not parse names nothing:
/// `404`, before any handler, whichever module's extractor would have read it.
fn malformed_id(req: &Request) -> Result<(), ApiError> {
    let Some(template) = req.extensions().get::<MatchedPath>() else { return Ok(()) };
    let mut given = req.uri().path().split('/');
    for segment in template.as_str().split('/') {
        let value = given.next().unwrap_or_default();
        if segment == "{id}" && uuid::Uuid::parse_str(value).is_err() {
            return Err(ApiError::MalformedPath(format!("`{}` is not an id of this API (a UUID)", value.chars().take(64).collect::<String>())));
        }
    }
    Ok(())
}

/// Rewrites a plain-text or empty error response as a problem document, keeping its status and
/// headers (`Allow` on a 405) and, for a client error, its text as the detail.
async fn as_problem(resp: Response) -> Response {
    let (parts, body) = resp.into_parts();
    let status = parts.status;
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
    let detail = if status.is_client_error() && !text.is_empty() { text } else { status.canonical_reason().unwrap_or("Error").to_owned() };
    let mut problem = problem_response(Problem::new(status, status_code_name(status), detail));
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// The stable code of a status that reached a client without one of its own.
fn status_code_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        406 => "not_acceptable",
        408 => "request_timeout",
        409 => "conflict",
        411 => "length_required",
        413 => "payload_too_large",
        414 => "uri_too_long",
        415 => "unsupported_media_type",
        422 => "invalid_request",
        429 => "too_many_requests",
        431 => "request_header_fields_too_large",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        s if s < 500 => "client_error",
        _ => "internal_error",
    }
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
                Err(_) => ApiError::Unavailable("request deadline exceeded".into()).into_response(),
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
