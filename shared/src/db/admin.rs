//! The admin flag of API keys: admin keys may operate the scheduler (`/v1/admin/*`).

use sqlx::PgExecutor;

use super::{DbError, timed};

/// Grants or withdraws admin rights of a key, by its hash. Returns whether a key was changed.
pub async fn set_admin(db: impl PgExecutor<'_>, hash: &[u8; 32], admin: bool) -> Result<bool, DbError> {
    let r = timed("api_keys.set_admin", sqlx::query!("UPDATE api_keys SET is_admin = $2 WHERE key_hash = $1", &hash[..], admin).execute(db)).await?;
    Ok(r.rows_affected() > 0)
}

/// Whether the key with this hash is an active admin key.
pub async fn is_admin(db: impl PgExecutor<'_>, hash: &[u8; 32]) -> Result<bool, DbError> {
    timed(
        "api_keys.is_admin",
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = $1 AND is_admin AND revoked_at IS NULL) AS "admin!""#, &hash[..])
            .fetch_one(db),
    )
    .await
}
