//! PostgreSQL: the pool, the embedded migrations, and one module per aggregate. Every query
//! function takes `impl PgExecutor` (or a transaction) so that callers compose transactions.

use std::future::Future;
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

use crate::config::DatabaseSettings;
use crate::metrics;

pub mod admin;
pub mod batch;
pub mod dead_letters;
pub mod feedback;
pub mod horizon;
pub mod jobs;
pub mod lifecycle;
pub mod models;
pub mod outbox;
pub mod results;
pub mod schedules;
pub mod scraped;
pub mod songs;
pub mod tenants;
pub mod videos;
pub mod webhooks;

/// The embedded migrations.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A database failure. All of them are transient from a worker's point of view: the database
/// being down or slow is not the user's fault.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A query failed.
    #[error("database query `{query}` failed: {source}")]
    Query {
        /// Name of the query, for logs and metrics.
        query: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// A query did not answer within its deadline.
    #[error("database query `{query}` timed out after {after:?}")]
    Timeout {
        /// Name of the query.
        query: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The migrations could not be applied.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A statement that served several callers at once failed; each of them gets this error.
    #[error(transparent)]
    Shared(std::sync::Arc<DbError>),
    /// The batcher that runs `query` for several callers at once has stopped (its process is
    /// shutting down).
    #[error("the batcher of `{query}` has stopped")]
    Stopped {
        /// Name of the query.
        query: &'static str,
    },
}

impl DbError {
    /// Whether the failure is a unique-constraint violation (a lost insert race).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Query { source: sqlx::Error::Database(e), .. } => e.is_unique_violation(),
            Self::Shared(e) => e.is_unique_violation(),
            _ => false,
        }
    }

    /// The SQLSTATE of a failure PostgreSQL reported, such as `57P01`.
    pub fn sqlstate(&self) -> Option<String> {
        match self {
            Self::Query { source: sqlx::Error::Database(e), .. } => e.code().map(|c| c.into_owned()),
            Self::Shared(e) => e.sqlstate(),
            _ => None,
        }
    }

    /// Whether the failure says nothing about the request: the database, the connection or the
    /// pool failed, and the same call may succeed in a moment. Callers answer such failures
    /// with "try again" rather than as a defect.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Timeout { .. } | Self::Stopped { .. } => true,
            Self::Query { source: sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed, .. } => true,
            Self::Query { .. } => self.is_connection_fault(),
            Self::Shared(e) => e.is_transient(),
            Self::Migrate(_) => false,
        }
    }

    /// Whether the statement failed because its connection died (a network fault, or the
    /// server ending the session: administrator command, crash, shutdown, any `08` connection
    /// exception) or because PostgreSQL aborted the transaction to resolve a conflict
    /// (serialization failure, deadlock). The transaction was rolled back in every one of these
    /// cases except a network fault while a commit was under way, so running it once more on a
    /// fresh connection is safe for work that is idempotent.
    pub fn is_connection_fault(&self) -> bool {
        match self {
            Self::Query { source: sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed, .. } => true,
            Self::Query { source: sqlx::Error::Database(_), .. } => {
                self.sqlstate().is_some_and(|c| matches!(c.as_str(), "57P01" | "57P02" | "57P03" | "40001" | "40P01") || c.starts_with("08"))
            }
            Self::Shared(e) => e.is_connection_fault(),
            _ => false,
        }
    }

    /// Whether PostgreSQL refused text it cannot store: a NUL character in `text` (`22021`) or
    /// a `\u0000` escape in `jsonb` (`22P05`). That is the caller's input, not a fault.
    pub fn is_invalid_text(&self) -> bool {
        self.sqlstate().is_some_and(|c| c == "22021" || c == "22P05")
    }
}

/// Client-side deadline on every query, on top of the server's `statement_timeout`, so that a
/// hung connection cannot hang a caller.
pub const QUERY_DEADLINE: Duration = Duration::from_secs(30);

/// Runs one named database call with a deadline and records its latency and outcome.
pub async fn timed<T>(query: &'static str, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, DbError> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(QUERY_DEADLINE, fut).await;
    let elapsed = started.elapsed().as_secs_f64();
    let m = metrics::get();
    match outcome {
        Ok(Ok(v)) => {
            m.db_query_seconds.with_label_values(&[query, "ok"]).observe(elapsed);
            Ok(v)
        }
        Ok(Err(source)) => {
            m.db_query_seconds.with_label_values(&[query, "error"]).observe(elapsed);
            let e = DbError::Query { query, source };
            if e.is_connection_fault() {
                note_connection_fault();
            }
            Err(e)
        }
        Err(_) => {
            m.db_query_seconds.with_label_values(&[query, "timeout"]).observe(elapsed);
            Err(DbError::Timeout { query, after: QUERY_DEADLINE })
        }
    }
}

/// A pooled connection idle longer than this is checked with a round trip before it is handed
/// out; one used a moment ago is handed out as it is.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// For this long after a statement failed on a dead connection, every connection is checked
/// before it is handed out: the others the pool holds have probably died with it (a restart,
/// sessions ended by an administrator).
const CHECK_ALL_AFTER_FAULT: Duration = Duration::from_secs(2);

/// When a statement last failed on a dead connection, in milliseconds since [`epoch`].
static LAST_CONNECTION_FAULT_MS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn note_connection_fault() {
    let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX).max(1);
    LAST_CONNECTION_FAULT_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
}

/// Whether a connection idle for `idle` must be checked before use.
fn must_check(idle: Duration) -> bool {
    let fault = LAST_CONNECTION_FAULT_MS.load(std::sync::atomic::Ordering::Relaxed);
    let recent_fault = fault > 0 && epoch().elapsed().saturating_sub(Duration::from_millis(fault)) < CHECK_ALL_AFTER_FAULT;
    idle >= CHECK_IDLE_AFTER || recent_fault
}

/// Opens a lazily connecting pool: a process starts even while the database is down, and its
/// readiness check says so.
///
/// A connection is checked before use when it has been idle a while (a restart of the database
/// may have ended it meanwhile) and, for a moment, after any statement failed on a dead
/// connection, so that a retry gets a live one. Otherwise, under load, when a check would
/// double the round trips and PostgreSQL's transactions, connections go out unchecked.
pub fn connect(settings: &DatabaseSettings) -> Result<PgPool, DbError> {
    let options: PgConnectOptions = settings
        .url
        .expose_secret()
        .parse::<PgConnectOptions>()
        .map_err(|source| DbError::Query { query: "connect", source })?
        .options([("statement_timeout", settings.statement_timeout_ms.to_string())])
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1));
    Ok(PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout())
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if must_check(meta.idle_for) {
                    use sqlx::Connection as _;
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(options))
}

/// Applies the embedded migrations. Safe to race: sqlx takes an advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), DbError> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// `SELECT 1`, for readiness checks.
pub async fn ping(pool: &PgPool) -> Result<(), DbError> {
    timed("ping", sqlx::query("SELECT 1").execute(pool)).await.map(|_| ())
}
