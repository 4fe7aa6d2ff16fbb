//! Mux benchmark: a new soundtrack under a generated 1080×1920 H.264 clip, in `replace` and
//! `mix` mode, against the ffmpeg CLI doing the same remux (video copied, track encoded to AAC).
//! Prints figures; asserts nothing.
//!
//! ```text
//! cargo run --release -p reelq-worker --bin reelq-mux-bench [-- --secs 30 --runs 3]
//! ```

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

use reelq_shared::domain::{MuxMode, MuxOptions};
use reelq_worker::media::mux;

fn flag(args: &[String], name: &str, default: u32) -> anyhow::Result<u32> {
    match args.iter().position(|a| a == name) {
        Some(i) => Ok(args.get(i + 1).context("flag value")?.parse()?),
        None => Ok(default),
    }
}

fn ffmpeg(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().context("ffmpeg runs")?;
    if !out.status.success() {
        bail!("ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("utf-8 path")
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let secs = flag(&args, "--secs", 30)?;
    let runs = flag(&args, "--runs", 3)?.max(1);
    let dir = tempfile::tempdir()?;
    let video = dir.path().join("video.mp4");
    let track = dir.path().join("track.mp3");
    let out = dir.path().join("out.mp4");
    let duration = secs.to_string();
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1080x1920:rate=30",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100",
        "-t",
        &duration,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        path_str(&video)?,
    ])?;
    let track_secs = (secs + 30).to_string();
    ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100", "-t", &track_secs, "-c:a", "libmp3lame", path_str(&track)?])?;
    let size_mb = std::fs::metadata(&video)?.len() as f64 / 1e6;
    println!("input: {secs} s 1080x1920 H.264 30 fps ({size_mb:.1} MB) + {track_secs} s MP3 track; {runs} runs each, best shown");

    for mode in [MuxMode::Replace, MuxMode::Mix] {
        let opts = MuxOptions { audio_id: uuid::Uuid::nil(), mode, gain_db: 0.0, original_gain_db: -12.0, offset_secs: 1.0, track_start_secs: 5.0 };
        let mut best = f64::MAX;
        let mut report = None;
        for _ in 0..runs {
            let started = Instant::now();
            let r = mux::mux(&video, &track, &out, &opts, &|| false)?;
            best = best.min(started.elapsed().as_secs_f64());
            report = Some(r);
        }
        let packets = report.map_or(0, |r| r.video_packets);
        println!("reelq mux {mode:?}: {:.0} ms ({:.0}× real time), {packets} video packets copied", best * 1000.0, f64::from(secs) / best);
    }

    let mut best = f64::MAX;
    for _ in 0..runs {
        let started = Instant::now();
        ffmpeg(&[
            "-i",
            path_str(&video)?,
            "-ss",
            "5",
            "-i",
            path_str(&track)?,
            "-map",
            "0:v",
            "-map",
            "1:a",
            "-c:v",
            "copy",
            "-c:a",
            "aac",
            "-ar",
            "48000",
            "-ac",
            "2",
            "-b:a",
            "192k",
            "-shortest",
            "-movflags",
            "+faststart",
            path_str(&out)?,
        ])?;
        best = best.min(started.elapsed().as_secs_f64());
    }
    println!("ffmpeg CLI remux (replace, no offset): {:.0} ms ({:.0}× real time)", best * 1000.0, f64::from(secs) / best);
    Ok(())
}
