//! Domain vocabulary: job states, lanes, analyses and the stable error codes that clients see.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a job is in its life. It only moves forward:
/// `queued → running → succeeded | failed | cancelled` (a queued job may also be cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// Taken by a worker (or waiting between attempts after a transient fault).
    Running,
    /// Every requested analysis has a result.
    Succeeded,
    /// Ended with an error code; never retried after this.
    Failed,
    /// Stopped at the tenant's request.
    Cancelled,
}

impl JobStatus {
    /// The name stored in PostgreSQL and shown in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status name that is not one of [`JobStatus`].
#[derive(Debug, thiserror::Error)]
#[error("unknown job status `{0}`")]
pub struct UnknownStatus(pub String);

impl FromStr for JobStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            other => return Err(UnknownStatus(other.to_owned())),
        })
    }
}

/// Dispatch lane. Workers reserve capacity for the interactive lane so that a large batch
/// submission never starves jobs somebody is waiting for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// A person or app is waiting for the result.
    #[default]
    Interactive,
    /// Bulk work that may wait.
    Batch,
}

impl Priority {
    /// Both lanes, interactive first.
    pub const ALL: [Priority; 2] = [Priority::Interactive, Priority::Batch];

    /// Name stored in PostgreSQL and used as the routing key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interactive => "interactive",
            Self::Batch => "batch",
        }
    }

    /// Parses a stored lane name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "interactive" => Some(Self::Interactive),
            "batch" => Some(Self::Batch),
            _ => None,
        }
    }
}

/// An analysis a job can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Analysis {
    /// Container, streams, codecs, duration, resolution, frame rate, rotation, audio rate.
    Probe,
    /// Quality sub-scores (picture, motion, delivery, sound) with the measurements behind each
    /// and advice a creator can act on.
    Quality,
    /// On-screen text read from sampled frames, deduplicated, with the times it was seen.
    Ocr,
    /// Speech activity from a voice activity model: speech ratio and segments.
    Audio,
    /// Diagnostic analysis that does no media work (it may wait `options.noop_ms`): for load
    /// tests and operational drills. Accepted only where the api allows diagnostics.
    Noop,
}

impl Analysis {
    /// Name used in requests, results and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Quality => "quality",
            Self::Ocr => "ocr",
            Self::Audio => "audio",
            Self::Noop => "noop",
        }
    }

    /// Parses a stored analysis name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "probe" => Some(Self::Probe),
            "quality" => Some(Self::Quality),
            "ocr" => Some(Self::Ocr),
            "audio" => Some(Self::Audio),
            "noop" => Some(Self::Noop),
            _ => None,
        }
    }

    /// Whether the analysis reads the video at all.
    pub fn needs_media(self) -> bool {
        !matches!(self, Self::Noop)
    }

    /// Whether the analysis exists for operations rather than for creators.
    pub fn is_diagnostic(self) -> bool {
        matches!(self, Self::Noop)
    }
}

/// Stable machine-readable codes of failed jobs. Clients may branch on them; they never change
/// meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobErrorCode {
    /// The file is not a video FFmpeg can read.
    InvalidMedia,
    /// The file has no video stream.
    NoVideoStream,
    /// Longer than the configured duration limit.
    VideoTooLong,
    /// More pixels per frame than the configured limit.
    ResolutionTooHigh,
    /// The job references a video that is gone.
    VideoMissing,
    /// The job's stored request cannot be understood by this worker.
    InvalidRequest,
    /// Transient faults persisted through every attempt.
    RetriesExhausted,
    /// Processing did not finish within its deadline.
    Timeout,
}

impl JobErrorCode {
    /// The code as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMedia => "invalid_media",
            Self::NoVideoStream => "no_video_stream",
            Self::VideoTooLong => "video_too_long",
            Self::ResolutionTooHigh => "resolution_too_high",
            Self::VideoMissing => "video_missing",
            Self::InvalidRequest => "invalid_request",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for JobErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The body of a dispatch message. It carries ids only: the worker reads everything else from
/// PostgreSQL, which is the source of truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMessage {
    /// The job to run.
    pub job_id: Uuid,
    /// Its tenant, for logs and fairness before the row is read.
    pub tenant_id: Uuid,
}

/// Object key of an uploaded video.
pub fn video_object_key(tenant_id: Uuid, video_id: Uuid) -> String {
    format!("uploads/{tenant_id}/{video_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for s in [JobStatus::Queued, JobStatus::Running, JobStatus::Succeeded, JobStatus::Failed, JobStatus::Cancelled] {
            assert_eq!(s.as_str().parse::<JobStatus>().expect("parses"), s);
        }
        assert!("done".parse::<JobStatus>().is_err());
    }

    #[test]
    fn only_final_states_are_terminal() {
        assert!(!JobStatus::Queued.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
        assert!(JobStatus::Cancelled.is_terminal());
    }

    #[test]
    fn analysis_names_match_serde() {
        for a in [Analysis::Probe, Analysis::Quality, Analysis::Ocr, Analysis::Audio, Analysis::Noop] {
            let json = serde_json::to_string(&a).expect("serialize");
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(Analysis::parse(a.as_str()), Some(a));
        }
    }
}

/// Recognises a video container from a file's first bytes (at least 64 are best). Only
/// containers reelq accepts are named; anything else is `None`.
pub fn sniff_container(head: &[u8]) -> Option<&'static str> {
    // ISO BMFF (MP4, MOV): a box size then `ftyp`, whose major brand tells QuickTime apart.
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(if &head[8..12] == b"qt  " { "mov" } else { "mp4" });
    }
    // Old QuickTime files may open with other top-level atoms.
    if head.len() >= 8 && matches!(&head[4..8], b"moov" | b"mdat" | b"wide" | b"free" | b"skip") {
        return Some("mov");
    }
    // EBML header: Matroska, or WebM when the doctype says so.
    if head.len() >= 4 && head[..4] == [0x1A, 0x45, 0xDF, 0xA3] {
        let window = &head[..head.len().min(64)];
        return Some(if window.windows(4).any(|w| w == b"webm") { "webm" } else { "matroska" });
    }
    None
}

/// Bytes [`sniff_container`] wants to see.
pub const SNIFF_LEN: usize = 64;

#[cfg(test)]
mod sniff_tests {
    use super::sniff_container;

    #[test]
    fn recognises_accepted_containers() {
        assert_eq!(sniff_container(b"\0\0\0\x20ftypisom\0\0\x02\0"), Some("mp4"));
        assert_eq!(sniff_container(b"\0\0\0\x14ftypqt  \0\0\0\0"), Some("mov"));
        let mut webm = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84];
        webm.extend_from_slice(b"webm");
        assert_eq!(sniff_container(&webm), Some("webm"));
        let mut mkv = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x88];
        mkv.extend_from_slice(b"matroska");
        assert_eq!(sniff_container(&mkv), Some("matroska"));
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(sniff_container(b"GIF89a......"), None);
        assert_eq!(sniff_container(b"\x89PNG\r\n\x1a\n...."), None);
        assert_eq!(sniff_container(b"hello world, not a video"), None);
        assert_eq!(sniff_container(b""), None);
    }
}
