//! The public representation of a job, as API responses and webhook bodies carry it. The
//! golden test below pins its JSON: fields may be added, never renamed or removed.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::JobStatus;

/// The public representation of a job, in API responses and webhook bodies.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobView {
    /// Job id.
    pub id: Uuid,
    /// The video analysed.
    pub video_id: Option<Uuid>,
    /// Current status.
    pub status: JobStatus,
    /// Requested analyses.
    pub analyses: Vec<String>,
    /// Dispatch lane.
    pub priority: String,
    /// 0.0 to 1.0.
    pub progress: f32,
    /// What the worker is doing now.
    pub stage: Option<String>,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempts allowed for transient faults.
    pub max_attempts: i32,
    /// Why the job failed (or the last transient fault while it is retried).
    pub error: Option<JobErrorView>,
    /// Callback URL, if one was given.
    pub callback_url: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Results by analysis, once the job succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub results: Option<BTreeMap<String, ResultView>>,
    /// Where the time went on the attempt that finished the job, in the order the stages ran:
    /// `download`, `inspect` (the probe that checks the limits), `decode`, then each analysis it
    /// ran. Succeeded jobs only; an analysis finished by an earlier attempt is not in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<Vec<StageTiming>>,
}

/// One stage of a job and its wall time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StageTiming {
    /// `download`, `inspect`, `decode`, or the name of an analysis.
    pub stage: String,
    /// Wall time in milliseconds.
    pub ms: u64,
}

/// A job's error.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct JobErrorView {
    /// Stable code (absent while a transient fault is being retried).
    pub code: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

/// One analysis result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultView {
    /// The analysis output.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Versions of the models that produced it.
    #[schema(value_type = Object)]
    pub model_versions: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_job_view_keeps_its_shape() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let id = Uuid::from_u128(1);
        let mut results = BTreeMap::new();
        results.insert("probe".to_owned(), ResultView { payload: json!({ "duration_secs": 3.0 }), model_versions: json!([]) });
        let view = JobView {
            id,
            video_id: Some(Uuid::from_u128(2)),
            status: JobStatus::Succeeded,
            analyses: vec!["probe".into()],
            priority: "interactive".into(),
            progress: 1.0,
            stage: None,
            attempts: 1,
            max_attempts: 5,
            error: None,
            callback_url: Some("https://example.com/hook".into()),
            created_at: at("2026-12-03T10:00:00Z"),
            updated_at: at("2026-12-03T10:00:05Z"),
            started_at: Some(at("2026-12-03T10:00:01Z")),
            finished_at: Some(at("2026-12-03T10:00:05Z")),
            results: Some(results),
            timings: Some(vec![StageTiming { stage: "download".into(), ms: 12 }, StageTiming { stage: "probe".into(), ms: 3 }]),
        };
        let golden = json!({
            "id": "00000000-0000-0000-0000-000000000001",
            "video_id": "00000000-0000-0000-0000-000000000002",
            "status": "succeeded",
            "analyses": ["probe"],
            "priority": "interactive",
            "progress": 1.0,
            "stage": null,
            "attempts": 1,
            "max_attempts": 5,
            "error": null,
            "callback_url": "https://example.com/hook",
            "created_at": "2026-12-03T10:00:00Z",
            "updated_at": "2026-12-03T10:00:05Z",
            "started_at": "2026-12-03T10:00:01Z",
            "finished_at": "2026-12-03T10:00:05Z",
            "results": { "probe": { "payload": { "duration_secs": 3.0 }, "model_versions": [] } },
            "timings": [{ "stage": "download", "ms": 12 }, { "stage": "probe", "ms": 3 }]
        });
        assert_eq!(serde_json::to_value(&view).expect("json"), golden);

        // A failed job: the error, and no results key at all.
        let failed = JobView {
            status: JobStatus::Failed,
            error: Some(JobErrorView { code: Some("invalid_media".into()), message: "not a video".into() }),
            results: None,
            timings: None,
            ..view
        };
        let doc = serde_json::to_value(&failed).expect("json");
        assert_eq!(doc["error"], json!({ "code": "invalid_media", "message": "not a video" }));
        assert!(doc.get("results").is_none() && doc.get("timings").is_none(), "{doc}");
    }
}
