//! `reelq-bench`: prints throughput, latency and cost-per-job figures of the full job path, and
//! the api's memory and speed during a large streamed upload. Figures only: nothing here asserts
//! timings.
//!
//! ```text
//! cargo run --release -p reelq-tests --bin reelq-bench -- noop --jobs 5000 --concurrency 64 [--paced 0.5,0.9 | --paced-rate 1700] [--paced-jobs N] [--bulk 100] [--hold-snapshot] [--lease-ttl-ms 30000] [--slice 100000] [--setup-sql FILE] [--apis 2 --workers 4]
//! cargo build --release -p reelq-api && cargo run --release -p reelq-tests --bin reelq-bench -- upload --mib 1024
//! cargo run --release -p reelq-tests --bin reelq-bench -- retention --objects 10000 [--batch 500]
//! cargo run --release -p reelq-tests --bin reelq-bench -- songs --tracks 1000 [--excerpts 60]
//! ```

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use secrecy::ExposeSecret as _;
use serde_json::json;

use sqlx::Connection as _;
use uuid::Uuid;

use reelq_tests::{TestApp, TestEnv, TestWorker, sample_clip};

mod cost;
mod processes;

/// The no-op benchmark's options.
#[derive(Debug)]
struct NoopArgs {
    jobs: usize,
    concurrency: usize,
    worker_concurrency: usize,
    tenants: usize,
    paced: Vec<f64>,
    paced_rate: f64,
    paced_jobs: usize,
    bulk: usize,
    hold_snapshot: bool,
    lease_ttl_ms: u64,
    slice: usize,
    setup_sql: Option<String>,
    apis: usize,
    workers: usize,
}

#[derive(Debug)]
enum Mode {
    Noop(NoopArgs),
    Upload { mib: u64 },
    Retention { objects: usize, batch: i64 },
    Songs { tracks: u64, excerpts: u64 },
}

fn parse_args() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("upload") => Mode::Upload { mib: flag("--mib", 1024) },
        Some("songs") => Mode::Songs { tracks: flag("--tracks", 1000), excerpts: flag("--excerpts", 60) },
        Some("retention") => Mode::Retention { objects: flag("--objects", 10_000) as usize, batch: flag("--batch", 500) as i64 },
        _ => {
            let jobs = flag("--jobs", 5000) as usize;
            // `--paced 0.5,0.9`: fractions of the burst's rate to hold for `--paced-jobs` each;
            // `--paced none` skips them.
            let paced = args
                .iter()
                .position(|a| a == "--paced")
                .and_then(|i| args.get(i + 1))
                .map(|v| v.split(',').filter_map(|f| f.parse::<f64>().ok()).filter(|f| *f > 0.0).collect())
                .unwrap_or_else(|| vec![0.5, 0.9]);
            Mode::Noop(NoopArgs {
                jobs,
                concurrency: flag("--concurrency", 64) as usize,
                worker_concurrency: flag("--worker-concurrency", 128) as usize,
                tenants: flag("--tenants", 1).max(1) as usize,
                paced,
                // `--paced-rate N`: one paced run at N jobs/s instead, to compare runs whose bursts differ.
                paced_rate: flag("--paced-rate", 0) as f64,
                paced_jobs: flag("--paced-jobs", (jobs / 2) as u64) as usize,
                bulk: flag("--bulk", 0) as usize,
                hold_snapshot: args.iter().any(|a| a == "--hold-snapshot"),
                lease_ttl_ms: flag("--lease-ttl-ms", 30_000).max(100),
                slice: flag("--slice", 100_000).max(1) as usize,
                // `--setup-sql FILE`: statements run in the bench's database after its migrations,
                // to measure a variant of a function or an index against the shipped one.
                setup_sql: args.iter().position(|a| a == "--setup-sql").and_then(|i| args.get(i + 1)).cloned(),
                apis: flag("--apis", 0) as usize,
                workers: flag("--workers", 1) as usize,
            })
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    match parse_args() {
        Mode::Noop(a) => {
            let run = NoopRun {
                jobs: a.jobs,
                concurrency: a.concurrency,
                worker_concurrency: a.worker_concurrency,
                tenants: a.tenants,
                paced: &a.paced,
                paced_rate: a.paced_rate,
                paced_jobs: a.paced_jobs,
                bulk: a.bulk,
                hold_snapshot: a.hold_snapshot,
                lease_ttl_ms: a.lease_ttl_ms,
                slice: a.slice,
                setup_sql: a.setup_sql.as_deref(),
                apis: a.apis,
                workers: a.workers,
            };
            noop(run).await
        }
        Mode::Upload { mib } => upload(mib).await,
        Mode::Retention { objects, batch } => retention(objects, batch).await,
        Mode::Songs { tracks, excerpts } => songs(tracks, excerpts).await,
    }
}

/// Song recognition against a catalogue of `tracks` synthetic 30 s tracks stored in
/// PostgreSQL: how long one excerpt's candidate query and verification take, and how many
/// 12 s excerpts (clean, and with another song mixed 12 dB under) are found.
async fn songs(tracks: u64, excerpts: u64) {
    use reelq_worker::media::fingerprint::{fingerprint, synthetic_song};
    const RATE: u32 = 16_000;
    let env = TestEnv::new().await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for seed in 0..tracks {
        let song = synthetic_song(seed, 30.0, RATE);
        let track = reelq_shared::db::songs::NewTrack { title: format!("Track {seed}"), ..Default::default() };
        ids.push(reelq_worker::songs::add_track(&env.pool, track, &song, RATE).await.expect("added") as u64);
    }
    sqlx::query("VACUUM ANALYZE track_keys").execute(&env.pool).await.expect("vacuum");
    let keys = reelq_tests::count(&env.pool, "SELECT count(*) FROM track_keys").await;
    let size: String = sqlx::query_scalar("SELECT pg_size_pretty(pg_total_relation_size('track_keys'))").fetch_one(&env.pool).await.expect("size");
    println!("songs: {tracks} tracks stored in {:.1} s; track_keys {keys} rows, {size} with its indexes", started.elapsed().as_secs_f64());
    for (kind, under) in [("clean", 0.0f32), ("another song 12 dB under", 0.25)] {
        let (mut found, mut times) = (0, Vec::new());
        for e in 0..excerpts {
            let track = (e * 7919) % tracks;
            let from = (e as f64 * 1.7) % 18.0;
            let song = synthetic_song(track, 30.0, RATE);
            let a = (from * f64::from(RATE)) as usize;
            let mut clip = song[a..a + 12 * RATE as usize].to_vec();
            let noise = synthetic_song(5_000_000 + e, 12.0, RATE);
            clip.iter_mut().zip(&noise).for_each(|(s, n)| *s = *s * (1.0 - under) + n * under);
            let items = fingerprint(&clip, RATE);
            let t = Instant::now();
            let hit = reelq_worker::songs::identify(&env.pool, &items).await.expect("query");
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            if hit.is_some_and(|m| m.track == ids[track as usize] && (m.offset_secs - from).abs() < 0.5) {
                found += 1;
            }
        }
        times.sort_by(f64::total_cmp);
        println!(
            "songs: {kind}: {found}/{excerpts} found at the right offset; match in PostgreSQL p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            percentile(&times, 0.5),
            percentile(&times, 0.9),
            times.last().copied().unwrap_or(0.0)
        );
    }
    let mut false_matches = 0;
    for e in 0..excerpts {
        let stranger = fingerprint(&synthetic_song(1_000_000 + e, 30.0, RATE)[..12 * RATE as usize], RATE);
        if reelq_worker::songs::identify(&env.pool, &stranger).await.expect("query").is_some() {
            false_matches += 1;
        }
    }
    println!("songs: not in the catalogue: {false_matches}/{excerpts} matched (false matches)");
    env.cleanup().await;
}

/// The retention sweep over `objects` uploads stored 31 days ago (1 KiB each, in the bench's
/// S3 server): how long one sweep takes to remove their bytes and mark their rows.
async fn retention(objects: usize, batch: i64) {
    let env = TestEnv::new().await;
    let mut settings = env.api_settings();
    settings.retention.sweep_interval_secs = 86_400;
    settings.retention.sweep_batch = batch;
    let tenant = reelq_shared::db::tenants::upsert(&env.pool, "bench", None).await.expect("tenant");
    let store = reelq_shared::storage::Store::new(&env.storage);
    let ids: Vec<Uuid> = (0..objects).map(|_| Uuid::now_v7()).collect();
    let started = Instant::now();
    futures::stream::iter(ids.iter().map(|id| {
        let store = store.clone();
        let key = reelq_shared::domain::video_object_key(tenant.id, *id);
        async move { store.put_bytes(&key, vec![0u8; 1024], "video/mp4").await.expect("put") }
    }))
    .buffer_unordered(32)
    .collect::<Vec<()>>()
    .await;
    sqlx::query(
        r#"INSERT INTO videos (id, tenant_id, object_key, status, size_bytes, sha256, content_type, container, created_at, stored_at)
           SELECT id, $1, 'uploads/' || $1 || '/' || id, 'stored', 1024, '', 'video/mp4', 'mp4', now() - interval '31 days', now() - interval '31 days'
           FROM unnest($2::uuid[]) AS id"#,
    )
    .bind(tenant.id)
    .bind(&ids)
    .execute(&env.pool)
    .await
    .expect("rows");
    println!("retention: {objects} expired uploads written in {:.1} s", started.elapsed().as_secs_f64());
    let app = reelq_api::Application::build(settings).await.expect("api builds");
    let state = app.state().clone();
    let cancel = tokio_util::sync::CancellationToken::new();
    let started = Instant::now();
    let swept = reelq_api::retention::sweep(&state, &cancel).await.expect("sweep");
    let secs = started.elapsed().as_secs_f64();
    let left = store.list_keys(&format!("uploads/{}/", tenant.id)).await.expect("list").len();
    let expired = reelq_tests::count(&env.pool, "SELECT count(*) FROM videos WHERE status = 'expired'").await;
    println!(
        "retention: one sweep removed {} uploads in {secs:.2} s ({:.0} objects/s, batches of {batch}); objects left {left}, rows expired {expired}",
        swept.uploads,
        swept.uploads as f64 / secs
    );
    env.cleanup().await;
}

/// No-op jobs through REST submit → PostgreSQL → outbox → RabbitMQ → worker → PostgreSQL: first
/// an unbounded burst (the maximum rate, and what each job costs), then paced runs at fractions
/// of that rate (latency under a steady load, as a service sees it).
/// One run of the no-op benchmark.
struct NoopRun<'a> {
    jobs: usize,
    /// Requests in flight.
    concurrency: usize,
    worker_concurrency: usize,
    tenants: usize,
    paced: &'a [f64],
    /// Jobs per second of a single paced run instead of `paced`; 0 uses `paced`.
    paced_rate: f64,
    paced_jobs: usize,
    /// Jobs per `POST /v1/jobs:batch` request; 0 submits them one by one.
    bulk: usize,
    /// Keep another client's repeatable-read transaction open through the burst and the paced runs.
    hold_snapshot: bool,
    /// The in-process worker's lease length; the heartbeat comes at a sixth of it, at most every 5 s.
    lease_ttl_ms: u64,
    /// Jobs per slice when a long run reports its rate and latency slice by slice.
    slice: usize,
    /// A file of SQL run in the bench's database after its migrations.
    setup_sql: Option<&'a str>,
    /// Api processes to start (release binaries); 0 runs the api and the worker in this process.
    apis: usize,
    /// Worker processes to start with `apis`; they share `worker_concurrency`.
    workers: usize,
}

async fn noop(run: NoopRun<'_>) {
    let NoopRun {
        jobs,
        concurrency,
        worker_concurrency,
        tenants,
        paced,
        paced_rate,
        paced_jobs,
        bulk,
        hold_snapshot,
        lease_ttl_ms,
        slice,
        setup_sql,
        apis,
        workers,
    } = run;
    let env = TestEnv::new().await;
    if let Some(path) = setup_sql {
        let sql = std::fs::read_to_string(path).expect("reads the setup SQL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&env.pool).await.expect("runs the setup SQL");
        println!("  ran {path} in the bench database");
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
    // The api and the worker in this process, or as `apis` and `workers` processes of their own.
    let (services, bases) = if apis == 0 {
        let mut api = env.api_settings();
        api.api.outbox_batch = 1000;
        api.database.max_connections = 32;
        let app = TestApp::spawn_with_cap(&env, api, Some(100_000)).await;
        let mut ws = env.worker_settings();
        ws.worker.concurrency = worker_concurrency;
        ws.worker.interactive_reserved = worker_concurrency / 8;
        ws.worker.lease_ttl_ms = lease_ttl_ms;
        ws.worker.heartbeat_interval_ms = (lease_ttl_ms / 6).min(5_000);
        ws.database.max_connections = 48;
        let worker = TestWorker::spawn(ws).await;
        let base = app.url("");
        (Services::InProcess(app, worker), vec![base])
    } else {
        let mut children = Vec::new();
        let mut bases = Vec::new();
        let api_settings = [
            ("REELQ__API__ALLOW_DIAGNOSTICS", "true".to_owned()),
            ("REELQ__API__OUTBOX_BATCH", "1000".to_owned()),
            ("REELQ__DATABASE__MAX_CONNECTIONS", "32".to_owned()),
        ];
        for _ in 0..apis {
            let port = processes::free_port();
            children.push(processes::spawn_api(&env, port, &api_settings));
            bases.push(format!("http://127.0.0.1:{port}"));
        }
        for base in &bases {
            processes::wait_healthy(&http, base).await;
        }
        for _ in 0..workers.max(1) {
            children.push(processes::spawn_worker(&env, (worker_concurrency / workers.max(1)).max(8)));
        }
        println!("  {apis} api process(es) and {} worker process(es)", workers.max(1));
        (Services::Processes(children), bases)
    };
    // Each tenant gets its own key and video; submissions go round-robin over them.
    let mut clients = Vec::new();
    for i in 0..tenants {
        let t = reelq_shared::db::tenants::upsert(&env.pool, &format!("bench-{i}"), Some(100_000)).await.expect("tenant");
        let key = reelq_shared::db::tenants::create_key(&env.pool, t.id, "bench").await.expect("key").key.expose_secret().to_owned();
        let resp = http
            .post(format!("{}/v1/videos", bases[0]))
            .bearer_auth(&key)
            .header("content-type", "video/mp4")
            .body(sample_clip())
            .send()
            .await
            .expect("upload");
        let video: serde_json::Value = resp.json().await.expect("video");
        clients.push((key, json!({ "video_id": video["id"], "analyses": ["noop"] })));
    }
    let submitter = Submitter { http: http.clone(), urls: bases.iter().map(|b| format!("{b}/v1/jobs")).collect(), clients };
    let pids = services.pids();

    let how = if bulk > 0 { format!("in batches of {bulk}") } else { "one per request".to_owned() };
    println!(
        "no-op jobs: {jobs} submitted over REST {how} with {concurrency} concurrent clients for {tenants} tenant(s); worker concurrency {worker_concurrency}"
    );
    println!("  tables before: {}", table_stats(&env.pool).await);
    // Another client's transaction held open through the run (a long report, a stuck session).
    let mut held = None;
    if hold_snapshot {
        let mut c = sqlx::PgConnection::connect(&format!("{}/{}", reelq_tests::pg_base(), env.db_name)).await.expect("connects");
        sqlx::raw_sql("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs").execute(&mut c).await.expect("snapshot");
        println!("  a repeatable-read transaction stays open through the burst and the paced runs");
        held = Some((c, Instant::now()));
    }
    let before = cost::sample(&env.pool, &pids, Duration::ZERO).await;
    let since = db_now(&env.pool).await;
    let started = Instant::now();
    let ids: Vec<Uuid> = if bulk > 0 {
        let requests: Vec<(usize, usize)> = (0..jobs).step_by(bulk).map(|from| (from, bulk.min(jobs - from))).collect();
        let batches: Vec<Vec<Uuid>> =
            futures::stream::iter(requests).map(|(from, n)| submitter.submit_batch(from, n)).buffer_unordered(concurrency).collect().await;
        batches.into_iter().flatten().collect()
    } else {
        futures::stream::iter(0..jobs).map(|i| submitter.submit(i)).buffer_unordered(concurrency).filter_map(futures::future::ready).collect().await
    };
    let submit_secs = started.elapsed().as_secs_f64();
    println!("  submit: {} accepted in {submit_secs:.2} s = {:.0} jobs/s", ids.len(), ids.len() as f64 / submit_secs);
    let burst = Window { since, until: db_now(&env.pool).await };
    wait_succeeded(&env.pool, &ids).await;
    let secs = started.elapsed().as_secs_f64();
    let after = cost::sample(&env.pool, &pids, Duration::from_secs(11)).await;
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT min(created_at), max(finished_at) FROM jobs WHERE created_at >= $1 AND created_at < $2")
            .bind(burst.since)
            .bind(burst.until)
            .fetch_one(&env.pool)
            .await
            .expect("span");
    let span = (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let max_rate = ids.len() as f64 / span;
    println!("  end to end: {} jobs in {span:.2} s = {max_rate:.0} jobs/s (first submit to last success)", ids.len());
    burst.latencies(&env.pool).await;
    if ids.len() >= 2 * slice {
        burst.by_slice(&env.pool, slice as i64).await;
    }
    cost::report(&before, &after, ids.len(), secs);
    println!("  tables after: {}", table_stats(&env.pool).await);

    let fixed = [paced_rate / max_rate];
    let paced = if paced_rate > 0.0 { &fixed[..] } else { paced };
    for &fraction in paced {
        let rate = max_rate * fraction;
        let every = Duration::from_secs_f64(1.0 / rate);
        println!("  paced at {:.0} % of that rate ({rate:.0} jobs/s), {paced_jobs} jobs:", fraction * 100.0);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = tokio::task::JoinSet::new();
        let since = db_now(&env.pool).await;
        let started = Instant::now();
        // Every minute, what the minute cost: whether a query grows as the run goes on.
        let watch = {
            let pool = env.pool.clone();
            let pids = pids.clone();
            tokio::spawn(async move {
                let mut last = cost::sample(&pool, &pids, Duration::ZERO).await;
                let mut at = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    let now = cost::sample(&pool, &pids, Duration::ZERO).await;
                    println!("    at {:>4.0} s: {}", started.elapsed().as_secs_f64(), cost::interval_line(&last, &now, at.elapsed().as_secs_f64()));
                    (last, at) = (now, Instant::now());
                }
            })
        };
        for i in 0..paced_jobs {
            tick.tick().await;
            let s = submitter.clone();
            sent.spawn(async move { s.submit(i).await });
        }
        let ids: Vec<Uuid> = sent.join_all().await.into_iter().flatten().collect();
        let offered = paced_jobs as f64 / started.elapsed().as_secs_f64();
        let window = Window { since, until: db_now(&env.pool).await };
        wait_succeeded(&env.pool, &ids).await;
        watch.abort();
        println!("    offered {offered:.0} jobs/s, {} accepted", ids.len());
        window.latencies(&env.pool).await;
        if ids.len() >= 2 * slice {
            window.by_slice(&env.pool, slice as i64).await;
        }
        println!("    tables after: {}", table_stats(&env.pool).await);
    }
    if let Some((mut c, since)) = held.take() {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut c).await;
        println!("  the repeatable-read transaction was held open for {:.0} s", since.elapsed().as_secs_f64());
    }
    services.stop().await;
    env.cleanup().await;
}

/// Where the api and the worker run.
enum Services {
    InProcess(TestApp, TestWorker),
    Processes(Vec<tokio::process::Child>),
}

impl Services {
    /// The processes whose CPU is the api's and the worker's, besides this one.
    fn pids(&self) -> Vec<u32> {
        match self {
            Self::InProcess(..) => Vec::new(),
            Self::Processes(children) => children.iter().filter_map(tokio::process::Child::id).collect(),
        }
    }

    async fn stop(self) {
        match self {
            Self::InProcess(app, worker) => {
                worker.stop().await;
                app.stop().await;
            }
            Self::Processes(children) => {
                for mut c in children {
                    let _ = c.start_kill();
                    let _ = c.wait().await;
                }
            }
        }
    }
}

/// Submits the bench's jobs round-robin over its tenants and the apis.
#[derive(Clone)]
struct Submitter {
    http: reqwest::Client,
    urls: Vec<String>,
    clients: Vec<(String, serde_json::Value)>,
}

impl Submitter {
    /// The accepted job's id, or `None` when the request failed.
    async fn submit(&self, i: usize) -> Option<Uuid> {
        let (key, body) = &self.clients[i % self.clients.len()];
        let resp = self.http.post(&self.urls[i % self.urls.len()]).bearer_auth(key).json(body).send().await.ok()?;
        if resp.status() != 202 {
            return None;
        }
        resp.json::<serde_json::Value>().await.ok()?["id"].as_str()?.parse().ok()
    }

    /// The ids of the jobs one `POST /v1/jobs:batch` of `n` jobs accepted.
    async fn submit_batch(&self, i: usize, n: usize) -> Vec<Uuid> {
        let (key, body) = &self.clients[i % self.clients.len()];
        let jobs: Vec<&serde_json::Value> = std::iter::repeat_n(body, n).collect();
        let url = format!("{}:batch", self.urls[i % self.urls.len()]);
        let Ok(resp) = self.http.post(url).bearer_auth(key).json(&json!({ "jobs": jobs })).send().await else {
            return Vec::new();
        };
        let Ok(answer) = resp.json::<serde_json::Value>().await else { return Vec::new() };
        answer["items"].as_array().into_iter().flatten().filter_map(|i| i["job"]["id"].as_str()?.parse().ok()).collect()
    }
}

/// The jobs submitted between two instants of the database's clock: one phase of a run.
struct Window {
    since: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
}

async fn db_now(pool: &sqlx::PgPool) -> chrono::DateTime<chrono::Utc> {
    sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(pool).await.expect("clock")
}

/// Waits until every job of `ids` has succeeded. Each poll looks up the oldest jobs not yet seen
/// done by primary key, a few thousand at most, so watching a run costs the database the same
/// whatever the size of the table and however many row versions an old snapshot keeps. (A
/// count over the run's window, five times a second, read every version of every job of the
/// run and slowed the run it measured.)
async fn wait_succeeded(pool: &sqlx::PgPool, ids: &[Uuid]) {
    const CHUNK: usize = 4_000;
    let mut pending: Vec<Uuid> = ids.to_vec();
    // UUIDv7 ids sort by submission time, the order jobs mostly finish in.
    pending.sort_unstable();
    let mut from = 0;
    let started = Instant::now();
    while from < pending.len() {
        let end = (from + CHUNK).min(pending.len());
        let done: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM jobs WHERE id = ANY($1) AND status = 'succeeded'")
            .bind(&pending[from..end])
            .fetch_all(pool)
            .await
            .unwrap_or_default();
        let done: std::collections::HashSet<Uuid> = done.into_iter().collect();
        let left: Vec<Uuid> = pending[from..end].iter().filter(|id| !done.contains(id)).copied().collect();
        // What is left of the chunk moves up against the rest, and the next poll starts there.
        from = end - left.len();
        pending[from..end].copy_from_slice(&left);
        if left.is_empty() {
            continue;
        }
        if started.elapsed() > Duration::from_secs(3600) {
            println!("  gave up waiting: {} of {} not done", pending.len() - from, ids.len());
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Window {
    async fn latencies(&self, pool: &sqlx::PgPool) {
        for (label, sql) in [
            (
                "submit→running",
                "SELECT EXTRACT(EPOCH FROM started_at - created_at)::float8 FROM jobs WHERE created_at >= $1 AND created_at < $2 ORDER BY 1",
            ),
            (
                "submit→succeeded",
                "SELECT EXTRACT(EPOCH FROM finished_at - created_at)::float8 FROM jobs WHERE created_at >= $1 AND created_at < $2 ORDER BY 1",
            ),
        ] {
            let lat: Vec<f64> = sqlx::query_scalar(sql).bind(self.since).bind(self.until).fetch_all(pool).await.expect("latencies");
            println!(
                "    {label}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                percentile(&lat, 0.5) * 1e3,
                percentile(&lat, 0.9) * 1e3,
                percentile(&lat, 0.99) * 1e3,
                lat.last().copied().unwrap_or(f64::NAN) * 1e3
            );
        }
    }

    /// The completion rate over each successive `size` jobs, in the order they finished: a rate
    /// that holds shows as equal slices.
    /// Completions per second and submit→running percentiles for each slice of `size` jobs in
    /// the order they were submitted: whether the rate and the latency held from the first slice
    /// to the last.
    async fn by_slice(&self, pool: &sqlx::PgPool, size: i64) {
        let rows: Vec<(i64, f64, f64, f64)> = sqlx::query_as(
            "SELECT (rn - 1) / $3 AS slice, EXTRACT(EPOCH FROM max(finished_at) - min(finished_at))::float8,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY wait)::float8, percentile_cont(0.99) WITHIN GROUP (ORDER BY wait)::float8
             FROM (SELECT finished_at, EXTRACT(EPOCH FROM started_at - created_at) AS wait, row_number() OVER (ORDER BY created_at) AS rn
                   FROM jobs WHERE created_at >= $1 AND created_at < $2) f
             GROUP BY 1 HAVING count(*) = $3 ORDER BY 1",
        )
        .bind(self.since)
        .bind(self.until)
        .bind(size)
        .fetch_all(pool)
        .await
        .expect("slices");
        let rates: Vec<String> = rows.iter().map(|(_, secs, ..)| format!("{:.0}", size as f64 / secs.max(1e-9))).collect();
        println!("    completions per second, by slice of {size} jobs: {}", rates.join(", "));
        let waits: Vec<String> = rows.iter().map(|(_, _, p50, p99)| format!("{:.0}/{:.0}", p50 * 1e3, p99 * 1e3)).collect();
        println!("    submit→running p50/p99 ms, by slice: {}", waits.join(", "));
    }
}

/// Rows, dead rows and size on disk (with indexes) of the tables jobs go through.
async fn table_stats(pool: &sqlx::PgPool) -> String {
    let _ = sqlx::query("SELECT pg_stat_clear_snapshot()").execute(pool).await;
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT relname::text, n_live_tup, n_dead_tup, pg_total_relation_size(relid), autovacuum_count
         FROM pg_stat_user_tables WHERE relname IN ('jobs', 'results', 'outbox') ORDER BY relname",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    rows.iter()
        .map(|(t, live, dead, bytes, vacuums)| format!("{t} {live} rows, {dead} dead, {:.1} MiB, autovacuumed {vacuums}×", *bytes as f64 / 1048576.0))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Streams `mib` MiB through a real `reelq-api` process and samples its resident memory.
async fn upload(mib: u64) {
    let env = TestEnv::new().await;
    let port = processes::free_port();
    let tenant = reelq_shared::db::tenants::upsert(&env.pool, "bench", None).await.expect("tenant");
    let key = reelq_shared::db::tenants::create_key(&env.pool, tenant.id, "bench").await.expect("key");
    let mut child = processes::spawn_api(&env, port, &[("REELQ__API__MAX_UPLOAD_BYTES", ((mib + 1) * 1024 * 1024).to_string())]);
    let pid = child.id().expect("pid");
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss_before = rss_kib(pid);

    // An MP4 header followed by generated bytes: the container check passes, the rest streams.
    let header = sample_clip()[..64].to_vec();
    let total = mib * 1024 * 1024;
    let chunk = bytes::Bytes::from(vec![0x5Au8; 256 * 1024]);
    let mut sent = 0u64;
    let first = bytes::Bytes::from(header);
    sent += first.len() as u64;
    let body = futures::stream::once(futures::future::ready(Ok::<_, std::io::Error>(first))).chain(futures::stream::iter(std::iter::from_fn(move || {
        if sent >= total {
            return None;
        }
        let n = (total - sent).min(chunk.len() as u64) as usize;
        sent += n as u64;
        Some(Ok(chunk.slice(..n)))
    })));
    let sampler = tokio::spawn(async move {
        let mut peak = 0u64;
        loop {
            peak = peak.max(rss_kib(pid));
            tokio::time::sleep(Duration::from_millis(20)).await;
            if rss_kib(pid) == 0 {
                return peak;
            }
        }
    });
    let started = Instant::now();
    let resp = http
        .post(format!("{base}/v1/videos"))
        .bearer_auth(key.key.expose_secret())
        .header("content-type", "video/mp4")
        .header("content-length", total.to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload sent");
    let secs = started.elapsed().as_secs_f64();
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let hwm = vm_hwm_kib(pid);
    let _ = child.start_kill();
    let _ = child.wait().await;
    let sampled_peak = sampler.await.unwrap_or(0);
    let defaults = reelq_shared::config::StorageSettings::default();
    println!(
        "upload of {mib} MiB through reelq-api (S3 multipart, {} MiB parts, {} in flight): HTTP {status}",
        defaults.part_size_bytes >> 20,
        defaults.upload_concurrency
    );
    if !status.is_success() {
        println!("  body: {text}");
    }
    println!("  {:.1} MB/s ({secs:.2} s)", total as f64 / 1e6 / secs);
    println!(
        "  api RSS: {:.1} MiB before, peak {:.1} MiB (VmHWM), sampled peak {:.1} MiB",
        rss_before as f64 / 1024.0,
        hwm as f64 / 1024.0,
        sampled_peak as f64 / 1024.0
    );
    env.cleanup().await;
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn vm_hwm_kib(pid: u32) -> u64 {
    status_field(pid, "VmHWM:")
}
