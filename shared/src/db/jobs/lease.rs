//! The fenced lease protocol workers follow: claim, heartbeat, release for a retry, and the
//! outcome that ends a job. Claims and outcomes come one at a time or in batches; a batch is
//! one statement, and every job in it is still fenced by its own lease token.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::super::results::NewResult;
use super::super::{DbError, timed};
use super::{JobRecord, StageTiming};
use crate::domain::{JobErrorCode, JobStatus};

/// A lease a worker holds on a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The job.
    pub job_id: Uuid,
    /// The fencing token.
    pub token: Uuid,
    /// The attempt number this lease belongs to.
    pub attempt: i32,
}

/// Result of trying to take a job.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The caller now holds the job. Boxed: a job row is large beside the other outcomes.
    Claimed(Box<JobRecord>, Lease),
    /// The job has ended; the message is a duplicate.
    Finished(JobStatus),
    /// Another worker holds a live lease; try again after it expires.
    LeaseHeld,
    /// The tenant already runs as many jobs as it may.
    TenantAtCapacity,
    /// No such job.
    NotFound,
}

/// Takes a job for `lease_ttl`: a queued job, or a running one whose lease has lapsed (its
/// worker died or is between retries). One round trip; see [`claim_many`].
pub async fn claim(pool: &PgPool, job_id: Uuid, tenant_id: Uuid, lease_ttl: Duration) -> Result<ClaimOutcome, DbError> {
    let mut outcomes = claim_many(pool, &[(job_id, tenant_id)], lease_ttl).await?;
    Ok(outcomes.pop().unwrap_or(ClaimOutcome::NotFound))
}

/// Takes several jobs, each `(job, tenant)`, in one statement, and says for each what became
/// of it, in the same order. `reelq_claim_jobs` locks each tenant's row once (in id order, so
/// concurrent batches cannot deadlock on them), counts the tenant's running jobs once, and
/// claims its jobs interactive first while the cap allows, batch jobs leaving one of the
/// tenant's slots to interactive ones: the cap holds exactly, as with single claims. Jobs not
/// claimed are then read together, once, to tell why.
pub async fn claim_many(pool: &PgPool, wanted: &[(Uuid, Uuid)], lease_ttl: Duration) -> Result<Vec<ClaimOutcome>, DbError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let ttl_ms = lease_ttl.as_secs_f64() * 1000.0;
    let ids: Vec<Uuid> = wanted.iter().map(|w| w.0).collect();
    let tenants: Vec<Uuid> = wanted.iter().map(|w| w.1).collect();
    let tokens: Vec<Uuid> = wanted.iter().map(|_| Uuid::new_v4()).collect();
    // A function returning rows of `jobs`: checked at run time, since the macros cannot see
    // through the function's result type.
    let claimed = timed(
        "jobs.claim",
        sqlx::query_as::<_, JobRecord>("SELECT * FROM reelq_claim_jobs($1, $2, $3, $4)")
            .bind(&ids)
            .bind(&tenants)
            .bind(&tokens)
            .bind(ttl_ms)
            .fetch_all(pool),
    )
    .await?;
    let mut outcomes: Vec<Option<ClaimOutcome>> = wanted.iter().map(|_| None).collect();
    for job in claimed {
        // The lease is the one this batch gave the job: its token says which request it was.
        let Some(i) = job.lease_token.and_then(|t| tokens.iter().position(|&x| x == t)) else { continue };
        let lease = Lease { job_id: job.id, token: tokens[i], attempt: job.attempt };
        outcomes[i] = Some(ClaimOutcome::Claimed(Box::new(job), lease));
    }
    let unclaimed: Vec<Uuid> = wanted.iter().zip(&outcomes).filter(|(_, o)| o.is_none()).map(|(w, _)| w.0).collect();
    let rows = if unclaimed.is_empty() { Vec::new() } else { get_many(pool, &unclaimed).await? };
    Ok(wanted
        .iter()
        .zip(outcomes)
        .map(|(&(id, tenant_id), outcome)| {
            outcome.unwrap_or_else(|| match rows.iter().find(|j| j.id == id) {
                None => ClaimOutcome::NotFound,
                Some(job) if job.tenant_id != tenant_id => ClaimOutcome::NotFound,
                Some(job) if job.status().is_terminal() => ClaimOutcome::Finished(job.status()),
                Some(job) if job.status == "running" && job.lease_token.is_some() && job.lease_expires_at >= Some(Utc::now()) => ClaimOutcome::LeaseHeld,
                Some(_) => ClaimOutcome::TenantAtCapacity,
            })
        })
        .collect())
}

async fn get_many(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<Vec<JobRecord>, DbError> {
    timed("jobs.get_many", sqlx::query_as!(JobRecord, "SELECT * FROM jobs WHERE id = ANY($1)", ids).fetch_all(db)).await
}

/// Extends a lease and records progress. Returns `false` when the lease is lost (the job was
/// cancelled, or taken over after this worker stalled): the worker must stop.
pub async fn heartbeat(db: impl PgExecutor<'_>, lease: &Lease, lease_ttl: Duration, progress: f32, stage: &str) -> Result<bool, DbError> {
    let ttl_ms = i64::try_from(lease_ttl.as_millis()).unwrap_or(i64::MAX);
    let r = timed(
        "jobs.heartbeat",
        sqlx::query!(
            r#"UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3::float8 / 1000.0),
                              heartbeat_at = now(), progress = GREATEST(progress, $4), stage = $5, updated_at = now()
               WHERE id = $1 AND lease_token = $2 AND status = 'running'"#,
            lease.job_id,
            lease.token,
            ttl_ms as f64,
            progress,
            stage
        )
        .execute(db),
    )
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Gives a lease back after a transient fault so that the retry can claim at once, keeping the
/// job `running` (it is still being worked on) and recording the fault. With `refund`, the
/// attempt does not count: the fault was a dependency's outage, not the job's.
pub async fn release_for_retry(db: impl PgExecutor<'_>, lease: &Lease, message: &str, refund: bool) -> Result<bool, DbError> {
    let r = timed(
        "jobs.release_for_retry",
        sqlx::query!(
            r#"UPDATE jobs SET lease_token = NULL, lease_expires_at = NULL, stage = 'waiting_to_retry',
                              error_message = $3, updated_at = now(),
                              attempt = CASE WHEN $4 THEN GREATEST(attempt - 1, 0) ELSE attempt END
               WHERE id = $1 AND lease_token = $2 AND status = 'running'"#,
            lease.job_id,
            lease.token,
            message,
            refund
        )
        .execute(db),
    )
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Jobs released for a retry whose delayed message has not brought them back within `grace`
/// (a message lost with a broker's disk, or refused during an upgrade): they are marked as
/// re-dispatched (so one pass takes each) and returned as (id, tenant_id, priority) for the
/// reaper to publish again. Safe with several reapers.
pub async fn lost_retries(db: impl PgExecutor<'_>, grace: Duration, limit: i64) -> Result<Vec<(Uuid, Uuid, String)>, DbError> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let rows = timed(
        "jobs.lost_retries",
        sqlx::query!(
            r#"UPDATE jobs SET updated_at = now()
               WHERE id IN (SELECT id FROM jobs
                            WHERE status = 'running' AND lease_token IS NULL
                              AND updated_at < now() - make_interval(secs => $1::float8 / 1000.0)
                            ORDER BY updated_at LIMIT $2 FOR UPDATE SKIP LOCKED)
               RETURNING id, tenant_id, priority"#,
            grace_ms as f64,
            limit
        )
        .fetch_all(db),
    )
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.tenant_id, r.priority)).collect())
}

/// How a job ends.
#[derive(Debug, Clone)]
pub enum Ending {
    /// It succeeded: its last results (the earlier ones are already written) and where its
    /// time went.
    Succeeded { results: Vec<NewResult>, timings: Vec<StageTiming> },
    /// It failed for good.
    Failed { code: JobErrorCode, message: String },
}

/// One job's outcome, to be written under its lease.
#[derive(Debug, Clone)]
pub struct Finish {
    pub lease: Lease,
    pub ending: Ending,
}

/// Marks a job succeeded, writing its last results, where its time went and its webhook, all in
/// one statement fenced by the lease. `false` means the lease was lost and nothing changed.
pub async fn complete(db: impl PgExecutor<'_>, lease: &Lease, results: &[NewResult], timings: &[StageTiming]) -> Result<bool, DbError> {
    let ending = Ending::Succeeded { results: results.to_vec(), timings: timings.to_vec() };
    Ok(finish_many(db, &[Finish { lease: *lease, ending }]).await?.first().copied().unwrap_or(false))
}

/// Marks a job failed and schedules its webhook, in one statement fenced by the lease.
/// `false` means the lease was lost and nothing changed.
pub async fn fail(db: impl PgExecutor<'_>, lease: &Lease, code: JobErrorCode, message: &str) -> Result<bool, DbError> {
    let ending = Ending::Failed { code, message: message.to_owned() };
    Ok(finish_many(db, &[Finish { lease: *lease, ending }]).await?.first().copied().unwrap_or(false))
}

/// Ends several jobs in one statement: each becomes succeeded (with its results and timings)
/// or failed (with its code and message), and gets its webhook when it has a callback. Each
/// job is fenced by its own lease: a job whose lease was lost is left as it is and answered
/// `false`, and the others are still written. Answers in the order given.
pub async fn finish_many(db: impl PgExecutor<'_>, outcomes: &[Finish]) -> Result<Vec<bool>, DbError> {
    if outcomes.is_empty() {
        return Ok(Vec::new());
    }
    let n = outcomes.len();
    let (mut ids, mut tokens, mut statuses, mut codes, mut messages, mut timings, mut hooks) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut r_entry, mut r_analysis, mut r_payload, mut r_versions) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (entry, o) in (1_i64..).zip(outcomes) {
        ids.push(o.lease.job_id);
        tokens.push(o.lease.token);
        hooks.push(Uuid::now_v7());
        match &o.ending {
            Ending::Succeeded { results, timings: t } => {
                statuses.push(JobStatus::Succeeded.as_str());
                codes.push(None);
                messages.push(None);
                // A list of names and integers always serialises.
                timings.push((!t.is_empty()).then(|| serde_json::to_value(t).ok()).flatten());
                for r in results {
                    r_entry.push(entry);
                    r_analysis.push(r.analysis.clone());
                    r_payload.push(r.payload.clone());
                    r_versions.push(r.model_versions.clone());
                }
            }
            Ending::Failed { code, message } => {
                statuses.push(JobStatus::Failed.as_str());
                codes.push(Some(code.as_str()));
                messages.push(Some(message.as_str()));
                timings.push(None);
            }
        }
    }
    // Entries are numbered from 1 as `WITH ORDINALITY` numbers them; results join on that
    // number, so only the entry that passed its fence writes results.
    //
    // The jobs are reached by primary key alone. The status a job must still have travels with
    // each entry of a materialised list instead of standing in the statement as a constant:
    // `status = 'running'` would let the planner prove the predicates of the partial indexes of
    // running jobs and, believing them small, read one whole and hash-join. While another
    // session holds an old snapshot open those indexes keep an entry for every job run since,
    // and each outcome batch read them all (220,000 entries and 12,000 heap pages a batch after
    // four minutes of such a snapshot).
    let done = timed(
        "jobs.finish",
        sqlx::query_scalar!(
            r#"WITH u AS MATERIALIZED (
                   SELECT *, 'running'::text AS held
                   FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::uuid[])
                     WITH ORDINALITY AS u(id, token, status, code, message, timings, hook, entry)
               ), j AS (
                   UPDATE jobs SET status = u.status, progress = CASE WHEN u.status = 'succeeded' THEN 1 ELSE jobs.progress END,
                                   stage = NULL, error_code = u.code, error_message = u.message, timings = u.timings,
                                   lease_token = NULL, lease_expires_at = NULL, finished_at = now(), updated_at = now()
                   FROM u
                   WHERE jobs.id = u.id AND jobs.lease_token = u.token AND jobs.status = u.held
                   RETURNING jobs.id, jobs.attempt, jobs.callback_url, u.status, u.hook, u.entry
               ), r AS (
                   INSERT INTO results (job_id, analysis, payload, model_versions, attempt)
                   SELECT j.id, x.a, x.p, x.v, j.attempt
                   FROM j JOIN UNNEST($8::int8[], $9::text[], $10::jsonb[], $11::jsonb[]) AS x(entry, a, p, v) ON x.entry = j.entry
                   WHERE j.status = 'succeeded'
                   ON CONFLICT (job_id, analysis) DO UPDATE
                     SET payload = EXCLUDED.payload, model_versions = EXCLUDED.model_versions,
                         attempt = EXCLUDED.attempt, created_at = now()
               ), w AS (
                   INSERT INTO webhook_deliveries (id, job_id, url, payload)
                   SELECT j.hook, j.id, j.callback_url, jsonb_build_object('event', 'job.' || j.status) FROM j
                   WHERE j.callback_url IS NOT NULL
                   ON CONFLICT (job_id) DO NOTHING
               )
               SELECT entry AS "entry!" FROM j"#,
            &ids,
            &tokens,
            &statuses as &[&str],
            &codes as &[Option<&str>],
            &messages as &[Option<&str>],
            &timings as &[Option<serde_json::Value>],
            &hooks,
            &r_entry,
            &r_analysis,
            &r_payload,
            &r_versions,
        )
        .fetch_all(db),
    )
    .await?;
    Ok((1_i64..).take(n).map(|entry| done.contains(&entry)).collect())
}

/// What one pass over lapsed leases found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleLeases {
    /// Jobs whose worker stopped heartbeating more than the grace ago, oldest lease first, as
    /// (id, tenant_id, priority).
    pub jobs: Vec<(Uuid, Uuid, String)>,
    /// Where the next pass may start: no lease that lapses before it can still be unseen. It is
    /// the oldest lease found (they stay running until a claim takes them), or, when none was,
    /// the grace and the given margin before the database's clock.
    pub next_since: Option<DateTime<Utc>>,
}

/// Jobs whose worker stopped heartbeating more than `grace` ago, for the reaper to dispatch
/// again, with leases that lapsed at or after `since` (all of them when `None`). Reading from
/// the last pass's [`StaleLeases::next_since`] keeps a pass's cost to the leases of the last
/// few passes: index entries of finished jobs stay until vacuum removes them, and while another
/// session holds an old snapshot open every one of them would be visited again on every pass.
/// `margin` covers a lease written by a transaction that committed late.
pub async fn stale_leases(
    db: impl PgExecutor<'_>,
    grace: Duration,
    margin: Duration,
    since: Option<DateTime<Utc>>,
    limit: i64,
) -> Result<StaleLeases, DbError> {
    let grace_ms = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
    let margin_ms = i64::try_from(margin.as_millis()).unwrap_or(i64::MAX);
    let rows = timed(
        "jobs.stale_leases",
        sqlx::query!(
            r#"WITH s AS (
                   SELECT id, tenant_id, priority, lease_expires_at FROM jobs
                   WHERE status = 'running' AND lease_token IS NOT NULL
                     AND lease_expires_at < now() - make_interval(secs => $1::float8 / 1000.0)
                     AND lease_expires_at >= COALESCE($3::timestamptz, '-infinity')
                   ORDER BY lease_expires_at LIMIT $2
               )
               SELECT h.at AS "horizon!", s.id AS "id?", s.tenant_id AS "tenant_id?", s.priority AS "priority?",
                      s.lease_expires_at AS "lease_expires_at?"
               FROM (SELECT now() - make_interval(secs => ($1::float8 + $4::float8) / 1000.0) AS at) h
               LEFT JOIN s ON TRUE
               ORDER BY s.lease_expires_at"#,
            grace_ms as f64,
            limit,
            since,
            margin_ms as f64,
        )
        .fetch_all(db),
    )
    .await?;
    let next_since = rows.first().map(|r| r.lease_expires_at.map_or(r.horizon, |oldest| oldest.min(r.horizon))).or(since);
    let jobs = rows.into_iter().filter_map(|r| Some((r.id?, r.tenant_id?, r.priority?))).collect();
    Ok(StaleLeases { jobs, next_since })
}
