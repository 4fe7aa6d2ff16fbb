//! Traces and metrics follow jobs across processes.

use std::time::{Duration, Instant};

use opentelemetry::trace::TraceId;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;

use reelq_shared::config::TelemetrySettings;
use reelq_tests::{TestApp, TestEnv, TestWorker, sample_clip};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_trace_follows_a_job_from_the_request_through_the_queue_into_the_worker() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let settings = TelemetrySettings { log_filter: "info".into(), ..TelemetrySettings::default() };
    assert!(reelq_shared::telemetry::install("reelq-test", &settings, provider.clone()), "first subscriber of this process");
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let video = app.upload_clip(sample_clip()).await;

    // The client starts the trace.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = app
        .http
        .post(app.url("/v1/jobs"))
        .bearer_auth(&app.key)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&json!({ "video_id": video, "analyses": ["probe"] }))
        .send()
        .await
        .expect("sent");
    assert_eq!(resp.status(), 202);
    let id = resp.json::<serde_json::Value>().await.expect("json")["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(app.wait_terminal(id, Duration::from_secs(30)).await["status"], "succeeded");
    worker.stop().await;
    app.stop().await;
    let _ = provider.force_flush();

    let spans = exporter.get_finished_spans().expect("spans");
    let expected = TraceId::from_hex(trace_id).expect("hex");
    let in_trace: Vec<&str> = spans.iter().filter(|s| s.span_context.trace_id() == expected).map(|s| s.name.as_ref()).collect();
    for name in ["http", "outbox.publish", "job", "stage"] {
        assert!(in_trace.contains(&name), "a `{name}` span in the job's trace; trace has {in_trace:?}");
    }
    let stages: Vec<String> = spans
        .iter()
        .filter(|s| s.span_context.trace_id() == expected && s.name == "stage")
        .flat_map(|s| s.attributes.iter().filter(|a| a.key.as_str() == "stage").map(|a| a.value.to_string()))
        .collect();
    assert!(stages.contains(&"download".to_owned()) && stages.contains(&"probe".to_owned()), "stages {stages:?}");
    env.cleanup().await;
}

fn metric(text: &str, name_and_labels: &str) -> f64 {
    text.lines().find(|l| l.starts_with(name_and_labels)).and_then(|l| l.rsplit(' ').next()).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_of_api_and_worker_count_the_job() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let scrape = |url: String| {
        let http = app.http.clone();
        async move { http.get(url).send().await.expect("sent").text().await.expect("text") }
    };
    let api_before = scrape(app.url("/metrics")).await;
    let worker_url = format!("http://{}/metrics", worker.health);
    let worker_before = scrape(worker_url.clone()).await;

    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    app.wait_terminal(id, Duration::from_secs(30)).await;
    let api_after = scrape(app.url("/metrics")).await;
    let worker_after = scrape(worker_url).await;

    let moved = |before: &str, after: &str, m: &str| metric(after, m) - metric(before, m);
    assert_eq!(moved(&api_before, &api_after, "reelq_jobs_submitted_total{priority=\"interactive\"}"), 1.0);
    assert!(moved(&api_before, &api_after, "reelq_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"202\"}") >= 1.0);
    assert!(moved(&api_before, &api_after, "reelq_upload_bytes_total{outcome=\"stored\"}") >= sample_clip().len() as f64);
    assert_eq!(moved(&worker_before, &worker_after, "reelq_jobs_finished_total{code=\"\",status=\"succeeded\"}"), 1.0);
    assert!(moved(&worker_before, &worker_after, "reelq_queue_lag_seconds_count{priority=\"interactive\"}") >= 1.0);
    assert!(moved(&worker_before, &worker_after, "reelq_job_stage_duration_seconds_count{stage=\"probe\"}") >= 1.0);
    assert!(worker_after.contains("reelq_db_query_duration_seconds_bucket{outcome=\"ok\",query=\"jobs.claim\""));
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transaction_another_client_holds_open_shows_in_the_workers_metrics() {
    let env = TestEnv::new().await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let http = reqwest::Client::new();
    let worker_url = format!("http://{}/metrics", worker.health);

    // A report that holds a snapshot, as a long query or a session idle in a transaction does.
    let mut report = env.pool.begin().await.expect("begin");
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *report).await.expect("isolation");
    sqlx::query("SELECT count(*) FROM jobs").execute(&mut *report).await.expect("snapshot taken");
    let held = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Within a few reaper passes (every second here) the worker reports a transaction at least
    // as old as this one (the cluster's oldest: another one may be older still).
    loop {
        let text = http.get(&worker_url).send().await.expect("sent").text().await.expect("text");
        let age = metric(&text, "reelq_db_oldest_transaction_seconds");
        if age >= 3.0 {
            break;
        }
        assert!(held.elapsed() < Duration::from_secs(20), "the worker still reports {age} s after {:?}", held.elapsed());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    report.rollback().await.expect("rollback");
    worker.stop().await;
    env.cleanup().await;
}
