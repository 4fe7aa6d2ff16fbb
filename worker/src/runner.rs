//! Running one job message: claim a fenced lease, heartbeat it, run the analyses off the async
//! runtime, write results idempotently, and end the job — or say how the message must be
//! settled when that is not possible now.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use reelq_shared::db::batch::Coalescer;
use reelq_shared::db::jobs::{self, ClaimOutcome, Ending, Finish, JobRecord, Lease, StageTiming};
use reelq_shared::db::results::{self, NewResult};
use reelq_shared::db::{self, DbError, videos};
use reelq_shared::domain::{Analysis, JobErrorCode, JobMessage};
use reelq_shared::metrics;
use reelq_shared::queue::Topology;
use reelq_shared::storage::{StorageError, Store};

use reelq_analysis::hashtags::{CreatorHistory, PulledTags};
use reelq_analysis::{AnalysisError, Input, Pipeline, PulledData, Session};
use reelq_core::catalogue::Plan;
use reelq_core::options::JobOptions;
use reelq_learn::engagement::music::MusicUse;

use crate::dependencies::Dependencies;
use crate::media::probe::{self, Probe};
use crate::settings::Settings;

mod add_song;
mod mux;

/// A creator's latest posts whose chosen hashtags lift their suggestions.
const CREATOR_POSTS: i64 = 10;

/// Most trending hashtags added to the suggestion vocabulary.
const TRENDING_TAGS: i64 = 200;
/// Most hashtags of pulled data added to the vocabulary, the most used first.
const PULLED_TAGS: i64 = 2_000;
/// Fewest pulled videos that must carry a hashtag before it joins the vocabulary: one
/// creator's one-off tag is not yet a tag others use.
const PULLED_TAG_MIN_USES: i64 = 3;
/// Most wider-tag links learned from pulled data that the vocabulary reads.
const PULLED_LINKS: i64 = 20_000;

/// Most claims, or most job outcomes, one statement takes. Prefetch bounds how many a worker
/// can have at once anyway; this keeps one statement's arrays and locks modest.
const MAX_DB_BATCH: usize = 256;

/// How a delivery must be settled once the runner is done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Acknowledge: the job ended (or the message was a duplicate, or the job is gone).
    Ack,
    /// Send round a delay queue, then acknowledge. `reason` says why (a transient fault, a
    /// lease held elsewhere, a tenant at capacity, the database).
    Delay { delay_ms: u64, reason: &'static str },
    /// Publish to the dead-letter queue, then acknowledge.
    DeadLetter { reason: String },
}

/// A job's failure, decided where it happens.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input is at fault: fail now, never retry.
    #[error("{message}")]
    Fatal { code: JobErrorCode, message: String },
    /// The system is at fault (storage, database, broker, a model that did not load): retry
    /// with backoff.
    #[error("{0}")]
    Retryable(String),
    /// The job was cancelled or its lease was lost: stop and write nothing.
    #[error("stopped: {0}")]
    Stopped(&'static str),
}

impl From<AnalysisError> for JobError {
    fn from(e: AnalysisError) -> Self {
        match e {
            AnalysisError::Refused { code, message } => Self::Fatal { code, message },
            AnalysisError::Unavailable(message) => Self::Retryable(message),
            AnalysisError::Stopped => Self::Stopped("cancelled"),
        }
    }
}

impl From<crate::media::probe::MediaError> for JobError {
    fn from(e: crate::media::probe::MediaError) -> Self {
        AnalysisError::from(e).into()
    }
}

impl From<crate::inference::InferenceError> for JobError {
    fn from(e: crate::inference::InferenceError) -> Self {
        AnalysisError::from(e).into()
    }
}

/// What one analysis of a job produced, as stored: its payload and `model_versions`.
#[derive(Debug, Clone, PartialEq)]
pub struct Output {
    pub payload: serde_json::Value,
    pub models: serde_json::Value,
}

impl Output {
    /// A payload no model contributed to.
    pub fn plain(payload: serde_json::Value) -> Self {
        Self { payload, models: serde_json::json!([]) }
    }
}

impl TryFrom<reelq_analysis::AnalysisOutput> for Output {
    type Error = JobError;

    fn try_from(out: reelq_analysis::AnalysisOutput) -> Result<Self, JobError> {
        Ok(Self { payload: out.payload()?, models: out.model_versions()? })
    }
}

/// The job's value serialised, or a retry when it cannot be.
pub fn to_json<T: serde::Serialize + ?Sized>(value: &T) -> Result<serde_json::Value, JobError> {
    serde_json::to_value(value).map_err(|e| JobError::Retryable(format!("result could not be encoded: {e}")))
}

impl From<DbError> for JobError {
    fn from(e: DbError) -> Self {
        Self::Retryable(e.to_string())
    }
}

impl From<StorageError> for JobError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound(_) => Self::Fatal { code: JobErrorCode::VideoMissing, message: "the video's file is gone from storage".into() },
            other => Self::Retryable(other.to_string()),
        }
    }
}

/// What the heartbeat reports.
#[derive(Debug, Clone)]
struct Progress {
    fraction: f32,
    stage: &'static str,
}

/// Shared by every job this process runs.
pub struct JobRunner {
    pool: PgPool,
    store: Store,
    topology: Topology,
    settings: Arc<Settings>,
    scratch: PathBuf,
    pipeline: Arc<Pipeline>,
    /// Set once the model pack in storage (if any) has been copied locally.
    models_synced: tokio::sync::OnceCell<()>,
    /// The hashtags of pulled data and when they were read; refreshed every few minutes.
    pulled: tokio::sync::Mutex<Option<(Instant, Arc<PulledTags>)>>,
    /// The promoted model versions, refreshed before the jobs that use them.
    registry: crate::registry::Registry,
    /// Whether PostgreSQL and storage are up; outcome writes wait for them.
    deps: Arc<Dependencies>,
    /// Claims of deliveries that arrive together, in one statement.
    claims: Coalescer<(uuid::Uuid, uuid::Uuid), ClaimOutcome>,
    /// Outcomes of jobs that end together, in one statement; each still fenced by its lease.
    finishes: Coalescer<Finish, bool>,
}

impl JobRunner {
    /// The analysis pipeline every job of this runner shares.
    pub fn pipeline(&self) -> Arc<Pipeline> {
        self.pipeline.clone()
    }

    /// A runner over the given connections.
    pub fn new(pool: PgPool, store: Store, settings: Arc<Settings>) -> Self {
        let scratch = settings.worker.scratch_dir.clone().map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let pipeline = Arc::new(
            Pipeline::from_settings(&settings.media, &settings.inference, &settings.hashtags)
                .with_observer(Arc::new(crate::Metrics))
                .with_pulled_data(Arc::new(PulledFromDb { pool: pool.clone() }))
                .with_recognizers(crate::songs::recognizers(&pool, &settings.songs)),
        );
        let registry = crate::registry::Registry::new(pool.clone(), store.clone(), Duration::from_millis(settings.inference.registry_refresh_ms));
        let deps = Dependencies::new(pool.clone(), store.clone(), Duration::from_millis(settings.worker.dependency_probe_ms));
        let lease_ttl = Duration::from_millis(settings.worker.lease_ttl_ms);
        let claims = Coalescer::spawn("jobs.claim", MAX_DB_BATCH, {
            let pool = pool.clone();
            move |wanted: std::sync::Arc<[(uuid::Uuid, uuid::Uuid)]>| {
                let pool = pool.clone();
                async move { jobs::claim_many(&pool, &wanted, lease_ttl).await }
            }
        });
        let finishes = Coalescer::spawn("jobs.finish", MAX_DB_BATCH, {
            let pool = pool.clone();
            move |outcomes: std::sync::Arc<[Finish]>| {
                let pool = pool.clone();
                async move { jobs::finish_many(&pool, &outcomes).await }
            }
        });
        Self {
            pool,
            store,
            topology: Topology::new(&settings.amqp),
            settings,
            scratch,
            pipeline,
            models_synced: tokio::sync::OnceCell::new(),
            pulled: tokio::sync::Mutex::new(None),
            registry,
            deps,
            claims,
            finishes,
        }
    }

    /// What the runner knows about PostgreSQL and storage; the consumers wait on it before
    /// starting a job.
    pub fn dependencies(&self) -> Arc<Dependencies> {
        self.deps.clone()
    }

    fn lease_ttl(&self) -> Duration {
        Duration::from_millis(self.settings.worker.lease_ttl_ms)
    }

    /// Handles one job message: the worker's "process one message" entry point, used by the
    /// consumers and directly by tests.
    pub async fn handle(&self, msg: &JobMessage, trace: &HashMap<String, String>) -> Disposition {
        let span = tracing::info_span!(
            "job",
            job_id = %msg.job_id,
            tenant_id = %msg.tenant_id,
            attempt = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        reelq_shared::telemetry::set_parent(&span, trace);
        self.handle_in_span(msg).instrument(span).await
    }

    async fn handle_in_span(&self, msg: &JobMessage) -> Disposition {
        let claim = match self.claims.call((msg.job_id, msg.tenant_id)).await {
            Ok(c) => c,
            Err(e) => {
                // The database is the source of truth; without it nothing can be decided, so
                // the message waits and comes back.
                tracing::warn!(job_id = %msg.job_id, error = %e, "cannot claim job; retrying later");
                if self.deps.check_after_fault().await.is_some() {
                    metrics::get().job_deferrals.with_label_values(&["dependency_down"]).inc();
                }
                return Disposition::Delay { delay_ms: self.topology.retry_delay_ms(3), reason: "database" };
            }
        };
        match claim {
            ClaimOutcome::Claimed(job, lease) => {
                tracing::Span::current().record("attempt", lease.attempt);
                self.run_claimed(*job, lease).await
            }
            ClaimOutcome::Finished(status) => {
                tracing::info!(job_id = %msg.job_id, %status, "duplicate delivery of an ended job; skipped");
                Disposition::Ack
            }
            ClaimOutcome::NotFound => {
                tracing::warn!(job_id = %msg.job_id, "message for an unknown job; dropped");
                Disposition::Ack
            }
            ClaimOutcome::LeaseHeld => {
                metrics::get().job_deferrals.with_label_values(&["lease_held"]).inc();
                Disposition::Delay { delay_ms: self.topology.defer_delay_ms(), reason: "lease_held" }
            }
            ClaimOutcome::TenantAtCapacity => {
                metrics::get().job_deferrals.with_label_values(&["tenant_at_capacity"]).inc();
                Disposition::Delay { delay_ms: self.topology.defer_delay_ms(), reason: "tenant_at_capacity" }
            }
        }
    }

    async fn run_claimed(&self, job: JobRecord, lease: Lease) -> Disposition {
        let m = metrics::get();
        if lease.attempt == 1 {
            let lag = (Utc::now() - job.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            m.queue_lag_seconds.with_label_values(&[job.priority.as_str()]).observe(lag);
        }
        if lease.attempt > job.max_attempts {
            // Redelivered after its last attempt died without settling (a crash loop).
            let message = job.error_message.clone().unwrap_or_else(|| "the job's attempts were used up".into());
            return self.fail(&job, &lease, JobErrorCode::RetriesExhausted, &message, true).await;
        }

        let cancel = CancellationToken::new();
        let progress = Arc::new(Mutex::new(Progress { fraction: 0.0, stage: "starting" }));
        // Aborted when this future is dropped too (a crash drill, a drain deadline), so a lease
        // is never kept alive by a job that is no longer running.
        let heartbeat = tokio_util::task::AbortOnDropHandle::new(reelq_shared::telemetry::spawn_named(
            "heartbeat",
            heartbeat(
                self.pool.clone(),
                lease,
                self.lease_ttl(),
                Duration::from_millis(self.settings.worker.heartbeat_interval_ms),
                progress.clone(),
                cancel.clone(),
            ),
        ));
        m.jobs_in_flight.inc();
        let deadline = Duration::from_secs(self.settings.worker.job_timeout_secs);
        let outcome = tokio::time::timeout(deadline, self.execute(&job, &lease, &progress, &cancel)).await;
        m.jobs_in_flight.dec();
        let lost = cancel.is_cancelled();

        // The heartbeat keeps the lease while the outcome is written, which may wait out a
        // database outage; the job's own work is over, so nothing else watches `cancel` now.
        let disposition = match outcome {
            Ok(Ok((last, timings))) => self.complete(&job, &lease, last, &timings).await,
            Ok(Err(JobError::Stopped(why))) => {
                tracing::info!(why, "job stopped; nothing more written");
                Disposition::Ack
            }
            Ok(Err(_)) if lost => {
                tracing::info!("job lost its lease while failing; nothing more written");
                Disposition::Ack
            }
            Ok(Err(JobError::Fatal { code, message })) => self.fail(&job, &lease, code, &message, false).await,
            Ok(Err(JobError::Retryable(message))) => self.retry(&job, &lease, &message).await,
            Err(_) => {
                let message = format!("processing took longer than {} s", deadline.as_secs());
                self.fail(&job, &lease, JobErrorCode::Timeout, &message, false).await
            }
        };
        cancel.cancel();
        heartbeat.abort();
        disposition
    }

    /// Runs the analyses not yet done; returns the last result, which is written together with
    /// the job's completion.
    async fn execute(
        &self,
        job: &JobRecord,
        lease: &Lease,
        progress: &Arc<Mutex<Progress>>,
        cancel: &CancellationToken,
    ) -> Result<(Vec<NewResult>, Vec<StageTiming>), JobError> {
        let mut timings = Timings::default();
        let mut analyses = Vec::with_capacity(job.analyses.len());
        for name in &job.analyses {
            let a = Analysis::parse(name).ok_or_else(|| JobError::Fatal {
                code: JobErrorCode::InvalidRequest,
                message: format!("this worker does not know the analysis `{name}`"),
            })?;
            analyses.push(a);
        }
        // The api validated the options with the same parser; rows written otherwise fail here.
        let stored = job.options.as_object().cloned().unwrap_or_default();
        let options = JobOptions::parse(&stored, &analyses).map_err(|e| JobError::Fatal { code: JobErrorCode::InvalidRequest, message: e.message })?;
        let done = if lease.attempt > 1 { results::done_analyses(&self.pool, job.id).await? } else { Vec::new() };
        let todo: Vec<Analysis> = analyses.into_iter().filter(|a| !done.iter().any(|d| d == a.as_str())).collect();
        let plan = Plan::of(&todo);

        let mut media: Option<Media> = None;
        if plan.video {
            set_progress(progress, 0.05, "downloading");
            let video_id = job.video_id.ok_or_else(|| JobError::Fatal { code: JobErrorCode::VideoMissing, message: "the job has no video".into() })?;
            let video = videos::get(&self.pool, job.tenant_id, video_id)
                .await?
                .ok_or_else(|| JobError::Fatal { code: JobErrorCode::VideoMissing, message: "the video no longer exists".into() })?;
            let started = Instant::now();
            let dir =
                tempfile::Builder::new().prefix("reelq-job-").tempdir_in(&self.scratch).map_err(|e| JobError::Retryable(format!("scratch space: {e}")))?;
            let path = dir.path().join("input");
            let download = self.store.download_to_file(&video.object_key, &path).instrument(tracing::info_span!("stage", stage = "download"));
            tokio::select! {
                r = download => { r?; }
                () = cancel.cancelled() => return Err(JobError::Stopped("cancelled")),
            }
            metrics::get().stage_seconds.with_label_values(&["download"]).observe(started.elapsed().as_secs_f64());
            timings.add("download", started);
            // Every media analysis starts from the probe, which also enforces the limits
            // before anything is decoded.
            set_progress(progress, 0.1, "probe");
            let limits = self.settings.media.clone();
            let probe_path = path.clone();
            let started = Instant::now();
            let found = run_blocking(move || probe::probe(&probe_path, &limits)).instrument(tracing::info_span!("stage", stage = "probe")).await??;
            timings.add("inspect", started);
            media = Some(Media { _dir: dir, path, probe: found });
        }

        if plan.models {
            self.ensure_model_pack().await?;
        }
        if plan.registry {
            self.registry.refresh(self.pipeline.models()).await;
        }
        let mut session: Option<Session> = None;
        if let Some(m) = &media {
            set_progress(progress, 0.15, "decode");
            let input = Input {
                path: m.path.clone(),
                probe: m.probe.clone(),
                options: options.clone(),
                pulled: if plan.trending { self.pulled().await } else { Arc::default() },
                creator: match options.creator.as_deref() {
                    Some(creator) if plan.trending => Some(self.creator_history(job, creator).await?),
                    _ => None,
                },
            };
            let (pipeline, stop, wanted) = (self.pipeline.clone(), cancel.clone(), todo.clone());
            let started = Instant::now();
            let decoded = run_blocking(move || pipeline.start(input, &wanted, &|| stop.is_cancelled()))
                .instrument(tracing::info_span!("stage", stage = "decode"))
                .await??;
            timings.add("decode", started);
            session = Some(decoded);
        }

        let total = todo.len().max(1) as f32;
        let mut pending: Vec<NewResult> = Vec::new();
        for (i, analysis) in todo.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(JobError::Stopped("cancelled"));
            }
            // Persist the previous result before starting the next one, so a retry resumes.
            if !pending.is_empty() {
                let mut tx = db::timed("results.begin", self.pool.begin()).await?;
                if !results::upsert_fenced(&mut tx, lease, &pending).await? {
                    return Err(JobError::Stopped("lease lost"));
                }
                db::timed("results.commit", tx.commit()).await?;
                pending.clear();
            }
            set_progress(progress, 0.25 + 0.7 * (i as f32 / total), analysis.as_str());
            let stage_span = tracing::info_span!("stage", stage = analysis.as_str());
            let started = Instant::now();
            let out = self.run_analysis(*analysis, job, &options, &mut session, cancel).instrument(stage_span).await?;
            timings.add(analysis.as_str(), started);
            pending.push(NewResult { analysis: analysis.as_str().to_owned(), payload: out.payload, model_versions: out.models });
        }
        drop(session);
        drop(media);
        Ok((pending, timings.0))
    }

    /// Copies the model pack from storage on first need; a failure is retried with the job.
    async fn ensure_model_pack(&self) -> Result<(), JobError> {
        let Some(prefix) = self.settings.inference.models_s3_prefix.as_deref().filter(|p| !p.is_empty()) else { return Ok(()) };
        let dir = self.pipeline.models().models_dir();
        self.models_synced
            .get_or_try_init(|| async {
                crate::model_pack::sync_pack(&self.store, prefix, &dir).await.map(|_| ()).map_err(|e| JobError::Retryable(e.to_string()))
            })
            .await
            .map(|_| ())
    }

    /// The hashtags the job's creator chose for their latest posts (feedback on the tenant's
    /// other jobs that named the same creator).
    async fn creator_history(&self, job: &JobRecord, creator: &str) -> Result<CreatorHistory, JobError> {
        let posts = reelq_shared::db::feedback::creator_posts(&self.pool, job.tenant_id, creator, job.id, CREATOR_POSTS).await?;
        Ok(CreatorHistory::from_posts(&posts))
    }

    /// The hashtags of pulled data the vocabulary grows with, read at most every five minutes:
    /// the trending ones the scheduler computed, then the ones pulled videos carry most, and
    /// the wider tags the scheduler learned from them. Without them suggestions still come from
    /// the curated vocabulary, so a failed read only logs.
    async fn pulled(&self) -> Arc<PulledTags> {
        const FRESH: Duration = Duration::from_secs(300);
        let mut slot = self.pulled.lock().await;
        if let Some((at, tags)) = slot.as_ref()
            && at.elapsed() < FRESH
        {
            return tags.clone();
        }
        let read = async {
            let mut tags: Vec<String> =
                reelq_shared::db::scraped::trending(&self.pool, None, TRENDING_TAGS).await?.into_iter().map(|t| t.hashtag).collect();
            for (tag, _) in reelq_shared::db::scraped::frequent_hashtags(&self.pool, PULLED_TAG_MIN_USES, PULLED_TAGS).await? {
                if !tags.contains(&tag) {
                    tags.push(tag);
                }
            }
            let links = reelq_shared::db::scraped::links(&self.pool, PULLED_LINKS).await?.into_iter().map(|l| (l.hashtag, l.wider)).collect();
            Ok::<_, DbError>(PulledTags { tags, links })
        };
        let tags = match read.await {
            Ok(list) => Arc::new(list),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the hashtags of pulled data; suggesting from the curated list");
                slot.as_ref().map(|(_, t)| t.clone()).unwrap_or_default()
            }
        };
        *slot = Some((Instant::now(), tags.clone()));
        tags
    }

    /// The one dispatcher of a job's analyses: the service's own jobs (`noop`, `mux`, `train`)
    /// run here; every analysis of the video runs in the pipeline, off the async runtime.
    async fn run_analysis(
        &self,
        analysis: Analysis,
        job: &JobRecord,
        options: &JobOptions,
        session: &mut Option<Session>,
        cancel: &CancellationToken,
    ) -> Result<Output, JobError> {
        match analysis {
            Analysis::Noop => {
                let started = Instant::now();
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(options.noop_ms)) => {}
                    () = cancel.cancelled() => return Err(JobError::Stopped("cancelled")),
                }
                metrics::get().stage_seconds.with_label_values(&["noop"]).observe(started.elapsed().as_secs_f64());
                Ok(Output::plain(to_json(&NoopFinding { waited_ms: options.noop_ms })?))
            }
            Analysis::Mux => {
                let fetched = session.as_ref().map(|s| s.path().to_path_buf());
                Ok(Output::plain(mux::run(self, job, options, fetched.as_deref(), cancel).await?))
            }
            Analysis::Train => {
                let trainer = crate::training::Trainer {
                    pool: &self.pool,
                    store: &self.store,
                    pipeline: &self.pipeline,
                    media: &self.settings.media,
                    scratch: &self.scratch,
                    pulled_tags: self.pulled().await,
                };
                crate::training::run(&trainer, job, cancel).await
            }
            Analysis::AddSong => Ok(Output::plain(add_song::run(self, job, cancel).await?)),
            of_the_video => {
                let mut s = session.take().ok_or_else(|| JobError::Retryable("the video was not fetched".into()))?;
                let pipeline = self.pipeline.clone();
                let (s, out) = run_blocking(move || {
                    let out = pipeline.run(&mut s, of_the_video);
                    (s, out)
                })
                .await?;
                let probe = (of_the_video == Analysis::Probe).then(|| s.probe().clone());
                *session = Some(s);
                let out = Output::try_from(out?)?;
                if let (Some(probe), Some(video_id)) = (probe, job.video_id) {
                    videos::set_probe(&self.pool, video_id, &to_json(&probe)?).await?;
                }
                Ok(out)
            }
        }
    }

    async fn complete(&self, job: &JobRecord, lease: &Lease, last: Vec<NewResult>, timings: &[StageTiming]) -> Disposition {
        // A failed write is retried, not the analysis: the results are in hand.
        let done = Finish { lease: *lease, ending: Ending::Succeeded { results: last, timings: timings.to_vec() } };
        match self.deps.persist("jobs.complete", || self.finishes.call(done.clone())).await {
            Ok(true) => {
                metrics::get().jobs_finished.with_label_values(&["succeeded", ""]).inc();
                tracing::info!("job succeeded");
                Disposition::Ack
            }
            Ok(false) => {
                tracing::info!("lease lost before completion; another worker or a cancellation owns the job");
                Disposition::Ack
            }
            Err(e) => self.retry(job, lease, &format!("recording the result failed: {e}")).await,
        }
    }

    async fn fail(&self, job: &JobRecord, lease: &Lease, code: JobErrorCode, message: &str, dead_letter: bool) -> Disposition {
        let failed = Finish { lease: *lease, ending: Ending::Failed { code, message: message.to_owned() } };
        match self.deps.persist("jobs.fail", || self.finishes.call(failed.clone())).await {
            Ok(true) => {
                metrics::get().jobs_finished.with_label_values(&["failed", code.as_str()]).inc();
                tracing::info!(code = code.as_str(), message, "job failed");
                if dead_letter { Disposition::DeadLetter { reason: format!("{code}: {message}") } } else { Disposition::Ack }
            }
            Ok(false) => Disposition::Ack,
            Err(e) => {
                // The failure could not be recorded: try the whole job again later rather than
                // lose the verdict. The lease lapses meanwhile.
                tracing::warn!(error = %e, "recording a failure failed; the job will be retried");
                Disposition::Delay { delay_ms: self.topology.retry_delay_ms(job.attempt + 1), reason: "database" }
            }
        }
    }

    async fn retry(&self, job: &JobRecord, lease: &Lease, message: &str) -> Disposition {
        if let Some(down) = self.deps.check_after_fault().await {
            // The job is not at fault: give its attempt back and let it wait out the outage.
            // The consumers start nothing new until the dependency answers again.
            metrics::get().job_deferrals.with_label_values(&["dependency_down"]).inc();
            tracing::warn!(error = message, dependency = down.as_str(), "dependency down; the attempt does not count");
            let message = format!("waiting for {} to come back: {message}", down.as_str());
            if let Err(e) = self.deps.persist("jobs.release_for_retry", || jobs::release_for_retry(&self.pool, lease, &message, true)).await {
                tracing::warn!(error = %e, "could not release the lease after an outage");
            }
            return Disposition::Delay { delay_ms: self.topology.retry_delay_ms(lease.attempt), reason: "dependency_down" };
        }
        if lease.attempt >= job.max_attempts {
            let message = format!("gave up after {} attempts; last error: {message}", lease.attempt);
            return self.fail(job, lease, JobErrorCode::RetriesExhausted, &message, true).await;
        }
        metrics::get().job_retries.with_label_values(&["transient"]).inc();
        tracing::warn!(error = message, "transient fault; the job will be retried");
        if let Err(e) = self.deps.persist("jobs.release_for_retry", || jobs::release_for_retry(&self.pool, lease, message, false)).await {
            // The lease then lapses on its own and the retry claims it after that.
            tracing::warn!(error = %e, "could not release the lease for the retry");
        }
        Disposition::Delay { delay_ms: self.topology.retry_delay_ms(lease.attempt + 1), reason: "transient" }
    }
}

/// `noop`: how long it waited.
#[derive(Debug, serde::Serialize)]
struct NoopFinding {
    waited_ms: u64,
}

/// Pulled TikTok data from PostgreSQL, for the pipeline's `music`. The pipeline runs on the
/// blocking pool, where this waits on the runtime for the query.
struct PulledFromDb {
    pool: PgPool,
}

impl PulledData for PulledFromDb {
    fn music_uses(&self, tags: &[String], region: Option<&str>, limit: usize) -> Result<Vec<MusicUse>, AnalysisError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        tokio::runtime::Handle::current()
            .block_on(reelq_shared::db::scraped::music_uses(&self.pool, tags, region, limit))
            .map_err(|e| AnalysisError::Unavailable(e.to_string()))
    }
}

/// The fetched video of a job and what its probe found.
struct Media {
    /// Removed (with the file) when the job is done with it.
    _dir: tempfile::TempDir,
    path: PathBuf,
    probe: Probe,
}

fn set_progress(progress: &Arc<Mutex<Progress>>, fraction: f32, stage: &'static str) {
    if let Ok(mut p) = progress.lock() {
        p.fraction = fraction;
        p.stage = stage;
    }
}

/// A failure the input is at fault for: `code` is what the client sees; never retried.
fn fatal(code: JobErrorCode, message: impl Into<String>) -> JobError {
    JobError::Fatal { code, message: message.into() }
}

/// Runs blocking work (decoding, inference) on the blocking pool with the caller's span.
async fn run_blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, JobError> {
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f)).await.map_err(|e| JobError::Retryable(format!("processing thread failed: {e}")))
}

/// Extends the lease and reports progress until cancelled; cancels `cancel` when the lease is
/// lost (the job was cancelled or taken over), which stops the job within one interval.
async fn heartbeat(pool: PgPool, lease: Lease, ttl: Duration, every: Duration, progress: Arc<Mutex<Progress>>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let p = progress.lock().map(|p| p.clone()).unwrap_or(Progress { fraction: 0.0, stage: "running" });
        match jobs::heartbeat(&pool, &lease, ttl, p.fraction, p.stage).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(job_id = %lease.job_id, "lease lost (cancelled or taken over); stopping");
                cancel.cancel();
                return;
            }
            // A missed beat is survivable while the lease lasts; the next one may succeed.
            Err(e) => tracing::warn!(job_id = %lease.job_id, error = %e, "heartbeat failed"),
        }
    }
}

/// The stages of one attempt, in the order they ran.
#[derive(Default)]
struct Timings(Vec<StageTiming>);

impl Timings {
    fn add(&mut self, stage: &str, started: Instant) {
        self.0.push(StageTiming { stage: stage.to_owned(), ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX) });
    }
}
