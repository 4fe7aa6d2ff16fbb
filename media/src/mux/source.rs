//! The audio a new soundtrack is made from: a file's audio stream, decoded and resampled to
//! 48 kHz stereo as the mixer asks for it.

use std::collections::VecDeque;
use std::path::Path;

use ffmpeg::format::Sample;
use ffmpeg::format::sample::Type as SampleType;
use ffmpeg::{ChannelLayout, Packet, frame, media};
use ffmpeg_next as ffmpeg;

use super::OUTPUT_RATE;
use crate::pcm::{AudioDecoder, Resampler};

/// One file's audio stream, decoded and resampled to 48 kHz stereo planar `f32` on demand.
/// Reads stop at the end of the stream; after that it gives silence.
pub(super) struct PcmSource {
    ictx: ffmpeg::format::context::Input,
    decoder: AudioDecoder,
    pcm: Stereo,
    /// Samples of silence still to give before the decoded ones.
    pad: usize,
    ended: bool,
}

/// Decoded audio waiting to be read, and the resampler that makes it.
struct Stereo {
    resampler: Option<Resampler>,
    left: VecDeque<f32>,
    right: VecDeque<f32>,
}

impl Stereo {
    fn push(&mut self, out: &frame::Audio) {
        if out.samples() > 0 && out.planes() >= 2 {
            self.left.extend(out.plane::<f32>(0));
            self.right.extend(out.plane::<f32>(1));
        }
    }

    fn on_frame(&mut self, f: &frame::Audio) {
        if let Some(out) =
            Resampler::fit(&mut self.resampler, f, Sample::F32(SampleType::Planar), ChannelLayout::STEREO, OUTPUT_RATE).and_then(|r| r.run(f))
        {
            self.push(&out);
        }
    }
}

impl PcmSource {
    /// Opens `path`'s audio stream (`index`, or the best one).
    pub fn open(path: &Path, index: Option<usize>) -> Result<Self, String> {
        let ictx = ffmpeg::format::input(&path).map_err(|e| format!("could not be read as audio: {e}"))?;
        let stream = match index {
            Some(i) => ictx.stream(i),
            None => ictx.streams().best(media::Type::Audio),
        }
        .ok_or("has no audio stream")?;
        let decoder = AudioDecoder::open(&stream).map_err(|e| e.to_string())?;
        Ok(Self { ictx, decoder, pcm: Stereo { resampler: None, left: VecDeque::new(), right: VecDeque::new() }, pad: 0, ended: false })
    }

    /// Decodes until some audio is buffered; false when the stream gives none at all.
    pub fn prime(&mut self) -> bool {
        while self.pcm.left.is_empty() && !self.ended {
            self.decode_more();
        }
        !self.pcm.left.is_empty()
    }

    pub fn pad_front(&mut self, samples: usize) {
        self.pad += samples;
    }

    /// Drops `samples` from the front; returns how many there were to drop.
    pub fn skip(&mut self, samples: usize) -> usize {
        self.take(samples, |left, right, n| {
            left.drain(..n);
            right.drain(..n);
        })
    }

    /// Fills both slices (equal lengths); returns how many samples were real audio, the rest
    /// being silence (leading padding or past the end).
    pub fn read(&mut self, left: &mut [f32], right: &mut [f32]) -> usize {
        let n = left.len();
        let pad = self.pad.min(n);
        left[..pad].fill(0.0);
        right[..pad].fill(0.0);
        self.pad -= pad;
        let mut at = pad;
        let real = self.take(n - pad, |l, r, take| {
            for (dst, src) in left[at..at + take].iter_mut().zip(l.drain(..take)) {
                *dst = src;
            }
            for (dst, src) in right[at..at + take].iter_mut().zip(r.drain(..take)) {
                *dst = src;
            }
            at += take;
        });
        left[at..].fill(0.0);
        right[at..].fill(0.0);
        real
    }

    /// Hands up to `samples` buffered samples to `each`, in runs (`each` must drain the count
    /// it is given from both channels), decoding more as needed; returns how many there were.
    fn take(&mut self, samples: usize, mut each: impl FnMut(&mut VecDeque<f32>, &mut VecDeque<f32>, usize)) -> usize {
        let mut taken = 0;
        while taken < samples {
            if self.pcm.left.is_empty() {
                if self.ended {
                    break;
                }
                self.decode_more();
                continue;
            }
            let n = (samples - taken).min(self.pcm.left.len());
            each(&mut self.pcm.left, &mut self.pcm.right, n);
            taken += n;
        }
        taken
    }

    /// Reads packets until at least one decoded frame was buffered or the stream ended.
    fn decode_more(&mut self) {
        let before = self.pcm.left.len();
        let mut packet = Packet::empty();
        let mut refused = 0u32;
        while self.pcm.left.len() == before && !self.ended {
            match packet.read(&mut self.ictx) {
                Ok(()) => {
                    if packet.stream() != self.decoder.index() {
                        continue;
                    }
                    // A corrupt packet costs its samples, not the track; a stream of nothing
                    // but corrupt packets ends it.
                    if !self.decoder.send(&packet, |f| self.pcm.on_frame(f)) {
                        refused += 1;
                        if refused > 1000 {
                            self.finish();
                        }
                    }
                }
                Err(ffmpeg::Error::Other { errno }) if errno == ffmpeg::util::error::EAGAIN => {}
                Err(_) => self.finish(),
            }
        }
    }

    fn finish(&mut self) {
        self.decoder.finish(|f| self.pcm.on_frame(f));
        if let Some(mut r) = self.pcm.resampler.take() {
            r.flush(|out| self.pcm.push(out));
        }
        self.ended = true;
    }
}
