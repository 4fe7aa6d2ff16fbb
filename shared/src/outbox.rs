//! The outbox relay: publishes the messages that submissions wrote into PostgreSQL, with
//! publisher confirms, and deletes them only after the broker has confirmed them.
//!
//! Several relays (one per api replica) may run at once: each takes its batch with
//! `FOR UPDATE SKIP LOCKED`, deleting it in a transaction that commits only after the broker
//! confirmed every message. A crash between confirm and commit publishes a batch twice;
//! consumers are idempotent, so that is harmless. If the broker is down, rows wait and the
//! relay retries with backoff, so a submission never fails because of the broker.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::{Connection as _, PgConnection, PgPool};
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
    /// The relay's own connection, outside the pool: a batch keeps a transaction open on it
    /// while the broker confirms. It is taken out for each pass and put back only after a pass
    /// that ended its transaction, so a pass that fails or is abandoned drops the connection,
    /// and PostgreSQL rolls the batch back.
    conn: tokio::sync::Mutex<Option<PgConnection>>,
    /// Woken by a NOTIFY on the channel, and directly by the submissions of its own process.
    wake: Arc<Notify>,
}

impl OutboxRelay {
    /// A relay publishing up to `batch` rows per pass, polling every `poll` when no
    /// notification arrives.
    pub fn new(pool: PgPool, publisher: Arc<Publisher>, batch: i64, poll: Duration) -> Self {
        Self { pool, publisher, batch, poll, conn: tokio::sync::Mutex::new(None), wake: Arc::new(Notify::new()) }
    }

    /// Wakes the relay whenever `wake` is notified, besides NOTIFY: its process's submissions
    /// do so after their insert commits, which costs PostgreSQL nothing, unlike a NOTIFY.
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// Publishes one batch; returns how many rows were published. Two round trips to
    /// PostgreSQL whatever the batch's size: take the rows (in an open transaction), then,
    /// once the broker confirmed them, commit.
    pub async fn relay_once(&self) -> Result<usize, RelayError> {
        let held = self.conn.lock().await.take();
        let mut conn = match held {
            Some(c) => c,
            None => db::timed("outbox.connect", PgConnection::connect_with(&self.pool.connect_options())).await?,
        };
        let published = self.relay_on(&mut conn).await?;
        *self.conn.lock().await = Some(conn);
        Ok(published)
    }

    async fn relay_on(&self, conn: &mut PgConnection) -> Result<usize, RelayError> {
        let rows = db::outbox::take_batch(conn, self.batch).await?;
        if rows.is_empty() {
            db::outbox::end_batch(conn, true).await?;
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
        if let Err(e) = self.publisher.publish_all(&messages).await {
            // The rows go back for the next pass (and if the rollback fails too, the connection
            // is dropped, which rolls back as well).
            db::outbox::end_batch(conn, false).await?;
            return Err(e.into());
        }
        drop(spans);
        db::outbox::end_batch(conn, true).await?;
        let m = metrics::get();
        for r in &rows {
            m.outbox_published.with_label_values(&[r.routing_key.as_str()]).inc();
        }
        Ok(rows.len())
    }

    /// Relays until cancelled: at once after a NOTIFY, else every poll interval, with
    /// exponential backoff while PostgreSQL or RabbitMQ fail.
    pub async fn run(self, cancel: CancellationToken) {
        let wake = self.wake.clone();
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
