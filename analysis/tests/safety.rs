//! `safety` on generated clips: everyday pictures score low and are not flagged, and the score
//! barely moves when the same video is re-encoded at another quality, codec or size.
//!
//! Runs on the real model pack (`tools/models/build-pack`, which the test script runs first).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use reelq_analysis::Input;
use reelq_analysis::Pipeline;
use reelq_analysis::inference::{DirStore, RuntimeConfig};
use reelq_analysis::media::probe;
use reelq_analysis::settings::{HashtagSettings, InferenceSettings, MediaSettings};
use reelq_core::domain::Analysis;
use reelq_core::options::JobOptions;

fn pipeline() -> Pipeline {
    pipeline_flagging_at(InferenceSettings::default().safety_threshold)
}

fn pipeline_flagging_at(threshold: f32) -> Pipeline {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let inference = InferenceSettings {
        library: Some(RuntimeConfig::default_library(&root).display().to_string()),
        models_dir: Some(DirStore::default_root(&root).display().to_string()),
        safety_threshold: threshold,
        ..InferenceSettings::default()
    };
    Pipeline::from_settings(&MediaSettings::default(), &inference, &HashtagSettings::default())
}

fn ffmpeg(args: &[&str], out: &Path) {
    let status =
        Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).arg(out).status().expect("the ffmpeg CLI is installed");
    assert!(status.success(), "ffmpeg made {}", out.display());
}

/// A 540×960 H.264 clip of two seconds of each lavfi source, in order.
fn two_second_parts(sources: &[&str], out: &Path) {
    let mut args: Vec<String> = Vec::new();
    for src in sources {
        let sep = if src.contains('=') { ":" } else { "=" };
        args.extend(["-f".into(), "lavfi".into(), "-i".into(), format!("{src}{sep}s=540x960:r=30:d=2")]);
    }
    let inputs: String = (0..sources.len()).map(|i| format!("[{i}:v]")).collect();
    args.extend(["-filter_complex".into(), format!("{inputs}concat=n={}:v=1[v]", sources.len()), "-map".into(), "[v]".into()]);
    args.extend(["-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-pix_fmt", "yuv420p"].map(String::from));
    ffmpeg(&args.iter().map(String::as_str).collect::<Vec<_>>(), out);
}

fn safety(p: &Pipeline, path: &Path) -> Value {
    let probe = probe::probe(path, &MediaSettings::default()).expect("probe");
    let input = Input { path: path.to_owned(), probe, options: JobOptions::default(), pulled: Default::default(), creator: None };
    let mut session = p.start(input, &[Analysis::Safety], &|| false).expect("decode");
    let out = p.run(&mut session, Analysis::Safety).expect("safety");
    assert!(out.models.iter().any(|m| m.name == "open-nsfw" && m.sha256.is_some()), "{:?}", out.models);
    out.payload().expect("json")
}

#[test]
fn a_generated_clip_scores_low_and_the_score_survives_reencoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let original = dir.path().join("original.mp4");
    // Six seconds of portrait video: a moving test card, then a skin-toned flat colour, then a
    // colour bars (deterministic sources, so every run scores the same pictures).
    two_second_parts(&["testsrc2", "color=c=0xE0AC69", "smptehdbars"], &original);
    let low = dir.path().join("low.mp4");
    ffmpeg(&["-i", original.to_str().expect("utf-8"), "-c:v", "libx264", "-crf", "38", "-preset", "veryfast"], &low);
    let webm = dir.path().join("small.webm");
    ffmpeg(&["-i", original.to_str().expect("utf-8"), "-vf", "scale=360:640", "-c:v", "libvpx-vp9", "-b:v", "300k", "-deadline", "realtime"], &webm);
    let large = dir.path().join("large.mp4");
    ffmpeg(&["-i", original.to_str().expect("utf-8"), "-vf", "scale=1080:1920", "-c:v", "libx264", "-crf", "23", "-preset", "veryfast"], &large);
    let p = pipeline();

    let results: Vec<(&str, Value)> = [("original", &original), ("crf 38", &low), ("vp9 360x640", &webm), ("1080x1920", &large)]
        .into_iter()
        .map(|(name, path)| (name, safety(&p, path)))
        .collect();

    let (_, first) = &results[0];
    let score = |v: &Value| v["score"].as_f64().expect("score");
    for (name, r) in &results {
        eprintln!(
            "{name}: score {:.4}, mean {:.4}, frames {}, worst {}",
            score(r),
            r["mean_score"].as_f64().expect("mean"),
            r["frames_scored"],
            r["worst_frames"]
        );
    }
    for (name, r) in &results {
        assert_eq!(r["flagged"], false, "{name}: {r}");
        assert!(score(r) < 0.2, "{name}: generated pictures are safe: {r}");
        assert_eq!(r["frames_scored"], 6, "{name}: one frame a second");
        assert_eq!(r["threshold"].as_f64(), Some(0.8f32.into()));
        let worst = r["worst_frames"].as_array().expect("worst frames");
        assert_eq!(worst.len(), 3);
        assert!(worst.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()), "worst first: {worst:?}");
        assert!((score(r) - score(first)).abs() < 0.03, "{name} scores {} against {} for the original", score(r), score(first));
    }
}

#[test]
fn the_threshold_decides_the_flag_and_the_worst_moments_are_timed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("clip.mp4");
    // Two seconds of test card, then two of a skin-toned flat colour (which the model scores
    // highest of these, though far from explicit).
    two_second_parts(&["testsrc2", "color=c=0xE0AC69"], &path);

    let strict = safety(&pipeline_flagging_at(0.05), &path);
    let default = safety(&pipeline(), &path);

    assert_eq!(strict["flagged"], true, "{strict}");
    assert_eq!(default["flagged"], false, "{default}");
    assert_eq!(strict["score"], default["score"], "the threshold changes the flag, not the score");
    let worst = &strict["worst_frames"][0];
    let at = worst["time_secs"].as_f64().expect("time");
    assert!((2.0..4.0).contains(&at), "the worst moment is in the skin-toned half: {worst}");
}
