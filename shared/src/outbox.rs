//! The outbox relay: publishes the messages that submissions wrote into PostgreSQL, with
//! publisher confirms, and deletes them only after the broker has confirmed them.
//!
//! Several relays (one per api replica) may run at once: each takes its batch with
//! `FOR UPDATE SKIP LOCKED`, deleting it in a transaction that commits only after the broker
//! confirmed every message. A crash between confirm and commit publishes a batch twice;
//! consumers are idempotent, so that is harmless. If the broker is down, rows wait and the
//! relay retries with backoff, so a submission never fails because of the broker.
//!
//! A relay reads from its [`Horizon`], not from the table's first row. Deleted rows stay in the
//! table and its index until vacuum removes them, and vacuum can remove none while any client
//! holds an older snapshot open (a long report, a stuck session): read from the first row, every
//! pass would walk every row published since that snapshot, and relaying would slow for as long
//! as it stayed open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Where the next pass starts reading.
    horizon: std::sync::Mutex<Horizon>,
}

impl OutboxRelay {
    /// A relay publishing up to `batch` rows per pass, polling every `poll` when no
    /// notification arrives.
    pub fn new(pool: PgPool, publisher: Arc<Publisher>, batch: i64, poll: Duration) -> Self {
        Self { pool, publisher, batch, poll, conn: tokio::sync::Mutex::new(None), wake: Arc::new(Notify::new()), horizon: Default::default() }
    }

    /// Wakes the relay whenever `wake` is notified, besides NOTIFY: its process's submissions
    /// do so after their insert commits, which costs PostgreSQL nothing, unlike a NOTIFY.
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    fn horizon(&self) -> std::sync::MutexGuard<'_, Horizon> {
        self.horizon.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
        let after = self.horizon().start(Instant::now());
        let rows = db::outbox::take_batch(conn, after, self.batch).await?;
        if rows.is_empty() {
            db::outbox::end_batch(conn, true).await?;
            self.horizon().taken(&[], Instant::now());
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
        self.horizon().taken(&rows.iter().map(|r| r.id).collect::<Vec<_>>(), Instant::now());
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
        let mut counted: Option<Instant> = None;
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
                    if counted.is_none_or(|at: Instant| at.elapsed() >= PENDING_EVERY) {
                        counted = Some(Instant::now());
                        let below = self.horizon().below;
                        if let Ok(pending) = db::outbox::pending(&self.pool, below).await {
                            metrics::get().outbox_pending.set(pending);
                        }
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

/// How often an idle relay counts the rows waiting (for the `outbox_pending` gauge).
const PENDING_EVERY: Duration = Duration::from_secs(1);
/// How long a relay waits for an id below the highest it took to appear before it reads past
/// it: ids are drawn when a row is written but become visible when its transaction commits,
/// so a lower id can appear after a higher one, and an id another relay took or a rolled-back
/// transaction drew never appears.
const GAP_WAIT: Duration = Duration::from_secs(5);
/// How often a relay reads the outbox from its first row all the same: a row whose
/// transaction committed more than [`GAP_WAIT`] after it was written waits at most this long.
const RESCAN_EVERY: Duration = Duration::from_secs(30);
/// Most missing ids a relay remembers; beyond them it leaves what is missing to the next full read.
const MAX_GAPS: usize = 100_000;

/// The id a relay's pass reads after: every id up to it was published (by this relay or
/// another) or will not appear. Ids the relay has not seen below the highest it took are
/// waited for, each up to [`GAP_WAIT`] from when it was first missed, and every
/// [`RESCAN_EVERY`] a pass reads from the first row.
#[derive(Debug, Default)]
pub struct Horizon {
    /// Read after this id.
    pub below: i64,
    /// The highest id taken.
    seen: i64,
    /// Ids between `below` and `seen` not taken yet, with when each was first missed.
    gaps: BTreeMap<i64, Instant>,
    /// When a pass last read from the first row.
    rescanned: Option<Instant>,
}

impl Horizon {
    /// The id the pass starting `now` reads after.
    pub fn start(&mut self, now: Instant) -> i64 {
        if self.rescanned.is_none_or(|at| now.saturating_duration_since(at) >= RESCAN_EVERY) {
            self.rescanned = Some(now);
            return 0;
        }
        self.below
    }

    /// Records the ids a pass took (and published), in ascending order, at `now`.
    pub fn taken(&mut self, ids: &[i64], now: Instant) {
        for &id in ids {
            if id > self.seen {
                let missed = id - self.seen - 1;
                // On the first pass too: the ids below the first taken may belong to
                // transactions that have not committed yet (until they have waited, the
                // passes read from the first row, as a relay that has just started must).
                if missed > 0 && self.gaps.len() as i64 + missed <= MAX_GAPS as i64 {
                    self.gaps.extend((self.seen + 1..id).map(|gap| (gap, now)));
                }
                self.seen = id;
            } else {
                self.gaps.remove(&id);
            }
        }
        self.gaps.retain(|_, since| now.saturating_duration_since(*since) < GAP_WAIT);
        self.below = self.gaps.keys().next().map_or(self.seen, |first| first - 1);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_horizon_follows_what_was_taken_and_waits_for_a_missing_id_before_passing_it() {
        let t0 = Instant::now();
        let mut h = Horizon::default();
        assert_eq!(h.start(t0), 0, "the first pass reads from the first row");
        h.taken(&[1, 2, 3], t0);
        assert_eq!(h.start(t0), 3);
        // 5 is taken before 4 committed: the next pass still reads from 3.
        h.taken(&[5, 6], t0);
        assert_eq!(h.start(t0 + Duration::from_secs(1)), 3);
        // 4 appears: the horizon moves past everything taken.
        h.taken(&[4], t0 + Duration::from_secs(1));
        assert_eq!(h.start(t0 + Duration::from_secs(2)), 6);
        // 7 never appears (rolled back, or another relay took it): passed once it waited long enough.
        h.taken(&[8], t0 + Duration::from_secs(2));
        h.taken(&[], t0 + Duration::from_secs(2) + GAP_WAIT / 2);
        assert_eq!(h.below, 6);
        h.taken(&[], t0 + Duration::from_secs(2) + GAP_WAIT);
        assert_eq!(h.below, 8);
        // A full read comes round all the same, for a row that committed later still.
        assert_eq!(h.start(t0 + RESCAN_EVERY), 0);
        h.taken(&[7], t0 + RESCAN_EVERY);
        assert_eq!(h.start(t0 + RESCAN_EVERY), 8);
    }

    #[test]
    fn a_first_pass_that_took_later_ids_waits_for_the_earlier_ones() {
        let t0 = Instant::now();
        let mut h = Horizon::default();
        h.start(t0);
        // Another statement drew 1–200 first and has not committed yet.
        h.taken(&(201..=400).collect::<Vec<_>>(), t0);
        assert_eq!(h.start(t0 + Duration::from_millis(10)), 0);
        h.taken(&(1..=200).collect::<Vec<_>>(), t0 + Duration::from_millis(10));
        assert_eq!(h.start(t0 + Duration::from_millis(20)), 400);
    }

    #[test]
    fn a_horizon_remembers_a_bounded_number_of_missing_ids() {
        let t0 = Instant::now();
        let mut h = Horizon::default();
        h.start(t0);
        h.taken(&[1], t0);
        h.taken(&[1 + MAX_GAPS as i64 + 10], t0);
        assert_eq!(h.below, 1 + MAX_GAPS as i64 + 10, "too many missing ids are left to the next full read");
        assert!(h.gaps.is_empty());
    }
}
