//! What a decode is asked for: sampling, frame size, scene detection, statistics, audio,
//! strategy and limits.

use std::time::Duration;

use serde::Serialize;

/// Which frames to sample uniformly.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// None.
    Off,
    /// This many frames, one from the middle of each of as many equal slices of the video.
    Count(usize),
    /// One frame every this many seconds, starting at 0 (what `ffmpeg -vf fps=1/N` gives).
    EverySecs(f64),
}

/// Size of the sampled RGB frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameSize {
    /// Squeezed to N×N, ignoring the aspect ratio (what `-vf scale=N:N` gives).
    Square(u32),
    /// Short side scaled to N, then the central N×N square.
    CenterCrop(u32),
    /// Short side scaled to N, aspect ratio kept (after rotation, so a portrait video gives
    /// portrait frames).
    ShortSide(u32),
}

/// Scene-cut detection on consecutive statistics frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SceneOptions {
    /// Least mean absolute luma difference (0–255) between consecutive statistics frames for a
    /// cut; the difference must also be 2.5× the recent average, so that fast motion is not
    /// taken for a string of cuts.
    pub threshold: f32,
    /// Least time between two cuts.
    pub min_gap_secs: f64,
    /// Most cut frames kept as RGB (the strongest cuts win); every cut is still listed.
    pub max_frames: usize,
}

impl Default for SceneOptions {
    fn default() -> Self {
        Self { threshold: 30.0, min_gap_secs: 0.5, max_frames: 16 }
    }
}

/// How to reach the sampled frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Decide per file (see the [`decode`](super) module).
    Auto,
    /// Seek to each sample time. Ignored when statistics or scene detection are on: they need
    /// every frame, so such a decode is sequential whatever is asked.
    Seek,
    /// Read every packet in order but decode only the keyframes, each sample taking the first
    /// keyframe inside its slot: for keyframes at least as dense as the samples. Ignored, like
    /// [`Strategy::Seek`], when statistics or scene detection are on.
    Keyframes,
    /// Decode every frame.
    Sequential,
}

/// Limits on one decode.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeLimits {
    /// Longest the decode may take; past it, [`DecodeError::TimedOut`](super::DecodeError::TimedOut).
    pub max_wall: Duration,
    /// Largest frame accepted, in pixels, should the size change mid-stream.
    pub max_pixels: u64,
    /// Most audio kept at 16 kHz, in seconds (the rest is still metered).
    pub max_audio_secs: f64,
    /// Most uniformly sampled frames kept; [`Sampling::EverySecs`] on a long video widens its
    /// interval to stay under this.
    pub max_samples: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self { max_wall: Duration::from_secs(300), max_pixels: 3840 * 2160, max_audio_secs: 1200.0, max_samples: 600 }
    }
}

/// What to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeOptions {
    /// Uniform sampling.
    pub sampling: Sampling,
    /// Size of sampled and scene frames.
    pub frame_size: FrameSize,
    /// Scene-cut detection and frames; `None` for none.
    pub scenes: Option<SceneOptions>,
    /// Per-frame statistics.
    pub frame_stats: bool,
    /// Most statistics frames per second of video: 60 fps footage is measured on every fourth
    /// frame at 15, which is plenty for motion and frozen-frame detection.
    pub stats_max_fps: f64,
    /// Audio: the 16 kHz mono track and levels.
    pub audio: bool,
    /// How to reach the sampled frames.
    pub strategy: Strategy,
    /// Decoder threads; 0 lets FFmpeg choose from the CPU count.
    pub threads: usize,
    /// Skip the in-loop deblocking filter (H.264, HEVC) when only sampled frames are wanted
    /// and every frame must be decoded: about a quarter faster. Block edges then build up
    /// faintly until the next keyframe; they are invisible at model input sizes, but the
    /// frames are not bit-exact, so this is off by default and ignored whenever statistics or
    /// scene detection are on.
    pub skip_deblocking: bool,
    /// Limits.
    pub limits: DecodeLimits,
}

impl Default for DecodeOptions {
    /// Everything the analyses need: 16 frames at 224×224, scene frames, statistics, audio.
    fn default() -> Self {
        Self {
            sampling: Sampling::Count(16),
            frame_size: FrameSize::Square(224),
            scenes: Some(SceneOptions::default()),
            frame_stats: true,
            stats_max_fps: 15.0,
            audio: true,
            strategy: Strategy::Auto,
            threads: 0,
            skip_deblocking: false,
            limits: DecodeLimits::default(),
        }
    }
}

impl DecodeOptions {
    /// Only sampled frames: no statistics, scenes or audio.
    pub fn sampling_only(sampling: Sampling, frame_size: FrameSize) -> Self {
        Self { sampling, frame_size, scenes: None, frame_stats: false, audio: false, ..Self::default() }
    }

    /// These options with the uniform samples replaced by frames for models: `sampling` at
    /// `frame_size`, at most `max_frames` of them (a long video is sampled at a wider interval).
    ///
    /// Statistics, scene detection and audio stay as they are, and so does everything
    /// [`crate::quality::analyze`] reports: the statistics never depend on the sampling (see
    /// the [`decode`](super) module). One decode can therefore serve quality and the frame models
    /// together: `DecodeOptions::default().with_model_frames(Sampling::EverySecs(1.0),
    /// FrameSize::ShortSide(540), 120)` gives the same quality report as
    /// `DecodeOptions::default()`.
    pub fn with_model_frames(mut self, sampling: Sampling, frame_size: FrameSize, max_frames: usize) -> Self {
        self.sampling = sampling;
        self.frame_size = frame_size;
        self.limits.max_samples = self.limits.max_samples.min(max_frames);
        self
    }

    /// Whether something needs every frame.
    pub(super) fn dense(&self) -> bool {
        self.frame_stats || self.scenes.is_some()
    }
}
