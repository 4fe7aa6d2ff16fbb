//! Streaming uploads into object storage: the magic bytes are checked before anything is
//! stored, the size limit is enforced as bytes arrive, and the video row is written only once
//! the object is complete, so a rejected upload leaves nothing behind.
//!
//! Every upload body also passes [`guard_uploads`]: a tenant may stream only so many uploads
//! at once, and a body that stalls (or trickles for too long) is cut off with a 408, so slow
//! clients cannot hold connections and storage uploads open without end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts as _, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt as _, TryStreamExt as _};
use uuid::Uuid;

use reelq_shared::db::videos::{self, Video};
use reelq_shared::domain::video_object_key;
use reelq_shared::metrics;
use reelq_shared::storage::StorageError;

use crate::error::{ApiError, PROBLEM_JSON, Problem};
use crate::routes::videos::is_multipart;
use crate::state::{AppState, AuthTenant};

/// What a refused upload tells the client to wait before trying again. Uploads last seconds
/// to minutes, so a few seconds lets one finish without the client hammering the api.
const UPLOAD_RETRY_AFTER_SECS: u64 = 5;

/// Content types accepted for raw uploads: videos, and audio tracks for `mux`. Containers are
/// verified from the bytes regardless.
pub fn acceptable_raw_content_type(ct: &str) -> bool {
    let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    base.starts_with("video/") || base.starts_with("audio/") || base == "application/octet-stream"
}

/// Streams `body` to storage as a new video of `tenant_id`.
pub async fn store_video<S, E>(
    state: &AppState,
    tenant_id: Uuid,
    content_type: Option<&str>,
    declared_len: Option<u64>,
    body: S,
) -> Result<Video, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send,
    E: std::fmt::Display,
{
    let limit = state.settings.api.max_upload_bytes;
    if declared_len.is_some_and(|n| n > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let id = Uuid::now_v7();
    let key = video_object_key(tenant_id, id);
    let body = body.map_err(|e| std::io::Error::other(e.to_string()));
    let stored = match state.store.save_video_stream(&key, content_type, body, limit).await {
        Ok(s) => s,
        Err(e) => {
            if !e.is_client_error() {
                tracing::warn!(error = %e, "upload failed in storage");
            }
            return Err(ApiError::from(e));
        }
    };
    metrics::get().upload_bytes.with_label_values(&["stored"]).inc_by(u64::try_from(stored.size_bytes).unwrap_or(0));
    match videos::insert_stored(&state.pool, id, tenant_id, &key, content_type, &stored).await {
        Ok(v) => Ok(v),
        Err(e) => {
            // The row is the record of the object: without it, the object must not stay.
            if let Err(del) = state.store.delete(&key).await {
                tracing::warn!(error = %del, key, "could not remove an orphaned upload");
            }
            Err(e.into())
        }
    }
}

/// Maps a storage error of a completed presigned upload, deleting the object when it is the
/// client's fault so nothing unusable stays stored.
pub async fn reject_object(state: &AppState, key: &str, err: StorageError) -> ApiError {
    if err.is_client_error()
        && let Err(del) = state.store.delete(key).await
    {
        tracing::warn!(error = %del, key, "could not remove a rejected upload");
    }
    ApiError::from(err)
}

/// Uploads streaming through this process, per tenant. The cap is per api replica: a
/// process-local count needs no round trip, and a tenant's uploads spread over replicas are
/// spread over their bandwidth too.
#[derive(Clone)]
pub struct UploadGuard {
    state: AppState,
    active: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One of a tenant's upload slots, given back when dropped (the response is sent or the
/// client went away).
struct UploadSlot {
    active: Arc<Mutex<HashMap<Uuid, usize>>>,
    tenant: Uuid,
}

impl UploadGuard {
    /// A guard over the api's state, with no upload in flight.
    pub fn new(state: AppState) -> Self {
        Self { state, active: Arc::default() }
    }

    fn try_acquire(&self, tenant: Uuid) -> Option<UploadSlot> {
        let cap = self.state.settings.api.max_concurrent_uploads;
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = active.entry(tenant).or_insert(0);
        if *n >= cap {
            return None;
        }
        *n += 1;
        Some(UploadSlot { active: self.active.clone(), tenant })
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut active = self.active.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = active.get_mut(&self.tenant) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                active.remove(&self.tenant);
            }
        }
    }
}

/// Requests that stream a file: every `POST /v1/videos`, and a multipart `POST /v1/jobs`
/// (the file comes with the job). JSON submissions are small and pass untouched.
fn is_upload(req: &Request) -> bool {
    if req.method() != Method::POST {
        return false;
    }
    match req.extensions().get::<MatchedPath>().map(MatchedPath::as_str) {
        Some("/v1/videos") => true,
        Some("/v1/jobs") => is_multipart(req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())),
        _ => false,
    }
}

/// Why an upload body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyTimeout {
    /// No byte arrived for the idle timeout.
    Idle(Duration),
    /// The whole body took longer than the body deadline.
    Deadline(Duration),
}

/// Middleware for upload routes: authenticates, takes one of the tenant's upload slots (or
/// answers 429), and bounds how long the body may stall and take in all. When a bound is hit
/// the handler sees its body fail, aborts what it was storing, and the client gets a 408.
pub async fn guard_uploads(State(guard): State<UploadGuard>, req: Request, next: Next) -> Response {
    if !is_upload(&req) {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    let tenant = match AuthTenant::from_request_parts(&mut parts, &guard.state).await {
        Ok(AuthTenant(t)) => t,
        Err(e) => return e.into_response(),
    };
    let Some(_slot) = guard.try_acquire(tenant.id) else {
        metrics::get().upload_refusals.with_label_values(&["busy"]).inc();
        let cap = guard.state.settings.api.max_concurrent_uploads;
        let mut resp = ApiError::TooManyRequests {
            code: "too_many_uploads",
            detail: format!("this key's tenant already has {cap} uploads in progress here; retry when one has finished"),
        }
        .into_response();
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(UPLOAD_RETRY_AFTER_SECS));
        return resp;
    };
    let api = &guard.state.settings.api;
    let fired = Arc::new(OnceLock::new());
    let body = bounded_body(body, Duration::from_secs(api.upload_idle_timeout_secs), Duration::from_secs(api.upload_body_timeout_secs), fired.clone());
    let resp = next.run(Request::from_parts(parts, body)).await;
    match fired.get() {
        Some(why) => {
            let reason = match why {
                BodyTimeout::Idle(_) => "idle_timeout",
                BodyTimeout::Deadline(_) => "body_timeout",
            };
            metrics::get().upload_refusals.with_label_values(&[reason]).inc();
            tracing::info!(tenant = %tenant.name, reason, "upload body timed out");
            timeout_response(*why)
        }
        None => resp,
    }
}

/// `body`, failing with `TimedOut` (and recording why in `fired`) once no chunk arrives
/// within `idle`, or the body is still coming `total` after it was first read.
fn bounded_body(body: Body, idle: Duration, total: Duration, fired: Arc<OnceLock<BodyTimeout>>) -> Body {
    let deadline = tokio::time::Instant::now() + total;
    let stream = futures::stream::unfold(Some(body.into_data_stream()), move |inner| {
        let fired = fired.clone();
        async move {
            let mut inner = inner?;
            let idle_at = tokio::time::Instant::now() + idle;
            let (until, why) = if idle_at < deadline { (idle_at, BodyTimeout::Idle(idle)) } else { (deadline, BodyTimeout::Deadline(total)) };
            match tokio::time::timeout_at(until, inner.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(inner))),
                Ok(None) => None,
                Err(_) => {
                    let _ = fired.set(why);
                    let err = std::io::Error::new(std::io::ErrorKind::TimedOut, "the upload body timed out");
                    Some((Err(axum::Error::new(err)), None))
                }
            }
        }
    });
    Body::from_stream(stream)
}

/// The 408 problem document of a cut-off upload. The connection is closed with it: the rest
/// of the body is never read.
fn timeout_response(why: BodyTimeout) -> Response {
    let detail = match why {
        BodyTimeout::Idle(d) => format!("no bytes of the upload arrived for {} s; nothing was stored", d.as_secs()),
        BodyTimeout::Deadline(d) => format!("the upload took longer than {} s; nothing was stored", d.as_secs()),
    };
    let status = StatusCode::REQUEST_TIMEOUT;
    let problem = Problem {
        kind: "https://reelq.dev/problems/upload-timeout".to_owned(),
        title: status.canonical_reason().unwrap_or("Request Timeout").to_owned(),
        status: status.as_u16(),
        detail,
        code: "upload_timeout".to_owned(),
    };
    let mut resp = (status, serde_json::to_vec(&problem).unwrap_or_default()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

/// Pending uploads removed per sweep transaction.
const SWEEP_BATCH: i64 = 100;

/// Why a sweep pass stopped; the rows it had locked stay for the next pass.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// PostgreSQL failed.
    #[error(transparent)]
    Db(#[from] reelq_shared::db::DbError),
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Removes up to one batch of presigned uploads that stayed pending longer than
/// `api.pending_upload_ttl_secs`, object first, then row; returns how many. The rows are
/// locked with `SKIP LOCKED` for the whole pass, so replicas sweeping at once take disjoint
/// batches, and a completion racing the sweep waits for it and then finds no upload. The
/// presigned URL has expired before the slot does (settings check it), so nothing can be
/// written to the key afterwards.
pub async fn sweep_expired_uploads(state: &AppState) -> Result<usize, SweepError> {
    let ttl = Duration::from_secs(state.settings.api.pending_upload_ttl_secs);
    let mut tx = reelq_shared::db::timed("videos.sweep_begin", state.pool.begin()).await?;
    let expired = videos::lock_expired_pending(&mut tx, ttl, SWEEP_BATCH).await?;
    if expired.is_empty() {
        return Ok(0);
    }
    for upload in &expired {
        // Deleting an absent object succeeds: a slot whose PUT never came has nothing to remove.
        state.store.delete(&upload.object_key).await?;
    }
    let ids: Vec<Uuid> = expired.iter().map(|u| u.id).collect();
    videos::delete_pending(&mut *tx, &ids).await?;
    reelq_shared::db::timed("videos.sweep_commit", tx.commit()).await?;
    metrics::get().pending_uploads_expired.with_label_values::<&str>(&[]).inc_by(expired.len() as u64);
    Ok(expired.len())
}

/// Sweeps expired pending uploads every `api.upload_sweep_interval_secs` until cancelled.
pub async fn run_upload_sweeper(state: AppState, cancel: tokio_util::sync::CancellationToken) {
    let every = Duration::from_secs(state.settings.api.upload_sweep_interval_secs);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        // A full batch means more may be waiting: go on at once rather than a whole interval later.
        loop {
            match sweep_expired_uploads(&state).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::info!(count = n, "removed expired pending uploads");
                    }
                    if (n as i64) < SWEEP_BATCH || cancel.is_cancelled() {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "sweeping expired uploads failed; trying again next interval");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::acceptable_raw_content_type;

    #[test]
    fn raw_uploads_need_a_media_or_binary_type() {
        assert!(acceptable_raw_content_type("video/mp4"));
        assert!(acceptable_raw_content_type("Video/WebM; codecs=vp9"));
        assert!(acceptable_raw_content_type("application/octet-stream"));
        assert!(acceptable_raw_content_type("audio/mpeg"));
        assert!(acceptable_raw_content_type("Audio/x-wav"));
        assert!(!acceptable_raw_content_type("text/plain"));
        assert!(!acceptable_raw_content_type("image/gif"));
        assert!(!acceptable_raw_content_type(""));
    }
}
