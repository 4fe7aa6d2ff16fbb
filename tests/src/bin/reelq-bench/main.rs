//! `reelq-bench`: prints throughput, latency and cost-per-job figures of the full job path, and
//! the api's memory and speed during a large streamed upload. Figures only: nothing here asserts
//! timings.
//!
//! ```text
//! cargo run --release -p reelq-tests --bin reelq-bench -- noop --jobs 5000 --concurrency 64 [--paced 0.5,0.9] [--paced-jobs N] [--bulk 100]
//! cargo build --release -p reelq-api && cargo run --release -p reelq-tests --bin reelq-bench -- upload --mib 1024
//! ```

use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use secrecy::ExposeSecret as _;
use serde_json::json;

use uuid::Uuid;

use reelq_tests::{TestApp, TestEnv, TestWorker, sample_clip};

mod cost;

#[derive(Debug)]
enum Mode {
    Noop { jobs: usize, concurrency: usize, workers: usize, tenants: usize, paced: Vec<f64>, paced_jobs: usize, bulk: usize },
    Upload { mib: u64 },
}

fn parse_args() -> Mode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> u64 {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("upload") => Mode::Upload { mib: flag("--mib", 1024) },
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
            Mode::Noop {
                jobs,
                concurrency: flag("--concurrency", 64) as usize,
                workers: flag("--worker-concurrency", 128) as usize,
                tenants: flag("--tenants", 1).max(1) as usize,
                paced,
                paced_jobs: flag("--paced-jobs", (jobs / 2) as u64) as usize,
                bulk: flag("--bulk", 0) as usize,
            }
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
        Mode::Noop { jobs, concurrency, workers, tenants, paced, paced_jobs, bulk } => {
            noop(NoopRun { jobs, concurrency, worker_concurrency: workers, tenants, paced: &paced, paced_jobs, bulk }).await
        }
        Mode::Upload { mib } => upload(mib).await,
    }
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
    paced_jobs: usize,
    /// Jobs per `POST /v1/jobs:batch` request; 0 submits them one by one.
    bulk: usize,
}

async fn noop(run: NoopRun<'_>) {
    let NoopRun { jobs, concurrency, worker_concurrency, tenants, paced, paced_jobs, bulk } = run;
    let env = TestEnv::new().await;
    let mut api = env.api_settings();
    api.api.outbox_batch = 1000;
    api.database.max_connections = 32;
    let app = TestApp::spawn_with_cap(&env, api, Some(100_000)).await;
    let mut ws = env.worker_settings();
    ws.worker.concurrency = worker_concurrency;
    ws.worker.interactive_reserved = worker_concurrency / 8;
    ws.worker.lease_ttl_ms = 30_000;
    ws.worker.heartbeat_interval_ms = 5_000;
    ws.database.max_connections = 48;
    let worker = TestWorker::spawn(ws).await;
    // Each tenant gets its own key and video; submissions go round-robin over them.
    let mut clients = Vec::new();
    for i in 0..tenants {
        let t = reelq_shared::db::tenants::upsert(&env.pool, &format!("bench-{i}"), Some(100_000)).await.expect("tenant");
        let key = reelq_shared::db::tenants::create_key(&env.pool, t.id, "bench").await.expect("key").key.expose_secret().to_owned();
        let resp =
            app.http.post(app.url("/v1/videos")).bearer_auth(&key).header("content-type", "video/mp4").body(sample_clip()).send().await.expect("upload");
        let video: serde_json::Value = resp.json().await.expect("video");
        clients.push((key, json!({ "video_id": video["id"], "analyses": ["noop"] })));
    }
    let submitter = Submitter { http: app.http.clone(), url: app.url("/v1/jobs"), clients };

    let how = if bulk > 0 { format!("in batches of {bulk}") } else { "one per request".to_owned() };
    println!(
        "no-op jobs: {jobs} submitted over REST {how} with {concurrency} concurrent clients for {tenants} tenant(s); worker concurrency {worker_concurrency}"
    );
    let before = cost::sample(&env.pool, Duration::ZERO).await;
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
    wait_succeeded(&env.pool, &ids).await;
    let secs = started.elapsed().as_secs_f64();
    let after = cost::sample(&env.pool, Duration::from_secs(11)).await;
    let (first, last): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT min(created_at), max(finished_at) FROM jobs WHERE id = ANY($1)").bind(&ids).fetch_one(&env.pool).await.expect("span");
    let span = (last - first).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let max_rate = ids.len() as f64 / span;
    println!("  end to end: {} jobs in {span:.2} s = {max_rate:.0} jobs/s (first submit to last success)", ids.len());
    latencies(&env.pool, &ids).await;
    cost::report(&before, &after, ids.len(), secs);

    for &fraction in paced {
        let rate = max_rate * fraction;
        let every = Duration::from_secs_f64(1.0 / rate);
        println!("  paced at {:.0} % of that rate ({rate:.0} jobs/s), {paced_jobs} jobs:", fraction * 100.0);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut sent = tokio::task::JoinSet::new();
        let started = Instant::now();
        for i in 0..paced_jobs {
            tick.tick().await;
            let s = submitter.clone();
            sent.spawn(async move { s.submit(i).await });
        }
        let ids: Vec<Uuid> = sent.join_all().await.into_iter().flatten().collect();
        let offered = paced_jobs as f64 / started.elapsed().as_secs_f64();
        wait_succeeded(&env.pool, &ids).await;
        println!("    offered {offered:.0} jobs/s, {} accepted", ids.len());
        latencies(&env.pool, &ids).await;
    }
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}

/// Submits the bench's jobs round-robin over its tenants.
#[derive(Clone)]
struct Submitter {
    http: reqwest::Client,
    url: String,
    clients: Vec<(String, serde_json::Value)>,
}

impl Submitter {
    /// The accepted job's id, or `None` when the request failed.
    async fn submit(&self, i: usize) -> Option<Uuid> {
        let (key, body) = &self.clients[i % self.clients.len()];
        let resp = self.http.post(&self.url).bearer_auth(key).json(body).send().await.ok()?;
        if resp.status() != 202 {
            return None;
        }
        resp.json::<serde_json::Value>().await.ok()?["id"].as_str()?.parse().ok()
    }

    /// The ids of the jobs one `POST /v1/jobs:batch` of `n` jobs accepted.
    async fn submit_batch(&self, i: usize, n: usize) -> Vec<Uuid> {
        let (key, body) = &self.clients[i % self.clients.len()];
        let jobs: Vec<&serde_json::Value> = std::iter::repeat_n(body, n).collect();
        let Ok(resp) = self.http.post(format!("{}:batch", self.url)).bearer_auth(key).json(&json!({ "jobs": jobs })).send().await else {
            return Vec::new();
        };
        let Ok(answer) = resp.json::<serde_json::Value>().await else { return Vec::new() };
        answer["items"].as_array().into_iter().flatten().filter_map(|i| i["job"]["id"].as_str()?.parse().ok()).collect()
    }
}

async fn wait_succeeded(pool: &sqlx::PgPool, ids: &[Uuid]) {
    let started = Instant::now();
    loop {
        let done: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded'").bind(ids).fetch_one(pool).await.unwrap_or(0);
        if done as usize >= ids.len() {
            return;
        }
        if started.elapsed() > Duration::from_secs(600) {
            println!("  gave up waiting: {done} of {} done", ids.len());
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn latencies(pool: &sqlx::PgPool, ids: &[Uuid]) {
    for (label, sql) in [
        ("submit→running", "SELECT EXTRACT(EPOCH FROM started_at - created_at)::float8 FROM jobs WHERE id = ANY($1) ORDER BY 1"),
        ("submit→succeeded", "SELECT EXTRACT(EPOCH FROM finished_at - created_at)::float8 FROM jobs WHERE id = ANY($1) ORDER BY 1"),
    ] {
        let lat: Vec<f64> = sqlx::query_scalar(sql).bind(ids).fetch_all(pool).await.expect("latencies");
        println!(
            "    {label}: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&lat, 0.5) * 1e3,
            percentile(&lat, 0.9) * 1e3,
            percentile(&lat, 0.99) * 1e3,
            lat.last().copied().unwrap_or(f64::NAN) * 1e3
        );
    }
}

/// Streams `mib` MiB through a real `reelq-api` process and samples its resident memory.
async fn upload(mib: u64) {
    let env = TestEnv::new().await;
    let exe = std::env::current_exe().expect("own path");
    let api_bin = std::env::var("REELQ_API_BIN").map(std::path::PathBuf::from).unwrap_or_else(|_| exe.with_file_name("reelq-api"));
    assert!(api_bin.exists(), "build the api first: cargo build --release -p reelq-api ({})", api_bin.display());
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let tenant = reelq_shared::db::tenants::upsert(&env.pool, "bench", None).await.expect("tenant");
    let key = reelq_shared::db::tenants::create_key(&env.pool, tenant.id, "bench").await.expect("key");
    let mut child = tokio::process::Command::new(&api_bin)
        .env("REELQ_CONFIG_DIR", "/nonexistent")
        .env("REELQ__DATABASE__URL", env.database.url.expose_secret())
        .env("REELQ__DATABASE__RUN_MIGRATIONS", "false")
        .env("REELQ__AMQP__URL", env.amqp.url.expose_secret())
        .env("REELQ__AMQP__PREFIX", &env.amqp.prefix)
        .env("REELQ__STORAGE__ENDPOINT", &env.storage.endpoint)
        .env("REELQ__STORAGE__BUCKET", &env.storage.bucket)
        .env("REELQ__STORAGE__ACCESS_KEY", &env.storage.access_key)
        .env("REELQ__STORAGE__SECRET_KEY", env.storage.secret_key.expose_secret())
        .env("REELQ__API__BIND", format!("127.0.0.1:{port}"))
        .env("REELQ__API__MAX_UPLOAD_BYTES", ((mib + 1) * 1024 * 1024).to_string())
        .env("REELQ__TELEMETRY__LOG_FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("api starts");
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
