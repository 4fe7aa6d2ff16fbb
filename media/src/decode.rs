//! Decoding once: one pass over a probed file gives every analysis what it needs.
//!
//! - **Sampled frames**: uniformly spaced RGB24 frames at a model's input size, plus the frames
//!   right after scene cuts, each with its timestamp. Display rotation is applied.
//! - **Per-frame statistics** on a small luma image and a colour thumbnail, on a schedule set
//!   by the frames' own timestamps and [`DecodeOptions::stats_max_fps`]: tone, sharpness,
//!   noise, colourfulness, frame difference, global shift, black bars.
//! - **Audio**: the main audio stream as 16 kHz mono `f32`, plus EBU R128 levels and clipping
//!   measured on the source signal while it streams past.
//!
//! Memory stays flat however long the video: frames are measured as they are decoded and only
//! the sampled ones are kept (their number is bounded by the options).
//!
//! ## Strategy
//! Sampling a few frames does not need every frame decoded. When nothing needs every frame
//! (no statistics, no scene detection), the decoder measures keyframe spacing from the first
//! packets. Keyframes at most one sample interval apart are decoded alone, in order, with frame
//! threading, and the other packets read past ([`Strategy::Keyframes`]): every slot holds a
//! keyframe. Up to one and a half intervals apart, it seeks to the keyframe nearest each sample
//! time ([`Strategy::Seek`]). Otherwise it decodes everything with frame
//! threading ([`Strategy::Sequential`]) and skips scaling and conversion for frames that are not
//! sampled; when nothing needs every frame it also lets the codec drop non-reference frames far
//! from the next sample time.
//!
//! ## Statistics do not depend on the sampling
//! One decode often serves several analyses, so the sampled frames change with what else was
//! asked (a frame a second at 540 pixels for the models, 16 squares of 224 for quality alone).
//! Everything measured for quality must not: whenever statistics or scene detection are on,
//! every frame is decoded (no seeking, no dropped non-reference frames, no skipped deblocking),
//! the statistics frames are chosen from the frames' own timestamps and the statistics options
//! only, and nothing measured reads the sampled frames. The frame rate comes from packet times,
//! which every strategy reads. So sampling, frame size, sample limits, strategy and audio
//! change `samples` and `scene_frames` and nothing else that [`crate::quality::analyze`] reads.
//!
//! Blocking: run it on a blocking thread. It checks `should_stop` and the wall-time limit
//! between packets and frames, so a cancelled job stops within a frame or two.
//!
//! Interlaced input is decoded as is (fields woven into frames, no deinterlacing); the report
//! counts such frames. Variable frame rate is handled by using each frame's best-effort
//! timestamp in the stream's time base; timestamps that run backwards or jump absurdly are
//! repaired from the nominal frame duration and counted.
//!
//! ## Code map
//! `options` is what a decode is asked for and `output` what it gives; `stream` reads packets
//! and describes the streams; `targets` places the uniform samples; `sequential` and `seek` are
//! the two strategies; `sink` takes each decoded frame (timestamps, samples, scene frames,
//! statistics, with the arithmetic in `pixels`); `audio` is the analysis track and the level
//! meter, over the audio decoding the mux shares (`crate::pcm`).

mod audio;
#[cfg(test)]
pub(crate) mod clips;
mod options;
mod output;
mod pixels;
mod seek;
mod sequential;
mod sink;
mod stream;
mod targets;

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;

use reelq_core::domain::JobErrorCode;

use super::probe::Probe;
use audio::AudioPipe;
use seek::{SeekError, run_seek};
use sequential::{Frames, run_sequential};
use sink::VideoSink;
use stream::{VideoInfo, scan_keyframes};
use targets::{plan_targets, sample_interval};

pub use options::{DecodeLimits, DecodeOptions, FrameSize, Sampling, SceneOptions, Strategy};
pub use output::{DecodeOutput, DecodeReport, DecodedAudio, FrameStats, SampleKind, SampledFrame, SceneCut};
pub use stream::clockwise_rotation;

/// Why decoding ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input is at fault: fail the job with this code, never retry.
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: JobErrorCode,
        /// Human explanation.
        message: String,
    },
    /// The wall-time limit passed (a pathological file); fail with `timeout`, never retry.
    #[error("decoding took longer than the limit of {limit_secs} s")]
    TimedOut {
        /// The limit, in seconds.
        limit_secs: u64,
    },
    /// `should_stop` said so (the job was cancelled or lost its lease): write nothing.
    #[error("decoding was stopped")]
    Stopped,
    /// The file could not be opened again after probing (scratch space gone): retry.
    #[error("the downloaded file cannot be read: {0}")]
    Unavailable(String),
}

impl DecodeError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid { code: JobErrorCode::InvalidMedia, message: message.into() }
    }

    /// The job error code for a failure caused by the input; `None` for [`Self::Stopped`] and
    /// [`Self::Unavailable`], which are not the input's fault.
    pub fn code(&self) -> Option<JobErrorCode> {
        match self {
            Self::Invalid { code, .. } => Some(*code),
            Self::TimedOut { .. } => Some(JobErrorCode::Timeout),
            Self::Stopped | Self::Unavailable(_) => None,
        }
    }

    /// Whether trying again later can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Decodes `path`, already probed as `probe`, into what `opts` asks for.
///
/// `should_stop` is polled between packets and frames; when it returns true, decoding ends
/// with [`DecodeError::Stopped`]. Pass `&|| token.is_cancelled()` for a cancellation token or
/// `&|| flag.load(Ordering::Relaxed)` for an `AtomicBool`.
pub fn decode(path: &Path, probe: &Probe, opts: &DecodeOptions, should_stop: &dyn Fn() -> bool) -> Result<DecodeOutput, DecodeError> {
    super::init();
    let clock = Clock { start: Instant::now(), limit: opts.limits.max_wall, should_stop };
    clock.check()?;
    let mut ictx = open(path)?;
    let info = VideoInfo::new(&ictx, probe)?;
    let want_video = opts.sampling != Sampling::Off || opts.dense();

    let mut report = DecodeReport {
        strategy: Strategy::Sequential,
        keyframe_interval_secs: None,
        packets_read: 0,
        video_packets: 0,
        video_bytes: 0,
        video_complete: false,
        frames_decoded: 0,
        frames_converted: 0,
        stats_frames: 0,
        seeks: 0,
        decode_errors: 0,
        read_errors: 0,
        interlaced_frames: 0,
        timestamp_repairs: 0,
        elapsed_ms: 0,
        packet_times: Vec::new(),
    };

    let targets = plan_targets(opts.sampling, info.duration, opts.limits.max_samples);
    let mut pending = VecDeque::new();
    // Statistics and scene detection need every frame: no seeking for them.
    let mut strategy = if want_video && !opts.dense() { opts.strategy } else { Strategy::Sequential };
    if matches!(strategy, Strategy::Seek | Strategy::Keyframes) && targets.fixed().is_none() {
        strategy = Strategy::Sequential;
    }
    if strategy == Strategy::Auto {
        strategy = Strategy::Sequential;
        if let (false, Some(times)) = (opts.dense(), targets.fixed()) {
            let scan = scan_keyframes(&mut ictx, &info, &clock, &mut report)?;
            report.keyframe_interval_secs = scan.interval;
            let interval = sample_interval(opts.sampling, info.duration, times.len());
            // Keyframes at least as dense as the samples put one in every slot: decoding them
            // alone, in order, reaches every sample without a seek or a flush. A little sparser,
            // seeking reaches the slots that hold no keyframe.
            match scan.interval {
                Some(kf) if kf <= interval * 1.001 => strategy = Strategy::Keyframes,
                Some(kf) if kf <= interval * 1.5 => strategy = Strategy::Seek,
                _ => {}
            }
            pending = scan.packets;
        }
    }

    let mut sink = VideoSink::new(&info, opts, targets);
    let mut audio = None;
    if strategy == Strategy::Seek {
        report.strategy = Strategy::Seek;
        drop(pending);
        match run_seek(&mut ictx, &info, opts, &mut sink, &clock, &mut report) {
            Ok(()) => {}
            Err(SeekError::Decode(e)) => return Err(e),
            Err(SeekError::CannotSeek) => {
                // Some files cannot seek (no index): decode them from the start instead.
                tracing::debug!("seeking failed; decoding sequentially");
                ictx = open(path)?;
                sink = VideoSink::new(&info, opts, plan_targets(opts.sampling, info.duration, opts.limits.max_samples));
                report.strategy = Strategy::Sequential;
                report.video_complete = run_sequential(&mut ictx, &info, opts, Frames::All, Some(&mut sink), None, VecDeque::new(), &clock, &mut report)?;
            }
        }
        if opts.audio && info.audio_index.is_some() {
            let mut actx = open(path)?;
            let mut pipe = AudioPipe::new(&actx, info.audio_index, opts);
            // This pass reads every packet, so it also gives the video stream's true size.
            report.video_packets = 0;
            report.video_bytes = 0;
            report.packet_times.clear();
            report.video_complete = run_sequential(&mut actx, &info, opts, Frames::All, None, pipe.as_mut(), VecDeque::new(), &clock, &mut report)?;
            audio = pipe;
        }
    } else {
        let frames = if strategy == Strategy::Keyframes { Frames::Keyframes } else { Frames::All };
        report.strategy = if frames == Frames::Keyframes { Strategy::Keyframes } else { Strategy::Sequential };
        let mut pipe = if opts.audio { AudioPipe::new(&ictx, info.audio_index, opts) } else { None };
        let video = if want_video { Some(&mut sink) } else { None };
        report.video_complete = run_sequential(&mut ictx, &info, opts, frames, video, pipe.as_mut(), pending, &clock, &mut report)?;
        audio = pipe;
    }

    if want_video && sink.frames == 0 {
        return Err(DecodeError::invalid("no video frame could be decoded"));
    }
    let audio = audio.map(AudioPipe::finish);
    report.elapsed_ms = clock.start.elapsed().as_millis() as u64;
    Ok(sink.finish(&info, audio, report))
}

struct Clock<'a> {
    start: Instant,
    limit: Duration,
    should_stop: &'a dyn Fn() -> bool,
}

impl Clock<'_> {
    fn check(&self) -> Result<(), DecodeError> {
        if (self.should_stop)() {
            return Err(DecodeError::Stopped);
        }
        if self.start.elapsed() > self.limit {
            return Err(DecodeError::TimedOut { limit_secs: self.limit.as_secs() });
        }
        Ok(())
    }
}

fn open(path: &Path) -> Result<ffmpeg::format::context::Input, DecodeError> {
    std::fs::File::open(path).map_err(|e| DecodeError::Unavailable(e.to_string()))?;
    ffmpeg::format::input(&path).map_err(|e| DecodeError::invalid(format!("the file could not be read as a video: {e}")))
}

#[cfg(test)]
mod tests;
