//! Quality analysis: how good a video is as a vertical short, and what to fix.
//!
//! [`analyze`] turns one [`DecodeOutput`] and the file's [`Probe`] into sub-scores from 0 to
//! 100, each with the values measured and one sentence of advice a creator can act on, and an
//! overall score: the weighted mean of the sub-scores that apply.
//!
//! # Rubric (version 1)
//! Scores are piecewise linear between the anchor points listed with each sub-score; below the
//! first and above the last point they stay flat. Grades: 80 and up is `good`, 55 and up
//! `fair`, below that `poor`. The anchors were set from published platform guidance and common
//! practice (EBU R128, the platforms' upload recommendations, the usual blur thresholds for the
//! variance of the Laplacian) and checked on generated clips; they are a starting point to
//! refine against human ratings.
//!
//! | key | weight | measure | anchors |
//! | --- | --- | --- | --- |
//! | `sharpness` | 1.5 | median Laplacian variance, luma at ≤480p | 20→10, 50→40, 100→70, 200→90, 400→100 (log scale) |
//! | `exposure` | 1.5 | median luma, crushed (≤16) and blown (≥245) shares | 100 minus penalties: luma below 60 or above 190, crushed above 5 %, blown above 3 % |
//! | `contrast` | 0.75 | median luma standard deviation | 10→10, 20→45, 35→80, 50→100 |
//! | `colourfulness` | 0.5 | median Hasler–Süsstrunk M of the picture area, thumbnails of the lit frames | 0→25, 15→50, 33→80, 45→100 |
//! | `noise` | 0.75 | median noise σ in flat regions | 1→100, 2.5→90, 5→60, 8→30, 12→10 |
//! | `motion` | 0.75 | mean frame difference (0–255) outside cuts | 0→45, 0.5→55, 2→90, 4→100, 20→100, 35→75, 60→40 |
//! | `stability` | 1.0 | median frame-to-frame change of the global shift (% of frame) | 0.3→100, 0.6→90, 1→70, 2→40, 4→10 |
//! | `pacing` | 0.5 | scene cuts per minute | 0→70, 3→85, 6→100, 40→100, 90→70, 150→40 |
//! | `continuity` | 1.0 | black (≥0.5 s) and frozen (≥1.5 s) stretches, share of duration | 100 − 250 × share |
//! | `hook` | 1.5 | first 3 s: motion, a cut, no black opening, sound and speech onsets | points: motion up to 35, cut 15, opening 10, sound 20, speech 20 |
//! | `aspect_ratio` | 1.5 | picture aspect (bars excluded) against 9:16 | 100 − 70 × \|ln(ratio / 0.5625)\| (4:5 ≈ 75, 1:1 ≈ 60, 16:9 ≈ 20), at least 10 |
//! | `resolution` | 1.0 | short side of the picture | 240→15, 360→35, 480→50, 540→55, 720→75, 1080→100 |
//! | `frame_rate` | 0.75 | measured frames per second | 10→15, 15→40, 24→85, 29→100 |
//! | `bitrate` | 0.75 | video bits per pixel per frame | 0.01→10, 0.02→35, 0.05→70, 0.1→100 |
//! | `duration` | 1.0 | seconds | 0→0, 3→30, 7→100, 60→100, 90→85, 180→60, 600→30 |
//! | `loudness` | 1.25 | EBU R128 integrated loudness | 100 − 6 per LU beyond ±1 LU of −14 LUFS; silence or no track 0 |
//! | `true_peak` | 0.5 | EBU R128 true peak | −1→100, 0→60, 2→10 dBTP |
//! | `clipping` | 1.0 | share of clipped samples | 0→100, 1e-5→95, 1e-4→80, 1e-3→50, 1e-2→5 (log scale) |
//! | `silence` | 1.0 | share of 25 ms frames below −50 dBFS | 0.1→100, 0.3→75, 0.6→35, 0.9→5, 1→0 |
//! | `tone` | 0.25 | mean spectral centroid | 200→30, 500→70, 800→100, 3500→100, 5000→70, 7000→40 Hz |
//!
//! Why these targets: TikTok, Reels and Shorts are 9:16 at 1080×1920 and letterboxed or small
//! uploads are shown with bars or upscaled; they normalise playback to about −14 LUFS and
//! re-encode, so overs above −1 dBTP clip; viewers decide in the first seconds, so the hook
//! rewards early motion, a cut and sound; completion rates favour 7–60 s.

mod delivery;
mod motion;
mod picture;
mod sound;

use serde::Serialize;
use serde_json::{Map, Value};

use super::audio::AudioFeatures;
use super::decode::{DecodeOutput, FrameStats};
use super::probe::Probe;

/// Version of the rubric above; bump it when anchors or measurements change so stored results
/// can be told apart. 2: every frame is measured whenever statistics are on (no frames skipped
/// near sample times), and colourfulness is measured on every statistics frame.
pub const RUBRIC_VERSION: u32 = 2;

/// A coarse verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    Good,
    Fair,
    Poor,
    /// The sub-score does not apply (no audio analysed, nothing to measure).
    NotApplicable,
}

impl Grade {
    fn of(score: Option<u8>) -> Self {
        match score {
            Some(s) if s >= 80 => Self::Good,
            Some(s) if s >= 55 => Self::Fair,
            Some(_) => Self::Poor,
            None => Self::NotApplicable,
        }
    }
}

/// One aspect of quality.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubScore {
    /// Stable key (`sharpness`, `loudness`, …).
    pub key: &'static str,
    /// Human name.
    pub label: &'static str,
    /// 0–100; `None` when it does not apply.
    pub score: Option<u8>,
    pub grade: Grade,
    /// Weight in the overall score.
    pub weight: f64,
    /// The values behind the score, with units in their names.
    pub measured: Map<String, Value>,
    /// One sentence a creator can act on.
    pub advice: String,
}

/// The quality analysis result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QualityReport {
    pub rubric_version: u32,
    /// Weighted mean of the applicable sub-scores.
    pub overall: u8,
    pub grade: Grade,
    /// Advice of the sub-scores that cost the most points, worst first (at most three).
    pub top_advice: Vec<String>,
    pub scores: Vec<SubScore>,
    /// Features of the audio track (MFCC summary, speech ratio…), when analysed.
    pub audio_features: Option<AudioFeatures>,
}

impl QualityReport {
    /// The sub-score with this key.
    pub fn get(&self, key: &str) -> Option<&SubScore> {
        self.scores.iter().find(|s| s.key == key)
    }

    /// The score of the sub-score with this key, if it applies.
    pub fn score(&self, key: &str) -> Option<u8> {
        self.get(key).and_then(|s| s.score)
    }
}

/// Scores a decoded video. `decoded` should come from a decode with frame statistics, scene
/// detection and audio on (the default [`super::decode::DecodeOptions`]); sub-scores whose
/// inputs are missing are marked not applicable.
///
/// Only the statistics, scene cuts, audio, frame size and the packet-based figures of the
/// report are read, never the sampled frames, so the result does not depend on the sampling,
/// frame size, sample limits or strategy of the decode (see
/// [`super::decode::DecodeOptions::with_model_frames`]).
pub fn analyze(probe: &Probe, decoded: &DecodeOutput) -> QualityReport {
    let features = decoded.audio.as_ref().map(|a| AudioFeatures::compute(&a.samples));
    let ctx = Context::new(probe, decoded, features.as_ref());
    let mut scores = Vec::new();
    scores.extend(picture::scores(&ctx));
    scores.extend(motion::scores(&ctx));
    scores.extend(delivery::scores(&ctx));
    scores.extend(sound::scores(&ctx));

    let (mut sum, mut weights) = (0.0, 0.0);
    for s in &scores {
        if let Some(v) = s.score {
            sum += f64::from(v) * s.weight;
            weights += s.weight;
        }
    }
    let overall = if weights > 0.0 { (sum / weights).round().clamp(0.0, 100.0) as u8 } else { 0 };
    let mut costly: Vec<&SubScore> = scores.iter().filter(|s| s.score.is_some_and(|v| v < 80)).collect();
    costly.sort_by(|a, b| cost(b).total_cmp(&cost(a)));
    let top_advice = costly.iter().take(3).map(|s| s.advice.clone()).collect();
    QualityReport { rubric_version: RUBRIC_VERSION, overall, grade: Grade::of(Some(overall)), top_advice, scores, audio_features: features }
}

fn cost(s: &SubScore) -> f64 {
    s.score.map_or(0.0, |v| (100.0 - f64::from(v)) * s.weight)
}

/// What the sub-score modules read.
struct Context<'a> {
    probe: &'a Probe,
    decoded: &'a DecodeOutput,
    features: Option<&'a AudioFeatures>,
    /// Statistics frames that are not black.
    lit: Vec<&'a FrameStats>,
    duration: f64,
}

impl<'a> Context<'a> {
    fn new(probe: &'a Probe, decoded: &'a DecodeOutput, features: Option<&'a AudioFeatures>) -> Self {
        let lit = decoded.frame_stats.iter().filter(|f| !is_black(f)).collect();
        let duration = if decoded.duration_secs > 0.0 { decoded.duration_secs } else { probe.duration_secs.max(0.0) };
        Self { probe, decoded, features, lit, duration }
    }
}

/// A frame is black when it is dark and flat: mean luma below 18 and spread below 10.
fn is_black(f: &FrameStats) -> bool {
    f.luma_mean < 18.0 && f.luma_std < 10.0
}

/// Builds a sub-score.
fn sub(key: &'static str, label: &'static str, weight: f64, score: Option<f64>, measured: Value, advice: String) -> SubScore {
    let score = score.map(|s| s.round().clamp(0.0, 100.0) as u8);
    let measured = match measured {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    SubScore { key, label, score, grade: Grade::of(score), weight, measured, advice }
}

/// Piecewise-linear interpolation through `points` (sorted by x), flat outside them.
fn curve(x: f64, points: &[(f64, f64)]) -> f64 {
    let Some(&(x0, y0)) = points.first() else { return 0.0 };
    if x.is_nan() {
        return y0;
    }
    if x <= x0 {
        return y0;
    }
    for w in points.windows(2) {
        let ((xa, ya), (xb, yb)) = (w[0], w[1]);
        if x <= xb {
            return if xb > xa { ya + (yb - ya) * (x - xa) / (xb - xa) } else { yb };
        }
    }
    points.last().map_or(y0, |p| p.1)
}

/// [`curve`] on a log10 scale of `x` (anchors given in linear units).
fn log_curve(x: f64, points: &[(f64, f64)]) -> f64 {
    let logged: Vec<(f64, f64)> = points.iter().map(|(px, py)| (px.max(1e-12).log10(), *py)).collect();
    curve(x.max(1e-12).log10(), &logged)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// Rounds for display in JSON.
fn r1(x: f64) -> f64 {
    // Adding zero turns −0.0 into 0.0.
    (x * 10.0).round() / 10.0 + 0.0
}

fn r2(x: f64) -> f64 {
    // Adding zero turns −0.0 into 0.0.
    (x * 100.0).round() / 100.0 + 0.0
}

fn r4(x: f64) -> f64 {
    // Adding zero turns −0.0 into 0.0.
    (x * 10_000.0).round() / 10_000.0 + 0.0
}

#[cfg(test)]
mod tests;
