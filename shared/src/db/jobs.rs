//! Jobs: submission, listing, cancellation, and the fenced lease protocol workers follow.
//!
//! Fencing: a claim increments `attempt` and sets a fresh `lease_token`. Every later write by
//! that worker is conditional on `status = 'running' AND lease_token = $token`, so a worker whose
//! lease expired and was taken over (or whose job was cancelled) can no longer change the job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::results::{NewResult, ResultRecord};
use super::{DbError, timed};
use crate::domain::{JobErrorCode, JobStatus};
/// The views live in `reelq-core`; re-exported so `db::jobs::JobView` paths keep working.
pub use reelq_core::views::{JobErrorView, JobView, ResultView, StageTiming};

/// A job row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct JobRecord {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub video_id: Option<Uuid>,
    pub status: String,
    pub analyses: Vec<String>,
    pub options: serde_json::Value,
    pub priority: String,
    pub attempt: i32,
    pub max_attempts: i32,
    pub lease_token: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub progress: f32,
    pub stage: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub callback_url: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub trace_context: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `[{stage, ms}]` of the attempt that finished the job; see [`StageTiming`].
    pub timings: Option<serde_json::Value>,
}

impl JobRecord {
    /// The parsed status. The database's CHECK constraint guarantees it parses.
    pub fn status(&self) -> JobStatus {
        self.status.parse().unwrap_or(JobStatus::Failed)
    }
}

/// What a submission inserts.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub video_id: Option<Uuid>,
    pub analyses: Vec<String>,
    pub options: serde_json::Value,
    pub priority: String,
    pub max_attempts: i32,
    pub callback_url: Option<String>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<String>,
    pub trace_context: serde_json::Value,
}

/// Inserts a job together with its dispatch message in the outbox, and wakes the relay, in one
/// statement (so one round trip and one implicit transaction). Nothing is inserted, and `None`
/// returned, unless the job's video is a stored video of the same tenant.
pub async fn insert_with_message(
    db: impl PgExecutor<'_>,
    job: &NewJob,
    message: &serde_json::Value,
    headers: &serde_json::Value,
) -> Result<Option<JobRecord>, DbError> {
    timed(
        "jobs.insert",
        sqlx::query_as::<_, JobRecord>(
            r#"WITH j AS (
                   INSERT INTO jobs (id, tenant_id, video_id, status, analyses, options, priority, max_attempts,
                                     callback_url, idempotency_key, request_hash, trace_context)
                   SELECT $1, $2, v.id, 'queued', $4, $5, $6, $7, $8, $9, $10, $11
                   FROM videos v WHERE v.id = $3 AND v.tenant_id = $2 AND v.status = 'stored'
                   RETURNING *
               ), o AS (
                   INSERT INTO outbox (routing_key, payload, headers) SELECT j.priority, $12, $13 FROM j
               ), n AS (
                   SELECT pg_notify($14, '') FROM j
               )
               SELECT j.* FROM j, n"#,
        )
        .bind(job.id)
        .bind(job.tenant_id)
        .bind(job.video_id)
        .bind(&job.analyses)
        .bind(&job.options)
        .bind(&job.priority)
        .bind(job.max_attempts)
        .bind(&job.callback_url)
        .bind(&job.idempotency_key)
        .bind(&job.request_hash)
        .bind(&job.trace_context)
        .bind(message)
        .bind(headers)
        .bind(super::outbox::NOTIFY_CHANNEL)
        .fetch_optional(db),
    )
    .await
}

/// Inserts an internal job (one without a video, such as training) with its dispatch message,
/// like [`insert_with_message`].
pub async fn insert_internal(
    db: impl PgExecutor<'_>,
    job: &NewJob,
    message: &serde_json::Value,
    headers: &serde_json::Value,
) -> Result<JobRecord, DbError> {
    timed(
        "jobs.insert_internal",
        sqlx::query_as::<_, JobRecord>(
            r#"WITH j AS (
                   INSERT INTO jobs (id, tenant_id, video_id, status, analyses, options, priority, max_attempts,
                                     callback_url, idempotency_key, request_hash, trace_context)
                   VALUES ($1, $2, NULL, 'queued', $3, $4, $5, $6, NULL, $7, NULL, $8)
                   RETURNING *
               ), o AS (
                   INSERT INTO outbox (routing_key, payload, headers) SELECT j.priority, $9, $10 FROM j
               ), n AS (
                   SELECT pg_notify($11, '') FROM j
               )
               SELECT j.* FROM j, n"#,
        )
        .bind(job.id)
        .bind(job.tenant_id)
        .bind(&job.analyses)
        .bind(&job.options)
        .bind(&job.priority)
        .bind(job.max_attempts)
        .bind(&job.idempotency_key)
        .bind(&job.trace_context)
        .bind(message)
        .bind(headers)
        .bind(super::outbox::NOTIFY_CHANNEL)
        .fetch_one(db),
    )
    .await
}

/// A tenant's job by idempotency key.
pub async fn by_idempotency_key(db: impl PgExecutor<'_>, tenant_id: Uuid, key: &str) -> Result<Option<JobRecord>, DbError> {
    timed(
        "jobs.by_idempotency_key",
        sqlx::query_as!(JobRecord, "SELECT * FROM jobs WHERE tenant_id = $1 AND idempotency_key = $2", tenant_id, key).fetch_optional(db),
    )
    .await
}

/// A tenant's job. Another tenant's id is indistinguishable from a missing one.
pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Option<JobRecord>, DbError> {
    timed("jobs.get", sqlx::query_as!(JobRecord, "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2", tenant_id, id).fetch_optional(db)).await
}

/// A job by id alone, for workers.
pub async fn get_by_id(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<JobRecord>, DbError> {
    timed("jobs.get_by_id", sqlx::query_as!(JobRecord, "SELECT * FROM jobs WHERE id = $1", id).fetch_optional(db)).await
}

/// Position in a newest-first listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// Creation time of the last job seen.
    pub created_at: DateTime<Utc>,
    /// Its id, breaking ties.
    pub id: Uuid,
}

/// A page of a tenant's jobs, newest first, strictly after `cursor`.
pub async fn list(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    status: Option<JobStatus>,
    cursor: Option<Cursor>,
    limit: i64,
) -> Result<Vec<JobRecord>, DbError> {
    let (at, id) = cursor.map(|c| (Some(c.created_at), Some(c.id))).unwrap_or((None, None));
    timed(
        "jobs.list",
        sqlx::query_as!(
            JobRecord,
            r#"SELECT * FROM jobs
               WHERE tenant_id = $1
                 AND ($2::text IS NULL OR status = $2)
                 AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
               ORDER BY created_at DESC, id DESC
               LIMIT $5"#,
            tenant_id,
            status.map(JobStatus::as_str),
            at,
            id,
            limit
        )
        .fetch_all(db),
    )
    .await
}

/// What a cancellation did.
#[derive(Debug)]
pub enum CancelOutcome {
    /// The job is now cancelled; a worker running it notices at its next heartbeat.
    Cancelled(JobRecord),
    /// It had already ended.
    AlreadyFinished(JobRecord),
    /// No such job for this tenant.
    NotFound,
}

/// Cancels a queued or running job. Terminal jobs are left as they are.
pub async fn cancel(conn: &mut PgConnection, tenant_id: Uuid, id: Uuid) -> Result<CancelOutcome, DbError> {
    let updated = timed(
        "jobs.cancel",
        sqlx::query_as!(
            JobRecord,
            r#"UPDATE jobs SET status = 'cancelled', lease_token = NULL, lease_expires_at = NULL, stage = NULL,
                              finished_at = now(), updated_at = now()
               WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')
               RETURNING *"#,
            tenant_id,
            id
        )
        .fetch_optional(&mut *conn),
    )
    .await?;
    if let Some(job) = updated {
        return Ok(CancelOutcome::Cancelled(job));
    }
    Ok(match get(conn, tenant_id, id).await? {
        Some(job) => CancelOutcome::AlreadyFinished(job),
        None => CancelOutcome::NotFound,
    })
}

/// A lease a worker holds on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: Uuid,
    /// The fencing token.
    pub token: Uuid,
    /// The attempt number this lease belongs to.
    pub attempt: i32,
}

/// Result of trying to take a job.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The caller now holds the job. Boxed: a job row is large beside the other outcomes.
    Claimed(Box<JobRecord>, Lease),
    /// The job has ended; the message is a duplicate.
    Finished(JobStatus),
    /// Another worker holds a live lease; try again after it expires.
    LeaseHeld,
    /// The tenant already runs as many jobs as it may.
    TenantAtCapacity,
    /// No such job.
    NotFound,
}

/// Takes a job for `lease_ttl`: a queued job, or a running one whose lease has lapsed (its
/// worker died or is between retries). One round trip: `reelq_claim_job` locks the tenant row
/// so the running-job cap holds exactly, and batch jobs leave one of the tenant's slots to
/// interactive ones.
pub async fn claim(pool: &PgPool, job_id: Uuid, tenant_id: Uuid, lease_ttl: Duration) -> Result<ClaimOutcome, DbError> {
    let token = Uuid::new_v4();
    let ttl_ms = lease_ttl.as_secs_f64() * 1000.0;
    // A function returning rows of `jobs`: checked at run time, since the macros cannot see
    // through the function's result type.
    let claimed = timed(
        "jobs.claim",
        sqlx::query_as::<_, JobRecord>("SELECT * FROM reelq_claim_job($1, $2, $3, $4)")
            .bind(job_id)
            .bind(tenant_id)
            .bind(token)
            .bind(ttl_ms)
            .fetch_optional(pool),
    )
    .await?;
    if let Some(job) = claimed {
        let lease = Lease { job_id, token, attempt: job.attempt };
        return Ok(ClaimOutcome::Claimed(Box::new(job), lease));
    }
    Ok(match get_by_id(pool, job_id).await? {
        None => ClaimOutcome::NotFound,
        Some(job) if job.tenant_id != tenant_id => ClaimOutcome::NotFound,
        Some(job) if job.status().is_terminal() => ClaimOutcome::Finished(job.status()),
        Some(job) if job.status == "running" && job.lease_token.is_some() && job.lease_expires_at >= Some(Utc::now()) => ClaimOutcome::LeaseHeld,
        Some(_) => ClaimOutcome::TenantAtCapacity,
    })
}

/// Extends a lease and records progress. Returns `false` when the lease is lost (the job was
/// cancelled, or taken over after this worker stalled): the worker must stop.
pub async fn heartbeat(db: impl PgExecutor<'_>, lease: &Lease, lease_ttl: Duration, progress: f32, stage: &str) -> Result<bool, DbError> {
    let ttl_ms = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let r = timed(
        "jobs.heartbeat",
        sqlx::query!(
            r#"UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3::float8 / 1000.0),
                              heartbeat_at = now(), progress = GREATEST(progress, $4), stage = $5, updated_at = now()
               WHERE id = $1 AND lease_token = $2 AND status = 'running'"#,
            lease.job_id,
            lease.token,
            ttl_ms as f64,
            progress,
            stage
        )
        .execute(db),
    )
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives a lease back after a transient fault so that the retry can claim at once, keeping the
/// job `running` (it is still being worked on) and recording the fault. With `refund`, the
/// attempt does not count: the fault was a dependency's outage, not the job's.
pub async fn release_for_retry(db: impl PgExecutor<'_>, lease: &Lease, message: &str, refund: bool) -> Result<bool, DbError> {
    let r = timed(
        "jobs.release_for_retry",
        sqlx::query!(
            r#"UPDATE jobs SET lease_token = NULL, lease_expires_at = NULL, stage = 'waiting_to_retry',
                              error_message = $3, updated_at = now(),
                              attempt = CASE WHEN $4 THEN GREATEST(attempt - 1, 0) ELSE attempt END
               WHERE id = $1 AND lease_token = $2 AND status = 'running'"#,
            lease.job_id,
            lease.token,
            message,
            refund
        )
        .execute(db),
    )
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Jobs released for a retry whose delayed message has not brought them back within `grace`
/// (a message lost with a broker's disk, or refused during an upgrade): they are marked as
/// re-dispatched (so one pass takes each) and returned as (id, tenant_id, priority) for the
/// reaper to publish again. Safe with several reapers.
pub async fn lost_retries(db: impl PgExecutor<'_>, grace: Duration, limit: i64) -> Result<Vec<(Uuid, Uuid, String)>, DbError> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let rows = timed(
        "jobs.lost_retries",
        sqlx::query!(
            r#"UPDATE jobs SET updated_at = now()
               WHERE id IN (SELECT id FROM jobs
                            WHERE status = 'running' AND lease_token IS NULL
                              AND updated_at < now() - make_interval(secs => $1::float8 / 1000.0)
                            ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING id, tenant_id, priority"#,
            grace_ms as f64,
            limit
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.tenant_id, r.priority)).collect())
}

/// Marks a job succeeded, writing its last results, where its time went and its webhook, all in
/// one statement fenced by the lease. `false` means the lease was lost and nothing changed.
pub async fn complete(db: impl PgExecutor<'_>, lease: &Lease, results: &[NewResult], timings: &[StageTiming]) -> Result<bool, DbError> {
    // A list of names and integers always serialises.
    let timings = (!timings.is_empty()).then(|| serde_json::to_value(timings).ok()).flatten();
    let analyses: Vec<String> = results.iter().map(|r| r.analysis.clone()).collect();
    let payloads: Vec<serde_json::Value> = results.iter().map(|r| r.payload.clone()).collect();
    let versions: Vec<serde_json::Value> = results.iter().map(|r| r.model_versions.clone()).collect();
    let done = timed(
        "jobs.complete",
        sqlx::query_scalar!(
            r#"WITH j AS (
                   UPDATE jobs SET status = 'succeeded', progress = 1, stage = NULL, error_code = NULL, error_message = NULL,
                                   lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now(), timings = $7
                   WHERE id = $1 AND lease_token = $2 AND status = 'running'
                   RETURNING id, attempt, callback_url
               ), r AS (
                   INSERT INTO results (job_id, analysis, payload, model_versions, attempt)
                   SELECT j.id, u.a, u.p, u.v, j.attempt FROM j, UNNEST($3::text[], $4::jsonb[], $5::jsonb[]) AS u(a, p, v)
                   ON CONFLICT (job_id, analysis) DO UPDATE
                     SET payload = EXCLUDED.payload, model_versions = EXCLUDED.model_versions,
                         attempt = EXCLUDED.attempt, created_at = now()
               ), w AS (
                   INSERT INTO webhook_deliveries (id, job_id, url, payload)
                   SELECT $6, j.id, j.callback_url, jsonb_build_object('event', 'job.succeeded') FROM j
                   WHERE j.callback_url IS NOT NULL
                   ON CONFLICT (job_id) DO NOTHING
               )
               SELECT id AS "id!" FROM j"#,
            lease.job_id,
            lease.token,
            &analyses,
            &payloads,
            &versions,
            Uuid::now_v7(),
            timings
        )
        .fetch_optional(db),
    )
    .await?;
    Ok(done.is_some())
}

/// Marks a job failed and schedules its webhook, in one statement fenced by the lease.
/// `false` means the lease was lost and nothing changed.
pub async fn fail(db: impl PgExecutor<'_>, lease: &Lease, code: JobErrorCode, message: &str) -> Result<bool, DbError> {
    let done = timed(
        "jobs.fail",
        sqlx::query_scalar!(
            r#"WITH j AS (
                   UPDATE jobs SET status = 'failed', stage = NULL, error_code = $3, error_message = $4,
                                   lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
                   WHERE id = $1 AND lease_token = $2 AND status = 'running'
                   RETURNING id, callback_url
               ), w AS (
                   INSERT INTO webhook_deliveries (id, job_id, url, payload)
                   SELECT $5, j.id, j.callback_url, jsonb_build_object('event', 'job.failed') FROM j
                   WHERE j.callback_url IS NOT NULL
                   ON CONFLICT (job_id) DO NOTHING
               )
               SELECT id AS "id!" FROM j"#,
            lease.job_id,
            lease.token,
            code.as_str(),
            message,
            Uuid::now_v7()
        )
        .fetch_optional(db),
    )
    .await?;
    Ok(done.is_some())
}

/// Jobs whose worker stopped heartbeating more than `grace` ago, for the reaper to dispatch
/// again. Returned rows are (id, tenant_id, priority).
pub async fn stale_leases(db: impl PgExecutor<'_>, grace: Duration, limit: i64) -> Result<Vec<(Uuid, Uuid, String)>, DbError> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let rows = timed(
        "jobs.stale_leases",
        sqlx::query!(
            r#"SELECT id, tenant_id, priority FROM jobs
               WHERE status = 'running' AND lease_token IS NOT NULL
                 AND lease_expires_at < now() - make_interval(secs => $1::float8 / 1000.0)
               ORDER BY lease_expires_at LIMIT $2"#,
            grace_ms as f64,
            limit
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.tenant_id, r.priority)).collect())
}

/// The view of a job with its results; `results` are attached only to succeeded jobs.
pub fn view(job: JobRecord, results: Vec<ResultRecord>) -> JobView {
    let status = job.status();
    let error = job.error_message.map(|message| JobErrorView { code: job.error_code, message });
    let timings = job.timings.filter(|_| status == JobStatus::Succeeded).and_then(|t| serde_json::from_value(t).ok());
    let results = (status == JobStatus::Succeeded)
        .then(|| results.into_iter().map(|r| (r.analysis, ResultView { payload: r.payload, model_versions: r.model_versions })).collect());
    JobView {
        id: job.id,
        video_id: job.video_id,
        status,
        analyses: job.analyses,
        priority: job.priority,
        progress: job.progress,
        stage: job.stage,
        attempts: job.attempt,
        max_attempts: job.max_attempts,
        error,
        callback_url: job.callback_url,
        created_at: job.created_at,
        updated_at: job.updated_at,
        started_at: job.started_at,
        finished_at: job.finished_at,
        results,
        timings,
    }
}

/// Loads the view of a job by id alone (webhooks).
pub async fn view_by_id(pool: &PgPool, id: Uuid) -> Result<Option<JobView>, DbError> {
    let Some(job) = get_by_id(pool, id).await? else { return Ok(None) };
    let results = super::results::for_job(pool, id).await?;
    Ok(Some(view(job, results)))
}
