//! Audio streams decoded and resampled through FFmpeg: the one path that both the analysis
//! decode (16 kHz mono and the level meter's planar `f32`) and the mux (48 kHz stereo) read
//! audio through.
//!
//! [`AudioDecoder`] turns packets into frames the resampler accepts: frames that cannot be
//! audio (no samples, no channels, an absurd rate) are dropped, and a frame without a channel
//! layout (PCM in WAV or Matroska) gets the default one for its channel count. [`Resampler`]
//! converts them, rebuilding itself when the input format changes mid-stream.

use ffmpeg::format::Sample;
use ffmpeg::software::resampling;
use ffmpeg::{ChannelLayout, Packet, codec, frame};
use ffmpeg_next as ffmpeg;

/// Highest sample rate taken for real; beyond it a frame is corrupt.
const MAX_RATE: u32 = 768_000;

/// Why an audio stream cannot be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("cannot be described: {0}")]
    Parameters(ffmpeg::Error),
    #[error("has no usable decoder: {0}")]
    Decoder(ffmpeg::Error),
}

/// One audio stream's decoder.
pub(crate) struct AudioDecoder {
    index: usize,
    dec: codec::decoder::Audio,
    frame: frame::Audio,
    errors: u64,
}

impl AudioDecoder {
    /// The decoder for `stream`.
    pub fn open(stream: &ffmpeg::Stream<'_>) -> Result<Self, OpenError> {
        let ctx = codec::context::Context::from_parameters(stream.parameters()).map_err(OpenError::Parameters)?;
        let mut dec = ctx.decoder();
        dec.set_packet_time_base(stream.time_base());
        let dec = dec.audio().map_err(OpenError::Decoder)?;
        Ok(Self { index: stream.index(), dec, frame: frame::Audio::empty(), errors: 0 })
    }

    /// The stream's index in its file.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Sample rate the codec declares (0 when it declares none).
    pub fn rate(&self) -> u32 {
        self.dec.rate()
    }

    /// Channels the codec declares.
    pub fn channels(&self) -> u16 {
        self.dec.channels()
    }

    /// Packets the codec refused and frames it failed to give, so far.
    pub fn errors(&self) -> u64 {
        self.errors
    }

    /// Feeds one packet and hands each frame it completes to `each`. Returns whether the codec
    /// accepted the packet; a refused packet costs its samples, not the stream.
    pub fn send(&mut self, packet: &Packet, each: impl FnMut(&frame::Audio)) -> bool {
        let accepted = self.dec.send_packet(packet).is_ok();
        if !accepted {
            self.errors += 1;
        }
        self.receive(each);
        accepted
    }

    /// Ends the stream, handing the frames the codec still holds to `each`.
    pub fn finish(&mut self, each: impl FnMut(&frame::Audio)) {
        if self.dec.send_eof().is_ok() {
            self.receive(each);
        }
    }

    fn receive(&mut self, mut each: impl FnMut(&frame::Audio)) {
        loop {
            match self.dec.receive_frame(&mut self.frame) {
                Ok(()) => {
                    let f = &mut self.frame;
                    if f.samples() == 0 || f.channels() == 0 || f.rate() == 0 || f.rate() > MAX_RATE || f.planes() == 0 {
                        continue;
                    }
                    // The resamplers are built with a full layout and refuse frames that differ
                    // from it.
                    let layout = layout_of(f);
                    if f.channel_layout() != layout {
                        f.set_channel_layout(layout);
                    }
                    each(f);
                }
                Err(ffmpeg::Error::Eof) => return,
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::error::EAGAIN => return,
                Err(_) => {
                    self.errors += 1;
                    return;
                }
            }
        }
    }
}

/// The frame's channel layout, or the default one for its channel count when it has none.
pub(crate) fn layout_of(f: &frame::Audio) -> ChannelLayout {
    let layout = f.channel_layout();
    if layout.bits() != 0 && layout.channels() == i32::from(f.channels()) { layout } else { ChannelLayout::default(i32::from(f.channels())) }
}

/// What a resampler was built for: format, layout, channels and rate of its input.
type InputKey = (Sample, u64, u16, u32);

/// A resampler to one output format, layout and rate.
pub(crate) struct Resampler {
    key: InputKey,
    ctx: resampling::Context,
    dst_rate: u32,
    dst_format: Sample,
    dst_layout: ChannelLayout,
}

impl Resampler {
    fn key(f: &frame::Audio) -> InputKey {
        (f.format(), f.channel_layout().bits(), f.channels(), f.rate())
    }

    /// A resampler from `f`'s format to `dst_format`, `dst_layout` and `dst_rate`; `None` when
    /// FFmpeg cannot convert between them.
    pub fn new(f: &frame::Audio, dst_format: Sample, dst_layout: ChannelLayout, dst_rate: u32) -> Option<Self> {
        let ctx = resampling::Context::get(f.format(), layout_of(f), f.rate(), dst_format, dst_layout, dst_rate).ok()?;
        Some(Self { key: Self::key(f), ctx, dst_rate, dst_format, dst_layout })
    }

    /// The resampler in `slot`, rebuilt first when `f`'s format differs from what it was built
    /// for; `None` when none can be built for `f`.
    pub fn fit<'a>(slot: &'a mut Option<Self>, f: &frame::Audio, dst_format: Sample, dst_layout: ChannelLayout, dst_rate: u32) -> Option<&'a mut Self> {
        if slot.as_ref().is_none_or(|r| r.key != Self::key(f)) {
            *slot = Self::new(f, dst_format, dst_layout, dst_rate);
        }
        slot.as_mut()
    }

    /// Converts one frame into a fresh output frame (reusing one would keep stale sizes).
    pub fn run(&mut self, f: &frame::Audio) -> Option<frame::Audio> {
        let capacity = (f.samples() as u64 * u64::from(self.dst_rate) / u64::from(f.rate().max(1))) as usize + 256;
        let mut out = frame::Audio::new(self.dst_format, capacity, self.dst_layout);
        self.ctx.run(f, &mut out).ok()?;
        Some(out)
    }

    /// Drains what the resampler still holds, one fresh frame per call until it yields
    /// nothing.
    pub fn flush(&mut self, mut each: impl FnMut(&frame::Audio)) {
        for _ in 0..64 {
            let mut out = frame::Audio::new(self.dst_format, 4096, self.dst_layout);
            if self.ctx.flush(&mut out).is_err() || out.samples() == 0 {
                return;
            }
            each(&out);
        }
    }
}

/// Why a file's sound could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file has no audio stream FFmpeg can decode.
    #[error("{0}")]
    Invalid(String),
    /// The caller asked it to stop.
    #[error("stopped")]
    Stopped,
}

/// The first `max_secs` of `path`'s best audio stream (any file FFmpeg reads: an audio track or
/// a video), as mono `f32` at `rate`. `should_stop` is polled between packets.
pub fn read_mono(path: &std::path::Path, rate: u32, max_secs: f64, should_stop: &dyn Fn() -> bool) -> Result<Vec<f32>, ReadError> {
    use ffmpeg::format::sample::Type as SampleType;
    crate::init();
    let mut ictx = ffmpeg::format::input(&path).map_err(|e| ReadError::Invalid(format!("the file could not be read: {e}")))?;
    let stream = ictx.streams().best(ffmpeg::media::Type::Audio).ok_or_else(|| ReadError::Invalid("the file has no audio stream".into()))?;
    let mut decoder = AudioDecoder::open(&stream).map_err(|e| ReadError::Invalid(format!("the audio stream {e}")))?;
    let limit = (max_secs * f64::from(rate)) as usize;
    let mut resampler: Option<Resampler> = None;
    let mut out: Vec<f32> = Vec::new();
    let mut take = |f: &frame::Audio, out: &mut Vec<f32>| {
        if let Some(mono) = Resampler::fit(&mut resampler, f, Sample::F32(SampleType::Packed), ChannelLayout::MONO, rate).and_then(|r| r.run(f)) {
            let n = mono.samples();
            // Packed mono: the first plane holds every sample.
            out.extend(mono.plane::<f32>(0).iter().take(n));
        }
    };
    for (s, packet) in ictx.packets() {
        if should_stop() {
            return Err(ReadError::Stopped);
        }
        if s.index() != decoder.index() {
            continue;
        }
        decoder.send(&packet, |f| take(f, &mut out));
        if out.len() >= limit {
            break;
        }
    }
    if out.len() < limit {
        decoder.finish(|f| take(f, &mut out));
    }
    out.truncate(limit);
    Ok(out)
}
