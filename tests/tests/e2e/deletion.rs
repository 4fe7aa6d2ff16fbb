//! The end of a video's life: a creator deletes a video and nothing made from it is left in
//! storage or PostgreSQL; a video deleted while its job runs stops the job first; retention
//! removes old uploads, outputs and finished jobs; an admin erases a tenant's data.

use std::time::Duration;

use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use uuid::Uuid;

use reelq_shared::db::{admin, tenants};
use reelq_shared::storage::Store;
use reelq_tests::{TestApp, TestEnv, TestWorker, count, make_clip, sample_clip};

fn track() -> Vec<u8> {
    make_clip(&["-f", "lavfi", "-i", "sine=frequency=880:sample_rate=44100:duration=3", "-c:a", "libmp3lame", "-b:a", "96k"], "mp3")
}

async fn upload_track(app: &TestApp, key: &str) -> Uuid {
    let resp = app.http.post(app.url("/v1/videos")).bearer_auth(key).header("content-type", "audio/mpeg").body(track()).send().await.expect("sent");
    assert_eq!(resp.status(), 201);
    let v: Value = resp.json().await.expect("json");
    v["id"].as_str().expect("id").parse().expect("uuid")
}

async fn delete(app: &TestApp, key: &str, video: Uuid) -> reqwest::Response {
    app.http.delete(app.url(&format!("/v1/videos/{video}"))).bearer_auth(key).send().await.expect("sent")
}

async fn rows(env: &TestEnv, sql: &str, id: Uuid) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned())).bind(id).fetch_one(&env.pool).await.expect("count")
}

async fn store_of(env: &TestEnv) -> Store {
    Store::new(&env.storage)
}

/// The api's state with these settings, for running sweeps by hand.
async fn state_of(settings: reelq_api::Settings) -> reelq_api::state::AppState {
    reelq_api::Application::build(settings).await.expect("builds").state().clone()
}

/// A training embedding of a job's feedback, as the trainer writes one.
async fn embed_feedback(env: &TestEnv, job: Uuid) {
    sqlx::query("INSERT INTO example_embeddings (source, item_id, kind, model, vector) VALUES ('feedback', $1, 'text', 'minilm', '{0.1,0.2}')")
        .bind(job.to_string())
        .execute(&env.pool)
        .await
        .expect("embedding");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_video_leaves_no_object_row_or_vector_and_only_its_owner_can() {
    // Arrange: a video with a mux job (an output in storage) and a probe job with feedback and
    // a training embedding of it; a second video that must be untouched.
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let store = store_of(&env).await;
    let video = app.upload_clip(sample_clip()).await;
    let other_video = app.upload_clip(sample_clip()).await;
    let track = upload_track(&app, &app.key).await;
    let mux = app.submit_ok(json!({ "video_id": video, "analyses": ["mux"], "options": { "mux": { "audio_id": track } } })).await;
    let probe = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    let kept = app.submit_ok(json!({ "video_id": other_video, "analyses": ["probe"] })).await;
    for job in [mux, probe, kept] {
        assert_eq!(app.wait_terminal(job, Duration::from_secs(60)).await["status"], "succeeded");
    }
    let fb = app.http.post(app.url(&format!("/v1/jobs/{probe}/feedback"))).bearer_auth(&app.key).json(&json!({ "hashtags": ["#legday"] })).send().await;
    assert_eq!(fb.expect("sent").status(), 200);
    embed_feedback(&env, probe).await;
    embed_feedback(&env, kept).await;
    let upload_key = format!("uploads/{}/{video}", app.tenant_id);
    let output_key = format!("outputs/{}/{mux}/mux.mp4", app.tenant_id);
    assert!(store.size(&upload_key).await.expect("head").is_some());
    assert!(store.size(&output_key).await.expect("head").is_some());

    // Another tenant's delete is a 404 and removes nothing.
    let theirs = delete(&app, &app.other_key, video).await;
    assert_eq!(theirs.status(), 404);
    assert_eq!(rows(&env, "SELECT count(*) FROM videos WHERE id = $1", video).await, 1);
    assert!(store.size(&upload_key).await.expect("head").is_some());

    // Act
    let resp = delete(&app, &app.key, video).await;

    // Assert: the answer says what went, and it is gone from storage and PostgreSQL.
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["id"], video.to_string());
    assert_eq!(body["jobs_removed"], 2);
    assert_eq!(body["jobs_cancelled"], 0);
    assert_eq!(body["objects"], 2);
    assert_eq!(body["complete"], true, "{body}");
    assert_eq!(store.size(&upload_key).await.expect("head"), None, "the upload is gone");
    assert_eq!(store.size(&output_key).await.expect("head"), None, "the mux output is gone");
    assert_eq!(rows(&env, "SELECT count(*) FROM videos WHERE id = $1", video).await, 0);
    for job in [mux, probe] {
        for table in ["jobs WHERE id", "results WHERE job_id", "feedback WHERE job_id", "webhook_deliveries WHERE job_id"] {
            assert_eq!(rows(&env, &format!("SELECT count(*) FROM {table} = $1"), job).await, 0, "{table} of {job}");
        }
        assert_eq!(rows(&env, "SELECT count(*) FROM example_embeddings WHERE item_id = $1::text", job).await, 0, "vectors of {job}");
        let get = app.http.get(app.url(&format!("/v1/jobs/{job}"))).bearer_auth(&app.key).send().await.expect("sent");
        assert_eq!(get.status(), 404);
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM object_deletions").await, 0, "nothing is owed");
    let get = app.http.get(app.url(&format!("/v1/videos/{video}"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(get.status(), 404);
    assert_eq!(delete(&app, &app.key, video).await.status(), 404, "a second delete finds nothing");

    // The other video, its job, its vector and the track (an upload of its own) stay.
    assert!(store.size(&format!("uploads/{}/{other_video}", app.tenant_id)).await.expect("head").is_some());
    assert!(store.size(&format!("uploads/{}/{track}", app.tenant_id)).await.expect("head").is_some());
    assert_eq!(rows(&env, "SELECT count(*) FROM results WHERE job_id = $1", kept).await, 1);
    assert_eq!(rows(&env, "SELECT count(*) FROM example_embeddings WHERE item_id = $1::text", kept).await, 1);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deleting_a_video_while_its_job_runs_cancels_the_job_and_removes_late_writes() {
    // Arrange: a job that runs for a while.
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.retention.sweep_interval_secs = 3_600;
    let app = TestApp::spawn(&env, settings).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let store = store_of(&env).await;
    let video = app.upload_clip(sample_clip()).await;
    let job = app.submit_ok(json!({ "video_id": video, "analyses": ["noop"], "options": { "noop_ms": 30_000 } })).await;
    app.wait_for(job, Duration::from_secs(30), |j| j["status"] == "running").await;

    // Act
    let resp = delete(&app, &app.key, video).await;

    // Assert: the job was stopped, and storage is clean but the deletion waits for the lease.
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["jobs_cancelled"], 1);
    assert_eq!(body["complete"], false, "a running job's worker could still write: {body}");
    let upload_key = format!("uploads/{}/{video}", app.tenant_id);
    assert_eq!(store.size(&upload_key).await.expect("head"), None);
    let settle: f64 = sqlx::query_scalar("SELECT extract(epoch FROM settle_at - now())::float8 FROM object_deletions")
        .fetch_one(&env.pool)
        .await
        .expect("one deletion owed");
    assert!(settle > 30.0, "settles after the job's lease and a grace period: {settle} s");

    // The worker lets the job go and takes the next one.
    let next_video = app.upload_clip(sample_clip()).await;
    let next = app.submit_ok(json!({ "video_id": next_video, "analyses": ["probe"] })).await;
    assert_eq!(app.wait_terminal(next, Duration::from_secs(60)).await["status"], "succeeded");
    assert_eq!(rows(&env, "SELECT count(*) FROM results WHERE job_id = $1", job).await, 0);

    // Something written to the key late (a worker's output, a presigned PUT) is removed by the
    // sweep once the deletion settles, and then nothing is owed.
    store.put_bytes(&upload_key, b"late".to_vec(), "video/mp4").await.expect("late write");
    let state = state_of(app_settings(&env)).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let early = reelq_api::retention::sweep(&state, &stop).await.expect("sweep");
    assert_eq!(early.deletions, 0, "not before it settles");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM object_deletions").await, 1);
    sqlx::query("UPDATE object_deletions SET settle_at = now(), next_at = now()").execute(&env.pool).await.expect("settle");
    let swept = reelq_api::retention::sweep(&state, &stop).await.expect("sweep");
    assert_eq!(swept.deletions, 1);
    assert_eq!(store.size(&upload_key).await.expect("head"), None, "the late write is gone");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM object_deletions").await, 0);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

fn app_settings(env: &TestEnv) -> reelq_api::Settings {
    let mut s = env.api_settings();
    s.retention.sweep_batch = 2;
    s.retention.finished_job_days = 60;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retention_removes_old_uploads_and_outputs_and_then_old_jobs_but_keeps_results_and_feedback() {
    // Arrange: two videos and a track, a mux job and a probe job with feedback, all finished.
    let env = TestEnv::new().await;
    let mut settings = app_settings(&env);
    settings.retention.sweep_interval_secs = 3_600;
    let app = TestApp::spawn(&env, settings.clone()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let store = store_of(&env).await;
    let old = app.upload_clip(sample_clip()).await;
    let fresh = app.upload_clip(sample_clip()).await;
    let track = upload_track(&app, &app.key).await;
    let mux = app.submit_ok(json!({ "video_id": old, "analyses": ["mux"], "options": { "mux": { "audio_id": track } } })).await;
    let probe = app.submit_ok(json!({ "video_id": old, "analyses": ["probe"] })).await;
    for job in [mux, probe] {
        assert_eq!(app.wait_terminal(job, Duration::from_secs(60)).await["status"], "succeeded");
    }
    let fb = app.http.post(app.url(&format!("/v1/jobs/{probe}/feedback"))).bearer_auth(&app.key).json(&json!({ "hashtags": ["#gym"] })).send().await;
    assert_eq!(fb.expect("sent").status(), 200);
    worker.stop().await;
    let state = state_of(settings).await;
    let stop = tokio_util::sync::CancellationToken::new();

    // Nothing young is removed.
    assert_eq!(reelq_api::retention::sweep(&state, &stop).await.expect("sweep"), Default::default());

    // Act: the old video, the track and the mux result are 31 days old.
    sqlx::query("UPDATE videos SET stored_at = now() - interval '31 days' WHERE id = ANY ($1)").bind([old, track]).execute(&env.pool).await.expect("age");
    sqlx::query("UPDATE results SET created_at = now() - interval '31 days'").execute(&env.pool).await.expect("age");
    let swept = reelq_api::retention::sweep(&state, &stop).await.expect("sweep");

    // Assert: bytes gone, rows and results kept and marked.
    assert_eq!((swept.uploads, swept.outputs, swept.jobs), (2, 1, 0), "{swept:?}");
    for id in [old, track] {
        assert_eq!(store.size(&format!("uploads/{}/{id}", app.tenant_id)).await.expect("head"), None);
    }
    assert_eq!(store.size(&format!("outputs/{}/{mux}/mux.mp4", app.tenant_id)).await.expect("head"), None);
    assert!(store.size(&format!("uploads/{}/{fresh}", app.tenant_id)).await.expect("head").is_some(), "a young upload stays");
    let v: Value = app.http.get(app.url(&format!("/v1/videos/{old}"))).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    assert_eq!(v["status"], "expired");
    assert!(v["expired_at"].is_string(), "{v}");
    let complete = app.http.post(app.url(&format!("/v1/videos/{old}/complete"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(complete.status(), 410, "an expired upload cannot be completed again");
    let again = app.submit(json!({ "video_id": old, "analyses": ["probe"] })).await;
    assert_eq!(again.status(), 410);
    assert_eq!(again.json::<Value>().await.expect("json")["code"], "video_expired");
    let out = app.http.get(app.url(&format!("/v1/jobs/{mux}/output"))).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(out.status(), 410);
    assert_eq!(out.json::<Value>().await.expect("json")["code"], "output_expired");
    let job = app.job(mux).await;
    let payload = &job["results"]["mux"]["payload"];
    assert!(payload["expired_at"].is_string() && payload.get("url").is_none(), "{payload}");
    assert!(app.job(probe).await["results"]["probe"]["payload"].is_object(), "results stay");

    // Jobs made and finished 61 days ago go, except the one with feedback; today's jobs stay.
    let long_ago = chrono::Utc::now() - chrono::Duration::days(61);
    let stamp = uuid::Timestamp::from_unix(uuid::NoContext, long_ago.timestamp() as u64, 0);
    let (plain, liked) = (Uuid::new_v7(stamp), Uuid::new_v7(stamp));
    for id in [plain, liked] {
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, video_id, status, analyses, priority, max_attempts, created_at, finished_at)
             VALUES ($1, $2, $3, 'succeeded', '{probe}', 'batch', 3, $4, $4)",
        )
        .bind(id)
        .bind(app.tenant_id)
        .bind(fresh)
        .bind(long_ago)
        .execute(&env.pool)
        .await
        .expect("an old job");
        sqlx::query("INSERT INTO results (job_id, analysis, payload, attempt) VALUES ($1, 'probe', '{}', 1)")
            .bind(id)
            .execute(&env.pool)
            .await
            .expect("result");
    }
    sqlx::query("INSERT INTO feedback (job_id, tenant_id, hashtags) VALUES ($1, $2, '{#gym}')")
        .bind(liked)
        .bind(app.tenant_id)
        .execute(&env.pool)
        .await
        .expect("feedback");
    let swept = reelq_api::retention::sweep(&state, &stop).await.expect("sweep");
    assert_eq!(swept.jobs, 1, "{swept:?}");
    assert_eq!(rows(&env, "SELECT count(*) FROM jobs WHERE id = $1", plain).await, 0);
    assert_eq!(rows(&env, "SELECT count(*) FROM results WHERE job_id = $1", plain).await, 0);
    assert_eq!(rows(&env, "SELECT count(*) FROM jobs WHERE id = $1", liked).await, 1, "feedback keeps its job");
    for job in [mux, probe] {
        assert_eq!(rows(&env, "SELECT count(*) FROM jobs WHERE id = $1", job).await, 1, "today's jobs stay");
    }
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_erases_one_tenants_data_and_no_other() {
    // Arrange: both tenants have uploads and jobs.
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let worker = TestWorker::spawn(env.worker_settings()).await;
    let store = store_of(&env).await;
    let ops = tenants::upsert(&env.pool, "ops", None).await.expect("tenant");
    let admin_key = tenants::create_key(&env.pool, ops.id, "ops").await.expect("key");
    assert!(admin::set_admin(&env.pool, &admin_key.hash, true).await.expect("flag"));
    let admin_key = admin_key.key.expose_secret().to_owned();
    let mine = app.upload_clip(sample_clip()).await;
    let job = app.submit_ok(json!({ "video_id": mine, "analyses": ["probe"] })).await;
    let theirs = app.http.post(app.url("/v1/videos")).bearer_auth(&app.other_key).header("content-type", "video/mp4").body(sample_clip()).send().await;
    let theirs: Value = theirs.expect("sent").json().await.expect("json");
    let theirs: Uuid = theirs["id"].as_str().expect("id").parse().expect("uuid");
    assert_eq!(app.wait_terminal(job, Duration::from_secs(60)).await["status"], "succeeded");
    let erase = |key: &str, tenant: Uuid| app.http.delete(app.url(&format!("/v1/admin/tenants/{tenant}/data"))).bearer_auth(key.to_owned()).send();

    // A tenant's own key is not enough, and an unknown tenant is a 404.
    assert_eq!(erase(&app.key, app.tenant_id).await.expect("sent").status(), 403);
    assert_eq!(erase(&admin_key, Uuid::now_v7()).await.expect("sent").status(), 404);

    // Act
    let resp = erase(&admin_key, app.tenant_id).await.expect("sent");

    // Assert
    assert_eq!(resp.status(), 202);
    let body: Value = resp.json().await.expect("json");
    assert_eq!((body["videos_removed"].as_i64(), body["jobs_removed"].as_i64()), (Some(1), Some(1)), "{body}");
    assert_eq!(rows(&env, "SELECT count(*) FROM videos WHERE tenant_id = $1", app.tenant_id).await, 0);
    assert_eq!(rows(&env, "SELECT count(*) FROM jobs WHERE tenant_id = $1", app.tenant_id).await, 0);
    let key = format!("uploads/{}/{mine}", app.tenant_id);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.size(&key).await.expect("head").is_some() {
        assert!(std::time::Instant::now() < deadline, "the erased tenant's objects are still there");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(store.list_keys(&format!("uploads/{}/", app.tenant_id)).await.expect("list").is_empty());
    // The other tenant keeps everything, and the erased tenant's key still works.
    assert!(store.size(&format!("uploads/{}/{theirs}", tenant_of(&env, theirs).await)).await.expect("head").is_some());
    let list = app.http.get(app.url("/v1/jobs")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(list.status(), 200);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

async fn tenant_of(env: &TestEnv, video: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT tenant_id FROM videos WHERE id = $1").bind(video).fetch_one(&env.pool).await.expect("video")
}
