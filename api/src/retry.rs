//! One more try for database work whose connection died under it.
//!
//! A pooled connection can die between requests (PostgreSQL restarted or failed over, an
//! administrator ended the session, a proxy cut it) and the pool only learns so when a
//! statement fails on it. That failure is not the request's: the same work on a fresh
//! connection succeeds. So work that is safe to repeat runs once more when its first try met
//! such a fault; what still fails is answered `503 service_unavailable` with `Retry-After`.

use std::future::Future;

use crate::error::ApiError;

/// Runs `work`, and once more if it failed on a dead connection or a transaction PostgreSQL
/// aborted. Only for work that is safe to repeat: reads, writes that are idempotent, and
/// transactions that roll back whole when they fail.
pub async fn idempotent<T, F, Fut>(what: &'static str, mut work: F) -> Result<T, ApiError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ApiError>>,
{
    match work().await {
        Err(e) if e.is_retryable_db_fault() => {
            tracing::warn!(error = %e, what, "database connection lost; trying once more on a fresh one");
            work().await
        }
        outcome => outcome,
    }
}
