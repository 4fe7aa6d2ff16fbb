//! The `train` schedule kind: instead of pulling, a run enqueues a training job (a worker does
//! the work, so the scheduler needs no models) and waits for it, so that the run history says
//! how training went. The job is keyed by the run, so a run resumed by another leader waits for
//! the same job rather than enqueueing a second one.

use std::time::Duration;

use futures::FutureExt as _;
use futures::future::BoxFuture;

use reelq_shared::db::jobs;
use reelq_shared::db::models::SYSTEM_TENANT;
use reelq_shared::domain::JobStatus;
use reelq_shared::training::{self, TrainingRequest};

use crate::source::{PullOutcome, RunContext, Source, SourceError};

/// How often the job's status is read while waiting.
const POLL: Duration = Duration::from_secs(1);

/// Enqueues training and waits for its outcome.
pub struct TrainSource {
    request: TrainingRequest,
}

impl TrainSource {
    /// A source that trains as `request` says.
    pub fn new(request: TrainingRequest) -> Self {
        Self { request }
    }

    async fn run(&self, ctx: &mut RunContext) -> Result<PullOutcome, SourceError> {
        let key = ctx.run_id.map(|id| format!("schedule-run:{id}"));
        let trace = reelq_shared::telemetry::current_context();
        let job = training::enqueue(&ctx.pool, &self.request, key.as_deref(), &trace).await?;
        tracing::info!(job_id = %job.id, "training job enqueued");
        loop {
            let current = jobs::get(&ctx.pool, SYSTEM_TENANT, job.id)
                .await?
                .ok_or_else(|| SourceError::failed("training_job_missing", "the training job vanished"))?;
            match current.status() {
                JobStatus::Succeeded => return Ok(PullOutcome::Complete),
                JobStatus::Failed => {
                    let code = current.error_code.clone().unwrap_or_default();
                    let message = current.error_message.clone().unwrap_or_default();
                    return Err(SourceError::failed("training_failed", format!("training job {} failed ({code}): {message}", job.id)));
                }
                JobStatus::Cancelled => return Err(SourceError::failed("training_cancelled", format!("training job {} was cancelled", job.id))),
                JobStatus::Queued | JobStatus::Running => {}
            }
            tokio::select! {
                () = ctx.stop.cancelled() => {
                    // The job goes on without us; a later run of the schedule trains afresh.
                    return Ok(PullOutcome::Stopped { code: "shutdown", reason: format!("stopped while training job {} ran", job.id) });
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

impl Source for TrainSource {
    fn name(&self) -> &'static str {
        "train"
    }

    fn pull<'a>(&'a self, ctx: &'a mut RunContext) -> BoxFuture<'a, Result<PullOutcome, SourceError>> {
        self.run(ctx).boxed()
    }
}
