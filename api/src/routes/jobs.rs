//! `/v1/jobs`: submit (JSON or multipart with the file), read, list and cancel.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use reelq_core::options::JobOptions;
use reelq_shared::db::jobs::{self, CancelOutcome, Cursor, JobView, NewJob};
use reelq_shared::db::{self, results, videos, webhooks};
use reelq_shared::domain::{Analysis, JobMessage, JobStatus, MediaKind, MuxOptions, Priority};
use reelq_shared::{metrics, telemetry, webhook};

use crate::error::{ApiError, Problem, invalid_text, json_has_unstorable_text};
use crate::extract::{Path, Query};
use crate::routes::videos::{content_length, content_type, is_multipart};
use crate::state::{AppState, AuthTenant};
use crate::{extract, ingest, retry};

mod batch;
pub use batch::*;

/// Header making submissions safe to retry.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// A job request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// A stored video of this tenant (from `POST /v1/videos`). Omitted in multipart requests,
    /// where the file comes with the request.
    #[schema(required = true)]
    pub video_id: Option<Uuid>,
    /// Analyses to run; duplicates are ignored.
    #[schema(min_items = 1)]
    pub analyses: Vec<Analysis>,
    /// Dispatch lane; `interactive` by default.
    #[serde(default)]
    pub priority: Priority,
    /// Called with the job when it ends, signed with HMAC-SHA256.
    pub callback_url: Option<String>,
    /// Analysis options: `caption` (the text the video will be posted with, up to 2,200
    /// characters: evidence for `hashtags`), `mux` (`{audio_id, mode, gain_db, original_gain_db,
    /// offset_secs, track_start_secs}`: the track and how it goes under the video), `noop_ms` for
    /// the diagnostic `noop` analysis.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

/// Largest JSON job request. The route takes uploads too, so it has no general body limit; a
/// job request is a few hundred bytes, and the largest option (a caption) a few kilobytes.
const MAX_JSON_BYTES: usize = 256 * 1024;

/// Multipart form of a job submission: the file plus the job's options.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobForm {
    /// The video file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Comma-separated analyses (or repeat the field).
    analyses: String,
    /// `interactive` or `batch`.
    priority: Option<String>,
    /// Callback URL.
    callback_url: Option<String>,
    /// JSON object of analysis options.
    options: Option<String>,
}

/// Submit a job.
///
/// JSON with a `video_id`, or `multipart/form-data` with the `file` and the job fields in one
/// call. With an `Idempotency-Key` header, repeating the same request returns the same job;
/// the same key with a different request is refused with 409.
#[utoipa::path(
    post, path = "/v1/jobs", tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the submission safe to retry")),
    request_body(content((JobRequest = "application/json"), (JobForm = "multipart/form-data"))),
    responses(
        (status = 202, description = "Accepted; `Location` names the job", body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "The video does not exist for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with a different request", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Retention removed the video's (`video_expired`) or the mux track's (`audio_expired`) bytes", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid request; `invalid_text` when a string holds a NUL character", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many uploads of this tenant in progress (multipart only)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn submit(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, req: Request) -> Result<Response, ApiError> {
    let idem = idempotency_key(req.headers())?;
    let ct = content_type(&req);
    let (request, video_id, request_hash, uploaded) = if is_multipart(ct.as_deref()) {
        let len = content_length(&req);
        let mut form = Multipart::from_request(req, &state).await.map_err(|e| ApiError::invalid("invalid_multipart", e.body_text()))?;
        let mut fields = FormFields::default();
        let mut video = None;
        while let Some(field) = form.next_field().await.map_err(|e| ApiError::invalid("invalid_multipart", e.body_text()))? {
            let name = field.name().unwrap_or_default().to_owned();
            if name == "file" {
                if video.is_some() {
                    return Err(ApiError::invalid("invalid_multipart", "only one `file` field is allowed"));
                }
                let field_ct = field.content_type().map(str::to_owned);
                video = Some(ingest::store_video(&state, tenant.id, field_ct.as_deref(), len, field).await?);
            } else {
                let text = field.text().await.map_err(|e| ApiError::invalid("invalid_multipart", e.body_text()))?;
                fields.set(&name, text)?;
            }
        }
        let video = video.ok_or_else(|| ApiError::invalid("missing_file", "the multipart body has no `file` field"))?;
        let request = fields.into_request()?;
        let hash = request_hash(&request, video.sha256.as_deref());
        (request, video.id, hash, Some(video))
    } else {
        let request: JobRequest = extract::json_limited(req, MAX_JSON_BYTES).await?;
        let video_id = request.video_id.ok_or_else(|| ApiError::invalid("missing_video_id", "video_id is required"))?;
        let hash = request_hash(&request, None);
        (request, video_id, hash, None)
    };

    // The job's id is chosen once, so that a second try after a lost connection finds the
    // first one's job if its insert did commit.
    let job_id = Uuid::now_v7();
    let outcome = retry::idempotent("jobs.submit", || create_job(&state, tenant.id, video_id, job_id, &request, idem.as_deref(), &request_hash)).await;
    // A multipart replay or refusal must not leave a second copy of the file behind.
    let replay = matches!(outcome, Ok((_, false)));
    if let Some(v) = uploaded.filter(|_| outcome.is_err() || replay) {
        if let Err(e) = state.store.delete(&v.object_key).await {
            tracing::warn!(error = %e, "could not remove the upload of a refused submission");
        }
        let _ = videos::delete(&state.pool, tenant.id, v.id).await;
    }
    let (view, created) = outcome?;
    let mut resp = (StatusCode::ACCEPTED, Json(&view)).into_response();
    if let Ok(loc) = HeaderValue::from_str(&format!("/v1/jobs/{}", view.id)) {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    if !created {
        resp.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(resp)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(IDEMPOTENCY_HEADER) else { return Ok(None) };
    let key = v.to_str().map_err(|_| ApiError::invalid("invalid_idempotency_key", "Idempotency-Key must be visible ASCII"))?;
    checked_idempotency_key(key, "Idempotency-Key").map(Some)
}

/// An idempotency key as stored: trimmed, 1 to 255 visible ASCII characters (spaces allowed
/// inside). `name` is how the request spelled it, for the error.
pub(crate) fn checked_idempotency_key(raw: &str, name: &str) -> Result<String, ApiError> {
    let key = raw.trim();
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(ApiError::invalid("invalid_idempotency_key", format!("{name} must be 1 to 255 visible ASCII characters")));
    }
    Ok(key.to_owned())
}

/// Hash of what a request asks for, to tell an idempotent replay from a conflicting reuse.
pub(crate) fn request_hash(req: &JobRequest, file_sha256: Option<&str>) -> String {
    let analyses: BTreeSet<&str> = req.analyses.iter().map(|a| a.as_str()).collect();
    let canonical = serde_json::json!({
        "video": file_sha256.map(str::to_owned).or_else(|| req.video_id.map(|v| v.to_string())),
        "analyses": analyses,
        "priority": req.priority.as_str(),
        "callback_url": req.callback_url,
        "options": req.options,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

#[derive(Default)]
struct FormFields {
    analyses: Vec<String>,
    priority: Option<String>,
    callback_url: Option<String>,
    options: Option<String>,
}

impl FormFields {
    fn set(&mut self, name: &str, value: String) -> Result<(), ApiError> {
        match name {
            "analyses" => self.analyses.extend(value.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())),
            "priority" => self.priority = Some(value),
            "callback_url" => self.callback_url = Some(value),
            "options" => self.options = Some(value),
            other => return Err(ApiError::invalid("unknown_field", format!("unknown form field `{other}`"))),
        }
        Ok(())
    }

    fn into_request(self) -> Result<JobRequest, ApiError> {
        let analyses = self
            .analyses
            .iter()
            .map(|a| Analysis::parse(a).ok_or_else(|| ApiError::invalid("unknown_analysis", format!("unknown analysis `{a}`"))))
            .collect::<Result<Vec<_>, _>>()?;
        let priority = match self.priority.as_deref() {
            None | Some("") => Priority::default(),
            Some(p) => Priority::parse(p).ok_or_else(|| ApiError::invalid("invalid_priority", "priority must be interactive or batch"))?,
        };
        let options = match self.options.as_deref() {
            None | Some("") => serde_json::Map::new(),
            Some(o) => serde_json::from_str(o).map_err(|e| ApiError::invalid("invalid_options", format!("options must be a JSON object: {e}")))?,
        };
        // Form fields skip the JSON extractor, which refuses text PostgreSQL cannot store.
        if json_has_unstorable_text(&serde_json::Value::Object(options.clone())) {
            return Err(invalid_text("the `options` field"));
        }
        if self.callback_url.as_deref().is_some_and(|u| u.contains('\0')) {
            return Err(invalid_text("the `callback_url` field"));
        }
        Ok(JobRequest { video_id: None, analyses, priority, callback_url: self.callback_url.filter(|u| !u.is_empty()), options })
    }
}

/// Validates and records job `job_id` with its outbox message in one transaction. Returns the
/// job and whether it was created (false: an idempotent replay). Safe to run again after a
/// failure: a job that was in fact recorded is found by its key or its id.
async fn create_job(
    state: &AppState,
    tenant_id: Uuid,
    video_id: Uuid,
    job_id: Uuid,
    request: &JobRequest,
    idem: Option<&str>,
    request_hash: &str,
) -> Result<(JobView, bool), ApiError> {
    if let Some(key) = idem
        && let Some(existing) = jobs::by_idempotency_key(&state.pool, tenant_id, key).await?
    {
        return replay(state, existing, request_hash).await;
    }
    let (job, message, headers) = prepare(state, tenant_id, video_id, job_id, request, idem, request_hash).await?;
    let submission = jobs::Submission { job, message, headers };
    let inserted = match state.submissions.call(submission.clone()).await {
        // Refused in its group (a video that is not stored, a key or id already taken):
        // inserting it alone says which.
        Ok(None) => {
            let jobs::Submission { job, message, headers } = &submission;
            jobs::insert_with_message(&state.pool, job, message, headers, state.notify_relays()).await
        }
        other => other,
    };
    let inserted = match inserted {
        Ok(Some(r)) => r,
        // Only now, on the rare refusal, find out why: one round trip less per submission.
        Ok(None) => return Err(why_refused(videos::get(&state.pool, tenant_id, video_id).await?.as_ref())),
        Err(e) if e.is_unique_violation() => {
            if let Some(key) = idem {
                // Lost a race with a concurrent request carrying the same key.
                let existing = jobs::by_idempotency_key(&state.pool, tenant_id, key).await?.ok_or(ApiError::Internal("idempotent job vanished".into()))?;
                return replay(state, existing, request_hash).await;
            }
            // A first try whose commit went through before its connection was lost.
            let existing = jobs::get(&state.pool, tenant_id, job_id).await?.ok_or(ApiError::Database(e))?;
            return Ok((jobs::view(existing, Vec::new()), true));
        }
        Err(e) => return Err(e.into()),
    };
    state.wake_relay();
    metrics::get().jobs_submitted.with_label_values(&[request.priority.as_str()]).inc();
    tracing::info!(job_id = %inserted.id, video_id = %video_id, priority = request.priority.as_str(), "job submitted");
    Ok((jobs::view(inserted, Vec::new()), true))
}

/// Checks a job request the way every submission does (analyses, options, the `mux` track,
/// the callback URL) and builds the row and its dispatch message. The video itself is checked
/// by the insert.
pub(crate) async fn prepare(
    state: &AppState,
    tenant_id: Uuid,
    video_id: Uuid,
    job_id: Uuid,
    request: &JobRequest,
    idem: Option<&str>,
    request_hash: &str,
) -> Result<(NewJob, serde_json::Value, serde_json::Value), ApiError> {
    let analyses: BTreeSet<Analysis> = request.analyses.iter().copied().collect();
    if analyses.is_empty() {
        return Err(ApiError::invalid("no_analyses", "ask for at least one analysis"));
    }
    if let Some(a) = analyses.iter().find(|a| a.is_internal()) {
        return Err(ApiError::invalid(
            "analysis_not_allowed",
            format!("the analysis `{}` is internal; operators start it with POST /v1/admin/training", a.as_str()),
        ));
    }
    if !state.settings.api.allow_diagnostics
        && let Some(a) = analyses.iter().find(|a| a.is_diagnostic())
    {
        return Err(ApiError::invalid("analysis_not_allowed", format!("the diagnostic analysis `{}` is disabled here", a.as_str())));
    }
    let wanted: Vec<Analysis> = analyses.iter().copied().collect();
    let options = JobOptions::parse(&request.options, &wanted).map_err(|e| ApiError::invalid(e.code, e.message))?;
    let mux = options.mux;
    check_media(state, tenant_id, mux.as_ref()).await?;
    if let Some(url) = &request.callback_url {
        webhook::check_callback_url(url, state.settings.webhooks.allow_private)
            .await
            .map_err(|e| ApiError::invalid("invalid_callback_url", e.to_string()))?;
    }

    let trace = telemetry::current_context();
    let job = NewJob {
        id: job_id,
        tenant_id,
        video_id: Some(video_id),
        analyses: analyses.iter().map(|a| a.as_str().to_owned()).collect(),
        options: serde_json::Value::Object(request.options.clone()),
        priority: request.priority.as_str().to_owned(),
        max_attempts: state.settings.api.max_attempts,
        callback_url: request.callback_url.clone(),
        idempotency_key: idem.map(str::to_owned),
        request_hash: Some(request_hash.to_owned()),
        trace_context: serde_json::to_value(&trace).unwrap_or_default(),
    };
    let message = serde_json::to_value(JobMessage { job_id: job.id, tenant_id }).unwrap_or_default();
    let headers = serde_json::to_value(&trace).unwrap_or_default();
    Ok((job, message, headers))
}

/// Why the insert refused a job's video: it is not this tenant's (another tenant's id is simply
/// not found), its upload is unfinished, or it is an audio track (only a `mux` track may be).
/// The insert checks all three itself, so a submission reads the video only when refused.
pub(crate) fn why_refused(video: Option<&videos::Video>) -> ApiError {
    match video {
        None => ApiError::NotFound("video"),
        Some(v) if v.kind() == Some(MediaKind::Audio) => {
            ApiError::invalid("not_a_video", "this upload is an audio track: analyses need a video (an audio track can be options.mux.audio_id)")
        }
        Some(v) if v.status == "expired" => ApiError::Gone {
            code: "video_expired",
            detail: "retention removed this video's bytes; its earlier results stay readable. Upload it again to analyse it".into(),
        },
        // Pending, or completed between the insert and this read: either way, not yet.
        Some(_) => ApiError::invalid("video_not_ready", "the video's upload has not been completed"),
    }
}

/// Refuses a `mux` whose track is not a stored upload of the same tenant (another tenant's id
/// is simply not found).
async fn check_media(state: &AppState, tenant_id: Uuid, mux: Option<&MuxOptions>) -> Result<(), ApiError> {
    if let Some(m) = mux {
        let track = videos::get(&state.pool, tenant_id, m.audio_id).await?.ok_or(ApiError::NotFound("audio track"))?;
        if track.status == "expired" {
            return Err(ApiError::Gone { code: "audio_expired", detail: "retention removed this audio track's bytes; upload it again".into() });
        }
        if track.status != "stored" {
            return Err(ApiError::invalid("audio_not_ready", "the audio track's upload has not been completed"));
        }
    }
    Ok(())
}

async fn replay(state: &AppState, existing: jobs::JobRecord, request_hash: &str) -> Result<(JobView, bool), ApiError> {
    if existing.request_hash.as_deref() != Some(request_hash) {
        return Err(ApiError::Conflict { code: "idempotency_key_reused", detail: "this Idempotency-Key was used with a different request".into() });
    }
    let results = results::for_job(&state.pool, existing.id).await?;
    Ok((jobs::view(existing, results), false))
}

/// A job, with its results once it has succeeded.
#[utoipa::path(
    get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = JobView),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_job(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Json<JobView>, ApiError> {
    let state = &state;
    retry::idempotent("jobs.get", move || async move {
        let job = jobs::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound("job"))?;
        let results = if job.status() == JobStatus::Succeeded { results::for_job(&state.pool, id).await? } else { Vec::new() };
        let mut view = jobs::view(job, results);
        add_output_url(state, &mut view).await?;
        Ok(Json(view))
    })
    .await
}

/// Gives a `mux` result a fresh presigned download link (`url`, `url_expires_at`). Links
/// expire, so none is stored: every read signs a new one, which costs no storage call.
async fn add_output_url(state: &AppState, view: &mut JobView) -> Result<(), ApiError> {
    let Some(result) = view.results.as_mut().and_then(|r| r.get_mut(Analysis::Mux.as_str())) else { return Ok(()) };
    let Some(key) = result.payload.get("output_key").and_then(serde_json::Value::as_str).map(str::to_owned) else { return Ok(()) };
    if result.payload.get("expired_at").is_some() {
        return Ok(());
    }
    let url = state.store.presign_get(&key).await?;
    let ttl = chrono::Duration::from_std(state.store.presign_ttl()).unwrap_or_else(|_| chrono::Duration::hours(1));
    if let Some(obj) = result.payload.as_object_mut() {
        obj.insert("url".into(), serde_json::Value::String(url));
        obj.insert("url_expires_at".into(), serde_json::json!(chrono::Utc::now() + ttl));
    }
    Ok(())
}

/// Download a `mux` job's output.
///
/// Answers `303 See Other` with a fresh presigned URL of the MP4 in `Location` (valid for the
/// configured presign lifetime), so clients and browsers follow it to the file.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/output", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 303, description = "`Location` is a presigned URL of the output MP4"),
        (status = 404, description = "No such job for this tenant, or the job has no mux analysis", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (yet)", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Retention removed the output (`output_expired`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_output(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let pool = &state.pool;
    let job = retry::idempotent("jobs.get", move || async move { Ok(jobs::get(pool, tenant.id, id).await?) }).await?.ok_or(ApiError::NotFound("job"))?;
    if !job.analyses.iter().any(|a| a == Analysis::Mux.as_str()) {
        return Err(ApiError::NotFound("output"));
    }
    if job.status() != JobStatus::Succeeded {
        return Err(ApiError::Conflict {
            code: "output_not_ready",
            detail: format!("the job is {}; its output exists once it has succeeded", job.status()),
        });
    }
    let results = retry::idempotent("results.for_job", move || async move { Ok(results::for_job(pool, id).await?) }).await?;
    let payload = results.iter().find(|r| r.analysis == Analysis::Mux.as_str()).map(|r| &r.payload).ok_or(ApiError::NotFound("output"))?;
    if let Some(when) = payload.get("expired_at").and_then(serde_json::Value::as_str) {
        return Err(ApiError::Gone {
            code: "output_expired",
            detail: format!("retention removed this output at {when}; submit the job again to rebuild it"),
        });
    }
    let key = payload.get("output_key").and_then(serde_json::Value::as_str).ok_or(ApiError::NotFound("output"))?;
    let url = state.store.presign_get(key).await?;
    let location = HeaderValue::from_str(&url).map_err(|e| ApiError::Internal(format!("presigned URL is not a header value: {e}")))?;
    Ok((StatusCode::SEE_OTHER, [(header::LOCATION, location), (header::CACHE_CONTROL, HeaderValue::from_static("no-store"))]).into_response())
}

/// Listing filters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Page size (default 50, at most `api.max_page_size`, 200 by default).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn encode_cursor(c: Cursor) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}|{}", c.created_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true), c.id))
}

fn decode_cursor(s: &str) -> Option<Cursor> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(s).ok()?).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some(Cursor { created_at: chrono::DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&chrono::Utc), id: id.parse().ok()? })
}

/// The tenant's jobs, newest first, with cursor pagination.
#[utoipa::path(
    get, path = "/v1/jobs", tag = "jobs",
    params(ListQuery),
    responses(
        (status = 200, body = JobPage),
        (status = 422, description = "Bad cursor, status or limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_jobs(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Query(q): Query<ListQuery>) -> Result<Json<JobPage>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=state.settings.api.max_page_size).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", format!("limit must be between 1 and {}", state.settings.api.max_page_size)));
    }
    let cursor = match q.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(decode_cursor(c).ok_or_else(|| ApiError::invalid("invalid_cursor", "cursor is not one this API issued"))?),
    };
    let pool = &state.pool;
    let mut rows = retry::idempotent("jobs.list", move || async move { Ok(jobs::list(pool, tenant.id, q.status, cursor, limit + 1).await?) }).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(|j| encode_cursor(Cursor { created_at: j.created_at, id: j.id })) } else { None };
    Ok(Json(JobPage { jobs: rows.into_iter().map(|j| jobs::view(j, Vec::new())).collect(), next_cursor }))
}

/// Cancel a queued or running job.
///
/// A queued job never starts; a running one stops within seconds (at its worker's next
/// heartbeat) and writes nothing more.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/cancel", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Cancelled", body = JobView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has already ended", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn cancel(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Json<JobView>, ApiError> {
    // The transaction rolls back whole when its connection dies, so it can run once more.
    let pool = &state.pool;
    let job = retry::idempotent("jobs.cancel", move || cancel_in_transaction(pool, tenant.id, id)).await?;
    metrics::get().jobs_finished.with_label_values(&["cancelled", ""]).inc();
    tracing::info!(job_id = %id, "job cancelled");
    Ok(Json(jobs::view(job, Vec::new())))
}

async fn cancel_in_transaction(pool: &sqlx::PgPool, tenant_id: Uuid, id: Uuid) -> Result<jobs::JobRecord, ApiError> {
    let mut tx = db::timed("jobs.cancel.begin", pool.begin()).await?;
    let outcome = jobs::cancel(&mut tx, tenant_id, id).await?;
    let job = match outcome {
        CancelOutcome::NotFound => return Err(ApiError::NotFound("job")),
        CancelOutcome::AlreadyFinished(j) => {
            return Err(ApiError::Conflict { code: "job_finished", detail: format!("the job has already ended ({})", j.status) });
        }
        CancelOutcome::Cancelled(j) => j,
    };
    if let Some(url) = &job.callback_url {
        webhooks::schedule(&mut tx, job.id, url, "job.cancelled").await?;
    }
    db::timed("jobs.cancel.commit", tx.commit()).await?;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(analyses: Vec<Analysis>) -> JobRequest {
        JobRequest { video_id: Some(Uuid::nil()), analyses, priority: Priority::Interactive, callback_url: None, options: Default::default() }
    }

    #[test]
    fn request_hash_ignores_analysis_order_but_not_content() {
        let a = request_hash(&req(vec![Analysis::Probe, Analysis::Noop]), None);
        let b = request_hash(&req(vec![Analysis::Noop, Analysis::Probe, Analysis::Probe]), None);
        let c = request_hash(&req(vec![Analysis::Probe]), None);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut batch = req(vec![Analysis::Probe]);
        batch.priority = Priority::Batch;
        assert_ne!(request_hash(&batch, None), c);
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor { created_at: chrono::Utc::now(), id: Uuid::now_v7() };
        let back = decode_cursor(&encode_cursor(c)).expect("decodes");
        assert_eq!(back.id, c.id);
        assert_eq!(back.created_at.timestamp_micros(), c.created_at.timestamp_micros());
        assert!(decode_cursor("not-a-cursor").is_none());
    }

    #[test]
    fn form_fields_become_a_request() {
        let mut f = FormFields::default();
        f.set("analyses", "probe, noop".into()).expect("known");
        f.set("priority", "batch".into()).expect("known");
        f.set("options", "{\"noop_ms\": 5}".into()).expect("known");
        let r = f.into_request().expect("valid");
        assert_eq!(r.analyses, vec![Analysis::Probe, Analysis::Noop]);
        assert_eq!(r.priority, Priority::Batch);
        assert!(FormFields::default().set("bogus", String::new()).is_err());
        let mut bad = FormFields::default();
        bad.set("analyses", "telepathy".into()).expect("stored");
        assert!(bad.into_request().is_err());
    }
}
