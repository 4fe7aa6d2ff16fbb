//! The job event stream (`GET /v1/jobs/{id}/events`) and hashtag feedback
//! (`/v1/jobs/{id}/feedback`).

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde_json::{Value, json};
use uuid::Uuid;

use reelq_tests::{TestApp, TestEnv, TestWorker, count, sample_clip};

/// A minimal Server-Sent Events reader over a response body.
struct Events {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: String,
}

impl Events {
    fn new(resp: reqwest::Response) -> Self {
        Self { body: Box::pin(resp.bytes_stream()), buffer: String::new() }
    }

    /// The next event as (name, JSON data); `None` when the server ended the stream.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = "message".to_owned();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment or a bare `retry:`
                }
                return Some((name, serde_json::from_str(&data).expect("event data is JSON")));
            }
            match self.body.next().await {
                Some(Ok(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk).replace("\r\n", "\n")),
                Some(Err(e)) => panic!("event stream broke: {e}"),
                None => return None,
            }
        }
    }

    /// Every event until the server ends the stream.
    async fn collect(mut self, within: Duration) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        let all = async {
            while let Some(e) = self.next().await {
                out.push(e);
            }
        };
        tokio::time::timeout(within, all).await.expect("the stream ends after the job does");
        out
    }
}

async fn open_events(app: &TestApp, id: Uuid, key: &str) -> reqwest::Response {
    // No client-wide timeout here: the stream lives as long as the job.
    reqwest::Client::new().get(app.url(&format!("/v1/jobs/{id}/events"))).bearer_auth(key).send().await.expect("sent")
}

fn settings_with_fast_events(env: &TestEnv) -> reelq_api::Settings {
    let mut s = env.api_settings();
    s.api.event_poll_ms = 100;
    s
}

/// Rank of a stage in the order a worker goes through them (`probe` is both a preparation
/// step and an analysis, so it is left out).
fn stage_rank(stage: &str) -> Option<usize> {
    const ORDER: [&str; 4] = ["starting", "downloading", "decode", "noop"];
    ORDER.iter().position(|s| *s == stage)
}

fn status_rank(status: &str) -> usize {
    match status {
        "queued" => 0,
        "running" => 1,
        _ => 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_stream_shows_stages_in_order_then_the_final_status_and_ends() {
    // Arrange
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, settings_with_fast_events(&env)).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe", "noop"], "options": { "noop_ms": 1_500 } })).await;

    // Act: open the stream before any worker runs, so the whole life of the job is seen.
    let resp = open_events(&app, id, &app.key).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().expect("ascii").starts_with("text/event-stream"));
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let events = Events::new(resp).collect(Duration::from_secs(60)).await;

    // Assert
    let (last, progress) = events.split_last().expect("events arrived");
    assert_eq!(last.0, "done", "{events:#?}");
    assert_eq!(last.1, json!({ "status": "succeeded" }));
    assert!(progress.iter().all(|(name, _)| name == "progress"), "{events:#?}");
    assert_eq!(progress[0].1["status"], "queued", "the first event is the state at connection");
    let statuses: Vec<usize> = progress.iter().map(|(_, d)| status_rank(d["status"].as_str().expect("status"))).collect();
    assert!(statuses.windows(2).all(|w| w[0] <= w[1]), "statuses only move forward: {events:#?}");
    let fractions: Vec<f64> = progress.iter().map(|(_, d)| d["progress"].as_f64().expect("progress")).collect();
    assert!(fractions.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {fractions:?}");
    let stages: Vec<&str> = progress.iter().filter_map(|(_, d)| d["stage"].as_str()).collect();
    assert!(stages.contains(&"noop"), "the 1.5 s stage is seen at the test heartbeat: {stages:?}");
    let ranks: Vec<usize> = stages.iter().filter_map(|s| stage_rank(s)).collect();
    assert!(ranks.windows(2).all(|w| w[0] <= w[1]), "stages arrive in the order they run: {stages:?}");
    let final_progress = progress.last().expect("a progress event");
    assert_eq!(final_progress.1["status"], "succeeded");
    assert_eq!(final_progress.1["progress"], 1.0);
    for pair in progress.windows(2) {
        assert_ne!(pair[0].1, pair[1].1, "an event is sent only when something changed");
    }

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_stream_of_a_failed_job_ends_with_its_error_code() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, settings_with_fast_events(&env)).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    // Valid MP4 magic, then garbage: accepted at upload, refused by the decoder.
    let mut bytes = sample_clip()[..64].to_vec();
    bytes.extend(std::iter::repeat_n(0xAB_u8, 4_000));
    let video = app.upload_clip(bytes).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;

    let resp = open_events(&app, id, &app.key).await;
    assert_eq!(resp.status(), 200);
    let events = Events::new(resp).collect(Duration::from_secs(60)).await;

    let (name, data) = events.last().expect("events arrived");
    assert_eq!(name, "done");
    assert_eq!(data["status"], "failed");
    assert_eq!(data["error"]["code"], "invalid_media");
    assert!(!data["error"]["message"].as_str().unwrap_or_default().is_empty());

    // A stream opened after the end says the same at once, and ends.
    let again = Events::new(open_events(&app, id, &app.key).await).collect(Duration::from_secs(10)).await;
    assert_eq!(again.len(), 2, "{again:#?}");
    assert_eq!(again[0].1["status"], "failed");
    assert_eq!(again[1], events.last().cloned().expect("done"));

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_stream_needs_the_key_and_hides_other_tenants_jobs() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;

    let no_key = reqwest::Client::new().get(app.url(&format!("/v1/jobs/{id}/events"))).send().await.expect("sent");
    assert_eq!(no_key.status(), 401);
    let wrong = open_events(&app, id, "rq_nope_not-a-real-key").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["content-type"], "application/problem+json");
    let other = open_events(&app, id, &app.other_key).await;
    assert_eq!(other.status(), 404);
    let body: Value = other.json().await.expect("problem");
    assert_eq!(body["code"], "not_found");
    assert_eq!(open_events(&app, Uuid::now_v7(), &app.key).await.status(), 404);

    // With no worker the job stays queued: the stream stays open with its first event, and the
    // api's shutdown ends it rather than waiting for the job.
    let mut open = Events::new(open_events(&app, id, &app.key).await);
    let (name, first) = tokio::time::timeout(Duration::from_secs(5), open.next()).await.expect("first event").expect("an event");
    assert_eq!((name.as_str(), first["status"].as_str()), ("progress", Some("queued")));
    tokio::time::timeout(Duration::from_secs(10), app.stop()).await.expect("shutdown is not held up by an open stream");
    let rest = tokio::time::timeout(Duration::from_secs(5), open.next()).await.expect("the stream ended");
    assert!(rest.is_none());
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn event_streams_beyond_the_cap_are_refused_with_429() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.max_event_streams = 1;
    let app = TestApp::spawn(&env, settings).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;

    let first = open_events(&app, id, &app.key).await;
    assert_eq!(first.status(), 200);
    let second = open_events(&app, id, &app.key).await;
    assert_eq!(second.status(), 429);
    assert_eq!(second.json::<Value>().await.expect("problem")["code"], "too_many_streams");
    // The client going away frees the slot.
    drop(first);
    let mut reopened = None;
    // The server notices at its next write to the dead connection: a keep-alive at the latest.
    for _ in 0..250 {
        let r = open_events(&app, id, &app.key).await;
        if r.status() == 200 {
            reopened = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a dropped client's stream is closed and its slot reused");

    drop(reopened);
    app.stop().await;
    env.cleanup().await;
}

async fn post_feedback(app: &TestApp, id: Uuid, key: &str, body: Value) -> reqwest::Response {
    app.http.post(app.url(&format!("/v1/jobs/{id}/feedback"))).bearer_auth(key).json(&body).send().await.expect("sent")
}

async fn get_feedback(app: &TestApp, id: Uuid, key: &str) -> reqwest::Response {
    app.http.get(app.url(&format!("/v1/jobs/{id}/feedback"))).bearer_auth(key).send().await.expect("sent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_is_validated_stored_normalised_and_replaced() {
    // Arrange: a succeeded job, with a hashtags result as the worker would write it.
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    sqlx::query("INSERT INTO results (job_id, analysis, payload, attempt) VALUES ($1, 'hashtags', $2, 1)")
        .bind(id)
        .bind(json!({ "suggestions": [{ "tag": "#cooking", "score": 0.9 }, { "tag": "#pasta", "score": 0.7 }, { "tag": "#food", "score": 0.5 }] }))
        .execute(&env.pool)
        .await
        .expect("hashtags result");
    let queued = app.submit_ok(json!({ "video_id": video, "analyses": ["noop"], "options": { "noop_ms": 20_000 } })).await;

    // Act & Assert: refusals.
    assert_eq!(get_feedback(&app, id, &app.key).await.status(), 404, "nothing saved yet");
    for (body, why) in [
        (json!({ "hashtags": [] }), "no tags"),
        (json!({ "hashtags": ["#two words"] }), "a space"),
        (json!({ "hashtags": ["#dash-tag"] }), "a dash"),
        (json!({ "hashtags": ["#"] }), "too short"),
        (json!({ "hashtags": [format!("#{}", "x".repeat(100))] }), "too long"),
        (json!({ "hashtags": (0..31).map(|i| format!("#tag{i}")).collect::<Vec<_>>() }), "too many"),
    ] {
        let resp = post_feedback(&app, id, &app.key, body).await;
        assert_eq!(resp.status(), 422, "{why}");
        assert_eq!(resp.json::<Value>().await.expect("problem")["code"], "invalid_hashtags", "{why}");
    }
    let resp = post_feedback(&app, id, &app.key, json!({ "tags": ["#x"] })).await;
    assert_eq!(resp.status(), 422);
    assert_eq!(resp.json::<Value>().await.expect("problem")["code"], "invalid_json");
    let resp = post_feedback(&app, id, "rq_nope_wrong", json!({ "hashtags": ["#ok"] })).await;
    assert_eq!(resp.status(), 401);
    let resp = post_feedback(&app, id, &app.other_key, json!({ "hashtags": ["#ok"] })).await;
    assert_eq!(resp.status(), 404, "another tenant's job does not exist for them");
    let resp = post_feedback(&app, queued, &app.key, json!({ "hashtags": ["#ok"] })).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(resp.json::<Value>().await.expect("problem")["code"], "job_not_succeeded");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM feedback").await, 0, "no refusal wrote anything");

    // Saving normalises, deduplicates, and records what was suggested.
    let resp = post_feedback(&app, id, &app.key, json!({ "hashtags": ["#Cooking", "pasta", " #cooking ", "#Homemade_Food"] })).await;
    assert_eq!(resp.status(), 200);
    let saved: Value = resp.json().await.expect("json");
    assert_eq!(saved["hashtags"], json!(["#cooking", "#pasta", "#homemade_food"]));
    assert_eq!(saved["suggested"], json!(["#cooking", "#pasta", "#food"]));
    let read: Value = get_feedback(&app, id, &app.key).await.json().await.expect("json");
    assert_eq!(read["hashtags"], saved["hashtags"]);
    assert_eq!(get_feedback(&app, id, &app.other_key).await.status(), 404);

    // Posting again replaces.
    let resp = post_feedback(&app, id, &app.key, json!({ "hashtags": ["#food"] })).await;
    assert_eq!(resp.status(), 200);
    let read: Value = get_feedback(&app, id, &app.key).await.json().await.expect("json");
    assert_eq!(read["hashtags"], json!(["#food"]));
    assert_eq!(count(&env.pool, "SELECT count(*) FROM feedback").await, 1);
    let stored: Vec<String> = sqlx::query_scalar("SELECT hashtags FROM feedback WHERE job_id = $1").bind(id).fetch_one(&env.pool).await.expect("row");
    assert_eq!(stored, vec!["#food".to_owned()]);

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
