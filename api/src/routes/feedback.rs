//! `/v1/jobs/{id}/feedback`: the hashtags a creator will actually use for a video, stored as
//! labelled examples for the hashtag trainer.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use reelq_shared::db::feedback::{self, FeedbackRecord};
use reelq_shared::db::jobs;

use crate::error::{ApiError, Problem};
use crate::extract::{self, Path};
use crate::retry;
use crate::state::{AppState, AuthTenant};

/// Most tags one piece of feedback may hold (platforms cap captions well below this).
pub const MAX_TAGS: usize = 30;
/// Shortest and longest tag, `#` included.
pub const TAG_CHARS: std::ops::RangeInclusive<usize> = 2..=100;

/// The tags the creator will use.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// 1 to 30 hashtags such as `#cooking`. Letters, digits and underscores after an optional
    /// `#`; stored in lower case with a leading `#`, duplicates dropped, order kept.
    #[schema(example = json!(["#cooking", "#pasta"]), min_items = 1, max_items = 30)]
    pub hashtags: Vec<String>,
}

/// Stored feedback.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackView {
    /// The job.
    pub job_id: Uuid,
    /// The tags, normalised.
    pub hashtags: Vec<String>,
    /// What the job's hashtags analysis suggested (empty when it did not run).
    pub suggested: Vec<String>,
    /// First saved.
    pub created_at: DateTime<Utc>,
    /// Last replaced.
    pub updated_at: DateTime<Utc>,
}

impl From<FeedbackRecord> for FeedbackView {
    fn from(r: FeedbackRecord) -> Self {
        Self { job_id: r.job_id, hashtags: r.hashtags, suggested: r.suggested, created_at: r.created_at, updated_at: r.updated_at }
    }
}

/// Save the hashtags you will use.
///
/// Only for the tenant's own succeeded jobs. Posting again replaces what was saved. The tags are
/// kept with the job's suggestions as training examples for the hashtag model.
#[utoipa::path(
    post, path = "/v1/jobs/{id}/feedback", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    request_body = FeedbackRequest,
    responses(
        (status = 200, description = "Saved", body = FeedbackView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The job has not succeeded (`job_not_succeeded`)", body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid hashtags (`invalid_hashtags`) or body (`invalid_json`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn save_feedback(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<Uuid>,
    extract::Json(req): extract::Json<FeedbackRequest>,
) -> Result<Json<FeedbackView>, ApiError> {
    let tags = normalise(&req.hashtags).map_err(|detail| ApiError::invalid("invalid_hashtags", detail))?;
    // Saving the same tags twice leaves the same row, so a lost connection can be retried.
    let (pool, tags) = (&state.pool, &tags);
    let saved = retry::idempotent("feedback.upsert", move || async move { Ok(feedback::upsert(pool, tenant.id, id, tags).await?) }).await?;
    if let Some(saved) = saved {
        tracing::info!(job_id = %id, tags = saved.hashtags.len(), "feedback saved");
        return Ok(Json(saved.into()));
    }
    // Nothing written: find out why only now, on the rare refusal.
    match retry::idempotent("jobs.get", move || async move { Ok(jobs::get(pool, tenant.id, id).await?) }).await? {
        None => Err(ApiError::NotFound("job")),
        Some(job) => Err(ApiError::Conflict { code: "job_not_succeeded", detail: format!("feedback needs a succeeded job; this one is {}", job.status) }),
    }
}

/// The hashtags saved for a job.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/feedback", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, body = FeedbackView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant, or no feedback saved", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_feedback(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Json<FeedbackView>, ApiError> {
    let pool = &state.pool;
    let saved = retry::idempotent("feedback.get", move || async move { Ok(feedback::get(pool, tenant.id, id).await?) })
        .await?
        .ok_or(ApiError::NotFound("feedback"))?;
    Ok(Json(saved.into()))
}

/// Lower case with one leading `#`, letters (any script), digits and underscores only, 2 to 100
/// characters with the `#`; duplicates dropped, first occurrence kept. The error is a sentence
/// naming the offending tag.
pub fn normalise(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.is_empty() || raw.len() > MAX_TAGS {
        return Err(format!("send 1 to {MAX_TAGS} hashtags, not {}", raw.len()));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let trimmed = r.trim();
        let body = trimmed.strip_prefix('#').unwrap_or(trimmed).to_lowercase();
        if body.is_empty() || !body.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!("`{}` is not a hashtag: use letters, digits and underscores after the #", r.chars().take(120).collect::<String>()));
        }
        let tag = format!("#{body}");
        let n = tag.chars().count();
        if !TAG_CHARS.contains(&n) {
            return Err(format!(
                "`{}` has {n} characters; a hashtag has {} to {} with the #",
                tag.chars().take(120).collect::<String>(),
                TAG_CHARS.start(),
                TAG_CHARS.end()
            ));
        }
        if seen.insert(tag.clone()) {
            out.push(tag);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn tags_are_lower_cased_prefixed_and_deduplicated_in_order() {
        let got = normalise(&tags(&["#Cooking", "pasta", " #cooking ", "Café_2"])).expect("valid");
        assert_eq!(got, tags(&["#cooking", "#pasta", "#café_2"]));
    }

    #[test]
    fn bad_tags_are_refused_with_the_tag_named() {
        assert!(normalise(&[]).is_err());
        assert!(normalise(&vec!["#a1".to_owned(); 31]).is_err());
        assert!(normalise(&tags(&["#"])).is_err());
        assert!(normalise(&tags(&["#two words"])).expect_err("space").contains("two words"));
        assert!(normalise(&tags(&["#dash-tag"])).is_err());
        assert!(normalise(&tags(&["##double"])).is_err());
        assert!(normalise(&tags(&[&"x".repeat(100)])).is_err(), "101 characters with the #");
        assert_eq!(normalise(&tags(&[&"x".repeat(99)])).expect("100 with the #")[0].chars().count(), 100);
        assert_eq!(normalise(&tags(&["a"])).expect("#a has 2"), tags(&["#a"]));
    }
}
