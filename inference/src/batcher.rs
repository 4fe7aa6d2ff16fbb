//! Dynamic batching for per-frame models, in the manner of Triton and Ray Serve: requests from
//! concurrent jobs queue up, and a batch runs as soon as it is full or the oldest request has
//! waited `max_wait`.
//!
//! One dedicated thread per batcher owns the model calls, so a batch never blocks the async
//! runtime; callers `submit(...).await` from async code or `submit_blocking` from blocking code.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::oneshot;

use super::InferenceError;

/// How large batches get and how long a request may wait for company.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatcherConfig {
    /// Most requests in one model call.
    pub max_batch: usize,
    /// Longest time the first request of a batch waits for others before the batch runs anyway.
    pub max_wait: Duration,
}

impl Default for BatcherConfig {
    fn default() -> Self {
        Self { max_batch: 8, max_wait: Duration::from_millis(20) }
    }
}

/// Called after every model call of every batcher with the model's name, the call's duration and
/// the batch size: how a process exports batching to its metrics without this crate knowing
/// the metrics registry.
pub type BatchObserver = fn(model: &str, took: Duration, batch_size: usize);

static OBSERVER: OnceLock<BatchObserver> = OnceLock::new();

/// Sets the process's batch observer; the first one set stays.
pub fn observe_batches(observer: BatchObserver) {
    let _ = OBSERVER.set(observer);
}

/// Running counters of one batcher, cheap to read at any time; the worker exports them as
/// Prometheus metrics.
#[derive(Debug)]
pub struct BatchStats {
    batches: AtomicU64,
    items: AtomicU64,
    full: AtomicU64,
    timed_out: AtomicU64,
    failed: AtomicU64,
    run_micros: AtomicU64,
    wait_micros: AtomicU64,
    /// `size_counts[n - 1]` counts batches of size `n`.
    size_counts: Vec<AtomicU64>,
}

/// A point-in-time copy of [`BatchStats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchStatsSnapshot {
    pub batches: u64,
    pub items: u64,
    /// Batches that ran because they were full.
    pub full: u64,
    /// Batches that ran because `max_wait` passed.
    pub timed_out: u64,
    pub failed: u64,
    /// Total time inside the model, and total time requests spent queued, in microseconds.
    pub run_micros: u64,
    pub wait_micros: u64,
    /// `size_counts[n - 1]` is how many batches held `n` requests.
    pub size_counts: Vec<u64>,
}

impl BatchStats {
    fn new(max_batch: usize) -> Self {
        Self {
            batches: AtomicU64::new(0),
            items: AtomicU64::new(0),
            full: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            run_micros: AtomicU64::new(0),
            wait_micros: AtomicU64::new(0),
            size_counts: (0..max_batch).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn snapshot(&self) -> BatchStatsSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BatchStatsSnapshot {
            batches: load(&self.batches),
            items: load(&self.items),
            full: load(&self.full),
            timed_out: load(&self.timed_out),
            failed: load(&self.failed),
            run_micros: load(&self.run_micros),
            wait_micros: load(&self.wait_micros),
            size_counts: self.size_counts.iter().map(load).collect(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

struct Request<I, O> {
    input: I,
    queued: Instant,
    reply: oneshot::Sender<Result<O, InferenceError>>,
}

/// A queue in front of a batch function `Fn(Vec<I>) -> Result<Vec<O>, _>` that returns one
/// output per input, in order. Cloning shares the queue. Dropping the last clone stops the
/// thread once queued work is done.
pub struct Batcher<I, O> {
    name: Arc<str>,
    config: BatcherConfig,
    tx: mpsc::Sender<Request<I, O>>,
    stats: Arc<BatchStats>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self { name: self.name.clone(), config: self.config, tx: self.tx.clone(), stats: self.stats.clone() }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the batching thread for `run`.
    pub fn spawn<F>(name: &str, config: BatcherConfig, run: F) -> Result<Self, InferenceError>
    where
        F: Fn(Vec<I>) -> Result<Vec<O>, InferenceError> + Send + 'static,
    {
        let config = BatcherConfig { max_batch: config.max_batch.max(1), max_wait: config.max_wait };
        let (tx, rx) = mpsc::channel::<Request<I, O>>();
        let stats = Arc::new(BatchStats::new(config.max_batch));
        let name: Arc<str> = Arc::from(name);
        let thread_stats = stats.clone();
        let thread_name = name.clone();
        std::thread::Builder::new()
            .name(format!("batch-{name}"))
            .spawn(move || batch_loop(&thread_name, config, &rx, &thread_stats, &run))
            .map_err(|e| InferenceError::Input(format!("cannot start the {name} batcher thread: {e}")))?;
        Ok(Self { name, config, tx, stats })
    }

    /// Queues `input` and waits for its result.
    pub async fn submit(&self, input: I) -> Result<O, InferenceError> {
        let rx = self.enqueue(input)?;
        rx.await.map_err(|_| InferenceError::BatcherClosed(self.name.to_string()))?
    }

    /// Like [`submit`](Self::submit), for callers already on a blocking thread.
    pub fn submit_blocking(&self, input: I) -> Result<O, InferenceError> {
        let rx = self.enqueue(input)?;
        rx.blocking_recv().map_err(|_| InferenceError::BatcherClosed(self.name.to_string()))?
    }

    /// Queues every input at once (so they can share batches with each other and with other
    /// callers' inputs) and waits for all their results, in order. Blocking.
    pub fn submit_all_blocking(&self, inputs: Vec<I>) -> Result<Vec<O>, InferenceError> {
        let receivers = inputs.into_iter().map(|i| self.enqueue(i)).collect::<Result<Vec<_>, _>>()?;
        receivers.into_iter().map(|rx| rx.blocking_recv().map_err(|_| InferenceError::BatcherClosed(self.name.to_string()))?).collect()
    }

    fn enqueue(&self, input: I) -> Result<oneshot::Receiver<Result<O, InferenceError>>, InferenceError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Request { input, queued: Instant::now(), reply }).map_err(|_| InferenceError::BatcherClosed(self.name.to_string()))?;
        Ok(rx)
    }

    pub fn stats(&self) -> BatchStatsSnapshot {
        self.stats.snapshot()
    }

    pub fn config(&self) -> BatcherConfig {
        self.config
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

fn batch_loop<I, O, F>(name: &str, config: BatcherConfig, rx: &mpsc::Receiver<Request<I, O>>, stats: &BatchStats, run: &F)
where
    F: Fn(Vec<I>) -> Result<Vec<O>, InferenceError>,
{
    while let Ok(first) = rx.recv() {
        let deadline = first.queued + config.max_wait;
        let mut batch = vec![first];
        let mut full = false;
        loop {
            if batch.len() >= config.max_batch {
                full = true;
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match rx.recv_timeout(deadline - now) {
                Ok(r) => batch.push(r),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        // Requests whose caller has gone (a cancelled job) are not worth a model call.
        batch.retain(|r| !r.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let n = batch.len();
        let mut inputs = Vec::with_capacity(n);
        let mut replies = Vec::with_capacity(n);
        for r in batch {
            stats.wait_micros.fetch_add(micros(started - r.queued), Ordering::Relaxed);
            inputs.push(r.input);
            replies.push(r.reply);
        }
        let outcome = catch_unwind(AssertUnwindSafe(|| run(inputs)))
            .unwrap_or_else(|_| Err(InferenceError::BatchFailed(format!("{name}: the batch function panicked"))));
        stats.run_micros.fetch_add(micros(started.elapsed()), Ordering::Relaxed);
        if let Some(observe) = OBSERVER.get() {
            observe(name, started.elapsed(), n);
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.items.fetch_add(n as u64, Ordering::Relaxed);
        if let Some(c) = stats.size_counts.get(n - 1) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if full { &stats.full } else { &stats.timed_out }.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(outputs) if outputs.len() == n => {
                for (reply, out) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(out));
                }
            }
            Ok(outputs) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                let msg = format!("{name}: batch of {n} gave {} outputs", outputs.len());
                for reply in replies {
                    let _ = reply.send(Err(InferenceError::BatchFailed(msg.clone())));
                }
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(batcher = name, size = n, error = %e, "batch failed");
                let msg = e.to_string();
                let mut replies = replies.into_iter();
                if let Some(first) = replies.next() {
                    let _ = first.send(Err(e));
                }
                for reply in replies {
                    let _ = reply.send(Err(InferenceError::BatchFailed(msg.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_concurrent_requests_share_one_batch() {
        // A long max_wait and a batch of two: the batch can only run early by being full.
        let config = BatcherConfig { max_batch: 2, max_wait: Duration::from_secs(5) };
        let b = Batcher::spawn("double", config, |xs: Vec<u32>| Ok(xs.into_iter().map(|x| x * 2).collect())).expect("spawn");

        let started = Instant::now();
        let (x, y) = tokio::join!(b.submit(1), b.submit(2));

        assert_eq!((x.expect("x"), y.expect("y")), (2, 4));
        assert!(started.elapsed() < Duration::from_secs(4), "the full batch should not wait for max_wait");
        let s = b.stats();
        assert_eq!((s.batches, s.items, s.full, s.size_counts.clone()), (1, 2, 1, vec![0, 1]), "{s:?}");
    }

    #[tokio::test]
    async fn a_lone_request_runs_after_max_wait() {
        let config = BatcherConfig { max_batch: 4, max_wait: Duration::from_millis(30) };
        let b = Batcher::spawn("lone", config, |xs: Vec<u32>| Ok(xs)).expect("spawn");

        let out = b.submit(7).await.expect("result");

        assert_eq!(out, 7);
        let s = b.stats();
        assert_eq!((s.batches, s.timed_out, s.size_counts[0]), (1, 1, 1));
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_request_in_it() {
        let config = BatcherConfig { max_batch: 2, max_wait: Duration::from_secs(5) };
        let b = Batcher::spawn("broken", config, |_: Vec<u32>| -> Result<Vec<u32>, _> { Err(InferenceError::Input("bad".into())) }).expect("spawn");

        let (x, y) = tokio::join!(b.submit(1), b.submit(2));

        assert!(x.is_err() && y.is_err());
        assert_eq!(b.stats().failed, 1);
    }
}
