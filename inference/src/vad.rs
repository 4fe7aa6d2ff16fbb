//! Voice activity with Silero VAD: a speech probability per 32 ms window of 16 kHz mono audio,
//! carried through the model's recurrent state, turned into speech segments and a speech ratio.

use std::sync::Arc;

use ort::value::Tensor;
use serde::Serialize;

use super::{InferenceError, Model, ModelId, ModelStore, Runtime};

pub const MODEL: &str = "silero-vad";
pub const SAMPLE_RATE: u32 = 16_000;
const WINDOW: usize = 512;
/// The model sees the last 64 samples of the previous window before each new one.
const CONTEXT: usize = 64;
const STATE: usize = 2 * 128;

/// Thresholds and durations, with Silero's recommended defaults.
#[derive(Debug, Clone, Copy)]
pub struct VadOptions {
    /// A window is speech from this probability…
    pub threshold: f32,
    /// …and speech continues until the probability falls below this one.
    pub neg_threshold: f32,
    /// Shorter bursts are not speech.
    pub min_speech_ms: u32,
    /// Shorter pauses do not split a segment.
    pub min_silence_ms: u32,
    /// Added around each segment, to keep word edges.
    pub pad_ms: u32,
}

impl Default for VadOptions {
    fn default() -> Self {
        Self { threshold: 0.5, neg_threshold: 0.35, min_speech_ms: 250, min_silence_ms: 100, pad_ms: 30 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SpeechSegment {
    pub start: f64,
    pub end: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VoiceActivity {
    /// Seconds of speech over seconds of audio, 0..=1.
    pub speech_ratio: f32,
    pub segments: Vec<SpeechSegment>,
    pub duration: f64,
    pub model: ModelId,
}

#[derive(Debug, Clone)]
pub struct Vad {
    model: Arc<Model>,
}

impl Vad {
    pub fn load(runtime: &Runtime, store: &dyn ModelStore) -> Result<Self, InferenceError> {
        Ok(Self { model: Model::load(runtime, store, MODEL)? })
    }

    pub fn new(model: Arc<Model>) -> Self {
        Self { model }
    }

    /// Speech probability of each 512-sample window of 16 kHz mono `samples` (the last partial
    /// window is zero-padded).
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>, InferenceError> {
        let err = |e| self.model.session_error(e);
        let mut state = vec![0f32; STATE];
        let mut context = [0f32; CONTEXT];
        let mut probs = Vec::with_capacity(samples.len().div_ceil(WINDOW));
        let mut session = self.model.session();
        for chunk in samples.chunks(WINDOW) {
            let mut input = Vec::with_capacity(CONTEXT + WINDOW);
            input.extend_from_slice(&context);
            input.extend_from_slice(chunk);
            input.resize(CONTEXT + WINDOW, 0.0);
            context.copy_from_slice(&input[WINDOW..]);
            let outputs = session
                .run(ort::inputs![
                    "input" => Tensor::from_array((vec![1i64, (CONTEXT + WINDOW) as i64], input)).map_err(err)?,
                    "state" => Tensor::from_array((vec![2i64, 1, 128], state)).map_err(err)?,
                    "sr" => Tensor::from_array((Vec::<i64>::new(), vec![i64::from(SAMPLE_RATE)])).map_err(err)?,
                ])
                .map_err(err)?;
            let (_, p) = outputs["output"].try_extract_tensor::<f32>().map_err(err)?;
            probs.push(*p.first().ok_or_else(|| self.model.output_error("empty output"))?);
            let (_, next) = outputs["stateN"].try_extract_tensor::<f32>().map_err(err)?;
            if next.len() != STATE {
                return Err(self.model.output_error(format!("state of {} values", next.len())));
            }
            state = next.to_vec();
        }
        Ok(probs)
    }

    /// Speech segments and the speech ratio of 16 kHz mono `samples`.
    pub fn detect(&self, samples: &[f32], options: &VadOptions) -> Result<VoiceActivity, InferenceError> {
        let probs = self.probabilities(samples)?;
        let duration = samples.len() as f64 / f64::from(SAMPLE_RATE);
        let segments = segments(&probs, duration, options);
        let speech = segments.iter().fold(0.0, |acc, s| acc + (s.end - s.start));
        let speech_ratio = if duration > 0.0 { (speech / duration).clamp(0.0, 1.0) as f32 } else { 0.0 };
        Ok(VoiceActivity { speech_ratio, segments, duration, model: self.model.id() })
    }
}

/// Hysteresis over window probabilities, as Silero's `get_speech_timestamps` does.
fn segments(probs: &[f32], duration: f64, o: &VadOptions) -> Vec<SpeechSegment> {
    let win = WINDOW as f64 / f64::from(SAMPLE_RATE);
    let min_speech = f64::from(o.min_speech_ms) / 1000.0;
    let min_silence = f64::from(o.min_silence_ms) / 1000.0;
    let pad = f64::from(o.pad_ms) / 1000.0;
    let mut raw: Vec<(f64, f64)> = Vec::new();
    let mut start: Option<f64> = None;
    let mut silence_from: Option<f64> = None;
    for (i, &p) in probs.iter().enumerate() {
        let t = i as f64 * win;
        match start {
            None if p >= o.threshold => {
                start = Some(t);
                silence_from = None;
            }
            Some(_) if p >= o.threshold => silence_from = None,
            Some(s) if p < o.neg_threshold => {
                let from = *silence_from.get_or_insert(t);
                if t + win - from >= min_silence {
                    raw.push((s, from));
                    start = None;
                    silence_from = None;
                }
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        raw.push((s, silence_from.unwrap_or(probs.len() as f64 * win)));
    }
    let mut out: Vec<SpeechSegment> = Vec::new();
    for (s, e) in raw.into_iter().filter(|(s, e)| e - s >= min_speech) {
        let (s, e) = ((s - pad).max(0.0), (e + pad).min(duration));
        match out.last_mut() {
            Some(last) if s <= last.end => last.end = last.end.max(e),
            _ => out.push(SpeechSegment { start: s, end: e }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn hysteresis_keeps_short_pauses_inside_a_segment() {
        // 1 s speech, 64 ms pause (2 windows), 1 s speech, then 1 s silence.
        let mut probs = vec![0.9; 31];
        probs.extend([0.1, 0.1]);
        probs.extend(vec![0.9; 31]);
        probs.extend(vec![0.0; 31]);

        let segs = segments(&probs, 95.0 * 0.032, &VadOptions::default());

        assert_eq!(segs.len(), 1, "{segs:?}");
        assert!((segs[0].end - 2.08).abs() < 0.1, "{segs:?}");
    }

    #[test]
    fn speech_has_a_high_ratio_and_silence_a_low_one() {
        let (runtime, store) = testing::runtime_and_store();
        let vad = Vad::load(&runtime, &store).expect("load VAD");
        let speech = testing::espeak("Today we are cooking a simple tomato pasta. Boil the water, add salt, and cook the pasta for ten minutes.");
        let silence = vec![0f32; 16_000 * 5];
        let noise = testing::ffmpeg_audio(&["-f", "lavfi", "-i", "anoisesrc=d=5:c=pink:a=0.02"]);

        let started = std::time::Instant::now();
        let on_speech = vad.detect(&speech, &VadOptions::default()).expect("vad speech");
        let took = started.elapsed();
        let on_silence = vad.detect(&silence, &VadOptions::default()).expect("vad silence");
        let on_noise = vad.detect(&noise, &VadOptions::default()).expect("vad noise");
        eprintln!(
            "vad: speech {:.2} over {:.1}s in {took:?} ({} segments), silence {:.2}, noise {:.2}",
            on_speech.speech_ratio,
            on_speech.duration,
            on_speech.segments.len(),
            on_silence.speech_ratio,
            on_noise.speech_ratio
        );

        assert!(on_speech.speech_ratio > 0.6, "{on_speech:?}");
        assert!(on_silence.speech_ratio < 0.05 && on_silence.segments.is_empty(), "{on_silence:?}");
        assert!(on_noise.speech_ratio < 0.2, "{on_noise:?}");
        assert_eq!(on_speech.model.name, MODEL);
    }
}
