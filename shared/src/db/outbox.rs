//! The transactional outbox: dispatch messages written in the same transaction as the job they
//! announce, published later by the relay.

use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgExecutor, Row as _};

use super::{DbError, timed};

/// Channel the relays listen on for new rows written by a process that runs no relay itself
/// (an api replica without one, the scheduler, a replay of dead letters).
pub const NOTIFY_CHANNEL: &str = "reelq_outbox";

/// An unpublished message.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub routing_key: String,
    pub payload: serde_json::Value,
    pub headers: serde_json::Value,
}

/// Takes up to `limit` of the oldest rows after id `after`, in a transaction left open on `conn`: `BEGIN` and a
/// `DELETE … RETURNING` go together in one round trip. The caller publishes the rows and then
/// ends the transaction with [`end_batch`]: a commit forgets them, a rollback (or a connection
/// lost meanwhile) puts them back. Rows another relay holds are skipped, so several api replicas
/// can relay at once without publishing a row twice.
pub async fn take_batch(conn: &mut PgConnection, after: i64, limit: i64) -> Result<Vec<OutboxRow>, DbError> {
    // The simple protocol takes no parameters; the bounds are integers formatted here.
    let sql = format!(
        "BEGIN; DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id > {after} ORDER BY id LIMIT {} FOR UPDATE SKIP LOCKED) \
         RETURNING id, routing_key, payload, headers",
        limit.max(1)
    );
    let rows = timed("outbox.take_batch", sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).fetch_all(&mut *conn)).await?;
    let decode = |r: &PgRow| -> Result<OutboxRow, sqlx::Error> {
        Ok(OutboxRow { id: r.try_get("id")?, routing_key: r.try_get("routing_key")?, payload: r.try_get("payload")?, headers: r.try_get("headers")? })
    };
    // A row that does not decode fails the pass; the caller drops the connection, which rolls
    // the batch back.
    let mut taken =
        rows.iter().map(decode).collect::<Result<Vec<OutboxRow>, _>>().map_err(|source| DbError::Query { query: "outbox.take_batch", source })?;
    taken.sort_by_key(|r| r.id);
    Ok(taken)
}

/// Ends the transaction [`take_batch`] opened: commits (the rows were published) or rolls back.
pub async fn end_batch(conn: &mut PgConnection, commit: bool) -> Result<(), DbError> {
    let sql = if commit { "COMMIT" } else { "ROLLBACK" };
    timed(if commit { "outbox.commit" } else { "outbox.rollback" }, sqlx::raw_sql(sql).execute(conn)).await?;
    Ok(())
}

/// Rows after id `after` waiting to be published.
pub async fn pending(db: impl PgExecutor<'_>, after: i64) -> Result<i64, DbError> {
    timed("outbox.pending", sqlx::query_scalar!(r#"SELECT count(*) AS "n!" FROM outbox WHERE id > $1"#, after).fetch_one(db)).await
}
