//! `/v1/admin/songs`: the song catalogue that `song` recognises tracks against. An operator adds
//! a track from an upload (`POST /v1/videos` with the audio, then `POST /v1/admin/songs`), or
//! from pulled sounds whose audio a dump brought; a worker fingerprints it. Admin keys only.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use reelq_shared::db::jobs::{self, JobView};
use reelq_shared::db::songs::{self, Track};
use reelq_shared::db::videos;
use reelq_shared::songs::{self as catalogue, SongRequest};

use crate::error::{ApiError, Problem};
use crate::extract::{self, Path};
use crate::state::{AdminKey, AppState};

/// Add a song to the catalogue.
///
/// Enqueues a job that fingerprints the track (its first `songs.max_track_secs`) into the
/// catalogue; poll it at `GET /v1/jobs/{id}`. The track comes from `audio_id`, an upload of this
/// key's tenant (audio, or a video whose sound is the track), or, with `music_id` alone, from
/// a pulled video that uses that sound and whose file a dump brought. Adding the same upload or
/// sound again replaces its track. Deleting the upload removes the track.
#[utoipa::path(
    post, path = "/v1/admin/songs", tag = "admin",
    request_body = SongRequest,
    responses(
        (status = 202, description = "Queued", body = JobView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such upload for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "Retention removed the upload's bytes (`audio_expired`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_song_request`, `audio_not_ready` or `unknown_music_id`", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn add_song(
    State(state): State<AppState>,
    AdminKey(tenant): AdminKey,
    extract::Json(req): extract::Json<SongRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    req.validate().map_err(|m| ApiError::invalid("invalid_song_request", m))?;
    if let Some(id) = req.audio_id {
        let upload = videos::get(&state.pool, tenant.id, id).await?.ok_or(ApiError::NotFound("upload"))?;
        if upload.status == "expired" {
            return Err(ApiError::Gone { code: "audio_expired", detail: "retention removed this upload's bytes; upload the track again".into() });
        }
        if upload.status != "stored" {
            return Err(ApiError::invalid("audio_not_ready", "the upload has not been completed"));
        }
    }
    if let Some(m) = &req.music_id
        && songs::pulled_sound(&state.pool, m).await?.is_none()
    {
        return Err(ApiError::invalid("unknown_music_id", format!("no pulled sound has the id `{m}`")));
    }
    let trace = reelq_shared::telemetry::current_context();
    let job = catalogue::enqueue(&state.pool, tenant.id, &req, &trace).await?;
    tracing::info!(job_id = %job.id, tenant = %tenant.name, "song requested for the catalogue");
    Ok((StatusCode::ACCEPTED, Json(jobs::view(job, Vec::new()))))
}

/// How many pulled sounds to add.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PulledQuery {
    /// At most this many (default 100, at most 1,000), the most used first.
    pub limit: Option<i64>,
}

/// The jobs that add pulled sounds.
#[derive(Debug, Serialize, ToSchema)]
pub struct PulledSongs {
    /// One job per sound, polled at `GET /v1/jobs/{id}`.
    pub jobs: Vec<QueuedSong>,
}

/// A queued pulled sound.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueuedSong {
    pub music_id: String,
    pub job_id: Uuid,
}

/// Add pulled sounds to the catalogue.
///
/// Enqueues an `add_song` job for each pulled sound that is not in the catalogue yet and whose
/// audio is at hand (a pulled video using it carries its file), the most used first.
#[utoipa::path(
    post, path = "/v1/admin/songs/pulled", tag = "admin",
    params(PulledQuery),
    responses(
        (status = 202, description = "Queued (possibly none)", body = PulledSongs),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn add_pulled_songs(
    State(state): State<AppState>,
    AdminKey(tenant): AdminKey,
    query: Result<Query<PulledQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<(StatusCode, Json<PulledSongs>), ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1_000).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be between 1 and 1000"));
    }
    let trace = reelq_shared::telemetry::current_context();
    let mut queued = Vec::new();
    for music_id in songs::pulled_sounds_missing(&state.pool, limit).await? {
        let req = SongRequest { audio_id: None, music_id: Some(music_id.clone()), title: String::new(), artist: String::new() };
        let job = catalogue::enqueue(&state.pool, tenant.id, &req, &trace).await?;
        queued.push(QueuedSong { music_id, job_id: job.id });
    }
    tracing::info!(count = queued.len(), tenant = %tenant.name, "pulled sounds requested for the catalogue");
    Ok((StatusCode::ACCEPTED, Json(PulledSongs { jobs: queued })))
}

/// Catalogue listing.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SongsQuery {
    /// Page size (default 50, at most 200).
    pub limit: Option<i64>,
    /// `next_before` of the previous page: tracks added before this one.
    pub before: Option<i64>,
}

/// A page of the catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct SongPage {
    /// Newest first.
    pub tracks: Vec<Track>,
    /// Tracks in the catalogue.
    pub total: i64,
    /// Pass as `before` for the next page; absent on the last page.
    pub next_before: Option<i64>,
}

/// The song catalogue, newest first.
#[utoipa::path(
    get, path = "/v1/admin/songs", tag = "admin",
    params(SongsQuery),
    responses(
        (status = 200, body = SongPage),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Bad limit", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_songs(
    State(state): State<AppState>,
    _admin: AdminKey,
    query: Result<Query<SongsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SongPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let limit = super::admin::page_limit(q.limit)?;
    let (mut tracks, total) = songs::list(&state.pool, q.before, limit + 1).await?;
    let more = tracks.len() as i64 > limit;
    tracks.truncate(limit as usize);
    let next_before = if more { tracks.last().map(|t| t.id) } else { None };
    Ok(Json(SongPage { tracks, total, next_before }))
}

/// Remove a song from the catalogue.
#[utoipa::path(
    delete, path = "/v1/admin/songs/{track_id}", tag = "admin",
    params(("track_id" = i64, Path, description = "Track id (the catalogue numbers its tracks)")),
    responses(
        (status = 204, description = "Removed with its fingerprint"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such track, or an id that is not a 64-bit number", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn delete_song(State(state): State<AppState>, AdminKey(tenant): AdminKey, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    if !songs::delete(&state.pool, id).await? {
        return Err(ApiError::NotFound("track"));
    }
    tracing::info!(track_id = id, tenant = %tenant.name, "song removed from the catalogue");
    Ok(StatusCode::NO_CONTENT)
}
