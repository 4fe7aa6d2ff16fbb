//! The reelq scheduler. For now it connects to PostgreSQL, serves health and metrics, and waits;
//! periodic data pulls, training and model promotion run here as they are added, with one
//! leader at a time through a PostgreSQL advisory lock.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use reelq_shared::config::{
    AmqpSettings, CommonSettings, ConfigError, DatabaseSettings, StorageSettings, TelemetrySettings, Validate,
    WebhookSettings,
};
use reelq_shared::db::{self, DbError};
use reelq_shared::metrics;

/// Everything the scheduler reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub storage: StorageSettings,
    pub telemetry: TelemetrySettings,
    pub webhooks: WebhookSettings,
    pub scheduler: SchedulerSettings,
}

/// The `[scheduler]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SchedulerSettings {
    /// Address of the health and metrics server; port 0 picks one.
    pub health_bind: String,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self { health_bind: "127.0.0.1:8082".to_owned() }
    }
}

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
        if self.scheduler.health_bind.parse::<SocketAddr>().is_err() {
            return Err(ConfigError::invalid("scheduler.health_bind", "must be an address such as 0.0.0.0:8082"));
        }
        Ok(())
    }
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A built scheduler.
pub struct Scheduler {
    pool: PgPool,
    health: TcpListener,
}

impl Scheduler {
    /// Connects (lazily) and binds the health server.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = db::connect(&settings.database)?;
        let health = TcpListener::bind(&settings.scheduler.health_bind)
            .await
            .map_err(|source| StartupError::Bind { addr: settings.scheduler.health_bind.clone(), source })?;
        Ok(Self { pool, health })
    }

    /// Address of the health server.
    pub fn health_addr(&self) -> SocketAddr {
        self.health.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves health until `stop` is cancelled.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(|| async { metrics::get().render() }))
            .with_state(self.pool.clone());
        tracing::info!(addr = %self.health_addr(), "scheduler idle: no schedules configured");
        axum::serve(self.health, app).with_graceful_shutdown(stop.cancelled_owned()).await?;
        self.pool.close().await;
        Ok(())
    }
}

async fn readyz(State(pool): State<PgPool>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), db::ping(&pool)).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unready"),
    }
}
