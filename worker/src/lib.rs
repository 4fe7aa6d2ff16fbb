//! The reelq worker, the job service: consumes jobs from RabbitMQ, runs their analyses (the
//! pipeline of `reelq-analysis`) under a fenced lease in PostgreSQL, writes results, delivers
//! webhooks, and re-dispatches jobs whose worker vanished.

pub mod consumer;
pub mod dependencies;
/// The model runtime lives in `reelq-inference`; re-exported so `crate::inference` paths keep
/// working.
pub use reelq_inference as inference;
/// The media layer lives in `reelq-media`; re-exported so `crate::media` paths keep working.
pub use reelq_media as media;
pub mod model_pack;
pub mod registry;
pub mod runner;
pub mod settings;
pub mod songs;
pub mod training;
pub mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use reelq_shared::db::{self, DbError, jobs};
use reelq_shared::domain::{JobMessage, Priority};
use reelq_shared::metrics;
use reelq_shared::queue::{OutgoingMessage, Publisher, Topology};
use reelq_shared::storage::Store;
use reelq_shared::telemetry::spawn_named;

use dependencies::Dependencies;
pub use runner::{Disposition, JobRunner};
pub use settings::Settings;

/// Exports the pipeline's timings and every batched model call to the process's metrics.
pub(crate) struct Metrics;

impl reelq_analysis::Observer for Metrics {
    fn stage(&self, stage: &str, took: Duration) {
        metrics::get().stage_seconds.with_label_values(&[stage]).observe(took.as_secs_f64());
    }

    fn inference(&self, model: &str, took: Duration) {
        metrics::get().inference_seconds.with_label_values(&[model]).observe(took.as_secs_f64());
    }
}

fn record_batch(model: &str, took: Duration, batch_size: usize) {
    let m = metrics::get();
    m.inference_seconds.with_label_values(&[model]).observe(took.as_secs_f64());
    m.inference_batch_size.with_label_values(&[model]).observe(batch_size as f64);
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot build the webhook client: {0}")]
    Http(#[from] reqwest::Error),
}

/// A built worker.
pub struct Worker {
    settings: Arc<Settings>,
    pool: PgPool,
    runner: Arc<JobRunner>,
    publisher: Arc<Publisher>,
    health: TcpListener,
    abort: CancellationToken,
}

impl Worker {
    /// Connects lazily to PostgreSQL, storage and RabbitMQ and binds the health server.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        media::init();
        inference::observe_batches(record_batch);
        let pool = db::connect(&settings.database)?;
        let store = Store::new(&settings.storage);
        let publisher = Arc::new(Publisher::new(&settings.amqp, "reelq-worker-publisher"));
        let health = TcpListener::bind(&settings.worker.health_bind)
            .await
            .map_err(|source| StartupError::Bind { addr: settings.worker.health_bind.clone(), source })?;
        let settings = Arc::new(settings);
        let runner = Arc::new(JobRunner::new(pool.clone(), store, settings.clone()));
        if settings.hashtags.warm_up {
            let pipeline = runner.pipeline();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                match pipeline.warm_hashtags() {
                    Ok(n) => tracing::info!(descriptions = n, secs = started.elapsed().as_secs_f64(), "hashtag vocabulary embedded"),
                    // The first hashtag job embeds them, or says why it cannot.
                    Err(e) => tracing::warn!(error = %e, "hashtag vocabulary not embedded ahead of jobs"),
                }
            });
        }
        Ok(Self { settings, pool, runner, publisher, health, abort: CancellationToken::new() })
    }

    /// The runner, to process messages directly.
    pub fn runner(&self) -> Arc<JobRunner> {
        self.runner.clone()
    }

    /// Address of the health and metrics server.
    pub fn health_addr(&self) -> SocketAddr {
        self.health.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// A token that, when cancelled, abandons all work at once and drops the broker connections
    /// without acknowledging anything: what a crash does. Used for failure drills and tests.
    pub fn abort_handle(&self) -> CancellationToken {
        self.abort.clone()
    }

    /// Runs until `stop` is cancelled: stops consuming, lets in-flight jobs finish within the
    /// drain deadline, and leaves the rest to redelivery.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> std::io::Result<()> {
        let w = &self.settings.worker;
        let slots = Arc::new(Semaphore::new(w.concurrency));
        let drain = Duration::from_secs(w.shutdown_deadline_secs);
        let mut handles = Vec::new();
        let mut flags = Vec::new();
        for lane in Priority::ALL {
            // Batch work may fill only the unreserved slots; interactive may use them all.
            let prefetch = match lane {
                Priority::Interactive => w.concurrency,
                Priority::Batch => w.concurrency.saturating_sub(w.interactive_reserved).max(1),
            };
            let connected = Arc::new(AtomicBool::new(false));
            flags.push(connected.clone());
            let consumer = consumer::LaneConsumer {
                lane,
                prefetch: u16::try_from(prefetch).unwrap_or(u16::MAX),
                amqp: self.settings.amqp.clone(),
                runner: self.runner.clone(),
                publisher: self.publisher.clone(),
                slots: slots.clone(),
                stop: stop.clone(),
                abort: self.abort.clone(),
                drain,
                connected,
            };
            handles.push(spawn_named(if lane == Priority::Interactive { "consume-interactive" } else { "consume-batch" }, consumer.run()));
        }
        let background = stop.child_token();
        if w.run_webhooks {
            let sender = webhooks::WebhookSender::new(self.pool.clone(), self.settings.webhooks.clone(), self.runner.dependencies())
                .map_err(std::io::Error::other)?;
            spawn_named("webhooks", sender.run(Duration::from_millis(w.webhook_poll_ms), background.clone()));
        }
        let deps = self.runner.dependencies();
        spawn_named(
            "reaper",
            reap(self.pool.clone(), self.publisher.clone(), Topology::new(&self.settings.amqp), self.settings.clone(), deps.clone(), background.clone()),
        );
        let health = HealthState { pool: self.pool.clone(), consumers: Arc::new(flags), deps };
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(|| async { metrics::get().render() }))
            .with_state(health);
        let abort = self.abort.clone();
        let server_stop = stop.clone();
        let server = spawn_named(
            "health-server",
            axum::serve(self.health, app)
                .with_graceful_shutdown(async move {
                    tokio::select! {
                        () = server_stop.cancelled() => {}
                        () = abort.cancelled() => {}
                    }
                })
                .into_future(),
        );
        tracing::info!(concurrency = w.concurrency, "worker running");
        for h in handles {
            let _ = h.await;
        }
        background.cancel();
        let _ = server.await;
        self.publisher.close().await;
        Ok(())
    }
}

#[derive(Clone)]
struct HealthState {
    pool: PgPool,
    consumers: Arc<Vec<Arc<AtomicBool>>>,
    deps: Arc<Dependencies>,
}

async fn readyz(State(h): State<HealthState>) -> (StatusCode, String) {
    if let Some(down) = h.deps.down() {
        return (StatusCode::SERVICE_UNAVAILABLE, format!("unready: {} down; jobs wait for it", down.as_str()));
    }
    let db_ok = matches!(tokio::time::timeout(Duration::from_secs(2), db::ping(&h.pool)).await, Ok(Ok(())));
    let consuming = h.consumers.iter().all(|c| c.load(Ordering::Relaxed));
    if db_ok && consuming { (StatusCode::OK, "ready".to_owned()) } else { (StatusCode::SERVICE_UNAVAILABLE, "unready".to_owned()) }
}

/// A transaction older than this that holds a snapshot is named in a warning.
const OLD_TRANSACTION: Duration = Duration::from_secs(60);
/// At most one such warning per this long.
const OLD_TRANSACTION_WARN_EVERY: Duration = Duration::from_secs(60);
/// The reaper reads lapsed leases from this long before where its last pass left off (at least
/// one pass interval), so a lease committed late is not skipped.
const STALE_LEASE_MARGIN: Duration = Duration::from_secs(60);
/// And reads every lapsed lease this often, whatever its passes left off.
const STALE_LEASE_FULL_SCAN_EVERY: Duration = Duration::from_secs(600);

/// Exports the age of the cluster's oldest transaction that holds a snapshot and, past
/// [`OLD_TRANSACTION`], names its session in a warning: while it stays open PostgreSQL keeps
/// every row version newer than it, and the queue's claims and scans slow down.
async fn watch_horizon(pool: &PgPool, warned: &mut Option<std::time::Instant>) {
    let oldest = match db::horizon::oldest_transaction(pool).await {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the oldest transaction");
            return;
        }
    };
    let age = oldest.as_ref().map_or(0.0, |o| o.age_secs);
    reelq_shared::metrics::get().db_oldest_transaction_seconds.set(age as i64);
    if let Some(o) = oldest
        && age >= OLD_TRANSACTION.as_secs_f64()
        && warned.is_none_or(|at| at.elapsed() >= OLD_TRANSACTION_WARN_EVERY)
    {
        *warned = Some(std::time::Instant::now());
        tracing::warn!(
            pid = o.pid,
            user = %o.user,
            application = %o.application,
            state = %o.state,
            age_secs = age.round(),
            "a transaction of another session has held a snapshot for over a minute: PostgreSQL keeps every row version newer than it, \
             so claims and the reaper slow down the longer it stays open; end it (pg_terminate_backend) or bound such sessions \
             with idle_in_transaction_session_timeout"
        );
    }
}

/// Re-dispatches running jobs whose lease lapsed long ago (their worker died after its message
/// was settled, or the broker lost it), and jobs waiting for a retry whose delayed message
/// never came back. Duplicates are harmless: the claim decides. It pauses while a dependency is
/// down, when waiting jobs are expected and their messages are held by the consumers.
async fn reap(pool: PgPool, publisher: Arc<Publisher>, topology: Topology, settings: Arc<Settings>, deps: Arc<Dependencies>, cancel: CancellationToken) {
    let every = Duration::from_secs(settings.worker.reaper_interval_secs.max(1));
    let grace = Duration::from_millis(settings.worker.lease_ttl_ms) * 2;
    // The longest a released job waits for its delayed message, with room for a slow broker.
    let retry_grace = Duration::from_millis(topology.delays_ms().max().unwrap_or(0)) * 2 + grace;
    // A lease written by a transaction that committed this late after its clock is still seen.
    let margin = every.max(STALE_LEASE_MARGIN);
    let mut warned: Option<std::time::Instant> = None;
    // Each pass reads leases from where the last one left off, and the whole index now and then.
    let mut since = None;
    let mut full_scan_at = std::time::Instant::now();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        if !deps.is_up() {
            continue;
        }
        watch_horizon(&pool, &mut warned).await;
        if full_scan_at.elapsed() >= STALE_LEASE_FULL_SCAN_EVERY {
            since = None;
            full_scan_at = std::time::Instant::now();
        }
        let mut stale = match jobs::stale_leases(&pool, grace, margin, since, 100).await {
            Ok(s) => {
                since = s.next_since;
                s.jobs
            }
            Err(e) => {
                tracing::debug!(error = %e, "reaper pass failed");
                continue;
            }
        };
        match jobs::lost_retries(&pool, retry_grace, 100).await {
            Ok(lost) => stale.extend(lost),
            Err(e) => tracing::debug!(error = %e, "reaper pass for lost retries failed"),
        }
        if stale.is_empty() {
            continue;
        }
        let messages: Vec<OutgoingMessage> = stale
            .iter()
            .map(|(job_id, tenant_id, lane)| OutgoingMessage {
                exchange: topology.jobs_exchange(),
                routing_key: lane.clone(),
                payload: serde_json::to_vec(&JobMessage { job_id: *job_id, tenant_id: *tenant_id }).unwrap_or_default(),
                headers: Default::default(),
                rounds: None,
            })
            .collect();
        match publisher.publish_all(&messages).await {
            Ok(()) => tracing::info!(count = messages.len(), "re-dispatched jobs whose worker vanished"),
            Err(e) => tracing::warn!(error = %e, "reaper could not publish"),
        }
    }
}
