//! Streaming a local video file to `POST /v1/videos`.

use std::path::Path;

use anyhow::{Context, Result};
use futures::TryStreamExt;
use reqwest::Body;
use tokio::fs::File;
use tokio_util::io::ReaderStream;

use crate::client::ApiClient;
use crate::model::Video;
use crate::progress;

/// Large enough to keep syscalls few, small enough that memory stays flat whatever the size.
const CHUNK: usize = 256 * 1024;

/// The `Content-Type` to declare for a file, from its extension.
pub fn content_type_for(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("mp4") => "video/mp4",
        Some("mov") => "video/quicktime",
        Some("webm") => "video/webm",
        Some("mkv") => "video/x-matroska",
        _ => "application/octet-stream",
    }
}

/// Uploads the file without reading it into memory, counting bytes on a progress bar.
pub async fn upload(client: &ApiClient, path: &Path, show_progress: bool) -> Result<Video> {
    let file = File::open(path).await.with_context(|| format!("cannot open {}", path.display()))?;
    let meta = file.metadata().await.with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(meta.is_file(), "{} is not a regular file", path.display());
    let len = meta.len();

    let bar = progress::upload_bar(len, show_progress);
    let counter = bar.clone();
    let stream = ReaderStream::with_capacity(file, CHUNK).inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let result = client.upload_video(Body::wrap_stream(stream), len, content_type_for(path)).await;
    bar.finish_and_clear();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_type_follows_the_extension() {
        assert_eq!(content_type_for(Path::new("clip.mp4")), "video/mp4");
        assert_eq!(content_type_for(Path::new("/tmp/a/b.mov")), "video/quicktime");
        assert_eq!(content_type_for(Path::new("x.webm")), "video/webm");
        assert_eq!(content_type_for(Path::new("x.mkv")), "video/x-matroska");
    }

    #[test]
    fn content_type_ignores_case_and_defaults_to_octet_stream() {
        assert_eq!(content_type_for(Path::new("HOLIDAY.MP4")), "video/mp4");
        assert_eq!(content_type_for(Path::new("x.MoV")), "video/quicktime");
        assert_eq!(content_type_for(Path::new("x.avi")), "application/octet-stream");
        assert_eq!(content_type_for(Path::new("mp4")), "application/octet-stream");
        assert_eq!(content_type_for(Path::new("archive.mp4.gz")), "application/octet-stream");
    }
}
