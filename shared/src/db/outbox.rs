//! The transactional outbox: dispatch messages written in the same transaction as the job they
//! announce, published later by the relay.

use sqlx::{PgConnection, PgExecutor};

use super::{DbError, timed};

/// Channel the relay listens on for new rows (`jobs::insert_with_message` notifies it).
pub const NOTIFY_CHANNEL: &str = "reelq_outbox";

/// An unpublished message.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub routing_key: String,
    pub payload: serde_json::Value,
    pub headers: serde_json::Value,
}

/// Locks up to `limit` of the oldest rows for publishing. Rows locked by another relay are
/// skipped, so several api replicas can relay at once without publishing a row twice.
pub async fn lock_batch(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, DbError> {
    timed(
        "outbox.lock_batch",
        sqlx::query_as!(OutboxRow, "SELECT id, routing_key, payload, headers FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED", limit)
            .fetch_all(conn),
    )
    .await
}

/// Removes published rows.
pub async fn delete(conn: &mut PgConnection, ids: &[i64]) -> Result<(), DbError> {
    timed("outbox.delete", sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", ids).execute(conn)).await?;
    Ok(())
}

/// Rows waiting to be published.
pub async fn pending(db: impl PgExecutor<'_>) -> Result<i64, DbError> {
    timed("outbox.pending", sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox"#).fetch_one(db)).await
}
