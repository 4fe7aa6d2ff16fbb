//! `song` as operators and creators use it: an operator uploads tracks and adds them to the
//! catalogue through the admin routes (or adds pulled sounds whose audio a dump brought); a
//! creator's video with one of them under speech is recognised at the right offset, a song
//! outside the catalogue is not, `music` says the video already uses a known sound, and a
//! hosted recognition service (a local stub here) is asked only when the catalogue knows
//! nothing, with its quota refusals reported and its outages retried.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Multipart, State};
use serde_json::{Value, json};
use uuid::Uuid;

use reelq_shared::db::scraped::{self, Music, PulledVideo};
use reelq_shared::db::{admin, tenants};
use reelq_shared::engagement::Counts;
use reelq_tests::{TestApp, TestEnv, TestWorker, count, make_clip};
use reelq_worker::media::fingerprint::synthetic_song;
use reelq_worker::songs::service::wav;

const RATE: u32 = 44_100;

/// Every synthetic song is made 40 s long (a seed's notes depend on the length asked for), and
/// excerpts are cut from it.
const SONG_SECS: f64 = 40.0;

fn write_wav(dir: &Path, name: &str, samples: &[f32]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wav(samples, RATE)).expect("wav written");
    path
}

/// A song as an MP3 file: seconds `from..from + secs` of synthetic song `seed`.
fn song_mp3(seed: u64, from: f64, secs: f64) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let song = synthetic_song(seed, SONG_SECS, RATE);
    let path = write_wav(dir.path(), "song.wav", &song[(from * f64::from(RATE)) as usize..((from + secs) * f64::from(RATE)) as usize]);
    make_clip(&["-i", &path.display().to_string(), "-c:a", "libmp3lame", "-b:a", "128k"], "mp3")
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|s| s * s).sum::<f32>() / x.len().max(1) as f32).sqrt()
}

/// Speech from espeak-ng at 44.1 kHz, decoded by the ffmpeg CLI.
fn speech(text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("speech.wav");
    let ok = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w", &path.display().to_string(), text])
        .status()
        .expect("espeak-ng is installed (scripts/test installs it)");
    assert!(ok.success());
    let out = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-i", &path.display().to_string(), "-f", "f32le", "-ac", "1", "-ar", "44100", "-"])
        .output()
        .expect("ffmpeg runs");
    out.stdout.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// A 14-second video whose sound is seconds `from..from + 14` of song `seed`, with speech
/// `speech_db` below the music (RMS) when given, as H.264 and AAC in MP4.
fn video_with_song(seed: u64, from: f64, speech_db: Option<f32>) -> Vec<u8> {
    let secs = 14.0;
    let song = synthetic_song(seed, SONG_SECS, RATE);
    let mut sound = song[(from * f64::from(RATE)) as usize..((from + secs) * f64::from(RATE)) as usize].to_vec();
    if let Some(db) = speech_db {
        let voice = speech("Today I am showing you my favourite pasta recipe, it is quick and easy and the kids love it. Let us start with the sauce.");
        let gain = rms(&sound) / rms(&voice) * 10f32.powf(-db / 20.0);
        for (s, v) in sound.iter_mut().zip(voice.iter().cycle()) {
            *s += v * gain;
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let audio = write_wav(dir.path(), "sound.wav", &sound);
    make_clip(
        &[
            "-f",
            "lavfi",
            "-i",
            "color=c=navy:s=320x240:r=25:d=14",
            "-i",
            &audio.display().to_string(),
            "-t",
            "14",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-b:a",
            "128k",
        ],
        "mp4",
    )
}

async fn upload(app: &TestApp, key: &str, bytes: Vec<u8>, content_type: &str) -> Uuid {
    let resp = app.http.post(app.url("/v1/videos")).bearer_auth(key).header("content-type", content_type).body(bytes).send().await.expect("sent");
    assert_eq!(resp.status(), 201, "upload: {}", resp.text().await.unwrap_or_default());
    let v: Value = resp.json().await.expect("json");
    v["id"].as_str().expect("id").parse().expect("uuid")
}

/// An admin key of the api's main tenant.
async fn admin_key(env: &TestEnv, app: &TestApp) -> String {
    use secrecy::ExposeSecret as _;
    let key = tenants::create_key(&env.pool, app.tenant_id, "ops").await.expect("key");
    assert!(admin::set_admin(&env.pool, &key.hash, true).await.expect("flag"));
    key.key.expose_secret().to_owned()
}

async fn add_song(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url("/v1/admin/songs")).bearer_auth(key).json(&body).send().await.expect("sent")
}

/// Submits `analyses` on `video` and returns the succeeded job's results.
async fn analyse(app: &TestApp, video: Uuid, analyses: Value, options: Value) -> Value {
    let id = app.submit_ok(json!({ "video_id": video, "analyses": analyses, "options": options })).await;
    let job = app.wait_terminal(id, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    job["results"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_builds_the_catalogue_and_a_song_under_speech_is_found_at_its_offset() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let ops = admin_key(&env, &app).await;

    // The operator uploads two 40 s tracks and adds them to the catalogue.
    let mut tracks = Vec::new();
    for (seed, title) in [(11u64, "Night Drive"), (12, "Morning Light")] {
        let mp3 = tokio::task::spawn_blocking(move || song_mp3(seed, 0.0, 40.0)).await.expect("mp3");
        let audio = upload(&app, &ops, mp3, "audio/mpeg").await;
        let resp = add_song(&app, &ops, json!({ "audio_id": audio, "title": title, "artist": "Synth" })).await;
        assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
        let job: Value = resp.json().await.expect("json");
        let id: Uuid = job["id"].as_str().expect("id").parse().expect("uuid");
        let done = app.wait_terminal(id, Duration::from_secs(120)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        let added = &done["results"]["add_song"]["payload"];
        assert_eq!(added["title"], title);
        assert!((added["duration_secs"].as_f64().expect("duration") - 40.0).abs() < 0.5, "{added:#}");
        tracks.push((audio, added["track_id"].as_i64().expect("track id")));
    }
    let page: Value = app.http.get(app.url("/v1/admin/songs")).bearer_auth(&ops).send().await.expect("sent").json().await.expect("json");
    assert_eq!(page["total"], 2, "{page:#}");
    assert_eq!(page["tracks"][0]["title"], "Morning Light", "newest first");

    // A creator's video: 14 s of "Night Drive" from 9 s on, with speech 12 dB below the music.
    let clip = tokio::task::spawn_blocking(|| video_with_song(11, 9.0, Some(12.0))).await.expect("clip");
    let video = app.upload_clip(clip).await;
    let results = analyse(&app, video, json!(["song"]), json!({})).await;
    let song = &results["song"]["payload"];
    let track = &song["track"];
    assert_eq!(
        (track["title"].as_str(), track["track_id"].as_i64(), track["source"].as_str()),
        (Some("Night Drive"), Some(tracks[0].1), Some("catalogue")),
        "{song:#}"
    );
    let offset = track["track_offset_secs"].as_f64().expect("offset") - track["video_secs"].as_f64().expect("at");
    assert!((offset - 9.0).abs() < 0.5, "the video starts 9 s into the track: {song:#}");
    assert!(track["confidence"].as_f64().expect("confidence") > 0.3, "{song:#}");

    // A song outside the catalogue is heard but not matched.
    let clip = tokio::task::spawn_blocking(|| video_with_song(99, 3.0, None)).await.expect("clip");
    let stranger = app.upload_clip(clip).await;
    let song = analyse(&app, stranger, json!(["song"]), json!({})).await["song"]["payload"].clone();
    assert_eq!(song["track"], Value::Null, "{song:#}");
    assert_eq!(song["listened_secs"].as_f64(), Some(12.0), "one 12 s excerpt of the 14 s: {song:#}");

    // Only admins build the catalogue, and only from their own tenant's uploads.
    let theirs = upload(&app, &app.other_key, tokio::task::spawn_blocking(|| song_mp3(13, 0.0, 20.0)).await.expect("mp3"), "audio/mpeg").await;
    assert_eq!(add_song(&app, &app.key, json!({ "audio_id": tracks[0].0, "title": "x" })).await.status(), 403);
    assert_eq!(add_song(&app, &ops, json!({ "audio_id": theirs, "title": "x" })).await.status(), 404);
    let resp = add_song(&app, &ops, json!({ "music_id": "no-such-sound" })).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<Value>().await.expect("json")["code"], "unknown_music_id");
    assert_eq!(add_song(&app, &ops, json!({ "title": "nothing to hear" })).await.status(), 422);

    // Deleting the upload removes its track and fingerprint keys; an admin removes the other.
    let resp = app.http.delete(app.url(&format!("/v1/videos/{}", tracks[0].0))).bearer_auth(&ops).send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    assert_eq!(count(&env.pool, &format!("SELECT count(*) FROM track_keys WHERE track_id = {}", tracks[0].1)).await, 0);
    let resp = app.http.delete(app.url(&format!("/v1/admin/songs/{}", tracks[1].1))).bearer_auth(&ops).send().await.expect("sent");
    assert_eq!(resp.status(), 204);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM tracks").await, 0);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM track_keys").await, 0);
    let resp = app.http.delete(app.url(&format!("/v1/admin/songs/{}", tracks[1].1))).bearer_auth(&ops).send().await.expect("sent");
    assert_eq!(resp.status(), 404);

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

fn pulled(id: &str, hashtags: &[&str], music: &str, views: i64) -> PulledVideo {
    PulledVideo {
        id: id.into(),
        description: String::new(),
        region: Some("US".into()),
        create_time: chrono::Utc::now() - chrono::Duration::days(2),
        hashtags: hashtags.iter().map(|t| (*t).to_owned()).collect(),
        music: Some(Music { id: music.into(), name: format!("Song {music}"), author: "Someone".into() }),
        counts: Counts { views, likes: 0, comments: 0, shares: 0 },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pulled_sounds_join_the_catalogue_and_music_says_the_video_already_uses_one() {
    let env = TestEnv::new().await;
    // Pulled videos: sound m-a under #cooking #pasta (its file came with a dump), m-b under
    // #cooking with more views.
    let videos = [pulled("1", &["cooking", "pasta"], "m-a", 1_000), pulled("2", &["cooking"], "m-b", 5_000), pulled("3", &["pasta"], "m-a", 500)];
    let mut conn = env.pool.acquire().await.expect("connection");
    scraped::upsert_batch(&mut conn, &videos, "test", chrono::Utc::now()).await.expect("seeded");
    drop(conn);
    let store = reelq_shared::storage::Store::new(&env.storage);
    let file = tokio::task::spawn_blocking(|| song_mp3(21, 0.0, 30.0)).await.expect("mp3");
    store.put_bytes("pulled/1.mp3", file, "audio/mpeg").await.expect("stored");
    sqlx::query("UPDATE scraped_videos SET video_key = 'pulled/1.mp3' WHERE id = '1'").execute(&env.pool).await.expect("key");

    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let ops = admin_key(&env, &app).await;
    let resp = app.http.post(app.url("/v1/admin/songs/pulled")).bearer_auth(&ops).send().await.expect("sent");
    assert_eq!(resp.status(), 202);
    let queued: Value = resp.json().await.expect("json");
    let jobs = queued["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 1, "only m-a has audio at hand: {queued:#}");
    assert_eq!(jobs[0]["music_id"], "m-a");
    let done = app.wait_terminal(jobs[0]["job_id"].as_str().expect("id").parse().expect("uuid"), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["results"]["add_song"]["payload"]["title"], "Song m-a", "named after the pulled sound");
    // Asking again adds nothing: m-a is in the catalogue, m-b has no audio.
    let again: Value = app.http.post(app.url("/v1/admin/songs/pulled")).bearer_auth(&ops).send().await.expect("sent").json().await.expect("json");
    assert_eq!(again["jobs"], json!([]));

    // A creator's cooking video that uses m-a, from 10 s into it.
    let clip = tokio::task::spawn_blocking(|| video_with_song(21, 10.0, None)).await.expect("clip");
    let video = app.upload_clip(clip).await;
    let results = analyse(&app, video, json!(["music"]), json!({ "caption": "Easy pasta recipe for a weeknight: cooking pasta in ten minutes" })).await;
    let music = &results["music"]["payload"];
    let current = &music["current_sound"];
    assert_eq!((current["music_id"].as_str(), current["rank"].as_u64()), (Some("m-a"), Some(2)), "{music:#}");
    assert!(current["advice"].as_str().expect("advice").contains("ranked 2 of 2"), "{music:#}");
    let recommended: Vec<&str> = music["recommendations"].as_array().expect("list").iter().filter_map(|r| r["music_id"].as_str()).collect();
    assert_eq!(recommended, ["m-b"], "the sound in use is not recommended to itself: {music:#}");

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

/// What the stub service does with each request, in turn; the last repeats.
#[derive(Clone)]
struct Stub {
    answers: Arc<Mutex<Vec<(u16, Value)>>>,
    seen: Arc<Mutex<Vec<(String, usize, std::time::Instant)>>>,
}

async fn recognise(State(stub): State<Stub>, mut form: Multipart) -> (axum::http::StatusCode, axum::Json<Value>) {
    let (mut token, mut bytes) = (String::new(), 0);
    while let Ok(Some(field)) = form.next_field().await {
        match field.name() {
            Some("api_token") => token = field.text().await.unwrap_or_default(),
            Some("file") => bytes = field.bytes().await.map(|b| b.len()).unwrap_or(0),
            _ => {}
        }
    }
    stub.seen.lock().expect("lock").push((token, bytes, std::time::Instant::now()));
    let mut answers = stub.answers.lock().expect("lock");
    let (status, body) = if answers.len() > 1 { answers.remove(0) } else { answers[0].clone() };
    (axum::http::StatusCode::from_u16(status).expect("status"), axum::Json(body))
}

async fn start_stub(answers: Vec<(u16, Value)>) -> (String, Stub) {
    let stub = Stub { answers: Arc::new(Mutex::new(answers)), seen: Arc::new(Mutex::new(Vec::new())) };
    let router = axum::Router::new().route("/", axum::routing::post(recognise)).with_state(stub.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, stub)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hosted_service_is_asked_when_the_catalogue_knows_nothing_and_its_faults_are_handled() {
    let env = TestEnv::new().await;
    let found =
        json!({ "status": "success", "result": { "artist": "Band", "title": "Hosted Tune", "timecode": "00:41", "song_link": "https://lis.tn/tune" } });
    // One 503, then the answer: the recognizer's own retry gets it.
    let (url, stub) = start_stub(vec![(503, json!({})), (200, found)]).await;
    let mut settings = env.worker_settings();
    settings.songs.service_url = url;
    settings.songs.service_name = "hosted".into();
    settings.songs.service_api_key = secrecy::SecretString::from("k-123");
    settings.songs.service_backoff_ms = 300;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(settings.clone()).await;
    let clip = tokio::task::spawn_blocking(|| video_with_song(31, 0.0, None)).await.expect("clip");
    let video = app.upload_clip(clip).await;

    let song = analyse(&app, video, json!(["song"]), json!({})).await["song"]["payload"].clone();
    assert_eq!(song["track"]["title"], "Hosted Tune", "{song:#}");
    assert_eq!((song["track"]["source"].as_str(), song["track"]["track_offset_secs"].as_f64()), (Some("hosted"), Some(41.0)));
    assert_eq!(song["recognizers"], json!(["catalogue", "hosted"]));
    {
        let seen = stub.seen.lock().expect("lock");
        assert_eq!(seen.len(), 2, "one failure, one answer");
        assert!(seen.iter().all(|(token, bytes, _)| token == "k-123" && *bytes == 44 + 12 * 16_000 * 2), "a 12 s WAV excerpt with the key");
        assert!(seen[1].2 - seen[0].2 >= Duration::from_millis(300), "the retry waited for the backoff");
    }
    worker.stop().await;

    // A spent quota is reported, and the job still succeeds without a track.
    let quota = json!({ "status": "error", "error": { "error_code": 902, "error_message": "api_token daily limit reached" } });
    let (url, _stub) = start_stub(vec![(200, quota)]).await;
    settings.songs.service_url = url;
    let worker = TestWorker::spawn(settings.clone()).await;
    let song = analyse(&app, video, json!(["song"]), json!({})).await["song"]["payload"].clone();
    assert_eq!(song["track"], Value::Null, "{song:#}");
    assert_eq!(song["unavailable"][0]["code"], "quota_exceeded", "{song:#}");
    worker.stop().await;

    // A service that never answers fails the attempt as transient: the job is retried and,
    // with its attempts spent, ends retries_exhausted.
    let (url, stub) = start_stub(vec![(503, json!({}))]).await;
    settings.songs.service_url = url;
    settings.songs.service_retries = 1;
    settings.songs.service_backoff_ms = 50;
    let worker = TestWorker::spawn(settings).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["song"] })).await;
    let job = app.wait_terminal(id, Duration::from_secs(180)).await;
    assert_eq!((job["status"].as_str(), job["error"]["code"].as_str()), (Some("failed"), Some("retries_exhausted")), "{job:#}");
    assert_eq!(job["attempts"], 3);
    assert_eq!(stub.seen.lock().expect("lock").len(), 6, "two requests in each of three attempts");

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
