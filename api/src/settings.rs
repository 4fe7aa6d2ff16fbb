//! The api's settings: the shared sections plus `[api]`.

use secrecy::SecretString;
use serde::Deserialize;

use reelq_shared::config::{AmqpSettings, CommonSettings, ConfigError, DatabaseSettings, StorageSettings, TelemetrySettings, Validate, WebhookSettings};

/// Everything the api reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub webhooks: WebhookSettings,
    pub api: ApiSettings,
    pub retention: RetentionSettings,
}

/// The `[retention]` section: how long uploads, outputs and finished jobs are kept. Ages are
/// in days; 0 keeps forever.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days a stored upload's bytes are kept after it was stored. The video row, its jobs and
    /// their results stay (the video becomes `expired`); uploads a queued or running job still
    /// needs wait for it.
    pub upload_days: u32,
    /// Days a `mux` output file is kept after its job succeeded. The result stays, marked with
    /// `expired_at`; downloading answers 410.
    pub output_days: u32,
    /// Days a finished job (with its results and webhook record) is kept after it ended. Jobs
    /// a creator gave feedback on are kept as training examples.
    pub finished_job_days: u32,
    /// How often the sweep runs, in seconds. Each replica sweeps; they take disjoint batches.
    pub sweep_interval_secs: u64,
    /// Rows one sweep transaction takes.
    pub sweep_batch: i64,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self { upload_days: 30, output_days: 30, finished_job_days: 0, sweep_interval_secs: 300, sweep_batch: 500 }
    }
}

/// The `[api]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// Address to listen on; port 0 picks a free one.
    pub bind: String,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: u64,
    /// Accept diagnostic analyses (`noop`). Off in production.
    pub allow_diagnostics: bool,
    /// A key seeded at start for the `dev` tenant, so a local stack works at once. Leave unset
    /// in production (`REELQ__API__DEV_API_KEY`).
    pub dev_api_key: Option<SecretString>,
    /// Attempts a job gets for transient faults.
    pub max_attempts: i32,
    /// Outbox rows published per relay pass.
    pub outbox_batch: i64,
    /// Relay poll interval when no notification arrives.
    pub outbox_poll_ms: u64,
    /// When set, `/metrics` requires `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretString>,
    /// How long an authenticated key is remembered. A revoked key keeps working this long.
    pub auth_cache_ttl_secs: u64,
    /// Deadline of every request except uploads.
    pub request_timeout_secs: u64,
    /// Largest page of `GET /v1/jobs`.
    pub max_page_size: i64,
    /// Most jobs one `POST /v1/jobs:batch` may carry.
    pub max_batch_jobs: usize,
    /// Run the outbox relay in this process.
    pub run_relay: bool,
    /// How often each job event stream re-reads its job row, in milliseconds.
    pub event_poll_ms: u64,
    /// Job event streams open at once in this process; more are refused with 429.
    pub max_event_streams: usize,
    /// An upload body that sends nothing for this long is cut off with 408.
    pub upload_idle_timeout_secs: u64,
    /// An upload body still arriving this long after it began is cut off with 408.
    pub upload_body_timeout_secs: u64,
    /// Uploads one tenant may stream through this process at once; more are refused with 429.
    pub max_concurrent_uploads: usize,
    /// A presigned upload not completed within this many seconds is removed with its bytes.
    pub pending_upload_ttl_secs: u64,
    /// How often expired pending uploads are swept.
    pub upload_sweep_interval_secs: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            max_upload_bytes: 1024 * 1024 * 1024,
            allow_diagnostics: true,
            dev_api_key: None,
            max_attempts: 5,
            outbox_batch: 500,
            outbox_poll_ms: 1_000,
            metrics_token: None,
            auth_cache_ttl_secs: 30,
            request_timeout_secs: 30,
            max_page_size: 200,
            max_batch_jobs: 1000,
            run_relay: true,
            event_poll_ms: 300,
            max_event_streams: 512,
            upload_idle_timeout_secs: 30,
            upload_body_timeout_secs: 3_600,
            max_concurrent_uploads: 4,
            pending_upload_ttl_secs: 86_400,
            upload_sweep_interval_secs: 300,
        }
    }
}

impl Settings {
    /// The shared sections, for code that wants them together.
    pub fn common(&self) -> CommonSettings {
        CommonSettings {
            database: self.database.clone(),
            amqp: self.amqp.clone(),
            storage: self.storage.clone(),
            telemetry: self.telemetry.clone(),
            webhooks: self.webhooks.clone(),
        }
    }
}

impl Validate for Settings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.common().validate()?;
        if self.api.bind.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::invalid("api.bind", "must be an address such as 0.0.0.0:8080"));
        }
        if self.api.max_upload_bytes == 0 {
            return Err(ConfigError::invalid("api.max_upload_bytes", "must be positive"));
        }
        if !(1..=100).contains(&self.api.max_attempts) {
            return Err(ConfigError::invalid("api.max_attempts", "must be between 1 and 100"));
        }
        if self.api.outbox_batch < 1 {
            return Err(ConfigError::invalid("api.outbox_batch", "must be at least 1"));
        }
        if !(1..=10_000).contains(&self.api.max_batch_jobs) {
            return Err(ConfigError::invalid("api.max_batch_jobs", "must be between 1 and 10000"));
        }
        if self.api.max_page_size < 1 {
            return Err(ConfigError::invalid("api.max_page_size", "must be at least 1"));
        }
        if !(50..=10_000).contains(&self.api.event_poll_ms) {
            return Err(ConfigError::invalid("api.event_poll_ms", "must be between 50 and 10000"));
        }
        if self.api.max_event_streams == 0 {
            return Err(ConfigError::invalid("api.max_event_streams", "must be at least 1"));
        }
        if self.api.upload_idle_timeout_secs == 0 {
            return Err(ConfigError::invalid("api.upload_idle_timeout_secs", "must be at least 1"));
        }
        if self.api.upload_body_timeout_secs < self.api.upload_idle_timeout_secs {
            return Err(ConfigError::invalid("api.upload_body_timeout_secs", "must be at least api.upload_idle_timeout_secs"));
        }
        if self.api.max_concurrent_uploads == 0 {
            return Err(ConfigError::invalid("api.max_concurrent_uploads", "must be at least 1"));
        }
        // An upload slot must outlive its URL, or a PUT could land after the sweep removed the
        // slot and leave bytes nothing refers to.
        if self.api.pending_upload_ttl_secs <= self.storage.presign_ttl_secs {
            return Err(ConfigError::invalid("api.pending_upload_ttl_secs", "must be longer than storage.presign_ttl_secs"));
        }
        if self.api.upload_sweep_interval_secs == 0 {
            return Err(ConfigError::invalid("api.upload_sweep_interval_secs", "must be at least 1"));
        }
        let r = &self.retention;
        if r.sweep_interval_secs == 0 {
            return Err(ConfigError::invalid("retention.sweep_interval_secs", "must be at least 1"));
        }
        if !(1..=10_000).contains(&r.sweep_batch) {
            return Err(ConfigError::invalid("retention.sweep_batch", "must be between 1 and 10000"));
        }
        if r.finished_job_days > 0 && (r.output_days == 0 || r.output_days > r.finished_job_days) {
            return Err(ConfigError::invalid(
                "retention.output_days",
                "must be set and at most retention.finished_job_days, so that no output outlives its job",
            ));
        }
        if let Some(key) = &self.api.dev_api_key
            && reelq_shared::auth::key_prefix(key).is_none()
        {
            return Err(ConfigError::invalid("api.dev_api_key", "must look like rq_<prefix>_<secret>"));
        }
        Ok(())
    }
}
