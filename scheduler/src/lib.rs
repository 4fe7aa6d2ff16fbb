//! The reelq scheduler: keeps suggestions current by pulling TikTok data on cron schedules
//! (the Research API, or imported dumps), storing videos with engagement snapshots, and
//! recomputing trending hashtags after each pull. Several replicas may run: one leader per
//! schedule at a time, through a PostgreSQL advisory lock. It also serves health and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde::Deserialize;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use reelq_shared::config::{AmqpSettings, CommonSettings, ConfigError, DatabaseSettings, StorageSettings, TelemetrySettings, Validate, WebhookSettings};
use reelq_shared::db::{self, DbError};
use reelq_shared::metrics;
use reelq_shared::storage::Store;

pub mod cron;
pub mod dump;
pub mod runner;
pub mod settings;
pub mod source;
pub mod tiktok;
pub mod train;
pub mod trends;

pub use settings::{ScheduleSettings, SchedulerSettings, SourceKind, TikTokSettings, TrendSettings};

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
        self.scheduler.validate()
    }
}

/// Why the scheduler could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("schedule `{name}`: {message}")]
    Schedule { name: String, message: String },
}

/// A built scheduler.
pub struct Scheduler {
    pool: PgPool,
    health: TcpListener,
    runner: runner::Runner,
}

impl Scheduler {
    /// Connects (lazily), builds the sources of every schedule, and binds the health server.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Migrations belong to the api (or a migrations job): until they are applied the
        // scheduler keeps retrying to register its schedules.
        let pool = db::connect(&settings.database)?;
        let store = Store::new(&settings.storage);
        let schedules = build_schedules(&settings.scheduler, &store)?;
        let runner = runner::Runner::new(pool.clone(), &settings.database, &settings.scheduler, schedules)?;
        let health = TcpListener::bind(&settings.scheduler.health_bind)
            .await
            .map_err(|source| StartupError::Bind { addr: settings.scheduler.health_bind.clone(), source })?;
        Ok(Self { pool, health, runner })
    }

    /// Address of the health server.
    pub fn health_addr(&self) -> SocketAddr {
        self.health.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// This process's id in the run history.
    pub fn runner_id(&self) -> String {
        self.runner.id().to_owned()
    }

    /// Runs the schedules and serves health until `stop` is cancelled; a pull in progress
    /// saves its resume point and ends as `partial`.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(|| async { metrics::get().render() }))
            .with_state(self.pool.clone());
        tracing::info!(addr = %self.health_addr(), runner = %self.runner.id(), "scheduler started");
        let loop_task = reelq_shared::telemetry::spawn_named("schedules", self.runner.run(stop.clone()));
        let served = axum::serve(self.health, app).with_graceful_shutdown(stop.clone().cancelled_owned()).await;
        stop.cancel();
        if let Err(e) = loop_task.await {
            tracing::error!(error = %e, "the schedule loop panicked");
        }
        // Bounded, so a connection that does not come back never keeps the process alive.
        reelq_shared::telemetry::stop_step("database pool", self.pool.close()).await;
        served
    }
}

/// One [`runner::Schedule`] per configured schedule, sharing one TikTok client (and so one
/// token).
fn build_schedules(settings: &SchedulerSettings, store: &Store) -> Result<Vec<runner::Schedule>, StartupError> {
    let limits = settings.tiktok();
    let client = Arc::new(tiktok::TikTokClient::new(&limits).map_err(|e| StartupError::Schedule { name: "*".into(), message: e.to_string() })?);
    settings
        .schedules
        .iter()
        .map(|(name, s)| {
            let cron = cron::parse(&s.cron).map_err(|e| StartupError::Schedule { name: name.clone(), message: e.to_string() })?;
            let source: Arc<dyn source::Source> = match s.source {
                SourceKind::Tiktok => Arc::new(tiktok::TikTokSource::new(client.clone(), &limits, s)),
                SourceKind::Dump => Arc::new(dump::DumpSource::new(s.path.as_deref().unwrap_or_default(), s.format, Some(store.clone()))),
                SourceKind::Train => Arc::new(train::TrainSource::new(s.training.clone())),
            };
            Ok(runner::Schedule { name: name.clone(), expression: s.cron.clone(), cron, enabled: s.enabled, source })
        })
        .collect()
}

async fn readyz(State(pool): State<PgPool>) -> (StatusCode, &'static str) {
    match tokio::time::timeout(Duration::from_secs(2), db::ping(&pool)).await {
        Ok(Ok(())) => (StatusCode::OK, "ready"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "unready"),
    }
}
