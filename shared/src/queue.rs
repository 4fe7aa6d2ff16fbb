//! RabbitMQ: connection, the topology every process declares idempotently, and publishing with
//! confirms.
//!
//! Topology (names under the configured prefix `p`):
//! - `p.jobs` (direct, durable) routes by lane to the quorum queues `p.jobs.interactive` and
//!   `p.jobs.batch`. They dead-letter to `p.dead` after `delivery_limit` deliveries, which
//!   catches a message that crashes every worker before it can be settled.
//! - `p.delay` (headers) routes on the `reelq-delay` header to `p.delay.<ms>ms` quorum queues
//!   whose messages expire after that delay and dead-letter back to `p.jobs` with their lane as
//!   the routing key: exponential backoff without a plugin. The header name must not start with
//!   `x-`: RabbitMQ's headers exchange ignores such headers and binding arguments when it
//!   matches, so a binding on an `x-` header alone matches every message. Dead-lettering is
//!   at least once: a classic queue drops what it dead-letters while the target queue is not
//!   available (a broker restarting), which lost deferred jobs.
//! - `p.retry` and the classic `p.retry.<ms>ms` queues belong to earlier versions (whose bindings
//!   used `x-reelq-delay` and so copied every retry into every delay queue). Declaring the
//!   topology deletes the exchange, which removes those bindings whatever delays they were made
//!   for; [`Topology::retire_legacy`] deletes the old queues once they are empty.
//! - `p.dead` (fanout) feeds `p.dead`, the dead-letter queue operators inspect.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures::future::join_all;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::ExposeSecret;
use tokio::sync::Mutex;

use crate::config::AmqpSettings;
use crate::domain::Priority;

/// Header naming the delay queue a retried message goes through. It must not start with `x-`,
/// or the headers exchange would ignore it and route to every delay queue.
pub const DELAY_HEADER: &str = "reelq-delay";
/// Header counting how often a message was sent round a delay queue (for any reason).
pub const ROUNDS_HEADER: &str = "x-reelq-rounds";

/// A broker failure. Always transient from the system's point of view.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The broker refused or dropped something.
    #[error("broker error: {0}")]
    Amqp(#[from] lapin::Error),
    /// The broker did not answer in time.
    #[error("broker call `{0}` timed out")]
    Timeout(&'static str),
    /// The broker negatively acknowledged a publish.
    #[error("broker refused a message (nack)")]
    Nacked,
}

/// Names and arguments of every exchange and queue.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
    delays_ms: BTreeSet<u64>,
    retry_delays_ms: Vec<u64>,
    defer_delay_ms: u64,
    delivery_limit: u32,
}

impl Topology {
    /// The topology the settings describe.
    pub fn new(settings: &AmqpSettings) -> Self {
        let mut delays_ms: BTreeSet<u64> = settings.retry_delays_ms.iter().copied().collect();
        delays_ms.insert(settings.defer_delay_ms);
        Self {
            prefix: settings.prefix.clone(),
            delays_ms,
            retry_delays_ms: settings.retry_delays_ms.clone(),
            defer_delay_ms: settings.defer_delay_ms,
            delivery_limit: settings.delivery_limit,
        }
    }

    /// Exchange jobs are published to.
    pub fn jobs_exchange(&self) -> String {
        format!("{}.jobs", self.prefix)
    }

    /// Work queue of a lane.
    pub fn lane_queue(&self, lane: Priority) -> String {
        format!("{}.jobs.{}", self.prefix, lane.as_str())
    }

    /// Exchange of the delay queues.
    pub fn retry_exchange(&self) -> String {
        format!("{}.delay", self.prefix)
    }

    /// The delay exchange of earlier versions, removed by [`Topology::declare`].
    pub fn legacy_retry_exchange(&self) -> String {
        format!("{}.retry", self.prefix)
    }

    /// Every delay (retries and deferrals), shortest first: one delay queue each.
    pub fn delays_ms(&self) -> impl Iterator<Item = u64> + '_ {
        self.delays_ms.iter().copied()
    }

    /// Every exchange this topology declares, for tools and tests that tear it down.
    pub fn exchanges(&self) -> [String; 3] {
        [self.jobs_exchange(), self.retry_exchange(), self.dead_exchange()]
    }

    /// Delay queue of a given delay.
    pub fn delay_queue(&self, delay_ms: u64) -> String {
        format!("{}.delay.{delay_ms}ms", self.prefix)
    }

    /// The classic delay queue of earlier versions for a given delay.
    pub fn legacy_delay_queue(&self, delay_ms: u64) -> String {
        format!("{}.retry.{delay_ms}ms", self.prefix)
    }

    /// Dead-letter exchange.
    pub fn dead_exchange(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Dead-letter queue.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.prefix)
    }

    /// Backoff before attempt `next_attempt` (2 for the first retry).
    pub fn retry_delay_ms(&self, next_attempt: i32) -> u64 {
        let idx = usize::try_from(next_attempt.saturating_sub(2)).unwrap_or(0).min(self.retry_delays_ms.len() - 1);
        self.retry_delays_ms[idx]
    }

    /// Delay of a deferral (lease held elsewhere, tenant at capacity).
    pub fn defer_delay_ms(&self) -> u64 {
        self.defer_delay_ms
    }

    /// Declares everything. Idempotent: every process calls it at start. It also deletes the
    /// fan-out delay exchange of earlier versions; a process of such a version that is still
    /// running during an upgrade then fails to publish its retry, returns the message to its
    /// queue, and a current worker takes it.
    pub async fn declare(&self, ch: &Channel) -> Result<(), QueueError> {
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(self.jobs_exchange().into(), ExchangeKind::Direct, durable, FieldTable::default()).await?;
        ch.exchange_declare(self.retry_exchange().into(), ExchangeKind::Headers, durable, FieldTable::default()).await?;
        ch.exchange_declare(self.dead_exchange().into(), ExchangeKind::Fanout, durable, FieldTable::default()).await?;

        let durable_q = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(self.dead_queue().into(), durable_q, FieldTable::default()).await?;
        ch.queue_bind(self.dead_queue().into(), self.dead_exchange().into(), "".into(), QueueBindOptions::default(), FieldTable::default()).await?;

        for lane in Priority::ALL {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            args.insert("x-delivery-limit".into(), AMQPValue::LongInt(i32::try_from(self.delivery_limit).unwrap_or(i32::MAX)));
            args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(self.dead_exchange().into()));
            let q = self.lane_queue(lane);
            ch.queue_declare(q.clone().into(), durable_q, args).await?;
            ch.queue_bind(q.into(), self.jobs_exchange().into(), lane.as_str().into(), QueueBindOptions::default(), FieldTable::default()).await?;
        }

        for &ms in &self.delays_ms {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(i64::try_from(ms).unwrap_or(i64::MAX)));
            args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString(self.jobs_exchange().into()));
            // An expired message leaves only once the lane queue has confirmed it, so a broker
            // restart cannot drop it; at-least-once dead-lettering requires reject-publish.
            args.insert("x-dead-letter-strategy".into(), AMQPValue::LongString("at-least-once".into()));
            args.insert("x-overflow".into(), AMQPValue::LongString("reject-publish".into()));
            let q = self.delay_queue(ms);
            ch.queue_declare(q.clone().into(), durable_q, args).await?;
            let mut bind = FieldTable::default();
            bind.insert("x-match".into(), AMQPValue::LongString("all".into()));
            bind.insert(DELAY_HEADER.into(), AMQPValue::LongString(ms.to_string().into()));
            ch.queue_bind(q.into(), self.retry_exchange().into(), "".into(), QueueBindOptions::default(), bind).await?;
        }
        // Deleting an exchange that does not exist succeeds, so this stays idempotent.
        ch.exchange_delete(self.legacy_retry_exchange().into(), ExchangeDeleteOptions::default()).await?;
        Ok(())
    }

    /// Deletes the classic delay queues of earlier versions once they are empty. One still
    /// holding retries keeps dead-lettering them to the lanes (nothing routes to it any more:
    /// its exchange is gone) and goes at a later start. Deleting an absent queue succeeds; the
    /// broker closes the channel when it refuses (a queue not empty), so a fresh one is opened
    /// after each refusal. Failures are only logged.
    pub async fn retire_legacy(&self, conn: &Connection) {
        let Ok(mut ch) = conn.create_channel().await else { return };
        for &ms in &self.delays_ms {
            let q = self.legacy_delay_queue(ms);
            if let Err(e) = ch.queue_delete(q.clone().into(), QueueDeleteOptions { if_empty: true, ..Default::default() }).await {
                tracing::info!(queue = q, error = %e, "a delay queue of an earlier version still holds retries; it goes once empty");
                let Ok(fresh) = conn.create_channel().await else { return };
                ch = fresh;
            }
        }
        let _ = ch.close(200, "done".into()).await;
    }
}

/// Connects to the broker with a deadline.
pub async fn connect(settings: &AmqpSettings, name: &str) -> Result<Connection, QueueError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    tokio::time::timeout(Duration::from_secs(10), Connection::connect(settings.url.expose_secret(), props))
        .await
        .map_err(|_| QueueError::Timeout("connect"))?
        .map_err(QueueError::from)
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    /// Target exchange.
    pub exchange: String,
    /// Routing key (the lane, for job messages).
    pub routing_key: String,
    /// JSON body.
    pub payload: Vec<u8>,
    /// String headers (trace context, delay, rounds).
    pub headers: HashMap<String, String>,
    /// Rounds counter carried across delay queues.
    pub rounds: Option<i64>,
}

impl OutgoingMessage {
    fn properties(&self) -> BasicProperties {
        let mut table = FieldTable::default();
        for (k, v) in &self.headers {
            table.insert(ShortString::from(k.as_str()), AMQPValue::LongString(LongString::from(v.as_str())));
        }
        if let Some(r) = self.rounds {
            table.insert(ROUNDS_HEADER.into(), AMQPValue::LongLongInt(r));
        }
        BasicProperties::default().with_delivery_mode(2).with_content_type("application/json".into()).with_headers(table)
    }
}

/// Reads the string headers and the rounds counter of a delivery.
pub fn read_headers(props: &BasicProperties) -> (HashMap<String, String>, i64) {
    let mut out = HashMap::new();
    let mut rounds = 0;
    if let Some(h) = props.headers() {
        for (k, v) in h.inner() {
            match v {
                AMQPValue::LongString(s) => {
                    out.insert(k.to_string(), String::from_utf8_lossy(s.as_bytes()).into_owned());
                }
                AMQPValue::ShortString(s) => {
                    out.insert(k.to_string(), s.to_string());
                }
                AMQPValue::LongLongInt(n) if k.as_str() == ROUNDS_HEADER => rounds = *n,
                AMQPValue::LongInt(n) if k.as_str() == ROUNDS_HEADER => rounds = i64::from(*n),
                _ => {}
            }
        }
    }
    (out, rounds)
}

/// A publisher with confirms that reconnects after failures. Messages are pipelined and their
/// confirms awaited together, which is what makes batch publishing fast.
pub struct Publisher {
    settings: AmqpSettings,
    topology: Topology,
    name: String,
    state: Mutex<Option<(Connection, Channel)>>,
}

impl Publisher {
    /// A publisher that connects on first use.
    pub fn new(settings: &AmqpSettings, name: &str) -> Self {
        Self { settings: settings.clone(), topology: Topology::new(settings), name: name.to_owned(), state: Mutex::new(None) }
    }

    /// The topology it declares.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    async fn channel(&self, state: &mut Option<(Connection, Channel)>) -> Result<Channel, QueueError> {
        if let Some((conn, ch)) = state.as_ref()
            && conn.status().connected()
            && ch.status().connected()
        {
            return Ok(ch.clone());
        }
        *state = None;
        let conn = connect(&self.settings, &self.name).await?;
        let ch = conn.create_channel().await?;
        self.topology.declare(&ch).await?;
        self.topology.retire_legacy(&conn).await;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        *state = Some((conn, ch.clone()));
        Ok(ch)
    }

    /// Connects (if needed) and declares the topology: for readiness checks and start-up.
    pub async fn ensure_connected(&self) -> Result<(), QueueError> {
        let mut state = self.state.lock().await;
        self.channel(&mut state).await.map(|_| ())
    }

    /// Publishes every message and waits for all their confirms. On any failure the connection
    /// is dropped (the next call reconnects) and the whole batch must be considered unsent:
    /// callers keep their outbox rows and try again, and consumers tolerate the duplicates.
    pub async fn publish_all(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut state = self.state.lock().await;
        let result = self.publish_on(&mut state, messages).await;
        if result.is_err()
            && let Some((conn, _)) = state.take()
        {
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(320, "publish failed".into())).await;
        }
        result
    }

    async fn publish_on(&self, state: &mut Option<(Connection, Channel)>, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        let ch = self.channel(state).await?;
        let deadline = Duration::from_millis(self.settings.confirm_timeout_ms);
        let mut confirms = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = ch
                .basic_publish(m.exchange.as_str().into(), m.routing_key.as_str().into(), BasicPublishOptions::default(), &m.payload, m.properties())
                .await?;
            confirms.push(confirm);
        }
        let results = tokio::time::timeout(deadline, join_all(confirms)).await.map_err(|_| QueueError::Timeout("confirm"))?;
        for r in results {
            if r?.is_nack() {
                return Err(QueueError::Nacked);
            }
        }
        Ok(())
    }

    /// Closes the connection.
    pub async fn close(&self) {
        if let Some((conn, _)) = self.state.lock().await.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "shutdown".into())).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_back_off_and_saturate() {
        let settings = AmqpSettings { retry_delays_ms: vec![100, 1_000, 10_000], ..AmqpSettings::default() };
        let t = Topology::new(&settings);
        assert_eq!(t.retry_delay_ms(2), 100);
        assert_eq!(t.retry_delay_ms(3), 1_000);
        assert_eq!(t.retry_delay_ms(4), 10_000);
        assert_eq!(t.retry_delay_ms(9), 10_000);
        assert_eq!(t.retry_delay_ms(0), 100);
    }

    #[test]
    fn delay_header_is_one_the_headers_exchange_matches() {
        assert!(!DELAY_HEADER.to_ascii_lowercase().starts_with("x-"));
    }

    #[test]
    fn names_carry_the_prefix() {
        let settings = AmqpSettings { prefix: "t1".into(), ..AmqpSettings::default() };
        let t = Topology::new(&settings);
        assert_eq!(t.lane_queue(Priority::Batch), "t1.jobs.batch");
        assert_eq!(t.delay_queue(500), "t1.delay.500ms");
        assert_ne!(t.delay_queue(500), t.legacy_delay_queue(500));
        assert_eq!(t.retry_exchange(), "t1.delay");
        assert_ne!(t.retry_exchange(), t.legacy_retry_exchange());
        assert_eq!(t.dead_queue(), "t1.dead");
    }
}
