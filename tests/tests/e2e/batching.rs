//! The hot path in batches: many claims, and many outcomes, each in one statement, with every
//! job still fenced by its own lease and every tenant's cap still exact.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use reelq_shared::db::jobs::{self, ClaimOutcome, Ending, Finish, Lease};
use reelq_shared::db::results::NewResult;
use reelq_shared::domain::JobErrorCode;
use reelq_tests::{TestApp, TestEnv, count, sample_clip};

fn job(video: Uuid, priority: &str) -> serde_json::Value {
    json!({ "video_id": video, "analyses": ["noop"], "priority": priority })
}

fn succeeded(lease: Lease, by: &str) -> Finish {
    let results = vec![NewResult { analysis: "noop".into(), payload: json!({ "by": by }), model_versions: json!([]) }];
    Finish { lease, ending: Ending::Succeeded { results, timings: Vec::new() } }
}

fn leases(outcomes: Vec<ClaimOutcome>) -> Vec<Lease> {
    outcomes
        .into_iter()
        .map(|o| match o {
            ClaimOutcome::Claimed(_, lease) => lease,
            other => panic!("expected a claim, got {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_of_outcomes_with_one_stale_lease_commits_the_others_and_refuses_only_it() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.submit_ok(job(video, "interactive")).await);
    }
    let ttl = Duration::from_millis(300);
    let wanted: Vec<(Uuid, Uuid)> = ids.iter().map(|&id| (id, app.tenant_id)).collect();
    let held = leases(jobs::claim_many(&env.pool, &wanted, ttl).await.expect("claim"));
    assert!(held.iter().zip(&ids).all(|(l, id)| l.job_id == *id && l.attempt == 1));

    // The first job's holder stalls; its lease lapses and another worker takes the job over.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let stale = held[0];
    let fresh = leases(jobs::claim_many(&env.pool, &[(ids[0], app.tenant_id)], Duration::from_secs(30)).await.expect("takeover")).remove(0);
    assert_eq!(fresh.attempt, 2);

    // The stalled holder's outcome arrives in the same batch as three live ones.
    let batch = vec![
        succeeded(stale, "stale"),
        succeeded(held[1], "second"),
        Finish { lease: held[2], ending: Ending::Failed { code: JobErrorCode::InvalidMedia, message: "not a video".into() } },
        succeeded(held[3], "fourth"),
    ];
    assert_eq!(jobs::finish_many(&env.pool, &batch).await.expect("finish"), vec![false, true, true, true]);

    let first = app.job(ids[0]).await;
    assert_eq!(first["status"], "running", "the stale lease changed nothing");
    assert_eq!(count(&env.pool, &format!("SELECT count(*) FROM results WHERE job_id = '{}'", ids[0])).await, 0);
    assert_eq!(app.job(ids[1]).await["results"]["noop"]["payload"]["by"], "second");
    let failed = app.job(ids[2]).await;
    assert_eq!((failed["status"].as_str(), failed["error"]["code"].as_str()), (Some("failed"), Some("invalid_media")));
    assert_eq!(count(&env.pool, &format!("SELECT count(*) FROM results WHERE job_id = '{}'", ids[2])).await, 0);
    assert_eq!(app.job(ids[3]).await["results"]["noop"]["payload"]["by"], "fourth");

    // Both holders of the first job in one batch: only the live one writes.
    let both = vec![succeeded(stale, "stale"), succeeded(fresh, "fresh")];
    assert_eq!(jobs::finish_many(&env.pool, &both).await.expect("finish"), vec![false, true]);
    let first = app.job(ids[0]).await;
    assert_eq!((first["status"].as_str(), first["results"]["noop"]["payload"]["by"].as_str()), (Some("succeeded"), Some("fresh")));
    assert_eq!(count(&env.pool, &format!("SELECT count(*) FROM results WHERE job_id = '{}'", ids[0])).await, 1);
    // Ended jobs refuse every later outcome.
    assert_eq!(jobs::finish_many(&env.pool, &[succeeded(held[1], "again")]).await.expect("finish"), vec![false]);
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batched_claim_keeps_the_tenant_cap_exact_and_serves_interactive_jobs_first() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn_with_cap(&env, env.api_settings(), Some(2)).await;
    let video = app.upload_clip(sample_clip()).await;
    let b1 = app.submit_ok(job(video, "batch")).await;
    let b2 = app.submit_ok(job(video, "batch")).await;
    let i1 = app.submit_ok(job(video, "interactive")).await;
    let i2 = app.submit_ok(job(video, "interactive")).await;
    let ttl = Duration::from_secs(30);
    let t = app.tenant_id;

    // Batch jobs first in the batch, and one job twice (a redelivery beside its original).
    let wanted = [(b1, t), (b2, t), (i1, t), (i2, t), (i1, t), (Uuid::now_v7(), t), (b1, Uuid::now_v7())];
    let got = jobs::claim_many(&env.pool, &wanted, ttl).await.expect("claim");
    let kinds: Vec<&str> = got
        .iter()
        .map(|o| match o {
            ClaimOutcome::Claimed(..) => "claimed",
            ClaimOutcome::TenantAtCapacity => "at capacity",
            ClaimOutcome::LeaseHeld => "lease held",
            ClaimOutcome::NotFound => "not found",
            ClaimOutcome::Finished(_) => "finished",
        })
        .collect();
    assert_eq!(kinds, ["at capacity", "at capacity", "claimed", "claimed", "lease held", "not found", "not found"]);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs WHERE status = 'running'").await, 2);

    // Batch work may use all but one slot: with one interactive job still running, it waits.
    let lease = |o: &ClaimOutcome| match o {
        ClaimOutcome::Claimed(_, l) => *l,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(jobs::finish_many(&env.pool, &[succeeded(lease(&got[2]), "i1")]).await.expect("finish"), vec![true]);
    let waiting = jobs::claim_many(&env.pool, &[(b1, t), (b2, t)], ttl).await.expect("claim");
    assert!(matches!(waiting[..], [ClaimOutcome::TenantAtCapacity, ClaimOutcome::TenantAtCapacity]), "{waiting:?}");
    // Once nothing runs, one batch job starts and the other keeps waiting.
    assert_eq!(jobs::finish_many(&env.pool, &[succeeded(lease(&got[3]), "i2")]).await.expect("finish"), vec![true]);
    let again = jobs::claim_many(&env.pool, &[(b1, t), (b2, t)], ttl).await.expect("claim");
    assert!(matches!(again[..], [ClaimOutcome::Claimed(..), ClaimOutcome::TenantAtCapacity]), "{again:?}");
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_submission_answers_every_item_and_runs_only_the_accepted_ones() {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.api.max_batch_jobs = 8;
    let app = TestApp::spawn(&env, settings).await;
    let video = app.upload_clip(sample_clip()).await;
    let others = app
        .http
        .post(app.url("/v1/videos"))
        .bearer_auth(&app.other_key)
        .header("content-type", "video/mp4")
        .body(sample_clip())
        .send()
        .await
        .expect("upload");
    let others: Uuid = others.json::<serde_json::Value>().await.expect("video")["id"].as_str().expect("id").parse().expect("uuid");
    let batch_url = app.url("/v1/jobs:batch");
    let send = |body: serde_json::Value| app.http.post(&batch_url).bearer_auth(&app.key).json(&body).send();

    let items = json!({ "jobs": [
        { "video_id": video, "analyses": ["noop"], "idempotency_key": "first" },
        { "video_id": video, "analyses": ["noop"], "priority": "batch" },
        { "video_id": Uuid::now_v7(), "analyses": ["noop"] },
        { "video_id": video, "analyses": [] },
        { "video_id": others, "analyses": ["noop"] },
        { "video_id": video, "analyses": ["probe"], "idempotency_key": "first" },
        { "video_id": video, "analyses": ["train"] },
    ]});
    let resp = send(items).await.expect("sent");
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.expect("json");
    let statuses: Vec<u64> = body["items"].as_array().expect("items").iter().map(|i| i["status"].as_u64().expect("status")).collect();
    assert_eq!(statuses, [202, 202, 404, 422, 404, 422, 422], "{body}");
    let codes: Vec<&str> = body["items"].as_array().expect("items").iter().filter_map(|i| i["error"]["code"].as_str()).collect();
    assert_eq!(codes, ["not_found", "no_analyses", "not_found", "duplicate_idempotency_key", "analysis_not_allowed"]);
    assert_eq!((body["accepted"].as_u64(), body["replayed"].as_u64(), body["refused"].as_u64()), (Some(2), Some(0), Some(5)));
    let first: Uuid = body["items"][0]["job"]["id"].as_str().expect("id").parse().expect("uuid");
    let second: Uuid = body["items"][1]["job"]["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(body["items"][1]["job"]["priority"], "batch");
    // Only the accepted items were recorded, each with one dispatch message.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 2);

    // Sent again, the keyed item answers its job; with another request under its key, 409.
    let body: serde_json::Value = send(json!({ "jobs": [{ "video_id": video, "analyses": ["noop"], "idempotency_key": "first" }] }))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!((body["items"][0]["status"].as_u64(), body["replayed"].as_u64()), (Some(200), Some(1)), "{body}");
    assert_eq!(body["items"][0]["job"]["id"], first.to_string());
    let body: serde_json::Value = send(json!({ "jobs": [{ "video_id": video, "analyses": ["noop", "probe"], "idempotency_key": "first" }] }))
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!((body["items"][0]["status"].as_u64(), body["items"][0]["error"]["code"].as_str()), (Some(409), Some("idempotency_key_reused")));
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 2);

    // The batch itself: empty, too large, an Idempotency-Key header, no key.
    let problem = |r: reqwest::Response| async move { (r.status().as_u16(), r.json::<serde_json::Value>().await.expect("json")["code"].clone()) };
    assert_eq!(problem(send(json!({ "jobs": [] })).await.expect("sent")).await, (422, json!("no_jobs")));
    let nine: Vec<_> = (0..9).map(|_| json!({ "video_id": video, "analyses": ["noop"] })).collect();
    assert_eq!(problem(send(json!({ "jobs": nine })).await.expect("sent")).await, (422, json!("batch_too_large")));
    let keyed = app.http.post(&batch_url).bearer_auth(&app.key).header("idempotency-key", "k").json(&json!({ "jobs": [] })).send().await.expect("sent");
    assert_eq!(problem(keyed).await, (422, json!("invalid_idempotency_key")));
    let anonymous = app.http.post(&batch_url).json(&json!({ "jobs": [] })).send().await.expect("sent");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 2);

    // The accepted jobs run.
    let worker = reelq_tests::TestWorker::spawn(env.worker_settings()).await;
    for id in [first, second] {
        assert_eq!(app.wait_terminal(id, Duration::from_secs(20)).await["status"], "succeeded");
    }
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submission_wakes_the_relay_of_its_own_process_and_through_postgres_one_elsewhere() {
    let env = TestEnv::new().await;
    // Relays that would otherwise look for new rows once a minute.
    let mut relaying = env.api_settings();
    relaying.api.outbox_poll_ms = 60_000;
    let with_relay = TestApp::spawn(&env, relaying.clone()).await;
    let mut plain = env.api_settings();
    plain.api.run_relay = false;
    let without_relay = TestApp::spawn(&env, plain).await;
    let worker = reelq_tests::TestWorker::spawn(env.worker_settings()).await;
    let video = with_relay.upload_clip(sample_clip()).await;
    // Let the relay reach its idle wait before the submissions.
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Its own process's submission wakes the relay in memory; the other process's, through
    // PostgreSQL. Either way the job runs long before the next poll.
    for app in [&with_relay, &without_relay] {
        let started = std::time::Instant::now();
        let id = app.submit_ok(job(video, "interactive")).await;
        assert_eq!(app.wait_terminal(id, Duration::from_secs(20)).await["status"], "succeeded");
        assert!(started.elapsed() < Duration::from_secs(20), "dispatched by a wake, not by the minute's poll");
    }
    worker.stop().await;
    without_relay.stop().await;
    with_relay.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_submissions_arriving_together_are_inserted_together_and_each_answered_as_if_alone() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let url = app.url("/v1/jobs");
    let send = |key: &str, body: serde_json::Value, idem: Option<&str>| {
        let mut req = app.http.post(&url).bearer_auth(key).json(&body);
        if let Some(k) = idem {
            req = req.header("idempotency-key", k);
        }
        async move {
            let resp = req.send().await.expect("sent");
            let status = resp.status().as_u16();
            let replayed = resp.headers().contains_key("idempotent-replayed");
            (status, replayed, resp.json::<serde_json::Value>().await.expect("json"))
        }
    };
    // All at once: jobs that go in, the same keyed request five times, another tenant naming
    // this tenant's video, and a video that does not exist.
    let mut calls = Vec::new();
    for _ in 0..30 {
        calls.push(send(&app.key, job(video, "interactive"), None));
    }
    for _ in 0..5 {
        calls.push(send(&app.key, job(video, "batch"), Some("same")));
    }
    for _ in 0..5 {
        calls.push(send(&app.other_key, job(video, "interactive"), None));
    }
    for _ in 0..3 {
        calls.push(send(&app.key, job(Uuid::now_v7(), "interactive"), None));
    }
    let answers = futures::future::join_all(calls).await;

    let plain = &answers[..30];
    assert!(plain.iter().all(|(s, replayed, _)| *s == 202 && !replayed), "{plain:?}");
    let ids: std::collections::HashSet<&str> = plain.iter().map(|(_, _, b)| b["id"].as_str().expect("id")).collect();
    assert_eq!(ids.len(), 30);
    let keyed = &answers[30..35];
    assert!(keyed.iter().all(|(s, ..)| *s == 202), "{keyed:?}");
    let replays = keyed.iter().filter(|(_, replayed, _)| *replayed).count();
    assert_eq!(replays, 4, "one creates the job, the others replay it: {keyed:?}");
    let keyed_ids: std::collections::HashSet<&str> = keyed.iter().map(|(_, _, b)| b["id"].as_str().expect("id")).collect();
    assert_eq!(keyed_ids.len(), 1);
    for (status, _, body) in &answers[35..] {
        assert_eq!((*status, body["code"].as_str()), (404, Some("not_found")), "{body}");
    }
    // Exactly the accepted jobs were recorded, each with one dispatch message, and they run.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM jobs").await, 31);
    let worker = reelq_tests::TestWorker::spawn(env.worker_settings()).await;
    for id in ids.iter().chain(&keyed_ids) {
        let id: Uuid = id.parse().expect("uuid");
        assert_eq!(app.wait_terminal(id, Duration::from_secs(30)).await["status"], "succeeded");
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM outbox").await, 0, "every message was relayed once");
    // Some statement carried more than one submission.
    let sizes = reelq_shared::metrics::get().db_batch_size.with_label_values(&["jobs.insert_each"]);
    assert!(sizes.get_sample_sum() > sizes.get_sample_count() as f64, "{} submissions in {} statements", sizes.get_sample_sum(), sizes.get_sample_count());
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
