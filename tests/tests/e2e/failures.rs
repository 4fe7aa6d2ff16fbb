//! When things go wrong: crashes, a broker outage, transient and fatal faults, cancellation,
//! stale leases, fairness.

use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use secrecy::SecretString;
use serde_json::json;
use uuid::Uuid;

use reelq_shared::db::jobs::{self, ClaimOutcome};
use reelq_shared::db::results::{self, NewResult};
use reelq_shared::queue::Topology;
use reelq_tests::proxy::Proxy;
use reelq_tests::{TestApp, TestEnv, TestWorker, amqp_url, count, sample_clip};

fn noop(ms: u64) -> serde_json::Value {
    json!({ "analyses": ["noop"], "options": { "noop_ms": ms } })
}

fn with_video(mut body: serde_json::Value, video: Uuid) -> serde_json::Value {
    body["video_id"] = json!(video);
    body
}

pub(crate) async fn dead_letters(env: &TestEnv) -> usize {
    let conn = reelq_shared::queue::connect(&env.amqp, "test-inspect").await.expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    let q = Topology::new(&env.amqp).dead_queue();
    let mut n = 0;
    while ch.basic_get(q.clone().into(), BasicGetOptions { no_ack: true }).await.expect("get").is_some() {
        n += 1;
    }
    let _ = conn.close(200, "done".into()).await;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_crash_mid_job_is_redelivered_and_completes_once() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let first = TestWorker::spawn(env.worker_settings()).await;
    let id = app.submit_ok(with_video(noop(1_500), video)).await;
    app.wait_for(id, Duration::from_secs(20), |j| j["status"] == "running").await;

    // The first worker dies without acking; its lease still looks live for a while.
    first.crash().await;
    let second = TestWorker::spawn(env.worker_settings()).await;
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;

    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 2, "redelivered exactly once more");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM results").await, 1);
    second.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_down_at_submit_still_accepts_and_runs_when_it_returns() {
    let env = TestEnv::new().await;
    let upstream = amqp_url().trim_start_matches("amqp://").split('@').nth(1).and_then(|h| h.split('/').next()).expect("host").to_owned();
    let upstream = upstream.to_socket_addrs().expect("resolves").next().expect("addr");
    let proxy = Proxy::start(upstream, false).await;
    let mut settings = env.api_settings();
    settings.amqp.url = SecretString::from(format!("amqp://guest:guest@{}/%2f", proxy.addr()));
    let app = TestApp::spawn(&env, settings).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let video = app.upload_clip(sample_clip()).await;

    let id = app.submit_ok(with_video(noop(0), video)).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(app.job(id).await["status"], "queued");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM outbox").await, 1, "waiting in the outbox");
    let ready = app.http.get(app.url("/readyz")).send().await.expect("sent");
    assert_eq!(ready.status(), 503);

    proxy.up();
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM outbox").await, 0);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn corrupt_video_fails_at_once_without_retry() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    // Valid MP4 magic, then garbage: accepted at upload, refused by the decoder.
    let mut bytes = sample_clip()[..64].to_vec();
    bytes.extend(std::iter::repeat_n(0xAB_u8, 4_000));
    let video = app.upload_clip(bytes).await;

    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;

    assert_eq!(done["status"], "failed");
    assert_eq!(done["error"]["code"], "invalid_media");
    assert_eq!(done["attempts"], 1, "never retried");
    worker.stop().await;
    assert_eq!(dead_letters(&env).await, 0);
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_queued_job_never_starts() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(with_video(noop(0), video)).await;
    // Let the relay publish it, with no worker running.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let resp = app.http.post(app.url(&format!("/v1/jobs/{id}/cancel"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(resp.status(), 200);

    let worker = TestWorker::spawn(env.worker_settings()).await;
    // A later job proves the worker has consumed past the cancelled one.
    let later = app.submit_ok(with_video(noop(0), video)).await;
    app.wait_terminal(later, Duration::from_secs(30)).await;

    let job = app.job(id).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["attempts"], 0, "never claimed");
    assert!(job["started_at"].is_null());
    assert_eq!(count(&env.pool, &format!("SELECT count(*) FROM results WHERE job_id = '{id}'")).await, 0);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_running_job_stops_within_seconds() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let mut ws = env.worker_settings();
    ws.worker.concurrency = 1;
    ws.worker.interactive_reserved = 0;
    let worker = TestWorker::spawn(ws).await;
    let video = app.upload_clip(sample_clip()).await;
    let long = app.submit_ok(with_video(noop(60_000), video)).await;
    app.wait_for(long, Duration::from_secs(20), |j| j["status"] == "running").await;

    let cancelled_at = Instant::now();
    let resp = app.http.post(app.url(&format!("/v1/jobs/{long}/cancel"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(resp.status(), 200);
    // With one slot, the next job can only run once the cancelled one has stopped.
    let next = app.submit_ok(with_video(noop(0), video)).await;
    let done = app.wait_terminal(next, Duration::from_secs(10)).await;

    assert_eq!(done["status"], "succeeded");
    assert!(cancelled_at.elapsed() < Duration::from_secs(10));
    let job = app.job(long).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(count(&env.pool, &format!("SELECT count(*) FROM results WHERE job_id = '{long}'")).await, 0);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_lease_cannot_overwrite_a_job_another_worker_finished() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(with_video(noop(0), video)).await;
    let ttl = Duration::from_millis(200);

    let ClaimOutcome::Claimed(_, stale) = jobs::claim(&env.pool, id, app.tenant_id, ttl).await.expect("claim") else {
        panic!("first claim succeeds");
    };
    assert!(matches!(jobs::claim(&env.pool, id, app.tenant_id, ttl).await.expect("claim"), ClaimOutcome::LeaseHeld));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ClaimOutcome::Claimed(_, fresh) = jobs::claim(&env.pool, id, app.tenant_id, ttl).await.expect("claim") else {
        panic!("takeover after expiry");
    };
    assert_eq!(fresh.attempt, stale.attempt + 1);
    let result = |v: &str| vec![NewResult { analysis: "noop".into(), payload: json!({ "by": v }), model_versions: json!({}) }];
    assert!(jobs::complete(&env.pool, &fresh, &result("fresh"), &[]).await.expect("complete"));

    // The stale holder wakes up and tries to write and to end the job.
    let mut tx = env.pool.begin().await.expect("tx");
    assert!(!results::upsert_fenced(&mut tx, &stale, &result("stale")).await.expect("fenced"));
    assert!(!jobs::complete(&mut *tx, &stale, &result("stale"), &[]).await.expect("fenced"));
    assert!(!jobs::fail(&mut *tx, &stale, reelq_shared::domain::JobErrorCode::Timeout, "late").await.expect("fenced"));
    assert!(!jobs::heartbeat(&mut *tx, &stale, ttl, 0.5, "late").await.expect("fenced"));
    tx.commit().await.expect("commit");

    let job = app.job(id).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["results"]["noop"]["payload"]["by"], "fresh");
    assert!(matches!(jobs::claim(&env.pool, id, app.tenant_id, ttl).await.expect("claim"), ClaimOutcome::Finished(_)));
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reaper_dispatches_again_jobs_whose_worker_vanished_after_settling_their_messages() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let old = app.submit_ok(with_video(noop(0), video)).await;
    let late = app.submit_ok(with_video(noop(0), video)).await;
    // Both are dispatched, then taken by a worker that settled their messages and vanished.
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(&env.pool, "SELECT count(*) FROM outbox").await > 0 {
        assert!(Instant::now() < deadline, "the relay dispatched the jobs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in [old, late] {
        let ClaimOutcome::Claimed(..) = jobs::claim(&env.pool, id, app.tenant_id, Duration::from_secs(60)).await.expect("claim") else {
            panic!("the vanished worker's claim succeeds");
        };
    }
    let conn = reelq_shared::queue::connect(&env.amqp, "test-purge").await.expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    let topology = Topology::new(&env.amqp);
    for lane in [reelq_shared::domain::Priority::Interactive, reelq_shared::domain::Priority::Batch] {
        ch.queue_purge(topology.lane_queue(lane).into(), lapin::options::QueuePurgeOptions::default()).await.expect("purge");
    }
    let _ = conn.close(200, "done".into()).await;
    // One lease lapsed an hour ago; the other lapses in three seconds, after the reaper has
    // made passes that found nothing newer than the first.
    sqlx::query("UPDATE jobs SET lease_expires_at = now() - interval '1 hour' WHERE id = $1").bind(old).execute(&env.pool).await.expect("age");
    let late_lapse: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("UPDATE jobs SET lease_expires_at = now() + interval '3 seconds' WHERE id = $1 RETURNING lease_expires_at")
            .bind(late)
            .fetch_one(&env.pool)
            .await
            .expect("lapse");

    // A pass from no horizon reads every lapsed lease; one from a horizon after a lease skips it.
    let grace = Duration::from_secs(4);
    let full = jobs::stale_leases(&env.pool, grace, Duration::from_secs(60), None, 100).await.expect("pass");
    assert_eq!(full.jobs.iter().map(|j| j.0).collect::<Vec<_>>(), vec![old]);
    let since = full.next_since.expect("a horizon");
    assert!(
        sqlx::query_scalar::<_, bool>("SELECT $1 <= lease_expires_at FROM jobs WHERE id = $2")
            .bind(since)
            .bind(old)
            .fetch_one(&env.pool)
            .await
            .expect("read")
    );
    let recent: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now() - interval '10 minutes'").fetch_one(&env.pool).await.expect("now");
    let from_recent = jobs::stale_leases(&env.pool, grace, Duration::from_secs(60), Some(recent), 100).await.expect("pass");
    assert!(from_recent.jobs.is_empty(), "{from_recent:?}");
    assert!(from_recent.next_since.expect("a horizon") > recent, "an empty pass moves the horizon on");

    // The worker's reaper (every second; grace twice its 2 s lease) dispatches both again.
    let worker = TestWorker::spawn(env.worker_settings()).await;
    for id in [old, late] {
        let done = app.wait_terminal(id, Duration::from_secs(30)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(done["attempts"], 2, "{done:#}");
    }
    let taken_again: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT finished_at FROM jobs WHERE id = $1").bind(late).fetch_one(&env.pool).await.expect("read");
    assert!(taken_again >= late_lapse + chrono::Duration::seconds(4), "not before its lease lapsed and the grace passed: {taken_again} vs {late_lapse}");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM results").await, 2);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_cap_limits_running_jobs_and_batch_never_starves_interactive() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn_with_cap(&env, env.api_settings(), Some(2)).await;
    let mut ws = env.worker_settings();
    ws.worker.concurrency = 3;
    ws.worker.interactive_reserved = 1;
    let worker = TestWorker::spawn(ws).await;
    let video = app.upload_clip(sample_clip()).await;

    let mut batch = Vec::new();
    for _ in 0..8 {
        let mut body = with_video(noop(400), video);
        body["priority"] = json!("batch");
        batch.push(app.submit_ok(body).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let interactive = app.submit_ok(with_video(noop(0), video)).await;

    // Watch the running count while everything drains.
    let mut max_running = 0;
    let started = Instant::now();
    loop {
        let running = count(&env.pool, "SELECT count(*) FROM jobs WHERE status = 'running' AND lease_token IS NOT NULL").await;
        max_running = max_running.max(running);
        let open = count(&env.pool, "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')").await;
        if open == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "jobs did not drain");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(max_running <= 2, "tenant cap of 2 held (saw {max_running})");
    let i = app.job(interactive).await;
    assert_eq!(i["status"], "succeeded");
    let finished_after_interactive = {
        let mut n = 0;
        for b in &batch {
            let j = app.job(*b).await;
            assert_eq!(j["status"], "succeeded");
            if j["finished_at"].as_str() > i["finished_at"].as_str() {
                n += 1;
            }
        }
        n
    };
    assert!(finished_after_interactive >= 3, "the interactive job overtook queued batch work ({finished_after_interactive} finished after it)");
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_stop_finishes_in_flight_work_and_takes_no_more() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let mut ws = env.worker_settings();
    ws.worker.concurrency = 1;
    ws.worker.interactive_reserved = 0;
    let worker = TestWorker::spawn(ws).await;
    let video = app.upload_clip(sample_clip()).await;
    let running = app.submit_ok(with_video(noop(1_500), video)).await;
    app.wait_for(running, Duration::from_secs(20), |j| j["status"] == "running").await;
    let waiting = app.submit_ok(with_video(noop(0), video)).await;

    // SIGTERM equivalent: the in-flight job finishes before the worker exits.
    worker.stop().await;

    assert_eq!(app.job(running).await["status"], "succeeded");
    assert_eq!(app.job(waiting).await["status"], "queued", "no new work after the stop");
    // The next worker picks up what was left.
    let next = TestWorker::spawn(env.worker_settings()).await;
    assert_eq!(app.wait_terminal(waiting, Duration::from_secs(20)).await["status"], "succeeded");
    next.stop().await;
    app.stop().await;
    env.cleanup().await;
}
