//! FFmpeg through ffmpeg-next: probe, decode, audio, quality statistics and mux. Only this
//! crate links FFmpeg, and it knows nothing of ONNX Runtime, the database or the queue.

pub mod audio;
pub mod decode;
pub mod fingerprint;
pub mod mux;
pub mod pcm;
pub mod probe;
pub mod quality;

use std::sync::Once;

use serde::Deserialize;

/// Initialises FFmpeg once per process and keeps its own logging quiet: errors reach users
/// through reelq's error codes, not FFmpeg's stderr.
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Err(e) = ffmpeg_next::init() {
            tracing::error!(error = %e, "FFmpeg failed to initialise");
        }
        ffmpeg_next::util::log::set_level(ffmpeg_next::util::log::Level::Fatal);
    });
}

/// The `[media]` section: limits on what a video may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MediaSettings {
    /// Longest accepted video, in seconds.
    pub max_duration_secs: f64,
    /// Largest accepted frame, in pixels (width × height).
    pub max_pixels: u64,
    /// Most streams a file may have.
    pub max_streams: usize,
    /// Longest a decode may take before the job fails with `timeout`.
    pub max_decode_secs: u64,
}

impl Default for MediaSettings {
    fn default() -> Self {
        Self { max_duration_secs: 600.0, max_pixels: 3840 * 2160, max_streams: 16, max_decode_secs: 300 }
    }
}
