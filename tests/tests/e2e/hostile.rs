//! A corpus of broken, odd and hostile files, generated here with the ffmpeg CLI and byte
//! surgery, sent through the real path (upload → queue → worker). Each must end with its
//! expected outcome: refused at upload, `failed` with a stable code after one attempt, or
//! analysed — and the worker must survive all of them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use reelq_tests::{TestApp, TestEnv, TestWorker, make_clip};

/// What a case must end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Refused by the api before anything is stored.
    Refused(u16),
    /// Analysed.
    Succeeds,
    /// `failed` with this code after one attempt.
    Fails(&'static str),
    /// Either analysed or failed with one of these codes: files whose damage FFmpeg may or may
    /// not be able to work around.
    SucceedsOrFails(&'static [&'static str]),
}

fn lavfi(video: &str, audio: Option<&str>, secs: &str, codec: &[&str], ext: &str) -> Vec<u8> {
    let mut args = vec!["-f", "lavfi", "-i", video];
    if let Some(a) = audio {
        args.extend(["-f", "lavfi", "-i", a]);
    }
    args.extend(["-t", secs]);
    args.extend(codec);
    if audio.is_some() {
        args.push("-shortest");
    }
    make_clip(&args, ext)
}

const X264: &[&str] = &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"];

fn base_clip() -> Vec<u8> {
    lavfi("testsrc2=size=320x240:rate=25", Some("sine=frequency=440:sample_rate=44100"), "2", &[X264, &["-c:a", "aac"]].concat(), "mp4")
}

fn truncated(bytes: &[u8], percent: usize) -> Vec<u8> {
    bytes[..bytes.len() * percent / 100].to_vec()
}

/// Rewrites the movie header's duration to about 13 years.
fn huge_declared_duration(mut bytes: Vec<u8>) -> Vec<u8> {
    let at = bytes.windows(4).position(|w| w == b"mvhd").expect("mvhd box");
    // version(1) flags(3) creation(4) modification(4) timescale(4) duration(4), version 0.
    let duration = at + 4 + 1 + 3 + 4 + 4 + 4;
    bytes[duration..duration + 4].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
    bytes
}

fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str, Expect)> {
    let clip = base_clip();
    let faststart = make_clip(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25",
            "-t",
            "2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-movflags",
            "+faststart",
        ],
        "mp4",
    );
    let mut random = vec![0u8; 50_000];
    let mut x: u32 = 0x1234_5678;
    for b in &mut random {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let mut mp4_then_garbage = clip[..64].to_vec();
    mp4_then_garbage.extend_from_slice(&random);
    let mut ebml_then_garbage = vec![0x1A, 0x45, 0xDF, 0xA3, 0x9F, 0x42, 0x82, 0x84, b'w', b'e', b'b', b'm'];
    ebml_then_garbage.extend_from_slice(&random);
    let many_streams = {
        let mut args = vec!["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=10"];
        for _ in 0..20 {
            args.extend(["-f", "lavfi", "-i", "sine=sample_rate=8000"]);
        }
        args.extend(["-t", "1"]);
        let maps: Vec<String> = (0..21).map(|i| i.to_string()).collect();
        for m in &maps {
            args.extend(["-map", m.as_str()]);
        }
        args.extend(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest"]);
        make_clip(&args, "mp4")
    };
    let rotated = make_clip(&["-i", &write_temp(&clip, "mp4"), "-c", "copy", "-metadata:s:v:0", "rotate=90"], "mp4");

    vec![
        ("zero bytes", Vec::new(), "video/mp4", Expect::Refused(422)),
        ("random bytes named .mp4", random.clone(), "video/mp4", Expect::Refused(415)),
        ("text file", b"Once upon a time there was a file that was not a video at all, not even close.".repeat(4), "video/mp4", Expect::Refused(415)),
        ("PNG renamed .mp4", make_clip(&["-f", "lavfi", "-i", "testsrc2=size=64x64", "-frames:v", "1"], "png"), "video/mp4", Expect::Refused(415)),
        ("GIF renamed .mp4", make_clip(&["-f", "lavfi", "-i", "testsrc2=size=64x64:rate=5", "-t", "1"], "gif"), "video/mp4", Expect::Refused(415)),
        ("truncated at 10 %", truncated(&clip, 10), "video/mp4", Expect::Fails("invalid_media")),
        ("truncated at 50 %", truncated(&clip, 50), "video/mp4", Expect::Fails("invalid_media")),
        ("truncated at 90 %", truncated(&clip, 90), "video/mp4", Expect::Fails("invalid_media")),
        ("faststart truncated at 50 %", truncated(&faststart, 50), "video/mp4", Expect::SucceedsOrFails(&["invalid_media"])),
        ("header only", clip[..64].to_vec(), "video/mp4", Expect::Fails("invalid_media")),
        ("MP4 header then garbage", mp4_then_garbage, "video/mp4", Expect::Fails("invalid_media")),
        ("EBML header then garbage", ebml_then_garbage, "video/webm", Expect::Fails("invalid_media")),
        (
            "audio only (MP4)",
            lavfi("sine=frequency=440:sample_rate=44100", None, "1", &["-c:a", "aac"], "mp4"),
            "video/mp4",
            Expect::Fails("no_video_stream"),
        ),
        (
            "audio only (WebM)",
            lavfi("sine=frequency=440:sample_rate=48000", None, "1", &["-c:a", "libopus"], "webm"),
            "video/webm",
            Expect::Fails("no_video_stream"),
        ),
        ("video only", lavfi("testsrc2=size=320x240:rate=25", None, "1", X264, "mp4"), "video/mp4", Expect::Succeeds),
        ("over the pixel limit", lavfi("testsrc2=size=2560x1440:rate=5", None, "0.4", X264, "mp4"), "video/mp4", Expect::Fails("resolution_too_high")),
        ("over the duration limit", lavfi("color=c=blue:size=64x64:rate=1", None, "40", X264, "mp4"), "video/mp4", Expect::Fails("video_too_long")),
        ("hours-long declared duration", huge_declared_duration(clip.clone()), "video/mp4", Expect::SucceedsOrFails(&["video_too_long", "invalid_media"])),
        (
            "corrupt timestamps",
            make_clip(
                &[
                    "-i",
                    &write_temp(&clip, "mp4"),
                    "-c",
                    "copy",
                    "-bsf:v",
                    "setts=pts=if(eq(N\\,10)\\,0\\,PTS):dts=if(eq(N\\,10)\\,0\\,DTS)",
                    "-f",
                    "matroska",
                ],
                "mkv",
            ),
            "video/x-matroska",
            Expect::SucceedsOrFails(&["invalid_media"]),
        ),
        ("1000 fps", lavfi("testsrc2=size=64x48:rate=1000", None, "0.5", X264, "mp4"), "video/mp4", Expect::Succeeds),
        (
            "no frames at all",
            make_clip(&["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-frames:v", "0", "-c:v", "libx264"], "mp4"),
            "video/mp4",
            Expect::SucceedsOrFails(&["invalid_media", "no_video_stream"]),
        ),
        ("rotated 90°", rotated, "video/mp4", Expect::Succeeds),
        (
            "VP9 WebM",
            lavfi(
                "testsrc2=size=320x240:rate=25",
                Some("sine=sample_rate=48000"),
                "1",
                &["-c:v", "libvpx-vp9", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"],
                "webm",
            ),
            "video/webm",
            Expect::Succeeds,
        ),
        (
            "H.264 Matroska",
            lavfi("testsrc2=size=320x240:rate=25", Some("sine=sample_rate=48000"), "1", &[X264, &["-c:a", "libopus"]].concat(), "mkv"),
            "video/x-matroska",
            Expect::Succeeds,
        ),
        (
            "QuickTime MOV",
            lavfi("testsrc2=size=320x240:rate=25", Some("sine=sample_rate=48000"), "1", &[X264, &["-c:a", "aac"]].concat(), "mov"),
            "video/quicktime",
            Expect::Succeeds,
        ),
        (
            "odd dimensions",
            lavfi("testsrc2=size=321x241:rate=25", None, "1", &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p"], "mp4"),
            "video/mp4",
            Expect::Succeeds,
        ),
        (
            "10-bit",
            lavfi("testsrc2=size=320x240:rate=25", None, "1", &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p10le"], "mkv"),
            "video/x-matroska",
            Expect::Succeeds,
        ),
        (
            "interlaced",
            lavfi("testsrc2=size=320x240:rate=25", None, "1", &[X264, &["-flags", "+ilme+ildct", "-x264opts", "tff=1"]].concat(), "mp4"),
            "video/mp4",
            Expect::Succeeds,
        ),
        (
            "variable frame rate",
            make_clip(
                &[
                    "-f",
                    "lavfi",
                    "-i",
                    "testsrc2=s=160x120:r=30:d=2",
                    "-vf",
                    "select='lt(n\\,20)+not(mod(n\\,4))'",
                    "-vsync",
                    "vfr",
                    "-c:v",
                    "libx264",
                    "-preset",
                    "ultrafast",
                ],
                "mp4",
            ),
            "video/mp4",
            Expect::Succeeds,
        ),
        ("21 streams", many_streams, "video/mp4", Expect::Fails("too_many_streams")),
    ]
}

fn write_temp(bytes: &[u8], ext: &str) -> String {
    let path = std::env::temp_dir().join(format!("reelq-hostile-{}.{ext}", uuid::Uuid::new_v4()));
    std::fs::write(&path, bytes).expect("write");
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_corpus_ends_as_expected_and_the_worker_survives() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let mut ws = env.worker_settings();
    ws.media.max_pixels = 1920 * 1080;
    ws.media.max_duration_secs = 30.0;
    ws.media.max_decode_secs = 60;
    ws.worker.concurrency = 2;
    ws.worker.interactive_reserved = 0;
    // Slow decodes must not lose their lease to a second attempt.
    ws.worker.lease_ttl_ms = 10_000;
    ws.worker.heartbeat_interval_ms = 500;
    let worker = TestWorker::spawn(ws).await;
    let cases = tokio::task::spawn_blocking(corpus).await.expect("corpus generated");
    assert!(cases.len() >= 25, "{} cases", cases.len());

    let mut submitted = Vec::new();
    for (name, bytes, content_type, expect) in cases {
        let resp = app.upload_raw(bytes, content_type).await;
        let status = resp.status().as_u16();
        if let Expect::Refused(code) = expect {
            assert_eq!(status, code, "{name}: upload answered {status}");
            let problem: Value = resp.json().await.expect("problem body");
            assert!(problem["code"].is_string() && problem["detail"].is_string(), "{name}: {problem}");
            continue;
        }
        assert_eq!(status, 201, "{name}: upload refused: {}", resp.text().await.unwrap_or_default());
        let video: Value = resp.json().await.expect("json");
        let id = app.submit_ok(json!({ "video_id": video["id"], "analyses": ["probe", "quality"] })).await;
        submitted.push((name, id, expect));
    }

    let started = Instant::now();
    for (name, id, expect) in &submitted {
        let job = app.wait_terminal(*id, Duration::from_secs(120)).await;
        assert_eq!(job["attempts"], 1, "{name}: never retried: {job:#}");
        let code = job["error"]["code"].as_str();
        match (expect, job["status"].as_str()) {
            (Expect::Succeeds | Expect::SucceedsOrFails(_), Some("succeeded")) => {
                assert!(job["results"]["probe"]["payload"]["video"]["width"].as_u64().is_some(), "{name}: probe result");
                assert!(job["results"]["quality"]["payload"]["overall"].is_number(), "{name}: quality result");
            }
            (Expect::Fails(want), Some("failed")) => assert_eq!(code, Some(*want), "{name}: {job:#}"),
            (Expect::SucceedsOrFails(allowed), Some("failed")) => {
                assert!(code.is_some_and(|c| allowed.contains(&c)), "{name}: unexpected code {code:?}");
            }
            (_, other) => panic!("{name}: expected {expect:?}, ended {other:?}: {job:#}"),
        }
        if job["status"] == "failed" {
            assert!(job["error"]["message"].as_str().is_some_and(|m| m.len() > 10), "{name}: a human message");
        }
    }
    eprintln!("{} jobs of the corpus ended in {:.1} s", submitted.len(), started.elapsed().as_secs_f64());

    // The worker is alive and still works.
    let healthy = app.http.get(format!("http://{}/healthz", worker.health)).send().await.expect("worker answers");
    assert_eq!(healthy.status(), 200);
    let after = app.upload_clip(base_clip()).await;
    let id = app.submit_ok(json!({ "video_id": after, "analyses": ["probe"] })).await;
    assert_eq!(app.wait_terminal(id, Duration::from_secs(30)).await["status"], "succeeded");
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
