//! The `mux` analysis inside a job: fetch the video and the tenant's track, build the MP4 off
//! the async runtime, probe it again, store it under the job's own key and describe it. The
//! runner has already fetched the video and probed it against the media limits; its copy is
//! reused.
//!
//! Failures are decided here: a track that is gone, unreadable or too short, and a video that
//! cannot be copied into MP4, fail the job with a stable code; storage and scratch-disk faults
//! are retried.

use std::path::Path;

use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use reelq_core::options::JobOptions;
use reelq_shared::db::jobs::JobRecord;
use reelq_shared::db::videos;
use reelq_shared::domain::{JobErrorCode, MediaKind, mux_output_key};
use reelq_shared::storage::{StorageError, Store};

use super::{JobError, JobRunner, fatal};
use crate::media::mux::{self, MuxError};
use crate::media::probe;

/// Downloads `key` to `path`, stopping when the job is cancelled; a missing object fails the
/// job with `missing`.
pub(super) async fn fetch(store: &Store, key: &str, path: &Path, missing: JobErrorCode, cancel: &CancellationToken) -> Result<(), JobError> {
    let download = store.download_to_file(key, path).instrument(tracing::info_span!("stage", stage = "download"));
    tokio::select! {
        r = download => match r {
            Ok(_) => Ok(()),
            Err(StorageError::NotFound(_)) => Err(fatal(missing, "an input's file is gone from storage")),
            Err(e) => Err(JobError::Retryable(e.to_string())),
        },
        () = cancel.cancelled() => Err(JobError::Stopped("cancelled")),
    }
}

/// Runs `mux` for `job`; returns the result payload.
/// `fetched` is the video the runner already downloaded for the job, when it did.
pub(super) async fn run(
    runner: &JobRunner,
    job: &JobRecord,
    options: &JobOptions,
    fetched: Option<&Path>,
    cancel: &CancellationToken,
) -> Result<serde_json::Value, JobError> {
    let opts = options.mux.clone().ok_or_else(|| fatal(JobErrorCode::InvalidRequest, "the mux analysis needs options.mux"))?;

    // The api refuses an audio upload as the video at submission; the rows may have changed.
    let video_id = job.video_id.ok_or_else(|| fatal(JobErrorCode::VideoMissing, "the job has no video"))?;
    let video =
        videos::get(&runner.pool, job.tenant_id, video_id).await?.ok_or_else(|| fatal(JobErrorCode::VideoMissing, "the video no longer exists"))?;
    if video.kind() == Some(MediaKind::Audio) {
        return Err(fatal(JobErrorCode::NotAVideo, "the job's upload is an audio track, not a video"));
    }
    let track = videos::get(&runner.pool, job.tenant_id, opts.audio_id)
        .await?
        .filter(|t| t.status == "stored")
        .ok_or_else(|| fatal(JobErrorCode::AudioMissing, "the audio track no longer exists"))?;

    let dir = tempfile::Builder::new().prefix("reelq-mux-").tempdir_in(&runner.scratch).map_err(|e| JobError::Retryable(format!("scratch space: {e}")))?;
    let track_path = dir.path().join("track");
    let video_path = match fetched {
        Some(path) => path.to_path_buf(),
        None => {
            let path = dir.path().join("video");
            fetch(&runner.store, &video.object_key, &path, JobErrorCode::VideoMissing, cancel).await?;
            path
        }
    };
    fetch(&runner.store, &track.object_key, &track_path, JobErrorCode::AudioMissing, cancel).await?;

    let out_path = dir.path().join("output.mp4");
    let mode = opts.mode;
    let (video, track_file, out, stop, limits) = (video_path, track_path, out_path.clone(), cancel.clone(), runner.settings.media.clone());
    let span = tracing::info_span!("stage", stage = "mux");
    let (report, probe) = tokio::task::spawn_blocking(move || {
        span.in_scope(|| {
            let report = mux::mux(&video, &track_file, &out, &opts, &|| stop.is_cancelled()).map_err(|e| match e {
                MuxError::Invalid { code, message } => JobError::Fatal { code, message },
                MuxError::Output(m) => JobError::Retryable(format!("writing the output: {m}")),
                MuxError::Stopped => JobError::Stopped("cancelled"),
            })?;
            // The output is described from the file itself, as a client would see it.
            let probe = probe::probe(&out, &limits).map_err(|e| JobError::Retryable(format!("the output could not be probed: {e}")))?;
            Ok::<_, JobError>((report, probe))
        })
    })
    .await
    .map_err(|e| JobError::Retryable(format!("processing thread failed: {e}")))??;

    let key = mux_output_key(job.tenant_id, job.id);
    let bytes = runner
        .store
        .upload_file(&key, &out_path, "video/mp4")
        .instrument(tracing::info_span!("stage", stage = "upload_output"))
        .await
        .map_err(|e| JobError::Retryable(e.to_string()))?;
    tracing::info!(key, bytes, duration_secs = report.duration_secs, "mux output stored");
    Ok(serde_json::json!({
        "output_key": key,
        "bytes": bytes,
        "duration_secs": report.duration_secs,
        "video_copied": true,
        "video_codec": report.video_codec,
        "video_packets": report.video_packets,
        "audio_codec": report.audio_codec,
        "audio_sample_rate": report.audio_sample_rate,
        "audio_channels": report.audio_channels,
        "audio_id": track.id,
        "mode": mode,
        "track_secs_used": report.track_secs_used,
        "original_mixed": report.original_mixed,
        "limiter_reduction_db": report.limiter_reduction_db,
        "faststart": report.faststart,
        "source_rotation": report.source_rotation,
        "rotation_kept": report.rotation_kept,
        "probe": probe,
    }))
}
