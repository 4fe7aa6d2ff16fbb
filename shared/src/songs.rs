//! Adding songs to the catalogue: what an operator asks for, and how the job that fingerprints
//! the audio is enqueued. Like training, it is an ordinary job (the internal `add_song`
//! analysis) of the operator's tenant, so it gets the queue's guarantees and can be polled at
//! `GET /v1/jobs/{id}`.

use serde::{Deserialize, Serialize};
use sqlx::PgExecutor;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::db::DbError;
use crate::db::jobs::{self, JobRecord, NewJob};
use crate::domain::JobMessage;

/// The analysis name of catalogue jobs; the api refuses it from clients.
pub const ANALYSIS: &str = "add_song";

/// A track to fingerprint into the catalogue: from an audio (or video) upload of the operator's
/// tenant, or from a pulled sound whose audio a dump brought (a pulled video using it carries
/// its file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SongRequest {
    /// An upload of this tenant (`POST /v1/videos`) holding the track.
    #[serde(default)]
    pub audio_id: Option<Uuid>,
    /// The pulled sound (TikTok music id) the track is. Without `audio_id`, its audio comes
    /// from a pulled video that uses it and whose file a dump brought.
    #[serde(default)]
    pub music_id: Option<String>,
    /// Up to 200 characters; with only `music_id`, the pulled sound's name when left empty.
    #[serde(default)]
    pub title: String,
    /// Up to 200 characters.
    #[serde(default)]
    pub artist: String,
}

impl SongRequest {
    /// Checks the fields; the message says which is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.audio_id.is_none() && self.music_id.is_none() {
            return Err("give audio_id (an upload holding the track) or music_id (a pulled sound), or both".into());
        }
        if self.audio_id.is_some() && self.title.trim().is_empty() {
            return Err("title is required with audio_id".into());
        }
        for (name, v) in [("title", &self.title), ("artist", &self.artist)] {
            if v.chars().count() > 200 || v.chars().any(char::is_control) {
                return Err(format!("{name} must be at most 200 characters, without control characters"));
            }
        }
        if let Some(m) = &self.music_id
            && (m.is_empty() || m.len() > 100 || m.chars().any(|c| c.is_control() || c.is_whitespace()))
        {
            return Err("music_id must be 1–100 characters without spaces".into());
        }
        Ok(())
    }

    /// The request as stored in a job's options (under `song`).
    pub fn from_options(options: &serde_json::Value) -> Result<Self, String> {
        let r: Self = serde_json::from_value(options.get("song").cloned().unwrap_or_default()).map_err(|e| format!("song options: {e}"))?;
        r.validate()?;
        Ok(r)
    }
}

/// Enqueues the job that adds `request`'s track, for `tenant_id`, with its dispatch message, in
/// one statement.
pub async fn enqueue(
    db: impl PgExecutor<'_>,
    tenant_id: Uuid,
    request: &SongRequest,
    trace: &std::collections::HashMap<String, String>,
) -> Result<JobRecord, DbError> {
    let job = NewJob {
        id: Uuid::now_v7(),
        tenant_id,
        video_id: request.audio_id,
        analyses: vec![ANALYSIS.to_owned()],
        options: serde_json::json!({ "song": request }),
        priority: "batch".to_owned(),
        max_attempts: 3,
        callback_url: None,
        idempotency_key: None,
        request_hash: None,
        trace_context: serde_json::to_value(trace).unwrap_or_default(),
    };
    let message = serde_json::to_value(JobMessage { job_id: job.id, tenant_id }).unwrap_or_default();
    let headers = serde_json::to_value(trace).unwrap_or_default();
    jobs::insert_internal(db, &job, &message, &headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_a_source_and_sane_text() {
        let id = Uuid::now_v7();
        let ok = SongRequest { audio_id: Some(id), music_id: None, title: "Tune".into(), artist: String::new() };
        assert_eq!(ok.validate(), Ok(()));
        let stored = serde_json::json!({ "song": ok });
        assert_eq!(SongRequest::from_options(&stored), Ok(ok.clone()));
        assert!(SongRequest { audio_id: None, ..ok.clone() }.validate().is_err(), "no source");
        assert!(SongRequest { title: " ".into(), ..ok.clone() }.validate().is_err(), "an upload needs a title");
        assert!(SongRequest { title: "x".repeat(201), ..ok.clone() }.validate().is_err());
        assert!(SongRequest { music_id: Some("a b".into()), ..ok.clone() }.validate().is_err());
        assert_eq!(SongRequest { audio_id: None, music_id: Some("7012".into()), title: String::new(), artist: String::new() }.validate(), Ok(()));
        assert!(SongRequest::from_options(&serde_json::json!({ "song": { "music_id": "1", "bogus": 1 } })).is_err());
    }
}
