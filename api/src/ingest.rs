//! Streaming uploads into object storage: the magic bytes are checked before anything is
//! stored, the size limit is enforced as bytes arrive, and the video row is written only once
//! the object is complete, so a rejected upload leaves nothing behind.

use bytes::Bytes;
use futures::{Stream, TryStreamExt as _};
use uuid::Uuid;

use reelq_shared::db::videos::{self, Video};
use reelq_shared::domain::video_object_key;
use reelq_shared::metrics;
use reelq_shared::storage::StorageError;

use crate::error::ApiError;
use crate::state::AppState;

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
    if err.is_client_error() {
        if let Err(del) = state.store.delete(key).await {
            tracing::warn!(error = %del, key, "could not remove a rejected upload");
        }
    }
    ApiError::from(err)
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
