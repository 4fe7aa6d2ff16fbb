//! Generated clips for the media tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::MediaSettings;
use crate::probe::{self, Probe};

/// Runs the ffmpeg CLI quietly, overwriting its output.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg").args(["-hide_banner", "-loglevel", "error", "-y"]).args(args).output().expect("ffmpeg runs");
    assert!(out.status.success(), "ffmpeg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Writes `name` in `dir` from lavfi inputs: `video` and optional `audio` source graphs,
/// an optional video filter chain and extra output arguments (H.264 ultrafast and AAC by
/// default).
pub fn make(dir: &Path, name: &str, video: &str, audio: Option<&str>, vf: Option<&str>, extra: &[&str]) -> PathBuf {
    let path = dir.join(name);
    let mut args: Vec<&str> = vec!["-f", "lavfi", "-i", video];
    if let Some(a) = audio {
        args.extend(["-f", "lavfi", "-i", a]);
    }
    if let Some(vf) = vf {
        args.extend(["-vf", vf]);
    }
    args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]);
    if audio.is_some() {
        args.extend(["-c:a", "aac", "-b:a", "128k"]);
    }
    args.extend(extra);
    args.extend(["-shortest"]);
    let p = path.to_str().expect("utf-8 path");
    args.push(p);
    ffmpeg(&args);
    path
}

/// Probes with default limits.
pub fn probe(path: &Path) -> Probe {
    probe::probe(path, &MediaSettings::default()).expect("probe")
}

/// A fresh temporary directory.
pub fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn never() -> bool {
    false
}

/// Path as `&str` for command lines.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}
