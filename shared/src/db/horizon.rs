//! The oldest open transaction of the PostgreSQL cluster: while a transaction holds a snapshot
//! (a long report, a connection left idle in a transaction), PostgreSQL keeps every row version
//! newer than it, and the queue's statements walk more of them the longer it stays open. The
//! worker reads this on every reaper pass, exports its age and names the session in a warning,
//! so an operator sees why claims slow down and which session to end.

use sqlx::PgExecutor;

use super::{DbError, timed};

/// The session whose transaction is the oldest holding a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct OldestTransaction {
    pub pid: i32,
    /// Role, application name and state as `pg_stat_activity` shows them (empty when the
    /// connected role may not see them: grant it `pg_monitor`).
    pub user: String,
    pub application: String,
    pub state: String,
    /// Seconds since its transaction began.
    pub age_secs: f64,
}

/// The oldest transaction of another session that holds back the cleanup horizon, if any.
pub async fn oldest_transaction(db: impl PgExecutor<'_>) -> Result<Option<OldestTransaction>, DbError> {
    timed(
        "horizon.oldest_transaction",
        sqlx::query_as!(
            OldestTransaction,
            r#"SELECT pid AS "pid!", COALESCE(usename::text, '') AS "user!", COALESCE(application_name, '') AS "application!",
                      COALESCE(state, '') AS "state!", EXTRACT(EPOCH FROM now() - xact_start)::float8 AS "age_secs!"
               FROM pg_stat_activity
               WHERE backend_xmin IS NOT NULL AND xact_start IS NOT NULL AND pid <> pg_backend_pid()
               ORDER BY xact_start
               LIMIT 1"#
        )
        .fetch_optional(db),
    )
    .await
}
