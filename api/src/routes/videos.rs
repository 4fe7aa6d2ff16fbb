//! `/v1/videos` and `/v1/uploads`: streamed uploads, presigned uploads and their completion,
//! and deleting a video with everything made from it.

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use reelq_shared::db::lifecycle;
use reelq_shared::db::videos::{self, DeclaredUpload, StoredObject, Video};
use reelq_shared::domain::video_object_key;
use reelq_shared::storage::StorageError;

use crate::error::{ApiError, Problem};
use crate::ingest::{self, acceptable_raw_content_type};
use crate::retention;
use crate::state::{AppState, AuthTenant};

pub(crate) fn content_type(req: &Request) -> Option<String> {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub(crate) fn content_length(req: &Request) -> Option<u64> {
    req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

pub(crate) fn is_multipart(ct: Option<&str>) -> bool {
    ct.is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"))
}

/// Upload a video, or an audio track for `mux`.
///
/// Send the file as the raw body (`Content-Type: video/mp4`, `video/quicktime`, `video/webm`,
/// `video/x-matroska`, any `audio/*` type, or `application/octet-stream`) or as the `file` field
/// of a `multipart/form-data` body. The container is recognised from the bytes; anything but
/// MP4/MOV/WebM/Matroska video or MP3/WAV/M4A/AAC/FLAC/Ogg audio is refused before it is
/// stored. Audio uploads can only be used as the track of a `mux` job.
#[utoipa::path(
    post, path = "/v1/videos", tag = "videos",
    request_body(content(
        (Vec<u8> = "video/mp4"), (Vec<u8> = "video/quicktime"), (Vec<u8> = "video/webm"),
        (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mp4"), (Vec<u8> = "audio/flac"), (Vec<u8> = "audio/ogg"),
        (Vec<u8> = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses(
        (status = 201, description = "Stored", body = Video),
        (status = 401, description = "No valid API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than the configured limit; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a supported video or audio container; nothing stored", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty or interrupted upload", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn upload(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, req: Request) -> Result<(StatusCode, Json<Video>), ApiError> {
    let ct = content_type(&req);
    let len = content_length(&req);
    let video = if is_multipart(ct.as_deref()) {
        let mut form = Multipart::from_request(req, &state).await.map_err(|e| ApiError::invalid("invalid_multipart", e.body_text()))?;
        let mut stored = None;
        while let Some(field) = form.next_field().await.map_err(|e| ApiError::invalid("invalid_multipart", e.body_text()))? {
            if field.name() == Some("file") {
                let field_ct = field.content_type().map(str::to_owned);
                stored = Some(ingest::store_video(&state, tenant.id, field_ct.as_deref(), len, field).await?);
                break;
            }
        }
        stored.ok_or_else(|| ApiError::invalid("missing_file", "the multipart body has no `file` field"))?
    } else {
        match ct.as_deref() {
            Some(c) if acceptable_raw_content_type(c) => {}
            _ => {
                return Err(ApiError::UnsupportedMediaType(
                    "send the file as the raw body with a video/* or audio/* content type, or as the `file` field of multipart/form-data".into(),
                ));
            }
        }
        let body: Body = req.into_body();
        ingest::store_video(&state, tenant.id, ct.as_deref(), len, body.into_data_stream()).await?
    };
    tracing::info!(video_id = %video.id, size = video.size_bytes, tenant = %tenant.name, "video stored");
    Ok((StatusCode::CREATED, Json(video)))
}

/// Multipart form of an upload.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The video (or audio) file.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// A video's metadata.
#[utoipa::path(
    get, path = "/v1/videos/{id}", tag = "videos",
    params(("id" = Uuid, Path, description = "Video id")),
    responses(
        (status = 200, body = Video),
        (status = 404, description = "No such video for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn get_video(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Json<Video>, ApiError> {
    let video = videos::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound("video"))?;
    Ok(Json(video))
}

/// What deleting a video removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct VideoDeletion {
    /// The deleted video.
    pub id: Uuid,
    /// Queued or running jobs the deletion stopped.
    pub jobs_cancelled: i64,
    /// Jobs removed with their results, webhook records and feedback.
    pub jobs_removed: i64,
    /// Stored objects removed: the upload and the jobs' `mux` outputs.
    pub objects: usize,
    /// Whether storage is already clean. `false` when storage could not be reached, or a
    /// cancelled job's worker could still be writing an output: the retention sweep then
    /// removes what is left within `retention.sweep_interval_secs` of that becoming safe.
    pub complete: bool,
}

/// Delete a video and everything made from it.
///
/// Removes the upload, its jobs (a queued or running job is cancelled: its worker stops and
/// writes nothing), their results, `mux` outputs, webhook records and feedback, and the
/// training embeddings of that feedback. Nothing is kept: the id answers 404 afterwards.
/// Models already trained on the feedback are not retrained.
#[utoipa::path(
    delete, path = "/v1/videos/{id}", tag = "videos",
    params(("id" = Uuid, Path, description = "Video id")),
    responses(
        (status = 200, description = "Deleted", body = VideoDeletion),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such video for this tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_video(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Json<VideoDeletion>, ApiError> {
    let pool = &state.pool;
    let presign_ttl = std::time::Duration::from_secs(state.settings.storage.presign_ttl_secs);
    // The transaction rolls back whole when its connection dies, so it can run once more.
    let deletion = crate::retry::idempotent("videos.delete", move || async move { Ok(lifecycle::delete_video(pool, tenant.id, id, presign_ttl).await?) })
        .await?
        .ok_or(ApiError::NotFound("video"))?;
    let complete = match retention::remove_owed(&state, Some(deletion.deletion_id), 1).await {
        Ok((_, settled)) => settled == 1,
        Err(e) => {
            tracing::warn!(video_id = %id, error = %e, "a deleted video's objects could not be removed yet; the sweep will");
            false
        }
    };
    tracing::info!(video_id = %id, jobs_removed = deletion.jobs_removed, jobs_cancelled = deletion.jobs_cancelled, complete, "video deleted");
    Ok(Json(VideoDeletion { id, jobs_cancelled: deletion.jobs_cancelled, jobs_removed: deletion.jobs_removed, objects: deletion.keys.len(), complete }))
}

/// Request for a presigned upload.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PresignRequest {
    /// Content type the client will send with the PUT.
    pub content_type: Option<String>,
    /// Size in bytes of the file the client will PUT (required, at least 1). The URL is
    /// signed for exactly this `Content-Length`: storage refuses a PUT of any other size.
    pub size_bytes: Option<u64>,
    /// SHA-256 of the file, 64 hex digits (optional, recommended for large files). The PUT must
    /// then carry the returned `x-amz-checksum-sha256` header, storage refuses bytes that do
    /// not match it, and completion needs no second pass over the file. Without it, completion
    /// reads the whole object back to hash it.
    #[schema(pattern = "^[0-9a-fA-F]{64}$", example = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")]
    pub sha256: Option<String>,
}

/// The 32 bytes of a hex SHA-256, in either case.
fn parse_sha256(hex_digest: &str) -> Option<[u8; 32]> {
    let mut digest = [0u8; 32];
    (hex_digest.len() == 64 && hex::decode_to_slice(hex_digest, &mut digest).is_ok()).then_some(digest)
}

/// A presigned upload slot.
#[derive(Debug, Serialize, ToSchema)]
pub struct PresignedUpload {
    /// The video this upload will become.
    pub video_id: Uuid,
    /// PUT the bytes here.
    pub upload_url: String,
    /// Always `PUT`.
    pub method: String,
    /// Headers to send with the PUT, with exactly these values (they are signed):
    /// `content-length`, `content-type` when one was declared, and `x-amz-checksum-sha256`
    /// (the base64 SHA-256) when a `sha256` was declared.
    #[schema(value_type = Object)]
    pub headers: serde_json::Value,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
    /// Call this once the PUT succeeded.
    pub complete_url: String,
}

/// Get a presigned URL for a large upload.
///
/// Declare the file's `size_bytes`, and preferably its `sha256`; PUT exactly that many bytes
/// to `upload_url` with the returned `headers`, then call `POST /v1/videos/{id}/complete`,
/// which checks the size, checksum and container before the video can be used. With a
/// declared `sha256` storage verifies the bytes as they arrive and completion reads only their
/// first bytes; without one, completion reads the whole object to hash it. A slot never
/// completed expires with its bytes (`api.pending_upload_ttl_secs`).
#[utoipa::path(
    post, path = "/v1/uploads", tag = "videos",
    request_body = PresignRequest,
    responses(
        (status = 201, body = PresignedUpload),
        (status = 413, description = "Declared size over the limit", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not a video or audio content type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No body, no positive `size_bytes`, or a `sha256` that is not 64 hex digits", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn presign(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    body: Result<Json<PresignRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<PresignedUpload>), ApiError> {
    let Json(req) = body.map_err(|e| ApiError::invalid("invalid_json", e.body_text()))?;
    // The size is signed into the URL, so without one there is nothing to bind the PUT to.
    let size = match req.size_bytes {
        Some(n) if n > 0 => n,
        _ => return Err(ApiError::invalid("size_required", "declare the file's size_bytes (at least 1): the upload URL is bound to it")),
    };
    let limit = state.settings.api.max_upload_bytes;
    if size > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    if let Some(ct) = &req.content_type
        && !acceptable_raw_content_type(ct)
    {
        return Err(ApiError::UnsupportedMediaType(format!("content type `{ct}` is not a video or audio type")));
    }
    let digest = match req.sha256.as_deref() {
        Some(h) => Some(parse_sha256(h).ok_or_else(|| ApiError::invalid("invalid_sha256", "sha256 must be the file's SHA-256 as 64 hex digits"))?),
        None => None,
    };
    let id = Uuid::now_v7();
    let key = video_object_key(tenant.id, id);
    let put = state.store.presign_put_sized(&key, req.content_type.as_deref(), size, digest.as_ref()).await?;
    let declared = DeclaredUpload { size_bytes: i64::try_from(size).map_err(|_| ApiError::PayloadTooLarge { limit })?, sha256: digest.map(hex::encode) };
    videos::insert_pending(&state.pool, id, tenant.id, &key, req.content_type.as_deref(), &declared).await?;
    let headers: serde_json::Map<String, serde_json::Value> = put.headers.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    let ttl = chrono::Duration::from_std(state.store.presign_ttl()).unwrap_or_else(|_| chrono::Duration::hours(1));
    Ok((
        StatusCode::CREATED,
        Json(PresignedUpload {
            video_id: id,
            upload_url: put.url,
            method: "PUT".into(),
            headers: serde_json::Value::Object(headers),
            expires_at: Utc::now() + ttl,
            complete_url: format!("/v1/videos/{id}/complete"),
        }),
    ))
}

/// Finish a presigned upload.
///
/// Checks the uploaded object's size, SHA-256 and container, then marks the video stored. With
/// a `sha256` declared for the slot, storage has already verified the bytes against it: this
/// asks storage for the size and the checksum it kept and reads only the first bytes for the
/// container. Without one, it reads the whole object once to hash it. A file over the limit,
/// of the wrong size or checksum, or not a video is deleted and refused.
#[utoipa::path(
    post, path = "/v1/videos/{id}/complete", tag = "videos",
    params(("id" = Uuid, Path, description = "Video id from POST /v1/uploads")),
    responses(
        (status = 200, body = Video),
        (status = 404, description = "No such pending video", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Retention removed the video's bytes (`video_expired`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Nothing was uploaded, or not the declared size or SHA-256", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn complete(State(state): State<AppState>, AuthTenant(tenant): AuthTenant, Path(id): Path<Uuid>) -> Result<Json<Video>, ApiError> {
    let video = videos::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound("video"))?;
    if video.status == "stored" {
        return Ok(Json(video));
    }
    if video.status == "expired" {
        return Err(ApiError::Gone { code: "video_expired", detail: "retention removed this video's bytes; upload it again".into() });
    }
    let key = &video.object_key;
    let limit = state.settings.api.max_upload_bytes;
    let declared = videos::declared(&state.pool, tenant.id, id).await?;
    let head = match state.store.head(key).await? {
        None => return Err(ApiError::invalid("upload_missing", "no bytes were uploaded for this video")),
        Some(h) => h,
    };
    if head.size > limit {
        return Err(ingest::reject_object(&state, key, StorageError::TooLarge { limit }).await);
    }
    // Storage that does not check the signed length would let another size through: the
    // declared size is checked here as well.
    if let Some(d) = &declared
        && u64::try_from(d.size_bytes).ok() != Some(head.size)
    {
        let detail = format!("{} bytes were uploaded but {} were declared; upload again with the declared size", head.size, d.size_bytes);
        return Err(refuse(&state, key, "size_mismatch", detail).await);
    }
    let expected = declared.and_then(|d| d.sha256);
    let stored = match (expected, head.sha256) {
        // Storage verified the bytes against the declared checksum when it took them.
        (Some(expected), Some(kept)) if kept == expected => match state.store.sniff(key).await {
            Ok(container) => StoredObject { size_bytes: head.size as i64, sha256: expected, container: container.to_owned() },
            Err(e) => return Err(ingest::reject_object(&state, key, e).await),
        },
        (Some(expected), Some(kept)) => return Err(refuse(&state, key, "checksum_mismatch", checksum_detail(&expected, &kept)).await),
        // Storage that keeps no checksum: hash the bytes here, and hold them to the declaration.
        (Some(expected), None) => match state.store.inspect(key).await {
            Ok(s) if s.sha256 == expected => s,
            Ok(s) => return Err(refuse(&state, key, "checksum_mismatch", checksum_detail(&expected, &s.sha256)).await),
            Err(e) => return Err(ingest::reject_object(&state, key, e).await),
        },
        (None, _) => match state.store.inspect(key).await {
            Ok(s) => s,
            Err(e) => return Err(ingest::reject_object(&state, key, e).await),
        },
    };
    let video = videos::mark_stored(&state.pool, tenant.id, id, &stored).await?;
    match video {
        Some(v) => Ok(Json(v)),
        // Completed concurrently by another request: return what is stored.
        None => Ok(Json(videos::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound("video"))?)),
    }
}

fn checksum_detail(expected: &str, found: &str) -> String {
    format!("the uploaded bytes have SHA-256 {found} but {expected} was declared; upload again")
}

/// Deletes an upload that is not what was declared and says why.
async fn refuse(state: &AppState, key: &str, code: &'static str, detail: String) -> ApiError {
    if let Err(e) = state.store.delete(key).await {
        tracing::warn!(error = %e, key, "could not remove an upload that is not what was declared");
    }
    ApiError::invalid(code, detail)
}
