//! Building the application from settings and running it until shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use reelq_shared::db::{self, DbError, tenants};
use reelq_shared::outbox::OutboxRelay;
use reelq_shared::queue::Publisher;
use reelq_shared::storage::Store;
use reelq_shared::telemetry::{spawn_named, stop_step};

use crate::routes::events::EventStreams;
use crate::settings::Settings;
use crate::state::{AppState, AuthCache};

/// Why the api could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
}

/// A built, not yet running, api.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects, migrates (when this process owns migrations), seeds the development key,
    /// and binds. The broker and storage may be down: the api still starts, and `/readyz` says so.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let pool = db::connect(&settings.database)?;
        if settings.database.run_migrations {
            db::migrate(&pool).await?;
        }
        if let Some(key) = &settings.api.dev_api_key {
            seed_dev_key(&pool, key).await?;
        }
        let store = Store::new(&settings.storage);
        if settings.storage.create_bucket
            && let Err(e) = store.ensure_bucket().await
        {
            tracing::warn!(error = %e, bucket = store.bucket(), "cannot ensure the bucket exists yet");
        }
        let publisher = Arc::new(Publisher::new(&settings.amqp, "reelq-api"));
        let listener = TcpListener::bind(&settings.api.bind).await.map_err(|source| StartupError::Bind { addr: settings.api.bind.clone(), source })?;
        let state = AppState {
            pool: pool.clone(),
            store,
            publisher,
            auth_cache: Arc::new(AuthCache::new(Duration::from_secs(settings.api.auth_cache_ttl_secs))),
            events: Arc::new(EventStreams::new(settings.api.max_event_streams, Duration::from_millis(settings.api.event_poll_ms))),
            relay_wake: Arc::new(tokio::sync::Notify::new()),
            submissions: AppState::submissions(&pool, !settings.api.run_relay),
            settings: Arc::new(settings),
        };
        Ok(Self { listener, state })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The handler state, for tests and tools.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests. Runs the outbox
    /// relay alongside unless disabled.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let state = self.state.clone();
        let relay = state.settings.api.run_relay.then(|| {
            let relay = OutboxRelay::new(
                state.pool.clone(),
                state.publisher.clone(),
                state.settings.api.outbox_batch,
                Duration::from_millis(state.settings.api.outbox_poll_ms),
            )
            .with_wake(state.relay_wake.clone());
            spawn_named("outbox-relay", relay.run(shutdown.clone()))
        });
        let sweeper = spawn_named("upload-sweeper", crate::ingest::run_upload_sweeper(state.clone(), shutdown.clone()));
        let retention = spawn_named("retention-sweeper", crate::retention::run_sweeper(state.clone(), shutdown.clone()));
        tracing::info!(addr = %self.local_addr(), "api listening");
        let app = crate::routes::router(state.clone());
        // Event streams last as long as their job: end them when shutdown begins, or the
        // graceful shutdown would wait for them.
        let events = state.events.clone();
        let stopping = shutdown.clone();
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                stopping.cancelled().await;
                events.close();
            })
            .await;
        shutdown.cancel();
        // Every step of the stop is bounded, so a stuck sweep, relay or connection never keeps
        // the process from exiting: what is left undone is redone by the next process.
        stop_step("upload sweeper", async { drop(sweeper.await) }).await;
        stop_step("retention sweeper", async { drop(retention.await) }).await;
        if let Some(r) = relay {
            stop_step("outbox relay", async { drop(r.await) }).await;
        }
        stop_step("broker connection", state.publisher.close()).await;
        stop_step("database pool", state.pool.close()).await;
        result
    }
}

/// Makes sure the configured development key works, for the `dev` tenant.
async fn seed_dev_key(pool: &sqlx::PgPool, key: &secrecy::SecretString) -> Result<(), DbError> {
    let tenant = tenants::upsert(pool, "dev", None).await?;
    let prefix = reelq_shared::auth::key_prefix(key).unwrap_or_default();
    tenants::insert_key(pool, tenant.id, &prefix, &reelq_shared::auth::hash_key(key.expose_secret()), "development key").await?;
    Ok(())
}
