//! A small slice of the hashtag benchmark, so that it cannot rot: `make-clips` builds the
//! clips of two niches, the pipeline suggests for each, and the figures are computed as
//! `reelq-hashtag-bench` computes them. The full run and its table are in the README.
//!
//! Runs on the real model pack (`tools/models/build-pack`, which the test script runs first).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use reelq_analysis::Pipeline;
use reelq_analysis::evaluate::{self, Clip, Manifest};
use reelq_analysis::settings::MediaSettings;
use reelq_core::domain::Analysis;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn pipeline(clip_model: Option<&str>) -> (Pipeline, MediaSettings) {
    evaluate::checkout_pipeline(&root(), clip_model)
}

#[test]
fn a_video_with_nothing_to_hear_or_read_gets_a_notice_not_guesses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("silent.mp4");
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=teal:s=320x568:r=25:d=4"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=44100:cl=mono:d=4",
            "-t",
            "4",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ])
        .arg(&path)
        .status()
        .expect("the ffmpeg CLI is installed");
    assert!(status.success());
    let suggest = |p: &Pipeline, media: &MediaSettings| {
        let probe = reelq_analysis::media::probe::probe(&path, media).expect("probe");
        let input = reelq_analysis::Input { path: path.clone(), probe, options: Default::default(), pulled: Default::default(), creator: None };
        let mut session = p.start(input, &[Analysis::Hashtags], &|| false).expect("decode");
        p.run(&mut session, Analysis::Hashtags).expect("hashtags").payload().expect("json")
    };

    let (p, media) = pipeline(None);
    let blind = suggest(&p, &media);
    assert_eq!(blind["suggestions"], serde_json::json!([]), "{blind:#}");
    assert!(blind["notice"].as_str().is_some_and(|n| n.contains("no visual model is configured")), "{blind:#}");

    // With an image model the picture is something to go on, and the notice says that is all.
    let (p, media) = pipeline(Some("clip-tiny"));
    let seeing = suggest(&p, &media);
    assert!(seeing["notice"].as_str().is_some_and(|n| n.contains("picture alone")), "{seeing:#}");
}

#[test]
fn two_niches_of_the_benchmark_are_made_suggested_for_and_scored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new(root().join("tools/hashtag-bench/make-clips"))
        .arg(dir.path())
        .args(["--niches", "2"])
        .status()
        .expect("python3, espeak-ng and ffmpeg are installed (scripts/test installs them)");
    assert!(status.success(), "make-clips failed");
    let manifest = Manifest::load(dir.path()).expect("manifest");
    assert_eq!(manifest.clips.len(), 8, "four clips per niche");
    let halves: BTreeSet<&str> = manifest.clips.iter().map(|c| c.half.as_str()).collect();
    assert_eq!(halves, BTreeSet::from(["held_out", "tune"]));

    let (pipeline, media) = pipeline(None);
    let clips: Vec<&Clip> = manifest.clips.iter().collect();
    let runs: Vec<_> = clips.iter().map(|c| evaluate::run_clip(&pipeline, dir.path(), c, &media).expect("suggested")).collect();

    let generic: BTreeSet<String> = manifest.generic.iter().cloned().collect();
    let ranker = reelq_analysis::hashtags::Ranker::shipped();
    let reelq = evaluate::ranked(&runs, ranker, &evaluate::default_options(ranker));
    let f = evaluate::figures(&clips, &reelq, &generic);
    assert_eq!(f.clips, 8);
    for v in [f.hit_at_5, f.precision_at_5, f.recall_at_10, f.mrr, f.generic_share, f.short_share] {
        assert!((0.0..=1.0).contains(&v), "{f:?}");
    }
    // A floor, not a target: an easy slice (the niche is said and shown) where today's
    // suggestions put an acceptable tag in the top 5 for most clips.
    assert!(f.hit_at_5 >= 0.5, "{f:?}: {reelq:?}");
    assert!(f.max_generic_in_top_5 <= 1, "{f:?}");
    let table = evaluate::table(&[("reelq", f)]);
    assert!(table.lines().count() == 3 && table.contains("| reelq | 8 |"), "{table}");
}

#[test]
fn the_shipped_description_vectors_are_the_default_encoders_own() {
    use reelq_analysis::hashtags::Vocabulary;
    use reelq_analysis::hashtags::shipped_vectors::ShippedVectors;
    let (pipeline, _) = pipeline(None);
    let embedder = pipeline.models().text_embedder().expect("the default pack's text encoder");
    let id = embedder.model();
    let shipped = ShippedVectors::shipped().expect("shipped vectors");
    assert!(
        shipped.made_by(&id.name, &id.version, &id.sha256),
        "made by {:?}, the pack has {}@{} {}: regenerate with `reelq-hashtag-bench --write-vectors`",
        shipped.header,
        id.name,
        id.version,
        id.sha256
    );
    // A sample, embedded afresh: the same vectors, to the file's precision.
    let descriptions: Vec<String> = Vocabulary::curated().entries().iter().step_by(97).map(|e| e.description()).collect();
    let refs: Vec<&str> = descriptions.iter().map(String::as_str).collect();
    let fresh = embedder.embed(&refs).expect("embeds");
    for (text, v) in descriptions.iter().zip(&fresh) {
        let (_, w) = shipped.entries.iter().find(|(t, _)| t == text).expect("shipped");
        let cos: f32 = v.iter().zip(w).map(|(a, b)| a * b).sum();
        assert!(cos > 0.9999, "{text}: cosine {cos}");
    }
}
