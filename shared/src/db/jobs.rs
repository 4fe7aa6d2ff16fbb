//! Jobs: submission, listing, cancellation, and the fenced lease protocol workers follow.
//!
//! Fencing: a claim increments `attempt` and sets a fresh `lease_token`. Every later write by
//! that worker is conditional on `status = 'running' AND lease_token = $token`, so a worker whose
//! lease expired and was taken over (or whose job was cancelled) can no longer change the job.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::results::ResultRecord;
use super::{DbError, timed};
use crate::domain::{JobStatus, MediaKind};
mod lease;
pub use lease::*;
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

/// Inserts a job together with its dispatch message in the outbox in one statement (so one round
/// trip and one implicit transaction). Nothing is inserted, and `None` returned, unless the job's
/// video is a stored video (not an audio track) of the same tenant.
///
/// With `notify`, the statement also wakes the relays that listen on [`NOTIFY_CHANNEL`]. A
/// caller whose own process runs a relay wakes it in memory instead: PostgreSQL serialises the
/// commits of every transaction that notified, so a notification per job caps the rate of
/// submissions at one commit at a time.
///
/// [`NOTIFY_CHANNEL`]: super::outbox::NOTIFY_CHANNEL
pub async fn insert_with_message(
    db: impl PgExecutor<'_>,
    job: &NewJob,
    message: &serde_json::Value,
    headers: &serde_json::Value,
    notify: bool,
) -> Result<Option<JobRecord>, DbError> {
    timed(
        "jobs.insert",
        sqlx::query_as::<_, JobRecord>(
            r#"WITH j AS (
                   INSERT INTO jobs (id, tenant_id, video_id, status, analyses, options, priority, max_attempts,
                                     callback_url, idempotency_key, request_hash, trace_context)
                   SELECT $1, $2, v.id, 'queued', $4, $5, $6, $7, $8, $9, $10, $11
                   FROM videos v WHERE v.id = $3 AND v.tenant_id = $2 AND v.status = 'stored'
                     AND (v.container IS NULL OR v.container <> ALL($15))
                   RETURNING *
               ), o AS (
                   INSERT INTO outbox (routing_key, payload, headers) SELECT j.priority, $12, $13 FROM j
               ), n AS (
                   SELECT pg_notify($14, '') FROM j WHERE $16
               )
               SELECT j.* FROM j LEFT JOIN n ON true"#,
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
        .bind(&MediaKind::AUDIO_CONTAINERS[..])
        .bind(notify)
        .fetch_optional(db),
    )
    .await
}

/// The columns of jobs to insert, one array each, for an `UNNEST` insert.
struct JobColumns<'a> {
    ids: Vec<Uuid>,
    video_ids: Vec<Option<Uuid>>,
    /// Comma-joined: analysis names are identifiers, and a comma never occurs in one.
    analyses: Vec<String>,
    options: Vec<&'a serde_json::Value>,
    priorities: Vec<&'a str>,
    callbacks: Vec<Option<&'a str>>,
    keys: Vec<Option<&'a str>>,
    hashes: Vec<Option<&'a str>>,
    traces: Vec<&'a serde_json::Value>,
    attempts: Vec<i32>,
}

impl<'a> JobColumns<'a> {
    fn of(jobs: impl Iterator<Item = &'a NewJob> + Clone) -> Self {
        Self {
            ids: jobs.clone().map(|j| j.id).collect(),
            video_ids: jobs.clone().map(|j| j.video_id).collect(),
            analyses: jobs.clone().map(|j| j.analyses.join(",")).collect(),
            options: jobs.clone().map(|j| &j.options).collect(),
            priorities: jobs.clone().map(|j| j.priority.as_str()).collect(),
            callbacks: jobs.clone().map(|j| j.callback_url.as_deref()).collect(),
            keys: jobs.clone().map(|j| j.idempotency_key.as_deref()).collect(),
            hashes: jobs.clone().map(|j| j.request_hash.as_deref()).collect(),
            traces: jobs.clone().map(|j| &j.trace_context).collect(),
            attempts: jobs.map(|j| j.max_attempts).collect(),
        }
    }
}

/// One job submitted alone, with its dispatch message and the message's headers.
#[derive(Debug, Clone)]
pub struct Submission {
    pub job: NewJob,
    pub message: serde_json::Value,
    pub headers: serde_json::Value,
}

/// Inserts jobs submitted separately (by any tenants) with their dispatch messages in one
/// statement: what concurrent single submissions are grouped into, so that PostgreSQL parses,
/// starts and commits once for all of them. Each job is inserted as [`insert_with_message`]
/// would insert it alone; one it would refuse (a video that is not a stored video of its
/// tenant, an id or idempotency key already taken) is skipped, and its answer is `None`, for
/// the caller to find out why by inserting it alone. Answers follow the order of `items`;
/// wakes the listening relays with `notify`.
pub async fn insert_each(db: impl PgExecutor<'_>, items: &[Submission], notify: bool) -> Result<Vec<Option<JobRecord>>, DbError> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let c = JobColumns::of(items.iter().map(|i| &i.job));
    let tenants: Vec<Uuid> = items.iter().map(|i| i.job.tenant_id).collect();
    let messages: Vec<&serde_json::Value> = items.iter().map(|i| &i.message).collect();
    let headers: Vec<&serde_json::Value> = items.iter().map(|i| &i.headers).collect();
    let inserted = timed(
        "jobs.insert_each",
        sqlx::query_as::<_, JobRecord>(
            r#"WITH u AS (
                   SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::text[],
                                        $9::text[], $10::jsonb[], $11::jsonb[], $12::jsonb[], $13::int4[])
                     WITH ORDINALITY AS u(id, tenant_id, video_id, analyses, options, priority, callback_url, idempotency_key,
                                          request_hash, trace_context, message, headers, max_attempts, ord)
               ), j AS (
                   INSERT INTO jobs (id, tenant_id, video_id, status, analyses, options, priority, max_attempts,
                                     callback_url, idempotency_key, request_hash, trace_context)
                   SELECT u.id, u.tenant_id, v.id, 'queued', string_to_array(u.analyses, ','), u.options, u.priority, u.max_attempts,
                          u.callback_url, u.idempotency_key, u.request_hash, u.trace_context
                   FROM u JOIN videos v ON v.id = u.video_id AND v.tenant_id = u.tenant_id AND v.status = 'stored'
                                        AND (v.container IS NULL OR v.container <> ALL($14))
                   ORDER BY u.ord
                   ON CONFLICT DO NOTHING
                   RETURNING *
               ), o AS (
                   INSERT INTO outbox (routing_key, payload, headers)
                   SELECT j.priority, u.message, u.headers FROM j JOIN u ON u.id = j.id ORDER BY u.ord
               ), n AS (
                   SELECT pg_notify($15, '') WHERE $16 AND EXISTS (SELECT 1 FROM j)
               )
               SELECT j.* FROM j LEFT JOIN n ON true"#,
        )
        .bind(&c.ids)
        .bind(&tenants)
        .bind(&c.video_ids)
        .bind(&c.analyses)
        .bind(&c.options)
        .bind(&c.priorities)
        .bind(&c.callbacks)
        .bind(&c.keys)
        .bind(&c.hashes)
        .bind(&c.traces)
        .bind(&messages)
        .bind(&headers)
        .bind(&c.attempts)
        .bind(&MediaKind::AUDIO_CONTAINERS[..])
        .bind(super::outbox::NOTIFY_CHANNEL)
        .bind(notify)
        .fetch_all(db),
    )
    .await?;
    let mut by_id: std::collections::HashMap<Uuid, JobRecord> = inserted.into_iter().map(|r| (r.id, r)).collect();
    // The same job twice in one batch is inserted once; its first mention gets the row.
    Ok(items.iter().map(|i| by_id.remove(&i.job.id)).collect())
}

/// Inserts many jobs of one tenant with their dispatch messages (`messages[i]` is `jobs[i]`'s)
/// in one statement, waking the listening relays with `notify` as [`insert_with_message`] does. A job is inserted only when its video is a stored
/// video (not an audio track) of the tenant and its id and idempotency key are new; the others
/// are skipped, not refused, and the caller finds out why. Returns the inserted rows. The
/// outbox rows follow the order given, so the jobs are dispatched in that order.
///
/// This is [`insert_each`] for one tenant and one set of headers, which it binds once rather
/// than per job: a bulk run of 200-job requests went about 10 % faster than through
/// `insert_each`.
pub async fn insert_many(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    jobs: &[NewJob],
    messages: &[serde_json::Value],
    headers: &serde_json::Value,
    notify: bool,
) -> Result<Vec<JobRecord>, DbError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let c = JobColumns::of(jobs.iter());
    timed(
        "jobs.insert_many",
        sqlx::query_as::<_, JobRecord>(
            r#"WITH u AS (
                   SELECT * FROM UNNEST($2::uuid[], $3::uuid[], $4::text[], $5::jsonb[], $6::text[], $7::text[], $8::text[], $9::text[],
                                        $10::jsonb[], $11::jsonb[], $12::int4[])
                     WITH ORDINALITY AS u(id, video_id, analyses, options, priority, callback_url, idempotency_key, request_hash,
                                          trace_context, message, max_attempts, ord)
               ), j AS (
                   INSERT INTO jobs (id, tenant_id, video_id, status, analyses, options, priority, max_attempts,
                                     callback_url, idempotency_key, request_hash, trace_context)
                   SELECT u.id, $1, v.id, 'queued', string_to_array(u.analyses, ','), u.options, u.priority, u.max_attempts,
                          u.callback_url, u.idempotency_key, u.request_hash, u.trace_context
                   FROM u JOIN videos v ON v.id = u.video_id AND v.tenant_id = $1 AND v.status = 'stored'
                                        AND (v.container IS NULL OR v.container <> ALL($13))
                   ORDER BY u.ord
                   ON CONFLICT DO NOTHING
                   RETURNING *
               ), o AS (
                   INSERT INTO outbox (routing_key, payload, headers)
                   SELECT j.priority, u.message, $14 FROM j JOIN u ON u.id = j.id ORDER BY u.ord
               ), n AS (
                   SELECT pg_notify($15, '') WHERE $16 AND EXISTS (SELECT 1 FROM j)
               )
               SELECT j.* FROM j LEFT JOIN n ON true"#,
        )
        .bind(tenant_id)
        .bind(&c.ids)
        .bind(&c.video_ids)
        .bind(&c.analyses)
        .bind(&c.options)
        .bind(&c.priorities)
        .bind(&c.callbacks)
        .bind(&c.keys)
        .bind(&c.hashes)
        .bind(&c.traces)
        .bind(messages)
        .bind(&c.attempts)
        .bind(&MediaKind::AUDIO_CONTAINERS[..])
        .bind(headers)
        .bind(super::outbox::NOTIFY_CHANNEL)
        .bind(notify)
        .fetch_all(db),
    )
    .await
}

/// A tenant's jobs among `ids`, or with one of the idempotency `keys`: what a batch submission
/// reads for the items its insert skipped.
pub async fn by_ids_or_keys(db: impl PgExecutor<'_>, tenant_id: Uuid, ids: &[Uuid], keys: &[String]) -> Result<Vec<JobRecord>, DbError> {
    timed(
        "jobs.by_ids_or_keys",
        sqlx::query_as!(JobRecord, "SELECT * FROM jobs WHERE tenant_id = $1 AND (id = ANY($2) OR idempotency_key = ANY($3))", tenant_id, ids, keys)
            .fetch_all(db),
    )
    .await
}

/// Inserts an internal job (training, or adding a song from an upload the caller has checked)
/// with its dispatch message, like [`insert_with_message`].
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
                   VALUES ($1, $2, $12, 'queued', $3, $4, $5, $6, NULL, $7, NULL, $8)
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
        .bind(job.video_id)
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
