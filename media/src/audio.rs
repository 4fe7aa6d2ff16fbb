//! Audio measurements: EBU R128 levels and clipping on the source signal, and features of the
//! 16 kHz mono track (silence, spectral centroid, MFCC summary, an energy-based speech ratio).
//!
//! Everything here is plain arithmetic over `f32` samples, so it is tested without FFmpeg. The
//! decoder feeds [`LevelMeter`] with each decoded frame at the source rate and channel layout
//! (loudness and true peak must be measured on the signal listeners get, not on a downmix), and
//! hands the 16 kHz mono track to [`AudioFeatures::compute`] afterwards.

use std::sync::Arc;

use ebur128::{Channel, EbuR128, Mode};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::Serialize;

/// Rate of the analysis track the decoder produces.
pub const ANALYSIS_RATE: u32 = 16_000;

/// A sample at or above this magnitude (relative to full scale) counts towards clipping when it
/// belongs to a run of [`CLIP_RUN`] or more such samples in one channel. Lossy codecs smear a
/// hard-clipped flat top into a ripple just below and above 1.0, hence the margin; a run is
/// required so that a single legitimate peak near full scale is not called clipping.
const CLIP_LEVEL: f32 = 0.98;
/// See [`CLIP_LEVEL`].
const CLIP_RUN: u32 = 2;

/// Levels of the source audio, measured at its own rate and channel layout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioLevels {
    /// Source sample rate.
    pub sample_rate: u32,
    /// Source channels (after a downmix to stereo for layouts over six channels).
    pub channels: u32,
    /// Seconds measured.
    pub duration_secs: f64,
    /// EBU R128 integrated loudness (LUFS); `None` when the signal never rises above the
    /// absolute gate (−70 LUFS), i.e. silence.
    pub integrated_lufs: Option<f64>,
    /// EBU R128 loudness range (LU).
    pub loudness_range_lu: Option<f64>,
    /// Maximum true peak over all channels (dBTP, 4× oversampled below 96 kHz).
    pub true_peak_dbtp: Option<f64>,
    /// Maximum sample peak over all channels (dBFS).
    pub sample_peak_dbfs: Option<f64>,
    /// Samples (over all channels) that belong to clipped runs.
    pub clipped_samples: u64,
    /// `clipped_samples` over all samples measured.
    pub clipped_ratio: f64,
    /// Samples whose magnitude exceeds full scale (only float codecs can carry them; any
    /// player clips them).
    pub over_samples: u64,
}

/// Measures loudness, peaks and clipping as frames arrive, in constant memory.
pub struct LevelMeter {
    meter: EbuR128,
    channels: u32,
    rate: u32,
    runs: Vec<u32>,
    clipped: u64,
    overs: u64,
    frames: u64,
}

impl std::fmt::Debug for LevelMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LevelMeter").field("channels", &self.channels).field("rate", &self.rate).field("frames", &self.frames).finish()
    }
}

impl LevelMeter {
    /// A meter for `channels` planar channels at `rate` Hz, or `None` when the combination is
    /// outside what EBU R128 metering supports (no channels, more than 64, or a rate below
    /// 16 Hz or above 2.8 MHz).
    ///
    /// Mono is weighted as dual mono (counted twice): a mono track plays from both speakers of
    /// a phone, and that is how loudness-normalising platforms hear it.
    pub fn new(channels: u32, rate: u32) -> Option<Self> {
        let mode = Mode::I | Mode::LRA | Mode::TRUE_PEAK | Mode::SAMPLE_PEAK | Mode::HISTOGRAM;
        let mut meter = EbuR128::new(channels, rate, mode).ok()?;
        if channels == 1 {
            meter.set_channel(0, Channel::DualMono).ok()?;
        }
        Some(Self { meter, channels, rate, runs: vec![0; channels as usize], clipped: 0, overs: 0, frames: 0 })
    }

    /// Channels this meter expects.
    pub fn channels(&self) -> u32 {
        self.channels
    }

    /// Sample rate this meter expects.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Adds one block of planar samples (one slice per channel, all the same length). Blocks
    /// of the wrong shape are ignored rather than trusted.
    pub fn push_planar(&mut self, planes: &[&[f32]]) {
        if planes.len() != self.channels as usize {
            return;
        }
        let n = planes.first().map_or(0, |p| p.len());
        if n == 0 || planes.iter().any(|p| p.len() != n) {
            return;
        }
        for (ch, plane) in planes.iter().enumerate() {
            let mut run = self.runs[ch];
            for &x in *plane {
                let a = x.abs();
                if a > 1.0 {
                    self.overs += 1;
                }
                if a >= CLIP_LEVEL {
                    run += 1;
                    if run == CLIP_RUN {
                        self.clipped += u64::from(CLIP_RUN);
                    } else if run > CLIP_RUN {
                        self.clipped += 1;
                    }
                } else {
                    run = 0;
                }
            }
            self.runs[ch] = run;
        }
        // NaN or infinite samples would poison the meter's running sums; such a block is
        // counted for clipping above but kept out of the loudness measurement.
        if planes.iter().all(|p| p.iter().all(|x| x.is_finite())) && self.meter.add_frames_planar_f32(planes).is_ok() {
            self.frames += n as u64;
        }
    }

    /// The measurements so far.
    pub fn finish(&self) -> AudioLevels {
        let finite = |v: f64| v.is_finite().then_some(v);
        let db = |v: f64| if v > 0.0 { finite(20.0 * v.log10()) } else { None };
        let max_over = |f: &dyn Fn(u32) -> Result<f64, ebur128::Error>| {
            (0..self.channels).filter_map(|c| f(c).ok()).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        let integrated = self.meter.loudness_global().ok().and_then(finite).filter(|l| *l > -70.0);
        let lra = if integrated.is_some() { self.meter.loudness_range().ok().and_then(finite) } else { None };
        let true_peak = max_over(&|c| self.meter.true_peak(c)).and_then(db);
        let sample_peak = max_over(&|c| self.meter.sample_peak(c)).and_then(db);
        let total = self.frames.saturating_mul(u64::from(self.channels));
        AudioLevels {
            sample_rate: self.rate,
            channels: self.channels,
            duration_secs: self.frames as f64 / f64::from(self.rate.max(1)),
            integrated_lufs: integrated,
            loudness_range_lu: lra,
            true_peak_dbtp: true_peak,
            sample_peak_dbfs: sample_peak,
            clipped_samples: self.clipped,
            clipped_ratio: if total == 0 { 0.0 } else { self.clipped as f64 / total as f64 },
            over_samples: self.overs,
        }
    }
}

/// Analysis frame: 25 ms at 16 kHz.
const FRAME: usize = 400;
/// Hop: 10 ms at 16 kHz.
const HOP: usize = 160;
/// FFT size (zero-padded frame).
const NFFT: usize = 512;
/// Mel filters before the DCT.
const MEL_FILTERS: usize = 26;
/// MFCCs kept (c0 … c12).
pub const MFCC_COUNT: usize = 13;
/// A 25 ms frame below this RMS level (dBFS) is silence: room tone of a quiet recording sits
/// around −60 dBFS, speech and music well above −40.
pub const SILENCE_DBFS: f64 = -50.0;
/// A frame above this level counts as the start of sound for the hook.
pub const ONSET_DBFS: f64 = -40.0;

/// Features of the 16 kHz mono analysis track.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AudioFeatures {
    /// Seconds of audio analysed.
    pub duration_secs: f64,
    /// RMS level over the whole track (dBFS); `None` for digital silence.
    pub rms_dbfs: Option<f64>,
    /// Share of 25 ms frames quieter than −50 dBFS.
    pub silence_ratio: f64,
    /// Longest run of silent frames, in seconds.
    pub longest_silence_secs: f64,
    /// Mean spectral centroid of the non-silent frames (Hz); `None` when all is silent.
    pub spectral_centroid_hz: Option<f64>,
    /// Mean of each of the 13 MFCCs (c0 … c12, 26 mel filters, 20 Hz–8 kHz) over non-silent
    /// frames; zeros when all is silent.
    pub mfcc_mean: Vec<f64>,
    /// Standard deviation of each MFCC over the same frames.
    pub mfcc_std: Vec<f64>,
    /// Share of frames that look like speech.
    ///
    /// Energy-based: a frame counts when it is at least 12 dB above the track's noise floor and
    /// at least 60 % of its energy lies in the voice band (300–3400 Hz), smoothed over 150 ms.
    /// Tonal music in the voice band counts too. The VAD model replaces this estimate when it
    /// is available.
    pub speech_ratio: f64,
    /// Time of the first speech-like frame (s).
    pub speech_onset_secs: Option<f64>,
    /// Time of the first frame louder than −40 dBFS (s).
    pub sound_onset_secs: Option<f64>,
}

/// Per-frame measurements kept while computing [`AudioFeatures`].
struct FrameFeatures {
    db: f64,
    band_ratio: f64,
}

impl AudioFeatures {
    /// Computes the features of a 16 kHz mono track. Any length is accepted, including none.
    pub fn compute(samples: &[f32]) -> Self {
        let rate = f64::from(ANALYSIS_RATE);
        let duration_secs = samples.len() as f64 / rate;
        let energy: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
        let rms_dbfs =
            if samples.is_empty() || energy <= 0.0 { None } else { Some(10.0 * (energy / samples.len() as f64).log10()).filter(|v| v.is_finite()) };

        let analyser = Spectral::new();
        let mut frames: Vec<FrameFeatures> = Vec::new();
        let mut centroid_sum = 0.0;
        let mut voiced = 0usize;
        let mut mfcc_sum = [0.0f64; MFCC_COUNT];
        let mut mfcc_sq = [0.0f64; MFCC_COUNT];
        let mut scratch = analyser.scratch();
        let mut start = 0;
        while start + FRAME <= samples.len() {
            let frame = &samples[start..start + FRAME];
            let e: f64 = frame.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>() / FRAME as f64;
            let db = if e > 0.0 { 10.0 * e.log10() } else { -120.0 };
            let db = if db.is_finite() { db } else { -120.0 };
            let mut band_ratio = 0.0;
            if db >= SILENCE_DBFS {
                let spec = analyser.frame(frame, &mut scratch);
                band_ratio = spec.band_ratio;
                centroid_sum += spec.centroid;
                for (i, c) in spec.mfcc.iter().enumerate() {
                    mfcc_sum[i] += c;
                    mfcc_sq[i] += c * c;
                }
                voiced += 1;
            }
            frames.push(FrameFeatures { db, band_ratio });
            start += HOP;
        }

        let hop_secs = HOP as f64 / rate;
        let silent: Vec<bool> = frames.iter().map(|f| f.db < SILENCE_DBFS).collect();
        let silence_ratio = if frames.is_empty() {
            if rms_dbfs.is_some_and(|r| r >= SILENCE_DBFS) { 0.0 } else { 1.0 }
        } else {
            silent.iter().filter(|s| **s).count() as f64 / frames.len() as f64
        };
        let longest_silence_secs = longest_run(&silent) as f64 * hop_secs;
        let (mfcc_mean, mfcc_std) = if voiced == 0 {
            (vec![0.0; MFCC_COUNT], vec![0.0; MFCC_COUNT])
        } else {
            let n = voiced as f64;
            let mean: Vec<f64> = mfcc_sum.iter().map(|s| s / n).collect();
            let std = mfcc_sq.iter().zip(&mean).map(|(sq, m)| (sq / n - m * m).max(0.0).sqrt()).collect();
            (mean, std)
        };

        let speech = speech_frames(&frames);
        let speech_ratio = if frames.is_empty() { 0.0 } else { speech.iter().filter(|s| **s).count() as f64 / frames.len() as f64 };
        let speech_onset_secs = speech.iter().position(|s| *s).map(|i| i as f64 * hop_secs);
        let sound_onset_secs = frames.iter().position(|f| f.db >= ONSET_DBFS).map(|i| i as f64 * hop_secs);

        Self {
            duration_secs,
            rms_dbfs,
            silence_ratio,
            longest_silence_secs,
            spectral_centroid_hz: (voiced > 0).then(|| centroid_sum / voiced as f64),
            mfcc_mean,
            mfcc_std,
            speech_ratio,
            speech_onset_secs,
            sound_onset_secs,
        }
    }
}

fn longest_run(flags: &[bool]) -> usize {
    let (mut best, mut cur) = (0, 0);
    for &f in flags {
        cur = if f { cur + 1 } else { 0 };
        best = best.max(cur);
    }
    best
}

/// Energy-based speech decision per frame (see [`AudioFeatures::speech_ratio`]).
fn speech_frames(frames: &[FrameFeatures]) -> Vec<bool> {
    if frames.is_empty() {
        return Vec::new();
    }
    let mut dbs: Vec<f64> = frames.iter().map(|f| f.db).collect();
    dbs.sort_by(f64::total_cmp);
    // The 10th percentile is the noise floor of a recording with pauses; a track that never
    // pauses gets a floor no higher than −60 dBFS so that steady sound still counts.
    let floor = dbs[dbs.len() / 10].min(-60.0);
    let threshold = (floor + 12.0).max(SILENCE_DBFS);
    let raw: Vec<bool> = frames.iter().map(|f| f.db >= threshold && f.band_ratio >= 0.6).collect();
    // A 15-frame (150 ms) majority vote: syllables last longer than that, clicks do not.
    let half = 7usize;
    let mut prefix = vec![0usize; raw.len() + 1];
    for (i, r) in raw.iter().enumerate() {
        prefix[i + 1] = prefix[i] + usize::from(*r);
    }
    (0..raw.len())
        .map(|i| {
            let lo = i.saturating_sub(half);
            let hi = (i + half + 1).min(raw.len());
            (prefix[hi] - prefix[lo]) * 2 > hi - lo
        })
        .collect()
}

/// What one analysis frame's spectrum gives.
struct FrameSpectrum {
    centroid: f64,
    band_ratio: f64,
    mfcc: [f64; MFCC_COUNT],
}

/// FFT plan, window, mel filterbank and DCT matrix, built once per track.
struct Spectral {
    fft: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// Per mel filter: first bin and weights.
    mel: Vec<(usize, Vec<f64>)>,
    dct: Vec<[f64; MEL_FILTERS]>,
}

struct Scratch {
    buf: Vec<Complex<f32>>,
    fft: Vec<Complex<f32>>,
    power: Vec<f64>,
}

fn hz_to_mel(f: f64) -> f64 {
    2595.0 * (1.0 + f / 700.0).log10()
}

fn mel_to_hz(m: f64) -> f64 {
    700.0 * (10f64.powf(m / 2595.0) - 1.0)
}

impl Spectral {
    fn new() -> Self {
        let fft = FftPlanner::<f32>::new().plan_fft_forward(NFFT);
        // Periodic Hann window.
        let window = (0..FRAME).map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / FRAME as f64).cos()) as f32).collect();
        let bins = NFFT / 2 + 1;
        let bin_hz = f64::from(ANALYSIS_RATE) / NFFT as f64;
        let (lo, hi) = (hz_to_mel(20.0), hz_to_mel(f64::from(ANALYSIS_RATE) / 2.0));
        let points: Vec<f64> = (0..MEL_FILTERS + 2).map(|i| mel_to_hz(lo + (hi - lo) * i as f64 / (MEL_FILTERS + 1) as f64)).collect();
        let mut mel = Vec::with_capacity(MEL_FILTERS);
        for m in 0..MEL_FILTERS {
            let (left, centre, right) = (points[m], points[m + 1], points[m + 2]);
            let first = ((left / bin_hz).floor() as usize).min(bins - 1);
            let last = ((right / bin_hz).ceil() as usize).min(bins - 1);
            let weights = (first..=last)
                .map(|k| {
                    let f = k as f64 * bin_hz;
                    if f <= left || f >= right {
                        0.0
                    } else if f <= centre {
                        (f - left) / (centre - left)
                    } else {
                        (right - f) / (right - centre)
                    }
                })
                .collect();
            mel.push((first, weights));
        }
        // Orthonormal DCT-II.
        let dct = (0..MFCC_COUNT)
            .map(|k| {
                let scale = if k == 0 { (1.0 / MEL_FILTERS as f64).sqrt() } else { (2.0 / MEL_FILTERS as f64).sqrt() };
                let mut row = [0.0; MEL_FILTERS];
                for (n, r) in row.iter_mut().enumerate() {
                    *r = scale * (std::f64::consts::PI * k as f64 * (n as f64 + 0.5) / MEL_FILTERS as f64).cos();
                }
                row
            })
            .collect();
        Self { fft, window, mel, dct }
    }

    fn scratch(&self) -> Scratch {
        Scratch {
            buf: vec![Complex::new(0.0, 0.0); NFFT],
            fft: vec![Complex::new(0.0, 0.0); self.fft.get_inplace_scratch_len()],
            power: vec![0.0; NFFT / 2 + 1],
        }
    }

    fn frame(&self, samples: &[f32], s: &mut Scratch) -> FrameSpectrum {
        for (i, c) in s.buf.iter_mut().enumerate() {
            let x = if i < samples.len() { samples[i] * self.window[i] } else { 0.0 };
            *c = Complex::new(x, 0.0);
        }
        self.fft.process_with_scratch(&mut s.buf, &mut s.fft);
        let bin_hz = f64::from(ANALYSIS_RATE) / NFFT as f64;
        let (mut mag_sum, mut weighted, mut total, mut band) = (0.0, 0.0, 0.0, 0.0);
        for (k, p) in s.power.iter_mut().enumerate() {
            let c = s.buf[k];
            let pw = f64::from(c.re) * f64::from(c.re) + f64::from(c.im) * f64::from(c.im);
            *p = pw;
            let mag = pw.sqrt();
            let f = k as f64 * bin_hz;
            mag_sum += mag;
            weighted += mag * f;
            total += pw;
            if (300.0..=3400.0).contains(&f) {
                band += pw;
            }
        }
        let mut log_mel = [0.0f64; MEL_FILTERS];
        for (m, (first, weights)) in self.mel.iter().enumerate() {
            let e: f64 = weights.iter().enumerate().map(|(j, w)| w * s.power[first + j]).sum();
            log_mel[m] = (e + 1e-10).ln();
        }
        let mut mfcc = [0.0; MFCC_COUNT];
        for (k, row) in self.dct.iter().enumerate() {
            mfcc[k] = row.iter().zip(&log_mel).map(|(a, b)| a * b).sum();
        }
        FrameSpectrum { centroid: if mag_sum > 0.0 { weighted / mag_sum } else { 0.0 }, band_ratio: if total > 0.0 { band / total } else { 0.0 }, mfcc }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, amp: f32, secs: f64, rate: u32) -> Vec<f32> {
        let n = (secs * f64::from(rate)) as usize;
        (0..n).map(|i| amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin() as f32).collect()
    }

    #[test]
    fn loudness_of_a_full_scale_sine_matches_the_standard() {
        // EBU Tech 3341 case 1: a 1 kHz sine at −23 dBFS in both stereo channels reads
        // −23 LUFS; at −20 dBFS it reads −20 LUFS.
        let x = sine(1000.0, 0.1, 5.0, 48_000);
        let mut meter = LevelMeter::new(2, 48_000).expect("meter");
        for chunk in x.chunks(1024) {
            meter.push_planar(&[chunk, chunk]);
        }
        let levels = meter.finish();
        let lufs = levels.integrated_lufs.expect("loud enough");
        assert!((lufs - -20.0).abs() < 0.3, "{lufs}");
        let tp = levels.true_peak_dbtp.expect("peak");
        assert!((tp - -20.0).abs() < 0.3, "{tp}");
        assert_eq!(levels.clipped_samples, 0);
    }

    #[test]
    fn hard_clipping_is_counted_and_silence_has_no_loudness() {
        let x: Vec<f32> = sine(200.0, 3.0, 1.0, 48_000).into_iter().map(|v| v.clamp(-1.0, 1.0)).collect();
        let mut meter = LevelMeter::new(1, 48_000).expect("meter");
        meter.push_planar(&[&x]);
        let levels = meter.finish();
        assert!(levels.clipped_ratio > 0.3, "{levels:?}");

        let mut quiet = LevelMeter::new(1, 48_000).expect("meter");
        quiet.push_planar(&[&vec![0.0; 48_000]]);
        let levels = quiet.finish();
        assert_eq!(levels.integrated_lufs, None);
        assert_eq!(levels.true_peak_dbtp, None);
    }

    #[test]
    fn malformed_blocks_are_ignored() {
        let mut meter = LevelMeter::new(2, 48_000).expect("meter");
        meter.push_planar(&[&[0.5; 10]]);
        meter.push_planar(&[&[0.5; 10], &[0.5; 9]]);
        meter.push_planar(&[&[f32::NAN; 10], &[0.1; 10]]);
        assert_eq!(meter.finish().duration_secs, 0.0);
        assert!(LevelMeter::new(0, 48_000).is_none());
        assert!(LevelMeter::new(2, 0).is_none());
    }

    #[test]
    fn features_of_silence_tone_and_noise() {
        let silent = AudioFeatures::compute(&vec![0.0; 32_000]);
        assert_eq!(silent.silence_ratio, 1.0);
        assert_eq!(silent.spectral_centroid_hz, None);
        assert_eq!(silent.speech_onset_secs, None);
        assert!((silent.duration_secs - 2.0).abs() < 1e-9);

        let low = AudioFeatures::compute(&sine(500.0, 0.3, 2.0, ANALYSIS_RATE));
        let high = AudioFeatures::compute(&sine(5000.0, 0.3, 2.0, ANALYSIS_RATE));
        assert!(low.silence_ratio < 0.05);
        let (cl, ch) = (low.spectral_centroid_hz.expect("tone"), high.spectral_centroid_hz.expect("tone"));
        assert!(cl < 700.0 && ch > 4000.0, "{cl} {ch}");
        assert_eq!(low.mfcc_mean.len(), MFCC_COUNT);
        assert_ne!(low.mfcc_mean, high.mfcc_mean);
        // A voice-band tone counts as speech by energy alone; a 5 kHz whistle does not.
        assert!(low.speech_ratio > 0.9 && high.speech_ratio < 0.1, "{} {}", low.speech_ratio, high.speech_ratio);

        let mut late = vec![0.0; 16_000];
        late.extend(sine(500.0, 0.3, 1.0, ANALYSIS_RATE));
        let f = AudioFeatures::compute(&late);
        let onset = f.sound_onset_secs.expect("onset");
        assert!((onset - 0.98).abs() < 0.05, "{onset}");
        assert!((f.longest_silence_secs - 0.98).abs() < 0.05);

        let empty = AudioFeatures::compute(&[]);
        assert_eq!(empty.silence_ratio, 1.0);
    }
}
