//! The training loop end to end: the scheduler pulls the stub's synthetic set (text and
//! hashtags related in known ways), a `train` schedule has a worker embed, train, evaluate and
//! promote; a following job's hashtags name the new version and rank a held-out video's true
//! tags in the top five; a deliberately worse model is not promoted; a rollback takes effect
//! in the running worker.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use reelq_scheduler::settings::{DumpFormat, ScheduleSettings, SchedulerSettings, SourceKind, TikTokSettings};
use reelq_scheduler::tiktok::stub::{StubConfig, StubServer, VOCABULARY};
use reelq_shared::db::{admin, schedules, tenants};
use reelq_shared::training::TrainingRequest;
use reelq_tests::{TestApp, TestEnv, TestWorker, count, make_clip};

fn schedule(source: SourceKind, training: TrainingRequest) -> ScheduleSettings {
    ScheduleSettings {
        // Never due by itself (Feb 30th): the test triggers every run.
        cron: "0 0 30 2 *".into(),
        source,
        enabled: true,
        hashtags: if source == SourceKind::Tiktok { VOCABULARY.iter().map(|t| (*t).to_owned()).collect() } else { Vec::new() },
        regions: Vec::new(),
        days_back: 20,
        path: None,
        format: DumpFormat::Auto,
        training,
    }
}

fn scheduler_settings(env: &TestEnv, stub: &StubServer) -> reelq_scheduler::Settings {
    let mut database = env.database.clone();
    database.run_migrations = false;
    let good = TrainingRequest { min_label_count: 3, ..TrainingRequest::default() };
    let schedules = [
        ("pull", schedule(SourceKind::Tiktok, TrainingRequest::default())),
        ("retrain", schedule(SourceKind::Train, good.clone())),
        // Same data and settings, but any candidate at least as good as the promoted one ships.
        ("retrain-any", schedule(SourceKind::Train, TrainingRequest { margin: 0.0, ..good.clone() })),
        // Deliberately worse: no training passes leaves label frequencies as the only signal.
        ("retrain-bad", schedule(SourceKind::Train, TrainingRequest { epochs: 0, margin: 0.0, ..good })),
    ];
    let mut scheduler = SchedulerSettings {
        health_bind: "127.0.0.1:0".into(),
        poll_interval_ms: 50,
        schedules: schedules.into_iter().map(|(n, s)| (n.to_owned(), s)).collect(),
        ..SchedulerSettings::default()
    };
    scheduler.set_tiktok(TikTokSettings {
        base_url: stub.base_url(),
        client_key: SecretString::from("stub-key"),
        client_secret: SecretString::from("stub-secret"),
        max_count: 100,
        request_timeout_ms: 5_000,
        backoff_base_ms: 10,
        ..TikTokSettings::default()
    });
    reelq_scheduler::Settings {
        database,
        amqp: env.amqp.clone(),
        storage: env.storage.clone(),
        webhooks: env.webhooks.clone(),
        telemetry: Default::default(),
        scheduler,
    }
}

struct Ops<'a> {
    app: &'a TestApp,
    key: String,
}

impl<'a> Ops<'a> {
    /// An admin key of the main tenant, once the scheduler has registered `schedule`.
    async fn admin(env: &TestEnv, app: &'a TestApp, schedule: &str) -> Self {
        let tenant = tenants::by_name(&env.pool, "acme").await.expect("query").expect("tenant");
        let admin_key = tenants::create_key(&env.pool, tenant.id, "ml").await.expect("key");
        assert!(admin::set_admin(&env.pool, &admin_key.hash, true).await.expect("flag"));
        let started = Instant::now();
        while !schedules::exists(&env.pool, schedule).await.expect("exists") {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ops { app, key: secrecy::ExposeSecret::expose_secret(&admin_key.key).to_owned() }
    }

    async fn run(&self, schedule: &str) -> Value {
        let resp =
            self.app.http.post(self.app.url("/v1/admin/runs")).bearer_auth(&self.key).json(&json!({ "schedule": schedule })).send().await.expect("sent");
        assert_eq!(resp.status(), 202, "trigger {schedule}: {}", resp.text().await.unwrap_or_default());
        let id = resp.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
        let started = Instant::now();
        loop {
            let page: Value = self
                .app
                .http
                .get(self.app.url(&format!("/v1/admin/runs?schedule={schedule}")))
                .bearer_auth(&self.key)
                .send()
                .await
                .expect("sent")
                .json()
                .await
                .expect("json");
            let r = page["runs"].as_array().expect("runs").iter().find(|r| r["id"] == id.as_str()).cloned().expect("listed");
            if matches!(r["status"].as_str(), Some("succeeded" | "failed" | "partial")) {
                return r;
            }
            assert!(started.elapsed() < Duration::from_secs(300), "run of {schedule} did not end: {r}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn models(&self) -> Value {
        let resp = self.app.http.get(self.app.url("/v1/models?model=hashtags")).bearer_auth(&self.app.key).send().await.expect("sent");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }
}

fn tags_of(job: &Value, n: usize) -> Vec<String> {
    job["results"]["hashtags"]["payload"]["suggestions"]
        .as_array()
        .expect("suggestions")
        .iter()
        .take(n)
        .map(|s| s["tag"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scheduler_pulls_trains_and_promotes_and_jobs_follow_promotions_and_rollbacks() {
    // Arrange: the stub, a scheduler, a worker that checks the registry on every job, the api.
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { videos: 600, days: 14, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let scheduler = reelq_scheduler::Scheduler::build(scheduler_settings(&env, &stub)).await.expect("scheduler builds");
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run_until_stopped(stop.clone()));
    let mut worker_settings = env.worker_settings();
    worker_settings.inference.registry_refresh_ms = 0;
    let worker = TestWorker::spawn(worker_settings).await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let ops = Ops::admin(&env, &app, "retrain-bad").await;
    // Clients cannot enqueue training themselves.
    let clip = tokio::task::spawn_blocking(|| {
        make_clip(
            &["-f", "lavfi", "-i", "color=white:s=320x240:r=10:d=2", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
            "mp4",
        )
    })
    .await
    .expect("clip");
    let video = app.upload_clip(clip).await;
    let refused = app.submit(json!({ "video_id": video, "analyses": ["train"] })).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(refused.json::<Value>().await.expect("json")["code"], "analysis_not_allowed");

    // Act 1: pull, then train.
    let pulled = ops.run("pull").await;
    assert_eq!(pulled["status"], "succeeded", "{pulled}");
    assert_eq!(pulled["videos"].as_i64(), Some(600));
    let trained = ops.run("retrain").await;
    assert_eq!(trained["status"], "succeeded", "{trained}");

    // The first version is promoted, with its figures and data window.
    let listing = ops.models().await;
    let v1 = listing["promoted"]["hashtags"].as_str().expect("a promoted classifier").to_owned();
    let first = listing["versions"].as_array().expect("versions").iter().find(|v| v["version"] == v1.as_str()).cloned().expect("listed");
    assert_eq!(first["status"], "promoted");
    assert!(
        first["decision"].as_str().is_some_and(|d| d.contains("beats ranking by label frequency")),
        "the first version beats the trivial ranking: {first}"
    );
    let map = first["metrics"]["map"].as_f64().expect("mAP");
    assert!(map > 0.6, "held-out mAP of a model over topical text: {first}");
    assert!(first["metrics"]["p_at_5"].as_f64().is_some() && first["metrics"]["r_at_5"].as_f64().is_some());
    assert!(first["data_from"].as_str().is_some() && first["data_to"].as_str().is_some());
    assert_eq!(first["train_examples"].as_i64().unwrap_or(0) + first["eval_examples"].as_i64().unwrap_or(0), 600);
    let all: Value = app.http.get(app.url("/v1/models")).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    let virality = all["promoted"]["virality"].as_str().expect("a promoted regressor");
    let reg =
        all["versions"].as_array().expect("versions").iter().find(|v| v["model"] == "virality" && v["version"] == virality).cloned().expect("listed");
    assert!(reg["metrics"]["spearman"].as_f64().is_some_and(|s| s > 0.2), "views follow topics, so rank correlation is clearly positive: {reg}");

    // The hashtag ranker was refitted on the pulled posts (descriptions without their
    // hashtags, labelled by them) from the shipped weights, and judged beside them on the newest.
    let rankers: Value = app.http.get(app.url("/v1/models?model=ranker")).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    let refit = rankers["versions"].as_array().expect("versions").first().cloned().expect("a ranker version");
    assert_eq!(refit["model"], "ranker");
    assert_eq!(refit["train_examples"].as_i64().unwrap_or(0) + refit["eval_examples"].as_i64().unwrap_or(0), 600, "{refit}");
    let (p5, was) = (refit["metrics"]["p_at_5"].as_f64().expect("P@5"), refit["baseline_metrics"]["p_at_5"].as_f64().expect("baseline P@5"));
    // The figures are reported to three decimals: the margin holds to within their rounding.
    let rounding = 0.001;
    let ranker_in_use = match refit["status"].as_str() {
        Some("promoted") => {
            assert!(p5 >= was + 0.01 - rounding, "promoted only when it beats the weights in use by the margin: {refit}");
            assert_eq!(rankers["promoted"]["ranker"], refit["version"]);
            Some(refit["version"].as_str().expect("version").to_owned())
        }
        Some("rejected") => {
            assert!(p5 < was + 0.01 + rounding, "{refit}");
            assert!(rankers["promoted"]["ranker"].is_null(), "{rankers}");
            None
        }
        other => panic!("a ranker version is promoted or rejected once judged, not {other:?}: {refit}"),
    };
    assert!(refit["decision"].as_str().is_some_and(|d| d.contains("held-out P@5")), "{refit}");

    // A job on the newest video's text (held out: the split keeps the newest for evaluation)
    // names the new version and ranks the video's true tags in its top five.
    let newest = stub.dataset().iter().max_by_key(|v| v.create_time).expect("dataset").clone();
    let caption: String = newest.description.split_whitespace().filter(|w| !w.starts_with('#')).collect::<Vec<_>>().join(" ");
    let job = app.submit_ok(json!({ "video_id": video, "analyses": ["hashtags", "virality"], "options": { "caption": caption } })).await;
    let job = app.wait_terminal(job, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    assert_eq!(job["results"]["hashtags"]["payload"]["classifier_version"], v1.as_str());
    let ranker_ref = job["results"]["hashtags"]["model_versions"].as_array().expect("models").iter().find(|m| m["name"] == "hashtag-ranker").cloned();
    let ranker_ref = ranker_ref.expect("the ranker is named");
    if let Some(v) = &ranker_in_use {
        assert_eq!(ranker_ref["version"], v.as_str(), "the worker follows the promoted ranker");
    } else {
        assert_ne!(ranker_ref["version"], refit["version"], "a rejected ranker is not used");
    }
    // Its topical tags, that is: the stub adds the generic #fyp at random, and suggestions
    // keep generic tags out of slots a specific tag wants (`hashtags.max_generic`).
    let top = tags_of(&job, 5);
    let topical: Vec<&String> = newest.hashtags.iter().filter(|t| t.as_str() != "fyp").collect();
    assert!(!topical.is_empty());
    let suggestions = job["results"]["hashtags"]["payload"]["suggestions"].as_array().expect("suggestions").clone();
    for tag in topical {
        let tag = format!("#{tag}");
        assert!(top.contains(&tag), "{tag} of {:?} ({caption}) not in the top five {top:?}", newest.hashtags);
        let s = suggestions.iter().find(|s| s["tag"] == tag.as_str()).expect("suggested");
        assert!(s["sources"].as_array().expect("sources").iter().any(|x| x == "classifier"), "{tag} has no classifier evidence: {s}");
    }
    let estimate = &job["results"]["virality"]["payload"]["estimate"];
    let pct = estimate["percentile"].as_f64().expect("percentile");
    assert!((0.0..=100.0).contains(&pct), "{estimate}");
    let views = &estimate["expected_views"];
    assert!(views["low"].as_i64() <= views["expected"].as_i64() && views["expected"].as_i64() <= views["high"].as_i64(), "{estimate}");
    assert_eq!(job["results"]["virality"]["payload"]["model_version"], virality);

    // Act 2: a deliberately worse model is measured on the same held-out videos and rejected.
    let bad = ops.run("retrain-bad").await;
    assert_eq!(bad["status"], "succeeded", "the job succeeds; the model is what fails: {bad}");
    let listing = ops.models().await;
    assert_eq!(listing["promoted"]["hashtags"], v1.as_str(), "the worse model must not replace the promoted one");
    let rejected = listing["versions"].as_array().expect("versions").iter().find(|v| v["status"] == "rejected").cloned().expect("a rejected version");
    assert_eq!(rejected["baseline_version"], v1.as_str());
    assert!(rejected["metrics"]["map"].as_f64() < rejected["baseline_metrics"]["map"].as_f64(), "{rejected}");

    // Act 3: an equally good model ships (margin 0), then a rollback restores the first.
    let again = ops.run("retrain-any").await;
    assert_eq!(again["status"], "succeeded", "{again}");
    let v2 = ops.models().await["promoted"]["hashtags"].as_str().expect("promoted").to_owned();
    assert_ne!(v2, v1);
    let job = app.submit_ok(json!({ "video_id": video, "analyses": ["hashtags"], "options": { "caption": caption } })).await;
    let job = app.wait_terminal(job, Duration::from_secs(120)).await;
    assert_eq!(job["results"]["hashtags"]["payload"]["classifier_version"], v2.as_str(), "the running worker picked up the promotion");

    let tenant_rollback = app.http.post(app.url("/v1/admin/models/hashtags/rollback")).bearer_auth(&app.key).json(&json!({})).send().await.expect("sent");
    assert_eq!(tenant_rollback.status(), 403);
    let rolled = app.http.post(app.url("/v1/admin/models/hashtags/rollback")).bearer_auth(&ops.key).json(&json!({})).send().await.expect("sent");
    assert_eq!(rolled.status(), 200);
    assert_eq!(rolled.json::<Value>().await.expect("json"), json!({ "from": v2, "to": v1 }));
    let listing = ops.models().await;
    assert_eq!(listing["promoted"]["hashtags"], v1.as_str());
    let job = app.submit_ok(json!({ "video_id": video, "analyses": ["hashtags"], "options": { "caption": caption } })).await;
    let job = app.wait_terminal(job, Duration::from_secs(120)).await;
    assert_eq!(job["results"]["hashtags"]["payload"]["classifier_version"], v1.as_str(), "the rollback took effect without a restart");
    let unknown = app.http.post(app.url("/v1/admin/models/nope/rollback")).bearer_auth(&ops.key).json(&json!({})).send().await.expect("sent");
    assert_eq!(unknown.status(), 404);

    // Feedback becomes a labelled example; its job stored no embeddings, so the trainer decodes
    // the job's video once for full features and keeps them for later runs.
    let last = job["id"].as_str().expect("id").to_owned();
    let saved = app
        .http
        .post(app.url(&format!("/v1/jobs/{last}/feedback")))
        .bearer_auth(&app.key)
        .json(&json!({ "hashtags": ["#dance", "#fitness"] }))
        .send()
        .await
        .expect("sent");
    assert_eq!(saved.status(), 200, "{}", saved.text().await.unwrap_or_default());
    let mut decoded = Vec::new();
    for _ in 0..2 {
        assert_eq!(ops.run("retrain-bad").await["status"], "succeeded");
        let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM jobs WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1")
            .bind(reelq_shared::db::models::SYSTEM_TENANT)
            .fetch_one(&env.pool)
            .await
            .expect("training job");
        let training: Value =
            app.http.get(app.url(&format!("/v1/admin/training/{id}"))).bearer_auth(&ops.key).send().await.expect("sent").json().await.expect("json");
        let examples = &training["results"]["train"]["payload"]["examples"];
        assert_eq!(examples["feedback"], 1, "{training:#}");
        // The feedback is a post for the ranker too: its caption, labelled with the chosen tags.
        let posts = &training["results"]["train"]["payload"]["ranker"]["posts"];
        assert_eq!(posts["train"].as_i64().unwrap_or(0) + posts["held_out"].as_i64().unwrap_or(0), 601, "{training:#}");
        decoded.push(examples["feedback_videos_decoded"].as_i64().expect("decoded"));
    }
    assert_eq!(decoded, [1, 0], "the feedback video is decoded once, then its stored embeddings are reused");
    assert!(count(&env.pool, "SELECT count(*) FROM example_embeddings WHERE source = 'feedback' AND text_hash = 'media'").await >= 1);
    let hidden = app.http.get(app.url(&format!("/v1/admin/training/{last}"))).bearer_auth(&ops.key).send().await.expect("sent");
    assert_eq!(hidden.status(), 404, "a tenant's job is not a training job");

    // Retraining reused the stored embeddings: each pulled video was embedded once.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM example_embeddings WHERE source = 'scraped'").await, 600);
    // Training jobs belong to the system tenant: no client sees them.
    let listed: Value = app.http.get(app.url("/v1/jobs")).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    assert!(listed["jobs"].as_array().expect("jobs").iter().all(|j| j["analyses"] != json!(["train"])));

    app.stop().await;
    worker.stop().await;
    stop.cancel();
    task.await.expect("joined").expect("clean stop");
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn virality_uses_the_correlations_of_the_pull_it_was_trained_on() {
    // Twelve pulled videos, counters chosen so that the seed formula's correlations are known:
    //   views    = 100, 200, …, 1200
    //   likes    = views / 10            → exactly proportional: ρ(views, likes) = 1
    //   comments = 1300 − views          → exactly anti-proportional: ρ(views, comments) = −1
    //   shares   = 7 for every video     → constant: unmeasurable, counts as 0
    // so virality = views + (1−1)·likes + (1+1)·comments + (1−0)·shares = 2607 − views:
    // 100 + 2·1200 + 7 = 2507 for the first video, and 1200 + 2·100 + 7 = 1407 for the last.
    let env = TestEnv::new().await;
    let topics = ["pasta recipe in my kitchen", "puppy at the dog park", "guitar cover of a song", "beach sunset on holiday"];
    let videos: Vec<reelq_shared::db::scraped::PulledVideo> = (1..=12i64)
        .map(|i| reelq_shared::db::scraped::PulledVideo {
            id: format!("v{i}"),
            description: format!("{} #tag{}", topics[(i % 4) as usize], i % 4),
            region: Some("US".into()),
            create_time: chrono::Utc::now() - chrono::Duration::hours(24 - i),
            hashtags: vec![format!("tag{}", i % 4)],
            music: None,
            counts: reelq_shared::engagement::Counts { views: 100 * i, likes: 10 * i, comments: 1300 - 100 * i, shares: 7 },
        })
        .collect();
    let mut conn = env.pool.acquire().await.expect("conn");
    reelq_shared::db::scraped::upsert_batch(&mut conn, &videos, "dump", chrono::Utc::now()).await.expect("stored");
    drop(conn);
    let mut settings = env.worker_settings();
    settings.inference.registry_refresh_ms = 0;
    let worker = TestWorker::spawn(settings).await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let tenant = tenants::by_name(&env.pool, "acme").await.expect("query").expect("tenant");
    let admin_key = tenants::create_key(&env.pool, tenant.id, "ml").await.expect("key");
    assert!(admin::set_admin(&env.pool, &admin_key.hash, true).await.expect("flag"));
    let admin_key = secrecy::ExposeSecret::expose_secret(&admin_key.key).to_owned();

    // Training on demand, with a request the api validates.
    let bad = app.http.post(app.url("/v1/admin/training")).bearer_auth(&admin_key).json(&json!({ "holdout": 2.0 })).send().await.expect("sent");
    assert_eq!(bad.status(), 422);
    let refused = app.http.post(app.url("/v1/admin/training")).bearer_auth(&app.key).json(&json!({})).send().await.expect("sent");
    assert_eq!(refused.status(), 403);
    let queued = app.http.post(app.url("/v1/admin/training")).bearer_auth(&admin_key).json(&json!({ "min_label_count": 1 })).send().await.expect("sent");
    assert_eq!(queued.status(), 202);
    let id = queued.json::<Value>().await.expect("json")["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    let training = loop {
        let t: Value =
            app.http.get(app.url(&format!("/v1/admin/training/{id}"))).bearer_auth(&admin_key).send().await.expect("sent").json().await.expect("json");
        if t["status"] != "queued" && t["status"] != "running" {
            break t;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "training did not end: {t}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(training["status"], "succeeded", "{training:#}");
    let virality = &training["results"]["train"]["payload"]["virality"];
    assert_eq!(virality["status"], "promoted", "the first version has nothing to beat: {virality}");
    // 12 videos, the newest 20 % (round(2.4) = 2) held out.
    assert_eq!((virality["metrics"]["train_examples"].as_f64(), virality["metrics"]["eval_examples"].as_f64()), (Some(10.0), Some(2.0)), "{virality}");

    // A job's estimate carries the correlations of that pull.
    let clip = tokio::task::spawn_blocking(|| {
        make_clip(
            &["-f", "lavfi", "-i", "color=white:s=320x240:r=10:d=2", "-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
            "mp4",
        )
    })
    .await
    .expect("clip");
    let video = app.upload_clip(clip).await;
    let job = app.submit_ok(json!({ "video_id": video, "analyses": ["virality"], "options": { "caption": "my puppy at the dog park #dogs" } })).await;
    let job = app.wait_terminal(job, Duration::from_secs(120)).await;
    assert_eq!(job["status"], "succeeded", "{job:#}");
    let payload = &job["results"]["virality"]["payload"];
    let close = |v: &Value, want: f64| v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9);
    assert!(close(&payload["correlations"]["corr_likes"], 1.0), "{payload}");
    assert!(close(&payload["correlations"]["corr_comments"], -1.0), "{payload}");
    assert!(close(&payload["correlations"]["corr_shares"], 0.0), "{payload}");
    let estimate = &payload["estimate"];
    // A prediction of the log-virality lies within (or at the edge of) what the pull spans:
    // ln(1 + 1407) … ln(1 + 2507), since ridge regression shrinks towards the mean.
    let log_v = estimate["log_virality"].as_f64().expect("log virality");
    assert!((1408f64.ln() - 0.5..=2508f64.ln() + 0.5).contains(&log_v), "{estimate}");
    let v = estimate["virality"].as_f64().expect("virality");
    assert!((v - log_v.exp_m1()).abs() < 1e-6 * v, "virality is exp(log virality) − 1: {estimate}");

    app.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

fn coloured_clip(colour: &str) -> Vec<u8> {
    make_clip(
        &["-f", "lavfi", "-i", &format!("color={colour}:s=160x120:r=5:d=1"), "-t", "1", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"],
        "mp4",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn video_files_beside_a_dump_give_the_classifier_image_features() {
    // A local dump of twelve videos, six with their file beside it, and an S3 dump of one more
    // with its file under the same prefix.
    let env = TestEnv::new().await;
    let store = reelq_shared::storage::Store::new(&env.storage);
    let dir = tempfile::tempdir().expect("tempdir");
    let now = chrono::Utc::now().timestamp();
    let topics =
        [("cooking", "pasta recipe in my kitchen", "orange"), ("pets", "puppy at the dog park", "green"), ("travel", "beach sunset on holiday", "blue")];
    let line = |i: i64| {
        let (tag, text, _) = topics[(i % 3) as usize];
        json!({ "id": format!("d{i}"), "video_description": format!("{text} #{tag}"), "create_time": now - 3_600 * (20 - i),
                "hashtag_names": [tag], "view_count": 1_000 * i, "like_count": 10 * i, "comment_count": i, "share_count": 1, "region_code": "US" })
        .to_string()
    };
    let lines: Vec<String> = (1..=12).map(line).collect();
    std::fs::write(dir.path().join("dump.jsonl"), lines.join("\n")).expect("write");
    for i in 1..=6i64 {
        let colour = topics[(i % 3) as usize].2;
        let clip = tokio::task::spawn_blocking(move || coloured_clip(colour)).await.expect("clip");
        std::fs::write(dir.path().join(format!("d{i}.mp4")), clip).expect("write");
    }
    let http = reqwest::Client::new();
    let clip = tokio::task::spawn_blocking(|| coloured_clip("orange")).await.expect("clip");
    for (key, body, ct) in [("dumps/extra/part.jsonl", line(13).into_bytes(), "application/json"), ("dumps/extra/d13.mp4", clip, "video/mp4")] {
        let url = store.presign_put(key, Some(ct)).await.expect("presign");
        assert!(http.put(url).header("content-type", ct).body(body).send().await.expect("put").status().is_success());
    }
    schedules::register(&env.pool, "dump", "0 0 30 2 *", "dump").await.expect("register");
    for path in [dir.path().join("dump.jsonl").display().to_string(), "s3://dumps/extra/".to_owned()] {
        let source = reelq_scheduler::dump::DumpSource::new(&path, DumpFormat::Jsonl, Some(store.clone()));
        let mut ctx = reelq_scheduler::source::RunContext::new(env.pool.clone(), "dump", CancellationToken::new());
        let outcome = reelq_scheduler::source::Source::pull(&source, &mut ctx).await.map_err(|e| e.to_string());
        assert_eq!(outcome, Ok(reelq_scheduler::source::PullOutcome::Complete), "{path}");
    }
    assert_eq!(count(&env.pool, "SELECT count(*) FROM scraped_videos").await, 13, "the video files are not dump entries");
    let keys: Vec<(String, String)> =
        sqlx::query_as("SELECT id, video_key FROM scraped_videos WHERE video_key IS NOT NULL ORDER BY id").fetch_all(&env.pool).await.expect("keys");
    assert_eq!(keys.len(), 7, "{keys:?}");
    assert!(
        keys.contains(&("d1".to_owned(), "scraped/d1.mp4".to_owned())) && keys.contains(&("d13".to_owned(), "dumps/extra/d13.mp4".to_owned())),
        "{keys:?}"
    );
    assert!(store.size("scraped/d6.mp4").await.expect("head").is_some(), "local files are copied to the bucket");

    // A worker with an image encoder trains on them.
    let mut settings = env.worker_settings();
    settings.inference.clip_model = Some("clip-tiny".into());
    let worker = TestWorker::spawn(settings).await;
    // The api's outbox relay dispatches the job.
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let request = TrainingRequest { min_label_count: 1, ..TrainingRequest::default() };
    let job = reelq_shared::training::enqueue(&env.pool, &request, None, &Default::default()).await.expect("enqueued");
    let started = Instant::now();
    let result = loop {
        let j = reelq_shared::db::jobs::get(&env.pool, reelq_shared::db::models::SYSTEM_TENANT, job.id).await.expect("get").expect("job");
        if j.status == "succeeded" {
            break reelq_shared::db::results::for_job(&env.pool, job.id).await.expect("results").remove(0).payload;
        }
        assert!(j.status != "failed", "{:?}", j.error_message);
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "training did not end: {} {:?} attempt {} {:?}",
            j.status,
            j.stage,
            j.attempt,
            j.error_message
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(result["examples"]["pulled_videos_decoded"], 7, "{result:#}");
    assert_eq!(result["examples"]["pulled_with_images"], 7, "{result:#}");
    assert_eq!(result["hashtags"]["image_model"].as_str().map(|m| m.starts_with("clip-tiny-image")), Some(true), "{result:#}");
    assert!(result["hashtags"]["image_dim"].as_u64().is_some_and(|d| d > 0), "{result:#}");
    assert_eq!(count(&env.pool, "SELECT count(*) FROM example_embeddings WHERE source = 'scraped' AND kind = 'image'").await, 7);
    app.stop().await;
    worker.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_candidate_classifier_is_also_judged_on_the_hashtag_benchmark() {
    // Arrange: two niches of the benchmark on disk, named by the worker's configuration.
    let env = TestEnv::new().await;
    let bench = tempfile::tempdir().expect("tempdir");
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let made = std::process::Command::new(root.join("tools/hashtag-bench/make-clips"))
        .arg(bench.path())
        .args(["--niches", "2"])
        .status()
        .expect("python3, espeak-ng and ffmpeg are installed (scripts/test installs them)");
    assert!(made.success(), "make-clips failed");
    let stub = StubServer::start(StubConfig { videos: 300, days: 14, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let scheduler = reelq_scheduler::Scheduler::build(scheduler_settings(&env, &stub)).await.expect("scheduler builds");
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run_until_stopped(stop.clone()));
    let mut worker_settings = env.worker_settings();
    worker_settings.hashtags.benchmark = Some(bench.path().display().to_string());
    let _worker = TestWorker::spawn(worker_settings).await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let ops = Ops::admin(&env, &app, "retrain").await;

    // Act: pull, then train with the benchmark configured.
    assert_eq!(ops.run("pull").await["status"], "succeeded");
    let trained = ops.run("retrain").await;
    assert_eq!(trained["status"], "succeeded", "{trained}");

    // Assert: the candidate's benchmark figures are registered, the decision names them, and
    // the outcome follows them: promoted only if its P@5 there is within the tolerance (0.01)
    // of having no classifier, and its held-out mAP beat label frequencies.
    let listing = ops.models().await;
    let version = listing["versions"].as_array().expect("versions").iter().find(|v| v["model"] == "hashtags").cloned().expect("a trained version");
    let decision = version["decision"].as_str().expect("decision");
    assert!(decision.contains("on the hashtag benchmark (4 held-out clips)") && decision.contains("with no classifier"), "{version}");
    let candidate = version["metrics"]["benchmark_p_at_5"].as_f64().expect("benchmark P@5 registered");
    let with_none: f64 =
        decision.split(" against ").nth(1).and_then(|s| s.split(' ').next()).and_then(|s| s.parse().ok()).expect("the figure without one");
    let beat_frequencies = decision.starts_with("mAP") && decision.contains(" beats ");
    let expected = if beat_frequencies && candidate >= with_none - 0.01 - 0.005 { "promoted" } else { "rejected" };
    assert_eq!(version["status"], expected, "{version}");

    // The refitted ranker was run over the same clips beside the weights in use, and is
    // promoted only if it holds its own there as well as on the newest posts.
    let rankers: Value = app.http.get(app.url("/v1/models?model=ranker")).bearer_auth(&app.key).send().await.expect("sent").json().await.expect("json");
    let ranker = rankers["versions"].as_array().and_then(|v| v.first()).cloned().expect("a ranker version");
    let decision = ranker["decision"].as_str().expect("decision");
    assert!(decision.contains("held-out P@5") && decision.contains("on the hashtag benchmark (4 held-out clips)"), "{ranker}");
    let on_bench = ranker["metrics"]["benchmark_p_at_5"].as_f64().expect("benchmark P@5 registered");
    let in_use: f64 = decision.rsplit(" against ").next().and_then(|s| s.split(':').next()).and_then(|s| s.parse().ok()).expect("in use");
    let on_posts = ranker["metrics"]["p_at_5"].as_f64().expect("P@5") >= ranker["baseline_metrics"]["p_at_5"].as_f64().expect("baseline") + 0.01 - 1e-9;
    let expected = if on_posts && on_bench >= in_use - 0.01 - 0.005 { "promoted" } else { "rejected" };
    assert_eq!(ranker["status"], expected, "{ranker}");
    stop.cancel();
    task.await.expect("joined").expect("clean stop");
    stub.stop().await;
    env.cleanup().await;
}
