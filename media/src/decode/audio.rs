//! The audio side of a decode: the 16 kHz mono analysis track and the levels of the source
//! signal, fed packet by packet from the same read loop as the video.

use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::{ChannelLayout, Packet, frame};
use ffmpeg_next as ffmpeg;

use super::{DecodeOptions, DecodeReport, DecodedAudio};
use crate::audio::{ANALYSIS_RATE, LevelMeter};
use crate::pcm::{AudioDecoder, Resampler, layout_of};

/// The audio stream's decoder and what its frames feed.
pub(super) struct AudioPipe {
    dec: AudioDecoder,
    track: Track,
}

/// The analysis track and the level meter, fed with decoded frames.
struct Track {
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

impl AudioPipe {
    /// The pipe for the audio stream; `None` when there is none or it cannot be decoded (a
    /// broken audio stream leaves the video analyses intact: no audio rather than an error).
    pub fn new(ictx: &ffmpeg::format::context::Input, index: Option<usize>, opts: &DecodeOptions) -> Option<Self> {
        let dec = AudioDecoder::open(&ictx.stream(index?)?).ok()?;
        let max_samples = (opts.limits.max_audio_secs.max(0.0) * f64::from(ANALYSIS_RATE)) as usize;
        let track = Track {
            to_mono: None,
            to_meter: None,
            meter: None,
            meter_failed: false,
            samples: Vec::new(),
            max_samples,
            truncated: false,
            source_rate: dec.rate(),
            source_channels: dec.channels(),
        };
        Some(Self { dec, track })
    }

    /// The audio stream's index.
    pub fn index(&self) -> usize {
        self.dec.index()
    }

    pub fn send(&mut self, packet: &Packet, report: &mut DecodeReport) {
        let before = self.dec.errors();
        self.dec.send(packet, |f| self.track.on_frame(f));
        report.decode_errors += self.dec.errors() - before;
    }

    /// Ends the stream: what the codec and the resamplers still hold.
    pub fn finish_stream(&mut self, report: &mut DecodeReport) {
        let before = self.dec.errors();
        self.dec.finish(|f| self.track.on_frame(f));
        report.decode_errors += self.dec.errors() - before;
        self.track.flush();
    }

    pub fn finish(self) -> DecodedAudio {
        let t = self.track;
        DecodedAudio {
            duration_secs: t.samples.len() as f64 / f64::from(ANALYSIS_RATE),
            samples: t.samples,
            source_rate: t.source_rate,
            source_channels: t.source_channels,
            levels: t.meter.as_ref().map(LevelMeter::finish),
            truncated: t.truncated,
        }
    }
}

impl Track {
    fn on_frame(&mut self, f: &frame::Audio) {
        if self.source_rate == 0 {
            self.source_rate = f.rate();
            self.source_channels = f.channels();
        }
        // The 16 kHz mono track.
        if !self.truncated
            && let Some(out) =
                Resampler::fit(&mut self.to_mono, f, Sample::F32(SampleType::Packed), ChannelLayout::MONO, ANALYSIS_RATE).and_then(|r| r.run(f))
        {
            self.push_mono(&out);
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
        let direct = f.format() == Sample::F32(SampleType::Planar) && f.channels() == channels;
        if direct {
            let planes: Vec<&[f32]> = (0..usize::from(channels).min(f.planes())).map(|c| f.plane::<f32>(c)).collect();
            if let Some(m) = self.meter.as_mut() {
                m.push_planar(&planes);
            }
            return;
        }
        let layout = if f.channels() > 6 { ChannelLayout::STEREO } else { layout_of(f) };
        if let Some(out) = Resampler::fit(&mut self.to_meter, f, Sample::F32(SampleType::Planar), layout, f.rate()).and_then(|r| r.run(f)) {
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

    fn flush(&mut self) {
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
