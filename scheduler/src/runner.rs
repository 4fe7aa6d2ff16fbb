//! The schedule loop. Every poll it (1) inserts a pending run for each cron slot that came due
//! since this process started, idempotently across replicas (a slot is unique per schedule),
//! and (2) for each schedule with a pending run, tries to become that schedule's leader by
//! taking its PostgreSQL advisory lock on a dedicated connection, which it holds for the whole
//! run. Whoever holds the lock runs; the others skip. A crashed leader's session ends, the lock
//! with it, and the next leader marks its half-done run `abandoned`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret as _;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use reelq_shared::config::DatabaseSettings;
use reelq_shared::db::DbError;
use reelq_shared::db::schedules::{self, RunEnd};

use crate::settings::{SchedulerSettings, TrendSettings};
use crate::source::{PullOutcome, RunContext, Source};

/// How often a leader checks that its lock's session is still alive during a run.
const LOCK_CHECK: Duration = Duration::from_secs(2);

/// One configured schedule, ready to run.
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// Its expression, as configured.
    pub expression: String,
    /// The parsed expression.
    pub cron: croner::Cron,
    /// Registered but never run.
    pub enabled: bool,
    /// Where its data comes from.
    pub source: Arc<dyn Source>,
}

/// The loop's fixed inputs.
pub struct Runner {
    pool: PgPool,
    connect: PgConnectOptions,
    schedules: Vec<Arc<Schedule>>,
    poll: Duration,
    trends: TrendSettings,
    /// This process, as recorded with the runs it runs.
    runner_id: String,
    started_at: DateTime<Utc>,
}

impl Runner {
    /// A runner over `schedules`.
    pub fn new(pool: PgPool, database: &DatabaseSettings, settings: &SchedulerSettings, schedules: Vec<Schedule>) -> Result<Self, DbError> {
        let connect = database
            .url
            .expose_secret()
            .parse::<PgConnectOptions>()
            .map_err(|source| DbError::Query { query: "connect", source })?
            .options([("statement_timeout", database.statement_timeout_ms.to_string())])
            .log_statements(tracing::log::LevelFilter::Trace);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "scheduler".to_owned());
        Ok(Self {
            pool,
            connect,
            schedules: schedules.into_iter().map(Arc::new).collect(),
            poll: Duration::from_millis(settings.poll_interval_ms),
            trends: settings.trends(),
            runner_id: format!("{host}-{}-{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8]),
            started_at: Utc::now(),
        })
    }

    /// This process's runner id.
    pub fn id(&self) -> &str {
        &self.runner_id
    }

    /// Polls until `stop`, then lets running pulls save their place and end.
    pub async fn run(self, stop: CancellationToken) {
        let me = Arc::new(self);
        let mut registered = false;
        let mut last_slot: HashMap<String, DateTime<Utc>> = HashMap::new();
        let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = JoinSet::new();
        loop {
            if !registered {
                registered = me.register().await;
            }
            if registered && let Err(e) = me.tick(&mut last_slot, &busy, &mut tasks, &stop).await {
                tracing::warn!(error = %e, "scheduler poll failed; retrying");
            }
            while let Some(done) = tasks.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "a schedule task panicked");
                }
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(me.poll) => {}
            }
        }
        // Runs see the same token: they save their resume point and end as `partial`.
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a schedule task panicked");
            }
        }
    }

    /// Records the enabled schedules, so that the api triggers only names that will run.
    async fn register(&self) -> bool {
        for s in self.schedules.iter().filter(|s| s.enabled) {
            if let Err(e) = schedules::register(&self.pool, &s.name, &s.expression, s.source.name()).await {
                tracing::warn!(error = %e, schedule = %s.name, "cannot register the schedule yet");
                return false;
            }
        }
        tracing::info!(schedules = self.schedules.len(), runner = %self.runner_id, "schedules registered");
        true
    }

    async fn tick(
        self: &Arc<Self>,
        last_slot: &mut HashMap<String, DateTime<Utc>>,
        busy: &Arc<Mutex<HashSet<String>>>,
        tasks: &mut JoinSet<()>,
        stop: &CancellationToken,
    ) -> Result<(), DbError> {
        let now = Utc::now();
        for s in self.schedules.iter().filter(|s| s.enabled) {
            let Some(slot) = crate::cron::latest_slot(&s.cron, now) else { continue };
            // Only slots since this process started: a restart does not replay missed ones.
            if slot < self.started_at || last_slot.get(&s.name) == Some(&slot) {
                continue;
            }
            if schedules::insert_pending(&self.pool, &s.name, "cron", Some(slot)).await?.is_some() {
                tracing::info!(schedule = %s.name, %slot, "cron slot due");
            }
            last_slot.insert(s.name.clone(), slot);
        }
        let pending = schedules::with_pending_runs(&self.pool).await?;
        for name in pending {
            let Some(schedule) = self.schedules.iter().find(|s| s.name == name).cloned() else { continue };
            if !schedule.enabled {
                continue;
            }
            {
                let Ok(mut b) = busy.lock() else { continue };
                if !b.insert(name.clone()) {
                    continue;
                }
            }
            let me = self.clone();
            let busy = busy.clone();
            let stop = stop.clone();
            let task = async move {
                if let Err(e) = me.lead(&schedule, &stop).await {
                    tracing::warn!(error = %e, schedule = %schedule.name, "could not run the schedule");
                }
                if let Ok(mut b) = busy.lock() {
                    b.remove(&schedule.name);
                }
            };
            tasks.spawn(task.instrument(tracing::info_span!("task", task = "schedule")));
        }
        Ok(())
    }

    /// Becomes the schedule's leader if no one else is, and runs its pending runs.
    async fn lead(&self, schedule: &Schedule, stop: &CancellationToken) -> Result<(), DbError> {
        let mut conn = timed_connect(&self.connect).await?;
        if !schedules::try_lock(&mut conn, &schedule.name).await? {
            let _ = conn.close().await;
            return Ok(());
        }
        // The lock lives as long as this session: if the connection dies mid-run, another
        // replica may take the schedule, so the run is stopped at its next safe point.
        let run_stop = stop.child_token();
        let run = self.run_pending(schedule, &run_stop, stop);
        tokio::pin!(run);
        let mut check = tokio::time::interval(LOCK_CHECK);
        check.tick().await;
        let mut lost = false;
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = check.tick(), if !lost => {
                    if !schedules::still_locked(&mut conn, &schedule.name).await.unwrap_or(false) {
                        tracing::error!(schedule = %schedule.name, "lost the schedule's lock (its database session ended); stopping the run");
                        lost = true;
                        run_stop.cancel();
                    }
                }
            }
        };
        if !lost {
            let _ = schedules::unlock(&mut conn, &schedule.name).await;
        }
        let _ = conn.close().await;
        outcome
    }

    /// Runs the schedule's pending runs until none is left or `stop` (the run's token, cancelled
    /// at shutdown, which is `shutdown`, or when the lock is lost) is cancelled.
    async fn run_pending(&self, schedule: &Schedule, stop: &CancellationToken, shutdown: &CancellationToken) -> Result<(), DbError> {
        let abandoned = schedules::abandon_running(&self.pool, &schedule.name).await?;
        if abandoned > 0 {
            tracing::warn!(schedule = %schedule.name, runs = abandoned, "marked runs of a vanished scheduler abandoned");
        }
        while !stop.is_cancelled() {
            let Some(run) = schedules::start_pending(&self.pool, &schedule.name, &self.runner_id).await? else { break };
            let span = tracing::info_span!("schedule_run", schedule = %schedule.name, run_id = %run.id, trigger = %run.trigger);
            self.execute(schedule, run.id, stop, shutdown).instrument(span).await?;
        }
        Ok(())
    }
}

impl Runner {
    /// Runs one started run to its end and records how it ended.
    async fn execute(&self, schedule: &Schedule, run_id: uuid::Uuid, stop: &CancellationToken, shutdown: &CancellationToken) -> Result<(), DbError> {
        tracing::info!("run started");
        let started = std::time::Instant::now();
        let mut ctx = RunContext::new(self.pool.clone(), schedule.name.clone(), stop.clone());
        ctx.run_id = Some(run_id);
        let result = schedule.source.pull(&mut ctx).await;
        let videos = i32::try_from(ctx.videos).unwrap_or(i32::MAX);
        let requests = i32::try_from(ctx.requests).unwrap_or(i32::MAX);
        let (status, code, message) = match &result {
            Ok(PullOutcome::Complete) => ("succeeded", None, None),
            // Stopped by the run's own token while the process goes on: the lock was lost.
            Ok(PullOutcome::Stopped { .. }) if stop.is_cancelled() && !shutdown.is_cancelled() => (
                "partial",
                Some("lock_lost"),
                Some("the schedule's lock session ended, so the run stopped rather than risk running beside another replica".to_owned()),
            ),
            Ok(PullOutcome::Stopped { code, reason }) => ("partial", Some(*code), Some(reason.clone())),
            Err(e) => ("failed", Some(e.code()), Some(e.to_string())),
        };
        schedules::finish(&self.pool, run_id, &RunEnd { status, videos, requests, error_code: code, error: message.as_deref() }).await?;
        tracing::info!(status, videos, requests, error_code = code, "run ended");
        let m = reelq_shared::metrics::get();
        m.schedule_runs.with_label_values(&[schedule.name.as_str(), status]).inc();
        m.schedule_run_seconds.with_label_values(&[schedule.name.as_str()]).observe(started.elapsed().as_secs_f64());
        m.pulled_videos.with_label_values(&[schedule.name.as_str()]).inc_by(u64::from(ctx.videos));
        if videos > 0 {
            if let Err(e) = crate::trends::refresh(&self.pool, &self.trends).await {
                tracing::warn!(error = %e, "could not recompute trending hashtags");
            }
            if let Err(e) = crate::trends::learn_links(&self.pool, &self.trends.links).await {
                tracing::warn!(error = %e, "could not relearn wider hashtags");
            }
        }
        Ok(())
    }
}

async fn timed_connect(options: &PgConnectOptions) -> Result<PgConnection, DbError> {
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(options)).await {
        Ok(r) => r.map_err(|source| DbError::Query { query: "connect", source }),
        Err(_) => Err(DbError::Timeout { query: "connect", after: Duration::from_secs(10) }),
    }
}
