//! Consuming a lane: manual acks, prefetch, a slot per job, and settling each delivery only
//! after the job's outcome is committed in PostgreSQL.
//!
//! Work is decoupled from the channel: if the broker closes the channel (a lost connection, or
//! its consumer ack timeout on a very long job), the job still finishes under its lease and its
//! writes stand; the redelivered copy finds the job ended and is acked without running again.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use reelq_shared::config::AmqpSettings;
use reelq_shared::domain::{JobMessage, Priority};
use reelq_shared::metrics;
use reelq_shared::queue::{self, DELAY_HEADER, OutgoingMessage, Publisher, Topology};

use crate::dependencies::Dependencies;
use crate::runner::{Disposition, JobRunner};

/// Everything one lane's consumer needs.
pub struct LaneConsumer {
    pub lane: Priority,
    pub prefetch: u16,
    pub amqp: AmqpSettings,
    pub runner: Arc<JobRunner>,
    pub publisher: Arc<Publisher>,
    /// Slots shared by both lanes.
    pub slots: Arc<Semaphore>,
    /// Stop taking new messages, finish in-flight ones.
    pub stop: CancellationToken,
    /// Abandon everything at once, as a crash would.
    pub abort: CancellationToken,
    /// How long in-flight jobs may take after `stop`.
    pub drain: Duration,
    /// Whether a consumer is attached right now (for readiness).
    pub connected: Arc<std::sync::atomic::AtomicBool>,
}

impl LaneConsumer {
    /// Consumes until stopped, reconnecting with backoff.
    pub async fn run(self) {
        let mut backoff = Duration::from_millis(self.amqp.reconnect_delay_ms.max(50));
        let mut tasks: JoinSet<()> = JoinSet::new();
        while !self.stop.is_cancelled() && !self.abort.is_cancelled() {
            match self.consume(&mut tasks).await {
                Ok(()) => backoff = Duration::from_millis(self.amqp.reconnect_delay_ms.max(50)),
                Err(e) => {
                    self.connected.store(false, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(lane = self.lane.as_str(), error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer disconnected");
                    tokio::select! {
                        () = self.stop.cancelled() => break,
                        () = self.abort.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
        self.connected.store(false, std::sync::atomic::Ordering::Relaxed);
        if self.abort.is_cancelled() {
            tasks.abort_all();
            return;
        }
        // Drain: in-flight jobs finish within the deadline; what is left goes back to the
        // queue when the connection closes, and its lease lapses for the next worker.
        let drained = tokio::time::timeout(self.drain, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(lane = self.lane.as_str(), left = tasks.len(), "drain deadline passed; leaving jobs to redelivery");
            tasks.abort_all();
        }
    }

    async fn consume(&self, tasks: &mut JoinSet<()>) -> Result<(), queue::QueueError> {
        let conn = queue::connect(&self.amqp, &format!("reelq-worker-{}", self.lane.as_str())).await?;
        let ch = conn.create_channel().await?;
        let topology = Topology::new(&self.amqp);
        topology.declare(&ch).await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        let mut consumer =
            ch.basic_consume(topology.lane_queue(self.lane).into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await?;
        self.connected.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(lane = self.lane.as_str(), prefetch = self.prefetch, "consuming");
        let result = loop {
            tokio::select! {
                () = self.stop.cancelled() => break Ok(()),
                () = self.abort.cancelled() => {
                    tasks.abort_all();
                    break Ok(());
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let job = Job {
                            deps: self.runner.dependencies(),
                            stop: self.stop.clone(),
                            runner: self.runner.clone(),
                            publisher: self.publisher.clone(),
                            slots: self.slots.clone(),
                            topology: topology.clone(),
                            lane: self.lane,
                        };
                        tasks.spawn(job.process(delivery));
                    }
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(queue::QueueError::Timeout("consumer stream ended")),
                }
            }
        };
        if self.abort.is_cancelled() {
            // A crash: the connection goes away with every unacked message.
            let _ = conn.close(320, "aborted".into()).await;
            return result;
        }
        if self.stop.is_cancelled() {
            // Stop receiving, but keep the channel open while in-flight jobs finish so that
            // their acks can still be sent.
            let _ = ch.basic_cancel(consumer.tag(), BasicCancelOptions::default()).await;
            let drained = tokio::time::timeout(self.drain, async { while tasks.join_next().await.is_some() {} }).await;
            if drained.is_err() {
                tasks.abort_all();
            }
            let _ = conn.close(200, "shutdown".into()).await;
        }
        result
    }
}

struct Job {
    deps: Arc<Dependencies>,
    stop: CancellationToken,
    runner: Arc<JobRunner>,
    publisher: Arc<Publisher>,
    slots: Arc<Semaphore>,
    topology: Topology,
    lane: Priority,
}

impl Job {
    async fn process(self, delivery: Delivery) {
        // While PostgreSQL or storage is down, deliveries wait here unsettled instead of
        // failing one after another; prefetch bounds how many. On shutdown they go back to the
        // queue with the channel.
        tokio::select! {
            () = self.deps.wait_until_up() => {}
            () = self.stop.cancelled() => return,
        }
        let Ok(_slot) = self.slots.clone().acquire_owned().await else { return };
        let msg: JobMessage = match serde_json::from_slice(&delivery.data) {
            Ok(m) => m,
            Err(e) => {
                // Nothing can ever process it; keep it for inspection instead of looping.
                tracing::error!(error = %e, "unreadable message; dead-lettering it");
                self.settle(&delivery, Disposition::DeadLetter { reason: format!("unreadable message: {e}") }, 0).await;
                return;
            }
        };
        let (headers, rounds) = queue::read_headers(&delivery.properties);
        let disposition = self.runner.handle(&msg, &headers).await;
        self.settle(&delivery, disposition, rounds).await;
    }

    /// Publishes whatever the disposition needs, then acks; if that publish fails, the message
    /// is returned to the queue instead, so it is never lost.
    async fn settle(&self, delivery: &Delivery, disposition: Disposition, rounds: i64) {
        let (headers, _) = queue::read_headers(&delivery.properties);
        let outgoing = match &disposition {
            Disposition::Ack => None,
            Disposition::Delay { delay_ms, reason } => {
                tracing::debug!(delay_ms, reason, "sending the message round a delay queue");
                let mut h = headers.clone();
                h.insert(DELAY_HEADER.to_owned(), delay_ms.to_string());
                Some(OutgoingMessage {
                    exchange: self.topology.retry_exchange(),
                    routing_key: self.lane.as_str().to_owned(),
                    payload: delivery.data.clone(),
                    headers: h,
                    rounds: Some(rounds + 1),
                })
            }
            Disposition::DeadLetter { reason } => {
                let mut h = headers.clone();
                h.insert("x-reelq-dead-reason".to_owned(), reason.chars().take(500).collect());
                Some(OutgoingMessage {
                    exchange: self.topology.dead_exchange(),
                    routing_key: self.lane.as_str().to_owned(),
                    payload: delivery.data.clone(),
                    headers: h,
                    rounds: Some(rounds),
                })
            }
        };
        if let Some(m) = outgoing {
            if let Err(e) = self.publisher.publish_all(std::slice::from_ref(&m)).await {
                tracing::warn!(error = %e, "could not re-publish; returning the message to its queue");
                let _ = delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                return;
            }
            if let Disposition::DeadLetter { reason } = &disposition {
                let code = reason.split(':').next().unwrap_or("unknown");
                metrics::get().dead_letters.with_label_values(&[code]).inc();
            }
        }
        if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
            // The channel is gone; the broker redelivers and the duplicate is recognised.
            tracing::warn!(error = %e, "ack failed; the message will be redelivered");
        }
    }
}
