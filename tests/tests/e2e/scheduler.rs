//! The scheduler: TikTok Research API pulls against the stub and each of its quirks, the
//! daily quota ledger, dump imports from a file and from S3, trending hashtags and music
//! recommendations over the api, the admin routes, and leadership across two replicas.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use reelq_scheduler::dump::DumpSource;
use reelq_scheduler::settings::{DumpFormat, ScheduleSettings, SchedulerSettings, SourceKind, TikTokSettings, TrendSettings};
use reelq_scheduler::source::{PullOutcome, RunContext, Source};
use reelq_scheduler::tiktok::stub::{StubConfig, StubServer, StubVideo};
use reelq_scheduler::tiktok::{QUOTA_API, TikTokClient, TikTokSource};
use reelq_shared::db::{admin, schedules, scraped, tenants};
use reelq_shared::engagement::trends::{TagCounts, TrendParams};
use reelq_tests::{TestApp, TestEnv, count};

const SCHEDULE: &str = "pull";

fn tiktok_settings(stub: &StubServer) -> TikTokSettings {
    TikTokSettings {
        base_url: stub.base_url(),
        client_key: SecretString::from("stub-key"),
        client_secret: SecretString::from("stub-secret"),
        max_count: 50,
        request_timeout_ms: 5_000,
        backoff_base_ms: 10,
        ..TikTokSettings::default()
    }
}

fn tiktok_schedule(hashtags: &[&str], days_back: u32) -> ScheduleSettings {
    ScheduleSettings {
        cron: "0 0 * * *".into(),
        source: SourceKind::Tiktok,
        enabled: true,
        hashtags: hashtags.iter().map(|h| (*h).to_owned()).collect(),
        regions: Vec::new(),
        days_back,
        path: None,
        format: DumpFormat::Auto,
        training: Default::default(),
    }
}

/// Runs one pull of `schedule` against the stub and returns its outcome and context.
async fn pull(env: &TestEnv, limits: &TikTokSettings, schedule: &ScheduleSettings) -> (Result<PullOutcome, String>, RunContext) {
    schedules::register(&env.pool, SCHEDULE, &schedule.cron, "tiktok").await.expect("register");
    let client = std::sync::Arc::new(TikTokClient::new(limits).expect("client"));
    let source = TikTokSource::new(client, limits, schedule);
    let mut ctx = RunContext::new(env.pool.clone(), SCHEDULE, CancellationToken::new());
    let outcome = source.pull(&mut ctx).await.map_err(|e| e.code().to_owned());
    (outcome, ctx)
}

/// Dataset videos a pull for `tags` over the last `days_back` days must find.
fn expected<'a>(stub: &'a StubServer, tags: &[&str], days_back: u32) -> Vec<&'a StubVideo> {
    let first_day = Utc::now().date_naive() - chrono::Duration::days(i64::from(days_back) - 1);
    stub.dataset()
        .iter()
        .filter(|v| v.hashtags.iter().any(|h| tags.contains(&h.as_str())))
        .filter(|v| chrono::DateTime::from_timestamp(v.create_time, 0).expect("time").date_naive() >= first_day)
        .collect()
}

async fn stored_ids(env: &TestEnv) -> HashSet<String> {
    sqlx::query_scalar::<_, String>("SELECT id FROM scraped_videos").fetch_all(&env.pool).await.expect("ids").into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pull_pages_through_every_window_and_stores_videos_with_snapshots() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { videos: 400, days: 14, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let limits = tiktok_settings(&stub);
    // 40 days: two windows, the older one partly before the dataset begins.
    let schedule = tiktok_schedule(&["dance", "#Cooking"], 40);

    let (outcome, ctx) = pull(&env, &limits, &schedule).await;

    assert_eq!(outcome, Ok(PullOutcome::Complete));
    let want = expected(&stub, &["dance", "cooking"], 40);
    assert!(want.len() > 100, "the dataset should give several pages, got {}", want.len());
    let want_ids: HashSet<String> = want.iter().map(|v| v.id.to_string()).collect();
    assert_eq!(stored_ids(&env).await, want_ids);
    let stats = stub.stats();
    assert_eq!(stats.tokens_issued, 1, "the token is cached across pages");
    assert_eq!(ctx.requests, stats.queries);
    assert!(stats.pages >= 4, "paged through {} pages", stats.pages);
    assert_eq!(ctx.videos as usize, want.len());
    // One snapshot per video with the stub's counters, and the music ids.
    let v = want[0];
    let row: (i64, i64, i64, i64) = sqlx::query_as("SELECT views, likes, comments, shares FROM video_snapshots WHERE video_id = $1")
        .bind(v.id.to_string())
        .fetch_one(&env.pool)
        .await
        .expect("snapshot");
    assert_eq!(row, (v.views, v.likes, v.comments, v.shares));
    assert_eq!(count(&env.pool, "SELECT count(*) FROM video_snapshots").await, want.len() as i64);
    let music: Option<String> =
        sqlx::query_scalar("SELECT music_id FROM scraped_videos WHERE id = $1").bind(v.id.to_string()).fetch_one(&env.pool).await.expect("row");
    assert_eq!(music, Some(v.music_id.to_string()));
    let usage = schedules::quota_use(&env.pool, QUOTA_API, Utc::now().date_naive()).await.expect("quota");
    assert_eq!(usage.requests as u32, stats.queries);
    assert_eq!(usage.records as usize, want.len());

    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_token_is_refreshed_once_and_the_pull_goes_on() {
    let env = TestEnv::new().await;
    let stub =
        StubServer::start(StubConfig { videos: 300, token_expires_after_calls: Some(2), ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let limits = tiktok_settings(&stub);
    let schedule = tiktok_schedule(&["dance"], 20);

    let (outcome, _) = pull(&env, &limits, &schedule).await;

    assert_eq!(outcome, Ok(PullOutcome::Complete));
    let stats = stub.stats();
    assert!(stats.token_refusals >= 1, "{stats:?}");
    assert_eq!(stats.tokens_issued, stats.token_refusals + 1, "one new token per refusal: {stats:?}");
    assert_eq!(stored_ids(&env).await.len(), expected(&stub, &["dance"], 20).len());
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_credentials_and_invalid_params_fail_the_run_with_stable_codes() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig::default(), "127.0.0.1:0").await.expect("stub");
    let schedule = tiktok_schedule(&["dance"], 5);

    let wrong = TikTokSettings { client_secret: SecretString::from("wrong"), ..tiktok_settings(&stub) };
    let (outcome, _) = pull(&env, &wrong, &schedule).await;
    assert_eq!(outcome, Err("tiktok_auth_failed".to_owned()));

    // 101 per page is past the API's limit (the config refuses it; the API must too).
    let too_many = TikTokSettings { max_count: 101, ..tiktok_settings(&stub) };
    let (outcome, ctx) = pull(&env, &too_many, &schedule).await;
    assert_eq!(outcome, Err("tiktok_invalid_params".to_owned()));
    assert_eq!(ctx.requests, 1, "invalid parameters are not retried");
    assert_eq!(stub.stats().invalid_params, 1);
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_search_id_restarts_its_window_without_duplicates() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { videos: 400, days: 10, search_id_expires_after_pages: Some(2), ..StubConfig::default() }, "127.0.0.1:0")
        .await
        .expect("stub");
    let limits = tiktok_settings(&stub);
    let schedule = tiktok_schedule(&["dance", "fyp"], 10);

    let (outcome, _) = pull(&env, &limits, &schedule).await;

    assert_eq!(outcome, Ok(PullOutcome::Complete));
    let stats = stub.stats();
    assert_eq!(stats.search_ids_expired, 1, "{stats:?}");
    let want = expected(&stub, &["dance", "fyp"], 10);
    assert_eq!(stored_ids(&env).await.len(), want.len());
    // The restart re-read the first two pages: more pages than the data needs.
    let needed = want.len().div_ceil(50) as u32;
    assert_eq!(stats.pages, needed + 2, "{stats:?}");
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limits_are_backed_off_and_fail_the_run_only_when_they_persist() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { rate_limited_calls: 3, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let schedule = tiktok_schedule(&["dance"], 5);

    let started = Instant::now();
    let (outcome, _) = pull(&env, &tiktok_settings(&stub), &schedule).await;
    assert_eq!(outcome, Ok(PullOutcome::Complete));
    assert_eq!(stub.stats().rate_limited, 3);
    // Backed off 10 + 20 + 40 ms at least.
    assert!(started.elapsed() >= Duration::from_millis(70));
    stub.stop().await;

    let stub = StubServer::start(StubConfig { rate_limited_calls: 100, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let limits = TikTokSettings { max_rate_limit_retries: 2, ..tiktok_settings(&stub) };
    let (outcome, _) = pull(&env, &limits, &schedule).await;
    assert_eq!(outcome, Err("tiktok_rate_limited".to_owned()));
    assert_eq!(stub.stats().rate_limited, 3, "two retries after the first 429");
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_daily_quota_stops_the_run_cleanly_and_the_next_run_resumes_where_it_stopped() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { videos: 400, days: 10, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let schedule = tiktok_schedule(&["dance", "fyp"], 10);
    let want = expected(&stub, &["dance", "fyp"], 10);
    let needed = want.len().div_ceil(50) as u32;
    assert!(needed >= 4, "{needed} pages");

    // Our own ledger: two requests a day.
    let tight = TikTokSettings { daily_request_limit: 2, ..tiktok_settings(&stub) };
    let (outcome, ctx) = pull(&env, &tight, &schedule).await;
    assert!(matches!(outcome, Ok(PullOutcome::Stopped { code: "quota_exhausted", .. })), "{outcome:?}");
    assert_eq!(ctx.requests, 2);
    assert_eq!(stored_ids(&env).await.len(), 100);
    assert!(schedules::checkpoint(&env.pool, SCHEDULE).await.expect("checkpoint").is_some());

    // Tomorrow's budget (a larger limit stands in for the date changing): the run resumes at
    // the saved cursor instead of starting over.
    let (outcome, _) = pull(&env, &tiktok_settings(&stub), &schedule).await;
    assert_eq!(outcome, Ok(PullOutcome::Complete));
    assert_eq!(stored_ids(&env).await.len(), want.len());
    assert_eq!(stub.stats().pages, needed, "no page was fetched twice");
    assert!(schedules::checkpoint(&env.pool, SCHEDULE).await.expect("checkpoint").is_none());
    stub.stop().await;

    // The API's own quota answer stops the run and closes the day in the ledger.
    let stub = StubServer::start(StubConfig { daily_request_quota: Some(1), ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    schedules::set_checkpoint(&env.pool, SCHEDULE, None).await.expect("clear");
    let (outcome, _) = pull(&env, &tiktok_settings(&stub), &tiktok_schedule(&["dance", "fyp"], 10)).await;
    assert!(matches!(outcome, Ok(PullOutcome::Stopped { code: "quota_exhausted", .. })), "{outcome:?}");
    assert_eq!(stub.stats().quota_refusals, 1);
    let usage = schedules::quota_use(&env.pool, QUOTA_API, Utc::now().date_naive()).await.expect("quota");
    assert!(usage.exhausted);
    let (outcome, ctx) = pull(&env, &tiktok_settings(&stub), &tiktok_schedule(&["dance"], 3)).await;
    assert!(matches!(outcome, Ok(PullOutcome::Stopped { code: "quota_exhausted", .. })), "{outcome:?}");
    assert_eq!(ctx.requests, 0, "nothing more is asked of the API that day");
    stub.stop().await;
    env.cleanup().await;
}

/// One dump row: `(id, day offset from 2026-01-31, tags, music, views, likes, comments, shares)`.
type Row<'a> = (&'a str, i64, &'a [&'a str], &'a str, i64, i64, i64, i64);

/// A JSON-lines dump in the Research API shape.
fn jsonl(rows: &[Row<'_>]) -> String {
    let base = NaiveDate::from_ymd_opt(2026, 1, 31).expect("date").and_hms_opt(12, 0, 0).expect("time").and_utc().timestamp();
    rows.iter()
        .map(|(id, day, tags, music, views, likes, comments, shares)| {
            json!({"id": id, "create_time": base + day * 86_400, "region_code": "US", "hashtag_names": tags, "music_id": music,
                   "music_name": format!("Song {music}"), "view_count": views, "like_count": likes, "comment_count": comments,
                   "share_count": shares})
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn import(env: &TestEnv, path: &str, format: DumpFormat) -> (Result<PullOutcome, String>, RunContext) {
    schedules::register(&env.pool, "dump", "0 0 * * *", "dump").await.expect("register");
    let source = DumpSource::new(path, format, Some(reelq_shared::storage::Store::new(&env.storage)));
    let mut ctx = RunContext::new(env.pool.clone(), "dump", CancellationToken::new());
    let outcome = source.pull(&mut ctx).await.map_err(|e| e.code().to_owned());
    (outcome, ctx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dumps_import_from_files_and_s3_in_both_shapes() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().expect("tempdir");

    // The Kaggle document, with a broken entry that is skipped.
    let kaggle = json!({"collector": [
        {"id": "k1", "text": "a #Dance", "createTime": 1_604_000_000, "hashtags": [{"name": "Dance"}], "diggCount": 10,
         "shareCount": 1, "commentCount": 2, "playCount": 100, "musicMeta": {"musicId": "m1", "musicName": "Tune", "musicAuthor": "Band"}},
        {"id": "k2", "text": "b", "createTime": "1604000100", "hashtags": [], "diggCount": 1, "shareCount": 0, "commentCount": 0,
         "playCount": 5, "musicMeta": {"musicId": "m1", "musicName": "Tune", "musicAuthor": "Band"}},
        {"id": "broken", "playCount": 1}
    ]});
    let path = dir.path().join("trending.json");
    std::fs::write(&path, serde_json::to_string_pretty(&kaggle).expect("json")).expect("write");
    let (outcome, ctx) = import(&env, &path.display().to_string(), DumpFormat::Auto).await;
    assert_eq!(outcome, Ok(PullOutcome::Complete));
    assert_eq!(ctx.videos, 2);
    let m: (String, String) = sqlx::query_as("SELECT name, author FROM music WHERE id = 'm1'").fetch_one(&env.pool).await.expect("music");
    assert_eq!(m, ("Tune".to_owned(), "Band".to_owned()));
    let tags: Vec<String> = sqlx::query_scalar("SELECT hashtags FROM scraped_videos WHERE id = 'k1'").fetch_one(&env.pool).await.expect("row");
    assert_eq!(tags, vec!["dance"]);

    // JSON lines from S3, over two objects; a garbage line is skipped.
    let store = reelq_shared::storage::Store::new(&env.storage);
    let http = reqwest::Client::new();
    for (key, body) in [
        ("dumps/2026/a.jsonl", format!("{}\nnot json\n", jsonl(&[("s1", 0, &["x"], "m2", 1, 1, 1, 1)]))),
        ("dumps/2026/b.jsonl", jsonl(&[("s2", 0, &["y"], "m2", 2, 2, 2, 2), ("s3", 0, &["y"], "m3", 3, 3, 3, 3)])),
    ] {
        let url = store.presign_put(key, Some("application/json")).await.expect("presign");
        let resp = http.put(url).header("content-type", "application/json").body(body).send().await.expect("put");
        assert!(resp.status().is_success(), "{}", resp.status());
    }
    let (outcome, ctx) = import(&env, "s3://dumps/2026/", DumpFormat::Jsonl).await;
    assert_eq!(outcome, Ok(PullOutcome::Complete));
    assert_eq!(ctx.videos, 3);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM scraped_videos WHERE source = 'dump'").await, 5);

    // Nothing usable, or nothing there: the run fails with a stable code.
    let junk = dir.path().join("junk.jsonl");
    std::fs::write(&junk, "{\"nope\": 1}\n[]\n").expect("write");
    assert_eq!(import(&env, &junk.display().to_string(), DumpFormat::Auto).await.0, Err("dump_invalid".to_owned()));
    assert_eq!(import(&env, "/nonexistent/dump.jsonl", DumpFormat::Auto).await.0, Err("dump_not_found".to_owned()));
    assert_eq!(import(&env, "s3://nothing-here/", DumpFormat::Auto).await.0, Err("dump_not_found".to_owned()));
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn trending_hashtags_and_music_recommendations_over_the_api() {
    let env = TestEnv::new().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // Days are relative to the newest video (day 0). With 3-day windows: recent = days 0..-2,
    // previous = days -3..-5; day -7 is outside both.
    let rows: Vec<Row<'_>> = vec![
        ("v1", 0, &["rising", "cats"], "ma", 1000, 100, 10, 1), // 1000 + 200 + 30 + 4 = 1234
        ("v2", -1, &["rising"], "ma", 500, 0, 0, 0),            // 500
        ("v3", -2, &["rising", "cats"], "mb", 100, 50, 50, 50), // 100 + 100 + 150 + 200 = 550
        ("v4", -1, &["cats"], "mb", 10, 0, 0, 0),               // 10
        ("v5", -3, &["cats"], "mc", 1, 0, 0, 0),
        ("v6", -4, &["cats"], "mc", 1, 0, 0, 0),
        ("v7", -5, &["rising"], "mc", 1, 0, 0, 0),
        ("v8", -7, &["rising"], "md", 100_000, 0, 0, 0),
    ];
    let path = dir.path().join("dump.jsonl");
    std::fs::write(&path, jsonl(&rows)).expect("write");
    let (outcome, _) = import(&env, &path.display().to_string(), DumpFormat::Jsonl).await;
    assert_eq!(outcome, Ok(PullOutcome::Complete));
    let trends = TrendSettings { window_hours: 72, smoothing: 1.0, min_support: 2, per_region_limit: 50, links: Default::default() };
    reelq_scheduler::trends::refresh(&env.pool, &trends).await.expect("trends");

    // The virality population: every video's latest counters, newest post first.
    let population = scraped::latest_counts(&env.pool, 100).await.expect("counts");
    assert_eq!(population.len(), rows.len());
    assert_eq!(population[0], reelq_shared::engagement::Counts { views: 1000, likes: 100, comments: 10, shares: 1 });
    let model = reelq_shared::engagement::virality::ViralityModel::fit(&population);
    let scores: Vec<f64> = population.iter().map(|c| model.score(c)).collect();
    // v8 (100 000 views) tops the population; v1 is second of eight: (6 + 0.5) / 8.
    let v1 = reelq_shared::engagement::virality::percentile(scores[0], &scores).expect("non-empty");
    assert!((v1 - 81.25).abs() < 1e-9, "{v1}");

    let app = TestApp::spawn(&env, env.api_settings()).await;
    let get = |path: String| app.http.get(app.url(&path)).bearer_auth(&app.key).send();

    // Recent: 4 videos (v1–v4), rising 3, cats 3. Previous: 3 videos (v5–v7), rising 1, cats 2.
    // rising: ln(((3+1)/(4+1)) / ((1+1)/(3+1))) = ln(1.6); cats: ln((4/5) / (3/4)) = ln(16/15).
    let body: Value = get("/v1/hashtags/trending?region=us&limit=5".into()).await.expect("sent").json().await.expect("json");
    assert_eq!(body["region"], "US");
    let tags = body["hashtags"].as_array().expect("array");
    assert_eq!(tags.iter().map(|t| t["hashtag"].as_str().expect("str")).collect::<Vec<_>>(), ["rising", "cats"]);
    assert!((tags[0]["score"].as_f64().expect("score") - 1.6f64.ln()).abs() < 1e-9, "{body}");
    assert!((tags[1]["score"].as_f64().expect("score") - (16.0f64 / 15.0).ln()).abs() < 1e-9, "{body}");
    assert_eq!((tags[0]["recent_count"].as_i64(), tags[0]["previous_count"].as_i64()), (Some(3), Some(1)));
    let expected = reelq_shared::engagement::trends::score(
        &[TagCounts { hashtag: "rising".into(), recent: 3, previous: 1 }],
        4,
        3,
        TrendParams { smoothing: 1.0, min_support: 2 },
    );
    assert!((expected[0].score - 1.6f64.ln()).abs() < 1e-12);
    // All regions together are the same here (every video is US); the shared reader agrees.
    let all = scraped::trending(&env.pool, None, 1).await.expect("trending");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].hashtag, "rising");
    let none: Value = get("/v1/hashtags/trending?region=BR".into()).await.expect("sent").json().await.expect("json");
    assert_eq!(none["hashtags"], json!([]));
    let bad = get("/v1/hashtags/trending?region=USA".into()).await.expect("sent");
    assert_eq!(bad.status(), 422);
    assert_eq!(bad.json::<Value>().await.expect("json")["code"], "invalid_region");
    assert_eq!(app.http.get(app.url("/v1/hashtags/trending")).send().await.expect("sent").status(), 401);

    // Music for #rising: ma = 1234 + 500 = 1734, md = 100 000, mb = 550, mc = 1.
    let body: Value = get("/v1/music/recommendations?hashtags=%23Rising&limit=3".into()).await.expect("sent").json().await.expect("json");
    let music = body["music"].as_array().expect("array");
    let ranked: Vec<(&str, f64)> = music.iter().map(|m| (m["music_id"].as_str().expect("id"), m["score"].as_f64().expect("score"))).collect();
    assert_eq!(ranked, vec![("md", 100_000.0), ("ma", 1734.0), ("mb", 550.0)]);
    assert_eq!(music[1]["name"], "Song ma");
    assert_eq!(music[1]["videos"], 2);
    // A one-day half-life: md is 7 days older than v1, so it weighs 1/128 as much:
    // 100 000 / 128 ≈ 781 against ma's 1234 + 500 / 2 = 1484 (both scaled by the same age).
    let decayed: Value = get("/v1/music/recommendations?hashtags=rising,cats&half_life_days=1".into()).await.expect("sent").json().await.expect("json");
    assert_eq!(decayed["music"][0]["music_id"], "ma");
    let missing = get("/v1/music/recommendations?hashtags=,".into()).await.expect("sent");
    assert_eq!(missing.status(), 422);
    assert_eq!(missing.json::<Value>().await.expect("json")["code"], "missing_hashtags");
    let bad_half_life = get("/v1/music/recommendations?hashtags=a&half_life_days=-1".into()).await.expect("sent");
    assert_eq!(bad_half_life.status(), 422);

    app.stop().await;
    env.cleanup().await;
}

fn scheduler_settings(env: &TestEnv, stub: &StubServer, cron: &str) -> reelq_scheduler::Settings {
    let mut database = env.database.clone();
    database.run_migrations = false;
    let mut schedule = tiktok_schedule(&["dance", "fyp", "cooking"], 10);
    schedule.cron = cron.into();
    let mut scheduler = SchedulerSettings {
        health_bind: "127.0.0.1:0".into(),
        poll_interval_ms: 50,
        schedules: [(SCHEDULE.to_owned(), schedule)].into_iter().collect(),
        ..SchedulerSettings::default()
    };
    scheduler.set_tiktok(TikTokSettings { max_count: 100, ..tiktok_settings(stub) });
    reelq_scheduler::Settings {
        database,
        amqp: env.amqp.clone(),
        storage: env.storage.clone(),
        webhooks: env.webhooks.clone(),
        telemetry: Default::default(),
        scheduler,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_schedulers_never_run_the_same_schedule_at_once() {
    let env = TestEnv::new().await;
    // Slow pages make each run last well over a cron period of one second.
    let stub = StubServer::start(StubConfig { videos: 300, days: 10, latency_ms: 250, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    let stop = CancellationToken::new();
    let mut handles = Vec::new();
    for _ in 0..2 {
        let s = reelq_scheduler::Scheduler::build(scheduler_settings(&env, &stub, "* * * * * *")).await.expect("scheduler builds");
        handles.push(tokio::spawn(s.run_until_stopped(stop.clone())));
    }

    let started = Instant::now();
    while count(&env.pool, "SELECT count(*) FROM schedule_runs WHERE status = 'succeeded'").await < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "three runs did not finish in time");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    for h in handles {
        h.await.expect("joined").expect("clean stop");
    }

    let runs: Vec<(chrono::DateTime<Utc>, chrono::DateTime<Utc>, String)> =
        sqlx::query_as("SELECT started_at, ended_at, status FROM schedule_runs WHERE started_at IS NOT NULL ORDER BY started_at")
            .fetch_all(&env.pool)
            .await
            .expect("runs");
    assert!(runs.len() >= 3);
    for pair in runs.windows(2) {
        assert!(pair[0].1 <= pair[1].0, "runs overlap: {:?} and {:?}", pair[0], pair[1]);
    }
    // Stopping mid-run leaves no run `running`: it ended as partial with its place saved.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM schedule_runs WHERE status = 'running'").await, 0);
    // The stub never served two queries at once: one run's pages are sequential, so overlap
    // would show here even if the run history were wrong.
    assert_eq!(stub.stats().max_in_flight, 1, "{:?}", stub.stats());
    // No leader ever found a run of another live leader and took it for abandoned.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM schedule_runs WHERE error_code = 'abandoned'").await, 0);
    // Each cron slot was inserted once although both replicas saw it.
    assert_eq!(count(&env.pool, "SELECT count(*) FROM (SELECT scheduled_for FROM schedule_runs GROUP BY 1 HAVING count(*) > 1) d").await, 0);
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admins_list_and_trigger_runs_and_other_keys_are_refused() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { videos: 200, days: 5, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    // A schedule that never comes due by itself (Feb 30th).
    let scheduler = reelq_scheduler::Scheduler::build(scheduler_settings(&env, &stub, "0 0 30 2 *")).await.expect("builds");
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run_until_stopped(stop.clone()));
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let tenant = tenants::by_name(&env.pool, "acme").await.expect("query").expect("tenant");
    let admin_key = tenants::create_key(&env.pool, tenant.id, "ops").await.expect("key");
    assert!(admin::set_admin(&env.pool, &admin_key.hash, true).await.expect("flag"));
    let admin_key = secrecy::ExposeSecret::expose_secret(&admin_key.key).to_owned();

    // Tenant keys may not operate the scheduler.
    let refused = app.http.get(app.url("/v1/admin/runs")).bearer_auth(&app.key).send().await.expect("sent");
    assert_eq!(refused.status(), 403);
    assert_eq!(refused.json::<Value>().await.expect("json")["code"], "forbidden");
    let refused = app.http.post(app.url("/v1/admin/runs")).bearer_auth(&app.key).json(&json!({"schedule": SCHEDULE})).send().await.expect("sent");
    assert_eq!(refused.status(), 403);

    // Wait for the scheduler to register its schedule, then trigger it.
    let started = Instant::now();
    while !schedules::exists(&env.pool, SCHEDULE).await.expect("exists") {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post = |body: Value| app.http.post(app.url("/v1/admin/runs")).bearer_auth(&admin_key).json(&body).send();
    let unknown = post(json!({"schedule": "nope"})).await.expect("sent");
    assert_eq!(unknown.status(), 404);
    let accepted = post(json!({"schedule": SCHEDULE})).await.expect("sent");
    assert_eq!(accepted.status(), 202);
    let run: Value = accepted.json().await.expect("json");
    assert_eq!(run["trigger"], "manual");
    let run_id = run["id"].as_str().expect("id").to_owned();

    let started = Instant::now();
    let done = loop {
        let page: Value = app
            .http
            .get(app.url(&format!("/v1/admin/runs?schedule={SCHEDULE}")))
            .bearer_auth(&admin_key)
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        let r = page["runs"].as_array().expect("runs").iter().find(|r| r["id"] == run_id.as_str()).cloned().expect("listed");
        if r["status"] == "succeeded" {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "run did not finish: {r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(done["videos"].as_i64().expect("videos") > 0);
    assert!(done["requests"].as_i64().expect("requests") >= 1);
    assert!(done["runner"].as_str().is_some());

    // A schedule runs once at a time: a second trigger while one is pending is refused.
    assert!(schedules::insert_pending(&env.pool, SCHEDULE, "manual", None).await.expect("insert").is_some());
    let busy = post(json!({"schedule": SCHEDULE})).await.expect("sent");
    assert_eq!(busy.status(), 409);
    assert_eq!(busy.json::<Value>().await.expect("json")["code"], "run_already_active");

    app.stop().await;
    stop.cancel();
    task.await.expect("joined").expect("clean stop");
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_schedule_lock_keeps_every_replica_off_the_schedule() {
    let env = TestEnv::new().await;
    let stub = StubServer::start(StubConfig { videos: 50, days: 5, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    // Another replica's lock, held on its own session.
    let mut other = <sqlx::PgConnection as sqlx::Connection>::connect(secrecy::ExposeSecret::expose_secret(&env.database.url)).await.expect("connect");
    assert!(schedules::try_lock(&mut other, SCHEDULE).await.expect("lock"));
    schedules::register(&env.pool, SCHEDULE, "0 0 30 2 *", "tiktok").await.expect("register");
    let run = schedules::insert_pending(&env.pool, SCHEDULE, "manual", None).await.expect("insert").expect("pending");
    let scheduler = reelq_scheduler::Scheduler::build(scheduler_settings(&env, &stub, "0 0 30 2 *")).await.expect("builds");
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run_until_stopped(stop.clone()));

    // Twenty polls later the run still waits: the lock is not ours.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(schedules::get_run(&env.pool, run.id).await.expect("get").expect("run").status, "pending");
    assert_eq!(stub.stats().queries, 0);

    // The other session ends (as a crashed replica's would): the lock is free and the run goes.
    drop(other);
    let started = Instant::now();
    loop {
        let r = schedules::get_run(&env.pool, run.id).await.expect("get").expect("run");
        if r.status == "succeeded" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "still {}", r.status);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    task.await.expect("joined").expect("clean stop");
    stub.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_whose_lock_session_dies_stops_its_run() {
    let env = TestEnv::new().await;
    // Slow pages: the run lasts long enough to lose its lock in the middle.
    let stub = StubServer::start(StubConfig { videos: 1500, days: 10, latency_ms: 600, ..StubConfig::default() }, "127.0.0.1:0").await.expect("stub");
    schedules::register(&env.pool, SCHEDULE, "0 0 30 2 *", "tiktok").await.expect("register");
    let run = schedules::insert_pending(&env.pool, SCHEDULE, "manual", None).await.expect("insert").expect("pending");
    let scheduler = reelq_scheduler::Scheduler::build(scheduler_settings(&env, &stub, "0 0 30 2 *")).await.expect("builds");
    let stop = CancellationToken::new();
    let task = tokio::spawn(scheduler.run_until_stopped(stop.clone()));
    let started = Instant::now();
    while schedules::get_run(&env.pool, run.id).await.expect("get").expect("run").status != "running" {
        assert!(started.elapsed() < Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The database ends the leader's lock session (a restart, a killed backend).
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_locks
         WHERE locktype = 'advisory' AND granted AND classid = $1::int::oid AND objid = hashtext($2)::oid
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(schedules::LOCK_CLASS)
    .bind(SCHEDULE)
    .fetch_one(&env.pool)
    .await
    .expect("terminate");
    assert_eq!(killed, 1);

    // The run stops at its next page instead of running on unguarded, and keeps its place.
    let started = Instant::now();
    let ended = loop {
        let r = schedules::get_run(&env.pool, run.id).await.expect("get").expect("run");
        if r.status != "running" {
            break r;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the run went on without its lock");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!((ended.status.as_str(), ended.error_code.as_deref()), ("partial", Some("lock_lost")));
    assert!(stub.stats().queries < 30, "stopped early: {:?}", stub.stats());
    stop.cancel();
    task.await.expect("joined").expect("clean stop");
    stub.stop().await;
    env.cleanup().await;
}
