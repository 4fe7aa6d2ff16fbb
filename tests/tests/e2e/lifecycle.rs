//! The happy paths: upload, submit, process, read the result.

use std::time::Duration;

use serde_json::json;

use reelq_tests::{TestApp, TestEnv, TestWorker, count, sample_clip};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaded_clip_is_probed_end_to_end() {
    // Arrange
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;

    // Act
    let video_id = app.upload_clip(sample_clip()).await;
    let resp = app.submit(json!({ "video_id": video_id, "analyses": ["probe"] })).await;
    assert_eq!(resp.status(), 202);
    let location = resp.headers().get("location").expect("Location header").to_str().expect("ascii").to_owned();
    let job: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(location, format!("/v1/jobs/{}", job["id"].as_str().expect("id")));
    assert_eq!(job["status"], "queued");
    let id = job["id"].as_str().expect("id").parse().expect("uuid");
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;

    // Assert
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["progress"], 1.0);
    let probe = &done["results"]["probe"]["payload"];
    assert_eq!(probe["video"]["codec"], "h264");
    assert_eq!(probe["video"]["width"], 320);
    assert_eq!(probe["video"]["height"], 240);
    assert_eq!(probe["video"]["frame_rate"], 25.0);
    assert_eq!(probe["video"]["rotation"], 0);
    assert_eq!(probe["audio"]["codec"], "aac");
    assert_eq!(probe["audio"]["sample_rate"], 44100);
    let duration = probe["duration_secs"].as_f64().expect("duration");
    assert!((duration - 2.0).abs() < 0.1, "duration {duration}");
    assert!(probe["container"].as_str().expect("container").contains("mp4"));
    // Where the time went, stage by stage, within the attempt's own span.
    let timings = done["timings"].as_array().expect("timings");
    let stages: Vec<&str> = timings.iter().filter_map(|t| t["stage"].as_str()).collect();
    assert_eq!(stages, ["download", "inspect", "decode", "probe"], "{done:#}");
    let spent: u64 = timings.iter().map(|t| t["ms"].as_u64().expect("ms")).sum();
    let at = |k: &str| done[k].as_str().expect(k).parse::<chrono::DateTime<chrono::Utc>>().expect("time");
    let attempt_ms = (at("finished_at") - at("started_at")).num_milliseconds();
    assert!(spent as i64 <= attempt_ms + 1, "{spent} ms of stages within an attempt of {attempt_ms} ms");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM results").await, 1);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM outbox").await, 0, "outbox drained");

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn multipart_submission_uploads_and_queues_in_one_call() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;

    let form = reqwest::multipart::Form::new()
        .text("analyses", "probe")
        .text("priority", "batch")
        .part("file", reqwest::multipart::Part::bytes(sample_clip()).file_name("clip.mp4").mime_str("video/mp4").expect("mime"));
    let resp = app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).multipart(form).send().await.expect("sent");
    assert_eq!(resp.status(), 202, "{}", resp.text().await.unwrap_or_default());
    let job: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(job["priority"], "batch");
    let id = job["id"].as_str().expect("id").parse().expect("uuid");
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;

    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["results"]["probe"]["payload"]["video"]["width"], 320);
    assert_eq!(env.stored_objects().len(), 1);

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presigned_upload_then_complete_makes_a_usable_video() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;

    let slot: serde_json::Value = app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth(&app.key)
        .json(&json!({ "content_type": "video/mp4", "size_bytes": sample_clip().len() }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    let put = app.http.put(slot["upload_url"].as_str().expect("url")).header("content-type", "video/mp4").body(sample_clip()).send().await.expect("sent");
    assert!(put.status().is_success(), "presigned PUT: {}", put.status());
    let video_id = slot["video_id"].as_str().expect("id");
    let done = app.http.post(app.url(&format!("/v1/videos/{video_id}/complete"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(done.status(), 200);
    let video: serde_json::Value = done.json().await.expect("json");
    assert_eq!(video["status"], "stored");
    assert_eq!(video["container"], "mp4");
    assert_eq!(video["size_bytes"], sample_clip().len());

    // A presigned upload of something that is not a video is refused and deleted.
    let text = "just some text, not a video at all; long enough to sniff.....";
    let slot: serde_json::Value = app
        .http
        .post(app.url("/v1/uploads"))
        .bearer_auth(&app.key)
        .json(&json!({ "size_bytes": text.len() }))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    app.http.put(slot["upload_url"].as_str().expect("url")).body(text).send().await.expect("sent");
    let bad = app
        .http
        .post(app.url(&format!("/v1/videos/{}/complete", slot["video_id"].as_str().expect("id"))))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), 415);
    assert_eq!(env.stored_objects().len(), 1, "only the real video stays stored");

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_is_delivered_with_a_valid_signature() {
    use axum::body::Bytes;
    use axum::http::HeaderMap;

    let env = TestEnv::new().await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(HeaderMap, Bytes)>();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;

    let video_id = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video_id, "analyses": ["probe"], "callback_url": hook })).await;
    let (headers, body) = tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.expect("webhook arrives").expect("message");

    let sig = headers.get("reelq-signature").expect("signature header").to_str().expect("ascii");
    let secret = secrecy::ExposeSecret::expose_secret(&env.webhooks.signing_secret).as_bytes().to_vec();
    assert!(reelq_shared::webhook::verify(&secret, sig, &body, chrono_now(), 300), "signature verifies");
    assert!(!reelq_shared::webhook::verify(b"wrong-secret-wrong-secret", sig, &body, chrono_now(), 300));
    let payload: serde_json::Value = serde_json::from_slice(&body).expect("json body");
    assert_eq!(payload["event"], "job.succeeded");
    assert_eq!(payload["job"]["id"], id.to_string());
    assert_eq!(payload["job"]["results"]["probe"]["payload"]["video"]["height"], 240);

    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_webhook_receiver_is_retried_until_it_accepts() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let env = TestEnv::new().await;
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    // Fails twice, then accepts.
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let seen = seen.clone();
            async move { if seen.fetch_add(1, Ordering::SeqCst) < 2 { axum::http::StatusCode::SERVICE_UNAVAILABLE } else { axum::http::StatusCode::OK } }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;

    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["noop"], "callback_url": hook })).await;
    app.wait_terminal(id, Duration::from_secs(30)).await;
    let started = std::time::Instant::now();
    loop {
        let delivered = count(&env.pool, &format!("SELECT count(*) FROM webhook_deliveries WHERE job_id = '{id}' AND delivered_at IS NOT NULL")).await;
        if delivered == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "webhook not delivered after retries");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(calls.load(Ordering::SeqCst), 3, "two failures, then one success, nothing after");
    let attempts = count(&env.pool, &format!("SELECT attempts::bigint FROM webhook_deliveries WHERE job_id = '{id}'")).await;
    assert_eq!(attempts, 3);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
