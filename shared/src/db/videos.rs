//! Uploaded videos.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DbError, timed};
use crate::domain::MediaKind;

/// A video row.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Video {
    /// Video id.
    pub id: Uuid,
    /// Owning tenant.
    #[serde(skip)]
    pub tenant_id: Uuid,
    /// Object key in the bucket.
    #[serde(skip)]
    pub object_key: String,
    /// `pending` (presigned upload not completed), `stored`, or `expired` (retention removed
    /// the bytes; its jobs and results stay, and no new job can name it).
    pub status: String,
    /// Size in bytes, once stored.
    pub size_bytes: Option<i64>,
    /// Hex SHA-256 of the bytes, once stored.
    pub sha256: Option<String>,
    /// Content type given at upload.
    pub content_type: Option<String>,
    /// Container recognised from the file's magic bytes: a video (`mp4`, `mov`, `webm`,
    /// `matroska`) or an audio track (`mp3`, `wav`, `m4a`, `aac`, `flac`, `ogg`).
    pub container: Option<String>,
    /// When the upload began.
    pub created_at: DateTime<Utc>,
    /// When the bytes were stored and checked.
    pub stored_at: Option<DateTime<Utc>>,
    /// When retention removed the bytes.
    pub expired_at: Option<DateTime<Utc>>,
}

impl Video {
    /// Whether the upload is a video or an audio track, from its container. Derived rather
    /// than stored, so it can never disagree with the bytes; `None` until the upload is stored.
    pub fn kind(&self) -> Option<MediaKind> {
        self.container.as_deref().map(MediaKind::of_container)
    }
}

/// Facts about stored bytes.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Size in bytes.
    pub size_bytes: i64,
    /// Hex SHA-256.
    pub sha256: String,
    /// Recognised container.
    pub container: String,
}

/// Inserts a video that is already stored (a streamed upload).
pub async fn insert_stored(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant_id: Uuid,
    object_key: &str,
    content_type: Option<&str>,
    stored: &StoredObject,
) -> Result<Video, DbError> {
    timed(
        "videos.insert_stored",
        sqlx::query_as!(
            Video,
            r#"INSERT INTO videos (id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, stored_at)
               VALUES ($1, $2, $3, 'stored', $4, $5, $6, $7, now())
               RETURNING id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, created_at, stored_at, expired_at"#,
            id,
            tenant_id,
            object_key,
            stored.size_bytes,
            stored.sha256,
            content_type,
            stored.container
        )
        .fetch_one(db),
    )
    .await
}

/// What a client declared when it asked for a presigned upload.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeclaredUpload {
    /// Size in bytes (at least 1).
    #[sqlx(rename = "declared_size")]
    pub size_bytes: i64,
    /// Lower-case hex SHA-256 of the bytes, when the client declared one.
    #[sqlx(rename = "declared_sha256")]
    pub sha256: Option<String>,
}

/// Inserts a video awaiting a presigned upload as `declared`.
pub async fn insert_pending(
    db: impl PgExecutor<'_>,
    id: Uuid,
    tenant_id: Uuid,
    object_key: &str,
    content_type: Option<&str>,
    declared: &DeclaredUpload,
) -> Result<Video, DbError> {
    // Checked at run time: the columns are newer than the committed offline query data.
    timed(
        "videos.insert_pending",
        sqlx::query_as::<_, Video>(
            r#"INSERT INTO videos (id, tenant_id, object_key, status, content_type, declared_size, declared_sha256)
               VALUES ($1, $2, $3, 'pending', $4, $5, $6)
               RETURNING id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, created_at, stored_at, expired_at"#,
        )
        .bind(id)
        .bind(tenant_id)
        .bind(object_key)
        .bind(content_type)
        .bind(declared.size_bytes)
        .bind(declared.sha256.as_deref())
        .fetch_one(db),
    )
    .await
}

/// What was declared for a tenant's presigned upload; `None` for streamed uploads (and
/// unknown ids).
pub async fn declared(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Option<DeclaredUpload>, DbError> {
    timed(
        "videos.declared",
        sqlx::query_as::<_, DeclaredUpload>(
            "SELECT declared_size, declared_sha256 FROM videos WHERE tenant_id = $1 AND id = $2 AND declared_size IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(db),
    )
    .await
}

/// A pending upload past its time to live.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExpiredUpload {
    /// Video id.
    pub id: Uuid,
    /// Where its bytes would be.
    pub object_key: String,
}

/// Locks up to `limit` uploads that have been pending for longer than `ttl`, oldest first,
/// skipping rows another sweeper (or a completion) holds, so replicas sweeping at once split
/// the work instead of colliding. The locks last until `conn`'s transaction ends.
pub async fn lock_expired_pending(conn: &mut PgConnection, ttl: Duration, limit: i64) -> Result<Vec<ExpiredUpload>, DbError> {
    timed(
        "videos.lock_expired_pending",
        sqlx::query_as::<_, ExpiredUpload>(
            r#"SELECT id, object_key FROM videos
               WHERE status = 'pending' AND created_at < now() - make_interval(secs => $1)
               ORDER BY created_at LIMIT $2
               FOR UPDATE SKIP LOCKED"#,
        )
        .bind(ttl.as_secs_f64())
        .bind(limit)
        .fetch_all(conn),
    )
    .await
}

/// Deletes pending uploads by id; a row completed meanwhile is kept.
pub async fn delete_pending(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<u64, DbError> {
    let r = timed("videos.delete_pending", sqlx::query("DELETE FROM videos WHERE id = ANY($1) AND status = 'pending'").bind(ids).execute(db)).await?;
    Ok(r.rows_affected())
}

/// Marks a pending video stored. Returns `None` when it was not pending.
pub async fn mark_stored(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid, stored: &StoredObject) -> Result<Option<Video>, DbError> {
    timed(
        "videos.mark_stored",
        sqlx::query_as!(
            Video,
            r#"UPDATE videos SET status = 'stored', size_bytes = $3, sha256 = $4, container = $5, stored_at = now()
               WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
               RETURNING id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, created_at, stored_at, expired_at"#,
            tenant_id,
            id,
            stored.size_bytes,
            stored.sha256,
            stored.container
        )
        .fetch_optional(db),
    )
    .await
}

/// A tenant's video by id. Another tenant's id is indistinguishable from a missing one.
pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<Option<Video>, DbError> {
    timed(
        "videos.get",
        sqlx::query_as!(
            Video,
            r#"SELECT id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, created_at, stored_at, expired_at
               FROM videos WHERE tenant_id = $1 AND id = $2"#,
            tenant_id,
            id
        )
        .fetch_optional(db),
    )
    .await
}

/// A tenant's videos among `ids`; other tenants' ids are left out as missing ones are.
pub async fn get_many(db: impl PgExecutor<'_>, tenant_id: Uuid, ids: &[Uuid]) -> Result<Vec<Video>, DbError> {
    timed(
        "videos.get_many",
        sqlx::query_as!(
            Video,
            r#"SELECT id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, created_at, stored_at, expired_at
               FROM videos WHERE tenant_id = $1 AND id = ANY($2)"#,
            tenant_id,
            ids
        )
        .fetch_all(db),
    )
    .await
}

/// Deletes a video row (an upload rejected after its row was written).
pub async fn delete(db: impl PgExecutor<'_>, tenant_id: Uuid, id: Uuid) -> Result<(), DbError> {
    timed("videos.delete", sqlx::query!("DELETE FROM videos WHERE tenant_id = $1 AND id = $2", tenant_id, id).execute(db)).await?;
    Ok(())
}

/// Records the probe of a video, shared by every job on it.
pub async fn set_probe(db: impl PgExecutor<'_>, id: Uuid, probe: &serde_json::Value) -> Result<(), DbError> {
    timed("videos.set_probe", sqlx::query!("UPDATE videos SET probe = $2 WHERE id = $1", id, probe).execute(db)).await?;
    Ok(())
}
