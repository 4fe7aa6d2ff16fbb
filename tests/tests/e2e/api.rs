//! The API's contract: authentication, tenancy, idempotency, limits, errors and OpenAPI.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use reelq_tests::{TestApp, TestEnv, count, sample_clip};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_need_a_valid_key_and_see_only_their_tenant() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video_id = app.upload_clip(sample_clip()).await;
    let job_id = app.submit_ok(json!({ "video_id": video_id, "analyses": ["probe"] })).await;

    // No key, a malformed header, and an unknown key: 401 problem documents.
    let none = app.http.get(app.url("/v1/jobs")).send().await.expect("sent");
    assert_eq!(none.status(), 401);
    assert_eq!(none.headers()["content-type"], "application/problem+json");
    let body: Value = none.json().await.expect("json");
    assert_eq!(body["code"], "unauthorized");
    let basic = app.http.get(app.url("/v1/jobs")).header("authorization", "Basic abc").send().await.expect("sent");
    assert_eq!(basic.status(), 401);
    let wrong = app.http.get(app.url("/v1/jobs")).bearer_auth("rq_deadbeef_notakey").send().await.expect("sent");
    assert_eq!(wrong.status(), 401);
    let upload = app.http.post(app.url("/v1/videos")).header("content-type", "video/mp4").body(sample_clip()).send().await.expect("sent");
    assert_eq!(upload.status(), 401);
    // The unread body is not left on a connection the client would reuse.
    assert_eq!(upload.headers()["connection"], "close");

    // Another tenant sees neither the job nor the video, and cannot use or cancel them.
    let other = |path: String| app.http.get(app.url(&path)).bearer_auth(&app.other_key);
    assert_eq!(other(format!("/v1/jobs/{job_id}")).send().await.expect("sent").status(), 404);
    assert_eq!(other(format!("/v1/videos/{video_id}")).send().await.expect("sent").status(), 404);
    let cancel = app.http.post(app.url(&format!("/v1/jobs/{job_id}/cancel"))).bearer_auth(&app.other_key).send().await.expect("sent");
    assert_eq!(cancel.status(), 404);
    let reuse = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.other_key)
        .json(&json!({ "video_id": video_id, "analyses": ["probe"] }))
        .send()
        .await
        .expect("sent");
    assert_eq!(reuse.status(), 404);
    let list: Value = other("/v1/jobs".into()).send().await.expect("sent").json().await.expect("json");
    assert_eq!(list["jobs"].as_array().expect("array").len(), 0);
    // The owner does see it.
    let mine: Value = app.http.get(app.url("/v1/jobs")).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    assert_eq!(mine["jobs"][0]["id"], job_id.to_string());

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_key_replays_the_same_job_and_refuses_a_different_body() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video_id = app.upload_clip(sample_clip()).await;
    let send = |body: Value| app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).header("idempotency-key", "order-42").json(&body).send();

    let first = send(json!({ "video_id": video_id, "analyses": ["probe"] })).await.expect("sent");
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.expect("json");
    let again = send(json!({ "analyses": ["probe", "probe"], "video_id": video_id })).await.expect("sent");
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["id"], again["id"]);
    let conflict = send(json!({ "video_id": video_id, "analyses": ["probe"], "priority": "batch" })).await.expect("sent");
    assert_eq!(conflict.status(), 409);
    let problem: Value = conflict.json().await.expect("json");
    assert_eq!(problem["code"], "idempotency_key_reused");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 1);

    // Keys are per tenant: the other tenant may use the same key freely (on its own video).
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_limit_upload_is_413_and_stores_nothing() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.max_upload_bytes = 10_000;
    let app = TestApp::spawn(&env, settings).await;
    let clip = sample_clip();
    assert!(clip.len() > 10_000);

    let declared = app.upload_raw(clip.clone(), "video/mp4").await;
    assert_eq!(declared.status(), 413);
    let problem: Value = declared.json().await.expect("json");
    assert_eq!(problem["code"], "payload_too_large");

    // Without a Content-Length the limit is enforced while streaming.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = clip.chunks(4096).map(|c| Ok(c.to_vec())).collect();
    let streamed = app
        .http
        .post(app.url("/v1/videos"))
        .bearer_auth(&app.key)
        .header("content-type", "video/mp4")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await;
    // The api answers 413 as soon as the limit is crossed and may close the connection while
    // the client is still sending; the client then sees either the 413 or the cut connection.
    match streamed {
        Ok(resp) => assert_eq!(resp.status(), 413),
        Err(e) => assert!(e.is_request() || e.is_body(), "unexpected client error: {e}"),
    }
    assert_eq!(env.stored_objects().len(), 0, "nothing stored");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn non_video_bodies_are_refused_with_nothing_stored_or_queued() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;

    let text = app.upload_raw(b"hello, this is plainly a text file and not a video of any kind at all".to_vec(), "video/mp4").await;
    assert_eq!(text.status(), 415);
    assert_eq!(text.json::<Value>().await.expect("json")["code"], "unsupported_media_type");
    let gif = app.upload_raw(b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".repeat(3), "video/mp4").await;
    assert_eq!(gif.status(), 415);
    let wrong_type = app.upload_raw(sample_clip(), "text/plain").await;
    assert_eq!(wrong_type.status(), 415);
    let empty = app.upload_raw(Vec::new(), "video/mp4").await;
    assert_eq!(empty.status(), 422);
    // Multipart submission of a non-video: refused, no job, no outbox row.
    let form = reqwest::multipart::Form::new()
        .text("analyses", "probe")
        .part("file", reqwest::multipart::Part::bytes(b"#!/bin/sh\necho not a video, just a script that is long enough\n".to_vec()).file_name("x.mp4"));
    let resp = app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).multipart(form).send().await.expect("sent");
    assert_eq!(resp.status(), 415);
    // Invalid JSON requests get 422 with a stable code.
    let bad = app.submit(json!({ "video_id": Uuid::now_v7(), "analyses": ["telepathy"] })).await;
    assert_eq!(bad.status(), 422);
    let none = app.submit(json!({ "video_id": Uuid::now_v7(), "analyses": [] })).await;
    assert_eq!(none.status(), 422);
    assert_eq!(none.json::<Value>().await.expect("json")["code"], "no_analyses");

    assert_eq!(env.stored_objects().len(), 0);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM videos").await, 0);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 0);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM outbox").await, 0);

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn private_callback_urls_are_refused_unless_allowed() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.webhooks.allow_private = false;
    let app = TestApp::spawn(&env, settings).await;
    let video_id = app.upload_clip(sample_clip()).await;

    for url in ["http://127.0.0.1:9/hook", "http://169.254.169.254/latest/meta-data", "http://10.0.0.1/x", "http://[::1]/x", "file:///etc/passwd"] {
        let resp = app.submit(json!({ "video_id": video_id, "analyses": ["probe"], "callback_url": url })).await;
        assert_eq!(resp.status(), 422, "{url}");
        assert_eq!(resp.json::<Value>().await.expect("json")["code"], "invalid_callback_url", "{url}");
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 0);

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_pages_newest_first_and_filters_by_status() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video_id = app.upload_clip(sample_clip()).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.submit_ok(json!({ "video_id": video_id, "analyses": ["probe"] })).await.to_string());
    }
    let cancelled = ids[1].clone();
    let c = app.http.post(app.url(&format!("/v1/jobs/{cancelled}/cancel"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(c.status(), 200);

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut req = app.http.get(app.url("/v1/jobs")).bearer_auth(&app.key).query(&[("limit", "2")]);
        if let Some(c) = &cursor {
            req = req.query(&[("cursor", c)]);
        }
        let page: Value = req.send().await.expect("sent").json().await.expect("json");
        let jobs = page["jobs"].as_array().expect("array");
        assert!(jobs.len() <= 2);
        seen.extend(jobs.iter().map(|j| j["id"].as_str().expect("id").to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let only: Value = app.http.get(app.url("/v1/jobs?status=cancelled")).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    assert_eq!(only["jobs"].as_array().expect("array").len(), 1);
    assert_eq!(only["jobs"][0]["id"], cancelled);
    let bad = app.http.get(app.url("/v1/jobs?cursor=garbage")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(bad.status(), 422);
    let again = app.http.post(app.url(&format!("/v1/jobs/{cancelled}/cancel"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(again.status(), 409);

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openapi_document_matches_the_routes() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;

    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.expect("sent").json().await.expect("json");
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<String> = Vec::new();
    for (path, item) in paths {
        for method in item.as_object().expect("item").keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
        }
    }
    documented.sort();
    let expected = [
        "DELETE /v1/admin/songs/{track_id}",
        "DELETE /v1/admin/tenants/{id}/data",
        "DELETE /v1/videos/{id}",
        "GET /healthz",
        "GET /metrics",
        "GET /openapi.json",
        "GET /readyz",
        "GET /v1/admin/dead-letters",
        "GET /v1/admin/jobs/{id}/replays",
        "GET /v1/admin/runs",
        "GET /v1/admin/songs",
        "GET /v1/admin/training/{id}",
        "GET /v1/analyses",
        "GET /v1/hashtags/trending",
        "GET /v1/jobs",
        "GET /v1/jobs/{id}",
        "GET /v1/jobs/{id}/events",
        "GET /v1/jobs/{id}/feedback",
        "GET /v1/jobs/{id}/output",
        "GET /v1/models",
        "GET /v1/music/recommendations",
        "GET /v1/videos/{id}",
        "POST /v1/admin/dead-letters/replay",
        "POST /v1/admin/jobs/{id}/replay",
        "POST /v1/admin/models/{model}/rollback",
        "POST /v1/admin/runs",
        "POST /v1/admin/songs",
        "POST /v1/admin/songs/pulled",
        "POST /v1/admin/training",
        "POST /v1/jobs",
        "POST /v1/jobs/{id}/cancel",
        "POST /v1/jobs/{id}/feedback",
        "POST /v1/jobs:batch",
        "POST /v1/uploads",
        "POST /v1/videos",
        "POST /v1/videos/{id}/complete",
    ];
    assert_eq!(documented, expected);

    // Every documented operation is routed (neither 404 for the route nor 405), and an
    // undocumented one is not.
    for op in &documented {
        let (method, path) = op.split_once(' ').expect("op");
        let url = app.url(&path.replace("{id}", &Uuid::now_v7().to_string()).replace("{model}", "hashtags").replace("{track_id}", "7"));
        let req = app.http.request(method.parse().expect("method"), url).bearer_auth(&app.key);
        let resp = req.send().await.expect("sent");
        assert_ne!(resp.status(), 405, "{op}");
        if resp.status() == 404 {
            let body: Value = resp.json().await.expect("json");
            assert_ne!(body["detail"], "route not found", "{op} is documented but not routed");
        }
    }
    let unrouted = app.http.get(app.url("/v1/nothing-here")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(unrouted.status(), 404);
    assert_eq!(unrouted.json::<Value>().await.expect("json")["detail"], "route not found");
    // Health endpoints are open; readiness reflects the real services.
    let ready = app.http.get(app.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status(), 200, "{}", ready.text().await.unwrap_or_default());
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(metrics.contains("reelq_http_requests_total"), "metrics exported");
    tokio::time::sleep(Duration::from_millis(10)).await;

    app.stop().await;
    env.cleanup().await;
}
