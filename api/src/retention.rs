//! Removing what deletions owe to storage, and the retention sweep of uploads, `mux` outputs
//! and finished jobs.
//!
//! Every pass locks its rows with `SKIP LOCKED` for its whole transaction, removes the objects
//! and only then changes the rows, so replicas sweeping at once take disjoint batches, and a
//! pass that fails half-way leaves its rows to be taken again (removing an absent object
//! succeeds).

use std::time::Duration;

use uuid::Uuid;

use reelq_shared::db;
use reelq_shared::db::lifecycle;
use reelq_shared::metrics;

use crate::ingest::SweepError;
use crate::state::AppState;

const DAY: Duration = Duration::from_secs(86_400);

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Deletions (of videos and tenants' data) whose objects are all gone and settled.
    pub deletions: usize,
    /// Uploads whose bytes were removed.
    pub uploads: usize,
    /// `mux` outputs removed.
    pub outputs: usize,
    /// Finished jobs removed.
    pub jobs: usize,
}

/// Removes the objects of due deletions (only `only` when given), up to `limit` deletions;
/// returns how many settled. A deletion storage failed is due again after a backoff that
/// doubles up to an hour.
pub async fn remove_owed(state: &AppState, only: Option<i64>, limit: i64) -> Result<(usize, usize), SweepError> {
    let mut tx = db::timed("lifecycle.begin", state.pool.begin()).await?;
    let owed = lifecycle::lock_owed(&mut tx, only, limit).await?;
    let taken = owed.len();
    let mut settled = 0;
    for d in owed {
        let began = chrono::Utc::now();
        let mut outcome = state.store.delete_many(&d.keys).await;
        for prefix in &d.prefixes {
            if outcome.is_err() {
                break;
            }
            outcome = state.store.delete_prefix(prefix).await.map(|_| ());
        }
        match outcome {
            Ok(()) => {
                if lifecycle::removed(&mut tx, d.id, began).await? {
                    settled += 1;
                }
            }
            Err(e) => {
                let backoff = Duration::from_secs(10u64.saturating_mul(1 << d.attempts.clamp(0, 9))).min(Duration::from_secs(3_600));
                tracing::warn!(deletion = d.id, error = %e, retry_in_secs = backoff.as_secs(), "removing a deletion's objects failed; trying again later");
                lifecycle::failed(&mut tx, d.id, &e.to_string(), backoff).await?;
            }
        }
    }
    db::timed("lifecycle.commit", tx.commit()).await?;
    metrics::get().objects_removed.with_label_values(&["deletion"]).inc_by(settled as u64);
    Ok((taken, settled))
}

/// What retention removes.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// Uploads' bytes; the rows become `expired`.
    Uploads,
    /// `mux` outputs; the results are marked.
    Outputs,
    /// Finished jobs, rows and all.
    Jobs,
}

/// One batch of one kind of expiry: lock the rows, remove their objects, then change the rows.
async fn expire_batch(state: &AppState, kind: Expiry, age: Duration, limit: i64) -> Result<usize, SweepError> {
    let mut tx = db::timed("lifecycle.begin", state.pool.begin()).await?;
    let rows = match kind {
        Expiry::Uploads => lifecycle::lock_expired_uploads(&mut tx, age, limit).await?,
        Expiry::Outputs => lifecycle::lock_expired_outputs(&mut tx, age, limit).await?,
        Expiry::Jobs => lifecycle::lock_finished_jobs(&mut tx, age, limit).await?,
    };
    if rows.is_empty() {
        return Ok(0);
    }
    let keys: Vec<String> = rows.iter().filter_map(|r| r.key.clone()).collect();
    state.store.delete_many(&keys).await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    match kind {
        Expiry::Uploads => lifecycle::mark_uploads_expired(&mut tx, &ids).await?,
        Expiry::Outputs => lifecycle::mark_outputs_expired(&mut tx, &ids).await?,
        Expiry::Jobs => {
            lifecycle::delete_jobs(&mut tx, &ids).await?;
        }
    }
    db::timed("lifecycle.commit", tx.commit()).await?;
    Ok(ids.len())
}

/// Removes one kind of expired data in batches until less than a full batch is left or
/// shutdown begins; returns how much.
async fn expire(state: &AppState, kind: Expiry, days: u32, cancel: &tokio_util::sync::CancellationToken) -> Result<usize, SweepError> {
    if days == 0 {
        return Ok(0);
    }
    let limit = state.settings.retention.sweep_batch;
    let mut total = 0;
    loop {
        let n = expire_batch(state, kind, DAY * days, limit).await?;
        total += n;
        if (n as i64) < limit || cancel.is_cancelled() {
            return Ok(total);
        }
    }
}

/// One whole sweep: owed objects first, then expired uploads, outputs and finished jobs, each
/// in batches of `retention.sweep_batch` until none is left.
pub async fn sweep(state: &AppState, cancel: &tokio_util::sync::CancellationToken) -> Result<Swept, SweepError> {
    let r = &state.settings.retention;
    let mut swept = Swept::default();
    loop {
        let (taken, settled) = remove_owed(state, None, r.sweep_batch).await?;
        swept.deletions += settled;
        if (taken as i64) < r.sweep_batch || cancel.is_cancelled() {
            break;
        }
    }
    swept.uploads = expire(state, Expiry::Uploads, r.upload_days, cancel).await?;
    swept.outputs = expire(state, Expiry::Outputs, r.output_days, cancel).await?;
    swept.jobs = expire(state, Expiry::Jobs, r.finished_job_days, cancel).await?;
    let m = &metrics::get().objects_removed;
    m.with_label_values(&["upload_expired"]).inc_by(swept.uploads as u64);
    m.with_label_values(&["output_expired"]).inc_by(swept.outputs as u64);
    m.with_label_values(&["job_expired"]).inc_by(swept.jobs as u64);
    Ok(swept)
}

/// Sweeps every `retention.sweep_interval_secs` until cancelled.
pub async fn run_sweeper(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let every = Duration::from_secs(state.settings.retention.sweep_interval_secs);
    loop {
        match sweep(&state, &cancel).await {
            Ok(s) if s != Swept::default() => {
                tracing::info!(deletions = s.deletions, uploads = s.uploads, outputs = s.outputs, jobs = s.jobs, "retention sweep removed data");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; trying again next interval"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
