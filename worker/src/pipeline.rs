//! The analyses of one video, shared by queued jobs and local `reelq analyze`: the video is
//! decoded once, with the union of what the requested analyses need, and each analysis then
//! reads the decoded frames, statistics and audio, and what earlier analyses found (the
//! transcript and on-screen text feed the embeddings, which feed the hashtags).
//!
//! Everything here blocks: callers run it off the async runtime.

pub mod hashtags;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use reelq_shared::domain::{Analysis, JobErrorCode};
use reelq_shared::metrics;

use crate::inference::image::{RgbImage, RgbView};
use crate::inference::ocr::OnScreenText;
use crate::inference::vad::VadOptions;
use crate::inference::whisper::{TranscribeOptions, Transcript};
use crate::inference::{InferenceError, ModelId};
use crate::media::decode::{self, DecodeError, DecodeLimits, DecodeOptions, DecodeOutput, FrameSize, Sampling};
use crate::media::probe::{MediaError, Probe};
use crate::media::quality;
use crate::models::Models;
use crate::settings::{HashtagSettings, InferenceSettings, Settings};
use hashtags::{RankOptions, Signals, SpanSource, TextSpan, VocabSource, Vocabulary};

/// A job's failure, decided where it happens.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input is at fault: fail now, never retry.
    #[error("{message}")]
    Fatal { code: JobErrorCode, message: String },
    /// The system is at fault (storage, database, broker, a model that did not load): retry
    /// with backoff.
    #[error("{0}")]
    Retryable(String),
    /// The job was cancelled or its lease was lost: stop and write nothing.
    #[error("stopped: {0}")]
    Stopped(&'static str),
}

impl From<MediaError> for JobError {
    fn from(e: MediaError) -> Self {
        Self::Fatal { code: e.code, message: e.message }
    }
}

impl From<DecodeError> for JobError {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Stopped => Self::Stopped("cancelled"),
            e if e.is_retryable() => Self::Retryable(e.to_string()),
            e => Self::Fatal { code: e.code().unwrap_or(JobErrorCode::InvalidMedia), message: e.to_string() },
        }
    }
}

impl From<InferenceError> for JobError {
    fn from(e: InferenceError) -> Self {
        if e.is_retryable() {
            Self::Retryable(format!("model: {e}"))
        } else {
            Self::Fatal { code: JobErrorCode::InvalidMedia, message: e.to_string() }
        }
    }
}

/// What one analysis produced.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalysisOutput {
    pub payload: Value,
    /// The models used, as `[{name, version}]`.
    pub models: Value,
}

/// The video a pipeline run works on.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub probe: Probe,
    /// The creator's caption, when the job has one: text evidence for hashtags.
    pub caption: Option<String>,
    /// Extra hashtags to consider (the trending list).
    pub trending: Vec<String>,
}

/// The analyses' settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub limits: DecodeLimits,
    pub inference: InferenceSettings,
    pub hashtags: HashtagSettings,
}

/// Runs analyses over decoded video.
pub struct Pipeline {
    models: Arc<Models>,
    settings: PipelineSettings,
    vocabulary: Vocabulary,
}

/// One video's decode and what the analyses have found so far.
pub struct Session {
    input: Input,
    decoded: Option<DecodeOutput>,
    ocr: Option<(Vec<OnScreenText>, ModelIds)>,
    transcript: Option<Transcript>,
    embeddings: Option<Embeddings>,
}

type ModelIds = Vec<ModelId>;

/// Most frames kept for the models (OCR, image encoder): 2 minutes at one per second, about
/// 180 MB of RGB for a 1080×1920 video at the 540-pixel short side.
const MODEL_FRAMES: usize = 120;

/// Most frames the image encoder embeds per video.
const IMAGE_FRAMES: usize = 16;

/// The embeddings of a video, as stored for the trainer.
#[derive(Debug, Clone, Serialize)]
pub struct Embeddings {
    pub text: Option<EmbeddingVector>,
    pub image: Option<EmbeddingVector>,
}

/// One embedding and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingVector {
    pub model: ModelId,
    pub dim: usize,
    pub vector: Vec<f32>,
    /// What was embedded: `transcript`, `on_screen_text`, `caption`, or `frames`.
    pub sources: Vec<&'static str>,
    /// Characters of text or frames embedded.
    pub items: usize,
}

impl PipelineSettings {
    /// The pipeline's part of the worker's settings.
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            limits: DecodeLimits {
                max_wall: std::time::Duration::from_secs(settings.media.max_decode_secs),
                max_pixels: settings.media.max_pixels,
                ..DecodeLimits::default()
            },
            inference: settings.inference.clone(),
            hashtags: settings.hashtags.clone(),
        }
    }
}

impl Pipeline {
    pub fn new(models: Arc<Models>, settings: PipelineSettings) -> Self {
        Self { models, settings, vocabulary: Vocabulary::curated() }
    }

    /// A pipeline with its own models, as the worker's settings describe them.
    pub fn from_settings(settings: &Settings) -> Self {
        let classifier = settings.hashtags.classifier.as_ref().map(PathBuf::from);
        let models = Arc::new(Models::new(settings.inference.clone()).with_classifier(classifier));
        Self::new(models, PipelineSettings::from_settings(settings))
    }

    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// The decode that serves every analysis in `analyses`, or `None` when none needs one.
    pub fn decode_options(&self, analyses: &[Analysis]) -> Option<DecodeOptions> {
        let needs = |set: &[Analysis]| analyses.iter().any(|a| set.contains(a));
        let frames_for_models = needs(&[Analysis::Ocr, Analysis::Embeddings, Analysis::Hashtags, Analysis::Music, Analysis::Virality]);
        let quality = needs(&[Analysis::Quality]);
        let audio = needs(&[Analysis::Quality, Analysis::Audio, Analysis::Transcript, Analysis::Embeddings, Analysis::Hashtags, Analysis::Music, Analysis::Virality]);
        if !frames_for_models && !quality && !audio {
            return None;
        }
        let mut opts = DecodeOptions {
            sampling: Sampling::Off,
            scenes: None,
            frame_stats: false,
            audio,
            limits: self.settings.limits.clone(),
            ..DecodeOptions::default()
        };
        if quality {
            let full = DecodeOptions::default();
            (opts.sampling, opts.frame_size, opts.scenes, opts.frame_stats) = (full.sampling, full.frame_size, full.scenes, full.frame_stats);
        }
        if frames_for_models {
            // Text needs detail: the short side at 540 reads captions a 224 square would blur.
            // The image encoder resizes these itself.
            opts.sampling = Sampling::EverySecs(self.settings.inference.ocr_interval_secs);
            opts.frame_size = FrameSize::ShortSide(540);
            // Frames are held until the models have read them: bound how many (a longer video
            // is read at a wider interval) so memory does not grow with the video's length.
            opts.limits.max_samples = opts.limits.max_samples.min(MODEL_FRAMES);
        }
        Some(opts)
    }

    /// Decodes the video once for `analyses`. Blocking.
    pub fn start(&self, input: Input, analyses: &[Analysis], should_stop: &dyn Fn() -> bool) -> Result<Session, JobError> {
        let decoded = match self.decode_options(analyses) {
            Some(opts) => {
                let started = Instant::now();
                let out = decode::decode(&input.path, &input.probe, &opts, should_stop)?;
                metrics::get().stage_seconds.with_label_values(&["decode"]).observe(started.elapsed().as_secs_f64());
                Some(out)
            }
            None => None,
        };
        Ok(Session { input, decoded, ocr: None, transcript: None, embeddings: None })
    }

    /// Runs one analysis over the session. Blocking.
    pub fn run(&self, session: &mut Session, analysis: Analysis) -> Result<AnalysisOutput, JobError> {
        let started = Instant::now();
        let out = match analysis {
            Analysis::Probe => AnalysisOutput { payload: to_json(&session.input.probe)?, models: json!([]) },
            Analysis::Quality => {
                let decoded = session.decoded()?;
                AnalysisOutput { payload: to_json(&quality::analyze(&session.input.probe, decoded))?, models: json!([]) }
            }
            Analysis::Ocr => {
                let frames = session.decoded()?.samples.len();
                let (texts, models) = self.ocr(session)?;
                AnalysisOutput { payload: json!({ "texts": texts, "frames_read": frames }), models: to_json(models)? }
            }
            Analysis::Audio => self.audio(session)?,
            Analysis::Transcript => {
                let t = self.transcript(session)?;
                let mut payload = to_json(t)?;
                if let Some(obj) = payload.as_object_mut() {
                    obj.remove("model");
                }
                AnalysisOutput { payload, models: to_json(&[&t.model])? }
            }
            Analysis::Embeddings => {
                let e = self.embeddings(session)?;
                let models: Vec<&ModelId> = e.text.iter().chain(e.image.iter()).map(|v| &v.model).collect();
                AnalysisOutput { payload: to_json(e)?, models: to_json(&models)? }
            }
            Analysis::Hashtags => self.hashtags(session)?,
            Analysis::Virality => self.virality(session)?,
            other => {
                return Err(JobError::Fatal {
                    code: JobErrorCode::InvalidRequest,
                    message: format!("the analysis `{}` does not run on decoded media", other.as_str()),
                });
            }
        };
        metrics::get().stage_seconds.with_label_values(&[analysis.as_str()]).observe(started.elapsed().as_secs_f64());
        Ok(out)
    }

    fn ocr<'s>(&self, session: &'s mut Session) -> Result<&'s (Vec<OnScreenText>, ModelIds), JobError> {
        if session.ocr.is_none() {
            let decoded = session.decoded()?;
            let frames = decoded
                .samples
                .iter()
                .map(|f| RgbView::new(&f.rgb, f.width, f.height).map(|v| (f.time_secs, v)))
                .collect::<Result<Vec<_>, _>>()?;
            let ocr = self.models.ocr()?;
            // Frames go through the batcher shared by every job of this process, which times
            // each model call and records its batch size.
            let batcher = self.models.ocr_batcher()?;
            let texts = ocr.read_frames_with(&frames, |views| batcher.submit_all_blocking(views.iter().map(RgbView::to_owned).collect()))?;
            session.ocr = Some((texts, ocr.models().to_vec()));
        }
        Ok(session.ocr.as_ref().expect("set above"))
    }

    fn audio(&self, session: &Session) -> Result<AnalysisOutput, JobError> {
        let Some(audio) = session.decoded()?.audio.as_ref().filter(|a| !a.samples.is_empty()) else {
            return Ok(AnalysisOutput { payload: json!({ "has_audio": false, "speech_ratio": 0.0, "segments": [] }), models: json!([]) });
        };
        let vad = self.models.vad()?;
        let started = Instant::now();
        let activity = vad.detect(&audio.samples, &VadOptions::default())?;
        metrics::get().inference_seconds.with_label_values(&["vad"]).observe(started.elapsed().as_secs_f64());
        let mut models = vec![activity.model.clone()];
        let profile = sound_profile(&audio.samples, &activity.segments);
        let tags = match self.models.audio_tagger()? {
            Some(tagger) => {
                let started = Instant::now();
                let tags = tagger.tag(&audio.samples)?;
                metrics::get().inference_seconds.with_label_values(&["audio_tagger"]).observe(started.elapsed().as_secs_f64());
                models.push(tagger.model());
                Some(tags.into_iter().take(10).collect::<Vec<_>>())
            }
            None => None,
        };
        let mut payload = to_json(&activity)?;
        if let Some(obj) = payload.as_object_mut() {
            obj.insert("has_audio".into(), Value::Bool(true));
            obj.insert("profile".into(), to_json(&profile)?);
            if let Some(tags) = tags {
                obj.insert("tags".into(), to_json(&tags)?);
            }
            obj.remove("model");
        }
        Ok(AnalysisOutput { payload, models: to_json(&models)? })
    }

    fn transcript<'s>(&self, session: &'s mut Session) -> Result<&'s Transcript, JobError> {
        if session.transcript.is_none() {
            let samples: &[f32] = session.decoded()?.audio.as_ref().map(|a| a.samples.as_slice()).unwrap_or(&[]);
            let whisper = self.models.whisper()?;
            let started = Instant::now();
            let t = whisper.transcribe(samples, &TranscribeOptions::default())?;
            metrics::get().inference_seconds.with_label_values(&["whisper"]).observe(started.elapsed().as_secs_f64());
            session.transcript = Some(t);
        }
        Ok(session.transcript.as_ref().expect("set above"))
    }

    /// The text the video carries: what is said, shown and written under it.
    fn spans(&self, session: &mut Session) -> Result<Vec<TextSpan>, JobError> {
        let mut spans = Vec::new();
        for s in &self.transcript(session)?.segments {
            spans.push(TextSpan { source: SpanSource::Transcript, text: s.text.clone(), time_secs: Some(s.start) });
        }
        for t in &self.ocr(session)?.0 {
            spans.push(TextSpan { source: SpanSource::OnScreenText, text: t.text.clone(), time_secs: t.frames.first().copied() });
        }
        if let Some(c) = session.input.caption.as_deref().filter(|c| !c.trim().is_empty()) {
            spans.push(TextSpan { source: SpanSource::Caption, text: c.to_owned(), time_secs: None });
        }
        Ok(spans)
    }

    fn embeddings<'s>(&self, session: &'s mut Session) -> Result<&'s Embeddings, JobError> {
        if session.embeddings.is_none() {
            let spans = self.spans(session)?;
            let mut sources: Vec<&'static str> = Vec::new();
            for s in &spans {
                let name = match s.source {
                    SpanSource::Transcript => "transcript",
                    SpanSource::OnScreenText => "on_screen_text",
                    SpanSource::Caption => "caption",
                };
                if !sources.contains(&name) {
                    sources.push(name);
                }
            }
            let text: String = spans.iter().map(|s| s.text.trim()).filter(|t| !t.is_empty()).collect::<Vec<_>>().join(". ");
            let text_vec = if text.is_empty() {
                None
            } else {
                let embedder = self.models.text_embedder()?;
                let started = Instant::now();
                let v = embedder.embed(&[text.as_str()])?.pop().unwrap_or_default();
                metrics::get().inference_seconds.with_label_values(&["text_embedding"]).observe(started.elapsed().as_secs_f64());
                Some(EmbeddingVector { model: embedder.model(), dim: v.len(), vector: v, sources, items: text.chars().count() })
            };
            let image_vec = self.image_embedding(session)?;
            session.embeddings = Some(Embeddings { text: text_vec, image: image_vec });
        }
        Ok(session.embeddings.as_ref().expect("set above"))
    }

    /// The mean image embedding of an even spread of the decoded frames, when an image encoder
    /// is configured. Blocking.
    pub fn image_embedding(&self, session: &Session) -> Result<Option<EmbeddingVector>, JobError> {
        let (Some(encoder), Some(batcher)) = (self.models.image_encoder()?, self.models.image_batcher()?) else { return Ok(None) };
        let samples = &session.decoded()?.samples;
        // At most IMAGE_FRAMES frames: the mean embedding settles long before every sampled
        // second is in it.
        let step = samples.len().div_ceil(IMAGE_FRAMES).max(1);
        let frames: Vec<RgbImage> =
            samples.iter().step_by(step).map(|f| RgbView::new(&f.rgb, f.width, f.height).map(|v| v.to_owned())).collect::<Result<_, _>>()?;
        if frames.is_empty() {
            return Ok(None);
        }
        let count = frames.len();
        let per_frame = batcher.submit_all_blocking(frames)?;
        let mean = mean_direction(&per_frame);
        Ok(Some(EmbeddingVector { model: encoder.model(), dim: mean.len(), vector: mean, sources: vec!["frames"], items: count }))
    }

    fn hashtags(&self, session: &mut Session) -> Result<AnalysisOutput, JobError> {
        let spans = self.spans(session)?;
        let mut vocab = self.vocabulary.clone();
        vocab.extend_tags(session.input.trending.iter().map(String::as_str), VocabSource::Trending);
        let head = self.models.hashtag_head()?;
        if let Some(head) = &head {
            vocab.extend_tags(head.labels.iter().map(String::as_str), VocabSource::Classifier);
        }
        let embeddings = self.embeddings(session)?.clone();
        let mut used: Vec<Value> = Vec::new();
        let mut signals = Signals::default();

        if let Some(text) = &embeddings.text {
            let embedder = self.models.text_embedder()?;
            let descriptions: Vec<String> = vocab.entries().iter().map(|e| e.description()).collect();
            let tags = self.models.cached_embeddings(&text.model.to_string(), &descriptions, |t| embedder.embed(t))?;
            signals.text_similarity = Some((tags.iter().map(|t| dot(t, &text.vector)).collect(), text.model.to_string()));
            used.push(to_json(&text.model)?);
        }
        if let Some(head) = &head {
            let text = embeddings.text.as_ref().map(|t| t.vector.clone()).unwrap_or_else(|| vec![0.0; head.text_dim]);
            let image = embeddings.image.as_ref().map(|i| i.vector.as_slice());
            match head.predict(&text, image) {
                Ok(probs) => {
                    let by_label: BTreeMap<&str, f32> = head.labels.iter().map(String::as_str).zip(probs).collect();
                    let per_entry = vocab.entries().iter().map(|e| by_label.get(e.tag.as_str()).copied()).collect();
                    signals.classifier = Some((per_entry, head.version.clone()));
                    used.push(json!({ "name": "hashtag-classifier", "version": head.version }));
                }
                // A head trained on another embedding model is unusable, not fatal: the other
                // signals still suggest, and the log says why the head was skipped.
                Err(e) => tracing::warn!(error = %e, version = %head.version, "hashtag classifier skipped"),
            }
        }
        if let (Some(image), Some(encoder)) = (&embeddings.image, self.models.image_encoder()?)
            && let Some(text_encoder) = self.models.clip_text_encoder()?
        {
            let prompts: Vec<String> = vocab.entries().iter().map(|e| format!("a video about {}", e.tag.trim_start_matches('#'))).collect();
            let tag_vecs = self.models.cached_embeddings(&text_encoder.model().to_string(), &prompts, |t| text_encoder.embed(t))?;
            let best_frame = session.decoded()?.samples.first().map(|f| f.time_secs).unwrap_or(0.0);
            signals.visual = Some((tag_vecs.iter().map(|t| (dot(t, &image.vector), best_frame)).collect(), encoder.model().to_string()));
            used.push(to_json(&encoder.model())?);
            used.push(to_json(&text_encoder.model())?);
        }

        let hs = &self.settings.hashtags;
        let opts = RankOptions { count: hs.count, max_generic: hs.max_generic, min_score: hs.min_score };
        let suggestions = hashtags::rank(&vocab, &spans, &signals, &opts);
        let payload = json!({
            "suggestions": suggestions,
            "classifier_version": head.as_ref().map(|h| h.version.clone()),
            "vocabulary_size": vocab.len(),
        });
        Ok(AnalysisOutput { payload, models: Value::Array(used) })
    }
}

impl Pipeline {
    /// The promoted regressor's estimate from the job's text embedding and caption: predicted
    /// virality, its percentile among pulled videos and an expected view range.
    fn virality(&self, session: &mut Session) -> Result<AnalysisOutput, JobError> {
        let Some(model) = self.models.virality() else {
            return Ok(AnalysisOutput {
                payload: json!({ "estimate": null, "reason": "no virality model has been trained and promoted yet" }),
                models: json!([]),
            });
        };
        let caption = session.input.caption.clone().unwrap_or_default();
        let embeddings = self.embeddings(session)?.clone();
        let Some(text) = embeddings.text else {
            return Ok(AnalysisOutput {
                payload: json!({ "estimate": null, "model_version": model.version, "reason": "the video has no speech, on-screen text or caption to estimate from" }),
                models: json!([{ "name": "virality-regressor", "version": model.version }]),
            });
        };
        let feature_model = crate::training::virality_feature_model(&text.model.to_string());
        if feature_model != model.feature_model {
            return Err(JobError::Retryable(format!("the promoted virality model reads `{}`, this worker makes `{feature_model}`", model.feature_model)));
        }
        let tags = caption.split_whitespace().filter(|w| w.starts_with('#') && w.len() > 1).count();
        let features = crate::training::virality_features(&text.vector, tags, text.items);
        let estimate = model.predict(&features).map_err(|e| JobError::Retryable(format!("virality model: {e}")))?;
        Ok(AnalysisOutput {
            payload: json!({
                "estimate": estimate,
                "model_version": model.version,
                "correlations": model.correlations,
                "held_out_spearman": model.metrics.get("spearman"),
            }),
            models: json!([{ "name": "virality-regressor", "version": model.version }, to_json(&text.model)?]),
        })
    }
}

impl Session {
    fn decoded(&self) -> Result<&DecodeOutput, JobError> {
        self.decoded.as_ref().ok_or_else(|| JobError::Retryable("the video was not decoded for this analysis".into()))
    }

    /// The video file.
    pub fn path(&self) -> &std::path::Path {
        &self.input.path
    }

    /// What the probe found.
    pub fn probe(&self) -> &Probe {
        &self.input.probe
    }
}

/// Shares of the audio's time that are speech, other sound (in short videos mostly music) and
/// silence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SoundProfile {
    pub speech: f32,
    pub music: f32,
    pub silence: f32,
}

/// Half-second frames: silent below −45 dBFS RMS, else speech where the voice activity
/// detector found speech for most of the frame, else music or other sound.
fn sound_profile(samples: &[f32], speech: &[crate::inference::vad::SpeechSegment]) -> SoundProfile {
    const FRAME: usize = 8_000;
    const SILENT_RMS: f32 = 0.005_6; // −45 dBFS
    let (mut s, mut m, mut q) = (0usize, 0usize, 0usize);
    for (i, frame) in samples.chunks(FRAME).enumerate() {
        let rms = (frame.iter().map(|x| x * x).sum::<f32>() / frame.len() as f32).sqrt();
        let (start, end) = ((i * FRAME) as f64 / 16_000.0, ((i * FRAME + frame.len()) as f64) / 16_000.0);
        let voiced: f64 = speech.iter().map(|seg| (seg.end.min(end) - seg.start.max(start)).max(0.0)).sum();
        if rms < SILENT_RMS {
            q += 1;
        } else if voiced * 2.0 >= end - start {
            s += 1;
        } else {
            m += 1;
        }
    }
    let total = (s + m + q).max(1) as f32;
    let r = |n: usize| ((n as f32 / total) * 1000.0).round() / 1000.0;
    SoundProfile { speech: r(s), music: r(m), silence: r(q) }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The mean of unit vectors, normalised again.
fn mean_direction(vectors: &[Vec<f32>]) -> Vec<f32> {
    let Some(first) = vectors.first() else { return Vec::new() };
    let mut mean = vec![0.0f32; first.len()];
    for v in vectors {
        for (m, x) in mean.iter_mut().zip(v) {
            *m += x;
        }
    }
    reelq_shared::classifier::normalised(&mean)
}

pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Value, JobError> {
    serde_json::to_value(value).map_err(|e| JobError::Retryable(format!("result could not be encoded: {e}")))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::inference::{DirStore, RuntimeConfig};
    use crate::media::probe;

    fn repo_root() -> std::path::PathBuf {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }
    use crate::settings::MediaSettings;

    fn clip(dir: &Path, name: &str, lavfi: &str) -> PathBuf {
        let path = dir.join(name);
        let status = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-y", "-f", "lavfi", "-i", lavfi, "-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"])
            .arg(&path)
            .status()
            .expect("run ffmpeg");
        assert!(status.success());
        path
    }

    fn pipeline(batch: usize, wait_ms: u64) -> Pipeline {
        let root = repo_root();
        let inference = InferenceSettings {
            library: Some(RuntimeConfig::default_library(&root).display().to_string()),
            models_dir: Some(DirStore::default_root(&root).display().to_string()),
            clip_model: Some("clip-tiny".into()),
            batch_max_size: batch,
            batch_max_wait_ms: wait_ms,
            ..InferenceSettings::default()
        };
        let settings = PipelineSettings { limits: DecodeLimits::default(), inference: inference.clone(), hashtags: HashtagSettings::default() };
        Pipeline::new(Arc::new(Models::new(inference)), settings)
    }

    fn embed(p: &Pipeline, path: PathBuf) -> usize {
        let probe = probe::probe(&path, &MediaSettings::default()).expect("probe");
        let input = Input { path, probe, caption: None, trending: Vec::new() };
        let mut session = p.start(input, &[Analysis::Embeddings], &|| false).expect("decode");
        let out = p.run(&mut session, Analysis::Embeddings).expect("embeddings");
        assert_eq!(out.payload["image"]["dim"], 64, "{:#}", out.payload);
        assert!(out.models.as_array().is_some_and(|m| m.iter().any(|m| m["name"] == "clip-tiny-image")));
        out.payload["image"]["items"].as_u64().expect("items") as usize
    }

    #[test]
    fn the_sound_profile_splits_speech_music_and_silence() {
        use crate::inference::vad::SpeechSegment;
        // Two seconds of silence, two of tone with speech marked on them, two of tone alone.
        let mut samples = vec![0.0f32; 32_000];
        samples.extend((0..64_000).map(|i| 0.3 * (i as f32 * 0.17).sin()));
        let speech = [SpeechSegment { start: 2.0, end: 4.0 }];

        let p = sound_profile(&samples, &speech);

        assert_eq!((p.silence, p.speech, p.music), (0.333, 0.333, 0.333), "{p:?}");
        assert_eq!(sound_profile(&[], &[]).speech, 0.0);
    }

    #[test]
    fn frames_of_two_concurrent_videos_share_image_encoder_and_ocr_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = clip(dir.path(), "a.mp4", "testsrc=s=320x240:r=25");
        let b = clip(dir.path(), "b.mp4", "mandelbrot=s=320x240:r=25");
        // A batch larger than either video's frames and a long wait: the frames can only run
        // early by filling one batch together.
        let p = pipeline(6, 20_000);

        let (na, nb) = std::thread::scope(|s| {
            let ta = s.spawn(|| embed(&p, a));
            let tb = s.spawn(|| embed(&p, b));
            (ta.join().expect("a"), tb.join().expect("b"))
        });

        assert_eq!(na + nb, 6, "three frames each from three-second clips at one per second");
        let stats = p.models().image_batcher().expect("batcher").expect("configured").stats();
        assert_eq!((stats.batches, stats.items, stats.full), (1, 6, 1), "{stats:?}");
        // The text reader sits behind its own batcher: the two videos' frames (three each,
        // bar any that repeat the previous one) were read in one shared call.
        let ocr = p.models().ocr_batcher().expect("ocr batcher").stats();
        assert_eq!(ocr.batches, 1, "{ocr:?}");
        assert!(ocr.items > 3, "frames of both videos in the batch: {ocr:?}");
    }
}
