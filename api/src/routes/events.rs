//! `GET /v1/jobs/{id}/events`: a job's progress as Server-Sent Events.
//!
//! Each stream polls its one job row by primary key every `api.event_poll_ms` and sends an event
//! when the status, stage or progress changed. Polling rather than LISTEN/NOTIFY because workers
//! rewrite the row on every heartbeat: a trigger would notify every api replica about every
//! job's heartbeat, each replica would need a dedicated listening connection plus a fan-out
//! registry, and a notification missed while that connection reconnects would stall a stream.
//! A primary-key lookup costs well under a millisecond, `api.max_event_streams` bounds how many
//! run at once per process, and the stream needs no schema change. Progress only moves at
//! heartbeats (every few hundred milliseconds to seconds), so a faster poll would show nothing
//! new.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sqlx::PgPool;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use uuid::Uuid;

use reelq_shared::db::jobs::{self, JobRecord};
use reelq_shared::domain::JobStatus;

use crate::error::{ApiError, Problem};
use crate::extract::Path;
use crate::retry;
use crate::state::{AppState, AuthTenant};

/// How long a client should wait before reconnecting after a stream drops, sent with the first
/// event as the SSE `retry` field.
const RECONNECT_AFTER: Duration = Duration::from_secs(2);

/// How often an idle stream sends a comment, so that proxies and clients keep it open and a
/// vanished client is noticed by a failed write.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Consecutive failed polls after which a stream gives up; the client reconnects or polls.
const MAX_POLL_FAILURES: u32 = 20;

/// The process's open event streams: a cap on how many, their poll interval, and a token that
/// ends them all at shutdown (a graceful shutdown waits for open responses, and a stream on a
/// job that never ends would otherwise hold it up forever).
pub struct EventStreams {
    permits: Arc<Semaphore>,
    poll: Duration,
    stop: CancellationToken,
}

impl EventStreams {
    /// At most `max` streams at once, each polling every `poll`.
    pub fn new(max: usize, poll: Duration) -> Self {
        Self { permits: Arc::new(Semaphore::new(max)), poll, stop: CancellationToken::new() }
    }

    /// Ends every open stream (after its current event) and refuses new ones.
    pub fn close(&self) {
        self.stop.cancel();
        self.permits.close();
    }

    /// Streams open now.
    pub fn open(&self, max: usize) -> usize {
        max.saturating_sub(self.permits.available_permits())
    }
}

/// Data of a `progress` event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ProgressEvent {
    /// Current status.
    pub status: JobStatus,
    /// What the worker is doing now (`downloading`, `probe`, an analysis name, `waiting_to_retry`).
    pub stage: Option<String>,
    /// 0.0 to 1.0.
    pub progress: f32,
}

/// Data of the final `done` event.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DoneEvent {
    /// The terminal status: `succeeded`, `failed` or `cancelled`.
    pub status: JobStatus,
    /// Why the job failed; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<DoneError>,
}

/// A failed job's error, as in `GET /v1/jobs/{id}`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DoneError {
    /// Stable code.
    pub code: Option<String>,
    /// Human-readable explanation.
    pub message: String,
}

/// One Server-Sent Event of a job's stream, as a client's SSE parser sees it: its name, its
/// `data` (JSON: a [`ProgressEvent`] or a [`DoneEvent`]), and on the first event the `retry`
/// field. Documentation only; the stream is written by axum's SSE encoder.
pub struct JobStreamEvent;

impl utoipa::PartialSchema for JobStreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
        use utoipa::openapi::{Ref, extensions::Extensions};
        // anyOf, not oneOf: a progress event's data also fits DoneEvent's looser shape, and
        // the event's name, not its data, tells them apart.
        let data_schema = AnyOfBuilder::new()
            .item(Ref::from_schema_name(<ProgressEvent as ToSchema>::name()))
            .item(Ref::from_schema_name(<DoneEvent as ToSchema>::name()))
            .build();
        // JSON Schema's `contentSchema` says what the `data` string holds once parsed; utoipa
        // has no builder for it, so it goes in as a raw keyword.
        let mut content_schema = Extensions::default();
        content_schema.insert("contentSchema".into(), serde_json::to_value(&data_schema).unwrap_or_default());
        ObjectBuilder::new()
            .description(Some("One event of the stream: `progress` events, then one `done` event."))
            .property(
                "event",
                ObjectBuilder::new().schema_type(Type::String).enum_values(Some(["progress", "done"])).description(Some("The event's name.")),
            )
            .required("event")
            .property(
                "data",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .content_media_type("application/json")
                    .extensions(Some(content_schema))
                    .description(Some("JSON: a ProgressEvent for `progress`, a DoneEvent for `done`.")),
            )
            .required("data")
            .property(
                "retry",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .description(Some("Milliseconds to wait before reconnecting after a drop; sent with the first event.")),
            )
            .into()
    }
}

impl ToSchema for JobStreamEvent {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        schemas.push((<ProgressEvent as ToSchema>::name().into_owned(), <ProgressEvent as utoipa::PartialSchema>::schema()));
        <ProgressEvent as ToSchema>::schemas(schemas);
        schemas.push((<DoneEvent as ToSchema>::name().into_owned(), <DoneEvent as utoipa::PartialSchema>::schema()));
        <DoneEvent as ToSchema>::schemas(schemas);
    }
}

/// Follow a job's progress live.
///
/// A `text/event-stream` (Server-Sent Events). Sends `event: progress` with
/// `{"status", "stage", "progress"}` at once and again whenever one of them changes, then one
/// `event: done` with `{"status", "error"}` (the terminal status, and the error code and message
/// when the job failed), then ends. The first event carries `retry: 2000`, the milliseconds to
/// wait before reconnecting after a drop. Idle streams carry a keep-alive comment every 15 seconds.
/// Send the key in `Authorization` as for every call (read the stream with `fetch`; the
/// browser's `EventSource` cannot send headers). A stream that drops can be reopened at any
/// time: it starts with the current state. When too many streams are open, `429`: poll
/// `GET /v1/jobs/{id}` instead.
#[utoipa::path(
    get, path = "/v1/jobs/{id}/events", tag = "jobs",
    params(("id" = Uuid, Path, description = "Job id")),
    responses(
        (status = 200, description = "Server-Sent Events; each event's `data` is JSON: `progress` events, then one `done` event",
            body = JobStreamEvent, content_type = "text/event-stream",
            example = "retry: 2000\nevent: progress\ndata: {\"status\":\"running\",\"stage\":\"quality\",\"progress\":0.4}\n\nevent: done\ndata: {\"status\":\"succeeded\"}\n\n"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such job for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many open streams on this server", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn job_events(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Response, ApiError> {
    let pool = &state.pool;
    let job = retry::idempotent("jobs.get", move || async move { Ok(jobs::get(pool, tenant.id, id).await?) }).await?.ok_or(ApiError::NotFound("job"))?;
    let streams = &state.events;
    let permit = streams.permits.clone().try_acquire_owned().map_err(|_| ApiError::TooManyRequests {
        code: "too_many_streams",
        detail: format!("more than {} event streams are open here; poll GET /v1/jobs/{{id}} instead", state.settings.api.max_event_streams),
    })?;
    let mut tail = Tail {
        pool: state.pool.clone(),
        tenant_id: tenant.id,
        job_id: id,
        poll: streams.poll,
        stop: streams.stop.clone(),
        last: None,
        pending: VecDeque::new(),
        finished: false,
        failures: 0,
        _permit: permit,
    };
    tail.observe(&job);
    if let Some(first) = tail.pending.pop_front() {
        // Tells EventSource-style clients how soon to reconnect after a drop.
        tail.pending.push_front(first.retry(RECONNECT_AFTER));
    }
    let stream = futures::stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(event) = t.pending.pop_front() {
                return Some((Ok::<_, Infallible>(event), t));
            }
            if t.finished {
                return None;
            }
            tokio::select! {
                () = t.stop.cancelled() => return None,
                () = tokio::time::sleep(t.poll) => {}
            }
            if !t.poll_once().await {
                return None;
            }
        }
    });
    let mut resp = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive")).into_response();
    // Proxies such as nginx buffer responses unless told otherwise, which would hold events back.
    resp.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// One stream's state. Dropping it (the client went away, or the stream ended) releases its
/// permit.
struct Tail {
    pool: PgPool,
    tenant_id: Uuid,
    job_id: Uuid,
    poll: Duration,
    stop: CancellationToken,
    last: Option<ProgressEvent>,
    pending: VecDeque<Event>,
    finished: bool,
    failures: u32,
    _permit: OwnedSemaphorePermit,
}

impl Tail {
    /// Reads the row once. `false` ends the stream: the job vanished, or the database kept failing.
    async fn poll_once(&mut self) -> bool {
        match jobs::get(&self.pool, self.tenant_id, self.job_id).await {
            Ok(Some(job)) => {
                self.failures = 0;
                self.observe(&job);
                true
            }
            Ok(None) => false,
            Err(e) => {
                self.failures += 1;
                tracing::warn!(error = %e, job_id = %self.job_id, failures = self.failures, "event stream poll failed");
                self.failures < MAX_POLL_FAILURES
            }
        }
    }

    /// Queues the events that the row's current state calls for.
    fn observe(&mut self, job: &JobRecord) {
        let now = ProgressEvent { status: job.status(), stage: job.stage.clone(), progress: job.progress };
        if self.last.as_ref() != Some(&now) {
            self.pending.extend(event("progress", &now));
            self.last = Some(now);
        }
        if job.status().is_terminal() {
            let error = (job.status() == JobStatus::Failed)
                .then(|| DoneError { code: job.error_code.clone(), message: job.error_message.clone().unwrap_or_default() });
            self.pending.extend(event("done", &DoneEvent { status: job.status(), error }));
            self.finished = true;
        }
    }
}

fn event(name: &'static str, data: &impl Serialize) -> Option<Event> {
    match Event::default().event(name).json_data(data) {
        Ok(e) => Some(e),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise an event");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cap_refuses_streams_beyond_it_and_frees_a_slot_on_drop() {
        let streams = EventStreams::new(2, Duration::from_millis(10));
        let a = streams.permits.clone().try_acquire_owned().expect("first");
        let _b = streams.permits.clone().try_acquire_owned().expect("second");
        assert!(streams.permits.clone().try_acquire_owned().is_err());
        assert_eq!(streams.open(2), 2);
        drop(a);
        assert!(streams.permits.clone().try_acquire_owned().is_ok());
        streams.close();
        assert!(streams.permits.clone().try_acquire_owned().is_err(), "closed at shutdown");
    }

    #[test]
    fn progress_data_is_the_documented_json() {
        let e = ProgressEvent { status: JobStatus::Running, stage: Some("quality".into()), progress: 0.5 };
        assert_eq!(serde_json::to_value(&e).expect("json"), serde_json::json!({"status": "running", "stage": "quality", "progress": 0.5}));
        let d = DoneEvent { status: JobStatus::Succeeded, error: None };
        assert_eq!(serde_json::to_value(&d).expect("json"), serde_json::json!({"status": "succeeded"}));
    }
}
