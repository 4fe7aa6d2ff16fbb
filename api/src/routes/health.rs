//! Health, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use serde::Serialize;
use utoipa::ToSchema;

use reelq_shared::{db, metrics};

use crate::error::{ApiError, Problem};
use crate::state::AppState;

/// Liveness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness of each dependency.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `unready`.
    pub status: &'static str,
    /// PostgreSQL answered.
    pub database: bool,
    /// RabbitMQ is connected.
    pub broker: bool,
    /// The bucket answered.
    pub storage: bool,
}

/// PostgreSQL, RabbitMQ and S3 are reachable.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses((status = 200, body = Readiness), (status = 503, description = "A dependency is down", body = Readiness))
)]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let deadline = Duration::from_secs(2);
    let (database, broker, storage) = tokio::join!(
        tokio::time::timeout(deadline, db::ping(&state.pool)),
        tokio::time::timeout(deadline, state.publisher.ensure_connected()),
        tokio::time::timeout(deadline, state.store.ping()),
    );
    let database = matches!(database, Ok(Ok(())));
    let broker = matches!(broker, Ok(Ok(())));
    let storage = matches!(storage, Ok(Ok(())));
    let ready = database && broker && storage;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(Readiness { status: if ready { "ready" } else { "unready" }, database, broker, storage }))
}

/// Prometheus metrics of this process. Protected by `api.metrics_token` when one is set.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"),
        (status = 401, description = "`api.metrics_token` is set and the request does not carry it", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    if let Some(token) = &state.settings.api.metrics_token {
        let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.expose_secret()) {
            return Err(ApiError::Unauthorized);
        }
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics::get().render()).into_response())
}
