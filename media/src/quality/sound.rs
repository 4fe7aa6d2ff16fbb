//! Audio sub-scores: loudness, true peak, clipping, silence and tone.

use serde_json::json;

use super::{Context, SubScore, curve, log_curve, r1, r2, sub};

/// Where TikTok, Reels and Shorts normalise playback (LUFS).
const TARGET_LUFS: f64 = -14.0;
/// The usual true-peak ceiling for lossy delivery (dBTP).
const PEAK_CEILING: f64 = -1.0;

pub(super) fn scores(ctx: &Context<'_>) -> Vec<SubScore> {
    let audio = ctx.decoded.audio.as_ref();
    let keys: [(&'static str, &'static str, f64); 5] = [
        ("loudness", "Loudness", 1.25),
        ("true_peak", "True peak", 0.5),
        ("clipping", "Clipping", 1.0),
        ("silence", "Silence", 1.0),
        ("tone", "Tone", 0.25),
    ];
    let (Some(audio), Some(features)) = (audio, ctx.features) else {
        if ctx.probe.audio.is_none() {
            // No track at all: short video is watched with sound on, so this costs the
            // loudness score; the other audio scores have nothing to judge.
            let mut out = vec![sub(
                "loudness",
                "Loudness",
                1.25,
                Some(0.0),
                json!({ "audio_track": false }),
                "The video has no audio track: add music, a voice-over or the platform's trending sound, since most viewers watch with sound on.".into(),
            )];
            out.extend(keys[1..].iter().map(|(k, l, w)| sub(k, l, *w, None, json!({ "audio_track": false }), "There is no audio to judge.".into())));
            return out;
        }
        return keys.iter().map(|(k, l, w)| sub(k, l, *w, None, json!({}), "The audio was not analysed.".into())).collect();
    };
    let levels = audio.levels.as_ref();
    let lufs = levels.and_then(|l| l.integrated_lufs);
    let peak = levels.and_then(|l| l.true_peak_dbtp);

    // Loudness: 6 points per LU beyond a ±1 LU band around the target.
    let loudness = match (levels, lufs) {
        (None, _) => sub("loudness", "Loudness", 1.25, None, json!({}), "The audio level could not be measured.".into()),
        (Some(_), None) => sub(
            "loudness",
            "Loudness",
            1.25,
            Some(0.0),
            json!({ "integrated_lufs": null }),
            "The audio track is silent: add music or a voice-over, or unmute the recording.".into(),
        ),
        (Some(l), Some(v)) => {
            let off = v - TARGET_LUFS;
            let score = 100.0 - 6.0 * (off.abs() - 1.0).max(0.0);
            let advice = if off.abs() <= 1.0 {
                format!("Integrated loudness is {v:.1} LUFS, right at the platforms' −14 LUFS: keep mixing to this level.")
            } else if off < 0.0 {
                let limiter = peak.is_some_and(|p| p - off > PEAK_CEILING);
                format!(
                    "Integrated loudness is {v:.1} LUFS; TikTok plays around −14 LUFS: raise the gain by about {:.0} dB{}.",
                    -off,
                    if limiter { " and use a limiter so peaks stay below −1 dBTP" } else { "" }
                )
            } else {
                format!(
                    "Integrated loudness is {v:.1} LUFS, louder than the platforms' −14 LUFS: lower the gain by about {:.0} dB, since they will turn it down anyway and heavy limiting only costs punch.",
                    off
                )
            };
            sub(
                "loudness",
                "Loudness",
                1.25,
                Some(score),
                json!({ "integrated_lufs": r1(v), "target_lufs": TARGET_LUFS, "loudness_range_lu": l.loudness_range_lu.map(r1) }),
                advice,
            )
        }
    };

    let true_peak = match peak {
        None => sub("true_peak", "True peak", 0.5, None, json!({ "true_peak_dbtp": null }), "There is no signal to measure a peak on.".into()),
        Some(p) => {
            let score = curve(p, &[(PEAK_CEILING, 100.0), (0.0, 60.0), (2.0, 10.0)]);
            let advice = if score >= 80.0 {
                format!("True peak is {p:.1} dBTP, safely below −1 dBTP.")
            } else {
                format!("True peak reaches {p:.1} dBTP: put a true-peak limiter at −1 dBTP on the master so the platform's encoder does not distort it.")
            };
            sub(
                "true_peak",
                "True peak",
                0.5,
                Some(score),
                json!({ "true_peak_dbtp": r1(p), "sample_peak_dbfs": levels.and_then(|l| l.sample_peak_dbfs).map(r1) }),
                advice,
            )
        }
    };

    let clipping = match levels {
        None => sub("clipping", "Clipping", 1.0, None, json!({}), "Clipping could not be measured.".into()),
        Some(l) => {
            let ratio = l.clipped_ratio;
            let score = if ratio <= 0.0 { 100.0 } else { log_curve(ratio, &[(1e-5, 95.0), (1e-4, 80.0), (1e-3, 50.0), (1e-2, 5.0)]) };
            let advice = if score >= 80.0 {
                "No audible clipping.".to_owned()
            } else {
                format!(
                    "{:.2} % of the audio samples are clipped, which sounds distorted: record with the input gain lower (peaks around −6 dBFS) and raise loudness with a limiter afterwards.",
                    ratio * 100.0
                )
            };
            sub(
                "clipping",
                "Clipping",
                1.0,
                Some(score),
                json!({ "clipped_ratio": ratio, "clipped_samples": l.clipped_samples, "over_samples": l.over_samples }),
                advice,
            )
        }
    };

    let s = features.silence_ratio;
    let silence = {
        let score = curve(s, &[(0.1, 100.0), (0.3, 75.0), (0.6, 35.0), (0.9, 5.0), (1.0, 0.0)]);
        let advice = if score >= 80.0 {
            "Sound runs throughout: no dead air.".to_owned()
        } else if s >= 0.99 {
            "The audio is silent from start to end: add music or a voice-over.".to_owned()
        } else {
            format!(
                "{:.0} % of the video is silent (the longest gap lasts {:.1} s): tighten pauses or lay music under the quiet parts.",
                s * 100.0,
                features.longest_silence_secs
            )
        };
        sub("silence", "Silence", 1.0, Some(score), json!({ "silence_ratio": r2(s), "longest_silence_secs": r1(features.longest_silence_secs) }), advice)
    };

    let tone = match features.spectral_centroid_hz {
        None => sub("tone", "Tone", 0.25, None, json!({ "spectral_centroid_hz": null }), "There is no sound to judge the tone of.".into()),
        Some(c) => {
            let score = curve(c, &[(200.0, 30.0), (500.0, 70.0), (800.0, 100.0), (3500.0, 100.0), (5000.0, 70.0), (7000.0, 40.0)]);
            let advice = if score >= 80.0 {
                "The tonal balance is natural.".to_owned()
            } else if c < 800.0 {
                format!(
                    "The sound is muffled (spectral centroid {c:.0} Hz): move the microphone closer, uncover it, or add a gentle high-shelf boost around 5 kHz."
                )
            } else {
                format!(
                    "The sound is harsh or hissy (spectral centroid {c:.0} Hz): tame the highs with a de-esser or a gentle cut above 6 kHz, or reduce background hiss."
                )
            };
            sub("tone", "Tone", 0.25, Some(score), json!({ "spectral_centroid_hz": c.round() }), advice)
        }
    };

    vec![loudness, true_peak, clipping, silence, tone]
}
