//! Dead letters an operator can act on: jobs that used up their attempts on a transient fault
//! are listed from PostgreSQL and, once the cause is fixed, replayed through the outbox to a
//! real worker, keeping the history of the attempts before.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use uuid::Uuid;

use reelq_shared::db::{admin, tenants};
use reelq_tests::{TestApp, TestEnv, TestWorker, count, sample_clip};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_lettered_jobs_are_listed_and_replayed_after_the_cause_is_fixed() {
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let ops = tenants::upsert(&env.pool, "ops", None).await.expect("tenant");
    let admin_key = tenants::create_key(&env.pool, ops.id, "ops").await.expect("key");
    assert!(admin::set_admin(&env.pool, &admin_key.hash, true).await.expect("flag"));
    let admin_key = admin_key.key.expose_secret().to_owned();
    let as_admin = |req: reqwest::RequestBuilder| req.bearer_auth(&admin_key).send();

    // A worker whose scratch folder cannot be made (its parent is a regular file): every
    // attempt fails with a transient fault while PostgreSQL, storage and the broker are fine.
    let blocker = env.scratch.path().join("not-a-folder");
    std::fs::write(&blocker, b"x").expect("file");
    let mut broken = env.worker_settings();
    broken.worker.scratch_dir = Some(blocker.join("scratch").display().to_string());
    let worker = TestWorker::spawn(broken).await;
    let video = app.upload_clip(sample_clip()).await;
    let first = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    let second = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    for id in [first, second] {
        let job = app.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "failed", "{job:#}");
        assert_eq!(job["error"]["code"], "retries_exhausted", "{job:#}");
        assert_eq!(job["attempts"], 3, "{job:#}");
    }
    worker.stop().await;

    // Tenant keys may not see or replay dead letters.
    let denied = app.http.get(app.url("/v1/admin/dead-letters")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(denied.status(), 403);
    let denied = app.http.post(app.url(&format!("/v1/admin/jobs/{first}/replay"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(denied.status(), 403);
    assert_eq!(app.job(first).await["status"], "failed", "a refused replay changes nothing");

    // The listing comes from PostgreSQL, newest failure first, with the last fault.
    let page: Value = as_admin(app.http.get(app.url("/v1/admin/dead-letters"))).await.expect("sent").json().await.expect("json");
    let listed: Vec<&str> = page["dead_letters"].as_array().expect("array").iter().filter_map(|d| d["job_id"].as_str()).collect();
    assert_eq!(listed.len(), 2, "{page:#}");
    assert!(listed.contains(&first.to_string().as_str()) && listed.contains(&second.to_string().as_str()), "{page:#}");
    let entry = &page["dead_letters"][0];
    assert_eq!(entry["tenant"], "acme");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(entry["replays"], 0);
    assert!(entry["error_message"].as_str().is_some_and(|m| m.contains("scratch")), "{entry:#}");
    let one: Value = as_admin(app.http.get(app.url("/v1/admin/dead-letters?limit=1"))).await.expect("sent").json().await.expect("json");
    assert_eq!(one["dead_letters"].as_array().map(Vec::len), Some(1));
    let cursor = one["next_before"].as_str().expect("a second page");
    let rest: Value =
        as_admin(app.http.get(app.url(&format!("/v1/admin/dead-letters?limit=1&before={cursor}")))).await.expect("sent").json().await.expect("json");
    assert_eq!(rest["dead_letters"].as_array().map(Vec::len), Some(1));
    assert_ne!(rest["dead_letters"][0]["job_id"], one["dead_letters"][0]["job_id"]);
    assert!(rest["next_before"].is_null());

    // Unknown jobs are 404; jobs that did not dead-letter are 409.
    let missing = as_admin(app.http.post(app.url(&format!("/v1/admin/jobs/{}/replay", Uuid::now_v7())))).await.expect("sent");
    assert_eq!(missing.status(), 404);
    let fine = app.submit_ok(json!({ "video_id": video, "analyses": ["noop"] })).await;
    let refused = as_admin(app.http.post(app.url(&format!("/v1/admin/jobs/{fine}/replay")))).await.expect("sent");
    assert_eq!(refused.status(), 409);
    assert_eq!(refused.headers()["content-type"], "application/problem+json");
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["code"], "not_dead_lettered");

    // The cause is fixed: a healthy worker. One job is replayed alone, the other with --all.
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let replayed = as_admin(app.http.post(app.url(&format!("/v1/admin/jobs/{first}/replay")))).await.expect("sent");
    assert_eq!(replayed.status(), 202);
    let replayed: Value = replayed.json().await.expect("json");
    assert_eq!(replayed["replays"].as_array().map(Vec::len), Some(1), "{replayed:#}");
    let again = as_admin(app.http.post(app.url(&format!("/v1/admin/jobs/{first}/replay")))).await.expect("sent");
    assert_eq!(again.status(), 409, "a replayed job is no longer dead-lettered");
    let all: Value = as_admin(app.http.post(app.url("/v1/admin/dead-letters/replay"))).await.expect("sent").json().await.expect("json");
    assert_eq!(all["replayed"], json!([second]), "{all:#}");
    assert_eq!(all["more"], false);

    for id in [first, second] {
        let job = app.wait_terminal(id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded", "{job:#}");
        assert_eq!(job["attempts"], 4, "the three dead attempts and the replayed one");
        assert!(job["results"]["probe"]["payload"]["video"]["width"].as_u64().is_some(), "{job:#}");
        // The history keeps how the earlier round ended.
        let history: Value = as_admin(app.http.get(app.url(&format!("/v1/admin/jobs/{id}/replays")))).await.expect("sent").json().await.expect("json");
        assert_eq!(history["job"]["status"], "succeeded");
        let replays = history["replays"].as_array().expect("array");
        assert_eq!(replays.len(), 1, "{history:#}");
        assert_eq!(replays[0]["attempts_before"], 3);
        assert_eq!(replays[0]["max_attempts"], 3);
        assert_eq!(replays[0]["error_code"], "retries_exhausted");
        assert!(replays[0]["error_message"].as_str().is_some_and(|m| m.contains("scratch")), "{history:#}");
        assert_eq!(replays[0]["replayed_by"], admin_key.split('_').nth(1).expect("prefix"));
    }
    let page: Value = as_admin(app.http.get(app.url("/v1/admin/dead-letters"))).await.expect("sent").json().await.expect("json");
    assert_eq!(page["dead_letters"], json!([]), "nothing is dead-lettered any more");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM job_replays").await, 2);
    let metrics = app.http.get(app.url("/metrics")).send().await.expect("sent").text().await.expect("text");
    assert!(
        metrics.lines().any(|l| l.strip_prefix("reelq_job_replays_total ").and_then(|v| v.trim().parse::<f64>().ok()).is_some_and(|v| v >= 2.0)),
        "replays are counted"
    );
    assert_eq!(count(&env.pool, "SELECT count(*) FROM outbox").await, 0, "the replays went out through the outbox");
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
