//! How sure the recogniser was of each stretch of speech travels with the transcript, and
//! `hashtags.min_speech_logprob` keeps doubtful speech out of what the hashtags read, not out
//! of the transcript.
//!
//! Runs on the real model pack (`tools/models/build-pack`, which the test script runs first).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use reelq_analysis::evaluate;
use reelq_analysis::settings::HashtagSettings;
use reelq_analysis::{Input, Pipeline};
use reelq_core::domain::Analysis;

const NARRATION: &str = "Leg day again. Four sets of heavy squats, then lunges until my legs shake.";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A narrated clip with nothing on screen, and the same narration under loud white noise.
fn clips(dir: &Path) -> (PathBuf, PathBuf) {
    let wav = dir.join("speech.wav");
    let status = Command::new("espeak-ng").args(["-v", "en-us", "-s", "150", "-w"]).arg(&wav).arg(NARRATION).status().expect("espeak-ng is installed");
    assert!(status.success());
    let make = |name: &str, noise: bool| {
        let path = dir.join(name);
        let mut cmd = Command::new("ffmpeg");
        cmd.args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "color=c=navy:s=320x568:r=25:d=6", "-i"]).arg(&wav);
        if noise {
            cmd.args(["-f", "lavfi", "-i", "anoisesrc=c=white:a=0.5:d=6:seed=7"]);
            cmd.args(["-filter_complex", "[1:a]aresample=44100,apad[s];[2:a]aresample=44100[n];[s][n]amix=inputs=2:duration=longest:normalize=0[a]"]);
        } else {
            cmd.args(["-filter_complex", "[1:a]aresample=44100,apad[a]"]);
        }
        let status = cmd
            .args(["-map", "0:v", "-map", "[a]", "-t", "6", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
            .arg(&path)
            .status()
            .expect("the ffmpeg CLI is installed");
        assert!(status.success(), "ffmpeg made {name}");
        path
    };
    (make("clear.mp4", false), make("noisy.mp4", true))
}

fn pipeline(min_speech_logprob: Option<f32>) -> Pipeline {
    let hashtags = HashtagSettings { min_speech_logprob, ..HashtagSettings::default() };
    evaluate::checkout_pipeline_with(&root(), None, None, &hashtags).0
}

/// The transcript and hashtags of `path`, as stored.
fn run(p: &Pipeline, path: &Path) -> (Value, Value) {
    let probe = reelq_analysis::media::probe::probe(path, &Default::default()).expect("probe");
    let input = Input { path: path.to_owned(), probe, options: Default::default(), pulled: Default::default(), creator: None };
    let mut session = p.start(input, &[Analysis::Transcript, Analysis::Hashtags], &|| false).expect("decode");
    let transcript = p.run(&mut session, Analysis::Transcript).expect("transcript").payload().expect("json");
    let hashtags = p.run(&mut session, Analysis::Hashtags).expect("hashtags").payload().expect("json");
    (transcript, hashtags)
}

fn logprobs(transcript: &Value) -> Vec<f64> {
    transcript["segments"]
        .as_array()
        .expect("segments")
        .iter()
        .map(|s| s["avg_logprob"].as_f64().unwrap_or_else(|| panic!("every segment says how sure the model was: {s}")))
        .collect()
}

fn tags(hashtags: &Value) -> Vec<&str> {
    hashtags["suggestions"].as_array().expect("suggestions").iter().filter_map(|s| s["tag"].as_str()).collect()
}

#[test]
fn segments_say_how_sure_the_model_was_and_doubtful_speech_can_be_left_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (clear, noisy) = clips(dir.path());
    let default = pipeline(None);

    let (transcript, hashtags) = run(&default, &clear);
    let sure = logprobs(&transcript);
    assert!(!sure.is_empty(), "{transcript:#}");
    for l in &sure {
        assert!((-1.0..=0.0).contains(l), "clear speech is heard surely: {transcript:#}");
    }
    let read = tags(&hashtags);
    assert!(read.contains(&"#legday"), "{hashtags:#}");

    // Under loud noise the model is less sure, or hears nothing at all.
    let (noisy_transcript, _) = run(&default, &noisy);
    let unsure = logprobs(&noisy_transcript);
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    eprintln!("mean avg_logprob: clear {:.3}, under noise {:?}", mean(&sure), (!unsure.is_empty()).then(|| mean(&unsure)));
    assert!(unsure.is_empty() || mean(&unsure) < mean(&sure), "clear {sure:?}, under noise {unsure:?}: {noisy_transcript:#}");

    // A bar no speech can pass: the transcript is unchanged, but the hashtags read no speech,
    // and say why they have nothing to go on.
    let (kept, nothing) = run(&pipeline(Some(0.0)), &clear);
    assert_eq!(kept, transcript, "the transcript keeps doubtful speech");
    assert_eq!(nothing["suggestions"], serde_json::json!([]), "{nothing:#}");
    assert!(nothing["notice"].as_str().is_some_and(|n| n.contains("too unclear")), "{nothing:#}");

    // A bar all of it passes reads exactly what no bar reads.
    let (_, same) = run(&pipeline(Some(-5.0)), &clear);
    assert_eq!(same, hashtags);
}
