//! Retries as they happen in time: each retry waits in exactly one delay queue for its delay,
//! a job's own transient faults follow the configured ladder and then dead-letter, and an
//! outage of storage or the database spends no attempts and ends with every job succeeding.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use lapin::options::{BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use uuid::Uuid;

use reelq_shared::domain::Priority;
use reelq_shared::queue::{self, DELAY_HEADER, Topology};
use reelq_tests::proxy::Proxy;
use reelq_tests::{TestApp, TestEnv, TestWorker, count, sample_clip};

/// Messages waiting in each delay queue, in the topology's order of delays.
async fn delay_depths(ch: &Channel, t: &Topology) -> Vec<u32> {
    let mut out = Vec::new();
    for ms in t.delays_ms() {
        let q = ch
            .queue_declare(t.delay_queue(ms).into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default())
            .await
            .expect("delay queue exists");
        out.push(q.message_count());
    }
    out
}

fn headers(name: &str, value: &str) -> BasicProperties {
    let mut table = FieldTable::default();
    table.insert(name.into(), AMQPValue::LongString(LongString::from(value)));
    BasicProperties::default().with_delivery_mode(2).with_headers(table)
}

async fn publish(ch: &Channel, exchange: &str, routing_key: &str, props: BasicProperties) {
    ch.basic_publish(exchange.into(), routing_key.into(), BasicPublishOptions::default(), b"{}", props).await.expect("publish").await.expect("confirm");
}

/// Messages taken from a queue until it is empty.
async fn drain(ch: &Channel, queue: &str) -> usize {
    let mut n = 0;
    while ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }).await.expect("get").is_some() {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_waits_in_exactly_one_delay_queue_for_its_delay() {
    // Arrange: the topology of an earlier version, whose bindings matched on `x-reelq-delay`.
    let mut env = TestEnv::new().await;
    env.amqp.retry_delays_ms = vec![300, 900, 1_500];
    env.amqp.defer_delay_ms = 100;
    let t = Topology::new(&env.amqp);
    let conn = queue::connect(&env.amqp, "test-topology").await.expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    t.declare(&ch).await.expect("declare");
    let legacy = t.legacy_retry_exchange();
    let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(legacy.as_str().into(), ExchangeKind::Headers, durable, FieldTable::default()).await.expect("legacy exchange");
    for ms in t.delays_ms() {
        let mut bind = FieldTable::default();
        bind.insert("x-match".into(), AMQPValue::LongString("all".into()));
        bind.insert("x-reelq-delay".into(), AMQPValue::LongString(ms.to_string().into()));
        ch.queue_bind(t.delay_queue(ms).into(), legacy.as_str().into(), "".into(), QueueBindOptions::default(), bind).await.expect("legacy bind");
    }
    ch.confirm_select(Default::default()).await.expect("confirms");
    // The fault this guards against, shown on the legacy exchange: one retry comes back once
    // per delay queue.
    let lane = t.lane_queue(Priority::Interactive);
    publish(&ch, &legacy, "interactive", headers("x-reelq-delay", "300")).await;
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(drain(&ch, &lane).await, 4, "the legacy bindings fan out to every delay queue");

    // A classic delay queue of an earlier version, bound on the delay header.
    let old_queue = t.legacy_delay_queue(300);
    ch.queue_declare(old_queue.as_str().into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .expect("old queue");
    let mut bind = FieldTable::default();
    bind.insert("x-match".into(), AMQPValue::LongString("all".into()));
    bind.insert(DELAY_HEADER.into(), AMQPValue::LongString("300".into()));
    ch.queue_bind(old_queue.as_str().into(), t.retry_exchange().into(), "".into(), QueueBindOptions::default(), bind).await.expect("old bind");

    // Act: an upgraded process declares the topology, then a retry is published.
    t.declare(&ch).await.expect("declare again");
    t.retire_legacy(&conn).await;
    let probe = conn.create_channel().await.expect("channel");
    let gone = probe
        .exchange_declare(
            legacy.as_str().into(),
            ExchangeKind::Headers,
            ExchangeDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await;
    let probe = conn.create_channel().await.expect("channel");
    let old_gone =
        probe.queue_declare(old_queue.as_str().into(), QueueDeclareOptions { passive: true, ..Default::default() }, FieldTable::default()).await;
    let started = Instant::now();
    publish(&ch, &t.retry_exchange(), "interactive", headers(DELAY_HEADER, "900")).await;
    let depths = delay_depths(&ch, &t).await;
    let mut back_after = None;
    while started.elapsed() < Duration::from_secs(6) {
        if ch.basic_get(lane.as_str().into(), BasicGetOptions { no_ack: true }).await.expect("get").is_some() {
            back_after = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Longer than the longest delay: a stray copy would have come back by now.
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    let extra = drain(&ch, &lane).await;

    // Assert
    assert!(gone.is_err(), "the legacy exchange and its bindings are deleted");
    assert!(old_gone.is_err(), "the empty legacy delay queue is deleted");
    assert_eq!(depths, vec![0, 0, 1, 0], "one copy, in the 900 ms queue (delays {:?})", t.delays_ms().collect::<Vec<_>>());
    let back_after = back_after.expect("the message came back to its lane");
    assert!(back_after >= Duration::from_millis(900), "came back after {back_after:?}, before its 900 ms delay");
    assert!(back_after < Duration::from_millis(900 + 3_000), "came back only after {back_after:?}");
    assert_eq!(extra, 0, "no second copy came back");
    let _ = conn.close(200, "done".into()).await;
    env.cleanup().await;
}

/// What [`watch_attempts`] saw.
struct Watched {
    /// When each attempt was first seen, relative to the start.
    attempts: Vec<Duration>,
    /// The most messages seen in delay queues at once.
    most_delayed: u32,
    /// The job's final status.
    status: String,
    /// The longest poll: an attempt is seen at most this late, whatever the machine's load.
    longest_poll: Duration,
}

/// Polls the job's attempt counter and the delay queues until the job ends.
async fn watch_attempts(env: &TestEnv, id: Uuid, since: Instant, timeout: Duration) -> Watched {
    let t = Topology::new(&env.amqp);
    let conn = queue::connect(&env.amqp, "test-watch").await.expect("broker");
    let ch = conn.create_channel().await.expect("channel");
    // The processes declare it too, but perhaps not yet.
    t.declare(&ch).await.expect("declare");
    let mut seen: Vec<Duration> = Vec::new();
    let mut most_delayed = 0;
    let mut longest_poll = Duration::ZERO;
    loop {
        let polled = Instant::now();
        let (attempt, status): (i32, String) =
            sqlx::query_as("SELECT attempt, status FROM jobs WHERE id = $1").bind(id).fetch_one(&env.pool).await.expect("job row");
        while seen.len() < usize::try_from(attempt).unwrap_or(0) {
            seen.push(since.elapsed());
        }
        most_delayed = most_delayed.max(delay_depths(&ch, &t).await.iter().sum());
        if matches!(status.as_str(), "succeeded" | "failed" | "cancelled") {
            let _ = conn.close(200, "done".into()).await;
            return Watched { attempts: seen, most_delayed, status, longest_poll };
        }
        assert!(since.elapsed() < timeout, "job {id} did not end in {timeout:?} (attempts seen at {seen:?})");
        tokio::time::sleep(Duration::from_millis(10)).await;
        longest_poll = longest_poll.max(polled.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_fault_retries_on_the_configured_ladder_then_dead_letters() {
    // Arrange: storage and the database are fine, but this worker cannot make scratch space,
    // a fault of the job's run rather than of a dependency.
    let mut env = TestEnv::new().await;
    env.amqp.retry_delays_ms = vec![1_000, 2_000];
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let blocker = env.scratch.path().join("not-a-directory");
    std::fs::write(&blocker, b"x").expect("file");
    let mut settings = env.worker_settings();
    settings.worker.scratch_dir = Some(blocker.join("scratch").display().to_string());
    let worker = TestWorker::spawn(settings).await;

    // Act
    let started = Instant::now();
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await;
    let Watched { attempts, most_delayed, status, longest_poll } = watch_attempts(&env, id, started, Duration::from_secs(30)).await;
    let job = app.job(id).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let attempts_later: i32 = sqlx::query_scalar("SELECT attempt FROM jobs WHERE id = $1").bind(id).fetch_one(&env.pool).await.expect("row");

    println!("attempts started at {attempts:?} (polls took at most {longest_poll:?}); most delayed messages at once: {most_delayed}");

    // Assert: attempts start no sooner than the ladder says, and not much later.
    assert_eq!(status, "failed");
    assert_eq!(job["error"]["code"], "retries_exhausted");
    assert_eq!(attempts.len(), 3, "every configured attempt was used: {attempts:?}");
    for (i, delay) in [1_000u64, 2_000].iter().enumerate() {
        let gap = attempts[i + 1] - attempts[i];
        let delay = Duration::from_millis(*delay);
        // Each attempt is seen at most one poll late, so the true gap is at least this.
        assert!(gap + longest_poll >= delay, "attempt {} started {gap:?} after the previous one, before its {delay:?} delay", i + 2);
        assert!(gap < delay + longest_poll + Duration::from_secs(3), "attempt {} started only {gap:?} after the previous one", i + 2);
    }
    assert_eq!(most_delayed, 1, "each retry is one delayed message");
    assert_eq!(attempts_later, 3, "no stray copy started another attempt");
    worker.stop().await;
    assert_eq!(super::failures::dead_letters(&env).await, 1);
    app.stop().await;
    env.cleanup().await;
}

/// How long storage or the database stays down in the outage tests; the default keeps the suite
/// quick while being far longer than the whole retry ladder of the test settings.
fn outage() -> Duration {
    let secs = std::env::var("REELQ_TEST_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(6);
    Duration::from_secs(secs)
}

async fn ready_status(worker: &TestWorker) -> u16 {
    reqwest::get(format!("http://{}/readyz", worker.health)).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_queued_through_a_storage_outage_all_succeed_without_spending_attempts() {
    // Arrange: the worker reaches storage through a proxy that is cut for longer than the whole
    // retry ladder (100, 200, 400 ms; three attempts).
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let video = app.upload_clip(sample_clip()).await;
    let upstream: SocketAddr = env.storage.endpoint.trim_start_matches("http://").parse().expect("S3 address");
    let proxy = Proxy::start(upstream, true).await;
    let mut settings = env.worker_settings();
    settings.storage.endpoint = format!("http://{}", proxy.addr());
    settings.worker.dependency_probe_ms = 300;
    let worker = TestWorker::spawn(settings).await;
    proxy.down().await;

    // Act
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.submit_ok(json!({ "video_id": video, "analyses": ["probe"] })).await);
    }
    // The first jobs find storage down and close the worker's gate; the outage then lasts on.
    let gate_closed = Instant::now();
    while ready_status(&worker).await != 503 {
        assert!(gate_closed.elapsed() < Duration::from_secs(30), "the worker never noticed storage was down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(outage()).await;
    let mut during = Vec::new();
    for id in &ids {
        during.push(app.job(*id).await["status"].as_str().unwrap_or_default().to_owned());
    }
    proxy.up();
    let mut done = Vec::new();
    for id in &ids {
        done.push(app.wait_terminal(*id, Duration::from_secs(60)).await);
    }

    // Assert
    assert!(during.iter().all(|s| s == "queued" || s == "running"), "no job ended during the outage: {during:?}");
    for job in &done {
        assert_eq!(job["status"], "succeeded", "{job:#}");
        assert_eq!(job["attempts"], 1, "the outage spent no attempt: {job:#}");
    }
    assert_eq!(ready_status(&worker).await, 200);
    assert_eq!(count(&env.pool, "SELECT count(*) FROM results WHERE analysis = 'probe'").await, 4);
    worker.stop().await;
    assert_eq!(super::failures::dead_letters(&env).await, 0);
    app.stop().await;
    env.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_at_completion_retries_the_write_not_the_analysis() {
    // Arrange: the worker reaches PostgreSQL through a proxy; the api does not.
    let env = TestEnv::new().await;
    let app = TestApp::spawn(&env, env.api_settings()).await;
    let url = env.database.url.expose_secret().to_owned();
    let (scheme_user, rest) = url.rsplit_once('@').expect("postgres://user@host:port/db");
    let (host_port, db) = rest.split_once('/').expect("a database name");
    let upstream = host_port.to_socket_addrs().expect("resolves").next().expect("addr");
    let proxy = Proxy::start(upstream, true).await;
    let mut settings = env.worker_settings();
    settings.database.url = SecretString::from(format!("{scheme_user}@{}/{db}", proxy.addr()));
    settings.worker.dependency_probe_ms = 300;
    let worker = TestWorker::spawn(settings).await;
    let video = app.upload_clip(sample_clip()).await;
    let id = app.submit_ok(json!({ "video_id": video, "analyses": ["noop"], "options": { "noop_ms": 2_500 } })).await;
    app.wait_for(id, Duration::from_secs(20), |j| j["status"] == "running").await;

    // Act: the database goes away while the analysis runs and stays away past its end.
    proxy.down().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let during = app.job(id).await;
    proxy.up();
    let done = app.wait_terminal(id, Duration::from_secs(30)).await;
    let metrics = reqwest::get(format!("http://{}/metrics", worker.health)).await.expect("metrics").text().await.expect("body");

    // Assert
    assert_eq!(during["status"], "running", "nothing ended while the database was away");
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 1);
    let claims: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("reelq_db_query_duration_seconds_count") && l.contains("\"jobs.claim\""))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(claims, 1.0, "the job was claimed, and so run, once");
    let result: (i32,) =
        sqlx::query_as("SELECT attempt FROM results WHERE job_id = $1 AND analysis = 'noop'").bind(id).fetch_one(&env.pool).await.expect("result");
    assert_eq!(result.0, 1);
    worker.stop().await;
    app.stop().await;
    env.cleanup().await;
}
