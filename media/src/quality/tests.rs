//! A clean generated clip against degraded copies: each degradation must cost points on the
//! sub-score that measures it.

use std::path::{Path, PathBuf};

use super::*;
use crate::decode::clips::{self, make, never};
use crate::decode::{DecodeLimits, DecodeOptions, FrameSize, Sampling, Strategy, decode};

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
    assert!(
        a >= b.saturating_add(margin),
        "{what}: clean {key} {a} should beat {b} by {margin}\nclean: {:?}\n{what}: {:?}",
        clean.get(key),
        worse.get(key)
    );
}

#[test]
fn degraded_copies_score_lower_on_the_matching_sub_score() {
    let d = clips::dir();
    let dir = d.path();
    let clean = analyse(&clip(dir, "clean.mp4", VIDEO, None, Some(AUDIO), CLEAN_GAIN));

    // The clean clip itself is sound on what the degradations attack.
    for key in ["sharpness", "colourfulness", "stability", "clipping", "silence", "aspect_ratio", "loudness"] {
        assert!(score(&clean, key) >= 80, "clean {key}: {:?}", clean.get(key));
    }

    let grey = analyse(&clip(dir, "grey.mp4", VIDEO, Some("hue=s=0"), Some(AUDIO), CLEAN_GAIN));
    beats(&clean, &grey, "colourfulness", 50, "greyscale");

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
    assert_eq!(json["rubric_version"], 2);
    assert!(json["overall"].as_u64().is_some_and(|o| o <= 100));
    assert_eq!(json["audio_features"]["mfcc_mean"].as_array().map(Vec::len), Some(13));
    let keys: Vec<&str> = quiet.scores.iter().map(|s| s.key).collect();
    for key in [
        "sharpness",
        "exposure",
        "contrast",
        "colourfulness",
        "noise",
        "motion",
        "stability",
        "pacing",
        "continuity",
        "hook",
        "aspect_ratio",
        "resolution",
        "frame_rate",
        "bitrate",
        "duration",
        "loudness",
        "true_peak",
        "clipping",
        "silence",
        "tone",
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

/// A clip with everything the statistics look at: motion, a frozen stretch, a scene cut, a
/// black ending and a tone, encoded with non-reference B-frames and sparse keyframes, as phones
/// and editors export.
fn composition_clip(dir: &Path, name: &str, fps: u32, vf: Option<&str>, extra: &[&str]) -> PathBuf {
    let video = format!(
        "testsrc2=s=180x320:r={fps}:d=1.5,tpad=stop_mode=clone:stop_duration=1.6[a];\
         testsrc=s=180x320:r={fps}:d=1.5[b];color=c=black:s=180x320:r={fps}:d=0.6[c];\
         [a][b][c]concat=n=3:v=1[out0]"
    );
    let mut args = vec!["-x264-params", "bframes=3:b-pyramid=none:keyint=250", "-af", "volume=4.8dB"];
    args.extend(extra);
    make(dir, name, &video, Some("sine=f=440:sample_rate=48000:d=5.2"), vf, &args)
}

/// The decodes one video gets, depending on what else was asked of it; the first is quality
/// alone.
fn compositions() -> Vec<(&'static str, DecodeOptions)> {
    let alone = DecodeOptions::default();
    // What the frame models (OCR, embeddings, hashtags) add: a frame a second at a larger size.
    let with_models = DecodeOptions {
        sampling: Sampling::EverySecs(1.0),
        frame_size: FrameSize::ShortSide(540),
        limits: DecodeLimits { max_samples: 120, ..DecodeLimits::default() },
        ..DecodeOptions::default()
    };
    assert_eq!(DecodeOptions::default().with_model_frames(Sampling::EverySecs(1.0), FrameSize::ShortSide(540), 120), with_models);
    let few_small_sought = DecodeOptions {
        sampling: Sampling::Count(3),
        frame_size: FrameSize::CenterCrop(64),
        strategy: Strategy::Seek,
        skip_deblocking: true,
        threads: 1,
        limits: DecodeLimits { max_samples: 2, ..DecodeLimits::default() },
        ..DecodeOptions::default()
    };
    let unsampled = DecodeOptions { sampling: Sampling::Off, strategy: Strategy::Sequential, ..DecodeOptions::default() };
    vec![("alone", alone), ("with_models", with_models), ("few_small_sought", few_small_sought), ("unsampled", unsampled)]
}

/// The sub-scores that differ between two serialised reports, with both values, then the
/// overall score and the audio features when they differ.
fn differences(a: &Value, b: &Value, keys: impl Fn(&str) -> bool) -> Vec<String> {
    let scores = |v: &Value| v["scores"].as_array().cloned().unwrap_or_default();
    let mut out: Vec<String> = scores(a)
        .iter()
        .zip(scores(b))
        .filter(|(x, y)| keys(x["key"].as_str().unwrap_or_default()) && *x != y)
        .map(|(x, y)| format!("{}: {} {} vs {} {}", x["key"], x["score"], x["measured"], y["score"], y["measured"]))
        .collect();
    for key in ["overall", "audio_features"] {
        if keys(key) && a[key] != b[key] {
            out.push(format!("{key}: {} vs {}", a[key], b[key]));
        }
    }
    out
}

/// One decode serves every analysis asked of a video, so the frames it samples change with the
/// request; the quality report must not.
#[test]
fn quality_does_not_depend_on_what_else_the_decode_serves() {
    let d = clips::dir();
    let mut videos: Vec<(String, PathBuf, f64)> = [24, 30, 60]
        .into_iter()
        .map(|fps| (format!("{fps} fps"), composition_clip(d.path(), &format!("cfr{fps}.mp4"), fps, None, &[]), f64::from(fps)))
        .collect();
    // Variable frame rate: 30 fps, then every third frame from 2.5 s on; 30 fps prevails.
    let vfr = composition_clip(d.path(), "vfr.mp4", 30, Some("select='lt(t\\,2.5)+not(mod(n\\,3))'"), &["-vsync", "vfr"]);
    videos.push(("variable frame rate".to_owned(), vfr, 30.0));
    // Without audio only the sound sub-scores and what depends on them may change.
    let sound = |key: &str| ["loudness", "true_peak", "clipping", "silence", "tone", "hook", "overall", "audio_features"].contains(&key);

    let mut failures = Vec::new();
    for (name, path, fps) in &videos {
        let probe = clips::probe(path);
        let report =
            |opts: &DecodeOptions| serde_json::to_value(analyze(&probe, &decode(path, &probe, opts, &never).expect("decodes"))).expect("serialises");
        let reports: Vec<(&str, Value)> = compositions().iter().map(|(label, opts)| (*label, report(opts))).collect();
        let (_, alone) = &reports[0];
        let frame_rate = alone["scores"].as_array().and_then(|s| s.iter().find(|s| s["key"] == "frame_rate")).map(|s| &s["measured"]["fps"]);
        if frame_rate.and_then(Value::as_f64) != Some(*fps) {
            failures.push(format!("{name}: measured {frame_rate:?} fps"));
        }
        for (label, other) in &reports[1..] {
            if other != alone {
                failures.push(format!("{name}, {label} against alone:\n  {}", differences(alone, other, |_| true).join("\n  ")));
            }
        }
        let mute = report(&DecodeOptions { audio: false, sampling: Sampling::Count(4), ..DecodeOptions::default() });
        let diff = differences(alone, &mute, |key| !sound(key));
        if !diff.is_empty() {
            failures.push(format!("{name}, without audio against alone:\n  {}", diff.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "quality depends on the decode's other outputs:\n{}", failures.join("\n"));
}

#[test]
fn a_frozen_picture_is_advised_on_without_negative_zeros() {
    let d = clips::dir();
    // A still pattern: frozen throughout, never black.
    let frozen = analyse(&clip(
        d.path(),
        "frozen.mp4",
        "testsrc2=s=270x480:r=25:d=3,trim=end_frame=1,loop=loop=-1:size=1,trim=duration=3",
        None,
        Some(AUDIO),
        CLEAN_GAIN,
    ));
    let continuity = frozen.get("continuity").expect("measured");
    assert!(continuity.advice.contains("frozen"), "{continuity:?}");
    assert!(!continuity.advice.contains("-0.0"), "{}", continuity.advice);
}
