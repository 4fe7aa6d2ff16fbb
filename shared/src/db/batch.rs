//! Coalescing concurrent calls into one statement.
//!
//! A [`Coalescer`] owns one task that runs a batched statement. A call made while the task is
//! idle runs at once, alone, so a quiet system pays no added latency; calls that arrive while a
//! statement is under way wait for it and then go together in the next one. Under load the
//! batches grow by themselves, and PostgreSQL does one parse, one executor start-up and one
//! commit for many jobs.
//!
//! The batched function answers every request of its batch, in order, or fails as a whole. A
//! transient failure (the connection, a deadlock, a timeout) goes to every caller of the batch
//! (as [`DbError::Shared`]), each deciding for itself whether to try again. Any other failure may
//! be one request's fault (text PostgreSQL cannot store, say), so the batch's requests are then
//! run one by one: a bad request fails alone and never holds back the others.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::DbError;

type Reply<Resp> = oneshot::Sender<Result<Resp, DbError>>;

/// Runs a batched statement for concurrent callers; see the module documentation.
pub struct Coalescer<Req, Resp> {
    query: &'static str,
    tx: mpsc::UnboundedSender<(Req, Reply<Resp>)>,
}

impl<Req: Clone + Send + Sync + 'static, Resp: Send + 'static> Coalescer<Req, Resp> {
    /// Starts the task running `run` on batches of at most `max_batch` requests. `run` must
    /// return one response per request, in the same order. The task ends when the coalescer
    /// is dropped, after the statement under way.
    pub fn spawn<F, Fut>(query: &'static str, max_batch: usize, run: F) -> Self
    where
        F: Fn(Arc<[Req]>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Resp>, DbError>> + Send + 'static,
    {
        let (tx, mut rx) = mpsc::unbounded_channel::<(Req, Reply<Resp>)>();
        let max_batch = max_batch.max(1);
        crate::telemetry::spawn_named(query, async move {
            let mut waiting = Vec::with_capacity(max_batch);
            while rx.recv_many(&mut waiting, max_batch).await > 0 {
                let (requests, replies): (Vec<Req>, Vec<Reply<Resp>>) = waiting.drain(..).unzip();
                let requests: Arc<[Req]> = requests.into();
                let n = requests.len();
                crate::metrics::get().db_batch_size.with_label_values(&[query]).observe(n as f64);
                match answered(query, n, run(requests.clone()).await) {
                    Ok(responses) => {
                        for (response, reply) in responses.into_iter().zip(replies) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                    Err(e) if e.is_transient() || n == 1 => {
                        let e = Arc::new(e);
                        for reply in replies {
                            let _ = reply.send(Err(DbError::Shared(e.clone())));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(query, batch = n, error = %e, "a batched statement failed; running its requests one by one");
                        for (request, reply) in requests.iter().zip(replies) {
                            let alone =
                                answered(query, 1, run(Arc::from([request.clone()])).await).and_then(|mut r| r.pop().ok_or(DbError::Stopped { query }));
                            let _ = reply.send(alone);
                        }
                    }
                }
            }
        });
        Self { query, tx }
    }

    /// Queues `request` for the next batch at once, and returns its response when that batch
    /// has run. Dropping the future does not withdraw the request: it runs with its batch.
    pub fn call(&self, request: Req) -> impl Future<Output = Result<Resp, DbError>> + Send + 'static {
        let (reply, answer) = oneshot::channel();
        let query = self.query;
        let sent = self.tx.send((request, reply)).is_ok();
        async move {
            if !sent {
                return Err(DbError::Stopped { query });
            }
            answer.await.map_err(|_| DbError::Stopped { query })?
        }
    }
}

/// The responses, when the statement answered each of its `n` requests.
fn answered<Resp>(query: &'static str, n: usize, outcome: Result<Vec<Resp>, DbError>) -> Result<Vec<Resp>, DbError> {
    let responses = outcome?;
    if responses.len() != n {
        tracing::error!(query, asked = n, answered = responses.len(), "a batched statement answered the wrong number of requests");
        return Err(DbError::Stopped { query });
    }
    Ok(responses)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// The sizes of the batches run so far.
    type Sizes = Arc<Mutex<Vec<usize>>>;

    /// A coalescer whose statements wait for a permit, so a test decides when each one ends.
    fn gated(query: &'static str, fail_on: u32) -> (Coalescer<u32, u32>, Arc<Semaphore>, Sizes) {
        let (gate, sizes) = (Arc::new(Semaphore::new(0)), Arc::new(Mutex::new(Vec::new())));
        let (g, seen) = (gate.clone(), sizes.clone());
        let c = Coalescer::spawn(query, 100, move |reqs: Arc<[u32]>| {
            seen.lock().expect("lock").push(reqs.len());
            let g = g.clone();
            async move {
                g.acquire().await.expect("gate").forget();
                if reqs.contains(&fail_on) {
                    Err(DbError::Migrate(sqlx::migrate::MigrateError::VersionMissing(13)))
                } else {
                    Ok(reqs.iter().map(|r| r * 2).collect())
                }
            }
        });
        (c, gate, sizes)
    }

    async fn started(sizes: &Mutex<Vec<usize>>, batches: usize) {
        while sizes.lock().expect("lock").len() < batches {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn calls_that_arrive_during_a_statement_share_the_next_one() {
        let (c, gate, sizes) = gated("test.double", u32::MAX);
        // The first call runs alone; the nine made while it is under way go together.
        let first = c.call(1);
        started(&sizes, 1).await;
        let rest: Vec<_> = (2..=10).map(|i| c.call(i)).collect();
        gate.add_permits(2);
        assert_eq!(first.await.expect("first"), 2);
        let answers: Vec<u32> = futures::future::join_all(rest).await.into_iter().map(|r| r.expect("answer")).collect();
        assert_eq!(answers, (2..=10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(*sizes.lock().expect("lock"), vec![1, 9]);
    }

    #[tokio::test]
    async fn a_request_that_breaks_its_batch_fails_alone() {
        let (c, gate, sizes) = gated("test.poison", 13);
        let first = c.call(1);
        started(&sizes, 1).await;
        let batch: Vec<_> = [12, 13, 14].into_iter().map(|i| c.call(i)).collect();
        // The batch of three fails, then each of its requests runs alone.
        gate.add_permits(5);
        assert_eq!(first.await.expect("first"), 2);
        let answers: Vec<Option<u32>> = futures::future::join_all(batch).await.into_iter().map(Result::ok).collect();
        assert_eq!(answers, vec![Some(24), None, Some(28)]);
        assert_eq!(*sizes.lock().expect("lock"), vec![1, 3, 1, 1, 1]);
    }

    #[tokio::test]
    async fn a_transient_failure_reaches_each_caller_and_the_next_batch_runs() {
        let c = Coalescer::spawn("test.flaky", 10, |reqs: Arc<[u32]>| async move {
            if reqs.contains(&0) { Err(DbError::Timeout { query: "test.flaky", after: Duration::ZERO }) } else { Ok(reqs.to_vec()) }
        });
        let e = c.call(0).await.expect_err("failed batch");
        assert!(e.is_transient(), "{e}");
        assert_eq!(c.call(7).await.expect("next batch"), 7);
    }

    #[tokio::test]
    async fn a_batch_answered_short_is_an_error_not_a_hang() {
        let c = Coalescer::spawn("test.short", 10, |_reqs: Arc<[u32]>| async move { Ok(Vec::<u32>::new()) });
        assert!(c.call(1).await.is_err());
    }
}
