//! The end of a video's life: deleting a video on request, erasing a tenant's data, and the
//! retention of uploads, `mux` outputs and finished jobs.
//!
//! Rows go first, objects after. A deletion removes every row that refers to an object and
//! records the object keys in `object_deletions` in the same transaction, so once it commits
//! nothing can lead to those objects, and the keys are not forgotten if storage is down. The
//! objects are then removed at once and again by the sweep until the deletion settles: a pass
//! that began after `settle_at`, when no cancelled worker and no presigned PUT can still
//! write, has removed everything.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{DbError, timed};
use crate::domain::mux_output_key;

/// How long after a running job's lease would have lapsed its worker may still be writing an
/// output it started before the job was cancelled.
const WORKER_GRACE: Duration = Duration::from_secs(60);

/// What deleting a video removed.
#[derive(Debug, Clone)]
pub struct VideoDeletion {
    /// The `object_deletions` row owing its objects.
    pub deletion_id: i64,
    /// Jobs that were queued or running, stopped by the deletion.
    pub jobs_cancelled: i64,
    /// Jobs removed with their results, webhooks and feedback.
    pub jobs_removed: i64,
    /// Object keys owed.
    pub keys: Vec<String>,
}

#[derive(sqlx::FromRow)]
struct JobOfVideo {
    id: Uuid,
    status: String,
    mux: bool,
    lease_expires_at: Option<DateTime<Utc>>,
}

/// Deletes a tenant's video and everything derived from it: its jobs (a queued or running one
/// is cancelled by its row going: a worker's fenced writes then find nothing to write to),
/// their results, webhooks, replays and feedback, and the training embeddings of that
/// feedback; records its upload and its jobs' outputs as owed. `None` when the tenant has no
/// such video. Runs in its own transaction, committed only when the video was found.
pub async fn delete_video(pool: &PgPool, tenant_id: Uuid, video_id: Uuid, presign_ttl: Duration) -> Result<Option<VideoDeletion>, DbError> {
    in_transaction(pool, async |tx| delete_video_in(tx, tenant_id, video_id, presign_ttl).await).await
}

async fn delete_video_in(conn: &mut PgConnection, tenant_id: Uuid, video_id: Uuid, presign_ttl: Duration) -> Result<Option<VideoDeletion>, DbError> {
    let video: Option<(String, String, DateTime<Utc>)> = timed(
        "lifecycle.lock_video",
        sqlx::query_as("SELECT object_key, status, created_at FROM videos WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant_id)
            .bind(video_id)
            .fetch_optional(&mut *conn),
    )
    .await?;
    let Some((object_key, status, created_at)) = video else { return Ok(None) };
    // Locked, so a worker finishing one of them waits for this transaction and then finds no row.
    let jobs: Vec<JobOfVideo> = timed(
        "lifecycle.lock_video_jobs",
        sqlx::query_as("SELECT id, status, 'mux' = ANY (analyses) AS mux, lease_expires_at FROM jobs WHERE video_id = $1 ORDER BY id FOR UPDATE")
            .bind(video_id)
            .fetch_all(&mut *conn),
    )
    .await?;
    let job_ids: Vec<Uuid> = jobs.iter().map(|j| j.id).collect();
    forget_feedback_embeddings(conn, &job_ids).await?;
    timed("lifecycle.delete_video", sqlx::query("DELETE FROM videos WHERE id = $1").bind(video_id).execute(&mut *conn)).await?;

    let mut keys = vec![object_key];
    keys.extend(jobs.iter().filter(|j| j.mux).map(|j| mux_output_key(tenant_id, j.id)));
    let mut settle_at = Utc::now();
    for lease in jobs.iter().filter(|j| j.status == "running").filter_map(|j| j.lease_expires_at) {
        settle_at = settle_at.max(lease + WORKER_GRACE);
    }
    if status == "pending" {
        settle_at = settle_at.max(created_at + presign_ttl);
    }
    let deletion_id = owe(conn, tenant_id, "video", Some(video_id), &keys, &[], settle_at).await?;
    Ok(Some(VideoDeletion {
        deletion_id,
        jobs_cancelled: jobs.iter().filter(|j| j.status == "queued" || j.status == "running").count() as i64,
        jobs_removed: jobs.len() as i64,
        keys,
    }))
}

/// What erasing a tenant's data removed.
#[derive(Debug, Clone)]
pub struct TenantErasure {
    /// The `object_deletions` row owing its objects.
    pub deletion_id: i64,
    /// Uploads (videos and audio tracks) removed.
    pub videos_removed: i64,
    /// Jobs removed with their results and webhooks.
    pub jobs_removed: i64,
    /// Feedback rows removed.
    pub feedback_removed: i64,
}

/// Erases everything a tenant stored: uploads, jobs, results, feedback and the training
/// embeddings of that feedback; records the tenant's upload and output folders as owed. The
/// tenant and its API keys stay. `None` when there is no such tenant. Runs in its own
/// transaction, committed only when the tenant was found.
pub async fn erase_tenant(pool: &PgPool, tenant_id: Uuid, presign_ttl: Duration) -> Result<Option<TenantErasure>, DbError> {
    in_transaction(pool, async |tx| erase_tenant_in(tx, tenant_id, presign_ttl).await).await
}

/// Runs `work` in a transaction and commits it when it found something; otherwise the
/// transaction is dropped, which rolls it back.
async fn in_transaction<T>(pool: &PgPool, work: impl AsyncFnOnce(&mut PgConnection) -> Result<Option<T>, DbError>) -> Result<Option<T>, DbError> {
    let mut tx = timed("lifecycle.begin", pool.begin()).await?;
    let found = work(&mut tx).await?;
    if found.is_some() {
        timed("lifecycle.commit", tx.commit()).await?;
    }
    Ok(found)
}

async fn erase_tenant_in(conn: &mut PgConnection, tenant_id: Uuid, presign_ttl: Duration) -> Result<Option<TenantErasure>, DbError> {
    let exists: Option<(Uuid,)> =
        timed("lifecycle.lock_tenant", sqlx::query_as("SELECT id FROM tenants WHERE id = $1 FOR UPDATE").bind(tenant_id).fetch_optional(&mut *conn))
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let (lease, pending): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = timed(
        "lifecycle.tenant_writers",
        sqlx::query_as(
            r#"SELECT (SELECT max(lease_expires_at) FROM jobs WHERE tenant_id = $1 AND status = 'running'),
                      (SELECT max(created_at) FROM videos WHERE tenant_id = $1 AND status = 'pending')"#,
        )
        .bind(tenant_id)
        .fetch_one(&mut *conn),
    )
    .await?;
    timed(
        "lifecycle.erase_embeddings",
        sqlx::query("DELETE FROM example_embeddings WHERE source = 'feedback' AND item_id IN (SELECT id::text FROM jobs WHERE tenant_id = $1)")
            .bind(tenant_id)
            .execute(&mut *conn),
    )
    .await?;
    let feedback = timed("lifecycle.erase_feedback", sqlx::query("DELETE FROM feedback WHERE tenant_id = $1").bind(tenant_id).execute(&mut *conn))
        .await?
        .rows_affected();
    let jobs =
        timed("lifecycle.erase_jobs", sqlx::query("DELETE FROM jobs WHERE tenant_id = $1").bind(tenant_id).execute(&mut *conn)).await?.rows_affected();
    let videos =
        timed("lifecycle.erase_videos", sqlx::query("DELETE FROM videos WHERE tenant_id = $1").bind(tenant_id).execute(&mut *conn)).await?.rows_affected();

    let mut settle_at = Utc::now();
    if let Some(l) = lease {
        settle_at = settle_at.max(l + WORKER_GRACE);
    }
    if let Some(p) = pending {
        settle_at = settle_at.max(p + presign_ttl);
    }
    let prefixes = [format!("uploads/{tenant_id}/"), format!("outputs/{tenant_id}/")];
    let deletion_id = owe(conn, tenant_id, "tenant", None, &[], &prefixes, settle_at).await?;
    Ok(Some(TenantErasure { deletion_id, videos_removed: videos as i64, jobs_removed: jobs as i64, feedback_removed: feedback as i64 }))
}

async fn forget_feedback_embeddings(conn: &mut PgConnection, job_ids: &[Uuid]) -> Result<(), DbError> {
    if job_ids.is_empty() {
        return Ok(());
    }
    let items: Vec<String> = job_ids.iter().map(Uuid::to_string).collect();
    timed(
        "lifecycle.forget_embeddings",
        sqlx::query("DELETE FROM example_embeddings WHERE source = 'feedback' AND item_id = ANY ($1)").bind(&items).execute(&mut *conn),
    )
    .await?;
    Ok(())
}

async fn owe(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    reason: &str,
    video_id: Option<Uuid>,
    keys: &[String],
    prefixes: &[String],
    settle_at: DateTime<Utc>,
) -> Result<i64, DbError> {
    timed(
        "lifecycle.owe",
        sqlx::query_scalar(
            "INSERT INTO object_deletions (tenant_id, reason, video_id, keys, prefixes, settle_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(tenant_id)
        .bind(reason)
        .bind(video_id)
        .bind(keys)
        .bind(prefixes)
        .bind(settle_at)
        .fetch_one(&mut *conn),
    )
    .await
}

/// Objects owed by a deletion.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OwedObjects {
    /// Row id.
    pub id: i64,
    /// Exact keys.
    pub keys: Vec<String>,
    /// Folders to empty.
    pub prefixes: Vec<String>,
    /// Done once a pass that began after this removed everything.
    pub settle_at: DateTime<Utc>,
    /// Passes that failed in a row.
    pub attempts: i32,
}

/// Locks up to `limit` deletions that are due (only `only` when given), skipping rows another
/// sweeper holds. The locks last until `conn`'s transaction ends.
pub async fn lock_owed(conn: &mut PgConnection, only: Option<i64>, limit: i64) -> Result<Vec<OwedObjects>, DbError> {
    timed(
        "lifecycle.lock_owed",
        sqlx::query_as(
            r#"SELECT id, keys, prefixes, settle_at, attempts FROM object_deletions
               WHERE next_at <= now() AND ($1::bigint IS NULL OR id = $1)
               ORDER BY next_at LIMIT $2
               FOR UPDATE SKIP LOCKED"#,
        )
        .bind(only)
        .bind(limit)
        .fetch_all(conn),
    )
    .await
}

/// After a pass that removed every object of `id` and began at `pass_began`: done when the
/// deletion had settled by then, otherwise due again at its settle time.
pub async fn removed(conn: &mut PgConnection, id: i64, pass_began: DateTime<Utc>) -> Result<bool, DbError> {
    let done = timed(
        "lifecycle.removed",
        sqlx::query("DELETE FROM object_deletions WHERE id = $1 AND settle_at <= $2").bind(id).bind(pass_began).execute(&mut *conn),
    )
    .await?
    .rows_affected()
        == 1;
    if !done {
        timed(
            "lifecycle.resettle",
            sqlx::query("UPDATE object_deletions SET next_at = settle_at, attempts = 0, last_error = NULL WHERE id = $1").bind(id).execute(&mut *conn),
        )
        .await?;
    }
    Ok(done)
}

/// After a pass over `id` that storage failed: due again after `backoff`.
pub async fn failed(conn: &mut PgConnection, id: i64, error: &str, backoff: Duration) -> Result<(), DbError> {
    timed(
        "lifecycle.failed",
        sqlx::query("UPDATE object_deletions SET attempts = attempts + 1, last_error = $2, next_at = now() + make_interval(secs => $3) WHERE id = $1")
            .bind(id)
            .bind(error)
            .bind(backoff.as_secs_f64())
            .execute(conn),
    )
    .await?;
    Ok(())
}

/// An object that retention removes, with the row that refers to it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Expiring {
    /// The video (uploads) or the job (outputs, finished jobs).
    pub id: Uuid,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// The object to remove: the upload, the output, or a finished `mux` job's output; `None`
    /// for a finished job with no output.
    pub key: Option<String>,
}

/// Locks up to `limit` uploads stored longer than `age` ago, oldest first, that no queued or
/// running job still needs; other sweepers skip them.
pub async fn lock_expired_uploads(conn: &mut PgConnection, age: Duration, limit: i64) -> Result<Vec<Expiring>, DbError> {
    timed(
        "lifecycle.lock_expired_uploads",
        sqlx::query_as(
            r#"SELECT v.id, v.tenant_id, v.object_key AS key FROM videos v
               WHERE v.status = 'stored' AND v.stored_at < now() - make_interval(secs => $1)
                 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.video_id = v.id AND j.status IN ('queued', 'running'))
               ORDER BY v.stored_at LIMIT $2
               FOR UPDATE OF v SKIP LOCKED"#,
        )
        .bind(age.as_secs_f64())
        .bind(limit)
        .fetch_all(conn),
    )
    .await
}

/// Marks uploads whose bytes were removed: their jobs and results stay.
pub async fn mark_uploads_expired(conn: &mut PgConnection, ids: &[Uuid]) -> Result<(), DbError> {
    timed(
        "lifecycle.mark_uploads_expired",
        sqlx::query("UPDATE videos SET status = 'expired', expired_at = now() WHERE id = ANY ($1) AND status = 'stored'").bind(ids).execute(conn),
    )
    .await?;
    Ok(())
}

/// Locks up to `limit` `mux` results older than `age` whose output is still kept, oldest
/// first; other sweepers skip them.
pub async fn lock_expired_outputs(conn: &mut PgConnection, age: Duration, limit: i64) -> Result<Vec<Expiring>, DbError> {
    timed(
        "lifecycle.lock_expired_outputs",
        sqlx::query_as(
            r#"SELECT r.job_id AS id, j.tenant_id, r.payload->>'output_key' AS key FROM results r JOIN jobs j ON j.id = r.job_id
               WHERE r.analysis = 'mux' AND NOT (r.payload ? 'expired_at') AND r.created_at < now() - make_interval(secs => $1)
               ORDER BY r.created_at LIMIT $2
               FOR UPDATE OF r SKIP LOCKED"#,
        )
        .bind(age.as_secs_f64())
        .bind(limit)
        .fetch_all(conn),
    )
    .await
}

/// Marks `mux` results whose output file was removed (`expired_at` in the payload).
pub async fn mark_outputs_expired(conn: &mut PgConnection, job_ids: &[Uuid]) -> Result<(), DbError> {
    timed(
        "lifecycle.mark_outputs_expired",
        sqlx::query(
            r#"UPDATE results SET payload = payload || jsonb_build_object('expired_at', to_jsonb(now()))
               WHERE analysis = 'mux' AND job_id = ANY ($1)"#,
        )
        .bind(job_ids)
        .execute(conn),
    )
    .await?;
    Ok(())
}

/// Locks up to `limit` jobs that ended longer than `age` ago, oldest first, except those with
/// feedback (kept as training examples); other sweepers skip them. `key` is the output of a
/// `mux` job.
///
/// Job ids are UUIDv7 and a job ends after it is created, so only ids made before the cutoff
/// can qualify: they are read in primary-key order, and no index on `finished_at` is kept up on
/// the hot path for this sweep.
pub async fn lock_finished_jobs(conn: &mut PgConnection, age: Duration, limit: i64) -> Result<Vec<Expiring>, DbError> {
    let cutoff = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    let rows: Vec<(Uuid, Uuid, bool)> = timed(
        "lifecycle.lock_finished_jobs",
        sqlx::query_as(
            r#"SELECT j.id, j.tenant_id, 'mux' = ANY (j.analyses) FROM jobs j
               WHERE j.id < $3 AND j.status IN ('succeeded', 'failed', 'cancelled') AND j.finished_at < $1
                 AND NOT EXISTS (SELECT 1 FROM feedback f WHERE f.job_id = j.id)
               ORDER BY j.id LIMIT $2
               FOR UPDATE OF j SKIP LOCKED"#,
        )
        .bind(cutoff)
        .bind(limit)
        .bind(first_v7_of(cutoff))
        .fetch_all(conn),
    )
    .await?;
    Ok(rows.into_iter().map(|(id, tenant_id, mux)| Expiring { id, tenant_id, key: mux.then(|| mux_output_key(tenant_id, id)) }).collect())
}

/// Deletes jobs with their results, webhooks and replays.
pub async fn delete_jobs(conn: &mut PgConnection, ids: &[Uuid]) -> Result<u64, DbError> {
    Ok(timed("lifecycle.delete_jobs", sqlx::query("DELETE FROM jobs WHERE id = ANY ($1)").bind(ids).execute(conn)).await?.rows_affected())
}

/// The smallest UUIDv7 of the millisecond `at`: every v7 id made earlier sorts below it.
pub fn first_v7_of(at: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earlier_v7_ids_sort_below_the_bound_and_later_ones_above() {
        let at = Utc::now() - chrono::Duration::days(60);
        let bound = first_v7_of(at);
        let ts = |t: DateTime<Utc>| uuid::Timestamp::from_unix(uuid::NoContext, t.timestamp() as u64, t.timestamp_subsec_nanos());
        let before = Uuid::new_v7(ts(at - chrono::Duration::milliseconds(1)));
        let after = Uuid::new_v7(ts(at + chrono::Duration::milliseconds(1)));
        assert!(before < bound && bound < after, "{before} {bound} {after}");
        assert_eq!(bound.get_version_num(), 7);
    }
}
