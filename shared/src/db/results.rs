//! Analysis results, one row per (job, analysis). Writes are upserts fenced by the job's lease,
//! so a redelivered job rewrites rather than duplicates, and a stale worker writes nothing.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::jobs::Lease;
use super::{DbError, timed};

/// A stored result.
#[derive(Debug, Clone)]
pub struct ResultRecord {
    pub job_id: Uuid,
    pub analysis: String,
    pub payload: serde_json::Value,
    pub model_versions: serde_json::Value,
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
}

/// A result to write.
#[derive(Debug, Clone)]
pub struct NewResult {
    /// Analysis name.
    pub analysis: String,
    /// Its output.
    pub payload: serde_json::Value,
    /// Model versions behind it (`{}` when no model was used).
    pub model_versions: serde_json::Value,
}

/// Upserts results if, and only if, `lease` still holds the job. Returns `false` (writing
/// nothing) when the lease is lost. Locks the job row for the rest of the transaction.
pub async fn upsert_fenced(conn: &mut PgConnection, lease: &Lease, results: &[NewResult]) -> Result<bool, DbError> {
    let held = timed(
        "results.fence",
        sqlx::query_scalar!("SELECT 1 AS one FROM jobs WHERE id = $1 AND lease_token = $2 AND status = 'running' FOR UPDATE", lease.job_id, lease.token)
            .fetch_optional(&mut *conn),
    )
    .await?;
    if held.is_none() {
        return Ok(false);
    }
    upsert(conn, lease.job_id, lease.attempt, results).await?;
    Ok(true)
}

/// Upserts results without fencing; callers must hold the job row (see [`upsert_fenced`]).
pub async fn upsert(conn: &mut PgConnection, job_id: Uuid, attempt: i32, results: &[NewResult]) -> Result<(), DbError> {
    if results.is_empty() {
        return Ok(());
    }
    let analyses: Vec<String> = results.iter().map(|r| r.analysis.clone()).collect();
    let payloads: Vec<serde_json::Value> = results.iter().map(|r| r.payload.clone()).collect();
    let versions: Vec<serde_json::Value> = results.iter().map(|r| r.model_versions.clone()).collect();
    timed(
        "results.upsert",
        sqlx::query!(
            r#"INSERT INTO results (job_id, analysis, payload, model_versions, attempt)
               SELECT $1, a, p, v, $5 FROM UNNEST($2::text[], $3::jsonb[], $4::jsonb[]) AS u(a, p, v)
               ON CONFLICT (job_id, analysis) DO UPDATE
                 SET payload = EXCLUDED.payload, model_versions = EXCLUDED.model_versions,
                     attempt = EXCLUDED.attempt, created_at = now()"#,
            job_id,
            &analyses,
            &payloads,
            &versions,
            attempt
        )
        .execute(conn),
    )
    .await?;
    Ok(())
}

/// A job's results, by analysis name.
pub async fn for_job(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<ResultRecord>, DbError> {
    timed(
        "results.for_job",
        sqlx::query_as!(
            ResultRecord,
            "SELECT job_id, analysis, payload, model_versions, attempt, created_at FROM results WHERE job_id = $1 ORDER BY analysis",
            job_id
        )
        .fetch_all(db),
    )
    .await
}

/// The results of `analyses` of any of `job_ids`, by job.
pub async fn of_jobs(db: impl PgExecutor<'_>, job_ids: &[Uuid], analyses: &[String]) -> Result<Vec<ResultRecord>, DbError> {
    timed(
        "results.of_jobs",
        sqlx::query_as!(
            ResultRecord,
            "SELECT job_id, analysis, payload, model_versions, attempt, created_at FROM results
             WHERE job_id = ANY($1) AND analysis = ANY($2) ORDER BY job_id, analysis",
            job_ids,
            analyses
        )
        .fetch_all(db),
    )
    .await
}

/// The analyses a job already has results for (a retried job skips them).
pub async fn done_analyses(db: impl PgExecutor<'_>, job_id: Uuid) -> Result<Vec<String>, DbError> {
    timed("results.done_analyses", sqlx::query_scalar!("SELECT analysis FROM results WHERE job_id = $1", job_id).fetch_all(db)).await
}
