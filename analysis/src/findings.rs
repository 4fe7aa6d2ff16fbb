//! What each analysis returns, typed. A finding is serialised once, by [`AnalysisOutput::payload`],
//! into the JSON stored as the job's result, sent in webhooks and printed by `reelq analyze`; the
//! golden tests in `tests/golden.rs` pin those shapes.

use serde::Serialize;
use serde_json::Value;

use reelq_inference::ModelId;
use reelq_inference::ocr::OnScreenText;
use reelq_inference::tagger::AudioTag;
use reelq_inference::vad::SpeechSegment;
use reelq_inference::whisper::TranscriptSegment;
use reelq_learn::engagement::music::MusicScore;
use reelq_learn::engagement::virality::ViralityModel;
use reelq_learn::engagement::virality::regressor::Estimate;
use reelq_media::probe::Probe;
use reelq_media::quality::QualityReport;

use crate::AnalysisError;
use crate::hashtags::Suggestion;

/// A model a finding came from, as listed in the result's `model_versions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelRef {
    pub name: String,
    pub version: String,
    /// The weights' checksum, for models of the pack; trained artifacts are named by version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl From<&ModelId> for ModelRef {
    fn from(m: &ModelId) -> Self {
        Self { name: m.name.clone(), version: m.version.clone(), sha256: Some(m.sha256.clone()) }
    }
}

impl ModelRef {
    /// A trained artifact of the registry (`hashtag-classifier`, `virality-regressor`).
    pub fn trained(name: &str, version: &str) -> Self {
        Self { name: name.to_owned(), version: version.to_owned(), sha256: None }
    }
}

/// `ocr`: the text seen on screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcrFinding {
    pub texts: Vec<OnScreenText>,
    /// Frames looked at (one every `inference.ocr_interval_secs`).
    pub frames_read: usize,
    /// Frames the text was recognised on; the others showed the same text as the frame before
    /// them and took its reading.
    pub frames_recognised: usize,
}

/// `audio`: speech activity and what the sound is made of.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioFinding {
    pub has_audio: bool,
    /// Seconds of speech over seconds of audio, 0–1.
    pub speech_ratio: f32,
    pub segments: Vec<SpeechSegment>,
    /// Seconds of audio (absent without audio).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<SoundProfile>,
    /// The audio tagger's best labels, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<AudioTag>>,
}

/// Shares of the audio's time that are speech, other sound (in short videos mostly music) and
/// silence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SoundProfile {
    pub speech: f32,
    pub music: f32,
    pub silence: f32,
}

/// `transcript`: what is said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TranscriptFinding {
    /// ISO 639-1 code, empty when nothing was heard.
    pub language: String,
    pub text: String,
    pub segments: Vec<TranscriptSegment>,
}

/// `embeddings`: the vectors stored for search and training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Embeddings {
    pub text: Option<EmbeddingVector>,
    pub image: Option<EmbeddingVector>,
}

/// One embedding and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EmbeddingVector {
    pub model: ModelId,
    pub dim: usize,
    pub vector: Vec<f32>,
    /// What was embedded: `transcript`, `on_screen_text`, `caption`, or `frames`.
    pub sources: Vec<&'static str>,
    /// Characters of text or frames embedded.
    pub items: usize,
}

/// `hashtags`: ranked suggestions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HashtagFinding {
    pub suggestions: Vec<Suggestion>,
    /// The classifier version used, if any.
    pub classifier_version: Option<String>,
    pub vocabulary_size: usize,
    /// What the suggestions could not see, for people: a video with no speech, on-screen text
    /// or caption gets none rather than guesses, unless an image model is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
}

/// `music`: sounds that fit the video.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MusicFinding {
    /// The specific suggested hashtags (without `#`) that chose the sounds.
    pub hashtags: Vec<String>,
    /// The region asked for, upper case.
    pub region: Option<String>,
    /// Sounds that fit, best first; the sound the video already uses is not among them.
    pub recommendations: Vec<MusicScore>,
    /// Pulled videos read.
    pub videos_considered: usize,
    /// The known track the video already uses (`song`), and how it fares against the sounds
    /// that fit its hashtags; null when none was recognised.
    pub current_sound: Option<CurrentSound>,
}

/// The recognised track under the video, as `music` sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CurrentSound {
    pub title: String,
    pub artist: String,
    /// The pulled sound (TikTok music id) it is, when known.
    pub music_id: Option<String>,
    /// Its rank (1 is best) among the sounds of pulled videos carrying the video's hashtags;
    /// null when no such video uses it.
    pub rank: Option<usize>,
    /// Its weighted engagement among those videos (0 when none uses it).
    pub score: f64,
    /// Pulled videos with the video's hashtags that use it.
    pub videos: u32,
    /// For people: whether it fits, and what the alternatives offer.
    pub advice: String,
}

/// `virality`: the promoted regressor's estimate, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ViralityFinding {
    pub estimate: Option<Estimate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<String>,
    /// Why there is no estimate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The engagement correlations the model was trained with (with an estimate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlations: Option<ViralityModel>,
    /// Its held-out Spearman correlation (with an estimate; null when unmeasured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_spearman: Option<Option<f64>>,
}

/// `safety`: how likely the frames are to be not safe for work.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SafetyFinding {
    /// The video's score, 0–1: the highest frame score, so one explicit moment is enough.
    pub score: f32,
    /// The mean frame score, 0–1.
    pub mean_score: f32,
    /// Whether `score` reached `threshold`.
    pub flagged: bool,
    /// The threshold it was held to (`inference.safety_threshold`).
    pub threshold: f32,
    /// The highest-scoring frames, worst first (at most 3).
    pub worst_frames: Vec<FrameScore>,
    /// Frames scored (one every `inference.ocr_interval_secs`).
    pub frames_scored: usize,
}

/// One frame's safety score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameScore {
    /// Seconds from the start.
    pub time_secs: f64,
    pub score: f32,
}

/// The finding of one analysis.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Finding {
    Probe(Probe),
    Quality(QualityReport),
    Ocr(OcrFinding),
    Audio(AudioFinding),
    Transcript(TranscriptFinding),
    Embeddings(Embeddings),
    Hashtags(HashtagFinding),
    Music(MusicFinding),
    Virality(ViralityFinding),
    Safety(SafetyFinding),
    Song(crate::song::SongFinding),
}

/// A finding and the models behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOutput {
    pub finding: Finding,
    pub models: Vec<ModelRef>,
}

impl AnalysisOutput {
    /// A finding no model contributed to.
    pub fn plain(finding: Finding) -> Self {
        Self { finding, models: Vec::new() }
    }

    /// The finding as stored and sent.
    pub fn payload(&self) -> Result<Value, AnalysisError> {
        to_json(&self.finding)
    }

    /// The models as stored in `model_versions`.
    pub fn model_versions(&self) -> Result<Value, AnalysisError> {
        to_json(&self.models)
    }
}

fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Value, AnalysisError> {
    serde_json::to_value(value).map_err(|e| AnalysisError::Unavailable(format!("result could not be encoded: {e}")))
}
