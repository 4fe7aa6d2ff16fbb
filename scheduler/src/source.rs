//! What every data source implements, and the context a run gives it: where to store what it
//! pulled, where to keep its resume point, and the signal to stop.

use chrono::Utc;
use futures::future::BoxFuture;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use reelq_shared::db::scraped::{self, PulledVideo};
use reelq_shared::db::{DbError, schedules};

/// A source of pulled videos: the TikTok Research API, or a dump.
pub trait Source: Send + Sync {
    /// Name stored with the videos it yields (`tiktok`, `dump`).
    fn name(&self) -> &'static str;

    /// Pulls everything the schedule asks for, storing it through `ctx` as it goes, so that a
    /// run stopped halfway keeps what it got.
    fn pull<'a>(&'a self, ctx: &'a mut RunContext) -> BoxFuture<'a, Result<PullOutcome, SourceError>>;
}

/// How a pull ended without failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullOutcome {
    /// Everything asked for was pulled.
    Complete,
    /// Stopped cleanly before the end (daily quota spent, shutdown); the resume point is saved
    /// and the next run carries on from it.
    Stopped {
        /// Stable code: `quota_exhausted`, `shutdown`.
        code: &'static str,
        /// Explanation.
        reason: String,
    },
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The source refused or broke in a way that retrying now will not fix.
    #[error("{message}")]
    Failed {
        /// Stable code, stored with the run.
        code: &'static str,
        /// Explanation (never a secret).
        message: String,
    },
}

impl SourceError {
    /// Shorthand for [`SourceError::Failed`].
    pub fn failed(code: &'static str, message: impl Into<String>) -> Self {
        Self::Failed { code, message: message.into() }
    }

    /// Stable code stored with the run.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Db(_) => "database_unavailable",
            Self::Failed { code, .. } => code,
        }
    }
}

/// One run's view of the world.
pub struct RunContext {
    /// The database.
    pub pool: PgPool,
    /// Name of the schedule being run.
    pub schedule: String,
    /// Cancelled at shutdown: sources stop at the next safe point and save their place.
    pub stop: CancellationToken,
    /// Videos stored so far.
    pub videos: u32,
    /// API requests made so far.
    pub requests: u32,
    /// The run being run, when there is one (a key for what it enqueues).
    pub run_id: Option<uuid::Uuid>,
}

impl RunContext {
    /// A context for a run of `schedule`.
    pub fn new(pool: PgPool, schedule: impl Into<String>, stop: CancellationToken) -> Self {
        Self { pool, schedule: schedule.into(), stop, videos: 0, requests: 0, run_id: None }
    }

    /// Stores a batch of videos with a snapshot of their counters taken now.
    pub async fn store(&mut self, source: &str, batch: &[PulledVideo]) -> Result<(), SourceError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.acquire().await.map_err(|source| DbError::Query { query: "acquire", source })?;
        scraped::upsert_batch(&mut conn, batch, source, Utc::now()).await?;
        self.videos += u32::try_from(batch.len()).unwrap_or(u32::MAX);
        Ok(())
    }

    /// The saved resume point of this schedule.
    pub async fn checkpoint<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, SourceError> {
        let value = schedules::checkpoint(&self.pool, &self.schedule).await?;
        // A resume point written by an older version that no longer parses is dropped: the
        // pull starts over, which costs quota but stores nothing twice.
        Ok(value.and_then(|v| serde_json::from_value(v).ok()))
    }

    /// Saves (or with `None`, clears) the resume point.
    pub async fn save_checkpoint<T: serde::Serialize>(&self, checkpoint: Option<&T>) -> Result<(), SourceError> {
        let value = checkpoint.map(serde_json::to_value).transpose().map_err(|e| SourceError::failed("checkpoint_invalid", e.to_string()))?;
        schedules::set_checkpoint(&self.pool, &self.schedule, value.as_ref()).await?;
        Ok(())
    }
}
