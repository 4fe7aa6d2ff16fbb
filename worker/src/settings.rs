//! The worker's settings: the shared sections, `[worker]`, and the analysis sections
//! (`[media]`, `[inference]`, `[hashtags]`) from `reelq-analysis`.

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
        Ok(())
    }
}
