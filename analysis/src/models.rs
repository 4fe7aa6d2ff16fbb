//! The models a pipeline uses, loaded on first use and shared by every job. A model that fails to
//! load (a missing pack, a bad checksum) is tried again on the next job rather than cached as
//! broken, so fixing the deployment needs no restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use reelq_learn::classifier::LinearHead;
use reelq_learn::engagement::virality::ViralityRegressor;

use crate::hashtags::Ranker;
use crate::settings::InferenceSettings;
use reelq_inference::batcher::{Batcher, BatcherConfig};
use reelq_inference::clip::{ImageEncoder, TextEncoder};
use reelq_inference::embedding::TextEmbedder;
use reelq_inference::image::RgbImage;
use reelq_inference::ocr::{Ocr, OcrOptions, TextLine};
use reelq_inference::safety::SafetyClassifier;
use reelq_inference::tagger::AudioTagger;
use reelq_inference::vad::Vad;
use reelq_inference::whisper::Whisper;
use reelq_inference::{Device, DirStore, InferenceError, Runtime, RuntimeConfig};

/// The queue in front of the image encoder: frames in, embeddings out.
pub type ImageBatcher = Batcher<RgbImage, Vec<f32>>;

/// The queue in front of the text reader: frames in, text lines out.
pub type OcrBatcher = Batcher<RgbImage, Vec<TextLine>>;

/// The queue in front of the safety model: frames in, scores out.
pub type SafetyBatcher = Batcher<RgbImage, f32>;

/// Lazily loaded models.
pub struct Models {
    settings: InferenceSettings,
    runtime: Mutex<Option<Arc<Runtime>>>,
    ocr: Mutex<Option<Arc<Ocr>>>,
    vad: Mutex<Option<Arc<Vad>>>,
    whisper: Mutex<Option<Arc<Whisper>>>,
    text_embedder: Mutex<Option<Arc<TextEmbedder>>>,
    clip: Mutex<Option<Arc<(ImageEncoder, TextEncoder)>>>,
    image_batcher: Mutex<Option<Arc<ImageBatcher>>>,
    tagger: Mutex<Option<Arc<AudioTagger>>>,
    ocr_batcher: Mutex<Option<Arc<OcrBatcher>>>,
    safety: Mutex<Option<Arc<SafetyClassifier>>>,
    safety_batcher: Mutex<Option<Arc<SafetyBatcher>>>,
    /// Embeddings of hashtag descriptions and prompts, by model and text.
    tag_vectors: Mutex<HashMap<String, Arc<Vec<f32>>>>,
    /// Held while missing tag vectors are computed, so that a job arriving during the start-up
    /// warm-up waits for it instead of embedding the same texts again.
    tag_vectors_filling: Mutex<()>,
    /// Models whose vectors computed ahead were added to `tag_vectors`.
    seeded: Mutex<std::collections::HashSet<String>>,
    classifier_path: Option<PathBuf>,
    /// The loaded classifier and the modification time of the file it came from.
    classifier: Mutex<Option<(SystemTime, Arc<LinearHead>)>>,
    /// The promoted versions from the model registry, set by the worker's registry watcher;
    /// a promoted classifier takes precedence over the configured file.
    promoted_head: Mutex<Option<Arc<LinearHead>>>,
    promoted_virality: Mutex<Option<Arc<ViralityRegressor>>>,
    /// The promoted hashtag ranker; the shipped weights until one is promoted.
    promoted_ranker: Mutex<Option<Arc<Ranker>>>,
}

impl Models {
    /// Nothing is loaded until a job needs it.
    pub fn new(settings: InferenceSettings) -> Self {
        Self {
            settings,
            runtime: Mutex::new(None),
            ocr: Mutex::new(None),
            vad: Mutex::new(None),
            whisper: Mutex::new(None),
            text_embedder: Mutex::new(None),
            clip: Mutex::new(None),
            image_batcher: Mutex::new(None),
            tagger: Mutex::new(None),
            ocr_batcher: Mutex::new(None),
            safety: Mutex::new(None),
            safety_batcher: Mutex::new(None),
            tag_vectors: Mutex::new(HashMap::new()),
            tag_vectors_filling: Mutex::new(()),
            seeded: Mutex::new(std::collections::HashSet::new()),
            classifier_path: None,
            classifier: Mutex::new(None),
            promoted_head: Mutex::new(None),
            promoted_virality: Mutex::new(None),
            promoted_ranker: Mutex::new(None),
        }
    }

    /// Uses the hashtag classifier artifact at `path` (re-read whenever the file changes).
    pub fn with_classifier(mut self, path: Option<PathBuf>) -> Self {
        self.classifier_path = path;
        self
    }

    /// The folder whose `.data/` holds the default model pack and ONNX Runtime, for settings
    /// that name neither; never the current directory, so `reelq analyze` behaves the same from
    /// any folder. `REELQ_HOME` when set, else the first that holds `.data/models` of: the
    /// folders above the running binary (a build inside a checkout), the checkout the binary was
    /// built from (`cargo install --path cli`), and the user's data folder
    /// (`$XDG_DATA_HOME/reelq`, by default `~/.local/share/reelq`), which is also where an error
    /// says to put the pack when none is found.
    fn root() -> PathBuf {
        if let Some(home) = std::env::var_os("REELQ_HOME") {
            return PathBuf::from(home);
        }
        let beside_binary = std::env::current_exe().ok().into_iter().flat_map(|exe| exe.ancestors().skip(1).map(PathBuf::from).collect::<Vec<_>>());
        let checkout = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let data = user_data_dir();
        beside_binary
            .chain([checkout])
            .chain(data.clone())
            .find(|dir| dir.join(".data/models").is_dir())
            .or(data)
            .unwrap_or_else(|| PathBuf::from("/usr/local/share/reelq"))
    }

    fn store(&self) -> DirStore {
        let dir = self.settings.models_dir.as_deref().map(PathBuf::from).unwrap_or_else(|| DirStore::default_root(&Self::root()));
        DirStore::new(dir)
    }

    fn runtime(&self) -> Result<Arc<Runtime>, InferenceError> {
        let mut slot = self.runtime.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(rt) = slot.as_ref() {
            return Ok(rt.clone());
        }
        let library = self.settings.library.as_deref().map(PathBuf::from).unwrap_or_else(|| RuntimeConfig::default_library(&Self::root()));
        let device = if self.settings.device == "cuda" { Device::Cuda { device_id: self.settings.cuda_device_id } } else { Device::Cpu };
        let rt = Runtime::init(RuntimeConfig { library, intra_threads: self.settings.intra_threads, device })?;
        *slot = Some(rt.clone());
        Ok(rt)
    }

    /// The text detector and recogniser. Blocking: call it off the async runtime.
    pub fn ocr(&self) -> Result<Arc<Ocr>, InferenceError> {
        load(&self.ocr, || Ocr::load(&*self.runtime()?, &self.store(), OcrOptions::default()))
    }

    /// The queue in front of the text reader that merges frames of concurrent jobs into
    /// shared detector and recogniser calls. Blocking.
    pub fn ocr_batcher(&self) -> Result<Arc<OcrBatcher>, InferenceError> {
        let config = BatcherConfig { max_batch: self.settings.ocr_batch(), ..self.batcher_config() };
        load(&self.ocr_batcher, || self.ocr()?.batcher(config))
    }

    fn batcher_config(&self) -> BatcherConfig {
        BatcherConfig { max_batch: self.settings.batch_max_size, max_wait: std::time::Duration::from_millis(self.settings.batch_max_wait_ms) }
    }

    /// The content-safety classifier. Blocking.
    pub fn safety(&self) -> Result<Arc<SafetyClassifier>, InferenceError> {
        load(&self.safety, || SafetyClassifier::load(&*self.runtime()?, &self.store(), &self.settings.safety_model))
    }

    /// The queue in front of the safety classifier that merges frames of concurrent jobs into
    /// shared model calls. Blocking.
    pub fn safety_batcher(&self) -> Result<Arc<SafetyBatcher>, InferenceError> {
        let config = self.batcher_config();
        load(&self.safety_batcher, || self.safety()?.batcher(config))
    }

    /// The voice activity detector. Blocking.
    pub fn vad(&self) -> Result<Arc<Vad>, InferenceError> {
        load(&self.vad, || Vad::load(&*self.runtime()?, &self.store()))
    }

    /// The audio tagger, when `inference.audio_tagger` names one. Blocking.
    pub fn audio_tagger(&self) -> Result<Option<Arc<AudioTagger>>, InferenceError> {
        let Some(name) = self.settings.audio_tagger.as_deref().filter(|n| !n.is_empty()) else { return Ok(None) };
        load(&self.tagger, || AudioTagger::load(&*self.runtime()?, &self.store(), name)).map(Some)
    }

    /// The sentence embedder (all-MiniLM-L6-v2). Blocking.
    pub fn text_embedder(&self) -> Result<Arc<TextEmbedder>, InferenceError> {
        load(&self.text_embedder, || TextEmbedder::load(&*self.runtime()?, &self.store()))
    }

    fn clip(&self) -> Result<Option<Arc<(ImageEncoder, TextEncoder)>>, InferenceError> {
        let Some(name) = self.settings.clip_model.as_deref().filter(|n| !n.is_empty()) else { return Ok(None) };
        load(&self.clip, || {
            let rt = self.runtime()?;
            let store = self.store();
            Ok((ImageEncoder::load(&rt, &store, &format!("{name}-image"))?, TextEncoder::load(&rt, &store, &format!("{name}-text"))?))
        })
        .map(Some)
    }

    /// The image encoder, when `inference.clip_model` names one. Blocking.
    pub fn image_encoder(&self) -> Result<Option<ImageEncoderRef>, InferenceError> {
        Ok(self.clip()?.map(ImageEncoderRef))
    }

    /// The queue in front of the image encoder that merges frames of concurrent jobs into
    /// shared model calls, when an encoder is configured. Blocking.
    pub fn image_batcher(&self) -> Result<Option<Arc<ImageBatcher>>, InferenceError> {
        let Some(pair) = self.clip()? else { return Ok(None) };
        let config = self.batcher_config();
        load(&self.image_batcher, || ImageEncoderRef(pair).batcher(config)).map(Some)
    }

    /// The text side of the image encoder's pair, for zero-shot matching. Blocking.
    pub fn clip_text_encoder(&self) -> Result<Option<TextEncoderRef>, InferenceError> {
        Ok(self.clip()?.map(TextEncoderRef))
    }

    /// Adds vectors of `model` computed ahead (the shipped description embeddings) to what
    /// [`Models::cached_embeddings`] holds, once per model; a text already held keeps its vector.
    pub fn seed_embeddings(&self, model: &str, entries: &[(String, Vec<f32>)]) {
        let mut seeded = self.seeded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if seeded.contains(model) {
            return;
        }
        seeded.insert(model.to_owned());
        let mut cache = self.tag_vectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (text, v) in entries {
            cache.entry(format!("{model}\u{0}{text}")).or_insert_with(|| Arc::new(v.clone()));
        }
    }

    /// Embeddings of `texts` by `model`, each text embedded once per process (hashtag
    /// descriptions and prompts repeat for every job); `embed` computes the missing ones.
    pub fn cached_embeddings(
        &self,
        model: &str,
        texts: &[String],
        embed: impl FnOnce(&[&str]) -> Result<Vec<Vec<f32>>, InferenceError>,
    ) -> Result<Vec<Arc<Vec<f32>>>, InferenceError> {
        let key = |t: &str| format!("{model}\u{0}{t}");
        let _filling = self.tag_vectors_filling.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let missing: Vec<&str> = {
            let cache = self.tag_vectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            texts.iter().map(String::as_str).filter(|t| !cache.contains_key(&key(t))).collect()
        };
        if !missing.is_empty() {
            let vectors = embed(&missing)?;
            let mut cache = self.tag_vectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            for (t, v) in missing.into_iter().zip(vectors) {
                cache.insert(key(t), Arc::new(v));
            }
        }
        let cache = self.tag_vectors.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(texts.iter().map(|t| cache.get(&key(t)).cloned().unwrap_or_default()).collect())
    }

    /// The hashtag classifier, when one is configured; re-read when its file changes, so a
    /// promotion takes effect without a restart. A file that cannot be read or parsed is an
    /// error (the job retries) rather than silently ignored.
    pub fn hashtag_head(&self) -> Result<Option<Arc<LinearHead>>, InferenceError> {
        if let Some(head) = self.promoted_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() {
            return Ok(Some(head));
        }
        let Some(path) = self.classifier_path.as_ref() else { return Ok(None) };
        let bad = |reason: String| InferenceError::MissingModel { name: "hashtag-classifier".into(), reason };
        let modified = std::fs::metadata(path).and_then(|m| m.modified()).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let mut slot = self.classifier.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, head)) = slot.as_ref()
            && *at == modified
        {
            return Ok(Some(head.clone()));
        }
        let bytes = std::fs::read(path).map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let head = Arc::new(LinearHead::from_json(&bytes).map_err(|e| bad(e.to_string()))?);
        tracing::info!(version = %head.version, labels = head.labels.len(), "hashtag classifier loaded");
        *slot = Some((modified, head.clone()));
        Ok(Some(head))
    }

    /// Uses the registry's promoted classifier (or, with `None`, the configured file again).
    pub fn set_promoted_head(&self, head: Option<Arc<LinearHead>>) {
        *self.promoted_head.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = head;
    }

    /// Uses the registry's promoted virality regressor.
    pub fn set_promoted_virality(&self, model: Option<Arc<ViralityRegressor>>) {
        *self.promoted_virality.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = model;
    }

    /// Uses the registry's promoted hashtag ranker (or, with `None`, the shipped weights).
    pub fn set_promoted_ranker(&self, ranker: Option<Arc<Ranker>>) {
        *self.promoted_ranker.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = ranker;
    }

    /// The hashtag ranker: the registry's promoted version, else the weights reelq ships.
    pub fn ranker(&self) -> Arc<Ranker> {
        self.promoted_ranker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone().unwrap_or_else(Ranker::shipped_arc)
    }

    /// The promoted virality regressor, once the registry has one.
    pub fn virality(&self) -> Option<Arc<ViralityRegressor>> {
        self.promoted_virality.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Speech recognition (Whisper tiny.en). Blocking.
    pub fn whisper(&self) -> Result<Arc<Whisper>, InferenceError> {
        load(&self.whisper, || Whisper::load_named(&*self.runtime()?, &self.store(), &self.settings.speech_model))
    }

    /// Where models are read from (and where a pack in storage is copied to).
    pub fn models_dir(&self) -> PathBuf {
        self.store().root().to_path_buf()
    }
}

/// `$XDG_DATA_HOME/reelq`, else `~/.local/share/reelq`.
fn user_data_dir() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    xdg.or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share"))).map(|d| d.join("reelq"))
}

fn load<T>(slot: &Mutex<Option<Arc<T>>>, make: impl FnOnce() -> Result<T, InferenceError>) -> Result<Arc<T>, InferenceError> {
    let mut slot = slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(m) = slot.as_ref() {
        return Ok(m.clone());
    }
    let m = Arc::new(make()?);
    *slot = Some(m.clone());
    Ok(m)
}

/// The image half of a loaded encoder pair.
#[derive(Clone)]
pub struct ImageEncoderRef(Arc<(ImageEncoder, TextEncoder)>);

impl std::ops::Deref for ImageEncoderRef {
    type Target = ImageEncoder;
    fn deref(&self) -> &ImageEncoder {
        &self.0.0
    }
}

/// The text half of a loaded encoder pair.
#[derive(Clone)]
pub struct TextEncoderRef(Arc<(ImageEncoder, TextEncoder)>);

impl std::ops::Deref for TextEncoderRef {
    type Target = TextEncoder;
    fn deref(&self) -> &TextEncoder {
        &self.0.1
    }
}
