//! A clean generated clip against degraded copies: each degradation must cost points on the
//! sub-score that measures it.

use std::path::{Path, PathBuf};

use super::*;
use crate::decode::clips::{self, make, never};
use crate::decode::{DecodeOptions, decode};

/// 9:16 at 270×480, 3 s, a moving test pattern with a tone at about −14 LUFS.
const VIDEO: &str = "testsrc2=s=270x480:r=25:d=3";
const AUDIO: &str = "sine=f=440:sample_rate=48000:d=3";
/// 1/8 of full scale raised by 4.8 dB: −13.3 dBFS peak, about −14 LUFS as dual mono.
const CLEAN_GAIN: &str = "volume=4.8dB";

fn clip(dir: &Path, name: &str, video: &str, vf: Option<&str>, audio: Option<&str>, af: &str) -> PathBuf {
    let extra = ["-af", af, "-ac", "1"];
    make(dir, name, video, audio, vf, if audio.is_some() { &extra } else { &[] })
}

fn analyse(path: &Path) -> QualityReport {
    let probe = clips::probe(path);
    let decoded = decode(path, &probe, &DecodeOptions::default(), &never).expect("decodes");
    analyze(&probe, &decoded)
}

fn score(report: &QualityReport, key: &str) -> u8 {
    report.score(key).unwrap_or_else(|| panic!("{key} applies: {:?}", report.get(key)))
}

/// Asserts that `clean` beats `worse` on `key` by at least `margin` points.
fn beats(clean: &QualityReport, worse: &QualityReport, key: &str, margin: u8, what: &str) {
    let (a, b) = (score(clean, key), score(worse, key));
    assert!(a >= b.saturating_add(margin), "{what}: clean {key} {a} should beat {b} by {margin}\nclean: {:?}\n{what}: {:?}", clean.get(key), worse.get(key));
}

#[test]
fn degraded_copies_score_lower_on_the_matching_sub_score() {
    let d = clips::dir();
    let dir = d.path();
    let clean = analyse(&clip(dir, "clean.mp4", VIDEO, None, Some(AUDIO), CLEAN_GAIN));

    // The clean clip itself is sound on what the degradations attack.
    for key in ["sharpness", "stability", "clipping", "silence", "aspect_ratio", "loudness"] {
        assert!(score(&clean, key) >= 80, "clean {key}: {:?}", clean.get(key));
    }

    let blurred = analyse(&clip(dir, "blur.mp4", VIDEO, Some("gblur=sigma=4"), Some(AUDIO), CLEAN_GAIN));
    beats(&clean, &blurred, "sharpness", 20, "blurred");

    let dark = analyse(&clip(dir, "dark.mp4", VIDEO, Some("eq=brightness=-0.4"), Some(AUDIO), CLEAN_GAIN));
    beats(&clean, &dark, "exposure", 20, "dark");
    assert!(dark.get("exposure").is_some_and(|s| s.advice.contains("too dark")), "{:?}", dark.get("exposure"));

    let bright = analyse(&clip(dir, "bright.mp4", VIDEO, Some("eq=brightness=0.5"), Some(AUDIO), CLEAN_GAIN));
    beats(&clean, &bright, "exposure", 20, "overexposed");
    assert!(bright.get("exposure").is_some_and(|s| s.advice.contains("overexposed")), "{:?}", bright.get("exposure"));

    let shaky = analyse(&clip(
        dir,
        "shaky.mp4",
        "testsrc2=s=310x520:r=25:d=3",
        Some("crop=w=270:h=480:x='20+20*sin(n*1.7)':y='20+20*cos(n*2.3)'"),
        Some(AUDIO),
        CLEAN_GAIN,
    ));
    beats(&clean, &shaky, "stability", 20, "shaky");

    let clipped = analyse(&clip(dir, "clipped.mp4", VIDEO, None, Some(AUDIO), "volume=24dB,aformat=sample_fmts=s16"));
    beats(&clean, &clipped, "clipping", 30, "clipped");

    let silent = analyse(&clip(dir, "silent.mp4", VIDEO, None, Some("anullsrc=r=48000:cl=mono"), "anull"));
    beats(&clean, &silent, "silence", 50, "silent");
    beats(&clean, &silent, "loudness", 50, "silent");

    let letterboxed = analyse(&clip(dir, "letterbox.mp4", "testsrc2=s=270x152:r=25:d=3", Some("pad=270:480:0:164:black"), Some(AUDIO), CLEAN_GAIN));
    beats(&clean, &letterboxed, "aspect_ratio", 40, "letterboxed");
    let aspect = letterboxed.get("aspect_ratio").expect("aspect");
    assert!(aspect.advice.contains("16:9") && aspect.advice.contains("black bars"), "{}", aspect.advice);

    // Degradations cost overall points too.
    for (what, r) in [("blurred", &blurred), ("dark", &dark), ("shaky", &shaky), ("silent", &silent), ("letterboxed", &letterboxed)] {
        assert!(clean.overall > r.overall, "{what}: overall {} vs clean {}", r.overall, clean.overall);
    }
}

#[test]
fn quiet_audio_gets_gain_advice_and_the_report_serialises() {
    let d = clips::dir();
    let quiet = analyse(&clip(d.path(), "quiet.mp4", VIDEO, None, Some(AUDIO), "volume=-9dB"));
    let loudness = quiet.get("loudness").expect("loudness");
    let lufs = loudness.measured.get("integrated_lufs").and_then(Value::as_f64).expect("measured");
    assert!((lufs - -28.0).abs() < 1.5, "{lufs}");
    assert!(loudness.advice.contains("raise the gain by about 14 dB") || loudness.advice.contains("raise the gain by about 13 dB"), "{}", loudness.advice);
    assert!(loudness.score.is_some_and(|s| s < 30));
    assert!(!quiet.top_advice.is_empty());

    let json = serde_json::to_value(&quiet).expect("serialises");
    assert_eq!(json["rubric_version"], 1);
    assert!(json["overall"].as_u64().is_some_and(|o| o <= 100));
    assert_eq!(json["audio_features"]["mfcc_mean"].as_array().map(Vec::len), Some(13));
    let keys: Vec<&str> = quiet.scores.iter().map(|s| s.key).collect();
    for key in [
        "sharpness", "exposure", "contrast", "colourfulness", "noise", "motion", "stability", "pacing", "continuity", "hook",
        "aspect_ratio", "resolution", "frame_rate", "bitrate", "duration", "loudness", "true_peak", "clipping", "silence", "tone",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert!(quiet.scores.iter().all(|s| !s.advice.is_empty() && s.advice.ends_with('.')));
}

#[test]
fn a_video_without_audio_is_told_to_add_sound() {
    let d = clips::dir();
    let report = analyse(&clip(d.path(), "mute.mp4", VIDEO, None, None, ""));
    let loudness = report.get("loudness").expect("loudness");
    assert_eq!(loudness.score, Some(0));
    assert!(loudness.advice.contains("no audio track"));
    assert_eq!(report.score("clipping"), None);
    assert_eq!(report.get("clipping").map(|s| s.grade), Some(Grade::NotApplicable));
}

#[test]
fn curves_interpolate_and_clamp() {
    let pts = [(0.0, 10.0), (10.0, 110.0)];
    assert_eq!(curve(-5.0, &pts), 10.0);
    assert_eq!(curve(5.0, &pts), 60.0);
    assert_eq!(curve(50.0, &pts), 110.0);
    assert_eq!(curve(f64::NAN, &pts), 10.0);
    assert!((log_curve(10.0, &[(1.0, 0.0), (100.0, 100.0)]) - 50.0).abs() < 1e-9);
    assert_eq!(median(vec![3.0, 1.0, f64::NAN, 2.0]), Some(2.0));
    assert_eq!(median(vec![]), None);
}
