//! The worker's settings: the shared sections, `[worker]`, and the analysis sections
//! (`[media]`, `[inference]`, `[hashtags]`) from `reelq-analysis`, and `[songs]`.

use secrecy::SecretString;
use serde::Deserialize;

use reelq_shared::config::{AmqpSettings, CommonSettings, ConfigError, DatabaseSettings, StorageSettings, TelemetrySettings, Validate, WebhookSettings};

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
    pub songs: SongSettings,
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

/// The `[songs]` section: how `song` recognises the track under a video, and how catalogue
/// tracks are made.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SongSettings {
    /// Recognise against the song catalogue in PostgreSQL (tracks added with
    /// `POST /v1/admin/songs`).
    pub catalogue: bool,
    /// A hosted recognition service with an AudD-style API (multipart `file` and `api_token`,
    /// JSON `status`/`result`/`error`), asked only when the catalogue knows nothing. Empty: off.
    pub service_url: String,
    /// Its name in results.
    pub service_name: String,
    /// Its API key, sent as `api_token`; never logged.
    pub service_api_key: SecretString,
    /// Longest wait for one answer.
    pub service_timeout_ms: u64,
    /// Further attempts after a timeout, a connection failure, 429 or 5xx, with doubling waits
    /// from `service_backoff_ms`; after them the job is retried like any outage.
    pub service_retries: u32,
    pub service_backoff_ms: u64,
    /// Longest stretch of a track fingerprinted into the catalogue, in seconds.
    pub max_track_secs: u64,
}

impl Default for SongSettings {
    fn default() -> Self {
        Self {
            catalogue: true,
            service_url: String::new(),
            service_name: "audd".into(),
            service_api_key: SecretString::from(String::new()),
            service_timeout_ms: 10_000,
            service_retries: 2,
            service_backoff_ms: 500,
            max_track_secs: 900,
        }
    }
}

impl std::fmt::Debug for SongSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SongSettings")
            .field("catalogue", &self.catalogue)
            .field("service_url", &self.service_url)
            .field("service_name", &self.service_name)
            .field("service_api_key", &"[redacted]")
            .field("service_timeout_ms", &self.service_timeout_ms)
            .field("service_retries", &self.service_retries)
            .field("service_backoff_ms", &self.service_backoff_ms)
            .field("max_track_secs", &self.max_track_secs)
            .finish()
    }
}

pub use reelq_analysis::settings::{HashtagSettings, InferenceSettings, MediaSettings};

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
        reelq_analysis::settings::validate(&self.media, &self.inference, &self.hashtags)?;
        let s = &self.songs;
        let url_ok = s.service_url.is_empty() || s.service_url.starts_with("http://") || s.service_url.starts_with("https://");
        if !url_ok {
            return Err(ConfigError::invalid("songs.service_url", "must be an http(s) URL, or empty to leave the service off"));
        }
        if s.service_timeout_ms == 0 || s.service_retries > 10 {
            return Err(ConfigError::invalid("songs.service_timeout_ms", "must be positive, with at most 10 songs.service_retries"));
        }
        if s.max_track_secs < 10 || s.max_track_secs > 3_600 {
            return Err(ConfigError::invalid("songs.max_track_secs", "must be 10..=3600"));
        }
        Ok(())
    }
}
