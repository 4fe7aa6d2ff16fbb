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
//! (no statistics, no scene detection) and keyframes are at most about one sample interval
//! apart, the decoder seeks to the keyframe nearest each sample time ([`Strategy::Seek`]); it
//! measures keyframe spacing from the first packets. Otherwise it decodes everything with frame
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

use std::collections::VecDeque;
use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_next as ffmpeg;
use ffmpeg::codec::threading;
use ffmpeg::format::Pixel;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::{resampling, scaling};
use ffmpeg::{ChannelLayout, Packet, Rational, codec, frame};
use serde::Serialize;

use reelq_core::domain::JobErrorCode;

use super::audio::{ANALYSIS_RATE, AudioLevels, LevelMeter};
use super::probe::Probe;

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
    fn invalid(message: impl Into<String>) -> Self {
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
    /// Decide per file (see the module documentation).
    Auto,
    /// Seek to each sample time. Ignored when statistics or scene detection are on: they need
    /// every frame, so such a decode is sequential whatever is asked.
    Seek,
    /// Decode every frame.
    Sequential,
}

/// Limits on one decode.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeLimits {
    /// Longest the decode may take; past it, [`DecodeError::TimedOut`].
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
    /// the module documentation). One decode can therefore serve quality and the frame models
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
    fn dense(&self) -> bool {
        self.frame_stats || self.scenes.is_some()
    }
}

/// Why a frame was sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleKind {
    /// Uniform sampling.
    Uniform,
    /// First frame after a scene cut.
    SceneCut,
}

/// One sampled frame, RGB24, rows top to bottom, rotation applied.
#[derive(Clone, PartialEq, Serialize)]
pub struct SampledFrame {
    /// Presentation time from the stream's start, seconds.
    pub time_secs: f64,
    /// Why it was taken.
    pub kind: SampleKind,
    pub width: u32,
    pub height: u32,
    /// `width × height × 3` bytes.
    #[serde(skip)]
    pub rgb: Vec<u8>,
    /// Hasler–Süsstrunk colourfulness (0 for grey; above 45 is "quite colourful").
    pub colourfulness: f32,
}

impl std::fmt::Debug for SampledFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampledFrame")
            .field("time_secs", &self.time_secs)
            .field("kind", &self.kind)
            .field("width", &self.width)
            .field("height", &self.height)
            .field("colourfulness", &self.colourfulness)
            .finish_non_exhaustive()
    }
}

/// A detected scene cut.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SceneCut {
    /// Time of the first frame of the new shot.
    pub time_secs: f64,
    /// Mean absolute luma difference to the previous statistics frame.
    pub difference: f32,
}

/// Statistics of one decoded frame, measured on its luma at a working size (short side at
/// most 480 px) and on a thumbnail (long side about 160 px). Luma is full range (0–255):
/// limited-range video is expanded first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FrameStats {
    pub time_secs: f64,
    /// Mean luma inside the picture area (black bars excluded).
    pub luma_mean: f32,
    /// Standard deviation of luma inside the picture area (RMS contrast).
    pub luma_std: f32,
    /// Share of picture pixels at or below 16 (crushed shadows).
    pub black_ratio: f32,
    /// Share of picture pixels at or above 245 (blown highlights).
    pub white_ratio: f32,
    /// Variance of the 4-neighbour Laplacian (higher is sharper).
    pub sharpness: f32,
    /// Noise standard deviation in flat regions (Immerkær's estimator on the flattest blocks).
    pub noise_sigma: f32,
    /// Hasler–Süsstrunk colourfulness of the picture area, on the thumbnail in colour (0 for
    /// grey; above 45 is "quite colourful").
    pub colourfulness: f32,
    /// Mean absolute thumbnail difference to the previous statistics frame (0–255).
    pub difference: Option<f32>,
    /// Global shift to the previous statistics frame, as fractions of width and height
    /// (display orientation).
    pub shift: Option<[f32; 2]>,
    /// Picture area inside black bars: left, top, right, bottom as fractions (display
    /// orientation); `[0, 0, 1, 1]` without bars.
    pub picture: [f32; 4],
    /// The frame starts a new shot.
    pub scene_cut: bool,
}

/// The 16 kHz mono track and the source levels.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecodedAudio {
    /// Mono samples at [`ANALYSIS_RATE`].
    #[serde(skip)]
    pub samples: Vec<f32>,
    /// Seconds in `samples`.
    pub duration_secs: f64,
    /// Source codec sample rate.
    pub source_rate: u32,
    /// Source channel count.
    pub source_channels: u16,
    /// EBU R128 levels and clipping of the source signal.
    pub levels: Option<AudioLevels>,
    /// The track was longer than `max_audio_secs` and was cut there.
    pub truncated: bool,
}

/// How the decode went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecodeReport {
    /// Strategy used.
    pub strategy: Strategy,
    /// Median keyframe spacing seen, seconds.
    pub keyframe_interval_secs: Option<f64>,
    pub packets_read: u64,
    pub video_packets: u64,
    /// Bytes of video packets read.
    pub video_bytes: u64,
    /// Every video packet was read (so `video_bytes` is the stream's size).
    pub video_complete: bool,
    pub frames_decoded: u64,
    /// Frames scaled to RGB.
    pub frames_converted: u64,
    pub stats_frames: u64,
    pub seeks: u64,
    /// Packets or frames the codec refused.
    pub decode_errors: u64,
    /// Packets the demuxer could not read.
    pub read_errors: u64,
    pub interlaced_frames: u64,
    /// Timestamps that went backwards or jumped absurdly and were repaired.
    pub timestamp_repairs: u64,
    pub elapsed_ms: u64,
    /// Presentation times of the video packets read, seconds (at most [`MAX_PACKET_TIMES`]).
    /// Every packet is read whichever frames are decoded, so the frame rate measured from them
    /// does not depend on what else the decode serves.
    #[serde(skip)]
    pub packet_times: Vec<f64>,
}

/// Packet times kept for the frame-rate measurement: minutes of 60 fps video.
const MAX_PACKET_TIMES: usize = 20_000;

impl DecodeReport {
    /// Counts a video packet and keeps its presentation time.
    fn note_video_packet(&mut self, packet: &Packet, info: &VideoInfo) {
        self.video_packets += 1;
        self.video_bytes += packet.size() as u64;
        if let Some(pts) = packet.pts()
            && self.packet_times.len() < MAX_PACKET_TIMES
        {
            self.packet_times.push(info.secs(pts));
        }
    }

    /// Frame rate from the median interval between distinct packet times, in presentation
    /// order; `None` with fewer than two.
    fn packet_frame_rate(&self) -> Option<f64> {
        let mut times = self.packet_times.clone();
        times.sort_by(f64::total_cmp);
        times.dedup();
        let mut intervals: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).filter(|d| *d > 0.0).collect();
        intervals.sort_by(f64::total_cmp);
        intervals.get(intervals.len() / 2).map(|m| 1.0 / m)
    }
}

/// Everything one decode produced.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecodeOutput {
    /// Displayed width (after rotation) of the decoded frames.
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// Clockwise rotation applied.
    pub rotation: i32,
    /// Pixel aspect ratio (1 for square pixels).
    pub pixel_aspect: f64,
    /// Seconds: the last frame's end, or the container's duration when larger.
    pub duration_secs: f64,
    /// Frame rate from the median interval between video packets' presentation times (between
    /// decoded frames when packets carry none).
    pub measured_frame_rate: Option<f64>,
    /// Uniformly sampled frames, in time order.
    pub samples: Vec<SampledFrame>,
    /// Frames after the strongest scene cuts, in time order.
    pub scene_frames: Vec<SampledFrame>,
    /// Every scene cut found.
    pub scene_cuts: Vec<SceneCut>,
    /// Per-frame statistics, in time order.
    pub frame_stats: Vec<FrameStats>,
    /// The audio, when asked for and present.
    pub audio: Option<DecodedAudio>,
    pub report: DecodeReport,
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
    if strategy == Strategy::Seek && targets.fixed().is_none() {
        strategy = Strategy::Sequential;
    }
    if strategy == Strategy::Auto {
        strategy = Strategy::Sequential;
        if let (false, Some(times)) = (opts.dense(), targets.fixed()) {
            let scan = scan_keyframes(&mut ictx, &info, &clock, &mut report)?;
            report.keyframe_interval_secs = scan.interval;
            let interval = sample_interval(opts.sampling, info.duration, times.len());
            if let Some(kf) = scan.interval
                && kf <= interval * 1.5
            {
                strategy = Strategy::Seek;
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
                report.video_complete = run_sequential(&mut ictx, &info, opts, Some(&mut sink), None, VecDeque::new(), &clock, &mut report)?;
            }
        }
        if opts.audio && info.audio_index.is_some() {
            let mut actx = open(path)?;
            let mut pipe = AudioPipe::new(&actx, info.audio_index, opts);
            // This pass reads every packet, so it also gives the video stream's true size.
            report.video_packets = 0;
            report.video_bytes = 0;
            report.packet_times.clear();
            report.video_complete = run_sequential(&mut actx, &info, opts, None, pipe.as_mut(), VecDeque::new(), &clock, &mut report)?;
            audio = pipe;
        }
    } else {
        report.strategy = Strategy::Sequential;
        let mut pipe = if opts.audio { AudioPipe::new(&ictx, info.audio_index, opts) } else { None };
        let video = if want_video { Some(&mut sink) } else { None };
        report.video_complete = run_sequential(&mut ictx, &info, opts, video, pipe.as_mut(), pending, &clock, &mut report)?;
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

/// What the decoder needs to know about the streams.
struct VideoInfo {
    index: usize,
    audio_index: Option<usize>,
    time_base: f64,
    start_ts: Option<i64>,
    /// Seconds; 0 when unknown.
    duration: f64,
    frame_secs: f64,
    rotation: i32,
}

impl VideoInfo {
    fn new(ictx: &ffmpeg::format::context::Input, probe: &Probe) -> Result<Self, DecodeError> {
        let index = probe.video.index;
        let stream = ictx
            .stream(index)
            .filter(|s| s.parameters().medium() == ffmpeg::media::Type::Video)
            .ok_or_else(|| DecodeError::Invalid { code: JobErrorCode::NoVideoStream, message: "the file has no video stream".into() })?;
        let tb = stream.time_base();
        if tb.numerator() <= 0 || tb.denominator() <= 0 {
            return Err(DecodeError::invalid("the video stream has no valid time base"));
        }
        let audio_index = probe
            .audio
            .as_ref()
            .map(|a| a.index)
            .filter(|i| ictx.stream(*i).is_some_and(|s| s.parameters().medium() == ffmpeg::media::Type::Audio));
        let start = stream.start_time();
        let fps = probe.video.frame_rate;
        let frame_secs = if fps.is_finite() && (1.0..=1000.0).contains(&fps) { 1.0 / fps } else { 1.0 / 30.0 };
        let duration = if probe.duration_secs.is_finite() && probe.duration_secs > 0.0 { probe.duration_secs } else { 0.0 };
        Ok(Self {
            index,
            audio_index,
            time_base: rational(tb),
            start_ts: (start != ffmpeg::ffi::AV_NOPTS_VALUE).then_some(start),
            duration,
            frame_secs,
            rotation: stream_rotation(&stream).unwrap_or(probe.video.rotation).rem_euclid(360),
        })
    }

    /// Seconds from the stream's start for a timestamp in its time base.
    fn secs(&self, ts: i64) -> f64 {
        ts.saturating_sub(self.start_ts.unwrap_or(0)) as f64 * self.time_base
    }

    /// Absolute position in `AV_TIME_BASE` units for seconds from the stream's start.
    fn seek_target(&self, secs: f64) -> i64 {
        let start = self.start_ts.map_or(0.0, |s| s as f64 * self.time_base);
        ((start + secs.max(0.0)) * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64
    }
}

/// The clockwise rotation a player applies, from the stream's display matrix, rounded to a
/// quarter turn; `None` without a matrix.
fn stream_rotation(stream: &ffmpeg::Stream<'_>) -> Option<i32> {
    stream
        .side_data()
        .find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|sd| clockwise_rotation(sd.data()))
}

/// Clockwise display rotation (0, 90, 180 or 270) from a display matrix: nine little-endian
/// 32-bit integers, 16.16 fixed point except the last column.
///
/// FFmpeg's `av_display_rotation_get` returns the counter-clockwise angle, the negation of
/// `atan2(m[1], m[0])`; the ffmpeg CLI's autorotation turns the picture clockwise by minus
/// that. So the clockwise angle is `atan2(m[1], m[0])` itself: a portrait phone recording
/// (ffprobe: "rotation of -90.00 degrees") turns 90° clockwise.
pub fn clockwise_rotation(matrix: &[u8]) -> Option<i32> {
    if matrix.len() < 36 {
        return None;
    }
    let m: Vec<f64> = matrix[..36].chunks_exact(4).map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
    let (s0, s1) = (m[0].hypot(m[3]), m[1].hypot(m[4]));
    if s0 == 0.0 || s1 == 0.0 {
        return None;
    }
    let degrees = (m[1] / s1).atan2(m[0] / s0).to_degrees();
    if !degrees.is_finite() {
        return None;
    }
    Some(((degrees / 90.0).round() as i32 * 90).rem_euclid(360))
}

fn rational(r: Rational) -> f64 {
    if r.denominator() == 0 { 0.0 } else { f64::from(r.numerator()) / f64::from(r.denominator()) }
}

/// Uniform sample times.
enum Targets {
    None,
    /// Known duration: fixed times with a tolerance of half the spacing either side.
    Fixed { times: Vec<f64>, tolerance: f64 },
    /// Unknown duration: every `interval` seconds, thinned by halves whenever more than `keep`
    /// frames are held, and reduced to `count` at the end when set.
    Open { interval: f64, keep: usize, count: Option<usize> },
}

impl Targets {
    fn fixed(&self) -> Option<&[f64]> {
        match self {
            Self::Fixed { times, .. } => Some(times),
            _ => None,
        }
    }
}

fn plan_targets(sampling: Sampling, duration: f64, max_samples: usize) -> Targets {
    let max = max_samples.max(1);
    match sampling {
        Sampling::Off | Sampling::Count(0) => Targets::None,
        Sampling::Count(k) if duration > 0.0 => {
            let k = k.min(max);
            let step = duration / k as f64;
            Targets::Fixed { times: (0..k).map(|i| (i as f64 + 0.5) * step).collect(), tolerance: step / 2.0 }
        }
        Sampling::Count(k) => Targets::Open { interval: 1.0, keep: 2 * k.min(max), count: Some(k.min(max)) },
        Sampling::EverySecs(s) => {
            let s = if s.is_finite() && s > 0.0 { s } else { 1.0 };
            if duration > 0.0 {
                let s = s.max(duration / max as f64);
                let n = ((duration / s).ceil() as usize).clamp(1, max);
                Targets::Fixed { times: (0..n).map(|i| i as f64 * s).filter(|t| *t < duration).collect(), tolerance: s / 2.0 }
            } else {
                Targets::Open { interval: s, keep: max, count: None }
            }
        }
    }
}

fn sample_interval(sampling: Sampling, duration: f64, count: usize) -> f64 {
    match sampling {
        Sampling::EverySecs(s) if s > 0.0 => s.max(duration / count.max(1) as f64),
        _ => duration / count.max(1) as f64,
    }
}

/// Reads packets, giving up after many consecutive read errors (a truncated or corrupt tail).
fn read_packet(ictx: &mut ffmpeg::format::context::Input, report: &mut DecodeReport) -> Option<Packet> {
    let mut failures = 0;
    loop {
        let mut packet = Packet::empty();
        match packet.read(ictx) {
            Ok(()) => {
                report.packets_read += 1;
                return Some(packet);
            }
            Err(ffmpeg::Error::Eof) => return None,
            Err(_) => {
                report.read_errors += 1;
                failures += 1;
                if failures >= 64 {
                    return None;
                }
            }
        }
    }
}

struct KeyframeScan {
    interval: Option<f64>,
    packets: VecDeque<Packet>,
}

/// Reads the first packets to measure keyframe spacing; the packets are kept so a sequential
/// decode can start from them without seeking back.
fn scan_keyframes(
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<KeyframeScan, DecodeError> {
    const MAX_SPAN_SECS: f64 = 12.0;
    const MAX_PACKETS: usize = 2000;
    const MAX_BYTES: usize = 64 << 20;
    let mut keys: Vec<f64> = Vec::new();
    let mut packets = VecDeque::new();
    let (mut bytes, mut last_t, mut eof) = (0usize, 0.0f64, false);
    loop {
        clock.check()?;
        let Some(packet) = read_packet(ictx, report) else {
            eof = true;
            break;
        };
        if packet.stream() == info.index {
            if let Some(ts) = packet.pts().or_else(|| packet.dts()) {
                let t = info.secs(ts);
                last_t = last_t.max(t);
                if packet.is_key() {
                    keys.push(t);
                }
            }
            bytes += packet.size();
        }
        packets.push_back(packet);
        if keys.len() >= 4 || last_t >= MAX_SPAN_SECS || packets.len() >= MAX_PACKETS || bytes >= MAX_BYTES {
            break;
        }
    }
    keys.sort_by(f64::total_cmp);
    let mut gaps: Vec<f64> = keys.windows(2).map(|w| w[1] - w[0]).filter(|g| *g > 0.0).collect();
    gaps.sort_by(f64::total_cmp);
    let interval = if keys.is_empty() {
        // No packet is flagged as a keyframe: seeking cannot be trusted.
        None
    } else if let Some(g) = gaps.get(gaps.len() / 2) {
        Some(*g)
    } else if eof {
        // One keyframe in the whole file.
        Some(info.duration.max(last_t))
    } else {
        // One keyframe in the span read: they are at least that far apart.
        Some(last_t.max(MAX_SPAN_SECS.min(info.duration)))
    };
    Ok(KeyframeScan { interval, packets })
}

fn open_video_decoder(ictx: &ffmpeg::format::context::Input, info: &VideoInfo, threads: threading::Config) -> Result<codec::decoder::Video, DecodeError> {
    let stream = ictx.stream(info.index).ok_or_else(|| DecodeError::invalid("the video stream is gone"))?;
    let mut ctx = codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| DecodeError::invalid(format!("the video stream cannot be described: {e}")))?;
    ctx.set_threading(threads);
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(stream.time_base());
    dec.video().map_err(|e| DecodeError::invalid(format!("no decoder for the video stream: {e}")))
}

fn is_again(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == ffmpeg::error::EAGAIN)
}

/// Decodes every packet from the current position: video into `video`, audio into `audio`.
/// Returns whether it read to the end (it stops early once every sample is taken and nothing
/// else is wanted).
#[allow(clippy::too_many_arguments)]
fn run_sequential(
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    opts: &DecodeOptions,
    mut video: Option<&mut VideoSink>,
    mut audio: Option<&mut AudioPipe>,
    mut pending: VecDeque<Packet>,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<bool, DecodeError> {
    let mut vdec = match video {
        Some(_) => {
            let threads = threading::Config { kind: threading::Type::Frame, count: opts.threads, ..threading::Config::default() };
            Some(open_video_decoder(ictx, info, threads)?)
        }
        None => None,
    };
    // The codec may drop frames no other frame refers to while the next sample time is still
    // far ahead, but only when nothing needs every frame. With statistics on, which frames were
    // dropped would depend on the sample times, and so would the statistics frames.
    let may_skip = !opts.dense();
    let mut skipping = false;
    if !opts.dense()
        && opts.skip_deblocking
        && let Some(dec) = vdec.as_mut()
    {
        dec.skip_loop_filter(ffmpeg::Discard::All);
    }
    let mut vframe = frame::Video::empty();
    loop {
        clock.check()?;
        let Some(packet) = pending.pop_front().or_else(|| read_packet(ictx, report)) else { break };
        let stream = packet.stream();
        if stream == info.index {
            report.note_video_packet(&packet, info);
            let (Some(dec), Some(sink)) = (vdec.as_mut(), video.as_deref_mut()) else { continue };
            if may_skip {
                let t = packet.pts().map(|ts| info.secs(ts));
                let far = match (t, sink.next_target()) {
                    // Three frames of margin: a skipped frame right before the sample time
                    // only moves the sample a frame or two later.
                    (Some(t), Some(next)) => next - t > 3.0 * info.frame_secs,
                    (_, None) => true,
                    (None, Some(_)) => false,
                };
                if far != skipping {
                    skipping = far;
                    dec.skip_frame(if far { ffmpeg::Discard::NonReference } else { ffmpeg::Discard::Default });
                }
                if sink.done() {
                    if audio.is_none() {
                        return Ok(false);
                    }
                    // Only the audio is still wanted: stop decoding video.
                    continue;
                }
            }
            send_video(dec, &packet, &mut vframe, sink, None, clock, report)?;
        } else if let Some(pipe) = audio.as_deref_mut()
            && Some(stream) == pipe.index
        {
            pipe.send(&packet, report);
        }
    }
    if let (Some(dec), Some(sink)) = (vdec.as_mut(), video.as_deref_mut()) {
        if dec.send_eof().is_ok() {
            drain_video(dec, &mut vframe, sink, None, clock, report)?;
        }
    }
    if let Some(pipe) = audio {
        pipe.finish_stream(report);
    }
    Ok(true)
}

fn send_video(
    dec: &mut codec::decoder::Video,
    packet: &Packet,
    vframe: &mut frame::Video,
    sink: &mut VideoSink,
    accept_from: Option<f64>,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<(), DecodeError> {
    match dec.send_packet(packet) {
        Ok(()) => {}
        Err(e) if is_again(&e) => {
            drain_video(dec, vframe, sink, accept_from, clock, report)?;
            if dec.send_packet(packet).is_err() {
                report.decode_errors += 1;
            }
        }
        Err(_) => report.decode_errors += 1,
    }
    drain_video(dec, vframe, sink, accept_from, clock, report)
}

fn drain_video(
    dec: &mut codec::decoder::Video,
    vframe: &mut frame::Video,
    sink: &mut VideoSink,
    accept_from: Option<f64>,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<(), DecodeError> {
    loop {
        match dec.receive_frame(vframe) {
            Ok(()) => {
                clock.check()?;
                sink.on_frame(vframe, accept_from, report)?;
            }
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(e) if is_again(&e) => return Ok(()),
            Err(_) => {
                report.decode_errors += 1;
                return Ok(());
            }
        }
    }
}

enum SeekError {
    Decode(DecodeError),
    CannotSeek,
}

impl From<DecodeError> for SeekError {
    fn from(e: DecodeError) -> Self {
        Self::Decode(e)
    }
}

/// Seeks to each sample time and takes the first frame inside its slot (the keyframe when
/// there is one within half a sample interval).
fn run_seek(
    ictx: &mut ffmpeg::format::context::Input,
    info: &VideoInfo,
    opts: &DecodeOptions,
    sink: &mut VideoSink,
    clock: &Clock<'_>,
    report: &mut DecodeReport,
) -> Result<(), SeekError> {
    let (times, tolerance) = match &sink.targets {
        Targets::Fixed { times, tolerance } => (times.clone(), *tolerance),
        _ => return Err(SeekError::CannotSeek),
    };
    // Seeking flushes the decoder, which would throw frame threads' work away each time.
    let threads = threading::Config { kind: threading::Type::Slice, count: opts.threads, ..threading::Config::default() };
    let mut dec = open_video_decoder(ictx, info, threads)?;
    let mut vframe = frame::Video::empty();
    // Unknown spacing (a forced seek): seek for every slot that is not a few frames away.
    let kf_interval = report.keyframe_interval_secs.unwrap_or(0.0);
    let mut last_key: Option<f64> = None;
    let mut eof = false;
    let mut i = 0;
    while i < times.len() && !eof {
        clock.check()?;
        let target = times[i];
        let slot_start = target - tolerance;
        // Keep decoding forward when the slot starts within a few frames, or when no newer
        // keyframe is expected before it; seek otherwise.
        let near = sink.last_t.is_some_and(|p| slot_start - p <= 4.0 * info.frame_secs);
        let same_gop = last_key.is_some_and(|k| k + 0.9 * kf_interval > target + tolerance) && sink.last_t.is_some_and(|p| p < target);
        if !(near || same_gop) {
            ictx.seek(info.seek_target(target + tolerance), ..info.seek_target(target + tolerance) + 1).map_err(|_| SeekError::CannotSeek)?;
            report.seeks += 1;
            dec.flush();
            sink.reset_timeline();
            // Frames before the first keyframe after a seek cannot be decoded correctly.
            let mut keyed = false;
            let taken = sink.samples.len();
            while sink.samples.len() == taken && sink.target_index() == Some(i) {
                clock.check()?;
                let Some(packet) = read_packet(ictx, report) else {
                    eof = true;
                    break;
                };
                if packet.stream() != info.index {
                    continue;
                }
                report.note_video_packet(&packet, info);
                if !keyed {
                    if !packet.is_key() {
                        continue;
                    }
                    keyed = true;
                    last_key = packet.pts().map(|ts| info.secs(ts));
                }
                send_video(&mut dec, &packet, &mut vframe, sink, Some(slot_start), clock, report)?;
            }
        } else {
            let taken = sink.samples.len();
            while sink.samples.len() == taken && sink.target_index() == Some(i) {
                clock.check()?;
                let Some(packet) = read_packet(ictx, report) else {
                    eof = true;
                    break;
                };
                if packet.stream() != info.index {
                    continue;
                }
                report.note_video_packet(&packet, info);
                if packet.is_key() {
                    last_key = packet.pts().map(|ts| info.secs(ts));
                }
                send_video(&mut dec, &packet, &mut vframe, sink, Some(slot_start), clock, report)?;
            }
        }
        // The sink may have used the frame for a later slot, or skipped slots that no frame
        // fell into.
        i = sink.target_index().unwrap_or(times.len());
    }
    if eof && dec.send_eof().is_ok() {
        drain_video(&mut dec, &mut vframe, sink, None, clock, report)?;
    }
    Ok(())
}

/// A cached scaler and its output frame.
struct Scaler {
    key: (Pixel, u32, u32, Pixel, u32, u32),
    ctx: scaling::Context,
    out: frame::Video,
}

fn scale<'a>(cache: &'a mut Option<Scaler>, src: &frame::Video, dst: Pixel, w: u32, h: u32) -> Result<&'a frame::Video, DecodeError> {
    let key = (src.format(), src.width(), src.height(), dst, w, h);
    if cache.as_ref().is_none_or(|s| s.key != key) {
        let ctx = scaling::Context::get(src.format(), src.width(), src.height(), dst, w, h, scaling::Flags::BILINEAR)
            .map_err(|e| DecodeError::invalid(format!("frames in pixel format {:?} cannot be converted: {e}", src.format())))?;
        *cache = Some(Scaler { key, ctx, out: frame::Video::empty() });
    }
    let Some(s) = cache.as_mut() else { return Err(DecodeError::invalid("scaler unavailable")) };
    s.ctx.run(src, &mut s.out).map_err(|e| DecodeError::invalid(format!("a frame could not be converted: {e}")))?;
    Ok(&s.out)
}

/// Copies the first plane of a packed frame into a tight buffer of `row_bytes` per row.
fn tight_plane(f: &frame::Video, row_bytes: usize) -> Option<Vec<u8>> {
    if f.planes() == 0 {
        return None;
    }
    let (stride, h) = (f.stride(0), f.height() as usize);
    let data = f.data(0);
    if stride < row_bytes || data.len() < stride * h.saturating_sub(1) + row_bytes {
        return None;
    }
    let mut out = Vec::with_capacity(row_bytes * h);
    for y in 0..h {
        out.extend_from_slice(&data[y * stride..y * stride + row_bytes]);
    }
    Some(out)
}

/// Longest side of the statistics thumbnail.
const THUMB_LONG: usize = 160;
/// Short side of the working luma image.
const WORK_SHORT: u32 = 480;

/// Receives decoded frames and keeps what the options ask for.
struct VideoSink {
    opts_size: FrameSize,
    scenes: Option<SceneOptions>,
    keep_stats: bool,
    measure: bool,
    stats_gap: f64,
    max_pixels: u64,
    rotation: i32,
    time_base: f64,
    start_ts: Option<i64>,
    frame_secs: f64,
    duration: f64,
    targets: Targets,
    next: usize,
    /// For open targets: the next time wanted.
    open_next: f64,
    last_t: Option<f64>,
    frames: u64,
    coded: Option<(u32, u32)>,
    pixel_aspect: f64,
    intervals: Vec<f64>,
    last_frame_t: Option<f64>,
    max_t: f64,
    rgb: Option<Scaler>,
    gray: Option<Scaler>,
    /// The colour thumbnail's scaler, apart from the samples' so neither rebuilds the other's.
    thumb_rgb: Option<Scaler>,
    prev_thumb: Option<pixels::Gray>,
    last_stats_t: Option<f64>,
    recent_diffs: VecDeque<f32>,
    last_cut_t: Option<f64>,
    samples: Vec<SampledFrame>,
    scene_frames: Vec<(f32, SampledFrame)>,
    cuts: Vec<SceneCut>,
    stats: Vec<FrameStats>,
}

impl VideoSink {
    fn new(info: &VideoInfo, opts: &DecodeOptions, targets: Targets) -> Self {
        let open_next = 0.0;
        let fps = if opts.stats_max_fps.is_finite() && opts.stats_max_fps > 0.0 { opts.stats_max_fps } else { 15.0 };
        Self {
            opts_size: opts.frame_size,
            scenes: opts.scenes,
            keep_stats: opts.frame_stats,
            measure: opts.dense(),
            // Half a frame of slack so that 30 fps footage at 15 is every other frame.
            stats_gap: (1.0 / fps - info.frame_secs / 2.0).max(0.0),
            max_pixels: opts.limits.max_pixels,
            rotation: info.rotation,
            time_base: info.time_base,
            start_ts: info.start_ts,
            frame_secs: info.frame_secs,
            duration: info.duration,
            targets,
            next: 0,
            open_next,
            last_t: None,
            frames: 0,
            coded: None,
            pixel_aspect: 1.0,
            intervals: Vec::new(),
            last_frame_t: None,
            max_t: 0.0,
            rgb: None,
            gray: None,
            thumb_rgb: None,
            prev_thumb: None,
            last_stats_t: None,
            recent_diffs: VecDeque::new(),
            last_cut_t: None,
            samples: Vec::new(),
            scene_frames: Vec::new(),
            cuts: Vec::new(),
            stats: Vec::new(),
        }
    }

    /// The next uniform sample time, if any is left.
    fn next_target(&self) -> Option<f64> {
        match &self.targets {
            Targets::None => None,
            Targets::Fixed { times, .. } => times.get(self.next).copied(),
            Targets::Open { .. } => Some(self.open_next),
        }
    }

    fn target_index(&self) -> Option<usize> {
        match &self.targets {
            Targets::Fixed { times, .. } => (self.next < times.len()).then_some(self.next),
            _ => None,
        }
    }

    /// Every sample is taken and nothing else is wanted from the frames.
    fn done(&self) -> bool {
        !self.measure
            && match &self.targets {
                Targets::None => true,
                Targets::Fixed { times, .. } => self.next >= times.len(),
                Targets::Open { .. } => false,
            }
    }

    /// After a seek: the next frame is not the successor of the last one.
    fn reset_timeline(&mut self) {
        self.last_t = None;
        self.prev_thumb = None;
    }

    fn frame_time(&mut self, f: &frame::Video, report: &mut DecodeReport) -> f64 {
        let raw = f.timestamp().or_else(|| f.pts());
        let candidate = raw.map(|ts| {
            let start = *self.start_ts.get_or_insert(ts);
            ts.saturating_sub(start) as f64 * self.time_base
        });
        // A jump far past the declared end is a corrupt timestamp, not a long still.
        let ceiling = if self.duration > 0.0 { self.duration * 2.0 + 10.0 } else { f64::INFINITY };
        let t = match (candidate, self.last_t) {
            (Some(t), None) if t.is_finite() && t <= ceiling => t,
            (Some(t), Some(last)) if t.is_finite() && t > last && t <= ceiling.max(last + 10.0) => t,
            (_, Some(last)) => {
                report.timestamp_repairs += 1;
                last + self.frame_secs
            }
            (_, None) => {
                report.timestamp_repairs += 1;
                self.max_t
            }
        };
        self.last_t = Some(t);
        t
    }

    /// Whether the frame at `t` is a uniform sample; advances the targets.
    fn wants(&mut self, t: f64, accept_from: Option<f64>) -> bool {
        let half = self.frame_secs / 2.0;
        match &mut self.targets {
            Targets::None => false,
            Targets::Fixed { times, tolerance } => {
                while self.next < times.len() && t > times[self.next] + *tolerance {
                    self.next += 1;
                }
                let Some(&target) = times.get(self.next) else { return false };
                let take = t + half >= target || accept_from.is_some_and(|a| t >= a && t >= target - *tolerance);
                if take {
                    self.next += 1;
                    while self.next < times.len() && times[self.next] <= t + half {
                        self.next += 1;
                    }
                }
                take
            }
            Targets::Open { interval, .. } => {
                if t + half >= self.open_next {
                    while self.open_next <= t + half {
                        self.open_next += *interval;
                    }
                    true
                } else {
                    false
                }
            }
        }
    }

    /// Keeps open-ended sampling within its budget by dropping every other frame.
    fn thin(&mut self) {
        if let Targets::Open { interval, keep, .. } = &mut self.targets
            && self.samples.len() > *keep
        {
            let mut i = 0;
            self.samples.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            *interval *= 2.0;
            if let Some(last) = self.samples.last() {
                self.open_next = last.time_secs + *interval;
            }
        }
    }

    fn on_frame(&mut self, f: &frame::Video, accept_from: Option<f64>, report: &mut DecodeReport) -> Result<(), DecodeError> {
        report.frames_decoded += 1;
        let (w, h) = (f.width(), f.height());
        if w == 0 || h == 0 || f.planes() == 0 || f.format() == Pixel::None {
            report.decode_errors += 1;
            return Ok(());
        }
        if u64::from(w) * u64::from(h) > self.max_pixels {
            return Err(DecodeError::Invalid {
                code: JobErrorCode::ResolutionTooHigh,
                message: format!("a frame is {w}×{h}; at most {} pixels are accepted", self.max_pixels),
            });
        }
        self.frames += 1;
        if self.coded.is_none() {
            self.coded = Some((w, h));
            let sar = rational(f.aspect_ratio());
            self.pixel_aspect = if sar.is_finite() && (0.1..=10.0).contains(&sar) { sar } else { 1.0 };
        }
        if f.is_interlaced() {
            report.interlaced_frames += 1;
        }
        let t = self.frame_time(f, report);
        if let Some(prev) = self.last_frame_t
            && t > prev
            && self.intervals.len() < 10_000
        {
            self.intervals.push(t - prev);
        }
        self.last_frame_t = Some(t);
        self.max_t = self.max_t.max(t);

        let mut cut = None;
        if self.measure && self.last_stats_t.is_none_or(|l| t - l >= self.stats_gap || t < l) {
            self.last_stats_t = Some(t);
            report.stats_frames += 1;
            if let Some(stats) = self.measure_frame(f, t)? {
                if stats.scene_cut {
                    cut = stats.difference;
                }
                if self.keep_stats {
                    self.stats.push(stats);
                }
            }
        }

        if self.wants(t, accept_from) {
            let sample = self.convert(f, t, SampleKind::Uniform, report)?;
            self.samples.push(sample);
            self.thin();
        }
        if let (Some(diff), Some(scenes)) = (cut, self.scenes)
            && scenes.max_frames > 0
        {
            let weakest = self.scene_frames.iter().enumerate().min_by(|a, b| a.1.0.total_cmp(&b.1.0)).map(|(i, s)| (i, s.0));
            if self.scene_frames.len() < scenes.max_frames {
                let frame = self.convert(f, t, SampleKind::SceneCut, report)?;
                self.scene_frames.push((diff, frame));
            } else if let Some((i, weakest)) = weakest
                && diff > weakest
            {
                let frame = self.convert(f, t, SampleKind::SceneCut, report)?;
                self.scene_frames[i] = (diff, frame);
            }
        }
        Ok(())
    }

    /// Output size before rotation for the configured frame size.
    fn scaled_size(&self, w: u32, h: u32) -> (u32, u32) {
        let clamp = |v: f64| (v.round() as u32).clamp(1, 4096);
        let short_scaled = |n: u32| {
            let (dw, dh) = (f64::from(w) * self.pixel_aspect, f64::from(h));
            if dw >= dh { (clamp(f64::from(n) * dw / dh), clamp(f64::from(n))) } else { (clamp(f64::from(n)), clamp(f64::from(n) * dh / dw)) }
        };
        match self.opts_size {
            FrameSize::Square(n) => (n.clamp(1, 4096), n.clamp(1, 4096)),
            FrameSize::CenterCrop(n) | FrameSize::ShortSide(n) => short_scaled(n.clamp(1, 4096)),
        }
    }

    fn convert(&mut self, f: &frame::Video, t: f64, kind: SampleKind, report: &mut DecodeReport) -> Result<SampledFrame, DecodeError> {
        report.frames_converted += 1;
        let (sw, sh) = self.scaled_size(f.width(), f.height());
        let out = scale(&mut self.rgb, f, Pixel::RGB24, sw, sh)?;
        let mut rgb = tight_plane(out, sw as usize * 3).ok_or_else(|| DecodeError::invalid("a converted frame has an unexpected layout"))?;
        let (mut w, mut h) = (sw, sh);
        if let FrameSize::CenterCrop(n) = self.opts_size {
            let n = n.clamp(1, 4096).min(sw).min(sh);
            rgb = pixels::crop_rgb(&rgb, sw as usize, sh as usize, n as usize, n as usize);
            (w, h) = (n, n);
        }
        if self.rotation != 0 {
            let (r, rw, rh) = pixels::rotate_rgb(&rgb, w as usize, h as usize, self.rotation);
            rgb = r;
            (w, h) = (rw as u32, rh as u32);
        }
        let colourfulness = pixels::colourfulness(&rgb);
        Ok(SampledFrame { time_secs: t, kind, width: w, height: h, rgb, colourfulness })
    }

    /// Statistics of one frame; `None` when it is too small to measure.
    fn measure_frame(&mut self, f: &frame::Video, t: f64) -> Result<Option<FrameStats>, DecodeError> {
        let (w, h) = (f.width(), f.height());
        let scale_factor = (f64::from(WORK_SHORT) / f64::from(w.min(h))).min(1.0);
        let (ww, wh) = (((f64::from(w) * scale_factor).round() as u32).max(1), ((f64::from(h) * scale_factor).round() as u32).max(1));
        if ww < 8 || wh < 8 {
            return Ok(None);
        }
        let out = scale(&mut self.gray, f, Pixel::GRAY8, ww, wh)?;
        let Some(data) = tight_plane(out, ww as usize) else { return Ok(None) };
        let work = pixels::Gray { w: ww as usize, h: wh as usize, data };
        let factor = work.w.max(work.h).div_ceil(THUMB_LONG).max(1);
        let thumb = work.box_down(factor);
        let bx = pixels::picture_box(&thumb);
        let work_box = bx.scaled(factor, work.w, work.h);
        let tone = pixels::tone(&work, &work_box);
        let sharpness = pixels::laplacian_variance(&work, &work_box);
        let noise_sigma = pixels::noise_sigma(&work, &work_box);
        let colour = scale(&mut self.thumb_rgb, f, Pixel::RGB24, thumb.w as u32, thumb.h as u32)?;
        let colourfulness = tight_plane(colour, thumb.w * 3).map_or(0.0, |rgb| pixels::colourfulness(&pixels::crop_area_rgb(&rgb, thumb.w, &bx)));
        let (difference, shift) = match &self.prev_thumb {
            Some(prev) => (pixels::mean_abs_diff(prev, &thumb), pixels::global_shift(prev, &thumb)),
            None => (None, None),
        };
        let mut scene_cut = false;
        if let (Some(d), Some(scenes)) = (difference, self.scenes) {
            let recent = if self.recent_diffs.is_empty() { 0.0 } else { self.recent_diffs.iter().sum::<f32>() / self.recent_diffs.len() as f32 };
            if d >= scenes.threshold && d >= 2.5 * recent + 2.0 && self.last_cut_t.is_none_or(|c| t - c >= scenes.min_gap_secs) {
                scene_cut = true;
                self.last_cut_t = Some(t);
                self.cuts.push(SceneCut { time_secs: t, difference: d });
            }
            self.recent_diffs.push_back(d);
            if self.recent_diffs.len() > 5 {
                self.recent_diffs.pop_front();
            }
        }
        let dims = (thumb.w, thumb.h);
        self.prev_thumb = Some(thumb);
        let shift = if scene_cut { None } else { shift };
        let display_shift = shift.map(|[dx, dy]| if self.rotation == 90 || self.rotation == 270 { [dy, dx] } else { [dx, dy] });
        Ok(Some(FrameStats {
            time_secs: t,
            luma_mean: tone.mean,
            luma_std: tone.std,
            black_ratio: tone.black,
            white_ratio: tone.white,
            sharpness,
            noise_sigma,
            colourfulness,
            difference,
            shift: display_shift,
            picture: bx.rotated_fractions(dims, self.rotation),
            scene_cut,
        }))
    }

    fn finish(self, info: &VideoInfo, audio: Option<DecodedAudio>, report: DecodeReport) -> DecodeOutput {
        let (cw, ch) = self.coded.unwrap_or((0, 0));
        let (width, height) = if self.rotation == 90 || self.rotation == 270 { (ch, cw) } else { (cw, ch) };
        let mut intervals = self.intervals;
        intervals.sort_by(f64::total_cmp);
        let median = intervals.get(intervals.len() / 2).copied();
        // Decoded frames depend on what was skipped for the other analyses sharing the decode;
        // packets do not. Frame intervals serve only when the packets carry no times.
        let measured_frame_rate = report.packet_frame_rate().or_else(|| median.filter(|m| *m > 0.0).map(|m| 1.0 / m));
        let frame_end = self.max_t + median.unwrap_or(self.frame_secs);
        let duration_secs = if self.frames > 0 { frame_end.max(info.duration) } else { info.duration };
        let mut samples = self.samples;
        if let Targets::Open { count: Some(k), .. } = self.targets
            && samples.len() > k
        {
            let n = samples.len();
            let picks: Vec<usize> = (0..k).map(|i| ((i as f64 + 0.5) * n as f64 / k as f64) as usize).collect();
            samples = samples.into_iter().enumerate().filter(|(i, _)| picks.contains(i)).map(|(_, s)| s).collect();
        }
        let mut scene_frames: Vec<SampledFrame> = self.scene_frames.into_iter().map(|(_, f)| f).collect();
        scene_frames.sort_by(|a, b| a.time_secs.total_cmp(&b.time_secs));
        DecodeOutput {
            width,
            height,
            rotation: self.rotation,
            pixel_aspect: self.pixel_aspect,
            duration_secs,
            measured_frame_rate,
            samples,
            scene_frames,
            scene_cuts: self.cuts,
            frame_stats: self.stats,
            audio,
            report,
        }
    }
}

/// The audio stream's decoder and its two resamplers.
struct AudioPipe {
    index: Option<usize>,
    dec: codec::decoder::Audio,
    frame: frame::Audio,
    to_mono: Option<Resampler>,
    to_meter: Option<Resampler>,
    meter: Option<LevelMeter>,
    meter_failed: bool,
    samples: Vec<f32>,
    max_samples: usize,
    truncated: bool,
    source_rate: u32,
    source_channels: u16,
}

struct Resampler {
    key: (ffmpeg::format::Sample, u64, u16, u32),
    ctx: resampling::Context,
    dst_rate: u32,
    dst_format: ffmpeg::format::Sample,
    dst_layout: ChannelLayout,
}

impl Resampler {
    fn key(f: &frame::Audio) -> (ffmpeg::format::Sample, u64, u16, u32) {
        (f.format(), f.channel_layout().bits(), f.channels(), f.rate())
    }

    fn new(f: &frame::Audio, dst_format: ffmpeg::format::Sample, dst_layout: ChannelLayout, dst_rate: u32) -> Option<Self> {
        let ctx = resampling::Context::get(f.format(), layout_of(f), f.rate(), dst_format, dst_layout, dst_rate).ok()?;
        Some(Self { key: Self::key(f), ctx, dst_rate, dst_format, dst_layout })
    }

    /// Converts one frame into a fresh output frame (reusing one would keep stale sizes).
    fn run(&mut self, f: &frame::Audio) -> Option<frame::Audio> {
        let capacity = (f.samples() as u64 * u64::from(self.dst_rate) / u64::from(f.rate().max(1))) as usize + 256;
        let mut out = frame::Audio::new(self.dst_format, capacity, self.dst_layout);
        self.ctx.run(f, &mut out).ok()?;
        Some(out)
    }

    /// Drains what the resampler still holds, one fresh frame per call until it yields
    /// nothing.
    fn flush(&mut self, mut each: impl FnMut(&frame::Audio)) {
        for _ in 0..64 {
            let mut out = frame::Audio::new(self.dst_format, 4096, self.dst_layout);
            if self.ctx.flush(&mut out).is_err() || out.samples() == 0 {
                return;
            }
            each(&out);
        }
    }
}

/// The frame's channel layout, or the default one for its channel count when it has none.
fn layout_of(f: &frame::Audio) -> ChannelLayout {
    let layout = f.channel_layout();
    if layout.bits() != 0 && layout.channels() == i32::from(f.channels()) { layout } else { ChannelLayout::default(i32::from(f.channels())) }
}

impl AudioPipe {
    /// The pipe for the audio stream; `None` when there is none or it cannot be decoded (a
    /// broken audio stream leaves the video analyses intact: no audio rather than an error).
    fn new(ictx: &ffmpeg::format::context::Input, index: Option<usize>, opts: &DecodeOptions) -> Option<Self> {
        let stream = ictx.stream(index?)?;
        let ctx = codec::context::Context::from_parameters(stream.parameters()).ok()?;
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(stream.time_base());
        let dec = dec.audio().ok()?;
        let max_samples = (opts.limits.max_audio_secs.max(0.0) * f64::from(ANALYSIS_RATE)) as usize;
        Some(Self {
            index: Some(stream.index()),
            source_rate: dec.rate(),
            source_channels: dec.channels(),
            dec,
            frame: frame::Audio::empty(),
            to_mono: None,
            to_meter: None,
            meter: None,
            meter_failed: false,
            samples: Vec::new(),
            max_samples,
            truncated: false,
        })
    }

    fn send(&mut self, packet: &Packet, report: &mut DecodeReport) {
        if self.dec.send_packet(packet).is_err() {
            report.decode_errors += 1;
        }
        self.drain(report);
    }

    fn drain(&mut self, report: &mut DecodeReport) {
        loop {
            match self.dec.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let mut f = std::mem::replace(&mut self.frame, frame::Audio::empty());
                    // PCM in Matroska or WAV often declares no channel layout; the resamplers
                    // are built with the default one for the channel count and refuse frames
                    // that differ from it.
                    let layout = layout_of(&f);
                    if f.channels() > 0 && f.channel_layout() != layout {
                        f.set_channel_layout(layout);
                    }
                    self.on_frame(&f);
                    self.frame = f;
                }
                Err(ffmpeg::Error::Eof) => return,
                Err(e) if is_again(&e) => return,
                Err(_) => {
                    report.decode_errors += 1;
                    return;
                }
            }
        }
    }

    fn on_frame(&mut self, f: &frame::Audio) {
        if f.samples() == 0 || f.channels() == 0 || f.rate() == 0 || f.rate() > 768_000 || f.planes() == 0 {
            return;
        }
        if self.source_rate == 0 {
            self.source_rate = f.rate();
            self.source_channels = f.channels();
        }
        // The 16 kHz mono track.
        if !self.truncated {
            if self.to_mono.as_ref().is_none_or(|r| r.key != Resampler::key(f)) {
                self.to_mono = Resampler::new(f, ffmpeg::format::Sample::F32(SampleType::Packed), ChannelLayout::MONO, ANALYSIS_RATE);
            }
            if let Some(out) = self.to_mono.as_mut().and_then(|r| r.run(f)) {
                self.push_mono(&out);
            }
        }
        // Levels at the source rate, planar f32; more than six channels are folded to stereo.
        if self.meter_failed {
            return;
        }
        let channels = if f.channels() > 6 { 2 } else { f.channels() };
        if self.meter.as_ref().is_none_or(|m| m.channels() != u32::from(channels) || m.rate() != f.rate()) {
            self.meter = LevelMeter::new(u32::from(channels), f.rate());
            if self.meter.is_none() {
                self.meter_failed = true;
                return;
            }
        }
        let direct = f.format() == ffmpeg::format::Sample::F32(SampleType::Planar) && f.channels() == channels;
        if direct {
            let planes: Vec<&[f32]> = (0..usize::from(channels).min(f.planes())).map(|c| f.plane::<f32>(c)).collect();
            if let Some(m) = self.meter.as_mut() {
                m.push_planar(&planes);
            }
            return;
        }
        let layout = if f.channels() > 6 { ChannelLayout::STEREO } else { layout_of(f) };
        if self.to_meter.as_ref().is_none_or(|r| r.key != Resampler::key(f)) {
            self.to_meter = Resampler::new(f, ffmpeg::format::Sample::F32(SampleType::Planar), layout, f.rate());
        }
        if let Some(out) = self.to_meter.as_mut().and_then(|r| r.run(f)) {
            push_meter(self.meter.as_mut(), &out);
        }
    }

    fn push_mono(&mut self, out: &frame::Audio) {
        if out.samples() == 0 || out.planes() == 0 {
            return;
        }
        let data = out.plane::<f32>(0);
        let room = self.max_samples.saturating_sub(self.samples.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.samples.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn finish_stream(&mut self, report: &mut DecodeReport) {
        if self.dec.send_eof().is_ok() {
            self.drain(report);
        }
        if let Some(mut r) = self.to_mono.take() {
            let mut flushed = Vec::new();
            r.flush(|out| {
                if out.planes() > 0 {
                    flushed.extend_from_slice(out.plane::<f32>(0));
                }
            });
            let room = self.max_samples.saturating_sub(self.samples.len());
            self.samples.extend_from_slice(&flushed[..flushed.len().min(room)]);
        }
        if let Some(mut r) = self.to_meter.take() {
            let mut meter = self.meter.as_mut();
            r.flush(|out| push_meter(meter.as_deref_mut(), out));
        }
    }

    fn finish(self) -> DecodedAudio {
        DecodedAudio {
            duration_secs: self.samples.len() as f64 / f64::from(ANALYSIS_RATE),
            samples: self.samples,
            source_rate: self.source_rate,
            source_channels: self.source_channels,
            levels: self.meter.as_ref().map(LevelMeter::finish),
            truncated: self.truncated,
        }
    }
}

fn push_meter(meter: Option<&mut LevelMeter>, out: &frame::Audio) {
    let Some(m) = meter else { return };
    let channels = m.channels() as usize;
    if out.samples() == 0 || out.planes() < channels {
        return;
    }
    let planes: Vec<&[f32]> = (0..channels).map(|c| out.plane::<f32>(c)).collect();
    m.push_planar(&planes);
}

/// Pixel arithmetic on tight 8-bit buffers.
mod pixels {
    /// A tight 8-bit single-channel image.
    pub struct Gray {
        pub w: usize,
        pub h: usize,
        pub data: Vec<u8>,
    }

    impl Gray {
        /// Box-averages `factor`×`factor` blocks (the remainder at the edges is dropped).
        pub fn box_down(&self, factor: usize) -> Gray {
            let (w, h) = ((self.w / factor).max(1), (self.h / factor).max(1));
            let f = factor.min(self.w).min(self.h).max(1);
            let mut data = vec![0u8; w * h];
            let mut row = vec![0u32; w];
            for ty in 0..h {
                row.iter_mut().for_each(|r| *r = 0);
                for y in ty * f..((ty + 1) * f).min(self.h) {
                    let line = &self.data[y * self.w..(y + 1) * self.w];
                    for (tx, r) in row.iter_mut().enumerate() {
                        let start = tx * f;
                        *r += line[start..(start + f).min(self.w)].iter().map(|&v| u32::from(v)).sum::<u32>();
                    }
                }
                let n = (f * f) as u32;
                for (tx, r) in row.iter().enumerate() {
                    data[ty * w + tx] = ((r + n / 2) / n) as u8;
                }
            }
            Gray { w, h, data }
        }
    }

    /// The picture area inside black bars, in pixel coordinates (end exclusive).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Area {
        pub x0: usize,
        pub y0: usize,
        pub x1: usize,
        pub y1: usize,
    }

    impl Area {
        /// The same area on an image `factor` times larger, clamped to its size.
        pub fn scaled(&self, factor: usize, w: usize, h: usize) -> Area {
            let x1 = if self.x1 * factor >= w.saturating_sub(factor) { w } else { self.x1 * factor };
            let y1 = if self.y1 * factor >= h.saturating_sub(factor) { h } else { self.y1 * factor };
            Area { x0: (self.x0 * factor).min(x1), y0: (self.y0 * factor).min(y1), x1, y1 }
        }

        /// Left, top, right, bottom as fractions of `dims`, after a clockwise rotation.
        pub fn rotated_fractions(&self, dims: (usize, usize), rotation: i32) -> [f32; 4] {
            let (w, h) = (dims.0.max(1) as f32, dims.1.max(1) as f32);
            let (l, t, r, b) = (self.x0 as f32 / w, self.y0 as f32 / h, self.x1 as f32 / w, self.y1 as f32 / h);
            match rotation {
                90 => [1.0 - b, l, 1.0 - t, r],
                180 => [1.0 - r, 1.0 - b, 1.0 - l, 1.0 - t],
                270 => [t, 1.0 - r, b, 1.0 - l],
                _ => [l, t, r, b],
            }
        }
    }

    /// A row or column belongs to a bar when it is dark and flat.
    fn is_bar(values: impl Iterator<Item = u8>) -> bool {
        let (mut n, mut sum, mut lo, mut hi) = (0u32, 0u32, u8::MAX, 0u8);
        for v in values {
            n += 1;
            sum += u32::from(v);
            lo = lo.min(v);
            hi = hi.max(v);
        }
        n > 0 && sum <= 20 * n && hi.saturating_sub(lo) <= 24
    }

    /// Finds black bars (letterbox, pillarbox) on a thumbnail. An all-black frame has no bars.
    pub fn picture_box(t: &Gray) -> Area {
        let row = |y: usize| t.data[y * t.w..(y + 1) * t.w].iter().copied();
        let col = |x: usize| (0..t.h).map(move |y| t.data[y * t.w + x]);
        let mut y0 = 0;
        while y0 < t.h && is_bar(row(y0)) {
            y0 += 1;
        }
        if y0 == t.h {
            return Area { x0: 0, y0: 0, x1: t.w, y1: t.h };
        }
        let mut y1 = t.h;
        while y1 > y0 + 1 && is_bar(row(y1 - 1)) {
            y1 -= 1;
        }
        let mut x0 = 0;
        while x0 < t.w && is_bar(col(x0)) {
            x0 += 1;
        }
        let mut x1 = t.w;
        while x1 > x0 + 1 && is_bar(col(x1 - 1)) {
            x1 -= 1;
        }
        if x0 >= x1 {
            return Area { x0: 0, y0, x1: t.w, y1 };
        }
        Area { x0, y0, x1, y1 }
    }

    pub struct Tone {
        pub mean: f32,
        pub std: f32,
        pub black: f32,
        pub white: f32,
    }

    /// Mean, spread and clipped shares of the area, from every other pixel of every other row
    /// (a quarter of the work, statistically the same).
    pub fn tone(img: &Gray, a: &Area) -> Tone {
        let mut hist = [0u64; 256];
        for y in (a.y0..a.y1).step_by(2) {
            for &v in img.data[y * img.w + a.x0..y * img.w + a.x1].iter().step_by(2) {
                hist[usize::from(v)] += 1;
            }
        }
        let n: u64 = hist.iter().sum();
        if n == 0 {
            return Tone { mean: 0.0, std: 0.0, black: 0.0, white: 0.0 };
        }
        let nf = n as f64;
        let mean = hist.iter().enumerate().map(|(v, c)| v as f64 * *c as f64).sum::<f64>() / nf;
        let var = hist.iter().enumerate().map(|(v, c)| (v as f64 - mean).powi(2) * *c as f64).sum::<f64>() / nf;
        let black = hist[..=16].iter().sum::<u64>() as f64 / nf;
        let white = hist[245..].iter().sum::<u64>() as f64 / nf;
        Tone { mean: mean as f32, std: var.sqrt() as f32, black: black as f32, white: white as f32 }
    }

    /// Variance of the 4-neighbour Laplacian over the area's interior, on every other row.
    pub fn laplacian_variance(img: &Gray, a: &Area) -> f32 {
        if a.x1 < a.x0 + 3 || a.y1 < a.y0 + 3 {
            return 0.0;
        }
        let (mut sum, mut sq, mut n) = (0i64, 0i64, 0i64);
        for y in (a.y0 + 1..a.y1 - 1).step_by(2) {
            let up = &img.data[(y - 1) * img.w + a.x0..(y - 1) * img.w + a.x1];
            let mid = &img.data[y * img.w + a.x0..y * img.w + a.x1];
            let down = &img.data[(y + 1) * img.w + a.x0..(y + 1) * img.w + a.x1];
            let (mut rs, mut rq) = (0i64, 0i64);
            for x in 1..mid.len() - 1 {
                let l = i32::from(up[x]) + i32::from(down[x]) + i32::from(mid[x - 1]) + i32::from(mid[x + 1]) - 4 * i32::from(mid[x]);
                rs += i64::from(l);
                rq += i64::from(l * l);
            }
            sum += rs;
            sq += rq;
            n += mid.len() as i64 - 2;
        }
        let mean = sum as f64 / n as f64;
        (sq as f64 / n as f64 - mean * mean).max(0.0) as f32
    }

    /// Immerkær's noise estimate (σ = √(π/2) · mean|I ∗ N| / 6 with N the 3×3 mask
    /// [1 −2 1; −2 4 −2; 1 −2 1]) over the flattest fifth of 8×8 blocks, leaving out blocks
    /// near black or white where clipping hides noise. The mask is only applied to the blocks
    /// kept, so the cost is one pass of block sums.
    pub fn noise_sigma(img: &Gray, a: &Area) -> f32 {
        const B: usize = 8;
        // (variance × 64², x, y) of each block whose mean is not clipped.
        let mut blocks: Vec<(u64, usize, usize)> = Vec::new();
        let mut by = a.y0 + 1;
        while by + B < a.y1 {
            let mut bx = a.x0 + 1;
            while bx + B < a.x1 {
                let (mut s, mut ss) = (0u64, 0u64);
                for y in by..by + B {
                    for &v in &img.data[y * img.w + bx..y * img.w + bx + B] {
                        let v = u64::from(v);
                        s += v;
                        ss += v * v;
                    }
                }
                let n = (B * B) as u64;
                if (12 * n..=243 * n).contains(&s) {
                    blocks.push((ss * n - s * s, bx, by));
                }
                bx += B;
            }
            by += B;
        }
        if blocks.is_empty() {
            return 0.0;
        }
        let keep = (blocks.len() / 5).max(1);
        blocks.select_nth_unstable_by_key(keep - 1, |b| b.0);
        let mut total = 0i64;
        for &(_, bx, by) in &blocks[..keep] {
            for y in by..by + B {
                let (up, mid, down) = (&img.data[(y - 1) * img.w..], &img.data[y * img.w..], &img.data[(y + 1) * img.w..]);
                for x in bx..bx + B {
                    let p = |row: &[u8], i: usize| i32::from(row[i]);
                    let m = p(up, x - 1) + p(up, x + 1) + p(down, x - 1) + p(down, x + 1) - 2 * (p(up, x) + p(down, x) + p(mid, x - 1) + p(mid, x + 1))
                        + 4 * p(mid, x);
                    total += i64::from(m.abs());
                }
            }
        }
        let mean_mask = total as f64 / (keep * B * B) as f64;
        ((std::f64::consts::PI / 2.0).sqrt() * mean_mask / 6.0) as f32
    }

    /// Mean absolute difference of two same-sized images.
    pub fn mean_abs_diff(a: &Gray, b: &Gray) -> Option<f32> {
        if a.w != b.w || a.h != b.h || a.data.is_empty() {
            return None;
        }
        let s: u64 = a.data.iter().zip(&b.data).map(|(x, y)| u64::from(x.abs_diff(*y))).sum();
        Some(s as f32 / a.data.len() as f32)
    }

    /// Best shift of `b` against `a` by projection profiles, as fractions of width and height;
    /// `None` when the images differ in size or have too little texture to tell.
    pub fn global_shift(a: &Gray, b: &Gray) -> Option<[f32; 2]> {
        if a.w != b.w || a.h != b.h || a.w < 8 || a.h < 8 {
            return None;
        }
        let cols = |g: &Gray| (0..g.w).map(|x| (0..g.h).map(|y| f64::from(g.data[y * g.w + x])).sum::<f64>() / g.h as f64).collect::<Vec<_>>();
        let rows = |g: &Gray| (0..g.h).map(|y| g.data[y * g.w..(y + 1) * g.w].iter().map(|&v| f64::from(v)).sum::<f64>() / g.w as f64).collect::<Vec<_>>();
        let dx = best_offset(&cols(a), &cols(b))?;
        let dy = best_offset(&rows(a), &rows(b))?;
        Some([dx as f32 / a.w as f32, dy as f32 / a.h as f32])
    }

    /// The offset `s` minimising mean |a[i] − b[i + s]| (profiles normalised to their means).
    fn best_offset(a: &[f64], b: &[f64]) -> Option<isize> {
        let n = a.len();
        let spread = |p: &[f64]| {
            let m = p.iter().sum::<f64>() / p.len() as f64;
            (p.iter().map(|v| (v - m).powi(2)).sum::<f64>() / p.len() as f64).sqrt()
        };
        if spread(a) < 1.0 || spread(b) < 1.0 {
            return None;
        }
        let (ma, mb) = (a.iter().sum::<f64>() / n as f64, b.iter().sum::<f64>() / n as f64);
        let max = (n / 6).max(2) as isize;
        let mut best = (f64::INFINITY, 0isize);
        for s in -max..=max {
            let (mut sum, mut count) = (0.0, 0usize);
            for (i, av) in a.iter().enumerate() {
                let j = i as isize + s;
                if j < 0 || j >= n as isize {
                    continue;
                }
                sum += ((av - ma) - (b[j as usize] - mb)).abs();
                count += 1;
            }
            if count >= n / 2 {
                let cost = sum / count as f64;
                if cost < best.0 - 1e-9 || (cost - best.0).abs() <= 1e-9 && s.abs() < best.1.abs() {
                    best = (cost, s);
                }
            }
        }
        best.0.is_finite().then_some(best.1)
    }

    /// Hasler and Süsstrunk's colourfulness metric M = σ_rgyb + 0.3 μ_rgyb on RGB24.
    pub fn colourfulness(rgb: &[u8]) -> f32 {
        let n = rgb.len() / 3;
        if n == 0 {
            return 0.0;
        }
        let (mut s_rg, mut s_yb, mut q_rg, mut q_yb) = (0f64, 0f64, 0f64, 0f64);
        for p in rgb.chunks_exact(3) {
            let (r, g, b) = (f64::from(p[0]), f64::from(p[1]), f64::from(p[2]));
            let rg = r - g;
            let yb = 0.5 * (r + g) - b;
            s_rg += rg;
            s_yb += yb;
            q_rg += rg * rg;
            q_yb += yb * yb;
        }
        let nf = n as f64;
        let (m_rg, m_yb) = (s_rg / nf, s_yb / nf);
        let (v_rg, v_yb) = ((q_rg / nf - m_rg * m_rg).max(0.0), (q_yb / nf - m_yb * m_yb).max(0.0));
        ((v_rg + v_yb).sqrt() + 0.3 * (m_rg * m_rg + m_yb * m_yb).sqrt()) as f32
    }

    /// The part of an RGB24 image `w` pixels wide inside `a`.
    pub fn crop_area_rgb(rgb: &[u8], w: usize, a: &Area) -> Vec<u8> {
        let mut out = Vec::with_capacity((a.x1 - a.x0) * (a.y1 - a.y0) * 3);
        for y in a.y0..a.y1 {
            out.extend_from_slice(&rgb[(y * w + a.x0) * 3..(y * w + a.x1) * 3]);
        }
        out
    }

    /// The central `cw`×`ch` part of an RGB24 image.
    pub fn crop_rgb(rgb: &[u8], w: usize, h: usize, cw: usize, ch: usize) -> Vec<u8> {
        let (cw, ch) = (cw.min(w), ch.min(h));
        let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
        let mut out = Vec::with_capacity(cw * ch * 3);
        for y in y0..y0 + ch {
            out.extend_from_slice(&rgb[(y * w + x0) * 3..(y * w + x0 + cw) * 3]);
        }
        out
    }

    /// Rotates an RGB24 image clockwise by 90, 180 or 270 degrees; returns it and its size.
    pub fn rotate_rgb(rgb: &[u8], w: usize, h: usize, rotation: i32) -> (Vec<u8>, usize, usize) {
        let mut out = vec![0u8; rgb.len()];
        let (ow, oh) = match rotation {
            90 | 270 => (h, w),
            180 => (w, h),
            _ => return (rgb.to_vec(), w, h),
        };
        for y in 0..h {
            for x in 0..w {
                let (ox, oy) = match rotation {
                    90 => (h - 1 - y, x),
                    180 => (w - 1 - x, h - 1 - y),
                    _ => (y, w - 1 - x),
                };
                let (s, d) = ((y * w + x) * 3, (oy * ow + ox) * 3);
                out[d..d + 3].copy_from_slice(&rgb[s..s + 3]);
            }
        }
        (out, ow, oh)
    }
}

/// Generated clips for the media tests.
#[cfg(test)]
pub(crate) mod clips {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use crate::probe::{self, Probe};
    use crate::MediaSettings;

    /// Runs the ffmpeg CLI quietly, overwriting its output.
    pub fn ffmpeg(args: &[&str]) {
        let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().expect("ffmpeg runs");
        assert!(out.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Writes `name` in `dir` from lavfi inputs: `video` and optional `audio` source graphs,
    /// an optional video filter chain and extra output arguments (H.264 ultrafast and AAC by
    /// default).
    pub fn make(dir: &Path, name: &str, video: &str, audio: Option<&str>, vf: Option<&str>, extra: &[&str]) -> PathBuf {
        let path = dir.join(name);
        let mut args: Vec<&str> = vec!["-f", "lavfi", "-i", video];
        if let Some(a) = audio {
            args.extend(["-f", "lavfi", "-i", a]);
        }
        if let Some(vf) = vf {
            args.extend(["-vf", vf]);
        }
        args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
        if audio.is_some() {
            args.extend(["-c:a", "aac", "-b:a", "128k"]);
        }
        args.extend(extra);
        args.extend(["-shortest"]);
        let p = path.to_str().expect("utf-8 path");
        args.push(p);
        ffmpeg(&args);
        path
    }

    /// Probes with default limits.
    pub fn probe(path: &Path) -> Probe {
        probe::probe(path, &MediaSettings::default()).expect("probe")
    }

    /// A fresh temporary directory.
    pub fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("tempdir")
    }

    pub fn never() -> bool {
        false
    }

    /// Path as `&str` for command lines.
    pub fn s(p: &Path) -> &str {
        p.to_str().expect("utf-8 path")
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::clips::{self, dir, make, never};
    use super::*;

    fn frames_only(sampling: Sampling, size: FrameSize) -> DecodeOptions {
        DecodeOptions::sampling_only(sampling, size)
    }

    #[test]
    fn default_decode_gives_samples_stats_and_audio() {
        let d = dir();
        let clip = make(d.path(), "a.mp4", "testsrc2=s=320x240:r=25:d=3", Some("sine=f=440:sample_rate=48000:d=3"), None, &["-ac", "2"]);
        let probe = clips::probe(&clip);
        let opts = DecodeOptions { sampling: Sampling::Count(4), frame_size: FrameSize::Square(64), ..DecodeOptions::default() };
        let out = decode(&clip, &probe, &opts, &never).expect("decodes");

        assert_eq!(out.samples.len(), 4);
        let times: Vec<f64> = out.samples.iter().map(|s| s.time_secs).collect();
        for (t, want) in times.iter().zip([0.375, 1.125, 1.875, 2.625]) {
            assert!((t - want).abs() <= 0.05, "{times:?}");
        }
        assert!(out.samples.iter().all(|s| s.width == 64 && s.height == 64 && s.rgb.len() == 64 * 64 * 3));
        assert!(out.samples[0].colourfulness > 20.0, "testsrc2 is colourful");
        assert_eq!((out.width, out.height), (320, 240));
        assert_eq!(out.report.strategy, Strategy::Sequential);
        // 25 fps measured at up to 15 fps: every other frame.
        assert!((35..=40).contains(&out.frame_stats.len()), "{}", out.frame_stats.len());
        assert!(out.frame_stats.windows(2).all(|w| w[1].time_secs > w[0].time_secs));
        assert!(out.measured_frame_rate.is_some_and(|f| (f - 25.0).abs() < 0.5));
        assert!((out.duration_secs - 3.0).abs() < 0.1, "{}", out.duration_secs);

        let audio = out.audio.expect("audio");
        let expected = 3.0 * f64::from(ANALYSIS_RATE);
        assert!((audio.samples.len() as f64 - expected).abs() / expected < 0.02, "{} samples", audio.samples.len());
        assert_eq!((audio.source_rate, audio.source_channels), (48_000, 2));
        let levels = audio.levels.expect("levels");
        // ffmpeg's sine is at 1/8 of full scale (−18 dBFS peak); `-ac 2` spreads it over two
        // channels 3 dB lower each: −18 − 0.691 − 3 ≈ −21.75 LUFS.
        let lufs = levels.integrated_lufs.expect("loudness");
        assert!((lufs - -21.75).abs() < 0.5, "{lufs}");
        assert_eq!(levels.clipped_samples, 0);
        // The mono downmix sums the two channels back to about the source level.
        let peak = audio.samples.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!((0.08..0.2).contains(&peak), "{peak}");
    }

    #[test]
    fn audio_length_matches_duration_for_other_rates() {
        let d = dir();
        let clip = make(d.path(), "mono.mp4", "testsrc2=s=160x120:r=10:d=2", Some("sine=f=300:sample_rate=44100:d=2"), None, &["-ac", "1"]);
        let probe = clips::probe(&clip);
        let opts = DecodeOptions { frame_stats: false, scenes: None, ..DecodeOptions::default() };
        let out = decode(&clip, &probe, &opts, &never).expect("decodes");
        let audio = out.audio.expect("audio");
        let expected = 2.0 * f64::from(ANALYSIS_RATE);
        assert!((audio.samples.len() as f64 - expected).abs() / expected < 0.03, "{}", audio.samples.len());
        assert_eq!(audio.source_channels, 1);
    }

    #[test]
    fn pcm_without_a_channel_layout_still_gives_audio() {
        let d = dir();
        let wav = d.path().join("tone.wav");
        clips::ffmpeg(&["-f", "lavfi", "-i", "sine=f=300:sample_rate=22050:d=2", "-c:a", "pcm_s16le", clips::s(&wav)]);
        let clip = d.path().join("pcm.mkv");
        // Copied into Matroska, the PCM stream declares no channel layout.
        clips::ffmpeg(&["-f", "lavfi", "-i", "testsrc2=s=160x120:r=10:d=2", "-i", clips::s(&wav), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", clips::s(&clip)]);
        let probe = clips::probe(&clip);
        let opts = DecodeOptions { frame_stats: false, scenes: None, ..DecodeOptions::default() };

        let out = decode(&clip, &probe, &opts, &never).expect("decodes");

        let audio = out.audio.expect("audio");
        let expected = 2.0 * f64::from(ANALYSIS_RATE);
        assert!((audio.samples.len() as f64 - expected).abs() / expected < 0.03, "{}", audio.samples.len());
        assert!(audio.levels.is_some(), "levels measured too");
    }

    #[test]
    fn luma_is_full_range_and_bars_are_found() {
        let d = dir();
        let clip = make(d.path(), "box.mp4", "color=c=black:s=160x288:r=10:d=1", None, Some("drawbox=x=0:y=54:w=160:h=180:color=white:t=fill"), &[]);
        let probe = clips::probe(&clip);
        let opts = DecodeOptions { sampling: Sampling::Off, ..DecodeOptions::default() };
        let out = decode(&clip, &probe, &opts, &never).expect("decodes");
        let f = out.frame_stats.first().expect("stats");
        // Limited-range white (235) is expanded to 255, black (16) to 0: the picture area is
        // the white box, and it is all blown highlights.
        assert!(f.luma_mean > 245.0, "{f:?}");
        assert!(f.white_ratio > 0.9, "{f:?}");
        let [l, t, r, b] = f.picture;
        assert!(l < 0.02 && r > 0.98 && (t - 0.1875).abs() < 0.04 && (b - 0.8125).abs() < 0.04, "{:?}", f.picture);
    }

    #[test]
    fn rotated_video_is_sampled_upright() {
        let d = dir();
        // White band at the top of the coded picture, then rotated 90° clockwise for display.
        let plain = make(d.path(), "plain.mp4", "color=c=black:s=320x180:r=10:d=1", None, Some("drawbox=x=0:y=0:w=320:h=60:color=white:t=fill"), &[]);
        let rotated = d.path().join("rotated.mp4");
        clips::ffmpeg(&["-i", clips::s(&plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", clips::s(&rotated)]);
        let probe = clips::probe(&rotated);
        // The ffmpeg 5.1 CLI turns `rotate=90` into a matrix that ffprobe reports as
        // "rotation=90", i.e. 90° counter-clockwise: players show the top on the left.
        assert_eq!((probe.video.display_width, probe.video.display_height), (180, 320));

        let out = decode(&rotated, &probe, &frames_only(Sampling::Count(1), FrameSize::ShortSide(90)), &never).expect("decodes");
        assert_eq!((out.width, out.height), (180, 320));
        let frame = out.samples.first().expect("a sample");
        assert_eq!((frame.width, frame.height), (90, 160), "portrait after rotation");

        // The ffmpeg CLI rotates on decode too: the two pictures must agree.
        let cli = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i", clips::s(&rotated), "-frames:v", "1", "-vf", "scale=90:160", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .expect("ffmpeg runs");
        assert_eq!(cli.stdout.len(), frame.rgb.len());
        let mad = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.len() as f64;
        assert!(mad(&frame.rgb, &cli.stdout) < 12.0, "differs from the CLI: {}", mad(&frame.rgb, &cli.stdout));
        // The white band is on the left: the top turned counter-clockwise.
        assert_eq!(out.rotation, 270);
        let column_mean = |x: usize| (0..160).map(|y| f64::from(frame.rgb[(y * 90 + x) * 3])).sum::<f64>() / 160.0;
        assert!(column_mean(5) > 200.0 && column_mean(85) < 50.0);
    }

    #[test]
    fn measured_frame_rate_is_the_real_one_whatever_else_the_decode_serves() {
        let d = dir();
        // Quality alone, and quality sharing the decode with the frame models (OCR's one frame
        // a second at a larger size), which lets the codec skip frames between samples.
        let alone = DecodeOptions::default();
        let shared = DecodeOptions {
            sampling: Sampling::EverySecs(1.0),
            frame_size: FrameSize::ShortSide(540),
            limits: DecodeLimits { max_samples: 120, ..DecodeLimits::default() },
            ..DecodeOptions::default()
        };
        for fps in [24, 30, 60] {
            // B-frames and sparse keyframes, as phones and editors export.
            let clip = make(d.path(), &format!("f{fps}.mp4"), &format!("testsrc2=s=320x240:r={fps}:d=4"), None, None, &["-x264-params", "bframes=2:keyint=250"]);
            let probe = clips::probe(&clip);
            let a = decode(&clip, &probe, &alone, &never).expect("decodes").measured_frame_rate.expect("measured");
            let b = decode(&clip, &probe, &shared, &never).expect("decodes").measured_frame_rate.expect("measured");
            assert!((a - f64::from(fps)).abs() < 0.1, "{fps} fps measured {a} alone");
            assert_eq!(a, b, "{fps} fps: {a} alone, {b} with frame sampling");
        }
        // Variable frame rate: 30 fps for three seconds, then 10 fps for one. The measure is the
        // prevailing rate, the same either way.
        let vfr = make(d.path(), "vfr.mp4", "testsrc2=s=160x120:r=30:d=4", None, Some("select='lt(n\\,90)+not(mod(n\\,3))'"), &["-vsync", "vfr"]);
        let probe = clips::probe(&vfr);
        let a = decode(&vfr, &probe, &alone, &never).expect("decodes").measured_frame_rate.expect("measured");
        let b = decode(&vfr, &probe, &shared, &never).expect("decodes").measured_frame_rate.expect("measured");
        assert!((a - 30.0).abs() < 0.1, "vfr measured {a}");
        assert_eq!(a, b);
    }

    #[test]
    fn odd_sizes_and_variable_frame_rate_decode() {
        let d = dir();
        let odd = make(d.path(), "odd.mkv", "testsrc2=s=320x240:r=25:d=2", None, Some("scale=321:241"), &["-pix_fmt", "yuv444p"]);
        let probe = clips::probe(&odd);
        let out = decode(&odd, &probe, &DecodeOptions { sampling: Sampling::Count(3), frame_size: FrameSize::CenterCrop(32), ..DecodeOptions::default() }, &never)
            .expect("odd size decodes");
        assert_eq!((out.width, out.height), (321, 241));
        assert!(out.samples.iter().all(|s| (s.width, s.height) == (32, 32)));
        assert_eq!(out.samples.len(), 3);

        // 30 fps for a second, then every third frame: 10 fps.
        let vfr = make(d.path(), "vfr.mp4", "testsrc2=s=160x120:r=30:d=3", None, Some("select='lt(n\\,30)+not(mod(n\\,3))'"), &["-vsync", "vfr"]);
        let probe = clips::probe(&vfr);
        let out = decode(&vfr, &probe, &DecodeOptions { sampling: Sampling::EverySecs(0.5), ..DecodeOptions::default() }, &never).expect("vfr decodes");
        let times: Vec<f64> = out.samples.iter().map(|s| s.time_secs).collect();
        assert!(times.len() >= 5, "{times:?}");
        assert!(times.windows(2).all(|w| w[1] > w[0]));
        assert!(times.iter().zip((0..).map(|i| f64::from(i) * 0.5)).all(|(t, want)| (t - want).abs() < 0.1), "{times:?}");
        let early = out.frame_stats.iter().filter(|f| f.time_secs < 1.0).count();
        let late = out.frame_stats.iter().filter(|f| (1.0..2.0).contains(&f.time_secs)).count();
        assert!(early > late, "denser statistics while the frame rate is higher: {early} vs {late}");
    }

    #[test]
    fn ten_bit_interlaced_gif_and_vp9_decode() {
        let d = dir();
        let src = "testsrc2=s=160x120:r=10:d=1";
        let ten = make(d.path(), "ten.mkv", src, None, None, &["-pix_fmt", "yuv420p10le"]);
        let interlaced = make(d.path(), "interlaced.mp4", src, None, None, &["-flags", "+ilme+ildct", "-x264opts", "tff=1"]);
        let gif = d.path().join("animation.mp4");
        clips::ffmpeg(&["-f", "lavfi", "-i", src, "-f", "gif", clips::s(&gif)]);
        let vp9 = d.path().join("vp9.webm");
        clips::ffmpeg(&["-f", "lavfi", "-i", src, "-f", "lavfi", "-i", "sine=d=1", "-c:v", "libvpx-vp9", "-deadline", "realtime", "-c:a", "libopus", clips::s(&vp9)]);
        for path in [&ten, &interlaced, &gif, &vp9] {
            let out = decode(path, &clips::probe(path), &DecodeOptions::default(), &never).expect("decodes");
            assert_eq!(out.report.frames_decoded, 10, "{}", path.display());
            assert!(!out.samples.is_empty() && !out.frame_stats.is_empty());
            assert!(out.frame_stats.iter().all(|f| (90.0..170.0).contains(&f.luma_mean)), "{}: {:?}", path.display(), out.frame_stats[0]);
            if path == &interlaced {
                assert_eq!(out.report.interlaced_frames, 10);
            }
            if path == &vp9 {
                assert!(out.audio.is_some_and(|a| a.samples.len() > 15_000));
            }
        }
    }

    #[test]
    fn dense_keyframes_are_sought_sparse_ones_decoded_through() {
        let d = dir();
        let dense = make(d.path(), "g5.mp4", "testsrc2=s=160x120:r=25:d=3", None, None, &["-g", "5"]);
        let sparse = make(d.path(), "g250.mp4", "testsrc2=s=160x120:r=25:d=3", None, None, &["-g", "250"]);
        let opts = frames_only(Sampling::EverySecs(1.0), FrameSize::Square(32));
        let sought = decode(&dense, &clips::probe(&dense), &opts, &never).expect("seek decode");
        assert_eq!(sought.report.strategy, Strategy::Seek);
        assert!(sought.report.seeks >= 1);
        assert!(sought.report.frames_decoded < 40, "{}", sought.report.frames_decoded);
        let through = decode(&sparse, &clips::probe(&sparse), &opts, &never).expect("sequential decode");
        assert_eq!(through.report.strategy, Strategy::Sequential);

        let forced = DecodeOptions { strategy: Strategy::Sequential, ..opts.clone() };
        let reference = decode(&dense, &clips::probe(&dense), &forced, &never).expect("sequential decode");
        let t = |o: &DecodeOutput| o.samples.iter().map(|s| s.time_secs).collect::<Vec<_>>();
        assert_eq!(t(&sought).len(), 3);
        assert_eq!(t(&reference).len(), 3);
        for (a, b) in t(&sought).iter().zip(t(&reference)) {
            assert!((a - b).abs() <= 0.5, "{:?} vs {:?}", t(&sought), t(&reference));
        }
    }

    #[test]
    fn scene_cuts_are_found() {
        let d = dir();
        let path = d.path().join("cut.mp4");
        clips::ffmpeg(&[
            "-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=1.5",
            "-f", "lavfi", "-i", "smptebars=s=160x120:r=25:d=1.5",
            "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", clips::s(&path),
        ]);
        let out = decode(&path, &clips::probe(&path), &DecodeOptions::default(), &never).expect("decodes");
        assert_eq!(out.scene_cuts.len(), 1, "{:?}", out.scene_cuts);
        assert!((out.scene_cuts[0].time_secs - 1.5).abs() < 0.1);
        assert_eq!(out.scene_frames.len(), 1);
        assert_eq!(out.scene_frames[0].kind, SampleKind::SceneCut);
    }

    #[test]
    fn a_cancelled_decode_stops_at_once() {
        let d = dir();
        let clip = make(d.path(), "long.mp4", "testsrc2=s=160x120:r=25:d=3", None, None, &[]);
        let probe = clips::probe(&clip);
        let calls = AtomicUsize::new(0);
        let stop_after_five = || calls.fetch_add(1, Ordering::SeqCst) >= 5;
        let err = decode(&clip, &probe, &DecodeOptions::default(), &stop_after_five).expect_err("stopped");
        assert!(matches!(err, DecodeError::Stopped), "{err}");
        assert_eq!(err.code(), None);
        assert_eq!(calls.load(Ordering::SeqCst), 6, "no work after the first positive check");

        let limits = DecodeLimits { max_wall: Duration::ZERO, ..DecodeLimits::default() };
        let err = decode(&clip, &probe, &DecodeOptions { limits, ..DecodeOptions::default() }, &never).expect_err("timed out");
        assert_eq!(err.code(), Some(JobErrorCode::Timeout));
    }

    #[test]
    fn truncated_files_end_cleanly() {
        let d = dir();
        let clip = make(d.path(), "whole.mkv", "testsrc2=s=160x120:r=25:d=2", Some("sine=d=2"), None, &[]);
        let probe = clips::probe(&clip);
        let bytes = std::fs::read(&clip).expect("read");
        for percent in [30, 60, 90] {
            let cut = d.path().join(format!("cut{percent}.mkv"));
            std::fs::write(&cut, &bytes[..bytes.len() * percent / 100]).expect("write");
            match decode(&cut, &probe, &DecodeOptions::default(), &never) {
                Ok(out) => assert!(out.report.frames_decoded > 0),
                Err(e) => assert_eq!(e.code(), Some(JobErrorCode::InvalidMedia), "{e}"),
            }
        }
        std::fs::write(d.path().join("gone.mkv"), b"").expect("write");
        std::fs::remove_file(d.path().join("gone.mkv")).expect("remove");
        let err = decode(&d.path().join("gone.mkv"), &probe, &DecodeOptions::default(), &never).expect_err("missing file");
        assert!(err.is_retryable());
    }

    #[test]
    fn pixel_helpers() {
        // 2×1 image: red, blue; rotated clockwise it is 1×2 with red on top.
        let rgb = [255, 0, 0, 0, 0, 255];
        let (r, w, h) = pixels::rotate_rgb(&rgb, 2, 1, 90);
        assert_eq!((w, h, r), (1, 2, vec![255, 0, 0, 0, 0, 255]));
        let (r, w, h) = pixels::rotate_rgb(&rgb, 2, 1, 270);
        assert_eq!((w, h, r), (1, 2, vec![0, 0, 255, 255, 0, 0]));
        let (r, _, _) = pixels::rotate_rgb(&rgb, 2, 1, 180);
        assert_eq!(r, vec![0, 0, 255, 255, 0, 0]);
        assert_eq!(pixels::colourfulness(&[128; 300]), 0.0);
        assert!(pixels::colourfulness(&rgb) > 100.0);

        let matrix = |v: [i32; 9]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let one = 1 << 16;
        // av_display_rotation_set(m, 90), what a portrait phone recording carries.
        assert_eq!(clockwise_rotation(&matrix([0, one, 0, -one, 0, 0, 0, 0, 1 << 30])), Some(90));
        assert_eq!(clockwise_rotation(&matrix([0, -one, 0, one, 0, 0, 0, 0, 1 << 30])), Some(270));
        assert_eq!(clockwise_rotation(&matrix([-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30])), Some(180));
        assert_eq!(clockwise_rotation(&matrix([one, 0, 0, 0, one, 0, 0, 0, 1 << 30])), Some(0));
        assert_eq!(clockwise_rotation(&[0; 12]), None);
        assert_eq!(clockwise_rotation(&matrix([0; 9])), None);

        let flat = pixels::Gray { w: 64, h: 64, data: vec![100; 64 * 64] };
        let all = pixels::Area { x0: 0, y0: 0, x1: 64, y1: 64 };
        assert_eq!(pixels::laplacian_variance(&flat, &all), 0.0);
        assert_eq!(pixels::noise_sigma(&flat, &all), 0.0);
        // Shifting a textured image right by 3 pixels is found as +3/64 of the width.
        let tex = |dx: usize| pixels::Gray { w: 64, h: 64, data: (0..64 * 64).map(|i| ((((i % 64) + 64 - dx) % 64 * 37 + (i / 64) * 11) % 251) as u8).collect() };
        let shift = pixels::global_shift(&tex(0), &tex(3)).expect("textured");
        assert!((shift[0] - 3.0 / 64.0).abs() < 1e-6 && shift[1].abs() < 1e-6, "{shift:?}");
    }
}
