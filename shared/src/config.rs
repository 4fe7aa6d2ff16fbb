//! The configuration sections of the services' infrastructure (database, broker, storage,
//! telemetry, webhooks). Loading and validation live in `reelq-settings`, re-exported here.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use reelq_settings::{ConfigError, Validate, load, load_from};

/// PostgreSQL connection.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// Connection URL (`REELQ__DATABASE__URL`). Secret: it may carry a password.
    pub url: SecretString,
    /// Pool size per process.
    pub max_connections: u32,
    /// How long to wait for a pooled connection before failing the call.
    pub acquire_timeout_ms: u64,
    /// Server-side limit on any single statement.
    pub statement_timeout_ms: u64,
    /// Whether this process applies the embedded migrations at start. Only one kind of process
    /// (the api, or a migrations job) should own this.
    pub run_migrations: bool,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("postgres://postgres@127.0.0.1:5432/reelq"),
            max_connections: 16,
            acquire_timeout_ms: 5_000,
            statement_timeout_ms: 15_000,
            run_migrations: true,
        }
    }
}

impl DatabaseSettings {
    /// Pool acquire timeout.
    pub fn acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.acquire_timeout_ms)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose_secret();
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(ConfigError::invalid("database.url", "must start with postgres://"));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::invalid("database.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

/// RabbitMQ connection and queue topology.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpSettings {
    /// Broker URL (`REELQ__AMQP__URL`). Secret: it carries credentials.
    pub url: SecretString,
    /// Prefix of every exchange and queue name, so that several deployments (or test runs) can
    /// share one broker.
    pub prefix: String,
    /// Delays of the retry queues, shortest first; attempt `n` waits `retry_delays_ms[n-1]`
    /// (the last one repeats). Changing them declares new queues.
    pub retry_delays_ms: Vec<u64>,
    /// Delay before a message that could not be started yet (lease held elsewhere, tenant at
    /// its cap) is offered again. Does not count as an attempt.
    pub defer_delay_ms: u64,
    /// Deliveries after which a quorum queue dead-letters a message that keeps crashing
    /// workers before they can settle it.
    pub delivery_limit: u32,
    /// How long to wait for a publisher confirm.
    pub confirm_timeout_ms: u64,
    /// Delay between reconnection attempts, doubled up to 30 s.
    pub reconnect_delay_ms: u64,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from("amqp://guest:guest@127.0.0.1:5672/%2f"),
            prefix: "reelq".to_owned(),
            retry_delays_ms: vec![1_000, 5_000, 30_000, 120_000],
            defer_delay_ms: 1_000,
            delivery_limit: 20,
            confirm_timeout_ms: 10_000,
            reconnect_delay_ms: 500,
        }
    }
}

impl AmqpSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.url.expose_secret();
        if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
            return Err(ConfigError::invalid("amqp.url", "must start with amqp:// or amqps://"));
        }
        if self.retry_delays_ms.is_empty() || self.retry_delays_ms.contains(&0) {
            return Err(ConfigError::invalid("amqp.retry_delays_ms", "needs at least one delay, none of them 0"));
        }
        if self.prefix.is_empty() || !self.prefix.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
            return Err(ConfigError::invalid("amqp.prefix", "letters, digits, '.', '_' and '-' only"));
        }
        if self.defer_delay_ms == 0 {
            return Err(ConfigError::invalid("amqp.defer_delay_ms", "must be positive"));
        }
        Ok(())
    }
}

/// S3-compatible object storage (MinIO locally).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSettings {
    /// Endpoint URL; path-style addressing is always used.
    pub endpoint: String,
    /// Region name sent in signatures.
    pub region: String,
    /// Bucket holding uploads (and later model packs).
    pub bucket: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key (`REELQ__STORAGE__SECRET_KEY`).
    pub secret_key: SecretString,
    /// Create the bucket at start when it is missing.
    pub create_bucket: bool,
    /// Multipart part size for streamed uploads. S3 needs at least 5 MiB.
    pub part_size_bytes: usize,
    /// Parts uploaded at once per upload; an upload holds about this plus one parts in memory.
    pub upload_concurrency: usize,
    /// Lifetime of presigned URLs.
    pub presign_ttl_secs: u64,
    /// Timeout of a single S3 call (a part upload, a GET's first byte).
    pub operation_timeout_ms: u64,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:9000".to_owned(),
            region: "us-east-1".to_owned(),
            bucket: "reelq".to_owned(),
            access_key: "reelq".to_owned(),
            secret_key: SecretString::from("reelq-dev-secret"),
            create_bucket: true,
            // Measured with scripts/bench-upload (1 GiB): 8 MiB × 3 peaked at 58 MiB resident,
            // × 4 at 66 MiB, over the 64 MB an api should need for one upload, and no faster.
            part_size_bytes: 8 * 1024 * 1024,
            upload_concurrency: 3,
            presign_ttl_secs: 3_600,
            operation_timeout_ms: 60_000,
        }
    }
}

impl StorageSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if url::Url::parse(&self.endpoint).is_err() {
            return Err(ConfigError::invalid("storage.endpoint", "must be a URL"));
        }
        if self.part_size_bytes < 5 * 1024 * 1024 {
            return Err(ConfigError::invalid("storage.part_size_bytes", "S3 needs parts of at least 5 MiB"));
        }
        if self.upload_concurrency == 0 {
            return Err(ConfigError::invalid("storage.upload_concurrency", "must be at least 1"));
        }
        if self.bucket.is_empty() {
            return Err(ConfigError::invalid("storage.bucket", "must not be empty"));
        }
        Ok(())
    }
}

/// Logs and traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `json` for machines, `pretty` for people.
    pub log_format: LogFormat,
    /// `tracing` filter directives, as in `RUST_LOG` (which overrides it when set).
    pub log_filter: String,
    /// OTLP/HTTP traces endpoint (for example `http://jaeger:4318/v1/traces`); traces are not
    /// exported when unset.
    pub otlp_endpoint: Option<String>,
    /// Fraction of new traces sampled (0.0 to 1.0); a sampled parent is always followed.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self { log_format: LogFormat::Json, log_filter: "info,sqlx=warn,lapin=warn,aws=warn".to_owned(), otlp_endpoint: None, trace_sample_ratio: 1.0 }
    }
}

impl TelemetrySettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            return Err(ConfigError::invalid("telemetry.trace_sample_ratio", "must be between 0.0 and 1.0"));
        }
        if let Some(e) = self.otlp_endpoint.as_deref().filter(|e| !e.is_empty())
            && url::Url::parse(e).is_err()
        {
            return Err(ConfigError::invalid("telemetry.otlp_endpoint", "must be a URL"));
        }
        Ok(())
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object a line, with trace ids.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Completion callbacks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookSettings {
    /// Key of the HMAC-SHA256 signature sent with every callback (`REELQ__WEBHOOKS__SIGNING_SECRET`).
    pub signing_secret: SecretString,
    /// Accept callback URLs that resolve to loopback, private or link-local addresses.
    /// Off in production: such URLs would let a tenant probe the internal network.
    pub allow_private: bool,
    /// Timeout of one delivery.
    pub timeout_ms: u64,
    /// Deliveries tried before giving up.
    pub max_attempts: u32,
    /// First retry delay, doubled each time.
    pub backoff_base_ms: u64,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            signing_secret: SecretString::from("reelq-dev-webhook-secret"),
            allow_private: false,
            timeout_ms: 10_000,
            max_attempts: 8,
            backoff_base_ms: 1_000,
        }
    }
}

impl WebhookSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.signing_secret.expose_secret().len() < 16 {
            return Err(ConfigError::invalid("webhooks.signing_secret", "must be at least 16 characters"));
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::invalid("webhooks.max_attempts", "must be at least 1"));
        }
        Ok(())
    }
}

/// The sections every process shares.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CommonSettings {
    /// PostgreSQL.
    pub database: DatabaseSettings,
    /// RabbitMQ.
    pub amqp: AmqpSettings,
    /// Object storage.
    pub storage: StorageSettings,
    /// Logging.
    pub telemetry: TelemetrySettings,
    /// Completion callbacks.
    pub webhooks: WebhookSettings,
}

impl Validate for CommonSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        self.database.validate()?;
        self.amqp.validate()?;
        self.storage.validate()?;
        self.telemetry.validate()?;
        self.webhooks.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn env(pairs: &[(&str, &str)]) -> ::config::Environment {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        ::config::Environment::with_prefix("REELQ").source(Some(map))
    }

    #[test]
    fn defaults_load_without_files() {
        let dir = tempdir();
        let s: CommonSettings = load_from(&dir, "local", env(&[])).expect("defaults are valid");
        assert_eq!(s.amqp.prefix, "reelq");
        assert_eq!(s.storage.part_size_bytes, 8 * 1024 * 1024);
    }

    #[test]
    fn environment_overrides_files_and_parses_lists() {
        let dir = tempdir();
        std::fs::write(dir.join("default.toml"), "[amqp]\nprefix = \"fromfile\"\n[database]\nmax_connections = 3\n").expect("write");
        let s: CommonSettings =
            load_from(&dir, "local", env(&[("REELQ__AMQP__PREFIX", "fromenv"), ("REELQ__AMQP__RETRY_DELAYS_MS", "10,20,30")])).expect("valid");
        assert_eq!(s.amqp.prefix, "fromenv");
        assert_eq!(s.amqp.retry_delays_ms, vec![10, 20, 30]);
        assert_eq!(s.database.max_connections, 3);
    }

    #[test]
    fn bad_values_name_their_key() {
        let dir = tempdir();
        let err = load_from::<CommonSettings>(&dir, "local", env(&[("REELQ__STORAGE__PART_SIZE_BYTES", "1024")])).expect_err("too small");
        assert!(err.to_string().contains("storage.part_size_bytes"), "{err}");

        let err = load_from::<CommonSettings>(&dir, "local", env(&[("REELQ__DATABASE__MAX_CONNECTIONS", "many")])).expect_err("not a number");
        assert!(err.to_string().contains("max_connections"), "{err}");
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("reelq-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        dir
    }
}
