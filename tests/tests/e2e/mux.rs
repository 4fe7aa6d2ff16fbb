//! `mux`: a creator uploads a video and a music track, gets back an MP4 with the track under
//! the video, and downloads it through a presigned link; bad input ends with stable codes.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use reelq_tests::{TestApp, TestEnv, TestWorker, make_clip, sample_clip};

/// A 4-second 880 Hz MP3 (the sample clip's own audio is 440 Hz).
fn track_880() -> Vec<u8> {
    make_clip(&["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100:duration=4", "-c:a", "libmp3lame", "-b:a", "128k"], "mp3")
}

async fn upload_track(app: &TestApp, key: &str, bytes: Vec<u8>) -> Uuid {
    let resp = app.http.post(app.url("/v1/videos")).bearer_auth(key).header("content-type", "audio/mpeg").body(bytes).send().await.expect("sent");
    assert_eq!(resp.status(), 201, "track upload: {}", resp.text().await.unwrap_or_default());
    let v: Value = resp.json().await.expect("json");
    assert_eq!(v["container"], "mp3");
    v["id"].as_str().expect("id").parse().expect("uuid")
}

/// The left channel of a file's first audio stream as 48 kHz `f32`, decoded by the ffmpeg CLI.
fn decoded_audio(path: &Path) -> Vec<f32> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-map", "0:a:0", "-af", "pan=mono|c0=c0", "-f", "f32le", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(out.status.success(), "decoding failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// Power of one frequency (Goertzel filter).
fn tone_power(x: &[f32], freq: f64) -> f64 {
    let c = 2.0 * (2.0 * std::f64::consts::PI * freq / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + c * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - c * s1 * s2) / (x.len() as f64).powi(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mux_puts_the_uploaded_track_under_the_video_and_serves_a_download_link() {
    // Arrange
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let video_id = app.upload_clip(sample_clip()).await;
    let track_id = upload_track(&app, &app.key, track_880()).await;

    // Act
    let job_id =
        app.submit_ok(json!({ "video_id": video_id, "analyses": ["mux"], "options": { "mux": { "audio_id": track_id, "mode": "replace" } } })).await;
    let done = app.wait_terminal(job_id, Duration::from_secs(60)).await;

    // Assert: the result describes the stored output and links to it.
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let result = &done["results"]["mux"]["payload"];
    assert_eq!(result["output_key"], format!("outputs/{}/{job_id}/mux.mp4", app.tenant_id));
    assert_eq!(result["video_copied"], true);
    assert_eq!(result["audio_codec"], "aac");
    assert_eq!(result["probe"]["video"]["codec"], "h264");
    assert_eq!(result["probe"]["audio"]["codec"], "aac");
    let duration = result["duration_secs"].as_f64().expect("duration");
    assert!((duration - 2.0).abs() < 0.1, "the output lasts as long as the video: {duration}");
    assert!(result["url_expires_at"].as_str().is_some(), "{result:#}");
    let url = result["url"].as_str().expect("a presigned url");

    // The link works without an API key, and the file is what the result says.
    let bytes = reqwest::get(url).await.expect("download").error_for_status().expect("200").bytes().await.expect("body");
    assert_eq!(bytes.len() as u64, result["bytes"].as_u64().expect("bytes"));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("downloaded.mp4");
    std::fs::write(&file, &bytes).expect("write");
    let probe = reelq_worker::media::probe::probe(&file, &reelq_worker::settings::MediaSettings::default()).expect("probes");
    assert_eq!(probe.video.codec, "h264");
    assert_eq!(probe.audio.as_ref().map(|a| a.codec.as_str()), Some("aac"));
    let pcm = decoded_audio(&file);
    let body = &pcm[24_000..72_000.min(pcm.len())];
    let (new, old) = (tone_power(body, 880.0), tone_power(body, 440.0));
    assert!(new > 100.0 * old, "the new 880 Hz track replaced the 440 Hz original: {new} vs {old}");

    // GET /v1/jobs/{id}/output redirects to a fresh link; other tenants and anonymous callers
    // get nothing.
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let output = app.url(&format!("/v1/jobs/{job_id}/output"));
    let resp = no_redirect.get(&output).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(resp.status(), 303);
    let location = resp.headers()["location"].to_str().expect("ascii").to_owned();
    let again = reqwest::get(&location).await.expect("download").error_for_status().expect("200").bytes().await.expect("body");
    assert_eq!(again, bytes);
    assert_eq!(no_redirect.get(&output).bearer_auth(&app.other_key).send().await.expect("sent").status(), 404);
    assert_eq!(no_redirect.get(&output).send().await.expect("sent").status(), 401);

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mux_refuses_bad_tracks_and_options_with_stable_codes() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let video_id = app.upload_clip(sample_clip()).await;
    let problem = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.expect("problem json");
        (status, body["code"].as_str().unwrap_or_default().to_owned())
    };

    // Another tenant's track is not found.
    let theirs = upload_track(&app, &app.other_key, track_880()).await;
    let resp = app.submit(json!({ "video_id": video_id, "analyses": ["mux"], "options": { "mux": { "audio_id": theirs } } })).await;
    assert_eq!(problem(resp).await, (404, "not_found".to_owned()));

    // Options are checked at submission.
    let resp = app.submit(json!({ "video_id": video_id, "analyses": ["mux"] })).await;
    assert_eq!(problem(resp).await, (422, "invalid_mux_options".to_owned()));
    let mine = upload_track(&app, &app.key, track_880()).await;
    let resp = app.submit(json!({ "video_id": video_id, "analyses": ["mux"], "options": { "mux": { "audio_id": mine, "mode": "blend" } } })).await;
    assert_eq!(problem(resp).await, (422, "invalid_mux_options".to_owned()));
    let resp = app.submit(json!({ "video_id": video_id, "analyses": ["mux"], "options": { "mux": { "audio_id": mine, "gain_db": 90 } } })).await;
    assert_eq!(problem(resp).await, (422, "invalid_mux_options".to_owned()));

    // An audio upload is no video: not for analyses, not as the base of a mux.
    let resp = app.submit(json!({ "video_id": mine, "analyses": ["probe"] })).await;
    assert_eq!(problem(resp).await, (422, "not_a_video".to_owned()));
    let resp = app.submit(json!({ "video_id": mine, "analyses": ["mux"], "options": { "mux": { "audio_id": mine } } })).await;
    assert_eq!(problem(resp).await, (422, "not_a_video".to_owned()));

    // A text file is refused at upload; one dressed as an MP3 gets through and fails the job
    // once, with a stable code.
    let resp = app
        .http
        .post(app.url("/v1/videos"))
        .bearer_auth(&app.key)
        .header("content-type", "audio/mpeg")
        .body("just some words\n".repeat(50))
        .send()
        .await
        .expect("sent");
    assert_eq!(problem(resp).await, (415, "unsupported_media_type".to_owned()));
    let mut fake = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
    fake.extend("these are words, not music\n".repeat(200).into_bytes());
    let fake_id = upload_track(&app, &app.key, fake).await;
    let job_id = app.submit_ok(json!({ "video_id": video_id, "analyses": ["mux"], "options": { "mux": { "audio_id": fake_id } } })).await;
    let done = app.wait_terminal(job_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(done["error"]["code"], "invalid_audio", "{done:#}");
    assert_eq!(done["attempts"], 1, "bad input is never retried");
    let output = app.http.get(app.url(&format!("/v1/jobs/{job_id}/output"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(problem(output).await, (409, "output_not_ready".to_owned()));

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
