//! Putting a new soundtrack under a video: the video stream is copied packet by packet (no
//! re-encoding, so no quality loss and little CPU), and the audio is rebuilt from an uploaded
//! track — decoded, resampled to 48 kHz stereo, gained, placed at an offset, optionally mixed
//! with the video's own audio, cut or padded to the video's length, limited so it never clips —
//! and encoded with FFmpeg's native AAC encoder into an MP4 with its index at the front
//! (`movflags=+faststart`), so players can start before the download ends.
//!
//! Memory stays flat: packets are copied as they are read and the audio is produced in encoder
//! frames just ahead of the video, so only a few frames of PCM are ever held.
//!
//! Video codecs that MP4 cannot carry (VP8, Theora, ProRes, …) are refused with
//! `unsupported_video_codec` rather than re-encoded: a re-encode would cost minutes of CPU on a
//! worker and silently lower quality, and the uploads reelq sees are overwhelmingly H.264 or
//! HEVC.
//!
//! Known limit: a display rotation (a phone's portrait flag) is not carried over. FFmpeg 5.1
//! keeps it as stream side data, which ffmpeg-next can read but not write without unsafe code
//! (forbidden in this workspace). The report names the source's rotation and whether it was
//! kept, so a client can tell.
//!
//! Blocking: run it on a blocking thread. It checks `should_stop` between packets.
//!
//! `source` reads the track and the original audio through the audio decoding the analysis
//! decode uses too (`crate::pcm`); `soundtrack` mixes, limits and encodes.

mod soundtrack;
mod source;

use std::path::Path;

use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::{ChannelLayout, Packet, Rational, codec, media};
use ffmpeg_next as ffmpeg;
use serde::Serialize;

use reelq_core::domain::{JobErrorCode, MuxMode, MuxOptions};

use soundtrack::{AudioOut, Limiter, drain_encoder};
use source::PcmSource;

/// Sample rate of the new audio track.
pub const OUTPUT_RATE: u32 = 48_000;
/// Bit rate of the new AAC track.
pub const OUTPUT_BIT_RATE: usize = 192_000;
/// Audio is produced this far past the last video packet read, so the muxer always has both
/// streams to interleave.
const AUDIO_LEAD_SECS: f64 = 0.5;

/// Why a mux ended without an output file.
#[derive(Debug, thiserror::Error)]
pub enum MuxError {
    /// The input is at fault: fail the job with this code, never retry.
    #[error("{message}")]
    Invalid {
        /// Stable code.
        code: JobErrorCode,
        /// Human explanation.
        message: String,
    },
    /// The output could not be written (scratch disk full or gone): retry.
    #[error("the output could not be written: {0}")]
    Output(String),
    /// `should_stop` said so: write nothing.
    #[error("muxing was stopped")]
    Stopped,
}

impl MuxError {
    fn invalid(code: JobErrorCode, message: impl Into<String>) -> Self {
        Self::Invalid { code, message: message.into() }
    }

    fn audio(message: impl Into<String>) -> Self {
        Self::invalid(JobErrorCode::InvalidAudio, message)
    }

    /// A failed write: the disk (retryable) or the packets (the input's fault).
    fn write(e: ffmpeg::Error) -> Self {
        const ENOSPC: i32 = 28;
        const EIO: i32 = 5;
        match e {
            ffmpeg::Error::Other { errno } if errno == ENOSPC || errno == EIO => Self::Output(e.to_string()),
            e => Self::invalid(JobErrorCode::InvalidMedia, format!("the video's packets could not be copied: {e}")),
        }
    }
}

/// What a mux did.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MuxReport {
    /// Length of the output's video, in seconds (the audio matches it).
    pub duration_secs: f64,
    /// Video packets copied.
    pub video_packets: u64,
    /// The copied video codec.
    pub video_codec: String,
    /// Always `aac`.
    pub audio_codec: String,
    /// Output sample rate.
    pub audio_sample_rate: u32,
    /// Output channels.
    pub audio_channels: u16,
    /// Seconds of the track that made it into the output.
    pub track_secs_used: f64,
    /// Whether the video's own audio was mixed in (`mix` mode and the video had audio).
    pub original_mixed: bool,
    /// Largest gain reduction the limiter applied, in dB (0 when nothing was near clipping).
    pub limiter_reduction_db: f64,
    /// Whether the index was moved to the front.
    pub faststart: bool,
    /// Clockwise display rotation of the source video (0, 90, 180, 270).
    pub source_rotation: i32,
    /// Whether the output shows the picture turned the same way (false for a rotated source:
    /// see the module documentation).
    pub rotation_kept: bool,
}

/// Video codecs that go into MP4 as they are.
fn mp4_can_carry(id: codec::Id) -> bool {
    matches!(id, codec::Id::H264 | codec::Id::HEVC | codec::Id::AV1 | codec::Id::VP9 | codec::Id::MPEG4)
}

fn secs(ts: i64, tb: Rational) -> f64 {
    if tb.denominator() == 0 { 0.0 } else { ts as f64 * f64::from(tb.numerator()) / f64::from(tb.denominator()) }
}

fn db_to_gain(db: f64) -> f32 {
    10f64.powf(db / 20.0) as f32
}

/// Writes `out` (MP4): the video stream of `video` copied, with a new AAC track made from the
/// audio of `track` as `opts` says. Blocking.
pub fn mux(video: &Path, track: &Path, out: &Path, opts: &MuxOptions, should_stop: &dyn Fn() -> bool) -> Result<MuxReport, MuxError> {
    super::init();
    opts.validate().map_err(|m| MuxError::invalid(JobErrorCode::InvalidRequest, m))?;
    let mut ictx =
        ffmpeg::format::input(&video).map_err(|e| MuxError::invalid(JobErrorCode::InvalidMedia, format!("the video could not be read: {e}")))?;
    // A cover picture (an MP3's artwork) is a video stream by FFmpeg's count, not a video.
    let vstream = ictx
        .streams()
        .filter(|s| s.parameters().medium() == media::Type::Video)
        .find(|s| !s.disposition().contains(ffmpeg::format::stream::Disposition::ATTACHED_PIC))
        .ok_or_else(|| MuxError::invalid(JobErrorCode::NoVideoStream, "the file has no video stream"))?;
    let vindex = vstream.index();
    let vparams = vstream.parameters();
    let vcodec = vparams.id();
    if !mp4_can_carry(vcodec) {
        return Err(MuxError::invalid(
            JobErrorCode::UnsupportedVideoCodec,
            format!("the video is {}, which cannot be copied into MP4 (H.264, HEVC, AV1, VP9 or MPEG-4 can)", vcodec.name()),
        ));
    }
    let in_tb = vstream.time_base();
    let video_start = match vstream.start_time() {
        t if t == ffmpeg::ffi::AV_NOPTS_VALUE => 0.0,
        t => secs(t, in_tb),
    };
    let avg_rate = vstream.avg_frame_rate();
    let source_rotation = vstream
        .side_data()
        .find(|sd| sd.kind() == ffmpeg::codec::packet::side_data::Type::DisplayMatrix)
        .and_then(|sd| super::decode::clockwise_rotation(sd.data()))
        .unwrap_or(0)
        .rem_euclid(360);
    let original_index = ictx.streams().best(media::Type::Audio).map(|s| (s.index(), s.start_time(), s.time_base()));

    // The new track, and in `mix` mode the video's own audio, each as a 48 kHz stereo source.
    let mut music = PcmSource::open(track, None).map_err(|e| MuxError::audio(format!("the track {e}")))?;
    if !music.prime() {
        return Err(MuxError::audio("the track has no decodable audio"));
    }
    let music_skip = (opts.track_start_secs * f64::from(OUTPUT_RATE)).round() as usize;
    if music.skip(music_skip) < music_skip {
        return Err(MuxError::audio(format!("track_start_secs ({:.1} s) is past the end of the track", opts.track_start_secs)));
    }
    let mut original = match (opts.mode, original_index) {
        (MuxMode::Mix, Some((index, start, tb))) => match PcmSource::open(video, Some(index)) {
            Ok(mut src) => {
                // Line the original audio up with the video: its stream may start a little
                // before or after the picture.
                let lead = if start == ffmpeg::ffi::AV_NOPTS_VALUE { 0.0 } else { secs(start, tb) - video_start };
                let samples = (lead.abs() * f64::from(OUTPUT_RATE)).round() as usize;
                if lead > 0.0 {
                    src.pad_front(samples);
                } else {
                    src.skip(samples);
                }
                Some(src)
            }
            // A broken original track leaves the new one alone: replace rather than fail.
            Err(e) => {
                tracing::warn!(error = %e, "the video's own audio cannot be decoded; using the new track alone");
                None
            }
        },
        _ => None,
    };

    let mut octx = ffmpeg::format::output_as(&out, "mp4").map_err(|e| MuxError::Output(e.to_string()))?;
    let global_header = octx.format().flags().contains(ffmpeg::format::Flags::GLOBAL_HEADER);
    {
        let mut ost = octx.add_stream(ffmpeg::encoder::find(codec::Id::None)).map_err(|e| MuxError::Output(e.to_string()))?;
        ost.set_parameters(vparams);
        ost.set_time_base(in_tb);
        ost.set_avg_frame_rate(avg_rate);
    }
    let aac = ffmpeg::encoder::find_by_name("aac").ok_or_else(|| MuxError::Output("FFmpeg has no native AAC encoder".into()))?;
    let mut encoder = {
        let mut ost = octx.add_stream(aac).map_err(|e| MuxError::Output(e.to_string()))?;
        let ctx = codec::context::Context::from_parameters(ost.parameters()).map_err(|e| MuxError::Output(e.to_string()))?;
        let mut enc = ctx.encoder().audio().map_err(|e| MuxError::Output(e.to_string()))?;
        if global_header {
            enc.set_flags(codec::Flags::GLOBAL_HEADER);
        }
        enc.set_rate(OUTPUT_RATE as i32);
        enc.set_channel_layout(ChannelLayout::STEREO);
        enc.set_channels(2);
        enc.set_format(ffmpeg::format::Sample::F32(SampleType::Planar));
        enc.set_bit_rate(OUTPUT_BIT_RATE);
        enc.set_time_base(Rational::new(1, OUTPUT_RATE as i32));
        ost.set_time_base(Rational::new(1, OUTPUT_RATE as i32));
        let enc = enc.open_as(aac).map_err(|e| MuxError::Output(format!("the AAC encoder did not open: {e}")))?;
        ost.set_parameters(&enc);
        enc
    };
    let frame_size = (encoder.frame_size() as usize).max(1);
    let mut header = ffmpeg::Dictionary::new();
    header.set("movflags", "+faststart");
    octx.write_header_with(header)
        .map_err(|e| MuxError::invalid(JobErrorCode::UnsupportedVideoCodec, format!("the video stream cannot be written as MP4: {e}")))?;
    let video_tb = octx.stream(0).map(|s| s.time_base()).unwrap_or(in_tb);
    let audio_tb = octx.stream(1).map(|s| s.time_base()).unwrap_or(Rational::new(1, OUTPUT_RATE as i32));

    let mut audio = AudioOut {
        gain: db_to_gain(opts.gain_db),
        original_gain: db_to_gain(opts.original_gain_db),
        offset: (opts.offset_secs * f64::from(OUTPUT_RATE)).round() as usize,
        start_pts: (video_start * f64::from(OUTPUT_RATE)).round() as i64,
        produced: 0,
        frame_size,
        limiter: Limiter::new(OUTPUT_RATE),
        track_used: 0,
    };
    let mut video_packets = 0u64;
    let mut video_end = 0.0f64;
    let mut packet = Packet::empty();
    loop {
        if should_stop() {
            return Err(MuxError::Stopped);
        }
        match packet.read(&mut ictx) {
            Ok(()) => {}
            Err(ffmpeg::Error::Eof) => break,
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => continue,
            // A truncated file ends here, as a player would stop.
            Err(_) => break,
        }
        if packet.stream() != vindex {
            continue;
        }
        let Some(ts) = packet.pts().or(packet.dts()) else { continue };
        let t = secs(ts, in_tb) - video_start;
        let dur = if packet.duration() > 0 {
            secs(packet.duration(), in_tb)
        } else if avg_rate.numerator() > 0 {
            f64::from(avg_rate.denominator()) / f64::from(avg_rate.numerator())
        } else {
            0.0
        };
        video_end = video_end.max(t + dur);
        let decode_t = packet.dts().map_or(t, |d| secs(d, in_tb) - video_start);
        packet.rescale_ts(in_tb, video_tb);
        packet.set_position(-1);
        packet.set_stream(0);
        packet.write_interleaved(&mut octx).map_err(MuxError::write)?;
        video_packets += 1;
        let until = ((decode_t + AUDIO_LEAD_SECS).min(video_end).max(0.0) * f64::from(OUTPUT_RATE)) as usize;
        audio.produce_until(until, false, &mut music, original.as_mut(), &mut encoder, &mut octx, audio_tb)?;
    }
    if video_packets == 0 {
        return Err(MuxError::invalid(JobErrorCode::InvalidMedia, "the video stream has no packets"));
    }
    let total = (video_end * f64::from(OUTPUT_RATE)).round() as usize;
    audio.produce_until(total, true, &mut music, original.as_mut(), &mut encoder, &mut octx, audio_tb)?;
    encoder.send_eof().map_err(|e| MuxError::Output(e.to_string()))?;
    drain_encoder(&mut encoder, &mut octx, audio_tb)?;
    octx.write_trailer().map_err(MuxError::write)?;

    Ok(MuxReport {
        duration_secs: video_end,
        video_packets,
        video_codec: vcodec.name().to_owned(),
        audio_codec: "aac".to_owned(),
        audio_sample_rate: OUTPUT_RATE,
        audio_channels: 2,
        track_secs_used: audio.track_used as f64 / f64::from(OUTPUT_RATE),
        original_mixed: original.is_some(),
        limiter_reduction_db: -20.0 * f64::from(audio.limiter.min_gain.max(1e-6)).log10(),
        faststart: true,
        source_rotation,
        rotation_kept: source_rotation == 0,
    })
}

#[cfg(test)]
mod tests;
