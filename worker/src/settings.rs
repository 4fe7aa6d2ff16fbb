//! The worker's settings: the shared sections plus `[worker]` and `[media]`.

use serde::Deserialize;

use reelq_shared::config::{
    AmqpSettings, CommonSettings, ConfigError, DatabaseSettings, StorageSettings, TelemetrySettings, Validate,
    WebhookSettings,
};

/// Everything the worker reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub webhooks: WebhookSettings,
    pub worker: WorkerSettings,
    pub media: MediaSettings,
    pub inference: InferenceSettings,
    pub hashtags: HashtagSettings,
}

/// The `[hashtags]` section: how suggestions are ranked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashtagSettings {
    /// Suggestions per video.
    pub count: usize,
    /// Most generic tags (#fyp, #viral) among them; they only fill slots no specific tag wants.
    pub max_generic: usize,
    /// Least fused score (0–1) a suggestion needs.
    pub min_score: f32,
    /// A trained classifier artifact (`reelq-hashtag-linear/1` JSON) to use until the model
    /// registry promotes one. Re-read when the file changes.
    pub classifier: Option<String>,
}

impl Default for HashtagSettings {
    fn default() -> Self {
        Self { count: 10, max_generic: 1, min_score: 0.3, classifier: None }
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
    /// Longest a frame waits for others to fill its batch, in milliseconds.
    pub batch_max_wait_ms: u64,
    /// How often the worker asks the model registry for newly promoted (or rolled back)
    /// versions, in milliseconds; a promotion takes effect within this time, without a restart.
    pub registry_refresh_ms: u64,
}

impl Default for InferenceSettings {
    fn default() -> Self {
        Self { library: None, models_dir: None, models_s3_prefix: None, intra_threads: 2, device: "cpu".to_owned(), cuda_device_id: 0, ocr_interval_secs: 1.0, clip_model: None, speech_model: "whisper-tiny-en".to_owned(), audio_tagger: None, batch_max_size: 16, batch_max_wait_ms: 20, registry_refresh_ms: 10_000 }
    }
}

/// The `[worker]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Jobs processed at once by this process.
    pub concurrency: usize,
    /// Slots only interactive jobs may use, so batch work never starves them.
    pub interactive_reserved: usize,
    /// Lease length; a worker that stops heartbeating loses its job after this.
    pub lease_ttl_ms: u64,
    /// Heartbeat period; also how fast a running job notices cancellation.
    pub heartbeat_interval_ms: u64,
    /// Longest a job may run before it fails with `timeout`.
    pub job_timeout_secs: u64,
    /// On SIGTERM, how long in-flight jobs may take to finish before they are left to
    /// redelivery.
    pub shutdown_deadline_secs: u64,
    /// Where downloaded videos are kept while processed (system temp dir when unset).
    pub scratch_dir: Option<String>,
    /// Address of the worker's health and metrics server; port 0 picks one.
    pub health_bind: String,
    /// How often jobs whose worker vanished are dispatched again.
    pub reaper_interval_secs: u64,
    /// Deliver webhooks from this process.
    pub run_webhooks: bool,
    /// Webhook poll interval.
    pub webhook_poll_ms: u64,
    /// While PostgreSQL or storage is down, how often the worker probes it; no job starts
    /// until a probe succeeds, and no attempt is spent on the outage.
    pub dependency_probe_ms: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 4,
            interactive_reserved: 1,
            lease_ttl_ms: 30_000,
            heartbeat_interval_ms: 5_000,
            job_timeout_secs: 1_800,
            shutdown_deadline_secs: 30,
            scratch_dir: None,
            health_bind: "127.0.0.1:8081".to_owned(),
            reaper_interval_secs: 15,
            run_webhooks: true,
            webhook_poll_ms: 500,
            dependency_probe_ms: 2_000,
        }
    }
}

pub use reelq_media::MediaSettings;

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        CommonSettings {
            database: self.database.clone(),
            amqp: self.amqp.clone(),
            storage: self.storage.clone(),
            telemetry: self.telemetry.clone(),
            webhooks: self.webhooks.clone(),
        }
        .validate()?;
        let w = &self.worker;
        if w.concurrency == 0 {
            return Err(ConfigError::invalid("worker.concurrency", "must be at least 1"));
        }
        if w.interactive_reserved >= w.concurrency && w.concurrency > 1 {
            return Err(ConfigError::invalid("worker.interactive_reserved", "must be below worker.concurrency"));
        }
        if w.dependency_probe_ms == 0 {
            return Err(ConfigError::invalid("worker.dependency_probe_ms", "must be positive"));
        }
        if w.heartbeat_interval_ms == 0 || w.heartbeat_interval_ms * 2 > w.lease_ttl_ms {
            return Err(ConfigError::invalid("worker.heartbeat_interval_ms", "must be positive and at most half of worker.lease_ttl_ms"));
        }
        if w.health_bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid("worker.health_bind", "must be an address such as 0.0.0.0:8081"));
        }
        if !(self.media.max_duration_secs > 0.0) {
            return Err(ConfigError::invalid("media.max_duration_secs", "must be positive"));
        }
        if !matches!(self.inference.device.as_str(), "cpu" | "cuda") {
            return Err(ConfigError::invalid("inference.device", "must be cpu or cuda"));
        }
        if self.inference.speech_model.trim().is_empty() {
            return Err(ConfigError::invalid("inference.speech_model", "must name a model of the pack"));
        }
        if self.inference.batch_max_size == 0 {
            return Err(ConfigError::invalid("inference.batch_max_size", "must be at least 1"));
        }
        if self.hashtags.count == 0 || self.hashtags.count > 50 {
            return Err(ConfigError::invalid("hashtags.count", "must be between 1 and 50"));
        }
        if !(0.0..1.0).contains(&self.hashtags.min_score) {
            return Err(ConfigError::invalid("hashtags.min_score", "must be at least 0 and below 1"));
        }
        if self.inference.intra_threads == 0 {
            return Err(ConfigError::invalid("inference.intra_threads", "must be at least 1"));
        }
        if !(self.inference.ocr_interval_secs > 0.0) {
            return Err(ConfigError::invalid("inference.ocr_interval_secs", "must be positive"));
        }
        if self.media.max_decode_secs == 0 {
            return Err(ConfigError::invalid("media.max_decode_secs", "must be positive"));
        }
        if self.media.max_pixels == 0 {
            return Err(ConfigError::invalid("media.max_pixels", "must be positive"));
        }
        Ok(())
    }
}
