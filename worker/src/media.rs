//! FFmpeg through ffmpeg-next. Only this crate links FFmpeg.

pub mod audio;
pub mod decode;
pub mod mux;
pub mod probe;
pub mod quality;

use std::sync::Once;

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
