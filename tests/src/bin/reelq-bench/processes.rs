//! The real `reelq-api` and `reelq-worker` binaries, started as separate processes against the
//! bench's PostgreSQL database, RabbitMQ names and S3 folder: what a deployment with several
//! replicas of each runs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret as _;
use tokio::process::{Child, Command};

use reelq_tests::TestEnv;

/// A release binary next to this one (`cargo build --release -p reelq-api -p reelq-worker`).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let path = exe.with_file_name(name);
    assert!(path.exists(), "build it first: cargo build --release -p {name} ({})", path.display());
    path
}

/// A command with the settings every process of the bench shares.
fn command(env: &TestEnv, name: &str) -> Command {
    let mut c = Command::new(binary(name));
    c.env("REELQ_CONFIG_DIR", "/nonexistent")
        .env("REELQ__DATABASE__URL", env.database.url.expose_secret())
        .env("REELQ__DATABASE__RUN_MIGRATIONS", "false")
        .env("REELQ__AMQP__URL", env.amqp.url.expose_secret())
        .env("REELQ__AMQP__PREFIX", &env.amqp.prefix)
        // The same delay queues as the bench's own settings, which its cleanup removes.
        .env("REELQ__AMQP__RETRY_DELAYS_MS", env.amqp.retry_delays_ms.iter().map(u64::to_string).collect::<Vec<_>>().join(","))
        .env("REELQ__AMQP__DEFER_DELAY_MS", env.amqp.defer_delay_ms.to_string())
        .env("REELQ__STORAGE__ENDPOINT", &env.storage.endpoint)
        .env("REELQ__STORAGE__BUCKET", &env.storage.bucket)
        .env("REELQ__STORAGE__ACCESS_KEY", &env.storage.access_key)
        .env("REELQ__STORAGE__SECRET_KEY", env.storage.secret_key.expose_secret())
        .env("REELQ__TELEMETRY__LOG_FILTER", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    c
}

/// Starts an api on `port`; `extra` are further `REELQ__…` settings.
pub fn spawn_api(env: &TestEnv, port: u16, extra: &[(&str, String)]) -> Child {
    let mut c = command(env, "reelq-api");
    c.env("REELQ__API__BIND", format!("127.0.0.1:{port}"));
    for (k, v) in extra {
        c.env(k, v);
    }
    c.spawn().expect("api starts")
}

/// Starts a worker taking `concurrency` jobs at once.
pub fn spawn_worker(env: &TestEnv, concurrency: usize) -> Child {
    let mut c = command(env, "reelq-worker");
    c.env("REELQ__WORKER__CONCURRENCY", concurrency.to_string())
        .env("REELQ__WORKER__INTERACTIVE_RESERVED", (concurrency / 8).to_string())
        .env("REELQ__WORKER__LEASE_TTL_MS", "30000")
        .env("REELQ__WORKER__HEARTBEAT_INTERVAL_MS", "5000")
        .env("REELQ__WORKER__HEALTH_BIND", "127.0.0.1:0")
        .env("REELQ__WORKER__SCRATCH_DIR", env.scratch.path())
        .env("REELQ__DATABASE__MAX_CONNECTIONS", "24");
    c.spawn().expect("worker starts")
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// Waits until `GET {base}/healthz` answers.
pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} never became healthy");
}
