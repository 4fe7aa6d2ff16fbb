//! The streams as the decoder sees them: time base, start, rotation, keyframe spacing, and
//! reading packets.

use std::collections::VecDeque;

use ffmpeg::codec::threading;
use ffmpeg::{Packet, Rational, codec};
use ffmpeg_next as ffmpeg;

use reelq_core::domain::JobErrorCode;

use super::{Clock, DecodeError, DecodeReport};
use crate::probe::Probe;

/// What the decoder needs to know about the streams.
pub(super) struct VideoInfo {
    pub index: usize,
    pub audio_index: Option<usize>,
    pub time_base: f64,
    pub start_ts: Option<i64>,
    /// Seconds; 0 when unknown.
    pub duration: f64,
    pub frame_secs: f64,
    pub rotation: i32,
}

impl VideoInfo {
    pub fn new(ictx: &ffmpeg::format::context::Input, probe: &Probe) -> Result<Self, DecodeError> {
        let index = probe.video.index;
        let stream = ictx
            .stream(index)
            .filter(|s| s.parameters().medium() == ffmpeg::media::Type::Video)
            .ok_or_else(|| DecodeError::Invalid { code: JobErrorCode::NoVideoStream, message: "the file has no video stream".into() })?;
        let tb = stream.time_base();
        if tb.numerator() <= 0 || tb.denominator() <= 0 {
            return Err(DecodeError::invalid("the video stream has no valid time base"));
        }
        let audio_index =
            probe.audio.as_ref().map(|a| a.index).filter(|i| ictx.stream(*i).is_some_and(|s| s.parameters().medium() == ffmpeg::media::Type::Audio));
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
    pub fn secs(&self, ts: i64) -> f64 {
        ts.saturating_sub(self.start_ts.unwrap_or(0)) as f64 * self.time_base
    }

    /// Absolute position in `AV_TIME_BASE` units for seconds from the stream's start.
    pub fn seek_target(&self, secs: f64) -> i64 {
        let start = self.start_ts.map_or(0.0, |s| s as f64 * self.time_base);
        ((start + secs.max(0.0)) * f64::from(ffmpeg::ffi::AV_TIME_BASE)) as i64
    }
}

/// The clockwise rotation a player applies, from the stream's display matrix, rounded to a
/// quarter turn; `None` without a matrix.
fn stream_rotation(stream: &ffmpeg::Stream<'_>) -> Option<i32> {
    stream.side_data().find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix).and_then(|sd| clockwise_rotation(sd.data()))
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

pub(super) fn rational(r: Rational) -> f64 {
    if r.denominator() == 0 { 0.0 } else { f64::from(r.numerator()) / f64::from(r.denominator()) }
}

/// Reads packets, giving up after many consecutive read errors (a truncated or corrupt tail).
pub(super) fn read_packet(ictx: &mut ffmpeg::format::context::Input, report: &mut DecodeReport) -> Option<Packet> {
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

pub(super) struct KeyframeScan {
    pub interval: Option<f64>,
    pub packets: VecDeque<Packet>,
}

/// Reads the first packets to measure keyframe spacing; the packets are kept so a sequential
/// decode can start from them without seeking back.
pub(super) fn scan_keyframes(
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

pub(super) fn open_video_decoder(
    ictx: &ffmpeg::format::context::Input,
    info: &VideoInfo,
    threads: threading::Config,
) -> Result<codec::decoder::Video, DecodeError> {
    let stream = ictx.stream(info.index).ok_or_else(|| DecodeError::invalid("the video stream is gone"))?;
    let mut ctx = codec::context::Context::from_parameters(stream.parameters())
        .map_err(|e| DecodeError::invalid(format!("the video stream cannot be described: {e}")))?;
    ctx.set_threading(threads);
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(stream.time_base());
    dec.video().map_err(|e| DecodeError::invalid(format!("no decoder for the video stream: {e}")))
}

pub(super) fn is_again(e: &ffmpeg::Error) -> bool {
    matches!(e, ffmpeg::Error::Other { errno } if *errno == ffmpeg::error::EAGAIN)
}
