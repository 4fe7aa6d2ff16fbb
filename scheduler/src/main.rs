//! `reelq-scheduler`: run the scheduler until SIGTERM, or serve the TikTok Research API stub
//! for local runs.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use reelq_scheduler::tiktok::stub::{StubConfig, StubServer};
use reelq_scheduler::{Scheduler, Settings};

#[derive(Parser)]
#[command(version, about = "reelq scheduler: periodic TikTok pulls, dump imports and trends")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the schedules (the default).
    Serve,
    /// Serve a stand-in for the TikTok Research API over a synthetic dataset.
    TiktokStub {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:9100")]
        bind: String,
        /// Videos in the dataset.
        #[arg(long, default_value_t = 5_000)]
        videos: usize,
        /// Days the dataset spans, ending today.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Accepted client key.
        #[arg(long, default_value = "stub-key")]
        client_key: String,
        /// Accepted client secret.
        #[arg(long, env = "REELQ_STUB_CLIENT_SECRET", default_value = "stub-secret")]
        client_secret: String,
        /// Refuse a token after this many queries (`access_token_invalid`).
        #[arg(long)]
        token_expires_after_calls: Option<u32>,
        /// Expire the first search id after this many pages.
        #[arg(long)]
        search_id_expires_after_pages: Option<u32>,
        /// Answer the first N queries with 429.
        #[arg(long, default_value_t = 0)]
        rate_limited_calls: u32,
        /// Answer 429 `daily_quota_limit_exceeded` after this many queries.
        #[arg(long)]
        daily_request_quota: Option<u32>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let stop = CancellationToken::new();
    let token = stop.clone();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let settings: Settings = reelq_shared::config::load().context("loading configuration")?;
            let _telemetry = reelq_shared::telemetry::init("reelq-scheduler", &settings.telemetry);
            let scheduler = Scheduler::build(settings).await?;
            reelq_shared::telemetry::spawn_named("signals", async move {
                reelq_shared::telemetry::shutdown_signal().await;
                token.cancel();
            });
            scheduler.run_until_stopped(stop).await?;
        }
        Command::TiktokStub {
            bind,
            videos,
            days,
            client_key,
            client_secret,
            token_expires_after_calls,
            search_id_expires_after_pages,
            rate_limited_calls,
            daily_request_quota,
        } => {
            let config = StubConfig {
                client_key,
                client_secret,
                videos,
                days,
                token_expires_after_calls,
                search_id_expires_after_pages,
                rate_limited_calls,
                daily_request_quota,
                ..StubConfig::default()
            };
            let stub = StubServer::start(config, &bind).await.with_context(|| format!("listening on {bind}"))?;
            println!("TikTok Research API stub at {}", stub.base_url());
            reelq_shared::telemetry::shutdown_signal().await;
            stub.stop().await;
        }
    }
    Ok(())
}
