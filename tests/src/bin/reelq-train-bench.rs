//! `reelq-train-bench`: how long one TikTok pull of N synthetic records takes, and then how
//! long one training job over them takes, with the model figures it reaches and the process's
//! peak memory. Figures only: nothing here asserts timings.
//!
//! The pull runs the scheduler's real `TikTokSource` against the Research API stub (N videos
//! over D days, every vocabulary hashtag, 100 per page) into a fresh PostgreSQL database. The
//! training job is enqueued as the scheduler's `train` schedule would, relayed to RabbitMQ and
//! run by a worker in this process: it embeds every description with the text model of the
//! model pack (`.data/models`), fits the hashtag classifier, refits the hashtag ranker on the
//! newest posts and fits the virality regressor, and judges them on the newest examples held out. Peak RSS therefore counts the worker too.
//!
//! Needs what the end-to-end tests need: PostgreSQL (`REELQ_TEST_PG`), RabbitMQ
//! (`REELQ_TEST_AMQP`, default on localhost) and the model pack.
//!
//! ```text
//! REELQ_TEST_PG=postgres://postgres@127.0.0.1:5432 cargo run --release -p reelq-tests --bin reelq-train-bench -- --records 100000
//! ```
//!
//! Options: `--records N` (100000), `--days D` (30), `--epochs E` (60), `--skip-train`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use reelq_scheduler::settings::{DumpFormat, ScheduleSettings, SourceKind, TikTokSettings};
use reelq_scheduler::source::{RunContext, Source as _};
use reelq_scheduler::tiktok::stub::{StubConfig, StubServer, VOCABULARY};
use reelq_scheduler::tiktok::{TikTokClient, TikTokSource};
use reelq_shared::db::models::SYSTEM_TENANT;
use reelq_shared::db::{jobs, results, schedules};
use reelq_shared::outbox::OutboxRelay;
use reelq_shared::queue::Publisher;
use reelq_shared::training::{self, TrainingRequest};
use reelq_tests::{TestEnv, TestWorker, amqp_url, count, pg_base, workspace_root};

const SCHEDULE: &str = "bench-pull";

#[derive(Debug)]
struct Options {
    records: usize,
    days: u32,
    epochs: u32,
    skip_train: bool,
}

fn parse_args() -> anyhow::Result<Options> {
    let mut o = Options { records: 100_000, days: 30, epochs: 60, skip_train: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value"));
        match a.as_str() {
            "--records" => o.records = value("--records")?.parse().context("--records")?,
            "--days" => o.days = value("--days")?.parse().context("--days")?,
            "--epochs" => o.epochs = value("--epochs")?.parse().context("--epochs")?,
            "--skip-train" => o.skip_train = true,
            "-h" | "--help" => {
                println!("reelq-train-bench [--records N (100000)] [--days D (30)] [--epochs E (60)] [--skip-train]");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?} (try --help)"),
        }
    }
    if o.records == 0 || o.days == 0 {
        bail!("--records and --days must be at least 1");
    }
    Ok(o)
}

/// Fails with a message naming what is missing, before `TestEnv::new` would panic on it.
async fn check_environment(train: bool) -> anyhow::Result<()> {
    if std::env::var_os("REELQ_TEST_PG").is_none() {
        bail!("REELQ_TEST_PG is not set; e.g. REELQ_TEST_PG=postgres://postgres@127.0.0.1:5432 (a server where this user may create databases)");
    }
    let pg = format!("{}/postgres", pg_base());
    let admin = tokio::time::timeout(Duration::from_secs(10), sqlx::PgPool::connect(&pg))
        .await
        .map_err(|_| anyhow::anyhow!("timed out"))
        .and_then(|r| r.map_err(anyhow::Error::from))
        .with_context(|| format!("PostgreSQL is not reachable at {} (REELQ_TEST_PG)", pg_base()))?;
    admin.close().await;
    if train {
        let amqp = reelq_shared::config::AmqpSettings { url: SecretString::from(amqp_url()), ..Default::default() };
        let conn = reelq_shared::queue::connect(&amqp, "reelq-train-bench-probe")
            .await
            .context("RabbitMQ is not reachable (REELQ_TEST_AMQP, default amqp://guest:guest@127.0.0.1:5672/%2f)")?;
        let _ = conn.close(200, "probe".into()).await;
        let models = reelq_worker::inference::DirStore::default_root(&workspace_root());
        if !models.is_dir() {
            bail!("no model pack at {} (build it with tools/models/build-pack, or set REELQ_MODELS_DIR)", models.display());
        }
    }
    Ok(())
}

/// Peak resident set of this process, from `VmHWM` in /proc/self/status.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| l.trim_start_matches("VmHWM:").trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let o = parse_args()?;
    check_environment(!o.skip_train).await?;
    let env = TestEnv::new().await;
    let outcome = bench(&env, &o).await;
    env.cleanup().await;
    outcome
}

async fn bench(env: &TestEnv, o: &Options) -> anyhow::Result<()> {
    println!("reelq-train-bench: {} records over {} days, {} epochs", o.records, o.days, o.epochs);
    let started = Instant::now();
    let stub = StubServer::start(StubConfig { videos: o.records, days: o.days, ..StubConfig::default() }, "127.0.0.1:0").await.context("stub starts")?;
    println!("  stub: dataset generated and serving in {:.2} s", started.elapsed().as_secs_f64());
    let pulled = pull(env, &stub, o).await;
    stub.stop().await;
    pulled?;
    if !o.skip_train {
        train(env, o).await?;
    }
    println!("  peak RSS of the process (VmHWM): {}", peak_rss());
    Ok(())
}

/// One pull of everything the stub holds, as the scheduler's `tiktok` schedule runs it.
async fn pull(env: &TestEnv, stub: &StubServer, o: &Options) -> anyhow::Result<()> {
    // Limits well above what N records need, so the ledger never stops the run.
    let pages = u32::try_from(o.records.div_ceil(100)).unwrap_or(u32::MAX);
    let limits = TikTokSettings {
        base_url: stub.base_url(),
        client_key: SecretString::from("stub-key"),
        client_secret: SecretString::from("stub-secret"),
        max_count: 100,
        request_timeout_ms: 30_000,
        backoff_base_ms: 10,
        daily_request_limit: pages.saturating_mul(4).saturating_add(1_000),
        daily_record_limit: u32::try_from(o.records).unwrap_or(u32::MAX).saturating_mul(4).saturating_add(10_000),
        ..TikTokSettings::default()
    };
    let schedule = ScheduleSettings {
        cron: "0 0 30 2 *".into(),
        source: SourceKind::Tiktok,
        enabled: true,
        hashtags: VOCABULARY.iter().map(|t| (*t).to_owned()).collect(),
        regions: Vec::new(),
        days_back: o.days + 1,
        path: None,
        format: DumpFormat::Auto,
        training: Default::default(),
    };
    schedules::register(&env.pool, SCHEDULE, &schedule.cron, "tiktok").await.context("register the schedule")?;
    let client = Arc::new(TikTokClient::new(&limits).context("TikTok client")?);
    let source = TikTokSource::new(client, &limits, &schedule);
    let mut ctx = RunContext::new(env.pool.clone(), SCHEDULE, CancellationToken::new());

    let started = Instant::now();
    let outcome = source.pull(&mut ctx).await;
    let secs = started.elapsed().as_secs_f64();

    let outcome = outcome.map_err(|e| anyhow::anyhow!("the pull failed: {} ({e})", e.code()))?;
    let stored = count(&env.pool, "SELECT count(*) FROM scraped_videos").await;
    let stats = stub.stats();
    println!("  pull: {outcome:?}");
    println!("    records stored:  {stored} (of {} in the dataset; the run counted {})", stub.dataset().len(), ctx.videos);
    println!("    requests:        {} (stub: {} queries, {} pages, {} token(s))", ctx.requests, stats.queries, stats.pages, stats.tokens_issued);
    println!("    seconds:         {secs:.2}");
    println!("    records/s:       {:.0}", stored as f64 / secs);
    Ok(())
}

/// One training job over what the pull stored, run by an in-process worker.
async fn train(env: &TestEnv, o: &Options) -> anyhow::Result<()> {
    let request = TrainingRequest {
        epochs: o.epochs,
        max_examples: u32::try_from(o.records).unwrap_or(u32::MAX),
        window_days: o.days + 1,
        min_label_count: 5,
        ..Default::default()
    };
    let mut settings = env.worker_settings();
    // A job at this size runs for minutes: generous timeout and lease.
    settings.worker.job_timeout_secs = 7_200;
    settings.worker.lease_ttl_ms = 30_000;
    settings.worker.heartbeat_interval_ms = 2_000;
    let worker = TestWorker::spawn(settings).await;

    let started = Instant::now();
    let job = training::enqueue(&env.pool, &request, None, &HashMap::new()).await.context("enqueue the training job")?;
    // Only the api runs the outbox relay; publish the job's message here instead.
    let publisher = Arc::new(Publisher::new(&env.amqp, "reelq-train-bench"));
    let relay = OutboxRelay::new(env.pool.clone(), publisher.clone(), 100, Duration::from_secs(1));
    let published = relay.relay_once().await.context("publish the training job")?;
    publisher.close().await;
    if published == 0 {
        bail!("the training job's outbox message was not found");
    }

    let mut last_stage = None;
    let record = loop {
        let j = jobs::get(&env.pool, SYSTEM_TENANT, job.id).await.context("read the job")?.context("the job vanished")?;
        if j.status().is_terminal() {
            break j;
        }
        if j.stage != last_stage {
            println!("    [{:>7.1} s] {} {}", started.elapsed().as_secs_f64(), j.status, j.stage.as_deref().unwrap_or("-"));
            last_stage = j.stage.clone();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    worker.stop().await;

    println!("  train: job {} {} after attempt {}", record.id, record.status, record.attempt);
    println!("    job wall time (enqueue to terminal): {wall:.2} s");
    if let (Some(s), Some(f)) = (record.started_at, record.finished_at) {
        println!("    job started → finished:              {:.2} s", (f - s).num_milliseconds() as f64 / 1e3);
    }
    if let Some(code) = &record.error_code {
        println!("    error: {code}: {}", record.error_message.as_deref().unwrap_or(""));
    }
    let rows = results::for_job(&env.pool, record.id).await.context("read the results")?;
    let Some(result) = rows.iter().find(|r| r.analysis == training::ANALYSIS) else {
        bail!("the job stored no `{}` result", training::ANALYSIS);
    };
    let p = &result.payload;
    let num = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
    let secs = |v: &Value| v.as_f64().map_or_else(|| "-".to_owned(), |x| format!("{x:.2} s"));
    let ex = &p["examples"];
    println!("    examples: pulled {}, feedback {}, embedded now {}", ex["pulled"], ex["feedback"], ex["embedded_now"]);
    println!("    seconds.embed (incl. reading examples): {}", secs(&p["seconds"]["embed"]));
    println!("    seconds.total:                          {}", secs(&p["seconds"]["total"]));
    let h = &p["hashtags"];
    println!("    hashtags: {} ({} labels), fit {}", h["status"], h["labels"], secs(&h["fit_seconds"]));
    let m = &h["metrics"];
    println!(
        "      p_at_5 {}, r_at_5 {}, mAP {}; train examples {}, eval examples {}",
        num(&m["p_at_5"]),
        num(&m["r_at_5"]),
        num(&m["map"]),
        m["train_examples"],
        m["eval_examples"]
    );
    let r = &p["ranker"];
    println!(
        "    ranker: {}, refit {} ({} of it the candidates of every post) on {} posts, judged on {}",
        r["status"],
        secs(&r["fit_seconds"]),
        secs(&r["candidates_seconds"]),
        r["posts"]["train"],
        r["posts"]["held_out"]
    );
    println!(
        "      held-out P@5 {} hit@5 {} MRR {}, against {} for {}",
        num(&r["metrics"]["p_at_5"]),
        num(&r["metrics"]["hit_at_5"]),
        num(&r["metrics"]["mrr"]),
        num(&r["baseline"]["metrics"]["p_at_5"]),
        r["baseline"]["version"]
    );
    let v = &p["virality"];
    println!("    virality: {}, fit {}", v["status"], secs(&v["fit_seconds"]));
    println!(
        "      spearman {}; train examples {}, eval examples {}",
        num(&v["metrics"]["spearman"]),
        v["metrics"]["train_examples"],
        v["metrics"]["eval_examples"]
    );
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        println!("    payload: {p:#}");
    }
    Ok(())
}
