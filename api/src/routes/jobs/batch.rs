//! `POST /v1/jobs:batch`: many job requests in one call. Each item is checked as a single
//! submission is; the valid ones are inserted, with their dispatch messages, in one statement,
//! and the answer says per item what happened.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use reelq_shared::db::jobs::{self, JobRecord, JobView, NewJob};
use reelq_shared::db::videos;
use reelq_shared::domain::{Analysis, Priority};
use reelq_shared::metrics;

use super::{IDEMPOTENCY_HEADER, JobRequest, checked_idempotency_key, prepare, request_hash, why_refused};
use crate::error::{ApiError, Problem};
use crate::state::{AppState, AuthTenant};
use crate::{extract, retry};

/// Largest body per job of a batch: a job request is a few hundred bytes, and its largest
/// option (a caption of 2,200 characters) under 9 KiB.
const BYTES_PER_JOB: usize = 16 * 1024;

/// Items checked at once (a callback URL's check resolves its host).
const CHECKS_IN_FLIGHT: usize = 16;

/// Many job requests.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs, at most `api.max_batch_jobs` (1,000 by default).
    #[schema(min_items = 1)]
    pub jobs: Vec<BatchItem>,
}

/// One job of a batch: the fields of a JSON job request, plus its own idempotency key.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchItem {
    /// A stored video of this tenant.
    pub video_id: Uuid,
    /// Analyses to run; duplicates are ignored.
    #[schema(min_items = 1)]
    pub analyses: Vec<Analysis>,
    /// Dispatch lane; `interactive` by default.
    #[serde(default)]
    pub priority: Priority,
    /// Called with the job when it ends, signed with HMAC-SHA256.
    pub callback_url: Option<String>,
    /// Analysis options, as for `POST /v1/jobs`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Makes this item safe to send again, in this batch or any later one: the same key with
    /// the same request answers the same job (200), with a different request 409. 1 to 255
    /// visible ASCII characters, unique within the batch.
    pub idempotency_key: Option<String>,
}

/// What became of each item, in the order sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// Items that created a job (202).
    pub accepted: usize,
    /// Items answered with the job their idempotency key already named (200).
    pub replayed: usize,
    /// Items refused (4xx); nothing was created for them.
    pub refused: usize,
    /// One entry per item.
    pub items: Vec<BatchItemResult>,
}

/// One item's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchItemResult {
    /// Position of the item in the request, from 0.
    pub index: usize,
    /// What a single `POST /v1/jobs` would have answered: 202 created, 200 an idempotent
    /// replay, 404 an unknown video, 409 a reused idempotency key, 422 an invalid item.
    pub status: u16,
    /// The job (without results; read them with `GET /v1/jobs/{id}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobView>,
    /// Why the item was refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
}

impl BatchItemResult {
    fn job(index: usize, status: StatusCode, job: JobRecord) -> Self {
        Self { index, status: status.as_u16(), job: Some(jobs::view(job, Vec::new())), error: None }
    }

    fn refused(index: usize, e: &ApiError) -> Self {
        let status = e.status();
        Self { index, status: status.as_u16(), job: None, error: Some(Problem::new(status, e.code(), e.to_string())) }
    }
}

/// An item that passed its checks, waiting for the insert.
struct Ready {
    index: usize,
    job: NewJob,
    message: serde_json::Value,
    /// The trace context the outbox row carries to the worker (the same for every item).
    headers: serde_json::Value,
    video_id: Uuid,
}

/// Submit many jobs.
///
/// Each item is a JSON job request with its own optional `idempotency_key`. Items are checked
/// one by one exactly as `POST /v1/jobs` checks a request; the valid ones are recorded together
/// in one transaction, and a refused item never holds back the others. The answer is 200 with
/// one entry per item, in order. Sending the same batch again with idempotency keys is safe:
/// the items already recorded answer 200 with their jobs.
#[utoipa::path(
    post, path = "/v1/jobs:batch", tag = "jobs",
    request_body(content = BatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Per-item outcomes", body = BatchResponse),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The batch itself is invalid: empty, over `api.max_batch_jobs`, or not a list of job requests", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn submit_batch(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, req: Request) -> Result<Json<BatchResponse>, ApiError> {
    if req.headers().contains_key(IDEMPOTENCY_HEADER) {
        return Err(ApiError::invalid("invalid_idempotency_key", "a batch takes an idempotency_key in each item, not an Idempotency-Key header"));
    }
    let max = state.settings.api.max_batch_jobs;
    let batch: BatchRequest = extract::json_limited(req, max.saturating_mul(BYTES_PER_JOB)).await?;
    if batch.jobs.is_empty() {
        return Err(ApiError::invalid("no_jobs", "a batch needs at least one job"));
    }
    if batch.jobs.len() > max {
        return Err(ApiError::invalid("batch_too_large", format!("a batch may carry at most {max} jobs; this one has {}", batch.jobs.len())));
    }

    // Check every item; the outcome of a refused one is known now.
    let mut outcomes: Vec<Option<BatchItemResult>> = batch.jobs.iter().map(|_| None).collect();
    let mut keys_seen = HashSet::new();
    let checks = futures::stream::iter(batch.jobs.into_iter().enumerate())
        .map(|(index, item)| {
            let state = &state;
            let fresh_key = item.idempotency_key.as_deref().map(str::trim).is_none_or(|k| keys_seen.insert(k.to_owned()));
            async move { (index, check(state, tenant.id, index, item, fresh_key).await) }
        })
        .buffered(CHECKS_IN_FLIGHT)
        .collect::<Vec<_>>()
        .await;
    let mut ready = Vec::new();
    for (index, checked) in checks {
        match checked {
            Ok(r) => ready.push(r),
            Err(e) => outcomes[index] = Some(BatchItemResult::refused(index, &e)),
        }
    }

    let inserted = if ready.is_empty() { Vec::new() } else { insert(&state, tenant.id, &ready).await? };
    let mut inserted: HashMap<Uuid, JobRecord> = inserted.into_iter().map(|j| (j.id, j)).collect();
    for r in &ready {
        if let Some(job) = inserted.remove(&r.job.id) {
            metrics::get().jobs_submitted.with_label_values(&[job.priority.as_str()]).inc();
            outcomes[r.index] = Some(BatchItemResult::job(r.index, StatusCode::ACCEPTED, job));
        }
    }
    explain_skipped(&state, tenant.id, &ready, &mut outcomes).await?;

    let items: Vec<BatchItemResult> = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, o)| o.unwrap_or_else(|| BatchItemResult::refused(index, &ApiError::Internal("an item was left unanswered".into()))))
        .collect();
    let count = |s: u16| items.iter().filter(|i| i.status == s).count();
    let (accepted, replayed) = (count(202), count(200));
    tracing::info!(accepted, replayed, refused = items.len() - accepted - replayed, "job batch submitted");
    Ok(Json(BatchResponse { accepted, replayed, refused: items.len() - accepted - replayed, items }))
}

/// Checks one item as a single submission is checked.
async fn check(state: &AppState, tenant_id: Uuid, index: usize, item: BatchItem, fresh_key: bool) -> Result<Ready, ApiError> {
    let key = item.idempotency_key.as_deref().map(|k| checked_idempotency_key(k, "idempotency_key")).transpose()?;
    if key.is_some() && !fresh_key {
        return Err(ApiError::invalid("duplicate_idempotency_key", "this idempotency_key is used by an earlier item of the batch"));
    }
    let request = JobRequest {
        video_id: Some(item.video_id),
        analyses: item.analyses,
        priority: item.priority,
        callback_url: item.callback_url,
        options: item.options,
    };
    let hash = request_hash(&request, None);
    let (job, message, headers) = prepare(state, tenant_id, item.video_id, Uuid::now_v7(), &request, key.as_deref(), &hash).await?;
    Ok(Ready { index, job, message, headers, video_id: item.video_id })
}

/// Inserts the checked items in one statement. A try after a lost connection inserts nothing
/// twice: the ids are fixed, so an earlier try's rows are found as this batch's own.
async fn insert(state: &AppState, tenant_id: Uuid, ready: &[Ready]) -> Result<Vec<JobRecord>, ApiError> {
    let rows: Vec<NewJob> = ready.iter().map(|r| r.job.clone()).collect();
    let messages: Vec<serde_json::Value> = ready.iter().map(|r| r.message.clone()).collect();
    let headers = ready.first().map(|r| r.headers.clone()).unwrap_or_default();
    let pool = &state.pool;
    let notify = state.notify_relays();
    let inserted =
        retry::idempotent("jobs.submit_batch", || async { Ok(jobs::insert_many(pool, tenant_id, &rows, &messages, &headers, notify).await?) }).await?;
    if !inserted.is_empty() {
        state.wake_relay();
    }
    Ok(inserted)
}

/// Answers the checked items the insert skipped: recorded by an earlier try of this batch
/// (202), named by an idempotency key already used (200 or 409), or refused for their video.
async fn explain_skipped(state: &AppState, tenant_id: Uuid, ready: &[Ready], outcomes: &mut [Option<BatchItemResult>]) -> Result<(), ApiError> {
    let skipped: Vec<&Ready> = ready.iter().filter(|r| outcomes[r.index].is_none()).collect();
    if skipped.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = skipped.iter().map(|r| r.job.id).collect();
    let keys: Vec<String> = skipped.iter().filter_map(|r| r.job.idempotency_key.clone()).collect();
    let pool = &state.pool;
    let found = retry::idempotent("jobs.by_ids_or_keys", || async { Ok(jobs::by_ids_or_keys(pool, tenant_id, &ids, &keys).await?) }).await?;
    let mut unexplained = Vec::new();
    for r in skipped {
        if let Some(job) = found.iter().find(|j| j.id == r.job.id) {
            outcomes[r.index] = Some(BatchItemResult::job(r.index, StatusCode::ACCEPTED, job.clone()));
        } else if let Some(job) = r.job.idempotency_key.as_ref().and_then(|k| found.iter().find(|j| j.idempotency_key.as_ref() == Some(k))) {
            outcomes[r.index] = Some(if job.request_hash == r.job.request_hash {
                BatchItemResult::job(r.index, StatusCode::OK, job.clone())
            } else {
                let e = ApiError::Conflict { code: "idempotency_key_reused", detail: "this idempotency_key was used with a different request".into() };
                BatchItemResult::refused(r.index, &e)
            });
        } else {
            unexplained.push(r);
        }
    }
    if unexplained.is_empty() {
        return Ok(());
    }
    let video_ids: Vec<Uuid> = unexplained.iter().map(|r| r.video_id).collect();
    let found = retry::idempotent("videos.get_many", || async { Ok(videos::get_many(pool, tenant_id, &video_ids).await?) }).await?;
    for r in unexplained {
        let e = why_refused(found.iter().find(|v| v.id == r.video_id));
        outcomes[r.index] = Some(BatchItemResult::refused(r.index, &e));
    }
    Ok(())
}
