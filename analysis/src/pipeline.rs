//! One video's run: the video is decoded once, with what the requested analyses (and those they
//! build on) need together, and each analysis then reads the decoded frames, statistics and
//! audio, and what earlier analyses found (the transcript and on-screen text feed the
//! embeddings, which feed the hashtags, which choose the music).
//!
//! Everything here blocks: callers run it off any async runtime.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reelq_core::catalogue::Plan;
use reelq_core::domain::{Analysis, JobErrorCode};
use reelq_core::options::JobOptions;
use reelq_inference::image::{RgbImage, RgbView};
use reelq_inference::ocr::FramesReading;
use reelq_learn::engagement::music::MusicUse;
use reelq_media::decode::{self, DecodeLimits, DecodeOptions, DecodeOutput, FrameSize, Sampling};
use reelq_media::probe::Probe;
use reelq_media::quality;

use crate::findings::{
    AnalysisOutput, EmbeddingVector, Embeddings, Finding, FrameScore, HashtagFinding, ModelRef, OcrFinding, SafetyFinding, TranscriptFinding,
};
use crate::hashtags::{CreatorHistory, SpanSource, TextSpan, Vocabulary, heard_clearly};
use crate::models::Models;
use crate::observe::{Observer, Quiet};
use crate::settings::{HashtagSettings, InferenceSettings, MediaSettings};
use crate::song::{Recognizer, SongFinding};
use crate::{AnalysisError, sound};

/// The video a run works on.
#[derive(Debug, Clone)]
pub struct Input {
    pub path: PathBuf,
    pub probe: Probe,
    /// The job's options (the caption is text evidence; the region chooses the music).
    pub options: JobOptions,
    /// What pulled data adds to the hashtag vocabulary: the trending and most used tags, and
    /// the wider tags learned from the posts that carry them.
    pub pulled: std::sync::Arc<crate::hashtags::PulledTags>,
    /// What the job's creator (`options.creator`) chose for their latest posts, where the
    /// services are at hand to read it.
    pub creator: Option<CreatorHistory>,
}

/// The pulled TikTok data an analysis reads, where the services are at hand (the worker reads
/// PostgreSQL). Blocking.
pub trait PulledData: Send + Sync {
    /// Pulled videos carrying any of `tags` (without `#`), in `region` when given, newest
    /// first, at most `limit`, with their sounds and engagement.
    fn music_uses(&self, tags: &[String], region: Option<&str>, limit: usize) -> Result<Vec<MusicUse>, AnalysisError>;
}

/// The analyses' settings.
#[derive(Debug, Clone)]
pub struct PipelineSettings {
    pub limits: DecodeLimits,
    pub inference: InferenceSettings,
    pub hashtags: HashtagSettings,
}

impl PipelineSettings {
    /// From the configuration's analysis sections.
    pub fn new(media: &MediaSettings, inference: &InferenceSettings, hashtags: &HashtagSettings) -> Self {
        Self {
            limits: DecodeLimits { max_wall: Duration::from_secs(media.max_decode_secs), max_pixels: media.max_pixels, ..DecodeLimits::default() },
            inference: inference.clone(),
            hashtags: hashtags.clone(),
        }
    }
}

/// Runs analyses over decoded video. One per process: its models and batchers are shared by
/// every video it runs.
pub struct Pipeline {
    pub(crate) models: Arc<Models>,
    pub(crate) settings: PipelineSettings,
    pub(crate) vocabulary: Vocabulary,
    pub(crate) observer: Arc<dyn Observer>,
    pub(crate) pulled: Option<Arc<dyn PulledData>>,
    pub(crate) recognizers: Vec<Arc<dyn Recognizer>>,
}

/// One video's decode and what the analyses have found so far.
pub struct Session {
    pub(crate) input: Input,
    pub(crate) decoded: Option<DecodeOutput>,
    pub(crate) ocr: Option<(FramesReading, Vec<ModelRef>)>,
    pub(crate) transcript: Option<(TranscriptFinding, ModelRef)>,
    pub(crate) embeddings: Option<Embeddings>,
    pub(crate) hashtags: Option<(HashtagFinding, Vec<ModelRef>)>,
    pub(crate) song: Option<SongFinding>,
}

/// Most frames kept for the models (OCR, image encoder): 2 minutes at one per second, about
/// 180 MB of RGB for a 1080×1920 video at the 540-pixel short side.
const MODEL_FRAMES: usize = 120;

/// Most frames the image encoder embeds per video.
const IMAGE_FRAMES: usize = 16;

impl Pipeline {
    pub fn new(models: Arc<Models>, settings: PipelineSettings) -> Self {
        Self { models, settings, vocabulary: Vocabulary::curated(), observer: Arc::new(Quiet), pulled: None, recognizers: Vec::new() }
    }

    /// A pipeline with its own models, as the configuration's analysis sections describe them.
    pub fn from_settings(media: &MediaSettings, inference: &InferenceSettings, hashtags: &HashtagSettings) -> Self {
        let classifier = hashtags.classifier.as_ref().map(PathBuf::from);
        let models = Arc::new(Models::new(inference.clone()).with_classifier(classifier));
        Self::new(models, PipelineSettings::new(media, inference, hashtags))
    }

    /// Reports timings to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = observer;
        self
    }

    /// Reads pulled data from `pulled` (without it, `music` cannot run).
    pub fn with_pulled_data(mut self, pulled: Arc<dyn PulledData>) -> Self {
        self.pulled = Some(pulled);
        self
    }

    /// Recognises songs with `recognizers` (without any, `song` cannot run).
    pub fn with_recognizers(mut self, recognizers: Vec<Arc<dyn Recognizer>>) -> Self {
        self.recognizers = recognizers;
        self
    }

    pub fn settings(&self) -> &PipelineSettings {
        &self.settings
    }

    pub fn models(&self) -> &Arc<Models> {
        &self.models
    }

    /// The decode that serves every analysis in `analyses` (and what they build on), or `None`
    /// when none needs one.
    pub fn decode_options(&self, analyses: &[Analysis]) -> Option<DecodeOptions> {
        let plan = Plan::of(analyses);
        if !plan.decodes() {
            return None;
        }
        let limits = self.settings.limits.clone();
        // Statistics (and scene cuts) come from every frame on the video's own timestamps, so
        // adding frames for the models never changes what quality measures.
        let mut opts = if plan.statistics {
            DecodeOptions { audio: plan.audio, limits, ..DecodeOptions::default() }
        } else {
            DecodeOptions { sampling: Sampling::Off, scenes: None, frame_stats: false, audio: plan.audio, limits, ..DecodeOptions::default() }
        };
        if plan.model_samples {
            // Text needs detail: the short side at 540 reads captions a 224 square would blur
            // (the image encoder resizes these itself). Frames are held until the models have
            // read them, so their number is bounded: a longer video is read at a wider interval.
            opts = opts.with_model_frames(Sampling::EverySecs(self.settings.inference.ocr_interval_secs), FrameSize::ShortSide(540), MODEL_FRAMES);
        }
        Some(opts)
    }

    /// Decodes the video once for `analyses`. Blocking.
    pub fn start(&self, input: Input, analyses: &[Analysis], should_stop: &dyn Fn() -> bool) -> Result<Session, AnalysisError> {
        let decoded = match self.decode_options(analyses) {
            Some(opts) => {
                let started = Instant::now();
                let out = decode::decode(&input.path, &input.probe, &opts, should_stop)?;
                self.observer.stage("decode", started.elapsed());
                Some(out)
            }
            None => None,
        };
        Ok(Session { input, decoded, ocr: None, transcript: None, embeddings: None, hashtags: None, song: None })
    }

    /// Runs one analysis over the session. Blocking.
    pub fn run(&self, session: &mut Session, analysis: Analysis) -> Result<AnalysisOutput, AnalysisError> {
        let started = Instant::now();
        let out = match analysis {
            Analysis::Probe => AnalysisOutput::plain(Finding::Probe(session.input.probe.clone())),
            Analysis::Quality => AnalysisOutput::plain(Finding::Quality(quality::analyze(&session.input.probe, session.decoded()?))),
            Analysis::Ocr => {
                let frames_read = session.decoded()?.samples.len();
                let (reading, models) = self.ocr(session)?.clone();
                AnalysisOutput { finding: Finding::Ocr(OcrFinding { texts: reading.texts, frames_read, frames_recognised: reading.recognised }), models }
            }
            Analysis::Audio => sound::audio(self, session)?,
            Analysis::Transcript => {
                let (t, model) = sound::transcript(self, session)?.clone();
                AnalysisOutput { finding: Finding::Transcript(t), models: vec![model] }
            }
            Analysis::Embeddings => {
                let e = self.embeddings(session)?.clone();
                let models = e.text.iter().chain(e.image.iter()).map(|v| ModelRef::from(&v.model)).collect();
                AnalysisOutput { finding: Finding::Embeddings(e), models }
            }
            Analysis::Hashtags => {
                let (h, models) = self.hashtags(session)?.clone();
                AnalysisOutput { finding: Finding::Hashtags(h), models }
            }
            Analysis::Music => self.music(session)?,
            Analysis::Virality => self.virality(session)?,
            Analysis::Safety => self.safety(session)?,
            Analysis::Song => self.song_output(session)?,
            Analysis::Mux | Analysis::Noop | Analysis::Train | Analysis::AddSong => {
                return Err(AnalysisError::refused(
                    JobErrorCode::InvalidRequest,
                    format!("the analysis `{}` is a job of the service, not an analysis of one video", analysis.as_str()),
                ));
            }
        };
        self.observer.stage(analysis.as_str(), started.elapsed());
        Ok(out)
    }

    /// Times one unbatched model call.
    pub(crate) fn timed<T>(&self, model: &str, call: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = call();
        self.observer.inference(model, started.elapsed());
        out
    }

    fn ocr<'s>(&self, session: &'s mut Session) -> Result<&'s (FramesReading, Vec<ModelRef>), AnalysisError> {
        if session.ocr.is_none() {
            let decoded = session.decoded()?;
            let frames =
                decoded.samples.iter().map(|f| RgbView::new(&f.rgb, f.width, f.height).map(|v| (f.time_secs, v))).collect::<Result<Vec<_>, _>>()?;
            let ocr = self.models.ocr()?;
            // Frames go through the batcher shared by every video of this process, which times
            // each model call and records its batch size.
            let batcher = self.models.ocr_batcher()?;
            let texts = ocr.read_frames_with(&frames, |views| batcher.submit_all_blocking(views.iter().map(RgbView::to_owned).collect()))?;
            session.ocr = Some((texts, ocr.models().iter().map(ModelRef::from).collect()));
        }
        Ok(session.ocr.as_ref().expect("set above"))
    }

    /// The text the video carries: what is said (less the speech the recogniser was less sure
    /// of than `hashtags.min_speech_logprob`, when set), shown and written under it. The
    /// hashtags and the text embedding read it.
    pub fn spans(&self, session: &mut Session) -> Result<Vec<TextSpan>, AnalysisError> {
        let mut spans = Vec::new();
        let min_logprob = self.settings.hashtags.min_speech_logprob;
        for s in &sound::transcript(self, session)?.0.segments {
            if heard_clearly(s.avg_logprob, min_logprob) {
                spans.push(TextSpan { source: SpanSource::Transcript, text: s.text.clone(), time_secs: Some(s.start) });
            }
        }
        for t in &self.ocr(session)?.0.texts {
            spans.push(TextSpan { source: SpanSource::OnScreenText, text: t.text.clone(), time_secs: t.frames.first().copied() });
        }
        if let Some(c) = session.input.options.caption_text() {
            spans.push(TextSpan { source: SpanSource::Caption, text: c.to_owned(), time_secs: None });
        }
        Ok(spans)
    }

    pub(crate) fn embeddings<'s>(&self, session: &'s mut Session) -> Result<&'s Embeddings, AnalysisError> {
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
                let v = self.timed("text_embedding", || embedder.embed(&[text.as_str()]))?.pop().unwrap_or_default();
                Some(EmbeddingVector { model: embedder.model(), dim: v.len(), vector: v, sources, items: text.chars().count() })
            };
            let image_vec = self.image_embedding(session)?;
            session.embeddings = Some(Embeddings { text: text_vec, image: image_vec });
        }
        Ok(session.embeddings.as_ref().expect("set above"))
    }

    /// Scores every sampled frame with the safety classifier, through the batcher shared by
    /// every video of this process.
    fn safety(&self, session: &Session) -> Result<AnalysisOutput, AnalysisError> {
        let samples = &session.decoded()?.samples;
        let frames: Vec<RgbImage> = samples.iter().map(|f| RgbView::new(&f.rgb, f.width, f.height).map(|v| v.to_owned())).collect::<Result<_, _>>()?;
        let model = self.models.safety()?;
        let scores = if frames.is_empty() { Vec::new() } else { self.models.safety_batcher()?.submit_all_blocking(frames)? };
        let threshold = self.settings.inference.safety_threshold;
        let mut ranked: Vec<FrameScore> = samples.iter().zip(&scores).map(|(f, &score)| FrameScore { time_secs: f.time_secs, score }).collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.time_secs.total_cmp(&b.time_secs)));
        let score = ranked.first().map_or(0.0, |f| f.score);
        let mean_score = if scores.is_empty() { 0.0 } else { scores.iter().sum::<f32>() / scores.len() as f32 };
        ranked.truncate(3);
        let finding = SafetyFinding {
            score,
            mean_score,
            flagged: !scores.is_empty() && score >= threshold,
            threshold,
            worst_frames: ranked,
            frames_scored: scores.len(),
        };
        Ok(AnalysisOutput { finding: Finding::Safety(finding), models: vec![ModelRef::from(&model.model())] })
    }

    /// The mean image embedding of an even spread of the decoded frames, when an image encoder
    /// is configured. Blocking.
    pub fn image_embedding(&self, session: &Session) -> Result<Option<EmbeddingVector>, AnalysisError> {
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
}

impl Session {
    pub(crate) fn decoded(&self) -> Result<&DecodeOutput, AnalysisError> {
        self.decoded.as_ref().ok_or_else(|| AnalysisError::Unavailable("the video was not decoded for this analysis".into()))
    }

    /// The video file.
    pub fn path(&self) -> &Path {
        &self.input.path
    }

    /// What the probe found.
    pub fn probe(&self) -> &Probe {
        &self.input.probe
    }
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
    reelq_learn::classifier::normalised(&mean)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use reelq_inference::{DirStore, RuntimeConfig};
    use reelq_media::probe;

    fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
    }

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
            ocr_batch_max_size: Some(batch),
            batch_max_wait_ms: wait_ms,
            ..InferenceSettings::default()
        };
        let settings = PipelineSettings { limits: DecodeLimits::default(), inference: inference.clone(), hashtags: HashtagSettings::default() };
        Pipeline::new(Arc::new(Models::new(inference)), settings)
    }

    fn embed(p: &Pipeline, path: PathBuf) -> usize {
        let probe = probe::probe(&path, &MediaSettings::default()).expect("probe");
        let input = Input { path, probe, options: JobOptions::default(), pulled: Default::default(), creator: None };
        let mut session = p.start(input, &[Analysis::Embeddings], &|| false).expect("decode");
        let out = p.run(&mut session, Analysis::Embeddings).expect("embeddings");
        let payload = out.payload().expect("json");
        assert_eq!(payload["image"]["dim"], 64, "{payload:#}");
        assert!(out.models.iter().any(|m| m.name == "clip-tiny-image"));
        payload["image"]["items"].as_u64().expect("items") as usize
    }

    #[test]
    fn the_text_reader_batches_only_where_it_pays() {
        let cpu = InferenceSettings::default();
        assert_eq!(cpu.ocr_batch(), 1);
        let cuda = InferenceSettings { device: "cuda".into(), batch_max_size: 8, ..InferenceSettings::default() };
        assert_eq!(cuda.ocr_batch(), 8);
        let set = InferenceSettings { ocr_batch_max_size: Some(4), ..InferenceSettings::default() };
        assert_eq!(set.ocr_batch(), 4);
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
        // The text reader sits behind its own batcher. Each video sends a frame at a time (a
        // frame is read only when its text may have changed since the last one read), so the
        // two videos' first frames were read in one shared call.
        let ocr = p.models().ocr_batcher().expect("ocr batcher").stats();
        assert!(ocr.size_counts.get(1).is_some_and(|&n| n >= 1), "a call with a frame of each video: {ocr:?}");
    }
}
