//! A model pack kept in S3 (`inference.models_s3_prefix`), copied into the local pack folder
//! before the first job that needs a model. Objects under `<prefix>/<model>/…` become
//! `<models_dir>/<model>/…`; files already there are kept, so a new pack goes under a new
//! prefix. Every file is still checked against its manifest's sha256 when the model loads.

use std::path::{Component, Path, PathBuf};

use reelq_shared::storage::{StorageError, Store};

/// Why the pack could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("model pack in storage: {0}")]
    Storage(#[from] StorageError),
    #[error("model pack in storage: nothing under `{0}`")]
    Empty(String),
    #[error("model pack folder {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Copies every object under `prefix` into `dir`; returns how many files were fetched.
pub async fn sync_pack(store: &Store, prefix: &str, dir: &Path) -> Result<usize, SyncError> {
    let prefix = format!("{}/", prefix.trim_end_matches('/'));
    let keys = store.list_keys(&prefix).await?;
    if keys.is_empty() {
        return Err(SyncError::Empty(prefix));
    }
    let mut fetched = 0;
    for key in keys {
        let Some(relative) = key.strip_prefix(&prefix).and_then(safe_relative) else {
            tracing::warn!(key, "skipping a pack object whose name is not a plain relative path");
            continue;
        };
        let target = dir.join(&relative);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            continue;
        }
        let io = |source| SyncError::Io { path: target.clone(), source };
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        // Written beside the target and renamed, so a crash never leaves half a file that a
        // later start would take for a complete one.
        let partial = target.with_extension("partial");
        store.download_to_file(&key, &partial).await?;
        tokio::fs::rename(&partial, &target).await.map_err(io)?;
        fetched += 1;
    }
    tracing::info!(prefix, dir = %dir.display(), fetched, "model pack synchronised from storage");
    Ok(fetched)
}

/// `model/file.onnx` as a path, refusing absolute paths and `..`.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(name);
    let plain = !name.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    plain.then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_names_are_written() {
        assert_eq!(safe_relative("silero-vad/model.onnx"), Some(PathBuf::from("silero-vad/model.onnx")));
        assert_eq!(safe_relative("../etc/passwd"), None);
        assert_eq!(safe_relative("/etc/passwd"), None);
        assert_eq!(safe_relative(""), None);
    }
}
