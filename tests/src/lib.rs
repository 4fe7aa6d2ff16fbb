//! End-to-end test harness: every test gets its own PostgreSQL database, its own RabbitMQ
//! names (a unique prefix), and its own S3-compatible server over a temporary folder, then
//! starts the api and workers from their libraries on port 0.
//!
//! Set `TEST_LOG=1` to see the processes' logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use reelq_devs3::DevS3;
use reelq_shared::config::{AmqpSettings, DatabaseSettings, StorageSettings, TelemetrySettings, WebhookSettings};
use reelq_shared::db::{self, tenants};
use reelq_shared::domain::Priority;
use reelq_shared::queue::Topology;

pub mod proxy;

/// PostgreSQL server for tests, without a database name.
pub fn pg_base() -> String {
    std::env::var("REELQ_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

/// RabbitMQ URL for tests.
pub fn amqp_url() -> String {
    std::env::var("REELQ_TEST_AMQP").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(".."))
}

/// Per-test services and settings.
pub struct TestEnv {
    pub db_name: String,
    pub pool: PgPool,
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub storage: StorageSettings,
    pub webhooks: WebhookSettings,
    pub s3: Option<DevS3>,
    pub s3_root: tempfile::TempDir,
    pub scratch: tempfile::TempDir,
}

impl TestEnv {
    /// A fresh database (migrated), a unique queue prefix and a running S3 server.
    pub async fn new() -> Self {
        reelq_shared::telemetry::init_for_tests();
        let id = Uuid::new_v4().simple().to_string();
        let db_name = format!("reelq_test_{}", &id[..16]);
        let admin = sqlx::PgPool::connect(&format!("{}/postgres", pg_base())).await.expect("PostgreSQL reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{db_name}\""))).execute(&admin).await.expect("create test database");
        admin.close().await;
        let database =
            DatabaseSettings { url: SecretString::from(format!("{}/{db_name}", pg_base())), max_connections: 10, ..DatabaseSettings::default() };
        let pool = db::connect(&database).expect("pool");
        db::migrate(&pool).await.expect("migrations apply");

        let amqp = AmqpSettings {
            url: SecretString::from(amqp_url()),
            prefix: format!("rqt-{}", &id[..12]),
            retry_delays_ms: vec![100, 200, 400],
            defer_delay_ms: 100,
            ..AmqpSettings::default()
        };
        let s3_root = tempfile::tempdir().expect("tempdir");
        let secret = format!("secret-{id}");
        let s3 = DevS3::start_local(s3_root.path().to_path_buf(), "test-access", &secret).expect("S3 server starts");
        let storage = StorageSettings {
            endpoint: s3.endpoint(),
            bucket: "reelq-test".into(),
            access_key: "test-access".into(),
            secret_key: SecretString::from(secret),
            operation_timeout_ms: 5_000,
            ..StorageSettings::default()
        };
        let store = reelq_shared::storage::Store::new(&storage);
        store.ensure_bucket().await.expect("bucket created");
        let webhooks = WebhookSettings { allow_private: true, backoff_base_ms: 100, ..WebhookSettings::default() };
        Self { db_name, pool, database, amqp, storage, webhooks, s3: Some(s3), s3_root, scratch: tempfile::tempdir().expect("tempdir") }
    }

    /// Default api settings over this environment.
    pub fn api_settings(&self) -> reelq_api::Settings {
        let mut s = reelq_api::Settings {
            database: self.database.clone(),
            amqp: self.amqp.clone(),
            storage: self.storage.clone(),
            telemetry: TelemetrySettings::default(),
            webhooks: self.webhooks.clone(),
            api: Default::default(),
            retention: Default::default(),
        };
        s.database.run_migrations = false;
        s.api.bind = "127.0.0.1:0".into();
        s.api.outbox_poll_ms = 100;
        s.api.max_attempts = 3;
        s
    }

    /// Default worker settings over this environment: short leases and heartbeats.
    pub fn worker_settings(&self) -> reelq_worker::Settings {
        let mut s = reelq_worker::Settings {
            database: self.database.clone(),
            amqp: self.amqp.clone(),
            storage: self.storage.clone(),
            telemetry: TelemetrySettings::default(),
            webhooks: self.webhooks.clone(),
            ..Default::default()
        };
        s.worker.health_bind = "127.0.0.1:0".into();
        s.worker.lease_ttl_ms = 2_000;
        s.worker.heartbeat_interval_ms = 200;
        s.worker.shutdown_deadline_secs = 5;
        s.worker.reaper_interval_secs = 1;
        s.worker.webhook_poll_ms = 100;
        s.worker.scratch_dir = Some(self.scratch.path().display().to_string());
        // The model pack and ONNX Runtime that tools/models/build-pack puts under the
        // workspace's .data (or REELQ_MODELS_DIR / ORT_DYLIB_PATH).
        let root = workspace_root();
        s.inference.models_dir = Some(reelq_worker::inference::DirStore::default_root(&root).display().to_string());
        s.inference.library = Some(reelq_worker::inference::RuntimeConfig::default_library(&root).display().to_string());
        // Tests start many workers; each embeds the vocabulary on its first hashtag job instead.
        s.hashtags.warm_up = false;
        s
    }

    /// Files stored under the S3 root (every bucket), relative paths.
    pub fn stored_objects(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        walk(&p, base, out);
                    } else if let Ok(rel) = p.strip_prefix(base) {
                        let name = rel.display().to_string();
                        // s3s-fs keeps its bookkeeping in dot-files and upload scratch folders.
                        if name.contains("/uploads/") {
                            out.push(rel.to_path_buf());
                        }
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(self.s3_root.path(), self.s3_root.path(), &mut out);
        out
    }

    /// Deletes the test's queues and database.
    pub async fn cleanup(self) {
        // Bounded: a broker or pool that does not answer must not hold the test up.
        let _ = tokio::time::timeout(Duration::from_secs(15), Self::delete_topology(&self.amqp)).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.pool.close()).await;
        if let Ok(admin) = sqlx::PgPool::connect(&format!("{}/postgres", pg_base())).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.db_name))).execute(&admin).await;
        }
    }

    async fn delete_topology(amqp: &AmqpSettings) {
        let topology = Topology::new(amqp);
        if let Ok(conn) = reelq_shared::queue::connect(amqp, "test-cleanup").await {
            if let Ok(ch) = conn.create_channel().await {
                let mut names = vec![topology.dead_queue()];
                names.extend(Priority::ALL.iter().map(|l| topology.lane_queue(*l)));
                names.extend(topology.delays_ms().map(|d| topology.delay_queue(d)));
                for n in names {
                    let _ = ch.queue_delete(n.into(), QueueDeleteOptions::default()).await;
                }
                for x in topology.exchanges() {
                    let _ = ch.exchange_delete(x.into(), ExchangeDeleteOptions::default()).await;
                }
            }
            let _ = conn.close(200, "done".into()).await;
        }
    }
}

/// A running api with two tenants' keys.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    pub key: String,
    pub other_key: String,
    pub tenant_id: Uuid,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestApp {
    /// Starts the api; `tenant` gets `max_running_jobs`.
    pub async fn spawn(env: &TestEnv, settings: reelq_api::Settings) -> Self {
        Self::spawn_with_cap(env, settings, None).await
    }

    /// Starts the api with a running-job cap on the main tenant.
    pub async fn spawn_with_cap(env: &TestEnv, settings: reelq_api::Settings, cap: Option<i32>) -> Self {
        let t = tenants::upsert(&env.pool, "acme", cap).await.expect("tenant");
        let key = tenants::create_key(&env.pool, t.id, "test").await.expect("key");
        let other = tenants::upsert(&env.pool, "globex", None).await.expect("tenant");
        let other_key = tenants::create_key(&env.pool, other.id, "test").await.expect("key");
        let app = reelq_api::Application::build(settings).await.expect("api builds");
        let addr = app.local_addr();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Self {
            addr,
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client"),
            key: key.key.expose_secret().to_owned(),
            other_key: other_key.key.expose_secret().to_owned(),
            tenant_id: t.id,
            stop,
            task,
        }
    }

    /// `http://ADDR/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Uploads bytes as a raw body; returns the response.
    pub async fn upload_raw(&self, bytes: Vec<u8>, content_type: &str) -> reqwest::Response {
        self.http.post(self.url("/v1/videos")).bearer_auth(&self.key).header("content-type", content_type).body(bytes).send().await.expect("request sent")
    }

    /// Uploads a clip and returns its video id.
    pub async fn upload_clip(&self, bytes: Vec<u8>) -> Uuid {
        let resp = self.upload_raw(bytes, "video/mp4").await;
        assert_eq!(resp.status(), 201, "upload: {}", resp.text().await.unwrap_or_default());
        let v: Value = resp.json().await.expect("json");
        v["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// Submits a JSON job as the main tenant.
    pub async fn submit(&self, body: Value) -> reqwest::Response {
        self.http.post(self.url("/v1/jobs")).bearer_auth(&self.key).json(&body).send().await.expect("request sent")
    }

    /// Submits and returns the job id, asserting 202.
    pub async fn submit_ok(&self, body: Value) -> Uuid {
        let resp = self.submit(body).await;
        assert_eq!(resp.status(), 202, "submit: {}", resp.text().await.unwrap_or_default());
        let v: Value = resp.json().await.expect("json");
        v["id"].as_str().expect("id").parse().expect("uuid")
    }

    /// The job as the main tenant sees it.
    pub async fn job(&self, id: Uuid) -> Value {
        let resp = self.http.get(self.url(&format!("/v1/jobs/{id}"))).bearer_auth(&self.key).send().await.expect("sent");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    /// Polls the job until `done` holds for it or `timeout` passes.
    pub async fn wait_for(&self, id: Uuid, timeout: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let j = self.job(id).await;
            if done(&j) {
                return j;
            }
            assert!(start.elapsed() < timeout, "job {id} did not reach the expected state in {timeout:?}; last: {j:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the job's status is terminal.
    pub async fn wait_terminal(&self, id: Uuid, timeout: Duration) -> Value {
        self.wait_for(id, timeout, |j| matches!(j["status"].as_str(), Some("succeeded" | "failed" | "cancelled"))).await
    }

    /// Stops the api and waits for it: each step of its stop is bounded, so one that does not
    /// end within a minute is a fault worth a failed test rather than a hung one.
    pub async fn stop(self) {
        self.stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(60), self.task).await;
        assert!(stopped.is_ok(), "the api did not stop within 60 s of its shutdown signal");
    }
}

/// A running worker.
pub struct TestWorker {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
    pub health: SocketAddr,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestWorker {
    /// Starts a worker.
    pub async fn spawn(settings: reelq_worker::Settings) -> Self {
        let worker = reelq_worker::Worker::build(settings).await.expect("worker builds");
        let stop = CancellationToken::new();
        let abort = worker.abort_handle();
        let health = worker.health_addr();
        let task = tokio::spawn(worker.run_until_stopped(stop.clone()));
        Self { stop, abort, health, task }
    }

    /// Graceful stop.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }

    /// Dies as a crashed process would: no acks, no more writes, connections dropped.
    pub async fn crash(self) {
        self.abort.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// A 2-second 320×240 H.264/AAC clip made by the ffmpeg CLI once per test process.
pub fn sample_clip() -> Vec<u8> {
    static CLIP: OnceLock<Vec<u8>> = OnceLock::new();
    CLIP.get_or_init(|| {
        make_clip(
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=size=320x240:rate=25",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=44100",
                "-t",
                "2",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
            ],
            "mp4",
        )
    })
    .clone()
}

/// Runs the ffmpeg CLI with `args` and returns the output file's bytes.
pub fn make_clip(args: &[&str], ext: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join(format!("clip.{ext}"));
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&out)
        .status()
        .expect("the ffmpeg CLI is installed (scripts/test installs it)");
    assert!(status.success(), "ffmpeg failed");
    std::fs::read(out).expect("clip written")
}

/// Counts rows of a table in the test database.
pub async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(pool).await.expect("count query")
}
