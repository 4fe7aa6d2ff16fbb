//! What a decode gives: sampled frames, scene cuts, per-frame statistics, audio and the
//! report of how it went.

use ffmpeg_next::Packet;
use serde::Serialize;

use super::Strategy;
use super::stream::VideoInfo;
use crate::audio::AudioLevels;

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
    /// Mono samples at [`ANALYSIS_RATE`](crate::audio::ANALYSIS_RATE).
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
    /// Presentation times of the video packets read, seconds (the first 20,000).
    /// Every packet is read whichever frames are decoded, so the frame rate measured from them
    /// does not depend on what else the decode serves.
    #[serde(skip)]
    pub packet_times: Vec<f64>,
}

/// Packet times kept for the frame-rate measurement: minutes of 60 fps video.
const MAX_PACKET_TIMES: usize = 20_000;

impl DecodeReport {
    /// Counts a video packet and keeps its presentation time.
    pub(super) fn note_video_packet(&mut self, packet: &Packet, info: &VideoInfo) {
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
    pub(super) fn packet_frame_rate(&self) -> Option<f64> {
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
