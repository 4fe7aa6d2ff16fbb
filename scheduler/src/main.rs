//! `reelq-scheduler`: run the scheduler until SIGTERM.

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use reelq_scheduler::{Scheduler, Settings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = reelq_shared::config::load().context("loading configuration")?;
    let _telemetry = reelq_shared::telemetry::init("reelq-scheduler", &settings.telemetry);
    let scheduler = Scheduler::build(settings).await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    reelq_shared::telemetry::spawn_named("signals", async move {
        reelq_shared::telemetry::shutdown_signal().await;
        token.cancel();
    });
    scheduler.run_until_stopped(stop).await?;
    Ok(())
}
