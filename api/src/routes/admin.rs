//! `/v1/admin/runs`: the scheduler's run history, and triggering a schedule now.
//! `/v1/admin/dead-letters` and `/v1/admin/jobs/{id}/replay…`: jobs that used up their attempts
//! on transient faults, and replaying them once the cause is fixed.
//! `/v1/admin/tenants/{id}/data`: erasing a tenant's data on request. Admin keys only
//! (`reelq-api key create --admin`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use reelq_shared::db;
use reelq_shared::db::dead_letters::{self, DeadLetter, ReplayOutcome, ReplayRecord};
use reelq_shared::db::jobs::{self, JobView};
use reelq_shared::db::lifecycle;
use reelq_shared::db::schedules::{self, RunRecord};
use reelq_shared::domain::JobMessage;

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
    let limit = page_limit(q.limit)?;
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

/// A listing's page size: 50 unless asked, at most 200.
pub(crate) fn page_limit(asked: Option<i64>) -> Result<i64, ApiError> {
    let limit = asked.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 200"));
    }
    Ok(limit)
}

/// Dead-letter listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeadLettersQuery {
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// `next_before` of the previous page: jobs that failed before this one.
    pub before: Option<Uuid>,
}

/// A page of dead-lettered jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterPage {
    /// Most recently failed first.
    pub dead_letters: Vec<DeadLetter>,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<Uuid>,
}

/// Dead-lettered jobs of every tenant, most recently failed first.
///
/// A job is dead-lettered when it used up its attempts on transient faults of its own run (no
/// scratch space, for example; outages of storage or the database spend no attempts): it ended
/// `failed` with `retries_exhausted`, and its message went to the broker's dead-letter queue. This list comes from PostgreSQL, the
/// source of truth; the broker's `{prefix}.dead` queue is an alarm and audit trail only.
#[utoipa::path(
    get, path = "/v1/admin/dead-letters", tag = "admin",
    params(DeadLettersQuery),
    responses(
        (status = 200, body = DeadLetterPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit or cursor", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_dead_letters(
    State(state): State<AppState>,
    _admin: AdminKey,
    query: Result<Query<DeadLettersQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<DeadLetterPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = page_limit(q.limit)?;
    let before = match q.before {
        None => None,
        Some(id) => {
            let job = dead_letters::get(&state.pool, id).await?.ok_or_else(|| ApiError::invalid("invalid_cursor", "no dead-lettered job has this id"))?;
            Some((job.failed_at.unwrap_or_default(), job.job_id))
        }
    };
    let mut page = dead_letters::list(&state.pool, before, limit + 1).await?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    let next_before = if more { page.last().map(|d| d.job_id) } else { None };
    Ok(Json(DeadLetterPage { dead_letters: page, next_before }))
}

/// A job and its earlier rounds of attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobHistory {
    /// The job as it is now.
    pub job: JobView,
    /// Each replay, oldest first, with how the round of attempts before it ended.
    pub replays: Vec<ReplayRecord>,
}

/// Replay a dead-lettered job.
///
/// Once the cause is fixed, the job runs again: it returns to `queued` (the one move back from
/// `failed` that reelq makes), gets `api.max_attempts` more attempts than it has made, keeps the
/// results of analyses that had finished, and is dispatched through the outbox like a new
/// submission. The failure it had is kept in its history. Its webhook, if any, is sent again
/// when it ends. A job that is not dead-lettered is refused with 409 `not_dead_lettered`.
#[utoipa::path(
    post, path = "/v1/admin/jobs/{id}/replay", tag = "admin",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 202, description = "Queued again", body = JobHistory),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job is not dead-lettered", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn replay_job(
    State(state): State<AppState>,
    _admin: AdminKey,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<(StatusCode, Json<JobHistory>), ApiError> {
    match replay(&state, id, &replayed_by(&headers)).await? {
        ReplayOutcome::Replayed(_) => Ok((StatusCode::ACCEPTED, Json(history_of(&state, id).await?))),
        ReplayOutcome::NotFound => Err(ApiError::NotFound("job")),
        ReplayOutcome::NotDeadLettered { status, error_code } => Err(ApiError::Conflict {
            code: "not_dead_lettered",
            detail: match error_code {
                Some(code) => format!("the job is {status} ({code}); only jobs that failed with retries_exhausted can be replayed"),
                None => format!("the job is {status}; only jobs that failed with retries_exhausted can be replayed"),
            },
        }),
    }
}

/// What erasing a tenant's data removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantErasure {
    /// The tenant, which stays with its API keys.
    pub tenant_id: Uuid,
    /// Uploads (videos and audio tracks) removed.
    pub videos_removed: i64,
    /// Jobs removed with their results and webhook records (queued and running ones stop).
    pub jobs_removed: i64,
    /// Feedback removed, with its training embeddings.
    pub feedback_removed: i64,
}

/// Erase a tenant's data.
///
/// Removes every upload, job, result, `mux` output, webhook record and piece of feedback of the
/// tenant, and the training embeddings of that feedback. The rows are gone when this answers;
/// the stored objects (`uploads/<tenant>/` and `outputs/<tenant>/` in the bucket) are being
/// removed, and the retention sweep finishes any that storage refused. The tenant and its API
/// keys stay. Models already trained on the tenant's feedback are not retrained.
#[utoipa::path(
    delete, path = "/v1/admin/tenants/{id}/data", tag = "admin",
    params(("id" = Uuid, Path, description = "Tenant id")),
    responses(
        (status = 202, description = "Rows removed; objects being removed", body = TenantErasure),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn erase_tenant(State(state): State<AppState>, admin: AdminKey, Path(id): Path<Uuid>) -> Result<(StatusCode, Json<TenantErasure>), ApiError> {
    let pool = &state.pool;
    let presign_ttl = std::time::Duration::from_secs(state.settings.storage.presign_ttl_secs);
    let erased = crate::retry::idempotent("tenants.erase", move || async move { Ok(lifecycle::erase_tenant(pool, id, presign_ttl).await?) })
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tracing::warn!(
        tenant_id = %id,
        by = %admin.0.id,
        videos = erased.videos_removed,
        jobs = erased.jobs_removed,
        feedback = erased.feedback_removed,
        "tenant data erased"
    );
    // Emptying the tenant's folders can take a while; the answer does not wait for it.
    let background = state.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::retention::remove_owed(&background, Some(erased.deletion_id), 1).await {
            tracing::warn!(tenant_id = %id, error = %e, "an erased tenant's objects could not be removed yet; the sweep will");
        }
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(TenantErasure {
            tenant_id: id,
            videos_removed: erased.videos_removed,
            jobs_removed: erased.jobs_removed,
            feedback_removed: erased.feedback_removed,
        }),
    ))
}

/// A job's history of replays.
#[utoipa::path(
    get, path = "/v1/admin/jobs/{id}/replays", tag = "admin",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = JobHistory),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn job_replays(State(state): State<AppState>, _admin: AdminKey, Path(id): Path<Uuid>) -> Result<Json<JobHistory>, ApiError> {
    Ok(Json(history_of(&state, id).await?))
}

/// How many dead letters to replay at once.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayAllRequest {
    /// Most jobs replayed by this call (default 100, at most 1000); call again while `more`.
    pub limit: Option<i64>,
}

/// What a bulk replay did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayAllResult {
    /// The jobs queued again, most recently failed first.
    pub replayed: Vec<Uuid>,
    /// More dead-lettered jobs are waiting: call again.
    pub more: bool,
}

/// Replay every dead-lettered job.
///
/// Replays up to `limit` of them, most recently failed first, each as
/// `POST /v1/admin/jobs/{id}/replay` would. A job replayed or changed meanwhile is skipped.
#[utoipa::path(
    post, path = "/v1/admin/dead-letters/replay", tag = "admin",
    request_body(content = Option<ReplayAllRequest>, content_type = "application/json"),
    responses(
        (status = 202, description = "Queued again", body = ReplayAllResult),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn replay_all(
    State(state): State<AppState>,
    _admin: AdminKey,
    headers: HeaderMap,
    body: Option<Json<ReplayAllRequest>>,
) -> Result<(StatusCode, Json<ReplayAllResult>), ApiError> {
    let limit = body.map(|Json(b)| b).unwrap_or_default().limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 1000"));
    }
    let by = replayed_by(&headers);
    let mut waiting = dead_letters::list(&state.pool, None, limit + 1).await?;
    let more = waiting.len() as i64 > limit;
    waiting.truncate(limit as usize);
    let mut replayed = Vec::with_capacity(waiting.len());
    for d in waiting {
        if let ReplayOutcome::Replayed(_) = replay(&state, d.job_id, &by).await? {
            replayed.push(d.job_id);
        }
    }
    tracing::info!(count = replayed.len(), by, "dead-lettered jobs replayed");
    Ok((StatusCode::ACCEPTED, Json(ReplayAllResult { replayed, more })))
}

/// Replays one job in its own transaction, with its message built as a submission builds it.
async fn replay(state: &AppState, id: Uuid, by: &str) -> Result<ReplayOutcome, ApiError> {
    let headers = serde_json::to_value(reelq_shared::telemetry::current_context()).unwrap_or_default();
    let message = |j: &jobs::JobRecord| serde_json::to_value(JobMessage { job_id: j.id, tenant_id: j.tenant_id }).unwrap_or_default();
    let mut tx = db::timed("dead_letters.begin", state.pool.begin()).await?;
    let outcome = dead_letters::replay(&mut tx, id, state.settings.api.max_attempts, by, message, &headers).await?;
    db::timed("dead_letters.commit", tx.commit()).await?;
    if let ReplayOutcome::Replayed(job) = &outcome {
        reelq_shared::metrics::get().job_replays.with_label_values::<&str>(&[]).inc();
        tracing::info!(job_id = %job.id, attempts_made = job.attempt, by, "dead-lettered job replayed");
    }
    Ok(outcome)
}

async fn history_of(state: &AppState, id: Uuid) -> Result<JobHistory, ApiError> {
    let job = jobs::view_by_id(&state.pool, id).await?.ok_or(ApiError::NotFound("job"))?;
    let replays = dead_letters::history(&state.pool, id).await?;
    Ok(JobHistory { job, replays })
}

/// Who replayed: the public prefix of the admin key (never the key itself).
fn replayed_by(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
        .and_then(|k| reelq_shared::auth::key_prefix(&secrecy::SecretString::from(k.trim().to_owned())))
        .unwrap_or_else(|| "unknown".to_owned())
}
