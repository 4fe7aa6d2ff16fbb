//! Creators' feedback on a job's hashtag suggestions: the tags they will actually use, stored as
//! labelled examples for the hashtag trainer. One row per job; saving again replaces it.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{DbError, timed};

/// A stored piece of feedback.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRecord {
    /// The job the feedback is about.
    pub job_id: Uuid,
    /// Owning tenant.
    pub tenant_id: Uuid,
    /// The job's video, while it exists.
    pub video_id: Option<Uuid>,
    /// The chosen tags, lower case with a leading `#`, in the creator's order.
    pub hashtags: Vec<String>,
    /// The tags the hashtags analysis suggested for the job (empty when it did not run).
    pub suggested: Vec<String>,
    /// First saved.
    pub created_at: DateTime<Utc>,
    /// Last replaced.
    pub updated_at: DateTime<Utc>,
}

/// Saves (or replaces) the feedback on a tenant's job, together with the suggestions the job's
/// hashtags result holds, in one statement. Returns `None`, writing nothing, unless the job
/// exists for this tenant and has succeeded: feedback on a job without results labels nothing.
pub async fn upsert(db: impl PgExecutor<'_>, tenant_id: Uuid, job_id: Uuid, hashtags: &[String]) -> Result<Option<FeedbackRecord>, DbError> {
    timed(
        "feedback.upsert",
        sqlx::query_as!(
            FeedbackRecord,
            r#"INSERT INTO feedback (job_id, tenant_id, video_id, hashtags, suggested, creator)
               SELECT j.id, j.tenant_id, j.video_id, $3,
                      COALESCE((SELECT array_agg(s->>'tag' ORDER BY n)
                                FROM results r,
                                     jsonb_array_elements(CASE WHEN jsonb_typeof(r.payload->'suggestions') = 'array'
                                                               THEN r.payload->'suggestions' ELSE '[]'::jsonb END)
                                       WITH ORDINALITY AS e(s, n)
                                WHERE r.job_id = j.id AND r.analysis = 'hashtags' AND s->>'tag' IS NOT NULL), '{}'),
                      j.options->>'creator'
               FROM jobs j
               WHERE j.id = $2 AND j.tenant_id = $1 AND j.status = 'succeeded'
               ON CONFLICT (job_id) DO UPDATE
                 SET hashtags = EXCLUDED.hashtags, suggested = EXCLUDED.suggested, creator = EXCLUDED.creator, updated_at = now()
               RETURNING job_id, tenant_id, video_id, hashtags, suggested, created_at, updated_at"#,
            tenant_id,
            job_id,
            hashtags
        )
        .fetch_optional(db),
    )
    .await
}

/// The feedback on a tenant's job, if any. Another tenant's job is indistinguishable from one
/// without feedback.
pub async fn get(db: impl PgExecutor<'_>, tenant_id: Uuid, job_id: Uuid) -> Result<Option<FeedbackRecord>, DbError> {
    timed(
        "feedback.get",
        sqlx::query_as!(
            FeedbackRecord,
            r#"SELECT job_id, tenant_id, video_id, hashtags, suggested, created_at, updated_at
               FROM feedback WHERE tenant_id = $1 AND job_id = $2"#,
            tenant_id,
            job_id
        )
        .fetch_optional(db),
    )
    .await
}

/// Feedback saved or replaced after `since`, oldest change first: what the trainer pulls.
pub async fn changed_since(db: impl PgExecutor<'_>, since: DateTime<Utc>, limit: i64) -> Result<Vec<FeedbackRecord>, DbError> {
    timed(
        "feedback.changed_since",
        sqlx::query_as!(
            FeedbackRecord,
            r#"SELECT job_id, tenant_id, video_id, hashtags, suggested, created_at, updated_at
               FROM feedback WHERE updated_at > $1 ORDER BY updated_at, job_id LIMIT $2"#,
            since,
            limit
        )
        .fetch_all(db),
    )
    .await
}

/// A piece of feedback as a training example: the chosen tags, the job's caption, and the
/// embeddings its `embeddings` result holds, when it ran.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackExample {
    pub job_id: Uuid,
    pub tenant_id: Uuid,
    pub video_id: Option<Uuid>,
    pub hashtags: Vec<String>,
    pub caption: Option<String>,
    /// The `embeddings` result's payload.
    pub embeddings: Option<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

/// Feedback given since `since`, oldest first, as training examples.
pub async fn examples(db: impl PgExecutor<'_>, since: DateTime<Utc>, limit: i64) -> Result<Vec<FeedbackExample>, DbError> {
    timed(
        "feedback.examples",
        sqlx::query_as!(
            FeedbackExample,
            r#"SELECT f.job_id, f.tenant_id, f.video_id, f.hashtags, j.options->>'caption' AS caption,
                      r.payload AS "embeddings?", f.created_at
               FROM feedback f
               JOIN jobs j ON j.id = f.job_id
               LEFT JOIN results r ON r.job_id = f.job_id AND r.analysis = 'embeddings'
               WHERE f.created_at >= $1
               ORDER BY f.created_at, f.job_id
               LIMIT $2"#,
            since,
            limit
        )
        .fetch_all(db),
    )
    .await
}

/// The hashtags a tenant's creator chose for their latest `limit` posts (feedback on jobs that
/// named them in `options.creator`), newest first, leaving out `except` (the job being
/// analysed, whose own feedback must not vote for itself).
pub async fn creator_posts(db: impl PgExecutor<'_>, tenant_id: Uuid, creator: &str, except: Uuid, limit: i64) -> Result<Vec<Vec<String>>, DbError> {
    timed(
        "feedback.creator_posts",
        sqlx::query_scalar::<_, Vec<String>>(
            r#"SELECT hashtags FROM feedback
               WHERE tenant_id = $1 AND creator = $2 AND job_id <> $3
               ORDER BY updated_at DESC LIMIT $4"#,
        )
        .bind(tenant_id)
        .bind(creator)
        .bind(except)
        .bind(limit)
        .fetch_all(db),
    )
    .await
}
