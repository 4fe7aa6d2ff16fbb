//! The model registry (trained versions of the hashtag classifier, the hashtag ranker and the
//! virality regressor, their figures and status), the trainer's examples, and the embeddings it keeps for them.
//!
//! Promotion and rollback run in one transaction each, and a partial unique index allows one
//! promoted version per model, so two racing promotions cannot both win.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgExecutor};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{DbError, timed};
use crate::engagement::Counts;

/// The tenant that owns internal jobs (training). No API key is issued for it.
pub const SYSTEM_TENANT: Uuid = Uuid::from_u128(1);

/// The learned models the registry holds.
pub const MODELS: &[&str] = &["hashtags", "ranker", "virality"];

/// One registered version.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::FromRow)]
pub struct ModelVersion {
    /// `hashtags` (the classifier), `ranker` (the hashtag ranker) or `virality`.
    pub model: String,
    /// Version name, unique per model; results name it.
    pub version: String,
    /// `candidate`, `promoted`, `rejected`, `retired` or `rolled_back`.
    pub status: String,
    /// The training job that produced it.
    pub job_id: Option<Uuid>,
    /// Object key of the artifact.
    pub artifact_key: String,
    /// Held-out figures (`p_at_5`, `r_at_5`, `map` for hashtags; `p_at_5`, `hit_at_5`, `r_at_10`,
    /// `mrr` of held-out posts for the ranker; `spearman` for virality).
    #[schema(value_type = Object)]
    pub metrics: serde_json::Value,
    /// The promoted version it was judged against, if there was one.
    pub baseline_version: Option<String>,
    /// That version's figures on the same held-out examples.
    #[schema(value_type = Option<Object>)]
    pub baseline_metrics: Option<serde_json::Value>,
    /// Why it was promoted or rejected.
    pub decision: String,
    /// Posting time of the oldest example.
    pub data_from: Option<DateTime<Utc>>,
    /// Posting time of the newest example.
    pub data_to: Option<DateTime<Utc>>,
    /// Examples it was fitted on.
    pub train_examples: i32,
    /// Held-out examples it was measured on.
    pub eval_examples: i32,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it was last promoted.
    pub promoted_at: Option<DateTime<Utc>>,
    /// When it stopped being the promoted version.
    pub retired_at: Option<DateTime<Utc>>,
}

/// A freshly trained version, before the promotion decision.
#[derive(Debug, Clone)]
pub struct NewVersion<'a> {
    pub model: &'a str,
    pub version: &'a str,
    pub job_id: Option<Uuid>,
    pub artifact_key: &'a str,
    pub metrics: serde_json::Value,
    pub baseline_version: Option<&'a str>,
    pub baseline_metrics: Option<serde_json::Value>,
    pub data_from: Option<DateTime<Utc>>,
    pub data_to: Option<DateTime<Utc>>,
    pub train_examples: i32,
    pub eval_examples: i32,
}

/// Registers a candidate. Registering the same version again (a retried training job) updates
/// it while it is still a candidate.
pub async fn insert_candidate(db: impl PgExecutor<'_>, v: &NewVersion<'_>) -> Result<ModelVersion, DbError> {
    timed(
        "model_versions.insert",
        sqlx::query_as!(
            ModelVersion,
            r#"INSERT INTO model_versions (model, version, status, job_id, artifact_key, metrics, baseline_version,
                                           baseline_metrics, data_from, data_to, train_examples, eval_examples)
               VALUES ($1, $2, 'candidate', $3, $4, $5, $6, $7, $8, $9, $10, $11)
               ON CONFLICT (model, version) DO UPDATE SET
                   artifact_key = EXCLUDED.artifact_key, metrics = EXCLUDED.metrics,
                   baseline_version = EXCLUDED.baseline_version, baseline_metrics = EXCLUDED.baseline_metrics,
                   data_from = EXCLUDED.data_from, data_to = EXCLUDED.data_to,
                   train_examples = EXCLUDED.train_examples, eval_examples = EXCLUDED.eval_examples
               WHERE model_versions.status = 'candidate'
               RETURNING *"#,
            v.model,
            v.version,
            v.job_id,
            v.artifact_key,
            v.metrics,
            v.baseline_version,
            v.baseline_metrics,
            v.data_from,
            v.data_to,
            v.train_examples,
            v.eval_examples
        )
        .fetch_one(db),
    )
    .await
}

/// The promoted version of `model`, if any.
pub async fn promoted(db: impl PgExecutor<'_>, model: &str) -> Result<Option<ModelVersion>, DbError> {
    timed(
        "model_versions.promoted",
        sqlx::query_as!(ModelVersion, "SELECT * FROM model_versions WHERE model = $1 AND status = 'promoted'", model).fetch_optional(db),
    )
    .await
}

/// One version.
pub async fn get(db: impl PgExecutor<'_>, model: &str, version: &str) -> Result<Option<ModelVersion>, DbError> {
    timed(
        "model_versions.get",
        sqlx::query_as!(ModelVersion, "SELECT * FROM model_versions WHERE model = $1 AND version = $2", model, version).fetch_optional(db),
    )
    .await
}

/// Versions, newest first, of one model or of all.
pub async fn list(db: impl PgExecutor<'_>, model: Option<&str>, limit: i64) -> Result<Vec<ModelVersion>, DbError> {
    timed(
        "model_versions.list",
        sqlx::query_as!(
            ModelVersion,
            "SELECT * FROM model_versions WHERE ($1::text IS NULL OR model = $1) ORDER BY created_at DESC, version DESC LIMIT $2",
            model,
            limit
        )
        .fetch_all(db),
    )
    .await
}

/// Marks a candidate rejected, with the reason.
pub async fn reject(db: impl PgExecutor<'_>, model: &str, version: &str, decision: &str) -> Result<(), DbError> {
    timed(
        "model_versions.reject",
        sqlx::query!(
            "UPDATE model_versions SET status = 'rejected', decision = $3 WHERE model = $1 AND version = $2 AND status = 'candidate'",
            model,
            version,
            decision
        )
        .execute(db),
    )
    .await
    .map(|_| ())
}

/// Promotes `version`, retiring the version promoted before it, in one transaction. Returns
/// `false` (changing nothing) when the version is not a candidate or retired one.
pub async fn promote(conn: &mut PgConnection, model: &str, version: &str, decision: &str) -> Result<bool, DbError> {
    use sqlx::Connection as _;
    let mut tx = timed("model_versions.begin", conn.begin()).await?;
    // Serialises promotions and rollbacks of one model.
    timed("model_versions.lock", sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('model:' || $1))", model).execute(&mut *tx)).await?;
    let eligible = timed(
        "model_versions.eligible",
        sqlx::query_scalar!(
            r#"SELECT count(*) AS "n!" FROM model_versions WHERE model = $1 AND version = $2 AND status IN ('candidate', 'retired', 'rolled_back')"#,
            model,
            version
        )
        .fetch_one(&mut *tx),
    )
    .await?;
    if eligible == 0 {
        return Ok(false);
    }
    timed(
        "model_versions.retire",
        sqlx::query!("UPDATE model_versions SET status = 'retired', retired_at = now() WHERE model = $1 AND status = 'promoted'", model).execute(&mut *tx),
    )
    .await?;
    timed(
        "model_versions.promote",
        sqlx::query!(
            "UPDATE model_versions SET status = 'promoted', promoted_at = now(), retired_at = NULL, decision = $3 WHERE model = $1 AND version = $2",
            model,
            version,
            decision
        )
        .execute(&mut *tx),
    )
    .await?;
    timed("model_versions.commit", tx.commit()).await?;
    Ok(true)
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Rollback {
    /// The version that was promoted and is now `rolled_back`.
    pub from: String,
    /// The version promoted in its place.
    pub to: String,
}

/// Why a rollback did nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackRefused {
    /// No version of the model is promoted.
    NothingPromoted,
    /// No earlier promoted version to return to (or the named one is unknown or never shipped).
    NoTarget,
}

/// Rolls `model` back: the promoted version becomes `rolled_back` and `to` (by default the
/// version promoted most recently before it) is promoted again, in one transaction.
pub async fn rollback(conn: &mut PgConnection, model: &str, to: Option<&str>) -> Result<Result<Rollback, RollbackRefused>, DbError> {
    use sqlx::Connection as _;
    let mut tx = timed("model_versions.begin", conn.begin()).await?;
    timed("model_versions.lock", sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('model:' || $1))", model).execute(&mut *tx)).await?;
    let Some(current) = timed(
        "model_versions.promoted",
        sqlx::query_scalar!("SELECT version FROM model_versions WHERE model = $1 AND status = 'promoted'", model).fetch_optional(&mut *tx),
    )
    .await?
    else {
        return Ok(Err(RollbackRefused::NothingPromoted));
    };
    // Only a version that was shipped before (it has a promotion time) is a rollback target.
    let target = timed(
        "model_versions.rollback_target",
        sqlx::query_scalar!(
            r#"SELECT version FROM model_versions
               WHERE model = $1 AND version <> $2 AND status IN ('retired', 'rolled_back') AND promoted_at IS NOT NULL
                 AND ($3::text IS NULL OR version = $3)
               ORDER BY promoted_at DESC LIMIT 1"#,
            model,
            current,
            to
        )
        .fetch_optional(&mut *tx),
    )
    .await?;
    let Some(target) = target else { return Ok(Err(RollbackRefused::NoTarget)) };
    timed(
        "model_versions.roll_back",
        sqlx::query!("UPDATE model_versions SET status = 'rolled_back', retired_at = now() WHERE model = $1 AND version = $2", model, current)
            .execute(&mut *tx),
    )
    .await?;
    timed(
        "model_versions.restore",
        sqlx::query!(
            "UPDATE model_versions SET status = 'promoted', promoted_at = now(), retired_at = NULL, decision = $3 WHERE model = $1 AND version = $2",
            model,
            target,
            format!("restored by a rollback from {current}")
        )
        .execute(&mut *tx),
    )
    .await?;
    timed("model_versions.commit", tx.commit()).await?;
    Ok(Ok(Rollback { from: current, to: target }))
}

/// A pulled video as the trainer sees it: its text, labels, time and latest counters.
#[derive(Debug, Clone, PartialEq)]
pub struct ScrapedExample {
    pub id: String,
    pub description: String,
    /// Lower case, without `#`.
    pub hashtags: Vec<String>,
    pub create_time: DateTime<Utc>,
    pub counts: Counts,
}

/// Pulled videos posted since `since` (the newest `limit` of them), oldest first, with their
/// latest counters.
pub async fn scraped_examples(db: impl PgExecutor<'_>, since: DateTime<Utc>, limit: i64) -> Result<Vec<ScrapedExample>, DbError> {
    let rows = timed(
        "scraped_videos.examples",
        sqlx::query!(
            r#"SELECT v.id, v.description, v.hashtags, v.create_time, s.views, s.likes, s.comments, s.shares
               FROM scraped_videos v
               JOIN LATERAL (SELECT * FROM video_snapshots s WHERE s.video_id = v.id ORDER BY taken_at DESC LIMIT 1) s ON true
               WHERE v.create_time >= $1
               ORDER BY v.create_time DESC, v.id DESC
               LIMIT $2"#,
            since,
            limit
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows
        .into_iter()
        .rev()
        .map(|r| ScrapedExample {
            id: r.id,
            description: r.description,
            hashtags: r.hashtags,
            create_time: r.create_time,
            counts: Counts { views: r.views, likes: r.likes, comments: r.comments, shares: r.shares },
        })
        .collect())
}

/// A stored embedding of one example.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEmbedding {
    pub item_id: String,
    pub text_hash: String,
    pub vector: Vec<f32>,
}

/// The stored `kind` embeddings by `model` of the given items of `source`.
pub async fn embeddings(db: impl PgExecutor<'_>, source: &str, kind: &str, model: &str, items: &[String]) -> Result<Vec<StoredEmbedding>, DbError> {
    timed(
        "example_embeddings.get",
        sqlx::query_as!(
            StoredEmbedding,
            r#"SELECT item_id, text_hash, vector AS "vector!" FROM example_embeddings
               WHERE source = $1 AND kind = $2 AND model = $3 AND item_id = ANY($4)"#,
            source,
            kind,
            model,
            items
        )
        .fetch_all(db),
    )
    .await
}

/// Stores embeddings (all of one size) in one statement, replacing older ones.
pub async fn store_embeddings(db: impl PgExecutor<'_>, source: &str, kind: &str, model: &str, rows: &[StoredEmbedding]) -> Result<(), DbError> {
    let Some(first) = rows.first() else { return Ok(()) };
    let dim = first.vector.len() as i64;
    let ids: Vec<String> = rows.iter().map(|r| r.item_id.clone()).collect();
    let hashes: Vec<String> = rows.iter().map(|r| r.text_hash.clone()).collect();
    // One flat array, sliced per row on the server: a two-dimensional parameter cannot be
    // unnested row by row.
    let flat: Vec<f32> = rows.iter().flat_map(|r| r.vector.iter().copied()).collect();
    timed(
        "example_embeddings.store",
        sqlx::query!(
            r#"INSERT INTO example_embeddings (source, item_id, kind, model, text_hash, vector)
               SELECT $1, u.id, $2, $3, u.h, ($6::real[])[((u.n - 1) * $7 + 1):(u.n * $7)]
               FROM unnest($4::text[], $5::text[]) WITH ORDINALITY AS u(id, h, n)
               ON CONFLICT (source, item_id, kind, model) DO UPDATE
                   SET text_hash = EXCLUDED.text_hash, vector = EXCLUDED.vector, created_at = now()"#,
            source,
            kind,
            model,
            &ids,
            &hashes,
            &flat,
            dim
        )
        .execute(db),
    )
    .await
    .map(|_| ())
}
