//! The outbox relay: publishes the messages that submissions wrote into PostgreSQL, with
//! publisher confirms, and deletes them only after the broker has confirmed them.
//!
//! Several relays (one per api replica) may run at once: each locks its batch with
//! `FOR UPDATE SKIP LOCKED`. A crash between confirm and delete publishes a batch twice;
//! consumers are idempotent, so that is harmless. If the broker is down, rows wait and the
//! relay retries with backoff, so a submission never fails because of the broker.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use std::collections::HashMap;

use crate::db::{self, DbError};
use crate::queue::{OutgoingMessage, Publisher, QueueError};
use crate::{metrics, telemetry};

/// A relay pass failed; the rows stay for the next pass.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// RabbitMQ failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Publishes outbox rows.
pub struct OutboxRelay {
    pool: PgPool,
    publisher: Arc<Publisher>,
    batch: i64,
    poll: Duration,
}

impl OutboxRelay {
    /// A relay publishing up to `batch` rows per pass, polling every `poll` when no
    /// notification arrives.
    pub fn new(pool: PgPool, publisher: Arc<Publisher>, batch: i64, poll: Duration) -> Self {
        Self { pool, publisher, batch, poll }
    }

    /// Publishes one batch; returns how many rows were published.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let mut tx = db::timed("outbox.begin", self.pool.begin()).await?;
        let rows = db::outbox::lock_batch(&mut tx, self.batch).await?;
        if rows.is_empty() {
            db::timed("outbox.commit", tx.commit()).await?;
            return Ok(0);
        }
        let exchange = self.publisher.topology().jobs_exchange();
        // One span per message, child of the submission's trace, kept open until the broker
        // confirms; the message carries the span's own context on to the worker.
        let mut spans = Vec::with_capacity(rows.len());
        let messages: Vec<OutgoingMessage> = rows
            .iter()
            .map(|r| {
                let submitted: HashMap<String, String> = serde_json::from_value(r.headers.clone()).unwrap_or_default();
                let span = tracing::info_span!("outbox.publish", routing_key = %r.routing_key, trace_id = tracing::field::Empty);
                telemetry::set_parent(&span, &submitted);
                let headers = if submitted.contains_key("traceparent") { telemetry::context_of(&span) } else { submitted };
                spans.push(span);
                OutgoingMessage {
                    exchange: exchange.clone(),
                    routing_key: r.routing_key.clone(),
                    payload: serde_json::to_vec(&r.payload).unwrap_or_default(),
                    headers,
                    rounds: None,
                }
            })
            .collect();
        self.publisher.publish_all(&messages).await?;
        drop(spans);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        db::outbox::delete(&mut tx, &ids).await?;
        db::timed("outbox.commit", tx.commit()).await?;
        let m = metrics::get();
        for r in &rows {
            m.outbox_published.with_label_values(&[r.routing_key.as_str()]).inc();
        }
        Ok(rows.len())
    }

    /// Relays until cancelled: at once after a NOTIFY, else every poll interval, with
    /// exponential backoff while PostgreSQL or RabbitMQ fail.
    pub async fn run(self, cancel: CancellationToken) {
        let wake = Arc::new(Notify::new());
        let listener = crate::telemetry::spawn_named("outbox-listener", listen(self.pool.clone(), wake.clone(), cancel.clone()));
        let mut backoff = Duration::from_millis(100);
        loop {
            if cancel.is_cancelled() {
                break;
            }
            match self.relay_once().await {
                Ok(n) => {
                    backoff = Duration::from_millis(100);
                    // Rows were there: look again at once. Only an empty pass counts the backlog
                    // (rows another relay holds), so a busy relay does no extra query.
                    if n > 0 {
                        continue;
                    }
                    if let Ok(pending) = db::outbox::pending(&self.pool).await {
                        metrics::get().outbox_pending.set(pending);
                    }
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = wake.notified() => {}
                        () = tokio::time::sleep(self.poll) => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay pass failed");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        listener.abort();
    }
}

async fn listen(pool: PgPool, wake: Arc<Notify>, cancel: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !cancel.is_cancelled() {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(error = %e, "outbox listener cannot connect; polling meanwhile");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if listener.listen(db::outbox::NOTIFY_CHANNEL).await.is_err() {
            tokio::time::sleep(backoff).await;
            continue;
        }
        backoff = Duration::from_millis(200);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                n = listener.recv() => match n {
                    Ok(_) => wake.notify_one(),
                    Err(_) => break,
                }
            }
        }
    }
}
