//! The services every job needs, PostgreSQL and storage: noticing when one is down, holding new
//! work back until it returns, and retrying the writes that record an outcome.
//!
//! A job that fails because a dependency is down is not at fault. Its attempt is given back and
//! the worker starts no new job until a probe finds every dependency again, so an outage of any
//! length ends with the waiting jobs running rather than dead-lettered. Only faults seen while
//! the dependencies answer spend a job's attempts.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use reelq_shared::db::{self, DbError};
use reelq_shared::storage::Store;
use reelq_shared::telemetry::spawn_named;

/// Longest a single probe may take before its dependency counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Tries of an outcome write that fails while the database answers probes (a statement that
/// keeps failing on a healthy server will not start working by waiting).
const WRITE_TRIES_WHILE_UP: u32 = 4;

/// A dependency a job cannot do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Database,
    Storage,
}

impl Dependency {
    /// Name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Database => "database",
            Self::Storage => "storage",
        }
    }
}

struct GateState {
    down: Option<Dependency>,
    probing: bool,
}

/// What the worker knows about its dependencies. Cheap to share behind an `Arc`.
pub struct Dependencies {
    pool: PgPool,
    store: Store,
    probe_every: Duration,
    state: Mutex<GateState>,
    up: watch::Sender<bool>,
}

impl Dependencies {
    /// Starts out assuming both are up; the first fault finds out otherwise.
    pub fn new(pool: PgPool, store: Store, probe_every: Duration) -> Arc<Self> {
        let (up, _) = watch::channel(true);
        Arc::new(Self { pool, store, probe_every, state: Mutex::new(GateState { down: None, probing: false }), up })
    }

    /// Whether no dependency is known to be down.
    pub fn is_up(&self) -> bool {
        *self.up.borrow()
    }

    /// The dependency last found down, while the gate is closed.
    pub fn down(&self) -> Option<Dependency> {
        self.state.lock().ok().and_then(|s| s.down)
    }

    /// Probes the database, then storage; returns the first that does not answer.
    pub async fn probe(&self) -> Option<Dependency> {
        if !matches!(tokio::time::timeout(PROBE_TIMEOUT, db::ping(&self.pool)).await, Ok(Ok(()))) {
            return Some(Dependency::Database);
        }
        if !matches!(tokio::time::timeout(PROBE_TIMEOUT, self.store.ping()).await, Ok(Ok(()))) {
            return Some(Dependency::Storage);
        }
        None
    }

    /// Called after a transient fault: probes now and, when a dependency is down, closes the
    /// gate until a background probe finds everything again. Returns what is down.
    pub async fn check_after_fault(self: &Arc<Self>) -> Option<Dependency> {
        let down = self.probe().await;
        if let Some(d) = down {
            self.mark_down(d);
        }
        down
    }

    fn mark_down(self: &Arc<Self>, dependency: Dependency) {
        let Ok(mut state) = self.state.lock() else { return };
        if state.down.is_none() {
            tracing::warn!(dependency = dependency.as_str(), "dependency down; no new jobs start until it answers again");
        }
        state.down = Some(dependency);
        self.up.send_replace(false);
        if !state.probing {
            state.probing = true;
            spawn_named("dependency-probe", self.clone().probe_until_up());
        }
    }

    async fn probe_until_up(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.probe_every).await;
            let found = self.probe().await;
            let Ok(mut state) = self.state.lock() else { return };
            match found {
                Some(d) => state.down = Some(d),
                None => {
                    tracing::info!(was_down = state.down.map(Dependency::as_str), "dependencies answer again; taking jobs");
                    state.down = None;
                    state.probing = false;
                    self.up.send_replace(true);
                    return;
                }
            }
        }
    }

    /// Returns once no dependency is known to be down.
    pub async fn wait_until_up(&self) {
        let mut rx = self.up.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we are borrowed.
        let _ = rx.wait_for(|up| *up).await;
    }

    /// Runs a write that records an outcome (a completion, a failure, a released lease, a
    /// delivered webhook) until it succeeds. While the database is down it waits for it and
    /// tries again, for as long as the outage lasts, so that finished work is never redone
    /// because its record could not be written; a write that fails while the database answers
    /// is tried a few times with backoff, then its error is returned.
    pub async fn persist<T, F, Fut>(self: &Arc<Self>, what: &'static str, mut write: F) -> Result<T, DbError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DbError>>,
    {
        let mut failures_while_up = 0;
        let mut backoff = Duration::from_millis(100);
        loop {
            let err = match write().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if self.check_after_fault().await == Some(Dependency::Database) {
                tracing::warn!(write = what, error = %err, "database down; the write waits for it");
                self.wait_until_up().await;
                continue;
            }
            failures_while_up += 1;
            if failures_while_up >= WRITE_TRIES_WHILE_UP {
                return Err(err);
            }
            tracing::warn!(write = what, error = %err, retry_in_ms = backoff.as_millis() as u64, "write failed; trying again");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
