//! The new audio track, frame by frame: the track placed at its offset and gained, the
//! video's own audio mixed under it, a limiter, and AAC encoding.

use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::{ChannelLayout, Packet, Rational, codec, frame};
use ffmpeg_next as ffmpeg;

use super::source::PcmSource;
use super::{MuxError, OUTPUT_RATE};

/// Peak ceiling of the limiter, linear (−1 dBFS): AAC's own overshoot stays below full scale.
pub(super) const LIMIT_CEILING: f32 = 0.891;
/// The limiter's release time constant, in seconds.
const LIMIT_RELEASE_SECS: f32 = 0.08;

/// The new audio track as it is built, frame by frame.
pub(super) struct AudioOut {
    pub gain: f32,
    pub original_gain: f32,
    /// Output samples of silence before the track starts.
    pub offset: usize,
    /// The video's start, in output samples: the audio's first sample plays with the first
    /// picture.
    pub start_pts: i64,
    /// Output samples encoded so far.
    pub produced: usize,
    pub frame_size: usize,
    pub limiter: Limiter,
    /// Track samples that went into the output.
    pub track_used: usize,
}

impl AudioOut {
    /// Encodes and writes frames until `until` samples exist. Only whole frames while the video
    /// is still being read; at the end (`last`) the final frame may be short, ending exactly
    /// at `until`.
    #[allow(clippy::too_many_arguments)]
    pub fn produce_until(
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

pub(super) fn drain_encoder(encoder: &mut codec::encoder::Audio, octx: &mut ffmpeg::format::context::Output, audio_tb: Rational) -> Result<(), MuxError> {
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
pub(super) struct Limiter {
    gain: f32,
    release: f32,
    /// The smallest gain applied, for the report.
    pub min_gain: f32,
}

impl Limiter {
    pub fn new(rate: u32) -> Self {
        Self { gain: 1.0, release: 1.0 - (-1.0 / (LIMIT_RELEASE_SECS * rate as f32)).exp(), min_gain: 1.0 }
    }

    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
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
