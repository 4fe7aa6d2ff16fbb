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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
    /// Speech recognised with Whisper: the text, timed segments and the language.
    Transcript,
    /// Sentence embedding of the transcript, on-screen text and caption (and an image
    /// embedding of the frames when an image encoder is configured), kept for training.
    Embeddings,
    /// Ranked hashtag suggestions, each with its score and the evidence behind it.
    Hashtags,
    /// Sounds that fit the video: the music of pulled videos carrying its suggested hashtags,
    /// ranked by the engagement those videos earned.
    Music,
    /// The video with a new soundtrack: the video stream copied, an uploaded track (replacing
    /// or mixed under the original audio) encoded as AAC, stored as MP4 for download. Needs
    /// `options.mux` ([`MuxOptions`]).
    Mux,
    /// Diagnostic analysis that does no media work (it may wait `options.noop_ms`): for load
    /// tests and operational drills. Accepted only where the api allows diagnostics.
    Noop,
    /// Internal: trains the hashtag classifier and the virality regressor and decides their
    /// promotion. Only the scheduler and operators enqueue it; the api refuses it from clients.
    Train,
    /// A virality estimate from the promoted regressor: the predicted virality, its percentile
    /// among pulled videos, and an expected view range.
    Virality,
    /// Content safety from the open-NSFW model over the sampled frames: a per-video score, the
    /// worst frames with their times, and a flag against the configured threshold.
    Safety,
    /// Which known track plays under the video: the song catalogue's tracks matched by
    /// acoustic fingerprint (and a hosted recognition service when configured), with where in
    /// the track the video's sound comes from and a confidence.
    Song,
    /// Internal: fingerprints an audio upload (or a pulled sound's audio) into the song
    /// catalogue. Operators enqueue it through the admin routes.
    AddSong,
}

impl Analysis {
    /// Every analysis, internal ones included, in the order documentation lists them.
    pub const ALL: [Self; 15] = [
        Self::Probe,
        Self::Quality,
        Self::Ocr,
        Self::Audio,
        Self::Transcript,
        Self::Embeddings,
        Self::Hashtags,
        Self::Music,
        Self::Virality,
        Self::Safety,
        Self::Song,
        Self::Mux,
        Self::Noop,
        Self::Train,
        Self::AddSong,
    ];

    /// The analyses a client may ask for: all but the internal ones.
    pub fn requestable() -> impl Iterator<Item = Self> {
        Self::ALL.into_iter().filter(|a| !a.is_internal())
    }

    /// Name used in requests, results and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Probe => "probe",
            Self::Quality => "quality",
            Self::Ocr => "ocr",
            Self::Audio => "audio",
            Self::Transcript => "transcript",
            Self::Embeddings => "embeddings",
            Self::Hashtags => "hashtags",
            Self::Music => "music",
            Self::Mux => "mux",
            Self::Noop => "noop",
            Self::Train => "train",
            Self::Virality => "virality",
            Self::Safety => "safety",
            Self::Song => "song",
            Self::AddSong => "add_song",
        }
    }

    /// Parses a stored analysis name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "probe" => Some(Self::Probe),
            "quality" => Some(Self::Quality),
            "ocr" => Some(Self::Ocr),
            "audio" => Some(Self::Audio),
            "transcript" => Some(Self::Transcript),
            "embeddings" => Some(Self::Embeddings),
            "hashtags" => Some(Self::Hashtags),
            "music" => Some(Self::Music),
            "mux" => Some(Self::Mux),
            "noop" => Some(Self::Noop),
            "train" => Some(Self::Train),
            "virality" => Some(Self::Virality),
            "safety" => Some(Self::Safety),
            "song" => Some(Self::Song),
            "add_song" => Some(Self::AddSong),
            _ => None,
        }
    }

    /// Whether only the system enqueues it.
    pub fn is_internal(self) -> bool {
        self.visibility() == crate::catalogue::Visibility::Internal
    }

    /// Whether the analysis exists for operations rather than for creators.
    pub fn is_diagnostic(self) -> bool {
        self.visibility() == crate::catalogue::Visibility::Diagnostic
    }
}

/// The documented schema lists only what clients may request: internal analyses (`train`) are
/// refused from clients, so a client generated from the document never offers them.
impl utoipa::PartialSchema for Analysis {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("An analysis a job can ask for."))
            .enum_values(Some(Self::requestable().map(Self::as_str)))
            .into()
    }
}

impl ToSchema for Analysis {}

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
    /// More streams (video, audio, subtitle, data) than the configured limit.
    TooManyStreams,
    /// The job references a video that is gone.
    VideoMissing,
    /// The job's stored request cannot be understood by this worker.
    InvalidRequest,
    /// Transient faults persisted through every attempt.
    RetriesExhausted,
    /// Processing did not finish within its deadline.
    Timeout,
    /// The upload is an audio file where a video is needed.
    NotAVideo,
    /// The audio track a job names is gone.
    AudioMissing,
    /// The audio track cannot be decoded, has no audio stream, or starts past its end.
    InvalidAudio,
    /// The video stream's codec cannot be copied into MP4 (only H.264, HEVC, AV1, VP9 and
    /// MPEG-4 Part 2 can); reelq does not re-encode video.
    UnsupportedVideoCodec,
}

impl JobErrorCode {
    /// Every code, in the order the documentation lists them.
    pub const ALL: [Self; 13] = [
        Self::InvalidMedia,
        Self::NoVideoStream,
        Self::VideoTooLong,
        Self::ResolutionTooHigh,
        Self::TooManyStreams,
        Self::VideoMissing,
        Self::InvalidRequest,
        Self::RetriesExhausted,
        Self::Timeout,
        Self::NotAVideo,
        Self::AudioMissing,
        Self::InvalidAudio,
        Self::UnsupportedVideoCodec,
    ];

    /// The code as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMedia => "invalid_media",
            Self::NoVideoStream => "no_video_stream",
            Self::VideoTooLong => "video_too_long",
            Self::ResolutionTooHigh => "resolution_too_high",
            Self::TooManyStreams => "too_many_streams",
            Self::VideoMissing => "video_missing",
            Self::InvalidRequest => "invalid_request",
            Self::RetriesExhausted => "retries_exhausted",
            Self::Timeout => "timeout",
            Self::NotAVideo => "not_a_video",
            Self::AudioMissing => "audio_missing",
            Self::InvalidAudio => "invalid_audio",
            Self::UnsupportedVideoCodec => "unsupported_video_codec",
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
    fn error_codes_are_distinct_snake_case_and_all_listed() {
        // Exhaustive: a new code does not compile until it has a place here, and `ALL` has a
        // fixed length, so it must be listed there too.
        fn position(c: JobErrorCode) -> usize {
            use JobErrorCode::*;
            match c {
                InvalidMedia => 0,
                NoVideoStream => 1,
                VideoTooLong => 2,
                ResolutionTooHigh => 3,
                TooManyStreams => 4,
                VideoMissing => 5,
                InvalidRequest => 6,
                RetriesExhausted => 7,
                Timeout => 8,
                NotAVideo => 9,
                AudioMissing => 10,
                InvalidAudio => 11,
                UnsupportedVideoCodec => 12,
            }
        }
        for (i, c) in JobErrorCode::ALL.iter().enumerate() {
            assert_eq!(position(*c), i, "{c}");
        }
        let names: std::collections::BTreeSet<&str> = JobErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), JobErrorCode::ALL.len(), "distinct");
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')), "{names:?}");
    }

    #[test]
    fn only_final_states_are_terminal() {
        assert!(!JobStatus::Queued.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
        assert!(JobStatus::Cancelled.is_terminal());
    }

    #[test]
    fn every_analysis_is_listed_once_and_only_internal_ones_are_not_requestable() {
        let names: std::collections::BTreeSet<&str> = Analysis::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), Analysis::ALL.len());
        assert!(names.iter().all(|n| Analysis::parse(n).is_some()));
        let requestable: Vec<Analysis> = Analysis::requestable().collect();
        assert!(!requestable.contains(&Analysis::Train));
        assert_eq!(requestable.len(), Analysis::ALL.iter().filter(|a| !a.is_internal()).count());
        let schema = serde_json::to_value(<Analysis as utoipa::PartialSchema>::schema()).expect("schema");
        let listed: Vec<&str> = schema["enum"].as_array().expect("enum").iter().filter_map(|v| v.as_str()).collect();
        assert_eq!(listed, requestable.iter().map(|a| a.as_str()).collect::<Vec<_>>());
    }

    #[test]
    fn analysis_names_match_serde() {
        for a in Analysis::ALL {
            let json = serde_json::to_string(&a).expect("serialize");
            assert_eq!(json, format!("\"{}\"", a.as_str()));
            assert_eq!(Analysis::parse(a.as_str()), Some(a));
        }
    }
}

/// Recognises a container from a file's first bytes (at least 64 are best): the videos reelq
/// analyses and the audio tracks it can put under them (see [`MediaKind::of_container`]).
/// Only containers reelq accepts are named; anything else is `None`.
pub fn sniff_container(head: &[u8]) -> Option<&'static str> {
    // ISO BMFF (MP4, MOV, M4A): a box size then `ftyp`, whose major brand tells QuickTime and
    // iTunes audio apart.
    if head.len() >= 12 && &head[4..8] == b"ftyp" {
        return Some(match &head[8..12] {
            b"qt  " => "mov",
            b"M4A " | b"M4B " => "m4a",
            _ => "mp4",
        });
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
    sniff_audio(head)
}

/// Audio-only containers: WAV, FLAC, Ogg, MP3 (with an ID3 tag or from its first frame
/// header) and raw AAC in ADTS frames.
fn sniff_audio(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        return Some("wav");
    }
    if head.starts_with(b"fLaC") {
        return Some("flac");
    }
    if head.starts_with(b"OggS") {
        return Some("ogg");
    }
    if head.len() >= 10 && head.starts_with(b"ID3") && head[3] < 0xFF {
        return Some("mp3");
    }
    if head.len() >= 4 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        let layer = (head[1] >> 1) & 0b11;
        let version = (head[1] >> 3) & 0b11;
        if layer == 0 && head[1] & 0xF6 == 0xF0 {
            // ADTS: MPEG-4/2 AAC, sampling frequency index within the table.
            return ((head[2] >> 2) & 0x0F < 13).then_some("aac");
        }
        let bitrate = head[2] >> 4;
        let rate = (head[2] >> 2) & 0b11;
        // MPEG audio: a real layer and version, and neither a free nor a bad bit rate or rate.
        if layer != 0 && version != 1 && bitrate != 0 && bitrate != 0x0F && rate != 0b11 {
            return Some("mp3");
        }
    }
    None
}

/// Whether an upload is a video (analysable, and the base of a `mux`) or an audio track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// MP4, MOV, WebM, Matroska.
    Video,
    /// MP3, WAV, M4A, AAC, FLAC, Ogg.
    Audio,
}

impl MediaKind {
    /// The containers [`sniff_container`] names that hold an audio track; every other one is a
    /// video. The job insert reads the same list, so the database and this type agree.
    pub const AUDIO_CONTAINERS: [&'static str; 6] = ["mp3", "wav", "m4a", "aac", "flac", "ogg"];

    /// The kind of a container named by [`sniff_container`]. An MP4 or Matroska file holding
    /// only audio still counts as a video here; the worker's probe then finds no video stream.
    pub fn of_container(container: &str) -> Self {
        if Self::AUDIO_CONTAINERS.contains(&container) { Self::Audio } else { Self::Video }
    }

    /// Name used in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
        }
    }
}

/// How a `mux` job treats the video's own audio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MuxMode {
    /// Only the new track is heard.
    #[default]
    Replace,
    /// The new track plays under the original audio (at `original_gain_db`).
    Mix,
}

/// `options.mux` of a job with the `mux` analysis. Validated by the api at submission; the
/// worker parses the same type from the stored options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuxOptions {
    /// An upload of the same tenant holding the track (an audio file, or a video whose audio
    /// is used).
    pub audio_id: Uuid,
    /// `replace` (default) or `mix`.
    #[serde(default)]
    pub mode: MuxMode,
    /// Gain applied to the new track, in dB (−60 to +20; default 0).
    #[serde(default)]
    pub gain_db: f64,
    /// Gain applied to the video's own audio in `mix` mode, in dB (−60 to +20; default −12).
    #[serde(default = "MuxOptions::default_original_gain_db")]
    pub original_gain_db: f64,
    /// Where in the video the track starts, in seconds (silence before it; default 0).
    #[serde(default)]
    pub offset_secs: f64,
    /// Where in the track playback begins, in seconds (default 0).
    #[serde(default)]
    pub track_start_secs: f64,
}

impl MuxOptions {
    /// Gains outside this range, in dB, are refused: quieter is silence, louder is distortion.
    pub const GAIN_RANGE_DB: (f64, f64) = (-60.0, 20.0);
    /// Largest offset or track start, in seconds.
    pub const MAX_SECS: f64 = 86_400.0;

    fn default_original_gain_db() -> f64 {
        -12.0
    }

    /// Reads and checks `options.mux` of a job; the error is a sentence for the client.
    pub fn from_job_options(options: &serde_json::Map<String, serde_json::Value>) -> Result<Self, String> {
        let value = options.get("mux").ok_or("the mux analysis needs options.mux with at least an audio_id")?;
        let parsed: Self = serde_json::from_value(value.clone()).map_err(|e| format!("options.mux: {e}"))?;
        parsed.validate()?;
        Ok(parsed)
    }

    /// Checks the numbers are finite and in range.
    pub fn validate(&self) -> Result<(), String> {
        let (lo, hi) = Self::GAIN_RANGE_DB;
        for (name, v) in [("gain_db", self.gain_db), ("original_gain_db", self.original_gain_db)] {
            if !v.is_finite() || !(lo..=hi).contains(&v) {
                return Err(format!("options.mux.{name} must be between {lo} and {hi} dB"));
            }
        }
        for (name, v) in [("offset_secs", self.offset_secs), ("track_start_secs", self.track_start_secs)] {
            if !v.is_finite() || !(0.0..=Self::MAX_SECS).contains(&v) {
                return Err(format!("options.mux.{name} must be between 0 and {} seconds", Self::MAX_SECS));
            }
        }
        Ok(())
    }
}

/// Object key of a `mux` job's output: per tenant and per job, so a retried job overwrites its
/// own file and nothing else.
pub fn mux_output_key(tenant_id: Uuid, job_id: Uuid) -> String {
    format!("outputs/{tenant_id}/{job_id}/mux.mp4")
}

/// Bytes [`sniff_container`] wants to see.
pub const SNIFF_LEN: usize = 64;

/// Hashtags that fit any video and say nothing about its topic: never suggested as a topic,
/// never learned as a wider tag of another.
pub const GENERIC_HASHTAGS: &[&str] = &["#fyp", "#foryou", "#foryoupage", "#viral", "#trending", "#tiktok", "#explore", "#xyzbca", "#fy"];

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
    fn recognises_audio_tracks() {
        use super::MediaKind;
        let cases: [(&[u8], &str); 7] = [
            (b"ID3\x04\0\0\0\0\0\x21rest", "mp3"),
            (&[0xFF, 0xFB, 0x90, 0x64, 0, 0], "mp3"),
            (&[0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F], "aac"),
            (b"RIFF\x24\0\0\0WAVEfmt ", "wav"),
            (b"fLaC\0\0\0\x22", "flac"),
            (b"OggS\0\x02\0\0", "ogg"),
            (b"\0\0\0\x20ftypM4A \0\0\x02\0", "m4a"),
        ];
        for (head, want) in cases {
            assert_eq!(sniff_container(head), Some(want));
            assert_eq!(MediaKind::of_container(want), MediaKind::Audio);
        }
        assert_eq!(MediaKind::of_container("mp4"), MediaKind::Video);
        // A frame sync with a reserved version or a bad bit rate is not MP3.
        assert_eq!(sniff_container(&[0xFF, 0xEB, 0x90, 0x64]), None);
        assert_eq!(sniff_container(&[0xFF, 0xFB, 0xF0, 0x64]), None);
    }

    #[test]
    fn mux_options_defaults_and_limits() {
        use super::{MuxMode, MuxOptions};
        let id = uuid::Uuid::nil();
        let opts = |v: serde_json::Value| {
            let mut m = serde_json::Map::new();
            m.insert("mux".into(), v);
            MuxOptions::from_job_options(&m)
        };
        let o = opts(serde_json::json!({ "audio_id": id })).expect("valid");
        assert_eq!(o.mode, MuxMode::Replace);
        assert_eq!(o.original_gain_db, -12.0);
        assert_eq!(o.offset_secs, 0.0);
        let o = opts(serde_json::json!({ "audio_id": id, "mode": "mix", "gain_db": -3.5, "offset_secs": 1.5 })).expect("valid");
        assert_eq!(o.mode, MuxMode::Mix);
        assert!(opts(serde_json::json!({ "mode": "mix" })).is_err());
        assert!(opts(serde_json::json!({ "audio_id": id, "mode": "blend" })).is_err());
        assert!(opts(serde_json::json!({ "audio_id": id, "gain_db": 40.0 })).is_err());
        assert!(opts(serde_json::json!({ "audio_id": id, "offset_secs": -1.0 })).is_err());
        assert!(opts(serde_json::json!({ "audio_id": id, "volume": 1 })).is_err());
        assert!(MuxOptions::from_job_options(&serde_json::Map::new()).is_err());
    }

    #[test]
    fn rejects_everything_else() {
        assert_eq!(sniff_container(b"GIF89a......"), None);
        assert_eq!(sniff_container(b"\x89PNG\r\n\x1a\n...."), None);
        assert_eq!(sniff_container(b"hello world, not a video"), None);
        assert_eq!(sniff_container(b""), None);
    }
}
