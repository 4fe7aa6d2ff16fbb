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

use std::collections::VecDeque;
use std::path::Path;

use ffmpeg_next as ffmpeg;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::software::resampling;
use ffmpeg::{ChannelLayout, Packet, Rational, codec, frame, media};
use serde::Serialize;

use reelq_core::domain::{JobErrorCode, MuxMode, MuxOptions};

/// Sample rate of the new audio track.
pub const OUTPUT_RATE: u32 = 48_000;
/// Bit rate of the new AAC track.
pub const OUTPUT_BIT_RATE: usize = 192_000;
/// Peak ceiling of the limiter, linear (−1 dBFS): AAC's own overshoot stays below full scale.
const LIMIT_CEILING: f32 = 0.891;
/// The limiter's release time constant, in seconds.
const LIMIT_RELEASE_SECS: f32 = 0.08;
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
    let mut ictx = ffmpeg::format::input(&video)
        .map_err(|e| MuxError::invalid(JobErrorCode::InvalidMedia, format!("the video could not be read: {e}")))?;
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
    let original_index = ictx
        .streams()
        .best(media::Type::Audio)
        .map(|s| (s.index(), s.start_time(), s.time_base()));

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
    octx.write_header_with(header).map_err(|e| {
        MuxError::invalid(JobErrorCode::UnsupportedVideoCodec, format!("the video stream cannot be written as MP4: {e}"))
    })?;
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

/// The new audio track as it is built, frame by frame.
struct AudioOut {
    gain: f32,
    original_gain: f32,
    /// Output samples of silence before the track starts.
    offset: usize,
    /// The video's start, in output samples: the audio's first sample plays with the first
    /// picture.
    start_pts: i64,
    /// Output samples encoded so far.
    produced: usize,
    frame_size: usize,
    limiter: Limiter,
    /// Track samples that went into the output.
    track_used: usize,
}

impl AudioOut {
    /// Encodes and writes frames until `until` samples exist. Only whole frames while the video
    /// is still being read; at the end (`last`) the final frame may be short, ending exactly
    /// at `until`.
    #[allow(clippy::too_many_arguments)]
    fn produce_until(
        &mut self,
        until: usize,
        last: bool,
        music: &mut PcmSource,
        mut original: Option<&mut PcmSource>,
        encoder: &mut codec::encoder::Audio,
        octx: &mut ffmpeg::format::context::Output,
        audio_tb: Rational,
    ) -> Result<(), MuxError> {
        let mut left = vec![0f32; self.frame_size];
        let mut right = vec![0f32; self.frame_size];
        let mut o_left = vec![0f32; self.frame_size];
        let mut o_right = vec![0f32; self.frame_size];
        while self.produced < until {
            let n = self.frame_size.min(until - self.produced);
            if n < self.frame_size && !last {
                return Ok(());
            }
            let (l, r) = (&mut left[..n], &mut right[..n]);
            let silent = self.offset.saturating_sub(self.produced).min(n);
            l[..silent].fill(0.0);
            r[..silent].fill(0.0);
            let got = music.read(&mut l[silent..], &mut r[silent..]);
            self.track_used += got;
            for s in l.iter_mut().chain(r.iter_mut()) {
                *s *= self.gain;
            }
            if let Some(src) = original.as_deref_mut() {
                let (ol, or) = (&mut o_left[..n], &mut o_right[..n]);
                src.read(ol, or);
                for i in 0..n {
                    l[i] += ol[i] * self.original_gain;
                    r[i] += or[i] * self.original_gain;
                }
            }
            self.limiter.process(l, r);
            let mut frame = frame::Audio::new(ffmpeg::format::Sample::F32(SampleType::Planar), n, ChannelLayout::STEREO);
            frame.set_rate(OUTPUT_RATE);
            frame.plane_mut::<f32>(0).copy_from_slice(l);
            frame.plane_mut::<f32>(1).copy_from_slice(r);
            frame.set_pts(Some(self.start_pts + self.produced as i64));
            encoder.send_frame(&frame).map_err(|e| MuxError::Output(format!("AAC encoding failed: {e}")))?;
            drain_encoder(encoder, octx, audio_tb)?;
            self.produced += n;
        }
        Ok(())
    }
}

fn drain_encoder(encoder: &mut codec::encoder::Audio, octx: &mut ffmpeg::format::context::Output, audio_tb: Rational) -> Result<(), MuxError> {
    let mut pkt = Packet::empty();
    loop {
        match encoder.receive_packet(&mut pkt) {
            Ok(()) => {
                pkt.rescale_ts(Rational::new(1, OUTPUT_RATE as i32), audio_tb);
                pkt.set_position(-1);
                pkt.set_stream(1);
                pkt.write_interleaved(octx).map_err(MuxError::write)?;
            }
            Err(ffmpeg::Error::Eof) => return Ok(()),
            Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => return Ok(()),
            Err(e) => return Err(MuxError::Output(format!("AAC encoding failed: {e}"))),
        }
    }
}

/// A peak limiter with instant attack and a smooth release, linked across channels so the
/// stereo image does not move. Instant attack means no sample ever exceeds the ceiling; the
/// release keeps the gain from pumping on every peak.
struct Limiter {
    gain: f32,
    release: f32,
    /// The smallest gain applied, for the report.
    min_gain: f32,
}

impl Limiter {
    fn new(rate: u32) -> Self {
        Self { gain: 1.0, release: 1.0 - (-1.0 / (LIMIT_RELEASE_SECS * rate as f32)).exp(), min_gain: 1.0 }
    }

    fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let peak = l.abs().max(r.abs());
            let target = if peak > LIMIT_CEILING { LIMIT_CEILING / peak } else { 1.0 };
            if target < self.gain {
                self.gain = target;
            } else {
                self.gain += (target - self.gain) * self.release;
            }
            self.min_gain = self.min_gain.min(self.gain);
            *l = (*l * self.gain).clamp(-1.0, 1.0);
            *r = (*r * self.gain).clamp(-1.0, 1.0);
        }
    }
}

/// One file's audio stream, decoded and resampled to 48 kHz stereo planar `f32` on demand.
/// Reads stop at the end of the stream; after that it gives silence.
struct PcmSource {
    ictx: ffmpeg::format::context::Input,
    index: usize,
    decoder: codec::decoder::Audio,
    resampler: Option<(ResampleKey, resampling::Context)>,
    left: VecDeque<f32>,
    right: VecDeque<f32>,
    /// Samples of silence still to give before the decoded ones.
    pad: usize,
    ended: bool,
}

type ResampleKey = (ffmpeg::format::Sample, u64, u16, u32);

impl PcmSource {
    /// Opens `path`'s audio stream (`index`, or the best one).
    fn open(path: &Path, index: Option<usize>) -> Result<Self, String> {
        let ictx = ffmpeg::format::input(&path).map_err(|e| format!("could not be read as audio: {e}"))?;
        let stream = match index {
            Some(i) => ictx.stream(i),
            None => ictx.streams().best(media::Type::Audio),
        }
        .ok_or("has no audio stream")?;
        let index = stream.index();
        let ctx = codec::context::Context::from_parameters(stream.parameters()).map_err(|e| format!("cannot be described: {e}"))?;
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(stream.time_base());
        let decoder = dec.audio().map_err(|e| format!("has no usable decoder: {e}"))?;
        Ok(Self {
            ictx,
            index,
            decoder,
            resampler: None,
            left: VecDeque::new(),
            right: VecDeque::new(),
            pad: 0,
            ended: false,
        })
    }

    /// Decodes until some audio is buffered; false when the stream gives none at all.
    fn prime(&mut self) -> bool {
        while self.left.is_empty() && !self.ended {
            self.decode_more();
        }
        !self.left.is_empty()
    }

    fn pad_front(&mut self, samples: usize) {
        self.pad += samples;
    }

    /// Drops `samples` from the front; returns how many there were to drop.
    fn skip(&mut self, samples: usize) -> usize {
        let mut skipped = 0;
        while skipped < samples {
            if self.left.is_empty() {
                if self.ended {
                    break;
                }
                self.decode_more();
                continue;
            }
            let n = (samples - skipped).min(self.left.len());
            self.left.drain(..n);
            self.right.drain(..n);
            skipped += n;
        }
        skipped
    }

    /// Fills both slices (equal lengths); returns how many samples were real audio, the rest
    /// being silence (leading padding or past the end).
    fn read(&mut self, left: &mut [f32], right: &mut [f32]) -> usize {
        let n = left.len();
        let pad = self.pad.min(n);
        left[..pad].fill(0.0);
        right[..pad].fill(0.0);
        self.pad -= pad;
        let mut at = pad;
        let mut real = 0;
        while at < n {
            if self.left.is_empty() {
                if self.ended {
                    break;
                }
                self.decode_more();
                continue;
            }
            let take = (n - at).min(self.left.len());
            for (dst, src) in left[at..at + take].iter_mut().zip(self.left.drain(..take)) {
                *dst = src;
            }
            for (dst, src) in right[at..at + take].iter_mut().zip(self.right.drain(..take)) {
                *dst = src;
            }
            at += take;
            real += take;
        }
        left[at..].fill(0.0);
        right[at..].fill(0.0);
        real
    }

    /// Reads packets until at least one decoded frame was buffered or the stream ended.
    fn decode_more(&mut self) {
        let before = self.left.len();
        let mut packet = Packet::empty();
        let mut errors = 0u32;
        while self.left.len() == before && !self.ended {
            match packet.read(&mut self.ictx) {
                Ok(()) => {
                    if packet.stream() != self.index {
                        continue;
                    }
                    // A corrupt packet costs its samples, not the track; a stream of nothing
                    // but corrupt packets ends it.
                    if self.decoder.send_packet(&packet).is_err() {
                        errors += 1;
                        if errors > 1000 {
                            self.finish();
                        }
                        continue;
                    }
                    self.receive();
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(_) => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        if self.decoder.send_eof().is_ok() {
            self.receive();
        }
        if let Some((_, ctx)) = self.resampler.as_mut() {
            for _ in 0..64 {
                let mut out = frame::Audio::new(ffmpeg::format::Sample::F32(SampleType::Planar), 4096, ChannelLayout::STEREO);
                if ctx.flush(&mut out).is_err() || out.samples() == 0 {
                    break;
                }
                self.left.extend(out.plane::<f32>(0));
                self.right.extend(out.plane::<f32>(1));
            }
        }
        self.ended = true;
    }

    fn receive(&mut self) {
        let mut f = frame::Audio::empty();
        while self.decoder.receive_frame(&mut f).is_ok() {
            if f.samples() == 0 || f.channels() == 0 || f.rate() == 0 || f.rate() > 768_000 {
                continue;
            }
            // A stream without a channel layout (common in WAV) gets the default one for its
            // channel count; the resampler refuses frames whose layout differs from its own.
            let layout = {
                let l = f.channel_layout();
                if l.bits() != 0 && l.channels() == i32::from(f.channels()) { l } else { ChannelLayout::default(i32::from(f.channels())) }
            };
            if f.channel_layout() != layout {
                f.set_channel_layout(layout);
            }
            let key: ResampleKey = (f.format(), layout.bits(), f.channels(), f.rate());
            if self.resampler.as_ref().is_none_or(|(k, _)| *k != key) {
                match resampling::Context::get(
                    f.format(),
                    layout,
                    f.rate(),
                    ffmpeg::format::Sample::F32(SampleType::Planar),
                    ChannelLayout::STEREO,
                    OUTPUT_RATE,
                ) {
                    Ok(ctx) => self.resampler = Some((key, ctx)),
                    Err(_) => continue,
                }
            }
            let Some((_, ctx)) = self.resampler.as_mut() else { continue };
            // A fresh output frame per run: a reused one keeps stale sizes.
            let capacity = (f.samples() as u64 * u64::from(OUTPUT_RATE) / u64::from(f.rate())) as usize + 256;
            let mut out = frame::Audio::new(ffmpeg::format::Sample::F32(SampleType::Planar), capacity, ChannelLayout::STEREO);
            if ctx.run(&f, &mut out).is_ok() && out.samples() > 0 {
                self.left.extend(out.plane::<f32>(0));
                self.right.extend(out.plane::<f32>(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::decode::clips::{self, s};

    const RATE: usize = 48_000;

    fn options(mode: MuxMode) -> MuxOptions {
        MuxOptions {
            audio_id: uuid::Uuid::nil(),
            mode,
            gain_db: 0.0,
            original_gain_db: 0.0,
            offset_secs: 0.0,
            track_start_secs: 0.0,
        }
    }

    /// A 3-second 320×240 H.264 clip at 25 fps with a 440 Hz AAC tone.
    fn video(dir: &Path) -> PathBuf {
        clips::make(dir, "video.mp4", "testsrc=size=320x240:rate=25:duration=3", Some("sine=frequency=440:sample_rate=44100:duration=3"), None, &[])
    }

    /// An MP3 track of a sine at `freq` lasting `secs`.
    fn track(dir: &Path, freq: u32, secs: f64) -> PathBuf {
        let path = dir.join(format!("track-{freq}-{secs}.mp3"));
        let src = format!("sine=frequency={freq}:sample_rate=44100:duration={secs}");
        clips::ffmpeg(&["-f", "lavfi", "-i", &src, "-c:a", "libmp3lame", "-b:a", "128k", s(&path)]);
        path
    }

    /// The left channel of the output's audio as 48 kHz `f32`, decoded by the ffmpeg CLI (not
    /// by the code under test). Both channels carry the same signal here; a downmix would add
    /// them and hide clipping.
    fn decoded_audio(path: &Path) -> Vec<f32> {
        let out = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-i", s(path), "-map", "0:a:0", "-af", "pan=mono|c0=c0", "-f", "f32le", "-ar", "48000", "-"])
            .output()
            .expect("ffmpeg runs");
        assert!(out.status.success(), "decoding the output failed: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// Power of one frequency (Goertzel), as the squared amplitude of a sine at it.
    fn tone_power(x: &[f32], freq: f64) -> f64 {
        let w = 2.0 * std::f64::consts::PI * freq / RATE as f64;
        let c = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let n = x.len() as f64;
        4.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (n * n)
    }

    fn rms(x: &[f32]) -> f64 {
        (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
    }

    fn window(x: &[f32], from_secs: f64, to_secs: f64) -> &[f32] {
        let a = ((from_secs * RATE as f64) as usize).min(x.len());
        let b = ((to_secs * RATE as f64) as usize).min(x.len());
        &x[a..b]
    }

    fn video_packets(path: &Path) -> usize {
        crate::init();
        let mut ictx = ffmpeg::format::input(&path).expect("opens");
        let index = ictx.streams().best(media::Type::Video).expect("video").index();
        ictx.packets().filter(|(st, _)| st.index() == index).count()
    }

    fn run(video: &Path, track: &Path, out: &Path, opts: &MuxOptions) -> Result<MuxReport, MuxError> {
        mux(video, track, out, opts, &clips::never)
    }

    #[test]
    fn replace_copies_the_video_and_puts_the_new_track_under_it() {
        let dir = clips::dir();
        let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 5.0), dir.path().join("out.mp4"));
        let report = run(&v, &t, &out, &options(MuxMode::Replace)).expect("muxes");

        let probed = clips::probe(&out);
        let source = clips::probe(&v);
        assert_eq!(probed.video.codec, "h264");
        assert_eq!(probed.audio.as_ref().map(|a| a.codec.as_str()), Some("aac"));
        assert_eq!(probed.audio.as_ref().map(|a| a.sample_rate), Some(48_000));
        assert!((probed.duration_secs - source.duration_secs).abs() < 0.1, "{} vs {}", probed.duration_secs, source.duration_secs);
        assert!((report.duration_secs - 3.0).abs() < 0.05, "{report:?}");
        let copied = video_packets(&v);
        assert_eq!(report.video_packets as usize, copied);
        assert_eq!(video_packets(&out), copied);
        assert!(!report.original_mixed);
        // faststart: the index (`moov`) comes before the media data (`mdat`).
        let bytes = std::fs::read(&out).expect("read");
        let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).expect("box present");
        assert!(at(b"moov") < at(b"mdat"), "moov at {} after mdat at {}", at(b"moov"), at(b"mdat"));

        let pcm = decoded_audio(&out);
        let body = window(&pcm, 0.5, 2.5);
        let (new, old) = (tone_power(body, 880.0), tone_power(body, 440.0));
        assert!(new > 100.0 * old, "880 Hz should dominate: {new} vs {old}");
        assert!(new.sqrt() > 0.05, "the track is audible: amplitude {}", new.sqrt());
    }

    #[test]
    fn mix_keeps_the_original_audio_under_the_track() {
        let dir = clips::dir();
        let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 5.0), dir.path().join("out.mp4"));
        let report = run(&v, &t, &out, &options(MuxMode::Mix)).expect("muxes");
        assert!(report.original_mixed);
        let pcm = decoded_audio(&out);
        let body = window(&pcm, 0.5, 2.5);
        let (new, old) = (tone_power(body, 880.0), tone_power(body, 440.0));
        // Both tones at 0 dB: equal within a few dB.
        assert!(new > 0.3 * old && old > 0.3 * new, "both tones are heard: {new} vs {old}");

        // At −20 dB the original sits well under the track.
        let quiet = dir.path().join("quiet.mp4");
        let mut opts = options(MuxMode::Mix);
        opts.original_gain_db = -20.0;
        run(&v, &t, &quiet, &opts).expect("muxes");
        let pcm = decoded_audio(&quiet);
        let body = window(&pcm, 0.5, 2.5);
        let ratio = tone_power(body, 880.0) / tone_power(body, 440.0);
        assert!(ratio > 30.0 && ratio < 300.0, "a 20 dB difference is a power ratio near 100: {ratio}");
    }

    #[test]
    fn offset_leaves_leading_silence_and_track_start_skips_into_the_track() {
        let dir = clips::dir();
        let (v, out) = (video(dir.path()), dir.path().join("out.mp4"));
        // 1 s of 660 Hz then 4 s of 880 Hz: starting the track at 1 s must skip the 660.
        let t = dir.path().join("two-tones.wav");
        clips::ffmpeg(&[
            "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100:duration=1",
            "-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100:duration=4",
            "-filter_complex", "[0:a][1:a]concat=n=2:v=0:a=1", s(&t),
        ]);
        let mut opts = options(MuxMode::Replace);
        opts.offset_secs = 1.0;
        opts.track_start_secs = 1.0;
        let report = run(&v, &t, &out, &opts).expect("muxes");
        let pcm = decoded_audio(&out);
        assert!(rms(window(&pcm, 0.0, 0.9)) < 1e-3, "silence before the offset: {}", rms(window(&pcm, 0.0, 0.9)));
        let after = window(&pcm, 1.2, 2.8);
        assert!(rms(after) > 0.05, "the track plays after the offset");
        assert!(tone_power(after, 880.0) > 100.0 * tone_power(after, 660.0), "the first second of the track was skipped");
        assert!((report.track_secs_used - 2.0).abs() < 0.05, "{report:?}");
    }

    #[test]
    fn a_short_track_is_padded_and_a_loud_one_is_limited() {
        let dir = clips::dir();
        let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 1.0), dir.path().join("out.mp4"));
        let mut opts = options(MuxMode::Mix);
        opts.gain_db = 20.0;
        opts.original_gain_db = 20.0;
        let report = run(&v, &t, &out, &opts).expect("muxes");
        assert!((clips::probe(&out).duration_secs - 3.0).abs() < 0.1, "padded to the video");
        assert!(report.limiter_reduction_db > 6.0, "{report:?}");
        let pcm = decoded_audio(&out);
        let peak = pcm.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak <= 1.0, "no clipping: peak {peak}");
        // The track ended at 1 s; the original (440 Hz) carries on alone.
        let tail = window(&pcm, 1.5, 2.8);
        assert!(tone_power(tail, 440.0) > 100.0 * tone_power(tail, 880.0));
    }

    #[test]
    fn limiter_never_exceeds_its_ceiling_and_recovers() {
        let mut lim = Limiter::new(48_000);
        let mut l: Vec<f32> = (0..4800).map(|i| 3.0 * (i as f32 * 0.1).sin()).collect();
        let mut r = l.clone();
        lim.process(&mut l, &mut r);
        assert!(l.iter().chain(r.iter()).all(|v| v.abs() <= LIMIT_CEILING + 1e-6));
        let mut quiet = vec![0.1f32; 48_000];
        let mut quiet_r = quiet.clone();
        lim.process(&mut quiet, &mut quiet_r);
        assert!((quiet[47_999] - 0.1).abs() < 1e-3, "gain released after a second: {}", quiet[47_999]);
    }

    #[test]
    fn bad_inputs_fail_with_stable_codes() {
        let dir = clips::dir();
        let (v, t) = (video(dir.path()), track(dir.path(), 880, 2.0));
        let out = dir.path().join("out.mp4");
        let code = |r: Result<MuxReport, MuxError>| match r {
            Err(MuxError::Invalid { code, .. }) => code,
            other => panic!("expected an input error, got {other:?}"),
        };

        let text = dir.path().join("notes.mp3");
        std::fs::write(&text, "these are words, not music\n".repeat(100)).expect("write");
        assert_eq!(code(run(&v, &text, &out, &options(MuxMode::Replace))), JobErrorCode::InvalidAudio);

        let silent_video = clips::make(dir.path(), "silent.mp4", "testsrc=size=160x120:rate=25:duration=1", None, None, &[]);
        assert_eq!(code(run(&v, &silent_video, &out, &options(MuxMode::Replace))), JobErrorCode::InvalidAudio, "a track without audio");

        let mut late = options(MuxMode::Replace);
        late.track_start_secs = 10.0;
        assert_eq!(code(run(&v, &t, &out, &late)), JobErrorCode::InvalidAudio, "starting past the end of the track");

        let audio_only = dir.path().join("audio-only.m4a");
        clips::ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", s(&audio_only)]);
        assert_eq!(code(run(&audio_only, &t, &out, &options(MuxMode::Replace))), JobErrorCode::NoVideoStream);

        let vp8 = dir.path().join("vp8.webm");
        clips::ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-c:v", "libvpx", "-b:v", "200k", s(&vp8)]);
        assert_eq!(code(run(&vp8, &t, &out, &options(MuxMode::Replace))), JobErrorCode::UnsupportedVideoCodec);
    }

    #[test]
    fn a_rotated_source_is_reported_as_not_kept() {
        let dir = clips::dir();
        let plain = clips::make(dir.path(), "plain.mp4", "testsrc=size=320x240:rate=25:duration=1", None, None, &[]);
        // The CLI writes the display matrix when it copies a stream with `rotate` metadata.
        let rotated = dir.path().join("rotated.mp4");
        clips::ffmpeg(&["-i", s(&plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", s(&rotated)]);
        let source = clips::probe(&rotated).video.rotation;
        assert_ne!(source, 0, "the source is rotated");
        let (t, out) = (track(dir.path(), 880, 2.0), dir.path().join("out.mp4"));
        let report = run(&rotated, &t, &out, &options(MuxMode::Replace)).expect("muxes");
        assert_eq!(report.source_rotation, source);
        assert_eq!(report.rotation_kept, clips::probe(&out).video.rotation == source);
        let report = run(&plain, &t, &out, &options(MuxMode::Replace)).expect("muxes");
        assert!(report.rotation_kept && report.source_rotation == 0);
    }

    #[test]
    fn stops_when_asked() {
        let dir = clips::dir();
        let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 2.0), dir.path().join("out.mp4"));
        assert!(matches!(mux(&v, &t, &out, &options(MuxMode::Replace), &|| true), Err(MuxError::Stopped)));
    }
}
