//! What the reelq API sends and accepts.
//!
//! Parsing is deliberately lenient (defaults, options, unknown status names kept as text) so
//! that fields added to the API later do not break an older CLI. Each parsed value keeps the
//! JSON it came from, which is what `--json` prints, unknown fields included.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// A job's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub enum JobStatus {
    #[default]
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// A state this CLI does not know yet.
    Other(String),
}

impl From<String> for JobStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            _ => Self::Other(s),
        }
    }
}

impl JobStatus {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Other(s) => s,
        }
    }

    /// Whether the job can no longer change. An unknown state counts as still moving, so
    /// waiting on it ends by timeout rather than by a guess.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// A job as the API shows it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Job {
    pub id: Uuid,
    pub video_id: Option<Uuid>,
    pub status: JobStatus,
    pub analyses: Vec<String>,
    pub priority: Option<String>,
    /// 0.0 to 1.0.
    pub progress: f64,
    pub stage: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub error: Option<JobError>,
    pub callback_url: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// By analysis name; present once the job has succeeded.
    pub results: Option<BTreeMap<String, AnalysisResult>>,
    /// Where the finishing attempt's time went, stage by stage; present once it has succeeded.
    #[serde(default)]
    pub timings: Option<Vec<StageTime>>,
    #[serde(skip)]
    pub raw: Value,
}

/// One stage of a job and its wall time.
#[derive(Debug, Clone, Deserialize)]
pub struct StageTime {
    pub stage: String,
    pub ms: u64,
}

impl Job {
    pub fn from_json(raw: Value) -> serde_json::Result<Self> {
        let mut job = Self::deserialize(&raw)?;
        job.raw = raw;
        Ok(job)
    }
}

/// Why a job failed, or the last transient fault while it is being retried.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobError {
    /// Stable code; absent while a transient fault is being retried.
    pub code: Option<String>,
    pub message: String,
}

/// One analysis's output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AnalysisResult {
    pub payload: Value,
    pub model_versions: Value,
}

/// A page of `GET /v1/jobs`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct JobPage {
    /// Newest first.
    pub jobs: Vec<Job>,
    pub next_cursor: Option<String>,
    #[serde(skip)]
    pub raw: Value,
}

impl JobPage {
    pub fn from_json(raw: Value) -> serde_json::Result<Self> {
        let mut page = Self::deserialize(&raw)?;
        for (job, job_raw) in page.jobs.iter_mut().zip(raw.get("jobs").and_then(Value::as_array).into_iter().flatten()) {
            job.raw = job_raw.clone();
        }
        page.raw = raw;
        Ok(page)
    }
}

/// A stored upload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Video {
    pub id: Uuid,
    pub size_bytes: u64,
    pub sha256: Option<String>,
    pub container: Option<String>,
}

/// Body of `POST /v1/jobs`.
#[derive(Debug, Clone, Serialize)]
pub struct JobRequest {
    pub video_id: Uuid,
    pub analyses: Vec<String>,
    pub priority: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub options: serde_json::Map<String, Value>,
}

/// One item of `POST /v1/jobs:batch`.
#[derive(Debug, Clone, Serialize)]
pub struct BatchItem {
    #[serde(flatten)]
    pub request: JobRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// An `application/problem+json` error body.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Problem {
    pub title: Option<String>,
    pub detail: Option<String>,
    pub code: Option<String>,
}

/// The `probe` analysis's payload.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Probe {
    /// FFmpeg's demuxer name, such as `mov,mp4,m4a,3gp,3g2,mj2`.
    pub container: Option<String>,
    pub format_long_name: Option<String>,
    pub duration_secs: Option<f64>,
    /// Bits per second.
    pub bit_rate: Option<i64>,
    pub size_bytes: Option<u64>,
    pub video: Option<ProbeVideo>,
    pub audio: Option<ProbeAudio>,
    pub streams: Vec<ProbeStream>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProbeVideo {
    pub codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// After rotation; older payloads lack it.
    pub display_width: Option<u32>,
    pub display_height: Option<u32>,
    pub frame_rate: Option<f64>,
    /// Clockwise, in degrees.
    pub rotation: Option<i32>,
    pub pixel_format: Option<String>,
    pub frames: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProbeAudio {
    pub codec: Option<String>,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ProbeStream {
    pub index: Option<u32>,
    pub kind: Option<String>,
    pub codec: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_a_list_response_and_keeps_each_jobs_json() {
        let raw = json!({
            "jobs": [
                {"id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f", "video_id": null, "status": "failed",
                 "analyses": ["probe"], "priority": "batch", "progress": 0.5, "stage": null,
                 "attempts": 3, "max_attempts": 3,
                 "error": {"code": "retries_exhausted", "message": "storage kept timing out"},
                 "callback_url": null, "created_at": "2025-03-01T10:00:00.123456Z",
                 "updated_at": "2025-03-01T10:01:00Z", "started_at": null, "finished_at": null,
                 "shiny_new_field": {"x": 1}},
                {"id": "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e60", "status": "paused", "analyses": []}
            ],
            "next_cursor": "abc"
        });
        let page = JobPage::from_json(raw).expect("parses");
        assert_eq!(page.next_cursor.as_deref(), Some("abc"));
        assert_eq!(page.jobs.len(), 2);
        let failed = &page.jobs[0];
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.status.is_terminal());
        assert_eq!(failed.attempts, 3);
        assert_eq!(failed.priority.as_deref(), Some("batch"));
        assert_eq!(failed.error.as_ref().and_then(|e| e.code.as_deref()), Some("retries_exhausted"));
        assert_eq!(failed.raw["shiny_new_field"]["x"], 1);
        // A status this CLI has never heard of is kept, and is not mistaken for an end.
        assert_eq!(page.jobs[1].status, JobStatus::Other("paused".into()));
        assert!(!page.jobs[1].status.is_terminal());
        assert_eq!(page.jobs[1].raw["status"], "paused");
    }

    #[test]
    fn last_page_has_no_cursor() {
        let page = JobPage::from_json(json!({"jobs": [], "next_cursor": null})).expect("parses");
        assert!(page.jobs.is_empty());
        assert!(page.next_cursor.is_none());
    }

    #[test]
    fn job_request_omits_absent_callback() {
        let req =
            JobRequest { video_id: Uuid::nil(), analyses: vec!["probe".into()], priority: "interactive", callback_url: None, options: Default::default() };
        let v = serde_json::to_value(&req).expect("serializes");
        assert_eq!(v, json!({"video_id": Uuid::nil(), "analyses": ["probe"], "priority": "interactive", "options": {}}));
    }
}
