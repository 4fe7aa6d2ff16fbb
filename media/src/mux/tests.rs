use std::path::{Path, PathBuf};
use std::process::Command;

use super::soundtrack::{LIMIT_CEILING, Limiter};
use super::*;
use crate::decode::clips::{self, s};

const RATE: usize = 48_000;

fn options(mode: MuxMode) -> MuxOptions {
    MuxOptions { audio_id: uuid::Uuid::nil(), mode, gain_db: 0.0, original_gain_db: 0.0, offset_secs: 0.0, track_start_secs: 0.0 }
}

/// A 3-second 320×240 H.264 clip at 25 fps with a 440 Hz AAC tone.
fn video(dir: &Path) -> PathBuf {
    clips::make(dir, "video.mp4", "testsrc=size=320x240:rate=25:duration=3", Some("sine=frequency=440:sample_rate=44100:duration=3"), None, &[])
}

/// An MP3 track of a sine at `freq` lasting `secs`.
fn track(dir: &Path, freq: u32, secs: f64) -> PathBuf {
    let path = dir.join(format!("track-{freq}-{secs}.mp3"));
    let src = format!("sine=frequency={freq}:sample_rate=44100:duration={secs}");
    clips::ffmpeg(&["-f", "lavfi", "-i", &src, "-c:a", "libmp3lame", "-b:a", "128k", s(&path)]);
    path
}

/// The left channel of the output's audio as 48 kHz `f32`, decoded by the ffmpeg CLI (not
/// by the code under test). Both channels carry the same signal here; a downmix would add
/// them and hide clipping.
fn decoded_audio(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i", s(path), "-map", "0:a:0", "-af", "pan=mono|c0=c0", "-f", "f32le", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "decoding the output failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Power of one frequency (Goertzel), as the squared amplitude of a sine at it.
fn tone_power(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / RATE as f64;
    let c = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let n = x.len() as f64;
    4.0 * (s1 * s1 + s2 * s2 - c * s1 * s2) / (n * n)
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn window(x: &[f32], from_secs: f64, to_secs: f64) -> &[f32] {
    let a = ((from_secs * RATE as f64) as usize).min(x.len());
    let b = ((to_secs * RATE as f64) as usize).min(x.len());
    &x[a..b]
}

fn video_packets(path: &Path) -> usize {
    crate::init();
    let mut ictx = ffmpeg::format::input(&path).expect("opens");
    let index = ictx.streams().best(media::Type::Video).expect("video").index();
    ictx.packets().filter(|(st, _)| st.index() == index).count()
}

fn run(video: &Path, track: &Path, out: &Path, opts: &MuxOptions) -> Result<MuxReport, MuxError> {
    mux(video, track, out, opts, &clips::never)
}

#[test]
fn replace_copies_the_video_and_puts_the_new_track_under_it() {
    let dir = clips::dir();
    let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 5.0), dir.path().join("out.mp4"));
    let report = run(&v, &t, &out, &options(MuxMode::Replace)).expect("muxes");

    let probed = clips::probe(&out);
    let source = clips::probe(&v);
    assert_eq!(probed.video.codec, "h264");
    assert_eq!(probed.audio.as_ref().map(|a| a.codec.as_str()), Some("aac"));
    assert_eq!(probed.audio.as_ref().map(|a| a.sample_rate), Some(48_000));
    assert!((probed.duration_secs - source.duration_secs).abs() < 0.1, "{} vs {}", probed.duration_secs, source.duration_secs);
    assert!((report.duration_secs - 3.0).abs() < 0.05, "{report:?}");
    let copied = video_packets(&v);
    assert_eq!(report.video_packets as usize, copied);
    assert_eq!(video_packets(&out), copied);
    assert!(!report.original_mixed);
    // faststart: the index (`moov`) comes before the media data (`mdat`).
    let bytes = std::fs::read(&out).expect("read");
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).expect("box present");
    assert!(at(b"moov") < at(b"mdat"), "moov at {} after mdat at {}", at(b"moov"), at(b"mdat"));

    let pcm = decoded_audio(&out);
    let body = window(&pcm, 0.5, 2.5);
    let (new, old) = (tone_power(body, 880.0), tone_power(body, 440.0));
    assert!(new > 100.0 * old, "880 Hz should dominate: {new} vs {old}");
    assert!(new.sqrt() > 0.05, "the track is audible: amplitude {}", new.sqrt());
}

#[test]
fn mix_keeps_the_original_audio_under_the_track() {
    let dir = clips::dir();
    let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 5.0), dir.path().join("out.mp4"));
    let report = run(&v, &t, &out, &options(MuxMode::Mix)).expect("muxes");
    assert!(report.original_mixed);
    let pcm = decoded_audio(&out);
    let body = window(&pcm, 0.5, 2.5);
    let (new, old) = (tone_power(body, 880.0), tone_power(body, 440.0));
    // Both tones at 0 dB: equal within a few dB.
    assert!(new > 0.3 * old && old > 0.3 * new, "both tones are heard: {new} vs {old}");

    // At −20 dB the original sits well under the track.
    let quiet = dir.path().join("quiet.mp4");
    let mut opts = options(MuxMode::Mix);
    opts.original_gain_db = -20.0;
    run(&v, &t, &quiet, &opts).expect("muxes");
    let pcm = decoded_audio(&quiet);
    let body = window(&pcm, 0.5, 2.5);
    let ratio = tone_power(body, 880.0) / tone_power(body, 440.0);
    assert!(ratio > 30.0 && ratio < 300.0, "a 20 dB difference is a power ratio near 100: {ratio}");
}

#[test]
fn offset_leaves_leading_silence_and_track_start_skips_into_the_track() {
    let dir = clips::dir();
    let (v, out) = (video(dir.path()), dir.path().join("out.mp4"));
    // 1 s of 660 Hz then 4 s of 880 Hz: starting the track at 1 s must skip the 660.
    let t = dir.path().join("two-tones.wav");
    clips::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=660:sample_rate=44100:duration=1",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=880:sample_rate=44100:duration=4",
        "-filter_complex",
        "[0:a][1:a]concat=n=2:v=0:a=1",
        s(&t),
    ]);
    let mut opts = options(MuxMode::Replace);
    opts.offset_secs = 1.0;
    opts.track_start_secs = 1.0;
    let report = run(&v, &t, &out, &opts).expect("muxes");
    let pcm = decoded_audio(&out);
    assert!(rms(window(&pcm, 0.0, 0.9)) < 1e-3, "silence before the offset: {}", rms(window(&pcm, 0.0, 0.9)));
    let after = window(&pcm, 1.2, 2.8);
    assert!(rms(after) > 0.05, "the track plays after the offset");
    assert!(tone_power(after, 880.0) > 100.0 * tone_power(after, 660.0), "the first second of the track was skipped");
    assert!((report.track_secs_used - 2.0).abs() < 0.05, "{report:?}");
}

#[test]
fn a_short_track_is_padded_and_a_loud_one_is_limited() {
    let dir = clips::dir();
    let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 1.0), dir.path().join("out.mp4"));
    let mut opts = options(MuxMode::Mix);
    opts.gain_db = 20.0;
    opts.original_gain_db = 20.0;
    let report = run(&v, &t, &out, &opts).expect("muxes");
    assert!((clips::probe(&out).duration_secs - 3.0).abs() < 0.1, "padded to the video");
    assert!(report.limiter_reduction_db > 6.0, "{report:?}");
    let pcm = decoded_audio(&out);
    let peak = pcm.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(peak <= 1.0, "no clipping: peak {peak}");
    // The track ended at 1 s; the original (440 Hz) carries on alone.
    let tail = window(&pcm, 1.5, 2.8);
    assert!(tone_power(tail, 440.0) > 100.0 * tone_power(tail, 880.0));
}

#[test]
fn limiter_never_exceeds_its_ceiling_and_recovers() {
    let mut lim = Limiter::new(48_000);
    let mut l: Vec<f32> = (0..4800).map(|i| 3.0 * (i as f32 * 0.1).sin()).collect();
    let mut r = l.clone();
    lim.process(&mut l, &mut r);
    assert!(l.iter().chain(r.iter()).all(|v| v.abs() <= LIMIT_CEILING + 1e-6));
    let mut quiet = vec![0.1f32; 48_000];
    let mut quiet_r = quiet.clone();
    lim.process(&mut quiet, &mut quiet_r);
    assert!((quiet[47_999] - 0.1).abs() < 1e-3, "gain released after a second: {}", quiet[47_999]);
}

#[test]
fn bad_inputs_fail_with_stable_codes() {
    let dir = clips::dir();
    let (v, t) = (video(dir.path()), track(dir.path(), 880, 2.0));
    let out = dir.path().join("out.mp4");
    let code = |r: Result<MuxReport, MuxError>| match r {
        Err(MuxError::Invalid { code, .. }) => code,
        other => panic!("expected an input error, got {other:?}"),
    };

    let text = dir.path().join("notes.mp3");
    std::fs::write(&text, "these are words, not music\n".repeat(100)).expect("write");
    assert_eq!(code(run(&v, &text, &out, &options(MuxMode::Replace))), JobErrorCode::InvalidAudio);

    let silent_video = clips::make(dir.path(), "silent.mp4", "testsrc=size=160x120:rate=25:duration=1", None, None, &[]);
    assert_eq!(code(run(&v, &silent_video, &out, &options(MuxMode::Replace))), JobErrorCode::InvalidAudio, "a track without audio");

    let mut late = options(MuxMode::Replace);
    late.track_start_secs = 10.0;
    assert_eq!(code(run(&v, &t, &out, &late)), JobErrorCode::InvalidAudio, "starting past the end of the track");

    let audio_only = dir.path().join("audio-only.m4a");
    clips::ffmpeg(&["-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", s(&audio_only)]);
    assert_eq!(code(run(&audio_only, &t, &out, &options(MuxMode::Replace))), JobErrorCode::NoVideoStream);

    let vp8 = dir.path().join("vp8.webm");
    clips::ffmpeg(&["-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1", "-c:v", "libvpx", "-b:v", "200k", s(&vp8)]);
    assert_eq!(code(run(&vp8, &t, &out, &options(MuxMode::Replace))), JobErrorCode::UnsupportedVideoCodec);
}

#[test]
fn a_rotated_source_is_reported_as_not_kept() {
    let dir = clips::dir();
    let plain = clips::make(dir.path(), "plain.mp4", "testsrc=size=320x240:rate=25:duration=1", None, None, &[]);
    // The CLI writes the display matrix when it copies a stream with `rotate` metadata.
    let rotated = dir.path().join("rotated.mp4");
    clips::ffmpeg(&["-i", s(&plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", s(&rotated)]);
    let source = clips::probe(&rotated).video.rotation;
    assert_ne!(source, 0, "the source is rotated");
    let (t, out) = (track(dir.path(), 880, 2.0), dir.path().join("out.mp4"));
    let report = run(&rotated, &t, &out, &options(MuxMode::Replace)).expect("muxes");
    assert_eq!(report.source_rotation, source);
    assert_eq!(report.rotation_kept, clips::probe(&out).video.rotation == source);
    let report = run(&plain, &t, &out, &options(MuxMode::Replace)).expect("muxes");
    assert!(report.rotation_kept && report.source_rotation == 0);
}

#[test]
fn stops_when_asked() {
    let dir = clips::dir();
    let (v, t, out) = (video(dir.path()), track(dir.path(), 880, 2.0), dir.path().join("out.mp4"));
    assert!(matches!(mux(&v, &t, &out, &options(MuxMode::Replace), &|| true), Err(MuxError::Stopped)));
}
