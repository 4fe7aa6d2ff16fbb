//! Waiting for a job to end by polling it.

use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::{self, ApiClient};
use crate::model::Job;
use crate::progress;

/// Poll intervals: quick at first, since short jobs end within a second or two, then slower
/// so that a long job does not load the API for nothing.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    pub const FIRST: Duration = Duration::from_millis(250);
    pub const MAX: Duration = Duration::from_secs(2);
    const GROWTH: f64 = 1.5;
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next;
        self.next = current.mul_f64(Self::GROWTH).min(Self::MAX);
        Some(current)
    }
}

const LAST_POLL_GRACE: Duration = Duration::from_secs(1);

/// How a wait ended.
#[derive(Debug)]
pub enum Outcome {
    /// The job reached a terminal status.
    Finished(Job),
    /// Time ran out.
    TimedOut {
        /// The last view of the job, if any poll got through.
        last: Option<Job>,
        /// Why the latest poll failed, if it did: often the real reason for the timeout.
        fault: Option<String>,
    },
}

/// Polls the job until it ends or `timeout` passes. The API being briefly unreachable or
/// overloaded does not end the wait; any other error does.
pub async fn wait_for_job(client: &ApiClient, id: Uuid, timeout: Duration, show_progress: bool) -> Result<Outcome> {
    let deadline = Instant::now() + timeout;
    let bar = progress::job_bar(show_progress);
    let mut delays = Backoff::default();
    let mut last = None;
    let mut fault = None;
    loop {
        // The last poll is taken at the deadline, so it gets a moment past it to answer; none
        // may run on for the full request timeout.
        match tokio::time::timeout_at(deadline + LAST_POLL_GRACE, client.job(id)).await {
            Err(_elapsed) => break,
            Ok(Ok(job)) => {
                progress::show_job(&bar, &job);
                if job.status.is_terminal() {
                    bar.finish_and_clear();
                    return Ok(Outcome::Finished(job));
                }
                last = Some(job);
                fault = None;
            }
            Ok(Err(err)) if client::is_transient(&err) => {
                bar.set_message(format!("retrying: {err}"));
                fault = Some(format!("{err:#}"));
            }
            Ok(Err(err)) => {
                bar.finish_and_clear();
                return Err(err);
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        let delay = delays.next().unwrap_or(Backoff::MAX);
        tokio::time::sleep(delay.min(deadline - now)).await;
    }
    bar.finish_and_clear();
    Ok(Outcome::TimedOut { last, fault })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::fake_api::{fake_api, problem};

    const ID: &str = "0190c6d5-7c1e-7d6a-9b1e-3f2a1c0d4e5f";

    fn job_json(status: &str) -> String {
        format!(r#"{{"id":"{ID}","status":"{status}","analyses":["noop"],"progress":0.5,"attempts":1,"max_attempts":3}}"#)
    }

    #[tokio::test]
    async fn rides_out_an_outage_until_the_job_ends() {
        let (url, hits) = fake_api(vec![
            problem(503, "Service Unavailable", "service_unavailable", "try again"),
            (200, job_json("running")),
            (200, job_json("succeeded")),
        ])
        .await;
        let client = ApiClient::new(&url, "k").expect("client");
        let outcome = wait_for_job(&client, ID.parse().expect("uuid"), Duration::from_secs(10), false).await.expect("waits");
        let Outcome::Finished(job) = outcome else { panic!("did not finish: {outcome:?}") };
        assert_eq!(job.status.as_str(), "succeeded");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_refusal_ends_the_wait_at_once() {
        let (url, hits) = fake_api(vec![problem(404, "Not Found", "not_found", "job not found")]).await;
        let client = ApiClient::new(&url, "k").expect("client");
        let err = wait_for_job(&client, ID.parse().expect("uuid"), Duration::from_secs(10), false).await.expect_err("fails");
        assert_eq!(format!("{err:#}"), "Not Found (not_found): job not found");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_with_the_last_view() {
        let (url, hits) = fake_api(vec![(200, job_json("running"))]).await;
        let client = ApiClient::new(&url, "k").expect("client");
        let started = std::time::Instant::now();
        let outcome = wait_for_job(&client, ID.parse().expect("uuid"), Duration::from_millis(700), false).await.expect("waits");
        let elapsed = started.elapsed();
        let Outcome::TimedOut { last: Some(last), fault: None } = outcome else { panic!("unexpected: {outcome:?}") };
        assert_eq!(last.status.as_str(), "running");
        // Polls at 0, 250 and 625 ms, then a last one at the deadline.
        assert_eq!(hits.load(Ordering::SeqCst), 4);
        assert!(elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    }

    #[test]
    fn backoff_starts_fast_and_settles_at_two_seconds() {
        let ms: Vec<u128> = Backoff::default().take(9).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 375, 562, 843, 1265, 1898, 2000, 2000, 2000]);
    }

    #[test]
    fn backoff_never_exceeds_the_cap() {
        assert!(Backoff::default().take(100).all(|d| d >= Backoff::FIRST && d <= Backoff::MAX));
    }
}
