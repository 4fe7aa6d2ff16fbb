//! `reelq-worker`: consume and process jobs until SIGTERM.

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

use reelq_worker::{Settings, Worker};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: Settings = reelq_shared::config::load().context("loading configuration")?;
    let _telemetry = reelq_shared::telemetry::init("reelq-worker", &settings.telemetry);
    let worker = Worker::build(settings).await?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    reelq_shared::telemetry::spawn_named("signals", async move {
        reelq_shared::telemetry::shutdown_signal().await;
        tracing::info!("finishing in-flight jobs");
        token.cancel();
    });
    worker.run_until_stopped(stop).await?;
    Ok(())
}
