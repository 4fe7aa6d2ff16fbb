use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::clips::{self, dir, make, never};
use super::*;
use crate::audio::ANALYSIS_RATE;

/// Asserts that the analysis track lasts `secs`, within a `tolerance` share.
fn assert_audio_secs(audio: &DecodedAudio, secs: f64, tolerance: f64) {
    let expected = secs * f64::from(ANALYSIS_RATE);
    assert!((audio.samples.len() as f64 - expected).abs() / expected < tolerance, "{} samples for {secs} s", audio.samples.len());
}

fn frames_only(sampling: Sampling, size: FrameSize) -> DecodeOptions {
    DecodeOptions::sampling_only(sampling, size)
}

#[test]
fn default_decode_gives_samples_stats_and_audio() {
    let d = dir();
    let clip = make(d.path(), "a.mp4", "testsrc2=s=320x240:r=25:d=3", Some("sine=f=440:sample_rate=48000:d=3"), None, &["-ac", "2"]);
    let probe = clips::probe(&clip);
    let opts = DecodeOptions { sampling: Sampling::Count(4), frame_size: FrameSize::Square(64), ..DecodeOptions::default() };
    let out = decode(&clip, &probe, &opts, &never).expect("decodes");

    assert_eq!(out.samples.len(), 4);
    let times: Vec<f64> = out.samples.iter().map(|s| s.time_secs).collect();
    for (t, want) in times.iter().zip([0.375, 1.125, 1.875, 2.625]) {
        assert!((t - want).abs() <= 0.05, "{times:?}");
    }
    assert!(out.samples.iter().all(|s| s.width == 64 && s.height == 64 && s.rgb.len() == 64 * 64 * 3));
    assert!(out.samples[0].colourfulness > 20.0, "testsrc2 is colourful");
    assert_eq!((out.width, out.height), (320, 240));
    assert_eq!(out.report.strategy, Strategy::Sequential);
    // 25 fps measured at up to 15 fps: every other frame.
    assert!((35..=40).contains(&out.frame_stats.len()), "{}", out.frame_stats.len());
    assert!(out.frame_stats.windows(2).all(|w| w[1].time_secs > w[0].time_secs));
    assert!(out.measured_frame_rate.is_some_and(|f| (f - 25.0).abs() < 0.5));
    assert!((out.duration_secs - 3.0).abs() < 0.1, "{}", out.duration_secs);

    let audio = out.audio.expect("audio");
    assert_audio_secs(&audio, 3.0, 0.02);
    assert_eq!((audio.source_rate, audio.source_channels), (48_000, 2));
    let levels = audio.levels.expect("levels");
    // ffmpeg's sine is at 1/8 of full scale (−18 dBFS peak); `-ac 2` spreads it over two
    // channels 3 dB lower each: −18 − 0.691 − 3 ≈ −21.75 LUFS.
    let lufs = levels.integrated_lufs.expect("loudness");
    assert!((lufs - -21.75).abs() < 0.5, "{lufs}");
    assert_eq!(levels.clipped_samples, 0);
    // The mono downmix sums the two channels back to about the source level.
    let peak = audio.samples.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!((0.08..0.2).contains(&peak), "{peak}");
}

#[test]
fn audio_length_matches_duration_for_other_rates() {
    let d = dir();
    let clip = make(d.path(), "mono.mp4", "testsrc2=s=160x120:r=10:d=2", Some("sine=f=300:sample_rate=44100:d=2"), None, &["-ac", "1"]);
    let probe = clips::probe(&clip);
    let opts = DecodeOptions { frame_stats: false, scenes: None, ..DecodeOptions::default() };
    let out = decode(&clip, &probe, &opts, &never).expect("decodes");
    let audio = out.audio.expect("audio");
    assert_audio_secs(&audio, 2.0, 0.03);
    assert_eq!(audio.source_channels, 1);
}

#[test]
fn pcm_without_a_channel_layout_still_gives_audio() {
    let d = dir();
    let wav = d.path().join("tone.wav");
    clips::ffmpeg(&["-f", "lavfi", "-i", "sine=f=300:sample_rate=22050:d=2", "-c:a", "pcm_s16le", clips::s(&wav)]);
    let clip = d.path().join("pcm.mkv");
    // Copied into Matroska, the PCM stream declares no channel layout.
    clips::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=10:d=2",
        "-i",
        clips::s(&wav),
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "copy",
        clips::s(&clip),
    ]);
    let probe = clips::probe(&clip);
    let opts = DecodeOptions { frame_stats: false, scenes: None, ..DecodeOptions::default() };

    let out = decode(&clip, &probe, &opts, &never).expect("decodes");

    let audio = out.audio.expect("audio");
    assert_audio_secs(&audio, 2.0, 0.03);
    assert!(audio.levels.is_some(), "levels measured too");
}

#[test]
fn luma_is_full_range_and_bars_are_found() {
    let d = dir();
    let clip = make(d.path(), "box.mp4", "color=c=black:s=160x288:r=10:d=1", None, Some("drawbox=x=0:y=54:w=160:h=180:color=white:t=fill"), &[]);
    let probe = clips::probe(&clip);
    let opts = DecodeOptions { sampling: Sampling::Off, ..DecodeOptions::default() };
    let out = decode(&clip, &probe, &opts, &never).expect("decodes");
    let f = out.frame_stats.first().expect("stats");
    // Limited-range white (235) is expanded to 255, black (16) to 0: the picture area is
    // the white box, and it is all blown highlights.
    assert!(f.luma_mean > 245.0, "{f:?}");
    assert!(f.white_ratio > 0.9, "{f:?}");
    let [l, t, r, b] = f.picture;
    assert!(l < 0.02 && r > 0.98 && (t - 0.1875).abs() < 0.04 && (b - 0.8125).abs() < 0.04, "{:?}", f.picture);
}

#[test]
fn rotated_video_is_sampled_upright() {
    let d = dir();
    // White band at the top of the coded picture, then rotated 90° clockwise for display.
    let plain = make(d.path(), "plain.mp4", "color=c=black:s=320x180:r=10:d=1", None, Some("drawbox=x=0:y=0:w=320:h=60:color=white:t=fill"), &[]);
    let rotated = d.path().join("rotated.mp4");
    clips::ffmpeg(&["-i", clips::s(&plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", clips::s(&rotated)]);
    let probe = clips::probe(&rotated);
    // The ffmpeg 5.1 CLI turns `rotate=90` into a matrix that ffprobe reports as
    // "rotation=90", i.e. 90° counter-clockwise: players show the top on the left.
    assert_eq!((probe.video.display_width, probe.video.display_height), (180, 320));

    let out = decode(&rotated, &probe, &frames_only(Sampling::Count(1), FrameSize::ShortSide(90)), &never).expect("decodes");
    assert_eq!((out.width, out.height), (180, 320));
    let frame = out.samples.first().expect("a sample");
    assert_eq!((frame.width, frame.height), (90, 160), "portrait after rotation");

    // The ffmpeg CLI rotates on decode too: the two pictures must agree.
    let cli = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-i",
            clips::s(&rotated),
            "-frames:v",
            "1",
            "-vf",
            "scale=90:160",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert_eq!(cli.stdout.len(), frame.rgb.len());
    let mad = |a: &[u8], b: &[u8]| a.iter().zip(b).map(|(x, y)| f64::from(x.abs_diff(*y))).sum::<f64>() / a.len() as f64;
    assert!(mad(&frame.rgb, &cli.stdout) < 12.0, "differs from the CLI: {}", mad(&frame.rgb, &cli.stdout));
    // The white band is on the left: the top turned counter-clockwise.
    assert_eq!(out.rotation, 270);
    let column_mean = |x: usize| (0..160).map(|y| f64::from(frame.rgb[(y * 90 + x) * 3])).sum::<f64>() / 160.0;
    assert!(column_mean(5) > 200.0 && column_mean(85) < 50.0);
}

#[test]
fn measured_frame_rate_is_the_real_one_whatever_else_the_decode_serves() {
    let d = dir();
    // Quality alone, and quality sharing the decode with the frame models (OCR's one frame
    // a second at a larger size), which lets the codec skip frames between samples.
    let alone = DecodeOptions::default();
    let shared = DecodeOptions {
        sampling: Sampling::EverySecs(1.0),
        frame_size: FrameSize::ShortSide(540),
        limits: DecodeLimits { max_samples: 120, ..DecodeLimits::default() },
        ..DecodeOptions::default()
    };
    for fps in [24, 30, 60] {
        // B-frames and sparse keyframes, as phones and editors export.
        let clip =
            make(d.path(), &format!("f{fps}.mp4"), &format!("testsrc2=s=320x240:r={fps}:d=4"), None, None, &["-x264-params", "bframes=2:keyint=250"]);
        let probe = clips::probe(&clip);
        let a = decode(&clip, &probe, &alone, &never).expect("decodes").measured_frame_rate.expect("measured");
        let b = decode(&clip, &probe, &shared, &never).expect("decodes").measured_frame_rate.expect("measured");
        assert!((a - f64::from(fps)).abs() < 0.1, "{fps} fps measured {a} alone");
        assert_eq!(a, b, "{fps} fps: {a} alone, {b} with frame sampling");
    }
    // Variable frame rate: 30 fps for three seconds, then 10 fps for one. The measure is the
    // prevailing rate, the same either way.
    let vfr = make(d.path(), "vfr.mp4", "testsrc2=s=160x120:r=30:d=4", None, Some("select='lt(n\\,90)+not(mod(n\\,3))'"), &["-vsync", "vfr"]);
    let probe = clips::probe(&vfr);
    let a = decode(&vfr, &probe, &alone, &never).expect("decodes").measured_frame_rate.expect("measured");
    let b = decode(&vfr, &probe, &shared, &never).expect("decodes").measured_frame_rate.expect("measured");
    assert!((a - 30.0).abs() < 0.1, "vfr measured {a}");
    assert_eq!(a, b);
}

#[test]
fn odd_sizes_and_variable_frame_rate_decode() {
    let d = dir();
    let odd = make(d.path(), "odd.mkv", "testsrc2=s=320x240:r=25:d=2", None, Some("scale=321:241"), &["-pix_fmt", "yuv444p"]);
    let probe = clips::probe(&odd);
    let out =
        decode(&odd, &probe, &DecodeOptions { sampling: Sampling::Count(3), frame_size: FrameSize::CenterCrop(32), ..DecodeOptions::default() }, &never)
            .expect("odd size decodes");
    assert_eq!((out.width, out.height), (321, 241));
    assert!(out.samples.iter().all(|s| (s.width, s.height) == (32, 32)));
    assert_eq!(out.samples.len(), 3);

    // 30 fps for a second, then every third frame: 10 fps.
    let vfr = make(d.path(), "vfr.mp4", "testsrc2=s=160x120:r=30:d=3", None, Some("select='lt(n\\,30)+not(mod(n\\,3))'"), &["-vsync", "vfr"]);
    let probe = clips::probe(&vfr);
    let out = decode(&vfr, &probe, &DecodeOptions { sampling: Sampling::EverySecs(0.5), ..DecodeOptions::default() }, &never).expect("vfr decodes");
    let times: Vec<f64> = out.samples.iter().map(|s| s.time_secs).collect();
    assert!(times.len() >= 5, "{times:?}");
    assert!(times.windows(2).all(|w| w[1] > w[0]));
    assert!(times.iter().zip((0..).map(|i| f64::from(i) * 0.5)).all(|(t, want)| (t - want).abs() < 0.1), "{times:?}");
    let early = out.frame_stats.iter().filter(|f| f.time_secs < 1.0).count();
    let late = out.frame_stats.iter().filter(|f| (1.0..2.0).contains(&f.time_secs)).count();
    assert!(early > late, "denser statistics while the frame rate is higher: {early} vs {late}");
}

#[test]
fn ten_bit_interlaced_gif_and_vp9_decode() {
    let d = dir();
    let src = "testsrc2=s=160x120:r=10:d=1";
    let ten = make(d.path(), "ten.mkv", src, None, None, &["-pix_fmt", "yuv420p10le"]);
    let interlaced = make(d.path(), "interlaced.mp4", src, None, None, &["-flags", "+ilme+ildct", "-x264opts", "tff=1"]);
    let gif = d.path().join("animation.mp4");
    clips::ffmpeg(&["-f", "lavfi", "-i", src, "-f", "gif", clips::s(&gif)]);
    let vp9 = d.path().join("vp9.webm");
    clips::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        src,
        "-f",
        "lavfi",
        "-i",
        "sine=d=1",
        "-c:v",
        "libvpx-vp9",
        "-deadline",
        "realtime",
        "-c:a",
        "libopus",
        clips::s(&vp9),
    ]);
    for path in [&ten, &interlaced, &gif, &vp9] {
        let out = decode(path, &clips::probe(path), &DecodeOptions::default(), &never).expect("decodes");
        assert_eq!(out.report.frames_decoded, 10, "{}", path.display());
        assert!(!out.samples.is_empty() && !out.frame_stats.is_empty());
        assert!(out.frame_stats.iter().all(|f| (90.0..170.0).contains(&f.luma_mean)), "{}: {:?}", path.display(), out.frame_stats[0]);
        if path == &interlaced {
            assert_eq!(out.report.interlaced_frames, 10);
        }
        if path == &vp9 {
            assert!(out.audio.is_some_and(|a| a.samples.len() > 15_000));
        }
    }
}

#[test]
fn dense_keyframes_are_decoded_alone_sparser_ones_sought_sparse_ones_decoded_through() {
    let d = dir();
    let dense = make(d.path(), "g5.mp4", "testsrc2=s=160x120:r=25:d=3", None, None, &["-g", "5"]);
    let sparser = make(d.path(), "g31.mp4", "testsrc2=s=160x120:r=25:d=4", None, None, &["-g", "31", "-keyint_min", "31", "-sc_threshold", "0"]);
    let sparse = make(d.path(), "g250.mp4", "testsrc2=s=160x120:r=25:d=3", None, None, &["-g", "250"]);
    let opts = frames_only(Sampling::EverySecs(1.0), FrameSize::Square(32));
    let keyed = decode(&dense, &clips::probe(&dense), &opts, &never).expect("keyframes decode");
    assert_eq!(keyed.report.strategy, Strategy::Keyframes);
    assert_eq!(keyed.report.seeks, 0);
    assert!(keyed.report.frames_decoded <= 15, "keyframes only: {}", keyed.report.frames_decoded);
    let sought = decode(&sparser, &clips::probe(&sparser), &opts, &never).expect("seek decode");
    assert_eq!(sought.report.strategy, Strategy::Seek);
    assert!(sought.report.seeks >= 1);
    let through = decode(&sparse, &clips::probe(&sparse), &opts, &never).expect("sequential decode");
    assert_eq!(through.report.strategy, Strategy::Sequential);

    let t = |o: &DecodeOutput| o.samples.iter().map(|s| s.time_secs).collect::<Vec<_>>();
    for (fast, path, n) in [(&keyed, &dense, 3), (&sought, &sparser, 4)] {
        let forced = DecodeOptions { strategy: Strategy::Sequential, ..opts.clone() };
        let reference = decode(path, &clips::probe(path), &forced, &never).expect("sequential decode");
        assert_eq!(t(fast).len(), n, "{:?}", t(fast));
        assert_eq!(t(&reference).len(), n);
        for (a, b) in t(fast).iter().zip(t(&reference)) {
            assert!((a - b).abs() <= 0.5, "{:?} vs {:?}", t(fast), t(&reference));
        }
    }
}

#[test]
fn keyframes_that_thin_out_after_the_first_packets_still_give_every_later_sample() {
    let d = dir();
    // Keyframes every 5 frames for the first second, then one every 4 s: the first packets
    // promise a keyframe in every slot, the rest of the file breaks that promise.
    let path = make(
        d.path(),
        "thinning.mp4",
        "testsrc2=s=160x120:r=25:d=9",
        Some("sine=f=440:sample_rate=48000:d=9"),
        None,
        &["-force_key_frames", "expr:if(lt(t,1),eq(mod(n,5),0),eq(mod(n,100),0))", "-g", "1000", "-sc_threshold", "0"],
    );
    let opts = DecodeOptions { audio: true, ..frames_only(Sampling::EverySecs(1.0), FrameSize::Square(32)) };
    let out = decode(&path, &clips::probe(&path), &opts, &never).expect("decode");
    assert_eq!(out.report.strategy, Strategy::Keyframes);
    let times: Vec<f64> = out.samples.iter().map(|s| s.time_secs).collect();
    let forced = DecodeOptions { strategy: Strategy::Sequential, ..opts.clone() };
    let sequential = decode(&path, &clips::probe(&path), &forced, &never).expect("decode");
    let reference: Vec<f64> = sequential.samples.iter().map(|s| s.time_secs).collect();
    let heard = |o: &DecodeOutput| o.audio.as_ref().map(|a| a.samples.len());
    assert_eq!(heard(&out), heard(&sequential), "the audio read again after the seek is not heard twice");
    assert!(heard(&out).is_some_and(|n| n > 140_000));
    assert_eq!(times.len(), reference.len(), "every slot has its sample: {times:?} vs {reference:?}");
    assert!(times.iter().zip(&reference).all(|(a, b)| (a - b).abs() <= 0.5), "{times:?} vs {reference:?}");
    assert_eq!(out.report.seeks, 1, "one seek back, where the keyframes thinned out");
}

#[test]
fn scene_cuts_are_found() {
    let d = dir();
    let path = d.path().join("cut.mp4");
    clips::ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x120:r=25:d=1.5",
        "-f",
        "lavfi",
        "-i",
        "smptebars=s=160x120:r=25:d=1.5",
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1[v]",
        "-map",
        "[v]",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        clips::s(&path),
    ]);
    let out = decode(&path, &clips::probe(&path), &DecodeOptions::default(), &never).expect("decodes");
    assert_eq!(out.scene_cuts.len(), 1, "{:?}", out.scene_cuts);
    assert!((out.scene_cuts[0].time_secs - 1.5).abs() < 0.1);
    assert_eq!(out.scene_frames.len(), 1);
    assert_eq!(out.scene_frames[0].kind, SampleKind::SceneCut);
}

#[test]
fn a_cancelled_decode_stops_at_once() {
    let d = dir();
    let clip = make(d.path(), "long.mp4", "testsrc2=s=160x120:r=25:d=3", None, None, &[]);
    let probe = clips::probe(&clip);
    let calls = AtomicUsize::new(0);
    let stop_after_five = || calls.fetch_add(1, Ordering::SeqCst) >= 5;
    let err = decode(&clip, &probe, &DecodeOptions::default(), &stop_after_five).expect_err("stopped");
    assert!(matches!(err, DecodeError::Stopped), "{err}");
    assert_eq!(err.code(), None);
    assert_eq!(calls.load(Ordering::SeqCst), 6, "no work after the first positive check");

    let limits = DecodeLimits { max_wall: Duration::ZERO, ..DecodeLimits::default() };
    let err = decode(&clip, &probe, &DecodeOptions { limits, ..DecodeOptions::default() }, &never).expect_err("timed out");
    assert_eq!(err.code(), Some(JobErrorCode::Timeout));
}

#[test]
fn truncated_files_end_cleanly() {
    let d = dir();
    let clip = make(d.path(), "whole.mkv", "testsrc2=s=160x120:r=25:d=2", Some("sine=d=2"), None, &[]);
    let probe = clips::probe(&clip);
    let bytes = std::fs::read(&clip).expect("read");
    for percent in [30, 60, 90] {
        let cut = d.path().join(format!("cut{percent}.mkv"));
        std::fs::write(&cut, &bytes[..bytes.len() * percent / 100]).expect("write");
        match decode(&cut, &probe, &DecodeOptions::default(), &never) {
            Ok(out) => assert!(out.report.frames_decoded > 0),
            Err(e) => assert_eq!(e.code(), Some(JobErrorCode::InvalidMedia), "{e}"),
        }
    }
    std::fs::write(d.path().join("gone.mkv"), b"").expect("write");
    std::fs::remove_file(d.path().join("gone.mkv")).expect("remove");
    let err = decode(&d.path().join("gone.mkv"), &probe, &DecodeOptions::default(), &never).expect_err("missing file");
    assert!(err.is_retryable());
}

#[test]
fn pixel_helpers() {
    // 2×1 image: red, blue; rotated clockwise it is 1×2 with red on top.
    let rgb = [255, 0, 0, 0, 0, 255];
    let (r, w, h) = pixels::rotate_rgb(&rgb, 2, 1, 90);
    assert_eq!((w, h, r), (1, 2, vec![255, 0, 0, 0, 0, 255]));
    let (r, w, h) = pixels::rotate_rgb(&rgb, 2, 1, 270);
    assert_eq!((w, h, r), (1, 2, vec![0, 0, 255, 255, 0, 0]));
    let (r, _, _) = pixels::rotate_rgb(&rgb, 2, 1, 180);
    assert_eq!(r, vec![0, 0, 255, 255, 0, 0]);
    assert_eq!(pixels::colourfulness(&[128; 300]), 0.0);
    assert!(pixels::colourfulness(&rgb) > 100.0);

    let matrix = |v: [i32; 9]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let one = 1 << 16;
    // av_display_rotation_set(m, 90), what a portrait phone recording carries.
    assert_eq!(clockwise_rotation(&matrix([0, one, 0, -one, 0, 0, 0, 0, 1 << 30])), Some(90));
    assert_eq!(clockwise_rotation(&matrix([0, -one, 0, one, 0, 0, 0, 0, 1 << 30])), Some(270));
    assert_eq!(clockwise_rotation(&matrix([-one, 0, 0, 0, -one, 0, 0, 0, 1 << 30])), Some(180));
    assert_eq!(clockwise_rotation(&matrix([one, 0, 0, 0, one, 0, 0, 0, 1 << 30])), Some(0));
    assert_eq!(clockwise_rotation(&[0; 12]), None);
    assert_eq!(clockwise_rotation(&matrix([0; 9])), None);

    let flat = pixels::Gray { w: 64, h: 64, data: vec![100; 64 * 64] };
    let all = pixels::Area { x0: 0, y0: 0, x1: 64, y1: 64 };
    assert_eq!(pixels::laplacian_variance(&flat, &all), 0.0);
    assert_eq!(pixels::noise_sigma(&flat, &all), 0.0);
    // Shifting a textured image right by 3 pixels is found as +3/64 of the width.
    let tex =
        |dx: usize| pixels::Gray { w: 64, h: 64, data: (0..64 * 64).map(|i| ((((i % 64) + 64 - dx) % 64 * 37 + (i / 64) * 11) % 251) as u8).collect() };
    let shift = pixels::global_shift(&tex(0), &tex(3)).expect("textured");
    assert!((shift[0] - 3.0 / 64.0).abs() < 1e-6 && shift[1].abs() < 1e-6, "{shift:?}");
}
