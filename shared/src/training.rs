//! Training jobs: what the scheduler (or an operator) asks a worker to train, and how such a
//! job is enqueued. A training job is an ordinary job of the system tenant with the internal
//! `train` analysis and no video, so it gets the queue's guarantees: at-least-once delivery,
//! leases, retries with backoff and dead letters.

use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::DbError;
use crate::db::jobs::{self, JobRecord, NewJob};
use crate::db::models::SYSTEM_TENANT;
use crate::domain::JobMessage;

/// The analysis name of training jobs; the api refuses it from clients.
pub const ANALYSIS: &str = "train";

/// What to train and how to judge it. Every field has a default, so `{}` is a valid request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingRequest {
    /// Train on pulled videos posted in the last this-many days (and feedback given in them).
    pub window_days: u32,
    /// At most this many pulled videos, the newest kept.
    pub max_examples: u32,
    /// A hashtag becomes a label once this many examples carry it.
    pub min_label_count: u32,
    /// At most this many labels, the most frequent.
    pub max_labels: u32,
    /// Passes over the training examples.
    pub epochs: u32,
    /// Adam step size.
    pub learning_rate: f32,
    /// Share of the newest examples held out for evaluation.
    pub holdout: f64,
    /// A candidate is promoted only if its held-out figure (mAP for hashtags, Spearman for
    /// virality) beats the promoted version's on the same examples by at least this much.
    pub margin: f64,
    /// Videos decoded per run to compute missing embeddings, at most this many of each kind:
    /// pulled videos whose file a dump brought (image embedding), and feedback jobs that stored
    /// no embeddings (text and image, as the job would have). Later runs reuse what was stored.
    pub max_media_examples: u32,
}

impl Default for TrainingRequest {
    fn default() -> Self {
        Self {
            window_days: 90,
            max_examples: 200_000,
            min_label_count: 5,
            max_labels: 500,
            epochs: 60,
            learning_rate: 0.05,
            holdout: 0.2,
            margin: 0.01,
            max_media_examples: 20,
        }
    }
}

impl TrainingRequest {
    /// Checks the ranges; the message says which field is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let checks: [(bool, &str); 8] = [
            (self.window_days >= 1 && self.window_days <= 3_650, "window_days must be 1..=3650"),
            (self.max_examples >= 10, "max_examples must be at least 10"),
            (self.min_label_count >= 1, "min_label_count must be at least 1"),
            (self.max_labels >= 1 && self.max_labels <= 10_000, "max_labels must be 1..=10000"),
            (self.epochs <= 10_000, "epochs must be at most 10000"),
            (self.learning_rate.is_finite() && self.learning_rate > 0.0 && self.learning_rate <= 10.0, "learning_rate must be in (0, 10]"),
            (self.holdout > 0.0 && self.holdout < 1.0, "holdout must be in (0, 1)"),
            (self.margin.is_finite() && self.margin >= 0.0 && self.margin <= 1.0, "margin must be in [0, 1]"),
        ];
        checks.iter().find(|(ok, _)| !ok).map_or(Ok(()), |(_, m)| Err((*m).to_owned()))
    }

    /// The request as stored in a job's options (under `training`).
    pub fn from_options(options: &serde_json::Value) -> Result<Self, String> {
        let r: Self = match options.get("training") {
            None | Some(serde_json::Value::Null) => Self::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| format!("training options: {e}"))?,
        };
        r.validate()?;
        Ok(r)
    }
}

/// Enqueues a training job of the system tenant, with its dispatch message, in one statement.
/// `idempotency_key` (for example the schedule run's id) makes a repeated request return the
/// job already enqueued instead of a second one.
pub async fn enqueue(
    db: impl PgExecutor<'_> + Copy,
    request: &TrainingRequest,
    idempotency_key: Option<&str>,
    trace: &std::collections::HashMap<String, String>,
) -> Result<JobRecord, DbError> {
    if let Some(key) = idempotency_key
        && let Some(existing) = jobs::by_idempotency_key(db, SYSTEM_TENANT, key).await?
    {
        return Ok(existing);
    }
    let job = NewJob {
        id: Uuid::now_v7(),
        tenant_id: SYSTEM_TENANT,
        video_id: None,
        analyses: vec![ANALYSIS.to_owned()],
        options: serde_json::json!({ "training": request }),
        priority: "batch".to_owned(),
        max_attempts: 3,
        callback_url: None,
        idempotency_key: idempotency_key.map(str::to_owned),
        request_hash: None,
        trace_context: serde_json::to_value(trace).unwrap_or_default(),
    };
    let message = serde_json::to_value(JobMessage { job_id: job.id, tenant_id: SYSTEM_TENANT }).unwrap_or_default();
    let headers = serde_json::to_value(trace).unwrap_or_default();
    jobs::insert_internal(db, &job, &message, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_default_and_reject_nonsense() {
        assert_eq!(TrainingRequest::from_options(&serde_json::json!({})).expect("defaults"), TrainingRequest::default());
        let r = TrainingRequest::from_options(&serde_json::json!({ "training": { "epochs": 3, "margin": 0.5 } })).expect("valid");
        assert_eq!((r.epochs, r.margin, r.window_days), (3, 0.5, 90));
        assert!(TrainingRequest::from_options(&serde_json::json!({ "training": { "holdout": 1.5 } })).expect_err("out of range").contains("holdout"));
        assert!(TrainingRequest::from_options(&serde_json::json!({ "training": { "bogus": 1 } })).is_err());
    }
}
