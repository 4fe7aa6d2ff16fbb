//! Where an analysis run reports its timings: the worker exports them as metrics, `reelq
//! analyze` ignores them.

use std::time::Duration;

/// Receives timings; every method has a default that ignores them.
pub trait Observer: Send + Sync {
    /// A stage of one video (`decode`, or an analysis's name) took `took`.
    fn stage(&self, _stage: &str, _took: Duration) {}
    /// One unbatched model call (`vad`, `whisper`, `text_embedding`, `audio_tagger`) took `took`.
    fn inference(&self, _model: &str, _took: Duration) {}
}

/// Ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Observer for Quiet {}
