//! Dead-lettered jobs and their replay.
//!
//! A job is dead-lettered when a worker used up its attempts on transient faults: it ends
//! `failed` with `retries_exhausted`, and the worker also publishes its message to the broker's
//! `{prefix}.dead` queue. PostgreSQL stays the source of truth for which jobs those are; the
//! dead queue is an alarm and audit trail that reelq never consumes, so a replayed job's stale
//! dead message is simply left there (re-publishing it would be harmless: the claim decides).
//!
//! A replay is a new round of attempts with the old verdict kept: the failure is copied into
//! `job_replays`, the job returns to `queued` with its attempt budget extended past the attempts
//! already made (the attempt counter itself only grows, so fencing still holds), and its message
//! goes through the outbox exactly like a new submission's.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use super::jobs::JobRecord;
use super::{DbError, timed};
use crate::domain::JobErrorCode;

/// The error code of a job that ran out of attempts on transient faults: the dead-lettered ones.
fn dead_code() -> &'static str {
    JobErrorCode::RetriesExhausted.as_str()
}

/// A dead-lettered job, as operators list it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct DeadLetter {
    /// The job.
    pub job_id: Uuid,
    /// Its tenant's name.
    pub tenant: String,
    /// The video it analyses, if any.
    pub video_id: Option<Uuid>,
    /// Requested analyses.
    pub analyses: Vec<String>,
    /// Dispatch lane.
    pub priority: String,
    /// Attempts made in all, over every replay.
    pub attempts: i32,
    /// Always `retries_exhausted`.
    pub error_code: Option<String>,
    /// The last fault.
    pub error_message: Option<String>,
    /// When it was dead-lettered.
    pub failed_at: Option<DateTime<Utc>>,
    /// How often it was replayed before.
    pub replays: i64,
}

/// One earlier round of attempts of a replayed job: how it ended, and who replayed it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct ReplayRecord {
    /// Replay id.
    pub id: Uuid,
    /// The job's attempt counter when it was dead-lettered.
    pub attempts_before: i32,
    /// The attempt budget it had then.
    pub max_attempts: i32,
    /// How that round ended (`retries_exhausted`).
    pub error_code: Option<String>,
    /// Its last fault.
    pub error_message: Option<String>,
    /// When that round ended.
    pub failed_at: Option<DateTime<Utc>>,
    /// Prefix of the admin key that replayed it.
    pub replayed_by: String,
    /// When it was replayed.
    pub replayed_at: DateTime<Utc>,
}

const LIST_COLUMNS: &str = r#"SELECT j.id AS job_id, t.name AS tenant, j.video_id, j.analyses, j.priority, j.attempt AS attempts,
           j.error_code, j.error_message, j.finished_at AS failed_at,
           (SELECT count(*) FROM job_replays r WHERE r.job_id = j.id) AS replays
    FROM jobs j JOIN tenants t ON t.id = j.tenant_id
    WHERE j.status = 'failed' AND j.error_code = $1"#;

/// Dead-lettered jobs of every tenant, most recently failed first; `before` is the
/// `(failed_at, job_id)` of the last row of the previous page.
pub async fn list(db: impl PgExecutor<'_>, before: Option<(DateTime<Utc>, Uuid)>, limit: i64) -> Result<Vec<DeadLetter>, DbError> {
    let (at, id) = before.unzip();
    let sql = format!("{LIST_COLUMNS} AND ($2::timestamptz IS NULL OR (j.finished_at, j.id) < ($2, $3)) ORDER BY j.finished_at DESC, j.id DESC LIMIT $4");
    timed("dead_letters.list", sqlx::query_as::<_, DeadLetter>(sqlx::AssertSqlSafe(sql)).bind(dead_code()).bind(at).bind(id).bind(limit).fetch_all(db))
        .await
}

/// One dead-lettered job; `None` when the job does not exist or is not dead-lettered.
pub async fn get(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Option<DeadLetter>, DbError> {
    let sql = format!("{LIST_COLUMNS} AND j.id = $2");
    timed("dead_letters.get", sqlx::query_as::<_, DeadLetter>(sqlx::AssertSqlSafe(sql)).bind(dead_code()).bind(job_id).fetch_optional(db)).await
}

/// A job's earlier rounds of attempts, oldest first.
pub async fn history(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<ReplayRecord>, DbError> {
    timed(
        "dead_letters.history",
        sqlx::query_as::<_, ReplayRecord>(
            r#"SELECT id, attempts_before, max_attempts, error_code, error_message, failed_at, replayed_by, replayed_at
               FROM job_replays WHERE job_id = $1 ORDER BY replayed_at, id"#,
        )
        .bind(job_id)
        .fetch_all(db),
    )
    .await
}

/// What a replay found.
#[derive(Debug)]
pub enum ReplayOutcome {
    /// The job is queued again and its message is in the outbox.
    Replayed(Box<JobRecord>),
    /// The job exists but is not dead-lettered (it is in this status, with this error code).
    NotDeadLettered { status: String, error_code: Option<String> },
    /// No such job.
    NotFound,
}

/// Replays a dead-lettered job inside the caller's transaction: records the failure in its
/// history, queues it again with `extra_attempts` more attempts than it has made, drops its
/// failure webhook (the job has not ended after all; its final outcome is announced then), and
/// writes its dispatch message to the outbox. `message` and `headers` are built by the caller
/// exactly as for a new submission. The row is locked first, so concurrent replays of one job
/// queue it once.
pub async fn replay(
    conn: &mut PgConnection,
    job_id: Uuid,
    extra_attempts: i32,
    replayed_by: &str,
    message: impl FnOnce(&JobRecord) -> serde_json::Value,
    headers: &serde_json::Value,
) -> Result<ReplayOutcome, DbError> {
    let job =
        timed("dead_letters.lock", sqlx::query_as::<_, JobRecord>("SELECT * FROM jobs WHERE id = $1 FOR UPDATE").bind(job_id).fetch_optional(&mut *conn))
            .await?;
    let Some(job) = job else { return Ok(ReplayOutcome::NotFound) };
    if job.status != "failed" || job.error_code.as_deref() != Some(dead_code()) {
        return Ok(ReplayOutcome::NotDeadLettered { status: job.status, error_code: job.error_code });
    }
    timed(
        "dead_letters.record",
        sqlx::query(
            r#"INSERT INTO job_replays (id, job_id, attempts_before, max_attempts, error_code, error_message, failed_at, replayed_by)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"#,
        )
        .bind(Uuid::now_v7())
        .bind(job.id)
        .bind(job.attempt)
        .bind(job.max_attempts)
        .bind(&job.error_code)
        .bind(&job.error_message)
        .bind(job.finished_at)
        .bind(replayed_by)
        .execute(&mut *conn),
    )
    .await?;
    timed("dead_letters.drop_webhook", sqlx::query("DELETE FROM webhook_deliveries WHERE job_id = $1").bind(job.id).execute(&mut *conn)).await?;
    let queued = timed(
        "dead_letters.requeue",
        sqlx::query_as::<_, JobRecord>(
            r#"UPDATE jobs SET status = 'queued', max_attempts = attempt + $2, error_code = NULL, error_message = NULL,
                              stage = NULL, progress = 0, lease_token = NULL, lease_expires_at = NULL, heartbeat_at = NULL,
                              finished_at = NULL, updated_at = now()
               WHERE id = $1 RETURNING *"#,
        )
        .bind(job.id)
        .bind(extra_attempts)
        .fetch_one(&mut *conn),
    )
    .await?;
    timed(
        "dead_letters.outbox",
        sqlx::query("INSERT INTO outbox (routing_key, payload, headers) VALUES ($1, $2, $3)")
            .bind(&queued.priority)
            .bind(message(&queued))
            .bind(headers)
            .execute(&mut *conn),
    )
    .await?;
    timed("dead_letters.notify", sqlx::query("SELECT pg_notify($1, '')").bind(super::outbox::NOTIFY_CHANNEL).execute(&mut *conn)).await?;
    Ok(ReplayOutcome::Replayed(Box::new(queued)))
}
