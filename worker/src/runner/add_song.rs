//! The internal `add_song` job: fetch the track's audio (the operator's upload, or the file of
//! a pulled video using the sound), decode its first `songs.max_track_secs` to mono, and store
//! its fingerprint in the catalogue, replacing an earlier track of the same upload or sound.
//!
//! A track that is gone, unreadable or too short fails the job with a stable code; storage and
//! database faults are retried.

use reelq_media::audio::ANALYSIS_RATE;
use reelq_media::fingerprint;
use reelq_media::pcm::{self, ReadError};
use reelq_shared::db::jobs::JobRecord;
use reelq_shared::db::songs::{self, NewTrack};
use reelq_shared::db::videos;
use reelq_shared::domain::JobErrorCode;
use reelq_shared::songs::SongRequest;
use tokio_util::sync::CancellationToken;

use super::{JobError, JobRunner, fatal};

/// Shortest track worth a fingerprint: an excerpt is matched over about 5 s, and a track
/// shorter than two excerpts is more likely a mistake than a song.
const MIN_TRACK_SECS: f64 = 10.0;

pub(super) async fn run(runner: &JobRunner, job: &JobRecord, cancel: &CancellationToken) -> Result<serde_json::Value, JobError> {
    let request = SongRequest::from_options(&job.options).map_err(|m| fatal(JobErrorCode::InvalidRequest, m))?;
    let pulled = match &request.music_id {
        Some(m) => Some(songs::pulled_sound(&runner.pool, m).await?.ok_or_else(|| fatal(JobErrorCode::InvalidRequest, format!("no pulled sound `{m}`")))?),
        None => None,
    };
    let key = match (job.video_id, &request.music_id) {
        (Some(id), _) => {
            let upload = videos::get(&runner.pool, job.tenant_id, id)
                .await?
                .filter(|v| v.status == "stored")
                .ok_or_else(|| fatal(JobErrorCode::AudioMissing, "the upload holding the track no longer exists"))?;
            upload.object_key
        }
        (None, Some(m)) => songs::pulled_audio_key(&runner.pool, m)
            .await?
            .ok_or_else(|| fatal(JobErrorCode::AudioMissing, format!("no pulled video using the sound `{m}` carries its file")))?,
        (None, None) => return Err(fatal(JobErrorCode::InvalidRequest, "the job names no audio")),
    };

    let dir =
        tempfile::Builder::new().prefix("reelq-song-").tempdir_in(&runner.scratch).map_err(|e| JobError::Retryable(format!("scratch space: {e}")))?;
    let path = dir.path().join("track");
    super::mux::fetch(&runner.store, &key, &path, JobErrorCode::AudioMissing, cancel).await?;
    let (max_secs, stop) = (runner.settings.songs.max_track_secs as f64, cancel.clone());
    let samples = tokio::task::spawn_blocking(move || pcm::read_mono(&path, ANALYSIS_RATE, max_secs, &|| stop.is_cancelled()))
        .await
        .map_err(|e| JobError::Retryable(format!("processing thread failed: {e}")))?
        .map_err(|e| match e {
            ReadError::Invalid(m) => fatal(JobErrorCode::InvalidAudio, m),
            ReadError::Stopped => JobError::Stopped("cancelled"),
        })?;
    let duration_secs = samples.len() as f64 / f64::from(ANALYSIS_RATE);
    if duration_secs < MIN_TRACK_SECS {
        return Err(fatal(
            JobErrorCode::InvalidAudio,
            format!("the track has {duration_secs:.1} s of sound; a catalogue track needs at least {MIN_TRACK_SECS} s"),
        ));
    }
    let items = tokio::task::spawn_blocking(move || fingerprint::fingerprint(&samples, ANALYSIS_RATE))
        .await
        .map_err(|e| JobError::Retryable(format!("processing thread failed: {e}")))?;

    let (pulled_title, pulled_artist) = pulled.unwrap_or_default();
    let title = if request.title.trim().is_empty() { pulled_title } else { request.title.trim().to_owned() };
    let artist = if request.artist.trim().is_empty() { pulled_artist } else { request.artist.trim().to_owned() };
    let track =
        NewTrack { title, artist, video_id: job.video_id, music_id: request.music_id.clone(), duration_secs: duration_secs as f32, fingerprint: items };
    let id = songs::insert(&runner.pool, &track, fingerprint::keys).await?;
    tracing::info!(track_id = id, duration_secs, items = track.fingerprint.len(), "song added to the catalogue");
    Ok(serde_json::json!({
        "track_id": id,
        "title": track.title,
        "artist": track.artist,
        "music_id": track.music_id,
        "video_id": track.video_id,
        "duration_secs": duration_secs,
        "fingerprint_items": track.fingerprint.len(),
    }))
}
