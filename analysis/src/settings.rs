//! The analysis sections of the configuration: `[media]` (limits, from `reelq-media`),
//! `[inference]` (ONNX Runtime and the model pack) and `[hashtags]` (ranking). The worker and
//! `reelq analyze` read the same sections from the same files and `REELQ__` variables.

use serde::Deserialize;

use reelq_settings::{ConfigError, Validate};

pub use reelq_media::MediaSettings;

/// The sections an analysis run reads; other sections of the files are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AnalysisSettings {
    pub media: MediaSettings,
    pub inference: InferenceSettings,
    pub hashtags: HashtagSettings,
}

impl Validate for AnalysisSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        validate(&self.media, &self.inference, &self.hashtags)
    }
}

/// Above zero (NaN is not).
fn positive(x: f64) -> bool {
    x > 0.0
}

/// Checks the analysis sections, naming the first key at fault.
pub fn validate(media: &MediaSettings, inference: &InferenceSettings, hashtags: &HashtagSettings) -> Result<(), ConfigError> {
    if !positive(media.max_duration_secs) {
        return Err(ConfigError::invalid("media.max_duration_secs", "must be positive"));
    }
    if !matches!(inference.device.as_str(), "cpu" | "cuda") {
        return Err(ConfigError::invalid("inference.device", "must be cpu or cuda"));
    }
    if inference.speech_model.trim().is_empty() {
        return Err(ConfigError::invalid("inference.speech_model", "must name a model of the pack"));
    }
    if inference.safety_model.trim().is_empty() {
        return Err(ConfigError::invalid("inference.safety_model", "must name a model of the pack"));
    }
    if !(inference.safety_threshold > 0.0 && inference.safety_threshold <= 1.0) {
        return Err(ConfigError::invalid("inference.safety_threshold", "must be above 0 and at most 1"));
    }
    if inference.ocr_batch_max_size == Some(0) {
        return Err(ConfigError::invalid("inference.ocr_batch_max_size", "must be at least 1"));
    }
    if inference.batch_max_size == 0 {
        return Err(ConfigError::invalid("inference.batch_max_size", "must be at least 1"));
    }
    if hashtags.count == 0 || hashtags.count > 50 {
        return Err(ConfigError::invalid("hashtags.count", "must be between 1 and 50"));
    }
    if !(0.0..=1.0).contains(&hashtags.benchmark_tolerance) {
        return Err(ConfigError::invalid("hashtags.benchmark_tolerance", "must be between 0 and 1"));
    }
    if let Some(min) = hashtags.min_score
        && !(0.0..1.0).contains(&min)
    {
        return Err(ConfigError::invalid("hashtags.min_score", "must be at least 0 and below 1"));
    }
    if let Some(min) = hashtags.min_speech_logprob
        && !(min.is_finite() && min <= 0.0)
    {
        return Err(ConfigError::invalid("hashtags.min_speech_logprob", "must be a log-probability: 0 or below"));
    }
    if inference.intra_threads == 0 {
        return Err(ConfigError::invalid("inference.intra_threads", "must be at least 1"));
    }
    if !positive(inference.ocr_interval_secs) {
        return Err(ConfigError::invalid("inference.ocr_interval_secs", "must be positive"));
    }
    if media.max_decode_secs == 0 {
        return Err(ConfigError::invalid("media.max_decode_secs", "must be positive"));
    }
    if media.max_pixels == 0 {
        return Err(ConfigError::invalid("media.max_pixels", "must be positive"));
    }
    Ok(())
}

/// The `[hashtags]` section: how suggestions are ranked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashtagSettings {
    /// Suggestions per video.
    pub count: usize,
    /// Most generic tags (#fyp, #viral) among them; they only fill slots no specific tag wants.
    pub max_generic: usize,
    /// How many of a suggested tag's variants (#surfer and #surf after #surfing) may follow it
    /// as suggestions of their own; 0 suggests each vocabulary entry once.
    pub variants: usize,
    /// Least score (the chance that a creator would post the tag, 0–1, as suggestions show
    /// it) a suggestion needs. Unset: the threshold fitted with the ranker's weights.
    pub min_score: Option<f32>,
    /// Speech the recogniser was less sure of than this (a segment's mean token
    /// log-probability) is left out of the text the hashtags and the text embedding read; the
    /// transcript keeps it. Unset: all speech is read.
    pub min_speech_logprob: Option<f32>,
    /// A trained classifier artifact (`reelq-hashtag-linear/1` JSON) to use until the model
    /// registry promotes one. Re-read when the file changes.
    pub classifier: Option<String>,
    /// A hashtag benchmark folder (`tools/hashtag-bench/make-clips` output) that a newly trained
    /// classifier or refitted ranker is also judged on: it is promoted only if its P@5 on the
    /// held-out half is no more than `benchmark_tolerance` below the version in use's (or no
    /// classifier's).
    pub benchmark: Option<String>,
    pub benchmark_tolerance: f64,
    /// Embed the vocabulary's descriptions when the worker starts, in the background, rather
    /// than on its first hashtag job.
    pub warm_up: bool,
}

impl HashtagSettings {
    /// How a pipeline with these settings ranks with `ranker`: its threshold unless
    /// `min_score` (a chance, as suggestions show it) overrides it.
    pub fn rank_options(&self, ranker: &crate::hashtags::Ranker) -> crate::hashtags::RankOptions {
        crate::hashtags::RankOptions {
            count: self.count,
            max_generic: self.max_generic,
            min_score: self.min_score.map_or(ranker.min_score, |chance| ranker.score_for_chance(chance)),
            content_phrases: true,
            variants: self.variants,
        }
    }
}

impl Default for HashtagSettings {
    fn default() -> Self {
        Self {
            count: 10,
            max_generic: 1,
            variants: 2,
            min_score: None,
            min_speech_logprob: None,
            classifier: None,
            benchmark: None,
            benchmark_tolerance: 0.01,
            warm_up: true,
        }
    }
}

/// The `[inference]` section: ONNX Runtime and the model pack.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InferenceSettings {
    /// Path of `libonnxruntime.so.1.31.1` (`ORT_DYLIB_PATH` when unset, else the copy
    /// `tools/models/build-pack` puts in `.data/onnxruntime`).
    pub library: Option<String>,
    /// Folder of the model pack (`REELQ_MODELS_DIR` when unset, else `.data/models`).
    pub models_dir: Option<String>,
    /// A model pack in the storage bucket (for example `models/pack-2026-11`): copied into
    /// `models_dir` before the first job that needs a model. Unset: the folder alone.
    pub models_s3_prefix: Option<String>,
    /// Threads each model call may use.
    pub intra_threads: usize,
    /// `cpu`, or `cuda` (needs the `cuda` build and the GPU library; never falls back silently).
    pub device: String,
    /// GPU used when `device = "cuda"`.
    pub cuda_device_id: i32,
    /// Seconds between frames read for on-screen text (and embedded by the image encoder).
    pub ocr_interval_secs: f64,
    /// Image/text encoder pair for image embeddings and zero-shot visual hashtags: the prefix
    /// of the pack's `<name>-image` and `<name>-text` models (for example `clip-vit-b32`).
    /// Unset: no image embeddings.
    pub clip_model: Option<String>,
    /// Speech recognition model of the pack: `whisper-tiny-en` (English), or `whisper-base`
    /// (multilingual, with language detection; `build-pack --with whisper-base`).
    pub speech_model: String,
    /// Audio tagger of the pack (AudioSet-style labels) for the `audio` analysis. Unset: none.
    pub audio_tagger: Option<String>,
    /// Most frames in one image-encoder or OCR call; frames of concurrent jobs share calls.
    pub batch_max_size: usize,
    /// Most frames in one OCR call. Unset: 1 on the CPU, where batching the text reader gives
    /// no speed and doubles its memory, and `batch_max_size` on CUDA.
    pub ocr_batch_max_size: Option<usize>,
    /// Longest a frame waits for others to fill its batch, in milliseconds.
    pub batch_max_wait_ms: u64,
    /// How often the worker asks the model registry for newly promoted (or rolled back)
    /// versions, in milliseconds; a promotion takes effect within this time, without a restart.
    pub registry_refresh_ms: u64,
    /// Content-safety model of the pack for the `safety` analysis.
    pub safety_model: String,
    /// A video whose worst frame scores at least this (0–1) is flagged by `safety`.
    pub safety_threshold: f32,
}

impl InferenceSettings {
    /// Most frames in one OCR call on this device.
    pub fn ocr_batch(&self) -> usize {
        self.ocr_batch_max_size.unwrap_or(if self.device == "cuda" { self.batch_max_size } else { 1 })
    }
}

impl Default for InferenceSettings {
    fn default() -> Self {
        Self {
            library: None,
            models_dir: None,
            models_s3_prefix: None,
            intra_threads: 2,
            device: "cpu".to_owned(),
            cuda_device_id: 0,
            ocr_interval_secs: 1.0,
            clip_model: None,
            speech_model: "whisper-tiny-en".to_owned(),
            audio_tagger: None,
            batch_max_size: 16,
            ocr_batch_max_size: None,
            batch_max_wait_ms: 20,
            registry_refresh_ms: 10_000,
            safety_model: "open-nsfw".to_owned(),
            safety_threshold: 0.8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(hashtags: HashtagSettings) -> Result<(), String> {
        validate(&MediaSettings::default(), &InferenceSettings::default(), &hashtags).map_err(|e| e.to_string())
    }

    #[test]
    fn the_least_score_is_a_chance_as_suggestions_show_it() {
        let ranker = crate::hashtags::Ranker::shipped();
        let fitted = HashtagSettings::default().rank_options(ranker).min_score;
        assert_eq!(fitted, ranker.min_score);
        let one_in_twenty = HashtagSettings { min_score: Some(0.05), ..HashtagSettings::default() }.rank_options(ranker).min_score;
        assert!((one_in_twenty - ranker.min_score).abs() < 0.01, "{one_in_twenty} vs the fitted {}", ranker.min_score);
        let stricter = HashtagSettings { min_score: Some(0.3), ..HashtagSettings::default() }.rank_options(ranker).min_score;
        assert!((ranker.chance(stricter) - 0.3).abs() < 1e-4 && stricter > ranker.min_score, "{stricter}");
    }

    #[test]
    fn the_least_speech_log_probability_is_a_log_probability() {
        for ok in [None, Some(0.0), Some(-0.8), Some(-20.0)] {
            assert_eq!(check(HashtagSettings { min_speech_logprob: ok, ..HashtagSettings::default() }), Ok(()), "{ok:?}");
        }
        for bad in [0.5, f32::NAN, f32::NEG_INFINITY] {
            let err = check(HashtagSettings { min_speech_logprob: Some(bad), ..HashtagSettings::default() }).expect_err("rejected");
            assert!(err.contains("hashtags.min_speech_logprob"), "{bad}: {err}");
        }
    }
}
