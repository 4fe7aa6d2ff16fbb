//! The scheduler's bookkeeping: known schedules and their resume points, the run history, the
//! per-schedule advisory lock that makes one replica the leader of a run, and the daily API
//! quota ledger.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DbError, timed};

/// First key of every schedule lock (`pg_try_advisory_lock(int, int)`), so that the locks
/// cannot collide with other users of advisory locks such as sqlx's migrator.
pub const LOCK_CLASS: i32 = 0x7271_0001;

/// Records (or updates) a schedule a scheduler runs.
pub async fn register(db: impl PgExecutor<'_>, name: &str, cron: &str, source: &str) -> Result<(), DbError> {
    timed(
        "schedules.register",
        sqlx::query!(
            r#"INSERT INTO schedules (name, cron, source) VALUES ($1, $2, $3)
               ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, source = EXCLUDED.source, updated_at = now()"#,
            name,
            cron,
            source
        )
        .execute(db),
    )
    .await
    .map(|_| ())
}

/// Whether a scheduler has registered a schedule of this name.
pub async fn exists(db: impl PgExecutor<'_>, name: &str) -> Result<bool, DbError> {
    timed("schedules.exists", sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM schedules WHERE name = $1) AS "e!""#, name).fetch_one(db)).await
}

/// Where the schedule's last interrupted pull stopped, if it did.
pub async fn checkpoint(db: impl PgExecutor<'_>, name: &str) -> Result<Option<serde_json::Value>, DbError> {
    let row = timed("schedules.checkpoint", sqlx::query!("SELECT checkpoint FROM schedules WHERE name = $1", name).fetch_optional(db)).await?;
    Ok(row.and_then(|r| r.checkpoint))
}

/// Sets or clears the resume point.
pub async fn set_checkpoint(db: impl PgExecutor<'_>, name: &str, checkpoint: Option<&serde_json::Value>) -> Result<(), DbError> {
    timed(
        "schedules.set_checkpoint",
        sqlx::query!("UPDATE schedules SET checkpoint = $2, updated_at = now() WHERE name = $1", name, checkpoint).execute(db),
    )
    .await
    .map(|_| ())
}

/// One run of a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct RunRecord {
    /// Run id.
    pub id: Uuid,
    /// Schedule name.
    pub schedule: String,
    /// `cron` or `manual`.
    pub trigger: String,
    /// The cron slot it stands for (cron runs only).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// `pending`, `running`, `succeeded`, `partial` (stopped cleanly, for example at the daily
    /// API quota; the next run resumes) or `failed`.
    pub status: String,
    /// When it was asked for.
    pub requested_at: DateTime<Utc>,
    /// When a scheduler started it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The scheduler process that ran it.
    pub runner: Option<String>,
    /// Videos stored.
    pub videos: i32,
    /// API requests made.
    pub requests: i32,
    /// Stable error code, when it failed or stopped early.
    pub error_code: Option<String>,
    /// What went wrong.
    pub error: Option<String>,
}

/// Asks for a run. Returns `None`, inserting nothing, when the schedule already has a pending
/// or running run, or (for a cron slot) when that slot was already inserted by another replica.
pub async fn insert_pending(
    db: impl PgExecutor<'_>,
    schedule: &str,
    trigger: &str,
    scheduled_for: Option<DateTime<Utc>>,
) -> Result<Option<RunRecord>, DbError> {
    timed(
        "schedule_runs.insert",
        sqlx::query_as!(
            RunRecord,
            r#"INSERT INTO schedule_runs (id, schedule, trigger, scheduled_for, status) VALUES ($1, $2, $3, $4, 'pending')
               ON CONFLICT DO NOTHING
               RETURNING *"#,
            Uuid::now_v7(),
            schedule,
            trigger,
            scheduled_for
        )
        .fetch_optional(db),
    )
    .await
}

/// Schedules that have a pending run.
pub async fn with_pending_runs(db: impl PgExecutor<'_>) -> Result<Vec<String>, DbError> {
    timed(
        "schedule_runs.pending",
        sqlx::query_scalar!("SELECT DISTINCT schedule FROM schedule_runs WHERE status = 'pending' ORDER BY schedule").fetch_all(db),
    )
    .await
}

/// Marks runs of `schedule` still `running` as failed with `abandoned`. Only the holder of the
/// schedule's lock calls this: holding it proves the process that started them is gone (its
/// session, and with it the lock, ended).
pub async fn abandon_running(db: impl PgExecutor<'_>, schedule: &str) -> Result<u64, DbError> {
    let r = timed(
        "schedule_runs.abandon",
        sqlx::query!(
            r#"UPDATE schedule_runs SET status = 'failed', ended_at = now(), error_code = 'abandoned',
                      error = 'the scheduler running it stopped before it ended'
               WHERE schedule = $1 AND status = 'running'"#,
            schedule
        )
        .execute(db),
    )
    .await?;
    Ok(r.rows_affected())
}

/// Starts the oldest pending run of `schedule`, recording which process runs it.
pub async fn start_pending(db: impl PgExecutor<'_>, schedule: &str, runner: &str) -> Result<Option<RunRecord>, DbError> {
    timed(
        "schedule_runs.start",
        sqlx::query_as!(
            RunRecord,
            r#"UPDATE schedule_runs SET status = 'running', started_at = now(), runner = $2
               WHERE id = (SELECT id FROM schedule_runs WHERE schedule = $1 AND status = 'pending'
                           ORDER BY requested_at LIMIT 1 FOR UPDATE SKIP LOCKED)
               RETURNING *"#,
            schedule,
            runner
        )
        .fetch_optional(db),
    )
    .await
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd<'a> {
    /// `succeeded`, `partial` or `failed`.
    pub status: &'a str,
    /// Videos stored.
    pub videos: i32,
    /// API requests made.
    pub requests: i32,
    /// Stable error code.
    pub error_code: Option<&'a str>,
    /// Description of the error.
    pub error: Option<&'a str>,
}

/// Ends a running run.
pub async fn finish(db: impl PgExecutor<'_>, id: Uuid, end: &RunEnd<'_>) -> Result<(), DbError> {
    timed(
        "schedule_runs.finish",
        sqlx::query!(
            r#"UPDATE schedule_runs SET status = $2, ended_at = now(), videos = $3, requests = $4, error_code = $5, error = $6
               WHERE id = $1 AND status = 'running'"#,
            id,
            end.status,
            end.videos,
            end.requests,
            end.error_code,
            end.error
        )
        .execute(db),
    )
    .await
    .map(|_| ())
}

/// One run.
pub async fn get_run(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<RunRecord>, DbError> {
    timed("schedule_runs.get", sqlx::query_as!(RunRecord, "SELECT * FROM schedule_runs WHERE id = $1", id).fetch_optional(db)).await
}

/// Runs, newest first, optionally of one schedule, strictly older than the run `before`.
pub async fn list_runs(
    db: impl PgExecutor<'_>,
    schedule: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<RunRecord>, DbError> {
    let (at, id) = before.map(|(a, i)| (Some(a), Some(i))).unwrap_or((None, None));
    timed(
        "schedule_runs.list",
        sqlx::query_as!(
            RunRecord,
            r#"SELECT * FROM schedule_runs
               WHERE ($1::text IS NULL OR schedule = $1)
                 AND ($2::timestamptz IS NULL OR (requested_at, id) < ($2, $3::uuid))
               ORDER BY requested_at DESC, id DESC
               LIMIT $4"#,
            schedule,
            at,
            id,
            limit
        )
        .fetch_all(db),
    )
    .await
}

/// Tries to take the schedule's session-level advisory lock on `conn`. The lock lives as long
/// as the connection's session (or until [`unlock`]), so the caller holds a dedicated
/// connection for the run: if the process dies, the session ends and the lock is freed.
pub async fn try_lock(conn: &mut PgConnection, schedule: &str) -> Result<bool, DbError> {
    timed(
        "schedules.try_lock",
        sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1, hashtext($2)) AS "locked!""#, LOCK_CLASS, schedule).fetch_one(&mut *conn),
    )
    .await
}

/// Releases the lock taken by [`try_lock`] on the same connection.
pub async fn unlock(conn: &mut PgConnection, schedule: &str) -> Result<bool, DbError> {
    timed(
        "schedules.unlock",
        sqlx::query_scalar!(r#"SELECT pg_advisory_unlock($1, hashtext($2)) AS "unlocked!""#, LOCK_CLASS, schedule).fetch_one(&mut *conn),
    )
    .await
}

/// Whether this connection still holds the lock taken by [`try_lock`]: `false` (or an error)
/// when its session has ended, for example after the database restarted or dropped it.
pub async fn still_locked(conn: &mut PgConnection, schedule: &str) -> Result<bool, DbError> {
    timed(
        "schedules.still_locked",
        sqlx::query_scalar::<_, bool>(
            r#"SELECT EXISTS (SELECT 1 FROM pg_locks
                              WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
                                AND classid = $1::int::oid AND objid = hashtext($2)::oid AND objsubid = 2)"#,
        )
        .bind(LOCK_CLASS)
        .bind(schedule)
        .fetch_one(&mut *conn),
    )
    .await
}

/// Use of an API on one UTC day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QuotaUse {
    /// Requests made (or reserved).
    pub requests: i32,
    /// Records received.
    pub records: i32,
    /// Whether the API itself said the quota is spent.
    pub exhausted: bool,
}

/// Reserves one request of `api`'s quota for `day`, unless the day's requests or records are
/// spent. Atomic, so replicas and restarts share one budget.
pub async fn reserve_request(db: impl PgExecutor<'_>, api: &str, day: NaiveDate, max_requests: i32, max_records: i32) -> Result<bool, DbError> {
    let row = timed(
        "api_quota.reserve",
        sqlx::query_scalar!(
            r#"INSERT INTO api_quota AS q (api, day, requests) SELECT $1, $2, 1 WHERE $3 > 0 AND $4 > 0
               ON CONFLICT (api, day) DO UPDATE SET requests = q.requests + 1
               WHERE q.requests < $3 AND q.records < $4 AND NOT q.exhausted
               RETURNING requests"#,
            api,
            day,
            max_requests,
            max_records
        )
        .fetch_optional(db),
    )
    .await?;
    Ok(row.is_some())
}

/// Adds received records to the day's use.
pub async fn add_records(db: impl PgExecutor<'_>, api: &str, day: NaiveDate, records: i32) -> Result<(), DbError> {
    timed(
        "api_quota.add_records",
        sqlx::query!(
            r#"INSERT INTO api_quota AS q (api, day, records) VALUES ($1, $2, $3)
               ON CONFLICT (api, day) DO UPDATE SET records = q.records + $3"#,
            api,
            day,
            records
        )
        .execute(db),
    )
    .await
    .map(|_| ())
}

/// Records that the API refused for quota: nothing more is asked of it that day.
pub async fn mark_exhausted(db: impl PgExecutor<'_>, api: &str, day: NaiveDate) -> Result<(), DbError> {
    timed(
        "api_quota.exhausted",
        sqlx::query!(
            r#"INSERT INTO api_quota AS q (api, day, exhausted) VALUES ($1, $2, true)
               ON CONFLICT (api, day) DO UPDATE SET exhausted = true"#,
            api,
            day
        )
        .execute(db),
    )
    .await
    .map(|_| ())
}

/// The day's use of `api`.
pub async fn quota_use(db: impl PgExecutor<'_>, api: &str, day: NaiveDate) -> Result<QuotaUse, DbError> {
    let row = timed(
        "api_quota.get",
        sqlx::query!("SELECT requests, records, exhausted FROM api_quota WHERE api = $1 AND day = $2", api, day).fetch_optional(db),
    )
    .await?;
    Ok(row.map(|r| QuotaUse { requests: r.requests, records: r.records, exhausted: r.exhausted }).unwrap_or_default())
}
