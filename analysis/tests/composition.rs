//! An analysis's finding for a file never depends on what else was asked: every analysis that
//! runs on one video gives the same payload alone as together with all the others, on clips at
//! 24, 30 and 60 fps and with a variable frame rate; and quality measures the real frame rate.
//!
//! Runs on the real model pack (`tools/models/build-pack`, which the test script runs first).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;

use reelq_analysis::inference::{DirStore, RuntimeConfig};
use reelq_analysis::media::probe;
use reelq_analysis::settings::{HashtagSettings, InferenceSettings, MediaSettings};
use reelq_analysis::song::{Heard, Reach, RecognizeError, Recognizer};
use reelq_analysis::{AnalysisError, Input, Pipeline, PulledData};
use reelq_core::catalogue::{CATALOGUE, Visibility};
use reelq_core::domain::Analysis;
use reelq_core::options::JobOptions;
use reelq_learn::engagement::Counts;
use reelq_learn::engagement::music::MusicUse;

/// Pulled data that always holds the same two videos, whatever the tags.
struct FixedPulls;

impl PulledData for FixedPulls {
    fn music_uses(&self, _tags: &[String], _region: Option<&str>, _limit: usize) -> Result<Vec<MusicUse>, AnalysisError> {
        let at = "2026-11-01T00:00:00Z".parse().expect("time");
        let counts = Counts { views: 1_000, likes: 100, comments: 10, shares: 5 };
        Ok(vec![
            MusicUse { music_id: "m1".into(), name: "One".into(), author: "A".into(), create_time: at, counts },
            MusicUse { music_id: "m2".into(), name: "Two".into(), author: "B".into(), create_time: at, counts },
        ])
    }
}

/// A recognizer that knows one song, whatever it hears.
struct FixedSong;

impl Recognizer for FixedSong {
    fn name(&self) -> &str {
        "catalogue"
    }
    fn reach(&self) -> Reach {
        Reach::Local
    }
    fn recognize(&self, _samples: &[f32], _rate: u32) -> Result<Option<Heard>, RecognizeError> {
        Ok(Some(Heard {
            title: "Tone".into(),
            artist: "Lab".into(),
            track_id: Some(1),
            music_id: Some("m2".into()),
            offset_secs: Some(0.0),
            confidence: 1.0,
            link: None,
        }))
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pipeline() -> Pipeline {
    let root = root();
    let inference = InferenceSettings {
        library: Some(RuntimeConfig::default_library(&root).display().to_string()),
        models_dir: Some(DirStore::default_root(&root).display().to_string()),
        clip_model: Some("clip-tiny".into()),
        ..InferenceSettings::default()
    };
    Pipeline::from_settings(&MediaSettings::default(), &inference, &HashtagSettings::default())
        .with_pulled_data(Arc::new(FixedPulls))
        .with_recognizers(vec![Arc::new(FixedSong)])
}

/// A clip with motion, a scene cut, numbers on screen and a tone.
fn clip(dir: &Path, name: &str, video_filter: &str) -> PathBuf {
    let path = dir.join(name);
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=s=320x240:r=60:d=1.5"])
        .args(["-f", "lavfi", "-i", "testsrc=s=320x240:r=60:d=1.5"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=3"])
        .args(["-filter_complex", &format!("[0:v][1:v]concat=n=2:v=1[c];[c]{video_filter}[v]"), "-map", "[v]", "-map", "2:a"])
        .args(["-t", "3", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
        .args(if video_filter.contains("setpts") { &["-fps_mode", "vfr"][..] } else { &[][..] })
        .arg(&path)
        .status()
        .expect("the ffmpeg CLI is installed");
    assert!(status.success(), "ffmpeg made {name}");
    path
}

/// The analyses of one video: public, and needing no more than the video (and pulled data and
/// a song recognizer, which the fixed ones stand in for).
fn of_one_video() -> Vec<Analysis> {
    CATALOGUE.iter().filter(|s| s.visibility == Visibility::Public && s.needs.video && s.name != Analysis::Mux).map(|s| s.name).collect()
}

fn run(p: &Pipeline, path: &Path, analyses: &[Analysis]) -> Vec<(Analysis, Value)> {
    let probe = probe::probe(path, &MediaSettings::default()).expect("probe");
    let options = JobOptions { caption: Some("weeknight pasta #cooking".into()), ..JobOptions::default() };
    let input = Input {
        path: path.to_owned(),
        probe,
        options,
        pulled: Arc::new(reelq_analysis::hashtags::PulledTags { tags: vec!["#pasta".into()], links: Vec::new() }),
        creator: None,
    };
    let mut session = p.start(input, analyses, &|| false).expect("decode");
    analyses.iter().map(|a| (*a, p.run(&mut session, *a).unwrap_or_else(|e| panic!("{a:?}: {e}")).payload().expect("json"))).collect()
}

fn measured_fps(quality: &Value) -> f64 {
    quality["scores"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"] == "frame_rate"))
        .and_then(|s| s["measured"]["fps"].as_f64())
        .unwrap_or_else(|| panic!("a frame-rate score with its fps: {quality:#}"))
}

#[test]
fn every_finding_is_the_same_alone_and_with_all_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = pipeline();
    let all = of_one_video();
    assert!(all.len() >= 8, "{all:?}");
    let clips = [
        (clip(dir.path(), "24.mp4", "fps=24"), Some(24.0)),
        (clip(dir.path(), "30.mp4", "fps=30"), Some(30.0)),
        (clip(dir.path(), "60.mp4", "fps=60"), Some(60.0)),
        // Frame durations alternate between one and two 60ths of a second.
        (clip(dir.path(), "vfr.mp4", "select='not(eq(mod(n\\,3)\\,2))',setpts=N/(40*TB)"), None),
    ];

    for (path, fps) in &clips {
        let together = run(&p, path, &all);
        for (analysis, with_others) in &together {
            let alone = run(&p, path, &[*analysis]).remove(0).1;
            assert_eq!(&alone, with_others, "{} on {}: alone vs with {all:?}", analysis.as_str(), path.display());
        }
        let quality = &together.iter().find(|(a, _)| *a == Analysis::Quality).expect("quality ran").1;
        if let Some(fps) = fps {
            let measured = measured_fps(quality);
            assert!((measured - fps).abs() < 0.05, "{}: measured {measured} fps", path.display());
        }
    }
}
