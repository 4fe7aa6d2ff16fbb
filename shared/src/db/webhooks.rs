//! Completion callbacks waiting to be delivered.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::{DbError, timed};

/// A delivery to attempt.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: Uuid,
    pub job_id: Uuid,
    pub url: String,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Schedules the callback of a job that just ended. Part of the transaction that ends it; one
/// delivery per job, so a duplicate end writes nothing.
pub async fn schedule(conn: &mut PgConnection, job_id: Uuid, url: &str, event: &str) -> Result<(), DbError> {
    timed(
        "webhooks.schedule",
        sqlx::query!(
            r#"INSERT INTO webhook_deliveries (id, job_id, url, payload) VALUES ($1, $2, $3, jsonb_build_object('event', $4::text))
               ON CONFLICT (job_id) DO NOTHING"#,
            Uuid::now_v7(),
            job_id,
            url,
            event
        )
        .execute(conn),
    )
    .await?;
    Ok(())
}

/// Takes up to `limit` due deliveries, pushing their next attempt `lease_secs` ahead so that a
/// crashed sender's deliveries come due again, and another sender skips them meanwhile.
pub async fn take_due(db: impl PgExecutor<'_>, limit: i64, lease_secs: f64) -> Result<Vec<Delivery>, DbError> {
    timed(
        "webhooks.take_due",
        sqlx::query_as!(
            Delivery,
            r#"UPDATE webhook_deliveries SET attempts = attempts + 1,
                      next_attempt_at = now() + make_interval(secs => $2)
               WHERE id IN (SELECT id FROM webhook_deliveries
                            WHERE delivered_at IS NULL AND abandoned_at IS NULL AND next_attempt_at <= now()
                            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
               RETURNING id, job_id, url, attempts, created_at"#,
            limit,
            lease_secs
        )
        .fetch_all(db),
    )
    .await
}

/// Records a successful delivery.
pub async fn delivered(db: impl PgExecutor<'_>, id: Uuid, status: i32) -> Result<(), DbError> {
    timed(
        "webhooks.delivered",
        sqlx::query!("UPDATE webhook_deliveries SET delivered_at = now(), last_status = $2, last_error = NULL WHERE id = $1", id, status).execute(db),
    )
    .await?;
    Ok(())
}

/// Records a failed attempt: retried after `retry_in_secs`, or abandoned when that is `None`.
pub async fn failed(db: impl PgExecutor<'_>, id: Uuid, status: Option<i32>, error: &str, retry_in_secs: Option<f64>) -> Result<(), DbError> {
    timed(
        "webhooks.failed",
        sqlx::query!(
            r#"UPDATE webhook_deliveries SET last_status = $2, last_error = $3,
                      next_attempt_at = CASE WHEN $4::float8 IS NULL THEN next_attempt_at ELSE now() + make_interval(secs => $4) END,
                      abandoned_at = CASE WHEN $4::float8 IS NULL THEN now() ELSE NULL END
               WHERE id = $1"#,
            id,
            status,
            error,
            retry_in_secs
        )
        .execute(db),
    )
    .await?;
    Ok(())
}
