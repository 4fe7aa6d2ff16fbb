//! Refusals are problem documents with stable codes, whichever layer refuses: text PostgreSQL
//! cannot store at every input that reaches it, malformed ids, bodies and queries, over-long
//! URIs, methods a route lacks.

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uuid::Uuid;

use reelq_tests::{TestApp, TestEnv, count, sample_clip};

/// Asserts a problem document with `status` and `code`, and returns it.
async fn problem(resp: reqwest::Response, status: u16, code: &str, what: &str) -> Value {
    assert_eq!(resp.status().as_u16(), status, "{what}");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    assert_eq!(ct, "application/problem+json", "{what}");
    let body: Value = resp.json().await.expect("problem body");
    assert_eq!(body["code"], code, "{what}: {body}");
    assert_eq!(body["status"], status, "{what}");
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: {body}");
    body
}

/// Sends raw bytes as one HTTP/1.1 request and returns the response's status.
async fn raw_status(app: &TestApp, request: &[u8]) -> u16 {
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.expect("connect");
    conn.write_all(request).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = conn.read(&mut buf).await.expect("read");
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {head:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn text_postgresql_cannot_store_is_refused_with_invalid_text_everywhere() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    reelq_shared::db::admin::set_admin(&env.pool, &reelq_shared::auth::hash_key(&app.key), true).await.expect("admin key");
    let video_id = app.upload_clip(sample_clip()).await;
    let nul = "a\u{0}b";

    // Job options at any depth, as values and as keys, and the callback URL.
    let bodies = [
        json!({ "video_id": video_id, "analyses": ["probe"], "options": { "caption": nul } }),
        json!({ "video_id": video_id, "analyses": ["probe"], "options": { "deep": [{ "x": { "y": nul } }] } }),
        json!({ "video_id": video_id, "analyses": ["probe"], "options": { nul: 1 } }),
        json!({ "video_id": video_id, "analyses": ["probe"], "callback_url": format!("http://example.com/{nul}") }),
    ];
    for body in bodies {
        problem(app.submit(body.clone()).await, 422, "invalid_text", &body.to_string()).await;
    }
    // The same through the multipart form, whose fields skip the JSON extractor.
    for (field, value) in [("options", format!("{{\"caption\": \"{}\"}}", "x\\u0000y")), ("callback_url", format!("http://example.com/{nul}"))] {
        let form = reqwest::multipart::Form::new()
            .text("analyses", "probe")
            .text(field, value)
            .part("file", reqwest::multipart::Part::bytes(sample_clip()).file_name("clip.mp4").mime_str("video/mp4").expect("mime"));
        let resp = app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).multipart(form).send().await.expect("sent");
        problem(resp, 422, "invalid_text", field).await;
    }
    // Feedback, rollback and training bodies; schedule names in a body and in a query.
    let job_id = app.submit_ok(json!({ "video_id": video_id, "analyses": ["probe"] })).await;
    let post = |path: String, body: Value| app.http.post(app.url(&path)).bearer_auth(&app.key).json(&body).send();
    problem(post(format!("/v1/jobs/{job_id}/feedback"), json!({ "hashtags": [format!("#{nul}")] })).await.expect("sent"), 422, "invalid_text", "feedback")
        .await;
    problem(post("/v1/admin/models/hashtags/rollback".into(), json!({ "version": nul })).await.expect("sent"), 422, "invalid_text", "rollback").await;
    problem(post("/v1/admin/training".into(), json!({ "note": nul })).await.expect("sent"), 422, "invalid_text", "training").await;
    // Routes whose handlers read their bodies with axum's own extractor are covered too: the
    // text is refused before any handler, not by the statement or the storage call it reaches.
    problem(post("/v1/admin/runs".into(), json!({ "schedule": nul })).await.expect("sent"), 422, "invalid_text", "trigger run").await;
    problem(
        post("/v1/uploads".into(), json!({ "content_type": format!("video/{nul}"), "size_bytes": 10 })).await.expect("sent"),
        422,
        "invalid_text",
        "presign",
    )
    .await;
    problem(post("/v1/admin/dead-letters/replay".into(), json!({ nul: 1 })).await.expect("sent"), 422, "invalid_text", "replay").await;
    let get = |path: &str| app.http.get(app.url(path)).bearer_auth(&app.key).send();
    for path in [
        "/v1/admin/runs?schedule=a%00b",
        "/v1/music/recommendations?hashtags=a%00b",
        "/v1/jobs?cursor=%00",
        "/v1/models?model=%00",
        "/v1/hashtags/trending?region=U%00",
    ] {
        problem(get(path).await.expect("sent"), 422, "invalid_text", path).await;
    }
    // A NUL in a header never reaches a handler: the HTTP layer refuses the request.
    let status = raw_status(
        &app,
        format!("POST /v1/jobs HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\nidempotency-key: a\0b\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{{}}", app.key).as_bytes(),
    )
    .await;
    assert!(status == 400 || status == 422, "NUL in a header: {status}");
    // Control characters other than NUL are storable text, and a caption may hold them.
    let tab = app.submit(json!({ "video_id": video_id, "analyses": ["probe"], "options": { "caption": "one\ttwo\u{1}" } })).await;
    assert_eq!(tab.status(), 202, "{}", tab.text().await.unwrap_or_default());

    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 2, "only the two valid submissions");
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_refusal_is_a_problem_document_with_a_stable_code() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let get = |path: &str| app.http.get(app.url(path)).bearer_auth(&app.key).send();

    // Malformed ids name nothing, on every route with an id, whichever module serves it.
    for path in ["/v1/jobs/not-a-uuid", "/v1/jobs/12/events", "/v1/jobs/x/feedback", "/v1/jobs/x/output", "/v1/videos/not-a-uuid", "/v1/admin/training/zz"]
    {
        problem(get(path).await.expect("sent"), 404, "not_found", path).await;
    }
    let cancel = app.http.post(app.url("/v1/jobs/nope/cancel")).bearer_auth(&app.key).send().await.expect("sent");
    problem(cancel, 404, "not_found", "cancel").await;

    // Bodies: no or the wrong content type, broken JSON, a body over the limit.
    let body = json!({ "video_id": Uuid::now_v7(), "analyses": ["probe"] }).to_string();
    let bare = app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).body(body.clone()).send().await.expect("sent");
    problem(bare, 415, "unsupported_media_type", "no content type").await;
    let text = app.http.post(app.url("/v1/jobs")).bearer_auth(&app.key).header("content-type", "text/plain").body(body).send().await.expect("sent");
    problem(text, 415, "unsupported_media_type", "text/plain").await;
    let broken = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body("{\"video_id\":")
        .send()
        .await
        .expect("sent");
    problem(broken, 422, "invalid_json", "syntax").await;
    let huge = json!({ "video_id": Uuid::now_v7(), "analyses": ["probe"], "options": { "caption": "x".repeat(300_000) } });
    problem(app.submit(huge).await, 413, "payload_too_large", "huge job").await;
    let feedback = app.http.post(app.url(&format!("/v1/jobs/{}/feedback", Uuid::now_v7()))).bearer_auth(&app.key).body("{}").send().await.expect("sent");
    problem(feedback, 415, "unsupported_media_type", "feedback without a content type").await;
    let run =
        app.http.post(app.url("/v1/admin/runs")).bearer_auth(&app.key).header("content-type", "application/json").body("[").send().await.expect("sent");
    problem(run, 403, "forbidden", "admin route with a tenant key").await;
    let anonymous = app.http.post(app.url("/v1/admin/runs")).json(&json!({ "schedule": "pull" })).send().await.expect("sent");
    problem(anonymous, 401, "unauthorized", "no key").await;

    // Queries that do not parse, a method the route lacks, an over-long URI.
    problem(get("/v1/jobs?limit=many").await.expect("sent"), 422, "invalid_query", "limit").await;
    problem(get("/v1/jobs?status=done").await.expect("sent"), 422, "invalid_query", "status").await;
    let patch = app.http.patch(app.url("/v1/jobs")).bearer_auth(&app.key).send().await.expect("sent");
    let allow = patch.headers().get("allow").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    problem(patch, 405, "method_not_allowed", "PATCH").await;
    assert!(allow.contains("GET") && allow.contains("POST"), "Allow: {allow}");
    let long = format!("/v1/jobs?cursor={}", "A".repeat(reelq_api::routes::MAX_URI_BYTES));
    problem(get(&long).await.expect("sent"), 414, "uri_too_long", "long cursor").await;

    // A transient fault says when to come back.
    let env_pool_closed = {
        let mut s = env.api_settings();
        s.database.url = secrecy::SecretString::from("postgres://postgres@127.0.0.1:1/nothing".to_owned());
        s.database.acquire_timeout_ms = 300;
        s
    };
    let down = TestApp::spawn(&env, env_pool_closed).await;
    let resp = down.http.get(down.url("/v1/jobs")).bearer_auth(&down.key).send().await.expect("sent");
    let retry_after = resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    problem(resp, 503, "service_unavailable", "database unreachable").await;
    assert!(retry_after.is_some_and(|s| s >= 1), "Retry-After: {retry_after:?}");
    down.stop().await;

    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_document_lists_each_routes_refusals_and_the_event_shape_sent() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let doc: Value = app.http.get(app.url("/openapi.json")).send().await.expect("sent").json().await.expect("json");

    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let responses = op["responses"].as_object().expect("responses");
            let has = |s: &str| responses.contains_key(s);
            let what = format!("{method} {path}");
            assert!(has("414"), "{what}: 414");
            if op["security"].as_array().is_some_and(|s| !s.is_empty()) {
                assert!(has("401") && has("503"), "{what}: 401 and 503");
            }
            if path.starts_with("/v1/admin/") {
                assert!(has("403"), "{what}: 403");
            }
            if path.contains("{id}") {
                assert!(has("404"), "{what}: 404");
            }
            if op.get("requestBody").is_some() {
                assert!(has("413") && has("415") && has("422"), "{what}: body refusals");
            }
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    let content = response["content"].as_object().map(|c| c.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
                    // `/readyz` answers its 503 with the readiness body, not a problem.
                    if path != "/readyz" {
                        assert_eq!(content, ["application/problem+json"], "{what} {status}");
                    }
                }
            }
        }
    }
    // The stream's documented event has the fields a client's parser sees, `retry` included.
    let event = &doc["components"]["schemas"]["JobStreamEvent"];
    assert_eq!(event["properties"]["retry"]["type"], "integer");
    assert_eq!(event["properties"]["data"]["contentMediaType"], "application/json");

    app.stop().await;
    env.cleanup().await;
}
