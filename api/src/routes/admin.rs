//! `/v1/admin/runs`: the scheduler's run history, and triggering a schedule now. Admin keys
//! only (`reelq-api key create --admin`).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use reelq_shared::db::schedules::{self, RunRecord};

use crate::error::{ApiError, Problem};
use crate::state::{AdminKey, AppState};

/// Listing filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this schedule.
    pub schedule: Option<String>,
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// `next_before` of the previous page: runs older than this run.
    pub before: Option<Uuid>,
}

/// A page of runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunPage {
    /// Newest first.
    pub runs: Vec<RunRecord>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

/// The scheduler's runs, newest first.
#[utoipa::path(
    get, path = "/v1/admin/runs", tag = "admin",
    params(RunsQuery),
    responses(
        (status = 200, body = RunPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_runs(
    State(state): State<AppState>,
    _admin: AdminKey,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<RunPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 200"));
    }
    let before = match q.before {
        None => None,
        Some(id) => {
            let run = schedules::get_run(&state.pool, id).await?.ok_or_else(|| ApiError::invalid("invalid_cursor", "no run has this id"))?;
            Some((run.requested_at, run.id))
        }
    };
    let mut runs = schedules::list_runs(&state.pool, q.schedule.as_deref().filter(|s| !s.is_empty()), before, limit + 1).await?;
    let more = runs.len() as i64 > limit;
    runs.truncate(limit as usize);
    let next_before = if more { runs.last().map(|r| r.id) } else { None };
    Ok(Json(RunPage { runs, next_before }))
}

/// What to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Name of a configured schedule (`[scheduler.schedules.<name>]`).
    pub schedule: String,
}

/// Run a schedule now.
///
/// Records a pending run; the scheduler that leads the schedule starts it within its poll
/// interval. A schedule runs once at a time, so a schedule that already has a pending or
/// running run is refused with 409.
#[utoipa::path(
    post, path = "/v1/admin/runs", tag = "admin",
    request_body = TriggerRequest,
    responses(
        (status = 202, description = "Pending", body = RunRecord),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No scheduler runs a schedule of this name", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The schedule already has a pending or running run", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn trigger_run(
    State(state): State<AppState>,
    AdminKey(tenant): AdminKey,
    body: Result<Json<TriggerRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RunRecord>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid("invalid_json", e.body_text()))?;
    if !schedules::exists(&state.pool, &req.schedule).await? {
        return Err(ApiError::NotFound("schedule"));
    }
    let run = schedules::insert_pending(&state.pool, &req.schedule, "manual", None).await?.ok_or_else(|| ApiError::Conflict {
        code: "run_already_active",
        detail: format!("schedule `{}` already has a pending or running run", req.schedule),
    })?;
    tracing::info!(schedule = %run.schedule, run_id = %run.id, tenant = %tenant.name, "run requested");
    Ok((StatusCode::ACCEPTED, Json(run)))
}
