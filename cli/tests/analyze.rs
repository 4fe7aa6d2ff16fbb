//! `reelq analyze` as a user runs it: from a folder that is not the checkout, on files it has
//! never seen.

use std::path::Path;
use std::process::Command;

fn ffmpeg(args: &[&str], out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .expect("the ffmpeg CLI is installed (scripts/test installs it)");
    assert!(status.success(), "ffmpeg failed");
}

fn analyze(dir: &Path, file: &str, analyses: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reelq"))
        .current_dir(dir)
        .env_remove("REELQ_HOME")
        .env_remove("REELQ_MODELS_DIR")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("REELQ_CONFIG_DIR")
        .args(["analyze", file, "--analyses", analyses, "--json"])
        .output()
        .expect("reelq runs")
}

#[test]
fn analyze_works_from_any_folder_with_the_models_it_finds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=s=320x240:r=30:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"], &clip);

    let out = analyze(dir.path(), "clip.mp4", "probe,ocr");

    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["status"], "succeeded");
    assert!(doc["results"]["ocr"]["model_versions"].as_array().is_some_and(|m| !m.is_empty()), "OCR ran on the model pack: {doc}");
}

#[test]
fn analyze_refuses_what_the_api_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A picture renamed as a video, and an audio track.
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=s=64x64", "-frames:v", "1", "-f", "image2", "-c:v", "png"], &dir.path().join("picture.mp4"));
    ffmpeg(&["-f", "lavfi", "-i", "sine=d=1", "-c:a", "aac"], &dir.path().join("track.m4a"));

    for (file, code) in [("picture.mp4", "invalid_media"), ("track.m4a", "not_a_video")] {
        let out = analyze(dir.path(), file, "probe");

        assert_eq!(out.status.code(), Some(2), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(doc["status"], "failed");
        assert_eq!(doc["error"]["code"], code, "{file}: {doc}");
    }
}

#[test]
fn the_help_lists_the_catalogue_and_never_an_internal_analysis() {
    use reelq_core::catalogue::{CATALOGUE, Visibility};
    let help = |cmd: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_reelq")).args([cmd, "--help"]).output().expect("reelq runs");
        String::from_utf8_lossy(&out.stdout).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let (analyze, submit) = (help("analyze"), help("submit"));

    for spec in &CATALOGUE {
        let name = spec.name.as_str();
        let listed = |text: &str| text.contains(&format!(" {name},")) || text.contains(&format!(" {name} ")) || text.contains(&format!(" {name})"));
        assert_eq!(listed(&analyze), spec.name.runs_locally(), "analyze --help and `{name}`: {analyze}");
        assert_eq!(listed(&submit), spec.visibility != Visibility::Internal, "submit --help and `{name}`: {submit}");
    }
}

#[test]
fn analyze_names_the_analyses_it_runs_when_asked_for_one_it_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=s=64x64:r=30:d=1", "-c:v", "libx264", "-pix_fmt", "yuv420p"], &clip);

    for asked in ["music", "train", "noop"] {
        let out = analyze(dir.path(), "clip.mp4", asked);

        assert!(!out.status.success(), "{asked}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("it runs probe, quality"), "{asked}: {err}");
    }
}

#[test]
fn timings_say_where_the_time_went() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = dir.path().join("clip.mp4");
    ffmpeg(&["-f", "lavfi", "-i", "testsrc2=s=160x120:r=30:d=2", "-c:v", "libx264", "-pix_fmt", "yuv420p"], &clip);

    let out = Command::new(env!("CARGO_BIN_EXE_reelq"))
        .current_dir(dir.path())
        .args(["analyze", "clip.mp4", "--analyses", "probe,quality,ocr", "--json", "--timings"])
        .output()
        .expect("reelq runs");

    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let t = &doc["timings"];
    let total = t["total_secs"].as_f64().expect("total");
    let stages: Vec<(&str, f64)> =
        t["stages"].as_array().expect("stages").iter().map(|s| (s["stage"].as_str().expect("name"), s["secs"].as_f64().expect("secs"))).collect();
    let names: Vec<&str> = stages.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["inspect file", "decode", "probe", "quality", "ocr"], "{t}");
    // The stages ran one after another inside the whole run.
    assert!(stages.iter().map(|(_, s)| s).sum::<f64>() <= total + 0.01, "{t}");
    // Without the flag the output has no timings.
    let plain = Command::new(env!("CARGO_BIN_EXE_reelq"))
        .current_dir(dir.path())
        .args(["analyze", "clip.mp4", "--analyses", "probe", "--json"])
        .output()
        .expect("runs");
    let doc: serde_json::Value = serde_json::from_slice(&plain.stdout).expect("json");
    assert!(doc.get("timings").is_none());
}
