//! Test helpers: the real model pack and ONNX Runtime, and inputs generated with ffmpeg and
//! espeak-ng. A missing pack fails the test with instructions rather than skipping it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use super::{Device, DirStore, Runtime, RuntimeConfig};

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The runtime and the model pack, or a panic that says how to get them.
pub(crate) fn runtime_and_store() -> (Arc<Runtime>, DirStore) {
    let root = repo_root();
    let library = RuntimeConfig::default_library(&root);
    let models = DirStore::default_root(&root);
    let hint = "run tools/models/build-pack (or set ORT_DYLIB_PATH and REELQ_MODELS_DIR)";
    assert!(library.is_file(), "ONNX Runtime library {} is missing: {hint}", library.display());
    assert!(models.is_dir(), "model pack {} is missing: {hint}", models.display());
    let runtime = Runtime::init(RuntimeConfig { library, intra_threads: 2, device: Device::Cpu }).unwrap_or_else(|e| panic!("{e}: {hint}"));
    (runtime, DirStore::new(models))
}

/// Renders one RGB24 frame from an ffmpeg lavfi source description.
pub(crate) fn ffmpeg_rgb(lavfi: &str, width: u32, height: u32) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", lavfi, "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), (width * height * 3) as usize, "ffmpeg frame size");
    out.stdout
}

/// Renders the first `count` RGB24 frames of an ffmpeg lavfi source description.
pub(crate) fn ffmpeg_rgb_frames(lavfi: &str, width: u32, height: u32, count: usize) -> Vec<Vec<u8>> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", lavfi, "-frames:v", &count.to_string(), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("run ffmpeg (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    let size = (width * height * 3) as usize;
    assert_eq!(out.stdout.len(), size * count, "ffmpeg frame sizes");
    out.stdout.chunks_exact(size).map(<[u8]>::to_vec).collect()
}

/// Decodes any audio ffmpeg can read (file or lavfi with `-f lavfi`) to 16 kHz mono f32.
pub(crate) fn ffmpeg_audio(input_args: &[&str]) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input_args)
        .args(["-ac", "1", "-ar", "16000", "-f", "f32le", "-"])
        .output()
        .expect("run ffmpeg (apt-get install ffmpeg)");
    assert!(out.status.success(), "ffmpeg: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Speech synthesised by espeak-ng, as 16 kHz mono f32.
pub(crate) fn espeak(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = dir.path().join("speech.wav");
    let status = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&wav)
        .arg(text)
        .status()
        .expect("run espeak-ng (apt-get install espeak-ng)");
    assert!(status.success(), "espeak-ng failed");
    let path = wav.to_string_lossy().into_owned();
    ffmpeg_audio(&["-i", &path])
}
