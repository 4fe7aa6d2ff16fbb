//! Tenants and their API keys.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{DbError, timed};
use crate::auth::{self, NewApiKey};

/// A tenant as the api sees it after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Tenant id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
}

/// A stored API key, without its secret.
#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    /// Key id.
    pub id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// Public prefix.
    pub prefix: String,
    /// Free-text label.
    pub label: String,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// Creates a tenant, or returns the existing one of that name.
pub async fn upsert(db: impl PgExecutor<'_>, name: &str, max_running_jobs: Option<i32>) -> Result<Tenant, DbError> {
    let row = timed(
        "tenants.upsert",
        sqlx::query!(
            r#"INSERT INTO tenants (id, name, max_running_jobs) VALUES ($1, $2, COALESCE($3, 8))
               ON CONFLICT (name) DO UPDATE SET max_running_jobs = COALESCE($3, tenants.max_running_jobs)
               RETURNING id, name"#,
            Uuid::now_v7(),
            name,
            max_running_jobs
        )
        .fetch_one(db),
    )
    .await?;
    Ok(Tenant { id: row.id, name: row.name })
}

/// Finds a tenant by name.
pub async fn by_name(db: impl PgExecutor<'_>, name: &str) -> Result<Option<Tenant>, DbError> {
    let row = timed("tenants.by_name", sqlx::query!("SELECT id, name FROM tenants WHERE name = $1", name).fetch_optional(db)).await?;
    Ok(row.map(|r| Tenant { id: r.id, name: r.name }))
}

/// Stores a newly generated key for a tenant and returns it (the only time it is visible).
pub async fn create_key(db: impl PgExecutor<'_>, tenant_id: Uuid, label: &str) -> Result<NewApiKey, DbError> {
    let key = auth::generate_key();
    insert_key(db, tenant_id, &key.prefix, &key.hash, label).await?;
    Ok(key)
}

/// Stores a key whose hash is already known (the configured development key).
pub async fn insert_key(db: impl PgExecutor<'_>, tenant_id: Uuid, prefix: &str, hash: &[u8; 32], label: &str) -> Result<(), DbError> {
    timed(
        "api_keys.insert",
        sqlx::query!(
            r#"INSERT INTO api_keys (id, tenant_id, prefix, key_hash, label) VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (key_hash) DO NOTHING"#,
            Uuid::now_v7(),
            tenant_id,
            prefix,
            &hash[..],
            label
        )
        .execute(db),
    )
    .await?;
    Ok(())
}

/// Resolves a key hash to its tenant, if the key exists and is not revoked.
pub async fn authenticate(db: impl PgExecutor<'_>, hash: &[u8; 32]) -> Result<Option<Tenant>, DbError> {
    let row = timed(
        "api_keys.authenticate",
        sqlx::query!(
            r#"SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
               WHERE k.key_hash = $1 AND k.revoked_at IS NULL"#,
            &hash[..]
        )
        .fetch_optional(db),
    )
    .await?;
    Ok(row.map(|r| Tenant { id: r.id, name: r.name }))
}

/// Lists a tenant's keys.
pub async fn list_keys(db: impl PgExecutor<'_>, tenant_id: Uuid) -> Result<Vec<ApiKeyRecord>, DbError> {
    timed(
        "api_keys.list",
        sqlx::query_as!(
            ApiKeyRecord,
            "SELECT id, tenant_id, prefix, label, created_at, revoked_at FROM api_keys WHERE tenant_id = $1 ORDER BY created_at",
            tenant_id
        )
        .fetch_all(db),
    )
    .await
}

/// Revokes a key by its prefix. Returns whether a key was revoked.
pub async fn revoke_key(db: impl PgExecutor<'_>, tenant_id: Uuid, prefix: &str) -> Result<bool, DbError> {
    let r = timed(
        "api_keys.revoke",
        sqlx::query!("UPDATE api_keys SET revoked_at = now() WHERE tenant_id = $1 AND prefix = $2 AND revoked_at IS NULL", tenant_id, prefix).execute(db),
    )
    .await?;
    Ok(r.rows_affected() > 0)
}
